"""Real concurrency on one database.

Gap-free numbering: two OS processes (channels `web` and `email`), several threads
each, about 10 % of creations rolled back after taking their number. Afterwards the
stored numbers must be exactly 1..N.

Two changes to one ticket at once (docs/lifecycle.md, "Concurrent changes"): the
second is judged against the first one's result, so the ticket ends in a status the
transition table allows, with a history and a `resolved_at` that agree with it."""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from flask import current_app
from sqlalchemy import func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from helpdesk import lifecycle
from helpdesk.clock import now
from helpdesk.errors import ValidationError
from helpdesk.extensions import db
from helpdesk.inbound import matching
from helpdesk.inbound.ingest import Envelope, Outcome, ingest
from helpdesk.models import OutboxMessage, StaffUser, Tag, Ticket, TicketHistory, TicketTag
from helpdesk.outbound.compose import Composer
from helpdesk.services import Actor, TicketsService, bulk, tags
from mailgateway.outbound import Sender
from tests.support import concurrency_worker, proofs
from tests.support.app import ApiClient, login_tokens, make_app
from tests.support.mail import SUPPORT, message
from tests.support.processes import run_processes
from tests.support.sink import Sink
from tests.support.waiting import wait_until

# backend: (threads per process, tickets per thread, least channel switches).
# SQLite's busy handler is not fair (a process that just released the write lock
# often takes it again), so its two processes interleave in runs, not one by one:
# with 40 tickets a thread, a CI run beside another pytest worker once saw one
# process take every number before the other (1 switch), so 80.
SIZES = {"postgresql": (8, 125, 20), "sqlite": (4, 80, 2)}
FAIL_EVERY = 10


def test_numbers_are_gap_free_across_processes_and_threads(app, backend, database_url):
    threads, per_thread, least_switches = SIZES[backend]
    reported = run_processes(
        concurrency_worker.run,
        [(database_url, channel, threads, per_thread, FAIL_EVERY) for channel in ("web", "email")],
        barrier_parties=2 * threads,
    )

    committed = [n for _, numbers, _ in reported for n in numbers]
    failed = [n for _, _, numbers in reported for n in numbers]
    attempts = 2 * threads * per_thread
    assert len(committed) + len(failed) == attempts
    assert 0.08 * attempts <= len(failed) <= 0.12 * attempts

    db.session.expire_all()
    rows = db.session.execute(select(Ticket.number, Ticket.channel).order_by(Ticket.number)).all()
    stored = [number for number, _ in rows]
    assert stored == list(range(1, len(committed) + 1)), "gap or duplicate in the sequence"
    assert sorted(committed) == stored, "a worker saw a number that was not stored"

    channels = [channel for _, channel in rows]
    switches = sum(1 for a, b in zip(channels, channels[1:], strict=False) if a != b)
    assert switches >= least_switches, f"the two processes did not interleave ({switches} switches)"


# -- two changes to one ticket at the same moment -------------------------------
#
# Each scenario forces the race on every run: both workers load the ticket, the first
# changes it and holds its transaction open until the second is seen waiting for a
# row lock (pg_stat_activity), then commits. The second must then validate against
# the first one's result (docs/lifecycle.md, "Concurrent changes"). On SQLite a
# transaction holds the write lock from its first read (helpdesk.database), so the
# second worker could not even load the ticket: the race cannot happen there.

on_postgresql = pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
WAIT = 30  # seconds; a ceiling for a broken run, never reached by a working one


class Interleaving:
    """The order two worker threads are held to: both load, the first changes the
    ticket and waits, the second goes on until it waits for the first one's row lock,
    and only then does the first commit."""

    def __init__(self) -> None:
        self.loaded = threading.Barrier(2, timeout=WAIT)
        self.first_changed = threading.Event()
        self.release = threading.Event()
        self.results: dict[str, object] = {}

    def after_load(self, role: str) -> None:
        self.loaded.wait()
        if role == "second":
            assert self.first_changed.wait(WAIT), "the first change never happened"

    def after_first_change(self) -> None:
        self.first_changed.set()
        assert self.release.wait(WAIT), "the second worker was never seen waiting"

    def run(
        self, first: Callable[[], object], second: Callable[[], object], *, second_may_finish: bool = False
    ) -> dict[str, object]:
        """Run both workers and return what each returned (or raised). With
        `second_may_finish` the second worker finishing without a wait lets the first
        go on too: where the fix is that the second no longer waits for the first."""

        def work(role: str, job: Callable[[], object]) -> None:
            try:
                self.results[role] = job()
            except Exception as exc:  # reported to the test below, never swallowed
                self.results[role] = exc

        threads = [
            threading.Thread(target=work, args=(role, job), name=role)
            for role, job in (("first", first), ("second", second))
        ]
        for thread in threads:
            thread.start()
        try:
            assert self.first_changed.wait(WAIT), f"the first change never happened: {self.results}"
            wait_until(
                lambda: (second_may_finish and "second" in self.results) or _someone_waits_for_a_lock(),
                timeout=WAIT,
                between=db.session.rollback,
                what=lambda: f"the second worker waiting for the ticket's row lock ({self.results})",
            )
        finally:
            self.release.set()
            for thread in threads:
                thread.join(WAIT)
        assert not any(thread.is_alive() for thread in threads), "a worker never finished"
        return self.results


# How many sessions of the test database wait for a lock right now.
_LOCK_WAITERS = text(
    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()"
)


def _someone_waits_for_a_lock(at_least: int = 1) -> bool:
    """Whether `at_least` sessions of the test database wait for a lock right now."""
    return bool(db.session.execute(_LOCK_WAITERS).scalar_one() >= at_least)


def _hold_first_after_count(monkeypatch: pytest.MonkeyPatch, order: Interleaving) -> None:
    """Hold the first worker right after its customer's limits were counted, with the
    locks that count takes (`customer_limits.reached_limit`)."""
    from helpdesk.services import customer_limits

    reached_limit = customer_limits.reached_limit

    def count_then_hold(*args: Any) -> str | None:
        reached = reached_limit(*args)
        if threading.current_thread().name == "first":
            order.after_first_change()
        return reached

    monkeypatch.setattr(customer_limits, "reached_limit", count_then_hold)


Change = Callable[[str], str]


def _customer_reply(status: str) -> str:
    return lifecycle.ON_CUSTOMER_REPLY.get(status, status)


def _staff_move(target: str) -> Change:
    """A staff member's move: refused (nothing changes) when the table forbids it."""
    return lambda status: target if lifecycle.can_move(status, target) else status


def _legal_finals(start: str, *changes: Change) -> set[str]:
    """Every status the table allows after applying `changes` to `start` in some order."""
    finals = set()
    for order in itertools.permutations(changes):
        status = start
        for change in order:
            status = change(status)
        finals.add(status)
    return finals


def _assert_consistent(number: int, legal: set[str]) -> Ticket:
    """The stored ticket ended in a legal status, its history is one chain of moves
    the table allows ending there, and `resolved_at` agrees with the status."""
    db.session.rollback()
    ticket = db.session.execute(
        select(Ticket).where(Ticket.number == number).execution_options(populate_existing=True)
    ).scalar_one()
    assert ticket.status in legal, f"final status {ticket.status}, legal: {sorted(legal)}"
    moves = db.session.execute(
        select(TicketHistory.old_value, TicketHistory.new_value)
        .where(TicketHistory.ticket_id == ticket.id, TicketHistory.field == "status")
        .order_by(TicketHistory.id)
    ).all()
    assert moves[0] == (None, "new")
    for (_, before), (old, new) in itertools.pairwise(moves):
        assert old == before, f"a move out of {old} after the ticket went to {before}: {moves}"
        assert lifecycle.can_move(old, new), f"{old} -> {new} is not in the table: {moves}"
    assert moves[-1][1] == ticket.status
    assert (ticket.resolved_at is not None) == (ticket.status in ("resolved", "closed")), (
        f"{ticket.status} with resolved_at {ticket.resolved_at}"
    )
    return ticket


def _pending_ticket(agent: StaffUser) -> int:
    """A committed ticket of ann@example.com's, waiting for her (pending_customer)."""
    service = TicketsService.from_config(db.session, current_app.config)
    actor = Actor.staff(agent)
    ticket = service.open_ticket(
        subject="Router keeps rebooting",
        description="Every hour or so.",
        requester_email="ann@example.com",
        channel="api",
        actor=actor,
    )
    db.session.commit()
    for target in ("open", "in_progress", "pending_customer"):
        service.change_status(service.get(ticket.number), target, actor=actor)
        db.session.commit()
    assert ticket.number is not None
    return ticket.number


@on_postgresql
@pytest.mark.parametrize("route", ["direct", "pgbouncer"])
def test_mail_reply_racing_a_resolution_reopens_the_resolved_ticket(
    app, agent, database_url, route, request, monkeypatch
):
    """The reviewer's race: an agent resolves a ticket waiting for the customer while
    her mail reply, which loaded the ticket before, is being taken in. The reply must
    see `resolved` and reopen it, not move a `pending_customer` that is gone."""
    number = _pending_ticket(agent)
    url = database_url
    if route == "pgbouncer":
        url = request.getfixturevalue("pgbouncer").url(make_url(database_url).database)
    workers = make_app(url)
    order = Interleaving()
    find_ticket = matching.find_ticket

    def find_then_wait(*args: object, **kwargs: object) -> object:
        found = find_ticket(*args, **kwargs)  # type: ignore[arg-type]
        order.after_load("second")
        return found

    monkeypatch.setattr(matching, "find_ticket", find_then_wait)

    def agent_resolves() -> str:
        with workers.app_context():
            service = TicketsService.from_config(db.session, workers.config)
            ticket = service.get(number)
            order.after_load("first")
            staff = db.session.get(StaffUser, agent.id)
            assert staff is not None
            service.change_status(ticket, "resolved", actor=Actor.staff(staff), reason="fixed the firmware")
            order.after_first_change()
            status = ticket.status  # read before the commit expires it
            db.session.commit()
            return status

    def customer_replies() -> Outcome:
        with workers.app_context():
            mail = message(subject=f"Re: [TKT-{number:06d}] Router keeps rebooting", body="Still rebooting.")
            return ingest(
                mail.as_bytes(), Envelope("ann@example.com", (SUPPORT,), "smtp"), workers.config
            ).outcome

    try:
        results = order.run(agent_resolves, customer_replies)
    finally:
        with workers.app_context():
            db.engine.dispose()
    assert results == {"first": "resolved", "second": Outcome.APPENDED}

    ticket = _assert_consistent(
        number, _legal_finals("pending_customer", _staff_move("resolved"), _customer_reply)
    )
    assert ticket.status == "reopened"  # the reply came after the resolution's commit


@on_postgresql
def test_two_status_changes_through_the_api_the_second_sees_the_first(app, agent, api, monkeypatch):
    """Two agents move one `pending_customer` ticket at once, one to `resolved`, one
    (a moment later) to `in_progress`. The later one must be judged against
    `resolved` and refused with 409, as if the two had clicked one after the other."""
    number = _pending_ticket(agent)
    order = Interleaving()
    get, change_status = TicketsService.get, TicketsService.change_status

    def get_then_wait(self: TicketsService, *args: Any, **kwargs: Any) -> Ticket:
        ticket = get(self, *args, **kwargs)
        order.after_load(threading.current_thread().name)
        return ticket

    def change_then_wait(self: TicketsService, *args: Any, **kwargs: Any) -> Ticket:
        ticket = change_status(self, *args, **kwargs)
        if threading.current_thread().name == "first":
            order.after_first_change()
        return ticket

    monkeypatch.setattr(TicketsService, "get", get_then_wait)
    monkeypatch.setattr(TicketsService, "change_status", change_then_wait)

    def move_to(target: str) -> Callable[[], object]:
        def request() -> object:
            client = ApiClient(app.test_client(), api.token)
            response = client.post(f"/tickets/{number}/status", {"status": target})
            return response.status_code, response.get_json()

        return request

    results = order.run(move_to("resolved"), move_to("in_progress"))
    monkeypatch.undo()

    assert results["first"][0] == 200, results  # type: ignore[index]
    status, body = results["second"]  # type: ignore[misc]
    assert status == 409, results
    assert "resolved" in str(body)
    _assert_consistent(
        number, _legal_finals("pending_customer", _staff_move("resolved"), _staff_move("in_progress"))
    )


