"""Access control in one place: every route that takes an id loads its object through here.

Another site's object is answered exactly like a missing one (404), so ids reveal nothing; the
refusal itself is written to the audit trail.

A site reached through an emergency ("break-glass") grant counts as the user's own while the
grant is in force (``User.site_ids``); each patient opened that way is written to the audit
trail as ``emergency_access_use``, so a supervisor of the site can see what was looked at.
"""

from __future__ import annotations

from functools import wraps

from flask import abort, g, request
from flask_login import current_user, login_required
from sqlalchemy import bindparam, literal, select, union_all
from sqlalchemy.orm import joinedload

from .. import audit
from ..database import begin_write, now_utc
from ..extensions import db, login_manager
from ..models import Assessment, Episode, Patient, Role, SiteAccessGrant, User, user_site


def _reachable_sites_statement():
    """The user's own sites (granted: false) and the sites of their grants in force (true)."""
    member = select(user_site.c.site_id, literal(False)).where(
        user_site.c.user_id == bindparam("user_id")
    )
    granted = select(SiteAccessGrant.site_id, literal(True)).where(
        SiteAccessGrant.user_id == bindparam("user_id"),
        SiteAccessGrant.revoked_at.is_(None),
        SiteAccessGrant.expires_at > bindparam("now"),
    )
    return union_all(member, granted)


# Built once, like the user's own query: both run on every request.
_REACHABLE_SITES = _reachable_sites_statement()
_USER_BY_ID = select(User).where(User.id == bindparam("user_id"))
_PATIENT_WITH_SITE = (
    select(Patient).options(joinedload(Patient.site)).where(Patient.id == bindparam("patient_id"))
)


@login_manager.user_loader
def load_user(token: str) -> User | None:
    """Load the user of a session token ``"<id>:<session_version>"``.

    A token with an old version (after logout, password change or deactivation) loads nobody.
    """
    user_id, _, version = token.partition(":")
    if not (user_id.isdigit() and version.isdigit()):
        return None
    user = db.session.execute(_USER_BY_ID, {"user_id": int(user_id)}).scalar_one_or_none()
    if user is None or not user.active or user.session_version != int(version):
        return None
    # Every guarded request needs the sites the user may reach, and most need nothing else
    # of them: their ids come in one small query; the sites and grants as objects load only
    # where a page shows them. Grants count for clinical roles only (``User.emergency_grants``).
    rows = db.session.connection().execute(_REACHABLE_SITES, {"user_id": user.id, "now": now_utc()})
    own, granted = set(), set()
    for site_id, by_grant in rows:
        (granted if by_grant else own).add(site_id)
    user.loaded_site_ids = (own, granted if user.is_clinical else set())
    return user


def refuse(status: int, *, entity: str | None = None, entity_id: int | None = None):
    """Audit a refused access, then answer with ``status`` (404 hides whether the id exists)."""
    record_refusal(status, entity=entity, entity_id=entity_id)
    abort(status)


def record_refusal(
    status: int,
    *,
    entity: str | None = None,
    entity_id: int | None = None,
    patient_id: int | None = None,
):
    """Write a refused access to the audit trail, in its own transaction.

    ``patient_id`` names a patient the request asked for outside its path (an export's
    query); the refusal belongs to that patient's site, as for an id in the path.
    """
    db.session.rollback()
    site_id, patient_id, path = refusal_scope(entity, entity_id, patient_id)
    begin_write(db.session)
    audit.record(
        "access_refused",
        user=current_user if current_user.is_authenticated else None,
        entity=entity,
        entity_id=entity_id,
        site_id=site_id,
        patient_id=patient_id,
        details={"path": path, "method": request.method, "status": status},
    )
    db.session.commit()


# Where each kind of patient data leads to its patient and site: a refusal is written there.
_PATIENT_OF = {
    "patient": select(Patient.site_id, Patient.id).where(Patient.id == bindparam("id")),
    "episode": select(Patient.site_id, Patient.id)
    .join(Episode, Episode.patient_id == Patient.id)
    .where(Episode.id == bindparam("id")),
    "assessment": select(Patient.site_id, Patient.id)
    .join(Assessment, Assessment.patient_id == Patient.id)
    .where(Assessment.id == bindparam("id")),
}
_PATH_ARGS = {"patient_id": "patient", "episode_id": "episode", "assessment_id": "assessment"}


