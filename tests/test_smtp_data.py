"""The SMTP listener's DATA phase (mailgateway/smtp_data.py; docs/mail-gateway.md,
"How DATA is read"): where a mail ends, dot-unstuffing, the size limit, lost
connections, through a real socket, byte for byte.

`on_the_line` below is the reference: RFC 5321's rules done the slow way, line by
line, as aiosmtpd did them before the listener read DATA in large pieces."""

from __future__ import annotations

import random
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from email.policy import SMTP as SMTP_POLICY
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP
from sqlalchemy import func, select

from helpdesk.extensions import db
from helpdesk.models import Attachment, InboundMail
from mailgateway.smtp import ConnectionLimits, LiberalSMTP, SupportController
from tests.support.mail import SUPPORT, message, start_gateway
from tests.support.pgserver import free_port

HEAD = b"From: ann@example.com\r\nTo: support@helpdesk.test\r\nSubject: dots\r\n"


def mail(body: bytes, tag: str = "x") -> bytes:
    return HEAD + f"Message-ID: <{tag}-{time.monotonic_ns()}@client.example>\r\n\r\n".encode() + body


def on_the_line(wire: bytes) -> bytes:
    """What a DATA section (before its terminating line) stores: lines end at CRLF
    only, and a line beginning with "." loses that dot (RFC 5321 4.5.2)."""
    lines = wire.split(b"\r\n")
    return b"\r\n".join(line[1:] if line.startswith(b".") else line for line in lines)


def stuffed(raw: bytes) -> bytes:
    """The DATA section a client sends for `raw` (ending in CRLF), with its terminator."""
    lines = raw.split(b"\r\n")
    return b"\r\n".join(b"." + line if line.startswith(b".") else line for line in lines) + b".\r\n"


def stored() -> list[bytes]:
    db.session.expire_all()
    return list(db.session.execute(select(InboundMail.raw).order_by(InboundMail.id)).scalars())


