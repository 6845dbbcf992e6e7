"""Security catalogue G11, emergency ("break-glass") access (HIPAA §164.312(a)(2)(ii)).

An admin grants a clinician or supervisor time-boxed access to another site's patients, with a
required reason. While it is in force the person reaches that site exactly as a member does;
it ends by itself at its expiry (checked at request time) or when revoked. The grant, the
revocation, the review and every patient opened through it are audit events, and the grant
waits in the site's review queue until one of its supervisors has reviewed it.

Driven over HTTP as the admin, the clinician and the supervisor would use it
(conftest.Browser). Time moves by rewriting the stored times, never by sleeping.
"""

from __future__ import annotations

import html
import json
import re
from datetime import timedelta

import pytest
from conftest import GAD7
from pages import field_errors
from pages import readable_text as text_of
from sqlalchemy import func, select, update

from clinic_log import audit
from clinic_log.admin import services as admin_services
from clinic_log.database import begin_write, now_utc
from clinic_log.extensions import db
from clinic_log.models import Assessment, AuditEvent, Site, SiteAccessGrant, User

REASON = "Night cover for South Clinic: its on-call clinician is away, a patient needs review"
_CSRF = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')


# --------------------------------------------------------------------------- helpers


@pytest.fixture
def admin(login):
    return login("admin.one")


@pytest.fixture
def ids(world):
    """Plain ids, usable after the fixtures' objects have left their session."""
    return {
        "clin_n": world["clin_n"].id,
        "sup_n": world["sup_n"].id,
        "admin": world["admin"].id,
        "north": world["north"].id,
        "south": world["south"].id,
        "patient_s": world["patient_s"].id,
        "patient_n": world["patient_n"].id,
    }


def grant_url(user_id: int) -> str:
    return f"/admin/users/{user_id}/emergency-access/new"


def grant(admin, user_id: int, site="SOUTH", hours="4", reason=REASON):
    """Fill in and send the grant form as the admin (CSRF token from the form's page)."""
    data = {"site": site, "hours": hours, "reason": reason}
    return admin.post(grant_url(user_id), data)


def revoke(admin, user_id: int, grant_id: int):
    return admin.post(
        f"/admin/users/{user_id}/emergency-access/{grant_id}/revoke",
        token_from=f"/admin/users/{user_id}",
    )


def grants() -> list[SiteAccessGrant]:
    db.session.commit()  # end the test's own transaction: see what the requests committed
    return list(db.session.scalars(select(SiteAccessGrant).order_by(SiteAccessGrant.id)))


def events(action: str) -> list[dict]:
    db.session.commit()
    rows = db.session.scalars(
        select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)
    )
    return [
        {
            "username": row.username,
            "entity": row.entity,
            "entity_id": row.entity_id,
            "site_id": row.site_id,
            "patient_id": row.patient_id,
            "reason": row.reason,
            "details": json.loads(row.details),
        }
        for row in rows
    ]


def move_into_the_past(grant_id: int, hours_ago: float = 1) -> None:
    """Make a grant one that expired ``hours_ago`` hours ago, as if time had passed."""
    db.session.commit()
    begin_write(db.session)
    expired = now_utc() - timedelta(hours=hours_ago)
    db.session.execute(
        update(SiteAccessGrant)
        .where(SiteAccessGrant.id == grant_id)
        .values(granted_at=expired - timedelta(hours=4), expires_at=expired)
    )
    db.session.commit()


def gad_form(browser, patient_id: int) -> dict[str, str]:
    """The GAD-7 entry form as a browser would send it, every item answered 1."""
    page = browser.get(f"/patients/{patient_id}/assessments/new/gad7")
    assert page.status_code == 200
    body = page.get_data(as_text=True)
    values = dict(
        re.findall(r'<input[^>]*name="(submission_key|observed_at)"[^>]*value="([^"]*)"', body)
    )
    return {
        "csrf_token": _CSRF.search(body).group(1),
        "submission_key": values["submission_key"],
        "observed_at": values["observed_at"],
        **dict.fromkeys(GAD7, "1"),
    }


# --------------------------------------------------------------------------- granting


