"""Baseline quality: do the baseline-deviation and after-hours rules find injected anomalies,
and how often do they alarm on an ordinary day?

Eight weeks (from Monday 2024-09-16, Europe/Berlin, across the autumn clock change of
27 October) of the simulator's deterministic campus load (`meters.simulator.load`) for
three buildings of different size, each measured by one main meter; hourly energies are
exact (the load's closed-form integral), live power is the load at the moment of
evaluation. Injected into weeks 5–8:

- night:   one building's base load doubled for a night (22:00–06:00);
- stuck:   one building's main meter stuck at its reading's power for 24 h;
- closure: one building closed on a weekday that is not in its calendar (a snow day):
           its load that day is the load of the following Sunday, hour by hour.

Configured holidays (in every building's `Occupancy.holidays`, loaded like the following
Sunday too) must not alarm: 3 October (in the history, left out of the Thursdays) and
1 November (evaluated). Over weeks 5–8 the rules are evaluated through
`core.alert_rules.evaluate` and `core.alerts.advance` hour by hour, two minutes past each
hour (baseline-deviation judges the hour just ended, after-hours the power at that moment),
so `for` and `clear_after` count. An anomaly is found when an alert of its building fires
between its start and an hour and a quarter after its end (the hour's energy is judged once
the hour has ended); every other firing is a false positive.

Goal (issue 17): every injected anomaly found, ≤ 1 false positive per building per month.

Run: .venv/bin/python benchmarks/baseline_quality.py [--seed N]
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from campus_energy.core.alert_rules import RuleContext, evaluate
from campus_energy.core.alerts import AlertState, HourEnergy, Observations, Rule, Scope, advance
from campus_energy.core.campus import Building, Campus, MeterPlace, Occupancy
from campus_energy.core.timestamps import datetime_ms, utc_datetime
from campus_energy.meters.simulator.load import CampusLoad

ZONE = ZoneInfo("Europe/Berlin")
FIRST_DAY = date(2024, 9, 16)  # a Monday
WEEKS = 8
EVALUATED_FROM_WEEK = 5  # weeks 1-4 are history only
HOUR_S = 3600
LAG_S = 120  # each evaluation runs this long after its quarter hour
GRACE_S = 60.0
OPEN_HOURS = ((7 * 60, 22 * 60),)  # Monday to Friday, 07:00-22:00
HOLIDAYS = frozenset({date(2024, 10, 3), date(2024, 11, 1)})
# the rules as a site would set them: baseline k, min_kwh as a share of the peak (kWh per kW)
K = 4.0
MIN_KWH_PER_PEAK_KW = 0.1
BASELINE_WEEKS = 6
AFTER_HOURS_SHARE = 0.8
AFTER_HOURS_FOR_S = 1800.0


@dataclass(frozen=True)
class Site:
    name: str
    seed: int
    base_w: float
    peak_w: float


SITES = (
    Site("Admin", 11, 20_000.0, 90_000.0),
    Site("Library", 22, 35_000.0, 110_000.0),
    Site("Labs", 33, 60_000.0, 160_000.0),
)


@dataclass(frozen=True)
class Anomaly:
    building: str
    kind: str  # a key of ANOMALIES
    start_ms: int
    end_ms: int

    def __str__(self) -> str:
        start = utc_datetime(self.start_ms).astimezone(ZONE)
        return f"{self.kind} in {self.building} from {start:%a %Y-%m-%d %H:%M}"


def _local_ms(day: date, hour: int = 0) -> int:
    return datetime_ms(datetime(day.year, day.month, day.day, hour, tzinfo=ZONE))


def _night(building: str, day: date) -> Anomaly:
    return Anomaly(building, "night", _local_ms(day, 22), _local_ms(day + timedelta(days=1), 6))


def _stuck(building: str, day: date, hour: int) -> Anomaly:
    start = _local_ms(day, hour)
    return Anomaly(building, "stuck", start, start + 24 * HOUR_S * 1000)


def _closure(building: str, day: date) -> Anomaly:
    return Anomaly(building, "closure", _local_ms(day), _local_ms(day + timedelta(days=1)))


def injected() -> tuple[Anomaly, ...]:
    return (
        _night("Admin", date(2024, 10, 16)),
        _closure("Labs", date(2024, 10, 22)),
        _stuck("Library", date(2024, 10, 24), 10),
        _night("Library", date(2024, 11, 5)),
        _stuck("Labs", date(2024, 11, 6), 14),
        _closure("Admin", date(2024, 11, 7)),
    )


# -- the load, with what is injected --------------------------------------------------------


def _like_sunday(t_s: float) -> float:
    """The same local wall-clock time on the next Sunday (a day loaded like a Sunday)."""
    local = utc_datetime(round(t_s * 1000)).astimezone(ZONE)
    sunday = local.date() + timedelta(days=6 - local.weekday())
    moved = datetime.combine(sunday, local.time(), tzinfo=ZONE).replace(fold=local.fold)
    return moved.timestamp()


# kind -> (power at t, energy over the hour from t) for a meter during the anomaly
Power = Callable[[CampusLoad, Anomaly, float], float]
Energy = Callable[[CampusLoad, Anomaly, float], float]
ANOMALIES: Mapping[str, tuple[Power, Energy]] = {
    "night": (
        lambda load, _, t: load.power_w(t) + load.base_w,
        lambda load, _, t: _hour(load, t) + load.base_w,  # W over one hour: Wh
    ),
    "stuck": (
        lambda load, a, _: load.power_w(a.start_ms / 1000),
        lambda load, a, _: load.power_w(a.start_ms / 1000),
    ),
    "closure": (
        lambda load, _, t: load.power_w(_like_sunday(t)),
        lambda load, _, t: _hour(load, _like_sunday(t)),
    ),
}


def _hour(load: CampusLoad, t_s: float) -> float:
    return load.energy_since_epoch_wh(t_s + HOUR_S) - load.energy_since_epoch_wh(t_s)


@dataclass(frozen=True)
class Meter:
    """One building's main meter: the load, the anomalies injected into it, its holidays."""

    site: Site
    load: CampusLoad
    anomalies: tuple[Anomaly, ...]

    def _during(self, t_ms: int) -> Anomaly | None:
        for anomaly in self.anomalies:
            if anomaly.start_ms <= t_ms < anomaly.end_ms:
                return anomaly
        if utc_datetime(t_ms).astimezone(ZONE).date() in HOLIDAYS:
            return Anomaly(self.site.name, "closure", t_ms, t_ms + 1)  # loaded like a Sunday
        return None

    def power_w(self, t_ms: int) -> float:
        anomaly = self._during(t_ms)
        if anomaly is None:
            return self.load.power_w(t_ms / 1000)
        return ANOMALIES[anomaly.kind][0](self.load, anomaly, t_ms / 1000)

    def hour_wh(self, start_ms: int) -> float:
        anomaly = self._during(start_ms)
        if anomaly is None:
            return _hour(self.load, start_ms / 1000)
        return ANOMALIES[anomaly.kind][1](self.load, anomaly, start_ms / 1000)


