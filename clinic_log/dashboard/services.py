"""The supervisor dashboard: every patient with an open episode, ranked by current withdrawal
severity, then the longest since an entry, a page at a time. Descriptive only: it shows where
things stand and suggests nothing.

Triage: only scales marked as withdrawal measures, and only their latest results observed
within the recency window (``TRIAGE_RECENCY_HOURS``), rank a patient; an incomplete total
ranks by the band its recorded items have already reached (its floor). Other scales and older
results stay on the row, the older ones greyed with their age.

It reads the dashboard summary (``summary.py``), so a page costs the same at 10,000 entries as
at 200,000: three queries (the sites with their counts, the page's episodes with their
patients and their entries waiting for sign-off, the page's scale rows), whatever the number
of patients. Current severity ages with the clock, so the rank is worked out in the page's
query from the summary's stored severity and the time it was observed; only an episode whose
most severe result has aged out looks at its own few scale rows for the next one.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from markupsafe import Markup, escape
from sqlalchemy import Float, Text, bindparam, case, cast, func, select

from .. import due
from ..database import UTCDateTime
from ..extensions import db
from ..models import (
    SUBSTANCE_LABELS,
    Assessment,
    DashboardEpisode,
    DashboardScale,
    Episode,
    Patient,
    Site,
    User,
    waiting_for_review,
)
from ..paging import RowPageNumbers
from ..scales import Scale, Severity
from .summary import SPARK_POINTS

__all__ = ["PAGE_SIZE", "SPARK_POINTS", "DashboardPage", "DashboardRow", "dashboard_page"]

PAGE_SIZE = 25
SPARK_COLOUR = "#0072B2"


@dataclass
class ScaleStatus:
    scale: Scale
    latest_total: int
    latest_complete: bool
    latest_band: str | None
    latest_at: datetime
    spark: Markup  # an inline SVG of the recent totals, oldest first
    severity: Severity  # the band, an incomplete total's floor, or "Incomplete"
    # The latest total minus the one before it (None for a first entry), and whether either
    # is incomplete (a lower bound, so the change is only as exact as the totals recorded).
    change: int | None = None
    change_incomplete: bool = False
    stale: bool = False  # observed before the recency window: shown greyed, ranks nothing
    age_hours: float = 0.0

    @property
    def band_class(self) -> str | None:
        """The CSS class of the severity label; None when no label is shown (a complete total
        in no published band)."""
        shown = self.severity.ranked_band
        if shown is None:
            return None if self.latest_complete else "band-incomplete"
        slug = "band-" + shown.label.lower().replace(" ", "-")
        return f"band-floor {slug}" if self.severity.floor else slug


@dataclass
class DashboardRow:
    """One patient's line: who, which episode, and where each scale stands."""

    patient_id: int
    identifier: str
    display_label: str | None
    site_id: int
    site_code: str
    timezone: str
    episode_started_at: datetime
    substance_label: str
    severity: float  # the current withdrawal rank (0: none in the recency window)
    scales: list[ScaleStatus] = field(default_factory=list)
    waiting: int = 0  # the patient's entries waiting for sign-off, all episodes
    last_assessed_at: datetime | None = None
    hours_since: float = 0.0
    # When the next assessment is due, and whether it is overdue: the same stored due time
    # and rule as the patient list (due.py).
    due: due.DueStatus | None = None

    @property
    def overdue(self) -> bool:
        return self.due is not None and self.due.overdue


@dataclass(frozen=True)
class SiteCount:
    code: str
    name: str
    open_episodes: int


@dataclass
class DashboardPage(RowPageNumbers):
    rows: list[DashboardRow]
    total: int  # patients with an open episode at the chosen sites
    page: int
    per_page: int
    sites: list[SiteCount]  # every site the user may see, with its count
    site: str | None  # the chosen site's code; None for all of them


def dashboard_page(
    user: User,
    scales: dict[str, Scale],
    now: datetime,
    page: int = 1,
    site_code: str | None = None,
    per_page: int = PAGE_SIZE,
    recent_within: timedelta = timedelta(hours=24),
) -> DashboardPage:
    """One page of the patients with an open episode at the user's sites (or at one of them,
    ``site_code``), sorted for a supervisor's eye: the highest band (or floor) of a withdrawal
    measure observed within ``recent_within`` of ``now`` first, then the longest time since any
    assessment (then the older episode, so pages never overlap). Each row says when the
    patient is next due and whether that is past (``due.py``, as on the patient list).

    A page number past the end shows the last page; a site the user may not see is ignored.
    """
    sites = _site_counts(user)
    chosen = [s for s in sites if s.code == site_code]
    result = DashboardPage(
        rows=[],
        total=sum(s.open_episodes for s in chosen or sites),
        page=1,
        per_page=per_page,
        sites=[SiteCount(s.code, s.name, s.open_episodes) for s in sites],
        site=chosen[0].code if chosen else None,
    )
    result.page = min(max(page, 1), result.pages)
    if result.total:
        site_ids = [s.id for s in chosen or sites]
        offset = (result.page - 1) * per_page
        result.rows = _page_rows(site_ids, offset, per_page, scales, now, now - recent_within)
    return result


