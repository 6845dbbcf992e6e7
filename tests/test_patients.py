"""Patients, their episodes and the patient pages, driven over HTTP as a clinician would.

Every request runs in its own application context (the conftest client sees to it): the ``world``
fixture keeps one app context pushed for the whole test, and Flask reuses a pushed context for
requests, which would share ``g`` (the logged-in user, the CSRF token) and the database session
between the test and every browser.
"""

from __future__ import annotations

import html
import json
import re
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from urllib.parse import parse_qs, urlsplit

import pytest
from conftest import PASSWORD, Browser
from pages import checked, field_errors, input_val, inputs, readable_text, text_of, textarea
from sqlalchemy import func, select

from clinic_log.database import now_utc
from clinic_log.extensions import db
from clinic_log.models import Assessment, AuditEvent, Episode, Patient
from clinic_log.patients import services
from clinic_log.patients.forms import PatientForm
from clinic_log.scales import load_scales
from clinic_log.timeutil import format_local, input_value, to_local

LONDON = "Europe/London"
NEW_YORK = "America/New_York"


# --------------------------------------------------------------------------- helpers


@pytest.fixture
def ids(world):
    """Plain ids of the world's objects, read before any request changes the database."""
    values = SimpleNamespace(
        north=world["north"].id,
        south=world["south"].id,
        pid_n=world["patient_n"].id,
        pid_s=world["patient_s"].id,
        ep_n=world["patient_n"].episodes[0].id,
        ep_s=world["patient_s"].episodes[0].id,
        ep_n_start=world["patient_n"].episodes[0].started_at,
        clin_n=world["clin_n"].id,
        sup_n=world["sup_n"].id,
        clin_s=world["clin_s"].id,
        admin=world["admin"].id,
    )
    db.session.commit()  # end the fixture session's read transaction
    return values


@pytest.fixture
def anonymous(app):
    return Browser(app.test_client())


class User(Browser):
    """A logged-in browser that keeps its session's CSRF token for the forms it sends."""

    _token = None

    def submit(self, url, data):
        if self._token is None:
            page = self.get("/", follow_redirects=True)
            self._token = inputs(page, "csrf_token")[0]["value"]
        return self.post(url, {"csrf_token": self._token, **data})


@pytest.fixture
def login(app, world):
    def _login(username):
        browser = User(app.test_client())
        browser.login(username)
        return browser

    return _login


def count(app, model) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(model))


# Security events a refused or session request leaves; they are not data changes.
SESSION_ACTIONS = ("login_success", "login_failure", "logout", "csrf_refused")


def counts(app) -> tuple[int, int, int, int]:
    """Rows of patients, episodes, assessments and audit events other than logging in/out
    and reading (a refused form may redirect to a page whose view is audited)."""
    with app.app_context():
        audit = db.session.scalar(
            select(func.count())
            .select_from(AuditEvent)
            .where(AuditEvent.action.not_in(SESSION_ACTIONS), AuditEvent.action.not_like("view_%"))
        )
    return (*(count(app, model) for model in (Patient, Episode, Assessment)), audit)


def audit_events(app, action):
    with app.app_context():
        rows = db.session.scalars(
            select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)
        ).all()
        return [
            SimpleNamespace(
                entity=e.entity,
                entity_id=e.entity_id,
                user_id=e.user_id,
                site_id=e.site_id,
                patient_id=e.patient_id,
                details=json.loads(e.details),
            )
            for e in rows
        ]


def listed_identifiers(page) -> list[str]:
    return [
        html.unescape(m)
        for m in re.findall(
            r'<th scope="row"><a [^>]*><bdi>(.*?)</bdi></a></th>', page.get_data(as_text=True)
        )
    ]


def timeline_rows(page) -> list[list[str]]:
    body = page.get_data(as_text=True)
    table = re.search(r'<table class="data timeline">(.*?)</table>', body, re.DOTALL)
    if table is None:
        return []
    rows = re.findall(r'<tr class="status-\w+">(.*?)</tr>', table.group(1), re.DOTALL)
    return [
        [
            " ".join(html.unescape(re.sub(r"<[^>]+>", " ", cell)).split())
            for cell in re.findall(r"<td[^>]*>(.*?)</td>", row, re.DOTALL)
        ]
        for row in rows
    ]


def local_now_input(tz, delta=timedelta(0)) -> str:
    return input_value(now_utc() + delta, tz)


def patient_form(site_id, identifier="NEW-1", /, **overrides):
    data = {
        "site_id": str(site_id),
        "identifier": identifier,
        "display_label": "Bed 4",
        "started_at": local_now_input(LONDON, -timedelta(hours=3)),
        "substance_context": "kratom",
        "episode_note": "Arrived from the emergency department",
    }
    data.update(overrides)
    return {key: value for key, value in data.items() if value is not None}


SCALES = load_scales()


def location_path(response) -> str:
    return urlsplit(response.headers["Location"]).path


# --------------------------------------------------------------------------- logging in


PAGES = [
    "/patients/",
    "/patients/new",
    "/patients/{pid}",
    "/patients/{pid}?page=2",
    "/patients/{pid}/episodes/new",
    "/patients/{pid}/assessments/new/cows",
    "/patients/{pid}/assessments/new/symptom_nrs",
    "/assessments/{aid}",
]


def test_anonymous_visitor_is_sent_to_login_for_every_page(
    app, ids, world, add_assessment, anonymous, subtests
):
    aid = add_assessment(world["patient_n"], world["clin_n"]).id
    before = counts(app)
    for page in PAGES:
        url = page.format(pid=ids.pid_n, aid=aid)
        with subtests.test(url=url):
            response = anonymous.get(url)
            assert response.status_code == 302
            target = urlsplit(response.headers["Location"])
            assert target.path == "/login"
            assert parse_qs(target.query)["next"] == [url]
            assert "N-001" not in response.get_data(as_text=True)
    with subtests.test("a POST to end an episode"):
        response = anonymous.post(
            f"/patients/{ids.pid_n}/episodes/{ids.ep_n}/end",
            {"ended_at": local_now_input(LONDON)},
            token_from="/login",
        )
        assert response.status_code == 302
        assert location_path(response) == "/login"
    assert counts(app) == before


