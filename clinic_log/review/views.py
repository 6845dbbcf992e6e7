from flask import flash, redirect, render_template, request, url_for
from flask_login import current_user

from ..auth.guards import refuse, role_required
from ..auth.reads import record_emergency_listing
from ..extensions import db
from ..forms import EmptyForm
from ..models import Role, SiteAccessGrant
from ..params import query_id
from ..scale_registry import scales
from . import bp, services
from .forms import SignForm


@bp.route("/")
@role_required(Role.SUPERVISOR)
def index():
    """Unreviewed entries at my sites, oldest first, filterable by patient and scale, and the
    emergency access to my sites that waits for review."""
    return _queue_page()


def _queue_page(error: str | None = None, status: int = 200):
    patient_id = query_id("patient")
    scale_key = request.args.get("scale") or None
    if scale_key not in scales():
        scale_key = None
    entries = services.queue(current_user, patient_id, scale_key)
    total = services.queue_size(current_user, patient_id, scale_key)
    patients = services.patients_waiting(current_user)
    html = render_template(
        "review/index.html",
        entries=entries,
        total=total,
        patients=patients,
        patient_id=patient_id,
        scale_key=scale_key,
        scales=scales(),
        sign_form=SignForm(formdata=None),
        grants=services.emergency_grants_to_review(current_user),
        error=error,
    )
    # The filter lists every patient with an entry waiting, so it covers every listed entry.
    shown = [(patient.id, patient.site_id) for patient in patients]
    record_emergency_listing(current_user, "review queue", shown)
    return html, status


@bp.route("/emergency-access/<id:grant_id>/reviewed", methods=["POST"])
@role_required(Role.SUPERVISOR)
def review_emergency_access(grant_id: int):
    """Mark an ended emergency grant to one of my sites as reviewed."""
    grant = db.session.get(SiteAccessGrant, grant_id)
    # Only the site's own supervisors review it; for anyone else it does not exist.
    if grant is None or grant.site_id not in current_user.member_site_ids:
        refuse(404, entity="site_access_grant", entity_id=grant_id)
    if EmptyForm().validate_on_submit():  # CSRF: a missing token never gets this far
        try:
            services.review_emergency_access(current_user._get_current_object(), grant)
        except services.ReviewError as error:
            return _queue_page(error=error.message, status=422)
        flash("Emergency access marked as reviewed.", "success")
    return redirect(url_for("review.index"))
