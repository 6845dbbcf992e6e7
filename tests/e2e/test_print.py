"""The patient page and the tracker print cleanly: no navigation, buttons or chart options on
paper, every chart and every row of its table shown (the screen scrolls long tables)."""

import pytest

from clinic_log.extensions import db
from clinic_log.models import Patient

from .conftest import log_in

pytestmark = pytest.mark.e2e


def _seed_patient(live_server) -> int:
    with live_server.app.app_context():
        return db.session.scalar(db.select(Patient.id).where(Patient.identifier == "SEED-001"))


@pytest.mark.parametrize("page_path", ["/patients/{id}", "/patients/{id}/tracker"])
def test_a_patient_page_prints_without_screen_controls(page, live_server, page_path):
    patient_id = _seed_patient(live_server)
    log_in(page, live_server, "clin.north")
    page.goto(live_server + page_path.format(id=patient_id))
    page.emulate_media(media="print")
    for hidden in ("nav[aria-label=Main]", ".who", "button", ".chart-options", ".pager"):
        for element in page.locator(hidden).all():
            assert not element.is_visible(), hidden
    assert page.get_by_role("heading", name="Patient SEED-001").first.is_visible()
    pdf = page.pdf(format="A4", print_background=False)
    assert pdf.startswith(b"%PDF") and len(pdf) > 10_000


def test_the_tracker_prints_every_chart_and_every_row(page, live_server):
    patient_id = _seed_patient(live_server)
    log_in(page, live_server, "clin.north")
    page.goto(f"{live_server}/patients/{patient_id}/tracker")
    page.wait_for_load_state("networkidle")
    page.emulate_media(media="print")
    charts = page.locator("img.chart")
    assert charts.count() >= 2
    for chart in charts.all():
        assert chart.is_visible()
        assert chart.evaluate("img => img.complete && img.naturalWidth > 0")
    # On screen a long table scrolls inside its box; on paper every row is laid out.
    for body in page.locator("table.data.compact tbody").all():
        assert body.evaluate("b => getComputedStyle(b).overflowY") == "visible"
        for row in body.locator("tr").all():
            assert row.is_visible()
