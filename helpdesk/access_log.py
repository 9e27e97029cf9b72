"""gunicorn's access log without the customer links' tokens (docs/security.md,
"Customer links"). A status or rating link carries its token in the path, and
holding the link is all it takes to read the ticket's status or rate it for 180
days (`CUSTOMER_LINK_MAX_AGE`): gunicorn's default format wrote each one, in the
request line and in the Referer of the next request, to whoever reads the logs.
`make run` logs through `AccessLog`; give it to gunicorn as `--logger-class
helpdesk.access_log.AccessLog` wherever an access log is kept."""

from __future__ import annotations

from typing import Any

from gunicorn.glogging import Logger

from helpdesk.customer_links import PURPOSES

# Longest first: /track/lookup/<token> is a /track/ path too.
_TOKEN_PATHS = sorted(set(PURPOSES.values()), key=len, reverse=True)
_NO_TOKEN = frozenset({"/track/language"})  # the tracker's language switch
HIDDEN = "[token]"


def hidden(path: str) -> str:
    """`path` with a customer link's token replaced by HIDDEN."""
    if path in _NO_TOKEN:
        return path
    for prefix in _TOKEN_PATHS:
        if path.startswith(prefix) and len(path) > len(prefix):
            return prefix + HIDDEN
    return path


def hidden_in_url(url: str) -> str:
    """A URL (a Referer) with a customer link's token replaced by HIDDEN."""
    for prefix in _TOKEN_PATHS:
        start = url.find(prefix)
        if start != -1:
            return url[:start] + hidden(url[start:].partition("?")[0].partition("#")[0])
    return url


class AccessLog(Logger):
    """gunicorn's logger, its access lines without customer link tokens."""

    def atoms(self, resp: Any, req: Any, environ: dict[str, Any], request_time: Any) -> dict[str, Any]:
        atoms: dict[str, Any] = super().atoms(resp, req, environ, request_time)
        path = atoms["U"] or ""
        shown = hidden(path)
        if shown != path:
            query = f"?{atoms['q']}" if atoms["q"] else ""
            atoms["U"] = shown
            atoms["r"] = f"{atoms['m']} {shown}{query} {atoms['H']}"
        for name in ("f", "{referer}i"):
            if isinstance(atoms.get(name), str):
                atoms[name] = hidden_in_url(atoms[name])
        return atoms
