"""The command line: `campus-energy <command> [-c CONFIG]`.

This module only parses options, loads the configuration and turns the
project's exceptions into messages and exit codes: 0 success, 1 runtime
failure, 2 bad usage or configuration.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from importlib import resources
from pathlib import Path

from campus_energy import __version__
from campus_energy.config import (
    DEFAULT_CONFIG_PATH,
    Config,
    SimulationConfig,
    config_path,
    load_config,
    unknown_name,
)
from campus_energy.core.models import unit_of
from campus_energy.core.planner import ReadRequest
from campus_energy.errors import CampusEnergyError, ConfigError, ProfileError, UsageError
from campus_energy.notify import Notifier
from campus_energy.profiles import load_profiles

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2
log = logging.getLogger("campus_energy")


def _config(args: argparse.Namespace) -> Config:
    return load_config(args.config, os.environ)


def _notifier() -> Notifier:
    """systemd's notification socket and watchdog for this process (a no-op without systemd)."""
    return Notifier.from_environ(os.environ, os.getpid())


SERVICES = frozenset({"logger", "bridge", "api", "dashboard"})


def _setup_logging(verbose: int, service: bool) -> None:
    """One line per event. Services log INFO by default; under journald without timestamps."""
    if verbose > 1:
        level = logging.DEBUG
    elif verbose or service:
        level = logging.INFO
    else:
        level = logging.WARNING
    stamp = "" if os.environ.get("JOURNAL_STREAM") else "%(asctime)s "
    logging.basicConfig(level=level, format=f"{stamp}%(levelname)s %(name)s: %(message)s")


async def _until_signalled(main: Callable[[asyncio.Event], object]) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    result = main(stop)
    if asyncio.iscoroutine(result):
        await result


# --- init -----------------------------------------------------------------------------------


def cmd_init(args: argparse.Namespace) -> int:
    target: Path = args.config or Path(
        os.environ.get("CAMPUS_ENERGY_CONFIG") or DEFAULT_CONFIG_PATH
    )
    if target.is_dir():
        raise UsageError(f"{target} is a folder: name the configuration file to write")
    if target.exists() and not args.force:
        raise UsageError(f"{target} exists; use --force to overwrite it")
    text = resources.files("campus_energy").joinpath("sample-config.toml").read_text("utf-8")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot write {target}: {exc.strerror}") from None
    print(f"wrote {target}: edit the buses and meters, then try `campus-energy read --all`")
    return EXIT_OK


# --- profiles -------------------------------------------------------------------------------


def cmd_profiles(args: argparse.Namespace) -> int:
    path, named = config_path(args.config, os.environ)
    user_dir = _config(args).profiles_dir if (named or path.exists()) else None
    profiles = load_profiles(user_dir)
    if args.action == "show":
        known = f"(known: {', '.join(profiles)})"
        if args.name is None:
            raise UsageError(f"profiles show needs a profile name {known}")
        if args.name not in profiles:
            raise UsageError(unknown_name("profile", args.name, profiles, known))
        p = profiles[args.name]
        print(f"{p.name}: {p.description}")
        fc = p.function_code
        print(
            f"  function {p.function} (FC {fc:02d}), byte order {p.byte_order}, phases {p.phases}"
        )
        print(
            f"  max {p.max_registers_per_request} registers per request, "
            f"pause {p.pause_between_requests_s:g} s, gaps readable: {p.read_gaps}"
        )
        print(f"  {'field':<18} {'address':>13} {'type':<8} {'scale':>8}  unit")
        for f in sorted(p.fields, key=lambda f: f.address):
            address = f"{f.address} (0x{f.address:04X})"
            print(f"  {f.name:<18} {address:>13} {f.type:<8} {f.scale:>8g}  {unit_of(f.name)}")
        return EXIT_OK
    if args.name is not None:
        raise UsageError(f"profiles list takes no name; to see one: profiles show {args.name}")
    for p in profiles.values():
        print(f"{p.name:<18} {p.description}")
    return EXIT_OK


