"""A building with rooftop PV behind its meter, and the exact energy it imports and exports.

The meter measures the building's load minus what the PV array gives: its net
power is negative (exporting) when the sun gives more than the building
draws. Net power is piecewise linear between knots `KNOT_S` (five minutes)
apart, and each knot's value is a pure function of (seed, time):

- the sun: a clear-sky half-sine between sunrise and sunset around local
  noon (12:00 in the site's zone), its day length 12 h ± `DAY_SWING_H` and
  its height 75 % ± 25 % of the array's peak, both varying as a cosine over
  the year with the longest, highest day at the June solstice (northern
  seasons: a zone says nothing of the latitude);
- clouds: each knot drawn from the seed, taking away `r ** ((1 − c) / c)` of
  the sun (r uniform in [0, 1), c = cloudiness), whose mean is c: the share of
  the sun clouds take away;
- the building: its base load plus the campus occupancy of the site's local
  time (`calendar.shape`, weekdays and weekends) with a seeded wobble of ±3 %
  per knot — smoother than `load.CampusLoad`, whose one-second knots would
  make a year's split by direction millions of steps instead of a few
  hundred thousand.

Each knot's net power is rounded to float32, the precision a meter's power
register carries, so a meter read at a knot serves it exactly.

Import is ∫ max(P, 0) and export ∫ max(−P, 0): on each straight piece between
two knots the line is split at its zero crossing, so both are exact over any
interval. A day's import and export are tabulated once (288 pieces) and summed
since `load.EPOCH_S`, which makes the registers (a starting value plus the
energy since the epoch) a function of wall-clock time alone, as for a
`CampusLoad`. A pure PV inverter (a generation meter) is a building of no load.

Pure: time comes in as an argument (UTC epoch seconds), nothing reads a clock.
"""

from __future__ import annotations

import functools
import math
import struct
from dataclasses import dataclass, field
from itertools import pairwise
from zoneinfo import ZoneInfo

from campus_energy.meters.simulator.calendar import DAY_S, shape, utc_offset_s, weekday_factor
from campus_energy.meters.simulator.load import EPOCH_S, hash64

KNOT_S = 300  # the net power's knots: five minutes apart, linear in between
KNOTS_PER_DAY = DAY_S // KNOT_S
EPOCH_DAY = EPOCH_S // DAY_S
SOLSTICE_DAY = 19_895  # 2024-06-21, days since 1970-01-01: the longest day
YEAR_DAYS = 365.2422
NOON_S = 43_200  # the sun is highest at 12:00 local time
DAY_H = 12.0
DAY_SWING_H = 2.0  # the longest day is 14 h, the shortest 10 h
HEIGHT = 0.75
HEIGHT_SWING = 0.25  # at noon the array gives 100 % of its peak in June, 50 % in December
WOBBLE = 0.03  # the building's load moves this share either way from knot to knot
LOOP_LIMIT_S = DAY_S  # energy over spans up to this long: summed piece by piece


@functools.lru_cache(maxsize=4096)
def sun_day(local_day: int) -> tuple[float, float, float]:
    """A local day's sunrise (second of the day), day length (s) and noon height (share)."""
    season = math.cos(2 * math.pi * (local_day - SOLSTICE_DAY) / YEAR_DAYS)
    length_s = (DAY_H + DAY_SWING_H * season) * 3600
    return NOON_S - length_s / 2, length_s, HEIGHT + HEIGHT_SWING * season


def sun_share(local_day: int, local_second: float) -> float:
    """The clear sky's share of the array's peak at a local day and second (0 at night)."""
    sunrise_s, length_s, height = sun_day(local_day)
    since_sunrise = local_second - sunrise_s
    if since_sunrise <= 0 or since_sunrise >= length_s:
        return 0.0
    return height * math.sin(math.pi * since_sunrise / length_s)


