"""Which ticket does this mail belong to? (docs/mail-gateway.md, in that order.)

1. In-Reply-To, then References (newest first), naming a Message-ID the system
   received for ticket T, or one it sent for T — the latter only when its HMAC
   verifies (`message_ids`), so a forged id in our domain threads nowhere;
2. T's number in the subject;
3. T's number in a support address's plus-address (`support+TKT-000078@…`) among
   the recipients.

Of 2 and 3 the first `MAX_NAMED_NUMBERS` numbers each are read, and all of them
looked up in one statement (docs/security.md, "Bounded work").

Finding T is not permission to write into it: `authorization.may_reply` decides
that, so a stranger who types a ticket number never lands in someone else's ticket.
`answers_mail_sent_to` is the proof a staff address needs for a public reply
(docs/mail-gateway.md). `is_forward` and `names_staff_alert` read the subject for
what a Message-ID cannot show: that a staff mail is written to colleagues.
"""

from __future__ import annotations

from collections.abc import Collection, Container, Iterable
from dataclasses import dataclass, replace

from sqlalchemy import select
from sqlalchemy.orm import Session

from helpdesk import addresses, message_ids, numbering
from helpdesk import vocabulary as v
from helpdesk.inbound import authorization
from helpdesk.inbound.parser import InboundMail
from helpdesk.message_ids import Signer
from helpdesk.models import InboundMail as InboundRecord
from helpdesk.models import OutboxMessage, Ticket
from helpdesk.outbound.compose import staff_alert_prefixes
from helpdesk.services.tickets import survivor

MAX_NAMED_NUMBERS = 10
"""How many distinct ticket numbers are read from the subject, and how many from the
plus-addresses: the first named of each. A reply names one, seldom a few; the
sender chooses how many, and each was a SELECT of its own (20,000 in one Subject
took 14 s of a gateway thread). Among those read the first named that exists wins,
as before; a number named after them matches nothing."""


@dataclass(frozen=True)
class Match:
    ticket: Ticket
    method: str  # "in-reply-to", "references", "subject" or "plus-address"
    # It answers mail that only staff received (an SLA alert): see ingest.decide.
    answers_staff_mail: bool = False


def recipients(mail: InboundMail, delivered_to: Iterable[str], support: Collection[str]) -> list[str]:
    """The support addresses the mail went to: the envelope's, then To and Cc (a
    plus-address may be in either). Only ours: a number after another mailbox's
    `+` (`bob+1@partner.example`, `orders+tkt-2@shop.example`) is theirs, not a
    ticket's (docs/mail-gateway.md)."""
    every = list(delivered_to) + [address for _, address in mail.to + mail.cc]
    return [address for address in every if addresses.is_support_address(address, support)]


@dataclass(frozen=True)
class ThreadSigns:
    """What `find_ticket` would look a mail's ticket up by, read without the
    database, so the IMAP poller can tell which mail may run beside others."""

    message_ids: frozenset[str]  # In-Reply-To and References
    numbers: frozenset[int]  # ticket numbers in the subject and in plus-addresses

    def __bool__(self) -> bool:
        return bool(self.message_ids or self.numbers)

    def may_point_into(self, uncommitted: Container[str], next_number: int) -> bool:
        """Could what the mail answers be written by mail not yet committed: by a
        mail whose Message-ID is in `uncommitted`, or as a ticket numbered
        `next_number` (`numbering.peek_next` when that mail started) or later?
        Nothing else it names can be: a Message-ID the helpdesk signs reaches
        anyone only in mail sent after its commit."""
        return any(mid in uncommitted for mid in self.message_ids) or any(
            number >= next_number for number in self.numbers
        )


def thread_signs(mail: InboundMail, recipients: Iterable[str], prefix: str) -> ThreadSigns:
    """Everything `find_ticket` looks for in the mail."""
    in_subject, in_plus_addresses = named_numbers(mail, recipients, prefix)
    return ThreadSigns(
        frozenset(mid for mid, _ in _candidate_ids(mail)), frozenset(in_subject + in_plus_addresses)
    )


def find_ticket(
    session: Session,
    mail: InboundMail,
    recipients: Iterable[str],
    prefix: str,
    signer: Signer,
) -> Match | None:
    """The ticket the mail answers — or, when that one was merged, its survivor."""
    by_id = _by_message_ids(session, mail, signer)
    if by_id is not None:
        return replace(by_id, ticket=survivor(session, by_id.ticket))
    in_subject, in_plus_addresses = named_numbers(mail, recipients, prefix)
    found = _by_numbers(session, in_subject + in_plus_addresses)
    for numbers, method in ((in_subject, "subject"), (in_plus_addresses, "plus-address")):
        for number in numbers:
            if number in found:
                return Match(survivor(session, found[number]), method)
    return None


