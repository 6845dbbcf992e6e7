"""The patient page's summary and the flowsheet on a ward-round tablet (820 px) and a desktop
(1366 px): no sideways scroll of the page (a wide flowsheet scrolls inside its own box, its
item column held in view), identifiers whole; and the flowsheet prints, with the reason of
every item not assessed on paper."""

import os
import re
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

IDENTIFIER = "NORTH-WARD-2026-000123"
COWS_ENTRIES = 14


def _scores(scale_key: str, step: int) -> dict:
    scale = get_scale(scale_key)
    return {
        item.key: item.allowed_scores[(step + index) % len(item.allowed_scores)]
        for index, item in enumerate(scale.items)
    }


def _seed(app) -> int:
    """A patient with every scale, and a long COWS record with a pulse measured, an item
    not assessed and a floor."""
    with app.app_context():
        site = db.session.execute(db.select(Site).where(Site.code == "NORTH")).scalar_one()
        clinician = db.session.execute(
            db.select(User).where(User.username == "clin.north")
        ).scalar_one()
        start = now_utc() - timedelta(days=3)
        label = "Synthetic patient with a rather long display label"
        patient = create_patient(clinician, site, IDENTIFIER, label, start, "opioid", "")
        cows = get_scale("cows")
        for step in range(COWS_ENTRIES):
            scores = _scores("cows", step)
            reasons, measured = None, None
            if step % 5 == 2:
                scores["tremor"] = None
                reasons = {"tremor": "asleep"}
            if step % 4 == 0:
                scores["resting_pulse"] = 1
                measured = {"resting_pulse": 88 + step}
            record_assessment(
                clinician,
                patient,
                cows,
                scores,
                observed_at=now_utc() - timedelta(hours=4 * (COWS_ENTRIES - step)),
                not_assessed_reasons=reasons,
                measured_values=measured,
            )
        for key in ("sows", "oows", "sows_gossop", "gad7", "symptom_nrs"):
            for step, hours in enumerate((30, 6)):
                record_assessment(
                    clinician,
                    patient,
                    get_scale(key),
                    _scores(key, step + 1),
                    observed_at=now_utc() - timedelta(hours=hours),
                )
        return patient.id


def _shots_dir(tmp_path) -> Path:
    # CLINIC_LOG_E2E_SHOTS keeps the screenshots somewhere they can be looked at afterwards.
    target = Path(os.environ.get("CLINIC_LOG_E2E_SHOTS") or tmp_path)
    target.mkdir(parents=True, exist_ok=True)
    return target


def _no_sideways_scroll(page, width: int) -> None:
    widths = page.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
    assert widths[0] <= widths[1], f"sideways scroll at {width}px: {widths}"


def _identifier_whole(page, selector: str) -> None:
    boxes = page.evaluate(
        f"() => [...document.querySelectorAll({selector!r})].map(el => el.getClientRects().length)"
    )
    assert boxes and all(n == 1 for n in boxes), f"{selector} broken over lines: {boxes}"


@pytest.mark.parametrize("width", [1366, 820])
def test_the_summary_and_the_flowsheet_fit_the_width(page, live_server, tmp_path, width):
    patient_id = _seed(live_server.app)
    shots = _shots_dir(tmp_path)
    page.set_viewport_size({"width": width, "height": 1000})
    log_in(page, live_server, "clin.north")

    page.goto(f"{live_server}/patients/{patient_id}")
    cards = page.locator("li.glance-scale")
    assert cards.count() == 6
    assert cards.first.locator("svg.spark").is_visible()
    assert page.locator("nav.scale-filter a").count() == 6
    page.screenshot(path=str(shots / f"patient-glance-{width}.png"), full_page=True)
    _no_sideways_scroll(page, width)
    _identifier_whole(page, ".page-head h1 > bdi")

    page.goto(f"{live_server}/patients/{patient_id}/flowsheet/cows")
    sheet = page.locator("table.flowsheet")
    assert sheet.locator("thead th.when").count() == 12
    assert sheet.locator("abbr[title='Not assessed: Asleep']").count() >= 2
    page.screenshot(path=str(shots / f"flowsheet-{width}.png"), full_page=True)
    _no_sideways_scroll(page, width)
    _identifier_whole(page, ".page-head a.identifier bdi")
    # A grid wider than the screen scrolls in its own box, with the item column in view.
    box = page.locator(".flowsheet-scroll")
    scroll = box.evaluate("b => [b.scrollWidth, b.clientWidth]")
    if scroll[0] > scroll[1]:
        box.evaluate("b => { b.scrollLeft = b.scrollWidth; }")
        left = box.evaluate("b => b.getBoundingClientRect().left")
        item = sheet.locator("tbody th[scope=row]").first.evaluate(
            "th => th.getBoundingClientRect().left"
        )
        assert abs(item - left) < 2, (item, left)
        page.screenshot(path=str(shots / f"flowsheet-{width}-scrolled.png"))
    else:
        assert width > 1000, f"12 entries should not fit {width}px without scrolling: {scroll}"


def test_the_flowsheet_prints_across_the_page_with_every_reason(page, live_server, tmp_path):
    patient_id = _seed(live_server.app)
    log_in(page, live_server, "clin.north")
    page.goto(f"{live_server}/patients/{patient_id}/flowsheet/cows")
    pdf = page.pdf(prefer_css_page_size=True, print_background=False)
    assert pdf.startswith(b"%PDF") and len(pdf) > 10_000
    media = re.search(rb"/MediaBox\s*\[\s*0 0 ([\d.]+) ([\d.]+)\s*\]", pdf)
    assert media and float(media.group(1)) > float(media.group(2)), "not printed landscape"
    (_shots_dir(tmp_path) / "flowsheet.pdf").write_bytes(pdf)

    # What the paper shows, as a screenshot of the page in print media at a landscape sheet's
    # printable width.
    page.set_viewport_size({"width": 1030, "height": 900})
    page.emulate_media(media="print")
    for hidden in ("nav[aria-label=Main]", ".who", ".pager", "button"):
        for element in page.locator(hidden).all():
            assert not element.is_visible(), hidden
    reasons = page.locator("table.flowsheet .na-reason")
    assert reasons.count() >= 2
    for reason in reasons.all():
        assert reason.is_visible() and reason.inner_text().strip() == "Asleep"
    widths = page.evaluate(
        "() => [document.querySelector('table.flowsheet').getBoundingClientRect().width,"
        " window.innerWidth]"
    )
    page.screenshot(path=str(_shots_dir(tmp_path) / "flowsheet-print.png"), full_page=True)
    assert widths[0] <= widths[1], f"the flowsheet is wider than the sheet: {widths}"
