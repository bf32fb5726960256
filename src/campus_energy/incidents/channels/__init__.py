"""The notification channels of `[[alerts.channels]]`, built from the configuration.

`FACTORIES` is the table kind -> factory; each channel takes its secret from
`config.channel_secret(name)`. `open_channels` builds them all (nothing connects until the
first send), `max_attempts` says how often the outbox tries each before it dead-letters a
notice (None: until delivered), and `email_channel` is the mail channel a report is sent on.
"""

from __future__ import annotations

from collections.abc import Callable

from campus_energy.config import Config
from campus_energy.config.alerts import ChannelConfig
from campus_energy.incidents.channels.email import EmailChannel
from campus_energy.incidents.channels.mqtt import MqttChannel
from campus_energy.incidents.channels.webhook import WebhookChannel
from campus_energy.incidents.values import Channel

__all__ = [
    "FACTORIES",
    "EmailChannel",
    "MqttChannel",
    "WebhookChannel",
    "email_channel",
    "max_attempts",
    "open_channels",
]


def _email(channel: ChannelConfig, config: Config) -> EmailChannel:
    assert channel.host is not None and channel.sender is not None  # checked by the config
    return EmailChannel(
        channel.name,
        host=channel.host,
        port=channel.smtp_port,
        security=channel.security,
        sender=channel.sender,
        recipients=channel.recipients,
        username=channel.username,
        password=config.channel_secret(channel.name),
        timeout_s=channel.timeout_s,
        ca_file=channel.ca_file,
    )


def _webhook(channel: ChannelConfig, config: Config) -> WebhookChannel:
    assert channel.url is not None  # checked by the config
    return WebhookChannel(
        channel.name,
        url=channel.url,
        secret=config.channel_secret(channel.name),
        timeout_s=channel.timeout_s,
        ca_file=channel.ca_file,
    )


def _mqtt(channel: ChannelConfig, config: Config) -> MqttChannel:
    return MqttChannel(
        channel.name,
        config.mqtt,
        client_id=f"{config.alerts.client_id}-notify",
        discovery=channel.homeassistant_discovery,
    )


FACTORIES: dict[str, Callable[[ChannelConfig, Config], Channel]] = {
    "email": _email,
    "webhook": _webhook,
    "mqtt": _mqtt,
}
# kind -> how many attempts before a notice is dead-lettered (None: until delivered)
ATTEMPTS: dict[str, Callable[[ChannelConfig], int | None]] = {
    "email": lambda channel: None,
    "webhook": lambda channel: channel.max_attempts,
    "mqtt": lambda channel: None,
}


def open_channels(config: Config) -> dict[str, Channel]:
    """Every configured channel by name (closed with `await channel.close()`)."""
    return {c.name: FACTORIES[c.kind](c, config) for c in config.alerts.channels}


def max_attempts(config: Config) -> dict[str, int | None]:
    """Each channel's attempts before the outbox gives a notice up (None: never)."""
    return {c.name: ATTEMPTS[c.kind](c) for c in config.alerts.channels}


def email_channel(config: Config, name: str) -> EmailChannel:
    """The e-mail channel `name` (a report's `channel`); KeyError when there is none."""
    for channel in config.alerts.channels:
        if channel.name == name and channel.kind == "email":
            return _email(channel, config)
    raise KeyError(name)
