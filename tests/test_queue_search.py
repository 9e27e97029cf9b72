"""Queue search over descriptions: by words on PostgreSQL (migration 0023's index), as a
substring on SQLite (docs/web.md, "Search"); a term is the searcher's to choose, and
none breaks the query."""

from __future__ import annotations

import pytest
from sqlalchemy import event, func, select, text

from helpdesk.extensions import db
from helpdesk.models import Ticket
from helpdesk.services import QueueService, TicketFilters, TicketsService
from helpdesk.services.actors import Actor
from helpdesk.services.queue import MAX_SEARCH_WORDS, SEARCHED_DESCRIPTION_CHARS
from tests.support.corpus import CORPUS, corpus
from tests.support.database import open_ticket
from tests.support.hostile import distinct_words

DESCRIPTIONS = (
    "El módem de la instalación no enciende desde ayer.",
    "Error ONT-1234 en la fibra; la IP 192.168.1.10 no tiene ruta.",
    "Les escribo desde juan.perez@example.com por la factura de marzo.",
    "Printer network down since the update to v2.5.1",
)


@pytest.fixture
def described(service: TicketsService) -> None:
    for index, description in enumerate(DESCRIPTIONS, start=1):
        open_ticket(service, subject=f"Case {index}", description=description, requester_email="ana@isp.test")


def found(service: TicketsService, term: str) -> list[int]:
    queue = QueueService(service.session, prefix=service.prefix)
    page = queue.list_tickets(TicketFilters(q=term), sort="number")
    assert page.total == len(page.items)
    return [ticket.number for ticket in page.items]


def postgresql() -> bool:
    return db.engine.dialect.name == "postgresql"


@pytest.mark.parametrize(
    ("term", "expected"),
    [
        ("módem", [1]),
        ("MODEM", []),  # an accent is a different letter to both
        ("instalaci", [1]),  # the beginning of a word
        ("no enciende", [1]),
        ("ONT-1234", [2]),
        ("ont", [2]),
        ("192.168.1.10", [2]),
        ("192.168", [2]),
        ("juan.perez@example.com", [3]),
        ("juan.perez", [3]),
        ("Printer network", [4]),
        ("v2.5", [4]),
        ("la", [1, 2, 3]),
        ("ruta.", [2]),
        ("tarjeta", []),
    ],
)
def test_a_description_is_found_by_its_words_on_both_databases(service, described, term, expected):
    assert found(service, term) == expected


@pytest.mark.parametrize(
    ("term", "on_postgresql", "on_sqlite"),
    [
        # Words anywhere, in any order: PostgreSQL finds them; SQLite wants the substring.
        ("enciende módem", [1], []),
        ("factura juan", [3], []),
        # The middle or end of a word: only a substring search finds it.
        ("ciende", [], [1]),
        ("work", [], [4]),
        # SQLite's LIKE folds the case of ASCII letters only.
        ("MÓDEM", [1], []),
        # An address is one word to the parser, found from its start, not by its domain.
        ("example.com", [], [3]),
    ],
)
def test_where_words_and_substrings_differ(service, described, term, on_postgresql, on_sqlite):
    assert found(service, term) == (on_postgresql if postgresql() else on_sqlite)


def test_only_the_first_words_of_a_long_term_count(service, described):
    """Each word is a scan of the index, so a term's words are cut at MAX_SEARCH_WORDS,
    in the order written: a word after them no longer has to be in the description."""
    words = [f"palabra{n}" for n in range(MAX_SEARCH_WORDS)]
    open_ticket(service, subject="Case 5", description=" ".join(words), requester_email="ana@isp.test")
    assert found(service, " ".join(words)) == [5]
    assert found(service, " ".join([*words, "ausente"])) == ([5] if postgresql() else [])
    assert found(service, " ".join(["ausente", *words])) == []


