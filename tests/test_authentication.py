"""Believing the From address (docs/mail-gateway.md, RFC 8601).

Header values are shaped like the ones Gmail, Postfix with OpenDKIM/OpenDMARC,
rspamd and Exchange Online write. Every mail is raw bytes read by `parse`, as the
gateway reads it: the trusted server's headers on top, then the `Received` header
of the hop that brought the mail to it, then what the sender wrote.
"""

from __future__ import annotations

import base64
import dataclasses

import pytest

from helpdesk.inbound.authentication import (
    Unparseable,
    Verdict,
    assess,
    check,
    parse_authentication_results,
    sender_is_authenticated,
)
from helpdesk.inbound.limits import DEFAULT as DEFAULT_LIMITS
from helpdesk.inbound.parser import InboundMail, parse

TRUSTED = "mx.helpdesk.test"
RECEIVED = (
    b"Received: from mail.customer.example (mail.customer.example [192.0.2.7])\r\n"
    b"\tby mx.helpdesk.test with ESMTPS id 4Z; Mon, 2 Mar 2026 08:00:00 +0000"
)


def raw_mail(
    *top: bytes, below: tuple[bytes, ...] = (), from_address: str = "alice@customer.example"
) -> bytes:
    """Header fields `top`, the trace header the mail arrived with, then `below` and
    the sender's own fields."""
    sender = [f"From: Alice <{from_address}>".encode()] if from_address else []
    return b"\r\n".join(
        [
            *top,
            RECEIVED,
            *below,
            *sender,
            b"Subject: Printer",
            b"Message-ID: <m1@customer.example>",
            b"",
            b"It jams.",
            b"",
        ]
    )


def make_mail(*results: str, from_address: str = "alice@customer.example") -> InboundMail:
    return parse(
        raw_mail(
            *(b"Authentication-Results: " + value.encode() for value in results), from_address=from_address
        )
    )


def believed(*results: str, from_address: str = "alice@customer.example") -> bool:
    return sender_is_authenticated(make_mail(*results, from_address=from_address), TRUSTED)


# --- configuration ----------------------------------------------------------


def test_no_trusted_server_configured_believes_everyone() -> None:
    assert sender_is_authenticated(make_mail(), "")


def test_missing_header_is_not_believed() -> None:
    assert not believed()


def test_missing_from_address_is_not_believed() -> None:
    assert not believed(f"{TRUSTED}; dmarc=pass header.from=customer.example", from_address="")


@pytest.mark.parametrize(
    "fallback",
    [
        b"Sender: Alice <alice@customer.example>",
        b"Reply-To: <alice@customer.example>",
        b"Return-Path: <alice@customer.example>",
    ],
)
def test_a_sender_read_from_another_header_than_from_is_never_believed(fallback: bytes) -> None:
    """DMARC authenticates From. With From unreadable to us, a pass the trusted server
    wrote about the From it read must not vouch for Sender, Reply-To or Return-Path."""
    mail = parse(
        raw_mail(
            f"Authentication-Results: {TRUSTED}; dmarc=pass; "
            "spf=pass smtp.mailfrom=customer.example; "
            "dkim=pass header.d=customer.example".encode(),
            below=(fallback, b"From: Alice <alice at customer.example>"),
            from_address="",
        )
    )
    assert mail.from_address == "alice@customer.example" and mail.from_source != "from"
    assert check(mail, TRUSTED) is Verdict.FAIL
    assert check(mail, "") is Verdict.UNCHECKED  # nothing configured: taken as written


# --- DMARC -----------------------------------------------------------------


def test_dmarc_pass_is_believed() -> None:
    assert believed(f"{TRUSTED}; dmarc=pass (p=NONE sp=NONE dis=NONE) header.from=customer.example")


def test_dmarc_pass_without_header_from_is_believed() -> None:
    assert believed(f"{TRUSTED}; dmarc=pass")


@pytest.mark.parametrize("result", ["fail", "none", "temperror", "permerror", "bestguesspass"])
def test_dmarc_other_results_are_not_believed(result: str) -> None:
    assert not believed(f"{TRUSTED}; dmarc={result} (p=REJECT) header.from=customer.example")


def test_dmarc_pass_for_another_from_domain_is_not_believed() -> None:
    assert not believed(f"{TRUSTED}; dmarc=pass header.from=attacker.example")


