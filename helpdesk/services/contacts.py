"""Customers known by email address, and whether mail still reaches them (docs/outbound-mail.md)."""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import Integer, bindparam, delete, func, inspect, or_, select, update
from sqlalchemy.orm import Session

from helpdesk import addresses
from helpdesk.clock import now
from helpdesk.database import advisory_key, insert_ignoring
from helpdesk.message_ids import Signer
from helpdesk.models import Contact, Message, Participant, SatisfactionRating, StaffUser, Ticket
from helpdesk.services import history
from helpdesk.services.actors import Actor

log = logging.getLogger(__name__)

# Built once: every new ticket looks its requester up, and composing the statement
# anew cost as much as running it.
_BY_EMAIL = select(Contact).where(Contact.email == bindparam("email"))
# An internationalised domain's every spelling (`by_email`), oldest contact first.
_BY_SPELLINGS = (
    select(Contact).where(Contact.email.in_(bindparam("emails", expanding=True))).order_by(Contact.id)
)
_BY_PHONE = select(Contact).where(Contact.phone == bindparam("phone"))
# The row lock the per-customer limits take (helpdesk.services.customer_limits), with
# the row read again under it: what was read before the lock may be stale. FOR NO KEY
# UPDATE, not FOR UPDATE: a ticket inserted for the contact takes KEY SHARE on it for
# its foreign key while holding the number counter, and FOR UPDATE would make it wait
# there, holding the counter, for a request that needs the counter next (a deadlock;
# docs/lifecycle.md, "Concurrent changes"). SQLite renders no FOR UPDATE; its
# `BEGIN IMMEDIATE` already lets one writer in at a time.
_LOCKED = (
    select(Contact)
    .where(Contact.id == bindparam("contact"))
    .with_for_update(key_share=True)
    .execution_options(populate_existing=True)
)
# The tickets a merge changes, locked as `tickets.lock_for_change` locks a ticket (FOR
# NO KEY UPDATE, id order) and before any contact: tickets before contacts is the
# lock order everywhere (docs/lifecycle.md, "Concurrent changes"). Those it moves (the
# contact's as requester) and those its stand-in address only takes part in: their
# participation, the ratings and the messages given there change hands too, and a
# rating or a comment written there meanwhile must wait for the merge and then be
# the merged contact's, not land under the stand-in after its rows moved.
_TICKETS_OF = (
    select(Ticket.id)
    .where(
        or_(
            Ticket.requester_id == bindparam("contact"),
            Ticket.id.in_(select(Participant.ticket_id).where(Participant.email == bindparam("email"))),
        )
    )
    .order_by(Ticket.id)
)
_TICKETS_LOCKED = _TICKETS_OF.with_for_update(key_share=True)
# The first key of the advisory lock on a WhatsApp number (the second is the
# number's hash, `database.advisory_key`), a space apart from the mailboxes' locks
# (customer_limits.MAILBOX_LOCK). `for_customer` takes it first thing, before it
# reads who has the number: two first requests from one new number both found no
# one and both wrote it (a 500 on the unique index).
NUMBER_LOCK = 0x706E6F  # "pno"
_LOCK_NUMBER = select(
    func.pg_advisory_xact_lock(bindparam("space", type_=Integer), bindparam("number_key", type_=Integer))
)
# The first key of the advisory lock a new contact of an internationalised domain is
# made under (the second is a hash of the domain's two spellings, `_made_meanwhile`),
# a space apart from the numbers' and the mailboxes' locks.
SPELLINGS_LOCK = 0x737067  # "spg"
_LOCK_SPELLINGS = select(
    func.pg_advisory_xact_lock(bindparam("space", type_=Integer), bindparam("spellings_key", type_=Integer))
)
_LAST = "last contact found"  # the session's `info` key of `_remember`
# Every staff address, folded by `is_ours`.
_ALL_STAFF = select(StaffUser.email)
# Why an integration may not name an address as its customer (`is_ours`).
NOT_A_CUSTOMER = "is the helpdesk's own address or a staff member's, not a customer's"
# Why a WhatsApp number may not act as a customer: it was proven for such an address.
NUMBER_NOT_A_CUSTOMER = "is linked to the helpdesk's own address or a staff member's, not a customer's"
# Why a machine's mailbox (`automail.is_machine_address`: noreply@, mailer-daemon@…)
# is no customer, however a channel names it: the outbox never mails it, so the
# customer would read nothing staff write (docs/integrations.md, "Who the customer is").
MACHINE_ADDRESS = "is an automatic mailbox (noreply, mailer-daemon…), not a customer's"