class Session:
    """An SMTP client that writes exactly the bytes it is given, in the pieces given
    (TCP_NODELAY and a pause between writes, so the listener reads them apart)."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.pending = b""
        assert self.reply()[0] == 220

    def reply(self) -> tuple[int, bytes]:
        lines = []
        while True:
            while b"\r\n" not in self.pending:
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise ConnectionError(f"closed after {lines!r}")
                self.pending += chunk
            line, self.pending = self.pending.split(b"\r\n", 1)
            lines.append(line)
            if line[3:4] != b"-":
                return int(line[:3]), b"\n".join(entry[4:] for entry in lines)

    def write(self, data: bytes, pieces: Sequence[int] | None = None, pause: float = 0.002) -> None:
        """`pieces`: the sizes of the writes, the last one repeated to the end."""
        cuts = list(pieces or [len(data)])
        start = 0
        while start < len(data):
            size = cuts.pop(0) if len(cuts) > 1 else cuts[0]
            self.sock.sendall(data[start : start + size])
            start += size
            if start < len(data):
                time.sleep(pause)

    def command(self, line: bytes) -> tuple[int, bytes]:
        self.write(line + b"\r\n")
        return self.reply()

    def begin(self, sender: bytes = b"ann@example.com") -> None:
        """EHLO (once), MAIL, RCPT and DATA, each answered as it should be."""
        assert self.command(b"EHLO client.example")[0] == 250
        self.transaction(sender)

    def transaction(self, sender: bytes = b"ann@example.com") -> None:
        assert self.command(b"MAIL FROM:<" + sender + b">")[0] == 250
        assert self.command(b"RCPT TO:<" + SUPPORT.encode() + b">")[0] == 250
        assert self.command(b"DATA")[0] == 354

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def session(gateway) -> Iterator[Session]:  # type: ignore[no-untyped-def]
    db.session.rollback()
    connection = Session(gateway.port)
    yield connection
    connection.close()


# -- the attacker's tests: only CRLF "." CRLF ends a mail ---------------------------


@pytest.mark.parametrize(
    "fake_end", [b"\n.\n", b"\n.\r\n", b"\r\n.\n", b"\r.\r\n", b"\r\n.\r", b"\r\n .\r\n"]
)
def test_no_second_mail_can_be_smuggled_behind_an_end_that_is_not_crlf_dot_crlf(session, senders, fake_end):
    """SMTP smuggling: a relay that takes "\\n.\\n" for the end of a mail while we do
    not, or the other way round, lets a sender slip a forged mail behind theirs."""
    smuggled = (
        b"MAIL FROM:<ceo@example.com>\r\nRCPT TO:<" + SUPPORT.encode() + b">\r\nDATA\r\n"
        b"From: ceo@example.com\r\nSubject: smuggled\r\n\r\nwire the money\r\n"
    )
    wire = mail(b"hello" + fake_end + smuggled)
    session.begin()
    session.write(wire + b".\r\n")
    code, _ = session.reply()
    assert code == 250
    assert session.command(b"QUIT")[0] == 221
    assert stored() == [on_the_line(wire)]  # one mail, the "smuggled" one inside it


def test_a_line_of_a_dot_inside_a_line_with_bare_line_feeds_does_not_end_the_mail(session, senders):
    wire = mail(b"one\n.\nstill one\r\n")
    session.begin()
    session.write(wire + b".\r\n", pieces=[len(wire) - 7, 1, 1, 1, 1, 1, 1, 1, 1])
    assert session.reply()[0] == 250
    assert stored() == [wire]


# -- dot-unstuffing, byte for byte --------------------------------------------------


def test_lines_beginning_with_dots_arrive_byte_for_byte(gateway, senders):
    body = b".\r\n..\r\n.hidden\r\n...three\r\n . not first\r\nend.\r\n.\r\nlast line is ..\r\n..\r\n"
    raw = mail(body)
    code, _ = gateway.send(raw, mail_from="ann@example.com")  # smtplib stuffs the dots
    assert code == 250
    assert stored() == [raw]


@pytest.mark.parametrize(
    "raw",
    [
        b".\r\n",  # a mail of one line "."
        b"..\r\n",
        b".From: ann@example.com\r\n\r\nhi\r\n",
        b"\r\n",  # one empty line
        b"\r\n\r\n.\r\nx\r\n",
        b"\r\r\n.\r\n",
        b"\r\n.\r\n..\r\n\r\n",
    ],
)
def test_the_first_lines_of_a_mail_lose_only_their_stuffed_dot(gateway, senders, raw):
    """The first line has no CRLF before it on the wire: the DATA command's own
    stands in for it, so these are read before the mail's end can be searched for."""
    assert gateway.send(raw, mail_from="ann@example.com")[0] == 250
    assert stored() == [raw]


def test_a_last_line_without_crlf_gets_one(gateway, senders):
    raw = mail(b"no line end here\r\n.dot and no line end")
    assert gateway.send(raw, mail_from="ann@example.com")[0] == 250
    assert stored() == [raw + b"\r\n"]


def test_an_empty_mail_is_recorded_as_empty(session, senders):
    session.begin()
    session.write(b".\r\n")
    assert session.reply()[0] == 250
    assert stored() == [b""]


# -- how the bytes arrive ------------------------------------------------------------

BODY = b"first\r\n.dot\r\n..two\r\n\r\n.\r\nlast\r\n"


@pytest.mark.parametrize(
    ("name", "pieces"),
    [
        ("1-byte writes", [1]),
        ("7-byte writes", [7]),
        ("terminator byte by byte", "terminator"),
        ("CR and LF of the last line apart", "last crlf"),
    ],
)
def test_a_mail_split_across_tcp_writes_arrives_whole(session, senders, name, pieces):
    raw = mail(BODY)
    wire = stuffed(raw)
    if pieces == "terminator":
        pieces = [len(wire) - 5, 1, 1, 1, 1, 1]
    elif pieces == "last crlf":
        pieces = [len(wire) - 4, 1, 1, 2]
    session.begin()
    session.write(wire, pieces=pieces, pause=0.001)
    assert session.reply()[0] == 250
    assert stored() == [raw]


@pytest.mark.parametrize("raw", [b"", b"\r\n", b".\r\n", b"..x\r\n", b"\r\n.\r\n", b".\n.\r\n"])
def test_the_first_bytes_of_a_mail_may_come_one_by_one(session, senders, raw):
    session.begin()
    session.write(stuffed(raw), pieces=[1], pause=0.001)
    assert session.reply()[0] == 250
    assert stored() == [raw]


