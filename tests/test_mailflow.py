"""Mail flow at a glance (docs/web.md): intake counts, stuck mailboxes, a backed-up
outbox, on the portal's Mail page and on /metrics."""

from __future__ import annotations

from datetime import timedelta

from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select, update

from helpdesk.clock import now
from helpdesk.extensions import db
from helpdesk.inbound import quarantine
from helpdesk.inbound.ingest import Envelope, Outcome, ingest
from helpdesk.models import ImapMailboxState, InboundMail, QuarantineItem
from helpdesk.services import Actor
from helpdesk.services.mailflow import mail_flow
from tests.support.mail import SUPPORT, message
from tests.support.outbox import outbox_row


def test_counts_outcomes_per_channel_and_flags_stuck_mailboxes_and_backlog(app, gateway, senders):
    one = message(subject="one", message_id="<one@client.example>")
    gateway.send(one)
    # SPEC §10 counts deduplicated mail too: a second delivery is no row of its own.
    assert gateway.send(one) == (250, b"2.0.0 OK duplicate")
    gateway.send(message(sender="mallory@evil.example", subject="two"))
    gateway.send(message(headers={"Auto-Submitted": "auto-replied"}, subject="three"))
    db.session.add_all(
        [
            ImapMailboxState(
                key="a@imap:143/INBOX",
                last_uid=0,
                last_error="",
                last_success_at=now() - timedelta(minutes=2),
            ),
            ImapMailboxState(
                key="b@imap:143/INBOX",
                last_uid=0,
                last_error="OSError: refused",
                last_error_at=now(),
                last_success_at=now() - timedelta(hours=2),
            ),
            outbox_row("pending", timedelta(hours=1)),
            outbox_row("failed", timedelta(days=1)),
        ]
    )
    db.session.commit()
    flow = mail_flow(db.session, stuck_after=timedelta(minutes=15), backlog_after=timedelta(minutes=30))
    assert flow.inbound["smtp"]["created"] == 1
    assert flow.inbound["smtp"]["quarantined"] == 1 and flow.inbound["smtp"]["ignored"] == 1
    assert flow.inbound_last_day["smtp"]["created"] == 1 and flow.inbound["imap"]["created"] == 0
    assert flow.duplicates == {"smtp": 1, "imap": 0}
    assert [(b.key, b.stuck) for b in flow.mailboxes] == [
        ("a@imap:143/INBOX", False),
        ("b@imap:143/INBOX", True),
    ]
    assert flow.outbox["pending"] >= 1 and flow.outbox["failed"] == 1
    assert flow.outbox_backed_up


def test_mail_page_shows_the_flow_and_the_alarms(portal, app):
    db.session.add_all(
        [
            ImapMailboxState(key="stuck@imap:143/INBOX", last_uid=0, last_error=""),
            outbox_row("failed", timedelta(days=1)),
        ]
    )
    db.session.commit()
    page = portal.get("/mail").data.decode()
    assert "stuck@imap:143/INBOX" in page and ">stuck<" in page
    assert "1 mailbox not polled successfully" in page
    assert "<code>flask --app wsgi mailboxes forget KEY</code> removes it" in page  # docs/operations.md
    assert "1 notification failed for good" in page
    assert "Delivered again (duplicate)" in page


def test_metrics_are_off_without_a_token_and_need_it_when_on(client, app, gateway, senders):
    assert client.get("/metrics").status_code == 404
    app.config["METRICS_TOKEN"] = "s3cret-token"
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    counted = message(subject="counted", message_id="<counted@client.example>")
    gateway.send(counted)
    gateway.send(counted)
    response = client.get("/metrics", headers={"Authorization": "Bearer s3cret-token"})
    assert response.status_code == 200 and response.mimetype == "text/plain"
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.get_data(as_text=True))
        for sample in family.samples
    }
    listener = ("source", f"smtp {app.config['SMTP_LISTEN']}")
    created = (("channel", "smtp"), ("outcome", "created"), listener)
    assert samples[("helpdesk_inbound_mails_total", created)] == 1
    assert samples[("helpdesk_tickets", (("status", "new"),))] == 1
    assert samples[("helpdesk_inbound_duplicates_total", (("channel", "smtp"), listener))] == 1
    assert samples[("helpdesk_inbound_duplicates_total", (("channel", "imap"), ("source", "")))] == 0
    assert ("helpdesk_outbox_oldest_pending_seconds", ()) in samples


