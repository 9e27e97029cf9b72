"""One internationalised domain, two spellings: `bücher.example` as its owner types it
and `xn--bcher-kva.example` as most mail programs write it in a From header (IDNA's
ASCII form). Both are one mailbox, so one customer: an authorized-sender rule typed
in either spelling lets mail in the other in, a contact is found by either, and a
reply from the other spelling is the same customer's (docs/mail-gateway.md, "One
domain, two spellings"; docs/integrations.md, "Who the customer is"). A homograph
(a Cyrillic `а` for the Latin `a`) is another domain and stays one."""

from __future__ import annotations

import re
import threading
from email.policy import SMTP
from urllib.parse import urlsplit

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from helpdesk import addresses, customer_links
from helpdesk.errors import Conflict
from helpdesk.extensions import db
from helpdesk.inbound.ingest import Envelope, Outcome, ingest
from helpdesk.models import AuthorizedSender, Contact, Message, OutboxMessage, StaffUser, Ticket
from helpdesk.services import Actor, contacts, notifications, satisfaction
from helpdesk.services.integrations import IntegrationsService
from helpdesk.services.senders import SendersService
from helpdesk.services.staff import StaffService
from tests.support.app import Portal, login_tokens
from tests.support.database import open_ticket, resolve
from tests.support.mail import SUPPORT, message
from tests.support.outbox import deliver, text_of
from tests.test_customer_limits import _waiting_for_a_lock
from tests.test_mail_statements import questions

UNICODE, ASCII = "b\u00fccher.example", "xn--bcher-kva.example"
# `bаnk.example` with a Cyrillic а: looks like bank.example, is another domain.
HOMOGRAPH = "b\u0430nk.example"


def mail(app, sender: str, subject: str = "Invoice question"):  # type: ignore[no-untyped-def]
    raw = message(sender=sender, subject=subject).as_bytes(policy=SMTP.clone(utf8=True))
    result = ingest(raw, Envelope(sender, (SUPPORT,), "smtp"), app.config)
    db.session.remove()
    return result


