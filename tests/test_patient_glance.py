"""The patient at a glance: a summary of each scale at the top of the patient page, a timeline
narrowed to one scale, and the flowsheet of one scale (items down the side, entries across in
time, the stored scores in the cells)."""

from __future__ import annotations

import html
import re
from datetime import timedelta

import pytest
from pages import readable_text, text_of
from sqlalchemy import select

from clinic_log.assessments.services import Answers, amend_assessment, void_assessment
from clinic_log.database import now_utc
from clinic_log.extensions import db
from clinic_log.models import Assessment, AuditEvent, ItemScore
from clinic_log.patients.glance import ago
from clinic_log.scale_registry import get_scale
from clinic_log.scales import NOT_ASSESSED_REASONS
from clinic_log.timeutil import format_local

LONDON = "Europe/London"


def _scores(scale_key: str, level: int) -> dict[str, int]:
    """Every item at its ``level``-th allowed score (or its highest)."""
    scale = get_scale(scale_key)
    return {i.key: i.allowed_scores[min(level, len(i.allowed_scores) - 1)] for i in scale.items}


def _total(scale_key: str, scores: dict) -> int:
    return sum(v for v in scores.values() if v is not None)


def _strip(markup: str) -> str:
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", markup)).split())


def glance(page) -> dict[str, str]:
    """The summary's text, by scale key."""
    body = page.get_data(as_text=True)
    return {
        key: _strip(inner)
        for key, inner in re.findall(
            r'<li class="glance-scale[^"]*" id="glance-(\w+)">(.*?)</li>', body, re.DOTALL
        )
    }


def glance_markup(page, key: str) -> str:
    body = page.get_data(as_text=True)
    match = re.search(
        rf'<li class="glance-scale[^"]*" id="glance-{key}">(.*?)</li>', body, re.DOTALL
    )
    assert match, f"no summary for {key}"
    return match.group(1)


def timeline_scales(page) -> list[str]:
    body = page.get_data(as_text=True)
    table = re.search(r'<table class="data timeline">(.*?)</table>', body, re.DOTALL)
    if not table:
        return []
    rows = re.findall(r"<tr class=\"status-[^\"]+\">(.*?)</tr>", table.group(1), re.DOTALL)
    return [_strip(re.findall(r"<td[^>]*>(.*?)</td>", row, re.DOTALL)[1]) for row in rows]


def flowsheet(page) -> dict:
    """The flowsheet table: column heads, then each body row as (item key, [cell markup])."""
    body = page.get_data(as_text=True)
    table = re.search(r'<table class="data flowsheet"[^>]*>(.*?)</table>', body, re.DOTALL)
    assert table, "no flowsheet table"
    markup = table.group(1)
    head = re.search(r"<thead>(.*?)</thead>", markup, re.DOTALL).group(1)
    heads = re.findall(r"<th[^>]*>(.*?)</th>", head, re.DOTALL)[1:]
    rows = {}
    for section in ("tbody", "tfoot"):
        part = re.search(rf"<{section}>(.*?)</{section}>", markup, re.DOTALL).group(1)
        for row_key, row in re.findall(r'<tr data-row="([\w-]+)">(.*?)</tr>', part, re.DOTALL):
            rows[row_key] = re.findall(r"<td[^>]*>(.*?)</td>", row, re.DOTALL)
    return {"heads": heads, "rows": rows}


@pytest.fixture
def patient(world):
    return world["patient_n"]


@pytest.fixture
def clinician(login):
    return login("clin.north")


# --------------------------------------------------------------------------- the summary


