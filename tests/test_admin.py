"""Admin pages: sites and accounts, driven over HTTP as an administrator would, plus the rules
of ``clinic_log.admin.services`` where a direct call says it more clearly.

Every change must be audited with before/after and never a password; non-admins are refused
everywhere; the pages show no clinical data.
"""

from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest
from conftest import PASSWORD
from sqlalchemy import func, select

from clinic_log import audit
from clinic_log.admin import services
from clinic_log.auth.services import check_password_rules
from clinic_log.database import now_utc
from clinic_log.extensions import db
from clinic_log.models import AuditEvent, Site, SiteAccessGrant, User
from clinic_log.patients.services import create_patient

OTP = re.compile(r'<code[^>]*id="one-time-password"[^>]*>([^<]+)</code>')
ADMIN_ACTIONS = (
    "emergency_access_grant",
    "emergency_access_revoke",
    "site_create",
    "site_update",
    "user_create",
    "user_update",
    "user_deactivate",
    "user_reactivate",
    "user_password_reset",
    "user_unlock",
    "user_sessions_ended",
)


# --------------------------------------------------------------------------- helpers


@pytest.fixture
def admin(world, make_browser):
    browser = make_browser()
    browser.login("admin.one")
    return browser


def account(app, username) -> User:
    with app.app_context():
        user = db.session.scalar(select(User).where(User.username == username))
        db.session.expunge(user) if user else None
        return user


def user_id(app, username) -> int:
    return account(app, username).id


def site_id(app, code) -> int:
    with app.app_context():
        return db.session.scalar(select(Site.id).where(Site.code == code))


def events(app, action, by="admin.one") -> list[dict]:
    """The audit events of one action by one user (not the fixtures' set-up), oldest first,
    as plain dicts with parsed details."""
    with app.app_context():
        rows = db.session.scalars(
            select(AuditEvent)
            .where(AuditEvent.action == action, AuditEvent.username == by)
            .order_by(AuditEvent.id)
        ).all()
        return [
            {
                "username": row.username,
                "entity": row.entity,
                "entity_id": row.entity_id,
                "site_id": row.site_id,
                "details": json.loads(row.details),
            }
            for row in rows
        ]


def admin_event_count(app) -> int:
    with app.app_context():
        return db.session.scalar(
            select(func.count(AuditEvent.id)).where(AuditEvent.action.in_(ADMIN_ACTIONS))
        )


def text(response) -> str:
    return response.get_data(as_text=True)


def one_time_password(response) -> str:
    match = OTP.search(text(response))
    assert match, text(response)
    return match.group(1)


def account_action(admin, app, username, action):
    """Press a button on the account page (CSRF token read from that page)."""
    uid = user_id(app, username)
    return admin.post(f"/admin/users/{uid}/{action}", token_from=f"/admin/users/{uid}")


def assert_signed_out(browser, url="/patients/"):
    response = browser.get(url)
    assert response.status_code == 302, url
    assert response.headers["Location"].startswith("/login"), response.headers["Location"]


# --------------------------------------------------------------------------- overview


def test_overview_lists_sites_and_accounts_with_their_state(app, admin, world):
    with app.app_context():
        db.session.execute(
            db.update(User)
            .where(User.username == "clin.south")
            .values(locked_until=now_utc() + timedelta(minutes=10), failed_login_count=5)
        )
        db.session.commit()
    html = text(admin.get("/admin/"))
    for expected in ("NORTH", "North Clinic", "Europe/London", "America/New_York"):
        assert expected in html
    assert "clin.north" in html and "sup.north" in html and "supervisor" in html
    assert "5 failed logins" in html and "never" in html  # locked account; no login yet
    assert '<th scope="col">Locked until (UTC)</th>' in html
    assert '<th scope="col">Last login (UTC)</th>' in html
    assert f'href="/admin/users/{world["clin_n"].id}"' in html
    assert f'href="/admin/sites/{world["north"].id}/edit"' in html


# --------------------------------------------------------------------------- sites


