"""The audit trail after a real tracker visit: the browser asks for each chart, each request
is its own event, and the supervisor reads them as one line naming the patient and scales,
on a desktop and on an 820-pixel tablet without sideways scrolling."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from clinic_log.extensions import db
from clinic_log.models import AuditEvent

from .conftest import log_in

pytestmark = pytest.mark.e2e


def test_a_tracker_visit_reads_as_one_line_on_a_desktop_and_a_tablet(
    browser_engine, live_server, tmp_path
):
    clinician = browser_engine.new_context(viewport={"width": 1366, "height": 900})
    page = clinician.new_page()
    log_in(page, live_server, "clin.north")
    page.goto(f"{live_server}/patients/1/tracker")
    page.wait_for_load_state("networkidle")
    clinician.close()
    with live_server.app.app_context():
        views = db.session.scalar(select(func.count()).where(AuditEvent.action == "view_chart"))
    assert views >= 2

    # One login (a one-time code is used once): the same page at a desktop and a tablet width.
    context = browser_engine.new_context(viewport={"width": 1366, "height": 1000})
    page = context.new_page()
    log_in(page, live_server, "sup.north")
    for width in (1366, 820):
        page.set_viewport_size({"width": width, "height": 1000})
        page.goto(f"{live_server}/audit/")
        visit = page.locator("table.audit tbody tr.visit")
        assert visit.count() == 1
        what = visit.locator("td").nth(3)
        summary = what.inner_text().splitlines()[0]
        # The browser asks for the charts in parallel: their order is its own.
        assert summary.startswith(f"viewed {views} charts of SEED-001: "), summary
        assert "COWS" in summary and "Symptom NRS" in summary
        what.get_by_text("each view").click()
        assert what.locator("li").count() == views
        assert "entry #" in page.locator("table.audit").inner_text()
        overflow = page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        page.screenshot(path=str(tmp_path / f"audit-{width}.png"), full_page=True)
        assert overflow <= 1, f"{overflow} px of sideways scroll at {width} px"
    context.close()
