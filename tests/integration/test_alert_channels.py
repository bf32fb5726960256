"""The notification channels against real servers, and the outbox that drives them.

E-mail against aiosmtpd (plain, STARTTLS, implicit TLS, AUTH), the webhook against an HTTP
receiver that checks signatures, MQTT against a private Mosquitto; the outbox over the real
book of alerts (SQLite). Passwords and secrets never show in errors or logs.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from tests.support.config import config_data, meter_at, tcp_bus
from tests.support.mqtt import require_mosquitto, retained_messages
from tests.support.net import free_port
from tests.support.smtp import Certificate, Inbox, self_signed, smtp_server
from tests.support.waiting import eventually
from tests.support.webhook import webhook_receiver

from campus_energy.config import Config, parse_config
from campus_energy.core.alerts import Transition
from campus_energy.demo.mosquitto import Mosquitto
from campus_energy.errors import AlertBookError
from campus_energy.incidents.channels import (
    EmailChannel,
    MqttChannel,
    WebhookChannel,
    email_channel,
    max_attempts,
    open_channels,
)
from campus_energy.incidents.outbox import DeliveryCounts, Watches, deliver_due, retry_delay_s
from campus_energy.incidents.store import AlertBook
from campus_energy.incidents.values import (
    Channel,
    Delivery,
    DeliveryError,
    DeliveryRefused,
    Notice,
)

NOW = 1_767_225_600_000  # 2026-01-01T00:00:00Z
SITE = "Example Campus"
PASSWORD = "pa55-w0rd-never-shown"
SECRET = "hook-s3cret-never-shown"
TOKEN = "token=abc"  # in the webhook URL's query: never in an error either
OUTBOX_LOG = "campus_energy.incidents.outbox"


def notice(
    event: str = "firing", at_ms: int = NOW, subject: str = "ece-f1-001", rule: str = "silent"
) -> Notice:
    transition = Transition(
        rule, subject, event, at_ms, "warning", 360.0, "no reading for 6 min (status offline)"
    )
    return Notice(transition, "meter-silent", "building:ECE", SITE)


def config_with(
    channels: list[dict[str, Any]], *, mqtt_port: int = 1883, environ: dict[str, str] | None = None
) -> Config:
    data = config_data(
        [tcp_bus()],
        [meter_at("ece-f1-001", "plant", 1, "eastron-sdm120", building="ECE")],
        site={"name": SITE, "timezone": "Asia/Kolkata", "buildings": [{"name": "ECE"}]},
        mqtt={"host": "127.0.0.1", "port": mqtt_port},
        alerts={"channels": channels},
    )
    return parse_config(data, environ=environ or {})


def mail_settings(port: int, **extra: Any) -> dict[str, Any]:
    return {
        "name": "mail",
        "kind": "email",
        "host": "127.0.0.1",
        "port": port,
        "security": "none",
        "sender": "energy@campus.example",
        "recipients": ["facilities@campus.example", "ops@campus.example"],
        "timeout_s": 5,
        **extra,
    }


def outbox(path: Path) -> list[dict[str, Any]]:
    """The book's outbox rows, as the file holds them."""
    with sqlite3.connect(path) as conn:
        conn.row_factory = sqlite3.Row
        rows = conn.execute(
            "SELECT id, key, channel, attempts, last_error, next_attempt_ms, delivered_ms, "
            "dead_ms FROM outbox ORDER BY id"
        )
        found = [dict(row) for row in rows]
    conn.close()
    return found


