from urllib.parse import urlsplit

from flask import abort, flash, redirect, render_template, request, session, url_for
from flask_login import current_user, login_required, logout_user
from markupsafe import Markup

from .. import audit
from ..database import begin_write
from ..extensions import db
from ..forms import EmptyForm
from . import bp, mfa, services, sessions
from .forms import CodeForm, EnrolForm, LoginForm, PasswordChangeForm

ENROLMENT = "mfa_enrolment"  # the session key of the secret being enrolled
LOGIN_FAILED = (
    "Unknown username or wrong password. After 5 failed attempts an account is locked "
    "for 15 minutes."
)
home_for = sessions.home_for


def safe_next(target: str | None) -> str | None:
    """Allow only a path on this site: no scheme, no host, no backslash tricks."""
    if not target or not target.startswith("/") or target.startswith("//"):
        return None
    if "\\" in target or any(ord(ch) < 32 for ch in target):
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return None
    return target


@bp.route("/login", methods=["GET", "POST"])
def login():
    """Log in with username and password (then a one-time code, when enrolled)."""
    if current_user.is_authenticated:
        return redirect(home_for(current_user))
    form = LoginForm()
    if request.method == "POST" and not sessions.login_allowed():
        _audit_rate_limited()
        return render_template("auth/login.html", form=form, too_many=True), 429
    if form.validate_on_submit():
        try:
            user = services.authenticate(form.username.data, form.password.data)
        except services.AccountError as error:  # an expired one-time password
            form.password.errors.append(error.message)
            return render_template("auth/login.html", form=form), 200
        if user is None:
            form.password.errors.append(LOGIN_FAILED)
            return render_template("auth/login.html", form=form), 200
        next_page = safe_next(request.args.get("next"))
        if user.totp_secret:
            return sessions.start_second_step(user, next_page)
        return sessions.complete_login(user, next_page)
    return render_template("auth/login.html", form=form)


def _audit_rate_limited() -> None:
    begin_write(db.session)
    audit.record("login_rate_limited", details={"address": request.remote_addr})
    db.session.commit()


@bp.route("/login/code", methods=["GET", "POST"])
def login_code():
    """Second step of login: the one-time code from the user's authenticator app."""
    user, next_page = sessions.pending_user()
    if user is None:
        flash("Log in again: the code step expired or was not started.", "info")
        return redirect(url_for("auth.login"))
    form = CodeForm()
    if request.method == "POST" and not sessions.login_allowed():
        _audit_rate_limited()
        abort(429)
    if form.validate_on_submit():
        if services.check_login_code(user, form.code.data):
            return sessions.complete_login(user, next_page)
        form.code.errors.append("That code is not right, or it was already used.")
    return render_template("auth/code.html", form=form), 200 if request.method == "GET" else 422


@bp.route("/logout", methods=["POST"])
@login_required
def logout():
    """Log out and end every session of this user."""
    if EmptyForm().validate_on_submit():
        services.record_logout(current_user._get_current_object())
        logout_user()
        session.clear()
        flash("You are logged out.", "info")
    return redirect(url_for("auth.login"))


@bp.route("/account/password", methods=["GET", "POST"])
@login_required
def password():
    """Change my password (required after an administrator set a one-time password)."""
    form = PasswordChangeForm()
    user = current_user._get_current_object()
    if form.validate_on_submit():
        try:
            services.change_password(user, form.current_password.data, form.password.data)
        except services.AccountError as error:
            form[error.field].errors.append(error.message)
        else:
            flash("Your password is changed. Your other sessions have ended.", "success")
            return sessions.complete_login(user, None)
    status = 422 if request.method == "POST" else 200
    return render_template(
        "auth/password.html", form=form, forced=user.must_change_password
    ), status


@bp.route("/account/mfa", methods=["GET", "POST"])
@login_required
def mfa_enrol():
    """Turn on one-time codes, or move them to a new authenticator app."""
    user = current_user._get_current_object()
    enrolled = bool(user.totp_secret)
    form = EnrolForm()
    # The secret is generated here and kept in the signed session; it is never read from
    # the form, so nobody can choose it for someone else.
    secret = session.get(ENROLMENT)
    if not secret:
        secret = session[ENROLMENT] = mfa.new_secret()
    if form.validate_on_submit():
        try:
            services.change_second_factor(
                user, form.password.data, form.current_code.data, secret, form.code.data
            )
        except services.AccountError as error:
            form[error.field].errors.append(error.message)
        else:
            flash("One-time codes are on for your account.", "success")
            return sessions.complete_login(user, None)
    uri = mfa.provisioning_uri(secret, user.username)
    return render_template(
        "auth/mfa.html",
        form=form,
        secret=secret,
        # Markup: the SVG is drawn here from our own secret, never from user input.
        qr=Markup(mfa.qr_svg(uri)),  # noqa: S704  # nosec B704
        enrolled=enrolled,
        required=sessions.mfa_required(user),
    ), 200 if request.method == "GET" else 422


@bp.app_errorhandler(services.SessionEnded)
def session_ended(error: services.SessionEnded):
    """A wrong password typed again locked the account: this session has ended too, so the
    person goes to the login page, with nothing of the page they were on."""
    logout_user()
    session.clear()
    flash(error.message, "error")
    return redirect(url_for("auth.login"))


@bp.route("/")
@login_required
def home():
    """Send each role to its starting page."""
    return redirect(home_for(current_user))
