"""The layout keeps the tiers apart: who may import whom, checked on the source with `ast`.

Every import counts, also one inside a function or under `TYPE_CHECKING`: a lazy
import is still a dependency, and a type-only one still ties two modules'
meanings together. A failure names the importing file, its line and the import.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parents[2] / "src" / "campus_energy"

# What `core` may not touch: I/O, time, concurrency, network and storage clients.
IO_MODULES = {
    "aiomqtt", "asyncio", "flask", "google", "grpc", "gunicorn", "http", "multiprocessing",
    "os", "paho", "pathlib", "prometheus_client", "psutil", "psycopg", "psycopg_pool",
    "requests", "select", "selectors", "serial", "shutil", "signal", "socket", "sqlite3",
    "ssl", "streamlit", "subprocess", "sys", "threading", "time", "urllib", "pymodbus",
}  # fmt: skip
# Pure helpers of third parties that `core` may use all the same.
PURE_EXCEPTIONS = {"pymodbus.client.mixin"}  # register <-> value conversion, no I/O

SERVICES = ("logger", "bridge", "api", "dashboard", "alerts")


@dataclass(frozen=True)
class Import:
    source: str  # the importing module, dotted
    path: Path
    line: int
    target: str  # the imported module, dotted (for `from x import y`: x.y when y is a module)

    def __str__(self) -> str:
        return f"{self.path.relative_to(PACKAGE.parent)}:{self.line} imports {self.target}"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def is_module(dotted: str) -> bool:
    if not dotted.startswith("campus_energy"):
        return False
    relative = PACKAGE.parent.joinpath(*dotted.split("."))
    return relative.with_suffix(".py").is_file() or (relative / "__init__.py").is_file()


def imports() -> Iterator[Import]:
    for path in sorted(PACKAGE.rglob("*.py")):
        source = module_name(path)
        package = source if path.name == "__init__.py" else source.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text("utf-8"), str(path))):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    yield Import(source, path, node.lineno, alias.name)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                for alias in node.names:
                    candidate = f"{base}.{alias.name}"
                    yield Import(
                        source, path, node.lineno, candidate if is_module(candidate) else base
                    )


def within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def ours(name: str) -> str:
    return f"campus_energy.{name}"


ALL = list(imports())


def offending(rule: str, found: list[Import]) -> None:
    if found:
        pytest.fail(f"{rule}:\n  " + "\n  ".join(str(i) for i in found))


def test_the_walk_sees_the_imports_it_judges() -> None:
    """A check that found no imports would pass on anything."""
    sources = {i.source for i in ALL}
    assert {ours("core.windows"), ours("logger.service"), ours("api.app")} <= sources
    assert any(i.target == ours("core.windows") for i in ALL)
    assert any(i.target == "sqlite3" for i in ALL)


def test_core_is_pure() -> None:
    found = [
        i
        for i in ALL
        if within(i.source, ours("core"))
        and i.target not in PURE_EXCEPTIONS
        and (
            i.target.split(".")[0] in IO_MODULES
            or (within(i.target, "campus_energy") and not within(i.target, ours("core")))
        )
    ]
    offending("core imports I/O or a module of ours outside core", found)


@pytest.mark.parametrize("service", SERVICES)
def test_a_service_tier_never_imports_another(service: str) -> None:
    others = [ours(s) for s in SERVICES if s != service]
    found = [
        i
        for i in ALL
        if within(i.source, ours(service)) and any(within(i.target, o) for o in others)
    ]
    offending(f"{service} imports another service tier", found)


def test_backends_import_no_tier() -> None:
    tiers = [ours(s) for s in (*SERVICES, "ops", "demo", "meters", "cli")]
    found = [
        i
        for i in ALL
        if within(i.source, ours("backends")) and any(within(i.target, t) for t in tiers)
    ]
    offending("a window backend imports a tier", found)


def test_runtime_and_meters_import_no_tier() -> None:
    tiers = [ours(s) for s in (*SERVICES, "ops", "demo", "backends", "cli")]
    found = [
        i
        for i in ALL
        if (within(i.source, ours("runtime")) or within(i.source, ours("meters")))
        and any(within(i.target, t) for t in tiers)
    ]
    offending("runtime or meters imports a tier", found)


def test_nothing_imports_the_demo() -> None:
    found = [
        i
        for i in ALL
        if within(i.target, ours("demo"))
        and not within(i.source, ours("demo"))
        and i.source != ours("cli")  # the command table names it, lazily
    ]
    offending("the demo is imported outside it", found)


def test_no_import_cycles() -> None:
    graph: dict[str, set[str]] = {}
    for i in ALL:
        if within(i.target, "campus_energy") and i.target != i.source:
            graph.setdefault(i.source, set()).add(i.target)
    cycles: list[list[str]] = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append([*stack[stack.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    assert not cycles, "import cycles:\n  " + "\n  ".join(" -> ".join(c) for c in cycles)


def test_the_command_line_imports_only_the_command_it_runs() -> None:
    """`campus-energy --help` loads no command; `doctor --help` loads doctor and not the others."""
    import subprocess
    import sys

    probe = (
        "import sys\n"
        "from campus_energy.cli import COMMANDS, build_parser\n"
        "build_parser(sys.argv[1:])\n"
        "homes = {name: where.partition(':')[0] for name, (where, _) in COMMANDS.items()}\n"
        "print(' '.join(sorted(n for n, m in homes.items() if m in sys.modules)))\n"
    )
    for chosen, loaded in (
        ([], ""),
        (["doctor"], "doctor"),
        (["read"], "profiles read scan simulate"),
    ):
        done = subprocess.run(
            [sys.executable, "-c", probe, *chosen], capture_output=True, text=True, check=True
        )
        assert done.stdout.strip() == loaded, (chosen, done.stdout, done.stderr)


def test_accounts_import_no_tier() -> None:
    """Bills are shared by the API, the Streamlit dashboard and the `bill` command."""
    tiers = [ours(s) for s in (*SERVICES, "ops", "demo", "meters")]
    found = [
        i
        for i in ALL
        if within(i.source, ours("accounts")) and any(within(i.target, t) for t in tiers)
    ]
    offending("accounts imports a tier", found)


def test_incidents_and_reports_import_no_tier() -> None:
    """The book of alerts is shared by the alerts service, the API, the Streamlit dashboard and
    the command line; reports by the `report` command and the alerts service's schedule."""
    tiers = [ours(s) for s in (*SERVICES, "ops", "demo", "meters")]
    found = [
        i
        for i in ALL
        if (within(i.source, ours("incidents")) or within(i.source, ours("reports")))
        and any(within(i.target, t) for t in tiers)
    ]
    offending("incidents or reports imports a tier", found)
