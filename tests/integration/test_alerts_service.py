"""The alerts service end to end: the simulator's meters polled by the real logger over Modbus
TCP, a real Mosquitto, the service, and a real SMTP server receiving its mails.

- A meter made silent in the simulator: the firing mail arrives within `for` + one poll of
  the status going offline (and of the last reading + `silent_after`); when the meter
  answers again, one resolved mail — and nothing about the meters that kept answering.
- The service killed with -9 in the middle of an alert while the SMTP server is down, then
  restarted, then the server back: the firing mail arrives once, the resolved once.
"""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
from tests.support.campus import INTERVAL
from tests.support.config import make_config, meter_at, tcp_bus, write_toml
from tests.support.net import free_port
from tests.support.processes import campus_energy
from tests.support.readback import query
from tests.support.services import serving, spawn
from tests.support.smtp import Inbox, smtp_server
from tests.support.waiting import eventually, within

from campus_energy.alerts.service import AlertsService
from campus_energy.alerts.stored import StoreReader
from campus_energy.backends.sqlite.source import SqliteSource
from campus_energy.config import Config
from campus_energy.core import alert_rules
from campus_energy.core.alerts import AlertState, Transition
from campus_energy.core.readings import Reading
from campus_energy.core.topics import meter_status_topic, reading_topic, status_document
from campus_energy.errors import ServiceError
from campus_energy.incidents.store import AlertBook
from campus_energy.logger.service import MeterLogger
from campus_energy.meters.simulator.server import Simulator
from campus_energy.runtime.mqtt import encode

PREFIX = "campus/energy"
SILENT_AFTER_S = 1.5
FOR_S = 1.0
SILENT_RULE = {
    "name": "silent",
    "kind": "meter-silent",
    "scope": "campus",
    "silent_after": SILENT_AFTER_S,
    "for": FOR_S,
    "clear_after": 0,
    "severity": "critical",
    "channels": ["mail"],
}


def alerts_section(folder: Path, smtp_port: int, **extra: Any) -> dict[str, Any]:
    return {
        "state_path": str(folder / "alerts.db"),
        "evaluate_every_s": 1,
        "channels": [
            {
                "name": "mail",
                "kind": "email",
                "host": "127.0.0.1",
                "port": smtp_port,
                "security": "none",
                "sender": "energy@campus.example",
                "recipients": ["facilities@campus.example"],
                "timeout_s": 5,
            }
        ],
        "rules": [SILENT_RULE],
        **extra,
    }


def mails(inbox: Inbox, word: str, subject: str) -> list[Any]:
    return [
        r.message
        for r in inbox.messages
        if f"[{word.upper()} " in str(r.message["Subject"]) and subject in str(r.message["Subject"])
    ]


@pytest.mark.slow
async def test_a_silent_meter_is_mailed_once_when_it_fires_and_once_when_it_resolves(
    tmp_path: Path, mosquitto: Any
) -> None:
    smtp_port = free_port()
    outage = {"simulate": {"disconnect_after_s": 3.0, "reconnect_after_s": 9.0}}
    meters = [
        meter_at("lib-main", "plant", 1, "eastron-sdm630", building="Library", interval_s=INTERVAL),
        meter_at(
            "lib-f1", "plant", 2, "eastron-sdm120", building="Library", interval_s=INTERVAL,
            parent="lib-main", **outage,
        ),
        meter_at("admin-old", "plant", 3, "campus-legacy", building="Admin", interval_s=INTERVAL),
    ]  # fmt: skip
    buses = [tcp_bus(timeout_s=0.15, retries=0)]
    config = make_config(
        buses,
        meters,
        storage={"path": str(tmp_path / "store.db")},
        mqtt={"port": mosquitto.port, "topic_prefix": PREFIX},
        logger={"id": "test-logger"},
        bridge={"sqlite": {"path": str(tmp_path / "windows.db")}},
        alerts=alerts_section(tmp_path, smtp_port),
    )
    with smtp_server(smtp_port) as inbox:
        service = AlertsService(config)
        async with (
            Simulator(config),
            serving(service, "subscribed"),
            serving(MeterLogger(config), "ready"),
        ):
            await eventually(lambda: mails(inbox, "firing", "lib-f1"), 20, "the firing mail")
            fired_at = time.time()
            await eventually(lambda: mails(inbox, "resolved", "lib-f1"), 20, "the resolved mail")
            await asyncio.sleep(0)  # (the loop runs the last delivery's bookkeeping)
        book = AlertBook(config.alerts.state_path)
        try:
            history = book.history(0, 2**62)
            seen = book.seen()
        finally:
            book.close()
    # the firing came within `for` + one evaluation (1 s) + one poll of the onset: the last
    # reading + silent_after, or the logger's offline status, whichever came first
    firing = next(h for h in history if h.event == "firing")
    onset_ms = firing.at_ms - FOR_S * 1000
    assert firing.subject == "lib-f1" and firing.severity == "critical"
    assert "no reading" in firing.detail or "offline" in firing.detail, firing.detail
    last_before = seen["lib-f1"].last_reading_ms
    assert last_before is not None
    assert fired_at * 1000 - firing.at_ms < 2000, "mailed within 2 s of firing"
    assert onset_ms <= firing.at_ms
    # exactly one mail of each kind, about lib-f1 only
    subjects = [str(r.message["Subject"]) for r in inbox.messages]
    assert len(subjects) == 2, subjects
    assert all("lib-f1" in s for s in subjects), subjects
    assert [h.event for h in history if h.subject == "lib-f1"] == ["firing", "resolved"]
    message = mails(inbox, "firing", "lib-f1")[0]
    assert message["To"] == "facilities@campus.example"
    assert message["Message-ID"] != mails(inbox, "resolved", "lib-f1")[0]["Message-ID"]


