"""What every gateway process sets up before it starts work: logging, the GIL
switch interval, and the stop signals blocked (waited for with
`wait_for_stop_signal`)."""

from __future__ import annotations

import faulthandler
import logging
import signal
import sys

STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}


def configure_process() -> None:
    # The ingest threads share one GIL. A thread holding the ticket counter's row lock
    # (from its numbering statement to its commit) must get the GIL back quickly, or
    # every other creation waits on the lock: switch threads every 1 ms, not 5 ms.
    sys.setswitchinterval(0.001)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(process)d %(name)s %(levelname)s %(message)s"
    )
    # mail-parser warns about every multipart/alternative; the pipeline logs one line per mail.
    logging.getLogger("mailparser").setLevel(logging.ERROR)
    # aiosmtpd logs every connection step; the pipeline's one line per mail is enough.
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    # Blocked before any thread starts, so every thread inherits the block and the
    # signals wait for `sigwait`. A Python signal handler would interrupt the main
    # thread at any bytecode, and one that logs or sets an Event can deadlock on a
    # lock the interrupted code holds.
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    # A process that seems stuck tells where: `kill -USR1 <pid>` dumps every stack.
    faulthandler.register(signal.SIGUSR1, all_threads=True)


def wait_for_stop_signal(seconds: float) -> signal.Signals | None:
    """The stop signal that arrived within `seconds`, or None.

    A process paused longer than `seconds` (SIGSTOP, Ctrl-Z, a paused container or
    machine) and resumed gets from CPython 3.11's `sigtimedwait` a record of
    uninitialised memory instead of None; taken for a stop signal, it shut the
    gateway down. So only a record naming a stop signal counts (docs/mail-gateway.md).
    """
    received = signal.sigtimedwait(STOP_SIGNALS, seconds)
    if received is None or received.si_signo not in STOP_SIGNALS:
        return None
    return signal.Signals(received.si_signo)
