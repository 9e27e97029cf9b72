"""CPU time for the suite's few timed checks (test_linear_patterns says why they are
tests): each compares what one input costs with what another costs in the same run.

Measured as this thread's CPU time, not wall time: with helpers, PostgreSQL or a
second suite busy on a two-core machine, a thread waiting for a core counted as cost,
and an ordinary input timed at a quiet moment against a hostile one timed at a busy
moment failed a ratio of 20 that the code met with room to spare."""

from __future__ import annotations

import time
from collections.abc import Callable


def cpu_seconds(run: Callable[[], object]) -> float:
    """This thread's CPU seconds for one call of `run`."""
    started = time.thread_time()
    run()
    return time.thread_time() - started


def least_cpu(run: Callable[[], object], repeat: int = 3) -> float:
    """The least of `repeat` calls' CPU seconds: a call that shares its core's caches
    with a busy neighbour costs a little more, never less."""
    return min(cpu_seconds(run) for _ in range(repeat))