async def publish(port: int, topic: str, document: dict[str, Any], *, retain: bool) -> None:
    async with aiomqtt.Client("127.0.0.1", port, identifier=f"fake-logger-{free_port()}") as c:
        await c.publish(topic, encode(document), qos=1, retain=retain)


def reading(meter_id: str, ts_ms: int, seq: int) -> dict[str, Any]:
    values = {"voltage_v": 230.0, "current_a": 1.0, "power_w": 230.0}
    return Reading(meter_id, ts_ms, seq, 0, seq * 10**6, values, None).payload("Library", "1")


@pytest.mark.slow
def test_killed_mid_alert_with_the_mail_server_down_nothing_is_lost_or_repeated(
    tmp_path: Path, mosquitto: Any
) -> None:
    """The alerts service as its own process, fed by a stand-in logger over MQTT (the retained
    status, then readings), killed with -9 while its firing mail waits for the SMTP server."""
    smtp_port = free_port()
    path = write_toml(
        tmp_path / "campus-energy.toml",
        {
            "site": {"timezone": "Europe/Berlin", "name": "Test Campus"},
            "buses": [tcp_bus()],
            "meters": [meter_at("m1", "plant", 1, "eastron-sdm120", building="Library")],
            "mqtt": {"port": mosquitto.port, "topic_prefix": PREFIX},
            "bridge": {"sqlite": {"path": str(tmp_path / "windows.db")}},
            "alerts": alerts_section(tmp_path, smtp_port),
        },
    )
    log = tmp_path / "alerts.log"
    status = meter_status_topic(PREFIX, "m1")

    def say(state: str) -> None:
        document = status_document(state, int(time.time() * 1000))
        asyncio.run(publish(mosquitto.port, status, document, retain=True))

    def recorded(event: str) -> bool:
        book = AlertBook(tmp_path / "alerts.db")
        try:
            return any(h.event == event for h in book.history(0, 2**62))
        finally:
            book.close()

    process = spawn(campus_energy("alerts", "-c", path), log)
    try:
        say("offline")  # the meter goes offline: firing after `for`, the mail cannot go out
        assert within(lambda: recorded("firing"), 20, 0.1), log.read_text()
        assert within(lambda: failed_attempts(tmp_path / "alerts.db"), 20, 0.1), log.read_text()
        process.send_signal(signal.SIGKILL)
        process.wait(10)
        with smtp_server(smtp_port) as inbox:
            process = spawn(campus_energy("alerts", "-c", path), log)
            # the outbox retries on start: the firing mail arrives once
            assert within(lambda: mails(inbox, "firing", "m1"), 20, 0.1), log.read_text()
            now = int(time.time() * 1000)
            topic = reading_topic(PREFIX, "m1")
            asyncio.run(publish(mosquitto.port, topic, reading("m1", now, 1), retain=False))
            say("online")
            assert within(lambda: mails(inbox, "resolved", "m1"), 20, 0.1), log.read_text()
            process.send_signal(signal.SIGTERM)
            assert process.wait(20) == 0, log.read_text()
        subjects = [str(r.message["Subject"]) for r in inbox.messages]
        assert len(subjects) == 2, subjects
        assert "Traceback" not in log.read_text()
        assert "connection refused" in log.read_text().lower()  # the outage, said once
        assert (
            query(tmp_path / "alerts.db", "SELECT count(*) FROM outbox WHERE delivered_ms IS NULL")[
                0
            ][0]
            == 0
        )
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        asyncio.run(_clear(mosquitto.port, status))


