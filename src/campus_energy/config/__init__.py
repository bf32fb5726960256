"""The configuration: one TOML file, validated once at start-up into a frozen `Config`.

Every key may be overridden by an environment variable
`CAMPUS_ENERGY__<SECTION>__<KEY>` (list items by index, e.g.
`CAMPUS_ENERGY__METERS__0__UNIT`). Relative paths in the file are relative to
the file's own directory. Unknown keys are errors.
"""

from __future__ import annotations

import difflib
import json
import re
import socket
import tomllib
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from campus_energy.config.alerts import AlertsConfig, ReportConfig, read_secret
from campus_energy.config.alerts import cross_check as alerts_cross_check
from campus_energy.config.billing import (
    BillingConfig,
    BuildingConfig,
    EmissionsConfig,
    TariffConfig,
    VirtualMeterConfig,
    build_campus,
    build_emissions,
    build_tariff,
    cross_check,
)
from campus_energy.core.campus import Campus, parse_terms
from campus_energy.core.emissions import EmissionFactors
from campus_energy.core.incoming import Limits
from campus_energy.core.models import Profile
from campus_energy.core.planner import BusCostModel
from campus_energy.core.tariffs import Tariff
from campus_energy.core.topics import reading_topic, site_root
from campus_energy.core.validation import problems
from campus_energy.errors import ConfigError, ProfileError
from campus_energy.meters.profiles import load_profiles

CONFIG_ENV = "CAMPUS_ENERGY_CONFIG"
DEFAULT_CONFIG_PATH = Path("campus-energy.toml")
ENV_PREFIX = "CAMPUS_ENERGY__"
POSTGRES_DSN_ENV = "CAMPUS_ENERGY_POSTGRES_DSN"
# Keys whose value may hold a secret: a configuration error never shows it (nor a table above it)
SECRET_KEYS = (
    "bridge.postgres.dsn",
    "bridge.firestore.credentials_file",
    "mqtt.password_file",
    "mqtt.signing_key_file",
    "mqtt.tls_key_file",
    "alerts.api_token_file",
    "alerts.channels[].password_file",
    "alerts.channels[].password_env",  # a variable's name, but people write the password there
    "alerts.channels[].secret_file",
    "alerts.channels[].secret_env",
)
_ID = re.compile(r"^[a-z0-9_-]+$")


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SiteConfig(_Section):
    id: str = Field(
        default="main", description="the default site's id (its meters' topics have no site level)"
    )
    name: str = "Campus"
    timezone: str = "UTC"
    tariff: str | None = Field(
        default=None, description="the tariff of buildings without one and of meters in none"
    )
    buildings: tuple[BuildingConfig, ...] = ()

    @field_validator("timezone")
    @classmethod
    def _check_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown IANA time zone {value!r} (e.g. 'Asia/Kolkata')") from None
        return value

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @field_validator("id")
    @classmethod
    def _check_id(cls, value: str) -> str:
        return _site_id(value)


def _site_id(value: str) -> str:
    if not _ID.match(value):
        raise ValueError(f"must use only a-z, 0-9, '-' and '_', got {value!r}")
    return value


class OtherSiteConfig(_Section):
    """A further site of the estate (`[[sites]]`): its meters name it in `meters.site`."""

    id: str
    name: str = ""
    timezone: str | None = Field(default=None, description="default: [site].timezone")

    @field_validator("id")
    @classmethod
    def _check_id(cls, value: str) -> str:
        return _site_id(value)

    @field_validator("timezone")
    @classmethod
    def _check_timezone(cls, value: str | None) -> str | None:
        return None if value is None else SiteConfig._check_timezone(value)


class StorageConfig(_Section):
    path: Path = Path("var/smart_meter.db")
    retention_days: int | None = Field(default=None, ge=1, description="None: keep every reading")
    commit_interval_s: float = Field(
        default=0.0,
        ge=0,
        le=3600,
        description="0: commit every poll cycle (fully durable); N: the low-write mode, one "
        "commit per bus every N seconds, publishing only what is committed",
    )


class MqttConfig(_Section):
    host: str = "127.0.0.1"
    port: int = Field(default=1883, ge=1, le=65535)
    topic_prefix: str = "campus/energy"
    username: str | None = None
    password_file: Path | None = None
    tls_ca_file: Path | None = None
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    signing_key_file: Path | None = Field(
        default=None,
        description="HMAC key: the logger signs its readings, the bridge refuses unsigned ones",
    )
    keepalive_s: int = Field(default=30, ge=5, le=3600)
    homeassistant_discovery: bool = False
    homeassistant_prefix: str = "homeassistant"

    @field_validator("topic_prefix", "homeassistant_prefix")
    @classmethod
    def _check_prefix(cls, value: str) -> str:
        if not value or value.startswith("/") or value.endswith("/") or set("#+") & set(value):
            raise ValueError(f"must be a topic without wildcards or outer '/', got {value!r}")
        return value


_SERIAL_KEYS = ("baudrate", "parity", "stopbits", "bytesize")


class BusSimulationConfig(_Section):
    """How the simulator plays this bus (ignored by everything else)."""

    absent_units: Literal["silent", "gateway-exception"] = Field(
        default="silent",
        description="a request for a unit no meter answers to: no answer, as on an RS-485 line, "
        "or exception 11 (gateway target failed to respond), as from a TCP gateway",
    )


