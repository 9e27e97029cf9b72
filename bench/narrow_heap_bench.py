"""The tickets heap narrow (a low `toast_tuple_target`) or as PostgreSQL lays it
out by default: what the queue gains, what reading a ticket pays
(docs/benchmarks.md, "A narrow tickets heap", which says why it is not set).

Two private durable PostgreSQL servers hold the same 100,000 tickets (web_bench's
seed with the visibility benchmark's teams and tags, `bench.web_bench.prepare` and
`bench.queue_visibility_bench.prepare_teams`), copied from one data directory.
On the "default" one the setting is reset, the "narrow" one takes `--target`, and
both tables are rewritten by VACUUM FULL (which lays out again every row holding a
value in TOAST) and analysed: they differ only in the setting. One gunicorn serves
each (2 workers, `AGENT_VISIBILITY=team`) and the pages of both benchmarks, a
ticket's page and the API's ticket are requested one at a time, each request of a
page going to the two servers in turn (the order swapped every round), so a burst
of load elsewhere on the machine falls on both alike. Median and p95 of N rounds
after a warm-up.

Run from the project root:
    .venv/bin/python -m bench.narrow_heap_bench [--requests 200] [--target 512]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from bench import queue_visibility_bench as visibility
from bench import web_bench
from bench.postgres import admin, server_settings
from bench.report import markdown_table, plain_table
from tests.support.pgserver import PostgresServer
from tests.support.web_process import WebServer, api_token, portal_login

TARGET = 512  # keeps the short columns in the row; 128 sent the subject out too
SIDES = ("default", "narrow")
WARMUP = 10
# Tickets whose page is read: spread over the table, none of them `new` (the first
# view of a new ticket moves it to open, a write the other rounds would not have).
TICKETS = tuple(n for n in range(1_237, web_bench.TICKETS, 4_111) if n % 8)


def layout(url: str) -> str:
    """The tickets table's storage parameters and the sizes of its heap and TOAST."""
    (row,) = admin(
        url,
        "SELECT reloptions, pg_relation_size('tickets'), pg_relation_size(reltoastrelid) "
        "FROM pg_class WHERE oid = 'tickets'::regclass",
    )
    assert row is not None
    return f"{row[0] or 'no setting'}, heap {row[1] / 2**20:.0f} MB, TOAST {row[2] / 2**20:.0f} MB"


def rewrite(url: str, option: str) -> str:
    """The tickets table after `ALTER TABLE tickets <option>`, rewritten by VACUUM
    FULL: how long the rewrite took, and the table's layout after it."""
    admin(url, f"ALTER TABLE tickets {option}")
    started = time.monotonic()
    admin(url, "VACUUM FULL tickets")
    rewritten = time.monotonic() - started
    admin(url, "VACUUM ANALYZE", "CHECKPOINT")
    return f"VACUUM FULL {rewritten:.0f} s; {layout(url)}"


def servers() -> tuple[list[PostgresServer], str]:
    """Two servers holding the same seeded database (the second a copy of the
    first's data directory)."""
    first = PostgresServer(durable=True).start()
    try:
        url = web_bench.prepare(first)
        visibility.prepare_teams(url)
        first.pause()
        second = PostgresServer(durable=True)
        shutil.copytree(first.data, second.data, symlinks=True)
        shutil.chown(second.root, "postgres", "postgres")
        for path in [second.data, *second.data.rglob("*")]:
            shutil.chown(path, "postgres", "postgres")
        first.resume()
        second.resume()
    except BaseException:
        first.stop()
        raise
    return [first, second], url.rsplit("/", 1)[1]


def pages() -> list[tuple[str, str, str]]:
    """(who, name, path): the web benchmark's pages, the visibility benchmark's,
    and reads of whole tickets."""
    found = [("admin", name, path) for name, path in web_bench.PAGES]
    found += [(who, f"{who}: {name}", path) for who, name, path in visibility.PAGES]
    found.append(("admin", "ticket page (portal)", "/tickets/{number}"))
    found.append(("admin", "API GET /tickets/<number>", "/api/v1/tickets/{number}"))
    return found


def clients(base: str) -> dict[str, urllib.request.OpenerDirector]:
    admin_opener = portal_login(base, web_bench.EMAIL, web_bench.PASSWORD)
    token = api_token(base, web_bench.EMAIL, web_bench.PASSWORD)
    admin_opener.addheaders = [("Authorization", f"Bearer {token}")]
    return {
        "admin": admin_opener,
        "agent": portal_login(base, visibility.AGENT_EMAIL, visibility.AGENT_PASSWORD),
    }


def measure(bases: Sequence[str], requests: int) -> dict[tuple[str, str], list[float]]:
    openers = [clients(base) for base in bases]
    samples: dict[tuple[str, str], list[float]] = {}
    for index in range(requests + WARMUP):
        number = f"TKT-{TICKETS[index % len(TICKETS)]:06d}"
        order = (0, 1) if index % 2 == 0 else (1, 0)
        for who, name, path in pages():
            for side in order:
                started = time.perf_counter()
                with openers[side][who].open(bases[side] + path.format(number=number)) as answer:
                    answer.read()
                    if answer.status != 200:
                        raise RuntimeError(f"{path}: {answer.status}")
                if index >= WARMUP:
                    samples.setdefault((name, SIDES[side]), []).append((time.perf_counter() - started) * 1000)
    return samples


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[int(len(ordered) * 0.95) - 1]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.narrow_heap_bench")
    parser.add_argument("--requests", type=int, default=200, help="requests per page and side (200)")
    parser.add_argument(
        "--target", type=int, default=TARGET, help=f"the narrow side's toast_tuple_target ({TARGET})"
    )
    args = parser.parse_args(argv)
    scratch = Path(tempfile.mkdtemp(prefix="narrow-heap-bench."))
    started = time.monotonic()
    pgs, name = servers()
    web: list[WebServer] = []
    try:
        urls = [pg.url(name) for pg in pgs]
        print(f"seeded and copied in {time.monotonic() - started:.0f} s", flush=True)
        options = {
            "default": "RESET (toast_tuple_target)",
            "narrow": f"SET (toast_tuple_target = {args.target})",
        }
        for side, url in zip(SIDES, urls, strict=True):
            print(f"{side}: {rewrite(url, options[side])}", flush=True)
        settings = server_settings(urls[0])
        for url in urls:
            web.append(web_bench.gunicorn(url, scratch, workers=2, AGENT_VISIBILITY="team"))
        samples = measure([server.base for server in web], args.requests)
    finally:
        for server in web:
            server.stop()
        for pg in pgs:
            pg.stop()
        shutil.rmtree(scratch, ignore_errors=True)
    rows = []
    for _, name, _ in pages():
        wide, narrow = samples[(name, "default")], samples[(name, "narrow")]
        differences = [b - a for a, b in zip(wide, narrow, strict=True)]  # the same round's requests
        slower = sum(difference > 0 for difference in differences)
        rows.append(
            (
                name,
                f"{statistics.median(wide):.1f}",
                f"{statistics.median(narrow):.1f}",
                f"{p95(wide):.1f}",
                f"{p95(narrow):.1f}",
                f"{statistics.median(differences):+.1f} ({slower} of {len(differences)})",
            )
        )
    headers = (
        "request",
        "median default",
        "median narrow",
        "p95 default",
        "p95 narrow",
        "paired difference (narrow slower in)",
    )
    print()
    print(f"{web_bench.TICKETS} tickets, the default heap against the narrow one ({settings}); ms")
    print(plain_table(headers, rows))
    print()
    print(markdown_table(headers, rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
