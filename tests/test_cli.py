"""The admin commands (docs/operations.md), run through Flask's CLI runner."""

from __future__ import annotations

import logging
import re
from datetime import timedelta

import pytest
from sqlalchemy import select

from helpdesk.clock import database_now, now
from helpdesk.extensions import db
from helpdesk.models import AuthorizedSender, Contact, ImapMailboxState, Organization, StaffUser
from helpdesk.services import Actor, TicketsService
from tests.support.mail import hold_strangers


def staff(email: str) -> StaffUser:
    db.session.expire_all()
    return db.session.execute(select(StaffUser).where(StaffUser.email == email)).scalar_one()


def test_create_staff_with_password(runner):
    result = runner.invoke(
        args=[
            "create-staff",
            "--email",
            "Ann@Example.com",
            "--name",
            "Ann",
            "--role",
            "agent",
            "--password",
            "correct horse battery",
        ]
    )
    assert result.exit_code == 0, result.output
    user = staff("ann@example.com")
    assert user.role == "agent"
    assert user.password_hash != "correct horse battery"
    assert user.check_password("correct horse battery")
    assert "Password:" not in result.output


def test_create_staff_generates_and_prints_password(runner):
    result = runner.invoke(
        args=["create-staff", "--email", "boss@example.com", "--name", "Boss", "--role", "admin"]
    )
    assert result.exit_code == 0, result.output
    password = re.search(r"Password: (\S+)", result.output).group(1)
    assert len(password) >= 12
    assert staff("boss@example.com").check_password(password)


def test_create_staff_refuses_duplicates_bad_role_and_short_password(runner):
    args = ["create-staff", "--email", "x@example.com", "--name", "X", "--role", "agent"]
    assert runner.invoke(args=args).exit_code == 0
    duplicate = runner.invoke(args=args)
    assert duplicate.exit_code == 1 and "already exists" in duplicate.output
    bad_role = runner.invoke(
        args=["create-staff", "--email", "y@example.com", "--name", "Y", "--role", "owner"]
    )
    assert bad_role.exit_code == 2 and "owner" in bad_role.output
    short = runner.invoke(
        args=[
            "create-staff",
            "--email",
            "z@example.com",
            "--name",
            "Z",
            "--role",
            "agent",
            "--password",
            "short",
        ]
    )
    assert short.exit_code == 1 and "at least 10" in short.output


def test_create_first_admin_only_once(runner):
    first = runner.invoke(args=["create-first-admin"])
    assert first.exit_code == 0 and "password:" in first.output
    password = first.output.rsplit("password:", 1)[1].strip()
    assert staff("admin@helpdesk.local").check_password(password)
    second = runner.invoke(args=["create-first-admin"])
    assert second.exit_code == 0 and "already exists" in second.output


def test_senders_add_list_remove(runner):
    assert runner.invoke(args=["senders", "add", "@Example.COM", "--organization", "Acme"]).exit_code == 0
    assert runner.invoke(args=["senders", "add", "bob@other.org", "--organization", "Other"]).exit_code == 0
    listing = runner.invoke(args=["senders", "list"]).output
    assert "@example.com" in listing and "Acme" in listing
    assert "bob@other.org" in listing and "Other" in listing
    removed = runner.invoke(args=["senders", "remove", "@example.com"])
    assert removed.exit_code == 0, removed.output
    db.session.expire_all()
    assert [r.pattern for r in db.session.execute(select(AuthorizedSender)).scalars()] == ["bob@other.org"]


def test_senders_errors(runner):
    bad = runner.invoke(args=["senders", "add", "not an address", "--organization", "Acme"])
    assert bad.exit_code == 1 and "a@b.c" in bad.output
    bad_domain = runner.invoke(args=["senders", "add", "@-localhost", "--organization", "Acme"])
    assert bad_domain.exit_code == 1
    assert runner.invoke(args=["senders", "add", "a@b.co", "--organization", "A"]).exit_code == 0
    again = runner.invoke(args=["senders", "add", "A@B.CO", "--organization", "A"])
    assert again.exit_code == 1 and "already authorized" in again.output
    missing = runner.invoke(args=["senders", "remove", "nobody@b.co"])
    assert missing.exit_code == 1 and "No rule" in missing.output
    no_org = runner.invoke(args=["senders", "add", "c@b.co"])
    assert no_org.exit_code == 2


