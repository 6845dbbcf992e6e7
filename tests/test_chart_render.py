"""Chart series and rendering: pure functions, no app or database needed."""

from __future__ import annotations

import math
import re
import struct
import xml.etree.ElementTree as ET
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from matplotlib.collections import PolyCollection

from clinic_log.charts.render import (
    COMPLETE_LABEL,
    EMPTY_TEXT,
    HOURS_LABEL,
    INCOMPLETE_LABEL,
    KEY_LABEL,
    build_domains_figure,
    build_heatmap_figure,
    build_trend_figure,
    render_domains,
    render_heatmap,
    render_trend,
)
from clinic_log.charts.series import (
    BandSpan,
    DomainPanel,
    DomainSeries,
    HeatmapSeries,
    TrendPoint,
    TrendSeries,
    summarise,
)

T0 = datetime(2026, 11, 10, 14, 0, tzinfo=UTC)
COWS_BANDS = (
    BandSpan(5, 12, "Mild"),
    BandSpan(13, 24, "Moderate"),
    BandSpan(25, 36, "Moderately severe"),
    BandSpan(37, 48, "Severe"),
)
MATHS_TITLE = "Patient $x$ 50%_{a}"
SVG_ROOT = "{http://www.w3.org/2000/svg}svg"


def trend(totals=(24, 18, 20, 12, 6), complete=None, **changes) -> TrendSeries:
    complete = complete or (True,) * len(totals)
    points = tuple(
        TrendPoint(T0 + timedelta(hours=8 * i), total, done)
        for i, (total, done) in enumerate(zip(totals, complete, strict=True))
    )
    series = TrendSeries(
        title="COWS total — patient N-001",
        y_label="COWS total (0–48)",
        y_min=0,
        y_max=48,
        bands=COWS_BANDS,
        points=points,
        episode_starts=(T0 - timedelta(hours=2),),
        tz_name="Europe/London",
    )
    return replace(series, **changes)


def heatmap(columns=5, missing=((0, 1), (2, 3))) -> HeatmapSeries:
    labels = ("Resting pulse rate", "Sweating", "Restlessness")
    item_max = (4, 4, 5)
    times = tuple(T0 + timedelta(hours=6 * c) for c in range(columns))
    scores = tuple(
        tuple(None if (r, c) in missing else (r + c) % (item_max[r] + 1) for c in range(columns))
        for r in range(len(labels))
    )
    return HeatmapSeries(
        "COWS items — patient N-001", "Europe/London", labels, item_max, times, scores
    )


def domains(values=((2, None, 3), (1, 1, 0), (None, None, None), (4, 3, None))) -> DomainSeries:
    times = tuple(T0 + timedelta(hours=12 * i) for i in range(3))
    labels = ("Anxiety", "Aches", "Insomnia", "Irritability")
    panels = tuple(
        DomainPanel(label, 8, tuple(zip(times, row, strict=True)))
        for label, row in zip(labels, values, strict=True)
    )
    return DomainSeries("Symptom domains — patient N-001", "Europe/London", panels)


def svg_root(data: bytes) -> ET.Element:
    # Our own renderer's output, not untrusted input.
    return ET.fromstring(data)  # noqa: S314


def svg_texts(data: bytes) -> str:
    return " ".join(t for t in svg_root(data).itertext() if t.strip())


def png_size(data: bytes) -> tuple[int, int]:
    return struct.unpack(">II", data[16:24])


def data_lines(ax) -> list:
    return [line for line in ax.get_lines() if line.get_label() != KEY_LABEL]


def key_texts(ax) -> list[str]:
    return [t.get_text() for t in ax.texts if t.get_text() in (COMPLETE_LABEL, INCOMPLETE_LABEL)]


def white_faced(line) -> bool:
    return line.get_markerfacecolor() in ("white", "w", "#ffffff", (1.0, 1.0, 1.0, 1.0))


RENDERS = [
    pytest.param(render_trend, trend, id="trend"),
    pytest.param(render_heatmap, heatmap, id="heatmap"),
    pytest.param(render_domains, domains, id="domains"),
]


