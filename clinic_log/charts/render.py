"""Draw chart series as PNG or SVG bytes: pure functions, data in, bytes out.

Built on ``matplotlib.figure.Figure`` with the Agg canvas and never pyplot, whose global
figure registry leaks unless every figure is closed (STYLE.md lesson 14). The
``build_*_figure`` functions return the Figure so tests can inspect the artists; the
``render_*`` functions add the file format.

Every string that comes from data (titles, labels) is drawn with ``parse_math=False``:
a patient identifier or label containing ``$`` must render literally, not as mathtext.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from io import BytesIO
from zoneinfo import ZoneInfo

import matplotlib
import numpy as np
from matplotlib import colormaps
from matplotlib import dates as mdates
from matplotlib.axes import Axes
from matplotlib.axis import Axis
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import PolyCollection
from matplotlib.colors import ListedColormap, Normalize
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.textpath import TextToPath
from matplotlib.ticker import FixedLocator, MaxNLocator, MultipleLocator, PercentFormatter
from matplotlib.transforms import (
    Affine2D,
    ScaledTranslation,
    blended_transform_factory,
    offset_copy,
)

from clinic_log.charts.series import (
    BandSpan,
    DomainSeries,
    HeatmapSeries,
    TrendPoint,
    TrendSeries,
    require_aware,
)

FORMATS = ("png", "svg")
DPI = 100
# Every chart is this wide, and the trend and its heatmap put their plots at the same
# distances from the edges, so that stacked on the tracker their time axes line up.
FIG_WIDTH_IN = 8.0
PLOT_LEFT_IN = 1.9  # room for the heatmap's item labels, two lines of them
PLOT_RIGHT_IN = 0.4  # half of a date label centred on the range's last day
# Text sizes in points. At 820 px the page shows an 800 px chart about 776 px wide, so a
# tick label of TICK_PT is TICK_PT * DPI / 72 * 776 / 800 CSS px: 15.5 px, no smaller than
# the page's small text (.hint, 0.95rem = 15.2 px). tests/test_chart_render.py works it out.
TICK_PT = 11.5
LABEL_PT = 11.5
TITLE_PT = 13
NOTE_PT = 10  # band names, episode starts, the heatmap's key
KEY_PT = 9  # the trend's key: its three entries fit on one line across the figure
EMPTY_TEXT = "No assessments in this range"
COMPLETE_LABEL = "complete total"
INCOMPLETE_LABEL = "incomplete (items not assessed; lower bound)"
# An incomplete total already in a band: that band is certain as a floor (TrendPoint.floor).
FLOOR_LABEL = "incomplete, at least the band it lies in"
KEY_LABEL = "_key"  # the key's sample lines; the leading underscore hides them from legends
EPISODE_LABEL = "episode start"
HOURS_LABEL = "Hours since episode start"
NOT_ASSESSED_LABEL = "not assessed"
# A heatmap cell reaches at most this far either side of its entry's time (hours), so a
# long gap between entries shows as a gap rather than as one wide cell.
HEATMAP_HALF_WIDTH_HOURS = 6.0
# Hours-since-start ticks: every 6 or 12 hours, or whole days, at most this many.
HOUR_STEPS = (6, 12, *(24 * days for days in (1, 2, 3, 4, 5, 6, 7, 14, 28, 56, 91)))
HOUR_TICKS_MAX = 10
_UNIX_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# Okabe–Ito colours, which stay distinguishable with the common colour-vision deficiencies.
LINE_COLOUR = "#0072B2"  # blue
# Band fills in order of increasing total: sky blue, yellow, orange, vermillion, then
# reddish purple for a fifth band. Drawn with a low alpha so they read as a pale backdrop.
BAND_COLOURS = ("#56B4E9", "#F0E442", "#E69F00", "#D55E00", "#CC79A7")
BAND_ALPHA = 0.18
TEXT_COLOUR = "#333333"
MUTED_COLOUR = "#666666"
GRID_COLOUR = "#e3e3e3"
NOT_ASSESSED_FACE = "#e6e6e6"
NOT_ASSESSED_HATCH = "#a0a0a0"
# One hue from pale to dark (matplotlib's "Blues", which brightens evenly and reads in every
# common colour-vision deficiency): zero is the palest cell and the maximum the darkest. Its
# first eighth, near white, is left out so a zero stays visible against a time with no entry.
HEATMAP_CMAP = ListedColormap(colormaps["Blues"](np.linspace(0.12, 1.0, 256)), name="clinic_log")
# Incomplete totals are hollow markers: a circle, or for a floor a triangle pointing up (the
# true total is this or higher).
_HOLLOW = {"markerfacecolor": "white", "markeredgecolor": LINE_COLOUR, "markeredgewidth": 1.4}
_INCOMPLETE_MARKER = {"marker": "o", "markersize": 5.5, "label": INCOMPLETE_LABEL, **_HOLLOW}
_FLOOR_MARKER = {"marker": "^", "markersize": 6.5, "label": FLOOR_LABEL, **_HOLLOW}

# Save-time settings. svg.hashsalt fixes the ids matplotlib writes into SVG, so the same
# series gives the same bytes; svg.fonttype "none" keeps text as <text>, which is smaller,
# searchable and readable by assistive technology.
_SAVE_RC = {"svg.hashsalt": "clinic_log", "svg.fonttype": "none"}
_METADATA = {"svg": {"Date": None}, "png": {"Software": None}}

# matplotlib is not thread-safe and rc_context changes global state for the duration of a
# save, so renders from a threaded server take turns.
_RENDER_LOCK = threading.Lock()


# --- public API -----------------------------------------------------------------------------


def render_trend(series: TrendSeries, fmt: str = "png") -> bytes:
    """Draw a scale total over time as PNG or SVG bytes.

    :raise ValueError: for a format other than "png" or "svg", or an invalid series.
    """
    _check_format(fmt)
    with _RENDER_LOCK:
        return _save(build_trend_figure(series), fmt)


def render_heatmap(series: HeatmapSeries, fmt: str = "png") -> bytes:
    """Draw item scores (rows) per assessment (columns) as PNG or SVG bytes.

    :raise ValueError: for a format other than "png" or "svg", or an invalid series.
    """
    _check_format(fmt)
    with _RENDER_LOCK:
        return _save(build_heatmap_figure(series), fmt)


def render_domains(series: DomainSeries, fmt: str = "png") -> bytes:
    """Draw stacked symptom-domain panels on one shared time axis as PNG or SVG bytes.

    :raise ValueError: for a format other than "png" or "svg", or an invalid series.
    """
    _check_format(fmt)
    with _RENDER_LOCK:
        return _save(build_domains_figure(series), fmt)


def build_trend_figure(series: TrendSeries) -> Figure:
    """Build the trend chart: totals as a line, bands shaded, episode starts marked.

    Complete totals are joined by the line (broken at each episode start); incomplete
    totals are lower bounds, so they are drawn as hollow markers and never joined: a
    triangle pointing up where the lower bound already lies in a band (at least that band),
    a circle where it reaches none.
    """
    if series.x_mode not in ("time", "hours"):
        raise ValueError(f"unknown x_mode {series.x_mode!r}; use 'time' or 'hours'")
    _check_y_range(series.y_min, series.y_max)
    tz = ZoneInfo(series.tz_name)
    points = sorted(series.points, key=lambda p: require_aware(p.at, "TrendPoint.at"))
    starts = sorted(require_aware(s, "episode start") for s in series.episode_starts)
    window = [
        require_aware(w, "window bound") if w is not None else None
        for w in (series.window_start, series.window_end)
    ]
    has_incomplete = any(not p.complete for p in points)

    height = 4.0
    fig = _new_figure((FIG_WIDTH_IN, height))
    _shared_margins(fig, bottom_in=0.62, top_in=0.78 if has_incomplete else 0.5)
    ax = fig.add_subplot()
    _style_axes(ax)
    _title(ax, series.title, pad=24 if has_incomplete else 8)
    ax.set_ylabel(series.y_label, fontsize=LABEL_PT, parse_math=False)
    _integer_y_axis(ax, series.y_min, series.y_max, intervals=range(4, 9))
    _draw_bands(ax, series.bands, series.y_min, series.y_max)

    times = [p.at for p in points]
    to_x = _x_converter(series.x_mode, times[0] if times else None, starts, window[0])
    if to_x is None:  # hours mode with nothing to count hours from
        ax.set_xticks([])
    else:
        _time_x_axis(ax, series.x_mode, tz, to_x, times, starts, window)
        if points:
            _draw_totals(ax, points, starts, to_x, has_incomplete)
    ax.set_xlabel(_x_label(series.x_mode, series.tz_name), fontsize=LABEL_PT, parse_math=False)
    _fix_label_positions(ax, series.y_min, series.y_max)
    if not points:
        _empty_text(ax)
    return fig


def _x_label(x_mode: str, tz_name: str) -> str:
    return HOURS_LABEL if x_mode == "hours" else f"Observed ({tz_name})"


def _shared_margins(fig: Figure, bottom_in: float, top_in: float) -> None:
    """The plot's place in the figure: the same left and right for the trend and the
    heatmap (so their time axes line up when stacked), the given bottom and top in inches."""
    width, height = fig.get_size_inches()
    fig.subplots_adjust(
        left=PLOT_LEFT_IN / width,
        right=1 - PLOT_RIGHT_IN / width,
        bottom=bottom_in / height,
        top=1 - top_in / height,
    )


def _time_x_axis(
    ax: Axes,
    x_mode: str,
    tz: ZoneInfo,
    to_x: Callable[[datetime], float],
    times: Sequence[datetime],
    starts: Sequence[datetime],
    window: Sequence[datetime | None],
    label_starts: bool = True,
) -> None:
    """The x range, ticks and episode-start lines, the same for a trend and its heatmap."""
    before = [s for s in starts if times and s <= times[0]]
    limits = _x_limits(
        [to_x(t) for t in times],
        [to_x(w) if w is not None else None for w in window],
        minimum_pad=6.0 if x_mode == "hours" else 0.5,
        lead_in=to_x(before[-1]) if before else None,
    )
    if limits is None:  # no points and no window: nothing to place on the axis
        ax.set_xticks([])
        return
    ax.set_xlim(*limits)
    if x_mode == "hours":
        ax.xaxis.set_major_locator(MultipleLocator(_hour_step(*limits)))
    else:
        _local_date_axis(ax.xaxis, tz)
    _draw_episode_starts(ax, [to_x(s) for s in starts], limits, labelled=label_starts)


def _hour_step(low: float, high: float) -> int:
    """The smallest of 6 hours, 12 hours or a whole number of days that puts at most
    HOUR_TICKS_MAX ticks between ``low`` and ``high`` (hours)."""
    for step in HOUR_STEPS:
        if math.floor(high / step) - math.ceil(low / step) + 1 <= HOUR_TICKS_MAX:
            return step
    return HOUR_STEPS[-1]


def _draw_totals(
    ax: Axes,
    points: Sequence[TrendPoint],
    starts: Sequence[datetime],
    to_x: Callable[[datetime], float],
    has_incomplete: bool,
) -> None:
    """One line for complete totals and a hollow-marker set for each kind of incomplete one."""
    x = np.array([to_x(p.at) for p in points], dtype=float)
    y = np.array([p.total for p in points], dtype=float)
    complete = np.array([p.complete for p in points], dtype=bool)
    floor = np.array([not p.complete and p.floor is not None for p in points], dtype=bool)
    plain = ~complete & ~floor
    start_x = np.array([to_x(s) for s in starts], dtype=float)
    if complete.any():
        xc, yc = _break_at(x[complete], y[complete], start_x)
        ax.plot(
            xc,
            yc,
            color=LINE_COLOUR,
            linewidth=1.6,
            marker="o",
            markersize=5,
            zorder=3,
            label=COMPLETE_LABEL,
        )
    for shown, style in ((plain, _INCOMPLETE_MARKER), (floor, _FLOOR_MARKER)):
        if shown.any():
            ax.plot(x[shown], y[shown], linestyle="none", zorder=4, **style)
    if has_incomplete:
        _draw_key(ax, complete.any(), plain.any(), floor.any())


def _draw_key(ax: Axes, has_complete: bool, has_plain: bool, has_floor: bool) -> None:
    """A one-line legend above the plot's top-left corner: line style, then hollow markers.

    Drawn as small lines and texts: matplotlib's Legend lays itself out with
    offset boxes on every draw, about an eighth of a 200-point chart's render time.
    """
    # Offsets in points from the axes' top-left corner, whatever the figure size.
    # Offsets in points from the figure's left edge (under the title) and the axes' top.
    fig = ax.get_figure()
    at = (
        Affine2D().scale(1 / 72)
        + fig.dpi_scale_trans
        + ScaledTranslation(0, 1, blended_transform_factory(fig.transFigure, ax.transAxes))
    )
    y, x = 11.0, 7.0
    style = {"transform": at, "clip_on": False, "color": LINE_COLOUR}
    text = {"transform": at, "va": "center", "fontsize": KEY_PT, "color": TEXT_COLOUR}
    if has_complete:
        ax.add_line(
            Line2D(
                [x, x + 10, x + 20],
                [y] * 3,
                linewidth=1.6,
                marker="o",
                markersize=5,
                markevery=[1],
                label=KEY_LABEL,
                **style,
            )
        )
        ax.text(x + 24, y, COMPLETE_LABEL, **text)
        x += 24 + _text_width(COMPLETE_LABEL, KEY_PT) + 14
    shown = [(has_plain, _INCOMPLETE_MARKER), (has_floor, _FLOOR_MARKER)]
    for marker in [m for has, m in shown if has]:
        ax.add_line(
            Line2D([x + 10], [y], linestyle="none", **{**marker, "label": KEY_LABEL}, **style)
        )
        ax.text(x + 24, y, marker["label"], **text)
        x += 24 + _text_width(marker["label"], KEY_PT) + 14


@lru_cache(maxsize=16)
def _text_width(text: str, size: float) -> float:
    """Width in points of ``text`` in the default font, from font metrics (no renderer)."""
    width, _, _ = TextToPath().get_text_width_height_descent(
        text, FontProperties(size=size), ismath=False
    )
    return width


def _x_converter(
    x_mode: str,
    first: datetime | None,
    starts: Sequence[datetime],
    window_start: datetime | None,
) -> Callable[[datetime], float] | None:
    """Return datetime -> x position: matplotlib date numbers, or hours since the origin.

    The hours origin is the start of the episode the first point (at ``first``) belongs to
    (the latest episode start at or before it), or the first point itself when no start
    precedes it.
    """
    if x_mode == "time":
        return _date_numbers()
    reference = first or window_start or (starts[0] if starts else None)
    if reference is None:
        return None
    before = [s for s in starts if s <= reference]
    origin = before[-1] if before else reference
    return lambda at: (at - origin) / timedelta(hours=1)


def _date_numbers() -> Callable[[datetime], float]:
    """Return aware datetime -> matplotlib date number (days since the rc date epoch).

    Plain arithmetic on the POSIX timestamp, which is UTC whatever the datetime's zone, is
    several times faster than date2num per value; the axis shows the site's local time.
    """
    epoch = float(mdates.date2num(_UNIX_EPOCH))
    return lambda at: at.timestamp() / 86400.0 + epoch


def _x_limits(
    xs: Sequence[float],
    window: Sequence[float | None],
    minimum_pad: float,
    lead_in: float | None = None,
) -> tuple[float, float] | None:
    """The window where given; otherwise the data range with a little room each side.

    ``lead_in`` is the start of the first point's episode: the range reaches back to it
    when it is close (within a quarter of the data range), so the start line shows, but a
    long-ago start does not squash the data into one edge.
    """
    lo = window[0] if window[0] is not None else (min(xs) if xs else None)
    hi = window[1] if window[1] is not None else (max(xs) if xs else None)
    if lo is None or hi is None:
        return None
    if window[0] is None and lead_in is not None and lead_in < lo:
        if lo - lead_in <= max((hi - lo) * 0.25, minimum_pad):
            lo = lead_in
    if hi <= lo:
        return lo - minimum_pad, hi + minimum_pad
    pad = (hi - lo) * 0.03
    return (
        lo if window[0] is not None else lo - pad,
        hi if window[1] is not None else hi + pad,
    )


def _break_at(x: np.ndarray, y: np.ndarray, start_x: np.ndarray) -> tuple[np.ndarray, ...]:
    """Insert a gap (NaN) between consecutive points that lie in different episodes."""
    if not start_x.size or x.size < 2:
        return x, y
    episode = np.searchsorted(start_x, x, side="right")
    gaps = np.nonzero(np.diff(episode))[0] + 1
    return np.insert(x, gaps, np.nan), np.insert(y, gaps, np.nan)


def _draw_bands(ax: Axes, bands: Sequence[BandSpan], y_min: int, y_max: int) -> None:
    """Shade each published band; totals are integers, so a band covers low-0.5..high+0.5."""
    label_at = blended_transform_factory(ax.transAxes, ax.transData)
    for index, band in enumerate(sorted(bands, key=lambda b: b.low)):
        low = max(band.low - 0.5, y_min - 0.5)
        high = min(band.high + 0.5, y_max + 0.5)
        if high <= low:
            continue  # the band lies outside the scale's range
        colour = BAND_COLOURS[index % len(BAND_COLOURS)]
        ax.axhspan(low, high, facecolor=colour, alpha=BAND_ALPHA, linewidth=0, zorder=0.5)
        # Under the data (zorder 3) so a point at the right edge is never hidden by a label.
        ax.text(
            0.995,
            (low + high) / 2,
            band.label,
            transform=label_at,
            ha="right",
            va="center",
            fontsize=NOTE_PT,
            color=TEXT_COLOUR,
            zorder=2.5,
            parse_math=False,
        )


def _draw_episode_starts(
    ax: Axes, xs: Sequence[float], limits: tuple[float, float], labelled: bool = True
) -> None:
    shown = [x for x in xs if limits[0] <= x <= limits[1]]
    if not shown:
        return
    on_x = ax.get_xaxis_transform()  # x in data units; y from 0 (bottom) to 1 (top) of the axes
    ax.vlines(
        shown,
        0,
        1,
        transform=on_x,
        colors=MUTED_COLOUR,
        linestyles=(0, (4, 3)),
        linewidth=1,
        zorder=2,
    )
    for x in shown if labelled else ():
        ax.text(
            x,
            0.98,
            EPISODE_LABEL,
            transform=on_x,
            rotation=90,
            ha="right",
            va="top",
            fontsize=NOTE_PT,
            color=MUTED_COLOUR,
            zorder=2.5,
        )


# --- heatmap --------------------------------------------------------------------------------


def build_heatmap_figure(series: HeatmapSeries) -> Figure:
    """Build the item heatmap: one row per item, one column per assessment, on the time axis
    of the scale's trend (the same range, ticks and plot margins).

    Each cell is centred on its entry's time, reaching halfway to the neighbouring entries
    and at most HEATMAP_HALF_WIDTH_HOURS either side, and shaded by score / item maximum;
    not-assessed cells are light grey with a diagonal hatch.
    """
    if series.x_mode not in ("time", "hours"):
        raise ValueError(f"unknown x_mode {series.x_mode!r}; use 'time' or 'hours'")
    tz = ZoneInfo(series.tz_name)
    n_rows = len(series.item_labels)
    if len(series.item_max) != n_rows or len(series.scores) != n_rows:
        raise ValueError("item_labels, item_max and scores must have one entry per item")
    if any(len(row) != len(series.times) for row in series.scores):
        raise ValueError("every scores row needs one entry per time")
    for t in series.times:
        require_aware(t, "HeatmapSeries.times")
    starts = sorted(require_aware(s, "episode start") for s in series.episode_starts)
    window = [
        require_aware(w, "window bound") if w is not None else None
        for w in (series.window_start, series.window_end)
    ]
    order = sorted(range(len(series.times)), key=series.times.__getitem__)
    xlabel = _x_label(series.x_mode, series.tz_name)
    if not n_rows or not order:
        return _empty_figure(series.title, xlabel, (FIG_WIDTH_IN, 3))

    data = np.full((n_rows, len(order)), np.nan)
    for row, (label, top, scores) in enumerate(
        zip(series.item_labels, series.item_max, series.scores, strict=True)
    ):
        for col, index in enumerate(order):
            score = scores[index]
            if score is None:
                continue
            if not 0 <= score <= top:
                raise ValueError(f"score {score} for {label!r} is outside 0..{top}")
            data[row, col] = score / top if top > 0 else 0.0

    labels = [_wrap_label(label) for label in series.item_labels]
    lines = max(label.count("\n") + 1 for label in labels)
    row_height = 0.3 + 0.16 * (lines - 1)
    top_in, bottom_in = 0.5, 1.5
    fig = _new_figure((FIG_WIDTH_IN, top_in + bottom_in + row_height * n_rows))
    _shared_margins(fig, bottom_in=bottom_in, top_in=top_in)
    ax = fig.add_subplot()
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.tick_params(labelsize=TICK_PT, colors=TEXT_COLOUR)

    times = [series.times[i] for i in order]
    to_x = _x_converter(series.x_mode, times[0], starts, window[0])
    _time_x_axis(ax, series.x_mode, tz, to_x, times, starts, window, label_starts=False)
    edges = _cell_edges(
        [to_x(t) for t in times],
        HEATMAP_HALF_WIDTH_HOURS / (1 if series.x_mode == "hours" else 24),
    )
    scored = ~np.isnan(data)
    # White edges keep neighbouring cells of similar shade apart, unless the cells are too
    # narrow to spare them.
    low, high = ax.get_xlim()
    plot_width_pt = (FIG_WIDTH_IN - PLOT_LEFT_IN - PLOT_RIGHT_IN) * 72
    narrowest = min(right - left for left, right in edges) / (high - low) * plot_width_pt
    edge = {"edgecolors": "white", "linewidths": 0.8 if narrowest >= 4 else 0}

    def cells(mask: np.ndarray) -> list:
        rows, cols = np.nonzero(mask)
        return [
            ((edges[c][0], r), (edges[c][1], r), (edges[c][1], r + 1), (edges[c][0], r + 1))
            for r, c in zip(rows.tolist(), cols.tolist(), strict=True)
        ]

    shaded = PolyCollection(
        cells(scored), cmap=HEATMAP_CMAP, norm=Normalize(0, 1), zorder=1.5, **edge
    )
    shaded.set_array(data[scored])
    ax.add_collection(shaded, autolim=False)
    if not scored.all():
        # One collection for every not-assessed cell rather than an artist per cell.
        ax.add_collection(
            PolyCollection(
                cells(~scored),
                facecolors=NOT_ASSESSED_FACE,
                hatch="///",
                zorder=1.5,
                **{**edge, "edgecolors": NOT_ASSESSED_HATCH, "linewidths": 0},
            ),
            autolim=False,
        )
    ax.set_ylim(n_rows, 0)  # first item at the top
    ax.set_yticks(np.arange(n_rows) + 0.5, labels, fontsize=TICK_PT, parse_math=False)
    ax.tick_params(axis="y", length=0)
    ax.grid(True, axis="x", color=GRID_COLOUR, linewidth=0.6)
    ax.set_axisbelow(True)
    ax.set_xlabel(xlabel, fontsize=LABEL_PT, parse_math=False)
    below = 3.5 + 3.5 + TICK_PT * 1.5 + 3  # tick, pad, a line of tick labels, label pad
    ax.xaxis.set_label_coords(0.5, 0, offset_copy(ax.transAxes, fig, y=-below, units="points"))
    _title(ax, series.title)
    _heatmap_key(fig, ax, shaded, has_missing=not scored.all())
    return fig


def _cell_edges(xs: Sequence[float], half: float) -> list[tuple[float, float]]:
    """Left and right of each entry's cell: halfway to its neighbours, at most ``half``."""
    edges = []
    for i, x in enumerate(xs):
        left = max(x - half, (xs[i - 1] + x) / 2) if i else x - half
        right = min(x + half, (x + xs[i + 1]) / 2) if i + 1 < len(xs) else x + half
        edges.append((left, right))
    return edges


