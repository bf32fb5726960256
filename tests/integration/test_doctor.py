"""`campus-energy doctor` against real parts: the simulator on a socat cable and over TCP,
Mosquitto, PostgreSQL, the Firestore emulator, real SQLite files (one damaged on purpose).

Doctor runs in-process through `cli.main` (in a worker thread when the simulator
serves from the test's event loop) and, for the exit code and the JSON, as a
subprocess.
"""

from __future__ import annotations

import asyncio
import gc
import getpass
import json
import os
import re
import socket
import sqlite3
import stat
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest
from psycopg.conninfo import make_conninfo
from tests.support.net import free_port
from tests.support.processes import require_program, run_cli
from tests.support.serial import SocatPair
from tests.support.services import serving_process

from campus_energy import cli
from campus_energy.backends.sqlite.sink import SqliteSink
from campus_energy.bridge.spool import Spool
from campus_energy.config import Config, load_config
from campus_energy.core.readings import Reading
from campus_energy.core.windows import Contribution
from campus_energy.demo.mosquitto import port_open
from campus_energy.logger.store import MeterRecord, ReadingStore
from campus_energy.meters.simulator.server import Simulator
from campus_energy.ops.doctor.checks import Identity, Status, binary_size
from campus_energy.ops.doctor.checks.clock import clock_verdict
from campus_energy.ops.doctor.checks.devices import analyse_serial
from campus_energy.ops.doctor.checks.files import DISK_FAIL_BELOW, GIB, MIB, disk_verdict

SYMBOL = {"✔": "ok", "⚠": "warn", "✘": "fail", "–": "skip"}
LINE = re.compile(r"^(✔|⚠|✘|–) (\S+(?: \S+)*)\s{2,}(.*)$")


# --- helpers --------------------------------------------------------------------------------


def write_config(tmp_path: Path, body: str, *, broker_port: int | None = None) -> Path:
    """A config file whose files all live in tmp_path; `body` adds buses, meters, sections."""
    path = tmp_path / "campus-energy.toml"
    path.write_text(
        f"""
[site]
timezone = "UTC"
[storage]
path = "{tmp_path / "var" / "store.db"}"
[mqtt]
port = {broker_port or free_port()}
[bridge]
spool_path = "{tmp_path / "var" / "spool.db"}"
{body}
""",
        encoding="utf-8",
    )
    return path


def sqlite_sink(tmp_path: Path) -> str:
    return f'[bridge.sqlite]\npath = "{tmp_path / "var" / "windows.db"}"\n'


def doctor(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    """Run `campus-energy doctor ARGS` in this process: (exit code, standard output)."""
    code = cli.main(["doctor", *args])
    return code, capsys.readouterr().out


def doctor_json(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, Any]]:
    """(exit code, results by title) of `doctor --json ARGS`."""
    code, out = doctor(capsys, "--json", *args)
    return code, {entry["title"]: entry for entry in json.loads(out)}


