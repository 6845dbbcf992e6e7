"""Two people doing the same thing at the same moment: the rules that hold one at a time hold
in parallel too. Each test sends real parallel requests (one thread and one test client per
person, released together by a barrier); on PostgreSQL the transactions truly overlap, on
SQLite the write lock takes them in turn, and both must give the same answer.

Each race runs a few rounds, because one round may happen to run its requests in turn.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from concurrency import race
from conftest import PASSWORD, Browser
from flask_migrate import upgrade
from pages import input_val
from pages import readable_text as text_of
from sqlalchemy import func, inspect, select, text

from clinic_log import create_app
from clinic_log.database import now_utc
from clinic_log.extensions import db
from clinic_log.models import Assessment, Episode, Signature
from clinic_log.patients.services import create_patient, end_episode
from clinic_log.timeutil import input_value

ROUNDS = 4


def statuses(results) -> list:
    return sorted(
        r.status_code if hasattr(r, "status_code") else f"{type(r).__name__}: {r}" for r in results
    )


def logged_in(app, username) -> Browser:
    browser = Browser(app.test_client())
    browser.login(username)
    return browser


@pytest.fixture
def second_supervisor(world, make_user):
    make_user("sup.two", "supervisor", ["NORTH"])
    db.session.commit()


# --------------------------------------------------------------------------- R11 episodes


def test_two_simultaneous_new_episodes_open_one(app, world):
    clinician, north = world["clin_n"], world["north"]
    first, second = logged_in(app, "clin.north"), logged_in(app, "clin.north")
    for round_ in range(ROUNDS):
        start = now_utc() - timedelta(days=2)
        patient = create_patient(clinician, north, f"R-{round_}", None, start, "opioid", "")
        end_episode(clinician, patient.episodes[0], now_utc() - timedelta(hours=3))
        patient_id = patient.id
        db.session.commit()
        url = f"/patients/{patient_id}/episodes/new"
        posts = []
        for browser in (first, second):
            data = {
                "csrf_token": browser.csrf_token(url),
                "started_at": input_value(now_utc() - timedelta(hours=1), "Europe/London"),
                "substance_context": "kratom",
                "episode_note": f"round {round_}",
            }
            posts.append(lambda b=browser, d=data, u=url: b.client.post(u, data=d))

        results = race(*posts)

        assert statuses(results) == [302, 422], round_
        (refused,) = [r for r in results if r.status_code == 422]
        assert "End the open episode before opening a new one." in text_of(refused)
        # What was typed is shown again.
        assert f"round {round_}" in refused.get_data(as_text=True)
        db.session.commit()
        open_episodes = db.session.scalar(
            select(func.count())
            .select_from(Episode)
            .where(Episode.patient_id == patient_id, Episode.ended_at.is_(None))
        )
        assert open_episodes == 1, round_


# --------------------------------------------------------------------------- R14 sign-off


def test_two_supervisors_signing_one_entry_at_once_one_signs_the_other_is_told_who(
    app, world, add_assessment, second_supervisor
):
    supervisors = {"sup.north": "Sup.North", "sup.two": "Sup.Two"}
    browsers = [logged_in(app, username) for username in supervisors]
    for round_ in range(ROUNDS):
        entry_id = add_assessment(world["patient_n"], world["clin_n"], "gad7").id
        db.session.commit()
        url = f"/assessments/{entry_id}"
        posts = []
        for browser in browsers:
            page = browser.get(url)
            data = {
                "csrf_token": input_val(page, "csrf_token"),
                "password": PASSWORD,
                "version": input_val(page, "version"),
            }
            posts.append(lambda b=browser, d=data, u=f"{url}/sign": b.client.post(u, data=d))

        results = race(*posts)

        assert statuses(results) == [302, 422], round_
        db.session.commit()
        (signature,) = db.session.scalars(
            select(Signature).where(Signature.assessment_id == entry_id)
        ).all()
        (refused,) = [r for r in results if r.status_code == 422]
        assert f"already been signed off by {signature.signer_name}" in text_of(refused)
        assert db.session.get(Assessment, entry_id).reviewed_by_id == signature.signer_id


def test_two_supervisors_signing_one_trend_at_once_sign_each_entry_once(
    app, world, add_assessment, second_supervisor
):
    browsers = [logged_in(app, username) for username in ("sup.north", "sup.two")]
    patient_id = world["patient_n"].id
    url = f"/patients/{patient_id}/tracker"
    for round_ in range(ROUNDS):
        entries = [add_assessment(world["patient_n"], world["clin_n"], "gad7").id for _ in range(3)]
        db.session.commit()
        posts = []
        for browser in browsers:
            page = browser.get(url)
            data = {
                "csrf_token": input_val(page, "csrf_token"),
                "password": PASSWORD,
                "shown": input_val(page, "shown"),
            }
            posts.append(lambda b=browser, d=data, u=f"{url}/sign": b.client.post(u, data=d))

        results = race(*posts)

        # One signs them all; the other finds each signed and names it, signing nothing.
        assert statuses(results) == [200, 302], round_
        (second,) = [r for r in results if r.status_code == 200]
        assert text_of(second).count("already signed off by") == 3, round_
        db.session.commit()
        signed = db.session.scalars(
            select(Signature.assessment_id).where(Signature.assessment_id.in_(entries))
        ).all()
        assert sorted(signed) == sorted(entries), round_


BEFORE_ONE_OPEN = "d42f8a1c6e37"
ONE_OPEN = "be95cf866f89"


def test_the_migration_stops_and_names_patients_with_two_open_episodes(
    tmp_path, empty_database_url, capfd
):
    """Existing data that breaks the new rule is never repaired silently: which episode is
    right is a clinician's decision."""
    other = create_app({"DATABASE_URL": empty_database_url, "INSTANCE_PATH": str(tmp_path / "i")})
    with other.app_context():
        upgrade(revision=BEFORE_ONE_OPEN)
        with db.engine.begin() as conn:
            add_rows(conn)
        with pytest.raises(SystemExit):
            upgrade(revision=ONE_OPEN)
        # What `flask db upgrade` prints ("Error: ..."), on one line.
        message = capfd.readouterr().err
        assert "NORTH N-001 (2 open)" in message
        assert "N-002" not in message
        assert "Nothing was changed" in message
        with db.engine.connect() as conn:
            assert conn.scalar(text("SELECT version_num FROM alembic_version")) == BEFORE_ONE_OPEN
        assert "uq_episode_one_open_per_patient" not in index_names(db.engine, "episode")

        with db.engine.begin() as conn:
            conn.execute(text("UPDATE episode SET ended_at = :t WHERE id = 2"), {"t": now_utc()})
        upgrade(revision=ONE_OPEN)
        assert "uq_episode_one_open_per_patient" in index_names(db.engine, "episode")
        db.engine.dispose()


