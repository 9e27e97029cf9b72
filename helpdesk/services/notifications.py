"""Which events queue which customer notifications (docs/outbound-mail.md).

TicketsService calls this module, so every channel (portal, API, SMTP, IMAP, CLI)
queues the same mail. A notification is an outbox row per recipient, written in
the caller's transaction (flush only): the mail exists exactly when the event
does, and a rolled-back event mails nobody.

The rules:
- `created`: the requester gets an acknowledgment, unless the system itself
  opened the ticket (nobody asked, so nobody is answered).
- `reply`: a public reply by staff (or the system) goes to the requester and to
  every CC participant, each in a copy of their own; its author is left out.
  Each copy names the other recipients in Cc, except a staff member's copy
  (a customer who put a staff address in Cc, or a staff requester): its signed
  Message-ID is that staff member's proof for mail from their address, and a
  Reply-All to a copy that named the customers would send it to them
  (docs/security.md). On a ticket others were merged into, a copy names only the
  people of its recipient's own conversation (`companies`), and is sent under
  that conversation's subject (`own_subject`).
  Internal notes are never mailed, and neither is a customer's own message:
  echoing mail back to people who just wrote is how helpdesks feed loops.
- `status` / `resolved`: a status change someone made goes to the requester;
  `resolved` gets its own template (how to reopen: just reply). Automated moves
  (an agent opening a new ticket, a customer's reply reopening it, auto-close)
  are bookkeeping and are not mailed, and neither is `cancelled`: tickets are
  cancelled as spam or duplicates, and mailing a spammer is backscatter.

- `sla_breach`: a target that ran out (found by the SLA check, once per
  breach) alerts the ticket's assignee or, while it has none (or the assignee
  was deactivated), every active admin: one mail per ticket and recipient per
  check, listing the targets missed. Alerts are not rate-limited: each breach
  alerts once by construction, and an alert dropped by a limit would be an SLA
  failure nobody hears of. They are bounded instead: a recipient one check
  would alert about more than `SLA_DIGEST_OVER` tickets gets one `sla_digest`
  instead, a row about no single ticket that lists the first
  `SLA_DIGEST_LISTED` of them and counts the rest.

- `escalation`: a ticket escalated to someone (`TicketsService.escalate`) tells
  them, with the levels, who escalated it and why; not when they escalated it to
  themselves. Staff mail, not rate-limited, like the SLA alerts; one per escalation
  a person made, and a ticket escalates at most twice (L1 → L2 → L3).

- `email_code`: a WhatsApp customer asked to prove they read an address
  (`helpdesk.services.email_proofs`): the code goes to that address, about no
  ticket. Automatic mail, but outside the sender's limits on it: the requests
  are limited per number and per mailbox before the row is written, and other
  mail to the address must not skip the code its owner asked for.

Whether a queued row is really sent (undeliverable, machine or own address, rate
limit) is decided when it is sent, with the newest knowledge: see
`mailgateway.outbound`. A row's times (queued, due) are the database's clock, as
every time on an outbox row is, since the sender judges them on another host: a
new row leaves them to the model's default (`clock.DatabaseClock`, SQL in the
INSERT, so a reply's copies are one INSERT), an UPDATE writes `clock.database_clock`;
no extra round trip either way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Select, insert, or_, select, update
from sqlalchemy.orm import Session

from helpdesk import addresses
from helpdesk import vocabulary as v
from helpdesk.clock import database_clock
from helpdesk.errors import Conflict, NotFound, ValidationError
from helpdesk.models import Contact, Message, OutboxMessage, Participant, StaffUser, Ticket, TicketHistory
from helpdesk.services import contacts
from helpdesk.services.actors import Actor
from helpdesk.sla import Breach

# Customer mail that no person wrote: rate-limited by the sender. (RFC 3834 marks all
# automatic mail, the staff alerts too, but those are never dropped by a limit: an
# SLA check bounds what it mails each recipient itself, by a digest. A verification
# code is not here either: `email_proofs` bounds the codes a mailbox gets where they
# are asked for, and other mail filling the budget skipped the owner's own code;
# docs/outbound-mail.md, "Verification codes".)
AUTOMATIC_KINDS = ("created", "status", "resolved")
# One SLA check mails a recipient at most this many per-ticket alerts; beyond it, one
# digest instead, which lists at most SLA_DIGEST_LISTED tickets and counts the rest
# (docs/outbound-mail.md, "SLA alerts").
SLA_DIGEST_OVER = 3
SLA_DIGEST_LISTED = 50
UNMAILED_STATUSES = frozenset({"cancelled"})
RETRYABLE_STATES = ("failed", "skipped")


def acknowledgment(requester_email: str, actor: Actor) -> dict[str, Any] | None:
    """The acknowledgment's outbox row as plain values, or None when none is due.

    `requester_email` is the requester's contact's address as stored, as every other
    row to them names it: a mail or an API call may name her in the other spelling of
    an internationalised domain (`contacts.by_email`), and a row to that spelling
    greeted her "Hello there," and carried a status link that opened nothing, both
    read by the stored address (`compose.Composer`, `customer_links.open_link`). One
    mailbox either way: the relay is given the ASCII form of both.

    Plain values, not an object, so `open_ticket` can write it in the same
    statement as the ticket (`numbering.insert_numbered` fills in `ticket_id`, and
    the model's defaults: its times, the database's clock): the counter row stays
    locked no longer than before.
    """
    if actor.kind == "system":
        return None
    return _row_values("created", addresses.normalize(requester_email))


def queue_reply(session: Session, ticket: Ticket, message: Message, actor: Actor) -> None:
    """Queue a public reply for the requester and the CC participants."""
    if message.kind != "reply" or actor.is_customer:
        return
    author = addresses.normalize(actor.email or "")
    # Each mailbox once, and not the author's, in either spelling of its domain.
    people = [ticket.requester.email] + [p.email for p in ticket.participants]
    recipients = addresses.one_spelling_each([a for a in people if a], (author,))
    staff = _staff_addresses(session, recipients) if len(recipients) > 1 else set()
    company = companies(session, ticket, recipients) if len(recipients) > 1 else {}
    for address in recipients:
        # A staff member's copy names nobody in Cc: its signed Message-ID proves
        # mail from that address (`matching.answers_mail_sent_to`), and one
        # Reply-All to a copy that listed the customers would hand it to them.
        # A stand-in address (`…@phone.invalid`, a WhatsApp customer merged in) is
        # never mailed and carries their phone number: no copy names it. Nor does
        # a copy name anyone outside its recipient's own conversation (`companies`).
        shown = [a for a in company.get(address, ()) if not addresses.is_reserved_invalid(a)]
        others = "" if address in staff else ", ".join(shown)
        session.add(
            OutboxMessage(
                ticket_id=ticket.id,
                reply=message,
                **_row_values("reply", address, cc_addresses=others),
            )
        )


@dataclass(frozen=True)
class Conversation:
    """A ticket merged into another, as its customers wrote it: its subject and its
    people (requester and CC participants, whose rows stay with it after the merge)."""

    ticket_id: int
    subject: str
    people: frozenset[str]
    # The language its mail was written in ("" when none was: docs/languages.md).
    language: str = ""


def merged_into(ticket_id: int | None) -> Select[Any]:
    """The ids of the tickets merged into `ticket_id`. One step is all of them: a merge
    moves the tickets merged into its source to the survivor, and migration 0042
    flattened the chains stored before (docs/isp-operations.md, "Merge and links")."""
    return select(Ticket.id).where(Ticket.merged_into_id == ticket_id)


def own_conversations(
    address: str, requester: str, merged: Sequence[Conversation]
) -> tuple[bool, list[Conversation]]:
    """Which conversations of a ticket others were merged into are `address`'s own:
    whether the survivor's (its requester, and anyone on none of the merged tickets:
    a CC it had from the start) and which merged tickets (those it was the requester
    or a CC participant of). The one rule for the Cc and the subject of every copy
    (docs/outbound-mail.md, "Merged tickets"); a person on the survivor from the start
    and on a merged ticket as well is read as the merged ticket's only. `address` is
    any of them in either spelling of an internationalised domain
    (`addresses.either_form`): a CC of a merged ticket asking the chat in the other
    spelling read the survivor's subject, another customer's words."""
    forms = addresses.either_form(address)
    theirs = [conversation for conversation in merged if not forms.isdisjoint(conversation.people)]
    return requester in forms or not theirs, theirs


def _merged_conversations(session: Session, ticket: Ticket, address: str | None = None) -> list[Conversation]:
    """The tickets merged into `ticket`, oldest first, with their people; with
    `address`, only those it took part in, in either spelling (`contacts.spelt_as`)."""
    merged = (
        select(Ticket.id, Ticket.subject, Contact.email, Ticket.language, Ticket.number)
        .join(Contact, Contact.id == Ticket.requester_id)
        .where(Ticket.merged_into_id == ticket.id)
    )
    if address is not None:
        took_part = select(Participant.ticket_id).where(contacts.spelt_as(Participant.email, address))
        merged = merged.where(or_(contacts.spelt_as(Contact.email, address), Ticket.id.in_(took_part)))
    found = session.execute(merged.order_by(Ticket.id)).all()
    if not found:
        return []
    people = {ticket_id: {email} for ticket_id, _, email, _, _ in found}
    participants = select(Participant.ticket_id, Participant.email).where(
        Participant.ticket_id.in_(merged.with_only_columns(Ticket.id))
    )
    for ticket_id, email in session.execute(participants):
        people[ticket_id].add(email)
    _without_merged_in(session, found, people)
    return [
        Conversation(ticket_id, subject, frozenset(people[ticket_id]), language or "")
        for ticket_id, subject, _, language, _ in found
    ]


def _without_merged_in(session: Session, found: Sequence[Any], people: dict[int, set[str]]) -> None:
    """A merged ticket's own people, as the survivor's are (`_survivors`): not those
    its merge made CC participants of it, the people of the tickets merged into it
    before, which moved to the survivor with it (A into B, then B into C). Each
    moved ticket has a history row naming the ticket it pointed at before the move
    (`TicketsService.merge`). Read as B's, Cat of A was named to every customer
    merged into B and mailed in B's subject and language (docs/outbound-mail.md,
    "Merged tickets")."""
    by_number = {number: ticket_id for ticket_id, _, _, _, number in found if number is not None}
    moves = session.execute(
        select(TicketHistory.ticket_id, TicketHistory.old_value).where(
            TicketHistory.ticket_id.in_(list(people)),
            TicketHistory.field == "merge",
            TicketHistory.old_value.is_not(None),
        )
    ).all()
    requesters = {ticket_id: email for ticket_id, _, email, _, _ in found}
    for moved, pointed_at in moves:
        digits = (pointed_at or "")[len((pointed_at or "").rstrip("0123456789")) :]
        through = by_number.get(int(digits)) if digits else None
        if through is not None and through != moved:
            people[through] -= people[moved] - {requesters[through]}


def companies(session: Session, ticket: Ticket, recipients: Sequence[str]) -> dict[str, list[str]]:
    """Whom each of `recipients` (a reply's, in their order) shares a conversation
    with on `ticket`, in that order: on a ticket nobody was merged into, everyone
    else; after a merge, the people of their own conversation only (`_own`). Each
    copy used to name every other recipient, so one reply to an outage gave each
    customer the others' addresses, and a thousand merged-in customers wrote a
    million addresses into the outbox."""
    merged = _merged_conversations(session, ticket)
    if not merged:
        return {address: [a for a in recipients if a != address] for address in recipients}
    order = {address: position for position, address in enumerate(recipients)}
    # A conversation's people as stored, each named by the recipient it is in either
    # spelling (`addresses.either_form`): the merge keeps the survivor's spelling.
    spelt = {form: address for address in recipients for form in addresses.either_form(address)}
    survivors = _survivors(ticket, merged)
    return {
        address: sorted(
            {
                spelt[person]
                for person in _own(address, ticket, merged, survivors).people or ()
                if person in spelt
            }
            - {address},
            key=order.__getitem__,
        )
        for address in recipients
    }


def own_subject(session: Session, ticket: Ticket, address: str) -> str:
    """The subject of `address`'s own conversation on `ticket` (`own_conversations`):
    a customer whose ticket was merged reads the words they wrote, under the
    survivor's number, never another customer's (docs/outbound-mail.md)."""
    return own_thread(session, ticket, address)[0]


def own_thread(session: Session, ticket: Ticket, address: str) -> tuple[str, str]:
    """The subject and the language of `address`'s own conversation on `ticket`: a
    merged ticket's, the language its mail was written in ("" when none was, or
    when the survivor's conversation is theirs: the survivor's language then). A
    Spanish customer merged into an English ticket went on in English
    (docs/isp-operations.md, "Merge and links")."""
    requester = ticket.requester.email
    if requester in addresses.either_form(address):
        return ticket.subject, ""
    on_survivor, theirs = own_conversations(
        address, requester, _merged_conversations(session, ticket, address)
    )
    return (ticket.subject, "") if on_survivor else (theirs[0].subject, theirs[0].language)


@dataclass(frozen=True)
class OwnConversation:
    """What of a ticket is one reader's to read again (`own_conversation`)."""

    subject: str
    # Whose messages are theirs to read: None for everyone's (nobody was merged in).
    people: frozenset[str] | None
    # The merged tickets that are their conversation; empty when the survivor's is.
    merged_ids: tuple[int, ...]


