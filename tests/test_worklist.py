"""The patient list as the clinician's worklist: pages of 50 that reach every patient, search
by identifier or label with a count, what each row says about the patient, and the monitoring
interval each episode sets (when the patient is due, and overdue), shared with the dashboard.

A monitoring schedule only: how often the patient is to be assessed on a withdrawal scale.
"""

from __future__ import annotations

import html
import json
import re
from datetime import UTC, datetime, timedelta

import pytest
from pages import field_errors, input_val, readable_text, text_of
from sqlalchemy import select

from clinic_log import due
from clinic_log.assessments.services import record_assessment, void_assessment
from clinic_log.dashboard import summary
from clinic_log.database import now_utc
from clinic_log.extensions import db
from clinic_log.models import AuditEvent, DashboardEpisode, Episode, Patient
from clinic_log.patients import services, worklist
from clinic_log.scale_registry import get_scale
from clinic_log.timeutil import input_value

NEW_YORK = "America/New_York"
_ROW = re.compile(r'<tr class="worklist-row[^"]*" data-patient="(\d+)">(.*?)</tr>', re.S)
_CELL = re.compile(r'<td class="(\w+)">(.*?)</td>', re.S)


# --------------------------------------------------------------------------- helpers


def rows(page) -> list[dict[str, str]]:
    """Each listed patient as {"identifier": ..., cell class: readable text}, in page order."""
    found = []
    for _pid, body in _ROW.findall(page.get_data(as_text=True)):
        identifier = re.search(r'<th scope="row"><a [^>]*><bdi>(.*?)</bdi></a></th>', body)
        row = {"identifier": html.unescape(identifier.group(1))}
        for name, cell in _CELL.findall(body):
            row[name] = " ".join(html.unescape(re.sub(r"<[^>]+>", " ", cell)).split())
        found.append(row)
    return found


def identifiers(page) -> list[str]:
    return [row["identifier"] for row in rows(page)]


def row_of(page, identifier: str) -> dict[str, str]:
    matches = [row for row in rows(page) if row["identifier"] == identifier]
    assert len(matches) == 1, (identifier, identifiers(page))
    return matches[0]


def scores_for(scale_key: str, total: int) -> dict[str, int]:
    """Item scores adding up to ``total`` (greedy over each item's allowed scores)."""
    scores, left = {}, total
    for item in get_scale(scale_key).items:
        score = max(s for s in item.allowed_scores if s <= left)
        scores[item.key] = score
        left -= score
    assert left == 0, f"cannot make {scale_key} total {total}"
    return scores


@pytest.fixture
def record(world, add_assessment):
    """Record ``total`` on a scale ``hours`` ago (or ``at``), optionally leaving one item
    not assessed."""

    def _record(patient, scale_key="cows", total=0, hours=1.0, at=None, incomplete=None, user=None):
        scores = scores_for(scale_key, total)
        reasons = None
        if incomplete:
            scores[incomplete] = None
            reasons = {incomplete: "not_measured"}
        return add_assessment(
            patient,
            world[user or "clin_n"],
            scale_key,
            scores=scores,
            not_assessed_reasons=reasons,
            observed_at=at or now_utc() - timedelta(hours=hours),
        )

    return _record


@pytest.fixture
def new_patient(world):
    """A NORTH patient whose episode started ``hours`` ago, assessed every ``every`` hours
    (None: the site's default)."""

    def _new(identifier, hours=24.0, every=None, label=None, site="north", user="clin_n"):
        return services.create_patient(
            world[user],
            world[site],
            identifier,
            label,
            now_utc() - timedelta(hours=hours),
            "opioid",
            "",
            assess_every_hours=every,
        )

    return _new


@pytest.fixture
def crowd(world):
    """230 more NORTH patients (W-001 ... W-230), every tenth labelled "Bay <n>"."""
    start = now_utc() - timedelta(hours=3)
    for n in range(1, 231):
        label = f"Bay {n}" if n % 10 == 0 else None
        services.create_patient(
            world["clin_n"], world["north"], f"W-{n:03d}", label, start, "opioid", ""
        )
    db.session.commit()
    return [f"W-{n:03d}" for n in range(1, 231)]


