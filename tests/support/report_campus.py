"""A priced campus of windows for the reports, and its books kept by hand.

Europe/Berlin. "Main" has a main meter and two sub-meters under it (opening hours on
weekdays and Saturday morning, 2 November 2026 a holiday); "Annex" has no main meter (its
total is its two top-level meters; open on weekdays); "yard-1" is in no building. Main and
the yard are on a time-of-use tariff with standing and demand charges, the Annex on a flat
one; an annual grid factor prices CO₂.

Every meter writes one 900 s window per quarter hour over
24 October – 1 December 2026 (across the autumn change) and over 16–24 November 2025
(the same ISO week a year before, and part of that November). Main has a spike on
Thursday 19 November 2026 at 14:15; main-f2 is silent on 13 November 10:00–12:00, the
yard on 18–19 November; annex-2's windows on 20 November cover half their length.

The campus, its tariffs and the pricing of a quarter hour are tests/support/priced_campus.py.
`Books` knows nothing of the code: it sums the windows per quarter hour and prices them
by the rules of docs/billing.md.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

from tests.support.config import campus_meters
from tests.support.priced_campus import (
    ACCOUNTS,
    HOLIDAY,
    KWH,
    METERS,
    QUARTER_MS,
    RATES,
    TARIFF_OF,
    flat_tariff,
    kwh,
    local,
    local_ms,
    midnight,
    money,
    period_of,
    tou_tariff,
)
from tests.support.sinks import KnownWindow, merge, window_deltas

from campus_energy.config import Config, parse_config

WINDOW_S = 900  # one window per quarter hour: a small store that covers its time
RANGES = ((date(2025, 11, 16), date(2025, 11, 25)), (date(2026, 10, 24), date(2026, 12, 2)))
# local opening hours: weekday index -> [start, end) minutes
OPEN = {
    "Main": {0: [(480, 1080)], 1: [(480, 1080)], 2: [(480, 1080)], 3: [(480, 1080)],
             4: [(480, 1080)], 5: [(540, 720)]},
    "Annex": {d: [(420, 1140)] for d in range(5)},
}  # fmt: skip
HOLIDAYS = {"Main": {HOLIDAY}, "Annex": set()}

SPIKE_MS = local_ms(2026, 11, 19, 14, 15)
F2_GAP = (local_ms(2026, 11, 13, 10), local_ms(2026, 11, 13, 12))
YARD_GAP = (midnight(date(2026, 11, 18)), midnight(date(2026, 11, 20)))
HALF_DAY = (midnight(date(2026, 11, 20)), midnight(date(2026, 11, 21)))


def energies(k: int, quarter_ms: int) -> dict[str, float]:
    """Each meter's energy (Wh) in the k-th quarter hour; the main meter holds its sub-meters."""
    moment = local(quarter_ms)
    working = moment.weekday() < 5 and 7 <= moment.hour < 19
    load = 2.5 if working else 1.0
    f1 = (30 + (k * 13 % 29) * 1.37) * load
    f2 = (20 + (k * 7 % 17) * 2.11) * load
    rest = 15 + (k * 5 % 11) * 0.93 + (900.0 if quarter_ms == SPIKE_MS else 0.0)
    found = {
        "main-1": f1 + f2 + rest,
        "main-f1": f1,
        "main-f2": f2,
        "annex-1": (25 + (k * 11 % 23) * 1.13) * load,
        "annex-2": 10 + (k * 3 % 7) * 3.07,
        "yard-1": 5 + (k % 5) * 0.71,
    }
    if F2_GAP[0] <= quarter_ms < F2_GAP[1]:
        del found["main-f2"]
    if YARD_GAP[0] <= quarter_ms < YARD_GAP[1]:
        del found["yard-1"]
    return found


def windows() -> list[KnownWindow]:
    found = []
    for first, after in RANGES:
        quarters = range(midnight(first), midnight(after), QUARTER_MS)
        for k, quarter in enumerate(quarters):
            start = quarter
            for meter, wh in energies(k, quarter).items():
                half = meter == "annex-2" and HALF_DAY[0] <= quarter < HALF_DAY[1]
                found.append(KnownWindow(meter, start, wh, WINDOW_S / 2 if half else WINDOW_S, 0.0))
    return found