def own_conversation(session: Session, ticket: Ticket, address: str) -> OwnConversation:
    """`address`'s own conversation on `ticket` (`own_conversations`), as the tracker
    shows it again: the subject their mail carries, and the people whose messages
    are theirs to read, the ones a reply's copy names in `Cc` and themselves
    (docs/web.md, "The public tracker"); `people` None when nobody was merged in."""
    merged = _merged_conversations(session, ticket)
    if not merged:
        return OwnConversation(ticket.subject, None, ())
    return _own(address, ticket, merged, _survivors(ticket, merged))


def _own(
    address: str, ticket: Ticket, merged: Sequence[Conversation], survivors: frozenset[str]
) -> OwnConversation:
    """`address`'s conversation on a ticket others were merged into: a merged
    ticket's subject and people, or the survivor's (`survivors`), by
    `own_conversations`; the people include `address`."""
    on_survivor, theirs = own_conversations(address, ticket.requester.email, merged)
    people = frozenset({address}).union(*(conversation.people for conversation in theirs))
    if on_survivor:
        return OwnConversation(ticket.subject, people | survivors, ())
    return OwnConversation(
        theirs[0].subject, people, tuple(conversation.ticket_id for conversation in theirs)
    )


def _survivors(ticket: Ticket, merged: Sequence[Conversation]) -> frozenset[str]:
    """The survivor's own people: its requester and the CC participants who are on
    none of the tickets merged into it (a CC it had from the start), in either
    spelling (`addresses.either_form`): the merge keeps the survivor's spelling of a
    person on both (`addresses.one_spelling_each`)."""
    elsewhere = frozenset().union(
        *(addresses.either_form(person) for conversation in merged for person in conversation.people)
    )
    shared = (participant.email for participant in ticket.participants if participant.email not in elsewhere)
    return frozenset({ticket.requester.email, *shared})


