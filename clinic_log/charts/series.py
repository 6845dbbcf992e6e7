"""Chart series: the plain values the app hands to the renderer, and their alt text.

These are the whole contract between the app and ``clinic_log.charts.render``: the app
queries, filters and labels; the renderer only draws what it is given. All datetimes are
aware UTC (as everywhere inside the app); charts show them in the site's time zone.
Severity bands are the scales' published, descriptive categories and nothing more.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

EMPTY_SUMMARY = "No assessments in this range."


@dataclass(frozen=True)
class TrendPoint:
    """One assessment total. ``complete`` is False when some items were not assessed."""

    at: datetime  # aware, UTC
    total: int  # a lower bound when incomplete
    complete: bool
    # How the total reads, in the app's one wording (Scale.severity): its band, "at least
    # Severe — incomplete, 1 item not assessed" or "Incomplete". None: not given.
    severity: str | None = None
    # Incomplete only: the band the lower bound already lies in, certain as a floor.
    floor: str | None = None


@dataclass(frozen=True)
class BandSpan:
    """A published severity band covering totals ``low``..``high`` (descriptive only)."""

    low: int
    high: int
    label: str


@dataclass(frozen=True)
class TrendSeries:
    """Totals of one scale for one patient over time, e.g. "COWS total — patient N-001"."""

    title: str
    y_label: str  # e.g. "COWS total (0–48)"
    y_min: int
    y_max: int
    bands: tuple[BandSpan, ...]  # may be empty: some scales publish none
    points: tuple[TrendPoint, ...]  # sorted by ``at``; active entries only
    episode_starts: tuple[datetime, ...]
    tz_name: str  # IANA zone of the site; the x axis shows its local time
    x_mode: str = "time"  # "time", or "hours" since the episode start of the first point
    window_start: datetime | None = None  # optional x range
    window_end: datetime | None = None


@dataclass(frozen=True)
class HeatmapSeries:
    """Item scores of one scale: items as rows, assessments as columns."""

    title: str
    tz_name: str
    item_labels: tuple[str, ...]  # rows, in item order
    item_max: tuple[int, ...]  # maximum score of each item, to normalise shading
    times: tuple[datetime, ...]  # columns (aware UTC, sorted)
    scores: tuple[tuple[int | None, ...], ...]  # scores[row][col]; None = not assessed
    # The time axis, exactly as the trend of the same scale has it, so that stacked under
    # the trend each column lies under its entry's point.
    x_mode: str = "time"
    episode_starts: tuple[datetime, ...] = ()
    window_start: datetime | None = None
    window_end: datetime | None = None


@dataclass(frozen=True)
class DomainPanel:
    """One symptom domain's score over time; ``None`` marks a time it was not assessed."""

    label: str
    y_max: int
    points: tuple[tuple[datetime, int | None], ...]


@dataclass(frozen=True)
class DomainSeries:
    """Small stacked panels sharing one time axis (anxiety, aches, insomnia, irritability)."""

    title: str
    tz_name: str
    panels: tuple[DomainPanel, ...]


def require_aware(value: datetime, what: str) -> datetime:
    """Return ``value`` if it carries a time zone.

    A naive datetime would be drawn hours away from where it belongs, so it is refused
    rather than guessed at.

    :raise ValueError: if ``value`` is naive.
    """
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{what} must be an aware datetime (UTC), got naive {value.isoformat()}")
    return value


def _scale_name(y_label: str) -> str:
    # "COWS total (0–48)" -> "COWS"; a label without "total" names no scale.
    head, sep, _ = y_label.partition(" total")
    return head.strip() if sep else ""


def _band_label(total: int, bands: tuple[BandSpan, ...]) -> str | None:
    for band in bands:
        if band.low <= total <= band.high:
            return band.label
    return None


def _extreme(value: int, points: list[TrendPoint]) -> str:
    # A value reached only by incomplete totals is a lower bound, and says so.
    if any(p.complete and p.total == value for p in points):
        return str(value)
    return f"{value} (incomplete)"


def _direction(series: TrendSeries, points: list[TrendPoint]) -> str | None:
    """Compare the first and last complete totals; None with fewer than two of them.

    Incomplete totals are lower bounds, so they would fake a fall; they are left out.
    A change within a tenth of the scale's range (at least 1) counts as "about the same".
    """
    complete = [p.total for p in points if p.complete]
    if len(complete) < 2:
        return None
    change = complete[-1] - complete[0]
    tolerance = max(1, (series.y_max - series.y_min) // 10)
    if change > tolerance:
        return "rising"
    if change < -tolerance:
        return "falling"
    return "about the same"


def summarise(series: TrendSeries) -> str:
    """Describe a trend in one or two sentences, for alt text and screen readers.

    For example: "12 COWS assessments from 2026-11-10 to 2026-11-24. Latest 6 (Mild),
    lowest 3, highest 24; falling." Dates are the site's local dates. An incomplete total
    is never given a band, only the floor its point states ("Latest 43 (at least Severe —
    incomplete, 1 item not assessed)"), and the direction uses complete totals only (it is
    left out when there are fewer than two).
    """
    points = sorted(series.points, key=lambda p: require_aware(p.at, "TrendPoint.at"))
    if not points:
        return EMPTY_SUMMARY
    tz = ZoneInfo(series.tz_name)
    count = len(points)
    name = _scale_name(series.y_label)
    noun = "assessment" if count == 1 else "assessments"
    what = f"{count} {name} {noun}" if name else f"{count} {noun}"
    first = points[0].at.astimezone(tz).date().isoformat()
    last = points[-1].at.astimezone(tz).date().isoformat()
    when = f"on {first}" if first == last else f"from {first} to {last}"

    latest = points[-1]
    if not latest.complete:
        # The app's wording says whether the lower bound has reached a band (a floor).
        latest_text = f"Latest {latest.total} ({latest.severity or 'incomplete'})"
    else:
        band = _band_label(latest.total, series.bands)
        latest_text = f"Latest {latest.total} ({band})" if band else f"Latest {latest.total}"
    if count == 1:
        return f"{what} {when}. {latest_text}."

    totals = [p.total for p in points]
    text = (
        f"{what} {when}. {latest_text}, lowest {_extreme(min(totals), points)}, "
        f"highest {_extreme(max(totals), points)}"
    )
    direction = _direction(series, points)
    return f"{text}; {direction}." if direction else f"{text}."
