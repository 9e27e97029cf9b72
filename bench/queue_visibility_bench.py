"""The queue at 100,000 tickets for an agent who sees only their team's tickets,
filtered by a tag, beside the unrestricted queue in the same run
(docs/isp-operations.md, "Visibility"; docs/benchmarks.md).

The tickets are web_bench's 100,000 (the same seed), spread over three teams (one
in ten with no team) and tagged: every other ticket carries one or two of twenty
tags, so a tag matches about 7,500 tickets. One gunicorn with `AGENT_VISIBILITY=team`
serves an admin (who sees everything whatever the mode) and an agent in one team;
the pages are requested one at a time over loopback, taking turns, N times each
after a warm-up, and the table gives the median and p95. Goals: the agent's
tag-filtered queue p95 < 100 ms and within 1.5× of the admin's unrestricted queue.

Run from the project root:
    .venv/bin/python -m bench.queue_visibility_bench [--requests 200]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from bench.postgres import admin, server_settings
from bench.report import markdown_table, plain_table
from bench.web_bench import TICKETS, gunicorn, prepare
from config import TestingConfig
from helpdesk import create_app
from helpdesk.extensions import db
from helpdesk.services.staff import StaffService
from helpdesk.services.teams import TeamsService
from tests.support.pgserver import PostgresServer
from tests.support.web_process import portal_login

ADMIN_EMAIL, ADMIN_PASSWORD = "bench-admin@helpdesk.test", "bench-password-1"  # web_bench's admin
AGENT_EMAIL, AGENT_PASSWORD = "bench-agent@helpdesk.test", "bench-password-2"
GOAL_MS = 100.0
GOAL_RATIO = 1.5
TAGS = 20

# Teams 1-3 in turn, every tenth ticket none; tags on every other ticket.
SPREAD = f"""
UPDATE tickets SET team_id = CASE WHEN number % 10 = 0 THEN NULL
    ELSE (SELECT min(id) FROM teams) + number % 3 END;
INSERT INTO tags (name) SELECT 'olt-' || g FROM generate_series(1, {TAGS}) g;
INSERT INTO ticket_tags (ticket_id, tag_id)
SELECT t.id, (SELECT min(id) FROM tags) + t.number % {TAGS} FROM tickets t WHERE t.number % 2 = 0;
INSERT INTO ticket_tags (ticket_id, tag_id)
SELECT t.id, (SELECT min(id) FROM tags) + (t.number / 7) % {TAGS} FROM tickets t
WHERE t.number % 4 = 0 AND (t.number / 7) % {TAGS} <> t.number % {TAGS};
"""

PAGES = (
    ("admin", "unrestricted queue", "/tickets"),
    ("admin", "unrestricted, tag olt-3", "/tickets?tag=olt-3"),
    ("agent", "team visibility", "/tickets"),
    ("agent", "team visibility, tag olt-3", "/tickets?tag=olt-3"),
    ("agent", "team visibility, tag olt-3, status open", "/tickets?tag=olt-3&status=open"),
)


def prepare_teams(url: str) -> None:
    app = create_app(TestingConfig, SQLALCHEMY_DATABASE_URI=url)
    with app.app_context():
        teams = TeamsService(db.session)  # migration 0016 seeded three teams
        agent, _ = StaffService(db.session).create(
            email=AGENT_EMAIL, name="Bench Agent", role="agent", password=AGENT_PASSWORD
        )
        teams.add_member("support_team", agent.id)
        db.session.commit()
        db.session.remove()
        db.engine.dispose()
    admin(url, SPREAD, "VACUUM ANALYZE", "CHECKPOINT")


def measure(base: str, requests: int) -> list[tuple[str, float, float]]:
    """Median and p95 of each page. The pages take turns, one request each, so load
    from elsewhere on the machine falls on all of them alike: one page after another,
    a burst during one page's turn decided the ratio."""
    openers = {
        "admin": portal_login(base, ADMIN_EMAIL, ADMIN_PASSWORD),
        "agent": portal_login(base, AGENT_EMAIL, AGENT_PASSWORD),
    }
    samples: list[list[float]] = [[] for _ in PAGES]
    for index in range(requests + 10):
        for (who, _, path), taken in zip(PAGES, samples, strict=True):
            started = time.perf_counter()
            with openers[who].open(base + path) as answer:
                answer.read()
                if answer.status != 200:
                    raise RuntimeError(f"{who} {path}: {answer.status}")
            if index >= 10:  # the first ten rounds warm the caches and the workers
                taken.append((time.perf_counter() - started) * 1000)
    results = []
    for (who, name, _), taken in zip(PAGES, samples, strict=True):
        taken.sort()
        results.append((f"{who}: {name}", statistics.median(taken), taken[int(len(taken) * 0.95) - 1]))
    return results


def visible_count(url: str) -> int:
    (row,) = admin(
        url,
        "SELECT count(*) FROM tickets t JOIN ticket_tags tt ON tt.ticket_id = t.id "
        "JOIN tags g ON g.id = tt.tag_id WHERE g.name = 'olt-3' AND (t.team_id IS NULL "
        "OR t.team_id IN (SELECT team_id FROM team_members JOIN staff_users s ON s.id = staff_id "
        f"WHERE s.email = '{AGENT_EMAIL}'))",
    )
    return int(row[0]) if row else 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.queue_visibility_bench")
    parser.add_argument("--requests", type=int, default=200, help="requests per page (200)")
    args = parser.parse_args(argv)
    pg = PostgresServer(durable=True).start()
    scratch = Path(tempfile.mkdtemp(prefix="queue-visibility-bench."))
    try:
        url = prepare(pg)
        prepare_teams(url)
        settings = server_settings(url)
        matching = visible_count(url)
        print(f"{settings}; {TICKETS} tickets, the agent sees {matching} tagged olt-3", flush=True)
        server = gunicorn(url, scratch, workers=2, AGENT_VISIBILITY="team")
        try:
            pages = measure(server.base, args.requests)
        finally:
            server.stop()
    finally:
        pg.stop()
    unrestricted = pages[0][2]
    restricted = pages[3][2]
    ratio = restricted / unrestricted if unrestricted else float("inf")
    met = restricted < GOAL_MS and ratio <= GOAL_RATIO
    rows = [(name, f"{median:.1f}", f"{p95:.1f}", f"{p95 / unrestricted:.2f}") for name, median, p95 in pages]
    headers = ("queue page", "median ms", "p95 ms", "p95 ÷ unrestricted")
    print()
    print(f"The queue at {TICKETS} tickets with AGENT_VISIBILITY=team ({settings})")
    print(
        f"Goal: the agent's tag-filtered queue p95 < {GOAL_MS:.0f} ms and ≤ {GOAL_RATIO}× the unrestricted "
        f"queue: {restricted:.1f} ms, {ratio:.2f}×, {'met' if met else 'NOT met'}."
    )
    print(plain_table(headers, rows))
    print()
    print(markdown_table(headers, rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
