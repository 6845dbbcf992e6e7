"""Read access to patient data leaves an audit line: who saw which patient, what and when
(catalogue I12, HIPAA §164.312(b)); repeats within the window are covered by the first line."""

from __future__ import annotations

import json
import re
import sqlite3

import pytest
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from clinic_log import audit
from clinic_log.auth.reads import RecentViews
from clinic_log.extensions import db
from clinic_log.models import AuditEvent


@pytest.fixture
def pid(world, add_assessment):
    add_assessment(world["patient_n"], world["clin_n"], "cows")
    add_assessment(world["patient_n"], world["clin_n"], "symptom_nrs")
    patient_id = world["patient_n"].id
    db.session.commit()
    return patient_id


@pytest.fixture
def entry_id(world, add_assessment):
    entry = add_assessment(world["patient_n"], world["clin_n"], "gad7")
    db.session.commit()
    return entry.id


@pytest.fixture
def clinician(make_browser, world):
    browser = make_browser()
    browser.login("clin.north")
    return browser


def views_since(app, start: int) -> list[AuditEvent]:
    with app.app_context():
        return list(
            db.session.scalars(
                select(AuditEvent)
                .where(AuditEvent.id > start, AuditEvent.action.like("view_%"))
                .order_by(AuditEvent.id)
            )
        )


def last_id(app) -> int:
    with app.app_context():
        return db.session.scalar(select(AuditEvent.id).order_by(AuditEvent.id.desc())) or 0


PAGES = {
    "patient page": ("view_patient", "/patients/{pid}"),
    "tracker": ("view_patient", "/patients/{pid}/tracker"),
    "flowsheet": ("view_patient", "/patients/{pid}/flowsheet/cows"),
    "trend chart": ("view_chart", "/patients/{pid}/charts/cows.png"),
    "trend chart svg": ("view_chart", "/patients/{pid}/charts/cows.svg"),
    "heatmap": ("view_chart", "/patients/{pid}/charts/cows/items.png"),
    "domains": ("view_chart", "/patients/{pid}/charts/domains.png"),
    "entry": ("view_assessment", "/assessments/{entry}"),
    "entry history": ("view_assessment", "/assessments/{entry}/history"),
}


@pytest.mark.parametrize("name", PAGES)
def test_each_read_of_patient_data_writes_one_view_line(app, clinician, world, pid, entry_id, name):
    action, url = PAGES[name]
    start = last_id(app)
    response = clinician.get(url.format(pid=pid, entry=entry_id))
    assert response.status_code == 200
    [event] = views_since(app, start)
    assert (event.action, event.username, event.user_id) == (
        action,
        "clin.north",
        world["clin_n"].id,
    )
    assert (event.entity, event.entity_id, event.patient_id) == ("patient", pid, pid)
    assert event.site_id == world["north"].id
    details = json.loads(event.details)
    assert details["path"] == url.format(pid=pid, entry=entry_id)
    assert details["what"]


def test_the_view_lines_keep_the_audit_chain_intact(app, clinician, pid, entry_id):
    for _name, (_action, url) in PAGES.items():
        clinician.get(url.format(pid=pid, entry=entry_id))
    with app.app_context():
        checked, problem = audit.verify_chain()
    assert problem is None and checked > len(PAGES)


def test_repeats_within_the_window_are_covered_by_the_first_line(app, clinician, pid):
    start = last_id(app)
    chart = f"/patients/{pid}/charts/cows.png"
    first = clinician.get(chart)
    clinician.get(chart)
    clinician.get(chart, headers={"If-None-Match": first.headers["ETag"]})
    clinician.get(f"/patients/{pid}")
    clinician.get(f"/patients/{pid}")
    assert [e.action for e in views_since(app, start)] == ["view_chart", "view_patient"]
    # Another chart of the same patient is another thing seen.
    clinician.get(f"/patients/{pid}/charts/cows.png?start=2020-01-01")
    assert len(views_since(app, start)) == 3