def _staff_addresses(session: Session, candidates: Sequence[str]) -> set[str]:
    """Which of `candidates` are staff accounts' addresses, deactivated ones too (an
    account can be activated again, and its proof with it), in any spelling of the
    mailbox the candidate is mailed at (`addresses.mailbox_spellings`): a signed
    Message-ID sent to `jane@xn--bcher-kva.example` proves mail from the account
    `jane@bücher.example` (`matching.answers_mail_sent_to`), so her copy names nobody
    either; and a copy to `jane@ｂücher.example`, a CC in fullwidth letters, reaches
    her mailbox too, where it named the customers for her Reply-All to hand them."""
    spellings = {address: addresses.mailbox_spellings(address) for address in candidates}
    every: set[str] = set().union(*spellings.values())
    staff = set(session.execute(select(StaffUser.email).where(StaffUser.email.in_(sorted(every)))).scalars())
    return {address for address, forms in spellings.items() if not staff.isdisjoint(forms)}


def queue_status_change(
    session: Session,
    ticket: Ticket,
    old: str,
    new: str,
    *,
    actor: Actor,
    reason: str,
    automated: bool,
) -> None:
    """Queue the requester's notice of a status change someone made."""
    if automated or actor.is_customer or new in UNMAILED_STATUSES or old == new:
        return
    kind = "resolved" if new == "resolved" else "status"
    session.add(
        OutboxMessage(
            ticket_id=ticket.id,
            old_status=old,
            new_status=new,
            # The bulk form's reason is the history's, not words to the customer
            # (docs/outbound-mail.md); what staff typed is mailed as written.
            **_row_values(
                kind,
                ticket.requester.email,
                status_reason="" if reason == v.BULK_FORM_REASON else reason or "",
            ),
        )
    )


