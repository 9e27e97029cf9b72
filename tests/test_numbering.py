"""docs/numbering.md: format, recognition in text, gap-free taking, set-next."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import OperationalError

from config import ConfigurationError
from helpdesk import numbering
from helpdesk.errors import Conflict, ValidationError
from helpdesk.extensions import db
from helpdesk.models import Ticket, TicketCounter
from helpdesk.services import Actor, TicketsService
from tests.support.database import statements as recorded_statements


@pytest.mark.parametrize(
    ("number", "prefix", "width", "expected"),
    [
        (78, "TKT-", 6, "TKT-000078"),
        (1, "TKT-", 6, "TKT-000001"),
        (999999, "TKT-", 6, "TKT-999999"),
        (1000000, "TKT-", 6, "TKT-1000000"),
        (5, "HD#", 3, "HD#005"),
    ],
)
def test_format_number_pads_and_grows_without_wrapping(number, prefix, width, expected):
    assert numbering.format_number(number, prefix, width) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("tkt-78", 78),
        ("TKT-000078", 78),
        ("[TKT-000078]", 78),
        (" [tkt-000078] ", 78),
        ("Tkt-1000000", 1000000),
        ("78", 78),
        ("TKT-0", None),
        ("TKT-", None),
        ("TKT-12a", None),
        ("ABC-12", None),
        ("", None),
        ("Re: TKT-000078", None),  # a lookup is the number alone; text search is find_numbers
    ],
)
def test_parse_number_accepts_what_people_type(text, expected):
    assert numbering.parse_number(text, "TKT-") == expected


def test_find_numbers_in_subjects_is_case_insensitive_and_ordered():
    subject = "Re: [tkt-000078] fwd TKT-79 and again TKT-000078, not XTKT-5 nor TKT-80x1"
    assert numbering.find_numbers(subject, "TKT-") == [78, 79]
    assert numbering.find_numbers("no number here", "TKT-") == []
    assert numbering.find_numbers("Ticket HD#7 done", "HD#") == [7]


def test_find_numbers_stops_at_the_limit_of_distinct_numbers():
    subject = "Re: TKT-3 TKT-000003 TKT-1 TKT-000 TKT-2 TKT-4"
    assert numbering.find_numbers(subject, "TKT-", limit=3) == [3, 1, 2]
    assert numbering.find_numbers(subject, "TKT-") == [3, 1, 2, 4]


def _open(service: TicketsService, channel: str = "web", requester: str = "ann@example.com"):
    return service.open_ticket(
        subject="Printer on fire",
        description="Smoke everywhere",
        requester_email=requester,
        channel=channel,
        actor=Actor.system(),
    )


def test_numbers_are_consecutive_across_channels(service):
    numbers = []
    for channel in ("web", "email", "api", "email", "system", "chat"):
        numbers.append(_open(service, channel).number)
        db.session.commit()
    assert numbers == [1, 2, 3, 4, 5, 6]


def test_rolled_back_creation_consumes_no_number(service):
    first = _open(service)
    db.session.commit()
    doomed = _open(service)
    assert doomed.number == 2
    db.session.rollback()
    again = _open(service)
    db.session.commit()
    assert (first.number, again.number) == (1, 2)
    stored = db.session.execute(select(Ticket.number).order_by(Ticket.number)).scalars().all()
    assert stored == [1, 2]


def test_counter_row_is_recreated_when_missing(service):
    """A database built with create_all (no migration seed) still numbers from the data."""
    _open(service)
    db.session.commit()
    db.session.delete(db.session.get(TicketCounter, numbering.COUNTER_ID))
    db.session.commit()
    assert _open(service).number == 2
    db.session.commit()
    assert db.session.get(TicketCounter, numbering.COUNTER_ID).next_value == 3


def test_set_next_moves_the_sequence(service):
    _open(service)
    db.session.commit()
    numbering.set_next(db.session, 500)
    db.session.commit()
    assert _open(service).number == 500
    db.session.commit()
    assert service.display_number(_open(service)) == "TKT-000501"


@pytest.mark.parametrize("value", [1, 3])
def test_set_next_refuses_numbers_in_use(service, value):
    _open(service)
    _open(service)
    _open(service)
    db.session.commit()
    with pytest.raises(Conflict, match="3 is already in use"):
        numbering.set_next(db.session, value)


def test_set_next_refuses_non_positive(app):
    with pytest.raises(ValidationError):
        numbering.set_next(db.session, 0)


@pytest.mark.parametrize("value", [10**18, 2**63])
def test_set_next_refuses_numbers_past_eighteen_digits(app, value):
    """Numbers are read back with at most 18 digits (`parse_number`, `find_numbers`):
    10^18 started a sequence no reply or tracker lookup ever found again, and past
    BIGINT the command ended in a traceback (conformance review)."""
    with pytest.raises(ValidationError, match="below 1000000000000000000"):
        numbering.set_next(db.session, value)
    numbering.set_next(db.session, numbering.MAX_NUMBER)
    assert numbering.parse_number(numbering.display_number(numbering.MAX_NUMBER, app.config), "TKT-") == (
        numbering.MAX_NUMBER
    )


def test_display_number_uses_configured_prefix_and_width(database_url):
    from tests.support.app import make_app

    app = make_app(database_url, TICKET_PREFIX="HD-", TICKET_NUMBER_WIDTH=4)
    with app.app_context():
        service = TicketsService.from_config(db.session, app.config)
        ticket = _open(service)
        db.session.commit()
        assert service.display_number(ticket) == "HD-0001"
        assert service.get("hd-1").id == ticket.id
        db.session.remove()
        db.engine.dispose()


@pytest.mark.parametrize("prefix", ["Case ", "Ticket#", "T/", "Nº-", "INC..", "T?"])
def test_a_ticket_prefix_our_reply_to_or_portal_links_cannot_carry_is_refused_at_start(database_url, prefix):
    """`Case ` made the Reply-To `support+Case 000001@…`, which mail clients read as
    `"support+Case 000001"@…`, and the gateway refused every customer's reply to it
    (550 5.1.1); `#`, `/` and `?` break the portal link in every mail
    (docs/operations.md)."""
    from tests.support.app import make_app

    with pytest.raises(ConfigurationError, match="TICKET_PREFIX"):
        make_app(database_url, TICKET_PREFIX=prefix)


@pytest.mark.parametrize("prefix", ["TKT-", "INC.", "hd_", "T1-", ""])
def test_a_ticket_prefix_of_letters_digits_dashes_underscores_and_dots_is_taken(prefix):
    numbering.check_prefix(prefix)


def test_nothing_runs_between_taking_a_number_and_the_commit(service, backend):
    """The counter row stays locked from the numbering statement to the commit, so a
    new ticket's first message, its attachments and the inbound mail it came from are
    written in that one statement on PostgreSQL (SQLite has one writer anyway)."""
    from helpdesk.models import Attachment, InboundMail, Message
    from helpdesk.services.tickets import NewAttachment

    inbound = InboundMail(
        dedup_key="k",
        message_id="m@x",
        channel="smtp",
        mail_from="a@b.example",
        from_address="a@b.example",
        recipients="support@helpdesk.test",
        subject="s",
        size=1,
        outcome="created",
        reason="",
        raw=b"x",
    )
    db.session.add(inbound)
    db.session.flush()
    with recorded_statements() as statements:
        ticket = service.open_ticket(
            subject="Printer",
            description="see the photo",
            requester_email="a@b.example",
            channel="email",
            actor=Actor.customer("a@b.example"),
            inbound_mail_id=inbound.id,
            attachments=[
                NewAttachment("photo.jpg", "image/jpeg", b"\xff\xd8 jpeg"),
                NewAttachment("logo.png", "image/png", b"png", "logo@x", True),
            ],
        )
        db.session.flush()
    db.session.commit()
    taking = [i for i, sql in enumerate(statements) if "ticket_counter" in sql]
    assert taking, statements
    if backend == "postgresql":
        assert taking == [len(statements) - 1], statements[taking[0] :]
    [message] = db.session.execute(select(Message).where(Message.ticket_id == ticket.id)).scalars()
    stored = (
        db.session.execute(
            select(Attachment).where(Attachment.message_id == message.id).order_by(Attachment.id)
        )
        .scalars()
        .all()
    )
    assert [(a.filename, a.size, a.data, a.content_id, a.is_inline) for a in stored] == [
        ("photo.jpg", 7, b"\xff\xd8 jpeg", None, False),
        ("logo.png", 3, b"png", "logo@x", True),
    ]
    assert db.session.get(InboundMail, inbound.id).ticket_id == ticket.id


def test_a_note_for_staff_is_written_after_the_first_message_in_the_same_statement(service, backend):
    """The mail gateway's note on what it left out of a new ticket's mail
    (docs/mail-gateway.md, "What is stored") is written by the numbering statement
    too, after the first message: the counter row is locked for nothing more."""
    from helpdesk.models import Attachment, Message
    from helpdesk.services.tickets import NewAttachment

    with recorded_statements() as statements:
        ticket = service.open_ticket(
            subject="Printer",
            description="see the photo",
            requester_email="a@b.example",
            channel="email",
            actor=Actor.customer("a@b.example"),
            attachments=[NewAttachment("photo.jpg", "image/jpeg", b"jpeg")],
            note=(Actor.system("mail gateway"), "big.jpg (9 bytes) not stored"),
        )
        db.session.flush()
    db.session.commit()
    taking = [i for i, sql in enumerate(statements) if "ticket_counter" in sql]
    if backend == "postgresql":
        assert taking == [len(statements) - 1], statements[taking[0] :]
    rows = db.session.execute(select(Message).where(Message.ticket_id == ticket.id).order_by(Message.id))
    first, note = rows.scalars()
    assert (first.kind, first.body, first.author_label) == ("reply", "see the photo", "a@b.example")
    assert (note.kind, note.body, note.author_label) == (
        "note",
        "big.jpg (9 bytes) not stored",
        "mail gateway",
    )
    assert (note.author_staff_id, note.author_contact_id, note.inbound_mail_id) == (None, None, None)
    assert note.created_at == first.created_at
    [photo] = db.session.execute(select(Attachment)).scalars()
    assert photo.message_id == first.id
    with pytest.raises(ValidationError):
        service.open_ticket(
            subject="Printer",
            description="x",
            requester_email="a@b.example",
            channel="email",
            actor=Actor.customer("a@b.example"),
            note=(Actor.system("mail gateway"), " "),
        )


def test_every_model_default_is_applied_by_the_numbered_insert(service, backend):
    """The PostgreSQL insert is one text statement: a model column whose default it
    skipped would break ticket creation there only. Rows given nothing but their
    required columns must come back with every model default, on both databases."""
    from helpdesk.models import Message, Participant, TicketHistory
    from helpdesk.services import contacts

    requester = contacts.find_or_create(db.session, "a@b.example")
    tables = (Ticket.__table__, Message.__table__, TicketHistory.__table__, Participant.__table__)
    ticket_id, _number = numbering.insert_numbered(
        db.session,
        {"subject": "s", "channel": "web", "source": "agent", "requester_id": requester.id},
        [
            (Message.__table__, {"kind": "reply", "author_label": "a", "channel": "web"}),
            (TicketHistory.__table__, {"field": "status", "actor_label": "a"}),
            (Participant.__table__, {"email": "c@b.example"}),
        ],
    )
    db.session.commit()
    for table in tables:
        key = table.c.id if table is Ticket.__table__ else table.c.ticket_id
        row = db.session.execute(select(table).where(key == ticket_id)).mappings().one()
        defaulted = [c for c in table.c if c.default is not None]
        assert defaulted, table.name
        for col in defaulted:
            expected = col.default.arg if col.default.is_scalar else None
            assert row[col.name] is not None, f"{table.name}.{col.name} got no default"
            if expected is not None:
                assert row[col.name] == expected, f"{table.name}.{col.name}"


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_a_creation_gone_quiet_holding_the_counter_is_ended_by_postgresql(app, service, monkeypatch):
    """A host that took a number and then froze (a paused VM or container, a network
    partition) held the counter row until its connection died, hours with the
    kernel's TCP keepalive: no ticket could be opened on any channel meanwhile.
    PostgreSQL ends such a session after COUNTER_IDLE_LIMIT_MS of silence; its
    number is rolled back with it, so the next creation takes it: no gap."""
    monkeypatch.setattr(numbering, "COUNTER_IDLE_LIMIT_MS", 500)
    taken, resume = threading.Event(), threading.Event()
    outcome: list[str] = []

    def frozen() -> None:
        with app.app_context():
            try:
                _open(TicketsService.from_config(db.session, app.config), requester="bob@example.com")
                taken.set()
                resume.wait(30)  # says nothing more, as a frozen host does
                db.session.commit()
                outcome.append("committed")
            except OperationalError:
                outcome.append("ended")
            finally:
                db.session.remove()

    thread = threading.Thread(target=frozen)
    thread.start()
    assert taken.wait(10)
    db.session.execute(text("SET LOCAL lock_timeout = '5s'"))  # the old code waited here for ever
    ticket = _open(service)
    db.session.commit()
    resume.set()
    thread.join(30)
    assert (ticket.number, outcome) == (1, ["ended"])
    assert db.session.execute(select(Ticket.number)).scalars().all() == [1]
