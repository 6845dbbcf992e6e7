"""Choosing an export's patient by identifier, as a clinician types it on the Exports page.

The identifier is looked up only among the patients of the sites the export covers. One that
matches none there is a typing mistake next to the field, never an "access refused" against
the clinician: another site's identifier gets exactly the same answer as one nobody has, and
nothing about that other site is read or written. The file's name says which profile and
which patient it holds, without the identifier itself.
"""

from __future__ import annotations

import csv
import json
import re
from datetime import timedelta

import pytest
from pages import field_errors, input_val, text_of
from sqlalchemy import select

from clinic_log.database import now_utc
from clinic_log.extensions import db
from clinic_log.models import AuditEvent
from clinic_log.patients.services import create_patient

URL = "/exports/assessments.csv"
HTML = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
UNKNOWN = "No patient with this identifier at your sites. Check it, or leave it empty for all."


def events(*actions: str) -> list[AuditEvent]:
    db.session.commit()
    return db.session.scalars(
        select(AuditEvent).where(AuditEvent.action.in_(actions)).order_by(AuditEvent.id)
    ).all()


def filename(response) -> str:
    match = re.fullmatch(r'attachment; filename="([^"]+)"', response.headers["Content-Disposition"])
    assert match, response.headers["Content-Disposition"]
    return match.group(1)


def ids_in(response) -> set[str]:
    text = response.get_data(as_text=True)
    lines = [line for line in text.splitlines() if not line.startswith("#")]
    return {row["patient_identifier"] for row in csv.DictReader(lines)}


@pytest.fixture
def entries(world, add_assessment):
    """One COWS for each world patient, and a second North patient with one too."""
    other = create_patient(
        world["clin_n"], world["north"], "N-002", None, now_utc() - timedelta(days=2), "opioid", ""
    )
    for patient in (world["patient_n"], world["patient_s"], other):
        user = world["clin_s"] if patient is world["patient_s"] else world["clin_n"]
        add_assessment(patient, user)
    return {"other_n": other}


@pytest.fixture
def north(world, login, app):
    app.config["EXPORTS_PER_MINUTE"] = 1000
    return login("clin.north")


def test_the_form_asks_for_the_identifier_not_the_address_number(north):
    page = north.get("/exports/")
    body = text_of(page)
    assert '<label for="patient_identifier">Patient identifier (optional)</label>' in body
    assert 'name="patient_identifier"' in body
    assert "address" not in body


def test_an_identifier_chooses_the_patient_as_identifiers_compare(north, world, entries):
    for typed in ("N-001", "n-001", "  N-001 ", "Ｎ-001"):  # case, spaces, full-width N
        response = north.get(URL, query_string={"patient_identifier": typed})
        assert response.status_code == 200, text_of(response)[:300]
        assert ids_in(response) == {"N-001"}
    (event, *_) = events("export")
    assert event.patient_id == world["patient_n"].id
    assert json.loads(event.details)["patient"] == "N-001"


def test_an_unknown_identifier_is_a_message_next_to_the_field(north, world, entries):
    response = north.get(URL, query_string={"patient_identifier": "N-999"}, headers=HTML)
    assert response.status_code == 400 and response.mimetype == "text/html"
    assert field_errors(response, "patient_identifier") == UNKNOWN
    assert input_val(response, "patient_identifier") == "N-999"  # kept as typed
    assert 'aria-invalid="true"' in text_of(response)
    assert events("access_refused", "export") == []
    # A script gets the same message as plain text.
    plain = north.get(URL, query_string={"patient_identifier": "N-999"})
    assert (plain.status_code, plain.mimetype) == (400, "text/plain")
    assert plain.get_data(as_text=True) == UNKNOWN + "\n"


def test_another_sites_identifier_is_answered_as_an_unknown_one(north, world, entries):
    """Nothing tells S-001 (a South patient) from an identifier nobody has, and the lookup is
    not a refusal: it never reached past the clinician's own sites, so South's trail and the
    clinician's hold nothing about it."""
    before = db.session.scalar(select(db.func.count(AuditEvent.id)))
    answers = []
    for typed in ("S-001", "S-999"):
        response = north.get(URL, query_string={"patient_identifier": typed}, headers=HTML)
        answers.append((response.status_code, text_of(response).replace(typed, "TYPED")))
        plain = north.get(URL, query_string={"patient_identifier": typed})
        answers.append((plain.status_code, plain.get_data(as_text=True)))
    assert answers[0] == answers[2] and answers[1] == answers[3]
    assert answers[0][0] == 400
    db.session.commit()
    # Nothing at all was written: no refusal at South, none without a site, no export.
    assert db.session.scalar(select(db.func.count(AuditEvent.id))) == before


