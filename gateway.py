"""The mail gateway entry point: builds the same app (same config, same database)
as `wsgi.py` and runs the gateway — SMTP listener, IMAP pollers, the outbound
mail sender and the lifecycle jobs (`mailgateway.runner`) — until SIGTERM or SIGINT."""
from __future__ import annotations

import logging
import sys

from helpdesk import create_app
from mailgateway.serverurl import InvalidServerUrl
from mailgateway.runner import run


def main() -> None:
    # The ingest threads share one GIL. A thread holding the ticket counter's row lock
    # (from its numbering statement to its commit) must get the GIL back quickly, or
    # every other creation waits on the lock: switch threads every 1 ms, not 5 ms.
    sys.setswitchinterval(0.001)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    # mail-parser warns about every multipart/alternative; the pipeline logs one line per mail.
    logging.getLogger("mailparser").setLevel(logging.ERROR)
    # aiosmtpd logs every connection step; the pipeline's one line per mail is enough.
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    try:
        run(create_app())
    except InvalidServerUrl as exc:  # IMAP_URL or OUTBOUND_SMTP_URL
        sys.exit(f"gateway: {exc}")


if __name__ == "__main__":
    main()
