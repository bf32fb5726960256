"""Runs the benchmark scripts and writes benchmarks/REPORT.md.

Each script (read_plan, logger, bridge, disk, api, billing, alerts, figures, dashboard,
edges, layout, scale) runs as a child process with `CAMPUS_ENERGY_BENCH_RESULTS` pointing to a
temporary folder, where it leaves its headline figures and its tables (`benchmarks/results.py`).
Its output goes to this console and to `benchmarks/output/<script>.txt`; the run itself
(start, time, exit status, figures, tables, the end of stderr) to
`benchmarks/output/<script>.json`. The report is then written from
`benchmarks/output/`: the commit measured and the date, the machine, per script
a table of its headline figures per tier (ours | baseline | ratio) and its
tables, all rendered by `results.markdown`, and every script's raw output. A
script left out with `--only` keeps the section of its latest earlier run,
marked with the date of that run.

REPORT.md speaks for a commit: it is written only from a clean tree (no
uncommitted change under src/ or benchmarks/, but for what the report itself
writes), checked before the first script runs and again before it is written,
and it records `git rev-parse HEAD`. `--out DIR` writes the report and the runs
to another folder instead, from any tree (the commit then says what was
uncommitted).

Exit status: 1 when a script run here failed (the report is written anyway);
2 when the tree is not clean (nothing is written to benchmarks/).

Run: .venv/bin/python benchmarks/report.py [--quick] [--only api,dashboard] [--out DIR]
"""

from __future__ import annotations

import argparse
import collections
import json
import math
import os
import platform
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(BENCH))

import results  # noqa: E402
from results import QUICK_ENV, RESULTS_ENV, Table  # noqa: E402

OUTPUT = BENCH / "output"
REPORT = BENCH / "REPORT.md"
STDERR_TAIL = 20
MEASURED = ("src", "benchmarks")  # what a clean tree means: no change here...
WRITTEN = ("benchmarks/REPORT.md", "benchmarks/output")  # ...but for what the report writes

# script -> the tier its section reports, in the order of the data path
SCRIPTS = {
    "read_plan": "Meter side: read planning",
    "logger": "Logger",
    "bridge": "Bridge",
    "disk": "Disk writes (SD cards)",
    "api": "API",
    "billing": "Billing (bills, peaks)",
    "alerts": "Alerts (evaluation, notification latency, baseline quality)",
    "figures": "Figures shown",
    "dashboard": "Dashboard",
    "edges": "Edges (intake, spool, front)",
    "layout": "Layout (package tree, imports, start-up)",
    "scale": "Scale (an estate of 1,000 meters end to end, then to saturation)",
}


@dataclass
class Run:
    """One run of one script, as kept in benchmarks/output/<script>.json."""

    script: str
    started: str = ""  # ISO 8601, UTC
    seconds: float = 0.0
    exit_code: int | None = None  # None: never run
    quick: bool = False
    rows: list[dict[str, Any]] = field(default_factory=list)
    tables: list[dict[str, Any]] = field(default_factory=list)  # results.Table.as_json()
    stderr_tail: list[str] = field(default_factory=list)
    output: str = ""  # the raw output (kept in <script>.txt, not in the JSON)
    earlier: bool = False  # not run by this invocation

    @property
    def failed(self) -> bool:
        return self.exit_code is not None and self.exit_code != 0


# -- the machine -------------------------------------------------------------------------------


def command_output(argv: Sequence[str], timeout: float = 10.0) -> str:
    """The first line of a command's output, or "" when it cannot run."""
    if shutil.which(argv[0]) is None and not Path(argv[0]).is_file():
        return ""
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=timeout, check=False, cwd=REPO
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    lines = (done.stdout or done.stderr).strip().splitlines()
    return lines[0].strip() if lines else ""


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def ram_gib() -> float:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):
        return math.nan


def os_name() -> str:
    pretty = ""
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                pretty = line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    kernel = f"{platform.system()} {platform.release()} {platform.machine()}"
    return f"{pretty}, {kernel}" if pretty else kernel


def postgres_version() -> str:
    server = command_output(["postgres", "--version"]) or command_output(["psql", "--version"])
    return server.split(")", 1)[-1].strip() if ")" in server else server or "not found"


def mosquitto_version() -> str:
    path = shutil.which("mosquitto") or next(
        (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if Path(p).is_file()),
        None,
    )
    if path is None:
        return "not found"
    line = command_output([path, "-h"])
    return line.removeprefix("mosquitto version ").strip() or "unknown"


