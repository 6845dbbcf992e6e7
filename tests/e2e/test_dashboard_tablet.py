"""The dashboard on a ward-round tablet (820 px wide) and a desktop (1366 px): no sideways
scroll, and no patient identifier broken over two lines, with long identifiers, every scale,
floors ("at least Severe — incomplete") and results older than the recency window."""

import os
from datetime import timedelta
from pathlib import Path

import pytest

from clinic_log.assessments.services import record_assessment
from clinic_log.database import now_utc
from clinic_log.extensions import db
from clinic_log.models import Site, User
from clinic_log.patients.services import create_patient
from clinic_log.scale_registry import get_scale

from .conftest import log_in

pytestmark = pytest.mark.e2e

# Long, hyphenated identifiers: the kind a browser would break after a hyphen ("DEMO-/003").
IDENTIFIERS = [
    "DEMO-003",
    "NORTH-WARD-2026-000123",
    "STUDY-KRT-WITHDRAWAL-0042-B",
    "MRN-0000123456789012",
    "X-1",
]


def _scores(scale_key: str, level: float, missing: int = 0) -> dict:
    scale = get_scale(scale_key)
    scores = {}
    for index, item in enumerate(scale.items):
        allowed = item.allowed_scores
        scores[item.key] = None if index < missing else allowed[round(level * (len(allowed) - 1))]
    return scores


def _seed_ward(app) -> None:
    with app.app_context():
        site = db.session.execute(db.select(Site).where(Site.code == "NORTH")).scalar_one()
        clinician = db.session.execute(
            db.select(User).where(User.username == "clin.north")
        ).scalar_one()
        start = now_utc() - timedelta(days=4)
        for n, identifier in enumerate(IDENTIFIERS):
            label = "Synthetic patient with a rather long display label" if n == 1 else None
            patient = create_patient(clinician, site, identifier, label, start, "opioid", "")
            for key in ("cows", "sows", "oows", "sows_gossop", "gad7", "symptom_nrs"):
                # Older results (beyond the 24-hour window) for some, a floor for others.
                hours = (30, 6, 1.5)
                for step, ago in enumerate(hours):
                    missing = 1 if (key == "cows" and n % 2 == 0 and step == 2) else 0
                    level = min(1.0, 0.2 + 0.25 * ((n + step) % 4))
                    if n == 4 and step < 2:
                        continue
                    when = now_utc() - timedelta(hours=ago + (26 if n == 3 else 0))
                    record_assessment(
                        clinician,
                        patient,
                        get_scale(key),
                        _scores(key, level, missing),
                        observed_at=when,
                        not_assessed_reasons={get_scale(key).items[0].key: "not_measured"}
                        if missing
                        else None,
                    )


def _shots_dir(tmp_path) -> Path:
    # CLINIC_LOG_E2E_SHOTS keeps the screenshots somewhere they can be looked at afterwards.
    target = Path(os.environ.get("CLINIC_LOG_E2E_SHOTS") or tmp_path)
    target.mkdir(parents=True, exist_ok=True)
    return target


@pytest.mark.parametrize("width", [1366, 820])
def test_the_dashboard_fits_the_width_and_keeps_identifiers_whole(
    page, live_server, tmp_path, width
):
    _seed_ward(live_server.app)
    page.set_viewport_size({"width": width, "height": 1000})
    log_in(page, live_server, "sup.north")
    page.goto(f"{live_server}/dashboard/")

    rows = page.locator("table.dashboard tbody tr")
    assert rows.count() == len(IDENTIFIERS) + 1  # and the seeded patient
    assert page.locator(".band-floor").count() >= 1
    assert "at least" in page.locator(".band-floor").first.inner_text()
    assert page.locator(".scale-status-item.stale").count() >= 1
    assert page.locator("a.waiting").count() == len(IDENTIFIERS) + 1
    assert page.locator("#triage-rule").is_visible()

    # Taken before the checks, so a failure can be looked at.
    page.screenshot(path=str(_shots_dir(tmp_path) / f"dashboard-{width}.png"), full_page=True)
    widths = page.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
    assert widths[0] <= widths[1], f"sideways scroll at {width}px: {widths}"
    # An identifier broken over two lines has two boxes.
    broken = page.evaluate(
        """() => [...document.querySelectorAll('table.dashboard th[scope=row] a bdi')]
            .filter(el => el.getClientRects().length !== 1)
            .map(el => el.textContent)"""
    )
    assert broken == [], f"identifiers broken at {width}px: {broken}"
    # Nothing sticks out of its cell either (a clipped identifier would also be a failure).
    overflowing = page.evaluate(
        """() => [...document.querySelectorAll('table.dashboard th, table.dashboard td')]
            .filter(el => el.scrollWidth > el.clientWidth + 1)
            .map(el => el.textContent.trim().slice(0, 40))"""
    )
    assert overflowing == [], f"cells overflowing at {width}px: {overflowing}"