def config_data(folder: Path) -> dict[str, Any]:
    return {
        "site": {
            "name": "Report Campus",
            "timezone": "Europe/Berlin",
            "tariff": "tou",
            "buildings": [
                {
                    "name": "Main",
                    "floor_area_m2": 1000,
                    "occupancy": {
                        **{d: ["08:00-18:00"] for d in ("mon", "tue", "wed", "thu", "fri")},
                        "sat": ["09:00-12:00"],
                        "holidays": [HOLIDAY.isoformat()],
                    },
                },
                {
                    "name": "Annex",
                    "floor_area_m2": 400,
                    "tariff": "flat",
                    "occupancy": {d: ["07:00-19:00"] for d in ("mon", "tue", "wed", "thu", "fri")},
                },
            ],
        },
        "bridge": {"window_s": WINDOW_S, "grace_s": 60, "sqlite": {"path": str(folder / "w.db")}},
        "buses": [{"name": "b", "transport": "tcp", "host": "127.0.0.1"}],
        "meters": campus_meters(METERS),
        "tariffs": [tou_tariff("2025-01-01", HOLIDAY.isoformat()), flat_tariff("2025-01-01")],
        "emissions": {"factors": [{"valid_from": "2025-01-01", "kg_per_kwh": "0.4"}]},
        "alerts": {
            "state_path": str(folder / "alerts.db"),
            "channels": [
                {
                    "name": "mail",
                    "kind": "email",
                    "host": "127.0.0.1",
                    "port": 2525,
                    "security": "none",
                    "sender": "energy@campus.example",
                    "recipients": ["facilities@campus.example"],
                }
            ],
        },
        "reports": [
            {"name": "monthly", "every": "month", "day": 1, "at": "07:00", "channel": "mail"},
            {
                "name": "annex-weekly",
                "every": "week",
                "day": "mon",
                "at": "06:30",
                "building": "Annex",
                "channel": "mail",
                "recipients": ["annex@campus.example"],
                "attach": ["csv"],
            },
        ],
    }


def write(config: Config, items: list[KnownWindow]) -> None:
    """The windows merged through the real sink, as the bridge writes them."""
    merge(config, window_deltas(items, WINDOW_S, METERS), midnight(date(2026, 12, 2)))


def build(folder: Path) -> tuple[Config, list[KnownWindow]]:
    config = parse_config(config_data(folder))
    items = windows()
    write(config, items)
    return config, items


# -- the books ----------------------------------------------------------------------------------


def is_closed(building: str, quarter_ms: int) -> bool:
    moment = local(quarter_ms)
    if moment.date() in HOLIDAYS[building]:
        return True
    minute = moment.hour * 60 + moment.minute
    spans = OPEN[building].get(moment.weekday(), [])
    return not any(a <= minute < b for a, b in spans)


class Books:
    """The windows summed per meter per quarter hour (UTC ms of its start)."""

    def __init__(self, items: list[KnownWindow]) -> None:
        self.quarters: dict[str, dict[int, float]] = defaultdict(dict)
        self.covered: dict[str, dict[int, float]] = defaultdict(dict)
        for w in items:
            quarter = w.start_ms - w.start_ms % QUARTER_MS
            mine = self.quarters[w.meter_id]
            mine[quarter] = mine.get(quarter, 0.0) + w.energy_wh
            self.covered[w.meter_id][w.start_ms] = w.covered_s

    def scope(self, terms: Mapping[str, float], first: date, last: date) -> dict[int, float]:
        lo, hi = midnight(first), midnight(last + timedelta(days=1))
        found: dict[int, float] = defaultdict(float)
        for meter, weight in terms.items():
            for quarter, wh in self.quarters[meter].items():
                if lo <= quarter < hi:
                    found[quarter] += weight * wh
        return dict(found)

    def energy_wh(self, terms: Mapping[str, float], first: date, last: date) -> float:
        return sum(self.scope(terms, first, last).values())

    def has_data(self, terms: Mapping[str, float], first: date, last: date) -> bool:
        return bool(self.scope(terms, first, last))

    def peak(self, terms: Mapping[str, float], first: date, last: date) -> tuple[Decimal, int]:
        """The highest quarter-hour demand (kW) and its start; the earliest of equals."""
        quarters = self.scope(terms, first, last)
        start = max(sorted(quarters), key=lambda q: quarters[q])
        return Decimal(quarters[start] * 4 / 1000).quantize(KWH, ROUND_HALF_UP), start

    def energy_cost(self, account: str, first: date, last: date) -> Decimal:
        tariff = TARIFF_OF[account]
        per: dict[str, float] = defaultdict(float)
        for quarter, wh in self.scope(ACCOUNTS[account], first, last).items():
            per[period_of(tariff, quarter)] += wh
        return sum((money(kwh(wh) * RATES[tariff][p]) for p, wh in per.items()), Decimal(0))

    def week_cost(self, account: str, first: date, last: date) -> Decimal:
        """Energy and standing charges of days inside one month; no demand charge."""
        days = (last - first).days + 1
        total = self.energy_cost(account, first, last)
        if TARIFF_OF[account] == "flat":
            return total + money(days * Decimal("0.50"))
        after = date(first.year + first.month // 12, first.month % 12 + 1, 1)
        length = (after - first.replace(day=1)).days
        return total + money(days * Decimal("1.50")) + money(Decimal(30) * days / length)

    def after_hours_wh(self, building: str, terms: Mapping[str, float], first: date,
                       last: date) -> float:  # fmt: skip
        return sum(wh for q, wh in self.scope(terms, first, last).items() if is_closed(building, q))

    def coverage(self, meter: str, first: date, last: date) -> float:
        lo, hi = midnight(first), midnight(last + timedelta(days=1))
        covered = sum(s for start, s in self.covered[meter].items() if lo <= start < hi)
        return covered / ((hi - lo) / 1000)
