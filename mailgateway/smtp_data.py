"""Reading the DATA section of an SMTP transaction in large pieces (RFC 5321 4.1.1.4,
4.5.2; docs/mail-gateway.md, "How DATA is read").

aiosmtpd awaits one `readuntil(b"\\r\\n")` per line: a realistic support mail is
about 500 lines (a 500 KB attachment alone 6,600), and that loop was most of the
listener's CPU per mail (docs/benchmarks.md). Here the reader is asked for the end
of the mail, `\\r\\n.\\r\\n`, so a mail is one C-speed search per MiB, and
dot-unstuffing is one `bytes.replace`. Whatever follows the terminator (the
client's next commands) stays in the reader.
"""

from __future__ import annotations

import asyncio

TERMINATOR = b"\r\n.\r\n"


class _Received:
    """The wire bytes read so far, counted, and dropped once over the size limit
    (so memory stays at about the limit however much a client sends)."""

    def __init__(self, limit: int | None) -> None:
        # The terminator's ".\r\n" is read with the mail but does not count against
        # the limit (aiosmtpd counts the lines before it): allow for it here.
        self.limit = None if not limit else limit + 3
        self.pieces: list[bytes] = []
        self.size = 0
        self.last2 = b""  # the last two bytes read, kept even when the data is dropped

    @property
    def too_big(self) -> bool:
        return self.limit is not None and self.size > self.limit

    def add(self, piece: bytes) -> None:
        self.size += len(piece)
        self.last2 = (self.last2 + piece[-2:])[-2:]
        if self.too_big:
            self.pieces.clear()
        else:
            self.pieces.append(piece)

    async def add_through(self, reader: asyncio.StreamReader, separator: bytes) -> None:
        """Read up to and including `separator`, in pieces of at most the reader's limit.

        On LimitOverrunError the reader keeps the bytes that could begin a separator
        and `consumed` counts the rest, so taking `consumed` bytes never splits one."""
        while True:
            try:
                self.add(await reader.readuntil(separator))
                return
            except asyncio.LimitOverrunError as error:
                self.add(await reader.read(error.consumed))

    def wire(self) -> bytes:
        """The mail as sent: dot-stuffed, without the terminator's ".\\r\\n"."""
        strip = 3
        while strip:  # the last piece or two end with ".\r\n"
            last = self.pieces.pop()
            if len(last) > strip:
                self.pieces.append(last[:-strip])
                break
            strip -= len(last)
        wire = b"".join(self.pieces)
        self.pieces.clear()
        return wire


async def read_data(reader: asyncio.StreamReader, limit: int | None) -> bytes | None:
    """The mail after `354`, dot-stuffed as sent (see `unstuff`), without the
    terminating line; None when it was larger than `limit` bytes (read to its end
    and dropped, so the connection goes on with the next command).

    Raises CancelledError when the connection is lost (aiosmtpd cancels the
    session's task on EOF and on a reset)."""
    received = _Received(limit)
    # The DATA command's CRLF, read with the command, stands before the first line,
    # so a mail may end at its third byte (the empty mail), where a search for
    # "\r\n.\r\n" would not see it. Read one byte: unless it is "." or CR, no
    # terminator can begin among the bytes read (nor in that CRLF), and the search
    # can start. A line beginning with "." or CR (a stuffed dot, an empty line) is
    # read up to its LF and the next line asked the same; a bare LF (no CR before
    # it) ends this too, as no part of a terminator ends in one. Few mails open that
    # way, and such lines cost what every line cost under aiosmtpd.
    while True:
        start = received.size
        first = await reader.readexactly(1)
        received.add(first)
        if first not in (b".", b"\r"):
            break
        await received.add_through(reader, b"\n")
        if first == b"." and received.size - start == 3 and received.last2 == b"\r\n":
            return None if received.too_big else received.wire()  # the line "."
        if received.last2 != b"\r\n":
            break
    # No part of the terminator is among the bytes read: the first "\r\n.\r\n" in
    # the stream is the end of the mail.
    await received.add_through(reader, TERMINATOR)
    return None if received.too_big else received.wire()


def unstuff(wire: bytes) -> bytes:
    """RFC 5321 4.5.2: every line beginning with "." loses that dot (the first too).

    Lines end at CRLF only, as aiosmtpd splits them, so every "\\r\\n." is a line
    beginning with a dot, and none of them overlap."""
    content = wire.replace(b"\r\n.", b"\r\n")
    return content[1:] if content.startswith(b".") else content
