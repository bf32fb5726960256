"""The package layout: the tree, the import graph and the command line's start-up, now vs before.

Compares the working tree's `src/campus_energy` with the same folder at an
earlier commit (default: the last commit of the flat layout, `535d0ec`, when
git has it), extracted with `git archive` into a temporary folder:

- lines per top-level package (modules at the top level counted apart);
- the import graph walked with `ast` as tests/unit/test_architecture.py walks
  it: edges between our modules counting module-level imports only, then all
  of them (lazy and type-only too), and the cycles among the latter;
- the start-up of the command line, `python -m campus_energy <command> --help`,
  for a few commands: wall time (median of runs alternating between the two
  trees) and how many of our modules it imports.

Run: .venv/bin/python benchmarks/layout.py [--quick]
($CAMPUS_ENERGY_BENCH_LAYOUT_REV names another commit to compare with.)
"""

from __future__ import annotations

import ast
import os
import statistics
import subprocess
import sys
import tarfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import harness
import results as bench
from results import Col, Table

REPO = Path(__file__).resolve().parents[1]
BEFORE = os.environ.get("CAMPUS_ENERGY_BENCH_LAYOUT_REV", "535d0ec")  # the flat layout's last
TIER = "layout"
COMMANDS = (["--help"], ["logger", "--help"], ["doctor", "--help"], ["read", "--help"])


def modules(src: Path) -> dict[str, Path]:
    """Dotted name -> file, for every module of the package under `src`."""
    found: dict[str, Path] = {}
    for path in sorted((src / "campus_energy").rglob("*.py")):
        parts = list(path.relative_to(src).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def edges(src: Path, *, lazy: bool) -> set[tuple[str, str]]:
    """(importer, imported) between our modules; `lazy` counts imports inside functions and
    under `if TYPE_CHECKING:` too."""
    known = modules(src)
    found: set[tuple[str, str]] = set()
    for name, path in known.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        tree = ast.parse(path.read_text("utf-8"))
        nodes = ast.walk(tree) if lazy else iter(tree.body)
        for node in nodes:
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                targets = [
                    f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names
                ]
            for target in targets:
                if target in known and target != name:
                    found.add((name, target))
    return found


def cycles(graph: set[tuple[str, str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    nexts: dict[str, list[str]] = {}
    for a, b in sorted(graph):
        nexts.setdefault(a, []).append(b)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in nexts.get(node, []):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(nexts):
        if node not in index:
            visit(node)
    return found


def lines_per_package(src: Path) -> Counter[str]:
    counts: Counter[str] = Counter()
    for name, path in modules(src).items():
        parts = name.split(".")
        top = parts[1] if len(parts) > 2 or (path.name == "__init__.py" and len(parts) > 1) else ""
        key = top if (src / "campus_energy" / top).is_dir() and top else "(top-level modules)"
        counts[key] += len(path.read_text("utf-8").splitlines())
    return counts


def top_level_modules(src: Path) -> int:
    return sum(1 for p in (src / "campus_energy").glob("*.py") if p.name != "__init__.py")


def extract(rev: str, into: Path) -> Path:
    archive = subprocess.run(
        ["git", "archive", rev, "src"], cwd=REPO, check=True, capture_output=True
    ).stdout
    tar_path = into / "src.tar"
    tar_path.write_bytes(archive)
    with tarfile.open(tar_path) as tar:
        tar.extractall(into, filter="data")
    return into / "src"


def start_up(src: Path, argv: list[str]) -> tuple[float, int]:
    """Wall seconds of `python -m campus_energy ARGV`, and how many of our modules it imported."""
    probe = (
        "import runpy, sys, atexit\n"
        "atexit.register(lambda: print(sum(1 for m in sys.modules "
        "if m.startswith('campus_energy')), file=sys.stderr))\n"
        f"sys.argv = ['campus-energy', *{argv!r}]\n"
        "runpy.run_module('campus_energy', run_name='__main__')\n"
    )
    env = {**os.environ, "PYTHONPATH": str(src)}
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=False
    )
    elapsed = time.perf_counter() - started
    count = int(done.stderr.strip().splitlines()[-1])
    return elapsed, count


def tree_table(before: Path, after: Path) -> Table:
    table = Table(
        f"Lines per package, src/campus_energy at {BEFORE} → the working tree",
        ("package", Col("before", ",.0f"), Col("after", ",.0f")),
    )
    old, new = lines_per_package(before), lines_per_package(after)
    for key in sorted(set(old) | set(new), key=lambda k: (k.startswith("("), k)):
        table.row(key, old.get(key, 0), new.get(key, 0))
    table.row("total", sum(old.values()), sum(new.values()))
    table.row("modules", len(modules(before)), len(modules(after)))
    table.row("top-level modules", top_level_modules(before), top_level_modules(after))
    return table


def graph_table(before: Path, after: Path) -> Table:
    table = Table(
        "Import graph between our modules (ast; lazy: with imports inside functions and "
        "under TYPE_CHECKING)",
        ("tree", Col("module-level edges", ",.0f"), Col("lazy edges", ",.0f"),
         Col("cycles", ",.0f"), "modules in cycles"),
    )  # fmt: skip
    counted: dict[str, int] = {}
    for label, tree in (("before", before), ("after", after)):
        every = edges(tree, lazy=True)
        loops = cycles(every)
        counted[label] = len(loops)
        named = "; ".join(" ↔ ".join(m.removeprefix("campus_energy.") for m in c) for c in loops)
        table.row(label, len(edges(tree, lazy=False)), len(every), len(loops), named or "none")
    bench.record(TIER, "import cycles (lazy imports counted)", counted["after"],
                 counted["before"], "cycles")  # fmt: skip
    return table


def start_up_table(before: Path, after: Path) -> Table:
    runs = bench.sized(9, 3)
    table = Table(
        f"Command-line start-up, `python -m campus_energy …` (median of {runs}, the trees "
        "alternating)",
        ("command", Col("before", ".0f", "ms"), Col("modules of ours", ",.0f"),
         Col("after", ".0f", "ms"), Col("modules of ours ", ",.0f"), Col("speed-up", ".2f", "×")),
    )  # fmt: skip
    for argv in COMMANDS:
        times: dict[str, list[float]] = {"before": [], "after": []}
        counts: dict[str, int] = {}
        for _ in range(runs):
            for label, tree in (("before", before), ("after", after)):
                elapsed, count = start_up(tree, argv)
                times[label].append(elapsed)
                counts[label] = count
        old_s, new_s = (statistics.median(times[k]) for k in ("before", "after"))
        command = "campus-energy " + " ".join(argv)
        table.row(command, old_s * 1000, counts["before"], new_s * 1000, counts["after"],
                  old_s / new_s)  # fmt: skip
        imported = f"{counts['after']} vs {counts['before']} modules of ours imported"
        bench.record(TIER, f"start-up of `{command}`", new_s * 1000, old_s * 1000, "ms", imported)
    return table


def run(folder: Path) -> Iterator[Table]:
    try:
        before = extract(BEFORE, folder)
    except subprocess.CalledProcessError:
        yield Table(f"git has no {BEFORE}: nothing to compare the layout with")
        return
    after = REPO / "src"
    yield tree_table(before, after)
    yield graph_table(before, after)
    yield start_up_table(before, after)


if __name__ == "__main__":
    harness.main(run, __doc__)
