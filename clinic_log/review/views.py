from flask import flash, redirect, render_template, request, url_for
from flask_login import current_user

from ..auth.guards import refuse, role_required
from ..auth.reads import record_emergency_listing
from ..extensions import db
from ..forms import EmptyForm, redisplay_on_csrf_error
from ..models import Patient, Role, SiteAccessGrant
from ..params import parse_id, query_id
from ..scale_registry import scales
from . import bp, services
from .forms import BatchSignForm


@bp.route("/")
@role_required(Role.SUPERVISOR)
def index():
    """Entries at my sites waiting for my sign-off, 50 a page, oldest or newest first,
    filterable by patient (found by identifier) and scale; my own entries on a tab of their
    own; and the emergency access to my sites that waits for review."""
    view = services.QueueView.read(
        query_id("patient"), request.args.get("scale"), request.args.get("order")
    )
    view = services.QueueView(view.patient_id, view.scale_key, view.newest, own=_own_tab())
    after, before = _cursor(query_id("after")), _cursor(query_id("before"))
    return _queue_page(view, after, before, search=request.args.get("q", "").strip()[:64])


def _own_tab() -> bool:
    return request.args.get("show") == "own"


def _cursor(assessment_id: int | None):
    """The entry a page link continues from; a link to an entry not of my sites is a 404."""
    if assessment_id is None:
        return None
    entry = services.cursor_entry(current_user, assessment_id)
    if entry is None:
        refuse(404, entity="assessment", entity_id=assessment_id)
    return entry


def _queue_page(
    view, after=None, before=None, *, search="", form=None, result=None, error=None, status=200
):
    matches = []
    if search and view.patient_id is None:
        matches = services.find_patients(current_user, search)
        if len(matches) == 1:
            view = services.QueueView(matches[0].id, view.scale_key, view.newest, view.own)
    patient = None
    if view.patient_id is not None:
        patient = db.session.get(Patient, view.patient_id)
        if patient is not None and patient.site_id not in current_user.site_ids:
            patient = None  # another site's patient: the filter finds nothing, named nowhere
    listing = not search or view.patient_id is not None
    page = services.queue_page(current_user, view, after, before) if listing else None
    if form is None:
        form = BatchSignForm(formdata=None)
    entries = page.entries if page else []
    form.shown.data = " ".join(f"{e.assessment.id}.{e.assessment.version}" for e in entries)
    html = render_template(
        "review/index.html",
        view=view,
        args=view.query(),
        page=page,
        page_size=services.PAGE_SIZE,
        cursor=(after.id if after else None, before.id if before else None),
        to_sign=services.format_count(services.count_waiting(current_user, _tab(view, False))),
        own_count=services.format_count(services.count_waiting(current_user, _tab(view, True))),
        search=search or (patient.identifier if patient else ""),
        matches=matches[: services.SEARCH_LIMIT],
        more_matches=len(matches) > services.SEARCH_LIMIT,
        patient=patient,
        scales=scales(),
        form=form,
        result=result,
        signed_names=services.names_of(result.signed) if result else {},
        grants=services.emergency_grants_to_review(current_user),
        error=error,
    )
    shown = {(e.assessment.patient_id, e.assessment.patient.site_id) for e in entries}
    shown |= {(m.id, m.site_id) for m in matches}
    record_emergency_listing(current_user, "review queue", sorted(shown))
    return html, status


def _tab(view, own: bool) -> services.QueueView:
    return services.QueueView(view.patient_id, view.scale_key, view.newest, own)


@bp.route("/sign", methods=["POST"])
@redisplay_on_csrf_error
@role_required(Role.SUPERVISOR)
def sign_batch():
    """Sign the entries ticked on a queue page (or all of them) with one password: each gets
    its own signature of the version shown; any that may not be signed are named."""
    form = BatchSignForm()
    view = services.QueueView.read(parse_id(form.patient.data), form.scale.data, form.order.data)
    after, before = _posted_cursor(form.after.data), _posted_cursor(form.before.data)
    if form.validate_on_submit():
        chosen = form.chosen()
        if not chosen:
            form.entry.errors.append("Tick the entries to sign, or sign all on this page.")
        else:
            try:
                result = services.sign_versions(
                    current_user, chosen, form.password.data, purpose="batch_sign"
                )
            except services.ReviewError as error:
                (form[error.field].errors if error.field else form.form_errors).append(
                    error.message
                )
            else:
                return _queue_page(view, after, before, result=result)
    return _queue_page(view, after, before, form=form, status=422)


def _posted_cursor(raw):
    """A cursor the form carried; one that cannot be used shows the first page instead."""
    assessment_id = parse_id(raw)
    return services.cursor_entry(current_user, assessment_id) if assessment_id else None


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
            return _queue_page(services.QueueView(), error=error.message, status=422)
        flash("Emergency access marked as reviewed.", "success")
    return redirect(url_for("review.index"))
