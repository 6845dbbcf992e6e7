"""The supervisor dashboard: who is on it, what each row says, the overdue mark, the order, and
a query count that does not grow with the number of patients. Descriptive only."""

from __future__ import annotations

import html
import re
from datetime import timedelta

import pytest
from alembic.script import ScriptDirectory
from flask_migrate import upgrade
from sqlalchemy import column, delete, insert, inspect, select, table

from clinic_log import create_app
from clinic_log.assessments.services import Answers, amend_assessment, void_assessment
from clinic_log.dashboard import summary
from clinic_log.database import begin_write, now_utc
from clinic_log.extensions import db
from clinic_log.models import (
    Assessment,
    DashboardEpisode,
    DashboardScale,
    Episode,
    Patient,
    Site,
    User,
)
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
    items = re.findall(r'<li[^>]*>\s*<span class="scale-name">([^<]+)</span>(.*?)</li>', row, re.S)
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
    assert '<span class="site">SOUTH</span>' in row_of(both, "S-001")


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


def test_an_incomplete_latest_cows_shows_only_its_floor(supervisor, world, record):
    record(world["patient_n"], "cows", total=30, hours=4)
    record(world["patient_n"], "cows", total=30, hours=1, incomplete_item="gooseflesh")
    db.session.commit()
    cows = scale_items(row_of(supervisor.get("/dashboard/").get_data(as_text=True), "N-001"))[
        "COWS"
    ]
    # A lower bound: the band its recorded items reached, as a floor, never as its band.
    assert ">at least Moderately severe — incomplete, 1 item not assessed</span>" in cows
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
    void_assessment(world["sup_n"], latest, latest.version, "entered_in_error", "")
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


def test_overdue_after_eight_hours_without_a_withdrawal_entry(
    app, supervisor, world, new_patient, record
):
    record(new_patient("N-NINE"), total=6, hours=9)
    record(new_patient("N-SEVEN"), total=6, hours=7)
    new_patient("N-FRESH", hours=2)  # never assessed, started 2 h ago
    db.session.commit()  # N-001: never assessed, started 48 h ago

    page = supervisor.get("/dashboard/").get_data(as_text=True)
    overdue = {ident: flag for ident, flag, _ in rows(page)}
    assert overdue == {"N-NINE": True, "N-SEVEN": False, "N-FRESH": False, "N-001": True}
    assert "Overdue" in row_of(page, "N-NINE") and "Overdue" in row_of(page, "N-001")
    assert "Overdue by" not in row_of(page, "N-SEVEN")
    assert "Overdue by" not in row_of(page, "N-FRESH")
    assert "site default: 8 hours" in page

    # The site default is stored with each open episode's due time: a changed setting moves
    # them with a rebuild (as after a change to a scale file).
    app.config["OVERDUE_AFTER_HOURS"] = 6
    summary.rebuild()
    page = supervisor.get("/dashboard/").get_data(as_text=True)
    assert {ident: flag for ident, flag, _ in rows(page)}["N-SEVEN"] is True
    assert "site default: 6 hours" in page


def test_only_a_withdrawal_entry_resets_the_overdue_mark(supervisor, world, record):
    record(world["patient_n"], "cows", total=6, hours=20)
    record(world["patient_n"], "gad7", total=3, hours=2)
    db.session.commit()
    ((_, overdue, row),) = rows(supervisor.get("/dashboard/").get_data(as_text=True))
    assert overdue  # a GAD-7 is not the assessment due (due.py)
    assert 1.9 <= hours_ago(row) <= 2.1  # but it is the latest entry
    record(world["patient_n"], "sows", total=3, hours=1)
    db.session.commit()
    ((_, overdue, row),) = rows(supervisor.get("/dashboard/").get_data(as_text=True))
    assert not overdue


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


