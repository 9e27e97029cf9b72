"""The lifecycle jobs (docs/lifecycle.md): the SLA check marks each breach once, records it
and alerts staff; auto-close closes resolved tickets after AUTO_CLOSE_AFTER
without a reply. Both are idempotent, also across real OS processes, and run
from the CLI and periodically in the gateway."""

from __future__ import annotations

import logging
import threading
from datetime import timedelta

import pytest
import time_machine
from flask import current_app
from sqlalchemy import create_engine, func, select, text

from helpdesk.clock import now
from helpdesk.extensions import db
from helpdesk.languages import format_when
from helpdesk.models import (
    InboundMail,
    Message,
    OutboxMessage,
    QuarantineItem,
    StaffUser,
    Ticket,
    TicketHistory,
)
from helpdesk.services import Actor, lifecycle_jobs, notifications
from helpdesk.services.lifecycle_jobs import auto_close, check_sla
from helpdesk.services.staff import StaffService
from mailgateway.periodic import LifecycleJobs
from tests.support import lifecycle_worker
from tests.support.database import CUSTOMER, open_ticket
from tests.support.mail import message, start_gateway
from tests.support.outbox import deliver, html_of, text_of
from tests.support.processes import run_processes

TRUSTED = "mx.helpdesk.test"


def sla_history() -> list[tuple[int, str, bool]]:
    return [
        tuple(row)
        for row in db.session.execute(  # type: ignore[misc]
            select(TicketHistory.ticket_id, TicketHistory.new_value, TicketHistory.automated)
            .where(TicketHistory.field == "sla")
            .order_by(TicketHistory.id)
        )
    ]


def alerts() -> list[tuple[int, str, str]]:
    return [
        tuple(row)
        for row in db.session.execute(  # type: ignore[misc]
            select(OutboxMessage.ticket_id, OutboxMessage.to_address, OutboxMessage.status_reason)
            .where(OutboxMessage.kind == "sla_breach")
            .order_by(OutboxMessage.id)
        )
    ]


def digests() -> list[tuple[str, int, list[int]]]:
    """Each SLA digest: its recipient, how many tickets it is about, the ids it lists."""
    rows = db.session.execute(
        select(OutboxMessage.ticket_id, OutboxMessage.to_address, OutboxMessage.status_reason)
        .where(OutboxMessage.kind == "sla_digest")
        .order_by(OutboxMessage.id)
    ).all()
    assert all(ticket_id is None for ticket_id, _, _ in rows)  # about no single ticket
    return [
        (address, total, list(entries))
        for _, address, reason in rows
        for total, entries in [notifications.digest_entries(reason)]
    ]


def alerted() -> list[tuple[str, int, str]]:
    """Every target missed that a recipient was told of, by a ticket's alert or by a
    digest listing it: (recipient, ticket id, the history row's reason)."""
    found: list[tuple[str, int, str]] = []
    for kind, ticket_id, address, reason in db.session.execute(
        select(
            OutboxMessage.kind, OutboxMessage.ticket_id, OutboxMessage.to_address, OutboxMessage.status_reason
        )
        .where(OutboxMessage.kind.in_(("sla_breach", "sla_digest")))
        .order_by(OutboxMessage.id)
    ):
        if kind == "sla_breach":
            found += [(address, ticket_id, line) for line in reason.split("\n")]
        else:
            _, entries = notifications.digest_entries(reason)
            found += [(address, listed, line) for listed, lines in entries.items() for line in lines]
    return found


def breach_reasons() -> list[tuple[int, str]]:
    return [
        (ticket_id, reason)
        for ticket_id, reason in db.session.execute(
            select(TicketHistory.ticket_id, TicketHistory.reason).where(TicketHistory.field == "sla")
        )
    ]


def run_check():  # type: ignore[no-untyped-def]
    result = check_sla(db.session, current_app.config)
    db.session.commit()
    db.session.expire_all()
    return result


def resolve(service, ticket: Ticket, agent_actor: Actor) -> None:  # type: ignore[no-untyped-def]
    service.add_message(ticket, body="Fixed: restart it.", actor=agent_actor, channel="web")
    for target in ("open", "in_progress", "resolved"):
        service.change_status(ticket, target, actor=agent_actor)
    db.session.commit()


# -- the SLA check --------------------------------------------------------------------------


