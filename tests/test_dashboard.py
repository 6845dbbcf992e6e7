"""The supervisor dashboard: who is on it, what each row says, the overdue mark, the order, and
a query count that does not grow with the number of patients. Descriptive only."""

from __future__ import annotations

import html
import re
from datetime import timedelta

import pytest
from sqlalchemy import insert, update

from clinic_log.database import begin_write, now_utc
from clinic_log.extensions import db
from clinic_log.models import Assessment, Episode, Patient
from clinic_log.patients.services import create_patient, end_episode, open_episode
from clinic_log.scale_registry import get_scale

NOTICE = "clinic_log records symptoms. It gives no dosing or treatment advice."
# The one place the product may name dosing: saying that it gives none.
ALLOWED = re.compile(r"gives? no dosing or treatment advice")
ADVICE = re.compile(
    r"\b\d+(\.\d+)? ?(mg|mcg|ug|ml)\b|\bdos(e|es|ing|age)\b|\bmedicat|buprenorphine|"
    r"methadone|naloxone|\binduction\b|\btaper|titrat|give \d|recommend|\bconsider|\bsuggest|"
    r"\bshould\b|\btreat",
    re.IGNORECASE,
)
_ROW = re.compile(r'<tr( class="overdue")?>\s*<th scope="row">(.*?)</tr>', re.S)


# --------------------------------------------------------------------------- helpers


def scores_for(scale_key: str, total: int) -> dict[str, int]:
    """Item scores adding up to ``total`` (greedy over each item's allowed scores)."""
    scale = get_scale(scale_key)
    scores, left = {}, total
    for item in scale.items:
        score = max(s for s in item.allowed_scores if s <= left)
        scores[item.key] = score
        left -= score
    assert left == 0, f"cannot make {scale_key} total {total}"
    return scores


def rows(page: str) -> list[tuple[str, bool, str]]:
    """(identifier, overdue, row html) for each dashboard row, in page order."""
    found = []
    for overdue, body in _ROW.findall(page):
        identifier = re.search(r"<bdi>(.*?)</bdi>", body).group(1)
        found.append((html.unescape(identifier), bool(overdue), body))
    return found


def row_of(page: str, identifier: str) -> str:
    matches = [body for ident, _, body in rows(page) if ident == identifier]
    assert len(matches) == 1, (identifier, [ident for ident, _, _ in rows(page)])
    return matches[0]


def scale_items(row: str) -> dict[str, str]:
    """The row's per-scale list items by scale short name."""
    items = re.findall(r'<li>\s*<span class="scale-name">([^<]+)</span>(.*?)</li>', row, re.S)
    return {html.unescape(name): body for name, body in items}


def hours_ago(row: str) -> float:
    match = re.search(r"([0-9]+\.[0-9]) h ago", row)
    assert match, row
    return float(match.group(1))


@pytest.fixture
def supervisor(browser, world):
    browser.login("sup.north")
    return browser


@pytest.fixture
def new_patient(world):
    """A NORTH patient whose episode started ``hours`` ago."""

    def _new(identifier, hours=72, site="north", user="clin_n"):
        started = now_utc() - timedelta(hours=hours)
        return create_patient(world[user], world[site], identifier, None, started, "opioid", "")

    return _new


@pytest.fixture
def record(world, add_assessment):
    """Record ``total`` on a scale, ``hours`` ago, for a patient (by NORTH's clinician)."""

    def _record(patient, scale_key="cows", total=0, hours=1.0, incomplete_item=None, user=None):
        scores = scores_for(scale_key, total)
        reasons = None
        if incomplete_item:
            scores[incomplete_item] = None
            reasons = {incomplete_item: "not_measured"}
        return add_assessment(
            patient,
            world[user or "clin_n"],
            scale_key,
            scores=scores,
            not_assessed_reasons=reasons,
            observed_at=now_utc() - timedelta(hours=hours),
        )

    return _record


# --------------------------------------------------------------------------- access


def test_a_supervisor_lands_on_the_dashboard(browser, world):
    response = browser.login("sup.north")
    assert response.headers["Location"] == "/dashboard/"
    page = browser.get("/dashboard/")
    assert page.status_code == 200
    assert "<h1>Dashboard</h1>" in page.get_data(as_text=True)
    assert page.headers["Cache-Control"] == "no-store"


