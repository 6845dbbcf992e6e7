"""Logging in and out, safe redirects, who reaches which page, and the audit of it."""

import pytest
from sqlalchemy import func, select

from clinic_log.extensions import db
from clinic_log.models import AuditEvent, User


def audit_actions(app):
    with app.app_context():
        return [e.action for e in db.session.scalars(select(AuditEvent).order_by(AuditEvent.id))]


def test_login_page_has_the_contract_fields(browser):
    html = browser.get("/login").get_data(as_text=True)
    for name in ('name="username"', 'name="password"', 'name="csrf_token"'):
        assert name in html


def test_clinician_logs_in_and_lands_on_patient_list(browser, world, app):
    response = browser.login("clin.north")
    assert response.headers["Location"] == "/patients/"
    assert "login_success" in audit_actions(app)


def test_admin_lands_on_account_pages(browser, world):
    assert browser.login("admin.one").headers["Location"] == "/admin/"


@pytest.mark.parametrize("username", ["clin.north", "nobody.here"])
def test_wrong_password_and_unknown_user_get_the_same_answer(browser, world, app, username):
    response = browser.post("/login", {"username": username, "password": "wrong password!!"})
    assert response.status_code == 200
    assert "Unknown username or wrong password." in response.get_data(as_text=True)
    assert audit_actions(app)[-1] == "login_failure"


def test_failed_login_keeps_the_username_typed(browser, world):
    response = browser.post("/login", {"username": "clin.north", "password": "wrong password!!"})
    assert 'value="clin.north"' in response.get_data(as_text=True)


def test_deactivated_user_cannot_log_in(browser, world, app):
    with app.app_context():
        db.session.execute(
            db.update(User).where(User.username == "clin.north").values(active=False)
        )
        db.session.commit()
    response = browser.post(
        "/login", {"username": "clin.north", "password": "correct horse battery staple"}
    )
    assert response.status_code == 200
    assert "Unknown username or wrong password." in response.get_data(as_text=True)


def test_login_without_csrf_token_is_refused(browser, world):
    response = browser.post(
        "/login", {"username": "clin.north", "password": "correct horse battery staple"}, csrf=False
    )
    assert response.status_code == 400
    assert browser.get("/patients/").status_code == 302


def test_credentials_in_a_get_do_not_log_in(browser, world):
    browser.get("/login?username=clin.north&password=correct+horse+battery+staple")
    assert browser.get("/patients/").status_code == 302


@pytest.mark.parametrize(
    "next_url, expected",
    [
        ("/patients/", "/patients/"),
        ("https://evil.example/", "/patients/"),
        ("//evil.example/", "/patients/"),
        ("/\\evil.example", "/patients/"),
        ("javascript:alert(1)", "/patients/"),
        ("/admin/", "/admin/"),
    ],
)
def test_next_redirect_only_goes_to_this_site(browser, world, next_url, expected):
    response = browser.post(
        f"/login?next={next_url}",
        {"username": "clin.north", "password": "correct horse battery staple"},
        token_from="/login",
    )
    assert response.status_code == 302
    assert response.headers["Location"] == expected


def test_anonymous_visitor_is_sent_to_login_with_next(browser, world):
    response = browser.get("/patients/")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login?next=")


def test_logout_ends_the_session_and_a_copied_cookie(app, world, make_browser):
    browser = make_browser()
    browser.login("clin.north")
    stolen = browser.client.get_cookie("session").value
    assert browser.logout().status_code == 302
    assert browser.get("/patients/").status_code == 302

    attacker = make_browser()
    attacker.client.set_cookie("session", stolen)
    assert attacker.get("/patients/").status_code == 302
    assert "logout" in audit_actions(app)


def test_logout_needs_post_with_csrf(browser, world):
    browser.login("clin.north")
    assert browser.get("/logout").status_code == 405
    browser.post("/logout", csrf=False)
    assert browser.get("/patients/").status_code == 200


def test_login_starts_a_fresh_session(browser, world):
    with browser.client.session_transaction() as session:
        session["left_over"] = "from before login"
    browser.login("clin.north")
    with browser.client.session_transaction() as session:
        assert "left_over" not in session


def test_admin_sees_no_clinical_pages(browser, world, app):
    browser.login("admin.one")
    assert browser.get("/patients/").status_code == 403
    assert browser.get(f"/patients/{world['patient_n'].id}").status_code == 403
    assert audit_actions(app)[-1] == "access_refused"


def test_clinician_cannot_open_admin_pages(browser, world):
    browser.login("clin.north")
    assert browser.get("/admin/").status_code == 403


def test_admin_page_lists_sites_and_accounts(browser, world):
    browser.login("admin.one")
    html = browser.get("/admin/").get_data(as_text=True)
    assert "NORTH" in html and "SOUTH" in html and "clin.north" in html
    assert "N-001" not in html


def test_passwords_are_stored_hashed(app_ctx, world):
    user = db.session.scalar(select(User).where(User.username == "clin.north"))
    assert user.password_hash.startswith("scrypt:")
    assert "correct horse" not in user.password_hash


def test_production_hash_method_is_owasp_scrypt(app):
    assert app.config["PASSWORD_HASH_METHOD"] == "scrypt:1024:8:1"  # lowered for tests only
    from clinic_log import create_app

    production = create_app({"DATABASE_URL": "sqlite://", "SECRET_KEY": "k" * 40})
    assert production.config["PASSWORD_HASH_METHOD"] == "scrypt:131072:8:1"


def test_usernames_are_case_insensitive_at_login(browser, world):
    assert browser.login("CLIN.North").status_code == 302


def test_failed_logins_are_counted(browser, world, app):
    for _ in range(2):
        browser.post("/login", {"username": "clin.north", "password": "wrong password!!"})
    with app.app_context():
        count = db.session.scalar(
            select(User.failed_login_count).where(func.lower(User.username) == "clin.north")
        )
    assert count == 2