@pytest.mark.parametrize(
    ("term", "on_postgresql"),
    [
        ("'", []),
        ("''", []),
        ("\\", []),
        ("\\'", []),
        ("a & b | !c", []),
        ("módem:*", [1]),
        ("módem & !fibra", []),  # read as an operator, "!" would have found ticket 1
        ("módem | fibra", []),  # and "|" tickets 1 and 2
        ("<-> <2> (", []),
        ("')) OR 1=1 --", []),
        ("':* | '", []),
        ("x" * 3000, []),
        ("é " * 2000, []),
        ("http://example.com/it's\\here", []),
        ("C:\\Users\\juan\\factura's.pdf", []),
        ("\u202e\u200b\ufeff", []),
        ("🙂 módem", [1]),
    ],
)
def test_an_attacker_term_is_only_words(service, described, term, on_postgresql):
    """Operators, quotes and backslashes in a term are text: none reaches the query
    as tsquery syntax or raises (a 500 in the portal and the API)."""
    numbers = found(service, term)
    if postgresql():
        assert numbers == on_postgresql
    else:
        assert set(numbers) <= {1, 2, 3, 4}


@pytest.mark.parametrize("written", ["http://example.com/it's\\here", "C:\\Users\\juan\\factura's.pdf"])
def test_words_with_quotes_and_backslashes_find_their_ticket(service, written):
    """The parser keeps a quote or a backslash inside a path's word; written into the
    query quoted and escaped, that word still finds the text it came from."""
    ticket = open_ticket(service, description=f"Adjunto: {written} (no abre)", requester_email="ana@isp.test")
    assert found(service, written) == [ticket.number]


def test_the_words_index_serves_the_search(service, described):
    """The condition reads the column migration 0039 stores the words in (those of
    the description's first SEARCHED_DESCRIPTION_CHARS characters, without their
    positions, which a search never asks for and which took most of the room) and
    its index serves it. The words are asked for as a subquery's value, which the
    planner does not look into (docs/web.md, "Search")."""
    queue = QueueService(service.session, prefix=service.prefix)
    statement = queue._filtered(select(func.count(Ticket.id)), TicketFilters(q="módem"))
    compiled = statement.compile(db.engine)
    if not postgresql():  # no words index there: the description is one more LIKE
        assert f"lower(substr(tickets.description, ?, {SEARCHED_DESCRIPTION_CHARS})) LIKE" in compiled.string
        return
    connection = db.session.connection()
    connection.execute(text("SET LOCAL enable_seqscan = off"))
    plan = "\n".join(connection.exec_driver_sql("EXPLAIN " + compiled.string, compiled.params).scalars())
    db.session.rollback()
    assert "ix_tickets_description_words" in plan
    assert "tickets.description_words @@ (SELECT CAST(" in compiled.string
    generated = text(
        "SELECT pg_get_expr(d.adbin, d.adrelid) FROM pg_attrdef d JOIN pg_attribute a "
        "ON a.attrelid = d.adrelid AND a.attnum = d.adnum "
        "WHERE d.adrelid = 'tickets'::regclass AND a.attname = 'description_words'"
    )
    expression = db.session.execute(generated).scalar_one()
    searched = f'"left"(description, {SEARCHED_DESCRIPTION_CHARS})'
    assert expression == f"strip(to_tsvector('simple'::regconfig, {searched}))"


def _tickets_nodes(plan: dict) -> list[dict]:
    """Every node of an EXPLAIN (FORMAT JSON) plan that reads the tickets table."""
    found = [plan] if plan.get("Relation Name") == "tickets" else []
    for child in plan.get("Plans", []):
        found.extend(_tickets_nodes(child))
    return found