@pytest.mark.parametrize(
    ("reason", "message"),
    [
        ("", "Give the reason for emergency access"),
        ("    ", "Give the reason for emergency access"),
        ("x" * 501, "longer than 500"),
        ("urgent\x07cover", "control characters"),
        ("urgent\u202ecover", "text-direction"),
    ],
)
def test_G11_a_grant_without_a_proper_reason_is_422_at_the_field_and_writes_nothing(
    app, admin, ids, reason, message
):
    before = events("emergency_access_grant")
    response = grant(admin, ids["clin_n"], hours="8", reason=reason)
    assert response.status_code == 422
    assert message in field_errors(response, "reason"), response.get_data(as_text=True)
    page = response.get_data(as_text=True)
    # What the admin chose is still chosen.
    assert re.search(r'<option selected value="SOUTH">|<option value="SOUTH" selected>', page)
    assert re.search(r'value="8"[^>]*checked|checked[^>]*value="8"', page)
    if reason.strip() and len(reason) < 100:
        assert html.escape(reason.strip()) in page or reason.strip() in html.unescape(page)
    assert grants() == []
    assert events("emergency_access_grant") == before


@pytest.mark.parametrize("hours", ["", "0", "24", "2", "-4", "4.0", "1e1"])
def test_G11_only_the_offered_time_boxes_are_accepted(app, admin, ids, hours):
    response = grant(admin, ids["clin_n"], hours=hours)
    assert response.status_code == 422
    assert field_errors(response, "hours")
    assert grants() == []


def test_G11_with_a_reason_the_other_sites_patient_opens_as_for_a_member(app, admin, login, ids):
    clinician = login("clin.north")
    patient_url = f"/patients/{ids['patient_s']}"
    assert clinician.get(patient_url).status_code == 404
    refused = events("access_refused")
    assert refused[-1]["username"] == "clin.north" and refused[-1]["entity_id"] == ids["patient_s"]
    assert "S-001" not in text_of(clinician.get("/patients/"))

    response = grant(admin, ids["clin_n"], hours="4")
    assert response.status_code == 302
    [made] = grants()
    assert (made.user_id, made.site_id, made.granted_by_id) == (
        ids["clin_n"],
        ids["south"],
        ids["admin"],
    )
    assert made.reason == REASON and made.revoked_at is None
    assert timedelta(hours=4) == made.expires_at - made.granted_at
    assert abs(made.granted_at - now_utc()) < timedelta(minutes=1)

    # The same session, no new login: access applies at the next request.
    page = clinician.get(patient_url)
    assert page.status_code == 200
    assert "S-001" in text_of(page)
    assert "S-001" in text_of(clinician.get("/patients/"))
    assert clinician.get(f"/patients/{ids['patient_s']}/tracker").status_code == 200
    # The person is told, on every page, that the access is an emergency one.
    shown = text_of(page)
    assert "Emergency access to SOUTH" in shown and REASON in shown
    assert "Emergency access" in text_of(clinician.get("/patients/"))
    # Their own site is unchanged and writes no emergency event.
    assert clinician.get(f"/patients/{ids['patient_n']}").status_code == 200
    assert {e["patient_id"] for e in events("emergency_access_use")} == {ids["patient_s"]}


def test_G11_grant_and_use_are_audited_with_reason_expiry_and_the_patient(app, admin, login, ids):
    grant(admin, ids["clin_n"], hours="1")
    [made] = grants()
    [granted] = events("emergency_access_grant")
    assert granted["username"] == "admin.one"
    assert granted["entity"] == "site_access_grant" and granted["entity_id"] == made.id
    assert granted["site_id"] == ids["south"]
    assert granted["reason"] == REASON
    assert granted["details"]["username"] == "clin.north"
    assert granted["details"]["site"] == "SOUTH" and granted["details"]["hours"] == 1
    assert granted["details"]["expires_at"] == made.expires_at.isoformat()

    clinician = login("clin.north")
    assert clinician.get(f"/patients/{ids['patient_s']}").status_code == 200
    [used] = events("emergency_access_use")
    assert used["username"] == "clin.north"
    assert (used["site_id"], used["patient_id"]) == (ids["south"], ids["patient_s"])
    assert used["entity_id"] == made.id
    assert used["details"]["via"] == "emergency_access"
    assert used["details"]["path"] == f"/patients/{ids['patient_s']}"
    [viewed] = events("view_patient")
    assert viewed["patient_id"] == ids["patient_s"]
    assert viewed["details"]["via"] == "emergency_access"
    clinician.get(f"/patients/{ids['patient_n']}")
    assert "via" not in events("view_patient")[-1]["details"]  # an own site's patient
    assert audit.verify_chain()[1] is None


