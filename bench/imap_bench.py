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

For comparison, django-helpdesk 2.6.1's `get_email` drains about 31 mails/s from
Dovecot on this kind of machine (not measured here); the goal is ten times that.

Run from the project root:
  .venv/bin/python -m bench.imap_bench [--messages 1000] [--rounds 2] [--threads 1,2]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from email.policy import SMTP as SMTP_POLICY

from imapclient import IMAPClient
from sqlalchemy import func, select

from bench.postgres import server_settings
from bench.report import markdown_table, plain_table, positive_counts
from bench.smtp_bench import CUSTOMER_LIMITS_NEVER_REACHED, prepare_database
from config import TestingConfig
from helpdesk import create_app
from helpdesk.extensions import db
from helpdesk.models import InboundMail, Ticket
from mailgateway.imap import BATCH_MESSAGES, ImapPoller, parse_imap_urls
from tests.support.dovecotserver import DovecotServer, TestMailbox
from tests.support.mail import message
from tests.support.pgserver import PostgresServer

GOAL = 310.0  # ten times django-helpdesk's ~31 mails/s
BODY = (
    "Hello support,\n\nthe printer on floor 3 is out of toner again and the spare "
    "cartridges are gone. Could someone order new ones?\n\nThanks,\nBench\n"
)


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


def fill(mailbox: TestMailbox, count: int, tag: str) -> None:
    mails = [
        message(
            sender=f"user{i % 50}@example.com",
            subject=f"Toner {i}",
            body=BODY,
            message_id=f"<{tag}-{i}@client.example>",
        ).as_bytes(policy=SMTP_POLICY)
        for i in range(count)
    ]
    with mailbox.client() as client:
        for start in range(0, count, 100):
            client.multiappend(mailbox.folder, mails[start : start + 100])


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


def drain_with_poller(url: str, mailbox: TestMailbox, threads: int) -> float:
    app = create_app(
        TestingConfig,
        SQLALCHEMY_DATABASE_URI=url,
        IMAP_INGEST_THREADS=threads,
        IMAP_PROCESSED_FOLDER=mailbox.processed,
        IMAP_FAILED_FOLDER=mailbox.failed,
        **CUSTOMER_LIMITS_NEVER_REACHED,
    )
    (source,) = parse_imap_urls(mailbox.url)
    poller = ImapPoller(app, source, threading.Event())
    started = time.perf_counter()
    with poller.connect() as client:
        poller.prepare(client)
        poller.drain(client)
    elapsed = time.perf_counter() - started
    with app.app_context():
        db.engine.dispose()
    return elapsed


def check(url: str, mailbox: TestMailbox, count: int) -> str:
    app = create_app(TestingConfig, SQLALCHEMY_DATABASE_URI=url)
    with app.app_context():
        inbound = db.session.execute(select(func.count(InboundMail.id))).scalar_one()
        tickets, low, high = db.session.execute(
            select(func.count(Ticket.id), func.min(Ticket.number), func.max(Ticket.number))
        ).one()
        db.session.remove()
        db.engine.dispose()
    waiting, processed = mailbox.count(), mailbox.count(mailbox.processed)
    ok = inbound == tickets == processed == count and waiting == 0 and low == 1 and high == count
    return ("yes" if ok else "NO") + (
        f" ({inbound} rows, tickets {low}..{high}, {processed} moved, {waiting} left)"
    )


def run_round(pg: PostgresServer, dovecot: DovecotServer, count: int, index: int, threads: int) -> Round:
    name = f"{index}_{threads}"
    mailbox = TestMailbox(dovecot, f"bench{name}")
    fill(mailbox, count, f"imapbench{name}")
    fetch_seconds, fetched = plain_fetch(mailbox)
    if fetched != count:
        raise RuntimeError(f"plain FETCH saw {fetched} of {count} messages")
    url = prepare_database(pg, f"bench_imap_{name}")
    poller_seconds = drain_with_poller(url, mailbox, threads)
    return Round(threads, count, fetch_seconds, poller_seconds, check(url, mailbox, count))


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


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.imap_bench", description="IMAP backlog drain vs plain FETCH."
    )
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--threads",
        type=positive_counts,
        default=[1, 2],
        help="IMAP_INGEST_THREADS values, comma-separated (1,2)",
    )
    args = parser.parse_args(argv)
    if args.messages < 1 or args.rounds < 1:
        parser.error("--messages and --rounds must be positive")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.getLogger("mailparser").setLevel(logging.ERROR)
    pg = PostgresServer(durable=True).start()
    dovecot = DovecotServer().start()
    rounds: list[tuple[int, Round]] = []
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
    finally:
        dovecot.stop()
        pg.stop()
    judged = args.threads[-1]
    median = statistics.median(r.poller_rate for _, r in rounds if r.threads == judged)
    verdict = "met" if median >= GOAL else "NOT met"
    print()
    print(f"IMAP backlog drain into tickets ({settings}; Dovecot on loopback)")
    print(
        f"Goal: poller ≥ {GOAL:.0f} msgs/s (ten times django-helpdesk's ~31): "
        f"median {median:.0f}/s with {judged} ingest threads, {verdict}."
    )
    print()
    print(plain_table(HEADERS, [cells(i, r) for i, r in rounds]))
    print()
    print(markdown_table(HEADERS, [cells(i, r) for i, r in rounds]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
