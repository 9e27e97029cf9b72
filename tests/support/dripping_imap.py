"""A relay in front of the test Dovecot that passes everything through until the
client sends a command holding `trigger` (say `BODY.PEEK[]`; None: from the
server's greeting on), then hands on the server's answer one byte every `drip`
seconds (docs/mail-gateway.md, "A server that drips"). Each byte answers a read
within any per-read timeout, so only a deadline on the read as a whole ends it.
Dovecot itself never answers that slowly."""

from __future__ import annotations

import socket
import threading
import time
from types import TracebackType


class DrippingImap:
    """Listens on 127.0.0.1 and relays to `port`; drips the answer to the first
    `times` commands holding `trigger`, then relays as it is."""

    def __init__(self, port: int, *, trigger: bytes | None, drip: float = 0.2, times: int = 1) -> None:
        self.target, self.trigger, self.drip, self.times = port, trigger, drip, times
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.dripping = threading.Event()  # a drip began
        self.cut = threading.Event()  # the client cut a dripping connection
        self.stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._sockets: list[socket.socket] = []

    def url(self, dovecot_url: str, dovecot_port: int) -> str:
        """`dovecot_url` (`DovecotServer.url`) through the relay."""
        return dovecot_url.replace(f":{dovecot_port}/", f":{self.port}/")

    def __enter__(self) -> DrippingImap:
        self._start(self._accept)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stopping.set()
        self.server.close()
        for sock in self._sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for thread in self._threads:
            thread.join(timeout=5)

    def _start(self, target, *args) -> None:  # type: ignore[no-untyped-def]
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        self.server.settimeout(0.1)  # a closed socket does not end a blocked accept
        while not self.stopping.is_set():
            try:
                client, _ = self.server.accept()
            except TimeoutError:
                continue
            except OSError:  # closed by __exit__
                return
            client.settimeout(None)
            upstream = socket.create_connection(("127.0.0.1", self.target))
            self._sockets += [client, upstream]
            drip = threading.Event()
            if self.trigger is None and self.times > 0:
                self.times -= 1
                drip.set()
            self._start(self._requests, client, upstream, drip)
            self._start(self._answers, upstream, client, drip)

    def _requests(self, client: socket.socket, upstream: socket.socket, drip: threading.Event) -> None:
        with client:
            while True:
                try:
                    data = client.recv(65536)
                except OSError:
                    data = b""
                if not data:
                    if drip.is_set():
                        self.cut.set()
                    upstream.close()
                    return
                if self.trigger is not None and self.trigger in data and self.times > 0:
                    self.times -= 1
                    drip.set()
                upstream.sendall(data)

    def _answers(self, upstream: socket.socket, client: socket.socket, drip: threading.Event) -> None:
        with upstream:
            try:
                while data := upstream.recv(65536):
                    if not drip.is_set():
                        client.sendall(data)
                        continue
                    self.dripping.set()
                    for byte in data:
                        if self.stopping.is_set():
                            return
                        client.sendall(bytes([byte]))
                        time.sleep(self.drip)
            except OSError:  # the client cut the connection: what the test waits for
                return
