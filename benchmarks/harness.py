"""What every benchmark script runs in: its options, a temp folder, the package's log, its tables.

A script is a function `run(folder) -> Iterable[Table]` and one line,
`harness.main(run, __doc__)`, which
- parses the command line (`--quick`: the smaller sizes of `results.sized`; the
  first line of the script's docstring is its `--help`),
- gives `run` a temporary folder, removed afterwards,
- keeps what the package logs at WARNING or above (`package_log`) instead of
  letting it interleave with the tables,
- prints each table as `run` yields it (`results.text`) and keeps it for the
  report,
- whatever happened, prints the log records and writes the figures and tables
  for `report.py` (`results.emit`),
- then a closing line: time, threads, child processes and the temp folder left
  behind, the machine's load.

`package_log` serves a script that wants the records of one stretch of its
run, and `firestore_emulator` starts the Firestore emulator exactly as the
tests do (`tests/support/emulator.py`; the repository's root goes on sys.path
for it).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil

import results
from results import Table

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(1, str(REPO))  # after the script's own folder, before site-packages

from tests.support.emulator import (  # noqa: E402
    EmulatorError,
    emulator_environment,
    running_emulator,
)

PACKAGE = "campus_energy"
__all__ = ["EmulatorError", "firestore_emulator", "main", "package_log"]


@contextmanager
def package_log(level: int = logging.WARNING) -> Iterator[list[logging.LogRecord]]:
    """The records the package logs at `level` or above while the block runs, not printed."""
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    log = logging.getLogger(PACKAGE)
    handler = Keep(level)
    saved = log.level, log.propagate
    log.addHandler(handler)
    log.setLevel(level)
    log.propagate = False
    try:
        yield records
    finally:
        log.removeHandler(handler)
        log.setLevel(saved[0])
        log.propagate = saved[1]


@contextmanager
def firestore_emulator() -> Iterator[str]:
    """The tests' Firestore emulator on a free port, with FIRESTORE_EMULATOR_HOST pointing at it
    inside the block: yields 'host:port'. Raises `EmulatorError` when it is missing or fails."""
    with running_emulator() as host, emulator_environment(host):
        yield host


def log_lines(records: Iterable[logging.LogRecord]) -> list[str]:
    return [f"  {r.levelname} {r.name}: {r.getMessage()}" for r in records]


def parse_args(doc: str | None, argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(doc or "").strip().split("\n")[0] or None)
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"smaller sizes, about a minute (as {results.QUICK_ENV}=1 does)",
    )
    return parser.parse_args(argv)


def main(run: Callable[[Path], Iterable[Table]], doc: str | None = None) -> None:
    """Runs a benchmark script: see the module's docstring."""
    args = parse_args(doc)
    if args.quick:  # results.sized() saw it already; child processes see it too
        os.environ[results.QUICK_ENV] = "1"
    script = Path(sys.argv[0]).stem
    started, load = time.perf_counter(), os.getloadavg()[0]
    records: list[logging.LogRecord] = []
    try:
        with (
            package_log() as records,
            tempfile.TemporaryDirectory(prefix=f"bench-{script}-") as name,
        ):
            folder = Path(name)
            for table in run(folder):
                print(results.text(results.keep(table)), flush=True)
    finally:  # what the package logged, even when the run failed
        for line in log_lines(records):
            print(line)
        results.emit(script)
    threads = [t.name for t in threading.enumerate() if t is not threading.main_thread()]
    children = [p for p in psutil.Process().children(recursive=True) if p.is_running()]
    print(
        f"total {time.perf_counter() - started:.0f} s; log records ≥ WARNING: {len(records)}; "
        f"threads left: {threads or 'none'}; child processes left: {len(children)}; "
        f"temp folder removed: {not folder.exists()}; load average (1 min) {load:.1f} at the "
        f"start, {os.getloadavg()[0]:.1f} at the end on {os.cpu_count()} CPUs"
    )
