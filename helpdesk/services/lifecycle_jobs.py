"""The periodic lifecycle jobs (docs/lifecycle.md): the SLA check and auto-close.

Both are idempotent and safe to run from several processes at once — the gateway
runs them every `LIFECYCLE_JOBS_INTERVAL` (`mailgateway.periodic`), cron may run
`flask sla-check` / `flask auto-close` too:

- On PostgreSQL each job first takes a transaction-scoped advisory lock
  (`pg_try_advisory_xact_lock`); a run that finds it taken does nothing, because
  another process is doing the same work right now. On SQLite every transaction
  starts with `BEGIN IMMEDIATE` (`helpdesk.database`), so runs simply queue.
- Beyond the lock, every change is guarded by the row's own state, so even two
  runs that overlapped could not mark a breach twice or close a ticket twice:
  the SLA check marks with `UPDATE … WHERE <flag> IS NULL … RETURNING`, and
  auto-close re-selects `resolved` tickets. Both lock the tickets they change
  `FOR NO KEY UPDATE` in id order, as every change of a ticket locks it
  (`tickets.lock_for_change`), and skip any another change holds (a customer's
  reply being taken in may reopen it; an agent may be answering it): the next run
  takes those, and the jobs never wait for a ticket, so never deadlock on one.

The caller owns the transaction (flush, never commit), as with every service,
with one exception: the SLA check marks at most `SLA_CHECK_BATCH` tickets a
transaction and commits each full batch itself, so a mass breach never holds
every breached ticket's lock for the whole run (docs/lifecycle.md, "A mass
breach"); its last batch is the caller's to commit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, case, func, insert, or_, select, update
from sqlalchemy.orm import Session

from helpdesk import sla, sla_queries
from helpdesk import vocabulary as v
from helpdesk.clock import describe, now
from helpdesk.models import Ticket, TicketHistory
from helpdesk.services import notifications
from helpdesk.services.actors import Actor
from helpdesk.services.tickets import TicketsService

# Tickets the SLA check marks, records and alerts per transaction (`check_sla`).
SLA_CHECK_BATCH = 500
# Advisory lock keys (any bigint; these spell "sla" and "ac" in ASCII).
SLA_CHECK_LOCK = 0x736C61
AUTO_CLOSE_LOCK = 0x6163
SLA_CHECK_ACTOR = Actor.system("sla-check")
AUTO_CLOSE_ACTOR = Actor.system("auto-close")
_NEXT_PRIORITY = dict(zip(v.PRIORITIES[:-1], v.PRIORITIES[1:], strict=True))


@dataclass(frozen=True)
class SlaCheckResult:
    ran: bool  # False: another process held the lock and did the work
    breaches: tuple[sla.Breach, ...] = ()
    alerts: int = 0
    raised: int = 0  # tickets whose priority went up (SLA_BREACH_RAISES_PRIORITY)

    def summary(self) -> str:
        if not self.ran:
            return "sla-check: another run is in progress; nothing done"
        first = sum(1 for b in self.breaches if b.target == sla.FIRST_RESPONSE_BREACHED)
        return (
            f"sla-check: {first} first-response and {len(self.breaches) - first} "
            f"resolution breaches marked, {self.alerts} alerts queued, {self.raised} priorities raised"
        )


@dataclass(frozen=True)
class AutoCloseResult:
    ran: bool
    closed: tuple[int, ...] = ()  # ticket ids

    def summary(self) -> str:
        if not self.ran:
            return "auto-close: another run is in progress; nothing done"
        return f"auto-close: {len(self.closed)} resolved tickets closed"


def check_sla(session: Session, config: Any) -> SlaCheckResult:
    """Mark every target that ran out since the last run as breached, once: a
    history row per breach and an alert per ticket and recipient, or one digest
    for a recipient of more than a few (`notifications.queue_sla_alerts`). With
    `SLA_BREACH_RAISES_PRIORITY`, each breached ticket's priority also goes up one
    step per check that found a breach (`_raise_priority`).

    The overdue tickets are found first, unlocked (the partial indexes of the
    undecided tickets), then handled `SLA_CHECK_BATCH` at a time in id order, a ticket's
    two targets in the same batch: each batch marks, records, alerts and raises in
    one transaction, committed here before the next, so a ticket is locked for
    one batch's time, never the whole run's (100,000 tickets breaching at once
    held every lock for 15 s or more, and a customer's reply to any of them waited
    that long). Each full batch re-takes the job's lock; a run that finds it taken
    stops there, the other run marks the rest. Set-based within a batch: one
    UPDATE per target (`_mark`), then bulk inserts for exactly the rows returned.
    """
    if not _exclusive(session, SLA_CHECK_LOCK):
        return SlaCheckResult(ran=False)
    moment = now()
    targets = (
        ("first_response_breached", "first_response_due_at", sla_queries.first_response_unmarked(moment)),
        ("resolution_breached", "resolution_due_at", sla_queries.resolution_unmarked(moment)),
    )
    assignees = {
        ticket_id: assignee for *_, unmarked in targets for ticket_id, assignee in _ids(session, unmarked)
    }
    overdue = sorted(assignees)
    batch = SLA_CHECK_BATCH
    breaches: list[sla.Breach] = []
    # Who the run's alerts are for, counted over every batch: a recipient of more than
    # a few gets one digest, whichever batches hold their tickets.
    run = notifications.SlaRun(
        expected=notifications.sla_recipients(session, list(assignees.values()))
        if len(overdue) > batch
        else {}
    )
    alerts = raised = 0
    for start in range(0, len(overdue), batch):
        if start:
            session.commit()  # the batch before: its marks, history and alerts together
            if not _exclusive(session, SLA_CHECK_LOCK):
                break
        chunk = overdue[start : start + batch]
        marked = [
            breach
            for (flag, due, unmarked), target in zip(
                targets, (sla.FIRST_RESPONSE_BREACHED, sla.RESOLUTION_BREACHED), strict=True
            )
            for breach in _mark(session, flag, due, and_(unmarked, Ticket.id.in_(chunk)), target)
        ]
        if marked:
            alerts += _record(session, marked, moment, run)
            if config["SLA_BREACH_RAISES_PRIORITY"]:
                raised += _raise_priority(session, marked, moment)
            breaches.extend(marked)
    return SlaCheckResult(ran=True, breaches=tuple(breaches), alerts=alerts, raised=raised)


def _ids(session: Session, unmarked: Any) -> Sequence[tuple[int, int | None]]:
    """The overdue tickets' ids and assignees (unlocked)."""
    rows = session.execute(select(Ticket.id, Ticket.assignee_id).where(unmarked)).all()
    return [(ticket_id, assignee) for ticket_id, assignee in rows]


