"""Read planning: requests per poll and bus time, planner vs one request per field vs legacy blocks.

Returns, for every built-in profile on a 2400-baud RTU line, a 9600-baud RTU
line and Modbus TCP, the modelled bus time of one poll under three plans:
(a) the planner's, (b) one request per field (what mbmd and emonhub do),
(c) the original deployment's hand-written blocks (campus-legacy only;
`baselines/legacy_read_blocks.py`). Then it measures the wall time of a poll
over TCP against the simulator for (a) and (b), in this process. Ratios are
against the planner.

Run: .venv/bin/python benchmarks/read_plan.py (about 2 s: quick mode is the same)
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Iterator
from pathlib import Path

import harness
import results as bench
from baselines.legacy_read_blocks import LEGACY_BLOCKS
from campus_energy.config import parse_config
from campus_energy.core.models import Profile
from campus_energy.core.planner import BusCostModel, plan_per_field, plan_profile
from campus_energy.meters.modbus import ModbusBus
from campus_energy.meters.profiles import builtin_profiles
from campus_energy.meters.simulator.server import Simulator
from measure import free_port
from results import Col, Table

BUSES = {
    "RTU 2400": BusCostModel.serial(2400),
    "RTU 9600": BusCostModel.serial(9600),
    "TCP": BusCostModel.tcp(),
}
TIER = "meter side"
RECORDED_BUS = "RTU 9600"  # the modelled bus whose figures go to the report
POLLS = 200


def plan_columns(plan: str, ms: str, versus: bool = False) -> tuple[Col, ...]:
    """A plan's requests and time (`ms`: their format), and its time ÷ the planner's."""
    found = (Col(f"{plan} req"), Col(f"{plan} ms", ms))
    return (*found, Col(f"{plan} ×", ".2f", "×")) if versus else found


def modelled(profiles: dict[str, Profile]) -> Table:
    table = Table(
        "Modelled bus time of one poll (request overhead + transfer + the profile's pause)",
        (
            "profile",
            "bus",
            *plan_columns("planner", ".1f"),
            *plan_columns("per field", ".1f", versus=True),
            *plan_columns("legacy blocks", ".1f", versus=True),
        ),
    )
    for name, profile in profiles.items():
        for bus_name, bus in BUSES.items():
            cost = bus.with_pause(profile.pause_between_requests_s)
            plan = plan_profile(profile, bus)
            base_s = cost.plan_s(plan)
            cells: list[float | int | None] = [len(plan), base_s * 1000]
            others = {"per field": plan_per_field(profile)}
            if name == "campus-legacy":
                others["legacy blocks"] = LEGACY_BLOCKS
            for way, other in others.items():
                other_s = cost.plan_s(other)
                cells += [len(other), other_s * 1000, other_s / base_s]
                if bus_name == RECORDED_BUS:
                    bench.record(
                        TIER,
                        f"{name}: modelled bus time of a poll, {bus_name}, vs {way}",
                        base_s * 1000,
                        other_s * 1000,
                        "ms",
                        f"{len(plan)} vs {len(other)} requests",
                    )
            cells += [None] * (8 - len(cells))
            table.row(name, bus_name, *cells)
    return table


async def measured(profiles: dict[str, Profile]) -> Table:
    port = free_port()
    meters = [
        {"id": f"m{unit}", "bus": "tcp", "unit": unit, "profile": name}
        for unit, name in enumerate(profiles, start=1)
    ]
    config = parse_config(
        {
            "buses": [{"name": "tcp", "transport": "tcp", "host": "127.0.0.1", "port": port}],
            "meters": meters,
        }
    )
    table = Table(
        f"Measured wall time of one poll over Modbus TCP against the simulator ({POLLS} polls "
        "each, no device pause: protocol round trips only; median)",
        (
            "profile",
            *plan_columns("planner", ".2f"),
            *plan_columns("per field", ".2f", versus=True),
        ),
    )
    async with Simulator(config):
        bus = ModbusBus(config.buses[0])
        try:
            for meter in config.meters:
                profile = config.profile_of(meter)
                plans = {
                    "planner": plan_profile(profile, config.buses[0].cost_model),
                    "per field": plan_per_field(profile),
                }
                samples: dict[str, list[float]] = {k: [] for k in plans}
                for _ in range(POLLS):
                    for label, plan in plans.items():  # interleaved, so drift hits both alike
                        started = time.perf_counter()
                        for request in plan:
                            await bus.read(meter.unit, request)
                        samples[label].append(time.perf_counter() - started)
                base = statistics.median(samples["planner"])
                other = statistics.median(samples["per field"])
                planned, per_field = len(plans["planner"]), len(plans["per field"])
                table.row(profile.name, planned, base * 1000, per_field, other * 1000, other / base)
                bench.record(
                    TIER,
                    f"{profile.name}: measured poll over Modbus TCP (simulator), vs per field",
                    base * 1000,
                    other * 1000,
                    "ms",
                    f"median of {POLLS}; {planned} vs {per_field} requests",
                )
        finally:
            await bus.close()
    return table


def run(folder: Path) -> Iterator[Table]:
    profiles = builtin_profiles()
    yield modelled(profiles)
    yield asyncio.run(measured(profiles))


if __name__ == "__main__":
    harness.main(run, __doc__)
