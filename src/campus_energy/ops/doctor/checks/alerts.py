"""The alerts service, when alerts or reports are configured: its book and outbox, each
notification channel, and when each report is sent next.

- the book (`alerts.state_path`): its folder writable (the service creates it); read-only,
  the alerts firing, notifications waiting in the outbox for more than an hour and those
  dead-lettered in the last week;
- an e-mail channel: one SMTP session as the service opens it — connect, EHLO, STARTTLS or
  implicit TLS as configured (the certificate checked against the system's CAs or
  `ca_file`), AUTH when a username is set — and QUIT: no mail is sent, the password is
  never shown;
- a webhook: its host resolved and its port connected (with the TLS handshake for https,
  through the proxy of the environment as the channel goes); no request is sent, and only
  the URL's scheme, host and port are shown (its path often holds a token);
- an MQTT channel: the broker check, as the channel uses the service's broker connection;
- a report: its next sending time in the site's local time.
"""

from __future__ import annotations

import asyncio
import contextlib
import smtplib
import socket
import sqlite3
import ssl
import time
import urllib.parse
import urllib.request
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import datetime
from pathlib import Path

from campus_energy.config import Config
from campus_energy.config.alerts import ChannelConfig, ReportConfig
from campus_energy.core.timestamps import iso_utc
from campus_energy.ops.doctor.checks import (
    Context,
    Result,
    Status,
    duration,
    identity,
    plural,
    readable_file,
    readable_fix,
)
from campus_energy.ops.doctor.checks.files import access_problem, open_read_only
from campus_energy.ops.doctor.checks.services import broker

CHANNEL_TIMEOUT_S = 5.0  # per network step (connect, EHLO, TLS, AUTH): at most 4 of them
QUERY_DEADLINE_S = 5.0
OUTBOX_WARN_AGE_S = 3600.0  # a notice waiting this long: its channel has been failing
DEAD_RECENT_DAYS = 7  # dead letters younger than this are a warning
SERVICE = "campus-energy-alerts"


def wanted(config: Config) -> bool:
    """Whether the alerts service has work here: rules or reports are configured."""
    return bool(config.alerts.rules or config.reports)


def _where(config: Config, channel: ChannelConfig) -> str:
    return f"alerts.channels[{config.alerts.channels.index(channel)}]"


# --- the book and its outbox -------------------------------------------------------------------


def _book(config: Config, now: float) -> list[Result]:
    path = config.alerts.state_path.absolute()
    title = "alerts book"
    problem = access_problem(path, title, f": the alerts service cannot create {path.name}")
    if problem is not None:
        return [problem]
    if not path.exists():
        return [
            Result(
                Status.OK, title, f"{path}: not created yet; its folder is writable (the alerts "
                "service creates it when it starts)",
            )
        ]  # fmt: skip
    now_ms = round(now * 1000)
    recent_ms = now_ms - DEAD_RECENT_DAYS * 86_400_000
    try:
        with open_read_only(path, deadline_s=QUERY_DEADLINE_S) as conn:
            phases = dict(conn.execute("SELECT phase, count(*) FROM alerts GROUP BY phase"))
            waiting = conn.execute(
                "SELECT channel, count(*), min(created_ms), "
                "(SELECT last_error FROM outbox AS o WHERE o.channel = outbox.channel AND "
                "o.delivered_ms IS NULL AND o.dead_ms IS NULL AND o.last_error IS NOT NULL "
                "ORDER BY o.next_attempt_ms DESC LIMIT 1) "
                "FROM outbox WHERE delivered_ms IS NULL AND dead_ms IS NULL "
                "GROUP BY channel ORDER BY min(created_ms)"
            ).fetchall()
            dead = conn.execute(
                "SELECT channel, count(*), max(dead_ms), "
                "(SELECT last_error FROM outbox AS o WHERE o.channel = outbox.channel AND "
                "o.dead_ms >= ? ORDER BY o.dead_ms DESC LIMIT 1) "
                "FROM outbox WHERE dead_ms >= ? GROUP BY channel ORDER BY channel",
                (recent_ms, recent_ms),
            ).fetchall()
    except sqlite3.Error as exc:
        return [
            Result(
                Status.FAIL, title, f"cannot read {path}: {exc}",
                f"stop the alerts service (systemctl stop {SERVICE}), move {path} aside and "
                "start it again: it writes a new book (the alerts' history is in the old one)",
            )
        ]  # fmt: skip
    firing, pending = phases.get("firing", 0), phases.get("pending", 0)
    held = f"{path}: {plural(firing, 'alert')} firing, {pending} pending"
    found = [Result(Status.OK, title, held), _outbox(waiting, now_ms)]
    if dead:
        found.append(_dead(dead, path))
    return found


