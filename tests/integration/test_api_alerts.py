"""The alerts endpoints on a real configuration and a real book of alerts.

The book (`tests.support.alert_book`) is written through `AlertBook.record` as the alerts
service writes it; every figure of `GET /api/alerts` is checked against what was recorded,
and every action's effect is read back from the next GET and from the book itself.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from tests.support import alert_book as ab

from campus_energy.api import create_app
from campus_energy.backends import open_source
from campus_energy.config import parse_config
from campus_energy.incidents.store import AlertBook

TOKEN = "s3cret-token-0123456789abcdef"
ORIGIN = "https://energy.example.edu"
MakeClient = Callable[..., FlaskClient]


@pytest.fixture
def make_client(tmp_path: Path) -> Iterator[MakeClient]:
    """`make_client(book=True, **alerts)`: the API on a fresh book (or none) and `alerts`."""
    sources: list[Any] = []

    def make(book: bool = True, **alerts: Any) -> FlaskClient:
        folder = tmp_path / f"campus-{len(sources)}"
        folder.mkdir()
        data = ab.config_data(folder, **alerts)
        data["api"] = {"cache_s": 30, "cors_origins": [ORIGIN]}
        config = parse_config(data)
        if book:
            ab.write_book(config.alerts.state_path)
        source = open_source(config)
        sources.append(source)
        return create_app(config, source=source, clock=lambda: ab.NOW_MS / 1000).test_client()

    try:
        yield make
    finally:
        for source in sources:
            source.close()


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "api-token"
    path.write_text(TOKEN + "\n", encoding="utf-8")
    return path


@pytest.fixture
def client(make_client: MakeClient, token_file: Path) -> FlaskClient:
    return make_client(api_token_file=str(token_file))


def post(
    client: FlaskClient,
    path: str,
    body: Any,
    status: int,
    token: str | None = TOKEN,
    **options: Any,
) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    headers.update(options.pop("headers", {}))
    kind = {"json": body} if "data" not in options else {}
    response = client.post(f"/api/alerts/{path}", headers=headers, **kind, **options)
    assert response.status_code == status, (path, body, response.status_code, response.data)
    return response


def book_of(client: FlaskClient) -> Path:
    path = client.application.extensions["campus_energy"].config.alerts.state_path
    assert isinstance(path, Path)
    return path


# -- reading -------------------------------------------------------------------------------


def test_every_figure_is_what_the_book_recorded(client: FlaskClient) -> None:
    response = client.get("/api/alerts")
    assert response.status_code == 200
    body = response.get_json()
    assert body["configured"] is True and body["timezone"] == ab.ZONE
    expected_active = [
        {
            "rule": s.rule,
            "subject": s.subject,
            "kind": ab.KINDS[s.rule][0],
            "scope": ab.KINDS[s.rule][1],
            "phase": s.phase,
            "severity": ab.KINDS[s.rule][2],
            "since": ab.iso(s.since_ms),
            "fired": ab.iso(s.fired_ms),
            "value": s.value,
            "detail": s.detail,
            "acked": None,
            "silenced_until": None,
        }
        for s in ab.ACTIVE  # firing before pending, critical before warning
    ]
    assert body["active"] == expected_active
    within_week = [e for e in ab.EVENTS if e.at_ms >= ab.NOW_MS - 7 * ab.DAY]
    assert body["recent"] == [
        {
            "rule": e.rule,
            "subject": e.subject,
            "kind": ab.KINDS[e.rule][0],
            "scope": ab.KINDS[e.rule][1],
            "event": e.event,
            "at": ab.iso(e.at_ms),
            "severity": e.severity,
            "value": e.value,
            "detail": e.detail,
            "suppressed": False,
        }
        for e in reversed(within_week)  # the newest first
    ]
    assert body["silences"] == []
    month = client.get("/api/alerts?days=30").get_json()
    assert [r["at"] for r in month["recent"]] == [ab.iso(e.at_ms) for e in reversed(ab.EVENTS)]
    assert response.headers["Cache-Control"] == "public, max-age=10"
    again = client.get("/api/alerts", headers={"If-None-Match": response.headers["ETag"]})
    assert again.status_code == 304


def test_without_a_book_nothing_is_configured_and_no_file_is_made(make_client: MakeClient) -> None:
    client = make_client(book=False)
    response = client.get("/api/alerts")
    assert response.status_code == 200
    body = response.get_json()
    assert body == {
        "configured": False,
        "timezone": ab.ZONE,
        "active": [],
        "recent": [],
        "silences": [],
    }
    assert not book_of(client).exists()


@pytest.mark.parametrize("days", ["0", "91", "abc", "-1", "7.5", "²"])
def test_a_bad_number_of_days_is_a_400_naming_it(client: FlaskClient, days: str) -> None:
    response = client.get(f"/api/alerts?days={days}")
    assert response.status_code == 400
    assert response.get_json()["error"].startswith("days:")


# -- who may act ---------------------------------------------------------------------------


def test_actions_without_a_token_file_are_forbidden(make_client: MakeClient) -> None:
    client = make_client()
    for path, body in [
        ("ack", {"rule": "silent", "subject": "lib-f1-002"}),
        ("silence", {"rule": "silent", "for": "2h"}),
        ("unsilence", {"id": 1}),
    ]:
        response = post(client, path, body, 403)
        assert response.get_json() == {"error": "alert actions are not enabled on this API"}
    with AlertBook(book_of(client)) as book:
        assert book.states(ab.NOW_MS)[("silent", "lib-f1-002")].acked_ms is None


def test_a_missing_or_wrong_token_is_a_401_and_is_never_logged(
    client: FlaskClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    body = {"rule": "silent", "subject": "lib-f1-002"}
    missing = post(client, "ack", body, 401, token=None)
    assert missing.headers["WWW-Authenticate"].startswith("Bearer")
    for wrong in (TOKEN[:-1], TOKEN + "x", "", f"{TOKEN} {TOKEN}"):
        response = post(client, "ack", body, 401, token=wrong)
        assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]
    basic = post(client, "ack", body, 401, token=None, headers={"Authorization": f"Basic {TOKEN}"})
    assert TOKEN not in basic.get_data(as_text=True)
    with AlertBook(book_of(client)) as book:
        assert book.states(ab.NOW_MS)[("silent", "lib-f1-002")].acked_ms is None
    post(client, "ack", body, 200)
    assert all(TOKEN not in r.getMessage() for r in caplog.records)


def test_an_unreadable_token_file_is_a_503_that_names_no_token(
    make_client: MakeClient, tmp_path: Path
) -> None:
    client = make_client(api_token_file=str(tmp_path / "missing-token"))
    response = post(client, "ack", {"rule": "silent", "subject": "lib-f1-002"}, 503)
    assert "token" in response.get_json()["error"]


# -- acting --------------------------------------------------------------------------------


def test_an_acknowledgement_shows_in_the_next_answer_and_in_the_book(client: FlaskClient) -> None:
    answer = post(client, "ack", {"rule": "silent", "subject": "lib-f1-002", "by": "ops"}, 200)
    at = ab.iso(ab.NOW_MS)
    assert answer.get_json() == {
        "acknowledged": True,
        "rule": "silent",
        "subject": "lib-f1-002",
        "by": "ops",
        "at": at,
    }
    active = {(a["rule"], a["subject"]): a for a in client.get("/api/alerts").get_json()["active"]}
    assert active[("silent", "lib-f1-002")]["acked"] == {"by": "ops", "at": at}
    assert active[("night-load", "campus")]["acked"] is None
    with AlertBook(book_of(client)) as book:
        state = book.states(ab.NOW_MS)[("silent", "lib-f1-002")]
    assert (state.acked_ms, state.acked_by) == (ab.NOW_MS, "ops")
    by_default = post(client, "ack", {"rule": "night-load", "subject": "campus"}, 200)
    assert by_default.get_json()["by"] == "api"


def test_an_unknown_alert_is_a_404(client: FlaskClient) -> None:
    post(client, "ack", {"rule": "silent", "subject": "nowhere"}, 404)
    post(client, "ack", {"rule": "coverage", "subject": "ece-1"}, 404)  # resolved: nothing to ack
    post(client, "silence", {"rule": "no-such-rule", "for": "1h"}, 404)
    post(client, "unsilence", {"id": 99}, 404)


def test_a_silence_covers_its_alerts_until_it_is_lifted(client: FlaskClient) -> None:
    made = post(
        client, "silence", {"rule": "silent", "for": "2h", "by": "ops", "note": "works"}, 200
    )
    until = ab.NOW_MS + 2 * 3_600_000
    silence = made.get_json()["silence"]
    assert silence == {
        "id": silence["id"],
        "rule": "silent",
        "subject": None,
        "until": ab.iso(until),
        "by": "ops",
        "created": ab.iso(ab.NOW_MS),
        "note": "works",
    }
    body = client.get("/api/alerts").get_json()
    assert body["silences"] == [silence]
    silenced = {a["subject"]: a["silenced_until"] for a in body["active"]}
    assert silenced == {"campus": None, "lib-f1-002": ab.iso(until), "lib-f1-001": ab.iso(until)}
    with AlertBook(book_of(client)) as book:
        assert book.states(ab.NOW_MS)[("silent", "lib-f1-002")].silenced_until_ms == until
    at = post(
        client,
        "silence",
        {"rule": None, "subject": "campus", "until": "2026-11-17T00:00+05:30"},
        200,
    )
    assert at.get_json()["silence"]["until"] == "2026-11-16T18:30:00Z"
    assert post(client, "unsilence", {"id": silence["id"]}, 200).get_json() == {
        "unsilenced": silence["id"]
    }
    post(client, "unsilence", {"id": silence["id"]}, 404)  # over already
    left = client.get("/api/alerts").get_json()
    assert [s["subject"] for s in left["silences"]] == ["campus"]
    assert {a["subject"]: a["silenced_until"] for a in left["active"]}["lib-f1-002"] is None


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("ack", {"subject": "lib-f1-002"}, "rule"),
        ("ack", {"rule": "silent"}, "subject"),
        ("ack", {"rule": "silent", "subject": "lib-f1-002", "extra": 1}, "extra"),
        ("ack", {"rule": 5, "subject": "lib-f1-002"}, "rule"),
        ("ack", {"rule": None, "subject": "lib-f1-002"}, "rule"),
        ("ack", {"rule": "silent", "subject": "lib\nf1"}, "subject"),
        ("ack", {"rule": "silent", "subject": "lib-f1-002", "by": "x" * 201}, "by"),
        ("ack", {"rule": "silent", "subject": "lib-f1-002", "by": ""}, "by"),
        ("ack", ["silent", "lib-f1-002"], "body"),
        ("silence", {"for": "2h"}, "rule"),
        ("silence", {"rule": "silent"}, "until"),
        ("silence", {"rule": "silent", "for": "2h", "until": "2026-11-17T00:00Z"}, "until"),
        ("silence", {"rule": "silent", "for": "soon"}, "for"),
        ("silence", {"rule": "silent", "for": 0}, "for"),
        ("silence", {"rule": "silent", "for": "91d"}, "for"),
        ("silence", {"rule": "silent", "until": "2026-11-16T09:00:00Z"}, "until"),
        ("silence", {"rule": "silent", "until": "tomorrow"}, "until"),
        ("silence", {"rule": "silent", "until": "2026-11-17T00:00"}, "until"),
        ("silence", {"rule": "silent", "until": 5}, "until"),
        ("silence", {"rule": "silent", "for": "1h", "note": "n" * 501}, "note"),
        ("silence", {"rule": "silent", "for": "1h", "note": "a\u202eb"}, "note"),
        ("unsilence", {}, "id"),
        ("unsilence", {"id": "1"}, "id"),
        ("unsilence", {"id": True}, "id"),
        ("unsilence", {"id": 0}, "id"),
        ("unsilence", {"id": 2**70}, "id"),
    ],
)
def test_a_bad_field_is_a_400_naming_it(
    client: FlaskClient, path: str, body: Any, field: str
) -> None:
    error = post(client, path, body, 400).get_json()["error"]
    assert error.startswith(f"{field}:"), error


@pytest.mark.parametrize(
    "data", [b"{", b"", b"\xff\xfe", b"null", b'"ack"', b"1e999", b"[" * 4000, b'{"a":' * 800]
)
def test_a_body_that_is_no_json_object_is_a_400(client: FlaskClient, data: bytes) -> None:
    response = post(client, "ack", None, 400, data=data, content_type="application/json")
    assert response.get_json()["error"].startswith("body:")


def test_a_body_not_declared_json_is_a_415_and_a_large_one_a_413(client: FlaskClient) -> None:
    data = b'{"rule": "silent", "subject": "lib-f1-002"}'
    post(client, "ack", None, 415, data=data, content_type="text/plain")
    post(client, "ack", None, 415, data=data, content_type="application/x-www-form-urlencoded")
    large = {"rule": "silent", "subject": "lib-f1-002", "by": "x" * 5000}
    assert "4096 bytes" in post(client, "ack", large, 413).get_json()["error"]
    post(client, "ack", None, 413, data=b" " * 5000, content_type="application/json")


def test_actions_get_no_cors_headers_and_refuse_other_methods(client: FlaskClient) -> None:
    origin = {"Origin": ORIGIN}
    read = client.get("/api/alerts", headers=origin)
    assert read.headers["Access-Control-Allow-Origin"] == ORIGIN
    body = {"rule": "silent", "subject": "lib-f1-002"}
    acted = post(client, "ack", body, 200, headers=origin)
    assert "Access-Control-Allow-Origin" not in acted.headers
    preflight = client.options("/api/alerts/ack", headers=origin)
    assert "Access-Control-Allow-Origin" not in preflight.headers
    got = client.get("/api/alerts/ack")
    assert got.status_code == 405 and "POST" in got.headers["Allow"]
    assert got.get_json() == {"error": "this endpoint takes POST only"}
    assert client.post("/api/alerts", json={}).status_code == 405


# -- fuzzed --------------------------------------------------------------------------------


@pytest.mark.parametrize("token", [TOKEN, None], ids=["with-token", "without"])
def test_no_generated_request_is_a_server_error(client: FlaskClient, token: str | None) -> None:
    """schemathesis over the alerts' part of the published description, with the token
    (the fields are checked and the book written) and without (401)."""
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (
        response_schema_conformance,
        status_code_conformance,
    )

    schema = schemathesis.openapi.from_wsgi("/api/openapi.json", client.application)
    checks = [not_a_server_error, status_code_conformance, response_schema_conformance]
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    tested = []
    for result in schema.get_all_operations():
        operation = result.ok()
        if not operation.path.startswith("/api/alerts"):
            continue

        @given(case=operation.as_strategy())
        @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
        def run(case: Any) -> None:
            case.call_and_validate(headers=headers, checks=checks)

        run()
        tested.append(operation.label)
    assert len(tested) == 4, tested