def test_after_login_the_next_page_is_honoured(app, ids, subtests):
    for page in ["/patients/", "/patients/{pid}?page=1", "/patients/{pid}/assessments/new/cows"]:
        url = page.format(pid=ids.pid_n)
        with subtests.test(url=url):
            anonymous = Browser(app.test_client())
            login_url = anonymous.get(url).headers["Location"]

            response = anonymous.post(
                login_url, {"username": "clin.north", "password": PASSWORD}, token_from=login_url
            )

            assert response.status_code == 302
            assert response.headers["Location"] == url
            assert anonymous.get(url).status_code == 200


# --------------------------------------------------------------------------- patient list


def test_patient_list_shows_only_the_users_sites(
    world, ids, make_user, add_assessment, login, subtests
):
    make_user("clin.both", "clinician", ["NORTH", "SOUTH"])
    observed = now_utc() - timedelta(hours=1)
    add_assessment(world["patient_n"], world["clin_n"], observed_at=observed)
    add_assessment(world["patient_n"], world["clin_n"], observed_at=observed - timedelta(hours=1))
    for username, shown in [
        ("clin.north", ["N-001"]),
        ("sup.north", ["N-001"]),
        ("clin.south", ["S-001"]),
        ("clin.both", ["N-001", "S-001"]),
    ]:
        with subtests.test(username=username):
            page = login(username).get("/patients/")
            assert page.status_code == 200
            assert listed_identifiers(page) == shown
            for identifier in {"N-001", "S-001"} - set(shown):
                assert identifier not in page.get_data(as_text=True)
            if "N-001" in shown:
                # Open episode since, the latest withdrawal entry (tests/test_worklist.py
                # has the rest of each row).
                body = page.get_data(as_text=True)
                assert format_local(ids.ep_n_start, LONDON, "%m-%d %H:%M") in body
                assert format_local(observed, LONDON, "%m-%d %H:%M") in body


SEARCH_IDENTIFIERS = ["PCT%1", "PCTX1", "UND_1", "UNDX1", "back\\slash"]
EVERYONE_NORTH = ["N-001", *SEARCH_IDENTIFIERS]


def test_search_by_identifier(world, ids, login, subtests):
    for identifier in SEARCH_IDENTIFIERS:
        services.create_patient(
            world["clin_n"], world["north"], identifier, None, ids.ep_n_start, "opioid", ""
        )
    browser = login("clin.north")
    for query, expected in [
        ("N-001", ["N-001"]),
        ("n-00", ["N-001"]),  # case-insensitive
        ("001", ["N-001"]),  # substring
        ("pct", ["PCT%1", "PCTX1"]),
        ("%", ["PCT%1"]),  # a character, not a wildcard
        ("T%1", ["PCT%1"]),
        ("_", ["UND_1"]),  # a character, not a wildcard
        ("D_1", ["UND_1"]),
        ("\\", ["back\\slash"]),
        ("S-001", []),  # another site's patient is never found
        ("zzz", []),
        ("", EVERYONE_NORTH),
        ("   ", EVERYONE_NORTH),
    ]:
        with subtests.test(query=query):
            page = browser.get("/patients/", query_string={"q": query})
            assert page.status_code == 200
            assert sorted(listed_identifiers(page)) == sorted(expected)


def test_list_edge_cases(make_site, make_user, login, ids, subtests):
    browser = login("clin.north")
    with subtests.test("no patients at all"):
        make_site("EAST", "East Clinic", "Europe/London")
        make_user("clin.east", "clinician", ["EAST"])
        page = login("clin.east").get("/patients/")
        assert page.status_code == 200
        assert listed_identifiers(page) == []
        assert "No patients yet at your sites." in text_of(page)
        assert "Add the first patient" in text_of(page)
    with subtests.test("a search without match"):
        page = browser.get("/patients/?q=nothing-like-this")
        message = (
            "No patient at your sites has an identifier or label containing “nothing-like-this”."
        )
        assert message in text_of(page)
        assert "No patients yet" not in text_of(page)
    for length in (65, 1000):
        with subtests.test(length=length):
            page = browser.get("/patients/", query_string={"q": "N" * length})
            assert page.status_code == 200
            assert "Field cannot be longer than 64 characters." in text_of(page)
            # The refused query is not applied: the list is the unfiltered one.
            assert listed_identifiers(page) == ["N-001"]
    with subtests.test("markup in the query is escaped"):
        page = browser.get("/patients/", query_string={"q": "<script>x</script>"})
        assert page.status_code == 200
        assert "<script>x</script>" not in page.get_data(as_text=True)
        assert "&lt;script&gt;" in page.get_data(as_text=True)
    with subtests.test("the query is sent twice"):
        assert browser.get("/patients/?q=N-0&q=zzz").status_code == 200


def test_search_normalises_full_width_like_the_identifier(login, ids):
    page = login("clin.north").get("/patients/", query_string={"q": "Ｎ-001"})
    assert listed_identifiers(page) == ["N-001"]


def test_search_is_case_insensitive_beyond_ascii(world, ids, login):
    services.create_patient(
        world["clin_n"], world["north"], "É-7", None, ids.ep_n_start, "opioid", ""
    )
    page = login("clin.north").get("/patients/", query_string={"q": "é-7"})
    assert listed_identifiers(page) == ["É-7"]


# --------------------------------------------------------------------------- creating patients


