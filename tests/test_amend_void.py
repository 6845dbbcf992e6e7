"""Amending and voiding assessments: who may change what, what is kept, optimistic locking,
double submits, charts and the history of an entry.

Rules are checked on the services where that is clearer, and the pages over HTTP as a
clinician or supervisor uses them (conftest.Browser: every request in its own context, so the
test's own session must end its transaction, ``fresh()``, before it reads what a request wrote).
"""

from __future__ import annotations

import html
import json
import re
from datetime import UTC, datetime, timedelta

import pytest
from conftest import GAD7, PASSWORD
from pages import checked, field_errors, input_val, inputs, textarea
from sqlalchemy import func, select

from clinic_log.assessments import services
from clinic_log.assessments.services import Answers, ChangeNotAllowed, EditConflict, EntryError
from clinic_log.database import now_utc
from clinic_log.extensions import db
from clinic_log.models import Assessment, AuditEvent
from clinic_log.patients.services import create_patient, end_episode
from clinic_log.review.services import sign_assessment
from clinic_log.timeutil import format_local, input_value

LONDON = "Europe/London"
NEW_YORK = "America/New_York"
CONFLICT = "this entry changed while you were editing — review the new version"
# A complete trend point in the chart SVG (see tests/test_chart_routes.py).
_COMPLETE_MARKER = re.compile(r'<use [^>]*style="fill: #0072b2; stroke: #0072b2"')


# --------------------------------------------------------------------------- helpers


def gad(default: int = 1, **scores: int) -> dict[str, int]:
    return {key: scores.get(key, default) for key in GAD7}


def an_hour_ago() -> datetime:
    """A minute-precision time, as the entry form gives."""
    return (now_utc() - timedelta(hours=1)).replace(second=0, microsecond=0)


def fresh() -> None:
    """End the test session's transaction: later reads see what the requests committed."""
    db.session.commit()


def count(model) -> int:
    return db.session.scalar(select(func.count()).select_from(model))


def events(action: str | None = None) -> list[AuditEvent]:
    stmt = select(AuditEvent).order_by(AuditEvent.id)
    if action:
        stmt = stmt.where(AuditEvent.action == action)
    return list(db.session.scalars(stmt))


def text(response) -> str:
    """The page as a person reads it: no tags, entities decoded, whitespace collapsed."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", response.get_data(as_text=True))).split())


def send(browser, url: str, data: dict):
    """POST with the CSRF token of the user's home page (fetched once per browser)."""
    if not getattr(browser, "token", None):
        browser.token = browser.csrf_token("/")
    return browser.post(url, {"csrf_token": browser.token, **data})


def form_values(page) -> dict[str, str]:
    """What a browser would send back from a form page untouched."""
    values: dict[str, str] = {}
    for attrs in inputs(page):
        name, kind = attrs.get("name"), attrs.get("type")
        if not name or name == "csrf_token":
            continue
        if kind == "radio":
            if "checked" in attrs:
                values[name] = attrs["value"]
        else:
            values.setdefault(name, attrs.get("value", ""))
    values["notes"] = textarea(page, "notes")
    return values


def open_amend(browser, assessment_id: int) -> tuple[object, dict[str, str]]:
    page = browser.get(f"/assessments/{assessment_id}/amend")
    assert page.status_code == 200, page.status_code
    return page, form_values(page)


def amend(browser, assessment_id: int, reason: str, form: dict | None = None, **changes):
    """Open the amend form (unless ``form`` is given), change some fields, save."""
    if form is None:
        _, form = open_amend(browser, assessment_id)
    data = {**form, **{key: str(value) for key, value in changes.items()}, "reason": reason}
    return send(browser, f"/assessments/{assessment_id}/amend", data)


def void(browser, assessment_id: int, reason_code: str | None, reason: str = "", version=None):
    if version is None:
        version = input_val(browser.get(f"/assessments/{assessment_id}"), "version")
    data = {"reason": reason, "version": str(version)}
    if reason_code is not None:
        data["reason_code"] = reason_code
    return send(browser, f"/assessments/{assessment_id}/void", data)


def new_id(response) -> int:
    assert response.status_code == 302, response.get_data(as_text=True)[-3000:]
    return int(response.headers["Location"].rsplit("/", 1)[1])


