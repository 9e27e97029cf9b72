"""Customer satisfaction ratings (docs/integrations.md, "Satisfaction").

A customer rates a ticket once it is resolved: 1 to 5 and an optional comment,
from the link in the resolution mail or through an assistant's `rate_ticket`. One
rating per ticket; rating again changes it, until the ticket is closed. A closed
ticket nobody rated still takes a first rating (customers read their mail late,
and auto-close does not wait for them), but never a changed one: a closed ticket's
rating is what the statistics counted.

The rating remembers the ticket's assignee at that moment, so statistics credit
the agent who resolved it even if the ticket is reassigned afterwards.

It also remembers who rated: the requester, or the CC participant whose link (or
assistant conversation) it came from. Only they see its score and comment again;
everyone else who reads the ticket learns only that it was rated. The requester's
rating counts: theirs replaces a participant's, while a participant changes only
their own and never replaces someone else's (docs/integrations.md, "Satisfaction").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from helpdesk import addresses
from helpdesk import vocabulary as v
from helpdesk.clock import now
from helpdesk.errors import Conflict, ValidationError
from helpdesk.inputs import plain_lines, typed_text, unstorable
from helpdesk.languages import N_
from helpdesk.models import SatisfactionRating, StaffUser, Ticket
from helpdesk.services.tickets import lock_for_change

RATINGS = (1, 2, 3, 4, 5)
MAX_COMMENT = 2000
# Why a rating is refused; English for the API, marked for the tracker and the
# assistant, which show them in the customer's language.
CLOSED_AND_RATED = N_("This ticket is closed; its rating can no longer be changed.")
NOT_RESOLVED = N_("A ticket can be rated once it is resolved.")
RATED_BY_SOMEONE_ELSE = N_("Someone else on this ticket has rated it; their rating stands.")


@dataclass(frozen=True)
class Summary:
    """Average and count of ratings, overall or for one agent."""

    count: int
    average: float | None


def rating_of(session: Session, ticket: Ticket) -> SatisfactionRating | None:
    return session.execute(
        select(SatisfactionRating).where(SatisfactionRating.ticket_id == ticket.id)
    ).scalar_one_or_none()


def participant_of(ticket: Ticket, by: str) -> str | None:
    """What `SatisfactionRating.participant_email` records for a rating by `by`: the
    address of a CC participant, None for the requester, whose address counts in
    either spelling of an internationalised domain (`addresses.either_form`; docs/
    integrations.md, "Satisfaction")."""
    address = addresses.normalize(by)
    return None if address in addresses.either_form(addresses.normalize(ticket.requester.email)) else address


def is_theirs(ticket: Ticket, existing: SatisfactionRating | None, by: str) -> bool:
    """Whether `existing` is the rating `by` gave (a rating from before raters were
    recorded is the requester's), in either spelling of the rater's domain: the
    assistant names a participant as their contact is stored, their rating link as
    the ticket's CC is, and compared as written the one refused the other's change."""
    if existing is None:
        return False
    rater = participant_of(ticket, by)
    if rater is None or existing.participant_email is None:
        return existing.participant_email == rater
    return existing.participant_email in addresses.either_form(rater)


def may_rate(ticket: Ticket, existing: SatisfactionRating | None, by: str) -> bool:
    """Whether `by` (the requester or a CC participant) can give a rating, or change
    the one there is, now; see the module's rule. A merged ticket was closed by the
    merge, never resolved: its survivor is rated."""
    if ticket.merged_into_id is not None:
        return False
    someone_elses = existing is not None and not is_theirs(ticket, existing, by)
    if someone_elses and participant_of(ticket, by) is not None:
        return False
    if ticket.status == "resolved":
        return True
    return ticket.status == "closed" and existing is None


def rate(
    session: Session, ticket: Ticket, rating: object, comment: object, via: str, *, by: str
) -> SatisfactionRating:
    """Store `by`'s rating of `ticket`, or change the one there is.

    `by` is the address the rating comes from: the requester's or a CC
    participant's (the rating link's recipient, the assistant's customer); the
    caller has proved it may read the ticket. Raises ValidationError for a rating
    outside 1-5 or an unusable comment, and Conflict when the ticket cannot be rated
    (not resolved; closed and rated; rated by someone else who is not `by`'s to
    replace).
    """
    if not isinstance(rating, int) or isinstance(rating, bool) or rating not in RATINGS:
        raise ValidationError({"rating": "must be a whole number from 1 to 5"})
    if isinstance(comment, str):
        comment = typed_text(comment)  # counted as its textarea counts it (docs/integrations.md)
    if not isinstance(comment, str) or len(comment) > MAX_COMMENT or unstorable(comment):
        raise ValidationError({"comment": f"must be text of at most {MAX_COMMENT} characters"})
    if via not in v.RATING_CHANNELS:
        raise ValueError(f"unknown rating channel {via!r}")
    # Two clicks at once on PostgreSQL: the second waits here and then changes the
    # first one's row instead of failing on the unique ticket id. The ticket is
    # reloaded too, so a reopening or closing committed meanwhile is judged here.
    lock_for_change(session, ticket)
    existing = rating_of(session, ticket)
    if not may_rate(ticket, existing, by):
        if ticket.status == "closed" and existing is not None:
            raise Conflict(CLOSED_AND_RATED)
        if existing is not None and not is_theirs(ticket, existing, by):
            raise Conflict(RATED_BY_SOMEONE_ELSE)
        raise Conflict(NOT_RESOLVED)
    moment = now()
    if existing is None:
        existing = SatisfactionRating(ticket_id=ticket.id, created_at=moment)
        session.add(existing)
    existing.rating = rating
    # Hidden text goes, as from a description or a message, and so do control
    # characters but tab and line feed (docs/security.md, "Hidden text").
    existing.comment = plain_lines(comment).strip()
    existing.via = via
    existing.participant_email = participant_of(ticket, by)
    existing.agent_id = ticket.assignee_id
    existing.updated_at = moment
    # The ticket's page and the API show the rating: the ticket changed, for the live
    # poll, the queue's "Recently updated" and whoever syncs by it (docs/lifecycle.md).
    ticket.updated_at = moment
    session.flush()
    return existing


def summary(session: Session, scope: Any) -> Summary:
    """Rating count and average over the tickets `scope` (a condition on tickets) keeps."""
    count, average = session.execute(
        select(func.count(SatisfactionRating.id), func.avg(SatisfactionRating.rating))
        .join(Ticket, Ticket.id == SatisfactionRating.ticket_id)
        .where(scope)
    ).one()
    return Summary(count, _rounded(average))


def per_agent(session: Session, scope: Any) -> dict[int, Summary]:
    """Rating count and average by the staff id the ratings credit."""
    rows = session.execute(
        select(
            SatisfactionRating.agent_id,
            func.count(SatisfactionRating.id),
            func.avg(SatisfactionRating.rating),
        )
        .join(StaffUser, StaffUser.id == SatisfactionRating.agent_id)
        .join(Ticket, Ticket.id == SatisfactionRating.ticket_id)
        .where(scope)
        .group_by(SatisfactionRating.agent_id)
    ).all()
    return {agent_id: Summary(count, _rounded(average)) for agent_id, count, average in rows}


def _rounded(average: Any) -> float | None:
    return None if average is None else round(float(average), 2)
