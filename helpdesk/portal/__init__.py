"""The staff portal blueprint: server-rendered pages, one small stylesheet, no
JavaScript needed. Views are thin: read the form, call a service, commit, redirect.

Every page is read in the staff member's language and time zone (their account
page's choice; unset: the browser's language and BUSINESS_TIMEZONE), set before
each view runs (docs/languages.md)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Flask, abort, g

from helpdesk import languages, security, wording
from helpdesk.html import sanitized

bp = Blueprint("portal", __name__, template_folder="templates")

# The vocabularies templates show by their labels: `{{ t.status|label_of('status') }}`.
LABEL_TABLES = {
    "status": languages.STAFF_STATUS_LABELS,
    "priority": languages.PRIORITY_LABELS,
    "category": languages.CATEGORY_LABELS,
    "ticket_type": languages.TICKET_TYPE_LABELS,
    "channel": languages.CHANNEL_LABELS,
    "source": languages.SOURCE_LABELS,
    "sla": languages.SLA_STATE_LABELS,
    "service": languages.SERVICE_LABELS,
    "role": languages.ROLE_LABELS,
    "integration": languages.INTEGRATION_KIND_LABELS,
    "outcome": languages.INBOUND_OUTCOME_LABELS,
    "outbox": languages.OUTBOX_STATE_LABELS,
    "quarantine": languages.QUARANTINE_STATE_LABELS,
    "history": languages.HISTORY_FIELD_LABELS,
    "sender_source": languages.SENDER_SOURCE_LABELS,
}


@bp.before_request
def _own_pages_only() -> None:
    """403 for a request another site's page made in the background (an `<img>`, a
    frame, a `fetch`), before any view runs: a sibling host's picture of
    `/tickets/TKT-000001` moved that ticket from new to open in the name of whoever
    looked at the picture (`security.sent_by_another_site`). Links followed from
    anywhere still open their page."""
    if security.sent_by_another_site():
        abort(403)


@bp.before_request
def _reader() -> None:
    """The logged-in staff member's language and zone, before any portal view."""
    from helpdesk.portal.session import current_staff

    user = current_staff()
    if user is not None:
        languages.use(user.language, user.timezone)


def init_app(app: Flask) -> None:
    from helpdesk.portal import (  # noqa: F401  (each registers its routes)
        account,
        admin,
        canned,
        dashboard,
        live,
        quarantine,
        ticket_relations,
        tickets,
    )
    from helpdesk.portal.session import current_staff

    app.register_blueprint(bp)
    app.add_template_filter(sanitized, "sanitize")
    app.add_template_filter(wording.said, "said")
    app.add_template_filter(wording.history_value, "history_value")
    app.add_template_global(wording.field_name, "field_name")

    @app.template_filter("label_of")
    def label_of(code: str | None, vocabulary: str) -> str:
        return wording.vocabulary_label(LABEL_TABLES[vocabulary], code)

    @app.context_processor
    def _staff() -> dict[str, Any]:
        # None on the page for a database that cannot be reached (helpdesk.http_errors).
        return {"staff": None if g.get("database_unavailable") else current_staff()}