def doctor_process(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return run_cli("doctor", *args, timeout=timeout)


def lines_of(out: str) -> dict[str, tuple[str, str, str | None]]:
    """title -> (status, detail, fix) from the text report."""
    found: dict[str, tuple[str, str, str | None]] = {}
    title = ""
    for line in out.splitlines():
        match = LINE.match(line)
        if match:
            symbol, title, detail = match.groups()
            found[title] = (SYMBOL[symbol], detail, None)
        elif line.strip().startswith("fix: ") and title:
            status, detail, _ = found[title]
            found[title] = (status, detail, line.strip().removeprefix("fix: "))
    return found


def sim_config(config: Config, devices: dict[str, str]) -> Config:
    """The same configuration with rtu buses on the simulator's end of each cable."""
    buses = tuple(
        b.model_copy(update={"device": devices[b.name]}) if b.name in devices else b
        for b in config.buses
    )
    copy = config.model_copy(update={"buses": buses})
    copy._profiles = dict(config.profiles)
    return copy


async def make_store(
    path: Path, meter_ids: list[str], *, start_ms: int, count: int, published: bool
) -> None:
    """A logger store holding `count` readings per meter from `start_ms` on, one a second."""
    store = ReadingStore(path)
    try:
        await store.register([MeterRecord(m) for m in meter_ids])
        readings = [
            Reading(m, start_ms + i * 1000, i + 1, 1000, (i + 1) * 1000, {"power_w": 100.0 + i})
            for m in meter_ids
            for i in range(count)
        ]
        await store.insert_many(readings)
        if published:
            await store.mark_published(readings)
    finally:
        await store.close()


async def make_spool(path: Path, items: list[Contribution]) -> None:
    spool = Spool(path)
    try:
        await spool.add([], items)
    finally:
        await spool.close()


async def make_windows(path: Path) -> None:
    sink = SqliteSink(path, ZoneInfo("UTC"))
    try:
        await sink.merge([], int(time.time() * 1000))
    finally:
        await sink.close()


# --- a healthy installation ------------------------------------------------------------------


async def test_a_healthy_installation_passes_every_check(
    tmp_path: Path, mosquitto: Any, socat_pair: SocatPair, capsys: pytest.CaptureFixture[str]
) -> None:
    tcp_port = free_port()
    config_file = write_config(
        tmp_path,
        f"""
[[buses]]
name = "line"
transport = "rtu"
device = "{socat_pair.client_end}"
timeout_s = 0.5
[[buses]]
name = "plant"
transport = "tcp"
host = "127.0.0.1"
port = {tcp_port}
timeout_s = 0.5
[[meters]]
id = "lab-1"
bus = "line"
unit = 1
profile = "eastron-sdm120"
[[meters]]
id = "plant-3"
bus = "plant"
unit = 3
profile = "eastron-sdm630"
"""
        + sqlite_sink(tmp_path),
        broker_port=mosquitto.port,
    )
    config = load_config(config_file, {})
    now_ms = int(time.time() * 1000)
    await make_store(
        config.storage.path,
        ["lab-1", "plant-3"],
        start_ms=now_ms - 60_000,
        count=30,
        published=True,
    )
    await make_spool(config.bridge.spool_path, [])
    await make_windows(config.bridge.sqlite.path)

    async with Simulator(sim_config(config, {"line": socat_pair.server_end})):
        code, out = await asyncio.to_thread(doctor, capsys, "-c", str(config_file))

    lines = lines_of(out)
    assert code == 0, out
    expected = {
        "config",
        "serial line",
        "meter lab-1",
        "meter plant-3",
        "broker",
        "sink sqlite",
        "sqlite store",
        "sqlite spool",
        "sqlite windows",
        "clock",
        "outbox",
        "spool",
    }
    assert expected <= set(lines), out
    for title, (status, _, _) in lines.items():
        # the clock may be unknown in a container: a warning, never a failure
        allowed = {"ok", "warn"} if title == "clock" else {"ok"}
        assert status in allowed, f"{title}: {lines[title]}"
    assert any(title.startswith("disk ") for title in lines)
    for meter in ("meter lab-1", "meter plant-3"):
        assert re.search(r"power_w [\d,.]+ W, answered in \d+ ms", lines[meter][1]), lines[meter]
    assert "readable and writable" in lines["serial line"][1]
    assert "quick_check ok" in lines["sqlite store"][1]
    assert lines["outbox"][1].startswith("empty")
    assert out.rstrip().splitlines()[-1].endswith(("passed", "warning")), out


# --- the broker ------------------------------------------------------------------------------


def test_a_broker_port_with_nothing_listening_fails_with_the_fix(tmp_path: Path) -> None:
    port = free_port()
    config_file = write_config(tmp_path, sqlite_sink(tmp_path), broker_port=port)
    result = doctor_process("-c", str(config_file), "--skip-meters")
    assert result.returncode == 1, result.stdout + result.stderr
    lines = lines_of(result.stdout)
    status, detail, fix = lines["broker"]
    assert status == "fail"
    assert f"127.0.0.1:{port}" in detail and "Connection refused" in detail
    assert fix is not None and fix.startswith("start the broker: sudo systemctl start mosquitto")
    assert lines["meters"][0] == "skip"
    assert "Traceback" not in result.stderr


def test_the_json_report_parses_and_keeps_the_exit_code(tmp_path: Path) -> None:
    config_file = write_config(tmp_path, sqlite_sink(tmp_path))
    result = doctor_process("-c", str(config_file), "--json", "--skip-meters")
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert isinstance(report, list) and report
    for entry in report:
        assert set(entry) == {"check", "status", "title", "detail", "fix"}
        assert entry["status"] in {"ok", "warn", "fail", "skip"}
        assert entry["fix"] is None or entry["status"] in {"warn", "fail"}
    by_check = {e["check"]: e for e in report}
    assert by_check["broker"]["status"] == "fail"
    assert by_check["config"]["status"] == "ok"
    assert [e["check"] for e in report][:4] == ["config", "serial", "meters", "broker"]


@pytest.fixture
def broker_with_passwords(tmp_path: Path) -> Iterator[int]:
    """A Mosquitto that allows only user 'logger' with password 'right-horse-battery'."""
    executable = require_program("mosquitto")
    passwd = require_program("mosquitto_passwd")
    folder = tmp_path / "auth-broker"
    folder.mkdir()
    passwords = folder / "passwd"
    passwords.touch()
    subprocess.run(
        [passwd, "-b", str(passwords), "logger", "right-horse-battery"],
        check=True,
        capture_output=True,
    )
    port = free_port()
    conf = folder / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous false\npassword_file {passwords}\n"
        f"user {getpass.getuser()}\n",
        encoding="utf-8",
    )
    with serving_process(
        [executable, "-c", conf],
        folder / "mosquitto.log",
        ready=lambda: port_open("127.0.0.1", port),
        ready_timeout=10,
        stop_timeout=10,
    ):
        yield port


