"""Which MQTT brokers carry the pipeline: what each does with what the pipeline relies on.

Mosquitto (the production broker), RabbitMQ's MQTT plugin and NATS server's MQTT, each a
process of the test's own (`tests/support/brokers.py`), configured as docs/brokers.md
says to run it for the pipeline, probed with real clients (`tests/support/broker_probes.py`).
`EXPECTED` is what the probes measured; docs/brokers.md's capability table is rendered
from it, and a test holds the two together. A broker behaving otherwise fails here.

The probes share one broker per kind (seconds each); the RabbitMQ cases that start a
node of their own or restart one (10-20 s each) run in `make faults`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from tests.support import SHARED_PROCESSES
from tests.support.broker_probes import (
    AfterRestart,
    inflight_window,
    last_will,
    mqtt5,
    persistent_session,
    qos1_delivery,
    restart,
    retained_status,
    shared_subscription,
)
from tests.support.brokers import BATCH_INFLIGHT, BrokerProcess, running_broker

DOC = Path(__file__).parents[2] / "docs" / "brokers.md"
QUEUED = 20  # messages queued for an absent subscriber before a restart


@dataclass(frozen=True)
class Measured:
    """One broker's column of the table, as the probes find it."""

    title: str
    qos1: bool
    persistent_session: bool
    after_stop: AfterRestart
    after_kill: AfterRestart
    retained: bool
    will: bool
    shared: str
    inflight_default: int
    inflight_key: str
    inflight_configured: int
    mqtt5: str


EXPECTED = {
    "mosquitto": Measured(
        title="Mosquitto 2.0.11",
        qos1=True,
        persistent_session=True,
        # a shared subscription is not restored from the persistence file
        after_stop=AfterRestart(queued=QUEUED, session=True, retained=True, shared=False),
        # it writes its state every autosave_interval (60 s, as deploy/mosquitto sets it)
        after_kill=AfterRestart(queued=0, session=False, retained=False, shared=False),
        retained=True,
        will=True,
        shared="each message to one of them",
        inflight_default=20,
        inflight_key="max_inflight_messages",
        inflight_configured=500,
        mqtt5="accepted",
    ),
    "rabbitmq": Measured(
        title="RabbitMQ 3.10.8 MQTT plugin",
        qos1=True,
        persistent_session=True,
        after_stop=AfterRestart(queued=QUEUED, session=True, retained=True, shared=False),
        # retained messages live in a DETS file synced every 2 s
        after_kill=AfterRestart(queued=QUEUED, session=True, retained=False, shared=False),
        retained=True,
        will=True,
        shared="none delivered",
        inflight_default=10,
        inflight_key="mqtt.prefetch",
        inflight_configured=500,
        mqtt5="closed without CONNACK",
    ),
    "nats": Measured(
        title="NATS server 2.9.10 MQTT",
        qos1=True,
        persistent_session=True,
        after_stop=AfterRestart(queued=QUEUED, session=True, retained=True, shared=False),
        after_kill=AfterRestart(queued=QUEUED, session=True, retained=True, shared=False),
        retained=True,
        will=True,
        shared="none delivered",
        inflight_default=1024,
        inflight_key="mqtt.max_ack_pending",
        inflight_configured=1024,  # its default is above the bridge's batch: left as it is
        mqtt5="refused (code 1)",
    ),
}
KINDS = list(EXPECTED)
SLOW_TO_START = {"rabbitmq"}  # an Erlang node: a start or a restart takes 6-20 s


def slow_cases(kinds: list[str]) -> list[object]:
    return [
        pytest.param(k, marks=[pytest.mark.long] if k in SLOW_TO_START else [], id=k) for k in kinds
    ]