CREATE_CASES = [
    # London summer time (BST, UTC+1)
    ("clin.north", "north", "2025-07-01T10:00", datetime(2025, 7, 1, 9, 0, tzinfo=UTC)),
    # London winter (GMT, UTC+0)
    ("clin.north", "north", "2025-01-15T10:00", datetime(2025, 1, 15, 10, 0, tzinfo=UTC)),
    # New York winter (EST, UTC-5)
    ("clin.south", "south", "2025-01-15T10:00", datetime(2025, 1, 15, 15, 0, tzinfo=UTC)),
    # New York summer (EDT, UTC-4)
    ("clin.south", "south", "2025-07-01T10:00", datetime(2025, 7, 1, 14, 0, tzinfo=UTC)),
]


def test_create_patient_opens_first_episode_in_site_time(app, login, ids, subtests):
    browsers = {"clin.north": login("clin.north"), "clin.south": login("clin.south")}
    for number, (username, site, local, expected_utc) in enumerate(CREATE_CASES):
        with subtests.test(site=site, local=local):
            identifier = f"P-10{number}"
            site_id = getattr(ids, site)
            user_id = ids.clin_n if site == "north" else ids.clin_s
            browser = browsers[username]
            before = counts(app)

            response = browser.post(
                "/patients/new", patient_form(site_id, identifier, started_at=local)
            )

            assert response.status_code == 302, field_errors(response, "started_at")
            with app.app_context():
                patient = db.session.scalar(select(Patient).where(Patient.identifier == identifier))
                assert location_path(response) == f"/patients/{patient.id}"
                assert patient.site_id == site_id
                assert patient.display_label == "Bed 4"
                assert patient.created_by_id == user_id
                (episode,) = patient.episodes
                assert episode.started_at == expected_utc
                assert episode.ended_at is None
                assert episode.substance_context == "kratom"
                assert episode.note == "Arrived from the emergency department"
                patient_id, episode_id = patient.id, episode.id
            assert counts(app) == (before[0] + 1, before[1] + 1, before[2], before[3] + 2)
            (created,) = [
                e for e in audit_events(app, "patient_create") if e.patient_id == patient_id
            ]
            assert (created.entity, created.entity_id) == ("patient", patient_id)
            assert (created.user_id, created.site_id) == (user_id, site_id)
            assert created.details == {"identifier": identifier, "display_label": "Bed 4"}
            (opened,) = [e for e in audit_events(app, "episode_open") if e.patient_id == patient_id]
            assert (opened.entity, opened.entity_id) == ("episode", episode_id)
            assert opened.user_id == user_id
            assert opened.details["substance_context"] == "kratom"
            assert datetime.fromisoformat(opened.details["started_at"]) == expected_utc

            shown = browser.get(response.headers["Location"])
            assert "Patient added and first episode opened." in text_of(shown)
            tz = LONDON if site == "north" else NEW_YORK
            assert format_local(expected_utc, tz) in text_of(shown)


def test_create_patient_form_defaults_and_other_accepted_input(app, login, ids, subtests):
    browser = login("clin.north")
    page = browser.get("/patients/new")
    assert page.status_code == 200
    # A single-site user does not choose: the site is fixed.
    assert input_val(page, "site_id") == str(ids.north)
    default = input_val(page, "started_at")
    local_now = to_local(now_utc(), LONDON).replace(tzinfo=None)
    assert abs(local_now - datetime.strptime(default, "%Y-%m-%dT%H:%M")) < timedelta(minutes=2)
    assert [f["value"] for f in inputs(page, "substance_context")] == [
        "opioid",
        "kratom",
        "opioid_and_kratom",
        "other",
    ]
    assert checked(page, "substance_context") == []
    for typed, stored, started_at in [
        ("  P-102  ", "P-102", default),  # spaces dropped; the default start time is valid
        ("ＡＢ１２３", "AB123", None),  # full-width letters and digits are NFKC-normalised
        # Ward clocks drift: up to five minutes ahead is accepted.
        ("P-103", "P-103", local_now_input(LONDON, timedelta(minutes=3))),
    ]:
        with subtests.test(typed=typed):
            data = patient_form(ids.north, typed)
            if started_at:
                data["started_at"] = started_at
            response = browser.post("/patients/new", data)
            assert response.status_code == 302
            with app.app_context():
                patient = db.session.get(Patient, int(location_path(response).rsplit("/")[-1]))
                assert patient.identifier == stored
                assert patient.site_id == ids.north


def test_duplicate_identifier_at_the_same_site_is_refused(app, login, ids, subtests):
    browser = login("clin.north")
    note = "Second visit & <b>notes</b>"
    for typed in ["N-001", "  N-001 ", "Ｎ-001", "Ｎ－００１", "n-001"]:
        with subtests.test(typed=typed):
            before = counts(app)
            response = browser.post(
                "/patients/new",
                patient_form(
                    ids.north,
                    typed,
                    display_label="Bay 2",
                    started_at="2026-01-10T08:15",
                    substance_context="opioid_and_kratom",
                    episode_note=note,
                ),
            )
            assert response.status_code == 422
            assert field_errors(response, "identifier") == (
                "NORTH already has a patient with identifier N-001."
            )
            assert "Nothing was saved" in text_of(response)
            assert counts(app) == before
            # Everything typed is still there (the identifier as normalised).
            assert input_val(response, "identifier") == typed.strip().replace("ｎ", "n").translate(
                str.maketrans("Ｎ－０１", "N-01")
            )
            assert input_val(response, "display_label") == "Bay 2"
            assert input_val(response, "started_at") == "2026-01-10T08:15"
            assert checked(response, "substance_context") == ["opioid_and_kratom"]
            assert textarea(response, "episode_note") == note
    with subtests.test("the same identifier at another site is fine"):
        response = login("clin.south").post(
            "/patients/new", patient_form(ids.south, "N-001", started_at="2025-05-05T05:05")
        )
        assert response.status_code == 302
        with app.app_context():
            sites = db.session.scalars(
                select(Patient.site_id)
                .where(Patient.identifier == "N-001")
                .order_by(Patient.site_id)
            ).all()
        assert sites == [ids.north, ids.south]


