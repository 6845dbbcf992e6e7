"""Security catalogue R03 and R04: one site's audit trail names no other site's patient, and
exports under an emergency grant are uses of that grant.

A supervisor sees the events of their own sites and the site-less events (logins, refusals of
nothing in particular) of the people who work there. So every event about a patient, an entry,
an episode or an export of one site carries that site; an event spanning sites is written once
per site; and a site-less event names no patient at all. The checks below read the trail the
way the page does (``visible_events``) and look for any id or identifier of the other site's
patients, entries and episodes in every column and in the details.

Driven over HTTP (and ``flask export``) by a clinician who belongs to both sites.
"""

from __future__ import annotations

import json
import re
import time
from datetime import timedelta

import pytest
from pages import readable_text as text_of
from sqlalchemy import select, update

from clinic_log import audit
from clinic_log.auditlog.services import AuditFilter, visible_events
from clinic_log.database import begin_write, now_utc
from clinic_log.extensions import db
from clinic_log.models import Assessment, AuditEvent, Episode, Patient, SiteAccessGrant, User

REASON = "Weekend cover for South Clinic while its own clinician is away"


@pytest.fixture
def people(world, make_user, add_assessment):
    """The world, a clinician and a supervisor of both sites, South's supervisor, and one
    entry at each site."""
    make_user("clin.both", "clinician", ["NORTH", "SOUTH"])
    make_user("sup.both", "supervisor", ["NORTH", "SOUTH"])
    make_user("sup.south", "supervisor", ["SOUTH"])
    entry_n = add_assessment(world["patient_n"], world["clin_n"])  # COWS: 11 items
    entry_s = add_assessment(world["patient_s"], world["clin_s"], scale_key="gad7")  # 7 items
    return {
        "north": world["north"].id,
        "south": world["south"].id,
        "patient_n": world["patient_n"].id,
        "patient_s": world["patient_s"].id,
        "entry_n": entry_n.id,
        "entry_s": entry_s.id,
        "clin_n": world["clin_n"].id,
    }


def rows(action: str) -> list[AuditEvent]:
    db.session.commit()  # see what the requests committed
    return list(
        db.session.scalars(
            select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)
        )
    )


def details(event: AuditEvent) -> dict:
    return json.loads(event.details)


def leaks(viewer: str, site_id: int) -> list[str]:
    """What ``viewer``'s trail tells of the patients, entries and episodes of ``site_id``."""
    db.session.commit()
    patients = dict(
        db.session.execute(
            select(Patient.id, Patient.identifier).where(Patient.site_id == site_id)
        ).all()
    )
    entries = set(
        db.session.scalars(
            select(Assessment.id).join(Assessment.patient).where(Patient.site_id == site_id)
        )
    )
    episodes = set(
        db.session.scalars(
            select(Episode.id).join(Episode.patient).where(Patient.site_id == site_id)
        )
    )
    named = {"patient": set(patients), "assessment": entries, "episode": episodes}
    user = db.session.scalar(select(User).where(User.username == viewer))
    found = []
    for event in db.session.scalars(visible_events(user, AuditFilter())):
        where = f"event {event.id} {event.action}"
        if event.site_id == site_id or event.patient_id in patients:
            found.append(f"{where}: stored at the site or with its patient")
        if event.entity in named and event.entity_id in named[event.entity]:
            found.append(f"{where}: names {event.entity} {event.entity_id}")
        if any(identifier in event.details for identifier in patients.values()):
            found.append(f"{where}: an identifier in {event.details}")
        data = details(event)
        for key, value in re.findall(
            r"/(patients|assessments|episodes)/(\d+)", data.get("path", "")
        ):
            if int(value) in named[key.rstrip("s")]:
                found.append(f"{where}: path {data['path']}")
        for key in ("patient", "replaces", "assessment"):
            if isinstance(data.get(key), int) and data[key] in patients.keys() | entries:
                found.append(f"{where}: {key} {data[key]}")
        if set(data.get("patients") or []) & set(patients):
            found.append(f"{where}: patients {data['patients']}")
    return found


