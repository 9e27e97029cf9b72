"""The instance folder: the secrets a one-machine install generates for itself, and
the embedded SQLite database, readable by the helpdesk's own user only.

The portal's workers and the gateway are separate processes that start side by side
and must share the secrets (they sign sessions, API tokens and outbound
Message-IDs), and a secret never belongs in the repository: a file in the untracked
instance folder gives both. With PostgreSQL the database can be shared by several
hosts, and a secret generated per host would silently break sessions and Message-ID
signatures between them, so there the keys must be given (docs/security.md).
"""

from __future__ import annotations

import os
import secrets
import tempfile
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

from config import ConfigurationError

# Settings generated into a file of the same name, lower-case, when not given.
GENERATED = ("SECRET_KEY", "JWT_SECRET_KEY")
# The shortest key either may be, in bytes: HMAC-SHA256's output (RFC 7518 3.2), as
# PyJWT warns below it. Generated keys are 64 hex characters.
MIN_SECRET_BYTES = 32
_SQLITE = "sqlite:///"


def prepare(folder: str, config: MutableMapping[str, Any]) -> None:
    """Fill in the missing secrets from the instance folder, and create the SQLite
    database file (if that is the database) private before SQLite creates it."""
    missing = [key for key in GENERATED if not config.get(key)]
    if missing and str(config["SQLALCHEMY_DATABASE_URI"]).startswith("postgresql"):
        raise ConfigurationError(
            f"{' and '.join(missing)} must be set with PostgreSQL: several hosts can share the "
            "database, and a key generated on each would break sessions and mail threading between them."
        )
    for key in missing:
        config[key] = secret(Path(folder), key.lower())
    for key in GENERATED:
        _long_enough(key, config[key])
    _private_sqlite_file(Path(folder), str(config["SQLALCHEMY_DATABASE_URI"]))


def _long_enough(key: str, value: str | bytes) -> None:
    """Refuse a key shorter than `MIN_SECRET_BYTES`. Every customer mail carries
    links signed with `SECRET_KEY` and every staff member holds tokens signed with
    `JWT_SECRET_KEY`, so anyone can try short keys against them offline; the one
    found signs an admin's portal session or API token (docs/security.md, "Secrets
    and the instance folder"). The refusal never shows the key."""
    size = len(value if isinstance(value, bytes) else value.encode("utf-8", "surrogateescape"))
    if size < MIN_SECRET_BYTES:
        raise ConfigurationError(
            f"{key} is {size} bytes long, too short to keep signatures from being forged: give at "
            f"least {MIN_SECRET_BYTES}, such as the output of "
            'python3 -c "import secrets; print(secrets.token_hex(32))".'
        )


def secret(folder: Path, name: str) -> str:
    """The secret in `folder/name`, generated on first use.

    Written to a private temporary file and linked into place, so the file exists
    only once it is complete: a process starting meanwhile either finds no file and
    races to link its own (the first link wins, the loser reads the winner's) or
    finds the whole secret, never an empty one.
    """
    _private_folder(folder)
    path = folder / name
    if not path.exists():
        value = secrets.token_hex(32)
        descriptor, temporary = tempfile.mkstemp(dir=folder, prefix=f".{name}.")  # mode 0600
        try:
            with os.fdopen(descriptor, "w") as handle:
                handle.write(value)
                handle.flush()
                os.fsync(handle.fileno())
            try:
                os.link(temporary, path)
            except FileExistsError:
                pass  # another process was first; its secret is the one
        finally:
            os.unlink(temporary)
    value = path.read_text().strip()
    if not value:
        raise ConfigurationError(
            f"{path} is empty: delete it to have a new one generated, or set {name.upper()}."
        )
    return value


def _private_folder(folder: Path) -> None:
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    if folder.stat().st_mode & 0o077:
        folder.chmod(0o700)


def _private_sqlite_file(folder: Path, uri: str) -> None:
    """An empty file is a valid empty SQLite database; SQLite gives its journal and
    WAL files the database file's permissions. A relative path is in the instance
    folder, as Flask-SQLAlchemy reads it."""
    if not uri.startswith(_SQLITE) or uri == _SQLITE or ":memory:" in uri or "mode=memory" in uri:
        return
    path = folder / uri[len(_SQLITE) :].split("?", 1)[0]  # an absolute path stays as it is
    if path.exists():
        return
    if not path.parent.exists():
        _private_folder(path.parent)
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        pass  # another process created it, as privately
