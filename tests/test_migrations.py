"""The migrations build exactly the schema the models describe, on both databases."""

from __future__ import annotations

import uuid
from pathlib import Path

import flask_migrate
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError, OperationalError

from helpdesk.database import include_in_autogenerate
from helpdesk.extensions import db
from tests.support.app import make_app


@pytest.fixture
def empty_database_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'empty.db'}"
    return request.getfixturevalue("pg_server").create_database(f"empty_{uuid.uuid4().hex[:8]}")


def test_create_app_does_not_migrate(empty_database_url):
    app = make_app(empty_database_url)
    with app.app_context():
        assert inspect(db.engine).get_table_names() == []
        db.engine.dispose()


def test_upgrade_builds_schema_matching_models(empty_database_url):
    app = make_app(empty_database_url)
    with app.app_context():
        flask_migrate.upgrade()
        with db.engine.connect() as connection:
            differences = compare_metadata(
                MigrationContext.configure(
                    connection, opts={"compare_type": True, "include_object": include_in_autogenerate}
                ),
                db.metadata,
            )
            counter = connection.execute(text("SELECT next_value FROM ticket_counter")).all()
        assert differences == []
        assert counter == [(1,)]
        tickets = {ix["name"]: ix for ix in inspect(db.engine).get_indexes("tickets")}
        for column in ("status", "priority", "assignee_id", "requester_id", "created_at", "updated_at"):
            assert f"ix_tickets_{column}" in tickets
        if db.engine.dialect.name == "postgresql":  # search indexes (migrations 0006, 0023, 0039)
            assert {"ix_tickets_subject_trgm", "ix_tickets_description_words"} <= set(tickets)
            assert "ix_tickets_description_trgm" not in tickets
            columns = {column["name"] for column in inspect(db.engine).get_columns("tickets")}
            assert "description_words" in columns
        flask_migrate.downgrade(revision="base")
        assert set(inspect(db.engine).get_table_names()) <= {"alembic_version"}
        db.engine.dispose()


def test_existing_tickets_get_their_source_from_their_channel(empty_database_url):
    """Migration 0012: portal and API tickets were opened by agents, system ones by the
    system, mail and chat ones by customers."""
    app = make_app(empty_database_url)
    with app.app_context():
        flask_migrate.upgrade(revision="0011")
        with db.engine.begin() as connection:
            _insert_contact(connection)
            for number, channel in enumerate(("web", "api", "email", "chat", "system"), start=1):
                connection.execute(
                    text(
                        "INSERT INTO tickets (number, subject, description, status, priority, "
                        "category, channel, is_email_originated, requester_id, created_at, "
                        "updated_at, pending_seconds) "
                        "VALUES (:number, 's', '', 'new', 'medium', 'support', :channel, false, "
                        "(SELECT id FROM contacts), :now, :now, 0)"
                    ),
                    {"number": number, "channel": channel, "now": "2026-01-01 00:00:00"},
                )
        flask_migrate.upgrade()
        with db.engine.connect() as connection:
            sources = dict(connection.execute(text("SELECT channel, source FROM tickets")).all())
        assert sources == {
            "web": "agent",
            "api": "agent",
            "email": "customer",
            "chat": "customer",
            "system": "system",
        }
        flask_migrate.downgrade(revision="0011")
        db.engine.dispose()


def test_existing_tickets_become_general_inquiries_and_the_downgrade_drops_type_history(empty_database_url):
    """Migration 0015: service fields start empty; a type change's history rows go with it."""
    app = make_app(empty_database_url)
    with app.app_context():
        flask_migrate.upgrade(revision="0014")
        with db.engine.begin() as connection:
            _insert_contact(connection)
            _insert_ticket(connection, "")
        flask_migrate.upgrade()
        with db.engine.begin() as connection:
            row = connection.execute(
                text("SELECT ticket_type, service_address, affected_services, device_serials FROM tickets")
            ).one()
            assert tuple(row) == ("general_inquiry", "", "", "")
            connection.execute(
                text(
                    "INSERT INTO ticket_history (ticket_id, field, old_value, new_value, actor_label, "
                    "reason, automated, created_at) VALUES ((SELECT id FROM tickets), 'ticket_type', "
                    "'general_inquiry', 'outage_report', 'Agnes', '', false, :now)"
                ),
                {"now": "2026-01-01 00:00:00"},
            )
        flask_migrate.downgrade(revision="0014")
        with db.engine.connect() as connection:
            assert connection.execute(text("SELECT count(*) FROM ticket_history")).scalar() == 0
            assert connection.execute(text("SELECT count(*) FROM tickets")).scalar() == 1
        db.engine.dispose()


def _insert_ticket(connection, columns: str, values: str = "") -> None:  # type: ignore[no-untyped-def]
    """Ticket 1 of Ann as a revision after 0012 stores it, with `columns`/`values` more."""
    connection.execute(
        text(
            "INSERT INTO tickets (number, subject, description, status, priority, category, channel, "
            "source, is_email_originated, requester_id, created_at, updated_at, pending_seconds"
            f"{columns}) VALUES (1, 's', '', 'new', 'medium', 'support', 'email', 'customer', false, "
            f"(SELECT id FROM contacts), :now, :now, 0{values})"
        ),
        {"now": "2026-01-01 00:00:00"},
    )


