"""The legacy logger's energy rule: every successful read counts power × the nominal interval."""

from __future__ import annotations

from collections.abc import Iterable


def legacy_energy_wh(powers_w: Iterable[float], nominal_s: float) -> float:
    """Σ power × nominal_s, in Wh: a dropped poll counts nothing, a late one no more."""
    return sum(p * nominal_s / 3600 for p in powers_w)