def history_versions(page) -> list[str]:
    """The text of each version block of a history page, in page order."""
    blocks = re.findall(
        r'<li id="v\d+" class="version[^"]*">(.*?)</li>', page.get_data(as_text=True), re.DOTALL
    )
    return [" ".join(html.unescape(re.sub(r"<[^>]+>", " ", b)).split()) for b in blocks]


def change_rows(markup: str) -> list[tuple[str, str, str]]:
    """(what, before, after) rows of the change tables in some HTML."""
    rows = re.findall(
        r'<tr><th scope="row">(.*?)</th>\s*<td class="prewrap">(.*?)</td>'
        r'<td class="prewrap">(.*?)</td></tr>',
        markup,
        re.DOTALL,
    )
    return [tuple(html.unescape(cell).strip() for cell in row) for row in rows]


def timeline_rows(page) -> list[tuple[str, str]]:
    """(status class, row text) of the patient timeline."""
    table = re.search(
        r'<table class="data timeline">(.*?)</table>', page.get_data(as_text=True), re.DOTALL
    )
    rows = re.findall(r'<tr class="status-(\w+)">(.*?)</tr>', table.group(1), re.DOTALL)
    return [
        (status, " ".join(html.unescape(re.sub(r"<[^>]+>", " ", row)).split()))
        for status, row in rows
    ]


@pytest.fixture
def gad_entry(world, add_assessment):
    """A GAD-7 of patient N-001 by clin.north, every item 1 (total 7, Mild); its id."""

    def _make(user="clin_n", scores=None, **kwargs):
        kwargs.setdefault("observed_at", an_hour_ago())
        entry = add_assessment(world["patient_n"], world[user], "gad7", scores or gad(1), **kwargs)
        return entry.id

    return _make


# --------------------------------------------------------------------------- who may change


def test_may_change_own_entries_supervisor_any_at_their_sites_nobody_elsewhere(
    world, make_user, gad_entry
):
    colleague = make_user("clin.north2", "clinician", ["NORTH"])
    sup_south = make_user("sup.south", "supervisor", ["SOUTH"])
    entry = db.session.get(Assessment, gad_entry())
    assert services.may_change(world["clin_n"], entry)
    assert services.may_change(world["sup_n"], entry)
    assert not services.may_change(colleague, entry)
    assert not services.may_change(world["clin_s"], entry)
    assert not services.may_change(sup_south, entry)
    assert not services.may_change(world["admin"], entry)


@pytest.mark.parametrize("change", ["amend", "void"])
def test_the_services_refuse_a_colleagues_change(world, make_user, gad_entry, change):
    colleague = make_user("clin.north2", "clinician", ["NORTH"])
    entry = db.session.get(Assessment, gad_entry())
    before = (count(Assessment), count(AuditEvent))
    with pytest.raises(ChangeNotAllowed):
        if change == "amend":
            answers = Answers(gad(2), entry.observed_at)
            services.amend_assessment(colleague, entry, entry.version, answers, "wrong")
        else:
            services.void_assessment(colleague, entry, entry.version, "duplicate", "")
    db.session.rollback()
    assert (count(Assessment), count(AuditEvent)) == before
    assert db.session.get(Assessment, entry.id).status == "active"


def test_a_colleague_is_refused_over_http_and_the_refusal_is_audited(
    world, make_user, gad_entry, login
):
    make_user("clin.north2", "clinician", ["NORTH"])
    entry_id = gad_entry()
    colleague = login("clin.north2")
    colleague.token = colleague.csrf_token("/")
    fresh()
    before = count(Assessment)
    assert colleague.get(f"/assessments/{entry_id}/amend").status_code == 403
    form = {**{k: "2" for k in GAD7}, "observed_at": input_value(an_hour_ago(), LONDON)}
    assert amend(colleague, entry_id, "mine now", form=form).status_code == 403
    assert void(colleague, entry_id, "duplicate", version=1).status_code == 403
    # The entry page offers neither amending nor voiding to them.
    page = colleague.get(f"/assessments/{entry_id}")
    assert page.status_code == 200
    assert f"/assessments/{entry_id}/amend" not in page.get_data(as_text=True)
    assert f"/assessments/{entry_id}/void" not in page.get_data(as_text=True)
    fresh()
    refused = events("access_refused")
    assert len(refused) == 3
    assert {(e.username, e.entity, e.entity_id) for e in refused} == {
        ("clin.north2", "assessment", entry_id)
    }
    assert [json.loads(e.details)["status"] for e in refused] == [403, 403, 403]
    assert count(Assessment) == before
    assert db.session.get(Assessment, entry_id).status == "active"


