"""Rendering the systemd units: placeholders, quoting, users, home folders."""

from __future__ import annotations

from pathlib import Path

import pytest

from campus_energy.config import parse_config
from campus_energy.errors import UsageError
from campus_energy.ops.systemd import (
    DEFAULT,
    PLACEHOLDER,
    UNITS,
    Installation,
    exec_word,
    in_home_folders,
    interpreter_of,
    render,
    unit_environment,
    unreadable_files,
)


def test_every_placeholder_is_filled() -> None:
    units = render(Installation(Path("/opt/ce/bin/campus-energy"), Path("/etc/ce.toml"), "svc"))
    assert sorted(units) == sorted(UNITS)
    for name, text in units.items():
        assert not PLACEHOLDER.search(text), name
        assert "User=svc\n" in text
        command = name.removeprefix("campus-energy-").removesuffix(".service")
        assert f"ExecStart=/opt/ce/bin/campus-energy {command} -c /etc/ce.toml\n" in text


def test_paths_are_quoted_and_escaped_for_systemd() -> None:
    assert exec_word(Path("/opt/campus-energy/bin/campus-energy")) == (
        "/opt/campus-energy/bin/campus-energy"
    )
    assert exec_word(Path("/srv/my site/ce.toml")) == '"/srv/my site/ce.toml"'
    assert exec_word(Path("/srv/100%/$HOME")) == "/srv/100%%/$$HOME"
    assert exec_word(Path('/srv/a"b')) == '"/srv/a\\"b"'


@pytest.mark.parametrize("user", ["Root", "9lives", "a b", "x" * 33, ""])
def test_a_bad_user_name_is_a_usage_error(user: str) -> None:
    with pytest.raises(UsageError, match="--user"):
        Installation(DEFAULT.executable, DEFAULT.config, user)


def test_relative_paths_are_refused() -> None:
    with pytest.raises(UsageError, match="absolute"):
        Installation(Path("bin/campus-energy"), DEFAULT.config)


def test_the_interpreter_of_a_script_and_home_folders(tmp_path: Path) -> None:
    script = tmp_path / "campus-energy"
    script.write_text("#!/root/venv/bin/python -s\nimport sys\n")
    assert interpreter_of(script) == Path("/root/venv/bin/python")
    assert interpreter_of(tmp_path / "missing") is None
    (tmp_path / "binary").write_bytes(b"\x7fELF\x02")
    assert interpreter_of(tmp_path / "binary") is None
    assert in_home_folders([Path("/opt/x"), Path("/home/ann/ce.toml")]) == [
        Path("/home/ann/ce.toml")
    ]
    assert (
        render(Installation(Path("/opt/x"), Path("/etc/y"), protect_home="read-only"))[
            "campus-energy-api.service"
        ].count("ProtectHome=read-only\n")
        == 1
    )


def test_the_alerts_files_the_units_user_cannot_read_are_named(tmp_path: Path) -> None:
    tmp_path.chmod(0o755)
    password, ca = tmp_path / "smtp-password", tmp_path / "ca.pem"
    password.write_text("secret\n")
    password.chmod(0o600)  # root's alone: the service's user cannot read it
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    ca.chmod(0o644)
    mail = {
        "name": "mail", "kind": "email", "host": "smtp.example", "sender": "a@campus.example",
        "recipients": ["b@campus.example"], "username": "energy",
        "password_file": str(password), "ca_file": str(ca),
    }  # fmt: skip
    config = parse_config({"alerts": {"channels": [mail]}})
    found = unreadable_files(config, "nobody")
    assert found == [
        f"alerts.channels[0].password_file = {password} is not readable by user nobody: "
        f"chgrp nobody {password} && chmod 0640 {password}"
    ]
    assert unreadable_files(config, "root") == []
    assert unreadable_files(config, "no-such-user-here") == []  # created next, with its group


def test_the_units_environment_file_is_read_as_systemd_reads_it(tmp_path: Path) -> None:
    env = tmp_path / "environment"
    env.write_text(
        "# secrets\n\nSMTP_PASSWORD=s3cret\nCAMPUS_ENERGY__API__PORT = 8080\n"
        'QUOTED="a b"\nnot a variable\n',
        encoding="utf-8",
    )
    assert unit_environment(env) == {
        "SMTP_PASSWORD": "s3cret",
        "CAMPUS_ENERGY__API__PORT": "8080",
        "QUOTED": "a b",
    }
    assert unit_environment(tmp_path / "missing") == {}
