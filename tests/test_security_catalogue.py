"""Cases of the security catalogue (reference security.md §6.2) that no other test file covers.

Each test is named after its case: ``test_<ID>_<behaviour>``. tests/SECURITY_COVERAGE.md maps
every case A01-K04 to the test that covers it, here or elsewhere, or says why it is not covered.
A behaviour the catalogue asks for that the app does not have is a strict xfail whose reason
starts with "BUG:"; it turns into a failure the day the app is fixed, so the mark is removed then.
"""

from __future__ import annotations

import csv
import html
import importlib.metadata
import io
import itertools
import json
import logging
import re
import time
from datetime import timedelta
from types import SimpleNamespace

import pytest
from conftest import GAD7, PASSWORD, Browser, IsolatedClient
from flask import Flask
from sqlalchemy import func, select, text, update

from clinic_log import ConfigError, create_app
from clinic_log.assessments import services as assessments
from clinic_log.database import begin_write, now_utc
from clinic_log.extensions import db
from clinic_log.models import (
    Assessment,
    AuditEvent,
    Episode,
    ItemScore,
    Patient,
    Signature,
    Site,
    User,
)
from clinic_log.patients.services import create_patient
from clinic_log.review import services as review

HTTPS = "https://localhost"
_CSRF = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')

# Hostile text, and what it must never turn into on a page.
XSS = "<script>alert(1)</script>"
XSS_SHOWN = "&lt;script&gt;alert(1)&lt;/script&gt;"
ATTR = '" autofocus onfocus="alert(1)'
ATTR_SHOWN = "&#34; autofocus onfocus=&#34;alert(1)"
SSTI = "{{7*'zq'}}{{config.SECRET_KEY}}"
SSTI_SHOWN = "{{7*&#39;zq&#39;}}{{config.SECRET_KEY}}"
NOTE = f"{XSS}\n{ATTR}\n{SSTI}"


# --------------------------------------------------------------------------- helpers


def fresh() -> None:
    """End the test session's transaction: later reads see what the requests committed."""
    db.session.commit()


def data_counts(app) -> tuple[int, ...]:
    """Rows of every clinical and account table (not the audit trail)."""
    with app.app_context():
        return tuple(
            db.session.scalar(select(func.count()).select_from(model))
            for model in (Patient, Episode, Assessment, ItemScore, Signature, User, Site)
        )


def audit_events(app, since_id: int = 0) -> list[AuditEvent]:
    with app.app_context():
        rows = db.session.scalars(
            select(AuditEvent).where(AuditEvent.id > since_id).order_by(AuditEvent.id)
        ).all()
        db.session.expunge_all()
        return list(rows)


def last_audit_id(app) -> int:
    with app.app_context():
        return db.session.scalar(select(func.coalesce(func.max(AuditEvent.id), 0)))


def body(response) -> str:
    return response.get_data(as_text=True)


def input_values(response) -> dict[str, str]:
    """name -> value of every input on the page (the first of a name wins), unescaped."""
    values: dict[str, str] = {}
    for tag in re.findall(r"<input\b[^>]*>", body(response)):
        name = re.search(r'name="([^"]*)"', tag)
        value = re.search(r'value="([^"]*)"', tag)
        if name and name.group(1) not in values:
            values[name.group(1)] = html.unescape(value.group(1)) if value else ""
    return values


def listed_identifiers(response) -> list[str]:
    return [
        html.unescape(m)
        for m in re.findall(r'<th scope="row"><a [^>]*><bdi>(.*?)</bdi></a></th>', body(response))
    ]


def gad(default: int = 1) -> dict[str, int]:
    return dict.fromkeys(GAD7, default)


def gad_form(browser, patient_id: int, **fields) -> dict[str, str]:
    """The GAD-7 entry form as a browser would send it, every item answered 1."""
    page = browser.get(f"/patients/{patient_id}/assessments/new/gad7")
    assert page.status_code == 200
    values = input_values(page)
    return {
        "csrf_token": _CSRF.search(body(page)).group(1),
        "submission_key": values["submission_key"],
        "observed_at": values["observed_at"],
        **dict.fromkeys(GAD7, "1"),
        **fields,
    }


def amend_form(browser, assessment_id: int, **fields) -> dict[str, str]:
    page = browser.get(f"/assessments/{assessment_id}/amend")
    assert page.status_code == 200
    values = input_values(page)
    return {
        "csrf_token": _CSRF.search(body(page)).group(1),
        "submission_key": values["submission_key"],
        "observed_at": values["observed_at"],
        "version": values["version"],
        **dict.fromkeys(GAD7, "2"),
        "reason": "Scored from the wrong sheet",
        "notes": "",
        **fields,
    }


def session_data(app, client) -> dict:
    """The session cookie's content, signature checked (it is signed, not encrypted)."""
    value = client.get_cookie("session").value
    return app.session_interface.get_signing_serializer(app).loads(value)


def assert_inert(app, response) -> None:
    """No hostile input became markup, an attribute or an evaluated template expression."""
    page = body(response)
    assert "<script>alert(1)" not in page
    assert 'onfocus="alert(1)' not in page
    assert "zqzqzqzqzqzqzq" not in page
    assert app.config["SECRET_KEY"] not in page


def concrete(rule) -> str:
    """A URL for a route: id 1, the COWS scale, PNG, a static file."""

    def value(match):
        converter = match.group(1) or "default"
        return {"id": "1", "any": "png", "path": "style.css", "int": "1"}.get(converter, "cows")

    return re.sub(r"<(?:([a-z]+)(?:\([^)]*\))?:)?([a-z_]+)>", value, rule.rule)


@pytest.fixture
def hostile(app, world, add_assessment):
    """Stored hostile text in every place a user can type it: identifier, label, notes,
    amendment and void reasons, a display name and a site name."""
    clin = world["clin_n"]
    begin_write(db.session)
    world["north"].name = f"North {SSTI}"
    clin.display_name = f"Clin {XSS}"
    db.session.commit()
    started = now_utc() - timedelta(days=1)
    patient = create_patient(clin, world["north"], XSS, ATTR, started, "opioid", f"ep {XSS}")
    first = add_assessment(patient, clin, "gad7", gad(1), notes=NOTE)
    amended = assessments.amend_assessment(
        clin,
        first,
        first.version,
        assessments.Answers(gad(2), first.observed_at, NOTE),
        f"why {XSS}",
    )
    other = add_assessment(patient, clin, "gad7", gad(0))
    assessments.void_assessment(clin, other, other.version, "other", f"void {ATTR}")
    ids = SimpleNamespace(
        patient=patient.id,
        amended=amended.id,
        voided=other.id,
        clin=clin.id,
        north=world["north"].id,
    )
    fresh()
    return ids


