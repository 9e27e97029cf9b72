"""Every mail of ../shared/corpus/ through the real listener: none crashes it, none
gets a 5xx, each gets a recorded outcome, and none is quarantined for a reason a
sender fallback resolves or because processing failed. Prints a table by corpus
category.

tests/samples/ holds our own mails (written for these tests, not copied from
anyone's test data) of the shapes real mail has and the corpus lacks: broken or
missing From, bounces in other languages, mailing-list notices, and the human
mails that must stay human beside each new rule. EXPECTED.tsv gives each one's
exact outcome, sender, sender source and reason."""

from __future__ import annotations

from collections import Counter, defaultdict

from sqlalchemy import func, select

from helpdesk.extensions import db
from helpdesk.models import InboundMail, OutboxMessage, Ticket
from tests.support.corpus import CORPUS, SAMPLES, corpus, on_the_wire, samples
from tests.support.mail import start_gateway


def test_every_corpus_mail_gets_a_recorded_outcome(app):
    entries = corpus()
    outcomes: dict[str, Counter[str]] = defaultdict(Counter)
    for gateway in start_gateway(app, UNKNOWN_SENDER_POLICY="accept"):
        for entry in entries:
            raw = (CORPUS / entry["file"]).read_bytes()
            code, text = gateway.send(on_the_wire(raw), mail_from="corpus@example.org")
            assert code == 250, f"{entry['file']}: {code} {text!r}"
            outcome = text.decode().split()[2]
            outcomes[entry["category"]][outcome] += 1
            if outcome != "duplicate":  # stored as sent, byte for byte (smtplib ends the last line)
                wire = on_the_wire(raw)
                sent = wire if wire.endswith(b"\r\n") else wire + b"\r\n"
                latest = select(InboundMail.raw).order_by(InboundMail.id.desc()).limit(1)
                assert db.session.execute(latest).scalar_one() == sent, entry["file"]
            if entry["category"] == "bounce":
                assert outcome in ("ignored", "duplicate"), entry["file"]
    names = sorted({o for c in outcomes.values() for o in c})
    print("\n" + "category".ljust(14) + "".join(n.rjust(13) for n in names))
    for category, counts in sorted(outcomes.items()):
        print(category.ljust(14) + "".join(str(counts[n]).rjust(13) for n in names))
    total = sum(sum(c.values()) for c in outcomes.values())
    duplicates = sum(c["duplicate"] for c in outcomes.values())
    assert total == len(entries)
    recorded = db.session.execute(select(func.count(InboundMail.id))).scalar_one()
    assert recorded == total - duplicates
    held = (
        db.session.execute(select(InboundMail.reason).where(InboundMail.outcome == "quarantined"))
        .scalars()
        .all()
    )
    # Every corpus mail has an envelope sender, so "no sender address" never applies.
    assert [reason for reason in held if reason.startswith(("processing failed", "no sender address"))] == []


def test_each_sample_gets_its_exact_outcome_sender_and_reason(app):
    entries = samples()
    assert len(entries) == len(list(SAMPLES.glob("*.eml")))
    for gateway in start_gateway(app, UNKNOWN_SENDER_POLICY="accept"):
        for entry in entries:
            raw = (SAMPLES / entry["file"]).read_bytes()
            code, text = gateway.send(on_the_wire(raw), mail_from=entry["envelope"])
            assert code == 250, f"{entry['file']}: {code} {text!r}"
            record = db.session.execute(
                select(InboundMail).order_by(InboundMail.id.desc()).limit(1)
            ).scalar_one()
            got = (record.outcome, record.from_address, record.from_source)
            assert got == (entry["outcome"], entry["sender"], entry["source"]), entry["file"]
            assert entry["reason"] in record.reason, (entry["file"], record.reason)
            if entry["outcome"] != "created":
                assert record.ticket_id is None, entry["file"]
                continue
            ticket = db.session.get(Ticket, record.ticket_id)
            assert ticket.requester.email == entry["sender"], entry["file"]
            acknowledgments = db.session.execute(
                select(func.count(OutboxMessage.id)).where(
                    OutboxMessage.ticket_id == ticket.id, OutboxMessage.kind == "created"
                )
            ).scalar_one()
            assert acknowledgments == (1 if entry["acknowledged"] == "yes" else 0), entry["file"]
            if entry["source"] != "from":  # staff see where the sender came from
                note = ticket.messages[-1]  # an internal note by the gateway
                assert note.kind == "note" and "The sender was taken from" in note.body, entry["file"]
