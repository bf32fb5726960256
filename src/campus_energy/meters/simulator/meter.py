"""One virtual meter: its load, its exact energy register, what it measures and its faults.

The import register is a function of wall-clock time alone: a per-meter
starting value plus the exact integral of the meter's load since
`load.EPOCH_S`. Two simulators started at different times answer the same
register for the same instant, so a demo restart never moves it backwards.
Only a replacement (a new meter installed at `t`: `replace(t)`, or
`replace_at_s` after the simulator started) restarts it.
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
from campus_energy.meters.simulator.load import CampusLoad, electrical_values, unit_random
from campus_energy.meters.simulator.models import derived_values

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
    """A meter following a `CampusLoad`; its import register is the exact integral."""

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
        self.load = CampusLoad(self.seed, base, max(peak, base), zone)
        self.started_at = started_at
        self.initial_wh = 1e6 * (1 + 8 * unit_random(self.seed, 23))  # the register at EPOCH_S
        self.replaced_at: float | None = None
        self._highest_wh = -math.inf
        self._rng = random.Random(self.seed)
        self.counts = FaultCounts()

    @property
    def unit(self) -> int:
        return self.meter.unit

    def register_wh(self, t: float) -> float:
        """The import register at `t` as a pure function of time: the same in every process."""
        if self.replaced_at is not None and t >= self.replaced_at:
            return self.load.energy_wh(self.replaced_at, t)
        return self.initial_wh + self.load.energy_since_epoch_wh(t)

    def import_energy_wh(self, t: float) -> float:
        """The import register at `t`; never lower than an answer already given (a clock that
        steps back, or rounding in the last digit, cannot make it run backwards)."""
        value = max(self.register_wh(t), self._highest_wh)
        self._highest_wh = value
        return value

    def energy_since_start_wh(self, t: float) -> float:
        """Exact energy consumed since the simulator started: the ground truth."""
        return self.load.energy_wh(self.started_at, t)

    def replace(self, t: float) -> None:
        """Fault injection: a new meter is installed at `t`, its register starting from zero."""
        self.replaced_at = t
        self._highest_wh = -math.inf

    def _replace_when_due(self, t: float) -> None:
        after = self.faults.replace_at_s
        if after is None or self.replaced_at is not None or t < self.started_at + after:
            return
        self.replace(self.started_at + after)
        log.warning(
            "simulated meter %s replaced %g s after start: its import register restarts at 0",
            self.meter.id,
            after,
        )

    def values_at(self, t: float) -> dict[str, float]:
        """Every quantity the meter measures at `t` (its datasheet's map), by name."""
        self._replace_when_due(t)
        values = electrical_values(self.load, t, self.profile.phases)
        values["import_energy_wh"] = self.import_energy_wh(t)
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
