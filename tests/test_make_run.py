"""`make run` (scripts/run.sh) on a fresh install: it migrates an empty database,
prints the first admin's password, serves the portal and the API under gunicorn,
runs the gateway, and stops both on SIGTERM."""

from __future__ import annotations

import json
import os
import re
import signal
import smtplib
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path

from tests.support.mail import message
from tests.support.pgserver import free_port
from tests.support.waiting import wait_until

ROOT = Path(__file__).resolve().parent.parent


def _request(url: str, body: dict[str, str] | None = None) -> tuple[int, dict[str, object]]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def _answer(url: str) -> tuple[int, dict[str, object]] | None:
    """The server's answer, or None while nothing listens yet."""
    try:
        return _request(url)
    except (urllib.error.URLError, ConnectionError):
        return None


def test_make_run_serves_portal_api_and_gateway_then_stops(tmp_path):
    web, smtp = free_port(), free_port()
    env = dict(
        os.environ,
        HELPDESK_INSTANCE_DIR=str(tmp_path / "instance"),
        DATABASE_URL=f"sqlite:///{tmp_path / 'helpdesk.db'}",
        WEB_LISTEN=f"127.0.0.1:{web}",
        WEB_WORKERS="1",
        SMTP_LISTEN=f"127.0.0.1:{smtp}",
        SMTP_PROCESSES="1",
        OUTBOUND_SMTP_URL="",
        UNKNOWN_SENDER_POLICY="accept",
        VENV=str(Path(sys.executable).parent.parent),
    )
    env.pop("SECRET_KEY", None)
    process = subprocess.Popen(
        ["bash", "scripts/run.sh"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    lines: list[str] = []

    def log() -> str:
        return "".join(lines)

    threading.Thread(target=lambda: lines.extend(process.stdout), daemon=True).start()  # type: ignore[arg-type]
    try:
        wait_until(
            lambda: process.poll() is not None or any("gateway started" in line for line in list(lines)),
            timeout=60,
            what=log,
        )
        assert process.poll() is None, log()
        [admin] = [
            re.search(r"First admin: (\S+)  password: (\S+)", line)
            for line in lines
            if "First admin:" in line
        ]
        assert admin, "".join(lines)
        base = f"http://127.0.0.1:{web}"
        status, health = wait_until(
            lambda: _answer(f"{base}/api/v1/health"), timeout=60, interval=0.2, what=log
        )  # gunicorn may still be booting
        assert status == 200, health
        status, tokens = _request(
            f"{base}/api/v1/auth/login", {"email": admin.group(1), "password": admin.group(2)}
        )
        assert status == 200 and tokens.get("access_token"), tokens
        # A customer link's token is a secret: the access log leaves it out, in the
        # request line and in the next request's Referer (docs/security.md).
        secret = "status-link-token-that-must-stay-out-of-the-log"
        link = urllib.request.Request(
            f"{base}/track/{secret}", headers={"Referer": f"{base}/rate/{secret}?x=1"}
        )
        try:
            urllib.request.urlopen(link, timeout=10)
        except urllib.error.HTTPError as error:
            assert error.code == 404  # no link of ours
        wait_until(lambda: any("/track/[token]" in line for line in list(lines)), timeout=10, what=log)
        assert secret not in log()
        with smtplib.SMTP("127.0.0.1", smtp, timeout=30) as client:
            reply = client.sendmail("ann@example.com", ["support@helpdesk.test"], message().as_bytes())
            assert reply == {}
            assert client.noop()[0] == 250
        assert any("created TKT-000001" in line for line in list(lines)), "".join(lines)
    finally:
        if process.poll() is None:  # as Ctrl-C does: the signal reaches the whole group
            os.killpg(process.pid, signal.SIGTERM)
        code = process.wait(timeout=60)
    assert code == 128 + signal.SIGTERM, "".join(lines)  # the shell's answer to SIGTERM
    wait_until(
        lambda: any("gateway stopped" in line for line in list(lines)), timeout=10, what=log
    )  # the reader thread may still be catching up
    try:
        os.killpg(process.pid, 0)
    except ProcessLookupError:
        pass  # the portal and the gateway are gone with it
    else:
        raise AssertionError("processes of `make run` outlived it")