def withdrawal_measure_names(scales: dict[str, Scale]) -> list[str]:
    """The short names of the installed scales that rank triage, in display order."""
    return [scale.short_name for scale in scales.values() if scale.withdrawal_measure]


def _dashboard_statements():
    """The dashboard's three queries, built once with their parameters bound per request
    (``site_ids`` expands to the sites' ids): building and caching a statement cost more than
    SQLite takes to answer it. Plain table columns, run on the connection: the page only reads
    them, and the ORM's row handling was a third of the page's time."""
    summary = DashboardEpisode.__table__
    scale_rows = DashboardScale.__table__
    episodes, patients, sites = Episode.__table__, Patient.__table__, Site.__table__
    of_sites = summary.c.site_id.in_(bindparam("site_ids", expanding=True))
    counts = (
        select(summary.c.site_id, func.count().label("open_episodes"))
        .where(of_sites)
        .group_by(summary.c.site_id)
        .subquery()
    )
    site_counts = (
        select(
            sites.c.id,
            sites.c.code,
            sites.c.name,
            func.coalesce(counts.c.open_episodes, 0).label("open_episodes"),
        )
        .outerjoin(counts, counts.c.site_id == sites.c.id)
        .where(sites.c.id.in_(bindparam("site_ids", expanding=True)))
        .order_by(sites.c.code)
    )
    # The current rank: the stored severity while its latest observation is within the window;
    # once that has aged out, the highest withdrawal rank among the episode's scale rows still
    # within it (a few rows of one primary-key range, and only for such episodes); else 0.
    cutoff = bindparam("cutoff", type_=UTCDateTime)
    next_current = (
        select(func.coalesce(func.max(scale_rows.c.withdrawal_rank), 0.0))
        .where(scale_rows.c.episode_id == summary.c.episode_id, scale_rows.c.observed_at >= cutoff)
        .scalar_subquery()
    )
    current = case(
        (summary.c.severity_at >= cutoff, summary.c.severity),
        (summary.c.severity > 0, next_current),
        else_=cast(0.0, Float),
    )
    order = (current.desc(), summary.c.since_at, summary.c.episode_id)
    # Entries waiting for sign-off, per patient on the page only (a range of the partial index
    # ix_assessment_unreviewed_patient each).
    waiting = (
        select(func.count())
        .select_from(Assessment)
        .where(Assessment.patient_id == patients.c.id, *waiting_for_review())
        .scalar_subquery()
    )
    on_page = (
        select(summary.c.episode_id)
        .where(of_sites)
        .order_by(*order)
        .offset(bindparam("offset"))
        .limit(bindparam("limit"))
    )
    page_episodes = (
        select(
            summary.c.episode_id,
            current.label("severity"),
            summary.c.last_assessed_at,
            summary.c.since_at,
            summary.c.due_at,
            episodes.c.started_at,
            episodes.c.substance_context,
            patients.c.id.label("patient_id"),
            patients.c.identifier,
            patients.c.display_label,
            sites.c.id.label("site_id"),
            sites.c.code,
            sites.c.timezone,
            waiting.label("waiting"),
        )
        .join(episodes, episodes.c.id == summary.c.episode_id)
        .join(patients, patients.c.id == episodes.c.patient_id)
        .join(sites, sites.c.id == patients.c.site_id)
        .where(summary.c.episode_id.in_(on_page.scalar_subquery()))
        .order_by(*order)
    )
    page_scales = select(
        scale_rows.c.episode_id,
        scale_rows.c.scale_key,
        scale_rows.c.observed_at,
        scale_rows.c.total,
        scale_rows.c.complete,
        scale_rows.c.not_assessed_count,
        scale_rows.c.band,
        # As text: it is only the key of the sparkline cache unless the line is new.
        cast(scale_rows.c.recent_totals, Text).label("recent_totals"),
    ).where(scale_rows.c.episode_id.in_(bindparam("episode_ids", expanding=True)))
    return site_counts, page_episodes, page_scales


_SITE_COUNTS, _PAGE_EPISODES, _PAGE_SCALES = _dashboard_statements()


def _site_counts(user: User) -> list:
    """The user's sites by code, each with its number of open episodes, in one query (the
    counts are ranges of ``ix_dashboard_episode_order``)."""
    site_ids = sorted(user.site_ids)
    return db.session.connection().execute(_SITE_COUNTS, {"site_ids": site_ids}).all()


