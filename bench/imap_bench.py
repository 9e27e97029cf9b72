"""Draining an IMAP backlog into tickets, beside a plain FETCH of the same mail.

What it measures: a private Dovecot holds N messages (1,000 by default), each from an
authorized sender, so each becomes a new ticket. The poller (`mailgateway.imap`, the
code the gateway runs) connects, drains the mailbox into a private PostgreSQL with
fsync on, and moves every message to the processed folder once its ticket is
committed. Rate = messages / wall-clock time from connect to the last move. Afterwards
the database is checked: N inbound rows, N tickets numbered 1..N, mailbox empty,
N messages in the processed folder.

Beside it, in the same run and on the same N messages before the poller takes them:
a plain imapclient session that SELECTs the mailbox, SEARCHes, and FETCHes
`BODY.PEEK[]` in batches of the poller's size — the IMAP share of the work, which the
poller cannot beat. The rest of the poller's time is the pipeline (parse, dedup,
authorize, store, commit per mail).

Each round drains with every `--threads` value (`IMAP_INGEST_THREADS`: 1 takes mail
strictly one at a time; the default 2 ingests new conversations side by side), each
on its own filled mailbox and fresh database; the goal is judged on the last value.

Then mail shapes of `bench.realistic_mail` (`--shapes`: by default the 4 KB plain
mail and the realistic mix, the issue's goal; `short` adds today's mail) are
drained the same way, with the default ingest threads, beside django-helpdesk
2.6.1's IMAP import (`get_email`, see `bench/peer.py`) draining the same mails
from another folder of the same Dovecot in the same run. Both speak STARTTLS
here, since django-helpdesk always does when the server offers it (the rounds
above stay plain, as before). The shapes table gives both rates, the ratio, and
the CPU per mail of each side and of PostgreSQL; the poller's CPU is this
process's. Last, the stage split of the pipeline on each shape
(`bench.pipeline_stages`).

Run from the project root:
  .venv/bin/python -m bench.imap_bench [--messages 1000] [--rounds 2] [--threads 1,2]
      [--shapes plain4k,realistic] [--stage-mails 300] [--peer-python PATH]
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import shutil
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from imapclient import IMAPClient
from sqlalchemy import func, select

from bench import peer, pipeline_stages
from bench.cpu import postgres_cpu
from bench.postgres import server_settings
from bench.realistic_mail import SHAPES, GeneratedMail, describe, generate, shape_names
from bench.report import markdown_table, plain_table, positive_counts
from bench.smtp_bench import CUSTOMER_LIMITS_NEVER_REACHED, prepare_database, run_stages
from config import TestingConfig
from helpdesk import create_app
from helpdesk.extensions import db
from helpdesk.models import InboundMail, Ticket
from mailgateway.imap import BATCH_MESSAGES, ImapPoller, parse_imap_urls
from tests.support.dovecotserver import DovecotServer, TestMailbox
from tests.support.pgserver import PostgresServer

GOAL = 310.0  # ten times django-helpdesk's ~31 mails/s on short mail, as measured when this goal was set


@dataclass(frozen=True)
class Round:
    threads: int
    messages: int
    fetch_seconds: float
    poller_seconds: float
    check: str

    @property
    def fetch_rate(self) -> float:
        return self.messages / self.fetch_seconds

    @property
    def poller_rate(self) -> float:
        return self.messages / self.poller_seconds

    @property
    def imap_share(self) -> float:
        return self.fetch_seconds / self.poller_seconds


def fill(mailbox: TestMailbox, mails: Sequence[GeneratedMail]) -> None:
    raws = [mail.raw for mail in mails]
    with mailbox.client() as client:
        for start in range(0, len(raws), 100):
            client.multiappend(mailbox.folder, raws[start : start + 100])


def plain_fetch(mailbox: TestMailbox) -> tuple[float, int]:
    """SELECT, SEARCH and FETCH BODY.PEEK[] in the poller's batch size; nothing else."""
    started = time.perf_counter()
    client = IMAPClient("127.0.0.1", port=mailbox.server.port, ssl=False)
    fetched = 0
    try:
        client.login(*_credentials(mailbox))
        client.select_folder(mailbox.folder)
        uids = sorted(client.search(["ALL"]))
        client.fetch(uids, ["RFC822.SIZE"])
        for start in range(0, len(uids), BATCH_MESSAGES):
            batch = client.fetch(uids[start : start + BATCH_MESSAGES], ["BODY.PEEK[]"])
            fetched += sum(1 for data in batch.values() if data.get(b"BODY[]"))
    finally:
        client.logout()
    return time.perf_counter() - started, fetched


