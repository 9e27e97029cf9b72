"""Mails per second accepted through the real SMTP listener, beside an fsync ceiling.

What it measures: `gateway.py` runs as its own process (exactly as in production,
INFO logging included, with `SMTP_PROCESSES` listener processes: the
configuration's default of one per core unless `--smtp-processes` says otherwise)
against a private PostgreSQL server with fsync on, with an
authorized-sender rule for `@example.com`, so every mail opens a ticket. N client
processes (1, 4 and 16 by default) each keep one SMTP connection open and send
MAIL/RCPT/DATA on it, one mail after another, for a fixed wall-clock time after a
common start barrier. A `250` from the gateway means the mail and its ticket are
committed (docs/mail-gateway.md), so rate = 250 replies / elapsed time.

Each worker first sends one warm-up mail (Message-ID counter 0) before the barrier —
it connects the gateway's thread-pool sessions to the database and compiles the
statements — then loops "while now < deadline: send one mail". The mail in flight at
the deadline is waited for and counted, and elapsed time runs from the first
worker's start to the last worker's last reply, so every counted 250 lies inside the
measured window and nothing is in flight when the counts are compared. After each
gateway run (and after the gateway was stopped with SIGTERM, which lets it finish
what it had accepted) the database is checked: `inbound_mails` rows with outcome
'created' must equal the 250s plus the warm-up mails, exactly — no 250 without a
row (a lost mail) and no row without a 250 (a client that gave up on a reply would
show up as "rows > 250s") — and the ticket numbers must be 1..count with no gap.
Every run uses a fresh database, so no run inherits the previous run's rows, dead
tuples or index growth; a CHECKPOINT before each run makes them pay the same
full-page writes.

The ceiling, measured in the same run with the same connection counts, duration and
client code, is a minimal aiosmtpd server (`--ceiling-server PORT DIR`, its own
process) whose DATA handler only writes the mail to a new file and fsyncs the file
and the directory before answering 250 — the least a server that promises "250 =
durable" must do. Like the gateway's `SupportHandler` it does that work in a pool of
8 threads, so concurrent mails can share the disk's flushes as PostgreSQL's commits
share WAL flushes. The files live in the system temp directory, the same filesystem
as the private PostgreSQL's data directory.

Clients are OS processes (multiprocessing "spawn"): the machine has two cores, and
the clients compete for them with the gateway and PostgreSQL, so each client is
kept cheap — the mail bytes are built once per worker and only the Message-ID
counter is substituted per mail, and the connection is reused. The CPU table at the
end shows what each party used per accepted mail (from /proc: the server process and its children,
the postmaster and its backends, and the client processes' own CPU time), which is
where the time goes.

Then the mail shapes of `bench.realistic_mail` (today's short mail, a 4 KB plain
mail and the realistic mix; `--shapes`): each shape is a fixed, seeded sequence of
`--shape-mails` mails (1,000), sent through a fresh gateway over
`--shape-connections` connections (4) that take the next mail of the sequence in
turn, so replies arrive after the mail that opened their ticket; the first mail of
each connection is its warm-up, the rest are timed, and rate = timed mails /
elapsed. The database must then hold a created row and a ticket (numbers gap-free)
for each new mail and an appended row for each reply. In the same run
django-helpdesk 2.6.1 (`bench/peer.py`, given `--peer-python`) reads the same mails
with its `get_email` from a local directory, the same first mails untimed, into a
database of its own on the same PostgreSQL; the table gives both rates, ours ÷
theirs, and the CPU per mail of the gateway, of the peer and of PostgreSQL under
each. Last, the first `--stage-mails` mails (300) of each shape go through the
pipeline in process to split the gateway's CPU per mail by stage
(`bench.pipeline_stages`).

`--py-spy DIR` additionally samples the gateway process with py-spy (if it is
installed; it is not a project requirement) during each gateway run and writes
collapsed stacks to DIR/gateway-N.folded; sampling costs a little CPU, so compare
rates from runs without it.

Run from the project root:  .venv/bin/python -m bench.smtp_bench [--seconds 5] [--connections 1,4,16]
    [--only-shapes] [--shapes short,plain4k,realistic] [--shape-mails 1000] [--stage-mails 300]
    [--peer-python bench/results/django-helpdesk/bin/python]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import itertools
import multiprocessing as mp
import os
import queue
import shutil
import signal
import smtplib
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from email.policy import SMTP as SMTP_POLICY
from functools import partial
from multiprocessing.queues import Queue
from multiprocessing.sharedctypes import Synchronized
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any, Literal

from bench import peer, pipeline_stages
from bench.cpu import postgres_cpu, tree_cpu
from bench.postgres import admin, migrate, server_settings
from bench.realistic_mail import SHAPES, SHORT_BODY, GeneratedMail, describe, generate, shape_names
from bench.report import markdown_table, plain_table, positive_counts
from config import Config, TestingConfig
from helpdesk import create_app
from helpdesk.extensions import db
from helpdesk.services.senders import SendersService
from tests.support.gateway_process import SECRETS
from tests.support.mail import SUPPORT, message
from tests.support.pgserver import PostgresServer, free_port

Kind = Literal["gateway", "ceiling"]

ROOT = Path(__file__).resolve().parent.parent
CEILING = (
    "minimal aiosmtpd server (own process, 8-thread pool like the gateway) whose DATA "
    "handler writes each mail to a new file and fsyncs the file and its directory "
    "before answering 250"
)
GOAL = 0.3  # gateway / ceiling at 16 connections
REFERENCE = f"{peer.NAME} on the same mails: the shapes table"
PLACEHOLDER = b"N0000000000"  # the Message-ID counter, substituted per mail
SERVER_THREADS = 8  # SupportHandler's default pool size
SETUP_TIMEOUT = 300.0  # seconds for every worker to import, connect and warm up
START_TIMEOUT = 60.0  # seconds for a server subprocess to listen
STOP_TIMEOUT = 60.0
# Every mail opens a ticket, many from one sender: the per-customer limits are
# counted on every mail (their cost is measured) but never reached. The largest
# value the settings accept (docs/operations.md); 10**9 is refused at start.
CUSTOMER_LIMITS_NEVER_REACHED = {
    "CUSTOMER_MAX_TICKETS_PER_HOUR": 1_000_000,
    "CUSTOMER_MAX_OPEN_TICKETS": 1_000_000,
}
SPAWN = mp.get_context("spawn")  # clients start clean, without the parent's app and connections
TEMPLATE = "bench_template"  # migrated once per server, copied for every run (`prepare_database`)
SHAPE_PATIENCE = 1800.0  # seconds for one shape's mails through the gateway


@dataclass(frozen=True)
class WorkerResult:
    accepted: int  # 250 replies inside the timed loop
    refused: int  # any other final reply to DATA
    # time.monotonic() is CLOCK_MONOTONIC on Linux: one clock for every process.
    started: float
    finished: float
    cpu: float  # the worker's own CPU seconds during the timed loop
    first_refusal: str = ""


@dataclass(frozen=True)
class Run:
    connections: int
    accepted: int
    refused: int
    elapsed: float
    warmups: int
    server_cpu: float  # seconds
    postgres_cpu: float  # seconds
    client_cpu: float  # seconds
    first_refusal: str = ""

    @property
    def rate(self) -> float:
        return self.accepted / self.elapsed if self.elapsed > 0 else 0.0

    def per_mail_ms(self, seconds: float) -> float:
        return 1000.0 * seconds / self.accepted if self.accepted else 0.0

    @property
    def cores_busy(self) -> float:
        return (self.server_cpu + self.postgres_cpu + self.client_cpu) / self.elapsed


@dataclass(frozen=True)
class DbCheck:
    accepted: int  # 250s counted by the clients (timed loop)
    warmups: int
    created: int  # inbound_mails rows with outcome 'created'
    inbound: int  # all inbound_mails rows
    tickets: int
    low: int | None
    high: int | None

    @property
    def expected(self) -> int:
        return self.accepted + self.warmups

    @property
    def gap_free(self) -> bool:
        if self.tickets == 0 or self.low is None or self.high is None:
            return False
        return self.low == 1 and self.high - self.low + 1 == self.tickets

    @property
    def ok(self) -> bool:
        return (
            self.gap_free and self.created == self.expected == self.tickets and self.inbound == self.created
        )

    def describe(self) -> str:
        if self.ok:
            return f"yes ({self.created} = {self.accepted}+{self.warmups} warm-up)"
        return (
            f"NO ({self.created} created / {self.inbound} inbound rows, "
            f"{self.expected} 250s incl. warm-up, {self.tickets} tickets "
            f"{self.low}..{self.high}, gap-free: {'yes' if self.gap_free else 'no'})"
        )


@dataclass(frozen=True)
class Row:
    connections: int
    gateway: Run
    ceiling: Run
    check: DbCheck

    @property
    def ratio(self) -> float:
        return self.gateway.rate / self.ceiling.rate if self.ceiling.rate > 0 else 0.0


# -- client workers (run in spawned processes) -----------------------------------


class _Connection:
    """One SMTP connection sending mail after mail on it, as a relaying MTA does."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.client = self._connect()

    def _connect(self) -> smtplib.SMTP:
        client = smtplib.SMTP("127.0.0.1", self.port, timeout=120)
        client.ehlo("client.example")
        return client

    def send(self, sender: str, raw: bytes) -> tuple[int, bytes]:
        code, text = self.client.mail(sender)
        if code == 421:  # the session's MAIL budget (docs/mail-gateway.md, "Timeouts"): reconnect
            self.close()
            self.client = self._connect()
            code, text = self.client.mail(sender)
        if code != 250:
            return code, text
        code, text = self.client.rcpt(SUPPORT)
        if code != 250:
            return code, text
        return self.client.data(raw)

    def close(self) -> None:
        try:
            self.client.quit()
        except (OSError, smtplib.SMTPException):
            pass
        self.client.close()