@on_postgresql
@pytest.mark.parametrize(
    ("start", "first", "second"),
    [
        ((), ["vip"], ["olt-norte"]),  # the second saved as if the first had not happened
        (("fibra",), ["fibra", "vip"], ["fibra", "olt-norte"]),  # both wrote fibra: a 500
    ],
)
def test_two_agents_setting_tags_on_one_ticket_at_once_the_second_sees_the_first(
    app, agent, api, monkeypatch, start, first, second
):
    """Two agents save a ticket's tags at once (the ticket page, the API's PUT), both
    having read it before either saved. Unlocked, the second read the tags as they were
    before the first save: it left the first one's tags beside its own while its
    history row said they were gone, or it wrote a tag the first had just written too
    and failed on the primary key. The ticket's lock makes the second save wait, then
    see the first one's tags: its set is the one kept, and the history is one chain."""
    number = _pending_ticket(agent)
    if start:
        service = TicketsService.from_config(db.session, app.config)
        tags.set_tags(service, service.get(number), list(start), Actor.staff(agent))
        db.session.commit()
    order = Interleaving()
    get, set_tags = TicketsService.get, tags.set_tags

    def get_then_wait(self: TicketsService, *args: Any, **kwargs: Any) -> Ticket:
        ticket = get(self, *args, **kwargs)
        order.after_load(threading.current_thread().name)
        return ticket

    def set_then_wait(*args: Any, **kwargs: Any) -> None:
        set_tags(*args, **kwargs)
        if threading.current_thread().name == "first":
            order.after_first_change()

    monkeypatch.setattr(TicketsService, "get", get_then_wait)
    monkeypatch.setattr(tags, "set_tags", set_then_wait)

    def save(names: list[str]) -> Callable[[], object]:
        def request() -> object:
            response = ApiClient(app.test_client(), api.token).put(f"/tickets/{number}/tags", {"tags": names})
            return response.status_code, response.get_json()["tags"]

        return request

    results = order.run(save(first), save(second), second_may_finish=True)
    monkeypatch.undo()

    # The first answer is read after the first commit, and the second save may have
    # committed by then: it shows one whole set, never a mix of the two.
    assert results["second"] == (200, second), results
    assert results["first"] in ((200, first), (200, second)), results
    db.session.rollback()
    ticket_id = TicketsService.from_config(db.session, app.config).get(number).id
    stored = db.session.execute(
        select(Tag.name).join(TicketTag, TicketTag.tag_id == Tag.id).where(TicketTag.ticket_id == ticket_id)
    ).scalars()
    assert sorted(stored) == second
    changes = db.session.execute(
        select(TicketHistory.old_value, TicketHistory.new_value)
        .where(TicketHistory.ticket_id == ticket_id, TicketHistory.field == "tags")
        .order_by(TicketHistory.id)
    ).all()
    saved = [", ".join(names) or None for names in (start, first, second)]
    assert changes[-2:] == [(saved[0], saved[1]), (saved[1], saved[2])], changes


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_on_sqlite_a_second_worker_cannot_even_read_a_ticket_being_changed(app, agent, database_url):
    """Why SQLite needs no row lock: a transaction holds the write lock from its first
    statement (`BEGIN IMMEDIATE`), so a second worker waits before it has read the
    ticket at all (here past a short busy timeout, so it fails instead of waiting)."""
    number = _pending_ticket(agent)
    TicketsService.from_config(db.session, app.config).get(number)  # the first worker's read
    impatient = make_app(database_url, SQLITE_BUSY_TIMEOUT_MS=200)
    outcome: list[BaseException | Ticket] = []

    def second_reads() -> None:
        with impatient.app_context():
            try:
                outcome.append(TicketsService.from_config(db.session, impatient.config).get(number))
            except OperationalError as exc:
                outcome.append(exc)
            db.session.remove()
            db.engine.dispose()

    worker = threading.Thread(target=second_reads)
    worker.start()
    worker.join(WAIT)
    db.session.rollback()
    assert len(outcome) == 1 and isinstance(outcome[0], OperationalError), outcome
    assert "database is locked" in str(outcome[0])


@on_postgresql
def test_two_bulk_actions_naming_tickets_in_opposite_orders_both_finish(app, agent, monkeypatch):
    """Agent A assigns TKT-1 and TKT-2, agent B the same two named the other way
    round, at once. Changed in the order named, each would hold the ticket the other
    waits for, and PostgreSQL would abort one of them as a deadlock; locked up front
    in id order, B waits for A and then both are done."""
    numbers = [_pending_ticket(agent), _pending_ticket(agent)]
    changed: dict[str, threading.Event] = {"a": threading.Event(), "b": threading.Event()}
    go = threading.Event()
    update = TicketsService.update

    def update_then_wait(self: TicketsService, *args: Any, **kwargs: Any) -> Ticket:
        ticket = update(self, *args, **kwargs)
        role = threading.current_thread().name
        if not changed[role].is_set():  # after each one's first ticket
            changed[role].set()
            assert go.wait(WAIT), "never let go"
        return ticket

    monkeypatch.setattr(TicketsService, "update", update_then_wait)
    results: dict[str, object] = {}

    def assign(role: str, order: list[int]) -> None:
        with app.app_context():
            try:
                service = TicketsService.from_config(db.session, app.config)
                staff = db.session.get(StaffUser, agent.id)
                assert staff is not None
                done = bulk.apply(
                    db.session, service, order, "assign", Actor.staff(staff), assignee_id=agent.id
                )
                db.session.commit()
                results[role] = done.done
            except Exception as exc:  # a deadlock, reported below
                results[role] = exc

    threads = [
        threading.Thread(target=assign, args=("a", numbers), name="a"),
        threading.Thread(target=assign, args=("b", numbers[::-1]), name="b"),
    ]
    for thread in threads:
        thread.start()
    try:
        # Both hold their first ticket (the deadlock to come), or one waits for the other.
        wait_until(
            lambda: (
                all(event.is_set() for event in changed.values())
                or (any(event.is_set() for event in changed.values()) and _someone_waits_for_a_lock())
            ),
            timeout=WAIT,
            between=db.session.rollback,
            what=lambda: f"both bulk actions under way ({results})",
        )
    finally:
        go.set()
        for thread in threads:
            thread.join(WAIT)
    monkeypatch.undo()

    names = [f"TKT-{number:06d}" for number in numbers]
    assert results == {"a": names, "b": names[::-1]}


@on_postgresql
def test_two_senders_fixing_two_tickets_languages_in_opposite_orders_both_finish(app, agent, monkeypatch):
    """A claim fixes the language of each ticket whose first customer mail it renders.
    Sender A claims the acknowledgments of TKT-1 and TKT-2; sender B, skipping A's
    rows, the replies on TKT-2 and TKT-1. Fixed in the batch's order, each held the
    ticket the other waited for, and PostgreSQL aborted one claim as a deadlock (its
    rows waited for the next round). Fixed in ticket-id order before anything is
    rendered, B waits for A and both batches go."""
    service = TicketsService.from_config(db.session, app.config)
    actor = Actor.staff(agent)
    first, second = (
        service.open_ticket(
            subject=f"T{n}", description="x", requester_email=email, channel="web", actor=actor
        )
        for n, email in ((1, "ann@example.com"), (2, "bob@example.com"))
    )
    db.session.commit()
    for ticket in (second, first):
        service.add_message(ticket, body="On it.", actor=actor, channel="web")
        db.session.commit()
    assert (first.language, second.language) == ("", "")  # fixed by the first customer mail
    fixed: dict[str, threading.Event] = {"a": threading.Event(), "b": threading.Event()}
    go = threading.Event()
    thread_language = Composer._thread_language

    def fix_then_wait(self: Composer, session: Any, ticket: Ticket) -> str:
        language = thread_language(self, session, ticket)
        role = threading.current_thread().name
        if not fixed[role].is_set():  # after each one's first ticket
            fixed[role].set()
            assert go.wait(WAIT), "never let go"
        return language

    monkeypatch.setattr(Composer, "_thread_language", fix_then_wait)
    relay = Sink().start()
    app.config.update(OUTBOUND_SMTP_URL=relay.url, OUTBOUND_BATCH_SIZE=2)
    results: dict[str, object] = {}

    def send(role: str) -> None:
        try:
            results[role] = Sender(app).run_once()
        except Exception as exc:  # a deadlock, reported below
            results[role] = exc

    threads = {role: threading.Thread(target=send, args=(role,), name=role) for role in fixed}
    try:
        threads["a"].start()
        assert fixed["a"].wait(WAIT), "sender A never fixed a language"
        threads["b"].start()  # A's rows are locked: B claims the other two
        wait_until(
            lambda: fixed["b"].is_set() or _someone_waits_for_a_lock(),
            timeout=WAIT,
            between=db.session.rollback,
            what=lambda: f"both senders under way ({results})",
        )
    finally:
        go.set()
        for thread in threads.values():
            thread.join(WAIT)
        relay.stop()
    monkeypatch.undo()
    assert results == {"a": 2, "b": 2}
    db.session.rollback()
    states = db.session.execute(select(OutboxMessage.state)).scalars().all()
    assert states == ["sent"] * 4 and len(relay.received) == 4


@on_postgresql
def test_merge_into_a_merged_ticket_and_a_bulk_action_on_its_survivor_both_finish(app, agent, monkeypatch):
    """TKT-2 is merged into TKT-1; an agent merges TKT-3 into TKT-2 while another
    bulk-assigns TKT-1 and TKT-3. The merge locked TKT-2 and TKT-3, found the survivor
    TKT-1 and then locked it while holding TKT-3; the bulk action held TKT-1 and
    waited for TKT-3, so PostgreSQL aborted one as a deadlock (the reviewer's
    reproduction). Locking source, named target and survivor in one id-ordered
    statement, the bulk action waits for the merge and then both are done."""
    one, two, three = (_pending_ticket(agent) for _ in range(3))
    service = TicketsService.from_config(db.session, app.config)
    service.merge(service.get(two), service.get(one), actor=Actor.staff(agent), reason="same outage")
    db.session.commit()

    def merge(service: TicketsService, actor: Actor) -> object:
        merged = service.merge(service.get(three), service.get(two), actor=actor, reason="same outage")
        return service.display_number(merged)

    def assign(service: TicketsService, actor: Actor) -> object:
        done = bulk.apply(db.session, service, [one, three], "assign", actor, assignee_id=agent.id)
        return done.done, done.refused

    results = _behind_the_merge_s_first_lock(app, agent, monkeypatch, merge, ("bulk", assign))
    names = [f"TKT-{number:06d}" for number in (one, two, three)]
    assert results == {"merge": names[0], "bulk": ([names[0], names[2]], [])}, results
    db.session.rollback()
    stored = {
        ticket.number: ticket
        for ticket in db.session.execute(select(Ticket).execution_options(populate_existing=True)).scalars()
    }
    assert stored[three].merged_into_id == stored[one].id
    assert stored[three].status == "closed"
    assert stored[one].assignee_id == stored[three].assignee_id == agent.id


