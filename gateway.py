"""The mail gateway entry point: builds the same app (same config, same database)
as `wsgi.py` and runs the gateway until SIGTERM or SIGINT."""
from __future__ import annotations

import logging

from helpdesk import create_app
from mailgateway.runner import run


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    # mail-parser warns about every multipart/alternative; the pipeline logs one line per mail.
    logging.getLogger("mailparser").setLevel(logging.ERROR)
    run(create_app())


if __name__ == "__main__":
    main()
