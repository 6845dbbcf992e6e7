"""The de-identified export, read by someone who also holds the identified export of the same
data and tries to join the two: no id, time, order, name, note or date of the identified file
may serve as a key, while each patient's intervals survive for research.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import PASSWORD
from test_exports import EXPORT_KEY, PSEUDONYM, export_csv, parse

from clinic_log.assessments.services import Answers, amend_assessment, void_assessment
from clinic_log.database import begin_write, now_utc
from clinic_log.exports.services import Pseudonymiser
from clinic_log.extensions import db
from clinic_log.patients.services import create_patient
from clinic_log.review.services import sign_assessment
from clinic_log.scale_registry import get_scale

ENTRY = re.compile(r"^E-[0-9a-f]{16}$")
MINUTE_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:00Z$")
TIME_COLUMNS = ("episode_started_at_utc", "observed_at_utc", "recorded_at_utc", "reviewed_at_utc")
IDENTIFYING = (
    "patient_identifier", "episode_id", "assessment_id", "replaces_id", "recorded_by",
    "reviewed_by", "notes", "status_reason", *TIME_COLUMNS, "observed_at_local",
)  # fmt: skip


@pytest.fixture
def export_key(app):
    """The installation's key, fixed, so pseudonyms and shifts can be worked out here."""
    path = Path(app.instance_path) / "export_key"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(EXPORT_KEY)
    return Pseudonymiser(EXPORT_KEY)


@pytest.fixture
def clinic(world, add_assessment, export_key):
    """Three NORTH patients with entries interleaved in time, recorded at odd seconds; one
    entry amended, one voided, one signed off."""
    clin, sup = world["clin_n"], world["sup_n"]
    base = now_utc().replace(microsecond=0) - timedelta(days=2)
    patients = [world["patient_n"]] + [
        create_patient(clin, world["north"], f"N-10{n}", f"Bed {n}", base, "opioid", "")
        for n in range(2)
    ]
    made = []
    for k in range(9):
        patient = patients[k % 3]
        observed = base + timedelta(hours=3 * k, minutes=7 * k, seconds=13 * k + 1)
        made.append(add_assessment(patient, clin, observed_at=observed, notes=f"private note {k}"))
    # Recorded at the server's clock to the microsecond: an exact key, if it reached the file.
    begin_write(db.session)
    for k, entry in enumerate(made):
        entry.recorded_at = entry.observed_at + timedelta(minutes=k + 1, seconds=17 + k)
    db.session.commit()
    scores = {item.key: 0 for item in get_scale("cows").items} | {"sweating": 2}
    replacement = amend_assessment(
        clin, made[0], made[0].version,
        Answers(scores, made[0].observed_at, "amended private note"), "sweating was missed",
    )  # fmt: skip
    void_assessment(clin, made[1], made[1].version, "duplicate", "entered twice")
    sign_assessment(sup, made[4], PASSWORD, made[4].version)
    return {"patients": patients, "made": made, "replacement": replacement}


def _both(north, **params):
    """The identified and the de-identified file of the same request."""
    identified = export_csv(north, **params)
    deidentified = export_csv(north, profile="deidentified", **params)
    return identified, deidentified


@pytest.fixture
def north(world, browser):
    browser.login("clin.north")
    return browser


LAYOUTS = ({"history": "1"}, {"history": "1", "layout": "wide", "scale": "cows"}, {})


@pytest.mark.parametrize("params", LAYOUTS, ids=["long", "wide", "active"])
def test_every_id_is_a_keyed_pseudonym(north, clinic, export_key, params):
    identified, deidentified = _both(north, **params)
    real_ids = {row["assessment_id"] for row in identified.rows}
    real_ids |= {str(e.id) for e in clinic["made"]} | {str(clinic["replacement"].id)}
    for row in deidentified.rows:
        assert ENTRY.match(row["assessment_id"]), row["assessment_id"]
        assert row["replaces_id"] == "" or ENTRY.match(row["replaces_id"])
        assert PSEUDONYM.match(row["patient_pseudonym"])
    assert not real_ids & set(deidentified.column("assessment_id"))
    assert "episode_id" not in deidentified.header
    # The pseudonym is the keyed hash of the entry: the same in every export with this key.
    expected = {export_key.assessment(int(i)) for i in identified.column("assessment_id")}
    assert set(deidentified.column("assessment_id")) == expected
    if params.get("history"):
        # An amendment still names what it replaces, by pseudonym.
        replacement, first = clinic["replacement"], clinic["made"][0]
        rows = {r["assessment_id"]: r for r in deidentified.rows}
        assert rows[export_key.assessment(replacement.id)]["replaces_id"] == (
            export_key.assessment(first.id)
        )
        assert rows[export_key.assessment(first.id)]["status"] == "amended"
    # Another key, other pseudonyms: without the key nothing links back.
    other = Pseudonymiser("another key")
    assert other.assessment(clinic["made"][2].id) != export_key.assessment(clinic["made"][2].id)


def test_rows_do_not_follow_the_real_sequence(north, clinic, export_key):
    identified, deidentified = _both(north, history="1", layout="wide", scale="cows")
    real_order = [export_key.assessment(int(i)) for i in identified.column("assessment_id")]
    shown = deidentified.column("assessment_id")
    assert sorted(shown) == sorted(real_order) and shown != real_order
    # Patient by patient in pseudonym order, each patient's entries in (shifted) time order.
    keys = [
        (r["patient_pseudonym"], r["observed_at_utc"], r["assessment_id"])
        for r in deidentified.rows
    ]
    assert keys == sorted(keys)
    # The long layout: the same order, an entry's item rows together.
    long = export_csv(north, profile="deidentified", history="1")
    entries = list(dict.fromkeys(long.column("assessment_id")))
    assert [e for e in entries if e in set(shown)] == shown


