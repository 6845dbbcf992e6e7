from uuid import uuid4

from flask import abort, flash, redirect, render_template, request, url_for
from flask_login import current_user

from ..auth.guards import clinical_required, load_assessment, load_patient
from ..database import now_utc
from ..forms import local_field_to_utc, redisplay_on_csrf_error
from ..scale_registry import get_scale
from ..timeutil import to_local
from . import bp, services
from .forms import assessment_form_class


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
        return render_template(
            "assessments/new.html", form=form, scale=scale, patient=patient, episode=episode
        )

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
    return render_template(
        "assessments/new.html", form=form, scale=scale, patient=patient, episode=episode
    ), 422


@bp.route("/assessments/<id:assessment_id>")
@clinical_required
def show(assessment_id: int):
    """One assessment: its total, band or "incomplete", and every item as recorded."""
    assessment = load_assessment(assessment_id)
    scale = get_scale(assessment.scale_key)
    return render_template("assessments/show.html", assessment=assessment, scale=scale)