@pytest.mark.parametrize(
    ("filters", "mode", "expected"),
    [
        ({}, "all", 150),
        ({"status": ("new",)}, "all", 150),
        ({"priority": ("high",)}, "all", 75),
        ({}, "own", 50),  # assigned to the agent
        ({}, "team", 150),  # of no team (the agent is in none)
    ],
    ids=["term", "term-and-status", "term-and-priority", "own-tickets", "team-tickets"],
)
def test_no_search_plan_reads_descriptions_or_their_words_row_by_row(service, agent, filters, mode, expected):
    """A term most descriptions hold (or a filter the planner prefers to the words
    index) made PostgreSQL parse the description of every ticket it read, on every
    search: 1 s at 3,000 mail-sized tickets. The words are stored beside the
    description (migration 0039), so no plan computes them; and they are matched
    through their index only: read row by row, as the planner chose for a term half
    the tickets hold, each ticket's words were a TOAST lookup, 140-210 ms a page at
    20,000 tickets (docs/benchmarks.md). Each statement the search sends is explained
    as it was sent, the count past the last page too, with filters and for agents
    who see only some tickets."""
    bodies = [
        (CORPUS / entry["file"]).read_text("utf-8", "replace")
        for entry in corpus()
        if entry["file"].startswith("email-reply-parser__") and int(entry["bytes"]) < 10_000
    ]
    letter = "\n\n".join(bodies)[:2800]  # a customer's letter is 2.8 KB at the median
    for index in range(150):
        open_ticket(
            service,
            subject=f"Case {index}",
            description=f"{letter}\ncaso {index}",
            assignee_id=agent.id if index % 3 == 0 else None,
            priority=("high", "low")[index % 2],
        )
    if postgresql():  # what autovacuum would have done by now: statistics, and the
        # words of new tickets moved from the index's pending list into the index
        db.session.execute(text("ANALYZE tickets"))
        db.session.execute(text("SELECT gin_clean_pending_list('ix_tickets_description_words')"))
    queue = QueueService(service.session, visibility_mode=mode)
    viewer = Actor.staff(agent)

    sent: list[tuple[str, object]] = []

    def keep(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        sent.append((statement, parameters))

    event.listen(db.engine, "before_cursor_execute", keep)
    try:
        page = queue.list_tickets(TicketFilters(q="the", **filters), per_page=10, viewer=viewer)
        past = queue.list_tickets(TicketFilters(q="the", **filters), page=99, per_page=10, viewer=viewer)
    finally:
        event.remove(db.engine, "before_cursor_execute", keep)
    assert (page.total, len(page.items)) == (expected, 10)
    assert (past.items, past.total) == ([], expected)  # counted by a statement of its own
    if not postgresql():  # no words there: the description is one more LIKE
        return
    connection = db.session.connection()
    conditions = [
        (node["Node Type"], key, node[key])
        for statement, parameters in sent
        if "FROM tickets" in statement
        for plan in connection.exec_driver_sql("EXPLAIN (FORMAT JSON) " + statement, parameters).scalar_one()
        for node in _tickets_nodes(plan["Plan"])
        for key in ("Filter", "Recheck Cond", "Index Cond")
        if key in node
    ]
    assert not [condition for condition in conditions if "to_tsvector" in condition[2]]
    read_one_by_one = [
        (kind, condition)
        for kind, key, condition in conditions
        if key == "Filter" and "description_words" in condition
    ]
    assert read_one_by_one == []
    assert any(
        kind == "Bitmap Heap Scan" and "description_words @@" in condition
        for kind, key, condition in conditions
    )


def test_a_description_is_searched_in_its_first_characters_only(service):
    """The words index reads a description's first SEARCHED_DESCRIPTION_CHARS characters
    (migration 0027: a whole one could pass PostgreSQL's 1 MB tsvector limit and no
    ticket was opened); SQLite searches the same characters, the ticket keeps them all."""
    head = "impresora " + "relleno " * (SEARCHED_DESCRIPTION_CHARS // 8)
    tail = distinct_words(140_000)
    ticket = open_ticket(service, description=f"{head} tardanza {tail}", requester_email="ana@isp.test")
    assert len(head) >= SEARCHED_DESCRIPTION_CHARS and "tardanza" in ticket.description
    assert found(service, "impresora") == [ticket.number]
    assert found(service, "relleno") == [ticket.number]
    assert found(service, "tardanza") == []
    assert found(service, tail[-4:]) == []


def test_the_densest_text_measured_fills_under_half_a_tsvector(service):
    """Different single 4-byte letters in hyphenated words (each letter a word of its
    own and part of a longer one) make the largest vector measured, 8.7 bytes a
    character: the searched characters of it stay far from PostgreSQL's 1,048,575
    bytes (the bound, 18 bytes a character, is in migration 0027)."""
    letters = [chr(code) for code in range(0x20000, 0x2A6E0)]  # CJK Extension B
    dense = " ".join("-".join(letters[i : i + 20]) for i in range(0, len(letters), 20))
    assert len(dense) > SEARCHED_DESCRIPTION_CHARS
    ticket = open_ticket(service, description=dense, requester_email="ana@isp.test")
    assert found(service, letters[0]) == [ticket.number]
    if postgresql():
        size = text("SELECT pg_column_size(to_tsvector('simple', left(:d, :n)))")
        bytes_ = db.session.execute(size, {"d": dense, "n": SEARCHED_DESCRIPTION_CHARS}).scalar_one()
        assert bytes_ < 1_048_575 / 2


def test_a_search_counts_every_match_on_every_page(service, agent):
    """A search's total comes with its page (a window count): the same on every page,
    past the last one too, and only what the viewer may see."""
    for index in range(9):
        open_ticket(
            service,
            subject=f"Case {index}",
            description="El router se reinicia cada hora." if index < 7 else "Sin señal.",
            requester_email="ana@isp.test",
            assignee_id=agent.id if index % 2 == 0 else None,
        )
    queue = QueueService(service.session, prefix=service.prefix)
    router = TicketFilters(q="router")
    pages = [queue.list_tickets(router, page=n, per_page=3, sort="number") for n in (1, 2, 3, 4)]
    assert [len(page.items) for page in pages] == [3, 3, 1, 0]
    assert [page.total for page in pages] == [7, 7, 7, 7]
    assert [t.number for page in pages for t in page.items] == list(range(1, 8))
    assert queue.list_tickets(TicketFilters(q="fibra")).total == 0
    own = QueueService(service.session, prefix=service.prefix, visibility_mode="own")
    mine = own.list_tickets(TicketFilters(q="router"), per_page=3, sort="number", viewer=Actor.staff(agent))
    assert ([t.number for t in mine.items], mine.total) == ([1, 3, 5], 4)
    past = own.list_tickets(TicketFilters(q="router"), page=3, per_page=3, viewer=Actor.staff(agent))
    assert (past.items, past.total) == ([], 4)


@pytest.mark.parametrize(("sort", "order"), [("-priority", "bca"), ("priority", "acb"), ("-number", "cba")])
def test_a_ticket_found_by_several_fields_is_listed_once_in_order(service, sort, order):
    """Each field is asked on its own on PostgreSQL; a ticket two of them find is one
    ticket, sorted by its own key among the others."""
    tickets = {
        "a": open_ticket(
            service, subject="Router caído", description="El router no enciende.", priority="low"
        ),
        "b": open_ticket(
            service, subject="Sin señal", description="Cambié el router ayer.", priority="urgent"
        ),
        "c": open_ticket(
            service, subject="Factura", description="x", requester_email="router@isp.test", priority="high"
        ),
    }
    open_ticket(service, subject="Otro", description="Nada que ver.")
    page = QueueService(service.session, prefix=service.prefix).list_tickets(
        TicketFilters(q="router"), sort=sort
    )
    assert [ticket.number for ticket in page.items] == [tickets[name].number for name in order]
    assert page.total == 3


def test_a_list_asking_for_descriptions_cuts_them_in_sql_and_reads_none_whole(service):
    """The list reads `description_start`, the first characters and one more, in
    SQL; a ticket the session holds already gets them anew (without
    populate_existing it kept those of the first query that loaded it)."""
    ticket = open_ticket(service, description="Sin señal desde el martes")
    db.session.get(Ticket, ticket.id)  # in the session before the list
    queue = QueueService(db.session)
    (listed,) = queue.list_tickets(description_chars=9).items
    assert listed.description_start == "Sin señal "
    assert "description" not in db.inspect(listed).dict  # deferred: never read whole
    (listed,) = queue.list_tickets(description_chars=100).items
    assert listed.description_start == "Sin señal desde el martes"
