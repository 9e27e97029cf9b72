"""The queue, the ticket page and its controls, the new-ticket form, attachments."""

from __future__ import annotations

import logging
import unicodedata
from typing import Any
from urllib.parse import quote

from babel.units import format_unit
from flask import abort, current_app, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext
from sqlalchemy import select
from sqlalchemy.exc import DBAPIError
from werkzeug.http import dump_options_header

from config import LANGUAGES
from helpdesk import html, languages, lifecycle, sla
from helpdesk import vocabulary as v
from helpdesk.clock import now
from helpdesk.database import OutcomeUnknown, commit_or_found, commit_or_unknown
from helpdesk.errors import DomainError, NotFound, ValidationError
from helpdesk.extensions import db
from helpdesk.inbound.limits import MailLimits
from helpdesk.inputs import page_number, positive_int, unstorable
from helpdesk.languages import N_
from helpdesk.models import Attachment, StaffUser, Ticket
from helpdesk.numbering import display_number
from helpdesk.portal import bp
from helpdesk.portal.actions import form_assignee, perform, refused
from helpdesk.portal.canned import reply_box
from helpdesk.portal.session import actor, login_required
from helpdesk.services import (
    QueueService,
    TicketFilters,
    TicketsService,
    contacts,
    history_list,
    links,
    tags,
    thread,
    uploads,
    visibility,
)
from helpdesk.services.chat import share_text
from helpdesk.services.queue import CHOICE_FILTERS, MAX_SEARCH_CHARS, Page
from helpdesk.services.teams import TeamsService
from helpdesk.services.tickets import kept_message, kept_ticket
from helpdesk.wording import error_text, vocabulary_label

log = logging.getLogger("helpdesk.portal")

SORTS = {
    "-updated_at": N_("Recently updated"),
    "-created_at": N_("Newest"),
    "created_at": N_("Oldest"),
    "-priority": N_("Priority"),
    "-number": N_("Number (high → low)"),
    "subject": N_("Subject"),
}


def _service() -> TicketsService:
    return TicketsService.from_config(db.session, current_app.config)


def _number(ticket: Ticket) -> str:
    return display_number(ticket.number, current_app.config)


def _active_staff() -> list[StaffUser]:
    return list(
        db.session.execute(
            select(StaffUser).where(StaffUser.is_active.is_(True)).order_by(StaffUser.name)
        ).scalars()
    )


def _ticket_or_404(number: str) -> Ticket:
    try:
        return _service().get(number, viewer=actor())
    except NotFound:
        abort(404)


@bp.app_template_filter("ticket_number")
def ticket_number_filter(ticket: Ticket) -> str:
    return _number(ticket)


@bp.app_template_filter("sla_state")
def sla_state_filter(ticket: Ticket) -> str:
    return sla.state(ticket, now())


@bp.app_template_filter("words")
def words_filter(value: str) -> str:
    return (value or "").replace("_", " ")


FILE_SIZES = (("digital-gigabyte", 10**9), ("digital-megabyte", 10**6), ("digital-kilobyte", 10**3))


@bp.app_template_filter("file_size")
def file_size_filter(size: int) -> str:
    """1_500_000 → "1.5 MB" ("1,5 MB"); under a kilobyte, "512 bytes"."""
    language = languages.current_language()
    for unit, scale in FILE_SIZES:
        if size >= scale:
            return format_unit(size / scale, unit, length="short", format="#,##0.#", locale=language)
    return format_unit(size, "digital-byte", length="long", locale=language)


QUEUE_PARAMETERS = (*CHOICE_FILTERS, "assignee", "team", "tag", "q", "sla", "sort")


@bp.get("/tickets")
@login_required()
def queue() -> ResponseReturnValue:
    args = request.args
    assignee: Any = args.get("assignee") or None
    if assignee == "mine":
        assignee = actor().staff_id
    picked: dict[str, Any] = {
        name: [value for value in (v.unalias(name, each) for each in args.getlist(name)) if value in allowed]
        for name, allowed in CHOICE_FILTERS.items()
    }
    sort = args.get("sort") or ""
    sort = sort if sort in SORTS else "-updated_at"
    team_list = TeamsService(db.session).teams()
    team = args.get("team") or None
    filters = TicketFilters(
        **picked,
        assignee=assignee if assignee in (None, "none") else positive_int(assignee),
        team=team if team in {"none", *(t.name for t in team_list)} else None,
        tag=_typed(args.get("tag"), tags.MAX_TAG),
        q=_typed(args.get("q"), MAX_SEARCH_CHARS),
        sla=args.get("sla") if args.get("sla") in sla.STATES else None,
    )
    result = QueueService.from_config(db.session, current_app.config).list_tickets(
        filters, page=page_number(args.get("page")), per_page=25, sort=sort, viewer=actor()
    )
    return render_template(
        "portal/queue.html",
        nav="queue",
        page=result,
        filters=filters,
        picked=picked,
        assignee_choice=args.get("assignee", ""),
        sort=sort,
        sorts=SORTS,
        staff_list=_active_staff(),
        team_list=team_list,
        vocabulary=v,
        sla_states=sla.STATES,
        # The pager's links keep the filters, and only them: url_for reads `_anchor`,
        # `_external`, `_scheme` and `_method` as its own arguments.
        query={name: args.getlist(name) for name in QUEUE_PARAMETERS if name in args},
    )


