"""Reading a broker's retained messages back, the way a client that just started sees them."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Sequence
from typing import Any

import aiomqtt

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
