"""The supervisor's journey in a real browser: log in with the second factor, land on the
dashboard, work through the review queue, sign an entry off with the password again, and read
the sign-off and the refusals in the entry's history and the audit trail."""

import re

import pytest

from clinic_log.assessments.services import record_assessment
from clinic_log.database import now_utc
from clinic_log.extensions import db
from clinic_log.models import Patient, User
from clinic_log.scale_registry import get_scale

from .conftest import PASSWORD, log_in

pytestmark = pytest.mark.e2e


def record_own_entry(app) -> int:
    """An entry the supervisor recorded themselves (supervisors may record too)."""
    with app.app_context():
        supervisor = db.session.execute(
            db.select(User).where(User.username == "sup.north")
        ).scalar_one()
        patient = db.session.execute(
            db.select(Patient).where(Patient.identifier == "SEED-001")
        ).scalar_one()
        scale = get_scale("symptom_nrs")
        entry = record_assessment(
            supervisor, patient, scale, {i.key: 2 for i in scale.items}, observed_at=now_utc()
        )
        return entry.id


def test_supervisor_signs_off_from_the_queue_and_reads_the_audit_trail(page, live_server):
    own_id = record_own_entry(live_server.app)
    log_in(page, live_server, "sup.north")

    # Home for a supervisor: the dashboard of patients with an open episode.
    assert page.url == f"{live_server}/dashboard/"
    assert page.get_by_role("heading", name="Dashboard").is_visible()
    assert "1 patient with an open episode" in page.locator(".page-head").inner_text()
    row = page.locator("table.dashboard tbody tr").filter(has_text="SEED-001")
    assert row.count() == 1 and "COWS" in row.inner_text()

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Review queue").click()
    assert page.get_by_role("heading", name="Review queue").is_visible()
    # The supervisor's own entry waits apart, on a tab of its own, for another supervisor.
    assert "8 entries wait for your sign-off" in page.locator("main").inner_text()
    page.get_by_role("link", name="Recorded by you — another supervisor signs (1)").click()
    own_row = page.locator("table.data tbody tr")
    assert own_row.count() == 1 and own_row.locator(f"a[href='/assessments/{own_id}']").count()
    assert "Recorded by you — another supervisor signs" in own_row.inner_text()
    assert own_row.get_by_role("link", name="Review and sign").count() == 0
    page.get_by_role("link", name="To sign (8)").click()
    rows = page.locator("table.data tbody tr")
    assert rows.count() == 8

    # The oldest entry first; it was recorded by the clinician.
    first = rows.first
    assert "Casey Clinician" in first.inner_text()
    first.get_by_role("link", name="Review and sign").click()
    entry_id = int(re.search(r"/assessments/(\d+)", page.url).group(1))
    sign = page.get_by_role("region", name="Sign off as reviewed")
    assert sign.is_visible()

    # A wrong password signs nothing and says so next to the field.
    sign.get_by_label("Your password (to sign)").fill("not my password at all")
    sign.get_by_role("button", name="Sign off").click()
    field = page.get_by_label("Your password (to sign)")
    assert field.get_attribute("aria-invalid") == "true"
    described = field.get_attribute("aria-describedby")
    error = page.locator(f"#{described}")
    assert error.get_attribute("role") == "alert"
    assert "That is not your password. Nothing was signed." in error.inner_text()
    assert page.locator(".signature").count() == 0

    field.fill(PASSWORD)
    page.get_by_role("button", name="Sign off").click()
    page.wait_for_url(f"{live_server}/assessments/{entry_id}")
    assert "Signed off as reviewed." in page.get_by_role("status").first.inner_text()
    assert "Signed “reviewed” by Sam Supervisor" in page.locator(".signature").inner_text()
    assert page.get_by_role("region", name="Sign off as reviewed").count() == 0

    page.get_by_role("link", name="History", exact=True).click()
    history = page.locator("ol.versions").inner_text()
    assert "Recorded by Casey Clinician" in history
    assert "Signed “reviewed” by Sam Supervisor" in history

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Review queue").click()
    assert "7 entries wait for your sign-off" in page.locator("main").inner_text()
    assert page.locator(f"table.data a[href='/assessments/{entry_id}']").count() == 0

    # The audit trail, narrowed to the patient, tells who did what to this entry and why.
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Audit trail").click()
    page.get_by_label("Patient identifier").fill("SEED-001")
    page.get_by_role("button", name="Filter").click()
    events = page.locator("table.audit tbody tr").filter(
        has=page.locator(f"a[href='/assessments/{entry_id}/history']")
    )
    lines = [" | ".join(cells.split("\t")[1:5]) for cells in events.all_inner_texts()]
    # Each line names the entry by scale, number, patient and local time.
    what = events.first.locator("td").nth(3).inner_text()
    assert re.fullmatch(
        rf"[\w -]+ entry #{entry_id} of SEED-001, observed \d{{4}}-\d\d-\d\d \d\d:\d\d \w+", what
    ), what
    assert lines == [
        f"sup.north | assessment review | {what} | ",
        f"sup.north | review refused | {what} | That is not your password. Nothing was signed.",
        f"clin.north | assessment create | {what} | ",
    ]


def test_supervisor_cannot_sign_off_their_own_entry(page, live_server):
    own_id = record_own_entry(live_server.app)
    log_in(page, live_server, "sup.north")

    # The page of their own entry offers no sign-off, and says why.
    page.goto(f"{live_server}/assessments/{own_id}")
    sign = page.get_by_role("region", name="Sign off as reviewed")
    assert "You recorded this entry, so another supervisor must sign it off." in sign.inner_text()
    assert sign.get_by_role("button", name="Sign off").count() == 0

    # A sign-off form pointed at their own entry (another entry's form, edited) is refused.
    page.goto(f"{live_server}/assessments/1")
    form = page.get_by_role("region", name="Sign off as reviewed").locator("form")
    assert form.get_attribute("action") == "/assessments/1/sign"
    form.evaluate("(f, id) => { f.action = `/assessments/${id}/sign`; }", own_id)
    form.get_by_label("Your password (to sign)").fill(PASSWORD)
    form.get_by_role("button", name="Sign off").click()
    page.wait_for_load_state()
    assert page.url == f"{live_server}/assessments/{own_id}/sign"
    assert "You recorded this entry" in page.locator("main").inner_text()
    assert page.locator(".signature").count() == 0

    page.goto(f"{live_server}/audit/?action=review_refused")
    refused = page.locator("table.audit tbody tr").first.inner_text()
    assert f"entry #{own_id} of SEED-001" in refused
    assert "You recorded this entry; another supervisor must sign it." in refused
