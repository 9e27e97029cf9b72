"""The web entry point: `gunicorn wsgi:app`, `flask --app wsgi …`."""

import sys

from helpdesk import create_app
from helpdesk.instance import ConfigurationError

# gunicorn halts when a worker exits with this code (its WORKER_BOOT_ERROR); with any
# other it boots a new worker at once, for ever, while the master keeps the port and
# requests hang (docs/operations.md).
BOOT_ERROR = 3

try:
    app = create_app()
except ConfigurationError as exc:  # one line for the operator, not a traceback
    print(f"helpdesk: {exc}", file=sys.stderr)
    sys.exit(BOOT_ERROR)
