"""The audit trail: one event per change, written with the change; the hash chain and what
breaks it; the append-only table; and the supervisors' audit view.

The CLI's tamper tests (raw UPDATE/DELETE refused, ``audit verify`` after an altered or removed
row) are in tests/test_cli.py and not repeated here.
"""

from __future__ import annotations

import html
import json
import re
from datetime import timedelta

import pytest
from conftest import GAD7, PASSWORD
from pages import input_val
from pages import readable_text as text_of
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError

from clinic_log import audit
from clinic_log.assessments import services as assessments
from clinic_log.auditlog.services import AuditFilter, visible_events
from clinic_log.auth.services import create_site, create_user
from clinic_log.database import begin_write, now_utc
from clinic_log.extensions import db
from clinic_log.models import (
    Assessment,
    AuditEvent,
    Episode,
    ItemScore,
    Patient,
    Signature,
    User,
)
from clinic_log.patients.services import create_patient, end_episode
from clinic_log.review import services as review
from clinic_log.timeutil import to_local

LONDON = "Europe/London"


# --------------------------------------------------------------------------- helpers


def gad(default: int = 1, **scores: int) -> dict[str, int]:
    return {key: scores.get(key, default) for key in GAD7}


def an_hour_ago():
    return (now_utc() - timedelta(hours=1)).replace(second=0, microsecond=0)


def fresh() -> None:
    """End the test session's transaction: later reads see what the requests committed."""
    db.session.commit()


def count(model) -> int:
    return db.session.scalar(select(func.count()).select_from(model))


def last_id() -> int:
    return db.session.scalar(select(func.coalesce(func.max(AuditEvent.id), 0)))


def since(event_id: int) -> list[AuditEvent]:
    """The events written after ``event_id``, oldest first."""
    fresh()
    return list(
        db.session.scalars(
            select(AuditEvent).where(AuditEvent.id > event_id).order_by(AuditEvent.id)
        )
    )


def data_counts() -> tuple[int, ...]:
    return tuple(count(m) for m in (Patient, Episode, Assessment, ItemScore, Signature, User))


def assert_written_now(event: AuditEvent, before) -> None:
    """Server time, in UTC, between ``before`` and now."""
    assert event.at.utcoffset() == timedelta(0)
    assert before <= event.at <= now_utc()


def send(browser, url: str, data: dict):
    """POST with the CSRF token of the user's home page (fetched once per browser)."""
    if not getattr(browser, "token", None):
        browser.token = browser.csrf_token("/")
    return browser.post(url, {"csrf_token": browser.token, **data})


def audit_rows(page) -> list[tuple[str, str, str]]:
    """(who, action, what) of each row of the audit table, as shown."""
    body = re.search(
        r'<table class="data audit">.*?<tbody>(.*?)</tbody>', page.get_data(as_text=True), re.DOTALL
    ).group(1)
    rows = []
    for row in re.findall(r"<tr>(.*?)</tr>", body, re.DOTALL):
        cells = [
            " ".join(html.unescape(re.sub(r"<[^>]+>", " ", cell)).split())
            for cell in re.findall(r"<td[^>]*>(.*?)</td>", row, re.DOTALL)
        ]
        if len(cells) == 6:
            rows.append((cells[1], cells[2], cells[3]))
    return rows


def shown_as(event: AuditEvent) -> tuple[str, str]:
    return (event.username or "—", event.action.replace("_", " "))


def _bypass_triggers(conn) -> None:
    """What only a database owner can do: switch the append-only triggers off."""
    if conn.dialect.name == "sqlite":
        conn.execute(text("DROP TRIGGER audit_event_no_update"))
        conn.execute(text("DROP TRIGGER audit_event_no_delete"))
    else:
        conn.execute(text("ALTER TABLE audit_event DISABLE TRIGGER USER"))


def _restore_triggers(conn) -> None:
    if conn.dialect.name == "postgresql":
        conn.execute(text("ALTER TABLE audit_event ENABLE TRIGGER USER"))


# --------------------------------------------------------------------------- one event per change


