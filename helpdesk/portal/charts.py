"""Daily series as charts in inline SVG, drawn on the server (docs/web.md, "Dashboard").

Pure functions: days and series in, markup out. Every coordinate is computed here
and every text escaped (markupsafe), so a template shows a chart with `{{ chart }}`.
No script and no `style` attribute, which the Content-Security-Policy forbids
inline (helpdesk/security.py): colours are classes of static/style.css, `tone-0`
to `tone-7` by the series' place. The numbers are text too: a <title> per day
(shown on hover) and a table folded under <details>, for screen readers and for
anyone who wants the figures.

Words and numbers are the reader's (`language`): the chart's own texts come from
the catalogs, numbers and the days along the axis are formatted by Babel. The
dates of the table and the hover titles are ISO 8601 (2026-03-02), which every
language reads and which sort as they read.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

from babel.dates import format_skeleton
from babel.numbers import format_compact_decimal, format_decimal
from babel.units import format_unit
from markupsafe import Markup

from helpdesk.languages import N_, gettext_in

SVG_NAMESPACE = "http://www.w3.org/2000/svg"  # optional in HTML; makes each chart valid XML too
WIDTH, HEIGHT = 720, 220
LEFT, RIGHT, TOP, BOTTOM = 52, 8, 10, 24  # room for the axis labels
TONES = 8  # classes tone-0 … tone-7 in static/style.css; more series repeat them
GRIDLINES = 4  # at most, above zero
DAY_LABELS = 6  # at most, along the bottom
FLOAT_NOISE = 1e-9  # 1.1 / 0.1 is 11.000000000000002, which must not round up to 12
FIGURE = "#,##0.#"  # a figure in the table: whole, or with one decimal
TICK = "#,##0.##"  # an axis label: a gridline's value has at most two decimals
# The chart's own words (the caller translates the title and the series' labels).
NO_DAYS = N_("No days to show.")
DESCRIPTION = N_("%(series)s per day from %(first)s to %(last)s; the figures are in the table below.")
FIGURES = N_("Figures")
DAY = N_("Day")


@dataclass(frozen=True)
class Series:
    """One line, or one layer of stacked bars: a value per day, None where the day
    has nothing to show (a gap in a line, no bar)."""

    label: str
    values: Sequence[float | None]


def daily_chart(
    key: str,
    title: str,
    days: Sequence[date],
    series: Sequence[Series],
    *,
    unit: str = "",
    stacked: bool = False,
    top: float | None = None,
    language: str = "en",
) -> Markup:
    """A <figure> with the chart of `series` over `days` (oldest first), its legend
    and its table. `key` makes the element ids unique on the page; `unit` follows
    every number: a symbol ("%") or a CLDR unit, which has a hyphen ("duration-hour":
    "3 hr", "3 h"); `stacked` draws bars stacked per day instead of lines; `top`
    fixes the scale (100 for percentages) instead of rounding up the highest;
    `language` is the reader's (`title` and the labels come translated).

    Raises ValueError when a series has not one value per day.
    """
    for one in series:
        if len(one.values) != len(days):
            raise ValueError(f"{one.label!r} has {len(one.values)} values for {len(days)} days")
    totals = [_sum(day) for day in zip(*(one.values for one in series), strict=True)] if stacked else []
    known = [value for value in (totals if stacked else _all_values(series)) if value is not None]
    whole = all(float(value).is_integer() for value in known)
    axis_top, step = _scale(top if top is not None else max(known, default=0), whole)
    plot = _Plot(len(days), axis_top)
    words = _Words(unit, language)
    marks = _bars(plot, series) if stacked else _lines(plot, series)
    svg = Markup(
        '<svg xmlns="{ns}" class="chart-svg" viewBox="0 0 {w} {h}" role="img"'
        ' aria-labelledby="chart-{k}-title chart-{k}-desc">'
        '<title id="chart-{k}-title">{title}</title><desc id="chart-{k}-desc">{desc}</desc>'
        "{grid}{labels}{marks}{hover}</svg>"
    ).format(
        ns=SVG_NAMESPACE,
        w=WIDTH,
        h=HEIGHT,
        k=key,
        title=title,
        desc=_description(days, series, language),
        grid=_grid(plot, step, words),
        labels=_day_labels(plot, days, language),
        marks=marks,
        hover=_hover(plot, days, series, words),
    )
    return Markup(
        '<figure class="chart" id="chart-{k}"><figcaption>{title}</figcaption>{svg}{legend}{table}</figure>'
    ).format(k=key, title=title, svg=svg, legend=_legend(series), table=_table(days, series, words))


@dataclass(frozen=True)
class _Words:
    """Numbers as the reader writes them, with the chart's unit."""

    unit: str
    language: str

    def figure(self, value: float) -> str:
        """A figure as the table and the hover titles show it: 1,234 or 66.7 (es: 1.234,
        66,7), with the unit."""
        return self._with_unit(value, FIGURE, format_decimal(value, FIGURE, locale=self.language))

    def tick(self, value: float) -> str:
        """An axis label, short enough for the margin: 1.5M, 500K (1,5 M, 500 mil)."""
        short = format_compact_decimal(value, format_type="short", fraction_digits=2, locale=self.language)
        return self._with_unit(value, TICK, short)

    def text(self, value: float | None) -> str:
        return "—" if value is None else self.figure(value)

    def _with_unit(self, value: float, pattern: str, number: str) -> str:
        if "-" in self.unit:
            return format_unit(value, self.unit, length="short", format=pattern, locale=self.language)
        return f"{number} {self.unit}" if self.unit else number


