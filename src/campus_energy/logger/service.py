"""`campus-energy logger`: poll meters on their wall-clock grid, integrate, store, publish.

One task per bus: the meters of a bus take turns, buses run in parallel, so a
dead meter costs only its own bus its timeout. Each cycle's readings are
committed to SQLite in one transaction before the publisher may send them.
A missed slot is skipped, never queued.

The low-write mode (`storage.commit_interval_s` > 0) keeps a bus's readings in
memory and commits them together once the oldest has waited that long (and
when the logger stops): one commit where there were many, so an SD card is
written a fraction as often. Only what is committed is published, so a power
cut loses at most the uncommitted readings (commit_interval_s plus a cycle),
never a reading the broker has already passed on; the meters' sequences and
totals continue from what was stored.

The meter's own energy registers are a second witness (`core.witness`): when
an interval is left unintegrated (a gap: lost polls, a restart) and the
registers read on both sides of it moved plausibly, what they counted is put
on the reading as estimated energy (`meters.estimate_gaps`, up to
`meters.max_estimate_gap_s`), apart from the measured energy. A register that
goes backwards or jumps is a meter event: recorded with the cycle's readings,
logged once at WARNING and counted. A person's confirmed event (`campus-energy
meter-event add`) with the new meter's first count sets the register's
baseline when the logger has not read it since; they are read from the store
at the start and every `CONFIRMED_EVERY_S`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from campus_energy.config import Config, MeterConfig
from campus_energy.core.energy import UWH_PER_WH, MeterState, advance, implausibility
from campus_energy.core.meter_events import MeterEvent
from campus_energy.core.readings import Reading
from campus_energy.core.resolution import RESOLUTION, quantize
from campus_energy.core.timestamps import epoch_ms, iso_utc, next_grid_time
from campus_energy.core.witness import Witnesses
from campus_energy.errors import ModbusConnectionError, ModbusError, ModbusTimeoutError, StoreError
from campus_energy.logger.metrics import Counters, LoggerMetrics
from campus_energy.logger.publisher import Publisher, StatusBoard
from campus_energy.logger.registers import Registers
from campus_energy.logger.store import Cycle, MeterRecord, ReadingStore, Restored
from campus_energy.meters.learned import PlanBook, learned_plans_path
from campus_energy.meters.polling import MeterPoller, open_buses, pollers
from campus_energy.runtime.clock import Backoff, SystemClock, boot_id, sleep_or_stop
from campus_energy.runtime.notify import Notifier, Watchdog
from campus_energy.runtime.outages import Outage

log = logging.getLogger("campus_energy.logger")
OFFLINE_AFTER_FAILURES = 3
SHUTDOWN_FLUSH_S = 3.0
RETENTION_EVERY_S = 3600.0
SAME_SLOT_S = 1e-3
CLOCK_STEP_WARN_S = 1.0
HUNG_SLACK_S = 60.0  # beyond a cycle's worst case of Modbus timeouts, its bus loop is hung
BUS_RESTART_MIN_S = 1.0  # a bus whose polling failed unexpectedly starts again after this
BUS_RESTART_MAX_S = 60.0
CONFIRMED_EVERY_S = 60.0  # how often the store is asked for events people confirmed


@dataclass(frozen=True)
class Memory:
    """What the logger remembers of a meter between readings: its integrator's state and its
    registers' witnesses."""

    state: MeterState
    registers: Registers


@dataclass
class MeterRun:
    """A meter's poller and what the logger tracks of it between polls."""

    poller: MeterPoller
    state: MeterState
    limit_w: float | None
    outage: Outage
    registers: Registers
    failures_in_row: int = 0
    clock_behind: bool = False

    @property
    def meter(self) -> MeterConfig:
        return self.poller.meter

    @property
    def memory(self) -> Memory:
        return Memory(self.state, self.registers)

    def recall(self, memory: Memory) -> None:
        self.state, self.registers = memory.state, memory.registers