# --- SPF -------------------------------------------------------------------


@pytest.mark.parametrize(
    "mailfrom",
    [
        "alice@customer.example",
        "customer.example",
        "bounces+123@mail.customer.example",  # ESP bounce subdomain: relaxed alignment
        '"alice@customer.example"',
    ],
)
def test_spf_pass_aligned_is_believed(mailfrom: str) -> None:
    assert believed(
        f"{TRUSTED}; spf=pass (mx.helpdesk.test: domain of sender designates "
        f"192.0.2.7 as permitted sender) smtp.mailfrom={mailfrom}"
    )


def test_spf_pass_for_the_parent_of_a_subdomain_sender_is_believed() -> None:
    assert believed(
        f"{TRUSTED}; spf=pass smtp.mailfrom=customer.example", from_address="alice@eu.customer.example"
    )


def test_spf_pass_unaligned_is_not_believed() -> None:
    assert not believed(f"{TRUSTED}; spf=pass smtp.mailfrom=bounce@esp.example")


def test_spf_pass_on_a_lookalike_domain_is_not_believed() -> None:
    assert not believed(f"{TRUSTED}; spf=pass smtp.mailfrom=evilcustomer.example")
    assert not believed(f"{TRUSTED}; spf=pass smtp.mailfrom=customer.example.evil.test")


def test_spf_pass_for_a_bare_tld_is_not_alignment() -> None:
    assert not believed(f"{TRUSTED}; spf=pass smtp.mailfrom=example")


def test_spf_helo_alone_is_not_enough() -> None:
    assert not believed(f"{TRUSTED}; spf=pass smtp.helo=customer.example")


@pytest.mark.parametrize("result", ["fail", "softfail", "neutral", "none"])
def test_spf_other_results_are_not_believed(result: str) -> None:
    assert not believed(f"{TRUSTED}; spf={result} smtp.mailfrom=alice@customer.example")


# --- DKIM ------------------------------------------------------------------


def test_dkim_pass_aligned_is_believed() -> None:
    assert believed(
        f"{TRUSTED}; dkim=pass (2048-bit key; unprotected) "
        "header.d=customer.example header.i=@customer.example "
        "header.s=selector1 header.b=AbCdEf12"
    )


def test_dkim_pass_with_only_header_i_is_believed() -> None:
    assert believed(f"{TRUSTED}; dkim=pass header.i=@mail.customer.example header.s=s1")


def test_dkim_pass_unaligned_is_not_believed() -> None:
    assert not believed(f"{TRUSTED}; dkim=pass header.d=sendgrid.net header.s=s1")


def test_dkim_fail_aligned_is_not_believed() -> None:
    assert not believed(f"{TRUSTED}; dkim=fail (body hash did not verify) header.d=customer.example")


# --- whose header ----------------------------------------------------------


def test_header_from_an_untrusted_authserv_id_is_ignored() -> None:
    # The sender (or any relay) can write whatever it likes under its own name.
    assert not believed("mx.attacker.example; dmarc=pass header.from=customer.example")
    assert not believed(
        "mx.google.com; dkim=pass header.i=@customer.example; "
        "spf=pass smtp.mailfrom=alice@customer.example; "
        "dmarc=pass (p=NONE) header.from=customer.example"
    )


def test_authserv_id_is_compared_case_insensitively_with_version() -> None:
    assert believed("MX.Helpdesk.Test 1; dmarc=pass header.from=customer.example")
    assert sender_is_authenticated(make_mail("mx.helpdesk.test; dmarc=pass"), "MX.HELPDESK.TEST")


def test_authserv_id_that_only_starts_like_ours_is_ignored() -> None:
    assert not believed("mx.helpdesk.test.attacker.example; dmarc=pass")


def test_trusted_fail_and_untrusted_pass_is_not_believed() -> None:
    assert not believed(
        "mx.attacker.example; dmarc=pass header.from=customer.example",
        f"{TRUSTED}; dmarc=fail (p=REJECT) header.from=customer.example",
    )