def test_the_summary_shows_each_scale_latest_total_band_change_age_and_trend(
    world, patient, add_assessment, clinician, app
):
    now = now_utc()
    clin = world["clin_n"]
    # COWS: 6 (Mild) five hours ago, then 14 (Moderate) three hours ago; a later entry voided.
    low = dict.fromkeys(get_scale("cows").item_keys, 0) | {"restlessness": 5, "tremor": 1}
    high = low | {"gooseflesh": 5, "yawning": 2, "sweating": 1}
    add_assessment(patient, clin, "cows", low, observed_at=now - timedelta(hours=5))
    add_assessment(patient, clin, "cows", high, observed_at=now - timedelta(hours=3))
    voided = add_assessment(
        patient, clin, "cows", _scores("cows", 4), observed_at=now - timedelta(hours=2)
    )
    void_assessment(clin, voided, voided.version, "entered_in_error", "")
    # GAD-7: one incomplete entry, already past Severe's lower bound: its floor.
    gad = dict.fromkeys(get_scale("gad7").item_keys, 3) | {"afraid": None}
    add_assessment(
        patient,
        clin,
        "gad7",
        gad,
        observed_at=now - timedelta(hours=1),
        not_assessed_reasons={"afraid": "asleep"},
    )
    # 0-10 ratings: down since the day before.
    add_assessment(
        patient,
        clin,
        "symptom_nrs",
        _scores("symptom_nrs", 5),
        observed_at=now - timedelta(hours=40),
    )
    add_assessment(
        patient,
        clin,
        "symptom_nrs",
        _scores("symptom_nrs", 3),
        observed_at=now - timedelta(hours=30),
    )
    # SOWS (Handelsman): the latest is incomplete, so the change is a lower bound too.
    sows = _scores("sows", 1)
    add_assessment(patient, clin, "sows", sows, observed_at=now - timedelta(hours=30))
    sows_later = sows | {next(iter(sows)): None}
    sows_later = {k: (v + 1 if v is not None and v < 4 else v) for k, v in sows_later.items()}
    add_assessment(
        patient,
        clin,
        "sows",
        sows_later,
        observed_at=now - timedelta(hours=20),
        not_assessed_reasons={next(iter(sows)): "unable_to_communicate"},
    )
    db.session.commit()

    page = clinician.get(f"/patients/{patient.id}")
    assert page.status_code == 200
    summary = glance(page)
    # Only the scales the patient has, in the scales' own order.
    assert list(summary) == [k for k in ("cows", "sows", "gad7", "symptom_nrs") if k in summary]
    assert set(summary) == {"cows", "sows", "gad7", "symptom_nrs"}

    cows = summary["cows"]
    assert cows.startswith("COWS")
    assert "14 /48" in cows and "Moderate" in cows
    assert "up 8 since the previous entry" in cows
    assert "3.0 h ago" in cows
    assert format_local(now - timedelta(hours=3), LONDON) in cows
    assert 'aria-label="COWS: last 2 totals"' in glance_markup(
        page, "cows"
    )  # the voided one is out

    assert "18 /21" in summary["gad7"]
    assert "at least Severe — incomplete, 1 item not assessed" in summary["gad7"]
    assert "first entry" in summary["gad7"]
    assert "1.0 h ago" in summary["gad7"]
    assert '<svg class="spark"' in glance_markup(page, "gad7")

    nrs_before, nrs_after = (
        _total("symptom_nrs", _scores("symptom_nrs", 5)),
        _total("symptom_nrs", _scores("symptom_nrs", 3)),
    )
    assert f"down {nrs_before - nrs_after} since the previous entry" in summary["symptom_nrs"]
    assert "30.0 h ago" in summary["symptom_nrs"]

    change = _total("sows", sows_later) - _total("sows", sows)
    word = "up" if change > 0 else "down"
    assert f"{word} {abs(change)} since the previous entry (an incomplete total)" in summary["sows"]
    assert "20.0 h ago" in summary["sows"]

    # Each scale leads to its flowsheet and to the timeline of that scale alone.
    cows_markup = glance_markup(page, "cows")
    assert f'href="/patients/{patient.id}/flowsheet/cows"' in cows_markup
    assert f'href="/patients/{patient.id}?scale=cows"' in cows_markup


