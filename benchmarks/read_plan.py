"""Read planning: requests per poll and bus time, planner vs one request per field vs legacy blocks.

Prints, for every built-in profile on a 2400-baud RTU line, a 9600-baud RTU
line and Modbus TCP, the modelled bus time of one poll under three plans:
(a) the planner's, (b) one request per field (what mbmd and emonhub do),
(c) the original deployment's hand-written blocks (campus-legacy only).
Then it measures the wall time of a poll over TCP against the simulator
for (a) and (b), in this process. Ratios are against the planner.

Run: .venv/bin/python benchmarks/read_plan.py
Headline figures go to benchmarks/REPORT.md (`benchmarks/report.py`, `results.py`).
"""

from __future__ import annotations

import asyncio
import statistics
import time

import results as bench
from campus_energy.config import parse_config
from campus_energy.core.models import Profile
from campus_energy.core.planner import BusCostModel, ReadRequest, plan_per_field, plan_profile
from campus_energy.meters.modbus import ModbusBus
from campus_energy.meters.profiles import builtin_profiles
from campus_energy.meters.simulator.server import Simulator
from measure import free_port

LEGACY_BLOCKS = (ReadRequest(3, 6, 6), ReadRequest(3, 34, 2), ReadRequest(3, 54, 2))
BUSES = {
    "RTU 2400": BusCostModel.serial(2400),
    "RTU 9600": BusCostModel.serial(9600),
    "TCP": BusCostModel.tcp(),
}
TIER = "meter side"
RECORDED_BUS = "RTU 9600"  # the modelled bus whose figures go to the report


def modelled_table(profiles: dict[str, Profile]) -> None:
    print("Modelled bus time of one poll (request overhead + transfer + the profile's pause)")
    head = f"{'profile':<16} {'bus':<9} {'planner':>16} {'per field':>22} {'legacy blocks':>22}"
    print(head)
    print("-" * len(head))
    for name, profile in profiles.items():
        for bus_name, bus in BUSES.items():
            cost = bus.with_pause(profile.pause_between_requests_s)
            plan = plan_profile(profile, bus)
            base_s = cost.plan_s(plan)
            cells = [f"{len(plan)} req {base_s * 1000:7.1f} ms"]
            strategies = [plan_per_field(profile)]
            if name == "campus-legacy":
                strategies.append(LEGACY_BLOCKS)
            for other in strategies:
                other_s = cost.plan_s(other)
                cells.append(f"{len(other)} req {other_s * 1000:7.1f} ms ×{other_s / base_s:5.2f}")
                if bus_name == RECORDED_BUS:
                    way = "per field" if other is strategies[0] else "legacy blocks"
                    bench.record(
                        TIER,
                        f"{name}: modelled bus time of a poll, {bus_name}, vs {way}",
                        base_s * 1000,
                        other_s * 1000,
                        "ms",
                        f"{len(plan)} vs {len(other)} requests",
                    )
            legacy = cells[2] if len(cells) > 2 else ""
            print(f"{name:<16} {bus_name:<9} {cells[0]:>16} {cells[1]:>22} {legacy:>22}")
    print()


async def measured(profiles: dict[str, Profile], polls: int) -> None:
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
    print(
        f"Measured wall time of one poll over Modbus TCP against the simulator ({polls} polls each,"
    )
    print("no device pause: protocol round trips only; median)")
    head = f"{'profile':<16} {'planner':>18} {'per field':>26}"
    print(head)
    print("-" * len(head))
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
                for _ in range(polls):
                    for label, plan in plans.items():  # interleaved, so drift hits both alike
                        started = time.perf_counter()
                        for request in plan:
                            await bus.read(meter.unit, request)
                        samples[label].append(time.perf_counter() - started)
                base = statistics.median(samples["planner"])
                other = statistics.median(samples["per field"])
                print(
                    f"{profile.name:<16} {len(plans['planner'])} req {base * 1000:7.2f} ms"
                    f" {len(plans['per field']):>5} req {other * 1000:7.2f} ms ×{other / base:5.2f}"
                )
                bench.record(
                    TIER,
                    f"{profile.name}: measured poll over Modbus TCP (simulator), vs per field",
                    base * 1000,
                    other * 1000,
                    "ms",
                    f"median of {polls}; {len(plans['planner'])} vs "
                    f"{len(plans['per field'])} requests",
                )
        finally:
            await bus.close()


def main() -> None:
    profiles = builtin_profiles()
    modelled_table(profiles)
    asyncio.run(measured(profiles, polls=200))


if __name__ == "__main__":
    try:
        main()
    finally:
        bench.emit()
