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


def process_cpu(pid: int) -> float:
    """CPU seconds of one live process (a PostgreSQL backend), without its children,
    to the nanosecond (the scheduler's own count, not the clock ticks of `stat`)."""
    with open(f"/proc/{pid}/schedstat") as handle:
        return int(handle.read().split()[0]) / 1e9


def postgres_split(data_dir: Path, database: str) -> tuple[float, float]:
    """PostgreSQL's CPU seconds as (the live backends connected to `database`, the
    rest): the rest is the postmaster, its background processes (WAL writer,
    checkpointer, autovacuum) and every child already reaped, so a backend that
    exits moves from the first to the second. The backends are read to the
    nanosecond, the rest in clock ticks."""
    postmaster = int((data_dir / "postmaster.pid").read_text().split()[0])
    total = tree_cpu(postmaster)
    backends = backends_ticks = 0.0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = _stat(int(entry))
            if int(fields[1]) != postmaster:
                continue
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                title = handle.read().decode(errors="replace").replace("\0", " ").split()
            # A backend's title: "postgres: <user> <database> <host(port)> <state>".
            if len(title) > 2 and title[2] == database:
                backends += process_cpu(int(entry))
                backends_ticks += (int(fields[11]) + int(fields[12])) / _TICK
        except (FileNotFoundError, ProcessLookupError, ValueError):
            continue
    return backends, total - backends_ticks