def walk(browser, **params) -> list[list[str]]:
    """Every page of the list with these parameters, following its "Next" links."""
    pages, number = [], 1
    while True:
        page = browser.get("/patients/", query_string={**params, "page": number})
        assert page.status_code == 200
        pages.append(identifiers(page))
        if 'rel="next"' not in page.get_data(as_text=True):
            return pages
        number += 1


# --------------------------------------------------------------------------- paging


def test_pages_of_50_reach_every_patient_once(crowd, login):
    browser = login("clin.north")
    pages = walk(browser)
    everyone = ["N-001", *crowd]
    assert [len(page) for page in pages] == [50, 50, 50, 50, 31]
    listed = [identifier for page in pages for identifier in page]
    assert sorted(listed) == sorted(everyone)  # no gap, no duplicate
    assert len(set(listed)) == len(listed) == 231
    first = browser.get("/patients/")
    assert "231 patients at your sites" in readable_text(first)
    assert "Patients 1–50 of 231" in readable_text(first)
    assert "Page 1 of 5" in readable_text(first)
    last = browser.get("/patients/?page=5")
    assert "Patients 201–231 of 231" in readable_text(last)
    # The 201st patient, unreachable before, is one click away.
    assert "W-200" in identifiers(browser.get("/patients/?page=5"))


def test_search_by_identifier_or_label_pages_and_counts(crowd, login):
    browser = login("clin.north")
    pages = walk(browser, q="w-1")
    expected = [f"W-{n:03d}" for n in range(100, 200)]
    listed = [identifier for page in pages for identifier in page]
    assert sorted(listed) == sorted(expected)
    assert len(listed) == len(set(listed)) == 100
    assert [len(page) for page in pages] == [50, 50]
    page = browser.get("/patients/", query_string={"q": "w-1"})
    assert "100 patients whose identifier or label contains “w-1”" in readable_text(page)
    # A label: "bay 2" finds Bay 2? no such label; Bay 20, Bay 200 ... Bay 230 do.
    labelled = walk(browser, q="bay 2")
    listed = sorted(identifier for page in labelled for identifier in page)
    assert listed == ["W-020", "W-200", "W-210", "W-220", "W-230"]
    page = browser.get("/patients/", query_string={"q": "BAY 23"})
    assert identifiers(page) == ["W-230"]
    assert "1 patient whose identifier or label contains “BAY 23”" in readable_text(page)


def test_a_page_past_the_end_is_empty_and_says_so(crowd, login):
    browser = login("clin.north")
    for number in ("6", "99", "100000", "9" * 40):
        page = browser.get("/patients/", query_string={"page": number})
        assert page.status_code == 200, number
        assert identifiers(page) == []
        text = readable_text(page)
        assert "past the end of the list: there are 5 pages of 231 patients" in text, number
        assert 'href="/patients/?page=5"' in page.get_data(as_text=True)
    page = browser.get("/patients/", query_string={"page": "3", "q": "bay"})
    assert identifiers(page) == []
    assert "past the end of the list: there is 1 page of 23 patients" in readable_text(page)


@pytest.mark.parametrize(
    ("typed", "message"),
    [
        ("   ", "Spaces alone match nothing"),
        ("\t \u00a0", "Spaces alone match nothing"),
        ("N-\x07001", "Remove the control characters"),
        ("\x1b[2J", "Remove the control characters"),
    ],
)
def test_a_search_of_blanks_or_control_characters_says_why_and_lists_everyone(
    world, login, typed, message
):
    page = login("clin.north").get("/patients/", query_string={"q": typed})
    assert page.status_code == 200
    assert message in field_errors(page, "q")
    assert identifiers(page) == ["N-001"]  # the refused search is not applied