def _merged_tickets(connection, numbers, status, merges):  # type: ignore[no-untyped-def]
    """A contact and tickets of `numbers` in `status`, each (merged, into) pair of
    `merges` merged as the code of that revision stored it; their ids by number."""
    _insert_contact(connection)
    for number in numbers:
        connection.execute(
            text(
                "INSERT INTO tickets (number, subject, description, status, priority, category,"
                " channel, source, is_email_originated, requester_id, created_at, updated_at,"
                " pending_seconds) VALUES (:number, 's', '', :status, 'medium', 'support', 'email',"
                " 'customer', false, (SELECT id FROM contacts), :now, :now, 0)"
            ),
            {"number": number, "status": status, "now": "2026-01-01 00:00:00"},
        )
    ids = dict(connection.execute(text("SELECT number, id FROM tickets")).all())
    for merged, into in merges:
        connection.execute(
            text("UPDATE tickets SET merged_into_id = :into WHERE id = :merged"),
            {"into": ids[into], "merged": ids[merged]},
        )
    return ids


def _insert_contact(connection) -> None:  # type: ignore[no-untyped-def]
    connection.execute(
        text("INSERT INTO contacts (email, name, created_at) VALUES ('ann@example.com', '', :now)"),
        {"now": "2026-01-01 00:00:00"},
    )


def test_a_new_install_starts_with_three_teams_and_installations_routed_to_field_ops(empty_database_url):
    """Migration 0016 seeds the teams and the routing table; existing tickets get their type's team."""
    app = make_app(empty_database_url)
    with app.app_context():
        flask_migrate.upgrade(revision="0015")
        with db.engine.begin() as connection:
            _insert_contact(connection)
            _insert_ticket(connection, ", ticket_type", ", 'installation_request'")
        flask_migrate.upgrade()
        with db.engine.connect() as connection:
            teams = connection.execute(text("SELECT name FROM teams ORDER BY id")).scalars().all()
            routes = dict(
                connection.execute(
                    text("SELECT ticket_type, name FROM team_routes JOIN teams ON teams.id = team_id")
                ).all()
            )
            ticket_team = connection.execute(
                text("SELECT name FROM tickets JOIN teams ON teams.id = tickets.team_id")
            ).scalar_one()
        assert teams == ["support_team", "onboarding_team", "field_ops"]
        assert routes["installation_request"] == "field_ops"
        assert set(routes.values()) == {"support_team", "field_ops"} and len(routes) == 12
        assert ticket_team == "field_ops"
        with db.engine.begin() as connection:  # a team added later gets the next id
            connection.execute(
                text("INSERT INTO teams (name, created_at) VALUES ('noc', :now)"), {"now": "2026-01-01"}
            )
        flask_migrate.downgrade(revision="0015")
        db.engine.dispose()


def test_mail_is_stored_with_lz4_and_read_back_byte_for_byte(empty_database_url):
    """Migration 0022: on PostgreSQL the mail-sized columns compress new values with
    lz4 (a mail stored before it stays readable: pglz); the downgrade gives them back
    the server's default. SQLite stores the same bytes either way."""
    from helpdesk.inbound.ingest import Envelope, ingest
    from helpdesk.services.senders import SendersService
    from tests.support.mail import SUPPORT, message

    def store(n: int) -> None:
        raw = message(subject=f"Router {n}", body="The router blinks red again.\n" * 300).as_bytes()
        result = ingest(raw, Envelope("ann@example.com", (SUPPORT,), "smtp"), app.config)
        db.session.remove()
        with db.engine.connect() as connection:
            stored = connection.execute(
                text("SELECT raw FROM inbound_mails WHERE id = :id"), {"id": result.inbound_id}
            ).scalar_one()
        assert bytes(stored) == raw

    def todays_columns(alter: str) -> None:
        """Today's code reads and writes `contacts.mailbox` (0025) and writes
        `inbound_mails.source` (0043): the columns are added by hand while the schema
        is older, so a mail can be stored, and dropped again before the migrations
        add them."""
        with db.engine.begin() as connection:
            for table, column in (
                ("contacts", "mailbox VARCHAR(320)"),
                ("inbound_mails", "source VARCHAR(500)"),
            ):
                named = column if alter == "ADD" else column.split()[0]
                connection.execute(text(f"ALTER TABLE {table} {alter} COLUMN {named}"))

    def methods(table: str, column: str) -> list[str]:
        query = text(f"SELECT pg_column_compression({column}) FROM {table} ORDER BY id")
        with db.engine.connect() as connection:
            return list(connection.execute(query).scalars())

    app = make_app(empty_database_url)
    with app.app_context():
        flask_migrate.upgrade(revision="0021")
        SendersService(db.session).add("ann@example.com", "Example Ltd")
        db.session.commit()
        todays_columns("ADD")
        store(1)
        todays_columns("DROP")
        flask_migrate.upgrade()
        store(2)
        if db.engine.dialect.name == "postgresql":
            assert methods("inbound_mails", "raw") == ["pglz", "lz4"]
            assert methods("tickets", "description") == ["pglz", "lz4"]
            assert methods("messages", "body") == ["pglz", "lz4"]
        flask_migrate.downgrade(revision="0021")
        todays_columns("ADD")
        store(3)
        if db.engine.dialect.name == "postgresql":
            assert methods("inbound_mails", "raw") == ["pglz", "lz4", "pglz"]
        db.engine.dispose()


