"""Patients and episodes: who may be created, opened and ended, and when."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam, func, select
from sqlalchemy.exc import IntegrityError

from .. import audit, due
from ..dashboard import summary as dashboard_summary
from ..database import begin_write, now_utc
from ..extensions import db
from ..identifiers import identifier_key, identifier_skeleton
from ..models import Assessment, Episode, Patient, Site, SubstanceContext, User
from ..paging import PageNumbers
from ..timeutil import implausible_time


class PatientRuleError(ValueError):
    """A change refused by a rule; ``field`` names the form field the message belongs to."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field
        self.message = message


# Beyond any real timeline; keeps the page offset far from integer overflow.
MAX_PAGE = 100_000


def create_patient(
    user: User,
    site: Site,
    identifier: str,
    display_label: str | None,
    started_at: datetime,
    substance_context: str,
    episode_note: str,
    assess_every_hours: int | None = None,
) -> Patient:
    """Create a patient and open its first episode, in one transaction.

    :raise PatientRuleError: the identifier is taken at this site, the start time is
        implausible, or the monitoring interval is out of range.
    """
    begin_write(db.session)
    if site.id not in user.site_ids:
        raise PatientRuleError("site_id", "You can only add patients to your own sites.")
    taken = _existing_identifier(site, identifier)
    if taken is not None:
        raise _duplicate_identifier(site, taken)
    look_alike = _look_alike_identifier(site, identifier)
    if look_alike is not None:
        raise PatientRuleError(
            "identifier",
            f"This identifier looks like the identifier of a patient already at {site.code}: "
            f"{look_alike}. If this is that patient, open them from the patient list; if not, "
            "choose an identifier that cannot be mistaken for theirs.",
        )
    _check_start(started_at)
    _check_interval(assess_every_hours)
    patient = Patient(
        site=site,
        identifier=identifier,
        identifier_key=identifier_key(identifier),
        display_label=display_label or None,
        created_by=user,
    )
    db.session.add(patient)
    try:
        db.session.flush()
    except IntegrityError as exc:
        # Someone else saved the same identifier between our check and this insert.
        db.session.rollback()
        raise _duplicate_identifier(site, identifier) from exc
    audit.record(
        "patient_create",
        user=user,
        entity="patient",
        entity_id=patient.id,
        site_id=site.id,
        patient_id=patient.id,
        details={"identifier": identifier, "display_label": patient.display_label},
    )
    _add_episode(user, patient, started_at, substance_context, episode_note, assess_every_hours)
    db.session.commit()
    return patient


def _existing_identifier(site: Site, identifier: str) -> str | None:
    """The identifier as stored of a patient at this site that ``identifier`` would duplicate."""
    return db.session.scalar(
        select(Patient.identifier).where(
            Patient.site_id == site.id, Patient.identifier_key == identifier_key(identifier)
        )
    )


def _look_alike_identifier(site: Site, identifier: str) -> str | None:
    """The identifier of a patient at this site that ``identifier`` could be taken for
    (Greek or Cyrillic letters, another dash, an accent: the same confusable skeleton)."""
    return db.session.scalar(
        select(Patient.identifier)
        .where(
            Patient.site_id == site.id,
            Patient.identifier_skeleton == identifier_skeleton(identifier),
        )
        .order_by(Patient.id)
        .limit(1)
    )


def _duplicate_identifier(site: Site, identifier: str) -> PatientRuleError:
    return PatientRuleError(
        "identifier", f"{site.code} already has a patient with identifier {identifier}."
    )


def _check_start(started_at: datetime) -> None:
    problem = implausible_time(started_at, now_utc())
    if problem:
        raise PatientRuleError("started_at", problem)


def _check_interval(hours: int | None) -> None:
    if hours is not None and not due.INTERVAL_MIN_HOURS <= hours <= due.INTERVAL_MAX_HOURS:
        raise PatientRuleError("assess_every_hours", due.INTERVAL_MESSAGE)