def test_the_list_costs_the_same_statements_at_two_sizes(app, world, login, count_queries):
    browser = login("clin.north")
    urls = ("/patients/", "/patients/?sort=due", "/patients/?show=due&sort=due", "/patients/?q=x")

    def statements():
        counts = {}
        for url in urls:
            browser.get(url)  # warm: the login loader's first-request work
            with count_queries() as seen:
                assert browser.get(url).status_code == 200
            counts[url] = len(seen)
        return counts

    def add(first, last):
        for n in range(first, last):
            patient = services.create_patient(
                world["clin_n"], world["north"], f"X-{n:03d}", f"Bay {n}",
                now_utc() - timedelta(hours=5), "opioid", "", assess_every_hours=1 + n % 6,
            )  # fmt: skip
            if n % 3:
                record_assessment(
                    world["clin_n"], patient, get_scale("cows"), scores_for("cows", n % 40),
                    observed_at=now_utc() - timedelta(hours=n % 4),
                )  # fmt: skip
        db.session.commit()

    add(0, 6)
    small = statements()
    add(6, 120)
    large = statements()
    assert small == large


# --------------------------------------------------------------------------- each row


def test_each_row_says_how_the_patient_is(world, login, new_patient, record):
    floor = record(world["patient_n"], "cows", total=14, hours=2, incomplete="tremor")
    record(world["patient_n"], "gad7", total=3, hours=1)  # not a withdrawal scale
    quiet = new_patient("N-QUIET", hours=30, every=4, label="Bay 4")
    record(quiet, "cows", total=30, hours=6)
    ended = new_patient("N-ENDED", hours=50)
    record(ended, "cows", total=8, hours=40)
    services.end_episode(world["clin_n"], ended.open_episode, now_utc() - timedelta(hours=39))
    new_patient("N-NEVER", hours=0.5, every=1)
    db.session.commit()

    page = login("clin.north").get("/patients/")
    n001 = row_of(page, "N-001")
    # The latest withdrawal total with its floor (Scale.severity), not the later GAD-7.
    assert "COWS 14" in n001["latest"]
    assert "at least Moderate — incomplete, 1 item not assessed" in n001["latest"]
    assert floor.observed_at is not None
    assert re.search(r"\b1 h 0[0-2] min ago\b", n001["since"]), n001  # the GAD-7, any scale
    assert "Open since" in n001["episode"]
    # Default interval (8 h) from the last COWS two hours ago: due in six hours.
    assert "every 8 h (site default)" in n001["due"]
    assert re.search(r"Due in 5 h 5\d min|Due in 6 h 00 min", n001["due"]), n001

    quiet_row = row_of(page, "N-QUIET")
    assert quiet_row["label"].startswith("Bay 4")
    assert "COWS 30" in quiet_row["latest"] and "Moderately severe" in quiet_row["latest"]
    assert re.search(r"Overdue by (1 h 59|2 h 00) min", quiet_row["due"]), quiet_row
    assert "every 4 h" in quiet_row["due"] and "site default" not in quiet_row["due"]

    ended_row = row_of(page, "N-ENDED")
    assert ended_row["episode"] == "No open episode"
    assert "COWS 8" in ended_row["latest"] and "Mild" in ended_row["latest"]
    assert re.search(r"\b40 h 0[0-2] min ago\b|\b1 d 16 h ago\b", ended_row["since"]), ended_row
    assert "Not due: no open episode" in ended_row["due"]

    never_row = row_of(page, "N-NEVER")
    assert never_row["latest"] == "No withdrawal scale recorded"
    assert never_row["since"] == "Never assessed"
    assert re.search(r"Due now: in (29|30) min", never_row["due"]), never_row


def test_the_list_says_nothing_about_treatment(world, login, new_patient, record):
    record(world["patient_n"], "cows", total=40, hours=9)
    new_patient("N-002", every=2)
    db.session.commit()
    body = login("clin.north").get("/patients/").get_data(as_text=True)
    without_footer = re.sub(r"gives? no dosing or treatment advice", "", body)
    assert not re.search(r"\bdos(e|es|ing|age)\b|medicat|\btreat", without_footer, re.I)