BAD_TEXT = [
    ("identifier", "", "Enter the patient's identifier."),
    ("identifier", "   ", "Enter the patient's identifier."),
    ("identifier", "N\x00-9", "Remove the control characters"),
    ("identifier", "N\x07-9", "Remove the control characters"),
    ("identifier", "N\x1b[31m-9", "Remove the control characters"),
    ("identifier", "N\x85-9", "Remove the control characters"),
    ("identifier", "N-9\u202e1", "Remove the invisible or text-direction characters"),
    ("identifier", "\u2066N-9\u2069", "Remove the invisible or text-direction characters"),
    ("identifier", "N-9\u200f", "Remove the invisible or text-direction characters"),
    ("identifier", "X" * 65, "Field cannot be longer than 64 characters."),
    ("display_label", "Bed\x074", "Remove the control characters"),
    ("display_label", "Bed\u202e4", "Remove the invisible or text-direction characters"),
    ("display_label", "L" * 121, "Field cannot be longer than 120 characters."),
    ("episode_note", "Note\x00", "Remove the control characters"),
    ("episode_note", "N" * 2001, "Field cannot be longer than 2000 characters."),
    ("identifier", None, "Enter the patient's identifier."),
    ("substance_context", None, "Choose the substance context."),
    ("substance_context", "something", "Not a valid choice."),
]


def test_bad_or_missing_field_is_refused_next_to_it(app, login, ids, subtests):
    browser = login("clin.north")
    for field, value, message in BAD_TEXT:
        with subtests.test(field=field, value=value and value[:20]):
            before = counts(app)
            data = patient_form(ids.north, "P-500", **{"display_label": "Kept label", field: value})
            response = browser.post("/patients/new", data)
            assert response.status_code == 422
            assert message in field_errors(response, field)
            assert counts(app) == before
            for other in {"identifier", "display_label"} - {field}:
                assert input_val(response, other) == data[other]
            if field != "substance_context":
                assert checked(response, "substance_context") == ["kratom"]
            if field != "episode_note":
                assert textarea(response, "episode_note") == data["episode_note"]


def test_invisible_characters_cannot_make_a_look_alike_identifier(app, login, ids):
    before = counts(app)
    response = login("clin.north").post("/patients/new", patient_form(ids.north, "N\u200b-001"))
    assert response.status_code == 422
    assert counts(app) == before


BAD_START_TIMES = [
    ("+10min", "This time is in the future."),
    ("+1day", "This time is in the future."),
    ("2024-02-30T10:00", "Enter a date and time as shown"),
    ("yesterday", "Enter a date and time as shown"),
    ("2024-01-01 10:00", "Enter a date and time as shown"),
    ("2024-01-01", "Enter a date and time as shown"),
    ("10:00", "Enter a date and time as shown"),
    ("2024-01-01T25:00", "Enter a date and time as shown"),
    ("0001-01-01T00:00", "implausibly far in the past"),
    ("1999-12-31T23:00", "implausibly far in the past"),
    ("2026-03-29T01:30", "does not exist in Europe/London"),  # the clocks went forward
    ("2025-03-30T01:00", "does not exist in Europe/London"),
]


def test_bad_start_time_is_refused(app, login, ids, subtests):
    browser = login("clin.north")
    for started_at, message in BAD_START_TIMES:
        if started_at.startswith("+"):
            delta = timedelta(minutes=10) if started_at == "+10min" else timedelta(days=1)
            started_at = local_now_input(LONDON, delta)
        with subtests.test(started_at=started_at):
            before = counts(app)
            response = browser.post(
                "/patients/new", patient_form(ids.north, "P-300", started_at=started_at)
            )
            assert response.status_code == 422
            assert message in field_errors(response, "started_at")
            assert counts(app) == before
            assert input_val(response, "started_at") == started_at
            assert input_val(response, "identifier") == "P-300"
    with subtests.test("New York's clocks go forward on another day"):
        before = counts(app)
        response = login("clin.south").post(
            "/patients/new", patient_form(ids.south, started_at="2025-03-09T02:30")
        )
        assert response.status_code == 422
        assert "does not exist in America/New_York" in field_errors(response, "started_at")
        assert counts(app) == before


def test_start_time_parsing_is_strict(login, ids):
    browser = login("clin.north")
    statuses = {
        spelling: browser.post(
            "/patients/new", patient_form(ids.north, f"P-{i}", started_at=spelling)
        ).status_code
        for i, spelling in enumerate(["２０２５-01-01T10:00", "٢٠٢٥-01-01T10:00", "2025-1-1T1:0"])
    }
    assert set(statuses.values()) == {422}, statuses


def test_start_at_the_end_of_year_9999_in_new_york_is_refused_not_500(login, ids):
    response = login("clin.south").post(
        "/patients/new", patient_form(ids.south, started_at="9999-12-31T23:59")
    )
    assert response.status_code == 422


def test_ambiguous_start_asks_which_occurrence(app, login, ids, subtests):
    browser = login("clin.north")
    before = counts(app)
    for fold in [None, "2", "x", ""]:
        with subtests.test(fold=fold):
            response = browser.post(
                "/patients/new",
                patient_form(
                    ids.north, "P-400", started_at="2026-10-25T01:30", started_at_fold=fold
                ),
            )
            assert response.status_code == 422
            assert "happens twice in Europe/London" in field_errors(response, "started_at")
            assert [f["value"] for f in inputs(response, "started_at_fold")] == ["0", "1"]
            page = text_of(response)
            assert "Which 01:30?" in page
            assert "first occurrence (01:30 BST, UTC+0100)" in page
            assert "second occurrence (01:30 GMT, UTC+0000)" in page
            assert input_val(response, "identifier") == "P-400"
    assert counts(app) == before
    for identifier, local, fold, expected in [
        ("P-401", "2026-10-25T01:30", "0", datetime(2026, 10, 25, 0, 30, tzinfo=UTC)),
        ("P-402", "2026-10-25T01:30", "1", datetime(2026, 10, 25, 1, 30, tzinfo=UTC)),
        # A fold left over from an earlier answer does not move an unambiguous time.
        ("P-403", "2025-07-01T10:00", "1", datetime(2025, 7, 1, 9, 0, tzinfo=UTC)),
    ]:
        with subtests.test(local=local, fold=fold):
            response = browser.post(
                "/patients/new",
                patient_form(ids.north, identifier, started_at=local, started_at_fold=fold),
            )
            assert response.status_code == 302
            with app.app_context():
                started = db.session.scalar(
                    select(Episode.started_at).join(Patient).where(Patient.identifier == identifier)
                )
            assert started == expected


