"""Two people doing the same thing at the same moment: the rules that hold one at a time hold
in parallel too. Each test sends real parallel requests (one thread and one test client per
person, released together by a barrier); on PostgreSQL the transactions truly overlap, on
SQLite the write lock takes them in turn, and both must give the same answer.

Each race runs a few rounds, because one round may happen to run its requests in turn.
"""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from conftest import PASSWORD, Browser
from pages import input_val
from pages import readable_text as text_of
from sqlalchemy import func, select

from clinic_log.database import now_utc
from clinic_log.extensions import db
from clinic_log.models import Assessment, Episode, Signature
from clinic_log.patients.services import create_patient, end_episode
from clinic_log.timeutil import input_value

ROUNDS = 4


def race(*requests):
    """Run each callable in its own thread, all released at once; return what each returned
    (or the exception it raised: the app propagates errors in tests, where a server answers
    500)."""
    barrier = threading.Barrier(len(requests))
    results: list = [None] * len(requests)

    def run(index, request):
        try:
            barrier.wait(timeout=30)
            results[index] = request()
        except BaseException as exc:  # reported to the test as the result
            results[index] = exc

    threads = [threading.Thread(target=run, args=pair) for pair in enumerate(requests)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)
    return results


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
                "up_to": input_val(page, "up_to"),
            }
            posts.append(lambda b=browser, d=data, u=f"{url}/sign": b.client.post(u, data=d))

        results = race(*posts)

        assert statuses(results) == [302, 302], round_
        db.session.commit()
        signed = db.session.scalars(
            select(Signature.assessment_id).where(Signature.assessment_id.in_(entries))
        ).all()
        assert sorted(signed) == sorted(entries), round_