def clouds_take(draw: float, cloudiness: float) -> float:
    """The share of the sun clouds take away at a knot whose draw (uniform in [0, 1)) is
    `draw`: draw ** ((1 − c) / c), whose mean over many knots is c, the cloudiness."""
    if cloudiness <= 0:
        return 0.0
    if cloudiness >= 1:
        return 1.0
    return float(draw ** ((1 - cloudiness) / cloudiness))


def split_wh(power_a_w: float, power_b_w: float, seconds: float) -> tuple[float, float]:
    """(import, export) in Wh of power moving in a straight line from a to b over `seconds`:
    the area above zero and the area below, split where the line crosses zero."""
    if power_a_w >= 0 and power_b_w >= 0:
        return (power_a_w + power_b_w) * seconds / 7200, 0.0
    if power_a_w <= 0 and power_b_w <= 0:
        return 0.0, -(power_a_w + power_b_w) * seconds / 7200
    crossing_s = seconds * power_a_w / (power_a_w - power_b_w)
    before, after = power_a_w * crossing_s / 7200, power_b_w * (seconds - crossing_s) / 7200
    return (before, -after) if power_a_w > 0 else (after, -before)


def _float32(value: float) -> float:
    return float(struct.unpack(">f", struct.pack(">f", value))[0])


@dataclass(frozen=True)
class Energy:
    """Energy in both directions, in Wh."""

    import_wh: float = 0.0
    export_wh: float = 0.0

    def __add__(self, other: Energy) -> Energy:
        return Energy(self.import_wh + other.import_wh, self.export_wh + other.export_wh)

    def __sub__(self, other: Energy) -> Energy:
        return Energy(self.import_wh - other.import_wh, self.export_wh - other.export_wh)


@dataclass(frozen=True)
class _Day:
    """One UTC day's net power at its knots, and its energy before each knot (Wh)."""

    knots: tuple[float, ...]  # KNOTS_PER_DAY + 1 values: the next day's first knot closes it
    imported: tuple[float, ...]  # from the day's start to each knot
    exported: tuple[float, ...]

    def before(self, n: int) -> Energy:
        """The energy from the day's start to knot n."""
        return Energy(self.imported[n], self.exported[n])

    @property
    def total(self) -> Energy:
        return self.before(KNOTS_PER_DAY)


# Per building (equal buildings share it): the energy from EPOCH_S to the start of day
# EPOCH_DAY + i. A year of days takes about half a second to tabulate, once per process.
_SINCE_EPOCH: dict[SolarBuilding, list[Energy]] = {}