def test_sla_check_marks_each_breach_once_even_when_run_twice(service, agent, admin, agent_actor, clock):
    unassigned = open_ticket(service, priority="urgent", subject="Site down")
    assigned = open_ticket(service, priority="high", assignee_id=agent.id)
    not_due = open_ticket(service, priority="low")
    clock.shift(timedelta(hours=4, minutes=1))  # urgent: both targets; high: first response

    first = run_check()
    assert first.ran and first.alerts == 2
    assert sorted((b.ticket_id, b.target) for b in first.breaches) == [
        (unassigned.id, "first_response_breached"),
        (unassigned.id, "resolution_breached"),
        (assigned.id, "first_response_breached"),
    ]
    assert run_check().breaches == ()

    assert sorted(sla_history()) == [
        (unassigned.id, "first_response_breached", True),
        (unassigned.id, "resolution_breached", True),
        (assigned.id, "first_response_breached", True),
    ]
    created = unassigned.created_at
    assert alerts() == [
        (
            unassigned.id,
            admin.email,
            f"First response was due {created + timedelta(minutes=15):%Y-%m-%d %H:%M} UTC.\n"
            f"Resolution was due {created + timedelta(hours=4):%Y-%m-%d %H:%M} UTC.",
        ),
        (
            assigned.id,
            agent.email,
            f"First response was due {created + timedelta(hours=1):%Y-%m-%d %H:%M} UTC.",
        ),
    ]
    assert (unassigned.first_response_breached, unassigned.resolution_breached) == (True, True)
    assert (assigned.first_response_breached, assigned.resolution_breached) == (True, None)
    assert (not_due.first_response_breached, not_due.resolution_breached) == (None, None)


def test_breaches_already_decided_or_paused_are_left_to_the_ticket(service, agent_actor, admin, clock):
    answered = open_ticket(service, priority="urgent")
    resolve(service, answered, agent_actor)
    cancelled = open_ticket(service, priority="urgent")
    service.change_status(cancelled, "cancelled", actor=agent_actor)
    waiting = open_ticket(service, priority="urgent")
    service.add_message(waiting, body="Logs, please.", actor=agent_actor, channel="web")
    for target in ("open", "in_progress", "pending_customer"):
        service.change_status(waiting, target, actor=agent_actor)
    db.session.commit()
    clock.shift(timedelta(days=1))
    assert run_check().breaches == ()
    assert sla_history() == [] and alerts() == []


def test_breach_alert_goes_to_every_admin_when_the_assignee_was_deactivated(service, agent, admin, clock):
    second_admin, _ = StaffService(db.session).create(
        email="boss@helpdesk.test", name="Bo Boss", role="admin", password="boss-password-1"
    )
    ticket = open_ticket(service, priority="urgent", assignee_id=agent.id)
    agent.is_active = False
    db.session.commit()
    clock.shift(timedelta(minutes=16))
    assert run_check().alerts == 2
    assert sorted(address for _, address, _ in alerts()) == [admin.email, second_admin.email]
    assert {ticket_id for ticket_id, _, _ in alerts()} == {ticket.id}


def test_breach_alert_mail_names_the_target_and_is_never_rate_limited(app, service, agent, clock, sink):  # noqa: F811
    ticket = open_ticket(service, priority="urgent", assignee_id=agent.id)
    clock.shift(timedelta(minutes=16))
    run_check()
    mails = deliver(app, sink, OUTBOUND_MAX_AUTO_PER_RECIPIENT=0, OUTBOUND_MAX_AUTO_PER_TICKET=0)
    (alert,) = [mail for mail in mails if mail["To"].addresses[0].addr_spec == agent.email]
    assert alert["Subject"] == "[TKT-000001] SLA breach: VPN drops every hour"
    assert alert["Auto-Submitted"] == "auto-replied"
    text = text_of(alert)
    assert text.startswith("Hello Agnes Agent,")
    due = format_when(ticket.created_at + timedelta(minutes=15), "en", "UTC")  # the recipient's zone
    assert f"First response was due {due}." in text
    assert "http://helpdesk.test/tickets/TKT-000001" in text
    assert "/track" not in text and "/track" not in html_of(alert)  # no customer footer
    states = dict(db.session.execute(select(OutboxMessage.kind, OutboxMessage.state)).all())
    assert states == {"created": "skipped", "sla_breach": "sent"}  # the customer's ack: limited