def test_an_identifier_at_two_of_the_users_sites_asks_for_the_site(
    world, make_user, login, app, add_assessment
):
    app.config["EXPORTS_PER_MINUTE"] = 1000
    both = make_user("clin.both", "clinician", ["NORTH", "SOUTH"])
    twin = create_patient(
        both, world["south"], "N-001", None, now_utc() - timedelta(days=2), "kratom", ""
    )
    add_assessment(world["patient_n"], both)
    add_assessment(twin, both)
    browser = login("clin.both")
    response = browser.get(URL, query_string={"patient_identifier": "N-001"}, headers=HTML)
    assert response.status_code == 400
    assert field_errors(response, "site") == (
        "Patient identifier N-001 is used at NORTH and SOUTH: choose the site."
    )
    assert input_val(response, "patient_identifier") == "N-001"
    assert events("access_refused", "export") == []
    chosen = browser.get(URL, query_string={"patient_identifier": "N-001", "site": "SOUTH"})
    assert chosen.status_code == 200
    (event,) = events("export")
    assert (event.patient_id, event.site_id) == (twin.id, world["south"].id)


def test_a_number_and_an_identifier_of_different_patients_are_refused(north, world, entries):
    response = north.get(
        URL,
        query_string={"patient": world["patient_n"].id, "patient_identifier": "N-002"},
        headers=HTML,
    )
    assert response.status_code == 400
    assert field_errors(response, "patient_identifier") == (
        "This identifier is not the patient chosen by number: leave one of them empty."
    )
    same = north.get(
        URL, query_string={"patient": world["patient_n"].id, "patient_identifier": "n-001"}
    )
    assert same.status_code == 200 and ids_in(same) == {"N-001"}


@pytest.mark.parametrize(
    "typed",
    ["N-001\x07", "\x1bN-001", "\u200bN-001", "N" * 65, "9" * 5000, "%", "_", "N-00%", "N-00_"],
)
def test_odd_identifiers_are_unknown_never_an_error(north, entries, typed):
    response = north.get(URL, query_string={"patient_identifier": typed}, headers=HTML)
    assert response.status_code == 400
    assert field_errors(response, "patient_identifier") == UNKNOWN
    assert events("access_refused", "export") == []


def test_file_names_say_the_profile_and_the_patient_without_the_identifier(north, world, entries):
    def name(**params) -> str:
        response = north.get(URL, query_string={"layout": "wide", "scale": "cows", **params})
        assert response.status_code == 200, text_of(response)[:300]
        return filename(response)

    pid, other_id = world["patient_n"].id, entries["other_n"].id
    identified = name(patient_identifier="N-001")
    deidentified = name(patient_identifier="N-001", profile="deidentified")
    assert identified == f"clinic_log-all-sites-patient-{pid}-identified-wide-cows.csv"
    assert re.fullmatch(
        r"clinic_log-all-sites-P-[0-9a-f]{16}-deidentified-wide-cows\.csv", deidentified
    ), deidentified
    other = name(patient_identifier="N-002")
    other_deidentified = name(patient_identifier="N-002", profile="deidentified")
    everyone = name(site="NORTH")
    everyone_deidentified = name(site="NORTH", profile="deidentified")
    assert everyone == "clinic_log-NORTH-all-patients-identified-wide-cows.csv"
    assert everyone_deidentified == "clinic_log-NORTH-all-patients-deidentified-wide-cows.csv"
    names = [identified, deidentified, other, other_deidentified, everyone, everyone_deidentified]
    assert len(set(names)) == len(names)
    for each in names:
        assert "N-001" not in each and "N-002" not in each  # identifiers are PHI
    # The de-identified file names its pseudonym, never the row number that links it back.
    for each in (deidentified, other_deidentified):
        assert f"patient-{pid}" not in each and f"patient-{other_id}" not in each
    # The pseudonym in the name is the one in the file.
    response = north.get(
        URL, query_string={"patient_identifier": "N-001", "profile": "deidentified"}
    )
    pseudonym = re.search(r"P-[0-9a-f]{16}", filename(response)).group(0)
    assert pseudonym in response.get_data(as_text=True)


def test_flask_export_takes_a_patient_identifier(world, entries, runner, tmp_path):
    target = tmp_path / "one.csv"
    result = runner.invoke(
        args=["export", "--user", "clin.north", "--patient-identifier", "n-001", "-o", str(target)]
    )
    assert result.exit_code == 0, result.output
    assert "patient=N-001" in target.read_text()
    assert ",N-002," not in target.read_text()
    unknown = runner.invoke(
        args=["export", "--user", "clin.north", "--patient-identifier", "S-001", "-o", str(target)]
    )
    assert unknown.exit_code != 0 and UNKNOWN in unknown.output
