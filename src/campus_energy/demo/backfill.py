"""`campus-energy demo --backfill-days N`: history written by the logger's and the bridge's code.

Before the live services start, every meter is "polled" on a coarse grid
(`BACKFILL_INTERVAL_S`) from local midnight N days ago up to now, in simulated
time and without waiting. Each reading goes through the same code as a live
one: the values the simulated meter would answer (its register included), the
integrator (`core.energy.advance`), the store (`ReadingStore.insert_history`,
which keeps history out of the MQTT outbox), the reading's MQTT payload as
the bridge parses it, and the bridge's window code (`contributions`, `group`)
into the configured sink. So the books balance: per meter, the windows hold
exactly the energy of the readings. History is windowed in production's
5-minute windows (`HISTORY_WINDOW_S`) whatever the demo's live windows are:
a month of 30-second windows would be a million documents.

Idempotent and continuous: a meter's history is only ever appended after its
newest stored reading, so a second run adds nothing that is there already
and fills only the time since. Each day's windows are merged before its
readings are stored: a run stopped in between makes the same readings (same
sequence numbers) again, which the sink's merge recognises and skips. The last reading is
handed to the live logger
(its boot and monotonic time), which integrates on from it.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from campus_energy.backends import open_sink
from campus_energy.backends.base import WindowSink
from campus_energy.config import Config, MeterConfig
from campus_energy.core.energy import MeterState, advance
from campus_energy.core.incoming import Malformed, parse_reading
from campus_energy.core.readings import Reading
from campus_energy.core.timestamps import epoch_ms
from campus_energy.core.topics import reading_topic
from campus_energy.core.windows import Contribution, IncomingReading, contributions, group
from campus_energy.logger.service import quantized
from campus_energy.logger.store import Cycle, MeterRecord, ReadingStore
from campus_energy.meters.simulator.meter import VirtualMeter
from campus_energy.runtime.clock import boot_id

BACKFILL_INTERVAL_S = 60.0
HISTORY_WINDOW_S = 300
CAUGHT_UP_S = 2.0  # a pass this quick leaves the live logger nothing worth filling
GAP_INTERVALS = 3.5  # as a meter's default max_gap_s: two missed polls are still integrated

Progress = Callable[[str], None]


@dataclass
class Backfilled:
    """What a backfill wrote."""

    readings: int = 0
    windows: int = 0
    days: int = 0
    seconds: float = 0.0
    per_meter: dict[str, int] = field(default_factory=dict)


@dataclass
class _Meter:
    """One meter's simulated polls and its integrator state."""

    config: MeterConfig
    virtual: VirtualMeter
    state: MeterState
    written: int = 0

    @property
    def last_s(self) -> float | None:
        ts = self.state.last_ts_ms
        return None if ts is None else ts / 1000


def history_start(config: Config, days: int, now: float) -> float:
    """Local midnight `days` days before today (site time zone), as UTC epoch seconds."""
    zone = config.site.zone
    today = datetime.fromtimestamp(now, zone).date()
    first = today - timedelta(days=days)
    return datetime(first.year, first.month, first.day, tzinfo=zone).timestamp()


def poll_times(after: float | None, start: float, end: float, step: float) -> list[float]:
    """Multiples of `step` in [start, end), each later than `after` (None: no reading yet)."""
    first = math.ceil(start / step)
    if after is not None:
        first = max(first, math.floor(after / step) + 1)
    return [n * step for n in range(first, math.ceil(end / step))]


