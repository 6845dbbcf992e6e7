"""Login protection, session lifetime, password rules and the second factor."""

import time

import pyotp
import pytest
from conftest import PASSWORD, Browser
from sqlalchemy import func, select

from clinic_log import create_app
from clinic_log.auth.passwords import password_problem
from clinic_log.extensions import db
from clinic_log.models import AuditEvent, User


def actions(app):
    with app.app_context():
        return list(db.session.scalars(select(AuditEvent.action).order_by(AuditEvent.id)))


def user_row(app, username):
    with app.app_context():
        user = db.session.scalar(select(User).where(User.username == username))
        db.session.expunge(user)
        return user


def fail_login(browser, username="clin.north", password="not the password!"):
    return browser.post("/login", {"username": username, "password": password})


# --- lockout and rate limit -------------------------------------------------------------------


def test_five_failures_lock_the_account_even_for_the_right_password(browser, world, app):
    for _ in range(5):
        assert fail_login(browser).status_code == 200
    assert "account_locked" in actions(app)
    assert user_row(app, "clin.north").locked_until is not None
    response = browser.post("/login", {"username": "clin.north", "password": PASSWORD})
    assert response.status_code == 200
    assert "Unknown username or wrong password" in response.get_data(as_text=True)
    assert browser.get("/patients/").status_code == 302


def test_four_failures_then_success_do_not_lock(browser, world, app):
    for _ in range(4):
        fail_login(browser)
    assert browser.login("clin.north").status_code == 302
    assert user_row(app, "clin.north").locked_until is None


def test_the_lock_ends_after_its_time(browser, world, app, monkeypatch):
    for _ in range(5):
        fail_login(browser)
    with app.app_context():
        user = db.session.scalar(select(User).where(User.username == "clin.north"))
        from datetime import timedelta

        from clinic_log.database import begin_write

        begin_write(db.session)
        user.locked_until = user.locked_until - timedelta(minutes=16)
        db.session.commit()
    assert browser.login("clin.north").status_code == 302


def test_unknown_user_and_locked_user_answer_alike(make_browser, world):
    first, second = make_browser(), make_browser()
    for _ in range(5):
        fail_login(first)
    locked = first.post("/login", {"username": "clin.north", "password": PASSWORD})
    unknown = second.post("/login", {"username": "no.body", "password": PASSWORD})
    assert locked.status_code == unknown.status_code == 200
    assert "Unknown username or wrong password" in locked.get_data(as_text=True)
    assert "Unknown username or wrong password" in unknown.get_data(as_text=True)


def test_too_many_attempts_from_one_address_get_429(browser, world, app):
    app.extensions["clinic_log.login_limiter"].limit = 3
    codes = [fail_login(browser, username=f"user{n}").status_code for n in range(5)]
    assert codes[:3] == [200, 200, 200] and codes[3:] == [429, 429]
    assert "login_rate_limited" in actions(app)


# --- session lifetime -------------------------------------------------------------------------


class Clock:
    def __init__(self, monkeypatch):
        self.offset = 0.0
        real = time.time
        monkeypatch.setattr("clinic_log.auth.sessions.time.time", lambda: real() + self.offset)


def test_idle_timeout_sends_back_to_login(browser, world, app, monkeypatch):
    clock = Clock(monkeypatch)
    browser.login("clin.north")
    clock.offset = 14 * 60
    assert browser.get("/patients/").status_code == 200
    clock.offset += 16 * 60
    response = browser.get("/patients/")
    assert response.status_code == 302 and response.headers["Location"].startswith("/login")
    assert "session_timeout" in actions(app)
    assert browser.get("/patients/").status_code == 302


def test_a_fractional_idle_timeout_ends_the_session_after_that_many_seconds(
    world, app, monkeypatch
):
    app.config["IDLE_TIMEOUT_MINUTES"] = 0.5
    browser = Browser(app.test_client())
    clock = Clock(monkeypatch)
    browser.login("clin.north")
    for _ in range(6):  # active: a request every 20 s keeps the session
        clock.offset += 20
        assert browser.get("/patients/").status_code == 200
    clock.offset += 40
    response = browser.get("/patients/")
    assert response.status_code == 302 and response.headers["Location"].startswith("/login")