@bp.route("/tickets/new", methods=["GET", "POST"])
@login_required()
def new_ticket() -> ResponseReturnValue:
    errors: dict[str, str] = {}
    status = 200
    form = request.form
    if request.method == "POST":
        assignee = form.get("assignee", "")
        try:
            ticket = _service().open_ticket(
                subject=form.get("subject", ""),
                description=form.get("description", ""),
                requester_email=form.get("requester_email", ""),
                requester_name=form.get("requester_name", ""),
                priority=form.get("priority") or None,
                category=form.get("category") or None,
                assignee_id=form_assignee(assignee),
                channel="web",
                actor=actor(),
                **_service_fields(form),
                team=form.get("team") or None,
            )
            commit_or_found(db.session, kept_ticket(ticket.id, ticket.number))  # docs/web.md
        except ValidationError as exc:
            db.session.rollback()
            errors = exc.fields
            status = 422
        except DBAPIError as exc:
            status = refused(exc)  # too large, 422, or the database failing now, 503
        else:
            flash(gettext("Opened %(number)s.", number=_number(ticket)))
            return redirect(_page_or_queue(ticket))
    return render_template(
        "portal/new_ticket.html",
        nav="new",
        errors=errors,
        form=form,
        vocabulary=v,
        staff_list=_active_staff(),
        team_list=TeamsService(db.session).teams(),
    ), status


@bp.get("/tickets/<number>")
@login_required()
def ticket(number: str) -> ResponseReturnValue:
    record = _ticket_or_404(number)
    box = reply_box(record)  # `?canned=<id>`: that canned reply, filled in
    try:
        viewed = _service().mark_viewed(record, actor=actor())  # new → open (docs/lifecycle.md)
    except NotFound:  # out of their sight since it was read: as if it did not exist
        abort(404)
    if viewed:
        try:
            commit_or_unknown(db.session)
        except OutcomeUnknown as exc:
            # Nobody asked for the move, and a reload is harmless (it moves a ticket
            # still new): the page is shown as the database has it, read again, with
            # the outage page only if that read fails too (docs/web.md, "A lost answer").
            log.warning("the answer to the COMMIT of a ticket's move to open was lost: %s", exc.__cause__)
            flash(
                gettext(
                    "The connection to the database broke as opening this ticket moved it from new to "
                    "open: it may or may not have moved. Reload the page to see; a reload moves it if it "
                    "has not."
                ),
                "error",
            )
    return _ticket_page(record, box)


def _ticket_page(record: Ticket, box: dict[str, Any]) -> str:
    """The ticket page, with the reply box's canned replies and text (`reply_box`):
    the first message and the newest ones, or with `?before=<message id>` those
    older than that one (`thread.page`)."""
    return render_template(
        "portal/ticket.html",
        nav="queue",
        ticket=record,
        thread=thread.page(db.session, record, before=positive_int(request.args.get("before"))),
        allowed=lifecycle.allowed_targets(record.status),
        vocabulary=v,
        staff_list=_active_staff(),
        team_list=TeamsService(db.session).teams(),
        sla_state=sla.state(record, now()),
        share_text=share_text(record, current_app.config),
        share_language=languages.of_contact(record.requester, current_app.config),
        customer_language=record.language or languages.of_contact(record.requester, current_app.config),
        languages=LANGUAGES,
        related=links.related_page(db.session, record, actor(), current_app.config["AGENT_VISIBILITY"]),
        history=history_list.newest(db.session, record.id),
        undeliverable=contacts.undeliverable_marks(db.session, _people(record)),
        **box,
    )


# Related tickets and history rows on one page of their own (`ticket_part`).
PART_PAGE_SIZE = 100


@bp.get("/tickets/<number>/history")
@login_required()
def ticket_history(number: str) -> ResponseReturnValue:
    """Every history row of the ticket, newest first, a page at a time: its page shows
    the newest `history_list.SHOWN`."""
    record = _ticket_or_404(number)
    rows = history_list.newest(
        db.session, record.id, page=page_number(request.args.get("page")), per_page=PART_PAGE_SIZE
    )
    return ticket_part(record, gettext("History"), "portal.ticket_history", rows)


