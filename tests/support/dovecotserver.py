"""A throwaway Dovecot IMAP server on a free loopback port (see shared RECIPES.md).

Used by the test suite and the benchmarks: its own config file, a passwd-file with
the test users, maildirs in a temp directory, no systemd. `pause`/`resume` stop and
start it on the same port with the same mail, to test a poller that must survive a
server restart.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

from tests.support.pgserver import free_port
from tests.support.tls import OpensslMissing, self_signed_certificate
from tests.support.waiting import wait_until

USER = "support@helpdesk.test"
PASSWORD = "secret"
# Accounts with their own INBOX, written when the server starts (Dovecot looks at its
# passwd-file at most once a second, so one added later may be missed): credentials
# LOGIN cannot carry as they are, and one for a test of INBOX itself.
ACCOUNTS = {
    USER: PASSWORD,
    "umlaut@helpdesk.test": "pässwörd",
    "help desk@helpdesk.test": 'a"b\\c',
    "jürgen@helpdesk.test": "secret",
    "inbox-case@helpdesk.test": "secret",
}


class DovecotUnavailable(RuntimeError):
    pass


CONFIG = """\
protocols = imap
listen = 127.0.0.1
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
ssl = yes
ssl_cert = <{root}/tls/cert.pem
ssl_key = <{root}/tls/key.pem
ssl_dh = </usr/share/dovecot/dh.pem
disable_plaintext_auth = no
auth_mechanisms = plain login
# User names a real server may have (a space, ü): Dovecot's default
# allows letters, digits and .-_@ only.
auth_username_chars =
mail_location = maildir:{root}/mail/%u/Maildir
first_valid_uid = 1
mail_max_userip_connections = 100
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/users
}}
userdb {{
  driver = static
  args = uid=nobody gid=nogroup home={root}/mail/%u
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {tls_port}
  }}
}}
"""


class DovecotServer:
    def __init__(self) -> None:
        binary = shutil.which("dovecot") or "/usr/sbin/dovecot"
        if not Path(binary).exists():
            raise DovecotUnavailable(
                "dovecot is missing; `make test` installs the Debian package dovecot-imapd"
            )
        self.binary = binary
        self.doveadm = shutil.which("doveadm") or "/usr/bin/doveadm"
        self.port = free_port()
        self.tls_port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="helpdesk-dovecot."))
        self.config = self.root / "dovecot.conf"
        self.running = False

    def start(self) -> DovecotServer:
        self.root.chmod(0o755)  # Dovecot's unprivileged auth and imap processes read below it
        for name in ("run", "state", "mail", "tls"):
            (self.root / name).mkdir()
        self._make_certificate()
        shutil.chown(self.root / "mail", "nobody", "nogroup")
        (self.root / "users").write_text(
            "".join(f"{user}:{{PLAIN}}{password}::::::\n" for user, password in ACCOUNTS.items()),
            encoding="utf-8",
        )
        self.config.write_text(CONFIG.format(root=self.root, port=self.port, tls_port=self.tls_port))
        self.resume()
        return self

    def resume(self) -> None:
        """Start (or restart after `pause`) on the same port and mail."""
        # Dovecot daemonizes; its child would keep a pipe open, so no capture here
        # (startup errors land in dovecot.log, quoted by _wait_listening).
        subprocess.run(
            [self.binary, "-c", str(self.config)],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.running = True
        self._wait_listening()

    def pause(self) -> None:
        """Stop the server but keep its mail: clients see their connections drop.

        `doveadm stop` ends the master, but an idling imap process can outlive it
        with its connection open; a server that goes away takes those with it, so
        the master's children are killed too.
        """
        pid_file = self.root / "run" / "master.pid"
        children = _children(int(pid_file.read_text().split()[0])) if pid_file.exists() else []
        subprocess.run(
            [self.doveadm, "-c", str(self.config), "stop"],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self.running = False
        wait_until(lambda: not pid_file.exists(), timeout=10, what="dovecot stopping")
        for pid in children:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def kill_sessions(self) -> None:
        """Kill every imap process serving a connection, as a crash or an OOM kill
        would: their clients read EOF, no BYE. The server takes new connections."""
        pid_file = self.root / "run" / "master.pid"
        for pid in _children(int(pid_file.read_text().split()[0])):
            try:
                if Path(f"/proc/{pid}/comm").read_text().strip() == "imap":
                    os.kill(pid, signal.SIGKILL)
            except (OSError, ProcessLookupError):  # gone meanwhile
                continue

    def stop(self) -> None:
        if self.running:
            self.pause()
        shutil.rmtree(self.root, ignore_errors=True)

    @property
    def certificate(self) -> Path:
        """The server's self-signed certificate: point SSL_CERT_FILE at it to trust it."""
        return self.root / "tls" / "cert.pem"

    def _make_certificate(self) -> None:
        try:
            self_signed_certificate(self.root / "tls")
        except OpensslMissing as exc:
            raise DovecotUnavailable(str(exc)) from None

    def url(self, mailbox: str = "INBOX", tls: str = "", *, user: str = USER) -> str:
        """`imap://` (plain), with `tls="starttls"` upgraded, or `tls="imaps"` on the
        TLS port; as `user` (one of ACCOUNTS), percent-encoded."""
        credentials = f"{quote(user, safe='')}:{quote(ACCOUNTS[user], safe='')}"
        if tls == "imaps":
            return f"imaps://{credentials}@127.0.0.1:{self.tls_port}/{mailbox}"
        query = "?starttls=true" if tls == "starttls" else ""
        return f"imap://{credentials}@127.0.0.1:{self.port}/{mailbox}{query}"

    def client(self, user: str = USER):  # type: ignore[no-untyped-def]
        """A logged-in client as `user` (ASCII credentials: LOGIN)."""
        from imapclient import IMAPClient

        client = IMAPClient("127.0.0.1", port=self.port, ssl=False, timeout=30)
        client.login(user, ACCOUNTS[user])
        return client

    def _wait_listening(self) -> None:
        import socket

        def listening() -> bool:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return True
            except OSError:
                return False

        def log() -> str:
            path = self.root / "dovecot.log"
            return "dovecot listening (its log: " + (path.read_text()[-2000:] if path.exists() else "") + ")"

        try:
            wait_until(listening, timeout=10, what=log)
        except AssertionError as error:
            raise DovecotUnavailable(str(error)) from None


