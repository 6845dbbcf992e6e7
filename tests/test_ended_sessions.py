"""A session that the session rules end or hold back sees nothing about a patient, whatever it
posts, with or without a valid CSRF token (issue 13, R01). What it typed is held on the server
for that same user and offered back only after they log in again.
"""

from __future__ import annotations

import re
import time
from datetime import timedelta

import pytest
from conftest import PASSWORD, Browser
from flask import Flask
from sqlalchemy import select, text, update

from clinic_log.admin.services import grant_emergency_access
from clinic_log.auth import sessions
from clinic_log.database import begin_write, now_utc
from clinic_log.extensions import csrf, db
from clinic_log.models import AuditEvent, HeldInput, User
from clinic_log.patients.services import create_patient

NOTE = "Walk-note-QX17 felt shivery"
EPISODE_NOTE = "Walk-episode-QX17"
TYPED = "Typed-QX17 restless since noon"
LABEL = "Walk Label QX17"
# Markup that only pages about a patient carry: an entry's total, a timeline or tracker row.
PATIENT_MARKUP = ("Total <strong>", 'class="num"', "Clinical Opiate Withdrawal")


@pytest.fixture
def walk(world, add_assessment, make_user):
    """Real ids of every kind a form route takes, and the text that must never be shown."""
    start = now_utc() - timedelta(days=1)
    patient = create_patient(
        world["clin_n"], world["north"], "N-QX17", LABEL, start, "opioid", EPISODE_NOTE
    )
    entry = add_assessment(patient, world["clin_n"], "cows", notes=NOTE)
    add_assessment(world["patient_n"], world["clin_n"], "gad7", notes=NOTE)
    grant = grant_emergency_access(world["admin"], world["clin_s"], "NORTH", 4, "Cover for a shift")
    begin_write(db.session)
    held = HeldInput(
        user_id=world["sup_n"].id,
        endpoint="patients.new_episode",
        path=f"/patients/{patient.id}/episodes/new",
        why="idle",
        form='[["episode_note", "held before"]]',
        expires_at=now_utc() + timedelta(minutes=30),
    )
    db.session.add(held)
    db.session.flush()
    ids = {
        "held_id": held.id,
        "patient_id": patient.id,
        "episode_id": patient.open_episode.id,
        "assessment_id": entry.id,
        "scale_key": "cows",
        "site_id": world["north"].id,
        "user_id": world["clin_s"].id,
        "grant_id": grant.id,
    }
    never_shown = [
        "N-001",
        "S-001",
        "Test N",
        "N-QX17",
        LABEL,
        NOTE,
        EPISODE_NOTE,
        TYPED,
        *PATIENT_MARKUP,
    ]
    db.session.commit()
    return ids, never_shown


def form_routes(app: Flask):
    """Every route that takes a POST, from the URL map: a new route is walked as well."""
    return sorted(
        (rule for rule in app.url_map.iter_rules() if "POST" in rule.methods),
        key=lambda rule: rule.rule,
    )


def url_of(rule, ids) -> str:
    missing = set(rule.arguments) - set(ids)
    assert not missing, f"{rule.rule}: give the walk a real value for {sorted(missing)}"
    with_ids = rule.rule
    for name in rule.arguments:
        with_ids = re.sub(rf"<(?:[^:>]+:)?{name}>", str(ids[name]), with_ids)
    return with_ids


def typed_form(token: str | None) -> dict:
    """What a person might have typed into any of the forms, CSRF token as given."""
    data = {
        "notes": TYPED,
        "reason": TYPED,
        "identifier": "N-TYPED",
        "display_label": TYPED,
        "episode_note": TYPED,
        "observed_at": "2026-01-01T10:00",
        "started_at": "2026-01-01T10:00",
        "ended_at": "2026-01-02T10:00",
        "substance_context": "opioid",
        "version": "1",
        "password": PASSWORD,
        "current_password": PASSWORD,
        "confirm": PASSWORD,
        "code": "123456",
        "nervous": "1",
        "resting_pulse": "1",
        "reason_code": "entered_in_error",
    }
    if token is not None:
        data["csrf_token"] = token
    return data


