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

`--py-spy DIR` additionally samples the gateway process with py-spy (if it is
installed; it is not a project requirement) during each gateway run and writes
collapsed stacks to DIR/gateway-N.folded; sampling costs a little CPU, so compare
rates from runs without it.

Run from the project root:  .venv/bin/python -m bench.smtp_bench [--seconds 5] [--connections 1,4,16]
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
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from email.policy import SMTP as SMTP_POLICY
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any, Literal

from bench.postgres import admin, migrate, server_settings
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
REFERENCE = "for comparison, django-helpdesk's get_email does ~50 mails/s"
BODY = (
    "Hello support,\n\nthe printer on floor 3 is out of toner again and the spare "
    "cartridges are gone. Could someone order new ones?\n\nThanks,\nBench\n"
)
PLACEHOLDER = b"N0000000000"  # the Message-ID counter, substituted per mail
SERVER_THREADS = 8  # SupportHandler's default pool size
SETUP_TIMEOUT = 300.0  # seconds for every worker to import, connect and warm up
START_TIMEOUT = 60.0  # seconds for a server subprocess to listen
STOP_TIMEOUT = 60.0
# Every mail opens a ticket, many from one sender: the per-customer limits are
# counted on every mail (their cost is measured) but never reached.
CUSTOMER_LIMITS_NEVER_REACHED = {"CUSTOMER_MAX_TICKETS_PER_HOUR": 10**9, "CUSTOMER_MAX_OPEN_TICKETS": 10**9}


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


def _client(port: int, index: int, seconds: float, tag: str, barrier: Barrier) -> WorkerResult:
    sender = f"user{index}@example.com"
    raw = message(
        sender=sender,
        subject=f"Bench mail from worker {index}",
        body=BODY,
        message_id=f"<{tag}-{index}-{PLACEHOLDER.decode()}@client.example>",
    ).as_bytes(policy=SMTP_POLICY)
    head, placeholder, tail = raw.partition(PLACEHOLDER)
    if not placeholder or PLACEHOLDER in tail:
        raise RuntimeError("the Message-ID placeholder must occur exactly once")

    client = smtplib.SMTP("127.0.0.1", port, timeout=120)
    try:
        client.ehlo("client.example")

        def send(n: int) -> tuple[int, bytes]:
            code, text = client.mail(sender)
            if code != 250:
                return code, text
            code, text = client.rcpt(SUPPORT)
            if code != 250:
                return code, text
            return client.data(head + b"%010d" % n + tail)

        code, text = send(0)  # warm-up, outside the timed window
        if code != 250:
            raise RuntimeError(f"warm-up mail got {code} {text!r}")
        barrier.wait(SETUP_TIMEOUT)
        cpu = time.process_time()
        started = time.monotonic()
        deadline = started + seconds
        accepted = refused = 0
        first_refusal = ""
        n = 0
        while time.monotonic() < deadline:
            n += 1
            code, text = send(n)
            if code == 250:
                accepted += 1
            else:
                refused += 1
                first_refusal = first_refusal or f"{code} {text.decode(errors='replace')}"
        finished = time.monotonic()
        cpu = time.process_time() - cpu
        try:
            client.quit()
        except (OSError, smtplib.SMTPException):
            pass
        return WorkerResult(accepted, refused, started, finished, cpu, first_refusal)
    finally:
        client.close()


def _worker_main(
    port: int,
    index: int,
    seconds: float,
    tag: str,
    barrier: Barrier,
    results: Queue[tuple[int, WorkerResult | str]],
) -> None:
    try:
        results.put((index, _client(port, index, seconds, tag, barrier)))
    except BaseException:
        barrier.abort()  # release the others instead of leaving them at the start line
        results.put((index, traceback.format_exc()))


# -- CPU accounting from /proc ---------------------------------------------------

_TICK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str]:
    with open(f"/proc/{pid}/stat") as handle:
        text = handle.read()
    return text[text.rindex(")") + 2 :].split()  # fields from "state" on


def tree_cpu(root: int) -> float:
    """CPU seconds of a process, its live children, and its reaped children."""
    fields = _stat(root)
    total = sum(int(fields[i]) for i in (11, 12, 13, 14))  # u, s, cu, cs
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            child = _stat(int(entry))
        except (FileNotFoundError, ProcessLookupError, ValueError):
            continue
        if int(child[1]) == root:
            total += int(child[11]) + int(child[12])
    return total / _TICK


def postgres_cpu(data_dir: Path) -> float:
    """CPU seconds of the postmaster and its backends."""
    return tree_cpu(int((data_dir / "postmaster.pid").read_text().split()[0]))


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
    seconds: float,
    pg_data: Path | None,
) -> Run:
    """Start `connections` client processes, let them go together, collect their counts.

    The parent joins the start barrier too, so it reads the servers' CPU counters when
    the timed window opens (after the warm-up mails) and again when every client
    reported, before the server is stopped.
    """
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(connections + 1)
    results: Queue[tuple[int, WorkerResult | str]] = ctx.Queue()
    tag = f"{kind}{connections}-{os.getpid()}"
    processes = [
        ctx.Process(
            target=_worker_main,
            name=f"bench-{kind}-{index}",
            args=(port, index, seconds, tag, barrier, results),
        )
        for index in range(connections)
    ]
    for process in processes:
        process.start()
    outcomes: dict[int, WorkerResult | str] = {}
    give_up = time.monotonic() + SETUP_TIMEOUT + seconds + 300
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
    """A fresh database: migrated, with the `@example.com` rule, checkpointed."""
    url = server.create_database(name)
    migrate(url)
    app = create_app(TestingConfig, SQLALCHEMY_DATABASE_URI=url)
    with app.app_context():
        SendersService(db.session).add("@example.com", "Bench")
        db.session.commit()
        db.session.remove()
        db.engine.dispose()
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
        run = measure("gateway", gateway, port, connections, seconds, pg.data)
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
        run = measure("ceiling", ceiling, port, connections, seconds, None)
    finally:
        ceiling.stop()
    files = sum(1 for _ in directory.iterdir())
    shutil.rmtree(directory, ignore_errors=True)
    return run, files


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
        "--ceiling-server", nargs=2, metavar=("PORT", "DIR"), help=argparse.SUPPRESS
    )  # internal: run the ceiling server
    return parser.parse_args(argv)


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
    scratch = Path(tempfile.mkdtemp(prefix="smtp-bench."))
    pg = PostgresServer(durable=True).start()
    try:
        settings = f"{server_settings(pg.url())}; gateway SMTP_PROCESSES={args.smtp_processes}"
        print(f"{settings}; {args.seconds:g} s per run", flush=True)
        for connections in args.connections:
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
    finally:
        pg.stop()
        shutil.rmtree(scratch, ignore_errors=True)

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
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
