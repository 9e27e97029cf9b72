"""A separate OS process running the outbound sender until the outbox is drained
(for test_outbound's two-process test)."""

from __future__ import annotations

from multiprocessing.synchronize import Barrier

from mailgateway.outbound import Sender


def drain(url: str, smtp_url: str, barrier: Barrier, results: "object") -> None:
    from tests.support.app import make_app

    app = make_app(url, OUTBOUND_SMTP_URL=smtp_url, OUTBOUND_BATCH_SIZE=10)
    sender = Sender(app)
    claimed_batches: list[int] = []
    barrier.wait()
    while True:
        claimed = sender.run_once()
        if not claimed:
            break
        claimed_batches.append(claimed)
    results.put(claimed_batches)  # type: ignore[attr-defined]
