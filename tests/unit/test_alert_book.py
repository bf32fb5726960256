"""The book of alerts on real SQLite files: states and transitions recorded once however often
they are replayed, acknowledgements that survive the service's writes, silences and what they
cover, the outbox's lifecycle, history, the service's memory, pruning, and refused input."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from campus_energy.core.alerts import AlertState, MeterSeen, Transition
from campus_energy.errors import AlertBookError
from campus_energy.incidents.store import (
    MAX_ERROR_CHARS,
    SCHEMA_VERSION,
    AlertBook,
    Silence,
    silenced_until,
)

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
MIN = 60_000
SILENT = ("meter-silent", "campus")


def firing(rule: str = "silent", subject: str = "m1", at: int = T0, **kw: Any) -> AlertState:
    base = AlertState(rule, subject, "firing", at, holds_since_ms=at, fired_ms=at, notified_ms=at)
    return replace(base, **kw)


def fired(rule: str = "silent", subject: str = "m1", at: int = T0, **kw: Any) -> Transition:
    return replace(Transition(rule, subject, "firing", at, "warning", 360.0, "no reading"), **kw)


def rows(path: Path, sql: str) -> list[tuple[Any, ...]]:
    """Read the file as another process would."""
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


@pytest.fixture
def book(tmp_path: Path) -> Iterator[AlertBook]:
    with AlertBook(tmp_path / "var" / "alerts.db") as b:
        yield b


# -- the file ------------------------------------------------------------------------------


def test_a_new_book_is_created_with_its_folder_in_wal_mode(book: AlertBook) -> None:
    assert book.path.is_file()
    assert rows(book.path, "PRAGMA journal_mode") == [("wal",)]
    assert rows(book.path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
    assert book.states(T0) == {} and book.due(T0) == [] and book.next_due_ms() is None


def test_a_book_of_a_newer_version_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "alerts.db"
    AlertBook(path).close()
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    with pytest.raises(AlertBookError, match=r"alerts\.db has schema 99, newer"):
        AlertBook(path)
    assert rows(path, "PRAGMA user_version") == [(99,)]


def test_a_file_that_is_no_database_is_named_with_the_way_to_rebuild_it(tmp_path: Path) -> None:
    path = tmp_path / "alerts.db"
    path.write_bytes(b"this is not an SQLite file at all, " * 200)
    with pytest.raises(AlertBookError, match=r"alerts\.db is damaged .*\.recover"):
        AlertBook(path)


def test_a_closed_book_says_so(tmp_path: Path) -> None:
    b = AlertBook(tmp_path / "alerts.db")
    b.close()
    b.close()
    with pytest.raises(AlertBookError, match="is closed"):
        b.states(T0)


def test_another_thread_may_use_the_book(book: AlertBook) -> None:
    found: list[bool] = []
    worker = threading.Thread(
        target=lambda: found.append(book.silence(None, None, T0 + MIN, "x", T0) > 0)
    )
    worker.start()
    worker.join()
    assert found == [True]


# -- states and transitions ----------------------------------------------------------------


def test_record_keeps_states_history_and_one_delivery_per_channel(book: AlertBook) -> None:
    state = firing(value=360.0, detail="no reading", severity="critical")
    quiet = AlertState("night", "campus", "pending", T0, holds_since_ms=T0)
    muted = fired("silent", "m2", suppressed=True)
    book.record(
        [state, quiet],
        [(fired(), *SILENT, ("mail", "hook", "mail")), (muted, *SILENT, ("mail",))],
        T0,
        kinds={"night": ("after-hours", "building:ECE")},
        site="Example Campus",
    )
    assert book.states(T0) == {("silent", "m1"): state, ("night", "campus"): quiet}
    assert [(d.channel, d.notice.key, d.notice.site, d.attempts) for d in book.due(T0)] == [
        ("mail", f"silent/m1/firing/{T0}", "Example Campus", 0),
        ("hook", f"silent/m1/firing/{T0}", "Example Campus", 0),
    ]
    assert book.due(T0)[0].notice.transition == fired()
    assert [(h.subject, h.kind, h.suppressed) for h in book.history(T0, T0 + 1)] == [
        ("m1", "meter-silent", False),
        ("m2", "meter-silent", True),
    ]
    listed = {(a.rule, a.kind, a.scope) for a in book.alerts(now_ms=T0)}
    assert listed == {("silent", *SILENT), ("night", "after-hours", "building:ECE")}


def test_a_state_without_kinds_keeps_those_it_had(book: AlertBook) -> None:
    book.record([firing()], [(fired(), *SILENT, ())], T0)
    book.record([firing(value=1.0)], [], T0 + MIN)
    assert [(a.kind, a.scope, a.value) for a in book.alerts(now_ms=T0)] == [(*SILENT, 1.0)]


@settings(max_examples=25, deadline=None)
@given(
    picks=st.lists(
        st.tuples(
            st.sampled_from(["r1", "r2"]),
            st.sampled_from(["m1", "m2", "campus"]),
            st.sampled_from(["firing", "renotify", "resolved"]),
            st.integers(0, 5),
            st.booleans(),
            st.lists(st.sampled_from(["mail", "hook", "mqtt"]), max_size=3),
        ),
        max_size=8,
    )
)
def test_recording_the_same_transitions_twice_equals_once(
    tmp_path_factory: pytest.TempPathFactory, picks: list[Any]
) -> None:
    batch = [
        (
            Transition(rule, subject, event, T0 + i * MIN, "warning", None, "", suppressed),
            *SILENT,
            tuple(channels),
        )
        for rule, subject, event, i, suppressed, channels in picks
    ]
    states = [firing(t.rule, t.subject, t.at_ms) for t, *_ in batch]
    folder = tmp_path_factory.mktemp("replay")
    seen = []
    for times in (1, 2):
        with AlertBook(folder / f"{times}.db") as b:
            for _ in range(times):
                b.record(states, batch, T0)
            seen.append(
                (b.states(T0), b.due(T0 + 9 * MIN, 1000), b.history(0, T0 * 2), b.outbox_counts())
            )
    assert seen[0] == seen[1]
    assert len(seen[0][2]) == len({t.key for t, *_ in batch})


def test_an_ack_written_by_another_process_survives_the_services_record(book: AlertBook) -> None:
    book.record([firing()], [(fired(), *SILENT, ("mail",))], T0)
    before = book.states(T0 + MIN)[("silent", "m1")]  # the service reads ...
    with AlertBook(book.path) as cli:  # ... someone acknowledges meanwhile ...
        assert cli.acknowledge("silent", "m1", "asha", T0 + MIN)
    book.record([replace(before, value=720.0)], [], T0 + 2 * MIN)  # ... the service writes
    after = book.states(T0 + 2 * MIN)[("silent", "m1")]
    assert (after.acked_ms, after.acked_by, after.value) == (T0 + MIN, "asha", 720.0)


@pytest.mark.parametrize(
    ("phase", "acked_ms", "kept"),
    [
        ("firing", None, True),  # the service did not know of the ack yet
        ("pending", None, True),
        ("resolved", T0 + MIN, True),  # written back as it was read
        ("resolved", None, False),  # over: the next firing needs a new ack
        ("inactive", None, False),
    ],
)
def test_an_ack_is_cleared_only_by_an_alert_written_as_over_without_it(
    book: AlertBook, phase: str, acked_ms: int | None, kept: bool
) -> None:
    book.record([firing()], [], T0)
    assert book.acknowledge("silent", "m1", "asha", T0 + MIN)
    book.record([firing(phase=phase, acked_ms=acked_ms)], [], T0 + 2 * MIN)
    state = book.states(T0)[("silent", "m1")]
    assert (state.acked_ms, state.acked_by) == ((T0 + MIN, "asha") if kept else (None, None))


def test_a_new_episode_starts_without_the_last_ones_ack(book: AlertBook) -> None:
    book.record([firing()], [], T0)
    assert book.acknowledge("silent", "m1", "asha", T0 + MIN)
    over = book.states(T0 + 2 * MIN)[("silent", "m1")]
    book.record([replace(over, phase="resolved")], [], T0 + 2 * MIN)  # the ack written back
    assert book.states(T0)[("silent", "m1")].acked_by == "asha"
    book.record([firing(at=T0 + 3 * MIN, phase="pending")], [], T0 + 3 * MIN)
    assert book.states(T0)[("silent", "m1")].acked_ms is None


def test_only_a_pending_or_firing_alert_can_be_acknowledged(book: AlertBook) -> None:
    book.record([firing(), firing(subject="m2", phase="resolved")], [], T0)
    assert not book.acknowledge("silent", "m2", "asha", T0)
    assert not book.acknowledge("silent", "nowhere", "asha", T0)
    assert book.acknowledge("silent", "m1", "asha", T0)


# -- silences ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "subject", "covered"),
    [
        ("silent", "m1", {("silent", "m1")}),
        ("silent", None, {("silent", "m1"), ("silent", "m2")}),
        (None, "m1", {("silent", "m1"), ("drift", "m1")}),
        (None, None, {("silent", "m1"), ("silent", "m2"), ("drift", "m1")}),
    ],
)
def test_what_a_silence_covers(
    book: AlertBook, rule: str | None, subject: str | None, covered: set[tuple[str, str]]
) -> None:
    book.record([firing(), firing(subject="m2"), firing("drift", "m1")], [], T0)
    book.silence(rule, subject, T0 + 60 * MIN, "asha", T0)
    states = book.states(T0 + MIN)
    assert {k for k, s in states.items() if s.silenced_until_ms == T0 + 60 * MIN} == covered
    assert all(s.silenced_until_ms is None for k, s in states.items() if k not in covered)
    listed = book.silences(T0 + MIN)
    assert all(silenced_until(listed, *key) == T0 + 60 * MIN for key in covered)


def test_the_latest_silence_in_force_counts_and_an_ended_one_none(book: AlertBook) -> None:
    book.record([firing()], [], T0)
    short = book.silence("silent", "m1", T0 + 10 * MIN, "asha", T0)
    long = book.silence("silent", None, T0 + 30 * MIN, "ravi", T0, note="works")
    assert book.states(T0)[("silent", "m1")].silenced_until_ms == T0 + 30 * MIN
    assert book.unsilence(long, T0 + MIN)
    assert not book.unsilence(long, T0 + 2 * MIN)  # over already
    assert not book.unsilence(999, T0)
    assert book.states(T0 + 2 * MIN)[("silent", "m1")].silenced_until_ms == T0 + 10 * MIN
    assert book.silences(T0 + 2 * MIN) == [
        Silence(short, "silent", "m1", T0 + 10 * MIN, "asha", T0, "")
    ]
    assert book.states(T0 + 10 * MIN)[("silent", "m1")].silenced_until_ms is None
    assert book.alerts(now_ms=T0 + 10 * MIN)[0].silenced_until_ms is None


@pytest.mark.parametrize(
    ("until", "message"),
    [(T0, "until: must be a time after now"), (T0 + 367 * 86_400_000, "at most a year")],
)
def test_a_silence_ends_after_now_and_within_a_year(
    book: AlertBook, until: int, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        book.silence("silent", None, until, "asha", T0)
    assert rows(book.path, "SELECT count(*) FROM silences") == [(0,)]


@pytest.mark.parametrize(
    ("field", "args"),
    [
        ("rule", ("x" * 201, None, "asha", "")),
        ("subject", ("silent", "m1\n", "asha", "")),
        ("by", ("silent", None, "", "")),
        ("by", ("silent", None, "a\x1b[31mb", "")),
        ("note", ("silent", None, "asha", "n" * 501)),
        ("note", ("silent", None, "asha", "evil \u202e txt")),
    ],
)
def test_what_people_write_is_bounded(book: AlertBook, field: str, args: tuple[Any, ...]) -> None:
    rule, subject, by, note = args
    with pytest.raises(ValueError, match=f"^{field}: "):
        book.silence(rule, subject, T0 + MIN, by, T0, note)
    if field != "note":
        with pytest.raises(ValueError, match=f"^{field}: "):
            book.acknowledge(rule or "silent", subject or "m1", by, T0)
    assert rows(book.path, "SELECT count(*) FROM silences") == [(0,)]


def test_a_note_may_be_empty_and_text_may_be_any_script(book: AlertBook) -> None:
    book.silence(None, "ईसीई-f1", T0 + MIN, "Zoë Ångström", T0, note="")
    assert book.silences(T0)[0].by == "Zoë Ångström"


# -- the outbox ----------------------------------------------------------------------------


def test_a_delivery_is_retried_delivered_or_dead_lettered(book: AlertBook) -> None:
    transitions = [(fired(at=T0 + i), *SILENT, ("mail", "hook")) for i in range(3)]
    book.record([], transitions, T0)
    first, second, third, fourth, fifth, sixth = book.due(T0)
    assert [d.id for d in book.due(T0, limit=1)] == [first.id, second.id]  # one a channel
    book.delivered(first.id, T0 + 1)
    book.retry(second.id, T0 + 1, "x" * 2000, T0 + 5 * MIN)
    book.retry(second.id, T0 + 2, "refused: 503", T0 + 7 * MIN)
    book.dead(third.id, T0 + 2, "550 no such user")
    book.delivered(fourth.id, T0 + 3)
    book.dead(fifth.id, T0 + 3, "gone")
    assert book.due(T0 + 6 * MIN) == []  # the sixth waits for the second, of its channel
    assert [(d.id, d.attempts) for d in book.due(T0 + 7 * MIN)] == [(second.id, 2), (sixth.id, 0)]
    assert book.next_due_ms() == T0 + 7 * MIN
    assert book.outbox_counts() == {
        "hook": {"pending": 2, "dead": 0, "delivered": 1},
        "mail": {"pending": 0, "dead": 2, "delivered": 1},
    }
    errors = rows(book.path, "SELECT id, length(last_error), attempts FROM outbox ORDER BY id")
    assert errors[1:3] == [
        (second.id, len("refused: 503"), 2),
        (third.id, len("550 no such user"), 1),
    ]
    book.retry(first.id, T0 + 4, "late", T0 + 9 * MIN)  # delivered already: nothing changes
    assert book.outbox_counts()["mail"]["delivered"] == 1


def test_a_long_error_is_kept_truncated(book: AlertBook) -> None:
    book.record([], [(fired(), *SILENT, ("hook",))], T0)
    (delivery,) = book.due(T0)
    book.retry(delivery.id, T0, "é" * 2000, T0 + MIN)
    assert rows(book.path, "SELECT length(last_error) FROM outbox") == [(MAX_ERROR_CHARS,)]
    assert book.next_due_ms() == T0 + MIN


def test_nothing_of_a_channel_is_due_behind_an_earlier_notice_waiting_for_its_retry(
    book: AlertBook,
) -> None:
    """The hold behind a failed notice is the book's: after a restart, a "resolved" due now
    still waits for its "firing", retried later, while other channels go on."""
    resolved = fired(event="resolved", at=T0 + MIN)
    book.record([], [(fired(), *SILENT, ("ha",)), (resolved, *SILENT, ("ha",))], T0)
    book.record([], [(fired("night", "campus"), *SILENT, ("mail",))], T0)
    failing, waiting, other = book.due(T0)
    book.retry(failing.id, T0, "broker down", T0 + 5_000)
    reopened = AlertBook(book.path)  # a restart: nothing kept in memory
    try:
        assert [d.id for d in reopened.due(T0 + 1_000)] == [other.id]
        reopened.delivered(other.id, T0 + 1_000)
        assert reopened.next_due_ms() == T0 + 5_000  # not the waiting one's T0
        assert [d.id for d in reopened.due(T0 + 5_000)] == [failing.id, waiting.id]
        reopened.dead(failing.id, T0 + 5_000, "refused")
        assert [d.id for d in reopened.due(T0 + 5_000)] == [waiting.id]
    finally:
        reopened.close()


def test_each_channel_has_its_own_share_of_a_page(book: AlertBook) -> None:
    busy = [(fired(at=T0 + i), *SILENT, ("down",)) for i in range(5)]
    book.record([], [*busy, (fired("night", "campus"), *SILENT, ("up",))], T0)
    assert [d.channel for d in book.due(T0, 2)] == ["down", "down", "up"]


# -- what people read ----------------------------------------------------------------------


def test_alerts_list_the_most_severe_first_then_the_newest(book: AlertBook) -> None:
    book.record(
        [
            firing("a", "m1", T0, severity="warning"),
            firing("b", "m1", T0 + MIN, severity="warning"),
            firing("c", "m1", T0, severity="critical"),
            firing("d", "m1", T0 + 2 * MIN, severity="info", phase="pending"),
            firing("e", "m1", T0 + 3 * MIN, severity="critical", phase="resolved"),
        ],
        [],
        T0,
    )
    assert [a.rule for a in book.alerts(now_ms=T0)] == ["c", "b", "a", "d"]
    assert [a.rule for a in book.alerts(False, now_ms=T0)] == ["e", "c", "b", "a", "d"]


def test_history_of_a_span_of_a_rule_oldest_first_the_latest_beyond_the_limit(
    book: AlertBook,
) -> None:
    book.record([], [(fired(r, at=T0 + i * MIN), *SILENT, ()) for i in range(5) for r in "ab"], T0)
    assert [(h.rule, h.at_ms) for h in book.history(T0 + MIN, T0 + 3 * MIN, rule="a")] == [
        ("a", T0 + MIN),
        ("a", T0 + 2 * MIN),
    ]
    assert [h.at_ms for h in book.history(T0, T0 + 10 * MIN, limit=3, rule="b")] == [
        T0 + 2 * MIN,
        T0 + 3 * MIN,
        T0 + 4 * MIN,
    ]


# -- the service's memory, and pruning -----------------------------------------------------


def test_what_the_service_saw_and_remembered_comes_back(book: AlertBook) -> None:
    m1 = MeterSeen("m1", 5.0, T0, 1500.0, "online", T0 - MIN, "")
    book.save_seen({"m1": m1, "m2": MeterSeen("m2", 10.0)})
    book.save_seen({"m2": MeterSeen("m2", 10.0, status="offline", status_detail="timeout")})
    assert book.seen() == {
        "m1": m1,
        "m2": MeterSeen("m2", 10.0, status="offline", status_detail="timeout"),
    }
    assert book.memo("report:weekly") is None
    book.remember("report:weekly", {"sent_ms": T0})
    book.remember("report:weekly", {"sent_ms": T0 + 1, "anchors": [1.5, None]})
    assert book.memo("report:weekly") == {"sent_ms": T0 + 1, "anchors": [1.5, None]}


def test_prune_forgets_what_is_over_and_keeps_what_is_pending(book: AlertBook) -> None:
    book.record(
        [firing()],
        [(fired(at=T0), *SILENT, ("mail", "hook")), (fired(at=T0 + 9 * MIN), *SILENT, ("mail",))],
        T0,
    )
    mail, hook, later = book.due(T0 + 9 * MIN)
    book.delivered(mail.id, T0 + MIN)
    book.dead(later.id, T0 + 10 * MIN, "refused")
    book.silence("silent", None, T0 + 2 * MIN, "asha", T0)
    kept = book.silence(None, None, T0 + 20 * MIN, "asha", T0)
    assert book.prune(T0 + 5 * MIN) == 3  # one transition, one delivery, one silence
    assert [h.at_ms for h in book.history(0, T0 * 2)] == [T0 + 9 * MIN]
    assert [d.id for d in book.due(T0 + 9 * MIN)] == [hook.id]
    assert [s.id for s in book.silences(T0)] == [kept]
    assert ("silent", "m1") in book.states(T0)
