"""Synthetic data for the page benchmarks, inserted in bulk, and the raw CSV export ceiling.

Everything here is made up: patients BENCH-0001..., one site, one clinician and one
supervisor. The schema comes from the real migrations (``flask db upgrade``), the site and
the two accounts from the services (so their audit events and password hashes are real);
patients, episodes, assessments and item scores then go in with ``executemany`` through
plain sqlite3, because the services take milliseconds per entry and 200,000 entries would
take minutes. No audit events are written for the bulk rows; the dashboard summary, which the
services keep on every write, is then rebuilt from them.
"""

from __future__ import annotations

import contextlib
import csv
import io
import logging
import random
import sqlite3
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from flask_migrate import upgrade

from clinic_log import create_app
from clinic_log.auth.services import create_site, create_user
from clinic_log.dashboard import summary as dashboard_summary
from clinic_log.extensions import db
from clinic_log.identifiers import identifier_skeleton
from clinic_log.scales import load_scales

SITE_CODE = "BENCH"
SITE_TZ = "Europe/London"
CLINICIAN = "bench.clinician"
SUPERVISOR = "bench.supervisor"
PASSWORD = "benchmark passphrase 1"
SECRET_KEY = "bench-secret-key-" + "k" * 40
HASH_METHOD = "scrypt:1024:8:1"  # cheap logins: the benchmark measures pages, not scrypt
DAYS = 60
# Share of entries per scale: mostly COWS and the symptom ratings, some SOWS and GAD-7.
SCALE_MIX = {"cows": 0.45, "symptom_nrs": 0.35, "sows": 0.15, "gad7": 0.05}
SUBSTANCES = ("opioid", "kratom", "opioid_and_kratom", "other")


@dataclass(frozen=True)
class Dataset:
    path: Path
    url: str
    instance: Path
    patient_ids: list[int]
    assessments: int
    item_scores: int
    seconds: float


def app_config(path: Path, instance: Path) -> dict:
    """Settings for an in-process app on this database (the same the servers get)."""
    return {
        "DATABASE_URL": f"sqlite:///{path}",
        "INSTANCE_PATH": str(instance),
        "SECRET_KEY": SECRET_KEY,
        "PASSWORD_HASH_METHOD": HASH_METHOD,
        "DEMO": True,  # no second factor for the supervisor
        "LOGIN_ATTEMPTS_PER_MINUTE": 100_000,
        "EXPORTS_PER_MINUTE": 100_000,  # the load driver exports far faster than a person
    }


def server_environment(dataset: Dataset) -> dict[str, str]:
    """The same settings as CLINIC_LOG_* variables, for ``clinic_log:create_app()``."""
    return {
        "CLINIC_LOG_DATABASE_URL": dataset.url,
        "CLINIC_LOG_INSTANCE_PATH": str(dataset.instance),
        "CLINIC_LOG_SECRET_KEY": SECRET_KEY,
        "CLINIC_LOG_PASSWORD_HASH_METHOD": HASH_METHOD,
        "CLINIC_LOG_DEMO": "true",
        "CLINIC_LOG_LOGIN_ATTEMPTS_PER_MINUTE": "100000",
        "CLINIC_LOG_EXPORTS_PER_MINUTE": "100000",
    }


def build(path: Path, patients: int, assessments: int, seed: int = 20261125) -> Dataset:
    """Migrate an empty database at ``path``, add the site and users, then bulk-insert."""
    began = time.perf_counter()
    instance = path.parent / "instance"
    user_ids = _migrate_and_add_users(path, instance)
    with sqlite3.connect(path) as conn:
        # A throwaway database: no fsync per chunk, a big page cache, indexes built once at
        # the end (the same CREATE INDEX statements the migrations ran).
        conn.execute("PRAGMA synchronous=OFF")
        conn.execute("PRAGMA cache_size=-262144")
        indexes = _drop_bulk_indexes(conn)
        patient_ids, item_count = _bulk_insert(conn, user_ids, patients, assessments, seed)
        for statement in indexes:
            conn.execute(statement)
    _summarise(path, instance)
    with sqlite3.connect(path) as conn:
        conn.execute("ANALYZE")
    return Dataset(
        path=path,
        url=f"sqlite:///{path}",
        instance=instance,
        patient_ids=patient_ids,
        assessments=assessments,
        item_scores=item_count,
        seconds=time.perf_counter() - began,
    )


def _quiet_upgrade() -> None:
    """``flask db upgrade``: the production schema, exactly (tests/test_migrations.py keeps
    it equal to the models), without Alembic's INFO lines. Its logging config binds its
    handlers to the stderr of the moment; they go back to the real one afterwards."""
    buffer = io.StringIO()
    with contextlib.redirect_stderr(buffer):
        upgrade()
    for logger in (logging.getLogger(), logging.getLogger("alembic")):
        for handler in logger.handlers:
            if isinstance(handler, logging.StreamHandler) and handler.stream is buffer:
                handler.setStream(sys.stderr)
    logging.getLogger("alembic").setLevel(logging.WARNING)