def test_forged_header_with_the_trusted_id_is_believed_by_design() -> None:
    # We cannot tell it from a genuine one: the receiving server must strip
    # incoming Authentication-Results carrying its authserv-id (RFC 8601 §5).
    # This test documents that limit so nobody mistakes it for protection.
    assert believed(
        f"{TRUSTED}; spf=fail smtp.mailfrom=alice@customer.example",
        f"{TRUSTED}; dmarc=pass header.from=customer.example",
    )


def test_one_milter_per_header_all_count() -> None:
    # Postfix with OpenDKIM and OpenDMARC: one header per milter, same authserv-id.
    assert believed(
        f"{TRUSTED}; spf=softfail smtp.mailfrom=bounce@esp.example",
        f"{TRUSTED}; dkim=pass (2048-bit key) header.d=customer.example header.s=k1",
        f"{TRUSTED}; dmarc=none (p=none dis=none) header.from=customer.example",
    )


# --- parsing ---------------------------------------------------------------

GMAIL = (
    "mx.helpdesk.test;\r\n"
    '       dkim=pass header.i=@customer.example header.s=20230601 header.b="Xy1/+z";\r\n'
    "       spf=pass (mx.helpdesk.test: domain of alice@customer.example designates "
    "2001:db8::1 as permitted sender) smtp.mailfrom=alice@customer.example;\r\n"
    "       dmarc=pass (p=NONE sp=NONE dis=NONE) header.from=customer.example"
)


def test_multiline_gmail_style_header_parses() -> None:
    authserv_id, results = parse_authentication_results(GMAIL)
    assert authserv_id == "mx.helpdesk.test"
    assert [(r.method, r.result) for r in results] == [("dkim", "pass"), ("spf", "pass"), ("dmarc", "pass")]
    assert results[0].properties["header.b"] == "Xy1/+z"
    assert results[1].properties["smtp.mailfrom"] == "alice@customer.example"


def test_comments_nested_and_with_semicolons_are_ignored() -> None:
    value = (
        f"{TRUSTED} (Postfix; escaped \\) paren (nested; deeper)); "
        'DKIM = Pass (signature; verified) header.d = "customer.example"'
    )
    assert believed(value)
    _, results = parse_authentication_results(value)
    assert results[0].method == "dkim" and results[0].result == "pass"


def test_quote_inside_a_comment_is_just_a_character() -> None:
    # RFC 5322 ctext: a '"' in a comment opens no quoted-string.
    assert believed(f"{TRUSTED} (it's \"odd); dkim=pass header.d=customer.example")


def test_quoted_authserv_id_and_method_version() -> None:
    assert believed(f'"{TRUSTED}"; dkim/1=pass header.d=customer.example')


def test_no_result_header_is_parsed_and_not_believed() -> None:
    assert parse_authentication_results(f"{TRUSTED}; none") == (TRUSTED, [])
    assert not believed(f"{TRUSTED}; none")


def test_exchange_online_style_keys_do_not_break_parsing() -> None:
    assert believed(
        f"{TRUSTED}; spf=pass (sender IP is 192.0.2.1) "
        "smtp.mailfrom=customer.example; dkim=pass (signature was verified) "
        "header.d=customer.example;dmarc=pass action=none "
        "header.from=customer.example;compauth=pass reason=100"
    )


def test_reason_property_and_trailing_semicolon() -> None:
    assert believed(f'{TRUSTED}; spf=pass reason="ip4 match; ok" smtp.mailfrom=alice@customer.example;')


@pytest.mark.parametrize(
    "value",
    [
        f"{TRUSTED}; dmarc=pass (unterminated comment header.from=customer.example",
        f"{TRUSTED}; dmarc=pass) header.from=customer.example",
        f'{TRUSTED}; dmarc="pass header.from=customer.example',
        f"{TRUSTED} extra words; dmarc=pass header.from=customer.example",
        f"{TRUSTED}; dmarc pass header.from=customer.example",
        f"{TRUSTED}; =pass",
        "",
        ";dmarc=pass",
    ],
)
def test_unparseable_headers_are_not_believed(value: str) -> None:
    with pytest.raises(Unparseable):
        parse_authentication_results(value)
    assert not believed(value)


