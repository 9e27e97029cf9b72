"""What a benchmark's worker processes report, and the rate of a run of them."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class WorkerResult:
    count: int
    # time.monotonic() is CLOCK_MONOTONIC on Linux: one clock for every process.
    started: float
    finished: float


@dataclass(frozen=True)
class Run:
    workers: int
    count: int
    elapsed: float

    @property
    def rate(self) -> float:
        return self.count / self.elapsed if self.elapsed > 0 else 0.0