def is_ours(session: Session, address: str, config: Mapping[str, Any]) -> bool:
    """Whether `address` reaches the helpdesk itself or one of its staff: a support
    address or a plus-address of one, anything at MESSAGE_ID_DOMAIN, a staff user's
    address (active or not). No integration may name such an address as its
    customer: a customer sees every ticket their address is copied on, and staff are
    copied on other customers' tickets; mail to our own address loops back.

    Compared by mailbox (`addresses.mailbox`: case, plus-detail and the domain's
    IDNA form folded, Gmail's dots dropped), as the outbound loop rules compare.
    Every staff row is folded: the staff table is a helpdesk's staff, and no prefix
    of a key finds every stored spelling (`jane.doe@gmail.com` is `janedoe@gmail.com`'s)."""
    box = addresses.mailbox(address)
    own_domain = addresses.mailbox(f"x@{Signer.from_config(config).domain}").rpartition("@")[2]
    if box.rpartition("@")[2] == own_domain or addresses.is_support_address(
        address, config["SUPPORT_ADDRESSES"]
    ):
        return True
    staff = session.scalars(_ALL_STAFF)
    return any(addresses.mailbox(email) == box for email in staff)


def find_or_create(session: Session, email: str, name: str = "") -> Contact:
    """Find or create the contact; safe against a concurrent creator (the insert
    does nothing on conflict and the winner's row is read back).

    A new mail asks twice in one transaction (its per-customer limit, then the
    ticket's requester): the second time is answered from the session, see
    `_remembered`. A new contact comes back from its INSERT (RETURNING), not from
    a second SELECT; only when another transaction inserted it first is it read."""
    email = addresses.normalize(email)
    name = addresses.display_name(name)
    contact = _remembered(session, email)
    if contact is None:
        contact = by_email(session, email) or _made_meanwhile(session, email)
    if contact is not None:
        if name and not contact.name:
            contact.name = name
        return _remember(session, email, contact)
    created = session.scalars(
        insert_ignoring(session, Contact, ["email"])
        .values(email=email, name=name or "", created_at=now())
        .returning(Contact)
    ).one_or_none()
    return _remember(session, email, created or session.execute(_BY_EMAIL, {"email": email}).scalar_one())


def named_address(session: Session, address: str) -> str | None:
    """An address a person or a program names for a customer (the staff and workflow
    APIs, the portal's form, the chat and assistant endpoints) as `addresses.named`
    takes it, None for no address or an address literal, in the spelling a stored
    contact already has (`_known_spelling`). The one rule of every such way in."""
    given = addresses.normalize(address)
    named = addresses.named(given)
    return None if named is None else _known_spelling(session, given, named)


def _known_spelling(session: Session, given: str, named: str) -> str:
    """The address a customer named as `given` (normalized) is known by: `named`
    (`addresses.named`, its domain as IDNA maps it), unless only a contact stored
    with `given` as written exists. Before domains were folded the API, the portal
    and the chat stored `ann@ｅｘａｍｐｌｅ.com` as written; folding it found no one
    and made a second contact at `ann@example.com` beside that customer, who lost
    their tickets in a chat's lookup and was "linked elsewhere" to verify_email.
    A contact at the folded form, when there is one, is the customer
    (docs/integrations.md, "Who the customer is"). One read, only when folding
    changed the address."""
    if given == named:
        return named
    stored = session.execute(select(Contact.email).where(Contact.email.in_((given, named)))).scalars().all()
    return given if stored == [given] else named