def test_clinicians_admins_and_strangers_may_not_see_it(make_browser, world):
    anonymous = make_browser()
    response = anonymous.get("/dashboard/")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login")
    for username in ("clin.north", "clin.south", "admin.one"):
        browser = make_browser()
        browser.login(username)
        assert browser.get("/dashboard/").status_code == 403, username


# --------------------------------------------------------------------------- who is listed


def test_lists_every_open_episode_at_my_sites_and_nothing_else(
    supervisor, world, new_patient, record, make_user
):
    record(world["patient_s"], total=30, user="clin_s")  # another site
    ended = new_patient("N-ENDED")
    record(ended, total=20, hours=10)
    end_episode(world["clin_n"], ended.episodes[0], now_utc() - timedelta(hours=5))
    # Entries of an earlier episode do not count for the open one.
    again = new_patient("N-AGAIN")
    record(again, total=20, hours=10)
    end_episode(world["clin_n"], again.episodes[0], now_utc() - timedelta(hours=5))
    open_episode(world["clin_n"], again, now_utc() - timedelta(hours=4), "kratom", "")
    new_patient("N-NEW", hours=2)
    db.session.commit()

    page = supervisor.get("/dashboard/").get_data(as_text=True)
    listed = sorted(ident for ident, _, _ in rows(page))
    assert listed == ["N-001", "N-AGAIN", "N-NEW"]
    assert "S-001" not in page and "N-ENDED" not in page
    assert "3 patients with an open episode at your sites" in page
    reopened = row_of(page, "N-AGAIN")
    assert "never assessed" in reopened and "Kratom" in reopened
    assert "No assessments in this episode yet" in reopened
    assert '<svg class="spark"' not in reopened

    make_user("sup.both", "supervisor", ["NORTH", "SOUTH"])
    supervisor.logout()
    supervisor.login("sup.both")
    both = supervisor.get("/dashboard/").get_data(as_text=True)
    assert sorted(ident for ident, _, _ in rows(both)) == [
        "N-001",
        "N-AGAIN",
        "N-NEW",
        "S-001",
    ]
    assert ">SOUTH</td>" in row_of(both, "S-001")


def test_a_supervisor_of_a_quiet_site_sees_an_empty_dashboard(browser, world, make_site, make_user):
    make_site("EAST", "East Clinic", "Europe/London")
    make_user("sup.east", "supervisor", ["EAST"])
    browser.login("sup.east")
    page = browser.get("/dashboard/").get_data(as_text=True)
    assert rows(page) == []
    assert "No patient at your sites has an open episode." in page


# --------------------------------------------------------------------------- what a row says


def test_a_row_shows_the_latest_total_and_band_per_scale_with_a_sparkline(
    supervisor, world, record
):
    patient = world["patient_n"]
    record(patient, "cows", total=8, hours=12)
    record(patient, "cows", total=15, hours=3)
    record(patient, "gad7", total=16, hours=6)
    record(patient, "sows", total=20, hours=2.5)
    record(patient, "symptom_nrs", total=12, hours=5)
    record(patient, "symptom_nrs", total=9, hours=1.5, incomplete_item="aches")
    db.session.commit()

    row = row_of(supervisor.get("/dashboard/").get_data(as_text=True), "N-001")
    assert 1.4 <= hours_ago(row) <= 1.6
    assert "never assessed" not in row
    items = scale_items(row)
    assert list(items) == ["COWS", "SOWS", "GAD-7", "Symptom NRS"]  # display order

    cows = items["COWS"]
    assert '<strong class="total">15</strong>' in cows
    assert ">Moderate</span>" in cows and "Mild" not in cows
    assert '<svg class="spark"' in cows and "<polyline points=" in cows
    assert cows.count("<circle") == 2
    assert ">Severe</span>" in items["GAD-7"]
    # SOWS publishes no bands: a total, and no band invented for it.
    assert '<strong class="total">20</strong>' in items["SOWS"]
    assert 'class="band' not in items["SOWS"]
    # An incomplete latest entry is a lower bound: "Incomplete", never a band.
    nrs = items["Symptom NRS"]
    assert '<strong class="total">9</strong>' in nrs
    assert ">Incomplete</span>" in nrs
    assert nrs.count("<circle") == 2
    assert 'fill="#ffffff"' in nrs  # the incomplete mark is hollow