def test_clinician_cannot_create_a_patient_at_a_site_not_theirs(app, login, ids, subtests):
    browser = login("clin.north")
    for site_id in [ids.south, 999_999, "abc", ""]:
        with subtests.test(site_id=site_id):
            before = counts(app)
            response = browser.post("/patients/new", patient_form(site_id, "X-1"))
            assert response.status_code == 422
            assert "Site" in text_of(response)  # the error summary names the field
            assert counts(app) == before
            assert input_val(response, "identifier") == "X-1"
    with app.app_context():
        assert db.session.scalar(select(Patient).where(Patient.identifier == "X-1")) is None


def test_patient_and_episode_service_rules(app_ctx, world):
    clin_n, north, south = world["clin_n"], world["north"], world["south"]
    with pytest.raises(services.PatientRuleError, match="your own sites"):
        services.create_patient(clin_n, south, "X-2", None, now_utc(), "opioid", "")
    db.session.rollback()
    with pytest.raises(services.PatientRuleError) as raised:
        services.create_patient(clin_n, north, "N-001", None, now_utc(), "opioid", "")
    assert raised.value.field == "identifier"
    db.session.rollback()
    future = now_utc() + timedelta(hours=1)
    with pytest.raises(services.PatientRuleError) as raised:
        services.create_patient(clin_n, north, "X-4", None, future, "opioid", "")
    assert raised.value.field == "started_at"
    db.session.rollback()
    assert db.session.scalar(select(func.count()).select_from(Patient)) == 2

    episode = world["patient_n"].open_episode
    start = episode.started_at
    with pytest.raises(services.PatientRuleError, match="End the open episode"):
        services.open_episode(clin_n, world["patient_n"], now_utc(), "opioid", "")
    db.session.rollback()
    with pytest.raises(services.PatientRuleError, match="before it started"):
        services.end_episode(clin_n, episode, start - timedelta(seconds=1))
    db.session.rollback()
    with pytest.raises(services.PatientRuleError, match="in the future"):
        services.end_episode(clin_n, episode, now_utc() + timedelta(minutes=6))
    db.session.rollback()
    # Exactly at the start is allowed.
    services.end_episode(clin_n, episode, start)
    assert episode.ended_at == start
    with pytest.raises(services.PatientRuleError, match="already ended"):
        services.end_episode(clin_n, episode, now_utc())
    db.session.rollback()
    with pytest.raises(services.PatientRuleError, match="before the previous one ended"):
        services.open_episode(
            clin_n, world["patient_n"], start - timedelta(seconds=1), "opioid", ""
        )
    db.session.rollback()


def test_service_rule_errors_name_a_form_field(app_ctx, world):
    with pytest.raises(services.PatientRuleError) as raised:
        services.create_patient(
            world["clin_n"], world["south"], "X-3", None, now_utc(), "opioid", ""
        )
    db.session.rollback()
    assert hasattr(PatientForm, raised.value.field)


def test_user_of_two_sites_chooses_the_site_and_its_time(app, make_user, ids, login):
    make_user("clin.both", "clinician", ["NORTH", "SOUTH"])
    browser = login("clin.both")
    page = browser.get("/patients/new")
    assert '<select id="site_id" name="site_id"' in page.get_data(as_text=True)
    assert "NORTH — North Clinic" in text_of(page)
    assert "SOUTH — South Clinic" in text_of(page)

    response = browser.post(
        "/patients/new", patient_form(ids.south, "B-1", started_at="2025-07-01T10:00")
    )

    assert response.status_code == 302
    with app.app_context():
        patient = db.session.scalar(select(Patient).where(Patient.identifier == "B-1"))
        assert patient.site_id == ids.south
        assert patient.episodes[0].started_at == datetime(2025, 7, 1, 14, 0, tzinfo=UTC)


def test_default_start_time_is_valid_for_every_site_of_the_user(make_user, ids, login):
    make_user("clin.both", "clinician", ["NORTH", "SOUTH"])
    browser = login("clin.both")
    default = input_val(browser.get("/patients/new"), "started_at")
    response = browser.post("/patients/new", patient_form(ids.south, "B-2", started_at=default))
    assert response.status_code == 302


# --------------------------------------------------------------------------- CSRF


def test_post_without_valid_csrf_writes_nothing_and_keeps_input(app, login, ids, subtests):
    browser = login("clin.north")
    other_session_token = input_val(login("sup.north").get("/patients/new"), "csrf_token")
    data = patient_form(
        ids.north,
        "CSRF-1",
        display_label="Kept",
        started_at="2025-02-03T04:05",
        substance_context="other",
        episode_note="Typed before the session expired",
    )
    for token in [None, "", "not-a-token", other_session_token]:
        with subtests.test(token=token and token[:12]):
            sent = dict(data) if token is None else {**data, "csrf_token": token}
            before = counts(app)
            response = browser.post("/patients/new", sent, csrf=False)
            assert response.status_code == 422
            assert "The form expired or was sent from elsewhere" in text_of(response)
            assert counts(app) == before
            assert input_val(response, "identifier") == "CSRF-1"
            assert input_val(response, "display_label") == "Kept"
            assert input_val(response, "started_at") == "2025-02-03T04:05"
            assert checked(response, "substance_context") == ["other"]
            assert textarea(response, "episode_note") == "Typed before the session expired"
    with subtests.test("the re-displayed form carries a fresh token"):
        data["csrf_token"] = input_val(response, "csrf_token")
        assert browser.post("/patients/new", data).status_code == 302
    with subtests.test("ending an episode without a token keeps the typed end time"):
        before = counts(app)
        typed_end = local_now_input(LONDON)
        response = browser.post(
            f"/patients/{ids.pid_n}/episodes/{ids.ep_n}/end",
            {"ended_at": typed_end},
            csrf=False,
        )
        assert response.status_code == 422
        assert input_val(response, "ended_at") == typed_end
        assert counts(app) == before
        with app.app_context():
            assert db.session.get(Episode, ids.ep_n).ended_at is None


