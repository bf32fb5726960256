"""The configuration of the campus model, tariffs and emissions, and the values built from it.

`[[site.buildings]]` (floor area, tariff, opening hours), `role`/`parent` on meters,
`[[virtual_meters]]`, `[[tariffs]]` with dated `[[tariffs.versions]]` and their
time-of-use `[[tariffs.versions.periods]]` and `demand`, `[billing]` and `[emissions]`. Each is
checked where it is read; `cross_check` checks what spans sections, and `build_*`
turn the checked sections into `core` values (reading the holiday and hourly factor
files they name).
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Sequence
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from campus_energy.core.campus import (
    Building,
    Campus,
    MeterPlace,
    Occupancy,
    VirtualMeter,
    parse_terms,
)
from campus_energy.core.campus import cycle as virtual_cycle
from campus_energy.core.emissions import EmissionFactors
from campus_energy.core.tariffs import (
    DEMAND_INTERVALS_MIN,
    WEEKDAYS,
    DemandCharge,
    Period,
    Ratchet,
    Tariff,
    TariffVersion,
    check_periods,
    day_kinds,
    parse_clock,
)
from campus_energy.core.timestamps import datetime_ms

_ID = re.compile(r"^[a-z0-9_-]+$")
MAX_FILE_BYTES = 4 * 1024 * 1024  # a holiday or hourly factor file (a year of hours is ~250 kB)


def _identifier(value: str) -> str:
    if not _ID.match(value):
        raise ValueError(f"must use only a-z, 0-9, '-' and '_', got {value!r}")
    return value


Identifier = Annotated[str, AfterValidator(_identifier)]  # an id: a-z, 0-9, '-', '_'


class _Part(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _decimal(value: Any) -> Decimal:
    """A price from TOML: a number or a string ("0.1234"); floats by their shortest text."""
    if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
        raise ValueError(f"must be a number, got {value!r}")
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation:
        raise ValueError(f"must be a number, got {value!r}") from None
    if not number.is_finite():
        raise ValueError(f"must be a finite number, got {value!r}")
    return number


def _refused(loc: tuple[int | str, ...], message: str, value: Any) -> ValidationError:
    """A refusal of the item at `loc` below the value being validated, so that the key
    names the item itself ('versions[1].valid_from'), not the list holding it."""
    kind = PydanticCustomError("value_error", "{error}", {"error": message})
    return ValidationError.from_exception_data(
        "refused", [InitErrorDetails(type=kind, loc=loc, input=value)]
    )


def _price(value: Any) -> Decimal:
    number = _decimal(value)
    if number < 0:
        raise ValueError(f"must not be negative, got {value!r}")
    return number


class OccupancyConfig(_Part):
    """Opening hours per weekday: "08:00-18:00", several spans, or [] (closed all day)."""

    mon: tuple[str, ...] = ()
    tue: tuple[str, ...] = ()
    wed: tuple[str, ...] = ()
    thu: tuple[str, ...] = ()
    fri: tuple[str, ...] = ()
    sat: tuple[str, ...] = ()
    sun: tuple[str, ...] = ()
    holidays: tuple[date, ...] = ()

    @field_validator(*WEEKDAYS, mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator(*WEEKDAYS)
    @classmethod
    def _check_spans(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for span in value:
            _span(span)
        return value

    def build(self) -> Occupancy:
        hours = {day: tuple(_span(s) for s in getattr(self, day)) for day in WEEKDAYS}
        return Occupancy({d: s for d, s in hours.items() if s}, frozenset(self.holidays))


def _span(text: str) -> tuple[int, int]:
    parts = text.split("-")
    if len(parts) != 2:
        raise ValueError(f"must be a span 'HH:MM-HH:MM', got {text!r}")
    start, end = parse_clock(parts[0].strip()), parse_clock(parts[1].strip())
    if end <= start:
        raise ValueError(f"must end after it starts (a span past midnight is two), got {text!r}")
    return start, end


class BuildingConfig(_Part):
    name: str = Field(min_length=1, max_length=100)
    floor_area_m2: float | None = Field(default=None, gt=0, le=10_000_000)
    tariff: str | None = None
    occupancy: OccupancyConfig | None = None


class VirtualMeterConfig(_Part):
    id: Identifier
    building: str = ""
    floor: str = ""
    terms: str = Field(min_length=1, max_length=2000)

    @field_validator("terms")
    @classmethod
    def _check_terms(cls, value: str) -> str:
        parse_terms(value)
        return value


class PeriodConfig(_Part):
    name: str = Field(min_length=1, max_length=40)
    rate: Decimal
    days: tuple[str, ...] = ("all",)
    start: str = "00:00"
    end: str = "24:00"
    months: tuple[int, ...] = ()

    _rate = field_validator("rate", mode="before")(lambda cls, v: _price(v))

    @field_validator("days")
    @classmethod
    def _check_days(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("must name at least one day (e.g. 'weekdays')")
        day_kinds(value)
        return value

    @field_validator("start", "end")
    @classmethod
    def _check_clock(cls, value: str) -> str:
        parse_clock(value)
        return value

    @field_validator("months")
    @classmethod
    def _check_months(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        wrong = [m for m in value if not 1 <= m <= 12]
        if wrong:
            raise ValueError(f"months are 1 to 12, got {wrong[0]}")
        return value

    @model_validator(mode="after")
    def _check_length(self) -> PeriodConfig:
        if parse_clock(self.start) == parse_clock(self.end):
            raise ValueError(f"start and end are both {self.start}: use 00:00-24:00 for all day")
        return self

    def build(self) -> Period:
        return Period(
            self.name,
            self.rate,
            day_kinds(self.days),
            parse_clock(self.start),
            parse_clock(self.end),
            frozenset(self.months),
        )


class DemandConfig(_Part):
    interval_min: int = 15
    price_per_kw: Decimal
    ratchet_share: Decimal = Decimal(0)
    ratchet_months: int = Field(default=11, ge=1, le=36)
    minimum_kw: Decimal = Decimal(0)

    _prices = field_validator("price_per_kw", "minimum_kw", mode="before")(lambda cls, v: _price(v))

    @field_validator("ratchet_share", mode="before")
    @classmethod
    def _check_share(cls, value: Any) -> Decimal:
        share = _decimal(value)
        if not 0 <= share <= 1:
            raise ValueError(f"must be a share between 0 and 1, got {value!r}")
        return share

    @field_validator("interval_min")
    @classmethod
    def _check_interval(cls, value: int) -> int:
        if value not in DEMAND_INTERVALS_MIN:
            raise ValueError(f"must be 15, 30 or 60 (minutes), got {value}")
        return value

    def build(self) -> DemandCharge:
        ratchet = Ratchet(self.ratchet_share, self.ratchet_months, self.minimum_kw)
        return DemandCharge(self.interval_min, self.price_per_kw, ratchet)


class TariffVersionConfig(_Part):
    valid_from: date
    default_rate: Decimal | None = None
    standing_per_day: Decimal = Decimal(0)
    standing_per_month: Decimal = Decimal(0)
    periods: tuple[PeriodConfig, ...] = ()
    demand: DemandConfig | None = None

    _prices = field_validator(
        "default_rate", "standing_per_day", "standing_per_month", mode="before"
    )(lambda cls, v: None if v is None else _price(v))

    @model_validator(mode="after")
    def _check_periods(self) -> TariffVersionConfig:
        names = [p.name for p in self.periods]
        for i, name in enumerate(names):
            if names.index(name) != i:
                raise _refused(("periods", i, "name"), f"duplicate period name {name!r}", name)
        found = check_periods(tuple(p.build() for p in self.periods), self.default_rate is not None)
        if found:
            index, message = found[0]
            if index is None:
                raise ValueError(message)
            raise _refused(("periods", index), message, names[index])
        return self

    def build(self) -> TariffVersion:
        return TariffVersion(
            self.valid_from,
            tuple(p.build() for p in self.periods),
            self.default_rate,
            self.standing_per_day,
            self.standing_per_month,
            None if self.demand is None else self.demand.build(),
        )


class TariffConfig(_Part):
    id: Identifier
    currency: str = Field(default="EUR", pattern=r"^[A-Z]{3}$")
    decimals: int = Field(default=2, ge=0, le=4)
    holidays: tuple[date, ...] = ()
    holidays_file: Path | None = None
    versions: tuple[TariffVersionConfig, ...]

    @field_validator("versions")
    @classmethod
    def _check_order(
        cls, value: tuple[TariffVersionConfig, ...]
    ) -> tuple[TariffVersionConfig, ...]:
        # (checked here, not by min_length: that also reports a list whose items fail as empty)
        if not value:
            raise ValueError("needs at least one version")
        for i in range(1, len(value)):
            if value[i].valid_from <= value[i - 1].valid_from:
                raise _refused(
                    (i, "valid_from"),
                    f"{value[i].valid_from} is not after the version before it "
                    f"({value[i - 1].valid_from}): list versions in date order, each once",
                    value[i].valid_from.isoformat(),
                )
        return value


class BillingConfig(_Part):
    """How bills count energy (`[billing]`)."""

    include_estimated: bool = Field(
        default=True,
        description="bill the energy the meters' own registers counted across gaps (estimated, "
        "shown apart on the bill); false: measured energy only",
    )


class AnnualFactorConfig(_Part):
    valid_from: date
    kg_per_kwh: Decimal

    _factor = field_validator("kg_per_kwh", mode="before")(lambda cls, v: _price(v))


class EmissionsConfig(_Part):
    factors: tuple[AnnualFactorConfig, ...] = ()
    hourly_file: Path | None = Field(
        default=None, description="CSV: UTC hour (ISO 8601), g CO₂/kWh; a header row is allowed"
    )

    @field_validator("factors")
    @classmethod
    def _check_order(cls, value: tuple[AnnualFactorConfig, ...]) -> tuple[AnnualFactorConfig, ...]:
        for i in range(1, len(value)):
            if value[i].valid_from <= value[i - 1].valid_from:
                raise _refused(
                    (i, "valid_from"),
                    f"{value[i].valid_from} is not after the factor before it "
                    f"({value[i - 1].valid_from})",
                    value[i].valid_from.isoformat(),
                )
        return value


Problems = list[tuple[str, str]]


def cross_check(
    buildings: Sequence[BuildingConfig],
    site_tariff: str | None,
    meters: Sequence[Any],
    virtual_meters: Sequence[VirtualMeterConfig],
    tariffs: Sequence[TariffConfig],
) -> Problems:
    """What spans sections: names that must exist, roles, parents and virtual meters' cycles."""
    found: Problems = []
    tariff_ids = [t.id for t in tariffs]
    for i, tariff in enumerate(tariffs):
        if tariff_ids.index(tariff.id) != i:
            found.append((f"tariffs[{i}].id", f"duplicate tariff id {tariff.id!r}"))
    if site_tariff is not None and site_tariff not in tariff_ids:
        found.append(("site.tariff", _unknown("tariff", site_tariff, tariff_ids)))
    names = [b.name for b in buildings]
    for i, building in enumerate(buildings):
        if names.index(building.name) != i:
            found.append((f"site.buildings[{i}].name", f"duplicate building {building.name!r}"))
        if building.tariff is not None and building.tariff not in tariff_ids:
            found.append(
                (f"site.buildings[{i}].tariff", _unknown("tariff", building.tariff, tariff_ids))
            )
    meter_ids = {m.id: m for m in meters}
    mains: dict[str, str] = {}
    for i, meter in enumerate(meters):
        where = f"meters[{i}]"
        if names and meter.building and meter.building not in names:
            found.append((f"{where}.building", _unknown("building", meter.building, names)))
        if meter.role == "main":
            if meter.parent is not None:
                found.append((f"{where}.parent", "a building's main meter has no parent"))
            if not meter.building:
                found.append((f"{where}.role", "a main meter needs its building"))
            elif meter.building in mains:
                found.append(
                    (
                        f"{where}.role",
                        f"building {meter.building!r} has a main meter already "
                        f"({mains[meter.building]!r})",
                    )
                )
            else:
                mains[meter.building] = meter.id
        if meter.parent is not None:
            parent = meter_ids.get(meter.parent)
            if parent is None:
                found.append((f"{where}.parent", _unknown("meter", meter.parent, meter_ids)))
            elif parent.building != meter.building:
                found.append(
                    (
                        f"{where}.parent",
                        f"the parent {meter.parent!r} is in building {parent.building!r}, "
                        f"not {meter.building!r}: a sub-meter is in its parent's building",
                    )
                )
    found += _parent_cycles(meters)
    every = set(meter_ids)
    known_buildings = set(names) | {m.building for m in meters if m.building}
    for i, virtual in enumerate(virtual_meters):
        where = f"virtual_meters[{i}]"
        if virtual.id in every:
            found.append((f"{where}.id", f"{virtual.id!r} is already a meter or virtual meter"))
        every.add(virtual.id)
        if virtual.building and virtual.building not in known_buildings:
            found.append(
                (f"{where}.building", _unknown("building", virtual.building, known_buildings))
            )
    virtual_ids = {v.id for v in virtual_meters}
    for i, virtual in enumerate(virtual_meters):
        for member, _ in parse_terms(virtual.terms):
            if member not in meter_ids and member not in virtual_ids:
                found.append((f"virtual_meters[{i}].terms", _unknown("meter", member, every)))
    loop = virtual_cycle(tuple(_virtual(v) for v in virtual_meters))
    if loop:
        index = next(i for i, v in enumerate(virtual_meters) if v.id == loop[0])
        found.append((f"virtual_meters[{index}].terms", f"a cycle: {' -> '.join(loop)}"))
    return found


