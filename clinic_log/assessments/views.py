from uuid import uuid4

from flask import abort, flash, redirect, render_template, request, url_for
from flask_login import current_user

from ..auth.guards import clinical_required, load_assessment, load_patient, refuse, role_required
from ..auth.reads import record_view
from ..database import now_utc
from ..forms import local_field_to_utc, redisplay_on_csrf_error
from ..models import AssessmentStatus, Role
from ..params import parse_id, query_id
from ..review import services as review
from ..review.forms import SignForm
from ..scale_registry import get_scale
from ..timeutil import to_local
from . import bp, services
from .forms import NOT_ASSESSED_PREFIX, VoidForm, amend_form_class, assessment_form_class


@bp.route("/patients/<id:patient_id>/assessments/new/<scale_key>", methods=["GET", "POST"])
@redisplay_on_csrf_error
@clinical_required
def new(patient_id: int, scale_key: str):
    """Record an assessment on one scale for a patient's open episode."""
    patient = load_patient(patient_id)
    scale = get_scale(scale_key)
    if scale is None:
        abort(404)
    episode = patient.open_episode
    if episode is None:
        flash("This patient has no open episode. Open an episode before recording.", "warning")
        return redirect(url_for("patients.show", patient_id=patient.id))

    already_saved = services.find_submission(
        request.form.get("submission_key", "")[:64], current_user, patient
    )
    if already_saved is not None:
        return redirect(url_for("assessments.show", assessment_id=already_saved.id))

    form = assessment_form_class(scale)()
    tz = patient.site.timezone
    if request.method == "GET":
        form.observed_at.data = to_local(now_utc(), tz).replace(
            tzinfo=None, second=0, microsecond=0
        )
        form.submission_key.data = uuid4().hex
        return _new_page(form, scale, patient, episode)

    valid = form.validate_on_submit()
    observed_at = None if form.observed_at.errors else local_field_to_utc(form, "observed_at", tz)
    if observed_at is not None:
        problem = services.observed_at_problem(observed_at, episode, now_utc())
        if problem:
            form.observed_at.errors.append(problem)
            observed_at = None
    if valid and observed_at is not None:
        scores, reasons, measured = form.answers()
        try:
            assessment = services.record_assessment(
                current_user,
                patient,
                scale,
                scores,
                observed_at=observed_at,
                notes=form.notes.data,
                not_assessed_reasons=reasons,
                measured_values=measured,
                submission_key=form.submission_key_value,
            )
        except services.EntryError as error:
            if error.field is None:
                form.form_errors.append(error.message)
                form.submission_key.data = uuid4().hex
            else:
                form[error.field].errors.append(error.message)
        else:
            flash("Assessment saved.", "success")
            return redirect(url_for("assessments.show", assessment_id=assessment.id))
    return _new_page(form, scale, patient, episode), 422


def _new_page(form, scale, patient, episode):
    """The entry form: it names the patient and the episode, so it is a read of them."""
    form.for_site(patient.site.timezone, now_utc())
    html = render_template(
        "assessments/new.html", form=form, scale=scale, patient=patient, episode=episode
    )
    record_view("view_patient", current_user, patient, f"new {scale.key} entry form")
    return html


@bp.route("/assessments/<id:assessment_id>")
@clinical_required
def show(assessment_id: int):
    """One assessment: its total, band or "incomplete", every item, its review and status.
    Opened from the review queue, it carries the queue's filters for "sign and next"."""
    assessment = load_assessment(assessment_id)
    queue = review.QueueView.read(
        query_id("patient"), request.args.get("scale"), request.args.get("order")
    )
    return _show(assessment, queue=queue)


