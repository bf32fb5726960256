"""The alerts endpoints, as a third Blueprint: what the alerts service's book holds
(`GET /api/alerts`), and the three things people do to it — acknowledge an alert, silence
alerts for a while, lift a silence.

The book is the SQLite file `alerts.state_path`, written by the alerts service on this host;
it is opened for each request and closed after it. Without the file the API answers
`configured: false` and empty lists: the service keeps its book on another host, or none.

The actions are this public API's only writes, so they are kept tight: allowed only when
`alerts.api_token_file` is set (else 403), with `Authorization: Bearer <the file's token>`
(else 401), a JSON object of at most `MAX_BODY` bytes (else 415 or 413) holding only the
fields of the action (else 400 naming the field). No CORS header is ever added to them.
The token is compared in constant time and never logged.

With `site=` (or `api.site`) in an estate of several sites, the list holds the alerts of
that site's meters, buildings and virtual meters only (a campus-wide total's alerts are
of no one site), and the silences that reach it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from flask import Blueprint, Response, request

from campus_energy.api.answers import dumps, json_response
from campus_energy.api.queries import BadParameter, NotFound, finite, iso, parse_instant
from campus_energy.api.sites import Estate, SiteView
from campus_energy.api.views import api_state, request_view
from campus_energy.config.alerts import _duration as duration_s
from campus_energy.config.alerts import read_secret
from campus_energy.errors import CampusEnergyError
from campus_energy.incidents.store import (
    MAX_NAME_CHARS,
    MAX_NOTE_CHARS,
    AlertBook,
    Silence,
    checked_text,
)
from campus_energy.incidents.values import AlertRow, HistoryRow

log = logging.getLogger("campus_energy.api")

DEFAULT_DAYS = 7
MAX_DAYS = 90
MAX_BODY = 4096  # bytes of an action's JSON body
MAX_CACHE_S = 10  # an answer is fresh this long at most, whatever api.cache_s says
ACTIONS = frozenset({"/api/alerts/ack", "/api/alerts/silence", "/api/alerts/unsilence"})
SEVERITY_RANK = {"critical": 0, "warning": 1, "info": 2}
PHASE_RANK = {"firing": 0, "pending": 1}
NOT_ENABLED = "alert actions are not enabled on this API"
_BEARER = re.compile(r"^\s*bearer\s+(\S+)\s*$", re.IGNORECASE)

alert_views = Blueprint("alerts", __name__)


class Unauthorized(CampusEnergyError):
    """401: no bearer token, or not the configured one."""

    def __init__(self, message: str, challenge: str) -> None:
        super().__init__(message)
        self.challenge = challenge  # the WWW-Authenticate header's value


class Forbidden(CampusEnergyError):
    """403: alert actions are not enabled on this API."""


class TooLarge(CampusEnergyError):
    """413: a body larger than MAX_BODY."""


class NotJSON(CampusEnergyError):
    """415: an action's body is not declared as JSON."""


class TokenUnreadable(CampusEnergyError):
    """503: `alerts.api_token_file` cannot be read (its path is logged, never the token)."""


# -- the book ------------------------------------------------------------------------------


@contextmanager
def _book() -> Iterator[AlertBook | None]:
    """The book for one request, or None when there is no book on this host."""
    path = api_state().config.alerts.state_path
    if not path.is_file():
        yield None
        return
    book = AlertBook(path)
    try:
        yield book
    finally:
        book.close()


def alert_answer(row: AlertRow) -> dict[str, Any]:
    acked = None
    if row.acked_ms is not None:
        acked = {"by": row.acked_by, "at": iso(row.acked_ms)}
    return {
        "rule": row.rule,
        "subject": row.subject,
        "kind": row.kind,
        "scope": row.scope,
        "phase": row.phase,
        "severity": row.severity,
        "since": iso(row.since_ms),
        "fired": iso(row.fired_ms),
        "value": finite(row.value),
        "detail": row.detail,
        "acked": acked,
        "silenced_until": iso(row.silenced_until_ms),
    }