def test_creating_a_site_and_a_user_writes_one_event_each(app_ctx):
    before_time, start = now_utc(), last_id()
    site = create_site("EAST", "East Clinic", "Europe/Berlin")
    (event,) = since(start)
    assert (event.action, event.entity, event.entity_id) == ("site_create", "site", site.id)
    assert event.site_id == site.id and event.user_id is None
    assert json.loads(event.details) == {
        "code": "EAST",
        "name": "East Clinic",
        "timezone": "Europe/Berlin",
    }
    assert_written_now(event, before_time)

    admin = create_user("ops", PASSWORD, "admin", [])
    start = last_id()
    user = create_user("j.smith", PASSWORD, "clinician", ["EAST"], actor=admin)
    (event,) = since(start)
    assert (event.action, event.entity, event.entity_id) == ("user_create", "user", user.id)
    assert (event.user_id, event.username) == (admin.id, "ops")
    assert json.loads(event.details) == {
        "username": "j.smith",
        "role": "clinician",
        "sites": ["EAST"],
    }
    assert PASSWORD not in event.details and "scrypt" not in event.details
    assert_written_now(event, before_time)


def test_a_new_patient_writes_patient_create_and_episode_open(world):
    clin, north = world["clin_n"], world["north"]
    before_time, start = now_utc(), last_id()
    patient = create_patient(clin, north, "N-777", "Label", an_hour_ago(), "kratom", "note")
    episode = patient.open_episode
    created, opened = since(start)
    assert (created.action, created.entity, created.entity_id) == (
        "patient_create",
        "patient",
        patient.id,
    )
    assert json.loads(created.details) == {"identifier": "N-777", "display_label": "Label"}
    assert (opened.action, opened.entity, opened.entity_id) == (
        "episode_open",
        "episode",
        episode.id,
    )
    assert json.loads(opened.details)["substance_context"] == "kratom"
    for event in (created, opened):
        assert (event.user_id, event.username) == (clin.id, "clin.north")
        assert (event.site_id, event.patient_id) == (north.id, patient.id)
        assert_written_now(event, before_time)

    start = last_id()
    ended_at = now_utc() - timedelta(minutes=5)
    end_episode(clin, episode, ended_at)
    (ended,) = since(start)
    assert (ended.action, ended.entity, ended.entity_id) == ("episode_end", "episode", episode.id)
    assert (ended.user_id, ended.site_id, ended.patient_id) == (clin.id, north.id, patient.id)
    assert json.loads(ended.details) == {"ended_at": ended_at.isoformat()}


def test_each_change_to_an_assessment_writes_one_event(world, add_assessment):
    clin, sup, patient = world["clin_n"], world["sup_n"], world["patient_n"]
    site_id, patient_id = world["north"].id, patient.id
    before_time, start = now_utc(), last_id()
    first = add_assessment(patient, clin, "gad7", gad(1), observed_at=an_hour_ago())
    (created,) = since(start)
    assert (created.action, created.entity_id, created.username) == (
        "assessment_create",
        first.id,
        "clin.north",
    )
    details = json.loads(created.details)
    assert (details["scale"], details["total"], details["band"]) == ("gad7", 7, "Mild")
    assert details["items"] == gad(1)

    start = last_id()
    answers = assessments.Answers(gad(1, nervous=3), first.observed_at, "shaking")
    second = assessments.amend_assessment(clin, first, 1, answers, "Item 1 misread")
    (amended,) = since(start)
    assert (amended.action, amended.entity, amended.entity_id) == (
        "assessment_amend",
        "assessment",
        second.id,
    )
    assert amended.reason == "Item 1 misread"
    details = json.loads(amended.details)
    assert details["replaces"] == first.id
    assert (details["before"]["total"], details["after"]["total"]) == (7, 9)
    assert (details["before"]["items"]["nervous"], details["after"]["items"]["nervous"]) == (1, 3)
    assert (details["before"]["notes"], details["after"]["notes"]) == ("", "shaking")

    start = last_id()
    signature = review.sign_assessment(sup, second, PASSWORD, second.version)
    (reviewed,) = since(start)
    assert (reviewed.action, reviewed.entity_id, reviewed.username) == (
        "assessment_review",
        second.id,
        "sup.north",
    )
    assert json.loads(reviewed.details) == {
        "signature": signature.id,
        "meaning": "reviewed",
        "hash": signature.content_hash,
    }

    start = last_id()
    second = db.session.get(Assessment, second.id)
    assessments.void_assessment(sup, second, second.version, "wrong_patient", "Meant N-002")
    (voided,) = since(start)
    assert (voided.action, voided.entity_id, voided.username) == (
        "assessment_void",
        second.id,
        "sup.north",
    )
    assert voided.reason == "Recorded for the wrong patient: Meant N-002"
    assert json.loads(voided.details) == {
        "reason_code": "wrong_patient",
        "signatures_invalidated": [signature.id],
    }
    for event in (created, amended, reviewed, voided):
        assert (event.entity, event.site_id, event.patient_id) == (
            "assessment",
            site_id,
            patient_id,
        )
        assert_written_now(event, before_time)


