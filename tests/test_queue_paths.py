"""The queue's two ways to a page (helpdesk.services.queue; docs/web.md, "Queue").

Without a search, a page is found by walking the sort column's order, or, when the
count finds at most FEW_MATCHES tickets, by reading those tickets and sorting them.
Which one runs is a matter of speed only: these tests force each in turn on one
seeded table and ask both for every page of many filters, sorts and viewers, and
the answers must be the same tickets in the same order with the same count, and
only tickets the viewer may see.
"""

from __future__ import annotations

import itertools
import re
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import event, insert, literal, or_, select, text, update

from helpdesk import vocabulary as v
from helpdesk.extensions import db
from helpdesk.models import StaffUser, Tag, Ticket, TicketTag
from helpdesk.services import Actor, Page, QueueService, TicketFilters, tags
from helpdesk.services import queue as queue_module
from helpdesk.services.staff import StaffService
from helpdesk.services.teams import TeamsService
from tests.support.app import ApiClient, Portal, login_tokens
from tests.support.database import committed_after, open_ticket

SORTS = [
    sign + key
    for key in ("number", "created_at", "updated_at", "priority", "status", "subject")
    for sign in ("", "-")
]
# Subjects that tie, differ only in case, and leave ASCII, so the sort by subject
# has ties across pages and the database's collation to agree with itself on.
SUBJECTS = ("Printer jam", "printer jam", "VPN down", "Ñandú roto", "Zeta", "alpha", "VPN down")
TEAMS = ("north", "south", "east")


@dataclass
class Seeded:
    """The table the paths are compared on, and who looks at it."""

    staff: dict[str, StaffUser]
    team_ids: dict[str, int]


@pytest.fixture
def seeded(app, service, clock) -> Seeded:  # type: ignore[no-untyped-def]
    """47 tickets over three teams and none, four assignees and none, every status,
    priority and channel, two tags, two merged tickets; creation and last activity
    in tied groups of three and four minutes apart, so every sort has ties that
    cross page boundaries."""
    people = StaffService(db.session)
    staff = {
        name: people.create(
            email=f"{name}@helpdesk.test", name=name.title(), role=role, password="pw-123456789"
        )[0]
        for name, role in (("nora", "agent"), ("both", "agent"), ("loner", "agent"), ("ada", "admin"))
    }
    db.session.commit()
    teams = TeamsService(db.session)
    team_ids = {name: teams.add(name).id for name in TEAMS}
    teams.add_member("north", staff["nora"].id)
    teams.add_member("north", staff["both"].id)
    teams.add_member("south", staff["both"].id)
    db.session.commit()
    team_choices = (None, *team_ids.values())
    assignees = (None, staff["nora"].id, staff["both"].id, staff["loner"].id, None, staff["ada"].id)
    admin = Actor.staff(staff["ada"])
    tickets = []
    for index in range(47):
        if index % 3 == 0:
            clock.shift(timedelta(minutes=4))
        tickets.append(
            open_ticket(
                service,
                subject=SUBJECTS[index % len(SUBJECTS)],
                priority=v.PRIORITIES[index % len(v.PRIORITIES)],
                requester_email=f"customer{index % 5}@example.com",
                channel=v.CHANNELS[index % len(v.CHANNELS)],
            )
        )
    for index, ticket in enumerate(tickets):
        if index % 4 == 0:
            clock.shift(timedelta(minutes=3))
        ticket.team_id = team_choices[(index * 7) % len(team_choices)]
        ticket.assignee_id = assignees[index % len(assignees)]
        ticket.status = v.STATUSES[(index * 3) % len(v.STATUSES)]
        db.session.commit()
        names = [name for name, every in (("olt-3", 2), ("fibra", 5)) if index % every == 1]
        if names:
            tags.set_tags(service, ticket, names, admin)
            db.session.commit()
    for source, target in ((tickets[5], tickets[9]), (tickets[12], tickets[9])):
        source.status = target.status = "open"
        service.merge(source, target, actor=admin)
        db.session.commit()
    return Seeded(staff, team_ids)


def _filters(seeded: Seeded) -> list[TicketFilters]:
    """Every filter the queue offers, alone and together, matching many, few or none."""
    nora = seeded.staff["nora"].id
    return [
        TicketFilters(),
        TicketFilters(status=("new",)),
        TicketFilters(status=("open", "closed", "cancelled")),
        TicketFilters(priority=("urgent", "high")),
        TicketFilters(category=("support",), ticket_type=(v.DEFAULT_TICKET_TYPE,)),
        TicketFilters(channel=("email",)),
        TicketFilters(channel=("phone", "chat"), priority=("low",)),
        TicketFilters(source=("customer", "agent")),
        TicketFilters(assignee="none"),
        TicketFilters(assignee=nora),
        TicketFilters(team="north"),
        TicketFilters(team="none"),
        TicketFilters(tag="olt-3"),
        TicketFilters(tag="fibra", team="south"),
        TicketFilters(tag="olt-3", status=("open", "reopened", "closed")),
        TicketFilters(tag="never-used"),
        TicketFilters(sla="on_track"),
        TicketFilters(sla="void"),
        TicketFilters(status=("pending_customer",), assignee="none", team="east"),
        TicketFilters(q="printer"),
        TicketFilters(q="vpn", status=("new", "open")),
    ]