def test_a_304_is_a_view_too(app, make_browser, world, pid):
    first = make_browser()
    first.login("clin.north")
    etag = first.get(f"/patients/{pid}/charts/cows.png").headers["ETag"]
    second = make_browser()
    second.login("sup.north")
    start = last_id(app)
    response = second.get(f"/patients/{pid}/charts/cows.png", headers={"If-None-Match": etag})
    assert response.status_code == 304
    [event] = views_since(app, start)
    assert (event.action, event.username) == ("view_chart", "sup.north")


def test_a_new_login_and_an_elapsed_window_write_again(app, clinician, pid):
    url = f"/patients/{pid}"
    start = last_id(app)
    clinician.get(url)
    clinician.logout()
    clinician.login("clin.north")
    clinician.get(url)
    assert len(views_since(app, start)) == 2
    # Push every remembered view back past the window.
    views = app.extensions["clinic_log.recent_views"]
    for key in list(views._written):
        views._written[key] -= views.window + 1
    clinician.get(url)
    assert len(views_since(app, start)) == 3


def test_a_window_of_zero_writes_every_request(make_site, make_user, pid, tmp_path):
    from conftest import Browser

    from clinic_log import create_app

    # The same database, served by an app configured to write a line for every read.
    every = create_app(
        {
            "TESTING": True,
            "DATABASE_URL": str(db.engine.url),
            "INSTANCE_PATH": str(tmp_path / "every"),
            "SECRET_KEY": "t" * 40,
            "PASSWORD_HASH_METHOD": "scrypt:1024:8:1",
            "VIEW_AUDIT_WINDOW_MINUTES": 0,
        }
    )
    browser = Browser(every.test_client())
    browser.login("clin.north")
    start = last_id(every)
    try:
        for _ in range(3):
            assert browser.get(f"/patients/{pid}").status_code == 200
        assert len(views_since(every, start)) == 3
    finally:
        with every.app_context():
            db.engine.dispose()  # its own pool: no connection left for the garbage collector


def test_a_refused_read_writes_a_refusal_and_no_view(app, clinician, world):
    other = world["patient_s"].id
    db.session.commit()
    start = last_id(app)
    for url in (f"/patients/{other}", f"/patients/{other}/charts/cows.png"):
        assert clinician.get(url).status_code == 404
    with app.app_context():
        actions = db.session.scalars(
            select(AuditEvent.action).where(AuditEvent.id > start).order_by(AuditEvent.id)
        ).all()
    assert actions == ["access_refused", "access_refused"]


def test_no_data_leaves_when_the_view_cannot_be_audited(app, clinician, pid, monkeypatch):
    def locked(*_args, **_kwargs):
        raise OperationalError(
            "INSERT INTO audit_event", {}, sqlite3.OperationalError("database is locked")
        )

    monkeypatch.setattr(audit, "record", locked)
    for url in (f"/patients/{pid}", f"/patients/{pid}/charts/cows.png"):
        response = clinician.get(url)
        assert response.status_code == 503, url
        assert b"N-001" not in response.data and not response.data.startswith(b"\x89PNG")


def test_recent_views_forget_the_oldest_beyond_their_capacity():
    views = RecentViews(window_seconds=60, capacity=2)
    for n in range(3):
        views.written(("view", n), now=100.0)
    assert views.due(("view", 0), now=101.0)
    assert not views.due(("view", 2), now=101.0)
    assert views.due(("view", 2), now=160.0)


# --- every page that shows patient data, refusals included (R02) ----------------------------


def _entry_and_episode(app, world, add_assessment):
    entry = add_assessment(world["patient_n"], world["clin_n"], "gad7", notes="R02 note")
    db.session.commit()
    with app.app_context():
        from clinic_log.models import Patient

        episode_id = db.session.get(Patient, world["patient_n"].id).open_episode.id
    return entry.id, episode_id