def test_a_supervisor_may_amend_and_void_any_entry_at_their_site(world, gad_entry, login):
    first, second = gad_entry(), gad_entry()
    sup = login("sup.north")
    amended = new_id(amend(sup, first, "Supervisor correction", **gad(2)))
    assert void(sup, second, "duplicate").status_code == 302
    fresh()
    assert db.session.get(Assessment, first).status == "amended"
    assert db.session.get(Assessment, amended).total == 14
    assert db.session.get(Assessment, second).status == "voided"


def test_another_site_gets_404_and_an_admin_403(world, gad_entry, login):
    entry_id = gad_entry()
    south, admin = login("clin.south"), login("admin.one")
    assert south.get(f"/assessments/{entry_id}/amend").status_code == 404
    assert amend(south, entry_id, "x", form={"version": "1"}).status_code == 404
    assert void(south, entry_id, "duplicate", version=1).status_code == 404
    assert south.get(f"/assessments/{entry_id}/history").status_code == 404
    assert admin.get(f"/assessments/{entry_id}/amend").status_code == 403
    assert amend(admin, entry_id, "x", form={"version": "1"}).status_code == 403
    assert void(admin, entry_id, "duplicate", version=1).status_code == 403
    fresh()
    assert db.session.get(Assessment, entry_id).status == "active"
    assert count(Assessment) == 1


# --------------------------------------------------------------------------- amending


def test_amend_makes_a_new_version_and_keeps_the_old_one(world, gad_entry, login):
    old_id = gad_entry(notes="first look")
    clin = login("clin.north")
    new = new_id(amend(clin, old_id, "Scored from the wrong sheet", **gad(3)))
    fresh()
    old, replacement = db.session.get(Assessment, old_id), db.session.get(Assessment, new)
    assert (replacement.replaces_id, replacement.status) == (old_id, "active")
    assert (replacement.total, replacement.band, replacement.complete) == (21, "Severe", True)
    assert [s.score for s in replacement.item_scores] == [3] * 7
    assert replacement.notes == "first look"
    assert replacement.observed_at == old.observed_at
    assert (old.status, old.status_reason) == ("amended", "Scored from the wrong sheet")
    assert (old.total, old.band, [s.score for s in old.item_scores]) == (7, "Mild", [1] * 7)
    old_page = clin.get(f"/assessments/{old_id}")
    assert old_page.status_code == 200
    assert "Amended Scored from the wrong sheet" in text(old_page)
    assert f"/assessments/{old_id}/amend" not in old_page.get_data(as_text=True)
    new_page = clin.get(f"/assessments/{new}")
    assert "Total 21" in text(new_page) and "Severe" in text(new_page)


@pytest.mark.parametrize("reason", ["", "   \r\n  "])
def test_amend_needs_a_reason_and_keeps_the_input(world, gad_entry, login, reason):
    entry_id = gad_entry()
    clin = login("clin.north")
    fresh()
    before = (count(Assessment), count(AuditEvent))
    response = amend(clin, entry_id, reason, nervous=3, notes="shaking & sweating")
    assert response.status_code == 422
    assert field_errors(response, "reason") == "Give the reason for this change."
    assert checked(response, "nervous") == ["3"]
    assert checked(response, "afraid") == ["1"]
    assert textarea(response, "notes") == "shaking & sweating"
    fresh()
    # Nothing of the refused amendment was written; the page showed the entry again, so its
    # read is audited (R02).
    assert count(Assessment) == before[0]
    written = db.session.scalars(
        select(AuditEvent.action).order_by(AuditEvent.id).offset(before[1])
    ).all()
    assert written == ["view_assessment"]
    assert db.session.get(Assessment, entry_id).status == "active"


@pytest.mark.parametrize(
    "changes, field, message",
    [
        ({"nervous": "7"}, "nervous", "'7' is not an allowed score"),
        ({"restless": ""}, "restless", "Answer this item, or mark it not assessed."),
        ({"afraid": "na:asleeep"}, "afraid", "is not an allowed score"),
    ],
)
def test_amend_refuses_invalid_answers_like_the_entry_form(
    world, gad_entry, login, changes, field, message
):
    entry_id = gad_entry()
    clin = login("clin.north")
    fresh()
    before = count(Assessment)
    response = amend(clin, entry_id, "Correcting the answers", irritable=2, **changes)
    assert response.status_code == 422
    assert message in field_errors(response, field)
    assert checked(response, "irritable") == ["2"]
    assert textarea(response, "reason") == "Correcting the answers"
    fresh()
    assert count(Assessment) == before
    assert db.session.get(Assessment, entry_id).status == "active"


