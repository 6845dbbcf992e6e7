"""Accessibility of the main pages in a real browser: axe-core finds no serious or critical
violation, and the pages stay usable on a tablet and at 200% zoom."""

import os
from pathlib import Path

import pyotp
import pytest

from .conftest import PASSWORD, SUPERVISOR_TOTP_SECRET, log_in

pytestmark = pytest.mark.e2e

AXE = Path(__file__).resolve().parent / "node_modules" / "axe-core" / "axe.min.js"
CLINICIAN_PAGES = [
    "/patients/",
    "/patients/new",
    "/patients/1",
    "/patients/1/assessments/new/cows",
    "/patients/1/tracker",
    "/assessments/1",
    "/assessments/1/history",
    "/exports/",
    "/account/password",
]
# The entry page shows a supervisor the sign-off form.
SUPERVISOR_PAGES = ["/dashboard/", "/review/", "/audit/", "/assessments/1"]


@pytest.fixture(scope="module")
def axe_source():
    if not AXE.exists():
        message = "axe-core is not installed: run npm ci --prefix tests/e2e"
        if os.environ.get("CLINIC_LOG_E2E_REQUIRED"):
            pytest.fail(message)
        pytest.skip(message)
    return AXE.read_text()


def serious_violations(page, axe_source):
    page.evaluate(axe_source)
    result = page.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")
    return [
        f"{v['id']} ({v['impact']}): {v['help']} — {[n['target'] for n in v['nodes']][:3]}"
        for v in result["violations"]
        if v["impact"] in ("serious", "critical")
    ]


@pytest.fixture
def csp_free_page(browser_engine):
    # axe is injected as a script: the page's CSP (rightly) forbids that, so only this
    # checking context bypasses it.
    context = browser_engine.new_context(viewport={"width": 1280, "height": 900}, bypass_csp=True)
    page = context.new_page()
    page.set_default_timeout(10_000)
    yield page
    context.close()


def test_login_page_has_no_serious_violations(csp_free_page, live_server, axe_source):
    csp_free_page.goto(f"{live_server}/login")
    assert serious_violations(csp_free_page, axe_source) == []


def violations_by_page(page, live_server, axe_source, paths) -> dict[str, list[str]]:
    """The serious and critical violations of each page, by path (pages without any left out)."""
    problems = {}
    for path in paths:
        response = page.goto(live_server + path)
        # Not an error, login, second-factor or enrolment page standing in for the one meant.
        assert response.ok and page.url == live_server + path
        found = serious_violations(page, axe_source)
        if found:
            problems[path] = found
    return problems


def test_clinician_pages_have_no_serious_violations(csp_free_page, live_server, axe_source):
    log_in(csp_free_page, live_server, "clin.north")
    assert violations_by_page(csp_free_page, live_server, axe_source, CLINICIAN_PAGES) == {}


def test_a_form_with_errors_has_no_serious_violations(csp_free_page, live_server, axe_source):
    log_in(csp_free_page, live_server, "clin.north")
    csp_free_page.goto(f"{live_server}/patients/1/assessments/new/gad7")
    csp_free_page.get_by_role("button", name="Save assessment").click()
    csp_free_page.wait_for_load_state()
    assert "Nothing was saved" in csp_free_page.content()
    assert serious_violations(csp_free_page, axe_source) == []


def test_supervisor_pages_have_no_serious_violations(csp_free_page, live_server, axe_source):
    log_in(csp_free_page, live_server, "sup.north")
    assert violations_by_page(csp_free_page, live_server, axe_source, SUPERVISOR_PAGES) == {}


def test_second_factor_and_refused_signature_have_no_serious_violations(
    csp_free_page, live_server, axe_source
):
    page = csp_free_page
    page.goto(f"{live_server}/login")
    page.fill("#username", "sup.north")
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server}/login/code")
    problems = {"/login/code": serious_violations(page, axe_source)}
    page.get_by_label("6-digit code from your authenticator app").fill(
        pyotp.TOTP(SUPERVISOR_TOTP_SECRET).now()
    )
    page.get_by_role("button", name="Continue").click()
    page.wait_for_url(f"{live_server}/dashboard/")

    page.goto(f"{live_server}/assessments/1")
    page.get_by_label("Your password (to sign)").fill("not my password at all")
    page.get_by_role("button", name="Sign off").click()
    page.wait_for_load_state()
    assert "Nothing was signed" in page.get_by_role("alert").first.inner_text()
    problems["refused sign-off"] = serious_violations(page, axe_source)
    assert {where: found for where, found in problems.items() if found} == {}


def test_the_timeout_page_has_no_serious_violations(
    csp_free_page, live_server, axe_source, session_clock
):
    log_in(csp_free_page, live_server, "clin.north")
    csp_free_page.goto(f"{live_server}/patients/1/assessments/new/gad7")
    session_clock.offset = 16 * 60
    csp_free_page.get_by_role("button", name="Save assessment").click()
    csp_free_page.wait_for_load_state()
    assert "NOT saved" in csp_free_page.get_by_role("alert").inner_text()
    assert serious_violations(csp_free_page, axe_source) == []


ZOOM_PAGES = {
    # Every page of a clinician's day at the bedside.
    "clin.north": [
        "/patients/",
        "/patients/?show=due&sort=due",
        "/patients/1",
        "/patients/1?scale=gad7",
        "/patients/1/flowsheet/gad7",
        "/patients/1/tracker",
        "/patients/1/assessments/new/cows",
        "/patients/1/assessments/new/symptom_nrs",
        "/patients/new",
        "/assessments/1",
        "/assessments/1/amend",
        "/assessments/1/history",
        "/exports/",
    ],
    # Every page of a supervisor's day, the queue's own-entries tab and a patient's included.
    "sup.north": [
        "/dashboard/",
        "/review/",
        "/review/?show=own",
        "/review/?order=newest",
        "/audit/",
        "/assessments/1",
        "/assessments/1/history",
        "/patients/",
        "/patients/1",
        "/patients/1/tracker",
        "/exports/",
    ],
}


@pytest.mark.parametrize("username", list(ZOOM_PAGES))
@pytest.mark.parametrize(
    "width", [820, 768, 640], ids=["tablet-820", "tablet-768", "200-percent-zoom"]
)
def test_pages_fit_a_tablet_and_200_percent_zoom(browser_engine, live_server, width, username):
    # 200% zoom of a 1280-pixel window lays out like a 640-pixel one.
    context = browser_engine.new_context(viewport={"width": width, "height": 1000})
    page = context.new_page()
    log_in(page, live_server, username)
    wide = {}
    for path in ZOOM_PAGES[username]:
        response = page.goto(live_server + path)
        assert response.ok and page.url == live_server + path
        overflow = page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        if overflow > 1:
            wide[path] = overflow
    context.close()
    assert wide == {}


def test_a_refused_export_form_has_no_serious_violations(csp_free_page, live_server, axe_source):
    log_in(csp_free_page, live_server, "clin.north")
    refused = "/exports/assessments.csv?start=2026-03-05&end=2026-03-04&scale=gad7&layout=wide"
    response = csp_free_page.goto(live_server + refused)
    assert response.status == 400
    assert csp_free_page.locator("#end-errors[role=alert]").count() == 1
    assert serious_violations(csp_free_page, axe_source) == []