def failed_attempts(book: Path) -> int:
    """How often the outbox tried to send and failed (the book's own table)."""
    return int(query(book, "SELECT coalesce(sum(attempts), 0) FROM outbox")[0][0])


async def _clear(port: int, topic: str) -> None:
    async with aiomqtt.Client("127.0.0.1", port) as client:
        await client.publish(topic, b"", qos=1, retain=True)


async def test_a_silence_set_before_an_alert_first_fires_holds_its_notification_back(
    tmp_path: Path, mosquitto: Any
) -> None:
    """`for` = 0: the alert fires at its first evaluation, before the book holds a state of it."""
    smtp_port = free_port()
    config = make_config(
        [tcp_bus()],
        [
            meter_at("m1", "plant", 1, "eastron-sdm120"),
            meter_at("m2", "plant", 2, "eastron-sdm120"),
        ],
        mqtt={"port": mosquitto.port, "topic_prefix": PREFIX},
        bridge={"sqlite": {"path": str(tmp_path / "windows.db")}},
        alerts=alerts_section(tmp_path, smtp_port, rules=[{**SILENT_RULE, "for": 0}]),
    )
    book = AlertBook(config.alerts.state_path)
    try:
        now = int(time.time() * 1000)
        book.silence("silent", "m1", now + 3_600_000, "facilities", now, "rewiring")
    finally:
        book.close()
    with smtp_server(smtp_port) as inbox:
        service = AlertsService(config)
        async with serving(service, "subscribed"):
            for meter in ("m1", "m2"):
                document = status_document("offline", int(time.time() * 1000))
                await publish(
                    mosquitto.port, meter_status_topic(PREFIX, meter), document, retain=True
                )
            await eventually(lambda: mails(inbox, "firing", "m2"), 10, "m2's firing mail")
            evaluated = service.evaluated
            await eventually(lambda: service.evaluated > evaluated + 1, 10, "two evaluations more")
        for meter in ("m1", "m2"):
            await _clear(mosquitto.port, meter_status_topic(PREFIX, meter))
    book = AlertBook(config.alerts.state_path)
    try:
        history = {(h.subject, h.event): h.suppressed for h in book.history(0, 2**62)}
    finally:
        book.close()
    assert history == {("m1", "firing"): True, ("m2", "firing"): False}
    assert not mails(inbox, "firing", "m1")


def witnessed(meter: str, ts_ms: int, seq: int, total_wh: float, register_wh: float) -> bytes:
    """A reading that carries the meter's import register beside the integrated total."""
    values = {"voltage_v": 230.0, "current_a": 4.0, "power_w": 1000.0}
    body = Reading(meter, ts_ms, seq, 0, round(total_wh * 1e6), values, None).payload(
        "Library", "1"
    )
    body["import_energy_wh"] = register_wh
    return encode(body)


