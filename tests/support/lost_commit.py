"""A COMMIT whose answer never comes (docs/web.md, "A lost answer"): the connection
drops as the COMMIT goes, and the database may or may not have kept the work. The
tests' stand-in wraps `Session.commit` while a statement matching `marks` was sent
since the last commit, the commit's own flush included: it commits (or not, with
`kept=False`) and raises what psycopg2 raises then."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from sqlalchemy import event
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from helpdesk.extensions import db


class ConnectionLost(Exception):
    """What psycopg2 raises when the server's answer never comes: no SQLSTATE."""


@contextmanager
def commit_answer_lost(marks: Callable[[str], bool], *, kept: bool = True) -> Iterator[None]:
    """While the block runs, a commit after a statement `marks` picks loses its answer."""
    commit, wrote = Session.commit, []

    def noticed(conn, cursor, statement, *args):  # type: ignore[no-untyped-def]
        wrote.append(marks(statement))

    def lost(self: Session) -> None:
        self.flush()  # what the COMMIT's own flush would send, sent before it
        if not any(wrote):
            return commit(self)
        wrote.clear()
        if kept:
            commit(self)
        raise OperationalError("COMMIT", {}, ConnectionLost("server closed the connection unexpectedly"))

    Session.commit = lost  # type: ignore[method-assign]
    event.listen(db.engine, "before_cursor_execute", noticed)
    try:
        yield
    finally:
        event.remove(db.engine, "before_cursor_execute", noticed)
        Session.commit = commit  # type: ignore[method-assign]
