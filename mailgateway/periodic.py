"""The lifecycle jobs in the gateway process: the SLA check and auto-close
(`helpdesk.services.lifecycle_jobs`), and deleting the API's spent idempotency
keys (`helpdesk.services.idempotency`), the assistant's spent call ids
(`helpdesk.services.assistant.sweep_calls`) and the API's expired token revocations
(`helpdesk.services.revoked_tokens`), every `LIFECYCLE_JOBS_INTERVAL` (1 minute
by default; 0 turns them off here, for installs that run them from cron).

A `Loop`: run each in its own transaction, at once on start (a gateway
restart catches up) and then every interval. A failing job is logged and retried
at the next tick; it never stops the other job or the gateway. Several gateway
processes may run this at once: the jobs lock, so the work is done once.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from flask import Flask
from sqlalchemy.exc import DBAPIError

from helpdesk.database import is_transient, transaction
from helpdesk.extensions import db
from helpdesk.services import assistant, idempotency, lifecycle_jobs, revoked_tokens
from mailgateway.loop import Loop

log = logging.getLogger("mailgateway.periodic")


class LifecycleJobs(Loop):
    name = "lifecycle jobs"

    def __init__(self, app: Flask, stopping: threading.Event | None = None) -> None:
        super().__init__(stopping, idle_seconds=app.config["LIFECYCLE_JOBS_INTERVAL"].total_seconds())
        self.app = app
        self.jobs: tuple[tuple[str, Callable[[], Any]], ...] = (
            ("sla-check", lambda: lifecycle_jobs.check_sla(db.session, app.config)),
            ("auto-close", lambda: lifecycle_jobs.auto_close(db.session, app.config)),
            (
                "idempotency-keys",
                lambda: idempotency.sweep(db.session, app.config["IDEMPOTENCY_KEY_LIFETIME"]),
            ),
            ("assistant-calls", lambda: assistant.sweep_calls(db.session)),
            ("revoked-tokens", lambda: revoked_tokens.sweep(db.session, app.config)),
        )

    def off(self) -> str | None:
        return "LIFECYCLE_JOBS_INTERVAL is 0" if self.idle_seconds <= 0 else None

    def started(self) -> None:
        log.info("lifecycle jobs every %g s", self.idle_seconds)

    def round(self) -> bool:
        self.run_once()
        return False

    def run_once(self) -> list[Any]:
        """Each job once, in its own transaction; returns the results that came back."""
        results = []
        with self.app.app_context():
            for name, job in self.jobs:
                try:
                    with transaction():
                        result = job()
                    results.append(result)
                    done = ("breaches", "closed", "deleted")
                    if result.ran and any(getattr(result, name, None) for name in done):
                        log.info("%s", result.summary())
                except DBAPIError as exc:
                    if not is_transient(exc):  # a schema behind the code, a bug
                        log.exception("%s: the database refused the job", name)
                    else:
                        log.warning("%s: database unavailable, retrying later: %s", name, exc.orig or exc)
                except Exception:  # a bug: keep the gateway alive, try again next tick
                    log.exception("%s: unexpected error", name)
                finally:
                    db.session.remove()  # type: ignore[attr-defined]  # the scoped session's
        return results