def _outbox(waiting: list[tuple[str, int, int, str | None]], now_ms: int) -> Result:
    title = "alerts outbox"
    if not waiting:
        return Result(Status.OK, title, "empty: every notification is delivered")
    count = sum(n for _, n, _, _ in waiting)
    channel, _, oldest_ms, error = waiting[0]
    age_s = max(0.0, (now_ms - oldest_ms) / 1000)
    detail = (
        f"{plural(count, 'notification')} waiting, the oldest {duration(age_s)} "
        f"({iso_utc(oldest_ms)}, channel {channel})"
    )
    if age_s <= OUTBOX_WARN_AGE_S:
        return Result(Status.OK, title, detail)
    if error:
        detail += f"; its last error: {error}"
    return Result(
        Status.WARN,
        title,
        detail,
        f"they are kept and go out once channel {channel} accepts them: see the line for "
        f"{channel}, and check that the service runs: systemctl status {SERVICE}",
    )


def _dead(dead: list[tuple[str, int, int, str | None]], path: Path) -> Result:
    count = sum(n for _, n, _, _ in dead)
    channels = ", ".join(f"{channel} {n}" for channel, n, _, _ in dead)
    channel, _, last_ms, error = max(dead, key=lambda row: row[2])
    detail = (
        f"{plural(count, 'notification')} given up in the last {DEAD_RECENT_DAYS} days "
        f"({channels}); the last at {iso_utc(last_ms)} on {channel}: {error or 'no error kept'}"
    )
    return Result(
        Status.WARN,
        "alerts dead letters",
        detail,
        "they are not sent again: correct what the error names (recipients, credentials, the "
        f"URL) — see the channel's line; list them: sqlite3 -readonly {path} \"SELECT channel, "
        'rule, subject, event, last_error FROM outbox WHERE dead_ms IS NOT NULL"',
    )


# --- e-mail -------------------------------------------------------------------------------------


class _NoStartTLS(Exception):
    """The server offers no STARTTLS (the channel would refuse to send in clear)."""


class _NoAuth(Exception):
    """The server offers no AUTH (after TLS), but the channel has a username."""


def _smtp_session(channel: ChannelConfig, password: str | None) -> list[str]:
    """Connect, EHLO, secure, log in and QUIT, as the channel does; what was done."""
    assert channel.host is not None
    context = ssl.create_default_context(
        cafile=str(channel.ca_file) if channel.ca_file is not None else None
    )
    done = []
    client: smtplib.SMTP
    if channel.security == "tls":
        client = smtplib.SMTP_SSL(
            channel.host, channel.smtp_port, timeout=CHANNEL_TIMEOUT_S, context=context
        )
        done.append("TLS")
    else:
        client = smtplib.SMTP(channel.host, channel.smtp_port, timeout=CHANNEL_TIMEOUT_S)
    with client:  # QUIT on the way out
        client.ehlo()
        if channel.security == "starttls":
            if not client.has_extn("starttls"):
                raise _NoStartTLS
            client.starttls(context=context)
            client.ehlo()
            done.append("STARTTLS")
        if channel.username is not None:
            if not client.has_extn("auth"):
                raise _NoAuth
            client.login(channel.username, password or "")
            done.append(f"logged in as {channel.username}")
    return done


def _mail_fixes(channel: ChannelConfig, key: str) -> tuple[tuple[type[BaseException], str], ...]:
    """What went wrong -> what to do, the first that matches (subclasses first)."""
    port = channel.smtp_port
    where = f"{channel.host}:{port}"
    return (
        (socket.gaierror, f"correct {key}.host (the name does not resolve), or check DNS"),
        (
            ConnectionRefusedError,
            f"nothing listens on {where}: correct {key}.host and {key}.port (587 for starttls, "
            "465 for tls, 25 for none), or start the mail server",
        ),
        (
            TimeoutError,
            f"no answer from {where} within {CHANNEL_TIMEOUT_S:g} s: check the address and a "
            "firewall (outgoing mail ports are often blocked), and that security matches the "
            "port (tls: 465, starttls: 587)",
        ),
        (
            ssl.SSLCertVerificationError,
            f"the certificate of {channel.host} is not trusted: set {key}.ca_file to the CA "
            "that signed it (PEM), or use the host name its certificate names",
        ),
        (
            ssl.SSLError,
            f"check {key}.security: 'tls' is TLS from the first byte (port 465), 'starttls' "
            "upgrades plain SMTP (port 587)",
        ),
        (
            _NoStartTLS,
            f'the server offers no STARTTLS: set {key}.security = "tls" when it has a TLS '
            'port (465), or "none" only on a network you trust',
        ),
        (
            _NoAuth,
            f"the server offers no AUTH here: remove {key}.username and {key}.password_file "
            "if it relays without one, or use its submission port (587)",
        ),
        (
            smtplib.SMTPAuthenticationError,
            f"check {key}.username ({channel.username}) and the password in "
            f"{key}.password_file or password_env",
        ),
        (smtplib.SMTPException, f"check {key} (host, port, security) against the mail server"),
        (OSError, f"check {key}.host and {key}.port, and the network to {where}"),
    )


