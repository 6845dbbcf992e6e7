"""Chart series and rendering: pure functions, no app or database needed."""

from __future__ import annotations

import math
import re
import struct
import xml.etree.ElementTree as ET
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from matplotlib.collections import PolyCollection, QuadMesh

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
    assert png_size(render_trend(trend())) == (900, 400)
    assert png_size(render_domains(domains())) == (900, 600)
    width, height = png_size(render_heatmap(heatmap()))
    assert width == 900
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


def test_heatmap_shades_by_share_of_item_maximum_and_hatches_missing_cells():
    fig = build_heatmap_figure(heatmap())
    ax = fig.axes[0]
    (mesh,) = [c for c in ax.collections if isinstance(c, QuadMesh)]
    data = mesh.get_array()
    assert data.shape == (3, 5)
    assert data[1, 2] == pytest.approx(((1 + 2) % 5) / 4)
    assert data.mask[0, 1] and data.mask[2, 3]
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


def test_heatmap_keeps_the_latest_sixty_columns_and_says_so():
    series = heatmap(columns=75, missing={(1, 70), (1, 5)})
    ax = build_heatmap_figure(series).axes[0]
    assert "latest 60 of 75" in ax.get_title(loc="left")
    (mesh,) = [c for c in ax.collections if isinstance(c, QuadMesh)]
    assert mesh.get_array().shape == (3, 60)
    (missing,) = [c for c in ax.collections if isinstance(c, PolyCollection) and c.get_hatch()]
    assert len(missing.get_paths()) == 1  # column 5 fell out of the window
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert 1 <= len(labels) <= 12
    assert all(re.fullmatch(r"\d\d-\d\d \d\d:\d\d", label) for label in labels)
    latest = series.times[-1].astimezone(ZoneInfo("Europe/London"))
    assert labels[-1] == latest.strftime("%m-%d %H:%M")


def test_heatmap_tick_labels_use_site_local_time():
    series = replace(heatmap(columns=1), tz_name="Asia/Kolkata")
    labels = [t.get_text() for t in build_heatmap_figure(series).axes[0].get_xticklabels()]
    assert labels == ["11-10 19:30"]  # 14:00 UTC is 19:30 IST


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