# --- every renderer -------------------------------------------------------------------------


@pytest.mark.parametrize(("render", "make"), RENDERS)
def test_renders_valid_png_and_svg(render, make):
    png = render(make(), fmt="png")
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    svg = render(make(), fmt="svg")
    assert svg_root(svg).tag == SVG_ROOT


@pytest.mark.parametrize(("render", "make"), RENDERS)
@pytest.mark.parametrize("fmt", ["jpg", "PNG", "", "pdf"])
def test_unknown_format_is_refused(render, make, fmt):
    with pytest.raises(ValueError, match="unknown chart format"):
        render(make(), fmt=fmt)


@pytest.mark.parametrize(("render", "make"), RENDERS)
def test_same_series_gives_identical_bytes(render, make):
    for fmt in ("svg", "png"):
        assert render(make(), fmt=fmt) == render(make(), fmt=fmt)


def test_figure_sizes():
    # The tracker's <img> tags give these sizes (templates/charts/tracker.html).
    assert png_size(render_trend(trend())) == (800, 400)
    assert png_size(render_domains(domains())) == (800, 600)
    width, height = png_size(render_heatmap(heatmap()))
    assert width == 800
    taller = replace(heatmap(), item_labels=("a",) * 12, item_max=(4,) * 12)
    taller = replace(taller, scores=((1,) * len(taller.times),) * 12)
    assert png_size(render_heatmap(taller))[1] > height


def test_naive_datetimes_are_refused():
    naive = trend(points=(TrendPoint(datetime(2026, 11, 10, 14, 0), 5, True),))  # noqa: DTZ001
    with pytest.raises(ValueError, match="aware"):
        render_trend(naive)
    with pytest.raises(ValueError, match="aware"):
        summarise(naive)


# --- trend ----------------------------------------------------------------------------------


@pytest.mark.parametrize("x_mode", ["time", "hours"])
def test_empty_trend_says_so_and_keeps_labels(x_mode):
    series = trend(totals=(), x_mode=x_mode)
    text = svg_texts(render_trend(series, fmt="svg"))
    assert EMPTY_TEXT in text
    assert "COWS total (0–48)" in text
    assert "COWS total — patient N-001" in text
    assert render_trend(series).startswith(b"\x89PNG")


def test_empty_trend_with_window_keeps_a_local_date_axis():
    window = (T0, T0 + timedelta(days=3))
    fig = build_trend_figure(trend(totals=(), window_start=window[0], window_end=window[1]))
    ax = fig.axes[0]
    assert ax.get_xlim() == pytest.approx([_x(window[0]), _x(window[1])])
    assert len(ax.xaxis.get_major_locator()()) >= 3


def test_band_labels_are_drawn():
    text = svg_texts(render_trend(trend(), fmt="svg"))
    for band in COWS_BANDS:
        assert band.label in text
    ax = build_trend_figure(trend()).axes[0]
    assert len(ax.patches) == len(COWS_BANDS)


def test_no_bands_drawn_when_the_scale_publishes_none():
    ax = build_trend_figure(trend(bands=())).axes[0]
    assert len(ax.patches) == 0
    assert not any(t.get_text() in {"Mild", "Moderate"} for t in ax.texts)


def test_band_fills_are_light():
    ax = build_trend_figure(trend()).axes[0]
    assert all(patch.get_alpha() <= 0.25 for patch in ax.patches)