# --------------------------------------------------------------------------- due filter, sort


def test_due_filter_and_sort_make_the_shift_worklist(world, login, new_patient, record):
    # N-001: default 8 h, never assessed, started 48 h ago: due 40 h ago.
    late = new_patient("N-LATE", every=2)
    record(late, "cows", total=10, hours=3)  # due 1 h ago
    new_patient("N-SOON", hours=0.5, every=1)  # due in 30 min: due now
    later = new_patient("N-LATER")
    record(later, "cows", total=6, hours=1)  # default 8 h: due in 7 h
    record(later, "gad7", total=3, hours=0.1)  # a GAD-7 does not move the due time
    gone = new_patient("N-GONE")
    services.end_episode(world["clin_n"], gone.open_episode, now_utc() - timedelta(minutes=5))
    db.session.commit()
    browser = login("clin.north")

    by_due = browser.get("/patients/?sort=due")
    assert identifiers(by_due) == ["N-001", "N-LATE", "N-SOON", "N-LATER"]
    text = readable_text(by_due)
    assert "4 patients with an open episode, soonest due first" in text
    assert "1 patient without an open episode" in text  # said, never hidden
    due_now = browser.get("/patients/?show=due")
    assert identifiers(due_now) == ["N-001", "N-LATE", "N-SOON"]  # identifier order
    assert "3 patients due now or overdue" in readable_text(due_now)
    both = browser.get("/patients/?show=due&sort=due")
    assert identifiers(both) == ["N-001", "N-LATE", "N-SOON"]
    searched = browser.get("/patients/?show=due&sort=due&q=late")
    assert identifiers(searched) == ["N-LATE"]
    # The links keep the chosen view.
    assert 'href="/patients/?show=due&amp;sort=due"' in both.get_data(as_text=True) or (
        'aria-current="true"' in both.get_data(as_text=True)
    )


def test_unknown_view_values_show_the_plain_list(world, login):
    browser = login("clin.north")
    for params in ({"sort": "nonsense"}, {"show": "x" * 300}, {"sort": "due\x07"}):
        page = browser.get("/patients/", query_string=params)
        assert page.status_code == 200, params
        assert identifiers(page) == ["N-001"]


# --------------------------------------------------------------------------- the interval


def _new_patient_form(browser, **fields):
    token = input_val(browser.get("/patients/new"), "csrf_token")
    data = {
        "csrf_token": token,
        "site_id": "",
        "identifier": "N-NEW",
        "display_label": "",
        "started_at": "",
        "substance_context": "opioid",
        "episode_note": "",
        "assess_every_hours": "",
    }
    return browser.post("/patients/new", {**data, **fields})


@pytest.mark.parametrize("typed", ["0", "73", "-4", "4.5", "abc", "1e1", "٣", "９", "9" * 30])
def test_an_interval_outside_1_to_72_hours_is_refused_next_to_the_field(world, login, typed):
    browser = login("clin.north")
    page = _new_patient_form(browser, site_id=str(world["north"].id), assess_every_hours=typed)
    assert page.status_code == 422, typed
    assert "whole number of hours from 1 to 72" in field_errors(page, "assess_every_hours")
    assert input_val(page, "assess_every_hours") == typed  # what was typed is kept
    assert db.session.scalar(select(Patient).where(Patient.identifier == "N-NEW")) is None


@pytest.mark.parametrize(("typed", "stored"), [("", None), ("1", 1), (" 4 ", 4), ("72", 72)])
def test_the_interval_is_set_on_the_new_patient_form(world, login, typed, stored):
    browser = login("clin.north")
    page = _new_patient_form(browser, site_id=str(world["north"].id), assess_every_hours=typed)
    assert page.status_code == 302, text_of(page)[:2000]
    db.session.commit()  # a fresh read, after the request
    episode = db.session.scalar(select(Episode).join(Patient).where(Patient.identifier == "N-NEW"))
    assert episode.assess_every_hours == stored
    # The newest: without an order PostgreSQL may return the world's own episodes last.
    opened = db.session.scalars(
        select(AuditEvent)
        .where(AuditEvent.action == "episode_open")
        .order_by(AuditEvent.id.desc())
        .limit(1)
    ).one()
    assert json.loads(opened.details)["assess_every_hours"] == stored


