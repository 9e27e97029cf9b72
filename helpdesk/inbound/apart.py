"""Reading a held mail in a process apart, before an approval reads it in the
portal's worker or the CLI (docs/mail-gateway.md, "A mail that kills the listener").

A mail the gateway held without reading it (`ingest.held_unread`: its listener
processes died storing it, or its processing failed before the pipeline) is read
for the first time when it is approved. One that crashes the parser (C code, the
memory exhausted) then ended the portal's worker, with the other requests it was
serving, or the operator's CLI, and the approval with it, every time it was tried,
with nothing said but a lost connection or "Killed". So its bytes are first parsed
by a child process, bounded in time (`SECONDS`) and memory (`MEMORY_BYTES`), as the
pipeline parses them; the approval goes on only when that child ends well.
"""

from __future__ import annotations

import dataclasses
import json
import resource
import signal
import subprocess
import sys
from pathlib import Path

from helpdesk.inbound.limits import MailLimits

# How long the child may read the mail: the pipeline parses one of 25 MiB in
# seconds; a parse that does not end is what the gateway's processes died of.
SECONDS = 60.0
# Its address space: a 25 MiB mail parses well within it, so a parse that needs
# more is one that exhausted the gateway's memory.
MEMORY_BYTES = 2 << 30
_OUT_OF_MEMORY = 3  # the child's exit status when the parse hit MEMORY_BYTES
_ROOT = Path(__file__).resolve().parents[2]  # where `python -m helpdesk...` finds the package


def why_it_cannot_be_read(raw: bytes, limits: MailLimits) -> str | None:
    """None when a child process parsed `raw` under `limits` and ended well; else
    how it ended, for the log (the reviewer is told the mail could not be read)."""
    try:
        done = subprocess.run(
            [sys.executable, "-m", __name__, json.dumps(dataclasses.asdict(limits))],
            input=raw,
            capture_output=True,
            timeout=SECONDS,
            cwd=_ROOT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return f"its parse took more than {SECONDS:g} s"
    if done.returncode == 0:
        return None
    if done.returncode < 0:
        return f"its parse ended the process ({signal.Signals(-done.returncode).name})"
    if done.returncode == _OUT_OF_MEMORY:
        return f"its parse needed more than {MEMORY_BYTES >> 20} MiB"
    said = done.stderr.decode("utf-8", "replace").strip().splitlines()
    return f"its parse failed (exit status {done.returncode}: {said[-1] if said else 'nothing said'})"


def _main() -> None:
    """The child: the mail's bytes on stdin, the limits as JSON in its argument."""
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_BYTES, MEMORY_BYTES))
    from helpdesk.inbound.parser import parse  # after the bound: what it imports counts too

    limits = MailLimits(**json.loads(sys.argv[1]))
    raw = sys.stdin.buffer.read()
    try:
        parse(raw, limits)
    except MemoryError:
        sys.exit(_OUT_OF_MEMORY)


if __name__ == "__main__":
    _main()