async def test_a_register_drifting_from_the_integrated_energy_over_a_day_fires_and_persists(
    tmp_path: Path, mosquitto: Any
) -> None:
    """Two meters report a day of hourly readings (their timestamps a day back, as an outbox
    replays them): m1's register climbs 10 % faster than its integrated energy, m2's with it.
    Only m1 fires; a restarted service still knows the day (its anchors are in the book)."""
    drift = {"name": "drift", "kind": "register-drift", "scope": "campus", "percent": 2}
    config = make_config(
        [tcp_bus()],
        [meter_at(m, "plant", i, "eastron-sdm120") for i, m in enumerate(("m1", "m2"), 1)],
        mqtt={"port": mosquitto.port, "topic_prefix": PREFIX},
        bridge={"sqlite": {"path": str(tmp_path / "windows.db")}},
        alerts={"state_path": str(tmp_path / "alerts.db"), "evaluate_every_s": 1,
                "rules": [drift]},
    )  # fmt: skip
    now = int(time.time() * 1000)
    service = AlertsService(config)
    async with (
        serving(service, "subscribed"),
        aiomqtt.Client("127.0.0.1", mosquitto.port, identifier="replaying-logger") as client,
    ):
        for hour in range(25):
            ts = now - (24 - hour) * 3_600_000
            total = 50_000.0 + 1000.0 * hour
            for meter, register in (("m1", 9e6 + 1100.0 * hour), ("m2", 7e6 + 1000.0 * hour)):
                topic = reading_topic(PREFIX, meter)
                await client.publish(topic, witnessed(meter, ts, hour + 1, total, register), qos=1)
        await eventually(lambda: _phase_of(service, "drift", "m1") == "firing", 10, "m1 firing")
        assert _phase_of(service, "drift", "m2") is None
    book = AlertBook(config.alerts.state_path)
    try:
        fired = [h for h in book.history(0, 2**62) if h.event == "firing"]
    finally:
        book.close()
    assert [(h.subject, round(h.value or 0, 2)) for h in fired] == [("m1", 9.09)]
    assert "integrated 24.0 kWh against the register's 26.4 kWh over 24 h" in fired[0].detail
    again = AlertsService(config)
    async with serving(again, "subscribed"):
        evaluated = again.evaluated
        await eventually(lambda: again.evaluated > evaluated + 1, 10, "two evaluations")
        assert again.live.drift_anchors("m1") is not None  # the day, from the book
        assert _phase_of(again, "drift", "m1") == "firing"
    book = AlertBook(config.alerts.state_path)
    try:
        assert len([h for h in book.history(0, 2**62) if h.event == "firing"]) == 1
    finally:
        book.close()


async def test_demand_approaching_fires_within_one_poll_of_the_crossing(
    tmp_path: Path, mosquitto: Any
) -> None:
    """The Library's main meter draws 12 kW against a contract of 10 kW (share 0.9): the
    interval's projection crosses 9 kW at the first reading, and the alert fires within one
    poll (1 s here) of it."""
    rule = {"name": "demand", "kind": "demand-approaching", "scope": "building:Library",
            "contracted_kw": 10, "share": 0.9, "interval_min": 15}  # fmt: skip
    config = make_config(
        [tcp_bus()],
        [
            meter_at(
                "m1", "plant", 1, "eastron-sdm630", building="Library", role="main", interval_s=1
            )
        ],
        site={"timezone": "Asia/Kolkata", "buildings": [{"name": "Library"}]},
        mqtt={"port": mosquitto.port, "topic_prefix": PREFIX},
        bridge={"sqlite": {"path": str(tmp_path / "windows.db")}},
        alerts={"state_path": str(tmp_path / "alerts.db"), "evaluate_every_s": 10, "rules": [rule]},
    )
    service = AlertsService(config)
    assert service.every_s() == 1.0  # evaluated every poll of its meter, not every 10 s
    async with (
        serving(service, "subscribed"),
        aiomqtt.Client("127.0.0.1", mosquitto.port, identifier="logger") as client,
    ):
        previous = int(time.time() * 1000) - 1000
        crossed = time.time()
        for seq in range(1, 4):
            ts = previous + 1000
            values = {"voltage_v": 230.0, "current_a": 52.0, "power_w": 12_000.0}
            wh = 12_000.0 / 3600
            body = Reading("m1", ts, seq, round(wh * 1e6), round(seq * wh * 1e6), values, previous)
            await client.publish(reading_topic(PREFIX, "m1"), encode(body.payload("Library", "")))
            previous = ts
            if _phase_of(service, "demand", "Library") == "firing":
                break
            await eventually(lambda n=seq: service.live.readings >= n, 5, "the reading taken")
        await eventually(lambda: _phase_of(service, "demand", "Library") == "firing", 5)
        fired_after = time.time() - crossed
    assert fired_after < 2.5, fired_after  # one poll (1 s) and the evaluation's own time
    book = AlertBook(config.alerts.state_path)
    try:
        (firing,) = [h for h in book.history(0, 2**62) if h.event == "firing"]
    finally:
        book.close()
    assert firing.value is not None and 11.9 <= firing.value <= 12.1
    assert "10.0 kW" in firing.detail or "10 kW" in firing.detail, firing.detail


