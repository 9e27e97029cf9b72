"""The test database stamped at another schema revision than the code's, as when
`flask db upgrade` was skipped (behind) or a newer release ran first (ahead); no
migration runs, only the `alembic_version` row changes (docs/operations.md,
"Upgrades and the schema revision")."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from alembic.script import ScriptDirectory
from sqlalchemy import column, select, table, update

from helpdesk.extensions import db
from tests.support.gateway_process import ROOT

VERSIONS = table("alembic_version", column("version_num"))
#: A revision no migration of this code has: the next release's.
NEWER = "9999"


def head_and_previous() -> tuple[str, str]:
    script = ScriptDirectory(str(ROOT / "migrations"))
    (head,) = script.get_heads()
    previous = script.get_revision(head).down_revision
    assert isinstance(previous, str)
    return head, previous


@contextmanager
def stamped(revision: str) -> Iterator[None]:
    """The app's database at `revision` meanwhile; put back after, since the
    PostgreSQL database is shared by the session's tests."""
    before = db.session.execute(select(VERSIONS.c.version_num)).scalar_one()
    db.session.execute(update(VERSIONS).values(version_num=revision))
    db.session.commit()
    try:
        yield
    finally:
        db.session.rollback()
        db.session.execute(update(VERSIONS).values(version_num=before))
        db.session.commit()