def test_logins_failures_and_logouts_write_one_event_each(world, make_browser):
    clin_id = world["clin_n"].id
    fresh()
    browser = make_browser()
    start = last_id()
    failed = browser.post("/login", {"username": "Clin.North", "password": "wrong " * 3})
    assert failed.status_code == 200 and "Unknown username or wrong password." in text_of(failed)
    unknown = browser.post("/login", {"username": "nobody.here", "password": PASSWORD})
    assert unknown.status_code == 200
    bad, nobody = since(start)
    assert (bad.action, bad.user_id, bad.username, bad.entity_id) == (
        "login_failure",
        None,
        "Clin.North",
        clin_id,
    )
    assert (nobody.action, nobody.username, nobody.entity_id) == (
        "login_failure",
        "nobody.here",
        None,
    )
    assert "wrong" not in bad.details and PASSWORD not in nobody.details

    start = last_id()
    browser.login("clin.north")
    (success,) = since(start)
    assert (success.action, success.user_id, success.username) == (
        "login_success",
        clin_id,
        "clin.north",
    )
    assert (success.entity, success.entity_id, success.site_id) == ("user", clin_id, None)
    assert success.ip == "127.0.0.1"

    start = last_id()
    assert browser.logout().status_code == 302
    (logout,) = since(start)
    assert (logout.action, logout.user_id, logout.entity_id) == ("logout", clin_id, clin_id)


def test_a_refused_access_writes_one_access_refused_event_and_nothing_else(world, login):
    north_patient = world["patient_n"].id
    clin, south = login("clin.north"), login("clin.south")
    fresh()
    start, before = last_id(), data_counts()
    assert clin.get("/review/").status_code == 403
    assert south.get(f"/patients/{north_patient}").status_code == 404
    refused_role, refused_site = since(start)
    assert (refused_role.action, refused_role.username, refused_role.entity) == (
        "access_refused",
        "clin.north",
        None,
    )
    assert json.loads(refused_role.details) == {"path": "/review/", "method": "GET", "status": 403}
    assert (refused_site.action, refused_site.username) == ("access_refused", "clin.south")
    assert (refused_site.entity, refused_site.entity_id) == ("patient", north_patient)
    assert json.loads(refused_site.details)["status"] == 404
    assert data_counts() == before