def test_existing_contacts_get_the_mailbox_their_address_reaches(empty_database_url):
    """Migration 0025: the per-customer limits count a mailbox, so the contacts there
    before it get theirs (`addresses.mailbox`), or their tickets would not count for
    a plus-address of them that writes later."""
    app = make_app(empty_database_url)
    with app.app_context():
        flask_migrate.upgrade(revision="0024")
        emails = [
            "robot+t1@corp.example",
            "robot@corp.example",
            "ana@bücher.example",
            "34600111222@phone.invalid",
        ]
        with db.engine.begin() as connection:
            for email in emails:
                connection.execute(
                    text("INSERT INTO contacts (email, name, created_at) VALUES (:email, '', :now)"),
                    {"email": email, "now": "2026-01-01 00:00:00"},
                )
        flask_migrate.upgrade()
        with db.engine.connect() as connection:
            mailboxes = connection.execute(text("SELECT email, mailbox FROM contacts ORDER BY id")).all()
        assert [tuple(row) for row in mailboxes] == [
            ("robot+t1@corp.example", "robot@corp.example"),
            ("robot@corp.example", "robot@corp.example"),
            ("ana@bücher.example", "ana@xn--bcher-kva.example"),
            ("34600111222@phone.invalid", "34600111222@phone.invalid"),
        ]
        flask_migrate.downgrade(revision="0024")
        with db.engine.connect() as connection:
            assert "mailbox" not in {column["name"] for column in inspect(connection).get_columns("contacts")}
        db.engine.dispose()


def test_held_mail_that_was_never_matched_gets_its_ticket_unknown(empty_database_url):
    """Migration 0026: no item held before the visibility rule recorded the ticket its
    mail names: not mail held before it was matched (over a cap, unparseable, no
    sender, a failure), and not a stranger's or an unauthenticated reply held for
    its sender either (reported: marking only the first kind left a pending "may not
    write into TKT-000001" open to every agent of every team). So every one of them
    becomes admins' to review under AGENT_VISIBILITY team or own, whatever its state
    (a decided item's page shows the mail too)."""
    app = make_app(empty_database_url)
    with app.app_context():
        flask_migrate.upgrade(revision="0025")
        reasons = [
            "over a limit: about 28 header fields, more than MAX_HEADER_FIELDS (12)",
            "unparseable mail: no mail headers",
            "processing failed (RuntimeError, then RuntimeError while quarantining); parked",
            "unknown sender: mallory@nowhere.example",
            "From not authenticated (dmarc=fail): ann@example.com may not write into TKT-000001",
            "customer limit: 10 tickets opened in the last hour; approving opens the ticket "
            "(stranger: bob@example.com does not belong on TKT-000002)",
        ]
        with db.engine.begin() as connection:
            for number, reason in enumerate(reasons, 1):
                connection.execute(
                    text(
                        "INSERT INTO inbound_mails (id, dedup_key, channel, mail_from, from_address,"
                        " from_source, recipients, subject, size, outcome, reason, received_at, raw)"
                        " VALUES (:id, :key, 'smtp', '', '', '', '', '', 0, 'quarantined', :reason,"
                        " :now, :raw)"
                    ),
                    {"id": number, "key": f"k{number}", "reason": reason, "now": "2026-01-01", "raw": b""},
                )
                connection.execute(
                    text(
                        "INSERT INTO quarantine_items (inbound_mail_id, reason, state, created_at)"
                        " VALUES (:id, :reason, :state, :now)"
                    ),
                    {
                        "id": number,
                        "reason": reason,
                        "now": "2026-01-01",
                        "state": ("pending", "rejected")[number % 2],
                    },
                )
        flask_migrate.upgrade()
        with db.engine.connect() as connection:
            marked = connection.execute(
                text("SELECT ticket_unknown FROM quarantine_items ORDER BY inbound_mail_id")
            ).scalars()
            assert list(marked) == [True] * len(reasons)
        flask_migrate.downgrade(revision="0025")
        db.engine.dispose()


