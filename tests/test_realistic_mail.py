"""The benchmarks' mail generator (bench/realistic_mail.py): the same seed gives the
same bytes, the realistic mix holds the shares and sizes its docstring promises,
and what it writes is mail our parser reads and our gateway turns into tickets and
replies, as it would a customer's."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from bench.realistic_mail import (
    ATTACHMENT_BYTES,
    ATTACHMENT_SHARE,
    HTML_SHARE,
    LANGUAGE_WEIGHTS,
    PLAIN4K_BYTES,
    REPLY_MIN_GAP,
    REPLY_SHARE,
    SHORT_BODY,
    TEXT_BYTES,
    THREADED_REPLY_SHARE,
    GeneratedMail,
    generate,
)
from helpdesk.extensions import db
from helpdesk.inbound.parser import parse
from helpdesk.models import InboundMail, Message
from helpdesk.numbering import format_number
from helpdesk.services.senders import SendersService

COUNT = 300
# Shares of a fixed seed's 300 mails land this close to their figures (about three
# standard deviations of a share drawn 300 times).
TOLERANCE = 0.08


@pytest.fixture(scope="module")
def realistic() -> list[GeneratedMail]:
    return generate("realistic", COUNT)


def share(mails: list[GeneratedMail], holds) -> float:  # type: ignore[no-untyped-def]
    return sum(1 for mail in mails if holds(mail)) / len(mails)


def test_same_seed_gives_the_same_bytes(realistic):
    assert [mail.raw for mail in generate("realistic", 60)] == [mail.raw for mail in realistic[:60]]
    assert [mail.raw for mail in generate("plain4k", 20)] == [mail.raw for mail in generate("plain4k", 20)]
    assert generate("realistic", 1, seed=2)[0].raw != realistic[0].raw
    tagged = generate("realistic", 1, tag="second-")[0]
    assert tagged.message_id != realistic[0].message_id and "second-" in tagged.message_id


def test_realistic_mix_holds_its_documented_shares(realistic):
    languages = [mail.language for mail in realistic]
    for code, weight in LANGUAGE_WEIGHTS.items():
        assert languages.count(code) / COUNT == pytest.approx(weight / 100, abs=TOLERANCE)
    # No reply before mail REPLY_MIN_GAP: there is no ticket old enough to answer.
    replies = [mail for mail in realistic if mail.is_reply]
    assert len(replies) / (COUNT - REPLY_MIN_GAP) == pytest.approx(REPLY_SHARE, abs=TOLERANCE)
    assert share(replies, lambda mail: mail.threaded) == pytest.approx(THREADED_REPLY_SHARE, abs=0.15)
    assert share(realistic, lambda mail: mail.html) == pytest.approx(HTML_SHARE, abs=TOLERANCE)
    assert share(realistic, lambda mail: mail.attachment) == pytest.approx(ATTACHMENT_SHARE, abs=TOLERANCE)
    assert {mail.attachment for mail in realistic} == {None, "png", "pdf"}


def test_realistic_sizes_stay_in_their_ranges(realistic):
    low, high = TEXT_BYTES
    assert all(low <= len(mail.text.encode()) <= high for mail in realistic)
    sizes = sorted(len(mail.text.encode()) for mail in realistic)
    assert sizes[0] < 1500 and sizes[-1] > 7000  # the whole range is used
    attached = [mail.attachment_bytes for mail in realistic if mail.attachment]
    assert all(ATTACHMENT_BYTES[0] <= size <= ATTACHMENT_BYTES[1] for size in attached)


def test_replies_answer_an_older_ticket_and_quote_it(realistic):
    new_tickets = [mail.index for mail in realistic if not mail.is_reply]
    for reply in (mail for mail in realistic if mail.is_reply):
        assert reply.reply_to is not None and reply.reply_to <= reply.index - REPLY_MIN_GAP
        original = realistic[reply.reply_to]
        assert not original.is_reply
        assert reply.ticket_number == new_tickets.index(original.index) + 1
        assert reply.subject == f"Re: [{format_number(reply.ticket_number, 'TKT-', 6)}] {original.subject}"
        first_line = original.text.split("\n", 1)[0]
        assert f"\n> {first_line}\n" in reply.text
        assert reply.language == original.language


def test_plain4k_and_short_shapes():
    for mail in generate("plain4k", 40):
        assert PLAIN4K_BYTES[0] <= len(mail.text.encode()) <= PLAIN4K_BYTES[1]
        assert (mail.html, mail.attachment, mail.is_reply) == (False, None, False)
    assert {mail.text for mail in generate("short", 5)} == {SHORT_BODY}


def test_every_generated_mail_parses(realistic):
    for mail in realistic + generate("plain4k", 40) + generate("short", 5):
        parsed = parse(mail.raw)
        assert (parsed.parse_error, parsed.over_limit) == (None, None), mail.index
        assert parsed.from_address == mail.sender
        assert parsed.message_id == mail.message_id.strip("<>")
        assert parsed.subject == mail.subject
        assert parsed.text_body.strip() == mail.text.strip()
        assert (parsed.html_body is not None) == mail.html
        assert [len(item.data) for item in parsed.attachments] == (
            [mail.attachment_bytes] if mail.attachment else []
        )
        if mail.is_reply:
            assert bool(parsed.in_reply_to) == mail.threaded


def test_realistic_mail_becomes_tickets_and_replies_through_the_gateway(gateway, realistic):
    SendersService(db.session).add("@example.com", "Example Ltd")
    db.session.commit()
    mails = realistic[:30]
    assert sum(mail.is_reply for mail in mails) >= 3 and any(mail.attachment for mail in mails)
    number = 0
    for mail in mails:
        if mail.is_reply:
            expected = f"appended {format_number(mail.ticket_number or 0, 'TKT-', 6)}"
        else:
            number += 1
            expected = f"created {format_number(number, 'TKT-', 6)}"
        assert gateway.send(mail.raw, mail_from=mail.sender) == (250, f"2.0.0 OK {expected}".encode())
    for reply in (mail for mail in mails if mail.is_reply):
        body = db.session.execute(
            select(Message.body)
            .join(InboundMail, Message.inbound_mail_id == InboundMail.id)
            .where(InboundMail.message_id == reply.message_id.strip("<>"))
        ).scalar_one()
        # What the customer wrote stays; the attribution and the quote below it go.
        assert reply.text.startswith(body) and len(body) > 200
        assert "\n>" not in body and "> " in reply.text[len(body) :]
