"""An SMTP relay that never finishes answering (docs/outbound-mail.md, "A relay
that drips"): it speaks SMTP up to a chosen moment — the greeting, or the end of
DATA — and from there sends one continuation line (`250-`, `220-`) every `drip`
seconds for ever. Each line is an answer to a read, so a per-read timeout never
fires; only a deadline on the whole connection ends it. Cheaper than teaching
aiosmtpd to misbehave."""

from __future__ import annotations

import socket
import threading
import time
from types import TracebackType


class DrippingRelay:
    """Listens on 127.0.0.1; `at` is "greeting" or "data" (after the mail's dot)."""

    def __init__(self, *, at: str, drip: float = 0.2) -> None:
        self.at, self.drip = at, drip
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.mails_taken = 0
        self.stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._accepting = threading.Thread(target=self._accept, daemon=True)

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    def __enter__(self) -> DrippingRelay:
        self._accepting.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stopping.set()
        self.server.close()
        for thread in [self._accepting, *self._threads]:
            thread.join(timeout=5)

    def _accept(self) -> None:
        self.server.settimeout(0.1)
        while not self.stopping.is_set():
            try:
                connection, _ = self.server.accept()
            except TimeoutError:
                continue
            except OSError:  # closed by __exit__
                return
            thread = threading.Thread(target=self._serve, args=(connection,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, connection: socket.socket) -> None:
        with connection:
            try:
                if self.at == "greeting":
                    self._drip(connection, b"220-relay.test still greeting\r\n")
                    return
                connection.sendall(b"220 relay.test ESMTP\r\n")
                reader = connection.makefile("rb")
                while not self.stopping.is_set():
                    line = reader.readline()
                    if not line:
                        return
                    verb = line[:4].upper()
                    if verb in (b"EHLO", b"HELO"):
                        connection.sendall(b"250 relay.test\r\n")
                    elif verb == b"DATA":
                        connection.sendall(b"354 go ahead\r\n")
                        while reader.readline() not in (b".\r\n", b""):
                            pass
                        self.mails_taken += 1
                        self._drip(connection, b"250-still thinking\r\n")
                        return
                    elif verb == b"QUIT":
                        connection.sendall(b"221 bye\r\n")
                        return
                    else:
                        connection.sendall(b"250 ok\r\n")
            except OSError:  # the client cut the connection: what the test waits for
                return

    def _drip(self, connection: socket.socket, line: bytes) -> None:
        while not self.stopping.is_set():
            connection.sendall(line)
            time.sleep(self.drip)
