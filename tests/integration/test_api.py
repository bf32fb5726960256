"""The API on a deterministic fixture of windows, through the real SQLite and PostgreSQL sinks."""

from __future__ import annotations

import asyncio
import csv
import io
import logging
from collections.abc import Iterator
from dataclasses import replace
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from tests.support import known_windows as fx
from tests.support.known_windows import write

from campus_energy.api import create_app
from campus_energy.backends import open_sink, open_source
from campus_energy.backends.firestore.source import FirestoreSource
from campus_energy.config import Config

LEGACY_KEYS = {
    "scope",
    "time_range_start",
    "time_range_end",
    "total_energy_kwh",
    "meters_found",
    "readings_processed",
    "last_reading_in_range",
}


@pytest.fixture(scope="module")
def firestore_campus(
    shared_firestore_emulator: str, tmp_path_factory: pytest.TempPathFactory
) -> Config:
    """The fixture written once to one emulator for the whole module (writing it is slow)."""
    sink = {"sink": "firestore", "firestore": {"project": "demo-api", "collection": "w"}}
    config = fx.config_for(tmp_path_factory.mktemp("fs"), sink)
    write(config, fx.windows())
    return config


# Firestore's API answers are a long case (writing the fixture to the emulator takes ~20 s):
# tests/integration/test_firestore_source.py and the figures suite read Firestore in short.
@pytest.fixture(params=["sqlite", "postgres", pytest.param("firestore", marks=pytest.mark.long)])
def campus(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Config, Flask]]:
    if request.param == "firestore":
        config = request.getfixturevalue("firestore_campus")
        source = FirestoreSource(config.bridge.firestore, config.site.zone, cache_s=0)
        try:
            yield config, create_app(config, source=source, clock=lambda: fx.NOW_MS / 1000)
        finally:
            source.close()
        return
    if request.param == "postgres":
        dsn, schema = request.getfixturevalue("postgres_dsn")
        sink = {"sink": "postgres", "postgres": {"dsn": dsn, "schema": schema}}
        config = fx.config_for(tmp_path, sink)
    else:
        config = fx.config_for(tmp_path)
    write(config, fx.windows())
    source = open_source(config)
    app = create_app(config, source=source, clock=lambda: fx.NOW_MS / 1000)
    try:
        yield config, app
    finally:
        source.close()


@pytest.fixture
def client(campus: tuple[Config, Flask]) -> FlaskClient:
    return campus[1].test_client()


def get(client: FlaskClient, url: str, status: int = 200) -> Any:
    response = client.get(url)
    assert response.status_code == status, (url, response.status_code, response.data[:300])
    return response.get_json()


def test_health_names_the_meter_that_never_reported(client: FlaskClient) -> None:
    body = get(client, "/api/health")
    assert body["status"] == "degraded"  # lib-2 has never reported
    assert (body["meters"], body["meters_reporting"]) == (4, 3)
    assert body["timezone"] == "Asia/Kolkata"
    assert body["last_window"] == "2026-11-27T07:50:00Z"


def test_meters_list_every_meter_with_its_latest_window(client: FlaskClient) -> None:
    meters = {m["meter_id"]: m for m in get(client, "/api/meters")["meters"]}
    assert set(meters) == set(fx.METERS)
    assert meters["lib-2"]["last_window"] is None and meters["lib-2"]["online"] is False
    latest = max((w for w in fx.windows() if w.meter_id == "ece-1"), key=lambda w: w.start_ms)
    assert meters["ece-1"]["power_w"] == pytest.approx(latest.power_w)
    assert meters["ece-1"]["online"] is True


