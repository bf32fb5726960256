"""Attacks on the alerts service's intake: what anyone who may publish on the reading and status
topics can send it. A real Mosquitto (without a size limit, so the service's own bounds are the
point) and the service in this process. What must hold:

- garbage on the reading topics (not JSON, 1e300 W, a negative energy, an unknown meter, a
  64 KiB payload) and on the status topics (64 KiB, an unknown state, not JSON, a meter no one
  configured, a time of the year 1 that overflows, 2,000 nested brackets, a list) is refused
  and counted, and readings are taken after it; the service keeps evaluating and its picture
  of the real meters is what their real readings said;
- a forged "online" status never hides a silent meter (its readings decide), a forged
  "offline" raises at worst an alert that names the status as its reason;
- with a signing key, unsigned and wrongly signed readings do not make a meter look alive;
- a flood of 2,000 malformed messages leaves the service responsive and its memory bounded
  (the per-meter tables hold configured meters only).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import aiomqtt
from tests.support.config import make_config, meter_at, tcp_bus
from tests.support.mqtt import running_mosquitto
from tests.support.services import serving
from tests.support.waiting import eventually

from campus_energy.alerts.service import AlertsService
from campus_energy.core.readings import Reading
from campus_energy.core.signatures import signed
from campus_energy.runtime.mqtt import encode

PREFIX = "campus/energy"


def reading(meter: str, ts_ms: int, seq: int, power_w: float = 500.0) -> dict[str, Any]:
    values = {"voltage_v": 230.0, "current_a": 2.0, "power_w": power_w}
    return Reading(meter, ts_ms, seq, 0, seq * 10**6, values, None).payload("Lab", "1")


def config_for(folder: Path, port: int, **mqtt: Any) -> Any:
    return make_config(
        [tcp_bus()],
        [meter_at("m1", "plant", 1, "eastron-sdm120", interval_s=1, building="Lab")],
        mqtt={"port": port, "topic_prefix": PREFIX, **mqtt},
        bridge={"sqlite": {"path": str(folder / "windows.db")}},
        alerts={
            "state_path": str(folder / "alerts.db"),
            "evaluate_every_s": 1,
            "rules": [
                {"name": "silent", "kind": "meter-silent", "scope": "campus", "silent_after": 3}
            ],
        },
    )


async def test_garbage_on_the_topics_is_refused_and_counted_and_the_service_carries_on(
    tmp_path: Path,
) -> None:
    with running_mosquitto(tmp_path / "broker", message_size_limit=0) as broker:
        service = AlertsService(config_for(tmp_path, broker.port))
        async with (
            serving(service, "subscribed"),
            aiomqtt.Client("127.0.0.1", broker.port, identifier="stranger") as client,
        ):
            now = int(time.time() * 1000)
            real = reading("m1", now, 1)
            await client.publish(f"{PREFIX}/m1/reading", encode(real), qos=1)
            await eventually(lambda: service.live.readings == 1, 10, "the real reading")
            evil: list[tuple[str, bytes]] = [
                (f"{PREFIX}/m1/reading", b"not json"),
                (f"{PREFIX}/m1/reading", encode(reading("m1", now + 1000, 2, 1e300))),
                (f"{PREFIX}/m1/reading", encode({**reading("m1", now + 2000, 3), "energy_wh": -5})),
                (f"{PREFIX}/ghost/reading", encode(reading("ghost", now, 1))),
                (f"{PREFIX}/m1/reading", b"{" + b" " * 65536 + b"}"),
                (f"{PREFIX}/m1/status", b"x" * 65536),
                (f"{PREFIX}/m1/status", json.dumps({"state": "melting", "ts": "now"}).encode()),
                (f"{PREFIX}/m1/status", b"\xff\xfe"),
                (f"{PREFIX}/ghost/status", encode({"state": "offline"})),
                # a time whose conversion overflows, a document nested past the parser, a list
                (f"{PREFIX}/m1/status", b'{"state":"online","ts":"0001-01-01T00:00:00+14:00"}'),
                (f"{PREFIX}/m1/status", b'{"state":' + b"[" * 2000 + b"}"),
                (f"{PREFIX}/m1/status", b'["online"]'),
            ]
            for topic, payload in evil:
                await client.publish(topic, payload, qos=1)
            await eventually(lambda: service.live.refused >= len(evil) - 1, 10, "every refusal")
            evaluated = service.evaluated
            await eventually(lambda: service.evaluated > evaluated, 10, "another evaluation")
            seen = service.live.meters["m1"]
            assert seen.last_reading_ms == now and seen.power_w == 500.0
            # and readings are still taken: the intake survived every one of them
            later = reading("m1", now + 5000, 4)
            await client.publish(f"{PREFIX}/m1/reading", encode(later), qos=1)
            await eventually(lambda: service.live.readings == 2, 10, "a reading after them")
            assert set(service.live.meters) == {"m1"}  # no table grows for a ghost meter
            assert seen.status is None


async def test_a_forged_online_status_never_hides_a_silent_meter(tmp_path: Path) -> None:
    with running_mosquitto(tmp_path / "broker") as broker:
        service = AlertsService(config_for(tmp_path, broker.port))
        async with (
            serving(service, "subscribed"),
            aiomqtt.Client("127.0.0.1", broker.port, identifier="stranger") as client,
        ):
            stale = int(time.time() * 1000) - 60_000  # its last reading a minute ago
            await client.publish(f"{PREFIX}/m1/reading", encode(reading("m1", stale, 1)), qos=1)
            online = {"state": "online", "ts": "2026-01-01T00:00:00.000Z", "detail": ""}
            await client.publish(f"{PREFIX}/m1/status", encode(online), qos=1, retain=True)
            await eventually(lambda: service.live.meters["m1"].status == "online", 10)
            await eventually(lambda: _phase(service, "m1") == "firing", 10, "the alert firing")
            await client.publish(f"{PREFIX}/m1/status", b"", qos=1, retain=True)


async def test_with_a_signing_key_unsigned_readings_do_not_keep_a_meter_alive(
    tmp_path: Path,
) -> None:
    key_file = tmp_path / "signing.key"
    key_file.write_text("k" * 64)
    key_file.chmod(0o600)
    with running_mosquitto(tmp_path / "broker") as broker:
        config = config_for(tmp_path, broker.port, signing_key_file=str(key_file))
        service = AlertsService(config)
        async with (
            serving(service, "subscribed"),
            aiomqtt.Client("127.0.0.1", broker.port, identifier="stranger") as client,
        ):
            now = int(time.time() * 1000)
            unsigned = reading("m1", now, 1)
            wrong = signed(reading("m1", now + 1, 2), b"x" * 64)
            right = signed(reading("m1", now + 2, 3), b"k" * 64)
            for body in (unsigned, wrong):
                await client.publish(f"{PREFIX}/m1/reading", encode(body), qos=1)
            await eventually(lambda: service.live.refused == 2, 10, "two refusals")
            assert service.live.meters["m1"].last_reading_ms is None
            await client.publish(f"{PREFIX}/m1/reading", encode(right), qos=1)
            await eventually(lambda: service.live.meters["m1"].last_reading_ms == now + 2, 10)


async def test_a_flood_of_malformed_messages_leaves_the_service_responsive(tmp_path: Path) -> None:
    with running_mosquitto(tmp_path / "broker") as broker:
        service = AlertsService(config_for(tmp_path, broker.port))
        async with (
            serving(service, "subscribed"),
            aiomqtt.Client(
                "127.0.0.1", broker.port, identifier="flood", max_queued_outgoing_messages=0
            ) as client,
        ):
            started = time.monotonic()
            for i in range(2000):
                await client.publish(f"{PREFIX}/m{i}/reading", b'{"x": ' + str(i).encode(), qos=0)
            await eventually(lambda: service.live.refused >= 1900, 20, "the flood refused")
            print(  # the figure docs/operations.md quotes
                f"flood: {service.live.refused} of 2000 refused {time.monotonic() - started:.2f} s"
                " after the first was sent"
            )
            evaluated = service.evaluated
            await eventually(lambda: service.evaluated > evaluated, 10, "an evaluation after it")
            assert set(service.live.meters) == {"m1"} and not service.live.quarters


def _phase(service: AlertsService, subject: str) -> str | None:
    assert service.book is not None
    state = service.book.states(int(time.time() * 1000)).get(("silent", subject))
    return None if state is None else state.phase