# --------------------------------------------------------------------------- A. input


def test_A16_multipart_field_over_max_form_memory_size_is_a_friendly_413(app, world, login):
    browser = login("clin.north")
    token = browser.csrf_token("/patients/new")
    before = data_counts(app)
    response = browser.client.post(
        "/patients/new",
        data={"csrf_token": token, "identifier": "BIG-1", "episode_note": "x" * 70_000},
        content_type="multipart/form-data",
    )
    assert response.status_code == 413
    assert "too large" in body(response) and "Traceback" not in body(response)
    assert data_counts(app) == before


def test_A17_control_characters_in_amend_and_void_reasons_are_refused(
    app, world, add_assessment, login
):
    entry = add_assessment(world["patient_n"], world["clin_n"], "gad7", gad(1)).id
    fresh()
    browser = login("clin.north")
    before = data_counts(app)
    for field, value in (("reason", "typo \x1b[31m"), ("reason", "typo\x00"), ("notes", "a\x07")):
        response = browser.post(
            f"/assessments/{entry}/amend", amend_form(browser, entry, **{field: value})
        )
        assert response.status_code == 422, (field, value)
        assert "Remove the control characters" in body(response)
    assert data_counts(app) == before
    response = browser.post(
        f"/assessments/{entry}/void",
        {"reason_code": "other", "reason": "dup\x00licate", "version": "1"},
        token_from=f"/assessments/{entry}",
    )
    assert response.status_code == 422
    with app.app_context():
        assert db.session.get(Assessment, entry).status == "active"


def test_A17_a_bidi_override_in_a_note_is_kept_and_shown_in_its_own_paragraph(app, world, login):
    browser = login("clin.north")
    pid = world["patient_n"].id
    note = "calm \u202eecalp_ni_si_tneitap"
    response = browser.post(
        f"/patients/{pid}/assessments/new/gad7", gad_form(browser, pid, notes=note)
    )
    assert response.status_code == 302
    page = body(browser.get(response.headers["Location"]))
    # A paragraph of its own is a bidi boundary: the override cannot reorder the page around it.
    assert f'<p class="prewrap">{note}</p>' in page


def test_A19_invalid_utf8_in_a_form_or_query_is_never_a_500(app, world, login):
    browser = login("clin.north")
    token = browser.csrf_token("/patients/new")
    raw = (
        f"csrf_token={token}&site_id={world['north'].id}&substance_context=opioid"
        "&identifier=%FF%FE&display_label=ok%C3%28"
    ).encode()
    response = browser.client.post(
        "/patients/new", data=raw, content_type="application/x-www-form-urlencoded"
    )
    assert response.status_code in (302, 400, 422)
    if response.status_code == 302:
        # Werkzeug keeps undecodable bytes as their %XX text: plain, valid text is stored.
        fresh()
        stored = db.session.scalar(select(Patient).order_by(Patient.id.desc()))
        assert stored.identifier == "%FF%FE"
        assert stored.display_label.encode("utf-8")
    assert browser.get("/patients/?q=%FF%FE").status_code == 200
    sup = Browser(app.test_client())
    sup.login("sup.north")
    assert sup.get("/audit/?patient=%FF&user=%FE&action=%C3").status_code == 200


# --------------------------------------------------------------------------- B. output


def test_B01_stored_markup_is_escaped_on_every_clinical_page(app, hostile, login):
    clinician = login("clin.north")
    pages = {
        "/patients/": [XSS_SHOWN, ATTR_SHOWN],
        f"/patients/{hostile.patient}": [XSS_SHOWN, ATTR_SHOWN],
        f"/assessments/{hostile.amended}": [XSS_SHOWN, ATTR_SHOWN, SSTI_SHOWN],
        f"/assessments/{hostile.amended}/history": [f"why {XSS_SHOWN}"],
        f"/assessments/{hostile.voided}": [f"void {ATTR_SHOWN}"],
        f"/patients/{hostile.patient}/tracker": [XSS_SHOWN],
        "/exports/": [SSTI_SHOWN],
        "/patients/new": [SSTI_SHOWN],
    }
    for url, shown in pages.items():
        response = clinician.get(url)
        assert response.status_code == 200, url
        assert_inert(app, response)
        assert f"Clin {XSS_SHOWN}" in body(response), url  # the display name in the header
        for fragment in shown:
            assert fragment in body(response), (url, fragment)
    # The 409 page of a stale amendment keeps the typed input, escaped.
    data = amend_form(clinician, hostile.amended, version="999", notes=NOTE, reason=f"why {XSS}")
    response = clinician.post(f"/assessments/{hostile.amended}/amend", data)
    assert response.status_code == 409
    assert_inert(app, response)
    assert XSS_SHOWN in body(response) and ATTR_SHOWN in body(response)
    # The identifier is drawn into chart SVGs (served as image/svg+xml): never as markup.
    for url in (
        f"/patients/{hostile.patient}/charts/gad7.svg",
        f"/patients/{hostile.patient}/charts/gad7/items.svg",
    ):
        response = clinician.get(url)
        assert response.status_code == 200 and response.mimetype == "image/svg+xml", url
        assert "<script" not in body(response), url


def test_B01_stored_markup_is_escaped_in_the_supervisor_and_admin_views(app, hostile, login):
    supervisor = login("sup.north")
    for url, shown in {
        "/review/": [XSS_SHOWN, f"Clin {XSS_SHOWN}"],
        "/audit/": [f"why {XSS_SHOWN}", f"void {ATTR_SHOWN}"],
        "/dashboard/": [XSS_SHOWN, ATTR_SHOWN],
    }.items():
        response = supervisor.get(url)
        assert response.status_code == 200, url
        assert_inert(app, response)
        for fragment in shown:
            assert fragment in body(response), (url, fragment)
    admin = login("admin.one")
    for url in (
        "/admin/",
        f"/admin/users/{hostile.clin}",
        f"/admin/users/{hostile.clin}/edit",
        f"/admin/sites/{hostile.north}/edit",
    ):
        response = admin.get(url)
        assert response.status_code == 200, url
        assert_inert(app, response)
        assert XSS_SHOWN in body(response) or SSTI_SHOWN in body(response), url