def uncommitted() -> list[str] | None:
    """The paths under src/ and benchmarks/ with uncommitted changes, tracked or new (None: no git).

    What the report itself writes (REPORT.md, output/) does not count.
    """
    argv = ["git", "status", "--porcelain", "--", *MEASURED]
    argv += [f":(exclude){path}" for path in WRITTEN]
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=30, check=True, cwd=REPO
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return [line[3:] for line in done.stdout.splitlines() if line.strip()]


def head_commit() -> str:
    """`git rev-parse HEAD`, or "" outside a git checkout."""
    return command_output(["git", "rev-parse", "HEAD"])


def git_revision(changed: Sequence[str] = ()) -> str:
    commit = head_commit() or "unknown"
    if not changed:
        return commit
    shown = ", ".join(changed[:5]) + (f" and {len(changed) - 5} more" if len(changed) > 5 else "")
    return f"{commit} + uncommitted changes in {shown}"


def machine(changed: Sequence[str] = ()) -> dict[str, str]:
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    return {
        "CPU": f"{cpu_model()} × {os.cpu_count()} logical CPUs",
        "RAM": f"{ram_gib():.1f} GiB",
        "OS": os_name(),
        "Python": f"{platform.python_version()} ({platform.python_implementation()})",
        "SQLite": f"{sqlite3.sqlite_version} (Python's sqlite3 module)",
        "PostgreSQL": postgres_version(),
        "Mosquitto": mosquitto_version(),
        "Node.js (Firestore emulator)": command_output(["node", "--version"]) or "not found",
        "Commit": git_revision(changed),
        "Load average (1, 5, 15 min) when the report started": load,
        "Date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


# -- running a script ----------------------------------------------------------------------------


def _pump(
    source: IO[str],
    sinks: Sequence[IO[str]],
    lock: threading.Lock,
    tail: collections.deque[str] | None = None,
) -> None:
    for line in iter(source.readline, ""):
        with lock:
            for sink in sinks:
                sink.write(line)
                sink.flush()
        if tail is not None:
            tail.append(line.rstrip("\n"))


def run_script(script: str, quick: bool, output: Path) -> Run:
    """Runs benchmarks/<script>.py; its output to this console and output/<script>.txt."""
    run = Run(script, started=datetime.now(UTC).isoformat(timespec="seconds"), quick=quick)
    with tempfile.TemporaryDirectory(prefix="bench-results-") as folder:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        env[RESULTS_ENV] = folder
        env.pop(QUICK_ENV, None)
        if quick:
            env[QUICK_ENV] = "1"
        text = output / f"{script}.txt"
        partial = output / f"{script}.txt.partial"  # replaces the .txt once the script ended
        stderr_tail: collections.deque[str] = collections.deque(maxlen=STDERR_TAIL)
        lock = threading.Lock()
        started = time.perf_counter()
        with partial.open("w", encoding="utf-8") as sink:
            process = subprocess.Popen(
                [sys.executable, str(BENCH / f"{script}.py")],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                encoding="utf-8",
                errors="replace",
                bufsize=1,
                cwd=REPO,
                env=env,
            )
            assert process.stdout is not None and process.stderr is not None
            pumps = [
                threading.Thread(target=_pump, args=(process.stdout, (sys.stdout, sink), lock)),
                threading.Thread(
                    target=_pump, args=(process.stderr, (sys.stderr, sink), lock, stderr_tail)
                ),
            ]
            for pump in pumps:
                pump.start()
            try:
                run.exit_code = process.wait()
            except BaseException:  # interrupted: the previous output stays
                partial.unlink(missing_ok=True)
                raise
            finally:
                for pump in pumps:
                    pump.join()
                process.stdout.close()
                process.stderr.close()
        run.seconds = time.perf_counter() - started
        partial.replace(text)
        run.stderr_tail = list(stderr_tail)
        run.output = text.read_text(encoding="utf-8")
        figures = Path(folder) / f"{script}.json"
        if figures.exists():
            try:
                run.rows = list(json.loads(figures.read_text(encoding="utf-8")))
            except ValueError as exc:
                run.stderr_tail.append(f"(report: unreadable figures file: {exc})")
        tables = figures.with_suffix(".tables.json")
        run.tables = [t.as_json() for t in results.load_tables(tables)] if tables.exists() else []
    return run


def save_run(run: Run, output: Path) -> None:
    data = asdict(run)
    del data["output"], data["earlier"]
    path = output / f"{run.script}.json"
    path.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def load_run(script: str, output: Path) -> Run:
    """The latest earlier run of a script from output/, or a Run that never ran."""
    path = output / f"{script}.json"
    if not path.exists():
        return Run(script, earlier=True)
    data = json.loads(path.read_text(encoding="utf-8"))
    run = Run(**{k: v for k, v in data.items() if k in Run.__dataclass_fields__})
    text = output / f"{script}.txt"
    run.output = text.read_text(encoding="utf-8") if text.exists() else ""
    run.earlier = True
    return run


# -- the markdown --------------------------------------------------------------------------------


def tier_table(rows: Sequence[dict[str, Any]]) -> str:
    """The markdown table of a tier's figures."""
    return results.markdown(results.figures_table(rows)).rstrip("\n")


def duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def status(run: Run) -> str:
    if run.exit_code is None:
        return "not run yet"
    if run.failed:
        return f"FAILED (exit status {run.exit_code})"
    return "ok" if run.rows else "ok, no figures recorded"


def fence(text: str) -> str:
    ticks = "```"
    while ticks in text:
        ticks += "`"
    return f"{ticks}text\n{text.rstrip()}\n{ticks}"


def build_report(runs: Sequence[Run], machine_info: dict[str, str], command: str) -> str:
    """The whole REPORT.md."""
    quick = [r.script for r in runs if r.quick and r.exit_code is not None]
    out = ["# Benchmark report", ""]
    out.append(
        f"Measured at commit `{machine_info.get('Commit', '?')}` on "
        f"{machine_info.get('Date', '?')}, written by `{command}` (`make bench` runs it without "
        "options). Ours and its baseline in a row come from the same run of the same script, on "
        "the same data and machine; each script's tables follow its headline figures, and the "
        "raw output of each run is at the end."
    )
    out.append("")
    if quick:
        out.append(
            f"**Quick mode** (`--quick`, `{QUICK_ENV}=1`) for: {', '.join(quick)}. Smaller sizes "
            "(fewer days, meters, messages, requests and repeats), so the figures only show the "
            "direction: they are not the benchmark's numbers. Run `make bench` for those."
        )
        out.append("")
    earlier = [r for r in runs if r.earlier and r.exit_code is not None]
    if earlier:
        out.append(
            "Sections from an earlier run (not run by this invocation): "
            + ", ".join(f"{r.script} ({r.started})" for r in earlier)
            + ". The machine below is the one of this invocation."
        )
        out.append("")

    out += ["## Machine", ""]
    machine_table = Table("", (results.Col("", align="left"), results.Col("", align="left")))
    for key, value in machine_info.items():
        machine_table.row(key, value)
    out += [results.markdown(machine_table)]

    out += [
        "## Summary",
        "",
    ]
    summary = Table(
        "",
        (
            "tier",
            "script",
            "status",
            "started (UTC)",
            results.Col("time", align="right"),
            "mode",
            "figures",
            "tables",
        ),
    )
    for run in runs:
        ran = run.exit_code is not None
        summary.row(
            SCRIPTS.get(run.script, run.script),
            f"`benchmarks/{run.script}.py`",
            f"{status(run)}{' (earlier run)' if run.earlier and ran else ''}",
            run.started or None,
            duration(run.seconds) if ran else None,
            ("quick" if run.quick else "full") if ran else None,
            len(run.rows),
            len(run.tables),
        )
    out.append(results.markdown(summary))
    out.append(
        "How to read the tables: *ours* and *baseline* are the script's own numbers; *ratio* is "
        "baseline/ours or ours/baseline, the way the script prints it (named in each row); "
        "*better* says whether a lower or a higher figure is the better one. So with "
        "baseline/ours on a lower-is-better figure, 10× means ours is ten times better, and "
        "with ours/baseline on a lower-is-better figure (bytes, CPU), below 1× is better."
    )
    out.append("")

    for run in runs:
        out.append(f"## {SCRIPTS.get(run.script, run.script)} (`benchmarks/{run.script}.py`)")
        out.append("")
        if run.exit_code is None:
            out += [f"Not run yet: `benchmarks/report.py --only {run.script}`.", ""]
            continue
        mode = "quick mode" if run.quick else "full size"
        when = f"{'earlier run, ' if run.earlier else ''}{run.started}"
        out.append(f"{status(run)}; {mode}; started {when}; {duration(run.seconds)}.")
        out.append("")
        if run.failed:
            out.append("The script failed. The last lines of its stderr:")
            out.append("")
            out.append(fence("\n".join(run.stderr_tail) or "(nothing on stderr)"))
            out.append("")
            if run.rows:
                out.append("Figures recorded before it failed:")
                out.append("")
        if run.rows:
            tiers: dict[str, list[dict[str, Any]]] = {}
            for row in run.rows:
                tiers.setdefault(str(row.get("tier", run.script)), []).append(row)
            for name, rows in tiers.items():
                if len(tiers) > 1:
                    out += [f"### {name}", ""]
                out += [tier_table(rows), ""]
        elif not run.failed:
            out += ["No figures were recorded: see the raw output.", ""]
        if run.tables:
            out += [f"### The tables of `{run.script}.py`", ""]
            out += [results.markdown(Table.from_json(t)) for t in run.tables]

    out += ["## Raw output", ""]
    for run in runs:
        if run.exit_code is None:
            continue
        out.append(
            f"<details><summary><code>benchmarks/{run.script}.py</code> — {status(run)}, "
            f"{'quick mode' if run.quick else 'full size'}, {duration(run.seconds)}, started "
            f"{run.started}</summary>"
        )
        out.append("")
        out.append(fence(run.output or "(no output)"))
        out.append("")
        out.append("</details>")
        out.append("")
    return "\n".join(out).rstrip() + "\n"


# -- main ----------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--only",
        default="",
        help=f"comma-separated scripts to run (of {', '.join(SCRIPTS)}); the others keep the "
        "section of their latest earlier run",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"smaller sizes, about a minute per script (sets {QUICK_ENV}=1 for the scripts)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="write REPORT.md and output/ into this folder instead of benchmarks/ "
        "(allowed from a tree with uncommitted changes, which the report then names)",
    )
    args = parser.parse_args(argv)
    chosen = [s.strip().removesuffix(".py") for s in args.only.split(",") if s.strip()]
    unknown = [s for s in chosen if s not in SCRIPTS]
    if unknown:
        parser.error(f"unknown script(s): {', '.join(unknown)} (known: {', '.join(SCRIPTS)})")
    args.only = chosen or list(SCRIPTS)
    args.quick = args.quick or os.environ.get(QUICK_ENV, "") not in ("", "0")
    return args


