"""The web entry point: `gunicorn wsgi:app`, `flask --app wsgi …`."""

import sys

from helpdesk import create_app
from helpdesk.instance import ConfigurationError

try:
    app = create_app()
except ConfigurationError as exc:  # one line for the operator, not a traceback
    sys.exit(f"helpdesk: {exc}")