@pytest.mark.parametrize(
    "value",
    [
        # A DKIM signature whose d= is `customer.example(x)s=1.attack.example`, a name
        # under the sender's own zone, verifies; a server that copies d= as written
        # gives a value whose "comment" hides the sender's domain.
        f"{TRUSTED}; dkim=pass header.d=customer.example(x)s=1.attack.example header.s=sel",
        f"{TRUSTED}; dkim=pass header.d=customer.example (x) s=1.attack.example",
        f"{TRUSTED}; dkim=pass header.d=customer.example(.attack.example header.s=x)",
        f"{TRUSTED}; spf=pass smtp.mailfrom=a@customer.example(.attack.example header.x=y)",
        f"{TRUSTED}; dkim=pass header.d=customer.example reason=a (x) s=1.attack.example",
    ],
)
def test_a_comment_after_a_property_hides_nothing_of_the_value(value: str) -> None:
    # A property's value may be the sender's words: after a comment there, the
    # result keeps its method and result but none of its properties, so it aligns
    # with nothing (docs/mail-gateway.md).
    _authserv_id, (result,) = parse_authentication_results(value)
    assert (result.method, result.result, result.properties, result.properties_read) == (
        "dkim" if "dkim" in value else "spf",
        "pass",
        {},
        False,
    )
    assert not believed(value)


# As OVH's and Fastmail's servers write them (Fastmail's authentication milter): a
# comment after the dmarc result's policy properties, another after iprev's address.
MILTER = (
    f"{TRUSTED};\r\n    arc=none (no signatures found);\r\n"
    "    dkim=pass (2048-bit rsa key sha256) header.d=customer.example header.i=@customer.example"
    " header.b=DbYa7C9k header.a=rsa-sha256 header.s=smtp x-bits=2048;\r\n"
    "    dmarc={dmarc} policy.published-domain-policy=quarantine policy.applied-disposition=none"
    " policy.evaluated-disposition=none (p=quarantine,d=none,d.eval=none) policy.policy-from=p"
    " header.from=customer.example;\r\n"
    "    iprev=pass smtp.remote-ip=192.0.2.7 (mail.customer.example);\r\n"
    "    spf=pass smtp.mailfrom=alice@customer.example smtp.helo=mail.customer.example"
)


def test_a_comment_after_a_property_leaves_the_other_results_of_the_header() -> None:
    """Every mail through such a server was not believed: one result with a comment
    after a property made the whole header unreadable, its aligned DKIM pass too."""
    assert believed(MILTER.format(dmarc="pass"))
    _authserv_id, results = parse_authentication_results(MILTER.format(dmarc="pass"))
    assert [(r.method, r.result, r.properties_read) for r in results] == [
        ("arc", "none", True),
        ("dkim", "pass", True),
        ("dmarc", "pass", False),
        ("iprev", "pass", False),
        ("spf", "pass", True),
    ]


def test_a_result_whose_properties_are_unread_still_fails_but_never_passes() -> None:
    # DMARC's fail stands whatever its properties; a pass that names no From passes nothing.
    assert not believed(MILTER.format(dmarc="fail"))
    assert not believed(f"{TRUSTED}; dmarc=pass policy.policy-from=p (x) header.from=customer.example")


def test_comments_where_servers_write_them_are_read() -> None:
    assert believed(
        f'{TRUSTED} (amavisd-new); dkim=pass (2048-bit key; unprotected) reason="ok" (checked) '
        "header.d=customer.example header.s=s1; dmarc=pass(p=REJECT) header.from=customer.example"
    )


def test_unparseable_trusted_header_does_not_hide_a_good_one() -> None:
    assert believed(
        f"{TRUSTED}; dmarc=pass (broken",
        f"{TRUSTED}; dkim=pass header.d=customer.example",
    )


# --- read as the trusted server wrote it ---------------------------------------

PASS = TRUSTED.encode() + b"; dmarc=pass header.from=customer.example"


def believed_raw(*top: bytes, below: tuple[bytes, ...] = ()) -> bool:
    return sender_is_authenticated(parse(raw_mail(*top, below=below)), TRUSTED)


def test_the_raw_control_is_believed() -> None:
    assert believed_raw(b"Authentication-Results: " + PASS)
    assert check(parse(raw_mail(b"Authentication-Results: " + PASS)), TRUSTED) is Verdict.PASS


