"""Rendering the systemd units: placeholders, quoting, users, home folders."""

from __future__ import annotations

from pathlib import Path

import pytest

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
