"""clinic_log as the page benchmark serves it: the app itself plus two routes that answer
"ok" after only the rules every patient page keeps, so the benchmark shows what those rules
cost on their own, beside the pages.

- ``/bench/floor``: a logged-in clinician's request. The session rules run (idle and absolute
  timeouts) and the user and the sites they may reach are loaded from the database, as the
  security catalogue requires on every request (E06 deactivation, F02 replay after logout,
  G08 a role change take effect at once).
- ``/bench/floor/<patient id>``: the same, plus what every page showing a patient does
  before it shows anything: load the patient and its site, check the user may reach it, and
  the read-audit check.

Served by bench_pages.py as ``gunicorn load_floor_app:app``. Never part of the product.
"""

from __future__ import annotations

from flask_login import current_user

from clinic_log import create_app
from clinic_log.auth.guards import clinical_required, load_patient
from clinic_log.auth.reads import record_view

app = create_app()


@app.route("/bench/floor")
@clinical_required
def floor():
    return "ok"


@app.route("/bench/floor/<id:patient_id>")
@clinical_required
def floor_with_patient(patient_id: int):
    patient = load_patient(patient_id)
    record_view("view_patient", current_user, patient, "patient page", page=1)
    return "ok"