def _phase_of(service: AlertsService, rule: str, subject: str) -> str | None:
    assert service.book is not None
    state = service.book.states(int(time.time() * 1000)).get((rule, subject))
    return None if state is None else state.phase


async def test_demand_is_measured_against_the_billed_demand_of_the_buildings_tariff(
    tmp_path: Path,
) -> None:
    """Without a contracted demand the reference is what the month is billed at anyway: the
    tariff's ratchet minimum (60 kW here, no earlier months in the store) above the month's
    small peak so far; the interval is the tariff's (30 minutes)."""
    tariff = {
        "id": "tou",
        "currency": "EUR",
        "versions": [
            {"valid_from": "2020-01-01", "default_rate": 0.2,
             "demand": {"interval_min": 30, "price_per_kw": 10, "ratchet_share": 0.8,
                        "ratchet_months": 11, "minimum_kw": 60}},
        ],
    }  # fmt: skip
    rule = {"name": "demand", "kind": "demand-approaching", "scope": "building:Library"}
    config = make_config(
        [tcp_bus()],
        [meter_at("m1", "plant", 1, "eastron-sdm630", building="Library", role="main")],
        site={"timezone": "Europe/Berlin", "buildings": [{"name": "Library", "tariff": "tou"}]},
        tariffs=[tariff],
        bridge={"sqlite": {"path": str(tmp_path / "windows.db")}},
        alerts={"state_path": str(tmp_path / "alerts.db"), "rules": [rule]},
    )
    service = AlertsService(config)
    service.store = StoreReader(SqliteSource(config.bridge.sqlite.path), config.site.zone, 300, 60)
    try:
        (plan,) = service.planned
        running = await service._demand(plan, service.now_ms())
    finally:
        service.store.close()
        service.store.source.close()
    assert running.interval_ms == 30 * 60_000
    assert running.floor_kw == 60.0 and running.month_peak_kw is None


async def test_a_due_report_is_mailed_by_the_service_with_its_attachments(tmp_path: Path) -> None:
    """The monthly report was last sent 40 days ago: the service mails last month's report
    (HTML with its charts inline, XLSX and CSV attached) once, and remembers it."""
    smtp_port = free_port()
    config = make_config(
        [tcp_bus()],
        [meter_at("m1", "plant", 1, "eastron-sdm120", building="Library")],
        site={"timezone": "Europe/Berlin", "name": "Test Campus"},
        mqtt={"port": free_port()},  # no broker: the reports do not need one
        bridge={"sqlite": {"path": str(tmp_path / "windows.db")}},
        alerts=alerts_section(tmp_path, smtp_port, rules=[]),
        reports=[{"name": "monthly", "every": "month", "day": 1, "at": "07:00",
                  "channel": "mail", "recipients": ["director@campus.example"]}],
    )  # fmt: skip
    now = int(time.time() * 1000)
    book = AlertBook(config.alerts.state_path)
    try:
        book.remember("report:monthly", now - 40 * 86_400_000)
    finally:
        book.close()
    with smtp_server(smtp_port) as inbox:
        service = AlertsService(config)
        async with serving(service):
            await eventually(lambda: inbox.messages, 20, "the report mail")
            evaluated = service.evaluated
            await eventually(lambda: service.evaluated > evaluated, 10, "another round")
    (mail,) = inbox.messages
    message = mail.message
    assert mail.recipients == ["director@campus.example"]
    assert "report" in str(message["Subject"]).lower()
    names = sorted(part.get_filename() for part in message.iter_attachments())
    assert [n.rsplit(".", 1)[1] for n in names] == ["csv", "xlsx"], names
    images = [p for p in message.walk() if p.get_content_type() == "image/png"]
    assert images and all(p["Content-ID"] for p in images)
    book = AlertBook(config.alerts.state_path)
    try:
        assert book.memo("report:monthly") > now - 40 * 86_400_000
    finally:
        book.close()


QUIET_RULE = {**SILENT_RULE, "channels": []}  # (a book of its own, no mail)


def quiet_config(folder: Path, **alerts: Any) -> Config:
    """One meter, no broker, the quiet rule and its book (alerts.db) in `folder`; `alerts`: more
    of the alerts section."""
    return make_config(
        [tcp_bus()],
        [meter_at("m1", "plant", 1, "eastron-sdm120")],
        mqtt={"port": free_port()},
        bridge={"sqlite": {"path": str(folder / "windows.db")}},
        alerts={"state_path": str(folder / "alerts.db"), "rules": [QUIET_RULE], **alerts},
    )


