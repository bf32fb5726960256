"""What a request may ask about: the campus, a building, a meter or a virtual meter."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, replace
from typing import Literal
from zoneinfo import ZoneInfo

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
    site: str | None = None  # the site it is in (None: the estate, or a span of sites)

    @property
    def is_account(self) -> bool:
        """Whether standing and demand charges apply (a building, the meters in no building,
        the campus), not only energy rates (a meter, a virtual meter)."""
        return self.kind in ("campus", "building")


def resolve(config: Config, kind: str, name: str | None, site: str | None = None) -> Scope:
    """The scope of a request. Raises UnknownScope (or ValueError for an unknown kind).

    With `site`, the campus and the meters in no building are that site's (its meters' part
    of the totals), and a building, meter or virtual meter must be in it."""
    found = _resolve(config, kind, name, site)
    if site is None:
        return found
    if kind == "campus" or (kind == "building" and name == UNASSIGNED):
        terms = {m: w for m, w in found.terms.items() if meter_site(config, m) == site}
        return replace(found, terms=terms, site=site)
    if found.site != site:
        raise UnknownScope(f"{kind} {str(name)[:80]!r} is not in site {site[:80]!r}")
    return found


def meter_site(config: Config, meter_id: str) -> str:
    """A meter's site (one the configuration lost: the default site)."""
    try:
        return config.site_of(config.meter(meter_id))
    except KeyError:
        return config.site.id


def sites_of(config: Config, meters: Collection[str]) -> set[str]:
    """The sites these meters are in."""
    return {meter_site(config, m) for m in meters}


def zone_of(config: Config, scope: Scope) -> ZoneInfo:
    """The time zone that cuts a scope's days and months: its site's; the estate's (the
    default site's) for a scope of several sites."""
    return config.site_zone(scope.site) if scope.site is not None else config.site.zone


def _resolve(config: Config, kind: str, name: str | None, site: str | None) -> Scope:
    campus = config.campus

    def one_site(meters: Collection[str]) -> str | None:
        """The site of all of them; the default site for none; None for several."""
        found = sites_of(config, meters) or {config.site.id}
        return found.pop() if len(found) == 1 else None

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
            one_site([m.id for m in campus.meters if m.building == name]),
        )
    if kind == "meter":
        try:
            meter = config.meter(name)
        except KeyError:
            raise UnknownScope(f"unknown meter {name[:80]!r}") from None
        return Scope(
            "meter",
            name,
            {name: 1.0},
            "the meter",
            meter.building,
            tariff_of(meter.building),
            site=config.site_of(meter),
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
            site=one_site(campus.terms(name)),
        )
    raise ValueError(f"unknown scope kind {kind!r}")


def accounts(config: Config, site: str | None = None) -> list[Scope]:
    """Every building's account, then the meters in no building (when there are any); with
    `site`, that site's."""
    found = [resolve(config, "building", name) for name in config.campus.building_names()]
    if site is not None:
        found = [s for s in found if s.site == site]
    unassigned = config.campus.top_level(UNASSIGNED)
    if site is not None:
        unassigned = [m for m in unassigned if meter_site(config, m) == site]
    if unassigned:
        found.append(resolve(config, "building", UNASSIGNED, site))
    return found
