"""What an MQTT broker does with what the pipeline relies on, measured with real clients.

Each probe talks to a broker on 127.0.0.1 with the pipeline's own client library
(aiomqtt over paho, MQTT 3.1.1 as `runtime.mqtt` speaks it) or, where the probe must
control the wire itself (a connection cut without DISCONNECT, a CONNECT in MQTT 5),
with a raw socket, and answers with what it saw. Every probe uses topics and client
ids of its own, so probes can share one broker.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import struct
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import aiomqtt
from tests.support.brokers import BrokerProcess

_fresh = itertools.count()
QUIET_S = 1.0  # no further message for this long: the broker has sent all it will


def fresh(what: str) -> str:
    """A topic level or client id no other probe uses."""
    return f"{what}-{os.getpid()}-{next(_fresh)}"


def client(
    port: int, identifier: str, *, clean_session: bool = True, **options: Any
) -> aiomqtt.Client:
    """An MQTT 3.1.1 client of the broker on 127.0.0.1:`port` (not yet connected)."""
    return aiomqtt.Client(
        "127.0.0.1", port, identifier=identifier, clean_session=clean_session, timeout=5, **options
    )


async def collect(
    subscriber: aiomqtt.Client,
    *,
    until: Callable[[list[aiomqtt.Message]], bool] = lambda _: False,
    quiet_s: float = QUIET_S,
    timeout_s: float = 20.0,
) -> list[aiomqtt.Message]:
    """Messages as they arrive, until `until(found)` holds or none came for `quiet_s`."""
    found: list[aiomqtt.Message] = []
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout_s):
            while not until(found):
                try:
                    message = await asyncio.wait_for(anext(subscriber.messages), quiet_s)
                except TimeoutError:
                    break
                found.append(message)
    return found


# --- the wire, for what a client library will not do ------------------------------------------


def _text(data: bytes) -> bytes:
    return struct.pack("!H", len(data)) + data


def _length(n: int) -> bytes:
    out = b""
    while True:
        digit, n = n % 128, n // 128
        out += bytes([digit | (0x80 if n else 0)])
        if not n:
            return out


def connect_packet(
    client_id: str, *, level: int = 4, will: tuple[str, bytes] | None = None
) -> bytes:
    """CONNECT (MQTT 3.1.1 = level 4, 5 = level 5), clean session, optionally a QoS 1 will."""
    flags = 0x02 | (0x04 | 0x08 if will else 0)
    header = _text(b"MQTT") + bytes([level, flags]) + struct.pack("!H", 60)
    if level == 5:
        header += b"\x00"  # no properties
    payload = _text(client_id.encode())
    if will:
        payload += (b"\x00" if level == 5 else b"") + _text(will[0].encode()) + _text(will[1])
    body = header + payload
    return b"\x10" + _length(len(body)) + body


@contextlib.asynccontextmanager
async def raw_connection(
    port: int,
) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        yield reader, writer
    finally:
        writer.transport.abort()


async def connack(reader: asyncio.StreamReader, timeout_s: float = 5.0) -> bytes | None:
    """The broker's CONNACK packet, or None when it closed the connection without one."""
    try:
        async with asyncio.timeout(timeout_s):
            first = await reader.readexactly(2)
            rest = await reader.readexactly(first[1])
    except asyncio.IncompleteReadError:
        return None
    assert first[0] == 0x20, f"not a CONNACK: {first!r}"
    return first + rest


# --- the probes ------------------------------------------------------------------------------


async def qos1_delivery(port: int) -> bool:
    """A QoS 1 publish is acknowledged and reaches a QoS 1 subscriber as QoS 1."""
    topic = f"probe/{fresh('qos1')}"
    async with client(port, fresh("sub")) as sub, client(port, fresh("pub")) as pub:
        await sub.subscribe(topic, qos=1)
        await pub.publish(topic, b"one", qos=1)
        found = await collect(sub, until=lambda f: len(f) >= 1)
    return [(m.qos, m.payload) for m in found] == [(1, b"one")]