def _mail_problem(exc: BaseException) -> str:
    if isinstance(exc, _NoStartTLS):
        return "the server offers no STARTTLS"
    if isinstance(exc, _NoAuth):
        return "the server offers no AUTH"
    if isinstance(exc, smtplib.SMTPResponseException):
        answer = exc.smtp_error
        text = answer.decode(errors="replace") if isinstance(answer, bytes) else str(answer)
        what = type(exc).__name__.removeprefix("SMTP")
        return f"{what}: {exc.smtp_code} {' '.join(text.split())}"
    if isinstance(exc, ssl.SSLError):
        return f"TLS failed: {exc.reason or exc}"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


async def _mail(ctx: Context, channel: ChannelConfig) -> Result:
    config, key = ctx.config, _where(ctx.config, channel)
    title = f"mail {channel.name}"
    unreadable = _unreadable_ca(channel, key, title)
    if unreadable is not None:
        return unreadable
    where = f"{channel.host}:{channel.smtp_port}"
    password = config.channel_secret(channel.name)
    started = time.monotonic()
    try:
        done = await asyncio.to_thread(_smtp_session, channel, password)
    except (OSError, smtplib.SMTPException, _NoStartTLS, _NoAuth) as exc:
        fix = next(f for kind, f in _mail_fixes(channel, key) if isinstance(exc, kind))
        problem = _mail_problem(exc)
        if password:
            problem = problem.replace(password, "****")
        return Result(Status.FAIL, title, f"{where}: {problem}", fix)
    took_ms = (time.monotonic() - started) * 1000
    steps = ", ".join(["connected", *done])
    return Result(Status.OK, title, f"{where}: {steps} in {took_ms:.0f} ms; no mail sent")


def _unreadable_ca(channel: ChannelConfig, key: str, title: str) -> Result | None:
    if channel.ca_file is None:
        return None
    who = identity()
    problem = readable_file(f"{key}.ca_file", channel.ca_file, who)
    if problem is None:
        return None
    return Result(Status.FAIL, title, problem, readable_fix(channel.ca_file, who))


# --- webhooks ------------------------------------------------------------------------------------


def _proxy_for(scheme: str, host: str) -> tuple[str, int] | None:
    """The proxy the channel's urllib goes through for this URL (from the environment)."""
    proxy = urllib.request.getproxies().get(scheme)
    if proxy is None or urllib.request.proxy_bypass(host):
        return None
    parsed = urllib.parse.urlsplit(proxy if "//" in proxy else f"http://{proxy}")
    if parsed.hostname is None:
        return None
    return parsed.hostname, parsed.port or (443 if parsed.scheme == "https" else 80)


async def _connect(host: str, port: int, context: ssl.SSLContext | None) -> str:
    """Resolve and connect (and shake hands when `context`); the address connected to."""
    loop = asyncio.get_running_loop()
    found = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    address = str(found[0][4][0])
    _, writer = await asyncio.open_connection(
        host, port, ssl=context, server_hostname=host if context is not None else None
    )
    writer.close()
    with contextlib.suppress(OSError, TimeoutError):  # closed from our side all the same
        await asyncio.wait_for(writer.wait_closed(), CHANNEL_TIMEOUT_S)
    return address