def _show(assessment, void_form=None, sign_form=None, queue=None):
    """The entry page, also shown again with a refused void or sign-off form (422)."""
    if void_form is None:
        void_form = VoidForm(version=str(assessment.version), formdata=None)
    if sign_form is None:
        queue = queue or review.QueueView()
        sign_form = SignForm(
            version=str(assessment.version),
            queue_patient=str(queue.patient_id or ""),
            queue_scale=queue.scale_key or "",
            queue_order="newest" if queue.newest else "",
            formdata=None,
        )
    html = render_template(
        "assessments/show.html",
        assessment=assessment,
        scale=get_scale(assessment.scale_key),
        may_change=services.may_change(current_user, assessment),
        void_form=void_form,
        sign_form=sign_form,
    )
    record_view("view_assessment", current_user, assessment.patient, f"entry {assessment.id}")
    return html


def _prefill(form, assessment, tz: str) -> None:
    """Fill an amend form with the version being corrected."""
    for score in assessment.item_scores:
        if score.item_key not in form:
            continue
        form[score.item_key].data = (
            str(score.score)
            if score.score is not None
            else NOT_ASSESSED_PREFIX + (score.not_assessed_reason or "")
        )
        item = form[score.item_key].item
        if item.measurement is not None and score.measured_value is not None:
            form[item.measurement.key].data = str(score.measured_value)
    local = to_local(assessment.observed_at, tz)
    form.observed_at.data = local.replace(tzinfo=None, microsecond=0)
    # In the hour the clocks go back, say which of the two 01:30s this entry is.
    form.observed_at_fold.data = str(local.fold)
    form.notes.data = assessment.notes
    form.version.data = str(assessment.version)


def _version(raw) -> int:
    """The version the form was opened on; -1 (a conflict) for anything no version can be."""
    version = parse_id(raw)
    return -1 if version is None else version


@bp.route("/assessments/<id:assessment_id>/amend", methods=["GET", "POST"])
@redisplay_on_csrf_error
@clinical_required
def amend(assessment_id: int):
    """Correct an entry: a new version replaces it, with a reason; the old one stays."""
    assessment = load_assessment(assessment_id)
    scale = get_scale(assessment.scale_key)
    if scale is None:
        abort(404)
    already_saved = services.find_submission(
        request.form.get("submission_key", "")[:64], current_user, assessment.patient
    )
    if already_saved is not None:
        return redirect(url_for("assessments.show", assessment_id=already_saved.id))
    if not services.may_change(current_user, assessment):
        refuse(403, entity="assessment", entity_id=assessment.id)
    tz = assessment.patient.site.timezone
    form = amend_form_class(scale)()
    if request.method == "GET":
        if assessment.status != AssessmentStatus.ACTIVE:
            return _conflict(services.current_version_of(assessment), None, scale)
        _prefill(form, assessment, tz)
        form.submission_key.data = uuid4().hex
        return _amend_page(form, scale, assessment)

    valid = form.validate_on_submit()
    observed_at = None if form.observed_at.errors else local_field_to_utc(form, "observed_at", tz)
    if observed_at is not None and observed_at == assessment.observed_at.replace(microsecond=0):
        observed_at = assessment.observed_at  # untouched: keep the exact instant
    if valid and observed_at is not None:
        scores, reasons, measured = form.answers()
        answers = services.Answers(scores, observed_at, form.notes.data, reasons, measured)
        try:
            replacement = services.amend_assessment(
                current_user,
                assessment,
                _version(form.version.data),
                answers,
                form.reason.data,
                submission_key=form.submission_key_value,
            )
        except services.EditConflict as conflict:
            return _conflict(conflict.current, form, scale)
        except services.ChangeNotAllowed:
            refuse(403, entity="assessment", entity_id=assessment.id)
        except services.EntryError as error:
            (form[error.field].errors if error.field else form.form_errors).append(error.message)
        else:
            flash("Amendment saved. The earlier version is kept in the history.", "success")
            return redirect(url_for("assessments.show", assessment_id=replacement.id))
    return _amend_page(form, scale, assessment), 422


