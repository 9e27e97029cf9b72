"""A private PgBouncer in transaction mode in front of the test PostgreSQL, as several
hosts would share one database through it (Debian's `pgbouncer`, started and stopped
by the harness on a free loopback port)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
from pathlib import Path

from tests.support.pgserver import PostgresServer, free_port
from tests.support.waiting import wait_until

BINARY = "/usr/sbin/pgbouncer"


class PgBouncerUnavailable(RuntimeError):
    pass


class PgBouncer:
    def __init__(self, server: PostgresServer) -> None:
        self.server = server
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="helpdesk-pgbouncer."))
        self._as_postgres = os.geteuid() == 0

    def start(self) -> PgBouncer:
        if not os.access(BINARY, os.X_OK):
            raise PgBouncerUnavailable(
                "pgbouncer is missing (Debian package pgbouncer; make servers installs it)"
            )
        (self.root / "users.txt").write_text('"postgres" ""\n')
        (self.root / "pgbouncer.ini").write_text(
            "[databases]\n"
            f"* = host=127.0.0.1 port={self.server.port}\n"
            "[pgbouncer]\n"
            "listen_addr = 127.0.0.1\n"
            f"listen_port = {self.port}\n"
            "unix_socket_dir =\n"
            "auth_type = trust\n"
            f"auth_file = {self.root / 'users.txt'}\n"
            "pool_mode = transaction\n"
            "max_client_conn = 500\n"
            "default_pool_size = 20\n"
            f"logfile = {self.root / 'pgbouncer.log'}\n"
            f"pidfile = {self.root / 'pgbouncer.pid'}\n"
            "ignore_startup_parameters = extra_float_digits,options\n"
        )
        command = [BINARY, "-d", str(self.root / "pgbouncer.ini")]
        if self._as_postgres:
            shutil.chown(self.root, "postgres", "postgres")
            for path in self.root.iterdir():
                shutil.chown(path, "postgres", "postgres")
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, capture_output=True)
        try:
            wait_until(self._listening, timeout=10, what=lambda: "pgbouncer listening: " + self._log())
        except AssertionError as error:
            raise PgBouncerUnavailable(str(error)) from None
        return self

    def url(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def stop(self) -> None:
        pid_file = self.root / "pgbouncer.pid"
        if pid_file.exists():
            try:
                os.kill(int(pid_file.read_text().split()[0]), signal.SIGTERM)
            except ProcessLookupError:
                pass
            wait_until(lambda: not pid_file.exists(), timeout=10, what="pgbouncer stopping")
        shutil.rmtree(self.root, ignore_errors=True)

    def _listening(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return True
        except OSError:
            return False

    def _log(self) -> str:
        path = self.root / "pgbouncer.log"
        return path.read_text()[-2000:] if path.exists() else "(no log)"
