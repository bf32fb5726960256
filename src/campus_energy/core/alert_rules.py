"""What each kind of alert rule finds in what the service observed.

`evaluate` turns `Observations` into one `Finding` per subject (`subjects`) through the
table `EVALUATORS`, one small function per kind. A subject whose inputs are missing gets
no finding, so its alert keeps its state — except where missing data is the condition
itself (a meter never seen is silent). Each finding carries the measured figure, a
sentence for a facilities person (units, local clock times) and, when known, when the
condition began.

    meter-silent        no reading for `silent_after` (3 polls), or status offline/error
    coverage-low        the last `windows` ended windows all covered below `below`
    after-hours         closed now, and live power above `above_kw` and above
                        `above_share` × the median of the open hours' mean power (each
                        threshold given must be exceeded)
    baseline-deviation  the last ended local hour's energy outside the median of the same
                        weekday and hour of the weeks before ± max(k × 1.4826 × MAD, min_kwh)
    demand-approaching  the running interval's projected demand ≥ share × (contracted_kw,
                        else the month's peak so far)
    register-drift      integrated energy and the meter's register apart by > `percent`

Local times are the site's (zoneinfo), so daylight saving never shifts an hour. Pure: the
evaluation's moment is `Observations.now_ms`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from zoneinfo import ZoneInfo

from campus_energy.core.alerts import (
    CAMPUS,
    PER_METER,
    DemandNow,
    Finding,
    HourEnergy,
    MeterSeen,
    Observations,
    Rule,
)
from campus_energy.core.baselines import MIN_COVERAGE, hour_baseline, local_hour, median
from campus_energy.core.campus import Campus, Occupancy
from campus_energy.core.days import HOUR_MS, hour_of
from campus_energy.core.tariffs import WEEKDAYS
from campus_energy.core.timestamps import utc_datetime

SILENT_POLLS = 3  # meter-silent's default: this many poll intervals without a reading
BAD_STATUS = frozenset({"offline", "error"})
DRIFT_MIN_SPAN_MS = 23 * HOUR_MS  # register-drift compares spans of about a day or more
DRIFT_TINY_WH = 100.0  # both below this: too little energy to compare
_DEFAULTS: Mapping[str, float] = {
    "below": 0.9,
    "windows": 3,
    "k": 4.0,
    "min_kwh": 1.0,
    "weeks": 6,
    "share": 0.9,
    "percent": 2.0,
}  # fmt: skip  (RuleConfig's defaults, for rules built without it)


@dataclass(frozen=True)
class RuleContext:
    """What an evaluation needs besides the observations."""

    campus: Campus
    zone: str  # the site's time zone
    window_s: int  # the bridge's window length
    grace_s: float  # a window counts as ended this long after its end
    interval_s: Mapping[str, float] = field(default_factory=dict)  # meter id -> poll interval
    # when the service started: a meter never seen is silent only `silent_after` after it
    # (None: at once)
    started_ms: int | None = None
    settle_s: float = 0.0  # and is in the store this much later still (the reader's margin)

    @property
    def ended_ms(self) -> int:
        """How long after its end a window or an hour counts as ended (and stored)."""
        return round((self.grace_s + self.settle_s) * 1000)

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.zone)


# -- subjects and the terms of a scope ------------------------------------------------------


def subjects(rule: Rule, campus: Campus) -> list[str]:
    """Per-meter kinds: the scope's meters; the other kinds: the scope's name (CAMPUS)."""
    scope = rule.scope
    if rule.kind in PER_METER:
        choose: Mapping[str, Callable[[], list[str]]] = {
            "campus": lambda: [m.id for m in campus.meters],
            "building": lambda: [m.id for m in campus.meters if m.building == scope.name],
            "meter": lambda: [scope.name],
        }
        return choose[scope.kind]()
    return [CAMPUS if scope.kind == "campus" else scope.name]


def terms_of(rule: Rule, campus: Campus) -> dict[str, float]:
    """The signed meters whose sum is the scope's total."""
    scope = rule.scope
    made: Mapping[str, Callable[[], dict[str, float]]] = {
        "campus": lambda: campus.campus_total().terms,
        "building": lambda: campus.building_total(scope.name).terms,
        "meter": lambda: campus.terms(scope.name),
    }
    return dict(made[scope.kind]())


# -- the evaluation -------------------------------------------------------------------------

