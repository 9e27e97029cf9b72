"""The dedup key of a mail without Message-ID (docs/mail-gateway.md, "Deduplicate").

Such a mail is keyed by a hash of its content, and the same mail reaches the gateway
with different bytes depending on the way it came: the servers that receive it
prepend trace and delivery fields (Return-Path, Received, Delivered-To,
Authentication-Results…), and SMTP speaks CRLF where a mailbox may store LF. None
of that is the mail; the fields its author wrote and its body are.
"""

from __future__ import annotations

import hashlib
import re

import pytest

from helpdesk.inbound.dedup import beside_key, dedup_key, dedup_keys, same_header, written_hash
from helpdesk.inbound.parser import InboundMail, parse

AUTHOR = (
    b"From: Ann <ann@example.com>\r\n"
    b"To: support@helpdesk.test\r\n"
    b"Subject: Printer\r\n"
    b"Date: Mon, 02 Mar 2026 08:00:00 +0000\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"\r\n"
    b"My printer is on fire.\r\n"
)

# What Dovecot LMTP (and LDA) prepends by default: lmtp_hdr_delivery_address=final,
# lmtp_add_received_header=yes.
LMTP = (
    b"Return-Path: <ann@example.com>\r\n"
    b"Delivered-To: support@helpdesk.test\r\n"
    b"Received: from mx.helpdesk.test\r\n"
    b"\tby imap.helpdesk.test with LMTP id x1\r\n"
    b"\tfor <support@helpdesk.test>; Mon, 02 Mar 2026 08:00:01 +0000\r\n"
)
POSTFIX = (
    b"Return-Path: <ann@example.com>\r\n"
    b"X-Original-To: support@helpdesk.test\r\n"
    b"Delivered-To: support@helpdesk.test\r\n"
    b"Received: from mx2.helpdesk.test (mx2.helpdesk.test [192.0.2.2])\r\n"
    b"        by mail.helpdesk.test (Postfix) with ESMTPS id 4QxY1;\r\n"
    b"        Mon, 02 Mar 2026 08:00:03 +0000 (UTC)\r\n"
)
EXIM = b"Envelope-to: support@helpdesk.test\r\nReceived: from [192.0.2.9] by exim.helpdesk.test\r\n"
AUTHENTICATED = (
    b"ARC-Seal: i=1; a=rsa-sha256; d=relay.example; s=arc; cv=none; b=AbC\r\n"
    b"ARC-Message-Signature: i=1; a=rsa-sha256; d=relay.example; s=arc; bh=x; b=Def\r\n"
    b"ARC-Authentication-Results: i=1; relay.example; spf=pass\r\n"
    b"Authentication-Results: mx.helpdesk.test; dmarc=pass header.from=example.com\r\n"
    b"Received-SPF: pass (mx.helpdesk.test: domain of example.com designates 192.0.2.1)\r\n"
    b"DKIM-Signature: v=1; a=rsa-sha256; d=relay.example; s=fwd; bh=x;\r\n\t b=Ghi\r\n"
    b"Received: from mx1.example.com by mx.helpdesk.test with ESMTPS; Mon, 02 Mar 2026 08:00:02 +0000\r\n"
)


def key(raw: bytes) -> str:
    return dedup_key(parse(raw))


@pytest.mark.parametrize(
    "variant",
    [
        pytest.param(LMTP + AUTHOR, id="dovecot-lmtp"),
        pytest.param(POSTFIX + AUTHOR, id="postfix-local"),
        pytest.param(EXIM + AUTHOR, id="exim"),
        pytest.param(AUTHENTICATED + AUTHOR, id="authentication-and-arc"),
        pytest.param(LMTP + AUTHENTICATED + AUTHOR, id="two-hops"),
        pytest.param(AUTHOR.replace(b"\r\n", b"\n"), id="lf-line-endings"),
        pytest.param((LMTP + AUTHOR).replace(b"\r\n", b"\n"), id="lmtp-in-a-maildir-with-lf"),
        pytest.param(AUTHOR + b"\r\n", id="one-more-line-break-at-the-end"),
        pytest.param(AUTHOR.rstrip(b"\r\n"), id="no-line-break-at-the-end"),
        pytest.param(
            b"RECEIVED : from mx.helpdesk.test\r\n" + AUTHOR, id="name-in-other-case-space-before-colon"
        ),
    ],
)
def test_the_same_mail_by_any_way_has_the_key_it_has_as_sent(variant: bytes) -> None:
    assert key(variant) == key(AUTHOR)
    assert re.fullmatch("sha256:[0-9a-f]{64}", key(variant))


def test_the_same_mail_relayed_by_two_mx_hosts_is_one() -> None:
    first = b"Received: from client by mx1.helpdesk.test; Mon, 02 Mar 2026 08:00:01 +0000\r\n" + AUTHOR
    second = b"Received: from client by mx2.helpdesk.test; Mon, 02 Mar 2026 08:05:00 +0000\r\n" + AUTHOR
    assert key(first) == key(second)