@pytest.mark.parametrize(
    "value",
    [
        b"=?utf-8?b?" + base64.b64encode(PASS) + b"?=",
        b"=?us-ascii?q?" + PASS.replace(b" ", b"_").replace(b";", b"=3B").replace(b"=", b"=3D") + b"?=",
        b"\xc2\xa0" + PASS,  # a leading no-break space
        PASS.replace(b"mx.", b"\xef\xbd\x8dx."),  # fullwidth m
        PASS.replace(b"mx.", b"m\xe2\x80\x8bx."),  # a zero-width space inside the id
        PASS.replace(b" ", b"\x1c"),  # a control character Python splits on
    ],
)
def test_encoded_or_unicode_dressed_headers_count_for_nothing(value: bytes) -> None:
    assert not believed_raw(b"Authentication-Results: " + value)


def test_a_trusted_header_below_the_trace_header_that_ends_the_servers_own_came_with_the_mail() -> None:
    forged = b"Authentication-Results: " + PASS
    fail = b"Authentication-Results: " + TRUSTED.encode() + b"; dmarc=fail header.from=customer.example"
    earlier_hop = b"Received: from laptop.customer.example by mail.customer.example"
    assert not believed_raw(fail, below=(forged,))
    assert not believed_raw(fail, below=(earlier_hop, forged))
    # Milters and Gmail write their header just below the server's own Received: the
    # same place a forged header the sender put on top of its mail ends up in. Only
    # the receiving server's stripping (RFC 8601 §5) tells those apart.
    assert believed_raw(below=(forged,))
    # So, with nothing of the server's above, is one below a Received the sender wrote
    # (the search passes trace headers: later hops add theirs on top). A placement rule
    # would not help: the sender drops that Received. docs/security.md.
    assert believed_raw(below=(earlier_hop, forged))


def test_later_hops_inside_the_organisation_do_not_hide_the_trusted_headers() -> None:
    internal = b"Received: from mx.helpdesk.test by gateway.helpdesk.test; Mon, 2 Mar 2026 08:00:01 +0000"
    assert believed_raw(internal, b"Authentication-Results: " + PASS)


@pytest.mark.parametrize(
    ("signer", "from_address", "aligned"),
    [
        ("mail.customer.co.uk", "alice@customer.co.uk", True),
        ("co.uk", "alice@customer.co.uk", False),  # a public suffix is nobody's
        ("github.io", "alice@evil.github.io", False),  # sibling tenants of a shared suffix
        ("other.github.io", "alice@evil.github.io", False),
        ("evil.github.io", "alice@evil.github.io", True),
    ],
)
def test_alignment_is_by_organizational_domain_of_the_public_suffix_list(
    signer: str, from_address: str, aligned: bool
) -> None:
    assert believed(f"{TRUSTED}; dkim=pass header.d={signer}", from_address=from_address) is aligned


# --- the header as the trusted server read it ----------------------------------------
#
# The receiving server strips the Authentication-Results with its own authserv-id
# that came with the mail (RFC 8601 §5), on the fields as it read them: lines end at
# LF. The email package breaks lines at a bare CR as well, and reads on past a line
# that servers take for the start of the body. A field hidden from the server that
# way was never stripped, so such a header is never believed.

SERVER_FAIL = (
    b"Authentication-Results: " + TRUSTED.encode() + b"; spf=fail smtp.mailfrom=attacker.example; dmarc=fail"
)
FORGED = b"Authentication-Results: " + PASS


def attack(*hiding: bytes) -> bytes:
    """The attacker's mail as the gateway gets it from the trusted server: its
    Received, the milter's verdict below it, then what the attacker wrote."""
    return raw_mail(below=(SERVER_FAIL, *hiding))


