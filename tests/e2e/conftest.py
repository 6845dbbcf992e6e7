"""A real server and a real browser (Debian's chromium driven by Playwright).

The tests skip when chromium or Playwright is missing, unless CLINIC_LOG_E2E_REQUIRED is set
(CI sets it), in which case a missing browser is a failure, not a silent pass.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from datetime import timedelta

import pyotp
import pytest
from flask import Flask
from werkzeug.serving import make_server

from clinic_log import create_app
from clinic_log.assessments.services import record_assessment
from clinic_log.auth import sessions
from clinic_log.auth.services import create_site, create_user
from clinic_log.database import now_utc
from clinic_log.extensions import db
from clinic_log.patients.services import create_patient
from clinic_log.scale_registry import get_scale

CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PASSWORD = "correct horse battery staple"
# Supervisors need a second factor outside demo mode, as in production: the seeded supervisor
# has this (synthetic) authenticator secret enrolled.
SUPERVISOR_TOTP_SECRET = "RVDQ3HFYQNGDDPIF6LXVXKLY6VHEOYY4"


class LiveServer(str):
    """The server's base URL; ``app`` is the application behind it, for the checks a browser
    cannot make (what was saved, how many times)."""

    app: Flask


def _chromium_path() -> str | None:
    return os.environ.get("CLINIC_LOG_CHROMIUM") or shutil.which("chromium")


@pytest.fixture(scope="session")
def browser_engine():
    required = bool(os.environ.get("CLINIC_LOG_E2E_REQUIRED"))
    path = _chromium_path()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sync_playwright = None
    if path is None or sync_playwright is None:
        message = "e2e needs Debian's chromium and the playwright package"
        if required:
            pytest.fail(message)
        pytest.skip(message)
    with sync_playwright() as playwright:
        engine = playwright.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        yield engine
        engine.close()


@pytest.fixture
def live_server(tmp_path):
    """The app on a free port of 127.0.0.1, with one site and a clinician and a supervisor."""
    app = create_app(
        {
            "DATABASE_URL": f"sqlite:///{tmp_path / 'e2e.sqlite3'}",
            "INSTANCE_PATH": str(tmp_path / "instance"),
            "SECRET_KEY": "e2e-secret-key-" + "x" * 40,
            "PASSWORD_HASH_METHOD": "scrypt:1024:8:1",
        }
    )
    with app.app_context():
        db.create_all()
        _seed()
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = LiveServer(f"http://127.0.0.1:{server.server_port}")
    url.app = app
    yield url
    server.shutdown()
    thread.join(timeout=5)
    with app.app_context():
        db.engine.dispose()


def _seed() -> None:
    """One site, a clinician and a supervisor, and a synthetic patient with a few entries."""
    site = create_site("NORTH", "North Clinic", "Europe/London")
    clinician = create_user(
        "clin.north", PASSWORD, "clinician", ["NORTH"], display_name="Casey Clinician"
    )
    supervisor = create_user(
        "sup.north", PASSWORD, "supervisor", ["NORTH"], display_name="Sam Supervisor"
    )
    supervisor.totp_secret = SUPERVISOR_TOTP_SECRET
    db.session.commit()
    start = now_utc() - timedelta(days=3)
    patient = create_patient(clinician, site, "SEED-001", "Synthetic", start, "kratom", "")
    for hours, level in ((60, 2), (40, 3), (20, 1), (2, 1)):
        for key in ("cows", "symptom_nrs"):
            scale = get_scale(key)
            scores = {
                i.key: i.allowed_scores[min(level, len(i.allowed_scores) - 1)] for i in scale.items
            }
            record_assessment(
                clinician, patient, scale, scores, observed_at=now_utc() - timedelta(hours=hours)
            )


@pytest.fixture
def page(browser_engine):
    context = browser_engine.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(10_000)
    yield page
    context.close()


class ShiftedClock:
    """Stands in for the ``time`` module of the session rules, so an idle timeout can pass
    without waiting for it (the live server runs in this process)."""

    def __init__(self):
        self.offset = 0.0

    def time(self) -> float:
        return time.time() + self.offset

    def monotonic(self) -> float:
        return time.monotonic()


@pytest.fixture
def session_clock(monkeypatch):
    """Move ``offset`` seconds ahead, as far as session timeouts are concerned."""
    clock = ShiftedClock()
    monkeypatch.setattr(sessions, "time", clock)
    return clock


def log_in(page, base_url, username):
    """Log in with the password, and the one-time code when the account has a second factor."""
    page.goto(f"{base_url}/login")
    page.fill("#username", username)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_load_state()
    if "/login/code" in page.url:
        code = pyotp.TOTP(SUPERVISOR_TOTP_SECRET).now()
        page.get_by_label("6-digit code from your authenticator app").fill(code)
        page.get_by_role("button", name="Continue").click()
        page.wait_for_load_state()
    assert "/login" not in page.url, f"{username} could not log in"