def test_amend_refuses_a_time_outside_the_entrys_episode(world, gad_entry, login):
    entry_id = gad_entry()
    episode_start = world["patient_n"].episodes[0].started_at
    clin = login("clin.north")
    cases = {
        input_value(episode_start - timedelta(hours=2), LONDON): "before the episode started",
        input_value(now_utc() + timedelta(hours=1), LONDON): "in the future",
    }
    for observed, message in cases.items():
        response = amend(clin, entry_id, "Wrong time", observed_at=observed)
        assert response.status_code == 422
        assert message in field_errors(response, "observed_at")
    # Once the episode has ended, a time after its end is refused too.
    episode = world["patient_n"].episodes[0]
    end_episode(world["clin_n"], episode, now_utc() - timedelta(minutes=30))
    response = amend(clin, entry_id, "Wrong time", observed_at=input_value(now_utc(), LONDON))
    assert response.status_code == 422
    assert "after the episode ended" in field_errors(response, "observed_at")
    fresh()
    assert count(Assessment) == 1


def test_amending_an_entry_that_is_no_longer_active_is_a_conflict(world, gad_entry, login):
    amended_id, voided_id = gad_entry(), gad_entry()
    clin = login("clin.north")
    _, stale_form = open_amend(clin, amended_id)
    new_id(amend(clin, amended_id, "First correction", **gad(2)))
    assert void(clin, voided_id, "entered_in_error").status_code == 302
    fresh()
    before = count(Assessment)
    for entry_id in (amended_id, voided_id):
        page = clin.get(f"/assessments/{entry_id}/amend")
        assert page.status_code == 409
        assert CONFLICT in text(page).lower()
    again = amend(clin, amended_id, "Second go", form=stale_form, **gad(3))
    assert again.status_code == 409
    assert amend(clin, voided_id, "After the void", form={**stale_form}).status_code == 409
    fresh()
    assert count(Assessment) == before


def test_the_conflict_page_of_an_amended_entry_links_to_its_current_version(
    world, gad_entry, login
):
    old_id = gad_entry()
    clin = login("clin.north")
    current = new_id(amend(clin, old_id, "First correction", **gad(2)))
    page = clin.get(f"/assessments/{old_id}/amend")
    assert page.status_code == 409
    assert f'href="/assessments/{current}"' in page.get_data(as_text=True)


def test_the_amend_form_is_prefilled_with_the_current_answers(world, add_assessment, login):
    observed = an_hour_ago()
    scores = {key: 0 for key in ("restlessness", "pupil_size", "bone_joint_aches")}
    scores.update(
        resting_pulse=2,
        sweating=3,
        runny_nose_tearing=1,
        gi_upset=None,
        tremor=0,
        yawning=1,
        anxiety_irritability=2,
        gooseflesh=3,
    )
    north = add_assessment(
        world["patient_n"],
        world["clin_n"],
        "cows",
        scores,
        observed_at=observed,
        notes="Line one\nline two",
        not_assessed_reasons={"gi_upset": "asleep"},
        measured_values={"resting_pulse": 110},
    ).id
    south = add_assessment(
        world["patient_s"], world["clin_s"], "gad7", gad(2, afraid=0), observed_at=observed
    ).id
    page, values = open_amend(login("clin.north"), north)
    assert checked(page, "resting_pulse") == ["2"]
    assert values["resting_pulse_bpm"] == "110"
    assert checked(page, "sweating") == ["3"]
    assert checked(page, "gooseflesh") == ["3"]
    assert checked(page, "gi_upset") == ["na:asleep"]
    assert checked(page, "restlessness") == ["0"]
    assert values["notes"] == "Line one\nline two"
    assert values["observed_at"] == input_value(observed, LONDON)
    assert values["version"] == "1"
    assert len(values["submission_key"]) == 32
    assert textarea(page, "reason") == ""
    page, values = open_amend(login("clin.south"), south)
    assert values["observed_at"] == input_value(observed, NEW_YORK)
    assert values["observed_at"] != input_value(observed, LONDON)
    assert checked(page, "nervous") == ["2"] and checked(page, "afraid") == ["0"]