def _children(parent: int) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat[stat.rindex(")") + 2 :].split()[1]) == parent:
                pids.append(int(entry.name))
    return pids


class TestMailbox:
    """One test's folders on the shared server: the polled folder and its own
    processed and failed folders, so tests never see each other's mail."""

    __test__ = False  # not a pytest class

    def __init__(self, server: DovecotServer, name: str) -> None:
        self.server = server
        self.folder = name
        self.processed = f"{name}_Processed"
        self.failed = f"{name}_Failed"
        with self.client() as client:
            client.create_folder(name)

    @property
    def url(self) -> str:
        return self.server.url(self.folder)

    def gateway_settings(self, **more: str) -> dict[str, str]:
        """The environment of a gateway process that polls this mailbox (quickly:
        one-second polls, backoffs and a three-second lease)."""
        return {
            "IMAP_URL": self.url,
            "IMAP_PROCESSED_FOLDER": self.processed,
            "IMAP_FAILED_FOLDER": self.failed,
            "IMAP_POLL_SECONDS": "1",
            "IMAP_MAX_BACKOFF_SECONDS": "1",
            "IMAP_LEASE_SECONDS": "3",
            **more,
        }

    def client(self):  # type: ignore[no-untyped-def]
        from imapclient import IMAPClient

        client = IMAPClient("127.0.0.1", port=self.server.port, ssl=False, timeout=30)
        client.login(USER, PASSWORD)
        return client

    def append(self, *messages: bytes, flags: tuple[bytes, ...] = ()) -> None:
        with self.client() as client:
            for raw in messages:
                client.append(self.folder, raw, flags=flags)

    def deliver(self, *messages: bytes, size_tag: int | None = None) -> None:
        """Write messages straight into the folder's maildir `new/`, as a delivery
        agent does: thousands in a second, where APPEND takes minutes (UIDs in any
        order within a call, after those of earlier calls). `size_tag`
        names a size in each file name (`,S=`) other than the real one, which
        Dovecot trusts and then fails to read the message ("Internal error")."""
        maildir = self.server.root / "mail" / USER / "Maildir" / f".{self.folder}"
        stamp = f"{time.time_ns()}.P{os.getpid()}"
        for i, raw in enumerate(messages):
            size = len(raw) if size_tag is None else size_tag
            path = maildir / "tmp" / f"{stamp}Q{i}.helpdesk,S={size}"
            path.write_bytes(raw)
            shutil.chown(path, "nobody", "nogroup")
            path.rename(maildir / "new" / path.name)
        with self.client() as client:  # UIDs now: a later call's come after these
            client.select_folder(self.folder, readonly=True)

    def deliver_by_agent(self, raw: bytes, sender: str) -> None:
        """Hand a message to Dovecot's own delivery agent (dovecot-lda), as an MTA
        such as Postfix does: it stores what it is given, LF line endings and all;
        the trace fields are the MTA's to prepend (LMTP would write its own)."""
        lda = shutil.which("dovecot-lda") or "/usr/lib/dovecot/dovecot-lda"
        subprocess.run(
            [lda, "-c", str(self.server.config), "-d", USER, "-f", sender, "-m", self.folder],
            input=raw,
            check=True,
            capture_output=True,
            timeout=30,
        )

    def count(self, folder: str | None = None) -> int:
        """Messages in a folder (the polled one by default); 0 when it does not exist."""
        with self.client() as client:
            name = folder or self.folder
            if not client.folder_exists(name):
                return 0
            return int(client.folder_status(name, [b"MESSAGES"])[b"MESSAGES"])

    def message_ids(self, folder: str) -> list[str]:
        with self.client() as client:
            client.select_folder(folder, readonly=True)
            fetched = client.fetch(client.search(["ALL"]), ["BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]"])
        ids = []
        for data in fetched.values():
            header = data[b"BODY[HEADER.FIELDS (MESSAGE-ID)]"].decode()
            ids.append(header.split(":", 1)[1].strip().strip("<>") if ":" in header else "")
        return ids