def test_commands_sent_behind_the_dot_are_answered_in_order(session, senders):
    """The listener does not offer PIPELINING, but a client writing its next commands
    in the same packet as the dot must still have them read as commands."""
    first, second = mail(b"first\r\n.x\r\n", "a"), mail(b"second\r\n", "b")
    session.begin()
    session.write(
        stuffed(first)
        + b"RSET\r\nMAIL FROM:<ann@example.com>\r\nRCPT TO:<"
        + SUPPORT.encode()
        + b">\r\nDATA\r\n"
    )
    assert [session.reply()[0] for _ in range(5)] == [250, 250, 250, 250, 354]
    session.write(
        stuffed(second) + b"MAIL FROM:<ann@example.com>\r\nRCPT TO:<" + SUPPORT.encode() + b">\r\nDATA\r\n"
    )
    assert [session.reply()[0] for _ in range(4)] == [250, 250, 250, 354]
    session.write(b".\r\nRSET\r\nQUIT\r\n")  # an empty mail, then commands: nothing waits for more
    assert [session.reply()[0] for _ in range(3)] == [250, 250, 221]
    assert stored() == [first, second, b""]


# -- the size limit and long lines ---------------------------------------------------

LIMIT = 20_000


def exactly(size: int, dots: int = 0) -> bytes:
    """A mail whose DATA section is `size` bytes on the wire, `dots` of its lines stuffed."""
    head = mail(b"", "size") + b".dot\r\n" * dots
    filler = size - len(head) - dots - 2
    return head + b"x" * filler + b"\r\n"


