"""The documented register maps of the built-in meter models, and what each register holds.

A model has two tables, as the firmware has: its input registers (FC 04)
carry the measurements, its holding registers (FC 03) its configuration.
Every register pair is a float32 field holding one named quantity; the names are
the standard field names (`voltage_v`, `power_w`, `import_energy_wh`, ...)
where a profile has them, and further names for the rest of the datasheet's
map. `derived_values` computes the quantities the load does not give directly
(apparent and reactive power, phase angles, totals, per-phase energies),
consistent with the power, the power factor and the import and export
registers. Pure: no clock, no I/O.
"""

from __future__ import annotations

import cmath
import math
from collections.abc import Mapping
from dataclasses import dataclass

from campus_energy.config import BusConfig
from campus_energy.core.models import FieldSpec, Profile

KWH = 1000.0  # a kWh register holds Wh / 1000
# Reactive energy follows active energy at the reactive-to-active ratio of a load at
# power factor 0.93 (the simulated loads run between 0.82 and 0.99)
REACTIVE_PER_ACTIVE = math.tan(math.acos(0.93))
PHASE_ANGLES_DEG = (0.0, -120.0, 120.0)  # L1, L2, L3 voltages on a balanced supply


@dataclass(frozen=True)
class MeterModel:
    """A meter model's documented input map, and the serial-speed codes of its config."""

    name: str
    inputs: tuple[FieldSpec, ...]
    baud_codes: Mapping[int, float]  # baud rate -> the code in holding register 0x001C


def _register(address: int, quantity: str, scale: float = 1.0) -> FieldSpec:
    """One float32 register pair holding `quantity` (= register value × scale)."""
    return FieldSpec(name=quantity, address=address, type="float32", scale=scale)


def _registers(start: int, *quantities: str, scale: float = 1.0) -> tuple[FieldSpec, ...]:
    """Consecutive float32 register pairs from `start`."""
    return tuple(_register(start + 2 * i, q, scale) for i, q in enumerate(quantities))


def _phases(template: str) -> tuple[str, str, str]:
    return (template.format(1), template.format(2), template.format(3))


_SINGLE_PHASE = (
    _register(0x0000, "voltage_v"),
    _register(0x0006, "current_a"),
    _register(0x000C, "power_w"),
    _register(0x0012, "apparent_power_va"),
    _register(0x0018, "reactive_power_var"),
    _register(0x001E, "power_factor"),
    _register(0x0024, "phase_angle_deg"),
    _register(0x0046, "frequency_hz"),
    *_registers(0x0048, "import_energy_wh", "export_energy_wh", scale=KWH),
    *_registers(0x004C, "import_reactive_energy_varh", "export_reactive_energy_varh", scale=KWH),
    *_registers(0x0156, "total_energy_wh", "total_reactive_energy_varh", scale=KWH),
)

# The SDM72D-M's map: the SDM630's without phase angles, reactive import and export
# and per-phase energies
_THREE_PHASE_TOTALS = (
    *_registers(0x0000, *_phases("voltage_l{}_v")),
    *_registers(0x0006, *_phases("current_l{}_a")),
    *_registers(0x000C, *_phases("power_l{}_w")),
    *_registers(0x0012, *_phases("apparent_power_l{}_va")),
    *_registers(0x0018, *_phases("reactive_power_l{}_var")),
    *_registers(0x001E, *_phases("power_factor_l{}")),
    _register(0x002A, "voltage_v"),  # average line to neutral
    _register(0x002E, "current_average_a"),
    _register(0x0030, "current_a"),  # sum of line currents
    _register(0x0034, "power_w"),
    _register(0x0038, "apparent_power_va"),
    _register(0x003C, "reactive_power_var"),
    _register(0x003E, "power_factor"),
    _register(0x0046, "frequency_hz"),
    *_registers(0x0048, "import_energy_wh", "export_energy_wh", scale=KWH),
    *_registers(0x00C8, "voltage_l1_l2_v", "voltage_l2_l3_v", "voltage_l3_l1_v"),
    _register(0x00CE, "voltage_line_to_line_v"),  # average line to line
    _register(0x00E0, "current_neutral_a"),
    *_registers(0x0156, "total_energy_wh", "total_reactive_energy_varh", scale=KWH),
)

_THREE_PHASE = (
    *_THREE_PHASE_TOTALS,
    *_registers(0x0024, *_phases("phase_angle_l{}_deg")),
    _register(0x0042, "phase_angle_deg"),
    *_registers(0x004C, "import_reactive_energy_varh", "export_reactive_energy_varh", scale=KWH),
    *_registers(0x015A, *_phases("import_energy_l{}_wh"), scale=KWH),
    *_registers(0x0160, *_phases("export_energy_l{}_wh"), scale=KWH),
    *_registers(0x0166, *_phases("total_energy_l{}_wh"), scale=KWH),
)

_SDM120_BAUD = {2400: 0.0, 4800: 1.0, 9600: 2.0, 1200: 5.0}
_SDM630_BAUD = {2400: 0.0, 4800: 1.0, 9600: 2.0, 19200: 3.0, 38400: 4.0}

