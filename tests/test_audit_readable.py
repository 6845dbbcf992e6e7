"""The audit trail reads like a record of the ward: the "what" column names the patient (when
they are at one of the viewer's own sites) and the scale and time of an entry, and the chart
views of one tracker visit are one line, not six.

Nothing about the events changes: every chart view is still its own event in the table and in
the hash chain; only the page groups them. A patient reached through an emergency grant, or of
another site, is never named on the page, whatever an event points at.
"""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime, timedelta

import pytest
from pages import readable_text
from sqlalchemy import func, select

from clinic_log import audit
from clinic_log.admin import services as admin_services
from clinic_log.auditlog.services import AuditFilter, visible_events
from clinic_log.database import begin_write, now_utc
from clinic_log.extensions import db
from clinic_log.models import AuditEvent
from clinic_log.patients.services import create_patient
from clinic_log.timeutil import format_local

REASON = "Night cover for South Clinic while its own supervisor is away"


def lines(page) -> list[dict[str, str]]:
    """Each line of the audit table as a person reads it: when, who, action, what."""
    body = re.search(
        r'<table class="data audit">.*?<tbody>(.*?)</tbody>', page.get_data(as_text=True), re.DOTALL
    ).group(1)
    found = []
    for row in re.findall(r"<tr[^>]*>(.*?)</tr>", body, re.DOTALL):
        cells = [
            # Inline markup (a link, a token kept whole) is part of the text around it.
            " ".join(
                html.unescape(
                    re.sub(r"<[^>]+>", " ", re.sub(r"</?(span|a)\b[^>]*>", "", cell))
                ).split()
            )
            for cell in re.findall(r"<td[^>]*>(.*?)</td>", row, re.DOTALL)
        ]
        if len(cells) == 6:
            found.append(dict(zip(("when", "who", "action", "what"), cells, strict=False)))
    return found


def table_html(page) -> str:
    return page.get_data(as_text=True).split('<table class="data audit">', 1)[1]


def chart_urls(patient_id: int, scales=("cows", "sows", "gad7")) -> list[str]:
    """The charts a tracker of these scales asks for: each scale's trend and item heatmap."""
    return [
        f"/patients/{patient_id}/charts/{key}{kind}.svg"
        for key in scales
        for kind in ("", "/items")
    ]


def count_events(action: str) -> int:
    db.session.commit()
    return db.session.scalar(
        select(func.count()).select_from(AuditEvent).where(AuditEvent.action == action)
    )


def at_fixed_time(monkeypatch, when: datetime) -> None:
    monkeypatch.setattr(audit, "now_utc", lambda: when)


# --------------------------------------------------------------------------- naming


def test_the_what_column_names_the_identifier_scale_and_local_time_of_an_entry(
    world, add_assessment, login, make_user
):
    make_user("sup.both", "supervisor", ["NORTH", "SOUTH"])
    observed = now_utc().replace(second=0, microsecond=0) - timedelta(hours=3)
    entry_n = add_assessment(world["patient_n"], world["clin_n"], "cows", observed_at=observed)
    entry_s = add_assessment(world["patient_s"], world["clin_s"], "gad7", observed_at=observed)
    entry_n_id, entry_s_id = entry_n.id, entry_s.id
    london = format_local(observed, "Europe/London")
    new_york = format_local(observed, "America/New_York")
    assert london != new_york

    page = login("sup.both").get("/audit/")
    assert page.status_code == 200
    shown = {(line["who"], line["action"]): line["what"] for line in lines(page)}
    north_entry = shown[("clin.north", "assessment create")]
    assert "N-001" in north_entry and "COWS" in north_entry and london in north_entry
    assert f"#{entry_n_id}" in north_entry
    # Each entry's time in its own site's timezone.
    south_entry = shown[("clin.south", "assessment create")]
    assert "S-001" in south_entry and "GAD-7" in south_entry and new_york in south_entry
    assert "N-001" in shown[("clin.north", "patient create")]
    assert f'href="/assessments/{entry_n_id}/history"' in table_html(page)
    assert f'href="/assessments/{entry_s_id}/history"' in table_html(page)
    assert "patient #" not in readable_text(page)


