"""CSV exports as a clinician downloads them, and ``flask export`` on the command line.

Every file is read back with Python's ``csv`` module, as an analyst's script would: the
provenance lines at the top (``# ...``) are set aside, then the header and the rows are
checked value by value against what was recorded.

conftest.Browser runs every request in its own context, so the test's own session ends its
transaction (``fresh()``) before it reads what a request wrote (audit events).
"""

from __future__ import annotations

import contextvars
import csv
import gc
import inspect
import io
import json
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from conftest import GAD7, PASSWORD, Browser, IsolatedClient
from flask.testing import FlaskClient
from pages import checked, field_errors, input_val
from sqlalchemy import select

import clinic_log.audit
from clinic_log import ConfigError, create_app
from clinic_log.assessments.services import Answers, amend_assessment, void_assessment
from clinic_log.database import begin_write, now_utc
from clinic_log.exports import services
from clinic_log.exports.csvwriter import csv_chunks
from clinic_log.exports.services import Pseudonymiser
from clinic_log.extensions import db
from clinic_log.models import Assessment, AuditEvent, Episode, ItemScore, Patient
from clinic_log.patients.services import create_patient, end_episode, open_episode
from clinic_log.product import NO_ADVICE_NOTICE
from clinic_log.review.services import sign_assessment
from clinic_log.scale_registry import get_scale, scales
from clinic_log.scales import NOT_ASSESSED_REASONS

URL = "/exports/assessments.csv"
BOM = "\ufeff"
LONDON, NEW_YORK = ZoneInfo("Europe/London"), ZoneInfo("America/New_York")
COWS = (
    "resting_pulse", "sweating", "restlessness", "pupil_size", "bone_joint_aches",
    "runny_nose_tearing", "gi_upset", "tremor", "yawning", "anxiety_irritability", "gooseflesh",
)  # fmt: skip
IDENTIFIED = [
    "patient_identifier", "site", "episode_id", "episode_started_at_utc", "scale",
    "scale_version", "assessment_id", "observed_at_utc", "observed_at_local", "total", "band",
    "band_floor", "completeness", "status", "status_reason", "replaces_id", "recorded_by",
    "recorded_at_utc", "reviewed_by", "reviewed_at_utc", "notes",
]  # fmt: skip
DEIDENTIFIED = [
    "patient_pseudonym", "site", "episode_number", "episode_started_at_utc", "scale",
    "scale_version", "assessment_id", "observed_at_utc", "observed_at_local", "total", "band",
    "band_floor", "completeness", "status", "replaces_id", "recorded_at_utc", "reviewed",
    "reviewed_at_utc",
]  # fmt: skip
LONG = ["item_key", "item_respondent", "item_domain", "score", "not_assessed_reason",
        "measured_value"]  # fmt: skip
COWS_WIDE = [
    "resting_pulse", "resting_pulse_bpm", *COWS[1:], "not_assessed",
]  # fmt: skip
EXPORT_KEY = "fixed-test-export-key"
UTC_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
PSEUDONYM = re.compile(r"^P-[0-9a-f]{16}$")


# On PostgreSQL every export that holds an episode with two or more entries fails (see
# test_episode_numbers_count_the_patients_episodes): these tests are expected to fail there
# until that is fixed, and fail loudly (strict) once it is.


# --------------------------------------------------------------------------- reading files


@dataclass
class Csv:
    text: str
    preamble: list[str]  # the provenance lines without their "# "
    header: list[str]
    rows: list[dict[str, str]]

    def line(self, prefix: str) -> str:
        (found,) = [line for line in self.preamble if line.startswith(prefix)]
        return found[len(prefix) :]

    def column(self, name: str) -> list[str]:
        return [row[name] for row in self.rows]

    def by_id(self) -> dict[int, dict[str, str]]:
        return {int(row["assessment_id"]): row for row in self.rows}


def parse(raw: bytes) -> Csv:
    text = raw.decode("utf-8")
    body = text[len(BOM) :] if text.startswith(BOM) else text
    lines = body.splitlines(keepends=True)
    preamble = []
    while lines and lines[0].startswith("#"):
        preamble.append(lines.pop(0).rstrip("\r\n")[2:])
    records = list(csv.reader(io.StringIO("".join(lines), newline="")))
    header, data = records[0], records[1:]
    assert all(len(record) == len(header) for record in data)
    return Csv(text, preamble, header, [dict(zip(header, r, strict=True)) for r in data])


def by_real_id(data: Csv, *ids: int) -> dict[int, dict[str, str]]:
    """A de-identified file's rows, by the real ids of entries the test knows (the file holds
    keyed pseudonyms of them, with EXPORT_KEY)."""
    rows = {row["assessment_id"]: row for row in data.rows}
    key = Pseudonymiser(EXPORT_KEY)
    return {i: rows[key.assessment(i)] for i in ids if key.assessment(i) in rows}


def fresh() -> None:
    """End the test session's transaction: later reads see what the requests committed."""
    db.session.commit()


def audit_events(action: str) -> list[AuditEvent]:
    fresh()
    return db.session.scalars(
        select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)
    ).all()


def utc(text: str) -> datetime:
    assert UTC_Z.match(text), text
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def z(instant: datetime) -> str:
    return instant.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def cows(**scores) -> dict[str, int | None]:
    return {key: scores.get(key, 0) for key in COWS}


def gad(value: int = 1) -> dict[str, int]:
    return dict.fromkeys(GAD7, value)


# --------------------------------------------------------------------------- fixtures


@pytest.fixture
def north(world, browser):
    """clin.north, logged in."""
    browser.login("clin.north")
    return browser


def export(browser, **params):
    return browser.get(URL, query_string=params)


def export_csv(browser, **params) -> Csv:
    response = export(browser, **params)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.mimetype == "text/csv"
    return parse(response.data)


