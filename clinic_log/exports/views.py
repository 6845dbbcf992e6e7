from flask import Response, abort, current_app, render_template, request, stream_with_context
from flask_login import current_user

from ..auth.fetch_site import own_pages_only
from ..auth.guards import clinical_required, record_refusal
from ..params import parse_id
from ..scale_registry import scales
from . import bp, dictionary, services
from .csvwriter import csv_chunks


@bp.route("/")
@clinical_required
def index():
    """The export form: site, patient, scale, dates, layout, profile, versions, Excel."""
    return _form()


def _form(error: services.ExportError | None = None):
    """The export form, refilled from the query string and with the refusal next to its field
    when ``error`` is given."""
    return render_template(
        "exports/index.html",
        scales=scales(),
        sites=current_user.reachable_sites,
        values=request.args if error else {},
        errors={error.field or "site": error.message} if error else {},
    ), (error.status if error else 200)


def _wants_page() -> bool:
    """A browser (which prefers HTML) gets the form back; a script gets a plain message."""
    return request.accept_mimetypes.best_match(["text/plain", "text/html"]) == "text/html"


# A link on another site must not start an export in the user's name (auth/fetch_site.py).
CROSS_SITE_MESSAGE = (
    "This export was not started: the request came from another site's page. "
    "Start exports from the Exports page of clinic_log."
)


@bp.route("/assessments.csv")
@clinical_required
@own_pages_only("export_refused_cross_site", "export", CROSS_SITE_MESSAGE)
def assessments():
    """Stream the assessments CSV; a bad request is refused before a byte is sent."""
    try:
        export_request = services.parse_request(request.args, current_user)
    except services.ExportError as error:
        if error.status == 404:
            # A patient of another site asked for: the refusal is that site's to see.
            record_refusal(404, entity="export", patient_id=parse_id(request.args.get("patient")))
        if _wants_page():
            return _form(error)
        if error.status == 404:
            abort(404)
        return Response(error.message + "\n", status=400, mimetype="text/plain")
    name = services.file_name(export_request)
    if request.method == "HEAD":
        # Nothing is read or audited for a request that wants no body.
        return Response(mimetype="text/csv", headers=_download_headers(name))
    try:
        export = services.open_export(
            export_request, current_user, per_minute=current_app.config["EXPORTS_PER_MINUTE"]
        )
    except services.TooManyExports as refused:
        return Response(
            refused.message + "\n",
            status=429,
            mimetype="text/plain",
            headers={"Retry-After": str(refused.retry_after)},
        )

    def generate():
        try:
            yield from csv_chunks(
                export.header, export.rows, preamble=export.preamble, bom=export_request.excel
            )
        finally:
            export.close()

    response = Response(
        stream_with_context(generate()),
        mimetype="text/csv",
        headers={**_download_headers(name), "X-Clinic-Log-Rows": str(export.count)},
    )
    # Also when the body is never read (a HEAD request, a client gone at once).
    response.call_on_close(export.close)
    return response


def _download_headers(name: str) -> dict[str, str]:
    return {"Content-Disposition": f'attachment; filename="{name}"'}


@bp.route("/dictionary.csv")
@clinical_required
def data_dictionary():
    """Every scale: items, allowed scores with anchors, domain, respondent, range, bands.

    Not rate limited: it holds no clinical data and reads nothing from the database.
    """
    header, rows = dictionary.dictionary_rows(scales())
    return Response(
        "".join(csv_chunks(header, rows, preamble=dictionary.PREAMBLE)),
        mimetype="text/csv",
        headers={"Content-Disposition": 'attachment; filename="clinic_log-dictionary.csv"'},
    )