def _send_until(
    connection: _Connection, barrier: Barrier, mails: Callable[[], tuple[str, bytes] | None]
) -> WorkerResult:
    """From the common start, send what `mails` hands out until it says None."""
    barrier.wait(SETUP_TIMEOUT)
    cpu = time.process_time()
    started = time.monotonic()
    accepted = refused = 0
    first_refusal = ""
    while (mail := mails()) is not None:
        code, text = connection.send(*mail)
        if code == 250:
            accepted += 1
        else:
            refused += 1
            first_refusal = first_refusal or f"{code} {text.decode(errors='replace')}"
    finished = time.monotonic()
    return WorkerResult(accepted, refused, started, finished, time.process_time() - cpu, first_refusal)


def _client(port: int, index: int, barrier: Barrier, seconds: float, tag: str) -> WorkerResult:
    """Today's short mail, again and again, for `seconds`; only the Message-ID changes."""
    sender = f"user{index}@example.com"
    raw = message(
        sender=sender,
        subject=f"Bench mail from worker {index}",
        body=SHORT_BODY,
        message_id=f"<{tag}-{index}-{PLACEHOLDER.decode()}@client.example>",
    ).as_bytes(policy=SMTP_POLICY)
    head, placeholder, tail = raw.partition(PLACEHOLDER)
    if not placeholder or PLACEHOLDER in tail:
        raise RuntimeError("the Message-ID placeholder must occur exactly once")
    counter = itertools.count(1)
    deadline = 0.0

    def next_mail() -> tuple[str, bytes] | None:
        nonlocal deadline
        now = time.monotonic()
        deadline = deadline or now + seconds
        return (sender, head + b"%010d" % next(counter) + tail) if now < deadline else None

    connection = _Connection(port)
    try:
        code, text = connection.send(sender, head + b"%010d" % 0 + tail)  # warm-up, outside the timed window
        if code != 250:
            raise RuntimeError(f"warm-up mail got {code} {text!r}")
        return _send_until(connection, barrier, next_mail)
    finally:
        connection.close()


