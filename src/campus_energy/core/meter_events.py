"""Meter events: a register replaced, reset, rolled over or jumping, on the record.

An event is *detected* by the logger (`core.witness`) or *confirmed* by a
person (`campus-energy meter-event add`), who can give the old meter's final
reading and the new one's first. The record is an audit trail: the register
drift check, reconcile and bills read it to know where a register's count
starts again. Pure values.
"""

from __future__ import annotations

from dataclasses import dataclass

from campus_energy.core.witness import EVENT_KINDS

SOURCES = ("detected", "confirmed")

__all__ = ["EVENT_KINDS", "SOURCES", "MeterEvent"]


@dataclass(frozen=True)
class MeterEvent:
    """One event of one meter's energy register."""

    meter_id: str
    ts_ms: int  # when it happened (detected: the read that showed it)
    kind: str  # one of EVENT_KINDS
    source: str  # one of SOURCES
    register: str = "import_energy_wh"  # the profile's field whose count starts again
    before_wh: float | None = None  # detected: the register at the read before
    after_wh: float | None = None  # detected: the register at the read that showed it
    old_final_wh: float | None = None  # confirmed: the old meter's last count
    new_start_wh: float | None = None  # confirmed: the new meter's first count
    note: str = ""
    recorded_ms: int | None = None  # when it was recorded
    id: int | None = None  # the store's key, once stored
