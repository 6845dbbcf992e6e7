"""``flask backup PATH`` (security.md J07): a consistent, checked copy of the live SQLite
database while the app writes; a restored copy starts and shows the patients; on PostgreSQL it
says what to run instead and fails honestly."""

from __future__ import annotations

import os
import sqlite3
import stat
import threading
import time
import uuid
from contextlib import closing
from datetime import timedelta

import pytest
from click.testing import CliRunner
from flask.cli import cli as flask_cli
from sqlalchemy import select
from test_storage_faults import (
    COWS,
    PG_URL,
    build_app,
    count,
    db_path,
    default_scores,
    logged_in,
    page_text,
    seed,
    stamp_head,
)

from clinic_log import ConfigError, create_app
from clinic_log.assessments.services import record_assessment
from clinic_log.database import now_utc
from clinic_log.extensions import db
from clinic_log.models import Assessment, Patient, User
from clinic_log.scale_registry import get_scale
from clinic_log.storage import migration_heads

SQLITE_FILES = pytest.mark.skipif(
    bool(PG_URL), reason="SQLite only: `flask backup` copies SQLite database files"
)


def sqlite_rows(path, sql: str):
    with closing(sqlite3.connect(path)) as conn:
        return conn.execute(sql).fetchall()


def _write_until_stopped(app, ids, stop: threading.Event, acknowledged: list[int], errors: list):
    """Record assessments through the service until told to stop (a busy clinic)."""
    try:
        with app.app_context():
            user, patient = db.session.get(User, ids.user), db.session.get(Patient, ids.patient)
            scale = get_scale("cows")
            while not stop.is_set():
                saved = record_assessment(
                    user,
                    patient,
                    scale,
                    default_scores(),
                    observed_at=now_utc() - timedelta(hours=1),
                    notes="written during the backup",
                    submission_key=uuid.uuid4().hex,
                )
                acknowledged.append(saved.id)
            db.session.remove()
    except BaseException as exc:  # reported by the test
        errors.append(exc)


@SQLITE_FILES
def test_backup_while_writing_is_consistent_and_restores_into_a_working_app(tmp_path):
    app = build_app(tmp_path)
    stamp_head(app)
    ids = seed(app)
    stop, acknowledged, errors = threading.Event(), [], []
    writer = threading.Thread(
        target=_write_until_stopped, args=(app, ids, stop, acknowledged, errors)
    )
    writer.start()
    try:
        deadline = time.monotonic() + 5
        while len(acknowledged) < 5 and time.monotonic() < deadline:
            time.sleep(0.01)
        at_start = sqlite_rows(db_path(app), "SELECT count(*) FROM assessment")[0][0]
        destination = tmp_path / "backups" / "clinic_log-backup.sqlite3"
        destination.parent.mkdir()
        result = app.test_cli_runner().invoke(args=["backup", str(destination)])
        time.sleep(0.2)  # the writer carries on after the backup
    finally:
        stop.set()
        writer.join(timeout=10)
    assert errors == [] and not writer.is_alive()
    assert result.exit_code == 0, result.output
    assert f"Backup written to {destination}" in result.output
    assert "integrity_check: ok" in result.output
    assert "assessment" in result.output and "audit_event" in result.output

    assert sqlite_rows(destination, "PRAGMA integrity_check") == [("ok",)]
    in_copy = sqlite_rows(destination, "SELECT count(*) FROM assessment")[0][0]
    assert at_start <= in_copy <= count(app, Assessment)
    assert f"{in_copy:>8} rows" in result.output
    # One self-contained file (no -wal needed to read it), readable by its owner only.
    assert sqlite_rows(destination, "PRAGMA journal_mode") == [("delete",)]
    assert stat.S_IMODE(destination.stat().st_mode) == 0o600
    assert [p.name for p in destination.parent.iterdir()] == [destination.name]
    # Every entry in the copy is whole: all its items are there.
    partial = sqlite_rows(
        destination,
        "SELECT a.id FROM assessment a LEFT JOIN item_score s ON s.assessment_id = a.id "
        f"GROUP BY a.id HAVING count(s.id) != {len(COWS.items)}",
    )
    assert partial == []

    # Restore: a fresh app on the copy starts (schema check on) and shows the patient list.
    restored_path = tmp_path / "restored" / "clinic_log.sqlite3"
    restored_path.parent.mkdir()
    restored_path.write_bytes(destination.read_bytes())
    restored = build_app(
        tmp_path / "restored",
        "clinic_log.sqlite3",
        create=False,
        SCHEMA_CHECK=True,
    )
    browser = logged_in(restored)
    patients = browser.get("/patients/")
    assert patients.status_code == 200
    assert "N-001" in page_text(patients)
    with restored.app_context():
        assert len(db.session.scalars(select(Assessment.id)).all()) == in_copy
        db.session.remove()


