"""CSV export in a real browser: the form, the download, and a file Python's csv module reads
back with its provenance notes, the test's own patient, and hostile text made harmless."""

import csv
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from clinic_log.exports.services import IDENTIFIED_BASE
from clinic_log.product import NO_ADVICE_NOTICE
from clinic_log.scale_registry import get_scale

from .conftest import log_in

pytestmark = pytest.mark.e2e

HOSTILE_ID = "=E2E-EXP+1"  # what a spreadsheet would run as a formula
HOSTILE_NOTE = '=HYPERLINK("http://example.invalid","x") typed as a note'
GAD7_ITEMS = [
    "nervous", "cannot_stop_worrying", "worry_too_much", "trouble_relaxing", "restless",
    "irritable", "afraid",
]  # fmt: skip


def site_today() -> str:
    return datetime.now(ZoneInfo("Europe/London")).date().isoformat()


def add_patient_with_gad7(page, base_url) -> None:
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Add patient").click()
    page.get_by_label("Identifier (clinic number or study code)").fill(HOSTILE_ID)
    page.get_by_label("Opioid", exact=True).check()
    page.get_by_role("button", name="Add patient").click()
    page.get_by_role("link", name="GAD-7").click()
    for key in GAD7_ITEMS:
        page.locator(f"input[name={key}][value='1']").check()
    page.get_by_label("Notes (optional)").fill(HOSTILE_NOTE)
    page.get_by_role("button", name="Save assessment").click()
    page.wait_for_url(f"{base_url}/assessments/*")


def fill_export_form(page, start: str, end: str) -> None:
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Export").click()
    page.get_by_label("Site", exact=True).select_option("NORTH")
    page.get_by_label("Scale", exact=True).select_option("gad7")
    page.get_by_label("Wide: one row per assessment").check()
    page.get_by_label("From (site local day, optional)").fill(start)
    page.get_by_label("To (included, optional)").fill(end)


def test_export_downloads_a_csv_that_parses_with_provenance(page, live_server):
    log_in(page, live_server, "clin.north")
    add_patient_with_gad7(page, live_server)
    today = site_today()
    yesterday = (datetime.fromisoformat(today) - timedelta(days=1)).date().isoformat()
    fill_export_form(page, yesterday, today)

    with page.expect_download() as info:
        page.get_by_role("button", name="Download CSV").click()
    download = info.value
    assert download.suggested_filename == "clinic_log-NORTH-all-patients-identified-wide-gad7.csv"
    with open(download.path(), newline="", encoding="utf-8") as fh:
        text = fh.read()
    assert not text.startswith("\ufeff")  # the Excel option was not ticked

    lines = text.splitlines()
    notes = [line[2:] for line in lines if line.startswith("# ")]
    assert notes[:2] == ["clinic_log export of withdrawal symptom assessments", NO_ADVICE_NOTICE]
    assert "generated_by: clin.north (Casey Clinician)" in notes
    assert (
        f"filters: site=NORTH; patient=all; scale=gad7; start={yesterday}; end={today}; "
        "dates_in=Europe/London; layout=wide; profile=identified; versions=active"
    ) in notes
    assert "rows: 1" in notes
    with live_server.app.app_context():
        version = get_scale("gad7").version
    assert f"scale versions: gad7 v{version}" in notes

    rows = list(csv.reader(line for line in lines if not line.startswith("#")))
    header, body = rows[0], rows[1:]
    assert header == IDENTIFIED_BASE + GAD7_ITEMS + ["not_assessed"]
    assert len(body) == 1
    row = dict(zip(header, body[0], strict=True))
    # Text a spreadsheet would run comes back with the protective apostrophe, intact otherwise.
    assert row["patient_identifier"] == "'" + HOSTILE_ID
    assert row["notes"] == "'" + HOSTILE_NOTE
    assert row["site"] == "NORTH" and row["scale"] == "gad7"
    assert row["total"] == "7" and row["band"] == "Mild" and row["status"] == "active"
    assert row["recorded_by"] == "Casey Clinician"
    assert [row[key] for key in GAD7_ITEMS] == ["1"] * 7
    assert row["observed_at_local"][:10] in (yesterday, today)
    # The seeded patient has no GAD-7, and the page stayed on the form.
    assert page.url == f"{live_server}/exports/"


def test_a_refused_export_says_why_next_to_the_field_and_keeps_the_form(page, live_server):
    log_in(page, live_server, "clin.north")
    today = site_today()
    yesterday = (datetime.fromisoformat(today) - timedelta(days=1)).date().isoformat()
    fill_export_form(page, today, yesterday)  # the end before the start
    page.get_by_role("button", name="Download CSV").click()
    page.wait_for_load_state()

    assert page.get_by_role("heading", name="Export assessments as CSV").count() == 1
    end = page.get_by_label("To (included, optional)")
    assert end.get_attribute("aria-invalid") == "true"
    error = page.locator(f"#{end.get_attribute('aria-describedby')}")
    assert error.get_attribute("role") == "alert"
    assert "The end date is before the start date." in error.inner_text()
    assert page.get_by_label("From (site local day, optional)").input_value() == today
    assert end.input_value() == yesterday
    assert page.get_by_label("Scale", exact=True).input_value() == "gad7"
    assert page.get_by_label("Wide: one row per assessment").is_checked()


def test_a_link_on_another_site_starts_no_export_but_the_address_bar_does(page, live_server):
    """The session cookie (SameSite=Lax) goes with a link followed from any site; the browser's
    Sec-Fetch-Site says where the link was, and only our own pages and typed addresses export."""
    log_in(page, live_server, "clin.north")
    export_url = f"{live_server}/exports/assessments.csv?layout=long"
    elsewhere = "http://elsewhere.invalid/"
    page.route(
        elsewhere,
        lambda route: route.fulfill(
            content_type="text/html", body=f'<a id="go" href="{export_url}">results</a>'
        ),
    )
    page.goto(elsewhere)
    with page.expect_response(export_url) as answer:
        page.click("#go")
    assert answer.value.status == 403
    assert "This export was not started" in page.content()
    # Typed into the address bar (Sec-Fetch-Site: none): the file downloads.
    page.goto(f"{live_server}/")
    with page.expect_download() as info:
        page.evaluate(f"window.location.href = {export_url!r}")
    assert info.value.suggested_filename == (
        "clinic_log-all-sites-all-patients-identified-long-all-scales.csv"
    )