MAILBOX = "help@imap.example:993/INBOX"


def _flow():  # type: ignore[no-untyped-def]
    return mail_flow(db.session, stuck_after=timedelta(minutes=15), backlog_after=timedelta(minutes=30))


def test_mail_is_counted_per_smtp_listener_and_imap_mailbox(app, gateway, senders, agent):
    """SPEC §10: per mailbox and listener. Each record names where it came in, each
    duplicate is counted there, and a held mail approved stays where it came in."""
    listener = f"smtp {app.config['SMTP_LISTEN']}"
    one = message(subject="one", message_id="<one@client.example>")
    gateway.send(one)
    gateway.send(message(sender="mallory@evil.example", subject="held"))
    imap = Envelope("", (SUPPORT,), "imap", MAILBOX)
    assert ingest(one.as_bytes(), imap, app.config).outcome is Outcome.DUPLICATE
    assert ingest(message(subject="two").as_bytes(), imap, app.config).outcome is Outcome.CREATED
    item = db.session.execute(select(QuarantineItem)).scalar_one()
    quarantine.approve(db.session, item.id, Actor.staff(agent), app.config)
    db.session.commit()
    sources = db.session.execute(select(InboundMail.source).order_by(InboundMail.id)).scalars().all()
    assert sources == [listener, listener, MAILBOX]
    flow = _flow()
    assert [(s.channel, s.source, s.inbound["created"], s.duplicates) for s in flow.sources] == [
        ("imap", MAILBOX, 1, 1),
        ("smtp", listener, 2, 0),
    ]
    assert flow.sources[1].last_day["created"] == 2
    assert flow.inbound["smtp"]["created"] == 2 and flow.duplicates == {"smtp": 0, "imap": 1}


def test_mail_page_shows_each_mailbox_and_listener(portal, app, gateway, senders):
    gateway.send(message(subject="one"))
    db.session.add(ImapMailboxState(key=MAILBOX, last_uid=0, last_error=""))
    db.session.commit()
    page = portal.get("/mail").data.decode()
    assert f"<td>smtp {app.config['SMTP_LISTEN']}</td>" in page
    assert f"<td>{MAILBOX}</td>" in page  # polled, nothing received yet: zeros


def test_metrics_count_inbound_mail_per_source_and_mail_recorded_before_under_none(
    client, app, gateway, senders
):
    """A `source` label beside `channel`; mail recorded before migration 0043 (no
    source) under source="", which Prometheus reads as the series without it."""
    app.config["METRICS_TOKEN"] = "s3cret-token"
    listener = f"smtp {app.config['SMTP_LISTEN']}"
    counted = message(subject="counted", message_id="<counted@client.example>")
    gateway.send(counted)
    gateway.send(counted)
    gateway.send(message(subject="before"))
    db.session.execute(update(InboundMail).where(InboundMail.subject == "before").values(source=None))
    db.session.commit()
    response = client.get("/metrics", headers={"Authorization": "Bearer s3cret-token"})
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.get_data(as_text=True))
        for sample in family.samples
    }
    mails = "helpdesk_inbound_mails_total"
    assert samples[(mails, (("channel", "smtp"), ("outcome", "created"), ("source", listener)))] == 1
    assert samples[(mails, (("channel", "smtp"), ("outcome", "created"), ("source", "")))] == 1
    assert samples[(mails, (("channel", "imap"), ("outcome", "created"), ("source", "")))] == 0
    duplicates = "helpdesk_inbound_duplicates_total"
    assert samples[(duplicates, (("channel", "smtp"), ("source", listener)))] == 1
    assert samples[(duplicates, (("channel", "imap"), ("source", "")))] == 0
