"""Write the Mosquitto ACL that binds each meter to its logger, from the configuration.

One user per logger may publish only its own meters' readings and statuses,
its own status (also its last will) and, with mqtt.homeassistant_discovery, the
discovery configs under its own node; the bridge may only receive readings; the
alerts service (when alerts or reports are configured) reads readings and meter
statuses and writes its alerts' states (and their discovery configs); Home
Assistant (when a logger or the alerts announce to it) reads the campus and
writes under its own prefix. Nobody else may do anything: no `pattern` lines, and
Mosquitto denies what the file does not allow.

A configuration file describes one logger (`logger.id` and its `[[meters]]`).
With -c alone that file is the one logger; for several loggers give each
one's file to --loggers (read as they are, without $CAMPUS_ENERGY__*
overrides), and -c names the bridge's configuration. A logger's user is its
`mqtt.username`, else `logger-<logger.id>`. The ACL goes to stdout or -o FILE;
the mosquitto_passwd commands that create the users follow it (on stderr when
the ACL is on stdout).
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from campus_energy.config import Config, load_config, quoted
from campus_energy.core.topics import logger_status_topic, meter_status_topic, reading_topic
from campus_energy.errors import ConfigError, UsageError
from campus_energy.incidents.channels.mqtt import NODE as ALERTS_NODE
from campus_energy.logger.homeassistant import node_id

DEFAULT_PASSWD = Path("/etc/mosquitto/passwd")
BRIDGE_USER = "bridge"
ALERTS_USER = "alerts"
HOMEASSISTANT_USER = "homeassistant"

Access = Literal["read", "write", "readwrite"]

HEADER = """\
# Mosquitto ACL for Campus Energy, written by `campus-energy mosquitto-acl`:
# install as /etc/mosquitto/acl (acl_file) and reload Mosquitto.
#
# A user may read or write only the topics listed under its `user` line;
# everything else is denied, and there are no `pattern` lines (they would apply
# to every user). Each logger may publish the readings and statuses of its own
# meters only, so no logger can speak for another's meter. "read" is checked on
# the topic of every message the broker delivers (Mosquitto 2.0 accepts any
# subscription and delivers only what the user may read); "write" covers
# publishing, retained messages and the last will. A publish that is not
# allowed is dropped: MQTT 5 clients get "not authorised" in the
# acknowledgement, MQTT 3.1.1 clients an ordinary acknowledgement.
"""


@dataclass(frozen=True)
class Rule:
    access: Access
    topic: str


@dataclass(frozen=True)
class AclUser:
    """One `user` block: who it is for, and what it may read and write."""

    name: str
    about: str
    rules: tuple[Rule, ...]


@dataclass(frozen=True)
class LoggerSource:
    """A logger's configuration and where it came from (named in messages)."""

    config: Config
    origin: str


def logger_user(config: Config) -> str:
    """The MQTT user a logger connects as: its `mqtt.username`, else `logger-<logger.id>`."""
    return config.mqtt.username or f"logger-{config.logger.id}"


def logger_rules(config: Config) -> tuple[Rule, ...]:
    """What one logger may publish: its own meters' topics (under their site's root), its
    status, its discovery node."""
    rules = [
        Rule("write", topic(config.topic_root(config.site_of(m)), m.id))
        for m in config.for_logger().meters
        for topic in (reading_topic, meter_status_topic)
    ]
    # Its own status, also its last will; read too, so that its credentials can check it.
    status = logger_status_topic(config.logger_site_root(), config.logger.id)
    rules.append(Rule("readwrite", status))
    if config.mqtt.homeassistant_discovery:
        # Every config of this logger, also those of meters it no longer has (it clears
        # them): the node level names the logger (see campus_energy.homeassistant).
        ha = config.mqtt.homeassistant_prefix
        rules.append(Rule("write", f"{ha}/+/{node_id(config.logger.id)}/+/config"))
    return tuple(rules)


def bridge_rules(config: Config) -> tuple[Rule, ...]:
    """Readings only, of every site, plain or as the shared subscription of
    `bridge.shared_group`."""
    topics = [reading_topic(root, "+") for root in config.topic_roots()]
    return tuple(rule for t in topics for rule in (Rule("read", t), Rule("read", f"$share/+/{t}")))


def alerts_rules(config: Config) -> tuple[Rule, ...]:
    """Readings and meter statuses to read; its alerts' states and, with an MQTT channel that
    announces them, their Home Assistant discovery configs to write."""
    prefix = config.mqtt.topic_prefix
    rules = [
        Rule("read", topic(root, "+"))
        for root in config.topic_roots()
        for topic in (reading_topic, meter_status_topic)
    ]
    rules.append(Rule("readwrite", f"{prefix}/alerts/#"))
    if any(c.kind == "mqtt" and c.homeassistant_discovery for c in config.alerts.channels):
        ha = config.mqtt.homeassistant_prefix
        rules.append(Rule("write", f"{ha}/binary_sensor/{ALERTS_NODE}/+/config"))
    return tuple(rules)