def test_the_reported_mail_a_bare_cr_hides_a_forged_header_from_the_server() -> None:
    raw = (
        b"Received: from mail.attacker.example (mail.attacker.example [203.0.113.9])\r\n"
        b"\tby mx.helpdesk.test with ESMTPS id 9Q; Mon, 2 Mar 2026 09:00:00 +0000\r\n"
        b"Authentication-Results: mx.helpdesk.test; spf=fail smtp.mailfrom=attacker.example; "
        b"dkim=none; dmarc=fail (p=REJECT) header.from=company.example\r\n"
        b"X-Mailer: Foo\rAuthentication-Results: mx.helpdesk.test; dmarc=pass header.from=company.example\r\n"
        b"From: Agnes Agent <agent@company.example>\r\n"
        b"Subject: Re: [TKT-000001] Printer\r\n"
        b"Message-ID: <evil1@attacker.example>\r\n"
        b"\r\n"
        b"Please send your password.\r\n"
    )
    mail = parse(raw)
    # The email package sees two Authentication-Results; the server saw one, and X-Mailer.
    assert [name for name, _ in mail.headers].count("authentication-results") == 2
    assert [name for name, _ in mail.raw_headers] == [
        "received",
        "authentication-results",
        "x-mailer",
        "from",
        "subject",
        "message-id",
    ]
    assert mail.header_ambiguity is not None and "bare CR" in mail.header_ambiguity
    assert check(mail, TRUSTED) is Verdict.FAIL
    # The same mail after the server stripped the forged field it saw: FAIL as well.
    stripped = raw.replace(b"X-Mailer: Foo\rAuthentication-Results", b"X-Mailer: Foo\r\nX-Stripped")
    assert check(parse(stripped), TRUSTED) is Verdict.FAIL


@pytest.mark.parametrize(
    "hiding",
    [
        (b"X-Mailer: Foo\r" + FORGED,),  # one X-Mailer field to a server
        (b"X-Mailer: Foo\r\r" + FORGED,),
        (b"X-Mailer: Foo\r\n\tbar\r" + FORGED,),  # inside a folded field
        (b"X-Mailer: Foo", b"From attacker", FORGED),  # servers read the body from here
        (b"X-Mailer: Foo", b":no name", FORGED),
        (b"X-Mailer: Foo", b"From attacker\r" + FORGED),
    ],
)
def test_a_field_the_server_did_not_read_as_one_counts_for_nothing(hiding: tuple[bytes, ...]) -> None:
    mail = parse(attack(*hiding))
    assert mail.header_ambiguity is not None
    assert check(mail, TRUSTED) is Verdict.FAIL
    assert "authentication-results" not in [name for name, _ in mail.raw_headers[2:]]


def test_a_bare_cr_anywhere_in_the_header_gives_fail_even_beside_a_genuine_pass() -> None:
    """The price of the rule, paid on purpose: no mail server writes a bare CR (RFC
    5322 forbids it), and a header holding one cannot be read the way the server
    read it with certainty. Such mail follows the unknown-sender policy."""
    genuine = b"Authentication-Results: " + PASS
    assert believed_raw(genuine)
    assert not believed_raw(genuine, below=(b"X-Note: a\rb",))
    assert not believed_raw(genuine, below=(b"X-Note: ends in a bare CR\r",))


def test_a_bare_cr_in_the_body_or_lines_ending_in_lf_alone_change_nothing() -> None:
    genuine = b"Authentication-Results: " + PASS
    raw = raw_mail(genuine)
    assert check(parse(raw.replace(b"It jams.", b"It\rjams.")), TRUSTED) is Verdict.PASS
    assert check(parse(raw.replace(b"\r\n", b"\n")), TRUSTED) is Verdict.PASS
    assert parse(raw.replace(b"\r\n", b"\n")).header_ambiguity is None


def test_a_field_name_with_a_blank_before_its_colon_is_a_field_to_a_server() -> None:
    """Postfix reads `Name :` as a field, the email package as the start of the body:
    a field the server read and we did not could be a second From."""
    mail = parse(raw_mail(b"Authentication-Results: " + PASS, below=(b"X-Odd : value",)))
    assert "x-odd" in [name for name, _ in mail.raw_headers]
    assert check(mail, TRUSTED) is Verdict.FAIL


def test_a_mail_whose_lines_all_end_in_a_bare_cr_is_not_believed() -> None:
    raw = raw_mail(b"Authentication-Results: " + PASS).replace(b"\r\n", b"\r")
    mail = parse(raw)
    assert mail.from_address == "alice@customer.example"  # still read, as before
    assert check(mail, TRUSTED) is Verdict.FAIL


# --- a trusted header that cannot be read is still the server's -----------------------