# -- the evaluation -------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    month: str  # local YYYY-MM
    building: str
    injected: int
    found: int
    false_positives: int


@dataclass(frozen=True)
class Quality:
    rows: tuple[Row, ...]
    detections: tuple[str, ...]  # each anomaly and the rules that fired during it
    missed: tuple[str, ...]  # the anomalies no alert found
    false_alarms: tuple[str, ...]  # each false positive: rule, when, what it said

    @property
    def injected(self) -> int:
        return sum(r.injected for r in self.rows)

    @property
    def found(self) -> int:
        return sum(r.found for r in self.rows)

    @property
    def false_positives(self) -> int:
        return sum(r.false_positives for r in self.rows)

    @property
    def worst_false_positives(self) -> int:
        return max((r.false_positives for r in self.rows), default=0)

    @property
    def goal_met(self) -> bool:
        return self.found == self.injected and self.worst_false_positives <= 1


def campus() -> Campus:
    days = {day: OPEN_HOURS for day in ("mon", "tue", "wed", "thu", "fri")}
    occupancy = Occupancy(days, HOLIDAYS)
    return Campus(
        tuple(Building(s.name, occupancy=occupancy) for s in SITES),
        tuple(MeterPlace(f"{s.name.lower()}-main", s.name, "main") for s in SITES),
    )


def rules() -> tuple[Rule, ...]:
    found: list[Rule] = []
    for site in SITES:
        scope = Scope("building", site.name)
        min_kwh = MIN_KWH_PER_PEAK_KW * site.peak_w / 1000
        found.append(
            Rule(
                f"baseline-{site.name}",
                "baseline-deviation",
                scope,
                clear_after_s=HOUR_S,
                params={"k": K, "min_kwh": min_kwh, "weeks": BASELINE_WEEKS},
            )
        )
        found.append(
            Rule(
                f"after-hours-{site.name}",
                "after-hours",
                scope,
                for_s=AFTER_HOURS_FOR_S,
                clear_after_s=AFTER_HOURS_FOR_S,
                params={"above_share": AFTER_HOURS_SHARE},
            )
        )
    return tuple(found)


