"""Credentials: every password typed again counts toward the lockout like a failed login, the
second factor changes only with the password (and the current code), admin-issued one-time
passwords expire, and parallel requests get no more tries or code uses than single ones.

The parallel tests send real parallel requests (one thread and one test client each, released
together by a barrier). On PostgreSQL the transactions truly overlap; on SQLite the write lock
takes them in turn; both must give the same answer.
"""

from __future__ import annotations

import json
import re
import time
from datetime import timedelta

import pyotp
import pytest
from concurrency import race_all_answered
from conftest import GAD7, PASSWORD, Browser
from pages import field_errors, input_val
from pages import readable_text as text_of
from sqlalchemy import select, update

from clinic_log import create_app
from clinic_log.assessments.services import record_assessment
from clinic_log.auth import services as auth
from clinic_log.config import ConfigError
from clinic_log.database import now_utc
from clinic_log.extensions import db
from clinic_log.models import AuditEvent, Signature, User
from clinic_log.scale_registry import get_scale

WRONG = "not my password at all"
NEW_PASSWORD = "a fresh passphrase of mine"
SECRET_ON_PAGE = re.compile(r'<code class="secret">([A-Z2-7]+)</code>')
OTP = re.compile(r'<code[^>]*id="one-time-password"[^>]*>([^<]+)</code>')

# --------------------------------------------------------------------------- helpers


def fresh() -> None:
    """End the test session's transaction so reads see what the requests committed."""
    db.session.commit()


def account(username: str) -> User:
    fresh()
    return db.session.scalar(select(User).where(User.username == username))


def events(action: str) -> list[AuditEvent]:
    fresh()
    return list(
        db.session.scalars(
            select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)
        )
    )


def set_account(username: str, **values) -> None:
    fresh()
    with db.engine.begin() as conn:
        conn.execute(update(User).where(User.username == username).values(**values))


def no_login_rate_limit(app) -> None:
    """The parallel tests send many logins from one address; the per-address brake is not
    what they are about."""
    app.config["LOGIN_ATTEMPTS_PER_MINUTE"] = 1_000_000
    limiter = app.extensions.get("clinic_log.login_limiter")
    if limiter is not None and hasattr(limiter, "limit"):
        limiter.limit = 1_000_000


@pytest.fixture
def entry(world):
    """An unreviewed GAD-7 entry at North, recorded by the clinician."""

    def _entry() -> int:
        scale = get_scale("gad7")
        assessment = record_assessment(
            world["clin_n"],
            world["patient_n"],
            scale,
            dict.fromkeys(GAD7, 1),
            observed_at=now_utc() - timedelta(hours=1),
        )
        return assessment.id

    return _entry


def sign(browser, entry_id: int, password: str):
    page = browser.get(f"/assessments/{entry_id}")
    return browser.post(
        f"/assessments/{entry_id}/sign",
        {"password": password, "version": input_val(page, "version")},
        token_from=f"/assessments/{entry_id}",
    )


def sign_trend(browser, patient_id: int, password: str):
    page = browser.get(f"/patients/{patient_id}/tracker")
    return browser.post(
        f"/patients/{patient_id}/tracker/sign",
        {"password": password, "shown": input_val(page, "shown")},
        token_from=f"/patients/{patient_id}/tracker",
    )


def change_password(browser, current: str, new: str = NEW_PASSWORD):
    return browser.post(
        "/account/password",
        {"current_password": current, "password": new, "confirm": new},
        token_from="/account/password",
    )


def secret_shown(browser) -> str:
    page = browser.get("/account/mfa")
    assert page.status_code == 200
    return SECRET_ON_PAGE.search(page.get_data(as_text=True)).group(1)


def enrol(browser, password: str = PASSWORD, current_code: str | None = None, **extra):
    secret = secret_shown(browser)
    data = {"password": password, "code": pyotp.TOTP(secret).now(), **extra}
    if current_code is not None:
        data["current_code"] = current_code
    return secret, browser.post("/account/mfa", data, token_from="/account/mfa")


def fail_login(browser, username="sup.north"):
    return browser.post("/login", {"username": username, "password": WRONG})


# --------------------------------------------------------------------------- R05 re-entry