def enqueue(book: AlertBook, *notices: Notice, channels: tuple[str, ...]) -> None:
    book.record(
        [],
        [(n.transition, n.kind, n.scope, channels) for n in notices],
        NOW,
        site=SITE,
    )


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Certificate:
    return self_signed(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def book(tmp_path: Path) -> Iterator[AlertBook]:
    with AlertBook(tmp_path / "alerts.db") as opened:
        yield opened


# -- e-mail ----------------------------------------------------------------------------------


async def test_a_notice_is_a_two_part_mail_whose_id_comes_from_its_key() -> None:
    port = free_port()
    channel = open_channels(config_with([mail_settings(port)]))["mail"]
    with smtp_server(port) as inbox:
        await channel.send(notice())
        await channel.send(notice())  # a retry after a crash: the same Message-ID
        await channel.send(notice("resolved", NOW + 60_000))
    first, again, resolved = (r.message for r in inbox.messages)
    assert first["Subject"] == f"[FIRING warning] silent ece-f1-001 — {SITE}"
    assert first["From"] == "energy@campus.example"
    assert first["To"] == "facilities@campus.example, ops@campus.example"
    assert first["Date"].datetime == datetime(2026, 1, 1, tzinfo=UTC)  # when it happened
    assert first["Message-ID"] == again["Message-ID"] != resolved["Message-ID"]
    assert first["Message-ID"].endswith("@campus.example>")
    assert inbox.messages[0].recipients == ["facilities@campus.example", "ops@campus.example"]
    assert first.get_content_type() == "multipart/alternative"
    plain = first.get_body(("plain",))
    rich = first.get_body(("html",))
    assert plain is not None and rich is not None
    text, markup = plain.get_content(), rich.get_content()
    for said in ("no reading for 6 min (status offline)", "2026-01-01T00:00:00.000Z", "360"):
        assert said in text and said in markup
    assert "meter-silent, scope building:ECE" in text
    assert "<table>" in markup and "&lt;" not in text


@pytest.mark.parametrize(
    ("security", "mechanism"), [("starttls", "PLAIN"), ("starttls", "LOGIN"), ("tls", "PLAIN")]
)
async def test_mail_goes_over_tls_with_auth(
    security: str, mechanism: str, certificate: Certificate, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()
    settings = mail_settings(
        port,
        security=security,
        username="energy",
        password_env="SMTP_PASSWORD",
        ca_file=str(certificate.cert),
    )
    config = config_with([settings], environ={"SMTP_PASSWORD": PASSWORD})
    channel = open_channels(config)["mail"]
    others = tuple({"PLAIN", "LOGIN"} - {mechanism})
    with smtp_server(
        port,
        security=security,
        certificate=certificate,
        users={"energy": PASSWORD},
        exclude=others,
    ) as inbox:
        await channel.send(notice())
    assert [r.login for r in inbox.messages] == ["energy"]
    assert PASSWORD not in repr(channel) and PASSWORD not in caplog.text


async def test_a_wrong_password_is_refused_for_good_and_never_shown(
    certificate: Certificate, caplog: pytest.LogCaptureFixture, book: AlertBook
) -> None:
    caplog.set_level(logging.DEBUG)
    port = free_port()
    settings = mail_settings(
        port,
        security="starttls",
        username="energy",
        password_env="SMTP_PASSWORD",
        ca_file=str(certificate.cert),
    )
    config = config_with([settings], environ={"SMTP_PASSWORD": PASSWORD})
    channels = open_channels(config)
    enqueue(book, notice(), channels=("mail",))
    with smtp_server(
        port, security="starttls", certificate=certificate, users={"energy": "another"}
    ) as inbox:
        with pytest.raises(DeliveryRefused) as refused:
            await channels["mail"].send(notice())
        counts = await deliver_due(book, channels, NOW, max_attempts=max_attempts(config))
    assert not inbox.messages
    assert "e-mail channel mail (127.0.0.1:" in str(refused.value)
    assert "535" in str(refused.value)
    assert (counts.sent, counts.retried, counts.dead) == (0, 0, 1)
    [row] = outbox(book.path)
    assert row["dead_ms"] == NOW and "535" in row["last_error"]
    for shown in (str(refused.value), caplog.text, row["last_error"]):
        assert PASSWORD not in shown


async def test_an_untrusted_certificate_or_a_server_without_starttls_is_not_used(
    certificate: Certificate,
) -> None:
    port = free_port()
    untrusting = EmailChannel(
        "mail", host="127.0.0.1", port=port, sender="a@b.example", recipients=["c@d.example"]
    )
    starttls = smtp_server(port, security="starttls", certificate=certificate)
    with starttls, pytest.raises(DeliveryError, match="TLS failed") as failed:
        await untrusting.send(notice())
    assert not isinstance(failed.value, DeliveryRefused)
    plain = smtp_server(port)  # plain only: STARTTLS is required, not hoped for
    with plain as inbox, pytest.raises(DeliveryError, match="offers no STARTTLS"):
        await untrusting.send(notice())
    assert not inbox.messages


async def test_a_refused_recipient_is_refused_for_good() -> None:
    port = free_port()
    channel = open_channels(config_with([mail_settings(port)]))["mail"]
    one_refused = smtp_server(port, inbox=Inbox(refuse={"ops@campus.example"}))
    with one_refused as inbox, pytest.raises(DeliveryRefused, match=r"refused: ops@\S+: 550"):
        await channel.send(notice())
    assert [r.recipients for r in inbox.messages] == [["facilities@campus.example"]]
    everyone = Inbox(refuse={"ops@campus.example", "facilities@campus.example"})
    with smtp_server(port, inbox=everyone), pytest.raises(DeliveryRefused, match="550"):
        await channel.send(notice())


async def test_mail_waits_out_a_server_outage_in_the_outbox(
    book: AlertBook, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, OUTBOX_LOG)
    port = free_port()
    config = config_with([mail_settings(port)])
    channels, attempts, watches = open_channels(config), max_attempts(config), Watches()
    enqueue(book, notice(), notice("resolved", NOW + 1), channels=("mail",))

    counts = await deliver_due(book, channels, NOW, max_attempts=attempts, watches=watches)
    assert (counts.sent, counts.retried, counts.dead, counts.held) == (0, 1, 0, 1)
    first, second = outbox(book.path)
    assert first["attempts"] == 1 and "ConnectionRefused" in first["last_error"]
    assert second["attempts"] == 0  # held back behind the first: the order stays
    assert NOW + 4_500 <= first["next_attempt_ms"] <= NOW + 5_000

    counts = await deliver_due(book, channels, NOW + 1_000, max_attempts=attempts, watches=watches)
    assert counts == DeliveryCounts()  # the book holds the second back behind the first
    assert outbox(book.path)[1]["attempts"] == 0

    later = first["next_attempt_ms"]
    for _ in range(5):  # e-mail never gives up
        counts = await deliver_due(book, channels, later, max_attempts=attempts, watches=watches)
        assert counts.retried == 1
        later = outbox(book.path)[0]["next_attempt_ms"]
    assert outbox(book.path)[0]["attempts"] == 6

    with smtp_server(port) as inbox:
        counts = await deliver_due(book, channels, later, max_attempts=attempts, watches=watches)
    assert (counts.sent, counts.retried, counts.dead) == (2, 0, 0)
    assert [r.message["Subject"].split("]")[0] for r in inbox.messages] == [
        "[FIRING warning",
        "[RESOLVED warning",
    ]
    assert all(row["delivered_ms"] == later for row in outbox(book.path))
    said = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == OUTBOX_LOG]
    assert [level for level, _ in said] == ["ERROR", "INFO"]  # once down, once back
    assert said[0][1].startswith("alert channel mail: e-mail channel mail (127.0.0.1:")
    assert "recovered" in said[1][1] and "6 failed attempts" in said[1][1]


async def test_a_report_message_gets_the_channel_s_sender_and_recipients() -> None:
    port = free_port()
    config = config_with([mail_settings(port)])
    report = EmailMessage()
    report["Subject"] = "Energy report, December 2025"
    report["To"] = "dean@campus.example"
    report.set_content("See the attachments.")
    report.add_attachment(b"meter,kwh\nece-f1-001,12.5\n", "text", "csv", filename="dec.csv")
    with smtp_server(port) as inbox:
        await email_channel(config, "mail").send_message(report)
    [received] = inbox.messages
    assert received.recipients == ["dean@campus.example"]
    got = received.message
    assert got["From"] == "energy@campus.example" and got["Subject"] == report["Subject"]
    assert got["Date"] and got["Message-ID"]
    [attachment] = got.iter_attachments()
    assert attachment.get_filename() == "dec.csv"
    assert report["From"] is None and report["Message-ID"] is None  # the caller's is left alone
    with pytest.raises(KeyError):
        email_channel(config, "ha")


# -- webhook ---------------------------------------------------------------------------------


def hook_settings(url: str, **extra: Any) -> dict[str, Any]:
    settings = {"name": "hook", "kind": "webhook", "url": url, "timeout_s": 5}
    return {**settings, "secret_env": "HOOK_SECRET", **extra}


async def test_a_signed_post_is_retried_after_a_500_then_delivered(
    book: AlertBook, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with webhook_receiver(secret=SECRET, answers=[500, 200]) as hook:
        config = config_with([hook_settings(hook.url)], environ={"HOOK_SECRET": SECRET})
        channels, attempts, watches = open_channels(config), max_attempts(config), Watches()
        enqueue(book, notice(), channels=("hook",))
        counts = await deliver_due(book, channels, NOW, max_attempts=attempts, watches=watches)
        assert (counts.sent, counts.retried, counts.dead) == (0, 1, 0)
        [row] = outbox(book.path)
        assert "HTTP 500" in row["last_error"]
        counts = await deliver_due(
            book, channels, row["next_attempt_ms"], max_attempts=attempts, watches=watches
        )
        assert (counts.sent, counts.retried, counts.dead) == (1, 0, 0)
    failed, delivered = hook.calls
    assert failed.signed and delivered.signed and delivered.status == 200
    key = notice().key
    for call in hook.calls:
        assert call.headers["X-Campus-Energy-Delivery"] == key  # the idempotency key
        assert call.headers["Content-Type"] == "application/json"
        assert call.headers["User-Agent"].startswith("campus-energy/")
        assert call.path == "/hooks/energy?token=abc"
    assert delivered.json() == {
        "schema": 1,
        "key": key,
        "event": "firing",
        "rule": "silent",
        "kind": "meter-silent",
        "scope": "building:ECE",
        "subject": "ece-f1-001",
        "severity": "warning",
        "at": "2026-01-01T00:00:00.000Z",
        "value": 360.0,
        "detail": "no reading for 6 min (status offline)",
        "site": SITE,
    }
    assert delivered.body == json.dumps(delivered.json(), separators=(",", ":")).encode()
    [row] = outbox(book.path)
    assert row["delivered_ms"] is not None and row["attempts"] == 1
    for shown in (caplog.text, row["last_error"]):
        assert SECRET not in shown and TOKEN not in shown


async def test_a_wrong_secret_or_a_stale_timestamp_fails_the_receiver_s_check() -> None:
    with webhook_receiver(secret=SECRET) as hook:
        wrong = WebhookChannel("hook", url=hook.url, secret="not-the-secret")
        stale = WebhookChannel("hook", url=hook.url, secret=SECRET, clock=lambda: time.time() - 900)
        for channel in (wrong, stale):
            with pytest.raises(DeliveryRefused, match="HTTP 401") as refused:
                await channel.send(notice())
            assert SECRET not in str(refused.value) and TOKEN not in str(refused.value)
    assert [c.signed for c in hook.calls] == [False, False]


async def test_a_404_is_dead_at_once_and_a_redirect_is_not_followed(book: AlertBook) -> None:
    with webhook_receiver(answers=[404]) as hook:
        config = config_with([hook_settings(hook.url, secret_env=None)])
        channels = open_channels(config)
        enqueue(book, notice(), channels=("hook",))
        counts = await deliver_due(book, channels, NOW, max_attempts=max_attempts(config))
    assert (counts.sent, counts.retried, counts.dead) == (0, 0, 1)
    [row] = outbox(book.path)
    assert row["dead_ms"] == NOW and "HTTP 404" in row["last_error"]
    assert "X-Campus-Energy-Signature" not in hook.calls[0].headers  # no secret: unsigned
    with webhook_receiver(answers=[302]) as hook:
        with pytest.raises(DeliveryRefused, match="HTTP 302"):
            await WebhookChannel("hook", url=hook.url).send(notice())
        assert len(hook.calls) == 1
    with webhook_receiver(answers=[429]) as hook:
        with pytest.raises(DeliveryError) as busy:
            await WebhookChannel("hook", url=hook.url).send(notice())
        assert not isinstance(busy.value, DeliveryRefused)


@pytest.mark.parametrize("status", [404, 503])
async def test_an_error_page_quoting_the_url_never_shows_its_token(
    book: AlertBook, caplog: pytest.LogCaptureFixture, status: int
) -> None:
    caplog.set_level(logging.DEBUG)
    with webhook_receiver(answers=[status], echo_path=True) as hook:
        config = config_with([hook_settings(hook.url, secret_env=None, max_attempts=1)])
        channels = open_channels(config)
        enqueue(book, notice(), channels=("hook",))
        counts = await deliver_due(book, channels, NOW, max_attempts=max_attempts(config))
        with pytest.raises(DeliveryError) as failed:
            await channels["hook"].send(notice())
        endpoint = hook.url.split("/hooks")[0]
    assert counts.dead == 1 and all(TOKEN in call.path for call in hook.calls)
    [row] = outbox(book.path)
    shown = [row["last_error"], str(failed.value), *(r.getMessage() for r in caplog.records)]
    assert [text for text in shown if TOKEN in text or "/hooks/energy" in text] == []
    reason = "Not Found" if status == 404 else "Service Unavailable"
    assert str(failed.value) == f"webhook channel hook ({endpoint}): HTTP {status} {reason}"
    assert any(f"HTTP {status}" in text for text in caplog.messages)


async def test_an_unreachable_webhook_is_retried_until_its_attempts_run_out(
    book: AlertBook,
) -> None:
    url = f"http://127.0.0.1:{free_port()}/hook"
    config = config_with([hook_settings(url, secret_env=None, max_attempts=3)])
    channels, attempts, watches = open_channels(config), max_attempts(config), Watches()
    assert attempts == {"hook": 3}
    enqueue(book, notice(), channels=("hook",))
    now, found = NOW, []
    for _ in range(3):
        counts = await deliver_due(book, channels, now, max_attempts=attempts, watches=watches)
        found.append((counts.retried, counts.dead))
        now = outbox(book.path)[0]["next_attempt_ms"]
    assert found == [(1, 0), (1, 0), (0, 1)]
    [row] = outbox(book.path)
    assert row["dead_ms"] is not None and "gave up after 3 attempts" in row["last_error"]
    assert "Connection refused" in row["last_error"]


# -- MQTT ------------------------------------------------------------------------------------


async def test_alert_states_are_retained_with_home_assistant_discovery(mosquitto: Any) -> None:
    settings = {"name": "ha", "kind": "mqtt", "homeassistant_discovery": True}
    config = config_with([settings], mqtt_port=mosquitto.port)
    channel = open_channels(config)["ha"]
    assert isinstance(channel, MqttChannel) and channel.client_id == "campus-energy-alerts-notify"
    building = "ECE Block/A+#"
    try:
        await channel.send(notice())
        await channel.send(notice(subject=building, rule="after-hours"))
        await channel.send(notice("renotify", NOW + 3_600_000))
        await channel.send(notice("resolved", NOW + 60_000, subject=building, rule="after-hours"))
    finally:
        await channel.close()
    found = await retained_messages(
        mosquitto.port, ["campus/energy/alerts/#", "homeassistant/#"], "campus/energy/alerts/end"
    )
    states = {t: json.loads(p) for t, p in found.items() if t.startswith("campus/")}
    configs = {t: json.loads(p) for t, p in found.items() if t.startswith("homeassistant/")}
    meter_topic = "campus/energy/alerts/silent/ece-f1-001"
    [building_topic] = [t for t in states if t != meter_topic]
    assert building_topic.startswith("campus/energy/alerts/after-hours/ece_block_a-")
    assert building_topic.count("/") == 4 and "+" not in building_topic
    assert states[meter_topic] == {
        "state": "firing",
        "event": "renotify",
        "severity": "warning",
        "since": "2026-01-01T00:00:00.000Z",  # the firing's, kept by the re-notify
        "at": "2026-01-01T01:00:00.000Z",
        "value": 360.0,
        "detail": "no reading for 6 min (status offline)",
        "rule": "silent",
        "kind": "meter-silent",
        "scope": "building:ECE",
        "subject": "ece-f1-001",
        "site": SITE,
    }
    assert states[building_topic]["state"] == "resolved"
    assert states[building_topic]["subject"] == building
    assert len(configs) == 2
    meter_config = configs[
        "homeassistant/binary_sensor/campus_energy_alerts/silent__ece-f1-001/config"
    ]
    assert meter_config["device_class"] == "problem"
    assert meter_config["state_topic"] == meter_config["json_attributes_topic"] == meter_topic
    assert meter_config["payload_on"] == "ON" and meter_config["payload_off"] == "OFF"
    assert "'ON' if value_json.state == 'firing'" in meter_config["value_template"]
    unique_ids = {c["unique_id"] for c in configs.values()}
    assert len(unique_ids) == 2
    devices = [json.dumps(c["device"], sort_keys=True) for c in configs.values()]
    assert devices[0] == devices[1]  # one device holds every alert of the site
    assert SITE in meter_config["device"]["name"]


async def test_the_mqtt_channel_reconnects_on_the_next_send(tmp_path: Path) -> None:
    require_mosquitto()
    port = free_port()
    config = config_with([{"name": "ha", "kind": "mqtt"}], mqtt_port=port)
    channel = open_channels(config)["ha"]
    broker = Mosquitto(tmp_path / "mosquitto", port)
    try:
        with pytest.raises(DeliveryError, match=f"mqtt channel ha: broker 127.0.0.1:{port}"):
            await channel.send(notice())
        broker.start()
        await channel.send(notice())
        broker.stop()
        await eventually(lambda: not channel.connected, timeout=5, what="the loss noticed")
        with pytest.raises(DeliveryError, match="Connection refused"):
            await channel.send(notice("resolved", NOW + 1))
        broker.start()
        await channel.send(notice("resolved", NOW + 1))
        found = await retained_messages(port, "campus/energy/alerts/#", "campus/energy/alerts/e")
    finally:
        await channel.close()
        broker.stop()
    assert json.loads(found["campus/energy/alerts/silent/ece-f1-001"])["state"] == "resolved"


# -- the outbox ------------------------------------------------------------------------------


class Gate:
    """A channel that records what it sends and, when told to, waits for a gate to open."""

    def __init__(self, name: str, gate: asyncio.Event | None = None) -> None:
        self.name = name
        self.gate = gate
        self.sent: list[str] = []

    async def send(self, notice: Notice) -> None:
        if self.gate is not None:
            await self.gate.wait()
        self.sent.append(notice.key)

    async def close(self) -> None:
        pass


async def test_a_slow_channel_holds_up_no_other_and_a_vanished_one_is_dead_lettered(
    book: AlertBook,
) -> None:
    gate = asyncio.Event()
    slow, quick = Gate("slow", gate), Gate("quick")
    channels: dict[str, Channel] = {"slow": slow, "quick": quick}
    firing, resolved = notice(), notice("resolved", NOW + 1)
    enqueue(book, firing, resolved, channels=("slow", "quick", "gone"))
    passing = asyncio.create_task(deliver_due(book, channels, NOW, max_attempts={}))
    await asyncio.wait_for(_until(lambda: len(quick.sent) == 2), 5)
    assert slow.sent == [] and not passing.done()  # the quick one finished meanwhile
    gate.set()
    counts = await asyncio.wait_for(passing, 5)
    assert (counts.sent, counts.retried, counts.dead) == (4, 0, 2)
    assert slow.sent == quick.sent == [firing.key, resolved.key]  # in order within a channel
    gone = [row for row in outbox(book.path) if row["channel"] == "gone"]
    assert all("channel 'gone' is no longer configured" in row["last_error"] for row in gone)


async def test_a_channel_down_leaves_the_healthy_ones_their_share_of_a_pass(
    book: AlertBook,
) -> None:
    config = config_with([mail_settings(free_port())])  # nothing listens
    quick = Gate("quick")
    channels: dict[str, Channel] = {**open_channels(config), "quick": quick}
    enqueue(book, *(notice(at_ms=NOW + i) for i in range(200)), channels=("mail",))
    enqueue(book, *(notice(at_ms=NOW + i) for i in range(50)), channels=("quick",))
    attempts = max_attempts(config)
    counts = await deliver_due(book, channels, NOW, max_attempts=attempts, limit=100)
    assert len(quick.sent) == 50
    assert (counts.sent, counts.retried, counts.held) == (50, 1, 99)
    counts = await deliver_due(book, channels, NOW + 1_000, max_attempts=attempts, limit=100)
    assert counts == DeliveryCounts()  # the mail waits for its first notice's retry


class FailingMarks:
    """The real book, except that marking a delivery of `channel` delivered fails."""

    def __init__(self, book: AlertBook, channel: str) -> None:
        self.book = book
        self.failing = {d.id for d in book.due(NOW) if d.channel == channel}
        self.failed = False

    def due(self, now_ms: int, limit: int = 100, /) -> list[Delivery]:
        return self.book.due(now_ms, limit)

    def delivered(self, delivery_id: int, now_ms: int, /) -> None:
        if delivery_id in self.failing:
            self.failed = True
            raise AlertBookError(f"{self.book.path}: disk I/O error")
        self.book.delivered(delivery_id, now_ms)

    def retry(self, delivery_id: int, now_ms: int, error: str, next_attempt_ms: int, /) -> None:
        self.book.retry(delivery_id, now_ms, error, next_attempt_ms)

    def dead(self, delivery_id: int, now_ms: int, error: str, /) -> None:
        self.book.dead(delivery_id, now_ms, error)


async def test_a_failing_book_write_is_raised_once_every_channel_has_finished(
    book: AlertBook,
) -> None:
    gate = asyncio.Event()
    slow, marked = Gate("slow", gate), Gate("marked")
    enqueue(book, notice(), channels=("slow", "marked"))
    marks = FailingMarks(book, "marked")
    channels: dict[str, Channel] = {"slow": slow, "marked": marked}
    passing = asyncio.create_task(deliver_due(marks, channels, NOW, max_attempts={}))
    await asyncio.wait_for(_until(lambda: marks.failed), 5)
    gate.set()  # the slow channel may go on: the pass must wait for it
    with pytest.raises(AlertBookError, match="disk I/O error"):
        await passing
    assert slow.sent == [notice().key]  # finished, and marked: the next pass sends it no more
    assert [d.channel for d in book.due(NOW)] == ["marked"]


async def _until(condition: Any) -> None:
    while not condition():
        await asyncio.sleep(0.01)


def test_the_back_off_doubles_to_five_minutes_with_a_jitter_of_the_delivery() -> None:
    bases = [5, 10, 20, 40, 80, 160, 300, 300, 300]
    for attempts, base in enumerate(bases, start=1):
        delays = {retry_delay_s(attempts, delivery_id) for delivery_id in range(1, 50)}
        assert all(0.9 * base <= d <= base for d in delays)
        assert len(delays) > 40  # spread, so retries do not fire together
    assert retry_delay_s(3, 17) == retry_delay_s(3, 17)  # deterministic
    assert retry_delay_s(10_000, 1) <= 300
