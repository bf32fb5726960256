"""The install by role: pyproject.toml's extras, the two locks, and each role's commands running
with only its own packages (the others made unimportable in a child Python)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path
from typing import Any

import pytest
from tests.support.config import config_data, write_toml

from campus_energy.extras import NEEDED_BY, extra_for

ROOT = Path(__file__).parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))["project"]
EXTRAS: dict[str, list[str]] = PYPROJECT["optional-dependencies"]
RUNTIME_EXTRAS = sorted(set(EXTRAS) - {"dev"})
DEV_TOOLS = {
    "pytest",
    "pytest-asyncio",
    "pytest-timeout",
    "mypy",
    "ruff",
    "hypothesis",
    "schemathesis",
    "playwright",
    "pip-tools",
}
OPTIONAL = frozenset(NEEDED_BY)  # every optional package, by its import name


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(lock: str) -> dict[str, str]:
    text = (ROOT / lock).read_text("utf-8")
    return {
        canonical(name): version
        for name, version in re.findall(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)", text, re.M)
    }


def requirement(spec: str) -> tuple[str, str]:
    """'psycopg[binary]==3.3.9' -> ('psycopg', '3.3.9'); every requirement here is pinned."""
    found = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==(\S+)", spec)
    assert found, f"{spec!r} is not pinned with =="
    return canonical(found[1]), found[2]


RUNTIME, DEV = pins("requirements-runtime.lock"), pins("requirements.lock")


def test_the_runtime_lock_holds_no_development_tool() -> None:
    assert not DEV_TOOLS & set(RUNTIME), sorted(DEV_TOOLS & set(RUNTIME))
    assert set(DEV) >= DEV_TOOLS, sorted(DEV_TOOLS - set(DEV))


def test_the_runtime_lock_is_the_dev_lock_without_the_tools() -> None:
    """One version of each package: a production host runs what the tests ran."""
    differ = {name: (v, DEV.get(name)) for name, v in RUNTIME.items() if DEV.get(name) != v}
    assert not differ, differ


@pytest.mark.parametrize("extra", ["core", *RUNTIME_EXTRAS])
def test_every_runtime_requirement_is_pinned_in_both_locks(extra: str) -> None:
    specs = PYPROJECT["dependencies"] if extra == "core" else EXTRAS[extra]
    for name, version in map(requirement, specs):
        assert RUNTIME.get(name) == version, (extra, name, version, RUNTIME.get(name))
        assert DEV.get(name) == version, (extra, name, version, DEV.get(name))


def test_the_development_tools_are_pinned_in_the_dev_lock() -> None:
    for name, version in map(requirement, EXTRAS["dev"]):
        assert DEV.get(name) == version, (name, version, DEV.get(name))


def test_no_extra_names_the_project_itself() -> None:
    """A self-referring extra makes pip-compile pin `campus-energy @ file:///…` in the lock."""
    assert "campus-energy" not in RUNTIME and "campus-energy" not in DEV
    for extra, specs in EXTRAS.items():
        assert not [s for s in specs if canonical(s).startswith("campus-energy")], extra


def test_all_holds_every_runtime_extra() -> None:
    everything = {requirement(s) for s in EXTRAS["all"]}
    for extra in RUNTIME_EXTRAS:
        assert {requirement(s) for s in EXTRAS[extra]} <= everything, extra


# --- each role with only its own packages -------------------------------------------------------

# Runs in a child Python: the packages named in argv[1] (JSON) cannot be imported, as when they
# are not installed; imports the modules of argv[2], then runs the command line of argv[3].
PROBE = textwrap.dedent(
    """
    import importlib, json, sys
    from importlib.abc import MetaPathFinder

    blocked = frozenset(json.loads(sys.argv[1]))

    class NotInstalled(MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.partition(".")[0] in blocked:
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, NotInstalled())
    for module in json.loads(sys.argv[2]):
        importlib.import_module(module)
    from campus_energy.cli import main

    try:
        code = main(json.loads(sys.argv[3]))
    except SystemExit as exc:
        code = exc.code
    print(f"exit {code}")
    """
)


def probe(
    blocked: frozenset[str], modules: list[str], argv: list[str], cwd: Path = ROOT
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", PROBE, *map(json.dumps, (sorted(blocked), modules, argv))],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
    )


CORE_COMMANDS = ["init", "profiles", "read", "scan", "simulate", "doctor", "fix-db"]
# role -> (what its extra brings, the modules its service imports, its commands)
ROLES: dict[str, tuple[set[str], list[str], list[str]]] = {
    "core": (set(), ["campus_energy.meters.modbus", "campus_energy.meters.simulator.server"], []),
    "logger": (
        {"aiomqtt", "paho", "prometheus_client"},
        ["campus_energy.logger.service"],
        ["logger"],
    ),
    "bridge": (
        {"aiomqtt", "paho", "prometheus_client"},
        ["campus_energy.bridge.service", "campus_energy.backends.sqlite.sink"],
        ["bridge"],
    ),
    "bridge-postgres": (
        {"aiomqtt", "paho", "prometheus_client", "psycopg"},
        ["campus_energy.bridge.service", "campus_energy.backends.postgres.sink"],
        ["bridge"],
    ),
    "api": (
        {"flask", "werkzeug", "gunicorn", "prometheus_client"},
        [
            "campus_energy.api.server",
            "campus_energy.api.app",
            "campus_energy.backends.sqlite.source",
        ],
        ["api"],
    ),
    "api-postgres": (
        {"flask", "werkzeug", "gunicorn", "prometheus_client", "psycopg"},
        ["campus_energy.api.server", "campus_energy.backends.postgres.source"],
        ["api"],
    ),
    "dashboard": (
        {"streamlit", "pandas", "altair"},
        ["campus_energy.dashboard.charts", "campus_energy.dashboard.history"],
        ["dashboard"],
    ),
    "alerts": (
        {"aiomqtt", "paho", "prometheus_client", "openpyxl", "matplotlib"},
        ["campus_energy.alerts.service", "campus_energy.reports.content"],
        ["alerts", "report"],
    ),
}


SLOW_ROLES = {"api", "dashboard", "alerts"}  # Flask, Streamlit or matplotlib: 5 s or more
# In `make faults`: a store's driver on top of a role (the role without it runs here), the
# bridge (the logger's packages and its own store) and the dashboard (Streamlit, 12 s).
LONG_ROLES = {"bridge-postgres", "api-postgres", "bridge", "dashboard"}


def _role(name: str) -> Any:
    marks = [pytest.mark.slow] if name in SLOW_ROLES else []
    marks += [pytest.mark.long] if name in LONG_ROLES else []
    return pytest.param(name, marks=marks)


@pytest.mark.parametrize("role", [_role(r) for r in sorted(ROLES)])
def test_a_role_runs_without_the_other_roles_packages(role: str) -> None:
    brings, modules, commands = ROLES[role]
    blocked = OPTIONAL - brings
    for argv in ([], *([c] for c in CORE_COMMANDS + commands)):
        done = probe(blocked, modules, [*argv, "--help"])
        assert done.stdout.rstrip().endswith("exit 0"), (role, argv, done.stdout, done.stderr)
        assert "usage: campus-energy" in done.stdout, (role, argv, done.stdout)


def test_the_extras_bring_what_the_roles_import() -> None:
    """The table above and pyproject.toml agree: an extra installs what its role imports."""
    by_import = {
        "aiomqtt": "aiomqtt",
        "paho": "paho-mqtt",
        "prometheus_client": "prometheus-client",
        "psycopg": "psycopg",
        "flask": "flask",
        "werkzeug": "werkzeug",
        "gunicorn": "gunicorn",
        "streamlit": "streamlit",
        "pandas": "pandas",
        "altair": "altair",
        "openpyxl": "openpyxl",
        "matplotlib": "matplotlib",
    }
    for role, (brings, _, _) in ROLES.items():
        if role == "core":
            continue
        listed = {name for name, _ in map(requirement, EXTRAS[role])}
        # paho-mqtt comes with aiomqtt
        wanted = {by_import[m] for m in brings} - {"paho-mqtt"}
        assert wanted <= listed, (role, wanted - listed)


# --- a command whose extra is missing names it --------------------------------------------------


def write_config(folder: Path, **sections: object) -> Path:
    data = config_data(
        [],
        [],
        storage={"path": str(folder / "store.db")},
        **sections,
    )
    bridge = data.setdefault("bridge", {})
    bridge.setdefault("spool_path", str(folder / "spool.db"))
    bridge.setdefault("sqlite", {"path": str(folder / "windows.db")})
    return write_toml(folder / "campus-energy.toml", data)


@pytest.mark.parametrize(
    ("command", "missing", "bridge", "extra"),
    [
        ("logger", {"aiomqtt"}, {}, "logger"),
        ("logger", {"prometheus_client"}, {}, "logger"),
        ("bridge", {"aiomqtt"}, {}, "bridge"),
        (
            "bridge",
            {"psycopg"},
            {"sink": "postgres", "postgres": {"dsn": "host=db"}},
            "bridge-postgres",
        ),
        (
            "bridge",
            {"google"},
            {"sink": "firestore", "firestore": {"project": "p"}},
            "bridge-firestore",
        ),
        ("api", {"flask"}, {}, "api"),
        ("api", {"gunicorn"}, {}, "api"),
        ("api", {"psycopg"}, {"sink": "postgres", "postgres": {"dsn": "host=db"}}, "api-postgres"),
        ("api", {"google"}, {"sink": "firestore", "firestore": {"project": "p"}}, "api-firestore"),
        ("dashboard", {"streamlit"}, {}, "dashboard"),
        ("demo", {"amqtt", "aiomqtt"}, {}, "demo"),
    ],
)
def test_a_command_without_its_extra_names_the_install(
    tmp_path: Path, command: str, missing: set[str], bridge: dict[str, object], extra: str
) -> None:
    config = write_config(tmp_path, bridge=bridge)
    done = probe(frozenset(missing), [], [command, "-c", str(config)], cwd=tmp_path)
    assert done.stdout.rstrip().endswith("exit 1"), (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr, done.stderr
    assert f"pip install 'campus-energy[{extra}]'" in done.stderr, done.stderr


def test_doctor_in_the_core_install_says_what_it_could_not_check(tmp_path: Path) -> None:
    config = write_config(tmp_path, bridge={"sink": "postgres", "postgres": {"dsn": "host=db"}})
    done = probe(OPTIONAL, [], ["doctor", "-c", str(config), "--json"], cwd=tmp_path)
    assert "Traceback" not in done.stderr, done.stderr
    results = {r["check"]: r for r in json.loads(done.stdout.rpartition("exit")[0])}
    assert results["broker"]["status"] == "warn", results["broker"]
    assert "aiomqtt is not installed" in results["broker"]["detail"]
    assert results["broker"]["fix"] == "pip install 'campus-energy[logger]'"
    assert results["sink"]["status"] == "warn", results["sink"]
    assert results["sink"]["fix"] == "pip install 'campus-energy[bridge-postgres]'"


@pytest.mark.parametrize(
    ("module", "command", "extra"),
    [
        ("aiomqtt", None, "logger"),
        ("aiomqtt", "bridge", "bridge"),
        ("psycopg", "api", "api-postgres"),
        ("psycopg.rows", "bridge", "bridge-postgres"),
        ("psycopg", "doctor", "bridge-postgres"),
        ("google.cloud.firestore", "api", "api-firestore"),
        ("streamlit", "dashboard", "dashboard"),
        ("amqtt", "demo", "demo"),
        ("yaml", "logger", None),
    ],
)
def test_the_extra_of_a_module(module: str, command: str | None, extra: str | None) -> None:
    assert extra_for(module, command) == extra
    if extra is not None:
        assert extra in EXTRAS