def test_G11_a_write_under_a_grant_follows_its_emergency_event(app, admin, login, ids):
    grant(admin, ids["clin_n"])
    clinician = login("clin.north")
    form = gad_form(clinician, ids["patient_s"])
    response = clinician.post(f"/patients/{ids['patient_s']}/assessments/new/gad7", form)
    assert response.status_code == 302, response.get_data(as_text=True)
    db.session.commit()
    entry = db.session.scalar(select(Assessment).where(Assessment.patient_id == ids["patient_s"]))
    assert entry.recorded_by_id == ids["clin_n"]
    trail = db.session.scalars(
        select(AuditEvent)
        .where(AuditEvent.username == "clin.north", AuditEvent.patient_id == ids["patient_s"])
        .order_by(AuditEvent.id.desc())
    ).all()
    created = next(i for i, event in enumerate(trail) if event.entity == "assessment")
    # The POST's own emergency event comes right before what it wrote.
    posted = next(e for e in trail[created + 1 :] if e.action == "emergency_access_use")
    assert json.loads(posted.details)["method"] == "POST"


def test_G11_access_ends_by_itself_at_the_expiry(app, admin, login, ids):
    grant(admin, ids["clin_n"], hours="1")
    clinician = login("clin.north")
    assert clinician.get(f"/patients/{ids['patient_s']}").status_code == 200
    [made] = grants()

    move_into_the_past(made.id, hours_ago=0.01)

    # The same logged-in session, no job run: refused at the next request, and audited.
    assert clinician.get(f"/patients/{ids['patient_s']}").status_code == 404
    assert events("access_refused")[-1]["entity_id"] == ids["patient_s"]
    page = text_of(clinician.get("/patients/"))
    assert "S-001" not in page and "Emergency access" not in page
    assert clinician.get("/exports/assessments.csv?site=SOUTH").status_code == 404


def test_G11_revoking_ends_access_at_the_next_request_and_is_audited(app, admin, login, ids):
    grant(admin, ids["clin_n"], hours="12")
    [made] = grants()
    clinician = login("clin.north")
    assert clinician.get(f"/patients/{ids['patient_s']}").status_code == 200

    assert revoke(admin, ids["clin_n"], made.id).status_code == 302
    assert clinician.get(f"/patients/{ids['patient_s']}").status_code == 404
    [revoked] = grants()
    assert revoked.revoked_by_id == ids["admin"] and revoked.revoked_at <= now_utc()
    [event] = events("emergency_access_revoke")
    assert event["username"] == "admin.one" and event["entity_id"] == made.id
    assert event["site_id"] == ids["south"] and event["details"]["username"] == "clin.north"

    again = revoke(admin, ids["clin_n"], made.id)
    assert again.status_code == 422
    assert "already ended" in text_of(again)
    assert len(events("emergency_access_revoke")) == 1
    # A new grant is possible once the old one has ended.
    assert grant(admin, ids["clin_n"], hours="1").status_code == 302


def test_G11_a_grant_to_another_persons_account_cannot_be_revoked_through_this_one(app, admin, ids):
    grant(admin, ids["clin_n"])
    [made] = grants()
    assert revoke(admin, ids["sup_n"], made.id).status_code == 404
    assert grants()[0].revoked_at is None


# --------------------------------------------------------------------------- who may grant


@pytest.mark.parametrize("username", ["clin.north", "sup.north", "clin.south"])
def test_G11_only_admins_grant_or_revoke_403_and_audited(app, admin, login, ids, username):
    grant(admin, ids["clin_n"])
    [made] = grants()
    before = len(events("access_refused"))
    browser = login(username)
    data = {"site": "SOUTH", "hours": "12", "reason": REASON}
    assert browser.get(grant_url(ids["sup_n"])).status_code == 403
    assert browser.post(grant_url(ids["sup_n"]), data, token_from="/patients/").status_code == 403
    url = f"/admin/users/{ids['clin_n']}/emergency-access/{made.id}/revoke"
    assert browser.post(url, token_from="/patients/").status_code == 403
    refused = events("access_refused")[before:]
    assert [(e["username"], e["details"]["status"]) for e in refused] == [(username, 403)] * 3
    assert len(grants()) == 1 and grants()[0].revoked_at is None