# --------------------------------------------------------------------------- patient page


def test_patient_page_shows_episodes_and_timeline_newest_first(world, ids, add_assessment, login):
    now = now_utc().replace(microsecond=0)
    cows = dict.fromkeys(SCALES["cows"].item_keys, 0) | {"restlessness": 5, "gooseflesh": 3}
    add_assessment(
        world["patient_n"], world["clin_n"], "cows", cows, observed_at=now - timedelta(hours=3)
    )
    add_assessment(
        world["patient_n"], world["clin_n"], "sows", observed_at=now - timedelta(hours=2)
    )
    gad = dict.fromkeys(SCALES["gad7"].item_keys, 3) | {"afraid": None}
    add_assessment(
        world["patient_n"],
        world["sup_n"],
        "gad7",
        gad,
        observed_at=now - timedelta(hours=1),
        not_assessed_reasons={"afraid": "asleep"},
    )

    page = login("clin.north").get(f"/patients/{ids.pid_n}")

    assert page.status_code == 200
    body = text_of(page)
    assert "Patient <bdi>N-001</bdi>" in body and "<bdi>Test N</bdi>" in body
    assert "times in Europe/London" in body
    assert format_local(ids.ep_n_start, LONDON) in body
    assert "<td>Opioid</td>" in body
    rows = timeline_rows(page)
    assert [row[0] for row in rows] == [
        format_local(now - timedelta(hours=h), LONDON) for h in (1, 2, 3)
    ]
    assert [row[1] for row in rows] == ["GAD-7", "SOWS", "COWS"]
    assert [row[2] for row in rows] == ["18 /21", "0 /64", "8 /48"]
    # An incomplete entry never shows a band: 18 is a lower bound, so "Severe" is only its floor.
    assert rows[0][3] == "at least Severe — incomplete, 1 item not assessed"
    assert rows[1][3] == "No published band"
    assert rows[2][3] == "Mild"
    assert [row[4] for row in rows] == ["Sup.North", "Clin.North", "Clin.North"]
    assert [row[5] for row in rows] == ["Not yet reviewed"] * 3


def test_patient_page_times_in_new_york_and_empty_timeline(world, ids, add_assessment, login):
    observed = now_utc() - timedelta(hours=1)
    add_assessment(world["patient_s"], world["clin_s"], observed_at=observed)
    page = login("clin.south").get(f"/patients/{ids.pid_s}")
    (row,) = timeline_rows(page)
    assert row[0] == format_local(observed, NEW_YORK)
    assert row[0].endswith(("EST", "EDT"))
    assert "times in America/New_York" in text_of(page)

    page = login("clin.north").get(f"/patients/{ids.pid_n}")
    assert "No assessments recorded yet." in text_of(page)
    assert timeline_rows(page) == []
    # An open episode offers every scale.
    for key in SCALES:
        assert f"/patients/{ids.pid_n}/assessments/new/{key}" in page.get_data(as_text=True)


def test_timeline_pagination(world, ids, add_assessment, login, subtests):
    newest = now_utc().replace(microsecond=0) - timedelta(hours=1)
    times = [newest - timedelta(minutes=i) for i in range(30)]
    for observed in reversed(times):
        add_assessment(world["patient_n"], world["clin_n"], observed_at=observed)
    browser = login("clin.north")

    first = browser.get(f"/patients/{ids.pid_n}")
    assert [row[0] for row in timeline_rows(first)] == [format_local(t, LONDON) for t in times[:25]]
    assert "Page 1 of 2" in text_of(first)
    assert f'href="/patients/{ids.pid_n}?page=2">Older</a>' in first.get_data(as_text=True)
    assert ">Newer</a>" not in first.get_data(as_text=True)

    second = browser.get(f"/patients/{ids.pid_n}?page=2")
    assert [row[0] for row in timeline_rows(second)] == [
        format_local(t, LONDON) for t in times[25:]
    ]
    assert "Page 2 of 2" in text_of(second)
    assert f'href="/patients/{ids.pid_n}?page=1">Newer</a>' in second.get_data(as_text=True)
    assert ">Older</a>" not in second.get_data(as_text=True)

    for page in ["0", "-3", "abc", "", "1.5"]:
        with subtests.test(page=page):
            response = browser.get(f"/patients/{ids.pid_n}?page={page}")
            assert response.status_code == 200
            assert [row[0] for row in timeline_rows(response)][:1] == [format_local(newest, LONDON)]
    with subtests.test(page="3"):
        beyond = browser.get(f"/patients/{ids.pid_n}?page=3")
        assert beyond.status_code == 200
        assert timeline_rows(beyond) == []
        assert "No entries on this page. Newest entries (page 1 of 2)." in readable_text(beyond)
        assert "No assessments recorded yet." not in text_of(beyond)


def test_bad_patient_ids_answer_404(login, ids, subtests):
    browser = login("clin.north")
    for url in [
        "/patients/abc",
        "/patients/-1",
        "/patients/0",
        "/patients/1.5",
        "/patients/999999",
        "/patients/abc/episodes/new",
        "/patients/999999/episodes/new",
        "/patients/999999/assessments/new/cows",
    ]:
        with subtests.test(url=url):
            response = browser.get(url)
            assert response.status_code == 404
            assert "There is nothing here, or it is not at one of your sites." in text_of(response)