def test_a_patient_of_a_grant_site_or_another_site_is_never_named(
    app, world, add_assessment, login, monkeypatch
):
    """North's supervisor, with an emergency grant to South, reads North's trail. Events of
    North that point at South's patient or entry (as an old or misfiled event might) show the
    ids they showed before, never South's identifier, scale or time; North's own are named."""
    observed = now_utc().replace(second=0, microsecond=0) - timedelta(hours=5)
    add_assessment(world["patient_n"], world["clin_n"], "cows", observed_at=observed)
    entry_s = add_assessment(world["patient_s"], world["clin_s"], "gad7", observed_at=observed)
    admin_services.grant_emergency_access(world["admin"], world["sup_n"], "SOUTH", 4, REASON)
    south_patient, south_entry, north = world["patient_s"].id, entry_s.id, world["north"].id
    clin_n = world["clin_n"]
    begin_write(db.session)
    audit.record(
        "probe",
        user=clin_n,
        entity="patient",
        entity_id=south_patient,
        site_id=north,
        patient_id=south_patient,
    )
    audit.record("probe", user=clin_n, entity="assessment", entity_id=south_entry, site_id=north)
    audit.record(
        "probe", user=clin_n, entity="episode", entity_id=1, site_id=north, patient_id=south_patient
    )
    for what in ("gad7 trend ..", "gad7 items .."):
        audit.record(
            "view_chart",
            user=clin_n,
            entity="patient",
            entity_id=south_patient,
            site_id=north,
            patient_id=south_patient,
            details={"what": what},
        )
    db.session.commit()

    sup = login("sup.north")
    assert sup.get(f"/patients/{south_patient}").status_code == 200  # the grant is in force
    page = sup.get("/audit/")
    assert page.status_code == 200
    table = html.unescape(table_html(page))
    assert "S-001" not in table and "s-001" not in table.lower()
    assert "GAD-7" not in table
    assert format_local(observed, "America/New_York") not in table
    whats = [line["what"] for line in lines(page) if line["action"] == "probe"]
    assert f"patient #{south_patient}" in whats and f"assessment #{south_entry}" in whats
    # North's own patient and entry are named on the same page.
    assert "N-001" in table and format_local(observed, "Europe/London") in table
    # The trail of another site is not the grant's: South's patient filter finds nothing.
    assert "No events match" in readable_text(sup.get("/audit/?patient=S-001"))


# --------------------------------------------------------------------------- one visit, one line


@pytest.fixture
def charted(world, add_assessment):
    """North's patient with a COWS, a SOWS and a GAD-7 entry, and a second North patient."""
    for key in ("cows", "sows", "gad7"):
        add_assessment(world["patient_n"], world["clin_n"], key)
    second = create_patient(
        world["clin_n"], world["north"], "N-002", None, now_utc() - timedelta(days=1), "opioid", ""
    )
    add_assessment(second, world["clin_n"], "cows")
    return {"n1": world["patient_n"].id, "n2": second.id}


def test_one_tracker_visit_of_six_chart_views_is_one_line_and_six_events(
    world, charted, login, runner
):
    clinician = login("clin.north")
    assert clinician.get(f"/patients/{charted['n1']}/tracker").status_code == 200
    for url in chart_urls(charted["n1"]):
        assert clinician.get(url).status_code == 200
    assert count_events("view_chart") == 6

    sup = login("sup.north")
    for query in ("", "?action=view_chart", "?patient=N-001", "?user=clin.north"):
        page = sup.get(f"/audit/{query}")
        assert page.status_code == 200
        charts = [line for line in lines(page) if line["action"] == "view chart"]
        assert len(charts) == 1, query
        what = charts[0]["what"]
        assert what.startswith("viewed 6 charts of N-001: COWS, SOWS, GAD-7"), what
        # Each view can still be read on its own, inside the line.
        assert what.count("trend") == 3 and what.count("items") == 3
    # The page says what it counts: events, and the lines they are shown as.
    page = sup.get("/audit/")
    db.session.commit()
    total = db.session.scalar(
        select(func.count()).select_from(visible_events(world["sup_n"], AuditFilter()).subquery())
    )
    shown = lines(page)
    assert len(shown) == total - 5  # six events, one line
    assert f"{total} events shown as {len(shown)} lines" in readable_text(page)

    # The events themselves are untouched: six rows, and the chain verifies over all of them.
    assert count_events("view_chart") == 6
    result = runner.invoke(args=["audit", "verify"])
    assert result.exit_code == 0, result.output
    everything = db.session.scalar(select(func.count()).select_from(AuditEvent))
    assert f"{everything} events verified" in result.output


