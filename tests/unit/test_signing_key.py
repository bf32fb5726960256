"""The signing key file: read when it is private and long enough; refused, naming the key, not."""

from __future__ import annotations

from pathlib import Path

import pytest

from campus_energy.errors import ConfigError
from campus_energy.runtime.signing import read_signing_key

SECRET = "3f" * 32  # what `openssl rand -hex 32` writes


def key_file(tmp_path: Path, text: str, mode: int = 0o600) -> Path:
    path = tmp_path / "signing.key"
    path.write_text(text)
    path.chmod(mode)
    return path


def test_a_private_key_is_read_without_its_newline(tmp_path: Path) -> None:
    assert read_signing_key(key_file(tmp_path, SECRET + "\n")) == SECRET.encode()
    assert read_signing_key(key_file(tmp_path, SECRET, 0o400)) == SECRET.encode()


@pytest.mark.parametrize(
    ("text", "mode", "said"),
    [
        (SECRET, 0o640, "chmod 600"),
        (SECRET, 0o604, "chmod 600"),
        (SECRET, 0o620, "chmod 600"),
        ("short-secret", 0o600, "at least 32"),
        ("   \n", 0o600, "at least 32"),
    ],
)
def test_a_key_others_may_read_or_a_short_one_is_refused(
    tmp_path: Path, text: str, mode: int, said: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        read_signing_key(key_file(tmp_path, text, mode))
    ((key, message),) = raised.value.problems
    assert key == "mqtt.signing_key_file" and said in message
    assert SECRET not in message and "short-secret" not in message


def test_a_missing_key_or_a_folder_is_refused(tmp_path: Path) -> None:
    for path, said in ((tmp_path / "nowhere.key", "cannot read"), (tmp_path, "not a file")):
        with pytest.raises(ConfigError) as raised:
            read_signing_key(path)
        assert said in raised.value.problems[0][1]
