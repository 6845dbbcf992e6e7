"""Render the README's example charts from the synthetic demo data.

Run with ``make docs-images`` (or ``.venv/bin/python docs/make_images.py``). It builds a
throwaway database with ``flask demo`` data and saves what the chart routes serve.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from sqlalchemy import select

from clinic_log import create_app
from clinic_log.extensions import db
from clinic_log.models import Patient

OUT = Path(__file__).resolve().parent / "images"
CHARTS = {
    "demo-cows-trend.png": "/patients/{id}/charts/cows.png",
    "demo-symptom-domains.png": "/patients/{id}/charts/domains.png",
    "demo-cows-items.png": "/patients/{id}/charts/cows/items.png",
}


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        app = create_app(
            {
                "DATABASE_URL": f"sqlite:///{tmp}/docs.sqlite3",
                "INSTANCE_PATH": f"{tmp}/instance",
                "TIMEZONE": "America/Chicago",
            }
        )
        with app.app_context():
            db.create_all()
        logins = app.test_cli_runner().invoke(args=["demo"]).output
        password = next(
            line.split()[-1] for line in logins.splitlines() if "demo-clinician" in line
        )
        client = app.test_client()
        page = client.get("/login").get_data(as_text=True)
        token = page.split('name="csrf_token" type="hidden" value="')[1].split('"')[0]
        client.post(
            "/login",
            data={"username": "demo-clinician", "password": password, "csrf_token": token},
        )
        with app.app_context():
            patient_id = db.session.scalar(
                select(Patient.id).where(Patient.identifier == "DEMO-003")
            )
        OUT.mkdir(exist_ok=True)
        for name, url in CHARTS.items():
            response = client.get(url.format(id=patient_id))
            assert response.status_code == 200, (url, response.status_code)
            (OUT / name).write_bytes(response.data)
            print(f"wrote docs/images/{name} ({len(response.data):,} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
