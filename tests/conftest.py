"""Fixtures: a fresh app and database per test, on SQLite or (by environment) PostgreSQL.

Set CLINIC_LOG_TEST_DATABASE_URL=postgresql+psycopg://... to run the whole suite on PostgreSQL;
the schema is created once and every table is emptied after each test.
"""

from __future__ import annotations

import contextvars
import os
import re
import uuid
from datetime import timedelta

import psycopg
import pytest
from flask.testing import FlaskClient
from jinja2 import BytecodeCache
from sqlalchemy import text
from sqlalchemy.engine import make_url

from clinic_log import create_app
from clinic_log.assessments.services import record_assessment
from clinic_log.auth.services import create_site, create_user
from clinic_log.database import now_utc
from clinic_log.extensions import db
from clinic_log.models import Site, User
from clinic_log.patients.services import create_patient
from clinic_log.scale_registry import get_scale

PG_URL = os.environ.get("CLINIC_LOG_TEST_DATABASE_URL")
PASSWORD = "correct horse battery staple"
_CSRF = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')
_pg_schema_ready = False


def pytest_report_header(config):
    where = f"PostgreSQL {PG_URL}" if PG_URL else "SQLite (a temporary file per test)"
    return f"clinic_log database: {where}"


class _SharedBytecodeCache(BytecodeCache):
    """Templates compiled once per test run instead of once per test's app."""

    def __init__(self):
        self.store: dict[str, bytes] = {}

    def load_bytecode(self, bucket):
        if bucket.key in self.store:
            bucket.bytecode_from_string(self.store[bucket.key])

    def dump_bytecode(self, bucket):
        self.store[bucket.key] = bucket.bytecode_to_string()


_BYTECODE_CACHE = _SharedBytecodeCache()


class IsolatedClient(FlaskClient):
    """A test client whose every request runs in a fresh context, as on a real server.

    Flask reuses an application context that is already pushed (by a fixture, say) for the
    requests made inside it, which would share ``g`` and the database session between
    requests and hide bugs; a new contextvars context gives each request its own.
    """

    def open(self, *args, **kwargs):
        return contextvars.Context().run(self._open_and_read, *args, **kwargs)

    def _open_and_read(self, *args, **kwargs):
        # A streamed body (CSV exports) is read inside the request's own context, as a WSGI
        # server reads it in the request's thread.
        response = super().open(*args, **kwargs)
        if response.is_streamed:
            response.get_data()
        return response


@pytest.fixture
def app(tmp_path):
    global _pg_schema_ready
    app = create_app(
        {
            "TESTING": True,
            "INSTANCE_PATH": str(tmp_path / "instance"),
            "DATABASE_URL": PG_URL or f"sqlite:///{tmp_path / 'test.sqlite3'}",
            "SECRET_KEY": "test-secret-key-" + "x" * 40,
            # Cheap hashing keeps the suite fast; the production method is tested on its own.
            "PASSWORD_HASH_METHOD": "scrypt:1024:8:1",
        }
    )
    app.test_client_class = IsolatedClient
    app.jinja_env.bytecode_cache = _BYTECODE_CACHE
    with app.app_context():
        if not PG_URL or not _pg_schema_ready:
            if PG_URL:
                db.drop_all()  # a leftover schema from an interrupted run
            db.create_all()
            _pg_schema_ready = True
    yield app
    with app.app_context():
        db.session.remove()
        if PG_URL:
            tables = ", ".join(f'"{t.name}"' for t in db.metadata.sorted_tables)
            with db.engine.begin() as conn:
                conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
        db.engine.dispose()


@pytest.fixture
def empty_database_url(tmp_path):
    """A new, empty database of the kind the suite runs on: a SQLite file, or a PostgreSQL
    database of its own (created for the test and dropped after it)."""
    if not PG_URL:
        yield f"sqlite:///{tmp_path / 'empty.sqlite3'}"
        return
    url = make_url(PG_URL)
    name = f"{url.database}_empty_{uuid.uuid4().hex[:8]}"
    admin = url.set(drivername="postgresql", database="postgres").render_as_string(
        hide_password=False
    )
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield url.set(database=name).render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def app_ctx(app):
    with app.app_context():
        yield app


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