def _migrate_and_add_users(path: Path, instance: Path) -> dict[str, int]:
    app = create_app(app_config(path, instance))
    with app.app_context():
        _quiet_upgrade()
        site = create_site(SITE_CODE, "Bench Clinic (synthetic)", SITE_TZ)
        ids = {"site": site.id}
        for username, role in ((CLINICIAN, "clinician"), (SUPERVISOR, "supervisor")):
            ids[role] = create_user(username, PASSWORD, role, [SITE_CODE]).id
        db.session.remove()
        db.engine.dispose()
    return ids


def _summarise(path: Path, instance: Path) -> None:
    """The dashboard summary that the services keep on every write, made for the bulk rows
    with the app's own rebuild."""
    app = create_app(app_config(path, instance))
    with app.app_context():
        dashboard_summary.rebuild()
        db.session.remove()
        db.engine.dispose()


def _drop_bulk_indexes(conn) -> list[str]:
    """Drop the named indexes of the two big tables; return their CREATE statements (the
    automatic indexes of unique constraints stay: they cannot be dropped)."""
    found = conn.execute(
        "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
        " AND tbl_name IN ('assessment', 'item_score')"
    ).fetchall()
    for name, _sql in found:
        conn.execute(f'DROP INDEX "{name}"')
    return [sql for _name, sql in found]


def _bulk_insert(conn, user_ids: dict[str, int], patients: int, assessments: int, seed: int):
    rng = random.Random(seed)
    now = datetime.now(UTC).replace(microsecond=0)
    start = now - timedelta(days=DAYS)
    courses = [_course(rng, n) for n in range(patients)]
    conn.executemany(
        "INSERT INTO patient (id, site_id, identifier, identifier_key, identifier_skeleton,"
        " display_label, created_by_id, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (
            (n + 1, user_ids["site"], f"BENCH-{n + 1:04d}", f"bench-{n + 1:04d}",
             identifier_skeleton(f"BENCH-{n + 1:04d}"), f"Synthetic {n + 1}",
             user_ids["clinician"], _db_time(start))
            for n in range(patients)
        ),
    )  # fmt: skip
    conn.executemany(
        "INSERT INTO episode (id, patient_id, started_at, ended_at, substance_context, note,"
        " created_by_id, created_at) VALUES (?, ?, ?, NULL, ?, '', ?, ?)",
        (
            (n + 1, n + 1, _db_time(start), course.substance, user_ids["clinician"],
             _db_time(start))
            for n, course in enumerate(courses)
        ),
    )  # fmt: skip
    plan = _plan(rng, courses, assessments, start, now)
    scales = {key: _ScaleRows.of(scale) for key, scale in load_scales().items()}
    items: list[tuple] = []
    conn.executemany(
        "INSERT INTO assessment (id, patient_id, episode_id, scale_key, scale_version,"
        " observed_at, recorded_at, recorded_by_id, total, complete, band, notes, status,"
        " version) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, '', 'active', 1)",
        _assessment_rows(rng, plan, courses, scales, user_ids, start, items),
    )
    conn.executemany(
        "INSERT INTO item_score (assessment_id, item_key, position, score,"
        " not_assessed_reason) VALUES (?, ?, ?, ?, ?)",
        items,
    )
    return list(range(1, patients + 1)), len(items)


@dataclass(frozen=True)
class _Course:
    substance: str
    peak: float  # 0..1 of each item's range at the worst
    settle_days: float
    quiet_hours: float  # time since the last entry: some patients show as overdue


def _course(rng: random.Random, n: int) -> _Course:
    return _Course(
        substance=SUBSTANCES[n % len(SUBSTANCES)],
        peak=rng.uniform(0.2, 0.95),
        settle_days=rng.uniform(3, 25),
        quiet_hours=rng.choice((0.2, 1, 3, 6, 12, 30)),
    )


def _plan(rng, courses, total: int, start: datetime, now: datetime) -> list[tuple]:
    """(observed_at, patient index, scale) for every entry, in observation order, so ids
    interleave patients as they would in a live clinic."""
    keys, weights = list(SCALE_MIX), list(SCALE_MIX.values())
    per_patient, extra = divmod(total, len(courses))
    plan = []
    for n, course in enumerate(courses):
        first = start + timedelta(hours=1)
        span = (now - timedelta(hours=course.quiet_hours) - first).total_seconds()
        for _ in range(per_patient + (1 if n < extra else 0)):
            at = first + timedelta(seconds=rng.uniform(0, span))
            plan.append((at.replace(microsecond=0), n, rng.choices(keys, weights)[0]))
    plan.sort()
    return plan


@dataclass(frozen=True)
class _ScaleRows:
    """What the generator needs of a scale, looked up once instead of per item score."""

    scale: object
    version: str
    items: tuple[tuple[int, str, tuple[int, ...]], ...]  # (position, key, allowed scores)

    @classmethod
    def of(cls, scale) -> _ScaleRows:
        items = tuple((p, item.key, item.allowed_scores) for p, item in enumerate(scale.items))
        return cls(scale, scale.version, items)