@pytest.mark.parametrize(
    "pattern", ["root@[127.0.0.1]", "x@127.0.0.1", "ann@[IPv6:2001:db8::1]", "@[192.0.2.1]", "@10.0.0.1"]
)
def test_a_sender_rule_for_an_address_literal_is_refused_since_it_could_never_match(runner, pattern):
    """Mail from an address literal is held whatever the rules say (docs/mail-gateway.md,
    "What an address is"), so a rule for one was taken, listed and never matched. It
    is refused with why; one stored before can still be removed."""
    refused = runner.invoke(args=["senders", "add", pattern, "--organization", "Acme"])
    assert refused.exit_code == 1
    assert "names a host by its IP address: mail from it is held whatever the rules say" in refused.output
    assert db.session.execute(select(AuthorizedSender)).first() is None
    stored = Organization(name="Acme")
    db.session.add(stored)
    db.session.flush()
    db.session.add(AuthorizedSender(pattern=pattern.lower(), organization_id=stored.id))
    db.session.commit()
    removed = runner.invoke(args=["senders", "remove", pattern])
    assert removed.exit_code == 0, removed.output
    db.session.expire_all()
    assert db.session.execute(select(AuthorizedSender)).first() is None


def test_senders_rule_prefers_exact_address(app, runner):
    from helpdesk.inbound.authorization import UNKNOWN, identify
    from helpdesk.models import Organization, StaffUser

    runner.invoke(args=["senders", "add", "@example.com", "--organization", "Acme"])
    runner.invoke(args=["senders", "add", "vip@example.com", "--organization", "VIP Corp"])
    runner.invoke(
        args=[
            "create-staff",
            "--email",
            "agent@example.com",
            "--name",
            "Agent",
            "--role",
            "agent",
            "--password",
            "a-long-password-1",
        ]
    )

    def organization(address: str) -> str | None:
        found = identify(db.session, address).organization_id
        return None if found is None else db.session.get(Organization, found).name

    assert organization("VIP@example.com") == "VIP Corp"
    assert organization("anyone@example.com") == "Acme"
    assert identify(db.session, "anyone@sub.example.com") == UNKNOWN
    assert identify(db.session, "garbage") == UNKNOWN
    agent = db.session.execute(select(StaffUser)).scalar_one()
    assert identify(db.session, "Agent@Example.com").staff_id == agent.id
    assert identify(db.session, "vip@example.com").staff_id is None
    agent.is_active = False
    db.session.commit()
    assert identify(db.session, "agent@example.com").staff_id is None


def test_tickets_set_next(app, runner):
    service = TicketsService.from_config(db.session, app.config)
    for _ in range(3):
        service.open_ticket(
            subject="s", description="d", requester_email="a@b.co", channel="web", actor=Actor.system()
        )
        db.session.commit()
    refused = runner.invoke(args=["tickets", "set-next", "3"])
    assert refused.exit_code == 1 and "3 is already in use" in refused.output
    accepted = runner.invoke(args=["tickets", "set-next", "78"])
    assert accepted.exit_code == 0 and "TKT-000078" in accepted.output
    ticket = service.open_ticket(
        subject="s", description="d", requester_email="a@b.co", channel="web", actor=Actor.system()
    )
    db.session.commit()
    assert service.display_number(ticket) == "TKT-000078"
    assert runner.invoke(args=["tickets", "set-next", "abc"]).exit_code == 2
    too_large = runner.invoke(args=["tickets", "set-next", str(10**19)])
    assert too_large.exit_code == 1 and "below 1000000000000000000" in too_large.output


def test_quarantine_list_shows_a_page_at_a_time(app, runner):
    """`flask quarantine list` printed every held mail, and anyone can get mail held:
    it prints one page of the oldest (`--per-page`, 50 unless asked, at most the
    pager's 100), says how many wait, and `--page` reaches the rest."""
    hold_strangers(app.config, range(5))
    first = runner.invoke(args=["quarantine", "list", "--per-page", "2"])
    assert first.exit_code == 0, first.output
    assert re.findall(r"Cheap pills \d", first.output) == ["Cheap pills 0", "Cheap pills 1"]
    assert "Page 1 of 3 (5 waiting); --page 2 for more." in first.output
    last = runner.invoke(args=["quarantine", "list", "--per-page", "2", "--page", "3"])
    assert re.findall(r"Cheap pills \d", last.output) == ["Cheap pills 4"]
    assert "Page 3 of 3 (5 waiting)." in last.output
    assert len(re.findall(r"Cheap pills", runner.invoke(args=["quarantine", "list"]).output)) == 5
    assert runner.invoke(args=["quarantine", "list", "--per-page", "101"]).exit_code == 2
    assert runner.invoke(args=["quarantine", "list", "--page", "0"]).exit_code == 2
    past = runner.invoke(args=["quarantine", "list", "--per-page", "2", "--page", "4"]).output
    assert "Cheap pills" not in past and "Page 4 of 3 (5 waiting)." in past
    newest = runner.invoke(args=["quarantine", "list", "--per-page", "2", "--newest"]).output
    assert re.findall(r"Cheap pills \d", newest) == ["Cheap pills 4", "Cheap pills 3"]
    assert "Page 1 of 3 (5 waiting); --page 2 --newest for more." in newest