@dataclass
class SlaRun:
    """One SLA check's alerts from batch to batch (`queue_sla_alerts`): how many of
    the tickets it found overdue each recipient would be told of (`sla_recipients`),
    its digest per recipient (address → its outbox row), and the per-ticket alerts
    queued per recipient so far."""

    expected: dict[str, int] = field(default_factory=dict)
    digests: dict[str, int] = field(default_factory=dict)
    alerted: dict[str, int] = field(default_factory=dict)


def _sla_staff(session: Session) -> tuple[dict[int, str], list[str]]:
    """The active staff's addresses by id, and the active admins' addresses."""
    staff = session.execute(
        select(StaffUser.id, StaffUser.email, StaffUser.role).where(StaffUser.is_active)
    ).all()
    return {user_id: email for user_id, email, _ in staff}, [
        email for _, email, role in staff if role == "admin"
    ]


def sla_recipients(session: Session, assignees: Sequence[int | None]) -> dict[str, int]:
    """How many of the tickets assigned to `assignees` (one each, None for none) each
    recipient's SLA alerts would be about: the assignee, else every active admin."""
    active, admins = _sla_staff(session)
    counts: dict[str, int] = {}
    for assignee_id in assignees:
        for address in _told_of(assignee_id, active, admins):
            counts[address] = counts.get(address, 0) + 1
    return counts