def test_B01_a_flash_message_is_escaped(app, world, browser):
    browser.get("/login")
    with browser.client.session_transaction() as session:
        session["_flashes"] = [("info", XSS)]
    response = browser.get("/login")
    assert XSS_SHOWN in body(response)
    assert_inert(app, response)


def test_B02_echoed_input_cannot_break_out_of_an_attribute(app, world, login):
    anonymous = Browser(app.test_client())
    refused = anonymous.post("/login", {"username": ATTR, "password": "not the password"})
    assert refused.status_code == 200 and ATTR_SHOWN in body(refused)
    assert_inert(app, refused)

    browser = login("clin.north")
    pid = world["patient_n"].id
    form = {"site_id": str(world["north"].id), "identifier": ATTR, "display_label": ATTR}
    for response in (
        browser.post("/patients/new", form),  # no substance context: 422, input kept
        browser.post(
            f"/patients/{pid}/assessments/new/gad7", gad_form(browser, pid, notes=NOTE, nervous="9")
        ),
        browser.get("/patients/", query_string={"q": ATTR}),
    ):
        assert response.status_code in (200, 422)
        assert ATTR_SHOWN in body(response)
        assert_inert(app, response)

    supervisor = login("sup.north")
    response = supervisor.get(
        "/audit/", query_string={"patient": ATTR, "user": ATTR, "start": ATTR}
    )
    assert response.status_code == 400
    assert body(response).count(ATTR_SHOWN) == 3
    assert_inert(app, response)


def test_B03_data_never_becomes_a_link(app, world, add_assessment, login):
    patient = create_patient(
        world["clin_n"],
        world["north"],
        "javascript:alert(1)",
        "javascript:alert(2)",
        now_utc() - timedelta(days=1),
        "opioid",
        "",
    )
    add_assessment(patient, world["clin_n"], "gad7", gad(1), notes="https://evil.example/x")
    pid = patient.id
    fresh()
    urls = ["/patients/", f"/patients/{pid}", f"/patients/{pid}/tracker"]
    clinician = login("clin.north")
    supervisor = login("sup.north")
    pages = [clinician.get(url) for url in urls]
    pages += [supervisor.get(url) for url in ("/review/", "/dashboard/", "/audit/")]
    for response in pages:
        assert response.status_code == 200
        assert not re.search(r'(href|src|action)="\s*javascript:', body(response), re.I)
        assert 'href="https://evil.example' not in body(response)


def test_B04_template_injection_is_rendered_literally(app, world, add_assessment, login):
    entry = add_assessment(world["patient_n"], world["clin_n"], "gad7", gad(1), notes=SSTI).id
    fresh()
    response = login("clin.north").get(f"/assessments/{entry}")
    assert SSTI in html.unescape(body(response))  # shown as typed, braces and all
    assert_inert(app, response)


def test_B05_mathtext_in_an_identifier_does_not_break_the_charts(app, world, add_assessment, login):
    # "$$" alone made matplotlib's savefig raise; an unbalanced "$" and TeX commands are
    # other ways in. Labels are drawn literally (parse_math off), so every chart renders.
    patient = create_patient(
        world["clin_n"],
        world["north"],
        "$$ $\\frac{1}{2}$ x^_{ 50%",
        "$$",
        now_utc() - timedelta(days=1),
        "kratom",
        "",
    )
    add_assessment(patient, world["clin_n"], "cows")
    add_assessment(patient, world["clin_n"], "symptom_nrs")
    pid = patient.id
    fresh()
    browser = login("clin.north")
    for url in (
        f"/patients/{pid}/charts/cows.png",
        f"/patients/{pid}/charts/cows/items.svg",
        f"/patients/{pid}/charts/domains.png",
        f"/patients/{pid}/tracker",
    ):
        assert browser.get(url).status_code == 200, url


def test_B08_error_pages_do_not_echo_the_request(app, world, login):
    anonymous = Browser(app.test_client())
    for response in (
        anonymous.get(f"/nowhere?{XSS}={XSS}"),
        anonymous.get(f"/login/{XSS}"),
        anonymous.post("/login", {"username": XSS, "password": XSS}, csrf=False),  # CSRF 400
    ):
        assert response.status_code in (400, 404)
        assert "alert(1)" not in body(response)
        assert "Traceback" not in body(response)
    browser = login("clin.north")
    response = browser.client.get(f"/logout?{XSS}")
    assert response.status_code == 405
    assert "alert(1)" not in body(response)


# --------------------------------------------------------------------------- C. exports


def test_C08_thirty_exports_in_a_minute_are_refused_past_the_limit(
    app, world, add_assessment, login
):
    browser = login("clin.north")
    add_assessment(world["patient_n"], world["clin_n"], "gad7", gad(1), observed_at=now_utc())
    before = last_audit_id(app)
    limit = app.config["EXPORTS_PER_MINUTE"]
    assert limit == 20  # the default
    responses = [browser.get("/exports/assessments.csv") for _ in range(30)]
    assert [r.status_code for r in responses] == [200] * limit + [429] * (30 - limit)
    for refused in responses[limit:]:
        assert refused.mimetype == "text/plain"
        assert "Content-Disposition" not in refused.headers
        assert "N-001" not in body(refused) and "assessment_id" not in body(refused)
        assert 1 <= int(refused.headers["Retry-After"]) <= 60
        assert f"Try again in {refused.headers['Retry-After']} seconds" in body(refused)
    actions = [event.action for event in audit_events(app, before)]
    assert actions.count("export") == limit
    assert actions.count("export_rate_limited") == 30 - limit


