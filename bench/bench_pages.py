"""Pages under load: clinic_log under gunicorn against a bare Flask ceiling, in the same run.

Run with ``.venv/bin/python bench/bench_pages.py`` (1,000 patients, 200,000 assessments, 10 s
per page; about 5 minutes on 2 cores) or ``--quick`` (100 / 10,000 / 3 s; about a minute).

1. Builds a temporary SQLite database with the real migrations, then bulk-inserts synthetic
   patients, open episodes, assessments (COWS, symptom ratings, SOWS, GAD-7) and item scores
   over the last 60 days (load_data.py).
2. Serves a bare Flask app (load_bare_app.py: one sqlite3 query, a 20-row table), then
   clinic_log, then the bare app again, each with gunicorn, 2 gthread workers, on 127.0.0.1
   and a free port. The ceiling is the mean of the two bare runs. clinic_log is served with
   two extra routes that answer "ok" after the per-request rules alone (load_floor_app.py),
   so the table shows what those cost beside the pages.
3. Drives each page from N logged-in keep-alive clients for a bounded time and request count
   (load_driver.py) and reports requests/s, the ratio to the ceiling, median and p95
   latency, and gunicorn's CPU time per request (from /proc: unlike requests/s it does not
   depend on how the driver and the server share the 2 cores).
4. Counts the SQL statements of one request of each kind in process (Flask test client and a
   ``before_cursor_execute`` listener) on a small and on the full database; times the CSV
   export against Python's csv module writing the same rows straight from sqlite3; measures
   the peak memory of a full export in a process of its own (load_export_child.py).

Targets: patient page and dashboard at least 0.5 of the ceiling; a fixed number of queries
per page; exports within 2x of the raw csv writer and under 150 MB.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import random
import re
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import load_data
from load_driver import (
    BadReply,
    HttpClient,
    LoadResult,
    balance_connections,
    csrf_token,
    csv_rows,
    gunicorn,
    login,
    peak_rss_mb,
    run_load,
    timed,
    tree_pids,
)
from sqlalchemy import event

from clinic_log import create_app
from clinic_log.extensions import db
from clinic_log.scales import load_scales

BENCH_DIR = Path(__file__).resolve().parent
SUBMISSION_KEY = re.compile(r'name="submission_key"[^>]*value="([0-9a-f]{32})"')
EXPORT_URL = "/exports/assessments.csv?layout=long"
PAGE_TARGET = 0.5  # patient page and dashboard: at least half the bare ceiling
EXPORT_TARGET = 2.0  # exports: within 2x of the raw csv writer
RSS_TARGET_MB = 150
SEQUENTIAL_EXPORTS = 15
BUDGET = 100_000  # requests per page run, on top of the time limit
TZ = ZoneInfo(load_data.SITE_TZ)


@dataclass
class Row:
    """One line of the page table."""

    name: str
    result: LoadResult
    label: str = "get"
    target: bool = False  # held to PAGE_TARGET
    sql: tuple = (None, None)  # statements per request: small database, full database
    in_process_ms: tuple = (None, None)  # that one request's time, in process
    rows_per_request: int = 0


@dataclass
class SmallExport:
    """The small export measured: one patient's."""

    name: str
    query: str  # appended to EXPORT_URL
    raw_filter: dict  # the same filter for load_data.raw_export


@dataclass
class Run:
    """What the phases share and what they found."""

    args: argparse.Namespace
    workdir: Path
    dataset: load_data.Dataset
    patient_id: int
    others: list[int]
    small_export: SmallExport | None = None
    rows: list[Row] = field(default_factory=list)
    ceilings: list[float] = field(default_factory=list)
    png_ceilings: list[float] = field(default_factory=list)  # the same chart bytes, bare
    exports: list[list] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ceiling(self) -> float:
        return statistics.mean(self.ceilings)


# --- load phases ---------------------------------------------------------------------------


def logged_in(port: int, count: int, username: str) -> list[HttpClient]:
    clients = [HttpClient(port) for _ in range(count)]
    for client in clients:
        login(client, username, load_data.PASSWORD)
    return clients


def load(run: Run, server, clients, task, budget: int = BUDGET) -> LoadResult:
    try:
        spread = balance_connections(server, clients, lambda client: client.get("/login"))
        if len(spread) < 2 or max(spread.values()) - min(spread.values()) > 1:
            run.notes.append(f"connections could not be spread evenly: {sorted(spread.values())}")
        return run_load(
            task, clients, seconds=run.args.seconds, max_iterations=budget, server_pid=server.pid
        )
    finally:
        for client in clients:
            client.close()