class BusConfig(_Section):
    """One Modbus bus: an RS-485 line (`rtu`), an RS-485 gateway (`rtu-tcp`) or Modbus TCP."""

    name: str
    transport: Literal["rtu", "rtu-tcp", "tcp"]
    device: str | None = None
    baudrate: int = Field(default=9600, ge=300, le=1_000_000)
    parity: Literal["N", "E", "O"] = "N"
    stopbits: Literal[1, 2] = 1
    bytesize: Literal[7, 8] = 8
    host: str | None = None
    port: int = Field(default=502, ge=1, le=65535)
    timeout_s: float = Field(default=1.0, gt=0, le=60)
    retries: int = Field(default=3, ge=0, le=10)
    turnaround_s: float | None = Field(
        default=None, ge=0, le=5, description="device turnaround for the read planner's model"
    )
    simulate: BusSimulationConfig = BusSimulationConfig()

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if not _ID.match(value):
            raise ValueError(f"must use only a-z, 0-9, '-' and '_', got {value!r}")
        return value

    @model_validator(mode="after")
    def _check_transport_keys(self) -> BusConfig:
        given = self.model_fields_set
        wrong: list[str]
        if self.transport == "rtu":
            if not self.device:
                raise ValueError("transport 'rtu' needs 'device' (e.g. '/dev/ttyUSB0')")
            wrong = [k for k in ("host", "port") if k in given]
        else:
            if not self.host:
                raise ValueError(f"transport {self.transport!r} needs 'host'")
            wrong = ["device"] if "device" in given else []
            if self.transport == "tcp":
                wrong += [k for k in _SERIAL_KEYS if k in given]
        if wrong:
            raise ValueError(f"{', '.join(wrong)} not used with transport {self.transport!r}")
        if self.transport == "rtu" and self.simulate.absent_units == "gateway-exception":
            raise ValueError("simulate.absent_units 'gateway-exception' needs a gateway, not 'rtu'")
        return self

    @property
    def cost_model(self) -> BusCostModel:
        """The read planner's model of one request's bus time on this bus."""
        if self.transport == "tcp":
            return BusCostModel.tcp(0.002 if self.turnaround_s is None else self.turnaround_s)
        return BusCostModel.serial(
            self.baudrate,
            parity=self.parity,
            stopbits=self.stopbits,
            bytesize=self.bytesize,
            turnaround_s=0.02 if self.turnaround_s is None else self.turnaround_s,
        )


