"""`campus-energy alerts list|ack|silence|unsilence|silences` on a real book of alerts: what it
prints (the site's local time in tables, UTC in JSON), what it writes, and its exit codes."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from tests.support.config import write_toml

from campus_energy.cli import main
from campus_energy.core.alerts import AlertState, Transition
from campus_energy.incidents.store import AlertBook

ZONE = ZoneInfo("Asia/Kolkata")
MIN = 60_000


@pytest.fixture
def config(tmp_path: Path) -> Path:
    site = {"name": "Example Campus", "timezone": "Asia/Kolkata"}
    return write_toml(
        tmp_path / "campus-energy.toml", {"site": site, "alerts": {"state_path": "var/alerts.db"}}
    )


@pytest.fixture
def now() -> int:
    return int(time.time() * 1000)


@pytest.fixture
def book(config: Path, now: int) -> Iterator[AlertBook]:
    """The book as the service leaves it: one alert firing, one resolved."""
    with AlertBook(config.parent / "var" / "alerts.db") as b:
        since = now - 5 * MIN
        fire = Transition("silent", "ece-f1-001", "firing", since, "critical", 360.0, "no reading")
        firing = AlertState(
            "silent", "ece-f1-001", "firing", since, holds_since_ms=since, fired_ms=since,
            notified_ms=since, value=360.0, detail="no reading", severity="critical",
        )  # fmt: skip
        resolved = AlertState("night", "ECE", "resolved", now - 60 * MIN, severity="warning")
        b.record(
            [firing, resolved],
            [(fire, "meter-silent", "campus", ("mail",))],
            now - 5 * MIN,
            kinds={"night": ("after-hours", "building:ECE")},
        )
        yield b


def alerts(config: Path, *words: str) -> int:
    return main(["alerts", *words, "-c", str(config)])


def local(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, ZONE).strftime("%Y-%m-%d %H:%M %Z")


def test_an_action_refuses_a_book_the_service_has_not_created(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for words in (["list"], ["ack", "silent", "m1", "--by", "x"], ["silences"]):
        assert alerts(config, *words) == 1
        assert "does not exist: the alerts service" in capsys.readouterr().err
    assert not (config.parent / "var").exists()


def test_list_shows_active_alerts_in_local_time_and_history_on_request(
    config: Path, book: AlertBook, now: int, capsys: pytest.CaptureFixture[str]
) -> None:
    assert alerts(config, "list") == 0
    table = capsys.readouterr().out
    assert "ece-f1-001" in table and local(now - 5 * MIN) in table and "IST" in table
    assert "night" not in table and "Transitions" not in table
    assert alerts(config, "list", "--all", "--history", "1") == 0
    table = capsys.readouterr().out
    assert "night" in table
    assert "Transitions of the last 1 day(s):" in table


def test_list_as_json_in_utc(
    config: Path, book: AlertBook, now: int, capsys: pytest.CaptureFixture[str]
) -> None:
    assert alerts(config, "list", "--history", "0.5", "--format", "json") == 0
    found = json.loads(capsys.readouterr().out)
    (alert,) = found["alerts"]
    since = datetime.fromtimestamp((now - 5 * MIN) // 1000, ZoneInfo("UTC"))
    assert (
        alert["since"].startswith(since.strftime("%Y-%m-%dT%H:%M:%S."))
        and alert["since"][-1] == "Z"
    )
    assert (alert["kind"], alert["acked"], alert["silenced_until"]) == ("meter-silent", None, None)
    assert [(h["event"], h["suppressed"]) for h in found["history"]] == [("firing", False)]


def test_ack_by_the_user_or_a_name_and_only_an_active_alert(
    config: Path,
    book: AlertBook,
    now: int,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LOGNAME", "asha")
    assert alerts(config, "ack", "silent", "ece-f1-001") == 0
    assert book.states(now)[("silent", "ece-f1-001")].acked_by == "asha"
    assert alerts(config, "ack", "silent", "ece-f1-001", "--by", "ravi") == 0
    assert book.states(now)[("silent", "ece-f1-001")].acked_by == "ravi"
    capsys.readouterr()
    assert alerts(config, "ack", "night", "ECE", "--by", "ravi") == 1
    assert "no pending or firing alert of rule 'night' for 'ECE'" in capsys.readouterr().err


def test_silence_for_a_while_or_until_a_local_time_then_end_it(
    config: Path, book: AlertBook, now: int, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        alerts(config, "silence", "silent", "--for", "2h", "--by", "asha", "--note", "works") == 0
    )
    first = int(capsys.readouterr().out)
    later = (datetime.now(ZONE) + timedelta(days=3)).replace(second=0, microsecond=0)
    naive = later.replace(tzinfo=None).isoformat()
    assert (
        alerts(config, "silence", "--all-rules", "ece-f1-001", "--until", naive, "--by", "x") == 0
    )
    second = int(capsys.readouterr().out)
    found = {s.id: s for s in book.silences(now)}
    assert (found[first].rule, found[first].subject, found[first].note) == ("silent", None, "works")
    assert 0 <= found[first].until_ms - (now + 120 * MIN) < 60_000
    assert (found[second].rule, found[second].subject) == (None, "ece-f1-001")
    assert found[second].until_ms == int(later.timestamp() * 1000)
    assert alerts(config, "silences", "--format", "json") == 0
    assert [s["id"] for s in json.loads(capsys.readouterr().out)] == [first, second]
    assert alerts(config, "unsilence", str(first)) == 0
    assert alerts(config, "unsilence", str(first)) == 1
    assert "no silence" in capsys.readouterr().err
    assert alerts(config, "silences") == 0
    table = capsys.readouterr().out
    assert f"{second} " in table and local(found[second].until_ms) in table
    assert "works" not in table


@pytest.mark.parametrize(
    ("words", "message"),
    [
        (["silence", "--all-rules", "a", "b", "--for", "1h"], "at most a SUBJECT"),
        (["silence", "--for", "1h"], "name a RULE"),
        (["silence", "silent", "--until", "next tuesday"], "--until: not an ISO 8601 time"),
        (["silence", "silent", "--until", "2000-01-01T00:00Z"], "until: must be a time after"),
        (["silence", "silent", "--for", "91d"], "--for: must be between"),
        (["silence", "silent", "--for", "1h", "--by", "a\x1bb"], "by: must not hold control"),
        (["ack", "silent", "x" * 300, "--by", "a"], "subject: at most 200 characters"),
        (["list", "--history", "0"], "--history: DAYS must be above 0"),
    ],
)
def test_bad_usage_exits_2_and_writes_nothing(
    config: Path,
    book: AlertBook,
    now: int,
    capsys: pytest.CaptureFixture[str],
    words: list[str],
    message: str,
) -> None:
    assert alerts(config, *words) == 2
    assert message in capsys.readouterr().err
    assert book.silences(now) == []


def test_a_local_time_the_clocks_skip_is_refused(
    config: Path,
    book: AlertBook,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CAMPUS_ENERGY__SITE__TIMEZONE", "Europe/Berlin")
    assert alerts(config, "silence", "silent", "--until", "2030-03-31T02:30") == 2
    assert "does not exist in Europe/Berlin" in capsys.readouterr().err
