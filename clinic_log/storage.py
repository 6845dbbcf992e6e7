"""Storage faults and safety: a locked or full database answers 503/507 and keeps the user's
input; the app refuses to start on a database that was never migrated; ``flask backup``.

Nothing here decides what is saved. It makes sure that when the database cannot save, the
user is told so plainly, sees what they typed, and no traceback or SQL reaches the page.
"""

from __future__ import annotations

import logging
import os
import shlex
import sqlite3
import sys
import tempfile
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import click
from flask import (
    Flask,
    current_app,
    g,
    has_request_context,
    render_template,
    request,
)
from flask.signals import before_render_template
from flask_wtf import FlaskForm
from sqlalchemy import create_engine, func, inspect, select, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import StaticPool
from werkzeug.datastructures import ImmutableMultiDict
from werkzeug.exceptions import HTTPException

from .config import ConfigError
from .extensions import db

log = logging.getLogger("clinic_log.storage")

BUSY = "busy"
FULL = "full"
MESSAGES = {
    BUSY: (
        "The database is busy; nothing was saved. Your entries are below: try again in a moment."
    ),
    FULL: (
        "The database has no room left (its disk is full); nothing was saved. Your entries "
        "are below: keep a copy of them and tell your administrator."
    ),
}
# 503: try again shortly. 507: retrying will not help until someone frees space.
STATUS = {BUSY: 503, FULL: 507}
RETRY_AFTER_SECONDS = "5"

_SQLITE_BUSY = ("SQLITE_BUSY", "SQLITE_LOCKED")
_SQLITE_FULL = ("SQLITE_FULL",)
_SQLITE_MESSAGES = {
    "database is locked": BUSY,
    "database table is locked": BUSY,
    "database or disk is full": FULL,
}
# PostgreSQL: conflicts that outlived their retries, lock and statement timeouts, too many
# connections, a server starting or stopping; and disk full / out of resources.
_PG_BUSY = {"40001", "40P01", "55P03", "57014", "53300", "57P03"}
_PG_FULL = {"53000", "53100"}

# Request-local markers for the re-rendered form (``g`` attributes).
_REFUSAL = "_clinic_log_storage_refusal"
_REFUSAL_SHOWN = "_clinic_log_storage_refusal_shown"
# Submitted fields never echoed back on the plain busy page.
_NOT_ECHOED = ("csrf_token", "submission_key", "password", "code", "secret", "token")


# --------------------------------------------------------------------------- 503 / 507


def problem_of(error: BaseException) -> str | None:
    """``BUSY`` or ``FULL`` when ``error`` means the database could not take the write now,
    else None (any other database error stays a 500 with an incident number)."""
    if not isinstance(error, DBAPIError):
        return None
    orig = error.orig
    if isinstance(orig, sqlite3.Error):
        name = getattr(orig, "sqlite_errorname", "") or ""
        if name.startswith(_SQLITE_FULL):
            return FULL
        if name.startswith(_SQLITE_BUSY):
            return BUSY
        return _SQLITE_MESSAGES.get(str(orig).strip().lower())
    sqlstate = getattr(orig, "sqlstate", None)
    if not isinstance(sqlstate, str):
        return None
    if sqlstate in _PG_FULL:
        return FULL
    if sqlstate in _PG_BUSY or sqlstate.startswith("08"):  # 08: connection exceptions
        return BUSY
    return None


def _reason(error: DBAPIError) -> str:
    """What went wrong, for the log: an error name or SQLSTATE, never SQL or parameters."""
    orig = error.orig
    return str(
        getattr(orig, "sqlite_errorname", None)
        or getattr(orig, "sqlstate", None)
        or type(orig).__name__
    )


def refused_write_response(error: DBAPIError, http_error):
    """The page for a write the database refused: the user's form again when the view can
    show it, else ``errors/busy.html`` listing what was sent. Status 503 (busy) or 507 (full).

    ``http_error`` renders an ``HTTPException`` the view raises while re-rendering.
    """
    kind = problem_of(error) or BUSY
    # SQLite has usually rolled back already ("disk full"); SQLAlchemy's rollback tolerates it.
    db.session.rollback()
    log.warning(
        "database %s (%s): nothing saved for %s %r",
        kind,
        _reason(error),
        request.method,
        request.path,
    )
    message = MESSAGES[kind]
    view = current_app.view_functions.get(request.endpoint or "")
    if (
        request.method == "POST"
        and getattr(view, "redisplay_on_csrf_error", False)
        and _raised_inside(view, error)
    ):
        response = _redisplay(view, message, STATUS[kind], http_error)
        if response is not None:
            return response
    return _busy_page(kind)


