"""Building and sending test mail through a real gateway listener."""

from __future__ import annotations

import smtplib
import socket
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from email.utils import make_msgid
from typing import Any

from flask import Flask

from helpdesk.extensions import db
from helpdesk.inbound.ingest import Envelope, Outcome, ingest
from mailgateway.smtp import SupportHandler, make_controller
from tests.support.pgserver import free_port

SUPPORT = "support@helpdesk.test"


def message(
    sender: str = "ann@example.com",
    subject: str = "Printer on fire",
    body: str = "The printer on floor 3 is on fire.",
    *,
    to: str = SUPPORT,
    cc: str | None = None,
    message_id: str | None = None,
    in_reply_to: str | None = None,
    references: str | None = None,
    headers: dict[str, str] | None = None,
    html: str | None = None,
) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    if cc:
        msg["Cc"] = cc
    msg["Subject"] = subject
    msg["Message-ID"] = message_id or make_msgid(domain="client.example")
    if in_reply_to:
        msg["In-Reply-To"] = in_reply_to
    if references:
        msg["References"] = references
    for name, value in (headers or {}).items():
        msg[name] = value
    msg.set_content(body)
    if html is not None:
        msg.add_alternative(html, subtype="html")
    return msg


def hold_strangers(config: Mapping[str, Any], numbers: Iterable[int]) -> None:
    """A stranger's mail ("Cheap pills <n>", from stranger<n>@spam.example) held for
    each of `numbers`, as anyone on the internet gets mail held under the default
    UNKNOWN_SENDER_POLICY=quarantine; straight through the pipeline, no listener."""
    for n in numbers:
        sender = f"stranger{n}@spam.example"
        mail = message(sender=sender, subject=f"Cheap pills {n}", body="buy")
        result = ingest(mail.as_bytes(), Envelope(sender, (SUPPORT,), "smtp"), config)
        assert result.outcome is Outcome.QUARANTINED, result


def send(
    port: int,
    msg: EmailMessage | bytes,
    *,
    mail_from: str | None = None,
    rcpt: list[str] | None = None,
    timeout: float = 60,
) -> tuple[int, bytes]:
    """Send one mail over a real SMTP session; returns the DATA reply (code, text).

    `timeout` is the client's patience per network operation, as a real MTA has one."""
    raw = msg if isinstance(msg, bytes) else msg.as_bytes(policy=SMTP_POLICY)
    envelope_from = (
        mail_from if mail_from is not None else ("" if isinstance(msg, bytes) else str(msg["From"]))
    )
    with smtplib.SMTP("127.0.0.1", port, timeout=timeout) as client:
        client.ehlo("client.example")
        code, text = client.mail(envelope_from)
        assert code == 250, text
        for address in rcpt or [SUPPORT]:
            code, text = client.rcpt(address)
            if code != 250:
                return code, text
        return client.data(raw)


def send_verbatim(port: int, raw: bytes, *, mail_from: str, rcpt: str = SUPPORT) -> tuple[int, bytes]:
    """Send `raw` over a real SMTP session exactly as written: smtplib turns every bare
    CR and bare LF into CRLF, which a sender's own program need not do. `raw` holds
    no line that is a lone "." and ends without a line break."""
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        replies = sock.makefile("rb")

        def reply() -> tuple[int, bytes]:
            lines = []
            while True:
                line = replies.readline()
                if not line:
                    raise ConnectionError(f"closed after {lines!r}")
                lines.append(line.rstrip(b"\r\n"))
                if line[3:4] != b"-":
                    return int(line[:3]), b"\n".join(entry[4:] for entry in lines)

        assert reply()[0] == 220
        for command in (
            b"EHLO client.example",
            f"MAIL FROM:<{mail_from}>".encode(),
            f"RCPT TO:<{rcpt}>".encode(),
        ):
            sock.sendall(command + b"\r\n")
            assert reply()[0] == 250
        sock.sendall(b"DATA\r\n")
        assert reply()[0] == 354
        sock.sendall(raw.replace(b"\r\n.", b"\r\n..") + b"\r\n.\r\n")
        answer = reply()
        sock.sendall(b"QUIT\r\n")
        return answer


@dataclass
class Gateway:
    app: Flask
    port: int

    def send(self, msg, **kwargs) -> tuple[int, bytes]:  # type: ignore[no-untyped-def]
        db.session.rollback()  # never hold a transaction (SQLite lock) while the gateway writes
        reply = send(self.port, msg, **kwargs)
        db.session.expire_all()
        return reply

    def send_verbatim(self, raw: bytes, **kwargs) -> tuple[int, bytes]:  # type: ignore[no-untyped-def]
        db.session.rollback()
        reply = send_verbatim(self.port, raw, **kwargs)
        db.session.expire_all()
        return reply


def start_gateway(app: Flask, **config: object) -> Iterator[Gateway]:
    app.config.update(config, SMTP_LISTEN=f"127.0.0.1:{free_port()}")
    handler = SupportHandler(app, workers=4)
    controller = make_controller(app, handler)
    controller.start()
    try:
        yield Gateway(app, controller.port)
    finally:
        controller.stop()
        handler.close()
