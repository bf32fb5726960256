"""The priced campus of the billing endpoints and the reports: its clock, meters and accounts,
its tariffs as configured, and a quarter hour priced by hand by the rules of docs/billing.md.

Europe/Berlin. "Main" has a main meter and two sub-meters under it; "Annex" has no main
meter (its total is its two top-level meters); "yard-1" is in no building. Main and the
yard are on a time-of-use tariff (night 00-06 every day, peak 08-20 on working weekdays,
2 November 2026 a holiday) with standing and demand charges, the Annex on a flat one.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from zoneinfo import ZoneInfo

ZONE = ZoneInfo("Europe/Berlin")
QUARTER_MS = 900_000
HOLIDAY = date(2026, 11, 2)  # a Monday: no peak rate
METERS = {  # id: (building, floor, role, parent)
    "main-1": ("Main", "0", "main", None),
    "main-f1": ("Main", "1", None, "main-1"),
    "main-f2": ("Main", "2", None, "main-1"),
    "annex-1": ("Annex", "0", None, None),
    "annex-2": ("Annex", "1", None, None),
    "yard-1": ("", "", None, None),
}
MAIN = {"main-1": 1.0}
ANNEX = {"annex-1": 1.0, "annex-2": 1.0}
YARD = {"yard-1": 1.0}
ACCOUNTS = {"Main": MAIN, "Annex": ANNEX, "": YARD}  # what the campus sums
TARIFF_OF = {"Main": "tou", "Annex": "flat", "": "tou"}


def local_ms(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> int:
    return round(datetime(year, month, day, hour, minute, tzinfo=ZONE).timestamp() * 1000)


def local(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC).astimezone(ZONE)


def midnight(day: date) -> int:
    return local_ms(day.year, day.month, day.day)


# -- the tariffs as configured ------------------------------------------------------------------


def tou_tariff(valid_from: date | str, holiday: date | str) -> dict[str, Any]:
    """Main's and the yard's: peak, night and default rates, standing charges per day and per
    month, and a 15-minute demand charge with a ratchet (half the highest of the 11 months
    before) and a minimum (2 kW). A date or its ISO text (a TOML file wants the text)."""
    demand = {"interval_min": 15, "price_per_kw": "10", "ratchet_share": "0.5",
              "ratchet_months": 11, "minimum_kw": "2"}  # fmt: skip
    peak = {"name": "peak", "days": ["weekdays"], "start": "08:00", "end": "20:00", "rate": "0.30"}
    night = {"name": "night", "days": ["all"], "start": "00:00", "end": "06:00", "rate": "0.15"}
    return {
        "id": "tou",
        "currency": "EUR",
        "holidays": [holiday],
        "versions": [
            {
                "valid_from": valid_from,
                "default_rate": "0.20",
                "standing_per_day": "1.50",
                "standing_per_month": "30",
                "periods": [peak, night],
                "demand": demand,
            }
        ],
    }


def flat_tariff(valid_from: date | str) -> dict[str, Any]:
    """The Annex's: one rate and a standing charge per day."""
    return {
        "id": "flat",
        "currency": "EUR",
        "versions": [
            {"valid_from": valid_from, "default_rate": "0.25", "standing_per_day": "0.50"}
        ],
    }


# -- priced by hand -----------------------------------------------------------------------------

KWH = Decimal("0.001")
CENT = Decimal("0.01")
RATES = {
    "tou": {"peak": Decimal("0.30"), "night": Decimal("0.15"), "default": Decimal("0.20")},
    "flat": {"default": Decimal("0.25")},
}


def kwh(wh: float) -> Decimal:
    return (Decimal(wh) / 1000).quantize(KWH, ROUND_HALF_UP)


def money(value: Decimal) -> Decimal:
    return value.quantize(CENT, ROUND_HALF_UP)


def period_of(tariff: str, quarter_ms: int) -> str:
    """The rate of a quarter hour by its local clock: night 00-06 every day, peak 08-20 on
    working weekdays (not the holiday), else the default."""
    if tariff == "flat":
        return "default"
    moment = local(quarter_ms)
    minute = moment.hour * 60 + moment.minute
    if minute < 6 * 60:
        return "night"
    working = moment.weekday() < 5 and moment.date() != HOLIDAY
    return "peak" if working and 8 * 60 <= minute < 20 * 60 else "default"
