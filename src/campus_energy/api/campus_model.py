"""The campus model as the API shows it (`/api/buildings`, `/api/meters`): buildings, where
each meter stands, virtual meters. Pure: built from the validated configuration alone."""

from __future__ import annotations

from typing import Any

from campus_energy.config import Config
from campus_energy.core.campus import Campus, MeterPlace, Occupancy, VirtualMeter
from campus_energy.core.tariffs import WEEKDAYS

NO_BUILDING = ""  # the building of the meters in none


def meter_kind(meter: MeterPlace) -> str:
    """'main' (its building's total), 'sub-meter' (of its parent) or 'top-level'."""
    if meter.role == "main":
        return "main"
    return "sub-meter" if meter.parent else "top-level"


def virtual_meter_answer(campus: Campus, meter: VirtualMeter) -> dict[str, Any]:
    """A virtual meter: its members as configured and the meters they come to, with weights."""
    expression = " ".join(f"{'-' if sign < 0 else '+'} {name}" for name, sign in meter.terms)
    return {
        "id": meter.id,
        "building": meter.building,
        "floor": meter.floor,
        "expression": expression.removeprefix("+ "),
        "terms": dict(sorted(campus.terms(meter.id).items())),
    }


def _clock(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"


def occupancy_answer(occupancy: Occupancy) -> dict[str, Any]:
    """Opening hours per weekday ("HH:MM-HH:MM" spans; none: closed) and holidays."""
    hours: dict[str, Any] = {
        day: [f"{_clock(a)}-{_clock(b)}" for a, b in occupancy.hours.get(day, ())]
        for day in WEEKDAYS
    }
    return {**hours, "holidays": [d.isoformat() for d in sorted(occupancy.holidays)]}


def _meters_of(config: Config, building: str) -> dict[str, Any]:
    campus = config.campus
    return {
        "meters": [
            {
                "id": m.id,
                "floor": config.meter(m.id).floor,
                "role": m.role,
                "parent": m.parent,
                "kind": meter_kind(m),
            }
            for m in campus.meters
            if m.building == building
        ],
        "virtual_meters": [
            virtual_meter_answer(campus, v) for v in campus.virtual_meters if v.building == building
        ],
    }


def campus_model_answer(config: Config) -> dict[str, Any]:
    """`/api/buildings`: every building (declared, or only named by its meters) with its
    area, tariff, opening hours, the basis of its total, its meters and virtual meters;
    then the meters in no building (an account of their own)."""
    campus = config.campus
    declared = {b.name for b in campus.buildings}
    buildings = []
    for name in campus.building_names():
        building = campus.building(name)
        total = campus.building_total(name)
        buildings.append(
            {
                "name": name,
                "declared": name in declared,
                "floor_area_m2": building.floor_area_m2,
                "tariff": campus.tariff_of(name),
                "occupancy": None
                if building.occupancy is None
                else occupancy_answer(building.occupancy),
                "basis": total.basis,
                "main_meter": total.main,
                **_meters_of(config, name),
            }
        )
    return {
        "timezone": config.site.zone.key,
        "site_tariff": campus.tariff,
        "buildings": buildings,
        "no_building": {
            "tariff": campus.tariff_of(NO_BUILDING),
            "basis": campus.unassigned_total().basis,
            **_meters_of(config, NO_BUILDING),
        },
    }