# The GAD-7 item keys as published, written out here so that tests do not trust the scale file.
GAD7 = (
    "nervous",
    "cannot_stop_worrying",
    "worry_too_much",
    "trouble_relaxing",
    "restless",
    "irritable",
    "afraid",
)


class Browser:
    """A test client that behaves like a person with a browser: it reads the CSRF token from
    the page it was shown, and logs in through the login form."""

    def __init__(self, client):
        self.client = client
        self.last = None

    def get(self, url, **kwargs):
        self.last = self.client.get(url, **kwargs)
        return self.last

    def csrf_token(self, url="/login"):
        page = self.client.get(url, follow_redirects=True)
        match = _CSRF.search(page.get_data(as_text=True))
        assert match, f"no CSRF token on {url}"
        return match.group(1)

    def post(self, url, data=None, *, token_from=None, csrf=True, **kwargs):
        data = dict(data or {})
        if csrf and "csrf_token" not in data:
            data["csrf_token"] = self.csrf_token(token_from or url)
        self.last = self.client.post(url, data=data, **kwargs)
        return self.last

    def login(self, username, password=PASSWORD):
        response = self.post("/login", {"username": username, "password": password})
        assert response.status_code == 302, response.get_data(as_text=True)
        return response

    def logout(self):
        return self.post("/logout", token_from="/")


@pytest.fixture
def browser(app):
    return Browser(app.test_client())


@pytest.fixture
def make_browser(app):
    return lambda: Browser(app.test_client())


@pytest.fixture
def login(world, make_browser):
    """Log a new browser in as one of the world's accounts (they share one password)."""

    def _login(username, password=PASSWORD):
        browser = make_browser()
        browser.login(username, password)
        return browser

    return _login


@pytest.fixture
def make_site(app_ctx):
    def _make(code="NORTH", name="North Clinic", timezone="Europe/London") -> Site:
        return create_site(code, name, timezone)

    return _make


@pytest.fixture
def make_user(app_ctx):
    def _make(username, role="clinician", sites=("NORTH",), password=PASSWORD) -> User:
        return create_user(username, password, role, list(sites), display_name=username.title())

    return _make


@pytest.fixture
def world(make_site, make_user):
    """Two sites, each with a clinician and a supervisor, one admin and one patient per site."""
    north = make_site("NORTH", "North Clinic", "Europe/London")
    south = make_site("SOUTH", "South Clinic", "America/New_York")
    users = {
        "clin_n": make_user("clin.north", "clinician", ["NORTH"]),
        "sup_n": make_user("sup.north", "supervisor", ["NORTH"]),
        "clin_s": make_user("clin.south", "clinician", ["SOUTH"]),
        "admin": make_user("admin.one", "admin", []),
    }
    start = now_utc() - timedelta(days=2)
    patient_n = create_patient(users["clin_n"], north, "N-001", "Test N", start, "opioid", "")
    patient_s = create_patient(users["clin_s"], south, "S-001", None, start, "kratom", "")
    return {
        "north": north,
        "south": south,
        **users,
        "patient_n": patient_n,
        "patient_s": patient_s,
    }


@pytest.fixture
def add_assessment(app_ctx):
    """Record an assessment through the service, every item at the given score by default."""

    def _add(patient, user, scale_key="cows", scores=None, observed_at=None, **kwargs):
        scale = get_scale(scale_key)
        if scores is None:
            scores = {item.key: item.allowed_scores[0] for item in scale.items}
        return record_assessment(
            user,
            patient,
            scale,
            scores,
            observed_at=observed_at or now_utc() - timedelta(hours=1),
            **kwargs,
        )

    return _add


@pytest.fixture
def count_queries(app):
    """Count the SQL statements the app runs inside a ``with count_queries() as counted:`` block
    (``counted`` is a list of the statements)."""
    from contextlib import contextmanager

    from sqlalchemy import event

    @contextmanager
    def _count():
        statements: list[str] = []

        def _record(_conn, _cursor, statement, *_args):
            if not statement.startswith(("BEGIN", "PRAGMA", "COMMIT", "ROLLBACK", "SAVEPOINT")):
                statements.append(statement)

        with app.app_context():
            engine = db.engine
        event.listen(engine, "before_cursor_execute", _record)
        try:
            yield statements
        finally:
            event.remove(engine, "before_cursor_execute", _record)

    return _count