def _told_of(assignee_id: int | None, active: dict[int, str], admins: list[str]) -> list[str]:
    """Who is told of a ticket's SLA breach: its assignee while active, else every
    active admin."""
    assignee = active.get(assignee_id) if assignee_id is not None else None
    return [assignee] if assignee else admins


def queue_sla_alerts(session: Session, breaches: Sequence[Breach], run: SlaRun | None = None) -> int:
    """Queue the alerts for breaches just marked; returns how many rows were queued.

    Each recipient gets a mail per ticket, listing its targets missed, or, when that
    would be more than `SLA_DIGEST_OVER` mails, one digest (`digest_reason`). Written
    with one multi-row INSERT, since a check after an outage may find thousands of
    breaches at once; its times are the model's default, SQL in the statement.

    `run` carries one SLA check's alerts from batch to batch (`SlaRun`): a recipient
    of more than `SLA_DIGEST_OVER` of the tickets the check found overdue, or of
    more than that many alerts over its batches, gets a digest, and a later batch's
    breaches for that recipient join the digest while the sender has not taken it
    yet (`_joined`). So a check marking 100,000 tickets 500 a transaction still mails
    each recipient one digest, not one per batch, nor an alert per ticket when each
    batch holds only a few of theirs (docs/outbound-mail.md, "SLA alerts").
    """
    run = SlaRun() if run is None else run
    digests = run.digests
    active, admins = _sla_staff(session)
    per_ticket: dict[int, tuple[int | None, list[str]]] = {}
    for breach in sorted(breaches, key=lambda breach: breach.ticket_id):
        per_ticket.setdefault(breach.ticket_id, (breach.assignee_id, []))[1].append(breach.describe())
    per_recipient: dict[str, list[int]] = {}
    for ticket_id, (assignee_id, _) in per_ticket.items():
        for address in _told_of(assignee_id, active, admins):
            per_recipient.setdefault(address, []).append(ticket_id)
    rows = []
    digested = 0
    for address, ticket_ids in per_recipient.items():
        lines = {ticket_id: per_ticket[ticket_id][1] for ticket_id in ticket_ids}
        if address in digests and _joined(session, digests[address], lines):
            continue
        alerted = run.alerted.get(address, 0)
        if max(run.expected.get(address, 0), alerted + len(ticket_ids)) > SLA_DIGEST_OVER:
            digests[address] = session.execute(
                insert(OutboxMessage.__table__)
                .values(
                    ticket_id=None, **_row_values("sla_digest", address, status_reason=digest_reason(lines))
                )
                .returning(OutboxMessage.__table__.c.id)
            ).scalar_one()
            digested += 1
            continue
        run.alerted[address] = alerted + len(lines)
        for ticket_id, said in lines.items():
            rows.append(
                dict(ticket_id=ticket_id, **_row_values("sla_breach", address, status_reason="\n".join(said)))
            )
    if rows:
        session.execute(insert(OutboxMessage.__table__), rows)
    return digested + len(rows)


