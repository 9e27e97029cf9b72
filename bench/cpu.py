"""CPU seconds of a process tree and of the private PostgreSQL, read from /proc: the
benchmarks divide them by the mails handled in the same window."""

from __future__ import annotations

import os
from pathlib import Path

_TICK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str]:
    with open(f"/proc/{pid}/stat") as handle:
        text = handle.read()
    return text[text.rindex(")") + 2 :].split()  # fields from "state" on


def tree_cpu(root: int) -> float:
    """CPU seconds of a process, its live children, and its reaped children."""
    fields = _stat(root)
    total = sum(int(fields[i]) for i in (11, 12, 13, 14))  # u, s, cu, cs
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            child = _stat(int(entry))
        except (FileNotFoundError, ProcessLookupError, ValueError):
            continue
        if int(child[1]) == root:
            total += int(child[11]) + int(child[12])
    return total / _TICK


def postgres_cpu(data_dir: Path) -> float:
    """CPU seconds of the postmaster and its backends."""
    return tree_cpu(int((data_dir / "postmaster.pid").read_text().split()[0]))
