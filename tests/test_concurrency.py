"""Gap-free numbering under real concurrency: two OS processes (channels `web` and
`email`), several threads each, about 10 % of creations rolled back after taking
their number. Afterwards the stored numbers must be exactly 1..N."""

from __future__ import annotations

from sqlalchemy import select

from helpdesk.extensions import db
from helpdesk.models import Ticket
from tests.support import concurrency_worker
from tests.support.processes import run_processes

# backend: (threads per process, tickets per thread, least channel switches).
# SQLite's busy handler is not fair (a process that just released the write lock
# often takes it again), so its two processes interleave in runs, not one by one.
SIZES = {"postgresql": (8, 125, 20), "sqlite": (4, 40, 2)}
FAIL_EVERY = 10


def test_numbers_are_gap_free_across_processes_and_threads(app, backend, database_url):
    threads, per_thread, least_switches = SIZES[backend]
    reported = run_processes(
        concurrency_worker.run,
        [(database_url, channel, threads, per_thread, FAIL_EVERY) for channel in ("web", "email")],
        barrier_parties=2 * threads,
    )

    committed = [n for _, numbers, _ in reported for n in numbers]
    failed = [n for _, _, numbers in reported for n in numbers]
    attempts = 2 * threads * per_thread
    assert len(committed) + len(failed) == attempts
    assert 0.08 * attempts <= len(failed) <= 0.12 * attempts

    db.session.expire_all()
    rows = db.session.execute(select(Ticket.number, Ticket.channel).order_by(Ticket.number)).all()
    stored = [number for number, _ in rows]
    assert stored == list(range(1, len(committed) + 1)), "gap or duplicate in the sequence"
    assert sorted(committed) == stored, "a worker saw a number that was not stored"

    channels = [channel for _, channel in rows]
    switches = sum(1 for a, b in zip(channels, channels[1:], strict=False) if a != b)
    assert switches >= least_switches, f"the two processes did not interleave ({switches} switches)"
