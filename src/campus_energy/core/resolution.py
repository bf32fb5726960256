"""The resolution at which readings are kept: each core field as an integer count of a small unit.

Storing integers keeps rows compact and makes every stored value exactly
reproducible: energy is integrated from the power as stored, so anyone can
recompute it from the table and get the same microwatt-hours.
"""

from __future__ import annotations

import math

# field name -> size of one stored step, in the field's unit
RESOLUTION: dict[str, float] = {
    "voltage_v": 0.01,
    "current_a": 0.001,
    "power_w": 0.01,
    "power_factor": 0.0001,
    "frequency_hz": 0.001,
    "import_energy_wh": 0.1,
    "export_energy_wh": 0.1,
}
STEPS_PER_UNIT: dict[str, int] = {name: round(1 / step) for name, step in RESOLUTION.items()}
MAX_STEPS = 2**63 - 1  # SQLite's INTEGER range


def to_steps(name: str, value: float | None) -> int | None:
    """The stored integer for `value`; None for None, non-finite or out-of-range values."""
    if value is None or not math.isfinite(value):
        return None
    steps = round(value * STEPS_PER_UNIT[name])
    return steps if -MAX_STEPS <= steps <= MAX_STEPS else None


def from_steps(name: str, steps: int | None) -> float | None:
    return None if steps is None else steps / STEPS_PER_UNIT[name]


def quantize(name: str, value: float) -> float:
    """`value` as it will read back from the store."""
    steps = to_steps(name, value)
    return value if steps is None else steps / STEPS_PER_UNIT[name]