@pytest.mark.parametrize("change", ["record", "amend", "void", "sign", "patient", "end_episode"])
def test_a_change_and_its_event_are_one_transaction(world, add_assessment, monkeypatch, change):
    """If the audit event cannot be written, the change is not written either."""
    clin, sup, patient = world["clin_n"], world["sup_n"], world["patient_n"]
    existing = add_assessment(patient, clin, "gad7", gad(1), observed_at=an_hour_ago())
    existing_id, episode_id = existing.id, patient.open_episode.id
    before, start = data_counts(), last_id()

    class AuditDown(RuntimeError):
        pass

    def broken(*_args, **_kwargs):
        raise AuditDown

    operations = {
        "record": lambda: add_assessment(patient, clin, "gad7", gad(2)),
        "amend": lambda: assessments.amend_assessment(
            clin, existing, 1, assessments.Answers(gad(2), existing.observed_at), "fix"
        ),
        "void": lambda: assessments.void_assessment(clin, existing, 1, "duplicate", ""),
        "sign": lambda: review.sign_assessment(sup, existing, PASSWORD, 1),
        "patient": lambda: create_patient(
            clin, world["north"], "N-NEW", None, an_hour_ago(), "opioid", ""
        ),
        "end_episode": lambda: end_episode(clin, patient.open_episode, now_utc()),
    }
    monkeypatch.setattr(audit, "record", broken)
    with pytest.raises(AuditDown):
        operations[change]()
    db.session.rollback()
    monkeypatch.undo()
    assert data_counts() == before
    assert since(start) == []
    kept = db.session.get(Assessment, existing_id)
    assert (kept.status, kept.version, kept.reviewed_at) == ("active", 1, None)
    assert db.session.get(Episode, episode_id).ended_at is None


def test_refused_or_invalid_actions_write_no_data(world, add_assessment, make_user, login):
    make_user("clin.north2", "clinician", ["NORTH"])
    patient_id = world["patient_n"].id
    entry_id = add_assessment(
        world["patient_n"], world["clin_n"], "gad7", gad(1), observed_at=an_hour_ago()
    ).id
    clin, colleague, sup = login("clin.north"), login("clin.north2"), login("sup.north")
    fresh()
    before, start = data_counts(), last_id()
    form = clin.get(f"/patients/{patient_id}/assessments/new/gad7")
    incomplete = {
        "submission_key": input_val(form, "submission_key"),
        "observed_at": input_val(form, "observed_at"),
        "nervous": "1",
    }
    new_url = f"/patients/{patient_id}/assessments/new/gad7"
    assert send(clin, new_url, incomplete).status_code == 422
    amend_form = clin.get(f"/assessments/{entry_id}/amend")
    amend_data = {
        "submission_key": input_val(amend_form, "submission_key"),
        "observed_at": input_val(amend_form, "observed_at"),
        "version": "1",
        **{key: "2" for key in GAD7},
        "reason": "",
    }
    amend_url = f"/assessments/{entry_id}/amend"
    assert send(clin, amend_url, amend_data).status_code == 422
    assert send(clin, f"/assessments/{entry_id}/void", {"version": "1"}).status_code == 422
    # A refused form that shows the patient again writes its read line, and nothing else.
    reads = {"view_assessment", "view_patient"}
    assert {e.action for e in since(start)} == reads

    def not_reads():
        return [e.action for e in since(start) if e.action not in reads]

    assert send(colleague, amend_url, {**amend_data, "reason": "mine"}).status_code == 403
    assert not_reads() == ["access_refused"]
    sign_data = {"password": "not it at all", "version": "1"}
    assert send(sup, f"/assessments/{entry_id}/sign", sign_data).status_code == 422
    # A wrong password typed to sign is a try toward the lockout, audited as such too.
    assert not_reads() == [
        "access_refused",
        "reentry_failure",
        "review_refused",
    ]
    assert data_counts() == before
    assert db.session.get(Assessment, entry_id).status == "active"


# --------------------------------------------------------------------------- the chain