def test_incomplete_points_are_hollow_and_not_joined():
    series = trend(totals=(24, 10, 20, 12, 6), complete=(True, False, True, True, False))
    ax = build_trend_figure(series).axes[0]
    (hollow,) = [line for line in data_lines(ax) if white_faced(line)]
    assert hollow.get_label() == INCOMPLETE_LABEL
    assert list(hollow.get_ydata()) == [10, 6]
    assert hollow.get_linestyle() == "None"
    (joined,) = [line for line in ax.get_lines() if line.get_label() == COMPLETE_LABEL]
    assert list(joined.get_ydata()) == [24, 20, 12]
    assert not white_faced(joined)
    # The key explains both marker styles, with a hollow sample for the incomplete ones.
    assert key_texts(ax) == [COMPLETE_LABEL, INCOMPLETE_LABEL]
    samples = [line for line in ax.get_lines() if line.get_label() == KEY_LABEL]
    assert [white_faced(line) for line in samples] == [False, True]
    assert INCOMPLETE_LABEL in svg_texts(render_trend(series, fmt="svg"))


def test_all_incomplete_key_shows_only_the_hollow_marker():
    ax = build_trend_figure(trend(totals=(24, 10), complete=(False, False))).axes[0]
    assert key_texts(ax) == [INCOMPLETE_LABEL]
    assert [line.get_label() for line in data_lines(ax)] == [INCOMPLETE_LABEL]


def test_no_key_when_every_total_is_complete():
    ax = build_trend_figure(trend()).axes[0]
    assert key_texts(ax) == []
    assert not any(white_faced(line) for line in ax.get_lines())


def test_line_breaks_at_a_new_episode():
    second = T0 + timedelta(hours=20)  # between the third (16 h) and fourth (24 h) points
    series = trend(episode_starts=(T0 - timedelta(hours=2), second))
    ax = build_trend_figure(series).axes[0]
    (joined,) = [line for line in ax.get_lines() if line.get_label() == COMPLETE_LABEL]
    y = np.asarray(joined.get_ydata(), dtype=float)
    assert np.isnan(y).sum() == 1
    assert list(y[:3]) == [24, 18, 20]
    texts = [t.get_text() for t in ax.texts]
    assert texts.count("episode start") == 2


@pytest.mark.parametrize(
    ("utc_hour_day", "local"),
    [((12, datetime(2026, 7, 1)), "08:00"), ((12, datetime(2026, 1, 15)), "07:00")],
    ids=["summer EDT", "winter EST"],
)
def test_x_axis_shows_site_local_time(utc_hour_day, local):
    hour, day = utc_hour_day
    at = day.replace(hour=hour, tzinfo=UTC)
    series = trend(
        points=(TrendPoint(at, 10, True),),
        episode_starts=(),
        tz_name="America/New_York",
        window_start=at - timedelta(hours=2),
        window_end=at + timedelta(hours=2),
    )
    ax = build_trend_figure(series).axes[0]
    locs = list(ax.xaxis.get_major_locator()())
    labels = ax.xaxis.get_major_formatter().format_ticks(locs)
    point_x = ax.get_lines()[0].get_xdata()[0]
    nearest = min(range(len(locs)), key=lambda i: abs(locs[i] - point_x))
    assert locs[nearest] == pytest.approx(point_x)
    assert labels[nearest] == local
    assert ax.get_xlabel() == "Observed (America/New_York)"


def test_hours_mode_counts_from_the_episode_of_the_first_point():
    starts = (T0 - timedelta(days=3), T0 - timedelta(hours=2))
    ax = build_trend_figure(trend(x_mode="hours", episode_starts=starts)).axes[0]
    (line,) = data_lines(ax)
    assert list(line.get_xdata()) == pytest.approx([2, 10, 18, 26, 34])
    assert ax.get_xlabel() == HOURS_LABEL


def test_hours_mode_without_episode_starts_counts_from_the_first_point():
    ax = build_trend_figure(trend(x_mode="hours", episode_starts=())).axes[0]
    assert list(ax.get_lines()[0].get_xdata()) == pytest.approx([0, 8, 16, 24, 32])


def _x(at: datetime) -> float:
    from matplotlib.dates import date2num

    return float(date2num(at))


