"""A separate OS process that runs the SLA check (for test_lifecycle_jobs): both
processes start together at a barrier and run the check a few times each, so their
runs overlap; each reports the breaches its runs marked."""

from __future__ import annotations

from multiprocessing.synchronize import Barrier

from helpdesk.extensions import db
from helpdesk.services.lifecycle_jobs import check_sla

TICKETS = 60
RUNS = 3


def check(url: str, barrier: Barrier, results: "object") -> None:
    from tests.support.app import make_app

    app = make_app(url)
    marked: list[tuple[int, str]] = []
    with app.app_context():
        db.session.execute(db.select(1))  # connect before the race starts
        db.session.rollback()
        barrier.wait()
        for _ in range(RUNS):
            result = check_sla(db.session, app.config)
            db.session.commit()
            marked.extend((breach.ticket_id, breach.target) for breach in result.breaches)
        db.session.remove()
        db.engine.dispose()
    results.put(marked)  # type: ignore[attr-defined]