def test_saving_the_prefilled_form_unchanged_except_a_note_changes_only_the_note(
    world, add_assessment, login
):
    entry_id = add_assessment(
        world["patient_n"],
        world["clin_n"],
        "cows",
        None,
        observed_at=an_hour_ago(),
        measured_values={"resting_pulse": 72},
    ).id
    clin = login("clin.north")
    new = new_id(amend(clin, entry_id, "Add a note", notes="Calm, sitting up"))
    fresh()
    old, replacement = db.session.get(Assessment, entry_id), db.session.get(Assessment, new)
    assert services.changes_between(old, replacement) == [
        services.ItemChange("notes", "", "Calm, sitting up")
    ]
    assert replacement.item_scores[0].measured_value == 72


def test_an_untouched_observed_at_is_kept_to_the_second(world, add_assessment, login):
    observed = an_hour_ago() + timedelta(seconds=17, microseconds=250)
    entry_id = add_assessment(
        world["patient_n"], world["clin_n"], "gad7", gad(1), observed_at=observed
    ).id
    new = new_id(amend(login("clin.north"), entry_id, "Add a note", notes="Calm"))
    fresh()
    old, replacement = db.session.get(Assessment, entry_id), db.session.get(Assessment, new)
    assert replacement.observed_at == old.observed_at
    assert [c.item_key for c in services.changes_between(old, replacement)] == ["notes"]


def test_an_entry_in_the_repeated_hour_can_be_amended_without_touching_its_time(
    world, add_assessment, login
):
    patient = create_patient(
        world["clin_n"],
        world["north"],
        "N-DST",
        None,
        datetime(2026, 10, 20, tzinfo=UTC),
        "opioid",
        "",
    )
    # 01:30 UTC on 25 October 2026 is the second 01:30 in London (GMT, after BST ended).
    observed = datetime(2026, 10, 25, 1, 30, tzinfo=UTC)
    entry_id = add_assessment(patient, world["clin_n"], "gad7", gad(1), observed_at=observed).id
    response = amend(login("clin.north"), entry_id, "Add a note", notes="Asleep later")
    new = new_id(response)
    fresh()
    assert db.session.get(Assessment, new).observed_at == observed


# --------------------------------------------------------------------------- optimistic locking


def test_a_second_editor_gets_a_conflict_and_keeps_their_input(world, gad_entry, login):
    entry_id = gad_entry()
    clin, sup = login("clin.north"), login("sup.north")
    _, clin_form = open_amend(clin, entry_id)
    _, sup_form = open_amend(sup, entry_id)
    assert clin_form["version"] == sup_form["version"] == "1"
    current = new_id(amend(sup, entry_id, "Supervisor: item 1 was 2", form=sup_form, nervous=2))
    response = amend(
        clin,
        entry_id,
        "My reason: restless all night",
        form=clin_form,
        restless=3,
        notes="Pacing the corridor",
    )
    assert response.status_code == 409
    page = text(response)
    assert CONFLICT in page.lower()
    assert "Nothing you entered was saved" in page
    assert f'href="/assessments/{current}"' in response.get_data(as_text=True)
    # Their own input is on the page, so nothing they typed is lost.
    assert "My reason: restless all night" in page
    assert "Pacing the corridor" in page
    assert "Being so restless that it is hard to sit still 3" in page
    fresh()
    assert count(Assessment) == 2
    assert len(events("assessment_amend")) == 1
    assert db.session.get(Assessment, current).status == "active"
    assert db.session.get(Assessment, current).item_scores[0].score == 2


def test_the_service_refuses_a_stale_version(world, gad_entry):
    entry = db.session.get(Assessment, gad_entry())
    answers = Answers(gad(2), entry.observed_at)
    replacement = services.amend_assessment(world["clin_n"], entry, 1, answers, "First")
    with pytest.raises(EditConflict) as conflict:
        services.amend_assessment(world["sup_n"], entry, 1, answers, "Second")
    assert conflict.value.current.id == replacement.id
    db.session.rollback()
    with pytest.raises(EditConflict):
        services.void_assessment(world["sup_n"], replacement, 7, "duplicate", "")
    db.session.rollback()
    assert count(Assessment) == 2
    assert db.session.get(Assessment, replacement.id).status == "active"


