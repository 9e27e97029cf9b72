"""Starts the gateway's pieces and stops them on SIGTERM/SIGINT.

The main thread starts everything, then waits for SIGTERM/SIGINT with
`signal.sigwait` (the signals are blocked first, and every thread inherits the
block). No Python signal handler runs: a handler interrupts the main thread at any
bytecode, and one that logs or sets an Event can deadlock on a lock the
interrupted code holds, so a stop would hang.

The SMTP listener runs in its own thread (aiosmtpd's Controller); each IMAP mailbox of `IMAP_URL` gets a poller thread, the outbound sender
(`outbound.Sender`, unless `OUTBOUND_SMTP_URL` is empty) one more, and the
lifecycle jobs (`periodic.LifecycleJobs`: SLA check and auto-close every
`LIFECYCLE_JOBS_INTERVAL`) another. On a stop signal the pollers finish the
message in hand (committed and moved, or left in place) and log out, the sender
finishes the mail in hand and hands the rest of its batch back to the outbox,
the jobs finish the run in hand, the listener stops after the mails in flight
were committed, and the process exits.
"""
from __future__ import annotations

import faulthandler
import logging
import signal
import threading

from flask import Flask

from mailgateway.imap import ImapPoller, parse_imap_urls
from mailgateway.outbound import Sender
from mailgateway.periodic import LifecycleJobs
from mailgateway.smtp import SupportHandler, make_controller

log = logging.getLogger("mailgateway")


STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}

#: A stop that takes longer than this dumps every thread's stack to stderr, so a
#: hung shutdown says where it hangs (`kill -USR1` dumps them at any time).
SLOW_STOP_SECONDS = 10.0


def run(app: Flask) -> None:
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)  # before any thread starts
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    stopping = threading.Event()
    pollers = [ImapPoller(app, source, stopping)
               for source in parse_imap_urls(app.config["IMAP_URL"])]
    sender = Sender(app, stopping)
    handler = SupportHandler(app)
    controller = make_controller(app, handler)
    controller.start()
    threads = [threading.Thread(target=poller.run, name=f"imap-{index}")
               for index, poller in enumerate(pollers)]
    threads.append(threading.Thread(target=sender.run, name="outbound"))
    threads.append(threading.Thread(target=LifecycleJobs(app, stopping).run, name="lifecycle"))
    try:
        for thread in threads:
            thread.start()
        outbound = sender.server
        log.info(
            "gateway started for %s: SMTP on %s, IMAP %s, outbound %s (database %s)",
            ", ".join(app.config["SUPPORT_ADDRESSES"]), app.config["SMTP_LISTEN"],
            ", ".join(p.source.key for p in pollers) or "off",
            f"{outbound.host}:{outbound.port}" if outbound else "off",
            app.config["SQLALCHEMY_DATABASE_URI"].split("://", 1)[0],
        )
        received = signal.sigwait(STOP_SIGNALS)
        log.info("received %s, stopping", signal.Signals(received).name)
    finally:
        stopping.set()
        faulthandler.dump_traceback_later(SLOW_STOP_SECONDS)
        for thread in threads:
            if thread.ident is not None:
                thread.join()
        controller.stop()
        handler.close()
        faulthandler.cancel_dump_traceback_later()
        log.info("gateway stopped")
