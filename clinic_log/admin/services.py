"""Site and account administration: the rules, the writes and their audit events.

Every write locks the row it changes, records an audit event with what was before and after
(never a password or its hash) and commits both together. Creation goes through
``auth.services`` so the CLI and these pages create sites and accounts the same way.
"""

from __future__ import annotations

import secrets
import unicodedata
from datetime import timedelta
from functools import lru_cache
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import joinedload, selectinload

from .. import audit
from ..auth.services import (
    SITE_CODE_PATTERN,
    USERNAME_PATTERN,
    AccountError,
    check_password_rules,
    create_site,
    create_user,
    hash_password,
    one_time_password_expiry,
)
from ..database import begin_write, now_utc
from ..extensions import db
from ..models import Role, Site, SiteAccessGrant, User

# 15 random bytes: 20 URL-safe characters, 120 bits.
ONE_TIME_PASSWORD_BYTES = 15
# Names the zoneinfo database answers to that are not IANA zones a clinic could be in.
_NOT_IANA_ZONES = frozenset({"localtime", "Factory"})
# Emergency access lasts one of these many hours: long enough for a shift, never open-ended.
EMERGENCY_HOURS = (1, 4, 8, 12)
EMERGENCY_REASON_MAX = 500


class AdminRuleError(AccountError):
    """An admin request that breaks a rule; ``field`` names the form field it is about, if any."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field
        self.message = message


@lru_cache(maxsize=1)
def timezone_names() -> tuple[str, ...]:
    """The IANA timezone names a site may use, sorted (read from the tz database once).

    :raise: nothing of its own.
    """
    from zoneinfo import available_timezones

    return tuple(sorted(available_timezones() - _NOT_IANA_ZONES))


def list_sites() -> list[Site]:
    """Every site, by code.

    :raise: nothing of its own (read only).
    """
    return list(db.session.scalars(select(Site).order_by(Site.code)))


def list_accounts() -> list[User]:
    """Every account with its sites, by username.

    :raise: nothing of its own (read only).
    """
    return list(
        db.session.scalars(select(User).options(selectinload(User.sites)).order_by(User.username))
    )


# --------------------------------------------------------------------------- sites


def add_site(actor: User, code: str, name: str, timezone: str) -> Site:
    """Create a site (audited as ``site_create``).

    :raise AdminRuleError: bad or taken code, empty name or an unknown timezone.
    """
    begin_write(db.session)
    code = (code or "").strip().upper()
    if not SITE_CODE_PATTERN.match(code):
        raise AdminRuleError(
            "A site code is 1-16 letters, digits, '-' or '_' (for example NORTH).", field="code"
        )
    if db.session.scalar(select(Site.id).where(Site.code == code)) is not None:
        raise AdminRuleError(f"A site with code {code} already exists.", field="code")
    name = _check_site_name(name)
    _check_timezone(timezone)
    try:
        return create_site(code, name, timezone, actor=actor)
    except AccountError as error:  # a rule create_site has and this function does not (yet)
        raise AdminRuleError(str(error), getattr(error, "field", None)) from error


def update_site(actor: User, site: Site, name: str, timezone: str) -> bool:
    """Rename a site and/or change its timezone (``site_update``); False when nothing changed.

    Stored times are UTC, so a new timezone changes how times are shown, never the times.

    :raise AdminRuleError: empty name or an unknown timezone.
    """
    begin_write(db.session)
    _lock(Site, site)
    name = _check_site_name(name)
    _check_timezone(timezone)
    before = {"name": site.name, "timezone": site.timezone}
    after = {"name": name, "timezone": timezone}
    if before == after:
        db.session.rollback()  # nothing to write: give the write lock back at once
        return False
    site.name, site.timezone = name, timezone
    audit.record(
        "site_update",
        user=actor,
        entity="site",
        entity_id=site.id,
        site_id=site.id,
        details={"code": site.code, "before": before, "after": after},
    )
    db.session.commit()
    return True


def _check_site_name(name: str) -> str:
    name = (name or "").strip()
    if not name:
        raise AdminRuleError("A site needs a name.", field="name")
    return name


def _check_timezone(timezone: str) -> None:
    if timezone not in timezone_names():
        raise AdminRuleError(
            f"{timezone!r} is not an IANA timezone name. Use the Area/Location form, "
            "for example Europe/London or America/New_York (upper and lower case matter).",
            field="timezone",
        )


# --------------------------------------------------------------------------- accounts


def generate_one_time_password(username: str = "") -> str:
    """A random password for one login, to be shown once and never stored.

    :raise AccountError: only if a dozen random draws all broke the password rules (they
        cannot: the rules refuse patterns and the username, which 120 random bits are not).
    """
    for _attempt in range(12):
        password = secrets.token_urlsafe(ONE_TIME_PASSWORD_BYTES)
        try:
            check_password_rules(password, username)
        except AccountError:
            continue
        return password
    raise AccountError("Could not generate a one-time password; try again.")


def add_account(
    actor: User, username: str, display_name: str, role: str, site_codes: list[str]
) -> tuple[User, str]:
    """Create an account with a one-time password that must be changed (``user_create``).

    Returns the user and the one-time password, which exists nowhere else: show it once.

    :raise AdminRuleError: bad or taken username, unknown role or site, a clinical role
        without a site, or an empty display name.
    """
    begin_write(db.session)
    username = (username or "").strip().lower()
    if not USERNAME_PATTERN.match(username):
        raise AdminRuleError(
            "A username is 2-64 lower-case letters, digits, '.', '-' or '_' (for example j.smith).",
            field="username",
        )
    taken = select(User.id).where(func.lower(User.username) == username)
    if db.session.scalar(taken) is not None:
        raise AdminRuleError(f"The username {username} is taken.", field="username")
    display_name = _check_display_name(display_name)
    sites = _sites_for(role, site_codes)
    password = generate_one_time_password(username)
    try:
        user = create_user(
            username,
            password,
            role,
            [site.code for site in sites],
            display_name=display_name,
            actor=actor,
            must_change_password=True,
            one_time_password_expires_at=one_time_password_expiry(),
        )
    except AccountError as error:  # a rule create_user has and this function does not (yet)
        raise AdminRuleError(str(error), getattr(error, "field", None)) from error
    return user, password


def update_account(
    actor: User, target: User, display_name: str, role: str, site_codes: list[str]
) -> bool:
    """Change an account's display name, role and sites (``user_update``); False if unchanged.

    A new role ends the user's sessions so it applies at once; site changes apply at the
    user's next request anyway, because sites are loaded with the user on every request.

    :raise AdminRuleError: unknown role or site, a clinical role without a site, an empty
        display name, or an admin taking away their own admin role.
    """
    begin_write(db.session)
    _lock(User, target)
    display_name = _check_display_name(display_name)
    sites = _sites_for(role, site_codes)
    if target.id == actor.id and role != target.role:
        raise AdminRuleError(
            "You cannot change your own role; ask another administrator.", field="role"
        )
    before = _account_state(target)
    after = {"display_name": display_name, "role": role, "sites": [site.code for site in sites]}
    if before == after:
        db.session.rollback()  # nothing to write: give the write lock back at once
        return False
    target.display_name, target.role, target.sites = display_name, role, sites
    sessions_ended = before["role"] != after["role"]
    if sessions_ended:
        _end_sessions(target)
    _record("user_update", actor, target, before, after, sessions_ended=sessions_ended)
    return True


def deactivate_account(actor: User, target: User) -> None:
    """Deactivate an account and end its sessions (``user_deactivate``).

    :raise AdminRuleError: the account is the actor's own, or already deactivated.
    """
    begin_write(db.session)
    _lock(User, target)
    if target.id == actor.id:
        raise AdminRuleError("You cannot deactivate your own account.")
    if not target.active:
        raise AdminRuleError(f"The account {target.username} is already deactivated.")
    target.active = False
    _end_sessions(target)
    _record("user_deactivate", actor, target, {"active": True}, {"active": False})


def reactivate_account(actor: User, target: User) -> None:
    """Let a deactivated account log in again (``user_reactivate``).

    :raise AdminRuleError: the account is already active.
    """
    begin_write(db.session)
    _lock(User, target)
    if target.active:
        raise AdminRuleError(f"The account {target.username} is already active.")
    target.active = True
    _record("user_reactivate", actor, target, {"active": False}, {"active": True})


def reset_password(actor: User, target: User) -> str:
    """Give an account a new one-time password and end its sessions (``user_password_reset``).

    Returns the one-time password, which exists nowhere else: show it once. A lockout is
    cleared too: the new password must work at once.

    :raise AccountError: only if a generated password broke the password rules (it cannot).
    """
    begin_write(db.session)
    _lock(User, target)
    password = generate_one_time_password(target.username)
    before = {
        "must_change_password": target.must_change_password,
        "locked_until": target.locked_until.isoformat() if target.locked_until else None,
    }
    target.password_hash = hash_password(password)
    target.must_change_password = True
    target.one_time_password_expires_at = one_time_password_expiry()
    target.failed_login_count = 0
    target.locked_until = None
    _end_sessions(target)
    _record(
        "user_password_reset",
        actor,
        target,
        before,
        {"must_change_password": True, "locked_until": None},
    )
    return password


def unlock_account(actor: User, target: User) -> None:
    """Clear an account's failed-login count and lockout (``user_unlock``).

    :raise AdminRuleError: there is nothing to clear.
    """
    begin_write(db.session)
    _lock(User, target)
    if not target.failed_login_count and target.locked_until is None:
        raise AdminRuleError(f"The account {target.username} is not locked.")
    before = {
        "failed_login_count": target.failed_login_count,
        "locked_until": target.locked_until.isoformat() if target.locked_until else None,
    }
    target.failed_login_count, target.locked_until = 0, None
    _record("user_unlock", actor, target, before, {"failed_login_count": 0, "locked_until": None})


def end_sessions(actor: User, target: User) -> None:
    """Log an account out everywhere, on every worker (``user_sessions_ended``).

    :raise: nothing of its own: any account, active or not, can be logged out.
    """
    begin_write(db.session)
    _lock(User, target)
    before = {"session_version": target.session_version}
    _end_sessions(target)
    _record(
        "user_sessions_ended", actor, target, before, {"session_version": target.session_version}
    )


# --------------------------------------------------------------------------- emergency access


def grant_emergency_access(
    actor: User, target: User, site_code: str, hours: int, reason: str
) -> SiteAccessGrant:
    """Let a clinician or supervisor reach one more site's patients for ``hours`` hours
    (``emergency_access_grant``, with the reason and the expiry).

    It takes effect at the person's next request and ends by itself at the expiry.

    :raise AdminRuleError: the actor is not an admin; the account is deactivated or not
        clinical; unknown site or one the person belongs to; a grant to that site is already
        in force; hours not one of ``EMERGENCY_HOURS``; an empty, too long or unprintable reason.
    """
    begin_write(db.session)
    if actor.role != Role.ADMIN:
        raise AdminRuleError("Only administrators grant emergency access.")
    _lock(User, target)
    if not target.active:
        raise AdminRuleError(f"The account {target.username} is deactivated.")
    if not target.is_clinical:
        raise AdminRuleError(
            "Only clinicians and supervisors can be given emergency access; "
            "administrators see no clinical data."
        )
    reason = _check_emergency_reason(reason)
    if hours not in EMERGENCY_HOURS:
        choices = ", ".join(str(h) for h in EMERGENCY_HOURS)
        raise AdminRuleError(f"Choose {choices} hours.", field="hours")
    code = (site_code or "").strip().upper()
    site = db.session.scalar(select(Site).where(Site.code == code))
    if site is None:
        raise AdminRuleError(f"No site with code {code or '(none)'}.", field="site")
    if site.id in target.member_site_ids:
        raise AdminRuleError(
            f"{target.username} already belongs to {site.code}: no emergency access is needed.",
            field="site",
        )
    now = now_utc()
    current = next((g for g in target.emergency_grants if g.site_id == site.id), None)
    if current is not None:
        raise AdminRuleError(
            f"{target.username} already has emergency access to {site.code} until "
            f"{current.expires_at:%Y-%m-%d %H:%M} UTC; revoke it first to grant a new one.",
            field="site",
        )
    grant = SiteAccessGrant(
        user_id=target.id,
        site_id=site.id,
        reason=reason,
        granted_by_id=actor.id,
        granted_at=now,
        expires_at=now + timedelta(hours=hours),
    )
    db.session.add(grant)
    db.session.flush()
    audit.record(
        "emergency_access_grant",
        user=actor,
        entity="site_access_grant",
        entity_id=grant.id,
        site_id=site.id,
        reason=reason,
        details={
            "username": target.username,
            "user_id": target.id,
            "site": site.code,
            "hours": hours,
            "granted_at": now.isoformat(),
            "expires_at": grant.expires_at.isoformat(),
        },
    )
    db.session.commit()
    return grant


def revoke_emergency_access(actor: User, grant: SiteAccessGrant) -> None:
    """End an emergency grant before its expiry (``emergency_access_revoke``).

    :raise AdminRuleError: the actor is not an admin, or the grant has already ended.
    """
    begin_write(db.session)
    if actor.role != Role.ADMIN:
        raise AdminRuleError("Only administrators revoke emergency access.")
    _lock(SiteAccessGrant, grant)
    now = now_utc()
    if not grant.in_force(now):
        raise AdminRuleError("This emergency access has already ended.")
    grant.revoked_at, grant.revoked_by_id = now, actor.id
    audit.record(
        "emergency_access_revoke",
        user=actor,
        entity="site_access_grant",
        entity_id=grant.id,
        site_id=grant.site_id,
        reason=grant.reason,
        details={
            "username": grant.user.username,
            "user_id": grant.user_id,
            "site": grant.site.code,
            "expires_at": grant.expires_at.isoformat(),
            "revoked_at": now.isoformat(),
        },
    )
    db.session.commit()


def emergency_grants_of(user: User, limit: int = 50) -> list[SiteAccessGrant]:
    """A person's emergency grants, newest first, in force or ended.

    :raise: nothing of its own (read only).
    """
    return list(
        db.session.scalars(
            select(SiteAccessGrant)
            .options(*_GRANT_DISPLAY)
            .where(SiteAccessGrant.user_id == user.id)
            .order_by(SiteAccessGrant.granted_at.desc(), SiteAccessGrant.id.desc())
            .limit(limit)
        )
    )


def emergency_grants_in_force() -> list[SiteAccessGrant]:
    """Every emergency grant in force now, soonest expiry first.

    :raise: nothing of its own (read only).
    """
    return list(
        db.session.scalars(
            select(SiteAccessGrant)
            .options(*_GRANT_DISPLAY)
            .where(SiteAccessGrant.revoked_at.is_(None), SiteAccessGrant.expires_at > now_utc())
            .order_by(SiteAccessGrant.expires_at, SiteAccessGrant.id)
        )
    )


_GRANT_DISPLAY = (
    joinedload(SiteAccessGrant.user),
    joinedload(SiteAccessGrant.site),
    joinedload(SiteAccessGrant.granted_by),
    joinedload(SiteAccessGrant.revoked_by),
    joinedload(SiteAccessGrant.reviewed_by),
)


def _check_emergency_reason(reason: str) -> str:
    reason = (reason or "").strip()
    if not reason:
        raise AdminRuleError(
            "Give the reason for emergency access; the site's supervisors review it.",
            field="reason",
        )
    if len(reason) > EMERGENCY_REASON_MAX:
        raise AdminRuleError(
            f"Keep the reason to {EMERGENCY_REASON_MAX} characters.", field="reason"
        )
    # Cc: control characters, line breaks included (one line); Cf: invisible and
    # text-direction characters, which can make a reason read as something it is not.
    if any(unicodedata.category(char) in ("Cc", "Cf") for char in reason):
        raise AdminRuleError(
            "Remove the control, invisible or text-direction characters from the reason.",
            field="reason",
        )
    return reason


# --------------------------------------------------------------------------- helpers


def _lock(
    model: type[Site] | type[User] | type[SiteAccessGrant], row: Site | User | SiteAccessGrant
) -> None:
    """Lock the row for this transaction (PostgreSQL) and reread it, so "before" is true.

    SQLite needs no row lock: ``begin_write`` already holds the database's write lock.
    """
    db.session.execute(select(model.id).where(model.id == row.id).with_for_update())
    db.session.refresh(row)


def _check_display_name(display_name: str) -> str:
    display_name = (display_name or "").strip()
    if not display_name:
        raise AdminRuleError("Enter the person's name.", field="display_name")
    return display_name


def _sites_for(role: str, site_codes: list[str]) -> list[Site]:
    if role not in set(Role):
        raise AdminRuleError(
            f"Unknown role {role!r}; choose one of {', '.join(Role)}.", field="role"
        )
    codes = sorted({code.strip().upper() for code in site_codes})
    sites = list(db.session.scalars(select(Site).where(Site.code.in_(codes)).order_by(Site.code)))
    missing = sorted(set(codes) - {site.code for site in sites})
    if missing:
        raise AdminRuleError(f"No site with code {', '.join(missing)}.", field="sites")
    if role != Role.ADMIN and not sites:
        raise AdminRuleError("Clinicians and supervisors need at least one site.", field="sites")
    return sites


def _account_state(user: User) -> dict[str, Any]:
    return {
        "display_name": user.display_name,
        "role": str(user.role),
        "sites": [site.code for site in user.sites],
    }


def _end_sessions(user: User) -> None:
    # The session token carries this number: every cookie holding the old one stops working.
    user.session_version += 1


def _record(
    action: str,
    actor: User,
    target: User,
    before: dict[str, Any],
    after: dict[str, Any],
    **extra: Any,
) -> None:
    """Write the audit event for an account change and commit it with the change."""
    audit.record(
        action,
        user=actor,
        entity="user",
        entity_id=target.id,
        details={"username": target.username, "before": before, "after": after, **extra},
    )
    db.session.commit()