# --- read -----------------------------------------------------------------------------------


def cmd_read(args: argparse.Namespace) -> int:
    from campus_energy.polling import open_buses, pollers
    from campus_energy.reader import (
        format_detail,
        format_table,
        json_line,
        read_all,
        rows_of,
        sleep_until_grid,
    )

    config = _config(args)
    if args.all:
        meters = list(config.meters)
        if not meters:
            raise UsageError("no meters configured (see `campus-energy init`)")
    elif args.meter:
        try:
            meters = [config.meter(m) for m in args.meter]
        except KeyError as exc:
            ids = [m.id for m in config.meters]
            known = f"(meters: {', '.join(ids) or 'none configured'})"
            raise UsageError(unknown_name("meter", exc.args[0], ids, known)) from None
    else:
        raise UsageError("name a meter, or use --all")

    def trace(bus: str, sending: bool, frame: bytes) -> None:
        print(f"  {bus} {'->' if sending else '<-'} {frame.hex(' ')}", file=sys.stderr)

    async def run(stop: asyncio.Event) -> int:
        buses = open_buses(config, trace=trace if args.verbose else None)
        planned = pollers(config, buses, meters)
        by_id = {p.meter.id: p for p in planned}
        if args.verbose:
            for p in planned:
                spans = ", ".join(f"FC{r.function:02d} {r.start}+{r.count}" for r in p.plan)
                print(f"plan for {p.meter.id}: {spans}", file=sys.stderr)
        interval = args.interval or min(m.interval_s for m in meters)
        failed = False
        try:
            while True:
                results = await read_all(planned)
                failed = any(r.error is not None for r in results)
                if args.json:
                    for r in results:
                        print(json_line(r), flush=True)
                elif args.all:
                    print(format_table(rows_of(results), config), flush=True)
                else:
                    for r in results:
                        print(format_detail(r, by_id[r.meter_id]), flush=True)
                if not args.watch:
                    break
                sleeper = asyncio.ensure_future(sleep_until_grid(interval))
                stopper = asyncio.ensure_future(stop.wait())
                await asyncio.wait({sleeper, stopper}, return_when=asyncio.FIRST_COMPLETED)
                sleeper.cancel()
                stopper.cancel()
                if stop.is_set():
                    break
                if not args.json:
                    print(flush=True)
        finally:
            for bus in buses.values():
                await bus.close()
        return EXIT_FAILURE if failed and not args.watch else EXIT_OK

    return _run_async(run)


def _run_async(run: Callable[[asyncio.Event], object]) -> int:
    outcome: list[int] = []

    async def wrapper(stop: asyncio.Event) -> None:
        result = run(stop)
        if asyncio.iscoroutine(result):
            result = await result
        outcome.append(int(result) if isinstance(result, int) else EXIT_OK)

    asyncio.run(_until_signalled(wrapper))
    return outcome[0] if outcome else EXIT_OK


# --- scan -----------------------------------------------------------------------------------


def _unit_range(text: str) -> list[int]:
    units: list[int] = []
    for part in text.split(","):
        low, _, high = part.partition("-")
        try:
            first, last = int(low), int(high or low)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"not a unit list: {text!r} (e.g. 1-247 or 1,5,9)"
            ) from None
        if not 1 <= first <= last <= 247:
            raise argparse.ArgumentTypeError(f"units must be within 1-247, got {part!r}")
        units.extend(range(first, last + 1))
    return sorted(set(units))