def test_C09_a_full_width_formula_identifier_is_normalised_then_neutralised(
    app, world, add_assessment, login
):
    browser = login("clin.north")
    response = browser.post(
        "/patients/new",
        {
            "site_id": str(world["north"].id),
            "identifier": "\uff1d1+1",  # FULLWIDTH EQUALS SIGN
            "substance_context": "opioid",
            "started_at": "",
        },
    )
    assert response.status_code == 302
    fresh()
    patient = db.session.scalar(select(Patient).where(Patient.identifier == "=1+1"))
    assert patient is not None  # NFKC at input
    add_assessment(patient, world["clin_n"], "gad7", gad(1), observed_at=now_utc())
    fresh()
    export = browser.get("/exports/assessments.csv", query_string={"scale": "gad7"})
    lines = [line for line in body(export).splitlines() if not line.startswith("#")]
    rows = list(csv.DictReader(io.StringIO("\n".join(lines))))
    assert {row["patient_identifier"] for row in rows} == {"'=1+1"}


# --------------------------------------------------------------------------- D. injection

SQL_STRINGS = [
    "' OR '1'='1",
    "' OR 1=1 --",
    '" OR ""="',
    "1 OR 1=1",
    "N-001' --",
    "'; DROP TABLE assessment;--",
    "'; DELETE FROM patient; --",
    "1; DROP TABLE audit_event",
]


def _query_everything(app, clinician, supervisor, value):
    """Every filter and search parameter the app reads, with ``value``; the statuses."""
    statuses = []
    page = clinician.get("/patients/", query_string={"q": value})
    statuses.append(page.status_code)
    assert listed_identifiers(page) == [], value
    for param in ("site", "patient", "scale", "layout", "profile"):
        statuses.append(
            clinician.get("/exports/assessments.csv", query_string={param: value}).status_code
        )
    for param in ("patient", "user", "action"):
        page = supervisor.get("/audit/", query_string={param: value})
        statuses.append(page.status_code)
        assert "No events match." in body(page), (param, value)
    statuses.append(
        supervisor.get("/review/", query_string={"patient": value, "scale": value}).status_code
    )
    return statuses


def test_D01_sql_tautologies_match_literally_and_find_nothing(app, world, login):
    clinician, supervisor = login("clin.north"), login("sup.north")
    for value in SQL_STRINGS[:5]:
        statuses = _query_everything(app, clinician, supervisor, value)
        assert set(statuses) <= {200, 400, 404}, (value, statuses)


def test_D02_sql_statements_in_parameters_drop_nothing(app, world, add_assessment, login):
    add_assessment(world["patient_n"], world["clin_n"], "gad7", gad(1))
    fresh()
    before, audit_before = data_counts(app), last_audit_id(app)
    clinician, supervisor = login("clin.north"), login("sup.north")
    for value in SQL_STRINGS[5:]:
        statuses = _query_everything(app, clinician, supervisor, value)
        assert set(statuses) <= {200, 400, 404}, (value, statuses)
    assert data_counts(app) == before
    assert last_audit_id(app) > audit_before  # the table is still there and still written


def test_D05_date_filters_with_sql_are_400(app, world, login):
    pid = world["patient_n"].id
    clinician, supervisor = login("clin.north"), login("sup.north")
    for value, key in itertools.product(
        ("2024-01-01' OR 1=1--", "2024-01-01; DROP TABLE patient", "'"), ("start", "end")
    ):
        assert (
            clinician.get("/exports/assessments.csv", query_string={key: value}).status_code == 400
        )
        assert (
            clinician.get(f"/patients/{pid}/charts/cows.png", query_string={key: value}).status_code
            == 400
        )
        assert (
            clinician.get(f"/patients/{pid}/tracker", query_string={key: value}).status_code == 400
        )
        assert supervisor.get("/audit/", query_string={key: value}).status_code == 400


def test_D06_a_10000_character_search_is_refused_and_stored_nowhere(app, world, login):
    browser = login("clin.north")
    start = last_audit_id(app)
    query = "N-001" + "Q" * 9995
    page = browser.get("/patients/", query_string={"q": query})
    assert page.status_code == 200
    assert "Field cannot be longer than 64 characters." in body(page)
    assert browser.get("/patients/", query_string={"q": "N-001"}).status_code == 200
    # Searching is not written anywhere: no audit event, so no identifier typed as a query.
    assert audit_events(app, start) == []


# --------------------------------------------------------------------------- E. authentication


def test_E01_unknown_user_and_wrong_password_cost_one_hash_check_each(app, world, monkeypatch):
    from clinic_log.auth import services

    calls = []
    real = services.check_password_hash

    def counting(pwhash, password):
        calls.append(pwhash.split("$")[0])
        return real(pwhash, password)

    monkeypatch.setattr(services, "check_password_hash", counting)
    methods = {}
    for username in ("clin.north", "nobody.at.all"):
        calls.clear()
        browser = Browser(app.test_client())
        response = browser.post("/login", {"username": username, "password": "wrong password!"})
        assert response.status_code == 200
        assert len(calls) == 1, (username, calls)
        methods[username] = calls[0]
    # The same work either way: the dummy hash of an unknown user uses the configured method.
    assert methods["clin.north"] == methods["nobody.at.all"] == app.config["PASSWORD_HASH_METHOD"]
    assert [e.action for e in audit_events(app)][-2:] == ["login_failure", "login_failure"]


def test_E05_the_same_password_gets_a_different_salt_each_time(app, world):
    with app.app_context():
        hashes = db.session.scalars(select(User.password_hash)).all()
    assert len(hashes) == 4 and len(set(hashes)) == 4
    salts = {h.split("$")[1] for h in hashes}
    assert len(salts) == 4
    assert not any(PASSWORD in h for h in hashes)


def test_E07_a_fresh_install_has_no_account_and_no_default_login(app):
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(User)) == 0
    for username, password in (("admin", "admin"), ("admin", "password"), ("root", "changeme")):
        browser = Browser(app.test_client())
        response = browser.post("/login", {"username": username, "password": password})
        assert response.status_code == 200
        assert browser.get("/patients/").status_code == 302


# --------------------------------------------------------------------------- F. sessions


def test_F01_session_cookie_is_host_only_with_path_root(app, world, browser):
    cookie = browser.client.get("/login", base_url=HTTPS).headers["Set-Cookie"]
    assert cookie.startswith("session=")
    assert "Path=/" in cookie and "Domain=" not in cookie
    assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert "Expires=" not in cookie and "Max-Age=" not in cookie  # a browser-session cookie