def test_the_same_text_sent_on_another_day_is_another_mail() -> None:
    other_day = AUTHOR.replace(b"Mon, 02 Mar 2026", b"Tue, 03 Mar 2026")
    assert key(LMTP + other_day) != key(LMTP + AUTHOR)
    assert key(AUTHOR.replace(b"on fire", b"on fire again")) != key(AUTHOR)


def test_every_field_but_the_authors_is_left_out_wherever_it_stands() -> None:
    """A dated mail without Message-ID is keyed by its author's fields and body
    (`written_hash`): a server's or a filter's field below the trace block, between
    two Received or among the author's fields, is the way it came. The bytes below
    the leading trace block made each of those copies another mail."""
    below = AUTHOR.replace(b"Subject:", b"Received: from somewhere\r\nSubject:")
    assert key(below) == key(AUTHOR) == key(STAMPED + AUTHOR) == key(LMTP + STAMPED + AUTHOR)
    after_other = b"X-Mailer: ticket-bot\r\nReceived: from mx1\r\n" + AUTHOR
    assert key(after_other) == key(b"X-Mailer: ticket-bot\r\nReceived: from mx2\r\n" + AUTHOR)
    # A line break in the body is the author's, CRLF or LF alike; so is a subject's tag.
    assert key(AUTHOR + b"\r\nP.S. and the fax\r\n") != key(AUTHOR)
    assert key(AUTHOR.replace(b"Subject: ", b"Subject: [EXTERNAL] ")) != key(AUTHOR)


def before(mail: InboundMail) -> str | None:
    return dedup_keys(mail).before_upgrade


def test_the_key_from_before_the_upgrade_is_the_content_below_the_trace_block() -> None:
    """Looked up once by `ingest`, so that a copy of a mail recorded before the key
    changed is its duplicate; none where the key did not change (no Date, or a
    Message-ID)."""
    below = AUTHOR.replace(b"\r\n", b"\n").rstrip(b"\n")
    assert before(parse(LMTP + AUTHOR)) == "sha256:" + hashlib.sha256(below).hexdigest()
    assert before(parse(STAMPED + AUTHOR)) != before(parse(AUTHOR))
    dateless = AUTHOR.replace(b"Date: Mon, 02 Mar 2026 08:00:00 +0000\r\n", b"")
    with_id = AUTHOR.replace(b"MIME-Version", b"Message-ID: <a@b.example>\r\nMIME-Version")
    assert before(parse(LMTP + dateless)) is None
    assert before(parse(with_id)) is None


def test_a_mail_of_nothing_but_trace_fields_keeps_them_in_its_key() -> None:
    """With nothing of an author's left, the trace is all that tells two such mails
    apart: without it every one of them would be "a duplicate" and dropped."""
    assert key(b"Received: from a\r\n") != key(b"Received: from b\r\n")
    assert key(b"Received: from a\r\n\r\n") != key(b"Received: from b\r\n\r\n")


def test_a_mail_with_message_id_is_keyed_by_it_whatever_its_trace() -> None:
    with_id = AUTHOR.replace(b"MIME-Version", b"Message-ID: <Abc@Client.Example>\r\nMIME-Version")
    assert key(with_id) == key(LMTP + with_id) == "Abc@client.example"


def test_a_megabyte_of_trace_fields_is_read_in_one_pass() -> None:
    """A hostile header block: each line is looked at once, whatever its shape."""
    folded = b"Received: x" + b"\r\n y" * 200_000 + b"\r\n" + AUTHOR
    many = b"Received: x\r\n" * 80_000 + AUTHOR
    assert key(folded) == key(many) == key(AUTHOR)


def test_a_mail_without_date_is_keyed_by_its_bytes_as_it_came() -> None:
    """An alert from a device that writes neither Date nor Message-ID ("Toner low")
    arrives again a week later with the same text: its content alone cannot tell the
    two apart, and taken for a duplicate the second would be dropped for good. Only
    a Date makes the content the mail's own; without one the key is the bytes as they
    came, trace included (what it was before: a relay's retry is the same bytes)."""
    dateless = re.sub(rb"Date: [^\r]*\r\n", b"", AUTHOR)
    monday = b"Received: from printer by mx.helpdesk.test; Mon, 02 Mar 2026 08:00:01 +0000\r\n" + dateless
    a_week_later = monday.replace(b"Mon, 02 Mar", b"Mon, 09 Mar")
    assert key(monday) != key(a_week_later)
    assert key(monday) == key(monday)  # the same delivery again (a retry) is one
    assert key(LMTP + AUTHOR) == key(AUTHOR)  # with a Date, the trace still does not count


