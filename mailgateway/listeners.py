"""More SMTP listener processes on the same port (`SMTP_PROCESSES`, SO_REUSEPORT).

Why processes: ingesting a mail is CPU work (parsing, the ORM, ~6 ms) and one
process runs it under one GIL, so threads cannot use a second core. The gateway
process runs one listener itself (beside the IMAP pollers, the sender and the
jobs) and starts `SMTP_PROCESSES - 1` of these (`python -m mailgateway.listeners`),
each building the same app from the same environment and running only a
listener; the kernel spreads new connections over the sockets. Every listener
still says `250` only after its commit, and numbering is the database's, so
nothing about the guarantees changes with the count.

Start: the gateway waits until each listener says it listens (a line on a pipe,
`--ready-fd`). One that cannot (its port taken, a setting it refuses) says why on
that pipe instead, and the gateway stops what it started and does not start, in
one line with the reason: it does not run with fewer listeners than
`SMTP_PROCESSES` asks for (docs/operations.md, "Configuration"). The listeners
not heard to listen by then are killed: their stop signals are blocked until
their loop takes them, so one hung in its start would outlive any SIGTERM.

Stop: the gateway sends SIGTERM and waits; each listener closes its socket,
answers the mails being stored (within `smtp.STOP_GRACE_SECONDS`) and exits. One
never heard to listen (a restart hung in its start) is killed instead.
A listener whose gateway died (kill -9) notices within a second
and stops the same way, so an orphan never keeps the port. A listener that dies is
restarted after a pause (1 s, doubling up to a minute while it keeps dying), and
answers on a pipe as at the start (the gateway logs why one cannot listen); the
connections it had not answered are dropped without a reply, so their senders
retry, and the other listeners take the new ones meanwhile. The gateway counts a
death against each mail it was storing as soon as it sees it exit (`smtp_takings`),
so a mail that kills listeners is quarantined after a few deaths.
"""

from __future__ import annotations

import argparse
import logging
import os
import select
import signal
import subprocess
import sys
import time
from dataclasses import dataclass

from config import ConfigurationError
from helpdesk import create_app
from mailgateway.process import configure_process, wait_for_stop_signal
from mailgateway.serverurl import InvalidServerUrl
from mailgateway.smtp import SupportHandler, make_controller, start_listening
from mailgateway.smtp_takings import SmtpTakings

log = logging.getLogger("mailgateway.listeners")

FIRST_PAUSE, LONGEST_PAUSE = 1.0, 60.0
#: How long the gateway waits at start for a listener to say it listens (building
#: the app takes a second or two; a loaded machine, more).
READY_SECONDS = 60.0
_LISTENING = "listening"
_MAX_ANSWER = 4096  # bytes of a listener's answer read; its reason is one line


@dataclass
class _Listener:
    process: subprocess.Popen[bytes]
    started: float
    pause: float = FIRST_PAUSE
    restart_at: float | None = None
    terminated: bool = False
    #: It said it listens (at the start, or since its restart); one that has not by
    #: the gateway's stop is killed, since its stop signals wait for its loop.
    listening: bool = False
    #: The pipe a restarted listener answers on, until it answered (`_hear`).
    ready: int | None = None


class ListenerProcesses:
    """The extra listeners of one gateway process: start, restart, stop."""

    def __init__(self, count: int, takings: SmtpTakings | None = None) -> None:
        self.count = count
        self.listeners: list[_Listener] = []
        # The gateway's own: the deaths of a listener that exits are counted at once,
        # before the mails it was storing are retried on another listener.
        self.takings = takings

    def start(self) -> None:
        """Start the listeners and wait until each listens. ConfigurationError, one
        line, when one cannot; the caller stops those started (`terminate`, `stop`)."""
        pipes: list[int] = []
        try:
            for _ in range(self.count):
                read, write = os.pipe()
                pipes.append(read)
                try:
                    process = self._spawn(ready_fd=write)
                finally:
                    os.close(write)
                self.listeners.append(_Listener(process, time.monotonic()))
            deadline = time.monotonic() + READY_SECONDS
            for number, (listener, read) in enumerate(zip(self.listeners, pipes, strict=True), start=2):
                answer = _answer(read, deadline)
                listener.listening = answer == _LISTENING
                if not listener.listening:
                    code = _exit_code(listener.process)
                    reason = answer or (
                        f"exited with code {code}"
                        if code is not None
                        else f"not listening after {READY_SECONDS:g} s"
                    )
                    _kill(self.listeners[number - 2 :])
                    raise ConfigurationError(f"{reason} (SMTP listener process {number} of {self.count + 1})")
        finally:
            for read in pipes:
                os.close(read)

    def _spawn(self, ready_fd: int) -> subprocess.Popen[bytes]:
        command = [sys.executable, "-m", "mailgateway.listeners", "--parent", str(os.getpid())]
        return subprocess.Popen([*command, "--ready-fd", str(ready_fd)], pass_fds=(ready_fd,))

    def watch(self) -> None:
        """Restart listeners that died, pausing longer while they keep dying."""
        moment = time.monotonic()
        for listener in self.listeners:
            _hear(listener)
            code = listener.process.poll()
            if code is None:
                continue
            if listener.restart_at is None:
                if self.takings is not None:
                    self.takings.adopt()
                if moment - listener.started > LONGEST_PAUSE:
                    listener.pause = FIRST_PAUSE
                log.error(
                    "SMTP listener process %d exited with code %s; restarting in %g s",
                    listener.process.pid,
                    code,
                    listener.pause,
                )
                listener.restart_at = moment + listener.pause
                listener.pause = min(listener.pause * 2, LONGEST_PAUSE)
            elif moment >= listener.restart_at:
                _hear(listener, closing=True)
                read, write = os.pipe()
                try:
                    listener.process = self._spawn(ready_fd=write)
                finally:
                    os.close(write)
                listener.started, listener.restart_at = moment, None
                listener.listening, listener.ready = False, read

    def terminate(self) -> None:
        """SIGTERM to every listener (once), which closes its socket and answers its mails."""
        for listener in self.listeners:
            if not listener.terminated and listener.process.poll() is None:
                listener.process.send_signal(signal.SIGTERM)
                listener.terminated = True

    def stop(self) -> None:
        """SIGTERM to every listener, then wait for each to finish its mails; one
        never heard to listen (hung in its start since a restart) is killed."""
        self.terminate()
        for listener in self.listeners:
            _hear(listener, closing=True)
            if not listener.listening:
                _kill([listener])
            listener.process.wait()


