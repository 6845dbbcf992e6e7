"""Sites and accounts. Admins see no clinical data here: no patients, no assessments."""

from flask import flash, redirect, render_template, request, url_for
from flask_login import current_user
from wtforms.fields.choices import SelectChoice

from ..auth.guards import admin_required, refuse
from ..database import now_utc
from ..extensions import db
from ..forms import EmptyForm, redisplay_on_csrf_error
from ..models import Role, Site, SiteAccessGrant, User
from . import bp, services
from .forms import AccountEditForm, AccountForm, EmergencyAccessForm, SiteEditForm, SiteForm


def _actor() -> User:
    return current_user._get_current_object()


def _load_site(site_id: int) -> Site:
    site = db.session.get(Site, site_id)
    if site is None:
        refuse(404, entity="site", entity_id=site_id)
    return site


def _load_account(user_id: int) -> User:
    user = db.session.get(User, user_id)
    if user is None:
        refuse(404, entity="user", entity_id=user_id)
    return user


def _apply_rule_error(form, error: services.AdminRuleError) -> None:
    """Show a service's refusal next to its field, or above the form when it has none."""
    if error.field in form:
        form[error.field].errors.append(error.message)
    else:
        form.form_errors.append(error.message)


def _site_choices(form) -> None:
    form.sites.choices = [
        SelectChoice(site.code, f"{site.code} — {site.name}") for site in services.list_sites()
    ]


@bp.route("/")
@admin_required
def index():
    """Sites and accounts at a glance; admins see no clinical data."""
    return render_template(
        "admin/index.html",
        sites=services.list_sites(),
        users=services.list_accounts(),
        grants=services.emergency_grants_in_force(),
        now=now_utc(),
    )


# --------------------------------------------------------------------------- sites


@bp.route("/sites/new", methods=["GET", "POST"])
@redisplay_on_csrf_error
@admin_required
def new_site():
    """Create a site: code, name and IANA timezone."""
    form = SiteForm()
    if form.validate_on_submit():
        try:
            site = services.add_site(_actor(), form.code.data, form.name.data, form.timezone.data)
        except services.AdminRuleError as error:
            _apply_rule_error(form, error)
        else:
            flash(f"Site {site.code} created.", "success")
            return redirect(url_for("admin.index"))
    status = 422 if request.method == "POST" else 200
    return render_template(
        "admin/site_form.html", form=form, site=None, timezones=services.timezone_names()
    ), status


@bp.route("/sites/<id:site_id>/edit", methods=["GET", "POST"])
@redisplay_on_csrf_error
@admin_required
def edit_site(site_id: int):
    """Rename a site or change its timezone."""
    site = _load_site(site_id)
    form = SiteEditForm(obj=site)
    if form.validate_on_submit():
        try:
            changed = services.update_site(_actor(), site, form.name.data, form.timezone.data)
        except services.AdminRuleError as error:
            _apply_rule_error(form, error)
        else:
            flash(f"Site {site.code} saved." if changed else "Nothing changed.", "success")
            return redirect(url_for("admin.index"))
    status = 422 if request.method == "POST" else 200
    return render_template(
        "admin/site_form.html", form=form, site=site, timezones=services.timezone_names()
    ), status


# --------------------------------------------------------------------------- accounts


@bp.route("/users/new", methods=["GET", "POST"])
@redisplay_on_csrf_error
@admin_required
def new_user():
    """Create an account; its one-time password is shown once, in this response only."""
    form = AccountForm()
    _site_choices(form)
    if not form.is_submitted():
        form.role.data = Role.CLINICIAN
    if form.validate_on_submit():
        try:
            user, password = services.add_account(
                _actor(),
                form.username.data,
                form.display_name.data,
                form.role.data,
                form.sites.data,
            )
        except services.AdminRuleError as error:
            _apply_rule_error(form, error)
        else:
            # No redirect: the password must not travel through a flash, the session or a URL.
            return render_template("admin/password.html", user=user, password=password, new=True)
    status = 422 if request.method == "POST" else 200
    return render_template("admin/user_form.html", form=form, user=None), status


@bp.route("/users/<id:user_id>")
@admin_required
def show_user(user_id: int):
    """One account: its state and the actions an admin can take on it."""
    return _account_page(_load_account(user_id))


def _account_page(user: User, error: str | None = None, status: int = 200):
    return render_template(
        "admin/user.html",
        user=user,
        error=error,
        grants=services.emergency_grants_of(user),
        now=now_utc(),
    ), status


