"""Timestamp repair of a meter's stored readings: what is wrong, and where each reading belongs.

The logger numbers a meter's readings (`seq`) one after the other, whatever its
clock says. Read in `seq` order, timestamps normally move forward by at least
about one poll interval per step. Where they do not, something stamped them
wrongly:

- **before clock sync**: a boot without a real-time clock stamps 1970 (or
  2000) until NTP sets the clock; **ahead of the clock**: later than now;
- **local time stored as UTC**: the jumps into and out of such a span equal the
  site zone's UTC offset;
- **seconds, fractions or text** where integer milliseconds belong;
- **out of order**: a span that jumps backwards for any other reason;
- **duplicates**: one reading (same `seq`, same values) stored twice.

The stages, one module each, in the order a repair takes them:

- `stamps`: how a stored `ts_ms` reads (format, era) and the `Rules` a meter's
  stamps are judged by; `Retime`, the correction of a run's stamps;
- `survey`: the readings cut into *runs* wherever a step is implausible, the
  format or the era changes, or an outage interrupts them; only each run's two
  edge readings are kept, so a store of any size is surveyed in little memory;
- `local_time`: local-time runs recognised by the zone offset at their edges (a
  backward jump is proof, a forward one only together with its counterpart)
  and converted exactly;
- `anchoring`: the other wrong runs re-anchored to a trusted neighbour run at
  the distance their sequence numbers imply (seq distance × poll interval),
  keeping their own spacing; of the possible anchors, the one that leaves the
  least time unexplained (then moves the fewest readings) wins;
- `plan`: a meter's plan (or why it is refused), with energy recomputed by the
  project's integrator for every reading whose interval changed; an interval
  whose reading carries an estimate of the gap before it stays a gap (the
  estimate covers it: measured energy would count it twice);
- `apply`: the plan carried out on the readings, every later cumulative total
  (import and export) moved by the difference.

Pure: rows come in (in `seq` order), a plan goes out.
"""

from campus_energy.core.repair.apply import Change, apply_plan, edge_before, retime_rows
from campus_energy.core.repair.plan import (
    LOCAL,
    OUT_OF_ORDER,
    EnergyFix,
    MeterPlan,
    RunPlan,
    interval_energies_uwh,
    interval_energy_uwh,
    interval_fix,
    is_gap,
    plan_meter,
)
from campus_energy.core.repair.stamps import (
    NOT_BEFORE_MS,
    Era,
    Fmt,
    Raw,
    Retime,
    Rules,
    local_to_utc_ms,
    parse_text,
    read_stamp,
    typical_interval_ms,
)
from campus_energy.core.repair.survey import Edge, Row, Run, Survey, Surveyor

__all__ = [
    "LOCAL",
    "NOT_BEFORE_MS",
    "OUT_OF_ORDER",
    "Change",
    "Edge",
    "EnergyFix",
    "Era",
    "Fmt",
    "MeterPlan",
    "Raw",
    "Retime",
    "Row",
    "Rules",
    "Run",
    "RunPlan",
    "Survey",
    "Surveyor",
    "apply_plan",
    "edge_before",
    "interval_energies_uwh",
    "interval_energy_uwh",
    "interval_fix",
    "is_gap",
    "local_to_utc_ms",
    "parse_text",
    "plan_meter",
    "read_stamp",
    "retime_rows",
    "typical_interval_ms",
]