def test_numbers_beyond_integer_range_do_not_fail(login, ids):
    browser = login("clin.north")
    huge = "99999999999999999999"
    statuses = [
        browser.get(f"/patients/{huge}").status_code,
        browser.get(f"/patients/{huge}/episodes/new").status_code,
        browser.get(f"/patients/{ids.pid_n}?page={huge}").status_code,
    ]
    assert statuses == [404, 404, 200]


def test_another_sites_patient_answers_404_and_is_audited(app, login, ids, subtests):
    browser = login("clin.north")
    form = {
        "started_at": local_now_input(NEW_YORK),
        "substance_context": "opioid",
        "ended_at": local_now_input(NEW_YORK),
    }
    for method, url, entity, entity_id in [
        ("GET", f"/patients/{ids.pid_s}", "patient", ids.pid_s),
        ("GET", f"/patients/{ids.pid_s}?page=2", "patient", ids.pid_s),
        ("GET", f"/patients/{ids.pid_s}/episodes/new", "patient", ids.pid_s),
        ("POST", f"/patients/{ids.pid_s}/episodes/new", "patient", ids.pid_s),
        ("POST", f"/patients/{ids.pid_s}/episodes/{ids.ep_s}/end", "patient", ids.pid_s),
        # Another site's episode under my own patient's address: the refusal is South's, so it
        # keeps the route instead of a path naming North's patient.
        ("POST", f"/patients/{ids.pid_n}/episodes/{ids.ep_s}/end", "episode", ids.ep_s),
    ]:
        named_patient = f"/patients/{ids.pid_n}/" in url
        with subtests.test(method=method, url=url):
            before = counts(app)
            response = browser.get(url) if method == "GET" else browser.submit(url, form)
            assert response.status_code == 404
            assert "S-001" not in response.get_data(as_text=True)
            # Only the refusal was written.
            assert counts(app) == (*before[:3], before[3] + 1)
            refused = audit_events(app, "access_refused")[-1]
            assert (refused.entity, refused.entity_id) == (entity, entity_id)
            assert refused.user_id == ids.clin_n
            assert refused.details == {
                "path": "/patients/<id:patient_id>/episodes/<id:episode_id>/end"
                if named_patient
                else urlsplit(url).path,
                "method": method,
                "status": 404,
            }
    with app.app_context():
        assert db.session.get(Episode, ids.ep_s).ended_at is None
        assert db.session.get(Episode, ids.ep_n).ended_at is None
        assert count(app, Episode) == 2


# --------------------------------------------------------------------------- admin


def test_admin_is_refused_clinical_pages(app, world, ids, add_assessment, login, subtests):
    aid = add_assessment(world["patient_n"], world["clin_n"]).id
    browser = login("admin.one")
    for path in [
        "/patients/",
        "/patients/new",
        "/patients/{pid}",
        "/patients/{pid}/episodes/new",
        "/patients/{pid}/assessments/new/cows",
        "/assessments/{aid}",
    ]:
        url = path.format(pid=ids.pid_n, aid=aid)
        with subtests.test(url=url):
            response = browser.get(url)
            assert response.status_code == 403
            assert "N-001" not in response.get_data(as_text=True)
            refused = audit_events(app, "access_refused")[-1]
            assert refused.user_id == ids.admin
            assert refused.details == {"path": url, "method": "GET", "status": 403}
    before = counts(app)
    with subtests.test("admin POSTs"):
        response = browser.submit("/patients/new", patient_form(ids.north, "ADM-1"))
        assert response.status_code == 403
        end = f"/patients/{ids.pid_n}/episodes/{ids.ep_n}/end"
        assert browser.submit(end, {"ended_at": local_now_input(LONDON)}).status_code == 403
        assert counts(app)[:3] == before[:3]
        with app.app_context():
            assert db.session.get(Episode, ids.ep_n).ended_at is None


# --------------------------------------------------------------------------- episodes


def end_episode(browser, ids, ended_at):
    return browser.submit(f"/patients/{ids.pid_n}/episodes/{ids.ep_n}/end", {"ended_at": ended_at})


def test_end_episode_with_the_default_time(app, login, ids):
    browser = login("clin.north")
    page = browser.get(f"/patients/{ids.pid_n}")
    assert "End this episode" in text_of(page)
    ended_local = input_val(page, "ended_at")
    local_now = to_local(now_utc(), LONDON).replace(tzinfo=None)
    assert abs(local_now - datetime.strptime(ended_local, "%Y-%m-%dT%H:%M")) < timedelta(minutes=2)
    before = counts(app)

    response = end_episode(browser, ids, ended_local)

    assert response.status_code == 302
    assert location_path(response) == f"/patients/{ids.pid_n}"
    with app.app_context():
        episode = db.session.get(Episode, ids.ep_n)
        assert input_value(episode.ended_at, LONDON) == ended_local
        assert episode.ended_by_id == ids.clin_n
    (ended,) = audit_events(app, "episode_end")
    assert (ended.entity, ended.entity_id, ended.user_id) == ("episode", ids.ep_n, ids.clin_n)
    assert counts(app) == (*before[:3], before[3] + 1)
    shown = browser.get(f"/patients/{ids.pid_n}")
    assert "Episode ended." in text_of(shown)
    assert "No open episode." in text_of(shown)
    assert "End this episode" not in text_of(shown)
    assert f"/patients/{ids.pid_n}/assessments/new/" not in shown.get_data(as_text=True)

    # Ending it again is refused and changes nothing.
    before = counts(app)
    response = end_episode(browser, ids, local_now_input(LONDON))
    assert response.status_code == 422
    assert counts(app) == before
    with app.app_context():
        assert input_value(db.session.get(Episode, ids.ep_n).ended_at, LONDON) == ended_local