def test_the_interval_is_set_on_the_new_episode_form_and_changed_later_with_an_audit_line(
    world, login
):
    patient_id = world["patient_n"].id
    episode = world["patient_n"].open_episode
    services.end_episode(world["clin_n"], episode, now_utc() - timedelta(hours=1))
    browser = login("clin.north")
    form = browser.get(f"/patients/{patient_id}/episodes/new")
    assert "Assess every (hours)" in text_of(form)
    assert "any withdrawal scale" in text_of(form)
    assert "site default: 8" in text_of(form)
    token = input_val(form, "csrf_token")
    post = {
        "csrf_token": token,
        "started_at": input_value(now_utc() - timedelta(minutes=30), "Europe/London"),
        "substance_context": "opioid",
        "episode_note": "",
    }
    refused = browser.post(
        f"/patients/{patient_id}/episodes/new", {**post, "assess_every_hours": "99"}
    )
    assert refused.status_code == 422
    assert "whole number of hours from 1 to 72" in field_errors(refused, "assess_every_hours")
    assert input_val(refused, "assess_every_hours") == "99"
    done = browser.post(f"/patients/{patient_id}/episodes/new", {**post, "assess_every_hours": "4"})
    assert done.status_code == 302, text_of(done)[:3000]
    db.session.commit()  # a fresh read, after the requests
    opened = db.session.scalar(
        select(Episode).where(Episode.patient_id == patient_id, Episode.ended_at.is_(None))
    )
    assert opened.assess_every_hours == 4

    url = f"/patients/{patient_id}/episodes/{opened.id}/monitoring"
    show = browser.get(f"/patients/{patient_id}")
    assert "every 4 h" in readable_text(show)
    for bad in ("0", "73", "x", "2.5"):
        page = browser.post(url, {"csrf_token": token, "assess_every_hours": bad})
        assert page.status_code == 422, bad
        assert "whole number of hours from 1 to 72" in field_errors(page, "assess_every_hours")
        assert input_val(page, "assess_every_hours") == bad
    assert browser.post(url, {"csrf_token": token, "assess_every_hours": "6"}).status_code == 302
    assert browser.post(url, {"csrf_token": token, "assess_every_hours": ""}).status_code == 302
    db.session.commit()  # a fresh read, after the requests
    assert db.session.get(Episode, opened.id).assess_every_hours is None
    changes = db.session.scalars(
        select(AuditEvent)
        .where(AuditEvent.action == "episode_monitoring_change")
        .order_by(AuditEvent.id)
    ).all()
    assert [json.loads(e.details) for e in changes] == [
        {"before": 4, "after": 6, "site_default_hours": 8},
        {"before": 6, "after": None, "site_default_hours": 8},
    ]
    assert {(e.entity, e.entity_id, e.patient_id, e.site_id) for e in changes} == {
        ("episode", opened.id, patient_id, world["north"].id)
    }
    # Only an open episode has a schedule to change.
    services.end_episode(world["clin_n"], db.session.get(Episode, opened.id), now_utc())
    db.session.commit()
    page = browser.post(url, {"csrf_token": token, "assess_every_hours": "3"})
    assert page.status_code == 422
    assert "This episode has ended" in field_errors(page, "assess_every_hours")


def test_another_sites_episode_schedule_cannot_be_changed(world, login):
    south = world["patient_s"]
    url = f"/patients/{south.id}/episodes/{south.open_episode.id}/monitoring"
    browser = login("clin.north")
    token = browser.csrf_token("/patients/new")
    response = browser.post(url, {"csrf_token": token, "assess_every_hours": "2"})
    assert response.status_code in (403, 404)
    db.session.commit()  # a fresh read, after the requests
    assert db.session.get(Episode, south.open_episode.id).assess_every_hours is None


