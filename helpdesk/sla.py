"""SLA targets per priority (SPEC §5) and the due times they give a ticket."""
from __future__ import annotations

from datetime import datetime, timedelta

FIRST_RESPONSE = {
    "urgent": timedelta(minutes=15),
    "high": timedelta(hours=1),
    "medium": timedelta(hours=4),
    "low": timedelta(hours=24),
}
RESOLUTION = {
    "urgent": timedelta(hours=4),
    "high": timedelta(hours=24),
    "medium": timedelta(days=3),
    "low": timedelta(days=7),
}


def due_times(priority: str, created_at: datetime) -> tuple[datetime, datetime]:
    """First-response and resolution due times for a ticket created at `created_at`."""
    return created_at + FIRST_RESPONSE[priority], created_at + RESOLUTION[priority]
