"""Scenario 6: 1,000 malformed MQTT payloads mixed into the stream of readings."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from tests.faults.books import Books
from tests.faults.harness import PLAN, campus, record
from tests.support.waiting import wait_for

pytestmark = pytest.mark.slow  # each test runs a whole campus for a while

MALFORMED = 1000


def good(meter: str, **change: Any) -> dict[str, Any]:
    """A well-formed reading (then spoiled by `change`; a None value removes the key)."""
    body: dict[str, Any] = {
        "schema": 1,
        "meter_id": meter,
        "building": "B1",
        "floor": "",
        "ts": "2026-01-05T10:00:00.000Z",
        "seq": 999_999,
        "voltage_v": 230.1,
        "current_a": 1.5,
        "power_w": 300.0,
        "power_factor": 0.9,
        "frequency_hz": 50.0,
        "energy_wh": 0.04,
        "energy_total_wh": 12.5,
        "interval_start": "2026-01-05T09:59:59.500Z",
    }
    body.update(change)
    return {k: v for k, v in body.items() if v is not None}


def spoiled(meter_id: str) -> list[tuple[str, bytes]]:
    """(topic, payload): every way a message can be wrong — each refused for its own reason."""
    topic = f"campus/energy/{meter_id}/reading"

    def j(body: Any) -> bytes:
        return json.dumps(body).encode()

    return [
        (topic, b"{not json"),
        (topic, b"\xff\xfe\x00garbage"),
        (topic, b""),
        (topic, b'{"schema": 1, "meter_id": '),
        (topic, b"[1, 2, 3]"),
        (topic, b"42"),
        (topic, b"null"),
        (topic, j(good(meter_id, schema=2))),
        (topic, j(good(meter_id, seq="7"))),
        (topic, j(good(meter_id, seq=True))),
        (topic, j(good(meter_id, seq=0))),
        (topic, j(good(meter_id, power_w="300 W"))),
        (topic, j(good(meter_id, energy_wh=-1.0))),
        (topic, j(good(meter_id, voltage_v=[230]))),
        (topic, j(good(meter_id, building=5))),
        (topic, j(good(meter_id, ts=1767607200))),
        (topic, j(good(meter_id, ts="yesterday"))),
        (topic, j(good(meter_id, ts="2026-01-05T10:00:00"))),
        (topic, j(good(meter_id, ts="1999-12-31T23:59:59Z"))),
        (topic, j(good(meter_id, ts="2126-01-01T00:00:00Z"))),
        (topic, j(good(meter_id, interval_start="2026-01-05T10:00:01Z"))),
        (topic, j(good(meter_id, ts=None))),
        (topic, j(good(meter_id, seq=None))),
        (topic, j(good(meter_id, power_w=None))),
        (topic, j(good(meter_id, energy_wh=None))),
        (topic, j(good(meter_id, meter_id=None))),
        (topic, j(good("another-meter"))),  # on this meter's topic
        ("campus/energy/ghost/reading", j(good("ghost"))),  # a meter nobody configured
        (topic, b'{"schema": 1, "meter_id": "%s", "power_w": NaN}' % meter_id.encode()),
        (topic, j(good(meter_id, power_w=10**400))),
        (topic, b"[" * 100_000),  # nested beyond any parser's patience, and huge
        (topic, j(good(meter_id, padding="x" * 200_000))),  # huge
    ]


@pytest.mark.long  # tests/attacks/test_intake.py dead-letters each kind in the short run
@pytest.mark.timeout(PLAN.test_timeout_s)
def test_malformed_payloads_are_dead_lettered_and_the_books_balance(
    tmp_path: Path, mosquitto: Any, report: list[Books]
) -> None:
    sink = {"sink": "sqlite", "sqlite": {"path": str(tmp_path / "windows.db")}}
    with campus("1,000 malformed payloads", tmp_path, mosquitto.port, sink) as c:
        c.start()
        kinds = [spoiled(m["id"]) for m in c.meters]
        mixed = [kinds[i % len(kinds)][i % len(kinds[0])] for i in range(MALFORMED)]
        vandal = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="vandal")
        vandal.connect("127.0.0.1", mosquitto.port)
        vandal.loop_start()
        try:
            for burst in range(10):
                sent = [
                    vandal.publish(t, p, qos=1) for t, p in mixed[burst * 100 : burst * 100 + 100]
                ]
                for message in sent:
                    message.wait_for_publish(timeout=30)
                c.advance(0.5)  # readings flow in between
        finally:
            vandal.disconnect()
            vandal.loop_stop()
        wait_for(lambda: len(c.dead_letters()) >= MALFORMED, 60, "every malformed payload is kept")
        assert c.bridge.alive
        c.advance(2)
        c.settle()
        kept = c.dead_letters()
        books = c.books(dead_letters=MALFORMED)
        log = c.bridge.log_text()
    by_kind = Counter(kind for _, _, kind in kept)
    books.notes.append(", ".join(f"{k} {n}" for k, n in sorted(by_kind.items())))
    record(report, books)
    # each kept, with its raw bytes (the first 4 KiB of an oversized one)
    assert Counter((t, p) for t, p, _ in kept) == Counter((t, p[:4096]) for t, p in mixed)
    assert log.count("refused a message") == len(by_kind)  # logged once per kind
