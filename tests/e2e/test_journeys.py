"""The main journey in a real browser: log in, add a patient, record a COWS with the keyboard
alone, read the scored and banded result and find it on the patient's timeline."""

import pytest

from .conftest import PASSWORD

pytestmark = pytest.mark.e2e


def focus_by_tab(page, selector: str, limit: int = 80) -> None:
    """Press Tab until the element matching ``selector`` has focus, as a keyboard user would."""
    for _ in range(limit):
        if page.evaluate("s => document.activeElement.matches(s)", selector):
            return
        page.keyboard.press("Tab")
    raise AssertionError(f"Tab never reached {selector}")


def log_in(page, base_url):
    page.goto(f"{base_url}/patients/")
    assert "/login" in page.url
    page.wait_for_function("document.activeElement && document.activeElement.id === 'username'")
    page.keyboard.type("clin.north")  # the username field has autofocus
    page.keyboard.press("Tab")
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Enter")
    page.wait_for_url(f"{base_url}/patients/")


def test_clinician_records_a_cows_by_keyboard_and_sees_it_scored(page, live_server):
    log_in(page, live_server)

    page.get_by_role("link", name="Add patient").first.click()
    page.get_by_label("Identifier (clinic number or study code)").fill("E2E-001")
    page.get_by_label("Opioid", exact=True).check()
    page.get_by_role("button", name="Add patient").click()
    assert page.get_by_role("heading", name="Patient E2E-001").is_visible()

    page.get_by_role("link", name="COWS").click()
    focus_by_tab(page, "#resting_pulse_bpm")
    page.keyboard.type("96")  # scores 1
    page.keyboard.press("Tab")  # the pulse score group: left to be derived from the rate
    # (item, arrow presses from the first option) for the ten other items
    answers = [1, 2, 0, 1, 2, 1, 0, 1, 2, 1]  # scores 1, 3, 0, 1, 2, 1, 0, 1, 2, 3
    for presses in answers:
        page.keyboard.press("Tab")
        if presses == 0:
            page.keyboard.press("Space")
        for _ in range(presses):
            page.keyboard.press("ArrowDown")
    page.keyboard.press("Tab")
    page.keyboard.type("Entered with the keyboard only.")
    page.keyboard.press("Tab")
    page.keyboard.press("Enter")

    page.wait_for_url("**/assessments/*")
    result = page.locator(".result").inner_text()
    assert "Total 15" in result
    assert "Moderate" in result
    assert "96" in page.locator("table").inner_text()

    page.get_by_role("link", name="Back to patient").click()
    timeline = page.locator("table.timeline").inner_text()
    assert "COWS" in timeline and "15" in timeline and "Moderate" in timeline


def test_a_rejected_entry_keeps_what_was_typed(page, live_server):
    log_in(page, live_server)
    page.get_by_role("link", name="Add patient").first.click()
    page.get_by_label("Identifier (clinic number or study code)").fill("E2E-002")
    page.get_by_label("Kratom", exact=True).check()
    page.get_by_role("button", name="Add patient").click()

    page.get_by_role("link", name="GAD-7").click()
    page.locator("input[name=nervous][value='2']").check()
    page.get_by_label("Notes (optional)").fill("half-filled form")
    page.get_by_role("button", name="Save assessment").click()

    summary = page.get_by_role("alert").first
    assert "Nothing was saved" in summary.inner_text()
    assert page.locator("input[name=nervous][value='2']").is_checked()
    assert page.get_by_label("Notes (optional)").input_value() == "half-filled form"
    assert "Answer this item" in page.locator("#cannot_stop_worrying").inner_text()
