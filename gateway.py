"""The mail gateway entry point: builds the same app (same config, same database)
as `wsgi.py` and runs the gateway — SMTP listeners, IMAP pollers, the outbound
mail sender and the lifecycle jobs (`mailgateway.runner`) — until SIGTERM or SIGINT."""

from __future__ import annotations

import sys

from helpdesk import create_app
from helpdesk.instance import ConfigurationError
from mailgateway.process import configure_process
from mailgateway.runner import run
from mailgateway.serverurl import InvalidServerUrl


def main() -> None:
    configure_process()
    try:
        run(create_app())
    except (InvalidServerUrl, ConfigurationError) as exc:  # IMAP_URL, OUTBOUND_SMTP_URL, secrets
        sys.exit(f"gateway: {exc}")


if __name__ == "__main__":
    main()
