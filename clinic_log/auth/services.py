"""Accounts and sites: creation and authentication. The CLI and the views both call these."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import func, select
from werkzeug.security import check_password_hash, generate_password_hash

from .. import audit
from ..database import begin_write, now_utc
from ..extensions import db
from ..models import AuditEvent, Role, Site, User
from ..timeutil import zone
from . import mfa
from .passwords import password_problem

SITE_CODE_PATTERN = re.compile(r"^[A-Z0-9][A-Z0-9_-]{0,15}$")
USERNAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]{1,63}$")


class AccountError(ValueError):
    """A request to create or change an account or site that breaks a rule; ``field`` names
    the form field the message belongs to, when there is one."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field


def hash_password(password: str) -> str:
    return generate_password_hash(password, method=current_app.config["PASSWORD_HASH_METHOD"])


def check_password_rules(password: str, username: str = "") -> None:
    """:raise AccountError: too short or too long, or one that is guessed first."""
    problem = password_problem(password, username)
    if problem:
        raise AccountError(problem)


def create_site(code: str, name: str, timezone: str, *, actor: User | None = None) -> Site:
    """Create a site (clinic), the boundary of who sees which patients.

    :raise AccountError: bad code, unknown timezone or a code already in use.
    """
    begin_write(db.session)
    code = code.strip().upper()
    if not SITE_CODE_PATTERN.match(code):
        raise AccountError("A site code is 1-16 letters, digits, '-' or '_' (for example NORTH).")
    if not name.strip():
        raise AccountError("A site needs a name.")
    try:
        zone(timezone)
    except (KeyError, ValueError) as exc:
        raise AccountError(
            f"{timezone!r} is not an IANA timezone name (e.g. Europe/London)."
        ) from exc
    if db.session.scalar(select(Site.id).where(Site.code == code)) is not None:
        raise AccountError(f"A site with code {code} already exists.")
    site = Site(code=code, name=name.strip(), timezone=timezone)
    db.session.add(site)
    db.session.flush()
    audit.record(
        "site_create",
        user=actor,
        entity="site",
        entity_id=site.id,
        site_id=site.id,
        details={"code": code, "name": site.name, "timezone": timezone},
    )
    db.session.commit()
    return site


def create_user(
    username: str,
    password: str,
    role: str,
    site_codes: list[str],
    *,
    display_name: str | None = None,
    actor: User | None = None,
    must_change_password: bool = False,
) -> User:
    """Create an account with a hashed password, a role and its sites.

    :raise AccountError: bad username, taken username, unknown role or site, weak password,
        or a clinical role without a site.
    """
    begin_write(db.session)
    username = username.strip().lower()
    if not USERNAME_PATTERN.match(username):
        raise AccountError(
            "A username is 2-64 lower-case letters, digits, '.', '-' or '_' (for example j.smith)."
        )
    if role not in set(Role):
        raise AccountError(f"Unknown role {role!r}; choose one of {', '.join(Role)}.")
    check_password_rules(password, username)
    if db.session.scalar(select(User.id).where(func.lower(User.username) == username)) is not None:
        raise AccountError(f"The username {username} is taken.")
    codes = sorted({code.strip().upper() for code in site_codes})
    sites = db.session.scalars(select(Site).where(Site.code.in_(codes))).all()
    missing = sorted(set(codes) - {site.code for site in sites})
    if missing:
        raise AccountError(f"No site with code {', '.join(missing)}; create it first.")
    if role != Role.ADMIN and not sites:
        raise AccountError("Clinicians and supervisors need at least one site.")
    user = User(
        username=username,
        display_name=(display_name or username).strip(),
        password_hash=hash_password(password),
        role=role,
        sites=list(sites),
        must_change_password=must_change_password,
    )
    db.session.add(user)
    db.session.flush()
    audit.record(
        "user_create",
        user=actor,
        entity="user",
        entity_id=user.id,
        details={"username": username, "role": role, "sites": codes},
    )
    db.session.commit()
    return user


LOCKOUT_FAILURES = 5
LOCKOUT_WINDOW = timedelta(minutes=15)
LOCKOUT_DURATION = timedelta(minutes=15)


def find_user(username: str) -> User | None:
    return db.session.scalar(
        select(User).where(func.lower(User.username) == username.strip().lower())
    )


def is_locked(user: User, now: datetime | None = None) -> bool:
    return user.locked_until is not None and user.locked_until > (now or now_utc())