def _heatmap_key(fig: Figure, ax: Axes, shaded: PolyCollection, has_missing: bool) -> None:
    """Under the time axis: the colour bar at the right, the not-assessed swatch at the left."""
    width, height = fig.get_size_inches()
    box = ax.get_position()
    bar_width_in, bar_height_in, bar_bottom_in = 2.0, 0.14, 0.42
    cax = fig.add_axes(
        (box.x1 - bar_width_in / width, bar_bottom_in / height, bar_width_in / width,
         bar_height_in / height)
    )  # fmt: skip
    bar = fig.colorbar(shaded, cax=cax, orientation="horizontal", ticks=[0, 0.5, 1])
    bar.ax.xaxis.set_major_formatter(PercentFormatter(xmax=1))
    bar.ax.tick_params(labelsize=TICK_PT, colors=TEXT_COLOUR, length=3)
    bar.ax.set_ylabel(
        "share of item maximum", rotation=0, ha="right", va="center", fontsize=NOTE_PT
    )
    bar.outline.set_visible(False)
    if has_missing:
        key = Patch(
            facecolor=NOT_ASSESSED_FACE,
            edgecolor=NOT_ASSESSED_HATCH,
            hatch="///",
            linewidth=0,
            label=NOT_ASSESSED_LABEL,
        )
        fig.legend(
            handles=[key],
            loc="center left",
            bbox_to_anchor=(0.1 / width, (bar_bottom_in + bar_height_in / 2) / height),
            frameon=False,
            fontsize=NOTE_PT,
            handlelength=1.6,
            handleheight=1.2,
            borderaxespad=0,
        )