@on_postgresql
def test_a_merge_locks_the_tickets_merged_into_its_source_in_id_order(app, agent, monkeypatch):
    """TKT-1 was merged into TKT-3; an agent merges TKT-3 into TKT-2, which moves TKT-1
    to TKT-2 too (no chain of merges). Meanwhile Ann replies on TKT-1, which locks
    TKT-1 and its survivor. Had the merge changed TKT-1 after locking TKT-2 and TKT-3,
    it would wait for the reply holding TKT-1 while the reply waited for TKT-3: a
    deadlock. TKT-1 is locked in the merge's id-ordered statement, so the reply
    waits, then finds TKT-1's survivor moved on and lands on TKT-2."""
    from helpdesk.models import Message

    one, two, three = (_pending_ticket(agent) for _ in range(3))
    service = TicketsService.from_config(db.session, app.config)
    service.merge(service.get(one), service.get(three), actor=Actor.staff(agent), reason="same outage")
    db.session.commit()
    ids = {n: service.get(n).id for n in (one, two, three)}

    def merge(service: TicketsService, actor: Actor) -> object:
        return service.display_number(service.merge(service.get(three), service.get(two), actor=actor))

    def reply(service: TicketsService, actor: Actor) -> object:
        ann = Actor.customer("ann@example.com")
        written = service.add_message(service.get(one), body="Still down.", actor=ann, channel="email")
        return service.display_number(written.ticket)

    results = _behind_the_merge_s_first_lock(app, agent, monkeypatch, merge, ("reply", reply))
    assert results == {"merge": f"TKT-{two:06d}", "reply": f"TKT-{two:06d}"}, results
    db.session.rollback()
    merged = dict(
        db.session.execute(
            select(Ticket.number, Ticket.merged_into_id).where(Ticket.merged_into_id.is_not(None))
        ).all()
    )
    assert merged == {one: ids[two], three: ids[two]}, merged
    written = (
        db.session.execute(select(Message.ticket_id).where(Message.body == "Still down.")).scalars().all()
    )
    assert written == [ids[two]]


@on_postgresql
def test_a_merge_whose_survivor_moves_before_its_locks_gives_them_back_and_locks_the_new_one(
    app, agent, monkeypatch
):
    """An agent merges TKT-4 into TKT-3; after the merge read the chain (TKT-3 is its
    own survivor) but before it locked anything, TKT-3 is merged into TKT-1. Under its
    locks the merge sees the survivor moved to a ticket with a lower id than it holds,
    so it must give its locks back before taking TKT-1 (locking it on top would be out
    of id order): the rows it held are free again, then it merges into TKT-1."""
    from helpdesk.services import tickets as tickets_module

    one, _, three, four = (_pending_ticket(agent) for _ in range(4))
    read_survivor, lock_for_change = tickets_module.survivor, tickets_module.lock_for_change
    merged_meanwhile = threading.Event()
    locks: list[tuple[list[int], bool]] = []  # (ids, could another worker take TKT-4)

    def merge_three_into_one() -> None:
        with app.app_context():
            service = TicketsService.from_config(db.session, app.config)
            service.merge(service.get(three), service.get(one), actor=Actor.staff(agent), reason="outage")
            db.session.commit()

    def survivor_then_merge(session: Any, ticket: Ticket) -> Ticket:
        found = read_survivor(session, ticket)
        if not merged_meanwhile.is_set():
            merged_meanwhile.set()
            other = threading.Thread(target=merge_three_into_one, name="other")
            other.start()
            other.join(WAIT)
        return found

    def four_is_free() -> bool:
        with db.engine.connect() as connection:
            try:
                connection.execute(
                    text("SELECT id FROM tickets WHERE number = :n FOR NO KEY UPDATE NOWAIT"), {"n": four}
                )
            except OperationalError:
                return False
            finally:
                connection.rollback()
        return True

    def lock_and_record(session: Any, *tickets: Ticket, **options: Any) -> set[int]:
        if threading.current_thread().name != "other":
            locks.append((sorted(t.number for t in tickets), four_is_free()))
        return lock_for_change(session, *tickets, **options)

    monkeypatch.setattr(tickets_module, "survivor", survivor_then_merge)
    monkeypatch.setattr(tickets_module, "lock_for_change", lock_and_record)
    service = TicketsService.from_config(db.session, app.config)
    into = service.merge(service.get(four), service.get(three), actor=Actor.staff(agent), reason="outage")
    db.session.commit()
    monkeypatch.undo()

    assert into.number == one
    assert locks == [([three, four], True), ([one, three, four], True)], locks
    db.session.rollback()
    merged = db.session.execute(
        select(Ticket.number, Ticket.merged_into_id).where(Ticket.merged_into_id.is_not(None))
    ).all()
    one_id = service.get(one).id
    assert sorted(merged) == [(three, one_id), (four, one_id)]


@on_postgresql
def test_a_mail_whose_ticket_is_merged_after_matching_locks_the_survivor_in_id_order(app, agent, monkeypatch):
    """A customer's reply matched TKT-3; before the gateway locked it, TKT-3 was merged
    into TKT-1. The gateway locked TKT-3 and then, holding it, TKT-1: out of id order,
    the deadlock a bulk action on both gives the merge (see above). It must give
    TKT-3 back before it takes TKT-1 with it, and the reply lands on TKT-1. Seen at
    the database: every row lock on tickets the mail takes, and whether another
    worker could take TKT-3 at that moment."""
    from sqlalchemy import event

    one, _, three = (_pending_ticket(agent) for _ in range(3))
    ids = {
        n: db.session.execute(select(Ticket.id).where(Ticket.number == n)).scalar_one() for n in (one, three)
    }
    find_ticket = matching.find_ticket

    def merge_three_into_one() -> None:
        with app.app_context():
            service = TicketsService.from_config(db.session, app.config)
            service.merge(service.get(three), service.get(one), actor=Actor.staff(agent), reason="outage")
            db.session.commit()

    def find_then_merge(*args: object, **kwargs: object) -> object:
        found = find_ticket(*args, **kwargs)  # type: ignore[arg-type]
        other = threading.Thread(target=merge_three_into_one, name="other")
        other.start()
        other.join(WAIT)
        return found

    def three_is_free() -> bool:
        with db.engine.connect() as connection:
            try:
                connection.execute(
                    text("SELECT id FROM tickets WHERE id = :id FOR NO KEY UPDATE NOWAIT"), {"id": ids[three]}
                )
            except OperationalError:
                return False
            finally:
                connection.rollback()
        return True

    locks: list[tuple[list[int], bool]] = []

    def record(conn: Any, cursor: Any, statement: str, parameters: Any, *rest: Any) -> None:
        if (
            threading.current_thread().name == "MainThread"
            and "FROM tickets" in statement
            and "FOR NO KEY UPDATE" in statement
            and "NOWAIT" not in statement
        ):
            locks.append((sorted(v for v in parameters.values() if isinstance(v, int)), three_is_free()))

    monkeypatch.setattr(matching, "find_ticket", find_then_merge)
    event.listen(db.engine, "before_cursor_execute", record)
    try:
        mail = message(subject=f"Re: [TKT-{three:06d}] Router keeps rebooting", body="Still rebooting.")
        result = ingest(mail.as_bytes(), Envelope("ann@example.com", (SUPPORT,), "smtp"), app.config)
    finally:
        event.remove(db.engine, "before_cursor_execute", record)
        monkeypatch.undo()

    assert result.outcome is Outcome.APPENDED, result
    assert result.ticket_number == f"TKT-{one:06d}", result
    assert locks[:2] == [([ids[three]], True), (sorted(ids.values()), True)], locks
    # Later changes lock again only what the mail holds already.
    assert all(set(locked) <= set(ids.values()) for locked, _ in locks[2:]), locks


def _before_the_first_lock(monkeypatch: pytest.MonkeyPatch, meanwhile: Callable[[], None]) -> threading.Event:
    """Run `meanwhile` to its end in another thread when this thread first locks
    tickets for a change (`lock_for_change`), after it read them: a change another
    session commits between a writer's read and its lock. The event is set once it ran."""
    from helpdesk.services import tickets as tickets_module

    lock_for_change = tickets_module.lock_for_change
    ran = threading.Event()

    def meanwhile_then_lock(session: Any, *tickets: Ticket, **options: Any) -> set[int]:
        if threading.current_thread().name != "meanwhile" and not ran.is_set():
            ran.set()
            other = threading.Thread(target=meanwhile, name="meanwhile")
            other.start()
            other.join(WAIT)
        return lock_for_change(session, *tickets, **options)

    monkeypatch.setattr(tickets_module, "lock_for_change", meanwhile_then_lock)
    return ran


@on_postgresql
@pytest.mark.parametrize("writer", ["customer", "agent"])
def test_a_message_on_a_ticket_merged_after_it_was_read_follows_the_merge(app, agent, monkeypatch, writer):
    """Ann's assistant comments on TKT-3 (an agent notes on it); after the assistant
    read TKT-3 as hers and unmerged, but before the comment locked it, TKT-3 is
    merged into TKT-1. The comment was written on TKT-3 and reopened it (closed →
    reopened), a merged ticket worked as a live one while its mail went to TKT-1. A
    customer's message follows the merge to the survivor, as a later one would; an
    agent's note stays on the ticket they wrote on, as it would a moment later, and
    moves nothing (docs/lifecycle.md, "Concurrent changes")."""
    from helpdesk.models import Contact, Message
    from helpdesk.services.assistant import AssistantService, Customer

    one, _, three = (_pending_ticket(agent) for _ in range(3))
    ids = {
        n: db.session.execute(select(Ticket.id).where(Ticket.number == n)).scalar_one() for n in (one, three)
    }

    def merge_three_into_one() -> None:
        with app.app_context():
            service = TicketsService.from_config(db.session, app.config)
            service.merge(service.get(three), service.get(one), actor=Actor.staff(agent), reason="outage")
            db.session.commit()

    # The writer read TKT-3 unmerged; the merge commits before it locks.
    merged = _before_the_first_lock(monkeypatch, merge_three_into_one)
    if writer == "customer":
        ann = db.session.execute(select(Contact).where(Contact.email == "ann@example.com")).scalar_one()
        output = AssistantService(db.session, app.config).call(
            Customer(ann, "en"),
            "add_ticket_comment",
            json.dumps({"ticketId": f"TKT-{three:06d}", "text": "Still rebooting."}),
            "chat",
        )
        assert output == {
            "success": True,
            "ticketId": f"TKT-{one:06d}",
            "message": f"Comment added to ticket TKT-{one:06d}",
        }, output
    else:
        service = TicketsService.from_config(db.session, app.config)
        service.add_message(
            service.get(three),
            body="Still rebooting.",
            actor=Actor.staff(agent),
            channel="web",
            internal=True,
        )
        db.session.commit()
    monkeypatch.undo()

    assert merged.is_set()
    db.session.rollback()
    written = db.session.execute(select(Message.ticket_id).where(Message.body == "Still rebooting.")).all()
    assert written == [(ids[one] if writer == "customer" else ids[three],)], written
    stored = dict(
        db.session.execute(select(Ticket.number, Ticket.status).where(Ticket.number.in_([one, three]))).all()
    )
    assert stored[three] == "closed", stored
    assert stored[one] == ("in_progress" if writer == "customer" else "pending_customer"), stored


@on_postgresql
def test_a_comment_refused_on_a_strangers_survivor_is_answered_as_not_found(app, agent, monkeypatch):
    """Lu, known by phone only, comments through WhatsApp on her TKT-2; after the
    assistant read it as hers, an agent merges it into Ann's TKT-1 and cancels that.
    The comment was refused for the survivor's status ("the ticket is cancelled"):
    Lu learned the state of a ticket that is not hers. (A merge makes her a
    participant of the survivor now; here she is left out, as merges before that
    rule left phone-only customers.) The answer is the one she gets a moment later,
    without the race: not found."""
    from sqlalchemy import delete

    from helpdesk.models import Message, Participant
    from helpdesk.services import contacts
    from helpdesk.services.assistant import AssistantService, Customer

    one = _pending_ticket(agent)
    lu = contacts.for_customer(
        db.session, email=None, phone="+5215512345678", phone_vouched=True, name="Lu", language="es"
    )
    db.session.commit()
    assistant = AssistantService(db.session, app.config)
    created = assistant.call(
        Customer(lu, "es"),
        "create_ticket_report",
        json.dumps({"title": "Sin internet", "description": "x"}),
        "whatsapp",
    )
    two = created["ticketId"]
    lu_address = lu.email

    def merge_and_cancel() -> None:
        with app.app_context():
            service = TicketsService.from_config(db.session, app.config)
            staff = Actor.staff(agent)
            service.merge(service.get(two), service.get(one), actor=staff, reason="same line")
            db.session.execute(delete(Participant).where(Participant.email == lu_address))
            db.session.commit()
            service.change_status(service.get(one), "cancelled", actor=staff, reason="wrong account")
            db.session.commit()

    comment = json.dumps({"ticketId": two, "text": "¿Hola?"})
    done = _before_the_first_lock(monkeypatch, merge_and_cancel)
    raced = assistant.call(Customer(lu, "es"), "add_ticket_comment", comment, "whatsapp")
    monkeypatch.undo()
    assert done.is_set()
    db.session.rollback()
    later = assistant.call(Customer(lu, "es"), "add_ticket_comment", comment, "whatsapp")
    assert raced == later and "cancel" not in json.dumps(raced), raced
    assert db.session.execute(select(Message.id).where(Message.body == "¿Hola?")).all() == []