def _credentials(mailbox: TestMailbox) -> tuple[str, str]:
    (source,) = parse_imap_urls(mailbox.url)
    return source.username, source.password


@dataclass(frozen=True)
class Drain:
    seconds: float
    cpu: float  # this process's CPU seconds: the poller and its ingest threads
    postgres_cpu: float


def drain_with_poller(
    url: str, mailbox: TestMailbox, threads: int, imap_url: str, pg_cpu: Callable[[], float]
) -> Drain:
    app = create_app(
        TestingConfig,
        SQLALCHEMY_DATABASE_URI=url,
        IMAP_INGEST_THREADS=threads,
        IMAP_PROCESSED_FOLDER=mailbox.processed,
        IMAP_FAILED_FOLDER=mailbox.failed,
        **CUSTOMER_LIMITS_NEVER_REACHED,
    )
    (source,) = parse_imap_urls(imap_url)
    poller = ImapPoller(app, source, threading.Event())
    postgres = pg_cpu()
    cpu = time.process_time()
    started = time.perf_counter()
    assert poller.claim(), "another poller holds the mailbox"  # prepare and drain write as its holder
    with poller.connect() as client:
        poller.prepare(client)
        poller.drain(client)
    drain = Drain(time.perf_counter() - started, time.process_time() - cpu, pg_cpu() - postgres)
    with app.app_context():
        db.engine.dispose()
    return drain


def check(url: str, mailbox: TestMailbox, count: int, replies: int = 0) -> str:
    """Every message recorded and moved: a ticket for each new one (numbers
    gap-free), an appended message for each reply."""
    app = create_app(TestingConfig, SQLALCHEMY_DATABASE_URI=url)
    with app.app_context():
        outcomes = dict(
            db.session.execute(select(InboundMail.outcome, func.count()).group_by(InboundMail.outcome)).all()
        )
        tickets, low, high = db.session.execute(
            select(func.count(Ticket.id), func.min(Ticket.number), func.max(Ticket.number))
        ).one()
        db.session.remove()
        db.engine.dispose()
    waiting, processed = mailbox.count(), mailbox.count(mailbox.processed)
    inbound = sum(outcomes.values())
    ok = (
        inbound == processed == count
        and outcomes.get("created", 0) == tickets == count - replies
        and outcomes.get("appended", 0) == replies
        and waiting == 0
        and low == 1
        and high == tickets
    )
    return ("yes" if ok else "NO") + (
        f" ({inbound} rows: {', '.join(f'{n} {outcome}' for outcome, n in sorted(outcomes.items()))}; "
        f"tickets {low}..{high}, {processed} moved, {waiting} left)"
    )


def run_round(pg: PostgresServer, dovecot: DovecotServer, count: int, index: int, threads: int) -> Round:
    name = f"{index}_{threads}"
    mailbox = TestMailbox(dovecot, f"bench{name}")
    fill(mailbox, generate("short", count, tag=f"imapbench{name}-"))
    fetch_seconds, fetched = plain_fetch(mailbox)
    if fetched != count:
        raise RuntimeError(f"plain FETCH saw {fetched} of {count} messages")
    url = prepare_database(pg, f"bench_imap_{name}")
    drain = drain_with_poller(url, mailbox, threads, mailbox.url, partial(postgres_cpu, pg.data))
    return Round(threads, count, fetch_seconds, drain.seconds, check(url, mailbox, count))


@dataclass(frozen=True)
class ShapeDrain:
    shape: str
    mix: str
    messages: int
    drain: Drain
    check: str
    peer: peer.PeerRun | None
    peer_check: str

    @property
    def rate(self) -> float:
        return self.messages / self.drain.seconds

    @property
    def ratio(self) -> float | None:
        return self.rate / self.peer.rate if self.peer is not None and self.peer.rate > 0 else None