def _bulk_patients(world, first: int, count: int, now=None) -> None:
    """``count`` NORTH patients, each with an open episode, three COWS and two GAD-7 entries,
    inserted in bulk (the services would take far longer for hundreds), then summarised as a
    bulk load must be (``summary.rebuild``)."""
    begin_write(db.session)
    now = now or now_utc()
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
    episode_ids = [episode.id for episode in episodes]
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
    summary.rebuild(episode_ids)


def expected_order(site_ids, recent_within=timedelta(hours=24)) -> list[str]:
    """The dashboard's order worked out from the assessments themselves, without the summary:
    the latest active entry of each scale of each open episode; the highest band (or an
    incomplete total's floor) of a withdrawal measure observed within the recency window on
    the common ladder first, then the longest since the last entry (the episode's start when
    none), then the older episode."""
    cutoff = now_utc() - recent_within
    latest: dict[tuple[int, str], Assessment] = {}
    entries = db.session.scalars(
        select(Assessment)
        .join(Episode, Episode.id == Assessment.episode_id)
        .where(Episode.ended_at.is_(None), Assessment.status == "active")
        .order_by(Assessment.observed_at, Assessment.id)
    )
    for entry in entries:
        latest[(entry.episode_id, entry.scale_key)] = entry  # the last one wins
    keys = []
    episodes = db.session.scalars(
        select(Episode)
        .join(Patient, Patient.id == Episode.patient_id)
        .where(Episode.ended_at.is_(None), Patient.site_id.in_(site_ids))
    )
    for episode in episodes:
        mine = [e for (episode_id, _), e in latest.items() if episode_id == episode.id]
        severity = max(
            (
                summary.withdrawal_rank(get_scale(e.scale_key), e.total, e.complete)
                for e in mine
                if e.observed_at >= cutoff
            ),
            default=0.0,
        )
        since = max((e.observed_at for e in mine), default=episode.started_at)
        keys.append((-severity, since, episode.id, episode.patient.identifier))
    return [identifier for *_, identifier in sorted(keys)]


def all_pages(browser, url="/dashboard/?page={}") -> list[list[str]]:
    """The identifiers on every page of the dashboard, page by page, following "Next"."""
    pages, number = [], 1
    while True:
        page = browser.get(url.format(number)).get_data(as_text=True)
        pages.append([ident for ident, _, _ in rows(page)])
        if 'rel="next"' not in page:
            return pages
        number += 1


def summary_snapshot() -> list[tuple]:
    """Everything the dashboard summary holds, in a stable order."""
    db.session.expire_all()
    episodes = db.session.scalars(select(DashboardEpisode).order_by(DashboardEpisode.episode_id))
    scales = db.session.scalars(
        select(DashboardScale).order_by(DashboardScale.episode_id, DashboardScale.scale_key)
    )
    return [
        (e.episode_id, e.site_id, e.severity, e.severity_at, e.last_assessed_at, e.since_at,
         e.due_from, e.due_at)
        for e in episodes
    ] + [
        (s.episode_id, s.scale_key, s.assessment_id, s.observed_at, s.total, s.complete,
         s.not_assessed_count, s.band, s.withdrawal_rank, s.recent_totals)
        for s in scales
    ]  # fmt: skip


def assert_summary_is_exact() -> None:
    """What the services kept equals what a rebuild from the assessments makes."""
    kept = summary_snapshot()
    summary.rebuild()
    assert summary_snapshot() == kept