def test_an_incomplete_latest_cows_is_never_banded(supervisor, world, record):
    record(world["patient_n"], "cows", total=30, hours=4)
    record(world["patient_n"], "cows", total=30, hours=1, incomplete_item="gooseflesh")
    db.session.commit()
    cows = scale_items(row_of(supervisor.get("/dashboard/").get_data(as_text=True), "N-001"))[
        "COWS"
    ]
    assert ">Incomplete</span>" in cows
    for band in ("Mild", "Moderate", "Moderately severe", "Severe"):
        assert f">{band}</span>" not in cows


def test_a_patient_never_assessed_says_so(supervisor, world):
    row = row_of(supervisor.get("/dashboard/").get_data(as_text=True), "N-001")
    match = re.search(r"never assessed \(([0-9.]+) h since episode start\)", row)
    assert match and 47.9 <= float(match.group(1)) <= 48.1
    assert '<svg class="spark"' not in row


def test_amended_and_voided_entries_are_left_out(supervisor, world, record):
    record(world["patient_n"], "cows", total=15, hours=6)
    latest = record(world["patient_n"], "cows", total=40, hours=1)
    begin_write(db.session)
    db.session.execute(update(Assessment).where(Assessment.id == latest.id).values(status="voided"))
    db.session.commit()
    row = row_of(supervisor.get("/dashboard/").get_data(as_text=True), "N-001")
    cows = scale_items(row)["COWS"]
    assert '<strong class="total">15</strong>' in cows and ">Moderate</span>" in cows
    assert "Severe" not in cows and cows.count("<circle") == 1
    assert 5.9 <= hours_ago(row) <= 6.1


def test_a_sparkline_shows_the_last_twelve_totals(supervisor, world, record):
    for index in range(15):
        record(world["patient_n"], "cows", total=index, hours=30 - index)
    db.session.commit()
    cows = scale_items(row_of(supervisor.get("/dashboard/").get_data(as_text=True), "N-001"))[
        "COWS"
    ]
    assert cows.count("<circle") == 12
    assert '<strong class="total">14</strong>' in cows
    assert "last 12 totals" in cows


# --------------------------------------------------------------------------- overdue


def test_overdue_after_eight_hours_without_an_entry(app, supervisor, world, new_patient, record):
    record(new_patient("N-NINE"), total=6, hours=9)
    record(new_patient("N-SEVEN"), total=6, hours=7)
    new_patient("N-FRESH", hours=2)  # never assessed, started 2 h ago
    db.session.commit()  # N-001: never assessed, started 48 h ago

    page = supervisor.get("/dashboard/").get_data(as_text=True)
    overdue = {ident: flag for ident, flag, _ in rows(page)}
    assert overdue == {"N-NINE": True, "N-SEVEN": False, "N-FRESH": False, "N-001": True}
    assert "Overdue" in row_of(page, "N-NINE") and "Overdue" in row_of(page, "N-001")
    assert "Overdue" not in row_of(page, "N-SEVEN") and "Overdue" not in row_of(page, "N-FRESH")
    assert "more than 8 hours" in page

    app.config["OVERDUE_AFTER_HOURS"] = 6
    page = supervisor.get("/dashboard/").get_data(as_text=True)
    assert {ident: flag for ident, flag, _ in rows(page)}["N-SEVEN"] is True
    assert "more than 6 hours" in page


def test_an_entry_on_any_scale_resets_the_overdue_mark(supervisor, world, record):
    record(world["patient_n"], "cows", total=6, hours=20)
    record(world["patient_n"], "gad7", total=3, hours=2)
    db.session.commit()
    ((_, overdue, row),) = rows(supervisor.get("/dashboard/").get_data(as_text=True))
    assert not overdue
    assert 1.9 <= hours_ago(row) <= 2.1


# --------------------------------------------------------------------------- order