def test_F05_login_drops_everything_from_before_and_a_planted_cookie_stays_anonymous(
    app, world, make_browser
):
    attacker = make_browser()
    attacker.get("/login")
    planted = attacker.client.get_cookie("session").value

    victim = make_browser()
    victim.client.set_cookie("session", planted)
    token = victim.csrf_token("/login")
    with victim.client.session_transaction() as session:
        session["foo"] = "bar"
        session["_flashes"] = [("info", "left over from before login")]
    victim.post("/login", {"csrf_token": token, "username": "clin.north", "password": PASSWORD})
    assert victim.last.status_code == 302
    after = session_data(app, victim.client)
    assert "foo" not in after and "_flashes" not in after
    assert after["_user_id"].startswith(f"{world['clin_n'].id}:")
    assert victim.client.get_cookie("session").value != planted
    assert victim.get("/patients/").status_code == 200
    # The attacker's copy of the pre-login cookie never became a logged-in session.
    assert attacker.get("/patients/").status_code == 302


def test_F06_a_tampered_session_cookie_is_anonymous_never_a_500(app, world, login):
    browser = login("clin.north")
    original = browser.client.get_cookie("session").value
    serializer = app.session_interface.get_signing_serializer(app)
    data = serializer.loads(original)
    wrong_app = Flask("wrong")
    wrong_app.secret_key = "a different key, never this app's " + "y" * 20
    wrong = app.session_interface.get_signing_serializer(wrong_app)
    admin_token = f"{world['admin'].id}:0"
    payload, _, signature = original.rpartition(".")
    flipped = payload + "." + ("A" if signature[0] != "A" else "B") + signature[1:]
    forged_payload = serializer.dumps({**data, "_user_id": admin_token}).rpartition(".")[0]
    cookies = {
        "flipped signature": flipped,
        "signed with a wrong key": wrong.dumps(data),
        "payload swapped, old signature": forged_payload + "." + signature,
        "garbage": "not-a-cookie",
        "empty": "",
    }
    for what, value in cookies.items():
        client = app.test_client()
        client.set_cookie("session", value)
        response = client.get("/patients/")
        assert response.status_code == 302, what
        assert response.headers["Location"].startswith("/login"), what
    # Control: the same content signed with the app's own key is accepted.
    client = app.test_client()
    client.set_cookie("session", serializer.dumps(data))
    assert client.get("/patients/").status_code == 200


def test_F07_a_cookie_signed_with_a_fallback_key_works_until_the_key_is_dropped(app, world, login):
    stolen_or_old = login("clin.north").client.get_cookie("session").value
    old_key = app.config["SECRET_KEY"]
    new_key = "the rotated key, long and random enough " + "z" * 20

    def rotated(fallbacks):
        settings = {
            key: app.config[key] for key in ("TESTING", "DATABASE_URL", "PASSWORD_HASH_METHOD")
        }
        rotated_app = create_app(
            {
                **settings,
                "INSTANCE_PATH": app.instance_path,
                "SECRET_KEY": new_key,
                "SECRET_KEY_FALLBACKS": fallbacks,
            }
        )
        rotated_app.test_client_class = IsolatedClient
        return rotated_app

    with_fallback, without = rotated([old_key]), rotated([])
    try:
        client = with_fallback.test_client()
        client.set_cookie("session", stolen_or_old)
        assert client.get("/patients/").status_code == 200  # the old key is still accepted
        renewed = client.get_cookie("session").value  # and the answer is signed anew
        client = without.test_client()
        client.set_cookie("session", stolen_or_old)
        assert client.get("/patients/").status_code == 302  # dropped key: anonymous
        client = without.test_client()
        client.set_cookie("session", renewed)
        assert client.get("/patients/").status_code == 200  # re-signed with the new key
    finally:
        for rotated_app in (with_fallback, without):
            with rotated_app.app_context():
                db.session.remove()
                db.engine.dispose()


def test_F08_no_patient_data_in_the_cookie_after_saving_with_a_flash(app, world, login):
    browser = login("clin.north")
    created = browser.post(
        "/patients/new",
        {
            "site_id": str(world["north"].id),
            "identifier": "F08-ZX-41",
            "display_label": "Bed F08QX",
            "substance_context": "kratom",
            "started_at": "",
            "episode_note": "episode note F08-EP-TEXT",
        },
    )
    assert created.status_code == 302
    pid = int(created.headers["Location"].rsplit("/", 1)[1])
    saved = browser.post(
        f"/patients/{pid}/assessments/new/gad7",
        gad_form(browser, pid, notes="tremulous, F08-NOTE-TEXT"),
    )
    assert saved.status_code == 302
    data = session_data(app, browser.client)
    assert data.get("_flashes"), "the flash of the save is in the cookie"
    content = json.dumps(data, default=str)
    for phi in ("F08-ZX-41", "Bed F08QX", "F08-EP-TEXT", "F08-NOTE-TEXT", "N-001", "Test N"):
        assert phi not in content, phi


def test_F09_a_cookie_replayed_with_another_user_agent_is_logged_out(app, world, login):
    browser = login("clin.north")
    stolen = browser.client.get_cookie("session").value
    thief = app.test_client()
    thief.set_cookie("session", stolen)
    response = thief.get("/patients/", headers={"User-Agent": "curl/8.0 (somewhere else)"})
    assert response.status_code == 302


# --------------------------------------------------------------------------- G. authorisation


def test_G07_enumerating_ids_finds_only_my_sites_objects(app, world, add_assessment, login):
    extra = [
        create_patient(
            world[clin], world[site], code, None, now_utc() - timedelta(days=1), "opioid", ""
        )
        for clin, site, code in (("clin_s", "south", "S-002"), ("clin_n", "north", "N-002"))
    ]
    patients = [world["patient_n"], world["patient_s"], *extra]
    entries = [
        add_assessment(p, world["clin_n" if p.site.code == "NORTH" else "clin_s"], "gad7", gad(1))
        for p in patients
    ]
    own_patients = {p.id for p in patients if p.site.code == "NORTH"}
    own_entries = {a.id for a in entries if a.patient.site.code == "NORTH"}
    top_patient, top_entry = max(p.id for p in patients) + 2, max(a.id for a in entries) + 2
    fresh()
    browser = login("clin.north")
    start = last_audit_id(app)
    refused = 0
    for pid in range(1, top_patient + 1):
        # (Chart images use the same guard: test_chart_routes.py checks them.)
        for url in (f"/patients/{pid}", f"/patients/{pid}/tracker"):
            status = browser.get(url).status_code
            assert status == (200 if pid in own_patients else 404), url
            refused += status == 404
    for aid in range(1, top_entry + 1):
        for url in (f"/assessments/{aid}", f"/assessments/{aid}/history"):
            status = browser.get(url).status_code
            assert status == (200 if aid in own_entries else 404), url
            refused += status == 404
    events = audit_events(app, start)
    assert [e.action for e in events if e.action == "access_refused"] == [
        "access_refused"
    ] * refused
    # What was shown was shown only from my own site (I12 writes those reads).
    views = [e for e in events if e.action != "access_refused"]
    assert {e.action for e in views} == {"view_patient", "view_assessment"}
    assert {e.patient_id for e in views} == own_patients


