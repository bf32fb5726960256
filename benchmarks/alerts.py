"""Alerts: evaluation CPU per 1,000 meters per minute, fault-to-notification latency, and the
baseline's detection quality.

(a) The alerts service's evaluation (`AlertsService.evaluate`: what the rules need gathered,
    every rule evaluated, every alert advanced, the changes recorded in the book) for 1,000
    meters in 10 buildings against a SQLite store of 29 days of 5-minute windows, with rules
    of every kind: meter-silent, coverage-low and register-drift over the campus (a subject
    per meter), after-hours, baseline-deviation and demand-approaching per building. Ours
    asks the store only when an answer can have changed (a window or an hour settled); the
    baseline asks it on every evaluation. CPU seconds per 1,000 meters per minute at the
    default `evaluate_every_s` = 10, and the intake of the same meters' readings (5 s polls:
    12,000 messages a minute) for scale.
(b) Fault to notification: a real Mosquitto, the service in this process, a real SMTP server
    (aiosmtpd); a stand-in logger publishes 20 meters' readings every 0.5 s. A meter goes
    offline (its retained status, as the logger publishes it): the time from the status to
    the firing mail, p50/p95 over repeated faults. The baseline is the same fault seen only
    through the readings stopping: from the last reading + `silent_after` to the mail.
(c) Baseline quality (`benchmarks/baseline_quality.py`): 8 simulated weeks with injected
    anomalies; detections and false positives per building and month.

Run: .venv/bin/python benchmarks/alerts.py [--quick]
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiomqtt

import api
import harness
import results as bench
from campus_energy.alerts.service import AlertsService
from campus_energy.alerts.stored import StoreReader
from campus_energy.backends.sqlite.source import SqliteSource
from campus_energy.config import Config, parse_config
from campus_energy.core.readings import Reading
from campus_energy.core.topics import meter_status_topic, reading_topic, status_document
from campus_energy.demo.mosquitto import Mosquitto
from campus_energy.incidents.store import AlertBook
from campus_energy.runtime.mqtt import encode
from measure import percentile
from results import Col, Table

TIER = "Alerts"
METERS = bench.sized(1000, 200)
DAYS = 29  # four weeks of same-hour samples and a day
EVALUATIONS = bench.sized(30, 10)
NAIVE_EVALUATIONS = bench.sized(5, 3)
FAULTS = bench.sized(20, 8)
LATENCY_METERS = 20
EVERY_S = 10  # the default evaluate_every_s
PREFIX = "campus/energy"
SILENT_AFTER_S = 1.5


def campus_config(meters: list[api.Meter], folder: Path, **sections: Any) -> Config:
    mains = {}
    for meter in meters:
        mains.setdefault(meter.building, meter.meter_id)
    rules: list[dict[str, Any]] = [
        {"name": "silent", "kind": "meter-silent", "scope": "campus", "for": "2m"},
        {"name": "coverage", "kind": "coverage-low", "scope": "campus", "windows": 3},
        {"name": "drift", "kind": "register-drift", "scope": "campus"},
    ]
    for building in api.BUILDINGS:
        slug = building.lower()
        rules += [
            {"name": f"night-{slug}", "kind": "after-hours", "scope": f"building:{building}",
             "above_share": 0.6},
            {"name": f"usual-{slug}", "kind": "baseline-deviation",
             "scope": f"building:{building}", "weeks": 4},
            {"name": f"demand-{slug}", "kind": "demand-approaching",
             "scope": f"building:{building}", "share": 0.95},
        ]  # fmt: skip
    hours = {day: "08:00-18:00" for day in ("mon", "tue", "wed", "thu", "fri")}
    data: dict[str, Any] = {
        "site": {
            "timezone": api.ZONE.key,
            "buildings": [{"name": b, "occupancy": hours} for b in api.BUILDINGS],
        },
        "buses": [{"name": "plant", "transport": "tcp", "host": "127.0.0.1", "port": 1502}],
        "meters": [
            {
                "id": m.meter_id,
                "bus": "plant",
                "unit": 1 + i % 247,
                "profile": "eastron-sdm120",
                "building": m.building,
                "floor": m.floor,
                "interval_s": 5,
                **({"role": "main"} if mains[m.building] == m.meter_id else {}),
            }
            for i, m in enumerate(meters)
        ],
        "alerts": {"state_path": str(folder / "alerts.db"), "rules": rules},
        **sections,
    }
    # unit numbers repeat on one bus past 247 meters: give each block of 247 its own bus
    buses = 1 + (len(meters) - 1) // 247
    data["buses"] = [
        {"name": f"plant-{b}", "transport": "tcp", "host": "127.0.0.1", "port": 1502 + b}
        for b in range(buses)
    ]
    for i, meter in enumerate(data["meters"]):
        meter["bus"] = f"plant-{i // 247}"
    return parse_config(data)


def readings_minute(meters: list[api.Meter], now_ms: int) -> list[tuple[str, bytes]]:
    """A minute of 5-second readings for every meter, as published."""
    found = []
    for k in range(12):
        ts = now_ms - (11 - k) * 5000
        for i, meter in enumerate(meters):
            values = {"voltage_v": 230.0, "current_a": 4.0, "power_w": meter.base_w}
            wh = meter.base_w * 5 / 3600
            total = int((10_000 + k * wh + i) * 1e6)
            reading = Reading(meter.meter_id, ts, k + 1, int(wh * 1e6), total, values, ts - 5000)
            body = reading.payload(meter.building, meter.floor)
            body["import_energy_wh"] = total / 1e6 + 3.0
            found.append((reading_topic(PREFIX, meter.meter_id), encode(body)))
    return found


def evaluation(folder: Path) -> Iterator[Table]:
    meters = api.campus_meters(METERS)
    path = folder / "windows.db"
    last_ms = (api.now_ms() // api.WINDOW_MS - 1) * api.WINDOW_MS
    build = api.build_file(path, meters, DAYS, last_ms)
    config = campus_config(
        meters, folder, bridge={"sqlite": {"path": str(path)}, "window_s": api.WINDOW_S}
    )
    source = SqliteSource(path)
    service = AlertsService(config, source=source, channels={})
    service.book = AlertBook(config.alerts.state_path)
    service.store = StoreReader(source, config.site.zone, api.WINDOW_S, config.bridge.grace_s)
    messages = readings_minute(meters, service.now_ms())
    try:
        started = time.process_time()
        for topic, payload in messages:
            service.live.message(topic, payload, service.now_ms())
        intake_s = time.process_time() - started

        async def evaluate(times: int, fresh: bool) -> list[float]:
            spent = []
            for _ in range(times):
                if fresh:  # the baseline: every answer asked of the store again
                    service.store = StoreReader(
                        source, config.site.zone, api.WINDOW_S, config.bridge.grace_s
                    )
                started = time.process_time()
                await service.evaluate()
                spent.append(time.process_time() - started)
            return spent

        first = asyncio.run(evaluate(1, False))[0]  # every answer read once
        ours = asyncio.run(evaluate(EVALUATIONS, False))
        naive = asyncio.run(evaluate(NAIVE_EVALUATIONS, True))
        states = service.book.states(service.now_ms())
    finally:
        service.store.close()
        service.book.close()
        source.close()
    per_thousand = 1000 / len(meters)
    per_minute = statistics.median(ours) * 60 / EVERY_S * per_thousand
    naive_minute = statistics.median(naive) * 60 / EVERY_S * per_thousand
    # an hour's refresh (every scope's hours read again) is the first evaluation's cost, once
    # an hour: a sixtieth of it per minute
    amortised = per_minute + first * per_thousand / 60
    table = Table(
        f"(a) Evaluation of {len(config.alerts.rules)} rules over {len(meters)} meters "
        f"({build.rows:,} windows in SQLite, {DAYS} days)",
        ("what", Col("CPU", ".2f", "ms"), Col("per 1,000 meters per minute", ".3f", "s"),
         Col("share of a core", ".2%", "")),
    )  # fmt: skip
    table.row("an evaluation (store answers kept)", statistics.median(ours) * 1000, per_minute,
              per_minute / 60)  # fmt: skip
    table.row("the hour's first (every scope's hours read)", first * 1000, None, None)
    table.row("amortised: 6 a minute + the hour's refresh", None, amortised, amortised / 60)
    table.row("baseline: every answer read on every evaluation",
              statistics.median(naive) * 1000, naive_minute, naive_minute / 60)  # fmt: skip
    intake_minute = intake_s * per_thousand
    table.row(f"intake: a minute of readings ({len(messages):,} messages)", intake_s * 1000,
              intake_minute, intake_minute / 60)  # fmt: skip
    firing = sum(1 for s in states.values() if s.phase in ("pending", "firing"))
    table.note(
        f"alerts in the book: {len(states)}, {firing} pending or firing (the store's synthetic "
        "load against live readings that do not match it: the figures count real work)",
        f"evaluations: {EVALUATIONS} (ours), {NAIVE_EVALUATIONS} (baseline); CPU is "
        "process time of this process, store reads included",
    )
    bench.record(
        TIER,
        "evaluation CPU per 1,000 meters per minute",
        amortised,
        naive_minute,
        "s",
        f"{len(config.alerts.rules)} rules, evaluations every {EVERY_S} s; baseline: the store "
        "asked on every evaluation",
    )
    yield table


def latency_config(folder: Path, broker: int, smtp: int) -> Config:
    meters = [
        {"id": f"m{i:02d}", "bus": "plant", "unit": i + 1, "profile": "eastron-sdm120",
         "building": "Library", "interval_s": 0.5}
        for i in range(LATENCY_METERS)
    ]  # fmt: skip
    return parse_config(
        {
            "site": {"timezone": "Europe/Berlin"},
            "buses": [{"name": "plant", "transport": "tcp", "host": "127.0.0.1", "port": 1502}],
            "meters": meters,
            "mqtt": {"port": broker, "topic_prefix": PREFIX},
            "bridge": {"sqlite": {"path": str(folder / "lat-windows.db")}},
            "alerts": {
                "state_path": str(folder / "lat-alerts.db"),
                "evaluate_every_s": 1,
                "channels": [
                    {
                        "name": "mail",
                        "kind": "email",
                        "host": "127.0.0.1",
                        "port": smtp,
                        "security": "none",
                        "sender": "energy@campus.example",
                        "recipients": ["ops@campus.example"],
                    }
                ],
                "rules": [
                    {
                        "name": "silent",
                        "kind": "meter-silent",
                        "scope": "campus",
                        "silent_after": 1.5,
                        "channels": ["mail"],
                    }
                ],
            },
        }
    )


async def fault_latency(folder: Path) -> tuple[list[float], list[float]]:
    """(status path, readings path) seconds from the fault to the firing mail."""
    from tests.support.net import free_port  # (the repository's root is on sys.path by now)
    from tests.support.smtp import Inbox, smtp_server

    broker = Mosquitto(folder / "mosquitto", free_port())
    broker.start()
    smtp_port = free_port()
    inbox = Inbox()
    try:
        with smtp_server(smtp_port, inbox=inbox):
            config = latency_config(folder, broker.port, smtp_port)
            return await _faults(config, broker.port, inbox)
    finally:
        broker.stop()


async def _faults(config: Config, port: int, inbox: Any) -> tuple[list[float], list[float]]:
    service = AlertsService(config)
    stop = asyncio.Event()
    running = asyncio.create_task(service.run(stop))
    silent: set[str] = set()
    seq = [0]
    last_sent: dict[str, float] = {}

    async def fake_logger(client: aiomqtt.Client) -> None:
        while True:
            seq[0] += 1
            now = int(time.time() * 1000)
            for meter in config.meters:
                if meter.id in silent:
                    continue
                values = {"voltage_v": 230.0, "current_a": 1.0, "power_w": 230.0}
                reading = Reading(meter.id, now, seq[0], 0, seq[0] * 10**6, values, None)
                body = encode(reading.payload("Library", ""))
                await client.publish(reading_topic(PREFIX, meter.id), body, qos=1)
                last_sent[meter.id] = now / 1000
            await asyncio.sleep(0.5)  # the stand-in logger's poll interval, not a wait for a result

    async def mail_about(meter: str, word: str, after: int, timeout: float = 30) -> float:
        """When the first `word` mail about `meter` among those after the first `after` came."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [m for m in inbox.messages[after:] if f"[{word} " in str(m.message["Subject"])
                     and f" {meter} " in str(m.message["Subject"])]  # fmt: skip
            if found:
                return time.time()
            await asyncio.sleep(0.005)  # (polling the server's list: its thread appends to it)
        raise TimeoutError(f"no {word} mail about {meter}")

    status_path, readings_path = [], []
    async with aiomqtt.Client("127.0.0.1", port, identifier="bench-logger") as client:
        feeding = asyncio.create_task(fake_logger(client))
        try:
            await asyncio.wait_for(service.subscribed.wait(), 10)
            while any(m.last_reading_ms is None for m in service.live.meters.values()):
                await asyncio.sleep(0.05)  # (until every meter's first reading is in)
            assert not inbox.messages, "a fresh start mails nothing"
            for k in range(FAULTS):
                meter = config.meters[k % LATENCY_METERS].id
                topic = meter_status_topic(PREFIX, meter)
                # the status path: the logger says the meter went offline
                mark, sent = len(inbox.messages), time.time()
                doc = status_document("offline", int(sent * 1000), "timeout")
                await client.publish(topic, encode(doc), qos=1, retain=True)
                status_path.append(await mail_about(meter, "FIRING", mark) - sent)
                doc = status_document("online", int(time.time() * 1000))
                await client.publish(topic, encode(doc), qos=1, retain=True)
                await mail_about(meter, "RESOLVED", mark)
                # the readings path: the meter just stops (no status)
                mark = len(inbox.messages)
                silent.add(meter)
                fired = await mail_about(meter, "FIRING", mark)
                readings_path.append(fired - (last_sent[meter] + SILENT_AFTER_S))
                silent.discard(meter)
                await mail_about(meter, "RESOLVED", mark)
            for meter in config.meters:
                await client.publish(meter_status_topic(PREFIX, meter.id), b"", qos=1, retain=True)
        finally:
            feeding.cancel()
            await asyncio.gather(feeding, return_exceptions=True)
            stop.set()
            await asyncio.wait_for(running, 20)
    return status_path, readings_path