@pytest.mark.parametrize("params", LAYOUTS, ids=["long", "wide", "active"])
def test_every_time_moves_by_the_patients_days_and_keeps_only_minutes(
    north, clinic, export_key, params
):
    identified, deidentified = _both(north, **params)
    real = {export_key.assessment(int(r["assessment_id"])): r for r in identified.rows}
    for row in deidentified.rows:
        twin = real[row["assessment_id"]]
        shift = export_key.shift(_patient_of(clinic, twin["patient_identifier"]).id)
        assert 1 <= shift.days <= 364 and shift.seconds == 0
        for column in TIME_COLUMNS:
            if not twin[column]:
                assert row[column] == "", column
                continue
            assert MINUTE_Z.match(row[column]), (column, row[column])
            moved = _z(twin[column]).replace(second=0) - shift
            assert _z(row[column]) == moved, column
        local = datetime.fromisoformat(row["observed_at_local"])
        assert local == _z(row["observed_at_utc"]) and local.second == 0
    # Time since the episode start, to the minute, as in the identified file.
    for row in deidentified.rows:
        twin = real[row["assessment_id"]]
        since = _z(row["observed_at_utc"]) - _z(row["episode_started_at_utc"])
        real_since = _z(twin["observed_at_utc"]).replace(second=0) - _z(
            twin["episode_started_at_utc"]
        ).replace(second=0)
        assert since == real_since


def test_no_value_of_the_identified_file_is_a_join_key(north, clinic, export_key):
    identified, deidentified = _both(north, history="1", layout="wide", scale="cows")
    data = deidentified.text.split("\r\n", len(deidentified.preamble))[-1]
    for row in identified.rows:
        for column in IDENTIFYING:
            value = row[column]
            if column in ("assessment_id", "replaces_id", "episode_id"):
                assert value == "" or value not in deidentified.column("assessment_id")
                continue
            if not value:
                continue
            assert value not in data, (column, value)
            if column in TIME_COLUMNS and value[17:19] != "00":
                # Nor the time of day to the second (the shift is in whole days). A real time
                # on a whole minute (one in sixty) reads like every cut time, and proves nothing.
                assert value[11:19] not in data, (column, value)
    for secret in ("private note", "Bed 0", "N-100", "N-001", "sweating was missed", "twice"):
        assert secret not in deidentified.text, secret
    for name in ("clin.north", "Clin.North", "sup.north", "Sup.North"):
        assert name not in deidentified.text, name


def test_the_file_carries_no_real_generation_date_or_exporter(north, clinic):
    deidentified = export_csv(north, profile="deidentified", start="2000-01-01")
    today = now_utc().date()
    for day in (today - timedelta(days=1), today, today + timedelta(days=1)):
        assert day.isoformat() not in deidentified.text, day
    assert not [line for line in deidentified.preamble if line.startswith("generated_by")]
    (generated,) = [line for line in deidentified.preamble if line.startswith("generated_at")]
    assert "withheld" in generated
    assert "2000-01-01" not in deidentified.text
    # The identified file keeps both: its reader is entitled to them.
    identified = export_csv(north)
    assert identified.line("generated_by: ") == "clin.north (Clin.North)"
    assert identified.line("generated_at: ").startswith(today.isoformat()[:4])


def test_the_same_patient_gets_the_same_pseudonym_and_shift_in_every_export(
    north, clinic, export_key, runner, tmp_path
):
    first = export_csv(north, profile="deidentified", history="1")
    second = export_csv(north, profile="deidentified", history="1", layout="wide", scale="cows")
    target = tmp_path / "deid.csv"
    result = runner.invoke(
        args=["export", "--user", "clin.north", "--profile", "deidentified", "--history",
              "-o", str(target)]
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    third = parse(target.read_bytes())
    by_entry = [{r["assessment_id"]: r for r in f.rows} for f in (first, second, third)]
    for entry, row in by_entry[1].items():
        for other in (by_entry[0], by_entry[2]):
            assert other[entry]["patient_pseudonym"] == row["patient_pseudonym"]
            assert other[entry]["observed_at_utc"] == row["observed_at_utc"]
    # The command line writes the same rows in the same order as the download.
    assert third.rows == first.rows


def test_the_dictionary_says_what_the_profile_removes_shifts_and_coarsens(north):
    response = north.get("/exports/dictionary.csv")
    assert response.status_code == 200
    rows = [r for r in parse(response.data).rows if r["record_type"] == "deidentified"]
    handling = {r["name"]: r["label"] for r in rows}
    for name in ("patient_identifier", "episode_id", "recorded_by", "reviewed_by", "notes",
                 "status_reason", "generated_by"):  # fmt: skip
        assert handling.get(name) == "removed", name
    for name in ("patient_pseudonym", "assessment_id", "replaces_id"):
        assert handling.get(name) == "pseudonymised", name
    for name in TIME_COLUMNS + ("observed_at_local",):
        assert handling.get(name) == "shifted and coarsened", name
    assert handling.get("generated_at") == "withheld"
    assert handling.get("row order") == "reordered"
    assert all(r["description"] for r in rows)
    kept = {r["name"] for r in rows if r["label"] == "kept"}
    assert {"site", "scale", "total", "band", "status"} <= kept


def _patient_of(clinic, identifier):
    (patient,) = [p for p in clinic["patients"] if p.identifier == identifier]
    return patient


def _z(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)