Evaluator = Callable[[Rule, str, Observations, RuleContext], Finding | None]


def evaluate(
    rule: Rule, subjects: Sequence[str], seen: Observations, context: RuleContext
) -> list[Finding]:
    """One finding per subject whose inputs are there (see the module's table)."""
    judge = EVALUATORS[rule.kind]
    found = (judge(rule, subject, seen, context) for subject in subjects)
    return [f for f in found if f is not None]


def _param(rule: Rule, key: str) -> float:
    value = rule.params.get(key)
    return float(_DEFAULTS[key] if value is None else value)


def _optional(rule: Rule, key: str) -> float | None:
    value = rule.params.get(key)
    return None if value is None else float(value)


def _clock(ms: int, zone: ZoneInfo) -> str:
    return f"{utc_datetime(ms).astimezone(zone):%H:%M}"


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def _kw(watts: float) -> str:
    return f"{watts / 1000:,.1f} kW"


def _kwh(wh: float) -> str:
    return f"{wh / 1000:,.1f} kWh"


# meter-silent


def _meter_silent(rule: Rule, meter: str, seen: Observations, ctx: RuleContext) -> Finding | None:
    """Silent: no reading for `silent_after`, or the status offline or in error. The silence
    is counted from the service's start at the earliest: what came while it was not running
    is not known, so until a reading comes or `silent_after` has passed since the start there
    is no finding (a firing alert stays firing, a quiet one quiet)."""
    state = seen.meters.get(meter)
    interval = _interval(meter, state, ctx)
    given = _optional(rule, "silent_after")
    after_ms = round((SILENT_POLLS * interval if given is None else given) * 1000)
    last = None if state is None else state.last_reading_ms
    bad = state is not None and state.status in BAD_STATUS
    counted_from = last if ctx.started_ms is None else max(last or 0, ctx.started_ms)
    silent = counted_from is None or seen.now_ms - counted_from > after_ms
    if (
        not silent
        and not bad
        and (last is None or (counted_from is not None and last < counted_from))
    ):
        return None  # since the start: no reading yet, and not yet silent_after
    status = "" if state is None or state.status is None else f" (status {state.status}"
    if bad and state is not None:
        since = "" if state.status_ms is None else f" since {_clock(state.status_ms, ctx.tz)}"
        why = f": {state.status_detail}" if state.status_detail else ""
        status += f"{since}{why}"
    status += ")" if status else ""
    if last is None:
        started = (
            ""
            if ctx.started_ms is None
            else (f" since the service started at {_clock(ctx.started_ms, ctx.tz)}")
        )
        onset = None if counted_from is None or not silent else counted_from + after_ms
        if bad and state is not None and state.status_ms is not None:
            onset = state.status_ms if onset is None else min(onset, state.status_ms)
        return Finding(meter, True, None, f"no reading seen yet{started}{status}", onset)
    quiet_s = max(0.0, (seen.now_ms - last) / 1000)
    if silent or bad:
        detail = f"no reading for {_duration(quiet_s)}{status}"
    else:
        detail = f"last reading {_duration(quiet_s)} ago"
    assert counted_from is not None
    onset = counted_from + after_ms if silent else None
    if bad and state is not None and state.status_ms is not None:
        onset = state.status_ms if onset is None else min(onset, state.status_ms)
    return Finding(meter, silent or bad, quiet_s, detail, onset if silent or bad else None)


def _interval(meter: str, state: MeterSeen | None, ctx: RuleContext) -> float:
    configured = ctx.interval_s.get(meter)
    if configured is not None:
        return configured
    return 0.0 if state is None else state.interval_s


# coverage-low


def _coverage_low(rule: Rule, meter: str, seen: Observations, ctx: RuleContext) -> Finding | None:
    known = seen.coverage.get(meter)
    if not known:
        return None
    below = _param(rule, "below")
    count = int(_param(rule, "windows"))
    window_ms = ctx.window_s * 1000
    coverage = dict(known)
    first = min(coverage)
    last = (seen.now_ms - ctx.ended_ms - window_ms) // window_ms * window_ms
    starts = [last - i * window_ms for i in range(count)]
    if starts[-1] < first:
        return None  # not yet `windows` windows since the meter's first
    latest = coverage.get(last, 0.0)
    low = all(coverage.get(s, 0.0) < below for s in starts)
    share = f"{below * 100:.0f} %"
    if not low:
        detail = f"latest window {latest * 100:.0f} % covered (threshold {share})"
        return Finding(meter, False, latest, detail)
    onset = starts[-1]
    while onset - window_ms >= first and coverage.get(onset - window_ms, 0.0) < below:
        onset -= window_ms
    detail = (
        f"windows covered below {share} since {_clock(onset, ctx.tz)} (latest {latest * 100:.0f} %)"
    )
    return Finding(meter, True, latest, detail, onset)


