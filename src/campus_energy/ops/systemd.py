"""Render the systemd units for this installation and say how to enable them.

The units run the `campus-energy` program of this Python environment with the
configuration given by -c (default: /etc/campus-energy/campus-energy.toml), as
a dedicated user. They are written to --prefix (default: /etc/systemd/system);
nothing else is changed: the commands to create the user and enable the
services are printed for you to run. --dry-run prints the units instead.

Warnings name what the units would not find: files written outside their state
folder, anything under /tmp or /var/tmp (PrivateTmp= gives each service its
own, empty), a program under a home folder, serial devices they may not open,
the alerts' password, key and CA files their user may not read. The configuration
is read with the variables of /etc/campus-energy/environment, as the units read it.
The alerts service's unit is enabled with the others once alerts or reports are
configured, and offered as optional until then.
"""

from __future__ import annotations

import argparse
import os
import pwd
import re
import shlex
import shutil
import sys
import tempfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Literal

from campus_energy.config import Config, load_config
from campus_energy.errors import InstallError, UsageError

UNITS = (
    "campus-energy-logger.service",
    "campus-energy-bridge.service",
    "campus-energy-api.service",
    "campus-energy-dashboard.service",
    "campus-energy-alerts.service",
)
ALERTS_UNIT = "campus-energy-alerts.service"
OPTIONAL_UNITS = {
    "campus-energy-dashboard.service": "the local Streamlit dashboard",
    ALERTS_UNIT: "alerts and scheduled reports (once [[alerts.rules]] or [[reports]] are set)",
}
ENVIRONMENT_FILE = Path("/etc/campus-energy/environment")  # EnvironmentFile=: the units' secrets
STATE_DIR = Path("/var/lib/campus-energy")  # StateDirectory=: the only folder the units may write
DEFAULT_PREFIX = Path("/etc/systemd/system")
DEFAULT_CONFIG = Path("/etc/campus-energy/campus-energy.toml")
DEFAULT_EXECUTABLE = Path("/opt/campus-energy/bin/campus-energy")
DEFAULT_USER = "campus-energy"
# ProtectHome=yes hides these; a program or configuration inside needs ProtectHome=read-only.
# PrivateTmp=yes gives each unit its own empty /tmp and /var/tmp: nothing there is seen.
PRIVATE_TMP = (Path("/tmp"), Path("/var/tmp"))
HOME_FOLDERS = (Path("/home"), Path("/root"), Path("/run/user"))
# The serial devices the logger's DeviceAllow= lists, by kernel name.
SERIAL_DEVICES = ("ttyUSB", "ttyACM", "ttyS", "ttyAMA")
_USER_NAME = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
PLACEHOLDER = re.compile(r"@[A-Z_]+@")


@dataclass(frozen=True)
class Installation:
    """What the units name: the program, the configuration file, the user."""

    executable: Path
    config: Path
    user: str = DEFAULT_USER
    protect_home: Literal["yes", "read-only"] = "yes"

    def __post_init__(self) -> None:
        if not _USER_NAME.match(self.user):
            raise UsageError(
                f"--user: {self.user!r} is not a system user name (a-z, 0-9, '_', '-'; "
                "starting with a letter or '_'; at most 32 characters)"
            )
        for what, path in (("program", self.executable), ("configuration", self.config)):
            if not path.is_absolute():
                raise UsageError(f"the {what} path must be absolute, got {path}")
            if any(c in str(path) for c in "\n\r\0"):
                raise UsageError(f"the {what} path contains a line break: {path!r}")


DEFAULT = Installation(DEFAULT_EXECUTABLE, DEFAULT_CONFIG)


def exec_word(path: Path) -> str:
    """`path` as one word of a unit's command line (systemd's specifiers and quoting escaped)."""
    text = str(path).replace("\\", "\\\\").replace('"', '\\"')
    text = text.replace("%", "%%").replace("$", "$$")
    return f'"{text}"' if re.search(r"[\s\"';]", str(path)) else text


def template(name: str) -> str:
    return resources.files("campus_energy.ops").joinpath("units", name).read_text("utf-8")


def render(installation: Installation) -> dict[str, str]:
    """Each unit's file name and text for `installation`."""
    values = {
        "@EXECUTABLE@": exec_word(installation.executable),
        "@CONFIG@": exec_word(installation.config),
        "@USER@": installation.user,
        "@PROTECT_HOME@": installation.protect_home,
    }
    return {name: PLACEHOLDER.sub(lambda m: values[m.group(0)], template(name)) for name in UNITS}


# --- this installation ------------------------------------------------------------------------


def find_executable() -> Path:
    """The `campus-energy` program of the running Python environment."""
    beside = Path(sys.executable).parent / "campus-energy"
    if os.access(beside, os.X_OK):
        return beside.absolute()
    found = shutil.which("campus-energy")
    if found is None:
        raise InstallError(
            f"cannot find the campus-energy program beside {sys.executable} or on PATH: "
            "install the package into this environment first"
        )
    return Path(found).absolute()


