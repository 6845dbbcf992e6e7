"""The review queue's page with 2,000 and with 200,000 entries waiting, in process.

Run with ``.venv/bin/python bench/bench_review_queue.py`` (2,000 and 200,000 waiting entries,
a few minutes, most of it building the large database) or ``--quick`` (2,000 and 20,000).

Each database comes from load_data.py: one site, bulk-inserted entries, none signed, so every
entry waits (about 15% recorded by the supervisor, who sees those on their own tab). In the
same process and run, for each size:

- a bare Flask page (load_bare_app.py's 20-row table from one sqlite3 query) is timed as the
  yardstick, so the ratios do not depend on how busy the machine is;
- the queue's pages are timed through the Flask test client as the supervisor: the first
  page, newest first, the second page (a keyset cursor), the supervisor's own tab, and one
  patient's entries;
- each page's SQL statements are counted.

The queue walks a partial index from the page's start point and stops once the page is full,
and its counts stop at 1,000; so its time and its statements should be the same at both
sizes. Nothing here asserts a time: tests/test_review_queue.py asserts the statement counts
(on a small scale).
"""

from __future__ import annotations

import argparse
import re
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

import load_data
from flask import Flask
from load_bare_app import PAGE, QUERY
from sqlalchemy import event

from clinic_log import create_app
from clinic_log.extensions import db

_CSRF = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')
_NEXT = re.compile(r'rel="next" href="([^"]+)"')


def bare_app(path: Path) -> Flask:
    """load_bare_app's page on this database, in process (its own connection, kept)."""
    app = Flask("bare")
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)

    @app.route("/patients/<int:patient_id>")
    def patient(patient_id: int):
        rows = conn.execute(QUERY, (patient_id,)).fetchall()
        return PAGE.render(patient_id=patient_id, rows=rows)

    return app


def timed(get, url: str, repeat: int) -> float:
    """Median milliseconds of ``repeat`` GETs of ``url`` after a few to warm up."""
    for _ in range(10):
        assert get(url).status_code == 200, url
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        response = get(url)
        response.get_data()
        times.append((time.perf_counter() - began) * 1000)
        assert response.status_code == 200, url
    return statistics.median(times)


def measure(dataset: load_data.Dataset, repeat: int) -> dict[str, tuple[float, int]]:
    """{page: (median ms, statements)} for the bare page and each queue page."""
    bare = bare_app(dataset.path).test_client()
    results = {
        "bare Flask page": (timed(bare.get, f"/patients/{dataset.patient_ids[0]}", repeat), 1)
    }
    app = create_app(load_data.app_config(dataset.path, dataset.instance))
    client = app.test_client()
    token = _CSRF.search(client.get("/login").get_data(as_text=True)).group(1)
    client.post(
        "/login",
        data={
            "username": load_data.SUPERVISOR,
            "password": load_data.PASSWORD,
            "csrf_token": token,
        },
    )
    first = client.get("/review/").get_data(as_text=True)
    second = _NEXT.search(first).group(1).replace("&amp;", "&")
    pages = {
        "queue, first page": "/review/",
        "queue, newest first": "/review/?order=newest",
        "queue, second page": second,
        "queue, own tab": "/review/?show=own",
        "queue, one patient": f"/review/?patient={dataset.patient_ids[0]}",
    }
    results.update(time_and_count(app, client, pages, repeat))
    return results


def time_and_count(app: Flask, client, pages: dict[str, str], repeat: int) -> dict:
    """For each named page: (median milliseconds of ``repeat`` GETs, SQL statements one GET
    runs, transaction control left out). Disposes of the app's engine afterwards."""
    results = {}
    with app.app_context():
        engine = db.engine
    for name, url in pages.items():
        ms = timed(client.get, url, repeat)
        seen: list[str] = []

        def record(_conn, _cursor, statement, *_args, seen=seen):
            if not statement.startswith(("BEGIN", "COMMIT", "ROLLBACK", "PRAGMA", "SAVEPOINT")):
                seen.append(statement)

        event.listen(engine, "before_cursor_execute", record)
        try:
            client.get(url).get_data()
        finally:
            event.remove(engine, "before_cursor_execute", record)
        results[name] = (ms, len(seen))
    with app.app_context():
        db.engine.dispose()
    return results


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=2_000, help="entries waiting, small")
    parser.add_argument("--large", type=int, default=200_000, help="entries waiting, large")
    parser.add_argument("--patients", type=int, default=1_000)
    parser.add_argument("--repeat", type=int, default=100, help="requests per page")
    parser.add_argument("--quick", action="store_true", help="2,000 and 20,000; 30 requests")
    args = parser.parse_args(argv)
    if args.quick:
        args.large, args.repeat = 20_000, 30
    sizes = (args.small, args.large)
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench_review_queue_") as tmp:
        for size in sizes:
            print(f"building {size:,} waiting entries ...", flush=True)
            path = Path(tmp) / str(size) / "bench.sqlite3"
            path.parent.mkdir()
            dataset = load_data.build(path, min(args.patients, size // 2), size)
            results[size] = measure(dataset, args.repeat)
    print_two_sizes("Review queue", "waiting", results, args.repeat)
    return 0


def print_two_sizes(what: str, unit: str, results: dict, repeat: int) -> None:
    """The table both page benchmarks print: each page at the small and the large size, its
    milliseconds, ratio to the bare page of the same run and statements, then how the ratio
    grew from the small size to the large one."""
    sizes = list(results)
    small, large = (results[size] for size in sizes)
    print(
        f"\n{what} in process, median of {repeat} requests; ratio = page / bare "
        "Flask page of the same run and size\n"
    )
    print(
        f"{'page':<22}"
        + "".join(f"{f'{size:,} {unit}':>34}" for size in sizes)
        + f"{'large / small':>16}"
    )
    print(f"{'':<22}" + f"{'ms   ratio  statements':>34}" * 2)
    for name in small:
        cells = ""
        for result in (small, large):
            ms, statements = result[name]
            ratio = ms / result["bare Flask page"][0]
            cells += f"{ms:>17.2f} {ratio:>6.1f} {statements:>9}"
        growth = (large[name][0] / large["bare Flask page"][0]) / (
            small[name][0] / small["bare Flask page"][0]
        )
        print(f"{name:<22}{cells}{growth:>16.2f}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