def _viewers(seeded: Seeded) -> dict[str, tuple[str, Actor | None]]:
    """Who looks, with the AGENT_VISIBILITY they look under."""
    staff = {name: Actor.staff(user) for name, user in seeded.staff.items()}
    return {
        "nobody-hidden": ("all", None),
        "admin-team-mode": ("team", staff["ada"]),
        "one-team": ("team", staff["nora"]),
        "two-teams": ("team", staff["both"]),
        "no-team": ("team", staff["loner"]),
        "own": ("own", staff["both"]),
        "agent-all-mode": ("all", staff["loner"]),
    }


def _visible(ticket: Ticket, mode: str, viewer: Actor | None, seeded: Seeded) -> bool:
    """visibility.py's rule, written again from its documentation."""
    if viewer is None or viewer.role == "admin" or mode == "all":
        return True
    own = ticket.assignee_id == viewer.staff_id
    if mode == "own":
        return own
    member_of = {
        "nora": {seeded.team_ids["north"]},
        "both": {seeded.team_ids["north"], seeded.team_ids["south"]},
        "loner": set(),
    }[next(name for name, user in seeded.staff.items() if user.id == viewer.staff_id)]
    return own or ticket.team_id is None or ticket.team_id in member_of


def every_page(
    queue: QueueService,
    filters: TicketFilters,
    sort: str,
    per_page: int,
    viewer: Actor | None,
    few: int,
    monkeypatch: pytest.MonkeyPatch,
) -> list[Page[Ticket]]:
    """Pages 1 to one past the last, with FEW_MATCHES at `few`."""
    monkeypatch.setattr(queue_module, "FEW_MATCHES", few)
    pages = [queue.list_tickets(filters, page=1, per_page=per_page, sort=sort, viewer=viewer)]
    while pages[-1].page <= pages[0].pages:
        pages.append(
            queue.list_tickets(filters, page=len(pages) + 1, per_page=per_page, sort=sort, viewer=viewer)
        )
    return pages


def _key(ticket: Ticket, sort: str) -> Any:
    """The sort key where Python orders it as the databases do (not text, whose
    collation is the database's own)."""
    key = sort.lstrip("-")
    if key == "priority":
        return v.PRIORITIES.index(ticket.priority)
    return getattr(ticket, key)


@pytest.mark.parametrize(
    "who", ["nobody-hidden", "admin-team-mode", "one-team", "two-teams", "no-team", "own", "agent-all-mode"]
)
def test_the_walk_and_the_sort_of_few_matches_give_the_same_pages(seeded, service, monkeypatch, who):
    """Every filter with a sort and a page size of its own (each sort meets each size),
    and the unfiltered queue with every sort: the sort of the matching rows (any
    count is "few") and the walk (none is) give the same tickets in the same order
    on every page, the same count and number of pages, each ticket once, only
    tickets the viewer may see, and every one of those on the unfiltered queue."""
    mode, viewer = _viewers(seeded)[who]
    queue = QueueService(db.session, prefix=service.prefix, visibility_mode=mode)
    everything = list(db.session.execute(select(Ticket)).scalars())
    visible = {ticket.number for ticket in everything if _visible(ticket, mode, viewer, seeded)}
    cases = [
        (filters, SORTS[index % len(SORTS)], (3, 7, 25)[index % 3])
        for index, filters in enumerate(_filters(seeded))
    ] + [(TicketFilters(), sort, per_page) for sort, per_page in zip(SORTS, itertools.cycle((2, 5, 100)))]
    for filters, sort, per_page in cases:
        sorted_pages = every_page(queue, filters, sort, per_page, viewer, 10**9, monkeypatch)
        walked_pages = every_page(queue, filters, sort, per_page, viewer, 0, monkeypatch)
        case = (filters, sort, per_page)
        sorted_ = [[ticket.number for ticket in page.items] for page in sorted_pages]
        walked = [[ticket.number for ticket in page.items] for page in walked_pages]
        assert sorted_ == walked, case
        assert [(p.total, p.pages) for p in sorted_pages] == [(p.total, p.pages) for p in walked_pages], case
        listed = [ticket for page in sorted_pages for ticket in page.items]
        numbers = [ticket.number for ticket in listed]
        assert len(numbers) == len(set(numbers)) == sorted_pages[0].total, case
        assert set(numbers) <= visible, case
        assert all(len(items) == per_page for items in sorted_[:-2]) and sorted_[-1] == [], case
        if filters == TicketFilters():
            assert set(numbers) == visible, case
        if sort.lstrip("-") not in ("subject", "status"):
            keys = [(_key(ticket, sort), ticket.id) for ticket in listed]
            assert keys == sorted(keys, reverse=sort.startswith("-")), case
    assert 0 < len(visible) < len(everything) or mode == "all" or viewer is None or viewer.role == "admin"