class SimulationConfig(_Section):
    """How the simulator plays this meter (ignored by everything else)."""

    seed: int | None = None
    base_w: float | None = Field(default=None, ge=0)
    peak_w: float | None = Field(default=None, ge=0)
    timeout_rate: float = Field(default=0.0, ge=0, le=1)
    exception_rate: float = Field(default=0.0, ge=0, le=1)
    corrupt_rate: float = Field(default=0.0, ge=0, le=1)
    disconnect_after_s: float | None = Field(default=None, ge=0)
    reconnect_after_s: float | None = Field(default=None, ge=0)
    refuse_gap_reads: bool = Field(
        default=False,
        description="exception 2 for a request covering any register the model does not document",
    )
    refused_registers: tuple[int, ...] = Field(
        default=(),
        description="exception 2 for any request covering one of these (documented) registers",
    )
    word_order: Literal["ABCD", "CDAB", "BADC", "DCBA"] | None = Field(
        default=None, description="serve 32-bit values in this order (default: the profile's)"
    )
    response_delay_s: float = Field(default=0.0, ge=0, le=60, description="delay of each answer")
    replace_at_s: float | None = Field(
        default=None, ge=0, description="a new meter (its registers from 0) this long after start"
    )
    pv_peak_w: float | None = Field(
        default=None,
        ge=0,
        description="a rooftop PV array of this peak behind the meter: it measures load − PV, "
        "exporting when the sun gives more than the building draws",
    )
    cloudiness: float = Field(
        default=0.0, ge=0, le=1, description="the share of the PV array's sun that clouds take away"
    )

    @field_validator("refused_registers")
    @classmethod
    def _check_registers(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        wrong = [r for r in value if not 0 <= r <= 0xFFFF]
        if wrong:
            raise ValueError(f"register addresses are 0 to 65535, got {wrong[0]}")
        return value

    @model_validator(mode="after")
    def _check_outage(self) -> SimulationConfig:
        if self.reconnect_after_s is not None:
            if self.disconnect_after_s is None:
                raise ValueError("reconnect_after_s needs disconnect_after_s")
            if self.reconnect_after_s <= self.disconnect_after_s:
                raise ValueError("reconnect_after_s must be later than disconnect_after_s")
        return self


class MeterConfig(_Section):
    id: str
    bus: str
    unit: int
    profile: str
    building: str = ""
    floor: str = ""
    role: Literal["main"] | None = Field(default=None, description="'main': its building's total")
    parent: str | None = Field(default=None, description="the meter this one is a sub-meter of")
    interval_s: float = Field(default=5.0, gt=0, le=3600)
    max_gap_s: float | None = Field(
        default=None, gt=0, description="default: 3 × interval_s, plus half an interval of slack"
    )
    max_power_w: float | None = Field(default=None, gt=0, description="default: the profile's")
    site: str | None = Field(
        default=None, description="the site it belongs to (default: [site].id)"
    )
    estimate_gaps: bool = Field(
        default=True,
        description="record the energy the meter's own registers counted across a gap as "
        "estimated energy (kept apart from measured energy)",
    )
    max_estimate_gap_s: float = Field(
        default=86_400.0,
        gt=0,
        le=86_400.0,
        description="the longest gap bridged by an estimate from the registers (at most a day)",
    )
    simulate: SimulationConfig = SimulationConfig()

    @model_validator(mode="after")
    def _check_gap(self) -> MeterConfig:
        if self.max_gap_s is not None and self.max_gap_s < self.interval_s:
            raise ValueError(
                f"max_gap_s ({self.max_gap_s:g}) must be at least interval_s ({self.interval_s:g})"
            )
        return self

    @property
    def gap_limit_s(self) -> float:
        """Longest interval between readings that is still integrated.

        By default two missed polls in a row are still integrated: three intervals,
        plus half an interval so that response-time jitter cannot decide it.
        """
        return self.max_gap_s if self.max_gap_s is not None else 3.5 * self.interval_s

    @field_validator("id")
    @classmethod
    def _check_id(cls, value: str) -> str:
        if not _ID.match(value):
            raise ValueError(f"must use only a-z, 0-9, '-' and '_', got {value!r}")
        return value

    @field_validator("unit")
    @classmethod
    def _check_unit(cls, value: int) -> int:
        if not 1 <= value <= 247:
            raise ValueError(f"must be between 1 and 247, got {value}")
        return value


def _default_logger_id() -> str:
    name = re.sub(r"[^a-z0-9_-]+", "-", socket.gethostname().lower()).strip("-")
    return name or "logger"


class LoggerConfig(_Section):
    id: str = Field(default_factory=_default_logger_id, description="default: the host name")
    site: str | None = Field(
        default=None, description="poll only this site's meters (default: all)"
    )
    buses: tuple[str, ...] = Field(default=(), description="poll only these buses (default: all)")
    metrics_host: str = "127.0.0.1"
    metrics_port: int | None = Field(default=None, ge=1, le=65535, description="None: no /metrics")

    @field_validator("id")
    @classmethod
    def _check_id(cls, value: str) -> str:
        if not _ID.match(value):
            raise ValueError(f"must use only a-z, 0-9, '-' and '_', got {value!r}")
        return value


class SqliteSinkConfig(_Section):
    path: Path = Path("var/windows.db")


class FirestoreSinkConfig(_Section):
    project: str | None = None
    credentials_file: Path | None = None
    collection: str = "readings_5min_avg"
    layout: Literal["per-meter", "per-window"] = "per-meter"


class PostgresSinkConfig(_Section):
    dsn: str | None = Field(default=None, repr=False)
    schema_name: str = Field(default="public", alias="schema")
    retention_months: int | None = Field(
        default=None,
        ge=1,
        le=1200,
        description="None: keep every window; N: drop the monthly partitions of windows (and "
        "their rollups) that ended more than N months ago",
    )

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    @field_validator("schema_name")
    @classmethod
    def _check_schema(cls, value: str) -> str:
        if not re.match(r"^[a-z_][a-z0-9_]*$", value):
            raise ValueError(f"must be a plain lower-case SQL name, got {value!r}")
        return value


def _default_bridge_id() -> str:
    return f"campus-energy-bridge-{_default_logger_id()}"


class BridgeConfig(_Section):
    window_s: int = Field(default=300, ge=1, le=900)
    metrics_host: str = "127.0.0.1"
    metrics_port: int | None = Field(default=None, ge=1, le=65535, description="None: no /metrics")
    grace_s: float = Field(default=60, ge=0, le=3600)
    sink: Literal["sqlite", "firestore", "postgres"] = "sqlite"
    spool_path: Path = Path("var/bridge-spool.db")
    client_id: str = Field(
        default_factory=_default_bridge_id, description="MQTT client id of the persistent session"
    )
    shared_group: str | None = Field(
        default=None, description="share the load with other bridges ($share/<group>/...)"
    )
    topic_filters: tuple[str, ...] = Field(
        default=(),
        description="subscribe to these reading topics only (default: every site's "
        "'<root>/+/reading'): bridges split the meters this way on brokers without shared "
        "subscriptions",
    )
    max_interval_s: float | None = Field(
        default=None,
        gt=0,
        le=86_400,
        description="longest ts - interval_start of a reading (never below max_gap_s + 1 %)",
    )
    dead_letters_max_bytes: int = Field(
        default=16 * 1024 * 1024, ge=64 * 1024, description="cap of the spool's dead_letters table"
    )
    commit_interval_s: float = Field(
        default=0.0,
        ge=0,
        le=300,
        description="0: commit each burst of messages at once; N: the low-write mode, one spool "
        "commit (and acknowledgement) every N seconds",
    )
    sqlite: SqliteSinkConfig = SqliteSinkConfig()
    firestore: FirestoreSinkConfig = FirestoreSinkConfig()
    postgres: PostgresSinkConfig = PostgresSinkConfig()

    @field_validator("window_s")
    @classmethod
    def _check_window(cls, value: int) -> int:
        if 900 % value:
            raise ValueError(
                "must divide 900 (e.g. 60, 300, 900), so that windows never straddle a local "
                f"hour or day in any time zone, got {value}"
            )
        return value

    @model_validator(mode="after")
    def _check_sink(self) -> BridgeConfig:
        if self.sink == "postgres" and not self.postgres.dsn:
            raise ValueError("sink 'postgres' needs postgres.dsn (or $CAMPUS_ENERGY_POSTGRES_DSN)")
        return self

    @field_validator("topic_filters")
    @classmethod
    def _check_filters(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for topic in value:
            levels = topic.split("/")
            if (
                len(levels) < 3
                or levels[-1] != "reading"
                or "" in levels
                or any(("+" in lv or "#" in lv) and lv != "+" for lv in levels)
                or topic.startswith("$")
            ):
                raise ValueError(
                    "must be reading topics like 'campus/energy/+/reading' or "
                    f"'campus/energy/sites/north/+/reading' ('+' only, no '#'), got {topic!r}"
                )
        if len(set(value)) != len(value):
            raise ValueError("names a topic filter twice")
        return value

    @field_validator("shared_group")
    @classmethod
    def _check_group(cls, value: str | None) -> str | None:
        if value is not None and not _ID.match(value):
            raise ValueError(f"must use only a-z, 0-9, '-' and '_', got {value!r}")
        return value


class ApiConfig(_Section):
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    source: Literal["sqlite", "firestore", "postgres"] | None = Field(
        default=None, description="where to read windows (default: bridge.sink)"
    )
    workers: int = Field(default=2, ge=1, le=64)
    cache_s: float = Field(default=30, ge=0, le=3600)
    refresh_s: int = Field(default=60, ge=5, le=3600)
    cors_origins: tuple[str, ...] = ()
    site: str | None = Field(
        default=None, description="serve this site only, as if the others did not exist"
    )

    @field_validator("cors_origins")
    @classmethod
    def _check_origins(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for origin in value:
            if not re.match(r"^https?://[^/\s]+$", origin):
                raise ValueError(f"must be origins like 'https://example.org', got {origin!r}")
        return value


class DashboardConfig(_Section):
    host: str = "127.0.0.1"
    port: int = Field(default=8501, ge=1, le=65535)
    site: str | None = Field(default=None, description="show this site only")


class Config(_Section):
    profiles_dir: Path | None = None
    site: SiteConfig = SiteConfig()
    sites: tuple[OtherSiteConfig, ...] = ()
    storage: StorageConfig = StorageConfig()
    mqtt: MqttConfig = MqttConfig()
    buses: tuple[BusConfig, ...] = ()
    meters: tuple[MeterConfig, ...] = ()
    logger: LoggerConfig = LoggerConfig()
    bridge: BridgeConfig = BridgeConfig()
    api: ApiConfig = ApiConfig()
    dashboard: DashboardConfig = DashboardConfig()
    virtual_meters: tuple[VirtualMeterConfig, ...] = ()
    tariffs: tuple[TariffConfig, ...] = ()
    billing: BillingConfig = BillingConfig()
    emissions: EmissionsConfig = EmissionsConfig()
    alerts: AlertsConfig = AlertsConfig()
    reports: tuple[ReportConfig, ...] = ()

    _profiles: dict[str, Profile] = PrivateAttr(default_factory=dict)
    _source: Path | None = PrivateAttr(default=None)
    _campus: Campus | None = PrivateAttr(default=None)
    _tariffs: dict[str, Tariff] = PrivateAttr(default_factory=dict)
    _emissions: EmissionFactors = PrivateAttr(default_factory=EmissionFactors)
    _secrets: dict[str, str] = PrivateAttr(default_factory=dict)

    @property
    def campus(self) -> Campus:
        """Buildings, meters' places, virtual meters (`core.campus`)."""
        if self._campus is None:
            self._campus = build_campus(
                self.site.buildings, self.site.tariff, self.meters, self.virtual_meters
            )
        return self._campus

    @property
    def tariff_values(self) -> Mapping[str, Tariff]:
        """Every tariff by id, holidays files read (`core.tariffs`)."""
        return self._tariffs

    @property
    def emission_factors(self) -> EmissionFactors:
        """The annual factors and the hourly file's (`core.emissions`)."""
        return self._emissions

    def channel_secret(self, name: str) -> str | None:
        """The secret of alert channel `name` (SMTP password, webhook key), read at start-up
        from its file or environment variable; None when it has none. Never logged."""
        return self._secrets.get(name)

    @property
    def profiles(self) -> Mapping[str, Profile]:
        """Every known meter profile (built-in and from `profiles_dir`)."""
        return self._profiles

    @property
    def source(self) -> Path | None:
        """The file this configuration was read from (None: embedded defaults)."""
        return self._source

    def bus(self, name: str) -> BusConfig:
        for bus in self.buses:
            if bus.name == name:
                return bus
        raise KeyError(name)

    def meter(self, meter_id: str) -> MeterConfig:
        for meter in self.meters:
            if meter.id == meter_id:
                return meter
        raise KeyError(meter_id)

    @property
    def site_ids(self) -> tuple[str, ...]:
        """Every site of the estate, the default one first."""
        return (self.site.id, *(s.id for s in self.sites))

    def site_of(self, meter: MeterConfig) -> str:
        return meter.site or self.site.id

    def site_name(self, site: str) -> str:
        for other in self.sites:
            if other.id == site:
                return other.name or other.id
        return self.site.name

    def report_zone(self, site: str | None, building: str | None) -> ZoneInfo:
        """Whose clock a report is cut and sent by: its site's, its building's site's, else
        site.timezone's (an estate's report)."""
        if site is None and building:
            site = next((self.site_of(m) for m in self.meters if m.building == building), None)
        return self.site_zone(site) if site is not None else self.site.zone

    def site_zone(self, site: str) -> ZoneInfo:
        for other in self.sites:
            if other.id == site and other.timezone is not None:
                return ZoneInfo(other.timezone)
        return self.site.zone

    def topic_root(self, site: str) -> str:
        """Where a site's meters publish (`core.topics.site_root`)."""
        return site_root(self.mqtt.topic_prefix, None if site == self.site.id else site)

    def topic_roots(self) -> dict[str, str]:
        """Every site's topic root -> its id."""
        return {self.topic_root(site): site for site in self.site_ids}

    def logger_meters(self) -> tuple[MeterConfig, ...]:
        """The meters this configuration's logger polls (`logger.site`, `logger.buses`)."""
        chosen = self.logger.site
        buses = set(self.logger.buses)
        return tuple(
            m
            for m in self.meters
            if (chosen is None or self.site_of(m) == chosen) and (not buses or m.bus in buses)
        )

    def logger_site_root(self) -> str:
        """Where this configuration's logger publishes its own status."""
        return self.topic_root(self.logger.site or self.site.id)

    def for_logger(self) -> Config:
        """This configuration as its logger sees it: only the meters it polls
        (`logger_meters`) and the buses they are on. The same object when that is all."""
        meters = self.logger_meters()
        if meters == self.meters:
            return self
        used = {m.bus for m in meters}
        narrowed = self.model_copy(
            update={"meters": meters, "buses": tuple(b for b in self.buses if b.name in used)}
        )
        narrowed._campus = None  # built again from its own meters
        return narrowed

    def sites_of_name(self, name: str) -> frozenset[str]:
        """The sites of a configured meter, building, virtual meter (its members') or the
        campus ("campus": every site); none for a name the configuration does not know."""
        if name == "campus":
            return frozenset(self.site_ids)
        found = {self.site_of(m) for m in self.meters if name in (m.id, m.building)}
        if found or name in {b.name for b in self.site.buildings}:
            return frozenset(found or {self.site.id})
        try:
            members = self.campus.terms(name)
        except KeyError:
            return frozenset()
        return frozenset(self.site_of(m) for m in self.meters if m.id in members)

    def site_has_alert(self, site: str, scope: str, subject: str) -> bool:
        """Whether an alert (its rule's scope text and its subject) is `site`'s alone: its
        subject's sites, or for a subject the configuration does not know its scope's, are
        that site — so an alert of the whole estate is no one site's."""
        kind, _, name = scope.partition(":")
        sites = self.sites_of_name(subject) or self.sites_of_name(
            "campus" if kind == "campus" else name
        )
        return sites == {site}

    def for_site(self, site: str) -> Config:
        """This configuration as if `site` were the estate's only one: its meters, the
        declared buildings its meters name (a building no meter names is the default
        site's), the virtual meters of its buildings made of its meters only, and `[site]`
        with its id, name and time zone. What a site's view of the API or dashboard reads."""
        meters = tuple(m for m in self.meters if self.site_of(m) == site)
        ids = {m.id for m in meters}
        building_site = {m.building: self.site_of(m) for m in self.meters if m.building}
        buildings = tuple(
            b for b in self.site.buildings if building_site.get(b.name, self.site.id) == site
        )
        kept: set[str] = set()
        while True:  # until no virtual meter is added: one may be made of another
            more = {
                v.id
                for v in self.virtual_meters
                if v.id not in kept
                and building_site.get(v.building, self.site.id if v.building else site) == site
                and all(name in ids or name in kept for name, _ in parse_terms(v.terms))
            }
            if not more:
                break
            kept |= more
        narrowed = self.model_copy(
            update={
                "site": self.site.model_copy(
                    update={
                        "id": site,
                        "name": self.site_name(site),
                        "timezone": self.site_zone(site).key,
                        "buildings": buildings,
                    }
                ),
                "sites": (),
                "meters": meters,
                "virtual_meters": tuple(v for v in self.virtual_meters if v.id in kept),
                "api": self.api.model_copy(update={"site": None}),
                "dashboard": self.dashboard.model_copy(update={"site": None}),
            }
        )
        narrowed._campus = None  # built again from its own buildings and meters
        return narrowed

    def reading_filters(self) -> list[str]:
        """The bridge's subscriptions: `bridge.topic_filters`, else every site's readings;
        as shared subscriptions of `bridge.shared_group` when it is set."""
        topics = list(self.bridge.topic_filters) or [
            reading_topic(self.topic_root(site), "+") for site in self.site_ids
        ]
        group_name = self.bridge.shared_group
        return [f"$share/{group_name}/{t}" for t in topics] if group_name else topics

    def profile_of(self, meter: MeterConfig) -> Profile:
        return self._profiles[meter.profile]

    def power_limit_w(self, meter: MeterConfig) -> float | None:
        """The largest plausible |power| of a meter (None: any finite value)."""
        if meter.max_power_w is not None:
            return meter.max_power_w
        return self._profiles[meter.profile].max_power_w

    def intake_limits(self) -> dict[str, Limits]:
        """Per meter, what the bridge accepts from it (`core.incoming`)."""
        bound = self.bridge.max_interval_s
        return {
            m.id: Limits.of(self.power_limit_w(m), m.gap_limit_s, bound, m.max_estimate_gap_s)
            for m in self.meters
        }

    def intake_fallback(self) -> Limits:
        """What the bridge accepts from a meter the configuration does not list."""
        bound = self.bridge.max_interval_s
        return Limits() if bound is None else Limits(max_interval_s=bound)


def _set_path(data: dict[str, Any], parts: list[str], value: str, variable: str) -> None:
    node: Any = data
    for depth, part in enumerate(parts):
        last = depth == len(parts) - 1
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise ConfigError.single(variable, f"no list item {part!r} to override")
            if last:
                node[int(part)] = value
            else:
                node = node[int(part)]
        elif isinstance(node, dict):
            if last:
                node[part] = value
            elif part not in node and parts[depth + 1].isdigit():
                raise ConfigError.single(variable, f"no list {part!r} in the file to override")
            else:
                node = node.setdefault(part, {})
        else:
            raise ConfigError.single(variable, f"{parts[depth - 1]!r} is not a table")


def apply_environment(data: dict[str, Any], environ: Mapping[str, str]) -> dict[str, Any]:
    """A copy of `data` with every `CAMPUS_ENERGY__SECTION__KEY` variable applied (as a string)."""
    result: dict[str, Any] = _deep_copy(data)
    for variable in sorted(environ):
        if not variable.startswith(ENV_PREFIX):
            continue
        parts = [p.lower() for p in variable.removeprefix(ENV_PREFIX).split("__")]
        if not all(parts):
            raise ConfigError.single(variable, "malformed override variable name")
        _set_path(result, parts, environ[variable], variable)
    return result


def _deep_copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _deep_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_deep_copy(v) for v in value]
    return value


def quoted(name: str) -> str:
    """A name as messages show it: in double quotes, escaped where needed."""
    return json.dumps(name, ensure_ascii=False)


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """' — did you mean "x"?' naming the closest of `choices` to a misspelled `name`, else ''."""
    close = difflib.get_close_matches(name, list(choices), n=1)
    return f" — did you mean {quoted(close[0])}?" if close else ""


def unknown_name(kind: str, name: str, choices: Iterable[str], listing: str) -> str:
    """'unknown KIND "name"', then the closest choice, or else `listing` (where to look)."""
    hint = did_you_mean(name, choices)
    return f"unknown {kind} {quoted(name)}{hint or ' ' + listing}"


# list sections whose items have a name of their own: section -> the key holding it
_ITEM_NAMES = {
    "meters": "id",
    "buses": "name",
    "tariffs": "id",
    "virtual_meters": "id",
    "sites": "id",
}
_ITEM_KEY = re.compile(r"^(meters|buses|tariffs|virtual_meters|sites)\[(\d+)\]")


def named_key(key: str, data: Mapping[str, Any]) -> str:
    """'meters[3].profile' -> 'meters[3] (id "lib-f2-004").profile', the item's name from `data`.

    Left as it is when the item has no usable name, or when the key is that name itself.
    """
    match = _ITEM_KEY.match(key)
    if match is None:
        return key
    section, index = match.group(1), int(match.group(2))
    field = _ITEM_NAMES[section]
    items = data.get(section)
    if not isinstance(items, list) or index >= len(items) or not isinstance(items[index], dict):
        return key
    name = items[index].get(field)
    rest = key[match.end() :]
    if not isinstance(name, str) or not name or rest == f".{field}":
        return key
    return f"{match.group(0)} ({field} {quoted(name)}){rest}"


def _cross_check(config: Config, profiles: Mapping[str, Profile]) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = _site_checks(config)
    bus_names = [b.name for b in config.buses]
    for i, bus in enumerate(config.buses):
        if bus_names.index(bus.name) != i:
            found.append((f"buses[{i}].name", f"duplicate bus name {quoted(bus.name)}"))
    seen_ids: set[str] = set()
    seen_units: set[tuple[str, int]] = set()
    for i, meter in enumerate(config.meters):
        where = f"meters[{i}]"
        if meter.id in seen_ids:
            found.append((f"{where}.id", f"duplicate meter id {quoted(meter.id)}"))
        seen_ids.add(meter.id)
        if meter.bus not in bus_names:
            listing = f"(buses: {', '.join(bus_names) or 'none configured'})"
            found.append((f"{where}.bus", unknown_name("bus", meter.bus, bus_names, listing)))
        elif (meter.bus, meter.unit) in seen_units:
            found.append(
                (f"{where}.unit", f"unit {meter.unit} is already used on {quoted(meter.bus)}")
            )
        seen_units.add((meter.bus, meter.unit))
        if meter.profile not in profiles:
            listing = "(see: campus-energy profiles)"
            found.append(
                (f"{where}.profile", unknown_name("profile", meter.profile, profiles, listing))
            )
    return found


def _same_hours(zone: ZoneInfo, other: str) -> bool:
    """Whether `other`'s clock hours start when `zone`'s do (their UTC offsets differ by whole
    hours), in winter and summer of every year from 2000 to 2040."""
    theirs = ZoneInfo(other)
    for year in range(2000, 2041):
        for month in (1, 7):
            moment = datetime(year, month, 15, 12, tzinfo=UTC)
            ours, other_offset = (
                moment.astimezone(zone).utcoffset(),
                moment.astimezone(theirs).utcoffset(),
            )
            if ours is None or other_offset is None or (ours - other_offset).total_seconds() % 3600:
                return False
    return True


def _site_checks(config: Config) -> list[tuple[str, str]]:
    """Sites are named once and exist where they are named; a building is in one site."""
    found: list[tuple[str, str]] = []
    ids = config.site_ids
    for i, other in enumerate(config.sites):
        if ids.index(other.id) != i + 1:
            found.append((f"sites[{i}].id", f"duplicate site id {quoted(other.id)}"))
    listing = f"(sites: {', '.join(ids)})"

    def check(key: str, site: str | None) -> None:
        if site is not None and site not in ids:
            found.append((key, unknown_name("site", site, ids, listing)))

    buildings: dict[str, str] = {}
    for i, meter in enumerate(config.meters):
        check(f"meters[{i}].site", meter.site)
        if meter.building and meter.site in (None, *ids):
            site = config.site_of(meter)
            first = buildings.setdefault(meter.building, site)
            if first != site:
                found.append(
                    (
                        f"meters[{i}].site",
                        f"building {quoted(meter.building)} is in site {quoted(first)}: a "
                        "building belongs to one site (name buildings apart, e.g. "
                        f"{quoted(site.capitalize() + ' ' + meter.building)})",
                    )
                )
    for i, other in enumerate(config.sites):
        if other.timezone is not None and not _same_hours(config.site.zone, other.timezone):
            found.append(
                (
                    f"sites[{i}].timezone",
                    f"{quoted(other.timezone)} is not a whole number of hours from "
                    f"{quoted(config.site.timezone)} (site.timezone): the window store's "
                    "hourly rollups are clock hours of site.timezone, so every site's local "
                    "hours must start on them (docs/sites.md)",
                )
            )
    for i, report in enumerate(config.reports):
        check(f"reports[{i}].site", report.site)
        home = buildings.get(report.building or "")
        if report.site in ids and home is not None and home != report.site:
            found.append(
                (
                    f"reports[{i}].building",
                    f"building {quoted(report.building or '')} is in site {quoted(home)}, "
                    f"not {quoted(report.site or '')}",
                )
            )
    check("logger.site", config.logger.site)
    check("api.site", config.api.site)
    check("dashboard.site", config.dashboard.site)
    bus_names = {b.name for b in config.buses}
    for j, bus in enumerate(config.logger.buses):
        if bus not in bus_names:
            found.append((f"logger.buses[{j}]", unknown_name("bus", bus, bus_names, "")))
    prefix = config.mqtt.topic_prefix
    for j, topic in enumerate(config.bridge.topic_filters):
        if not topic.startswith(prefix + "/"):
            found.append(
                (f"bridge.topic_filters[{j}]", f"must be under mqtt.topic_prefix {quoted(prefix)}")
            )
        elif not any(_matches(topic, f"{root}/{meter}/reading")
                     for root, meter in _reading_places(config)):  # fmt: skip
            found.append(
                (
                    f"bridge.topic_filters[{j}]",
                    f"{quoted(topic)} matches no site's readings (the default site's are "
                    f"{quoted(prefix + '/<meter>/reading')}, another's "
                    f"{quoted(prefix + '/sites/<site>/<meter>/reading')})",
                )
            )
    return found


def _matches(topic_filter: str, topic: str) -> bool:
    """Whether an MQTT filter with '+' levels matches a topic ('+' there: any one level)."""
    wanted, levels = topic_filter.split("/"), topic.split("/")
    return len(wanted) == len(levels) and all(
        "+" in (w, t) or w == t for w, t in zip(wanted, levels, strict=True)
    )


def _reading_places(config: Config) -> list[tuple[str, str]]:
    """(topic root, meter) of every configured meter, and of a meter of any id ('+' stands
    for one) under every site's root."""
    places = [(config.topic_root(config.site_of(m)), m.id) for m in config.meters]
    return places + [(config.topic_root(site), "+") for site in config.site_ids]


def _resolve_paths(data: dict[str, Any], base: Path) -> None:
    """Make relative file paths relative to the config file's directory."""

    def fix(section: dict[str, Any] | None, key: str, default: Path | None = None) -> None:
        if not isinstance(section, dict):
            return
        value = section.get(key, None if default is None else str(default))
        if isinstance(value, str):
            path = Path(value).expanduser()
            section[key] = str(path if path.is_absolute() else base / path)

    def part(parent: dict[str, Any], name: str) -> dict[str, Any] | None:
        found = parent.setdefault(name, {})
        return found if isinstance(found, dict) else None

    # Data files left at their defaults live next to the config file too, not in whatever
    # folder the service happens to start in.
    fix(data, "profiles_dir")
    fix(part(data, "storage"), "path", StorageConfig().path)
    secrets = ("password_file", "signing_key_file")
    for key in (*secrets, "tls_ca_file", "tls_cert_file", "tls_key_file"):
        fix(data.get("mqtt"), key)
    bridge = part(data, "bridge")
    if bridge is not None:
        fix(bridge, "spool_path", BridgeConfig.model_fields["spool_path"].default)
        fix(part(bridge, "sqlite"), "path", SqliteSinkConfig().path)
        fix(bridge.get("firestore"), "credentials_file")
    tariffs = data.get("tariffs")
    for tariff in tariffs if isinstance(tariffs, list) else ():
        fix(tariff, "holidays_file")
    fix(data.get("emissions"), "hourly_file")
    alerts = part(data, "alerts")
    if alerts is not None:
        fix(alerts, "state_path", AlertsConfig.model_fields["state_path"].default)
        fix(alerts, "api_token_file")
        channels = alerts.get("channels")
        for channel in channels if isinstance(channels, list) else ():
            for key in ("password_file", "secret_file", "ca_file"):
                fix(channel, key)


def config_path(explicit: Path | None, environ: Mapping[str, str]) -> tuple[Path, bool]:
    """The config file to read and whether the user named it (explicitly or by environment)."""
    if explicit is not None:
        return explicit, True
    if environ.get(CONFIG_ENV):
        return Path(environ[CONFIG_ENV]), True
    return DEFAULT_CONFIG_PATH, False


def parse_config(
    data: Mapping[str, Any],
    environ: Mapping[str, str] | None = None,
    base_dir: Path | None = None,
) -> Config:
    """Validate a configuration mapping (plus environment overrides) into a `Config`.

    With `base_dir`, relative file paths are taken relative to it.
    """
    environ = environ or {}
    merged = apply_environment(dict(data), environ)
    dsn = environ.get(POSTGRES_DSN_ENV)
    bridge = merged.setdefault("bridge", {}) if dsn else None
    postgres = bridge.setdefault("postgres", {}) if isinstance(bridge, dict) else None
    if dsn and isinstance(postgres, dict) and not postgres.get("dsn"):
        postgres["dsn"] = dsn  # (a `bridge` or `postgres` that is no table is reported below)
    if base_dir is not None:
        _resolve_paths(merged, base_dir)
    try:
        config = Config.model_validate(merged)
    except ValidationError as exc:
        found = problems(exc, secrets=SECRET_KEYS)
        raise ConfigError([(named_key(k, merged), m) for k, m in found]) from None  # no values
    try:
        profiles = load_profiles(config.profiles_dir)
    except ProfileError as exc:
        raise ConfigError.single("profiles_dir", str(exc)) from exc
    found = _cross_check(config, profiles)
    found += cross_check(
        config.site.buildings,
        config.site.tariff,
        config.meters,
        config.virtual_meters,
        config.tariffs,
    )
    found += _window_checks(config)
    found += alerts_cross_check(config.alerts, config.reports, config.campus, config.meters)
    if found:
        raise ConfigError([(named_key(k, merged), m) for k, m in found])
    config._profiles = profiles
    config._tariffs, config._emissions = _billing_values(config, merged)
    config._secrets = _channel_secrets(config, merged, environ)
    return config


def _channel_secrets(
    config: Config, merged: Mapping[str, Any], environ: Mapping[str, str]
) -> dict[str, str]:
    """Each alert channel's secret, read from its file or environment variable."""
    found = {}
    for i, channel in enumerate(config.alerts.channels):
        key, path, variable = (
            ("password", channel.password_file, channel.password_env)
            if channel.kind == "email"
            else ("secret", channel.secret_file, channel.secret_env)
        )
        try:
            secret = read_secret(path, variable, environ)
        except ValueError as exc:
            suffix = "_file" if path is not None else "_env"
            named = named_key(f"alerts.channels[{i}].{key}{suffix}", merged)
            raise ConfigError.single(named, str(exc)) from None
        if secret is not None:
            found[channel.name] = secret
    return found


def _window_checks(config: Config) -> list[tuple[str, str]]:
    """A demand interval is made of whole windows (window_s divides 900, so 15, 30 and 60
    minutes always are; the check stands in case either rule ever widens)."""
    found = []
    for i, tariff in enumerate(config.tariffs):
        for j, version in enumerate(tariff.versions):
            demand = version.demand
            if demand is not None and (demand.interval_min * 60) % config.bridge.window_s:
                found.append(
                    (
                        f"tariffs[{i}].versions[{j}].demand.interval_min",
                        f"{demand.interval_min} minutes is not a whole number of windows "
                        f"(bridge.window_s = {config.bridge.window_s})",
                    )
                )
    return found


def _billing_values(
    config: Config, merged: Mapping[str, Any]
) -> tuple[dict[str, Tariff], EmissionFactors]:
    """The tariffs and emission factors, with the files they name read."""
    tariffs = {}
    for i, tariff in enumerate(config.tariffs):
        try:
            tariffs[tariff.id] = build_tariff(tariff)
        except ValueError as exc:
            key = named_key(f"tariffs[{i}].holidays_file", merged)
            raise ConfigError.single(key, str(exc)) from None
    try:
        emissions = build_emissions(config.emissions)
    except ValueError as exc:
        raise ConfigError.single("emissions.hourly_file", str(exc)) from None
    return tariffs, emissions


def load_config(path: Path | None = None, environ: Mapping[str, str] | None = None) -> Config:
    """Read, override and validate the configuration. Raises ConfigError naming the key."""
    environ = environ or {}
    file, named = config_path(path, environ)
    if not file.exists():
        if named:
            raise ConfigError.single("config", f"file not found: {file}")
        return parse_config({}, environ)
    if file.is_dir():
        raise ConfigError.single(
            "config", f"{file} is a folder: name the configuration file itself"
        )
    try:
        data = tomllib.loads(file.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError.single("config", f"cannot read {file}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError.single("config", f"{file} is not UTF-8 text: {exc.reason}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError.single("config", f"{file} is not valid TOML: {exc}") from exc
    config = parse_config(data, environ, base_dir=file.resolve().parent)
    config._source = file.resolve()
    return config