def test_every_event_follows_the_one_before_after_a_realistic_session(
    world, add_assessment, login, make_browser
):
    patient_id = world["patient_n"].id
    clin, sup = login("clin.north"), login("sup.north")
    form = clin.get(f"/patients/{patient_id}/assessments/new/gad7")
    recorded = send(
        clin,
        f"/patients/{patient_id}/assessments/new/gad7",
        {
            "submission_key": input_val(form, "submission_key"),
            "observed_at": input_val(form, "observed_at"),
            **{key: "1" for key in GAD7},
            "notes": "Ünïcode — and <markup> & quotes \"'",
        },
    )
    assert recorded.status_code == 302
    entry_id = int(recorded.headers["Location"].rsplit("/", 1)[1])
    second_id = add_assessment(
        world["patient_n"], world["clin_n"], "cows", None, observed_at=an_hour_ago()
    ).id
    amend_form = clin.get(f"/assessments/{entry_id}/amend")
    amended = send(
        clin,
        f"/assessments/{entry_id}/amend",
        {
            "submission_key": input_val(amend_form, "submission_key"),
            "observed_at": input_val(amend_form, "observed_at"),
            "version": "1",
            **{key: "2" for key in GAD7},
            "reason": "Scored from the wrong sheet",
        },
    )
    assert amended.status_code == 302
    new_id = int(amended.headers["Location"].rsplit("/", 1)[1])
    signed = send(sup, f"/assessments/{new_id}/sign", {"password": PASSWORD, "version": "1"})
    assert signed.status_code == 302
    assert (
        send(
            clin, f"/assessments/{second_id}/void", {"reason_code": "duplicate", "version": "1"}
        ).status_code
        == 302
    )
    make_browser().post("/login", {"username": "clin.north", "password": "not the one"})
    clin.logout()
    fresh()
    chain = list(db.session.scalars(select(AuditEvent).order_by(AuditEvent.id)))
    actions = {e.action for e in chain}
    assert {"assessment_create", "assessment_amend", "assessment_review"} <= actions
    assert {"assessment_void", "login_success", "login_failure", "logout"} <= actions
    assert chain[0].prev_hash == audit.GENESIS_HASH
    for before, event in zip(chain, chain[1:], strict=False):
        assert event.prev_hash == before.hash
    for event in chain:
        assert audit.event_hash(event.prev_hash, event) == event.hash
    assert len({e.hash for e in chain}) == len(chain)
    assert audit.verify_chain() == (len(chain), None)
    assert audit.verify_chain(batch_size=3) == (len(chain), None)


def _forged(prev_hash: str, **fields) -> dict:
    """An audit row as a forger would write it, with a hash computed the app's way."""
    values = {
        "at": now_utc(),
        "user_id": None,
        "username": "forger",
        "action": "assessment_review",
        "entity": "assessment",
        "entity_id": 1,
        "site_id": None,
        "patient_id": None,
        "reason": None,
        "details": "{}",
        "ip": None,
        "prev_hash": prev_hash,
        **fields,
    }
    values.setdefault("hash", audit.event_hash(prev_hash, AuditEvent(**values)))
    return values


def test_an_event_appended_with_a_made_up_hash_is_detected(world):
    last = db.session.scalars(select(AuditEvent).order_by(AuditEvent.id.desc())).first()
    last_hash, total = last.hash, last.id
    fresh()
    with db.engine.begin() as conn:
        conn.execute(AuditEvent.__table__.insert().values(**_forged(last_hash, hash="f" * 64)))
    checked, problem = audit.verify_chain()
    assert checked == total
    assert problem.event_id == total + 1 and "altered" in problem.message


def test_an_event_appended_onto_a_made_up_predecessor_is_detected(world):
    total = last_id()
    fresh()
    with db.engine.begin() as conn:
        conn.execute(AuditEvent.__table__.insert().values(**_forged("e" * 64)))
    checked, problem = audit.verify_chain()
    assert checked == total
    assert problem.event_id == total + 1 and "removed or inserted" in problem.message


def test_an_event_swapped_in_the_middle_is_detected_even_with_a_correct_own_hash(world):
    events = list(db.session.scalars(select(AuditEvent).order_by(AuditEvent.id)))
    assert len(events) > 4
    target, previous = events[3], events[2]
    target_id, prev_hash = target.id, previous.hash
    fresh()
    with db.engine.begin() as conn:
        _bypass_triggers(conn)
        conn.execute(AuditEvent.__table__.delete().where(AuditEvent.id == target_id))
        conn.execute(AuditEvent.__table__.insert().values(id=target_id, **_forged(prev_hash)))
        _restore_triggers(conn)
    checked, problem = audit.verify_chain()
    # The forged row itself checks out; the row after it no longer follows it.
    assert checked == 4
    assert problem.event_id == events[4].id
    assert "removed or inserted" in problem.message


