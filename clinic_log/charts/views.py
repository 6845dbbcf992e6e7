from collections.abc import Callable

from flask import Response, abort, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user

from ..auth.guards import clinical_required, load_patient, role_required
from ..auth.reads import record_view
from ..forms import redisplay_on_csrf_error
from ..models import Role
from ..review import services as review
from ..review.forms import SignTrendForm
from ..scale_registry import get_scale, scales
from . import bp, data
from .cache import ChartCache
from .render import render_domains, render_heatmap, render_trend
from .series import summarise

MIMETYPES = {"png": "image/png", "svg": "image/svg+xml"}


def _cache() -> ChartCache:
    return current_app.extensions.setdefault("clinic_log.chart_cache", ChartCache())


def _options(patient) -> tuple[data.Window, str]:
    """The chart's date range and x axis from the query string; a bad one is a 400."""
    try:
        window = data.parse_window(
            request.args.get("start"), request.args.get("end"), patient.site.timezone
        )
    except data.ChartRequestError as error:
        abort(Response(str(error), status=400, mimetype="text/plain"))
    x_mode = request.args.get("x", "time")
    if x_mode not in data.X_MODES:
        abort(Response("x must be 'time' or 'hours'.", status=400, mimetype="text/plain"))
    return window, x_mode


def _serve(patient, what: str, tag: str, fmt: str, render: Callable[[], bytes]) -> Response:
    """Answer 304 when the browser holds this very chart, else the cached or fresh bytes.

    ``private, no-cache``: the browser may keep the image but must ask again every time, so
    after logout nothing is shown without a valid session; shared caches never keep it.
    """
    # Weak comparison (RFC 9110): a compressing proxy may hand the ETag back as W/"...".
    if request.if_none_match.contains_weak(tag):
        response = Response(status=304)
    else:
        cache = _cache()
        body = cache.get(tag)
        if body is None:
            body = render()
            cache.put(tag, body)
        response = Response(body, mimetype=MIMETYPES[fmt])
    response.set_etag(tag)
    response.headers["Cache-Control"] = "private, no-cache"
    # A 304 is a view too: the browser shows the chart it kept.
    record_view("view_chart", current_user, patient, what)
    return response


def _scale_or_404(scale_key: str):
    scale = get_scale(scale_key)
    if scale is None:
        abort(404)
    return scale


@bp.route("/patients/<id:patient_id>/charts/<scale_key>.<any(png, svg):fmt>")
@clinical_required
def trend(patient_id: int, scale_key: str, fmt: str):
    """A scale's total over time, with its published bands and the episode starts."""
    patient = load_patient(patient_id)
    scale = _scale_or_404(scale_key)
    window, x_mode = _options(patient)

    def render() -> bytes:
        rows = data.trend_rows(patient, scale, window)
        starts = data.patient_episode_starts(patient)
        return render_trend(data.trend_series(patient, scale, window, x_mode, rows, starts), fmt)

    state = data.freshness(patient, scale.key, window)
    tag = data.etag("trend", patient, scale.key, scale.version, window.key, x_mode, fmt, *state)
    return _serve(patient, f"{scale.key} trend {window.key}", tag, fmt, render)


@bp.route("/patients/<id:patient_id>/charts/<scale_key>/items.<any(png, svg):fmt>")
@clinical_required
def items(patient_id: int, scale_key: str, fmt: str):
    """Item scores as a heatmap: which symptoms drive the total."""
    patient = load_patient(patient_id)
    scale = _scale_or_404(scale_key)
    window, x_mode = _options(patient)

    def render() -> bytes:
        rows = data.item_rows(patient, scale.key, window)
        starts = data.patient_episode_starts(patient)
        series = data.heatmap_series(patient, scale, rows, window, x_mode, starts)
        return render_heatmap(series, fmt)

    state = data.freshness(patient, scale.key, window)
    tag = data.etag("items", patient, scale.key, scale.version, window.key, x_mode, fmt, *state)
    return _serve(patient, f"{scale.key} items {window.key}", tag, fmt, render)


@bp.route("/patients/<id:patient_id>/charts/domains.<any(png, svg):fmt>")
@clinical_required
def domains(patient_id: int, fmt: str):
    """Anxiety, aches, insomnia and irritability (custom ratings) on one time axis."""
    patient = load_patient(patient_id)
    scale = _scale_or_404(data.DOMAIN_SCALE)
    window, _ = _options(patient)

    def render() -> bytes:
        rows = data.item_rows(patient, scale.key, window)
        return render_domains(data.domain_series(patient, scale, rows), fmt)

    state = data.freshness(patient, scale.key, window)
    tag = data.etag("domains", patient, scale.key, scale.version, window.key, fmt, *state)
    return _serve(patient, f"symptom domains {window.key}", tag, fmt, render)


