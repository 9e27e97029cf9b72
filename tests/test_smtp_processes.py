"""SMTP_PROCESSES: several listener processes share the port (SO_REUSEPORT), every
mail still gets one gap-free number, a dead listener is restarted, and a listener
whose gateway died stops instead of keeping the port."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import select

from config import ConfigurationError
from helpdesk.extensions import db
from helpdesk.models import Ticket
from helpdesk.services.senders import SendersService
from tests.support.gateway_process import start
from tests.support.mail import message, send
from tests.support.pgserver import free_port
from tests.support.waiting import wait_until

ROOT = Path(__file__).resolve().parents[1]


def wait_for(log: list[str], predicate: Callable[[list[str]], bool], what: str, seconds: float = 30) -> None:
    """Wait until the gateway's log satisfies predicate; on failure show the log."""
    wait_until(lambda: predicate(log), timeout=seconds, what=lambda: f"{what}:\n" + "".join(log))


def pids(log: list[str], pattern: str) -> list[int]:
    """The process ids (second field of the log format) of the lines matching pattern."""
    return [int(line.split()[2]) for line in list(log) if re.search(pattern, line)]


def listeners_up(count: int) -> Callable[[list[str]], bool]:
    return lambda log: len(pids(log, "SMTP listener process on")) >= count


def authorize_example_com() -> None:
    SendersService(db.session).add("@example.com", "Example Ltd")
    db.session.commit()
    db.session.remove()


def test_listener_processes_share_the_port_and_the_numbering(app, database_url, tmp_path):
    authorize_example_com()
    port, log = free_port(), []
    process = start(database_url, port, tmp_path, log, SMTP_PROCESSES="3")
    replies: list[tuple[int, bytes]] = []
    try:
        assert "SMTP on 127.0.0.1:%d (3 processes)" % port in "".join(log)
        wait_for(log, listeners_up(2), "two more listener processes")

        def client(index: int) -> None:
            for n in range(5):
                replies.append(
                    send(
                        port,
                        message(
                            sender=f"user{index}@example.com", message_id=f"<p-{index}-{n}@client.example>"
                        ),
                    )
                )

        threads = [threading.Thread(target=client, args=(i,)) for i in range(12)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=30)
    assert code == 0
    wait_for(
        log,
        lambda lines: len(pids(lines, "SMTP listener process stopped")) == 2,
        "stop of both listener processes",
    )
    assert [c for c, _ in replies] == [250] * 60
    served_by = set(pids(log, r"helpdesk\.inbound\.ingest INFO mail p-"))
    assert len(served_by) >= 2, "the kernel should spread 60 connections over 3 processes"
    assert served_by <= {process.pid, *pids(log, "SMTP listener process on")}
    db.session.expire_all()
    numbers = db.session.execute(select(Ticket.number).order_by(Ticket.number)).scalars().all()
    assert numbers == list(range(1, 61))


def test_dead_listener_is_restarted_and_an_orphan_stops(app, database_url, tmp_path):
    authorize_example_com()
    port, log = free_port(), []
    process = start(database_url, port, tmp_path, log, SMTP_PROCESSES="2")
    try:
        wait_for(log, listeners_up(1), "the second listener process")
        [first] = pids(log, "SMTP listener process on")
        os.kill(first, signal.SIGKILL)
        wait_for(log, listeners_up(2), "a restarted listener process")
        assert any(f"SMTP listener process {first} exited with code -9; restarting" in line for line in log)
        second = pids(log, "SMTP listener process on")[-1]
        assert second != first
        for n in range(6):  # served whichever process the kernel picks
            reply = send(port, message(sender="ann@example.com", message_id=f"<r-{n}@c.example>"))
            assert reply[0] == 250, reply
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
    wait_for(
        log,
        lambda lines: second in pids(lines, "SMTP listener process stopped"),
        "the orphaned listener's stop",
        seconds=15,
    )
    assert any(f"the gateway process {process.pid} is gone; stopping" in line for line in log)
    db.session.expire_all()
    numbers = db.session.execute(select(Ticket.number).order_by(Ticket.number)).scalars().all()
    assert numbers == list(range(1, 7))