def _record(session: Session, breaches: Sequence[sla.Breach], moment: Any, run: notifications.SlaRun) -> int:
    """A history row per breach, and the alerts (`notifications.queue_sla_alerts`);
    returns how many alert rows were queued."""
    session.execute(
        insert(TicketHistory.__table__),
        [
            dict(
                ticket_id=breach.ticket_id,
                field="sla",
                old_value=None,
                new_value=breach.target,
                actor_staff_id=None,
                actor_label=SLA_CHECK_ACTOR.label,
                reason=breach.describe(),
                automated=True,
                created_at=moment,
            )
            for breach in breaches
        ],
    )
    return notifications.queue_sla_alerts(session, breaches, run)


def auto_close(session: Session, config: Any) -> AutoCloseResult:
    """Close tickets resolved at least `AUTO_CLOSE_AFTER` ago without a customer
    reply since (a reply reopens the ticket, so it is no longer `resolved`; the
    reply-time condition keeps that promise even if it ever did not)."""
    if not _exclusive(session, AUTO_CLOSE_LOCK):
        return AutoCloseResult(ran=False)
    after = config["AUTO_CLOSE_AFTER"]
    tickets = (
        session.execute(
            select(Ticket)
            .where(
                Ticket.status == "resolved",
                Ticket.resolved_at <= now() - after,
                or_(
                    Ticket.last_customer_reply_at.is_(None),
                    Ticket.last_customer_reply_at < Ticket.resolved_at,
                ),
            )
            .order_by(Ticket.id)
            .with_for_update(of=Ticket, key_share=True, skip_locked=True)
        )
        .unique()
        .scalars()
        .all()
    )
    service = TicketsService.from_config(session, config)
    reason = f"no reply for {describe(after)} after it was resolved"
    for ticket in tickets:
        service.change_status(ticket, "closed", actor=AUTO_CLOSE_ACTOR, reason=reason, automated=True)
    return AutoCloseResult(ran=True, closed=tuple(ticket.id for ticket in tickets))