def test_admin_creates_a_site(app, admin):
    response = admin.post(
        "/admin/sites/new", {"code": "east", "name": "East Clinic", "timezone": "Asia/Tokyo"}
    )
    assert response.status_code == 302 and response.headers["Location"] == "/admin/"
    assert "Site EAST created." in text(admin.get("/admin/"))
    with app.app_context():
        site = db.session.scalar(select(Site).where(Site.code == "EAST"))
        assert (site.name, site.timezone) == ("East Clinic", "Asia/Tokyo")
    (event,) = events(app, "site_create")
    assert event["username"] == "admin.one" and event["entity_id"] == site.id
    assert event["details"] == {"code": "EAST", "name": "East Clinic", "timezone": "Asia/Tokyo"}


@pytest.mark.parametrize(
    ("field", "form", "message"),
    [
        ("timezone", {"timezone": "Mars/Olympus"}, "is not an IANA timezone name"),
        ("timezone", {"timezone": "europe/london"}, "upper and lower case matter"),
        ("timezone", {"timezone": "localtime"}, "is not an IANA timezone name"),
        ("code", {"code": "NORTH"}, "A site with code NORTH already exists."),
        ("code", {"code": "north"}, "A site with code NORTH already exists."),
        ("code", {"code": "two words"}, "A site code is 1-16 letters"),
        ("name", {"name": ""}, "Enter the site&#39;s name."),
    ],
)
def test_bad_site_input_is_422_with_the_message_at_the_field(app, admin, field, form, message):
    data = {"code": "WEST", "name": "West Clinic", "timezone": "Europe/Paris", **form}
    response = admin.post("/admin/sites/new", data)
    assert response.status_code == 422
    html = text(response)
    assert message in html
    # The message sits next to its field and is announced with it.
    assert f'id="{field}-errors"' in html
    assert re.search(rf'<input[^>]*aria-describedby="[^"]*{field}-errors"[^>]*id="{field}"', html)
    for name, value in data.items():  # what was typed is kept
        if value:
            assert f'value="{value}"' in html, name
    with app.app_context():
        assert db.session.scalar(select(func.count(Site.id))) == 2
    assert events(app, "site_create") == []


def test_admin_renames_a_site_and_changes_its_timezone(app, admin, world):
    sid = world["north"].id
    page = text(admin.get(f"/admin/sites/{sid}/edit"))
    assert 'value="North Clinic"' in page and 'value="Europe/London"' in page
    assert '<datalist id="timezone-names">' in page and '<option value="Asia/Tokyo">' in page
    response = admin.post(
        f"/admin/sites/{sid}/edit", {"name": "North Hospital", "timezone": "Europe/Dublin"}
    )
    assert response.status_code == 302
    with app.app_context():
        site = db.session.get(Site, sid)
        assert (site.code, site.name, site.timezone) == ("NORTH", "North Hospital", "Europe/Dublin")
    (event,) = events(app, "site_update")
    assert event["site_id"] == sid and event["username"] == "admin.one"
    assert event["details"] == {
        "code": "NORTH",
        "before": {"name": "North Clinic", "timezone": "Europe/London"},
        "after": {"name": "North Hospital", "timezone": "Europe/Dublin"},
    }


def test_saving_a_site_unchanged_writes_nothing(app, admin, world):
    sid = world["north"].id
    response = admin.post(
        f"/admin/sites/{sid}/edit", {"name": "North Clinic", "timezone": "Europe/London"}
    )
    assert response.status_code == 302
    assert "Nothing changed." in text(admin.get("/admin/"))
    assert events(app, "site_update") == []


def test_a_bad_timezone_on_edit_is_422_and_keeps_the_input(app, admin, world):
    sid = world["north"].id
    response = admin.post(
        f"/admin/sites/{sid}/edit", {"name": "North Hospital", "timezone": "Europe/Londn"}
    )
    assert response.status_code == 422
    html = text(response)
    assert "&#39;Europe/Londn&#39; is not an IANA timezone name" in html
    assert 'value="Europe/Londn"' in html and 'value="North Hospital"' in html
    with app.app_context():
        assert db.session.get(Site, sid).timezone == "Europe/London"
    assert events(app, "site_update") == []


# --------------------------------------------------------------------------- creating accounts