def _shape_client(
    port: int, index: int, barrier: Barrier, files: Sequence[tuple[str, str]], taken: Synchronized[int]
) -> WorkerResult:
    """A fixed sequence of mails shared by all connections, taken in order.

    Mail `index` of the sequence is this connection's warm-up; then each connection
    takes the next mail not yet taken (`taken`, shared), so the mails go out in
    sequence order, at most one per connection in flight, and a reply reaches the
    gateway well after the mail that opened its ticket."""
    mails = [(sender, Path(path).read_bytes()) for path, sender in files]

    def next_mail() -> tuple[str, bytes] | None:
        with taken.get_lock():
            position = taken.value
            taken.value += 1
        return mails[position] if position < len(mails) else None

    connection = _Connection(port)
    try:
        code, text = connection.send(*mails[index])
        if code != 250:
            raise RuntimeError(f"warm-up mail got {code} {text!r}")
        return _send_until(connection, barrier, next_mail)
    finally:
        connection.close()


def _worker_main(
    job: Callable[..., WorkerResult],
    port: int,
    index: int,
    barrier: Barrier,
    results: Queue[tuple[int, WorkerResult | str]],
    *args: Any,
) -> None:
    try:
        results.put((index, job(port, index, barrier, *args)))
    except BaseException:
        barrier.abort()  # release the others instead of leaving them at the start line
        results.put((index, traceback.format_exc()))


# -- server subprocesses ---------------------------------------------------------


