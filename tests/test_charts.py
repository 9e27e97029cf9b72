"""The dashboard's chart renderer (helpdesk/portal/charts.py): series in, SVG out.

The markup is parsed as XML, so every test also proves it well-formed; coordinates
are checked against the drawing area, the figures against the text a screen reader
gets (the per-day <title>s and the table).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import date, timedelta

import pytest

from helpdesk.portal.charts import BOTTOM, HEIGHT, LEFT, RIGHT, TOP, WIDTH, Series, daily_chart

SVG = "{http://www.w3.org/2000/svg}"
DAYS = [date(2026, 3, 1) + timedelta(days=n) for n in range(3)]


def parsed(markup: str) -> ET.Element:
    return ET.fromstring(str(markup))


def svg_of(figure: ET.Element) -> ET.Element:
    found = figure.find(f"{SVG}svg")
    assert found is not None
    return found


def numbers(svg: ET.Element, tag: str, *names: str) -> list[float]:
    return [
        float(value) for element in svg.iter(f"{SVG}{tag}") for name in names if (value := element.get(name))
    ]


def ticks(svg: ET.Element) -> list[str]:
    axis = svg.find(f"{SVG}g[@class='axis']")
    assert axis is not None
    return [text.text or "" for text in axis.iter(f"{SVG}text")]


def rows(figure: ET.Element) -> list[list[str]]:
    return [[cell.text or "" for cell in row] for row in figure.iter("tr")]


def inside(svg: ET.Element) -> None:
    """Every mark lies in the drawing area."""
    for x in numbers(svg, "circle", "cx") + numbers(svg, "rect", "x"):
        assert LEFT <= x <= WIDTH - RIGHT
    for y in numbers(svg, "circle", "cy") + numbers(svg, "rect", "y"):
        assert TOP <= y <= HEIGHT - BOTTOM
    for line in svg.iter(f"{SVG}polyline"):
        for point in line.get("points", "").split():
            x, y = map(float, point.split(","))
            assert LEFT <= x <= WIDTH - RIGHT and TOP <= y <= HEIGHT - BOTTOM


def test_a_chart_is_named_described_and_readable_as_a_table():
    figure = parsed(daily_chart("flow", "Created and resolved", DAYS, [Series("Created", [1, 4, 2])]))
    svg = svg_of(figure)
    assert svg.get("role") == "img"
    assert svg.get("aria-labelledby") == "chart-flow-title chart-flow-desc"
    assert svg.findtext(f"{SVG}title") == "Created and resolved"
    assert (
        svg.findtext(f"{SVG}desc")
        == "Created per day from 2026-03-01 to 2026-03-03; the figures are in the table below."
    )
    assert [t.text for t in svg.iter(f"{SVG}title")][1:] == [
        "2026-03-01 · Created 1",
        "2026-03-02 · Created 4",
        "2026-03-03 · Created 2",
    ]
    assert rows(figure) == [["Day", "Created"], ["2026-03-03", "2"], ["2026-03-02", "4"], ["2026-03-01", "1"]]
    assert ticks(svg) == ["0", "1", "2", "3", "4"]
    (line,) = svg.iter(f"{SVG}polyline")  # days in the middle of thirds of 52…712; 4 at the top
    assert line.get("points") == "162.0,149.5 382.0,10.0 602.0,103.0"
    assert "style=" not in str(daily_chart("flow", "x", DAYS, [Series("Created", [1, 4, 2])]))


def test_stacked_bars_pile_up_per_day():
    series = [Series("web", [1, 0, 2]), Series("email", [3, 0, None])]
    svg = svg_of(parsed(daily_chart("created", "Created", DAYS, series, stacked=True)))
    bars = [
        (bar.get("class"), float(bar.get("y", 0)), float(bar.get("height", 0)))
        for bar in svg.iter(f"{SVG}rect")
    ]
    bars = [bar for bar in bars if bar[0] != "day"]
    assert ticks(svg) == ["0", "1", "2", "3", "4"]  # the highest day's total is 4
    # Day 1: web 1 at the bottom, email 3 on top of it; day 2 nothing; day 3 web 2.
    assert bars == [("bar tone-0", 149.5, 46.5), ("bar tone-1", 10.0, 139.5), ("bar tone-0", 103.0, 93.0)]


def test_gaps_split_a_line_and_a_lone_day_is_a_dot():
    days = [date(2026, 3, 1) + timedelta(days=n) for n in range(5)]
    svg = svg_of(
        parsed(daily_chart("sla", "SLA", days, [Series("Met", [50, 100, None, 75, None])], unit="%", top=100))
    )
    assert len(list(svg.iter(f"{SVG}polyline"))) == 1
    assert len(list(svg.iter(f"{SVG}circle"))) == 1
    assert ticks(svg) == ["0 %", "50 %", "100 %"]
    inside(svg)


def test_no_days_at_all_draws_an_empty_frame():
    figure = parsed(daily_chart("empty", "Nothing", [], []))
    svg = svg_of(figure)
    assert svg.findtext(f"{SVG}desc") == "No days to show."
    assert ticks(svg) == ["0", "1"]
    assert not list(svg.iter(f"{SVG}polyline")) and not list(svg.iter(f"{SVG}circle"))
    assert rows(figure) == [["Day"]]


def test_one_day_is_a_dot_and_a_bar():
    one = [date(2026, 3, 2)]
    line = svg_of(parsed(daily_chart("one", "One", one, [Series("Open", [8])])))
    (dot,) = line.iter(f"{SVG}circle")
    assert (dot.get("cx"), dot.get("cy")) == ("382.0", "10.0")  # the middle; 8 is the top
    bars = svg_of(parsed(daily_chart("one", "One", one, [Series("web", [8])], stacked=True)))
    (bar,) = bars.findall(f".//{SVG}rect[@class='bar tone-0']")
    assert (bar.get("x"), bar.get("width"), bar.get("height")) == ("118.0", "528.0", "186.0")


@pytest.mark.parametrize("stacked", [False, True])
def test_all_zero_series_lie_flat_on_the_axis(stacked):
    svg = svg_of(parsed(daily_chart("zero", "Zero", DAYS, [Series("Open", [0, 0, 0])], stacked=stacked)))
    assert ticks(svg) == ["0", "1"]
    assert not list(svg.findall(f".//{SVG}rect[@class='bar tone-0']"))
    if not stacked:
        (line,) = svg.iter(f"{SVG}polyline")
        assert {point.split(",")[1] for point in line.get("points", "").split()} == {
            str(float(HEIGHT - BOTTOM))
        }


def test_big_numbers_get_short_axis_labels_and_full_figures():
    series = [Series("Created", [1_250_000, 80_000, 3])]
    figure = parsed(daily_chart("big", "Big", DAYS, series))
    svg = svg_of(figure)
    assert ticks(svg) == ["0", "500K", "1M", "1.5M"]
    assert rows(figure)[-1] == ["2026-03-01", "1,250,000"]
    inside(svg)


def test_fractions_keep_one_decimal_and_their_unit():
    figure = parsed(daily_chart("median", "Median", DAYS, [Series("Median", [0.75, None, 0.3])], unit="h"))
    assert rows(figure)[1:] == [["2026-03-03", "0.3 h"], ["2026-03-02", "—"], ["2026-03-01", "0.8 h"]]
    assert ticks(svg_of(figure)) == ["0 h", "0.2 h", "0.4 h", "0.6 h", "0.8 h"]


def test_every_text_is_escaped():
    hostile = "<script>alert(1)</script>"
    markup = str(daily_chart("x", hostile, DAYS, [Series(hostile, [1, 2, 3])], unit="&"))
    assert "<script" not in markup
    assert "&lt;script&gt;" in markup and "&amp;" in markup
    parsed(markup)


def test_a_series_must_have_a_value_per_day():
    with pytest.raises(ValueError, match="'Open' has 2 values for 3 days"):
        daily_chart("bad", "Bad", DAYS, [Series("Open", [1, 2])])