def new_account(admin, **overrides):
    data = {
        "username": "new.nurse",
        "display_name": "New Nurse",
        "role": "clinician",
        "sites": ["NORTH"],
        **overrides,
    }
    return admin.post("/admin/users/new", data)


def test_admin_creates_an_account_with_a_one_time_password_shown_once(app, admin, world):
    form = text(admin.get("/admin/users/new"))
    assert 'type="checkbox"' in form and 'value="SOUTH"' in form
    assert re.search(r'<input[^>]*checked[^>]*value="clinician"', form)  # clinician by default
    response = new_account(admin, sites=["NORTH", "SOUTH"])
    assert response.status_code == 200  # shown in this response: no redirect, no flash
    assert response.headers["Cache-Control"] == "no-store"
    password = one_time_password(response)
    assert len(password) >= 16
    check_password_rules(password, "new.nurse")
    assert "only time it is shown" in text(response)

    user = account(app, "new.nurse")
    assert user.must_change_password is True
    assert user.role == "clinician" and user.display_name == "New Nurse"
    assert password not in user.password_hash and user.password_hash.startswith("scrypt:")
    with app.app_context():
        user = db.session.get(User, user.id)
        assert [site.code for site in user.sites] == ["NORTH", "SOUTH"]

    (event,) = events(app, "user_create")
    assert event["username"] == "admin.one" and event["entity_id"] == user.id
    assert event["details"] == {
        "username": "new.nurse",
        "role": "clinician",
        "sites": ["NORTH", "SOUTH"],
    }

    # Nowhere else: not in the session, not flashed, not on any later page.
    with admin.client.session_transaction() as session:
        assert password not in json.dumps(dict(session), default=str)
    for url in ("/admin/", f"/admin/users/{user.id}", f"/admin/users/{user.id}/edit"):
        assert password not in text(admin.get(url)), url


def test_the_one_time_password_logs_in_and_must_then_be_changed(app, admin, login):
    password = one_time_password(new_account(admin))
    login("new.nurse", password)  # asserts the login was accepted
    user = account(app, "new.nurse")
    assert user.must_change_password is True and user.last_login_at is not None


def test_an_admin_account_needs_no_site(app, admin):
    response = new_account(admin, username="ops.two", role="admin", sites=[])
    assert response.status_code == 200
    assert account(app, "ops.two").role == "admin"


@pytest.mark.parametrize(
    ("field", "overrides", "message"),
    [
        ("username", {"username": "clin.north"}, "The username clin.north is taken."),
        ("username", {"username": "CLIN.North"}, "The username clin.north is taken."),
        ("username", {"username": "no spaces here"}, "A username is 2-64 lower-case letters"),
        ("sites", {"sites": []}, "Clinicians and supervisors need at least one site."),
        ("sites", {"role": "supervisor", "sites": []}, "need at least one site."),
        ("sites", {"sites": ["NOWHERE"]}, "is not a valid choice"),
        ("role", {"role": "superuser"}, "Not a valid choice"),
        ("role", {"role": ""}, "Choose a role."),
        ("display_name", {"display_name": ""}, "Enter the person&#39;s name."),
    ],
)
def test_bad_account_input_is_422_with_the_message_at_the_field(
    app, admin, field, overrides, message
):
    response = new_account(admin, **overrides)
    assert response.status_code == 422
    html = text(response)
    assert message in html
    assert f'id="{field}-errors"' in html
    assert OTP.search(html) is None
    typed = {"username": "new.nurse", "display_name": "New Nurse", **overrides}
    for name in ("username", "display_name"):  # what was typed is kept
        if typed[name]:
            assert f'value="{typed[name]}"' in html, name
    assert events(app, "user_create") == []


# --------------------------------------------------------------------------- account actions


def test_deactivation_ends_the_users_existing_session(app, admin, login):
    clinician = login("clin.north")
    assert clinician.get("/patients/").status_code == 200
    response = account_action(admin, app, "clin.north", "deactivate")
    assert response.status_code == 302
    assert response.headers["Location"] == f"/admin/users/{user_id(app, 'clin.north')}"
    assert_signed_out(clinician)
    assert account(app, "clin.north").active is False
    (event,) = events(app, "user_deactivate")
    assert event["username"] == "admin.one" and event["entity_id"] == user_id(app, "clin.north")
    assert event["details"] == {
        "username": "clin.north",
        "before": {"active": True},
        "after": {"active": False},
    }
    refused = clinician.post("/login", {"username": "clin.north", "password": PASSWORD})
    assert refused.status_code == 200  # the login form again, with its error


