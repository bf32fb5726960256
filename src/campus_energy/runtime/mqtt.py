"""MQTT over aiomqtt (paho-mqtt 2): connecting with credentials, TLS and a last will.

Every aiomqtt failure becomes a `BrokerError` naming the broker (never the
password); a failed connection says why with a subclass (refused, credentials,
TLS, timeout). The password is read from `mqtt.password_file` when connecting.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiomqtt
from aiomqtt.exceptions import MqttConnectError

from campus_energy.config import MqttConfig
from campus_energy.errors import (
    BrokerAuthError,
    BrokerError,
    BrokerRefusedError,
    BrokerTimeoutError,
    BrokerTLSError,
)

# CONNACK codes for refused credentials: MQTT 3.1.1 (4, 5) and MQTT 5 (134, 135).
AUTH_REFUSED_CODES = frozenset({4, 5, 134, 135})


def _password(config: MqttConfig) -> str | None:
    if config.password_file is None:
        return None
    try:
        return config.password_file.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise BrokerError(f"cannot read mqtt.password_file: {exc.strerror}") from None


def _tls(config: MqttConfig) -> aiomqtt.TLSParameters | None:
    if config.tls_ca_file is None and config.tls_cert_file is None:
        return None
    return aiomqtt.TLSParameters(
        ca_certs=str(config.tls_ca_file) if config.tls_ca_file else None,
        certfile=str(config.tls_cert_file) if config.tls_cert_file else None,
        keyfile=str(config.tls_key_file) if config.tls_key_file else None,
        cert_reqs=ssl.CERT_REQUIRED,
    )


def _connect_error(endpoint: str, action: str, exc: aiomqtt.MqttError, *, tls: bool) -> BrokerError:
    """The `BrokerError` type that says why a connection attempt failed."""
    # aiomqtt re-raises socket, TLS and timeout errors as a plain MqttError inside its
    # `except` clause, so the original error is the context of `exc`.
    cause = exc.__context__
    kind: type[BrokerError] = BrokerError
    if isinstance(exc, MqttConnectError):  # a negative CONNACK
        if getattr(exc.rc, "value", exc.rc) in AUTH_REFUSED_CODES:
            kind = BrokerAuthError
    elif isinstance(cause, ssl.SSLError):
        kind = BrokerTLSError
    elif tls and isinstance(cause, ConnectionResetError | FileNotFoundError | PermissionError):
        kind = BrokerTLSError  # a handshake cut short (a port without TLS), or unreadable files
    elif isinstance(cause, ConnectionRefusedError):
        kind = BrokerRefusedError
    elif isinstance(cause, TimeoutError):
        kind = BrokerTimeoutError
    return kind(f"broker {endpoint}: {action}: {exc}")


def encode(document: dict[str, Any]) -> bytes:
    """Compact JSON, as published."""
    return json.dumps(document, separators=(",", ":"), allow_nan=False).encode()


class Broker:
    """A connected MQTT session."""

    def __init__(self, client: aiomqtt.Client, endpoint: str) -> None:
        self.client = client
        self.endpoint = endpoint

    async def publish(
        self, topic: str, document: dict[str, Any], *, qos: int = 1, retain: bool = False
    ) -> None:
        """Publish and, for QoS 1, wait for the broker's acknowledgement."""
        try:
            await self.client.publish(topic, encode(document), qos=qos, retain=retain)
        except aiomqtt.MqttError as exc:
            raise BrokerError(f"broker {self.endpoint}: publish failed: {exc}") from None

    async def clear_retained(self, topic: str) -> None:
        """Delete the retained message of `topic` (an empty retained payload, QoS 1)."""
        try:
            await self.client.publish(topic, b"", qos=1, retain=True)
        except aiomqtt.MqttError as exc:
            raise BrokerError(f"broker {self.endpoint}: publish failed: {exc}") from None


def _client(
    config: MqttConfig,
    *,
    client_id: str,
    clean_session: bool,
    max_inflight: int,
    timeout_s: float,
    will: aiomqtt.Will | None = None,
) -> aiomqtt.Client:
    """An aiomqtt client for the configured broker, credentials and TLS (not yet connected)."""
    return aiomqtt.Client(
        config.host,
        config.port,
        username=config.username,
        password=_password(config),
        identifier=client_id,
        will=will,
        clean_session=clean_session,
        keepalive=config.keepalive_s,
        timeout=timeout_s,
        tls_params=_tls(config),
        max_inflight_messages=max_inflight,
    )