def test_summary_matches_the_fixture(client: FlaskClient) -> None:
    items = fx.windows()
    body = get(client, "/api/summary")
    assert body["today_kwh"] == pytest.approx(fx.energy_wh(items, fx.TODAY, fx.TODAY) / 1000)
    assert body["week_kwh"] == pytest.approx(fx.energy_wh(items, fx.WEEK_START, fx.TODAY) / 1000)
    assert body["month_kwh"] == pytest.approx(fx.energy_wh(items, fx.MONTH_START, fx.TODAY) / 1000)
    latest = {}
    for w in items:
        if w.start_ms >= latest.get(w.meter_id, (0, 0))[0]:
            latest[w.meter_id] = (w.start_ms, w.power_w)
    assert body["power_w"] == pytest.approx(sum(p for _, p in latest.values()))
    buildings = {b["building"]: b for b in body["buildings"]}
    assert set(buildings) == {"ECE", "Library"}
    ece_today = fx.energy_wh(items, fx.TODAY, fx.TODAY, {"ece-1", "ece-2"}) / 1000
    assert buildings["ECE"]["today_kwh"] == pytest.approx(ece_today)
    assert sum(b["share_today"] for b in body["buildings"]) == pytest.approx(1, abs=1e-3)


@pytest.mark.parametrize(
    ("first", "last"),
    [
        (date(2026, 11, 27), date(2026, 11, 27)),
        (date(2026, 11, 1), date(2026, 11, 26)),
        (date(2026, 10, 1), date(2026, 12, 31)),
    ],
)
def test_campus_aggregate_keeps_the_legacy_keys_and_sums(
    client: FlaskClient, first: date, last: date
) -> None:
    body = get(client, f"/api/aggregate/campus?start_date={first}&end_date={last}")
    assert set(body) >= LEGACY_KEYS
    items = fx.windows()
    assert body["total_energy_kwh"] == pytest.approx(fx.energy_wh(items, first, last) / 1000)
    in_range = [w for w in items if first <= fx.local_day(w.start_ms) <= last]
    assert body["readings_processed"] == len(in_range)  # one reading per fixture window
    assert body["meters_found"] == len({w.meter_id for w in in_range})
    assert body["scope"] == "campus"


def test_building_aggregate_names_the_building(client: FlaskClient) -> None:
    body = get(client, "/api/aggregate/building/Library?start_date=2026-11-20&end_date=2026-11-27")
    assert LEGACY_KEYS | {"building_name"} <= set(body)
    assert body["building_name"] == "Library" and body["scope"] == "building"
    expected = fx.energy_wh(
        fx.windows(), date(2026, 11, 20), date(2026, 11, 27), {"lib-1", "lib-2"}
    )
    assert body["total_energy_kwh"] == pytest.approx(expected / 1000)
    assert body["meters_found"] == 1


def test_days_are_cut_in_the_site_time_zone(client: FlaskClient) -> None:
    before, after = fx.EDGE_MS  # 23:55 on the 26th and 00:00 on the 27th, local time
    day26 = get(client, "/api/aggregate/campus?start_date=2026-11-26&end_date=2026-11-26")
    assert day26["time_range_start"] == "2026-11-25T18:30:00Z"
    assert day26["time_range_end"] == "2026-11-26T18:30:00Z"
    assert day26["last_reading_in_range"] == "2026-11-26T18:25:00Z"
    day27 = get(client, "/api/aggregate/campus?start_date=2026-11-27&end_date=2026-11-27")
    items = fx.windows()
    edge = [w for w in items if w.start_ms == after]
    assert edge and day27["total_energy_kwh"] == pytest.approx(
        fx.energy_wh(items, date(2026, 11, 27), date(2026, 11, 27)) / 1000
    )
    assert fx.local_day(before) == date(2026, 11, 26) and fx.local_day(after) == date(2026, 11, 27)


