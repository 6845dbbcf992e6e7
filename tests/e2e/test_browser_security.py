"""Security checks only a real browser can make (catalogue B07 and F11): stored markup never
runs, the CSP blocks inline script, and after logout the Back button shows no patient data."""

import pytest

from clinic_log.database import now_utc
from clinic_log.extensions import db
from clinic_log.models import Patient, Site, User
from clinic_log.patients.services import create_patient

from .conftest import log_in

pytestmark = pytest.mark.e2e

PAYLOADS = (
    '<img src=x onerror="window.__pwned=1">',
    "<script>window.__pwned=2</script>",
    '"><svg onload="window.__pwned=3">',
)


def _hostile_patient(app) -> int:
    """A patient whose label and episode note carry markup, stored as typed."""
    with app.app_context():
        site = db.session.scalar(db.select(Site).where(Site.code == "NORTH"))
        user = db.session.scalar(db.select(User).where(User.username == "clin.north"))
        patient = create_patient(
            user, site, "XSS-001", PAYLOADS[0], now_utc(), "opioid", " ".join(PAYLOADS)
        )
        return patient.id


def test_B07_stored_markup_is_shown_as_text_and_never_runs(page, live_server):
    patient_id = _hostile_patient(live_server.app)
    blocked = []
    page.on("console", lambda message: blocked.append(message.text))
    log_in(page, live_server, "clin.north")
    for path in (f"/patients/{patient_id}", "/patients/", f"/patients/{patient_id}/tracker"):
        page.goto(live_server + path)
        page.wait_for_load_state("load")
        assert page.evaluate("window.__pwned") is None, path
        assert page.locator("img[src=x], svg[onload]").count() == 0, path
    page.goto(f"{live_server}/patients/{patient_id}")
    assert PAYLOADS[0] in page.locator("h1").inner_text()


def test_B07_the_csp_stops_an_inline_script_even_if_one_got_in(page, live_server):
    log_in(page, live_server, "clin.north")
    page.goto(f"{live_server}/patients/")
    # As if a template had slipped: an inline script added to the page is refused by the CSP.
    page.evaluate(
        """() => { const s = document.createElement('script');
                   s.textContent = 'window.__pwned = 4'; document.body.appendChild(s); }"""
    )
    assert page.evaluate("window.__pwned") is None


def test_F11_back_after_logout_shows_no_patient_data(page, live_server):
    log_in(page, live_server, "clin.north")
    with live_server.app.app_context():
        patient_id = db.session.scalar(
            db.select(Patient.id).where(Patient.identifier == "SEED-001")
        )
    page.goto(f"{live_server}/patients/{patient_id}")
    assert "SEED-001" in page.content()
    page.get_by_role("button", name="Log out").click()
    page.wait_for_url("**/login**")
    page.go_back()
    page.wait_for_load_state("load")
    # The browser asks the server again (no-store, and Vary: Cookie with a changed cookie),
    # and the ended session gets the login page. A session that logout left alive would
    # show the patient here.
    assert "/login" in page.url
    assert "SEED-001" not in page.content()
