"""`gateway.py` run as a real process, as operators run it."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from config import TestingConfig

ROOT = Path(__file__).resolve().parents[2]
# A process on PostgreSQL refuses to start without explicit keys, as on several hosts.
SECRETS = {"SECRET_KEY": TestingConfig.SECRET_KEY, "JWT_SECRET_KEY": TestingConfig.JWT_SECRET_KEY}


def start(
    database_url: str, port: int, tmp_path: Path, log: list[str] | None = None, **extra_env: str
) -> subprocess.Popen[str]:
    """`gateway.py` as a real process; returns once it logged that it started.
    Its output (of every process it starts) keeps arriving in `log` when given."""
    env = {
        **os.environ,
        **SECRETS,
        "DATABASE_URL": database_url,
        "SMTP_LISTEN": f"127.0.0.1:{port}",
        "HELPDESK_INSTANCE_DIR": str(tmp_path / "instance"),
        "SUPPORT_ADDRESSES": "support@helpdesk.test",
        **extra_env,
    }
    process = subprocess.Popen(
        [sys.executable, "gateway.py"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines = [] if log is None else log
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = process.stdout.readline()  # type: ignore[union-attr]
        lines.append(line)
        if "gateway started" in line:
            threading.Thread(
                target=lambda: lines.extend(process.stdout),  # type: ignore[arg-type]
                daemon=True,
            ).start()
            return process
        if process.poll() is not None:
            break
    process.kill()
    raise AssertionError("gateway did not start:\n" + "".join(lines))


def refused_start(tmp_path: Path, **env: str) -> str:
    """`gateway.py` with a bad setting: it must exit 1 at once; returns its complaint."""
    env = {
        **os.environ,
        **SECRETS,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}",
        "HELPDESK_INSTANCE_DIR": str(tmp_path / "instance"),
        **env,
    }
    done = subprocess.run(
        [sys.executable, "gateway.py"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1, done.stderr
    return done.stderr