@pytest.mark.parametrize(
    ("url", "status", "named"),
    [
        ("/api/aggregate/campus?start_date=2026-13-01", 400, "start_date"),
        ("/api/aggregate/campus?end_date=yesterday", 400, "end_date"),
        ("/api/aggregate/campus?start_date=2026-11-27&end_date=2026-11-01", 400, "end_date"),
        ("/api/aggregate/campus?start_date=2000-01-01&end_date=2026-11-01", 400, "end_date"),
        ("/api/aggregate/building/Nowhere", 404, "Nowhere"),
        ("/api/series?step=2m", 400, "step"),
        ("/api/series?start=soon", 400, "start"),
        ("/api/series?end=2026-11-27T08:00:00", 400, "end"),
        ("/api/series?start=2026-11-27T08:00:00Z&end=2026-11-26T08:00:00Z", 400, "end"),
        ("/api/series?step=5m&start=2026-01-01T00:00:00Z&end=2026-11-27T00:00:00Z", 400, "start"),
        ("/api/series?meter=ghost", 404, "ghost"),
        ("/api/series?meter=ece-1&building=ECE", 400, "meter"),
        ("/api/series?start=1900-01-01T00:00:00Z", 400, "start"),
        ("/api/export.csv?step=1w", 400, "step"),
        ("/api/nothing-here", 404, "nothing-here"),
    ],
)
def test_bad_parameters_are_named(client: FlaskClient, url: str, status: int, named: str) -> None:
    body = get(client, url, status)
    assert named in body["error"]


def test_series_at_every_step(client: FlaskClient) -> None:
    items = fx.windows()
    day = get(client, "/api/series?step=5m&start=2026-11-26T08:00:00Z&end=2026-11-27T08:00:00Z")
    in_day = [w for w in items if fx.NOW_MS - 86_400_000 <= w.start_ms < fx.NOW_MS]
    assert sum(p["energy_wh"] for p in day["points"]) == pytest.approx(
        sum(w.energy_wh for w in in_day)
    )
    assert len(day["points"]) == len({w.start_ms for w in in_day})
    full = day["points"][-1]
    assert full["coverage"] == pytest.approx(3 / 4)  # 3 of 4 meters cover the window
    # local hours: in Asia/Kolkata they start at :30 UTC
    hourly = get(
        client,
        "/api/series?step=1h&meter=ece-1&start=2026-11-26T07:30:00Z&end=2026-11-27T07:30:00Z",
    )
    assert hourly["scope"] == "meter" and hourly["name"] == "ece-1"
    assert len(hourly["points"]) == 24 and hourly["points"][0]["t"] == "2026-11-26T07:30:00Z"
    local_day_hours = [
        w for w in items if fx.NOW_MS - 86_400_000 - 1_800_000 <= w.start_ms < fx.NOW_MS - 1_800_000
    ]
    assert sum(p["energy_wh"] for p in hourly["points"]) == pytest.approx(
        sum(w.energy_wh for w in local_day_hours if w.meter_id == "ece-1")
    )
    daily = get(client, "/api/series?step=1d&building=ECE&start=2026-11-20&end=2026-11-28")
    by_date = {p["date"]: p["energy_wh"] for p in daily["points"]}
    for d, energy in by_date.items():
        day_ = date.fromisoformat(d)
        assert energy == pytest.approx(fx.energy_wh(items, day_, day_, {"ece-1", "ece-2"}))
    assert daily["points"][0]["t"] == "2026-11-19T18:30:00Z"  # local midnight of the 20th


def test_export_csv_has_the_series(client: FlaskClient) -> None:
    response = client.get("/api/export.csv?step=1h&building=Library")
    assert response.status_code == 200 and response.mimetype == "text/csv"
    rows = list(csv.reader(io.StringIO(response.get_data(as_text=True))))
    # the original columns first, where they always were; the added ones at the end
    assert rows[0] == [
        *("t", "energy_wh", "avg_power_w", "coverage"),
        *("export_wh", "net_wh", "estimated_wh", "estimated_export_wh"),
    ]
    series = get(client, "/api/series?step=1h&building=Library")
    assert len(rows) - 1 == len(series["points"])
    for row, point in zip(rows[1:], series["points"], strict=True):
        assert [float(v) for v in row[4:]] == [
            point[k] for k in ("export_wh", "net_wh", "estimated_wh", "estimated_export_wh")
        ]
        assert float(row[5]) == pytest.approx(point["energy_wh"])  # nothing exported