def get_task(path: str, suffixes: list[str] | None = None) -> Callable:
    """GET ``path`` (plus the n-th suffix, when given) and expect 200."""

    def task(client: HttpClient, n: int) -> dict[str, float]:
        url = path + (suffixes[n] if suffixes else "")
        return {"get": timed(lambda: client.get(url), 200)[1]}

    return task


def measure_bare(run: Run) -> LoadResult:
    """The 20-row table (the ceiling of every page) and the same chart bytes (the ceiling of a
    cached chart), both from the bare app."""
    env = {"BENCH_BARE_DB": str(run.dataset.path), "BENCH_BARE_PNG": str(chart_png(run))}
    log = run.workdir / "bare.log"
    with gunicorn("load_bare_app:app", env, log, pythonpath=str(BENCH_DIR)) as server:
        results = []
        for path in (f"/patients/{run.patient_id}", "/chart.png"):
            clients = [HttpClient(server.port) for _ in range(run.args.clients)]
            for client in clients:
                timed(lambda c=client, p=path: c.get(p), 200)  # warm up: connect, first query
            results.append(load(run, server, clients, get_task(path)))
    table, png = results
    run.ceilings.append(table.per_second)
    run.png_ceilings.append(png.per_second)
    return table


def chart_png(run: Run) -> Path:
    """The COWS trend PNG clinic_log serves for the benchmark's patient, rendered once."""
    path = run.workdir / "chart.png"
    if not path.exists():
        app = create_app(load_data.app_config(run.dataset.path, run.dataset.instance))
        client = _test_login(app, load_data.CLINICIAN)
        response = client.get(f"/patients/{run.patient_id}/charts/cows.png")
        assert response.status_code == 200, response.status_code
        path.write_bytes(response.data)
        with app.app_context():
            db.engine.dispose()
    return path


def measure_app(run: Run) -> None:
    env = load_data.server_environment(run.dataset)
    log = run.workdir / "app.log"
    with gunicorn("load_floor_app:app", env, log, pythonpath=str(BENCH_DIR)) as server:
        try:
            measure_pages(run, server)
            measure_entry(run, server)
            measure_exports(run, server)
        finally:
            workers = [pid for pid in tree_pids(server.pid) if pid != server.pid]
            peak = max((peak_rss_mb(pid) for pid in workers), default=float("nan"))
            run.notes.append(f"gunicorn app workers' peak RSS (VmHWM) after the run: {peak:.0f} MB")
    errors = [line for line in log.read_text(errors="replace").splitlines() if "Error" in line]
    if errors:
        run.notes.append(f"app.log has {len(errors)} error lines, the last: {errors[-1][:160]}")


def measure_pages(run: Run, server) -> None:
    patient = f"/patients/{run.patient_id}"
    chart = f"{patient}/charts/cows.png"
    for name, username, path, target in (
        # The rules alone (load_floor_app.py): no page can cost less than these.
        ("rules only: logged in", load_data.CLINICIAN, "/bench/floor", False),
        ("  + patient guard", load_data.CLINICIAN, f"/bench/floor/{run.patient_id}", False),
        ("patient page", load_data.CLINICIAN, patient, True),
        ("dashboard", load_data.SUPERVISOR, "/dashboard/", True),
        # No target: the two lists that grow with the data (every entry waits for review in
        # the generated data; the patient list shows 200 of the 1,000 patients).
        ("review queue", load_data.SUPERVISOR, "/review/", False),
        ("patient list", load_data.CLINICIAN, "/patients/", False),
        ("chart, cached repeat", load_data.CLINICIAN, chart, False),
    ):
        print(f"  {name} ...", flush=True)
        clients = logged_in(server.port, run.args.clients, username)
        for client in clients:  # warm-up: every connection, and each worker's first queries
            timed(lambda c=client, p=path: c.get(p), 200)
        run.rows.append(Row(name, load(run, server, clients, get_task(path)), target=target))
    print("  chart, cold render ...", flush=True)
    windows = chart_windows(date.today(), 3000)
    clients = logged_in(server.port, run.args.clients, load_data.CLINICIAN)
    result = load(run, server, clients, get_task(chart, windows), len(windows))
    run.rows.append(Row("chart, cold render", result))


