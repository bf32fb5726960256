"""What the book holds and the channels send: plain frozen values."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from campus_energy.core.alerts import Transition


@dataclass(frozen=True)
class Notice:
    """A transition as people are told of it."""

    transition: Transition
    kind: str  # the rule's kind (core.alerts.KINDS)
    scope: str  # the rule's scope as configured ("building:ECE")
    site: str  # the site's name

    @property
    def key(self) -> str:
        return self.transition.key

    @property
    def subject_line(self) -> str:
        """One line: '[FIRING warning] meter-silent ece-f1-001 — Example Campus'."""
        t = self.transition
        return f"[{t.event.upper()} {t.severity}] {t.rule} {t.subject} — {self.site}"


@dataclass(frozen=True)
class Delivery:
    """One notice due on one channel (a row of the outbox)."""

    id: int
    channel: str
    notice: Notice
    attempts: int  # failed attempts so far
    created_ms: int


@dataclass(frozen=True)
class AlertRow:
    """An alert as people list it: its state and its rule's kind and scope."""

    rule: str
    subject: str
    kind: str
    scope: str
    phase: str  # pending | firing | resolved | inactive
    severity: str
    since_ms: int
    fired_ms: int | None
    value: float | None
    detail: str
    acked_ms: int | None
    acked_by: str | None
    silenced_until_ms: int | None


@dataclass(frozen=True)
class HistoryRow:
    """A transition as it was recorded (suppressed ones too)."""

    rule: str
    subject: str
    kind: str
    scope: str
    event: str  # firing | renotify | resolved
    at_ms: int
    severity: str
    value: float | None
    detail: str
    suppressed: bool


class DeliveryError(Exception):
    """A channel could not deliver now; the outbox tries again later (with back-off).

    The message names the channel and the endpoint, never a credential."""


class DeliveryRefused(DeliveryError):
    """A channel refused the notice for good (a 4xx answer, a rejected recipient): retrying
    would not help, so the delivery is dead-lettered at once."""


class Channel(Protocol):
    name: str

    async def send(self, notice: Notice) -> None:
        """Deliver the notice; raises DeliveryError (retry) or DeliveryRefused (give up)."""
        ...

    async def close(self) -> None: ...
