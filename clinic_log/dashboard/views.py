from datetime import timedelta

from flask import current_app, render_template, request
from flask_login import current_user

from ..auth.guards import role_required
from ..auth.reads import record_emergency_listing
from ..database import now_utc
from ..models import Role
from ..params import query_page
from ..scale_registry import scales
from . import bp, services


@bp.route("/")
@role_required(Role.SUPERVISOR)
def index():
    """Patients with an open episode at my sites, by current withdrawal severity then the
    longest since an entry, a page at a time (``?page=``), optionally at one site
    (``?site=CODE``)."""
    overdue_hours = current_app.config["OVERDUE_AFTER_HOURS"]
    recency_hours = current_app.config["TRIAGE_RECENCY_HOURS"]
    installed = scales()
    page = services.dashboard_page(
        current_user,
        installed,
        now_utc(),
        page=query_page(),
        site_code=request.args.get("site") or None,
        recent_within=timedelta(hours=recency_hours),
    )
    html = render_template(
        "dashboard/index.html",
        page=page,
        rows=page.rows,
        overdue_hours=overdue_hours,
        recency_hours=recency_hours,
        withdrawal_measures=services.withdrawal_measure_names(installed),
        spark_points=services.SPARK_POINTS,
    )
    record_emergency_listing(
        current_user, "dashboard", [(row.patient_id, row.site_id) for row in page.rows]
    )
    return html