@pytest.mark.parametrize(
    "value",
    [
        TRUSTED.encode() + b"; spf=none smtp.helo=x=y; dmarc=fail header.from=customer.example",
        TRUSTED.encode() + b"; spf=none smtp.helo=\xc3\xa9t\xc3\xa9; dmarc=fail",  # 8-bit HELO
        TRUSTED.encode() + b" (unterminated; dmarc=fail",
        TRUSTED.encode() + b" 1 2; dmarc=fail",
        b'"' + TRUSTED.encode() + b'"; dmarc=fail reason="unterminated',
        TRUSTED.upper().encode() + b"; dmarc",
    ],
)
def test_an_unparseable_trusted_header_starts_the_run_so_a_forged_one_below_the_trace_never_counts(
    value: bytes,
) -> None:
    """Before, a trusted header that failed to parse was skipped: the search went on
    past the server's Received and took the sender's forged header for its own."""
    trusted = b"Authentication-Results: " + value
    with pytest.raises(Unparseable):
        parse_authentication_results(parse(raw_mail(trusted)).raw_headers[0][1])
    assert not believed_raw(trusted, below=(FORGED,))
    assert not believed_raw(trusted, below=(b"Received: from laptop by mail.attacker.example", FORGED))
    # It passes nothing itself, and does not hide the server's other headers.
    assert believed_raw(trusted, b"Authentication-Results: " + PASS)


# --- one From, and a DMARC fail that stands ---------------------------------------------
#
# RFC 5322 allows one From field naming one address (two need a Sender). A DKIM
# signature covers the bottom-most From field it names (RFC 6376 §5.4.2), while this
# gateway and many readers take the first: a sender signed by its own mailbox provider
# puts a customer of the same provider in a From field above its own.

SIGNED_BY_THE_PROVIDER = (
    f"Authentication-Results: {TRUSTED}; dkim=pass header.d=customer.example header.s=s1; "
    "dmarc=pass header.from=customer.example"
).encode()


@pytest.mark.parametrize(
    "froms",
    [
        (b"From: Victim <victim@customer.example>", b"From: Eve <eve@customer.example>"),
        (b"From: Victim <victim@customer.example>, Eve <eve@customer.example>",),
        (b"From: victim@customer.example eve@customer.example",),  # read liberally: two words
        (b"From: Victim <victim@customer.example>", b"From: nobody"),
    ],
)
def test_a_header_with_more_than_one_from_is_not_believed(froms: tuple[bytes, ...]) -> None:
    mail = parse(raw_mail(SIGNED_BY_THE_PROVIDER, below=froms, from_address=""))
    assert (mail.from_address, mail.from_source) == ("victim@customer.example", "from")
    assert mail.header_ambiguity is not None and "From" in mail.header_ambiguity
    assert check(mail, TRUSTED) is Verdict.FAIL
    assert check(mail, "") is Verdict.UNCHECKED  # nothing configured: taken as written


@pytest.mark.parametrize("cap", [{"header_fields": 20}, {"header_bytes": 1024}])
def test_a_from_read_from_a_header_read_only_in_part_is_not_believed(cap: dict[str, int]) -> None:
    """Past a header cap only the first fields are read: the victim's From on top
    is seen, the sender's own From at the bottom (the one its provider signed) is
    not, so the two-From rule above could not apply. Such a From is never believed."""
    filler = tuple(b"X-Filler-%d: %s" % (n, b"x" * 40) for n in range(30))
    raw = raw_mail(
        SIGNED_BY_THE_PROVIDER,
        below=(b"From: Victim <victim@customer.example>", *filler),
        from_address="eve@customer.example",
    )
    mail = parse(raw, dataclasses.replace(DEFAULT_LIMITS, **cap))
    assert mail.over_limit and mail.header_read_in_part and mail.from_address == "victim@customer.example"
    assessment = assess(mail, TRUSTED)
    assert assessment.verdict is Verdict.FAIL and "read only in part" in assessment.reason
    assert check(mail, "") is Verdict.UNCHECKED  # nothing configured: taken as written
    whole = parse(raw)  # within the default caps: both From fields seen
    assert not whole.header_read_in_part and check(whole, TRUSTED) is Verdict.FAIL


