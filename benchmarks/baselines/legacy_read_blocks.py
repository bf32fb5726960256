"""The original deployment's hand-written Modbus reads of its meter (the campus-legacy profile)."""

from __future__ import annotations

from campus_energy.core.planner import ReadRequest

# holding registers (FC 03): voltage, current, power (6-11); power factor (34-35); frequency (54-55)
LEGACY_BLOCKS = (ReadRequest(3, 6, 6), ReadRequest(3, 34, 2), ReadRequest(3, 54, 2))