def chart_windows(today: date, count: int, seed: int = 7) -> list[str]:
    """Distinct ?start=&end= pairs that all cover the whole 60 days, so that every request
    misses the ETag-keyed cache of either worker while drawing the same points."""
    pairs = [
        f"?start={today - timedelta(days=start)}&end={today + timedelta(days=end)}"
        for start in range(load_data.DAYS + 1, load_data.DAYS + 31)
        for end in range(0, 120)
    ]
    random.Random(seed).shuffle(pairs)
    return pairs[:count]


def measure_entry(run: Run, server) -> None:
    print("  assessment form + POST ...", flush=True)
    clients = logged_in(server.port, run.args.clients, load_data.CLINICIAN)
    result = load(run, server, clients, assessment_task(run.others))
    run.rows.append(Row("assessment POST (COWS)", result, "post"))
    run.rows.append(Row("  its form GET", result, "form"))


def assessment_task(patient_ids: list[int]) -> Callable:
    """GET the COWS form (a fresh csrf_token and submission_key), then POST a valid entry;
    the POST must answer 302 to the saved assessment."""
    items = load_scales()["cows"].items

    def task(client: HttpClient, n: int) -> dict[str, float]:
        path = f"/patients/{patient_ids[n % len(patient_ids)]}/assessments/new/cows"
        form, form_seconds = timed(lambda: client.get(path), 200)
        observed = datetime.now(UTC) - timedelta(minutes=5 + n % 600)
        fields = entry_fields(form.body, observed)
        for i, item in enumerate(items):
            fields[item.key] = str(item.allowed_scores[(n + i) % len(item.allowed_scores)])
        saved, post_seconds = timed(lambda: client.post_form(path, fields), 302)
        if "/assessments/" not in saved.headers.get("Location", ""):
            raise BadReply(f"POST did not save: {saved.headers.get('Location')!r}")
        return {"post": post_seconds, "form": form_seconds}

    return task


def entry_fields(html: bytes, observed: datetime) -> dict[str, str]:
    key = SUBMISSION_KEY.search(html.decode())
    if key is None:
        raise BadReply("no submission_key on the entry form")
    return {
        "csrf_token": csrf_token(html),
        "submission_key": key.group(1),
        "observed_at": observed.astimezone(TZ).strftime("%Y-%m-%dT%H:%M"),
        "observed_at_fold": "0",
        "notes": "",
    }


# --- exports -------------------------------------------------------------------------------


def export_task(url: str, rows_seen: list[int]) -> Callable:
    """GET an export whole and check that every row the header announces arrived."""

    def task(client: HttpClient, _n: int) -> dict[str, float]:
        reply, seconds = timed(lambda: client.get(url), 200)
        announced = int(reply.headers.get("X-Clinic-Log-Rows", -1))
        if csv_rows(reply.body) != announced:
            raise BadReply(f"export cut short: {csv_rows(reply.body)} of {announced} rows")
        rows_seen.append(announced)
        return {"get": seconds}

    return task


def stream_export(client: HttpClient, url: str) -> tuple[int, float]:
    """One export, streamed and checked; (rows, seconds)."""
    began = time.perf_counter()
    reply, _size, lines = client.stream(url)
    seconds = time.perf_counter() - began
    announced = int(reply.headers.get("X-Clinic-Log-Rows", -1))
    if reply.status != 200 or csv_rows(reply.body, lines) != announced:
        raise BadReply(f"{url}: HTTP {reply.status}, {csv_rows(reply.body, lines)} of {announced}")
    return announced, seconds


def measure_exports(run: Run, server) -> None:
    run.small_export = small = SmallExport(
        "export CSV, one patient", f"&patient={run.patient_id}", {"patient_id": run.patient_id}
    )
    print(f"  {small.name}, under load ...", flush=True)
    rows_seen: list[int] = []
    clients = logged_in(server.port, run.args.clients, load_data.CLINICIAN)
    result = load(run, server, clients, export_task(EXPORT_URL + small.query, rows_seen))
    per_request = int(statistics.median(rows_seen)) if rows_seen else 0
    run.rows.append(Row(small.name, result, rows_per_request=per_request))
    print(f"  {small.name}, one at a time ...", flush=True)
    name = f"{small.name.removeprefix('export CSV, ')}, over HTTP"
    client = logged_in(server.port, 1, load_data.CLINICIAN)[0]
    try:
        runs = [stream_export(client, EXPORT_URL + small.query) for _ in range(SEQUENTIAL_EXPORTS)]
        run.exports.append([name, runs[0][0], statistics.median(s for _r, s in runs)])
    except (BadReply, OSError, http.client.HTTPException) as error:  # shown, not fatal
        run.notes.append(f"{name} FAILED: {type(error).__name__}: {str(error)[:120]}")
        run.exports.append([name, 0, float("nan")])
    finally:
        client.close()