def _answer(read: int, deadline: float) -> str:
    """What a listener wrote on its pipe until it closed it (`_LISTENING`, or why
    it cannot listen), "" when it wrote nothing before `deadline` or before dying."""
    data = b""
    while len(data) < _MAX_ANSWER and (left := deadline - time.monotonic()) > 0:
        if not select.select([read], [], [], left)[0]:
            break
        chunk = os.read(read, _MAX_ANSWER - len(data))
        if not chunk:
            break
        data += chunk
    return data.decode(errors="replace").strip()


def _hear(listener: _Listener, closing: bool = False) -> None:
    """Read a restarted listener's answer if it gave one (never waiting): it
    listens, or why it cannot, logged as the gateway's own listener says it. The
    listener writes its one line at once and closes the pipe. `closing`: close the
    pipe whatever it holds (a restart again, the stop)."""
    if listener.ready is None:
        return
    if select.select([listener.ready], [], [], 0)[0]:
        said = os.read(listener.ready, _MAX_ANSWER).decode(errors="replace").strip()
        if said == _LISTENING:
            listener.listening = True
        elif said:
            log.error("gateway listener: %s (SMTP listener process %d)", said, listener.process.pid)
        closing = True
    if closing:
        os.close(listener.ready)
        listener.ready = None


def _kill(unheard: list[_Listener]) -> None:
    """Kill listeners never heard to listen: when the start gives up, and at the stop
    one restarted since. Their stop signals are blocked from their first line
    (`configure_process`) until their loop takes them, so one hung before it would
    never end on SIGTERM, and the gateway's stop would wait on it for ever
    (docs/operations.md, "Configuration"). A mail one took before it could say it
    listens loses its session, and its sender retries, as when a listener dies."""
    for listener in unheard:
        if listener.process.poll() is None:
            listener.process.kill()
        listener.process.wait()
        listener.terminated = True


def _exit_code(process: subprocess.Popen[bytes]) -> int | None:
    """The code a listener that closed its pipe without a word exited with (it may
    take a moment to be gone), None while it runs on."""
    try:
        return process.wait(timeout=1)
    except subprocess.TimeoutExpired:
        return None


def _say(ready_fd: int | None, line: str) -> None:
    """Tell the gateway waiting on `--ready-fd`, if one is, that this listener
    listens or why it cannot; a gateway gone meanwhile hears nothing."""
    if ready_fd is None:
        return
    try:
        os.write(ready_fd, line.encode() + b"\n")
    except OSError:  # the gateway is gone (EPIPE): the parent check below stops this one
        pass
    os.close(ready_fd)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="One more SMTP listener of a gateway.")
    parser.add_argument(
        "--parent",
        type=int,
        required=True,
        help="the gateway's process id; the listener stops when it is gone",
    )
    parser.add_argument(
        "--ready-fd",
        type=int,
        help="a pipe to say on that it listens, or why it cannot (the gateway waits for it)",
    )
    arguments = parser.parse_args(argv)
    parent, ready_fd = arguments.parent, arguments.ready_fd
    configure_process()
    try:
        app = create_app()
        handler = SupportHandler(app)
        controller = make_controller(app, handler, reuse_port=True)
        start_listening(controller, handler, app.config["SMTP_LISTEN"])
    except (InvalidServerUrl, ConfigurationError) as exc:  # as gateway.py answers them: one line
        if ready_fd is None:
            sys.exit(f"gateway listener: {exc}")
        _say(ready_fd, str(exc))  # the gateway says it
        sys.exit(1)
    _say(ready_fd, _LISTENING)
    log.info("SMTP listener process on %s", app.config["SMTP_LISTEN"])
    try:
        while (received := wait_for_stop_signal(1.0)) is None:
            if os.getppid() != parent:
                log.warning("the gateway process %d is gone; stopping", parent)
                break
        else:
            log.info("received %s, stopping", received.name)
    finally:
        handler.takings.stopping()  # a kill from now on is the stop's, no mail's death
        controller.stop()
        handler.close()
        log.info("SMTP listener process stopped")


if __name__ == "__main__":
    main()