@bp.route("/patients/<id:patient_id>/tracker")
@clinical_required
def tracker(patient_id: int):
    """Every scale the patient has, stacked on one time range, each with its numbers."""
    return render_tracker(load_patient(patient_id))


def _tracker_options(patient) -> tuple[data.Window, str | None, str, list[str]]:
    """The tracker's range, its error, x axis and scales from the query string; no scale
    named (or none known) means every scale."""
    try:
        window = data.parse_window(
            request.args.get("start"), request.args.get("end"), patient.site.timezone
        )
        error = None
    except data.ChartRequestError as exc:
        window, error = data.Window(), str(exc)
    x_mode = request.args.get("x", "time")
    if x_mode not in data.X_MODES:
        x_mode = "time"
    chosen = [key for key in request.args.getlist("scale") if key in scales()]
    return window, error, x_mode, chosen or list(scales())


def render_tracker(patient, sign_form=None, status: int = 200, signed=None):
    """The tracker page, also shown again with a refused trend sign-off (422) or with the
    entries a sign-off left out (``signed``)."""
    window, error, x_mode, scale_keys = _tracker_options(patient)
    window = data.shared_window(patient, window)
    starts = data.patient_episode_starts(patient)
    sections, shown = [], []
    rows_by_scale = data.rows_by_scale(patient, window)
    for scale in scales().values():
        rows = rows_by_scale.get(scale.key)
        if not rows or scale.key not in scale_keys:
            continue
        series = data.trend_series(patient, scale, window, x_mode, rows, starts)
        sections.append({"scale": scale, "rows": rows, "summary": summarise(series)})
        shown.extend(rows)
    if error:
        status = 400
    to_sign = None
    if current_user.role == Role.SUPERVISOR:
        to_sign = review.trend_to_sign(current_user, patient, shown)
        sign_form = sign_form or SignTrendForm(formdata=None)
        # Always what this page shows now: a page shown again is opened again.
        sign_form.shown.data = SignTrendForm.write_shown(to_sign.entries)
    with_data = data.scales_with_data(patient)
    html = render_template(
        "charts/tracker.html",
        patient=patient,
        sections=sections,
        window=window,
        x_mode=x_mode,
        error=error,
        scale_choices=[s for s in scales().values() if s.key in with_data],
        scale_keys=scale_keys if len(scale_keys) < len(scales()) else [],
        domain_rows=data.domain_table(rows_by_scale.get(data.DOMAIN_SCALE, [])),
        domain_items=data.DOMAIN_ITEMS,
        sign_form=sign_form,
        to_sign=to_sign,
        signed=signed,
    )
    record_view("view_patient", current_user, patient, "tracker")
    return html, status


@bp.route("/patients/<id:patient_id>/tracker/sign", methods=["POST"])
@redisplay_on_csrf_error
@role_required(Role.SUPERVISOR)
def sign_trend(patient_id: int):
    """Sign off exactly the entries the tracker showed (its range and scales), each as the
    version shown when the page was opened."""
    patient = load_patient(patient_id)
    form = SignTrendForm()
    window, error, _x_mode, scale_keys = _tracker_options(patient)
    versions = form.shown_versions()
    if error or versions is None or len(versions) > review.TREND_SIGN_LIMIT:
        form.form_errors.append("This page is too old to sign from: reload it and look again.")
    elif form.validate_on_submit():
        shown = review.TrendShown(patient, window.start, window.end, frozenset(scale_keys))
        try:
            signed = review.sign_trend(current_user, shown, versions, form.password.data)
        except review.ReviewError as error:
            (form[error.field].errors if error.field else form.form_errors).append(error.message)
        else:
            if signed.left_out:
                return render_tracker(patient, signed=signed)
            count = len(signed.signed)
            flash(
                f"Signed off {count} {'entry' if count == 1 else 'entries'} as reviewed.", "success"
            )
            same_page = request.args.to_dict(flat=False)
            return redirect(url_for("charts.tracker", patient_id=patient.id, **same_page))
    return render_tracker(patient, sign_form=form, status=422)