def _assessment_rows(rng, plan, courses, scales, user_ids, start, items) -> Iterator[tuple]:
    """Assessment rows, appending their item scores to ``items`` as a side list."""
    recorders = (user_ids["clinician"], user_ids["supervisor"])
    for assessment_id, (at, n, scale_key) in enumerate(plan, start=1):
        scale = scales[scale_key]
        level = _severity(courses[n], (at - start).total_seconds() / 86400, rng)
        total, complete = 0, True
        for position, key, allowed in scale.items:
            last = len(allowed) - 1
            score = allowed[min(last, max(0, round(level * last + rng.random() - 0.5)))]
            reason = None
            if scale_key == "cows" and at.hour in (2, 3) and rng.random() < 0.05:
                score, reason, complete = None, "asleep", False  # a night-time check
            else:
                total += score
            items.append((assessment_id, key, position, score, reason))
        band = scale.scale.band_for(total) if complete else None
        recorded_by = recorders[0] if rng.random() < 0.85 else recorders[1]
        yield (
            assessment_id, n + 1, n + 1, scale_key, scale.version, _db_time(at),
            _db_time(at + timedelta(minutes=rng.randint(1, 20))), recorded_by, total,
            int(complete), band.label if band else None,
        )  # fmt: skip


def _severity(course: _Course, days_in: float, rng: random.Random) -> float:
    """Rise over the first day and a half, then settle; with noise per entry."""
    if days_in < 1.5:
        level = course.peak * (0.4 + 0.6 * days_in / 1.5)
    else:
        level = course.peak * max(0.08, 1 - (days_in - 1.5) / course.settle_days)
    return min(1.0, max(0.0, level + rng.gauss(0, 0.08)))


def _db_time(value: datetime) -> str:
    """As SQLAlchemy stores it: naive UTC text with microseconds (whole seconds here)."""
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "seconds") + ".000000"


# --- the export ceiling: Python's csv module straight from sqlite3 ------------------------

RAW_EXPORT_SQL = """
SELECT p.identifier, s.code, a.episode_id,
       strftime('%Y-%m-%dT%H:%M:%SZ', e.started_at), a.scale_key, a.scale_version, a.id,
       strftime('%Y-%m-%dT%H:%M:%SZ', a.observed_at), a.observed_at, s.timezone,
       a.total, a.band, a.complete, a.status, a.status_reason, a.replaces_id,
       rec.display_name, strftime('%Y-%m-%dT%H:%M:%SZ', a.recorded_at), rev.display_name,
       strftime('%Y-%m-%dT%H:%M:%SZ', a.reviewed_at), a.notes,
       i.item_key, i.score, i.not_assessed_reason, i.measured_value
FROM assessment a
JOIN patient p ON p.id = a.patient_id
JOIN site s ON s.id = p.site_id
JOIN episode e ON e.id = a.episode_id
JOIN user rec ON rec.id = a.recorded_by_id
LEFT JOIN user rev ON rev.id = a.reviewed_by_id
JOIN item_score i ON i.assessment_id = a.id
WHERE a.status = 'active' {filters}
ORDER BY a.observed_at, a.id, i.position
"""


def raw_export(path: Path, *, patient_id: int | None = None) -> tuple[int, int, float]:
    """Write the long-layout export's rows with csv.writer, chunked like the app; return
    (rows, bytes, seconds). Same columns, quoting, filter and order; no Flask, no SQLAlchemy."""
    began = time.perf_counter()
    item_meta = {
        (scale.key, item.key): (item.respondent, item.domain)
        for scale in load_scales().values()
        for item in scale.items
    }
    sql = RAW_EXPORT_SQL.format(filters="AND a.patient_id = ?" if patient_id else "")
    params = (patient_id,) if patient_id else ()
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    buffer = io.StringIO()
    writer = csv.writer(buffer, quoting=csv.QUOTE_NONNUMERIC, lineterminator="\r\n")
    rows = size = 0
    local_of: dict[str, str] = {}
    try:
        cursor = conn.execute(sql, params)
        for row in cursor:
            local = local_of.get(row[8])
            if local is None:
                local_of.clear()  # rows of one assessment are consecutive: keep one entry
                local = local_of[row[8]] = _local_iso(row[8], row[9])
            respondent, domain = item_meta.get((row[4], row[21]), ("", ""))
            writer.writerow(
                [*row[:8], local, row[10], row[11] if row[12] else "",
                 "complete" if row[12] else "incomplete", *row[13:21], row[21], respondent,
                 domain, "NA" if row[22] is None else row[22], row[23] or "", row[24]]
            )  # fmt: skip
            rows += 1
            if rows % 500 == 0:
                size += len(buffer.getvalue())
                buffer.seek(0)
                buffer.truncate()
        size += len(buffer.getvalue())
    finally:
        conn.close()
    return rows, size, time.perf_counter() - began


def _local_iso(stored: str, tz_name: str) -> str:
    value = datetime.fromisoformat(stored).replace(tzinfo=UTC)
    return value.astimezone(ZoneInfo(tz_name)).isoformat(timespec="seconds")