def digest_reason(lines: dict[int, list[str]], total: int | None = None) -> str:
    """A digest's stored text: how many tickets it is about (`total`, else as many
    as `lines` names), then, for the first `SLA_DIGEST_LISTED` of them, a line per
    target missed, led by the ticket's id (`12 First response was due 2026-03-02
    10:00 UTC.`). The sender renders the numbers, subjects and links from it when
    it claims the row (`compose.Composer.render`); `digest_entries` reads it back."""
    listed = list(lines.items())[:SLA_DIGEST_LISTED]
    return "\n".join(
        [
            str(len(lines) if total is None else total),
            *(f"{ticket_id} {line}" for ticket_id, said in listed for line in said),
        ]
    )


def _joined(session: Session, digest_id: int, lines: dict[int, list[str]]) -> bool:
    """Add `lines` (tickets and their targets missed) to the digest `digest_id` if
    the sender has not taken it yet: still pending, never rendered, and not held by
    a sender claiming it now (skipped, not waited for). False when it has: the
    caller queues a new mail for these tickets."""
    table = OutboxMessage.__table__
    reason = session.execute(
        select(table.c.status_reason)
        .where(table.c.id == digest_id, table.c.state == "pending", table.c.message_id.is_(None))
        .with_for_update(skip_locked=True)
    ).scalar_one_or_none()
    if reason is None:
        return False
    total, entries = digest_entries(reason)
    merged = entries | {ticket_id: said for ticket_id, said in lines.items() if ticket_id not in entries}
    session.execute(
        update(table)
        .where(table.c.id == digest_id)
        .values(status_reason=digest_reason(merged, total + len(lines)))
    )
    return True


def digest_entries(reason: str) -> tuple[int, dict[int, list[str]]]:
    """What `digest_reason` wrote: how many tickets in all, and the listed tickets'
    lines by ticket id, in order. A line of another shape is left out."""
    head, _, rest = reason.partition("\n")
    total = int(head) if head.isdigit() and head.isascii() else 0
    entries: dict[int, list[str]] = {}
    for line in rest.split("\n"):
        ticket_id, _, said = line.partition(" ")
        if ticket_id.isdigit() and ticket_id.isascii() and said:
            entries.setdefault(int(ticket_id), []).append(said)
    return max(total, len(entries)), entries


def queue_email_code(session: Session, address: str, language: str, code: str, minutes: int) -> None:
    """Queue the mail carrying a WhatsApp customer's verification code to `address`,
    in their `language`; the sender renders it from `code_reason`'s text."""
    reason = code_reason(language, code, minutes)
    session.add(OutboxMessage(ticket_id=None, **_row_values("email_code", address, status_reason=reason)))


def code_reason(language: str, code: str, minutes: int) -> str:
    """A code mail's stored text: `es 123456 15` (language, code, minutes it works)."""
    return f"{language} {code} {minutes}"