def test_a_gateway_paused_and_resumed_keeps_serving(app, database_url, tmp_path):
    """Paused longer than its one-second wait for a stop signal (SIGSTOP, Ctrl-Z, a
    paused container) and resumed, the gateway and its listener process got a
    record of garbage from CPython's `sigtimedwait`, took it for a stop signal and
    died of it (exit 1). Resumed, both keep serving and stop on SIGTERM alone."""
    authorize_example_com()
    port, log = free_port(), []
    process = start(database_url, port, tmp_path, log, SMTP_PROCESSES="2")
    try:
        wait_for(log, listeners_up(1), "the second listener process")
        [listener] = pids(log, "SMTP listener process on")
        for pid in (process.pid, listener):
            os.kill(pid, signal.SIGSTOP)
        time.sleep(1.5)
        for pid in (process.pid, listener):
            os.kill(pid, signal.SIGCONT)
        time.sleep(1.5)  # each wait loop has come round at least once
        assert process.poll() is None, "".join(log)
        assert not pids(log, "SMTP listener process stopped|exited with code"), "".join(log)
        for n in range(4):  # served whichever process the kernel picks
            reply = send(port, message(sender="ann@example.com", message_id=f"<z-{n}@c.example>"))
            assert reply[0] == 250, reply
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=30)
    assert code == 0, "".join(log)
    wait_for(
        log,
        lambda lines: listener in pids(lines, "SMTP listener process stopped"),
        "the listener's stop",
    )
    assert any(" received SIGTERM, stopping" in line for line in log if f" {listener} " in line)


def _listener_environment(tmp_path: Path, listen: str) -> dict[str, str]:
    """What a listener process needs to build its app: no database is reached
    before it binds, so the instance folder's own SQLite and secrets do."""
    environment = {
        k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "SECRET_KEY", "JWT_SECRET_KEY")
    }
    environment.update(HELPDESK_INSTANCE_DIR=str(tmp_path / "instance"), SMTP_LISTEN=listen)
    return environment