def run(seed: int = 1) -> Quality:
    """The scenario for one seed of the load (the buildings' seeds are derived from it)."""
    anomalies = injected()
    meters = {
        s.name: Meter(
            s,
            CampusLoad(seed * 1000 + s.seed, s.base_w, s.peak_w, ZONE),
            tuple(a for a in anomalies if a.building == s.name),
        )
        for s in SITES
    }
    first_ms = _local_ms(FIRST_DAY)
    end_ms = _local_ms(FIRST_DAY + timedelta(weeks=WEEKS))
    hours = {
        name: tuple(
            HourEnergy(t, meter.hour_wh(t), 1.0) for t in range(first_ms, end_ms, HOUR_S * 1000)
        )
        for name, meter in meters.items()
    }
    context = RuleContext(campus(), ZONE.key, 300, GRACE_S, {})
    history = BASELINE_WEEKS * 7 * 24 + 24
    states: dict[str, AlertState | None] = {r.name: None for r in rules()}
    firings: list[tuple[Rule, int, str]] = []
    start_ms = _local_ms(FIRST_DAY + timedelta(weeks=EVALUATED_FROM_WEEK - 1))
    for step_ms in range(start_ms, end_ms, HOUR_S * 1000):
        now_ms = step_ms + LAG_S * 1000
        ended = (step_ms - first_ms) // (HOUR_S * 1000)  # hours[:ended] have ended
        for rule in rules():
            name = rule.scope.name
            seen = Observations(
                now_ms,
                ZONE.key,
                hours={name: hours[name][max(0, ended - history) : ended]},
                power_w={name: meters[name].power_w(now_ms)},
            )
            for finding in evaluate(rule, [name], seen, context):
                state, transition = advance(rule, states[rule.name], finding, now_ms)
                states[rule.name] = state
                if transition is not None and transition.event == "firing":
                    firings.append((rule, now_ms, finding.detail))
    return _score(anomalies, firings)


def _month(ms: int) -> str:
    return f"{utc_datetime(ms).astimezone(ZONE):%Y-%m}"


def _score(anomalies: Sequence[Anomaly], firings: Sequence[tuple[Rule, int, str]]) -> Quality:
    lag_ms = (HOUR_S + 15 * 60) * 1000
    by: dict[Anomaly, list[str]] = {a: [] for a in anomalies}
    false: list[tuple[Rule, int, str]] = []
    for rule, at_ms, detail in firings:
        hits = [
            a
            for a in anomalies
            if a.building == rule.scope.name and a.start_ms <= at_ms <= a.end_ms + lag_ms
        ]
        for hit in hits:
            by[hit].append(rule.kind)
        if not hits:
            false.append((rule, at_ms, detail))
    found = {a for a, kinds in by.items() if kinds}
    months = sorted({_month(a.start_ms) for a in anomalies} | {_month(f[1]) for f in false})
    rows = tuple(
        Row(
            month,
            site.name,
            sum(1 for a in anomalies if a.building == site.name and _month(a.start_ms) == month),
            sum(1 for a in found if a.building == site.name and _month(a.start_ms) == month),
            sum(1 for r, at, _ in false if r.scope.name == site.name and _month(at) == month),
        )
        for month in months
        for site in SITES
    )
    detections = tuple(f"{a}: {', '.join(sorted(set(by[a]))) or 'missed'}" for a in anomalies)
    missed = tuple(str(a) for a in anomalies if a not in found)
    alarms = tuple(
        f"{rule.name} at {utc_datetime(at).astimezone(ZONE):%a %Y-%m-%d %H:%M}: {detail}"
        for rule, at, detail in false
    )
    return Quality(rows, detections, missed, alarms)


def table(quality: Quality) -> str:
    lines = [
        f"{'month':<8} {'building':<9} {'injected':>8} {'found':>6} {'false +':>8}",
        *(
            f"{r.month:<8} {r.building:<9} {r.injected:>8} {r.found:>6} {r.false_positives:>8}"
            for r in quality.rows
        ),
        f"{'total':<18} {quality.injected:>8} {quality.found:>6} {quality.false_positives:>8}",
    ]
    verdict = "met" if quality.goal_met else "NOT met"
    lines.append(
        f"goal (every anomaly found, ≤ 1 false positive per building per month): {verdict}"
    )
    lines += [f"  {d}" for d in quality.detections]
    lines += [f"false positive: {f}" for f in quality.false_alarms]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    print(table(run(args.seed)))


if __name__ == "__main__":
    main()