@pytest.mark.parametrize(
    ("elapsed", "text"),
    [
        (timedelta(minutes=59), "59 min ago"),
        (timedelta(hours=1), "1.0 h ago"),
        (timedelta(hours=47, minutes=57), "48.0 h ago"),
        (timedelta(hours=48), "2 d ago"),
        (timedelta(days=9, hours=13), "10 d ago"),
        (timedelta(minutes=-3), "0 min ago"),  # a ward clock a little ahead
    ],
)
def test_how_long_ago_reads_in_minutes_hours_then_days(elapsed, text):
    assert ago(elapsed) == text


def test_a_patient_without_entries_has_no_summary(patient, clinician):
    page = clinician.get(f"/patients/{patient.id}")
    assert glance(page) == {}
    assert "No assessments recorded yet." in text_of(page)


# --------------------------------------------------------------------------- the timeline filter


def test_the_timeline_narrows_to_one_scale_and_its_pages_keep_the_filter(
    world, patient, add_assessment, clinician
):
    start = now_utc() - timedelta(hours=40)
    for minutes in range(30):
        add_assessment(
            patient, world["clin_n"], "cows", observed_at=start + timedelta(minutes=minutes)
        )
    for hours in (1, 2, 3):
        add_assessment(
            patient, world["clin_n"], "gad7", observed_at=now_utc() - timedelta(hours=hours)
        )
    db.session.commit()

    everything = clinician.get(f"/patients/{patient.id}")
    assert timeline_scales(everything)[:3] == ["GAD-7"] * 3
    assert "Page 1 of 2" in text_of(everything)

    only_gad = clinician.get(f"/patients/{patient.id}?scale=gad7")
    assert timeline_scales(only_gad) == ["GAD-7"] * 3
    assert "Page 1 of" not in text_of(only_gad)
    assert "GAD-7 entries only" in readable_text(only_gad)

    first = clinician.get(f"/patients/{patient.id}?scale=cows")
    assert timeline_scales(first) == ["COWS"] * 25
    assert "Page 1 of 2" in text_of(first)
    body = first.get_data(as_text=True)
    assert f'href="/patients/{patient.id}?scale=cows&amp;page=2">Older</a>' in body
    second = clinician.get(f"/patients/{patient.id}?scale=cows&page=2")
    assert timeline_scales(second) == ["COWS"] * 5
    assert f'href="/patients/{patient.id}?scale=cows&amp;page=1">Newer</a>' in (
        second.get_data(as_text=True)
    )
    # The way back to every scale.
    assert f'href="/patients/{patient.id}"' in second.get_data(as_text=True)

    # A scale this installation has but the patient has not: an empty timeline that says so.
    none = clinician.get(f"/patients/{patient.id}?scale=oows")
    assert none.status_code == 200 and timeline_scales(none) == []
    assert "No OOWS entries recorded yet." in readable_text(none)
    # An empty value is no filter.
    assert len(timeline_scales(clinician.get(f"/patients/{patient.id}?scale="))) == 25


@pytest.mark.parametrize("value", ["nope", "COWS ", "cows;drop", "../cows", "c" * 5000, "²"])
def test_an_unknown_scale_filter_is_not_found_not_an_error(patient, clinician, value):
    response = clinician.get(f"/patients/{patient.id}", query_string={"scale": value})
    assert response.status_code == 404


# --------------------------------------------------------------------------- the flowsheet


