"""Starts the gateway's pieces and stops them on SIGTERM/SIGINT.

For now the gateway only idles with the app built: the SMTP listener and the IMAP
poller land with the gateway issues. The loop is the shape they will plug into.
"""
from __future__ import annotations

import logging
import signal
import threading
from types import FrameType

from flask import Flask

log = logging.getLogger("mailgateway")


def run(app: Flask) -> None:
    stopping = threading.Event()

    def _stop(signum: int, _frame: FrameType | None) -> None:
        log.info("received %s, stopping", signal.Signals(signum).name)
        stopping.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    log.info(
        "gateway started for %s (database %s)",
        ", ".join(app.config["SUPPORT_ADDRESSES"]),
        app.config["SQLALCHEMY_DATABASE_URI"].split("://", 1)[0],
    )
    while not stopping.wait(1.0):
        pass
    log.info("gateway stopped")
