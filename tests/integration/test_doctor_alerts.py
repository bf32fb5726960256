"""`campus-energy doctor` on the alerts service's parts, against real servers: an aiosmtpd
mail server (plain, STARTTLS with a self-signed certificate, implicit TLS), a webhook receiver,
a closed port, and a book of alerts written as the service writes it.

Doctor opens an SMTP session as the channel does and quits it — no mail arrives, the password
is never shown; it connects to a webhook and sends no request (nor shows the URL's token);
it warns about notifications waiting over an hour or given up; it tells when each report is
sent next, in the site's time.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from tests.support.net import free_port
from tests.support.smtp import Certificate, self_signed, smtp_server
from tests.support.webhook import webhook_receiver

from campus_energy import cli
from campus_energy.config import Config, parse_config
from campus_energy.core.alerts import AlertState, Transition
from campus_energy.incidents.store import AlertBook
from campus_energy.ops.doctor.checks import Context, Result, Status
from campus_energy.ops.doctor.checks.alerts import alerts

PASSWORD = "correct-horse-battery"
SENDER, TO = "energy@campus.example", "facilities@campus.example"
HOUR_MS = 3_600_000


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Certificate:
    return self_signed(tmp_path_factory.mktemp("cert"))


def mail(port: int, **settings: Any) -> dict[str, Any]:
    return {
        "name": "mail", "kind": "email", "host": "127.0.0.1", "port": port,
        "sender": SENDER, "recipients": [TO], "timeout_s": 5, **settings,
    }  # fmt: skip


def make_config(folder: Path, *channels: dict[str, Any], **extra: Any) -> Config:
    rule = {"name": "silent", "kind": "meter-silent", "channels": [c["name"] for c in channels]}
    data = {
        "site": {"name": "Doctor Campus", "timezone": "Asia/Kolkata"},
        "mqtt": {"port": free_port()},
        "bridge": {"sqlite": {"path": str(folder / "windows.db")}},
        "alerts": {"state_path": str(folder / "var" / "alerts.db"), "channels": list(channels),
                   "rules": [rule]},
        **extra,
    }  # fmt: skip
    return parse_config(data)


async def check(config: Config, now: float | None = None) -> dict[str, Result]:
    found = await alerts(Context(config, now=time.time() if now is None else now))
    return {r.title: r for r in found}


def password_file(folder: Path) -> str:
    path = folder / "smtp-password"
    path.write_text(PASSWORD + "\n", encoding="utf-8")
    path.chmod(0o600)
    return str(path)


# --- e-mail ------------------------------------------------------------------------------------


async def test_starttls_and_auth_succeed_and_no_mail_is_sent(
    tmp_path: Path, certificate: Certificate
) -> None:
    port = free_port()
    channel = mail(
        port, username="energy", password_file=password_file(tmp_path),
        ca_file=str(certificate.cert),
    )  # fmt: skip
    with smtp_server(
        port, security="starttls", certificate=certificate, users={"energy": PASSWORD}
    ) as inbox:
        found = await check(make_config(tmp_path, channel))
    result = found["mail mail"]
    assert result.status is Status.OK, result
    assert result.detail.startswith(f"127.0.0.1:{port}: connected, STARTTLS, logged in as energy")
    assert result.detail.endswith("no mail sent")
    assert inbox.messages == []
    book = found["alerts book"]
    assert book.status is Status.OK and "not created yet; its folder is writable" in book.detail
    assert "alerts outbox" not in found  # nothing to read before the service made its book


async def test_a_refused_password_fails_naming_the_keys_and_never_shows_the_password(
    tmp_path: Path, certificate: Certificate, capsys: pytest.CaptureFixture[str]
) -> None:
    port = free_port()
    wrong = tmp_path / "wrong"
    wrong.write_text("not-the-password-123\n", encoding="utf-8")
    wrong.chmod(0o600)
    channel = mail(
        port, security="tls", username="energy", password_file=str(wrong),
        ca_file=str(certificate.cert),
    )  # fmt: skip
    with smtp_server(port, security="tls", certificate=certificate, users={"energy": PASSWORD}):
        found = await check(make_config(tmp_path, channel))
    result = found["mail mail"]
    assert result.status is Status.FAIL
    assert "AuthenticationError: 535" in result.detail
    assert result.fix == (
        "check alerts.channels[0].username (energy) and the password in "
        "alerts.channels[0].password_file or password_env"
    )
    assert "not-the-password-123" not in repr(result)


async def test_an_untrusted_certificate_and_a_server_without_starttls_fail_with_the_fix(
    tmp_path: Path, certificate: Certificate
) -> None:
    tls, plain = free_port(), free_port()
    channels = [
        mail(tls, security="tls") | {"name": "untrusted"},  # the system's CAs only
        mail(plain, security="starttls") | {"name": "clear"},
    ]
    with (
        smtp_server(tls, security="tls", certificate=certificate),
        smtp_server(plain, security="none"),
    ):
        found = await check(make_config(tmp_path, *channels))
    untrusted, clear = found["mail untrusted"], found["mail clear"]
    assert untrusted.status is Status.FAIL and "TLS failed" in untrusted.detail
    assert untrusted.fix is not None and "alerts.channels[0].ca_file" in untrusted.fix
    assert clear.status is Status.FAIL
    assert clear.detail == f"127.0.0.1:{plain}: the server offers no STARTTLS"
    assert clear.fix is not None and 'alerts.channels[1].security = "tls"' in clear.fix


async def test_a_closed_port_fails_and_an_unreadable_ca_file_is_named(tmp_path: Path) -> None:
    closed = free_port()
    channels = [
        mail(closed, security="none"),
        mail(closed, ca_file=str(tmp_path / "missing-ca.pem")) | {"name": "ca"},
    ]
    found = await check(make_config(tmp_path, *channels))
    refused = found["mail mail"]
    assert refused.status is Status.FAIL
    assert refused.detail.startswith(f"127.0.0.1:{closed}: ConnectionRefusedError")
    assert refused.fix is not None and refused.fix.startswith(
        f"nothing listens on 127.0.0.1:{closed}"
    )
    missing = found["mail ca"]
    assert missing.status is Status.FAIL
    assert (
        missing.detail
        == f"alerts.channels[1].ca_file: {tmp_path / 'missing-ca.pem'} does not exist"
    )


# --- webhooks and MQTT -------------------------------------------------------------------------


async def test_a_webhook_is_connected_without_a_request_and_its_token_is_never_shown(
    tmp_path: Path,
) -> None:
    closed = free_port()
    with webhook_receiver() as receiver:
        channels = [
            {"name": "hook", "kind": "webhook", "url": receiver.url},
            {"name": "gone", "kind": "webhook", "url": f"http://127.0.0.1:{closed}/x?token=abc"},
        ]
        found = await check(make_config(tmp_path, *channels))
        assert receiver.calls == []
    hook, gone = found["webhook hook"], found["webhook gone"]
    port = receiver.url.split(":")[2].split("/")[0]
    assert hook.status is Status.OK
    assert hook.detail.startswith(f"http://127.0.0.1:{port}: resolves to 127.0.0.1, connected")
    assert gone.status is Status.FAIL and "ConnectionRefusedError" in gone.detail
    assert gone.fix is not None and f"port {closed}" in gone.fix
    assert "token" not in repr(found)


async def test_an_mqtt_channel_is_the_broker_check(tmp_path: Path) -> None:
    config = make_config(tmp_path, {"name": "ha", "kind": "mqtt", "homeassistant_discovery": True})
    result = (await check(config))["mqtt ha"]
    assert result.status is Status.FAIL  # nothing listens on the configured broker port
    assert result.detail.startswith("campus/energy/alerts/… with Home Assistant discovery through")
    assert result.fix is not None and result.fix.startswith("start the broker")


# --- the book, its outbox and the reports ------------------------------------------------------


def notice(rule: str, subject: str, at_ms: int) -> tuple[Transition, str, str, tuple[str, ...]]:
    transition = Transition(rule, subject, "firing", at_ms, "warning", None, "no reading")
    return transition, "meter-silent", "campus", ("mail",)


async def test_notifications_waiting_over_an_hour_or_given_up_are_warnings(
    tmp_path: Path,
) -> None:
    config = make_config(tmp_path, mail(free_port(), security="none"))
    now_ms = round(time.time() * 1000)
    old = now_ms - 2 * HOUR_MS
    with AlertBook(config.alerts.state_path) as book:
        firing = AlertState("silent", "m-1", "firing", old, fired_ms=old)
        book.record([firing], [notice("silent", "m-1", old)], old)
        book.record([], [notice("silent", "m-2", old)], old)
        first, second = book.due(now_ms)
        book.retry(first.id, now_ms - HOUR_MS, "e-mail channel mail: refused", now_ms + 60_000)
        book.dead(second.id, now_ms - 60_000, "e-mail channel mail: 550 no such mailbox")
    found = await check(config, now_ms / 1000)
    assert found["alerts book"].status is Status.OK
    assert found["alerts book"].detail.endswith("alerts.db: 1 alert firing, 0 pending")
    waiting = found["alerts outbox"]
    assert waiting.status is Status.WARN
    assert waiting.detail.startswith("1 notification waiting, the oldest 2 h (")
    assert waiting.detail.endswith("channel mail); its last error: e-mail channel mail: refused")
    assert waiting.fix is not None and "systemctl status campus-energy-alerts" in waiting.fix
    dead = found["alerts dead letters"]
    assert dead.status is Status.WARN
    assert "1 notification given up in the last 7 days (mail 1)" in dead.detail
    assert dead.detail.endswith("on mail: e-mail channel mail: 550 no such mailbox")
    assert dead.fix is not None and "sqlite3 -readonly" in dead.fix


async def test_each_report_says_when_it_is_sent_next_in_the_sites_time(tmp_path: Path) -> None:
    reports = [
        {"name": "monthly", "every": "month", "day": 1, "at": "07:00", "channel": "mail"},
        {"name": "weekly", "every": "week", "day": "mon", "at": "08:30", "channel": "mail",
         "recipients": ["a@campus.example", "b@campus.example"]},
    ]  # fmt: skip
    config = make_config(tmp_path, mail(free_port(), security="none"), reports=reports)
    # Saturday 14 November 2026, 12:00 in Asia/Kolkata
    now = datetime(2026, 11, 14, 6, 30, tzinfo=UTC).timestamp()
    found = await check(config, now)
    assert found["report monthly"].detail == (
        "monthly on day 1 at 07:00: next Tue 2026-12-01 07:00 IST (in 16 d 19 h), "
        "by mail to 1 recipient"
    )
    assert found["report weekly"].detail == (
        "weekly on mon at 08:30: next Mon 2026-11-16 08:30 IST (in 1 d 20 h), "
        "by mail to 2 recipients"
    )


async def test_without_rules_or_reports_there_is_nothing_to_check(tmp_path: Path) -> None:
    config = parse_config({"alerts": {"state_path": str(tmp_path / "alerts.db")}})
    assert await alerts(Context(config, now=time.time())) == []


def test_the_command_runs_the_check_and_hides_the_channels_secrets(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    closed = free_port()
    secret = password_file(tmp_path)
    config = tmp_path / "campus-energy.toml"
    config.write_text(
        f"""
[mqtt]
port = {closed}
[storage]
path = "{tmp_path / "store.db"}"
[bridge]
spool_path = "{tmp_path / "spool.db"}"
[bridge.sqlite]
path = "{tmp_path / "windows.db"}"
[alerts]
state_path = "{tmp_path / "alerts.db"}"
[[alerts.channels]]
name = "mail"
kind = "email"
host = "127.0.0.1"
port = {closed}
ca_file = "{tmp_path / PASSWORD / "ca.pem"}"
username = "energy"
password_file = "{secret}"
sender = "{SENDER}"
recipients = ["{TO}"]
[[alerts.rules]]
name = "silent"
kind = "meter-silent"
channels = ["mail"]
""",
        encoding="utf-8",
    )
    code = cli.main(["doctor", "-c", str(config), "--skip-meters"])
    out = capsys.readouterr().out
    assert code == 1
    assert "mail mail" in out and "alerts book" in out and "secret mail" in out
    assert PASSWORD not in out and "/****/ca.pem does not exist" in out