def cli_ok(runner, *args):
    """Run ``flask export ARGS``; an unexpected exception is raised as itself."""
    result = runner.invoke(args=["export", *args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture
def since_january(world):
    """A patient at each site whose episode started on 1 January 2026, for dated tests."""
    start = datetime(2026, 1, 1, tzinfo=UTC)
    return {
        "north": create_patient(
            world["clin_n"], world["north"], "N-002", None, start, "opioid", ""
        ),
        "south": create_patient(
            world["clin_s"], world["south"], "S-002", None, start, "kratom", ""
        ),
    }


# --------------------------------------------------------------------------- columns


def test_header_for_each_layout_and_profile(north):
    for params, expected in (
        ({"layout": "long"}, IDENTIFIED + LONG),
        ({"layout": "long", "profile": "deidentified"}, DEIDENTIFIED + LONG),
        ({"layout": "wide", "scale": "cows"}, IDENTIFIED + COWS_WIDE),
        ({"layout": "wide", "scale": "cows", "profile": "deidentified"}, DEIDENTIFIED + COWS_WIDE),
        ({"layout": "wide", "scale": "gad7"}, IDENTIFIED + [*GAD7, "not_assessed"]),
        ({}, IDENTIFIED + LONG),  # long and identified by default
    ):
        assert export_csv(north, **params).header == expected, params
    # Every scale's wide header: its items in order, a measurement right after its item.
    for scale in scales().values():
        items = []
        for item in scale.items:
            items += [item.key] + ([item.measurement.key] if item.measurement else [])
        header = export_csv(north, layout="wide", scale=scale.key).header
        assert header == IDENTIFIED + items + ["not_assessed"], scale.key


# --------------------------------------------------------------------------- values


@pytest.fixture
def recorded(world, since_january, add_assessment):
    """At NORTH (London): a complete COWS in summer, signed off, with a measured pulse; an
    incomplete COWS in winter. At SOUTH (New York): the same two dates."""
    complete = cows(
        resting_pulse=1, sweating=2, restlessness=1, pupil_size=1, bone_joint_aches=1,
        gi_upset=2, tremor=1, yawning=1, anxiety_irritability=1, gooseflesh=3,
    )  # fmt: skip
    summer = datetime(2026, 7, 15, 10, 30, tzinfo=UTC)
    winter = datetime(2026, 1, 20, 10, 30, tzinfo=UTC)
    made = {}
    for site, user in (("north", world["clin_n"]), ("south", world["clin_s"])):
        patient = since_january[site]
        made[site, "complete"] = add_assessment(
            patient, user, "cows", complete, summer,
            measured_values={"resting_pulse": 92}, notes="Calm; pulse taken twice.",
        )  # fmt: skip
        made[site, "incomplete"] = add_assessment(
            patient, user, "cows", cows(sweating=None, tremor=2), winter,
            not_assessed_reasons={"sweating": "asleep"},
        )  # fmt: skip
    sign_assessment(world["sup_n"], made["north", "complete"], PASSWORD, 1)
    return made


def test_wide_values_of_a_complete_and_an_incomplete_entry(north, world, recorded):
    done, partial = recorded["north", "complete"], recorded["north", "incomplete"]
    rows = export_csv(north, layout="wide", scale="cows").by_id()
    assert set(rows) == {done.id, partial.id}
    row = rows[done.id]
    assert row["patient_identifier"] == "N-002"
    assert row["site"] == "NORTH"
    assert row["episode_id"] == str(done.episode_id)
    assert row["episode_started_at_utc"] == "2026-01-01T00:00:00Z"
    assert (row["scale"], row["scale_version"]) == ("cows", get_scale("cows").version)
    assert row["observed_at_utc"] == "2026-07-15T10:30:00Z"
    assert row["observed_at_local"] == "2026-07-15T11:30:00+01:00"  # British Summer Time
    assert (row["total"], row["band"], row["completeness"]) == ("14", "Moderate", "complete")
    assert (row["status"], row["status_reason"], row["replaces_id"]) == ("active", "", "")
    assert row["recorded_by"] == "Clin.North"
    assert abs(utc(row["recorded_at_utc"]) - now_utc()) < timedelta(minutes=5)
    assert row["reviewed_by"] == "Sup.North"
    assert abs(utc(row["reviewed_at_utc"]) - now_utc()) < timedelta(minutes=5)
    assert row["notes"] == "Calm; pulse taken twice."
    assert [row[key] for key in COWS_WIDE] == [
        "1", "92", "2", "1", "1", "1", "0", "2", "1", "1", "1", "3", "",
    ]  # fmt: skip

    row = rows[partial.id]
    assert row["observed_at_utc"] == "2026-01-20T10:30:00Z"
    assert row["observed_at_local"] == "2026-01-20T10:30:00+00:00"  # Greenwich Mean Time
    # 2 (tremor) assessed; sweating not: the total is a lower bound and gets no band.
    assert (row["total"], row["band"], row["completeness"]) == ("2", "", "incomplete")
    assert row["sweating"] == "NA"
    assert row["sweating"] not in ("", "0")
    assert row["resting_pulse"] == "0" and row["resting_pulse_bpm"] == ""
    assert row["not_assessed"] == "sweating: Asleep"
    assert (row["reviewed_by"], row["reviewed_at_utc"]) == ("", "")


def test_long_values_one_row_per_item(north, recorded, login):
    done, partial = recorded["north", "complete"], recorded["north", "incomplete"]
    data = export_csv(north)
    assert len(data.rows) == 2 * len(COWS)
    # In time order, items in scale order.
    assert data.column("assessment_id") == [str(partial.id)] * 11 + [str(done.id)] * 11
    assert data.column("item_key") == list(COWS) * 2
    items = {(int(r["assessment_id"]), r["item_key"]): r for r in data.rows}
    pulse = items[done.id, "resting_pulse"]
    assert (pulse["score"], pulse["measured_value"], pulse["not_assessed_reason"]) == (
        "1", "92", "",
    )  # fmt: skip
    assert (pulse["item_respondent"], pulse["item_domain"]) == ("clinician_observed", "autonomic")
    aches = items[done.id, "bone_joint_aches"]
    assert (aches["item_respondent"], aches["item_domain"]) == ("patient_reported", "aches")
    assert items[done.id, "gooseflesh"]["score"] == "3"
    assert items[done.id, "runny_nose_tearing"]["score"] == "0"
    sweating = items[partial.id, "sweating"]
    assert (sweating["score"], sweating["not_assessed_reason"]) == ("NA", "asleep")
    assert items[partial.id, "tremor"]["not_assessed_reason"] == ""
    measured = {key: row["measured_value"] for key, row in items.items() if row["measured_value"]}
    assert measured == {(done.id, "resting_pulse"): "92"}  # only the pulse carries a measurement
    assert {r["band"] for r in data.rows if r["assessment_id"] == str(done.id)} == {"Moderate"}
    assert {r["total"] for r in data.rows if r["assessment_id"] == str(partial.id)} == {"2"}

    # New York: the local time carries its own offset, summer and winter.
    rows = export_csv(login("clin.south"), layout="wide", scale="cows").by_id()
    summer, winter = (
        rows[recorded["south", "complete"].id],
        rows[recorded["south", "incomplete"].id],
    )
    assert summer["observed_at_local"] == "2026-07-15T06:30:00-04:00"  # EDT
    assert winter["observed_at_local"] == "2026-01-20T05:30:00-05:00"  # EST
    assert summer["site"] == winter["site"] == "SOUTH"
    assert summer["reviewed_by"] == ""


HOSTILE_NOTES = (
    "=1+2",
    "@x",
    "-3",
    "+44 7700 900123",
    "\tindented with a tab",
    "\nstarts on a new line",
    '=HYPERLINK("http://example.invalid","open")\nsecond line, with a comma\r\nthird',
)
# Commas, quotes, line breaks and a formula sign later in the text need no apostrophe.
ORDINARY_NOTE = 'Said "I feel awful", then slept.\nWoke at 03:00, sweating; see 2+2 = 4'


def test_hostile_notes_come_back_neutralised_and_intact(north, world, add_assessment):
    start = now_utc() - timedelta(hours=20)
    made = {
        add_assessment(
            world["patient_n"], world["clin_n"], observed_at=start + timedelta(hours=n), notes=note
        ).id: note
        for n, note in enumerate(HOSTILE_NOTES)
    }
    ordinary = add_assessment(world["patient_n"], world["clin_n"], notes=ORDINARY_NOTE).id
    for params in ({"layout": "wide", "scale": "cows"}, {}):
        data = export_csv(north, **params)
        assert len(data.rows) == (len(HOSTILE_NOTES) + 1) * (1 if params else len(COWS))
        for row in data.rows:
            if int(row["assessment_id"]) == ordinary:
                assert row["notes"] == ORDINARY_NOTE
            else:
                assert row["notes"] == "'" + made[int(row["assessment_id"])]


def test_a_spreadsheet_hostile_identifier_comes_back_neutralised(north, world, add_assessment):
    identifier = '=HYPERLINK("http://example.invalid/?x="&A1;"click")'
    patient = create_patient(
        world["clin_n"], world["north"], identifier, None, now_utc() - timedelta(days=1),
        "opioid", "",
    )  # fmt: skip
    add_assessment(patient, world["clin_n"])
    for params in ({"layout": "wide", "scale": "cows"}, {}):
        data = export_csv(north, **params)
        assert data.column("patient_identifier") == ["'" + identifier] * len(data.rows)
    assert data.text.count("\n") == data.text.count("\r\n")


# --------------------------------------------------------------------------- filters


def test_a_clinician_gets_only_their_sites_rows(north, world, add_assessment, login):
    own = add_assessment(world["patient_n"], world["clin_n"])
    add_assessment(world["patient_s"], world["clin_s"])
    for params in ({}, {"layout": "wide", "scale": "cows"}, {"history": "1"}):
        data = export_csv(north, **params)
        assert {row["site"] for row in data.rows} == {"NORTH"}
        assert {row["assessment_id"] for row in data.rows} == {str(own.id)}
        assert "S-001" not in data.text and "SOUTH" not in data.text
    south = export_csv(login("clin.south"))
    assert {row["patient_identifier"] for row in south.rows} == {"S-001"}
    # A supervisor exports their own site too, and only it.
    assert set(export_csv(login("sup.north")).by_id()) == {own.id}


def test_site_filter_for_a_user_of_two_sites(world, make_user, add_assessment, login):
    make_user("clin.both", "clinician", ["NORTH", "SOUTH"])
    north_one = add_assessment(world["patient_n"], world["clin_n"])
    south_one = add_assessment(world["patient_s"], world["clin_s"])
    both = login("clin.both")
    everything = export_csv(both, layout="wide", scale="cows")
    assert set(everything.by_id()) == {north_one.id, south_one.id}
    assert "dates_in=UTC" in everything.line("filters: ")  # two zones: days are UTC days
    assert set(export_csv(both, site="SOUTH", layout="wide", scale="cows").by_id()) == {
        south_one.id
    }
    only_north = export_csv(both, site="north", layout="wide", scale="cows")
    assert set(only_north.by_id()) == {north_one.id}
    assert "dates_in=Europe/London" in only_north.line("filters: ")


@pytest.fixture
def three_entries(world, add_assessment):
    """N-001: a COWS and a GAD-7; N-003 (also NORTH): a COWS."""
    other = create_patient(
        world["clin_n"], world["north"], "N-003", None, now_utc() - timedelta(days=1), "opioid", ""
    )
    return {
        "cows": add_assessment(world["patient_n"], world["clin_n"]),
        "gad7": add_assessment(world["patient_n"], world["clin_n"], "gad7", gad()),
        "other": add_assessment(other, world["clin_n"]),
        "other_patient": other,
    }


def test_scale_filter(north, three_entries):
    first, second, third = (three_entries[k] for k in ("cows", "gad7", "other"))
    assert set(export_csv(north).by_id()) == {first.id, second.id, third.id}
    assert set(export_csv(north, scale="gad7").by_id()) == {second.id}
    assert set(export_csv(north, scale="cows").by_id()) == {first.id, third.id}
    assert set(export_csv(north, scale="all").by_id()) == {first.id, second.id, third.id}
    gad_rows = export_csv(north, layout="wide", scale="gad7").rows
    assert [row["assessment_id"] for row in gad_rows] == [str(second.id)]
    assert [gad_rows[0][key] for key in GAD7] == ["1"] * 7
    assert gad_rows[0]["total"] == "7"


def test_patient_filter_on_the_command_line(world, runner, tmp_path, three_entries):
    first, second, third = (three_entries[k] for k in ("cows", "gad7", "other"))
    target = tmp_path / "one.csv"

    def run(*args) -> Csv:
        cli_ok(runner, "--user", "clin.north", *args, "-o", str(target))
        return parse(target.read_bytes())

    by_patient = run("--patient", str(world["patient_n"].id))
    assert set(by_patient.by_id()) == {first.id, second.id}
    assert {row["patient_identifier"] for row in by_patient.rows} == {"N-001"}
    assert "patient=N-001" in by_patient.line("filters: ")
    other = three_entries["other_patient"]
    assert set(run("--patient", str(other.id), "--scale", "cows").by_id()) == {third.id}
    assert run("--patient", str(other.id), "--scale", "gad7").rows == []
    (event, *_) = audit_events("export")
    assert event.patient_id == world["patient_n"].id
    assert json.loads(event.details)["patient"] == "N-001"


def test_patient_filter_over_http(north, world, three_entries):
    first, second, third = (three_entries[k] for k in ("cows", "gad7", "other"))
    response = export(north, patient=world["patient_n"].id, layout="wide", scale="cows")
    assert response.status_code == 200
    assert response.headers["Content-Disposition"] == (
        f'attachment; filename="clinic_log-all-sites-patient-{world["patient_n"].id}'
        '-identified-wide-cows.csv"'
    )
    data = parse(response.data)
    assert set(data.by_id()) == {first.id}
    assert set(export_csv(north, patient=world["patient_n"].id).by_id()) == {first.id, second.id}
    other = three_entries["other_patient"]
    assert set(export_csv(north, patient=other.id).by_id()) == {third.id}


def _local_day_oracle(instants, zone, start, end):
    """The instants whose local day in ``zone`` lies between start and end, both included."""
    first = date.fromisoformat(start) if start else date.min
    last = date.fromisoformat(end) if end else date.max
    return {i for i in instants if first <= i.astimezone(zone).date() <= last}


def _dated_entries(patient, user, add_assessment, texts):
    instants = [datetime.fromisoformat(t).replace(tzinfo=UTC) for t in texts]
    return {add_assessment(patient, user, observed_at=i).id: i for i in instants}


def _check_days(browser, made, zone, ranges):
    for start, end in ranges:
        expected = {
            i for i, at in made.items() if at in _local_day_oracle(made.values(), zone, start, end)
        }
        assert expected, (start, end)
        for layout in ("wide", "long"):
            data = export_csv(browser, scale="cows", layout=layout, start=start, end=end)
            assert set(data.by_id()) == expected, (start, end, layout)
            assert data.line("rows: ") == str(len(data.rows))
            filters = data.line("filters: ")
            assert (f"start={start}" in filters) == bool(start)
            assert (f"end={end}" in filters) == bool(end)


def test_start_and_end_are_london_days_end_included(world, since_january, add_assessment, login):
    made = _dated_entries(since_january["north"], world["clin_n"], add_assessment, [
        # 15 July (BST): 14 July 23:00Z to 15 July 23:00Z.
        "2026-07-14T22:59:59", "2026-07-14T23:00:00", "2026-07-15T22:59:59",
        "2026-07-15T23:00:00",
        # 29 March, the clocks go forward: a 23-hour day, 00:00Z to 23:00Z.
        "2026-03-28T23:59:59", "2026-03-29T00:00:00", "2026-03-29T22:59:59",
        "2026-03-29T23:00:00",
        # 25 October, the clocks go back: a 25-hour day, 24 October 23:00Z to 26 October 00:00Z.
        "2026-10-24T22:59:59", "2026-10-24T23:00:00", "2026-10-25T23:59:59",
        "2026-10-26T00:00:00",
    ])  # fmt: skip
    ranges = [
        ("2026-07-15", "2026-07-15"), ("2026-03-29", "2026-03-29"),
        ("2026-10-25", "2026-10-25"), ("2026-07-14", "2026-07-15"), ("2026-07-15", ""),
        ("", "2026-07-14"), ("2026-03-28", "2026-10-24"),
    ]  # fmt: skip
    _check_days(login("clin.north"), made, LONDON, ranges)
    # The oracle itself, spelled out for one day: exactly the two instants inside it.
    inside = _local_day_oracle(made.values(), LONDON, "2026-07-15", "2026-07-15")
    assert sorted(z(i) for i in inside) == ["2026-07-14T23:00:00Z", "2026-07-15T22:59:59Z"]


def test_start_and_end_are_new_york_days_end_included(world, since_january, add_assessment, login):
    made = _dated_entries(since_january["south"], world["clin_s"], add_assessment, [
        # 15 January (EST): 05:00Z to 05:00Z the next day.
        "2026-01-15T04:59:59", "2026-01-15T05:00:00", "2026-01-16T04:59:59",
        "2026-01-16T05:00:00",
        # 14 and 15 July (EDT): 14 July 04:00Z to 16 July 04:00Z.
        "2026-07-14T03:59:59", "2026-07-14T04:00:00", "2026-07-16T03:59:59",
        "2026-07-16T04:00:00",
    ])  # fmt: skip
    ranges = [("2026-01-15", "2026-01-15"), ("2026-07-14", "2026-07-15"), ("2026-01-16", "")]
    _check_days(login("clin.south"), made, NEW_YORK, ranges)
    inside = _local_day_oracle(made.values(), NEW_YORK, "2026-01-15", "2026-01-15")
    assert sorted(z(i) for i in inside) == ["2026-01-15T05:00:00Z", "2026-01-16T04:59:59Z"]


def test_history_adds_amended_and_voided_versions(north, world, add_assessment):
    clin = world["clin_n"]
    to_amend = add_assessment(world["patient_n"], clin, notes="first version")
    to_void = add_assessment(world["patient_n"], clin)
    kept = add_assessment(world["patient_n"], clin)
    replacement = amend_assessment(
        clin, to_amend, to_amend.version,
        Answers(cows(sweating=3), to_amend.observed_at, "second version"), "sweating was missed",
    )  # fmt: skip
    void_assessment(clin, to_void, to_void.version, "duplicate", "entered twice")
    for layout in ("wide", "long"):
        active = export_csv(north, layout=layout, scale="cows")
        assert set(active.by_id()) == {replacement.id, kept.id}
        assert set(active.column("status")) == {"active"}
        assert "versions=active" in active.line("filters: ")
        assert active.line("rows: ") == str(len(active.rows))

        everything = export_csv(north, layout=layout, scale="cows", history="1")
        rows = everything.by_id()
        assert set(rows) == {to_amend.id, to_void.id, kept.id, replacement.id}
        assert (rows[to_amend.id]["status"], rows[to_amend.id]["status_reason"]) == (
            "amended", "sweating was missed",
        )  # fmt: skip
        assert (rows[to_void.id]["status"], rows[to_void.id]["status_reason"]) == (
            "voided", "Duplicate of another entry: entered twice",
        )  # fmt: skip
        assert rows[replacement.id]["replaces_id"] == str(to_amend.id)
        assert rows[replacement.id]["status"] == "active"
        assert rows[replacement.id]["notes"] == "second version"
        assert rows[to_amend.id]["notes"] == "first version"
        assert rows[kept.id]["replaces_id"] == rows[to_amend.id]["replaces_id"] == ""
        assert "versions=all (amended and voided included)" in everything.line("filters: ")
        assert everything.line("rows: ") == str(len(everything.rows))
    wide = export_csv(north, layout="wide", scale="cows", history="1").by_id()
    assert wide[replacement.id]["sweating"] == "3" and wide[to_amend.id]["sweating"] == "0"
    deidentified = export_csv(north, history="1", profile="deidentified")
    assert "status_reason" not in deidentified.header
    assert "entered twice" not in deidentified.text
    assert {r["status"] for r in deidentified.rows} == {"active", "amended", "voided"}


# --------------------------------------------------------------------------- de-identified


@pytest.fixture
def export_key(app):
    """A fixed pseudonymisation key, so shifts and pseudonyms are the same on every run."""
    path = Path(app.instance_path) / "export_key"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(EXPORT_KEY)
    return Pseudonymiser(EXPORT_KEY)


@pytest.fixture
def two_patients(world, add_assessment, make_user, export_key):
    """N-001 with two entries by clin.other (one signed by sup.north), N-004 with one."""
    other_clin = make_user("clin.other", "clinician", ["NORTH"])
    patient_b = create_patient(
        other_clin, world["north"], "N-004", "Label B", now_utc() - timedelta(days=3), "kratom",
        "",
    )  # fmt: skip
    now = now_utc().replace(microsecond=0)
    a1 = add_assessment(
        world["patient_n"], other_clin, observed_at=now - timedelta(hours=30, minutes=7),
        notes="secret note one",
    )  # fmt: skip
    a2 = add_assessment(
        world["patient_n"], other_clin, "gad7", gad(2), now - timedelta(hours=2),
        notes="secret note two",
    )  # fmt: skip
    b1 = add_assessment(patient_b, other_clin, observed_at=now - timedelta(hours=50))
    sign_assessment(world["sup_n"], a1, PASSWORD, 1)
    return {"a1": a1, "a2": a2, "b1": b1, "patient_b": patient_b}


def test_deidentified_file_has_no_identifiers_names_or_notes(north, world, two_patients):
    for params in ({}, {"layout": "wide", "scale": "cows"}, {"history": "1"}):
        data = export_csv(north, profile="deidentified", **params)
        assert data.rows
        for secret in (
            "N-001", "N-004", "n-001", "Test N", "Label B", "secret note", "Clin.Other",
            "clin.other", "Sup.North", "sup.north",
        ):  # fmt: skip
            assert secret not in data.text, secret
        header_line = ",".join(f'"{name}"' for name in data.header)
        data_section = data.text.split("\r\n" + header_line + "\r\n", 1)[1]
        assert "Clin.North" not in data_section
        assert not {"patient_identifier", "notes", "recorded_by", "reviewed_by"} & set(data.header)
        assert all(PSEUDONYM.match(p) for p in data.column("patient_pseudonym"))

    # Pseudonyms: the same patient gets the same one in every export, two patients differ.
    first = export_csv(north, profile="deidentified")
    second = export_csv(north, profile="deidentified", layout="wide", scale="cows")
    a1, b1 = two_patients["a1"], two_patients["b1"]
    rows_1, rows_2 = (by_real_id(data, a1.id, b1.id) for data in (first, second))
    for rows in (rows_1, rows_2):
        assert rows[a1.id]["patient_pseudonym"] != rows[b1.id]["patient_pseudonym"]
    assert rows_1[a1.id]["patient_pseudonym"] == rows_2[a1.id]["patient_pseudonym"]
    assert rows_1[b1.id]["patient_pseudonym"] == rows_2[b1.id]["patient_pseudonym"]
    assert {r["patient_pseudonym"] for r in first.rows if r["scale"] == "gad7"} == {
        rows_1[a1.id]["patient_pseudonym"]
    }
    assert rows_1[a1.id]["reviewed"] == "yes" and rows_1[b1.id]["reviewed"] == "no"
    assert rows_1[b1.id]["reviewed_at_utc"] == ""
    assert rows_1[a1.id]["episode_number"] == "1"


def test_dates_shift_by_whole_days_per_patient_keeping_intervals(
    north, world, two_patients, export_key
):
    a1, a2, b1 = two_patients["a1"], two_patients["a2"], two_patients["b1"]
    rows = by_real_id(export_csv(north, profile="deidentified"), a1.id, a2.id, b1.id)
    shifts = {}
    for assessment in (a1, a2, b1):
        row = rows[assessment.id]
        real, shifted = assessment.observed_at, utc(row["observed_at_utc"])
        # The file has whole minutes (tests/test_deidentified_export.py).
        shift = real.replace(second=0, microsecond=0) - shifted
        # A whole number of days back.
        assert shift.seconds == 0 and shift.microseconds == 0 and 1 <= shift.days <= 364
        # Every other date of the patient moves by the same.
        for column, value in (
            ("episode_started_at_utc", assessment.episode.started_at),
            ("recorded_at_utc", assessment.recorded_at),
        ):
            assert value.replace(second=0, microsecond=0) - utc(row[column]) == shift, column
        # The local time is the shifted instant in the site's zone, with the offset then.
        local = datetime.fromisoformat(row["observed_at_local"])
        assert local == shifted
        assert local.utcoffset() == shifted.astimezone(LONDON).utcoffset()
        shifts[assessment.id] = shift
        assert shift == export_key.shift(assessment.patient_id)
    assert shifts[a1.id] == shifts[a2.id]
    assert shifts[a1.id] != shifts[b1.id]
    # Intervals between one patient's entries are kept to the minute.
    gap = utc(rows[a2.id]["observed_at_utc"]) - utc(rows[a1.id]["observed_at_utc"])
    assert gap == a2.observed_at - a1.observed_at == timedelta(hours=28, minutes=7)
    signed_at = a1.reviewed_at.replace(second=0, microsecond=0)
    assert signed_at - utc(rows[a1.id]["reviewed_at_utc"]) == shifts[a1.id]


def test_date_shifts_are_spread_over_the_year():
    pseudonymiser = Pseudonymiser("any key")
    shifts = [pseudonymiser.shift(patient_id).days for patient_id in range(1, 301)]
    assert min(shifts) >= 1 and max(shifts) <= 364
    assert len(set(shifts)) > 150
    other = Pseudonymiser("another key")
    assert [other.shift(i).days for i in range(1, 51)] != shifts[:50]
    assert pseudonymiser.pseudonym("NORTH", "n-001") != pseudonymiser.pseudonym("SOUTH", "n-001")
    assert pseudonymiser.pseudonym("NORTH", "n-001") == Pseudonymiser("any key").pseudonym(
        "NORTH", "n-001"
    )


def test_a_deidentified_export_of_one_patient_does_not_name_them(
    world, two_patients, runner, tmp_path
):
    # Through the command line: over HTTP the patient filter fails (test_patient_filter_over_http).
    target = tmp_path / "deid.csv"
    patient = two_patients["patient_b"]
    cli_ok(
        runner, "--user", "clin.north", "--profile", "deidentified", "--patient", str(patient.id),
        "-o", str(target),
    )  # fmt: skip
    data = parse(target.read_bytes())
    assert len(data.rows) == len(COWS)
    assert "N-004" not in data.text


def test_a_deidentified_export_does_not_reveal_the_real_dates(
    world, since_january, login, add_assessment, export_key
):
    instant = datetime(2026, 7, 15, 10, 30, tzinfo=UTC)
    add_assessment(since_january["north"], world["clin_n"], observed_at=instant)
    data = export_csv(
        login("clin.north"), profile="deidentified", start="2026-07-15", end="2026-07-15"
    )
    assert len(data.rows) == len(COWS)
    assert "2026-07-15" not in data.text


def test_episode_numbers_count_the_patients_episodes(world, login, add_assessment, export_key):
    clin = world["clin_n"]
    patient = create_patient(
        clin, world["north"], "N-005", None, now_utc() - timedelta(days=10), "opioid", ""
    )
    first = add_assessment(patient, clin, observed_at=now_utc() - timedelta(days=9))
    end_episode(clin, patient.open_episode, now_utc() - timedelta(days=8))
    open_episode(clin, patient, now_utc() - timedelta(days=5), "opioid", "")
    second = add_assessment(patient, clin, observed_at=now_utc() - timedelta(days=4))
    rows = export_csv(login("clin.north"), profile="deidentified", layout="wide", scale="cows")
    numbers = {i: r["episode_number"] for i, r in by_real_id(rows, first.id, second.id).items()}
    assert numbers == {first.id: "1", second.id: "2"}


# --------------------------------------------------------------------------- the response


def test_response_headers_and_the_excel_option(north, world, add_assessment):
    add_assessment(world["patient_n"], world["clin_n"], notes="café, niño, Zürich, 日本")
    for params, name in (
        ({}, "clinic_log-all-sites-all-patients-identified-long-all-scales.csv"),
        ({"layout": "wide", "scale": "cows", "site": "NORTH"},
         "clinic_log-NORTH-all-patients-identified-wide-cows.csv"),
        ({"profile": "deidentified", "scale": "gad7"},
         "clinic_log-all-sites-all-patients-deidentified-long-gad7.csv"),
    ):  # fmt: skip
        response = export(north, **params)
        assert response.status_code == 200
        assert response.mimetype == "text/csv"
        assert response.headers["Content-Disposition"] == f'attachment; filename="{name}"'
        assert "N-001" not in response.headers["Content-Disposition"]
        assert str(world["patient_n"].id) not in name
        assert response.headers["Cache-Control"] == "no-store"
        assert response.headers["X-Clinic-Log-Rows"] == parse(response.data).line("rows: ")

    # Excel: a UTF-8 byte-order mark before anything else, the rest unchanged.
    excel = export(north, excel="1", layout="wide", scale="cows").data
    assert excel.startswith(b"\xef\xbb\xbf#")
    plain = export(north, layout="wide", scale="cows").data
    assert plain.startswith(b"#") and b"\xef\xbb\xbf" not in plain
    assert (
        parse(excel).rows[0]["notes"] == parse(plain).rows[0]["notes"] == "café, niño, Zürich, 日本"
    )
    assert parse(excel).header == parse(plain).header


def test_provenance_lines(north, world, add_assessment):
    for _ in range(3):
        add_assessment(world["patient_n"], world["clin_n"])
    add_assessment(world["patient_n"], world["clin_n"], "gad7", gad())
    before = now_utc().replace(microsecond=0)
    cows_v, gad7_v = (f"{key} v{get_scale(key).version}" for key in ("cows", "gad7"))
    for params, count, versions in (
        ({}, 3 * 11 + 7, None),
        ({"layout": "wide", "scale": "cows"}, 3, cows_v),
        ({"scale": "gad7"}, 7, gad7_v),
        ({"layout": "wide", "scale": "gad7", "start": "2000-01-01"}, 1, gad7_v),
    ):
        data = export_csv(north, **params)
        assert len(data.rows) == count
        assert data.line("rows: ") == str(count)
        assert before <= utc(data.line("generated_at: ")) <= now_utc() + timedelta(seconds=1)
        assert data.line("generated_by: ") == "clin.north (Clin.North)"
        filters = data.line("filters: ")
        assert "site=all of yours" in filters and "patient=all" in filters
        assert f"layout={params.get('layout', 'long')}" in filters
        assert "profile=identified" in filters and "dates_in=Europe/London" in filters
        expected_versions = versions or "; ".join(f"{k} v{s.version}" for k, s in scales().items())
        assert data.line("scale versions: ") == expected_versions
        assert NO_ADVICE_NOTICE in data.preamble
        assert all(line == line.strip("\r\n") for line in data.preamble)
        assert data.text.startswith("# clinic_log export")
    assert "start=2000-01-01" in data.line("filters: ")


def test_every_export_is_audited_with_user_filters_and_count(north, world, add_assessment):
    add_assessment(world["patient_n"], world["clin_n"])
    export_csv(north)
    export_csv(north, layout="wide", scale="cows", site="NORTH", excel="1")
    export_csv(north, profile="deidentified", history="1", start="2026-01-01", end="2026-12-31")
    events = audit_events("export")
    assert len(events) == 3
    details = [json.loads(event.details) for event in events]
    for event in events:
        assert (event.user_id, event.username) == (world["clin_n"].id, "clin.north")
        assert event.site_id == world["north"].id
    assert details[0]["rows"] == 11 and details[0]["layout"] == "long"
    assert details[0]["scale"] == "all" and details[0]["excel"] is False
    assert details[1]["rows"] == 1 and details[1]["patient"] == "all"
    assert details[1]["scale"] == "cows" and details[1]["excel"] is True
    assert details[1]["site"] == "NORTH" and details[0]["site"] == "all of yours"
    assert events[1].patient_id is None
    assert details[2]["profile"] == "deidentified"
    assert (details[2]["start"], details[2]["end"]) == ("2026-01-01", "2026-12-31")
    assert details[2]["versions"].startswith("all")


# --------------------------------------------------------------------------- refusals


def _assert_no_export_data(response, world):
    body = response.get_data(as_text=True)
    assert response.mimetype != "text/csv"
    assert "Content-Disposition" not in response.headers
    # The header's first cells (the form's field is also called patient_identifier).
    header = '"patient_identifier","site"'
    for leak in ("assessment_id", header, "S-001", "N-001", "Test N", "# clinic"):
        assert leak not in body, leak


REFUSED = (
    ({"scale": "nope"}, 400, "Unknown scale"),
    ({"scale": "COWS"}, 400, "Unknown scale"),
    ({"layout": "wide"}, 400, "needs one scale"),
    ({"layout": "wide", "scale": "all"}, 400, "needs one scale"),
    ({"start": "2026-05-02", "end": "2026-05-01"}, 400, "before the start"),
    ({"start": "2026-13-01"}, 400, "must look like"),
    ({"end": "yesterday"}, 400, "must look like"),
    ({"start": "2026-1-1"}, 400, "must look like"),
    ({"start": "2026-02-30"}, 400, "must look like"),
    ({"end": "26-01-01"}, 400, "must look like"),
    ({"start": "1999-12-31"}, 400, "must look like"),
    ({"start": "2026-01-01T00:00"}, 400, "must look like"),
    ({"layout": "tall"}, 400, "layout must be"),
    ({"profile": "anonymous"}, 400, "profile must be"),
    ({"site": "SOUTH"}, 404, None),
    ({"site": "NOWHERE"}, 404, None),
    ({"patient": "abc"}, 404, None),
    ({"patient": "999999"}, 404, None),
)


def test_bad_requests_are_refused_before_any_data(north, world, add_assessment):
    add_assessment(world["patient_n"], world["clin_n"])
    add_assessment(world["patient_s"], world["clin_s"])
    for params, status, message in REFUSED:
        response = export(north, **params)
        assert response.status_code == status, params
        _assert_no_export_data(response, world)
        if message:
            assert response.mimetype == "text/plain"
            assert message in response.get_data(as_text=True), params
    assert audit_events("export") == []
    refused = audit_events("access_refused")
    assert len(refused) == sum(1 for _, status, _ in REFUSED if status == 404)
    assert {event.entity for event in refused} == {"export"}


BROWSER_ACCEPT = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}


def test_a_browser_gets_the_form_back_with_the_message_by_the_field(north, world, add_assessment):
    add_assessment(world["patient_n"], world["clin_n"])
    asked_dates = ("2026-03-05", "2026-03-04")
    asked = {"start": asked_dates[0], "end": asked_dates[1], "scale": "gad7", "layout": "wide"}
    asked |= {"profile": "deidentified", "history": "1", "patient": "", "site": "NORTH"}
    response = north.get(URL, query_string=asked, headers=BROWSER_ACCEPT)
    assert response.status_code == 400 and response.mimetype == "text/html"
    assert field_errors(response, "end") == "The end date is before the start date."
    page = response.get_data(as_text=True)
    assert 'aria-describedby="end-errors"' in page and 'aria-invalid="true"' in page
    assert (
        input_val(response, "start") == "2026-03-05" and input_val(response, "end") == "2026-03-04"
    )
    assert '<option value="gad7" selected>' in page
    assert checked(response, "layout") == ["wide"] and checked(response, "profile") == [
        "deidentified"
    ]
    assert checked(response, "history") == ["1"] and checked(response, "excel") == []
    _assert_no_export_data(response, world)
    assert audit_events("export") == []


def test_a_browser_asking_for_another_sites_patient_gets_404_the_form_and_an_audit_line(
    north, world, add_assessment
):
    add_assessment(world["patient_s"], world["clin_s"])
    asked = {"patient": world["patient_s"].id}
    response = north.get(URL, query_string=asked, headers=BROWSER_ACCEPT)
    assert response.status_code == 404
    assert field_errors(response, "patient") == "No such patient at your sites."
    assert input_val(response, "patient") == str(world["patient_s"].id)
    _assert_no_export_data(response, world)
    [refused] = audit_events("access_refused")
    assert refused.entity == "export" and refused.user_id == world["clin_n"].id


def test_another_sites_patient_is_404_and_audited(north, world, add_assessment):
    add_assessment(world["patient_s"], world["clin_s"])
    for params in (
        {"patient": world["patient_s"].id},
        {"patient": world["patient_s"].id, "site": "NORTH"},
        {"patient": world["patient_s"].id, "layout": "wide", "scale": "cows"},
    ):
        response = export(north, **params)
        assert response.status_code == 404
        _assert_no_export_data(response, world)
    refused = audit_events("access_refused")
    assert len(refused) == 3
    for event in refused:
        assert event.user_id == world["clin_n"].id and event.entity == "export"
        assert json.loads(event.details)["status"] == 404
    assert audit_events("export") == []


def test_anonymous_and_admin_get_nothing(world, make_browser, login, add_assessment):
    add_assessment(world["patient_n"], world["clin_n"])
    anonymous = make_browser()
    for url in (URL, URL + "?layout=wide&scale=cows", "/exports/dictionary.csv", "/exports/"):
        response = anonymous.get(url)
        assert response.status_code == 302
        assert "/login" in response.headers["Location"]
        _assert_no_export_data(response, world)
    assert audit_events("export") == []
    assert audit_events("access_refused") == []
    admin = login("admin.one")
    for url in (URL, "/exports/dictionary.csv", "/exports/"):
        response = admin.get(url)
        assert response.status_code == 403
        _assert_no_export_data(response, world)
    assert audit_events("export") == []
    assert len(audit_events("access_refused")) == 3
    # A clinician's export form offers their own sites only.
    page = login("clin.north").get("/exports/").get_data(as_text=True)
    assert 'value="NORTH"' in page and "SOUTH" not in page
    assert 'action="/exports/assessments.csv"' in page


# --------------------------------------------------------------------------- streaming


def test_rows_and_chunks_are_generators():
    """Memory stays flat: rows are produced one at a time and written a chunk at a time
    (test_csv_writer checks that csv_chunks reads rows lazily)."""
    assert inspect.isgeneratorfunction(services._format_rows)
    assert inspect.isgeneratorfunction(csv_chunks)


def test_the_download_is_streamed_in_chunks(north, world, app):
    """The body leaves in several pieces, not as one string built in memory."""
    # Many entries, quickly: straight through the model, as record_assessment would store them.
    patient, clin = world["patient_n"], world["clin_n"]
    episode, version = patient.open_episode, get_scale("cows").version
    begin_write(db.session)
    start = now_utc() - timedelta(hours=40)
    for n in range(50):
        db.session.add(
            Assessment(
                patient=patient, episode=episode, scale_key="cows", scale_version=version,
                observed_at=start + timedelta(minutes=n), recorded_by=clin, total=0,
                complete=True, band=None, notes=f"entry {n}", status="active",
                item_scores=[
                    ItemScore(item_key=key, position=i, score=0) for i, key in enumerate(COWS)
                ],
            )
        )  # fmt: skip
    db.session.commit()

    def download():
        response = FlaskClient.open(north.client, URL, buffered=False)
        try:
            return response, list(response.response)
        finally:
            response.close()

    response, chunks = contextvars.Context().run(download)
    assert response.status_code == 200
    assert len(chunks) >= 2
    data = parse(b"".join(chunks))
    assert len(data.rows) == 50 * len(COWS) == int(data.line("rows: "))


def test_a_head_request_leaves_no_connection_checked_out(north, world, app):
    fresh()
    with app.app_context():
        pool = db.engine.pool
    before = pool.checkedout()
    gc.disable()  # the leaked connection is only freed when the collector finds its cycle
    try:
        status = north.client.head(URL).status_code
        leaked = pool.checkedout() - before
    finally:
        gc.enable()
        gc.collect()  # free it now: on PostgreSQL its open transaction would block TRUNCATE
    assert pool.checkedout() == before
    assert status == 200
    assert leaked == 0


# --------------------------------------------------------------------------- comment readers


def test_a_row_starting_with_a_hash_is_not_read_as_a_comment(north, world, add_assessment):
    patient = create_patient(
        world["clin_n"], world["north"], "#12", None, now_utc() - timedelta(days=1), "opioid", ""
    )
    add_assessment(patient, world["clin_n"], notes="bed #3")
    text = export(north, layout="wide", scale="cows").get_data(as_text=True)
    kept = [line for line in text.splitlines(keepends=True) if not line.startswith("#")]
    rows = list(csv.reader(io.StringIO("".join(kept), newline="")))[1:]
    assert len(rows) == 1


# --------------------------------------------------------------------------- data dictionary


@pytest.fixture
def dictionary(north) -> Csv:
    response = north.get("/exports/dictionary.csv")
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    assert (
        response.headers["Content-Disposition"]
        == 'attachment; filename="clinic_log-dictionary.csv"'
    )
    assert response.headers["Cache-Control"] == "no-store"
    return parse(response.data)


def test_data_dictionary(dictionary):
    _every_allowed_score_of_every_scale(dictionary)
    _cows_anchors(dictionary)
    _bands_and_citations(dictionary)
    _every_base_column(dictionary)


def _every_allowed_score_of_every_scale(dictionary):
    items = [row for row in dictionary.rows if row["record_type"] == "item"]
    for scale in scales().values():
        for item in scale.items:
            rows = [r for r in items if (r["scale"], r["name"]) == (scale.key, item.key)]
            assert [int(r["score"]) for r in rows] == sorted(item.allowed_scores), item.key
            for row in rows:
                assert row["anchor"] == item.anchor_text(int(row["score"]))
                assert (row["label"], row["respondent"], row["domain"]) == (
                    item.label, item.respondent, item.domain,
                )  # fmt: skip
                assert row["scale_version"] == scale.version
                assert row["total_range"] == f"{scale.total_min}-{scale.total_max}"
                assert row["custom"] == ("yes" if scale.custom else "no")
                assert scale.citation in row["citation"]
    expected = sum(len(i.anchors) for s in scales().values() for i in s.items)
    assert len(items) == expected
    assert {r["record_type"] for r in dictionary.rows} == {"item", "column", "deidentified"}


def _cows_anchors(dictionary):
    cows_rows = {
        (r["name"], int(r["score"])): r["anchor"]
        for r in dictionary.rows
        if r["record_type"] == "item" and r["scale"] == "cows"
    }
    assert sorted(s for (name, s) in cows_rows if name == "gooseflesh") == [0, 3, 5]
    assert cows_rows["gooseflesh", 5] == "Prominent piloerection"
    assert cows_rows["gooseflesh", 0] == "Skin is smooth"
    assert sorted(s for (name, s) in cows_rows if name == "resting_pulse") == [0, 1, 2, 4]
    assert cows_rows["resting_pulse", 4] == "Pulse rate greater than 120"
    assert sorted(s for (name, s) in cows_rows if name == "restlessness") == [0, 1, 3, 5]
    assert len({name for name, _ in cows_rows}) == 11


def _bands_and_citations(dictionary):
    items = [r for r in dictionary.rows if r["record_type"] == "item"]
    by_scale = {r["scale"]: r for r in items}
    assert by_scale["cows"]["bands"] == (
        "5-12 Mild; 13-24 Moderate; 25-36 Moderately severe; 37-48 Severe"
    )
    gad7 = get_scale("gad7")
    assert by_scale["gad7"]["bands"] == "; ".join(f"{b.low}-{b.high} {b.label}" for b in gad7.bands)
    assert gad7.bands and all(b.label in by_scale["gad7"]["bands"] for b in gad7.bands)
    for key, scale in scales().items():
        if not scale.bands:
            assert by_scale[key]["bands"] == scale.band_note and scale.band_note
    assert "Wesson" in by_scale["cows"]["citation"]
    assert all(r["citation"] for r in items)
    assert {r["scale"] for r in items} == set(scales())


def _every_base_column(dictionary):
    described = {
        r["name"]: r["description"] for r in dictionary.rows if r["record_type"] == "column"
    }
    for column in {*IDENTIFIED, *DEIDENTIFIED, *LONG, "not_assessed"}:
        assert described.get(column), column
    assert NO_ADVICE_NOTICE in dictionary.preamble


def test_dictionary_describes_every_wide_column(north, dictionary):
    described = {r["name"] for r in dictionary.rows if r["record_type"] == "column"}
    for key in scales():
        header = export_csv(north, layout="wide", scale=key).header
        items = {r["name"] for r in dictionary.rows if r["scale"] == key}
        assert set(header) <= described | items, key


def test_dictionary_lists_the_not_assessed_reason_values(north, world, add_assessment, dictionary):
    add_assessment(
        world["patient_n"], world["clin_n"], scores=cows(gi_upset=None),
        not_assessed_reasons={"gi_upset": "unable_to_communicate"},
    )  # fmt: skip
    values = {r["not_assessed_reason"] for r in export_csv(north).rows} - {""}
    (description,) = [
        r["description"] for r in dictionary.rows if r["name"] == "not_assessed_reason"
    ]
    assert values == {"unable_to_communicate"}
    assert all(value in description for value in values)


# --------------------------------------------------------------------------- the CLI


def _without_generated_at(text: str) -> str:
    return "".join(
        line for line in text.splitlines(keepends=True) if not line.startswith("# generated_at:")
    )


def test_cli_writes_the_same_file_as_the_download(north, world, runner, tmp_path, recorded):
    target = tmp_path / "out.csv"
    result = cli_ok(
        runner, "--user", "clin.north", "--layout", "wide", "--scale", "cows", "-o", str(target)
    )
    assert f"Wrote 2 rows to {target}" in result.output
    from_cli = target.read_bytes()
    from_http = export(north, layout="wide", scale="cows").data
    assert _without_generated_at(from_cli.decode()) == _without_generated_at(from_http.decode())
    assert parse(from_cli).rows == parse(from_http).rows
    assert len(parse(from_cli).rows) == 2
    events = audit_events("export")
    assert len(events) == 2
    assert events[0].username == "clin.north" and events[0].ip is None
    details = json.loads(events[0].details)
    assert (details["rows"], details["layout"], details["scale"]) == (2, "wide", "cows")

    # Without -o the file goes to standard output.
    result = cli_ok(runner, "--user", "clin.north", "--scale", "cows")
    data = parse(result.stdout.encode())
    assert data.header == IDENTIFIED + LONG
    assert len(data.rows) == 2 * len(COWS) and data.line("rows: ") == str(2 * len(COWS))
    assert {row["patient_identifier"] for row in data.rows} == {"N-002"}
    assert len(audit_events("export")) == 3


def test_cli_options_match_the_query_parameters(world, runner, tmp_path, recorded, login):
    target = tmp_path / "deid.csv"
    cli_ok(
        runner, "--user", "CLIN.NORTH", "--profile", "deidentified", "--history", "--excel",
        "--start", "2026-07-15", "--end", "2026-07-15", "--site", "NORTH", "-o", str(target),
    )  # fmt: skip
    raw = target.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf#")
    from_http = export(
        login("clin.north"), profile="deidentified", history="1", excel="1", start="2026-07-15",
        end="2026-07-15", site="NORTH",
    ).data  # fmt: skip
    assert _without_generated_at(raw.decode()) == _without_generated_at(from_http.decode())
    assert len(parse(raw).rows) == len(COWS)


def test_cli_refusals(world, runner, tmp_path):
    target = tmp_path / "never.csv"
    for args, message in (
        (["--user", "nobody"], "No active clinician or supervisor"),
        (["--user", "admin.one"], "No active clinician or supervisor"),
        (["--user", "clin.north", "--layout", "wide"], "wide layout needs one scale"),
        (["--user", "clin.north", "--scale", "nope"], "Unknown scale"),
        (["--user", "clin.north", "--site", "SOUTH"], "no site SOUTH"),
        (["--user", "clin.north", "--start", "2026-1-1"], "must look like"),
        (["--user", "clin.north", "--layout", "tall"], "Invalid value"),
        (["--user", "clin.north", "--patient", str(world["patient_s"].id)], "No such patient"),
    ):
        result = runner.invoke(args=["export", *args, "-o", str(target)])
        assert result.exit_code != 0, args
        assert message in result.output, args
        assert not target.exists()
        assert "S-001" not in result.output
    assert audit_events("export") == []


def test_an_iso_week_date_is_refused(north):
    assert export(north, start="2026-W01-1").status_code == 400


# --------------------------------------------------------------------------- byte for byte

# Values a spreadsheet or a careless reader gets wrong, for every text column that can hold them.
TRICKY = (
    "=1+1", "-x", "@", "+44", "\tafter a tab", "\rafter a CR", "\nafter a LF", "\0after a NUL",
    "\uff1d1+1", "Zoë, café; niño", 'say "hi"', "#3", "", "plain",
)  # fmt: skip


def _oracle_utc(value: datetime | None) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if value else ""


def _oracle_local(value: datetime | None, tz_name: str) -> str:
    return value.astimezone(ZoneInfo(tz_name)).isoformat(timespec="seconds") if value else ""


def _oracle_rows(user, params: dict, key: str) -> list[list]:
    """The export's rows as values, worked out the slow, obvious way from the ORM objects, by the
    rules the export has always followed; csv_chunks then writes them with csv_cell."""
    sites = [s for s in user.sites if s.code == params["site"]] if "site" in params else user.sites
    scale_key = params.get("scale")
    query = (
        select(Assessment)
        .join(Assessment.patient)
        .where(Patient.site_id.in_([s.id for s in sites]))
        .order_by(Assessment.observed_at, Assessment.id)
    )
    if scale_key:
        query = query.where(Assessment.scale_key == scale_key)
    if not params.get("history"):
        query = query.where(Assessment.status == "active")
    pseudonymiser = Pseudonymiser(key)
    deidentified = params.get("profile") == "deidentified"
    blocks = []  # (where the entry goes in the file, its rows)
    for a in db.session.scalars(query):
        rows = []
        items = sorted(a.item_scores, key=lambda i: i.position)
        if not items:
            continue  # an entry without item scores has never been exported
        site, episode = a.patient.site, a.episode
        band = a.band if a.complete else ""
        # An incomplete total is a lower bound: the band it already lies in is its floor.
        floor = None if a.complete else get_scale(a.scale_key).band_for(a.total)
        band_floor = floor.label if floor else ""
        completeness = "complete" if a.complete else "incomplete"
        if deidentified:
            shift = pseudonymiser.shift(a.patient_id)

            def moved(value, shift=shift):
                # Back by the patient's days, to the minute.
                return (value - shift).replace(second=0, microsecond=0) if value else None

            def entry(assessment_id):
                return pseudonymiser.assessment(assessment_id) if assessment_id else ""

            number = sum(1 for e in a.patient.episodes if e.started_at <= episode.started_at)
            patient = pseudonymiser.pseudonym(site.code, a.patient.identifier_key)
            base = [
                patient, site.code, number, _oracle_utc(moved(episode.started_at)), a.scale_key,
                a.scale_version, entry(a.id), _oracle_utc(moved(a.observed_at)),
                _oracle_local(moved(a.observed_at), site.timezone), a.total, band, band_floor,
                completeness, a.status, entry(a.replaces_id), _oracle_utc(moved(a.recorded_at)),
                "yes" if a.reviewed_at else "no", _oracle_utc(moved(a.reviewed_at)),
            ]  # fmt: skip
            # Patient by patient in pseudonym order, then by the minute shown, then pseudonym.
            place = (patient, moved(a.observed_at), entry(a.id))
        else:
            place = (len(blocks),)  # the database's order: observed, then id
        if not deidentified:
            base = [
                a.patient.identifier, site.code, a.episode_id, _oracle_utc(episode.started_at),
                a.scale_key, a.scale_version, a.id, _oracle_utc(a.observed_at),
                _oracle_local(a.observed_at, site.timezone), a.total, band, band_floor,
                completeness, a.status, a.status_reason or "", a.replaces_id or "",
                a.recorded_by.display_name, _oracle_utc(a.recorded_at),
                a.reviewed_by.display_name if a.reviewed_by else "",
                _oracle_utc(a.reviewed_at), a.notes,
            ]  # fmt: skip
        if params.get("layout") == "wide":
            by_key = {i.item_key: i for i in items}
            values = []
            for item in get_scale(scale_key).items:
                found = by_key.get(item.key)
                values.append("NA" if found is None or found.score is None else found.score)
                if item.measurement is not None:
                    measured = found.measured_value if found is not None else None
                    values.append("" if measured is None else measured)
            not_assessed = "; ".join(
                f"{i.item_key}: {NOT_ASSESSED_REASONS.get(i.not_assessed_reason, '?')}"
                for i in items
                if i.score is None
            )
            rows.append(base + values + [not_assessed])
        else:
            known = {item.key: item for item in get_scale(a.scale_key).items}
            for i in items:
                item = known.get(i.item_key)
                rows.append(
                    base + [
                        i.item_key, item.respondent if item else "", item.domain if item else "",
                        "NA" if i.score is None else i.score, i.not_assessed_reason or "",
                        "" if i.measured_value is None else i.measured_value,
                    ]
                )  # fmt: skip
        blocks.append((place, rows))
    return [row for _, rows in sorted(blocks, key=lambda block: block[0]) for row in rows]


@pytest.fixture
def tricky(world, make_user, export_key):
    """Entries at two sites, written straight through the models (so no form rule stands in
    the way) with every awkward value in every column that can hold it."""
    clin = make_user("clin.both", "clinician", ["NORTH", "SOUTH"])
    names = [make_user(f"clin.t{n}", "clinician", ["NORTH"]) for n in range(3)]
    begin_write(db.session)
    for user, name in zip(names, ("=Clin", "-Sup", "Zoë Ünal"), strict=True):
        user.display_name = name
    cows_scale, gad7_scale = get_scale("cows"), get_scale("gad7")
    at = datetime(2026, 3, 29, 0, 30, 15, 123456, tzinfo=UTC)  # London's clocks go forward
    made = []
    # PostgreSQL refuses NUL in text, so nothing stored there can hold one.
    tricky_text = [t for t in TRICKY if "\0" not in t or db.engine.dialect.name == "sqlite"]
    for n, text in enumerate(tricky_text):
        site = world["north"] if n % 3 else world["south"]
        patient = Patient(
            site=site, identifier=text or f"T-{n}", identifier_key=(text or f"T-{n}").casefold(),
            created_by=clin,
        )  # fmt: skip
        # The first ended when the second began: a patient has at most one open episode.
        first = Episode(
            patient=patient, started_at=at - timedelta(days=40 + n), substance_context="opioid",
            ended_at=at - timedelta(days=3), created_by=clin,
        )  # fmt: skip
        second = Episode(
            patient=patient, started_at=at - timedelta(days=3), substance_context="kratom",
            created_by=clin,
        )  # fmt: skip
        for k, (scale, episode) in enumerate(
            ((cows_scale, first), (gad7_scale, first), (cows_scale, second))
        ):
            observed = at + timedelta(hours=7 * k - n, minutes=n, microseconds=n)
            reviewer = names[(n + k) % 3] if (n + k) % 2 else None
            status = ("active", "amended", "voided")[(n + k) % 3]
            assessment = Assessment(
                patient=patient, episode=episode, scale_key=scale.key,
                scale_version=("-1" if n == 5 else scale.version), observed_at=observed,
                recorded_at=observed + timedelta(minutes=5), recorded_by=names[n % 3],
                total=(0, -3, 17)[k], complete=bool((n + k) % 4), band=(None, "Mild", "=band")[k],
                notes=tricky_text[(n + k) % len(tricky_text)], status=status,
                status_reason=(None, "", text)[(n + k) % 3] if status != "active" else None,
                replaces_id=made[-1].id if made and k == 2 else None,
                reviewed_by=reviewer,
                reviewed_at=observed + timedelta(hours=1) if reviewer else None,
            )  # fmt: skip
            db.session.add(assessment)
            for position, item in enumerate(scale.items):
                if (n + position) % 7 == 6:
                    continue  # a missing item: NA in the wide layout, no row in the long one
                score, reason, measured = item.allowed_scores[-1], None, None
                if (n + position) % 5 == 0:
                    score, reason = None, ("asleep", "not_measured", "=weird")[n % 3]
                elif (n + position) % 5 == 1:
                    score = (0, -1)[n % 2]
                if item.measurement is not None:
                    measured = (None, 92, 0, -5)[n % 4]
                assessment.item_scores.append(
                    ItemScore(
                        item_key=item.key, position=position, score=score,
                        not_assessed_reason=reason, measured_value=measured,
                    )
                )  # fmt: skip
            if n % 4 == 1:  # an item this scale does not know, last
                assessment.item_scores.append(
                    ItemScore(
                        item_key="-extra", position=99, score=None, not_assessed_reason="asleep"
                    )
                )  # fmt: skip
            db.session.flush()
            made.append(assessment)
    # An entry without item scores is left out of every export.
    db.session.add(
        Assessment(
            patient=world["patient_n"], episode=world["patient_n"].open_episode, scale_key="cows",
            scale_version=cows_scale.version, observed_at=at, recorded_by=clin, total=0,
            complete=True, band=None, notes="no items", status="active",
        )
    )  # fmt: skip
    db.session.commit()
    return clin


BYTE_FOR_BYTE = (
    {},
    {"history": "1"},
    {"excel": "1", "history": "1", "profile": "deidentified"},
    {"profile": "deidentified"},
    {"site": "NORTH", "scale": "gad7"},
    {"layout": "wide", "scale": "cows", "history": "1"},
    {"layout": "wide", "scale": "cows", "excel": "1"},
    {"layout": "wide", "scale": "gad7", "history": "1", "profile": "deidentified"},
    {"layout": "wide", "scale": "cows", "site": "SOUTH", "profile": "deidentified"},
)


@pytest.mark.parametrize(
    "params", BYTE_FOR_BYTE, ids=lambda p: "&".join(f"{k}={v}" for k, v in p.items()) or "default"
)
def test_every_byte_matches_the_obvious_reading_of_the_rules(tricky, login, params):
    response = export(login("clin.both"), **params)
    assert response.status_code == 200
    text = response.get_data(as_text=True)
    data = parse(response.data)
    assert data.rows
    fresh()
    expected_rows = _oracle_rows(tricky, params, EXPORT_KEY)
    assert len(data.rows) == len(expected_rows) == int(data.line("rows: "))
    expected = "".join(
        csv_chunks(data.header, expected_rows, preamble=data.preamble, bom="excel" in params)
    )
    assert text == expected


@pytest.mark.parametrize(
    "params", BYTE_FOR_BYTE, ids=lambda p: "&".join(f"{k}={v}" for k, v in p.items()) or "default"
)
def test_the_fast_writer_writes_what_the_plain_rows_say(tricky, params):
    """csv_chunks takes the rows' own text (ExportRows.csv_text); from the rows as lists of
    values, through csv_cell, it writes the same bytes."""
    written = []
    for plain in (True, False):
        request = services.parse_request(params, tricky)
        export = services.open_export(request, tricky)
        try:
            rows = list(export.rows) if plain else export.rows
            if plain:
                assert rows and {len(row) for row in rows} == {len(export.header)}
            written.append("".join(csv_chunks(export.header, rows, bom=request.excel)))
        finally:
            export.close()
    assert written[0] == written[1]


def test_small_batches_give_the_same_bytes(tricky, login, monkeypatch):
    """Batches of 3 assessments, item rows looked up 2 ids a query: nothing is lost or
    repeated where one batch ends and the next begins."""
    monkeypatch.setattr(services, "BATCH_ROWS", 3)
    monkeypatch.setattr(services, "IDS_PER_QUERY", 2)
    browser = login("clin.both")
    for params in BYTE_FOR_BYTE:
        data = parse(export(browser, **params).data)
        fresh()
        expected = _oracle_rows(tricky, params, EXPORT_KEY)
        text = "".join(
            csv_chunks(data.header, expected, preamble=data.preamble, bom="excel" in params)
        )
        assert data.text == text, params


# --------------------------------------------------------------------------- rate limit


@pytest.fixture
def clock(monkeypatch):
    """Stop the server's clock (audit events and exports read it), then move it forward by
    hand: no sleeping, and every time in the test is exact."""
    stopped, offset = now_utc(), timedelta(0)

    def moved():
        return stopped + offset

    def forward(**kwargs):
        nonlocal offset
        offset += timedelta(**kwargs)

    monkeypatch.setattr(clinic_log.audit, "now_utc", moved)
    monkeypatch.setattr(services, "now_utc", moved)
    return forward


def test_exports_past_the_limit_get_429_until_the_minute_has_passed(
    north, world, app, add_assessment, login, clock
):
    app.config["EXPORTS_PER_MINUTE"] = 3
    add_assessment(world["patient_n"], world["clin_n"])
    for params in ({}, {"layout": "wide", "scale": "cows"}, {"excel": "1"}):
        assert export(north, **params).status_code == 200
    refused = export(north, layout="wide", scale="cows", site="NORTH")
    assert refused.status_code == 429
    _assert_no_export_data(refused, world)
    assert refused.mimetype == "text/plain"
    # All three at the same instant (the clock stands still): a place is free in a minute.
    assert refused.headers["Retry-After"] == "60"
    assert refused.get_data(as_text=True) == (
        "Too many exports: each user may start 3 a minute. Try again in 60 seconds.\n"
    )
    assert len(audit_events("export")) == 3
    (event,) = audit_events("export_rate_limited")
    assert (event.user_id, event.entity, event.site_id) == (
        world["clin_n"].id, "export", world["north"].id,
    )  # fmt: skip
    details = json.loads(event.details)
    assert (details["limit_per_minute"], details["retry_after_seconds"]) == (3, 60)
    assert (details["layout"], details["scale"], details["site"]) == ("wide", "cows", "NORTH")

    # Each user has their own count.
    assert export(login("sup.north")).status_code == 200
    # A second before the minute is over: still refused, and told to wait that second.
    clock(seconds=59)
    early = export(north)
    assert (early.status_code, early.headers["Retry-After"]) == (429, "1")
    # The minute is over: the three have left the window, three more may start.
    clock(seconds=1)
    allowed = [export(north) for _ in range(3)]
    assert [r.status_code for r in allowed] == [200] * 3 and parse(allowed[0].data).rows
    assert export(north).headers["Retry-After"] == "60"
    assert len(audit_events("export")) == 7
    assert len(audit_events("export_rate_limited")) == 3


def test_the_limit_holds_across_workers(north, world, app, add_assessment):
    """Workers share nothing but the database: another app on it sees the same count."""
    app.config["EXPORTS_PER_MINUTE"] = 3
    add_assessment(world["patient_n"], world["clin_n"])
    other = create_app(
        {key: app.config[key] for key in ("TESTING", "DATABASE_URL", "SECRET_KEY")}
        | {"INSTANCE_PATH": app.instance_path, "PASSWORD_HASH_METHOD": "scrypt:1024:8:1"}
    )
    other.test_client_class = IsolatedClient
    other.config["EXPORTS_PER_MINUTE"] = 3
    worker = Browser(other.test_client())
    worker.login("clin.north")
    try:
        statuses = [export(b).status_code for b in (north, worker, north, worker, north)]
    finally:
        with other.app_context():
            db.engine.dispose()
    assert statuses == [200, 200, 200, 429, 429]
    assert len(audit_events("export")) == 3


def test_the_command_line_and_the_dictionary_are_not_limited(
    north, world, app, runner, tmp_path, add_assessment
):
    app.config["EXPORTS_PER_MINUTE"] = 1
    add_assessment(world["patient_n"], world["clin_n"])
    for n in range(3):
        cli_ok(runner, "--user", "clin.north", "-o", str(tmp_path / f"{n}.csv"))
    assert len(audit_events("export")) == 3
    for _ in range(3):
        assert north.get("/exports/dictionary.csv").status_code == 200
    # The person's exports from the command line count for the web: data left in their name.
    assert export(north).status_code == 429
    assert audit_events("export_rate_limited")


def test_refused_and_bodyless_requests_do_not_count(north, world, app, add_assessment):
    app.config["EXPORTS_PER_MINUTE"] = 1
    add_assessment(world["patient_n"], world["clin_n"])
    for _ in range(3):
        assert export(north, layout="tall").status_code == 400
        assert export(north, site="SOUTH").status_code == 404
        assert north.client.head(URL).status_code == 200
    assert export(north).status_code == 200
    assert export(north).status_code == 429


@pytest.mark.parametrize("value", [0, -1, "many", True, 2_000_000])
def test_the_export_limit_is_checked_at_start_up(tmp_path, value):
    with pytest.raises(ConfigError, match="CLINIC_LOG_EXPORTS_PER_MINUTE"):
        create_app(_bare_config(tmp_path) | {"EXPORTS_PER_MINUTE": value})


def test_the_export_limit_is_20_unless_set(tmp_path, monkeypatch):
    assert create_app(_bare_config(tmp_path)).config["EXPORTS_PER_MINUTE"] == 20
    monkeypatch.setenv("CLINIC_LOG_EXPORTS_PER_MINUTE", "5")
    assert create_app(_bare_config(tmp_path)).config["EXPORTS_PER_MINUTE"] == 5


def _bare_config(tmp_path) -> dict:
    return {
        "TESTING": True,
        "INSTANCE_PATH": str(tmp_path / "instance"),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'config.sqlite3'}",
        "SECRET_KEY": "test-secret-key-" + "x" * 40,
    }