@pytest.mark.parametrize("password", ["wrong-staple-9876", None])
def test_refused_credentials_are_told_apart_and_never_printed(
    tmp_path: Path,
    broker_with_passwords: int,
    capsys: pytest.CaptureFixture[str],
    password: str | None,
) -> None:
    mqtt = ""
    if password is not None:
        secret = tmp_path / "mqtt-password"
        secret.write_text(password + "\n", encoding="utf-8")
        mqtt = f'username = "logger"\npassword_file = "{secret}"\n'
    config_file = write_config(tmp_path, sqlite_sink(tmp_path), broker_port=broker_with_passwords)
    text = config_file.read_text().replace("[mqtt]\n", f"[mqtt]\n{mqtt}")
    config_file.write_text(text, encoding="utf-8")

    code, out = doctor(capsys, "-c", str(config_file), "--skip-meters")
    status, detail, fix = lines_of(out)["broker"]
    assert code == 1 and status == "fail"
    assert "Not authorized" in detail
    assert fix is not None
    if password is None:
        assert "set mqtt.username and mqtt.password_file" in fix
    else:
        assert "mosquitto_passwd" in fix and "logger" in fix
        assert password not in out


def test_the_right_credentials_connect(
    tmp_path: Path, broker_with_passwords: int, capsys: pytest.CaptureFixture[str]
) -> None:
    secret = tmp_path / "mqtt-password"
    secret.write_text("right-horse-battery\n", encoding="utf-8")
    config_file = write_config(tmp_path, sqlite_sink(tmp_path), broker_port=broker_with_passwords)
    text = config_file.read_text().replace(
        "[mqtt]\n", f'[mqtt]\nusername = "logger"\npassword_file = "{secret}"\n'
    )
    config_file.write_text(text, encoding="utf-8")
    _, results = doctor_json(capsys, "-c", str(config_file), "--skip-meters")
    assert results["broker"]["status"] == "ok", results["broker"]
    assert "as logger" in results["broker"]["detail"]
    assert "right-horse-battery" not in json.dumps(results)