def _add_episode(
    user: User,
    patient: Patient,
    started_at: datetime,
    substance_context: str,
    note: str,
    assess_every_hours: int | None = None,
) -> Episode:
    if substance_context not in set(SubstanceContext):
        raise PatientRuleError("substance_context", "Choose the substance context.")
    episode = Episode(
        patient=patient,
        started_at=started_at,
        substance_context=substance_context,
        note=note or "",
        created_by=user,
        assess_every_hours=assess_every_hours,
    )
    db.session.add(episode)
    db.session.flush()
    dashboard_summary.episode_opened(episode)
    audit.record(
        "episode_open",
        user=user,
        entity="episode",
        entity_id=episode.id,
        site_id=patient.site_id,
        patient_id=patient.id,
        details={
            "started_at": started_at.isoformat(),
            "substance_context": substance_context,
            "assess_every_hours": assess_every_hours,
        },
    )
    return episode


def open_episode(
    user: User,
    patient: Patient,
    started_at: datetime,
    substance_context: str,
    note: str,
    assess_every_hours: int | None = None,
) -> Episode:
    """Open a new episode for a patient who has none open; its monitoring interval is
    ``assess_every_hours`` (None: the site default), due one interval after its start.

    :raise PatientRuleError: an episode is still open, the start is implausible, it is
        before the end of the previous episode, or the interval is out of range.
    """
    begin_write(db.session)
    if patient.open_episode is not None:
        raise _episode_still_open()
    _check_start(started_at)
    _check_interval(assess_every_hours)
    latest_end = db.session.scalar(
        select(func.max(Episode.ended_at)).where(Episode.patient_id == patient.id)
    )
    if latest_end is not None and started_at < latest_end:
        raise PatientRuleError(
            "started_at", "A new episode cannot start before the previous one ended."
        )
    try:
        episode = _add_episode(
            user, patient, started_at, substance_context, note, assess_every_hours
        )
    except IntegrityError as exc:
        # Another episode was opened between our check and this insert (a second post at
        # the same moment); the database's one-open-episode index refused this one.
        db.session.rollback()
        if _has_open_episode(patient.id):
            raise _episode_still_open() from exc
        raise
    db.session.commit()
    return episode


def _episode_still_open() -> PatientRuleError:
    return PatientRuleError("started_at", "End the open episode before opening a new one.")


def _has_open_episode(patient_id: int) -> bool:
    return (
        db.session.scalar(
            select(Episode.id).where(Episode.patient_id == patient_id, Episode.ended_at.is_(None))
        )
        is not None
    )


def end_episode(user: User, episode: Episode, ended_at: datetime) -> Episode:
    """End an open episode.

    :raise PatientRuleError: it is already ended, or the end is before its start, before its
        last assessment, or in the future.
    """
    begin_write(db.session)
    if episode.ended_at is not None:
        raise PatientRuleError("ended_at", "This episode has already ended.")
    problem = implausible_time(ended_at, now_utc())
    if problem:
        raise PatientRuleError("ended_at", problem)
    if ended_at < episode.started_at:
        raise PatientRuleError("ended_at", "An episode cannot end before it started.")
    last_observed = db.session.scalar(
        select(func.max(Assessment.observed_at)).where(
            Assessment.episode_id == episode.id, Assessment.status == "active"
        )
    )
    if last_observed is not None and ended_at < last_observed:
        raise PatientRuleError(
            "ended_at", "An episode cannot end before its last recorded assessment."
        )
    episode.ended_at = ended_at
    episode.ended_by = user
    dashboard_summary.episode_ended(episode)
    audit.record(
        "episode_end",
        user=user,
        entity="episode",
        entity_id=episode.id,
        site_id=episode.patient.site_id,
        patient_id=episode.patient_id,
        details={"ended_at": ended_at.isoformat()},
    )
    db.session.commit()
    return episode