class ServerProcess:
    """A server subprocess that prints `ready` once it listens; output kept in a ring."""

    def __init__(self, argv: list[str], env: dict[str, str], ready: str, name: str) -> None:
        self.name = name
        self.output: collections.deque[str] = collections.deque(maxlen=200)
        self.process = subprocess.Popen(
            argv,
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        deadline = time.monotonic() + START_TIMEOUT
        stdout = self.process.stdout
        assert stdout is not None
        while time.monotonic() < deadline:
            line = stdout.readline()
            if line:
                self.output.append(line)
            if ready in line:
                # Keep draining, or the server blocks on a full pipe.
                threading.Thread(target=self._drain, daemon=True).start()
                return
            if not line and self.process.poll() is not None:
                break
        self.stop()
        raise RuntimeError(f"{name} did not start:\n{self.tail()}")

    def _drain(self) -> None:
        stdout = self.process.stdout
        assert stdout is not None
        for line in stdout:
            self.output.append(line)

    @property
    def pid(self) -> int:
        return self.process.pid

    def tail(self, lines: int = 20) -> str:
        return "".join(list(self.output)[-lines:])

    def stop(self) -> None:
        """SIGTERM (both servers finish the mails in flight), then SIGKILL if stuck."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_gateway(url: str, port: int, instance_dir: Path, processes: int) -> ServerProcess:
    env = dict(
        os.environ,
        **SECRETS,
        DATABASE_URL=url,
        SMTP_LISTEN=f"127.0.0.1:{port}",
        HELPDESK_INSTANCE_DIR=str(instance_dir),
        SUPPORT_ADDRESSES=SUPPORT,
        TRUSTED_AUTHSERV_ID="",
        UNKNOWN_SENDER_POLICY="quarantine",
        PYTHONUNBUFFERED="1",
        OUTBOUND_SMTP_URL=os.environ.get("BENCH_OUTBOUND_SMTP_URL", ""),
        SMTP_PROCESSES=str(processes),
        **{name: str(value) for name, value in CUSTOMER_LIMITS_NEVER_REACHED.items()},
    )
    gateway = ServerProcess([sys.executable, "gateway.py"], env, "gateway started", "gateway")
    # The extra listeners start after the gateway's line; until they listen, the
    # kernel would hand every connection to the first process.
    deadline = time.monotonic() + START_TIMEOUT
    while sum("SMTP listener process on" in line for line in list(gateway.output)) < processes - 1:
        if time.monotonic() > deadline:
            gateway.stop()
            raise RuntimeError(f"gateway listener processes did not start:\n{gateway.tail()}")
        time.sleep(0.05)
    return gateway


def start_ceiling(port: int, directory: Path) -> ServerProcess:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return ServerProcess(
        [sys.executable, "-m", "bench.smtp_bench", "--ceiling-server", str(port), str(directory)],
        env,
        "ceiling server started",
        "ceiling server",
    )


def ceiling_server(port: int, directory: str) -> int:
    """The ceiling: accept any mail, store it as a file, fsync file and directory, 250."""
    from aiosmtpd.controller import Controller

    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    executor = ThreadPoolExecutor(max_workers=SERVER_THREADS, thread_name_prefix="store")
    dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    numbers = itertools.count(1)  # only the event loop thread draws from it

    def store(n: int, data: bytes) -> None:
        fd = os.open(os.path.join(directory, f"{n:010d}.eml"), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.fsync(dir_fd)  # the new directory entry is durable too

    class StoreHandler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            data = envelope.original_content or b""
            if isinstance(data, str):
                data = data.encode("utf-8", "surrogateescape")
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(executor, store, next(numbers), data)
            return "250 2.0.0 OK stored"

    controller = Controller(
        StoreHandler(),
        hostname="127.0.0.1",
        port=port,
        data_size_limit=TestingConfig.MAX_MESSAGE_BYTES,
        decode_data=False,
        enable_SMTPUTF8=True,
        ident="fsync ceiling",
    )
    controller.start()
    print(f"ceiling server started on 127.0.0.1:{port}", flush=True)
    try:
        stopping.wait()
    finally:
        controller.stop()
        executor.shutdown(wait=True)
        os.close(dir_fd)
    return 0


# -- the parent: server, schema, runs ------------------------------------------


def measure(
    kind: Kind,
    server: ServerProcess,
    port: int,
    connections: int,
    pg_data: Path | None,
    patience: float,
    job: Callable[..., WorkerResult],
    *job_args: Any,
) -> Run:
    """Start `connections` client processes running `job`, let them go together,
    collect their counts; give up `patience` seconds after the start.

    The parent joins the start barrier too, so it reads the servers' CPU counters when
    the timed window opens (after the warm-up mails) and again when every client
    reported, before the server is stopped.
    """
    barrier = SPAWN.Barrier(connections + 1)
    results: Queue[tuple[int, WorkerResult | str]] = SPAWN.Queue()
    processes = [
        SPAWN.Process(
            target=_worker_main,
            name=f"bench-{kind}-{index}",
            args=(job, port, index, barrier, results, *job_args),
        )
        for index in range(connections)
    ]
    for process in processes:
        process.start()
    outcomes: dict[int, WorkerResult | str] = {}
    give_up = time.monotonic() + SETUP_TIMEOUT + patience
    cpu_before: tuple[float, float] | None = None
    cpu_after = (0.0, 0.0)

    def cpu_now() -> tuple[float, float]:
        return tree_cpu(server.pid), postgres_cpu(pg_data) if pg_data else 0.0

    try:
        try:
            barrier.wait(SETUP_TIMEOUT)
            cpu_before = cpu_now()
        except threading.BrokenBarrierError:
            pass  # a worker failed; its traceback arrives on the queue
        while len(outcomes) < connections:
            try:
                index, outcome = results.get(timeout=1.0)
                outcomes[index] = outcome
            except queue.Empty:
                crashed = [p.name for p in processes if p.exitcode not in (None, 0)]
                if crashed or time.monotonic() > give_up:
                    raise RuntimeError(
                        f"{kind} clients did not report: {crashed or 'timeout'}\n"
                        f"{server.name} output:\n{server.tail()}"
                    ) from None
        if cpu_before is not None:
            cpu_after = cpu_now()
    finally:
        for process in processes:
            process.join(timeout=30)
            if process.is_alive():
                process.terminate()
                process.join()
    failures = [outcome for outcome in outcomes.values() if isinstance(outcome, str)]
    if failures or cpu_before is None:
        first = failures[0] if failures else "start barrier broken"
        raise RuntimeError(
            f"{len(failures)} {kind} client(s) failed; first:\n{first}\n"
            f"{server.name} output:\n{server.tail()}"
        )
    done = [outcome for outcome in outcomes.values() if isinstance(outcome, WorkerResult)]
    elapsed = max(r.finished for r in done) - min(r.started for r in done)
    refusals = [r.first_refusal for r in done if r.first_refusal]
    return Run(
        connections=connections,
        accepted=sum(r.accepted for r in done),
        refused=sum(r.refused for r in done),
        elapsed=elapsed,
        warmups=connections,
        server_cpu=cpu_after[0] - cpu_before[0],
        postgres_cpu=cpu_after[1] - cpu_before[1],
        client_cpu=sum(r.cpu for r in done),
        first_refusal=refusals[0] if refusals else "",
    )


def prepare_database(server: PostgresServer, name: str) -> str:
    """A fresh database: migrated, with the `@example.com` rule, checkpointed.

    A copy of a template database made that way on the server's first call, since
    migrating takes seconds and the benchmarks make a database for every run."""
    (exists,) = admin(server.url(), f"SELECT count(*) FROM pg_database WHERE datname = '{TEMPLATE}'")
    if not exists or not exists[0]:
        url = server.create_database(TEMPLATE)
        migrate(url)
        app = create_app(TestingConfig, SQLALCHEMY_DATABASE_URI=url)
        with app.app_context():
            SendersService(db.session).add("@example.com", "Bench")
            db.session.commit()
            db.session.remove()
            db.engine.dispose()
    admin(
        server.url(), f'DROP DATABASE IF EXISTS "{name}"', f'CREATE DATABASE "{name}" TEMPLATE "{TEMPLATE}"'
    )
    url = server.url(name)
    admin(url, "VACUUM ANALYZE", "CHECKPOINT")
    return url


def check_database(url: str, run: Run) -> DbCheck:
    inbound, tickets = admin(
        url,
        "SELECT count(*) FILTER (WHERE outcome = 'created'), count(*) FROM inbound_mails",
        "SELECT count(*), min(number), max(number) FROM tickets",
    )
    if inbound is None or tickets is None:
        raise RuntimeError("count query returned no row")
    return DbCheck(
        run.accepted, run.warmups, int(inbound[0]), int(inbound[1]), int(tickets[0]), tickets[1], tickets[2]
    )


def start_py_spy(pid: int, out: Path) -> subprocess.Popen[bytes]:
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).exists():
        raise SystemExit("--py-spy given but py-spy is not installed (pip install py-spy)")
    return subprocess.Popen(
        [
            spy,
            "record",
            "--pid",
            str(pid),
            "--format",
            "raw",
            "--rate",
            "200",
            "--output",
            str(out),
            "--nonblocking",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def stop_py_spy(spy: subprocess.Popen[bytes]) -> None:
    if spy.poll() is None:
        spy.send_signal(signal.SIGINT)  # py-spy writes its output on Ctrl-C
        try:
            spy.wait(timeout=60)
        except subprocess.TimeoutExpired:
            spy.kill()
            spy.wait()


def run_gateway(
    pg: PostgresServer,
    connections: int,
    seconds: float,
    scratch: Path,
    py_spy_dir: Path | None,
    processes: int,
) -> tuple[Run, DbCheck]:
    url = prepare_database(pg, f"bench_smtp_{connections}")
    port = free_port()
    gateway = start_gateway(url, port, scratch / "instance", processes)
    spy = None
    try:
        if py_spy_dir is not None:
            spy = start_py_spy(gateway.pid, py_spy_dir / f"gateway-{connections}.folded")
            time.sleep(1.0)  # let it attach
        tag = f"gateway{connections}-{os.getpid()}"
        run = measure("gateway", gateway, port, connections, pg.data, seconds + 300, _client, seconds, tag)
    finally:
        if spy is not None:
            stop_py_spy(spy)
        gateway.stop()  # SIGTERM: the gateway commits what it accepted, then exits
    return run, check_database(url, run)


def run_ceiling(connections: int, seconds: float, scratch: Path) -> tuple[Run, int]:
    directory = Path(tempfile.mkdtemp(prefix=f"ceiling-{connections}.", dir=scratch))
    port = free_port()
    ceiling = start_ceiling(port, directory)
    try:
        tag = f"ceiling{connections}-{os.getpid()}"
        run = measure("ceiling", ceiling, port, connections, None, seconds + 300, _client, seconds, tag)
    finally:
        ceiling.stop()
    files = sum(1 for _ in directory.iterdir())
    shutil.rmtree(directory, ignore_errors=True)
    return run, files


@dataclass(frozen=True)
class ShapeRow:
    shape: str
    mix: str  # what the mails are (`realistic_mail.describe`)
    gateway: Run
    check: str
    peer: peer.PeerRun | None
    peer_check: str

    @property
    def ratio(self) -> float | None:
        if self.peer is None or self.peer.rate == 0:
            return None
        return self.gateway.rate / self.peer.rate


def run_shape(
    pg: PostgresServer,
    shape: str,
    mails: Sequence[GeneratedMail],
    connections: int,
    scratch: Path,
    processes: int,
) -> tuple[Run, str]:
    """One shape's mails through the gateway over `connections` connections, in
    sequence order (`_shape_client`); the first `connections` of them warm it up."""
    directory = scratch / f"shape-{shape}"
    directory.mkdir()
    files = []
    for mail in mails:
        path = directory / f"{mail.index:06d}.eml"
        path.write_bytes(mail.raw)
        files.append((str(path), mail.sender))
    url = prepare_database(pg, f"bench_shape_{shape}")
    port = free_port()
    gateway = start_gateway(url, port, scratch / "instance", processes)
    try:
        taken = SPAWN.Value("i", connections)
        run = measure(
            "gateway", gateway, port, connections, pg.data, SHAPE_PATIENCE, _shape_client, files, taken
        )
    finally:
        gateway.stop()
        shutil.rmtree(directory, ignore_errors=True)
    return run, check_shape(url, run, mails)


def check_shape(url: str, run: Run, mails: Sequence[GeneratedMail]) -> str:
    """Every mail answered 250 and recorded: a ticket for each new one (numbers
    gap-free), an appended message for each reply."""
    inbound, tickets = admin(
        url,
        "SELECT count(*) FILTER (WHERE outcome = 'created'), count(*) FILTER (WHERE outcome = 'appended'), "
        "count(*) FROM inbound_mails",
        "SELECT count(*), min(number), max(number) FROM tickets",
    )
    if inbound is None or tickets is None:
        raise RuntimeError("count query returned no row")
    created, appended, total = inbound
    replies = sum(mail.is_reply for mail in mails)
    ok = (
        run.accepted + run.warmups == len(mails) == total
        and created == len(mails) - replies == tickets[0]
        and appended == replies
        and tickets[1] == 1
        and tickets[2] == tickets[0]
    )
    return ("yes" if ok else "NO") + (
        f" ({created} created + {appended} appended of {total} rows, {run.accepted + run.warmups} × 250; "
        f"mails: {len(mails) - replies} new + {replies} replies)"
    )


def run_stages(
    pg: PostgresServer, shape: str, mails: Sequence[GeneratedMail], channel: str
) -> pipeline_stages.StageSplit:
    """The stage split of `mails` ingested in process, on a fresh database."""
    url = prepare_database(pg, f"bench_stages_{shape}")
    app = create_app(TestingConfig, SQLALCHEMY_DATABASE_URI=url, **CUSTOMER_LIMITS_NEVER_REACHED)
    try:
        return pipeline_stages.measure(
            app, shape, mails, channel=channel, postgres_cpu=partial(postgres_cpu, pg.data)
        )
    finally:
        with app.app_context():
            db.engine.dispose()


# -- output ----------------------------------------------------------------------

HEADERS = (
    "connections",
    "gateway mails/s",
    "fsync-ceiling mails/s",
    "ratio",
    "DB: created rows = 250s, tickets gap-free",
)
CPU_HEADERS = (
    "connections",
    "gateway CPU ms/mail",
    "PostgreSQL CPU ms/mail",
    "gateway clients CPU ms/mail",
    "cores busy (gateway run)",
    "ceiling server CPU ms/mail",
    "ceiling clients CPU ms/mail",
)


def _cells(row: Row) -> tuple[str, ...]:
    return (
        str(row.connections),
        f"{row.gateway.rate:.1f}",
        f"{row.ceiling.rate:.1f}",
        f"{row.ratio:.2f}",
        row.check.describe(),
    )


def _cpu_cells(row: Row) -> tuple[str, ...]:
    g, c = row.gateway, row.ceiling
    return (
        str(row.connections),
        f"{g.per_mail_ms(g.server_cpu):.2f}",
        f"{g.per_mail_ms(g.postgres_cpu):.2f}",
        f"{g.per_mail_ms(g.client_cpu):.2f}",
        f"{g.cores_busy:.2f} of {os.cpu_count()}",
        f"{c.per_mail_ms(c.server_cpu):.2f}",
        f"{c.per_mail_ms(c.client_cpu):.2f}",
    )


def _goal_line(rows: Sequence[Row]) -> str:
    at16 = [row for row in rows if row.connections == 16]
    if not at16:
        return f"Goal: ratio ≥ {GOAL} at 16 connections (not measured in this run); {REFERENCE}."
    ratio = at16[0].ratio
    verdict = "met" if ratio >= GOAL else "NOT met"
    return f"Goal: ratio ≥ {GOAL} at 16 connections: {ratio:.2f}, {verdict}; {REFERENCE}."


SHAPE_HEADERS = (
    "shape",
    "mails timed",
    "gateway mails/s",
    f"{peer.NAME} mails/s",
    "ours ÷ theirs",
    "gateway: 250s and rows",
    f"{peer.NAME}: tickets and follow-ups",
)
SHAPE_CPU_HEADERS = (
    "shape",
    "gateway CPU ms/mail",
    "PostgreSQL CPU ms/mail",
    "cores busy (gateway run)",
    f"{peer.NAME} CPU ms/mail",
    "its PostgreSQL CPU ms/mail",
)


def _shape_cells(row: ShapeRow) -> tuple[str, ...]:
    return (
        row.shape,
        str(row.gateway.accepted + row.gateway.refused),
        f"{row.gateway.rate:.1f}",
        f"{row.peer.rate:.1f}" if row.peer else "not run",
        f"{row.ratio:.2f}×" if row.ratio is not None else "–",
        row.check,
        row.peer_check,
    )


def _shape_cpu_cells(row: ShapeRow) -> tuple[str, ...]:
    g, p = row.gateway, row.peer
    return (
        row.shape,
        f"{g.per_mail_ms(g.server_cpu):.2f}",
        f"{g.per_mail_ms(g.postgres_cpu):.2f}",
        f"{g.cores_busy:.2f} of {os.cpu_count()}",
        f"{p.per_mail_ms(p.cpu):.2f}" if p else "–",
        f"{p.per_mail_ms(p.postgres_cpu):.2f}" if p else "–",
    )


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.smtp_bench",
        description="Mails/s accepted (committed) by the SMTP gateway vs an fsync ceiling.",
    )
    parser.add_argument(
        "--seconds", type=float, default=5.0, help="wall-clock duration of each run (default 5)"
    )
    parser.add_argument(
        "--connections",
        type=positive_counts,
        default=[1, 4, 16],
        help="comma-separated client connection counts (default 1,4,16)",
    )
    parser.add_argument(
        "--smtp-processes",
        type=int,
        default=Config.SMTP_PROCESSES,
        help="the gateway's SMTP_PROCESSES (default: the configuration's, "
        f"{Config.SMTP_PROCESSES} on this machine)",
    )
    parser.add_argument(
        "--py-spy",
        type=Path,
        metavar="DIR",
        default=None,
        help="sample the gateway with py-spy; collapsed stacks go to DIR",
    )
    parser.add_argument(
        "--only-shapes",
        action="store_true",
        help="skip the connection-count runs beside the fsync ceiling",
    )
    parser.add_argument(
        "--shapes",
        type=shape_names,
        default=list(SHAPES),
        help=f"mail shapes sent as a fixed sequence, beside the peer ({','.join(SHAPES)}; '' for none)",
    )
    parser.add_argument(
        "--shape-mails", type=int, default=1000, help="mails of each shape, warm-ups included (default 1000)"
    )
    parser.add_argument(
        "--shape-connections", type=int, default=4, help="SMTP connections for the shapes (default 4)"
    )
    peer.add_arguments(parser)
    parser.add_argument(
        "--ceiling-server", nargs=2, metavar=("PORT", "DIR"), help=argparse.SUPPRESS
    )  # internal: run the ceiling server
    args = parser.parse_args(argv)
    if args.shapes and args.shape_mails <= args.shape_connections:
        parser.error("--shape-mails must exceed --shape-connections (the first ones are warm-ups)")
    if args.shape_connections < 1:
        parser.error("--shape-connections must be positive")
    peer.check_arguments(parser, args)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.ceiling_server:
        port, directory = args.ceiling_server
        return ceiling_server(int(port), directory)
    if args.seconds <= 0:
        raise SystemExit("--seconds must be positive")
    if args.smtp_processes < 1:
        raise SystemExit("--smtp-processes must be at least 1")
    if args.py_spy is not None:
        args.py_spy.mkdir(parents=True, exist_ok=True)
    rows: list[Row] = []
    shape_rows: list[ShapeRow] = []
    splits: list[pipeline_stages.StageSplit] = []
    scratch = Path(tempfile.mkdtemp(prefix="smtp-bench."))
    pg = PostgresServer(durable=True).start()
    try:
        settings = f"{server_settings(pg.url())}; gateway SMTP_PROCESSES={args.smtp_processes}"
        print(f"{settings}; {args.seconds:g} s per run", flush=True)
        for connections in [] if args.only_shapes else args.connections:
            gateway, check = run_gateway(
                pg, connections, args.seconds, scratch, args.py_spy, args.smtp_processes
            )
            print(
                f"gateway {connections:>3} connections: {gateway.accepted} × 250 in "
                f"{gateway.elapsed:.2f} s = {gateway.rate:.1f}/s, {gateway.refused} refused"
                f"{' (first: ' + gateway.first_refusal + ')' if gateway.refused else ''}; "
                f"DB check: {check.describe()}",
                flush=True,
            )
            ceiling, files = run_ceiling(connections, args.seconds, scratch)
            stored = "yes" if files == ceiling.accepted + ceiling.warmups else "NO"
            print(
                f"ceiling {connections:>3} connections: {ceiling.accepted} × 250 in "
                f"{ceiling.elapsed:.2f} s = {ceiling.rate:.1f}/s, {ceiling.refused} refused; "
                f"files = 250s + warm-up: {stored} ({files})",
                flush=True,
            )
            rows.append(Row(connections, gateway, ceiling, check))
        shape_rows, splits = run_shapes(args, pg, scratch)
    finally:
        pg.stop()
        shutil.rmtree(scratch, ignore_errors=True)

    if rows:
        print_connection_tables(args, settings, rows)
    if shape_rows:
        print_shape_tables(args, settings, shape_rows)
    if splits:
        print()
        print(pipeline_stages.report(splits, args.stage_mails))
    return 0


def run_shapes(
    args: argparse.Namespace, pg: PostgresServer, scratch: Path
) -> tuple[list[ShapeRow], list[pipeline_stages.StageSplit]]:
    """Each shape's fixed sequence through the gateway, then through the peer, then
    (the first `--stage-mails`) through the pipeline in process."""
    connections = args.shape_connections
    the_peer = None
    if args.shapes and args.peer_python is not None:
        the_peer = peer.Peer(args.peer_python, pg, scratch, partial(postgres_cpu, pg.data))
    elif args.shapes:
        print(f"{peer.NAME}: not run (no --peer-python; `make bench` builds its virtualenv)", flush=True)
    rows: list[ShapeRow] = []
    splits: list[pipeline_stages.StageSplit] = []
    for shape in args.shapes:
        mails = generate(shape, args.shape_mails, seed=args.seed)
        mix = describe(mails)
        print(f"{shape}: {mix}", flush=True)
        gateway, check = run_shape(pg, shape, mails, connections, scratch, args.smtp_processes)
        print(
            f"  gateway, {connections} connections: {gateway.accepted} × 250 in {gateway.elapsed:.2f} s = "
            f"{gateway.rate:.1f}/s, {gateway.refused} refused; DB check: {check}",
            flush=True,
        )
        peer_run, peer_check = None, "not run"
        if the_peer is not None:
            peer_run = the_peer.directory(shape, mails[:connections], mails[connections:])
            replies = sum(mail.is_reply for mail in mails)
            peer_check = peer_run.describe(len(mails) - replies, len(mails))
            print(
                f"  {peer.NAME} get_email from a directory: {peer_run.mails} in {peer_run.seconds:.2f} s = "
                f"{peer_run.rate:.1f}/s; {peer_check}",
                flush=True,
            )
        rows.append(ShapeRow(shape, mix, gateway, check, peer_run, peer_check))
        if args.stage_mails:
            splits.append(run_stages(pg, shape, mails[: args.stage_mails], "smtp"))
            print(f"  stages: {' | '.join(splits[-1].cells()[2:])}", flush=True)
    return rows, splits


def print_connection_tables(args: argparse.Namespace, settings: str, rows: Sequence[Row]) -> None:
    print()
    print(f"Mails/s accepted through the SMTP gateway ({settings}; {args.seconds:g} s per run)")
    print(f"Ceiling: {CEILING}")
    print("ratio = gateway / ceiling; a 250 counts only once committed. " + _goal_line(rows))
    print()
    print(plain_table(HEADERS, [_cells(row) for row in rows]))
    print()
    print("Where the CPU goes (per accepted mail, during the timed window):")
    print(plain_table(CPU_HEADERS, [_cpu_cells(row) for row in rows]))
    print()
    print(
        f"**Ceiling:** {CEILING}. {settings}; {args.seconds:g} s per run; "
        f"ratio = gateway / ceiling. {_goal_line(rows)}"
    )
    print()
    print(markdown_table(HEADERS, [_cells(row) for row in rows]))
    print()
    print(markdown_table(CPU_HEADERS, [_cpu_cells(row) for row in rows]))


def print_shape_tables(args: argparse.Namespace, settings: str, rows: Sequence[ShapeRow]) -> None:
    goal = peer.goal_line({row.shape: row.ratio for row in rows})
    print()
    print(
        f"Fixed sequences of {args.shape_mails} mails per shape (seed {args.seed}) through the SMTP "
        f"gateway over {args.shape_connections} connections ({settings}), beside {peer.NAME}'s "
        f"get_email reading the same mails from a directory; the first {args.shape_connections} "
        "mails of each warm both up and are not timed."
    )
    for row in rows:
        print(f"  {row.shape}: {row.mix}")
    print(goal)
    print()
    print(plain_table(SHAPE_HEADERS, [_shape_cells(row) for row in rows]))
    print()
    print("Where the CPU goes (per timed mail):")
    print(plain_table(SHAPE_CPU_HEADERS, [_shape_cpu_cells(row) for row in rows]))
    print()
    print(goal)
    print()
    print(markdown_table(SHAPE_HEADERS, [_shape_cells(row) for row in rows]))
    print()
    print(markdown_table(SHAPE_CPU_HEADERS, [_shape_cpu_cells(row) for row in rows]))


if __name__ == "__main__":
    raise SystemExit(main())
