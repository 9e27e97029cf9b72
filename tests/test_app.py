"""The app factory, configuration and the two entry points."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest

import config
from tests.support.app import make_app
from tests.support.gateway_process import SECRETS
from tests.support.revision import NEWER, head_and_previous, stamped

ROOT = Path(__file__).resolve().parent.parent


def test_health_endpoints(client):
    response = client.get("/api/v1/health")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok", "database": "ok", "schema": "ok"}
    page = client.get("/")
    assert page.status_code == 302 and page.headers["Location"] == "/login"


def test_health_fails_on_a_schema_behind_the_code_and_notes_one_ahead(
    app, client, tmp_path, monkeypatch, caplog
):
    """`flask db upgrade` skipped after an upgrade of the code: the health answer was
    200 while new tickets and pages failed on the missing columns. It is 503 (the
    load balancer takes the host out) naming the command; a schema ahead (a newer
    release migrated it first) keeps the host in (docs/operations.md, "Upgrades and
    the schema revision"). The revisions are named to the metrics scraper's token
    and in the log only: they told anyone which release a host runs (found by review)."""
    from helpdesk.api import health

    monkeypatch.setattr(health, "_logged", [""])
    app.config.update(METRICS_TOKEN="scrape-secret")
    head, previous = head_and_previous()
    with stamped(previous):
        response = client.get("/api/v1/health")
        wrong = client.get("/api/v1/health", headers={"Authorization": "Bearer guess"})
        operator = client.get("/api/v1/health", headers={"Authorization": "Bearer scrape-secret"})
    for answer in (response, wrong, operator):
        assert answer.status_code == 503
        error = answer.get_json()["error"]
        assert error["code"] == "schema_behind"
        assert "flask --app wsgi db upgrade" in error["message"]
    for public in (response, wrong):
        assert previous not in public.get_data(as_text=True) and head not in public.get_data(as_text=True)
    error = operator.get_json()["error"]
    assert f"at revision {previous}, this code needs {head}" in error["message"]
    assert error["fields"] == {"database_revision": [previous], "code_revision": [head]}
    with stamped(NEWER):
        response = client.get("/api/v1/health")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok", "database": "ok", "schema": "ahead"}
    # Logged once a worker per change, not on every probe.
    warnings = [r.getMessage() for r in caplog.records if r.name == "helpdesk.api"]
    assert len(warnings) == 2 and f"{previous}, this code needs {head}" in warnings[0], warnings
    assert f"at revision {NEWER}, newer than" in warnings[1], warnings
    never_migrated = make_app(f"sqlite:///{tmp_path / 'empty.db'}").test_client().get("/api/v1/health")
    assert never_migrated.status_code == 503
    assert never_migrated.get_json()["error"]["code"] == "schema_behind"


def test_api_unknown_route_is_json_not_html(client):
    response = client.get("/api/v1/nope")
    assert response.status_code == 404
    assert response.get_json()["error"]["code"] == "not_found"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("7d", timedelta(days=7)),
        ("36h", timedelta(hours=36)),
        ("90m", timedelta(minutes=90)),
        ("45s", timedelta(seconds=45)),
        ("3600", timedelta(hours=1)),
    ],
)
def test_parse_duration(text, expected):
    assert config.parse_duration(text) == expected


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgres://u@h/db", "postgresql+psycopg2://u@h/db"),
        ("postgresql://u@h/db", "postgresql+psycopg2://u@h/db"),
        ("postgresql+psycopg2://u@h/db", "postgresql+psycopg2://u@h/db"),
        ("sqlite:////tmp/x.db", "sqlite:////tmp/x.db"),
    ],
)
def test_database_url_normalization(url, expected):
    assert config.normalize_database_url(url) == expected


def _run_python(code: str, tmp_path: Path, **env: str) -> str:
    environment = {
        k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "SECRET_KEY", "JWT_SECRET_KEY")
    }
    environment.update(HELPDESK_INSTANCE_DIR=str(tmp_path / "instance"), **env)
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=environment, capture_output=True, text=True, check=True
    ).stdout


def test_default_config_uses_instance_sqlite_and_a_shared_generated_secret(tmp_path):
    code = (
        "from helpdesk import create_app; c = create_app().config; "
        "print(c['SQLALCHEMY_DATABASE_URI']); print(c['SECRET_KEY']); print(c['SUPPORT_ADDRESSES'])"
    )
    first = _run_python(code, tmp_path).splitlines()
    second = _run_python(code, tmp_path).splitlines()
    assert first[0] == f"sqlite:///{tmp_path / 'instance' / 'helpdesk.db'}"
    assert len(first[1]) == 64 and first[1] == second[1]  # same secret for every process
    assert (tmp_path / "instance" / "secret_key").stat().st_mode & 0o077 == 0
    assert first[2] == "['support@helpdesk.test']"
    overridden = _run_python(
        code,
        tmp_path,
        DATABASE_URL="postgres://u@h/d",
        SECRET_KEY="s3" * 16,
        JWT_SECRET_KEY="j3" * 16,
        SUPPORT_ADDRESSES="Help@A.example, desk@b.example",
    ).splitlines()
    assert overridden == ["postgresql+psycopg2://u@h/d", "s3" * 16, "['help@a.example', 'desk@b.example']"]


def test_enumerated_settings_are_read_whatever_their_case_and_spaces(tmp_path):
    code = (
        "from helpdesk import create_app; c = create_app().config; print(c['UNKNOWN_SENDER_POLICY'], "
        "c['AGENT_VISIBILITY'], c['DEFAULT_LANGUAGE'], c['SECURE_COOKIES'], c['SLA_BREACH_RAISES_PRIORITY'])"
    )
    settings = dict(
        UNKNOWN_SENDER_POLICY=" Reject ",
        AGENT_VISIBILITY="Team",
        DEFAULT_LANGUAGE="ES",
        SECURE_COOKIES=" Off",
        SLA_BREACH_RAISES_PRIORITY="On",
    )
    assert _run_python(code, tmp_path, **settings).split() == ["reject", "team", "es", "False", "True"]
    assert _run_python(code, tmp_path, UNKNOWN_SENDER_POLICY="ACCEPT").split()[0] == "accept"


@pytest.mark.parametrize(
    ("name", "value", "allowed"),
    [
        ("UNKNOWN_SENDER_POLICY", "bogus", "quarantine, reject, accept"),
        ("UNKNOWN_SENDER_POLICY", "rejected", "quarantine, reject, accept"),
        ("AGENT_VISIBILITY", "everyone", "all, team, own"),
        ("DEFAULT_LANGUAGE", "fr", "en, es"),
        ("SECURE_COOKIES", "ture", "true, false, 1, 0, yes, no, on, off"),
        ("SLA_BREACH_RAISES_PRIORITY", "maybe", "true, false, 1, 0, yes, no, on, off"),
    ],
)
def test_an_unknown_enumerated_setting_stops_the_start_in_one_line(tmp_path, name, value, allowed):
    """SPEC §2 lists the values; any other was silently `quarantine` (or false), a
    mistyped `reject` holding every stranger's mail instead of refusing it."""
    environment = {
        k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "SECRET_KEY", "JWT_SECRET_KEY")
    }
    environment.update(HELPDESK_INSTANCE_DIR=str(tmp_path / "instance"), **{name: value})
    for command, prefix, code in (
        (["-c", "import wsgi"], "helpdesk", 3),
        (["gateway.py", "--check"], "gateway", 1),
    ):
        result = subprocess.run(
            [sys.executable, *command], cwd=ROOT, env=environment, capture_output=True, text=True
        )
        assert result.returncode == code  # 3: gunicorn's boot error (wsgi.BOOT_ERROR)
        assert result.stderr == f"{prefix}: {name} must be one of {allowed}, not {value!r}\n"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("AUTO_CLOSE_AFTER", "-7d"),
        ("AUTO_CLOSE_AFTER", "0"),
        ("AUTO_CLOSE_AFTER", "7 days"),
        ("OUTBOUND_LEASE", "inf"),
        ("STAFF_SESSION_LIFETIME", "nan"),
        ("LIFECYCLE_JOBS_INTERVAL", "-1m"),
        ("IDEMPOTENCY_KEY_LIFETIME", "0"),
        ("STAFF_SESSION_LIFETIME", "3000000d"),
    ],
)
def test_a_duration_that_is_not_positive_stops_the_start_in_one_line(tmp_path, name, value):
    """`AUTO_CLOSE_AFTER=-7d` (or `0`) started, and the next run closed every resolved
    ticket; `7 days` or `inf` stopped the start with a traceback (found by the SLA
    review); `3000000d` started and overflowed every login (found by the review of
    the fix). `LIFECYCLE_JOBS_INTERVAL=0` still leaves the jobs to cron."""
    environment = {
        k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "SECRET_KEY", "JWT_SECRET_KEY")
    }
    environment.update(HELPDESK_INSTANCE_DIR=str(tmp_path / "instance"), **{name: value})
    result = subprocess.run(
        [sys.executable, "-c", "import wsgi"], cwd=ROOT, env=environment, capture_output=True, text=True
    )
    assert result.returncode == 3, result.stderr
    assert result.stderr == (
        f"helpdesk: {name} must be a positive duration of at most 100 years, such as 7d, 36h, 90m or 45s, "
        f"not {value!r}\n"
    )
    environment[name] = "0" if name == "LIFECYCLE_JOBS_INTERVAL" else "36h"
    setting = {"STAFF_SESSION_LIFETIME": "PERMANENT_SESSION_LIFETIME"}.get(name, name)
    started = subprocess.run(
        [sys.executable, "-c", f"import wsgi; print(wsgi.app.config[{setting!r}].total_seconds())"],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
    )
    expected = 0 if name == "LIFECYCLE_JOBS_INTERVAL" else 36 * 3600
    assert started.stdout == f"{float(expected)}\n", started.stderr


