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
    """Patients with an open episode at my sites, most severe and most overdue first, a page
    at a time (``?page=``), optionally at one site (``?site=CODE``)."""
    overdue_hours = current_app.config["OVERDUE_AFTER_HOURS"]
    page = services.dashboard_page(
        current_user,
        scales(),
        timedelta(hours=overdue_hours),
        now_utc(),
        page=query_page(),
        site_code=request.args.get("site") or None,
    )
    html = render_template(
        "dashboard/index.html",
        page=page,
        rows=page.rows,
        overdue_hours=overdue_hours,
        spark_points=services.SPARK_POINTS,
    )
    record_emergency_listing(
        current_user, "dashboard", [(row.patient_id, row.site_id) for row in page.rows]
    )
    return html