def _busy_page(kind: str):
    entries = []
    if request.method == "POST":
        entries = [
            (name, value)
            for name, values in request.form.lists()
            if not any(word in name.lower() for word in _NOT_ECHOED)
            for value in values
            if value.strip()
        ]
    response = current_app.make_response(
        (render_template("errors/busy.html", message=MESSAGES[kind], entries=entries), STATUS[kind])
    )
    if kind == BUSY:
        response.headers["Retry-After"] = RETRY_AFTER_SECONDS
    return response


def _raised_inside(view, error: BaseException) -> bool:
    """True when the error came from the view itself, not from a before-request hook (a view
    that never ran must not be run now: the hooks that stopped it would be skipped)."""
    code = getattr(view, "__code__", None)
    tb = error.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code is code:
            return True
        tb = tb.tb_next
    return False


def _redisplay(view, message: str, status: int, http_error):
    """Call the view again with its form's CSRF token taken out of the submitted data.

    This is exactly the path a CSRF failure takes (see ``forms.redisplay_on_csrf_error``):
    the form fails validation, so the view saves nothing and re-renders what the user typed.
    Just before its template renders, ``_show_refusal`` swaps the "form expired" error for
    ``message``. Returns None when that did not happen (the plain busy page is used instead).
    """
    if not current_app.config.get("WTF_CSRF_ENABLED", True):
        return None  # without a token to withhold, the view would try to save again
    token_name = current_app.config.get("WTF_CSRF_FIELD_NAME", "csrf_token")
    real_request = request._get_current_object()
    submitted = real_request.form
    real_request.form = ImmutableMultiDict(
        [(k, v) for k, v in submitted.items(multi=True) if k != token_name]
    )
    setattr(g, _REFUSAL, message)
    g.pop("csrf_valid", None)
    try:
        rv = view(**(request.view_args or {}))
        response = current_app.make_response(rv)
    except HTTPException as refused:  # the view's own 403/404: no error handler runs here
        return http_error(refused)
    except Exception as again:  # the database refused even the reads: use the plain page
        # No traceback: a database error's text carries the SQL and its parameters.
        log.warning("re-rendering %r failed too: %s", request.path, type(again).__name__)
        db.session.rollback()
        return None
    finally:
        real_request.form = submitted
        g.pop(_REFUSAL, None)
        shown = g.pop(_REFUSAL_SHOWN, False)
    if shown:
        response.status_code = status
        if status == STATUS[BUSY]:
            response.headers["Retry-After"] = RETRY_AFTER_SECONDS
        return response
    if 300 <= response.status_code < 400:
        return response  # the view sent the user on (say, the entry had been saved after all)
    return None


def _show_refusal(_app, template, context, **_extra) -> None:
    """While a refused form is re-rendered: replace its CSRF error with the storage message."""
    if not has_request_context():
        return
    message = g.get(_REFUSAL)
    if not message:
        return
    token_name = current_app.config.get("WTF_CSRF_FIELD_NAME", "csrf_token")
    for value in context.values():
        if isinstance(value, FlaskForm) and token_name in value and value[token_name].errors:
            value[token_name].errors = []
            value.form_errors.append(message)
            setattr(g, _REFUSAL_SHOWN, True)


before_render_template.connect(_show_refusal)


def show_instead_of_csrf_error(message: str) -> None:
    """For this request, a form re-rendered for want of a CSRF token shows ``message`` in
    place of the "form expired" error (held input restored after a login, ``auth/held.py``)."""
    setattr(g, _REFUSAL, message)


# --------------------------------------------------------------------------- schema check


def check_schema_at_start_up(app: Flask, *, settings_from_environment: bool) -> None:
    """Stop start-up when the database was never migrated or is behind the migrations.

    On by default when the app is built the way the ``flask`` command and WSGI servers build
    it (``create_app()``, settings from CLINIC_LOG_* variables), except under TESTING, for
    ``flask db ...`` itself (it must be able to create the schema) and for ``flask backup``
    (a database that is behind must be backed up before it is upgraded). Code that
    passes its own settings (the test suite, benchmarks, the docs script) builds its tables
    from the models and opts in with ``SCHEMA_CHECK=True``. ``CLINIC_LOG_SCHEMA_CHECK=false``
    turns it off. It costs one query (``SELECT version_num FROM alembic_version``).
    """
    wanted = app.config.get("SCHEMA_CHECK")
    if wanted is None:
        wanted = settings_from_environment and not app.testing
    if not wanted or running_flask_command() in (_migrate_command(app), "backup"):
        return
    problem = schema_problem(app)
    if problem:
        raise ConfigError(problem)


