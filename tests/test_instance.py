"""The instance folder: generated secrets and the embedded database (docs/security.md).

The portal's workers and the gateway start side by side on a fresh install and must
end up with one secret, never an empty one (an empty key makes signed Message-IDs
forgeable); what they keep there is readable by their user only. With PostgreSQL,
several hosts share the database, so a secret generated per host would break
sessions and Message-ID signatures between them: keys must be given.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from helpdesk import instance
from tests.support.gateway_process import ROOT, refused_start


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_starter_arriving_while_another_writes_the_secret_gets_the_same_one(tmp_path, monkeypatch):
    """The first starter is held after it began creating the secret; the second
    must neither read a half-written (empty) file nor end up with another secret."""
    first_is_writing, let_it_finish = threading.Event(), threading.Event()
    real_token_hex = instance.secrets.token_hex
    calls = []

    def slow_first(n: int) -> str:
        calls.append(n)
        if len(calls) == 1:
            first_is_writing.set()
            assert let_it_finish.wait(10)
        return real_token_hex(n)

    monkeypatch.setattr(instance.secrets, "token_hex", slow_first)
    results: dict[str, str] = {}
    first = threading.Thread(target=lambda: results.update(first=instance.secret(tmp_path, "secret_key")))
    first.start()
    assert first_is_writing.wait(10)
    try:
        results["second"] = instance.secret(tmp_path, "secret_key")
    finally:
        let_it_finish.set()
        first.join(10)
    assert len(results["second"]) == 64
    assert results["first"] == results["second"] == (tmp_path / "secret_key").read_text()
    assert [p.name for p in tmp_path.iterdir()] == ["secret_key"]  # no temp file left behind


def test_many_processes_starting_at_once_agree_on_one_secret(tmp_path):
    code = "from helpdesk import create_app; print(create_app().config['SECRET_KEY'])"
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "SECRET_KEY", "JWT_SECRET_KEY")}
    env.update(HELPDESK_INSTANCE_DIR=str(tmp_path / "instance"))
    processes = [
        subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
        for _ in range(8)
    ]
    keys = {process.communicate(timeout=60)[0].strip() for process in processes}
    assert len(keys) == 1 and len(keys.pop()) == 64


def test_an_empty_secret_file_is_refused_not_used(tmp_path):
    (tmp_path / "secret_key").write_text("\n")
    with pytest.raises(instance.ConfigurationError, match="secret_key is empty"):
        instance.secret(tmp_path, "secret_key")


def test_the_instance_folder_its_secrets_and_the_sqlite_database_are_private(tmp_path):
    folder = tmp_path / "instance"
    config = {
        "SQLALCHEMY_DATABASE_URI": f"sqlite:///{folder / 'helpdesk.db'}",
        "SECRET_KEY": None,
        "JWT_SECRET_KEY": None,
    }
    old = os.umask(0o022)  # a usual umask: world-readable unless the code says otherwise
    try:
        instance.prepare(str(folder), config)
    finally:
        os.umask(old)
    assert len(config["SECRET_KEY"]) == len(config["JWT_SECRET_KEY"]) == 64
    assert config["SECRET_KEY"] != config["JWT_SECRET_KEY"]
    assert _mode(folder) == 0o700
    assert _mode(folder / "secret_key") == 0o600
    assert _mode(folder / "jwt_secret_key") == 0o600
    assert _mode(folder / "helpdesk.db") == 0o600


def test_an_existing_world_readable_instance_folder_is_made_private(tmp_path):
    folder = tmp_path / "instance"
    folder.mkdir(mode=0o755)
    os.chmod(folder, 0o755)
    instance.secret(folder, "secret_key")
    assert _mode(folder) == 0o700


@pytest.mark.parametrize("missing", ["SECRET_KEY", "JWT_SECRET_KEY"])
def test_with_postgresql_a_process_refuses_to_start_without_explicit_keys(tmp_path, missing):
    env = {"SECRET_KEY": "a-key-for-every-host-" + "k" * 16, "JWT_SECRET_KEY": "another-key-" + "j" * 32}
    env[missing] = ""
    complaint = refused_start(tmp_path, DATABASE_URL="postgresql://u@127.0.0.1:1/d", **env)
    assert complaint.count("\n") == 1, complaint  # one line, no traceback
    assert missing in complaint and "PostgreSQL" in complaint
    web = subprocess.run(
        [sys.executable, "-c", "import wsgi"],
        cwd=ROOT,
        env=dict(
            os.environ,
            DATABASE_URL="postgresql://u@127.0.0.1:1/d",
            HELPDESK_INSTANCE_DIR=str(tmp_path / "instance"),
            **env,
        ),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert web.returncode == 3 and web.stderr.count("\n") == 1, web.stderr
    assert missing in web.stderr
    assert not (tmp_path / "instance" / missing.lower()).exists()


SHORT = "hunter2-but-longer-31-bytes-xyz"  # 31 bytes: one short of the least a key may be


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
@pytest.mark.parametrize("short", ["SECRET_KEY", "JWT_SECRET_KEY"])
def test_a_key_too_short_to_keep_signatures_unforgeable_is_refused_at_start(tmp_path, short, database):
    """Customers receive links signed with SECRET_KEY and staff tokens signed with
    JWT_SECRET_KEY: a short key is found offline from one of them, then signs an
    admin's session. Refused on either database, in one line that names the key and
    never shows it; a key of the least length starts."""
    url = "postgresql://u@127.0.0.1:1/d" if database == "postgresql" else f"sqlite:///{tmp_path / 'x.db'}"
    env = {"SECRET_KEY": "s" * 32, "JWT_SECRET_KEY": "j" * 32, short: SHORT}
    complaint = refused_start(tmp_path, DATABASE_URL=url, **env)
    assert complaint.count("\n") == 1, complaint  # one line, no traceback
    assert short in complaint and "31 bytes" in complaint and SHORT not in complaint
    web = subprocess.run(
        [sys.executable, "-c", "import wsgi"],
        cwd=ROOT,
        env=dict(os.environ, DATABASE_URL=url, HELPDESK_INSTANCE_DIR=str(tmp_path / "instance"), **env),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert web.returncode == 3 and web.stderr.count("\n") == 1 and short in web.stderr, web.stderr
    env[short] = SHORT + "z"
    assert _run_app(tmp_path, DATABASE_URL=url, **env).returncode == 0


def test_a_short_key_written_into_the_instance_folder_by_hand_is_refused(tmp_path):
    folder = tmp_path / "instance"
    instance.secret(folder, "secret_key")
    (folder / "jwt_secret_key").write_text("changeme\n")
    done = _run_app(tmp_path, DATABASE_URL=f"sqlite:///{tmp_path / 'x.db'}", SECRET_KEY="", JWT_SECRET_KEY="")
    assert done.returncode != 0 and "JWT_SECRET_KEY is 8 bytes long" in done.stderr, done.stderr
    assert "changeme" not in done.stderr


def _run_app(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """Build the app as `wsgi` does, with `env` over the suite's environment."""
    return subprocess.run(
        [sys.executable, "-c", "from helpdesk import create_app; create_app()"],
        cwd=ROOT,
        env=dict(os.environ, HELPDESK_INSTANCE_DIR=str(tmp_path / "instance"), **env),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_gunicorn_stops_when_the_app_refuses_to_start(tmp_path):
    """A worker that cannot build the app must stop gunicorn, not be booted again for
    ever behind a master that holds the port (docs/operations.md)."""
    gunicorn = Path(sys.executable).with_name("gunicorn")
    server = subprocess.run(
        [str(gunicorn), "--bind", "127.0.0.1:0", "--workers", "1", "wsgi:app"],
        cwd=ROOT,
        env=dict(
            os.environ,
            DATABASE_URL="postgresql://u@127.0.0.1:1/d",
            HELPDESK_INSTANCE_DIR=str(tmp_path / "instance"),
            SECRET_KEY="a-key-for-every-host-" + "k" * 16,
            JWT_SECRET_KEY="",
        ),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert server.returncode != 0
    assert "JWT_SECRET_KEY" in server.stderr
    assert server.stderr.count("Booting worker") == 1, server.stderr