def _record_cows_history(world, patient, add_assessment):
    """Four COWS entries recorded out of time order, one voided and one amended, with a
    not-assessed item and a measured pulse; returns the active entries' ids."""
    clin = world["clin_n"]
    now = now_utc().replace(second=0, microsecond=0)
    pulse = _scores("cows", 1) | {"resting_pulse": 1}
    latest = add_assessment(
        patient,
        clin,
        "cows",
        pulse,
        observed_at=now - timedelta(hours=1),
        measured_values={"resting_pulse": 96},
    )
    oldest = add_assessment(
        patient,
        clin,
        "cows",
        _scores("cows", 0) | {"tremor": None},
        observed_at=now - timedelta(hours=9),
        not_assessed_reasons={"tremor": "asleep"},
    )
    middle = add_assessment(
        patient, clin, "cows", _scores("cows", 2), observed_at=now - timedelta(hours=5)
    )
    voided = add_assessment(
        patient, clin, "cows", _scores("cows", 3), observed_at=now - timedelta(hours=3)
    )
    void_assessment(clin, voided, voided.version, "duplicate", "")
    amended = amend_assessment(
        clin,
        middle,
        middle.version,
        Answers(_scores("cows", 2) | {"yawning": 0}, now - timedelta(hours=5)),
        "Yawning misread",
    )
    add_assessment(patient, clin, "gad7", observed_at=now - timedelta(hours=2))  # another scale
    db.session.commit()
    return [oldest.id, amended.id, latest.id]


def test_the_flowsheet_cells_are_the_stored_item_scores(
    world, patient, add_assessment, clinician, app
):
    active = _record_cows_history(world, patient, add_assessment)
    page = clinician.get(f"/patients/{patient.id}/flowsheet/cows")
    assert page.status_code == 200
    sheet = flowsheet(page)

    entries = {
        a.id: a for a in db.session.scalars(select(Assessment).where(Assessment.id.in_(active)))
    }
    ordered = sorted(entries.values(), key=lambda a: a.observed_at)
    assert [a.id for a in ordered] == active  # oldest first: time runs left to right
    # Column heads: the observed times in the site's zone, each linking to its entry.
    assert len(sheet["heads"]) == 3
    for head, entry in zip(sheet["heads"], ordered, strict=True):
        assert f'href="/assessments/{entry.id}"' in head
        local = format_local(entry.observed_at, LONDON)
        assert f'title="{local}"' in head
        date, time = local[:10], local[11:16]
        assert time in _strip(head)
        assert f"{int(date[8:]):02d}" in _strip(head)

    scale = get_scale("cows")
    assert [k for k in sheet["rows"] if k not in ("total", "band")] == list(scale.item_keys)
    scores = db.session.execute(
        select(ItemScore).where(ItemScore.assessment_id.in_(active))
    ).scalars()
    stored = {(s.assessment_id, s.item_key): s for s in scores}
    assert len(stored) == 3 * len(scale.items)
    for item in scale.items:
        cells = sheet["rows"][item.key]
        assert len(cells) == 3
        for cell, entry in zip(cells, ordered, strict=True):
            score = stored[(entry.id, item.key)]
            if score.score is None:
                reason = NOT_ASSESSED_REASONS[score.not_assessed_reason]
                assert f'<abbr title="Not assessed: {reason}">NA</abbr>' in cell
                assert _strip(cell) == f"NA {reason}"  # the reason is printed too
            elif score.measured_value is not None:
                assert _strip(cell) == f"{score.score} {score.measured_value}"
            else:
                assert _strip(cell) == str(score.score)
    assert stored[(active[2], "resting_pulse")].measured_value == 96
    assert [_strip(c) for c in sheet["rows"]["total"]] == [str(a.total) for a in ordered]
    assert [_strip(c) for c in sheet["rows"]["band"]] == [
        scale.severity(a.total, a.complete, a.not_assessed_count).text
        + ("" if a.complete or scale.floor_for(a.total, False) else " (total is a lower bound)")
        for a in ordered
    ]
    text = readable_text(page)
    assert "times in Europe/London" in text
    assert "Void" not in _strip(str(sheet))  # voided and amended versions stay in the history