def test_views_of_different_patients_or_with_a_refusal_between_are_separate_lines(charted, login):
    clinician = login("clin.north")
    for url in chart_urls(charted["n1"], ("cows",)):
        clinician.get(url)
    for url in chart_urls(charted["n2"], ("cows",)):
        clinician.get(url)
    assert clinician.get("/audit/").status_code == 403  # refused, and written to the trail
    for url in chart_urls(charted["n1"], ("sows",)):
        clinician.get(url)
    assert count_events("view_chart") == 6

    sup = login("sup.north")
    page = sup.get("/audit/")
    shown = [(line["action"], line["what"]) for line in lines(page) if line["who"] == "clin.north"]
    shown = shown[:4]
    assert [action for action, _ in shown] == [
        "view chart",
        "access refused",
        "view chart",
        "view chart",
    ]
    assert shown[0][1].startswith("viewed 2 charts of N-001: SOWS")
    assert shown[2][1].startswith("viewed 2 charts of N-002: COWS")
    assert shown[3][1].startswith("viewed 2 charts of N-001: COWS")
    # With only chart views listed, the refusal between them still keeps them apart.
    charts = [line["what"] for line in lines(sup.get("/audit/?action=view_chart"))]
    assert len(charts) == 3
    assert charts[0].startswith("viewed 2 charts of N-001: SOWS")
    assert charts[2].startswith("viewed 2 charts of N-001: COWS")


def test_chart_views_far_apart_in_time_are_separate_lines(world, login, monkeypatch):
    clin_n, patient, north = world["clin_n"], world["patient_n"].id, world["north"].id
    start = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
    steady = [(minutes, "gad7 trend ..") for minutes in (60, 64, 68, 72, 76)]  # 16 minutes
    for minutes, what in (
        (0, "cows trend .."),
        (1, "cows items .."),
        (40, "sows trend .."),
    ) + tuple(steady):
        at_fixed_time(monkeypatch, start + timedelta(minutes=minutes))
        begin_write(db.session)
        audit.record(
            "view_chart",
            user=clin_n,
            entity="patient",
            entity_id=patient,
            site_id=north,
            patient_id=patient,
            details={"what": what},
        )
        db.session.commit()
    monkeypatch.undo()
    charts = [line["what"] for line in lines(login("sup.north").get("/audit/?action=view_chart"))]
    # A view every four minutes is not one visit for ever: a visit spans 15 minutes at most.
    assert charts[0].startswith("viewed 4 charts of N-001: GAD-7")
    assert charts[1].startswith("patient N-001") and "GAD-7 trend" in charts[1]
    assert charts[2].startswith("patient N-001") and "SOWS trend" in charts[2]
    assert charts[3].startswith("viewed 2 charts of N-001: COWS")
    assert len(charts) == 4


# --------------------------------------------------------------------------- cost


def test_a_page_costs_the_same_number_of_statements_however_many_patients_it_names(
    world, add_assessment, login, count_queries, make_user
):
    sup = login("sup.north")

    def statements() -> int:
        with count_queries() as counted:
            assert sup.get("/audit/").status_code == 200
        return len(counted)

    few = statements()
    clinician = login("clin.north")
    for number in range(2, 12):
        patient = create_patient(
            world["clin_n"],
            world["north"],
            f"N-{number:03}",
            None,
            now_utc() - timedelta(days=1),
            "opioid",
            "",
        )
        add_assessment(patient, world["clin_n"], "cows")
        add_assessment(patient, world["clin_n"], "gad7")
        for url in chart_urls(patient.id, ("cows",)):
            clinician.get(url)
        clinician.get(f"/patients/{patient.id}")
    assert clinician.get("/audit/").status_code == 403
    many = statements()
    page = sup.get("/audit/")
    assert "N-011" in readable_text(page) and "viewed 2 charts of N-011" in readable_text(page)
    # The page, its count, the action list and the names: a fixed handful, no query per row.
    assert many <= few + 3, (few, many)
    assert many <= 10