def test_a_deactivated_account_can_be_reactivated(app, admin, login):
    account_action(admin, app, "clin.north", "deactivate")
    response = account_action(admin, app, "clin.north", "reactivate")
    assert response.status_code == 302
    assert account(app, "clin.north").active is True
    (event,) = events(app, "user_reactivate")
    assert event["details"]["before"] == {"active": False}
    assert event["details"]["after"] == {"active": True}
    assert login("clin.north").get("/patients/").status_code == 200


def test_an_admin_cannot_deactivate_themself(app, admin):
    page = text(admin.get(f"/admin/users/{user_id(app, 'admin.one')}"))
    assert "You cannot deactivate your own account" in page
    assert "/deactivate" not in page  # no button to press
    response = account_action(admin, app, "admin.one", "deactivate")
    assert response.status_code == 422
    assert "You cannot deactivate your own account." in text(response)
    assert account(app, "admin.one").active is True
    assert events(app, "user_deactivate") == []
    assert admin.get("/admin/").status_code == 200  # still logged in


def test_deactivating_twice_and_reactivating_an_active_account_are_refused(app, admin):
    account_action(admin, app, "clin.north", "deactivate")
    again = account_action(admin, app, "clin.north", "deactivate")
    assert again.status_code == 422 and "already deactivated" in text(again)
    active = account_action(admin, app, "sup.north", "reactivate")
    assert active.status_code == 422 and "already active" in text(active)
    assert len(events(app, "user_deactivate")) == 1 and events(app, "user_reactivate") == []


def test_password_reset_gives_a_new_one_time_password_and_ends_sessions(app, admin, login):
    clinician = login("clin.north")
    before = account(app, "clin.north")
    response = account_action(admin, app, "clin.north", "reset-password")
    assert response.status_code == 200
    password = one_time_password(response)
    assert len(password) >= 16
    assert_signed_out(clinician)
    after = account(app, "clin.north")
    assert after.must_change_password is True
    assert after.password_hash != before.password_hash
    assert after.session_version == before.session_version + 1
    old = clinician.post("/login", {"username": "clin.north", "password": PASSWORD})
    assert old.status_code == 200  # the old password no longer works
    login("clin.north", password)
    (event,) = events(app, "user_password_reset")
    assert event["username"] == "admin.one"
    assert event["details"] == {
        "username": "clin.north",
        "before": {"must_change_password": False, "locked_until": None},
        "after": {"must_change_password": True, "locked_until": None},
    }


def test_each_one_time_password_is_replaced_by_the_next_reset(app, admin, login, make_browser):
    first = one_time_password(account_action(admin, app, "clin.north", "reset-password"))
    second = one_time_password(account_action(admin, app, "clin.north", "reset-password"))
    assert first != second
    refused = make_browser().post("/login", {"username": "clin.north", "password": first})
    assert refused.status_code == 200
    login("clin.north", second)


def test_unlock_clears_failed_logins_and_the_lockout(app, admin, login):
    until = now_utc() + timedelta(minutes=10)
    with app.app_context():
        db.session.execute(
            db.update(User)
            .where(User.username == "clin.north")
            .values(failed_login_count=5, locked_until=until)
        )
        db.session.commit()
    page = text(admin.get(f"/admin/users/{user_id(app, 'clin.north')}"))
    assert "Unlock" in page and until.strftime("%Y-%m-%d %H:%M") in page
    response = account_action(admin, app, "clin.north", "unlock")
    assert response.status_code == 302
    user = account(app, "clin.north")
    assert (user.failed_login_count, user.locked_until) == (0, None)
    (event,) = events(app, "user_unlock")
    assert event["details"]["before"] == {
        "failed_login_count": 5,
        "locked_until": until.isoformat(),
    }
    assert event["details"]["after"] == {"failed_login_count": 0, "locked_until": None}
    login("clin.north")