def measure_export_everything(run: Run) -> dict:
    """The full export in a process of its own: its time and its peak memory."""
    print("full export in a process of its own (time, peak RSS) ...", flush=True)
    done = subprocess.run(
        [sys.executable, str(BENCH_DIR / "load_export_child.py"), str(run.dataset.path)],
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"export child failed:\n{done.stderr[-3000:]}")
    memory = json.loads(done.stdout.strip().splitlines()[-1])
    if memory["status"] != 200 or memory["rows_sent"] != memory["rows"]:
        run.notes.append(f"full export: HTTP {memory['status']}, {memory['rows_sent']} rows of "
                         f"{memory['rows']} announced")  # fmt: skip
    run.exports.append(["everything, WSGI app in process", memory["rows"], memory["seconds"]])
    return memory


def measure_raw_exports(run: Run) -> None:
    """The same rows through Python's csv module straight from sqlite3, in this process."""
    print("the same rows through csv.writer straight from sqlite3 ...", flush=True)
    path, small = run.dataset.path, run.small_export
    small_runs = [load_data.raw_export(path, **small.raw_filter) for _ in range(SEQUENTIAL_EXPORTS)]
    everything = load_data.raw_export(path)
    for line, (rows, _size, _s), seconds in zip(
        run.exports,
        (small_runs[0], everything),
        (statistics.median(r[2] for r in small_runs), everything[2]),
        strict=True,
    ):
        line.append(seconds)
        if rows != line[1]:
            run.notes.append(f"{line[0]}: the app sent {line[1]} rows, the raw writer {rows}")


# --- SQL statements per request, in process ------------------------------------------------


class StatementCounter:
    """Counts the statements one test-client request runs (not BEGIN/COMMIT/PRAGMA)."""

    def __init__(self, app):
        with app.app_context():
            self.engine = db.engine
        self.seen: list[str] = []

    def _record(self, _conn, _cursor, statement, *_args) -> None:
        if not statement.startswith(("BEGIN", "COMMIT", "ROLLBACK", "PRAGMA", "SAVEPOINT")):
            self.seen.append(statement)

    def count(self, call: Callable[[], object]) -> tuple[int | str, float]:
        """(statements, milliseconds) of one request, or ("fails", ms) if it raised."""
        self.seen = []
        event.listen(self.engine, "before_cursor_execute", self._record)
        began = time.perf_counter()
        try:
            response = call()
            response.get_data()  # a streamed export runs its query while it is read
            response.close()
        except Exception:  # noqa: BLE001 - shown in the table, not fatal
            return "fails", (time.perf_counter() - began) * 1000
        finally:
            event.remove(self.engine, "before_cursor_execute", self._record)
        return len(self.seen), (time.perf_counter() - began) * 1000


def _test_login(app, username: str):
    client = app.test_client()
    token = csrf_token(client.get("/login").data)
    client.post(
        "/login", data={"username": username, "password": load_data.PASSWORD, "csrf_token": token}
    )
    return client


def statements_per_request(dataset, small_export: SmallExport | None) -> dict[str, tuple]:
    """One request of each kind, counted in process; the POST saves one real entry."""
    patient_id, other_id = dataset.patient_ids[0], dataset.patient_ids[1]
    app = create_app(load_data.app_config(dataset.path, dataset.instance))
    counter = StatementCounter(app)
    clinician = _test_login(app, load_data.CLINICIAN)
    supervisor = _test_login(app, load_data.SUPERVISOR)
    chart = f"/patients/{patient_id}/charts/cows.png"
    clinician.get(chart)
    form_path = f"/patients/{other_id}/assessments/new/cows"
    counts = {
        "patient page": counter.count(lambda: clinician.get(f"/patients/{patient_id}")),
        "dashboard": counter.count(lambda: supervisor.get("/dashboard/")),
        "review queue": counter.count(lambda: supervisor.get("/review/")),
        "patient list": counter.count(lambda: clinician.get("/patients/")),
        "chart, cached repeat": counter.count(lambda: clinician.get(chart)),
        "chart, cold render": counter.count(lambda: clinician.get(chart + "?end=2099-01-01")),
        "  its form GET": counter.count(lambda: clinician.get(form_path)),
    }
    if small_export is not None:
        url = EXPORT_URL + small_export.query
        counts[small_export.name] = counter.count(lambda: clinician.get(url))
    fields = entry_fields(clinician.get(form_path).data, datetime.now(UTC) - timedelta(minutes=7))
    fields.update({item.key: str(item.allowed_scores[1]) for item in load_scales()["cows"].items})
    counts["assessment POST (COWS)"] = counter.count(lambda: clinician.post(form_path, data=fields))
    with app.app_context():
        db.engine.dispose()
    return counts