def test_every_link_on_the_conflict_page_works_for_the_user(world, gad_entry, login):
    entry_id = gad_entry()
    clin, sup = login("clin.north"), login("sup.north")
    _, clin_form = open_amend(clin, entry_id)
    current = new_id(amend(sup, entry_id, "Supervisor correction", nervous=2))
    response = amend(clin, entry_id, "Mine", form=clin_form, restless=3)
    assert response.status_code == 409
    link = f"/assessments/{current}/amend"
    assert link not in response.get_data(as_text=True) or clin.get(link).status_code == 200


def test_a_stale_version_on_void_is_a_conflict(world, gad_entry, login):
    entry_id = gad_entry()
    clin, sup = login("clin.north"), login("sup.north")
    version = input_val(clin.get(f"/assessments/{entry_id}"), "version")
    # A supervisor signs it meanwhile: the row changed (its version went up).
    sign_page = sup.get(f"/assessments/{entry_id}")
    signed = send(
        sup,
        f"/assessments/{entry_id}/sign",
        {"password": PASSWORD, "version": input_val(sign_page, "version")},
    )
    assert signed.status_code == 302
    response = void(clin, entry_id, "entered_in_error", version=version)
    assert response.status_code == 409
    assert CONFLICT in text(response).lower()
    assert f'href="/assessments/{entry_id}"' in response.get_data(as_text=True)
    fresh()
    assert db.session.get(Assessment, entry_id).status == "active"
    assert events("assessment_void") == []


def test_a_void_after_an_amendment_links_to_the_new_version(world, gad_entry, login):
    entry_id = gad_entry()
    clin = login("clin.north")
    version = input_val(clin.get(f"/assessments/{entry_id}"), "version")
    current = new_id(amend(clin, entry_id, "Correction", nervous=0))
    response = void(clin, entry_id, "duplicate", version=version)
    assert response.status_code == 409
    assert f'href="/assessments/{current}"' in response.get_data(as_text=True)
    fresh()
    assert db.session.get(Assessment, current).status == "active"


# --------------------------------------------------------------------------- double submit


def test_a_double_submit_of_the_amend_form_makes_one_amendment(world, gad_entry, login):
    entry_id = gad_entry()
    clin = login("clin.north")
    _, form = open_amend(clin, entry_id)
    first = amend(clin, entry_id, "Corrected", form=form, nervous=3)
    second = amend(clin, entry_id, "Corrected", form=form, nervous=3)
    assert second.status_code == 302
    assert second.headers["Location"] == first.headers["Location"]
    fresh()
    assert count(Assessment) == 2
    assert len(events("assessment_amend")) == 1


def test_the_same_amend_submission_twice_returns_the_first_amendment(world, gad_entry):
    entry = db.session.get(Assessment, gad_entry())
    answers = Answers(gad(2), entry.observed_at)
    key = "a" * 32
    first = services.amend_assessment(world["clin_n"], entry, 1, answers, "Fix", key)
    again = services.amend_assessment(world["clin_n"], entry, 1, answers, "Fix", key)
    assert again.id == first.id


# --------------------------------------------------------------------------- voiding


@pytest.mark.parametrize(
    "reason_code, reason, field, message",
    [
        (None, "", "reason_code", "Choose why this entry is void."),
        ("bogus", "", "reason_code", "Not a valid choice."),
        # VoidForm.validate_reason never runs (Optional() stops the chain on an empty field);
        # the service's generic message is what the user sees.
        ("other", "", "reason", "Say why this entry is void."),
        ("other", "   ", "reason", "Say why this entry is void."),
    ],
)
def test_void_needs_a_reason(world, gad_entry, login, reason_code, reason, field, message):
    entry_id = gad_entry()
    clin = login("clin.north")
    response = void(clin, entry_id, reason_code, reason)
    assert response.status_code == 422
    assert message in field_errors(response, field)
    fresh()
    assert db.session.get(Assessment, entry_id).status == "active"
    assert events("assessment_void") == []


@pytest.mark.parametrize(
    "reason_code, reason, stored",
    [
        ("entered_in_error", "", "Entered in error"),
        ("wrong_patient", "Meant for N-002", "Recorded for the wrong patient: Meant for N-002"),
        ("duplicate", "", "Duplicate of another entry"),
        ("other", "Scale given to a visitor", "Scale given to a visitor"),
    ],
)
def test_a_void_keeps_the_row_with_its_reason(world, gad_entry, login, reason_code, reason, stored):
    entry_id = gad_entry()
    clin = login("clin.north")
    response = void(clin, entry_id, reason_code, reason)
    assert response.status_code == 302
    assert response.headers["Location"].endswith(f"/assessments/{entry_id}")
    fresh()
    entry = db.session.get(Assessment, entry_id)
    assert (entry.status, entry.status_reason, entry.total) == ("voided", stored, 7)
    assert count(Assessment) == 1
    page = clin.get(f"/assessments/{entry_id}")
    assert page.status_code == 200
    assert f"Void {stored}" in text(page)