def refusal(changed: list[str] | None) -> str:
    """Why REPORT.md cannot be written from this tree ("" when it can)."""
    if changed is None:
        return "cannot tell which commit is measured: git did not answer"
    if changed:
        listed = "\n".join(f"  {path}" for path in changed)
        return f"uncommitted changes under {' and '.join(MEASURED)}:\n{listed}"
    return ""


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    official = args.out is None
    folder = BENCH if official else args.out.resolve()
    report, output = folder / REPORT.name, folder / OUTPUT.name
    changed = uncommitted()
    commit = head_commit()
    if official and (reason := refusal(changed)):
        print(
            f"benchmarks/REPORT.md speaks for a commit: not measuring, {reason}\n"
            "Commit them first, or write the report elsewhere with --out DIR.",
            file=sys.stderr,
        )
        return 2
    output.mkdir(parents=True, exist_ok=True)
    machine_info = machine(changed or ())
    command = "benchmarks/report.py" + (" --quick" if args.quick else "")
    if args.only != list(SCRIPTS):
        command += f" --only {','.join(args.only)}"
    runs = []
    for script in SCRIPTS:
        if script not in args.only:
            runs.append(load_run(script, output))
            continue
        print(f"\n==== benchmarks/{script}.py{' (quick)' if args.quick else ''} ====\n", flush=True)
        run = run_script(script, args.quick, output)
        save_run(run, output)
        runs.append(run)
        print(
            f"==== benchmarks/{script}.py: {status(run)}, {duration(run.seconds)}, "
            f"{len(run.rows)} figures, {len(run.tables)} tables ====",
            flush=True,
        )
    if official:  # the tree must still be the commit measured
        reason = refusal(uncommitted())
        if not reason and head_commit() != commit:
            reason = f"HEAD moved from {commit} to {head_commit()} during the run"
        if reason:
            print(
                f"not writing benchmarks/REPORT.md: {reason}\n"
                f"(the runs are in {output.relative_to(REPO)}/)",
                file=sys.stderr,
            )
            return 2
    report.write_text(build_report(runs, machine_info, command), encoding="utf-8")
    failed = [r.script for r in runs if r.failed and not r.earlier]
    shown = report.relative_to(REPO) if report.is_relative_to(REPO) else report
    print(f"\nwrote {shown}" + (f"; FAILED: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