def attach_sql_counts(run: Run, small: load_data.Dataset) -> None:
    print("SQL statements per request, small and full database ...", flush=True)
    small_counts = statements_per_request(small, run.small_export)
    full_counts = statements_per_request(run.dataset, run.small_export)
    for row in run.rows:
        if row.name in full_counts:
            row.sql = (small_counts[row.name][0], full_counts[row.name][0])
            row.in_process_ms = (small_counts[row.name][1], full_counts[row.name][1])


# --- output --------------------------------------------------------------------------------


def machine() -> str:
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (
        f"{os.cpu_count()} cores, {memory:.0f} GB, Python {platform.python_version()}, "
        f"SQLite {sqlite3.sqlite_version}, {platform.platform()}, "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC"
    )


def print_report(run: Run, small: load_data.Dataset, memory: dict) -> None:
    args, dataset = run.args, run.dataset
    print(
        f"\n{args.patients:,} patients, {dataset.assessments:,} assessments, "
        f"{dataset.item_scores:,} item scores (generated in {dataset.seconds:.0f} s); "
        f"{args.clients} clients x {args.seconds:g} s per page; gunicorn 2 gthread workers x 4"
    )
    print(
        "ceiling, bare Flask + sqlite3 (20-row table): "
        + " and ".join(f"{c:,.0f}" for c in run.ceilings)
        + " req/s (before and after clinic_log)"
    )
    header = (
        f"{'page':26} {'req/s':>8} {'x ceil':>7} {'med ms':>8} {'p95 ms':>8} "
        f"{'srv CPU ms':>10} {'SQL/req':>12} {'1 req ms':>14}  target / note"
    )
    print(header)
    print("-" * len(header))
    for row in run.rows:
        print(_row_line(row, run.ceiling))
    print(
        "srv CPU ms: CPU time of gunicorn's processes per request (per form GET + POST for the "
        "entry); x ceil: req/s over the mean ceiling;\nSQL/req and 1 req ms: one request in "
        f"process (test client) on {small.assessments:,} -> {dataset.assessments:,} assessments "
        f"({len(small.patient_ids):,} patients in both)"
    )
    _print_exports(run, memory)
    _print_cached_chart(run)
    for note in run.notes:
        print(f"note: {note}")


def _print_cached_chart(run: Run) -> None:
    """Issue target: a cached chart within 2x of a bare endpoint serving the same bytes."""
    cached = next((row for row in run.rows if row.name == "chart, cached repeat"), None)
    if cached is None or not run.png_ceilings:
        return
    png = statistics.mean(run.png_ceilings)
    times = png / cached.result.per_second
    print(
        f"\nchart, cached repeat: {cached.result.per_second:,.0f} req/s against "
        f"{' and '.join(f'{c:,.0f}' for c in run.png_ceilings)} req/s for the same "
        f"{(run.workdir / 'chart.png').stat().st_size:,} bytes from the bare app: "
        f"{times:.2f}x its cost; <= 2x: {'met' if times <= 2 else 'MISSED'}"
    )
    guard = next((row for row in run.rows if row.name == "  + patient guard"), None)
    if guard is not None:
        print(
            f'  the rules and the patient guard alone, answering "ok": '
            f"{png / guard.result.per_second:.2f}x its cost (the floor under any cached chart)"
        )


def _row_line(row: Row, ceiling: float) -> str:
    result = row.result
    small, full = row.sql
    sql = "" if small is None else f"{small} -> {full}"
    if isinstance(small, int) and small != full:
        sql += "!"
    small_ms, full_ms = row.in_process_ms
    in_process = "" if small_ms is None else f"{small_ms:.0f} -> {full_ms:.0f}"
    ratio = result.per_second / ceiling
    note = ""
    if row.target:
        note = f">= {PAGE_TARGET} x ceiling: {'met' if ratio >= PAGE_TARGET else 'MISSED'}"
    if row.rows_per_request:
        note = f"{row.rows_per_request * result.per_second:,.0f} rows/s"
    if result.errors:
        note += f" ({result.errors} errors: {result.error_kinds.most_common(1)[0][0]})"
    cpu = "in POST" if row.label == "form" else f"{result.server_cpu_ms():.1f}"
    return (
        f"{row.name:26} {result.per_second:8.1f} {ratio:7.3f} {result.median_ms(row.label):8.1f} "
        f"{result.p95_ms(row.label):8.1f} {cpu:>10} {sql:>12} {in_process:>14}  {note}"
    )


