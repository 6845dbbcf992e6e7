"""Chart route: cold render, cached repeat and 304, against a bare Flask endpoint measured in
the same run, plus the SQL statements each request runs.

Run with ``.venv/bin/python bench/bench_chart_routes.py``. Everything goes through Flask's
test client, in process, so the ratio shows what clinic_log adds on top of Flask itself:
the session and login check, the site guard, the freshness query and the cache lookup.
Targets: cold render within 1.5x of a minimal matplotlib script (see bench_chart_render.py),
a cached repeat within 2x of the bare endpoint.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from flask import Flask, Response
from sqlalchemy import event

from clinic_log import create_app
from clinic_log.auth.services import create_site, create_user
from clinic_log.database import now_utc
from clinic_log.extensions import db
from clinic_log.models import Assessment, ItemScore
from clinic_log.patients.services import create_patient
from clinic_log.scale_registry import get_scale

POINTS = 200
REPEATS = 400
PASSWORD = "benchmark passphrase 1"


def best_per_request(call, repeats: int = REPEATS, rounds: int = 5) -> float:
    """Median over rounds of the mean time per request, in seconds."""
    call()
    results = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(repeats):
            call()
        results.append((time.perf_counter() - start) / repeats)
    return statistics.median(results)


def build_app(workdir: Path):
    app = create_app(
        {
            "DATABASE_URL": f"sqlite:///{workdir / 'bench.sqlite3'}",
            "INSTANCE_PATH": str(workdir / "instance"),
            "SECRET_KEY": "bench-" + "x" * 40,
            "PASSWORD_HASH_METHOD": "scrypt:1024:8:1",
        }
    )
    with app.app_context():
        db.create_all()
        site = create_site("BENCH", "Bench Clinic", "Europe/London")
        user = create_user("bench.user", PASSWORD, "clinician", ["BENCH"])
        start = now_utc() - timedelta(days=60)
        patient = create_patient(user, site, "B-001", None, start, "opioid", "")
        scale = get_scale("cows")
        episode_id = patient.episodes[0].id
        for n in range(POINTS):
            total = (n * 7) % 40
            assessment = Assessment(
                patient_id=patient.id,
                episode_id=episode_id,
                scale_key="cows",
                scale_version=scale.version,
                observed_at=start + timedelta(hours=6 * n + 1),
                recorded_by_id=user.id,
                total=total,
                complete=n % 17 != 0,
                band=scale.band_for(total).label if scale.band_for(total) else None,
                status="active",
            )
            assessment.item_scores = [
                ItemScore(item_key=i.key, position=p, score=i.allowed_scores[0])
                for p, i in enumerate(scale.items)
            ]
            db.session.add(assessment)
        db.session.commit()
        return app, patient.id


def bare_app(body: bytes) -> Flask:
    bare = Flask("bare")

    @bare.route("/chart.png")
    def chart():
        return Response(body, mimetype="image/png")

    return bare


def statements_per_request(app, client, url, headers=None) -> int:
    with app.app_context():
        engine = db.engine
    seen: list[str] = []

    def record(_c, _cur, statement, *_a):
        if not statement.startswith(("BEGIN", "COMMIT", "ROLLBACK", "PRAGMA")):
            seen.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    client.get(url, headers=headers or {})
    event.remove(engine, "before_cursor_execute", record)
    return len(seen)


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        app, patient_id = build_app(Path(tmp))
        client = app.test_client()
        page = client.get("/login").get_data(as_text=True)
        token = page.split('name="csrf_token" type="hidden" value="')[1].split('"')[0]
        client.post(
            "/login", data={"username": "bench.user", "password": PASSWORD, "csrf_token": token}
        )
        url = f"/patients/{patient_id}/charts/cows.png"
        first = client.get(url)
        assert first.status_code == 200, first.status_code
        etag = first.headers["ETag"]
        cache = app.extensions["clinic_log.chart_cache"]

        def cold():
            cache.clear()
            client.get(url)

        bare = bare_app(first.data).test_client()
        rows = [
            ("bare Flask endpoint (same bytes)", best_per_request(lambda: bare.get("/chart.png"))),
            ("chart, cached repeat (200)", best_per_request(lambda: client.get(url))),
            (
                "chart, If-None-Match (304)",
                best_per_request(lambda: client.get(url, headers={"If-None-Match": etag})),
            ),
            ("chart, cold render", best_per_request(cold, repeats=3, rounds=3)),
        ]
        queries = {
            "chart, cached repeat (200)": statements_per_request(app, client, url),
            "chart, If-None-Match (304)": statements_per_request(
                app, client, url, {"If-None-Match": etag}
            ),
        }
        cache.clear()
        queries["chart, cold render"] = statements_per_request(app, client, url)
        queries["bare Flask endpoint (same bytes)"] = 0

    ceiling = rows[0][1]
    print(f"{POINTS}-point COWS trend, PNG {len(first.data):,} bytes, Flask test client")
    print(f"{'request':36} {'ms':>8} {'x bare':>8} {'queries':>8}")
    for name, seconds in rows:
        print(f"{name:36} {seconds * 1000:8.3f} {seconds / ceiling:8.2f} {queries[name]:8d}")
    cached_ratio = rows[1][1] / ceiling
    print(f"cached repeat: {cached_ratio:.2f}x the bare endpoint (target 2x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