@dataclass(frozen=True)
class _Plot:
    """Where day `i` and value `v` fall in the drawing area."""

    days: int
    top: float

    @property
    def slot(self) -> float:
        return (WIDTH - LEFT - RIGHT) / max(self.days, 1)

    def x(self, index: int) -> float:
        """The middle of day `index`'s slot."""
        return LEFT + (index + 0.5) * self.slot

    def y(self, value: float) -> float:
        """Clamped to the drawing area, so no value can draw outside it."""
        share = min(max(value / self.top, 0.0), 1.0)
        return TOP + (HEIGHT - TOP - BOTTOM) * (1.0 - share)


def _sum(values: Sequence[float | None]) -> float | None:
    known = [value for value in values if value is not None]
    return sum(known) if known else None


def _all_values(series: Sequence[Series]) -> list[float | None]:
    return [value for one in series for value in one.values]


def _scale(highest: float, whole: bool) -> tuple[float, float]:
    """The top of the axis and the step between gridlines: steps of 1, 2 or 5
    times a power of ten (whole numbers for counts), at most GRIDLINES of them."""
    if highest <= 0:
        return 1.0, 1.0
    rough = highest / GRIDLINES
    power = 10.0 ** math.floor(math.log10(rough))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= rough * (1 - FLOAT_NOISE))
    if whole:
        step = max(step, 1.0)
    return step * math.ceil(highest / step - FLOAT_NOISE), step


def _grid(plot: _Plot, step: float, words: _Words) -> Markup:
    parts = []
    for n in range(round(plot.top / step) + 1):
        value = round(n * step, 9)
        y = round(plot.y(value), 1)
        parts.append(
            Markup('<line class="gridline" x1="{x1}" y1="{y}" x2="{x2}" y2="{y}"/>').format(
                x1=LEFT, x2=WIDTH - RIGHT, y=y
            )
        )
        parts.append(
            Markup('<text class="tick" x="{x}" y="{y}" text-anchor="end">{label}</text>').format(
                x=LEFT - 6, y=round(y + 4, 1), label=words.tick(value)
            )
        )
    return Markup('<g class="axis">{}</g>').format(Markup("").join(parts))


def _day_labels(plot: _Plot, days: Sequence[date], language: str) -> Markup:
    """Some days along the bottom, counted back from the last so it is always named
    ("Mar 2", "2 mar")."""
    every = max(1, math.ceil(len(days) / DAY_LABELS))
    parts = [
        Markup('<text class="tick" x="{x}" y="{y}" text-anchor="middle">{label}</text>').format(
            x=round(plot.x(index), 1), y=HEIGHT - 6, label=format_skeleton("MMMd", day, locale=language)
        )
        for index, day in enumerate(days)
        if (len(days) - 1 - index) % every == 0
    ]
    return Markup('<g class="days-axis">{}</g>').format(Markup("").join(parts))