def test_wrong_sign_off_passwords_count_toward_the_lockout_and_are_audited(
    app_ctx, world, entry, login, make_browser
):
    entry_id, sup = entry(), login("sup.north")
    for _ in range(2):
        refused = sign(sup, entry_id, WRONG)
        assert refused.status_code == 422
        assert "That is not your password. Nothing was signed." in text_of(refused)
    for _ in range(2):
        assert sign_trend(sup, world["patient_n"].id, WRONG).status_code == 422
    assert account("sup.north").failed_login_count == 4
    failures = events("reentry_failure")
    assert [json.loads(e.details) for e in failures] == [
        {"locked": False, "purpose": "sign", "step": "password"},
    ] * 2 + [{"locked": False, "purpose": "trend_sign", "step": "password"}] * 2
    assert {(e.username, e.entity_id) for e in failures} == {("sup.north", world["sup_n"].id)}
    # One more wrong password, at the login form this time, is the fifth: the account locks.
    fail_login(make_browser())
    assert account("sup.north").locked_until is not None
    assert len(events("account_locked")) == 1
    assert (
        make_browser().post("/login", {"username": "sup.north", "password": PASSWORD}).status_code
        == 200
    )


def test_a_wrong_current_password_at_the_password_change_counts_and_is_audited(
    app_ctx, world, login, make_browser
):
    browser = login("clin.north")
    for _ in range(4):
        response = change_password(browser, WRONG)
        assert response.status_code == 422
        assert "current password is not right" in field_errors(response, "current_password")
    assert account("clin.north").failed_login_count == 4
    details = [json.loads(e.details) for e in events("reentry_failure")]
    assert details == [{"locked": False, "purpose": "password_change", "step": "password"}] * 4
    fail_login(make_browser(), "clin.north")
    assert account("clin.north").locked_until is not None


def test_the_fifth_wrong_reentry_locks_the_account_and_ends_the_session(
    app_ctx, world, entry, login
):
    entry_id = entry()
    sup, other = login("sup.north"), login("sup.north")
    for _ in range(4):
        assert sign(sup, entry_id, WRONG).status_code == 422
    fifth = sign(sup, entry_id, WRONG)
    # No page about the patient for a session that has just ended: straight to the login page.
    assert fifth.status_code == 302 and fifth.headers["Location"].startswith("/login")
    page = text_of(sup.get("/login"))
    assert "locked for 15 minutes" in page and "logged out" in page
    assert "Nothing was signed" in page
    assert sup.get(f"/assessments/{entry_id}").status_code == 302
    assert other.get("/review/").status_code == 302  # every session of the account ended
    user = account("sup.north")
    assert user.locked_until is not None and user.locked_until > now_utc()
    locked = events("account_locked")
    assert len(locked) == 1 and '"purpose":"sign"' in locked[0].details
    assert db.session.scalar(select(Signature.id)) is None


def test_a_fifth_wrong_current_password_at_the_password_change_ends_the_session(
    app_ctx, world, login
):
    browser = login("clin.north")
    for _ in range(4):
        assert change_password(browser, WRONG).status_code == 422
    fifth = change_password(browser, WRONG)
    assert fifth.status_code == 302 and fifth.headers["Location"].startswith("/login")
    assert "you are logged out" in text_of(browser.get("/login"))
    assert browser.get("/patients/").status_code == 302
    assert account("clin.north").locked_until is not None
    # Locked: even the right password does not log in now.
    again = browser.post("/login", {"username": "clin.north", "password": PASSWORD})
    assert again.status_code == 200


def test_while_locked_a_reentry_with_the_right_password_signs_nothing(
    app_ctx, world, entry, login, make_browser
):
    entry_id, sup = entry(), login("sup.north")
    attacker = make_browser()
    for _ in range(5):
        fail_login(attacker)
    refused = sign(sup, entry_id, PASSWORD)
    assert refused.status_code == 422
    assert "locked" in field_errors(refused, "password")
    assert db.session.scalar(select(Signature.id)) is None
    last = events("reentry_failure")[-1]
    assert '"locked":true' in last.details and '"purpose":"sign"' in last.details


def test_a_right_reentered_password_resets_the_count_as_a_login_does(
    app_ctx, world, entry, login, make_browser
):
    entry_id, sup = entry(), login("sup.north")
    for _ in range(4):
        sign(sup, entry_id, WRONG)
    assert sign(sup, entry_id, PASSWORD).status_code == 302
    assert account("sup.north").failed_login_count == 0
    for _ in range(4):
        fail_login(make_browser())
    assert account("sup.north").locked_until is None


# --------------------------------------------------------------------------- R06 second factor


def test_the_enrolment_page_carries_no_secret_in_the_form(world, login):
    browser = login("clin.north")
    page = browser.get("/account/mfa").get_data(as_text=True)
    assert 'name="secret"' not in page
    assert SECRET_ON_PAGE.search(page)  # shown for typing into the app, never posted back