def test_an_alert_queued_for_someone_deactivated_before_it_went_is_not_mailed(
    app, service, agent, clock, sink
):  # noqa: F811
    """Staff mail (ticket subjects, portal links) was sent to whoever it was queued
    for, even when that person left and was deactivated before it went: a former
    employee's inbox kept getting them (found by review). The sender skips staff
    mail to an address that is no active staff member's."""
    open_ticket(service, priority="urgent", assignee_id=agent.id)
    clock.shift(timedelta(minutes=16))
    run_check()
    StaffService(db.session).set_active(db.session.get(StaffUser, agent.id), False)
    db.session.commit()
    mails = deliver(app, sink)
    assert [mail["To"].addresses[0].addr_spec for mail in mails] == ["ann@example.com"]
    row = db.session.execute(select(OutboxMessage).where(OutboxMessage.kind == "sla_breach")).scalar_one()
    assert row.state == "skipped" and "no active staff member" in row.last_error


def test_staff_mail_answer_to_an_alert_is_an_internal_note_not_mailed_to_the_customer(
    app, service, agent, clock, sink, gateway
):  # noqa: F811
    ticket = open_ticket(service, priority="urgent", assignee_id=agent.id)
    clock.shift(timedelta(minutes=16))
    run_check()
    mails = deliver(app, sink)
    (alert,) = [mail for mail in mails if mail["To"].addresses[0].addr_spec == agent.email]
    answer = message(
        sender=agent.email,
        subject="Re: " + str(alert["Subject"]),
        body="On it; the customer's VPN box is dead.",
        in_reply_to=alert["Message-ID"],
    )
    code, text = gateway.send(answer)
    assert (code, text) == (250, b"2.0.0 OK appended TKT-000001")
    last = (
        db.session.execute(select(Message).where(Message.ticket_id == ticket.id).order_by(Message.id.desc()))
        .scalars()
        .first()
    )
    assert (last.kind, last.author_staff_id) == ("note", agent.id)
    replies = db.session.execute(
        select(func.count(OutboxMessage.id)).where(OutboxMessage.kind == "reply")
    ).scalar_one()
    assert replies == 0  # nothing goes to the customer


@pytest.mark.parametrize(
    ("language", "marker"),
    [("en", "Fwd: "), ("en", "FW: "), ("es", "RV: "), ("en", "Re: ")],
    ids=["thunderbird forward", "outlook forward", "spanish outlook forward", "reply without its headers"],
)
def test_a_staff_mail_carrying_an_alert_subject_is_an_internal_note_even_when_dmarc_passed(
    app, service, agent, clock, sink, language, marker
):  # noqa: F811
    """A forward (Thunderbird, Outlook) carries no In-Reply-To: matched by its subject,
    with the trusted server's pass it was a public reply, and the customer got the
    alert's due times and the note to colleagues."""
    agent.language = language
    db.session.commit()
    ticket = open_ticket(service, priority="urgent", assignee_id=agent.id)
    clock.shift(timedelta(minutes=16))
    run_check()
    mails = deliver(app, sink)
    (alert,) = [mail for mail in mails if mail["To"].addresses[0].addr_spec == agent.email]
    assert ("SLA breach:" if language == "en" else "SLA incumplido:") in str(alert["Subject"])
    forward = message(
        sender=agent.email,
        subject=marker + str(alert["Subject"]),
        body="Can someone take this one?\n\n-------- Forwarded Message --------\n" + text_of(alert),
        headers={"Authentication-Results": f"{TRUSTED}; dmarc=pass header.from=helpdesk.test"},
    )
    for gateway in start_gateway(app, TRUSTED_AUTHSERV_ID=TRUSTED):
        assert gateway.send(forward) == (250, b"2.0.0 OK appended TKT-000001")
    last = (
        db.session.execute(select(Message).where(Message.ticket_id == ticket.id).order_by(Message.id.desc()))
        .scalars()
        .first()
    )
    assert (last.kind, last.author_staff_id) == ("note", agent.id)
    replies = db.session.execute(
        select(func.count(OutboxMessage.id)).where(OutboxMessage.kind == "reply")
    ).scalar_one()
    assert replies == 0  # nothing goes to the customer
    assert not any("Can someone take this one?" in text_of(mail) for mail in deliver(app, sink)[len(mails) :])
    db.session.refresh(ticket)
    assert ticket.first_responded_at is None


