"""The figures a person sees: average power per step whatever the window length, and its cost.

Prints two sections, each against a baseline from this same process:
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

Run: .venv/bin/python benchmarks/figures.py
Quick mode (`CAMPUS_ENERGY_BENCH_QUICK=1`): 6 meters, 20 requests per case.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.figures.books import Scenario, local_ms  # noqa: E402
from tests.figures.campus import campus_of  # noqa: E402

import results as bench  # noqa: E402
from campus_energy.api.queries import series_points  # noqa: E402
from campus_energy.backends.base import Bucket  # noqa: E402
from campus_energy.backends.sqlite.source import SqliteSource  # noqa: E402

TIER = "figures"
PREVIOUS_SQL = (
    "SELECT meter_id, window_start_ms, total_energy_wh, "
    "json_extract(accumulator, '$.covered_s'), readings_in_batch "
    "FROM window_aggregates WHERE window_start_ms >= ? AND window_start_ms < ?"
)
WINDOWS = (10, 30, 60, 300)
METERS = bench.sized(12, 6)
REQUESTS = bench.sized(60, 20)
ZONE = "Asia/Kolkata"


def scenario(window_s: int) -> Scenario:
    start = local_ms(ZONE, 2026, 12, 1)
    meters = {f"m-{k:02d}": (f"B{k % 4}", "1") for k in range(METERS)}
    return Scenario(f"w{window_s}", ZONE, window_s, start, start + 86_400_000, 5, meters)


def previous_powers(buckets: Iterable[Bucket]) -> dict[int, float]:
    """The baseline: every window's average power in a step, added up."""
    found: dict[int, float] = defaultdict(float)
    for b in buckets:
        if b.covered_s > 0:
            found[int(b.key) - int(b.key) % 300_000] += b.energy_wh * 3600 / b.covered_s
    return found


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


def previous_series(source: SqliteSource, s: Scenario) -> object:
    """The baseline: every window of the day read, then stepped and summed in Python."""
    rows = source._query(PREVIOUS_SQL, [s.start_ms, s.end_ms])
    buckets = [
        Bucket(m, k - k % 300_000, float(e), float(c or 0.0), int(r)) for m, k, e, c, r in rows
    ]
    return json.dumps([p.as_json() for p in series_points(buckets, "window", 300, METERS, s.tz)])


def measure(window_s: int) -> tuple[float, float, float, float]:
    """(ours ÷ books, previous ÷ books, our latency, previous latency) at one window length."""
    s = scenario(window_s)
    with tempfile.TemporaryDirectory() as folder, campus_of(s, "sqlite", Path(folder)) as c:
        url = "/api/series?step=5m&start=2026-12-01&end=2026-12-02"
        peak = max(c.get(url)["points"], key=lambda p: p["avg_power_w"])
        start = round(datetime.fromisoformat(peak["t"].replace("Z", "+00:00")).timestamp() * 1000)
        books = c.books.avg_power_w(None, start, start + 300_000) or 0.0
        source = c.client.application.extensions["campus_energy"].source
        windows = source._query(PREVIOUS_SQL, [start, start + 300_000])
        baseline = previous_powers(Bucket(m, k, e, cov or 0.0, r) for m, k, e, cov, r in windows)
        ours_s = timed(lambda: our_series(source, s))
        previous_s = timed(lambda: previous_series(source, s))
        return peak["avg_power_w"] / books, baseline[start] / books, ours_s, previous_s


def main() -> None:
    print(f"{METERS} meters, 24 h, polled every 5 s, site zone {ZONE}\n")
    rows = [(window_s, *measure(window_s)) for window_s in WINDOWS]
    rule("(a) peak 5-minute power ÷ the books (1.000 is right)")
    print(f"{'window':>8} {'ours':>8} {'previous':>9}")
    for window_s, ours, baseline, _, _ in rows:
        print(f"{window_s:>7}s {ours:>8.3f} {baseline:>9.3f}")
        bench.record(
            TIER, f"peak 5-min power ÷ books, {window_s} s windows", ours, baseline, "ratio",
            ratio="ours/baseline",
        )  # fmt: skip
    print()
    rule("(b) /api/series?step=5m over 24 h: source, points and JSON, median ms")
    print(f"{'window':>8} {'ours':>8} {'previous':>9} {'previous/ours':>14}")
    for window_s, _, _, ours_s, previous_s in rows:
        ratio = previous_s / ours_s
        print(f"{window_s:>7}s {ours_s * 1e3:>8.2f} {previous_s * 1e3:>9.2f} {ratio:>14.2f}")
        bench.record(
            TIER, f"series 5m/24 h latency, {window_s} s windows", ours_s * 1000,
            previous_s * 1000, "ms", "baseline: every window read, summed in Python",
        )  # fmt: skip
    bench.emit()


def rule(head: str) -> None:
    print(head)
    print("-" * len(head))


if __name__ == "__main__":
    main()
