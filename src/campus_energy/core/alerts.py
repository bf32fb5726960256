"""Alerts: rules, what an evaluation finds, and the lifecycle of an alert.

A rule (`Rule`) watches a scope — the campus, a building, a meter or a virtual meter. An
evaluation turns what the service has observed (`Observations`) into one `Finding` per
subject: for the per-meter kinds (`PER_METER`) each meter of the scope is a subject of its
own, for the others the scope's total is. `advance` moves one alert (rule, subject) through
its lifecycle and says when a notification is due:

    inactive ──holds──▶ pending ──held `for`──▶ firing ──false `clear_after`──▶ resolved
                 ◀──false──┘                     │ ▲                                  │
                                                 └─┘ renotify every `renotify_s`       │
                                                     (not once acknowledged)    holds ─┘

One notification per transition (firing, renotify, resolved). While an alert is silenced
its firings and re-notifications are recorded but not sent; a firing that was never sent is
sent when the silence ends (if it still fires). A resolution is sent exactly when its firing
was, silenced or not, so nothing that was told "firing" is left without its end.
Pure: time comes in as `now_ms`, values go out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

KINDS = (
    "meter-silent",
    "coverage-low",
    "after-hours",
    "baseline-deviation",
    "demand-approaching",
    "register-drift",
)
PER_METER = frozenset({"meter-silent", "coverage-low", "register-drift"})  # a subject per meter
SEVERITIES = ("info", "warning", "critical")
SCOPE_KINDS = ("campus", "building", "meter")
PHASES = ("inactive", "pending", "firing", "resolved")
EVENTS = ("firing", "renotify", "resolved")
CAMPUS = "campus"  # the subject of a campus-wide total


@dataclass(frozen=True)
class Scope:
    """`campus`, `building:<name>` or `meter:<id>` (a meter or a virtual meter)."""

    kind: str
    name: str = ""

    @classmethod
    def parse(cls, text: str) -> Scope:
        """Raises ValueError naming what is wrong."""
        kind, sep, name = text.strip().partition(":")
        if kind == "campus" and not sep:
            return cls("campus")
        if kind in ("building", "meter") and sep and name.strip():
            return cls(kind, name.strip())
        raise ValueError(f"must be 'campus', 'building:<name>' or 'meter:<id>', got {text[:80]!r}")

    def __str__(self) -> str:
        return self.kind if self.kind == "campus" else f"{self.kind}:{self.name}"


@dataclass(frozen=True)
class Rule:
    name: str
    kind: str  # one of KINDS
    scope: Scope
    for_s: float = 0.0  # the condition holds this long before the alert fires
    clear_after_s: float = 0.0  # ... and is false this long before it resolves
    severity: str = "warning"
    channels: tuple[str, ...] = ()
    renotify_s: float = 0.0  # 0: a firing alert is notified once
    params: Mapping[str, Any] = field(default_factory=dict)  # the kind's own keys


@dataclass(frozen=True)
class Finding:
    """One subject's condition at one evaluation."""

    subject: str  # a meter id, a building, a virtual meter's id, or CAMPUS
    holds: bool
    value: float | None = None  # the measured figure (seconds silent, kW, kWh, %, coverage)
    detail: str = ""  # in words, for people: "no reading for 6 min (status offline)"
    since_ms: int | None = None  # when the condition began, when known (else: now)


@dataclass(frozen=True)
class AlertState:
    """Where one alert (rule, subject) stands; what the service persists."""

    rule: str
    subject: str
    phase: str  # one of PHASES
    since_ms: int  # the current phase began
    holds_since_ms: int | None = None  # the condition has held without a break since
    clear_since_ms: int | None = None  # while firing: the condition has been false since
    fired_ms: int | None = None  # the last firing began
    notified_ms: int | None = None  # the last notification of this firing was sent
    value: float | None = None
    detail: str = ""
    severity: str = "warning"
    acked_ms: int | None = None
    acked_by: str | None = None
    silenced_until_ms: int | None = None

    def silenced(self, now_ms: int) -> bool:
        return self.silenced_until_ms is not None and now_ms < self.silenced_until_ms


@dataclass(frozen=True)
class Transition:
    """A change worth telling people: what is notified (unless `suppressed`: silenced)."""

    rule: str
    subject: str
    event: str  # one of EVENTS
    at_ms: int
    severity: str
    value: float | None
    detail: str
    suppressed: bool = False

    @property
    def key(self) -> str:
        """Unique and stable: the notification's id on every channel (Message-ID, webhook
        idempotency key), so a delivery retried after a crash is recognisable."""
        return f"{self.rule}/{self.subject}/{self.event}/{self.at_ms}"