def test_G08_a_role_removed_in_the_database_applies_at_the_next_request(
    app, world, add_assessment, login
):
    entry = add_assessment(world["patient_n"], world["clin_n"], "gad7", gad(1)).id
    sup_id = world["sup_n"].id
    fresh()
    supervisor = login("sup.north")
    assert supervisor.get("/review/").status_code == 200
    with app.app_context():
        begin_write(db.session)
        db.session.execute(update(User).where(User.id == sup_id).values(role="clinician"))
        db.session.commit()
    # The role is read from the database on every request, never from the cookie.
    assert supervisor.get("/review/").status_code == 403
    assert supervisor.get("/dashboard/").status_code == 403
    signed = supervisor.post(
        f"/assessments/{entry}/sign",
        {"password": PASSWORD, "version": "1"},
        token_from=f"/assessments/{entry}",
    )
    assert signed.status_code == 403
    fresh()
    assert db.session.scalar(select(func.count()).select_from(Signature)) == 0


def test_G10_state_changes_are_post_only_and_trace_is_refused(app, world, login):
    browser = login("clin.north")
    post_only = 0
    for rule in app.url_map.iter_rules():
        url = concrete(rule)
        methods = rule.methods - {"HEAD", "OPTIONS"}
        assert browser.client.open(url, method="TRACE").status_code == 405, url
        if methods == {"POST"}:
            post_only += 1
            for method in ("GET", "PUT", "DELETE", "PATCH"):
                assert browser.client.open(url, method=method).status_code == 405, (method, url)
    assert post_only >= 10
    assert browser.get("/patients/").status_code == 200  # still logged in: nothing happened


# --------------------------------------------------------------------------- H. CSRF, headers


def test_H03_an_expired_token_keeps_the_input_and_saves_nothing(app, world, login, monkeypatch):
    browser = login("clin.north")
    token = browser.csrf_token("/patients/new")
    form = {
        "csrf_token": token,
        "site_id": str(world["north"].id),
        "identifier": "H03-1",
        "display_label": "Typed an hour ago",
        "substance_context": "other",
        "started_at": "",
    }
    # Only the signing clock travels (past WTF_CSRF_TIME_LIMIT); the session stays fresh.
    real = time.time
    monkeypatch.setattr("itsdangerous.timed.time", SimpleNamespace(time=lambda: real() + 3601))
    before = data_counts(app)
    response = browser.post("/patients/new", form)
    assert response.status_code == 422
    assert "The form expired or was sent from elsewhere" in html.unescape(body(response))
    assert input_values(response)["display_label"] == "Typed an hour ago"
    assert data_counts(app) == before
    # A form without input to keep (log out) gets the friendly page, and does nothing.
    logout = browser.post("/logout", {"csrf_token": token})
    assert logout.status_code == 400 and "This form expired" in body(logout)
    assert browser.get("/patients/").status_code == 200  # still logged in


def _https_login(app, username="clin.north"):
    client = app.test_client()
    token = _CSRF.search(body(client.get("/login", base_url=HTTPS))).group(1)
    response = client.post(
        "/login",
        base_url=HTTPS,
        data={"csrf_token": token, "username": username, "password": PASSWORD},
        headers={"Referer": f"{HTTPS}/login"},
    )
    assert response.status_code == 302
    return client


def _https_token(client, url):
    return _CSRF.search(body(client.get(url, base_url=HTTPS))).group(1)


def test_H04_https_post_without_a_same_origin_referer_is_400(app, world):
    anonymous = app.test_client()
    token = _CSRF.search(body(anonymous.get("/login", base_url=HTTPS))).group(1)
    client = _https_login(app)  # a same-origin Referer: accepted
    logout_token = _https_token(client, "/patients/")
    for referer in (None, "https://evil.example/patients/", "http://localhost/"):
        headers = {"Referer": referer} if referer else {}
        response = anonymous.post(
            "/login",
            base_url=HTTPS,
            data={"csrf_token": token, "username": "clin.north", "password": PASSWORD},
            headers=headers,
        )
        assert response.status_code == 400 and "This form expired" in body(response), referer
        response = client.post(
            "/logout", base_url=HTTPS, data={"csrf_token": logout_token}, headers=headers
        )
        assert response.status_code == 400, referer
        assert client.get("/patients/", base_url=HTTPS).status_code == 200  # still logged in
    # The chosen Referrer-Policy still sends a same-origin Referer, so forms keep working.
    assert client.get("/patients/", base_url=HTTPS).headers["Referrer-Policy"] == "same-origin"


def test_H04_https_form_post_without_a_same_origin_referer_saves_nothing(app, world):
    client = _https_login(app)
    token = _https_token(client, "/patients/new")
    before = data_counts(app)
    for referer in (None, "https://evil.example/patients/new"):
        response = client.post(
            "/patients/new",
            base_url=HTTPS,
            data={
                "csrf_token": token,
                "site_id": str(world["north"].id),
                "identifier": f"H04-{len(referer or '')}",
                "substance_context": "opioid",
                "started_at": "",
            },
            headers={"Referer": referer} if referer else {},
        )
        assert response.status_code in (400, 422), referer
        assert data_counts(app) == before, referer


