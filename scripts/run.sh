#!/usr/bin/env bash
# `make run`: migrate the database, make sure an admin exists (printed once), then run
# the portal (gunicorn) and the gateway in the foreground; Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}

"$VENV/bin/flask" --app wsgi db upgrade
"$VENV/bin/flask" --app wsgi create-first-admin

"$VENV/bin/gunicorn" --bind "${WEB_LISTEN:-127.0.0.1:5000}" --workers "${WEB_WORKERS:-2}" \
    --access-logfile - --logger-class helpdesk.access_log.AccessLog wsgi:app &
web=$!
"$VENV/bin/python" gateway.py &
gateway=$!

stop() { kill -TERM "$web" "$gateway" 2>/dev/null || true; }
trap stop INT TERM
echo "Portal: http://${WEB_LISTEN:-127.0.0.1:5000}   (Ctrl-C stops portal and gateway)"
# Whichever exits first (or Ctrl-C) stops the other.
set +e
wait -n "$web" "$gateway"
status=$?
stop
wait
exit "$status"
