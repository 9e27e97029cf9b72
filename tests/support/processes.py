"""Run a function in several real OS processes (multiprocessing "spawn": a fresh
interpreter each, nothing shared but the database and the sockets) and collect
what each one reports."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Sequence
from typing import Any


def run_processes(
    target: Callable[..., None],
    args: Sequence[tuple[Any, ...]],
    *,
    barrier_parties: int | None = None,
    timeout: float = 300,
) -> list[Any]:
    """Start one process per argument tuple; each gets `(*args, barrier, results)`,
    waits on the barrier so they all start together, and puts one report on
    `results`. Returns the reports (in arrival order) after every process exited 0."""
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(barrier_parties or len(args))
    results = context.Queue()
    processes = [context.Process(target=target, args=(*arguments, barrier, results)) for arguments in args]
    for process in processes:
        process.start()
    reported = [results.get(timeout=timeout) for _ in processes]
    for process in processes:
        process.join(timeout=60)
        assert process.exitcode == 0
    return reported
