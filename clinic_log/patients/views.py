from flask import abort, flash, redirect, render_template, request, url_for
from flask_login import current_user
from wtforms.fields.choices import SelectChoice

from ..auth.guards import clinical_required, load_episode, load_patient
from ..auth.reads import record_emergency_listing, record_view
from ..database import now_utc
from ..extensions import db
from ..forms import local_field_to_utc, redisplay_on_csrf_error
from ..models import Site
from ..params import query_page
from ..scale_registry import scales
from ..timeutil import to_local
from . import bp, glance, services, worklist
from .forms import EndEpisodeForm, EpisodeForm, MonitoringForm, PatientForm, SearchForm


def _now_local_naive(tz_name: str):
    return to_local(now_utc(), tz_name).replace(tzinfo=None, second=0, microsecond=0)


def _apply_rule_error(form, error: services.PatientRuleError) -> None:
    form[error.field].errors.append(error.message)


@bp.route("/")
@clinical_required
def index():
    """The patients of my sites, 50 a page (``?page=``), by identifier or soonest due first
    (``?sort=due``), optionally only those due now or overdue (``?show=due``), searched by
    identifier or label (``?q=``)."""
    form = SearchForm(request.args)
    query = form.q.data if form.validate() and form.q.data else ""
    page = worklist.patient_list(
        current_user,
        now_utc(),
        query=query,
        page=query_page(maximum=services.MAX_PAGE),
        due_only=request.args.get("show") == "due",
        sort=request.args.get("sort", ""),
    )
    html = render_template("patients/index.html", form=form, page=page, query=query)
    shown = [(row.patient_id, row.site_id) for row in page.rows]
    record_emergency_listing(current_user, "patient list", shown)
    return html


@bp.route("/new", methods=["GET", "POST"])
@redisplay_on_csrf_error
@clinical_required
def new():
    """Add a patient and open their first episode."""
    form = PatientForm()
    form.site_id.choices = [
        SelectChoice(site.id, f"{site.code} — {site.name}") for site in current_user.sites
    ]
    if request.method == "GET" and len(current_user.sites) == 1:
        # With several sites the right zone is only known once a site is chosen; an empty
        # start means "now" there.
        form.started_at.data = _now_local_naive(current_user.sites[0].timezone)
    if form.validate_on_submit():
        site = db.session.get(Site, form.site_id.data)
        started_at = (
            local_field_to_utc(form, "started_at", site.timezone)
            if form.started_at.data is not None
            else now_utc().replace(second=0, microsecond=0)
        )
        if started_at is not None:
            try:
                patient = services.create_patient(
                    current_user,
                    site,
                    form.identifier.data,
                    form.display_label.data,
                    started_at,
                    form.substance_context.data,
                    form.episode_note.data,
                    form.assess_every_hours.data,
                )
            except services.PatientRuleError as error:
                _apply_rule_error(form, error)
            else:
                flash("Patient added and first episode opened.", "success")
                return redirect(url_for("patients.show", patient_id=patient.id))
    status = 422 if request.method == "POST" else 200
    return render_template("patients/new.html", form=form), status


def _scale_filter() -> str | None:
    """The scale the timeline is narrowed to (``?scale=cows``), or None for every scale.

    :raise 404: a scale this installation does not have; a filter that cannot match must not
        silently fall back to "no filter".
    """
    key = request.args.get("scale", "")
    if not key:
        return None
    if key not in scales():
        abort(404)
    return key


def _patient_page(
    patient, page_number: int, scale_key: str | None, end_form, monitoring_form=None
) -> str:
    """The patient page: where each scale stands, the episodes, and a page of the timeline;
    its read line written."""
    installed = scales()
    if monitoring_form is None:
        episode = patient.open_episode
        monitoring_form = MonitoringForm(
            assess_every_hours=episode.assess_every_hours if episode else None
        )
    html = render_template(
        "patients/show.html",
        patient=patient,
        summary=glance.scale_summaries(patient, installed, now_utc()),
        summary_points=glance.SUMMARY_POINTS,
        page=services.timeline(patient, page_number, scale_key=scale_key),
        scale_key=scale_key,
        scales=installed,
        end_form=end_form,
        monitoring_form=monitoring_form,
    )
    filtered = {"scale": scale_key} if scale_key else {}
    record_view("view_patient", current_user, patient, "patient page", page=page_number, **filtered)
    return html


