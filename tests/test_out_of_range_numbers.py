"""Numbers no id column can hold, in every query parameter and every path id: 400 or 404
(or, for a page number, the nearest page), never a 500 from deep in the database driver.

The id columns are 32-bit on PostgreSQL (2**31 - 1 at most) and 64-bit on SQLite, so
2147483648 fails only there and 9223372036854775808 on both. Non-ASCII digits are here too:
``str.isdigit`` says yes to "²", and ``int`` then refuses it.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pages import text_of

import clinic_log
from clinic_log.web import IdConverter

# Every spelling a careless parser turns into an overflow, an exception or a wrong id.
OUT_OF_RANGE = (
    "2147483648", "4294967296", "9223372036854775807", "9223372036854775808",
    "18446744073709551616", "-1", "-2147483649", "-9223372036854775809", "0", "00", "-0",
    "01" + "0" * 10, "1e999", "1e9", "1.5", "0x10", "+1", "1_0", "NaN", "inf", "-inf",
    "9" * 30, "9" * 5000, "1" + "0" * 4301, "²", "⁵", "٣", "١٢", "１", "𝟗",
)  # fmt: skip
PAGE_CLAMPED = 200  # a page number is not an id: nonsense is page 1, too far is the last page


@pytest.fixture
def entry(world, add_assessment):
    """One entry at NORTH, so every page has something to show and every id route a target."""
    return add_assessment(world["patient_n"], world["clin_n"])


def _status(browser, url, **params):
    response = browser.get(url, query_string=params)
    assert response.status_code != 500, (url, params, text_of(response)[:300])
    return response


# Query parameters: (who asks, URL, parameter, what an unusable number gets).
# ``None`` as expected: 400 for a refused filter, or a page shown with its message (200/400).
QUERY_PARAMETERS = (
    ("sup.north", "/review/", "patient", 404),
    ("sup.north", "/review/", "scale", 200),
    ("sup.north", "/review/", "q", 200),
    ("sup.north", "/review/", "order", 200),
    ("sup.north", "/review/", "show", 200),
    ("sup.north", "/review/", "after", 404),
    ("sup.north", "/review/", "before", 404),
    # The entry page carries the queue's filters it was opened from, for "sign and next".
    ("sup.north", "/assessments/{aid}", "patient", 404),
    ("sup.north", "/assessments/{aid}", "scale", 200),
    ("sup.north", "/assessments/{aid}", "order", 200),
    ("sup.north", "/dashboard/", "page", PAGE_CLAMPED),
    ("sup.north", "/dashboard/", "site", 200),
    ("sup.north", "/audit/", "page", PAGE_CLAMPED),
    ("sup.north", "/audit/", "patient", 200),
    ("sup.north", "/audit/", "user", 200),
    ("sup.north", "/audit/", "action", 200),
    ("sup.north", "/audit/", "start", 400),
    ("sup.north", "/audit/", "end", 400),
    ("clin.north", "/patients/", "q", 200),
    # The patient list: a page past the end is an empty page that says so; a view it does
    # not know is the plain list.
    ("clin.north", "/patients/", "page", PAGE_CLAMPED),
    ("clin.north", "/patients/", "show", 200),
    ("clin.north", "/patients/", "sort", 200),
    ("clin.north", "/patients/{pid}", "page", PAGE_CLAMPED),
    # A scale filter names an installed scale or nothing: no number is one.
    ("clin.north", "/patients/{pid}", "scale", 404),
    ("clin.north", "/patients/{pid}/flowsheet/cows", "page", PAGE_CLAMPED),
    ("clin.north", "/patients/{pid}/tracker", "start", 400),
    ("clin.north", "/patients/{pid}/tracker", "end", 400),
    ("clin.north", "/patients/{pid}/tracker", "x", 200),
    ("clin.north", "/patients/{pid}/charts/cows.png", "start", 400),
    ("clin.north", "/patients/{pid}/charts/cows.svg", "end", 400),
    ("clin.north", "/patients/{pid}/charts/cows/items.png", "start", 400),
    ("clin.north", "/patients/{pid}/charts/domains.png", "end", 400),
    ("clin.north", "/patients/{pid}/charts/cows.png", "x", 400),
    ("clin.north", "/exports/assessments.csv", "patient", 404),
    ("clin.north", "/exports/assessments.csv", "patient_identifier", 400),  # no such identifier
    ("clin.north", "/exports/assessments.csv", "site", 404),
    ("clin.north", "/exports/assessments.csv", "start", 400),
    ("clin.north", "/exports/assessments.csv", "end", 400),
    ("clin.north", "/exports/assessments.csv", "scale", 400),
    ("clin.north", "/exports/assessments.csv", "layout", 400),
    ("clin.north", "/exports/assessments.csv", "profile", 400),
    ("clin.north", "/exports/assessments.csv", "history", 200),
    ("clin.north", "/exports/assessments.csv", "excel", 200),
    ("clin.north", "/exports/", "patient", 200),
    ("clin.north", "/exports/", "patient_identifier", 200),
    ("clin.north", "/exports/dictionary.csv", "patient", 200),
)


@pytest.mark.parametrize(
    ("username", "url", "name", "expected"),
    QUERY_PARAMETERS,
    ids=[f"{url}?{name}" for _, url, name, _ in QUERY_PARAMETERS],
)
def test_every_query_parameter_refuses_unusable_numbers(
    world, entry, login, app, username, url, name, expected
):
    app.config["EXPORTS_PER_MINUTE"] = 1000
    browser = login(username)
    url = url.format(pid=world["patient_n"].id, aid=entry.id)
    for value in OUT_OF_RANGE:
        response = _status(browser, url, **{name: value})
        assert response.status_code == expected, (url, name, value)


def test_an_unusable_patient_filter_is_not_a_filter_of_nothing(world, entry, login):
    """The review queue's patient filter: a number no patient can have is 404 (as in a path),
    not the whole queue under a filter the user believes is applied."""
    sup = login("sup.north")
    assert sup.get(f"/review/?patient={world['patient_n'].id}").status_code == 200
    for value in ("2147483648", "9223372036854775808", "abc", "²", "٣", "-1", "0"):
        response = _status(sup, "/review/", patient=value)
        assert response.status_code == 404, value
    assert sup.get("/review/?patient=").status_code == 200  # empty: no filter


def _id_routes(app) -> list[tuple[str, str, list[str]]]:
    """Every rule with an ``<id:...>`` part: (rule, method, id argument names)."""
    routes = []
    for rule in app.url_map.iter_rules():
        ids = [name for name, conv in rule._converters.items() if isinstance(conv, IdConverter)]
        if not ids:
            continue
        method = "GET" if "GET" in rule.methods else "POST"
        routes.append((rule.rule, method, ids))
    return routes


def _fill(rule: str, values: dict[str, str]) -> str:
    def replace(match):
        converter, name = match.group(1), match.group(2)
        if name in values:
            return values[name]
        if converter and converter.startswith("any"):
            return "png"
        return "cows"

    return re.sub(r"<(?:([^:>]+):)?([^>]+)>", replace, rule)


def test_every_path_id_refuses_unusable_numbers(world, entry, login, app):
    routes = _id_routes(app)
    assert len(routes) >= 20, routes  # patients, assessments, charts, review, admin
    good = {
        "patient_id": str(world["patient_n"].id), "assessment_id": str(entry.id),
        "episode_id": str(world["patient_n"].open_episode.id), "site_id": str(world["north"].id),
        "user_id": str(world["clin_n"].id), "grant_id": "1",
    }  # fmt: skip
    browsers = {"admin": login("admin.one"), "clinical": login("sup.north")}
    for rule, method, id_names in routes:
        browser = browsers["admin" if rule.startswith("/admin") else "clinical"]
        for name in id_names:
            for value in OUT_OF_RANGE:
                if value.strip() != value or "/" in value:
                    continue  # not a path segment a URL can hold as it is
                url = _fill(rule, good | {name: value})
                response = browser.client.open(url, method=method)
                assert response.status_code == 404, (rule, name, value, response.status_code)


def test_the_walk_covers_every_query_parameter_the_app_reads():
    """A new ``request.args`` read without a row in QUERY_PARAMETERS fails here."""
    package = Path(clinic_log.__file__).parent
    read = set()
    for path in package.rglob("*.py"):
        read |= set(re.findall(r'request\.args\.get\(\s*"(\w+)"', path.read_text()))
        read |= set(re.findall(r'\bargs\.get\(\s*"(\w+)"', path.read_text()))
    read -= {"next"}  # the login redirect target: text, checked by safe_next, never a number
    walked = {name for _, _, name, _ in QUERY_PARAMETERS}
    assert read and read <= walked, read - walked


def test_ids_in_the_export_form_may_carry_the_spaces_a_person_types(world, entry, login):
    north = login("clin.north")
    patient_id = world["patient_n"].id
    for value in (f" {patient_id}", f"{patient_id} ", f"\t{patient_id}\n"):
        assert _status(north, "/exports/assessments.csv", patient=value).status_code == 200


@pytest.mark.parametrize("version", ["²", "⁵", "9" * 30, "-1", "1.5", "9223372036854775808"])
def test_a_form_s_version_field_never_fails(world, entry, login, version):
    """The version a change was opened on travels in a hidden field: a value no version can
    have is a conflict with the stored one (409), never a 500."""
    clin = login("clin.north")
    token = clin.csrf_token("/")
    response = clin.post(
        f"/assessments/{entry.id}/void",
        {"csrf_token": token, "reason_code": "duplicate", "reason": "", "version": version},
    )
    assert response.status_code == 409, (version, response.status_code)