@asynccontextmanager
async def connect(
    config: MqttConfig,
    *,
    client_id: str,
    will: tuple[str, dict[str, Any]] | None = None,
    clean_session: bool = True,
    max_inflight: int = 100,
    timeout_s: float = 10.0,
) -> AsyncIterator[Broker]:
    """Connect to the configured broker; raises BrokerError when it is unreachable or refuses."""
    endpoint = f"{config.host}:{config.port}"
    client = _client(
        config,
        client_id=client_id,
        clean_session=clean_session,
        max_inflight=max_inflight,
        timeout_s=timeout_s,
        will=aiomqtt.Will(will[0], encode(will[1]), qos=1, retain=True) if will else None,
    )
    client.pending_calls_threshold = 10 * max_inflight  # batches of QoS 1 publishes are normal
    try:
        await client.__aenter__()
    except aiomqtt.MqttError as exc:
        raise _connect_error(
            endpoint, "cannot connect", exc, tls=_tls(config) is not None
        ) from None
    try:
        yield Broker(client, endpoint)
    finally:
        with contextlib.suppress(aiomqtt.MqttError):  # already gone: nothing left to close
            await client.__aexit__(None, None, None)


@dataclass(frozen=True)
class Received:
    """A message as the subscriber receives it; acknowledge it with `Subscription.ack`."""

    topic: str
    payload: bytes
    mid: int
    qos: int


class Subscription:
    """A subscribed session whose QoS 1 messages are acknowledged only when the caller says so."""

    def __init__(self, client: aiomqtt.Client, endpoint: str) -> None:
        self.client = client
        self.endpoint = endpoint
        self._waiting: asyncio.Task[aiomqtt.Message] | None = None  # the next message, awaited

    async def next(self, timeout_s: float | None = None) -> Received | None:
        """The next message, or None when `timeout_s` passes first.

        Safe to time out or cancel: the wait goes on in the background and its
        message is the next one returned, so none is taken from the queue and dropped.
        """
        if self._waiting is None:
            self._waiting = asyncio.ensure_future(anext(self.client.messages))
        done, _ = await asyncio.wait({self._waiting}, timeout=timeout_s)
        if not done:
            return None
        task, self._waiting = self._waiting, None
        try:
            message = task.result()
        except aiomqtt.MqttError as exc:
            raise BrokerError(f"broker {self.endpoint}: {exc}") from None
        payload = message.payload
        raw = payload if isinstance(payload, bytes) else str(payload or "").encode()
        return Received(str(message.topic), raw, message.mid, message.qos)

    async def batch(self, limit: int) -> list[Received]:
        """Wait for the next message, then take whatever else has already arrived (≤ limit)."""
        found = [await self._take()]
        while len(found) < limit and (self._waiting is not None or len(self.client.messages)):
            if self._waiting is not None and not self._waiting.done():
                break
            found.append(await self._take())
        return found

    async def _take(self) -> Received:
        message = await self.next()
        assert message is not None  # no timeout
        return message

    def close(self) -> None:
        """Stop waiting for a message (one already taken is redelivered in the next session)."""
        if self._waiting is not None:
            self._waiting.cancel()
            self._waiting = None

    def ack(self, message: Received) -> None:
        """Tell the broker the message is durably recorded (QoS ≥ 1)."""
        if message.qos > 0:
            # aiomqtt does not wrap paho's manual acknowledgement; its paho client does it.
            self.client._client.ack(message.mid, message.qos)


@asynccontextmanager
async def subscribe(
    config: MqttConfig,
    *,
    client_id: str,
    topics: list[str],
    clean_session: bool = False,
    max_inflight: int = 100,
    timeout_s: float = 10.0,
) -> AsyncIterator[Subscription]:
    """A persistent QoS 1 session on `topics` with manual acknowledgement."""
    endpoint = f"{config.host}:{config.port}"
    client = _client(
        config,
        client_id=client_id,
        clean_session=clean_session,
        max_inflight=max_inflight,
        timeout_s=timeout_s,
    )
    client._client.manual_ack_set(True)  # acknowledge only what is durably recorded
    try:
        await client.__aenter__()
        for topic in topics:
            await client.subscribe(topic, qos=1)
    except aiomqtt.MqttError as exc:
        with contextlib.suppress(aiomqtt.MqttError):
            await client.__aexit__(None, None, None)
        raise _connect_error(
            endpoint, "cannot subscribe", exc, tls=_tls(config) is not None
        ) from None
    subscription = Subscription(client, endpoint)
    try:
        yield subscription
    finally:
        subscription.close()
        with contextlib.suppress(aiomqtt.MqttError):
            await client.__aexit__(None, None, None)