# -- the SLA check and a bulk action at the same moment --------------------------


@on_postgresql
def test_the_sla_check_and_a_bulk_action_on_its_overdue_tickets_both_finish(app, agent):
    """TKT-1 and TKT-2 are overdue for a first response; an agent's change holds
    TKT-1, and a bulk assign of both waits for it (tickets are locked in id order).
    The SLA check marked them with one UPDATE, which locked its rows in the order its
    plan visits them: TKT-2 first (due earlier by the watch index, and before TKT-1's
    rewritten row in the table), then it waited for TKT-1 too. When the agent
    committed, the bulk action took TKT-1 and waited for TKT-2: PostgreSQL aborted one
    of the two as a deadlock. The check now takes its rows in id order and skips the
    ones someone holds: it marks TKT-2 and waits for nothing, the bulk action waits
    for it, and the next run marks TKT-1."""
    from sqlalchemy import update

    from helpdesk.services.lifecycle_jobs import check_sla

    agent_id = agent.id  # read here: the workers must not load it through this session
    service = TicketsService.from_config(db.session, app.config)
    numbers = []
    for subject in ("No signal", "Slow line"):
        opened = service.open_ticket(
            subject=subject,
            description="Since this morning.",
            requester_email="ann@example.com",
            channel="api",
            actor=Actor.staff(agent),
        )
        db.session.commit()
        assert opened.number is not None
        numbers.append(opened.number)
    one, two = numbers
    for number, hours in ((two, 3), (one, 2)):  # TKT-2 due first, TKT-1 written last
        db.session.execute(
            update(Ticket)
            .where(Ticket.number == number)
            .values(first_response_due_at=now() - timedelta(hours=hours))
        )
        db.session.commit()
    agent_holds, release = threading.Event(), threading.Event()
    results: dict[str, object] = {}

    def run(role: str, job: Callable[[TicketsService, Actor], object]) -> None:
        with app.app_context():
            try:
                staff = db.session.get(StaffUser, agent_id)
                assert staff is not None
                results[role] = job(TicketsService.from_config(db.session, app.config), Actor.staff(staff))
                db.session.commit()
            except Exception as exc:  # a deadlock, reported below
                db.session.rollback()
                results[role] = exc

    def agent_assigns_one(service: TicketsService, actor: Actor) -> object:
        assigned = service.assign(service.get(one), agent_id, actor=actor)
        agent_holds.set()
        assert release.wait(WAIT), "never let go"
        return service.display_number(assigned)

    def bulk_assigns_both(service: TicketsService, actor: Actor) -> object:
        return bulk.apply(db.session, service, [one, two], "assign", actor, assignee_id=agent_id).done

    def sla_check(service: TicketsService, actor: Actor) -> object:
        return [breach.ticket_id for breach in check_sla(db.session, app.config).breaches]

    threads = {
        role: threading.Thread(target=run, args=(role, job), name=role)
        for role, job in (("agent", agent_assigns_one), ("bulk", bulk_assigns_both), ("sla", sla_check))
    }
    try:
        threads["agent"].start()
        assert agent_holds.wait(WAIT), f"the agent's change never happened ({results})"
        threads["bulk"].start()
        wait_until(
            _someone_waits_for_a_lock,
            timeout=WAIT,
            between=db.session.rollback,
            what=lambda: f"the bulk action waiting for the agent ({results})",
        )
        threads["sla"].start()
        wait_until(
            lambda: "sla" in results or _someone_waits_for_a_lock(at_least=2),
            timeout=WAIT,
            between=db.session.rollback,
            what=lambda: f"the SLA check done or waiting ({results})",
        )
    finally:
        release.set()
        for thread in threads.values():
            if thread.is_alive():
                thread.join(WAIT)

    ids = dict(db.session.execute(select(Ticket.number, Ticket.id)).all())
    names = [f"TKT-{number:06d}" for number in (one, two)]
    assert results == {"agent": names[0], "bulk": names, "sla": [ids[two]]}, results
    db.session.rollback()
    later = check_sla(db.session, app.config)  # the next run marks the ticket skipped
    db.session.commit()
    assert [breach.ticket_id for breach in later.breaches] == [ids[one]]
    marked = db.session.execute(
        select(Ticket.number, Ticket.first_response_breached, Ticket.assignee_id).order_by(Ticket.number)
    ).all()
    assert marked == [(one, True, agent_id), (two, True, agent_id)]
    history = db.session.execute(
        select(TicketHistory.ticket_id).where(TicketHistory.field == "sla")
    ).scalars()
    assert sorted(history) == sorted(ids.values())


# -- two reviewers approving one held mail at the same moment -------------------


@on_postgresql
def test_two_reviewers_approving_one_held_mail_at_once_open_one_ticket(app, agent, monkeypatch):
    """Two staff members approve the same quarantined mail at once. Each read the item
    as `pending` and ran it through the pipeline: two tickets, two acknowledgments,
    both reviewers told "created" (reported on PostgreSQL; SQLite serialises the two
    from their first read). The item's row is locked before its state is judged, so
    the second waits and is then told it was approved already."""
    from helpdesk.inbound import quarantine
    from helpdesk.models import QuarantineItem

    held = ingest(
        message(sender="stranger@unknown.example", subject="Let me in").as_bytes(),
        Envelope("stranger@unknown.example", (SUPPORT,), "smtp"),
        app.config,
    )
    assert held.outcome is Outcome.QUARANTINED
    item_id = db.session.execute(select(QuarantineItem.id)).scalar_one()
    first_decided, release = threading.Event(), threading.Event()
    decide_item = quarantine._decide

    def decide_then_wait(*args: Any) -> None:
        decide_item(*args)
        if threading.current_thread().name == "first":
            first_decided.set()
            assert release.wait(WAIT), "never let go"

    monkeypatch.setattr(quarantine, "_decide", decide_then_wait)
    results: dict[str, object] = {}

    def approve(role: str) -> None:
        if role == "second":
            assert first_decided.wait(WAIT), "the first approval never happened"
        with app.app_context():
            try:
                staff = db.session.get(StaffUser, agent.id)
                assert staff is not None
                result = quarantine.approve(db.session, item_id, Actor.staff(staff), app.config)
                db.session.commit()
                results[role] = (result.outcome, result.ticket_number)
            except Exception as exc:  # the refusal, checked below
                db.session.rollback()
                results[role] = exc

    threads = [threading.Thread(target=approve, args=(role,), name=role) for role in ("first", "second")]
    for thread in threads:
        thread.start()
    try:
        assert first_decided.wait(WAIT), f"the first approval never happened: {results}"
        wait_until(
            _someone_waits_for_a_lock,
            timeout=WAIT,
            between=db.session.rollback,
            what=lambda: f"the second approval waiting for the first ({results})",
        )
    finally:
        release.set()
        for thread in threads:
            thread.join(WAIT)
    monkeypatch.undo()

    assert results["first"] == (Outcome.CREATED, "TKT-000001"), results
    assert "already approved" in str(results["second"]), results
    db.session.rollback()
    assert db.session.execute(select(Ticket.number)).scalars().all() == [1]


@on_postgresql
@pytest.mark.parametrize("length", [2, 3])
def test_rejecting_a_held_follow_up_waits_for_the_approval_of_the_mail_it_follows(
    app, agent, admin, monkeypatch, length
):
    """Under `own`, an admin approves Kim's held mail M1 into a ticket hidden from the
    agent while the agent rejects her held follow-up M2. The agent's check read M1's
    row before the approval committed (no ticket yet) and rejected a message of the
    hidden ticket; it now reads it under a share lock, waits for the approval and is
    told not found, M2 still held. So for M3 of M3 → M2 → M1: every held mail up the
    thread is share-locked, not only the one M3 answers."""
    from helpdesk.errors import NotFound
    from helpdesk.inbound import quarantine
    from helpdesk.models import QuarantineItem

    app.config["AGENT_VISIBILITY"] = "own"
    kim = "kim@stranger.example"
    envelope = Envelope(kim, (SUPPORT,), "smtp")
    ingest(message(sender=kim, message_id="<m1@stranger.example>").as_bytes(), envelope, app.config)
    for n in range(2, length + 1):
        answer = message(
            sender=kim, message_id=f"<m{n}@stranger.example>", in_reply_to=f"<m{n - 1}@stranger.example>"
        )
        ingest(answer.as_bytes(), envelope, app.config)
    items = db.session.execute(select(QuarantineItem.id).order_by(QuarantineItem.id)).scalars().all()
    one, two = items[0], items[-1]
    approving, release = threading.Event(), threading.Event()
    decide_item = quarantine._decide

    def decide_then_wait(*args: Any) -> None:
        decide_item(*args)
        if threading.current_thread().name == "admin":
            approving.set()
            assert release.wait(WAIT), "never let go"

    monkeypatch.setattr(quarantine, "_decide", decide_then_wait)
    results: dict[str, object] = {}

    def admin_approves() -> None:
        with app.app_context():
            staff = db.session.get(StaffUser, admin.id)
            assert staff is not None
            results["admin"] = quarantine.approve(db.session, one, Actor.staff(staff), app.config).outcome
            db.session.commit()

    def agent_rejects() -> None:
        assert approving.wait(WAIT), "the approval never happened"
        with app.app_context():
            try:
                staff = db.session.get(StaffUser, agent.id)
                assert staff is not None
                quarantine.reject(db.session, two, Actor.staff(staff), "own")
                db.session.commit()
                results["agent"] = "rejected"
            except NotFound as exc:
                db.session.rollback()
                results["agent"] = exc

    threads = [
        threading.Thread(target=admin_approves, name="admin"),
        threading.Thread(target=agent_rejects, name="agent"),
    ]
    for thread in threads:
        thread.start()
    try:
        assert approving.wait(WAIT), f"the approval never happened: {results}"
        wait_until(
            _someone_waits_for_a_lock,
            timeout=WAIT,
            between=db.session.rollback,
            what=lambda: f"the agent waiting for the approval ({results})",
        )
    finally:
        release.set()
        for thread in threads:
            thread.join(WAIT)
    monkeypatch.undo()

    assert results["admin"] is Outcome.CREATED, results
    assert isinstance(results["agent"], NotFound), results
    db.session.rollback()
    assert db.session.get(QuarantineItem, two).state == "pending"


# -- a customer's contact and a ticket of theirs at the same moment -------------


@on_postgresql
def test_a_chat_ticket_and_an_agents_ticket_for_one_contact_both_open(app, agent):
    """A chat opens a ticket for Ann (her contact locked by `contacts.current`, then
    the number counter) while an agent opens one for her (the counter, then the
    foreign key's KEY SHARE lock on her contact). With the contact locked FOR UPDATE
    the agent held the counter waiting for the contact and the chat waited for the
    counter: PostgreSQL aborted one as a deadlock, and every ticket creation stalled
    meanwhile. FOR NO KEY UPDATE serialises the customer's requests without blocking
    a ticket that merely points at the contact."""
    from helpdesk.models import Contact
    from helpdesk.services import contacts, customer_limits

    agent_id = agent.id  # read here: the workers must not load it through this session
    ann_id = contacts.find_or_create(db.session, "ann@example.com", "Ann").id
    db.session.commit()
    order = Interleaving()

    def chat_opens() -> str | None:
        with app.app_context():
            found = db.session.get(Contact, ann_id)
            assert found is not None
            order.after_load("first")
            ann = contacts.current(db.session, found)
            order.after_first_change()
            assert customer_limits.may_open(db.session, ann, app.config)
            service = TicketsService.from_config(db.session, app.config)
            ticket = service.open_ticket(
                subject="Chat: no signal",
                description="Since this morning.",
                requester_email=ann.email,
                channel="chat",
                actor=Actor.customer(ann.email, ann.name),
            )
            db.session.commit()
            return ticket.subject

    def agent_opens() -> str | None:
        with app.app_context():
            order.after_load("second")
            staff = db.session.get(StaffUser, agent_id)
            assert staff is not None
            service = TicketsService.from_config(db.session, app.config)
            ticket = service.open_ticket(
                subject="Phone: no signal",
                description="She called.",
                requester_email="ann@example.com",
                channel="api",
                actor=Actor.staff(staff),
            )
            db.session.commit()
            return ticket.subject

    results = order.run(chat_opens, agent_opens, second_may_finish=True)
    assert results == {"first": "Chat: no signal", "second": "Phone: no signal"}, results
    db.session.rollback()
    opened = db.session.execute(select(Ticket.subject, Ticket.requester_id).order_by(Ticket.number)).all()
    assert sorted(opened) == [("Chat: no signal", ann_id), ("Phone: no signal", ann_id)]