# --------------------------------------------------------------------------- cross-site starts

CROSS_SITE_REFUSAL = "This export was not started"


@pytest.mark.parametrize("fetch_site", ["cross-site", "same-site", "CROSS-SITE", "nonsense"])
def test_a_link_from_another_site_starts_no_export(north, world, app, add_assessment, fetch_site):
    """SameSite=Lax sends the session cookie with a top-level GET from any site: a link or a
    redirect elsewhere must not download data in the user's name, spend their export limit or
    leave a refusal about another site's patient under their name."""
    app.config["EXPORTS_PER_MINUTE"] = 1
    add_assessment(world["patient_n"], world["clin_n"])
    asked = (
        {},
        {"profile": "deidentified", "layout": "wide", "scale": "cows"},
        {"patient": world["patient_s"].id},  # another site's patient: not even refused as theirs
        {"layout": "tall"},
    )
    for params in asked:
        for accept in ({}, BROWSER_ACCEPT):
            response = north.get(
                URL, query_string=params, headers={"Sec-Fetch-Site": fetch_site, **accept}
            )
            assert response.status_code == 403, (params, response.status_code)
            assert response.mimetype == "text/plain"
            assert CROSS_SITE_REFUSAL in response.get_data(as_text=True)
            _assert_no_export_data(response, world)
    assert audit_events("export") == [] and audit_events("access_refused") == []
    refused = audit_events("export_refused_cross_site")
    assert len(refused) == len(asked) * 2
    for event in refused:
        assert (event.user_id, event.entity) == (world["clin_n"].id, "export")
        assert event.patient_id is None
        details = json.loads(event.details)
        assert details["sec_fetch_site"] == fetch_site and details["path"] == URL
    # Nothing of the user's limit was spent: their own export still starts.
    own = north.get(URL, headers={"Sec-Fetch-Site": "same-origin"})
    assert own.status_code == 200 and parse(own.data).rows


