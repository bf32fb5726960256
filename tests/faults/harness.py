"""The fault-injection harness: a campus of real services, its faults' timeline, and its books.

A `Campus` writes one configuration, runs the simulator (with its answer log),
the bridge and the logger as `campus-energy` processes (or, where a scenario
needs a hook such as a stepped clock, as objects on an event-loop thread),
watches the logger's store while it runs, and at the end brings everything to
rest and draws up the books (`books.py`). Its parts: `services.py` (processes and
in-process services), `readback.py` (the store and the sink read from outside).

Two lengths: the short run of `make test`, and the long one of `make faults`
(`CAMPUS_ENERGY_FAULTS=long`): longer outages, more rounds, more kills.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Callable, Coroutine, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.faults.books import Answered, Books, Interruption, balance
from tests.faults.readback import Ledger, sink_windows, stored_readings
from tests.faults.services import InProcess, LogRecords, LoopThread, Process, Service
from tests.support.config import meter_at, tcp_bus, toml_text
from tests.support.readback import query
from tests.support.serial import SocatPair
from tests.support.sinks import docs_of, rollup_totals
from tests.support.waiting import wait_for, within

from campus_energy.config import load_config
from campus_energy.core.planner import plan_profile

LONG = os.environ.get("CAMPUS_ENERGY_FAULTS", "").lower() == "long"


@dataclass(frozen=True)
class Plan:
    """How hard the suite pushes: the short run of `make test` or the long one of `make faults`."""

    name: str
    outage_windows: int  # how long an outage lasts, in windows
    rounds: int  # how many times an outage is repeated
    kills: int  # kill -9 of each service
    clock_step_s: float
    full_rounds: int  # times the logger's store fills up
    test_timeout_s: float
    settle_s: float  # longest wait for the campus to come to rest


SHORT = Plan(
    "short",
    outage_windows=3,
    rounds=1,
    kills=3,
    clock_step_s=120.0,
    full_rounds=1,
    test_timeout_s=240.0,
    settle_s=60.0,
)
LONG_PLAN = Plan(
    "long",
    outage_windows=15,
    rounds=3,
    kills=20,
    clock_step_s=600.0,
    full_rounds=3,
    test_timeout_s=1800.0,
    settle_s=180.0,
)
PLAN = LONG_PLAN if LONG else SHORT

WINDOW_S = 2
GRACE_S = 0.5
INTERVAL_S = 0.5
SEED = int(os.environ.get("CAMPUS_ENERGY_FAULTS_SEED", "0")) or random.randrange(1, 1_000_000)


# --- configuration ------------------------------------------------------------------------------


def plant_bus(name: str = "plant", **extra: Any) -> dict[str, Any]:
    """A Modbus TCP bus on a free port."""
    return tcp_bus(name, **{"timeout_s": 1.0, "retries": 1, **extra})


def meter(meter_id: str, bus: str, unit: int, profile: str, **extra: Any) -> dict[str, Any]:
    defaults = {"building": f"B{unit}", "interval_s": INTERVAL_S}
    return meter_at(meter_id, bus, unit, profile, **{**defaults, **extra})


# A building with rooftop PV: at midday its meter exports (net −2.5 kW and more)
SOLAR = {"base_w": 150.0, "peak_w": 300.0, "pv_peak_w": 4000.0}


def standard_meters(bus: str = "plant") -> list[dict[str, Any]]:
    """Four meters of three models on one bus (each read with a single request), one of them
    behind rooftop PV."""
    return [
        meter("lib-main", bus, 1, "eastron-sdm630"),
        meter("lib-f1", bus, 2, "eastron-sdm120"),
        meter("admin", bus, 3, "eastron-sdm72d"),
        meter("roof-pv", bus, 4, "eastron-sdm120", building="Solar", simulate=SOLAR),
    ]


def midday_zone(now_s: float) -> str:
    """A whole-hour zone in which it is about 12:30 now: the campus's PV meter exports whenever
    the suite runs (the simulated sun follows the site's local time)."""
    offset = 12 - time.gmtime(now_s).tm_hour  # -11 … 12
    if offset == 0:
        return "Etc/GMT"
    return f"Etc/GMT-{offset}" if offset > 0 else f"Etc/GMT+{-offset}"  # POSIX signs: reversed


# --- the campus ---------------------------------------------------------------------------------


@dataclass
class Campus:
    """One scenario's system: simulator, logger, bridge and sink."""

    scenario: str
    folder: Path
    broker_port: int
    sink: dict[str, Any]
    buses: list[dict[str, Any]] = field(default_factory=lambda: [plant_bus()])
    meters: list[dict[str, Any]] = field(default_factory=standard_meters)
    serial: SocatPair | None = None
    truth_sink: dict[str, Any] | None = None  # where to read the books (default: `sink`)
    # The `bridge` keys of each bridge: one, or several sharing the readings (a
    # `shared_group`, or `topic_filters` each); from the second on, each has its own
    # client id and spool.
    bridge_keys: Sequence[Mapping[str, Any]] = ({},)

    def __post_init__(self) -> None:
        self.started = time.monotonic()
        self.zone = midday_zone(time.time())
        self.folder.mkdir(parents=True, exist_ok=True)
        self.config_file = self.folder / "campus.toml"
        self.config_file.write_text(toml_text(self._data(self.sink, bridge=self.bridge_keys[0])))
        self.bridge_files = [self.config_file]
        for n, keys in enumerate(self.bridge_keys[1:], start=2):
            own = {
                "client_id": f"faults-bridge-{n}",
                "spool_path": str(self.folder / f"spool-{n}.db"),
            }
            self.bridge_files.append(self.folder / f"campus-bridge-{n}.toml")
            self.bridge_files[-1].write_text(
                toml_text(self._data(self.sink, bridge={**own, **keys}))
            )
        self.sim_file = self.folder / "simulator.toml"
        self.sim_file.write_text(toml_text(self._data(self.sink, simulator=True)))
        self.config = load_config(self.config_file, {})
        for m in self.config.meters:
            plan = plan_profile(self.config.profile_of(m), self.config.bus(m.bus).cost_model)
            # the books take an answered request for a reading: one request per poll
            assert len(plan) == 1, f"{m.id} is read with {len(plan)} requests"
        if self.truth_sink is not None:
            truth = self.folder / "truth.toml"
            truth.write_text(toml_text(self._data(self.truth_sink)))
            self.truth = load_config(truth, {})
        else:
            self.truth = self.config
        self.db = self.config.storage.path
        self.spool = self.config.bridge.spool_path
        self.spools = [load_config(f, {}).bridge.spool_path for f in self.bridge_files]
        self.ledger = Ledger(self.db)
        self.interruptions: list[Interruption] = []
        self.problems: list[str] = []
        self.notes: list[str] = []
        self.simulators: dict[str, Process] = {}
        self.loop: LoopThread | None = None
        self.records = LogRecords()
        self._cleanups: list[Callable[[], None]] = []
        self.logger: Service = self._process("logger", self._logger_ready)
        self.bridge: Service = self._process("bridge", self._bridge_ready)
        self.other_bridges: list[Service] = [
            self._process("bridge", self._bridge_ready, name=f"bridge-{n}", config=f)
            for n, f in enumerate(self.bridge_files[1:], start=2)
        ]

    @property
    def bridges(self) -> list[Service]:
        return [self.bridge, *self.other_bridges]

    def _data(
        self,
        sink: Mapping[str, Any],
        simulator: bool = False,
        bridge: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        buses = []
        for bus in self.buses:
            bus = dict(bus)
            if bus["transport"] == "rtu":
                assert self.serial is not None, "a serial bus needs a socat pair"
                bus["device"] = self.serial.server_end if simulator else self.serial.client_end
            buses.append(bus)
        return {
            "site": {"timezone": self.zone},
            "storage": {"path": str(self.folder / "store.db")},
            "mqtt": {"port": self.broker_port},
            "logger": {"id": "faults"},
            "bridge": {
                "window_s": WINDOW_S,
                "grace_s": GRACE_S,
                "spool_path": str(self.folder / "spool.db"),
                "client_id": "faults-bridge",
                **sink,
                **(bridge or {}),
            },
            "buses": buses,
            "meters": self.meters,
        }

    # -- services ---------------------------------------------------------------------------

    def _process(
        self,
        command: str,
        ready: Callable[[Process], bool],
        *,
        name: str | None = None,
        config: Path | None = None,
    ) -> Process:
        name = name or command
        return Process(
            name,
            [command, "-c", str(config or self.config_file)],
            self.folder / f"{name}.log",
            ready=ready,
        )

    def _logger_ready(self, process: Process) -> bool:
        return "logger faults:" in process.log_text(since_start=True)

    def _bridge_ready(self, process: Process) -> bool:
        return "subscribed to" in process.log_text(since_start=True)

    def simulator(self, name: str = "simulator", meters: Sequence[str] | None = None) -> Process:
        """A `campus-energy simulate` process logging its answers to answers-<name>.jsonl."""
        if name not in self.simulators:
            args = ["simulate", "-c", str(self.sim_file), "--answers", str(self.answers(name))]
            for m in meters or ():
                args += ["--meter", m]
            self.simulators[name] = Process(
                name,
                args,
                self.folder / f"{name}.log",
                ready=lambda p: "simulator ready" in p.log_text(since_start=True),
            )
        return self.simulators[name]

    def answers(self, name: str) -> Path:
        return self.folder / f"answers-{name}.jsonl"

    def run(self, coroutine: Coroutine[Any, Any, Any], timeout: float = 60) -> Any:
        """Run an asyncio helper (a TCP proxy, ...) on the campus's event-loop thread."""
        self.loop = self.loop or LoopThread()
        return self.loop.run(coroutine, timeout)

    def on_close(self, cleanup: Callable[[], None]) -> None:
        self._cleanups.append(cleanup)

    def in_process(self, *names: str, clock: Any = None) -> None:
        """Run the logger and/or the bridge as objects on an event-loop thread (with `clock`)."""
        from campus_energy.bridge.service import Bridge
        from campus_energy.logger.service import MeterLogger

        self.loop = self.loop or LoopThread()
        self.records.start()
        if "logger" in names:
            self.logger = InProcess(
                "logger",
                self.loop,
                lambda: MeterLogger(self.config, clock=clock),
                lambda s: s.ready.is_set(),
                self.records,
            )
        if "bridge" in names:
            self.bridge = InProcess(
                "bridge",
                self.loop,
                lambda: Bridge(self.config, clock=clock),
                lambda s: s.subscribed.is_set(),
                self.records,
            )

    def start(self, simulators: Mapping[str, Sequence[str] | None] | None = None) -> None:
        """Simulator(s), then the bridge (its session must exist first), then the logger."""
        self.ledger.start()
        for name, meters in (simulators or {"simulator": None}).items():
            self.simulator(name, meters).start()
        for bridge in self.bridges:
            bridge.start()
        self.logger.start()
        wait_for(lambda: self.ledger.count() > 0, 30, "the first readings are stored")

    def kill_logger(self) -> None:
        moment = self.logger.kill()
        self.interruptions.append(
            Interruption(moment, frozenset(m["id"] for m in self.meters), "logger killed")
        )

    def advance(self, windows: float, meters: Sequence[str] | None = None) -> None:
        """Let the campus run on until each of `meters` has stored `windows` windows more."""
        ids = list(meters) if meters is not None else [m["id"] for m in self.meters]
        wanted = max(1, int(windows * WINDOW_S / INTERVAL_S * 0.8))
        self.ledger.look()
        goal = {m: self.ledger.count(m) + wanted for m in ids}
        timeout = windows * WINDOW_S * 4 + 30
        wait_for(
            lambda: all(self.ledger.count(m) >= goal[m] for m in ids),
            timeout,
            f"{windows} windows of readings from {', '.join(ids)}",
        )

    # -- the outbox, the spool, the sink --------------------------------------------------------

    def outbox_depth(self) -> int:
        rows = query(
            self.db,
            "SELECT count(*) FROM samples s JOIN meters m ON s.meter = m.id "
            "WHERE s.ts_ms > m.published_ts_ms",
        )
        return int(rows[0][0]) if rows else 0

    def dead_letters(self) -> list[tuple[str, bytes, str]]:
        return [
            (t, bytes(p), k)
            for spool in self.spools
            for t, p, k in query(spool, "SELECT topic, payload, kind FROM dead_letters")
        ]

    def overdue_s(self) -> float:
        """How long past its end (and the grace period) the oldest window in the spool waits."""
        rows = query(self.spool, "SELECT min(window_start_ms) FROM contributions")
        if not rows or rows[0][0] is None:
            return 0.0
        return time.time() - (rows[0][0] / 1000 + WINDOW_S + GRACE_S)

    def received(self) -> set[tuple[str, int]]:
        """(meter, seq) of every reading the bridges hold: in their spools or in the sink."""
        spooled = {
            (m, s)
            for spool in self.spools
            for m, s in query(spool, "SELECT meter_id, seq FROM contributions")
        }
        written = {(w.meter_id, seq) for w in sink_windows(self.truth) for seq in w.seqs}
        return spooled | written

    # -- the end ------------------------------------------------------------------------------

    def settle(self, wait_s: float = PLAN.settle_s) -> None:
        """Bring the campus to rest: the logger publishes all it stored and stops, the bridge
        receives every reading, writes every window and stops, the simulators stop.
        `wait_s`: the longest wait for the outbox to drain, and for the bridges to receive."""
        if not within(lambda: self.outbox_depth() <= 2 * len(self.meters), wait_s):
            self.problems.append(f"the outbox did not drain: {self.outbox_depth()} readings left")
        self._stopped(self.logger)
        depth = self.outbox_depth()
        if depth:
            self.problems.append(f"the logger stopped with {depth} readings not published")
        self.ledger.look()
        stored = set(self.ledger.readings)
        if not within(lambda: stored <= self.received(), wait_s, interval=0.25):
            missing = len(stored - self.received())
            self.problems.append(f"the bridge did not receive {missing} stored readings")
        for bridge in self.bridges:
            self._stopped(bridge)
        for simulator in self.simulators.values():
            if simulator.alive:
                self._stopped(simulator)
        self.ledger.stop()

    def _stopped(self, service: Service) -> None:
        status = service.stop()
        if status != 0:
            self.problems.append(f"{service.name} exited with status {status}")

    def close(self) -> None:
        """Whatever happened, leave no process or thread behind."""
        for service in (self.logger, *self.bridges, *self.simulators.values()):
            service.close()
        self.ledger.stop()
        for cleanup in reversed(self._cleanups):
            cleanup()
        self._cleanups.clear()
        self.records.stop()
        if self.loop is not None:
            self.loop.close()
            self.loop = None

    def books(self, *, evictions: bool = False, dead_letters: int = 0) -> Books:
        """The books of the run (after `settle`)."""
        answers = []
        for name in self.simulators:
            path = self.answers(name)
            for line in path.read_text().splitlines() if path.exists() else []:
                a = json.loads(line)
                if a["power_w"] is not None:
                    answers.append(Answered(a["meter_id"], a["t"], a["power_w"]))
        final = {(r.meter_id, r.seq): r for r in stored_readings(self.db)}
        documents = [(d.meter_id, d.window_start_ms) for d in docs_of(self.truth)]
        books = balance(
            self.scenario,
            self.truth,
            answers=answers,
            ledger=dict(self.ledger.readings),
            final=final,
            windows=sink_windows(self.truth),
            documents=documents,
            interruptions=self.interruptions,
            evictions=evictions,
        )
        books.problems[:0] = self.problems
        books.notes += self.notes
        books.problems += self._rollup_problems()
        kept = len(self.dead_letters())
        if kept != dead_letters:
            books.problems.append(f"{kept} dead letters in the spool, expected {dead_letters}")
        for service in (self.logger, *self.bridges, *self.simulators.values()):
            if "Traceback" in service.log_text():
                books.problems.append(f"a traceback in the {service.name}'s log")
        books.problems += self.records.failures
        books.seconds = time.monotonic() - self.started
        return books

    def _rollup_problems(self) -> list[str]:
        """The sink's hourly and daily rollups hold exactly the stored energy (SQL sinks)."""
        totals = rollup_totals(self.truth)
        if totals is None:
            return []
        energy: dict[str, float] = {}
        for (meter_id, _), r in self.ledger.readings.items():
            energy[meter_id] = energy.get(meter_id, 0.0) + r.energy_wh
        found = []
        for meter_id, wh in energy.items():
            daily, hourly, _, _ = totals.get(meter_id, (0.0, 0.0, 0, 0))
            if abs(daily - wh) > 1e-6 or abs(hourly - wh) > 1e-6:
                found.append(f"{meter_id}: rollups hold {daily!r}/{hourly!r} Wh, the store {wh!r}")
        return found


@contextmanager
def campus(*args: Any, **kwargs: Any) -> Iterator[Campus]:
    """A `Campus` that is closed (every process and thread ended) whatever happens."""
    c = Campus(*args, **kwargs)
    try:
        yield c
    finally:
        c.close()


def record(report: list[Books], books: Books) -> None:
    """Keep the books for the session's summary, then hold them to account."""
    report.append(books)
    assert not books.problems, "\n".join(books.problems)
    assert books.lost == 0 and books.duplicated == 0
    assert books.produced > 0