def trail_table(browser, query: str = "") -> str:
    page = browser.get(f"/audit/{query}").get_data(as_text=True)
    return page.split('<table class="data audit">', 1)[1]


def action_choices(browser) -> set[str]:
    page = browser.get("/audit/").get_data(as_text=True)
    select_html = page.split('<select id="action"', 1)[1].split("</select>", 1)[0]
    return set(re.findall(r'<option value="([a-z_]+)"', select_html))


# --------------------------------------------------------------------------- exports (R03)


def test_R03_an_export_of_two_sites_is_stored_per_site_and_counted_once(app, people, login):
    app.config["EXPORTS_PER_MINUTE"] = 2
    both = login("clin.both")
    response = both.get("/exports/assessments.csv?layout=long")
    assert response.status_code == 200 and response.headers["X-Clinic-Log-Rows"] == "18"
    events = rows("export")
    assert sorted((e.site_id, details(e)["rows"]) for e in events) == sorted(
        [(people["north"], 11), (people["south"], 7)]
    )
    assert all(e.patient_id is None for e in events)
    assert len({details(e)["export_id"] for e in events}) == 1  # one export, tied together
    assert leaks("sup.north", people["south"]) == []
    assert leaks("sup.south", people["north"]) == []
    assert "S-001" not in trail_table(login("sup.north"))
    # The limit counts exports, not the lines each writes: a second passes, a third does not.
    assert both.get("/exports/assessments.csv?layout=long").status_code == 200
    assert both.get("/exports/assessments.csv?layout=long").status_code == 429
    assert len(rows("export")) == 4
    assert audit.verify_chain()[1] is None


def test_R03_an_export_of_one_patient_is_stored_at_that_patients_site(app, people, login):
    both = login("clin.both")
    response = both.get(f"/exports/assessments.csv?patient={people['patient_s']}")
    assert response.status_code == 200
    [event] = rows("export")
    assert (event.site_id, event.patient_id) == (people["south"], people["patient_s"])
    assert details(event)["patient"] == "S-001" and details(event)["rows"] == 7
    assert leaks("sup.north", people["south"]) == []
    assert "S-001" not in trail_table(login("sup.north"))
    assert "S-001" in trail_table(login("sup.south"))


def test_R03_the_command_line_export_is_stored_per_site_too(app, people, runner, tmp_path):
    result = runner.invoke(args=["export", "--user", "clin.both", "-o", str(tmp_path / "out.csv")])
    assert result.exit_code == 0, result.output
    events = rows("export")
    assert sorted(e.site_id for e in events) == sorted([people["north"], people["south"]])
    assert leaks("sup.north", people["south"]) == []


# --------------------------------------------------------------------------- refusals (R03)


def test_R03_a_refusal_on_another_sites_patient_entry_or_episode_is_that_sites(app, people, login):
    [episode_s] = db.session.scalars(
        select(Episode.id).where(Episode.patient_id == people["patient_s"])
    )
    clinician = login("clin.north")
    assert clinician.get(f"/patients/{people['patient_s']}").status_code == 404
    assert clinician.get(f"/assessments/{people['entry_s']}").status_code == 404
    end_url = f"/patients/{people['patient_n']}/episodes/{episode_s}/end"
    token = clinician.csrf_token(f"/patients/{people['patient_n']}")
    refused = clinician.post(end_url, {"csrf_token": token, "ended_at": "2026-01-01T10:00"})
    assert refused.status_code == 404
    assert clinician.get("/patients/987654").status_code == 404
    refusals = rows("access_refused")
    assert [(e.entity, e.site_id, e.patient_id) for e in refusals] == [
        ("patient", people["south"], people["patient_s"]),
        ("assessment", people["south"], people["patient_s"]),
        ("episode", people["south"], people["patient_s"]),
        ("patient", None, None),  # no such patient: no site to tell
    ]
    # The episode refusal's path also names North's patient: South's trail does not get it.
    assert str(people["patient_n"]) not in details(refusals[2])["path"].split("/episodes")[0]
    assert leaks("sup.south", people["north"]) == []
    assert leaks("sup.north", people["south"]) == []
    south_trail = text_of(login("sup.south").get("/audit/?action=access_refused"))
    assert south_trail.count("clin.north") == 3