def test_an_unknown_business_timezone_stops_the_start_in_one_line(tmp_path):
    """A mistyped zone started the app, then every page showing a time and every
    customer mail failed on it (ZoneInfoNotFoundError); it was read only with
    BUSINESS_HOURS set (found by the languages review)."""
    environment = {
        k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "SECRET_KEY", "JWT_SECRET_KEY")
    }
    environment.update(
        HELPDESK_INSTANCE_DIR=str(tmp_path / "instance"), BUSINESS_TIMEZONE="America/Mexico City"
    )
    for command, prefix, code in (
        (["-c", "import wsgi"], "helpdesk", 3),
        (["gateway.py", "--check"], "gateway", 1),
    ):
        result = subprocess.run(
            [sys.executable, *command], cwd=ROOT, env=environment, capture_output=True, text=True
        )
        assert result.returncode == code, result.stderr
        assert result.stderr == (
            f"{prefix}: BUSINESS_TIMEZONE must be an IANA time zone such as America/Mexico_City, "
            "not 'America/Mexico City'\n"
        )
    environment["BUSINESS_TIMEZONE"] = "America/Mexico_City"
    started = subprocess.run(
        [sys.executable, "-c", "import wsgi; print(wsgi.app.config['BUSINESS_TIMEZONE'])"],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
    )
    assert started.stdout == "America/Mexico_City\n", started.stderr