MODELS: dict[str, MeterModel] = {
    m.name: m
    for m in (
        MeterModel("eastron-sdm120", _SINGLE_PHASE, _SDM120_BAUD),
        MeterModel("eastron-sdm230", _SINGLE_PHASE, _SDM120_BAUD),
        MeterModel("eastron-sdm630", _THREE_PHASE, _SDM630_BAUD),
        MeterModel("eastron-sdm72d", _THREE_PHASE_TOTALS, _SDM630_BAUD),
    )
}

# The configuration in the holding registers (FC 03), the same address on every model
CONFIG_REGISTERS = (
    _register(0x0012, "config_parity_code"),
    _register(0x0014, "config_address"),
    _register(0x001C, "config_baud_code"),
)
# Network parity and stop bits -> the code in holding register 0x0012
PARITY_CODES = {("N", 1): 0.0, ("E", 1): 1.0, ("O", 1): 2.0, ("N", 2): 3.0}


def model_of(profile: Profile) -> MeterModel | None:
    """The built-in model a profile reads (its name, or a name it extends: a profile named
    `eastron-sdm72d-v1` is an SDM72D); None for a model without a documented map here."""
    found = [
        m for name, m in MODELS.items() if profile.name == name or profile.name.startswith(name)
    ]
    return max(found, key=lambda m: len(m.name)) if found else None


def config_values(model: MeterModel, bus: BusConfig, unit: int) -> dict[str, float]:
    """The holding-register configuration of a unit on `bus`: what was set on its front panel.

    A setting the model cannot take (a baud rate it has no code for) is left out.
    """
    values = {"config_address": float(unit)}
    baud = model.baud_codes.get(bus.baudrate)
    if baud is not None:
        values["config_baud_code"] = baud
    parity = PARITY_CODES.get((bus.parity, bus.stopbits))
    if parity is not None:
        values["config_parity_code"] = parity
    return values


def _reactive(apparent: float, active: float) -> float:
    """Reactive power of an inductive load from apparent and active power."""
    return math.sqrt(max(apparent * apparent - active * active, 0.0))


def _angle_deg(power_factor: float) -> float:
    return math.degrees(math.acos(max(-1.0, min(1.0, power_factor))))


def _line_to_line(a: float, b: float) -> float:
    """|Va - Vb| for two phase voltages 120° apart."""
    return math.sqrt(a * a + b * b + a * b)


def derived_values(values: Mapping[str, float], phases: int) -> dict[str, float]:
    """The quantities of the datasheet's map that `values` (the load's voltage, current,
    power, power factor and frequency, and the import and export registers) does not hold.

    Total = import + export (an export register absent from `values` is 0: a
    consuming load); apparent power is V × I, reactive power what P and PF
    leave over; reactive energy follows each direction's active register at
    `REACTIVE_PER_ACTIVE`; per-phase energies are each phase's share of the power.
    """
    imported = values["import_energy_wh"]
    exported = values.get("export_energy_wh", 0.0)
    derived: dict[str, float] = {
        "export_energy_wh": exported,
        "total_energy_wh": imported + exported,
        "import_reactive_energy_varh": imported * REACTIVE_PER_ACTIVE,
        "export_reactive_energy_varh": exported * REACTIVE_PER_ACTIVE,
        "total_reactive_energy_varh": (imported + exported) * REACTIVE_PER_ACTIVE,
        "phase_angle_deg": _angle_deg(values["power_factor"]),
    }
    if phases == 1:
        apparent = values["voltage_v"] * values["current_a"]
        return derived | {
            "apparent_power_va": apparent,
            "reactive_power_var": _reactive(apparent, values["power_w"]),
        }
    power = values["power_w"]
    volts = [values[f"voltage_l{n}_v"] for n in (1, 2, 3)]
    currents = [values[f"current_l{n}_a"] for n in (1, 2, 3)]
    neutral = 0j
    for n, (volt, amps, angle) in enumerate(zip(volts, currents, PHASE_ANGLES_DEG, strict=True), 1):
        pf = values[f"power_factor_l{n}"]
        apparent = volt * amps
        share = values[f"power_l{n}_w"] / power if power else 1 / 3
        lag = _angle_deg(pf)
        neutral += cmath.rect(amps, math.radians(angle - lag))
        derived |= {
            f"apparent_power_l{n}_va": apparent,
            f"reactive_power_l{n}_var": _reactive(apparent, values[f"power_l{n}_w"]),
            f"phase_angle_l{n}_deg": lag,
            f"import_energy_l{n}_wh": imported * share,
            f"export_energy_l{n}_wh": exported * share,
            f"total_energy_l{n}_wh": (imported + exported) * share,
        }
    line = [_line_to_line(volts[i], volts[(i + 1) % 3]) for i in range(3)]
    return derived | {
        "apparent_power_va": sum(derived[f"apparent_power_l{n}_va"] for n in (1, 2, 3)),
        "reactive_power_var": sum(derived[f"reactive_power_l{n}_var"] for n in (1, 2, 3)),
        "current_average_a": sum(currents) / 3,
        "current_neutral_a": abs(neutral),
        "voltage_l1_l2_v": line[0],
        "voltage_l2_l3_v": line[1],
        "voltage_l3_l1_v": line[2],
        "voltage_line_to_line_v": sum(line) / 3,
    }