def set_flag(app, username: str, **values) -> None:
    with app.app_context():
        begin_write(db.session)
        db.session.execute(update(User).where(User.username == username).values(**values))
        db.session.commit()


def snapshot(app) -> dict:
    """Every row of every table but the audit trail and held input."""
    with app.app_context():
        rows = {}
        for table in db.metadata.sorted_tables:
            if table.name in ("audit_event", "held_input"):
                continue
            order = [column for column in table.primary_key.columns] or list(table.columns)
            rows[table.name] = [
                tuple(row) for row in db.session.execute(table.select().order_by(*order))
            ]
        db.session.rollback()
        return rows


def age_session(browser: Browser, *, idle: bool) -> None:
    with browser.client.session_transaction() as cookie:
        if idle:
            cookie[sessions.LAST_SEEN] -= 16 * 60
        else:
            cookie[sessions.AUTH_AT] -= 13 * 3600
            cookie[sessions.LAST_SEEN] = int(time.time())


# (how the session was left, who posts to clinical routes)
STATES = {
    "idle timeout": "sup.north",
    "absolute timeout": "sup.north",
    "must change password": "sup.north",
    "mfa not enrolled": "sup.north",
}


def prepared_session(app, state: str, username: str) -> tuple[dict, str]:
    """The session cookie of a browser in ``state``, and a CSRF token that session accepts.

    One real login per user and state; each route then gets a fresh browser holding a copy
    of that cookie (what a timed-out tab sends), so the login rate limit is not in the way.
    """
    if state == "must change password":
        set_flag(app, username, must_change_password=True)
    browser = Browser(app.test_client())
    browser.login(username)
    token = browser.csrf_token("/")
    if state == "idle timeout":
        age_session(browser, idle=True)
    elif state == "absolute timeout":
        age_session(browser, idle=False)
    with browser.client.session_transaction() as cookie:
        return dict(cookie), token


def browser_with(app, cookie: dict) -> Browser:
    browser = Browser(app.test_client())
    with browser.client.session_transaction() as fresh:
        fresh.update(cookie)
    return browser


@pytest.mark.parametrize("with_token", [False, True], ids=["bad token", "valid token"])
@pytest.mark.parametrize("state", STATES)
def test_no_form_route_shows_patient_data_to_a_session_the_rules_end(app, walk, state, with_token):
    ids, never_shown = walk
    app.config["REQUIRE_MFA"] = state == "mfa not enrolled"
    routes = [rule for rule in form_routes(app) if rule.endpoint not in _LOGIN_STEPS]
    assert len(routes) >= 20, [rule.rule for rule in routes]
    prepared = {
        username: prepared_session(app, state, username)
        for username in (STATES[state], "admin.one")
    }
    failures = []
    for rule in routes:
        username = "admin.one" if rule.endpoint.startswith("admin.") else STATES[state]
        cookie, token = prepared[username]
        browser = browser_with(app, cookie)
        url = url_of(rule, ids)
        before = snapshot(app)
        data = typed_form(token if with_token else "not-a-valid-token")
        response = browser.client.post(url, data=data)
        body = response.get_data(as_text=True)
        shown = [marker for marker in never_shown if marker in body]
        if shown:
            failures.append(f"{url} ({response.status_code}) showed {shown}")
        if rule.endpoint in _STILL_OPEN and state in _HELD_BACK:
            continue  # the way out of the state (and logout) works as usual
        if response.status_code not in (302, 303, 401):
            failures.append(f"{url}: status {response.status_code}")
        if snapshot(app) != before:
            failures.append(f"{url}: wrote outside the audit trail and held input")
    assert not failures, "\n".join(failures)


_LOGIN_STEPS = {"auth.login", "auth.login_code"}
# A session held back (not ended) still reaches the password change, enrolment and logout.
_STILL_OPEN = {"auth.password", "auth.mfa_enrol", "auth.logout"}
_HELD_BACK = {"must change password", "mfa not enrolled"}


