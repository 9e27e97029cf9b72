"""The gateway's one worker loop (mailgateway/loop.py): rounds, waits, backoff,
errors, stop. The stop event records the waits instead of sleeping them, so
nothing here depends on the clock."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine
from sqlalchemy.exc import OperationalError

from mailgateway.loop import Loop


class Waits(threading.Event):
    """A stop event that records each wait and is set after `rounds` of them."""

    def __init__(self, rounds: int) -> None:
        super().__init__()
        self.rounds = rounds
        self.waits: list[float] = []

    def wait(self, timeout: float | None = None) -> bool:
        self.waits.append(float(timeout or 0))
        if len(self.waits) >= self.rounds:
            self.set()
        return self.is_set()


class Scripted(Loop):
    """Each round takes the next outcome: True/False (busy or not) or an exception."""

    name = "scripted"

    def __init__(self, outcomes: list[object], stopping: threading.Event, **kwargs: float) -> None:
        super().__init__(stopping, **{"idle_seconds": 5.0, **kwargs})
        self.outcomes: Iterator[object] = iter(outcomes)
        self.rounds = 0

    def round(self) -> bool:
        self.rounds += 1
        outcome = next(self.outcomes, False)
        if isinstance(outcome, Exception):
            raise outcome
        return bool(outcome)


def test_idle_rounds_wait_and_busy_rounds_go_again_at_once() -> None:
    stopping = Waits(rounds=2)
    loop = Scripted([True, True, False, False], stopping)
    loop.run()
    assert loop.rounds == 4
    assert stopping.waits == [5.0, 5.0]


def test_failures_back_off_doubling_to_the_limit_and_success_resets_it() -> None:
    stopping = Waits(rounds=6)
    down = OperationalError("SELECT 1", {}, Exception("server closed the connection"))
    loop = Scripted([down, down, down, down, False, down], stopping, first_backoff=1.0, max_backoff=4.0)
    loop.run()
    assert stopping.waits == [1.0, 2.0, 4.0, 4.0, 5.0, 1.0]


def test_a_bug_is_logged_with_its_traceback_and_the_loop_lives_on(caplog) -> None:
    stopping = Waits(rounds=2)
    loop = Scripted([RuntimeError("a bug"), False], stopping)
    with caplog.at_level(logging.INFO, logger="mailgateway"):
        loop.run()
    assert loop.rounds == 2
    [bug] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert bug.getMessage() == "scripted: unexpected error" and bug.exc_info is not None
    assert "scripted stopped" in caplog.text


def test_the_outside_being_away_is_a_warning_without_traceback(caplog) -> None:
    stopping = Waits(rounds=1)
    down = OperationalError("SELECT 1", {}, Exception("connection refused"))
    with caplog.at_level(logging.INFO, logger="mailgateway"):
        Scripted([down], stopping).run()
    [warning] = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert "connection refused" in warning.getMessage() and warning.exc_info is None


def test_a_schema_error_is_a_bug_with_its_traceback_not_the_database_away(caplog) -> None:
    """SQLite says "no such table" with an OperationalError, as it says "database is
    locked": it was logged as the database being away, one line without a traceback
    (helpdesk.database.is_transient tells the two apart)."""
    try:
        with create_engine("sqlite://").connect() as connection:
            connection.exec_driver_sql("SELECT * FROM outbox")
    except OperationalError as error:
        missing = error
    with caplog.at_level(logging.INFO, logger="mailgateway"):
        Scripted([missing], Waits(rounds=1)).run()
    [bug] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert bug.getMessage() == "scripted: unexpected error" and bug.exc_info is not None


def test_the_first_round_runs_even_when_the_stop_came_first() -> None:
    stopping = Waits(rounds=1)
    stopping.set()
    loop = Scripted([False, False], stopping)
    loop.run()
    assert (loop.rounds, stopping.waits) == (1, [])


@pytest.mark.parametrize("reason", ["OUTBOUND_SMTP_URL is empty"])
def test_a_loop_turned_off_runs_no_round(caplog, reason: str) -> None:
    class Off(Scripted):
        def off(self) -> str | None:
            return reason

    loop = Off([True], Waits(rounds=1))
    with caplog.at_level(logging.INFO, logger="mailgateway"):
        loop.run()
    assert loop.rounds == 0 and f"scripted off here: {reason}" in caplog.text