def _page_rows(
    site_ids: list[int],
    offset: int,
    limit: int,
    scales: dict[str, Scale],
    now: datetime,
    cutoff: datetime,
) -> list[DashboardRow]:
    """The page's rows (one query) with their scales (one more). The page is picked from
    ``ix_dashboard_episode_order`` alone; only its own rows are joined."""
    connection = db.session.connection()
    summaries = connection.execute(
        _PAGE_EPISODES,
        {"site_ids": site_ids, "offset": offset, "limit": limit, "cutoff": cutoff},
    ).all()
    by_episode: dict[int, list[ScaleStatus]] = {s.episode_id: [] for s in summaries}
    for entry in connection.execute(_PAGE_SCALES, {"episode_ids": list(by_episode)}):
        scale = scales.get(entry.scale_key)
        if scale is None:
            continue  # an instrument no longer installed: not shown, and not counted
        by_episode[entry.episode_id].append(_scale_status(scale, entry, now, cutoff))
    rows = []
    for s in summaries:
        waited = now - s.since_at
        rows.append(
            DashboardRow(
                patient_id=s.patient_id,
                identifier=s.identifier,
                display_label=s.display_label,
                site_id=s.site_id,
                site_code=s.code,
                timezone=s.timezone,
                episode_started_at=s.started_at,
                substance_label=SUBSTANCE_LABELS.get(s.substance_context, s.substance_context),
                severity=s.severity,
                waiting=s.waiting,
                scales=sorted(
                    by_episode[s.episode_id], key=lambda x: (x.scale.display_order, x.scale.key)
                ),
                last_assessed_at=s.last_assessed_at,
                hours_since=max(waited.total_seconds() / 3600, 0.0),
                due=due.due_status(s.due_at, now),
            )
        )
    return rows


def _scale_status(scale: Scale, entry, now: datetime, cutoff: datetime) -> ScaleStatus:
    totals = _recent_totals(entry.recent_totals)
    change, change_incomplete = None, False
    if len(totals) >= 2:
        (before, before_complete), (latest, latest_complete) = totals[-2:]
        change = latest - before
        change_incomplete = not (before_complete and latest_complete)
    return ScaleStatus(
        scale=scale,
        latest_total=entry.total,
        latest_complete=entry.complete,
        latest_band=entry.band,
        latest_at=entry.observed_at,
        spark=spark_svg(scale.short_name, scale.total_min, scale.total_max, entry.recent_totals),
        severity=scale.severity(entry.total, entry.complete, entry.not_assessed_count),
        change=change,
        change_incomplete=change_incomplete,
        stale=entry.observed_at < cutoff,
        age_hours=max((now - entry.observed_at).total_seconds() / 3600, 0.0),
    )


@functools.lru_cache(maxsize=4096)
def _recent_totals(recent_totals: str) -> tuple[tuple[int, bool], ...]:
    """The ``[total, complete]`` pairs of a scale row, oldest first (the same text recurs on
    every reload, as for the sparkline)."""
    return tuple((total, bool(complete)) for total, complete in json.loads(recent_totals))


@functools.lru_cache(maxsize=4096)
def spark_svg(name: str, total_min: int, total_max: int, recent_totals: str) -> Markup:
    """The sparkline of a scale's recent totals (JSON, oldest first, ``[total, complete]``
    pairs) as inline SVG, labelled with the scale's ``name``.

    Built here rather than in the template: a page draws up to a hundred of them, a dozen marks
    each, and Jinja's per-attribute escaping of numbers was most of the page's time. The same
    totals always draw the same line, so recent ones are kept (a page reloaded by several
    supervisors draws each once).
    """
    # Imported here: the charts package imports its views, and through them the assessment
    # services, which keep this package's summary; at module level that would be a cycle.
    from ..charts.spark import spark_shape

    totals = json.loads(recent_totals)
    shape = spark_shape(
        [total for total, _ in totals],
        [bool(complete) for _, complete in totals],
        total_min,
        total_max,
    )
    label = escape(f"{name}: last {len(shape.marks)} totals")
    parts = [
        f'<svg class="spark" width="{shape.width}" height="{shape.height}" '
        f'viewBox="0 0 {shape.width} {shape.height}" role="img" aria-label="{label}">'
    ]
    if shape.line:
        parts.append(
            f'<polyline points="{shape.line}" fill="none" stroke="{SPARK_COLOUR}" '
            'stroke-width="1.5"/>'
        )
    # The marks share their colours through the group; an incomplete total (a lower bound) is
    # hollow, and the latest is the larger mark.
    parts.append(f'<g fill="{SPARK_COLOUR}" stroke="{SPARK_COLOUR}" stroke-width="1">')
    for index, mark in enumerate(shape.marks, start=1):
        radius = 2 if index == len(shape.marks) else 1.2
        hollow = "" if mark.complete else ' fill="#ffffff"'
        parts.append(f'<circle cx="{mark.x}" cy="{mark.y}" r="{radius}"{hollow}/>')
    parts.append("</g></svg>")
    # Markup: numbers we computed and an escaped label, never raw user input.
    return Markup("".join(parts))  # noqa: S704  # nosec B704
