"""The systemd units and the services' notifications, checked with systemd's own tools.

Every rendered unit passes `systemd-analyze verify` and scores at most 4.0 in
`systemd-analyze security`; the copies under deploy/systemd/ are the render
with the default paths; `install-systemd` writes (or, dry, only prints) them.
The logger, the bridge, the API and the alerts service, run as processes with a
notification socket, say READY=1, ping the watchdog, and say STOPPING=1 on SIGTERM before
exiting 0 within their unit's TimeoutStopSec.
"""

from __future__ import annotations

import contextlib
import re
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.support.campus import two_meters
from tests.support.config import write_toml
from tests.support.net import free_port
from tests.support.processes import campus_energy, require_program, run_cli
from tests.support.services import spawn
from tests.support.systemd import NotifySocket
from tests.support.waiting import eventually

from campus_energy.config import load_config, parse_config
from campus_energy.meters.simulator.server import Simulator
from campus_energy.ops.systemd import (
    DEFAULT,
    UNITS,
    Installation,
    find_executable,
    render,
    template,
)

DEPLOY = Path(__file__).parents[2] / "deploy" / "systemd"
MAX_EXPOSURE = 4.0


def unit_setting(unit: str, key: str) -> str:
    found = re.search(rf"^{key}=(.*)$", template(unit), re.MULTILINE)
    assert found is not None, f"{unit} has no {key}="
    return found.group(1)


@pytest.fixture
def analyze() -> str:
    return require_program("systemd-analyze")


@pytest.fixture(params=["yes", "read-only"])
def rendered(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Path]:
    """Every unit rendered for this environment's program, written into tmp_path."""
    installation = Installation(
        find_executable(), tmp_path / "campus-energy.toml", protect_home=request.param
    )
    paths = {}
    for name, text in render(installation).items():
        paths[name] = tmp_path / name
        paths[name].write_text(text, encoding="utf-8")
    return paths


# --- the units ----------------------------------------------------------------------------------