def test_the_description_words_index_reads_only_the_searched_characters(empty_database_url):
    """Migration 0027: on PostgreSQL the words index of 0023 took the whole description,
    and a pasted log of different words passed the 1 MB tsvector limit: no ticket could
    hold it. It now reads the first SEARCHED_DESCRIPTION_CHARS characters, the very
    expression the search asks; the downgrade gives back 0023's index. SQLite has no
    such index and stores the description either way."""
    from helpdesk.services.queue import SEARCHED_DESCRIPTION_CHARS
    from tests.support.hostile import distinct_words

    def definition() -> str:
        with db.engine.connect() as connection:
            return connection.execute(
                text("SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_tickets_description_words'")
            ).scalar_one()

    def store(description: str) -> None:
        with db.engine.begin() as connection:
            _insert_ticket(connection, "")
            connection.execute(text("UPDATE tickets SET description = :d"), {"d": description})
            connection.execute(text("DELETE FROM tickets"))

    log = distinct_words(140_000)
    app = make_app(empty_database_url)
    with app.app_context():
        flask_migrate.upgrade(revision="0026")
        with db.engine.begin() as connection:
            _insert_contact(connection)
        postgresql = db.engine.dialect.name == "postgresql"
        if postgresql:
            assert definition().endswith("to_tsvector('simple'::regconfig, description))")
            with pytest.raises(OperationalError, match="string is too long for tsvector"):
                store(log)
        flask_migrate.upgrade(revision="0027")
        store(log)
        if postgresql:
            prefix = f'"left"(description, {SEARCHED_DESCRIPTION_CHARS})'
            assert definition().endswith(f"to_tsvector('simple'::regconfig, {prefix}))")
        flask_migrate.upgrade()
        store(log)  # the stored words of 0039 read the same characters
        flask_migrate.downgrade(revision="0026")
        if postgresql:
            assert definition().endswith("to_tsvector('simple'::regconfig, description))")
        db.engine.dispose()


def test_held_mail_held_before_follows_no_other(empty_database_url):
    """Migration 0028: a held item records the held mail it follows only from now on
    (nothing of the mail is read again); items held before follow none and are
    reviewed as before. The column refers to an item; the downgrade drops it."""
    app = make_app(empty_database_url)
    with app.app_context():
        flask_migrate.upgrade(revision="0027")
        with db.engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO inbound_mails (id, dedup_key, channel, mail_from, from_address,"
                    " from_source, recipients, subject, size, outcome, reason, received_at, raw)"
                    " VALUES (1, 'k1', 'smtp', '', '', '', '', '', 0, 'quarantined', 'held',"
                    " '2026-01-01', :raw)"
                ),
                {"raw": b""},
            )
            connection.execute(
                text(
                    "INSERT INTO quarantine_items (inbound_mail_id, reason, state, ticket_unknown,"
                    " created_at) VALUES (1, 'held', 'pending', false, '2026-01-01')"
                )
            )
        flask_migrate.upgrade()
        with db.engine.connect() as connection:
            assert connection.execute(
                text("SELECT follows_item_id FROM quarantine_items")
            ).scalars().all() == [None]
        foreign = inspect(db.engine).get_foreign_keys("quarantine_items")
        assert any(key["constrained_columns"] == ["follows_item_id"] for key in foreign)
        flask_migrate.downgrade(revision="0027")
        columns = [column["name"] for column in inspect(db.engine).get_columns("quarantine_items")]
        assert "follows_item_id" not in columns
        db.engine.dispose()


def test_existing_gmail_keys_drop_their_dots_and_googlemail(empty_database_url):
    """Migration 0030: Gmail ignores dots and googlemail.com is gmail.com, so the
    per-mailbox limits count `v.ictim@gmail.com` as `victim@gmail.com` from now on;
    the keys stored before (contacts.mailbox, outbox.to_mailbox) become that too, or
    the tickets and acknowledgments of those spellings would not count. Addresses
    stay as written, other domains keep their dots, a row without a key keeps none;
    the downgrade writes the keys the code before it computes."""
    app = make_app(empty_database_url)
    old = {
        "v.ictim@gmail.com": "v.ictim@gmail.com",
        "vi.ctim+x@googlemail.com": "vi.ctim@googlemail.com",
        "v.ictim@\uff47\uff4d\uff41\uff49\uff4c.com": "v.ictim@gmail.com",
        "v.ictim@example.com": "v.ictim@example.com",
    }
    new = ["victim@gmail.com", "victim@gmail.com", "victim@gmail.com", "v.ictim@example.com"]
    with app.app_context():
        flask_migrate.upgrade(revision="0029")
        with db.engine.begin() as connection:
            _contacts_keyed(connection, old)
            for address, key in [*old.items(), ("never.claimed@gmail.com", None)]:
                connection.execute(
                    text(
                        "INSERT INTO outbox (kind, to_address, to_mailbox, cc_addresses, status_reason,"
                        " state, attempts, next_attempt_at, last_error, created_at)"
                        " VALUES ('created', :address, :key, '', '', 'sent', 1, '2026-01-01', '',"
                        " '2026-01-01')"
                    ),
                    {"address": address, "key": key},
                )

        def keys() -> tuple[list[tuple[str, str]], list[tuple[str, str | None]]]:
            with db.engine.connect() as connection:
                contacts = connection.execute(text("SELECT email, mailbox FROM contacts ORDER BY id"))
                outbox = connection.execute(text("SELECT to_address, to_mailbox FROM outbox ORDER BY id"))
                return [tuple(row) for row in contacts], [tuple(row) for row in outbox]

        flask_migrate.upgrade()
        upgraded = list(zip(old, new, strict=True))
        assert keys() == (upgraded, [*upgraded, ("never.claimed@gmail.com", None)])
        flask_migrate.downgrade(revision="0029")
        downgraded = list(old.items())
        assert keys() == (downgraded, [*downgraded, ("never.claimed@gmail.com", None)])


