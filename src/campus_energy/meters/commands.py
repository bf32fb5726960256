"""The meter commands: `profiles`, `read`, `scan` and `simulate`, the installer's tools."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path

from campus_energy.config import Config, SimulationConfig, config_path, load_config, unknown_name
from campus_energy.core.models import unit_of
from campus_energy.core.planner import ReadRequest
from campus_energy.errors import EXIT_FAILURE, EXIT_OK, UsageError
from campus_energy.meters.profiles import load_profiles
from campus_energy.runtime.process import run_until_signalled


def _config(args: argparse.Namespace) -> Config:
    return load_config(args.config, os.environ)


def probability(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return value


def positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def unit_range(text: str) -> list[int]:
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


class Profiles:
    """List the meter profiles (built in, and the configuration's profiles_dir), or show one."""

    @staticmethod
    def configure(p: argparse.ArgumentParser) -> None:
        p.add_argument("action", nargs="?", choices=["list", "show"], default="list")
        p.add_argument("name", nargs="?", help="profile to show")

    @staticmethod
    def run(args: argparse.Namespace) -> int:
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
                f"  function {p.function} (FC {fc:02d}), byte order {p.byte_order}, "
                f"phases {p.phases}"
            )
            print(
                f"  max {p.max_registers_per_request} registers per request, "
                f"pause {p.pause_between_requests_s:g} s, gaps readable: {p.read_gaps}"
            )
            if p.factory_baudrate is not None:
                print(f"  factory serial setting: {p.factory_baudrate} baud 8N1")
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


class Read:
    """Poll meters once, or on their polling grid with --watch, and print what they answer."""

    @staticmethod
    def configure(p: argparse.ArgumentParser) -> None:
        p.add_argument("meter", nargs="*", help="meter id(s)")
        p.add_argument("--all", action="store_true", help="every configured meter")
        p.add_argument("--json", action="store_true", help="one JSON object per meter per line")
        p.add_argument("--watch", action="store_true", help="repeat on the meters' polling grid")
        p.add_argument("--interval", type=positive, help="seconds between polls with --watch")

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        from campus_energy.meters.diagnose import ReadOptions, read_meters

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
        options = ReadOptions(
            as_json=args.json,
            as_table=args.all,
            verbose=bool(args.verbose),
            watch=args.watch,
            interval_s=args.interval or min(m.interval_s for m in meters),
        )

        async def run(stop: asyncio.Event) -> int:
            failed = await read_meters(config, meters, options, stop)
            return EXIT_FAILURE if failed and not args.watch else EXIT_OK

        return run_until_signalled(run)


class Scan:
    """Find the devices that answer on a bus: one short request to each unit in turn."""

    @staticmethod
    def configure(p: argparse.ArgumentParser) -> None:
        p.add_argument("bus", help="bus name from the configuration")
        p.add_argument(
            "--units", type=unit_range, default=unit_range("1-247"), help="e.g. 1-247 or 1,5,9"
        )
        p.add_argument("--function", choices=["input", "holding"], default="input")
        p.add_argument("--address", type=int, default=0, help="register to read (0-based)")
        p.add_argument("--timeout", type=positive, default=0.3, help="seconds to wait per unit")

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        from campus_energy.meters.diagnose import scan

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
                print(
                    f"unit {hit.unit}: answers (register {args.address} = 0x{hit.registers[0]:04X})"
                )
            else:
                print(f"unit {hit.unit}: answers with exception code {hit.exception_code}")
        units = ", ".join(str(hit.unit) for hit in hits)
        answered = f"unit(s) {units} answered" if hits else "no unit answered"
        print(
            f"{len(hits)} device(s) found in {elapsed:.1f} s: {answered} ({total} scanned)",
            file=sys.stderr,
        )
        return EXIT_OK if hits else EXIT_FAILURE


class Simulate:
    """Serve the configured meters as virtual Modbus meters (TCP, or RTU on a serial port)."""

    @staticmethod
    def configure(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--host", help="address to listen on for TCP buses (default: each bus's host)"
        )
        p.add_argument("--meter", action="append", help="simulate only this meter (repeatable)")
        p.add_argument("--timeout-rate", type=probability, help="share of requests left unanswered")
        p.add_argument(
            "--exception-rate", type=probability, help="share answered with an exception"
        )
        p.add_argument("--corrupt-rate", type=probability, help="share answered with a broken CRC")
        p.add_argument(
            "--disconnect-after", type=positive, metavar="S", help="stop answering after S seconds"
        )
        p.add_argument(
            "--reconnect-after", type=positive, metavar="S", help="answer again after S seconds"
        )
        p.add_argument(
            "--answers",
            type=Path,
            metavar="FILE",
            help="append one JSON line per answered request (meter, time, served power) to FILE",
        )

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        from campus_energy.meters.simulator.server import AnswerLog, Simulator

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
            return run_until_signalled(run)
        finally:
            if answers is not None:
                answers.close()
