"""Who is asking and which patient is meant: the client address behind (or without) a proxy,
the login rate limit shared by every worker, and identifiers that only look different."""

from __future__ import annotations

import json
import unicodedata

from conftest import PASSWORD, Browser, IsolatedClient
from flask_migrate import upgrade
from pages import field_errors, input_val
from sqlalchemy import select, text

from clinic_log import create_app
from clinic_log.extensions import db
from clinic_log.models import AuditEvent, Patient
from clinic_log.patients.services import identifier_skeleton

REAL = "198.51.100.7"
ATTACKER = "203.0.113.9"


def worker(app, **settings):
    """Another app on the same database: a second gunicorn worker."""
    other = create_app(
        {key: app.config[key] for key in ("TESTING", "DATABASE_URL", "SECRET_KEY")}
        | {"INSTANCE_PATH": app.instance_path, "PASSWORD_HASH_METHOD": "scrypt:1024:8:1"}
        | settings
    )
    other.test_client_class = IsolatedClient
    return other


def events(app, action):
    with app.app_context():
        rows = db.session.scalars(
            select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)
        ).all()
        return [(e.ip, json.loads(e.details)) for e in rows]


def from_address(app, address: str, forwarded: str | None = None) -> Browser:
    """A browser whose requests come from ``address``, each carrying ``X-Forwarded-For``
    when given (a header anyone can send)."""
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = address
    if forwarded is not None:
        client.environ_base["HTTP_X_FORWARDED_FOR"] = forwarded
    return Browser(client)


def copy_session_cookie(source: Browser, target: Browser) -> None:
    cookie = source.client.get_cookie("session")
    target.client.set_cookie("session", cookie.value)


# --------------------------------------------------------------------------- R08 client address


def test_without_a_proxy_a_forwarded_header_cannot_carry_a_stolen_session(app, world):
    """Flask-Login's "strong" session binding must use the real address: with the header
    trusted, a cookie copied to another machine passes by sending the victim's address."""
    victim = from_address(app, REAL, forwarded=REAL)
    victim.login("clin.north")
    assert victim.get("/patients/").status_code == 200

    thief = from_address(app, ATTACKER, forwarded=REAL)
    copy_session_cookie(victim, thief)
    response = thief.get("/patients/")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login")


def test_without_a_proxy_a_changing_forwarded_header_does_not_end_the_session(app, world):
    user = from_address(app, REAL, forwarded="10.0.0.1")
    user.login("clin.north")
    user.client.environ_base["HTTP_X_FORWARDED_FOR"] = "10.0.0.2"
    assert user.get("/patients/").status_code == 200


def test_without_a_proxy_the_trail_and_the_rate_limit_use_the_real_address(app, world):
    app.extensions["clinic_log.login_limiter"].limit = 2
    for n in range(2):
        # A new forwarded address on every try must not buy new attempts.
        browser = from_address(app, REAL, forwarded=f"10.0.0.{n}")
        browser.post("/login", {"username": "clin.north", "password": "not the password!"})
    refused = from_address(app, REAL, forwarded="10.9.9.9").post(
        "/login", {"username": "clin.north", "password": PASSWORD}
    )
    assert refused.status_code == 429
    (limited,) = events(app, "login_rate_limited")
    assert limited == (REAL, {"address": REAL})
    assert {ip for ip, _ in events(app, "login_failure")} == {REAL}


def test_behind_a_proxy_the_forwarded_address_is_the_client(app, world):
    """With CLINIC_LOG_BEHIND_PROXY on, the proxy's header names the client: the trail
    records it and the session is bound to it."""
    proxied = worker(app, BEHIND_PROXY=True)
    proxy = "10.1.1.1"
    try:
        user = from_address(proxied, proxy, forwarded=REAL)
        user.login("clin.north")
        assert user.get("/patients/").status_code == 200
        assert events(proxied, "login_success")[-1][0] == REAL

        thief = from_address(proxied, proxy, forwarded=ATTACKER)
        copy_session_cookie(user, thief)
        assert thief.get("/patients/").status_code == 302
    finally:
        with proxied.app_context():
            db.engine.dispose()