@pytest.mark.parametrize("change", ["update", "delete"])
def test_the_app_cannot_change_or_remove_an_audit_event_through_the_orm(world, change):
    begin_write(db.session)
    event = db.session.scalars(select(AuditEvent).order_by(AuditEvent.id)).first()
    event_id, reason = event.id, event.reason
    if change == "update":
        event.reason = "rewritten later"
    else:
        db.session.delete(event)
    with pytest.raises(DBAPIError, match="append-only"):
        db.session.commit()
    db.session.rollback()
    kept = db.session.get(AuditEvent, event_id)
    assert kept is not None and kept.reason == reason
    assert audit.verify_chain()[1] is None


# --------------------------------------------------------------------------- the audit view


def test_the_audit_view_is_for_supervisors_only(world, login):
    assert login("sup.north").get("/audit/").status_code == 200
    assert login("clin.north").get("/audit/").status_code == 403
    assert login("admin.one").get("/audit/").status_code == 403


def test_the_audit_view_shows_my_sites_events_and_my_colleagues_logins_only(
    world, add_assessment, login
):
    north_id, south_id = world["north"].id, world["south"].id
    north_users = {world["clin_n"].id, world["sup_n"].id}
    south_entry = add_assessment(world["patient_s"], world["clin_s"], "gad7", gad(2)).id
    north_entry = add_assessment(world["patient_n"], world["clin_n"], "gad7", gad(1)).id
    north_patient = world["patient_n"].id
    south = login("clin.south")
    assert south.get(f"/patients/{north_patient}").status_code == 404
    login("clin.north").logout()
    sup = login("sup.north")
    page = sup.get("/audit/")
    assert page.status_code == 200
    fresh()
    everything = list(db.session.scalars(select(AuditEvent).order_by(AuditEvent.id.desc())))
    expected = [
        shown_as(e)
        for e in everything
        if e.site_id == north_id or (e.site_id is None and e.user_id in north_users)
    ]
    rows = audit_rows(page)
    assert [(who, action) for who, action, _ in rows] == expected
    assert ("clin.north", "login success") in expected and ("clin.north", "logout") in expected
    # The entry is named by scale, number, patient and time (tests/test_audit_readable.py).
    [created] = [what for who, action, what in rows if action == "assessment create"]
    assert created.startswith(f"GAD-7 entry #{north_entry} of N-001") and "observed" in created
    assert not any(f"entry #{south_entry} " in what or "S-001" in what for _, _, what in rows)
    # South's clinician appears once: trying North's patient, a refusal North's trail keeps.
    assert [(who, action) for who, action, _ in rows if who == "clin.south"] == [
        ("clin.south", "access refused")
    ]
    assert ("—", "site create", f"site #{north_id}") in rows
    assert ("—", "site create", f"site #{south_id}") not in rows
    assert not any(action == "user create" for _, action, _ in rows)
    assert f'href="/assessments/{north_entry}/history"' in page.get_data(as_text=True)


def test_the_audit_view_filters_by_patient_user_action_and_dates(world, add_assessment, login):
    second = create_patient(
        world["clin_n"], world["north"], "N-002", None, an_hour_ago(), "opioid", ""
    )
    add_assessment(world["patient_n"], world["clin_n"], "gad7", gad(1))
    first_void = add_assessment(world["patient_n"], world["sup_n"], "gad7", gad(2))
    assessments.void_assessment(world["sup_n"], first_void, 1, "duplicate", "")
    add_assessment(second, world["clin_n"], "gad7", gad(1))
    add_assessment(world["patient_s"], world["clin_s"], "gad7", gad(1))
    n001 = world["patient_n"].id
    sup = login("sup.north")
    fresh()

    def visible(**filters):
        rows = db.session.scalars(visible_events(world["sup_n"], AuditFilter(**filters))).all()
        return [shown_as(e) for e in rows]

    def shown(query):
        page = sup.get(f"/audit/?{query}")
        assert page.status_code == 200, query
        return [(who, action) for who, action, _ in audit_rows(page)]

    everything = visible()
    of_n001 = shown("patient=N-001")
    assert of_n001 == visible(patient="N-001")
    n001_events = db.session.scalars(select(AuditEvent).where(AuditEvent.patient_id == n001))
    assert len(of_n001) == len(n001_events.all()) == 5
    assert len(shown("patient=N-002")) == 3
    assert shown("patient=S-001") == [] and shown("patient=nobody") == []
    by_sup = shown("user=sup.north")
    assert by_sup and {who for who, _ in by_sup} == {"sup.north"}
    assert shown("user=%20SUP.NORTH%20") == by_sup
    assert shown("action=assessment_void") == [("sup.north", "assessment void")]
    assert shown("action=assessment_void&user=clin.north") == []
    times = [to_local(e.at, LONDON).date() for e in db.session.scalars(select(AuditEvent))]
    first_day, last_day = min(times), max(times)
    assert shown(f"start={first_day}&end={last_day}") == everything
    assert shown(f"start={last_day + timedelta(days=1)}") == []
    assert shown(f"end={first_day - timedelta(days=1)}") == []
    assert shown(f"patient=N-001&action=patient_create&start={first_day}") == [
        ("clin.north", "patient create")
    ]