def homeassistant_rules(prefix: str, ha_prefixes: Sequence[str]) -> tuple[Rule, ...]:
    """The campus's topics to read; its own prefix (birth, last will, deleted configs)."""
    return (Rule("read", f"{prefix}/#"), *(Rule("readwrite", f"{ha}/#") for ha in ha_prefixes))


def _check(loggers: Sequence[LoggerSource], bridge: Config, names: Sequence[str]) -> None:
    """Each logger named once, each meter bound to one logger, every user distinct."""
    problems: list[tuple[str, str]] = []
    seen_ids: dict[str, str] = {}
    owner: dict[str, tuple[str, str]] = {}  # meter -> (logger id, origin)
    for source in loggers:
        config, origin = source.config, source.origin
        logger_id = config.logger.id
        if "id" not in config.logger.model_fields_set:
            problems.append(
                (
                    "logger.id",
                    f"not set in {origin} (it defaults to the host name of the machine that "
                    "reads the file): set it, so that the ACL names the logger's own topics",
                )
            )
        config = config.for_logger()  # the meters it polls (logger.site, logger.buses)
        if not config.meters:
            problems.append(("meters", f"{origin} has no meters: a logger publishes for none"))
        if logger_id in seen_ids:
            problems.append(
                ("logger.id", f"{quoted(logger_id)} is in both {seen_ids[logger_id]} and {origin}")
            )
        seen_ids.setdefault(logger_id, origin)
        if config.mqtt.topic_prefix != bridge.mqtt.topic_prefix:
            problems.append(
                (
                    "mqtt.topic_prefix",
                    f"{quoted(config.mqtt.topic_prefix)} in {origin}, but the bridge's is "
                    f"{quoted(bridge.mqtt.topic_prefix)}: it would not receive those readings",
                )
            )
        roots = bridge.topic_roots()
        for meter in config.meters:
            root = config.topic_root(config.site_of(meter))
            if root not in roots and config.mqtt.topic_prefix == bridge.mqtt.topic_prefix:
                problems.append(
                    (
                        "meters.site",
                        f"meter {quoted(meter.id)} of site {quoted(config.site_of(meter))} "
                        f"({origin}) publishes under {quoted(root)}, a site the bridge's "
                        "configuration does not have: it would not receive those readings",
                    )
                )
            if meter.id in owner and owner[meter.id][0] != logger_id:
                other, where = owner[meter.id]
                problems.append(
                    (
                        "meters",
                        f"meter {quoted(meter.id)} is polled by logger {quoted(other)} ({where}) "
                        f"and logger {quoted(logger_id)} ({origin}): a meter has one logger",
                    )
                )
            owner.setdefault(meter.id, (logger_id, origin))
    for name in names:
        if not name or any(c.isspace() for c in name):
            problems.append(("mqtt.username", f"{quoted(name)} is not a user name of the ACL"))
    doubled = sorted({n for n in names if names.count(n) > 1})
    if doubled:
        problems.append(
            ("mqtt.username", f"{', '.join(map(quoted, doubled))} would be two services' user")
        )
    if problems:
        raise ConfigError(problems)


def acl_users(
    loggers: Sequence[LoggerSource],
    bridge: Config,
    *,
    bridge_user: str = BRIDGE_USER,
    homeassistant_user: str = HOMEASSISTANT_USER,
    alerts_user: str = ALERTS_USER,
) -> list[AclUser]:
    """The ACL's users: every logger, the bridge, and Home Assistant when a logger announces
    to it. Raises ConfigError when the configurations do not bind each meter to one logger."""
    announcing = [s.config.mqtt for s in loggers if s.config.mqtt.homeassistant_discovery]
    if any(c.kind == "mqtt" and c.homeassistant_discovery for c in bridge.alerts.channels):
        announcing.append(bridge.mqtt)  # the alerts' binary sensors
    ha_prefixes = sorted({mqtt.homeassistant_prefix for mqtt in announcing})
    alerting = bool(bridge.alerts.rules or bridge.reports)
    names = [logger_user(s.config) for s in loggers] + [bridge_user]
    names += [alerts_user] if alerting else []
    names += [homeassistant_user] if ha_prefixes else []
    _check(loggers, bridge, names)
    users = []
    for source in loggers:
        config = source.config
        count = len(config.for_logger().meters)
        meters = f"its {count} meters'" if count != 1 else "its meter's"
        about = f"logger {config.logger.id}: {meters} readings and statuses, its own status"
        if config.mqtt.homeassistant_discovery:
            about += " (also its last will) and its Home Assistant discovery configs"
        else:
            about += " (also its last will)"
        users.append(AclUser(logger_user(config), about, logger_rules(config)))
    prefix = bridge.mqtt.topic_prefix
    about = (
        "every bridge (also several sharing bridge.shared_group) receives readings and nothing "
        "else. Mosquitto checks the first line on each reading it delivers, plain or shared; "
        "the second names the shared subscription for brokers that check the subscription itself"
    )
    users.append(AclUser(bridge_user, about, bridge_rules(bridge)))
    if alerting:
        about = (
            "the alerts service reads readings and meter statuses, and writes its alerts' "
            "retained states (and their Home Assistant discovery configs, when announced)"
        )
        users.append(AclUser(alerts_user, about, alerts_rules(bridge)))
    if ha_prefixes:
        about = (
            "Home Assistant reads everything of the campus and writes under its own prefix: "
            "its birth and last-will messages, and empty retained configs when a device is "
            "deleted in its interface"
        )
        users.append(AclUser(homeassistant_user, about, homeassistant_rules(prefix, ha_prefixes)))
    return users


