"""The pieces ``create_app`` assembles, each a short named step."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable

from flask import Flask, Response, abort, g, render_template, request, url_for
from flask_login import current_user
from flask_wtf.csrf import CSRFError
from sqlalchemy.exc import OperationalError
from werkzeug.exceptions import HTTPException, SecurityError
from werkzeug.routing import IntegerConverter, ValidationError

from . import audit, storage
from .auth import reads as auth_reads
from .auth import sessions as auth_sessions
from .auth.guards import refusal_scope
from .database import begin_write, configure_sqlite, render_migration_type, retry_on_conflict
from .extensions import csrf, db, login_manager, migrate
from .params import ID_MAX, parse_id
from .product import NO_ADVICE_NOTICE
from .scale_registry import entry_severity, init_scales
from .scales import NOT_ASSESSED_REASONS
from .timeutil import format_local

log = logging.getLogger("clinic_log")


SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    # same-origin, not no-referrer: CSRF checks over HTTPS need a same-origin Referer.
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}


def register_extensions(app: Flask, migrations_dir: str) -> None:
    db.init_app(app)
    migrate.init_app(
        app, db, directory=migrations_dir, render_item=render_migration_type, compare_type=True
    )
    login_manager.init_app(app)
    login_manager.login_view = "auth.login"
    login_manager.login_message = "Please log in to continue."
    login_manager.login_message_category = "info"
    csrf.init_app(app)
    auth_sessions.init_app(app)
    auth_reads.init_app(app)
    with app.app_context():
        configure_sqlite(db.engine, app.config["SQLITE_BUSY_TIMEOUT_MS"])
    init_scales(app)


class IdConverter(IntegerConverter):
    """A database id: a positive integer that fits the id columns (``params.parse_id``, the
    rule for query strings too). Anything else is a 404, never an overflow deep in the
    database driver."""

    regex = r"[0-9]+"  # not \d: "/patients/１" is no address of patient 1

    def __init__(self, url_map):
        super().__init__(url_map, min=1, max=ID_MAX)

    def to_python(self, value: str) -> int:
        parsed = parse_id(value)
        if parsed is None:
            raise ValidationError()
        return parsed


def register_blueprints(app: Flask) -> None:
    app.url_map.converters["id"] = IdConverter
    from .admin import bp as admin_bp
    from .assessments import bp as assessments_bp
    from .auditlog import bp as auditlog_bp
    from .auth import bp as auth_bp
    from .charts import bp as charts_bp
    from .dashboard import bp as dashboard_bp
    from .exports import bp as exports_bp
    from .patients import bp as patients_bp
    from .review import bp as review_bp

    blueprints = (
        auth_bp,
        patients_bp,
        assessments_bp,
        charts_bp,
        dashboard_bp,
        review_bp,
        auditlog_bp,
        exports_bp,
        admin_bp,
    )
    for blueprint in blueprints:
        app.register_blueprint(blueprint)


def register_conflict_retries(app: Flask) -> None:
    """Run a request's unit of work again when PostgreSQL aborts it as a conflict with another
    transaction (40001, 40P01), a bounded number of times (``database.retry_on_conflict``).

    Every view is one unit: it reads the form, calls a service that writes and commits, and
    answers; a transaction that was aborted wrote nothing, so running the view again from the
    start is safe. One place covers every route, new ones included. SQLite never raises these.
    """
    for endpoint, view in app.view_functions.items():
        if endpoint != "static":
            app.view_functions[endpoint] = retry_on_conflict(view)


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(HTTPException)
    def http_error(error):
        if error.code is None or error.code < 400:
            return error
        if isinstance(error, SecurityError):
            # A Host header outside TRUSTED_HOSTS: no URL can be built for it, so no page.
            log.warning("refused a request for an untrusted host %r", request.headers.get("Host"))
            return Response("Bad request: unknown host.\n", 400, mimetype="text/plain")
        return render_template("errors/http.html", error=error), error.code

    @app.errorhandler(CSRFError)
    def csrf_error(error):
        view = app.view_functions.get(request.endpoint or "")
        # Only a missing or expired token is the user's misfortune; a missing or foreign
        # Referer on HTTPS is refused outright, never re-run through the view.
        referrer_problem = "referrer" in (error.description or "").lower()
        redisplay = getattr(view, "redisplay_on_csrf_error", False) and not referrer_problem
        # The form is shown again only to a session the session rules let through (they run
        # before the CSRF check; a session they end or hold back never gets this far).
        redisplay = redisplay and g.get("session_rules_passed", False)
        record_security_event("csrf_refused", {"reason": error.description})
        if request.method == "POST" and redisplay:
            try:
                return view(**(request.view_args or {}))
            except HTTPException as refused:  # the view's own 403/404: no error handler runs here
                return http_error(refused)
        return render_template("errors/csrf.html", reason=error.description), 400

    @app.errorhandler(Exception)
    def unexpected_error(error):
        # Roll back first: the failed transaction must not leak into rendering the page.
        db.session.rollback()
        incident = uuid.uuid4().hex[:12]
        # %r: a crafted path with CR/LF must not forge lines in a plain-text log.
        log.exception("unhandled error, incident %s, %s %r", incident, request.method, request.path)
        return render_template("errors/500.html", incident=incident), 500

    @app.errorhandler(OperationalError)
    def storage_error(error):
        # Locked past the busy timeout, disk full, or a PostgreSQL conflict that outlived its
        # retries: 503 (507 when full) with the user's input kept, never a 500 (storage.py).
        if storage.problem_of(error) is None:
            return unexpected_error(error)
        return storage.refused_write_response(error, http_error)


def record_security_event(action: str, details: dict) -> None:
    """A refused request leaves a line in the audit trail, in its own small transaction; one
    whose path names a patient, entry or episode is written at that patient's site."""
    db.session.rollback()
    site_id, patient_id, path = refusal_scope()
    begin_write(db.session)
    audit.record(
        action,
        user=current_user if current_user.is_authenticated else None,
        site_id=site_id,
        patient_id=patient_id,
        details={"path": path, "method": request.method, **details},
    )
    db.session.commit()