def authenticate(username: str, password: str) -> User | None:
    """Return the active, unlocked user whose password matches, else None.

    Unknown users cost one hash check too, so timing does not reveal which usernames exist;
    a locked account answers exactly like a wrong password.
    """
    user = find_user(username)
    if user is None:
        check_password_hash(_dummy_hash(), password)
        return None
    matches = check_password_hash(user.password_hash, password)
    if not matches or not user.active or is_locked(user):
        return None
    return user


def _dummy_hash() -> str:
    cache = current_app.extensions.setdefault("clinic_log_dummy_hash", {})
    method = current_app.config["PASSWORD_HASH_METHOD"]
    if method not in cache:
        cache[method] = generate_password_hash("not a real password", method=method)
    return cache[method]


def record_login(user: User) -> None:
    begin_write(db.session)
    user.last_login_at = now_utc()
    user.failed_login_count = 0
    user.locked_until = None
    audit.record("login_success", user=user, entity="user", entity_id=user.id)
    db.session.commit()


def record_failed_login(username: str, *, step: str = "password") -> None:
    """Count a failed attempt; the fifth within 15 minutes locks the account for 15 minutes.

    The attempts are counted from the audit trail itself, so every worker sees the same
    number and nothing extra has to be stored.
    """
    begin_write(db.session)
    user = find_user(username)
    now = now_utc()
    details = {"step": step}
    if user is not None:
        user.failed_login_count += 1
        details["locked"] = is_locked(user, now)
        # Count from the last fresh start: a login, an unlock or a password reset.
        fresh_start = db.session.scalar(
            select(func.max(AuditEvent.at)).where(
                AuditEvent.action.in_(("user_unlock", "user_password_reset")),
                AuditEvent.entity == "user",
                AuditEvent.entity_id == user.id,
            )
        )
        since = max(
            t for t in (now - LOCKOUT_WINDOW, user.last_login_at, fresh_start) if t is not None
        )
        earlier = db.session.scalar(
            select(func.count(AuditEvent.id)).where(
                AuditEvent.action == "login_failure",
                AuditEvent.entity == "user",
                AuditEvent.entity_id == user.id,
                AuditEvent.at >= since,
            )
        )
    audit.record(
        "login_failure",
        user=None,
        username=username.strip()[:64],
        entity="user",
        entity_id=user.id if user else None,
        details=details,
    )
    if user is not None and not is_locked(user, now) and earlier + 1 >= LOCKOUT_FAILURES:
        user.locked_until = now + LOCKOUT_DURATION
        audit.record(
            "account_locked",
            user=None,
            username=user.username,
            entity="user",
            entity_id=user.id,
            details={"failures": earlier + 1, "until": user.locked_until.isoformat()},
        )
    db.session.commit()


def record_logout(user: User) -> None:
    begin_write(db.session)
    # A new session version makes every copy of the old session cookie worthless.
    user.session_version += 1
    audit.record("logout", user=user, entity="user", entity_id=user.id)
    db.session.commit()


def change_password(user: User, current: str, new: str) -> None:
    """Set a new password after checking the current one; every other session ends.

    :raise AccountError: the current password is wrong, or the new one breaks the rules or
        equals the current one. ``field`` names the form field.
    """
    begin_write(db.session)
    if not check_password_hash(user.password_hash, current):
        raise AccountError("Your current password is not right.", field="current_password")
    if current == new:
        raise AccountError("Choose a password different from the current one.", field="password")
    problem = password_problem(new, user.username)
    if problem:
        raise AccountError(problem, field="password")
    user.password_hash = hash_password(new)
    user.must_change_password = False
    user.session_version += 1
    audit.record("password_change", user=user, entity="user", entity_id=user.id)
    db.session.commit()


def enrol_second_factor(user: User, secret: str, code: str) -> None:
    """Turn on one-time codes once the user proves their app shows the right code.

    :raise AccountError: the code does not match this secret.
    """
    begin_write(db.session)
    step = mfa.accepted_step(secret, code, None)
    if step is None:
        raise AccountError(
            "That code does not match. Check the clock of your phone and try the next code.",
            field="code",
        )
    user.totp_secret = secret
    user.totp_last_step = step
    user.session_version += 1
    audit.record("mfa_enrol", user=user, entity="user", entity_id=user.id)
    db.session.commit()


def check_second_factor(user: User, code: str) -> bool:
    """Accept a one-time code once (a used code is refused even within its 30 seconds)."""
    begin_write(db.session)
    step = mfa.accepted_step(user.totp_secret or "", code, user.totp_last_step)
    if step is None:
        db.session.rollback()
        return False
    user.totp_last_step = step
    db.session.commit()
    return True
