"""Leaks and small things: secrets in configuration errors, secret files others can read,
paths that systemd's PrivateTmp hides, and the demo meeting a second demo or a bad message.

What must hold: no configuration error shows the value of a key that may hold a
secret, however the value arrives (the file, `CAMPUS_ENERGY__…` variables,
`$CAMPUS_ENERGY_POSTGRES_DSN`) and whichever check refuses it; `doctor` fails a
secret file that its group or others may read, with the `chmod`; `install-systemd`
warns about data under /tmp; a second demo never uses the first one's broker or
buses; the demo's own MQTT reader counts a malformed message and goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import socket
import sqlite3
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiomqtt
import pytest
from pydantic import BaseModel
from tests.support.mqtt import require_mosquitto
from tests.support.net import free_port
from tests.support.processes import campus_energy, run_cli
from tests.support.waiting import eventually, wait_for

from campus_energy.backends.postgres.sink import PostgresSink
from campus_energy.backends.postgres.source import PostgresSource
from campus_energy.cli import main
from campus_energy.config import (
    SECRET_KEYS,
    Config,
    PostgresSinkConfig,
    load_config,
    parse_config,
)
from campus_energy.demo.campus import prepare
from campus_energy.demo.mosquitto import Mosquitto
from campus_energy.demo.services import Receiver, own_listeners, port_free
from campus_energy.errors import ConfigError, ServiceError, SinkError, SourceError
from campus_energy.ops.systemd import (
    Installation,
    hidden_in_private_tmp,
    in_private_tmp,
    unwritable_paths,
)

PASSWORD = "hunter2-s3cret"
DSN = f"postgresql://energy:{PASSWORD}@db.example.org:5432/campus"
KEY_TEXT = f"-----BEGIN PRIVATE KEY-----{PASSWORD}-----END PRIVATE KEY-----"
SECRETISH = re.compile(r"dsn|password|secret|token|credential|key_file|private")


# --- configuration errors ----------------------------------------------------------------------


def fields(model: type[BaseModel], prefix: str = "") -> Iterator[str]:
    """Every key path of a configuration model ('bridge.postgres.dsn', 'meters[].unit')."""
    for name, info in model.model_fields.items():
        key = f"{prefix}{info.alias or name}"
        yield key
        for inner in (*getattr(info.annotation, "__args__", ()), info.annotation):
            if isinstance(inner, type) and issubclass(inner, BaseModel):
                tail = "[]" if info.annotation is not inner else ""
                yield from fields(inner, f"{key}{tail}.")


def test_every_key_that_may_hold_a_secret_is_known_as_one() -> None:
    """A new key named like a secret must join SECRET_KEYS; each of them exists."""
    keys = set(fields(Config))
    assert set(SECRET_KEYS) <= keys
    assert {k for k in keys if SECRETISH.search(k.rsplit(".", 1)[-1])} == set(SECRET_KEYS)


# A list item around a secret: the rest of a valid item, so the secret's error is the only one.
ITEMS = {
    "alerts.channels[]": {"name": "c", "kind": "webhook", "url": "https://hooks.example/x"},
}
ITEM_KEYS = {"password_file": "email", "password_env": "email"}  # the kind that takes the key
EMAIL = {"host": "smtp.example", "sender": "a@campus.example", "recipients": ["b@campus.example"]}


def item_for(table: str, name: str) -> dict[str, Any]:
    """A valid item of the list `table` (ending in '[]') but for its key `name`."""
    item = dict(ITEMS[table])
    if ITEM_KEYS.get(name) == "email":
        item = {"name": "c", "kind": "email", **EMAIL, "username": "u"}
    return item


def nest(key: str, value: Any) -> dict[str, Any]:
    """`value` at `key`; a part ending in `[]` is a list of one item (a valid one around it)."""
    data: Any = value
    parts = key.split(".")
    for i in reversed(range(len(parts))):
        part = parts[i]
        if part.endswith("[]"):
            table = ".".join(parts[: i + 1])
            inner = parts[i + 1] if i + 1 < len(parts) else next(iter(data), "")
            item = item_for(table, inner) if isinstance(data, dict) else None
            data = {part[:-2]: [data if item is None else {**item, **data}]}
        else:
            data = {part: data}
    result: dict[str, Any] = data
    return result


def shown(key: str) -> str:
    """A key as an error names it: the first item of a list ('[]' -> '[0]')."""
    return key.replace("[]", "[0]")


def secret_for(key: str) -> str:
    return DSN if key.endswith("dsn") else KEY_TEXT


def refused(data: dict[str, Any], environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(data, environ)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__  # no pydantic text
    return [f"{key}: {message}" for key, message in caught.value.problems]


def assert_hidden(lines: list[str], key: str) -> None:
    text = "\n".join(lines)
    assert PASSWORD not in text, text
    assert any(line.startswith(f"{shown(key)}: ") for line in lines), text


@pytest.mark.parametrize("key", SECRET_KEYS)
@pytest.mark.parametrize(
    "shape",
    [
        pytest.param(lambda s: [s], id="in-a-list"),
        pytest.param(lambda s: {"value": s}, id="in-a-table"),
    ],
)
def test_a_secret_of_the_wrong_type_is_not_shown(key: str, shape: Any) -> None:
    """Before: `bridge.postgres.dsn: must be a string, got ['postgresql://energy:hunter2…']`."""
    lines = refused(nest(key, shape(secret_for(key))))
    assert_hidden(lines, key)
    assert lines[0].endswith("(the value is not shown: it may hold a secret)"), lines


@pytest.mark.parametrize("key", SECRET_KEYS)
def test_a_table_that_holds_a_secret_given_as_text_is_not_shown(key: str) -> None:
    """Before: `bridge.postgres: must be a table, got 'postgresql://energy:hunter2…'`."""
    table = key.rsplit(".", 1)[0]
    assert_hidden(refused(nest(table, secret_for(key))), table)


@pytest.mark.parametrize("key", SECRET_KEYS)
def test_a_secret_in_a_table_with_another_error_is_not_shown(key: str) -> None:
    """An error at a table (its own check) while it holds a secret: the table is not shown."""
    table, name = key.rsplit(".", 1)
    data = nest(table, {name: secret_for(key), "unknown": 1})
    data.setdefault("bridge", {})["window_s"] = 7  # a second error elsewhere
    lines = refused(data)
    assert f"{shown(table)}.unknown: unknown key" in lines
    assert_hidden(lines, f"{table}.unknown")


@pytest.mark.parametrize("key", SECRET_KEYS)
def test_a_secret_from_the_environment_is_not_shown(key: str) -> None:
    """`CAMPUS_ENERGY__BRIDGE__POSTGRES=postgresql://…` puts text where a table belongs."""
    table = key.rsplit(".", 1)[0]
    variable = "CAMPUS_ENERGY__" + shown(table).upper().replace(".", "__").replace("[0]", "__0")
    data = nest(key, "x") if "[]" in key else {}  # a list's item is there to be replaced
    assert_hidden(refused(data, {variable: secret_for(key)}), table)


def test_the_postgres_dsn_variable_with_a_bridge_that_is_no_table() -> None:
    """Before: an AttributeError traceback (the variable was put into a string)."""
    lines = refused({"bridge": DSN}, {"CAMPUS_ENERGY_POSTGRES_DSN": DSN})
    assert_hidden(lines, "bridge")


def test_a_dsn_in_the_wrong_key_is_masked_by_its_form() -> None:
    """A key that holds no secret quotes its value, but never a password written in a URL."""
    lines = refused({"bridge": {"postgres": {"schema": DSN}}})
    assert lines == [
        "bridge.postgres.schema: must be a plain lower-case SQL name, got "
        "'postgresql://energy:****@db.example.org:5432/campus'"
    ]


@pytest.mark.parametrize("dsn", ["postgresql//energy:hunter2@db/x", "host=db password=hunter2 x"])
async def test_a_mistyped_dsn_is_not_echoed_by_the_sink_or_the_source(dsn: str) -> None:
    """libpq echoes a malformed connection string (`missing "=" after "postgresql//…"`);
    before, that reached the bridge's log, reconcile's output and the API's log whole."""
    settings = PostgresSinkConfig(dsn=dsn)
    sink = PostgresSink(settings, ZoneInfo("UTC"))
    with pytest.raises(SinkError) as sink_error:
        await sink.windows(0, 1, None)
    await sink.close()
    source = PostgresSource(settings)
    with pytest.raises(SourceError) as source_error:
        source.meters()
    source.close()
    for said in (str(sink_error.value), str(source_error.value)):
        assert "hunter2" not in said and dsn not in said, said
        assert "****" in said or "connection" in said, said