def history_answer(row: HistoryRow) -> dict[str, Any]:
    return {
        "rule": row.rule,
        "subject": row.subject,
        "kind": row.kind,
        "scope": row.scope,
        "event": row.event,
        "at": iso(row.at_ms),
        "severity": row.severity,
        "value": finite(row.value),
        "detail": row.detail,
        "suppressed": row.suppressed,
    }


def silence_answer(s: Silence) -> dict[str, Any]:
    return {
        "id": s.id,
        "rule": s.rule,
        "subject": s.subject,
        "until": iso(s.until_ms),
        "by": s.by,
        "created": iso(s.created_ms),
        "note": s.note,
    }


def _order(row: AlertRow) -> tuple[int, int, int, str, str]:
    """Firing before pending, the most severe first, then the oldest."""
    phase = PHASE_RANK.get(row.phase, len(PHASE_RANK))
    severity = SEVERITY_RANK.get(row.severity, len(SEVERITY_RANK))
    return phase, severity, row.since_ms, row.rule, row.subject


def _days() -> int:
    text = request.args.get("days")
    if text is None or text == "":
        return DEFAULT_DAYS
    if not re.fullmatch(r"[0-9]{1,2}", text) or not 1 <= int(text) <= MAX_DAYS:
        raise BadParameter(
            "days", f"must be a whole number of days 1..{MAX_DAYS}, got {text[:20]!r}"
        )
    return int(text)


def _of_site(estate: Estate, view: SiteView) -> Callable[[str, str], bool]:
    """Whether an alert (its rule's scope, its subject) is the view's to list: every alert
    for the whole estate, or for a site of an estate of one; else those whose subject (or
    scope) lies in the view's site alone."""
    if view.id is None or len(estate.estate_sites) == 1:
        return lambda scope, subject: True
    alone = frozenset({view.id})
    return lambda scope, subject: (
        (estate.sites_of_name(subject) or estate.sites_of_scope(scope)) == alone
    )


def _reaches(estate: Estate, view: SiteView, silence: Silence) -> bool:
    """Whether a silence holds back alerts of the view's site (one of every rule and subject
    reaches every site)."""
    if view.id is None or len(estate.estate_sites) == 1:
        return True
    if silence.subject is not None:
        return view.id in estate.sites_of_name(silence.subject)
    if silence.rule is not None:
        return view.id in estate.sites_of_rule(silence.rule)
    return True


@alert_views.get("/api/alerts")
def alerts() -> Response:
    days = _days()
    state = api_state()
    view = request_view()
    shown = _of_site(state.estate, view)
    now = state.now_ms()
    body: dict[str, Any] = {"configured": False, "timezone": view.zone.key}
    with _book() as book:
        if book is None:
            body.update(active=[], recent=[], silences=[])
        else:
            active = sorted(book.alerts(active_only=True, now_ms=now), key=_order)
            recent = book.history(now - days * 86_400_000, now + 1)
            silences = book.silences(now)
            body.update(
                configured=True,
                active=[alert_answer(r) for r in active if shown(r.scope, r.subject)],
                recent=[  # the newest first
                    history_answer(r) for r in reversed(recent) if shown(r.scope, r.subject)
                ],
                silences=[silence_answer(s) for s in silences if _reaches(state.estate, view, s)],
            )
    data = dumps(view.answer(body))
    response = Response(data, mimetype="application/json")
    response.set_etag(hashlib.sha1(data).hexdigest()[:20])
    max_age = min(MAX_CACHE_S, int(state.config.api.cache_s))
    response.headers["Cache-Control"] = f"public, max-age={max_age}"
    response.make_conditional(request)
    return response


# -- the actions ---------------------------------------------------------------------------

_unreadable_logged = threading.Event()  # the token file's problem is logged once