@pytest.mark.parametrize("days", [1, 3, 14, 60, 183])
@pytest.mark.parametrize("windowed", [True, False])
def test_date_ticks_stay_readable_from_a_day_to_six_months(days, windowed):
    count = 40
    points = tuple(
        TrendPoint(T0 + timedelta(days=days) * i / (count - 1), 10, True) for i in range(count)
    )
    changes = {"window_start": T0, "window_end": T0 + timedelta(days=days)} if windowed else {}
    ax = build_trend_figure(trend(points=points, **changes)).axes[0]
    low, high = ax.get_xlim()
    ticks = [t for t in ax.xaxis.get_major_locator()() if low <= t <= high]
    assert 3 <= len(ticks) <= 15


def test_y_axis_spans_the_scale_with_integer_ticks():
    ax = build_trend_figure(trend()).axes[0]
    low, high = ax.get_ylim()
    assert low <= 0 and high >= 48
    ticks = list(ax.get_yticks())
    assert ticks[0] == 0 and ticks[-1] == 48
    assert all(float(t).is_integer() for t in ticks)


def test_mathtext_characters_render_literally():
    series = trend(
        title=MATHS_TITLE, y_label="Score $ (0–48) ^_ total", tz_name="America/Port_of_Spain"
    )
    png = render_trend(series)
    assert png.startswith(b"\x89PNG")
    text = svg_texts(render_trend(series, fmt="svg"))
    assert MATHS_TITLE in text
    assert "Score $ (0–48) ^_ total" in text
    assert "Observed (America/Port_of_Spain)" in text
    heat = replace(heatmap(), title=MATHS_TITLE, item_labels=("$a$", "b_{1}", "50%"))
    assert MATHS_TITLE in svg_texts(render_heatmap(heat, fmt="svg"))
    assert "b_{1}" in svg_texts(render_heatmap(heat, fmt="svg"))
    dom = replace(domains(), title=MATHS_TITLE)
    assert MATHS_TITLE in svg_texts(render_domains(dom, fmt="svg"))


def test_window_sets_the_x_limits():
    window = (T0 - timedelta(days=1), T0 + timedelta(days=4))
    ax = build_trend_figure(trend(window_start=window[0], window_end=window[1])).axes[0]
    assert ax.get_xlim() == pytest.approx([_x(window[0]), _x(window[1])])


def test_two_hundred_points_draw_as_two_artists():
    points = tuple(TrendPoint(T0 + timedelta(hours=4 * i), i % 48, i % 7 != 0) for i in range(200))
    ax = build_trend_figure(trend(points=points)).axes[0]
    assert len(data_lines(ax)) == 2


# --- heatmap --------------------------------------------------------------------------------


def _cell_values(ax) -> dict[tuple[int, float], float]:
    """(row, x of the cell's centre) -> shade value, for every scored cell."""
    cells = _scored_cells(ax)
    return {
        (int(min(p.vertices[:, 1])), float(np.mean(p.vertices[:4, 0]))): value
        for p, value in zip(cells.get_paths(), cells.get_array(), strict=True)
    }


def test_heatmap_shades_by_share_of_item_maximum_and_hatches_missing_cells():
    series = heatmap()
    fig = build_heatmap_figure(series)
    ax = fig.axes[0]
    values = _cell_values(ax)
    assert len(values) == 3 * 5 - 2
    column_2 = _x(series.times[2])  # cells are centred on their entry, 6 h from each neighbour
    (value,) = [v for (row, x), v in values.items() if row == 1 and x == pytest.approx(column_2)]
    assert value == pytest.approx(((1 + 2) % 5) / 4)
    (missing,) = [c for c in ax.collections if isinstance(c, PolyCollection) and c.get_hatch()]
    assert len(missing.get_paths()) == 2
    assert "/" in missing.get_hatch()
    assert [t.get_text() for t in ax.get_yticklabels()] == [
        "Resting pulse rate",
        "Sweating",
        "Restlessness",
    ]
    assert ax.get_ylim() == (3, 0)  # first item at the top
    assert any(a.get_ylabel() == "share of item maximum" for a in fig.axes)
    assert "not assessed" in svg_texts(render_heatmap(heatmap(), fmt="svg"))