def _wrap_label(label: str) -> str:
    """An item label in at most two lines that fit left of the plot, cut with … if longer."""
    room = (PLOT_LEFT_IN - 0.2) * 72
    lines: list[str] = []
    for word in label.split():
        if lines and _text_width(f"{lines[-1]} {word}", TICK_PT) <= room:
            lines[-1] += f" {word}"
        else:
            lines.append(word)
    if len(lines) > 2:
        lines = [lines[0], " ".join(lines[1:])]
    for n, line in enumerate(lines):
        if _text_width(line, TICK_PT) > room:
            while line and _text_width(line + "…", TICK_PT) > room:
                line = line[:-1]
            lines[n] = line.rstrip() + "…"
    return "\n".join(lines)


# --- domains --------------------------------------------------------------------------------


def build_domains_figure(series: DomainSeries) -> Figure:
    """Build small stacked panels (one per domain) sharing one local-time x axis.

    A ``None`` score leaves a gap in its panel's line rather than being drawn as zero.
    """
    tz = ZoneInfo(series.tz_name)
    to_x = _date_numbers()
    xlabel = f"Observed ({series.tz_name})"
    times = [require_aware(at, "DomainPanel point") for p in series.panels for at, _ in p.points]
    if not times:
        return _empty_figure(series.title, xlabel, (FIG_WIDTH_IN, 6))
    for panel in series.panels:
        _check_y_range(0, panel.y_max)

    fig = _new_figure((FIG_WIDTH_IN, 6))
    fig.subplots_adjust(left=0.11, right=0.98, bottom=0.11, top=0.92, hspace=0.22)
    axes = fig.subplots(len(series.panels), 1, sharex=True, squeeze=False)[:, 0]
    for ax, panel in zip(axes, series.panels, strict=True):
        _style_axes(ax)
        _integer_y_axis(ax, 0, panel.y_max, intervals=range(2, 5))
        ax.set_ylabel(panel.label, fontsize=NOTE_PT, parse_math=False)
        x = np.array([to_x(at) for at, _ in panel.points], dtype=float)
        y = np.array([np.nan if v is None else v for _, v in panel.points], dtype=float)
        order = np.argsort(x, kind="stable")
        if np.isnan(y).all():
            ax.text(
                0.5,
                0.5,
                "not assessed in this range",
                transform=ax.transAxes,
                ha="center",
                va="center",
                fontsize=NOTE_PT,
                color=MUTED_COLOUR,
            )
        else:
            # NaN breaks the line, so a not-assessed time shows as a gap, not as zero.
            ax.plot(
                x[order],
                y[order],
                color=LINE_COLOUR,
                linewidth=1.4,
                marker="o",
                markersize=3.5,
                zorder=3,
            )
    xs = [to_x(at) for at in times]
    limits = _x_limits(xs, (None, None), minimum_pad=0.5)
    if limits is not None:  # always, as there is at least one time
        axes[-1].set_xlim(*limits)
    _local_date_axis(axes[-1].xaxis, tz)  # shared: sharex shares the tickers too
    axes[-1].set_xlabel(xlabel, fontsize=LABEL_PT, parse_math=False)
    for ax, panel in zip(axes, series.panels, strict=True):
        _fix_label_positions(ax, 0, panel.y_max)
    _title(axes[0], series.title)
    return fig