def _token(path: Path) -> bytes:
    try:
        token = read_secret(path, None, {})
    except ValueError as exc:  # its words name the path and the reason, never the content
        if not _unreadable_logged.is_set():
            _unreadable_logged.set()
            log.error("alerts.api_token_file: %s; alert actions answer 503", exc)
        raise TokenUnreadable(
            "alert actions are unavailable: the API cannot read its token"
        ) from None
    _unreadable_logged.clear()
    assert token is not None
    return token.encode("utf-8")


def _authorized() -> None:
    """403 unless actions are enabled, 401 unless the request bears the token."""
    path = api_state().config.alerts.api_token_file
    if path is None:
        raise Forbidden(NOT_ENABLED)
    header = request.headers.get("Authorization")
    realm = 'Bearer realm="campus-energy alerts"'
    if header is None:
        raise Unauthorized("an alert action needs Authorization: Bearer <token>", realm)
    match = _BEARER.match(header)
    given = match.group(1).encode("utf-8", "surrogateescape") if match else b""
    if not hmac.compare_digest(given, _token(path)):
        raise Unauthorized("the bearer token is not valid", f'{realm}, error="invalid_token"')


def _body(fields: dict[str, bool]) -> dict[str, Any]:
    """The action's JSON object, after the token is checked. `fields`: name -> required."""
    _authorized()
    if request.mimetype != "application/json":
        raise NotJSON("an alert action takes a JSON body: Content-Type: application/json")
    length = request.content_length
    if length is not None and length > MAX_BODY:
        raise TooLarge(f"the body is larger than {MAX_BODY} bytes")
    data = request.stream.read(MAX_BODY + 1)
    if len(data) > MAX_BODY:
        raise TooLarge(f"the body is larger than {MAX_BODY} bytes")
    try:
        body = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):  # 4 kB of "[" nests too deep
        raise BadParameter("body", "must be a JSON object") from None
    if not isinstance(body, dict):
        raise BadParameter("body", "must be a JSON object")
    for name in sorted(body):
        if name not in fields:
            raise BadParameter(
                str(name)[:40], f"is not a field of this action ({', '.join(fields)})"
            )
    for name, required in fields.items():
        if required and name not in body:
            raise BadParameter(name, "is required")
    return body


def _text(body: dict[str, Any], name: str, most: int, default: str | None = None) -> str | None:
    """A field of text people may write (the book's rules: at most `most` characters, no
    control characters), or `default` when it is absent or null."""
    value = body.get(name)
    if value is None:
        return default
    if not isinstance(value, str):
        raise BadParameter(name, f"must be text, got {type(value).__name__}")
    try:
        return checked_text(name, value, most, empty=name == "note")
    except ValueError as exc:
        raise BadParameter(name, str(exc).removeprefix(f"{name}: ")) from None


def _required_text(body: dict[str, Any], name: str, most: int) -> str:
    value = _text(body, name, most)
    if value is None:
        raise BadParameter(name, "must be text, got null")
    return value


def _by(body: dict[str, Any]) -> str:
    return _text(body, "by", MAX_NAME_CHARS, "api") or "api"


@alert_views.post("/api/alerts/ack")
def acknowledge() -> Response:
    body = _body({"rule": True, "subject": True, "by": False})
    rule = _required_text(body, "rule", MAX_NAME_CHARS)
    subject = _required_text(body, "subject", MAX_NAME_CHARS)
    by = _by(body)
    now = api_state().now_ms()
    with _book() as book:
        if (
            book is None
            or not _served(rule, subject)
            or not book.acknowledge(rule, subject, by, now)
        ):
            raise NotFound(f"no pending or firing alert {rule[:80]!r} for {subject[:80]!r}")
    log.info("alert %s/%s acknowledged by %s over the API", rule, subject, by)
    return json_response(
        {"acknowledged": True, "rule": rule, "subject": subject, "by": by, "at": iso(now)}
    )


