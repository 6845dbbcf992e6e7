"""The patient list on a ward-round tablet (820 px wide) and a desktop (1366 px), with 230
patients: no sideways scroll, no identifier broken over two lines, nothing sticking out of its
cell; the due view and the last page too. Long identifiers, floors, overdue and ended
episodes are in the mix."""

import os
from datetime import timedelta
from pathlib import Path

import pytest

from clinic_log.assessments.services import record_assessment
from clinic_log.database import now_utc
from clinic_log.extensions import db
from clinic_log.models import Site, User
from clinic_log.patients.services import create_patient, end_episode
from clinic_log.scale_registry import get_scale

from .conftest import log_in

pytestmark = pytest.mark.e2e

LONG = [
    "NORTH-WARD-2026-000123",
    "STUDY-KRT-WITHDRAWAL-0042-B",
    "MRN-0000123456789012",
]


def _seed_ward(app) -> None:
    """230 patients: a few with long identifiers and labels, most with COWS entries (some
    incomplete, a floor), some overdue, some with their own interval, a few episodes ended."""
    with app.app_context():
        site = db.session.execute(db.select(Site).where(Site.code == "NORTH")).scalar_one()
        clinician = db.session.execute(
            db.select(User).where(User.username == "clin.north")
        ).scalar_one()
        cows = get_scale("cows")
        start = now_utc() - timedelta(days=2)
        identifiers = LONG + [f"W-{n:03d}" for n in range(1, 228)]
        for n, identifier in enumerate(identifiers):
            label = "Bay 12, the window bed by the nurses' station" if n == 1 else f"Bay {n % 30}"
            every = (2, 4, None, 6)[n % 4]
            patient = create_patient(
                clinician, site, identifier, label, start, "opioid", "", assess_every_hours=every
            )
            if n % 5 == 4:
                continue  # never assessed
            missing = n % 3 == 0
            scores = {
                item.key: (None if missing and i == 0 else item.allowed_scores[(n + i) % 3])
                for i, item in enumerate(cows.items)
            }
            record_assessment(
                clinician,
                patient,
                cows,
                scores,
                observed_at=now_utc() - timedelta(hours=(n % 9) + 0.5),
                not_assessed_reasons={cows.items[0].key: "not_measured"} if missing else None,
            )
            if n % 17 == 0:
                end_episode(clinician, patient.open_episode, now_utc() - timedelta(minutes=5))


def _shots_dir(tmp_path) -> Path:
    target = Path(os.environ.get("CLINIC_LOG_E2E_SHOTS") or tmp_path)
    target.mkdir(parents=True, exist_ok=True)
    return target


def _check_fits(page, width: int) -> None:
    widths = page.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
    assert widths[0] <= widths[1], f"sideways scroll at {width}px: {widths}"
    broken = page.evaluate(
        """() => [...document.querySelectorAll('table.worklist th[scope=row] a bdi')]
            .filter(el => el.getClientRects().length !== 1)
            .map(el => el.textContent)"""
    )
    assert broken == [], f"identifiers broken at {width}px: {broken}"
    overflowing = page.evaluate(
        """() => [...document.querySelectorAll('table.worklist th, table.worklist td')]
            .filter(el => el.scrollWidth > el.clientWidth + 1)
            .map(el => el.textContent.trim().slice(0, 40))"""
    )
    assert overflowing == [], f"cells overflowing at {width}px: {overflowing}"


@pytest.mark.parametrize("width", [1366, 820])
def test_the_patient_list_fits_the_width_and_keeps_identifiers_whole(
    page, live_server, tmp_path, width
):
    _seed_ward(live_server.app)
    page.set_viewport_size({"width": width, "height": 1000})
    log_in(page, live_server, "clin.north")
    shots = _shots_dir(tmp_path)
    for name, path, rows in (
        ("patients", "/patients/", 50),
        ("patients-due", "/patients/?show=due&sort=due", None),
        ("patients-last", "/patients/?page=5", 31),
    ):
        page.goto(f"{live_server}{path}")
        count = page.locator("table.worklist tbody tr").count()
        assert count == rows if rows else count > 0, (path, count)
        page.screenshot(path=str(shots / f"{name}-{width}.png"), full_page=True)
        _check_fits(page, width)
    page.goto(f"{live_server}/patients/")
    assert "231 patients at your sites" in page.inner_text("#worklist-count")
    assert page.locator("tr.due-overdue").count() > 0
    assert page.locator(".band-floor").count() > 0
