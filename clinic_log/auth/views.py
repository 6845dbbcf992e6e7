from urllib.parse import urlsplit

from flask import flash, redirect, render_template, request, session, url_for
from flask_login import current_user, login_required, login_user, logout_user

from ..forms import EmptyForm
from ..models import Role
from . import bp, services
from .forms import LoginForm

LOGIN_FAILED = "Unknown username or wrong password."


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


def home_for(user) -> str:
    if user.role == Role.ADMIN:
        return url_for("admin.index")
    if user.role == Role.SUPERVISOR:
        return url_for("dashboard.index")
    return url_for("patients.index")


@bp.route("/login", methods=["GET", "POST"])
def login():
    """Log in with username and password."""
    if current_user.is_authenticated:
        return redirect(home_for(current_user))
    form = LoginForm()
    if form.validate_on_submit():
        user = services.authenticate(form.username.data, form.password.data)
        if user is None:
            services.record_failed_login(form.username.data)
            form.password.errors.append(LOGIN_FAILED)
            return render_template("auth/login.html", form=form), 200
        next_page = safe_next(request.args.get("next"))
        # A fresh session at login: nothing from before authentication carries over.
        session.clear()
        login_user(user)
        services.record_login(user)
        return redirect(next_page or home_for(user))
    return render_template("auth/login.html", form=form)


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


@bp.route("/")
@login_required
def home():
    """Send each role to its starting page."""
    return redirect(home_for(current_user))