def latency(folder: Path) -> Iterator[Table]:
    status_path, readings_path = asyncio.run(fault_latency(folder))
    table = Table(
        f"(b) Fault to notification: a meter offline, {FAULTS} faults among {LATENCY_METERS} "
        "meters, evaluations every 1 s, e-mail to a local SMTP server",
        ("path", Col("p50", ".0f", "ms"), Col("p95", ".0f", "ms"), Col("max", ".0f", "ms")),
    )
    for name, found in (
        ("the logger's retained status (evaluated at once)", status_path),
        ("baseline: readings stop (from last reading + silent_after)", readings_path),
    ):
        ms = [s * 1000 for s in found]
        table.row(name, statistics.median(ms), percentile(ms, 95), max(ms))
    table.note(
        "each fault is mailed when it fires and when it resolves; `for` = 0 here (a `for` adds "
        "its own length to both paths)"
    )
    bench.record(
        TIER,
        "fault to notification p95 (status path)",
        percentile(status_path, 95) * 1000,
        percentile(readings_path, 95) * 1000,
        "ms",
        "baseline: the same meter seen silent only when its readings stop",
    )
    yield table


def quality() -> Iterator[Table]:
    import baseline_quality

    found = baseline_quality.run()
    table = Table(
        "(c) Baseline quality: 8 simulated weeks, anomalies injected (a night's base load "
        "doubled, a meter stuck, an unannounced closure; a configured holiday must stay quiet)",
        ("month", "building", Col("injected", "d", ""), Col("found", "d", ""),
         Col("false positives", "d", "")),
    )  # fmt: skip
    for row in found.rows:
        table.row(row.month, row.building, row.injected, row.found, row.false_positives)
    table.row("total", "", found.injected, found.found, found.false_positives)
    verdict = "met" if found.goal_met else "NOT met"
    table.note(
        f"goal (every anomaly found, ≤ 1 false positive per building per month): {verdict}",
        *(f"missed: {m}" for m in found.missed),
        *(f"false positive: {f}" for f in found.false_alarms),
    )
    bench.record(
        TIER,
        "anomalies found (baseline-deviation, after-hours)",
        found.found,
        found.injected,
        "",
        f"false positives: {found.false_positives} (worst building-month: "
        f"{found.worst_false_positives})",
        better="higher",
    )
    yield table


def run(folder: Path) -> Iterator[Table]:
    yield from evaluation(folder)
    yield from latency(folder)
    yield from quality()


if __name__ == "__main__":
    harness.main(run, __doc__)
