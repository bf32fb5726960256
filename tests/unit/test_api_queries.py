"""The API's pure parts on their own: the summary and series builders and the response cache."""

from __future__ import annotations

from zoneinfo import ZoneInfo

from campus_energy.api.cache import CACHE_BODY_MAX, CACHE_ENTRIES, ResponseCache
from campus_energy.api.metrics import Metrics
from campus_energy.api.queries import series_answer, series_span, summary_answer
from campus_energy.backends.base import Bucket, MeterLatest

KOLKATA = ZoneInfo("Asia/Kolkata")
# Wednesday 2026-04-01 12:00 in Kolkata (06:30Z): the week began on Monday, last month.
NOW_MS = 1_775_025_000_000


def day(meter: str, key: str, wh: float) -> Bucket:
    return Bucket(meter, key, wh, 3600.0, 12)


def test_the_summary_counts_a_week_that_began_last_month() -> None:
    meters = [
        MeterLatest("a-1", "A", "1", NOW_MS - 300_000, 1000.0, 1.0),
        MeterLatest("b-1", "B", "1", NOW_MS - 300_000, float("nan"), 1.0),
    ]
    month = [day("a-1", "2026-04-01", 3000.0), day("b-1", "2026-04-01", 1000.0)]
    week = [day("a-1", "2026-03-30", 500.0), day("b-1", "2026-03-31", 500.0), *month]
    body = summary_answer(meters, meters[:1], month, week, NOW_MS, KOLKATA)
    assert (body["today_kwh"], body["week_kwh"], body["month_kwh"]) == (4.0, 5.0, 4.0)
    assert (body["power_w"], body["meters"], body["meters_online"]) == (1000.0, 2, 1)
    assert body["generated_at"] == "2026-04-01T06:30:00Z"
    shares = {b["building"]: b["share_today"] for b in body["buildings"]}
    assert shares == {"A": 0.75, "B": 0.25}


def test_a_series_reads_from_the_step_that_holds_its_start() -> None:
    start, end = NOW_MS + 2_401_000, NOW_MS + 3_600_000  # 12:40:01 local, 07:10:01Z
    assert series_span("window", start, end, KOLKATA) == (NOW_MS + 2_400_000, end)
    assert series_span("hour", start, end, KOLKATA) == (NOW_MS, end)  # the local hour
    assert series_span("day", start, end, KOLKATA) == ("2026-04-01", "2026-04-02")


def test_windows_of_any_length_fall_into_their_5_minute_step() -> None:
    rows = [Bucket("a-1", NOW_MS, 5.0, 60.0, 6), Bucket("a-1", NOW_MS + 120_000, 5.0, 60.0, 6)]
    (point,) = series_answer(rows, "window", 300, 1, KOLKATA)
    assert (point["t"], point["energy_wh"], point["avg_power_w"]) == (
        "2026-04-01T06:30:00Z",
        10.0,
        300.0,
    )


def hits(metrics: Metrics) -> float | None:
    return metrics.registry.get_sample_value("campus_energy_api_cache_hits_total")


def test_the_cache_keeps_answers_by_version_period_path_and_parameters() -> None:
    metrics, now = Metrics(), [0.0]
    cache = ResponseCache(30, lambda: now[0], metrics)
    built: list[str] = []

    def answer(version: str, path: str = "/p", body: bytes = b"{}") -> bytes:
        def build() -> tuple[bytes, str]:
            built.append(path)
            return body, "application/json"

        return cache.answer(lambda: version, path, [("step", "1h")], build).body

    for version in ("v1", "v1", "v2"):
        answer(version)
    assert (len(built), hits(metrics)) == (2, 1.0)
    now[0] = 30.0  # the next period
    answer("v2")
    assert len(built) == 3
    for _ in range(2):
        answer("v2", "/big", b"x" * (CACHE_BODY_MAX + 1))
    assert built.count("/big") == 2  # too large to keep
    for n in range(CACHE_ENTRIES):
        answer("v2", f"/{n}")
    answer("v2")  # the oldest answer was dropped
    assert built[-1] == "/p"


def test_with_cache_s_0_nothing_is_kept_and_the_version_is_not_read() -> None:
    cache = ResponseCache(0, lambda: 0.0, Metrics())

    def version() -> str:
        raise AssertionError("read")

    first = cache.answer(version, "/p", [], lambda: (b"{}", "application/json"))
    second = cache.answer(version, "/p", [], lambda: (b"{}", "application/json"))
    assert first == second and len(first.etag) == 20
