"""django-helpdesk beside our gateway in the same run: the driver of `bench/django_helpdesk_peer.py`.

The peer runs in its own virtualenv (`--peer-python`, which `make bench` builds
from `bench/peer-requirements.txt`), started with `python -I` so that nothing of
this project (whose package is also called `helpdesk`) is on its path, whatever
PYTHONPATH says. Its
database lives on the benchmark's private PostgreSQL: migrated once per `Peer`,
then copied (`CREATE DATABASE ... TEMPLATE`) for every run, so each run starts
empty, as ours does. The CPU it reports is its own process's during the timed
call; PostgreSQL's is read from /proc around the same call.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.postgres import admin
from bench.realistic_mail import GeneratedMail
from tests.support.pgserver import PostgresServer

VERSION = "2.6.1"
NAME = f"django-helpdesk {VERSION}"
GOAL = 5.0  # ours ÷ django-helpdesk (issue 19), on each of these shapes:
GOAL_SHAPES = ("realistic", "plain4k")
SCRIPT = Path(__file__).resolve().parent / "django_helpdesk_peer.py"
TIMEOUT = 1800.0  # seconds for one run; a thousand mails take well under a minute


@dataclass(frozen=True)
class PeerRun:
    mails: int
    seconds: float
    cpu: float  # the peer process's CPU seconds during the timed call
    postgres_cpu: float
    tickets: int
    followups: int
    attachments: int
    left: int | None  # mails it left unread (directory mode)

    @property
    def rate(self) -> float:
        return self.mails / self.seconds if self.seconds > 0 else 0.0

    def per_mail_ms(self, seconds: float) -> float:
        return 1000.0 * seconds / self.mails if self.mails else 0.0

    def describe(self, expected_tickets: int, expected_followups: int) -> str:
        """Whether it made one follow-up per mail and a ticket per new conversation."""
        ok = self.tickets == expected_tickets and self.followups == expected_followups and not self.left
        return ("yes" if ok else "NO") + (
            f" ({self.tickets} tickets, {self.followups} follow-ups"
            f"{f', {self.left} left unread' if self.left else ''})"
        )


class Peer:
    def __init__(
        self, python: Path, pg: PostgresServer, scratch: Path, postgres_cpu: Callable[[], float]
    ) -> None:
        self.python = python
        self.pg = pg
        self.scratch = scratch
        self.postgres_cpu = postgres_cpu
        self.template = "peer_template"
        subprocess.run(
            self._argv("migrate", pg.create_database(self.template)),
            check=True,
            timeout=TIMEOUT,
        )

    def _argv(self, *args: str) -> list[str]:
        return [str(self.python), "-I", str(SCRIPT), *args]

    def _database(self, name: str) -> str:
        admin(
            self.pg.url(),
            f'DROP DATABASE IF EXISTS "{name}"',
            f'CREATE DATABASE "{name}" TEMPLATE "{self.template}"',
        )
        return self.pg.url(name)

    def _media(self, name: str) -> Path:
        media = self.scratch / f"peer-media-{name}"
        shutil.rmtree(media, ignore_errors=True)
        media.mkdir(parents=True)
        return media

    def directory(
        self, name: str, warmup: Sequence[GeneratedMail], mails: Sequence[GeneratedMail]
    ) -> PeerRun:
        """`get_email` over a directory of `mails`, after an untimed one over `warmup`."""
        folders = []
        for label, batch in (("warmup", warmup), ("mails", mails)):
            folder = self.scratch / f"peer-{name}-{label}"
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
            for mail in batch:
                (folder / f"{mail.index:06d}.eml").write_bytes(mail.raw)
            folders.append(str(folder))
        try:
            return self._timed(
                len(mails), "directory", self._database(name), str(self._media(name)), *folders
            )
        finally:
            for path in folders:
                shutil.rmtree(path, ignore_errors=True)

    def imap(
        self, name: str, count: int, host: str, port: int, user: str, password: str, folder: str
    ) -> PeerRun:
        """`get_email` draining `count` mails from an IMAP folder."""
        return self._timed(
            count,
            "imap",
            self._database(name),
            str(self._media(name)),
            host,
            str(port),
            user,
            password,
            folder,
        )

    def _timed(self, count: int, *args: str) -> PeerRun:
        process = subprocess.Popen(
            self._argv(*args),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert process.stdin is not None and process.stdout is not None
        try:
            if process.stdout.readline().strip() != "ready":
                raise RuntimeError(f"{NAME} did not start:\n{process.communicate(timeout=60)[1][-3000:]}")
            before = self.postgres_cpu()
            process.stdin.write("go\n")
            process.stdin.flush()
            line = process.stdout.readline()
            after = self.postgres_cpu()
            stderr = process.communicate(timeout=TIMEOUT)[1]
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        if process.returncode != 0 or not line:
            raise RuntimeError(f"{NAME} failed ({process.returncode}):\n{stderr[-3000:]}")
        report = json.loads(line)
        return PeerRun(
            mails=count,
            seconds=report["seconds"],
            cpu=report["cpu"],
            postgres_cpu=after - before,
            tickets=report["tickets"],
            followups=report["followups"],
            attachments=report["attachments"],
            left=report["left"],
        )


def goal_line(ratios: Mapping[str, float | None]) -> str:
    """The issue's goal, shape by shape, as measured in this run."""
    verdicts = []
    for shape in GOAL_SHAPES:
        ratio = ratios.get(shape)
        if ratio is None:
            verdicts.append(f"{shape} not measured")
        else:
            verdicts.append(f"{shape} {ratio:.2f}×, {'met' if ratio >= GOAL else 'NOT met'}")
    return (
        f"Goal: ours ≥ {GOAL:g}× {NAME} on the realistic mix and the 4 KB plain shape: {'; '.join(verdicts)}."
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options the SMTP and IMAP benchmarks share for the shapes they feed
    beside the peer: the stage split's size, the generator's seed, the peer's python."""
    parser.add_argument(
        "--stage-mails",
        type=int,
        default=300,
        help="mails of each shape ingested in process for the stage split (default 300; 0: none)",
    )
    parser.add_argument("--seed", type=int, default=1, help="the mail generator's seed (default 1)")
    parser.add_argument(
        "--peer-python",
        type=Path,
        default=os.environ.get("BENCH_PEER_PYTHON") or None,
        help=f"python of a virtualenv with {NAME} (bench/peer-requirements.txt; `make bench` "
        "builds one); without it the peer is not run",
    )


def check_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuse what `add_arguments` cannot take (parser.error exits)."""
    if args.stage_mails < 0:
        parser.error("--stage-mails must not be negative")
    if args.peer_python is not None and not args.peer_python.exists():
        parser.error(f"--peer-python {args.peer_python} does not exist (`make bench` builds it)")
