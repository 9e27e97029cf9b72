"""A TCP server standing in for a PostgreSQL that hangs (docs/operations.md,
"Health check"): every process of it stopped (SIGSTOP), so the kernel still takes
connections and nothing answers; or a PgBouncer whose PostgreSQL is down, which
logs the client in and then holds every query until its `query_wait_timeout`
(two minutes by default). Cheaper than pausing the harness's PostgreSQL, which
other tests share. Given a real server (`forward_to`), it stands in for one paused
and resumed: after `answer()` the connections it held, and every new one, are
relayed to that server, as a resumed server answers what waited in its sockets."""

from __future__ import annotations

import socket
import struct
import threading
from types import TracebackType
from urllib.parse import urlsplit

# The requests for TLS and for GSSAPI encryption a client may send before its startup.
_ENCRYPTION_REQUESTS = {80877103, 80877104}


def _message(kind: bytes, body: bytes) -> bytes:
    return kind + struct.pack("!I", len(body) + 4) + body


# What a server sends after a client's startup packet when it trusts the client.
_LOGGED_IN = b"".join(
    [
        _message(b"R", struct.pack("!I", 0)),  # AuthenticationOk
        *(
            _message(b"S", name + b"\0" + value + b"\0")  # ParameterStatus
            for name, value in (
                (b"server_version", b"15.0"),
                (b"server_encoding", b"UTF8"),
                (b"client_encoding", b"UTF8"),
                (b"standard_conforming_strings", b"on"),
                (b"integer_datetimes", b"on"),
                (b"DateStyle", b"ISO, MDY"),
            )
        ),
        _message(b"K", struct.pack("!II", 1, 1)),  # BackendKeyData
        _message(b"Z", b"I"),  # ReadyForQuery
    ]
)


class HungDatabase:
    """Listens on 127.0.0.1; `logs_in` decides whether it completes the startup
    (the PgBouncer case) or says nothing at all (the stopped PostgreSQL).
    `forward_to` (a database URL on 127.0.0.1) is the server `answer()` relays to;
    only with `logs_in=False`, whose held connections are still unread."""

    def __init__(self, *, logs_in: bool, forward_to: str | None = None) -> None:
        assert not (logs_in and forward_to), "a connection it logged in cannot be relayed"
        self.logs_in = logs_in
        self.forward_to = forward_to
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.connections: list[socket.socket] = []
        self.answering = False
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def url(self) -> str:
        if self.forward_to:
            parts = urlsplit(self.forward_to)
            return parts._replace(netloc=f"{parts.username}@127.0.0.1:{self.port}").geturl()
        return f"postgresql://helpdesk@127.0.0.1:{self.port}/helpdesk"

    def answer(self) -> None:
        """The server resumes: what it held, and every new connection, is relayed."""
        assert self.forward_to
        with self._lock:
            self.answering = True
            held = list(self.connections)
        for connection in held:
            self._relay(connection)

    def __enter__(self) -> HungDatabase:
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.server.close()
        for connection in self.connections:
            connection.close()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self.server.accept()
            except OSError:  # closed by __exit__
                return
            with self._lock:
                self.connections.append(connection)
                answering = self.answering
            if answering:
                self._relay(connection)
            elif self.logs_in:
                threading.Thread(target=self._log_in, args=(connection,), daemon=True).start()

    def _log_in(self, connection: socket.socket) -> None:
        try:
            while True:
                size = struct.unpack("!I", _read(connection, 4))[0]
                body = _read(connection, size - 4)
                if struct.unpack("!I", body[:4])[0] not in _ENCRYPTION_REQUESTS:
                    break
                connection.sendall(b"N")  # not here; the client goes on in the clear
            connection.sendall(_LOGGED_IN)
        except OSError:  # the client gave up, or __exit__ closed the socket
            return

    def _relay(self, connection: socket.socket) -> None:
        assert self.forward_to
        upstream = socket.create_connection(("127.0.0.1", urlsplit(self.forward_to).port or 5432))
        self.connections.append(upstream)
        for source, target in ((connection, upstream), (upstream, connection)):
            threading.Thread(target=_pump, args=(source, target), daemon=True).start()


def _pump(source: socket.socket, target: socket.socket) -> None:
    try:
        while chunk := source.recv(65536):
            target.sendall(chunk)
    except OSError:  # either side closed
        pass
    finally:
        for side in (source, target):
            try:
                side.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def _read(connection: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = connection.recv(size - len(data))
        if not chunk:
            raise OSError("closed")
        data += chunk
    return data
