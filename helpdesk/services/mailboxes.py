"""What the helpdesk remembers of each IMAP mailbox the gateway polled
(`ImapMailboxState`, docs/operations.md "Retiring an IMAP mailbox")."""

from __future__ import annotations

from sqlalchemy import delete, or_, select
from sqlalchemy.orm import Session

from helpdesk.clock import database_now
from helpdesk.errors import Conflict, NotFound
from helpdesk.models import ImapMailboxState


def forget(session: Session, key: str) -> None:
    """Remove the state of the mailbox `key` (`user@host:port/MAILBOX`): a mailbox
    renamed or taken out of IMAP_URL is otherwise reported stuck for ever. Refused
    while a gateway holds its lease (by the database's clock, as the lease is
    taken): that mailbox is being polled now. A gateway that polls it later starts
    it afresh (a rescan, which the inbound dedup keys make harmless)."""
    moment = database_now(session)
    table = ImapMailboxState.__table__.c
    removed = session.execute(
        delete(ImapMailboxState).where(
            table.key == key, or_(table.lease_until.is_(None), table.lease_until < moment)
        )
    ).rowcount  # type: ignore[attr-defined]
    if removed:
        return
    holder = session.execute(select(table.owner, table.lease_until).where(table.key == key)).one_or_none()
    if holder is None:
        raise NotFound(f"No IMAP mailbox {key} is known.")
    owner, until = holder
    raise Conflict(
        f"{key} is held by the gateway {owner or '(unnamed)'} until {until:%Y-%m-%d %H:%M:%S} UTC; "
        "stop it (or take the mailbox out of its IMAP_URL and restart it) first."
    )
