"""The lifecycle of an alert (`core.alerts.advance`): golden sequences (second, condition ->
phase, what is told) and properties over random sequences of findings, acknowledgements and
silences: every told resolution follows a told firing of the same episode, a flap shorter than
`for` is never told, and nothing is told while silenced but a resolution."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from campus_energy.core.alerts import AlertState, Finding, Rule, Scope, Transition, advance

S = 1000  # ms


def rule(**keys: float) -> Rule:
    timing = {"for_s": 60.0, "clear_after_s": 30.0, "renotify_s": 600.0, **keys}
    return Rule("r", "meter-silent", Scope("campus"), severity="critical", **timing)  # type: ignore[arg-type]


def run(
    chosen: Rule, steps: list[tuple[int, bool]], state: AlertState | None = None
) -> tuple[AlertState | None, list[tuple[int, str, bool]]]:
    """Advance through (second, holds) steps; the transitions as (second, event, suppressed)."""
    told = []
    for second, holds in steps:
        state, transition = advance(chosen, state, Finding("m1", holds, 1.0, "x"), second * S)
        if transition is not None:
            told.append((second, transition.event, transition.suppressed))
    return state, told


def test_pending_firing_renotify_and_resolved_once_each() -> None:
    steps = [(0, True), (30, True), (60, True), (61, True), (600, True), (660, True),
             (700, False), (720, False), (730, False), (740, False)]  # fmt: skip
    state, told = run(rule(), steps)
    # fires once `for` (60 s) has held; re-told 600 s after; resolved once false for 30 s
    assert told == [(60, "firing", False), (660, "renotify", False), (730, "resolved", False)]
    assert state is not None and state.phase == "resolved"


def test_a_flap_shorter_than_for_is_never_told() -> None:
    _, told = run(rule(), [(0, True), (59, True), (60, False), (61, True), (120, True)])
    assert told == []  # pending, back to inactive at 60, pending again from 61


def test_for_counts_from_the_known_onset() -> None:
    # the condition began 50 s before it was seen: it fires 10 s later, not 60
    state, transition = advance(rule(), None, Finding("m1", True, since_ms=-50 * S), 0)
    assert transition is None and state is not None and state.holds_since_ms == -50 * S
    _, transition = advance(rule(), state, Finding("m1", True), 10 * S)
    assert transition is not None and transition.event == "firing"


def test_clear_after_is_hysteresis() -> None:
    steps = [(0, True), (60, True), (70, False), (90, True), (100, False), (129, False)]
    state, told = run(rule(), steps)
    assert told == [(60, "firing", False)] and state is not None and state.phase == "firing"


def test_an_acknowledged_alert_is_not_retold_but_its_resolution_is() -> None:
    state, _ = run(rule(), [(0, True), (60, True)])
    assert state is not None
    acked = replace(state, acked_ms=70 * S, acked_by="ops")
    state, told = run(rule(), [(700, True), (1300, True), (1400, False), (1430, False)], acked)
    assert told == [(1430, "resolved", False)]
    assert state is not None and state.acked_ms is None  # the acknowledgement ends with it


def test_a_silence_holds_firings_back_and_a_firing_never_told_is_told_when_it_ends() -> None:
    silenced = AlertState("r", "m1", "inactive", 0, silenced_until_ms=300 * S)
    state, told = run(rule(), [(0, True), (60, True), (200, True)], silenced)
    assert told == [(60, "firing", True)]  # recorded, suppressed
    assert state is not None
    state = replace(state, silenced_until_ms=None)  # the silence is over (the book says so)
    state, told = run(rule(), [(301, True)], state)
    assert told == [(301, "firing", False)]


def test_a_resolution_is_told_exactly_when_its_firing_was() -> None:
    # told firing, then silenced: the resolution is still told (nothing stays "firing")
    state, _ = run(rule(), [(0, True), (60, True)])
    assert state is not None
    state = replace(state, silenced_until_ms=10_000 * S)
    _, told = run(rule(), [(100, False), (130, False)], state)
    assert told == [(130, "resolved", False)]
    # fired while silenced and never told: its resolution stays quiet too
    silenced = AlertState("r", "m1", "inactive", 0, silenced_until_ms=10_000 * S)
    _, told = run(rule(), [(0, True), (60, True), (100, False), (130, False)], silenced)
    assert told == [(60, "firing", True), (130, "resolved", True)]


def test_renotify_zero_tells_a_firing_once() -> None:
    _, told = run(rule(renotify_s=0), [(0, True), (60, True), (5000, True), (90000, True)])
    assert told == [(60, "firing", False)]


steps = st.lists(st.tuples(st.integers(1, 120), st.booleans()), min_size=1, max_size=60)


@settings(max_examples=300, deadline=None)
@given(
    steps=steps,
    for_s=st.sampled_from([0.0, 30.0, 60.0]),
    clear_s=st.sampled_from([0.0, 30.0]),
    silence=st.one_of(st.none(), st.tuples(st.integers(0, 3000), st.integers(1, 3000))),
)
def test_told_transitions_alternate_and_respect_for_and_silences(
    steps: list[tuple[int, bool]],
    for_s: float,
    clear_s: float,
    silence: tuple[int, int] | None,
) -> None:
    chosen = rule(for_s=for_s, clear_after_s=clear_s, renotify_s=0)
    state: AlertState | None = None
    now = 0
    true_since: int | None = None
    told: list[Transition] = []
    for gap, holds in steps:
        now += gap * S
        silenced_until = None
        if silence is not None and silence[0] * S <= now < (silence[0] + silence[1]) * S:
            silenced_until = (silence[0] + silence[1]) * S
        if state is not None:
            state = replace(state, silenced_until_ms=silenced_until)
        elif silenced_until is not None:
            state = AlertState("r", "m1", "inactive", now, silenced_until_ms=silenced_until)
        state, transition = advance(chosen, state, Finding("m1", holds), now)
        true_since = (true_since if true_since is not None else now) if holds else None
        if transition is None:
            continue
        if transition.event == "firing" and not transition.suppressed:
            assert silenced_until is None  # nothing but a resolution is told while silenced
        if transition.event == "firing":
            # fired only after the condition held `for` without a break
            assert true_since is not None and now - true_since >= for_s * S
        if not transition.suppressed:
            told.append(transition)
    events = [t.event for t in told]
    # told: firing, resolved, firing, resolved, ... (a resolution only after a told firing)
    assert all(e == ("firing" if i % 2 == 0 else "resolved") for i, e in enumerate(events))