def interpreter_of(program: Path) -> Path | None:
    """The interpreter a script names on its #! line (None: not a script, or unreadable)."""
    try:
        with program.open("rb") as file:
            first = file.readline(4096)
    except OSError:
        return None
    words = first[2:].decode(errors="replace").split() if first.startswith(b"#!") else []
    return Path(words[0]) if words else None


def in_home_folders(paths: list[Path]) -> list[Path]:
    """Those of `paths` (symbolic links followed) that lie under a home folder."""
    found = []
    for path in paths:
        real = path.resolve()
        if any(real.is_relative_to(home) for home in HOME_FOLDERS):
            found.append(real)
    return found


def in_private_tmp(path: Path) -> Path | None:
    """The private folder (/tmp, /var/tmp) that holds `path`, its links followed or not."""
    for tmp in PRIVATE_TMP:
        if path.absolute().is_relative_to(tmp) or path.resolve().is_relative_to(tmp):
            return tmp
    return None


def _hidden(tmp: Path) -> str:
    return (
        f"which the units do not see (PrivateTmp=yes gives each service a {tmp} of its own, empty)"
    )


def unwritable_paths(config: Config) -> list[str]:
    """Warnings for the files the services write outside the units' writable folder."""
    paths = {"storage.path": config.storage.path, "bridge.spool_path": config.bridge.spool_path}
    if "sqlite" in (config.bridge.sink, config.api.source or config.bridge.sink):
        paths["bridge.sqlite.path"] = config.bridge.sqlite.path
    if alerts_wanted(config):
        paths["alerts.state_path"] = config.alerts.state_path
    found = []
    for key, path in paths.items():
        if path.is_relative_to(STATE_DIR):
            continue
        text = f"{key} = {path} is outside {STATE_DIR}, the only folder the units may write"
        if (tmp := in_private_tmp(path)) is not None:
            text += f", and under {tmp}, {_hidden(tmp)}"
        found.append(f"{text}: set it to {STATE_DIR / path.name}")
    return found


def hidden_in_private_tmp(installation: Installation, config: Config | None) -> list[str]:
    """Warnings for what the units read from /tmp or /var/tmp (which they do not see): the
    program, the configuration, the profiles, the password, TLS, key and credentials files."""
    named: dict[str, Path | None] = {
        "the program": installation.executable,
        "the configuration": installation.config,
    }
    if config is not None:
        mqtt = config.mqtt
        named |= {
            "profiles_dir": config.profiles_dir,
            "mqtt.password_file": mqtt.password_file,
            "mqtt.tls_ca_file": mqtt.tls_ca_file,
            "mqtt.tls_cert_file": mqtt.tls_cert_file,
            "mqtt.tls_key_file": mqtt.tls_key_file,
            "mqtt.signing_key_file": mqtt.signing_key_file,
            "bridge.firestore.credentials_file": config.bridge.firestore.credentials_file,
            **channel_files(config),
        }
    found = []
    for what, path in named.items():
        if path is not None and (tmp := in_private_tmp(path)) is not None:
            name = what if what.startswith("the ") else f"{what} ="
            where = "/opt/campus-energy" if what == "the program" else "/etc/campus-energy"
            found.append(
                f"{name} {path} is under {tmp}, {_hidden(tmp)}: move it, e.g. under {where}"
            )
    return found


def alerts_wanted(config: Config) -> bool:
    """Whether this installation runs the alerts service: rules or reports are configured."""
    return bool(config.alerts.rules or config.reports)


def channel_files(config: Config) -> dict[str, Path | None]:
    """The files the alerts service and the API read, by key: each channel's password or
    signing key and CA, and the token that allows acknowledgements over the API."""
    found: dict[str, Path | None] = {"alerts.api_token_file": config.alerts.api_token_file}
    for i, channel in enumerate(config.alerts.channels):
        for key in ("password_file", "secret_file", "ca_file"):
            found[f"alerts.channels[{i}].{key}"] = getattr(channel, key)
    return found


def unreadable_files(config: Config, user: str) -> list[str]:
    """Warnings for the alerts' files that `user` (the units' user) cannot read."""
    try:
        account = pwd.getpwnam(user)
    except KeyError:
        return []  # the user is created next: it reads what its group may
    if account.pw_uid == 0:
        return []
    groups = {account.pw_gid, *os.getgrouplist(user, account.pw_gid)}
    found = []
    for key, path in channel_files(config).items():
        if path is None or not path.is_file():
            continue  # a missing file is refused when the configuration is read
        info = path.stat()
        if info.st_uid == account.pw_uid:
            readable = bool(info.st_mode & 0o400)
        elif info.st_gid in groups:
            readable = bool(info.st_mode & 0o040)
        else:
            readable = bool(info.st_mode & 0o004)
        if not readable:
            found.append(
                f"{key} = {path} is not readable by user {user}: "
                f"chgrp {user} {shlex.quote(str(path))} && chmod 0640 {shlex.quote(str(path))}"
            )
    return found


