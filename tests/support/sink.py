"""A real SMTP server (aiosmtpd) standing in for the outbound relay (RECIPES.md).

It collects every mail the helpdesk sends; it can refuse our EHLO/HELO, an
envelope sender whose local part is over RFC 5321's 64 octets (as strict relays do),
recipients or data with a given reply, be stopped (the relay is down) and started again on the same
port, and speak TLS or require AUTH.
"""

from __future__ import annotations

import email
import email.policy
import threading
from collections import Counter
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from tests.support.pgserver import free_port
from tests.support.waiting import wait_until


@dataclass(frozen=True)
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    authenticated: bool

    @property
    def message(self) -> EmailMessage:
        return email.message_from_bytes(self.data, policy=email.policy.default)  # type: ignore[return-value]


class _Handler:
    def __init__(self, sink: Sink) -> None:
        self.sink = sink

    async def handle_EHLO(
        self, server: SMTP, session: Session, envelope: Envelope, hostname: str, responses: list[str]
    ) -> list[str]:
        self.sink.greetings.append(hostname)
        if self.sink.helo_reply:
            return [self.sink.helo_reply]
        session.host_name = hostname
        return responses

    async def handle_HELO(self, server: SMTP, session: Session, envelope: Envelope, hostname: str) -> str:
        self.sink.greetings.append(hostname)
        if self.sink.helo_reply:
            return self.sink.helo_reply
        session.host_name = hostname
        return f"250 {server.hostname}"

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, mail_options: list[str]
    ) -> str:
        limit = self.sink.max_local_part
        if limit is not None and len(address.rpartition("@")[0].encode()) > limit:
            return "501 5.1.7 Bad sender address syntax: local part longer than 64 octets"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        refusal = self.sink.refuse_rcpt.get(address.lower())
        if refusal:
            return refusal
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.sink.data_reply:
            return self.sink.data_reply
        content = envelope.original_content or b""
        with self.sink.lock:
            self.sink.received.append(
                Received(
                    str(envelope.mail_from),
                    list(envelope.rcpt_tos),
                    bytes(content),
                    bool(session.authenticated),
                )
            )
        return "250 2.0.0 OK queued"


class Sink:
    def __init__(self, **controller_options: Any) -> None:
        self.port = free_port()
        self.options = controller_options
        self.received: list[Received] = []
        self.greetings: list[str] = []  # the host name of every EHLO and HELO, as sent
        self.refuse_rcpt: dict[str, str] = {}  # address -> reply, e.g. "550 5.1.1 ..."
        self.data_reply: str | None = None  # e.g. "554 5.6.0 ..." for every DATA
        self.helo_reply: str | None = None  # e.g. "550 5.7.1 ..." for every EHLO and HELO
        self.max_local_part: int | None = None  # 64: refuse MAIL FROM over RFC 5321 §4.5.3.1.1
        self.lock = threading.Lock()
        self.controller: Controller | None = None

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    def start(self) -> Sink:
        self.controller = Controller(_Handler(self), hostname="127.0.0.1", port=self.port, **self.options)
        self.controller.start()
        return self

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

    @property
    def messages(self) -> list[EmailMessage]:
        with self.lock:
            return [item.message for item in self.received]

    def message_ids(self) -> Counter[str]:
        with self.lock:
            return Counter(str(item.message["Message-ID"]) for item in self.received)

    def wait_for(self, count: int, timeout: float = 30.0) -> list[EmailMessage]:
        wait_until(
            lambda: len(self.received) >= count,
            timeout=timeout,
            what=lambda: f"{count} mails arriving ({len(self.received)} did)",
        )
        return self.messages