def test_most_severe_first_then_longest_since_the_last_entry(
    supervisor, world, new_patient, record
):
    record(new_patient("P-MILD"), total=8, hours=1)  # Mild
    record(new_patient("P-SEVERE"), total=40, hours=1)  # Severe
    record(new_patient("P-MOD-RECENT"), total=15, hours=2)  # Moderate
    record(new_patient("P-MOD-OLDER"), total=20, hours=5)  # Moderate, longer ago
    record(new_patient("P-MODSEV"), total=30, hours=0.5)  # Moderately severe
    record(new_patient("P-NOBAND"), total=3, hours=3)  # 0-4: no published band
    # Earlier Severe, latest Mild: the latest counts.
    improving = new_patient("P-IMPROVING")
    record(improving, total=40, hours=10)
    record(improving, total=6, hours=4)
    db.session.commit()  # N-001: never assessed, 48 h since its episode started

    order = [ident for ident, _, _ in rows(supervisor.get("/dashboard/").get_data(as_text=True))]
    assert order == [
        "P-SEVERE",
        "P-MODSEV",
        "P-MOD-OLDER",
        "P-MOD-RECENT",
        "P-IMPROVING",
        "P-MILD",
        "N-001",
        "P-NOBAND",
    ]


# --------------------------------------------------------------------------- queries


def _bulk_patients(world, first: int, count: int) -> None:
    """``count`` NORTH patients, each with an open episode, three COWS and two GAD-7 entries,
    inserted in bulk (the services would take far longer for hundreds)."""
    begin_write(db.session)
    now = now_utc()
    site, user = world["north"], world["clin_n"]
    cows, gad7 = get_scale("cows"), get_scale("gad7")
    patients = [
        Patient(
            site_id=site.id,
            identifier=f"B-{i:04d}",
            identifier_key=f"b-{i:04d}",
            created_by_id=user.id,
        )
        for i in range(first, first + count)
    ]
    db.session.add_all(patients)
    db.session.flush()
    episodes = [
        Episode(
            patient_id=p.id,
            started_at=now - timedelta(days=3),
            substance_context="opioid",
            created_by_id=user.id,
        )
        for p in patients
    ]
    db.session.add_all(episodes)
    db.session.flush()
    entries = []
    for n, episode in enumerate(episodes):
        for scale, hours, total in (
            (cows, 30, (n * 7) % 49),
            (cows, 20, (n * 5) % 49),
            (cows, 2 + n % 12, (n * 3) % 49),
            (gad7, 26, n % 22),
            (gad7, 4, (n + 5) % 22),
        ):
            band = scale.band_for(total)
            entries.append(
                {
                    "patient_id": episode.patient_id,
                    "episode_id": episode.id,
                    "scale_key": scale.key,
                    "scale_version": scale.version,
                    "observed_at": now - timedelta(hours=hours),
                    "recorded_by_id": user.id,
                    "total": total,
                    "complete": True,
                    "band": band.label if band else None,
                    "status": "active",
                    "version": 1,
                }
            )
    db.session.execute(insert(Assessment), entries)
    db.session.commit()


def test_the_dashboard_runs_a_fixed_number_of_queries(supervisor, world, count_queries):
    def measure(expected_rows):
        with count_queries() as statements:
            response = supervisor.get("/dashboard/")
        page = response.get_data(as_text=True)
        assert response.status_code == 200
        assert len(rows(page)) == expected_rows
        assert page.count('<svg class="spark"') == 2 * (expected_rows - 1)
        return statements

    _bulk_patients(world, 0, 10)
    few = measure(11)  # with the world's N-001
    _bulk_patients(world, 10, 190)
    many = measure(201)
    assert len(few) == len(many), (few, many)
    assert len(many) <= 8, many


# --------------------------------------------------------------------------- descriptive only


def test_the_dashboard_describes_and_advises_nothing(supervisor, world, new_patient, record):
    record(world["patient_n"], "cows", total=40, hours=9)
    record(new_patient("N-002"), "cows", total=30, hours=1, incomplete_item="tremor")
    record(world["patient_n"], "gad7", total=18, hours=10)
    db.session.commit()
    page = supervisor.get("/dashboard/").get_data(as_text=True)
    assert NOTICE in page
    assert "Descriptive only." in page
    found = ADVICE.search(ALLOWED.sub("", page))
    assert found is None, page[max(found.start() - 80, 0) : found.end() + 80]