def render(users: Sequence[AclUser]) -> str:
    """The ACL file's text."""
    blocks = [HEADER]
    for user in users:
        lines = textwrap.wrap(user.about, 77, initial_indent="# ", subsequent_indent="# ")
        lines.append(f"user {user.name}")
        lines += [f"topic {rule.access} {rule.topic}" for rule in user.rules]
        blocks.append("\n".join(lines) + "\n")
    return "\n".join(blocks)


def passwd_commands(users: Sequence[AclUser], passwd: Path) -> list[str]:
    """The shell commands that make the password file and each user in it (asking each
    password), without overwriting a file that exists."""
    file = shlex.quote(str(passwd))
    commands = [f"test -e {file} || install -m 0600 -o mosquitto -g mosquitto /dev/null {file}"]
    commands += [f"mosquitto_passwd {file} {shlex.quote(user.name)}" for user in users]
    commands.append("systemctl reload mosquitto")
    return commands


# --- the command -------------------------------------------------------------------------------


def configure(parser: argparse.ArgumentParser) -> None:
    """Add this command's options."""
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument(
        "--loggers",
        type=Path,
        nargs="+",
        action="extend",
        metavar="FILE",
        help="each logger's configuration file (default: the -c file is the one logger)",
    )
    parser.add_argument("-o", "--output", type=Path, metavar="FILE", help="write the ACL here")
    parser.add_argument(
        "--passwd",
        type=Path,
        default=DEFAULT_PASSWD,
        metavar="FILE",
        help=f"the broker's password file, in the commands printed (default: {DEFAULT_PASSWD})",
    )
    parser.add_argument("--bridge-user", default=BRIDGE_USER, help="the bridges' MQTT user")
    parser.add_argument(
        "--homeassistant-user", default=HOMEASSISTANT_USER, help="Home Assistant's MQTT user"
    )
    parser.add_argument(
        "--alerts-user",
        default=ALERTS_USER,
        help="the alerts service's MQTT user (when alerts or reports are configured)",
    )


def run(args: argparse.Namespace) -> int:
    bridge = load_config(args.config, os.environ)
    if args.loggers:
        loggers = [LoggerSource(_logger_config(path), str(path)) for path in args.loggers]
    else:
        origin = str(bridge.source) if bridge.source is not None else "the configuration"
        loggers = [LoggerSource(bridge, origin)]
    users = acl_users(
        loggers,
        bridge,
        bridge_user=args.bridge_user,
        homeassistant_user=args.homeassistant_user,
        alerts_user=args.alerts_user,
    )
    text = render(users)
    notes = sys.stdout
    if args.output is None:
        sys.stdout.write(text)
        notes = sys.stderr
    else:
        try:
            args.output.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"cannot write {args.output}: {exc.strerror}") from None
        print(f"wrote {args.output}: {len(users)} users")
    print("# the users, as root on the broker (mosquitto_passwd asks each password):", file=notes)
    for command in passwd_commands(users, args.passwd):
        print(command, file=notes)
    print(
        "# each service then names its user in mqtt.username and the password in "
        "mqtt.password_file",
        file=notes,
    )
    return 0


def _logger_config(path: Path) -> Config:
    if not path.is_file():
        raise UsageError(f"--loggers: no configuration file {path}")
    try:
        return load_config(path, {})
    except ConfigError as exc:  # name the file: several are read
        raise ConfigError([(f"{path}: {key}", message) for key, message in exc.problems]) from None
