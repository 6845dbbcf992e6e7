"""Session rules: idle and absolute timeouts, forced password change and second-factor
enrolment, a per-address login rate limit, and cookies marked Secure over HTTPS.

Sessions are signed cookies that hold no patient data; the user's session_version (part of
the login token) lets the server end every session of a user at once.
"""

from __future__ import annotations

import hashlib
import time

from flask import (
    Flask,
    current_app,
    flash,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask.sessions import SecureCookieSessionInterface
from flask_login import current_user, login_user, logout_user
from werkzeug.middleware.proxy_fix import ProxyFix

from .. import audit
from ..database import begin_write
from ..extensions import db, login_manager
from ..models import Role, User
from . import held, services
from .guards import path_naming_no_patient
from .ratelimit import LoginRateLimiter

AUTH_AT = "auth_at"
LAST_SEEN = "last_seen"
PENDING = "mfa_pending"
PENDING_SECONDS = 300
# Pages a user must still reach while a password change or enrolment is pending.
_ALWAYS_OPEN = {"static", "auth.logout", "auth.login", "auth.login_code", "auth.password"}


class SecureWhenHttpsSessionInterface(SecureCookieSessionInterface):
    """Mark the session cookie Secure whenever the request came over HTTPS (directly or,
    with CLINIC_LOG_BEHIND_PROXY, through the TLS-terminating proxy)."""

    def get_cookie_secure(self, app: Flask) -> bool:
        return bool(app.config.get("SESSION_COOKIE_SECURE")) or request.is_secure


def init_app(app: Flask) -> None:
    app.session_interface = SecureWhenHttpsSessionInterface()
    if app.config.get("BEHIND_PROXY"):
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1, x_proto=1, x_host=1)
    app.extensions["clinic_log.login_limiter"] = LoginRateLimiter(
        int(app.config["LOGIN_ATTEMPTS_PER_MINUTE"])
    )
    # Flask-Login's own fingerprint trusts X-Forwarded-For whoever sends it, so a copied
    # cookie passed "strong" protection by naming the victim's address in that header.
    login_manager._session_identifier_generator = session_identifier
    # First of all before-request hooks, whatever registers its own (Flask-WTF's CSRF check
    # included) and in whichever order: a session these rules end or hold back never reaches
    # a CSRF error page that re-shows a form, nor anything else.
    app.before_request_funcs.setdefault(None, []).insert(0, enforce_session_rules)
    held.init_app(app)


def session_identifier() -> str:
    """The fingerprint a session is bound to: the client address as the server trusts it
    (ProxyFix rewrote it only with CLINIC_LOG_BEHIND_PROXY) and the user agent.

    Built from the same text as Flask-Login's, so sessions made without the header survive
    the change.
    """
    address = request.remote_addr
    agent = request.headers.get("User-Agent")
    base = (
        f"{address.encode() if address is not None else None}|"
        f"{agent.encode() if agent is not None else None}"
    )
    return hashlib.sha512(base.encode("utf8")).hexdigest()


def login_allowed() -> bool:
    return current_app.extensions["clinic_log.login_limiter"].allow(request.remote_addr or "-")


def mfa_required(user: User) -> bool:
    return bool(current_app.config["REQUIRE_MFA"]) and user.role in (Role.ADMIN, Role.SUPERVISOR)


def complete_login(user: User, next_page: str | None):
    """Start a fresh session for ``user`` (nothing from before carries over).

    The login is written to the audit trail first: if that write fails (a busy database),
    the user is not logged in, so no session exists that the trail does not know of.
    """
    services.record_login(user)
    session.clear()
    login_user(user)
    now = time.time()
    # Kept to the microsecond: it also tells one login of a user from the next (auth/reads.py).
    session[AUTH_AT] = now
    session[LAST_SEEN] = int(now)
    held.offer_after_login(user)
    return redirect(next_page or home_for(user))


def start_second_step(user: User, next_page: str | None):
    """Password accepted; the one-time code comes next. Only ids are kept in the session."""
    session.clear()
    session[PENDING] = {
        "uid": user.id,
        "v": user.session_version,
        "at": int(time.time()),
        "next": next_page,
    }
    return redirect(url_for("auth.login_code"))


