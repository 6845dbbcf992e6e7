"""Promises every page keeps: the no-advice notice, security headers, login before anything,
and no dosing or medication wording anywhere in the product."""

import re
from pathlib import Path

import pytest
from werkzeug.routing import AnyConverter, IntegerConverter

from clinic_log.scales import BUILTIN_DIR

ROOT = Path(__file__).resolve().parents[1]
NOTICE = "clinic_log records symptoms. It gives no dosing or treatment advice."
# The one place the product may name dosing: saying that it gives none.
ALLOWED = re.compile(r"gives? no dosing or treatment advice|no dose, medication")
DOSING = re.compile(
    r"\b\d+(\.\d+)? ?(mg|mcg|ug|ml)\b|\bdos(e|es|ing|age)\b|\bmedication\b|buprenorphine|"
    r"methadone|naloxone|\binduction\b|\btaper|titrat|next dose|give \d",
    re.IGNORECASE,
)


def product_files():
    for folder, pattern in ((ROOT / "templates", "**/*.html"), (BUILTIN_DIR, "*.toml")):
        yield from sorted(folder.glob(pattern))
    yield ROOT / "static" / "style.css"
    yield from sorted((ROOT / "static").glob("*.js"))


@pytest.mark.parametrize("path", list(product_files()), ids=lambda p: p.name)
def test_no_dosing_wording_in_templates_or_scale_files(path):
    text = ALLOWED.sub("", path.read_text())
    assert not DOSING.search(text), DOSING.search(text).group(0)


def test_pages_carry_the_notice_and_no_dosing_wording(browser, world, add_assessment):
    add_assessment(world["patient_n"], world["clin_n"])
    browser.login("clin.north")
    pid = world["patient_n"].id
    pages = ["/patients/", "/patients/new", f"/patients/{pid}"]
    pages += [
        f"/patients/{pid}/assessments/new/{key}"
        for key in ("cows", "sows", "oows", "sows_gossop", "gad7", "symptom_nrs")
    ]
    pages.append("/assessments/1")
    for url in pages:
        response = browser.get(url)
        assert response.status_code == 200, url
        html = response.get_data(as_text=True)
        assert NOTICE in html, url
        assert not DOSING.search(ALLOWED.sub("", html)), (url, DOSING.search(ALLOWED.sub("", html)))


def test_login_page_carries_the_notice(browser):
    assert NOTICE in browser.get("/login").get_data(as_text=True)


def _concrete(rule):
    """A URL for the rule: 1 for every integer argument, a real scale key for the rest."""

    def value(converter):
        if isinstance(converter, IntegerConverter):
            return 1
        return "png" if isinstance(converter, AnyConverter) else "cows"

    values = {name: value(converter) for name, converter in rule._converters.items()}
    return re.sub(
        r"<(?:[a-z]+(?:\([^)]*\))?:)?([a-z_]+)>", lambda m: str(values[m.group(1)]), rule.rule
    )


def test_anonymous_visitor_reaches_nothing_but_the_login_page(app, browser, world):
    public = {"auth.login", "static"}
    for rule in app.url_map.iter_rules():
        if rule.endpoint in public:
            continue
        url = _concrete(rule)
        if "GET" in rule.methods:
            response = browser.get(url)
            assert response.status_code == 302, url
            assert response.headers["Location"].startswith("/login"), url
        if "POST" in rule.methods:
            token = browser.csrf_token("/login")
            response = browser.client.post(url, data={"csrf_token": token})
            assert response.status_code == 302, url
            assert response.headers["Location"].startswith("/login"), url