def index_names(engine, table) -> set[str]:
    return {index["name"] for index in inspect(engine).get_indexes(table)}


def add_rows(conn) -> None:
    """A site, a user and two patients, written as the schema before this round stores them:
    N-001 with two open episodes, N-002 with one."""
    now = now_utc() - timedelta(days=1)
    conn.execute(
        text(
            "INSERT INTO site (id, code, name, timezone, created_at)"
            " VALUES (1, 'NORTH', 'North', 'Europe/London', :now)"
        ),
        {"now": now},
    )
    conn.execute(
        text(
            'INSERT INTO "user" (id, username, display_name, password_hash, role, active,'
            " session_version, must_change_password, failed_login_count, created_at)"
            " VALUES (1, 'clin', 'Clin', 'x', 'clinician', :yes, 1, :no, 0, :now)"
        ),
        {"now": now, "yes": True, "no": False},
    )
    for patient_id, identifier in ((1, "N-001"), (2, "N-002")):
        conn.execute(
            text(
                "INSERT INTO patient (id, site_id, identifier, identifier_key, created_by_id,"
                " created_at) VALUES (:id, 1, :identifier, :key, 1, :now)"
            ),
            {"id": patient_id, "identifier": identifier, "key": identifier.casefold(), "now": now},
        )
    for episode_id, patient_id in ((1, 1), (2, 1), (3, 2)):
        conn.execute(
            text(
                "INSERT INTO episode (id, patient_id, started_at, substance_context, note,"
                " created_by_id, created_at) VALUES (:id, :patient, :now, 'opioid', '', 1, :now)"
            ),
            {"id": episode_id, "patient": patient_id, "now": now},
        )
