"""The configuration of alerts and reports: `[alerts]`, `[[alerts.channels]]`,
`[[alerts.rules]]` and `[[reports]]`.

A rule names its kind, a scope (`campus`, `building:<name>`, `meter:<id>` — a meter or a
virtual meter), how long its condition must hold before it fires (`for`) and stay false
before it resolves (`clear_after`), a severity and the channels it notifies. What a kind
measures is set by the kind's own keys; which keys a kind takes (and needs) is the table
`KIND_KEYS`. Durations are seconds, or text with a unit: "90s", "10m", "2h", "1d".

Each channel is one of `CHANNEL_KINDS` with the settings of its kind; a secret (the SMTP
password, the webhook's signing key) comes from a file or from the environment variable the
configuration names, never from the file itself, and is never shown.

`cross_check` checks what spans sections (scopes and channels that name something known);
`build_*` turn the checked sections into `core.alerts` values.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, Field, field_validator, model_validator

from campus_energy.config.billing import Identifier, _Part, _unknown
from campus_energy.core.alerts import KINDS, Rule, Scope
from campus_energy.core.campus import Campus
from campus_energy.core.tariffs import WEEKDAYS, parse_clock

Problems = list[tuple[str, str]]
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)?\s*$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}
MAX_DURATION_S = 90 * 86400
_EMAIL = re.compile(r"^[^@\s<>,;]+@[^@\s<>,;]+\.[^@\s<>,;]+$")
_HEADER_SAFE = re.compile(r"^[^\r\n]*$")


def _duration(value: Any) -> float:
    """Seconds from a number or "90s" / "10m" / "2h" / "1d"."""
    if isinstance(value, bool):
        raise ValueError(f"must be a duration (seconds, or '10m', '2h'), got {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (match := _DURATION.match(value)):
        seconds = float(match.group(1)) * _UNIT_S[match.group(2)]
    else:
        raise ValueError(f"must be a duration (seconds, or '10m', '2h'), got {value!r}")
    if not 0 <= seconds <= MAX_DURATION_S:
        raise ValueError(f"must be between 0 s and 90 days, got {value!r}")
    return seconds


Duration = Annotated[float, BeforeValidator(_duration)]


def _address(value: str) -> str:
    if not _EMAIL.match(value) or len(value) > 254:
        raise ValueError(f"must be an e-mail address, got {value[:80]!r}")
    return value


Address = Annotated[
    str, BeforeValidator(lambda v: v.strip() if isinstance(v, str) else v), AfterValidator(_address)
]


# -- channels ------------------------------------------------------------------------------


class ChannelConfig(_Part):
    """Where notifications go. `kind` picks the settings that apply (`CHANNEL_KEYS`)."""

    name: Identifier
    kind: Literal["email", "webhook", "mqtt"]
    # email
    host: str | None = None
    port: int | None = Field(default=None, ge=1, le=65535)
    security: Literal["starttls", "tls", "none"] = "starttls"
    username: str | None = None
    password_file: Path | None = None
    password_env: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    sender: Address | None = None
    recipients: tuple[Address, ...] = ()
    timeout_s: float = Field(default=30.0, gt=0, le=300)
    # email and webhook: trust this CA (PEM) besides the system's (a private mail server)
    ca_file: Path | None = None
    # webhook
    url: str | None = Field(default=None, max_length=2000)
    secret_file: Path | None = None
    secret_env: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    max_attempts: int = Field(default=8, ge=1, le=100)
    # mqtt: the service's own broker connection (`[mqtt]`); states under <prefix>/alerts/...
    homeassistant_discovery: bool = False

    @field_validator("recipients")
    @classmethod
    def _check_recipients(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if len(value) > 100:
            raise ValueError(f"at most 100 recipients, got {len(value)}")
        return value

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https?://[^\s/]+(/\S*)?$", value):
            raise ValueError("must be an http:// or https:// URL")
        return value

    @field_validator("host", "username")
    @classmethod
    def _one_line(cls, value: str | None) -> str | None:
        if value is not None and (not value or not _HEADER_SAFE.match(value)):
            raise ValueError("must be one non-empty line")
        return value

    @model_validator(mode="after")
    def _settings_of_kind(self) -> ChannelConfig:
        needed, allowed = CHANNEL_KEYS[self.kind]
        for key in needed:
            value = getattr(self, key)
            if value is None or value == ():
                raise ValueError(f"a {self.kind} channel needs {key!r}")
        given = self.model_fields_set - {"name", "kind"}
        stray = sorted(given - allowed)
        if stray:
            listed = ", ".join(map(repr, stray))
            raise ValueError(f"{listed} is not a setting of a {self.kind} channel")
        if self.password_file is not None and self.password_env is not None:
            raise ValueError("give password_file or password_env, not both")
        if self.secret_file is not None and self.secret_env is not None:
            raise ValueError("give secret_file or secret_env, not both")
        secretless = self.password_file is None and self.password_env is None
        if self.kind == "email" and self.username is not None and secretless:
            raise ValueError("a channel with a username needs password_file or password_env")
        return self

    @property
    def smtp_port(self) -> int:
        return self.port or {"starttls": 587, "tls": 465, "none": 25}[self.security]


_EMAIL_KEYS = {
    "host", "port", "security", "username", "password_file", "password_env", "sender",
    "recipients", "timeout_s", "ca_file",
}  # fmt: skip
# kind -> (keys it needs, keys it takes)
CHANNEL_KEYS: dict[str, tuple[tuple[str, ...], set[str]]] = {
    "email": (("host", "sender", "recipients"), _EMAIL_KEYS),
    "webhook": (
        ("url",),
        {"url", "secret_file", "secret_env", "timeout_s", "max_attempts", "ca_file"},
    ),
    "mqtt": ((), {"homeassistant_discovery"}),
}


# -- rules ---------------------------------------------------------------------------------


# kind -> (keys it needs, keys it takes besides the common ones)
KIND_KEYS: dict[str, tuple[tuple[str, ...], set[str]]] = {
    "meter-silent": ((), {"silent_after"}),
    "coverage-low": ((), {"below", "windows"}),
    "after-hours": ((), {"above_kw", "above_share"}),
    "baseline-deviation": ((), {"k", "min_kwh", "weeks"}),
    "demand-approaching": ((), {"share", "contracted_kw", "interval_min"}),
    "register-drift": ((), {"percent"}),
}
assert set(KIND_KEYS) == set(KINDS)


class RuleConfig(_Part):
    """One alert rule (the keys of its kind: `KIND_KEYS`)."""

    name: Identifier
    kind: Literal[
        "meter-silent",
        "coverage-low",
        "after-hours",
        "baseline-deviation",
        "demand-approaching",
        "register-drift",
    ]
    scope: str = Field(default="campus", max_length=200)
    for_s: Duration = Field(default=0.0, alias="for")
    clear_after: Duration = 0.0
    severity: Literal["info", "warning", "critical"] = "warning"
    channels: tuple[str, ...] = ()
    renotify: Duration | None = Field(default=None, description="None: alerts.renotify")
    # meter-silent: no reading for this long (default: 3 polls of the meter), or status offline
    silent_after: Duration | None = None
    # coverage-low: a window's coverage below this, for `windows` windows in a row
    below: float = Field(default=0.9, gt=0, le=1)
    windows: int = Field(default=3, ge=1, le=288)
    # after-hours: power while closed above an absolute kW and/or a share of the open median
    above_kw: float | None = Field(default=None, gt=0, le=1_000_000)
    above_share: float | None = Field(default=None, gt=0, le=10)
    # baseline-deviation: the last hour outside median ± k × MAD of the same weekday and hour
    k: float = Field(default=4.0, gt=0, le=100)
    min_kwh: float = Field(default=1.0, ge=0, le=1_000_000)
    weeks: int = Field(default=6, ge=4, le=8)
    # demand-approaching: projected demand above share × (month's peak so far | contracted_kw)
    share: float = Field(default=0.9, gt=0, le=2)
    contracted_kw: float | None = Field(default=None, gt=0, le=1_000_000)
    interval_min: Literal[15, 30, 60] | None = Field(default=None, description="None: the tariff's")
    # register-drift: integrated energy and the meter's register apart by more than this, a day
    percent: float = Field(default=2.0, gt=0, le=100)

    @field_validator("scope")
    @classmethod
    def _check_scope(cls, value: str) -> str:
        Scope.parse(value)
        return value

    @model_validator(mode="after")
    def _keys_of_kind(self) -> RuleConfig:
        _, allowed = KIND_KEYS[self.kind]
        common = {"name", "kind", "scope", "for_s", "clear_after", "severity", "channels"}
        common.add("renotify")
        stray = sorted(self.model_fields_set - common - allowed)
        if stray:
            raise ValueError(f"{', '.join(map(repr, stray))} is not a key of a {self.kind} rule")
        if self.kind == "after-hours" and self.above_kw is None and self.above_share is None:
            raise ValueError("an after-hours rule needs above_kw, above_share or both")
        return self

    def build(self, default_renotify_s: float) -> Rule:
        params = {key: getattr(self, key) for key in sorted(KIND_KEYS[self.kind][1])}
        return Rule(
            name=self.name,
            kind=self.kind,
            scope=Scope.parse(self.scope),
            for_s=self.for_s,
            clear_after_s=self.clear_after,
            severity=self.severity,
            channels=self.channels,
            renotify_s=default_renotify_s if self.renotify is None else self.renotify,
            params={k: v for k, v in params.items() if v is not None},
        )


class AlertsConfig(_Part):
    """`[alerts]`: the alerts service."""

    state_path: Path = Path("var/alerts.db")
    evaluate_every_s: float = Field(default=10.0, ge=1, le=3600)
    renotify: Duration = Field(default=4 * 3600.0, description="0: notify a firing alert once")
    client_id: str = Field(default="campus-energy-alerts", pattern=r"^[A-Za-z0-9_.:-]{1,64}$")
    metrics_host: str = "127.0.0.1"
    metrics_port: int | None = Field(default=None, ge=1, le=65535, description="None: no /metrics")
    api_token_file: Path | None = Field(
        default=None, description="a bearer token that allows ack and silence over the HTTP API"
    )
    channels: tuple[ChannelConfig, ...] = ()
    rules: tuple[RuleConfig, ...] = ()

    def rule_values(self) -> tuple[Rule, ...]:
        return tuple(r.build(self.renotify) for r in self.rules)


# -- reports -------------------------------------------------------------------------------


class ReportConfig(_Part):
    """`[[reports]]`: a report mailed on a schedule (local time of its site)."""

    name: Identifier
    every: Literal["week", "month"]
    day: int | str = Field(
        default=1, description="month: 1..28, or 'last'; week: mon..sun (the day it is sent)"
    )
    at: str = Field(default="07:00", description="local HH:MM it is sent")
    building: str | None = None
    site: str | None = Field(
        default=None, description="that site's accounts, in its own time zone (default: all)"
    )
    channel: str = Field(description="an e-mail channel of [[alerts.channels]]")
    recipients: tuple[Address, ...] = Field(default=(), description="default: the channel's")
    attach: tuple[Literal["xlsx", "csv"], ...] = ("xlsx", "csv")

    @field_validator("at")
    @classmethod
    def _check_at(cls, value: str) -> str:
        parse_clock(value)
        return value

    @model_validator(mode="after")
    def _check_day(self) -> ReportConfig:
        if self.every == "week":
            if self.day == 1:  # the default: Monday
                object.__setattr__(self, "day", "mon")
            if self.day not in WEEKDAYS:
                raise ValueError(
                    f"day: a weekly report is sent on one of {', '.join(WEEKDAYS)}, "
                    f"got {self.day!r}"
                )
        elif self.day != "last" and not (isinstance(self.day, int) and 1 <= self.day <= 28):
            raise ValueError(
                "day: a monthly report is sent on day 1..28 or 'last' (29..31 never come in "
                f"February), got {self.day!r}"
            )
        return self

    @property
    def minute_of_day(self) -> int:
        return parse_clock(self.at)


# -- what spans sections -------------------------------------------------------------------


def cross_check(
    alerts: AlertsConfig, reports: Sequence[ReportConfig], campus: Campus, meters: Sequence[Any]
) -> Problems:
    """Scopes name known buildings and meters, channels are known and of the right kind."""
    found: Problems = []
    channels = {c.name: c for c in alerts.channels}
    for i, channel in enumerate(alerts.channels):
        if [c.name for c in alerts.channels].index(channel.name) != i:
            found.append((f"alerts.channels[{i}].name", f"duplicate channel {channel.name!r}"))
    meter_ids = {m.id for m in meters} | {v.id for v in campus.virtual_meters}
    buildings = set(campus.building_names())
    names: set[str] = set()
    for i, rule in enumerate(alerts.rules):
        where = f"alerts.rules[{i}]"
        if rule.name in names:
            found.append((f"{where}.name", f"duplicate rule {rule.name!r}"))
        names.add(rule.name)
        scope = Scope.parse(rule.scope)
        if scope.kind == "building" and scope.name not in buildings:
            found.append((f"{where}.scope", _unknown("building", scope.name, buildings)))
        if scope.kind == "meter" and scope.name not in meter_ids:
            found.append((f"{where}.scope", _unknown("meter", scope.name, meter_ids)))
        if rule.kind in ("meter-silent", "register-drift", "coverage-low"):
            virtual = {v.id for v in campus.virtual_meters}
            if scope.kind == "meter" and scope.name in virtual:
                found.append(
                    (f"{where}.scope", f"a {rule.kind} rule watches meters, not virtual meters")
                )
        if rule.kind == "after-hours" and not _has_hours(scope, campus):
            found.append(
                (
                    f"{where}.scope",
                    "an after-hours rule needs opening hours: give the building (for the "
                    "campus: at least one building) [site.buildings.occupancy]",
                )
            )
        for named in rule.channels:
            if named not in channels:
                found.append((f"{where}.channels", _unknown("channel", named, channels)))
    for i, report in enumerate(reports):
        where = f"reports[{i}]"
        if [r.name for r in reports].index(report.name) != i:
            found.append((f"{where}.name", f"duplicate report {report.name!r}"))
        mail = channels.get(report.channel)
        if mail is None:
            found.append((f"{where}.channel", _unknown("channel", report.channel, channels)))
        elif mail.kind != "email":
            found.append((f"{where}.channel", f"{report.channel!r} is a {mail.kind} channel"))
        if report.building is not None and report.building not in buildings:
            found.append((f"{where}.building", _unknown("building", report.building, buildings)))
    return found


def _has_hours(scope: Scope, campus: Campus) -> bool:
    """Whether the scope's building (a meter's: its own; the campus: any) has opening hours."""
    if scope.kind == "campus":
        return any(b.occupancy is not None for b in campus.buildings)
    name = scope.name
    if scope.kind == "meter":
        place = next((m for m in campus.meters if m.id == name), None)
        virtual = next((v for v in campus.virtual_meters if v.id == name), None)
        name = place.building if place else virtual.building if virtual else ""
    try:
        return bool(name) and campus.building(name).occupancy is not None
    except KeyError:
        return False


def read_secret(path: Path | None, variable: str | None, environ: Mapping[str, str]) -> str | None:
    """A secret from its file or environment variable; raises ValueError (without the value)."""
    if path is not None:
        try:
            text = path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ValueError(f"cannot read {path}: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise ValueError(f"{path} is not UTF-8 text") from None
        if not text:
            raise ValueError(f"{path} is empty")
        return text
    if variable is not None:
        value = environ.get(variable)
        if not value:
            raise ValueError(f"the environment variable {variable} is not set")
        return value
    return None