def _migrate_command(app: Flask) -> str:
    return app.extensions["migrate"].migrate.command  # "db" unless configured otherwise


def running_flask_command() -> str | None:
    """The name of the ``flask`` subcommand loading the app (``"db"`` for ``flask db
    upgrade``), or None when the app is not being loaded by the ``flask`` command.

    Click's context says whether the ``flask`` command is loading the app at all (a WSGI
    server or pytest has no Flask CLI context, and its ``sys.argv`` means something else). It
    does not always say which command: Flask loads the app while it is still resolving an
    app-provided command such as ``db``, before click creates that command's context. So the
    command name comes from the context when click already knows it, else from ``sys.argv``,
    read as the ``flask`` command reads it (its own options ``--app X``, ``-e FILE``,
    ``--debug`` skipped).
    """
    from flask.cli import FlaskGroup

    ctx = click.get_current_context(silent=True)
    chain = []
    while ctx is not None:
        chain.append(ctx)
        ctx = ctx.parent
    if not chain or not isinstance(chain[-1].command, FlaskGroup):
        return None
    if len(chain) > 1:  # already inside a subcommand: click knows its name
        return chain[-2].info_name
    if chain[-1].invoked_subcommand is not None:
        return chain[-1].invoked_subcommand
    return _flask_command_name(sys.argv)


_FLASK_OPTIONS_WITH_VALUE = {"-e", "--env-file", "-A", "--app"}


def _flask_command_name(argv: list[str]) -> str | None:
    args = iter(argv[1:])
    for arg in args:
        if arg in _FLASK_OPTIONS_WITH_VALUE:
            next(args, None)
        elif not arg.startswith("-"):
            return arg
    return None


def migration_heads(app: Flask) -> tuple[set[str], set[str]]:
    """(the head revisions, every known revision) of the app's migration scripts."""
    from alembic.script import ScriptDirectory

    scripts = ScriptDirectory(app.extensions["migrate"].directory)
    return set(scripts.get_heads()), {s.revision for s in scripts.walk_revisions()}


def schema_problem(app: Flask) -> str | None:
    """Why the configured database cannot be used by this version of the app, or None."""
    url = make_url(app.config["SQLALCHEMY_DATABASE_URI"])
    shown = url.render_as_string(hide_password=True)
    upgrade = "run `flask db upgrade` with the same CLINIC_LOG_DATABASE_URL"
    if url.get_backend_name() == "sqlite":
        path = url.database
        if not path or path == ":memory:" or url.query.get("mode") == "memory":
            return (
                f"the database at {shown} is in memory and has no schema: "
                "set CLINIC_LOG_DATABASE_URL to a database file and run `flask db upgrade`"
            )
        if not url.query.get("uri") and not os.path.exists(path):
            # Checked before connecting: SQLite would create an empty file at a wrong path.
            return f"the database at {shown} has no schema (there is no such file): {upgrade}"
    heads, known = migration_heads(app)
    with app.app_context():
        engine = db.engine
        try:
            with engine.connect() as conn:
                rows = conn.execute(text("SELECT version_num FROM alembic_version"))
                current = set(rows.scalars())
        except DBAPIError as error:
            if not _missing_table(error):
                return f"cannot open the database at {shown}: {_first_line(error.orig)}"
            current = set()
        finally:
            # No connection opened before a server forks its workers stays in the pool.
            engine.dispose()
    if not current:
        return f"the database at {shown} has no schema: {upgrade}"
    if current == heads:
        return None
    if current - known:
        return (
            f"the database at {shown} is at migration {', '.join(sorted(current))}, which this "
            "version of clinic_log does not know (a newer version upgraded it): run that "
            "version, or restore a backup made for this one"
        )
    return (
        f"the database at {shown} is at migration {', '.join(sorted(current))}, behind "
        f"{', '.join(sorted(heads))}: back it up (`flask backup`), then {upgrade}"
    )