def _amend_page(form, scale, assessment):
    """The amend form: the version being corrected, so a read of the entry."""
    form.for_site(assessment.patient.site.timezone, now_utc())
    html = render_template(
        "assessments/amend.html",
        form=form,
        scale=scale,
        assessment=assessment,
        patient=assessment.patient,
        episode=assessment.episode,
    )
    record_view(
        "view_assessment", current_user, assessment.patient, f"amend form of entry {assessment.id}"
    )
    return html


def _conflict(current, form, scale):
    """409: the entry changed under the user. Show the new version and keep their input."""
    html = render_template(
        "assessments/conflict.html",
        current=current,
        form=form,
        scale=scale,
        may_change=services.may_change(current_user, current),
    )
    record_view("view_assessment", current_user, current.patient, f"entry {current.id} (changed)")
    return html, 409


@bp.route("/assessments/<id:assessment_id>/void", methods=["POST"])
@redisplay_on_csrf_error
@clinical_required
def void(assessment_id: int):
    """Mark an entry void with a reason; it stays readable in the history."""
    assessment = load_assessment(assessment_id)
    if not services.may_change(current_user, assessment):
        refuse(403, entity="assessment", entity_id=assessment.id)
    form = VoidForm()
    if form.validate_on_submit():
        try:
            services.void_assessment(
                current_user,
                assessment,
                _version(form.version.data),
                form.reason_code.data,
                form.reason.data,
            )
        except services.EditConflict as conflict:
            return _conflict(conflict.current, None, get_scale(assessment.scale_key))
        except services.EntryError as error:
            (form[error.field].errors if error.field else form.form_errors).append(error.message)
        else:
            flash("The entry is now void. It stays in the history.", "success")
            return redirect(url_for("assessments.show", assessment_id=assessment.id))
    return _show(assessment, void_form=form), 422


@bp.route("/assessments/<id:assessment_id>/history")
@clinical_required
def history(assessment_id: int):
    """Every version of an entry: who, when, why, and what changed."""
    assessment = load_assessment(assessment_id)
    versions = services.history(assessment)
    steps = [
        (
            version,
            services.changes_between(previous, version, assessment.patient.site.timezone)
            if previous
            else [],
        )
        for previous, version in zip([None, *versions[:-1]], versions, strict=True)
    ]
    page = render_template(
        "assessments/history.html",
        assessment=assessment,
        steps=steps,
        since_review=services.changes_since_review(versions),
        scale=get_scale(assessment.scale_key),
    )
    record_view(
        "view_assessment", current_user, assessment.patient, f"history of entry {assessment_id}"
    )
    return page


@bp.route("/assessments/<id:assessment_id>/sign", methods=["POST"])
@redisplay_on_csrf_error
@role_required(Role.SUPERVISOR)
def sign(assessment_id: int):
    """Sign one entry off as reviewed (an electronic signature: password again)."""
    assessment = load_assessment(assessment_id)
    form = SignForm()
    if form.validate_on_submit():
        try:
            review.sign_assessment(
                current_user, assessment, form.password.data, _version(form.version.data)
            )
        except review.ReviewError as error:
            (form[error.field].errors if error.field else form.form_errors).append(error.message)
        else:
            if form.then.data:
                return _sign_and_next(assessment, form)
            flash("Signed off as reviewed.", "success")
            return redirect(url_for("assessments.show", assessment_id=assessment.id))
    return _show(assessment, sign_form=form), 422


def _sign_and_next(signed, form):
    """After a sign-off, the next entry waiting in the queue the entry was opened from."""
    queue = review.QueueView.read(
        parse_id(form.queue_patient.data), form.queue_scale.data, form.queue_order.data
    )
    following = review.next_waiting(current_user, signed, queue)
    if following is None:
        flash("Signed off as reviewed. Nothing else waits for your sign-off here.", "success")
        return redirect(url_for("review.index", **queue.query()))
    flash("Signed off as reviewed. This is the next entry waiting.", "success")
    return redirect(
        url_for("assessments.show", assessment_id=following.id, **queue.query()) + "#sign-heading"
    )