def test_after_an_unlock_one_wrong_password_does_not_lock_the_account_again(
    app, admin, make_browser
):
    guesser = make_browser()
    for _ in range(5):
        guesser.post("/login", {"username": "clin.north", "password": "wrong guess again"})
    assert account(app, "clin.north").locked_until is not None
    assert account_action(admin, app, "clin.north", "unlock").status_code == 302
    guesser.post("/login", {"username": "clin.north", "password": "one more typo here"})
    assert account(app, "clin.north").locked_until is None


def test_unlocking_an_account_that_is_not_locked_is_refused(app, admin):
    response = account_action(admin, app, "clin.north", "unlock")
    assert response.status_code == 422 and "is not locked" in text(response)
    assert events(app, "user_unlock") == []


def test_end_sessions_logs_the_user_out_everywhere(app, admin, login):
    first, second = login("clin.north"), login("clin.north")
    version = account(app, "clin.north").session_version
    response = account_action(admin, app, "clin.north", "end-sessions")
    assert response.status_code == 302
    assert_signed_out(first)
    assert_signed_out(second)
    (event,) = events(app, "user_sessions_ended")
    assert event["details"]["before"] == {"session_version": version}
    assert event["details"]["after"] == {"session_version": version + 1}
    assert login("clin.north").get("/patients/").status_code == 200  # may log in again


def test_role_change_applies_at_once_and_is_audited(app, admin, login):
    clinician = login("clin.north")
    uid = user_id(app, "clin.north")
    page = text(admin.get(f"/admin/users/{uid}/edit"))
    assert re.search(r'<input[^>]*checked[^>]*value="NORTH"', page)
    assert re.search(r'<input[^>]*checked[^>]*value="clinician"', page)
    response = admin.post(
        f"/admin/users/{uid}/edit",
        {"display_name": "Clin North", "role": "supervisor", "sites": ["NORTH", "SOUTH"]},
    )
    assert response.status_code == 302 and response.headers["Location"] == f"/admin/users/{uid}"
    assert_signed_out(clinician)  # the old role's session is over
    supervisor = login("clin.north")
    assert supervisor.get("/review/").status_code == 200
    (event,) = events(app, "user_update")
    assert event["details"] == {
        "username": "clin.north",
        "before": {"display_name": "Clin.North", "role": "clinician", "sites": ["NORTH"]},
        "after": {"display_name": "Clin North", "role": "supervisor", "sites": ["NORTH", "SOUTH"]},
        "sessions_ended": True,
    }


def test_site_change_keeps_the_session_and_applies_at_the_next_request(app, admin, login, world):
    clinician = login("clin.north")
    south_patient = f"/patients/{world['patient_s'].id}"
    assert clinician.get(south_patient).status_code == 404
    uid = user_id(app, "clin.north")
    admin.post(
        f"/admin/users/{uid}/edit",
        {"display_name": "Clin.North", "role": "clinician", "sites": ["NORTH", "SOUTH"]},
    )
    assert clinician.get(south_patient).status_code == 200
    (event,) = events(app, "user_update")
    assert event["details"]["sessions_ended"] is False


def test_saving_an_account_unchanged_writes_nothing(app, admin):
    uid = user_id(app, "clin.north")
    response = admin.post(
        f"/admin/users/{uid}/edit",
        {"display_name": "Clin.North", "role": "clinician", "sites": ["NORTH"]},
    )
    assert response.status_code == 302
    assert "Nothing changed." in text(admin.get(f"/admin/users/{uid}"))
    assert events(app, "user_update") == []


@pytest.mark.parametrize(
    ("username", "form", "field", "message"),
    [
        ("clin.north", {"sites": []}, "sites", "Clinicians and supervisors need at least one"),
        ("sup.north", {"role": "supervisor", "sites": []}, "sites", "need at least one site"),
        ("admin.one", {"role": "clinician"}, "role", "You cannot change your own role"),
    ],
)
def test_bad_account_changes_are_422_at_the_field(app, admin, username, form, field, message):
    before = account(app, username)
    data = {"display_name": "Someone Else", "role": before.role, "sites": ["NORTH"], **form}
    response = admin.post(f"/admin/users/{before.id}/edit", data)
    assert response.status_code == 422
    html = text(response)
    assert message in html and f'id="{field}-errors"' in html
    assert 'value="Someone Else"' in html  # the typed name is kept
    after = account(app, username)
    assert (after.role, after.display_name) == (before.role, before.display_name)
    assert events(app, "user_update") == []