def test_a_secret_sent_by_the_client_is_never_enrolled(app_ctx, world, login):
    browser = login("clin.north")
    chosen = pyotp.random_base32()
    browser.get("/account/mfa")
    response = browser.post(
        "/account/mfa",
        {"password": PASSWORD, "secret": chosen, "code": pyotp.TOTP(chosen).now()},
        token_from="/account/mfa",
    )
    assert response.status_code == 422
    assert "does not match" in field_errors(response, "code")
    assert account("clin.north").totp_secret is None


def test_enrolment_uses_the_secret_the_server_generated(app_ctx, world, login):
    browser = login("clin.north")
    secret, response = enrol(browser)
    assert response.status_code == 302, text_of(response)
    assert account("clin.north").totp_secret == secret
    assert [e.username for e in events("mfa_enrol")] == ["clin.north"]


def test_enrolment_needs_the_current_password_which_counts_toward_the_lockout(
    app_ctx, world, login
):
    browser = login("clin.north")
    _secret, missing = enrol(browser, password="")
    assert missing.status_code == 422 and field_errors(missing, "password")
    _secret, wrong = enrol(browser, password=WRONG)
    assert wrong.status_code == 422
    assert "not your password" in field_errors(wrong, "password")
    # The code typed is kept; the password never is.
    assert input_val(wrong, "code") and input_val(wrong, "password") in ("", None)
    user = account("clin.north")
    assert user.totp_secret is None and user.failed_login_count == 1
    (failure,) = events("reentry_failure")
    assert '"purpose":"mfa_change"' in failure.details


def test_replacing_the_second_factor_needs_the_current_code(app_ctx, world, login):
    browser = login("clin.north")
    first, _ = enrol(browser)
    assert account("clin.north").totp_secret == first
    # Logging in again needs a code; a fresh session to change it from.
    browser = Browser(browser.client.application.test_client())
    browser.post("/login", {"username": "clin.north", "password": PASSWORD})
    assert (
        browser.post("/login/code", {"code": pyotp.TOTP(first).at(time.time() + 30)}).status_code
        == 302
    )
    page = browser.get("/account/mfa")
    assert 'name="current_code"' in page.get_data(as_text=True)
    # As if the codes used so far were minutes ago, so the app now shows an unused one.
    set_account("clin.north", totp_last_step=None)
    _, without = enrol(browser)
    assert without.status_code == 422 and field_errors(without, "current_code")
    _, wrong = enrol(browser, current_code="000000")
    assert wrong.status_code == 422 and "not right" in field_errors(wrong, "current_code")
    assert account("clin.north").totp_secret == first
    second, replaced = enrol(browser, current_code=pyotp.TOTP(first).now())
    assert replaced.status_code == 302, text_of(replaced)
    assert account("clin.north").totp_secret == second != first
    assert json.loads(events("reentry_failure")[-1].details) == {
        "locked": False,
        "purpose": "mfa_change",
        "step": "code",
    }


# --------------------------------------------------------------------------- R07 one-time passwords


def reset_by_admin(login, app, username="clin.north") -> str:
    admin = login("admin.one")
    with app.app_context():
        uid = db.session.scalar(select(User.id).where(User.username == username))
    page = admin.post(f"/admin/users/{uid}/reset-password", token_from=f"/admin/users/{uid}")
    return OTP.search(page.get_data(as_text=True)).group(1)


def later(monkeypatch, hours: float) -> None:
    """Move the app's clock forward (the login and the lockout read it from auth.services)."""
    real = auth.now_utc
    monkeypatch.setattr(auth, "now_utc", lambda: real() + timedelta(hours=hours))


def test_a_one_time_password_works_within_its_time(app, world, login, make_browser, monkeypatch):
    one_time = reset_by_admin(login, app)
    later(monkeypatch, 71)
    response = make_browser().post("/login", {"username": "clin.north", "password": one_time})
    assert response.status_code == 302


def test_an_expired_one_time_password_is_refused_with_a_clear_message(
    app, world, login, make_browser, monkeypatch
):
    one_time = reset_by_admin(login, app)
    later(monkeypatch, 73)
    browser = make_browser()
    response = browser.post("/login", {"username": "clin.north", "password": one_time})
    assert response.status_code == 200
    assert "This one-time password has expired: ask an administrator for a new one." in text_of(
        response
    )
    assert browser.get("/patients/").status_code == 302
    # Someone without the password learns nothing: the answer to a wrong one is the usual one.
    wrong = make_browser().post("/login", {"username": "clin.north", "password": WRONG})
    assert "expired" not in text_of(wrong)
    assert "Unknown username or wrong password" in text_of(wrong)
    with app.app_context():
        (event,) = events("one_time_password_expired")
        assert event.username == "clin.north"


