"""`campus-energy mosquitto-acl`: the ACL that binds each meter to its logger.

What the broker does with it is proved against a real Mosquitto in
tests/attacks/test_broker_acl.py; here, what the file says and refuses to say.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from campus_energy.cli import main
from campus_energy.config import Config, parse_config
from campus_energy.errors import ConfigError
from campus_energy.ops.mosquitto_acl import (
    AclUser,
    LoggerSource,
    Rule,
    acl_users,
    passwd_commands,
    render,
)

EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "mosquitto" / "acl"
BUS = {"name": "b", "transport": "tcp", "host": "127.0.0.1"}


def logger(logger_id: str | None, *meters: str, **mqtt: Any) -> Config:
    data: dict[str, Any] = {
        "mqtt": mqtt,
        "buses": [BUS],
        "meters": [
            {"id": m, "bus": "b", "unit": unit, "profile": "eastron-sdm120"}
            for unit, m in enumerate(meters, start=1)
        ],
    }
    if logger_id is not None:
        data["logger"] = {"id": logger_id}
    return parse_config(data)


def sources(*configs: Config) -> list[LoggerSource]:
    return [LoggerSource(c, f"{c.logger.id}.toml") for c in configs]


def example_loggers() -> list[Config]:
    """The two loggers of deploy/mosquitto/acl (the first is the one its tests run)."""
    return [
        logger("switch-room-a", "lib-f1", "lib-main", homeassistant_discovery=True),
        logger("switch-room-b", "admin-main", homeassistant_discovery=True),
    ]


def by_user(users: list[AclUser]) -> dict[str, set[tuple[str, str]]]:
    return {u.name: {(r.access, r.topic) for r in u.rules} for u in users}


def test_the_example_acl_is_what_the_command_writes() -> None:
    loggers = example_loggers()
    assert EXAMPLE.read_text("utf-8") == render(acl_users(sources(*loggers), loggers[0]))


def test_each_logger_may_write_only_its_own_meters_and_status() -> None:
    a, b = example_loggers()
    users = by_user(acl_users(sources(a, b), a))
    assert users["logger-switch-room-a"] == {
        ("write", "campus/energy/lib-f1/reading"),
        ("write", "campus/energy/lib-f1/status"),
        ("write", "campus/energy/lib-main/reading"),
        ("write", "campus/energy/lib-main/status"),
        ("readwrite", "campus/energy/logger/switch-room-a/status"),
        ("write", "homeassistant/+/campus_energy_switch-room-a/+/config"),
    }
    assert users["logger-switch-room-b"] == {
        ("write", "campus/energy/admin-main/reading"),
        ("write", "campus/energy/admin-main/status"),
        ("readwrite", "campus/energy/logger/switch-room-b/status"),
        ("write", "homeassistant/+/campus_energy_switch-room-b/+/config"),
    }
    assert users["bridge"] == {
        ("read", "campus/energy/+/reading"),
        ("read", "$share/+/campus/energy/+/reading"),
    }
    assert users["homeassistant"] == {
        ("read", "campus/energy/#"),
        ("readwrite", "homeassistant/#"),
    }


def test_no_pattern_lines_and_no_wildcard_a_logger_could_write_through() -> None:
    a, b = example_loggers()
    text = render(acl_users(sources(a, b), a))
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert all(line.split()[0] in ("user", "topic") for line in lines)
    for line in lines:
        if line.startswith("topic write") or line.startswith("topic readwrite campus"):
            topic = line.split()[2]
            assert "#" not in topic
            assert "+" not in topic or topic.startswith("homeassistant/+/campus_energy_")


def test_without_discovery_no_discovery_topics_and_no_home_assistant_user() -> None:
    a = logger("hall", "m-1", topic_prefix="site/power")
    users = by_user(acl_users(sources(a), a, bridge_user="windows"))
    assert set(users) == {"logger-hall", "windows"}
    assert users["logger-hall"] == {
        ("write", "site/power/m-1/reading"),
        ("write", "site/power/m-1/status"),
        ("readwrite", "site/power/logger/hall/status"),
    }
    assert ("read", "site/power/+/reading") in users["windows"]


def test_a_logger_that_names_its_user_gets_that_user() -> None:
    a = logger("hall", "m-1", username="meters-hall", homeassistant_discovery=True,
               homeassistant_prefix="ha")  # fmt: skip
    users = acl_users(sources(a), a, homeassistant_user="hass")
    assert [u.name for u in users] == ["meters-hall", "bridge", "hass"]
    assert by_user(users)["hass"] == {("read", "campus/energy/#"), ("readwrite", "ha/#")}
    assert Rule("write", "ha/+/campus_energy_hall/+/config") in users[0].rules


def test_the_alerts_service_reads_readings_and_statuses_and_writes_its_alerts() -> None:
    a = logger("hall", "m-1", topic_prefix="site/power")
    alerting = a.model_copy(
        update={
            "alerts": parse_config(
                {
                    "alerts": {
                        "channels": [
                            {"name": "ha", "kind": "mqtt", "homeassistant_discovery": True}
                        ],
                        "rules": [{"name": "s", "kind": "meter-silent", "channels": ["ha"]}],
                    }
                }
            ).alerts
        }
    )
    users = by_user(acl_users(sources(a), alerting, alerts_user="alerting"))
    assert users["alerting"] == {
        ("read", "site/power/+/reading"),
        ("read", "site/power/+/status"),
        ("readwrite", "site/power/alerts/#"),
        ("write", "homeassistant/binary_sensor/campus_energy_alerts/+/config"),
    }
    assert ("readwrite", "homeassistant/#") in users["homeassistant"]  # it reads them
    assert "alerting" not in by_user(acl_users(sources(a), a))  # no alerts: no such user


@pytest.mark.parametrize(
    ("loggers", "key", "words"),
    [
        (
            [logger("a", "m-1", "m-2"), logger("b", "m-2")],
            "meters",
            ['meter "m-2"', 'logger "a" (a.toml)', 'logger "b" (b.toml)'],
        ),
        ([logger("a", "m-1"), logger("a", "m-2")], "logger.id", ['"a"', "a.toml and a.toml"]),
        ([logger("a")], "meters", ["a.toml has no meters"]),
        ([logger(None, "m-1")], "logger.id", ["not set in", "host name"]),
        ([logger("a", "m-1", topic_prefix="other")], "mqtt.topic_prefix", ['"other"']),
        ([logger("a", "m-1", username="bridge")], "mqtt.username", ['"bridge"']),
        ([logger("a", "m-1", username="two words")], "mqtt.username", ['"two words"']),
    ],
)
def test_configurations_that_would_not_bind_each_meter_to_one_logger_are_refused(
    loggers: list[Config], key: str, words: list[str]
) -> None:
    bridge = logger("central", "m-9")
    with pytest.raises(ConfigError) as refused:
        acl_users(sources(*loggers), bridge)
    problems = dict(refused.value.problems)
    assert key in problems, refused.value.problems
    for word in words:
        assert word in problems[key]


def test_the_password_commands_never_overwrite_the_file_and_quote_names() -> None:
    users = [AclUser("logger-a", "", ()), AclUser("bridge", "", ())]
    commands = passwd_commands(users, Path("/etc/mosquitto/my passwd"))
    assert commands == [
        "test -e '/etc/mosquitto/my passwd' || "
        "install -m 0600 -o mosquitto -g mosquitto /dev/null '/etc/mosquitto/my passwd'",
        "mosquitto_passwd '/etc/mosquitto/my passwd' logger-a",
        "mosquitto_passwd '/etc/mosquitto/my passwd' bridge",
        "systemctl reload mosquitto",
    ]
    assert not any(" -c " in c for c in commands)  # -c would empty an existing file


# --- the command line --------------------------------------------------------------------------


def write_logger(folder: Path, logger_id: str, *meters: str, extra: str = "") -> Path:
    path = folder / f"{logger_id}.toml"
    units = "".join(
        f'[[meters]]\nid = "{m}"\nbus = "b"\nunit = {i}\nprofile = "eastron-sdm120"\n'
        for i, m in enumerate(meters, start=1)
    )
    path.write_text(
        f'[logger]\nid = "{logger_id}"\n{extra}'
        f'[[buses]]\nname = "b"\ntransport = "tcp"\nhost = "127.0.0.1"\n{units}',
        encoding="utf-8",
    )
    return path


def test_the_command_writes_the_acl_and_the_users_to_create(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CAMPUS_ENERGY_CONFIG", raising=False)
    a = write_logger(tmp_path, "hall-a", "a-1", "a-2")
    b = write_logger(tmp_path, "hall-b", "b-1")
    bridge = tmp_path / "bridge.toml"
    bridge.write_text('[bridge]\nsink = "sqlite"\n', encoding="utf-8")
    # an override in this shell is the bridge's business, not the loggers'
    monkeypatch.setenv("CAMPUS_ENERGY__LOGGER__ID", "this-machine")

    assert main(["mosquitto-acl", "-c", str(bridge), "--loggers", str(a), str(b)]) == 0
    out, err = capsys.readouterr()
    assert "user logger-hall-a\n" in out and "user logger-hall-b\n" in out
    assert "topic write campus/energy/b-1/reading\n" in out
    assert "mosquitto_passwd" not in out  # stdout is the ACL alone
    assert "mosquitto_passwd /etc/mosquitto/passwd logger-hall-b" in err

    # -c alone: that file is the logger, read with this shell's overrides like every -c
    target = tmp_path / "acl"
    code = main(["mosquitto-acl", "-c", str(a), "-o", str(target), "--passwd", "/srv/pw"])
    assert code == 0
    out, err = capsys.readouterr()
    written = target.read_text("utf-8")
    assert "user logger-this-machine\n" in written
    assert "topic write campus/energy/a-2/status\n" in written
    assert "hall-b" not in written and "b-1" not in written
    assert "mosquitto_passwd /srv/pw bridge" in out and err == ""


def test_the_command_names_the_file_and_key_of_a_conflict(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = write_logger(tmp_path, "hall-a", "a-1")
    b = write_logger(tmp_path, "hall-b", "a-1")
    assert main(["mosquitto-acl", "-c", str(a), "--loggers", str(a), str(b)]) == 2
    err = capsys.readouterr().err
    assert "configuration error: meters:" in err and str(b) in err

    broken = write_logger(tmp_path, "hall-c", "c-1", extra='[mqtt]\nport = "x"\n')
    assert main(["mosquitto-acl", "-c", str(a), "--loggers", str(broken)]) == 2
    assert f"configuration error: {broken}: mqtt.port" in capsys.readouterr().err
    assert main(["mosquitto-acl", "-c", str(a), "--loggers", str(tmp_path / "none")]) == 2
    assert "no configuration file" in capsys.readouterr().err


def estate_data(**logger_keys: Any) -> dict[str, Any]:
    """Two sites: lib-main on the default site, lab-1 and lab-2 on "north"."""
    return {
        "sites": [{"id": "north"}],
        "buses": [BUS],
        "meters": [
            {"id": "lib-main", "bus": "b", "unit": 1, "profile": "eastron-sdm120"},
            {"id": "lab-1", "bus": "b", "unit": 2, "profile": "eastron-sdm120", "site": "north"},
            {"id": "lab-2", "bus": "b", "unit": 3, "profile": "eastron-sdm120", "site": "north"},
        ],
        "logger": logger_keys,
    }


def test_each_sites_logger_publishes_under_its_sites_root_and_the_bridge_reads_every_site() -> None:
    main = parse_config(estate_data(id="main-pi", site="main"))
    north = parse_config(estate_data(id="north-pi", site="north"))
    users = by_user(acl_users(sources(main, north), main))
    north_root = "campus/energy/sites/north"
    assert users["logger-north-pi"] == {
        ("write", f"{north_root}/lab-1/reading"),
        ("write", f"{north_root}/lab-1/status"),
        ("write", f"{north_root}/lab-2/reading"),
        ("write", f"{north_root}/lab-2/status"),
        ("readwrite", f"{north_root}/logger/north-pi/status"),
    }
    assert ("write", "campus/energy/lib-main/reading") in users["logger-main-pi"]
    assert not any("north" in topic for _, topic in users["logger-main-pi"])
    assert users["bridge"] == {
        ("read", "campus/energy/+/reading"),
        ("read", "$share/+/campus/energy/+/reading"),
        ("read", f"{north_root}/+/reading"),
        ("read", f"$share/+/{north_root}/+/reading"),
    }


def test_a_logger_of_a_site_the_bridge_does_not_know_is_refused() -> None:
    north = parse_config(estate_data(id="north-pi", site="north"))
    bridge = parse_config({"buses": [BUS]})  # a bridge configured before the site was added
    with pytest.raises(ConfigError) as caught:
        acl_users(sources(north), bridge)
    assert any(
        key == "meters.site" and "a site the bridge's configuration does not have" in message
        for key, message in caught.value.problems
    ), caught.value.problems
