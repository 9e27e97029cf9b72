"""A separate OS process that opens tickets from several threads (for test_concurrency).

Every `fail_every`-th creation raises after its number was taken, inside the
transaction, to prove that a rolled-back creation leaves no gap.
"""

from __future__ import annotations

import threading
from multiprocessing.synchronize import Barrier

from helpdesk.extensions import db
from helpdesk.services import Actor, TicketsService


class ForcedFailure(Exception):
    pass


def run(
    url: str,
    channel: str,
    threads: int,
    per_thread: int,
    fail_every: int,
    barrier: Barrier,
    results: "object",
) -> None:
    from tests.support.app import make_app

    app = make_app(url)
    committed: list[int] = []
    failed: list[int] = []
    lock = threading.Lock()

    def work(index: int) -> None:
        with app.app_context():
            service = TicketsService.from_config(db.session, app.config)
            barrier.wait()
            for i in range(per_thread):
                try:
                    ticket = service.open_ticket(
                        subject=f"{channel} thread {index} #{i}",
                        description="load",
                        requester_email=f"{channel}{index}@example.com",
                        channel=channel,
                        actor=Actor.system(channel),
                        is_email_originated=channel == "email",
                    )
                    assert ticket.number is not None
                    if (i + index) % fail_every == fail_every - 1:
                        raise ForcedFailure(ticket.number)
                    db.session.commit()
                    with lock:
                        committed.append(ticket.number)
                except ForcedFailure as exc:
                    db.session.rollback()
                    with lock:
                        failed.append(exc.args[0])
            db.session.remove()

    workers = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    results.put((channel, committed, failed))  # type: ignore[attr-defined]