def test_mailboxes_forget_removes_a_retired_mailbox_but_not_one_a_gateway_holds(app, runner):
    """SPEC §10: a mailbox renamed or removed from IMAP_URL kept its row for ever,
    so the Mail page and /metrics (helpdesk_imap_stuck) reported it stuck for good.
    `mailboxes forget` removes it; a mailbox whose lease is held now is refused."""
    moment = database_now(db.session)
    retired = "support@imap.example.com:993/Old"
    held = "support@imap.example.com:993/INBOX"
    db.session.add(ImapMailboxState(key=retired, last_uid=7, last_error="", lease_until=moment))
    db.session.add(
        ImapMailboxState(
            key=held, last_uid=3, last_error="", owner="gw:1", lease_until=moment + timedelta(minutes=5)
        )
    )
    db.session.commit()
    forgot = runner.invoke(args=["mailboxes", "forget", retired])
    assert forgot.exit_code == 0 and f"Forgot {retired}" in forgot.output, forgot.output
    refused = runner.invoke(args=["mailboxes", "forget", held])
    assert refused.exit_code == 1 and "gw:1" in refused.output and len(refused.output.splitlines()) == 1
    unknown = runner.invoke(args=["mailboxes", "forget", "nobody@imap.example.com:993/INBOX"])
    assert unknown.exit_code == 1 and "No IMAP mailbox" in unknown.output
    db.session.expire_all()
    assert db.session.execute(select(ImapMailboxState.key)).scalars().all() == [held]


def test_addresses_deliverable_clears_a_bounced_customers_mark_in_either_form_of_its_domain(runner):
    """A bounce marked the customer's address; they fixed their mailbox and phoned.
    Only mail from the address or a verification code cleared the mark, so the
    operator could not resume their mail (docs/operations.md)."""
    db.session.add_all(
        [
            Contact(email="ana@xn--bcher-kva.example", name="Ana", undeliverable_since=now()),
            Contact(email="bob@example.com", name="Bob", undeliverable_since=now()),
        ]
    )
    db.session.commit()
    result = runner.invoke(args=["addresses", "deliverable", "Ana@B\u00fccher.example"])
    assert result.exit_code == 0, result.output
    assert "ana@bücher.example goes again" in result.output
    db.session.expire_all()
    marks = dict(db.session.execute(select(Contact.email, Contact.undeliverable_since)).all())
    assert marks["ana@xn--bcher-kva.example"] is None
    assert marks["bob@example.com"] is not None  # nobody else's
    again = runner.invoke(args=["addresses", "deliverable", "ana@xn--bcher-kva.example"])
    assert "was not marked undeliverable" in again.output
    refused = runner.invoke(args=["addresses", "deliverable", "not an address"])
    assert refused.exit_code == 1 and "is not a valid email address" in refused.output


def test_addresses_deliverable_logs_that_the_command_line_cleared_the_mark(runner, caplog):
    """The command's clearing leaves a log line naming the command line as who cleared
    it and every contact cleared (docs/operations.md, "Mail to an address that bounced")."""
    caplog.set_level(logging.INFO, logger="helpdesk.services.contacts")
    db.session.add(Contact(email="ana@xn--bcher-kva.example", name="Ana", undeliverable_since=now()))
    db.session.commit()
    assert runner.invoke(args=["addresses", "deliverable", "ana@bücher.example"]).exit_code == 0
    assert [r.getMessage() for r in caplog.records if r.name == "helpdesk.services.contacts"] == [
        "undeliverable mark cleared: address='ana@bücher.example' "
        "contacts=['ana@xn--bcher-kva.example'] by='cli' kind=system staff_id=None"
    ]


def test_addresses_deliverable_given_a_fullwidth_address_clears_the_mark_on_the_mailbox_it_is_sent_to(runner):
    """ana@ｂücher.example is mailed at ana@xn--bcher-kva.example, and the sender skips
    it for a mark there; the command given the fullwidth spelling cleared only that
    spelling (`either_form` leaves a fullwidth domain only itself), so the mark stayed."""
    db.session.add(Contact(email="ana@xn--bcher-kva.example", name="Ana", undeliverable_since=now()))
    db.session.commit()
    result = runner.invoke(args=["addresses", "deliverable", "ana@\uff42\u00fccher.example"])
    assert result.exit_code == 0, result.output
    assert "goes again" in result.output
    db.session.expire_all()
    assert db.session.execute(select(Contact.undeliverable_since)).scalar_one() is None