def test_etags_make_refreshes_cheap_and_change_with_the_data(
    campus: tuple[Config, Flask], client: FlaskClient
) -> None:
    config, _ = campus
    if config.bridge.sink == "firestore":
        pytest.skip("shared module fixture; refreshes are tested in test_firestore_source.py")
    first = client.get("/api/summary")
    etag = first.headers["ETag"]
    assert "max-age=30" in first.headers["Cache-Control"]
    again = client.get("/api/summary", headers={"If-None-Match": etag})
    assert again.status_code == 304
    late = fx.FixtureWindow("ece-1", fx.NOW_MS - 300_000, 50.0, 600.0)
    write(config, [late])
    changed = client.get("/api/summary", headers={"If-None-Match": etag})
    assert changed.status_code == 200 and changed.headers["ETag"] != etag
    before = first.get_json()["today_kwh"]
    assert changed.get_json()["today_kwh"] == pytest.approx(before + 0.05)


def test_cors_is_an_allow_list(client: FlaskClient) -> None:
    allowed = client.get("/api/health", headers={"Origin": "https://energy.example.edu"})
    assert allowed.headers["Access-Control-Allow-Origin"] == "https://energy.example.edu"
    other = client.get("/api/health", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in other.headers


def test_the_page_is_served_with_a_strict_policy(client: FlaskClient) -> None:
    response = client.get("/")
    assert response.status_code == 200 and response.mimetype == "text/html"
    policy = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy
    assert b'data-refresh-s="60"' in response.data


def test_read_only_and_metrics(client: FlaskClient) -> None:
    assert client.post("/api/summary").status_code == 405
    get(client, "/api/summary")
    get(client, "/api/summary")
    metrics = client.get("/metrics").get_data(as_text=True)
    assert 'campus_energy_api_requests_total{endpoint="/api/summary",status="200"} 2.0' in metrics
    assert "campus_energy_api_cache_hits_total 1.0" in metrics
    assert get(client, "/api/openapi.json")["openapi"].startswith("3.")


@pytest.mark.parametrize("sink", ["sqlite", "postgres"])
def test_an_unreachable_source_is_a_plain_503_and_its_cause_is_logged_once(
    sink: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    missing = tmp_path / "no-such-folder"
    if sink == "sqlite":  # a window file in a folder that is not there: a wrong path
        config = fx.config_for(missing)
        secrets = [str(missing), "windows.db"]
        cause = f"{missing / 'windows.db'} does not exist yet"
    else:  # nothing listens on port 1
        dsn = "postgresql://campus:s3cret@127.0.0.1:1/energy_books"
        config = fx.config_for(tmp_path, {"sink": "postgres", "postgres": {"dsn": dsn}})
        secrets = ["127.0.0.1", "energy_books", "campus", "s3cret"]
        cause = "postgres 127.0.0.1:1/energy_books: OperationalError: connection failed"
    source = open_source(config)
    app = create_app(config, source=source, clock=lambda: fx.NOW_MS / 1000)
    client = app.test_client()
    caplog.set_level(logging.INFO, logger="campus_energy.api")
    try:
        for url in ("/api/health", "/api/summary", "/api/meters", "/api/series?step=1h"):
            response = client.get(url)
            assert response.status_code == 503, url
            assert response.get_json()["error"] == "window store unavailable"
            for secret in secrets:
                assert secret not in response.get_data(as_text=True), (url, secret)
        # the watchdog's question reads no store: a store that is down restarts nothing
        live = client.get("/api/live")
        assert (live.status_code, live.get_json()) == (200, {"status": "alive"})
        assert live.headers["Cache-Control"] == "no-store"
        api = [r for r in caplog.records if r.name == "campus_energy.api"]
        logged = [(r.levelno, r.getMessage()) for r in api if r.levelno >= logging.INFO]
        assert len(logged) == 1 and logged[0][0] == logging.ERROR, logged  # once per outage
        assert cause in logged[0][1] and "s3cret" not in logged[0][1]
        if sink == "sqlite":  # the folder appears: the next read works and ends the outage
            missing.mkdir()
            assert get(client, "/api/health")["detail"] == "no windows yet"
            back = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
            back = [m for m in back if "window store" in m]
            assert len(back) == 1 and "sqlite window store: recovered after" in back[0], back
    finally:
        source.close()


def test_a_method_the_api_does_not_take_is_405_with_allow(tmp_path: Path) -> None:
    config = fx.config_for(tmp_path)
    source = open_source(config)
    client = create_app(config, source=source, clock=lambda: fx.NOW_MS / 1000).test_client()
    try:
        for method in ("POST", "PUT", "DELETE", "PATCH"):
            response = client.open("/api/summary", method=method)
            assert response.status_code == 405, method
            assert response.get_json() == {"error": "this API is read-only: GET only"}
            assert set(response.headers["Allow"].split(", ")) == {"GET", "HEAD", "OPTIONS"}
            assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert client.post("/").headers["Allow"] == client.options("/").headers["Allow"]
    finally:
        source.close()


def test_before_the_first_window_the_api_answers_empty_not_503(tmp_path: Path) -> None:
    config = fx.config_for(tmp_path)  # the bridge has not written its window file yet
    source = open_source(config)
    app = create_app(config, source=source, clock=lambda: fx.NOW_MS / 1000)
    client = app.test_client()
    try:
        health = get(client, "/api/health")
        assert (health["status"], health["meters_reporting"]) == ("degraded", 0)
        assert health["detail"] == "no windows yet"
        summary = get(client, "/api/summary")
        assert (summary["power_w"], summary["today_kwh"], summary["last_window"]) == (
            0.0,
            0.0,
            None,
        )
        assert isinstance(summary["power_w"], float)
        assert get(client, "/api/series?step=1h")["points"] == []
        assert not (tmp_path / "windows.db").exists()  # reading never creates the file
    finally:
        source.close()


def test_repeated_parameters_do_not_share_a_cached_answer(client: FlaskClient) -> None:
    first = get(client, "/api/series?meter=ece-1&meter=lib-1&step=1h")
    second = get(client, "/api/series?meter=lib-1&meter=ece-1&step=1h")
    assert (first["name"], second["name"]) == ("ece-1", "lib-1")  # the first value is used


def test_a_meter_stays_online_until_two_windows_after_its_last_ended(tmp_path: Path) -> None:
    config = fx.config_for(tmp_path)
    write(config, fx.windows())  # the last window started 07:50Z and ended 07:55Z
    source = open_source(config)
    try:
        # online until 07:55Z + 2 × 300 s + 60 s of grace = 08:06Z
        for now_s, online in ((8 * 3600 + 5 * 60 + 59, True), (8 * 3600 + 6 * 60 + 1, False)):
            at = fx.NOW_MS / 1000 - 8 * 3600 + now_s
            app = create_app(config, source=source, clock=lambda at=at: at)
            meters = {m["meter_id"]: m for m in get(app.test_client(), "/api/meters")["meters"]}
            assert meters["ece-1"]["online"] is online, now_s
    finally:
        source.close()


def test_too_many_rows_for_one_request_is_a_bad_parameter(
    client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    import campus_energy.api.views

    monkeypatch.setattr(campus_energy.api.views, "MAX_ROWS", 1_000)  # 4 meters × 288 steps > 1,000
    url = "/api/series?step=5m&start=2026-11-26T00:00:00Z&end=2026-11-27T00:00:00Z"
    body = get(client, url, 400)
    assert "start" in body["error"] and "larger step" in body["error"]


def test_building_names_may_contain_a_slash(tmp_path: Path) -> None:
    config = fx.config_for(tmp_path)
    item = fx.FixtureWindow("ece-1", fx.NOW_MS - 600_000, 10.0, 120.0)
    delta = fx.deltas([item])[0]
    annex = replace(delta, building="ECE/Annex")

    async def go() -> None:
        sink = open_sink(config)
        try:
            await sink.merge([annex], fx.NOW_MS)
        finally:
            await sink.close()

    asyncio.run(go())
    source = open_source(config)
    try:
        client = create_app(config, source=source, clock=lambda: fx.NOW_MS / 1000).test_client()
        body = get(client, "/api/aggregate/building/ECE/Annex")
        assert body["building_name"] == "ECE/Annex" and body["total_energy_kwh"] == 0.01
    finally:
        source.close()