# after-hours


def _buildings(subject: str, ctx: RuleContext) -> list[str]:
    """The buildings whose calendar applies to a subject: every building for the campus,
    the building itself, or the building of a meter or virtual meter."""
    campus = ctx.campus
    names = campus.building_names()
    if subject == CAMPUS:
        return names
    if subject in names:
        return [subject]
    places = [m.building for m in campus.meters if m.id == subject]
    places += [v.building for v in campus.virtual_meters if v.id == subject]
    return [p for p in places[:1] if p in names]


def _calendars(subject: str, ctx: RuleContext) -> list[Occupancy]:
    found = [ctx.campus.building(n).occupancy for n in _buildings(subject, ctx)]
    return [o for o in found if o is not None]


def _occupancies(subject: str, ctx: RuleContext) -> list[Occupancy]:
    """The opening hours that decide whether the subject is closed (those with hours)."""
    return [o for o in _calendars(subject, ctx) if o.hours]


def _after_hours(rule: Rule, subject: str, seen: Observations, ctx: RuleContext) -> Finding | None:
    rooms = _occupancies(subject, ctx)
    power = seen.power_w.get(subject)
    if not rooms or power is None:
        return None
    now = local_hour(seen.now_ms, ctx.tz)
    if any(o.is_open(now) for o in rooms):
        return Finding(subject, False, power / 1000, f"{_kw(power)}, open at {now:%H:%M}")
    limits: list[tuple[float, str]] = []
    above_kw = _optional(rule, "above_kw")
    if above_kw is not None:
        limits.append((above_kw * 1000, f"{above_kw:g} kW"))
    share = _optional(rule, "above_share")
    if share is not None:
        usual = _open_median_w(seen.hours.get(subject, ()), rooms, ctx)
        if usual is None:
            return None
        limits.append((share * usual, f"{share:g} × the open-hours median {_kw(usual)}"))
    holds = all(power > limit for limit, _ in limits)
    words = " and ".join(text for _, text in limits)
    relation = "above" if holds else "not above"
    detail = f"{_kw(power)} at {now:%a %H:%M} while closed, {relation} {words}"
    return Finding(subject, holds, power / 1000, detail)