def _missing_table(error: DBAPIError) -> bool:
    orig = error.orig
    return getattr(orig, "sqlstate", None) == "42P01" or "no such table" in str(orig)


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


# --------------------------------------------------------------------------- backup


class BackupError(Exception):
    """The backup was not made; the message says why."""


@dataclass(frozen=True)
class BackupReport:
    path: Path
    integrity: str
    counts: dict[str, int]


def backup_sqlite(
    source: str, destination: Path, *, force: bool = False, busy_timeout_ms: int = 5000
) -> BackupReport:
    """Copy a live SQLite database consistently to ``destination`` and check the copy.

    SQLite's online backup API copies every page in one step inside one read transaction: in
    WAL mode that is a snapshot, and the app keeps writing meanwhile. The copy is written to a
    temporary file beside the destination (owner-readable only), switched to a single-file
    journal, checked with ``PRAGMA integrity_check``, flushed to disk, and only then given its
    name, so a failed or interrupted backup never leaves a half-written file under it.
    """
    src = Path(source).absolute()
    dest = Path(destination).expanduser().absolute()
    if not src.is_file():
        raise BackupError(f"there is no database file at {src}")
    if dest.is_dir():
        raise BackupError(f"{dest} is a folder; give the backup file's name")
    if dest.exists() and not force:
        raise BackupError(f"{dest} already exists; choose a new name, or add --force to replace it")
    if dest == src or dest.parent == src.parent and dest.name.startswith(src.name + "-"):
        raise BackupError(f"{dest} is the live database or one of its files; choose another name")
    if not dest.parent.is_dir():
        raise BackupError(f"the folder {dest.parent} does not exist")

    fd, partial_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".partial", dir=dest.parent)
    os.close(fd)
    partial = Path(partial_name)
    try:
        # Not through the app's pool: a plain connection, waiting like the app does.
        live = sqlite3.connect(src, timeout=busy_timeout_ms / 1000, isolation_level=None)
        copy = sqlite3.connect(partial, isolation_level=None)
        with closing(live), closing(copy):
            live.backup(copy)
            copy.execute("PRAGMA journal_mode=DELETE")
            integrity = "; ".join(row[0] for row in copy.execute("PRAGMA integrity_check"))
            if integrity != "ok":
                raise BackupError(f"the copy failed PRAGMA integrity_check: {integrity[:500]}")
            counts = _row_counts(copy)
        with open(partial, "rb+") as stream:
            os.fsync(stream.fileno())
        _give_name(partial, dest, force)
    finally:
        for leftover in (partial, Path(f"{partial}-journal")):
            leftover.unlink(missing_ok=True)
    return BackupReport(dest, integrity, counts)


def _row_counts(connection: sqlite3.Connection) -> dict[str, int]:
    """Rows in each of the models' tables present in the copy, in dependency order."""
    engine = create_engine("sqlite://", creator=lambda: connection, poolclass=StaticPool)
    present = set(inspect(engine).get_table_names())
    with engine.connect() as conn:
        return {
            table.name: conn.scalar(select(func.count()).select_from(table))
            for table in db.metadata.sorted_tables
            if table.name in present
        }


def _give_name(partial: Path, dest: Path, force: bool) -> None:
    if force:
        os.replace(partial, dest)
    else:
        try:
            os.link(partial, dest)  # fails instead of replacing a file that appeared meanwhile
        except FileExistsError as exc:
            raise BackupError(f"{dest} already exists; add --force to replace it") from exc
    directory = os.open(dest.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def pg_dump_instructions(url: URL, destination: Path) -> str:
    """What to run instead on PostgreSQL; never shows the password."""
    command = ["pg_dump", "--format=custom", f"--file={destination}"]
    if url.host:
        command.append(f"--host={url.host}")
    if url.port:
        command.append(f"--port={url.port}")
    if url.username:
        command.append(f"--username={url.username}")
    command.append(url.database or "DBNAME")
    return (
        "Not done: `flask backup` copies SQLite databases only; this one is on PostgreSQL.\n"
        "Make the backup with PostgreSQL's own tool (it asks for the password, or reads it "
        "from ~/.pgpass or PGPASSWORD):\n\n"
        f"  {shlex.join(command)}\n\n"
        "then check that it can be read back:\n\n"
        f"  pg_restore --list {shlex.quote(str(destination))} > /dev/null"
    )
