"""The command line as a user runs it: real processes, real exit codes, real output."""

from __future__ import annotations

import json
import os
import pty
import re
import selectors
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.support.config import config_data, meter_at, tcp_bus, write_toml
from tests.support.mqtt import require_mosquitto
from tests.support.net import free_port
from tests.support.processes import campus_energy, run_cli
from tests.support.services import serving_process

from campus_energy.cli import build_parser

COMMANDS = sorted(build_parser()._subparsers._group_actions[0].choices)  # type: ignore[union-attr]


def write_config(folder: Path, port: int, unit: int = 0) -> Path:
    return write_toml(
        folder / "campus-energy.toml",
        config_data(
            [tcp_bus(port=port, timeout_s=0.3)],
            [
                meter_at("boiler-house", "plant", unit or 1, "eastron-sdm630", building="Plant"),
                meter_at("old-meter", "plant", 2, "campus-legacy", building="Admin"),
            ],
            site={"timezone": "Europe/London"},
        ),
    )


@pytest.fixture
def simulated(tmp_path: Path) -> Iterator[Path]:
    """A config file and a `campus-energy simulate` process serving its meters."""
    config = write_config(tmp_path, free_port())
    with serving_process(
        campus_energy("simulate", "-c", config),
        tmp_path / "simulate.log",
        ready=lambda: "simulator ready" in (tmp_path / "simulate.log").read_text(),
        ready_timeout=20,
        stop_timeout=10,
    ):
        yield config