class BrokenEvaluation(AlertsService):
    """An evaluation loop with a bug no check foresaw (a stand-in for one)."""

    async def evaluate(self) -> None:
        raise RuntimeError("a bug in the evaluation")


async def test_a_loop_that_ends_stops_the_service_with_an_error_for_systemd_to_restart(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = quiet_config(tmp_path)
    service = BrokenEvaluation(config)
    with pytest.raises(ServiceError, match="evaluate loop ended: RuntimeError"):
        await asyncio.wait_for(service.run(asyncio.Event()), 10)
    assert any("the evaluate loop ended" in r.message for r in caplog.records)
    assert "a bug in the evaluation" in caplog.text  # its traceback, once


async def test_a_rule_that_cannot_be_evaluated_leaves_the_others_running(
    tmp_path: Path, mosquitto: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any) -> None:
        raise ZeroDivisionError("a bug in one rule")

    monkeypatch.setitem(alert_rules.EVALUATORS, "register-drift", broken)
    rules = [{**QUIET_RULE, "for": 0}, {"name": "drift", "kind": "register-drift"}]
    config = make_config(
        [tcp_bus()],
        [meter_at("m1", "plant", 1, "eastron-sdm120")],
        mqtt={"port": mosquitto.port, "topic_prefix": PREFIX},
        bridge={"sqlite": {"path": str(tmp_path / "windows.db")}},
        alerts={"state_path": str(tmp_path / "alerts.db"), "evaluate_every_s": 1,
                "rules": rules},
    )  # fmt: skip
    service = AlertsService(config)
    async with serving(service, "subscribed"):
        document = status_document("offline", int(time.time() * 1000))
        await publish(mosquitto.port, meter_status_topic(PREFIX, "m1"), document, retain=True)
        await eventually(lambda: _phase_of(service, "silent", "m1") == "firing", 10)
        await _clear(mosquitto.port, meter_status_topic(PREFIX, "m1"))
    assert service.failed_rules == {"drift"}


async def test_a_removed_rules_told_firing_is_resolved_on_the_mqtt_channels(
    tmp_path: Path,
) -> None:
    book_path = tmp_path / "alerts.db"
    firing = Transition("gone", "m1", "firing", 1_000, "warning", 1.0, "x")
    book = AlertBook(book_path)
    try:
        state = AlertState("gone", "m1", "firing", 1_000, fired_ms=1_000, notified_ms=1_000)
        book.record([state], [(firing, "meter-silent", "campus", ())], 1_000)
    finally:
        book.close()
    config = quiet_config(tmp_path, channels=[{"name": "ha", "kind": "mqtt"}])
    service = AlertsService(config)
    async with serving(service):
        await eventually(lambda: service.evaluated > 0, 10, "an evaluation")
    book = AlertBook(book_path)
    try:
        (resolved,) = [h for h in book.history(0, 2**62) if h.event == "resolved"]
        pending = query(book_path, "SELECT channel, event FROM outbox WHERE rule = 'gone'")
        phase = book.states(int(time.time() * 1000))[("gone", "m1")].phase
    finally:
        book.close()
    assert resolved.detail == "no longer configured" and not resolved.suppressed
    assert pending == [("ha", "resolved")] and phase == "resolved"


async def test_the_book_is_pruned_of_what_is_older_than_a_year_and_a_bit(tmp_path: Path) -> None:
    book_path = tmp_path / "alerts.db"
    now = int(time.time() * 1000)
    old, recent = now - 500 * 86_400_000, now - 10 * 86_400_000
    book = AlertBook(book_path)
    try:
        for at in (old, recent):
            event = Transition("r", "m1", "firing", at, "warning", None, "x", suppressed=True)
            book.record([], [(event, "meter-silent", "campus", ())], at)
    finally:
        book.close()
    config = quiet_config(tmp_path)
    service = AlertsService(config)
    async with serving(service):
        await eventually(lambda: service.evaluated > 0, 10, "an evaluation")
        await eventually(lambda: len(query(book_path, "SELECT at_ms FROM history")) == 1, 10)
    assert query(book_path, "SELECT at_ms FROM history") == [(recent,)]