def pending_user() -> tuple[User | None, str | None]:
    pending = session.get(PENDING)
    if not isinstance(pending, dict) or time.time() - pending.get("at", 0) > PENDING_SECONDS:
        return None, None
    user = db.session.get(User, pending.get("uid"))
    if user is None or not user.active or user.session_version != pending.get("v"):
        return None, None
    return user, pending.get("next")


def home_for(user: User) -> str:
    if user.role == Role.ADMIN:
        return url_for("admin.index")
    if user.role == Role.SUPERVISOR:
        return url_for("dashboard.index")
    return url_for("patients.index")


def enforce_session_rules():
    """Before every request: end a session that idled or lived too long, then send users who
    must change their password or enrol a second factor to that page first.

    A request these rules let through is marked ``g.session_rules_passed``; only such a
    request may have its form shown again after a CSRF failure (``web.csrf_error``).
    """
    if request.endpoint == "static" or not current_user.is_authenticated:
        g.session_rules_passed = True
        return None
    now = int(time.time())
    # Fractions are allowed (a short idle timeout for a kiosk); int() would turn 0.5 into 0.
    idle = float(current_app.config["IDLE_TIMEOUT_MINUTES"]) * 60
    lifetime = float(current_app.config["SESSION_LIFETIME_HOURS"]) * 3600
    if now - session.get(LAST_SEEN, 0) > idle or now - session.get(AUTH_AT, 0) > lifetime:
        return _time_out(idle, now - session.get(AUTH_AT, 0) > lifetime)
    if now - session.get(LAST_SEEN, 0) >= min(30, idle / 4):
        # Refreshing at most every 30 s (sooner for a very short timeout) keeps the idle clock
        # honest without re-signing and re-sending the cookie on every chart and page request.
        session[LAST_SEEN] = now
    user = current_user._get_current_object()
    if request.endpoint not in _ALWAYS_OPEN:
        if user.must_change_password and request.endpoint != "auth.password":
            return _held_back(user, "password", "auth.password", "change your password")
        if mfa_required(user) and not user.totp_secret and request.endpoint != "auth.mfa_enrol":
            return _held_back(user, "mfa", "auth.mfa_enrol", "set up one-time codes")
    g.session_rules_passed = True
    return None


def _held_back(user: User, why: str, endpoint: str, what_first: str):
    """Send the user to the page they must pass first; a form they posted is held for them
    and offered back after that (which starts a new login)."""
    if request.method == "POST" and held.holdable():
        begin_write(db.session)
        held_id = held.hold(user.id, why)
        db.session.commit()
        if held_id is not None:
            flash(
                f"What you just submitted was NOT saved: you must {what_first} first. It is "
                f"held for you for {held.minutes():g} minutes and offered back once you have.",
                "warning",
            )
    return redirect(url_for(endpoint))


def _time_out(idle_seconds: float, absolute: bool):
    user = current_user._get_current_object()
    begin_write(db.session)
    # The form's content is kept on the server for this user only (never in the cookie).
    held_id = held.hold(user.id, "absolute" if absolute else "idle")
    # Written without a site, so every site of the user sees it: the route, not the ids.
    details = {"kind": "absolute" if absolute else "idle", "path": path_naming_no_patient()}
    if held_id is not None:
        details["held_input"] = held_id
    audit.record(
        "session_timeout",
        user=user,
        entity="user",
        entity_id=user.id,
        details=details,
    )
    db.session.commit()
    logout_user()
    session.clear()
    why = (
        "Your session reached its maximum length"
        if absolute
        else f"Your session ended after {idle_seconds / 60:g} minutes without activity"
    )
    if request.method == "POST":
        # Nothing about the patient on this page: the login form and what became of the post.
        from .forms import LoginForm

        if held_id is not None:
            message = (
                f"{why}. What you just submitted was NOT saved. It is held for you for "
                f"{held.minutes():g} minutes: log in again and you can restore it."
            )
        else:
            message = f"{why}. What you just submitted was NOT saved: log in and enter it again."
        return render_template("auth/login.html", form=LoginForm(), timeout=message), 401
    flash(f"{why}. Please log in again.", "info")
    return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))