def _mark(session: Session, flag: str, due: str, unmarked: Any, target: str) -> Sequence[sla.Breach]:
    """Set `flag` on the tickets `unmarked` selects; the ones it returns are new breaches.

    The rows are locked by a subquery in id order, skipping any that another
    transaction holds, and only those are updated: an UPDATE alone locks its rows in
    whatever order its plan visits them (the due time's index, the table's pages),
    so it held a ticket with a higher id while waiting for a lower one that a bulk
    action held while waiting for it, and PostgreSQL aborted one as a deadlock. A
    skipped ticket keeps its flag unset, so the next run marks it unless the change
    that held it decided the target itself, as it would have had the check waited.
    One statement per target and batch (`unmarked` names the batch's ids), as
    auto-close skips what is held.
    """
    table = Ticket.__table__
    targets = (
        select(table.c.id)
        .where(unmarked)
        .order_by(table.c.id)
        .with_for_update(key_share=True, skip_locked=True)
        .correlate(None)  # its own `tickets`, not the UPDATE's
    )
    rows = session.execute(
        update(table)
        .where(table.c.id.in_(targets))
        .values({flag: True})
        .returning(table.c.id, table.c.assignee_id, table.c[due])
    ).all()
    return [sla.Breach(ticket_id, assignee_id, target, due_at) for ticket_id, assignee_id, due_at in rows]


def _raise_priority(session: Session, breaches: Sequence[sla.Breach], moment: Any) -> int:
    """One step up (low → medium → high → urgent) for each breached ticket, once per
    check even when both its targets ran out, with an automated history row.

    The due times stay as they were: the breach has happened, and the higher
    priority is for the queue's order and the people watching it, not a new,
    tighter target to miss again.
    """
    table = Ticket.__table__
    ids = sorted({breach.ticket_id for breach in breaches})
    rows = session.execute(
        update(table)
        .where(table.c.id.in_(ids), table.c.priority != v.PRIORITIES[-1])
        .values(priority=case(_NEXT_PRIORITY, value=table.c.priority), updated_at=moment)
        .returning(table.c.id, table.c.priority)
    ).all()
    if rows:
        session.execute(
            insert(TicketHistory.__table__),
            [
                dict(
                    ticket_id=ticket_id,
                    field="priority",
                    old_value=v.PRIORITIES[v.PRIORITIES.index(priority) - 1],
                    new_value=priority,
                    actor_staff_id=None,
                    actor_label=SLA_CHECK_ACTOR.label,
                    reason="SLA breached (SLA_BREACH_RAISES_PRIORITY)",
                    automated=True,
                    created_at=moment,
                )
                for ticket_id, priority in rows
            ],
        )
    return len(rows)


def _exclusive(session: Session, key: int) -> bool:
    """Whether this transaction may do the job (see the module docstring)."""
    if session.get_bind().dialect.name != "postgresql":
        return True
    return bool(session.execute(select(func.pg_try_advisory_xact_lock(key))).scalar_one())
