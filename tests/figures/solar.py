"""Campuses with rooftop solar and bridged gaps, on the days the clocks change.

Europe/Berlin: 2026-03-29 has 23 hours (02:00 → 03:00), 2026-10-25 has 25 (03:00
→ 02:00). Two buildings carry a solar array (ECE beside an ordinary meter, the
Solar Hall alone), so their power goes negative around noon and energy flows
both ways; some outages are bridged by the meters' registers (estimated energy,
across a local midnight and across the repeated hour), one is not (coverage
falls, nothing is estimated).
"""

from __future__ import annotations

from tests.figures.books import Scenario, local_ms, utc_ms

ZONE = "Europe/Berlin"
METERS = {
    "ece-1": ("ECE", "1"),
    "ece-2": ("ECE", "R"),  # the roof: solar
    "lib-1": ("Library", "G"),
    "sun-1": ("Solar Hall", "R"),  # solar
}
PV = ("ece-2", "sun-1")
# a virtual meter with a negative term: every direction and kind is weighted
VIRTUAL = {"virtual_meters": [{"id": "ece-rest", "building": "ECE", "terms": "ece-1 - ece-2"}]}


def spring(window_s: int = 60) -> Scenario:
    """Three days to 13:00 on the 23-hour day: now is just past noon, the arrays export."""
    return Scenario(
        f"berlin-spring-{window_s}s", ZONE, window_s,
        local_ms(ZONE, 2026, 3, 27), local_ms(ZONE, 2026, 3, 29, 13), 30, METERS,
        offline={"ece-1": (local_ms(ZONE, 2026, 3, 28, 15), local_ms(ZONE, 2026, 3, 28, 16))},
        pv=PV,
        bridged={
            "lib-1": (local_ms(ZONE, 2026, 3, 28, 10, 2), local_ms(ZONE, 2026, 3, 28, 10, 47)),
            # today, over the noon of the solar hall: an estimated export
            "sun-1": (local_ms(ZONE, 2026, 3, 29, 11, 31), local_ms(ZONE, 2026, 3, 29, 12, 14)),
            # over the hour the clocks skip
            "ece-2": (local_ms(ZONE, 2026, 3, 29, 1, 40), local_ms(ZONE, 2026, 3, 29, 3, 20)),
        },
    )  # fmt: skip


def fall(window_s: int = 300) -> Scenario:
    """Three days to 22:00 on the 25-hour day."""
    return Scenario(
        f"berlin-fall-{window_s}s", ZONE, window_s,
        local_ms(ZONE, 2026, 10, 23), local_ms(ZONE, 2026, 10, 25, 22), 60, METERS,
        offline={"lib-1": (local_ms(ZONE, 2026, 10, 24, 8), local_ms(ZONE, 2026, 10, 24, 9))},
        pv=PV,
        bridged={
            # across a local midnight
            "ece-1": (local_ms(ZONE, 2026, 10, 23, 23, 50), local_ms(ZONE, 2026, 10, 24, 0, 35)),
            # across the repeated hour: 01:40 CEST to 02:20 CET
            "lib-1": (utc_ms(2026, 10, 24, 23, 40), utc_ms(2026, 10, 25, 1, 20)),
            "sun-1": (local_ms(ZONE, 2026, 10, 25, 11), local_ms(ZONE, 2026, 10, 25, 12, 30)),
        },
    )  # fmt: skip