def register_request_hooks(app: Flask) -> None:
    @app.before_request
    def refuse_nul_in_query():
        # PostgreSQL cannot even compare text containing NUL; no query parameter needs one.
        if any("\x00" in value for value in request.args.values()):
            abort(400)

    @app.after_request
    def security_headers(response):
        # One pass over the headers a view set, not a lookup per header: this runs on every
        # response, charts included, and werkzeug's per-name lookup raises on each miss.
        present = {name.lower() for name, _ in response.headers.items()}
        missing = [
            (name, value) for name, value in SECURITY_HEADERS.items() if name.lower() not in present
        ]
        if request.is_secure and "strict-transport-security" not in present:
            missing.append(("Strict-Transport-Security", "max-age=31536000; includeSubDomains"))
        if request.endpoint != "static" and "cache-control" not in present:
            # Patient data must not stay in browser or proxy caches after logout.
            missing.append(("Cache-Control", "no-store"))
        response.headers.extend(missing)
        return response


# The largest id IdConverter accepts: a number no real URL part can be confused with.
_ID_MARKER = str(2**31 - 1)


def url_for_ids(endpoint: str, id_name: str, **values) -> Callable[[int], str]:
    """``url_for(endpoint, id_name=id, **values)`` for every row of a table: the URL is built
    once and each row's id put into it. Building it per row was a third of a 25-row table's
    cost on the patient page, dashboard and review queue."""
    head, marker, tail = url_for(endpoint, **{id_name: int(_ID_MARKER)}, **values).partition(
        _ID_MARKER
    )
    if not marker or _ID_MARKER in tail:
        raise ValueError(f"{endpoint}: the id does not appear exactly once in its URL")
    return lambda id_: f"{head}{int(id_)}{tail}"


def register_template_helpers(app: Flask) -> None:
    app.jinja_env.filters["local_time"] = format_local
    app.jinja_env.filters["severity"] = entry_severity
    app.jinja_env.globals.update(
        NO_ADVICE_NOTICE=NO_ADVICE_NOTICE,
        NOT_ASSESSED_REASONS=NOT_ASSESSED_REASONS,
        url_for_ids=url_for_ids,
    )

    @app.context_processor
    def inject_user():
        return {"current_user": current_user}


def register_cli(app: Flask) -> None:
    from .cli import register_commands

    register_commands(app)