@pytest.fixture(scope="module", params=KINDS)
def broker(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[BrokerProcess]:
    """One broker of each kind for the module's probes, configured for the pipeline."""
    kind = request.param
    with running_broker(kind, tmp_path_factory.mktemp(kind)) as found:
        pid = found.pid
        SHARED_PROCESSES.add(pid)  # kept for the module's tests
        try:
            yield found
        finally:
            SHARED_PROCESSES.discard(pid)


def expected(broker: BrokerProcess) -> Measured:
    return EXPECTED[broker.name]


# --- what one running broker does ---------------------------------------------------------------


async def test_a_qos_1_message_is_acknowledged_and_delivered_at_qos_1(
    broker: BrokerProcess,
) -> None:
    assert await qos1_delivery(broker.port) == expected(broker).qos1


async def test_a_persistent_session_receives_what_came_while_it_was_away(
    broker: BrokerProcess,
) -> None:
    assert await persistent_session(broker.port) == expected(broker).persistent_session


async def test_a_retained_status_reaches_a_later_subscriber_flagged_retained(
    broker: BrokerProcess,
) -> None:
    assert await retained_status(broker.port) == expected(broker).retained


async def test_a_broken_connection_publishes_its_last_will(broker: BrokerProcess) -> None:
    assert await last_will(broker.port) == expected(broker).will


async def test_what_a_shared_subscription_delivers(broker: BrokerProcess) -> None:
    assert await shared_subscription(broker.port) == expected(broker).shared


async def test_what_an_mqtt_5_connect_gets(broker: BrokerProcess) -> None:
    assert await mqtt5(broker.port) == expected(broker).mqtt5


async def test_the_in_flight_window_as_configured_for_the_pipeline(
    broker: BrokerProcess,
) -> None:
    """At least the bridge's batch of 500 unacknowledged messages; all arrive in the end."""
    window = expected(broker).inflight_configured
    found = await inflight_window(broker.port, published=window + 100)
    assert found.unacknowledged == window
    assert found.delivered_in_all == found.published
    assert found.unacknowledged >= BATCH_INFLIGHT


# --- what a broker of its own shows: its defaults, its restarts ----------------------------------


DEFAULTS = {"mosquitto": {"inflight": None}, "rabbitmq": {"prefetch": None}, "nats": {}}


@pytest.mark.parametrize("kind", slow_cases(KINDS))
async def test_the_in_flight_window_by_default(kind: str, tmp_path: Path) -> None:
    window = EXPECTED[kind].inflight_default
    with running_broker(kind, tmp_path / kind, **DEFAULTS[kind]) as found:
        measured = await inflight_window(found.port, published=window + 100)
    assert measured.unacknowledged == window
    assert measured.delivered_in_all == measured.published


@pytest.mark.parametrize("kind", slow_cases(KINDS))
@pytest.mark.parametrize("how", ["stop", "kill"])
async def test_what_survives_a_restart_of_the_broker(kind: str, how: str, tmp_path: Path) -> None:
    """A clean stop (SIGTERM) or kill -9, with messages queued for an absent persistent
    subscriber and a retained status."""
    with running_broker(kind, tmp_path / kind) as found:
        measured = await restart(found, how, queued=QUEUED)
    want = EXPECTED[kind].after_stop if how == "stop" else EXPECTED[kind].after_kill
    assert measured == want


# --- the table in docs/brokers.md ------------------------------------------------------------


def _yes(value: bool) -> str:
    return "yes" if value else "**no**"


def _restart(found: AfterRestart, shares: bool) -> str:
    """A restart row's cell. `shares`: the broker has shared subscriptions to lose."""
    lost = []
    if found.queued < QUEUED:
        lost.append(f"{QUEUED - found.queued} of {QUEUED} queued messages")
    if not found.session:
        lost.append("the session")
    if shares and not found.shared:
        lost.append("an absent member's shared subscription")
    if not found.retained:
        lost.append("the retained message")
    if not lost:
        return "yes"
    kept = found.queued == QUEUED and found.session
    said = ", ".join(lost[:-1]) + (" and " if len(lost) > 1 else "") + lost[-1]
    return ("yes; lost: " if kept else "**no**; lost: ") + said


SHARING = {"each message to one of them"}
SHARED = {
    "each message to one of them": "yes",
    "none delivered": "**no**: the subscription is granted, and nothing is ever delivered",
}
MQTT5 = {
    "accepted": "yes",
    "closed without CONNACK": "**no**: the connection is closed without a CONNACK",
    "refused (code 1)": "**no**: CONNACK 1 (unacceptable protocol version)",
}


def capability_table() -> str:
    """The capability table as docs/brokers.md shows it, rendered from `EXPECTED`."""
    columns = list(EXPECTED.values())
    rows = [
        ("QoS 1 (acknowledged, delivered at QoS 1)", [_yes(c.qos1) for c in columns]),
        (
            "Persistent session (clean_session = false)",
            [_yes(c.persistent_session) for c in columns],
        ),
        (
            "Queued messages and sessions survive a clean restart (SIGTERM)",
            [_restart(c.after_stop, c.shared in SHARING) for c in columns],
        ),
        (
            "Queued messages and sessions survive kill -9 of the broker",
            [_restart(c.after_kill, c.shared in SHARING) for c in columns],
        ),
        ("Retained status (flagged retained)", [_yes(c.retained) for c in columns]),
        ("Last will (connection cut)", [_yes(c.will) for c in columns]),
        ("Shared subscriptions (`$share/group/topic`)", [SHARED[c.shared] for c in columns]),
        (
            "In-flight window to one subscriber, default",
            [f"{c.inflight_default} (`{c.inflight_key}`)" for c in columns],
        ),
        (
            "In-flight window as configured here",
            [str(c.inflight_configured) for c in columns],
        ),
        ("MQTT 5", [MQTT5[c.mqtt5] for c in columns]),
    ]
    lines = [
        "| | " + " | ".join(c.title for c in columns) + " |",
        "|---|" + "---|" * len(columns),
        *("| " + name + " | " + " | ".join(cells) + " |" for name, cells in rows),
    ]
    return "\n".join(lines) + "\n"


def test_the_capability_table_in_the_docs_is_what_the_probes_measure() -> None:
    table = capability_table()
    assert table in DOC.read_text(encoding="utf-8"), (
        "docs/brokers.md's capability table differs from EXPECTED; it reads:\n" + table
    )