def test_a_void_takes_the_entry_out_of_the_chart_but_not_off_the_timeline(
    world, add_assessment, login
):
    patient, clin_user = world["patient_n"], world["clin_n"]
    kept = add_assessment(patient, clin_user, "cows", None, observed_at=an_hour_ago())
    voided = add_assessment(
        patient,
        clin_user,
        "cows",
        {**{s.item_key: s.score for s in kept.item_scores}, "sweating": 3},
        observed_at=an_hour_ago() - timedelta(hours=2),
    )
    patient_id, voided_id = patient.id, voided.id
    clin = login("clin.north")
    chart_url = f"/patients/{patient_id}/charts/cows.svg"
    before = clin.get(chart_url)
    assert len(_COMPLETE_MARKER.findall(before.get_data(as_text=True))) == 2
    assert void(clin, voided_id, "entered_in_error").status_code == 302
    after = clin.get(chart_url, headers={"If-None-Match": before.headers["ETag"]})
    assert after.status_code == 200
    assert after.headers["ETag"] != before.headers["ETag"]
    assert len(_COMPLETE_MARKER.findall(after.get_data(as_text=True))) == 1
    rows = timeline_rows(clin.get(f"/patients/{patient_id}"))
    assert [status for status, _ in rows] == ["active", "voided"]
    assert "Void Entered in error" in rows[1][1]
    tracker = text(clin.get(f"/patients/{patient_id}/tracker"))
    assert "COWS totals (1)" in tracker


def test_voiding_twice_is_a_conflict(world, gad_entry, login):
    entry_id = gad_entry()
    clin = login("clin.north")
    assert void(clin, entry_id, "duplicate", version=1).status_code == 302
    again = void(clin, entry_id, "entered_in_error", version=1)
    assert again.status_code == 409
    assert CONFLICT in text(again).lower()
    fresh()
    entry = db.session.get(Assessment, entry_id)
    assert entry.status_reason == "Duplicate of another entry"
    assert len(events("assessment_void")) == 1
    with pytest.raises(EditConflict):
        services.void_assessment(world["clin_n"], entry, entry.version, "duplicate", "")
    db.session.rollback()


def test_a_voided_signed_entry_does_not_claim_an_amendment(world, gad_entry, login):
    entry = db.session.get(Assessment, gad_entry())
    sign_assessment(world["sup_n"], entry, PASSWORD, entry.version)
    entry_id = entry.id
    clin = login("clin.north")
    assert void(clin, entry_id, "entered_in_error").status_code == 302
    page = text(clin.get(f"/assessments/{entry_id}"))
    assert "Void Entered in error" in page
    assert "invalidated by amendment" not in page


# --------------------------------------------------------------------------- history


def test_history_lists_every_version_oldest_first_with_what_changed(world, gad_entry, login):
    first = gad_entry(notes="")
    clin, sup = login("clin.north"), login("sup.north")
    second = new_id(amend(clin, first, "Item 1 was misread", nervous=3))
    third = new_id(amend(sup, second, "Added the nurse's note", afraid=0, notes="Calmer now"))
    fresh()
    chain = services.history(db.session.get(Assessment, second))
    assert [a.id for a in chain] == [first, second, third]
    assert [a.status for a in chain] == ["amended", "amended", "active"]
    for entry_id in (first, second, third):
        page = clin.get(f"/assessments/{entry_id}/history")
        assert page.status_code == 200
        assert "3 versions, oldest first" in text(page)
        blocks = history_versions(page)
        assert len(blocks) == 3
    v1, v2, v3 = blocks
    assert v1.startswith(f"Version 1 (entry #{first}) Recorded by Clin.North")
    assert "total 7" in v1 and "Amended Item 1 was misread" in v1 and "Why:" not in v1
    assert v2.startswith(f"Version 2 (entry #{second}) Recorded by Clin.North")
    assert "Why: Item 1 was misread" in v2 and "total 9" in v2
    assert v3.startswith(f"Version 3 (entry #{third}) Recorded by Sup.North")
    assert f"at {format_local(chain[2].recorded_at, LONDON)}" in v3
    assert "Why: Added the nurse's note" in v3 and "total 8" in v3
    assert "Not yet reviewed" in v3
    tables = re.split(r'<li id="v\d+"', page.get_data(as_text=True))[1:]
    assert "Changed from the version before" not in tables[0]
    assert change_rows(tables[1]) == [("Feeling nervous, anxious, or on edge", "1", "3")]
    assert change_rows(tables[2]) == [
        ("Feeling afraid, as if something awful might happen", "1", "0"),
        ("notes", "", "Calmer now"),
    ]


