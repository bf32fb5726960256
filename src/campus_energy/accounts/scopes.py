"""What a request may ask about: the campus, a building, a meter or a virtual meter."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from campus_energy.config import Config
from campus_energy.core.campus import Terms
from campus_energy.core.tariffs import Tariff
from campus_energy.errors import CampusEnergyError

Kind = Literal["campus", "building", "meter", "virtual"]
KINDS: tuple[Kind, ...] = ("campus", "building", "meter", "virtual")
UNASSIGNED = ""  # the account of the meters in no building


class UnknownScope(CampusEnergyError):
    """A building, meter or virtual meter the configuration does not name."""


@dataclass(frozen=True)
class Scope:
    """A thing to account for: its kind and name, the meters it sums, how, and its tariff."""

    kind: Kind
    name: str | None
    terms: Terms
    basis: str  # how `terms` were made, in words
    building: str | None  # the building it belongs to ('' none; None: the campus)
    tariff: Tariff | None
    floor_area_m2: float | None = None

    @property
    def is_account(self) -> bool:
        """Whether standing and demand charges apply (a building, the meters in no building,
        the campus), not only energy rates (a meter, a virtual meter)."""
        return self.kind in ("campus", "building")


def resolve(config: Config, kind: str, name: str | None) -> Scope:
    """The scope of a request. Raises UnknownScope (or ValueError for an unknown kind)."""
    campus = config.campus
    tariffs = config.tariff_values

    def tariff_of(building: str) -> Tariff | None:
        found = campus.tariff_of(building)
        return None if found is None else tariffs[found]

    if kind == "campus":
        total = campus.campus_total()
        return Scope("campus", None, total.terms, total.basis, None, tariff_of(UNASSIGNED))
    if name is None:
        raise ValueError(f"a {kind} scope needs a name")
    if kind == "building":
        if name == UNASSIGNED:
            total = campus.unassigned_total()
            return Scope("building", name, total.terms, total.basis, name, tariff_of(name))
        try:
            building = campus.building(name)
        except KeyError:
            raise UnknownScope(f"unknown building {name[:80]!r}") from None
        total = campus.building_total(name)
        return Scope(
            "building",
            name,
            total.terms,
            total.basis,
            name,
            tariff_of(name),
            building.floor_area_m2,
        )
    if kind == "meter":
        try:
            meter = config.meter(name)
        except KeyError:
            raise UnknownScope(f"unknown meter {name[:80]!r}") from None
        return Scope(
            "meter", name, {name: 1.0}, "the meter", meter.building, tariff_of(meter.building)
        )
    if kind == "virtual":
        try:
            virtual = campus.virtual(name)
        except KeyError:
            raise UnknownScope(f"unknown virtual meter {name[:80]!r}") from None
        terms = " ".join(f"{'-' if s < 0 else '+'} {m}" for m, s in virtual.terms).lstrip("+ ")
        return Scope(
            "virtual",
            name,
            campus.terms(name),
            f"virtual: {terms}",
            virtual.building,
            tariff_of(virtual.building),
        )
    raise ValueError(f"unknown scope kind {kind!r}")


def accounts(config: Config) -> list[Scope]:
    """Every building's account, then the meters in no building (when there are any)."""
    found = [resolve(config, "building", name) for name in config.campus.building_names()]
    if config.campus.top_level(UNASSIGNED):
        found.append(resolve(config, "building", UNASSIGNED))
    return found
