"""`mailgateway/serverurl.py`: `IMAP_URL` and `OUTBOUND_SMTP_URL` are read, or refused
with `InvalidServerUrl` (the gateway's "refuses to start" message), whatever they
hold; nothing else may escape (docs/mail-gateway.md, docs/operations.md)."""

from __future__ import annotations

import random

import pytest

from mailgateway.imap import _SCHEMES as IMAP
from mailgateway.outbound import _SCHEMES as SMTP
from mailgateway.serverurl import InvalidServerUrl, ServerUrl, parse_server_url


@pytest.mark.parametrize(
    ("url", "complaint"),
    [
        ("imap://u:p@[::1/INBOX", "not a URL"),  # urlsplit's bare ValueError before
        ("imap://u:p@[::1]x/INBOX", "invalid host"),
        ("imap://u:p@[::1:2/INBOX", "not a URL"),
        ("imap://u:p@[nothost]/INBOX", "not a URL"),
        ("imap://u:p@host:0/INBOX", "invalid port"),  # was read as the default port
        ("imap://u:pa#ss@host/INBOX", "%23"),
        ("imap://u:p@host/INBOX%0d%0aA1%20LOGOUT", "control character"),
        ("imap://u:p%00x@host/INBOX", "control character"),
        ("imap://u%0a:p@host/INBOX", "control character"),
        ("imap://u:p@host\t/INBOX", "control character"),
        ("imap://u:p@ho%20st/INBOX", "host"),
        ("imap://u:p@a..b/INBOX", "host"),
        (f"imap://u:p@{'a' * 64}.example/INBOX", "host"),
        ("imap://u:p\udcff@host/INBOX", "UTF-8"),  # a non-UTF-8 byte in the environment
        ("smtp://relay.example:0", "invalid port"),
        ("smtp://[::1", "not a URL"),
        ("smtp://ab--\u00fc.example", "invalid host"),  # no U-label in IDNA 2008
    ],
)
def test_malformed_server_urls_are_refused_with_a_reason(url: str, complaint: str) -> None:
    schemes = SMTP if url.startswith("smtp") else IMAP
    with pytest.raises(InvalidServerUrl, match=complaint):
        parse_server_url(url, schemes)


def test_a_bracketed_ipv6_host_and_a_non_ascii_password_are_read() -> None:
    server = parse_server_url("imaps://u%20v:p%C3%A4ss@[::1]:1993/INBOX", IMAP)
    assert (server.host, server.port, server.username, server.password) == ("::1", 1993, "u v", "päss")


def test_an_internationalised_host_is_read_in_its_idna_2008_ascii_form() -> None:
    """smtplib, imaplib and ssl write a Unicode host name with Python's IDNA 2003
    codec, which turns `straße.example` into `strasse.example`: another domain,
    whose owner would have got our relay password (docs/operations.md)."""
    for url, host in [
        ("smtp://stra\u00dfe.example:25", "xn--strae-oqa.example"),
        ("smtp://B\u00dcCHER.example", "xn--bcher-kva.example"),
        ("smtp://relay.example", "relay.example"),
    ]:
        assert parse_server_url(url, SMTP).host == host


_PIECES = [
    "imap://", "imaps://", "smtp://", "smtps://", "IMAP://", "imap:", "//", "/", "\\",
    "u", "u:p", ":", "@", "@@", "%", "%zz", "%0d%0a", "%00", "%ff", "%C3%A4", "%2F", "#", "?",
    "?starttls=true", "?starttls", "?=&&", "&starttls=no", "[", "]", "[::1]", "[::1", "[v1.x]",
    "[fe80::1%eth0]", "host", "ho st", "a..b", "xn--", "é", "ı", "\u3002", "\uff0f", "\ufe6b",
    "\x00", "\r\n", "\t", "\x7f", "\udcff", "\u2028", "0", ":0", ":65536", ":-1", ":1e3",
    ":\u0663", ":143", "INBOX", "a" * 70, ".", " ", "\ufeff",
]  # fmt: skip


def test_hostile_server_urls_are_read_or_refused_as_invalid_nothing_else() -> None:
    """A seeded fuzz: only `InvalidServerUrl` may escape, and what is read is usable."""
    rng = random.Random(20261207)
    for _ in range(4000):
        url = "".join(rng.choice(_PIECES) for _ in range(rng.randint(1, 9)))
        for schemes in (IMAP, SMTP):
            try:
                server = parse_server_url(url, schemes)
            except InvalidServerUrl as exc:
                assert str(exc).startswith(schemes.setting), (url, exc)
                continue
            _assert_usable(url, server)


def _assert_usable(url: str, server: ServerUrl) -> None:
    assert 0 < server.port < 65536, url
    assert server.host and server.host.isascii(), url  # no codec of Python's in the way
    for part in (server.host, server.username or "", server.password or "", server.path):
        part.encode("utf-8")
        assert not any(ord(char) < 32 or ord(char) == 127 for char in part), url
