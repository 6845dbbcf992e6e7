"""Access control in one place: every route that takes an id loads its object through here.

Another site's object is answered exactly like a missing one (404), so ids reveal nothing; the
refusal itself is written to the audit trail.
"""

from __future__ import annotations

from functools import wraps

from flask import abort, request
from flask_login import current_user, login_required
from sqlalchemy import select
from sqlalchemy.orm import joinedload

from .. import audit
from ..database import begin_write
from ..extensions import db, login_manager
from ..models import Assessment, Episode, Patient, Role, User


@login_manager.user_loader
def load_user(token: str) -> User | None:
    """Load the user of a session token ``"<id>:<session_version>"``.

    A token with an old version (after logout, password change or deactivation) loads nobody.
    """
    user_id, _, version = token.partition(":")
    if not (user_id.isdigit() and version.isdigit()):
        return None
    # The user's sites come with the user: every guarded request needs them.
    user = db.session.get(User, int(user_id), options=[joinedload(User.sites)])
    if user is None or not user.active or user.session_version != int(version):
        return None
    return user


def refuse(status: int, *, entity: str | None = None, entity_id: int | None = None):
    """Audit a refused access, then answer with ``status`` (404 hides whether the id exists)."""
    db.session.rollback()
    begin_write(db.session)
    audit.record(
        "access_refused",
        user=current_user if current_user.is_authenticated else None,
        entity=entity,
        entity_id=entity_id,
        details={"path": request.path, "method": request.method, "status": status},
    )
    db.session.commit()
    abort(status)


def role_required(*roles: Role):
    """Only these roles reach the view; anyone else gets 403 and an audit line."""

    def decorator(view):
        @wraps(view)
        @login_required
        def wrapped(*args, **kwargs):
            if current_user.role not in roles:
                refuse(403)
            return view(*args, **kwargs)

        return wrapped

    return decorator


# Clinicians and supervisors reach clinical data; admins manage accounts only.
clinical_required = role_required(Role.CLINICIAN, Role.SUPERVISOR)
admin_required = role_required(Role.ADMIN)


def load_patient(patient_id: int) -> Patient:
    """The patient, if it belongs to one of the current user's sites; otherwise 404."""
    patient = db.session.get(Patient, patient_id, options=[joinedload(Patient.site)])
    if patient is None or patient.site_id not in current_user.site_ids:
        refuse(404, entity="patient", entity_id=patient_id)
    return patient


def load_episode(patient: Patient, episode_id: int) -> Episode:
    episode = db.session.scalar(
        select(Episode).where(Episode.id == episode_id, Episode.patient_id == patient.id)
    )
    if episode is None:
        refuse(404, entity="episode", entity_id=episode_id)
    return episode


def load_assessment(assessment_id: int) -> Assessment:
    assessment = db.session.get(Assessment, assessment_id)
    if assessment is None or assessment.patient.site_id not in current_user.site_ids:
        refuse(404, entity="assessment", entity_id=assessment_id)
    return assessment
