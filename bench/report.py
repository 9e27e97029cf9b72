"""Output and options shared by the benchmarks: a plain table for the terminal, the
same table in Markdown for docs/benchmarks.md, the `1,4,16` style count option, and
the shuffled rounds that paired comparisons are measured in."""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol, TypeVar


def plain_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    body = [tuple(headers), *(tuple(row) for row in rows)]
    widths = [max(len(line[i]) for line in body) for i in range(len(headers))]
    lines = [" | ".join(cell.rjust(w) for cell, w in zip(line, widths, strict=False)) for line in body]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    return "\n".join(
        [
            "| " + " | ".join(headers) + " |",
            "|" + "|".join("---:" for _ in headers) + "|",
            *("| " + " | ".join(row) + " |" for row in rows),
        ]
    )


def positive_counts(text: str) -> list[int]:
    """An argparse type: `1,4,16` → [1, 4, 16], all positive."""
    try:
        counts = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of integers: {text!r}") from None
    if not counts or any(n < 1 for n in counts):
        raise argparse.ArgumentTypeError("counts must be positive integers")
    return counts


class Run(Protocol):
    """One measured run of a benchmark that compares variants in rounds (a frozen
    dataclass): the runs of one round are compared with one another."""

    @property
    def round(self) -> str: ...

    @property
    def variant(self) -> str: ...


R = TypeVar("R", bound=Run)
S = TypeVar("S")  # a mail of the benchmark's


def median_range(values: Sequence[float]) -> str:
    """`1.23 [1.01–1.50]`: the median of the runs and their range."""
    return f"{statistics.median(values):.2f} [{min(values):.2f}–{max(values):.2f}]"


def paired(runs: Sequence[R], variant: str, base: str, value: Callable[[R], float]) -> str:
    """The median over rounds of `variant` minus `base` in the same round, and in how
    many rounds `variant` was lower: a drift of a shared machine falls on both."""
    by_round = {(run.round, run.variant): run for run in runs}
    diffs = [
        value(by_round[(r, variant)]) - value(by_round[(r, base)])
        for r in sorted({run.round for run in runs})
        if (r, variant) in by_round and (r, base) in by_round
    ]
    if variant == base or not diffs:
        return ""
    return f"{statistics.median(diffs):+.2f} ({sum(d < 0 for d in diffs)} of {len(diffs)} lower)"


def pooled(path: Path | None, runs: Sequence[R], kind: Callable[..., R]) -> list[R]:
    """`runs` added to the JSON-lines file at `path` (when given), and every run it
    holds: several short invocations then report as one."""
    if path is None:
        return list(runs)
    earlier = [kind(**json.loads(line)) for line in path.read_text().splitlines()] if path.exists() else []
    with path.open("a") as out:
        for run in runs:
            out.write(json.dumps(dataclasses.asdict(run)) + "\n")  # type: ignore[call-overload]
    return earlier + list(runs)


def shuffled_rounds(
    shapes: Sequence[str],
    mails_of: Callable[[str], Sequence[S]],
    rounds: int,
    variants: Sequence[str],
    run: Callable[[str, Sequence[S], str, str], R],
    told: Callable[[R], str],
) -> list[R]:
    """`run(shape, mails, variant, round_id)` for every variant, `rounds` times a
    shape, in an order shuffled anew each round, each run's line (`told`) printed
    as it ends: every variant of a round runs within minutes of the others, so a
    drift of a shared machine falls on all of them alike (`paired`)."""
    samples: list[R] = []
    for shape in shapes:
        mails = mails_of(shape)
        for index in range(rounds):
            round_id = f"{time.time():.0f}-{index}"
            order = list(variants)
            random.Random(round_id).shuffle(order)
            for variant in order:
                sample = run(shape, mails, variant, round_id)
                samples.append(sample)
                print(f"  {shape} round {index + 1}: {told(sample)}: {variant}", flush=True)
    return samples