def ticket_part(record: Ticket, heading: str, endpoint: str, rows: Page[Any]) -> str:
    """One page of a list the ticket page shows bounded (its history, its related tickets)."""
    return render_template(
        "portal/ticket_list_part.html",
        nav="queue",
        ticket=record,
        heading=heading,
        endpoint=endpoint,
        page=rows,
    )


@bp.post("/tickets/<number>/reply")
@login_required()
def reply(number: str) -> ResponseReturnValue:
    """A public reply or a note, with the files attached (helpdesk.services.uploads).
    Refused, the page comes back with the text as typed; files are picked again."""
    record = _ticket_or_404(number)
    internal = request.form.get("kind") == "note"
    body = request.form.get("body", "")
    try:
        files = uploads.attachments(
            request.files.getlist(uploads.FIELD), MailLimits.from_config(current_app.config)
        )
        message = _service().add_message(
            record, body=body, actor=actor(), channel="web", internal=internal, attachments=files
        )
        commit_or_found(db.session, kept_message(message))  # a lost commit answer (docs/web.md)
    except NotFound as exc:
        # Out of their sight since it was read: not shown again here, but back to its
        # page, which answers 404, as `perform` does for the ticket's other forms
        # (docs/isp-operations.md, "Visibility").
        db.session.rollback()
        flash(error_text(exc), "error")
        return redirect(_page(record))
    except DomainError as exc:
        db.session.rollback()
        flash(error_text(exc), "error")
        return _ticket_page(record, reply_box(record, body)), 422
    except DBAPIError as exc:  # too large, 422; the database failing now, 503: typed text kept
        status = refused(exc)
        return _ticket_page(record, reply_box(record, body)), status
    flash(gettext("Note added.") if internal else gettext("Reply sent."))
    return redirect(_page(record))


@bp.post("/tickets/<number>/status")
@login_required()
def change_status(number: str) -> ResponseReturnValue:
    record = _ticket_or_404(number)
    target = request.form.get("status", "")

    def move() -> str:
        _service().change_status(record, target, actor=actor(), reason=request.form.get("reason", "")[:2000])
        status = vocabulary_label(languages.STAFF_STATUS_LABELS, target).lower()
        return gettext("Status is now %(status)s.", status=status)

    return perform(move, _page(record))


@bp.post("/tickets/<number>/escalate")
@login_required()
def escalate(number: str) -> ResponseReturnValue:
    record = _ticket_or_404(number)
    form = request.form
    level = form.get("level", "")

    def raise_level() -> str:
        assignee: int | None | str = form_assignee(form.get("assignee", "")) or "unchanged"
        _service().escalate(record, level, actor=actor(), reason=form.get("reason", ""), assignee_id=assignee)
        return gettext("Escalated to %(level)s.", level=level)

    return perform(raise_level, _page(record), onward=lambda: _page_or_queue(record))


@bp.post("/tickets/<number>/language")
@login_required()
def set_language(number: str) -> ResponseReturnValue:
    """The customer's language, set by staff (TicketsService.set_language)."""
    record = _ticket_or_404(number)
    language = request.form.get("language", "")[:20]

    def save() -> str:
        _service().set_language(record, language, actor=actor())
        return gettext(
            "The customer's language is now %(language)s.", language=languages.LANGUAGE_NAMES[language]
        )

    return perform(save, _page(record))


@bp.post("/tickets/<number>/deliverable")
@login_required("admin")
def mark_deliverable(number: str) -> ResponseReturnValue:
    """An admin told that mail to one of this ticket's people works again (a full
    mailbox emptied, a typo fixed) clears the mark a bounce set, as `flask addresses
    deliverable` does (`contacts.clear_undeliverable`); before, only the command line
    could (docs/outbound-mail.md, "Loop rules"). Only an address the ticket shows,
    and only with the box ticked that confirms it."""
    record = _ticket_or_404(number)
    address = request.form.get("address", "")
    if address not in _people(record):
        flash(gettext("That address is not on this ticket."), "error")
        return redirect(_page(record))
    if request.form.get("confirm") != "yes":
        flash(gettext("Tick the box to confirm that mail to %(email)s works again.", email=address), "error")
        return redirect(_page(record))

    def clear() -> str:
        if contacts.clear_undeliverable_on(db.session, record.id, address, actor()):
            return gettext("Mail to %(email)s goes again from now on.", email=address)
        return gettext("%(email)s was not marked undeliverable.", email=address)

    return perform(clear, _page(record))


def _people(record: Ticket) -> list[str]:
    """Whom the ticket's notifications go to: its requester and CC participants."""
    return [record.requester.email, *(participant.email for participant in record.participants)]