async def _webhook(ctx: Context, channel: ChannelConfig) -> Result:
    key = _where(ctx.config, channel)
    title = f"webhook {channel.name}"
    unreadable = _unreadable_ca(channel, key, title)
    if unreadable is not None:
        return unreadable
    assert channel.url is not None  # the configuration requires it
    url = urllib.parse.urlsplit(channel.url)
    host = url.hostname or ""
    try:
        port = url.port or (443 if url.scheme == "https" else 80)
    except ValueError:
        return Result(Status.FAIL, title, f"{key}.url has no valid port", f"correct {key}.url")
    shown = f"{url.scheme}://{host}:{port}"
    proxy = _proxy_for(url.scheme, host)
    context = None
    if url.scheme == "https" and proxy is None:
        cafile = str(channel.ca_file) if channel.ca_file is not None else None
        context = ssl.create_default_context(cafile=cafile)
    target = proxy or (host, port)
    via = f" through the proxy {target[0]}:{target[1]}" if proxy is not None else ""
    started = time.monotonic()
    try:
        address = await asyncio.wait_for(_connect(*target, context), CHANNEL_TIMEOUT_S)
    except socket.gaierror:
        return Result(
            Status.FAIL, title, f"{shown}{via}: {target[0]} does not resolve",
            f"correct the host of {key}.url, or check DNS",
        )  # fmt: skip
    except ssl.SSLCertVerificationError as exc:
        return Result(
            Status.FAIL, title, f"{shown}: the certificate is not trusted: {exc.verify_message}",
            f"set {key}.ca_file to the CA that signed the receiver's certificate (PEM), or use "
            "the host name the certificate names",
        )  # fmt: skip
    except (OSError, TimeoutError) as exc:
        why = "no answer" if isinstance(exc, TimeoutError) else f"{type(exc).__name__}: {exc}"
        return Result(
            Status.FAIL, title, f"{shown}{via}: {why}",
            f"check that the receiver of {key}.url runs and listens on port {port}, and a "
            "firewall between",
        )  # fmt: skip
    took_ms = (time.monotonic() - started) * 1000
    what = "TLS certificate valid" if context is not None else "connected"
    return Result(
        Status.OK,
        title,
        f"{shown}{via}: resolves to {address}, {what} in {took_ms:.0f} ms; no request sent",
    )


async def _mqtt(ctx: Context, channel: ChannelConfig) -> Result:
    title = f"mqtt {channel.name}"
    found = (await broker(ctx))[0]
    topics = f"{ctx.config.mqtt.topic_prefix}/alerts/…"
    if channel.homeassistant_discovery:
        topics += " with Home Assistant discovery"
    return replace(found, title=title, detail=f"{topics} through {found.detail}")


CHANNEL_CHECKS: dict[str, Callable[[Context, ChannelConfig], Awaitable[Result]]] = {
    "email": _mail,
    "webhook": _webhook,
    "mqtt": _mqtt,
}


# --- reports -------------------------------------------------------------------------------------


def _schedule(report: ReportConfig) -> str:
    if report.every == "week":
        return f"weekly on {report.day} at {report.at}"
    day = "the last day" if report.day == "last" else f"day {report.day}"
    return f"monthly on {day} at {report.at}"


def _report(config: Config, report: ReportConfig, now: float) -> Result:
    title = f"report {report.name}"
    try:
        from campus_energy.core.schedules import next_run_ms
    except ImportError:  # a version without schedules: the sending time is not known here
        return Result(Status.OK, title, f"{_schedule(report)} by channel {report.channel}")
    zone = config.report_zone(report.site, report.building)  # as the service sends it
    now_ms = round(now * 1000)
    at_ms = next_run_ms(report.every, report.day, report.minute_of_day, zone, now_ms)
    local = datetime.fromtimestamp(at_ms / 1000, zone)
    channel = next(c for c in config.alerts.channels if c.name == report.channel)
    recipients = len(report.recipients or channel.recipients)
    return Result(
        Status.OK,
        title,
        f"{_schedule(report)}: next {local:%a %Y-%m-%d %H:%M} {local.tzname()} (in "
        f"{duration((at_ms - now_ms) / 1000)}), by {report.channel} to "
        f"{plural(recipients, 'recipient')}",
    )


# --- the check ------------------------------------------------------------------------------------


async def alerts(ctx: Context) -> list[Result]:
    """The book, every channel (side by side) and every report; nothing without rules or
    reports."""
    config = ctx.config
    if not wanted(config):
        return []
    channels = [CHANNEL_CHECKS[c.kind](ctx, c) for c in config.alerts.channels]
    found, reached = await asyncio.gather(
        asyncio.to_thread(_book, config, ctx.now), asyncio.gather(*channels)
    )
    return [*found, *reached, *(_report(config, r, ctx.now) for r in config.reports)]
