from flask import render_template, request
from flask_login import current_user

from ..auth.guards import role_required
from ..charts.data import ChartRequestError, parse_window
from ..extensions import db
from ..models import Role
from ..params import query_page
from . import bp, services
from .lines import trail_lines

PER_PAGE = 100


@bp.route("/")
@role_required(Role.SUPERVISOR)
def index():
    """The audit trail of my sites, filterable by patient, user, action and date."""
    tz = current_user.sites[0].timezone if current_user.sites else "UTC"
    error = None
    try:
        window = parse_window(request.args.get("start"), request.args.get("end"), tz)
    except ChartRequestError as exc:
        window, error = parse_window(None, None, tz), str(exc)
    filters = services.AuditFilter(
        patient=(request.args.get("patient") or "").strip()[:64] or None,
        username=(request.args.get("user") or "").strip()[:64] or None,
        action=(request.args.get("action") or "").strip()[:40] or None,
        start=window.start,
        end=window.end,
    )
    page = db.paginate(
        services.visible_events(current_user, filters),
        page=query_page(),
        per_page=PER_PAGE,
        error_out=False,
    )
    return render_template(
        "auditlog/index.html",
        page=page,
        lines=trail_lines(current_user, page.items),
        filters=filters,
        actions=services.known_actions(current_user),
        error=error,
        tz=tz,
    ), (400 if error else 200)