@on_postgresql
def test_two_plus_addresses_of_one_mailbox_at_once_cannot_both_take_its_last_slot(app, monkeypatch):
    """The limits count a mailbox (`robot+t2@`, `robot+t3@` are one), so the lock that
    serialises the counting must cover the mailbox: each plus-address is a contact of
    its own, and locking the sender's contact alone let two mails at once both count
    one ticket and both open a second, with a limit of 2. The first mail is held after
    its count; the second must wait for it, and then finds the mailbox full."""
    from helpdesk.services.senders import SendersService

    SendersService(db.session).add("@corp.example", "Corp")
    db.session.commit()
    app.config.update(CUSTOMER_MAX_TICKETS_PER_HOUR=2)
    first_mail = ingest(
        message(sender="robot+t1@corp.example", subject="Alert 1").as_bytes(),
        Envelope("robot+t1@corp.example", (SUPPORT,), "smtp"),
        app.config,
    )
    assert first_mail.outcome is Outcome.CREATED
    db.session.remove()
    order = Interleaving()
    _hold_first_after_count(monkeypatch, order)

    def mail_from(role: str, sender: str) -> Callable[[], object]:
        def mail() -> object:
            with app.app_context():
                order.after_load(role)
                raw = message(sender=sender, subject=f"Alert from {sender}").as_bytes()
                return ingest(raw, Envelope(sender, (SUPPORT,), "smtp"), app.config).outcome

        return mail

    results = order.run(
        mail_from("first", "robot+t2@corp.example"), mail_from("second", "robot+t3@corp.example")
    )
    assert results == {"first": Outcome.CREATED, "second": Outcome.QUARANTINED}, results
    db.session.rollback()
    assert db.session.execute(select(func.count(Ticket.id))).scalar_one() == 2


PHONE = "+5215512345678"


def _phone_only_customer_with_a_ticket(agent: StaffUser) -> tuple[int, int]:
    """The id of a contact known by their WhatsApp number only, and the number of the
    committed ticket they have."""
    from helpdesk.services import contacts

    phone_only = contacts.for_customer(db.session, email=None, phone=PHONE, phone_vouched=True, name="Ann")
    db.session.commit()
    ticket = TicketsService.from_config(db.session, current_app.config).open_ticket(
        subject="No signal",
        description="Since this morning.",
        requester_email=phone_only.email,
        channel="api",
        actor=Actor.staff(agent),
    )
    db.session.commit()
    assert ticket.number is not None
    return phone_only.id, ticket.number


def _customer_gives_email(app: Any, order: Interleaving) -> Callable[[], str]:
    """The second worker: the customer proves an email from that number on WhatsApp
    (the code mailed there, asked for now, given back in the worker), and
    `contacts.bind_proven` merges the phone-only contact into the email's."""
    from helpdesk.services import email_proofs

    code = proofs.request(db.session, app.config, PHONE, "ann@example.com")

    def gives_email() -> str:
        with app.app_context():
            order.after_load("second")
            contact = email_proofs.confirm(db.session, app.config, PHONE, "ann@example.com", code, "Ann")
            db.session.commit()
            return contact.email

    return gives_email


@on_postgresql
def test_a_whatsapp_merge_and_a_language_change_on_its_ticket_both_finish(app, agent, monkeypatch):
    """Someone known by their WhatsApp number only has a ticket; an agent sets its
    language (the ticket locked, then the requester's contact written) while the
    customer proves an email on WhatsApp (`bind_proven` merges the phone-only contact
    into the email's: it locked both contacts, then moved the tickets). Each held what
    the other waited for. Tickets are locked before contacts everywhere, so the merge
    waits for the ticket, then moves it with the language the agent set."""
    from helpdesk.models import Contact
    from helpdesk.services import tickets as tickets_module

    agent_id = agent.id  # read here: the workers must not load it through this session
    phone_only_id, number = _phone_only_customer_with_a_ticket(agent)
    order = Interleaving()
    lock_for_change = tickets_module.lock_for_change

    def lock_then_wait(session: Any, *tickets: Ticket, **options: Any) -> set[int]:
        locked = lock_for_change(session, *tickets, **options)
        if threading.current_thread().name == "first" and not order.first_changed.is_set():
            order.after_first_change()
        return locked

    monkeypatch.setattr(tickets_module, "lock_for_change", lock_then_wait)

    def agent_sets_language() -> str | None:
        with app.app_context():
            staff = db.session.get(StaffUser, agent_id)
            assert staff is not None
            service = TicketsService.from_config(db.session, app.config)
            found = service.get(number)
            order.after_load("first")
            language = service.set_language(found, "es", actor=Actor.staff(staff)).language
            db.session.commit()
            return language

    results = order.run(agent_sets_language, _customer_gives_email(app, order))
    monkeypatch.undo()
    assert results == {"first": "es", "second": "ann@example.com"}, results
    db.session.rollback()
    ann = db.session.execute(select(Contact).where(Contact.email == "ann@example.com")).scalar_one()
    assert (ann.phone, ann.language) == (PHONE, "es")
    moved = db.session.execute(select(Ticket).where(Ticket.number == number)).scalar_one()
    assert (moved.requester_id, moved.language) == (ann.id, "es")
    assert db.session.get(Contact, phone_only_id).phone is None  # type: ignore[union-attr]


@on_postgresql
def test_a_ticket_opened_for_a_phone_only_contact_during_its_merge_moves_too(app, agent):
    """A WhatsApp ticket is being opened for someone known by number only (their
    contact locked by `contacts.current`) when they prove an email: the merge locks
    the contact's tickets, then waits for the contact; the new ticket appears once it
    is granted. The merge gives the contact back, locks the new ticket too, and
    moves both, so no ticket is locked after a contact and none is left behind."""
    from helpdesk.models import Contact
    from helpdesk.services import contacts

    agent_id = agent.id  # read here: the workers must not load it through this session
    phone_only_id, _number = _phone_only_customer_with_a_ticket(agent)
    order = Interleaving()

    def whatsapp_opens() -> str | None:
        with app.app_context():
            found = db.session.get(Contact, phone_only_id)
            assert found is not None
            order.after_load("first")
            locked = contacts.current(db.session, found)
            order.after_first_change()
            staff = db.session.get(StaffUser, agent_id)
            assert staff is not None
            ticket = TicketsService.from_config(db.session, app.config).open_ticket(
                subject="Still no signal",
                description="Nothing works.",
                requester_email=locked.email,
                channel="whatsapp",
                actor=Actor.staff(staff),
            )
            db.session.commit()
            return ticket.subject

    results = order.run(whatsapp_opens, _customer_gives_email(app, order))
    assert results == {"first": "Still no signal", "second": "ann@example.com"}, results
    db.session.rollback()
    ann = db.session.execute(select(Contact).where(Contact.email == "ann@example.com")).scalar_one()
    requesters = db.session.execute(select(Ticket.requester_id).order_by(Ticket.number)).scalars().all()
    assert requesters == [ann.id, ann.id]
    assert ann.phone == PHONE


@on_postgresql
@pytest.mark.parametrize("tool", ["rate_ticket", "add_ticket_comment"])
def test_a_rating_or_comment_given_while_the_customer_s_email_is_proven_is_the_proven_contact_s(
    app, agent, monkeypatch, tool
):
    """Lucía, known by her WhatsApp number only, takes part in Ann's resolved TKT-1
    (her own WhatsApp ticket was merged into it). One request proves her email (the
    merge moves her participation, messages and ratings to lucia@) while another
    from her number, whose customer was found before, rates TKT-1 or comments on
    it. The merge did not lock the tickets she only takes part in, so the rating was
    written after its UPDATE, under her stand-in address, and she could never change
    it; the comment waited for her stand-in's row and was then written as the
    stand-in's (found by review). The merge locks those tickets now, before the
    contacts; the call waits for the ticket and acts for the contact she is then."""
    from helpdesk.models import Contact, Message, SatisfactionRating
    from helpdesk.services import contacts, email_proofs
    from helpdesk.services.assistant import AssistantService, Customer
    from tests.support.database import open_ticket, resolve

    service = TicketsService.from_config(db.session, app.config)
    actor = Actor.staff(agent)
    anns = open_ticket(service, subject="Outage")
    duplicate = open_ticket(service, requester_email="5215512345678@phone.invalid", requester_name="Lucía")
    duplicate.requester.phone = PHONE
    service.merge(duplicate, anns, actor=actor)
    db.session.commit()
    resolve(service, anns, actor)
    stand_in_id = duplicate.requester_id
    code = proofs.request(db.session, app.config, PHONE, "lucia@example.com")
    order = Interleaving()
    move_ratings = contacts._move_ratings

    def move_then_wait(session: Any, *args: Any) -> None:
        move_ratings(session, *args)
        if threading.current_thread().name == "first":
            order.after_first_change()

    monkeypatch.setattr(contacts, "_move_ratings", move_then_wait)

    def proves() -> str:
        with app.app_context():
            order.after_load("first")
            bound = email_proofs.confirm(db.session, app.config, PHONE, "lucia@example.com", code, "Lucía")
            db.session.commit()
            return bound.email

    arguments = {"rate_ticket": {"rating": 2}, "add_ticket_comment": {"text": "Works again, thanks."}}[tool]

    def calls() -> object:
        with app.app_context():
            found = db.session.get(Contact, stand_in_id)  # the request's customer, found before
            assert found is not None
            customer = Customer(found, "en", PHONE)
            order.after_load("second")
            assistant = AssistantService(db.session, app.config)
            return assistant.call(
                customer, tool, json.dumps({"ticketId": "TKT-000001", **arguments}), "whatsapp"
            )

    results = order.run(proves, calls, second_may_finish=True)
    monkeypatch.undo()
    assert results["first"] == "lucia@example.com", results
    assert results["second"]["success"] is True, results  # type: ignore[index]
    db.session.rollback()
    lucia = db.session.execute(select(Contact).where(Contact.email == "lucia@example.com")).scalar_one()
    if tool == "rate_ticket":
        rater = db.session.execute(select(SatisfactionRating.participant_email)).scalar_one()
        assert rater == "lucia@example.com"
    else:
        author = db.session.execute(
            select(Message.author_contact_id).where(Message.body == arguments["text"])
        ).scalar_one()
        assert author == lucia.id


NEW_PHONE = "+5215511112222"
OTHER_PHONE = "+5215533334444"


def _whatsapp_request(
    app: Any, order: Interleaving, role: str, phone: str, email: str | None
) -> Callable[[], str]:
    """A worker: a WhatsApp request from `phone` naming `email` (or none) finds its
    customer (`contacts.for_customer`, as `named_customer` asks) and answers the
    contact's address. The first holds its transaction open until the second waits."""
    from helpdesk.services import contacts

    def request() -> str:
        with app.app_context():
            order.after_load(role)
            contact = contacts.for_customer(db.session, email=email, phone=phone, phone_vouched=True)
            if role == "first":
                order.after_first_change()
            db.session.commit()
            return contact.email

    return request


