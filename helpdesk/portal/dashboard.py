"""The dashboard (counts by status and priority, SLA state, response times, the
daily trends as charts) and the mail-flow page. Figures are formatted by Babel in
the reader's language ("3.5 hr", "3,5 h"; "66.7%", "66,7 %")."""

from __future__ import annotations

import math
from decimal import Decimal

from babel import Locale
from babel.numbers import format_decimal, format_percent
from babel.units import format_unit
from flask import current_app, render_template, request
from flask.typing import ResponseReturnValue
from flask_babel import gettext, pgettext
from markupsafe import Markup
from sqlalchemy import and_

from helpdesk import languages
from helpdesk.clock import now
from helpdesk.extensions import db
from helpdesk.models import Ticket
from helpdesk.portal import bp
from helpdesk.portal.charts import Series, daily_chart
from helpdesk.portal.session import actor, login_required
from helpdesk.services import visibility
from helpdesk.services.mailflow import mail_flow, unmailed_staff
from helpdesk.services.stats import ticket_stats
from helpdesk.services.trends import Trends, daily_trends
from helpdesk.vocabulary import CHANNELS, INBOUND_OUTCOMES
from helpdesk.wording import vocabulary_label

PERIODS = (30, 90)  # days the charts can cover; the first is the default
# Durations in the largest unit that keeps them readable: (below, seconds per unit,
# the CLDR unit Babel names it by).
DURATION_UNITS = (
    (3600, 60, "duration-minute"),
    (172800, 3600, "duration-hour"),
    (math.inf, 86400, "duration-day"),
)
FIGURE = "#,##0.#"  # whole, or with one decimal


@bp.get("/dashboard")
@login_required()
def dashboard() -> ResponseReturnValue:
    """`?days=` 30 or 90 (anything else: 30) and `?channel=` one channel (anything
    else: all) narrow the page; the figures keep to what the agent may see."""
    days = request.args.get("days", type=int)
    days = days if days in PERIODS else PERIODS[0]
    channel = request.args.get("channel")
    channel = channel if channel in CHANNELS else None
    conditions = [
        visibility.clause(db.session, actor(), current_app.config["AGENT_VISIBILITY"]),
        Ticket.channel == channel if channel else None,
    ]
    kept = [condition for condition in conditions if condition is not None]
    scope = and_(*kept) if kept else None
    moment = now()
    return render_template(
        "portal/dashboard.html",
        nav="dashboard",
        stats=ticket_stats(db.session, moment, scope),
        charts=_charts(daily_trends(db.session, days, moment, scope)),
        days=days,
        channel=channel,
        periods=PERIODS,
        channels=CHANNELS,
    )


def _charts(trends: Trends) -> list[Markup]:
    """The dashboard's charts, in order (docs/web.md, "Dashboard"), in the reader's language."""
    medians = trends.median_first_response_seconds
    size, name = duration_unit(max((m for m in medians if m is not None), default=0))
    language = languages.current_language()
    return [
        daily_chart(
            "created",
            gettext("Tickets created per day, by channel"),
            trends.days,
            [
                Series(vocabulary_label(languages.CHANNEL_LABELS, channel), values)
                for channel, values in trends.created.items()
            ],
            stacked=True,
            language=language,
        ),
        daily_chart(
            "flow",
            gettext("Created and resolved per day"),
            trends.days,
            [
                Series(pgettext("tickets", "Created"), trends.created_total),
                Series(pgettext("tickets", "Resolved"), trends.resolved),
            ],
            language=language,
        ),
        daily_chart(
            "backlog",
            gettext("Open backlog at the end of each day"),
            trends.days,
            [Series(pgettext("tickets", "Open"), trends.backlog)],
            language=language,
        ),
        daily_chart(
            "sla",
            gettext("SLA met per day, of the targets decided that day"),
            trends.days,
            [
                Series(gettext("First response"), trends.first_response_met_percent),
                Series(gettext("Resolution"), trends.resolution_met_percent),
            ],
            unit="%",
            top=100,
            language=language,
        ),
        daily_chart(
            "first-response",
            gettext("Median first response per day"),
            trends.days,
            [Series(gettext("Median"), [None if m is None else m / size for m in medians])],
            unit=name,
            language=language,
        ),
        daily_chart(
            "satisfaction",
            gettext("Customer satisfaction per day (average rating, 1-5)"),
            trends.days,
            [Series(gettext("Average rating"), trends.satisfaction_average)],
            top=5,
            language=language,
        ),
    ]


def duration_unit(seconds: float) -> tuple[int, str]:
    """The unit `seconds` reads best in: seconds per unit and its CLDR name."""
    return next((size, name) for below, size, name in DURATION_UNITS if seconds < below)


@bp.app_template_filter("duration")
def duration(seconds: float | None) -> str:
    """12600 → "3.5 hr" ("3,5 h"); None (nothing measured yet) → "—"."""
    if seconds is None:
        return "—"
    size, name = duration_unit(seconds)
    return format_unit(
        round(seconds / size, 1), name, length="short", format=FIGURE, locale=languages.current_language()
    )


@bp.app_template_filter("percent")
def percent(value: float | None) -> str:
    """66.67 → "66.7%" ("66,7 %"): the locale's percent, with one decimal when there is one."""
    if value is None:
        return "—"
    locale = Locale.parse(languages.current_language())
    pattern = str(locale.percent_formats[None].pattern).replace("#,##0", FIGURE, 1)
    return format_percent(Decimal(str(round(value, 1))) / 100, pattern, locale=locale)


@bp.app_template_filter("figure")
def figure(value: float | None, pattern: str = FIGURE) -> str:
    """4.5 → "4.5" ("4,5"), in a Babel number `pattern`; None → "—"."""
    return "—" if value is None else format_decimal(value, pattern, locale=languages.current_language())


@bp.get("/mail")
@login_required()
def mail() -> ResponseReturnValue:
    """Mail flow at a glance: intake per channel, mailboxes, the outbox (docs/web.md)."""
    cfg = current_app.config
    flow = mail_flow(
        db.session, stuck_after=cfg["IMAP_STUCK_AFTER"], backlog_after=cfg["OUTBOX_BACKLOG_AFTER"]
    )
    return render_template(
        "portal/mail.html",
        nav="mail",
        flow=flow,
        outcomes=INBOUND_OUTCOMES,
        unmailed_staff=unmailed_staff(db.session),
    )
