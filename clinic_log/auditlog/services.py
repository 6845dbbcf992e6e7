"""What a supervisor may read of the audit trail: the events of their sites, and the logins
and logouts of the people who work there."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, or_, select

from ..extensions import db
from ..models import AuditEvent, Patient, User, user_site
from ..patients.services import identifier_key


@dataclass(frozen=True)
class AuditFilter:
    patient: str | None = None  # identifier, exact within the supervisor's sites
    username: str | None = None
    action: str | None = None
    start: datetime | None = None  # UTC, inclusive
    end: datetime | None = None  # UTC, exclusive


def visible_events(user: User, filters: AuditFilter):
    """A select of the events this supervisor may see, newest first, filtered.

    Only their own sites: an emergency grant opens another site's patients for their care,
    not that site's trail of who did what (its staff's logins, corrections and reasons),
    which stays with the site's own supervisors, who review the grant itself from it.
    """
    site_ids = user.member_site_ids
    stmt = select(AuditEvent).where(_visible_to(user)).order_by(AuditEvent.id.desc())
    if filters.patient:
        patient_ids = select(Patient.id).where(
            Patient.site_id.in_(site_ids),
            Patient.identifier_key == identifier_key(filters.patient),
        )
        stmt = stmt.where(AuditEvent.patient_id.in_(patient_ids))
    if filters.username:
        stmt = stmt.where(AuditEvent.username == filters.username.strip().lower())
    if filters.action:
        stmt = stmt.where(AuditEvent.action == filters.action)
    if filters.start:
        stmt = stmt.where(AuditEvent.at >= filters.start)
    if filters.end:
        stmt = stmt.where(AuditEvent.at < filters.end)
    return stmt


def _visible_to(user: User):
    """The events of the user's own sites, and the site-less ones of the people working there."""
    site_ids = user.member_site_ids
    colleagues = select(user_site.c.user_id).where(user_site.c.site_id.in_(site_ids))
    return or_(
        AuditEvent.site_id.in_(site_ids),
        and_(AuditEvent.site_id.is_(None), AuditEvent.user_id.in_(colleagues)),
        # Failed logins and lockouts name the account, not a logged-in user.
        and_(
            AuditEvent.site_id.is_(None),
            AuditEvent.action.in_(("login_failure", "account_locked")),
            AuditEvent.entity_id.in_(colleagues),
        ),
    )


def known_actions(user: User) -> list[str]:
    """The actions of the events this supervisor may see: the filter offers nothing that
    happened only at other sites (which would tell them what goes on there)."""
    return list(
        db.session.scalars(
            select(AuditEvent.action)
            .where(_visible_to(user))
            .distinct()
            .order_by(AuditEvent.action)
        )
    )
