"""The alerts service's live picture (`alerts.live.LiveState`), message by message: a reading
delivered twice counts once in the running demand interval, the store's cross-check stands in
only for a meter of which nothing is known (with its last window's start), and what is not
known of an interval is said."""

from __future__ import annotations

from campus_energy.alerts.live import LiveState
from campus_energy.core.incoming import Limits
from campus_energy.core.readings import Reading
from campus_energy.core.topics import reading_topic
from campus_energy.runtime.mqtt import encode

PREFIX = "campus/energy"
T0 = 1_796_531_400_000  # a UTC quarter hour


def state() -> LiveState:
    return LiveState(PREFIX, {"m1": 1.0, "m2": 1.0}, {"m1": Limits(), "m2": Limits()})


def message(meter: str, ts: int, seq: int, wh: float, start: int | None) -> tuple[str, bytes]:
    values = {"voltage_v": 230.0, "current_a": 5.0, "power_w": 1200.0}
    body = Reading(meter, ts, seq, round(wh * 1e6), round(seq * wh * 1e6), values, start)
    return reading_topic(PREFIX, meter), encode(body.payload("Lab", "1"))


def test_a_reading_delivered_twice_counts_once() -> None:
    live = state()
    for seq in (1, 2, 2, 3, 1):  # QoS 1 redeliveries and an outbox replay
        topic, payload = message("m1", T0 + seq * 1000, seq, 1200 / 3600, T0 + (seq - 1) * 1000)
        assert live.message(topic, payload, T0 + 10_000)
    assert live.readings == 3
    assert live.energy_of({"m1": 1.0}, T0, T0 + 900_000) == 3 * round(1200 / 3600, 6)


def test_the_store_stands_in_only_for_a_meter_of_which_nothing_is_known() -> None:
    live = state()
    topic, payload = message("m1", T0 + 5000, 1, 1.0, T0 + 4000)
    live.message(topic, payload, T0 + 6000)
    live.seed_from_store({"m1": T0 + 600_000, "m2": T0 - 300_000})
    assert live.meters["m1"].last_reading_ms == T0 + 5000  # heard live: the store is older news
    assert live.meters["m2"].last_reading_ms == T0 - 300_000  # its last window's start
    live.seed_from_store({"m2": T0})  # a later window never moves a known meter
    assert live.meters["m2"].last_reading_ms == T0 - 300_000


def test_what_is_not_known_of_an_interval_is_said() -> None:
    live = state()
    topic, payload = message("m1", T0 + 300_000, 1, 1.0, T0 + 299_000)  # heard from 5 min in
    live.message(topic, payload, T0 + 300_000)
    terms = {"m1": 1.0, "m2": 1.0}
    assert live.unknown_ms(terms, T0, T0 + 360_000) == {"m1": 299_000, "m2": 360_000}
    live.known_from.clear()  # a broken subscription: from the next reading on
    topic, payload = message("m1", T0 + 301_000, 2, 1.0, T0 + 300_000)
    live.message(topic, payload, T0 + 301_000)
    assert live.unknown_ms({"m1": 1.0}, T0, T0 + 360_000) == {"m1": 300_000}


def register_message(meter: str, ts: int, seq: int, total_wh: float, register_wh: float) -> bytes:
    values = {"power_w": 1000.0, "import_energy_wh": register_wh}
    body = Reading(meter, ts, seq, 0, round(total_wh * 1e6), values, None)
    return encode(body.payload("Lab", "1"))


def test_register_drift_is_never_compared_across_a_replaced_meter() -> None:
    live = LiveState(PREFIX, {"m1": 60.0}, {"m1": Limits(max_power_w=2000.0)})
    topic = reading_topic(PREFIX, "m1")
    hour = 3_600_000
    # a day at 1 kW: the register and the integrated total agree
    for n in range(25):
        payload = register_message("m1", T0 + n * hour, n + 1, n * 1000.0, 5e6 + n * 1000.0)
        assert live.message(topic, payload, T0 + n * hour)
    first, last = live.drift_anchors("m1") or (None, None)
    assert first is not None and last is not None
    assert last.register_wh - first.register_wh == last.total_wh - first.total_wh
    # the meter is replaced: its register starts again from 3 Wh
    payload = register_message("m1", T0 + 25 * hour, 26, 25_000.0, 3.0)
    assert live.message(topic, payload, T0 + 25 * hour)
    assert live.register_events == 1
    assert live.drift_anchors("m1") is None  # nothing across the replacement
    for n in range(26, 52):
        register = 3.0 + (n - 26) * 1000.0
        payload = register_message("m1", T0 + n * hour, n + 1, n * 1000.0, register)
        assert live.message(topic, payload, T0 + n * hour)
    first, last = live.drift_anchors("m1") or (None, None)
    assert first is not None and last is not None
    assert first.ts_ms > T0 + 25 * hour  # from after the new baseline only
    assert last.register_wh - first.register_wh == last.total_wh - first.total_wh
    assert live.register_events == 1


def test_a_restored_book_judges_the_first_register_read_against_its_last_anchor() -> None:
    live = LiveState(PREFIX, {"m1": 60.0}, {"m1": Limits(max_power_w=2000.0)})
    topic = reading_topic(PREFIX, "m1")
    for n in range(3):
        live.message(topic, register_message("m1", T0 + n * 60_000, n + 1, n, 9e6 + n), T0)
    again = LiveState(PREFIX, {"m1": 60.0}, {"m1": Limits(max_power_w=2000.0)})
    again.restore({}, live.anchors)
    # replaced while the service was down
    again.message(topic, register_message("m1", T0 + 3_600_000, 9, 60.0, 12.0), T0 + 3_600_000)
    assert again.register_events == 1
    assert again.anchors["m1"] == []


def test_an_integer_register_steps_by_its_scale_without_an_event() -> None:
    """A 10 Wh counter on a 1 kW meter read every second moves one step every 36 s: judged by
    its own layout (not a float32 kWh register's), that is no jump."""
    from campus_energy.core.witness import RegisterSpec

    def run(specs: dict[str, RegisterSpec]) -> int:
        live = LiveState(
            PREFIX, {"m1": 1.0}, {"m1": Limits(max_power_w=1000.0)}, register_specs=specs
        )
        topic = reading_topic(PREFIX, "m1")
        for n in range(120):
            register = 50_000.0 + 10.0 * (n // 36)  # 1 kW: 10 Wh every 36 s
            live.message(topic, register_message("m1", T0 + n * 1000, n + 1, n / 3.6, register), T0)
        return live.register_events

    assert run({"m1": RegisterSpec("uint32", 10.0)}) == 0
    assert run({}) > 0  # judged as a float32 kWh register, each step is a jump
