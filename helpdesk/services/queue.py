"""The queue: finding, filtering, searching and paging tickets (docs/web.md).

The read side of tickets, apart from `TicketsService`, which writes them. The
portal's queue and `GET /api/v1/tickets` both page through here, so a filter or
a sort means the same on both.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any, Generic, TypeVar

from sqlalchemy import (
    ColumnElement,
    Select,
    case,
    cast,
    func,
    literal_column,
    or_,
    select,
    text,
    union,
    union_all,
)
from sqlalchemy.dialects.postgresql import TSQUERY, TSVECTOR
from sqlalchemy.orm import Session, selectinload, with_expression

from helpdesk import numbering, sla, sla_queries
from helpdesk import vocabulary as v
from helpdesk.clock import now
from helpdesk.errors import ValidationError
from helpdesk.inputs import echoed, positive_int
from helpdesk.models import Contact, Ticket
from helpdesk.services import tags, teams, visibility
from helpdesk.services.actors import Actor

MAX_PER_PAGE = 100
# How many of a search term's words the description must hold (docs/web.md, "Search"):
# each is a prefix scan of the words index, so a term of a thousand words is cut here.
MAX_SEARCH_WORDS = 16
# The longest search term: the portal's search box cuts there and the API refuses
# more (422). SQLite refuses a LIKE pattern over 50,000 bytes, an error that reads
# as the database being down; 200 characters escaped stay far below.
MAX_SEARCH_CHARS = 200
# How much of a description search reads (docs/web.md, "Search"): migration 0039
# stores the words of this many first characters (as 0027 indexed them), because a
# whole description could pass PostgreSQL's 1 MB tsvector limit and refuse the
# ticket. The migration writes the number itself; the two must agree.
SEARCHED_DESCRIPTION_CHARS = 50_000
# Up to how many matching tickets a queue page (without a search) is sorted from
# the matching rows alone rather than found along the sort column's index (docs/web.md).
FEW_MATCHES = 1_000
_PRIORITY_RANK = {"urgent": 4, "high": 3, "medium": 2, "low": 1}
_SORTABLE = ("number", "created_at", "updated_at", "priority", "status", "subject")
# The filters that pick from a vocabulary, with their allowed values: the portal's
# queue and the API read the same names.
CHOICE_FILTERS: dict[str, tuple[str, ...]] = {
    "status": v.STATUSES,
    "priority": v.PRIORITIES,
    "category": v.CATEGORIES,
    "channel": v.CHANNELS,
    "source": v.SOURCES,
    "ticket_type": v.TICKET_TYPES,
}


@dataclass(frozen=True)
class TicketFilters:
    """Queue filters. `assignee` is a staff id, or "none" for unassigned."""

    status: Sequence[str] = ()
    priority: Sequence[str] = ()
    category: Sequence[str] = ()
    channel: Sequence[str] = ()
    source: Sequence[str] = ()
    ticket_type: Sequence[str] = ()
    assignee: int | str | None = None
    team: str | None = None  # a team's name, or "none" for tickets of no team
    tag: str | None = None
    q: str | None = None
    sla: str | None = None  # one of helpdesk.sla.STATES


def _only_indexed(filters: TicketFilters) -> bool:
    """No filter but the tag and the team, which indexes answer without the rows
    (ticket_tags (tag_id, ticket_id) and tickets (team_id, id))."""
    return not any(
        getattr(filters, each.name) for each in fields(filters) if each.name not in ("tag", "team")
    )


def _conditions(
    filters: TicketFilters,
    looked_up: list[ColumnElement[bool]],
    visible: list[ColumnElement[bool]] | None,
) -> list[list[ColumnElement[bool]]]:
    """The conditions on `tickets` beside `filters`, one list per part the matching
    tickets are read in, for the count and for a page of few matches alike.

    An agent's visible tickets are one OR, which PostgreSQL answers by reading every
    visible ticket's row: 40,000 of them at 100,000 tickets, to count the 2,600 that
    carry a tag (docs/benchmarks.md). When the other filters are only the tag and
    the team, the parts (`visibility.parts`, no ticket in two) are read one by one
    from indexes alone. Any other filter needs the rows anyway and would be applied
    once per part (a search's index scans three times), so it keeps the OR.
    """
    if visible is not None and len(visible) > 1 and _only_indexed(filters):
        return [[*looked_up, part] for part in visible]
    return [_together(looked_up, visible)]


def _together(
    looked_up: list[ColumnElement[bool]], visible: list[ColumnElement[bool]] | None
) -> list[ColumnElement[bool]]:
    """The looked-up conditions and the viewer's visibility as one OR: how a search
    and the walk of the sort index read the matching tickets."""
    return looked_up if visible is None else [*looked_up, or_(*visible)]


T = TypeVar("T")


@dataclass
class Page(Generic[T]):
    """One page of a list and how many items it has in all; the queue's, and the
    quarantine's held mail (`inbound.quarantine.pending`)."""

    items: list[T]
    page: int
    per_page: int
    total: int
    pages: int = field(init=False)

    def __post_init__(self) -> None:
        self.pages = max(1, -(-self.total // self.per_page))


def settled_total(counted: int, listed: int, page: int, per_page: int, recount: Callable[[], int]) -> int:
    """The total of a page that `counted` (the count, an earlier statement) led to and
    that holds `listed` items: under PostgreSQL's READ COMMITTED an item changed in
    between (a ticket closed or reassigned by someone else, a held mail decided) made
    the two disagree, "26 tickets, page 2 of 2" over an empty page. A page not full
    ends the list as its own statement saw it, so it tells the total itself, with no
    statement more; an empty page past the first tells nothing, and is counted again
    (`recount`), a rare statement more. A full page keeps the count (docs/web.md,
    "Queue"). The queue's pages and the quarantine's (`inbound.quarantine.pending`)."""
    if listed == per_page:
        return counted
    if listed or page == 1:
        return (page - 1) * per_page + listed
    return recount()


class QueueService:
    def __init__(self, session: Session, *, prefix: str = "TKT-", visibility_mode: str = "all") -> None:
        self.session = session
        self.prefix = prefix
        self.visibility_mode = visibility_mode

    @classmethod
    def from_config(cls, session: Session, config: Any) -> QueueService:
        return cls(session, prefix=config["TICKET_PREFIX"], visibility_mode=config["AGENT_VISIBILITY"])

    def list_tickets(
        self,
        filters: TicketFilters = TicketFilters(),
        *,
        page: int = 1,
        per_page: int = 25,
        sort: str = "-created_at",
        viewer: Actor | None = None,
        description_chars: int = 0,
    ) -> Page[Ticket]:
        """One page of the queue; `per_page` is capped at 100 (docs/web.md). With a
        `viewer`, only the tickets they may see (`visibility`).

        The description is never read (deferred in `Ticket`): a mail's may be 25 MB
        and the queue shows none of it. With `description_chars`, each ticket's
        `description_start` holds that many first characters and one more, cut in
        SQL, so the caller can tell a description it has to cut."""
        errors: dict[str, str] = {}
        if page < 1:
            errors["page"] = "must be 1 or more"
        if per_page < 1:
            errors["per_page"] = "must be 1 or more"
        per_page = min(per_page, MAX_PER_PAGE)
        key = sort.lstrip("-")
        if key not in _SORTABLE:
            errors["sort"] = f"must be one of {', '.join(_SORTABLE)} (prefix - for descending)"
        for name, allowed in CHOICE_FILTERS.items():
            bad = [value for value in getattr(filters, name) if value not in allowed]
            if bad:
                errors[name] = f"unknown value {echoed(bad[0])!r}; one of {', '.join(allowed)}"
        if filters.sla is not None and filters.sla not in sla.STATES:
            errors["sla"] = f"unknown value {echoed(filters.sla)!r}; one of {', '.join(sla.STATES)}"
        if filters.assignee not in (None, "none") and positive_int(filters.assignee) is None:
            errors["assignee"] = "must be a staff id or none"
        by_team = self._team(filters.team, errors)
        if errors:
            raise ValidationError(errors)
        # Conditions that need a lookup first (who sees what, a team's, a tag's id):
        # read once for the page and its count.
        visible = visibility.parts(self.session, viewer, self.visibility_mode)
        looked_up = [
            condition
            for condition in (by_team, tags.tagged(self.session, filters.tag) if filters.tag else None)
            if condition is not None
        ]
        where = _together(looked_up, visible)
        column: Any = getattr(Ticket, key)
        if key == "priority":
            column = case(_PRIORITY_RANK, value=Ticket.priority)
        descending = sort.startswith("-")
        order = column.desc() if descending else column.asc()
        tie = Ticket.id.desc() if descending else Ticket.id.asc()
        term = (filters.q or "").strip()
        parts = _conditions(filters, looked_up, visible)
        chosen: Any
        if term:
            chosen, total = self._search_page(term, filters, where, column, descending, page, per_page)
            if not chosen and page > 1:  # past the last page: nothing was counted
                total = self._count(filters, parts)
        else:
            total = self._count(filters, parts)
            if total <= (page - 1) * per_page:
                # Nothing for this page: asked anyway, PostgreSQL walked the whole
                # sort index for rows that were not there (docs/benchmarks.md).
                return Page([], page, per_page, total)
            # The page is picked from ticket ids alone and only its rows are loaded
            # with their requester and assignee: loaded before the LIMIT, every
            # matching ticket was joined and sorted whole (page 200 of the queue at
            # 100,000 tickets took 10 ms instead of 4).
            if total <= FEW_MATCHES:
                # Few match: read them all as the count did, then sort. Asked for
                # with a LIMIT, PostgreSQL expects to find a page's worth soon and
                # walks the sort column's index, reading each ticket's row until it
                # has them, which for a few old tickets is the whole table
                # (docs/web.md, "Queue"; docs/benchmarks.md).
                found = self._keyed(filters, parts, column).cte("matching").prefix_with("MATERIALIZED")
                ordered = (found.c.key.desc(), found.c.id.desc()) if descending else (found.c.key, found.c.id)
                chosen = select(found.c.id).order_by(*ordered)
            else:
                chosen = self._filtered(select(Ticket.id), filters).where(*where).order_by(order, tie)
            chosen = chosen.limit(per_page).offset((page - 1) * per_page).scalar_subquery()
        query = select(Ticket).where(Ticket.id.in_(chosen)).options(selectinload(Ticket.tags))
        if description_chars > 0:
            # A query expression is set when a row is first loaded: a ticket the
            # session holds already would keep what an earlier query gave it.
            start = func.substr(Ticket.description, 1, description_chars + 1)
            query = query.options(with_expression(Ticket.description_start, start)).execution_options(
                populate_existing=True
            )
        items = self.session.execute(query.order_by(order, tie)).unique().scalars().all()
        if not term:
            total = settled_total(total, len(items), page, per_page, lambda: self._count(filters, parts))
        return Page(list(items), page, per_page, total)

    def _count(self, filters: TicketFilters, parts: list[list[ColumnElement[bool]]]) -> int:
        """How many tickets match, for the pager: each part (`_conditions`) counted
        and added up in one statement."""
        counts = [self._filtered(select(func.count(Ticket.id)), filters).where(*part) for part in parts]
        if len(counts) > 1:
            added = functools.reduce(operator.add, [count.scalar_subquery() for count in counts])
            return int(self.session.execute(select(added)).scalar_one())
        return int(self.session.execute(counts[0]).scalar_one())

    def _keyed(
        self, filters: TicketFilters, parts: list[list[ColumnElement[bool]]], column: Any
    ) -> Select[Any]:
        """The matching tickets' ids with their sort key (`key`), read as the count
        reads them (`_conditions`). In parts, the ids come from the indexes alone and
        only their rows are read for the key: asked as the parts' OR, PostgreSQL
        read every visible ticket's row, the whole table at 100,000 tickets for an
        agent's 353 tagged ones (docs/web.md, "Queue")."""
        if len(parts) == 1:
            return self._filtered(select(Ticket.id, column.label("key")), filters).where(*parts[0])
        ids = union_all(*(self._filtered(select(Ticket.id), filters).where(*part) for part in parts))
        return select(Ticket.id, column.label("key")).where(self._among(Ticket.id, ids))

    def _team(self, name: str | None, errors: dict[str, str]) -> ColumnElement[bool] | None:
        """The team filter's condition ("none": tickets of no team)."""
        if name is None:
            return None
        if name == "none":
            return Ticket.team_id.is_(None)
        team_id = teams.team_id(self.session, name)
        if team_id is None:
            errors["team"] = "is not a team (or none)"
        return Ticket.team_id == team_id

    def _filtered(self, query: Select[Any], filters: TicketFilters) -> Select[Any]:
        for name in CHOICE_FILTERS:
            chosen = getattr(filters, name)
            if chosen:
                query = query.where(getattr(Ticket, name).in_(chosen))
        if filters.assignee == "none":
            query = query.where(Ticket.assignee_id.is_(None))
        elif filters.assignee is not None:
            query = query.where(Ticket.assignee_id == int(filters.assignee))
        if filters.sla:
            query = query.where(sla_queries.state_clause(filters.sla, now()))
        if filters.q and filters.q.strip():
            query = query.where(self._search(filters.q.strip()))
        return query

    def _search_page(
        self,
        term: str,
        filters: TicketFilters,
        where: list[ColumnElement[bool]],
        column: Any,
        descending: bool,
        page: int,
        per_page: int,
    ) -> tuple[list[int], int]:
        """The ids of a search's page, and how many tickets match in all.

        The page has to sort every matching ticket, so it counts them on the way (a
        window count) instead of a second statement reading them all again. On
        PostgreSQL each field is asked on its own (`_matches`), and each of those
        SELECTs returns the sort key beside the id, from the row it reads anyway:
        looked up again by id, the 35,266 tickets `printer` matches at 100,000 cost
        78 ms more (docs/benchmarks.md). The key is an expression no index holds, so
        the planner never walks a sort index filtering every row (slow when few match).
        """
        matches, separately = self._matches(term)
        others = replace(filters, q=None)
        key = func.coalesce(column, column).label("key")
        asked = [
            self._filtered(select(Ticket.id, key), others).where(*where, match)
            for match in (matches if separately else [or_(*matches)])
        ]
        found = (union(*asked) if len(asked) > 1 else asked[0]).subquery()
        order = (
            (found.c.key.desc(), found.c.id.desc()) if descending else (found.c.key.asc(), found.c.id.asc())
        )
        rows = self.session.execute(
            select(found.c.id, func.count().over())
            .order_by(*order)
            .limit(per_page)
            .offset((page - 1) * per_page)
        ).all()
        return [row[0] for row in rows], rows[0][1] if rows else 0

    def _search(self, term: str) -> ColumnElement[bool]:
        """The condition a ticket matching `term` meets (`_matches`), for the count."""
        matches, separately = self._matches(term)
        if separately:  # each its own statement on tickets, not a correlated subquery
            return Ticket.id.in_(
                union_all(*(select(Ticket.id).where(match).correlate(None) for match in matches))
            )
        return or_(*matches)

    def _matches(self, term: str) -> tuple[list[ColumnElement[bool]], bool]:
        """Number, subject, service address, a device serial or the requester (address
        or name) contain `term`, or the description holds its words (docs/web.md,
        "Search"); and whether they are to be asked one by one.

        On PostgreSQL the substring matches use trigram indexes (migrations 0006 and
        0015), the description its stored words and their index (0039), and the matching requesters are
        collected once into an array. Each field is asked on its own and the tickets
        are put together: asked as one OR, PostgreSQL rechecks every part's condition
        on each page a trigram index marked inexact, which means parsing the
        description of most matching tickets again (3.7 s instead of 0.1 at 100,000
        tickets, docs/benchmarks.md). SQLite matches the description as a substring
        too, in one OR. Both read only the description's first
        SEARCHED_DESCRIPTION_CHARS characters (migration 0027).
        """
        pattern = "%" + term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        requesters = select(Contact.id).where(
            or_(Contact.email.ilike(pattern, escape="\\"), Contact.name.ilike(pattern, escape="\\"))
        )
        postgresql = self._postgresql()
        if postgresql:
            by_description = self._description_words(term)
        else:
            by_description = func.substr(Ticket.description, 1, _SEARCHED).ilike(pattern, escape="\\")
        matches = [
            Ticket.subject.ilike(pattern, escape="\\"),
            Ticket.service_address.ilike(pattern, escape="\\"),
            Ticket.device_serials.ilike(pattern, escape="\\"),
            self._among(Ticket.requester_id, requesters),
        ]
        if by_description is not None:
            matches.append(by_description)
        number = numbering.parse_number(term, self.prefix)
        if number is not None:
            matches.append(Ticket.number == number)
        return matches, postgresql

    def _postgresql(self) -> bool:
        return self.session.get_bind().dialect.name == "postgresql"

    def _among(self, column: Any, values: Any) -> ColumnElement[bool]:
        """`column` is one of the values `values` (a SELECT of one column) gives.

        On PostgreSQL they are collected once into an array, which the planner takes
        for a few values, each looked up through `column`'s index. Asked as `IN`, it
        estimates the subquery's rows from its conditions as if they were
        independent (a tag on a third of the tickets, a team holding a third) and
        may read the whole table to join them, however few there are
        (docs/benchmarks.md, "A page of few matches reads them as the count does")."""
        if self._postgresql():
            return column == func.any(func.array(values.scalar_subquery()))
        return column.in_(values)

    def _description_words(self, term: str) -> ColumnElement[bool] | None:
        """PostgreSQL: every word of `term`, as the full-text parser reads it, begins
        a word of the description (None when the term has no word).

        The term's words come from PostgreSQL's own parser, so an address, an IP or a
        hyphenated serial splits the same way in the term as in the text. They are
        written into the tsquery as quoted lexemes, never parsed as its operators. The
        text's words are read from the column migration 0039 stores them in, never
        computed by the search: a plan reading many tickets parsed each description
        again (1 s a search at 3,000 tickets, docs/benchmarks.md).

        The tsquery is the value of a subquery, which the planner does not look into:
        it prices every term as a rare one and reads the words index, whose answer for
        word beginnings is exact, so no ticket's words are read. Given the words as a
        constant, for a term half the tickets hold it read every ticket's words from
        TOAST instead, a cost it does not see (140-210 ms a page at 20,000 tickets
        against 30-40; docs/web.md, "Search").
        """
        lexemes = self.session.execute(_TERM_WORDS, {"term": term, "most": MAX_SEARCH_WORDS}).scalars().all()
        if not lexemes:
            return None
        query = " & ".join("'" + word.replace("\\", "\\\\").replace("'", "''") + "':*" for word in lexemes)
        return _DESCRIPTION_WORDS.bool_op("@@")(select(cast(query, TSQUERY)).scalar_subquery())


# The words of the description's first SEARCHED_DESCRIPTION_CHARS characters, as the
# 'simple' configuration reads them (lowercased and split, the same in any
# language): a column PostgreSQL computes when the description is written (migration
# 0039). It holds no positions, so the query below must never ask for a phrase, a
# distance or a weight (docs/web.md, "Search"). Only PostgreSQL has it, so it is not
# in the model; the search names it on the tickets table its statement reads.
_DESCRIPTION_WORDS: ColumnElement[Any] = literal_column(f"{Ticket.__tablename__}.description_words", TSVECTOR)
# SQLite's substring search reads as many characters; written into the SQL, not sent.
_SEARCHED: ColumnElement[Any] = literal_column(str(SEARCHED_DESCRIPTION_CHARS))
# A term's distinct words in the order written, the first `most` of them.
_TERM_WORDS = text(
    "SELECT lexeme FROM unnest(to_tsvector('simple'::regconfig, :term)) ORDER BY positions[1] LIMIT :most"
)