@pytest.mark.parametrize(
    "field",
    [
        b"From: eve@customer.example; victim@customer.example",
        b"From: Eve <eve@customer.example>; Victim <victim@customer.example>",
    ],
)
def test_a_from_of_addresses_a_semicolon_separates_is_not_believed(field: bytes) -> None:
    """The address grammar reads `a; b` as b alone (a, an unclosed group, is left
    unread), while the standard library and a DMARC module may read a: the sender
    signed by its provider as Eve was read as the victim, with one address and a pass."""
    mail = parse(raw_mail(SIGNED_BY_THE_PROVIDER, below=(field,), from_address=""))
    assert (mail.from_address, mail.from_source) == ("victim@customer.example", "from")
    assert mail.header_ambiguity == "its From names more than one address"
    assert check(mail, TRUSTED) is Verdict.FAIL
    once = raw_mail(
        SIGNED_BY_THE_PROVIDER, below=(b"From: a@customer.example; a@customer.example",), from_address=""
    )
    assert check(parse(once), TRUSTED) is Verdict.PASS  # one address, twice


def test_one_from_naming_one_address_twice_is_one_address() -> None:
    raw = raw_mail(
        SIGNED_BY_THE_PROVIDER,
        below=(b"From: Alice <alice@customer.example>, alice@customer.example",),
        from_address="",
    )
    assert check(parse(raw), TRUSTED) is Verdict.PASS


@pytest.mark.parametrize(
    "results",
    [
        (f"{TRUSTED}; dkim=pass header.d=customer.example; dmarc=fail header.from=customer.example",),
        (f"{TRUSTED}; spf=pass smtp.mailfrom=alice@customer.example; dmarc=fail",),
        # One header per milter (OpenDKIM, OpenDMARC): the fail still stands.
        (
            f"{TRUSTED}; dkim=pass header.d=mail.customer.example",
            f"{TRUSTED}; dmarc=fail (p=REJECT adkim=s) header.from=customer.example",
        ),
        (f"{TRUSTED}; dmarc=pass header.from=customer.example; dmarc=fail header.from=customer.example",),
    ],
)
def test_a_trusted_dmarc_fail_is_not_overridden_by_an_aligned_pass(results: tuple[str, ...]) -> None:
    """DMARC is the From domain's own policy (a strict alignment, say): the relaxed
    alignment of a DKIM or SPF pass cannot overrule the server that evaluated it."""
    assert not believed(*results)


@pytest.mark.parametrize("result", ["none", "temperror", "permerror"])
def test_no_dmarc_verdict_leaves_the_decision_to_an_aligned_pass(result: str) -> None:
    # `none`: the domain publishes no policy; the errors: none could be read.
    assert believed(f"{TRUSTED}; dkim=pass header.d=customer.example; dmarc={result}")


# --- internationalised domains: compared as DNS names them ------------------------------


@pytest.mark.parametrize(
    ("result", "from_address", "aligned"),
    [
        ("dkim=pass header.d=xn--bcher-kva.example", "ana@bücher.example", True),
        ("dmarc=pass header.from=xn--bcher-kva.example", "ana@bücher.example", True),
        ("spf=pass smtp.mailfrom=ana@XN--BCHER-KVA.example", "ana@bücher.example", True),
        ("dkim=pass header.d=xn--bcher-kva.example", "ana@eu.bücher.example", True),
        ("dkim=pass header.d=xn--e1afmkfd.xn--p1ai", "ana@пример.рф", True),
        ("dkim=pass header.d=xn--p1ai", "ana@пример.рф", False),  # a public suffix is nobody's
        ("dmarc=pass header.from=xn--bcher-kva.example", "ana@xn--bcher-kva.example", True),
        # Never the same domain: `ß` is no `ss` (IDNA 2008), and a From in fullwidth
        # letters is not taken for the domain UTS #46 maps it to.
        ("dkim=pass header.d=fussball.example", "ana@fußball.example", False),
        ("dkim=pass header.d=xn--fuball-cta.example", "ana@fußball.example", True),
        ("dkim=pass header.d=xn--bcher-kva.example", "ana@ｂücher.example", False),
        ("dmarc=pass header.from=bücher.example", "ana@bücher.example", False),  # not ASCII
        (
            "dkim=pass header.d=xn--bcher-kva.example; dmarc=fail header.from=xn--bcher-kva.example",
            "ana@bücher.example",
            False,
        ),
    ],
)
def test_an_internationalised_from_domain_aligns_in_its_ascii_form(
    result: str, from_address: str, aligned: bool
) -> None:
    assert believed(f"{TRUSTED}; {result}", from_address=from_address) is aligned
