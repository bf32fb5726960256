"""The MQTT channel: each alert's state, retained, for dashboards and Home Assistant.

A notice is published (QoS 1, retained) at `<mqtt.topic_prefix>/alerts/<rule>/<subject>` as
`{"state": "firing"|"resolved", "event", "severity", "since", "at", "value", "detail",
"rule", "kind", "scope", "subject", "site"}`: `at` is the transition's time, `since` when
the state began (a re-notify republishes "firing" and keeps the firing's `since` when this
process saw it; else null). With `homeassistant_discovery`, a retained discovery config of
a `binary_sensor` (device class "problem", ON while firing) comes first, once per alert per
connection, under `<mqtt.homeassistant_prefix>/binary_sensor/campus_energy_alerts/<object>/config`;
all alerts of the site are one device.

One connection (client id `<alerts.client_id>-notify`), opened on the first send and
again on the next send after a failure; every failure is a `DeliveryError`.
Topic levels are made safe: a building name may hold '/', '+', '#' or spaces.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import re
from typing import Any

from campus_energy import __version__
from campus_energy.config import MqttConfig
from campus_energy.core.timestamps import iso_utc
from campus_energy.errors import BrokerError
from campus_energy.incidents.values import DeliveryError, Notice
from campus_energy.runtime.mqtt import Broker, connect

STATES = {"firing": "firing", "renotify": "firing", "resolved": "resolved"}  # event -> state
NODE = "campus_energy_alerts"
_SAFE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def topic_part(text: str) -> str:
    """`text` as one safe topic level and HA object id: ids stay as they are; anything else
    becomes [a-z0-9_-] plus a short hash of the original, so two names never share one."""
    if _SAFE.match(text):
        return text
    slug = re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")[:48] or "x"
    return f"{slug}-{hashlib.sha256(text.encode()).hexdigest()[:6]}"


def state_topic(prefix: str, rule: str, subject: str) -> str:
    return f"{prefix}/alerts/{topic_part(rule)}/{topic_part(subject)}"


def discovery_topic(ha_prefix: str, rule: str, subject: str) -> str:
    return f"{ha_prefix}/binary_sensor/{NODE}/{topic_part(rule)}__{topic_part(subject)}/config"


def state_document(notice: Notice, since_ms: int | None) -> dict[str, Any]:
    t = notice.transition
    return {
        "state": STATES[t.event],
        "event": t.event,
        "severity": t.severity,
        "since": None if since_ms is None else iso_utc(since_ms),
        "at": iso_utc(t.at_ms),
        "value": t.value,
        "detail": t.detail,
        "rule": t.rule,
        "kind": notice.kind,
        "scope": notice.scope,
        "subject": t.subject,
        "site": notice.site,
    }


def discovery_document(notice: Notice, topic: str) -> dict[str, Any]:
    """The Home Assistant config of the alert's binary sensor (ON while firing)."""
    t = notice.transition
    site = topic_part(notice.site)
    return {
        "name": f"{t.rule} {t.subject}",
        "unique_id": f"{NODE}_{site}_{topic_part(t.rule)}__{topic_part(t.subject)}",
        "state_topic": topic,
        "value_template": "{{ 'ON' if value_json.state == 'firing' else 'OFF' }}",
        "payload_on": "ON",
        "payload_off": "OFF",
        "json_attributes_topic": topic,
        "device_class": "problem",
        "qos": 1,
        "device": {
            "identifiers": [f"{NODE}_{site}"],
            "name": f"Campus Energy alerts ({notice.site})",
            "manufacturer": "Campus Energy",
            "model": "alerts",
            "sw_version": __version__,
        },
        "origin": {"name": "campus-energy", "sw_version": __version__},
    }


class MqttChannel:
    """Publishes alert states on the service's broker; see the module's docstring."""

    def __init__(
        self, name: str, mqtt: MqttConfig, *, client_id: str, discovery: bool = False
    ) -> None:
        self.name = name
        self.mqtt = mqtt
        self.client_id = client_id
        self.discovery = discovery
        self._stack: contextlib.AsyncExitStack | None = None
        self._broker: Broker | None = None
        self._announced: set[tuple[str, str]] = set()  # discovery sent on this connection
        self._since: dict[tuple[str, str], int] = {}  # firing since, as seen by this process

    @property
    def endpoint(self) -> str:
        return f"{self.mqtt.host}:{self.mqtt.port}"

    async def send(self, notice: Notice) -> None:
        t = notice.transition
        alert = (t.rule, t.subject)
        since = self._since.get(alert) if t.event == "renotify" else t.at_ms
        topic = state_topic(self.mqtt.topic_prefix, t.rule, t.subject)
        try:
            broker = await self._connected()
            if self.discovery and alert not in self._announced:
                config_topic = discovery_topic(self.mqtt.homeassistant_prefix, *alert)
                await broker.publish(config_topic, discovery_document(notice, topic), retain=True)
                self._announced.add(alert)
            await broker.publish(topic, state_document(notice, since), retain=True)
        except BrokerError as exc:
            await self.close()
            raise DeliveryError(f"mqtt channel {self.name}: {exc}") from None
        if t.event == "firing":
            self._since[alert] = t.at_ms
        elif t.event == "resolved":
            self._since.pop(alert, None)

    async def close(self) -> None:
        """Disconnect (the next send connects again)."""
        stack, broker = self._stack, self._broker
        self._stack, self._broker = None, None
        self._announced.clear()
        if stack is not None:
            with contextlib.suppress(BrokerError):
                await stack.aclose()
        if broker is not None:
            _lost(broker)  # read what the connection ended with

    @property
    def connected(self) -> bool:
        """Whether the connection is open, as far as the client has noticed."""
        return self._broker is not None and not _lost(self._broker)

    async def _connected(self) -> Broker:
        if self._broker is not None and _lost(self._broker):
            await self.close()  # the broker went away meanwhile: connect afresh
        if self._broker is None:
            stack = contextlib.AsyncExitStack()
            self._broker = await stack.enter_async_context(
                connect(self.mqtt, client_id=self.client_id)
            )
            self._stack = stack
        return self._broker


def _lost(broker: Broker) -> bool:
    """Whether the client has seen its connection drop. aiomqtt keeps that in a future it
    leaves unread when the broker went away; reading it here also keeps asyncio from
    reporting it as "never retrieved"."""
    gone: asyncio.Future[None] = broker.client._disconnected
    if not gone.done():
        return False
    if not gone.cancelled():
        gone.exception()
    return True