# --------------------------------------------------------------------------- refusals


def test_unknown_ids_are_404(app, admin):
    assert admin.get("/admin/users/9999").status_code == 404
    assert admin.get("/admin/users/9999/edit").status_code == 404
    assert admin.get("/admin/sites/9999/edit").status_code == 404
    for action in ("deactivate", "reactivate", "reset-password", "unlock", "end-sessions"):
        response = admin.post(f"/admin/users/9999/{action}", token_from="/admin/")
        assert response.status_code == 404, action
    assert admin.get("/admin/users/9999/emergency-access/new").status_code == 404
    refused = events(app, "access_refused")
    assert refused[-1]["entity"] == "user" and refused[-1]["entity_id"] == 9999
    uid = user_id(app, "clin.north")
    response = admin.post(f"/admin/users/{uid}/emergency-access/9999/revoke", token_from="/admin/")
    assert response.status_code == 404
    refused = events(app, "access_refused")
    assert refused[-1]["entity"] == "site_access_grant" and refused[-1]["entity_id"] == 9999


def admin_urls(app, world) -> list[tuple[str, str]]:
    """(method, URL) of every admin route, with the ids of real objects."""
    ids = {"site_id": world["north"].id, "user_id": world["clin_n"].id, "grant_id": 1}
    urls = []
    for rule in app.url_map.iter_rules():
        if not rule.endpoint.startswith("admin."):
            continue
        url = re.sub(r"<(?:\w+:)?(\w+)>", lambda m: str(ids[m.group(1)]), rule.rule)
        urls += [(method, url) for method in ("GET", "POST") if method in rule.methods]
    return urls


def snapshot(app):
    with app.app_context():
        users = db.session.scalars(select(User).order_by(User.id)).all()
        sites = db.session.scalars(select(Site).order_by(Site.id)).all()
        grants = db.session.scalars(select(SiteAccessGrant).order_by(SiteAccessGrant.id)).all()
        return (
            [(u.username, u.role, u.active, u.session_version, u.password_hash) for u in users],
            [(s.code, s.name, s.timezone) for s in sites],
            [(g.user_id, g.site_id, g.expires_at, g.revoked_at) for g in grants],
            admin_event_count(app),
        )


@pytest.mark.parametrize("username", ["clin.north", "sup.north"])
def test_non_admins_get_403_on_every_admin_route(app, world, login, username):
    browser = login(username)
    before = snapshot(app)
    urls = admin_urls(app, world)
    assert len(urls) >= 13
    for method, url in urls:
        if method == "GET":
            response = browser.get(url)
        else:
            data = {"code": "X", "name": "X", "timezone": "UTC", "role": "admin"}
            response = browser.post(url, data, token_from="/patients/")
        assert response.status_code == 403, (method, url)
    assert snapshot(app) == before


def test_anonymous_visitors_are_sent_to_login(app, world, browser):
    for method, url in admin_urls(app, world):
        if method == "GET":
            response = browser.get(url)
            assert response.status_code == 302, url
            assert response.headers["Location"].startswith("/login"), url


def test_posts_without_a_csrf_token_are_refused(app, world, admin):
    before = snapshot(app)
    data = {
        "code": "EAST",
        "name": "East",
        "timezone": "UTC",
        "username": "sneaky",
        "display_name": "Sneaky",
        "role": "admin",
        "sites": ["NORTH"],
    }
    for method, url in admin_urls(app, world):
        if method != "POST":
            continue
        response = admin.post(url, data, csrf=False)
        assert response.status_code in (400, 422), url
        html = text(response).lower()
        assert "expired" in html or "csrf" in html, url
        assert OTP.search(text(response)) is None, url
    assert snapshot(app) == before