def test_held_mail_of_tickets_merged_before_moves_to_the_survivor(empty_database_url):
    """Migration 0031: held mail naming a ticket merged before, or approved into it,
    in any state, names the survivor at the end of the merges (T1 → T2 → T3), as a
    merge now moves it; held mail of a ticket not merged, or of none, stays."""
    app = make_app(empty_database_url)
    with app.app_context():
        flask_migrate.upgrade(revision="0030")
        with db.engine.begin() as connection:
            ids = _merged_tickets(connection, range(1, 5), "new", ((1, 2), (2, 3)))
            held = [(1, "approved"), (2, "pending"), (3, "rejected"), (4, "pending"), (None, "pending")]
            for index, (number, state) in enumerate(held, start=1):
                connection.execute(
                    text(
                        "INSERT INTO inbound_mails (id, dedup_key, channel, mail_from, from_address,"
                        " from_source, recipients, subject, size, outcome, reason, received_at, raw)"
                        " VALUES (:id, :key, 'smtp', '', '', '', '', '', 0, 'quarantined', 'held',"
                        " '2026-01-01', :raw)"
                    ),
                    {"id": index, "key": f"k{index}", "raw": b""},
                )
                connection.execute(
                    text(
                        "INSERT INTO quarantine_items (inbound_mail_id, reason, state, ticket_id,"
                        " ticket_unknown, created_at) VALUES (:id, 'held', :state, :ticket, false,"
                        " '2026-01-01')"
                    ),
                    {"id": index, "state": state, "ticket": ids.get(number)},
                )
        flask_migrate.upgrade()
        with db.engine.connect() as connection:
            named = (
                connection.execute(text("SELECT ticket_id FROM quarantine_items ORDER BY inbound_mail_id"))
                .scalars()
                .all()
            )
        assert named == [ids[3], ids[3], ids[3], ids[4], None]
        flask_migrate.downgrade(revision="0030")
        db.engine.dispose()


def test_held_follow_ups_held_before_learn_whether_they_follow_their_own_mail(empty_database_url):
    """Migration 0032: a follow-up held before follows its own sender's mail when the
    two From addresses reach one mailbox (detail and case aside); another sender's,
    or a mail of no sender, is not its own. Held before, a follow-up recorded its
    thread's root: the pending followers of a root followed more than once (which
    answers which is not known) go to admins, a root's only follower stays as it
    was. The downgrade drops the column."""
    app = make_app(empty_database_url)
    follows = {2: 1, 3: 1, 4: 1, 6: 5}
    with app.app_context():
        flask_migrate.upgrade(revision="0031")
        senders = ["kim@stranger.example", "Kim+again@STRANGER.example", "eve@elsewhere.example", ""]
        senders += ["lee@stranger.example", "lee@stranger.example"]
        with db.engine.begin() as connection:
            for index, sender in enumerate(senders, start=1):
                connection.execute(
                    text(
                        "INSERT INTO inbound_mails (id, dedup_key, channel, mail_from, from_address,"
                        " from_source, recipients, subject, size, outcome, reason, received_at, raw)"
                        " VALUES (:id, :key, 'smtp', '', :sender, '', '', '', 0, 'quarantined', 'held',"
                        " '2026-01-01', :raw)"
                    ),
                    {"id": index, "key": f"k{index}", "sender": sender, "raw": b""},
                )
                connection.execute(
                    text(
                        "INSERT INTO quarantine_items (id, inbound_mail_id, reason, state, ticket_unknown,"
                        " follows_item_id, created_at) VALUES (:id, :id, 'held', 'pending', false,"
                        " :follows, '2026-01-01')"
                    ),
                    {"id": index, "follows": follows.get(index)},
                )
        flask_migrate.upgrade()
        with db.engine.connect() as connection:
            own = connection.execute(text("SELECT follows_own FROM quarantine_items ORDER BY id")).scalars()
            assert [bool(value) for value in own] == [False, True, False, False, False, True]
            unknown = connection.execute(text("SELECT ticket_unknown FROM quarantine_items ORDER BY id"))
            assert [bool(value) for value in unknown.scalars()] == [False, True, True, True, False, False]
        flask_migrate.downgrade(revision="0031")
        columns = [column["name"] for column in inspect(db.engine).get_columns("quarantine_items")]
        assert "follows_own" not in columns
        db.engine.dispose()