def test_a_mail_over_the_size_limit_gets_552_and_the_connection_goes_on(app, senders):
    """The limit counts the bytes on the wire (stuffed dots too), as aiosmtpd did."""
    import smtplib

    for gateway in start_gateway(app, MAX_MESSAGE_BYTES=LIMIT):
        db.session.rollback()
        under, at_limit, over, over_by_a_dot = (
            exactly(LIMIT - 1),
            exactly(LIMIT),
            exactly(LIMIT + 1),
            exactly(LIMIT + 1, 1),
        )
        with smtplib.SMTP("127.0.0.1", gateway.port, timeout=30) as client:
            client.ehlo("client.example")
            replies = []
            for raw in (over, under, over_by_a_dot, b"\r\n" * (LIMIT // 2 + 1), at_limit):
                client.mail("ann@example.com")
                client.rcpt(SUPPORT)
                replies.append(client.data(raw))
            assert client.noop()[0] == 250
        codes = [code for code, _ in replies]
        assert codes == [552, 250, 552, 552, 250]
        assert replies[0][1] == b"5.3.4 Message too big for this system"
        assert stored() == [under, at_limit]


def test_a_mail_many_times_the_size_limit_is_drained_not_kept(app, senders):
    for gateway in start_gateway(app, MAX_MESSAGE_BYTES=LIMIT):
        db.session.rollback()
        session = Session(gateway.port)
        session.begin()
        session.write(stuffed(mail((b"y" * 998 + b"\r\n") * 3_000)))  # 3 MB
        assert session.reply() == (552, b"5.3.4 Message too big for this system")
        session.transaction()
        raw = mail(b"small\r\n")
        session.write(stuffed(raw))
        assert session.reply()[0] == 250
        session.close()
        assert stored() == [raw]


def test_a_line_longer_than_a_mebibyte_is_accepted(gateway, senders):
    """aiosmtpd answered 500 to a line over `line_length_limit` (1 MiB); the listener
    now reads DATA in pieces and only the size limit bounds a mail
    (docs/mail-gateway.md, "How DATA is read")."""
    raw = mail(b"word " * 500_000 + b"\r\n.and a dot\r\n")
    assert gateway.send(raw, mail_from="ann@example.com")[0] == 250
    assert stored() == [raw]


def test_a_2_mb_attachment_arrives_byte_for_byte(gateway, senders):
    data = random.Random(19).randbytes(2_000_000)
    msg = message(body=".starts with a dot\n..and two\n")
    msg.add_attachment(data, maintype="application", subtype="octet-stream", filename="dump.bin")
    raw = msg.as_bytes(policy=SMTP_POLICY)
    code, text = gateway.send(raw, mail_from="ann@example.com")
    assert (code, text) == (250, b"2.0.0 OK created TKT-000001")
    assert stored() == [raw]
    attachment = db.session.execute(select(Attachment)).scalar_one()
    assert attachment.data == data


# -- lost connections ----------------------------------------------------------------


@pytest.mark.parametrize(
    "sent",
    [b"", b".", b"\r\n", mail(b"half a mail\r\n.and"), mail(b"y" * 50_000)],
    ids=["nothing", "a dot", "an empty line", "half a line", "50 KB"],
)
def test_a_connection_lost_during_data_stores_nothing(gateway, senders, sent):
    db.session.rollback()
    session = Session(gateway.port)
    session.begin()
    session.write(sent)
    time.sleep(0.05)
    session.close()
    assert gateway.send(message(), mail_from="ann@example.com") == (250, b"2.0.0 OK created TKT-000001")
    assert db.session.execute(select(func.count(InboundMail.id))).scalar_one() == 1


# -- the same mails as aiosmtpd's own line-by-line reading ---------------------------


def test_the_steps_copied_from_aiosmtpd_are_those_of_the_installed_version():
    import aiosmtpd

    assert aiosmtpd.__version__ == "1.4.6", (
        "LiberalSMTP.smtp_DATA repeats aiosmtpd 1.4.6's steps before and after reading the "
        "mail: compare them with the new version's smtp_DATA, then change this version"
    )


class Recorder:
    def __init__(self) -> None:
        self.contents: list[bytes] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.contents.append(envelope.original_content)
        return "250 OK"


class UpstreamSMTP(SMTP):
    line_length_limit = LiberalSMTP.line_length_limit


class UpstreamController(Controller):
    def factory(self) -> SMTP:
        return UpstreamSMTP(self.handler, **self.SMTP_kwargs)


def random_sections(count: int) -> list[tuple[bytes, list[int]]]:
    """DATA sections of dots, CRs, LFs and letters, each ending at its first
    terminating line, with the sizes of the writes to send it in."""
    pick = random.Random(4552)
    tokens = [b"a", b".", b"\r", b"\n", b"\r\n", b"..", b"\r\n.", b" "]
    sections = []
    while len(sections) < count:
        body = b"".join(pick.choice(tokens) for _ in range(pick.randint(0, 30)))
        if body and not body.endswith(b"\r\n"):
            body += b"\r\n"
        wire = body + b".\r\n"
        if (b"\r\n" + wire).find(b"\r\n.\r\n") != len(wire) - 3:
            continue  # ends earlier: not the section it was drawn as
        pieces = [pick.randint(1, 6) for _ in range(pick.randint(0, 4))] + [len(wire)]
        sections.append((wire, pieces))
    return sections


def test_random_data_sections_read_as_aiosmtpd_read_them():
    """The listener's reading against aiosmtpd's own, on the same bytes in the same
    writes: mail ends, dots and line ends in every arrangement the generator finds."""
    sections = random_sections(250)
    kwargs: dict[str, Any] = {"hostname": "127.0.0.1", "decode_data": False, "data_size_limit": 1 << 20}
    ours, upstream = Recorder(), Recorder()
    controllers = [
        SupportController(
            ours,
            connections=ConnectionLimits(10, 10),
            data_timeout=600,
            session_timeout=3600,
            port=free_port(),
            **kwargs,
        ),
        UpstreamController(upstream, port=free_port(), **kwargs),
    ]
    for controller in controllers:
        controller.start()
    failures: list[BaseException] = []
    try:

        def feed(port: int) -> None:
            try:
                session = Session(port)
                assert session.command(b"EHLO client.example")[0] == 250
                for wire, pieces in sections:
                    session.transaction()
                    session.write(wire + b"NOOP\r\n", pieces=pieces, pause=0.0005)
                    assert [session.reply()[0] for _ in range(2)] == [250, 250]
                session.close()
            except BaseException as exc:  # reported by the test, not lost in the thread
                failures.append(exc)

        threads = [threading.Thread(target=feed, args=(c.port,)) for c in controllers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
    finally:
        for controller in controllers:
            controller.stop()
    assert failures == []
    assert len(ours.contents) == len(sections)
    assert ours.contents == upstream.contents
    assert ours.contents == [on_the_line(wire[:-3]) for wire, _ in sections]
