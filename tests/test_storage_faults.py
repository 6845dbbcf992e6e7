"""Storage faults (security.md J03, J05, J06, J08, J09, J11, J12): a locked or full database
answers 503/507 with the clinician's input kept and nothing written; a killed writer loses no
acknowledged entry; concurrent writers lose nothing; PostgreSQL conflicts are retried; the app
refuses to start on a database that was never migrated.

Most of this is about SQLite files (locks, pragmas, WAL); those tests skip on PostgreSQL.
"""

from __future__ import annotations

import html
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import PASSWORD, Browser, IsolatedClient
from sqlalchemy import event, func, insert, select, text, update
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import IntegrityError, OperationalError

from clinic_log import ConfigError, create_app
from clinic_log.assessments.services import record_assessment
from clinic_log.auth.services import create_site, create_user
from clinic_log.database import now_utc, retry_on_conflict
from clinic_log.extensions import db
from clinic_log.models import Assessment, AuditEvent, ItemScore, Patient, Site, User
from clinic_log.patients.services import create_patient
from clinic_log.scale_registry import get_scale
from clinic_log.scales import load_scales
from clinic_log.storage import _flask_command_name, migration_heads

PG_URL = os.environ.get("CLINIC_LOG_TEST_DATABASE_URL")
ROOT = Path(__file__).resolve().parent.parent
SQLITE_LOCKS = pytest.mark.skipif(
    bool(PG_URL), reason="SQLite only: file locks, busy_timeout and pragmas are SQLite's"
)
SQLITE_FILES = pytest.mark.skipif(
    bool(PG_URL), reason="SQLite only: works on the database file, its -wal and its pages"
)
PG_ONLY = pytest.mark.skipif(not PG_URL, reason="PostgreSQL only: set CLINIC_LOG_TEST_DATABASE_URL")
NOTE = "Restless & yawning; pupils <4 mm> — stöhnt"
BUSY_TEXT = "The database is busy; nothing was saved. Your entries are below: try again"


# --------------------------------------------------------------------------- helpers


def build_app(tmp_path: Path, db_name: str = "app.sqlite3", create: bool = True, **overrides):
    """An app on its own SQLite file, like conftest's ``app`` but with settings of our own."""
    settings = {
        "TESTING": True,
        "INSTANCE_PATH": str(tmp_path / "instance"),
        "DATABASE_URL": f"sqlite:///{tmp_path / db_name}",
        "SECRET_KEY": "storage-test-secret-" + "x" * 40,
        "PASSWORD_HASH_METHOD": "scrypt:1024:8:1",
        **overrides,
    }
    app = create_app(settings)
    app.test_client_class = IsolatedClient
    if create:
        with app.app_context():
            db.create_all()
    return app


def stamp_head(app) -> None:
    """Record the migrations' head in a database built from the models (as `flask db stamp`)."""
    heads, _ = migration_heads(app)
    with app.app_context():
        with db.engine.begin() as conn:
            conn.execute(text("CREATE TABLE alembic_version (version_num VARCHAR(32) PRIMARY KEY)"))
            for head in heads:
                conn.execute(text("INSERT INTO alembic_version VALUES (:v)"), {"v": head})
        db.engine.dispose()


def seed(app) -> SimpleNamespace:
    """One site, one clinician, one patient with an open episode; plain ids back."""
    with app.app_context():
        site = create_site("NORTH", "North Clinic", "Europe/London")
        user = create_user("clin.north", PASSWORD, "clinician", ["NORTH"], display_name="Clin")
        patient = create_patient(
            user, site, "N-001", None, now_utc() - timedelta(days=2), "opioid", ""
        )
        ids = SimpleNamespace(user=user.id, patient=patient.id)
        db.session.remove()
        db.engine.dispose()
    return ids


def db_path(app) -> Path:
    return Path(make_url(app.config["SQLALCHEMY_DATABASE_URI"]).database)


def scalar(app, sql: str, **params):
    with app.app_context():
        value = db.session.execute(text(sql), params).scalar()
        db.session.remove()
        return value


def count(app, model) -> int:
    with app.app_context():
        value = db.session.scalar(select(func.count()).select_from(model))
        db.session.remove()
        return value


COWS = load_scales()["cows"]


