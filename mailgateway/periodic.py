"""The lifecycle jobs in the gateway process: the SLA check and auto-close
(`helpdesk.services.lifecycle_jobs`) every `LIFECYCLE_JOBS_INTERVAL` (1 minute
by default; 0 turns them off here, for installs that run them from cron).

A thread in the runner's style: run both, each in its own transaction, then
wait for the interval or the stop signal. A failing run is
logged and retried at the next tick; it never stops the gateway. Several gateway
processes may run this at once: the jobs lock, so the work is done once.
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from flask import Flask
from sqlalchemy.exc import DBAPIError

from helpdesk.database import transaction
from helpdesk.extensions import db
from helpdesk.services import lifecycle_jobs

log = logging.getLogger("mailgateway.periodic")


class LifecycleJobs:
    def __init__(self, app: Flask, stopping: threading.Event | None = None) -> None:
        self.app = app
        self.stopping = stopping or threading.Event()
        self.interval = app.config["LIFECYCLE_JOBS_INTERVAL"].total_seconds()
        self.jobs: tuple[tuple[str, Callable[[], Any]], ...] = (
            ("sla-check", lambda: lifecycle_jobs.check_sla(db.session)),
            ("auto-close", lambda: lifecycle_jobs.auto_close(db.session, app.config)),
        )

    def run(self) -> None:
        """Run the jobs every interval until `stopping` is set; never raises."""
        if self.interval <= 0:
            log.info("lifecycle jobs off here: LIFECYCLE_JOBS_INTERVAL is 0")
            return
        log.info("lifecycle jobs every %g s", self.interval)
        while True:  # at once on start (a gateway restart catches up), then every interval
            self.run_once()
            if self.stopping.wait(self.interval):
                break
        log.info("lifecycle jobs stopped")

    def run_once(self) -> list[Any]:
        """Each job once, in its own transaction; returns the results that came back."""
        results = []
        with self.app.app_context():
            for name, job in self.jobs:
                try:
                    with transaction():
                        result = job()
                    results.append(result)
                    if result.ran and (getattr(result, "breaches", ()) or
                                       getattr(result, "closed", ())):
                        log.info("%s", result.summary())
                except DBAPIError as exc:
                    log.warning("%s: database unavailable, retrying later: %s", name,
                                exc.orig or exc)
                except Exception:  # a bug: keep the gateway alive, try again next tick
                    log.exception("%s: unexpected error", name)
                finally:
                    db.session.remove()
        return results