async def persistent_session(port: int, count: int = 5) -> bool:
    """Messages published while a clean_session=false subscriber is away reach it, in order,
    when it reconnects (without subscribing again)."""
    topic, identifier = f"probe/{fresh('session')}", fresh("persistent")
    async with client(port, identifier, clean_session=False) as sub:
        await sub.subscribe(topic, qos=1)
    async with client(port, fresh("pub")) as pub:
        for i in range(count):
            await pub.publish(topic, str(i).encode(), qos=1)
    async with client(port, identifier, clean_session=False) as sub:
        found = await collect(sub, until=lambda f: len(f) >= count)
    async with client(port, identifier, clean_session=True):
        pass  # the session is dropped, not left behind on a shared broker
    return [m.payload for m in found] == [str(i).encode() for i in range(count)]


async def retained_status(port: int) -> bool:
    """A retained message reaches a later subscriber with its retain flag set."""
    topic = f"probe/{fresh('retained')}"
    async with client(port, fresh("pub")) as pub:
        await pub.publish(topic, b"online", qos=1, retain=True)
    async with client(port, fresh("sub")) as sub:
        await sub.subscribe(topic, qos=1)
        found = await collect(sub, until=lambda f: len(f) >= 1)
    async with client(port, fresh("pub")) as pub:
        await pub.publish(topic, b"", qos=1, retain=True)
    return [(m.payload, m.retain) for m in found] == [(b"online", True)]


async def last_will(port: int) -> bool:
    """A client's will is published when its connection breaks without a DISCONNECT."""
    topic = f"probe/{fresh('will')}"
    async with client(port, fresh("sub")) as sub:
        await sub.subscribe(topic, qos=1)
        async with raw_connection(port) as (reader, writer):
            writer.write(connect_packet(fresh("dies"), will=(topic, b"offline")))
            answer = await connack(reader)
            assert answer is not None and answer[-1] == 0, f"connection refused: {answer!r}"
        # leaving the block aborts the TCP connection: no DISCONNECT was sent
        found = await collect(sub, until=lambda f: len(f) >= 1, quiet_s=5)
    return [m.payload for m in found] == [b"offline"]


async def mqtt5(port: int) -> str:
    """What a broker answers to an MQTT 5 CONNECT: "accepted", "refused (code N)" or
    "closed without CONNACK"."""
    async with raw_connection(port) as (reader, writer):
        writer.write(connect_packet(fresh("v5"), level=5))
        answer = await connack(reader)
    if answer is None:
        return "closed without CONNACK"
    code = answer[3]
    return "accepted" if code == 0 else f"refused (code {code})"


async def shared_subscription(port: int, count: int = 20) -> str:
    """Two subscribers of `$share/<group>/<topic>`: "each message to one of them",
    "each message to both", "none delivered", or "refused"."""
    topic, group = f"probe/{fresh('shared')}", fresh("group")
    async with (
        client(port, fresh("a")) as a,
        client(port, fresh("b")) as b,
        client(port, fresh("pub")) as pub,
    ):
        for sub in (a, b):
            granted = await sub.subscribe(f"$share/{group}/{topic}", qos=1)
            if any(getattr(code, "is_failure", False) for code in granted):
                return "refused"
        for i in range(count):
            await pub.publish(topic, str(i).encode(), qos=1)
        got_a, got_b = await asyncio.gather(collect(a), collect(b))
    payloads = sorted(m.payload for m in [*got_a, *got_b] if isinstance(m.payload, bytes))
    sent = sorted(str(i).encode() for i in range(count))
    if not payloads:
        return "none delivered"
    if payloads == sent and got_a and got_b:
        return "each message to one of them"
    if payloads == sorted(sent * 2):
        return "each message to both"
    return f"{len(payloads)} of {count} delivered"


@dataclass(frozen=True)
class Window:
    """How many unacknowledged QoS 1 messages the broker let out to one subscriber."""

    unacknowledged: int
    delivered_in_all: int  # after acknowledging everything: nothing may be missing
    published: int