def test_the_export_page_a_typed_address_and_scripts_still_export(
    north, world, app, add_assessment
):
    app.config["EXPORTS_PER_MINUTE"] = 100
    add_assessment(world["patient_n"], world["clin_n"])
    # same-origin: the export page's own form; none: a typed address or a bookmark; no header
    # at all: scripts and browsers that do not send it.
    for headers in ({"Sec-Fetch-Site": "same-origin"}, {"Sec-Fetch-Site": "none"}, {}):
        response = north.get(URL, headers=headers)
        assert response.status_code == 200, headers
        assert parse(response.data).rows
    # The dictionary holds no clinical data and is never audited: a link to it is harmless.
    linked = north.get("/exports/dictionary.csv", headers={"Sec-Fetch-Site": "cross-site"})
    assert linked.status_code == 200
    assert len(audit_events("export")) == 3


def test_control_characters_never_split_or_hide_in_a_provenance_line(north, world, make_user):
    """A TAB (or any other control or line-separator character) in a value a provenance line
    quotes (a patient's identifier, the user's name) is written as a space: each line stays one
    comment line for every reader, as each cell stays one cell."""
    awkward = "N\t7\x0b8\x0c9\x1c0\x1d1\x1e2\x85 3\u2028 4\u2029 5\x7f6\x1b[31m"
    begin_write(db.session)
    patient = Patient(
        site=world["north"], identifier=awkward, identifier_key=awkward.casefold(),
        created_by=world["clin_n"],
    )  # fmt: skip
    db.session.add(patient)
    db.session.add(
        Episode(
            patient=patient, started_at=now_utc() - timedelta(days=1), substance_context="opioid",
            created_by=world["clin_n"],
        )
    )  # fmt: skip
    world["clin_n"].display_name = "Clin\tNorth\u2028Two"
    db.session.commit()
    text = export(north, patient=patient.id).get_data(as_text=True)
    head = text.split('"patient_identifier"', 1)[0]
    lines = head.split("\r\n")[:-1]
    assert all(line.startswith("# ") for line in lines)
    assert head.splitlines() == lines  # no reader finds a line break where there is none
    for line in lines:
        assert not re.search(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]", line), repr(line)
    assert "patient=N 7 8 9 0 1 2  3  4  5 6 [31m" in head
    assert "generated_by: clin.north (Clin North Two)" in head
