"""gunicorn's settings for the portal and API (gunicorn reads this file from the
directory it starts in: `gunicorn wsgi:app`, `make run`).

Each worker is a process with its own request counters; prometheus-client's
multiprocess mode has them write to files in `PROMETHEUS_MULTIPROC_DIR`, so a scrape
of `/metrics` from any worker adds up all of them (helpdesk/metrics.py). Unset, a
private folder is made for this gunicorn and removed when it stops; set, it is
emptied at start (counts of an earlier run would be added in).
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

_made_here = not os.environ.get("PROMETHEUS_MULTIPROC_DIR")
if _made_here:
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="helpdesk-metrics.")
else:
    for stale in Path(os.environ["PROMETHEUS_MULTIPROC_DIR"]).glob("*.db"):
        stale.unlink()

# The app's own log lines on stderr beside gunicorn's, INFO included: gunicorn sets up
# only its loggers, so Python passed on the app's warnings alone and dropped the lines
# an operator needs from the portal, such as who cleared an undeliverable mark
# (docs/operations.md, "Logs"). Workers are forked from this process and keep it.
_app_lines = logging.StreamHandler(sys.stderr)
_app_lines.setFormatter(
    logging.Formatter(
        "%(asctime)s [%(process)d] [%(levelname)s] %(name)s: %(message)s", "[%Y-%m-%d %H:%M:%S %z]"
    )
)
logging.getLogger("helpdesk").addHandler(_app_lines)
logging.getLogger("helpdesk").setLevel(logging.INFO)


def child_exit(_server: Any, worker: Any) -> None:
    """A worker's live gauges end with it (its counters stay counted)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(_server: Any) -> None:
    if _made_here:
        shutil.rmtree(os.environ["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)