def named_numbers(mail: InboundMail, recipients: Iterable[str], prefix: str) -> tuple[list[int], list[int]]:
    """The ticket numbers the mail names, each list in the order its numbers count:
    the subject's and the support plus-addresses', the first `MAX_NAMED_NUMBERS`
    of each."""
    return (
        numbering.find_numbers(mail.subject, prefix, limit=MAX_NAMED_NUMBERS),
        plus_address_numbers(recipients, prefix),
    )


def answers_mail_sent_to(
    session: Session, mail: InboundMail, signer: Signer, ticket: Ticket, address: str
) -> bool:
    """Does the mail answer a signed Message-ID the helpdesk sent to `address` about
    `ticket`? Only that mailbox received the id (the MAC binds it to its recipient,
    and mail to others never quotes it), so knowing it proves the sender reads it.

    Only mail that named nobody in Cc counts: the id of a copy that did (a reply
    queued before staff copies stopped naming the customers, or to an address that
    became a staff account since) reaches the people in Cc with one Reply-All, in
    its In-Reply-To (`notifications.queue_reply`).

    `address` in either spelling of an internationalised domain is that mailbox
    (`addresses.either_form`): the id was sent to the address as stored, and its
    owner's program may answer from the other (docs/mail-gateway.md, "One domain,
    two spellings"). The MAC still binds the id to that one mailbox."""
    spellings = addresses.either_form(address)
    candidates = _candidate_ids(mail)
    sent = message_ids.sent_rows(session, signer, [message_id for message_id, _ in candidates])
    for message_id, _method in candidates:
        row = sent.get(message_id)
        if (
            row is None
            or row.to_address not in spellings
            or row.cc_addresses.strip()
            or row.ticket_id is None
        ):
            continue  # an SLA digest is about no ticket
        about = session.get(Ticket, row.ticket_id)
        if about is not None and survivor(session, about).id == ticket.id:
            return True
    return False


def answered_staff_mail_of_no_ticket(
    session: Session, mail: InboundMail, signer: Signer
) -> OutboxMessage | None:
    """The mail the helpdesk sent only to staff about no single ticket (an SLA
    digest) that this mail answers by In-Reply-To or References, or None. Such a
    reply has no ticket to go to, and is no customer's request either
    (docs/mail-gateway.md, "Answering staff mail about no ticket"). Only a genuinely
    signed id counts (`message_ids.sent_rows`), which only that mail's reader knows."""
    candidates = _candidate_ids(mail)
    sent = message_ids.sent_rows(session, signer, [message_id for message_id, _ in candidates])
    for message_id, _method in candidates:
        row = sent.get(message_id)
        if row is not None and row.ticket_id is None and row.kind in v.STAFF_NOTIFICATION_KINDS:
            return row
    return None


# What mail clients put before a forwarded mail's subject: Thunderbird, Gmail and
# Apple Mail write "Fwd:" in every language; Outlook "FW:", and in Spanish "RV:",
# French "TR:", German "WG:", Portuguese "ENC:", Italian "I:", Dutch "Doorst:",
# Swedish "VB:", Finnish "VL:", Polish "PD:". Casefolded, without the colon.
FORWARD_MARKERS = frozenset({"fwd", "fw", "rv", "tr", "wg", "enc", "i", "doorst", "vb", "vl", "pd"})
_LONGEST_MARKER = max(len(marker) for marker in FORWARD_MARKERS)
_LONGEST_NUMBER = 18  # digits of a ticket number, as numbering reads them


def is_forward(subject: str) -> bool:
    """Does the subject start with a forward marker (`FORWARD_MARKERS`)? Only the
    first marker counts, the last thing its author did: "Fwd: Re: …" forwards a
    reply, "Re: Fwd: …" answers a forward. Reads a few characters, whatever the
    subject's length."""
    head, colon, _ = subject.lstrip()[: _LONGEST_MARKER + 1].partition(":")
    return bool(colon) and head.strip().casefold() in FORWARD_MARKERS