def test_session_rules_run_before_the_csrf_check(app):
    hooks = app.before_request_funcs[None]
    assert hooks[0] is sessions.enforce_session_rules
    names = [hook.__name__ for hook in hooks]
    assert names.index("enforce_session_rules") < names.index("csrf_protect")


def test_the_order_holds_whichever_extension_is_set_up_first(app):
    from clinic_log.config import load_config

    other = Flask("reordered")
    load_config(other, {"TESTING": True, "SECRET_KEY": "k" * 40, "DATABASE_URL": "sqlite://"})
    sessions.init_app(other)
    csrf.init_app(other)
    names = [hook.__name__ for hook in other.before_request_funcs[None]]
    assert names[0] == "enforce_session_rules" and "csrf_protect" in names


# --- held input -------------------------------------------------------------------------------


def held_rows(app) -> list:
    with app.app_context():
        rows = list(db.session.scalars(select(HeldInput).order_by(HeldInput.id)))
        db.session.expunge_all()
        return rows


def form_values(page: str, *names: str) -> dict:
    found = dict(re.findall(r'name="([a-z_]+)"[^>]*value="([^"]*)"', page))
    return {name: found[name] for name in names}


def restore(browser: Browser, held):
    """The "restore what you typed" button: a post to the form's own address."""
    return browser.post(held.path, {"_restore_held_input": str(held.id)}, token_from="/")


def timed_out_entry_post(app, world) -> tuple[Browser, str, dict]:
    browser = Browser(app.test_client())
    browser.login("clin.north")
    pid = world["patient_n"].id
    url = f"/patients/{pid}/assessments/new/gad7"
    page = browser.get(url).get_data(as_text=True)
    data = {
        **form_values(page, "csrf_token", "submission_key", "observed_at"),
        "nervous": "2",
        "restless": "1",
        "notes": TYPED,
    }
    age_session(browser, idle=True)
    response = browser.client.post(url, data=data)
    return browser, url, {"response": response, "data": data}


def test_a_timed_out_post_is_held_for_that_user_and_the_page_says_so(app, world):
    _browser, url, sent = timed_out_entry_post(app, world)
    response = sent["response"]
    body = response.get_data(as_text=True)
    assert response.status_code == 401
    assert "NOT saved" in body and "held for you for 30 minutes" in body
    assert TYPED not in body and "N-001" not in body
    [held] = held_rows(app)
    assert held.user_id == world["clin_n"].id and held.path == url
    fields = dict(held.fields())
    assert fields["notes"] == TYPED and fields["nervous"] == "2"
    assert "csrf_token" not in fields
    assert held.expires_at - held.held_at == timedelta(minutes=30)


def test_passwords_and_codes_are_never_held(app, world, add_assessment):
    entry = add_assessment(world["patient_n"], world["sup_n"], "cows")
    db.session.commit()
    browser = Browser(app.test_client())
    browser.login("sup.north")
    token = browser.csrf_token("/")
    age_session(browser, idle=True)
    browser.client.post(
        f"/assessments/{entry.id}/sign",
        data={"csrf_token": token, "password": PASSWORD, "version": "1", "code": "123456"},
    )
    for held in held_rows(app):
        names = {name for name, _ in held.fields()}
        assert not names & {"csrf_token", "password", "code"}