def test_the_installed_script_runs_the_same_command_line() -> None:
    """The `campus-energy` entry point (the other tests run `python -m campus_energy`)."""
    script = Path(sys.executable).with_name("campus-energy")
    result = subprocess.run([script, "--version"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout == run_cli("--version").stdout != ""


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command: str) -> None:
    result = run_cli(command, "--help")
    assert result.returncode == 0
    assert "usage: campus-energy" in result.stdout


def test_a_bad_config_exits_2_naming_the_key(tmp_path: Path) -> None:
    config = write_config(tmp_path, 502)
    config.write_text(config.read_text().replace("unit = 2", "unit = 0"))
    result = run_cli("read", "--all", "-c", str(config))
    assert result.returncode == 2
    assert 'meters[1] (id "old-meter").unit: must be between 1 and 247, got 0' in result.stderr
    assert "Traceback" not in result.stderr


def test_an_env_override_error_exits_2(tmp_path: Path) -> None:
    config = write_config(tmp_path, 502)
    result = run_cli("read", "--all", "-c", str(config), env={"CAMPUS_ENERGY__MQTT__PORT": "many"})
    assert result.returncode == 2
    assert "mqtt.port: must be an integer, got 'many'" in result.stderr


def test_init_writes_a_valid_sample_and_refuses_to_overwrite(tmp_path: Path) -> None:
    target = tmp_path / "etc" / "campus-energy.toml"
    assert run_cli("init", "-c", str(target)).returncode == 0
    assert "[[meters]]" in target.read_text()
    again = run_cli("init", "-c", str(target))
    assert again.returncode == 2
    assert "--force" in again.stderr
    assert run_cli("init", "-c", str(target), "--force").returncode == 0
    assert run_cli("profiles", "-c", str(target)).returncode == 0  # the sample validates


def test_profiles_lists_and_shows(tmp_path: Path) -> None:
    listing = run_cli("profiles", cwd=tmp_path)
    assert listing.returncode == 0
    for name in (
        "eastron-sdm120",
        "eastron-sdm230",
        "eastron-sdm630",
        "eastron-sdm72d",
        "campus-legacy",
    ):
        assert name in listing.stdout
    shown = run_cli("profiles", "show", "eastron-sdm630", cwd=tmp_path)
    assert "power_w" in shown.stdout and "52 (0x0034)" in shown.stdout
    assert run_cli("profiles", "show", "nope", cwd=tmp_path).returncode == 2


def test_profiles_show_without_a_name_says_so_and_lists_the_profiles(tmp_path: Path) -> None:
    result = run_cli("profiles", "show", cwd=tmp_path)
    assert result.returncode == 2
    assert "None" not in result.stderr
    assert "profiles show needs a profile name (known: campus-legacy, eastron-sdm120" in (
        result.stderr
    )


def test_profiles_list_with_a_name_points_to_show(tmp_path: Path) -> None:
    result = run_cli("profiles", "list", "eastron-sdm120", cwd=tmp_path)
    assert result.returncode == 2
    assert "to see one: profiles show eastron-sdm120" in result.stderr
    assert result.stdout == ""


def test_a_misspelled_profile_gets_a_suggestion(tmp_path: Path) -> None:
    result = run_cli("profiles", "show", "eastorn-sdm120", cwd=tmp_path)
    assert result.returncode == 2
    assert 'unknown profile "eastorn-sdm120" — did you mean "eastron-sdm120"?' in result.stderr
    far = run_cli("profiles", "show", "zzz", cwd=tmp_path)
    assert far.returncode == 2
    assert 'unknown profile "zzz" (known: campus-legacy, ' in far.stderr


def test_a_misspelled_profile_in_the_config_names_the_meter_and_suggests(tmp_path: Path) -> None:
    config = write_config(tmp_path, 502)
    config.write_text(config.read_text().replace('"campus-legacy"', '"campus-legasy"'))
    result = run_cli("read", "--all", "-c", str(config))
    assert result.returncode == 2
    assert (
        'configuration error: meters[1] (id "old-meter").profile: unknown profile '
        '"campus-legasy" — did you mean "campus-legacy"?'
    ) in result.stderr


def test_profiles_uses_the_config_named_by_the_environment(tmp_path: Path) -> None:
    folder = tmp_path / "mine"
    folder.mkdir()
    builtin = Path(__file__).parents[2] / "src/campus_energy/meters/profiles/eastron-sdm120.toml"
    text = builtin.read_text().replace('name = "eastron-sdm120"', 'name = "site-meter"')
    (folder / "site-meter.toml").write_text(text)
    config = tmp_path / "site.toml"
    config.write_text('profiles_dir = "mine"\n')
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = run_cli("profiles", cwd=elsewhere, env={"CAMPUS_ENERGY_CONFIG": str(config)})
    assert result.returncode == 0, result.stderr
    assert "site-meter" in result.stdout


@pytest.mark.parametrize(
    ("where", "message"),
    [
        ("folder", "is a folder: name the configuration file to write"),
        ("under-a-file", "cannot write"),
    ],
)
def test_init_where_no_file_can_be_written_exits_2_without_a_traceback(
    tmp_path: Path, where: str, message: str
) -> None:
    (tmp_path / "folder").mkdir()
    (tmp_path / "a-file").write_text("")
    target = tmp_path / "folder" if where == "folder" else tmp_path / "a-file" / "c.toml"
    result = run_cli("init", "--force", "-c", str(target))
    assert result.returncode == 2
    assert f"{target} {message}" in result.stderr or f"{message} {target}" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("command", ["read", "doctor", "profiles"])
def test_a_folder_given_as_the_config_exits_2_naming_it(tmp_path: Path, command: str) -> None:
    result = run_cli(command, "-c", str(tmp_path))
    assert result.returncode == 2
    assert f"{tmp_path} is a folder: name the configuration file itself" in (
        result.stdout + result.stderr
    )
    assert "Traceback" not in result.stderr


def test_read_json_prints_one_object_per_meter(simulated: Path) -> None:
    result = run_cli("read", "--all", "--json", "-c", str(simulated))
    assert result.returncode == 0, result.stderr
    objects = [json.loads(line) for line in result.stdout.splitlines()]
    assert [o["meter_id"] for o in objects] == ["boiler-house", "old-meter"]
    for o in objects:
        assert o["ts"].endswith("Z") and len(o["ts"]) == len("2026-01-01T00:00:00.000Z")
        assert o["power_w"] > 0
        assert 200 < o["voltage_v"] < 260
    assert {"power_l1_w", "current_l3_a", "import_energy_wh"} <= set(objects[0])


def test_read_one_meter_verbose_shows_the_requests(simulated: Path) -> None:
    result = run_cli("read", "old-meter", "-v", "-c", str(simulated))
    assert result.returncode == 0, result.stderr
    assert "frequency_hz" in result.stdout and " Hz" in result.stdout
    assert "plan for old-meter: FC03" in result.stderr
    assert "plant ->" in result.stderr and "plant <-" in result.stderr


def test_read_unknown_meter_exits_2(tmp_path: Path) -> None:
    config = write_config(tmp_path, 502)
    result = run_cli("read", "nope", "-c", str(config))
    assert result.returncode == 2
    assert 'unknown meter "nope" (meters: boiler-house, old-meter)' in result.stderr
    result = run_cli("read", "old-meterr", "-c", str(config))
    assert result.returncode == 2
    assert 'unknown meter "old-meterr" — did you mean "old-meter"?' in result.stderr


def test_scan_of_a_misspelled_bus_exits_2_with_a_suggestion(tmp_path: Path) -> None:
    result = run_cli("scan", "palnt", "-c", str(write_config(tmp_path, 502)))
    assert result.returncode == 2
    assert 'unknown bus "palnt" — did you mean "plant"?' in result.stderr


def test_read_without_a_device_exits_1_naming_the_bus(tmp_path: Path) -> None:
    config = write_config(tmp_path, free_port())
    result = run_cli("read", "boiler-house", "-c", str(config))
    assert result.returncode == 1
    assert "bus 'plant'" in result.stdout


SCAN_SUMMARY = re.compile(
    r"^2 device\(s\) found in \d+\.\d s: unit\(s\) 1, 2 answered \(4 scanned\)$", re.M
)


def test_scan_finds_the_devices_that_answer(simulated: Path) -> None:
    result = run_cli("scan", "plant", "--units", "1-4", "--timeout", "0.2", "-c", str(simulated))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert [line.split(" (")[0] for line in lines] == ["unit 1: answers", "unit 2: answers"]
    assert all(re.fullmatch(r"unit \d: answers \(register 0 = 0x[0-9A-F]{4}\)", x) for x in lines)
    assert SCAN_SUMMARY.search(result.stderr), result.stderr
    assert "\r" not in result.stderr and "scanning unit" not in result.stderr  # not a terminal


def test_scan_on_a_terminal_shows_its_progress_on_one_line(simulated: Path) -> None:
    command = campus_energy("scan", "plant", "-c", simulated)
    controller, terminal = pty.openpty()
    process = subprocess.Popen(
        [*command, "--units", "1-4", "--timeout", "0.2"],
        stdout=subprocess.PIPE,
        stderr=terminal,
        text=True,
    )
    os.close(terminal)
    shown = b""
    deadline = time.monotonic() + 30
    try:
        with selectors.DefaultSelector() as selector:
            selector.register(controller, selectors.EVENT_READ)
            while selector.select(max(0.0, deadline - time.monotonic())):
                try:
                    chunk = os.read(controller, 4096)
                except OSError:  # EIO: the process closed its end of the terminal
                    break
                if not chunk:
                    break
                shown += chunk
        stdout, _ = process.communicate(timeout=30)
    finally:
        os.close(controller)
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0
    text = shown.decode()
    for position, found in ((1, 0), (2, 1), (3, 2), (4, 2)):
        assert f"\rscanning unit {position} ({position}/4) … {found} found" in text, text
    assert SCAN_SUMMARY.search(text.replace("\r\n", "\n").split("\r\x1b[K")[-1]), text
    assert stdout.splitlines()[0].startswith("unit 1: answers (register 0 = 0x")
    assert "scanning" not in stdout


@pytest.mark.slow
@pytest.mark.long  # tests/integration/test_demo.py runs the demo end to end in the short run
@pytest.mark.parametrize("broker", ["mosquitto", "embedded"])
def test_demo_shows_readings_flowing(tmp_path: Path, broker: str) -> None:
    if broker == "mosquitto":
        require_mosquitto()
    env = {
        "CAMPUS_ENERGY__BUSES__0__PORT": str(free_port()),
        "CAMPUS_ENERGY__BUSES__1__PORT": str(free_port()),
        "CAMPUS_ENERGY__MQTT__PORT": str(free_port()),
    }
    folder = tmp_path / "demo"
    result = run_cli("demo", "--rounds", "2", "--broker", broker, "--dir", str(folder), env=env)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    last = result.stdout.split("Campus Energy demo")[-1]
    for meter in ("ece-f1-001", "lib-main", "hostel-main", "admin-legacy"):
        assert meter in last
    counts = re.search(r"readings stored (\d+) · published (\d+) · received over MQTT (\d+)", last)
    assert counts is not None, last
    stored, published, received = map(int, counts.groups())
    assert stored >= 12 and published >= 12 and received >= 12
    assert (folder / "campus-energy.toml").exists()
    assert (folder / "smart_meter.db").exists()
    bridged = re.search(r"bridge: readings (\d+)", last)
    assert bridged is not None and int(bridged.group(1)) >= 12
    # on shutdown the bridge writes the open windows: the books balance
    windows = sqlite3.connect(folder / "windows.db")
    store = sqlite3.connect(folder / "smart_meter.db")
    try:
        in_windows = windows.execute(
            "SELECT sum(total_energy_wh) FROM window_aggregates"
        ).fetchone()
        in_store = store.execute("SELECT sum(energy_wh) FROM readings").fetchone()
    finally:
        windows.close()
        store.close()
    assert in_windows[0] == pytest.approx(in_store[0], abs=1e-6)


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["fix-db", "--db", "{folder}"], 1, "is a folder: name the store file itself"),
        (
            ["import-legacy", "--timezone", "UTC", "{folder}"],
            2,
            "is a folder: name the original deployment's database file",
        ),
        (
            ["import-legacy", "--timezone", "UTC", "--meter-map", "{folder}", "{file}"],
            2,
            "--meter-map: cannot read",
        ),
    ],
)
def test_a_folder_where_a_file_belongs_is_named_plainly(
    tmp_path: Path, args: list[str], code: int, message: str
) -> None:
    folder = tmp_path / "a-folder"
    folder.mkdir()
    (tmp_path / "old.db").write_bytes(b"")
    filled = [a.format(folder=folder, file=tmp_path / "old.db") for a in args]
    result = run_cli(*filled, cwd=tmp_path)
    assert result.returncode == code, result.stderr
    assert message in result.stderr
    assert "Errno" not in result.stderr and "Traceback" not in result.stderr