def test_participants_held_before_learn_their_mailbox(empty_database_url):
    """Migration 0034: each CC participant gets the mailbox its address reaches (the
    key a WhatsApp number's binding asks whether an address was used, in any
    spelling); the downgrade drops the column."""
    app = make_app(empty_database_url)
    with app.app_context():
        flask_migrate.upgrade(revision="0033")
        with db.engine.begin() as connection:
            _insert_contact(connection)
            connection.execute(
                text(
                    "INSERT INTO tickets (number, subject, description, status, priority, category,"
                    " channel, source, is_email_originated, requester_id, created_at, updated_at,"
                    " pending_seconds) VALUES (1, 's', '', 'new', 'medium', 'support', 'email',"
                    " 'customer', false, (SELECT id FROM contacts), :now, :now, 0)"
                ),
                {"now": "2026-01-01 00:00:00"},
            )
            for email in ("Bob+x@Example.com", "b.o.b@googlemail.com", "carl@example.com"):
                connection.execute(
                    text(
                        "INSERT INTO participants (ticket_id, email, name)"
                        " VALUES ((SELECT id FROM tickets), :email, '')"
                    ),
                    {"email": email},
                )
        flask_migrate.upgrade(revision="0034")
        expected = ["bob@example.com", "bob@gmail.com", "carl@example.com"]
        assert _participant_mailboxes() == expected
        # Migration 0040 drops it (nothing reads it since numbers bind only with a
        # proof); its downgrade gives it back, filled again.
        flask_migrate.upgrade()
        assert "mailbox" not in [c["name"] for c in inspect(db.engine).get_columns("participants")]
        flask_migrate.downgrade(revision="0039")
        assert _participant_mailboxes() == expected
        flask_migrate.downgrade(revision="0033")
        columns = [column["name"] for column in inspect(db.engine).get_columns("participants")]
        assert "mailbox" not in columns
        db.engine.dispose()


def _participant_mailboxes() -> list[str]:
    with db.engine.connect() as connection:
        return list(connection.execute(text("SELECT mailbox FROM participants ORDER BY id")).scalars())


def test_outbox_takes_sla_digests_about_no_ticket(empty_database_url):
    """Migration 0035: an outbox row may be an SLA digest, whose ticket is empty (it is
    about many); the downgrade drops the digests and refuses the kind again."""
    insert_digest = text(
        "INSERT INTO outbox (ticket_id, kind, to_address, cc_addresses, status_reason, state,"
        " attempts, next_attempt_at, last_error, created_at)"
        " VALUES (NULL, 'sla_digest', 'ada@helpdesk.test', '', '4', 'pending', 0, :now, '', :now)"
    )
    now = {"now": "2026-01-01 00:00:00"}
    app = make_app(empty_database_url)
    with app.app_context():
        flask_migrate.upgrade(revision="0034")
        with pytest.raises(IntegrityError), db.engine.begin() as connection:
            connection.execute(insert_digest, now)
        flask_migrate.upgrade()
        with db.engine.begin() as connection:
            connection.execute(insert_digest, now)
            assert connection.execute(text("SELECT kind, ticket_id FROM outbox")).all() == [
                ("sla_digest", None)
            ]
        flask_migrate.downgrade(revision="0034")
        with db.engine.begin() as connection:
            assert connection.execute(text("SELECT count(*) FROM outbox")).scalar_one() == 0
        with pytest.raises(IntegrityError), db.engine.begin() as connection:
            connection.execute(insert_digest, now)
        db.engine.dispose()


def test_outbox_takes_verification_codes_and_the_proofs_have_a_table(empty_database_url):
    """Migration 0038: an outbox row may carry a WhatsApp customer's verification
    code (about no ticket), and the codes' hashes have a table; the downgrade drops
    both the rows of the kind and the table."""
    insert_code = text(
        "INSERT INTO outbox (ticket_id, kind, to_address, cc_addresses, status_reason, state,"
        " attempts, next_attempt_at, last_error, created_at)"
        " VALUES (NULL, 'email_code', 'bob@example.com', '', 'es 123456 15', 'pending', 0, :now, '', :now)"
    )
    now = {"now": "2026-01-01 00:00:00"}
    app = make_app(empty_database_url)
    with app.app_context():
        flask_migrate.upgrade(revision="0037")
        with pytest.raises(IntegrityError), db.engine.begin() as connection:
            connection.execute(insert_code, now)
        flask_migrate.upgrade(revision="0038")
        with db.engine.begin() as connection:
            connection.execute(insert_code, now)
            assert connection.execute(text("SELECT kind FROM outbox")).scalars().all() == ["email_code"]
            assert connection.execute(text("SELECT count(*) FROM email_proofs")).scalar_one() == 0
        flask_migrate.downgrade(revision="0037")
        with db.engine.begin() as connection:
            assert connection.execute(text("SELECT count(*) FROM outbox")).scalar_one() == 0
        assert "email_proofs" not in inspect(db.engine).get_table_names()
        with pytest.raises(IntegrityError), db.engine.begin() as connection:
            connection.execute(insert_code, now)


def test_tickets_stored_before_get_their_description_words(empty_database_url):
    """Migration 0039: on PostgreSQL the words of each ticket's description are a
    stored column (the search reads them instead of parsing every description it
    reads), computed for the tickets already there too, and again when a description
    changes, without their positions (the search never asks where a word is); the
    words index is on the column. The downgrade drops the column and
    gives back 0027's expression index. SQLite has neither."""

    def words() -> list[str]:
        with db.engine.connect() as connection:
            return list(connection.execute(text("SELECT description_words::text FROM tickets")).scalars())

    def definition() -> str:
        with db.engine.connect() as connection:
            return connection.execute(
                text("SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_tickets_description_words'")
            ).scalar_one()

    app = make_app(empty_database_url)
    with app.app_context():
        flask_migrate.upgrade(revision="0038")
        with db.engine.begin() as connection:
            _insert_contact(connection)
            _insert_ticket(connection, "")
            connection.execute(text("UPDATE tickets SET description = 'El Módem no enciende'"))
        flask_migrate.upgrade()
        if db.engine.dialect.name != "postgresql":
            flask_migrate.downgrade(revision="0038")
            db.engine.dispose()
            return
        assert words() == ["'el' 'enciende' 'módem' 'no'"]
        assert definition().endswith("USING gin (description_words)")
        with db.engine.begin() as connection:
            connection.execute(text("UPDATE tickets SET description = 'Sin señal'"))
        assert words() == ["'señal' 'sin'"]
        flask_migrate.downgrade(revision="0038")
        columns = {column["name"] for column in inspect(db.engine).get_columns("tickets")}
        assert "description_words" not in columns
        assert definition().endswith("""to_tsvector('simple'::regconfig, "left"(description, 50000)))""")
        db.engine.dispose()