def chat_lookup(client, email: str, text: str) -> list[dict]:  # type: ignore[no-untyped-def]
    """The cards the chat's lookup answers `email` for the numbers in `text`."""
    _integration, token = IntegrationsService(db.session).add(f"chat for {email}", "chat")
    db.session.commit()
    answer = client.post(
        "/api/v1/chat/lookup",
        json={"customer": {"email": email}, "text": text},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert answer.status_code == 200, answer.get_json()
    return answer.get_json()["tickets"]


def test_either_form_gives_the_two_spellings_of_one_domain() -> None:
    assert addresses.either_form(f"ann@{UNICODE}") == {f"ann@{UNICODE}", f"ann@{ASCII}"}
    assert addresses.either_form(f"ann@{ASCII}") == {f"ann@{UNICODE}", f"ann@{ASCII}"}
    assert addresses.either_form(f"@{ASCII}") == {f"@{UNICODE}", f"@{ASCII}"}  # a domain rule
    assert addresses.either_form("ann@example.com") == {"ann@example.com"}
    assert addresses.either_form("ann@xn--zz.example") == {"ann@xn--zz.example"}  # no punycode
    assert f"ann@{ASCII}" not in addresses.either_form(f"ann@{HOMOGRAPH}")
    # A spelling the mapping changes on the way is only itself: fullwidth letters.
    lookalike = "ann@\uff42\u00fc\uff43\uff48\uff45\uff52.example"
    assert addresses.either_form(lookalike) == {lookalike}
    # `ß` is a letter of its own in IDNA 2008: its pair is xn--fuball-cta, never the
    # `ss` spelling Python's IDNA 2003 codec folded it into (another domain).
    sharp = {"ann@fu\u00dfball.example", "ann@xn--fuball-cta.example"}
    assert addresses.either_form("ann@fu\u00dfball.example") == sharp
    assert addresses.either_form("ann@xn--fuball-cta.example") == sharp
    assert "ann@fussball.example" not in addresses.either_form("ann@fu\u00dfball.example")


@pytest.mark.parametrize(
    "rule,sender",
    [
        (f"@{UNICODE}", f"ann@{ASCII}"),
        (f"@{ASCII}", f"ann@{UNICODE}"),
        (f"ann@{UNICODE}", f"ann@{ASCII}"),
        (f"ann@{ASCII}", f"ann@{UNICODE}"),
    ],
)
def test_a_rule_in_one_spelling_lets_mail_in_the_other_open_a_ticket(app, rule, sender):
    """Most mail programs write the domain as `xn--…` unless the mail is SMTPUTF8: a
    rule typed in Unicode quarantined that customer's every mail."""
    SendersService(db.session).add(rule, "B\u00fccher GmbH")
    db.session.commit()
    result = mail(app, sender)
    assert (result.outcome, result.reason) == (Outcome.CREATED, "authorized sender")
    ticket = db.session.execute(select(Ticket)).scalar_one()
    assert ticket.organization.name == "B\u00fccher GmbH"


def test_an_address_rule_in_the_other_spelling_wins_over_the_domain_rule(app):
    senders = SendersService(db.session)
    senders.add(f"@{ASCII}", "B\u00fccher GmbH")
    senders.add(f"ann@{UNICODE}", "Ann's own shop")
    db.session.commit()
    assert mail(app, f"ann@{ASCII}").outcome is Outcome.CREATED
    assert db.session.execute(select(Ticket)).scalar_one().organization.name == "Ann's own shop"


def test_a_homograph_domain_is_not_the_rule_s_domain(app):
    SendersService(db.session).add("@bank.example", "Bank")
    db.session.commit()
    assert mail(app, f"ann@{HOMOGRAPH}").outcome is Outcome.QUARANTINED


def test_a_rule_is_one_rule_in_either_spelling(app):
    """Two rules for one domain could name two organizations: which one a mail got
    depended on how its program spelt the domain."""
    senders = SendersService(db.session)
    senders.add(f"@{UNICODE}", "B\u00fccher GmbH")
    db.session.commit()
    with pytest.raises(Conflict, match=f"@{UNICODE} is already authorized"):
        senders.add(f"@{ASCII}", "Another")
    senders.remove(f"@{ASCII}")
    assert senders.list() == []


def test_mail_in_both_spellings_is_one_customer(app):
    SendersService(db.session).add(f"@{UNICODE}", "B\u00fccher GmbH")
    db.session.commit()
    assert mail(app, f"ann@{UNICODE}", "First").outcome is Outcome.CREATED
    with questions() as asked:
        assert mail(app, f"ann@{ASCII}", "Second").outcome is Outcome.CREATED
    assert db.session.execute(select(Contact.email)).scalars().all() == [f"ann@{UNICODE}"]
    assert len(set(db.session.execute(select(Ticket.requester_id)).scalars())) == 1
    # The other spelling costs no statement more than the first (issue 19).
    assert (asked["sender rule"], asked["contact by address"], asked["new contact"]) == (1, 1, 0)


@pytest.mark.parametrize("sender", [f"ann@{ASCII}", f"bob@{UNICODE}"])
def test_a_reply_from_the_other_spelling_is_the_customer_s(app, service, sender):
    """The requester (`ann@`, stored in Unicode) and a CC participant (`bob@`, stored
    in punycode) answering from the other spelling belong on the ticket: they were
    strangers to it, held or given a new ticket."""
    ticket = open_ticket(service, requester_email=f"ann@{UNICODE}", cc=[(f"bob@{ASCII}", "Bob")])
    number, requester_id = service.display_number(ticket), ticket.requester_id
    reply = mail(app, sender, f"Re: [{number}] VPN drops every hour")
    assert (reply.outcome, reply.ticket_number) == (Outcome.APPENDED, number), reply.reason
    author = db.session.execute(select(Message).order_by(Message.id.desc())).scalars().first().author_contact
    assert author is not None
    if sender.startswith("ann@"):  # the requester's own contact, no second one
        assert author.id == requester_id
        assert db.session.execute(select(Contact.email)).scalars().all() == [f"ann@{UNICODE}"]


@pytest.mark.parametrize(
    "requester,marked",
    [(f"ana@{UNICODE}", f"ana@{ASCII}"), ("ana@\uff42\u00fccher.example", "ana@\uff42\u00fccher.example")],
    ids=["both-rows", "fullwidth"],
)
def test_her_own_mail_clears_the_mark_on_every_spelling_of_her_mailbox_a_look_alike_s_none(
    app, service, admin, sink, requester, marked
):
    """A bounce marked Ana's mailbox, and she writes again. Her mail cleared the mark
    on her own contact only, while the sender skips her for a mark on any spelling:
    with a row for each spelling (stored before they were one customer) the mark on
    `ana@xn--bcher-kva.example` stayed, and a customer stored in fullwidth letters
    is marked on the form the relay is given. She stayed unmailed though she wrote.
    Mail from a look-alike domain (a Cyrillic `с`) is another mailbox's, and clears
    nothing (contacts.heard_from)."""
    if requester == f"ana@{UNICODE}":
        db.session.add_all([Contact(email=requester, name="Ana"), Contact(email=marked, name="Ana")])
        db.session.commit()
    ticket = open_ticket(service, requester_email=requester, actor=Actor.customer(requester))
    number, staff_id = service.display_number(ticket), admin.id
    contacts.mark_undeliverable(db.session, marked)
    db.session.commit()
    look_alike = "ana@b\u00fc\u0441her.example"
    open_ticket(service, requester_email=look_alike, actor=Actor.customer(look_alike))
    assert set(contacts.undeliverable_marks(db.session, [requester])) == {requester}

    reply = mail(app, requester, f"Re: [{number}] VPN drops every hour")
    assert (reply.outcome, reply.ticket_number) == (Outcome.APPENDED, number), reply.reason
    assert contacts.undeliverable_marks(db.session, [requester]) == {}
    ticket = service.get(number)
    staff = Actor.staff(db.session.get(StaffUser, staff_id))
    service.add_message(ticket, body="Welcome back.", actor=staff, channel="web")
    db.session.commit()
    deliver(app, sink)
    assert addresses.on_the_wire(requester) in {rcpt for sent in sink.received for rcpt in sent.rcpt_tos}


def test_a_cc_naming_one_mailbox_in_both_spellings_is_one_participant(app, service, admin, sink):
    """A Cc of `bob@bücher.example` and `bob@xn--bcher-kva.example` (a mail program
    writing one, a colleague's the other) named one mailbox: each became a
    participant, and Bob got every reply twice (found by review). The first
    spelling is kept; a later Cc in the other spelling adds no one either."""
    ticket = open_ticket(service, cc=[(f"bob@{UNICODE}", "Bob"), (f"bob@{ASCII}", "Bob B.")])
    assert [p.email for p in ticket.participants] == [f"bob@{UNICODE}"]
    service.add_participant(ticket, f"bob@{ASCII}")
    service.add_message(ticket, body="Which model?", actor=Actor.staff(admin), channel="web")
    db.session.commit()
    assert [p.email for p in ticket.participants] == [f"bob@{UNICODE}"]
    deliver(app, sink)
    assert sorted(rcpt for sent in sink.received for rcpt in sent.rcpt_tos) == [
        "ann@example.com",
        "ann@example.com",
        f"bob@{ASCII}",
    ]


def test_a_cc_in_fullwidth_letters_of_a_mailbox_already_there_adds_no_one(app, service, admin, sink):
    """`ana@\uff42\u00fccher.example` is mailed at `ana@xn--bcher-kva.example`, the
    requester's mailbox: as a second participant, every reply went to Ana twice; and
    Jane (`jane@b\u00fccher.example`) made a CC so got her own portal reply mailed back
    (`addresses.one_spelling_each` paired only spellings that read back into each
    other). A look-alike domain (a Cyrillic `\u0441`) is another mailbox and stays a
    participant."""
    jane, _ = StaffService(db.session).create(
        email=f"jane@{UNICODE}", name="Jane", role="agent", password="jane-password-1"
    )
    db.session.commit()
    wide = "\uff42\u00fccher.example"
    look_alike = "ana@b\u00fc\u0441her.example"
    ticket = open_ticket(
        service,
        requester_email=f"ana@{UNICODE}",
        cc=[(f"ana@{wide}", "Ana"), (f"jane@{wide}", "Jane"), (look_alike, "Not Ana")],
    )
    assert sorted(p.email for p in ticket.participants) == sorted([f"jane@{wide}", look_alike])
    service.add_participant(ticket, f"ana@{wide}")
    service.add_message(ticket, body="The X-100, we think.", actor=Actor.staff(jane), channel="web")
    db.session.commit()
    deliver(app, sink)
    assert sorted(rcpt for sent in sink.received for rcpt in sent.rcpt_tos) == sorted(
        [f"ana@{ASCII}", f"ana@{ASCII}", addresses.on_the_wire(look_alike)]
    )


def test_a_staff_member_cc_d_in_the_other_spelling_gets_a_staff_copy_and_not_her_own_reply(
    app, service, admin
):
    """Jane's account is `jane@bücher.example`; a customer's mail made her a CC as
    `jane@xn--bcher-kva.example`. A staff copy names nobody in Cc (its signed id
    proves her mail), but hers named the customer, as if she were one, and her own
    reply from the portal was queued to her as well (found by review)."""
    jane, _ = StaffService(db.session).create(
        email=f"jane@{UNICODE}", name="Jane", role="agent", password="jane-password-1"
    )
    db.session.commit()
    ticket = open_ticket(service, cc=[(f"jane@{ASCII}", "Jane")])
    service.add_message(ticket, body="Which model?", actor=Actor.staff(admin), channel="web")
    service.add_message(ticket, body="The X-100, we think.", actor=Actor.staff(jane), channel="web")
    db.session.commit()
    copies = db.session.execute(
        select(OutboxMessage.to_address, Message.body, OutboxMessage.cc_addresses)
        .join(Message, Message.id == OutboxMessage.reply_id)
        .order_by(OutboxMessage.id)
    ).all()
    assert [tuple(copy) for copy in copies] == [
        ("ann@example.com", "Which model?", f"jane@{ASCII}"),
        (f"jane@{ASCII}", "Which model?", ""),
        ("ann@example.com", "The X-100, we think.", ""),
    ]


def test_a_staff_member_cc_d_in_fullwidth_letters_gets_a_staff_copy_naming_nobody(app, service, admin):
    """A customer's mail made Jane (`jane@b\u00fccher.example`) a CC as
    `jane@\uff42\u00fccher.example`, which is mailed to her own mailbox. Her copy
    named the customer in Cc, as a customer's does: one Reply-All from her hands
    the customer what she writes (`notifications._staff_addresses` paired only
    spellings that read back into each other)."""
    StaffService(db.session).create(
        email=f"jane@{UNICODE}", name="Jane", role="agent", password="jane-password-1"
    )
    db.session.commit()
    wide = "jane@\uff42\u00fccher.example"
    ticket = open_ticket(service, cc=[(wide, "Jane")])
    service.add_message(ticket, body="Which model?", actor=Actor.staff(admin), channel="web")
    db.session.commit()
    copies = db.session.execute(
        select(OutboxMessage.to_address, OutboxMessage.cc_addresses)
        .where(OutboxMessage.kind == "reply")
        .order_by(OutboxMessage.id)
    ).all()
    assert [tuple(copy) for copy in copies] == [("ann@example.com", wide), (wide, "")]


@pytest.mark.parametrize("stored,sender", [(UNICODE, ASCII), (ASCII, UNICODE)])
def test_a_staff_member_answering_signed_mail_from_the_other_spelling_replies_publicly(
    app, service, admin, sink, stored, sender
):
    """The signed Message-ID was sent to the staff address as stored; its owner's
    program answers from the other spelling of the domain. The same mailbox: the
    proof holds, and the answer is the staff member's public reply, not an
    unverified internal note."""
    jane, _ = StaffService(db.session).create(
        email=f"jane@{stored}", name="Jane", role="agent", password="jane-password-1"
    )
    db.session.commit()
    jane_id = jane.id
    ticket = open_ticket(service, cc=[(f"jane@{stored}", "Jane")])
    service.add_message(ticket, body="Which model?", actor=Actor.staff(admin), channel="web")
    db.session.commit()
    number = service.display_number(ticket)
    (to_jane,) = [sent for sent in deliver(app, sink) if sent["To"].addresses[0].username == "jane"]
    answer = message(
        sender=f"jane@{sender}",
        subject=f"Re: [{number}] VPN drops every hour",
        body="It is the X-100; we replace it today.",
        in_reply_to=to_jane["Message-ID"],
    ).as_bytes(policy=SMTP.clone(utf8=True))
    result = ingest(answer, Envelope(f"jane@{sender}", (SUPPORT,), "smtp"), app.config)
    db.session.remove()
    assert (result.outcome, result.ticket_number) == (Outcome.APPENDED, number), result.reason
    last = db.session.execute(select(Message).order_by(Message.id.desc())).scalars().first()
    assert (last.kind, last.author_staff_id) == ("reply", jane_id), result.reason


def test_chat_and_the_api_name_the_mail_s_customer_in_the_other_spelling(app, client, api):
    """A chat or the staff API names the domain as IDNA maps it (Unicode); the mail
    came in punycode: one customer."""
    SendersService(db.session).add(f"@{UNICODE}", "B\u00fccher GmbH")
    db.session.commit()
    assert mail(app, f"ann@{ASCII}").outcome is Outcome.CREATED
    _integration, token = IntegrationsService(db.session).add("site-chat", "chat")
    db.session.commit()
    chatted = client.post(
        "/api/v1/chat/tickets",
        json={"conversation_id": "c1", "customer": {"email": f"ann@{UNICODE}"}, "transcript": "help"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert chatted.status_code == 201, chatted.get_json()
    created = api.post(
        "/tickets", {"subject": "VPN", "description": "Down.", "requester_email": f"Ann@{UNICODE}"}
    )
    assert created.status_code == 201, created.get_json()
    db.session.remove()
    assert db.session.execute(select(Contact.email)).scalars().all() == [f"ann@{ASCII}"]
    assert len(db.session.execute(select(Ticket.id)).all()) == 3


def test_a_contact_stored_in_each_spelling_before_keeps_its_own_mail(app):
    """Rows written before either spelling found the other: each address finds its
    own row. A fullwidth spelling, which IDNA maps only one way, is a contact of its
    own, as before (docs/mail-gateway.md, "What an address is")."""
    for email in (f"ann@{ASCII}", f"ann@{UNICODE}"):
        db.session.add(Contact(email=email, name=""))
        db.session.flush()
    db.session.commit()
    for email in (f"ann@{UNICODE}", f"ann@{ASCII}"):
        assert contacts.find_or_create(db.session, email).email == email
    fullwidth = "ann@\uff42\u00fc\uff43\uff48\uff45\uff52.example"
    assert contacts.find_or_create(db.session, fullwidth).email == fullwidth


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_first_mails_in_both_spellings_at_once_make_one_customer(app):
    """Two first mails of one new customer, one in each spelling, at the same moment:
    the insert refuses only an identical address, so both found no one and both
    made a contact, and the customer's tickets were two customers' for good
    (`contacts.find_or_create`). PostgreSQL only: SQLite lets one writer in at a time."""
    engine = db.engine
    first = Session(engine)
    found: list[str] = []

    def second() -> None:
        with Session(engine) as session:
            found.append(contacts.find_or_create(session, f"ann@{ASCII}").email)
            session.commit()

    contacts.find_or_create(first, f"ann@{UNICODE}")  # inserted, not committed yet
    thread = threading.Thread(target=second)
    thread.start()
    try:  # the second has made its own contact, or waits for the first
        while thread.is_alive() and not _waiting_for_a_lock(timeout=1):
            pass
    finally:
        first.commit()
        first.close()
        thread.join(60)
    assert found == [f"ann@{UNICODE}"]
    assert db.session.execute(select(Contact.email)).scalars().all() == [f"ann@{UNICODE}"]


@pytest.mark.parametrize("cc,asked", [(ASCII, UNICODE), (UNICODE, ASCII)])
def test_a_cc_participant_asking_in_the_other_spelling_sees_the_ticket(app, client, service, cc, asked):
    """Bob was made a CC as `bob@xn--bcher-kva.example` (a mail's Cc); the chat names
    him `bob@bücher.example`. Compared as written (`contacts.tickets_of`), the
    ticket was not his: the chat's lookup, the assistant's list and its tools left
    it out, while the same mailbox gets every reply on it."""
    open_ticket(service, requester_email="zed@example.com", cc=[(f"bob@{cc}", "Bob")])
    assert [card["number"] for card in chat_lookup(client, f"bob@{asked}", "TKT-000001")] == ["TKT-000001"]
    # A homograph of the domain is another mailbox: nothing.
    assert chat_lookup(client, f"bob@{HOMOGRAPH}", "TKT-000001") == []


@pytest.mark.parametrize("stored,asked", [(ASCII, UNICODE), (UNICODE, ASCII)])
def test_a_rating_given_in_the_other_spelling_is_the_same_person_s(
    app, client, service, agent_actor, stored, asked
):
    """Bob, a CC as stored, rates through the assistant, which names him in the other
    spelling (the contact a chat made): his own rating link then showed it as
    someone else's and refused his change (`satisfaction.participant_of`, compared as
    written). The requester in the other spelling was taken for a participant, whose
    rating cannot replace another participant's."""
    ticket = open_ticket(service, requester_email=f"ann@{stored}", cc=[(f"bob@{stored}", "Bob")])
    resolve(service, ticket, agent_actor)
    satisfaction.rate(db.session, ticket, 2, "Slow first answer", via="assistant", by=f"bob@{asked}")
    db.session.commit()
    link = urlsplit(customer_links.url(app.config, "rating", ticket.id, f"bob@{stored}")).path
    assert "Slow first answer" in client.get(link).get_data(as_text=True)
    changed = client.post(
        link, data={"rating": "4", "comment": "Good fix", "csrf_token": Portal(client).token("/track")}
    )
    assert changed.status_code == 303, changed.get_data(as_text=True)
    ticket = db.session.get(Ticket, ticket.id)
    satisfaction.rate(db.session, ticket, 5, "", via="assistant", by=f"ann@{asked}")
    db.session.commit()
    rated = satisfaction.rating_of(db.session, ticket)
    assert (rated.rating, rated.participant_email) == (5, None)


@pytest.mark.parametrize("cc,asked", [(ASCII, UNICODE), (UNICODE, ASCII)])
def test_a_merged_conversation_s_cc_in_the_other_spelling_reads_their_own_subject(
    app, client, service, agent_actor, cc, asked
):
    """Bob was a CC of Zed's "Sin internet" as stored, merged into Ann's "Outage
    Roma". Asking in the other spelling, his conversation's people did not name him
    (`notifications._merged_conversations`, compared as written), so his card showed
    Ann's subject, another customer's words, instead of his own."""
    kept = open_ticket(service, subject="Outage Roma")
    duplicate = open_ticket(
        service, requester_email="zed@example.com", subject="Sin internet", cc=[(f"bob@{cc}", "Bob")]
    )
    service.merge(duplicate, kept, actor=agent_actor)
    db.session.commit()
    (card,) = chat_lookup(client, f"bob@{asked}", "TKT-000002")
    assert (card["number"], card["subject"], card["merged_from"]) == (
        "TKT-000001",
        "Sin internet",
        "TKT-000002",
    )


def test_a_person_on_the_survivor_and_a_merged_ticket_in_two_spellings_is_the_merged_ticket_s(
    app, service, agent_actor
):
    """Bob was a CC of Ann's ticket as `bob@bücher.example` and of Zed's, merged into
    it, as `bob@xn--bcher-kva.example`; the merge kept the survivor's spelling. As one
    person on both he is the merged conversation's (as an ASCII address is): his
    copies name Zed, Zed's name him, and Ann's name neither. Compared as written, he
    was the survivor's as well and Zed's copies left him out."""
    kept = open_ticket(service, subject="Outage Roma", cc=[(f"bob@{UNICODE}", "Bob")])
    duplicate = open_ticket(
        service, requester_email="zed@example.com", subject="Sin internet", cc=[(f"bob@{ASCII}", "Bob")]
    )
    service.merge(duplicate, kept, actor=agent_actor)
    db.session.commit()
    recipients = ["ann@example.com", f"bob@{UNICODE}", "zed@example.com"]
    assert notifications.companies(db.session, kept, recipients) == {
        "ann@example.com": [],
        f"bob@{UNICODE}": ["zed@example.com"],
        "zed@example.com": [f"bob@{UNICODE}"],
    }
    assert notifications.own_subject(db.session, kept, f"bob@{UNICODE}") == "Sin internet"


def test_a_rule_typed_with_fullwidth_letters_is_stored_as_the_domain_it_names(app):
    """An operator typing `@ｂücher.example` (an input method's fullwidth letters)
    meant bücher.example. Stored as typed, the rule matched no mail a relay
    delivers (their From is `bücher.example` or its punycode), and beside a rule
    for the domain it was a second one. Folded as the contacts' ways in fold
    (`addresses.folded`); a rule stored as typed before is still removed by its text."""
    senders = SendersService(db.session)
    fullwidth = "@\uff42\u00fc\uff43\uff48\uff45\uff52.example"
    rule = senders.add(fullwidth, "B\u00fccher GmbH")
    db.session.commit()
    pattern, organization_id = rule.pattern, rule.organization_id
    assert pattern == f"@{UNICODE}"
    assert mail(app, f"ann@{ASCII}").outcome is Outcome.CREATED
    with pytest.raises(Conflict, match=f"@{UNICODE} is already authorized"):
        senders.add(f"@{ASCII}", "Another")
    assert (
        senders.add("ann@\uff45\uff58\uff41\uff4d\uff50\uff4c\uff45.com", "Example").pattern
        == "ann@example.com"
    )
    senders.remove(fullwidth)
    db.session.add(AuthorizedSender(pattern=fullwidth, organization_id=organization_id))
    db.session.commit()
    senders.remove(fullwidth)
    assert [rule.pattern for rule in senders.list()] == ["ann@example.com"]


@pytest.mark.parametrize("stored,other", [(UNICODE, ASCII), (ASCII, UNICODE)])
def test_a_staff_account_is_one_in_either_spelling(app, client, admin_portal, stored, other):
    """Jane's account is `jane@bücher.example`; the Staff page made a second one as
    `jane@xn--bcher-kva.example` (the insert refuses only the same text): one mailbox,
    two accounts with two passwords and roles. Refused, naming hers; and she signs
    in with the spelling her mail program shows her."""
    StaffService(db.session).create(
        email=f"jane@{stored}", name="Jane", role="agent", password="jane-password-1"
    )
    db.session.commit()
    page = admin_portal.post(
        "/admin/staff",
        {"email": f"jane@{other}", "name": "Jane 2", "role": "admin", "password": "other-password-1"},
        page="/admin/staff",
    )
    assert page.status_code == 302
    shown = admin_portal.get("/admin/staff").get_data(as_text=True)
    assert f"A staff user jane@{stored} already exists." in shown
    assert db.session.execute(
        select(StaffUser.email).where(StaffUser.name.like("Jane%"))
    ).scalars().all() == [f"jane@{stored}"]
    admin_portal.client.get("/logout")
    tokens = login_tokens(client, f"Jane@{other}", "jane-password-1")
    assert tokens["access_token"]


@pytest.mark.parametrize("stored,asked", [(ASCII, UNICODE), (UNICODE, ASCII)])
def test_the_tracker_finds_a_ticket_by_either_spelling_of_its_customer_s_address(
    app, client, service, stored, asked
):
    """Ann's mail program wrote her as `ann@xn--bcher-kva.example`; on the tracker she
    types `ann@bücher.example`. Compared as written (`tracking.find`), the public
    tracker and its API answered "not found" for her own ticket and her CC's, while
    both spellings get every mail about it. A homograph is another mailbox: 404."""
    open_ticket(service, requester_email=f"ann@{stored}", cc=[(f"bob@{stored}", "Bob")])
    for person in ("ann", "bob"):
        answer = client.post(
            "/api/v1/public/track", json={"ticket_number": "TKT-000001", "email": f"{person}@{asked}"}
        )
        assert answer.status_code == 200, answer.get_json()
        assert answer.get_json()["subject"] == "VPN drops every hour"
    token = Portal(client).token("/track")
    form = {"ticket_number": "TKT-000001", "email": f"ann@{asked}", "csrf_token": token}
    page = client.post("/track", data=form)
    assert page.status_code == 200 and "VPN drops every hour" in page.get_data(as_text=True)
    stranger = client.post(
        "/api/v1/public/track", json={"ticket_number": "TKT-000001", "email": f"ann@{HOMOGRAPH}"}
    )
    assert stranger.status_code == 404


@pytest.mark.parametrize("stored,sender", [(UNICODE, ASCII), (ASCII, UNICODE)])
def test_the_acknowledgment_of_mail_in_the_other_spelling_greets_her_and_its_link_opens(
    app, client, sink, stored, sender
):
    """Ann is a contact as `ann@bücher.example`; her new mail writes her in punycode.
    Her acknowledgment was queued to the spelling the mail wrote, not to her contact:
    it said "Hello there," for "Hello Ann,", and its status link, made for that
    spelling, opened nothing ("This link is not valid"), since a link opens only for
    the ticket's people as stored (`customer_links.open_link`)."""
    SendersService(db.session).add(f"@{UNICODE}", "B\u00fccher GmbH")
    db.session.add(Contact(email=f"ann@{stored}", name="Ann"))
    db.session.commit()
    assert mail(app, f"ann@{sender}").outcome is Outcome.CREATED
    assert db.session.execute(select(OutboxMessage.to_address)).scalars().all() == [f"ann@{stored}"]
    (ack,) = deliver(app, sink)
    assert ack["To"].addresses[0].addr_spec == f"ann@{ASCII}"
    text = text_of(ack)
    assert text.startswith("Hello Ann,"), text
    link = re.search(r"http://helpdesk\.test(/track/\S+)", text)
    assert link is not None
    page = client.get(link.group(1), headers={"Accept-Language": "en"})
    assert page.status_code == 200 and "Invoice question" in page.get_data(as_text=True)


@pytest.mark.parametrize("stored,mailed", [(UNICODE, ASCII), (ASCII, UNICODE)])
def test_a_link_made_for_the_other_spelling_of_a_reader_opens_the_ticket(
    app, client, service, stored, mailed
):
    """Acknowledgments went to the spelling a mail wrote (fixed since), and their
    status links, which work for 180 days, were compared with the ticket's people as
    stored: "This link is not valid" for Ann's own ticket. The link opens as the
    reader stored (`customer_links.Opened.address`); a homograph's opens nothing."""
    ticket = open_ticket(service, requester_email=f"ann@{stored}", cc=[(f"bob@{stored}", "Bob")])
    for person in ("ann", "bob"):
        token = customer_links.token(app.config, "status", ticket.id, f"{person}@{mailed}")
        assert (
            customer_links.open_link(db.session, app.config, "status", token).address == f"{person}@{stored}"
        )
        assert client.get(f"/track/{token}").status_code == 200
    stranger = customer_links.token(app.config, "status", ticket.id, f"ann@{HOMOGRAPH}")
    assert client.get(f"/track/{stranger}").status_code == 404


@pytest.mark.parametrize("cc,contact", [(ASCII, UNICODE), (UNICODE, ASCII)])
def test_a_cc_s_tracker_language_is_their_contact_s_in_the_other_spelling(app, client, service, cc, contact):
    """Bob is a CC as `bob@xn--bcher-kva.example` (a mail's Cc); his contact, made by
    his own chat, is `bob@bücher.example` and reads Spanish. The tracker read his
    language, and its switch wrote it, by the participant's address as written
    (`tracking.language_of`, `set_language`): no contact, so English pages, and his
    choice on a mail's link was kept nowhere."""
    db.session.add(Contact(email=f"bob@{contact}", name="Bob", language="es"))
    db.session.commit()
    ticket = open_ticket(service, requester_email="zed@example.com", cc=[(f"bob@{cc}", "Bob")])
    form = {"ticket_number": "TKT-000001", "email": f"bob@{cc}", "csrf_token": Portal(client).token("/track")}
    assert "Consulta tu ticket" in client.post("/track", data=form).get_data(as_text=True)
    token = customer_links.token(app.config, "status", ticket.id, f"bob@{cc}")
    switched = client.post(
        "/track/language",
        data={
            "language": "en",
            "purpose": "status",
            "token": token,
            "csrf_token": Portal(client).token("/track"),
        },
    )
    assert switched.status_code == 303
    db.session.expire_all()
    languages = {
        email: language for email, language in db.session.execute(select(Contact.email, Contact.language))
    }
    assert languages == {"zed@example.com": "", f"bob@{contact}": "en"}


@pytest.mark.parametrize("stored,named", [(UNICODE, ASCII), (ASCII, UNICODE)])
def test_the_api_names_a_staff_assignee_in_either_spelling(app, api, stored, named):
    """Jane's account is `jane@bücher.example`, one account in either spelling (she
    signs in with both); the API took her as an assignee, or a queue's filter, only
    as stored: "is not a staff member" (`api.tickets._assignee_id`). A homograph is
    nobody."""
    jane, _ = StaffService(db.session).create(
        email=f"jane@{stored}", name="Jane", role="agent", password="jane-password-1"
    )
    db.session.commit()
    jane_id = jane.id
    number = api.post(
        "/tickets", {"subject": "VPN", "description": "Down.", "requester_email": "ann@example.com"}
    )
    number = number.get_json()["number"]
    assigned = api.patch(f"/tickets/{number}", {"assignee": f"Jane@{named}"})
    assert assigned.status_code == 200, assigned.get_json()
    assert assigned.get_json()["assignee"]["id"] == jane_id
    listed = api.get(f"/tickets?assignee=jane@{named}").get_json()
    assert [ticket["number"] for ticket in listed["items"]] == [number]
    assert api.patch(f"/tickets/{number}", {"assignee": f"jane@{HOMOGRAPH}"}).status_code == 422


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_two_accounts_in_the_two_spellings_at_once_make_one(app):
    """Two admins make Jane's account at the same moment, one typing
    `jane@bücher.example`, the other `jane@xn--bcher-kva.example`: each looked for
    the other spelling before either had committed, the insert refuses only the same
    text, and one mailbox had two accounts with two passwords and roles. The second
    waits for the first and is refused, naming it. PostgreSQL only: SQLite lets one
    writer in at a time."""
    engine = db.engine
    first = Session(engine)
    refused: list[str] = []

    def second() -> None:
        with Session(engine) as session:
            try:
                StaffService(session).create(
                    email=f"jane@{ASCII}", name="Jane 2", role="admin", password="other-password-1"
                )
                session.commit()
            except Conflict as error:
                refused.append(str(error))

    StaffService(first).create(email=f"jane@{UNICODE}", name="Jane", role="agent", password="jane-password-1")
    thread = threading.Thread(target=second)
    thread.start()
    try:  # the second has made its own account, or waits for the first
        while thread.is_alive() and not _waiting_for_a_lock(timeout=1):
            pass
    finally:
        first.commit()
        first.close()
        thread.join(60)
    assert refused == [f"A staff user jane@{UNICODE} already exists."]
    assert db.session.execute(
        select(StaffUser.email).where(StaffUser.name.like("Jane%"))
    ).scalars().all() == [f"jane@{UNICODE}"]


@pytest.mark.parametrize("stored,sender", [(UNICODE, ASCII), (ASCII, UNICODE)])
def test_a_reply_on_a_merged_ticket_answers_her_mail_in_the_other_spelling(
    app, service, agent_actor, sink, stored, sender
):
    """Ann (`ann@bücher.example` as stored) answered from `ann@xn--bcher-kva.example`;
    Zed's ticket was merged into hers. On a ticket others were merged into, a copy
    threads to its recipient's own mail only, and hers was read by the address as
    written (`Composer._thread`): the staff reply named our earlier mail as its
    parent, not hers, and her mail program showed it apart from her question."""
    kept = open_ticket(service, requester_email=f"ann@{stored}")
    number = service.display_number(kept)
    raw = message(
        sender=f"ann@{sender}",
        subject=f"Re: [{number}] VPN drops every hour",
        body="It dropped again at noon.",
        message_id="<noon@client.example>",
    ).as_bytes(policy=SMTP.clone(utf8=True))
    answered = ingest(raw, Envelope(f"ann@{sender}", (SUPPORT,), "smtp"), app.config)
    db.session.remove()
    assert (answered.outcome, answered.ticket_number) == (Outcome.APPENDED, number), answered.reason
    deliver(app, sink)
    kept = service.get(number)
    service.merge(open_ticket(service, requester_email="zed@example.com"), kept, actor=agent_actor)
    service.add_message(kept, body="Replaced the router.", actor=agent_actor, channel="web")
    db.session.commit()
    (to_ann,) = [
        sent
        for sent in deliver(app, sink)
        if sent["To"].addresses[0].username == "ann" and "Replaced the router." in text_of(sent)
    ]
    assert to_ann["In-Reply-To"] == "<noon@client.example>"


@pytest.mark.parametrize("cc,contact", [(ASCII, UNICODE), (UNICODE, ASCII)])
def test_a_merged_ticket_s_cc_reads_their_own_reply_on_the_tracker(
    app, client, service, agent_actor, cc, contact
):
    """Bob is a CC of Zed's ticket as its mail wrote him (`bob@xn--bcher-kva.example`),
    his contact is `bob@bücher.example`, and Zed's ticket was merged into Ann's. On a
    ticket others were merged into the tracker shows a reader their conversation's
    messages, and a message's author was compared with its people as written
    (`tracking._theirs`): Bob's own reply was missing from his view."""
    db.session.add(Contact(email=f"bob@{contact}", name="Bob"))
    db.session.commit()
    kept = open_ticket(service, subject="Outage Roma", description="Roma is down.")
    duplicate = open_ticket(
        service, requester_email="zed@example.com", subject="Sin internet", cc=[(f"bob@{cc}", "Bob")]
    )
    service.merge(duplicate, kept, actor=agent_actor)
    db.session.commit()
    answered = mail(app, f"bob@{cc}", "Re: [TKT-000002] Sin internet")
    assert (answered.outcome, answered.ticket_number) == (Outcome.APPENDED, "TKT-000001"), answered.reason
    shown = client.post("/api/v1/public/track", json={"ticket_number": "TKT-000002", "email": f"bob@{cc}"})
    assert shown.status_code == 200, shown.get_json()
    bodies = [reply["body"] for reply in shown.get_json()["replies"]]
    assert "The printer on floor 3 is on fire." in bodies, bodies
    assert "Roma is down." not in bodies  # Ann's, another conversation
