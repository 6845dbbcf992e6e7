"""Accounts and sites: creation and authentication. The CLI and the views both call these."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import case, func, or_, select, update
from werkzeug.security import check_password_hash, generate_password_hash

from .. import audit
from ..database import begin_write, now_utc
from ..extensions import db
from ..models import Role, Site, User
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
    one_time_password_expires_at: datetime | None = None,
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
        one_time_password_expires_at=one_time_password_expires_at,
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

EXPIRED_ONE_TIME_MESSAGE = "This one-time password has expired: ask an administrator for a new one."


class PasswordRefused(AccountError):
    """A password or code typed again to confirm an action was wrong, or the account is
    locked (then nothing was checked)."""


class SessionEnded(Exception):
    """A wrong password typed again locked the account, and every session of the user has
    ended, the one it was typed in included. The web layer logs out and shows ``message``."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


def find_user(username: str) -> User | None:
    return db.session.scalar(
        select(User).where(func.lower(User.username) == username.strip().lower())
    )


def is_locked(user: User, now: datetime | None = None) -> bool:
    return user.locked_until is not None and user.locked_until > (now or now_utc())


# --------------------------------------------------------------------------- counted tries
#
# Every password or code a person types (to log in, or again to sign or to change a
# credential) is one try. A try is counted *before* it is checked, in one UPDATE, so tries
# sent in parallel are counted one after the other on every database and no more than
# LOCKOUT_FAILURES of them are ever checked in a run. The try that uses the run's last one and
# fails locks the account. A run ends with a right password, an administrator's unlock or
# reset, or LOCKOUT_WINDOW without a try: five failures within 15 minutes always lock.


def _claim_try(user_id: int) -> int | None:
    """Count one try of ``user_id``; its number in the run, or None when the account is
    locked or the run's tries are all taken (the last ones may still be being checked)."""
    now = now_utc()
    new_run = or_(
        User.last_try_at.is_(None),
        User.last_try_at <= now - LOCKOUT_WINDOW,
        User.locked_until.is_not(None),  # a lock that has run out (locked ones never match)
    )
    begin_write(db.session)
    tries = db.session.execute(
        update(User)
        .where(
            User.id == user_id,
            or_(User.locked_until.is_(None), User.locked_until <= now),
            or_(new_run, User.failed_login_count < LOCKOUT_FAILURES),
        )
        .values(
            failed_login_count=case((new_run, 1), else_=User.failed_login_count + 1),
            last_try_at=now,
            locked_until=None,
        )
        .returning(User.failed_login_count)
        .execution_options(synchronize_session=False)
    ).scalar_one_or_none()
    # Committed before the check, so parallel tries see it (and no lock is held meanwhile).
    db.session.commit()
    return tries


def _release_try(user_id: int) -> None:
    """Uncount a right password whose login still waits for its code (that counts itself)."""
    begin_write(db.session)
    db.session.execute(
        update(User)
        .where(User.id == user_id, User.failed_login_count > 0)
        .values(failed_login_count=User.failed_login_count - 1)
        .execution_options(synchronize_session=False)
    )
    db.session.commit()


def _reset_tries(user_id: int) -> None:
    """A right password ends the run, as a login does."""
    begin_write(db.session)
    db.session.execute(
        update(User)
        .where(User.id == user_id)
        .values(failed_login_count=0, last_try_at=None, locked_until=None)
        .execution_options(synchronize_session=False)
    )
    db.session.commit()


def _record_failure(
    action: str,
    user_id: int | None,
    username: str,
    details: dict,
    *,
    tries: int | None,
    logged_in: bool = False,
    typed: str | None = None,
) -> bool:
    """Audit a wrong password or code; lock the account when it used the run's last try
    (and then, for a try made inside a session, end every session of the user). True when
    this try locked the account."""
    now = now_utc()
    begin_write(db.session)
    locked = False
    if user_id is not None and tries is not None and tries >= LOCKOUT_FAILURES:
        until = now + LOCKOUT_DURATION
        values = {"locked_until": until}
        if logged_in:
            # A new session version makes every session cookie of the user worthless.
            values["session_version"] = User.session_version + 1
        # Not when a right password ended the run meanwhile.
        locked = (
            db.session.execute(
                update(User)
                .where(User.id == user_id, User.failed_login_count >= LOCKOUT_FAILURES)
                .values(**values)
                .execution_options(synchronize_session=False)
            ).rowcount
            == 1
        )
    audit.record(
        action,
        user_id=user_id if logged_in else None,
        username=(typed or username).strip()[:64],  # a login failure keeps what was typed
        entity="user",
        entity_id=user_id,
        details=details,
    )
    if locked:
        audit.record(
            "account_locked",
            user_id=user_id if logged_in else None,
            username=username,
            entity="user",
            entity_id=user_id,
            details={
                **{k: v for k, v in details.items() if k in ("purpose", "step")},
                "failures": tries,
                "until": until.isoformat(),
                "sessions_ended": logged_in,
            },
        )
    db.session.commit()
    return locked


