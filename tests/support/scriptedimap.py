"""A scripted IMAP server for the answers a real Dovecot never gives.

Dovecot answers every FETCH of a message it lists, and answers it whole; it never
claims one size and sends another, nor refuses to move one message of several.
Other servers and middleboxes do (docs/mail-gateway.md, "The IMAP poller"). This
server speaks just enough IMAP4rev1 for the poller (LOGIN, LIST, CREATE, SELECT,
UID SEARCH, UID FETCH, UID MOVE, NOOP, LOGOUT) over plain sockets, one thread per
connection, and a test scripts the odd answer: `search`, `fetch` and `move` get the
command and return True once they answered it themselves. Everything Dovecot can show is
tested against Dovecot (tests/test_imap.py).
"""

from __future__ import annotations

import socket
import socketserver
import struct
import threading
from collections.abc import Callable

Script = Callable[["Session", bytes, list[int], str], bool]


def _unanswered(session: Session, tag: bytes, uids: list[int], items: str) -> bool:
    return False


class Session(socketserver.StreamRequestHandler):
    """One connection. Commands are read a line at a time (the poller sends no
    literals), each logged in `server.commands`."""

    server: ScriptedImap

    def send(self, data: bytes) -> None:
        self.wfile.write(data)
        self.wfile.flush()

    def fetched(self, uids: list[int], items: str, *, partial: bool = True) -> bytes:
        """The untagged answers an honest server gives to a FETCH of `uids` (those it
        holds); `partial=False` ignores a `<0.N>` limit and sends the whole message."""
        answer = b""
        for seq, uid in enumerate(sorted(self.server.messages), start=1):
            if uid not in uids:
                continue
            raw = self.server.messages[uid]
            if "RFC822.SIZE" in items:
                answer += b"* %d FETCH (UID %d RFC822.SIZE %d)\r\n" % (seq, uid, len(raw))
                continue
            name = b"BODY[]"
            if "<0." in items:
                name = b"BODY[HEADER]<0>" if "[HEADER]" in items else b"BODY[]<0>"
                if "[HEADER]" in items:
                    raw = raw.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n"
                if partial:
                    raw = raw[: int(items.partition("<0.")[2].partition(">")[0])]
            answer += b"* %d FETCH (UID %d %s {%d}\r\n%s)\r\n" % (seq, uid, name, len(raw), raw)
        return answer

    def reset(self) -> None:
        """Drop the connection with a TCP reset, as a crashing server or a middlebox does."""
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.wfile.close()
        self.rfile.close()
        self.connection.close()

    def handle(self) -> None:
        server = self.server
        self.send(b"* OK [CAPABILITY IMAP4rev1 " + server.capabilities + b"] scripted\r\n")
        try:
            while line := self.rfile.readline():
                if not self._command(line.decode("latin-1").rstrip("\r\n")) or self.rfile.closed:
                    return
        except OSError:  # the client went away
            return

    def _command(self, text: str) -> bool:
        """Answer one command; False when the connection ends."""
        server = self.server
        server.commands.append(text)
        tag, _, rest = text.partition(" ")
        words = rest.split(" ")
        verb = " ".join(words[:2]).upper() if words[0].upper() == "UID" else words[0].upper()
        done = tag.encode() + b" OK done\r\n"
        if verb in ("CAPABILITY", "LOGIN"):
            self.send(b"* CAPABILITY IMAP4rev1 " + server.capabilities + b"\r\n" + done)
        elif verb == "LIST":
            self.send(b'* LIST () "/" ' + words[-1].encode() + b"\r\n" + done)
        elif verb == "SELECT":
            uids = sorted(server.messages)
            self.send(
                b"* %d EXISTS\r\n* OK [UIDVALIDITY 7] ok\r\n* OK [UIDNEXT %d] ok\r\n"
                b"%s OK [READ-WRITE] selected\r\n" % (len(uids), (uids[-1] if uids else 0) + 1, tag.encode())
            )
        elif verb == "UID SEARCH":
            found = _matching(words[2:], sorted(server.messages))
            if not server.search(self, tag.encode(), found, " ".join(words[2:])):
                self.send(b"* SEARCH " + " ".join(map(str, found)).encode() + b"\r\n" + done)
        elif verb == "UID FETCH":
            uids, items = [int(uid) for uid in words[2].split(",")], " ".join(words[3:])
            if not server.fetch(self, tag.encode(), uids, items):
                self.send(self.fetched(uids, items) + done)
        elif verb == "UID MOVE":
            uids = [int(uid) for uid in words[2].split(",")]
            if not server.move(self, tag.encode(), uids, words[3]):
                for uid in uids:
                    if uid in server.messages:
                        server.folders.setdefault(words[3].strip('"'), []).append(uid)
                        del server.messages[uid]
                self.send(done)
        elif verb == "LOGOUT":
            self.send(b"* BYE bye\r\n" + done)
            return False
        elif verb in ("NOOP", "CREATE"):
            self.send(done)
        else:
            self.send(tag.encode() + b" BAD not scripted\r\n")
        return True


def _matching(criteria: list[str], uids: list[int]) -> list[int]:
    """`ALL`, or `UID` and a set of UIDs and ranges (`n:*` includes the highest UID,
    RFC 3501 §6.4.8)."""
    if criteria[0].upper() == "ALL" or not uids:
        return uids
    found: set[int] = set()
    for part in criteria[1].split(","):
        low, _, high = part.partition(":")
        top = uids[-1] if high == "*" else int(high or low)
        found.update(uid for uid in uids if int(low) <= uid <= top)
        if high == "*":
            found.add(uids[-1])
    return sorted(found)


class ScriptedImap(socketserver.ThreadingTCPServer):
    """`messages` get UIDs 1, 2, …; `folders` holds the UIDs moved to each folder;
    `search` (given the UIDs an honest server would list), `fetch` and `move` script
    their commands. Serves until `stop`."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self,
        messages: list[bytes],
        *,
        search: Script = _unanswered,
        fetch: Script = _unanswered,
        move: Script = _unanswered,
        capabilities: bytes = b"UIDPLUS MOVE",
    ) -> None:
        super().__init__(("127.0.0.1", 0), Session)
        self.messages = dict(enumerate(messages, start=1))
        self.folders: dict[str, list[int]] = {}
        self.commands: list[str] = []
        self.fetch = fetch
        self.search = search
        self.move = move
        self.capabilities = capabilities
        threading.Thread(target=self.serve_forever, name="scripted-imap", daemon=True).start()

    def url(self, folder: str = "INBOX") -> str:
        return f"imap://support%40helpdesk.test:secret@127.0.0.1:{self.server_address[1]}/{folder}"

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