def _without_database(tmp_path: Path, **settings: str) -> dict[str, str]:
    environment = {
        k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "SECRET_KEY", "JWT_SECRET_KEY")
    }
    environment.update(HELPDESK_INSTANCE_DIR=str(tmp_path / "instance"), **settings)
    return environment


_RATE = "a rate limit such as '10 per minute' or '10/minute;100/hour', " + (
    "at least 1 in a window from 1 second to 100 years"
)
_TARGETS = "priority=duration pairs such as urgent=15m,high=1h, each positive and at most 100 years"
# Settings that started and then did harm, or stopped the start with a traceback
# (conformance review), each with the line that now refuses it. Names are distinct:
# one process reads them all.
_UNREADABLE = {
    "LOGIN_RATE_LIMIT": ("lots", _RATE),  # Flask-Limiter skipped it: no limit at all
    "LOGIN_RATE_LIMIT_PER_ACCOUNT": ("ten per minute", _RATE),
    "TRACK_RATE_LIMIT_PER_IP": ("30 a minute", _RATE),
    "TRACK_RATE_LIMIT_PER_TICKET": ("0 per minute", _RATE),
    "API_RATE_LIMIT": ("600 a minute", _RATE),  # no budget per API caller at all
    "INTEGRATION_CUSTOMER_RATE_LIMIT": ("60 a minute", _RATE),  # no limit per customer at all
    "MAX_MESSAGE_BYTES": ("25MB", "a whole number from 1024 to 1073741824"),
    "IMAP_POLL_SECONDS": ("0", "a whole number from 1 to 86400"),  # polled without a pause
    "IMAP_LEASE_SECONDS": ("0", "a whole number from 1 to 3600"),  # renewed without a pause
    "TICKET_NUMBER_WIDTH": ("-1", "a whole number from 1 to 18"),  # every creation a 500
    "DB_POOL_SIZE": ("five", "a whole number from 1 to 1000"),
    "OUTBOUND_POLL_SECONDS": ("0", "a number of seconds from 0.1 to 3600"),  # a core kept busy
    "OUTBOUND_TIMEOUT_SECONDS": ("nan", "a number of seconds from 1 to 3600"),
    "SLA_FIRST_RESPONSE": ("urgent", _TARGETS),
    "SLA_RESOLUTION": ("high=-1h", _TARGETS),
    "SUPPORT_ADDRESSES": (",", "one or more addresses such as support@example.com, separated by commas"),
    "SMTP_LISTEN": (":99999", "host:port with a port from 1 to 65535, such as 127.0.0.1:2525"),
    "QUARANTINE_MAX_MAILS": ("100k", "a whole number from 0 to 100000000"),
    "QUARANTINE_MAX_BYTES": ("-1", "a whole number from 0 to 1099511627776"),
}