def default_scores() -> dict[str, int]:
    return {item.key: item.allowed_scores[0] for item in COWS.items}


def _input_value(page: str, name: str) -> str:
    for tag in re.findall(r"<input\b[^>]*>", page):
        attrs = dict(re.findall(r'([\w-]+)="([^"]*)"', tag))
        if attrs.get("name") == name and (name != "csrf_token" or attrs.get("id") == name):
            return html.unescape(attrs.get("value", ""))
    raise AssertionError(f"no input {name!r} on the page")


def entry_url(patient_id: int) -> str:
    return f"/patients/{patient_id}/assessments/new/cows"


def entry_data(browser: Browser, patient_id: int, notes: str = NOTE) -> dict[str, str]:
    """What a clinician's browser sends after opening the COWS form and answering it."""
    page = browser.get(entry_url(patient_id))
    assert page.status_code == 200, page.status_code
    body = page.get_data(as_text=True)
    data = {
        name: _input_value(body, name) for name in ("csrf_token", "submission_key", "observed_at")
    }
    data.update({key: str(score) for key, score in default_scores().items()})
    data["notes"] = notes
    return data


def logged_in(app, username: str = "clin.north") -> Browser:
    browser = Browser(app.test_client())
    browser.login(username)
    return browser


def page_text(response) -> str:
    return html.unescape(response.get_data(as_text=True))


# --------------------------------------------------------------------------- J08 foreign keys


@SQLITE_LOCKS
def test_foreign_keys_are_on_for_every_connection_of_the_apps_engine(app_ctx):
    with db.engine.connect() as first, db.engine.connect() as second:
        assert first.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert second.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    assert db.session.execute(text("PRAGMA foreign_keys")).scalar() == 1


def test_an_orphan_row_is_refused_and_nothing_is_written(app_ctx):
    orphan = {"assessment_id": 987654, "item_key": "pulse", "position": 0, "score": 1}
    with pytest.raises(IntegrityError), db.engine.begin() as conn:
        conn.execute(insert(ItemScore).values(**orphan))
    assert db.session.scalar(select(func.count()).select_from(ItemScore)) == 0


# --------------------------------------------------------------------------- J03 locked