@dataclass(frozen=True)
class SolarBuilding:
    """The net active power of a building with rooftop PV, as a function of UTC time."""

    seed: int
    base_w: float
    peak_w: float  # the building's load at its peak (0 with base_w 0: a generation meter)
    pv_peak_w: float
    cloudiness: float
    zone: ZoneInfo
    _draw_key: int = field(init=False, repr=False, compare=False)
    _days: dict[int, _Day] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if min(self.base_w, self.peak_w, self.pv_peak_w) < 0:
            raise ValueError("base_w, peak_w and pv_peak_w cannot be negative")
        if not 0 <= self.cloudiness <= 1:
            raise ValueError("cloudiness is a share: 0 to 1")
        object.__setattr__(self, "_draw_key", hash64(self.seed, 32))
        object.__setattr__(self, "_days", {})

    @property
    def rated_w(self) -> float:
        """The largest power either way: what the power factor is measured against."""
        return max(self.peak_w, self.base_w, self.pv_peak_w)

    # --- the knots ------------------------------------------------------------------------

    def draws(self, j: int) -> tuple[float, float]:
        """Knot j's two uniform numbers in [0, 1): the building's wobble and the clouds."""
        x = hash64(self._draw_key, j)
        return (x >> 32) / 4_294_967_296.0, (x & 0xFFFF_FFFF) / 4_294_967_296.0

    def parts_w(self, j: int) -> tuple[float, float]:
        """The building's load and what the array gives at knot j (time j × KNOT_S), in W."""
        t = j * KNOT_S
        local = t + utc_offset_s(self.zone, t)
        day, second = divmod(local, DAY_S)
        wobble, cloud = self.draws(j)
        span = max(self.peak_w - self.base_w, 0.0)
        level = self.base_w + span * shape(second) * weekday_factor(day)
        building = level * (1 + WOBBLE * (2 * wobble - 1))
        sun = sun_share(day, second)
        if sun == 0.0:
            return building, 0.0
        return building, self.pv_peak_w * sun * (1 - clouds_take(cloud, self.cloudiness))

    def knot_w(self, j: int) -> float:
        """Net power at knot j (positive: importing), rounded to float32."""
        building, pv = self.parts_w(j)
        return _float32(building - pv)

    def _day(self, day: int) -> _Day:
        found = self._days.get(day)
        if found is None:
            first = day * KNOTS_PER_DAY
            knots = tuple(self.knot_w(first + i) for i in range(KNOTS_PER_DAY + 1))
            imported, exported = [0.0], [0.0]
            for a, b in pairwise(knots):
                i, e = split_wh(a, b, KNOT_S)
                imported.append(imported[-1] + i)
                exported.append(exported[-1] + e)
            if len(self._days) > 8:  # the days around the last reads: reads come in clusters
                self._days.clear()
            found = self._days[day] = _Day(knots, tuple(imported), tuple(exported))
        return found

    def power_w(self, t: float) -> float:
        """Net power at UTC epoch seconds `t` (linear between knots; negative: exporting)."""
        day = math.floor(t / DAY_S)
        i, frac = divmod(t - day * DAY_S, KNOT_S)
        knots = self._day(day).knots
        a = knots[int(i)]
        return a if frac == 0 else a + (knots[int(i) + 1] - a) * frac / KNOT_S

    # --- exact energy ---------------------------------------------------------------------

    def _within_day(self, t: float) -> Energy:
        """Energy from the start of t's UTC day to t."""
        day = math.floor(t / DAY_S)
        found = self._day(day)
        i, frac = divmod(t - day * DAY_S, KNOT_S)
        n = int(i)
        if frac == 0:
            return found.before(n)
        return found.before(n) + Energy(*split_wh(found.knots[n], self.power_w(t), frac))

    def since_epoch(self, t: float) -> Energy:
        """Exact import and export over [EPOCH_S, t] (negative before EPOCH_S)."""
        day = math.floor(t / DAY_S)
        return self._days_before(day) + self._within_day(t)

    def _days_before(self, day: int) -> Energy:
        """The energy of the whole UTC days from EPOCH_DAY to `day` (negative before it)."""
        if day < EPOCH_DAY:
            back = Energy()
            for d in range(day, EPOCH_DAY):
                back = back + self._day(d).total
            return Energy() - back
        sums = _SINCE_EPOCH.setdefault(self, [Energy()])
        while len(sums) <= day - EPOCH_DAY:
            sums.append(sums[-1] + self._day(EPOCH_DAY + len(sums) - 1).total)
        return sums[day - EPOCH_DAY]

    def energy(self, t0: float, t1: float) -> Energy:
        """Exact import and export over [t0, t1] (nothing when t1 <= t0)."""
        if t1 <= t0:
            return Energy()
        if t1 - t0 > LOOP_LIMIT_S:
            return self.since_epoch(t1) - self.since_epoch(t0)
        day0, day1 = math.floor(t0 / DAY_S), math.floor(t1 / DAY_S)
        if day0 == day1:
            return self._within_day(t1) - self._within_day(t0)
        whole = self._day(day0).total
        return whole - self._within_day(t0) + self._within_day(t1)

    def import_wh(self, t0: float, t1: float) -> float:
        """Exact ∫ max(P, 0) dt over [t0, t1], in Wh."""
        return self.energy(t0, t1).import_wh

    def export_wh(self, t0: float, t1: float) -> float:
        """Exact ∫ max(−P, 0) dt over [t0, t1], in Wh."""
        return self.energy(t0, t1).export_wh
