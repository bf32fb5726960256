"""MQTT for the tests: a private Mosquitto, a persistent subscriber, retained messages read back."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import aiomqtt
from tests.support.net import free_port
from tests.support.processes import require_program

from campus_energy.demo.mosquitto import Mosquitto, mosquitto_executable


def require_mosquitto() -> None:
    """Skip the test when no Mosquitto is installed (fail it under CI)."""
    if mosquitto_executable() is None:
        require_program("mosquitto")


@contextlib.contextmanager
def running_mosquitto(folder: Path, **options: Any) -> Iterator[Mosquitto]:
    """The demo's Mosquitto on a free port, persisting in `folder`, stopped cleanly after."""
    require_mosquitto()
    broker = Mosquitto(folder, free_port(), **options)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


class Collector:
    """A QoS 1 subscriber with a persistent session that reconnects by itself."""

    def __init__(
        self, port: int, topic: str = "campus/energy/#", client_id: str = "collector"
    ) -> None:
        self.port = port
        self.topic = topic
        self.client_id = client_id
        self.messages: list[tuple[str, Any, bool]] = []  # topic, payload, retained
        self.subscribed: asyncio.Event | None = None  # made inside the loop
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Collector:
        self.subscribed = asyncio.Event()
        self._task = asyncio.create_task(self._run())
        await asyncio.wait_for(self.subscribed.wait(), 10)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def _run(self) -> None:
        while True:
            try:
                async with aiomqtt.Client(
                    "127.0.0.1", self.port, identifier=self.client_id, clean_session=False
                ) as client:
                    await client.subscribe(self.topic, qos=1)
                    assert self.subscribed is not None
                    self.subscribed.set()
                    async for message in client.messages:
                        payload = json.loads(bytes(message.payload))  # type: ignore[arg-type]
                        self.messages.append((str(message.topic), payload, message.retain))
            except aiomqtt.MqttError:
                await asyncio.sleep(0.1)

    def readings(self) -> list[dict[str, Any]]:
        return [p for t, p, _ in self.messages if t.endswith("/reading")]

    def statuses(self, topic_suffix: str) -> list[str]:
        return [p["state"] for t, p, _ in self.messages if t.endswith(topic_suffix)]


_fresh = itertools.count()


async def retained_messages(
    port: int, topic_filters: str | Sequence[str], sentinel_topic: str, **client: Any
) -> dict[str, bytes]:
    """Every retained message under `topic_filters`, as a fresh client receives them.

    The broker sends the retained messages of a subscription before it handles the
    client's next packet, so a message this client publishes to `sentinel_topic`
    (inside a filter) after subscribing arrives after all of them: the end marker.
    """
    filters = [topic_filters] if isinstance(topic_filters, str) else list(topic_filters)
    found: dict[str, bytes] = {}
    async with aiomqtt.Client(
        "127.0.0.1", port, identifier=f"retained-reader-{next(_fresh)}", **client
    ) as reader:
        for topic_filter in filters:
            granted = await reader.subscribe(topic_filter, qos=1)
            assert not any(getattr(code, "is_failure", False) for code in granted), topic_filter
        await reader.publish(sentinel_topic, b"end", qos=1)
        async with asyncio.timeout(10):
            async for message in reader.messages:
                topic = str(message.topic)
                if topic == sentinel_topic and not message.retain:
                    break
                if message.retain:
                    payload = message.payload
                    found[topic] = payload if isinstance(payload, bytes) else str(payload).encode()
    return found
