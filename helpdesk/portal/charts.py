"""Daily series as charts in inline SVG, drawn on the server (docs/web.md, "Dashboard").

Pure functions: days and series in, markup out. Every coordinate is computed here
and every text escaped (markupsafe), so a template shows a chart with `{{ chart }}`.
No script and no `style` attribute, which the Content-Security-Policy forbids
inline (helpdesk/security.py): colours are classes of static/style.css, `tone-0`
to `tone-7` by the series' place. The numbers are text too: a <title> per day
(shown on hover) and a table folded under <details>, for screen readers and for
anyone who wants the figures.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

from markupsafe import Markup

SVG_NAMESPACE = "http://www.w3.org/2000/svg"  # optional in HTML; makes each chart valid XML too
WIDTH, HEIGHT = 720, 220
LEFT, RIGHT, TOP, BOTTOM = 52, 8, 10, 24  # room for the axis labels
TONES = 8  # classes tone-0 … tone-7 in static/style.css; more series repeat them
GRIDLINES = 4  # at most, above zero
DAY_LABELS = 6  # at most, along the bottom
FLOAT_NOISE = 1e-9  # 1.1 / 0.1 is 11.000000000000002, which must not round up to 12


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
) -> Markup:
    """A <figure> with the chart of `series` over `days` (oldest first), its legend
    and its table. `key` makes the element ids unique on the page; `unit` follows
    every number ("%", "h"); `stacked` draws bars stacked per day instead of lines;
    `top` fixes the scale (100 for percentages) instead of rounding up the highest.

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
        desc=_description(days, series),
        grid=_grid(plot, step, unit),
        labels=_day_labels(plot, days),
        marks=marks,
        hover=_hover(plot, days, series, unit),
    )
    return Markup(
        '<figure class="chart" id="chart-{k}"><figcaption>{title}</figcaption>{svg}{legend}{table}</figure>'
    ).format(k=key, title=title, svg=svg, legend=_legend(series), table=_table(days, series, unit))


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


def _number(value: float, unit: str) -> str:
    """A figure as the table and the hover titles show it: 1,234 or 66.7, with the unit."""
    text = f"{int(value):,}" if float(value).is_integer() else f"{value:,.1f}"
    return f"{text} {unit}" if unit else text


def _short(value: float, unit: str) -> str:
    """An axis label, short enough for the margin: 1.5k, 2M."""
    for size, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= size:
            text = f"{value / size:.3g}{suffix}"
            break
    else:
        text = f"{value:.3g}"
    return f"{text} {unit}" if unit else text


def _text(value: float | None, unit: str) -> str:
    return "—" if value is None else _number(value, unit)


def _grid(plot: _Plot, step: float, unit: str) -> Markup:
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
                x=LEFT - 6, y=round(y + 4, 1), label=_short(value, unit)
            )
        )
    return Markup('<g class="axis">{}</g>').format(Markup("").join(parts))


def _day_labels(plot: _Plot, days: Sequence[date]) -> Markup:
    """Some days along the bottom, counted back from the last so it is always named."""
    every = max(1, math.ceil(len(days) / DAY_LABELS))
    parts = [
        Markup('<text class="tick" x="{x}" y="{y}" text-anchor="middle">{label}</text>').format(
            x=round(plot.x(index), 1), y=HEIGHT - 6, label=f"{day:%b} {day.day}"
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


def _hover(plot: _Plot, days: Sequence[date], series: Sequence[Series], unit: str) -> Markup:
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
                [day.isoformat(), *(f"{one.label} {_text(one.values[index], unit)}" for one in series)]
            ),
        )
        for index, day in enumerate(days)
    ]
    return Markup('<g class="hover">{}</g>').format(Markup("").join(parts))


def _description(days: Sequence[date], series: Sequence[Series]) -> str:
    if not days:
        return "No days to show."
    labels = ", ".join(one.label for one in series)
    return f"{labels} per day from {days[0]} to {days[-1]}; the figures are in the table below."


def _legend(series: Sequence[Series]) -> Markup:
    items = [
        Markup(
            '<li><svg xmlns="{ns}" class="swatch" viewBox="0 0 10 10" aria-hidden="true">'
            '<rect class="tone-{t}" width="10" height="10"/></svg>{label}</li>'
        ).format(ns=SVG_NAMESPACE, t=place % TONES, label=one.label)
        for place, one in enumerate(series)
    ]
    return Markup('<ul class="legend">{}</ul>').format(Markup("").join(items))


def _table(days: Sequence[date], series: Sequence[Series], unit: str) -> Markup:
    """The figures as a table, newest day first."""
    head = Markup("").join(Markup('<th scope="col">{}</th>').format(one.label) for one in series)
    rows = [
        Markup('<tr><th scope="row" class="nowrap">{day}</th>{cells}</tr>').format(
            day=days[index].isoformat(),
            cells=Markup("").join(
                Markup("<td>{}</td>").format(_text(one.values[index], unit)) for one in series
            ),
        )
        for index in reversed(range(len(days)))
    ]
    return Markup(
        '<details><summary>Figures</summary><table class="compact">'
        '<thead><tr><th scope="col">Day</th>{head}</tr></thead><tbody>{rows}</tbody></table></details>'
    ).format(head=head, rows=Markup("").join(rows))