def names_staff_alert(subject: str, prefix: str) -> bool:
    """Does the subject carry an alert's, right after one of our ticket references
    (`[TKT-000001] SLA breach: …`, in any language the helpdesk writes,
    `compose.staff_alert_prefixes`)? How a forward of an alert, or an answer whose
    client dropped In-Reply-To, still shows it was mail only staff received. Only
    after our own reference: a customer's subject "[Case 42] Escalated: …" is no
    alert. Substring search over the subject with its blanks collapsed, each hit
    looking back a bounded stretch: linear, no pattern."""
    folded = " ".join(subject.split()).casefold()
    reference = f"[{prefix.casefold()}"
    reach = len(reference) + _LONGEST_NUMBER + 1
    for alert in staff_alert_prefixes():
        marker = f"] {alert}"
        at = folded.find(marker)
        while at != -1:
            opened = folded.rfind("[", max(0, at - reach), at)
            if opened != -1 and folded.startswith(reference, opened):
                digits = folded[opened + len(reference) : at]
                if digits.isdigit() and digits.isascii():
                    return True
            at = folded.find(marker, at + 1)
    return False


def plus_address_numbers(recipients: Iterable[str], prefix: str) -> list[int]:
    """The numbers in the plus-addresses of `recipients`, in order, each once: the
    first `MAX_NAMED_NUMBERS` (To and Cc can hold some 800 addresses)."""
    found: dict[int, None] = {}
    for address in recipients:
        if len(found) >= MAX_NAMED_NUMBERS:
            break
        plus = addresses.detail(address)
        number = numbering.parse_number(plus, prefix) if plus is not None else None
        if number is not None:
            found[number] = None
    return list(found)


def _candidate_ids(mail: InboundMail) -> list[tuple[str, str]]:
    """The Message-IDs it answers, with how it names them, in the order they count."""
    candidates = [(mid, "in-reply-to") for mid in mail.in_reply_to]
    candidates += [(mid, "references") for mid in reversed(mail.references)]
    return [(mid, method) for mid, method in candidates if mid and mid != mail.message_id]


def received_ids(mail: InboundMail, signer: Signer) -> list[str]:
    """The Message-IDs it answers that are not the helpdesk's own, in the order they
    count: those of mail received, at most the parser's MAX_THREAD_IDS of each header."""
    return [mid for mid, _ in _candidate_ids(mail) if not signer.is_ours(mid)]


def _by_message_ids(session: Session, mail: InboundMail, signer: Signer) -> Match | None:
    candidates = _candidate_ids(mail)
    if not candidates:
        return None
    known: dict[str, list[int]] = {}
    received = received_ids(mail, signer)
    if received:
        for message_id, ticket_id in session.execute(
            select(InboundRecord.message_id, InboundRecord.ticket_id)
            .where(InboundRecord.message_id.in_(received), InboundRecord.ticket_id.is_not(None))
            .order_by(InboundRecord.id)
        ):
            if message_id is not None and ticket_id is not None:  # the query says so
                tickets = known.setdefault(message_id, [])
                if ticket_id not in tickets:
                    tickets.append(ticket_id)
    sent = message_ids.sent_rows(session, signer, [message_id for message_id, _ in candidates])
    for message_id, method in candidates:
        staff_mail = False
        if signer.is_ours(message_id):
            # Ours only when genuinely signed: a forged id threads nowhere.
            row = sent.get(message_id)
            ticket_id = row.ticket_id if row is not None else None
            staff_mail = row is not None and row.kind in v.STAFF_NOTIFICATION_KINDS
        else:
            ticket_id = _shared_by(session, mail, known.get(message_id, []))
        ticket = session.get(Ticket, ticket_id) if ticket_id is not None else None
        if ticket is not None:
            return Match(ticket, method, answers_staff_mail=staff_mail)
    return None


def _shared_by(session: Session, mail: InboundMail, tickets: list[int]) -> int | None:
    """Of the tickets of the mails received under one Message-ID, in the order
    received, the one a reply naming it goes to. Two mails may share an id
    (docs/mail-gateway.md, "Duplicates"), the first received being a stranger's who
    used it first by construction: the first ticket its sender belongs on
    (`authorization.may_reply`), else the first received. Only a shared id pays."""
    if len(tickets) < 2 or not mail.from_address:
        return tickets[0] if tickets else None
    for ticket_id in tickets:
        ticket = session.get(Ticket, ticket_id)
        if ticket is not None and authorization.may_reply(
            session, survivor(session, ticket), mail.from_address
        ):
            return ticket_id
    return tickets[0]


def _by_numbers(session: Session, numbers: Collection[int]) -> dict[int, Ticket]:
    """The tickets of those `numbers` that exist, by number: one statement, none
    when there are no numbers."""
    if not numbers:
        return {}
    tickets = session.execute(select(Ticket).where(Ticket.number.in_(sorted(set(numbers))))).scalars()
    return {ticket.number: ticket for ticket in tickets}