def test_the_dashboard_runs_a_fixed_number_of_queries(supervisor, world, count_queries):
    def measure(url, expected_rows):
        with count_queries() as statements:
            response = supervisor.get(url)
        page = response.get_data(as_text=True)
        assert response.status_code == 200
        assert len(rows(page)) == expected_rows
        never = page.count("No assessments in this episode yet")
        assert page.count('<svg class="spark"') == 2 * (expected_rows - never)
        return statements

    _bulk_patients(world, 0, 10)
    few = measure("/dashboard/", 11)  # with the world's N-001
    _bulk_patients(world, 10, 190)
    many = measure("/dashboard/", 25)
    middle = measure("/dashboard/?page=5", 25)
    last = measure("/dashboard/?page=9", 1)
    assert len(few) == len(many) == len(middle) == len(last), (few, many)
    assert len(many) <= 8, many
    # The sites with their counts, the page's rows, the page's scales: all from the summary;
    # the assessments are read only to count the page's own patients' entries waiting for
    # sign-off (a correlated count per row of the page), never joined or scanned.
    assert len([s for s in many if "dashboard_" in s]) == 3, many
    reads = [s for s in many if re.search(r"\b(FROM|JOIN) assessment\b", s)]
    assert len(reads) == 1 and "patient_id = patient.id" in reads[0], reads
    assert not re.search(r"\bJOIN assessment\b", "\n".join(many)), many


# --------------------------------------------------------------------------- pages


def test_pages_of_25_with_previous_and_next_links(supervisor, world):
    _bulk_patients(world, 0, 60)  # 61 with N-001
    first = supervisor.get("/dashboard/").get_data(as_text=True)
    assert len(rows(first)) == 25
    assert "61 patients with an open episode at your sites" in first
    assert "Patients 1–25 of 61" in first
    assert '<nav class="pager" aria-label="Dashboard pages">' in first
    assert 'href="/dashboard/?page=2" rel="next">Next 25' in first
    assert 'rel="prev"' not in first
    assert '<span aria-current="page">Page 1 of 3</span>' in first

    third = supervisor.get("/dashboard/?page=3").get_data(as_text=True)
    assert len(rows(third)) == 11
    assert "Patients 51–61 of 61" in third
    assert 'href="/dashboard/?page=2" rel="prev">Previous 25' in third
    assert 'rel="next"' not in third

    second = supervisor.get("/dashboard/?page=2").get_data(as_text=True)
    assert 'rel="next">Next 11' in second
    # Past the end: the last page; nonsense or below 1: the first.
    assert rows(supervisor.get("/dashboard/?page=400").get_data(as_text=True)) == rows(third)
    for page in ("0", "-3", "two", "99999999999999999999"):
        shown = supervisor.get(f"/dashboard/?page={page}")
        assert shown.status_code == 200, page
        assert "Patients 1–25 of 61" in shown.get_data(as_text=True) or page.startswith("9")


def test_a_single_page_has_no_pager(supervisor, world, new_patient):
    new_patient("N-002")
    page = supervisor.get("/dashboard/").get_data(as_text=True)
    assert "Patients 1–2 of 2" in page
    assert 'class="pager"' not in page


def test_the_order_holds_across_pages(supervisor, world, new_patient, record):
    _bulk_patients(world, 0, 70)
    # A few through the services too: incomplete, never assessed, recent and overdue ones.
    record(new_patient("N-INCOMPLETE"), total=30, hours=1, incomplete_item="tremor")
    new_patient("N-NEVER", hours=100)
    record(new_patient("N-SEVERE-OLD"), total=40, hours=50)
    db.session.commit()
    pages = all_pages(supervisor)
    assert [len(p) for p in pages] == [25, 25, 24]
    shown = [ident for page in pages for ident in page]
    assert len(set(shown)) == len(shown) == 74  # no patient twice, none left out
    assert shown == expected_order([world["north"].id])
    assert shown.index("N-INCOMPLETE") < shown.index("N-SEVERE-OLD")  # a floor, current


# --------------------------------------------------------------------------- the summary


