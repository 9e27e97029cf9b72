"""The ticket page's tags, related tickets and merge forms (docs/isp-operations.md).
Thin like the other ticket views; the other ticket of a link or a merge is looked
up as the staff member sees tickets, so a hidden one is not found either."""

from __future__ import annotations

from flask import current_app, request
from flask.typing import ResponseReturnValue
from flask_babel import gettext, ngettext

from helpdesk import languages
from helpdesk import vocabulary as v
from helpdesk.errors import Conflict
from helpdesk.extensions import db
from helpdesk.inputs import page_number
from helpdesk.models import Ticket
from helpdesk.portal import bp
from helpdesk.portal.actions import form_assignee, perform
from helpdesk.portal.session import actor, login_required, safe_next
from helpdesk.portal.tickets import PART_PAGE_SIZE, _page, _service, _ticket_or_404, ticket_part
from helpdesk.services import bulk, links, tags
from helpdesk.wording import refusal


def _other(number: str) -> Ticket:
    """The other ticket named in a form; NotFound (shown as a message) if it is not one."""
    return _service().get(number.strip()[:64], viewer=actor())


@bp.post("/tickets/<number>/tags")
@login_required()
def set_tags(number: str) -> ResponseReturnValue:
    record = _ticket_or_404(number)

    def save() -> str:
        tags.set_tags(_service(), record, request.form.get("tags", ""), actor())
        return gettext("Tags saved.")

    return perform(save, _page(record))


@bp.post("/tickets/<number>/links")
@login_required()
def link(number: str) -> ResponseReturnValue:
    record = _ticket_or_404(number)
    form = request.form

    def change() -> str:
        other = _other(form.get("ticket", ""))
        if form.get("action") == "remove":
            if not links.unlink(db.session, record, other, actor(), current_app.config):
                return gettext("These tickets were not linked.")
            return gettext("Link removed.")
        links.link(db.session, record, other, actor(), current_app.config)
        return gettext("Linked.")

    return perform(change, _page(record))


@bp.get("/tickets/<number>/related")
@login_required()
def related_tickets(number: str) -> ResponseReturnValue:
    """Every related ticket the staff member may see, newest first, a page at a time:
    the ticket page shows the newest `links.SHOWN`."""
    record = _ticket_or_404(number)
    related = links.related_page(
        db.session,
        record,
        actor(),
        current_app.config["AGENT_VISIBILITY"],
        page=page_number(request.args.get("page")),
        per_page=PART_PAGE_SIZE,
    )
    return ticket_part(record, gettext("Related tickets"), "portal.related_tickets", related)


@bp.post("/tickets/bulk")
@login_required()
def bulk_action() -> ResponseReturnValue:
    """The queue's bulk form; back to the queue as it was, with what was refused."""
    form = request.form
    back = safe_next(form.get("back"))
    action = form.get("action", "")

    def apply() -> str:
        result = bulk.apply(
            db.session,
            _service(),
            form.getlist("tickets"),
            action,
            actor(),
            assignee_id=form_assignee(form.get("assignee", "")),
            status=form.get("status"),
            reason=v.BULK_FORM_REASON,
            tag_names=form.get("tags", ""),
        )
        if result.refused and not result.done:
            raise Conflict(_summary(result))
        return _summary(result)

    return perform(apply, back)


def _summary(result: bulk.BulkResult) -> str:
    """BulkResult.summary in the reader's language: what changed, what was refused and why."""
    done = len(result.done)
    text = ngettext(
        "%(count)s ticket changed.", "%(count)s tickets changed.", done, count=languages.number(done)
    )
    if result.refused:
        refused = "; ".join(f"{number}: {refusal(why)}" for number, why in result.refused)
        text += " " + gettext("Refused: %(tickets)s", tickets=refused)
    return text


@bp.post("/tickets/<number>/merge")
@login_required()
def merge(number: str) -> ResponseReturnValue:
    """Back to the merged ticket's page, which now points at the survivor."""
    record = _ticket_or_404(number)
    form = request.form

    def merge_it() -> str:
        survivor = _service().merge(
            record, _other(form.get("into", "")), actor=actor(), reason=form.get("reason", "")
        )
        return gettext("Merged into %(number)s.", number=_service().display_number(survivor))

    return perform(merge_it, _page(record))