@pytest.mark.parametrize(
    "query, message",
    [
        ("start=2026-13-45", "The start date must look like 2026-03-04."),
        ("end=yesterday", "The end date must look like 2026-03-04."),
        ("start=1999-01-01", "The start date must look like 2026-03-04."),
        ("start=2026-03-05&end=2026-03-04", "The end date is before the start date."),
    ],
)
def test_bad_dates_in_the_audit_view_get_a_message_not_an_error(world, login, query, message):
    page = login("sup.north").get(f"/audit/?{query}")
    assert page.status_code == 400
    assert message in text_of(page)
    assert "Audit trail" in text_of(page)


def test_the_audit_view_pages_through_more_than_100_events(world, login):
    begin_write(db.session)
    for number in range(1, 131):
        audit.record(
            "probe",
            user=world["sup_n"],
            entity="probe",
            entity_id=number,
            site_id=world["north"].id,
        )
    db.session.commit()
    sup = login("sup.north")
    fresh()
    total = db.session.scalar(
        select(func.count()).select_from(visible_events(world["sup_n"], AuditFilter()).subquery())
    )
    assert total > 130
    first = sup.get("/audit/")
    assert len(audit_rows(first)) == 100
    assert "Page 1 of 2" in text_of(first)
    assert 'href="/audit/?page=2">Older</a>' in first.get_data(as_text=True)
    second = sup.get("/audit/?page=2")
    assert len(audit_rows(second)) == total - 100
    assert "Page 2 of 2" in text_of(second) and ">Newer</a>" in second.get_data(as_text=True)

    probes = [what for _, _, what in audit_rows(sup.get("/audit/?action=probe"))]
    assert probes == [f"probe #{n}" for n in range(130, 30, -1)]
    page_two = sup.get("/audit/?action=probe&page=2")
    assert [what for _, _, what in audit_rows(page_two)] == [
        f"probe #{n}" for n in range(30, 0, -1)
    ]
    assert "action=probe" in re.search(r'href="([^"]*)">Newer', page_two.get_data(as_text=True))[1]
    assert sup.get("/audit/?page=0").status_code == 200
    assert len(audit_rows(sup.get("/audit/?page=abc"))) == 100
    beyond = sup.get("/audit/?page=99")
    assert beyond.status_code == 200 and "No events match." in text_of(beyond)


def test_failed_logins_against_my_colleagues_accounts_are_in_my_audit_view(world, login):
    stranger = login("clin.south")
    stranger.logout()
    stranger.post("/login", {"username": "clin.north", "password": "guessing guessing"})
    page = login("sup.north").get("/audit/?action=login_failure")
    assert ("clin.north", "login failure") in [(w, a) for w, a, _ in audit_rows(page)]


def test_the_patient_filter_matches_identifiers_like_the_patient_search(world, login):
    page = login("sup.north").get("/audit/?patient=n-001")
    assert len(audit_rows(page)) == 2  # patient_create and episode_open of N-001
