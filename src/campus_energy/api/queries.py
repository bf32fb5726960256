"""Turning request parameters into ranges and source rows into answers. Pure, no Flask, no I/O."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from campus_energy.accounts.statements import parse_month
from campus_energy.api.directions import Energy, by_group
from campus_energy.backends.base import Bucket, Grain, MeterLatest
from campus_energy.core.days import hour_of, local_date, midnight_ms
from campus_energy.core.demand import Month
from campus_energy.core.tariffs import DEMAND_INTERVALS_MIN
from campus_energy.core.timestamps import iso_utc
from campus_energy.errors import CampusEnergyError

MAX_POINTS = 10_000
MAX_RANGE_DAYS = 3660
DEMAND_INTERVALS = tuple(str(m) for m in DEMAND_INTERVALS_MIN)
PERIODS = ("today", "week", "month")  # the summary's
STEPS: dict[str, tuple[Grain, int]] = {
    "5m": ("window", 300),
    "1h": ("hour", 3600),
    "1d": ("day", 86400),
}


class BadParameter(CampusEnergyError):
    def __init__(self, name: str, message: str) -> None:
        self.name = name
        super().__init__(f"{name}: {message}")


class NotFound(CampusEnergyError):
    pass


def parse_day(name: str, value: str | None, default: date) -> date:
    if value is None or value == "":
        return default
    try:
        if len(value) != 10:
            raise ValueError
        day = date.fromisoformat(value)
    except ValueError:
        raise BadParameter(name, f"must be a date YYYY-MM-DD, got {value[:40]!r}") from None
    if not 2000 <= day.year <= 2099:
        raise BadParameter(name, "must lie between 2000 and 2099")
    return day


def parse_instant(name: str, value: str | None, zone: ZoneInfo) -> int | None:
    """ISO 8601 with a zone, or a local day (its midnight), to epoch ms."""
    if value is None or value == "":
        return None
    text = value.strip()
    if len(text) == 10:
        return midnight_ms(parse_day(name, text, date.today()), zone)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise BadParameter(
            name, f"must be ISO 8601 (e.g. 2026-01-02T03:04:05Z), got {text[:40]!r}"
        ) from None
    if moment.tzinfo is None:
        raise BadParameter(name, "needs a time zone (e.g. a trailing Z for UTC)")
    try:
        ms = moment.timestamp() * 1000
    except (OverflowError, ValueError):
        raise BadParameter(name, "is out of range") from None
    if not 946_684_800_000 <= ms <= 4_102_444_800_000:  # 2000 .. 2100
        raise BadParameter(name, "must lie between 2000 and 2100")
    return round(ms)


def day_range(start: str | None, end: str | None, today: date, max_days: int) -> tuple[date, date]:
    """`start_date` and `end_date` (local days, inclusive; default today), at most `max_days`."""
    first = parse_day("start_date", start, today)
    last = parse_day("end_date", end, today)
    if last < first:
        raise BadParameter("end_date", "must not be before start_date")
    if (last - first).days >= max_days:
        raise BadParameter("end_date", f"the range may span at most {max_days} days")
    return first, last


def parse_month_of(name: str, value: str | None, default: Month) -> Month:
    """A local calendar month 'YYYY-MM' (default: `default`)."""
    if value is None or value == "":
        return default
    try:
        return parse_month(value)
    except ValueError as exc:
        raise BadParameter(name, str(exc)) from None


def parse_interval(name: str, value: str | None) -> int | None:
    """A demand interval in minutes (None: the tariff's)."""
    if value is None or value == "":
        return None
    if value not in DEMAND_INTERVALS:
        choices = ", ".join(DEMAND_INTERVALS)
        raise BadParameter(name, f"must be one of {choices} (minutes), got {value[:20]!r}")
    return int(value)


@dataclass(frozen=True)
class Period:
    """today / this week (from Monday) / this month, as local days."""

    today: date
    week_start: date
    month_start: date

    @classmethod
    def at(cls, now_ms: int, zone: ZoneInfo) -> Period:
        today = local_date(now_ms, zone)
        return cls(today, today - timedelta(days=today.weekday()), today.replace(day=1))


@dataclass(frozen=True)
class Point:
    """A step of a series: `energy_wh` is the measured import (as it always was),
    `avg_power_w` the net (signed: negative while a meter feeds the grid)."""

    t_ms: int
    energy_wh: float
    avg_power_w: float | None
    coverage: float
    day: str | None = None
    export_wh: float = 0.0
    estimated_wh: float = 0.0
    estimated_export_wh: float = 0.0
    net_wh: float | None = None  # None: energy_wh − export_wh

    def as_json(self) -> dict[str, object]:
        net = self.energy_wh - self.export_wh if self.net_wh is None else self.net_wh
        body: dict[str, object] = {
            "t": iso_utc(self.t_ms).replace(".000Z", "Z"),
            "energy_wh": self.energy_wh,
            "avg_power_w": self.avg_power_w,
            "coverage": self.coverage,
            "export_wh": round_wh(self.export_wh),
            "net_wh": round_wh(net),
            "estimated_wh": round_wh(self.estimated_wh),
            "estimated_export_wh": round_wh(self.estimated_export_wh),
        }
        if self.day is not None:
            body["date"] = self.day
        return body


def series_points(
    buckets: Iterable[Bucket], grain: Grain, step_s: int, meters_in_scope: int, zone: ZoneInfo
) -> list[Point]:
    """One point per step: Σ energy (each direction and kind), coverage of the scope, and
    the average (net) power.

    A step may hold several buckets of one meter (windows shorter than the step), so
    each meter's average is its net energy over its covered time in the whole step; the
    step's power is the sum of those averages over the meters that reported. Estimated
    energy covers no time: it is in neither power nor coverage.
    """
    per_meter: dict[tuple[int | str, str], list[float]] = defaultdict(lambda: [0.0] * 5)
    for b in buckets:
        sums = per_meter[(b.key, b.meter_id)]
        sums[0] += b.energy_wh
        sums[1] += b.covered_s
        sums[2] += b.export_wh
        sums[3] += b.estimated_wh
        sums[4] += b.estimated_export_wh
    energy: dict[int | str, list[float]] = defaultdict(lambda: [0.0] * 4)
    power: dict[int | str, float] = defaultdict(float)
    covered: dict[int | str, float] = defaultdict(float)
    for (key, _), (energy_wh, covered_s, export, guessed, guessed_export) in per_meter.items():
        sums = energy[key]
        sums[0] += energy_wh
        sums[1] += export
        sums[2] += guessed
        sums[3] += guessed_export
        covered[key] += covered_s
        if covered_s > 0:
            power[key] += (energy_wh - export) * 3600 / covered_s
    points = []
    for key in sorted(energy, key=str):
        start, length_s = step_of(key, grain, step_s, zone)
        possible = length_s * max(1, meters_in_scope)
        imported, export, guessed, guessed_export = energy[key]
        points.append(
            Point(
                t_ms=start,
                energy_wh=round_wh(imported),
                avg_power_w=round_w(power[key]) if covered[key] > 0 else None,
                coverage=round_share(min(1.0, covered[key] / possible) if possible else 0.0),
                day=key if grain == "day" else None,  # type: ignore[arg-type]
                export_wh=export,
                estimated_wh=guessed,
                estimated_export_wh=guessed_export,
                net_wh=imported - export,
            )
        )
    points.sort(key=lambda p: p.t_ms)
    return points


def step_of(key: int | str, grain: Grain, step_s: int, zone: ZoneInfo) -> tuple[int, float]:
    """A step's start (epoch ms) and length (s): a local day lasts 23 to 25 hours."""
    if grain == "day":
        day = date.fromisoformat(str(key))
        start = midnight_ms(day, zone)
        return start, (midnight_ms(day + timedelta(days=1), zone) - start) / 1000
    return int(key), float(step_s)


def weighted(i: int, pairs: Iterable[tuple[float, Sequence[float]]]) -> float:
    """Σ weight × the i-th sum of each member: (weight, sums) pairs."""
    return math.fsum(w * m[i] for w, m in pairs)


def virtual_points(
    buckets: Iterable[Bucket],
    grain: Grain,
    step_s: int,
    terms: Mapping[str, float],
    zone: ZoneInfo,
) -> list[Point]:
    """One point per step of a virtual meter (`terms`: meter id -> weight), from its members'
    buckets: each energy (direction and kind) Σ weight × each member's; coverage the least
    covered member's, a member without data in the step covering nothing (its energy is
    never filled in); power Σ weight × each member's average net power, only when every
    member covered some time."""
    sums: dict[tuple[int | str, str], list[float]] = defaultdict(lambda: [0.0] * 5)
    for b in buckets:
        if b.meter_id in terms:
            found = sums[(b.key, b.meter_id)]
            found[0] += b.energy_wh
            found[1] += b.covered_s
            found[2] += b.export_wh
            found[3] += b.estimated_wh
            found[4] += b.estimated_export_wh
    points = []
    nothing = (0.0,) * 5
    for key in sorted({k for k, _ in sums}, key=str):
        start, length_s = step_of(key, grain, step_s, zone)
        members = [sums.get((key, m), nothing) for m in terms]
        pairs = list(zip(terms.values(), members, strict=True))
        least = min(m[1] for m in members)
        power = math.fsum(w * (m[0] - m[2]) * 3600 / m[1] for w, m in pairs) if least > 0 else None
        points.append(
            Point(
                t_ms=start,
                energy_wh=round_wh(weighted(0, pairs)),
                avg_power_w=rounded(power, round_w),
                coverage=round_share(min(1.0, least / length_s)),
                day=str(key) if grain == "day" else None,
                export_wh=weighted(2, pairs),
                estimated_wh=weighted(3, pairs),
                estimated_export_wh=weighted(4, pairs),
                net_wh=math.fsum(w * (m[0] - m[2]) for w, m in pairs),
            )
        )
    points.sort(key=lambda p: p.t_ms)
    return points


def virtual_answer(
    buckets: Iterable[Bucket],
    grain: Grain,
    step_s: int,
    terms: Mapping[str, float],
    zone: ZoneInfo,
) -> list[dict[str, Any]]:
    """The points of `/api/series?virtual=` from the members' buckets of `series_span`."""
    if grain == "window":
        buckets = [replace(b, key=int(b.key) - int(b.key) % 300_000) for b in buckets]
    return [p.as_json() for p in virtual_points(buckets, grain, step_s, terms, zone)]


# Answers carry no more digits than the books hold: energy in µWh (the windows sum
# readings whose energy is exact to far below that), power in mW, shares to 1e-6.
def round_wh(wh: float) -> float:
    return float(round(wh, 6))


def round_w(w: float) -> float:
    return float(round(w, 3))


def round_share(share: float) -> float:
    return round(share, 6)


def kwh(wh: float) -> float:
    return round(wh / 1000, 6)


def finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def rounded(value: float | None, how: Callable[[float], float]) -> float | None:
    return None if value is None else how(value)


def iso(ms: int | None) -> str | None:
    """An instant as the answers write it: ISO 8601 UTC, milliseconds only when not zero."""
    return None if ms is None else iso_utc(ms).replace(".000Z", "Z")


def last_window_ms(meters: Iterable[MeterLatest]) -> int | None:
    return max((m.last_window_ms for m in meters if m.last_window_ms is not None), default=None)


# -- answers -------------------------------------------------------------------------------------


def health_detail(meters: Sequence[MeterLatest], online: Sequence[MeterLatest]) -> str:
    """Why the health status is what it is, in words."""
    if not any(m.last_window_ms is not None for m in meters):
        return "no windows yet"
    silent = sorted({m.meter_id for m in meters} - {m.meter_id for m in online})
    if not silent:
        return f"all {len(meters)} meters reporting"
    named = ", ".join(silent[:5]) + (f" and {len(silent) - 5} more" if len(silent) > 5 else "")
    return f"{len(silent)} of {len(meters)} meters not reporting: {named}"


def summary_answer(
    meters: Sequence[MeterLatest],
    online: Sequence[MeterLatest],
    month: Sequence[Bucket],
    week: Sequence[Bucket],
    now_ms: int,
    zone: ZoneInfo,
    uncounted: Collection[str] = frozenset(),
    basis: Callable[[str], str] | None = None,
) -> dict[str, Any]:
    """`/api/summary`: power now and energy today, this week and this month, campus-wide and
    per building. `month` holds the day buckets of this month up to today, `week` those
    from this week's Monday (the month's again when the week began within it); `online`
    the meters reporting now. Meters in `uncounted` (inside another meter's total) add to
    no sum; `basis` says how each building's total is made."""
    period = Period.at(now_ms, zone)
    building_of = {m.meter_id: m.building for m in meters}
    month = [b for b in month if b.meter_id not in uncounted]
    week = [b for b in week if b.meter_id not in uncounted]
    today = [b for b in month if b.key == period.today.isoformat()]
    this_week = [b for b in week if str(b.key) >= period.week_start.isoformat()]
    power = {m.meter_id: finite(m.power_w) or 0.0 for m in online if m.meter_id not in uncounted}

    def group(meter: str) -> str:
        return building_of.get(meter, "")

    per = {
        "today": by_group(today, group),
        "week": by_group(this_week, group),
        "month": by_group(month, group),
    }
    whole = {period: sum(found.values(), Energy()) for period, found in per.items()}
    total_today = whole["today"].import_wh
    buildings = sorted({m.building for m in meters})

    def figures(energy: Mapping[str, Energy]) -> dict[str, float]:
        """today/week/month: the measured import (`<period>_kwh`), then the added figures."""
        found = {f"{p}_kwh": kwh(energy[p].import_wh) for p in PERIODS}
        for p in PERIODS:
            found.update(energy[p].added(kwh, p))
        return found

    def building(name: str) -> dict[str, Any]:
        energy = {p: per[p].get(name, Energy()) for p in PERIODS}
        share = energy["today"].import_wh / total_today if total_today > 0 else 0.0
        return {
            "building": name,
            "power_w": round_w(sum(p for mid, p in power.items() if building_of[mid] == name)),
            **figures(energy),
            "share_today": round(share, 4) if total_today > 0 else 0.0,
            **({"basis": basis(name)} if basis is not None and name else {}),
        }

    return {
        "timezone": zone.key,
        "generated_at": iso(now_ms - now_ms % 1000),
        "last_window": iso(last_window_ms(meters)),
        "power_w": round_w(sum(power.values())),
        "meters": len(meters),
        "meters_online": len(online),
        **figures(whole),
        "buildings": [building(name) for name in buildings],
    }


def series_span(
    grain: Grain, start_ms: int, end_ms: int, zone: ZoneInfo
) -> tuple[int | str, int | str]:
    """The keys of the buckets a series from start to end reads: its local days, or from the
    local hour (or 5-minute step) containing start."""
    if grain == "day":
        first = local_date(start_ms, zone)
        after = local_date(end_ms - 1, zone) + timedelta(days=1)
        return first.isoformat(), after.isoformat()
    aligned = hour_of(start_ms, zone) if grain == "hour" else start_ms - start_ms % 300_000
    return aligned, end_ms


def series_answer(
    buckets: Iterable[Bucket], grain: Grain, step_s: int, meters_in_scope: int, zone: ZoneInfo
) -> list[dict[str, Any]]:
    """The points of `/api/series` from the buckets of `series_span`; windows of any length
    go into the 5-minute steps they start in."""
    if grain == "window":
        buckets = [replace(b, key=int(b.key) - int(b.key) % 300_000) for b in buckets]
    return [p.as_json() for p in series_points(buckets, grain, step_s, meters_in_scope, zone)]
