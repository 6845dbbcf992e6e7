"""The patient list: the clinician's worklist for a shift.

Every patient of the user's sites, 50 a page, by identifier or soonest due first, optionally
only those due now or overdue, searched by identifier or label, with a count. Each row says
how the patient is: the latest withdrawal total with its band or floor, the time since the
last entry, whether an episode is open, and when the next assessment is due (``due.py``).

The page is chosen first, from an index (the patients of a site by identifier, or the open
episodes of a site by due time in the dashboard summary), and only its own rows are then
looked at for what they show; so a page costs the same at 1,000 patients as at 3,000. Three
statements: the counts, the page's ids, the page's rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, bindparam, func, or_, select
from sqlalchemy.orm import aliased

from .. import due
from ..dashboard.summary import default_interval_hours
from ..database import UTCDateTime
from ..extensions import db
from ..identifiers import identifier_key
from ..models import Assessment, AssessmentStatus, DashboardEpisode, Episode, Patient, Site, User
from ..paging import RowPageNumbers
from ..scale_registry import scales
from ..scales import Scale

PAGE_SIZE = 50
SORTS = ("identifier", "due")


@dataclass(frozen=True)
class LatestWithdrawal:
    """The patient's latest active entry on a withdrawal scale (any episode). Named like an
    assessment row, so the one band macro words it (templates/assessments/_entry.html)."""

    scale: Scale
    scale_key: str
    total: int
    complete: bool
    band: str | None
    not_assessed_count: int
    observed_at: datetime


@dataclass(frozen=True)
class WorklistRow:
    patient_id: int
    identifier: str
    display_label: str | None
    site_id: int
    site_code: str
    timezone: str
    episode_id: int | None  # the open episode, if any
    episode_started_at: datetime | None
    assess_every_hours: int | None  # the open episode's own interval (None: site default)
    interval_hours: float | None  # the interval in force (None: no open episode)
    due: due.DueStatus | None  # None: no open episode, nothing is due
    last_entry_at: datetime | None  # the latest active entry on any scale
    since: timedelta | None
    latest: LatestWithdrawal | None

    @property
    def since_text(self) -> str:
        return f"{due.format_duration(self.since)} ago" if self.since is not None else ""


@dataclass
class PatientListPage(RowPageNumbers):
    rows: list[WorklistRow]
    page: int
    per_page: int
    total: int  # rows of this view, over every page
    query: str
    due_only: bool
    sort: str
    patients: int  # patients at the user's sites matching the search, open episode or not
    open_episodes: int  # those of them with an open episode
    default_hours: float

    @property
    def without_open_episode(self) -> int:
        return self.patients - self.open_episodes


def patient_list(
    user: User,
    now: datetime,
    *,
    installed: dict[str, Scale] | None = None,
    query: str = "",
    page: int = 1,
    due_only: bool = False,
    sort: str = "identifier",
    per_page: int = PAGE_SIZE,
) -> PatientListPage:
    """One page of the patients of the user's sites.

    :param query: part of an identifier (compared as stored for uniqueness: NFKC, case-folded)
        or of a display label; ``%`` and ``_`` are characters, not wildcards.
    :param due_only: only patients whose open episode is due within ``due.DUE_SOON`` of
        ``now`` or overdue.
    :param sort: ``identifier`` (site, then identifier), or ``due`` (open episodes only,
        soonest due first; the count of the others is on the page).
    A page past the end is empty; the page says how many there are.
    """
    installed = scales() if installed is None else installed
    sort = sort if sort in SORTS else "identifier"
    params = {
        "site_ids": sorted(user.site_ids),
        "due_before": due.due_soon_before(now),
        "withdrawal_keys": sorted(k for k, s in installed.items() if s.withdrawal_measure),
    }
    connection = db.session.connection()
    count_stmt, ids_stmt = _statements(bool(query), due_only, sort)
    if query:
        params["identifier_like"] = f"%{_like_escape(identifier_key(query))}%"
        params["label_like"] = f"%{_like_escape(query.casefold())}%"
    patients, open_episodes, shown = connection.execute(count_stmt, params).one()
    result = PatientListPage(
        rows=[],
        page=page,
        per_page=per_page,
        total=shown,
        query=query,
        due_only=due_only,
        sort=sort,
        patients=patients,
        open_episodes=open_episodes,
        default_hours=default_interval_hours(),
    )
    if shown > (page - 1) * per_page:
        ids = connection.execute(
            ids_stmt, params | {"limit": per_page, "offset": (page - 1) * per_page}
        ).scalars()
        result.rows = _rows(list(ids), params["withdrawal_keys"], installed, now)
    return result


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _statements(searched: bool, due_only: bool, sort: str):
    """(counts, page ids) for one view: built per request, a few microseconds of work."""
    of_sites = Patient.site_id.in_(bindparam("site_ids", expanding=True))
    conditions = [of_sites]
    if searched:
        conditions.append(
            or_(
                Patient.identifier_key.like(bindparam("identifier_like"), escape="\\"),
                func.lower(Patient.display_label).like(bindparam("label_like"), escape="\\"),
            )
        )
    # Open episodes: the dashboard summary's rows, in due order from its index.
    summary_conditions = [DashboardEpisode.site_id.in_(bindparam("site_ids", expanding=True))]
    if due_only:
        summary_conditions.append(
            DashboardEpisode.due_at <= bindparam("due_before", type_=UTCDateTime)
        )

    def summary_rows(*more):
        return (
            select(Patient.id)
            .select_from(DashboardEpisode)
            .join(Episode, Episode.id == DashboardEpisode.episode_id)
            .join(Patient, Patient.id == Episode.patient_id)
            .where(*more, *conditions)
        )

    def count_of_summary(*more):
        if searched:
            rows = summary_rows(*more).subquery()
            return select(func.count()).select_from(rows).scalar_subquery()
        # Unsearched, the summary's index alone answers: no episode or patient row is read.
        return select(func.count()).select_from(DashboardEpisode).where(*more).scalar_subquery()

    patients_count = select(func.count()).select_from(Patient).where(*conditions).scalar_subquery()
    open_count = count_of_summary(summary_conditions[0])
    shown_count = patients_count
    if due_only or sort == "due":
        shown_count = count_of_summary(*summary_conditions)
    counts = select(patients_count, open_count, shown_count)
    if sort == "due":
        ids = summary_rows(*summary_conditions).order_by(
            DashboardEpisode.due_at, DashboardEpisode.episode_id
        )
    else:
        base = summary_rows(*summary_conditions) if due_only else select(Patient.id)
        ids = (
            base.where(*conditions)
            .join(Site, Site.id == Patient.site_id)
            .order_by(Site.code, Patient.identifier_key, Patient.id)
        )
    ids = ids.limit(bindparam("limit")).offset(bindparam("offset"))
    return counts, ids


def _page_rows_statement():
    latest_id = (
        select(Assessment.id)
        .where(
            Assessment.patient_id == Patient.id,
            Assessment.status == AssessmentStatus.ACTIVE,
            Assessment.scale_key.in_(bindparam("withdrawal_keys", expanding=True)),
        )
        .order_by(Assessment.observed_at.desc(), Assessment.id.desc())
        .limit(1)
        .scalar_subquery()
    )
    last_entry = (
        select(func.max(Assessment.observed_at))
        .where(Assessment.patient_id == Patient.id, Assessment.status == AssessmentStatus.ACTIVE)
        .scalar_subquery()
    )
    latest = aliased(Assessment, name="latest")
    return (
        select(
            Patient.id.label("patient_id"),
            Patient.identifier,
            Patient.display_label,
            Site.id.label("site_id"),
            Site.code,
            Site.timezone,
            Episode.id.label("episode_id"),
            Episode.started_at,
            Episode.assess_every_hours,
            DashboardEpisode.due_at,
            last_entry.label("last_entry_at"),
            latest.scale_key,
            latest.total,
            latest.complete,
            latest.band,
            latest.not_assessed_count,
            latest.observed_at,
        )
        .join(Site, Site.id == Patient.site_id)
        .outerjoin(Episode, and_(Episode.patient_id == Patient.id, Episode.ended_at.is_(None)))
        .outerjoin(DashboardEpisode, DashboardEpisode.episode_id == Episode.id)
        .outerjoin(latest, latest.id == latest_id)
        .where(Patient.id.in_(bindparam("ids", expanding=True)))
    )


_PAGE_ROWS = _page_rows_statement()


def _rows(
    ids: list[int], withdrawal_keys: list[str], installed: dict[str, Scale], now: datetime
) -> list[WorklistRow]:
    if not ids:
        return []
    found = db.session.connection().execute(
        _PAGE_ROWS, {"ids": ids, "withdrawal_keys": withdrawal_keys}
    )
    by_id = {}
    default_hours = default_interval_hours()
    for r in found:
        scale = installed.get(r.scale_key) if r.scale_key else None
        latest = None
        if scale is not None:
            latest = LatestWithdrawal(
                scale,
                r.scale_key,
                r.total,
                bool(r.complete),
                r.band,
                r.not_assessed_count or 0,
                r.observed_at,
            )
        open_episode = r.episode_id is not None
        by_id[r.patient_id] = WorklistRow(
            patient_id=r.patient_id,
            identifier=r.identifier,
            display_label=r.display_label,
            site_id=r.site_id,
            site_code=r.code,
            timezone=r.timezone,
            episode_id=r.episode_id,
            episode_started_at=r.started_at,
            assess_every_hours=r.assess_every_hours,
            interval_hours=(
                due.interval_hours(r.assess_every_hours, default_hours) if open_episode else None
            ),
            due=due.due_status(r.due_at, now) if r.due_at is not None else None,
            last_entry_at=r.last_entry_at,
            since=max(now - r.last_entry_at, timedelta(0)) if r.last_entry_at else None,
            latest=latest,
        )
    return [by_id[pid] for pid in ids if pid in by_id]