# (who, method, address, form): each shows the patient and must write a view line.
REFUSED_AND_FORM_PAGES = {
    "amend form": ("clin.north", "GET", "/assessments/{entry}/amend", None),
    "amend refused (422)": ("clin.north", "POST", "/assessments/{entry}/amend", {"reason": ""}),
    "amend after a bad token (422)": (
        "clin.north",
        "POST",
        "/assessments/{entry}/amend",
        {"csrf_token": "expired", "reason": "typo"},
    ),
    "void refused (422)": ("clin.north", "POST", "/assessments/{entry}/void", {"version": "1"}),
    "sign refused (422)": (
        "sup.north",
        "POST",
        "/assessments/{entry}/sign",
        {"version": "1", "password": "not my password at all"},
    ),
    "end episode refused (422)": (
        "clin.north",
        "POST",
        "/patients/{pid}/episodes/{episode}/end",
        {"ended_at": "2001-01-01T10:00"},
    ),
    "trend sign-off refused (422)": (
        "sup.north",
        "POST",
        "/patients/{pid}/tracker/sign",
        {"shown": "", "password": "not my password at all"},
    ),
    "new entry form": ("clin.north", "GET", "/patients/{pid}/assessments/new/cows", None),
    "new entry refused (422)": (
        "clin.north",
        "POST",
        "/patients/{pid}/assessments/new/cows",
        {"observed_at": ""},
    ),
    "new episode refused (422)": (
        "clin.north",
        "POST",
        "/patients/{pid}/episodes/new",
        {"started_at": "2026-01-01T10:00", "substance_context": "opioid"},
    ),
}


@pytest.mark.parametrize("name", REFUSED_AND_FORM_PAGES)
def test_form_and_refusal_pages_write_their_view_line(
    app, make_browser, world, add_assessment, name
):
    entry, episode = _entry_and_episode(app, world, add_assessment)
    pid = world["patient_n"].id
    username, method, url, form = REFUSED_AND_FORM_PAGES[name]
    url = url.format(entry=entry, pid=pid, episode=episode)
    browser = make_browser()
    browser.login(username)
    token = browser.csrf_token("/")  # from a page that shows no patient
    start = last_id(app)
    if method == "GET":
        response = browser.get(url)
    else:
        response = browser.client.post(url, data={"csrf_token": token, **form})
    assert response.status_code in (200, 422), response.status_code
    assert "N-001" in response.get_data(as_text=True)
    assert_view_line(app, start, pid, world, username)


def assert_view_line(app, start, pid, world, username):
    events = views_since(app, start)
    assert events, "no view line"
    event = events[-1]
    assert (event.username, event.patient_id, event.entity_id) == (username, pid, pid)
    assert event.site_id == world["north"].id
    assert event.action.startswith("view_")


def test_the_conflict_page_writes_its_view_line(app, make_browser, world, add_assessment):
    entry, _episode = _entry_and_episode(app, world, add_assessment)
    pid = world["patient_n"].id
    first, second = make_browser(), make_browser()
    first.login("clin.north")
    second.login("sup.north")
    page = first.get(f"/assessments/{entry}/amend").get_data(as_text=True)
    fields = dict(re.findall(r'name="([a-z_]+)"[^>]*value="([^"]*)"', page))
    void = second.post(
        f"/assessments/{entry}/void",
        {"version": "1", "reason_code": "other", "reason": "entered twice"},
        token_from="/",
    )
    assert void.status_code == 302, void.get_data(as_text=True)[:500]
    start = last_id(app)
    form = {**fields, "reason": "typo", "notes": "changed"}
    for item in ("nervous", "cannot_stop_worrying", "worry_too_much", "trouble_relaxing",
                 "restless", "irritable", "afraid"):  # fmt: skip
        form[item] = "1"
    response = first.client.post(f"/assessments/{entry}/amend", data=form)
    assert response.status_code == 409
    assert_view_line(app, start, pid, world, "clin.north")
    # Opening the amend form of an entry that is no longer current is the same page.
    views = app.extensions["clinic_log.recent_views"]
    views._written.clear()
    start = last_id(app)
    assert first.get(f"/assessments/{entry}/amend").status_code == 409
    assert_view_line(app, start, pid, world, "clin.north")
