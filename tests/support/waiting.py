"""Waiting for something to become true, instead of sleeping and hoping.

A test that sleeps a fixed time is slow when the machine is fast and flaky when it is
slow. `wait_until` polls a condition and returns as soon as it holds, and fails with a
message saying what never happened. The timeout is a ceiling for a broken run, not a
claim about speed: speed is measured in bench/.
"""

from __future__ import annotations

import time
from typing import Callable, TypeVar

T = TypeVar("T")


def wait_until(
    condition: Callable[[], T],
    *,
    timeout: float = 30.0,
    interval: float = 0.05,
    what: str | Callable[[], str] = "the condition",
    between: Callable[[], object] | None = None,
) -> T:
    """Poll `condition` until it returns something truthy, and return that.

    `between` runs after every poll, even one that raised (for example a rollback, so a
    test never holds SQLite's write lock while the code under test needs it). `what`
    names the awaited state in the failure; a callable is evaluated only on failure, so
    it can show logs gathered meanwhile.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = condition()
        finally:
            if between is not None:
                between()
        if result:
            return result
        if time.monotonic() > deadline:
            described = what() if callable(what) else what
            raise AssertionError(f"{described} did not happen within {timeout} s")
        time.sleep(interval)
