"""CSV export throughput and memory, against Python's csv module reading sqlite3 directly.

Run with ``.venv/bin/python bench/bench_export.py [--assessments N] [--patients P]``
(default 200,000 assessments for 1,000 patients; ``--assessments 20000`` for a quick run).

One run builds a temporary SQLite database with bulk INSERTs (one site, one clinician, P
patients with one episode each, N assessments: nine in ten COWS with 11 item scores and a
measured pulse, one in ten GAD-7 with 7, a few items not assessed, some notes that need
quoting or an apostrophe), then measures, each in its own subprocess so its peak memory can
be read on its own:

1. ``wide``: the wide COWS export through ``services.open_export`` + ``csv_chunks``;
2. ``long``: the long export of every scale, the same way;
3. the ceiling: a plain ``sqlite3`` SELECT of the same joined columns (for wide, pivoted in
   SQL to one row per assessment) written by ``csv.writer(...).writerows(cursor)``;
4. with ``--split``, ``long, reading only``: our assessments and item scores read, nothing
   formatted or written (the queries and fetching, against the whole export);
5. the baseline: importing and creating the app, with no export.

Every output goes to /dev/null. Targets: ours within 2x the ceiling's time; peak memory
under 150 MB whatever the size. Peak memory is each child's ru_maxrss read by the parent
with ``os.wait4``; the parent imports nothing of the app, since a child's ru_maxrss also
counts what it inherited at fork.

Run time: the run is as long as the exports it measures. On the 2-core development machine
the default size takes about a minute (about 13 s to build, the rest mostly the two ceilings
and our two exports); ``--assessments 20000 --patients 100`` takes about 10 s.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
USERNAME = "bench.clin"
REVIEWER = "bench.sup"
PASSWORD = "benchmark passphrase 1"
SITE = "BENCH"
TIMEZONE = "Europe/London"
NOTES = (
    "",
    "",
    "",
    "Slept badly, woke twice",
    '=1+2 "quoted", with a comma',
    "-3 on the scale they use at home",
    "Line one\nline two",
)


def app_config(workdir: Path) -> dict:
    return {
        "DATABASE_URL": f"sqlite:///{workdir / 'bench.sqlite3'}",
        "INSTANCE_PATH": str(workdir / "instance"),
        "SECRET_KEY": "bench-" + "x" * 40,
        "PASSWORD_HASH_METHOD": "scrypt:1024:8:1",
    }


# --------------------------------------------------------------------------- building data


def _stored(instant: datetime) -> str:
    """A UTC instant as SQLAlchemy stores a DateTime on SQLite (naive UTC text)."""
    return instant.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def build(workdir: Path, assessments: int, patients: int, seed: int = 7) -> dict:
    """Create the database; return counts of what was inserted."""
    from clinic_log import create_app
    from clinic_log.auth.services import create_site, create_user
    from clinic_log.database import now_utc
    from clinic_log.extensions import db
    from clinic_log.identifiers import identifier_skeleton
    from clinic_log.models import Assessment
    from clinic_log.scale_registry import get_scale

    rng = random.Random(seed)
    app = create_app(app_config(workdir))
    counts = {"patients": patients, "assessments": assessments}
    with app.app_context():
        db.create_all()
        site = create_site(SITE, "Bench Clinic", TIMEZONE)
        clin = create_user(USERNAME, PASSWORD, "clinician", [SITE], display_name="Bench Clin")
        sup = create_user(REVIEWER, PASSWORD, "supervisor", [SITE], display_name="Bench Sup")
        site_id, clin_id, sup_id = site.id, clin.id, sup.id
        cows, gad7 = get_scale("cows"), get_scale("gad7")
        pulse = cows.item("resting_pulse").measurement
        now = now_utc()
        per_patient = -(-assessments // patients)
        span = timedelta(hours=4)

        patient_rows, episode_rows, assessment_rows, item_rows = [], [], [], []
        assessment_id = item_id = 0
        cows_count = items_long = 0
        for p in range(1, patients + 1):
            started = now - span * (per_patient + 2) - timedelta(minutes=p)
            identifier = f"B-{p:05d}"
            patient_rows.append(
                (
                    p, site_id, identifier, identifier.casefold(),
                    identifier_skeleton(identifier), None, clin_id, _stored(started),
                )
            )  # fmt: skip
            episode_rows.append((p, p, _stored(started), "opioid", "", clin_id, _stored(started)))
            for k in range(per_patient):
                if assessment_id == assessments:
                    break
                assessment_id += 1
                observed = started + span * (k + 1) + timedelta(seconds=rng.randrange(600))
                scale = gad7 if k % 10 == 9 else cows
                scores, reasons, measured = {}, {}, {}
                for item in scale.items:
                    scores[item.key] = rng.choice(item.allowed_scores)
                if scale is cows:
                    cows_count += 1
                    bpm = rng.randrange(56, 140)
                    scores["resting_pulse"] = pulse.points_for(bpm)
                    measured["resting_pulse"] = bpm
                    if rng.random() < 0.02:
                        scores["sweating"] = None
                        reasons["sweating"] = "asleep"
                result = scale.score(scores)
                reviewed = rng.random() < 0.3
                assessment_rows.append(
                    (
                        assessment_id, p, p, scale.key, scale.version, _stored(observed),
                        _stored(observed + timedelta(minutes=5)), clin_id, result.total,
                        result.complete, result.band_label, rng.choice(NOTES), "active", 1,
                        sup_id if reviewed else None,
                        _stored(observed + timedelta(hours=2)) if reviewed else None,
                    )
                )  # fmt: skip
                for position, item in enumerate(scale.items):
                    item_id += 1
                    items_long += 1
                    score = scores[item.key]
                    item_rows.append(
                        (
                            item_id, assessment_id, item.key, position, score,
                            reasons.get(item.key) if score is None else None,
                            measured.get(item.key),
                        )
                    )  # fmt: skip
        counts.update(cows=cows_count, item_scores=items_long)

        raw = db.engine.raw_connection()
        try:
            cursor = raw.cursor()
            cursor.execute("BEGIN")
            cursor.executemany(
                "INSERT INTO patient (id, site_id, identifier, identifier_key,"
                " identifier_skeleton, display_label, created_by_id, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                patient_rows,
            )
            cursor.executemany(
                "INSERT INTO episode (id, patient_id, started_at, substance_context, note,"
                " created_by_id, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                episode_rows,
            )
            cursor.executemany(
                "INSERT INTO assessment (id, patient_id, episode_id, scale_key, scale_version,"
                " observed_at, recorded_at, recorded_by_id, total, complete, band, notes,"
                " status, version, reviewed_by_id, reviewed_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                assessment_rows,
            )
            cursor.executemany(
                "INSERT INTO item_score (id, assessment_id, item_key, position, score,"
                " not_assessed_reason, measured_value) VALUES (?, ?, ?, ?, ?, ?, ?)",
                item_rows,
            )
            cursor.execute("COMMIT")
            cursor.execute("ANALYZE")
        finally:
            raw.close()
        # The app reads the bulk rows back as it reads its own (in a new transaction).
        db.session.commit()
        first = db.session.get(Assessment, 1)
        assert first.observed_at.tzinfo is not None and first.item_scores
        db.session.remove()
        db.engine.dispose()
    return counts


# --------------------------------------------------------------------------- children


def _ours(workdir: Path, args: dict, write: bool) -> tuple[int, float]:
    """Our export, timed from parsing the request to the last byte (app start-up excluded)."""
    from sqlalchemy import select

    from clinic_log import create_app
    from clinic_log.exports import services
    from clinic_log.exports.csvwriter import csv_chunks
    from clinic_log.extensions import db
    from clinic_log.models import User

    app = create_app(app_config(workdir))
    with app.app_context():
        user = db.session.scalar(select(User).where(User.username == USERNAME))
        start = time.perf_counter()
        request = services.parse_request(args, user)
        export = services.open_export(request, user)
        try:
            if write:
                with open(os.devnull, "w", encoding="utf-8", newline="") as sink:
                    for chunk in csv_chunks(export.header, export.rows, preamble=export.preamble):
                        sink.write(chunk)
            else:
                for _entry in export.rows.entries():
                    pass
        finally:
            export.close()
        return export.count, time.perf_counter() - start


# The columns and joins of the identified export, as one plain SQL statement.
_BASE = """patient.identifier, site.code, assessment.episode_id, episode.started_at,
    assessment.scale_key, assessment.scale_version, assessment.id, assessment.observed_at,
    assessment.total, assessment.band, assessment.complete, assessment.status,
    assessment.status_reason, assessment.replaces_id, recorder.display_name,
    assessment.recorded_at, reviewer.display_name, assessment.reviewed_at, assessment.notes"""
_JOINS = """assessment
    JOIN patient ON patient.id = assessment.patient_id
    JOIN site ON site.id = patient.site_id
    JOIN episode ON episode.id = assessment.episode_id
    JOIN "user" AS recorder ON recorder.id = assessment.recorded_by_id
    LEFT JOIN "user" AS reviewer ON reviewer.id = assessment.reviewed_by_id
    JOIN item_score ON item_score.assessment_id = assessment.id"""
CEILING_LONG = f"""SELECT {_BASE}, item_score.item_key, item_score.score,
    item_score.not_assessed_reason, item_score.measured_value