@bp.route("/<id:patient_id>")
@clinical_required
def show(patient_id: int):
    """The patient at a glance, their episodes and timeline of assessments, newest first."""
    patient = load_patient(patient_id)
    end_form = EndEpisodeForm(ended_at=_now_local_naive(patient.site.timezone))
    return _patient_page(patient, query_page(maximum=services.MAX_PAGE), _scale_filter(), end_form)


@bp.route("/<id:patient_id>/flowsheet/<scale_key>")
@clinical_required
def flowsheet(patient_id: int, scale_key: str):
    """One scale's active entries as a flowsheet: items down the side, entries across in
    time, newest last."""
    patient = load_patient(patient_id)
    scale = scales().get(scale_key)
    if scale is None:
        abort(404)
    page_number = query_page(maximum=services.MAX_PAGE)
    sheet = glance.flowsheet(patient, scale, page_number)
    html = render_template("patients/flowsheet.html", patient=patient, sheet=sheet)
    record_view(
        "view_patient", current_user, patient, "flowsheet", scale=scale.key, page=page_number
    )
    return html


@bp.route("/<id:patient_id>/episodes/new", methods=["GET", "POST"])
@redisplay_on_csrf_error
@clinical_required
def new_episode(patient_id: int):
    """Open a new episode for a patient whose previous episode has ended."""
    patient = load_patient(patient_id)
    if request.method == "GET" and patient.open_episode is not None:
        flash("This patient has an open episode. End it before opening a new one.", "warning")
        return redirect(url_for("patients.show", patient_id=patient.id))
    form = EpisodeForm()
    if request.method == "GET":
        form.started_at.data = _now_local_naive(patient.site.timezone)
    if form.validate_on_submit():
        started_at = local_field_to_utc(form, "started_at", patient.site.timezone)
        if started_at is not None:
            try:
                services.open_episode(
                    current_user,
                    patient,
                    started_at,
                    form.substance_context.data,
                    form.episode_note.data,
                    form.assess_every_hours.data,
                )
            except services.PatientRuleError as error:
                _apply_rule_error(form, error)
            else:
                flash("New episode opened.", "success")
                return redirect(url_for("patients.show", patient_id=patient.id))
    status = 422 if request.method == "POST" else 200
    html = render_template("patients/new_episode.html", form=form, patient=patient)
    record_view("view_patient", current_user, patient, "new episode form")
    return html, status


@bp.route("/<id:patient_id>/episodes/<id:episode_id>/end", methods=["POST"])
@redisplay_on_csrf_error
@clinical_required
def end_episode(patient_id: int, episode_id: int):
    """End an open episode."""
    patient = load_patient(patient_id)
    episode = load_episode(patient, episode_id)
    form = EndEpisodeForm()
    if form.validate_on_submit():
        ended_at = local_field_to_utc(form, "ended_at", patient.site.timezone)
        if ended_at is not None:
            try:
                services.end_episode(current_user, episode, ended_at)
            except services.PatientRuleError as error:
                _apply_rule_error(form, error)
            else:
                flash("Episode ended.", "success")
                return redirect(url_for("patients.show", patient_id=patient.id))
    return _patient_page(patient, 1, None, form), 422


@bp.route("/<id:patient_id>/episodes/<id:episode_id>/monitoring", methods=["POST"])
@redisplay_on_csrf_error
@clinical_required
def set_monitoring(patient_id: int, episode_id: int):
    """Change how often the patient is to be assessed while the episode is open."""
    patient = load_patient(patient_id)
    episode = load_episode(patient, episode_id)
    form = MonitoringForm()
    if form.validate_on_submit():
        try:
            services.set_monitoring_interval(current_user, episode, form.assess_every_hours.data)
        except services.PatientRuleError as error:
            _apply_rule_error(form, error)
        else:
            flash("Monitoring interval saved.", "success")
            return redirect(url_for("patients.show", patient_id=patient.id))
    end_form = EndEpisodeForm(ended_at=_now_local_naive(patient.site.timezone))
    return _patient_page(patient, 1, None, end_form, form), 422