def run_shape(
    pg: PostgresServer,
    dovecot: DovecotServer,
    shape: str,
    mails: Sequence[GeneratedMail],
    the_peer: peer.Peer | None,
) -> ShapeDrain:
    """One shape's mails drained by our poller (STARTTLS, default ingest threads),
    then the same mails from another folder by the peer."""
    pg_cpu = partial(postgres_cpu, pg.data)
    replies = sum(mail.is_reply for mail in mails)
    mailbox = TestMailbox(dovecot, f"shape{shape}")
    fill(mailbox, mails)
    url = prepare_database(pg, f"bench_imap_shape_{shape}")
    drain = drain_with_poller(
        url, mailbox, TestingConfig.IMAP_INGEST_THREADS, dovecot.url(mailbox.folder, tls="starttls"), pg_cpu
    )
    result = check(url, mailbox, len(mails), replies)
    print(
        f"  poller: {len(mails)} in {drain.seconds:.2f} s = {len(mails) / drain.seconds:.1f}/s; "
        f"check {result}",
        flush=True,
    )
    if the_peer is None:
        return ShapeDrain(shape, describe(mails), len(mails), drain, result, None, "not run")
    theirs = TestMailbox(dovecot, f"peer{shape}")
    fill(theirs, mails)
    username, password = _credentials(theirs)
    run = the_peer.imap(
        f"imap_{shape}", len(mails), "127.0.0.1", dovecot.port, username, password, theirs.folder
    )
    run = dataclasses.replace(run, left=theirs.count())
    peer_check = run.describe(len(mails) - replies, len(mails))
    print(f"  {peer.NAME}: {run.mails} in {run.seconds:.2f} s = {run.rate:.1f}/s; {peer_check}", flush=True)
    return ShapeDrain(shape, describe(mails), len(mails), drain, result, run, peer_check)


HEADERS = (
    "round",
    "ingest threads",
    "messages",
    "plain FETCH msgs/s",
    "poller msgs/s (committed + moved)",
    "IMAP share of poller time",
    "DB and folders check",
)


def cells(index: int, r: Round) -> tuple[str, ...]:
    return (
        str(index),
        str(r.threads),
        str(r.messages),
        f"{r.fetch_rate:.0f}",
        f"{r.poller_rate:.0f}",
        f"{r.imap_share:.2f}",
        r.check,
    )


SHAPE_HEADERS = (
    "shape",
    "messages",
    "poller msgs/s",
    f"{peer.NAME} msgs/s",
    "ours ÷ theirs",
    "poller CPU ms/msg",
    "PostgreSQL CPU ms/msg (ours)",
    f"{peer.NAME} CPU ms/msg",
    "PostgreSQL CPU ms/msg (theirs)",
    "DB and folders check",
    f"{peer.NAME}: tickets and follow-ups",
)