def test_H05_security_headers_on_every_kind_of_response(app, world, add_assessment, login):
    def explode():
        raise RuntimeError("h05")

    app.add_url_rule("/test-only/h05", "h05_explode", explode)
    add_assessment(world["patient_n"], world["clin_n"], "cows")
    pid = world["patient_n"].id
    fresh()
    browser = login("clin.north")
    responses = {
        "200 page": browser.get(f"/patients/{pid}"),
        "302 redirect": browser.get("/"),
        "404": browser.get("/patients/999999"),
        "403": browser.get("/admin/"),
        "405": browser.get("/logout"),
        "500": browser.get("/test-only/h05"),
        "CSV": browser.get("/exports/assessments.csv"),
        "PNG": browser.get(f"/patients/{pid}/charts/cows.png"),
        "HTTPS": app.test_client().get("/login", base_url=HTTPS),
    }
    expected = {"200 page": 200, "302 redirect": 302, "CSV": 200, "PNG": 200, "HTTPS": 200}
    expected.update({what: int(what) for what in responses if what.isdigit()})
    assert {what: r.status_code for what, r in responses.items()} == expected
    for what, response in responses.items():
        csp = response.headers["Content-Security-Policy"]
        for directive in ("object-src 'none'", "base-uri 'none'", "frame-ancestors 'none'"):
            assert directive in csp, (what, directive)
        assert "unsafe-inline" not in csp and "unsafe-eval" not in csp, what
        assert response.headers["X-Content-Type-Options"] == "nosniff", what
        assert response.headers["Referrer-Policy"] == "same-origin", what
        if what == "PNG":
            # Charts: revalidated with an ETag on every view, never kept by shared caches.
            assert response.headers["Cache-Control"] == "private, no-cache"
        else:
            assert response.headers["Cache-Control"] == "no-store", what
        assert ("Strict-Transport-Security" in response.headers) == (what == "HTTPS"), what
    assert responses["CSV"].mimetype == "text/csv"
    assert responses["CSV"].headers["Content-Disposition"].startswith("attachment;")
    assert responses["HTTPS"].headers["Strict-Transport-Security"].startswith("max-age=31536000")


def test_H06_a_foreign_host_header_is_refused(app, world):
    client = app.test_client()
    for url in ("/", "/login", "/patients/", "/patients/1/tracker"):
        response = client.get(url, headers={"Host": "evil.example"})
        assert response.status_code == 400, url
        assert "evil.example" not in body(response)
    for host in ("localhost", "127.0.0.1:5000"):
        assert client.get("/login", headers={"Host": host}).status_code == 200, host


def test_H06_no_absolute_url_is_built_from_the_host_header(app, world):
    # Even where any host is accepted ("*"), redirects and pages use relative URLs.
    app.config["TRUSTED_HOSTS"] = None
    client = app.test_client()
    evil = {"Host": "evil.example"}
    for url in ("/", "/patients/", "/patients/1/tracker"):
        response = client.get(url, headers=evil)
        assert response.status_code == 302
        assert response.headers["Location"].startswith("/login"), response.headers["Location"]
    page = client.get("/login", headers=evil)
    assert "evil.example" not in body(page)
    assert not re.search(r'(href|src|action)="https?://', body(page))


# --------------------------------------------------------------------------- I. audit


def test_I07_a_csrf_failure_is_recorded_as_a_security_event(app, world, login):
    browser = login("clin.north")
    start = last_audit_id(app)
    response = browser.post(
        "/patients/new",
        {"site_id": str(world["north"].id), "identifier": "I07-1", "substance_context": "opioid"},
        csrf=False,
    )
    assert response.status_code == 422
    assert data_counts(app)[0] == 2
    assert [e for e in audit_events(app, start) if "csrf" in f"{e.action} {e.details}".lower()]


def test_I10_a_signature_copied_to_another_entry_does_not_verify(world, add_assessment):
    first = add_assessment(world["patient_n"], world["clin_n"], "gad7", gad(1))
    twin = add_assessment(world["patient_n"], world["clin_n"], "gad7", gad(1))
    signature = review.sign_assessment(world["sup_n"], first, PASSWORD, first.version)
    assert review.signature_intact(signature)
    columns = {
        "assessment_id": twin.id,
        "signer_id": signature.signer_id,
        "signer_name": signature.signer_name,
        "meaning": signature.meaning,
        "signed_at": signature.signed_at,
        "content_hash": signature.content_hash,
    }
    fresh()
    with db.engine.begin() as conn:
        result = conn.execute(Signature.__table__.insert().values(**columns))
        copied = result.inserted_primary_key[0]
    fresh()
    # Same scores, same notes, same recorder: the hash still names the entry it was made for.
    assert not review.signature_intact(db.session.get(Signature, copied))


def test_I11_no_password_token_or_cookie_in_the_audit_trail_or_the_logs(
    app, world, add_assessment, login, make_browser, caplog
):
    caplog.set_level(logging.DEBUG)
    wrong, new = "Wrong-Passphrase-I11-one", "a brand new passphrase i11 two"
    make_browser().post("/login", {"username": "clin.north", "password": wrong})
    entry = add_assessment(world["patient_n"], world["clin_n"], "gad7", gad(1)).id
    fresh()
    clinician, supervisor = login("clin.north"), login("sup.north")
    secrets = {PASSWORD, wrong, new}
    tokens = {clinician.csrf_token("/patients/"), supervisor.csrf_token("/review/")}
    cookies = {b.client.get_cookie("session").value for b in (clinician, supervisor)}
    pid = world["patient_n"].id
    clinician.post(f"/patients/{pid}/assessments/new/gad7", gad_form(clinician, pid))
    clinician.post("/patients/new", {"identifier": "I11-1"}, csrf=False)  # CSRF refusal
    supervisor.post(
        f"/assessments/{entry}/sign",
        {"password": "not my password at all", "version": "1"},
        token_from=f"/assessments/{entry}",
    )
    supervisor.post(
        f"/assessments/{entry}/sign",
        {"password": PASSWORD, "version": "1"},
        token_from=f"/assessments/{entry}",
    )
    changed = clinician.post(
        "/account/password",
        {"current_password": PASSWORD, "password": new, "confirm": new},
    )
    assert changed.status_code == 302
    admin = login("admin.one")
    uid = world["sup_n"].id
    reset = admin.post(f"/admin/users/{uid}/reset-password", token_from=f"/admin/users/{uid}")
    one_time = re.search(r'id="one-time-password"[^>]*>([^<]+)<', body(reset)).group(1)
    with app.app_context():
        hashes = set(db.session.scalars(select(User.password_hash)))
    everything = "\n".join(
        json.dumps({c.name: getattr(e, c.name) for c in AuditEvent.__table__.columns}, default=str)
        for e in audit_events(app)
    )
    logs = caplog.text
    for secret in secrets | tokens | cookies | hashes | {one_time}:
        assert secret not in everything
        assert secret not in logs
    assert "login_failure" in everything and "review_refused" in everything