@on_postgresql
@pytest.mark.parametrize("first_email", [None, "bob@example.com"])
def test_two_first_requests_from_one_new_number_both_find_one_customer(app, first_email):
    """Two WhatsApp requests from a number no contact has yet, at once (two messages
    of one customer, a model retrying): both found no contact with it and both wrote
    it, and the second failed on the unique phone index, a 500 (found by review).
    Requests from one number take its lock first now, so the second finds the first
    one's customer: the phone-only contact (an email typed there binds nothing)."""
    from helpdesk.models import Contact

    order = Interleaving()
    results = order.run(
        _whatsapp_request(app, order, "first", NEW_PHONE, first_email),
        _whatsapp_request(app, order, "second", NEW_PHONE, "carol@example.com"),
    )
    stand_in = "5215511112222@phone.invalid"
    assert results == {"first": stand_in, "second": stand_in}, results
    db.session.rollback()
    owner = db.session.execute(select(Contact).where(Contact.phone == NEW_PHONE)).scalar_one()
    assert owner.email == stand_in


def _proving(app: Any, order: Interleaving, role: str, phone: str, email: str) -> Callable[[], str]:
    """A worker: the code mailed to `email` for `phone` (asked for now) comes back;
    answers the bound contact's address, or `taken`. The first holds its transaction
    open until the second waits."""
    from helpdesk.services import email_proofs

    code = proofs.request(db.session, app.config, phone, email)

    def confirm() -> str:
        with app.app_context():
            order.after_load(role)
            try:
                contact = email_proofs.confirm(db.session, app.config, phone, email, code)
            except email_proofs.ProofRefused as refused:
                db.session.rollback()
                if role == "first":
                    order.after_first_change()
                return refused.reason
            if role == "first":
                order.after_first_change()
            db.session.commit()
            return contact.email

    return confirm


@on_postgresql
def test_two_new_numbers_proving_one_address_at_once_bind_one(app):
    """Two new numbers prove bob@ at once (his mailbox read on two phones): both read
    his contact without a number, and the later write replaced the first number,
    though a contact's number is never replaced (found by review, when a number was
    bound on its word). The bind reads the contact again under its row lock: the
    second number finds it taken and is refused."""
    from helpdesk.models import Contact
    from helpdesk.services import contacts

    contacts.find_or_create(db.session, "bob@example.com", "Bob")
    db.session.commit()
    order = Interleaving()
    results = order.run(
        _proving(app, order, "first", NEW_PHONE, "bob@example.com"),
        _proving(app, order, "second", OTHER_PHONE, "bob@example.com"),
    )
    assert results == {"first": "bob@example.com", "second": "taken"}, results
    db.session.rollback()
    phones = {email: phone for email, phone in db.session.execute(select(Contact.email, Contact.phone))}
    assert phones == {"bob@example.com": NEW_PHONE}


@on_postgresql
def test_the_gateway_holding_a_follow_up_does_not_wait_for_an_approval_of_what_it_follows(
    app, admin, senders, monkeypatch
):
    """Ann is over her hourly limit, so her second mail M1 is held. An admin approves
    M1 (its item locked) while the gateway holds Ann's reply to M1, an item that
    follows M1's: its foreign key asks KEY SHARE of M1's row, which the approval's
    FOR UPDATE refused, so the gateway waited for the reviewer's whole decision,
    holding Ann's contact and mailbox locks. Decisions lock items FOR NO KEY UPDATE."""
    from helpdesk.inbound import quarantine
    from helpdesk.models import QuarantineItem

    app.config["CUSTOMER_MAX_TICKETS_PER_HOUR"] = 1
    envelope = Envelope("ann@example.com", (SUPPORT,), "smtp")
    ingest(message(subject="first").as_bytes(), envelope, app.config)
    second = message(subject="second", message_id="<m1@example.com>")
    assert ingest(second.as_bytes(), envelope, app.config).outcome is Outcome.QUARANTINED
    (held,) = db.session.execute(select(QuarantineItem.id)).scalars().all()
    db.session.commit()
    locked, release = threading.Event(), threading.Event()
    may_review = quarantine._may_review

    def hold_the_lock(*args: Any) -> bool:
        allowed = may_review(*args)
        if threading.current_thread().name == "admin":
            locked.set()
            assert release.wait(WAIT)
        return allowed

    monkeypatch.setattr(quarantine, "_may_review", hold_the_lock)

    def approve() -> None:
        with app.app_context():
            staff = db.session.get(StaffUser, admin.id)
            quarantine.approve(db.session, held, Actor.staff(staff), app.config)
            db.session.commit()

    approving = threading.Thread(target=approve, name="admin")
    approving.start()
    try:
        assert locked.wait(WAIT)
        reply = message(subject="Re: second", message_id="<m3@example.com>", in_reply_to="<m1@example.com>")
        outcome: list[Outcome] = []
        holding = threading.Thread(
            target=lambda: outcome.append(
                _in_context(app, lambda: ingest(reply.as_bytes(), envelope, app.config).outcome)
            )
        )
        holding.start()
        holding.join(5)
        assert outcome == [Outcome.QUARANTINED], "the gateway waited for the reviewer's decision"
    finally:
        release.set()
        approving.join(WAIT)


def _in_context(app: Any, work: Callable[[], Any]) -> Any:
    with app.app_context():
        return work()


# -- one admin form sent twice at once (a double-click) ---------------------------
#
# The services looked for a duplicate and then inserted: both requests found none,
# the unique index refused the second insert, and its IntegrityError was a 500. The
# first request is held after its insert until the second is seen waiting for the
# first one's index entry; the second must then get the "already exists" conflict a
# sequential duplicate gets (or, where adding is idempotent, the first one's row).


def _twice_at_once(app: Any, call: Callable[[], object]) -> dict[str, object]:
    """`call` in two threads with their own sessions, the second racing the first."""
    order = Interleaving()

    def first() -> object:
        with app.app_context():
            result = call()
            order.after_first_change()
            db.session.commit()
            return result

    def second() -> object:
        with app.app_context():
            assert order.first_changed.wait(WAIT), "the first change never happened"
            result = call()
            db.session.commit()
            return result

    return order.run(first, second)


def _refused_as_duplicate(results: dict[str, object], message: str) -> None:
    from helpdesk.errors import Conflict

    assert not isinstance(results["first"], Exception), results
    assert isinstance(results["second"], Conflict), results
    assert str(results["second"]) == message


@on_postgresql
def test_one_staff_account_created_twice_at_once_is_refused_once_as_a_duplicate(app):
    from helpdesk.services.staff import StaffService

    def create() -> int:
        user, _ = StaffService(db.session).create(
            email="bo@helpdesk.test", name="Bo", role="agent", password="bo-password-1"
        )
        return user.id

    results = _twice_at_once(app, create)
    _refused_as_duplicate(results, "A staff user bo@helpdesk.test already exists.")
    db.session.rollback()
    assert db.session.execute(select(func.count(StaffUser.id))).scalar_one() == 1


@on_postgresql
def test_one_team_added_twice_at_once_is_refused_once_as_a_duplicate(app):
    from helpdesk.models import Team
    from helpdesk.services.teams import TeamsService

    results = _twice_at_once(app, lambda: TeamsService(db.session).add("field_ops").id)
    _refused_as_duplicate(results, "There is already a team field_ops.")
    db.session.rollback()
    assert db.session.execute(select(func.count(Team.id))).scalar_one() == 1


@on_postgresql
def test_one_member_added_to_a_team_twice_at_once_is_a_member_once(app, agent):
    from helpdesk.models import TeamMember
    from helpdesk.services.teams import TeamsService

    TeamsService(db.session).add("field_ops")
    db.session.commit()
    agent_id = agent.id

    results = _twice_at_once(app, lambda: TeamsService(db.session).add_member("field_ops", agent_id))
    assert results == {"first": None, "second": None}, results
    db.session.rollback()
    assert db.session.execute(select(func.count()).select_from(TeamMember)).scalar_one() == 1


# -- a team removed while something names it (docs/isp-operations.md, "Teams") -----
#
# Removal checked "no tickets, no routes" and then deleted: a ticket filed to the
# team between the two held the team's row with its foreign key, the DELETE waited
# for it and then failed on that key, a 500. Removal now locks the row first.


def _night_install(app: Any, agent_id: int, **fields: Any) -> Ticket:
    """A ticket the agent opens for Ann, with `fields` (team, type)."""
    staff = db.session.get(StaffUser, agent_id)
    assert staff is not None
    return TicketsService.from_config(db.session, app.config).open_ticket(
        subject="Night install",
        description="Fibre to the flat.",
        requester_email="ann@example.com",
        channel="web",
        actor=Actor.staff(staff),
        **fields,
    )


@on_postgresql
def test_a_team_removed_while_a_ticket_is_filed_to_it_is_refused_as_still_having_tickets(app, agent):
    from helpdesk.errors import Conflict
    from helpdesk.models import Team
    from helpdesk.services.teams import TeamsService

    TeamsService(db.session).add("night_ops")
    db.session.commit()
    agent_id = agent.id
    order = Interleaving()

    def file_a_ticket() -> str:
        with app.app_context():
            ticket = _night_install(app, agent_id, team="night_ops")
            db.session.flush()
            order.after_first_change()
            db.session.commit()
            return ticket.subject

    def remove() -> None:
        with app.app_context():
            assert order.first_changed.wait(WAIT), "the ticket was never filed"
            TeamsService(db.session).remove("night_ops")
            db.session.commit()

    results = order.run(file_a_ticket, remove)
    assert results["first"] == "Night install", results
    assert isinstance(results["second"], Conflict), results
    assert str(results["second"]) == "Team night_ops still has tickets; move them to another team first."
    db.session.rollback()
    assert db.session.execute(select(Team.name)).scalars().all() == ["night_ops"]


@on_postgresql
@pytest.mark.parametrize("change", ["member", "route"])
def test_a_member_or_route_added_to_a_team_being_removed_finds_no_team(app, agent, change):
    from helpdesk.errors import NotFound
    from helpdesk.models import Team, TeamMember, TeamRoute
    from helpdesk.services.teams import TeamsService

    TeamsService(db.session).add("night_ops")
    db.session.commit()
    agent_id = agent.id
    order = Interleaving()

    def remove() -> None:
        with app.app_context():
            TeamsService(db.session).remove("night_ops")
            order.after_first_change()
            db.session.commit()

    def add() -> None:
        with app.app_context():
            assert order.first_changed.wait(WAIT), "the team was never removed"
            service = TeamsService(db.session)
            if change == "member":
                service.add_member("night_ops", agent_id)
            else:
                service.set_route("installation_request", "night_ops")
            db.session.commit()

    results = order.run(remove, add)
    assert results["first"] is None, results
    assert isinstance(results["second"], NotFound), results
    db.session.rollback()
    assert db.session.execute(select(func.count(Team.id))).scalar_one() == 0
    assert db.session.execute(select(func.count()).select_from(TeamMember)).scalar_one() == 0
    assert db.session.execute(select(func.count()).select_from(TeamRoute)).scalar_one() == 0


@on_postgresql
@pytest.mark.parametrize("named", [True, False], ids=["named", "routed"])
def test_a_ticket_filed_to_a_team_being_removed_opens_without_it_or_is_refused(app, agent, named):
    """The ticket names the team (a 422 on `team`, as for any unknown team) or its
    type is routed there until the removal (it opens with no team)."""
    from helpdesk.models import Team
    from helpdesk.services.teams import TeamsService

    TeamsService(db.session).add("night_ops")
    TeamsService(db.session).set_route("installation_request", "night_ops")
    db.session.commit()
    agent_id = agent.id
    order = Interleaving()

    def remove() -> None:
        with app.app_context():
            service = TeamsService(db.session)
            service.set_route("installation_request", None)
            service.remove("night_ops")
            order.after_first_change()
            db.session.commit()

    def file_a_ticket() -> object:
        with app.app_context():
            assert order.first_changed.wait(WAIT), "the team was never removed"
            ticket = _night_install(
                app, agent_id, ticket_type="installation_request", team="night_ops" if named else None
            )
            db.session.commit()
            return ticket.team_id

    results = order.run(remove, file_a_ticket)
    assert results["first"] is None, results
    if named:
        assert isinstance(results["second"], ValidationError), results
        assert results["second"].fields == {"team": "is not a team"}
    else:
        assert results["second"] is None, results
    db.session.rollback()
    assert db.session.execute(select(func.count(Team.id))).scalar_one() == 0
    assert db.session.execute(select(Ticket.team_id)).scalars().all() == ([] if named else [None])


