"""Survey: one meter's readings, in `seq` order, cut into runs that keep only their edges.

A run is readings in a row whose timestamps agree with each other and with
their seq numbers, in one format and one era; a run ends where a step is
implausible, the format or the era changes, or an outage interrupts it. Of
a reading stored twice the best-written copy that fits its neighbour is kept
and the others become duplicates to delete; a seq stored twice with different
values is a conflict, and a stamp that reads as no time is unreadable.
"""

from __future__ import annotations

from dataclasses import dataclass

from campus_energy.core.repair.stamps import Era, Fmt, Raw, Rules, read_stamp


@dataclass(frozen=True)
class Row:
    """One stored reading, as the survey needs it."""

    seq: int
    ts: Raw
    power_w: float | None
    energy_uwh: int  # imported over its interval
    total_uwh: int  # cumulative import
    values: tuple[object, ...] = ()  # the measured values: two copies of a reading match
    export_uwh: int = 0  # exported over its interval
    export_total_uwh: int = 0  # cumulative export
    estimated: bool = False  # it carries an estimate of the gap before it (the registers')


@dataclass(frozen=True)
class Edge:
    """A reading at either end of a run."""

    seq: int
    raw: Raw
    ms: int  # as read (seconds and text turned into ms), before any repair
    power_w: float | None
    energy_uwh: int  # imported over its interval
    export_uwh: int = 0  # exported over its interval
    estimated: bool = False  # it carries an estimate of the gap before it


@dataclass(frozen=True)
class Run:
    """Readings in a row whose timestamps agree with each other and with their seq numbers."""

    fmt: Fmt
    era: Era
    first: Edge
    last: Edge
    count: int


@dataclass(frozen=True)
class Survey:
    """One meter's readings summarised: runs, and what cannot be placed in one."""

    runs: tuple[Run, ...]
    duplicates: tuple[Raw, ...]  # stored ts_ms of copies to delete
    conflicts: tuple[int, ...]  # seq numbers stored twice with different values
    unreadable: tuple[Raw, ...]
    rows: int


_Copy = tuple[Row, Fmt, int]  # a stored row, how its stamp is written, the ms it reads as


class Surveyor:
    """Cuts one meter's rows, fed in (seq, ts) order, into runs, keeping only their edges."""

    def __init__(self, rules: Rules) -> None:
        self.rules = rules
        self._runs: list[Run] = []
        self._open: Run | None = None
        self._group: list[Row] = []
        self._leading: list[list[_Copy]] = []  # copies before any reading to judge them by
        self._duplicates: list[Raw] = []
        self._conflicts: list[int] = []
        self._unreadable: list[Raw] = []
        self._rows = 0

    def add(self, row: Row) -> None:
        if self._group and row.seq != self._group[0].seq:
            if row.seq < self._group[0].seq:
                raise ValueError(f"rows out of seq order: {row.seq} after {self._group[0].seq}")
            self._settle()
        self._group.append(row)
        self._rows += 1

    def finish(self) -> Survey:
        if self._group:
            self._settle()
        self._settle_leading(None)
        if self._open is not None:
            self._runs.append(self._open)
            self._open = None
        return Survey(
            tuple(self._runs),
            tuple(self._duplicates),
            tuple(self._conflicts),
            tuple(self._unreadable),
            self._rows,
        )

    def _settle(self) -> None:
        group, self._group = self._group, []
        copies: list[_Copy] = []
        for row in group:
            stamp = read_stamp(row.ts)
            if stamp is None:
                self._unreadable.append(row.ts)
            else:
                copies.append((row, *stamp))
        if not copies:
            return
        if len({row.values for row, _, _ in copies}) > 1:
            self._conflicts.append(group[0].seq)
        if self._open is None and (self._leading or len(copies) > 1):
            if len(copies) > 1:
                self._leading.append(copies)
                return
            self._settle_leading(copies[0])
        last = self._open.last if self._open is not None else None
        self._keep(copies, None if last is None else (last.seq, last.ms))

    def _settle_leading(self, after: _Copy | None) -> None:
        """Choose among the first copies backwards from the first reading stored once."""
        leading, self._leading = self._leading, []
        anchor = None if after is None else (after[0].seq, after[2])
        chosen: list[_Copy] = []
        for copies in reversed(leading):
            keep = min(copies, key=lambda c: self._preference(c, anchor, after=False))
            chosen.append(keep)
            self._duplicates.extend(row.ts for row, _, _ in copies if row is not keep[0])
            anchor = (keep[0].seq, keep[2])
        for keep in reversed(chosen):
            self._extend(*keep)

    def _keep(self, copies: list[_Copy], neighbour: tuple[int, int] | None) -> None:
        keep = min(copies, key=lambda c: self._preference(c, neighbour, after=True))
        self._duplicates.extend(row.ts for row, _, _ in copies if row is not keep[0])
        self._extend(*keep)

    def _preference(
        self, copy: _Copy, neighbour: tuple[int, int] | None, *, after: bool
    ) -> tuple[bool, bool, bool, int, int]:
        """Of several copies, keep a well-written one that follows on from its neighbour (seq,
        ms; the copy comes after it or before it), nearest to where the neighbour says."""
        row, fmt, ms = copy
        fits, distance = True, 0
        if neighbour is not None:
            seq, at = neighbour
            a, b = ((seq, at), (row.seq, ms)) if after else ((row.seq, ms), (seq, at))
            fits = self.rules.follows(a[1], a[0], b[1], b[0])
            distance = abs(b[1] - a[1] - self.rules.span(a[0], b[0]))
        return fmt is not Fmt.MS, self.rules.era(ms) is not Era.OK, not fits, distance, ms

    def _extend(self, row: Row, fmt: Fmt, ms: int) -> None:
        edge = Edge(row.seq, row.ts, ms, row.power_w, row.energy_uwh, row.export_uwh, row.estimated)
        era = self.rules.era(ms)
        run = self._open
        if run is not None and run.fmt is fmt and run.era is era and self._continues(run, edge):
            self._open = Run(fmt, era, run.first, edge, run.count + 1)
            return
        if run is not None:
            self._runs.append(run)
        self._open = Run(fmt, era, edge, edge, 1)

    def _continues(self, run: Run, edge: Edge) -> bool:
        a, rules = run.last, self.rules
        if not rules.follows(a.ms, a.seq, edge.ms, edge.seq):
            return False
        # an outage ends a run (a later run may have to move without it); a wrong era keeps
        # its runs whole, outages included, since they move as one anyway
        return run.era is not Era.OK or edge.ms - a.ms <= rules.span(a.seq, edge.seq) + (
            rules.tolerance_ms
        )
