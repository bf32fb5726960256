"""`[alerts]` and `[[reports]]`: a bad configuration stops with the offending key named (exit 2),
and secrets are read from their file or environment variable and never shown."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from tests.support.config import write_toml
from tests.support.processes import run_cli

from campus_energy.config import parse_config
from campus_energy.errors import ConfigError

MAIL = {
    "name": "mail",
    "kind": "email",
    "host": "smtp.campus.example",
    "sender": "energy@campus.example",
    "recipients": ["facilities@campus.example"],
}
HOOK = {"name": "hook", "kind": "webhook", "url": "https://ops.campus.example/hook"}


def data(*, rules: Any = (), channels: Any = (MAIL, HOOK), reports: Any = ()) -> dict[str, Any]:
    return {
        "site": {
            "timezone": "Europe/Berlin",
            "buildings": [
                {"name": "Library", "occupancy": {"mon": "08:00-18:00"}},
                {"name": "ECE"},
            ],
        },
        "buses": [{"name": "b", "transport": "tcp", "host": "127.0.0.1"}],
        "meters": [
            {
                "id": "lib-1",
                "bus": "b",
                "unit": 1,
                "profile": "eastron-sdm120",
                "building": "Library",
            },
            {"id": "ece-1", "bus": "b", "unit": 2, "profile": "eastron-sdm120", "building": "ECE"},
        ],
        "virtual_meters": [{"id": "lib-rest", "building": "Library", "terms": "lib-1"}],
        "alerts": {"channels": list(channels), "rules": list(rules)},
        "reports": list(reports),
    }


def problems(config: dict[str, Any], environ: dict[str, str] | None = None) -> dict[str, str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(config, environ)
    return dict(caught.value.problems)


def rule(**keys: Any) -> dict[str, Any]:
    return {"name": "r", "kind": "meter-silent", "scope": "campus", **keys}


@pytest.mark.parametrize(
    ("config", "key", "words"),
    [
        (data(rules=[rule(scope="building:Gym")]), "alerts.rules[0].scope", "unknown building"),
        (data(rules=[rule(scope="meter:nope")]), "alerts.rules[0].scope", "unknown meter"),
        (data(rules=[rule(scope="site")]), "alerts.rules[0].scope", "must be 'campus'"),
        (data(rules=[rule(scope="meter:lib-rest")]), "alerts.rules[0].scope", "not virtual"),
        (data(rules=[rule(channels=["pager"])]), "alerts.rules[0].channels", "unknown channel"),
        (data(rules=[rule(below=0.5)]), "alerts.rules[0]", "'below' is not a key"),
        (data(rules=[rule(**{"for": "ten minutes"})]), "alerts.rules[0].for", "duration"),
        (data(rules=[rule(**{"for": "100d"})]), "alerts.rules[0].for", "90 days"),
        (data(rules=[rule(kind="after-hours")]), "alerts.rules[0]", "above_kw"),
        (
            data(rules=[rule(kind="after-hours", scope="building:ECE", above_kw=5)]),
            "alerts.rules[0].scope",
            "opening hours",
        ),
        (data(rules=[rule(), rule()]), "alerts.rules[1].name", "duplicate rule"),
        (data(channels=[{"name": "mail", "kind": "email"}]), "alerts.channels[0]", "'host'"),
        (data(channels=[{**HOOK, "url": "ftp://x"}]), "alerts.channels[0].url", "http"),
        (data(channels=[{**HOOK, "host": "x"}]), "alerts.channels[0]", "not a setting"),
        (
            data(channels=[{**MAIL, "recipients": ["not an address"]}]),
            "alerts.channels[0].recipients[0]",
            "e-mail address",
        ),
        (
            data(channels=[{**MAIL, "username": "energy"}]),
            "alerts.channels[0]",
            "password_file or password_env",
        ),
        (
            data(reports=[{"name": "m", "every": "month", "day": 31, "channel": "mail"}]),
            "reports[0]",
            "29..31 never come in February",
        ),
        (
            data(reports=[{"name": "w", "every": "week", "day": "someday", "channel": "mail"}]),
            "reports[0]",
            "mon, tue",
        ),
        (
            data(reports=[{"name": "m", "every": "month", "channel": "mail", "at": "25:00"}]),
            "reports[0].at",
            "",
        ),
        (
            data(reports=[{"name": "m", "every": "month", "channel": "hook"}]),
            "reports[0].channel",
            "webhook channel",
        ),
        (
            data(reports=[{"name": "m", "every": "month", "channel": "mail", "building": "X"}]),
            "reports[0].building",
            "unknown building",
        ),
    ],
)
def test_a_bad_alerts_configuration_names_its_key(
    config: dict[str, Any], key: str, words: str
) -> None:
    found = problems(config)
    assert key in found, found
    assert words in found[key], found[key]


def test_a_secret_comes_from_its_environment_variable_and_is_never_shown(tmp_path: Path) -> None:
    channel = {**MAIL, "username": "energy", "password_env": "SMTP_PASSWORD"}
    config = parse_config(data(channels=[channel]), {"SMTP_PASSWORD": "hunter2-secret"})
    assert config.channel_secret("mail") == "hunter2-secret"
    assert "hunter2" not in repr(config) and "hunter2" not in str(config.alerts)
    found = problems(data(channels=[channel]), {})
    assert found == {
        "alerts.channels[0].password_env": "the environment variable SMTP_PASSWORD is not set"
    }


def test_a_secret_file_is_read_and_an_empty_one_refused(tmp_path: Path) -> None:
    secret = tmp_path / "hook.key"
    secret.write_text("s3cret-key\n")
    hook = {**HOOK, "secret_file": str(secret)}
    assert parse_config(data(channels=[hook])).channel_secret("hook") == "s3cret-key"
    secret.write_text("")
    found = problems(data(channels=[hook]))
    assert "is empty" in found["alerts.channels[0].secret_file"]


def test_the_command_line_exits_2_naming_the_key(tmp_path: Path) -> None:
    path = write_toml(tmp_path / "campus-energy.toml", data(rules=[rule(scope="building:Gym")]))
    done = run_cli("alerts", "list", "-c", path)
    assert done.returncode == 2, done.stderr
    assert "alerts.rules[0].scope: unknown building 'Gym'" in done.stderr