def test_heatmap_draws_every_entry_on_the_time_axis_and_gaps_as_gaps():
    """No cap on columns (the trend above shows every entry too); a cell reaches at most 6 h
    either side of its entry, so a day without entries is a blank stretch, not a wide cell."""
    series = heatmap(columns=75, missing={(1, 70), (1, 5)})
    series = replace(series, times=(*series.times[:-1], series.times[-2] + timedelta(days=2)))
    ax = build_heatmap_figure(series).axes[0]
    assert ax.get_title(loc="left") == series.title
    assert len(_cell_values(ax)) == 3 * 75 - 2
    (missing,) = [c for c in ax.collections if isinstance(c, PolyCollection) and c.get_hatch()]
    assert len(missing.get_paths()) == 2
    last = max(_scored_cells(ax).get_paths(), key=lambda p: p.vertices[0, 0])
    width_hours = (max(last.vertices[:, 0]) - min(last.vertices[:, 0])) * 24
    assert width_hours == pytest.approx(12)


def test_heatmap_ticks_are_the_trends_in_site_local_time():
    trend_series = trend(points=(TrendPoint(T0, 10, True),), tz_name="Asia/Kolkata")
    series = replace(
        heatmap(columns=1), tz_name="Asia/Kolkata", episode_starts=trend_series.episode_starts
    )
    heat_fig, trend_fig = build_heatmap_figure(series), build_trend_figure(trend_series)
    for fig in (heat_fig, trend_fig):
        fig.canvas.draw()
    labels = [t.get_text() for t in heat_fig.axes[0].get_xticklabels()]
    assert labels == [t.get_text() for t in trend_fig.axes[0].get_xticklabels()]
    # A few hours with no midnight: the first tick names the day (14:00 UTC is 19:30 IST).
    assert labels[0].startswith("10 Nov ") and all(":" in label for label in labels)
    assert heat_fig.axes[0].get_xlabel() == "Observed (Asia/Kolkata)"


def test_heatmap_refuses_a_score_above_the_item_maximum():
    series = replace(heatmap(columns=1), scores=((9,), (0,), (0,)))
    with pytest.raises(ValueError, match="outside"):
        render_heatmap(series)


def test_empty_heatmap_says_so():
    series = replace(heatmap(), times=(), scores=((), (), ()))
    assert EMPTY_TEXT in svg_texts(render_heatmap(series, fmt="svg"))
    assert render_heatmap(series).startswith(b"\x89PNG")


# --- domains --------------------------------------------------------------------------------


def test_domain_panels_share_one_axis_and_leave_gaps():
    fig = build_domains_figure(domains())
    axes = fig.axes
    assert [ax.get_ylabel() for ax in axes] == ["Anxiety", "Aches", "Insomnia", "Irritability"]
    assert all(ax.get_shared_x_axes().joined(axes[0], ax) for ax in axes)
    anxiety = np.asarray(axes[0].get_lines()[0].get_ydata(), dtype=float)
    assert anxiety[0] == 2 and math.isnan(anxiety[1]) and anxiety[2] == 3
    assert axes[2].get_lines() == []  # nothing assessed: no line at all, not zeros
    assert axes[0].get_ylim() == (-0.5, 8.5)
    assert axes[-1].get_xlabel() == "Observed (Europe/London)"


def test_empty_domains_say_so():
    empty = replace(domains(), panels=tuple(replace(p, points=()) for p in domains().panels))
    assert EMPTY_TEXT in svg_texts(render_domains(empty, fmt="svg"))
    assert render_domains(replace(domains(), panels=())).startswith(b"\x89PNG")


# --- summarise ------------------------------------------------------------------------------


def test_summary_reports_count_range_latest_extremes_and_direction():
    totals = (24, 20, 18, 15, 12, 9, 3, 6)
    points = tuple(
        TrendPoint(T0 + timedelta(days=2 * i), total, True) for i, total in enumerate(totals)
    )
    assert summarise(trend(points=points)) == (
        "8 COWS assessments from 2026-11-10 to 2026-11-24. "
        "Latest 6 (Mild), lowest 3, highest 24; falling."
    )