def advance(
    rule: Rule, state: AlertState | None, finding: Finding, now_ms: int
) -> tuple[AlertState | None, Transition | None]:
    """The alert's next state and the transition to notify, if any."""
    phase = "inactive" if state is None else state.phase
    base = state or AlertState(rule.name, finding.subject, "inactive", now_ms)
    seen = replace(base, value=finding.value, detail=finding.detail, severity=rule.severity)
    if phase in ("inactive", "resolved"):
        if not finding.holds:
            return state, None
        onset = min(now_ms, finding.since_ms if finding.since_ms is not None else now_ms)
        pending = replace(
            seen, phase="pending", since_ms=now_ms, holds_since_ms=onset, clear_since_ms=None
        )
        return _maybe_fire(rule, pending, now_ms)
    if phase == "pending":
        if not finding.holds:
            return replace(seen, phase="inactive", since_ms=now_ms, holds_since_ms=None), None
        return _maybe_fire(rule, seen, now_ms)
    # firing
    if finding.holds:
        steady = replace(seen, clear_since_ms=None)
        return _maybe_renotify(rule, steady, now_ms)
    clear_since = base.clear_since_ms if base.clear_since_ms is not None else now_ms
    clearing = replace(seen, clear_since_ms=clear_since)
    if now_ms - clear_since < rule.clear_after_s * 1000:
        return clearing, None
    was_sent = base.notified_ms is not None
    resolved = replace(
        clearing,
        phase="resolved",
        since_ms=now_ms,
        holds_since_ms=None,
        clear_since_ms=None,
        acked_ms=None,
        acked_by=None,
    )
    # a resolution is told when its firing was, silence or not (a retained MQTT state, an
    # open ticket must not stay "firing"); one whose firing was never told stays quiet
    suppressed = not was_sent
    return resolved, _transition(rule, resolved, "resolved", now_ms, suppressed)


def _maybe_fire(
    rule: Rule, pending: AlertState, now_ms: int
) -> tuple[AlertState, Transition | None]:
    assert pending.holds_since_ms is not None
    if now_ms - pending.holds_since_ms < rule.for_s * 1000:
        return pending, None
    silenced = pending.silenced(now_ms)
    firing = replace(
        pending,
        phase="firing",
        since_ms=now_ms,
        fired_ms=now_ms,
        notified_ms=None if silenced else now_ms,
        acked_ms=None,
        acked_by=None,
    )
    return firing, _transition(rule, firing, "firing", now_ms, silenced)


def _maybe_renotify(
    rule: Rule, firing: AlertState, now_ms: int
) -> tuple[AlertState, Transition | None]:
    if firing.silenced(now_ms):
        return firing, None
    if firing.notified_ms is None:  # fired while silenced: tell now that the silence is over
        sent = replace(firing, notified_ms=now_ms)
        return sent, _transition(rule, sent, "firing", now_ms, False)
    due = rule.renotify_s > 0 and now_ms - firing.notified_ms >= rule.renotify_s * 1000
    if not due or firing.acked_ms is not None:
        return firing, None
    sent = replace(firing, notified_ms=now_ms)
    return sent, _transition(rule, sent, "renotify", now_ms, False)


def _transition(
    rule: Rule, state: AlertState, event: str, now_ms: int, suppressed: bool
) -> Transition:
    return Transition(
        rule.name, state.subject, event, now_ms, rule.severity, state.value, state.detail,
        suppressed,
    )  # fmt: skip


# -- what the service observes, for the rules' evaluation (`core.alert_rules`) -------------------


@dataclass(frozen=True)
class MeterSeen:
    """What the service knows of one meter now: live from MQTT, else from the window store."""

    meter_id: str
    interval_s: float  # its poll interval
    last_reading_ms: int | None = None  # the ts of its latest reading (None: none seen)
    power_w: float | None = None  # the power of that reading
    status: str | None = None  # its retained status: "online" | "offline" | "error"
    status_ms: int | None = None  # when that status was published
    status_detail: str = ""


@dataclass(frozen=True)
class HourEnergy:
    """A scope's energy in one local clock hour (from the store's hourly rollups)."""

    start_ms: int  # the hour's start (UTC ms)
    energy_wh: float
    coverage: float  # the least covered member's coverage (0..1)


@dataclass(frozen=True)
class DemandNow:
    """A scope's running demand interval, from the live readings."""

    interval_start_ms: int
    interval_ms: int
    energy_wh: float  # integrated since the interval began (every member, signed)
    power_w: float | None  # Σ members' latest power (None: a member has none)
    month_peak_kw: float | None  # the highest ended interval of the local month so far
    complete: bool = True  # every member reported within the interval
    # the least the month's demand is billed at anyway (the tariff's ratchet: its share of the
    # previous months' highest, and its minimum); None without a ratcheted demand charge
    floor_kw: float | None = None


@dataclass(frozen=True)
class DriftSeen:
    """A meter's integrated energy against its own register over a span (≥ a day)."""

    start_ms: int
    end_ms: int
    integrated_wh: float  # Σ energy_wh of the readings in (start, end]
    register_wh: float  # the register's end value − its start value


@dataclass(frozen=True)
class Observations:
    """Everything one evaluation reads; the service fills what its rules need."""

    now_ms: int
    zone: str  # the site's time zone
    meters: Mapping[str, MeterSeen] = field(default_factory=dict)
    # meter id -> its latest ended windows (start_ms, coverage), oldest first
    coverage: Mapping[str, tuple[tuple[int, float], ...]] = field(default_factory=dict)
    # subject -> its hours, oldest first: the last `weeks` weeks and the hour just ended
    hours: Mapping[str, tuple[HourEnergy, ...]] = field(default_factory=dict)
    # subject -> its live power (Σ weight × member power; None: a member is not fresh)
    power_w: Mapping[str, float | None] = field(default_factory=dict)
    demand: Mapping[str, DemandNow] = field(default_factory=dict)
    drift: Mapping[str, DriftSeen] = field(default_factory=dict)