def test_absolute_lifetime_ends_even_an_active_session(browser, world, monkeypatch):
    clock = Clock(monkeypatch)
    browser.login("clin.north")
    for _ in range(13 * 6):  # a request every 10 minutes for 13 hours
        clock.offset += 600
        response = browser.get("/patients/")
        if response.status_code == 302:
            break
    assert response.status_code == 302
    assert clock.offset >= 12 * 3600


def test_a_form_posted_after_the_timeout_says_not_saved(browser, world, app, monkeypatch):
    clock = Clock(monkeypatch)
    browser.login("clin.north")
    pid = world["patient_n"].id
    token = browser.csrf_token(f"/patients/{pid}/assessments/new/gad7")
    clock.offset = 20 * 60
    response = browser.client.post(
        f"/patients/{pid}/assessments/new/gad7", data={"csrf_token": token, "nervous": "1"}
    )
    assert response.status_code == 401
    assert "NOT saved" in response.get_data(as_text=True)


# --- passwords --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "password",
    ["short pw", "password1234", "Password2024!", "123456789012", "qwertyuiopas",
     "aaaaaaaaaaaa", "abcabcabcabc", "j.smith is me ok"],
)  # fmt: skip
def test_weak_passwords_are_refused(password):
    assert password_problem(password, "j.smith") is not None


@pytest.mark.parametrize(
    "password",
    ["correct horse battery staple", "x" * 3 + "purple tractor 9", "é" * 2 + "ß日本語x" * 3],
)
def test_long_unusual_passwords_are_accepted(password):
    assert password_problem(password, "j.smith") is None


def test_no_truncation_of_long_passwords(app_ctx, make_site, make_user):
    from clinic_log.auth.services import authenticate

    make_site()
    first = "a" * 89 + "bcdefghijk"
    make_user("long.pw", password=first)
    assert authenticate("long.pw", first) is not None
    assert authenticate("long.pw", first[:-1] + "z") is None


def test_password_change_needs_the_current_one_and_ends_other_sessions(make_browser, world, app):
    other, browser = make_browser(), make_browser()
    other.login("clin.north")
    browser.login("clin.north")
    wrong = browser.post(
        "/account/password",
        {
            "current_password": "wrong one here",
            "password": "a new long passphrase",
            "confirm": "a new long passphrase",
        },
    )
    assert wrong.status_code == 422 and "current password is not right" in wrong.get_data(
        as_text=True
    )
    ok = browser.post(
        "/account/password",
        {
            "current_password": PASSWORD,
            "password": "a new long passphrase",
            "confirm": "a new long passphrase",
        },
    )
    assert ok.status_code == 302
    assert browser.get("/patients/").status_code == 200  # this session continues
    assert other.get("/patients/").status_code == 302  # the other one has ended
    assert "password_change" in actions(app)


def test_must_change_password_comes_before_anything_else(browser, world, app):
    with app.app_context():
        from clinic_log.database import begin_write

        begin_write(db.session)
        db.session.scalar(
            select(User).where(User.username == "clin.north")
        ).must_change_password = True
        db.session.commit()
    browser.login("clin.north")
    response = browser.get("/patients/")
    assert response.status_code == 302 and response.headers["Location"] == "/account/password"
    browser.post(
        "/account/password",
        {
            "current_password": PASSWORD,
            "password": "my very own passphrase",
            "confirm": "my very own passphrase",
        },
    )
    assert browser.get("/patients/").status_code == 200
    assert user_row(app, "clin.north").must_change_password is False


# --- second factor ----------------------------------------------------------------------------


def secret_on_page(browser):
    page = browser.get("/account/mfa").get_data(as_text=True)
    return page.split('<code class="secret">')[1].split("<")[0]


def enrol(browser):
    secret = secret_on_page(browser)
    response = browser.post(
        "/account/mfa",
        {"password": PASSWORD, "code": pyotp.TOTP(secret).now()},
        token_from="/account/mfa",
    )
    assert response.status_code == 302, response.get_data(as_text=True)
    return secret


