"""Password hashing for the suite: werkzeug's scrypt exactly as production runs it,
with repeats remembered for the session.

A scrypt hash or check costs about 0.1 s of CPU by design (docs/security.md). Most
tests make an agent or an admin through the fixtures and log them in, each one
hashing and checking the same few passwords again: about a fifth of the suite's
time went there. Here the first hash of a password and the first check of a (hash,
password) pair run werkzeug's code; a repeat gets that same answer back. Nothing is
invented: every answer came from the real function, and processes the tests start
(gunicorn, the gateway) hash for real.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache

import pytest
from werkzeug import security

import helpdesk.auth
import helpdesk.models


@lru_cache(maxsize=256)
def generate_password_hash(password: str) -> str:
    return security.generate_password_hash(password)


@lru_cache(maxsize=1024)
def check_password_hash(pwhash: str, password: str) -> bool:
    return security.check_password_hash(pwhash, password)


@contextmanager
def remembered() -> Iterator[None]:
    """The app's modules use the remembering functions while the context is open."""
    with pytest.MonkeyPatch.context() as patch:
        for module in (helpdesk.models, helpdesk.auth):
            patch.setattr(module, "generate_password_hash", generate_password_hash)
            patch.setattr(module, "check_password_hash", check_password_hash)
        yield
