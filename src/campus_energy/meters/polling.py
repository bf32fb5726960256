"""Polling meters: one `MeterPoller` per meter, planned once, reading through its bus."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from campus_energy.config import Config, MeterConfig
from campus_energy.core.models import Profile
from campus_energy.core.planner import ReadRequest, plan_profile
from campus_energy.meters.modbus import FrameTrace, ModbusBus


@dataclass(frozen=True)
class MeterPoller:
    """Reads every field of one meter with the planner's requests."""

    meter: MeterConfig
    profile: Profile
    bus: ModbusBus
    plan: tuple[ReadRequest, ...]

    async def poll(self) -> dict[str, float]:
        """Values of every profile field in SI units. Raises a `ModbusError` on failure."""
        blocks: list[tuple[int, list[int]]] = []
        for request in self.plan:
            registers = await self.bus.read(
                self.meter.unit, request, pause_s=self.profile.pause_between_requests_s
            )
            blocks.append((request.start, registers))
        return self.profile.decode(blocks)


def open_buses(config: Config, *, trace: FrameTrace | None = None) -> dict[str, ModbusBus]:
    """One `ModbusBus` per configured bus (connections open lazily on first use)."""
    return {bus.name: ModbusBus(bus, trace=trace) for bus in config.buses}


def pollers(
    config: Config, buses: Mapping[str, ModbusBus], meters: Iterable[MeterConfig]
) -> list[MeterPoller]:
    """A planned poller for each of `meters`."""
    found = []
    for meter in meters:
        bus = buses[meter.bus]
        profile = config.profile_of(meter)
        plan = plan_profile(profile, bus.config.cost_model)
        found.append(MeterPoller(meter, profile, bus, plan))
    return found
