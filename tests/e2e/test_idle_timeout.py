"""The idle timeout in a real browser: a half-filled entry submitted after the session timed
out is not saved, the user is told so plainly, logs in again on the spot, is taken back to the
form, and what they then save is saved exactly once."""

import re

import pytest
from sqlalchemy import func, select

from clinic_log.extensions import db
from clinic_log.models import Assessment, AuditEvent

from .conftest import PASSWORD, log_in

pytestmark = pytest.mark.e2e

NOTE = "Half-way through the COWS when called away."


def count(app, model, *conditions) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(model).where(*conditions))


def fill_half_a_cows(page) -> None:
    page.locator("#resting_pulse_bpm").fill("96")
    page.locator("input[name=sweating][value='2']").check()
    page.locator("input[name=restlessness][value='1']").check()
    page.get_by_label("Notes (optional)").fill(NOTE)


def test_a_form_sent_after_the_idle_timeout_is_not_saved_and_the_user_is_told(
    page, live_server, session_clock
):
    app = live_server.app
    cows = (Assessment.patient_id == 1, Assessment.scale_key == "cows")
    before = count(app, Assessment, *cows)

    log_in(page, live_server, "clin.north")
    page.goto(f"{live_server}/patients/1")
    # The "record" link: the summary above also links COWS to its flowsheet and its entries.
    page.get_by_role("link", name=re.compile(r"^COWS — ")).click()
    form_url = page.url
    assert form_url == f"{live_server}/patients/1/assessments/new/cows"
    fill_half_a_cows(page)

    session_clock.offset = 16 * 60  # away longer than the 15-minute idle timeout
    with page.expect_response(lambda r: r.request.method == "POST") as sent:
        page.get_by_role("button", name="Save assessment").click()
    assert sent.value.status == 401
    page.wait_for_load_state()
    alert = page.get_by_role("alert")
    assert "ended after 15 minutes without activity" in alert.inner_text()
    assert "What you just submitted was NOT saved" in alert.inner_text()
    assert page.get_by_role("heading", name="Log in").is_visible()
    assert count(app, Assessment, *cows) == before
    assert count(app, AuditEvent, AuditEvent.action == "session_timeout") == 1

    # Logging in again right there takes the clinician back to the form, and saves nothing
    # by itself: the old submission is not replayed behind their back.
    page.get_by_label("Username").fill("clin.north")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(form_url)
    assert count(app, Assessment, *cows) == before
    assert page.get_by_label("Notes (optional)").input_value() == ""

    fill_half_a_cows(page)
    for item in ("pupil_size", "bone_joint_aches", "runny_nose_tearing", "gi_upset", "tremor",
                 "yawning", "anxiety_irritability", "gooseflesh"):  # fmt: skip
        page.locator(f"input[name={item}][value='0']").check()
    page.get_by_role("button", name="Save assessment").click()
    page.wait_for_url(f"{live_server}/assessments/*")
    assert "Total 4" in page.locator(".result").inner_text()  # pulse 1, sweating 2, restless 1
    assert count(app, Assessment, *cows) == before + 1
    assert count(app, Assessment, *cows, Assessment.notes == NOTE) == 1