def test_R03_a_refused_export_of_another_sites_patient_is_that_sites(app, people, login):
    clinician = login("clin.north")
    url = f"/exports/assessments.csv?patient={people['patient_s']}"
    assert clinician.get(url, headers={"Accept": "text/plain"}).status_code == 404
    assert clinician.get("/exports/assessments.csv?patient=987654").status_code == 404
    refused, missing = rows("access_refused")
    assert (refused.entity, refused.site_id, refused.patient_id) == (
        "export",
        people["south"],
        people["patient_s"],
    )
    assert (missing.site_id, missing.patient_id) == (None, None)
    assert leaks("sup.north", people["south"]) == []


def test_R03_a_refused_form_on_another_sites_patient_is_that_sites(app, people, login):
    """A POST refused for its CSRF token names the patient in its path."""
    both = login("clin.both")
    url = f"/patients/{people['patient_s']}/episodes/new"
    both.post(url, {"csrf_token": "forged", "substance_context": "opioid"})
    [event] = rows("csrf_refused")
    assert (event.site_id, event.patient_id) == (people["south"], people["patient_s"])
    assert leaks("sup.north", people["south"]) == []


def test_R03_a_refused_trend_sign_off_is_stored_at_the_patients_site(app, people, login):
    supervisor = login("sup.both")
    tracker = supervisor.get(f"/patients/{people['patient_s']}/tracker").get_data(as_text=True)
    shown = re.search(r'name="shown"[^>]*value="([^"]+)"', tracker).group(1)
    response = supervisor.post(
        f"/patients/{people['patient_s']}/tracker/sign",
        {"password": "not the password", "shown": shown},
        token_from=f"/patients/{people['patient_s']}/tracker",
    )
    assert response.status_code == 422
    [event] = rows("review_refused")
    assert (event.site_id, event.patient_id) == (people["south"], people["patient_s"])
    assert leaks("sup.north", people["south"]) == []


def test_R03_a_session_ending_on_another_sites_page_names_no_patient(
    app, people, login, monkeypatch
):
    real = time.time
    offset = [0.0]
    monkeypatch.setattr("clinic_log.auth.sessions.time.time", lambda: real() + offset[0])
    both = login("clin.both")
    offset[0] = 3 * 60 * 60
    assert both.get(f"/patients/{people['patient_s']}").status_code == 302
    [event] = rows("session_timeout")
    assert event.site_id is None and str(people["patient_s"]) not in details(event)["path"]
    assert leaks("sup.north", people["south"]) == []


# --------------------------------------------------------------------------- everything at once


def test_R03_nothing_a_two_site_user_does_at_south_reaches_norths_trail(app, people, login):
    both = login("clin.both")
    patient_s = people["patient_s"]
    for url in (
        f"/patients/{patient_s}",
        f"/patients/{patient_s}/tracker",
        f"/patients/{patient_s}/charts/gad7.png",
        f"/assessments/{people['entry_s']}",
        f"/assessments/{people['entry_s']}/history",
        "/exports/assessments.csv",
        f"/exports/assessments.csv?patient={patient_s}&scale=gad7&layout=wide",
        "/patients/",
    ):
        assert both.get(url).status_code == 200, url
    assert both.get("/audit/").status_code == 403
    supervisor = login("sup.both")
    for url in ("/review/", "/dashboard/", f"/review/?patient={patient_s}"):
        assert supervisor.get(url).status_code == 200, url
    assert leaks("sup.north", people["south"]) == []
    table = trail_table(login("sup.north"))
    assert "clin.both" in table and "sup.both" in table and "S-001" not in table
    # What South's supervisors see names no North patient either.
    assert leaks("sup.south", people["north"]) == []