def test_a_mail_kept_beside_another_has_one_key_by_any_way_and_no_message_id_can_claim_it() -> None:
    """A mail under a Message-ID another mail holds is kept under `beside_key`
    (docs/mail-gateway.md, "Duplicates"): the same for its SMTP and mailbox copies,
    with a Date or without, and with a space, which no Message-ID key has."""
    undated = AUTHOR.replace(b"Date: Mon, 02 Mar 2026 08:00:00 +0000\r\n", b"")
    for mail in (AUTHOR, undated):
        keys = {
            beside_key("id@example.com", raw) for raw in (mail, LMTP + mail, mail.replace(b"\r\n", b"\n"))
        }
        assert len(keys) == 1
    assert beside_key("id@example.com", AUTHOR) != beside_key("id@example.com", undated)
    assert " " in beside_key("id@example.com", AUTHOR)
    assert " " not in key(b"Message-ID: < a b @ Example.COM >\r\n" + AUTHOR)


# Stamps servers and filters put among the trace fields of their copy of a mail:
# amavis between two Received, Gmail's X-Received and X-Google-Smtp-Source, Exchange
# Online's X-MS-Exchange-*, SpamAssassin's X-Spam-* (folded).
STAMPED = (
    b"Received: from mx1.helpdesk.test by gw.helpdesk.test; Mon, 02 Mar 2026 08:00:01 +0000\r\n"
    b"X-Virus-Scanned: amavisd-new at mx1.helpdesk.test\r\n"
    b"X-Spam-Status: No, score=-1.0 required=5.0\r\n\ttests=DKIM_SIGNED,DKIM_VALID\r\n"
    b"Received: from mx1.example.com by mx1.helpdesk.test; Mon, 02 Mar 2026 08:00:00 +0000\r\n"
    b"X-Received: by 2002:a17:906:1234 with SMTP id xyz; Mon, 02 Mar 2026 08:00:04 -0800\r\n"
    b"X-Google-Smtp-Source: AGHT+IFabc\r\n"
    b"X-MS-Exchange-Organization-SCL: 1\r\n"
)


def test_copies_of_one_mail_are_the_same_written_mail_whatever_the_servers_add() -> None:
    """Under a Message-ID another record holds, a mail is a duplicate when its
    author's fields and body are the same (docs/mail-gateway.md, "Duplicates"):
    any other field, wherever a server put it, is the way it came; the fields are
    read unfolded, whitespace runs as one space, names in any case."""
    author, body = AUTHOR.split(b"\r\n\r\n", 1)
    subject = b"Subject: Printer\r\n"
    stamped_between = author.replace(subject, subject + b"X-MS-Exchange-Transport: x\r\n")
    refolded = author.replace(subject, b"SUBJECT:   Printer\r\n").replace(
        b"To: support@helpdesk.test", b"To:\r\n support@helpdesk.test"
    )
    copies = {
        written_hash(raw)
        for raw in (
            AUTHOR,
            LMTP + AUTHOR,
            STAMPED + AUTHOR,
            LMTP + STAMPED + AUTHOR,
            stamped_between + b"\r\n\r\n" + body,
            refolded + b"\r\n\r\n" + body,
            AUTHOR.replace(b"\r\n", b"\n"),
        )
    }
    assert len(copies) == 1
    others = [
        AUTHOR.replace(b"Subject: Printer", b"Subject: [EXTERNAL] Printer"),
        AUTHOR.replace(b"on fire.", b"on fire!"),
        AUTHOR.replace(b"From: Ann <ann@example.com>", b"From: Eve <eve@evil.example>"),
        AUTHOR.replace(subject, subject + b"Auto-Submitted: auto-replied\r\n"),
        AUTHOR.replace(b"Printer\r\n", b"Print\r\n er\r\n"),  # a space inside is another subject
    ]
    assert {written_hash(raw) for raw in others}.isdisjoint(copies)
    assert len({written_hash(raw) for raw in others}) == len(others)


def test_a_header_cut_short_is_the_same_as_the_whole_one_up_to_its_cut() -> None:
    """A mail too big to take is recorded by its header, cut at MAX_HEADER_BYTES:
    two copies with trace blocks of other lengths are cut at other places in the
    author's fields, and are still one mail; a cut header of other author's fields
    is another, and so is one cut before any field of the author's."""
    head = AUTHOR.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n"
    long_trace = LMTP + STAMPED
    assert same_header(head, head) and same_header(LMTP + head, STAMPED + head)
    cut_early = (long_trace + head)[: len(long_trace) + 60]  # in the Subject
    cut_late = (LMTP + head)[: len(LMTP) + 120]  # in MIME-Version
    assert same_header(cut_early, cut_late) and same_header(cut_late, cut_early)
    assert same_header(cut_late, AUTHOR) and same_header(AUTHOR, cut_early)
    assert not same_header(head.replace(b"Printer", b"Scanner"), head)
    assert not same_header(cut_late.replace(b"Ann", b"Eve"), head)
    assert not same_header(cut_late, head.replace(b"Printer", b"Scanner"))
    assert not same_header(long_trace[:300], head)