def test_G11_admins_inactive_accounts_and_own_sites_cannot_be_granted(app, admin, make_user, ids):
    other_admin = make_user("admin.two", "admin", [])
    gone = make_user("gone.south", "clinician", ["SOUTH"])
    begin_write(db.session)
    db.session.get(User, gone.id).active = False
    db.session.commit()

    for user_id in (other_admin.id, ids["admin"], gone.id):
        response = grant(admin, user_id, site="NORTH")
        assert response.status_code == 422, user_id
        assert "Only clinicians and supervisors" in text_of(response) or "deactivated" in text_of(
            response
        )
    # A site the person belongs to is not offered, and refused if sent anyway.
    page = admin.get(grant_url(ids["clin_n"])).get_data(as_text=True)
    assert 'value="SOUTH"' in page and 'value="NORTH"' not in page
    assert grant(admin, ids["clin_n"], site="NORTH").status_code == 422
    assert grant(admin, ids["clin_n"], site="NOWHERE").status_code == 422
    assert grants() == []
    assert events("emergency_access_grant") == []


def test_G11_a_second_grant_to_the_same_site_while_one_is_in_force_is_refused(app, admin, ids):
    assert grant(admin, ids["clin_n"], hours="1").status_code == 302
    response = grant(admin, ids["clin_n"], hours="12")
    assert response.status_code == 422
    assert "already has emergency access to SOUTH" in field_errors(response, "site")
    assert len(grants()) == 1


def test_G11_the_services_refuse_what_the_form_cannot_send(app_ctx, world):
    actor = db.session.get(User, world["admin"].id)
    clinician = db.session.get(User, world["clin_n"].id)
    with pytest.raises(admin_services.AdminRuleError) as caught:
        admin_services.grant_emergency_access(actor, clinician, "SOUTH", 24, REASON)
    assert caught.value.field == "hours"
    db.session.rollback()
    with pytest.raises(admin_services.AdminRuleError) as caught:
        admin_services.grant_emergency_access(actor, clinician, "SOUTH", 4, "line one\nline two")
    assert caught.value.field == "reason"
    db.session.rollback()
    with pytest.raises(admin_services.AdminRuleError) as caught:
        admin_services.grant_emergency_access(actor, clinician, "NORTH", 4, REASON)
    assert caught.value.field == "site" and "already belongs" in caught.value.message
    db.session.rollback()
    supervisor = db.session.get(User, world["sup_n"].id)
    with pytest.raises(admin_services.AdminRuleError) as caught:
        admin_services.grant_emergency_access(supervisor, clinician, "SOUTH", 4, REASON)
    assert "Only administrators" in caught.value.message
    db.session.rollback()
    assert db.session.scalar(select(func.count(SiteAccessGrant.id))) == 0


def test_G11_a_grant_reaches_nothing_once_the_account_is_no_longer_clinical(app, admin, login, ids):
    grant(admin, ids["clin_n"])
    clinician = login("clin.north")
    assert clinician.get(f"/patients/{ids['patient_s']}").status_code == 200
    begin_write(db.session)
    db.session.execute(update(User).where(User.id == ids["clin_n"]).values(role="admin"))
    db.session.commit()
    user = db.session.get(User, ids["clin_n"])
    assert user.emergency_grants == [] and ids["south"] not in user.site_ids


# --------------------------------------------------------------------------- review


@pytest.fixture
def sup_south(make_user):
    return make_user("sup.south", "supervisor", ["SOUTH"])


def test_G11_the_grant_waits_in_the_sites_review_queue_until_reviewed(
    app, admin, login, ids, sup_south
):
    grant(admin, ids["clin_n"], hours="8")
    [made] = grants()
    clinician = login("clin.north")
    clinician.get(f"/patients/{ids['patient_s']}")

    supervisor = login("sup.south")
    queue = text_of(supervisor.get("/review/"))
    assert "Emergency access to review" in queue
    for shown in ("Clin.North (clin.north", "SOUTH", REASON, "admin.one", "in force now", "S-001"):
        assert shown in queue, shown
    # North's supervisor is not South's reviewer.
    assert "Emergency access to review" not in text_of(login("sup.north").get("/review/"))

    review_url = f"/review/emergency-access/{made.id}/reviewed"
    # Still in force: reviewed once it has ended.
    early = supervisor.post(review_url, token_from="/review/")
    assert early.status_code == 422 and "still in force" in text_of(early)
    assert events("review_refused")[-1]["entity_id"] == made.id

    move_into_the_past(made.id)
    assert "expired" in text_of(supervisor.get("/review/"))
    assert supervisor.post(review_url, token_from="/review/").status_code == 302
    [reviewed] = grants()
    assert reviewed.reviewed_by_id == sup_south.id and reviewed.reviewed_at is not None
    [event] = events("emergency_access_review")
    assert event["username"] == "sup.south" and event["site_id"] == ids["south"]
    assert event["details"]["patients_opened"] == [ids["patient_s"]]
    assert "Emergency access to review" not in text_of(supervisor.get("/review/"))
    again = supervisor.post(review_url, token_from="/review/")
    assert again.status_code == 422 and "already been reviewed" in text_of(again)