def test_every_setting_that_cannot_be_read_is_refused_in_one_line(tmp_path):
    """Each of these stopped the start with a traceback (`25MB`, `five`, `urgent`, an
    empty SUPPORT_ADDRESSES), or started and then broke: a rate limit Flask-Limiter
    cannot read was dropped, so password guessing went unlimited; a width of -1
    failed every creation; a poll interval of 0 kept a core busy."""
    settings = {name: value for name, (value, _) in _UNREADABLE.items()}
    assert _refusals(tmp_path, settings) == sorted(
        f"{name} must be {complaint}, not {value!r}" for name, (value, complaint) in _UNREADABLE.items()
    )


def _refusals(tmp_path: Path, settings: dict[str, str]) -> list[str]:
    """The lines `config` refuses under `settings`, read in a process of their own."""
    result = subprocess.run(
        [sys.executable, "-c", "import config; print(*config._REFUSED, sep='\\n')"],
        cwd=ROOT,
        env=_without_database(tmp_path, **settings),
        capture_output=True,
        text=True,
    )
    assert result.stderr == ""
    return sorted(result.stdout.splitlines())


def test_a_rate_limit_over_a_window_of_zero_is_refused(tmp_path):
    """`limits` reads a window of 0 as a window of 1: "10 per 0 minutes" was taken
    as 10 per minute, whatever the operator meant by it."""
    settings = {"LOGIN_RATE_LIMIT": "10 per 0 minutes", "LOGIN_RATE_LIMIT_PER_ACCOUNT": "5/hour;10/00second"}
    assert _refusals(tmp_path, settings) == sorted(
        f"{name} must be {_RATE}, not {value!r}" for name, value in settings.items()
    )


@pytest.mark.parametrize(
    ("name", "value", "complaint"),
    [("LOGIN_RATE_LIMIT", "10 per fortnight", _RATE)],
)
def test_a_setting_that_cannot_be_read_stops_every_entry_point_in_one_line(tmp_path, name, value, complaint):
    for command, prefix, code in (
        (["-c", "import wsgi"], "helpdesk", 3),
        (["gateway.py", "--check"], "gateway", 1),
    ):
        result = subprocess.run(
            [sys.executable, *command],
            cwd=ROOT,
            env=_without_database(tmp_path, **{name: value}),
            capture_output=True,
            text=True,
        )
        assert result.returncode == code, result.stderr
        assert result.stderr == f"{prefix}: {name} must be {complaint}, not {value!r}\n"


@pytest.mark.parametrize(
    ("setting", "complaint"),
    [
        ({"BUSINESS_HOURS": "bogus"}, "BUSINESS_HOURS: cannot read 'bogus'"),
        # Read only with BUSINESS_HOURS set: without, a typo started and was ignored.
        ({"BUSINESS_HOLIDAYS": "2026-12-25,25/12/2026"}, "BUSINESS_HOLIDAYS: "),
    ],
    ids=["hours", "holidays without hours"],
)
def test_sla_settings_helpdesk_sla_refuses_stop_the_start_in_one_line(tmp_path, setting, complaint):
    """The priorities and the calendar are read by helpdesk.sla (config.py cannot
    import them): a ValueError there was a traceback (an unknown priority:
    tests/test_sla.py)."""
    result = subprocess.run(
        [sys.executable, "-c", "import wsgi"],
        cwd=ROOT,
        env=_without_database(tmp_path, **setting),
        capture_output=True,
        text=True,
    )
    assert result.returncode == 3
    assert result.stderr.startswith(f"helpdesk: {complaint}") and result.stderr.count("\n") == 1


