"""A building with rooftop PV polled through a day over Modbus TCP: both directions exact.

The simulator serves a PV building (SDM120 map) on a real Modbus TCP port;
the test moves the simulator's clock and reads the meter with a plain
pymodbus client, as a logger would, integrating with `core.energy.advance`.

Why the sums can be held to the analytic truth: the building's net power is
piecewise linear between knots five minutes apart and its value at a knot is
a float32 (what the power register carries), so polls that land on knots
read the exact power at both ends of a straight piece. The trapezoid, split
at its zero crossing, is then that piece's exact import and export; each
reading's energy differs from the truth only by core's rounding to whole
µWh (at most 0.5 µWh), so each reading is within 1e-6 Wh of the truth and
the day within 0.5 µWh per reading. The meter's own float32 kWh registers
agree within their resolution, and bridge a gap of lost polls
(`core.witness.observe`) within it too.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from datetime import datetime
from itertools import pairwise
from zoneinfo import ZoneInfo

from pymodbus.client import AsyncModbusTcpClient
from tests.support.config import make_config, meter_at, tcp_bus

from campus_energy.core.energy import UWH_PER_WH, MeterState, advance
from campus_energy.core.witness import RegisterRead, RegisterSpec, Witnesses, observe
from campus_energy.meters.simulator.server import Simulator
from campus_energy.meters.simulator.solar import KNOT_S

KOLKATA = ZoneInfo("Asia/Kolkata")
DAY_START = int(datetime(2026, 3, 8, tzinfo=KOLKATA).timestamp())  # a Sunday: it exports
POLLS = 86_400 // KNOT_S  # one a knot: 288 intervals
MAX_GAP_S = 1.5 * KNOT_S  # one missed poll is a gap
LOST = {100, 101, 150, 151, 152, 200}  # polls never answered (a gap on each side)
UNIT = 3
SPEC = RegisterSpec("float32", 1000.0)  # the Eastron energy registers: float32 kWh


def f32(words: Iterable[int]) -> float:
    return float(struct.unpack(">f", struct.pack(">HH", *words))[0])


def ulp32(value: float) -> float:
    return SPEC.resolution_wh(value)


async def test_a_pv_day_polled_on_its_knots_matches_the_truth_in_both_directions() -> None:
    bus = tcp_bus()
    simulate = {"base_w": 400, "peak_w": 1500, "pv_peak_w": 3000, "cloudiness": 0.3}
    config = make_config(
        [bus], [meter_at("roof", "plant", UNIT, "eastron-sdm120", simulate=simulate)]
    )
    now = [float(DAY_START)]
    state = MeterState()
    witnesses = Witnesses()
    specs = {"import": SPEC, "export": SPEC}
    measured: list[tuple[float, float, int, int]] = []  # (t0, t1, import µWh, export µWh)
    gaps: list[tuple[float, float, int, int, float]] = []  # … estimated, resolution
    powers: list[float] = []
    registers: list[tuple[float, float]] = []
    async with Simulator(config, clock=lambda: now[0]) as simulator:
        meter = simulator.meters["roof"]
        client = AsyncModbusTcpClient("127.0.0.1", port=bus["port"], timeout=2, retries=0)
        assert await client.connect()
        try:
            previous: float | None = None
            for i in range(POLLS + 1):
                if i in LOST:
                    continue
                now[0] = t = DAY_START + i * KNOT_S
                power_words = await client.read_input_registers(0x000C, count=2, device_id=UNIT)
                energy_words = await client.read_input_registers(0x0048, count=4, device_id=UNIT)
                assert not power_words.isError() and not energy_words.isError()
                power = f32(power_words.registers)
                imported = f32(energy_words.registers[:2]) * 1000
                exported = f32(energy_words.registers[2:]) * 1000
                assert power == meter.load.power_w(t)  # a knot: served exactly
                step, state = advance(state, power_w=power, wall_s=t, mono_s=t, max_gap_s=MAX_GAP_S)
                seen = observe(
                    witnesses,
                    RegisterRead(step.ts_ms, imported, exported),
                    specs=specs,
                    max_power_w=config.profile_of(config.meters[0]).max_power_w or 20_000.0,
                    gap=step.gap_s is not None,
                )
                witnesses = seen.witnesses
                assert not seen.events
                if previous is not None and step.gap_s is None:
                    measured.append((previous, t, step.energy_uwh, step.export_uwh))
                elif previous is not None:
                    assert seen.estimated_uwh is not None and seen.estimated_export_uwh is not None
                    gaps.append(
                        (
                            previous,
                            t,
                            seen.estimated_uwh,
                            seen.estimated_export_uwh,
                            seen.resolution_wh,
                        )
                    )
                previous = t
                powers.append(power)
                registers.append((imported, exported))
        finally:
            client.close()

        assert len(measured) == POLLS - 2 * 3 - len(LOST) + 3  # three gaps of lost polls
        assert len(gaps) == 3
        # the day imports and exports, and changes direction inside intervals
        assert min(powers) < 0 < max(powers)
        crossings = sum((a < 0) != (b < 0) for a, b in pairwise(powers))
        assert crossings >= 2
        imported_uwh = exported_uwh = 0
        truth_import = truth_export = 0.0
        for t0, t1, i_uwh, e_uwh in measured:
            truth = meter.energy(t0, t1)
            assert abs(i_uwh / UWH_PER_WH - truth.import_wh) <= 1e-6, (t0, t1)
            assert abs(e_uwh / UWH_PER_WH - truth.export_wh) <= 1e-6, (t0, t1)
            imported_uwh += i_uwh
            exported_uwh += e_uwh
            truth_import += truth.import_wh
            truth_export += truth.export_wh
        bound = 0.5e-6 * len(measured) + 1e-6
        assert abs(imported_uwh / UWH_PER_WH - truth_import) <= bound
        assert abs(exported_uwh / UWH_PER_WH - truth_export) <= bound
        assert truth_export > 1000  # a sunny Sunday: kWh went out
        # the gaps: the registers' differences estimate them within their resolution
        for t0, t1, i_uwh, e_uwh, resolution in gaps:
            truth = meter.energy(t0, t1)
            assert abs(i_uwh / UWH_PER_WH - truth.import_wh) <= resolution
            assert abs(e_uwh / UWH_PER_WH - truth.export_wh) <= resolution
        # and the registers over the whole day agree with measured + estimated
        (first_i, first_e), (last_i, last_e) = registers[0], registers[-1]
        counted_i = (imported_uwh + sum(g[2] for g in gaps)) / UWH_PER_WH
        counted_e = (exported_uwh + sum(g[3] for g in gaps)) / UWH_PER_WH
        assert abs((last_i - first_i) - counted_i) <= 2 * ulp32(last_i) + len(gaps) * ulp32(last_i)
        assert abs((last_e - first_e) - counted_e) <= 2 * ulp32(last_e) + len(gaps) * ulp32(last_e)