# --------------------------------------------------------------------------- R09 rate limit


def attempt(browser: Browser, username="nobody.here"):
    return browser.post("/login", {"username": username, "password": "not the password!"})


def test_the_login_rate_limit_holds_across_workers(app, world):
    """Workers share nothing but the database: an address's attempts on one worker count
    on every other."""
    app.config["LOGIN_ATTEMPTS_PER_MINUTE"] = 3
    app.extensions["clinic_log.login_limiter"].limit = 3
    other = worker(app, LOGIN_ATTEMPTS_PER_MINUTE=3)
    try:
        here, there = from_address(app, REAL), from_address(other, REAL)
        codes = [attempt(b).status_code for b in (here, there, here, there, here)]
        elsewhere = attempt(from_address(other, ATTACKER)).status_code
    finally:
        with other.app_context():
            db.engine.dispose()
    assert codes == [200, 200, 200, 429, 429]
    assert elsewhere == 200
    assert [ip for ip, _ in events(app, "login_rate_limited")] == [REAL, REAL]


def test_parallel_attempts_from_one_address_on_two_workers_stay_within_the_limit(app, world):
    """Attempts are counted before the password is checked, one address at a time, so
    attempts sent all at once cannot slip past the limit."""
    from test_races import race

    limit, per_worker = 3, 4
    app.extensions["clinic_log.login_limiter"].limit = limit
    other = worker(app, LOGIN_ATTEMPTS_PER_MINUTE=limit)
    try:
        browsers = [from_address(a, REAL) for a in (app, other) for _ in range(per_worker)]
        for browser in browsers:
            browser.token = browser.csrf_token("/login")
        results = race(
            *(
                lambda b=b: b.client.post(
                    "/login",
                    data={
                        "csrf_token": b.token,
                        "username": "nobody.here",
                        "password": "not the password!",
                    },
                )
                for b in browsers
            )
        )
    finally:
        with other.app_context():
            db.engine.dispose()
    codes = sorted(getattr(r, "status_code", repr(r)) for r in results)
    assert codes == [200] * limit + [429] * (2 * per_worker - limit)
    assert len(events(app, "login_rate_limited")) == 2 * per_worker - limit


# --------------------------------------------------------------------------- R10 look-alikes


def new_patient(identifier, site_id, display_label="Kept label"):
    return {
        "site_id": str(site_id),
        "identifier": identifier,
        "display_label": display_label,
        "started_at": "",
        "substance_context": "kratom",
        "episode_note": "typed note",
    }


def patients(app) -> list[tuple[int, str]]:
    with app.app_context():
        return db.session.execute(
            select(Patient.site_id, Patient.identifier).order_by(Patient.id)
        ).all()


# Each looks like NORTH's N-001 (the world's patient) but is spelt with other characters.
LOOK_ALIKES = [
    ("Greek capital Nu", "\u039d-001"),
    ("Cyrillic capital O for the zeros", "N-\u041e\u041e1"),
    ("Cyrillic I for the one, lower case n", "n-00\u0406"),
    ("Latin O for the zeros", "N-OO1"),
    ("letter l for the one", "N-00l"),
    ("hyphen U+2010", "N\u2010001"),
    ("minus sign", "N\u2212001"),
    ("en dash", "N\u2013001"),
    ("combining acute accent", "N\u0301-001"),
    ("combining dot below", "N-00\u03231"),
]
INVISIBLE = [
    ("Hangul filler", "N-001\u3164"),
    ("Hangul filler inside", "N\u3164-001"),
    ("halfwidth Hangul filler", "N-\uffa0001"),
    ("Braille pattern blank", "N-\u2800001"),
    ("combining grapheme joiner", "N-0\u034f01"),
    ("variation selector", "N-0\ufe0f01"),
    ("Mongolian vowel separator", "N-0\u180e01"),
]
ONE_LINE = [
    ("identifier", "N\t002"),
    ("identifier", "N\n002"),
    ("identifier", "N\r002"),
    ("identifier", "N\u2028002"),
    ("identifier", "N\u2029002"),
    ("display_label", "Bed\t4"),
    ("display_label", "Bed\n4"),
    ("display_label", "Bed\r\n4"),
    ("display_label", "Bed\u20284"),
]