def test_tickets_merged_before_point_at_the_survivor_at_the_end_of_their_merges(empty_database_url):
    """Migration 0042: a chain of merges stored before (T1 → T2 → T3 → T4, T5 → T3)
    points each merged ticket at T4, the survivor; T6, not merged, stays so. The
    downgrade leaves them there: the old code finds the survivor one step away."""
    app = make_app(empty_database_url)
    with app.app_context():
        flask_migrate.upgrade(revision="0041")
        with db.engine.begin() as connection:
            ids = _merged_tickets(connection, range(1, 7), "closed", ((1, 2), (2, 3), (3, 4), (5, 3)))
        flask_migrate.upgrade()
        merges = "SELECT number, merged_into_id FROM tickets ORDER BY number"
        flat = [(n, ids[4] if n in (1, 2, 3, 5) else None) for n in range(1, 7)]
        with db.engine.connect() as connection:
            assert [tuple(row) for row in connection.execute(text(merges))] == flat
        flask_migrate.downgrade(revision="0041")
        with db.engine.connect() as connection:
            assert [tuple(row) for row in connection.execute(text(merges))] == flat
        db.engine.dispose()


def test_mail_and_duplicates_counted_before_keep_no_source_and_the_downgrade_adds_them_up(empty_database_url):
    """Migration 0043: a mail recorded before names no mailbox or listener (NULL, not
    its channel), the duplicates counted before stay under the source ""; the
    downgrade adds each channel's counts up again and drops the column."""
    app = make_app(empty_database_url)
    with app.app_context():
        flask_migrate.upgrade(revision="0042")
        with db.engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO inbound_mails (dedup_key, channel, mail_from, from_address,"
                    " from_source, recipients, subject, size, outcome, reason, received_at, raw)"
                    " VALUES ('k', 'imap', '', '', '', '', '', 0, 'created', '', '2026-01-01', :raw)"
                ),
                {"raw": b""},
            )
            connection.execute(text("INSERT INTO inbound_duplicates (channel, count) VALUES ('smtp', 3)"))
        flask_migrate.upgrade(revision="0043")
        counts = "SELECT channel, source, count FROM inbound_duplicates ORDER BY channel, source"
        with db.engine.begin() as connection:
            assert connection.execute(text("SELECT source FROM inbound_mails")).scalars().all() == [None]
            assert [tuple(row) for row in connection.execute(text(counts))] == [("smtp", "", 3)]
            connection.execute(
                text(
                    "INSERT INTO inbound_duplicates (channel, source, count) VALUES"
                    " ('smtp', 'smtp 0.0.0.0:25', 2), ('imap', 'u@h:993/INBOX', 1)"
                )
            )
        flask_migrate.downgrade(revision="0042")
        with db.engine.connect() as connection:
            summed = connection.execute(
                text("SELECT channel, count FROM inbound_duplicates ORDER BY channel")
            )
            assert [tuple(row) for row in summed] == [("imap", 1), ("smtp", 5)]
        assert "source" not in [c["name"] for c in inspect(db.engine).get_columns("inbound_mails")]
        db.engine.dispose()


def test_idempotency_keys_get_a_table_one_row_per_caller_and_key(empty_database_url):
    """Migration 0044: the API's idempotency keys (docs/web.md), one per caller and
    key whatever the digest, with their age indexed for the sweep; the downgrade
    drops the table."""
    insert = text(
        "INSERT INTO idempotency_keys (caller, key, digest, created_at)"
        " VALUES (:caller, 'retry-1', :digest, '2026-01-01 00:00:00')"
    )
    app = make_app(empty_database_url)
    with app.app_context():
        flask_migrate.upgrade(revision="0043")
        assert "idempotency_keys" not in inspect(db.engine).get_table_names()
        flask_migrate.upgrade()
        with db.engine.begin() as connection:
            connection.execute(insert, {"caller": "staff:1", "digest": "0" * 64})
            connection.execute(insert, {"caller": "integration:1", "digest": "0" * 64})
        with pytest.raises(IntegrityError), db.engine.begin() as connection:
            connection.execute(insert, {"caller": "staff:1", "digest": "1" * 64})
        indexes = {index["name"] for index in inspect(db.engine).get_indexes("idempotency_keys")}
        assert "ix_idempotency_keys_created_at" in indexes
        flask_migrate.downgrade(revision="0043")
        assert "idempotency_keys" not in inspect(db.engine).get_table_names()
        db.engine.dispose()