def test_a_flood_of_breaches_mails_each_recipient_one_digest_not_a_mail_per_ticket(
    app, service, agent, admin, clock, sink
):
    """SPEC §8: automatic mail is limited per recipient. Sixty tickets breaching at
    once mailed the admin sixty alerts in one check (a review proved it); each breach
    is still heard, in one digest that lists the first 50 and counts the rest."""
    flood = [
        open_ticket(service, priority="urgent", subject=f"Outage in street {n} " + "x" * 80)
        for n in range(60)
    ]
    own = open_ticket(service, priority="urgent", assignee_id=agent.id, subject="Router dead")
    clock.shift(timedelta(minutes=16))  # every first response is overdue

    result = run_check()
    assert len(result.breaches) == 61 and result.alerts == 2
    assert len(sla_history()) == 61  # a history row per breach, as before
    assert digests() == [(admin.email, 60, [ticket.id for ticket in flood[:50]])]
    assert alerts() == [
        (
            own.id,
            agent.email,
            f"First response was due {own.created_at + timedelta(minutes=15):%Y-%m-%d %H:%M} UTC.",
        )
    ]

    mails = deliver(app, sink)
    (digest,) = [mail for mail in mails if mail["To"].addresses[0].addr_spec == admin.email]
    assert digest["Subject"] == "SLA breaches: 60 tickets"  # no ticket's reference: it threads onto none
    assert (digest["Auto-Submitted"], digest["X-Auto-Response-Suppress"], digest["X-Loop"]) == (
        "auto-replied",
        "All",
        "support@helpdesk.test",
    )
    assert digest["Reply-To"] == "support@helpdesk.test"
    assert digest["In-Reply-To"] is None and digest["References"] is None
    assert str(digest["Message-ID"]).startswith("<tkt.0.")
    text = text_of(digest)
    assert text.startswith(
        "Hello Ada Admin,\n\nThe SLA check has just found 60 tickets that missed a target:"
    )
    numbers = [f"TKT-{n:06d}" for n in range(1, 61)]
    assert [number for number in numbers if number in text] == numbers[:50]
    assert "TKT-000061" not in text  # the agent's own, mailed to the agent
    subject = f"Outage in street 0 {'x' * 80}"[:59] + "…"
    due = format_when(flood[0].created_at + timedelta(minutes=15), "en", "UTC")
    assert (
        f"TKT-000001  {subject}\n    First response was due {due}.\n    http://helpdesk.test/tickets/TKT-000001\n"
        in text
    )
    assert "And 10 more tickets." in text
    queue = "http://helpdesk.test/tickets?sla=breached&status=new&status=open&status=in_progress"
    assert queue + "&status=pending_customer&status=reopened" in text
    assert "You get one list instead of an alert per ticket" in text and "/track" not in text
    page = html_of(digest)
    assert '<a href="http://helpdesk.test/tickets/TKT-000050"><strong>TKT-000050</strong></a>' in page
    assert "TKT-000051" not in page and "And 10 more tickets." in page
    assert queue.replace("&", "&amp;") in page and "<title>SLA breaches: 60 tickets</title>" in page
    (alert,) = [mail for mail in mails if mail["To"].addresses[0].addr_spec == agent.email]
    assert alert["Subject"] == "[TKT-000061] SLA breach: Router dead"


def test_a_mass_breach_is_committed_a_batch_at_a_time_and_each_recipient_gets_one_digest(
    app, service, agent, admin, clock, monkeypatch
):
    """The check held the lock of every ticket it marked until its one commit: with
    20,000 tickets breaching at once (an outage weekend) that was 10 s, and a
    customer's reply to any of them waited as long (docs/lifecycle.md, "A mass
    breach"). It commits every SLA_CHECK_BATCH tickets, a ticket's two targets in
    one batch; a recipient still gets one digest, each breach alerted once."""
    monkeypatch.setattr(lifecycle_jobs, "SLA_CHECK_BATCH", 4, raising=False)
    unassigned = [open_ticket(service, priority="urgent") for _ in range(9)]
    own = [open_ticket(service, priority="urgent", assignee_id=agent.id) for _ in range(2)]
    clock.shift(timedelta(hours=5))  # both targets of all eleven
    db.session.commit()
    result = check_sla(db.session, app.config)
    other = create_engine(db.engine.url)  # no BEGIN IMMEDIATE: a reader beside the check
    try:
        with other.connect() as connection:
            committed = connection.execute(
                select(Ticket.id).where(Ticket.resolution_breached.is_(True)).order_by(Ticket.id)
            ).scalars()
            committed_ids = list(committed)
    finally:
        other.dispose()
    db.session.commit()
    assert committed_ids == [ticket.id for ticket in unassigned[:8]]  # two batches before the last
    assert len(result.breaches) == 22 and result.alerts == 3
    assert digests() == [(admin.email, 9, [ticket.id for ticket in unassigned])]
    assert [(ticket_id, address, reason.count("\n")) for ticket_id, address, reason in alerts()] == [
        (ticket.id, agent.email, 1)
        for ticket in own  # one alert for both targets
    ]
    assert sorted(alerted()) == sorted(
        (admin.email if ticket_id <= unassigned[-1].id else agent.email, ticket_id, reason)
        for ticket_id, reason in breach_reasons()
    )
    assert len(alerted()) == len(set(alerted())) == 22