def test_admin_pages_show_no_clinical_data(app, admin, world, add_assessment):
    patient = create_patient(
        world["clin_n"],
        world["north"],
        "ZQ-77123",
        "Bed 9 QX",
        now_utc() - timedelta(days=1),
        "kratom",
        "",
    )
    add_assessment(patient, world["clin_n"])
    uid, sid = world["clin_n"].id, world["north"].id
    responses = [
        admin.get(url)
        for url in (
            "/admin/",
            "/admin/sites/new",
            f"/admin/sites/{sid}/edit",
            "/admin/users/new",
            f"/admin/users/{uid}",
            f"/admin/users/{uid}/edit",
            f"/admin/users/{uid}/emergency-access/new",
        )
    ]
    responses.append(account_action(admin, app, "clin.north", "reset-password"))
    responses.append(new_account(admin))
    for response in responses:
        assert response.status_code == 200
        html = text(response)
        for clinical in ("ZQ-77123", "Bed 9 QX", "N-001", "S-001", "/patients/", "COWS"):
            assert clinical not in html, (response.request.path, clinical)


# --------------------------------------------------------------------------- services


def test_one_time_passwords_are_long_random_and_pass_the_rules(app_ctx):
    passwords = {services.generate_one_time_password("clin.north") for _ in range(200)}
    assert len(passwords) == 200
    for password in passwords:
        assert len(password) >= 16
        check_password_rules(password, "clin.north")


def test_timezone_names_are_iana_zones_only(app_ctx):
    names = services.timezone_names()
    assert "Europe/London" in names and "UTC" in names
    assert "localtime" not in names and "Factory" not in names
    assert list(names) == sorted(names)


def test_services_refuse_with_the_field_named(app_ctx, world):
    actor = db.session.get(User, world["admin"].id)
    with pytest.raises(services.AdminRuleError) as caught:
        services.add_site(actor, "EAST", "East", "Nowhere/Special")
    assert caught.value.field == "timezone"
    db.session.rollback()
    with pytest.raises(services.AdminRuleError) as caught:
        services.add_account(actor, "x.y", "X Y", "clinician", [])
    assert caught.value.field == "sites"
    db.session.rollback()
    with pytest.raises(services.AdminRuleError) as caught:
        services.deactivate_account(actor, actor)
    assert caught.value.field is None and "your own account" in caught.value.message


def test_admin_audit_events_hold_no_password_and_the_chain_verifies(app, admin, login):
    passwords = [one_time_password(new_account(admin))]
    passwords.append(one_time_password(account_action(admin, app, "clin.north", "reset-password")))
    account_action(admin, app, "clin.north", "unlock")
    account_action(admin, app, "sup.north", "end-sessions")
    account_action(admin, app, "sup.north", "deactivate")
    account_action(admin, app, "sup.north", "reactivate")
    uid = user_id(app, "clin.south")
    admin.post(
        f"/admin/users/{uid}/edit",
        {"display_name": "C South", "role": "supervisor", "sites": ["SOUTH"]},
    )
    admin.post("/admin/sites/new", {"code": "EAST", "name": "East", "timezone": "UTC"})
    admin.post(f"/admin/sites/{site_id(app, 'EAST')}/edit", {"name": "East 2", "timezone": "UTC"})
    uid = user_id(app, "clin.north")
    emergency = {"site": "SOUTH", "hours": "1", "reason": "Night cover at South"}
    assert admin.post(f"/admin/users/{uid}/emergency-access/new", emergency).status_code == 302
    with app.app_context():
        grant_id = db.session.scalar(select(SiteAccessGrant.id))
    revoked = admin.post(
        f"/admin/users/{uid}/emergency-access/{grant_id}/revoke", token_from=f"/admin/users/{uid}"
    )
    assert revoked.status_code == 302
    with app.app_context():
        rows = db.session.scalars(select(AuditEvent)).all()
        hashes = [u.password_hash for u in db.session.scalars(select(User))]
        seen = {row.action for row in rows}
        assert seen >= set(ADMIN_ACTIONS) - {"user_unlock"}
        for row in rows:
            blob = f"{row.details} {row.reason or ''}"
            assert "password_hash" not in blob
            for secret in passwords + hashes + [PASSWORD]:
                assert secret not in blob, row.action
        assert audit.verify_chain()[1] is None