def test_the_summary_follows_record_amend_and_void(supervisor, world, new_patient, record):
    patient = world["patient_n"]
    other = new_patient("N-OTHER")
    record(other, "cows", total=15, hours=3)  # Moderate
    older = record(patient, "cows", total=8, hours=5)  # Mild
    latest = record(patient, "cows", total=30, hours=2)  # Moderately severe
    assert_summary_is_exact()

    def shown():
        page = supervisor.get("/dashboard/").get_data(as_text=True)
        return [ident for ident, _, _ in rows(page)], row_of(page, "N-001")

    order, row = shown()
    assert order == ["N-001", "N-OTHER"]
    assert '<strong class="total">30</strong>' in row and ">Moderately severe</span>" in row

    # An amended latest: the new version counts, the amended-away total is gone everywhere.
    latest = amend_assessment(
        world["sup_n"],
        latest,
        latest.version,
        Answers(scores_for("cows", 10), latest.observed_at),
        "Pupil size misread",
    )
    assert_summary_is_exact()
    order, row = shown()
    assert order == ["N-OTHER", "N-001"]  # Mild now, below Moderate
    cows = scale_items(row)["COWS"]
    assert '<strong class="total">10</strong>' in cows and ">Mild</span>" in cows
    # Outside the sparkline and the time (which can read "04:30"), no 30 is left anywhere.
    after_spark = re.sub(r'<span class="muted">.*?</span>', "", cows.split("</svg>")[1], flags=re.S)
    assert cows.count("<circle") == 2 and "30" not in after_spark
    assert db.session.get(DashboardScale, (patient.open_episode.id, "cows")).recent_totals == [
        [8, True],
        [10, True],
    ]

    # Amending an older entry to a later time makes it the latest.
    older = amend_assessment(
        world["sup_n"],
        older,
        older.version,
        Answers(scores_for("cows", 40), now_utc() - timedelta(hours=1)),
        "Wrong time and scores",
    )
    assert_summary_is_exact()
    order, row = shown()
    assert order == ["N-001", "N-OTHER"]
    assert '<strong class="total">40</strong>' in row and ">Severe</span>" in row
    assert 0.9 <= hours_ago(row) <= 1.1

    # A voided latest falls back to the previous active entry.
    void_assessment(world["sup_n"], older, older.version, "entered_in_error", "")
    assert_summary_is_exact()
    order, row = shown()
    assert order == ["N-OTHER", "N-001"]
    cows = scale_items(row)["COWS"]
    assert '<strong class="total">10</strong>' in cows and cows.count("<circle") == 1
    assert 1.9 <= hours_ago(row) <= 2.1

    # Nothing active left: never assessed again, waiting since the episode's start.
    void_assessment(world["sup_n"], latest, latest.version, "duplicate", "")
    assert_summary_is_exact()
    order, row = shown()
    assert "No assessments in this episode yet" in row and "never assessed" in row
    assert order == ["N-OTHER", "N-001"]
    assert db.session.get(DashboardScale, (patient.open_episode.id, "cows")) is None


def test_the_summary_follows_episodes_opening_and_ending(supervisor, world, new_patient, record):
    patient = new_patient("N-TWICE")
    record(patient, "cows", total=40, hours=10)
    first = patient.open_episode
    kept = db.session.get(DashboardEpisode, first.id)
    assert (kept.severity, kept.severity_at) == (4.0, kept.last_assessed_at)

    end_episode(world["clin_n"], first, now_utc() - timedelta(hours=5))
    assert db.session.get(DashboardEpisode, first.id) is None
    assert db.session.get(DashboardScale, (first.id, "cows")) is None
    page = supervisor.get("/dashboard/").get_data(as_text=True)
    assert "N-TWICE" not in page
    # Changing an entry of an ended episode leaves the dashboard alone.
    entry = db.session.scalar(select(Assessment).where(Assessment.episode_id == first.id))
    void_assessment(world["sup_n"], entry, entry.version, "duplicate", "")
    assert db.session.get(DashboardEpisode, first.id) is None

    second = open_episode(world["clin_n"], patient, now_utc() - timedelta(hours=4), "kratom", "")
    kept = db.session.get(DashboardEpisode, second.id)
    assert (kept.severity, kept.severity_at, kept.last_assessed_at, kept.scales) == (
        0.0,
        None,
        None,
        [],
    )
    assert kept.since_at == second.started_at
    assert_summary_is_exact()
    row = row_of(supervisor.get("/dashboard/").get_data(as_text=True), "N-TWICE")
    assert "never assessed (4.0 h since episode start)" in row


