"""Time render_trend against a minimal matplotlib script drawing the same points.

Run with ``.venv/bin/python bench/bench_chart_render.py``. Both sides draw 200 points on a
9×4 in Figure at 100 dpi and save a PNG, in the same process; each is warmed up once, then
timed best-of-N on a fresh series each time. The target is ours within 1.5× of the minimal
script, which draws a bare line with no bands, markers, labels or local-time axis.
"""

from __future__ import annotations

import random
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from io import BytesIO

from matplotlib.figure import Figure

from clinic_log.charts.render import render_trend
from clinic_log.charts.series import BandSpan, TrendPoint, TrendSeries

POINTS = 200
REPEATS = 7
TARGET_RATIO = 1.5
START = datetime(2026, 5, 1, 6, 0, tzinfo=UTC)
BANDS = (
    BandSpan(5, 12, "Mild"),
    BandSpan(13, 24, "Moderate"),
    BandSpan(25, 36, "Moderately severe"),
    BandSpan(37, 48, "Severe"),
)


def make_series(seed: int) -> TrendSeries:
    """A fresh 200-point COWS-like series: every 6 h for 50 days, one in eight incomplete."""
    rng = random.Random(seed)
    points = tuple(
        TrendPoint(
            at=START + timedelta(hours=6 * i, minutes=rng.randint(0, 40)),
            total=max(0, min(48, 30 - i // 8 + rng.randint(-4, 4))),
            complete=rng.random() > 0.125,
        )
        for i in range(POINTS)
    )
    return TrendSeries(
        title="COWS total — patient N-001",
        y_label="COWS total (0–48)",
        y_min=0,
        y_max=48,
        bands=BANDS,
        points=points,
        episode_starts=(START - timedelta(hours=2), START + timedelta(days=30)),
        tz_name="Europe/London",
    )


def ours(series: TrendSeries) -> bytes:
    return render_trend(series, fmt="png")


def minimal(series: TrendSeries) -> bytes:
    """The least a script can do: the same points as a plain line, saved as PNG."""
    fig = Figure(figsize=(9, 4), dpi=100)
    ax = fig.subplots()
    ax.plot([p.at for p in series.points], [p.total for p in series.points])
    buffer = BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def timings(draw: Callable[[TrendSeries], bytes], seeds: range) -> list[float]:
    draw(make_series(-1))  # warm-up: font cache, first-use imports
    result = []
    for seed in seeds:
        series = make_series(seed)  # built outside the timed region, as the app would
        began = time.perf_counter()
        draw(series)
        result.append(time.perf_counter() - began)
    return result


def main() -> int:
    rows = []
    for name, draw in (("render_trend", ours), ("minimal matplotlib", minimal)):
        times = timings(draw, range(REPEATS))
        rows.append((name, min(times), statistics.median(times), len(draw(make_series(0)))))
    print(f"{POINTS}-point trend, 900×400 PNG, best of {REPEATS} after a warm-up\n")
    print(f"{'':<20}{'best ms':>10}{'median ms':>12}{'PNG bytes':>12}")
    for name, best, median, size in rows:
        print(f"{name:<20}{best * 1000:>10.1f}{median * 1000:>12.1f}{size:>12,}")
    ratio = rows[0][1] / rows[1][1]
    verdict = "within" if ratio <= TARGET_RATIO else "OVER"
    print(f"\nratio (best): {ratio:.2f}× — {verdict} the {TARGET_RATIO}× target")
    return 0


if __name__ == "__main__":
    sys.exit(main())
