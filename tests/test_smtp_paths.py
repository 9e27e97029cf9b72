"""How the SMTP listener reads the paths of MAIL and RCPT (mailgateway/smtp.py,
`plain_path`; docs/mail-gateway.md, "How MAIL and RCPT are read"): the common
`<local@domain>` without `email`'s header parser, every argument answered as
aiosmtpd answers it."""

from __future__ import annotations

import smtplib
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP
from hypothesis import example, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from helpdesk.extensions import db
from helpdesk.models import InboundMail
from mailgateway.smtp import ConnectionLimits, LiberalSMTP
from tests.support.mail import SUPPORT, message, start_gateway

# Characters that matter to an address's reading: specials, white space, quoting,
# comments, a domain literal's brackets, non-ASCII and control characters.
TRICKY = "<>@.()[]\\\":;, \t\r\n\x0b\x00aZ09+=/~'é€"


class _Handler:
    pass


def listeners(local_part_limit: int = 0) -> tuple[SMTP, LiberalSMTP]:
    """aiosmtpd's session (the reference) and ours, with the same local-part limit."""
    theirs = SMTP(_Handler())
    ours = LiberalSMTP(_Handler(), connections=ConnectionLimits(1, 1), data_timeout=1, session_timeout=1)
    theirs.local_part_limit = ours.local_part_limit = local_part_limit
    return theirs, ours


def answer(listener: SMTP, arg: str) -> Any:
    """What `_getaddr` returns, or the error it raises (aiosmtpd's own reading
    raises IndexError for a lone `<`, which its command loop answers 500)."""
    try:
        return listener._getaddr(arg)
    except Exception as error:
        return type(error)


def atoms(alphabet: str) -> st.SearchStrategy[str]:
    return st.lists(st.text(alphabet, max_size=6), min_size=1, max_size=3).map(".".join)


PATHS = st.one_of(
    st.text(TRICKY, max_size=40),
    st.builds(
        lambda local, domain, rest: f"<{local}@{domain}>{rest}",
        atoms("aZ09+-=?~'.é\"\\ "),
        atoms("aZ09-.[]"),
        st.text(" \t\r\nS=(1)x\x0b", max_size=8),
    ),
)


@settings(max_examples=3000, deadline=None)
@given(PATHS, st.sampled_from([0, 4, 64]))
@example("<ann@example.com> SIZE=4400 BODY=8BITMIME", 0)
@example("<ann@example.com>(a comment) SIZE=1", 0)
@example("<ann@example.com>\x0bX", 0)
@example("<ann@example.com> \t\r\n SIZE=1", 0)
@example("<a..b@example.com>", 0)
@example("<ann@example..com>", 0)
@example("<ann@[192.0.2.1]>", 0)
@example("<>", 0)
@example("<abcde@example.com>", 4)
# An encoded word where an atom begins: `email`'s parser decodes it (the envelope
# of tests/test_hostile_mail.py's encoded-word sender), so it is not a plain path.
@example("<=?utf-8?q?a=0d=0ab?=@example.com>", 0)
@example("<a.=?utf-8?q?b?=@example.com>", 0)
def test_every_argument_is_read_as_aiosmtpd_reads_it(arg: str, local_part_limit: int) -> None:
    theirs, ours = listeners(local_part_limit)
    assert answer(ours, arg) == answer(theirs, arg)


def test_a_plain_path_is_read_without_the_header_parser(monkeypatch: pytest.MonkeyPatch) -> None:
    """The common form costs no pass of `email`'s parser (nor a class a call)."""

    def refuse(value: str) -> Any:
        raise AssertionError(f"the header parser read {value!r}")

    monkeypatch.setattr("aiosmtpd.smtp.get_angle_addr", refuse)
    monkeypatch.setattr("aiosmtpd.smtp.get_addr_spec", refuse)
    _, ours = listeners(64)
    assert ours._getaddr("<ann.smith+x@mail.example.com> SIZE=4400") == (
        "ann.smith+x@mail.example.com",
        "SIZE=4400",
    )
    assert ours._getaddr(f"<{'a' * 65}@example.com>") == (None, None)  # over the limit


def test_plain_and_other_paths_through_the_listener(gateway, senders) -> None:  # type: ignore[no-untyped-def]
    """A plain path, a quoted local part and a comment after the path, through a real
    session: each mail stored with its envelope sender as aiosmtpd read it."""
    with smtplib.SMTP("127.0.0.1", gateway.port, timeout=30) as client:
        client.ehlo("client.example")
        for sender in ("<bob.jones@example.com>", '<"bob jones"@example.com>', "<bob@example.com> (note)"):
            assert client.docmd("MAIL", f"FROM:{sender}")[0] == 250
            assert client.docmd("RCPT", f"TO:<{SUPPORT}>")[0] == 250
            assert client.data(message("ann@example.com", subject=sender).as_bytes())[0] == 250
        assert client.docmd("MAIL", "FROM:<bob@example..com>")[0] == 553
    db.session.rollback()
    stored = db.session.execute(select(InboundMail.mail_from).order_by(InboundMail.id)).scalars().all()
    assert stored == ["bob.jones@example.com", '"bob jones"@example.com', "bob@example.com"]


def test_a_path_with_line_breaks_is_answered_and_logged_on_one_line(app, senders, caplog) -> None:  # type: ignore[no-untyped-def]
    """aiosmtpd's parser decodes an encoded word in a path (`=0A` is a line feed) and
    keeps a bare carriage return as written. A refused recipient is echoed in one
    answer line (split, its second line was read as the next command's answer), and
    the sender and recipients of a mail refused unrecorded are on the one log line of
    that mail (SPEC §10), not on lines a client wrote into the gateway's log."""
    for gateway in start_gateway(app, MAX_MESSAGE_BYTES=20_000):
        with smtplib.SMTP("127.0.0.1", gateway.port, timeout=30) as client:
            client.ehlo("client.example")
            forged = "=?utf-8?q?ann=0Amail_x_via_smtp:_stored?=@example.com"
            assert client.docmd("MAIL", f"FROM:<{forged}>")[0] == 250
            code, text = client.docmd("RCPT", "TO:<=?utf-8?q?x=0D=0A250_2.1.5_OK?=@elsewhere.example>")
            assert (code, text) == (
                550,
                b'5.1.1 <"x250 2.1.5 OK"@elsewhere.example>: no such mailbox here (this is not a relay)',
            )
            assert client.docmd("RCPT", "TO:<=?utf-8?q?support+a=0D=0Ab?=@helpdesk.test>")[0] == 250
            assert client.noop()[0] == 250
            assert client.data(message("ann@example.com", body="x" * 30_000).as_bytes())[0] == 552
    lines = [r.getMessage() for r in caplog.records if r.name == "mailgateway.smtp"]
    assert lines == [
        'mail (no Message-ID read) via smtp from "annmail x via smtp: stored"@example.com '
        "to support+ab@helpdesk.test: 552, larger than MAX_MESSAGE_BYTES (20000)"
    ]
