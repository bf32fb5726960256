"""The figures a person sees: average power per step whatever the window length, and its cost.

Returns two tables, each against a baseline from this same process
(`baselines/previous_series.py`):
(a) the campus's peak 5-minute power over 24 hours of 12 simulated meters,
    written through the bridge's window code and the SQLite sink at window
    lengths 10, 30, 60 and 300 s, as `/api/series?step=5m` answers it, divided
    by the books (Σ readings); and the same ratio for the previous way of
    summing (the average power of every window in a step added up), which is
    the baseline. Ours should read 1.000 at every window length.
(b) the time to compute `/api/series?step=5m` over those 24 hours (the
    source's read, the points, the JSON) per window length, against the
    previous way: every window of the range read from SQLite and summed per
    step in Python.

Run: .venv/bin/python benchmarks/figures.py [--quick]
Quick mode: 6 meters, 20 requests per case.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.figures.books import Scenario, local_ms  # noqa: E402
from tests.figures.campus import campus_of  # noqa: E402

import harness  # noqa: E402
import results as bench  # noqa: E402
from baselines import previous_series as previous  # noqa: E402
from campus_energy.api.queries import series_points  # noqa: E402
from campus_energy.backends.sqlite.source import SqliteSource  # noqa: E402
from results import Col, Table  # noqa: E402

TIER = "figures"
WINDOWS = (10, 30, 60, 300)
METERS = bench.sized(12, 6)
REQUESTS = bench.sized(60, 20)
ZONE = "Asia/Kolkata"


def scenario(window_s: int) -> Scenario:
    start = local_ms(ZONE, 2026, 12, 1)
    meters = {f"m-{k:02d}": (f"B{k % 4}", "1") for k in range(METERS)}
    return Scenario(f"w{window_s}", ZONE, window_s, start, start + 86_400_000, 5, meters)


def timed(call: Callable[[], object]) -> float:
    timings = []
    for _ in range(REQUESTS):
        started = time.perf_counter()
        call()
        timings.append(time.perf_counter() - started)
    return statistics.median(timings)


def our_series(source: SqliteSource, s: Scenario) -> object:
    """What `/api/series?step=5m` computes: the source's 5-minute sums, then the points."""
    buckets = source.buckets("window", s.start_ms, s.end_ms, None)
    return json.dumps([p.as_json() for p in series_points(buckets, "window", 300, METERS, s.tz)])


def measure(window_s: int, folder: Path) -> tuple[float, float, float, float]:
    """(ours ÷ books, previous ÷ books, our latency, previous latency) at one window length."""
    s = scenario(window_s)
    (folder / s.name).mkdir()
    with campus_of(s, "sqlite", folder / s.name) as c:
        url = "/api/series?step=5m&start=2026-12-01&end=2026-12-02"
        peak = max(c.get(url)["points"], key=lambda p: p["avg_power_w"])
        start = round(datetime.fromisoformat(peak["t"].replace("Z", "+00:00")).timestamp() * 1000)
        books = c.books.avg_power_w(None, start, start + 300_000) or 0.0
        source = c.client.application.extensions["campus_energy"].source
        baseline = previous.step_powers(previous.windows(source, start, start + 300_000))
        ours_s = timed(lambda: our_series(source, s))
        previous_s = timed(lambda: previous.series_json(source, s.start_ms, s.end_ms, METERS, s.tz))
        return peak["avg_power_w"] / books, baseline[start] / books, ours_s, previous_s


def run(folder: Path) -> Iterator[Table]:
    rows = [(window_s, *measure(window_s, folder)) for window_s in WINDOWS]
    accuracy = Table(
        "(a) peak 5-minute power ÷ the books (1.000 is right)",
        (Col("window", "d", "s"), Col("ours", ".3f"), Col("previous", ".3f")),
        notes=[f"{METERS} meters, 24 h, polled every 5 s, site zone {ZONE}"],
    )
    latency = Table(
        "(b) /api/series?step=5m over 24 h: source, points and JSON, median ms",
        (
            Col("window", "d", "s"),
            Col("ours", ".2f"),
            Col("previous", ".2f"),
            Col("previous/ours", ".2f"),
        ),
    )
    for window_s, ours, baseline, ours_s, previous_s in rows:
        accuracy.row(window_s, ours, baseline)
        latency.row(window_s, ours_s * 1e3, previous_s * 1e3, previous_s / ours_s)
        bench.record(
            TIER, f"peak 5-min power ÷ books, {window_s} s windows", ours, baseline, "ratio",
            ratio="ours/baseline",
        )  # fmt: skip
        bench.record(
            TIER, f"series 5m/24 h latency, {window_s} s windows", ours_s * 1000,
            previous_s * 1000, "ms", "baseline: every window read, summed in Python",
        )  # fmt: skip
    yield accuracy
    yield latency


if __name__ == "__main__":
    harness.main(run, __doc__)