def test_every_post_route_refuses_a_missing_csrf_token(app, make_browser, world, add_assessment):
    from sqlalchemy import func, select

    from clinic_log.extensions import db
    from clinic_log.models import Assessment, Episode, Patient, Signature

    add_assessment(world["patient_n"], world["clin_n"])

    def counts():
        with app.app_context():
            return [
                db.session.scalar(select(func.count()).select_from(model))
                for model in (Patient, Episode, Assessment, Signature)
            ] + [db.session.scalar(select(func.max(Assessment.version)))]

    for username in ("clin.north", "sup.north"):
        browser = make_browser()
        browser.login(username)
        for rule in app.url_map.iter_rules():
            if "POST" not in rule.methods or rule.endpoint == "auth.logout":
                continue
            before = counts()
            response = browser.client.post(_concrete(rule), data={"password": "x"})
            assert response.status_code in (400, 403, 404, 422), (username, rule.rule)
            if response.status_code in (400, 422):
                text = response.get_data(as_text=True).lower()
                assert "csrf" in text or "expired" in text, (username, rule.rule)
            assert counts() == before, (username, rule.rule)


@pytest.mark.parametrize("url", ["/login", "/patients/", "/nowhere", "/static/style.css"])
def test_security_headers_on_every_response(browser, url):
    response = browser.get(url)
    csp = response.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp
    assert "unsafe-inline" not in csp
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "same-origin"
    response.close()


def test_pages_are_not_cached(browser, world):
    browser.login("clin.north")
    assert browser.get("/patients/").headers["Cache-Control"] == "no-store"


# The one shape a script may take: an empty element loading a file from static/, deferred.
STATIC_SCRIPT = re.compile(
    r"""<script src="\{\{ url_for\('static', filename='[\w.-]+\.js'\) \}\}" defer></script>"""
)


def test_templates_have_no_inline_script_or_style():
    for path in (ROOT / "templates").glob("**/*.html"):
        text = STATIC_SCRIPT.sub("", path.read_text())
        assert "<script" not in text and "style=" not in text and "<style" not in text, path
        assert not re.search(r"\son[a-z]+=", text), f"an inline event handler in {path}"


def test_unknown_page_is_a_plain_404_that_echoes_nothing(browser):
    response = browser.get("/nowhere/<script>alert(1)</script>")
    assert response.status_code == 404
    assert "<script>alert(1)" not in response.get_data(as_text=True)


def test_unexpected_error_shows_an_incident_number_and_no_traceback(app, browser, caplog):
    def explode():
        raise RuntimeError("secret internals")

    app.add_url_rule("/explode-for-test", "explode", explode)
    response = browser.get("/explode-for-test")
    html = response.get_data(as_text=True)
    assert response.status_code == 500
    assert "incident number" in html and "secret internals" not in html
    assert "Traceback" not in html
    incident = re.search(r"<strong>([0-9a-f]{12})</strong>", html).group(1)
    assert incident in caplog.text


def test_large_request_gets_a_friendly_413(browser, world):
    browser.login("clin.north")
    response = browser.client.post("/patients/new", data={"notes": "x" * 300_000})
    assert response.status_code == 413
    assert "too large" in response.get_data(as_text=True)


@pytest.mark.parametrize(
    "endpoint, id_name, values",
    [
        ("assessments.show", "assessment_id", {}),
        ("charts.tracker", "patient_id", {}),
        ("patients.show", "patient_id", {"page": 3}),
        ("charts.trend", "patient_id", {"scale_key": "cows", "fmt": "png", "start": "2026-01-02"}),
    ],
)
def test_row_urls_are_the_urls_url_for_builds(app, endpoint, id_name, values):
    from flask import url_for

    from clinic_log.web import url_for_ids

    with app.test_request_context("/", base_url="http://localhost/clinic"):
        build = url_for_ids(endpoint, id_name, **values)
        for row_id in (1, 7, 42, 2**31 - 2):
            assert build(row_id) == url_for(endpoint, **{id_name: row_id}, **values)
        # An id is always a number: a crafted value cannot add to the path or the query.
        with pytest.raises(ValueError):
            build("3/../../admin")


def test_row_urls_refuse_a_url_where_the_id_is_ambiguous(app):
    from clinic_log.web import url_for_ids

    with app.test_request_context("/"), pytest.raises(ValueError, match="exactly once"):
        url_for_ids("charts.tracker", "patient_id", start=str(2**31 - 1))