def authenticate(username: str, password: str) -> User | None:
    """Return the active, unlocked user whose password matches, else None; a wrong password
    is counted toward the lockout and audited here.

    Unknown users cost one hash check too, so timing does not reveal which usernames exist;
    a locked account answers exactly like a wrong password.

    :raise AccountError: the password is an administrator's one-time password that has
        expired (said only to someone who typed it right).
    """
    user = find_user(username)
    details = {"step": "password", "locked": False}
    if user is None:
        check_password_hash(_dummy_hash(), password)
        _record_failure("login_failure", None, username, details, tries=None)
        return None
    user_id, name = user.id, user.username
    tries = _claim_try(user_id)
    if tries is None:
        check_password_hash(_dummy_hash(), password)  # the same work as a real check
        _record_failure(
            "login_failure", user_id, name, {**details, "locked": True}, tries=None, typed=username
        )
        return None
    user = db.session.get(User, user_id)
    if not check_password_hash(user.password_hash, password) or not user.active:
        _record_failure("login_failure", user_id, name, details, tries=tries, typed=username)
        return None
    if one_time_password_expired(user):
        _release_try(user_id)
        begin_write(db.session)
        audit.record(
            "one_time_password_expired",
            username=name,
            entity="user",
            entity_id=user_id,
            details={"expired_at": user.one_time_password_expires_at.isoformat()},
        )
        db.session.commit()
        raise AccountError(EXPIRED_ONE_TIME_MESSAGE, field="password")
    if user.totp_secret:
        _release_try(user_id)  # the code step counts a try of its own
    return user


def one_time_password_expired(user: User, now: datetime | None = None) -> bool:
    expires = user.one_time_password_expires_at
    return user.must_change_password and expires is not None and expires <= (now or now_utc())


def one_time_password_expiry() -> datetime:
    """When a one-time password issued now stops working (``ONE_TIME_PASSWORD_HOURS``)."""
    return now_utc() + timedelta(hours=float(current_app.config["ONE_TIME_PASSWORD_HOURS"]))


def confirm_password(user: User, password: str, purpose: str, *, wrong: str, field: str) -> None:
    """Check a password typed again to sign or to change a credential. It is a try like a
    login's: counted toward the lockout first, audited when wrong (``reentry_failure`` with
    the ``purpose``), and a right one ends the run.

    :raise PasswordRefused: wrong (message ``wrong``), or the account is locked.
    :raise SessionEnded: this wrong password locked the account; every session has ended.
    """
    user_id, name = user.id, user.username
    if not password:
        raise PasswordRefused(wrong, field=field)
    details = {"purpose": purpose, "step": "password", "locked": False}
    tries = _claim_try(user_id)
    if tries is None:
        check_password_hash(_dummy_hash(), password)
        _record_failure(
            "reentry_failure",
            user_id,
            name,
            {**details, "locked": True},
            tries=None,
            logged_in=True,
        )
        raise PasswordRefused(LOCKED_MESSAGE, field=field)
    if check_password_hash(db.session.get(User, user_id).password_hash, password):
        _reset_tries(user_id)
        return
    if _record_failure("reentry_failure", user_id, name, details, tries=tries, logged_in=True):
        raise SessionEnded(_locked_out_message(wrong))
    raise PasswordRefused(wrong, field=field)


LOCKED_MESSAGE = (
    "Your account is locked after too many wrong passwords: try again in 15 minutes, "
    "or ask an administrator to unlock it."
)


def _locked_out_message(wrong: str) -> str:
    return (
        f"{wrong} After {LOCKOUT_FAILURES} wrong passwords your account is locked for "
        f"{LOCKOUT_DURATION.seconds // 60} minutes, and you are logged out."
    )


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
    user.last_try_at = None
    user.locked_until = None
    audit.record("login_success", user=user, entity="user", entity_id=user.id)
    db.session.commit()


def record_logout(user: User) -> None:
    begin_write(db.session)
    # A new session version makes every copy of the old session cookie worthless.
    user.session_version += 1
    audit.record("logout", user=user, entity="user", entity_id=user.id)
    db.session.commit()