def _heap_rows(plan: dict[str, Any]) -> int:
    """How many rows of `tickets` a plan read from the table itself: what its scans
    returned and filtered out, and an index-only scan's visits to the table."""
    node_rows = 0
    if plan.get("Relation Name") == "tickets":
        loops = plan.get("Actual Loops", 1)
        if plan["Node Type"] == "Index Only Scan":
            node_rows = plan.get("Heap Fetches", 0)
        else:
            removed = plan.get("Rows Removed by Filter", 0) + plan.get("Rows Removed by Index Recheck", 0)
            node_rows = (plan["Actual Rows"] + removed) * loops
    return node_rows + sum(_heap_rows(child) for child in plan.get("Plans", []))


def _page_and_statement(
    queue: QueueService, filters: TicketFilters, sort: str, viewer: Actor
) -> tuple[Page[Ticket], tuple[str, Any]]:
    """A page of five, and the statement (with its parameters) that read it."""
    sent: list[tuple[str, Any]] = []

    def keep(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        sent.append((statement, parameters))

    event.listen(db.engine, "before_cursor_execute", keep)
    try:
        page = queue.list_tickets(filters, per_page=5, sort=sort, viewer=viewer)
    finally:
        event.remove(db.engine, "before_cursor_execute", keep)
    return page, [each for each in sent if "LIMIT" in each[0]][0]


def test_a_page_of_few_matches_reads_them_as_the_count_does(service, agent, monkeypatch):
    """An agent who sees their team's tickets and those of no team, filtering by a
    tag: the count reads each part of what they see from the indexes alone
    (`visibility.parts`), and a page of few matches picks the ids the same way and
    reads only their rows. Picked with the parts' OR, PostgreSQL read every visible
    (or every tagged) ticket's row: a whole-table scan of 100,000 tickets for 353
    (docs/web.md, "Queue"). Here 1,500 tickets the agent may not see carry the tag,
    1,500 they may see do not, and 8 do both: the page, in either order, reads no
    more rows than a few times its matches, and lists the 8."""
    teams = TeamsService(db.session)
    mine, theirs = teams.add("north").id, teams.add("south").id
    teams.add_member("north", agent.id)
    first = open_ticket(service)
    db.session.commit()
    row = {column: getattr(first, column) for column in ("requester_id", "channel", "source", "status")}
    tickets = [
        {**row, "number": 10 + index, "subject": f"Case {index}", "team_id": team}
        for index, team in enumerate([theirs] * 1500 + [None, mine] * 750 + [mine] * 8)
    ]
    db.session.execute(insert(Ticket), tickets)
    tag = db.session.execute(insert(Tag).values(name="olt-3").returning(Tag.id)).scalar_one()
    tagged = select(Ticket.id).where(or_(Ticket.team_id == theirs, Ticket.number >= 3010))
    db.session.execute(
        insert(TicketTag).from_select(["ticket_id", "tag_id"], tagged.add_columns(literal(tag)))
    )
    postgresql = db.engine.dialect.name == "postgresql"
    if postgresql:  # the test server commits without waiting for the disk, and VACUUM
        # marks no page all-visible whose rows' commit is not on disk yet
        db.session.execute(text("SET LOCAL synchronous_commit = on"))
    db.session.commit()
    if postgresql:  # what autovacuum would have done by now: statistics, the visibility map
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.exec_driver_sql("VACUUM ANALYZE tickets, ticket_tags")
    queue = QueueService(db.session, prefix=service.prefix, visibility_mode="team")
    viewer = Actor.staff(agent)
    filters = TicketFilters(tag="olt-3")
    for sort in ("-updated_at", "number"):
        page, (statement, parameters) = _page_and_statement(queue, filters, sort, viewer)
        assert page.total == 8
        assert [ticket.number for ticket in page.items] == (
            list(range(3017, 3012, -1)) if sort.startswith("-") else list(range(3010, 3015))
        )
        monkeypatch.setattr(queue_module, "FEW_MATCHES", 0)
        walked = queue.list_tickets(filters, per_page=5, sort=sort, viewer=viewer)
        monkeypatch.undo()
        assert [ticket.number for ticket in walked.items] == [ticket.number for ticket in page.items]
        if not postgresql:
            continue
        connection = db.session.connection()
        # As on a table too large to read whole: on a few thousand rows the planner
        # may read them all whichever statement it is given.
        connection.exec_driver_sql("SET LOCAL enable_seqscan = off")
        connection.exec_driver_sql("SET LOCAL enable_bitmapscan = off")
        explain = "EXPLAIN (ANALYZE, FORMAT JSON) " + statement
        (plan,) = connection.exec_driver_sql(explain, parameters).scalar_one()
        db.session.rollback()
        assert _heap_rows(plan["Plan"]) <= 4 * page.total + len(page.items), sort


_LISTED = re.compile(r'name="tickets" value="([^"]+)"')


@pytest.mark.parametrize(
    "query",
    [
        "tag=olt-3&sort=created_at",
        "status=new&status=open&sort=-updated_at",
        "team=north&sort=-priority",
        "sort=subject",
    ],
)
def test_the_api_and_the_portal_list_the_same_pages_either_way(seeded, app, client, monkeypatch, query):
    """Both read the queue through QueueService: for an agent under team visibility,
    every page the API gives (four a page) and the portal shows (25) is the same
    whichever way the page was found, and the two agree with each other."""
    app.config["AGENT_VISIBILITY"] = "team"
    api = ApiClient(client, login_tokens(client, "both@helpdesk.test", "pw-123456789")["access_token"])
    portal = Portal(client)
    assert portal.login("both@helpdesk.test", "pw-123456789").status_code == 302

    def api_pages() -> list[tuple[list[str], int]]:
        pages: list[tuple[list[str], int]] = []
        while not pages or pages[-1][0]:
            answer = api.get(f"/tickets?{query}&per_page=4&page={len(pages) + 1}").get_json()
            pages.append(([item["number"] for item in answer["items"]], answer["total"]))
        return pages

    def portal_pages() -> list[tuple[list[str], str]]:
        pages: list[tuple[list[str], str]] = []
        while not pages or pages[-1][0]:
            html = portal.get(f"/tickets?{query}&page={len(pages) + 1}").data.decode()
            pages.append(
                (_LISTED.findall(html), html.split('Tickets <span class="muted">(', 1)[1].split(")")[0])
            )
        return pages

    answers = []
    for few in (10**9, 0):
        monkeypatch.setattr(queue_module, "FEW_MATCHES", few)
        answers.append((api_pages(), portal_pages()))
    assert answers[0] == answers[1]
    (api_answer, portal_answer) = answers[0]
    listed = [number for numbers, _ in api_answer for number in numbers]
    assert listed == [number for numbers, _ in portal_answer for number in numbers]
    assert 0 < len(listed) == api_answer[0][1] == int(portal_answer[0][1]) < 47


def _closed_after_the_count(number: int) -> AbstractContextManager[None]:
    """Ticket `number` closed by another agent right after the queue's count."""
    return committed_after(
        lambda statement: "count(tickets.id)" in statement,
        update(Ticket).where(Ticket.number == number).values(status="closed"),
    )


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_a_ticket_leaving_the_queue_between_its_count_and_its_page_leaves_no_false_count(
    service, portal, api
):
    """26 new tickets: the count said 26, two pages; one closed before the page was
    read left page 2 empty under "26 tickets, page 2 of 2" and "No tickets match.",
    and the API answered 4 items of a page of 10 with a total of 25. A page that is
    not full counts its tickets itself (the page's own statement saw them all): the
    portal says 25, page 2 of 1, that this page has no more tickets, and links to
    the last one; the API's total agrees with its items (docs/web.md, "Queue")."""
    for index in range(26):
        open_ticket(service, subject=f"Ticket {index}")
    with _closed_after_the_count(1):
        html = portal.get("/tickets?status=new&page=2").get_data(as_text=True)
    assert 'Tickets <span class="muted">(25)</span>' in html and "Page 2 of 1" in html
    assert "No more tickets on this page." in html and "No tickets match." not in html
    assert '<a href="/tickets?status=new&amp;page=1">Last page: 1</a>' in html
    with _closed_after_the_count(2):
        answer = api.get("/tickets?status=new&per_page=10&page=3").get_json()
    assert (len(answer["items"]), answer["total"]) == (4, 24)


def test_a_page_past_the_last_says_so_and_links_to_the_last(service, portal):
    """Tickets match, but not on this page (an old link, a page number typed): it said
    "No tickets match.", which is false; it says this page has no more tickets and
    links to the last page, with the filters kept."""
    for index in range(3):
        open_ticket(service, subject=f"Ticket {index}")
    html = portal.get("/tickets?status=new&page=4").get_data(as_text=True)
    assert "No more tickets on this page." in html and "No tickets match." not in html
    assert '<a href="/tickets?status=new&amp;page=1">Last page: 1</a>' in html
    assert "No tickets match." in portal.get("/tickets?status=closed").get_data(as_text=True)
