"""What the entry and amend forms give the running-total script, and the observed-time field.

The script (static/entry.js) holds no scale knowledge of its own: every option's points, the
pulse's points rules and the bands come from data attributes the server renders from the scale
file. Without the script the form works as before; the server stays the only authority on the
saved total. The browser side is tested in tests/e2e/test_running_total.py and
tests/e2e/test_entry_tablet.py.
"""

from __future__ import annotations

import html
import json
import re
from datetime import UTC, datetime, timedelta

import pytest
from pages import field_errors, input_val, inputs, readable_text, text_of
from sqlalchemy import func, select

from clinic_log.database import now_utc
from clinic_log.extensions import db
from clinic_log.models import Assessment
from clinic_log.scales import NOT_ASSESSED_REASONS, load_scales
from clinic_log.timeutil import EARLIEST_PLAUSIBLE, input_value, to_local

SCALES = load_scales()
SCALE_KEYS = ["cows", "sows", "oows", "sows_gossop", "gad7", "symptom_nrs"]


def _form_tag(page) -> dict[str, str]:
    tag = re.search(
        r'<form method="post"[^>]*class="assessment"[^>]*>', page.get_data(as_text=True)
    )
    assert tag, "no assessment form on the page"
    return {
        name: html.unescape(value)
        for name, value in re.findall(r'([\w-]+)="([^"]*)"', tag.group(0))
    }


def _open(login, world, add_assessment, scale_key, which):
    """The new-entry form, or the amend form of an entry on the same scale."""
    browser = login("clin.north")
    patient = world["patient_n"]
    if which == "new":
        page = browser.get(f"/patients/{patient.id}/assessments/new/{scale_key}")
    else:
        entry = add_assessment(patient, world["clin_n"], scale_key)
        page = browser.get(f"/assessments/{entry.id}/amend")
    assert page.status_code == 200
    return page


@pytest.mark.parametrize("which", ["new", "amend"])
@pytest.mark.parametrize("scale_key", SCALE_KEYS)
def test_every_option_and_the_bands_are_data_attributes(
    login, world, add_assessment, scale_key, which
):
    scale = SCALES[scale_key]
    page = _open(login, world, add_assessment, scale_key, which)
    bands = json.loads(_form_tag(page)["data-bands"])
    assert bands == [{"low": b.low, "high": b.high, "label": b.label} for b in scale.bands]
    for item in scale.items:
        radios = inputs(page, item.key)
        scored = [r for r in radios if not r["value"].startswith("na:")]
        assert [r["data-points"] for r in scored] == [str(s) for s in item.allowed_scores]
        assert all(r["data-points"] == r["value"] for r in scored)
        not_assessed = [r for r in radios if r["value"].startswith("na:")]
        assert len(not_assessed) == len(NOT_ASSESSED_REASONS)
        assert all("data-not-assessed" in r and "data-points" not in r for r in not_assessed)
        if item.measurement is not None:
            (measured,) = inputs(page, item.measurement.key)
            assert measured["data-item"] == item.key
            assert int(measured["data-minimum"]) == item.measurement.minimum
            assert int(measured["data-maximum"]) == item.measurement.maximum
            assert json.loads(measured["data-points-rules"]) == [
                [rule.up_to, rule.score] for rule in item.measurement.points
            ]


@pytest.mark.parametrize("which", ["new", "amend"])
def test_the_script_is_a_deferred_static_file_and_nothing_runs_inline(
    login, world, add_assessment, which
):
    page = _open(login, world, add_assessment, "cows", which)
    markup = page.get_data(as_text=True)
    scripts = re.findall(r"<script\b([^>]*)>(.*?)</script>", markup, re.DOTALL)
    assert scripts == [(' src="/static/entry.js" defer', "")]
    assert not re.search(r"\son[a-z]+=", markup), "an inline event handler"
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    served = login("clin.north").get("/static/entry.js")
    assert served.status_code == 200
    assert served.mimetype in ("text/javascript", "application/javascript")
    served.close()


@pytest.mark.parametrize("which", ["new", "amend"])
def test_the_running_total_is_a_polite_live_region_hidden_until_the_script_runs(
    login, world, add_assessment, which
):
    markup = _open(login, world, add_assessment, "gad7", which).get_data(as_text=True)
    region = re.search(
        r'<div class="running-total" id="running-total" hidden>\s*'
        r'<p role="status" aria-live="polite" aria-atomic="true">(.*?)</p>\s*</div>',
        markup,
        re.DOTALL,
    )
    assert region, "no hidden polite live region for the running total"
    for part in ("running-total-label", "running-total-value", "running-total-severity"):
        assert f'class="{part}' in region.group(1)
    # Inside the form, before the buttons, so it sits where the eye is while answering.
    assert markup.index('id="running-total"') < markup.index('<div class="actions">')