@bp.route("/users/<id:user_id>/edit", methods=["GET", "POST"])
@redisplay_on_csrf_error
@admin_required
def edit_user(user_id: int):
    """Change an account's display name, role and sites."""
    user = _load_account(user_id)
    form = AccountEditForm(
        data={
            "display_name": user.display_name,
            "role": user.role,
            "sites": [site.code for site in user.sites],
        }
    )
    _site_choices(form)
    if form.validate_on_submit():
        try:
            changed = services.update_account(
                _actor(), user, form.display_name.data, form.role.data, form.sites.data
            )
        except services.AdminRuleError as error:
            _apply_rule_error(form, error)
        else:
            flash(f"Account {user.username} saved." if changed else "Nothing changed.", "success")
            return redirect(url_for("admin.show_user", user_id=user.id))
    status = 422 if request.method == "POST" else 200
    return render_template("admin/user_form.html", form=form, user=user), status


def _account_action(user_id: int, action, done: str):
    """Run a button-only account action, then back to the account page (422 when refused)."""
    user = _load_account(user_id)
    if EmptyForm().validate_on_submit():  # CSRF: a missing token never gets this far
        try:
            action(_actor(), user)
        except services.AdminRuleError as error:
            return _account_page(user, error=error.message, status=422)
        flash(done.format(username=user.username), "success")
    return redirect(url_for("admin.show_user", user_id=user.id))


@bp.route("/users/<id:user_id>/deactivate", methods=["POST"])
@admin_required
def deactivate_user(user_id: int):
    """Deactivate an account and end its sessions."""
    return _account_action(user_id, services.deactivate_account, "{username} is deactivated.")


@bp.route("/users/<id:user_id>/reactivate", methods=["POST"])
@admin_required
def reactivate_user(user_id: int):
    """Let a deactivated account log in again."""
    return _account_action(user_id, services.reactivate_account, "{username} is active again.")


@bp.route("/users/<id:user_id>/unlock", methods=["POST"])
@admin_required
def unlock_user(user_id: int):
    """Clear an account's failed logins and lockout."""
    return _account_action(user_id, services.unlock_account, "{username} is unlocked.")


@bp.route("/users/<id:user_id>/end-sessions", methods=["POST"])
@admin_required
def end_sessions(user_id: int):
    """Log an account out on every device."""
    return _account_action(user_id, services.end_sessions, "Every session of {username} has ended.")


@bp.route("/users/<id:user_id>/reset-password", methods=["POST"])
@admin_required
def reset_password(user_id: int):
    """Give an account a new one-time password, shown once in this response only."""
    user = _load_account(user_id)
    if not EmptyForm().validate_on_submit():  # CSRF: a missing token never gets this far
        return redirect(url_for("admin.show_user", user_id=user.id))
    password = services.reset_password(_actor(), user)
    return render_template("admin/password.html", user=user, password=password, new=False)


# --------------------------------------------------------------------------- emergency access


def _load_grant(user: User, grant_id: int) -> SiteAccessGrant:
    grant = db.session.get(SiteAccessGrant, grant_id)
    if grant is None or grant.user_id != user.id:
        refuse(404, entity="site_access_grant", entity_id=grant_id)
    return grant


@bp.route("/users/<id:user_id>/emergency-access/new", methods=["GET", "POST"])
@redisplay_on_csrf_error
@admin_required
def grant_emergency_access(user_id: int):
    """Give a clinician or supervisor time-boxed access to another site, with a reason."""
    user = _load_account(user_id)
    form = EmergencyAccessForm()
    form.site.choices = [
        SelectChoice(site.code, f"{site.code} — {site.name}")
        for site in services.list_sites()
        if site.id not in user.member_site_ids
    ]
    if form.validate_on_submit():
        try:
            grant = services.grant_emergency_access(
                _actor(), user, form.site.data, int(form.hours.data), form.reason.data
            )
        except services.AdminRuleError as error:
            _apply_rule_error(form, error)
        else:
            flash(
                f"{user.username} has emergency access to {grant.site.code} until "
                f"{grant.expires_at:%Y-%m-%d %H:%M} UTC.",
                "success",
            )
            return redirect(url_for("admin.show_user", user_id=user.id))
    status = 422 if request.method == "POST" else 200
    return render_template("admin/emergency_form.html", form=form, user=user), status


@bp.route("/users/<id:user_id>/emergency-access/<id:grant_id>/revoke", methods=["POST"])
@admin_required
def revoke_emergency_access(user_id: int, grant_id: int):
    """End an emergency grant before its expiry."""
    user = _load_account(user_id)
    grant = _load_grant(user, grant_id)
    if EmptyForm().validate_on_submit():  # CSRF: a missing token never gets this far
        try:
            services.revoke_emergency_access(_actor(), grant)
        except services.AdminRuleError as error:
            return _account_page(user, error=error.message, status=422)
        flash(f"Emergency access of {user.username} to {grant.site.code} revoked.", "success")
    return redirect(url_for("admin.show_user", user_id=user.id))