def test_a_listener_process_that_cannot_bind_says_so_in_one_line(tmp_path):
    """The gateway's own listener said "SMTP_LISTEN …: address already in use" in
    one line; a listener process said it with a traceback."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        listen = f"127.0.0.1:{taken.getsockname()[1]}"
        result = subprocess.run(
            [sys.executable, "-m", "mailgateway.listeners", "--parent", str(os.getpid())],
            cwd=ROOT,
            env=_listener_environment(tmp_path, listen),
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert re.fullmatch(f"gateway listener: SMTP_LISTEN {listen}: .*address already in use\n", result.stderr)


def test_a_gateway_whose_listener_process_cannot_bind_does_not_start(app, tmp_path, monkeypatch):
    """A listener process that could not bind died, was restarted every minute and
    died again, while the gateway ran on with fewer listeners than SMTP_PROCESSES
    and said nothing but "exited with code 1". Now the gateway waits for each to
    listen and, when one cannot, stops what it started and refuses to start, in one
    line naming the reason. (The listener processes read SMTP_LISTEN from the
    environment; here it names a port another socket holds, while the gateway's own
    listener takes a free one.)"""
    from mailgateway import runner

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        held = f"127.0.0.1:{taken.getsockname()[1]}"
        for name, value in _listener_environment(tmp_path, held).items():
            monkeypatch.setenv(name, value)
        for name in ("DATABASE_URL", "SECRET_KEY", "JWT_SECRET_KEY"):
            monkeypatch.delenv(name, raising=False)
        own = free_port()
        app.config.update(SMTP_LISTEN=f"127.0.0.1:{own}", SMTP_PROCESSES=2, IMAP_URL="", OUTBOUND_SMTP_URL="")
        refused: list[str] = []

        def gateway() -> None:
            with pytest.raises(ConfigurationError) as raised:
                runner.run(app)
            refused.append(str(raised.value))

        thread = threading.Thread(target=gateway, daemon=True)
        thread.start()
        thread.join(timeout=30)
        assert not thread.is_alive(), "the gateway runs on with one SMTP listener of two"
    assert len(refused) == 1
    assert re.fullmatch(
        f"SMTP_LISTEN {held}: .*address already in use \\(SMTP listener process 2 of 2\\)", refused[0]
    )
    with socket.socket() as again:  # the listener the gateway had started is closed
        again.bind(("127.0.0.1", own))


def test_a_listener_process_hung_before_it_listens_is_killed_and_the_gateway_refuses(monkeypatch):
    """A listener that hangs before it listens (here right after `configure_process`,
    as `listeners.main` begins) has its SIGTERM blocked until its loop takes it: the
    start said "not listening after 60 s", and then the gateway's stop of what it had
    started waited on that process for ever. Now a listener not heard to listen is
    killed when the start gives up (docs/operations.md, "Configuration")."""
    from mailgateway import listeners

    hang = (
        "from mailgateway.process import configure_process; configure_process(); import time; time.sleep(600)"
    )

    def spawn(self: listeners.ListenerProcesses, ready_fd: int | None = None) -> subprocess.Popen[bytes]:
        fds = (ready_fd,) if ready_fd is not None else ()
        return subprocess.Popen([sys.executable, "-c", hang], cwd=ROOT, pass_fds=fds)

    monkeypatch.setattr(listeners, "READY_SECONDS", 0.5)
    monkeypatch.setattr(listeners.ListenerProcesses, "_spawn", spawn)
    started = listeners.ListenerProcesses(1)
    try:
        refused = r"not listening after 0.5 s \(SMTP listener process 2 of 2\)"
        with pytest.raises(ConfigurationError, match=refused):
            started.start()
        started.terminate()  # as the gateway's stop does (mailgateway/runner.py)
        stopping = threading.Thread(target=started.stop, daemon=True)
        stopping.start()
        stopping.join(timeout=5)
        assert not stopping.is_alive(), "the gateway waits for ever on a listener that never listened"
    finally:
        for listener in started.listeners:
            listener.process.kill()
            listener.process.wait()


def test_a_listener_restarted_after_a_death_and_hung_in_its_start_does_not_hold_the_stop(
    monkeypatch, tmp_path
):
    """The same hang in a listener restarted after a later death: nobody waited for
    it to listen, and the gateway's stop waited on it for ever (until the init
    system killed the gateway). A restart answers on a pipe too, and one not heard
    to listen by the stop is killed; a restart that cannot listen is logged."""
    from mailgateway import listeners

    scripts = [
        "import os, sys; os.write(int(sys.argv[1]), b'listening'); sys.exit(3)",  # listens, then dies
        "import os, sys; os.write(int(sys.argv[1]), b'SMTP_LISTEN x: refused'); sys.exit(1)",
        "from mailgateway.process import configure_process; configure_process(); "
        "import sys, time; open(sys.argv[2], 'w').close(); time.sleep(600)",  # hangs in its start
    ]

    spawned: list[int] = []
    hung = tmp_path / "hung"  # made once the hung one's stop signals are blocked

    def spawn(self: listeners.ListenerProcesses, ready_fd: int | None = None) -> subprocess.Popen[bytes]:
        script = scripts.pop(0)
        if ready_fd is None:  # the code before: a restart had no pipe
            script, ready_fd = script.replace("os.write(int(sys.argv[1]), ", "print("), 2
        command = [sys.executable, "-c", script, str(ready_fd), str(hung)]
        process = subprocess.Popen(command, cwd=ROOT, pass_fds=(ready_fd,))
        spawned.append(process.pid)
        return process

    monkeypatch.setattr(listeners.ListenerProcesses, "_spawn", spawn)
    started = listeners.ListenerProcesses(1)
    try:
        started.start()
        [listener] = started.listeners
        listener.pause = 0.05
        errors: list[str] = []
        monkeypatch.setattr(listeners.log, "error", lambda text, *args: errors.append(text % args))
        wait_until(lambda: started.watch() or hung.exists(), timeout=20, what="two restarts, the last hung")
        started.terminate()
        stopping = threading.Thread(target=started.stop, daemon=True)
        stopping.start()
        stopping.join(timeout=5)
        assert not stopping.is_alive(), "the gateway's stop waits for ever on a restart hung in its start"
        said = [line for line in errors if line.startswith("gateway listener")]
        assert said == ["gateway listener: SMTP_LISTEN x: refused (SMTP listener process %d)" % spawned[1]]
    finally:
        for listener in started.listeners:
            listener.process.kill()
            listener.process.wait()
