"""The ceiling for the page benchmarks: a bare Flask app serving a 20-row HTML table.

One plain ``sqlite3`` query per request on the benchmark's database (the 20 latest entries
of one patient), rendered with a precompiled Jinja template. No login, no ORM, no forms: what
Flask, gunicorn and SQLite cost on this machine with nothing of clinic_log on top.

``/chart.png`` is the ceiling of a cached chart: the very bytes clinic_log serves for the
patient's COWS trend (BENCH_BARE_PNG), straight from memory.

Served by bench_pages.py as ``gunicorn load_bare_app:app`` with BENCH_BARE_DB set.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from pathlib import Path

from flask import Flask, Response

app = Flask(__name__)
_local = threading.local()
PAGE = app.jinja_env.from_string(
    """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Patient {{ patient_id }}</title></head>
<body><h1>Patient {{ patient_id }}</h1>
<table><thead><tr><th>Observed (UTC)</th><th>Scale</th><th>Total</th><th>Band</th></tr></thead>
<tbody>{% for observed_at, scale, total, band in rows %}
<tr><td>{{ observed_at }}</td><td>{{ scale }}</td><td>{{ total }}</td><td>{{ band or "" }}</td></tr>
{% endfor %}</tbody></table></body></html>"""
)
QUERY = (
    "SELECT observed_at, scale_key, total, band FROM assessment WHERE patient_id = ?"
    " ORDER BY observed_at DESC LIMIT 20"
)


def connection() -> sqlite3.Connection:
    """One read-only connection per thread, kept (the app keeps a pool too)."""
    conn = getattr(_local, "conn", None)
    if conn is None:
        conn = sqlite3.connect(f"file:{os.environ['BENCH_BARE_DB']}?mode=ro", uri=True)
        _local.conn = conn
    return conn


@app.route("/patients/<int:patient_id>")
def patient(patient_id: int):
    rows = connection().execute(QUERY, (patient_id,)).fetchall()
    return PAGE.render(patient_id=patient_id, rows=rows)


@app.route("/chart.png")
def chart():
    png = getattr(_local, "png", None)
    if png is None:
        png = _local.png = Path(os.environ["BENCH_BARE_PNG"]).read_bytes()
    return Response(png, mimetype="image/png")


@app.route("/login")
def ready():
    return "ok"