def test_summary_never_bands_an_incomplete_total():
    text = summarise(trend(totals=(6, 14, 20), complete=(True, True, False)))
    assert text.endswith("Latest 20 (incomplete), lowest 6, highest 20 (incomplete); rising.")
    assert "Moderate" not in text


def test_summary_direction_ignores_lower_bounds():
    # The final 2 is incomplete (a lower bound), so it cannot show a fall.
    text = summarise(trend(totals=(20, 21, 2), complete=(True, True, False)))
    assert text.endswith("lowest 2 (incomplete), highest 21; about the same.")


def test_summary_total_below_every_band_has_no_label():
    assert "Latest 3," in summarise(trend(totals=(30, 3)))


def test_summary_single_and_empty():
    assert summarise(trend(totals=(13,))) == (
        "1 COWS assessment on 2026-11-10. Latest 13 (Moderate)."
    )
    assert summarise(trend(totals=())) == "No assessments in this range."


def test_summary_uses_local_dates():
    late = datetime(2026, 11, 10, 23, 30, tzinfo=UTC)  # already 11 November in Sydney
    series = trend(points=(TrendPoint(late, 5, True),), tz_name="Australia/Sydney")
    assert "on 2026-11-11" in summarise(series)


# --- readable, aligned charts (issue 15) ------------------------------------------------------


def _luminance(rgba) -> float:
    r, g, b = (c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in rgba[:3])
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def _scored_cells(ax) -> PolyCollection:
    (cells,) = [c for c in ax.collections if isinstance(c, PolyCollection) and not c.get_hatch()
                and c.get_array() is not None]  # fmt: skip
    return cells


def test_heatmap_zero_is_the_palest_colour_and_the_maximum_the_darkest():
    cells = _scored_cells(build_heatmap_figure(heatmap()).axes[0])
    shade = cells.to_rgba
    steps = [_luminance(shade(v)) for v in np.linspace(0, 1, 11)]
    assert steps == sorted(steps, reverse=True)  # every step up is darker
    assert _luminance(shade(0.0)) > 0.75 > 0.15 > _luminance(shade(1.0))
    # Zero is still a colour, told apart from the white of a time with no entry.
    assert shade(0.0)[:3] != (1.0, 1.0, 1.0)


@pytest.mark.parametrize("x_mode", ["time", "hours"])
def test_heatmap_columns_sit_under_the_trend_points_of_the_same_entries(x_mode):
    """Stacked on the tracker, each entry's column is straight under its point: the same
    figure width, the same plot margins, the same x range, and each entry's time inside its
    own column, at the same pixel as its point on the trend."""
    times = tuple(T0 + timedelta(hours=h) for h in (0, 4, 8, 20, 24, 48, 52, 100))
    window = (T0 - timedelta(hours=14), T0 + timedelta(days=5))
    series = trend(
        points=tuple(TrendPoint(t, 10 + i, True) for i, t in enumerate(times)),
        x_mode=x_mode, window_start=window[0], window_end=window[1],
    )  # fmt: skip
    heat = replace(
        heatmap(columns=len(times), missing=()), times=times, x_mode=x_mode,
        episode_starts=series.episode_starts, window_start=window[0], window_end=window[1],
    )  # fmt: skip
    trend_fig, heat_fig = build_trend_figure(series), build_heatmap_figure(heat)
    trend_ax, heat_ax = trend_fig.axes[0], heat_fig.axes[0]
    assert trend_fig.get_size_inches()[0] == heat_fig.get_size_inches()[0]
    assert trend_ax.get_position().x0 == pytest.approx(heat_ax.get_position().x0)
    assert trend_ax.get_position().x1 == pytest.approx(heat_ax.get_position().x1)
    assert trend_ax.get_xlim() == pytest.approx(heat_ax.get_xlim())
    (line,) = data_lines(trend_ax)
    point_px = trend_ax.transData.transform(np.column_stack([line.get_xdata(), line.get_ydata()]))
    cells = _scored_cells(heat_ax)
    spans = sorted({(min(p.vertices[:, 0]), max(p.vertices[:, 0])) for p in cells.get_paths()})
    assert len(spans) == len(times)
    for x, px, (left, right) in zip(line.get_xdata(), point_px[:, 0], spans, strict=True):
        assert left < x < right  # the entry's time lies in its own column
        assert heat_ax.transData.transform((x, 0))[0] == pytest.approx(px)


