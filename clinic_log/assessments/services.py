"""Recording, amending and voiding assessments: when an entry is acceptable, how it is scored,
and who may change what. Nothing is overwritten: an amendment is a new row that replaces the
old one (which becomes ``amended``), a void keeps the row with its reason."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm.exc import StaleDataError

from .. import audit
from ..dashboard import summary as dashboard_summary
from ..database import begin_write, now_utc
from ..extensions import db
from ..models import (
    Assessment,
    AssessmentStatus,
    Episode,
    ItemScore,
    Patient,
    Role,
    Signature,
    User,
)
from ..scale_registry import get_scale
from ..scales import NOT_ASSESSED_REASONS, Scale, ScoreError
from ..timeutil import format_local, implausible_time

_SUBMISSION_KEY = re.compile(r"^[0-9a-f]{32}$")
_KEY_REUSED = (
    "This form was already used for another entry. Nothing was saved: check the answers "
    "below and save again."
)
REASON_MAX_LENGTH = 2000
VOID_REASONS = {
    "entered_in_error": "Entered in error",
    "wrong_patient": "Recorded for the wrong patient",
    "duplicate": "Duplicate of another entry",
    "other": "Other (explain below)",
}


class EntryError(ValueError):
    """An entry refused by a rule; ``field`` names the form field the message belongs to."""

    def __init__(self, field: str | None, message: str):
        super().__init__(message)
        self.field = field
        self.message = message


class ChangeNotAllowed(PermissionError):
    """The user may not amend or void this entry (403)."""


class EditConflict(RuntimeError):
    """The entry changed since the form was opened; ``current`` is what it is now."""

    def __init__(self, current: Assessment):
        super().__init__("This entry changed while you were editing — review the new version.")
        self.current = current


@dataclass(frozen=True)
class Answers:
    """What a form gives for one version of an assessment."""

    scores: dict[str, int | None]
    observed_at: datetime
    notes: str = ""
    not_assessed_reasons: dict[str, str] | None = None
    measured_values: dict[str, int] | None = None


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
    if not submission_key or not _SUBMISSION_KEY.match(submission_key):
        return None
    return db.session.scalar(
        select(Assessment).where(
            Assessment.submission_key == submission_key,
            Assessment.recorded_by_id == user.id,
            Assessment.patient_id == patient.id,
        )
    )


def _build_version(
    user: User, patient: Patient, episode: Episode, scale: Scale, answers: Answers
) -> Assessment:
    """Check and score one version of an assessment; the row is not added to the session.

    :raise EntryError: an implausible time, a score the scale does not allow, a not-assessed
        item without a known reason, or a measured value that contradicts its score.
    """
    problem = observed_at_problem(answers.observed_at, episode, now_utc())
    if problem:
        raise EntryError("observed_at", problem)
    reasons = answers.not_assessed_reasons or {}
    measured = answers.measured_values or {}
    for key, score in answers.scores.items():
        if score is None and reasons.get(key) not in NOT_ASSESSED_REASONS:
            raise EntryError(key, "Say why this item was not assessed.")
    try:
        result = scale.score(answers.scores)
    except ScoreError as exc:
        raise EntryError(exc.item_key, exc.message) from exc
    for key, value in measured.items():
        item = scale.item(key)
        if item.measurement is None or item.measurement.points_for(value) != answers.scores[key]:
            raise EntryError(key, "The measured value does not match the score.")
    assessment = Assessment(
        patient=patient,
        episode=episode,
        scale_key=scale.key,
        scale_version=scale.version,
        observed_at=answers.observed_at,
        recorded_by=user,
        total=result.total,
        complete=result.complete,
        band=result.band_label,
        not_assessed_count=len(result.not_assessed),
        notes=answers.notes or "",
        status=AssessmentStatus.ACTIVE,
    )
    assessment.item_scores = [
        ItemScore(
            item_key=item.key,
            position=position,
            score=answers.scores[item.key],
            not_assessed_reason=reasons.get(item.key) if answers.scores[item.key] is None else None,
            measured_value=measured.get(item.key),
        )
        for position, item in enumerate(scale.items)
    ]
    return assessment


def _audit_details(assessment: Assessment) -> dict:
    return {
        "scale": assessment.scale_key,
        "scale_version": assessment.scale_version,
        "observed_at": assessment.observed_at.isoformat(),
        "total": assessment.total,
        "complete": assessment.complete,
        "band": assessment.band,
        "notes": assessment.notes,
        "items": {
            s.item_key: s.score if s.score is not None else f"not assessed: {s.not_assessed_reason}"
            for s in assessment.item_scores
        },
        "measured": {
            s.item_key: s.measured_value for s in assessment.item_scores if s.measured_value
        },
    }


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
    if submission_key:
        taken = db.session.scalar(
            select(Assessment).where(Assessment.submission_key == submission_key)
        )
        if taken is not None:
            if taken.recorded_by_id == user.id and taken.patient_id == patient.id:
                return taken  # the same form sent twice: it is already saved
            raise EntryError(None, _KEY_REUSED)
    answers = Answers(scores, observed_at, notes, not_assessed_reasons, measured_values)
    assessment = _build_version(user, patient, episode, scale, answers)
    assessment.submission_key = submission_key or None
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
    dashboard_summary.entries_changed(episode.id, scale.key)
    audit.record(
        "assessment_create",
        user=user,
        entity="assessment",
        entity_id=assessment.id,
        site_id=patient.site_id,
        patient_id=patient.id,
        details=_audit_details(assessment),
    )
    db.session.commit()
    return assessment


def may_change(user: User, assessment: Assessment) -> bool:
    """Clinicians amend and void their own entries (also after someone else corrected one);
    supervisors any entry at their sites."""
    if assessment.patient.site_id not in user.site_ids:
        return False
    if user.role == Role.SUPERVISOR:
        return True
    if user.role != Role.CLINICIAN:
        return False
    return assessment.recorded_by_id == user.id or history(assessment)[0].recorded_by_id == user.id


def _check_change(user: User, assessment: Assessment, expected_version: int, reason: str) -> None:
    if not may_change(user, assessment):
        raise ChangeNotAllowed("Only the clinician who recorded it or a supervisor may change it.")
    if assessment.status != AssessmentStatus.ACTIVE or assessment.version != expected_version:
        raise EditConflict(current_version_of(assessment))
    if not reason or not reason.strip():
        raise EntryError("reason", "Give the reason for this change.")
    if len(reason) > REASON_MAX_LENGTH:
        raise EntryError("reason", f"The reason can be at most {REASON_MAX_LENGTH} characters.")


def current_version_of(assessment: Assessment) -> Assessment:
    """Follow amendments forward to the version that replaced this one last."""
    current = assessment
    while current.status == AssessmentStatus.AMENDED:
        newer = db.session.scalar(select(Assessment).where(Assessment.replaces_id == current.id))
        if newer is None:
            break
        current = newer
    return current


def amend_assessment(
    user: User,
    assessment: Assessment,
    expected_version: int,
    answers: Answers,
    reason: str,
    submission_key: str | None = None,
) -> Assessment:
    """Replace an active entry by a corrected one; the old row becomes ``amended``.

    A signature on the old version is invalidated ("invalidated by amendment") and kept; the
    new version is unreviewed, so it returns to the review queue.

    :raise ChangeNotAllowed: not the recorder and not a supervisor of the site.
    :raise EditConflict: the entry changed (amended, voided, signed) since the form opened.
    :raise EntryError: no reason, or answers the scale or the episode do not allow.
    """
    begin_write(db.session)
    db.session.refresh(assessment)
    if submission_key:
        # The same form sent twice: the first request saved it while this one waited.
        again = find_submission(submission_key, user, assessment.patient)
        if again is not None and again.replaces_id == assessment.id:
            return again
    _check_change(user, assessment, expected_version, reason)
    scale_obj = _scale(assessment.scale_key)
    replacement = _build_version(user, assessment.patient, assessment.episode, scale_obj, answers)
    replacement.replaces_id = assessment.id
    replacement.submission_key = submission_key or None
    db.session.add(replacement)
    invalidated = _retire(assessment, AssessmentStatus.AMENDED, reason.strip(), replacement)
    audit.record(
        "assessment_amend",
        user=user,
        entity="assessment",
        entity_id=replacement.id,
        site_id=assessment.patient.site_id,
        patient_id=assessment.patient_id,
        reason=reason.strip(),
        details={
            "replaces": assessment.id,
            "before": _audit_details(assessment),
            "after": _audit_details(replacement),
            "signatures_invalidated": invalidated,
        },
    )
    db.session.commit()
    return replacement


def void_assessment(
    user: User, assessment: Assessment, expected_version: int, reason_code: str, reason: str
) -> Assessment:
    """Mark an active entry void: it stays readable and leaves charts and default exports.

    :raise ChangeNotAllowed: not the recorder and not a supervisor of the site.
    :raise EditConflict: the entry changed since the form opened.
    :raise EntryError: no or unknown reason.
    """
    begin_write(db.session)
    db.session.refresh(assessment)
    if not may_change(user, assessment):
        raise ChangeNotAllowed("Only the clinician who recorded it or a supervisor may change it.")
    if reason_code not in VOID_REASONS:
        raise EntryError("reason_code", "Choose why this entry is void.")
    text = VOID_REASONS[reason_code] if reason_code != "other" else ""
    detail = (reason or "").strip()
    full_reason = f"{text}: {detail}" if text and detail else (text or detail)
    _check_change(user, assessment, expected_version, full_reason)
    invalidated = _retire(assessment, AssessmentStatus.VOIDED, full_reason, None)
    audit.record(
        "assessment_void",
        user=user,
        entity="assessment",
        entity_id=assessment.id,
        site_id=assessment.patient.site_id,
        patient_id=assessment.patient_id,
        reason=full_reason,
        details={"reason_code": reason_code, "signatures_invalidated": invalidated},
    )
    db.session.commit()
    return assessment


def _retire(
    assessment: Assessment, status: str, reason: str, replacement: Assessment | None
) -> list[int]:
    """Take an entry out of the active set (amended or voided) and invalidate its signatures.

    :raise EditConflict: someone changed the row between our check and this write.
    """
    assessment.status = status
    assessment.status_reason = reason
    try:
        db.session.flush()
    except StaleDataError as exc:
        db.session.rollback()
        raise EditConflict(current_version_of(assessment)) from exc
    # The replacement (if any) was flushed with it: the summary sees the new active set.
    dashboard_summary.entries_changed(assessment.episode_id, assessment.scale_key)
    return _invalidate_signatures(assessment, replacement)


def _invalidate_signatures(old: Assessment, replacement: Assessment | None) -> list[int]:
    signatures = db.session.scalars(
        select(Signature).where(
            Signature.assessment_id == old.id, Signature.invalidated_at.is_(None)
        )
    ).all()
    for signature in signatures:
        signature.invalidated_at = now_utc()
        signature.invalidated_by_id = replacement.id if replacement is not None else None
    return [signature.id for signature in signatures]


def history(assessment: Assessment) -> list[Assessment]:
    """Every version of this entry, oldest first (the chain of ``replaces`` links)."""
    first = assessment
    while first.replaces_id is not None:
        first = db.session.get(Assessment, first.replaces_id)
    chain = [first]
    while chain[-1].status == AssessmentStatus.AMENDED:
        newer = db.session.scalar(select(Assessment).where(Assessment.replaces_id == chain[-1].id))
        if newer is None:
            break
        chain.append(newer)
    return chain


@dataclass(frozen=True)
class ItemChange:
    item_key: str
    before: str
    after: str


def changes_between(old: Assessment, new: Assessment, tz_name: str = "UTC") -> list[ItemChange]:
    """What differs between two versions: item answers, observed time (shown in ``tz_name``)
    and notes."""

    def answer(score: ItemScore | None) -> str:
        if score is None:
            return ""
        if score.score is None:
            return f"not assessed ({NOT_ASSESSED_REASONS.get(score.not_assessed_reason, '?')})"
        measured = f" ({score.measured_value})" if score.measured_value is not None else ""
        return f"{score.score}{measured}"

    before = {s.item_key: s for s in old.item_scores}
    after = {s.item_key: s for s in new.item_scores}
    changes = [
        ItemChange(key, answer(before.get(key)), answer(after.get(key)))
        for key in dict.fromkeys([*before, *after])
        if answer(before.get(key)) != answer(after.get(key))
    ]
    if old.observed_at != new.observed_at:
        # Seconds only when they are what differs or what was recorded.
        whole_minutes = old.observed_at.second == new.observed_at.second == 0
        fmt = "%Y-%m-%d %H:%M" if whole_minutes else "%Y-%m-%d %H:%M:%S"
        changes.append(
            ItemChange(
                "observed_at",
                format_local(old.observed_at, tz_name, fmt),
                format_local(new.observed_at, tz_name, fmt),
            )
        )
    if old.notes != new.notes:
        changes.append(ItemChange("notes", old.notes, new.notes))
    return changes


def fingerprint(assessment: Assessment) -> str:
    """A hash of exactly this version's content: what a signature says was reviewed."""
    content = {
        "id": assessment.id,
        "patient_id": assessment.patient_id,
        "episode_id": assessment.episode_id,
        "scale": [assessment.scale_key, assessment.scale_version],
        "observed_at": assessment.observed_at.isoformat(),
        "recorded_at": assessment.recorded_at.isoformat(),
        "recorded_by_id": assessment.recorded_by_id,
        "total": assessment.total,
        "complete": assessment.complete,
        "band": assessment.band,
        "notes": assessment.notes,
        "items": [
            [s.item_key, s.score, s.not_assessed_reason, s.measured_value]
            for s in sorted(assessment.item_scores, key=lambda s: s.position)
        ],
    }
    return hashlib.sha256(audit.canonical_json(content).encode("utf-8")).hexdigest()


def _scale(key: str) -> Scale:
    scale = get_scale(key)
    if scale is None:
        raise EntryError(None, f"The scale {key!r} is no longer installed; it cannot be amended.")
    return scale


def changes_since_review(versions: list[Assessment]) -> tuple[Signature, list[ItemChange]] | None:
    """For a chain whose latest version replaced a signed one: the last signature and what
    changed between the version it signed and the current version."""
    current = versions[-1]
    for version in reversed(versions[:-1]):
        signed = [s for s in version.signatures if s.invalidated_at is not None]
        if signed:
            return signed[-1], changes_between(version, current, current.patient.site.timezone)
    return None
