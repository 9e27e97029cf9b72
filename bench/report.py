"""Output and options shared by the benchmarks: a plain table for the terminal, the
same table in Markdown for docs/benchmarks.md, and the `1,4,16` style count option."""

from __future__ import annotations

import argparse
from collections.abc import Sequence


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