def test_end_episode_rules(app, world, ids, add_assessment, login, subtests):
    last = now_utc().replace(second=0, microsecond=0) - timedelta(hours=1)
    add_assessment(world["patient_n"], world["clin_n"], observed_at=last)
    browser = login("clin.north")
    for ended_at, message in [
        (input_value(ids.ep_n_start - timedelta(hours=1), LONDON), "cannot end before it started"),
        (input_value(last - timedelta(minutes=1), LONDON), "before its last recorded assessment"),
        (local_now_input(LONDON, timedelta(minutes=10)), "This time is in the future."),
        ("tomorrow", "Enter a date and time as shown"),
        ("", "Enter when the episode ended."),
        ("2026-03-29T01:30", "does not exist in Europe/London"),
    ]:
        with subtests.test(ended_at=ended_at):
            before = counts(app)
            response = end_episode(browser, ids, ended_at)
            assert response.status_code == 422
            assert message in field_errors(response, "ended_at")
            assert input_val(response, "ended_at") == ended_at
            assert counts(app) == before
            with app.app_context():
                assert db.session.get(Episode, ids.ep_n).ended_at is None
    with subtests.test("exactly at the last assessment is allowed"):
        assert end_episode(browser, ids, input_value(last, LONDON)).status_code == 302


def test_end_episode_twice_explains_why(login, ids):
    browser = login("clin.north")
    first = end_episode(browser, ids, local_now_input(LONDON, -timedelta(hours=1)))
    assert first.status_code == 302
    response = end_episode(browser, ids, local_now_input(LONDON))
    assert "This episode has already ended." in text_of(response)


def test_new_episode_rules_then_open_one(app, login, ids, subtests):
    browser = login("clin.north")
    with subtests.test("not while an episode is open"):
        before = counts(app)
        response = browser.post(
            f"/patients/{ids.pid_n}/episodes/new",
            {"started_at": local_now_input(LONDON), "substance_context": "opioid"},
        )
        assert response.status_code == 422
        message = "End the open episode before opening a new one."
        assert message in field_errors(response, "started_at")
        assert counts(app) == before

    assert end_episode(browser, ids, local_now_input(LONDON, -timedelta(hours=1))).status_code == (
        302
    )
    page = browser.get(f"/patients/{ids.pid_n}/episodes/new")
    assert page.status_code == 200
    assert "New episode for <bdi>N-001</bdi>" in page.get_data(as_text=True)
    default = datetime.strptime(input_val(page, "started_at"), "%Y-%m-%dT%H:%M")
    assert abs(to_local(now_utc(), LONDON).replace(tzinfo=None) - default) < timedelta(minutes=2)
    for started_at, message in [
        (
            local_now_input(LONDON, -timedelta(hours=2)),
            "A new episode cannot start before the previous one ended.",
        ),
        (local_now_input(LONDON, timedelta(minutes=10)), "This time is in the future."),
        ("2025-13-01T00:00", "Enter a date and time as shown"),
        ("", "Enter when the episode started."),
    ]:
        with subtests.test(started_at=started_at):
            before = counts(app)
            response = browser.post(
                f"/patients/{ids.pid_n}/episodes/new",
                {"started_at": started_at, "substance_context": "other", "episode_note": "Kept"},
            )
            assert response.status_code == 422
            assert message in field_errors(response, "started_at")
            assert counts(app) == before
            assert checked(response, "substance_context") == ["other"]
            assert textarea(response, "episode_note") == "Kept"

    # Starting exactly when the previous one ended is allowed.
    with app.app_context():
        end_local = input_value(db.session.get(Episode, ids.ep_n).ended_at, LONDON)
    response = browser.post(
        f"/patients/{ids.pid_n}/episodes/new",
        {"started_at": end_local, "substance_context": "opioid_and_kratom", "episode_note": ""},
    )
    assert response.status_code == 302
    assert location_path(response) == f"/patients/{ids.pid_n}"
    with app.app_context():
        episodes = db.session.scalars(
            select(Episode).where(Episode.patient_id == ids.pid_n).order_by(Episode.id)
        ).all()
        assert len(episodes) == 2
        assert episodes[1].ended_at is None
        assert episodes[1].started_at == episodes[0].ended_at
        assert episodes[1].substance_context == "opioid_and_kratom"
        new_id = episodes[1].id
    opened = [e for e in audit_events(app, "episode_open") if e.patient_id == ids.pid_n]
    assert [e.entity_id for e in opened] == [ids.ep_n, new_id]
    shown = browser.get(f"/patients/{ids.pid_n}")
    assert "New episode opened." in text_of(shown)
    assert browser.get(f"/patients/{ids.pid_n}/assessments/new/cows").status_code == 200


def test_assessment_page_after_ending_redirects_with_a_message(app, login, ids, subtests):
    browser = login("clin.north")
    form_page = browser.get(f"/patients/{ids.pid_n}/assessments/new/gad7")
    stale = {
        "csrf_token": input_val(form_page, "csrf_token"),
        "submission_key": input_val(form_page, "submission_key"),
        "observed_at": local_now_input(LONDON, -timedelta(hours=2)),
        **dict.fromkeys(SCALES["gad7"].item_keys, "1"),
    }
    assert end_episode(browser, ids, local_now_input(LONDON, -timedelta(hours=1))).status_code == (
        302
    )
    before = counts(app)
    for key in ["cows", "gad7"]:
        with subtests.test(scale=key):
            response = browser.get(f"/patients/{ids.pid_n}/assessments/new/{key}")
            assert response.status_code == 302
            assert location_path(response) == f"/patients/{ids.pid_n}"
            shown = browser.get(response.headers["Location"])
            message = "This patient has no open episode. Open an episode before recording."
            assert message in text_of(shown)
            assert 'name="observed_at"' not in shown.get_data(as_text=True)
    with subtests.test("the form opened before the end is sent"):
        response = browser.post(f"/patients/{ids.pid_n}/assessments/new/gad7", stale)
        assert response.status_code == 302
        assert location_path(response) == f"/patients/{ids.pid_n}"
    with subtests.test("an unknown scale is still 404"):
        assert browser.get(f"/patients/{ids.pid_n}/assessments/new/nope").status_code == 404
    assert counts(app) == before