def test_enrolled_user_needs_a_code_and_a_code_works_once(make_browser, world, app):
    first = make_browser()
    first.login("clin.north")
    secret = enrol(first)
    assert "mfa_enrol" in actions(app)

    browser = make_browser()
    step_one = browser.post("/login", {"username": "clin.north", "password": PASSWORD})
    assert step_one.headers["Location"] == "/login/code"
    assert browser.get("/patients/").status_code == 302  # not logged in yet
    bad = browser.post("/login/code", {"code": "000000"})
    assert bad.status_code == 422
    # The code used to enrol is spent; the app also accepts the next 30-second step.
    code = pyotp.TOTP(secret).at(time.time() + 30)
    assert browser.post("/login/code", {"code": code}).status_code == 302
    assert browser.get("/patients/").status_code == 200

    replay = make_browser()
    replay.post("/login", {"username": "clin.north", "password": PASSWORD})
    assert replay.post("/login/code", {"code": code}).status_code == 422


def test_enrolment_refuses_a_wrong_code(browser, world):
    browser.login("clin.north")
    secret_on_page(browser)
    response = browser.post(
        "/account/mfa", {"password": PASSWORD, "code": "123456"}, token_from="/account/mfa"
    )
    assert response.status_code == 422 and "does not match" in response.get_data(as_text=True)
    assert "<svg" in response.get_data(as_text=True)


def test_supervisors_must_enrol_when_mfa_is_required(tmp_path, world, app):
    app.config["REQUIRE_MFA"] = True

    supervisor = Browser(app.test_client())
    supervisor.login("sup.north")
    response = supervisor.get("/dashboard/")
    assert response.status_code == 302 and response.headers["Location"] == "/account/mfa"
    clinician = Browser(app.test_client())
    clinician.login("clin.north")
    assert clinician.get("/patients/").status_code == 200


def test_mfa_is_required_by_default_outside_demo_and_tests(tmp_path):
    base = {"DATABASE_URL": "sqlite://", "INSTANCE_PATH": str(tmp_path), "SECRET_KEY": "k" * 40}
    assert create_app(base).config["REQUIRE_MFA"] is True
    assert create_app({**base, "DEMO": True}).config["REQUIRE_MFA"] is False
    assert create_app({**base, "TESTING": True}).config["REQUIRE_MFA"] is False


# --- cookies ----------------------------------------------------------------------------------


def test_session_cookie_is_httponly_lax_and_secure_over_https(app, world):
    client = app.test_client()
    page = client.get("/login", base_url="https://localhost")
    cookie = page.headers.get("Set-Cookie", "")
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" in cookie
    plain = app.test_client().get("/login").headers.get("Set-Cookie", "")
    assert "Secure" not in plain


def test_no_patient_data_in_the_session_cookie(browser, world, app):
    import base64
    import zlib

    browser.login("clin.north")
    browser.get(f"/patients/{world['patient_n'].id}")
    value = browser.client.get_cookie("session").value
    payload = value.split(".")[1] if not value.startswith(".") else value.split(".")[1]
    raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    text = (zlib.decompress(raw) if value.startswith(".") else raw).decode(errors="replace")
    assert "N-001" not in text and "Test N" not in text


def test_failed_login_count_is_kept_in_the_database(browser, world, app):
    fail_login(browser)
    fail_login(browser)
    with app.app_context():
        assert db.session.scalar(select(func.max(User.failed_login_count))) == 2


def test_a_login_the_audit_trail_cannot_record_does_not_log_in(browser, world, app, monkeypatch):
    import sqlite3

    from sqlalchemy.exc import OperationalError

    from clinic_log import audit

    real_record = audit.record

    def busy_for_logins(action, **kwargs):
        if action == "login_success":
            raise OperationalError("INSERT", {}, sqlite3.OperationalError("database is locked"))
        return real_record(action, **kwargs)

    monkeypatch.setattr(audit, "record", busy_for_logins)
    response = browser.post("/login", {"username": "clin.north", "password": PASSWORD})
    assert response.status_code == 503
    assert "login_success" not in actions(app)
    with browser.client.session_transaction() as cookie:
        assert "_user_id" not in cookie  # no session the trail does not know of
    assert browser.get("/patients/").status_code == 302
    monkeypatch.setattr(audit, "record", real_record)
    assert (
        browser.post("/login", {"username": "clin.north", "password": PASSWORD}).status_code == 302
    )
    assert browser.get("/patients/").status_code == 200
