"""Starts the gateway's pieces and stops them on SIGTERM/SIGINT.

The loop is `while not stopping: wait()`, with the stop flag set by the signal
handler. The SMTP listener runs in its own thread (aiosmtpd's Controller); each
IMAP mailbox of `IMAP_URL` gets a poller thread, the outbound sender
(`outbound.Sender`, unless `OUTBOUND_SMTP_URL` is empty) one more, and the
lifecycle jobs (`periodic.LifecycleJobs`: SLA check and auto-close every
`LIFECYCLE_JOBS_INTERVAL`) another. On a stop signal the pollers finish the
message in hand (committed and moved, or left in place) and log out, the sender
finishes the mail in hand and hands the rest of its batch back to the outbox,
the jobs finish the run in hand, the listener stops after the mails in flight
were committed, and the process exits.
"""
from __future__ import annotations

import logging
import signal
import threading
from types import FrameType

from flask import Flask

from mailgateway.imap import ImapPoller, parse_imap_urls
from mailgateway.outbound import Sender
from mailgateway.periodic import LifecycleJobs
from mailgateway.smtp import SupportHandler, make_controller

log = logging.getLogger("mailgateway")


def run(app: Flask) -> None:
    stopping = threading.Event()

    def _stop(signum: int, _frame: FrameType | None) -> None:
        log.info("received %s, stopping", signal.Signals(signum).name)
        stopping.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
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
    try:
        stopping.wait()
    finally:
        stopping.set()
        for thread in threads:
            thread.join()
        controller.stop()
        handler.close()
        log.info("gateway stopped")
