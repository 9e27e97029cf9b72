"""More SMTP listener processes on the same port (`SMTP_PROCESSES`, SO_REUSEPORT).

Why processes: ingesting a mail is CPU work (parsing, the ORM, ~6 ms) and one
process runs it under one GIL, so threads cannot use a second core. The gateway
process runs one listener itself (beside the IMAP pollers, the sender and the
jobs) and starts `SMTP_PROCESSES - 1` of these (`python -m mailgateway.listeners`),
each building the same app from the same environment and running only a
listener; the kernel spreads new connections over the sockets. Every listener
still says `250` only after its commit, and numbering is the database's, so
nothing about the guarantees changes with the count.

Stop: the gateway sends SIGTERM and waits; each listener closes its socket,
answers the mails being stored (within `smtp.STOP_GRACE_SECONDS`) and exits.
A listener whose gateway died (kill -9) notices within a second
and stops the same way, so an orphan never keeps the port. A listener that dies is
restarted after a pause (1 s, doubling up to a minute while it keeps dying); the
connections it had not answered are dropped without a reply, so their senders
retry, and the other listeners take the new ones meanwhile.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass

from helpdesk import create_app
from mailgateway.process import configure_process, wait_for_stop_signal
from mailgateway.smtp import SupportHandler, make_controller

log = logging.getLogger("mailgateway.listeners")

FIRST_PAUSE, LONGEST_PAUSE = 1.0, 60.0


@dataclass
class _Listener:
    process: subprocess.Popen[bytes]
    started: float
    pause: float = FIRST_PAUSE
    restart_at: float | None = None
    terminated: bool = False


class ListenerProcesses:
    """The extra listeners of one gateway process: start, restart, stop."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.listeners: list[_Listener] = []

    def start(self) -> None:
        self.listeners = [_Listener(self._spawn(), time.monotonic()) for _ in range(self.count)]

    def _spawn(self) -> subprocess.Popen[bytes]:
        return subprocess.Popen([sys.executable, "-m", "mailgateway.listeners", "--parent", str(os.getpid())])

    def watch(self) -> None:
        """Restart listeners that died, pausing longer while they keep dying."""
        moment = time.monotonic()
        for listener in self.listeners:
            code = listener.process.poll()
            if code is None:
                continue
            if listener.restart_at is None:
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
                listener.process, listener.started = self._spawn(), moment
                listener.restart_at = None

    def terminate(self) -> None:
        """SIGTERM to every listener (once), which closes its socket and answers its mails."""
        for listener in self.listeners:
            if not listener.terminated and listener.process.poll() is None:
                listener.process.send_signal(signal.SIGTERM)
                listener.terminated = True

    def stop(self) -> None:
        """SIGTERM to every listener, then wait for each to finish its mails."""
        self.terminate()
        for listener in self.listeners:
            listener.process.wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="One more SMTP listener of a gateway.")
    parser.add_argument(
        "--parent",
        type=int,
        required=True,
        help="the gateway's process id; the listener stops when it is gone",
    )
    parent = parser.parse_args(argv).parent
    configure_process()
    app = create_app()
    handler = SupportHandler(app)
    controller = make_controller(app, handler, reuse_port=True)
    controller.start()
    log.info("SMTP listener process on %s", app.config["SMTP_LISTEN"])
    try:
        while (received := wait_for_stop_signal(1.0)) is None:
            if os.getppid() != parent:
                log.warning("the gateway process %d is gone; stopping", parent)
                break
        else:
            log.info("received %s, stopping", received.name)
    finally:
        controller.stop()
        handler.close()
        log.info("SMTP listener process stopped")


if __name__ == "__main__":
    main()
