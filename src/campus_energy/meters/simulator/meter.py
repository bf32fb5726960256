"""One virtual meter: its load, its exact energy registers, what it measures and its faults.

The import and export registers are functions of wall-clock time alone: a
per-meter starting value plus the exact energy in that direction since
`load.EPOCH_S`. Two simulators started at different times answer the same
registers for the same instant, so a demo restart never moves them backwards.
Only a replacement (a new meter installed at `t`: `replace(t)`, or
`replace_at_s` after the simulator started) restarts them, both from 0.

A meter with `simulate.pv_peak_w` measures a building with rooftop PV
(`solar.SolarBuilding`): load − PV, negative while it exports. Without it,
the meter follows a `CampusLoad` and its export register stays at 0.
"""

from __future__ import annotations

import logging
import math
import random
import zlib
from dataclasses import dataclass
from typing import Literal
from zoneinfo import ZoneInfo

from campus_energy.config import MeterConfig, SimulationConfig
from campus_energy.core.models import Profile
from campus_energy.meters.simulator.load import (
    EPOCH_S,
    CampusLoad,
    electrical_values,
    unit_random,
)
from campus_energy.meters.simulator.models import derived_values
from campus_energy.meters.simulator.solar import Energy, SolarBuilding

log = logging.getLogger(__name__)

Fault = Literal["ok", "timeout", "exception", "corrupt"]


def meter_seed(meter_id: str) -> int:
    """A stable seed for a meter that has none configured."""
    return zlib.crc32(meter_id.encode())


@dataclass
class FaultCounts:
    answered: int = 0
    timeout: int = 0
    exception: int = 0
    corrupt: int = 0


class VirtualMeter:
    """A meter following a `CampusLoad` or a `SolarBuilding`; its registers are the exact
    integrals of each direction."""

    load: CampusLoad | SolarBuilding

    def __init__(
        self,
        meter: MeterConfig,
        profile: Profile,
        zone: ZoneInfo,
        *,
        started_at: float,
        faults: SimulationConfig | None = None,
    ) -> None:
        sim = meter.simulate
        self.meter = meter
        self.profile = profile
        self.faults = faults or sim
        self.seed = sim.seed if sim.seed is not None else meter_seed(meter.id)
        scale = 3.0 if profile.phases == 3 else 1.0
        base = (
            sim.base_w
            if sim.base_w is not None
            else scale * (300 + 1200 * unit_random(self.seed, 21))
        )
        peak = sim.peak_w if sim.peak_w is not None else base * (3 + 3 * unit_random(self.seed, 22))
        self.initial_wh = 1e6 * (1 + 8 * unit_random(self.seed, 23))  # the register at EPOCH_S
        self.initial_export_wh = 0.0  # a meter that never exports has counted nothing
        if sim.pv_peak_w:
            self.load = SolarBuilding(
                self.seed, base, max(peak, base), sim.pv_peak_w, sim.cloudiness, zone
            )
            self.initial_export_wh = 1e5 * (1 + 8 * unit_random(self.seed, 24))
            if started_at >= EPOCH_S:  # tabulate the days since EPOCH_S now, not mid-read
                self.load.since_epoch(started_at)
        else:
            self.load = CampusLoad(self.seed, base, max(peak, base), zone)
        self.started_at = started_at
        self.replaced_at: float | None = None
        self._highest = Energy(-math.inf, -math.inf)
        self._rng = random.Random(self.seed)
        self.counts = FaultCounts()

    @property
    def unit(self) -> int:
        return self.meter.unit

    def energy(self, t0: float, t1: float) -> Energy:
        """Exact import and export over [t0, t1]: the ground truth."""
        if isinstance(self.load, SolarBuilding):
            return self.load.energy(t0, t1)
        return Energy(self.load.energy_wh(t0, t1), 0.0)

    def registers(self, t: float) -> Energy:
        """The import and export registers at `t` as pure functions of time: the same in every
        process."""
        if self.replaced_at is not None and t >= self.replaced_at:
            return self.energy(self.replaced_at, t)
        if isinstance(self.load, SolarBuilding):
            return Energy(self.initial_wh, self.initial_export_wh) + self.load.since_epoch(t)
        return Energy(self.initial_wh + self.load.energy_since_epoch_wh(t), 0.0)

    def register_wh(self, t: float) -> float:
        """The import register at `t` as a pure function of time."""
        return self.registers(t).import_wh

    def served_registers(self, t: float) -> Energy:
        """The registers at `t`; never lower than an answer already given (a clock that steps
        back, or rounding in the last digit, cannot make them run backwards)."""
        now = self.registers(t)
        value = Energy(
            max(now.import_wh, self._highest.import_wh),
            max(now.export_wh, self._highest.export_wh),
        )
        self._highest = value
        return value

    def import_energy_wh(self, t: float) -> float:
        """The import register at `t`, as served."""
        return self.served_registers(t).import_wh

    def energy_since_start_wh(self, t: float) -> float:
        """Exact energy imported since the simulator started: the ground truth."""
        return self.energy(self.started_at, t).import_wh

    def export_since_start_wh(self, t: float) -> float:
        """Exact energy exported since the simulator started: the ground truth."""
        return self.energy(self.started_at, t).export_wh

    def replace(self, t: float) -> None:
        """Fault injection: a new meter is installed at `t`, its registers starting from zero."""
        self.replaced_at = t
        self._highest = Energy(-math.inf, -math.inf)

    def _replace_when_due(self, t: float) -> None:
        after = self.faults.replace_at_s
        if after is None or self.replaced_at is not None or t < self.started_at + after:
            return
        self.replace(self.started_at + after)
        log.warning(
            "simulated meter %s replaced %g s after start: its energy registers restart at 0",
            self.meter.id,
            after,
        )

    def values_at(self, t: float) -> dict[str, float]:
        """Every quantity the meter measures at `t` (its datasheet's map), by name."""
        self._replace_when_due(t)
        values = electrical_values(self.load, t, self.profile.phases)
        served = self.served_registers(t)
        values["import_energy_wh"] = served.import_wh
        values["export_energy_wh"] = served.export_wh
        return values | derived_values(values, self.profile.phases)

    def _disconnected(self, t: float) -> bool:
        after = self.faults.disconnect_after_s
        if after is None or t - self.started_at < after:
            return False
        back = self.faults.reconnect_after_s
        return back is None or t - self.started_at < back

    def draw_fault(self, t: float) -> Fault:
        """What happens to the request arriving at `t`; counts it."""
        fault: Fault = "ok"
        if self._disconnected(t):
            fault = "timeout"
        else:
            draw = self._rng.random()
            rates = self.faults
            if draw < rates.timeout_rate:
                fault = "timeout"
            elif draw < rates.timeout_rate + rates.exception_rate:
                fault = "exception"
            elif draw < rates.timeout_rate + rates.exception_rate + rates.corrupt_rate:
                fault = "corrupt"
        if fault == "ok":
            self.counts.answered += 1
        else:
            setattr(self.counts, fault, getattr(self.counts, fault) + 1)
        return fault