def forget_code(row: OutboxMessage) -> None:
    """Drop a code mail's stored text (`code_reason`) once the sender is done with
    it: rendered (the mail keeps its own copy), skipped or failed unrendered. The
    code is kept as text only until then (docs/outbound-mail.md, "Verification
    codes")."""
    if row.kind == "email_code":
        row.status_reason = ""


def code_entries(reason: str) -> tuple[str, str, int]:
    """What `code_reason` wrote: the language ("" if none), the code, the minutes."""
    language, code, minutes = (reason.split(" ") + ["", "", ""])[:3]
    return language, code, int(minutes) if minutes.isdigit() and minutes.isascii() else 0


def queue_escalation(session: Session, ticket: Ticket, old_level: str, actor: Actor, reason: str) -> None:
    """Tell the ticket's new assignee it was escalated to them, unless they did it
    themselves. Like SLA alerts, never rate-limited: each escalation mails once, and
    is a person's action (at most two per ticket: escalation only goes up)."""
    assignee = session.get(StaffUser, ticket.escalated_to_id) if ticket.escalated_to_id else None
    if assignee is None or not assignee.is_active or assignee.id == actor.staff_id:
        return
    summary = f"Escalated from {old_level} to {ticket.escalation_level} by {actor.label}:\n{reason}"
    session.add(
        OutboxMessage(
            ticket_id=ticket.id,
            **_row_values("escalation", assignee.email, status_reason=summary),
        )
    )


def record_bounce(session: Session, row: OutboxMessage, reason: str) -> None:
    """A bounce came back for `row`: show it on the row, and stop mailing the address."""
    row.state = "bounced"
    row.bounced_at = database_clock(session)
    row.last_error = f"bounced: {reason}"[:2000]
    contacts.mark_undeliverable(session, row.to_address)


def outbox(session: Session, state: str | None = None, limit: int = 50) -> list[OutboxMessage]:
    """The newest outbox rows, optionally in one state, for staff to see."""
    query = select(OutboxMessage).order_by(OutboxMessage.id.desc()).limit(limit)
    if state is not None:
        if state not in v.OUTBOX_STATES:
            raise ValidationError({"state": f"must be one of {', '.join(v.OUTBOX_STATES)}"})
        query = query.where(OutboxMessage.state == state)
    return list(session.execute(query).scalars())


def retry(session: Session, row_id: int) -> OutboxMessage:
    """Send a failed or skipped row again, now (after the cause was fixed). Its
    clock starts again: as old as the retry and no attempts made, so it backs off
    and is given up as a new row would be, and is not counted as backed up; with
    its age kept, the first 4xx after the retry failed it for good at once."""
    row = session.get(OutboxMessage, row_id)
    if row is None:
        raise NotFound(f"No outbox row {row_id}.")
    if row.state not in RETRYABLE_STATES:
        raise Conflict(
            f"Outbox row {row_id} is {row.state}; only {' or '.join(RETRYABLE_STATES)} rows can be retried."
        )
    if row.kind == "email_code" and row.message_id is None:
        # Its code left the row when it was skipped (`forget_code`): nothing to mail.
        raise Conflict(
            f"Outbox row {row_id} is a verification code that was never mailed and no longer "
            "holds its code; the customer asks the assistant for a new one."
        )
    moment = database_clock(session)
    row.state, row.created_at, row.next_attempt_at, row.attempts, row.last_error = (
        "pending",
        moment,
        moment,
        0,
        "",
    )
    session.flush()
    return row


def _row_values(
    kind: str, address: str, *, cc_addresses: str = "", status_reason: str = ""
) -> dict[str, Any]:
    """A new row's values. Its times are left to the model's default, the database's
    clock in the INSERT (`clock.DatabaseClock`): a time named here would be a value
    per row, and the ORM writes rows holding SQL one INSERT each."""
    return dict(
        kind=kind,
        to_address=address,
        cc_addresses=cc_addresses,
        status_reason=status_reason,
        state="pending",
        attempts=0,
        last_error="",
    )