def cmd_scan(args: argparse.Namespace) -> int:
    from campus_energy.reader import scan

    config = _config(args)
    try:
        bus = config.bus(args.bus)
    except KeyError:
        names = [b.name for b in config.buses]
        known = f"(buses: {', '.join(names) or 'none configured'})"
        raise UsageError(unknown_name("bus", args.bus, names, known)) from None
    function = 4 if args.function == "input" else 3
    request = ReadRequest(function, args.address, 1)
    print(
        f"scanning {bus.name} units {args.units[0]}-{args.units[-1]} "
        f"(FC{function:02d} register {args.address}, {args.timeout:g} s per unit)",
        file=sys.stderr,
    )
    total = len(args.units)

    def progress(position: int, unit: int, found: int) -> None:  # one line, rewritten
        sys.stderr.write(f"\rscanning unit {unit} ({position}/{total}) … {found} found\x1b[K")
        sys.stderr.flush()

    started = time.monotonic()
    try:
        hits = asyncio.run(
            scan(
                bus,
                args.units,
                request=request,
                timeout_s=args.timeout,
                on_unit=progress if sys.stderr.isatty() else None,
            )
        )
    finally:
        if sys.stderr.isatty():
            sys.stderr.write("\r\x1b[K")  # the summary or the error takes the progress line
    elapsed = time.monotonic() - started
    for hit in hits:
        if hit.registers is not None:
            print(f"unit {hit.unit}: answers (register {args.address} = 0x{hit.registers[0]:04X})")
        else:
            print(f"unit {hit.unit}: answers with exception code {hit.exception_code}")
    units = ", ".join(str(hit.unit) for hit in hits)
    answered = f"unit(s) {units} answered" if hits else "no unit answered"
    print(
        f"{len(hits)} device(s) found in {elapsed:.1f} s: {answered} ({total} scanned)",
        file=sys.stderr,
    )
    return EXIT_OK if hits else EXIT_FAILURE


# --- simulate -------------------------------------------------------------------------------


def cmd_simulate(args: argparse.Namespace) -> int:
    from campus_energy.simulator.server import AnswerLog, Simulator

    config = _config(args)
    if not config.meters:
        raise UsageError("no meters configured to simulate (see `campus-energy init`)")
    if args.meter:
        ids = [m.id for m in config.meters]
        unknown = [m for m in args.meter if m not in ids]
        if unknown:
            known = f"(meters: {', '.join(ids)})"
            raise UsageError(unknown_name("meter", unknown[0], ids, known))
    fault_flags = {
        "timeout_rate": args.timeout_rate,
        "exception_rate": args.exception_rate,
        "corrupt_rate": args.corrupt_rate,
        "disconnect_after_s": args.disconnect_after,
        "reconnect_after_s": args.reconnect_after,
    }
    given = {k: v for k, v in fault_flags.items() if v is not None}
    faults = SimulationConfig(**given) if given else None

    answers: AnswerLog | None = None
    if args.answers is not None:
        try:
            answers = AnswerLog(args.answers)
        except OSError as exc:
            raise UsageError(f"cannot write {args.answers}: {exc.strerror}") from None

    async def run(stop: asyncio.Event) -> None:
        simulator = Simulator(
            config, meter_ids=args.meter, host=args.host, faults=faults, on_answer=answers
        )
        async with simulator:
            for server in simulator.servers:
                units = ", ".join(str(u) for u in sorted(server.meters))
                print(
                    f"bus {server.bus.name} ({server.bus.transport}) on {server.endpoint}: "
                    f"units {units}",
                    flush=True,
                )
            print("simulator ready", flush=True)
            await stop.wait()

    try:
        return _run_async(run)
    finally:
        if answers is not None:
            answers.close()


# --- logger -----------------------------------------------------------------------------------


def cmd_logger(args: argparse.Namespace) -> int:
    from campus_energy.logger import MeterLogger

    config = _config(args)
    if not config.meters:
        raise UsageError("no meters configured: the logger has nothing to poll")
    return _run_async(MeterLogger(config, notifier=_notifier()).run)


# --- bridge -----------------------------------------------------------------------------------


def cmd_bridge(args: argparse.Namespace) -> int:
    from campus_energy.bridge import Bridge

    return _run_async(Bridge(_config(args), notifier=_notifier()).run)


# --- api ------------------------------------------------------------------------------------


def cmd_api(args: argparse.Namespace) -> int:
    from campus_energy.api.server import serve

    serve(_config(args), dev=args.dev, notifier=_notifier())
    return EXIT_OK