@SQLITE_FILES
def test_backup_refuses_to_overwrite_unless_forced(tmp_path):
    app = build_app(tmp_path)
    seed(app)
    runner = app.test_cli_runner()
    destination = tmp_path / "backup.sqlite3"
    destination.write_text("an older backup")

    refused = runner.invoke(args=["backup", str(destination)])
    assert refused.exit_code != 0
    assert "already exists" in refused.output and "--force" in refused.output
    assert destination.read_text() == "an older backup"

    forced = runner.invoke(args=["backup", "--force", str(destination)])
    assert forced.exit_code == 0, forced.output
    assert sqlite_rows(destination, "SELECT identifier FROM patient") == [("N-001",)]
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".backup")) == []


@SQLITE_FILES
@pytest.mark.parametrize("target", ["live", "wal", "folder", "missing-folder"])
def test_backup_refuses_impossible_targets(tmp_path, target):
    app = build_app(tmp_path)
    seed(app)
    live = db_path(app)
    path = {
        "live": live,
        "wal": f"{live}-wal",
        "folder": tmp_path,
        "missing-folder": tmp_path / "nope" / "backup.sqlite3",
    }[target]
    args = ["backup", "--force", str(path)] if target != "folder" else ["backup", str(path)]
    result = app.test_cli_runner().invoke(args=args)
    assert result.exit_code != 0
    assert "No backup made" in result.output or "is a directory" in result.output
    assert sqlite_rows(live, "PRAGMA integrity_check") == [("ok",)]


def test_backup_on_postgresql_prints_pg_dump_instructions_and_fails(tmp_path):
    url = "postgresql+psycopg://clinic:s3cret-pw@db.example.org:5433/clinic_prod"
    app = build_app(tmp_path, create=False, DATABASE_URL=url)
    destination = tmp_path / "dump.pgc"
    result = app.test_cli_runner().invoke(args=["backup", str(destination)])
    assert result.exit_code == 1
    assert "Not done" in result.output
    assert (
        f"pg_dump --format=custom --file={destination} --host=db.example.org --port=5433 "
        "--username=clinic clinic_prod" in result.output
    )
    assert "pg_restore --list" in result.output
    assert "s3cret" not in result.output
    assert not destination.exists()
    assert not os.path.exists(tmp_path / "instance" / "clinic_log.sqlite3")


@SQLITE_FILES
def test_a_database_behind_the_migrations_can_still_be_backed_up(tmp_path, monkeypatch):
    """The app refuses to start on it, and says to back it up first: `flask backup` must run."""
    app = build_app(tmp_path)
    stamp_head(app)
    seed(app)
    heads, known = migration_heads(app)
    with closing(sqlite3.connect(db_path(app))) as conn, conn:
        conn.execute("UPDATE alembic_version SET version_num = ?", (sorted(known - heads)[0],))
    monkeypatch.setenv("CLINIC_LOG_DATABASE_URL", app.config["DATABASE_URL"])
    monkeypatch.setenv("CLINIC_LOG_INSTANCE_PATH", str(tmp_path / "instance"))
    monkeypatch.setenv("CLINIC_LOG_SECRET_KEY", "production-like-secret-" + "y" * 40)
    monkeypatch.delenv("CLINIC_LOG_TESTING", raising=False)
    monkeypatch.setenv("FLASK_RUN_FROM_CLI", "true")  # the flask group sets it; undone after
    with pytest.raises(ConfigError, match=r"behind.*flask backup"):
        create_app()

    destination = tmp_path / "before-upgrade.sqlite3"
    # The real `flask` command group, loading the app itself, as `flask backup PATH` does.
    monkeypatch.setattr("sys.argv", ["flask", "--app", "clinic_log", "backup", str(destination)])
    result = CliRunner().invoke(flask_cli, ["--app", "clinic_log", "backup", str(destination)])
    assert result.exit_code == 0, result.output
    assert sqlite_rows(destination, "SELECT identifier FROM patient") == [("N-001",)]

    monkeypatch.setattr("sys.argv", ["flask", "--app", "clinic_log", "routes"])
    refused = CliRunner().invoke(flask_cli, ["--app", "clinic_log", "routes"])
    assert refused.exit_code != 0 and "behind" in refused.output