# paho-mqtt 2.2 does not close the socket of a failed TLS handshake (_ssl_wrap_socket):
# the garbage collector closes it, with a ResourceWarning.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_tls_to_a_port_without_tls_is_a_tls_failure(
    tmp_path: Path, mosquitto: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    ca = Path("/etc/ssl/certs/ca-certificates.crt")
    if not ca.is_file():
        pytest.skip("no system CA bundle")
    config_file = write_config(tmp_path, sqlite_sink(tmp_path), broker_port=mosquitto.port)
    text = config_file.read_text().replace("[mqtt]\n", f'[mqtt]\ntls_ca_file = "{ca}"\n')
    config_file.write_text(text, encoding="utf-8")
    _, results = doctor_json(capsys, "-c", str(config_file), "--skip-meters")
    gc.collect()  # the leaked socket is closed (and warned about) within this test
    assert results["broker"]["status"] == "fail"
    assert "tls_ca_file" in results["broker"]["fix"]
    assert "TLS listener" in results["broker"]["fix"]


def test_an_unreadable_tls_file_is_named_before_connecting(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config_file = write_config(tmp_path, sqlite_sink(tmp_path))
    missing = tmp_path / "no-such-ca.pem"
    text = config_file.read_text().replace("[mqtt]\n", f'[mqtt]\ntls_ca_file = "{missing}"\n')
    config_file.write_text(text, encoding="utf-8")
    _, results = doctor_json(capsys, "-c", str(config_file), "--skip-meters")
    assert results["broker"]["status"] == "fail"
    assert results["broker"]["detail"] == f"mqtt.tls_ca_file: {missing} does not exist"


@pytest.mark.slow
def test_a_broker_that_never_answers_times_out(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as silent:  # the kernel accepts the connection; nobody ever answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        config_file = write_config(tmp_path, sqlite_sink(tmp_path), broker_port=port)
        _, results = doctor_json(capsys, "-c", str(config_file), "--skip-meters")
    assert results["broker"]["status"] == "fail"
    assert "timed out" in results["broker"]["detail"]
    assert results["broker"]["fix"].startswith(f"no answer from 127.0.0.1:{port}")


# --- meters and serial devices ---------------------------------------------------------------


async def test_a_meter_unit_that_does_not_answer_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    port = free_port()
    config_file = write_config(
        tmp_path,
        f"""
[[buses]]
name = "plant"
transport = "tcp"
host = "127.0.0.1"
port = {port}
timeout_s = 0.3
[[meters]]
id = "here"
bus = "plant"
unit = 1
profile = "eastron-sdm120"
[[meters]]
id = "gone"
bus = "plant"
unit = 2
profile = "eastron-sdm120"
""",
    )
    config = load_config(config_file, {})
    async with Simulator(config, meter_ids=["here"]):
        code, results = await asyncio.to_thread(doctor_json, capsys, "-c", str(config_file))
    assert code == 1
    assert results["meter here"]["status"] == "ok"
    gone = results["meter gone"]
    assert gone["status"] == "fail"
    assert gone["detail"] == "bus plant unit 2: no response (timeout)"
    assert f"answers as device id 2 at 127.0.0.1:{port}" in gone["fix"]


def rtu_body(device: Path | str) -> str:
    return f"""
[[buses]]
name = "rs485"
transport = "rtu"
device = "{device}"
timeout_s = 0.3
[[meters]]
id = "m1"
bus = "rs485"
unit = 1
profile = "eastron-sdm120"
"""


def test_a_serial_device_that_does_not_exist_fails_naming_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    device = tmp_path / "ttyUSB9"
    config_file = write_config(tmp_path, rtu_body(device))
    code, out = doctor(capsys, "-c", str(config_file))
    lines = lines_of(out)
    assert code == 1
    status, detail, fix = lines["serial rs485"]
    assert (status, detail) == ("fail", f"{device} does not exist")
    assert fix is not None and "buses[0].device" in fix and "/dev/serial/by-id/" in fix
    status, detail, fix = lines["meter m1"]
    assert status == "fail" and "bus not connected" in detail
    assert fix == "the bus cannot be opened: see the line 'serial rs485'"


def test_a_regular_file_is_not_a_serial_device(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    device = tmp_path / "not-a-tty"
    device.write_text("", encoding="utf-8")
    config_file = write_config(tmp_path, rtu_body(device))
    _, results = doctor_json(capsys, "-c", str(config_file), "--skip-meters")
    assert results["serial rs485"]["status"] == "fail"
    assert "not a character device" in results["serial rs485"]["detail"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root may open any device")
def test_a_pty_without_permission_fails_with_a_fix(
    tmp_path: Path, socat_pair: SocatPair, capsys: pytest.CaptureFixture[str]
) -> None:
    target = os.path.realpath(socat_pair.client_end)
    os.chmod(target, 0)
    config_file = write_config(tmp_path, rtu_body(socat_pair.client_end))
    _, results = doctor_json(capsys, "-c", str(config_file), "--skip-meters")
    serial = results["serial rs485"]
    assert serial["status"] == "fail"
    assert "not readable and writable" in serial["detail"]
    assert "chmod u+rw" in serial["fix"]


def char_device(mode: int, uid: int, gid: int) -> os.stat_result:
    return os.stat_result((stat.S_IFCHR | mode, 0, 0, 1, uid, gid, 0, 0, 0, 0))


ALICE = Identity(
    uid=1000, gid=1000, user="alice", groups=frozenset({1000}), member_of=frozenset({1000})
)
DIALOUT = 20


@pytest.mark.parametrize(
    ("mode", "who", "status", "fix"),
    [
        (0o660, ALICE, Status.FAIL, "add user alice to group dialout: sudo usermod -aG dialout"),
        (
            0o660,
            Identity(1000, 1000, "alice", frozenset({1000}), frozenset({1000, DIALOUT})),
            Status.FAIL,
            "this session started before it was added: log out and in again",
        ),
        (
            0o600,
            Identity(1000, 1000, "alice", frozenset({1000, DIALOUT}), frozenset({1000, DIALOUT})),
            Status.FAIL,
            "sudo chmod g+rw /dev/ttyUSB0",
        ),
        (0o600, ALICE, Status.FAIL, "sudo usermod -aG dialout alice"),
        (
            0o660,
            Identity(1000, 1000, "alice", frozenset({1000, DIALOUT}), frozenset({1000, DIALOUT})),
            Status.OK,
            None,
        ),
        (0o000, Identity(0, 0, "root", frozenset({0}), frozenset({0})), Status.OK, None),
        (0o606, ALICE, Status.OK, None),  # others may: so may alice
    ],
)
def test_permission_analysis_of_a_serial_device(
    mode: int, who: Identity, status: Status, fix: str | None
) -> None:
    result = analyse_serial(
        "serial rs485",
        "buses[0].device",
        "/dev/ttyUSB0",
        char_device(mode, 0, DIALOUT),
        who,
        "dialout",
    )
    assert result.status is status, result
    if fix is None:
        assert result.fix is None
    else:
        assert result.fix is not None and fix in result.fix, result.fix


def test_permission_analysis_when_the_user_owns_the_device() -> None:
    result = analyse_serial(
        "serial x",
        "buses[0].device",
        "/dev/ttyS0",
        char_device(0o060, 1000, DIALOUT),
        ALICE,
        "dialout",
    )
    assert result.status is Status.FAIL
    assert result.fix == "let its owner read and write it: sudo chmod u+rw /dev/ttyS0"


# --- sinks -----------------------------------------------------------------------------------


def postgres_config(tmp_path: Path, dsn: str, schema: str = "public") -> Path:
    config_file = write_config(tmp_path, f'[bridge.postgres]\ndsn = "{dsn}"\nschema = "{schema}"\n')
    text = config_file.read_text().replace("[bridge]\n", '[bridge]\nsink = "postgres"\n')
    config_file.write_text(text, encoding="utf-8")
    return config_file


def test_postgres_write_check_is_rolled_back(
    tmp_path: Path, postgres_dsn: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    dsn, schema = postgres_dsn
    config_file = postgres_config(tmp_path, dsn, schema)
    _, results = doctor_json(capsys, "-c", str(config_file), "--skip-meters")
    sink = results["sink postgres"]
    assert sink["status"] == "ok", sink
    assert sink["detail"].endswith("connected, write rolled back")
    with psycopg.connect(dsn) as conn:
        tables = conn.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = %s", (schema,)
        ).fetchone()
    assert tables == (0,)


def test_a_postgres_user_without_rights_is_told_what_to_grant(
    tmp_path: Path, postgres_dsn: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    dsn, schema = postgres_dsn
    role = f"doctor_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute(f"CREATE ROLE {role} LOGIN")
    try:
        config_file = postgres_config(tmp_path, make_conninfo(dsn, user=role), schema)
        code, results = doctor_json(capsys, "-c", str(config_file), "--skip-meters")
    finally:
        with psycopg.connect(dsn, autocommit=True) as admin:
            admin.execute(f"DROP ROLE {role}")
    sink = results["sink postgres"]
    assert code == 1 and sink["status"] == "fail"
    assert "permission denied" in sink["detail"]
    assert "GRANT CREATE ON DATABASE" in sink["fix"]


def test_an_unreachable_postgres_fails_without_showing_the_password(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dsn = f"postgresql://bridge:hunter2-secret@127.0.0.1:{free_port()}/campus"
    config_file = postgres_config(tmp_path, dsn)
    code, out = doctor(capsys, "-c", str(config_file), "--skip-meters")
    status, detail, fix = lines_of(out)["sink postgres"]
    assert code == 1 and status == "fail"
    assert "Connection refused" in detail or "connection refused" in detail.lower()
    assert fix is not None and fix.startswith("start PostgreSQL")
    assert "hunter2-secret" not in out


def test_firestore_is_read_not_written(
    tmp_path: Path, firestore_emulator: str, capsys: pytest.CaptureFixture[str]
) -> None:
    body = '[bridge.firestore]\nproject = "demo-doctor"\ncollection = "windows"\n'
    config_file = write_config(tmp_path, body)
    text = config_file.read_text().replace("[bridge]\n", '[bridge]\nsink = "firestore"\n')
    config_file.write_text(text, encoding="utf-8")
    _, results = doctor_json(capsys, "-c", str(config_file), "--skip-meters")
    sink = results["sink firestore"]
    assert sink["status"] == "ok", sink
    assert "readable (is empty); nothing was written" in sink["detail"]

    missing = tmp_path / "service-account.json"
    config_file.write_text(
        text.replace(
            'collection = "windows"\n', f'collection = "windows"\ncredentials_file = "{missing}"\n'
        ),
        encoding="utf-8",
    )
    _, results = doctor_json(capsys, "-c", str(config_file), "--skip-meters")
    sink = results["sink firestore"]
    assert sink["status"] == "fail"
    assert sink["detail"] == f"bridge.firestore.credentials_file: {missing} does not exist"


# --- files: integrity, outbox, spool ---------------------------------------------------------


async def test_a_damaged_sqlite_file_fails_the_integrity_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config_file = write_config(tmp_path, sqlite_sink(tmp_path))
    store = load_config(config_file, {}).storage.path
    await make_store(store, ["m1", "m2"], start_ms=1_764_230_400_000, count=5000, published=True)
    size = store.stat().st_size
    with store.open("r+b") as f:  # garbage in the middle of a real database
        f.seek(size // 2)
        f.write(os.urandom(8192))

    code, out = await asyncio.to_thread(doctor, capsys, "-c", str(config_file), "--skip-meters")
    status, detail, fix = lines_of(out)["sqlite store"]
    assert code == 1
    assert status == "fail"
    assert detail.startswith(f"{store} is damaged: ")
    assert fix is not None and ".recover" in fix


@pytest.mark.parametrize("wal_bytes", [2 * MIB, 0], ids=["large-wal", "small-wal"])
def test_a_store_is_measured_with_its_wal_and_a_large_wal_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], wal_bytes: int
) -> None:
    config_file = write_config(tmp_path, sqlite_sink(tmp_path))
    store = load_config(config_file, {}).storage.path
    store.parent.mkdir(parents=True)
    writer = sqlite3.connect(store)  # open while doctor runs: its -wal and -shm stay in place
    try:
        writer.execute("PRAGMA journal_mode=WAL")
        writer.execute("PRAGMA wal_autocheckpoint=0")
        writer.execute("CREATE TABLE t (b BLOB)")
        writer.commit()
        writer.executemany("INSERT INTO t VALUES (?)", [(bytes(4096),)] * (wal_bytes // 4096))
        writer.commit()
        sizes = [Path(f"{store}{suffix}").stat().st_size for suffix in ("", "-wal", "-shm")]
        assert all(sizes) and (sizes[1] >= MIB) == bool(wal_bytes)

        _, results = doctor_json(capsys, "-c", str(config_file), "--skip-meters")
    finally:
        writer.close()
    total, wal = binary_size(sum(sizes)), binary_size(sizes[1])
    (disk,) = (r for title, r in results.items() if title.startswith("disk "))
    integrity = results["sqlite store"]
    if wal_bytes:
        assert f"holds the store {total} (WAL {wal}), spool (not created yet)" in disk["detail"]
        assert integrity["detail"] == f"{store} ({total}, WAL {wal}): quick_check ok"
    else:
        assert f"holds the store {total}, spool (not created yet)" in disk["detail"]
        assert integrity["detail"] == f"{store} ({total}): quick_check ok"


async def test_an_old_outbox_and_an_overdue_spool_are_warnings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config_file = write_config(tmp_path, sqlite_sink(tmp_path))
    config = load_config(config_file, {})
    hour_ago_ms = int(time.time() * 1000) - 3_600_000
    await make_store(config.storage.path, ["m1"], start_ms=hour_ago_ms, count=20, published=False)
    await make_spool(
        config.bridge.spool_path,
        [Contribution("m1", hour_ago_ms - hour_ago_ms % 300_000, 1, 1.0, 5.0, True, 100.0)],
    )
    _, results = await asyncio.to_thread(
        doctor_json, capsys, "-c", str(config_file), "--skip-meters"
    )
    outbox, spool = results["outbox"], results["spool"]
    assert outbox["status"] == "warn"
    assert outbox["detail"].startswith(
        "20 readings not yet delivered to the broker, the oldest 1 h"
    )
    assert "see the line 'broker'" in outbox["fix"]
    assert spool["status"] == "warn"
    assert "1 reading waiting for their window to be written" in spool["detail"]
    assert "overdue by" in spool["detail"]


# --- the configuration ------------------------------------------------------------------------


def test_an_invalid_config_exits_2_naming_each_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config_file = write_config(
        tmp_path,
        rtu_body(tmp_path / "tty").replace("unit = 1", "unit = 0") + "[mqtt_extra]\nx = 1\n",
    )
    code, out = doctor(capsys, "-c", str(config_file))
    assert code == 2
    lines = out.splitlines()
    assert any(
        line.startswith("✘ config")
        and 'meters[0] (id "m1").unit: must be between 1 and 247' in line
        for line in lines
    ), out
    assert any("mqtt_extra: unknown key" in line for line in lines), out
    assert f'fix: correct meters[0] (id "m1").unit in {config_file}' in out


@pytest.mark.parametrize("kind", ["folder", "not-toml"])
def test_a_config_path_that_is_no_config_file_exits_2_with_a_fitting_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str
) -> None:
    path = tmp_path / "campus-energy.toml"
    if kind == "folder":
        path.mkdir()
    else:
        path.write_text("[site\n", encoding="utf-8")
    code, out = doctor(capsys, "-c", str(path))
    assert code == 2
    status, detail, fix = lines_of(out)["config"]
    assert status == "fail"
    assert fix is not None
    if kind == "folder":
        assert detail == f"config: {path} is a folder: name the configuration file itself"
        assert fix == f"name the configuration file in {path} with -c or $CAMPUS_ENERGY_CONFIG"
    else:
        assert detail.startswith(f"config: {path} is not valid TOML: ")
        assert fix.startswith(f"correct {path}, or start again from a sample: ")


def test_a_missing_config_file_exits_2_with_the_way_to_create_one(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.toml"
    result = doctor_process("-c", str(missing), "--json")
    assert result.returncode == 2
    (entry,) = json.loads(result.stdout)
    assert entry["status"] == "fail" and entry["detail"].startswith("config: file not found")
    assert f"campus-energy init -c {missing}" in entry["fix"]


# --- pure verdicts ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "flag", "status"),
    [
        ("yes", False, Status.OK),
        ("no", True, Status.FAIL),
        (None, True, Status.OK),
        (None, False, Status.WARN),
    ],
)
def test_clock_verdict(answer: str | None, flag: bool, status: Status) -> None:
    result = clock_verdict(answer, flag)
    assert result.status is status
    if status is Status.FAIL:
        assert result.fix is not None and "sudo timedatectl set-ntp true" in result.fix


@pytest.mark.parametrize(
    ("free", "total", "status"),
    [
        (DISK_FAIL_BELOW - 1, 1000 * GIB, Status.FAIL),
        (500 * MIB, 2 * GIB, Status.WARN),  # below 1 GiB
        (4 * GIB, 100 * GIB, Status.WARN),  # below 5 %
        (6 * GIB, 100 * GIB, Status.OK),
    ],
)
def test_disk_verdict(free: int, total: int, status: Status) -> None:
    assert disk_verdict(free, total) is status


async def test_a_silent_meter_on_a_serial_line_is_told_its_models_factory_speed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Behind an RS-485 gateway at 9600 baud, a new SDM120 (factory: 2400) stays silent: the fix
    names its factory speed; an SDM630, which leaves the factory at 9600, gets no such line."""
    port = free_port()
    config_file = write_config(
        tmp_path,
        f"""
[[buses]]
name = "line"
transport = "rtu-tcp"
host = "127.0.0.1"
port = {port}
baudrate = 9600
timeout_s = 0.3
[[meters]]
id = "here"
bus = "line"
unit = 1
profile = "eastron-sdm630"
[[meters]]
id = "new-sdm120"
bus = "line"
unit = 2
profile = "eastron-sdm120"
[[meters]]
id = "new-sdm630"
bus = "line"
unit = 3
profile = "eastron-sdm630"
""",
    )
    config = load_config(config_file, {})
    async with Simulator(config, meter_ids=["here"]):
        _, results = await asyncio.to_thread(doctor_json, capsys, "-c", str(config_file))
    assert results["meter here"]["status"] == "ok"
    sdm120, sdm630 = results["meter new-sdm120"], results["meter new-sdm630"]
    assert sdm120["status"] == sdm630["status"] == "fail"
    assert "set to address 2 at 9600 baud 8N1" in sdm120["fix"]
    assert (
        "a new eastron-sdm120 answers at 2400 baud until its front panel is set to 9600"
        in (sdm120["fix"])
    )
    assert "factory" not in sdm630["fix"] and "answers at" not in sdm630["fix"]


def test_a_shared_subscription_is_warned_of(
    tmp_path: Path, mosquitto: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    config_file = write_config(tmp_path, sqlite_sink(tmp_path), broker_port=mosquitto.port)
    text = config_file.read_text("utf-8").replace("[bridge]\n", '[bridge]\nshared_group = "b"\n')
    config_file.write_text(text, "utf-8")
    _, out = doctor(capsys, "-c", str(config_file), "--skip-meters")
    status, detail, fix = lines_of(out)["bridge subscription"]
    assert status == "warn" and "does not restore a shared subscription" in detail
    assert fix is not None and "bridge.topic_filters" in fix
    config_file.write_text(text.replace('shared_group = "b"\n', ""), "utf-8")
    _, out = doctor(capsys, "-c", str(config_file), "--skip-meters")
    assert "bridge subscription" not in lines_of(out)