def test_ratings_of_0_to_10_are_one_row_and_short_anchors_a_row_of_buttons(login, world):
    browser = login("clin.north")
    pid = world["patient_n"].id
    expected = {"symptom_nrs": "nrs", "gad7": "row", "sows_gossop": "row", "oows": "row"}
    expected |= {"sows": "row", "cows": "stack"}
    for scale_key, layout in expected.items():
        markup = browser.get(f"/patients/{pid}/assessments/new/{scale_key}").get_data(as_text=True)
        layouts = re.findall(r'<div class="choices choices-(\w+)">', markup)
        assert layouts == [layout] * len(SCALES[scale_key].items), scale_key
        # Every option, the not-assessed ones too, is a real radio inside its own label.
        options = re.findall(r'<label class="choice[^"]*">\s*<input ([^>]*)>', markup)
        assert len(options) == sum(
            len(item.anchors) + len(NOT_ASSESSED_REASONS) for item in SCALES[scale_key].items
        )
        assert all('type="radio"' in attrs for attrs in options)


def test_a_rating_button_names_its_anchor_only_where_it_says_more_than_the_number(login, world):
    markup = login("clin.north").get(
        f"/patients/{world['patient_n'].id}/assessments/new/symptom_nrs"
    )
    text = text_of(markup)
    assert '<span class="score">0</span> <span class="anchor">None</span>' in text
    assert '<span class="score">10</span> <span class="anchor">Worst imaginable</span>' in text
    assert '<span class="score">5</span></span></label>' in text  # not "5 5"


@pytest.mark.parametrize("site", ["north", "south"])
def test_the_observed_time_names_the_site_zone_once(login, world, site):
    tz = world[site].timezone
    browser = login("clin.north" if site == "north" else "clin.south")
    page = browser.get(f"/patients/{world['patient_' + site[0]].id}/assessments/new/cows")
    text = readable_text(page)
    assert f'<label for="observed_at">Observed at ({tz} time)</label>' in text_of(page)
    assert "site local time" not in text
    assert text.count(f"{tz} time") == 1
    assert "When the symptoms were observed; not more than 5 minutes ahead." in text


def test_a_site_on_utc_is_told_utc_and_nothing_else(login, world, make_site, make_user):
    from clinic_log.patients.services import create_patient

    site = make_site("EAST", "East Clinic", "UTC")
    user = make_user("clin.east", "clinician", ["EAST"])
    patient = create_patient(user, site, "E-001", None, now_utc() - timedelta(days=1), "opioid", "")
    text = readable_text(login("clin.east").get(f"/patients/{patient.id}/assessments/new/gad7"))
    assert "Observed at (UTC time)" in text
    assert "site local time" not in text
    assert text.count("UTC time") == 1


@pytest.mark.parametrize("site", ["north", "south"])
def test_the_observed_time_has_a_now_control_and_bounds_the_browser_enforces(login, world, site):
    tz = world[site].timezone
    browser = login("clin.north" if site == "north" else "clin.south")
    page = browser.get(f"/patients/{world['patient_' + site[0]].id}/assessments/new/gad7")
    (field,) = inputs(page, "observed_at")
    assert field["type"] == "datetime-local"
    assert field["min"] == input_value(EARLIEST_PLAUSIBLE, tz)
    tomorrow = (to_local(now_utc(), tz) + timedelta(days=1)).date()
    assert field["max"] == f"{tomorrow.isoformat()}T23:59"
    assert field["data-timezone"] == tz
    server_now = datetime.fromtimestamp(int(field["data-server-now"]) / 1000, UTC)
    assert abs(server_now - now_utc()) < timedelta(minutes=1)
    # The default is already now (without the script), and the control is a plain button the
    # script reveals: it never submits the form.
    assert input_val(page, "observed_at") == input_value(now_utc(), tz)
    assert re.search(
        r'<button type="button" class="now-button" data-now-for="observed_at" hidden>Now</button>',
        page.get_data(as_text=True),
    )
    # The script's own refusal of a year outside the bounds, next to the field, hidden until used.
    assert re.search(
        r'<div class="field-errors" id="observed_at-range" role="alert" hidden>\s*<p>'
        + re.escape(
            f"Check the year: type all four digits, from {field['min'][:4]} to {tomorrow.year}."
        ),
        page.get_data(as_text=True),
    )


@pytest.mark.parametrize("typed", ["0002-12-05T10:00", "0020-12-05T10:00", "0202-01-01T09:30"])
def test_a_year_typed_short_is_refused_next_to_the_field_and_kept(login, world, typed):
    browser = login("clin.north")
    url = f"/patients/{world['patient_n'].id}/assessments/new/gad7"
    page = browser.get(url)
    data = {
        "csrf_token": input_val(page, "csrf_token"),
        "submission_key": input_val(page, "submission_key"),
        "observed_at": typed,
        **{item.key: "1" for item in SCALES["gad7"].items},
    }
    refused = browser.post(url, data)
    assert refused.status_code == 422
    message = field_errors(refused, "observed_at")
    assert message == (
        f"The year {typed[:4]} is implausibly far in the past: check the year, "
        "with all four digits."
    )
    assert input_val(refused, "observed_at") == typed
    assert db.session.scalar(select(func.count()).select_from(Assessment)) == 0