def by_email(session: Session, email: str) -> Contact | None:
    """The contact of the (normalized) address `email`, stored in any spelling of an
    internationalised domain (`addresses.either_form`): `ann@bücher.example` is the
    contact a mail from `ann@xn--bcher-kva.example` made. Rows were stored as each
    way in wrote them, so both may exist: the one as written wins, else the oldest
    (docs/integrations.md, "Who the customer is"). One statement either way; an
    ASCII domain asks for its one spelling."""
    forms = addresses.either_form(email)
    if len(forms) == 1:
        return session.execute(_BY_EMAIL, {"email": email}).scalar_one_or_none()
    found = session.execute(_BY_SPELLINGS, {"emails": sorted(forms)}).scalars().all()
    return next((contact for contact in found if contact.email == email), found[0] if found else None)


def _made_meanwhile(session: Session, email: str) -> Contact | None:
    """The contact another transaction made in the other spelling of `email`'s
    internationalised domain while this one found none, once it committed; None when
    there is none (or the domain is ASCII, or the database SQLite, which lets one
    writer in at a time). The insert refuses only an identical address, so two first
    mails of one customer at once, one in each spelling, both made a contact. A new
    contact of such a domain is made under a lock on its two spellings (PostgreSQL,
    an advisory lock held to the commit) and the spellings read again under it: two
    statements, only before such a contact's insert (docs/integrations.md, "Who the
    customer is"; docs/lifecycle.md, "Concurrent changes")."""
    return by_email(session, email) if lock_spellings(session, email, SPELLINGS_LOCK) else None


def lock_spellings(session: Session, address: str, space: int) -> bool:
    """Take the advisory lock on the (normalized) `address`'s two spellings
    (`addresses.either_form`) in `space` until the transaction ends, on PostgreSQL;
    whether it was taken (not for an address of one spelling, nor on SQLite, which
    lets one writer in at a time). Whoever inserts a row by address that the insert
    refuses only in the same text (a contact, a staff account) and looks for the
    other spelling first takes it before the look: two inserts at once, one in each
    spelling, both looked before either committed."""
    forms = addresses.either_form(address)
    if len(forms) == 1 or session.get_bind().dialect.name != "postgresql":
        return False
    session.execute(_LOCK_SPELLINGS, {"space": space, "spellings_key": advisory_key(min(forms))})
    return True


def _remembered(session: Session, email: str) -> Contact | None:
    """The contact this session found last, if it was for `email`.

    Only an object still in the session with its attributes loaded counts: a commit
    or rollback expires it (or expunges it), and then the row is read again, so
    nothing is answered from an earlier transaction. One is kept, not a map, so a
    long-lived session does not grow with every address it meets."""
    last = session.info.get(_LAST)
    if last is None or last[0] != email:
        return None
    contact: Contact = last[1]
    # Its address as found (another spelling of `email`'s domain, `by_email`).
    if contact not in session or contact.__dict__.get("email") != last[2]:
        return None
    return contact


def _remember(session: Session, email: str, contact: Contact) -> Contact:
    session.info[_LAST] = (email, contact, contact.email)
    return contact


def for_customer(
    session: Session,
    *,
    email: str | None,
    phone: str | None,
    phone_vouched: bool,
    name: str = "",
    language: str = "",
) -> Contact:
    """The one contact a chat, an assistant or a phone call acts for, named by email,
    by phone (E.164, already normalized) or both (docs/integrations.md, "Who the
    customer is").

    A contact's phone is an identity: WhatsApp reaches that contact by it. So only a
    number the channel proves (`phone_vouched`: the sender's WhatsApp id) is ever
    recorded or followed; a phone typed into a chat is a claim and changes nothing.
    A proven number is the contact that has it, else one of its own (phone-only),
    whatever email the conversation gives: an email typed into WhatsApp is a claim
    too, and binds the number to nothing until the mailbox proves it
    (`bind_proven`, after `helpdesk.services.email_proofs`). Requests from one
    number are taken one at a time (its advisory lock, on PostgreSQL; SQLite lets
    one writer in anyway), so two first requests from a new number do not both
    write it.
    """
    proven = phone if phone and phone_vouched else None
    if proven is not None:
        lock_number(session, proven)
        by_phone = session.execute(_BY_PHONE, {"phone": proven}).scalar_one_or_none()
        contact = by_phone if by_phone is not None else _phone_only(session, proven, name)
    else:
        assert email, "a customer needs an email or a proven phone"
        contact = find_or_create(session, email, name)
    if name and not contact.name:
        contact.name = addresses.display_name(name)
    if language:
        contact.language = language
    session.flush()
    return contact


