"""Time and peak memory of one full CSV export, in a process of its own.

Run by bench_pages.py as ``python bench/load_export_child.py DB_PATH``: it builds the app on
the benchmark database, logs in through the form with Flask's test client, streams
``/exports/assessments.csv?layout=long`` (every patient, every scale) and throws the chunks
away as a WSGI server does once it has sent them. It prints one JSON line: the peak resident
set (``resource.getrusage``) before and after the export, the rows and the time.

The work runs in a child forked first thing, before anything big is imported: on Linux a
process's ``ru_maxrss`` starts from what its parent had resident when it was spawned and
survives ``execve``, so without the fork it would report the benchmark's own peak (the data
generator's, about 430 MB) instead of the export's.
"""

from __future__ import annotations

import json
import os
import re
import resource
import sys
import time
import traceback
from pathlib import Path

CSRF = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def vm_hwm_mb() -> float:
    """The same peak as the kernel keeps it for this address space (a cross-check)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def export_everything(db_path: str) -> dict:
    import load_data

    from clinic_log import create_app

    path = Path(db_path)
    app = create_app(load_data.app_config(path, path.parent / "instance"))
    client = app.test_client()
    token = CSRF.search(client.get("/login").get_data(as_text=True)).group(1)
    client.post(
        "/login",
        data={"username": load_data.CLINICIAN, "password": load_data.PASSWORD, "csrf_token": token},
    )
    client.get("/exports/dictionary.csv").close()  # warm up the export code's imports
    before = peak_rss_mb()
    began = time.perf_counter()
    response = client.get("/exports/assessments.csv?layout=long")
    size = lines = comments = 0
    for chunk in response.response:  # streamed, never held whole
        if not size:
            comments = sum(1 for line in chunk.split(b"\r\n") if line.startswith(b"# "))
        size += len(chunk)
        lines += chunk.count(b"\n")
    response.close()
    return {
        "status": response.status_code,
        "rows": int(response.headers.get("X-Clinic-Log-Rows", 0)),
        "rows_sent": lines - comments - 1,  # minus the provenance lines and the header
        "bytes": size,
        "seconds": time.perf_counter() - began,
        "peak_rss_mb_before": before,
        "peak_rss_mb": peak_rss_mb(),
        "vm_hwm_mb": vm_hwm_mb(),
    }


def main(db_path: str) -> int:
    pid = os.fork()
    if pid == 0:  # the child: a fresh peak, starting from this small process
        code = 1
        try:
            print(json.dumps(export_everything(db_path)), flush=True)
            code = 0
        except BaseException:
            traceback.print_exc()
        finally:
            sys.stderr.flush()
            os._exit(code)
    _pid, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
