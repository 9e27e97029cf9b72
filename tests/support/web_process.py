"""The portal and API served by gunicorn as a real process (`wsgi:app`), as operators
run it, and clients that talk to it over HTTP: a browser's cookie jar with the
login form's CSRF token, and the API's bearer tokens."""

from __future__ import annotations

import http.cookiejar
import json
import os
import re
import signal
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from tests.support.gateway_process import ROOT, SECRETS
from tests.support.pgserver import free_port
from tests.support.waiting import wait_until

_CSRF = re.compile(rb'name="csrf_token" value="([^"]+)"')


class WebServer:
    def __init__(
        self, url: str, scratch: Path, *, workers: int = 1, app: str = "wsgi:app", **env: str
    ) -> None:
        self.port = free_port()
        environment = {
            **os.environ,
            **SECRETS,
            "DATABASE_URL": url,
            "SECURE_COOKIES": "false",
            "HELPDESK_INSTANCE_DIR": str(scratch / "instance"),
            **env,
        }
        gunicorn = str(Path(sys.executable).parent / "gunicorn")
        self.process = subprocess.Popen(
            [
                gunicorn,
                "--bind",
                f"127.0.0.1:{self.port}",
                "--workers",
                str(workers),
                "--log-level",
                "warning",
                app,
            ],
            cwd=ROOT,
            env=environment,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            wait_until(self._healthy, timeout=60, interval=0.2, what="gunicorn answering")
        except AssertionError:
            self.stop()
            raise

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _healthy(self) -> bool:
        assert self.process.poll() is None, "gunicorn exited"
        try:
            with urllib.request.urlopen(f"{self.base}/api/v1/health", timeout=5) as answer:
                return bool(answer.status == 200)
        except OSError:
            return False

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def browser() -> urllib.request.OpenerDirector:
    """A browser: cookies kept across requests (and across hosts of one address)."""
    return urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))


def csrf_token(opener: urllib.request.OpenerDirector, page: str) -> str:
    with opener.open(page) as answer:
        match = _CSRF.search(answer.read())
    if match is None:
        raise AssertionError(f"no CSRF token on {page}")
    return match.group(1).decode()


def post_form(opener: urllib.request.OpenerDirector, url: str, form: dict[str, str], *, page: str) -> str:
    """Post a form as the browser does, with the CSRF token of `page`; returns the
    URL it ended on (after redirects)."""
    data = urllib.parse.urlencode({**form, "csrf_token": csrf_token(opener, page)}).encode()
    with opener.open(url, data=data) as answer:
        return str(answer.url)


def portal_login(base: str, email: str, password: str) -> urllib.request.OpenerDirector:
    opener = browser()
    landed = post_form(opener, f"{base}/login", {"email": email, "password": password}, page=f"{base}/login")
    if not landed.endswith("/tickets"):
        raise AssertionError(f"portal login failed: {landed}")
    return opener


def api_call(
    base: str, method: str, path: str, body: object = None, token: str | None = None
) -> tuple[int, object]:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"{base}/api/v1{path}", data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, json.load(answer)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


def api_token(base: str, email: str, password: str) -> str:
    status, tokens = api_call(base, "POST", "/auth/login", {"email": email, "password": password})
    assert status == 200 and isinstance(tokens, dict), tokens
    return str(tokens["access_token"])