def _patient_of(kind: str | None, ident: int | None) -> tuple[int, int] | None:
    """(site id, patient id) of an existing patient, episode or entry, else None (also for
    a number no id column holds)."""
    if kind not in _PATIENT_OF or not isinstance(ident, int) or not 0 < ident < 2**31:
        return None
    row = db.session.execute(_PATIENT_OF[kind], {"id": ident}).first()
    return (row[0], row[1]) if row else None


def refusal_scope(
    entity: str | None = None, entity_id: int | None = None, patient_id: int | None = None
) -> tuple[int | None, int | None, str]:
    """(site id, patient id, path) for the audit line of a refused request.

    A refusal of another site's patient, entry or episode belongs to that site, so its own
    supervisors see who tried; the trail of the user's own sites then never holds it. One of
    an id that does not exist names no site. A path that also names data of a different site
    (a North patient's address around a South episode) is written as its route, without ids,
    so no site's trail learns another's ids from it.
    """
    named = [
        found
        for arg, kind in _PATH_ARGS.items()
        if (found := _patient_of(kind, (request.view_args or {}).get(arg))) is not None
    ]
    target = (
        _patient_of(entity, entity_id)
        or _patient_of("patient", patient_id)
        or (named[0] if named else None)
    )
    site_id, target_patient = target or (None, None)
    path = request.path
    if any(site != site_id for site, _patient in named):
        path = request.url_rule.rule if request.url_rule is not None else ""
    return site_id, target_patient, path


def path_naming_no_patient() -> str:
    """The request's path for a line written without a site: its route (``/patients/<id:
    patient_id>``) when the path names a patient, an entry or an episode, since the trail of
    every site of the user shows such a line."""
    if request.url_rule is not None and set(request.view_args or {}) & set(_PATH_ARGS):
        return request.url_rule.rule
    return request.path


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
    """The patient, if it belongs to one of the current user's sites (their own, or one they
    reach through an emergency grant in force); otherwise 404."""
    patient = db.session.execute(
        _PATIENT_WITH_SITE, {"patient_id": patient_id}
    ).scalar_one_or_none()
    if patient is None or not _may_reach(patient.site_id, patient.id):
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
    if assessment is None or not _may_reach(assessment.patient.site_id, assessment.patient_id):
        refuse(404, entity="assessment", entity_id=assessment_id)
    return assessment


def _may_reach(site_id: int, patient_id: int) -> bool:
    """True at the user's own sites, and at a site of an emergency grant in force (the same
    sites as ``User.site_ids``); a patient reached through a grant is audited."""
    if site_id in current_user.member_site_ids:
        return True
    if site_id not in current_user.site_ids:
        return False  # decided without loading the grants as objects
    grants = current_user.emergency_grants
    grant = next((grant for grant in grants if grant.site_id == site_id), None)
    if grant is None:
        return False
    _record_emergency_use(grant, patient_id)
    return True


def _record_emergency_use(grant: SiteAccessGrant, patient_id: int) -> None:
    """Audit a patient reached through an emergency grant, once per patient and request (a
    page that loads the patient twice writes one event).

    Its own small transaction, before the view reads or writes anything: what the view then
    records (an entry, an amendment) follows this event in the trail.
    """
    noted = g.setdefault("emergency_patients", set())
    if patient_id in noted:
        return
    noted.add(patient_id)
    site_id = grant.site_id
    details = {
        "via": "emergency_access",
        "grant": grant.id,
        "expires_at": grant.expires_at.isoformat(),
        "path": request.path,
        "method": request.method,
    }
    begin_write(db.session)
    audit.record(
        "emergency_access_use",
        user=current_user,
        entity="site_access_grant",
        entity_id=grant.id,
        site_id=site_id,
        patient_id=patient_id,
        details=details,
    )
    db.session.commit()