# --------------------------------------------------------------------------- one rule, two pages


def test_the_dashboard_uses_the_same_due_times(app, world, login, new_patient, record):
    tight = new_patient("N-TIGHT", every=2)
    record(tight, "cows", total=10, hours=3)  # 2 h interval: overdue by 1 h
    loose = new_patient("N-LOOSE", every=12)
    record(loose, "cows", total=10, hours=9)  # 12 h interval: not overdue (8 h would be)
    gad = new_patient("N-GAD", every=4)
    record(gad, "cows", total=10, hours=5)
    record(gad, "gad7", total=3, hours=0.5)  # not a withdrawal scale: still overdue
    db.session.commit()
    listing = login("clin.north").get("/patients/")
    dashboard = login("sup.north").get("/dashboard/").get_data(as_text=True)
    dash_rows = dict(
        (html.unescape(re.search(r"<bdi>(.*?)</bdi>", body).group(1)), (bool(cls), body))
        for cls, body in re.findall(
            r'<tr( class="overdue")?>\s*<th scope="row">(.*?)</tr>', dashboard, re.S
        )
    )
    for identifier, overdue in (("N-TIGHT", True), ("N-LOOSE", False), ("N-GAD", True),
                                ("N-001", True)):  # fmt: skip
        assert dash_rows[identifier][0] is overdue, identifier
        assert ("Overdue by" in row_of(listing, identifier)["due"]) is overdue, identifier
    # The same instant, in the same words, on both pages.
    episode = db.session.get(DashboardEpisode, tight.open_episode.id)
    shown = due.format_due_at(episode.due_at, "Europe/London")
    assert shown in row_of(listing, "N-TIGHT")["due"]
    assert shown in html.unescape(re.sub(r"<[^>]+>", " ", dash_rows["N-TIGHT"][1]))
    assert "monitoring interval" in dashboard and "site default: 8 hours" in dashboard


def test_a_new_episode_restarts_the_clock(world, login, record):
    patient = world["patient_n"]
    record(patient, "cows", total=20, hours=10)
    db.session.commit()
    assert "Overdue by" in row_of(login("clin.north").get("/patients/"), "N-001")["due"]
    services.end_episode(world["clin_n"], patient.open_episode, now_utc() - timedelta(hours=1))
    started = now_utc().replace(microsecond=0) - timedelta(minutes=20)
    episode = services.open_episode(
        world["clin_n"], patient, started, "opioid", "", assess_every_hours=4
    )
    db.session.commit()
    assert db.session.get(DashboardEpisode, episode.id).due_at == started + timedelta(hours=4)
    row = row_of(login("clin.north").get("/patients/"), "N-001")
    assert re.search(r"Due in 3 h (39|40) min", row["due"]), row
    dash = login("sup.north").get("/dashboard/").get_data(as_text=True)
    assert '<tr class="overdue">' not in dash
    # An entry in the new episode restarts it again; the old episode's entries never count.
    record(patient, "cows", total=6, hours=0.1)
    db.session.commit()
    assert db.session.get(DashboardEpisode, episode.id).due_at == (
        db.session.get(DashboardEpisode, episode.id).due_from + timedelta(hours=4)
    )


def test_changing_the_interval_moves_the_due_time_at_once(world, login, record):
    patient = world["patient_n"]
    entry = record(patient, "cows", total=20, hours=3)
    db.session.commit()
    episode = patient.open_episode
    assert db.session.get(DashboardEpisode, episode.id).due_at == entry.observed_at + timedelta(
        hours=8
    )
    services.set_monitoring_interval(world["clin_n"], episode, 2)
    db.session.commit()  # a fresh read, after the requests
    assert db.session.get(DashboardEpisode, episode.id).due_at == entry.observed_at + timedelta(
        hours=2
    )
    assert "Overdue by" in row_of(login("clin.north").get("/patients/"), "N-001")["due"]
    summary.rebuild()
    assert db.session.get(DashboardEpisode, episode.id).due_at == entry.observed_at + timedelta(
        hours=2
    )


