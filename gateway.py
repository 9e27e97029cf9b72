"""The mail gateway entry point: builds the same app (same config, same database)
as `wsgi.py` and runs the gateway — SMTP listeners, IMAP pollers, the outbound
mail sender and the lifecycle jobs (`mailgateway.runner`) — until SIGTERM or SIGINT.
`python gateway.py --check` asks a running gateway whether its work gets done
(`mailgateway.health`): one line per part, exit status 0 when all are healthy."""

from __future__ import annotations

import argparse
import sys

from helpdesk import create_app
from helpdesk.instance import ConfigurationError
from mailgateway import health
from mailgateway.process import configure_process
from mailgateway.runner import run
from mailgateway.serverurl import InvalidServerUrl


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="report the gateway's health and exit")
    arguments = parser.parse_args()
    try:
        if arguments.check:
            sys.exit(check())
        configure_process()
        run(create_app())
    except (InvalidServerUrl, ConfigurationError) as exc:  # IMAP_URL, OUTBOUND_SMTP_URL, secrets
        sys.exit(f"gateway: {exc}")


def check() -> int:
    report = health.check(create_app())
    for finding in report:
        print(finding.line())
    return 0 if all(finding.healthy for finding in report) else 1


if __name__ == "__main__":
    main()
