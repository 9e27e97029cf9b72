"""What a sweep of spent rows reports: the API's idempotency keys
(`idempotency.sweep`), the assistant's call ids (`assistant.sweep_calls`) and the
expired token revocations (`revoked_tokens.sweep`), each run by the gateway's
lifecycle jobs and by a `flask …-sweep` command (docs/lifecycle.md)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SweepResult:
    job: str  # the lifecycle job's name, as its log line starts
    rows: str  # what was deleted, in the plural
    deleted: int = 0
    ran: bool = True

    def summary(self) -> str:
        return f"{self.job}: {self.deleted} {self.rows} deleted"