def test_the_flowsheet_pages_across_time_newest_last(world, patient, add_assessment, clinician):
    start = now_utc().replace(second=0, microsecond=0) - timedelta(hours=30)
    times = [start + timedelta(hours=h) for h in range(15)]
    for observed in reversed(times):
        add_assessment(patient, world["clin_n"], "cows", observed_at=observed)
    db.session.commit()

    def heads(response):
        return [re.search(r'title="([^"]+)"', h).group(1) for h in flowsheet(response)["heads"]]

    latest = clinician.get(f"/patients/{patient.id}/flowsheet/cows")
    assert heads(latest) == [format_local(t, LONDON) for t in times[3:]]
    body = latest.get_data(as_text=True)
    assert f'href="/patients/{patient.id}/flowsheet/cows?page=2"' in body
    assert "Entries 4–15 of 15" in readable_text(latest)
    earlier = clinician.get(f"/patients/{patient.id}/flowsheet/cows?page=2")
    assert heads(earlier) == [format_local(t, LONDON) for t in times[:3]]
    assert f'href="/patients/{patient.id}/flowsheet/cows?page=1"' in earlier.get_data(as_text=True)
    beyond = clinician.get(f"/patients/{patient.id}/flowsheet/cows?page=9")
    assert beyond.status_code == 200
    assert "No entries on this page" in readable_text(beyond)
    empty = clinician.get(f"/patients/{patient.id}/flowsheet/gad7")
    assert empty.status_code == 200
    assert "No GAD-7 entries recorded yet." in readable_text(empty)


def _refusals(app) -> list[AuditEvent]:
    with app.app_context():
        return list(
            db.session.scalars(
                select(AuditEvent)
                .where(AuditEvent.action == "access_refused")
                .order_by(AuditEvent.id)
            )
        )


def test_the_flowsheet_is_guarded_and_audited(world, add_assessment, clinician, login, app):
    south = world["patient_s"]
    add_assessment(south, world["clin_s"], "cows")
    db.session.commit()
    before = len(_refusals(app))
    response = clinician.get(f"/patients/{south.id}/flowsheet/cows")
    assert response.status_code == 404
    assert "S-001" not in response.get_data(as_text=True)
    refusals = _refusals(app)
    assert len(refusals) == before + 1
    assert (refusals[-1].entity, refusals[-1].entity_id) == ("patient", south.id)

    assert clinician.get(f"/patients/{world['patient_n'].id}/flowsheet/nope").status_code == 404
    admin = login("admin.one")
    assert admin.get(f"/patients/{world['patient_n'].id}/flowsheet/cows").status_code in (
        403,
        404,
    )


def test_the_flowsheet_writes_its_read_line(world, patient, add_assessment, clinician, app):
    add_assessment(patient, world["clin_n"], "cows")
    db.session.commit()
    with app.app_context():
        start = db.session.scalar(select(db.func.max(AuditEvent.id)))
    assert clinician.get(f"/patients/{patient.id}/flowsheet/cows").status_code == 200
    with app.app_context():
        [line] = db.session.scalars(
            select(AuditEvent).where(AuditEvent.id > start, AuditEvent.action == "view_patient")
        ).all()
        assert (line.patient_id, line.user_id) == (patient.id, world["clin_n"].id)
        assert f"/patients/{patient.id}/flowsheet/cows" in line.details


# --------------------------------------------------------------------------- cost


def test_the_summary_and_the_flowsheet_cost_the_same_statements_for_few_or_many_entries(
    world, patient, add_assessment, login, count_queries
):
    def statements(url: str) -> int:
        browser = login("clin.north")  # a fresh login: no read line is covered yet
        with count_queries() as counted:
            assert browser.get(url).status_code == 200
        return len(counted)

    page_url, sheet_url = f"/patients/{patient.id}", f"/patients/{patient.id}/flowsheet/cows"
    add_assessment(patient, world["clin_n"], "cows", observed_at=now_utc() - timedelta(hours=47))
    add_assessment(patient, world["clin_n"], "gad7", observed_at=now_utc() - timedelta(hours=46))
    db.session.commit()
    few = statements(page_url), statements(sheet_url)
    start = now_utc() - timedelta(hours=45)
    for index in range(40):
        key = ("cows", "gad7", "sows", "symptom_nrs")[index % 4]
        add_assessment(patient, world["clin_n"], key, observed_at=start + timedelta(hours=index))
    db.session.commit()
    many = statements(page_url), statements(sheet_url)
    assert many == few