def set_monitoring_interval(user: User, episode: Episode, hours: int | None) -> Episode:
    """Change how often the patient is to be assessed while this episode is open (None: the
    site default); the due time moves at once, and the audit event says before and after.

    :raise PatientRuleError: the episode has ended, or the interval is out of range.
    """
    begin_write(db.session)
    db.session.refresh(episode, with_for_update=True)
    if episode.ended_at is not None:
        raise PatientRuleError(
            "assess_every_hours", "This episode has ended: it has no schedule to change."
        )
    _check_interval(hours)
    before = episode.assess_every_hours
    episode.assess_every_hours = hours
    db.session.flush()
    dashboard_summary.schedule_changed(episode)
    audit.record(
        "episode_monitoring_change",
        user=user,
        entity="episode",
        entity_id=episode.id,
        site_id=episode.patient.site_id,
        patient_id=episode.patient_id,
        details={
            "before": before,
            "after": hours,
            "site_default_hours": dashboard_summary.default_interval_hours(),
        },
    )
    db.session.commit()
    return episode


@dataclass(frozen=True, slots=True)
class TimelineEntry:
    """One assessment version as the patient page lists it: the columns it shows, and the
    names of who recorded and who reviewed it."""

    id: int
    observed_at: datetime
    scale_key: str
    total: int
    complete: bool
    band: str | None
    not_assessed_count: int
    status: str
    status_reason: str | None
    reviewed_at: datetime | None
    recorded_by_name: str
    reviewed_by_name: str | None


@dataclass(frozen=True)
class TimelinePage(PageNumbers):
    """A page of the timeline, newest observation first (the fields a pager needs)."""

    items: list[TimelineEntry]
    page: int
    per_page: int
    total: int


def _timeline_statements():
    """The count and one page of a patient's entries, as plain rows: the page is the most
    viewed in the app, and loading 25 entries and their users as objects cost more than
    everything else it does. Built once."""
    entries = Assessment.__table__
    recorder = User.__table__.alias("recorder")
    reviewer = User.__table__.alias("reviewer")
    count = select(func.count()).where(entries.c.patient_id == bindparam("patient_id"))
    page = (
        select(
            entries.c.id,
            entries.c.observed_at,
            entries.c.scale_key,
            entries.c.total,
            entries.c.complete,
            entries.c.band,
            entries.c.not_assessed_count,
            entries.c.status,
            entries.c.status_reason,
            entries.c.reviewed_at,
            recorder.c.display_name,
            reviewer.c.display_name,
        )
        .join(recorder, recorder.c.id == entries.c.recorded_by_id)
        .outerjoin(reviewer, reviewer.c.id == entries.c.reviewed_by_id)
        .where(entries.c.patient_id == bindparam("patient_id"))
        .order_by(entries.c.observed_at.desc(), entries.c.id.desc())
        .limit(bindparam("limit"))
        .offset(bindparam("offset"))
    )
    # Narrowed to one scale: the same columns from ix_assessment_patient_scale_observed.
    of_scale = entries.c.scale_key == bindparam("scale_key")
    return count, page, count.where(of_scale), page.where(of_scale)


_TIMELINE_COUNT, _TIMELINE_PAGE, _SCALE_COUNT, _SCALE_PAGE = _timeline_statements()


def timeline(
    patient: Patient, page: int, per_page: int = 25, scale_key: str | None = None
) -> TimelinePage:
    """The patient's assessments (of one scale, when ``scale_key`` is given), newest
    observation first, a page at a time. A page past the end is empty (its pager still says
    how many pages there are)."""
    connection = db.session.connection()
    keys: dict = {"patient_id": patient.id}
    count_statement, page_statement = _TIMELINE_COUNT, _TIMELINE_PAGE
    if scale_key:
        keys["scale_key"] = scale_key
        count_statement, page_statement = _SCALE_COUNT, _SCALE_PAGE
    total = connection.execute(count_statement, keys).scalar_one()
    items = []
    if total > (page - 1) * per_page:
        rows = connection.execute(
            page_statement, keys | {"limit": per_page, "offset": (page - 1) * per_page}
        )
        items = [TimelineEntry(*row) for row in rows]
    return TimelinePage(items=items, page=page, per_page=per_page, total=total)