@dataclass
class Pending:
    """A bus's readings not yet committed, and what each meter's run remembered before the
    first of them."""

    cycle: Cycle = field(default_factory=Cycle)
    before: dict[str, Memory] = field(default_factory=dict)
    since_mono_s: float | None = None  # when the oldest was taken

    def marks(self) -> tuple[int, ...]:
        c = self.cycle
        return (
            len(c.readings),
            len(c.gaps),
            len(c.rejects),
            len(c.continuity),
            len(c.events),
            len(c.settling),
        )

    def truncate(self, marks: tuple[int, ...]) -> None:
        """Forget what was added since `marks`."""
        c = self.cycle
        readings, gaps, rejects, continuity, events, settling = marks
        del c.readings[readings:], c.gaps[gaps:], c.rejects[rejects:]
        del c.continuity[continuity:], c.events[events:], c.settling[settling:]

    def take(self) -> tuple[Cycle, dict[str, Memory]]:
        """What is pending, leaving nothing."""
        taken = self.cycle, self.before
        self.cycle, self.before, self.since_mono_s = Cycle(), {}, None
        return taken


def restored_state(restored: Restored | None, this_boot: str | None) -> MeterState:
    """Continue a meter's sequence and total; keep its monotonic time only within the same boot."""
    if restored is None:
        return MeterState()
    same_boot = this_boot is not None and restored.boot_id == this_boot
    return MeterState(
        seq=restored.seq,
        total_uwh=restored.total_uwh,
        export_total_uwh=restored.export_total_uwh,
        last_ts_ms=restored.ts_ms,
        last_power_w=restored.power_w,
        last_mono_s=restored.mono_ms / 1000 if same_boot and restored.mono_ms is not None else None,
    )


def quantized(values: dict[str, float]) -> dict[str, float | None]:
    """Core values at their stored resolution (what every consumer will see)."""
    return {
        name: (quantize(name, v) if name in RESOLUTION else v) if math.isfinite(v) else None
        for name, v in values.items()
    }


def cycle_limit_s(due: Sequence[MeterRun]) -> float:
    """How long a cycle of `due` may take before its bus loop counts as hung (watchdog).

    At worst every request of every meter times out on every attempt, each after a
    connection attempt that timed out too; the store's commit has the slack.
    """
    worst = 0.0
    for run in due:
        bus = run.poller.bus.config
        attempt = 2 * bus.timeout_s + run.poller.profile.pause_between_requests_s
        worst += len(run.poller.plan) * (1 + bus.retries) * attempt
    return worst + HUNG_SLACK_S


