"""Recording assessments: the rules for when an entry is acceptable, and how it is scored."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from .. import audit
from ..database import begin_write, now_utc
from ..extensions import db
from ..models import Assessment, AssessmentStatus, Episode, ItemScore, Patient, User
from ..scales import NOT_ASSESSED_REASONS, Scale, ScoreError
from ..timeutil import implausible_time

_KEY_REUSED = (
    "This form was already used for another entry. Nothing was saved: check the answers "
    "below and save again."
)


class EntryError(ValueError):
    """An entry refused by a rule; ``field`` names the form field the message belongs to."""

    def __init__(self, field: str | None, message: str):
        super().__init__(message)
        self.field = field
        self.message = message


def observed_at_problem(observed_at: datetime, episode: Episode, now: datetime) -> str | None:
    """Why ``observed_at`` cannot belong to this episode, or None."""
    problem = implausible_time(observed_at, now)
    if problem:
        return problem
    if observed_at < episode.started_at:
        return "This is before the episode started; check the date and time."
    if episode.ended_at is not None and observed_at > episode.ended_at:
        return "This is after the episode ended."
    return None


def find_submission(submission_key: str | None, user: User, patient: Patient) -> Assessment | None:
    """The assessment already saved from this very form (a double click or a resubmit)."""
    if not submission_key:
        return None
    return db.session.scalar(
        select(Assessment).where(
            Assessment.submission_key == submission_key,
            Assessment.recorded_by_id == user.id,
            Assessment.patient_id == patient.id,
        )
    )


def record_assessment(
    user: User,
    patient: Patient,
    scale: Scale,
    scores: dict[str, int | None],
    *,
    observed_at: datetime,
    notes: str = "",
    not_assessed_reasons: dict[str, str] | None = None,
    measured_values: dict[str, int] | None = None,
    submission_key: str | None = None,
) -> Assessment:
    """Score and save one assessment in the patient's open episode, with its audit event.

    :raise EntryError: no open episode, an implausible time, a score the scale does not allow,
        or a not-assessed item without a known reason.
    """
    begin_write(db.session)
    episode = patient.open_episode
    if episode is None:
        raise EntryError(None, "This patient has no open episode; open one first.")
    problem = observed_at_problem(observed_at, episode, now_utc())
    if problem:
        raise EntryError("observed_at", problem)
    reasons = not_assessed_reasons or {}
    measured = measured_values or {}
    for key, score in scores.items():
        if score is None and reasons.get(key) not in NOT_ASSESSED_REASONS:
            raise EntryError(key, "Say why this item was not assessed.")
    if submission_key:
        taken = db.session.scalar(
            select(Assessment).where(Assessment.submission_key == submission_key)
        )
        if taken is not None:
            if taken.recorded_by_id == user.id and taken.patient_id == patient.id:
                return taken  # the same form sent twice: it is already saved
            raise EntryError(None, _KEY_REUSED)
    try:
        result = scale.score(scores)
    except ScoreError as exc:
        raise EntryError(exc.item_key, exc.message) from exc
    for key, value in measured.items():
        item = scale.item(key)
        if item.measurement is None or item.measurement.points_for(value) != scores[key]:
            raise EntryError(key, "The measured value does not match the score.")

    assessment = Assessment(
        patient=patient,
        episode=episode,
        scale_key=scale.key,
        scale_version=scale.version,
        observed_at=observed_at,
        recorded_by=user,
        total=result.total,
        complete=result.complete,
        band=result.band_label,
        notes=notes or "",
        status=AssessmentStatus.ACTIVE,
        submission_key=submission_key or None,
    )
    assessment.item_scores = [
        ItemScore(
            item_key=item.key,
            position=position,
            score=scores[item.key],
            not_assessed_reason=reasons.get(item.key) if scores[item.key] is None else None,
            measured_value=measured.get(item.key),
        )
        for position, item in enumerate(scale.items)
    ]
    db.session.add(assessment)
    try:
        db.session.flush()
    except IntegrityError:
        # On PostgreSQL the same form can arrive twice at once; the first one won.
        db.session.rollback()
        existing = find_submission(submission_key, user, patient)
        if existing is None:
            raise
        return existing
    audit.record(
        "assessment_create",
        user=user,
        entity="assessment",
        entity_id=assessment.id,
        site_id=patient.site_id,
        patient_id=patient.id,
        details={
            "scale": scale.key,
            "scale_version": scale.version,
            "observed_at": observed_at.isoformat(),
            "total": result.total,
            "complete": result.complete,
            "band": result.band_label,
            "items": {
                key: (value if value is not None else f"not assessed: {reasons[key]}")
                for key, value in scores.items()
            },
            "measured": measured,
        },
    )
    db.session.commit()
    return assessment