async def inflight_window(port: int, published: int) -> Window:
    """Publish `published` QoS 1 messages to a subscriber that acknowledges none of them
    (manual acknowledgement, as the bridge does); count what arrives; then acknowledge as
    they come and count that every message arrives."""
    topic = f"probe/{fresh('inflight')}"
    sub = client(port, fresh("holder"), max_inflight_messages=published)
    sub._client.manual_ack_set(True)  # the bridge acknowledges only what it has recorded
    async with sub, client(port, fresh("pub"), max_inflight_messages=published) as pub:
        pub.pending_calls_threshold = 10 * published  # a flood of publishes is the point
        await sub.subscribe(topic, qos=1)
        await asyncio.gather(*(pub.publish(topic, b"%d" % i, qos=1) for i in range(published)))
        # every message is at the broker already: what it holds back, it holds back
        held = await collect(sub, until=lambda f: len(f) >= published, quiet_s=2 * QUIET_S)
        for message in held:
            sub._client.ack(message.mid, message.qos)
        seen = {m.payload for m in held}
        with contextlib.suppress(TimeoutError):
            while len(seen) < published:  # the rest, each acknowledged as it comes
                message = await asyncio.wait_for(anext(sub.messages), QUIET_S)
                sub._client.ack(message.mid, message.qos)
                seen.add(message.payload)
    return Window(len(held), len(seen), published)


@dataclass(frozen=True)
class AfterRestart:
    """What a persistent subscriber finds after the broker stopped and started again."""

    queued: int  # of the messages queued for it before the restart (acknowledged to the sender)
    session: bool  # its subscription survived: a message published after the restart arrives
    retained: bool  # a retained message published before the restart is still retained
    shared: bool  # the same for an absent member of a shared subscription (`$share/...`)


async def _publish_when_up(port: int, topic: str, payload: bytes, retain: bool = False) -> None:
    async with client(port, fresh("pub")) as pub:
        await pub.publish(topic, payload, qos=1, retain=retain)


async def restart(broker: BrokerProcess, how: str, queued: int = 20) -> AfterRestart:
    """Queue `queued` messages for an absent persistent subscriber and retain one message,
    stop the broker (`how`: "stop" for a clean stop, "kill" for kill -9), start it, publish
    one message more, and see what the subscriber, an absent member of a shared
    subscription to the same topic, and a fresh reader get."""
    port = broker.port
    topic, status = f"probe/{fresh('queued')}", f"probe/{fresh('status')}"
    identifier, member = fresh("away"), fresh("member")
    async with client(port, identifier, clean_session=False) as sub:
        await sub.subscribe(topic, qos=1)
    async with client(port, member, clean_session=False) as sub:
        await sub.subscribe(f"$share/{fresh('group')}/{topic}", qos=1)
    async with client(port, fresh("pub")) as pub:
        for i in range(queued):
            await pub.publish(topic, b"%d" % i, qos=1)  # each acknowledged by the broker
        await pub.publish(status, b"online", qos=1, retain=True)
    await asyncio.to_thread(broker.stop if how == "stop" else broker.kill)
    await asyncio.to_thread(broker.start)
    await _publish_when_up(port, topic, b"after")
    async with client(port, identifier, clean_session=False) as sub:
        found = await collect(sub, until=lambda f: any(m.payload == b"after" for m in f))
    async with client(port, member, clean_session=False) as sub:
        shared = await collect(sub, until=lambda f: any(m.payload == b"after" for m in f))
    async with client(port, fresh("reader")) as reader:
        await reader.subscribe(status, qos=1)
        kept = await collect(reader, until=lambda f: len(f) >= 1)
    payloads = [m.payload for m in found]
    return AfterRestart(
        queued=sum(1 for i in range(queued) if b"%d" % i in payloads),
        session=b"after" in payloads,
        retained=[(m.payload, m.retain) for m in kept] == [(b"online", True)],
        shared=b"after" in [m.payload for m in shared],
    )