def test_another_sites_patients_never_show(supervisor, world, record):
    record(world["patient_s"], "cows", total=40, hours=1, user="clin_s")
    page = supervisor.get("/dashboard/").get_data(as_text=True)
    assert [ident for ident, _, _ in rows(page)] == ["N-001"]
    assert "S-001" not in page
    assert "1 patient with an open episode at your sites" in page
    # Asking for the other site by name changes nothing.
    asked = supervisor.get("/dashboard/?site=SOUTH").get_data(as_text=True)
    assert [ident for ident, _, _ in rows(asked)] == ["N-001"] and "S-001" not in asked
    assert 'id="site"' not in page  # one site: no site choice


def test_a_supervisor_of_several_sites_can_show_one(browser, world, make_user, record):
    record(world["patient_s"], "cows", total=8, hours=1, user="clin_s")
    make_user("sup.both", "supervisor", ["NORTH", "SOUTH"])
    browser.login("sup.both")
    both = browser.get("/dashboard/").get_data(as_text=True)
    assert sorted(ident for ident, _, _ in rows(both)) == ["N-001", "S-001"]
    assert '<option value="">All my sites (2)</option>' in both
    assert '<option value="SOUTH">SOUTH – South Clinic (1)</option>' in both

    south = browser.get("/dashboard/?site=SOUTH").get_data(as_text=True)
    assert [ident for ident, _, _ in rows(south)] == ["S-001"]
    assert "1 patient with an open episode at SOUTH" in south
    assert '<option value="SOUTH" selected>' in south
    unknown = browser.get("/dashboard/?site=EAST").get_data(as_text=True)
    assert sorted(ident for ident, _, _ in rows(unknown)) == ["N-001", "S-001"]


def test_pager_links_keep_the_chosen_site(browser, world, make_user):
    _bulk_patients(world, 0, 30)
    make_user("sup.both", "supervisor", ["NORTH", "SOUTH"])
    browser.login("sup.both")
    page = browser.get("/dashboard/?site=NORTH").get_data(as_text=True)
    assert "Patients 1–25 of 31" in page
    assert 'href="/dashboard/?page=2&amp;site=NORTH" rel="next"' in page
    second = browser.get("/dashboard/?page=2&site=NORTH").get_data(as_text=True)
    assert 'href="/dashboard/?page=1&amp;site=NORTH" rel="prev"' in second
    assert "S-001" not in page + second


def test_rebuild_command_recomputes_the_summary(app, runner, world, record):
    record(world["patient_n"], "cows", total=30, hours=2)
    kept = summary_snapshot()
    begin_write(db.session)
    db.session.execute(delete(DashboardEpisode))
    db.session.commit()
    result = runner.invoke(args=["dashboard", "rebuild"])
    assert result.exit_code == 0, result.output
    assert "Dashboard summary rebuilt for 2 open episodes." in result.output
    assert summary_snapshot() == kept


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


# --------------------------------------------------------------------------- the migration

SUMMARY_REVISION = "5c9658306e09"


def _insert(model, **values) -> int:
    """Insert the given columns only: no defaults of the current models, whose later columns
    an older revision's tables do not have yet."""
    existing = {
        c["name"] for c in inspect(db.session.connection()).get_columns(model.__tablename__)
    }
    row = dict(values)
    for c in model.__table__.c:
        if c.name in existing and c.name not in row and c.default is not None:
            row[c.name] = c.default.arg(None) if callable(c.default.arg) else c.default.arg
    columns = model.__table__.c
    bare = table(model.__tablename__, column("id"), *(column(k, columns[k].type) for k in row))
    return db.session.execute(insert(bare).values(**row).returning(bare.c.id)).scalar_one()


