"""`campus-energy alerts`: the alerts service, and what people do with its alerts.

  campus-energy alerts                   run the service until SIGTERM or SIGINT
  campus-energy alerts list [--all] [--history DAYS] [--format table|json]
  campus-energy alerts ack RULE SUBJECT [--by NAME]
  campus-energy alerts silence RULE|--all-rules [SUBJECT] (--until TIME | --for DURATION)
                               [--by NAME] [--note TEXT]
  campus-energy alerts unsilence ID
  campus-energy alerts silences [--format table|json]

The actions read and write the book of alerts (`alerts.state_path`), which only the service
creates. An acknowledged alert is not notified again until it resolves; a silenced one's
firings and re-notifications are held back until the silence ends (the end of an alert that
was told is told all the same). TIME is ISO 8601 (without an offset: the
site's local time); DURATION is seconds or 90m, 2h, 1d. Tables show the site's local time,
JSON ISO 8601 UTC. NAME defaults to your user name.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from campus_energy.config import Config, load_config
from campus_energy.config.alerts import _duration
from campus_energy.core.timestamps import datetime_ms, iso_utc
from campus_energy.errors import EXIT_FAILURE, EXIT_OK, AlertBookError, UsageError
from campus_energy.incidents.store import AlertBook, Silence
from campus_energy.incidents.values import AlertRow, HistoryRow
from campus_energy.runtime.process import notifier, run_until_signalled

FORMATS = ("table", "json")
MAX_HISTORY_DAYS = 366
EVERY = "*"  # a silence's rule or subject that covers every one


def configure(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    sub = parser.add_subparsers(dest="action", metavar="ACTION", help="without one: the service")
    listing = _action(sub, "list", "the active alerts (or all), and recent transitions")
    listing.add_argument("--all", action="store_true", help="also resolved and inactive alerts")
    listing.add_argument("--history", type=float, metavar="DAYS", help="transitions of the last "
                         "DAYS days too")  # fmt: skip
    listing.add_argument("--format", choices=FORMATS, default="table", help="default: table")
    ack = _action(sub, "ack", "acknowledge a pending or firing alert: no more re-notifications")
    ack.add_argument("rule", metavar="RULE")
    ack.add_argument("subject", metavar="SUBJECT", help="a meter, building, virtual meter or "
                     "'campus'")  # fmt: skip
    _by(ack)
    silence = _action(sub, "silence", "hold back the notifications of a rule's alerts for a time")
    silence.add_argument("rule", nargs="?", metavar="RULE", help="not with --all-rules")
    silence.add_argument("subject", nargs="?", metavar="SUBJECT", help="default: every one")
    silence.add_argument("--all-rules", action="store_true", help="every rule (of SUBJECT)")
    until = silence.add_mutually_exclusive_group(required=True)
    until.add_argument("--until", metavar="TIME", help="ISO 8601; without an offset: local time")
    until.add_argument("--for", dest="duration", metavar="DURATION", help="e.g. 90m, 2h, 1d")
    _by(silence)
    silence.add_argument("--note", default="", help="why (shown with the silence)")
    unsilence = _action(sub, "unsilence", "end a silence now")
    unsilence.add_argument("id", type=int, metavar="ID", help="as `alerts silences` shows it")
    silences = _action(sub, "silences", "the silences in force")
    silences.add_argument("--format", choices=FORMATS, default="table", help="default: table")


def _action(sub: Any, name: str, line: str) -> argparse.ArgumentParser:
    """An action's parser; `-c` and `-v` are taken after it too (suppressed defaults leave
    those given before it alone)."""
    parser: argparse.ArgumentParser = sub.add_parser(name, help=line, description=line)
    parser.add_argument("-c", "--config", type=Path, default=argparse.SUPPRESS,
                        help="configuration file")  # fmt: skip
    parser.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS)
    return parser


def _by(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--by", metavar="NAME", help="who (default: your user name)")


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config, os.environ)
    if args.action is None:
        from campus_energy.alerts.service import AlertsService

        return run_until_signalled(AlertsService(config, notifier=notifier()).run)
    path = config.alerts.state_path
    if not path.is_file():
        raise AlertBookError(
            f"book of alerts {path} does not exist: the alerts service (`campus-energy alerts`) "
            "creates it when it starts"
        )
    with AlertBook(path) as book:
        return ACTIONS[args.action](args, config, book, int(time.time() * 1000))


# -- the actions ---------------------------------------------------------------------------


def _list(args: argparse.Namespace, config: Config, book: AlertBook, now_ms: int) -> int:
    days: float | None = args.history
    if days is not None and not 0 < days <= MAX_HISTORY_DAYS:
        raise UsageError(f"--history: DAYS must be above 0 and at most {MAX_HISTORY_DAYS}")
    alerts = book.alerts(not args.all, now_ms=now_ms)
    history = None
    if days is not None:
        history = book.history(now_ms - round(days * 86_400_000), now_ms + 1)
    if args.format == "json":
        found: dict[str, Any] = {"alerts": [_alert_document(a) for a in alerts]}
        if history is not None:
            found["history"] = [_history_document(h) for h in history]
        print(json.dumps(found, indent=2, ensure_ascii=False))
        return EXIT_OK
    zone = config.site.zone
    if alerts:
        print(_table(ALERT_COLUMNS, [[f(a, zone) for _, f in ALERT_COLUMNS] for a in alerts]))
    else:
        print("No active alerts." if not args.all else "No alerts.")
    if history is not None:
        print(f"\nTransitions of the last {days:g} day(s):")
        cells = [[f(h, zone) for _, f in HISTORY_COLUMNS] for h in history]
        print(_table(HISTORY_COLUMNS, cells) if history else "none")
    return EXIT_OK


def _ack(args: argparse.Namespace, config: Config, book: AlertBook, now_ms: int) -> int:
    try:
        done = book.acknowledge(args.rule, args.subject, _who(args), now_ms)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if not done:
        print(
            f"campus-energy: no pending or firing alert of rule {args.rule!r} for "
            f"{args.subject!r} (`campus-energy alerts list` shows them)",
            file=sys.stderr,
        )
        return EXIT_FAILURE
    print(f"acknowledged {args.rule} {args.subject}")
    return EXIT_OK


def _silence(args: argparse.Namespace, config: Config, book: AlertBook, now_ms: int) -> int:
    words = [w for w in (args.rule, args.subject) if w is not None]
    if args.all_rules:
        if len(words) > 1:
            raise UsageError("with --all-rules give at most a SUBJECT")
        rule, subject = None, (words[0] if words else None)
    elif not words:
        raise UsageError("name a RULE (or give --all-rules), and optionally a SUBJECT")
    else:
        rule, subject = args.rule, args.subject
    zone = config.site.zone
    until_ms = _until(args.until, zone) if args.until is not None else None
    if until_ms is None:
        try:
            until_ms = now_ms + round(_duration(args.duration) * 1000)
        except ValueError as exc:
            raise UsageError(f"--for: {exc}") from None
    try:
        made = book.silence(rule, subject, until_ms, _who(args), now_ms, args.note)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    what = f"{rule or 'every rule'}, {subject or 'every subject'}"
    print(made)
    print(f"silenced {what} until {_local(until_ms, zone)} (silence {made})", file=sys.stderr)
    return EXIT_OK


def _unsilence(args: argparse.Namespace, config: Config, book: AlertBook, now_ms: int) -> int:
    if not book.unsilence(args.id, now_ms):
        print(f"campus-energy: no silence {args.id} is in force", file=sys.stderr)
        return EXIT_FAILURE
    print(f"silence {args.id} ended")
    return EXIT_OK


def _silences(args: argparse.Namespace, config: Config, book: AlertBook, now_ms: int) -> int:
    found = book.silences(now_ms)
    if args.format == "json":
        print(json.dumps([_silence_document(s) for s in found], indent=2, ensure_ascii=False))
    elif found:
        zone = config.site.zone
        print(_table(SILENCE_COLUMNS, [[f(s, zone) for _, f in SILENCE_COLUMNS] for s in found]))
    else:
        print("No silences in force.")
    return EXIT_OK


Action = Callable[[argparse.Namespace, Config, AlertBook, int], int]
ACTIONS: dict[str, Action] = {
    "list": _list,
    "ack": _ack,
    "silence": _silence,
    "unsilence": _unsilence,
    "silences": _silences,
}


# -- words and times -----------------------------------------------------------------------


def _who(args: argparse.Namespace) -> str:
    if args.by is not None:
        return str(args.by)
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        raise UsageError("cannot tell your user name: give --by NAME") from None


def _until(text: str, zone: ZoneInfo) -> int:
    """Epoch ms of an ISO 8601 time; one without an offset is the site's local time (refused
    when the clocks skip it)."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise UsageError(f"--until: not an ISO 8601 time: {text[:80]!r}") from None
    if moment.tzinfo is None:
        local = moment.replace(tzinfo=zone)
        if local.astimezone(ZoneInfo("UTC")).astimezone(zone).replace(tzinfo=None) != moment:
            raise UsageError(f"--until: {text} does not exist in {zone.key} (the clocks skip it)")
        moment = local
    return datetime_ms(moment)