def test_held_input_is_offered_only_to_the_same_user_after_a_new_login(app, world):
    browser, url, _sent = timed_out_entry_post(app, world)
    [held] = held_rows(app)
    # Another user on the same browser is offered nothing, and cannot restore it.
    browser.login("sup.north")
    page = browser.get("/patients/").get_data(as_text=True)
    assert "You were logged out before saving" not in page
    refused = restore(browser, held)
    assert refused.status_code == 404 and TYPED not in refused.get_data(as_text=True)
    browser.logout()
    # The same user, logged in again: the offer, then the form filled in, nothing saved yet.
    browser.login("clin.north")
    page = browser.get("/patients/").get_data(as_text=True)
    assert "You were logged out before saving" in page and TYPED not in page
    restored = restore(browser, held)
    body = restored.get_data(as_text=True)
    assert restored.status_code == 422
    assert TYPED in body and "NOT saved yet" in body
    assert 'name="csrf_token"' in body
    assert held_rows(app) == []  # used: gone
    with app.app_context():
        saved = db.session.scalar(
            text("SELECT count(*) FROM assessment WHERE notes = :n"), {"n": TYPED}
        )
    assert saved == 0
    # Saving it is an ordinary submit with a fresh token, through every normal check.
    form = {**form_values(body, "csrf_token", "submission_key", "observed_at"), "notes": TYPED}
    assert form["observed_at"]
    for item in ("nervous", "cannot_stop_worrying", "worry_too_much", "trouble_relaxing",
                 "restless", "irritable", "afraid"):  # fmt: skip
        form[item] = "1"
    saved_response = browser.client.post(url, data=form)
    assert saved_response.status_code == 302


def test_held_input_is_not_offered_in_the_session_that_was_refused(app, world):
    """Forced password change: the refused post is held, and offered only after the change
    (a new login), never in the session that was refused."""
    set_flag(app, "clin.north", must_change_password=True)
    browser = Browser(app.test_client())
    browser.login("clin.north")
    pid = world["patient_n"].id
    token = browser.csrf_token("/")
    refused = browser.client.post(
        f"/patients/{pid}/episodes/new", data={"csrf_token": token, "episode_note": TYPED}
    )
    assert refused.status_code == 302 and refused.headers["Location"] == "/account/password"
    [held] = held_rows(app)
    attempt = restore(browser, held)
    assert attempt.status_code in (302, 404) and TYPED not in attempt.get_data(as_text=True)
    browser.post(
        "/account/password",
        {
            "current_password": PASSWORD,
            "password": "a brand new passphrase",
            "confirm": "a brand new passphrase",
        },
    )
    page = browser.get("/patients/").get_data(as_text=True)
    assert "You had to change your password before saving a new episode" in page


def test_a_user_who_lost_access_restores_nothing(app, world):
    _browser, _url, _sent = timed_out_entry_post(app, world)
    [held] = held_rows(app)
    with app.app_context():
        begin_write(db.session)
        db.session.execute(text("DELETE FROM user_site"))
        db.session.commit()
    browser = Browser(app.test_client())
    browser.login("clin.north")
    response = restore(browser, held)
    assert response.status_code == 404 and TYPED not in response.get_data(as_text=True)
    assert held_rows(app) == []


def test_expired_held_input_is_gone(app, world):
    _browser, _url, _sent = timed_out_entry_post(app, world)
    with app.app_context():
        begin_write(db.session)
        past = now_utc() - timedelta(hours=1)
        db.session.execute(
            update(HeldInput).values(held_at=past, expires_at=past + timedelta(minutes=30))
        )
        db.session.commit()
    browser = Browser(app.test_client())
    browser.login("clin.north")
    assert "You were logged out before saving" not in browser.get("/patients/").get_data(
        as_text=True
    )
    assert held_rows(app) == []


def test_held_input_can_be_discarded(app, world):
    _browser, _url, _sent = timed_out_entry_post(app, world)
    [held] = held_rows(app)
    browser = Browser(app.test_client())
    browser.login("clin.north")
    response = browser.post(f"/account/held-input/{held.id}/discard", token_from="/")
    assert response.status_code == 302
    assert held_rows(app) == []
    assert "You were logged out before saving" not in browser.get("/patients/").get_data(
        as_text=True
    )


def test_holding_is_audited_with_the_timeout(app, world):
    timed_out_entry_post(app, world)
    with app.app_context():
        event = db.session.scalar(select(AuditEvent).where(AuditEvent.action == "session_timeout"))
        assert event is not None and '"held_input"' in event.details