def _print_exports(run: Run, memory: dict) -> None:
    print(
        f"\n{'export, long layout, 1 client':30} {'rows':>10} {'app s':>8} {'rows/s':>10} "
        f"{'raw csv s':>10} {'x raw':>7}  target"
    )
    for name, rows, app_s, raw_s in run.exports:
        ratio = app_s / raw_s
        verdict = "met" if ratio <= EXPORT_TARGET else "MISSED"
        print(
            f"{name:30} {rows:10,} {app_s:8.3f} {rows / app_s:10,.0f} {raw_s:10.3f} "
            f"{ratio:7.2f}  <= {EXPORT_TARGET:g} x raw: {verdict}"
        )
    peak = memory["peak_rss_mb"]
    print(
        f"full export in a process of its own: peak RSS {peak:.0f} MB "
        f"({memory['peak_rss_mb_before']:.0f} MB before it started; {memory['rows']:,} rows, "
        f"{memory['bytes'] / 1e6:.0f} MB of CSV in {memory['seconds']:.1f} s through the test "
        f"client); < {RSS_TARGET_MB} MB: "
        f"{'met' if peak < RSS_TARGET_MB else 'MISSED'}"
    )


# --- main ----------------------------------------------------------------------------------


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=1000)
    parser.add_argument("--assessments", type=int, default=200_000)
    parser.add_argument("--seconds", type=float, default=10.0, help="per page")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--quick", action="store_true", help="100 / 10,000 / 3 s smoke run")
    args = parser.parse_args(argv)
    if args.quick:
        args.patients, args.assessments, args.seconds = 100, 10_000, 3.0
    return args


def build_datasets(args, workdir: Path) -> tuple[load_data.Dataset, load_data.Dataset]:
    print(f"machine: {machine()}")
    print(f"generating {args.patients:,} patients / {args.assessments:,} assessments ...")
    dataset = load_data.build(workdir / "full" / "bench.sqlite3", args.patients, args.assessments)
    print(f"  generated in {dataset.seconds:.1f} s ({dataset.item_scores:,} item scores)")
    # As many patients, a twentieth of the entries: what grows is the data, not the page.
    assessments = max(args.patients * 4, args.assessments // 20)
    small = load_data.build(workdir / "small" / "bench.sqlite3", args.patients, assessments)
    print(f"  and a small one for the SQL counts: {args.patients:,} / {assessments:,}")
    return dataset, small


def main(argv: list[str]) -> int:
    # SIGTERM unwinds like Ctrl-C, so the servers' finally blocks stop their process groups.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    args = parse_args(argv)
    began = time.perf_counter()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench_pages_") as tmp:
        workdir = Path(tmp)
        for sub in ("full", "small"):
            (workdir / sub).mkdir()
        dataset, small = build_datasets(args, workdir)
        run = Run(args, workdir, dataset, dataset.patient_ids[0], dataset.patient_ids[1:])
        print("bare Flask ceiling ...", flush=True)
        measure_bare(run)
        print("clinic_log under gunicorn ...", flush=True)
        measure_app(run)
        print("bare Flask ceiling again ...", flush=True)
        bare = measure_bare(run)
        run.rows.insert(0, Row("bare Flask (ceiling)", bare, sql=(1, 1)))
        run.notes.append(
            f"the load driver itself used {bare.client_cpu / max(bare.iterations, 1) * 1000:.2f}"
            " ms CPU per bare request, on the same 2 cores as the servers"
        )
        memory = measure_export_everything(run)
        measure_raw_exports(run)
        attach_sql_counts(run, small)
        run.notes.append(
            "load average (1, 5, 15 min) at the start "
            + ", ".join(f"{x:.1f}" for x in load_before)
            + "; at the end "
            + ", ".join(f"{x:.1f}" for x in os.getloadavg())
            + f" (on {os.cpu_count()} cores; above ~0.3 before we start, others were busy too)"
        )
        print_report(run, small, memory)
    print(f"\ntotal run time {time.perf_counter() - began:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
