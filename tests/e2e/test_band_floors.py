"""An incomplete total's floor ("at least Moderately severe — incomplete, 2 items not
assessed"), the longest severity wording, fits a tablet: no page that shows it scrolls
sideways at 820 px."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from clinic_log.assessments.services import record_assessment
from clinic_log.database import now_utc
from clinic_log.extensions import db
from clinic_log.models import Patient, User
from clinic_log.scale_registry import get_scale

from .conftest import log_in

FLOOR = "at least Moderately severe — incomplete, 2 items not assessed"


@pytest.fixture
def floor_entry(live_server):
    """SEED-001 gets a COWS of 30 with two items not assessed (a floor of Moderately severe)."""
    with live_server.app.app_context():
        clinician = db.session.scalar(select(User).filter_by(username="clin.north"))
        patient = db.session.scalar(select(Patient).filter_by(identifier="SEED-001"))
        scale = get_scale("cows")
        scores = {item.key: item.max_score for item in scale.items}
        scores |= {"resting_pulse": 2, "yawning": 0, "anxiety_irritability": 1}
        scores |= {"gooseflesh": None, "tremor": None}
        entry = record_assessment(
            clinician,
            patient,
            scale,
            scores,
            observed_at=now_utc() - timedelta(minutes=30),
            not_assessed_reasons={"gooseflesh": "asleep", "tremor": "not_measured"},
        )
        assert entry.total == 30
        return entry.id, patient.id


def test_the_floor_reads_whole_and_no_page_scrolls_sideways_at_820(
    live_server, page, floor_entry, tmp_path
):
    entry_id, patient_id = floor_entry
    page.set_viewport_size({"width": 820, "height": 1100})
    log_in(page, live_server, "sup.north")
    for name, path in (
        ("patient", f"/patients/{patient_id}"),
        ("entry", f"/assessments/{entry_id}"),
        ("tracker", f"/patients/{patient_id}/tracker"),
        ("review", "/review/"),
    ):
        page.goto(f"{live_server}{path}")
        floor = page.locator(".band-floor").first
        assert floor.inner_text() == FLOOR, name
        assert "band-moderately-severe" in floor.get_attribute("class")
        wide = page.evaluate("document.documentElement.scrollWidth")
        assert wide <= 820, f"{name} is {wide} px wide"
        page.screenshot(path=str(tmp_path / f"floor-{name}-820.png"), full_page=True)