def test_voiding_the_latest_withdrawal_entry_moves_the_due_time_back(world, record):
    patient = world["patient_n"]
    first = record(patient, "cows", total=20, hours=5)
    second = record(patient, "cows", total=20, hours=1)
    db.session.commit()
    episode_id = patient.open_episode.id
    assert db.session.get(DashboardEpisode, episode_id).due_at == second.observed_at + timedelta(
        hours=8
    )
    void_assessment(world["clin_n"], second, second.version, "duplicate", "")
    db.session.commit()  # a fresh read, after the requests
    assert db.session.get(DashboardEpisode, episode_id).due_at == first.observed_at + timedelta(
        hours=8
    )


# --------------------------------------------------------------------------- daylight saving


@pytest.mark.parametrize(
    ("observed", "due_local", "before", "after"),
    [
        # 8 March 2026, clocks forward at 02:00 EST: 00:30 EST + 4 h is 05:30 EDT.
        (datetime(2026, 3, 8, 5, 30, tzinfo=UTC), "05:30 EDT", "03-08", "EDT"),
        # 1 November 2026, clocks back at 02:00 EDT: 00:30 EDT + 4 h is 03:30 EST.
        (datetime(2026, 11, 1, 4, 30, tzinfo=UTC), "03:30 EST", "11-01", "EST"),
    ],
)
def test_due_and_overdue_across_a_daylight_saving_change(
    world, login, record, monkeypatch, observed, due_local, before, after
):
    patient = world["patient_s"]
    services.end_episode(world["clin_s"], patient.open_episode, now_utc() - timedelta(days=1))
    db.session.commit()
    # A patient whose episode spans the change: opened the day before, every 4 hours.
    other = services.create_patient(
        world["clin_s"], world["south"], "S-DST", None, observed - timedelta(hours=20),
        "opioid", "", assess_every_hours=4,
    )  # fmt: skip
    record(other, "cows", total=10, at=observed, user="clin_s")
    db.session.commit()
    due_at = observed + timedelta(hours=4)  # four real hours, whatever the wall clock did
    assert db.session.get(DashboardEpisode, other.open_episode.id).due_at == due_at
    assert due.format_due_at(due_at, NEW_YORK).endswith(due_local)

    user = world["clin_s"]
    just_before = worklist.patient_list(user, due_at - timedelta(minutes=1), sort="due")
    (row,) = [r for r in just_before.rows if r.identifier == "S-DST"]
    assert row.due.state == "soon" and not row.due.overdue
    just_after = worklist.patient_list(user, due_at + timedelta(minutes=1), sort="due")
    (row,) = [r for r in just_after.rows if r.identifier == "S-DST"]
    assert row.due.state == "overdue" and row.due.overdue
    assert worklist.patient_list(user, due_at + timedelta(minutes=1), due_only=True).total == 1
    assert worklist.patient_list(user, due_at - timedelta(hours=2), due_only=True).total == 0

    import clinic_log.patients.views as views

    monkeypatch.setattr(views, "now_utc", lambda: due_at + timedelta(minutes=1))
    page = login("clin.south").get("/patients/")
    shown = row_of(page, "S-DST")["due"]
    assert "Overdue by 0 h 01 min" in shown or "Overdue by 1 min" in shown, shown
    assert due_local in shown and f"{before} " in shown and after in shown


def test_due_time_is_pure_utc_arithmetic():
    anchor = datetime(2026, 3, 8, 5, 30, tzinfo=UTC)
    assert due.due_time(anchor, 4) == datetime(2026, 3, 8, 9, 30, tzinfo=UTC)
    now = datetime(2026, 3, 8, 9, 0, tzinfo=UTC)
    assert due.due_status(due.due_time(anchor, 4), now).state == "soon"
    assert due.due_status(due.due_time(anchor, 4), now - timedelta(hours=2)).state == "later"
    assert due.due_status(due.due_time(anchor, 4), now + timedelta(hours=1)).overdue