# --------------------------------------------------------------------------- action filter (R03)


def test_R03_the_action_filter_offers_only_actions_at_the_viewers_sites(app, people, login, world):
    admin = login("admin.one")
    admin.post(
        f"/admin/users/{people['clin_n']}/emergency-access/new",
        {"site": "SOUTH", "hours": "4", "reason": REASON},
    )
    assert rows("emergency_access_grant")
    north = action_choices(login("sup.north"))
    assert "login_success" in north and "patient_create" in north
    assert "emergency_access_grant" not in north  # only ever at SOUTH
    assert "emergency_access_grant" in action_choices(login("sup.south"))


# --------------------------------------------------------------------------- grant exports (R04)


def _grant_to_south(login, people) -> int:
    admin = login("admin.one")
    response = admin.post(
        f"/admin/users/{people['clin_n']}/emergency-access/new",
        {"site": "SOUTH", "hours": "4", "reason": REASON},
    )
    assert response.status_code == 302
    db.session.commit()
    return db.session.scalar(select(SiteAccessGrant.id))


def _end(grant_id: int) -> None:
    db.session.commit()
    begin_write(db.session)
    ended = now_utc() - timedelta(minutes=5)
    db.session.execute(
        update(SiteAccessGrant)
        .where(SiteAccessGrant.id == grant_id)
        .values(granted_at=ended - timedelta(hours=4), expires_at=ended)
    )
    db.session.commit()


def test_R04_an_export_under_a_grant_is_a_use_of_the_grant_in_its_review(
    app, people, login, runner, tmp_path
):
    grant_id = _grant_to_south(login, people)
    clinician = login("clin.north")
    assert clinician.get("/exports/assessments.csv?site=SOUTH").status_code == 200
    assert clinician.get(f"/patients/{people['patient_s']}").status_code == 200
    assert clinician.get("/exports/assessments.csv?site=NORTH").status_code == 200
    result = runner.invoke(
        args=["export", "--user", "clin.north", "--site", "SOUTH", "--scale", "gad7",
              "-o", str(tmp_path / "out.csv")]
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    south_web, north, south_cli = rows("export")
    for event in (south_web, south_cli):
        assert event.site_id == people["south"]
        assert (details(event)["via"], details(event)["grant"]) == ("emergency_access", grant_id)
    assert "via" not in details(north) and "grant" not in details(north)

    reviewer = login("sup.south")
    queue = text_of(reviewer.get("/review/"))
    assert "S-001" in queue and "Exported: 2" in queue and "7 rows" in queue
    assert "Exported" not in text_of(login("sup.north").get("/review/"))
    _end(grant_id)
    response = reviewer.post(f"/review/emergency-access/{grant_id}/reviewed", token_from="/review/")
    assert response.status_code == 302
    [reviewed] = rows("emergency_access_review")
    assert details(reviewed)["patients_opened"] == [people["patient_s"]]
    assert details(reviewed)["exports"] == [south_web.id, south_cli.id]


def test_R04_a_grant_used_only_to_export_still_shows_its_exports(app, people, login):
    grant_id = _grant_to_south(login, people)
    clinician = login("clin.north")
    url = f"/exports/assessments.csv?site=SOUTH&patient={people['patient_s']}"
    assert clinician.get(url).status_code == 200
    [event] = rows("export")
    assert (event.site_id, event.patient_id) == (people["south"], people["patient_s"])
    assert details(event)["grant"] == grant_id
    queue = text_of(login("sup.south").get("/review/"))
    assert "Exported: 1" in queue and "S-001" in queue
