"""Screenshots of the main pages at desktop and tablet sizes, from the synthetic demo data.

Run with ``make screenshots`` (needs Debian's chromium and the test extra for Playwright).
It serves a throwaway demo database on a free loopback port, logs in as the demo users and
saves PNGs into docs/screenshots/.
"""

from __future__ import annotations

import re
import shutil
import sys
import tempfile
import threading
from pathlib import Path

from playwright.sync_api import sync_playwright
from sqlalchemy import select
from werkzeug.serving import make_server

from clinic_log import create_app
from clinic_log.extensions import db
from clinic_log.models import Patient

OUT = Path(__file__).resolve().parent / "screenshots"
SIZES = {"desktop": (1366, 900), "tablet": (820, 1180)}  # a laptop, and a tablet held upright
ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip


def pages(patient_id: int) -> list[tuple[str, str, str]]:
    """(file name, user, path) for every page worth showing."""
    return [
        ("login", "", "/login"),
        ("patients", "demo-clinician", "/patients/"),
        ("patient", "demo-clinician", f"/patients/{patient_id}"),
        ("cows-entry", "demo-clinician", f"/patients/{patient_id}/assessments/new/cows"),
        ("flowsheet", "demo-clinician", f"/patients/{patient_id}/flowsheet/cows"),
        ("tracker", "demo-clinician", f"/patients/{patient_id}/tracker"),
        ("dashboard", "demo-supervisor", "/dashboard/"),
        ("review-queue", "demo-supervisor", "/review/"),
        ("audit", "demo-supervisor", "/audit/"),
        ("export", "demo-clinician", "/exports/"),
    ]


def main() -> int:
    chromium = shutil.which("chromium")
    if chromium is None:
        print("chromium is not installed (apt-get install chromium)", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        app = create_app(
            {
                "DATABASE_URL": f"sqlite:///{tmp}/shots.sqlite3",
                "INSTANCE_PATH": f"{tmp}/instance",
                "TIMEZONE": "America/Chicago",
                "DEMO": True,
            }
        )
        with app.app_context():
            db.create_all()
        output = app.test_cli_runner().invoke(args=["demo"]).output
        passwords = dict(re.findall(r"(demo-\w+)\s+(\S+)$", output, re.MULTILINE))
        with app.app_context():
            patient_id = db.session.scalar(
                select(Patient.id).where(Patient.identifier == "DEMO-001")
            )
        server = make_server("127.0.0.1", 0, app, threaded=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        base = f"http://127.0.0.1:{server.server_port}"
        OUT.mkdir(exist_ok=True)
        try:
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=chromium, args=ARGS)
                for size, (width, height) in SIZES.items():
                    sessions = {}
                    for name, user, path in pages(patient_id):
                        if user not in sessions:
                            context = browser.new_context(
                                viewport={"width": width, "height": height}
                            )
                            page = context.new_page()
                            if user:
                                page.goto(f"{base}/login")
                                page.fill("#username", user)
                                page.fill("#password", passwords[user])
                                page.click("button[type=submit]")
                                page.wait_for_load_state()
                            sessions[user] = page
                        page = sessions[user]
                        page.goto(base + path)
                        page.wait_for_load_state("networkidle")
                        target = OUT / f"{name}-{size}.png"
                        page.screenshot(path=str(target), full_page=False)
                        print(f"wrote docs/screenshots/{target.name}")
                browser.close()
        finally:
            server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