def test_the_cli_shows_no_secret(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "campus-energy.toml"
    config.write_text(f"[bridge.postgres]\ndsn = [{json.dumps(DSN)}]\n", encoding="utf-8")
    assert main(["doctor", "-c", str(config)]) == 2
    captured = capsys.readouterr()
    assert PASSWORD not in captured.out + captured.err
    assert "✘ config  bridge.postgres.dsn: must be a string (the value is not" in captured.out
    process = run_cli(
        "logger",
        "-c",
        config,
        "-v",
        env={"CAMPUS_ENERGY_POSTGRES_DSN": DSN, "CAMPUS_ENERGY__MQTT": KEY_TEXT},
    )
    assert process.returncode == 2
    assert PASSWORD not in process.stdout + process.stderr
    assert "campus-energy: configuration error: mqtt: must be a table (the value" in process.stderr
    assert "Traceback" not in process.stderr


# --- doctor: secret files others may read --------------------------------------------------------

SECRET_FILE_KEYS = {  # key: (its TOML line, the file's mode as deployed by mistake)
    "mqtt.password_file": ("[mqtt]\npassword_file", 0o644),
    "mqtt.tls_key_file": ("tls_key_file", 0o640),
    "mqtt.signing_key_file": ("signing_key_file", 0o604),
    "bridge.firestore.credentials_file": ("[bridge.firestore]\ncredentials_file", 0o600),
}


def secret_config(folder: Path) -> tuple[Path, dict[str, Path]]:
    files = {}
    lines = ['[storage]\npath = "store.db"']
    for key, (line, mode) in SECRET_FILE_KEYS.items():
        path = folder / key.replace(".", "-")
        path.write_text(f"{PASSWORD}-{key}\n", encoding="utf-8")
        path.chmod(mode)
        files[key] = path
        lines.append(f'{line} = "{path}"')
    config = folder / "campus-energy.toml"
    config.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return config, files


def secret_lines(capsys: pytest.CaptureFixture[str], config: Path) -> tuple[int, list[Any]]:
    code = main(["doctor", "-c", str(config), "--skip-meters", "--json"])
    out = capsys.readouterr().out
    assert PASSWORD not in out
    return code, [r for r in json.loads(out) if r["check"] == "secrets"]


def test_doctor_fails_secret_files_others_may_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before: doctor passed every secret file whatever its mode (a 0644 password file)."""
    config, files = secret_config(tmp_path)
    code, results = secret_lines(capsys, config)
    assert code == 1
    by_title = {r["title"]: r for r in results}
    assert set(by_title) == {f"secret {k.rsplit('.', 1)[1]}" for k in SECRET_FILE_KEYS}
    for key, path in files.items():
        result = by_title[f"secret {key.rsplit('.', 1)[1]}"]
        mode = SECRET_FILE_KEYS[key][1]
        assert result["detail"].startswith(f"{path} (-{stat.filemode(mode)[1:]} ")
        if mode & 0o077:
            assert result["status"] == "fail"
            who = [w for w, bits in (("its group", 0o070), ("everyone", 0o007)) if mode & bits]
            assert result["detail"].endswith(f": {' and '.join(who)} may read or change it")
            assert result["fix"].endswith(f"chmod 600 {path}")
        else:
            assert (result["status"], result["fix"]) == ("ok", None)
    # the fix it names, applied: every secret file passes
    for path in files.values():
        path.chmod(0o600)
    _, results = secret_lines(capsys, config)
    assert [r["status"] for r in results] == ["ok"] * len(SECRET_FILE_KEYS)


def test_doctor_names_a_missing_secret_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "campus-energy.toml"
    missing = tmp_path / "signing.key"
    config.write_text(f'[mqtt]\nsigning_key_file = "{missing}"\n', encoding="utf-8")
    _, results = secret_lines(capsys, config)
    assert [(r["status"], r["detail"]) for r in results] == [
        ("fail", f"mqtt.signing_key_file = {missing}: No such file or directory")
    ]


# --- install-systemd: what PrivateTmp hides ------------------------------------------------------


def test_install_systemd_warns_about_everything_under_tmp(tmp_path: Path) -> None:
    """Before: data and secrets under /tmp or /var/tmp passed without a word; the services then
    wrote a fresh store into a private, empty /tmp (lost at every restart) or found no key."""
    config = tmp_path / "campus-energy.toml"
    var_tmp = Path("/var/tmp") / "campus-energy-test-key"  # only named, never created
    config.write_text(
        f"""
[storage]
path = "{tmp_path / "smart_meter.db"}"
[mqtt]
password_file = "{tmp_path / "password"}"
signing_key_file = "{var_tmp}"
[bridge]
spool_path = "/var/lib/campus-energy/spool.db"
[bridge.sqlite]
path = "/var/lib/campus-energy/windows.db"
""",
        encoding="utf-8",
    )
    result = run_cli("install-systemd", "--dry-run", "--prefix", tmp_path / "units", "-c", config)
    assert result.returncode == 0, result.stderr
    warnings = [
        line.removeprefix("campus-energy: warning: ")
        for line in result.stderr.splitlines()
        if "PrivateTmp" in line
    ]
    hidden = "which the units do not see (PrivateTmp=yes gives each service a {} of its own, empty)"
    assert warnings == [
        f"the configuration {config} is under /tmp, {hidden.format('/tmp')}: move it, e.g. "
        "under /etc/campus-energy",
        f"mqtt.password_file = {tmp_path / 'password'} is under /tmp, {hidden.format('/tmp')}: "
        "move it, e.g. under /etc/campus-energy",
        f"mqtt.signing_key_file = {var_tmp} is under /var/tmp, {hidden.format('/var/tmp')}: "
        "move it, e.g. under /etc/campus-energy",
        f"storage.path = {tmp_path / 'smart_meter.db'} is outside /var/lib/campus-energy, the "
        f"only folder the units may write, and under /tmp, {hidden.format('/tmp')}: set it to "
        "/var/lib/campus-energy/smart_meter.db",
    ]
    assert "spool" not in result.stderr and "windows.db" not in result.stderr


def test_paths_outside_tmp_give_no_private_tmp_warning() -> None:
    config = parse_config(
        {
            "storage": {"path": "/var/lib/campus-energy/smart_meter.db"},
            "mqtt": {"password_file": "/etc/campus-energy/password"},
            "bridge": {"spool_path": "/var/lib/campus-energy/spool.db"},
        }
    )
    installation = Installation(
        Path("/opt/campus-energy/bin/campus-energy"), Path("/etc/campus-energy/campus-energy.toml")
    )
    assert hidden_in_private_tmp(installation, config) == []
    assert [w for w in unwritable_paths(config) if "PrivateTmp" in w] == []
    assert in_private_tmp(Path("/tmpfiles/x")) is None  # a name that only starts like /tmp


# --- the demo beside another demo, and a malformed message --------------------------------------


def test_a_broker_start_does_not_count_another_programs_listener(tmp_path: Path) -> None:
    """Before: start() returned as if the broker ran: the port answered, another program's."""
    require_mosquitto()
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        broker = Mosquitto(tmp_path / "mosquitto", port)
        with pytest.raises(ServiceError) as refused:
            broker.start()
    assert str(refused.value) == f"mosquitto cannot listen on port {port}: another program does"
    assert broker.process is None  # it exited; nothing is left running


def test_the_demo_moves_its_broker_and_buses_off_ports_another_program_holds(
    tmp_path: Path,
) -> None:
    config = load_config(prepare(tmp_path), {})
    with contextlib.ExitStack() as held:
        taken = []
        for _ in range(3):
            sock = held.enter_context(socket.socket())
            sock.bind(("127.0.0.1", 0))
            sock.listen()
            taken.append(sock.getsockname()[1])
        mqtt, north, plant = taken
        config = config.model_copy(
            update={
                "mqtt": config.mqtt.model_copy(update={"port": mqtt}),
                "buses": tuple(
                    b.model_copy(update={"port": port})
                    for b, port in zip(config.buses, (north, plant), strict=True)
                ),
            }
        )
        moved, notes = own_listeners(config)
        chosen = [moved.mqtt.port, *(b.port for b in moved.buses)]
        assert all(port_free("127.0.0.1", port) for port in chosen)
    assert not set(chosen) & set(taken)
    assert notes == (
        f"port {mqtt} on 127.0.0.1 is taken by another program: the MQTT broker listens on port "
        f"{chosen[0]} instead",
        f"port {north} on 127.0.0.1 is taken by another program: the simulated bus "
        f"'gateway-north' listens on port {chosen[1]} instead",
        f"port {plant} on 127.0.0.1 is taken by another program: the simulated bus "
        f"'plant-tcp' listens on port {chosen[2]} instead",
    )
    assert moved.meters == config.meters and moved.profiles == config.profiles
    again, quiet = own_listeners(moved)
    assert (again.mqtt.port, quiet) == (moved.mqtt.port, ())


def scalar(db: Path, sql: str) -> Any:
    if not db.exists():
        return None
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return conn.execute(sql).fetchone()[0]
    except sqlite3.Error:
        return None  # not created yet
    finally:
        conn.close()


def books(home: Path) -> tuple[float, float, int]:
    """(Wh in the store, Wh in the windows, windows) of a demo's folder."""
    windows = home / "windows.db"
    return (
        float(scalar(home / "smart_meter.db", "SELECT sum(energy_wh) FROM readings") or 0),
        float(scalar(windows, "SELECT sum(total_energy_wh) FROM window_aggregates") or 0),
        int(scalar(windows, "SELECT count(*) FROM window_aggregates") or 0),
    )


@pytest.mark.slow
@pytest.mark.long
@pytest.mark.timeout(240)
def test_two_demos_at_once_keep_their_own_books(tmp_path: Path) -> None:
    """Before: the second demo took the first one's broker for its own (the port answered) and
    its bridge took over the first one's MQTT session (the same client id), so each demo's
    windows missed readings; with the same bus ports it died: "bus 'gateway-north': cannot
    serve on 127.0.0.1:15020"."""
    require_mosquitto()
    shared = {
        "CAMPUS_ENERGY__MQTT__PORT": str(free_port()),
        "CAMPUS_ENERGY__BUSES__0__PORT": str(free_port()),
        "CAMPUS_ENERGY__BUSES__1__PORT": str(free_port()),
    }
    demos, outputs, homes = [], [], []
    try:
        for name in ("first", "second"):
            env = {**os.environ, **shared, "CAMPUS_ENERGY__API__PORT": str(free_port())}
            output = tmp_path / f"{name}.out"
            command = campus_energy("demo", "--fast")
            with output.open("wb") as out:
                demos.append(
                    subprocess.Popen(
                        [*command, "--dir", str(tmp_path / name)],
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        env=env,
                    )
                )
            outputs.append(output)
            homes.append(tmp_path / name / "fast")
            if name == "first":  # its broker and buses listen before the second starts
                wait_for(lambda: "readings stored" in outputs[0].read_text(), 60)
        wait_for(lambda: all(books(home)[2] >= 24 for home in homes), 120)
    finally:
        for demo in demos:
            demo.send_signal(signal.SIGINT)
        codes = [demo.wait(60) for demo in demos]
    texts = [output.read_text() for output in outputs]
    assert codes == [0, 0], [text[-2000:] for text in texts]
    assert all("Traceback" not in text for text in texts)
    for port, what in (
        (shared["CAMPUS_ENERGY__MQTT__PORT"], "the MQTT broker"),
        (shared["CAMPUS_ENERGY__BUSES__0__PORT"], "the simulated bus 'gateway-north'"),
        (shared["CAMPUS_ENERGY__BUSES__1__PORT"], "the simulated bus 'plant-tcp'"),
    ):
        note = f"port {port} on 127.0.0.1 is taken by another program: {what} listens on port "
        assert note not in texts[0] and note in texts[1]
    for home in homes:  # every stored Wh is in a window of its own demo
        in_store, in_windows, _ = books(home)
        assert in_store > 0
        assert in_windows == pytest.approx(in_store, abs=1e-6)


MALFORMED = [b"{not json", b"[1, 2]", b'{"meter_id": "m1"}', b"\xff\xfe", b"", b'{"seq": "7"}']


async def test_the_demos_receiver_counts_a_malformed_message_and_goes_on(mosquitto: Any) -> None:
    """Before: the first malformed message ended its task with a JSONDecodeError, shown as a
    traceback when the demo stopped, and nothing more was counted."""
    receiver = Receiver(parse_config({"mqtt": {"port": mosquitto.port}}))
    task = asyncio.create_task(receiver.run())
    topic = "campus/energy/m1/reading"
    try:
        async with aiomqtt.Client("127.0.0.1", mosquitto.port, identifier="attacker") as client:

            async def subscribed() -> bool:
                await client.publish(topic, json.dumps({"meter_id": "m1", "seq": 1}), qos=1)
                await asyncio.sleep(0.05)
                return receiver.received > 0

            await eventually(subscribed)
            received = receiver.received
            for payload in MALFORMED:
                await client.publish(topic, payload, qos=1)
            await client.publish(topic, json.dumps({"meter_id": "m1", "seq": 2}), qos=1)
            await eventually(lambda: receiver.last.get("m1") == 2)
        assert (receiver.received, receiver.malformed) == (received + 1, len(MALFORMED))
        assert not task.done()
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