class MeterLogger:
    """The logger service."""

    def __init__(
        self, config: Config, *, clock: SystemClock | None = None, notifier: Notifier | None = None
    ) -> None:
        estate, config = config, config.for_logger()  # its site's and buses' meters only
        self.config = config
        self.clock = clock or SystemClock()
        self.store = ReadingStore(config.storage.path, cursor_with_commits=True)
        self.statuses = StatusBoard()
        self.publisher = Publisher(
            config, self.store, self.statuses, clock=self.clock, estate=estate
        )
        self.counters = Counters()
        self.boot_id = boot_id()
        self.store_outage = Outage(f"store {config.storage.path}", log)
        self.disk_full = Outage(f"store {config.storage.path} (disk full)", log)
        self.runs: dict[str, MeterRun] = {}
        self.latest: dict[str, Reading] = {}  # the newest committed reading of each meter
        self.ready = asyncio.Event()
        self.notifier = notifier or Notifier()  # systemd's, when it runs us
        self.watchdog = Watchdog(self.notifier)
        self.metrics = LoggerMetrics(self)
        self._confirmed_seen: int | None = None  # the id of the last confirmed event applied
        # per meter, the confirmed events whose counts set a register's baseline: set again
        # when what they were set on is forgotten (a commit that failed)
        self._rebases: dict[str, list[MeterEvent]] = {}

    async def _prepare(self) -> dict[str, list[MeterRun]]:
        await self.store.register(
            MeterRecord(m.id, m.building, m.floor, m.profile) for m in self.config.meters
        )
        restored = await self.store.restore()
        buses = open_buses(self.config)
        by_bus: dict[str, list[MeterRun]] = {}
        # What devices' firmware refuses, learned while polling, survives a restart.
        book = PlanBook(learned_plans_path(self.config.storage.path), writable=True)
        for poller in pollers(self.config, buses, self.config.meters, book):
            meter = poller.meter
            found = restored.get(meter.id)
            limit_w = self.config.power_limit_w(meter)
            witnesses = found.registers if found is not None else Witnesses()
            run = MeterRun(
                poller=poller,
                state=restored_state(found, self.boot_id),
                limit_w=limit_w,
                outage=Outage(f"meter {meter.id} (bus {meter.bus} unit {meter.unit})", log),
                registers=Registers.of(meter, poller.profile, limit_w, witnesses),
            )
            self.runs[meter.id] = run
            by_bus.setdefault(meter.bus, []).append(run)
        await self._apply_confirmed()
        return by_bus

    async def _apply_confirmed(self) -> None:
        """Set the baselines people confirmed (a new meter's first count) that are newer than
        what the logger last read of the register."""
        events = await self.store.meter_events(source="confirmed", after_id=self._confirmed_seen)
        for event in events:
            if event.id is not None:
                self._confirmed_seen = max(self._confirmed_seen or 0, event.id)
            run = self.runs.get(event.meter_id)
            rebased = run.registers.confirmed(event) if run is not None else None
            if run is None or rebased is None:
                continue
            run.registers = rebased
            self._rebases.setdefault(event.meter_id, []).append(event)
            log.info(
                "meter %s: %s starts again from %.1f Wh at %s, as confirmed (meter event %s)",
                event.meter_id,
                event.register,
                event.new_start_wh,
                iso_utc(event.ts_ms),
                event.id,
            )

    async def _confirmed_loop(self, stop: asyncio.Event) -> None:
        while not await sleep_or_stop(CONFIRMED_EVERY_S, stop):
            try:
                await self._apply_confirmed()
            except StoreError as exc:
                log.error("meter events: %s", exc)

    async def run(self, stop: asyncio.Event) -> None:
        """Run until `stop` is set; then finish the cycle, flush the outbox briefly, and close."""
        by_bus = await self._prepare()
        self.metrics.start()
        log.info(
            "logger %s: %d meters on %d buses, store %s, broker %s:%d",
            self.config.logger.id,
            len(self.runs),
            len(by_bus),
            self.config.storage.path,
            self.config.mqtt.host,
            self.config.mqtt.port,
        )
        publisher_stop = asyncio.Event()
        publishing = asyncio.create_task(self.publisher.run(publisher_stop), name="publisher")
        tasks = [
            asyncio.create_task(self._bus_loop(runs, stop), name=f"bus-{name}")
            for name, runs in by_bus.items()
        ]
        if self.config.storage.retention_days is not None:
            tasks.append(asyncio.create_task(self._retention_loop(stop), name="retention"))
        tasks.append(asyncio.create_task(self.watchdog.run(stop), name="watchdog"))
        tasks.append(asyncio.create_task(self._confirmed_loop(stop), name="confirmed-events"))
        self.ready.set()
        self.notifier.ready(f"polling {len(self.runs)} meters on {len(by_bus)} buses")
        try:
            await asyncio.gather(*tasks)
        finally:
            self.notifier.stopping()
            for task in tasks:
                task.cancel()
            # Each bus loop's own ending (committing what it holds) runs before the store closes.
            await asyncio.gather(*tasks, return_exceptions=True)
            try:
                await self._stop_publisher(publishing, publisher_stop)
            finally:
                self.metrics.stop()
                for bus in {r.poller.bus for r in self.runs.values()}:
                    await bus.close()
                await self.store.close()
                log.info("logger stopped")

    async def _stop_publisher(self, publishing: asyncio.Task[None], stop: asyncio.Event) -> None:
        """Let the publisher drain for a few seconds, then give up; report what is left."""
        stop.set()
        try:
            await asyncio.wait_for(asyncio.shield(publishing), SHUTDOWN_FLUSH_S)
            return
        except TimeoutError:
            publishing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await publishing
        except Exception:
            log.exception("publisher failed")
        try:
            depth = sum((await self.store.outbox_depth()).values())
        except StoreError as exc:
            log.error("outbox: %s", exc)
            return
        if depth:
            log.warning("stopping with %d readings not yet delivered to the broker", depth)

    async def _bus_loop(self, runs: Sequence[MeterRun], stop: asyncio.Event) -> None:
        """A bus's polling, restarted with back-off if it ever fails unexpectedly: whatever one
        bus raises stops that bus for a while, never the logger and its other buses."""
        bus = runs[0].meter.bus
        backoff = Backoff(BUS_RESTART_MIN_S, BUS_RESTART_MAX_S)
        pending = Pending()  # outlives a restart of the bus's polling: nothing polled is dropped
        try:
            while not stop.is_set():
                try:
                    await self._bus_cycles(runs, stop, pending)
                    return
                except Exception:
                    wait_s = backoff.failed()
                    log.exception(
                        "bus %s: polling failed; starting it again in %.0f s", bus, wait_s
                    )
                    try:  # what the low-write mode holds is not kept waiting for the restart
                        await self._commit(pending)
                    except Exception:
                        log.exception("bus %s: committing its held readings failed", bus)
                    if await sleep_or_stop(wait_s, stop):
                        return
        finally:
            await self._commit(pending)  # stopping: what the low-write mode still holds

    async def _bus_cycles(
        self, runs: Sequence[MeterRun], stop: asyncio.Event, pending: Pending
    ) -> None:
        last_slot: dict[str, float] = {}
        while not stop.is_set():
            now = self.clock.wall()
            due_at = {r.meter.id: next_grid_time(now, r.meter.interval_s) for r in runs}
            slot = min(due_at.values())
            # Sleep by the monotonic clock for what the wall clock says is left: a wall-clock
            # step during the sleep moves this slot, never stalls the loop.
            if await sleep_or_stop(slot - self.clock.wall(), stop):
                return
            self.metrics.cycle_started(runs[0].meter.bus, self.clock.wall() - slot)
            due = [r for r in runs if due_at[r.meter.id] - slot < SAME_SLOT_S]
            for r in due:
                previous = last_slot.get(r.meter.id)
                if previous is not None and slot - previous > r.meter.interval_s * 1.5:
                    self.counters.skipped_slots += round((slot - previous) / r.meter.interval_s) - 1
                last_slot[r.meter.id] = slot
            with self.watchdog.working(f"bus {runs[0].meter.bus}", cycle_limit_s(due)):
                await self._cycle(due, pending)

    def _forget(self, before: dict[str, Memory]) -> None:
        """Nothing since `before` is stored: forget it, so the next reading integrates across
        (energy is kept within max_gap_s), sequences stay contiguous and the registers are
        judged from what is stored."""
        for meter_id, memory in before.items():
            run = self.runs[meter_id]
            run.recall(memory)
            for event in self._rebases.get(meter_id, ()):  # a person's baselines stay set
                again = run.registers.confirmed(event)
                if again is not None:
                    run.registers = again

    async def _cycle(self, due: Sequence[MeterRun], pending: Pending) -> None:
        before = {r.meter.id: r.memory for r in due}
        marks = pending.marks()
        try:
            for run in due:
                await self._poll(run, pending.cycle)
        except BaseException:  # a failure no layer below made a meter's outage, or a cancel
            pending.truncate(marks)
            self._forget(before)
            raise
        for meter_id, state in before.items():
            pending.before.setdefault(meter_id, state)
        now = self.clock.mono()
        if pending.since_mono_s is None:
            pending.since_mono_s = now
        if now - pending.since_mono_s >= self.config.storage.commit_interval_s:
            await self._commit(pending)

    async def _commit(self, pending: Pending) -> None:
        """Commit what `pending` holds in one transaction; then it may be published."""
        cycle, before = pending.take()
        if not (cycle.readings or cycle.gaps or cycle.rejects or cycle.continuity or cycle.events):
            return
        try:
            evicted = await self.store.commit_making_room(cycle)
        except Exception as exc:
            self._forget(before)  # rolled back: nothing of it is stored
            if not isinstance(exc, StoreError):
                raise
            self.counters.store_failures += 1
            self.store_outage.failed(str(exc), self.clock.wall())
            return
        self.store_outage.recovered(self.clock.wall())
        await self._disk_full(evicted)
        self.counters.readings += len(cycle.readings)
        wall = self.clock.wall()
        for reading in cycle.readings:
            self.latest[reading.meter_id] = reading
            run = self.runs[reading.meter_id]
            run.failures_in_row = 0
            run.outage.recovered(wall)
            self.statuses.set(reading.meter_id, "online", reading.ts_ms)
            if reading.estimated:
                self.metrics.estimated(
                    reading.meter_id,
                    (reading.estimated_uwh or 0) / UWH_PER_WH,
                    (reading.estimated_export_uwh or 0) / UWH_PER_WH,
                )
        for event in cycle.events:  # once: an event is found again only if it was not stored
            self.metrics.meter_event(event.meter_id, event.kind)
            log.warning(
                "meter %s: meter event (%s): %s; the register bears no witness until it counts "
                "plausibly again (confirm it with `campus-energy meter-event add`)",
                event.meter_id,
                event.kind,
                event.note,
            )
        self.publisher.wake()

    async def _disk_full(self, evicted: int) -> None:
        """A full disk costs the oldest delivered readings, never the newest: said once at
        ERROR, then once at INFO when the store can grow again."""
        if evicted:
            detail = f"deleted the {evicted} oldest readings the broker has, to keep the newest"
            self.disk_full.failed(detail, self.clock.wall())
        elif self.disk_full.down and await self.store.has_grown():
            self.disk_full.recovered(self.clock.wall(), "the store grows again")

    async def _poll(self, run: MeterRun, cycle: Cycle) -> None:
        meter = run.meter
        self.counters.polls += 1
        try:
            raw = await self.metrics.poll(run.poller)
        except ModbusError as exc:
            self._failed(run, exc)
            return
        wall, mono = self.clock.wall(), self.clock.mono()
        values = quantized(raw)
        power = raw.get("power_w", math.nan)
        found = implausibility(power, run.limit_w)
        if found is not None:
            self.counters.rejected += 1
            self.metrics.refused(meter.id, found.kind)
            finite = power if math.isfinite(power) else None
            cycle.rejects.append((meter.id, epoch_ms(wall), found.reason, finite))
            refused = "reading refused: implausible power"
            self.statuses.set(meter.id, "error", epoch_ms(wall), refused)
            run.outage.failed(f"reading refused: {found.reason}", wall)
            return
        previous_ts = run.state.last_ts_ms
        step, run.state = advance(
            run.state,
            power_w=values["power_w"] or 0.0,
            wall_s=wall,
            mono_s=mono,
            max_gap_s=meter.gap_limit_s,
        )
        if step.gap_s is not None and previous_ts is not None:
            self.counters.gaps += 1
            cycle.gaps.append((meter.id, previous_ts, step.ts_ms))
        reading = Reading(
            meter.id,
            step.ts_ms,
            step.seq,
            step.energy_uwh,
            step.total_uwh,
            values,
            export_uwh=step.export_uwh,
            export_total_uwh=step.export_total_uwh,
        )
        reading, run.registers, events = run.registers.witness(
            reading, step, previous_ts, epoch_ms(wall)
        )
        cycle.readings.append(reading)
        cycle.events.extend(events)
        cycle.continuity.append((meter.id, self.boot_id, round(mono * 1000)))
        if run.registers.specs:
            cycle.settling.append((meter.id, ",".join(run.registers.settling())))
        behind_s = step.ts_ms / 1000 - wall
        if behind_s > CLOCK_STEP_WARN_S and not run.clock_behind:
            log.warning(
                "meter %s: the wall clock is %.1f s behind its last reading (stepped back?); "
                "timestamps advance at half speed until it catches up",
                meter.id,
                behind_s,
            )
        run.clock_behind = behind_s > CLOCK_STEP_WARN_S

    def _failed(self, run: MeterRun, exc: ModbusError) -> None:
        meter_id = run.meter.id
        wall = self.clock.wall()
        self.counters.failed_polls += 1
        self.counters.by_meter_failures[meter_id] = (
            self.counters.by_meter_failures.get(meter_id, 0) + 1
        )
        run.failures_in_row += 1
        silent = isinstance(exc, ModbusTimeoutError | ModbusConnectionError)
        state = "offline" if silent and run.failures_in_row >= OFFLINE_AFTER_FAILURES else "error"
        self.statuses.set(meter_id, state, epoch_ms(wall), exc.summary)
        run.outage.failed(str(exc), wall)

    async def _retention_loop(self, stop: asyncio.Event) -> None:
        days = self.config.storage.retention_days
        assert days is not None
        while not stop.is_set():
            cutoff = epoch_ms(self.clock.wall() - days * 86400)
            try:
                deleted = await self.store.apply_retention(cutoff)
            except StoreError as exc:
                log.error("retention: %s", exc)
            else:
                if deleted:
                    log.info("retention: deleted %d readings older than %d days", deleted, days)
            if await sleep_or_stop(RETENTION_EVERY_S, stop):
                return
