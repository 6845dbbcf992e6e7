from datetime import timedelta

from flask import current_app, render_template
from flask_login import current_user

from ..auth.guards import role_required
from ..database import now_utc
from ..models import Role
from ..scale_registry import scales
from . import bp, services


@bp.route("/")
@role_required(Role.SUPERVISOR)
def index():
    """Every patient with an open episode at my sites, most severe and most overdue first."""
    overdue_after = timedelta(hours=current_app.config["OVERDUE_AFTER_HOURS"])
    rows = services.dashboard_rows(current_user, scales(), overdue_after, now_utc())
    return render_template(
        "dashboard/index.html",
        rows=rows,
        overdue_hours=current_app.config["OVERDUE_AFTER_HOURS"],
        spark_points=services.SPARK_POINTS,
    )