class Backfill:
    """Writes a configuration's simulated history into its store and its bridge's sink."""

    def __init__(
        self, config: Config, *, interval_s: float = BACKFILL_INTERVAL_S, progress: Progress
    ) -> None:
        self.config = config
        self.interval_s = interval_s
        self.progress = progress
        self.known = {m.id for m in config.meters}

    async def run(self, days: int, now: float) -> Backfilled:
        began = time.perf_counter()
        found = Backfilled()
        if days <= 0 or not self.config.meters:
            return found
        start = history_start(self.config, days, now)
        store = ReadingStore(self.config.storage.path)
        sink = open_sink(self.config)
        try:
            await store.register(
                MeterRecord(m.id, m.building, m.floor, m.profile) for m in self.config.meters
            )
            meters = await self._meters(store, start)
            zone = self.config.site.zone
            day = datetime.fromtimestamp(start, zone).date()
            last_day = datetime.fromtimestamp(now, zone).date()
            while day <= last_day:
                nxt = day + timedelta(days=1)
                lo = datetime(day.year, day.month, day.day, tzinfo=zone).timestamp()
                hi = datetime(nxt.year, nxt.month, nxt.day, tzinfo=zone).timestamp()
                final = hi >= now
                span = (max(lo, start), min(hi, now))
                readings, windows = await self._day(store, sink, meters, *span, final=final)
                if readings:
                    found.days += 1
                    found.readings += readings
                    found.windows += windows
                    self.progress(f"history of {day.isoformat()}: {readings} readings")
                day = nxt
            await self._hand_over(store, meters)
            found.per_meter = {m.config.id: m.written for m in meters}
        finally:
            await sink.close()
            await store.close()
        found.seconds = time.perf_counter() - began
        return found

    async def _meters(self, store: ReadingStore, start: float) -> list[_Meter]:
        restored = await store.restore()
        meters = []
        for m in self.config.meters:
            last = restored.get(m.id)
            state = MeterState()
            if last is not None:  # history continues from the newest stored reading
                state = MeterState(
                    seq=last.seq,
                    total_uwh=last.total_uwh,
                    export_total_uwh=last.export_total_uwh,
                    last_ts_ms=last.ts_ms,
                    last_power_w=last.power_w,
                    last_mono_s=last.ts_ms / 1000,
                )
            profile = self.config.profile_of(m)
            virtual = VirtualMeter(m, profile, self.config.site.zone, started_at=start)
            meters.append(_Meter(m, virtual, state))
        return meters

    def _poll(self, meter: _Meter, t: float) -> tuple[Reading, float | None]:
        """What the logger's `_poll` makes of the meter's answer at `t` (and the gap before)."""
        answer = meter.virtual.values_at(t)
        raw = {f.name: answer.get(f.name, 0.0) for f in meter.virtual.profile.fields}
        values = quantized(raw)
        previous_ts = meter.state.last_ts_ms
        step, meter.state = advance(
            meter.state,
            power_w=values["power_w"] or 0.0,
            wall_s=t,
            mono_s=t,
            max_gap_s=GAP_INTERVALS * self.interval_s,
        )
        start = previous_ts if step.energy_uwh or step.export_uwh else None
        reading = Reading(
            meter.config.id,
            step.ts_ms,
            step.seq,
            step.energy_uwh,
            step.total_uwh,
            values,
            start,
            export_uwh=step.export_uwh,
            export_total_uwh=step.export_total_uwh,
        )
        return reading, step.gap_s if previous_ts is not None else None

    def _received(self, reading: Reading, meter: MeterConfig, now_ms: int) -> IncomingReading:
        """The reading as the bridge receives it: its MQTT payload, parsed and validated."""
        site = self.config.site_of(meter)
        payload = json.dumps(reading.payload(meter.building, meter.floor, site)).encode()
        topic = reading_topic(self.config.topic_root(site), meter.id)
        parsed = parse_reading(
            topic, payload, prefix=self.config.topic_roots(), now_ms=now_ms, meters=self.known
        )
        if isinstance(parsed, Malformed):  # the simulator and the logger never make one
            raise ValueError(f"backfill made a reading the bridge refuses: {parsed.reason}")
        return parsed

    async def _day(
        self,
        store: ReadingStore,
        sink: WindowSink,
        meters: list[_Meter],
        lo: float,
        hi: float,
        *,
        final: bool,
    ) -> tuple[int, int]:
        """Poll every meter over [lo, hi) (and at hi's grid time when `final`), window them and
        store them; (readings, windows) written."""
        readings: list[Reading] = []
        gaps: list[tuple[str, int, int]] = []
        items: list[Contribution] = []
        now_ms = epoch_ms(hi)
        for meter in meters:
            own = meter.config.interval_s
            step = own * max(1, round(self.interval_s / own))  # on the meter's own grid
            times = poll_times(meter.last_s, lo, hi, step)
            if final:  # up to the meter's last grid time: the live logger polls on from there
                last = math.floor(hi / own) * own
                if last > (times[-1] if times else meter.last_s or -math.inf):
                    times.append(last)
            for t in times:
                previous_ts = meter.state.last_ts_ms
                reading, gap_s = self._poll(meter, t)
                if gap_s is not None and previous_ts is not None:
                    gaps.append((meter.config.id, previous_ts, reading.ts_ms))
                received = self._received(reading, meter.config, now_ms)
                readings.append(reading)
                items.extend(contributions(received, HISTORY_WINDOW_S * 1000))
                meter.written += 1
        if not readings:
            return 0, 0
        meta = {
            m.config.id: (m.config.building, m.config.floor, self.config.site_of(m.config))
            for m in meters
        }
        windows = await sink.merge(group(items, HISTORY_WINDOW_S, meta), now_ms)
        await store.insert_history(readings, gaps)
        return len(readings), windows

    async def _hand_over(self, store: ReadingStore, meters: list[_Meter]) -> None:
        """Let the live logger integrate on from each meter's last backfilled reading: its time
        on this boot's monotonic clock is where the wall clock says it was."""
        this_boot = boot_id()
        mono_now, wall_now = time.monotonic(), time.time()
        cycle = Cycle()
        for meter in meters:
            if meter.written and meter.state.last_ts_ms is not None:
                age_s = wall_now - meter.state.last_ts_ms / 1000
                mono_ms = round((mono_now - age_s) * 1000)
                cycle.continuity.append((meter.config.id, this_boot, mono_ms))
        if cycle.continuity:
            await store.commit(cycle)


async def backfill(
    config: Config,
    days: int,
    *,
    now: float | None = None,
    interval_s: float = BACKFILL_INTERVAL_S,
    progress: Progress | None = None,
) -> Backfilled:
    """Write `days` days of simulated history (and today's so far) before the live services.

    Without `now`, history reaches the present: the time a pass took is filled by
    another, until one is quick.
    """
    job = Backfill(config, interval_s=interval_s, progress=progress or (lambda _: None))
    if now is not None:
        return await job.run(days, now)
    done = await job.run(days, time.time())
    catching_up = done.seconds
    while catching_up > CAUGHT_UP_S:
        more = await job.run(days, time.time())
        done.readings += more.readings
        done.windows += more.windows
        done.seconds += more.seconds
        for meter_id, count in more.per_meter.items():
            done.per_meter[meter_id] = done.per_meter.get(meter_id, 0) + count
        catching_up = more.seconds
    return done