@pytest.mark.parametrize("hours", [30, 72, 150, 340, 700])
def test_hours_axis_ticks_every_6_12_or_24_hours(hours):
    points = tuple(TrendPoint(T0 + timedelta(hours=h), 10, True) for h in range(0, hours + 1, 5))
    ax = build_trend_figure(trend(points=points, x_mode="hours")).axes[0]
    low, high = ax.get_xlim()
    ticks = [t for t in ax.get_xticks() if low <= t <= high]
    step = ticks[1] - ticks[0]
    assert step in (6, 12) or step % 24 == 0, ticks
    assert all(t % step == 0 for t in ticks)
    assert 4 <= len(ticks) <= 10, ticks


@pytest.mark.parametrize("days", [1, 3, 14, 60, 183, 400])
def test_no_date_offset_in_the_corner_and_every_tick_names_its_day(days):
    """ConciseDateFormatter writes the month and year it leaves off the ticks (e.g.
    "2026-Mar") as offset text under the axis's right end; the ticks carry it instead."""
    points = tuple(TrendPoint(T0 + timedelta(days=days) * i / 39, 10, True) for i in range(40))
    fig = build_trend_figure(trend(points=points))
    fig.canvas.draw()
    for ax in fig.axes:
        assert ax.xaxis.get_offset_text().get_text() == ""
    labels = [t.get_text() for t in fig.axes[0].get_xticklabels() if t.get_text()]
    months = "Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec"
    assert any(re.search(months, label) for label in labels), labels
    for build, make in ((build_domains_figure, domains), (build_heatmap_figure, heatmap)):
        fig = build(make())
        fig.canvas.draw()
        assert all(ax.xaxis.get_offset_text().get_text() == "" for ax in fig.axes)


def _css_rem(rule: str, prop: str) -> list[float]:
    css = (Path(__file__).parents[1] / "static" / "style.css").read_text()
    block = re.search(rf"(?m)^{re.escape(rule)} \{{([^}}]*)\}}", css).group(1)
    value = re.search(rf"(?:^|;)\s*{prop}:\s*([^;]+)", block).group(1)
    return [float(v.removesuffix("rem") or 0) for v in value.split()]


def test_tick_labels_are_as_large_as_the_pages_small_text_on_an_820_px_tablet():
    """At 820 px the chart is shrunk to the page's width; its tick labels, once shrunk,
    must still be at least as large as the page's small text (the hints, .95rem)."""
    root_px = 16  # html { font-size: 100% }
    small_text_px = _css_rem(".hint", "font-size")[0] * root_px
    main_padding_px = _css_rem("main", "padding")[1] * root_px  # left and right
    border_px = 1  # img.chart's border, inside its width (box-sizing: border-box)
    shown_px = 820 - 2 * main_padding_px - 2 * border_px
    for png, fig in (
        (render_trend(trend()), build_trend_figure(trend())),
        (render_heatmap(heatmap()), build_heatmap_figure(heatmap())),
        (render_domains(domains()), build_domains_figure(domains())),
    ):
        image_px = png_size(png)[0]
        assert image_px == fig.get_size_inches()[0] * fig.dpi
        scale = min(1.0, shown_px / image_px)
        sizes = [
            label.get_fontsize()
            for ax in fig.axes
            for label in (*ax.get_xticklabels(), *ax.get_yticklabels())
        ]
        assert sizes
        smallest_px = min(sizes) * fig.dpi / 72 * scale  # points -> image px -> CSS px
        assert smallest_px >= small_text_px, (image_px, min(sizes), smallest_px)