def _entries_before_the_summary(now) -> None:
    """Patients, episodes and entries as they were before the summary existed: amended,
    voided and incomplete entries, an ended episode, an episode without entries, more
    entries than a sparkline shows."""
    site = _insert(Site, code="NORTH", name="North Clinic", timezone="Europe/London")
    user = _insert(
        User, username="clin.north", display_name="C", password_hash="x", role="clinician"
    )
    cows, gad7, nrs = get_scale("cows"), get_scale("gad7"), get_scale("symptom_nrs")

    def patient(identifier):
        return _insert(
            Patient,
            site_id=site,
            identifier=identifier,
            identifier_key=identifier.lower(),
            created_by_id=user,
        )

    def episode(patient_id, days, ended_hours=None):
        return _insert(
            Episode,
            patient_id=patient_id,
            started_at=now - timedelta(days=days),
            ended_at=None if ended_hours is None else now - timedelta(hours=ended_hours),
            substance_context="opioid",
            created_by_id=user,
        )

    def entry(patient_id, episode_id, scale, total, hours, status="active", complete=True):
        band = scale.band_for(total) if complete else None
        _insert(
            Assessment,
            patient_id=patient_id,
            episode_id=episode_id,
            scale_key=scale.key,
            scale_version=scale.version,
            observed_at=now - timedelta(hours=hours),
            recorded_by_id=user,
            total=total,
            complete=complete,
            band=band.label if band else None,
            status=status,
            version=1,
        )

    a = patient("A")
    open_a = episode(a, 3)
    entry(a, open_a, cows, 8, 5)
    entry(a, open_a, cows, 20, 3, status="amended")
    entry(a, open_a, cows, 30, 2)
    entry(a, open_a, cows, 40, 1, status="voided")
    entry(a, open_a, gad7, 7, 4)
    entry(a, open_a, nrs, 12, 6, complete=False)
    b = patient("B")
    ended_b = episode(b, 10, ended_hours=30)
    entry(b, ended_b, cows, 40, 40)
    episode(b, 1)
    c = patient("C")
    open_c = episode(c, 3)
    for n in range(15):
        entry(c, open_c, cows, n, 40 - n)
    db.session.commit()


def test_the_migration_backfills_what_the_services_would_keep(tmp_path, empty_database_url):
    app = create_app(
        {"DATABASE_URL": empty_database_url, "INSTANCE_PATH": str(tmp_path / "instance")}
    )
    with app.app_context():
        config = app.extensions["migrate"].migrate.get_config()
        before = ScriptDirectory.from_config(config).get_revision(SUMMARY_REVISION).down_revision
        upgrade(revision=before)
        _entries_before_the_summary(now_utc())
        upgrade(revision=SUMMARY_REVISION)
        # Later revisions reshape the summary (triage: withdrawal ranks); read it at the head.
        upgrade()
        backfilled = summary_snapshot()
        assert len([row for row in backfilled if len(row) == 8]) == 3  # the open episodes
        a_cows = next(row for row in backfilled if row[1:2] == ("cows",) and row[4] == 30)
        assert a_cows[-1] == [[8, True], [30, True]]
        summary.rebuild()
        assert summary_snapshot() == backfilled
        db.session.remove()
        db.engine.dispose()


@pytest.mark.parametrize(
    "total, page, pages, has_prev, has_next",
    [
        (0, 1, 1, False, False),
        (25, 1, 1, False, False),
        (26, 1, 2, False, True),
        (26, 2, 2, True, False),
    ],
)
def test_page_numbers(total, page, pages, has_prev, has_next):
    from clinic_log.paging import PageNumbers

    class Listing(PageNumbers):
        def __init__(self):
            self.page, self.per_page, self.total = page, 25, total

    listing = Listing()
    assert (listing.pages, listing.has_prev, listing.has_next) == (pages, has_prev, has_next)
    assert (listing.prev_num, listing.next_num) == (page - 1, page + 1)
