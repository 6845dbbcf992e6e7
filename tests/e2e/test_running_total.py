"""The running total on the entry form agrees with the server, for every built-in scale.

For each scale, forms are filled through the page with random allowed answers (a measured COWS
pulse some of the time) and some items not assessed, up to all of them. The script's total and
words are read just before saving, then compared with the saved entry's total and with the
severity wording the entry page shows (Scale.severity). The server's total is the authority:
the script must never show a total or a band the saved entry would not have.
"""

import random
import re

import pytest

from clinic_log.extensions import db
from clinic_log.models import Assessment
from clinic_log.scales import NOT_ASSESSED_REASONS, load_scales

from .conftest import log_in

pytestmark = pytest.mark.e2e

SCALES = load_scales()
SCALE_KEYS = ["cows", "sows", "oows", "sows_gossop", "gad7", "symptom_nrs"]


def _answer(page, scale, rng, not_assessed: set[str]) -> None:
    for item in scale.items:
        if item.key in not_assessed:
            value = "na:" + rng.choice(list(NOT_ASSESSED_REASONS))
        elif item.measurement is not None and rng.random() < 0.5:
            m = item.measurement
            page.locator(f"input[name={m.key}]").fill(str(rng.randint(m.minimum, m.maximum)))
            continue
        else:
            value = str(rng.choice(item.allowed_scores))
        page.locator(f"label.choice:has(input[name={item.key}][value='{value}'])").click()


@pytest.mark.parametrize("scale_key", SCALE_KEYS)
def test_the_running_total_agrees_with_the_saved_entry(page, live_server, scale_key):
    scale = SCALES[scale_key]
    rng = random.Random(f"running-total-{scale_key}")
    log_in(page, live_server, "clin.north")
    size = len(scale.items)
    seen = set()
    # Complete, one, two and half the items not assessed, and none assessed at all.
    for missing in (0, 0, 1, 1, 2, size // 2, size):
        page.goto(f"{live_server}/patients/1/assessments/new/{scale_key}")
        not_assessed = set(rng.sample(scale.item_keys, missing))
        _answer(page, scale, rng, not_assessed)
        region = page.locator("#running-total")
        label = region.locator(".running-total-label").inner_text()
        shown_total = int(region.locator(".running-total-value").inner_text())
        shown_words = region.locator(".running-total-severity").inner_text()
        assert label == "Total", (missing, shown_words)

        page.get_by_role("button", name="Save assessment").click()
        page.wait_for_url(re.compile(r"/assessments/\d+$"))
        with live_server.app.app_context():
            saved = db.session.get(Assessment, int(page.url.rsplit("/", 1)[1]))
            expected = scale.severity(saved.total, saved.complete, saved.not_assessed_count)
            assert (saved.not_assessed_count, saved.complete) == (missing, missing == 0)
        seen.add("floor" if expected.floor else "band" if expected.band else expected.text)
        assert shown_total == saved.total, (missing, not_assessed)
        assert shown_words == expected.text, (missing, not_assessed)
        # The entry page reads the same.
        assert page.locator(".result .total strong").inner_text() == str(saved.total)
        assert shown_words in page.locator(".result .band-line").inner_text()
    # Every kind of wording the scale can give was met: a band and a floor where it has bands,
    # and "Incomplete" where a lower bound can lie below them all (COWS 0-4).
    if scale.bands:
        assert {"band", "floor"} <= seen, seen
    else:
        assert seen == {"No published band", "Incomplete"}, seen
    if scale.bands and scale.bands[0].low > 0:
        assert "Incomplete" in seen, seen


def test_an_amended_entry_shows_its_running_total_from_the_start(page, live_server):
    """The amend form opens filled in: the total is there before anything is touched, and
    follows a change."""
    log_in(page, live_server, "clin.north")
    with live_server.app.app_context():
        entry = db.session.scalars(
            db.select(Assessment)
            .where(Assessment.scale_key == "symptom_nrs", Assessment.status == "active")
            .order_by(Assessment.id.desc())
        ).first()
        total = entry.total
        first = min(entry.item_scores, key=lambda s: s.id)
    page.goto(f"{live_server}/assessments/{entry.id}/amend")
    value = page.locator("#running-total .running-total-value")
    assert value.inner_text() == str(total)
    assert page.locator("#running-total .running-total-severity").inner_text() == (
        "No published band"
    )
    new_score = 10 if first.score != 10 else 0
    page.locator(f"label.choice:has(input[name={first.item_key}][value='{new_score}'])").click()
    assert value.inner_text() == str(total - first.score + new_score)