def test_G11_only_a_supervisor_of_the_site_reviews_and_never_their_own_grant(
    app, admin, login, ids, sup_south
):
    grant(admin, ids["sup_n"])
    [made] = grants()
    move_into_the_past(made.id)
    review_url = f"/review/emergency-access/{made.id}/reviewed"
    # sup.north used it: South is not their site, so for them it does not exist.
    assert login("sup.north").post(review_url, token_from="/review/").status_code == 404
    assert login("clin.south").post(review_url, token_from="/patients/").status_code == 403
    assert grants()[0].reviewed_at is None

    # sup.south used a grant to North and later joined North: still not their own reviewer.
    grant(admin, sup_south.id, site="NORTH")
    own = grants()[-1]
    move_into_the_past(own.id)
    begin_write(db.session)
    joined = db.session.get(User, sup_south.id)
    joined.sites = [*joined.sites, db.session.get(Site, ids["north"])]
    db.session.commit()
    own_url = f"/review/emergency-access/{own.id}/reviewed"
    south_sup = login("sup.south")
    assert "Yours: another supervisor reviews it" in text_of(south_sup.get("/review/"))
    refused = south_sup.post(own_url, token_from="/review/")
    assert refused.status_code == 422 and "another supervisor reviews it" in text_of(refused)
    north_sup = login("sup.north")
    assert "Emergency access to review" in text_of(north_sup.get("/review/"))
    assert north_sup.post(own_url, token_from="/review/").status_code == 302
    assert grants()[-1].reviewed_by_id == ids["sup_n"]


def test_G11_grant_events_appear_in_the_sites_audit_trail(app, admin, login, ids, sup_south):
    grant(admin, ids["clin_n"])
    login("clin.north").get(f"/patients/{ids['patient_s']}")
    trail = text_of(login("sup.south").get("/audit/"))
    assert "emergency access grant" in trail and "emergency access use" in trail
    assert REASON in trail


def test_G11_a_grant_does_not_open_the_sites_audit_trail(
    app, admin, login, ids, add_assessment, world, sup_south
):
    """A supervisor under a grant reaches the site's patients, not its trail of who did what:
    that stays with the site's own supervisors."""
    add_assessment(world["patient_s"], world["clin_s"])
    add_assessment(world["patient_n"], world["clin_n"])
    grant(admin, ids["sup_n"])
    north_sup = login("sup.north")
    assert north_sup.get(f"/patients/{ids['patient_s']}").status_code == 200  # the grant works

    def trail(browser, query=""):  # the table of events, not the filter form above it
        page = browser.get(f"/audit/{query}").get_data(as_text=True)
        table = page.split('<table class="data audit">', 1)[1]
        return " ".join(re.sub(r"<[^>]+>", " ", table).split())

    own_trail = trail(north_sup)
    assert "clin.north" in own_trail and "assessment create" in own_trail
    assert "clin.south" not in own_trail
    assert "emergency access use" not in own_trail  # at SOUTH: SOUTH's trail shows it
    assert "No events match" in trail(north_sup, "?patient=S-001")
    south_trail = trail(login("sup.south"))
    assert "clin.south" in south_trail and "emergency access use" in south_trail