def _local(ms: int | None, zone: ZoneInfo) -> str:
    if ms is None:
        return "—"
    return datetime.fromtimestamp(ms / 1000, zone).strftime("%Y-%m-%d %H:%M %Z")


def _iso(ms: int | None) -> str | None:
    return None if ms is None else iso_utc(ms)


def _number(value: float | None) -> str:
    return "—" if value is None else f"{value:.4g}"


def _table(columns: Sequence[tuple[str, Any]], cells: list[list[str]]) -> str:
    heads = [name for name, _ in columns]
    widths = [max(len(r[i]) for r in [heads, *cells]) for i in range(len(heads))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in [heads, *cells]]
    return "\n".join(line.rstrip() for line in lines)


def _acked(a: AlertRow, zone: ZoneInfo) -> str:
    return "—" if a.acked_ms is None else f"{a.acked_by} {_local(a.acked_ms, zone)}"


Column = tuple[str, Callable[[Any, ZoneInfo], str]]
ALERT_COLUMNS: list[Column] = [
    ("SEVERITY", lambda a, z: a.severity),
    ("PHASE", lambda a, z: a.phase),
    ("RULE", lambda a, z: a.rule),
    ("SUBJECT", lambda a, z: a.subject),
    ("SINCE", lambda a, z: _local(a.since_ms, z)),
    ("VALUE", lambda a, z: _number(a.value)),
    ("ACKNOWLEDGED", _acked),
    ("SILENCED UNTIL", lambda a, z: _local(a.silenced_until_ms, z)),
    ("DETAIL", lambda a, z: a.detail),
]
HISTORY_COLUMNS: list[Column] = [
    ("AT", lambda h, z: _local(h.at_ms, z)),
    ("EVENT", lambda h, z: h.event + (" (silenced)" if h.suppressed else "")),
    ("SEVERITY", lambda h, z: h.severity),
    ("RULE", lambda h, z: h.rule),
    ("SUBJECT", lambda h, z: h.subject),
    ("VALUE", lambda h, z: _number(h.value)),
    ("DETAIL", lambda h, z: h.detail),
]
SILENCE_COLUMNS: list[Column] = [
    ("ID", lambda s, z: str(s.id)),
    ("RULE", lambda s, z: s.rule or EVERY),
    ("SUBJECT", lambda s, z: s.subject or EVERY),
    ("UNTIL", lambda s, z: _local(s.until_ms, z)),
    ("BY", lambda s, z: s.by),
    ("SINCE", lambda s, z: _local(s.created_ms, z)),
    ("NOTE", lambda s, z: s.note),
]


def _alert_document(a: AlertRow) -> dict[str, Any]:
    return {
        "rule": a.rule, "subject": a.subject, "kind": a.kind, "scope": a.scope,
        "phase": a.phase, "severity": a.severity, "since": _iso(a.since_ms),
        "fired": _iso(a.fired_ms), "value": a.value, "detail": a.detail,
        "acked": _iso(a.acked_ms), "acked_by": a.acked_by,
        "silenced_until": _iso(a.silenced_until_ms),
    }  # fmt: skip


def _history_document(h: HistoryRow) -> dict[str, Any]:
    return {
        "rule": h.rule, "subject": h.subject, "kind": h.kind, "scope": h.scope,
        "event": h.event, "at": _iso(h.at_ms), "severity": h.severity, "value": h.value,
        "detail": h.detail, "suppressed": h.suppressed,
    }  # fmt: skip


def _silence_document(s: Silence) -> dict[str, Any]:
    return {
        "id": s.id, "rule": s.rule, "subject": s.subject, "until": _iso(s.until_ms),
        "by": s.by, "created": _iso(s.created_ms), "note": s.note,
    }  # fmt: skip