FROM {_JOINS}
WHERE assessment.status = 'active'
ORDER BY assessment.observed_at, assessment.id, item_score.position"""  # noqa: S608 - constant


def _ceiling_wide_sql() -> str:
    """One row per COWS assessment, its items pivoted into columns by SQL."""
    from clinic_log.scales import load_scales

    columns = []
    for item in load_scales()["cows"].items:
        picked = f"CASE WHEN item_score.item_key = '{item.key}' THEN item_score.%s END"
        columns.append(f"MAX({picked % 'score'})")
        if item.measurement is not None:
            columns.append(f"MAX({picked % 'measured_value'})")
    columns.append("GROUP_CONCAT(CASE WHEN item_score.score IS NULL THEN item_score.item_key END)")
    return f"""SELECT {_BASE}, {", ".join(columns)}
FROM {_JOINS}
WHERE assessment.status = 'active' AND assessment.scale_key = 'cows'
GROUP BY assessment.id
ORDER BY assessment.observed_at, assessment.id"""  # noqa: S608 - keys from the scale file


def _ceiling(workdir: Path, layout: str) -> tuple[int, float]:
    import csv
    import sqlite3

    sql = CEILING_LONG if layout == "long" else _ceiling_wide_sql()
    start = time.perf_counter()
    connection = sqlite3.connect(workdir / "bench.sqlite3")
    try:
        cursor = connection.execute(sql)
        with open(os.devnull, "w", encoding="utf-8", newline="") as sink:
            writer = csv.writer(sink, lineterminator="\r\n")
            writer.writerow([d[0] for d in cursor.description])
            counter = _Counter(cursor)
            writer.writerows(counter)
        return counter.count, time.perf_counter() - start
    finally:
        connection.close()


class _Counter:
    def __init__(self, rows):
        self.rows, self.count = rows, 0

    def __iter__(self):
        for row in self.rows:
            self.count += 1
            yield row


def _baseline(workdir: Path) -> tuple[int, float]:
    """Import and create the app, load the user: what every export child pays first."""
    start = time.perf_counter()
    from sqlalchemy import select

    from clinic_log import create_app
    from clinic_log.extensions import db
    from clinic_log.models import User

    app = create_app(app_config(workdir))
    with app.app_context():
        db.session.scalar(select(User).where(User.username == USERNAME))
    return 0, time.perf_counter() - start


JOBS = {
    "build": None,  # run by child() itself: it prints the counts
    "baseline": lambda w: _baseline(w),
    "wide": lambda w: _ours(w, {"layout": "wide", "scale": "cows"}, write=True),
    "long": lambda w: _ours(w, {"layout": "long"}, write=True),
    "long-read-only": lambda w: _ours(w, {"layout": "long"}, write=False),
    "ceiling-wide": lambda w: _ceiling(w, "wide"),
    "ceiling-long": lambda w: _ceiling(w, "long"),
}


def child(job: str, workdir: Path, assessments: int, patients: int) -> None:
    start = time.perf_counter()
    if job == "build":
        counts = build(workdir, assessments, patients)
        print(json.dumps({**counts, "rows": 0, "seconds": time.perf_counter() - start}))
        return
    rows, seconds = JOBS[job](workdir)
    print(json.dumps({"rows": rows, "seconds": seconds}))


def run_child(job: str, workdir: Path, *extra: str) -> dict:
    """Run one job in a fresh interpreter; its peak RSS comes from the kernel via wait4."""
    process = subprocess.Popen(
        [sys.executable, __file__, "--child", job, "--workdir", str(workdir), *extra],
        stdout=subprocess.PIPE,
        cwd=ROOT,
    )
    out = process.stdout.read()
    process.stdout.close()
    _pid, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"{job} failed with exit code {process.returncode}")
    result = json.loads(out.decode().strip().splitlines()[-1])
    result["peak_mb"] = usage.ru_maxrss / 1024  # Linux: kilobytes
    return result


# --------------------------------------------------------------------------- main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--assessments", type=int, default=200_000)
    parser.add_argument("--patients", type=int, default=1_000)
    parser.add_argument(
        "--split", action="store_true", help="also time reading the long rows without writing"
    )
    parser.add_argument("--child", choices=sorted(JOBS), help=argparse.SUPPRESS)
    parser.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    options = parser.parse_args()
    patients = min(options.patients, options.assessments)
    if options.child:
        child(options.child, options.workdir, options.assessments, patients)
        return 0
    # This process imports nothing of the app and stays small: a child's peak RSS starts
    # from what it inherits at fork, so every job, the build included, runs in a child.
    jobs = ["baseline", "wide", "ceiling-wide", "long", "ceiling-long"]
    if options.split:
        jobs.insert(4, "long-read-only")

    with tempfile.TemporaryDirectory(prefix="clinic_log_bench_") as tmp:
        workdir = Path(tmp)
        began = time.perf_counter()
        counts = run_child(
            "build", workdir, "--assessments", str(options.assessments), "--patients",
            str(patients),
        )  # fmt: skip
        built = counts["seconds"]
        size_mb = (workdir / "bench.sqlite3").stat().st_size / 2**20
        print(
            f"Built in a child {counts['assessments']:,} assessments ({counts['cows']:,} COWS) for "
            f"{counts['patients']:,} patients, {counts['item_scores']:,} item scores, "
            f"{size_mb:.0f} MB SQLite, in {built:.1f} s\n"
        )
        results = {job: run_child(job, workdir) for job in jobs}

    base = results["baseline"]["peak_mb"]
    labels = {
        "baseline": "baseline: import + create_app",  # its seconds: start-up, not counted above
        "wide": "ours: wide COWS",
        "ceiling-wide": "ceiling: sqlite3 + csv, wide",
        "long": "ours: long, all scales",
        "long-read-only": "ours: long, reading only",
        "ceiling-long": "ceiling: sqlite3 + csv, long",
    }
    print(f"{'':32} {'rows':>10} {'seconds':>8} {'rows/s':>10} {'peak MB':>8} {'+base MB':>9}")
    for job in jobs:
        r = results[job]
        rate = f"{r['rows'] / r['seconds']:,.0f}" if r["rows"] else "-"
        rows = f"{r['rows']:,}" if r["rows"] else "-"
        extra = f"{r['peak_mb'] - base:+.0f}" if job in ("wide", "long", "long-read-only") else ""
        print(
            f"{labels[job]:32} {rows:>10} {r['seconds']:8.2f} {rate:>10} "
            f"{r['peak_mb']:8.0f} {extra:>9}"
        )
    assert results["wide"]["rows"] == results["ceiling-wide"]["rows"] == counts["cows"]
    assert results["long"]["rows"] == results["ceiling-long"]["rows"] == counts["item_scores"]
    print()
    for layout in ("wide", "long"):
        ratio = results[layout]["seconds"] / results[f"ceiling-{layout}"]["seconds"]
        verdict = "met" if ratio <= 2 else "NOT met"
        print(f"{layout}: ours / ceiling time = {ratio:.2f}x (target <= 2x: {verdict})")
    if options.split:
        share = results["long-read-only"]["seconds"] / results["long"]["seconds"]
        print(f"long: reading takes {share:.0%} of our time, formatting and writing the rest")
    peak = max(results[job]["peak_mb"] for job in ("wide", "long"))
    verdict = "met" if peak < 150 else "NOT met"
    print(f"peak memory of our exports: {peak:.0f} MB (target < 150 MB: {verdict}), "
          f"{peak - base:+.0f} MB over the app's baseline")  # fmt: skip
    print(f"total run time {time.perf_counter() - began:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