def _open_median_w(
    hours: Sequence[HourEnergy], rooms: Sequence[Occupancy], ctx: RuleContext
) -> float | None:
    """The median mean power (W) of the hours the subject was open (at mid-hour)."""
    zone = ctx.tz
    open_at = _open_hours(rooms)
    means = []
    for hour in hours:
        if hour.coverage < MIN_COVERAGE:
            continue
        middle = datetime.fromtimestamp((hour.start_ms + HOUR_MS // 2) / 1000, zone)
        when, day = (middle.weekday(), middle.hour), middle.date()
        if any(when in spans and day not in room.holidays for room, spans in open_at):
            means.append(hour.energy_wh)  # over one hour: Wh = mean W
    return median(means) if means else None


def _open_hours(rooms: Sequence[Occupancy]) -> list[tuple[Occupancy, frozenset[tuple[int, int]]]]:
    """Per occupancy, the (weekday, hour) whose half past it is open."""
    return [(room, _open_table(room)) for room in rooms]


def _open_table(room: Occupancy) -> frozenset[tuple[int, int]]:
    return frozenset(
        (weekday, hour)
        for weekday, name in enumerate(WEEKDAYS)
        for hour in range(24)
        if any(a <= hour * 60 + 30 < b for a, b in room.hours.get(name, ()))
    )


# baseline-deviation


def _holidays(subject: str, ctx: RuleContext) -> frozenset[date]:
    """The subject's holidays: its building's; the campus's: the days all buildings close."""
    calendars = _calendars(subject, ctx)
    if not calendars:
        return frozenset()
    return frozenset.intersection(*(c.holidays for c in calendars))


def _baseline(rule: Rule, subject: str, seen: Observations, ctx: RuleContext) -> Finding | None:
    hours = seen.hours.get(subject, ())
    zone = ctx.tz
    latest = hour_of(seen.now_ms - ctx.ended_ms, zone)
    target = hour_of(latest - 1, zone)
    hour = next((h for h in reversed(hours) if h.start_ms == target), None)
    if hour is None or hour.coverage < MIN_COVERAGE:
        return None
    holidays = _holidays(subject, ctx)
    weeks = int(_param(rule, "weeks"))
    usual = hour_baseline(hours, target, zone, weeks, holidays)
    if usual is None:
        return None
    k, floor_wh = _param(rule, "k"), _param(rule, "min_kwh") * 1000
    x = hour.energy_wh
    holds = usual.deviates(x, k, floor_wh)
    start = local_hour(target, zone)
    day = "holidays and Sundays" if start.date() in holidays else f"{start:%A}s"
    span = f"{start:%a %H:%M}–{local_hour(target + HOUR_MS, zone):%H:%M}"
    side = "above" if x > usual.median else "below"
    detail = (
        f"{_kwh(x)} in {span}, {_kwh(abs(x - usual.median))} {side} the usual "
        f"{_kwh(usual.median)} (median of {usual.samples} {day}; "
        f"unusual beyond ±{_kwh(usual.threshold(k, floor_wh))})"
    )
    return Finding(subject, holds, x / 1000, detail, target if holds else None)


# demand-approaching


def _demand(rule: Rule, subject: str, seen: Observations, ctx: RuleContext) -> Finding | None:
    running = seen.demand.get(subject)
    if running is None or running.power_w is None or running.interval_ms <= 0:
        return None
    projected_kw = projected_demand_kw(running, seen.now_ms)
    contracted = _optional(rule, "contracted_kw")
    billed = [kw for kw in (running.month_peak_kw, running.floor_kw) if kw is not None]
    reference = contracted if contracted is not None else max(billed, default=None)
    if reference is None or reference <= 0:
        return None
    limit = _param(rule, "share") * reference
    holds = projected_kw >= limit
    if not holds and not running.complete:
        return None  # a member has not reported: the projection is too low to clear on
    floored = running.floor_kw is not None and reference == running.floor_kw
    what = (
        "the contracted"
        if contracted is not None
        else "the billed demand's ratchet floor"
        if floored
        else "the month's peak so far"
    )
    minutes = running.interval_ms / 60_000
    detail = (
        f"projected {projected_kw:,.1f} kW for the {minutes:g}-min interval from "
        f"{_clock(running.interval_start_ms, ctx.tz)} ({projected_kw / reference * 100:.0f} % "
        f"of {what} {reference:,.1f} kW)"
    )
    return Finding(subject, holds, projected_kw, detail)


def projected_demand_kw(running: DemandNow, now_ms: int) -> float:
    """(energy so far + power now × time left) / the interval's length, in kW."""
    end = running.interval_start_ms + running.interval_ms
    left_h = max(0, end - now_ms) / HOUR_MS
    power = 0.0 if running.power_w is None else running.power_w
    energy_wh = running.energy_wh + power * left_h
    return energy_wh / (running.interval_ms / HOUR_MS) / 1000


# register-drift


def _drift(rule: Rule, meter: str, seen: Observations, ctx: RuleContext) -> Finding | None:
    span = seen.drift.get(meter)
    if span is None or span.end_ms - span.start_ms < DRIFT_MIN_SPAN_MS:
        return None
    mine, theirs = span.integrated_wh, span.register_wh
    larger = max(abs(mine), abs(theirs))
    if larger < DRIFT_TINY_WH:
        return None
    apart = abs(mine - theirs) / larger * 100
    hours = (span.end_ms - span.start_ms) / HOUR_MS
    detail = (
        f"integrated {_kwh(mine)} against the register's {_kwh(theirs)} over {hours:.0f} h "
        f"to {_clock(span.end_ms, ctx.tz)} ({apart:.1f} % apart)"
    )
    return Finding(meter, apart > _param(rule, "percent"), apart, detail)


EVALUATORS: Mapping[str, Evaluator] = {
    "meter-silent": _meter_silent,
    "coverage-low": _coverage_low,
    "after-hours": _after_hours,
    "baseline-deviation": _baseline,
    "demand-approaching": _demand,
    "register-drift": _drift,
}
