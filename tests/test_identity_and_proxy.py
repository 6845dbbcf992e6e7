"""Who is asking and which patient is meant: the client address behind (or without) a proxy,
the login rate limit shared by every worker, and identifiers that only look different."""

from __future__ import annotations

import json

from conftest import PASSWORD, Browser, IsolatedClient
from sqlalchemy import select

from clinic_log import create_app
from clinic_log.extensions import db
from clinic_log.models import AuditEvent

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
