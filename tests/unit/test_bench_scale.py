"""benchmarks/scale.py at its smallest: an estate of 20 meters as its own processes (the
simulator, a logger per site, Mosquitto, two bridges on a shared subscription, PostgreSQL)
runs for a few seconds, stops cleanly, balances its books and prints its figures."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest
from tests.support.benchmarks import BENCH, load_benchmark
from tests.support.mqtt import require_mosquitto
from tests.support.processes import unavailable
from tests.support.stores import POSTGRES_BASE_DSN

if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))  # the script's own modules (harness, estate, probes, ...)
scale = load_benchmark("scale")

pytestmark = [pytest.mark.slow, pytest.mark.long]  # a dozen processes for about 20 s: make faults


def require_postgres() -> None:
    import psycopg

    try:
        psycopg.connect(POSTGRES_BASE_DSN, connect_timeout=5).close()
    except psycopg.OperationalError as exc:
        unavailable(f"PostgreSQL at {POSTGRES_BASE_DSN} is not reachable: {exc}")


def test_the_smallest_estate_balances_its_books_and_prints_its_figures(tmp_path: Path) -> None:
    require_mosquitto()
    require_postgres()
    began = time.perf_counter()
    outcome, tables = scale.smoke(tmp_path, measure_s=10.0)
    took = time.perf_counter() - began
    printed = "\n".join(scale.bench.text(t) for t in tables)

    books = outcome.books
    assert books.balanced, printed
    assert books.meters == scale.SMOKE.meters
    assert books.undelivered == 0 and books.spooled_readings == 0, printed
    assert books.window_readings == books.delivered_readings == books.stored_readings > 0
    assert books.worst_meter_diff_wh <= 1e-6
    assert all(code == 0 for codes in outcome.exits.values() for code in codes), outcome.exits
    assert outcome.caught_up
    # every meter read every second, through to the windows
    assert outcome.stored_per_s >= 0.8 * scale.SMOKE.offered_per_s, printed
    assert outcome.per_s("accepted") >= 0.8 * scale.SMOKE.offered_per_s, printed
    assert outcome.latencies_s and outcome.after_end_s, printed
    assert max(outcome.latencies_s) <= scale.SMOKE.window_s + scale.SMOKE.grace_s + 10
    assert {"simulator", "logger", "broker", "bridge", "database"} <= set(outcome.cpu_s)
    assert outcome.processes["logger"] == scale.SMOKE.sites
    assert outcome.processes["bridge"] == 2
    for figure in (
        "readings/s stored (loggers)",
        "reading ts → its window written, p50 / p99",
        "window end → written",
        "books balance",
        "per 1,000 meters per hour",
        "RSS, largest",
        "load average",
    ):
        assert figure in printed, printed
    assert "NO" not in printed, printed
    assert took < 60, f"the smallest estate took {took:.0f} s"