def test_a_recipient_whose_breaches_are_spread_over_batches_gets_one_digest(
    service, agent, admin, clock, monkeypatch
):
    """Each batch chose alerts or a digest by its own tickets alone: an agent's four
    breached tickets, one in each batch of two, got four alerts, where one check
    mails a recipient at most SLA_DIGEST_OVER (3) (docs/outbound-mail.md, "SLA
    alerts"); a mass breach mailed such an agent a mail per ticket."""
    monkeypatch.setattr(lifecycle_jobs, "SLA_CHECK_BATCH", 2, raising=False)
    mine = []
    for _ in range(4):
        mine.append(open_ticket(service, priority="urgent", assignee_id=agent.id))
        open_ticket(service, priority="urgent")  # the admin's, between the agent's
    clock.shift(timedelta(minutes=20))  # first response only
    run_check()
    assert alerts() == []
    assert [(address, total) for address, total, _ in digests()] == [(agent.email, 4), (admin.email, 4)]
    assert digests()[0][2] == [ticket.id for ticket in mine]


def test_up_to_three_tickets_keep_their_own_alerts_and_who_is_told_is_unchanged(service, agent, admin, clock):
    """A digest goes to whom the tickets' alerts would have gone: the assignee, else
    (none, or deactivated) every active admin."""
    boss, _ = StaffService(db.session).create(
        email="boss@helpdesk.test", name="Bo Boss", role="admin", password="boss-password-1"
    )
    gone, _ = StaffService(db.session).create(
        email="gone@helpdesk.test", name="Gone Agent", role="agent", password="gone-password-1"
    )
    mine = [open_ticket(service, priority="urgent", assignee_id=agent.id) for _ in range(4)]
    unassigned = [open_ticket(service, priority="urgent") for _ in range(2)]
    orphaned = open_ticket(service, priority="urgent", assignee_id=gone.id)
    gone.is_active = False
    db.session.commit()
    clock.shift(timedelta(minutes=16))

    assert run_check().alerts == 1 + 3 + 3
    assert digests() == [(agent.email, 4, [ticket.id for ticket in mine])]
    assert sorted((ticket_id, address) for ticket_id, address, _ in alerts()) == sorted(
        (ticket.id, address) for ticket in [*unassigned, orphaned] for address in (admin.email, boss.email)
    )


def test_the_next_check_digests_only_the_breaches_it_found_none_twice_none_lost(service, admin, clock):
    first = [open_ticket(service, priority="urgent") for _ in range(5)]
    clock.shift(timedelta(minutes=16))
    run_check()
    second = [open_ticket(service, priority="urgent") for _ in range(4)]
    clock.shift(timedelta(minutes=16))
    run_check()
    assert run_check().alerts == 0
    clock.shift(timedelta(hours=4))  # the resolution of all nine
    run_check()

    everyone = [ticket.id for ticket in first + second]
    assert digests() == [
        (admin.email, 5, [ticket.id for ticket in first]),
        (admin.email, 4, [ticket.id for ticket in second]),
        (admin.email, 9, everyone),
    ]
    assert sorted(alerted()) == sorted(
        (admin.email, ticket_id, reason) for ticket_id, reason in breach_reasons()
    )
    assert len(alerted()) == len(set(alerted())) == 18


