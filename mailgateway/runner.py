"""Starts the gateway's pieces and stops them on SIGTERM/SIGINT.

The loop is `while not stopping: wait()`, with the stop flag set by the signal
handler; the SMTP listener runs in its own thread (aiosmtpd's Controller) and is
stopped before the process exits, after the mails in flight were committed.
"""
from __future__ import annotations

import logging
import signal
import threading
from types import FrameType

from flask import Flask

from mailgateway.smtp import SupportHandler, make_controller

log = logging.getLogger("mailgateway")


def run(app: Flask) -> None:
    stopping = threading.Event()

    def _stop(signum: int, _frame: FrameType | None) -> None:
        log.info("received %s, stopping", signal.Signals(signum).name)
        stopping.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    handler = SupportHandler(app)
    controller = make_controller(app, handler)
    controller.start()
    log.info(
        "gateway started for %s: SMTP on %s (database %s)",
        ", ".join(app.config["SUPPORT_ADDRESSES"]), app.config["SMTP_LISTEN"],
        app.config["SQLALCHEMY_DATABASE_URI"].split("://", 1)[0],
    )
    try:
        stopping.wait()
    finally:
        controller.stop()
        handler.close()
        log.info("gateway stopped")
