"""A supervisor works through a 60-entry queue in a real browser, on a desktop (1366 px) and a
ward-round tablet (820 px): pages of 50, ticks and one password for a batch, a wrong password
that signs nothing and keeps the ticks, "sign all on this page", their own entries on a tab of
their own, and no sideways scroll."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import pytest

from clinic_log.assessments.services import record_assessment
from clinic_log.auth.services import create_user
from clinic_log.database import now_utc
from clinic_log.extensions import db
from clinic_log.models import Signature, Site, User
from clinic_log.patients.services import create_patient
from clinic_log.scale_registry import get_scale

from .conftest import PASSWORD, log_in

pytestmark = pytest.mark.e2e

ADDED = 60  # waiting entries added by a clinician, beside the 8 the server is seeded with
OWN = 4  # and recorded by the supervisor: another supervisor signs those


def _seed_queue(app) -> None:
    with app.app_context():
        site = db.session.execute(db.select(Site).where(Site.code == "NORTH")).scalar_one()
        supervisor = db.session.execute(
            db.select(User).where(User.username == "sup.north")
        ).scalar_one()
        clinician = create_user(
            "clin.ward", PASSWORD, "clinician", ["NORTH"], display_name="Robin Ward"
        )
        start = now_utc() - timedelta(days=2)
        patients = [
            create_patient(clinician, site, f"WARD-{n:03d}", None, start, "opioid", "")
            for n in range(1, 7)
        ]
        scale = get_scale("gad7")
        for n in range(ADDED + OWN):
            recorder = supervisor if n >= ADDED else clinician
            record_assessment(
                recorder,
                patients[n % len(patients)],
                scale,
                {item.key: (n + i) % 4 for i, item in enumerate(scale.items)},
                observed_at=now_utc() - timedelta(hours=40, minutes=-30 * n),
            )


def _shots_dir(tmp_path) -> Path:
    # CLINIC_LOG_E2E_SHOTS keeps the screenshots somewhere they can be looked at afterwards.
    target = Path(os.environ.get("CLINIC_LOG_E2E_SHOTS") or tmp_path)
    target.mkdir(parents=True, exist_ok=True)
    return target


def _fits(page, width: int) -> None:
    widths = page.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
    assert widths[0] <= widths[1], f"sideways scroll at {width}px: {widths}"
    broken = page.evaluate(
        """() => [...document.querySelectorAll('table.queue bdi.identifier')]
            .filter(el => el.getClientRects().length !== 1).map(el => el.textContent)"""
    )
    assert broken == [], f"identifiers broken at {width}px: {broken}"


def _signatures(app) -> int:
    with app.app_context():
        return db.session.scalar(db.select(db.func.count()).select_from(Signature))


@pytest.mark.parametrize("width", [1366, 820])
def test_a_supervisor_signs_a_60_entry_queue_in_batches(page, live_server, tmp_path, width):
    _seed_queue(live_server.app)
    shots = _shots_dir(tmp_path)
    page.set_viewport_size({"width": width, "height": 1000})
    log_in(page, live_server, "sup.north")
    page.goto(f"{live_server}/review/")

    rows = page.locator("table.queue tbody tr")
    assert rows.count() == 50
    main = page.locator("main")
    assert "68 entries wait for your sign-off" in main.inner_text()
    assert f"Recorded by you — another supervisor signs ({OWN})" in main.inner_text()
    assert "Sam Supervisor" not in page.locator("table.queue").inner_text()
    page.screenshot(path=str(shots / f"review-queue-{width}.png"), full_page=True)
    _fits(page, width)

    # A wrong password signs nothing, says so by the field, and keeps the ticks.
    for n in range(3):
        rows.nth(n).get_by_role("checkbox").check()
    page.get_by_label("Your password (to sign)").fill("not my password at all")
    page.get_by_role("button", name="Sign the ticked entries").click()
    page.wait_for_load_state()
    field = page.get_by_label("Your password (to sign)")
    assert field.get_attribute("aria-invalid") == "true"
    assert "That is not your password. Nothing was signed." in main.inner_text()
    assert page.locator("table.queue tbody input[type=checkbox]:checked").count() == 3
    assert _signatures(live_server.app) == 0
    page.screenshot(path=str(shots / f"review-queue-wrong-password-{width}.png"), full_page=True)
    _fits(page, width)

    # The right one signs the three, each named, and the page fills up again.
    page.get_by_label("Your password (to sign)").fill(PASSWORD)
    page.get_by_role("button", name="Sign the ticked entries").click()
    page.wait_for_load_state()
    result = page.locator(".batch-result")
    assert "Signed 3 entries" in result.inner_text()
    assert result.locator("li").count() == 3
    assert "SEED-001" in result.inner_text()
    assert _signatures(live_server.app) == 3
    assert rows.count() == 50
    assert "65 entries wait for your sign-off" in main.inner_text()
    page.screenshot(path=str(shots / f"review-queue-signed-{width}.png"), full_page=True)
    _fits(page, width)

    # The next page holds the rest; "sign all on this page" signs every one of them.
    page.get_by_role("link", name="Next 50").click()
    page.wait_for_load_state()
    assert rows.count() == 15
    page.get_by_label("Your password (to sign)").fill(PASSWORD)
    page.get_by_role("button", name="Sign all on this page").click()
    page.wait_for_load_state()
    assert "Signed 15 entries" in page.locator(".batch-result").inner_text()
    assert _signatures(live_server.app) == 18
    _fits(page, width)

    # The supervisor's own entries wait apart, with nothing to tick.
    page.get_by_role("link", name="Recorded by you").click()
    page.wait_for_load_state()
    assert rows.count() == OWN
    assert all(
        "Recorded by you — another supervisor signs" in text for text in rows.all_inner_texts()
    )
    assert page.locator("table.queue input[type=checkbox]").count() == 0
    page.screenshot(path=str(shots / f"review-queue-own-{width}.png"), full_page=True)
    _fits(page, width)