def change_password(user: User, current: str, new: str) -> None:
    """Set a new password after checking the current one; every other session ends.

    :raise AccountError: the current password is wrong (counted toward the lockout), or the
        new one breaks the rules or equals the current one. ``field`` names the form field.
    :raise SessionEnded: the wrong current password locked the account.
    """
    if current == new:
        raise AccountError("Choose a password different from the current one.", field="password")
    problem = password_problem(new, user.username)
    if problem:
        raise AccountError(problem, field="password")
    confirm_password(
        user,
        current,
        "password_change",
        wrong="Your current password is not right.",
        field="current_password",
    )
    begin_write(db.session)
    user = db.session.get(User, user.id)
    user.password_hash = hash_password(new)
    user.must_change_password = False
    user.one_time_password_expires_at = None
    user.session_version += 1
    audit.record("password_change", user=user, entity="user", entity_id=user.id)
    db.session.commit()


def change_second_factor(
    user: User, password: str, current_code: str | None, secret: str, code: str
) -> None:
    """Turn on one-time codes, or move them to a new app, once the user has typed their
    password (and, when codes are already on, a code from the current app) and proved the
    new app shows the right code. ``secret`` is the one this server generated and kept.

    :raise AccountError: a code is missing or does not match (``field`` names it); a wrong
        password or current code is counted toward the lockout and audited.
    :raise SessionEnded: a wrong password or current code locked the account.
    """
    confirm_password(
        user, password, "mfa_change", wrong="That is not your password.", field="password"
    )
    user = db.session.get(User, user.id)
    if user.totp_secret:
        if not (current_code or "").strip():
            raise AccountError("Enter the code your current app shows now.", field="current_code")
        if not confirm_code(user, current_code, "mfa_change"):
            raise AccountError(
                "That code from your current app is not right, or it was already used.",
                field="current_code",
            )
    step = mfa.accepted_step(secret, code, None)
    if step is None:
        raise AccountError(
            "That code does not match. Check the clock of your phone and try the next code.",
            field="code",
        )
    begin_write(db.session)
    user = db.session.get(User, user.id)
    replaced = bool(user.totp_secret)
    user.totp_secret = secret
    user.totp_last_step = step
    user.session_version += 1
    audit.record(
        "mfa_enrol", user=user, entity="user", entity_id=user.id, details={"replaced": replaced}
    )
    db.session.commit()


def _use_code(user_id: int, secret: str, code: str) -> bool:
    """Accept a one-time code once: its time step is recorded by one conditional UPDATE, so
    of two requests with the same code (even in parallel) only one gets it."""
    step = mfa.accepted_step(secret, code, None)
    if step is None:
        return False
    begin_write(db.session)
    used = db.session.execute(
        update(User)
        .where(
            User.id == user_id,
            User.totp_secret == secret,
            or_(User.totp_last_step.is_(None), User.totp_last_step < step),
        )
        .values(totp_last_step=step)
        .execution_options(synchronize_session=False)
    ).rowcount
    db.session.commit()
    return used == 1


def check_login_code(user: User, code: str) -> bool:
    """The login's second step: a try like a password's (counted first, audited as a
    ``login_failure`` when wrong, locking at the limit); the code is accepted once."""
    user_id, name, secret = user.id, user.username, user.totp_secret or ""
    details = {"step": "code", "locked": False}
    tries = _claim_try(user_id)
    if tries is None:
        _record_failure("login_failure", user_id, name, {**details, "locked": True}, tries=None)
        return False
    if _use_code(user_id, secret, code):
        return True  # the login that follows ends the run
    _record_failure("login_failure", user_id, name, details, tries=tries)
    return False


def confirm_code(user: User, code: str, purpose: str) -> bool:
    """A code from the current app typed again inside a session: a try like a password's.

    :raise SessionEnded: this wrong code locked the account; every session has ended.
    """
    user_id, name, secret = user.id, user.username, user.totp_secret or ""
    details = {"purpose": purpose, "step": "code", "locked": False}
    tries = _claim_try(user_id)
    if tries is None:
        _record_failure(
            "reentry_failure",
            user_id,
            name,
            {**details, "locked": True},
            tries=None,
            logged_in=True,
        )
        return False
    if _use_code(user_id, secret, code):
        _reset_tries(user_id)
        return True
    if _record_failure("reentry_failure", user_id, name, details, tries=tries, logged_in=True):
        raise SessionEnded(_locked_out_message("That code is not right."))
    return False