def test_an_identifier_that_looks_like_another_patients_is_refused_naming_it(app, world, subtests):
    browser = Browser(app.test_client())
    browser.login("clin.north")
    north = world["north"].id
    before = patients(app)
    for name, identifier in LOOK_ALIKES:
        with subtests.test(name):
            response = browser.post("/patients/new", new_patient(identifier, north))
            assert response.status_code == 422
            errors = field_errors(response, "identifier")
            assert "looks like the identifier of a patient already at NORTH: N-001" in errors
            assert input_val(response, "identifier") == unicodedata.normalize("NFKC", identifier)
            assert input_val(response, "display_label") == "Kept label"
            assert patients(app) == before


def test_invisible_fillers_are_refused_in_identifiers_and_labels(app, world, subtests):
    browser = Browser(app.test_client())
    browser.login("clin.north")
    north = world["north"].id
    before = patients(app)
    for name, identifier in INVISIBLE:
        with subtests.test(name):
            response = browser.post("/patients/new", new_patient(identifier, north))
            assert response.status_code == 422
            assert "Remove the invisible" in field_errors(response, "identifier")
            label = browser.post(
                "/patients/new", new_patient("P-77", north, display_label=f"Bed{identifier}")
            )
            assert label.status_code == 422
            assert "Remove the invisible" in field_errors(label, "display_label")
            assert patients(app) == before


def test_tabs_and_line_breaks_are_refused_in_identifiers_and_labels(app, world, subtests):
    browser = Browser(app.test_client())
    browser.login("clin.north")
    north = world["north"].id
    before = patients(app)
    for field, value in ONE_LINE:
        with subtests.test(field=field, value=value):
            data = new_patient("P-78", north)
            data[field] = value
            response = browser.post("/patients/new", data)
            assert response.status_code == 422
            assert "one line" in field_errors(response, field)
            assert patients(app) == before


def test_identifiers_that_only_resemble_each_other_elsewhere_or_differ_are_accepted(app, world):
    browser = Browser(app.test_client())
    browser.login("clin.south")
    south = world["south"].id
    # Another site's patient is another patient: a look-alike of NORTH's N-001 is fine at SOUTH.
    assert browser.post("/patients/new", new_patient("\u039d-001", south)).status_code == 302
    for identifier in ("N-002", "M-001", "N-0011", "José 12", "N 001"):
        response = browser.post("/patients/new", new_patient(identifier, south))
        assert response.status_code == 302, (identifier, field_errors(response, "identifier"))
    refused = browser.post("/patients/new", new_patient("J\u0323osé 12", south))
    assert "looks like the identifier of a patient already at SOUTH: José 12" in field_errors(
        refused, "identifier"
    )


def test_the_migration_stores_the_skeleton_of_existing_identifiers(tmp_path, empty_database_url):
    from test_races import BEFORE_ONE_OPEN, add_rows

    other = create_app({"DATABASE_URL": empty_database_url, "INSTANCE_PATH": str(tmp_path / "i")})
    with other.app_context():
        upgrade(revision=BEFORE_ONE_OPEN)
        with db.engine.begin() as conn:
            add_rows(conn)
            conn.execute(text("UPDATE episode SET ended_at = started_at WHERE id = 2"))
        upgrade()
        stored = dict(
            db.session.execute(select(Patient.identifier, Patient.identifier_skeleton)).all()
        )
        db.session.remove()
        db.engine.dispose()
    assert stored == {"N-001": identifier_skeleton("N-001"), "N-002": identifier_skeleton("N-002")}
    assert identifier_skeleton("N-001") == identifier_skeleton("\u039d-\u041e\u041e1")