# --- dashboard ------------------------------------------------------------------------------


def cmd_dashboard(args: argparse.Namespace) -> int:
    config = _config(args)  # validated here, so a bad config exits 2 before Streamlit starts
    script = resources.files("campus_energy.dashboard").joinpath("app.py")
    command = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(script),
        "--server.address",
        config.dashboard.host,
        "--server.port",
        str(config.dashboard.port),
        "--server.headless",
        "true",
        "--browser.gatherUsageStats",
        "false",
        "--client.toolbarMode",  # no developer menu or Deploy button for the people watching
        "viewer",
        "--",
    ]
    if config.source is not None:
        command += ["--config", str(config.source)]
    sys.stdout.flush()
    os.execv(sys.executable, command)  # Streamlit takes over this process (signals, exit code)


# --- demo -----------------------------------------------------------------------------------


def _days(text: str) -> int:
    try:
        days = int(text)
    except ValueError:
        days = -1
    if not 0 <= days <= 366:
        raise argparse.ArgumentTypeError(f"not a number of days from 0 to 366: {text!r}")
    return days


def cmd_demo(args: argparse.Namespace) -> int:
    from campus_energy import demo

    path = demo.prepare(args.dir, demo.FAST if args.fast else demo.NORMAL)
    config = load_config(path, os.environ)
    print(f"demo configuration: {path}", flush=True)

    async def run(stop: asyncio.Event) -> None:
        await demo.run_demo(
            config,
            path.parent,
            stop,
            rounds=args.rounds,
            broker_kind=args.broker,
            with_dashboard=args.with_dashboard,
            api_port=args.port,
            dashboard_port=args.dashboard_port,
            backfill_days=args.backfill_days,
        )
        print("demo stopped", flush=True)

    return _run_async(run)


# --- operations: each command lives in its own module under campus_energy.ops --------------

OPERATIONS = {
    "fix-db": "campus_energy.ops.fixdb",
    "import-legacy": "campus_energy.ops.legacy",
    "reconcile": "campus_energy.ops.reconcile",
    "doctor": "campus_energy.ops.doctor",
    "install-systemd": "campus_energy.ops.systemd",
    "mosquitto-acl": "campus_energy.ops.mosquitto_acl",
}


# --- the parser -----------------------------------------------------------------------------


