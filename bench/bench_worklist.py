"""The patient list (the clinician's worklist) with 1,000 and with 3,000 patients, in process.

Run with ``.venv/bin/python bench/bench_worklist.py`` (1,000 and 3,000 patients, 20 entries
each, about a minute, most of it building the databases) or ``--quick`` (fewer requests).

Each database comes from load_data.py: one site, bulk-inserted patients and entries. Then,
as at a real site, a tenth of the episodes are ended and a third of the open ones set their
own monitoring interval (1 to 12 hours); the dashboard summary, which keeps each open
episode's due time, is rebuilt. In the same process and run, for each size:

- a bare Flask page (load_bare_app.py's 20-row table from one sqlite3 query) is timed as the
  yardstick, so the ratios do not depend on how busy the machine is;
- the list's pages are timed through the Flask test client as the clinician: the first page
  by identifier, page 10 (which both sizes have), soonest due first, due now or overdue, and
  a search;
- each page's SQL statements are counted.

The page is chosen from an index (patients by identifier, or open episodes by due time) and
only its 50 rows are looked at, so the first pages should cost the same at both sizes. Two
things grow with the site, and the table shows by how much: the counts (an index range per
view) and a search, which has to look at every identifier and label. Nothing here asserts a
time: tests/test_worklist.py asserts equal statement counts at two sizes.
"""

from __future__ import annotations

import argparse
import re
import sqlite3
import sys
import tempfile
from pathlib import Path

import load_data
from bench_review_queue import bare_app, print_two_sizes, time_and_count, timed

from clinic_log import create_app
from clinic_log.dashboard import summary as dashboard_summary
from clinic_log.extensions import db

_CSRF = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')
PAGES = {
    "list, first page": "/patients/",
    "list, page 10": "/patients/?page=10",
    "soonest due first": "/patients/?sort=due",
    "due now or overdue": "/patients/?show=due&sort=due",
    "search 'BENCH-05'": "/patients/?q=BENCH-05",
}


def schedule(dataset: load_data.Dataset) -> None:
    """End a tenth of the episodes, give a third of the open ones their own interval, and
    rebuild the summary (its due times) as the app would have kept it."""
    with sqlite3.connect(dataset.path) as conn:
        conn.execute(
            "UPDATE episode SET ended_at = (SELECT max(observed_at) FROM assessment a"
            " WHERE a.episode_id = episode.id) WHERE id % 10 = 0"
        )
        conn.execute(
            "UPDATE episode SET assess_every_hours = 1 + id % 12"
            " WHERE id % 3 = 0 AND ended_at IS NULL"
        )
    app = create_app(load_data.app_config(dataset.path, dataset.instance))
    with app.app_context():
        dashboard_summary.rebuild()
        db.session.remove()
        db.engine.dispose()
    with sqlite3.connect(dataset.path) as conn:
        conn.execute("ANALYZE")


def measure(dataset: load_data.Dataset, repeat: int) -> dict[str, tuple[float, int]]:
    """{page: (median ms, statements)} for the bare page and each list page."""
    bare = bare_app(dataset.path).test_client()
    results = {
        "bare Flask page": (timed(bare.get, f"/patients/{dataset.patient_ids[0]}", repeat), 1)
    }
    app = create_app(load_data.app_config(dataset.path, dataset.instance))
    client = app.test_client()
    token = _CSRF.search(client.get("/login").get_data(as_text=True)).group(1)
    client.post(
        "/login",
        data={"username": load_data.CLINICIAN, "password": load_data.PASSWORD, "csrf_token": token},
    )
    results.update(time_and_count(app, client, PAGES, repeat))
    return results


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=1_000, help="patients, small")
    parser.add_argument("--large", type=int, default=3_000, help="patients, large")
    parser.add_argument("--entries", type=int, default=20, help="entries per patient")
    parser.add_argument("--repeat", type=int, default=100, help="requests per page")
    parser.add_argument("--quick", action="store_true", help="30 requests per page")
    args = parser.parse_args(argv)
    if args.quick:
        args.repeat = 30
    sizes = (args.small, args.large)
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench_worklist_") as tmp:
        for size in sizes:
            print(f"building {size:,} patients ...", flush=True)
            path = Path(tmp) / str(size) / "bench.sqlite3"
            path.parent.mkdir()
            dataset = load_data.build(path, size, size * args.entries)
            schedule(dataset)
            results[size] = measure(dataset, args.repeat)
    print_two_sizes("Patient list", "patients", results, args.repeat)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