def _parent_cycles(meters: Sequence[Any]) -> Problems:
    parents = {m.id: m.parent for m in meters}
    for i, meter in enumerate(meters):
        seen = {meter.id}
        node = parents.get(meter.id)
        while node is not None and node in parents:
            if node in seen:
                return [(f"meters[{i}].parent", f"a cycle of parents through {meter.id!r}")]
            seen.add(node)
            node = parents[node]
    return []


def _unknown(kind: str, name: str, choices: Any) -> str:
    listing = ", ".join(sorted(choices)) or "none configured"
    return f"unknown {kind} {name!r} (known: {listing})"


def _virtual(config: VirtualMeterConfig) -> VirtualMeter:
    return VirtualMeter(config.id, config.building, parse_terms(config.terms), config.floor)


def build_campus(
    buildings: Sequence[BuildingConfig],
    site_tariff: str | None,
    meters: Sequence[Any],
    virtual_meters: Sequence[VirtualMeterConfig],
) -> Campus:
    return Campus(
        tuple(
            Building(
                b.name,
                b.floor_area_m2,
                b.tariff,
                None if b.occupancy is None else b.occupancy.build(),
            )
            for b in buildings
        ),
        tuple(MeterPlace(m.id, m.building, m.role, m.parent) for m in meters),
        tuple(_virtual(v) for v in virtual_meters),
        site_tariff,
    )