@on_postgresql
def test_one_sender_rule_added_twice_at_once_is_refused_once_as_a_duplicate(app):
    from helpdesk.models import AuthorizedSender
    from helpdesk.services.senders import SendersService

    SendersService(db.session).organization("Corp")  # so the rules collide, not their organization
    db.session.commit()
    results = _twice_at_once(app, lambda: SendersService(db.session).add("@corp.example", "Corp").id)
    _refused_as_duplicate(results, "@corp.example is already authorized.")
    db.session.rollback()
    assert db.session.execute(select(func.count(AuthorizedSender.id))).scalar_one() == 1


@on_postgresql
def test_two_rules_for_one_new_organization_at_once_both_join_it(app):
    """Two different patterns naming one organization that does not exist yet: both
    created it, and the second insert of its name was a 500."""
    from helpdesk.models import AuthorizedSender, Organization
    from helpdesk.services.senders import SendersService

    patterns = iter(["@corp.example", "@corp2.example"])
    lock = threading.Lock()

    def add() -> int:
        with lock:
            pattern = next(patterns)
        return SendersService(db.session).add(pattern, "Corp").organization_id

    results = _twice_at_once(app, add)
    assert results["first"] == results["second"], results
    db.session.rollback()
    assert db.session.execute(select(func.count(Organization.id))).scalar_one() == 1
    assert db.session.execute(select(func.count(AuthorizedSender.id))).scalar_one() == 2


@on_postgresql
def test_one_integration_added_twice_at_once_is_refused_once_as_a_duplicate(app):
    from helpdesk.models import Integration
    from helpdesk.services.integrations import IntegrationsService

    results = _twice_at_once(app, lambda: IntegrationsService(db.session).add("Chat widget", "chat")[0].id)
    _refused_as_duplicate(results, "An integration named Chat widget already exists.")
    db.session.rollback()
    assert db.session.execute(select(func.count(Integration.id))).scalar_one() == 1


@on_postgresql
def test_the_new_staff_form_sent_twice_at_once_flashes_the_duplicate_not_a_500(app, admin, monkeypatch):
    """The portal's view of the race above: the second post is answered with the
    flashed conflict, as a second click after the first finished is."""
    from helpdesk.services.staff import StaffService
    from tests.support.app import Portal

    order = Interleaving()
    create = StaffService.create

    def held_create(self: StaffService, **fields: Any) -> Any:
        created = create(self, **fields)
        if threading.current_thread().name == "first":
            order.after_first_change()
        return created

    monkeypatch.setattr(StaffService, "create", held_create)
    browsers = []
    for _ in range(2):
        browser = Portal(app.test_client())
        assert browser.login(admin.email, "admin-password-1").status_code == 302
        browsers.append(browser)
    form = {"email": "bo@helpdesk.test", "name": "Bo", "role": "agent", "password": "bo-password-1"}
    tokens = [browser.token("/admin/staff") for browser in browsers]

    def post(index: int) -> object:
        if index == 1:
            assert order.first_changed.wait(WAIT), "the first post never created the account"
        response = browsers[index].client.post("/admin/staff", data={**form, "csrf_token": tokens[index]})
        page = browsers[index].client.get("/admin/staff").get_data(as_text=True)
        return response.status_code, "already exists" in page

    results = order.run(lambda: post(0), lambda: post(1))
    assert results == {"first": (302, False), "second": (302, True)}, results


@on_postgresql
@pytest.mark.parametrize("second_change", ["demote", "deactivate"])
def test_two_admins_acting_at_once_leave_one_active_admin(app, admin, second_change):
    """The last active admin may not become an agent (docs/web.md), but the count was
    read without a lock and deactivation did not count at all: two admins demoting
    each other at once, or one deactivating the other while being demoted, both
    passed and left no admin. The active admins' rows are locked before counting, and
    deactivation keeps the rule too."""
    from helpdesk.errors import Conflict
    from helpdesk.models import StaffUser
    from helpdesk.services.staff import StaffService

    other, _ = StaffService(db.session).create(
        email="bea@helpdesk.test", name="Bea", role="admin", password="bea-password-1"
    )
    db.session.commit()
    ada_id, bea_id = admin.id, other.id
    order = Interleaving()

    def first() -> object:
        with app.app_context():
            StaffService(db.session).set_role(db.session.get(StaffUser, bea_id), "agent")
            db.session.flush()
            order.after_first_change()
            db.session.commit()
            return None

    def second() -> object:
        with app.app_context():
            assert order.first_changed.wait(WAIT), "the first change never happened"
            staff = StaffService(db.session)
            ada = db.session.get(StaffUser, ada_id)
            if second_change == "demote":
                staff.set_role(ada, "agent")
            else:
                staff.set_active(ada, False)
            db.session.commit()
            return None

    results = order.run(first, second, second_may_finish=True)
    assert results["first"] is None and isinstance(results["second"], Conflict), results
    db.session.rollback()
    active_admins = select(func.count(StaffUser.id)).where(StaffUser.role == "admin", StaffUser.is_active)
    assert db.session.execute(active_admins).scalar_one() == 1


# -- a new customer's first write while their mail writes on the same ticket ------


@on_postgresql
def test_a_new_cc_s_comment_and_their_mail_on_one_ticket_both_land(app, monkeypatch):
    """Cy, a CC with no contact yet, comments through a chat's assistant while a
    mail of theirs is written on the same ticket. The assistant stores the contact
    with the comment, in its transaction (docs/integrations.md, "Chat"); stored
    before the ticket's lock, it waited for the mail's lock while the mail, holding
    it, waited for that contact's insert: a deadlock, one of them lost. Stored
    after the lock (tickets before contacts), the comment waits, and both land on
    one contact."""
    from helpdesk.models import Contact, Message
    from helpdesk.services import tickets as tickets_module
    from helpdesk.services.integrations import IntegrationsService

    service = TicketsService.from_config(db.session, app.config)
    service.open_ticket(
        subject="No signal",
        description="Since noon.",
        requester_email="ann@example.com",
        cc=[("cy@example.com", "Cy")],
        channel="api",
        actor=Actor.system("test"),
    )
    _integration, token = IntegrationsService(db.session).add("site-assistant", "assistant")
    db.session.commit()
    order = Interleaving()
    lock_with_survivor = tickets_module.lock_with_survivor

    def lock_then_hold(session: Any, ticket: Ticket) -> Ticket:
        locked = lock_with_survivor(session, ticket)
        if threading.current_thread().name == "first":
            order.after_first_change()
        return locked

    monkeypatch.setattr(
        tickets_module, "lock_with_survivor", lock_then_hold
    )  # the mail's, not the assistant's

    def mail() -> object:
        with app.app_context():
            order.after_load("first")
            mailed = TicketsService.from_config(db.session, app.config)
            mailed.add_message(
                mailed.get(1),
                body="From my phone.",
                actor=Actor.customer("cy@example.com", "Cy"),
                channel="email",
            )
            db.session.commit()
            return "mailed"

    def comment() -> object:
        order.after_load("second")
        call = {"ticketId": "TKT-000001", "text": "From the chat."}
        body = {
            "customer": {"email": "cy@example.com"},
            "channel": "chat",
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "add_ticket_comment", "arguments": json.dumps(call)},
                }
            ],
        }
        response = app.test_client().post(
            "/api/v1/assistant/tool-calls", json=body, headers={"Authorization": f"Bearer {token}"}
        )
        return json.loads(response.get_json()["tool_outputs"][0]["output"])["success"]

    results = order.run(mail, comment)
    assert results == {"first": "mailed", "second": True}, results
    db.session.rollback()
    cy = db.session.execute(select(Contact.id).where(Contact.email == "cy@example.com")).scalars().all()
    authors = db.session.execute(
        select(Message.author_contact_id).where(Message.body.like("From %"))
    ).scalars()
    assert len(cy) == 1 and set(authors) == set(cy)


# -- one chat conversation posted twice at once (a widget retrying) ----------------
#
# A widget posts a conversation again when it lost the answer or got a 503, and may
# do so before the first post has finished. Each post opened a ticket and mailed an
# acknowledgment (docs/integrations.md, "Chat").


def _chat_post(app: Any, token: str, order: Interleaving, role: str, email: str) -> Callable[[], object]:
    def post() -> object:
        order.after_load(role)
        body = {"conversation_id": "conv-42", "customer": {"email": email}, "transcript": "No signal"}
        response = app.test_client().post(
            "/api/v1/chat/tickets", json=body, headers={"Authorization": f"Bearer {token}"}
        )
        return response.status_code, response.get_json().get("number")

    return post


def _chat_token() -> str:
    from helpdesk.services.integrations import IntegrationsService

    _integration, token = IntegrationsService(db.session).add("site-chat", "chat")
    db.session.commit()
    return token


def _first_holds(
    claim: Callable[..., Any], order: Interleaving, *, fails: bool = False
) -> Callable[..., Any]:
    """`claim`, after which the thread named "first" holds its transaction open until
    the second has started (`Interleaving`); with `fails`, that transaction then fails
    as a lost connection does."""

    def claim_then_hold(*args: Any) -> Any:
        claimed = claim(*args)
        if threading.current_thread().name == "first":
            order.after_first_change()
            if fails:
                raise OperationalError("INSERT", {}, Exception("connection lost"))
        return claimed

    return claim_then_hold


def _opened_and_acknowledged() -> tuple[list[tuple[int, str]], int]:
    from helpdesk.models import Contact, OutboxMessage

    db.session.rollback()
    tickets = select(Ticket.number, Contact.email).join(Contact, Contact.id == Ticket.requester_id)
    acknowledgments = select(func.count(OutboxMessage.id)).where(OutboxMessage.kind == "created")
    return (
        [tuple(row) for row in db.session.execute(tickets.order_by(Ticket.number))],
        db.session.execute(acknowledgments).scalar_one(),
    )


@on_postgresql
def test_one_chat_conversation_posted_twice_at_once_opens_one_ticket(app, monkeypatch):
    """The first post is held after the customer's count, its locks taken; the
    second waits for them and then finds the first one's ticket: 200, the same
    number, one acknowledgment (it opened TKT-000002 and mailed twice)."""

    token = _chat_token()
    order = Interleaving()
    _hold_first_after_count(monkeypatch, order)
    results = order.run(
        _chat_post(app, token, order, "first", "ann@example.com"),
        _chat_post(app, token, order, "second", "ann@example.com"),
    )
    assert results == {"first": (201, "TKT-000001"), "second": (200, "TKT-000001")}, results
    assert _opened_and_acknowledged() == ([(1, "ann@example.com")], 1)


@on_postgresql
@pytest.mark.parametrize("first_ends", ["commits", "fails"])
def test_a_conversation_claimed_at_once_under_another_customer_waits_for_the_claim(
    app, monkeypatch, first_ends
):
    """Two customers' locks do not serialise their posts: the second post's claim of
    the conversation waits for the first one's. Committed, the second is refused
    (409, another customer's conversation), never a 500; rolled back (the database
    failed, 503), the second claims it and opens the ticket with the number the
    first one never kept: the sequence has no gap."""
    from helpdesk.services import chat

    token = _chat_token()
    order = Interleaving()
    monkeypatch.setattr(chat, "claim", _first_holds(chat.claim, order, fails=first_ends == "fails"))
    results = order.run(
        _chat_post(app, token, order, "first", "ann@example.com"),
        _chat_post(app, token, order, "second", "bob@example.com"),
    )
    if first_ends == "commits":
        assert results == {"first": (201, "TKT-000001"), "second": (409, None)}, results
        assert _opened_and_acknowledged() == ([(1, "ann@example.com")], 1)
    else:
        assert results == {"first": (503, None), "second": (201, "TKT-000001")}, results
        assert _opened_and_acknowledged() == ([(1, "bob@example.com")], 1)