def test_G11_lists_showing_the_granted_sites_patients_are_audited_once_per_list(
    app, admin, login, ids, add_assessment, world, sup_south
):
    """The patient list, the dashboard and the review queue show a granted site's patients
    without opening them: each list writes one line per grant naming the patients it showed,
    and showing the same list again within the view window writes nothing more."""
    add_assessment(world["patient_s"], world["clin_s"])  # waits in SOUTH's review queue
    add_assessment(world["patient_n"], world["clin_n"])
    supervisor = login("sup.north")
    for url in ("/patients/", "/dashboard/", "/review/"):
        assert supervisor.get(url).status_code == 200
    assert events("emergency_access_list") == []  # no grant: only their own site, no line

    assert grant(admin, ids["sup_n"], hours="4").status_code == 302
    [made] = grants()
    grant_id = made.id
    for url in ("/patients/", "/dashboard/", "/review/", "/patients/", "/dashboard/"):
        page = supervisor.get(url)
        assert page.status_code == 200 and "S-001" in text_of(page), url
    listed = events("emergency_access_list")
    assert [line["details"]["list"] for line in listed] == [
        "patient list",
        "dashboard",
        "review queue",
    ]
    for line, path in zip(listed, ("/patients/", "/dashboard/", "/review/"), strict=True):
        assert line["username"] == "sup.north"
        assert (line["entity"], line["entity_id"]) == ("site_access_grant", grant_id)
        assert line["site_id"] == ids["south"] and line["patient_id"] is None
        # Their own site's patient is not an emergency access: only SOUTH's is named.
        assert line["details"]["patients"] == [ids["patient_s"]]
        assert line["details"]["via"] == "emergency_access"
        assert line["details"]["path"] == path
    # Listing opens nobody: the grant's review names no patient opened, and the lists.
    assert events("emergency_access_use") == []
    assert audit.verify_chain()[1] is None
    queue = text_of(login("sup.south").get("/review/"))
    assert "none Shown in lists: dashboard (1), patient list (1), review queue (1)" in queue
    # Once ended, the review records what the grant covered, lists included.
    move_into_the_past(grant_id)
    reviewer = login("sup.south")
    review_url = f"/review/emergency-access/{grant_id}/reviewed"
    assert reviewer.post(review_url, token_from="/review/").status_code == 302
    [reviewed] = events("emergency_access_review")
    assert reviewed["details"]["patients_opened"] == []
    assert reviewed["details"]["lists_seen"] == {
        "dashboard": 1,
        "patient list": 1,
        "review queue": 1,
    }


def test_G11_a_list_without_the_granted_sites_patients_writes_nothing(app, admin, login, ids):
    grant(admin, ids["clin_n"])
    clinician = login("clin.north")
    page = clinician.get("/patients/?q=N-001")
    assert page.status_code == 200 and "S-001" not in text_of(page)
    assert events("emergency_access_list") == []
    clinician.get("/patients/?q=S-001")
    [listed] = events("emergency_access_list")
    assert listed["details"]["path"] == "/patients/?q=S-001"
    assert listed["details"]["patients"] == [ids["patient_s"]]


# --------------------------------------------------------------------------- admin pages, cost


def test_G11_admin_pages_list_grants_with_their_state_and_no_clinical_data(app, admin, login, ids):
    grant(admin, ids["clin_n"], hours="4")
    login("clin.north").get(f"/patients/{ids['patient_s']}")
    account = text_of(admin.get(f"/admin/users/{ids['clin_n']}"))
    assert "in force" in account and REASON in account and "Revoke now" in account
    overview = text_of(admin.get("/admin/"))
    assert "Emergency access in force" in overview and "clin.north" in overview
    [made] = grants()
    revoke(admin, ids["clin_n"], made.id)
    account = text_of(admin.get(f"/admin/users/{ids['clin_n']}"))
    assert "revoked by admin.one" in account and "Revoke now" not in account
    assert "Emergency access in force" not in text_of(admin.get("/admin/"))
    for url in (f"/admin/users/{ids['clin_n']}", grant_url(ids["clin_n"]), "/admin/"):
        page = admin.get(url).get_data(as_text=True)
        for clinical in ("S-001", "N-001", "/patients/"):
            assert clinical not in page, (url, clinical)


def test_G11_loading_the_user_costs_the_same_queries_with_or_without_a_grant(
    app, admin, login, ids, count_queries
):
    clinician = login("clin.north")
    clinician.get("/patients/")
    with count_queries() as without:
        assert clinician.get("/patients/").status_code == 200
    grant(admin, ids["clin_n"])
    clinician.get("/patients/")
    with count_queries() as with_grant:
        assert clinician.get("/patients/").status_code == 200
    # The access check itself costs nothing more; the banner loads the grant and its site.
    assert len(with_grant) <= len(without) + 2, (without, with_grant)