def unit_environment(path: Path = ENVIRONMENT_FILE) -> dict[str, str]:
    """The variables the units' `EnvironmentFile=` gives them (empty when there is none), so
    that the configuration is read as the services read it (a channel's `password_env`)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return {}
    found = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")) or "=" not in line:
            continue
        key, _, value = line.partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        found[key.strip().removeprefix("export ").strip()] = value
    return found


def unlisted_devices(config: Config) -> list[str]:
    """Warnings for serial devices the logger's DeviceAllow= does not list."""
    found = []
    for bus in config.buses:
        if bus.transport != "rtu" or bus.device is None or not Path(bus.device).exists():
            continue
        name = Path(bus.device).resolve().name
        if not name.startswith(SERIAL_DEVICES):
            found.append(
                f"bus {bus.name}: {bus.device} ({name}) is not among the logger's devices "
                f"({', '.join(SERIAL_DEVICES)}): add `DeviceAllow={Path(bus.device).resolve()} rw` "
                "with `systemctl edit campus-energy-logger.service`"
            )
    return found


def user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def next_steps(
    installation: Installation, *, config: Config | None, config_exists: bool, has_user: bool
) -> list[str]:
    """The commands that create the user and enable the services (to run as root)."""
    user, config_file = installation.user, shlex.quote(str(installation.config))
    steps = []
    if not has_user:
        steps.append(
            f"useradd --system --user-group --home-dir {STATE_DIR} --no-create-home "
            f"--shell /usr/sbin/nologin {user}"
        )
    if not config_exists:
        program = shlex.quote(str(installation.executable))
        steps.append(
            f"{program} init -c {config_file}  "
            f"# then edit it: buses, meters, and data files under {STATE_DIR}"
        )
        steps.append(f"chgrp {user} {config_file} && chmod 0640 {config_file}")
    steps.append("systemctl daemon-reload")
    optional = dict(OPTIONAL_UNITS)
    if config is not None and alerts_wanted(config):
        del optional[ALERTS_UNIT]  # rules or reports configured: the service has work
    enable = [name for name in UNITS if name not in optional]
    if config is not None and not config.meters:
        enable.remove("campus-energy-logger.service")  # no meters: nothing to poll here
    steps.append("systemctl enable --now " + " ".join(enable))
    steps += [
        f"systemctl enable --now {name}  # optional: {what}" for name, what in optional.items()
    ]
    return steps


def write_units(units: dict[str, str], prefix: Path) -> list[Path]:
    """Write each unit into `prefix` (replacing it in one step); the paths written."""
    written = []
    try:
        prefix.mkdir(parents=True, exist_ok=True)
        for name, text in units.items():
            target = prefix / name
            with tempfile.NamedTemporaryFile(
                "w", encoding="utf-8", dir=prefix, prefix=f".{name}.", delete=False
            ) as file:
                file.write(text)
            try:
                os.chmod(file.name, 0o644)
                os.replace(file.name, target)
            except OSError:
                Path(file.name).unlink(missing_ok=True)
                raise
            written.append(target)
    except OSError as exc:
        raise InstallError(
            f"cannot write the units into {prefix}: {exc.strerror or exc} "
            "(run as root, or choose another --prefix)"
        ) from None
    return written


# --- the command ------------------------------------------------------------------------------


def configure(parser: argparse.ArgumentParser) -> None:
    """Add this command's options."""
    parser.add_argument(
        "--prefix",
        type=Path,
        default=DEFAULT_PREFIX,
        help=f"folder to write the units into (default: {DEFAULT_PREFIX})",
    )
    parser.add_argument(
        "--user", default=DEFAULT_USER, help=f"user the services run as (default: {DEFAULT_USER})"
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="print the units and the commands; write nothing"
    )


def run(args: argparse.Namespace) -> int:
    config_file = args.config.expanduser().resolve() if args.config else DEFAULT_CONFIG
    executable = find_executable()
    needed = [executable, config_file]
    interpreter = interpreter_of(executable)
    if interpreter is not None:
        needed.append(interpreter)
    at_home = in_home_folders(needed)
    installation = Installation(
        executable, config_file, args.user, "read-only" if at_home else "yes"
    )
    config = load_config(config_file, unit_environment()) if config_file.exists() else None
    warnings = [
        f"{path} is under a home folder: the units use ProtectHome=read-only, and user "
        f"{installation.user} must be able to read it (an installation under /opt is safer)"
        for path in at_home
    ]
    warnings += hidden_in_private_tmp(installation, config)
    if config is not None:
        warnings += unwritable_paths(config) + unlisted_devices(config)
        warnings += unreadable_files(config, installation.user)
    units = render(installation)
    if args.dry_run:
        for name, text in units.items():
            print(f"# --- {args.prefix / name} (dry run: not written) ---")
            print(text)
    else:
        for path in write_units(units, args.prefix):
            print(f"wrote {path}")
    for warning in warnings:
        print(f"campus-energy: warning: {warning}", file=sys.stderr)
    print("then, as root:")
    steps = next_steps(
        installation,
        config=config,
        config_exists=config_file.exists(),
        has_user=user_exists(installation.user),
    )
    for step in steps:
        print(f"  {step}")
    return 0


if __name__ == "__main__":  # `python -m campus_energy.ops.systemd deploy/systemd`: the copies
    for written in write_units(render(DEFAULT), Path(sys.argv[1])):  # with the default paths
        print(f"wrote {written}")