@pytest.mark.parametrize("policy", ["quarantine", "accept"])
def test_a_staff_reply_to_a_digest_is_ignored_and_lands_on_no_ticket(
    app, service, admin, clock, sink, policy
):
    """A digest is about many tickets: answering it must not write into one of them.
    It went as any mail naming no ticket: into the quarantine, where approving it, or
    the `accept` policy, opened a ticket with the staff member as its customer and
    mailed them an acknowledgment. It is recorded as ignored, with its reason
    (docs/mail-gateway.md, "Answering staff mail about no ticket")."""
    tickets = [open_ticket(service, priority="urgent") for _ in range(4)]
    clock.shift(timedelta(minutes=16))
    run_check()
    (digest,) = [mail for mail in deliver(app, sink) if mail["To"].addresses[0].addr_spec == admin.email]
    answer = message(
        sender=admin.email,
        subject="Re: " + str(digest["Subject"]),
        body="I'll take TKT-000001 and TKT-000002.",
        in_reply_to=digest["Message-ID"],
    )
    for gateway in start_gateway(app, UNKNOWN_SENDER_POLICY=policy):
        assert gateway.send(answer) == (250, b"2.0.0 OK ignored")
    record = db.session.execute(select(InboundMail)).scalar_one()
    assert record.outcome == "ignored" and record.ticket_id is None
    assert "answers sla_digest outbox #" in record.reason
    assert "answer on the tickets in the portal" in record.reason
    assert db.session.execute(select(func.count(Ticket.id))).scalar_one() == len(tickets)
    assert db.session.execute(select(QuarantineItem)).first() is None
    written = db.session.execute(
        select(func.count(Message.id)).where(Message.ticket_id.in_([ticket.id for ticket in tickets]))
    ).scalar_one()
    assert written == len(tickets)  # each its opening message only


def test_a_forged_digest_id_is_no_digest_s(app, service, admin, clock, sink, gateway):
    """Only a genuinely signed id is a digest's: a made-up one in our domain names no
    mail we sent, and the reply goes as any mail naming no ticket."""
    open_ticket(service, priority="urgent")
    forged = message(
        sender=admin.email,
        subject="Re: SLA breaches",
        in_reply_to=f"<tkt.0.1.{'0' * 24}@helpdesk.helpdesk.test>",
    )
    assert gateway.send(forged) == (250, b"2.0.0 OK quarantined")


def test_two_processes_running_the_check_at_once_mark_each_breach_once(
    app, backend, database_url, service, agent, admin
):
    with time_machine.travel(now() - timedelta(days=2), tick=False):
        for n in range(lifecycle_worker.TICKETS):
            open_ticket(
                service,
                priority=("urgent", "high")[n % 2],
                subject=f"Outage {n}",
                assignee_id=agent.id if n % 3 else None,
            )
    reports = run_processes(lifecycle_worker.check, [(database_url,), (database_url,)])

    marked = [breach for report in reports for breach in report]
    assert len(marked) == len(set(marked)) == 2 * lifecycle_worker.TICKETS
    db.session.expire_all()
    assert len(sla_history()) == len(set(sla_history())) == 2 * lifecycle_worker.TICKETS
    # Each breach told once to its one recipient, by its ticket's alert or a digest
    # (40 of the tickets are the agent's; no run lists fewer than it is about).
    told = alerted()
    assert len(told) == len(set(told)) == 2 * lifecycle_worker.TICKETS
    assert all(total == len(listed) for _, total, listed in digests())
    assert (
        db.session.execute(
            select(func.count())
            .select_from(Ticket)
            .where(Ticket.first_response_breached.is_(True), Ticket.resolution_breached.is_(True))
        ).scalar_one()
        == lifecycle_worker.TICKETS
    )


# -- auto-close ------------------------------------------------------------------------------


def test_auto_close_closes_resolved_tickets_after_the_window_and_not_before(app, service, agent_actor, clock):
    ticket = open_ticket(service)
    resolve(service, ticket, agent_actor)
    mails_before = db.session.execute(select(func.count(OutboxMessage.id))).scalar_one()
    clock.shift(timedelta(days=7) - timedelta(seconds=1))  # AUTO_CLOSE_AFTER: 7 days
    assert auto_close(db.session, app.config).closed == ()
    db.session.commit()
    clock.shift(timedelta(seconds=1))
    assert auto_close(db.session, app.config).closed == (ticket.id,)
    db.session.commit()
    assert (ticket.status, ticket.closed_at) == ("closed", now())
    last = ticket.history[-1]
    assert (last.old_value, last.new_value, last.automated, last.actor_label) == (
        "resolved",
        "closed",
        True,
        "auto-close",
    )
    assert last.reason == "no reply for 7 days after it was resolved"
    assert db.session.execute(select(func.count(OutboxMessage.id))).scalar_one() == mails_before
    assert auto_close(db.session, app.config).closed == ()  # idempotent