def shape_cells(r: ShapeDrain) -> tuple[str, ...]:
    per_message = 1000.0 / r.messages
    p = r.peer
    return (
        r.shape,
        str(r.messages),
        f"{r.rate:.0f}",
        f"{p.rate:.0f}" if p else "not run",
        f"{r.ratio:.2f}×" if r.ratio is not None else "–",
        f"{r.drain.cpu * per_message:.2f}",
        f"{r.drain.postgres_cpu * per_message:.2f}",
        f"{p.per_mail_ms(p.cpu):.2f}" if p else "–",
        f"{p.per_mail_ms(p.postgres_cpu):.2f}" if p else "–",
        r.check,
        r.peer_check,
    )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.imap_bench",
        description=f"IMAP backlog drain vs plain FETCH, and beside {peer.NAME} on each mail shape.",
    )
    parser.add_argument("--messages", type=int, default=1000, help="messages per round and per shape (1000)")
    parser.add_argument(
        "--rounds", type=int, default=2, help="rounds of short mail beside plain FETCH (2; 0: none)"
    )
    parser.add_argument(
        "--threads",
        type=positive_counts,
        default=[1, 2],
        help="IMAP_INGEST_THREADS values, comma-separated (1,2)",
    )
    parser.add_argument(
        "--shapes",
        type=shape_names,
        default=["plain4k", "realistic"],
        help=f"mail shapes drained beside the peer (of {','.join(SHAPES)}; default plain4k,realistic, "
        "the goal's: the rounds cover short mail; '' for none)",
    )
    peer.add_arguments(parser)
    args = parser.parse_args(argv)
    if args.messages < 1 or args.rounds < 0:
        parser.error("--messages must be positive, --rounds not negative")
    peer.check_arguments(parser, args)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.getLogger("mailparser").setLevel(logging.ERROR)
    pg = PostgresServer(durable=True).start()
    dovecot = DovecotServer().start()
    # Our poller's STARTTLS checks the server's certificate (the peer's does not).
    os.environ["SSL_CERT_FILE"] = str(dovecot.certificate)
    scratch = Path(tempfile.mkdtemp(prefix="imap-bench."))
    rounds: list[tuple[int, Round]] = []
    shapes: list[ShapeDrain] = []
    splits: list[pipeline_stages.StageSplit] = []
    try:
        settings = server_settings(pg.url())
        for index in range(1, args.rounds + 1):
            for threads in args.threads:
                result = run_round(pg, dovecot, args.messages, index, threads)
                print(
                    f"round {index}, {threads} ingest threads: FETCH "
                    f"{result.fetch_rate:.0f}/s, poller {result.poller_rate:.0f}/s, "
                    f"check {result.check}",
                    flush=True,
                )
                rounds.append((index, result))
        the_peer = None
        if args.shapes and args.peer_python is not None:
            the_peer = peer.Peer(args.peer_python, pg, scratch, partial(postgres_cpu, pg.data))
        elif args.shapes:
            print(f"{peer.NAME}: not run (no --peer-python; `make bench` builds its virtualenv)", flush=True)
        for shape in args.shapes:
            mails = generate(shape, args.messages, seed=args.seed)
            print(f"{shape}: {describe(mails)}", flush=True)
            shapes.append(run_shape(pg, dovecot, shape, mails, the_peer))
            if args.stage_mails:
                splits.append(run_stages(pg, shape, mails[: args.stage_mails], "imap"))
    finally:
        dovecot.stop()
        pg.stop()
        shutil.rmtree(scratch, ignore_errors=True)
    if rounds:
        print_rounds(args, settings, rounds)
    if shapes:
        goal = peer.goal_line({r.shape: r.ratio for r in shapes})
        print()
        print(
            f"IMAP drain of {args.messages} messages per shape (seed {args.seed}; {settings}; Dovecot on "
            f"loopback, STARTTLS both sides), our poller with {TestingConfig.IMAP_INGEST_THREADS} ingest "
            f"threads beside {peer.NAME}'s get_email over the same Dovecot."
        )
        for r in shapes:
            print(f"  {r.shape}: {r.mix}")
        print(goal)
        print()
        print(plain_table(SHAPE_HEADERS, [shape_cells(r) for r in shapes]))
        print()
        print(goal)
        print()
        print(markdown_table(SHAPE_HEADERS, [shape_cells(r) for r in shapes]))
    if splits:
        print()
        print(pipeline_stages.report(splits, args.stage_mails))
    return 0


def print_rounds(args: argparse.Namespace, settings: str, rounds: Sequence[tuple[int, Round]]) -> None:
    judged = args.threads[-1]
    median = statistics.median(r.poller_rate for _, r in rounds if r.threads == judged)
    verdict = "met" if median >= GOAL else "NOT met"
    print()
    print(f"IMAP backlog drain into tickets ({settings}; Dovecot on loopback)")
    print(
        f"Goal: poller ≥ {GOAL:.0f} msgs/s (ten times django-helpdesk's ~31 when the goal was set): "
        f"median {median:.0f}/s with {judged} ingest threads, {verdict}."
    )
    print()
    print(plain_table(HEADERS, [cells(i, r) for i, r in rounds]))
    print()
    print(markdown_table(HEADERS, [cells(i, r) for i, r in rounds]))


if __name__ == "__main__":
    raise SystemExit(main())