def test_a_new_account_s_one_time_password_expires_by_the_setting(
    app, world, login, make_browser, monkeypatch
):
    app.config["ONE_TIME_PASSWORD_HOURS"] = 2
    admin = login("admin.one")
    page = admin.post(
        "/admin/users/new",
        {
            "username": "new.person",
            "display_name": "New Person",
            "role": "clinician",
            "sites": ["NORTH"],
        },
        token_from="/admin/users/new",
    )
    one_time = OTP.search(page.get_data(as_text=True)).group(1)
    later(monkeypatch, 3)
    response = make_browser().post("/login", {"username": "new.person", "password": one_time})
    assert "one-time password has expired" in text_of(response)


def test_a_password_the_user_chose_does_not_expire(app, world, login, make_browser, monkeypatch):
    one_time = reset_by_admin(login, app)
    browser = make_browser()
    browser.login("clin.north", one_time)
    assert change_password(browser, one_time).status_code == 302
    later(monkeypatch, 24 * 30)
    assert make_browser().login("clin.north", NEW_PASSWORD).status_code == 302


def test_one_time_password_hours_is_a_checked_setting(tmp_path, monkeypatch):
    base = {"DATABASE_URL": "sqlite://", "INSTANCE_PATH": str(tmp_path), "SECRET_KEY": "k" * 40}
    assert create_app(base).config["ONE_TIME_PASSWORD_HOURS"] == 72
    monkeypatch.setenv("CLINIC_LOG_ONE_TIME_PASSWORD_HOURS", "24")
    assert create_app(base).config["ONE_TIME_PASSWORD_HOURS"] == 24
    for bad in (0, -1, "soon", 24 * 366):
        with pytest.raises(ConfigError, match="ONE_TIME_PASSWORD_HOURS"):
            create_app({**base, "ONE_TIME_PASSWORD_HOURS": bad})


# --------------------------------------------------------------------------- R12, R13 in parallel

PARALLEL = 8


def test_one_code_sent_in_parallel_is_accepted_once(app, world):
    no_login_rate_limit(app)
    secret = pyotp.random_base32()
    with app.app_context():
        set_account("clin.north", totp_secret=secret, totp_last_step=None)
    for round_ in range(3):
        browsers = [Browser(app.test_client()) for _ in range(PARALLEL)]
        for browser in browsers:
            step_one = browser.post("/login", {"username": "clin.north", "password": PASSWORD})
            assert step_one.headers["Location"] == "/login/code"
        code = pyotp.TOTP(secret).at(time.time() + 30 * (round_ - 1))
        tokens = [b.csrf_token("/login/code") for b in browsers]
        results = race_all_answered(
            *(
                lambda b=b, t=t, c=code: b.client.post(
                    "/login/code", data={"code": c, "csrf_token": t}
                )
                for b, t in zip(browsers, tokens, strict=True)
            )
        )
        accepted = [r for r in results if r.status_code == 302]
        assert len(accepted) == 1, f"round {round_}: {len(accepted)} logins with one code"
        with app.app_context():
            set_account("clin.north", failed_login_count=0, locked_until=None)


def test_parallel_wrong_passwords_get_no_more_tries_than_the_lockout_allows(
    app, world, monkeypatch
):
    no_login_rate_limit(app)
    with app.app_context():
        real_hash = account("sup.north").password_hash
    tried = []
    check = auth.check_password_hash

    def slow_check(pwhash, password):
        if pwhash == real_hash:
            tried.append(password)
            time.sleep(0.05)  # a production-cost hash takes longer than this
        return check(pwhash, password)

    monkeypatch.setattr(auth, "check_password_hash", slow_check)
    for round_ in range(3):
        tried.clear()
        browsers = [Browser(app.test_client()) for _ in range(2 * PARALLEL)]
        tokens = [b.csrf_token() for b in browsers]
        results = race_all_answered(
            *(
                lambda b=b, t=t: b.client.post(
                    "/login", data={"username": "sup.north", "password": WRONG, "csrf_token": t}
                )
                for b, t in zip(browsers, tokens, strict=True)
            )
        )
        assert all(r.status_code == 200 for r in results)
        assert len(tried) <= auth.LOCKOUT_FAILURES, f"round {round_}: {len(tried)} tries"
        with app.app_context():
            user = account("sup.north")
            assert user.locked_until is not None and user.locked_until > now_utc()
            assert len(events("account_locked")) == round_ + 1
        assert (
            Browser(app.test_client())
            .post("/login", {"username": "sup.north", "password": PASSWORD})
            .status_code
            == 200
        )
        with app.app_context():
            set_account("sup.north", failed_login_count=0, locked_until=None)