def test_customer_reply_in_the_window_cancels_auto_close(app, service, agent_actor, clock):
    ticket = open_ticket(service)
    resolve(service, ticket, agent_actor)
    clock.shift(timedelta(days=3))
    service.add_message(ticket, body="Still broken!", actor=CUSTOMER, channel="email")
    db.session.commit()
    clock.shift(timedelta(days=8))
    assert auto_close(db.session, app.config).closed == ()
    db.session.commit()
    assert ticket.status == "reopened"


# -- how they are run -------------------------------------------------------------------------


def test_cli_commands_run_the_jobs_and_say_what_they_did(app, runner, service, agent_actor, admin, clock):
    resolved = open_ticket(service, priority="urgent")
    resolve(service, resolved, agent_actor)
    open_ticket(service, priority="urgent")
    clock.shift(timedelta(days=8))
    db.session.rollback()
    result = runner.invoke(args=["sla-check"])
    assert result.exit_code == 0, result.output
    assert result.output == (
        "sla-check: 1 first-response and 1 resolution breaches marked, 1 alerts queued, 0 priorities raised\n"
    )
    assert runner.invoke(args=["sla-check"]).output.startswith("sla-check: 0 first-response")
    result = runner.invoke(args=["auto-close"])
    assert (result.exit_code, result.output) == (0, "auto-close: 1 resolved tickets closed\n")


def test_spent_idempotency_keys_can_be_swept_from_cron(runner):
    """With LIFECYCLE_JOBS_INTERVAL=0 the gateway deletes no spent API idempotency
    keys (docs/web.md, "Idempotency keys"): cron runs the command instead."""
    result = runner.invoke(args=["idempotency-keys-sweep"])
    assert (result.exit_code, result.output) == (0, "idempotency-keys: 0 spent keys deleted\n")


def test_gateway_runs_the_jobs_then_stops_when_told(app, service, agent_actor, admin, clock):
    overdue = open_ticket(service, priority="urgent")
    resolved = open_ticket(service)
    resolve(service, resolved, agent_actor)
    clock.shift(timedelta(days=8))
    db.session.rollback()
    stopping = threading.Event()
    stopping.set()  # the jobs run once at start, then the stop is seen
    thread = threading.Thread(target=LifecycleJobs(app, stopping).run)
    thread.start()
    thread.join(timeout=60)
    assert not thread.is_alive()
    db.session.expire_all()
    assert overdue.first_response_breached is True and resolved.status == "closed"


def test_gateway_jobs_can_be_left_to_cron(app, service, clock):
    open_ticket(service, priority="urgent")
    clock.shift(timedelta(days=1))
    db.session.rollback()
    app.config["LIFECYCLE_JOBS_INTERVAL"] = timedelta(0)
    LifecycleJobs(app).run()  # returns at once, having done nothing
    assert sla_history() == []


def test_gateway_job_failure_is_logged_and_the_next_job_still_runs(app, service, caplog, clock):
    open_ticket(service, priority="urgent")
    clock.shift(timedelta(days=1))
    db.session.rollback()
    jobs = LifecycleJobs(app)

    def broken() -> None:
        raise RuntimeError("a bug")

    jobs.jobs = (("broken", broken), *jobs.jobs)
    results = jobs.run_once()
    assert [type(result).__name__ for result in results] == [
        "SlaCheckResult",
        "AutoCloseResult",
        "SweepResult",
        "SweepResult",
        "SweepResult",
    ]
    assert "broken: unexpected error" in caplog.text
    assert len(sla_history()) == 2


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_a_job_failing_on_the_schema_is_logged_as_a_bug_not_the_database_away(app, caplog):
    """SQLite says "no such table" with an OperationalError: the job's failure was
    logged as "database unavailable, retrying later", one line, no traceback."""
    jobs = LifecycleJobs(app)

    def behind() -> None:
        db.session.execute(text("SELECT * FROM a_table_of_a_later_release"))

    jobs.jobs = (("behind", behind),)
    with caplog.at_level(logging.WARNING, logger="mailgateway"):
        assert jobs.run_once() == []
    [record] = [r for r in caplog.records if r.name == "mailgateway.periodic"]
    assert record.levelno == logging.ERROR and record.exc_info is not None
    assert "database unavailable" not in caplog.text