def _check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise ValueError(f"unknown chart format {fmt!r}; use 'png' or 'svg'")


def _check_y_range(y_min: int, y_max: int) -> None:
    if y_max <= y_min:
        raise ValueError(f"y range {y_min}..{y_max} is empty")


def _new_figure(size: tuple[float, float]) -> Figure:
    # layout="none": fixed margins are much cheaper than a layout engine on every request,
    # and stay right even if the process's rcParams turn one on.
    fig = Figure(figsize=size, dpi=DPI, layout="none")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, fmt: str) -> bytes:
    buffer = BytesIO()
    with matplotlib.rc_context(_SAVE_RC):
        fig.savefig(buffer, format=fmt, dpi=DPI, metadata=_METADATA[fmt])
    return buffer.getvalue()


def _title(ax: Axes, text: str, pad: float = 8) -> None:
    # An explicit y stops matplotlib measuring every tick label at draw time to place the
    # title clear of a top axis we never draw, a large share of a trend chart's render time.
    title = ax.set_title(text, loc="left", fontsize=TITLE_PT, y=1.0, pad=pad, parse_math=False)
    # From the figure's left edge (a tenth of an inch in), over the margin the heatmap's
    # item labels need: the longest titles then fit.
    fig = ax.get_figure()
    box = ax.get_position()
    title.set_x((0.1 / fig.get_size_inches()[0] - box.x0) / box.width)