@SQLITE_LOCKS
def test_a_locked_database_answers_503_keeps_the_input_and_the_retry_saves(tmp_path):
    app = build_app(tmp_path, SQLITE_BUSY_TIMEOUT_MS=200)
    ids = seed(app)
    browser = logged_in(app)
    data = entry_data(browser, ids.patient)
    before = (count(app, Assessment), count(app, ItemScore), count(app, AuditEvent))

    holder = sqlite3.connect(db_path(app), isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another writer holds the lock past the busy timeout
    try:
        started = time.monotonic()
        refused = browser.post(entry_url(ids.patient), data)
        waited = time.monotonic() - started
    finally:
        holder.rollback()
        holder.close()

    assert refused.status_code == 503
    assert refused.headers["Retry-After"]
    body = page_text(refused)
    assert BUSY_TEXT in body
    assert NOTE in body  # what the clinician typed is on the page to submit again
    assert f'value="{data["observed_at"]}"' in refused.get_data(as_text=True)
    assert f'value="{data["submission_key"]}"' in refused.get_data(as_text=True)
    assert "Traceback" not in body and "SELECT" not in body and "INSERT" not in body
    assert "form expired" not in body.lower()  # the CSRF path is reused, not its message
    assert 0.15 < waited < 4.5  # it waited its 200 ms busy_timeout (not 5 s), then gave up
    assert (count(app, Assessment), count(app, ItemScore), count(app, AuditEvent)) == before

    saved = browser.post(entry_url(ids.patient), data)  # the same form, once the lock is gone
    assert saved.status_code == 302, page_text(saved)
    assert count(app, Assessment) == before[0] + 1
    notes = scalar(app, "SELECT notes FROM assessment ORDER BY id DESC LIMIT 1")
    assert notes == NOTE


@SQLITE_LOCKS
def test_a_locked_database_on_a_plain_form_lists_the_entries_but_no_password(tmp_path):
    app = build_app(tmp_path, SQLITE_BUSY_TIMEOUT_MS=200)
    seed(app)
    browser = Browser(app.test_client())
    token = browser.csrf_token("/login")
    holder = sqlite3.connect(db_path(app), isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        response = browser.post(
            "/login",
            {"username": "clin.north", "password": PASSWORD, "csrf_token": token},
        )
    finally:
        holder.rollback()
        holder.close()
    assert response.status_code == 503
    body = page_text(response)
    assert "The database is busy; nothing was saved" in body
    assert "clin.north" in body
    assert PASSWORD not in body


# --------------------------------------------------------------------------- J05 disk full


@SQLITE_FILES
def test_a_full_disk_answers_507_keeps_the_input_and_earlier_data_is_intact(tmp_path):
    app = build_app(tmp_path)
    ids = seed(app)
    browser = logged_in(app)
    first = browser.post(entry_url(ids.patient), entry_data(browser, ids.patient, "before"))
    assert first.status_code == 302

    with app.app_context():
        engine = db.engine
        pages = engine.connect().exec_driver_sql("PRAGMA page_count").scalar()
        engine.dispose()

    def no_growth(dbapi_connection, _record):
        # max_page_count is per connection: every connection the pool opens from now on.
        dbapi_connection.execute(f"PRAGMA max_page_count={pages}")

    event.listen(engine, "connect", no_growth)
    saved, refused = [], None
    for n in range(40):
        data = entry_data(browser, ids.patient, f"entry {n}: " + "long observation text " * 80)
        response = browser.post(entry_url(ids.patient), data)
        if response.status_code == 302:
            saved.append(int(response.headers["Location"].rsplit("/", 1)[-1]))
            continue
        refused = (response, data)
        break
    event.remove(engine, "connect", no_growth)
    engine.dispose()

    assert refused is not None, "the database never filled up"
    response, data = refused
    assert response.status_code == 507
    body = page_text(response)
    assert "disk is full" in body and "nothing was saved" in body
    assert data["notes"].strip() in body  # the form again, as typed
    assert f'value="{data["submission_key"]}"' in response.get_data(as_text=True)
    assert "Traceback" not in body
    assert count(app, Assessment) == 1 + len(saved)
    for assessment_id in saved:
        assert scalar(app, "SELECT count(*) FROM assessment WHERE id = :i", i=assessment_id) == 1
    assert scalar(app, "SELECT count(*) FROM assessment WHERE notes = 'before'") == 1
    assert scalar(app, "PRAGMA integrity_check") == "ok"


# --------------------------------------------------------------------------- J06 kill -9, J12 WAL

WRITER = """
import json, sys
from datetime import timedelta
from clinic_log import create_app
from clinic_log.assessments.services import record_assessment
from clinic_log.database import now_utc
from clinic_log.extensions import db
from clinic_log.models import Patient, User
from clinic_log.scale_registry import get_scale

settings, user_id, patient_id = json.loads(sys.argv[1])
app = create_app(settings)
with app.app_context():
    user, patient = db.session.get(User, user_id), db.session.get(Patient, patient_id)
    scale = get_scale("cows")
    scores = {item.key: item.allowed_scores[0] for item in scale.items}
    n = 0
    while True:
        n += 1
        saved = record_assessment(
            user, patient, scale, scores,
            observed_at=now_utc() - timedelta(hours=1), notes=f"kill test {n}",
        )
        print(saved.id, flush=True)  # printed only once committed: an acknowledged write
"""


@SQLITE_FILES
def test_kill_9_mid_write_loses_no_acknowledged_entry_and_the_wal_is_recovered(tmp_path):
    app = build_app(tmp_path)
    stamp_head(app)
    ids = seed(app)
    settings = {
        k: app.config[k] for k in ("TESTING", "SECRET_KEY", "PASSWORD_HASH_METHOD", "DATABASE_URL")
    }
    settings["INSTANCE_PATH"] = str(tmp_path / "writer-instance")
    lines: list[str] = []
    first = threading.Event()
    errors = tmp_path / "writer.err"
    with (
        errors.open("w") as stderr,
        subprocess.Popen(  # noqa: S603 - our own interpreter and script
            [sys.executable, "-c", WRITER, json.dumps([settings, ids.user, ids.patient])],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        ) as writer,
    ):

        def read():
            for line in writer.stdout:
                lines.append(line)
                first.set()

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        try:
            # Start-up (interpreter, imports, app) can be slow on a busy machine; the kill
            # itself comes 1 s after the first acknowledged write.
            started = first.wait(timeout=30)
            if started:
                time.sleep(1.0)
        finally:
            writer.send_signal(signal.SIGKILL)
            writer.wait(timeout=5)
            reader.join(timeout=5)
    assert started, errors.read_text()
    acknowledged = [int(line) for line in lines if line.endswith("\n")]
    assert len(acknowledged) >= 5

    wal = Path(f"{db_path(app)}-wal")
    assert wal.exists() and wal.stat().st_size > 0, "the kill should leave the WAL behind"

    # J12: a fresh app starts on it (schema check included) and shows what was committed.
    fresh = build_app(tmp_path, create=False, SCHEMA_CHECK=True, TESTING=True)
    assert scalar(fresh, "PRAGMA integrity_check") == "ok"
    with fresh.app_context():
        present = set(db.session.scalars(select(Assessment.id)))
        items = dict(
            db.session.execute(
                select(ItemScore.assessment_id, func.count()).group_by(ItemScore.assessment_id)
            ).all()
        )
        audited = set(
            db.session.scalars(
                select(AuditEvent.entity_id).where(AuditEvent.action == "assessment_create")
            )
        )
        db.session.remove()
    assert set(acknowledged) <= present
    # No partial transaction: every entry has all its items and its audit event.
    assert len(present - set(acknowledged)) <= 1  # committed, killed before it was printed
    assert all(items.get(i) == len(default_scores()) for i in present)
    assert present <= audited
    browser = logged_in(fresh)
    last = browser.get(f"/assessments/{acknowledged[-1]}")
    assert last.status_code == 200
    assert f"kill test {len(acknowledged)}" in page_text(last)


def test_eight_concurrent_writers_lose_nothing(app, world):
    """Every write a writer was told succeeded is there; no writer saw an error."""
    user_id, patient_id = world["clin_n"].id, world["patient_n"].id
    db.session.commit()
    before = count(app, Assessment)
    acknowledged: list[int] = []
    errors: list[BaseException] = []
    deadline = time.monotonic() + 2.5
    scores = default_scores()

    def writer(n: int) -> None:
        try:
            with app.app_context():
                user, patient = db.session.get(User, user_id), db.session.get(Patient, patient_id)
                scale = get_scale("cows")
                while time.monotonic() < deadline:
                    saved = record_assessment(
                        user,
                        patient,
                        scale,
                        scores,
                        observed_at=now_utc() - timedelta(hours=1),
                        notes=f"writer {n}",
                        submission_key=uuid.uuid4().hex,
                    )
                    acknowledged.append(saved.id)
                db.session.remove()
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)
    assert not any(thread.is_alive() for thread in threads)
    assert errors == []
    assert len(acknowledged) >= 8
    with app.app_context():
        present = set(db.session.scalars(select(Assessment.id)))
        db.session.remove()
    assert set(acknowledged) <= present
    assert count(app, Assessment) == before + len(acknowledged) == before + len(set(acknowledged))


# --------------------------------------------------------------------------- J09 retries


class _FakePgError(Exception):
    def __init__(self, sqlstate: str):
        super().__init__(f"fake PostgreSQL error {sqlstate}")
        self.sqlstate = sqlstate


def _conflict(sqlstate: str = "40001") -> OperationalError:
    return OperationalError("UPDATE site SET name = %(name)s", {}, _FakePgError(sqlstate))


@pytest.fixture
def sleeps(monkeypatch):
    delays: list[float] = []
    monkeypatch.setattr("clinic_log.database.time.sleep", delays.append)
    return delays


@pytest.mark.parametrize("sqlstate", ["40001", "40P01"])
def test_a_conflict_is_retried_until_it_succeeds(app_ctx, sleeps, sqlstate):
    calls = []

    @retry_on_conflict
    def unit_of_work(value):
        calls.append(value)
        if len(calls) <= 2:
            raise _conflict(sqlstate)
        return value * 2

    assert unit_of_work(21) == 42
    assert calls == [21, 21, 21]
    assert len(sleeps) == 2 and all(0 < delay < 0.1 for delay in sleeps)


def test_retries_are_bounded_then_the_error_propagates(app_ctx, sleeps):
    calls = []

    @retry_on_conflict
    def always_conflicts():
        calls.append(1)
        raise _conflict()

    with pytest.raises(OperationalError):
        always_conflicts()
    assert len(calls) == 4  # the first attempt and 3 retries
    assert len(sleeps) == 3


@pytest.mark.parametrize(
    "error",
    [
        OperationalError("INSERT ...", {}, sqlite3.OperationalError("database is locked")),
        OperationalError("INSERT ...", {}, _FakePgError("23505")),
        ValueError("not a database error"),
    ],
)
def test_other_errors_are_not_retried(app_ctx, sleeps, error):
    calls = []

    @retry_on_conflict
    def fails():
        calls.append(1)
        raise error

    with pytest.raises(type(error)):
        fails()
    assert calls == [1] and sleeps == []


def test_an_inner_unit_of_work_leaves_the_retry_to_the_outer_one(app_ctx, sleeps):
    inner_calls, outer_calls = [], []

    @retry_on_conflict
    def inner():
        inner_calls.append(1)
        if len(inner_calls) == 1:
            raise _conflict("40P01")

    @retry_on_conflict
    def outer():
        outer_calls.append(1)
        inner()
        return "done"

    assert outer() == "done"
    assert (len(outer_calls), len(inner_calls)) == (2, 2)


@PG_ONLY
def test_a_real_serialization_failure_is_retried_on_postgresql(app_ctx, make_site):
    site_id = make_site("EAST", "East Clinic", "UTC").id
    db.session.commit()
    attempts = []

    @retry_on_conflict
    def rename():
        attempts.append(1)
        db.session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
        name = db.session.scalar(select(Site.name).where(Site.id == site_id))
        if len(attempts) == 1:  # someone else changes the row after our snapshot
            with db.engine.begin() as other:
                other.execute(update(Site).where(Site.id == site_id).values(name="Changed"))
        db.session.execute(update(Site).where(Site.id == site_id).values(name=f"{name} (renamed)"))
        db.session.commit()

    rename()
    assert len(attempts) == 2
    assert db.session.scalar(select(Site.name).where(Site.id == site_id)) == "Changed (renamed)"


def _conflicting_first(monkeypatch, times: int) -> list[str]:
    """The audit write of the next ``times`` units of work fails as a PostgreSQL deadlock
    would; every write service records an audit event, so this reaches each of them."""
    from clinic_log import audit

    real_record, seen = audit.record, []

    def record(action, **kwargs):
        seen.append(action)
        if len(seen) <= times:
            raise _conflict("40P01")
        return real_record(action, **kwargs)

    monkeypatch.setattr(audit, "record", record)
    return seen


def test_a_request_that_meets_a_conflict_runs_again_and_saves_once(app, world, sleeps, monkeypatch):
    browser = logged_in(app)
    patient_id = world["patient_n"].id
    db.session.commit()
    data = entry_data(browser, patient_id)
    before = count(app, Assessment)
    seen = _conflicting_first(monkeypatch, times=2)
    response = browser.post(entry_url(patient_id), data, csrf=False)
    assert response.status_code == 302, page_text(response)
    assert count(app, Assessment) == before + 1
    assert seen.count("assessment_create") == 3 and len(sleeps) == 2


def test_a_conflict_on_every_attempt_saves_nothing_and_keeps_the_input(
    app, world, sleeps, monkeypatch
):
    browser = logged_in(app)
    patient_id = world["patient_n"].id
    db.session.commit()
    data = entry_data(browser, patient_id)
    before = count(app, Assessment)
    _conflicting_first(monkeypatch, times=100)
    response = browser.post(entry_url(patient_id), data, csrf=False)
    assert response.status_code == 503
    assert NOTE in page_text(response)
    assert count(app, Assessment) == before
    assert len(sleeps) == 3


def test_a_conflict_that_outlives_its_retries_is_a_503_not_a_500(app):
    @app.route("/_test/conflict")
    def conflict():
        raise _conflict("40001")

    @app.route("/_test/broken")
    def broken():
        raise OperationalError("SELECT * FROM nope", {}, sqlite3.OperationalError("no such table"))

    client = app.test_client()
    busy = client.get("/_test/conflict")
    assert busy.status_code == 503
    assert "The database is busy; nothing was saved" in page_text(busy)
    assert "UPDATE" not in page_text(busy)
    other = client.get("/_test/broken")  # any other database error stays a 500 with an incident
    assert other.status_code == 500
    assert "nope" not in page_text(other)


# --------------------------------------------------------------------------- J11 unmigrated


@pytest.fixture
def production_env(tmp_path, monkeypatch, empty_database_url):
    """Settings from CLINIC_LOG_* variables, as `flask` and WSGI servers build the app."""
    env = {
        "CLINIC_LOG_DATABASE_URL": empty_database_url,
        "CLINIC_LOG_INSTANCE_PATH": str(tmp_path / "instance"),
        "CLINIC_LOG_SECRET_KEY": "production-like-secret-" + "y" * 40,
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("CLINIC_LOG_TESTING", raising=False)
    monkeypatch.delenv("CLINIC_LOG_SCHEMA_CHECK", raising=False)
    return env


def _flask(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(  # noqa: S603 - our own interpreter and the flask CLI
        [sys.executable, "-m", "flask", "--app", "clinic_log", *args],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_app_refuses_an_unmigrated_database_but_flask_db_upgrade_builds_it(
    production_env, empty_database_url
):
    url = make_url(empty_database_url)
    with pytest.raises(ConfigError, match=r"has no schema.*flask db upgrade") as refused:
        create_app()
    assert url.render_as_string(hide_password=True) in str(refused.value)
    if url.get_backend_name() == "sqlite":
        assert not Path(url.database).exists()  # refusing did not leave an empty file behind

    upgraded = _flask(production_env, "db", "upgrade")
    assert upgraded.returncode == 0, upgraded.stderr

    counted: list[str] = []

    def record(_conn, _cursor, statement, *_args):
        if not statement.startswith(("BEGIN", "COMMIT", "ROLLBACK")):
            counted.append(statement)

    event.listen(Engine, "before_cursor_execute", record)
    try:
        app = create_app()  # now it starts, at the cost of one query
    finally:
        event.remove(Engine, "before_cursor_execute", record)
    assert counted == ["SELECT version_num FROM alembic_version"]
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(User)) == 0
        db.session.remove()
        db.engine.dispose()


@SQLITE_FILES
def test_the_app_refuses_a_database_behind_or_ahead_of_the_migrations(tmp_path):
    app = build_app(tmp_path)
    stamp_head(app)
    heads, known = migration_heads(app)
    assert create_app({**_settings(app), "SCHEMA_CHECK": True})  # at head: starts
    older = sorted(known - heads)[0]
    for version, message in ((older, "behind"), ("0123456789ab", "does not know")):
        with app.app_context():
            with db.engine.begin() as conn:
                conn.execute(text("UPDATE alembic_version SET version_num = :v"), {"v": version})
            db.engine.dispose()
        with pytest.raises(ConfigError, match=message):
            create_app({**_settings(app), "SCHEMA_CHECK": True})


@SQLITE_FILES
def test_an_empty_database_file_is_refused_too(tmp_path):
    (tmp_path / "empty.sqlite3").touch()
    with pytest.raises(ConfigError, match="has no schema"):
        build_app(tmp_path, "empty.sqlite3", create=False, TESTING=False, SCHEMA_CHECK=True)


def test_tests_and_code_passing_its_own_settings_are_not_checked(tmp_path):
    build_app(tmp_path, "never-migrated.sqlite3", create=False, TESTING=False)  # no error


def _settings(app) -> dict:
    keys = ("TESTING", "INSTANCE_PATH", "DATABASE_URL", "SECRET_KEY", "PASSWORD_HASH_METHOD")
    return {key: app.config[key] for key in keys}


@pytest.mark.parametrize(
    "argv, command",
    [
        (["/venv/bin/flask", "db", "upgrade"], "db"),
        (["/usr/lib/python3/flask/__main__.py", "--app", "clinic_log", "db", "upgrade"], "db"),
        (["flask", "-A", "clinic_log", "--debug", "-e", ".env", "db", "current"], "db"),
        (["flask", "--app=clinic_log", "run", "--port", "5000"], "run"),
        (["flask", "--app", "db", "run"], "run"),
        (["flask"], None),
    ],
)
def test_the_flask_command_name_is_read_as_flask_reads_it(argv, command):
    assert _flask_command_name(argv) == command