def build_tariff(config: TariffConfig) -> Tariff:
    """The tariff, with the holidays of its file. Raises ValueError naming the line."""
    holidays = set(config.holidays)
    if config.holidays_file is not None:
        for number, line in enumerate(_lines(config.holidays_file), start=1):
            text = line.split("#", 1)[0].strip()
            if not text:
                continue
            try:
                holidays.add(date.fromisoformat(text))
            except ValueError:
                raise ValueError(
                    f"{config.holidays_file} line {number}: not a date 'YYYY-MM-DD'"
                ) from None
    return Tariff(
        config.id,
        config.currency,
        tuple(v.build() for v in config.versions),
        frozenset(holidays),
        config.decimals,
    )


def build_emissions(config: EmissionsConfig) -> EmissionFactors:
    """The factors, with the hourly file's. Raises ValueError naming the line."""
    annual = tuple((f.valid_from, f.kg_per_kwh) for f in config.factors)
    hourly: dict[int, Decimal] = {}
    if config.hourly_file is not None:
        rows = csv.reader(io.StringIO("\n".join(_lines(config.hourly_file))))
        for number, row in enumerate(rows, start=1):
            if not row or not "".join(row).strip():
                continue
            hour, grams = _hourly_row(row, number, config.hourly_file)
            if hour is None:
                continue  # the header
            if hour in hourly:
                raise ValueError(f"{config.hourly_file} line {number}: this hour is listed twice")
            hourly[hour] = grams
    return EmissionFactors(annual, hourly)


def _hourly_row(row: list[str], number: int, path: Path) -> tuple[int | None, Decimal]:
    where = f"{path} line {number}"
    if len(row) != 2:
        raise ValueError(f"{where}: expected 2 columns (UTC hour, g CO2/kWh), got {len(row)}")
    text, value = row[0].strip(), row[1].strip()
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        if number == 1:
            return None, Decimal(0)
        raise ValueError(f"{where}: not an ISO 8601 hour, got {text[:40]!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    if (moment.minute, moment.second, moment.microsecond) != (0, 0, 0):
        raise ValueError(f"{where}: {text[:40]!r} is not the start of an hour")
    try:
        grams = _price(value)
    except ValueError as exc:
        raise ValueError(f"{where}: g CO2/kWh {exc}") from None
    return datetime_ms(moment.astimezone(UTC)), grams


def _lines(path: Path) -> list[str]:
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise ValueError(f"{path} is {size} bytes, more than {MAX_FILE_BYTES}")
        return path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ValueError(f"{path} is not UTF-8 text") from None
