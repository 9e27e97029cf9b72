"""A benchmark's SMTP listener on a free loopback port: the settings the listener
benchmarks share. Imports nothing of the project's, so a benchmark comparing
checkouts can import the listener itself from the one it measures
(`bench.smtp_session_bench`)."""

from __future__ import annotations

from typing import Any

from tests.support.pgserver import free_port

MAX_BYTES = 25 * 1024 * 1024  # room for the realistic mix's largest mail


def start(controller_class: Any, handler: Any, **kwargs: Any) -> Any:
    """A started `controller_class` (an aiosmtpd Controller) serving `handler`."""
    controller = controller_class(
        handler,
        hostname="127.0.0.1",
        port=free_port(),
        server_hostname="bench.test",
        data_size_limit=MAX_BYTES,
        decode_data=False,
        **kwargs,
    )
    controller.start()
    return controller
