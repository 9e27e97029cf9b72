"""The `Idempotency-Key` request header of the API's creating calls (docs/web.md,
"Idempotency keys"; the IETF draft "The Idempotency-Key HTTP Header Field"):
`POST /tickets`, `POST /tickets/<number>/replies` and `POST /workflow/tickets`.

Optional. Given, it is 1 to 255 printable ASCII characters without spaces (else
400) and the call is done at most once per caller and key: the views `claim` it
right before they write, and a retry is answered what the first call made, read
again now, with `Idempotent-Replayed: true`. The rules live in
`helpdesk.services.idempotency`; this reads the request.
"""

from __future__ import annotations

import hashlib

from flask import Response, current_app, jsonify, request

from helpdesk.api.payload import canonical_json
from helpdesk.errors import DomainError
from helpdesk.extensions import db
from helpdesk.services import idempotency
from helpdesk.services.idempotency import Earlier

HEADER = "Idempotency-Key"
REPLAYED = "Idempotent-Replayed"
MAX_KEY = 255
_CHUNK = 64 * 1024


class InvalidKey(DomainError):
    """Answered 400 by the API's error handler, before anything is read or done."""

    code = "invalid_idempotency_key"

    def __init__(self) -> None:
        super().__init__(
            f"The {HEADER} header must be given once, as 1 to {MAX_KEY} printable ASCII "
            "characters without spaces."
        )


def key() -> str | None:
    """The request's key, None without one; `InvalidKey` for anything else: a key
    given twice, empty, too long, or with spaces, controls or non-ASCII bytes."""
    given = request.headers.getlist(HEADER)
    if not given:
        return None
    value = given[0]
    if len(given) > 1 or not 1 <= len(value) <= MAX_KEY or not all("!" <= c <= "~" for c in value):
        raise InvalidKey()
    return value


def claim(caller: str) -> int | Earlier | None:
    """Claim the request's key for the write about to happen (`services.idempotency.claim`):
    None without a key, the claim's id to point the write at, or what an earlier
    call under the key made. Call it after the input was read and checked, right
    before the write: a refused request takes no key."""
    given = key()
    if given is None:
        return None
    lifetime = current_app.config["IDEMPOTENCY_KEY_LIFETIME"]
    return idempotency.claim(db.session, caller, given, digest(), lifetime)


def digest() -> str:
    """SHA-256 of what makes two calls the same call: the method, the path and
    query, and the body: its JSON in one spelling (`payload.canonical_json`: a
    client re-serializing its retry may order or space it otherwise); for
    multipart/form-data, of its parts (each field's name and value, each file's
    field name, filename, type and bytes), since the boundary between them is
    chosen afresh by most clients for every request."""
    hashed = hashlib.sha256()

    def part(data: bytes) -> None:
        hashed.update(len(data).to_bytes(8, "big"))
        hashed.update(data)

    for text in (request.method, request.path):
        part(text.encode("utf-8", "surrogatepass"))
    part(request.query_string)
    if request.mimetype != "multipart/form-data":
        spelt = canonical_json()
        part(b"body" if spelt is None else b"json")
        part(request.get_data(cache=True) if spelt is None else spelt)
        return hashed.hexdigest()
    part(b"multipart")
    for name, value in request.form.items(multi=True):
        for text in ("field", name, value):
            part(text.encode("utf-8", "surrogatepass"))
    for name, file in request.files.items(multi=True):
        for text in ("file", name, file.filename or "", file.mimetype or ""):
            part(text.encode("utf-8", "surrogatepass"))
        content = hashlib.sha256()
        file.stream.seek(0)  # from its start, whoever read it before
        while chunk := file.stream.read(_CHUNK):
            content.update(chunk)
        file.stream.seek(0)  # and left there for whoever reads it next
        part(content.digest())
    return hashed.hexdigest()


def replayed(body: object, status: int = 201) -> tuple[Response, int]:
    """A retry's answer: the first call's status, what it made, and the header."""
    response = jsonify(body)
    response.headers[REPLAYED] = "true"
    return response, status