def _style_axes(ax: Axes) -> None:
    ax.spines[["top", "right"]].set_visible(False)
    ax.tick_params(labelsize=TICK_PT, colors=TEXT_COLOUR)
    ax.grid(True, color=GRID_COLOUR, linewidth=0.6)
    ax.set_axisbelow(True)


def _integer_y_axis(ax: Axes, y_min: int, y_max: int, intervals: range) -> None:
    """Integer y ticks from y_min to y_max, both ends labelled when the range allows.

    A step that divides the range evenly (COWS 0–48 in steps of 12) is preferred, a round
    one (1, 2, 5 × 10ⁿ) first; otherwise matplotlib picks integer ticks. Half a unit of
    room each side keeps markers at the extremes whole.
    """
    ax.set_ylim(y_min - 0.5, y_max + 0.5)
    span = y_max - y_min
    fitting = [n for n in intervals if span % n == 0]
    round_ones = [n for n in fitting if _is_round(span // n)]
    if fitting:
        step = span // (round_ones or fitting)[0]
        ax.yaxis.set_major_locator(FixedLocator(list(range(y_min, y_max + 1, step))))
    else:
        ax.yaxis.set_major_locator(MaxNLocator(nbins=intervals.stop - 1, integer=True))


def _is_round(step: int) -> bool:
    while step % 10 == 0:
        step //= 10
    return step in (1, 2, 5)


def _fix_label_positions(ax: Axes, y_min: int, y_max: int) -> None:
    """Place the axis labels at fixed offsets from the axes, outside the tick labels.

    Left to itself, matplotlib measures every tick label at draw time to place them (about
    a tenth of a trend chart's render time). Our tick labels have known sizes: one line of
    TICK_PT text below, and integers of known width at the left.
    """
    fig = ax.get_figure()
    digits = max(len(str(y_min)), len(str(y_max)))
    # Tick, pad, digits (0.65 em each), label pad; then tick, pad, a line of text, label pad.
    left = 3.5 + 3.5 + 0.65 * TICK_PT * digits + 4
    below = 3.5 + 3.5 + 1.5 * TICK_PT + 3
    ax.yaxis.set_label_coords(0, 0.5, offset_copy(ax.transAxes, fig, x=-left, units="points"))
    ax.xaxis.set_label_coords(0.5, 0, offset_copy(ax.transAxes, fig, y=-below, units="points"))


# ConciseDateFormatter's formats by tick level (years, months, days, hours, minutes,
# seconds), and for the tick that starts the level above (a midnight among hours, the 1st
# among days). Its default leaves the month or year off the ticks and writes it once as
# offset text ("2026-Mar") under the axis's right end, where it reads as a stray label; here
# every day tick names its month, every midnight its day, and there is no offset text.
_DATE_FORMATS = ["%Y", "%b %Y", "%d %b", "%H:%M", "%H:%M", "%S.%f"]
_DATE_ZERO_FORMATS = ["", "%b %Y", "%d %b", "%d %b", "%H:%M", "%H:%M"]


class _DatedFormatter(mdates.ConciseDateFormatter):
    """ConciseDateFormatter without its offset text, whose first tick names its day when
    no tick does (a span of hours that holds no midnight)."""

    def format_ticks(self, values):
        labels = super().format_ticks(values)
        if labels and values is not None and len(values) and all(":" in x for x in labels):
            first = mdates.num2date(values[0], tz=self._tz)
            labels[0] = first.strftime("%d %b ") + labels[0]
        return labels


def _local_date_axis(axis: Axis, tz: ZoneInfo) -> None:
    """Tick and label a date axis in the site's zone; suits spans of an hour to a year."""
    # Eight ticks at most: a "12 Mar" of TICK_PT text then keeps clear of the next one.
    locator = mdates.AutoDateLocator(tz=tz, minticks=3, maxticks=8)
    axis.set_major_locator(locator)
    axis.set_major_formatter(
        _DatedFormatter(
            locator,
            tz=tz,
            formats=_DATE_FORMATS,
            zero_formats=_DATE_ZERO_FORMATS,
            show_offset=False,
        )
    )


def _empty_text(ax: Axes) -> None:
    ax.text(
        0.5,
        0.5,
        EMPTY_TEXT,
        transform=ax.transAxes,
        ha="center",
        va="center",
        fontsize=TITLE_PT,
        color=MUTED_COLOUR,
        # A white backing keeps the message readable over the band shading.
        bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.85, "pad": 4},
    )


def _empty_figure(title: str, xlabel: str, size: tuple[float, float]) -> Figure:
    fig = _new_figure(size)
    fig.subplots_adjust(
        left=0.075, right=0.98, bottom=0.14 * 4 / size[1], top=1 - 0.12 * 4 / size[1]
    )
    ax = fig.add_subplot()
    _style_axes(ax)
    ax.set_xticks([])
    ax.set_yticks([])
    _title(ax, title)
    ax.set_xlabel(xlabel, fontsize=LABEL_PT, parse_math=False)
    _empty_text(ax)
    return fig