def lock_number(session: Session, phone: str) -> None:
    """Take the number's advisory lock until the transaction ends (PostgreSQL; SQLite
    lets one writer in at a time anyway): whoever finds, binds or proves a number
    goes one at a time."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(_LOCK_NUMBER, {"space": NUMBER_LOCK, "number_key": advisory_key(phone)})


def holder(session: Session, phone: str) -> Contact | None:
    """The contact that has the number `phone`, if any (read, not locked)."""
    return session.execute(_BY_PHONE, {"phone": phone}).scalar_one_or_none()


def has_another_number(session: Session, email: str, phone: str) -> bool:
    """Whether `email`'s contact has a number, and not `phone`: `bind_proven` would
    never bind `phone` to it (a contact's number is never replaced). Read, not locked."""
    contact = by_email(session, addresses.normalize(email))
    return contact is not None and contact.phone is not None and contact.phone != phone


def bind_proven(session: Session, phone: str, email: str, name: str = "") -> Contact | None:
    """Bind the proven number `phone` to `email`'s contact, now that the customer
    proved they read that mailbox (a code mailed there came back,
    `helpdesk.services.email_proofs`); the bound contact, or None when the binding
    would replace an identity: the number already is another real address's (a
    number bound to a real address is that person), or the email's contact has
    another number (a contact's number is never replaced).

    With the proof, an address with history is bound too: the mailbox's owner asked.
    From a number known by phone only, the email's contact takes its tickets,
    messages, participation and number (`_merge`). The phone-only contact's tickets
    are locked first, then its row, then the email's contact read again under its
    lock (the order `current` takes them in): a number another request bound to it
    meanwhile stays, and a ticket being opened for either (its creator holds that
    contact, `current`) is waited for and then moves too."""
    email = addresses.normalize(email)
    lock_number(session, phone)
    by_phone = session.execute(_BY_PHONE, {"phone": phone}).scalar_one_or_none()
    if by_phone is not None and not addresses.is_reserved_invalid(by_phone.email):
        return by_phone if by_phone.email in addresses.either_form(email) else None
    if by_phone is not None:
        by_phone = _lock_with_tickets(session, by_phone)
        if not addresses.is_reserved_invalid(by_phone.email):  # merged away meanwhile: its survivor
            return by_phone if by_phone.email in addresses.either_form(email) else None
        if by_phone.phone != phone:  # lost its number, and no one holds it: no one to merge
            by_phone = None
    contact = _lock(session, find_or_create(session, email, name))
    if contact.phone is not None:
        return contact if contact.phone == phone else None
    if by_phone is None:
        contact.phone = phone
    else:
        contact = _merge(session, by_phone, contact)
    if name and not contact.name:
        contact.name = addresses.display_name(name)
    session.flush()
    return contact


def _phone_only(session: Session, phone: str, name: str) -> Contact:
    """Someone known by their number only, under its stand-in address."""
    contact = find_or_create(session, addresses.for_phone(phone), name)
    contact.phone = phone
    return contact


def _lock_with_tickets(session: Session, phone_only: Contact) -> Contact:
    """`current(phone_only)`, with the tickets `_merge` would change locked before it
    (`bind_proven`): the contact's and those its stand-in address takes part in.

    Tickets come before contacts in the lock order: a change of a ticket (an agent
    setting its language) locks the ticket and then writes its requester, so a merge
    that locked the contacts first and then moved the tickets deadlocked with it. A
    ticket opened for the contact, or merged into one it takes part in, while its
    tickets were being locked (its creator held the contact) shows up once the
    contact's lock is granted; then every lock of the round, tickets and contact, is
    given back (rolling back to a savepoint) and the new set taken again in id order,
    so no ticket is ever locked after a contact or after a higher ticket. SQLite lets one writer in at
    a time anyway: there it is `current` alone."""
    if session.get_bind().dialect.name != "postgresql":
        return current(session, phone_only)
    keys = {"contact": _id_of(phone_only), "email": phone_only.email}
    while True:
        # Ticket locks inside the savepoint too: a new ticket (an agent's merge made
        # the stand-in a CC of a lower one) is locked with the rest in id order, not
        # after a higher one still held (a bulk action waiting for both deadlocked).
        savepoint = session.begin_nested()
        moving = set(session.scalars(_TICKETS_LOCKED, keys))
        contact = current(session, phone_only)
        if contact.id != keys["contact"] or set(session.scalars(_TICKETS_OF, keys)) <= moving:
            savepoint.commit()
            return contact
        savepoint.rollback()


def _merge(session: Session, phone_only: Contact, contact: Contact) -> Contact:
    """Move the phone-only contact's tickets, messages, participation, ratings and
    number to `contact`, and return it.

    The phone-only contact's tickets (and those it takes part in) are locked first,
    then both contacts' rows,
    the phone-only one first (the caller holds them already: `_lock_with_tickets`,
    then `bind_proven`), the order every ticket creation takes contacts in, so a merge
    waits for a ticket being opened for either contact and such a ticket moves
    too."""
    phone = phone_only.phone
    phone_only.phone = None
    session.flush()  # the phone is unique: free it before the other contact takes it
    session.execute(
        update(Ticket).where(Ticket.requester_id == phone_only.id).values(requester_id=contact.id)
    )
    session.execute(
        update(Message).where(Message.author_contact_id == phone_only.id).values(author_contact_id=contact.id)
    )
    # Where the phone-only contact took part (its ticket merged into another's), the
    # email's contact takes part now, or the merged number would answer "not found"
    # again: participants are kept by address. Where that address is there already
    # (a CC, in either spelling of its domain: `spelt_as`; or the requester), the
    # stand-in's row just goes, or the ticket had the person twice, once a spelling.
    there = or_(
        Participant.ticket_id.in_(
            select(Participant.ticket_id).where(spelt_as(Participant.email, contact.email))
        ),
        Participant.ticket_id.in_(select(Ticket.id).where(Ticket.requester_id == contact.id)),
    )
    session.execute(
        delete(Participant)
        .where(Participant.email == phone_only.email, there)
        .execution_options(synchronize_session=False)
    )
    session.execute(
        update(Participant)
        .where(Participant.email == phone_only.email)
        .values(email=contact.email)
        .execution_options(synchronize_session=False)
    )
    _move_ratings(session, phone_only, contact)
    contact.phone = phone
    if not contact.language:
        contact.language = phone_only.language
    return contact


def _move_ratings(session: Session, phone_only: Contact, contact: Contact) -> None:
    """The ratings the phone-only contact gave as a participant become `contact`'s:
    the requester's (None) on its tickets, its address's elsewhere. Left under the
    stand-in, the person who gave them was refused changing their own rating and read
    "someone else rated" (docs/integrations.md, "Satisfaction"). Their tickets are
    locked already (`_lock_with_tickets`): a rating being given there by the
    stand-in is waited for and moved, and one given after it waits for the merge and
    is given by the merged contact (the assistant's `_rate`), not by the stand-in
    under rows that moved before it was written (docs/lifecycle.md, "Concurrent
    changes")."""
    by_stand_in = SatisfactionRating.participant_email == addresses.normalize(phone_only.email)
    requested = SatisfactionRating.ticket_id.in_(select(Ticket.id).where(Ticket.requester_id == contact.id))
    session.execute(
        update(SatisfactionRating)
        .where(by_stand_in, requested)
        .values(participant_email=None)
        .execution_options(synchronize_session=False)
    )
    session.execute(
        update(SatisfactionRating)
        .where(by_stand_in)
        .values(participant_email=addresses.normalize(contact.email))
        .execution_options(synchronize_session=False)
    )


def current(session: Session, contact: Contact) -> Contact:
    """The contact `contact`'s person is now, its row locked until the transaction
    ends (PostgreSQL) and read again under the lock.

    A request finds its customer in a transaction of its own and opens the ticket
    in a later one; in between, a WhatsApp request that gave an email may have
    merged the phone-only contact it found into the email's (`bind_proven`). A
    ticket opened under the merged-away contact would escape the person's limits
    and be seen by no one asking by that number, so whoever counts and opens
    tickets for a customer found earlier asks here first. A merged-away contact
    keeps its stand-in address and loses its number; the number, spelled in the
    address, leads to the contact that took it, locked after the first one: the
    order `_merge` takes them in."""
    contact = _lock(session, contact)
    phone = addresses.phone_of_stand_in(contact.email) if contact.phone is None else None
    if phone is None:
        return contact
    survivor = session.execute(_BY_PHONE, {"phone": phone}).scalar_one_or_none()
    return contact if survivor is None else _lock(session, survivor)


def _lock(session: Session, contact: Contact) -> Contact:
    """`contact`, its row locked and read again (changes pending are flushed first).
    Its id is taken from the session's identity key: `contact.id` on a contact a
    commit expired would load the whole row first, only to read it again here."""
    return session.execute(_LOCKED, {"contact": _id_of(contact)}).scalar_one()


def _id_of(contact: Contact) -> int:
    key = inspect(contact).identity
    return int(key[0]) if key else contact.id


def tickets_of(contact: Contact) -> Any:
    """The condition on tickets a customer may see: theirs, or ones they are a CC
    participant of in either spelling of their domain (`spelt_as`; assistant tools,
    chat lookups). Compared as written, a customer made a CC as
    `bob@xn--bcher-kva.example` who asked as `bob@bücher.example` did not see the
    ticket whose every reply reached them (docs/integrations.md, "Who the customer is")."""
    participant = select(Participant.ticket_id).where(spelt_as(Participant.email, contact.email))
    return or_(Ticket.requester_id == contact.id, Ticket.id.in_(participant))


def spelt_as(column: Any, address: str) -> Any:
    """The condition that `column` holds the (normalized) `address` in either spelling
    of an internationalised domain (`addresses.either_form`): where people are stored
    by address as each way in wrote them (a participant, a requester's contact), the
    same mailbox in the other spelling is the same person. An ASCII domain compares
    as before, to its one spelling, so no statement changes for it."""
    forms = addresses.either_form(address)
    return column == address if len(forms) == 1 else column.in_(sorted(forms))


def mark_undeliverable(session: Session, email: str) -> Contact:
    """A bounce proved mail to this address fails: notifications skip it from now on.

    The mark goes on the contact of the mailbox the relay was given
    (`addresses.wire_or_stored`, found in either spelling by `by_email`), which every
    spelling's lookup asks for (`addresses.mailbox_spellings`). Put on the address as written,
    a bounce of a copy to a fullwidth Cc (`ana@ｂücher.example`) marked that spelling
    alone: mail to `ana@bücher.example`, the same mailbox, went on into the bounce,
    her tickets showed no mark and the command said she was not marked
    (docs/outbound-mail.md, "Loop rules")."""
    contact = find_or_create(session, addresses.wire_or_stored(addresses.normalize(email)))
    if contact.undeliverable_since is None:
        contact.undeliverable_since = now()
    return contact


def clear_undeliverable(session: Session, address: str, by: Actor) -> bool:
    """Mail to `address` works again: notifications go to it from now on. Whether it
    was marked. The mark is cleared in every spelling of the mailbox mail to
    `address` goes to (`addresses.mailbox_spellings`): a bounce marks the contact found in either
    (`mark_undeliverable`, `by_email`), and the sender skips a mark found in either,
    so clearing only the spelling given left `ana@bücher.example`'s mark standing
    for every mail to `ana@xn--bcher-kva.example` (docs/outbound-mail.md, "Loop rules").

    Who clears it: mail from the address itself (`heard_from`); for a staff address,
    which `heard_from` never sees, their own mail with proof (`TicketsService.add_message`,
    the `email` channel) and an admin (the Staff page); a verification code given
    back (`email_proofs.confirm`); an operator who hears it works again (the
    `addresses deliverable` command, docs/operations.md, "Mail to an address that
    bounced"). Nothing cleared a staff member's mark once, and one 5.1.1 refusal
    during a directory sync silenced every later escalation and SLA alert to them.
    `by`, who cleared it, is logged with the contacts cleared (`_log_cleared`)."""
    spellings = sorted(addresses.mailbox_spellings(addresses.normalize(address)))
    cleared = session.scalars(
        update(Contact)
        .where(Contact.email.in_(spellings), Contact.undeliverable_since.is_not(None))
        .values(undeliverable_since=None)
        .returning(Contact.email)
        .execution_options(synchronize_session="fetch")
    ).all()
    if cleared:
        _log_cleared(address, cleared, by)
    return bool(cleared)


def clear_undeliverable_on(session: Session, ticket_id: int, address: str, by: Actor) -> bool:
    """`clear_undeliverable` for an address of ticket `ticket_id`, done from its page,
    and, when there was a mark, a history row on that ticket saying who resumed mail
    to the address and when; before migration 0048 the ticket kept no trace of it
    (docs/outbound-mail.md, "Loop rules"). The other ways of clearing name no ticket."""
    cleared = clear_undeliverable(session, address, by)
    if cleared:
        history.record(session, ticket_id, "deliverable", "undeliverable", "deliverable", by, address)
    return cleared


def _log_cleared(address: str, cleared: Collection[str], by: Actor) -> None:
    """One line for every mark cleared, the one trace of every clearing: mail goes
    again to a mailbox that bounced, and when it bounces again the operator asks who
    resumed it and when (the line's time). The contact keeps no history, and only a
    clearing on a ticket's page names a ticket to write one on (`clear_undeliverable_on`;
    docs/outbound-mail.md, "Loop rules"); before this nothing recorded it. Values in
    repr, so a name cannot forge a line (docs/outbound-mail.md, "Loop rules")."""
    log.info(
        "undeliverable mark cleared: address=%r contacts=%r by=%r kind=%s staff_id=%s",
        address,
        sorted(cleared),
        by.label,
        by.kind,
        by.staff_id,
    )


def undeliverable_marks(session: Session, emails: Collection[str]) -> dict[str, datetime]:
    """Since when mail to each of `emails` (normalized) is marked undeliverable, for
    those marked: a mark on any spelling of its mailbox, the ones `clear_undeliverable`
    clears, in one query. The one reading of marks: the sender's (a batch's rows),
    the ticket page's (its requester and CC participants) and the Mail page's (the
    staff), each a bounded list."""
    spellings = {email: addresses.mailbox_spellings(email) for email in emails}
    marked: dict[str, datetime] = {
        email: since
        for email, since in session.execute(
            select(Contact.email, Contact.undeliverable_since).where(
                Contact.email.in_({form for forms in spellings.values() for form in forms}),
                Contact.undeliverable_since.is_not(None),
            )
        )
        if since is not None
    }
    return {
        email: min(marked[form] for form in forms if form in marked)
        for email, forms in spellings.items()
        if not forms.isdisjoint(marked)
    }


def heard_from(session: Session, contact: Contact, channel: str) -> None:
    """The customer wrote by `channel` (a ticket's channel). Mail from the address
    itself proves it works again (a full mailbox emptied, a typo fixed by the
    customer's admin), so an earlier bounce stops counting. Nothing else does: a
    chat, an assistant or a workflow naming the address says nothing of its
    mailbox, and clearing the mark sent the next mail into the bounce again.

    Cleared on every spelling of the mailbox the address is mailed at, the marks
    the sender skips it for (`clear_undeliverable`): cleared on the writer's contact
    alone, a mark on the other spelling's contact (`ana@xn--bcher-kva.example`,
    when both rows exist) or on the form the relay was given (a writer stored in
    fullwidth letters, `mark_undeliverable`) kept her unmailed though she wrote. A
    look-alike (a Cyrillic `с` for the Latin `c`) is another mailbox and clears
    nothing. An address that is its mailbox's one spelling, nearly every one, is
    cleared on its row, with no statement (docs/outbound-mail.md, "Loop rules")."""
    if channel != "email":
        return
    writer = Actor.customer(contact.email, contact.name)
    if addresses.mailbox_spellings(contact.email) != {contact.email}:
        clear_undeliverable(session, contact.email, writer)
    elif contact.undeliverable_since is not None:
        contact.undeliverable_since = None
        _log_cleared(contact.email, [contact.email], writer)