def test_I11_a_note_with_a_forged_log_line_forges_nothing(app, world, login, caplog):
    caplog.set_level(logging.DEBUG)
    browser = login("clin.north")
    pid = world["patient_n"].id
    forged = "calm\r\nFAKE login_success admin.one\r\n"
    response = browser.post(
        f"/patients/{pid}/assessments/new/gad7", gad_form(browser, pid, notes=forged)
    )
    assert response.status_code == 302
    assert "FAKE" not in caplog.text  # notes are data: never written to the log
    event = audit_events(app)[-1]
    assert event.action == "assessment_create"
    assert "\r" not in event.details and "\n" not in event.details  # JSON-escaped, one line


def test_I11_a_crafted_path_cannot_forge_a_log_line(app, world):
    def explode(rest):
        raise RuntimeError("i11")

    app.add_url_rule("/test-only/i11/<rest>", "i11_explode", explode)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        logging.Formatter("[%(asctime)s] %(levelname)s in %(module)s: %(message)s")
    )
    logger = logging.getLogger("clinic_log")
    logger.addHandler(handler)
    try:
        response = app.test_client().get("/test-only/i11/x%0d%0aFAKE%20login_success%20admin.one")
    finally:
        logger.removeHandler(handler)
    assert response.status_code == 500
    assert "unhandled error, incident" in stream.getvalue()
    # Whatever the path is logged as, it must not start a line of its own.
    assert not any(line.startswith("FAKE") for line in stream.getvalue().splitlines())


def test_I12_reading_a_patients_data_is_audited(app, world, add_assessment, login):
    add_assessment(world["patient_n"], world["clin_n"], "cows")
    pid = world["patient_n"].id
    fresh()
    browser = login("clin.north")
    for url in (f"/patients/{pid}", f"/patients/{pid}/charts/cows.png", f"/patients/{pid}/tracker"):
        start = last_audit_id(app)
        assert browser.get(url).status_code == 200
        views = [e for e in audit_events(app, start) if e.patient_id == pid]
        assert len(views) == 1 and views[0].username == "clin.north", url


# --------------------------------------------------------------------------- J. storage


def test_J10_a_nul_byte_where_no_form_validator_runs_is_never_a_500(
    app, world, add_assessment, login
):
    entry = add_assessment(world["patient_n"], world["clin_n"], "gad7", gad(1)).id
    pid = world["patient_n"].id
    fresh()
    clinician, supervisor = login("clin.north"), login("sup.north")
    statuses = {
        "login username": Browser(app.test_client())
        .post("/login", {"username": "clin.north\x00", "password": PASSWORD})
        .status_code,
        "patient search": clinician.get("/patients/", query_string={"q": "N\x00"}).status_code,
    }
    for param in ("patient", "user", "action"):
        response = supervisor.get("/audit/", query_string={param: "x\x00y"})
        statuses[f"audit {param}"] = response.status_code
    for form, url, data in (
        ("entry", f"/patients/{pid}/assessments/new/gad7", gad_form(clinician, pid)),
        ("amend", f"/assessments/{entry}/amend", amend_form(clinician, entry)),
    ):
        data["submission_key"] = "k\x00" + data["submission_key"][2:]
        statuses[f"{form} submission_key"] = clinician.post(url, data).status_code
    assert 500 not in statuses.values(), statuses


def test_J10_a_nul_byte_in_every_form_text_field_is_a_422(app, world, add_assessment, login):
    entry = add_assessment(world["patient_n"], world["clin_n"], "gad7", gad(1)).id
    pid = world["patient_n"].id
    fresh()
    before = data_counts(app)
    clinician = login("clin.north")
    statuses = [
        clinician.post(
            f"/patients/{pid}/assessments/new/gad7", gad_form(clinician, pid, notes="a\x00")
        ).status_code,
        clinician.post(
            f"/assessments/{entry}/amend", amend_form(clinician, entry, reason="a\x00")
        ).status_code,
        clinician.post(
            "/patients/new",
            {
                "site_id": str(world["north"].id),
                "identifier": "J\x0010",
                "substance_context": "opioid",
            },
        ).status_code,
    ]
    admin = login("admin.one")
    statuses.append(
        admin.post(
            "/admin/sites/new", {"code": "EAST", "name": "E\x00", "timezone": "UTC"}
        ).status_code
    )
    statuses.append(
        admin.post(
            f"/admin/users/{world['clin_n'].id}/edit",
            {"display_name": "C\x00", "role": "clinician", "sites": ["NORTH"]},
        ).status_code
    )
    assert statuses == [422] * 5
    assert data_counts(app) == before


# --------------------------------------------------------------------------- K. errors, config


def test_K01_a_database_error_shows_no_sql_and_no_schema(app, world, browser, caplog):
    def broken_query():
        db.session.execute(text("SELECT secret_column FROM k01_no_such_table"))
        return "unreachable"

    app.add_url_rule("/test-only/k01", "k01_explode", broken_query)
    response = browser.get("/test-only/k01")
    page = body(response)
    assert response.status_code == 500
    for leak in ("k01_no_such_table", "secret_column", "SELECT", "sqlalchemy", "Traceback"):
        assert leak not in page, leak
    incident = re.search(r"<strong>([0-9a-f]{12})</strong>", page).group(1)
    assert incident in caplog.text and "k01_no_such_table" in caplog.text


def test_K02_debug_mode_outside_tests_stops_start_up(tmp_path):
    with pytest.raises(ConfigError):
        create_app(
            {
                "INSTANCE_PATH": str(tmp_path),
                "DATABASE_URL": "sqlite://",
                "SECRET_KEY": "k" * 40,
                "DEBUG": True,
            }
        )


def _version(text_version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text_version)[:3])


def test_K03_dependencies_are_at_or_above_their_security_floors():
    floors = {"flask": (3, 1, 3), "werkzeug": (3, 1, 6), "jinja2": (3, 1, 6)}
    for package, floor in floors.items():
        assert _version(importlib.metadata.version(package)) >= floor, package