def test_changes_between_names_items_time_and_notes(world, add_assessment):
    observed = an_hour_ago()
    old = add_assessment(
        world["patient_n"], world["clin_n"], "cows", None, observed_at=observed, notes="a"
    )
    scores = {s.item_key: s.score for s in old.item_scores}
    answers = Answers(
        {**scores, "resting_pulse": 2, "gi_upset": None},
        observed - timedelta(minutes=30),
        "b",
        {"gi_upset": "asleep"},
        {"resting_pulse": 105},
    )
    new = services.amend_assessment(world["clin_n"], old, old.version, answers, "Re-measured")
    changes = {c.item_key: (c.before, c.after) for c in services.changes_between(old, new)}
    assert changes == {
        "resting_pulse": ("0", "2 (105)"),
        "gi_upset": ("0", "not assessed (Asleep)"),
        "observed_at": (
            format_local(observed, "UTC"),
            format_local(observed - timedelta(minutes=30), "UTC"),
        ),
        "notes": ("a", "b"),
    }


def test_a_changed_time_is_shown_in_the_site_zone_in_the_history(world, add_assessment, login):
    observed = an_hour_ago()
    entry_id = add_assessment(
        world["patient_s"], world["clin_s"], "gad7", gad(1), observed_at=observed
    ).id
    earlier = observed - timedelta(hours=1)
    clin = login("clin.south")
    new = new_id(amend(clin, entry_id, "Wrong hour", observed_at=input_value(earlier, NEW_YORK)))
    page = clin.get(f"/assessments/{new}/history").get_data(as_text=True)
    assert earlier.isoformat() not in page
    assert format_local(earlier, NEW_YORK) in html.unescape(page)


def test_charts_and_tracker_show_active_entries_and_the_timeline_every_version(
    world, add_assessment, login
):
    patient = world["patient_n"]
    patient_id = patient.id
    observed = an_hour_ago()
    amended = add_assessment(patient, world["clin_n"], "gad7", gad(1), observed_at=observed).id
    voided = add_assessment(
        patient, world["clin_n"], "gad7", gad(0), observed_at=observed - timedelta(hours=3)
    ).id
    clin = login("clin.north")
    current = new_id(amend(clin, amended, "Re-scored", **gad(2)))
    assert void(clin, voided, "duplicate").status_code == 302
    svg = clin.get(f"/patients/{patient_id}/charts/gad7.svg").get_data(as_text=True)
    assert len(_COMPLETE_MARKER.findall(svg)) == 1
    tracker = clin.get(f"/patients/{patient_id}/tracker")
    assert "GAD-7 totals (1)" in text(tracker)
    linked = set(re.findall(r'href="/assessments/(\d+)"', tracker.get_data(as_text=True)))
    assert linked == {str(current)}
    rows = timeline_rows(clin.get(f"/patients/{patient_id}"))
    assert sorted(status for status, _ in rows) == ["active", "amended", "voided"]
    history = clin.get(f"/assessments/{current}/history")
    assert len(history_versions(history)) == 2
    fresh()
    assert {a.id for a in db.session.scalars(select(Assessment))} == {amended, voided, current}


def test_the_amend_service_refuses_a_time_outside_the_episode_and_a_blank_reason(world, gad_entry):
    entry = db.session.get(Assessment, gad_entry())
    episode_start = entry.episode.started_at
    with pytest.raises(EntryError) as error:
        services.amend_assessment(
            world["sup_n"],
            entry,
            entry.version,
            Answers(gad(1), episode_start - timedelta(minutes=1)),
            "Earlier",
        )
    assert error.value.field == "observed_at"
    db.session.rollback()
    with pytest.raises(EntryError) as error:
        services.amend_assessment(
            world["sup_n"], entry, entry.version, Answers(gad(1), entry.observed_at), "  "
        )
    assert error.value.field == "reason"
    db.session.rollback()
    assert count(Assessment) == 1