def test_the_ticket_indexes_of_mails_messages_and_rows_take_the_column_threading_reads(empty_database_url):
    """Migration 0045: each index on ticket_id alone of inbound_mails, messages and
    outbox becomes one on ticket_id and the column the sender's threading reads with
    it (docs/benchmarks.md); the downgrade puts the old ones back."""
    paired = {
        "inbound_mails": ("ix_inbound_mails_ticket_id_received_at", ["ticket_id", "received_at"]),
        "messages": ("ix_messages_ticket_id_inbound_mail_id", ["ticket_id", "inbound_mail_id"]),
        "outbox": ("ix_outbox_ticket_id_created_at", ["ticket_id", "created_at"]),
    }

    def indexes(table: str) -> dict[str, list[str]]:
        return {index["name"]: index["column_names"] for index in inspect(db.engine).get_indexes(table)}

    app = make_app(empty_database_url)
    with app.app_context():
        flask_migrate.upgrade(revision="0044")
        for table in paired:
            assert indexes(table)[f"ix_{table}_ticket_id"] == ["ticket_id"]
        flask_migrate.upgrade()
        for table, (name, columns) in paired.items():
            found = indexes(table)
            assert found[name] == columns
            assert f"ix_{table}_ticket_id" not in found
        flask_migrate.downgrade(revision="0044")
        for table, (name, _) in paired.items():
            found = indexes(table)
            assert found[f"ix_{table}_ticket_id"] == ["ticket_id"]
            assert name not in found
        db.engine.dispose()


def test_contacts_at_internationalised_domains_get_their_idna_2008_mailbox_key(empty_database_url):
    """Migration 0046: the mailbox key of `hans@straße.de` was computed with Python's
    IDNA 2003 codec, `hans@strasse.de` (another domain's mailbox, counted with it by
    the per-customer limits); it becomes `hans@xn--strae-oqa.de`. Keys the two rules
    agree on stay, and an ASCII address is not even read: a key left stale on purpose
    stays stale. The downgrade writes the IDNA 2003 keys back."""
    app = make_app(empty_database_url)
    before = {
        "hans@stra\u00dfe.de": "hans@strasse.de",
        "ann@b\u00fccher.example": "ann@xn--bcher-kva.example",
        "jos\u00e9@example.com": "jos\u00e9@example.com",
        "ann@xn--strae-oqa.de": "ann@xn--strae-oqa.de",
        "b.ob@example.com": "stale@example.com",
    }
    with app.app_context():
        flask_migrate.upgrade(revision="0045")
        with db.engine.begin() as connection:
            _contacts_keyed(connection, before)

        def keys() -> dict[str, str]:
            with db.engine.connect() as connection:
                return dict(connection.execute(text("SELECT email, mailbox FROM contacts")).all())

        flask_migrate.upgrade()
        assert keys() == {**before, "hans@stra\u00dfe.de": "hans@xn--strae-oqa.de"}
        flask_migrate.downgrade(revision="0045")
        assert keys() == before
        db.engine.dispose()


def _contacts_keyed(connection: Connection, keys: dict[str, str]) -> None:
    """A contact for each address with the mailbox key an older release stored."""
    for email, key in keys.items():
        connection.execute(
            text(
                "INSERT INTO contacts (email, mailbox, name, created_at)"
                " VALUES (:email, :key, '', '2026-01-01')"
            ),
            {"email": email, "key": key},
        )


def test_ticket_history_takes_a_cleared_undeliverable_mark_and_the_downgrade_drops_it(empty_database_url):
    """Migration 0048: `ck_ticket_history_field` allowed no row for an admin clearing
    an address's undeliverable mark on a ticket's page, so the ticket kept no trace of
    it; `deliverable` is allowed now. The downgrade deletes such rows and refuses the
    field again; the rows of other fields stay."""
    insert = text(
        "INSERT INTO ticket_history (ticket_id, field, old_value, new_value, actor_label, reason,"
        " automated, created_at) VALUES ((SELECT id FROM tickets), :field, 'undeliverable',"
        " 'deliverable', 'Ada', 'ann@example.com', false, :now)"
    )
    deliverable = {"field": "deliverable", "now": "2026-01-01 00:00:00"}
    app = make_app(empty_database_url)
    with app.app_context():
        flask_migrate.upgrade(revision="0047")
        with db.engine.begin() as connection:
            _insert_contact(connection)
            _insert_ticket(connection, "")
            connection.execute(insert, {**deliverable, "field": "language"})
        with pytest.raises(IntegrityError), db.engine.begin() as connection:
            connection.execute(insert, deliverable)
        flask_migrate.upgrade()
        with db.engine.begin() as connection:
            connection.execute(insert, deliverable)
            fields = connection.execute(text("SELECT field FROM ticket_history ORDER BY id")).scalars().all()
            assert fields == ["language", "deliverable"]
        flask_migrate.downgrade(revision="0047")
        with db.engine.begin() as connection:
            assert connection.execute(text("SELECT field FROM ticket_history")).scalars().all() == [
                "language"
            ]
        with pytest.raises(IntegrityError), db.engine.begin() as connection:
            connection.execute(insert, deliverable)
        db.engine.dispose()