def test_settings_within_their_bounds_are_taken(tmp_path):
    code = (
        "import wsgi; c = wsgi.app.config; print(c['LOGIN_RATE_LIMIT'], c['TICKET_NUMBER_WIDTH'], "
        "c['OUTBOUND_POLL_SECONDS'], c['SMTP_LISTEN'], c['SUPPORT_ADDRESSES'], c['SLA_RESOLUTION'])"
    )
    settings = {
        "LOGIN_RATE_LIMIT": "5/minute;50/hour",
        "TICKET_NUMBER_WIDTH": "18",
        "OUTBOUND_POLL_SECONDS": "0.5",
        "SMTP_LISTEN": "[::1]:25",
        "SUPPORT_ADDRESSES": "help@a.example,",
        "SLA_RESOLUTION": "low=10d",
    }
    started = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=_without_database(tmp_path, **settings),
        capture_output=True,
        text=True,
    )
    assert started.stdout == (
        "5/minute;50/hour 18 0.5 [::1]:25 ['help@a.example'] {'low': datetime.timedelta(days=10)}\n"
    ), started.stderr


def test_dotenv_beside_config_sets_the_instance_dir_too(tmp_path):
    """SPEC §2: a `.env` is read, HELPDESK_INSTANCE_DIR included (it was read before
    the file, so only the variables after it were honoured). The environment wins."""
    shutil.copy(ROOT / "config.py", tmp_path / "config.py")
    (tmp_path / ".env").write_text(f"HELPDESK_INSTANCE_DIR={tmp_path / 'envinst'}\nTICKET_PREFIX=INC-\n")
    code = "import config; print(config.INSTANCE_DIR); print(config.Config.TICKET_PREFIX)"
    environment = {
        k: v for k, v in os.environ.items() if k not in ("HELPDESK_INSTANCE_DIR", "HELPDESK_ENV_FILE")
    }

    def run(**env: str) -> list[str]:
        return subprocess.run(
            [sys.executable, "-c", code],
            cwd=tmp_path,
            env={**environment, **env},
            capture_output=True,
            text=True,
            check=True,
        ).stdout.splitlines()

    assert run() == [str(tmp_path / "envinst"), "INC-"]
    assert run(HELPDESK_INSTANCE_DIR="/srv/hd", TICKET_PREFIX="T-") == ["/srv/hd", "T-"]
    # The suite itself reads no .env (tests/__init__.py), nor does HELPDESK_ENV_FILE="".
    assert run(HELPDESK_ENV_FILE="") == [str(tmp_path / "instance"), "TKT-"]


def test_a_gateway_that_cannot_bind_its_smtp_port_says_so_in_one_line(app):
    """The port in use ended the gateway in a traceback, after aiosmtpd's five
    seconds of waiting for a server that had already failed (conformance review)."""
    from mailgateway import runner

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        listen = f"127.0.0.1:{taken.getsockname()[1]}"
        app.config.update(SMTP_LISTEN=listen, SMTP_PROCESSES=1, IMAP_URL="", OUTBOUND_SMTP_URL="")
        started = time.monotonic()
        with pytest.raises(
            config.ConfigurationError, match=f"^SMTP_LISTEN {listen}: .*address already in use$"
        ):
            runner.run(app)
    assert time.monotonic() - started < 4


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT], ids=["TERM", "INT"])
def test_gateway_builds_the_app_and_stops_on_signal(database_url, tmp_path, stop_signal):
    from tests.support.pgserver import free_port

    environment = dict(
        os.environ,
        **SECRETS,
        DATABASE_URL=database_url,
        SMTP_LISTEN=f"127.0.0.1:{free_port()}",
        HELPDESK_INSTANCE_DIR=str(tmp_path / "instance"),
    )
    process = subprocess.Popen(
        [sys.executable, "gateway.py"],
        cwd=ROOT,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        lines: list[str] = []
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            lines.append(line)
            if "gateway started" in line:
                break
        assert any("gateway started for support@helpdesk.test" in line for line in lines), lines
        # At once: the signal lands while the main thread is still settling in to wait.
        process.send_signal(stop_signal)
        try:
            code = process.wait(timeout=20)
        except subprocess.TimeoutExpired:  # the gateway dumped its threads' stacks at 10 s
            process.kill()
            pytest.fail("gateway did not stop:\n" + process.communicate()[0])
        output = process.stdout.read()
        assert code == 0, output
        assert f"received {stop_signal.name}, stopping" in output
        assert "gateway stopped" in output
    finally:
        if process.poll() is None:
            process.kill()
