"""From the database to chart series: what a chart shows, and the ETag that names it.

Charts show active entries only: amended and voided versions leave the chart (they stay in
the history). Each query here is one round trip, however many points a chart has.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from sqlalchemy import bindparam, func, select
from sqlalchemy.orm import joinedload

from ..extensions import db
from ..models import Assessment, AssessmentStatus, Episode, Patient
from ..scales import Scale
from ..timeutil import zone
from .series import (
    BandSpan,
    DomainPanel,
    DomainSeries,
    HeatmapSeries,
    TrendPoint,
    TrendSeries,
)

# Part of every ETag: a change to how charts are drawn must not be served from old caches.
# 2: an incomplete total already in a band is marked as a floor; 3: tablet-sized text, the
# heatmap on the trend's time axis, hour ticks of 6, 12 or 24 hours, no date offset text.
RENDERER_VERSION = "3"
DOMAIN_SCALE = "symptom_nrs"
DOMAIN_ITEMS = ("anxiety", "aches", "insomnia", "irritability")
X_MODES = ("time", "hours")
_ISO_DATE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")


class ChartRequestError(ValueError):
    """A chart request that cannot be answered as asked (a malformed or reversed range)."""


@dataclass(frozen=True)
class Window:
    """An optional observed-at range: [start, end) in UTC, from local dates of the site."""

    start: datetime | None = None
    end: datetime | None = None
    start_date: date | None = None
    end_date: date | None = None

    @property
    def key(self) -> str:
        return f"{self.start_date or ''}..{self.end_date or ''}"


def parse_window(start: str | None, end: str | None, tz_name: str) -> Window:
    """Read ``start``/``end`` (ISO dates, the site's local days; ``end`` inclusive).

    :raise ChartRequestError: a date that is not YYYY-MM-DD, or an end before the start.
    """
    start_date = _parse_date(start, "start")
    end_date = _parse_date(end, "end")
    if start_date and end_date and end_date < start_date:
        raise ChartRequestError("The end date is before the start date.")
    tz = zone(tz_name)
    return Window(
        start=datetime.combine(start_date, time(), tz).astimezone(zone("UTC"))
        if start_date
        else None,
        end=datetime.combine(end_date + timedelta(days=1), time(), tz).astimezone(zone("UTC"))
        if end_date
        else None,
        start_date=start_date,
        end_date=end_date,
    )


def _parse_date(raw: str | None, name: str) -> date | None:
    if not raw:
        return None
    parsed = None
    # fromisoformat alone would also take week dates such as 2026-W01-1.
    if _ISO_DATE.match(raw):
        try:
            parsed = date.fromisoformat(raw)
        except ValueError:
            parsed = None
    if parsed is None or not 2000 <= parsed.year <= 2100:
        raise ChartRequestError(f"The {name} date must look like 2026-03-04.")
    return parsed


def _active(patient: Patient, scale_key: str, window: Window):
    stmt = select(Assessment).where(
        Assessment.patient_id == patient.id,
        Assessment.scale_key == scale_key,
        Assessment.status == AssessmentStatus.ACTIVE,
    )
    if window.start is not None:
        stmt = stmt.where(Assessment.observed_at >= window.start)
    if window.end is not None:
        stmt = stmt.where(Assessment.observed_at < window.end)
    return stmt.order_by(Assessment.observed_at, Assessment.id)


def patient_episode_starts(patient: Patient) -> tuple[datetime, ...]:
    return tuple(
        db.session.scalars(
            select(Episode.started_at)
            .where(Episode.patient_id == patient.id)
            .order_by(Episode.started_at)
        )
    )


# Open ends of a window, so one prebuilt statement serves every window.
_EARLIEST = datetime(1900, 1, 1, tzinfo=zone("UTC"))
_LATEST = datetime(9999, 1, 1, tzinfo=zone("UTC"))


def _freshness_statement():
    of_patient = Episode.patient_id == bindparam("patient_id")
    return select(
        func.count(Assessment.id),
        func.coalesce(func.sum(Assessment.id), 0),
        func.coalesce(func.sum(Assessment.version), 0),
        select(func.count(Episode.id)).where(of_patient).scalar_subquery(),
        select(func.coalesce(func.sum(Episode.id), 0)).where(of_patient).scalar_subquery(),
    ).where(
        Assessment.patient_id == bindparam("patient_id"),
        Assessment.scale_key == bindparam("scale_key"),
        Assessment.status == AssessmentStatus.ACTIVE,
        Assessment.observed_at >= bindparam("start"),
        Assessment.observed_at < bindparam("end"),
    )


# Built once: every cached chart request runs it, and building a statement costs several
# times more than SQLite takes to answer it.
_FRESHNESS = _freshness_statement()


def freshness(patient: Patient, scale_key: str, window: Window) -> tuple:
    """What a chart's data looks like now, in one aggregate query and without loading rows.

    Entries are never edited in place: a new entry adds an id, an amendment or void takes an
    entry out of the active set and puts a new id in, and any update bumps ``version``. So
    (count, sum of ids, sum of versions) of the active rows, plus the episodes, changes
    whenever anything the chart draws changes.
    """
    params = {
        "patient_id": patient.id,
        "scale_key": scale_key,
        "start": window.start or _EARLIEST,
        "end": window.end or _LATEST,
    }
    return tuple(db.session.connection().execute(_FRESHNESS, params).one())


def etag(kind: str, patient: Patient, scale_key: str, *parts) -> str:
    """A strong validator from exactly what the chart shows: its data and its options."""
    digest = hashlib.sha256()
    for part in (RENDERER_VERSION, kind, patient.id, patient.site.timezone, scale_key, *parts):
        digest.update(f"{part}\x1f".encode())
    return digest.hexdigest()[:32]


def trend_series(
    patient: Patient,
    scale: Scale,
    window: Window,
    x_mode: str,
    rows: list[Assessment],
    episode_starts: tuple[datetime, ...],
) -> TrendSeries:
    return TrendSeries(
        title=f"{scale.short_name} total — patient {patient.identifier}",
        y_label=f"{scale.short_name} total ({scale.total_min}–{scale.total_max})",
        y_min=scale.total_min,
        y_max=scale.total_max,
        bands=tuple(BandSpan(b.low, b.high, b.label) for b in scale.bands),
        points=tuple(_trend_point(scale, a) for a in rows),
        episode_starts=episode_starts,
        tz_name=patient.site.timezone,
        x_mode=x_mode,
        window_start=window.start,
        window_end=window.end,
    )


def _trend_point(scale: Scale, entry: Assessment) -> TrendPoint:
    """An entry's total, worded as every page words it (Scale.severity), with its floor."""
    severity = scale.severity(entry.total, entry.complete, entry.not_assessed_count)
    floor = severity.floor.label if severity.floor is not None else None
    return TrendPoint(entry.observed_at, entry.total, entry.complete, severity.text, floor)


def trend_rows(patient: Patient, scale: Scale, window: Window) -> list[Assessment]:
    return list(db.session.scalars(_active(patient, scale.key, window)))


def item_rows(patient: Patient, scale_key: str, window: Window) -> list[Assessment]:
    """Active assessments with their item scores, in one query whatever their number."""
    stmt = _active(patient, scale_key, window).options(joinedload(Assessment.item_scores))
    return list(db.session.scalars(stmt).unique())


def heatmap_series(
    patient: Patient,
    scale: Scale,
    rows: list[Assessment],
    window: Window | None = None,
    x_mode: str = "time",
    episode_starts: tuple[datetime, ...] = (),
) -> HeatmapSeries:
    """The item scores, on the time axis the scale's trend has for the same window."""
    window = window or Window()
    by_assessment = [{s.item_key: s.score for s in a.item_scores} for a in rows]
    return HeatmapSeries(
        title=f"{scale.short_name} item scores — patient {patient.identifier}",
        tz_name=patient.site.timezone,
        item_labels=tuple(item.label for item in scale.items),
        item_max=tuple(item.max_score for item in scale.items),
        times=tuple(a.observed_at for a in rows),
        scores=tuple(
            tuple(scores.get(item.key) for scores in by_assessment) for item in scale.items
        ),
        x_mode=x_mode,
        episode_starts=episode_starts,
        window_start=window.start,
        window_end=window.end,
    )


def domain_series(patient: Patient, scale: Scale, rows: list[Assessment]) -> DomainSeries:
    panels = []
    for key in DOMAIN_ITEMS:
        item = scale.item(key)
        points = []
        for assessment in rows:
            scores = {s.item_key: s.score for s in assessment.item_scores}
            points.append((assessment.observed_at, scores.get(key)))
        panels.append(DomainPanel(label=item.label, y_max=item.max_score, points=tuple(points)))
    return DomainSeries(
        title=f"Symptom domains (custom 0–10 ratings) — patient {patient.identifier}",
        tz_name=patient.site.timezone,
        panels=tuple(panels),
    )


def scales_with_data(patient: Patient) -> set[str]:
    return set(
        db.session.scalars(
            select(Assessment.scale_key)
            .where(
                Assessment.patient_id == patient.id,
                Assessment.status == AssessmentStatus.ACTIVE,
            )
            .distinct()
        )
    )


def shared_window(patient: Patient, window: Window) -> Window:
    """Fill an open end of the range from the patient's own entries, so that every chart on
    a page spans the same days and their time axes line up."""
    if window.start_date and window.end_date:
        return window
    first, last = db.session.execute(
        select(func.min(Assessment.observed_at), func.max(Assessment.observed_at)).where(
            Assessment.patient_id == patient.id, Assessment.status == AssessmentStatus.ACTIVE
        )
    ).one()
    if first is None:
        return window
    tz = zone(patient.site.timezone)
    end = window.end_date or last.astimezone(tz).date()
    # An end before the first entry is an empty range, not a reversed one.
    start = window.start_date or min(first.astimezone(tz).date(), end)
    end = max(end, start)
    return parse_window(start.isoformat(), end.isoformat(), patient.site.timezone)


def rows_by_scale(patient: Patient, window: Window) -> dict[str, list[Assessment]]:
    """Every active assessment in the range with its item scores, grouped by scale."""
    stmt = (
        select(Assessment)
        .where(Assessment.patient_id == patient.id, Assessment.status == AssessmentStatus.ACTIVE)
        .options(joinedload(Assessment.item_scores), joinedload(Assessment.recorded_by))
        .order_by(Assessment.observed_at, Assessment.id)
    )
    if window.start is not None:
        stmt = stmt.where(Assessment.observed_at >= window.start)
    if window.end is not None:
        stmt = stmt.where(Assessment.observed_at < window.end)
    grouped: dict[str, list[Assessment]] = {}
    for assessment in db.session.scalars(stmt).unique():
        grouped.setdefault(assessment.scale_key, []).append(assessment)
    return grouped


def domain_table(rows: list[Assessment]) -> list[tuple[datetime, dict[str, int | None]]]:
    """The domain ratings behind the domains chart, one row per assessment."""
    return [
        (a.observed_at, {s.item_key: s.score for s in a.item_scores if s.item_key in DOMAIN_ITEMS})
        for a in rows
    ]