def _assistant_post(app: Any, token: str, order: Interleaving, role: str, phone: str) -> Callable[[], object]:
    def post() -> object:
        order.after_load(role)
        arguments = json.dumps({"title": "Sin internet", "description": "No hay servicio"})
        body = {
            "customer": {"phone": phone},
            "tool_calls": [
                {
                    "id": "call_Qm3v8XkT",
                    "type": "function",
                    "function": {"name": "create_ticket_report", "arguments": arguments},
                }
            ],
        }
        response = app.test_client().post(
            "/api/v1/assistant/tool-calls", json=body, headers={"Authorization": f"Bearer {token}"}
        )
        if response.status_code != 200:
            return response.status_code, None
        return response.status_code, json.loads(response.get_json()["tool_outputs"][0]["output"])["ticketId"]

    return post


def _assistant_token() -> str:
    from helpdesk.services.integrations import IntegrationsService

    _integration, token = IntegrationsService(db.session).add("whatsapp-bot", "assistant")
    db.session.commit()
    return token


@on_postgresql
def test_one_assistant_call_submitted_twice_at_once_opens_one_ticket(app, monkeypatch):
    """A runtime submitting a batch again while the first is still running: the
    first is held after the customer's count, its locks taken; the second waits for
    them and then answers the first one's ticket: one ticket, one acknowledgment."""

    token = _assistant_token()
    order = Interleaving()
    _hold_first_after_count(monkeypatch, order)
    results = order.run(
        _assistant_post(app, token, order, "first", "+5215512345678"),
        _assistant_post(app, token, order, "second", "+5215512345678"),
    )
    assert results == {"first": (200, "TKT-000001"), "second": (200, "TKT-000001")}, results
    assert _opened_and_acknowledged() == ([(1, "5215512345678@phone.invalid")], 1)


@on_postgresql
def test_one_assistant_call_id_of_two_customers_at_once_opens_two_tickets(app, monkeypatch):
    """Two customers' locks do not serialise their calls: the second one's claim of
    the call id waits for the first one's; once it is committed the second is no
    repeat of someone else's call and opens its own ticket, never a 500."""
    from helpdesk.services.assistant import AssistantService

    token = _assistant_token()
    order = Interleaving()
    monkeypatch.setattr(AssistantService, "_claim", _first_holds(AssistantService._claim, order))
    results = order.run(
        _assistant_post(app, token, order, "first", "+5215512345678"),
        _assistant_post(app, token, order, "second", "+5215599990000"),
    )
    assert results == {"first": (200, "TKT-000001"), "second": (200, "TKT-000002")}, results
    assert _opened_and_acknowledged() == (
        [(1, "5215512345678@phone.invalid"), (2, "5215599990000@phone.invalid")],
        2,
    )


def _keyed_post(app: Any, token: str, order: Interleaving, role: str) -> Callable[[], object]:
    """`POST /tickets` under one Idempotency-Key: (status, number, Idempotent-Replayed)."""

    def post() -> object:
        order.after_load(role)
        response = app.test_client().post(
            "/api/v1/tickets",
            json={
                "subject": "VPN down",
                "description": "Nobody connects.",
                "requester_email": "ann@example.com",
            },
            headers={"Authorization": f"Bearer {token}", "Idempotency-Key": "sent-twice"},
        )
        return (
            response.status_code,
            response.get_json().get("number"),
            response.headers.get("Idempotent-Replayed"),
        )

    return post


@on_postgresql
@pytest.mark.parametrize("first_ends", ["commits", "fails"])
def test_one_idempotency_key_sent_twice_at_once_opens_one_ticket(app, agent, monkeypatch, first_ends):
    """A client retrying while its first request still runs (docs/web.md,
    "Idempotency keys"): the first is held right after claiming the key; the
    second's claim waits for it. Committed, the second is answered the first one's
    ticket (201, replayed); rolled back (503), the second opens it itself, with the
    number the first never kept. Never a 500, never two tickets or two mails."""
    from helpdesk.services import idempotency

    token = login_tokens(app.test_client(), agent.email, "agent-password-1")["access_token"]
    order = Interleaving()
    monkeypatch.setattr(
        idempotency, "claim", _first_holds(idempotency.claim, order, fails=first_ends == "fails")
    )
    results = order.run(_keyed_post(app, token, order, "first"), _keyed_post(app, token, order, "second"))
    if first_ends == "commits":
        assert results == {"first": (201, "TKT-000001", None), "second": (201, "TKT-000001", "true")}, results
    else:
        assert results == {"first": (503, None, None), "second": (201, "TKT-000001", None)}, results
    assert _opened_and_acknowledged() == ([(1, "ann@example.com")], 1)


@on_postgresql
def test_a_proof_whose_customer_is_merged_into_a_lower_ticket_meanwhile_locks_in_order(app, agent):
    """A WhatsApp customer proves her email (the merge locks the tickets her
    stand-in requests or takes part in, then the contacts) while an agent merges her
    ticket into Ann's, lower, ticket and a bulk action waits for both tickets. The
    proof found a new ticket once the agent's merge committed and locked it while
    still holding her own, higher, one: out of id order, and the bulk action, holding
    Ann's ticket and waiting for hers, deadlocked with it (found by the review of the
    day's fixes). Every lock of the round is given back before the new set is taken."""
    from helpdesk.services import email_proofs
    from helpdesk.services.tickets import lock_for_change, lock_with_survivor
    from tests.support.database import open_ticket

    service = TicketsService.from_config(db.session, app.config)
    anns = open_ticket(service, subject="Outage")
    hers = open_ticket(service, requester_email="5215512345678@phone.invalid", requester_name="Lucía")
    hers.requester.phone = "+5215512345678"
    db.session.commit()
    ids = (anns.id, hers.id)
    code = proofs.request(db.session, app.config, "+5215512345678", "lucia@example.com")
    db.session.commit()
    results: dict[str, str] = {}
    holding = threading.Event()

    def work(name: str, job: Callable[[], str]) -> None:
        with app.app_context():
            try:
                results[name] = job()
                db.session.commit()
            except Exception as exc:  # reported by the assertion below, never swallowed
                results[name] = repr(exc)
                db.session.rollback()
            finally:
                db.session.remove()

    def agent_merge() -> str:
        source, target = db.session.get(Ticket, ids[1]), db.session.get(Ticket, ids[0])
        lock_with_survivor(db.session, target, source)
        holding.set()
        wait_until(lambda: _waiting_elsewhere(2), timeout=WAIT, what="the proof and the bulk action waiting")
        TicketsService.from_config(db.session, app.config).merge(
            source, target, actor=Actor.staff(db.session.merge(agent))
        )
        return "merged"

    def proof() -> str:
        assert holding.wait(WAIT)
        phone, email = "+5215512345678", "lucia@example.com"
        bound = email_proofs.confirm(db.session, app.config, phone, email, code, "Lucía")
        return bound.email

    def bulk_action() -> str:
        assert holding.wait(WAIT)
        wait_until(lambda: _waiting_elsewhere(1), timeout=WAIT, what="the proof waiting")
        lock_for_change(db.session, db.session.get(Ticket, ids[0]), db.session.get(Ticket, ids[1]))
        return "changed"

    threads = [
        threading.Thread(target=work, args=(name, job))
        for name, job in (("merge", agent_merge), ("proof", proof), ("bulk", bulk_action))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT * 2)
    assert results == {"merge": "merged", "proof": "lucia@example.com", "bulk": "changed"}, results


def _waiting_elsewhere(at_least: int) -> bool:
    """`_someone_waits_for_a_lock` on a connection of its own: a worker holding locks
    cannot roll its session back to see the activity anew."""
    with db.engine.connect() as connection:
        return bool(connection.execute(_LOCK_WAITERS).scalar_one() >= at_least)


@on_postgresql
def test_two_copies_of_a_mail_under_another_mails_message_id_at_once_are_recorded_once(app, monkeypatch):
    """Another mail holds the Message-ID (docs/mail-gateway.md, "Duplicates"); the
    SMTP and the mailbox copy of the mail that used it too come at once. Both find
    the key taken and go for the mail's own key beside it, where its unique
    constraint lets one in and answers the other as a duplicate: one record. (On
    SQLite a transaction that read holds the database: the two cannot overlap.)"""
    from helpdesk.inbound import ingest as ingest_module
    from helpdesk.models import InboundMail
    from helpdesk.services.senders import SendersService

    SendersService(db.session).add("@corp.example", "Corp")
    db.session.commit()
    claimed = "<claimed@corp.example>"
    eve = message(sender="eve@evil.example", subject="hello", message_id=claimed).as_bytes()
    assert (
        ingest(eve, Envelope("eve@evil.example", (SUPPORT,), "smtp"), app.config).outcome
        is Outcome.QUARANTINED
    )
    db.session.remove()
    both_found_it_taken = threading.Barrier(2, timeout=30)
    real = ingest_module.beside_key

    def beside_key(key: str, raw: bytes) -> str:
        both_found_it_taken.wait()
        return real(key, raw)

    monkeypatch.setattr(ingest_module, "beside_key", beside_key)
    ann = message(
        sender="ann@corp.example", message_id=claimed, headers={"Date": "Mon, 02 Mar 2026 08:00:00 +0000"}
    )
    lmtp = b"Return-Path: <ann@corp.example>\r\nDelivered-To: support@helpdesk.test\r\n"
    results: dict[str, Outcome] = {}

    def copy(channel: str, raw: bytes) -> None:
        with app.app_context():
            results[channel] = ingest(
                raw, Envelope("ann@corp.example", (SUPPORT,), channel), app.config
            ).outcome
            db.session.remove()

    threads = [
        threading.Thread(target=copy, args=("smtp", ann.as_bytes())),
        threading.Thread(target=copy, args=("imap", lmtp + ann.as_bytes())),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(results.values()) == [Outcome.CREATED, Outcome.DUPLICATE], results
    assert db.session.execute(select(func.count(InboundMail.id))).scalar_one() == 2
    assert db.session.execute(select(func.count(Ticket.id))).scalar_one() == 1


Job = Callable[[TicketsService, Actor], object]


def _behind_the_merge_s_first_lock(
    app: Any, agent: StaffUser, monkeypatch: Any, merge: Job, other: tuple[str, Job]
) -> dict[str, object]:
    """Run `merge` as `agent` until its first ticket lock is taken, then the `other`
    job until it waits for a lock, then let both finish; each job's answer (or
    exception, a deadlock) by its role."""
    from helpdesk.services import tickets as tickets_module

    merge_locked, go = threading.Event(), threading.Event()
    lock_for_change = tickets_module.lock_for_change

    def lock_then_wait(session: Any, *tickets: Ticket, **options: Any) -> set[int]:
        locked = lock_for_change(session, *tickets, **options)
        if threading.current_thread().name == "merge" and not merge_locked.is_set():
            merge_locked.set()  # after the merge's first lock
            assert go.wait(WAIT), "never let go"
        return locked

    monkeypatch.setattr(tickets_module, "lock_for_change", lock_then_wait)
    results: dict[str, object] = {}

    def run(role: str, job: Job) -> None:
        with app.app_context():
            try:
                service = TicketsService.from_config(db.session, app.config)
                staff = db.session.get(StaffUser, agent.id)
                assert staff is not None
                results[role] = job(service, Actor.staff(staff))
                db.session.commit()
            except Exception as exc:  # a deadlock, reported by the caller
                db.session.rollback()
                results[role] = exc

    role, job = other
    threads = [
        threading.Thread(target=run, args=("merge", merge), name="merge"),
        threading.Thread(target=run, args=(role, job), name=role),
    ]
    threads[0].start()
    try:
        assert merge_locked.wait(WAIT), f"the merge never locked its tickets ({results})"
        threads[1].start()
        wait_until(
            _someone_waits_for_a_lock,
            timeout=WAIT,
            between=db.session.rollback,
            what=lambda: f"the {role} waiting for the merge ({results})",
        )
    finally:
        go.set()
        for thread in threads:
            if thread.is_alive():
                thread.join(WAIT)
    monkeypatch.undo()
    return results
