"""The campus model: buildings, which meter stands for a building, and virtual meters.

A meter is either a building's main meter (`role = "main"`), a sub-meter of another
meter of its building (`parent`), or a top-level meter. A building's total is its
main meter when it has one, else the sum of its top-level meters; the campus total
is the sum of the buildings' totals and of the top-level meters in no building.
So a sub-meter is never counted twice, and every total says which way it was made.

A virtual meter is a signed sum of meters and other virtual meters
("admin-main - admin-f1-001 - admin-f2-001": the unmetered remainder); `terms`
flattens it into meter ids and weights. Pure: built from the validated configuration.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime

from campus_energy.core.tariffs import WEEKDAYS

Terms = dict[str, float]  # meter id -> weight (+1 or -1; 0 never kept)
_TERM = re.compile(r"\s*([+-])?\s*([a-z0-9_-]+)\s*")


def parse_terms(text: str) -> tuple[tuple[str, int], ...]:
    """'a - b + c' as ((a, 1), (b, -1), (c, 1)). Raises ValueError naming what is wrong."""
    found: list[tuple[str, int]] = []
    at = 0
    while at < len(text):
        match = _TERM.match(text, at)
        if match is None or match.end() == at:
            raise ValueError(f"cannot read {text[at:]!r}: terms are meter ids joined by + and -")
        sign, name = match.groups()
        if found and sign is None:
            raise ValueError(f"{name!r} needs a + or - before it")
        found.append((name, -1 if sign == "-" else 1))
        at = match.end()
    if not found:
        raise ValueError("needs at least one meter id")
    return tuple(found)


@dataclass(frozen=True)
class Occupancy:
    """Opening hours per weekday (local [start, end) minutes; none: closed) and holidays
    (closed all day)."""

    hours: Mapping[str, tuple[tuple[int, int], ...]] = field(default_factory=dict)
    holidays: frozenset[date] = frozenset()

    def is_open(self, moment: datetime) -> bool:
        """Whether the building is open at a local (zone-aware or naive local) moment."""
        if moment.date() in self.holidays:
            return False
        minute = moment.hour * 60 + moment.minute
        spans = self.hours.get(WEEKDAYS[moment.weekday()], ())
        return any(start <= minute < end for start, end in spans)


@dataclass(frozen=True)
class Building:
    name: str
    floor_area_m2: float | None = None
    tariff: str | None = None
    occupancy: Occupancy | None = None


@dataclass(frozen=True)
class MeterPlace:
    """Where a meter stands in the campus."""

    id: str
    building: str  # '' for none
    role: str | None = None  # "main"
    parent: str | None = None


@dataclass(frozen=True)
class VirtualMeter:
    id: str
    building: str
    terms: tuple[tuple[str, int], ...]  # members (meters or virtual meters) and signs
    floor: str = ""


@dataclass(frozen=True)
class Total:
    """How a total is made: its terms and in words ('main meter X' / 'sum of ...')."""

    terms: Terms
    basis: str
    main: str | None = None


@dataclass(frozen=True)
class Campus:
    buildings: tuple[Building, ...]
    meters: tuple[MeterPlace, ...]
    virtual_meters: tuple[VirtualMeter, ...] = ()
    tariff: str | None = None  # the site's tariff: buildings without one, meters in none

    def building(self, name: str) -> Building:
        """A declared building, or an implicit one (only named by its meters)."""
        for building in self.buildings:
            if building.name == name:
                return building
        if name and any(m.building == name for m in self.meters):
            return Building(name)
        raise KeyError(name)

    def building_names(self) -> list[str]:
        """Declared buildings in their order, then buildings only meters name, sorted."""
        declared = [b.name for b in self.buildings]
        named = sorted({m.building for m in self.meters if m.building} - set(declared))
        return declared + named

    def tariff_of(self, building: str) -> str | None:
        """The tariff a building is billed on ('' : meters in no building)."""
        own = self.building(building).tariff if building else None
        return own or self.tariff

    def top_level(self, building: str) -> list[str]:
        return [m.id for m in self.meters if m.building == building and m.parent is None]

    def building_total(self, name: str) -> Total:
        self.building(name)  # KeyError for an unknown building
        main = next((m.id for m in self.meters if m.building == name and m.role == "main"), None)
        if main is not None:
            return Total({main: 1.0}, f"main meter {main}", main)
        tops = self.top_level(name)
        return Total({m: 1.0 for m in tops}, f"sum of {len(tops)} top-level meter(s)")

    def unassigned_total(self) -> Total:
        tops = self.top_level("")
        return Total({m: 1.0 for m in tops}, f"sum of {len(tops)} meter(s) in no building")

    def campus_total(self) -> Total:
        terms: Terms = {}
        for name in self.building_names():
            terms.update(self.building_total(name).terms)
        terms.update(self.unassigned_total().terms)
        return Total(terms, "sum of the buildings' totals and the meters in no building")

    def virtual(self, virtual_id: str) -> VirtualMeter:
        for meter in self.virtual_meters:
            if meter.id == virtual_id:
                return meter
        raise KeyError(virtual_id)

    def terms(self, meter_id: str) -> Terms:
        """A meter's or virtual meter's terms, flattened into meters (weights that cancel
        are dropped). KeyError for an unknown id."""
        if any(m.id == meter_id for m in self.meters):
            return {meter_id: 1.0}
        found: Terms = {}
        for member, sign in self.virtual(meter_id).terms:
            for meter, weight in self.terms(member).items():
                found[meter] = found.get(meter, 0.0) + sign * weight
        return {m: w for m, w in found.items() if w}


def cycle(virtual_meters: tuple[VirtualMeter, ...]) -> list[str] | None:
    """A cycle among virtual meters' members (the ids along it), or None."""
    members = {v.id: [name for name, _ in v.terms] for v in virtual_meters}
    state: dict[str, int] = {}  # 1: on the path, 2: done

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for member in members.get(node, []):
            if member not in members:
                continue
            if state.get(member) == 1:
                return [*path[path.index(member) :], member] if member in path else [member]
            if state.get(member) is None:
                found = visit(member, [*path, member])
                if found:
                    return found
        state[node] = 2
        return None

    for start in members:
        if state.get(start) is None:
            found = visit(start, [start])
            if found:
                return found
    return None