@bp.post("/tickets/<number>/update")
@login_required()
def update(number: str) -> ResponseReturnValue:
    record = _ticket_or_404(number)
    form = request.form
    changes: dict[str, Any] = {
        "priority": form.get("priority") or None,
        "category": form.get("category") or None,
    }
    if "ticket_type" in form:
        changes.update(_service_fields(form))
    if "team" in form:
        changes["team"] = form.get("team", "")

    def save() -> str:
        if "assignee" in form:
            changes["assignee_id"] = form_assignee(form.get("assignee", ""))
        _service().update(record, actor=actor(), **changes)
        return gettext("Saved.")

    return perform(save, _page(record), onward=lambda: _page_or_queue(record))


def _service_fields(form: Any) -> dict[str, Any]:
    """The service fields of a ticket form: services are checkboxes, serials a
    textarea with one per line (helpdesk.service_fields reads both)."""
    return {
        "ticket_type": form.get("ticket_type") or None,
        "service_address": form.get("service_address", ""),
        "affected_services": form.getlist("affected_services"),
        "device_serials": form.get("device_serials", ""),
    }


def _page(record: Ticket) -> str:
    return url_for("portal.ticket", number=_number(record))


def _page_or_queue(record: Ticket) -> str:
    """Where a kept change of the ticket goes: its page while the staff member may
    still see it, else the queue, saying why. Their own change can take it out of
    their sight (`AGENT_VISIBILITY`): moved to a team they do not see, handed to a
    colleague under `own`, a new ticket the routing sends to such a team; its page
    answered 404 then, as for a number that does not exist (docs/isp-operations.md)."""
    if visibility.may_see(db.session, actor(), current_app.config["AGENT_VISIBILITY"], record.id):
        return _page(record)
    flash(
        gettext(
            "%(number)s is not among the tickets you may see, so here is the queue.", number=_number(record)
        )
    )
    return url_for("portal.queue")


@bp.get("/tickets/<number>/messages/<int(max=2147483647):message_id>/<any(text, html):part>")
@login_required()
def message_part(number: str, message_id: int, part: str) -> ResponseReturnValue:
    """A message's whole text or HTML as a download: the ticket page shows each cut
    (`thread.CHARS_SHOWN`). Only a message of a ticket the staff member may see, as
    its page; the HTML sanitized again as the page shows it, and never rendered here."""
    found = thread.message(db.session, _ticket_or_404(number), message_id)
    if found is None:
        abort(404)
    if part == "text":
        response = current_app.response_class(found.body, mimetype="text/plain")
    elif found.body_html:
        response = current_app.response_class(
            html.clean(found.body_html), mimetype="application/octet-stream"
        )
    else:
        abort(404)
    response.headers["Content-Disposition"] = _disposition(
        f"message-{message_id}.{'txt' if part == 'text' else 'html'}"
    )
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Cache-Control"] = "private, no-store"
    return response


@bp.get("/attachments/<int(max=2147483647):attachment_id>")
@login_required()
def attachment(attachment_id: int) -> ResponseReturnValue:
    """Always a download, never rendered: mail attachments are untrusted content."""
    item = db.session.get(Attachment, attachment_id)
    if item is None or not visibility.may_see(
        db.session, actor(), current_app.config["AGENT_VISIBILITY"], item.message.ticket_id
    ):
        abort(404)
    response = current_app.response_class(item.data, mimetype="application/octet-stream")
    response.headers["Content-Disposition"] = _disposition(item.filename)
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Cache-Control"] = "private, no-store"
    return response


def _disposition(name: str) -> str:
    """`attachment` naming the file as RFC 6266 asks: a name outside ASCII in
    `filename*` (UTF-8, percent-encoded) beside an ASCII `filename` for old
    clients. Written raw, a name outside Latin-1 made gunicorn answer 500, and a
    Latin-1 one was saved under the attachment's id (docs/web.md)."""
    if name.isascii():
        return dump_options_header("attachment", {"filename": name})
    fallback = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    stem, dot, extension = fallback.rpartition(".")
    if not any(character.isalnum() for character in (stem if dot else fallback)):
        # '請求書.pdf' kept only '.pdf', a hidden file's name to a client without filename*
        fallback = "attachment" + (dot + extension if dot else "")
    return dump_options_header(
        "attachment", {"filename": fallback, "filename*": "UTF-8''" + quote(name, safe="")}
    )


def _typed(value: str | None, limit: int) -> str | None:
    """A search or tag filter as typed, cut at `limit`; None for none, or for text no
    database stores (a NUL in the query string was a 500 on PostgreSQL)."""
    text = (value or "").strip()[:limit]
    return text if text and not unstorable(text) else None