def _probability(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return value


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "-c",
        "--config",
        type=Path,
        help="configuration file (default: $CAMPUS_ENERGY_CONFIG, else ./campus-energy.toml)",
    )
    common.add_argument("-v", "--verbose", action="count", default=0, help="more output")

    parser = argparse.ArgumentParser(
        prog="campus-energy",
        description="Campus electricity monitoring: Modbus meters, exact energy, dashboards.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("init", parents=[common], help="write a commented sample configuration")
    p.add_argument("--force", action="store_true", help="overwrite an existing file")
    p.set_defaults(func=cmd_init)

    p = sub.add_parser("profiles", parents=[common], help="list meter profiles, or show one")
    p.add_argument("action", nargs="?", choices=["list", "show"], default="list")
    p.add_argument("name", nargs="?", help="profile to show")
    p.set_defaults(func=cmd_profiles)

    p = sub.add_parser(
        "read", parents=[common], help="poll meters once (or --watch) and print values"
    )
    p.add_argument("meter", nargs="*", help="meter id(s)")
    p.add_argument("--all", action="store_true", help="every configured meter")
    p.add_argument("--json", action="store_true", help="one JSON object per meter per line")
    p.add_argument("--watch", action="store_true", help="repeat on the meters' polling grid")
    p.add_argument("--interval", type=_positive, help="seconds between polls with --watch")
    p.set_defaults(func=cmd_read)

    p = sub.add_parser("scan", parents=[common], help="find the devices that answer on a bus")
    p.add_argument("bus", help="bus name from the configuration")
    p.add_argument(
        "--units", type=_unit_range, default=_unit_range("1-247"), help="e.g. 1-247 or 1,5,9"
    )
    p.add_argument("--function", choices=["input", "holding"], default="input")
    p.add_argument("--address", type=int, default=0, help="register to read (0-based)")
    p.add_argument("--timeout", type=_positive, default=0.3, help="seconds to wait per unit")
    p.set_defaults(func=cmd_scan)

    p = sub.add_parser(
        "simulate", parents=[common], help="serve the configured meters as virtual meters"
    )
    p.add_argument("--host", help="address to listen on for TCP buses (default: each bus's host)")
    p.add_argument("--meter", action="append", help="simulate only this meter (repeatable)")
    p.add_argument("--timeout-rate", type=_probability, help="share of requests left unanswered")
    p.add_argument("--exception-rate", type=_probability, help="share answered with an exception")
    p.add_argument("--corrupt-rate", type=_probability, help="share answered with a broken CRC")
    p.add_argument(
        "--disconnect-after", type=_positive, metavar="S", help="stop answering after S seconds"
    )
    p.add_argument(
        "--reconnect-after", type=_positive, metavar="S", help="answer again after S seconds"
    )
    p.add_argument(
        "--answers",
        type=Path,
        metavar="FILE",
        help="append one JSON line per answered request (meter, time, served power) to FILE",
    )
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser(
        "logger", parents=[common], help="poll, integrate, store and publish (service)"
    )
    p.set_defaults(func=cmd_logger)

    p = sub.add_parser("bridge", parents=[common], help="readings from MQTT into windows (service)")
    p.set_defaults(func=cmd_bridge)

    p = sub.add_parser("api", parents=[common], help="the HTTP API and the web dashboard (service)")
    p.add_argument("--dev", action="store_true", help="Flask's development server, not Gunicorn")
    p.set_defaults(func=cmd_api)

    p = sub.add_parser(
        "dashboard", parents=[common], help="the local Streamlit dashboard (service)"
    )
    p.set_defaults(func=cmd_dashboard)

    p = sub.add_parser("demo", parents=[common], help="run the system on simulated meters")
    p.add_argument(
        "--dir", type=Path, default=Path("demo-data"), help="where the demo keeps its files"
    )
    p.add_argument("--rounds", type=int, help="stop after showing the table this many times")
    p.add_argument(
        "--broker",
        choices=["auto", "mosquitto", "embedded"],
        default="auto",
        help="MQTT broker to run (auto: Mosquitto when installed, else the embedded one)",
    )
    p.add_argument(
        "--fast", action="store_true", help="1 s polls and 10 s windows (kept in <dir>/fast)"
    )
    p.add_argument(
        "--with-dashboard", action="store_true", help="also run the local Streamlit dashboard"
    )
    p.add_argument(
        "--port",
        type=int,
        help="the web dashboard's and API's port (default: the config's, "
        "8000); when it is taken, any free port, and the demo prints which",
    )
    p.add_argument(
        "--dashboard-port",
        type=int,
        help="the Streamlit dashboard's port (default: 8501), or any free port when it is taken",
    )
    p.add_argument(
        "--backfill-days", type=_days, default=0, metavar="N",
        help="first write N days of simulated history (readings and windows; days already "
        "there are kept)"
    )  # fmt: skip
    p.set_defaults(func=cmd_demo)

    for name, module in OPERATIONS.items():
        ops = importlib.import_module(module)
        p = sub.add_parser(name, parents=[common], help=ops.HELP, description=ops.__doc__)
        ops.configure(p)
        p.set_defaults(func=ops.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(args.verbose, args.command in SERVICES)
    try:
        code: int = args.func(args)
    except ConfigError as exc:
        for key, message in exc.problems:
            print(f"campus-energy: configuration error: {key}: {message}", file=sys.stderr)
        return EXIT_USAGE
    except (UsageError, ProfileError) as exc:
        print(f"campus-energy: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except CampusEnergyError as exc:
        print(f"campus-energy: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # the reader went away (`… | head`): not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    return code