def _bars(plot: _Plot, series: Sequence[Series]) -> Markup:
    width = round(plot.slot * 0.8, 2)
    parts = []
    for index in range(plot.days):
        below = 0.0
        for place, one in enumerate(series):
            value = one.values[index]
            if value is None or value <= 0:
                continue
            upper, lower = plot.y(below + value), plot.y(below)
            below += value
            parts.append(
                Markup('<rect class="bar tone-{t}" x="{x}" y="{y}" width="{w}" height="{h}"/>').format(
                    t=place % TONES,
                    x=round(plot.x(index) - width / 2, 2),
                    y=round(upper, 2),
                    w=width,
                    h=round(lower - upper, 2),
                )
            )
    return Markup('<g class="marks">{}</g>').format(Markup("").join(parts))


def _lines(plot: _Plot, series: Sequence[Series]) -> Markup:
    """A polyline per run of days with a value; a dot for a day alone between gaps."""
    parts = []
    for place, one in enumerate(series):
        for run in _runs(one.values):
            points = [(round(plot.x(i), 2), round(plot.y(value), 2)) for i, value in run]
            if len(points) == 1:
                x, y = points[0]
                parts.append(
                    Markup('<circle class="dot tone-{t}" cx="{x}" cy="{y}" r="3"/>').format(
                        t=place % TONES, x=x, y=y
                    )
                )
            else:
                parts.append(
                    Markup('<polyline class="line tone-{t}" points="{p}"/>').format(
                        t=place % TONES, p=" ".join(f"{x},{y}" for x, y in points)
                    )
                )
    return Markup('<g class="marks">{}</g>').format(Markup("").join(parts))


def _runs(values: Sequence[float | None]) -> list[list[tuple[int, float]]]:
    """The stretches of consecutive days that have a value, with their indexes."""
    runs: list[list[tuple[int, float]]] = []
    for index, value in enumerate(values):
        if value is None:
            continue
        if runs and runs[-1][-1][0] == index - 1:
            runs[-1].append((index, value))
        else:
            runs.append([(index, value)])
    return runs


def _hover(plot: _Plot, days: Sequence[date], series: Sequence[Series], words: _Words) -> Markup:
    """A transparent column per day, titled with that day's figures (a tooltip)."""
    parts = [
        Markup(
            '<rect class="day" x="{x}" y="{y}" width="{w}" height="{h}"><title>{text}</title></rect>'
        ).format(
            x=round(LEFT + index * plot.slot, 2),
            y=TOP,
            w=round(plot.slot, 2),
            h=HEIGHT - TOP - BOTTOM,
            text=" · ".join(
                [day.isoformat(), *(f"{one.label} {words.text(one.values[index])}" for one in series)]
            ),
        )
        for index, day in enumerate(days)
    ]
    return Markup('<g class="hover">{}</g>').format(Markup("").join(parts))


def _description(days: Sequence[date], series: Sequence[Series], language: str) -> str:
    if not days:
        return gettext_in(language, NO_DAYS)
    labels = ", ".join(one.label for one in series)
    return gettext_in(
        language, DESCRIPTION, series=labels, first=days[0].isoformat(), last=days[-1].isoformat()
    )


def _legend(series: Sequence[Series]) -> Markup:
    items = [
        Markup(
            '<li><svg xmlns="{ns}" class="swatch" viewBox="0 0 10 10" aria-hidden="true">'
            '<rect class="tone-{t}" width="10" height="10"/></svg>{label}</li>'
        ).format(ns=SVG_NAMESPACE, t=place % TONES, label=one.label)
        for place, one in enumerate(series)
    ]
    return Markup('<ul class="legend">{}</ul>').format(Markup("").join(items))


def _table(days: Sequence[date], series: Sequence[Series], words: _Words) -> Markup:
    """The figures as a table, newest day first."""
    head = Markup("").join(Markup('<th scope="col">{}</th>').format(one.label) for one in series)
    rows = [
        Markup('<tr><th scope="row" class="nowrap">{day}</th>{cells}</tr>').format(
            day=days[index].isoformat(),
            cells=Markup("").join(
                Markup("<td>{}</td>").format(words.text(one.values[index])) for one in series
            ),
        )
        for index in reversed(range(len(days)))
    ]
    return Markup(
        '<details><summary>{figures}</summary><table class="compact">'
        '<thead><tr><th scope="col">{day}</th>{head}</tr></thead><tbody>{rows}</tbody></table></details>'
    ).format(
        figures=gettext_in(words.language, FIGURES),
        day=gettext_in(words.language, DAY),
        head=head,
        rows=Markup("").join(rows),
    )
