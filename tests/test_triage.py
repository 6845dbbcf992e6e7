"""Triage on the supervisor dashboard: patients ranked by current withdrawal severity.

Only scales marked as withdrawal measures, and only their results within the recency window,
drive the order; an incomplete total ranks by the band its recorded items have already reached
(its floor); older results stay on the row, greyed, with their age. Each scale shows its change
since the previous entry, and each patient the entries waiting for sign-off. Descriptive only.
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest
import test_dashboard
from alembic.script import ScriptDirectory
from flask_migrate import upgrade
from sqlalchemy import insert, update
from test_dashboard import (
    assert_summary_is_exact,
    expected_order,
    row_of,
    rows,
    scale_items,
    scores_for,
    summary_snapshot,
)

from clinic_log import ConfigError, create_app
from clinic_log.assessments.services import record_assessment, void_assessment
from clinic_log.dashboard import summary
from clinic_log.database import begin_write, now_utc
from clinic_log.extensions import db
from clinic_log.models import (
    Assessment,
    DashboardScale,
    Episode,
    ItemScore,
    Patient,
    Site,
    User,
)
from clinic_log.patients.services import end_episode, open_episode
from clinic_log.scale_registry import get_scale
from clinic_log.scales import BUILTIN_DIR, ScaleDefinitionError, load_scale_file, load_scales

# The fixtures of test_dashboard, shared rather than copied.
supervisor = test_dashboard.supervisor
new_patient = test_dashboard.new_patient
record = test_dashboard.record

FLOOR_SEVERE = "at least Severe — incomplete, 1 item not assessed"


def order(browser) -> list[str]:
    return [ident for ident, _, _ in rows(browser.get("/dashboard/").get_data(as_text=True))]


# --------------------------------------------------------------------------- floors


def test_an_incomplete_total_in_a_band_ranks_and_reads_as_its_floor(
    supervisor, world, new_patient, record
):
    # 43 with gooseflesh not assessed: the true total is 43 or more, so Severe is certain.
    record(new_patient("P-FLOOR"), total=43, hours=1, incomplete_item="gooseflesh")
    record(new_patient("P-MILD"), total=8, hours=1)
    record(new_patient("P-MODERATE"), total=15, hours=1)
    # 30 with tremor not assessed: at least Moderately severe, never Severe.
    record(new_patient("P-FLOOR-MODSEV"), total=30, hours=1, incomplete_item="tremor")
    # 3 with an item not assessed reaches no band: still "Incomplete", and ranks by nothing.
    record(new_patient("P-LOW"), total=3, hours=1, incomplete_item="tremor")
    db.session.commit()  # N-001: never assessed

    assert order(supervisor) == [
        "P-FLOOR",
        "P-FLOOR-MODSEV",
        "P-MODERATE",
        "P-MILD",
        "N-001",
        "P-LOW",
    ]
    page = supervisor.get("/dashboard/").get_data(as_text=True)
    floor = scale_items(row_of(page, "P-FLOOR"))["COWS"]
    assert '<strong class="total">43</strong>' in floor
    assert FLOOR_SEVERE in floor
    assert 'class="band band-floor band-severe"' in floor
    modsev = scale_items(row_of(page, "P-FLOOR-MODSEV"))["COWS"]
    assert "at least Moderately severe — incomplete, 1 item not assessed" in modsev
    assert ">Severe<" not in modsev and "at least Severe" not in modsev
    low = scale_items(row_of(page, "P-LOW"))["COWS"]
    assert ">Incomplete</span>" in low and "at least" not in low
    assert_summary_is_exact()


def test_the_floor_counts_every_item_not_assessed(supervisor, world, record):
    scores = scores_for("cows", 43)
    scores["gooseflesh"] = None
    scores["yawning"] = None  # 39 recorded, two items not assessed
    record_assessment(
        world["clin_n"],
        world["patient_n"],
        get_scale("cows"),
        scores,
        observed_at=now_utc() - timedelta(hours=1),
        not_assessed_reasons={"gooseflesh": "not_measured", "yawning": "asleep"},
    )
    db.session.commit()
    cows = scale_items(row_of(supervisor.get("/dashboard/").get_data(as_text=True), "N-001"))
    assert "at least Severe — incomplete, 2 items not assessed" in cows["COWS"]
    assert_summary_is_exact()


# --------------------------------------------------------------------------- recency


def test_a_result_older_than_the_window_does_not_drive_the_rank(
    app, supervisor, world, new_patient, record
):
    record(new_patient("P-STALE-SEVERE", hours=100), total=40, hours=25)
    record(new_patient("P-MODERATE-NOW"), total=15, hours=1)
    db.session.commit()

    # Ranked by nothing now: below the Moderate result, among the patients with no current
    # band, by the time since their last entry (N-001, never assessed, has waited longest).
    assert order(supervisor) == ["P-MODERATE-NOW", "N-001", "P-STALE-SEVERE"]
    page = supervisor.get("/dashboard/").get_data(as_text=True)
    stale = scale_items(row_of(page, "P-STALE-SEVERE"))["COWS"]
    # Still shown, with its band, but greyed and with its age.
    assert ">Severe</span>" in stale
    assert re.search(r'class="scale-status-item stale"', row_of(page, "P-STALE-SEVERE"))
    assert re.search(r"25(\.0)? h ago", stale), stale
    current = row_of(page, "P-MODERATE-NOW")
    assert "stale" not in current

    # The window is a setting: at 48 hours the Severe result is current again.
    app.config["TRIAGE_RECENCY_HOURS"] = 48
    assert order(supervisor) == ["P-STALE-SEVERE", "P-MODERATE-NOW", "N-001"]
    assert "stale" not in row_of(
        supervisor.get("/dashboard/").get_data(as_text=True), "P-STALE-SEVERE"
    )


def test_the_latest_result_of_a_scale_is_what_counts(supervisor, world, new_patient, record):
    # Severe 20 hours ago, then Mild now: Mild is where it stands.
    improving = new_patient("P-IMPROVING")
    record(improving, total=40, hours=20)
    record(improving, total=8, hours=1)
    record(new_patient("P-MODERATE"), total=15, hours=2)
    db.session.commit()
    assert order(supervisor)[:2] == ["P-MODERATE", "P-IMPROVING"]


def test_a_stale_top_result_gives_way_to_another_current_withdrawal_result(
    supervisor, world, new_patient, record
):
    """An episode whose most severe withdrawal result has aged out ranks by the next one still
    in the window (here a second banded withdrawal measure, as a clinic's own file may add)."""
    both = new_patient("P-BOTH")
    record(both, total=40, hours=30)  # Severe, but stale
    record(new_patient("P-MILD"), total=8, hours=1)
    db.session.commit()
    episode_id = both.open_episode.id
    begin_write(db.session)
    db.session.execute(
        insert(DashboardScale).values(
            episode_id=episode_id,
            scale_key="local_withdrawal",
            assessment_id=db.session.scalar(
                Assessment.__table__.select()
                .with_only_columns(Assessment.id)
                .where(Assessment.episode_id == episode_id)
            ),
            observed_at=now_utc() - timedelta(hours=2),
            total=20,
            complete=True,
            not_assessed_count=0,
            band="Moderate",
            withdrawal_rank=2.0,
            recent_totals=[[20, True]],
        )
    )
    db.session.commit()
    assert order(supervisor)[:2] == ["P-BOTH", "P-MILD"]


# --------------------------------------------------------------------------- withdrawal measures


def test_scales_that_are_not_withdrawal_measures_do_not_rank(
    supervisor, world, new_patient, record
):
    record(new_patient("P-GAD-SEVERE"), "gad7", total=18, hours=1)
    record(new_patient("P-COWS-MILD"), total=8, hours=1)
    # The case: a week-old GAD-7 "Severe" above a Moderate COWS now.
    old_gad = new_patient("P-OLD-GAD", hours=24 * 8)
    record(old_gad, "gad7", total=18, hours=24 * 7)
    record(new_patient("P-COWS-MODERATE"), total=15, hours=1)
    db.session.commit()

    shown = order(supervisor)
    assert shown.index("P-COWS-MODERATE") < shown.index("P-OLD-GAD")
    assert shown.index("P-COWS-MILD") < shown.index("P-GAD-SEVERE")
    assert shown[:2] == ["P-COWS-MODERATE", "P-COWS-MILD"]
    page = supervisor.get("/dashboard/").get_data(as_text=True)
    # Still shown as it is: the band, not a rank.
    assert ">Severe</span>" in scale_items(row_of(page, "P-GAD-SEVERE"))["GAD-7"]


def test_the_built_in_withdrawal_measures():
    loaded = load_scales()
    assert {key for key, scale in loaded.items() if scale.withdrawal_measure} == {
        "cows",
        "sows",
        "oows",
        "sows_gossop",
    }
    assert not loaded["gad7"].withdrawal_measure
    assert not loaded["symptom_nrs"].withdrawal_measure


@pytest.mark.parametrize(
    "old, new, message",
    [
        ("withdrawal_measure = true\n", "", "required field is missing"),
        ("withdrawal_measure = true", 'withdrawal_measure = "yes"', "expected true or false"),
    ],
)
def test_a_scale_file_must_say_whether_it_is_a_withdrawal_measure(tmp_path, old, new, message):
    text = (BUILTIN_DIR / "cows.toml").read_text(encoding="utf-8")
    assert old in text
    path = tmp_path / "cows.toml"
    path.write_text(text.replace(old, new), encoding="utf-8")
    with pytest.raises(ScaleDefinitionError) as caught:
        load_scale_file(path)
    assert caught.value.field == "withdrawal_measure"
    assert message in caught.value.message


# --------------------------------------------------------------------------- change and time


def test_each_scale_shows_its_change_since_the_previous_entry(supervisor, world, record):
    patient = world["patient_n"]
    record(patient, "cows", total=15, hours=6)
    record(patient, "cows", total=22, hours=2)
    record(patient, "gad7", total=16, hours=5)
    record(patient, "gad7", total=10, hours=3)
    record(patient, "sows", total=20, hours=4)  # one entry: nothing to compare
    record(patient, "symptom_nrs", total=12, hours=5)
    record(patient, "symptom_nrs", total=12, hours=1)
    db.session.commit()

    items = scale_items(row_of(supervisor.get("/dashboard/").get_data(as_text=True), "N-001"))
    assert "up 7 since the previous entry" in items["COWS"] and "↑7" in items["COWS"]
    assert "down 6 since the previous entry" in items["GAD-7"] and "↓6" in items["GAD-7"]
    assert "no change since the previous entry" in items["Symptom NRS"]
    assert "since the previous entry" not in items["SOWS"]
    # The time of the latest entry, in the site's time.
    for name in items:
        stamp = r'<time datetime="[0-9T:+-]+">\d\d-\d\d \d\d:\d\d[^<]*</time>'
        assert re.search(stamp, items[name]), items[name]


def test_a_change_from_or_to_an_incomplete_total_says_so(supervisor, world, record):
    record(world["patient_n"], "cows", total=15, hours=6, incomplete_item="tremor")
    record(world["patient_n"], "cows", total=22, hours=2)
    db.session.commit()
    cows = scale_items(row_of(supervisor.get("/dashboard/").get_data(as_text=True), "N-001"))[
        "COWS"
    ]
    assert "up 7 since the previous entry (an incomplete total)" in cows


# --------------------------------------------------------------------------- sign-off


def test_each_patient_shows_the_entries_waiting_for_sign_off_linked_to_the_queue(
    supervisor, world, new_patient, record
):
    n001 = world["patient_n"]
    record(n001, "cows", total=8, hours=5)
    record(n001, "gad7", total=8, hours=4, user="sup_n")  # the supervisor's own counts too
    signed = record(n001, "cows", total=9, hours=3)
    voided = record(n001, "cows", total=30, hours=2)
    void_assessment(world["sup_n"], voided, voided.version, "entered_in_error", "")
    # An entry of the patient's earlier episode is waiting too.
    again = new_patient("P-AGAIN", hours=200)
    record(again, total=12, hours=150)
    end_episode(world["clin_n"], again.episodes[0], now_utc() - timedelta(hours=100))
    open_episode(world["clin_n"], again, now_utc() - timedelta(hours=10), "opioid", "")
    quiet = new_patient("P-QUIET")
    done = record(quiet, total=6, hours=1)
    record(world["patient_s"], total=30, user="clin_s")  # another site: never counted here
    begin_write(db.session)
    db.session.execute(
        update(Assessment)
        .where(Assessment.id.in_([signed.id, done.id]))
        .values(reviewed_at=now_utc(), reviewed_by_id=world["sup_n"].id)
    )
    db.session.commit()

    page = supervisor.get("/dashboard/").get_data(as_text=True)
    n_row = row_of(page, "N-001")
    assert f'<a class="waiting" href="/review/?patient={n001.id}">2 waiting for sign-off</a>' in (
        n_row
    )
    assert (
        f'<a class="waiting" href="/review/?patient={again.id}">1 waiting for sign-off</a>'
        in row_of(page, "P-AGAIN")
    )
    quiet_row = row_of(page, "P-QUIET")
    assert "/review/?patient=" not in quiet_row
    assert "None waiting for sign-off" in quiet_row
    # The link's target lists the patient's waiting entries.
    queue = supervisor.get(f"/review/?patient={n001.id}")
    assert queue.status_code == 200


# --------------------------------------------------------------------------- the rule


def test_the_page_states_the_rule_in_one_sentence(app, supervisor, world):
    page = supervisor.get("/dashboard/").get_data(as_text=True)
    rule = re.search(r'<p class="lead" id="triage-rule">(.*?)</p>', page, re.S)
    assert rule, page
    text = re.sub(r"<[^>]+>", "", rule.group(1))
    assert text.count(". ") == 0 and text.rstrip().endswith(".")
    for words in ("withdrawal", "COWS", "SOWS", "OOWS", "SOWS-Gossop", "24 hours", "at least"):
        assert words in text, (words, text)
    assert "GAD-7" not in text
    app.config["TRIAGE_RECENCY_HOURS"] = 12
    assert "12 hours" in supervisor.get("/dashboard/").get_data(as_text=True)


@pytest.mark.parametrize("value", [0, -1, 24 * 15, "soon", True])
def test_the_recency_window_is_checked_at_start_up(tmp_path, value):
    with pytest.raises(ConfigError, match="CLINIC_LOG_TRIAGE_RECENCY_HOURS"):
        create_app({"INSTANCE_PATH": str(tmp_path / "i"), "TRIAGE_RECENCY_HOURS": value})


def test_the_recency_window_comes_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("CLINIC_LOG_TRIAGE_RECENCY_HOURS", "36")
    app = create_app({"INSTANCE_PATH": str(tmp_path / "i")})
    assert app.config["TRIAGE_RECENCY_HOURS"] == 36
    monkeypatch.delenv("CLINIC_LOG_TRIAGE_RECENCY_HOURS")
    assert create_app({"INSTANCE_PATH": str(tmp_path / "j")}).config["TRIAGE_RECENCY_HOURS"] == 24


# --------------------------------------------------------------------------- the order, in full


def test_the_order_across_pages_matches_the_rule(supervisor, world, new_patient, record):
    from test_dashboard import _bulk_patients, all_pages

    _bulk_patients(world, 0, 40)
    record(new_patient("N-FLOOR"), total=43, hours=1, incomplete_item="gooseflesh")
    record(new_patient("N-GAD"), "gad7", total=20, hours=1)
    record(new_patient("N-OLD"), total=40, hours=30)
    db.session.commit()
    shown = [ident for page in all_pages(supervisor) for ident in page]
    assert len(shown) == len(set(shown)) == 44
    assert shown == expected_order([world["north"].id])
    # The floor is among the Severe ones, above the stale Severe and the Severe GAD-7.
    assert shown.index("N-FLOOR") < 25
    assert shown.index("N-FLOOR") < shown.index("N-OLD") and "N-GAD" in shown[-20:]
    assert_summary_is_exact()


# --------------------------------------------------------------------------- the migration

TRIAGE_REVISION = "e1a7c3d9b5f2"


def test_the_migration_fills_what_a_rebuild_makes(tmp_path, empty_database_url):
    from test_dashboard import _insert

    app = create_app(
        {"DATABASE_URL": empty_database_url, "INSTANCE_PATH": str(tmp_path / "instance")}
    )
    with app.app_context():
        config = app.extensions["migrate"].migrate.get_config()
        # Entries from before the summary existed: the summary's own revision fills it in its
        # first shape, the revision of not-assessed counts counts them, and this one reshapes it.
        script = ScriptDirectory.from_config(config)
        upgrade(revision=script.get_revision(test_dashboard.SUMMARY_REVISION).down_revision)
        now = now_utc()
        site = _insert(Site, code="NORTH", name="North Clinic", timezone="Europe/London")
        user = _insert(
            User, username="clin.north", display_name="C", password_hash="x", role="clinician"
        )
        cows, gad7 = get_scale("cows"), get_scale("gad7")
        for n, (scale, total, hours, missing) in enumerate(
            [
                (cows, 43, 1, 1),  # a floor: at least Severe
                (cows, 15, 2, 0),
                (cows, 40, 30, 0),  # stale
                (gad7, 18, 1, 0),  # not a withdrawal measure
                (cows, 3, 1, 2),  # incomplete, no band
            ]
        ):
            patient = _insert(
                Patient,
                site_id=site,
                identifier=f"M-{n}",
                identifier_key=f"m-{n}",
                created_by_id=user,
            )
            episode = _insert(
                Episode,
                patient_id=patient,
                started_at=now - timedelta(days=3),
                substance_context="opioid",
                created_by_id=user,
            )
            for earlier in (total - 1, total):
                band = scale.band_for(earlier) if not missing else None
                entry = _insert(
                    Assessment,
                    patient_id=patient,
                    episode_id=episode,
                    scale_key=scale.key,
                    scale_version=scale.version,
                    observed_at=now - timedelta(hours=hours + (total - earlier)),
                    recorded_by_id=user,
                    total=earlier,
                    complete=not missing,
                    band=band.label if band else None,
                    status="active",
                    version=1,
                )
                for k, item in enumerate(scale.items):
                    db.session.execute(
                        insert(ItemScore).values(
                            assessment_id=entry,
                            item_key=item.key,
                            position=k,
                            score=None if k < missing else 0,
                            not_assessed_reason="not_measured" if k < missing else None,
                        )
                    )
        db.session.commit()
        upgrade(revision=TRIAGE_REVISION)
        # Later revisions add to the summary (due times); read it at the head.
        upgrade()
        migrated = summary_snapshot()
        episodes = [row for row in migrated if len(row) == 8]
        # The floor, the current Moderate, the stale Severe, GAD-7 (no rank), the low total.
        assert [row[2] for row in episodes] == [4.0, 2.0, 4.0, 0.0, 0.0]
        assert [row[6] for row in migrated if len(row) == 10][0] == 1  # 1 item not assessed
        summary.rebuild()
        assert summary_snapshot() == migrated
        db.session.remove()
        db.engine.dispose()


def test_every_built_in_file_says_whether_it_is_a_withdrawal_measure():
    for path in sorted(Path(BUILTIN_DIR).glob("*.toml")):
        assert "withdrawal_measure = " in path.read_text(encoding="utf-8"), path