@pytest.mark.parametrize("unit", UNITS)
def test_every_unit_passes_systemd_analyze_verify(
    unit: str, rendered: dict[str, Path], analyze: str
) -> None:
    result = subprocess.run(
        [analyze, "verify", str(rendered[unit])], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout + result.stderr == ""  # not even a warning (an unknown key)


@pytest.mark.parametrize("unit", UNITS)
def test_every_unit_scores_4_or_better_in_systemd_analyze_security(
    unit: str, rendered: dict[str, Path], analyze: str
) -> None:
    result = subprocess.run(
        [analyze, "security", "--offline=true", "--no-pager", str(rendered[unit])],
        capture_output=True,
        text=True,
        timeout=60,
    )
    found = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    assert found is not None, result.stdout + result.stderr
    assert float(found.group(1)) <= MAX_EXPOSURE, result.stdout


def test_the_committed_units_are_the_render_with_default_paths() -> None:
    expected = render(DEFAULT)
    assert sorted(p.name for p in DEPLOY.glob("*.service")) == sorted(expected)
    for name, text in expected.items():
        assert (DEPLOY / name).read_text(encoding="utf-8") == text, (
            f"deploy/systemd/{name} differs from its template: "
            "python -m campus_energy.ops.systemd deploy/systemd"
        )


def test_the_logger_may_use_serial_devices_and_the_others_none() -> None:
    for unit in UNITS:
        text = template(unit)
        if unit == "campus-energy-logger.service":
            assert "SupplementaryGroups=dialout" in text
            assert "DevicePolicy=closed" in text and "DeviceAllow=char-ttyUSB rw" in text
            assert "PrivateDevices" not in text
        else:
            assert "PrivateDevices=yes" in text and "DeviceAllow" not in text


def test_stop_timeouts_leave_room_for_each_services_own_shutdown() -> None:
    from campus_energy.api.server import Gunicorn
    from campus_energy.bridge.service import FINAL_FLUSH_S
    from campus_energy.logger.service import SHUTDOWN_FLUSH_S

    budgets = {
        "campus-energy-logger.service": SHUTDOWN_FLUSH_S,
        "campus-energy-bridge.service": FINAL_FLUSH_S,
        "campus-energy-api.service": Gunicorn(parse_config({})).cfg.graceful_timeout,
        "campus-energy-alerts.service": 10.0,  # its loops end at once; a notice may be cut off
    }
    for unit, budget in budgets.items():
        assert float(unit_setting(unit, "TimeoutStopSec")) >= 2 * budget, unit
        assert unit_setting(unit, "Type") == "notify"
        assert int(unit_setting(unit, "WatchdogSec")) >= 10


# --- install-systemd ----------------------------------------------------------------------------


def install(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return run_cli("install-systemd", *args, cwd=cwd)


def test_a_dry_run_writes_nothing_and_prints_the_units(tmp_path: Path) -> None:
    prefix = tmp_path / "units"
    result = install("--prefix", str(prefix), "--dry-run")
    assert result.returncode == 0, result.stderr
    assert not prefix.exists()
    for unit in UNITS:
        assert f"# --- {prefix / unit} (dry run: not written) ---" in result.stdout
    assert f"ExecStart={find_executable()} logger -c /etc/campus-energy/campus-energy.toml" in (
        result.stdout
    )
    assert "systemctl daemon-reload" in result.stdout


def test_install_writes_the_units_for_this_environment(tmp_path: Path) -> None:
    config = tmp_path / "campus-energy.toml"
    config.write_text(
        """
[storage]
path = "/var/lib/campus-energy/smart_meter.db"
[bridge]
spool_path = "var/spool.db"
[bridge.sqlite]
path = "/var/lib/campus-energy/windows.db"
""",
        encoding="utf-8",
    )
    prefix = tmp_path / "units"
    result = install("--prefix", str(prefix), "-c", "campus-energy.toml", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in prefix.iterdir()) == sorted(UNITS)
    for unit in UNITS:
        text = (prefix / unit).read_text(encoding="utf-8")
        protect_home = re.search(r"^ProtectHome=(.*)$", text, re.MULTILINE)
        assert protect_home is not None and protect_home.group(1) in ("yes", "read-only")
        installation = Installation(
            find_executable(),
            config,
            protect_home="yes" if protect_home.group(1) == "yes" else "read-only",
        )
        assert text == render(installation)[unit]
        assert f"wrote {prefix / unit}" in result.stdout
    # the bridge's spool would land beside the configuration, which the units cannot write
    assert f"bridge.spool_path = {tmp_path / 'var/spool.db'} is outside" in result.stderr
    assert "storage.path" not in result.stderr
    # no meters configured: nothing for the logger to do
    enable = next(line for line in result.stdout.splitlines() if "enable --now" in line)
    assert enable.split() == [
        "systemctl",
        "enable",
        "--now",
        "campus-energy-bridge.service",
        "campus-energy-api.service",
    ]


def test_with_alerts_configured_their_unit_is_enabled_and_their_book_must_be_writable(
    tmp_path: Path,
) -> None:
    config = tmp_path / "campus-energy.toml"
    config.write_text(
        """
[storage]
path = "/var/lib/campus-energy/smart_meter.db"
[bridge]
spool_path = "/var/lib/campus-energy/spool.db"
[bridge.sqlite]
path = "/var/lib/campus-energy/windows.db"
[alerts]
state_path = "var/alerts.db"
[[alerts.channels]]
name = "ha"
kind = "mqtt"
[[alerts.rules]]
name = "silent"
kind = "meter-silent"
channels = ["ha"]
""",
        encoding="utf-8",
    )
    result = install("--prefix", str(tmp_path / "units"), "--dry-run", "-c", str(config))
    assert result.returncode == 0, result.stderr
    assert f"alerts.state_path = {tmp_path / 'var/alerts.db'} is outside" in result.stderr
    assert "set it to /var/lib/campus-energy/alerts.db" in result.stderr
    enable = next(line for line in result.stdout.splitlines() if "enable --now" in line)
    assert enable.split()[3:] == [
        "campus-energy-bridge.service",
        "campus-energy-api.service",
        "campus-energy-alerts.service",
    ]
    assert "campus-energy-alerts.service  # optional" not in result.stdout
    assert f"ExecStart={find_executable()} alerts -c {config}" in result.stdout
    # without rules or reports the unit is offered, not enabled
    bare = install("--prefix", str(tmp_path / "units"), "--dry-run")
    assert "systemctl enable --now campus-energy-alerts.service  # optional: alerts" in bare.stdout


def test_the_user_is_created_only_when_missing(tmp_path: Path) -> None:
    missing = f"ce-{uuid.uuid4().hex[:8]}"
    result = install("--prefix", str(tmp_path), "--dry-run", "--user", missing)
    assert "useradd --system --user-group --home-dir /var/lib/campus-energy" in result.stdout
    assert f"User={missing}" in result.stdout
    result = install("--prefix", str(tmp_path), "--dry-run", "--user", "root")
    assert "useradd" not in result.stdout


def test_a_prefix_that_cannot_be_written_exits_1_with_a_message(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")
    result = install("--prefix", str(tmp_path / "a-file" / "units"))
    assert result.returncode == 1
    assert "cannot write the units into" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_bad_user_name_exits_2(tmp_path: Path) -> None:
    result = install("--prefix", str(tmp_path), "--user", "Not A User")
    assert result.returncode == 2
    assert "--user" in result.stderr and "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []


# --- the services' notifications ----------------------------------------------------------------


@pytest.fixture
def manager() -> Iterator[NotifySocket]:
    m = NotifySocket()  # in the abstract namespace
    try:
        yield m
    finally:
        m.close()


@pytest.fixture
def file_manager(tmp_path: Path) -> Iterator[NotifySocket]:
    m = NotifySocket(str(tmp_path / "notify"))
    try:
        yield m
    finally:
        m.close()


def start(command: str, config: Path, manager: NotifySocket, log: Path) -> subprocess.Popen[bytes]:
    argv = campus_energy(command, "-c", config)
    return spawn(argv, log, env=manager.environ(), with_stdout=False)


async def stops_cleanly(process: subprocess.Popen[bytes], manager: NotifySocket, unit: str) -> None:
    """SIGTERM: STOPPING=1, then exit status 0, all within the unit's TimeoutStopSec."""
    timeout = float(unit_setting(unit, "TimeoutStopSec"))
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    await manager.arrival("STOPPING", timeout)
    await eventually(lambda: process.poll() is not None, timeout=timeout)
    assert process.returncode == 0
    assert time.monotonic() - started < timeout


@contextlib.contextmanager
def running(
    command: str, config: Path, manager: NotifySocket, log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """`campus-energy <command>` under `manager` for the block; killed if still running after
    it, and its log free of tracebacks."""
    process = start(command, config, manager, log)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        assert "Traceback" not in log.read_text()


async def test_the_logger_is_ready_pings_the_watchdog_and_stops_cleanly(
    tmp_path: Path, mosquitto: Any, manager: NotifySocket
) -> None:
    config_file = write_toml(tmp_path / "c.toml", two_meters(tmp_path, mosquitto.port, free_port()))
    log = tmp_path / "logger.log"
    async with Simulator(load_config(config_file, {})):
        with running("logger", config_file, manager, log) as process:
            ready = await manager.arrival("READY", 30)
            assert ready == {"READY": "1", "STATUS": "polling 2 meters on 1 buses"}
            await manager.pings(4)
            await stops_cleanly(process, manager, "campus-energy-logger.service")


async def test_the_bridge_is_ready_pings_the_watchdog_and_stops_cleanly(
    tmp_path: Path, mosquitto: Any, file_manager: NotifySocket
) -> None:
    config_file = tmp_path / "c.toml"
    config_file.write_text(
        f"""
[mqtt]
port = {mosquitto.port}
[bridge]
spool_path = "{tmp_path / "spool.db"}"
client_id = "bridge-notify"
sink = "sqlite"
[bridge.sqlite]
path = "{tmp_path / "windows.db"}"
""",
        encoding="utf-8",
    )
    log = tmp_path / "bridge.log"
    with running("bridge", config_file, file_manager, log) as process:
        ready = await file_manager.arrival("READY", 30)
        assert ready["STATUS"] == "campus/energy/+/reading → sqlite sink"
        await file_manager.pings(4)
        await stops_cleanly(process, file_manager, "campus-energy-bridge.service")


async def test_the_alerts_service_is_ready_pings_the_watchdog_and_stops_cleanly(
    tmp_path: Path, mosquitto: Any, manager: NotifySocket
) -> None:
    config_file = tmp_path / "c.toml"
    config_file.write_text(
        f"""
[mqtt]
port = {mosquitto.port}
[bridge.sqlite]
path = "{tmp_path / "windows.db"}"
[alerts]
state_path = "{tmp_path / "alerts.db"}"
evaluate_every_s = 1
[[alerts.channels]]
name = "ha"
kind = "mqtt"
[[alerts.rules]]
name = "silent"
kind = "meter-silent"
channels = ["ha"]
[[alerts.rules]]
name = "thin"
kind = "coverage-low"
channels = ["ha"]
""",
        encoding="utf-8",
    )
    log = tmp_path / "alerts.log"
    with running("alerts", config_file, manager, log) as process:
        ready = await manager.arrival("READY", 30)
        assert ready == {"READY": "1", "STATUS": "2 rules"}
        await manager.pings(4)
        assert (tmp_path / "alerts.db").is_file()  # its book, created before READY=1
        await stops_cleanly(process, manager, "campus-energy-alerts.service")


async def test_the_api_under_gunicorn_is_ready_when_it_listens_and_pings_the_watchdog(
    tmp_path: Path, manager: NotifySocket
) -> None:
    port = free_port()
    config_file = tmp_path / "c.toml"
    config_file.write_text(
        f"""
[api]
port = {port}
workers = 1
[bridge.sqlite]
path = "{tmp_path / "windows.db"}"
""",
        encoding="utf-8",
    )
    log = tmp_path / "api.log"
    with running("api", config_file, manager, log) as process:
        await manager.arrival("READY", 60)
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass  # listening once it said READY=1
        await manager.pings(4)
        assert sum("READY" in m for _, m in manager.messages) == 1
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=30):
                pass
        except urllib.error.HTTPError as exc:
            assert exc.code == 503  # no windows yet: an answer all the same
            exc.close()
        await stops_cleanly(process, manager, "campus-energy-api.service")
