"""How much Python memory a call takes at its peak (tracemalloc), for tests that
bound what a page reads, as the reviewer measured it (docs/web.md, "The queue")."""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def peak_of(call: Callable[[], T]) -> tuple[T, int]:
    """`call`'s result and the most bytes Python held at once while it ran."""
    tracemalloc.start()
    try:
        result = call()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return result, peak