def _until(body: dict[str, Any], now: int) -> int:
    """`until` (ISO 8601 with a zone) or `for` (a duration: seconds, "30m", "2h", "1d")."""
    if ("until" in body) == ("for" in body):
        raise BadParameter("until", "give either until (ISO 8601) or for (a duration), not both")
    if "until" in body:
        value = body["until"]
        if not isinstance(value, str) or not value:
            raise BadParameter("until", "must be an ISO 8601 time with a zone")
        until = parse_instant("until", value, api_state().estate.whole.zone)
        assert until is not None
    else:
        value = body["for"]
        try:
            seconds = duration_s(value)
        except ValueError as exc:
            raise BadParameter("for", str(exc)) from None
        until = now + round(seconds * 1000)
    if until <= now:
        raise BadParameter("until" if "until" in body else "for", "must end after now")
    return until


@alert_views.post("/api/alerts/silence")
def silence() -> Response:
    fields = {"rule": True, "subject": False, "until": False, "for": False}
    body = _body({**fields, "by": False, "note": False})
    rule = _text(body, "rule", MAX_NAME_CHARS)
    subject = _text(body, "subject", MAX_NAME_CHARS)
    note = _text(body, "note", MAX_NOTE_CHARS, "") or ""
    by = _by(body)
    now = api_state().now_ms()
    until = _until(body, now)
    with _book() as book:
        if book is None:
            raise NotFound("no book of alerts on this host: the alerts service does not run here")
        if rule is not None and rule not in _known_rules(book):
            raise NotFound(f"unknown rule {rule[:80]!r}")
        if not _served(rule, subject):
            raise NotFound(
                f"no alerts of {'rule ' + repr(rule[:80]) if rule else 'every rule'} for "
                f"{'subject ' + repr(subject[:80]) if subject else 'every subject'} "
                "on this site's API"
            )
        try:
            found = book.silence(rule, subject, until, by, now, note)
        except ValueError as exc:
            field = _field_of(str(exc))
            raise BadParameter(field, str(exc).removeprefix(f"{field}: ")) from None
    log.info(
        "alerts of rule %s, subject %s silenced until %s by %s over the API (silence %d)",
        rule or "(every rule)", subject or "(every subject)", iso(until), by, found,
    )  # fmt: skip
    made = {"id": found, "rule": rule, "subject": subject, "until": iso(until), "by": by}
    return json_response({"silence": {**made, "created": iso(now), "note": note}})


def _served(rule: str | None, subject: str | None) -> bool:
    """Whether an API serving one site (`api.site`) may act on these alerts: the subject's
    (else the rule's scope's) site is that site alone; a silence of every rule and every
    subject is no one site's. An API of the whole estate may act on every alert."""
    config = api_state().config
    site = config.api.site
    if site is None or len(config.site_ids) == 1:
        return True
    scopes = {r.name: r.scope for r in config.alerts.rules}
    if subject is not None:
        return config.site_has_alert(site, scopes.get(rule or "", "campus"), subject)
    if rule is not None and rule in scopes:
        kind, _, name = scopes[rule].partition(":")
        return config.sites_of_name("campus" if kind == "campus" else name) == {site}
    return False


def _known_rules(book: AlertBook) -> set[str]:
    configured = {r.name for r in api_state().config.alerts.rules}
    return configured | {row.rule for row in book.alerts(active_only=False)}


def _field_of(message: str) -> str:
    """The field a ValueError of the book names, else `body`."""
    for name in ("rule", "subject", "until", "by", "note"):
        if message.startswith(name):
            return name
    return "body"


@alert_views.post("/api/alerts/unsilence")
def unsilence() -> Response:
    body = _body({"id": True})
    ident = body["id"]
    if isinstance(ident, bool) or not isinstance(ident, int) or not 1 <= ident < 2**63:
        raise BadParameter("id", "must be a silence's id (a positive whole number)")
    now = api_state().now_ms()
    with _book() as book:
        held = {x.id: x for x in book.silences(now)} if book is not None else {}
        found = held.get(ident)
        if (
            book is None
            or found is None
            or not _served(found.rule, found.subject)
            or not book.unsilence(ident, now)
        ):
            raise NotFound(f"no active silence {ident}")
    log.info("silence %d lifted over the API", ident)
    return json_response({"unsilenced": ident})
