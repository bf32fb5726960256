"""The read planner: which register spans to request so that one poll costs the least bus time.

The bus cost of one read request is a fixed overhead (request frame, response
header and CRC, the two inter-frame silences, the device's turnaround, the
pause the device needs between requests) plus the transfer time of each
register read. Reading a few unused registers between two fields can be
cheaper than a second request; across a long gap it is not. Fields are atomic
(a float32 is never split between requests) and a request never exceeds the
device's register limit.

Under that model the cheapest plan reads consecutive groups of the fields
sorted by address, so a dynamic programme over the sorted fields finds an
optimal plan exactly in O(n²).

Some firmware refuses (exception 2, illegal data address) a request that covers
certain registers although the datasheet's registers answer one by one. What a
device is known to refuse is a `Refusals`: register ranges no request may
cover, the fields that are refused themselves (left out of the plan), and at
most a shorter request limit. The plan stays optimal under those constraints:
a group of fields is a request only if its span covers no refused register,
and moving a field into the group whose span already contains it never adds
a refused register, so consecutive groups still suffice.
"""

from __future__ import annotations

import bisect
import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from campus_energy.core.models import REQUIRED_FIELDS, Profile

RTU_REQUEST_BYTES = 8  # device, function, address (2), count (2), CRC (2)
RTU_RESPONSE_HEADER_BYTES = 5  # device, function, byte count, CRC (2)
TCP_REQUEST_BYTES = 12  # MBAP header (7) + function, address, count
TCP_RESPONSE_HEADER_BYTES = 9  # MBAP header (7) + function, byte count
TCP_BITS_PER_SECOND = 100e6


@dataclass(frozen=True)
class ReadRequest:
    """One read: function code 3 (holding) or 4 (input), first register, register count."""

    function: int
    start: int
    count: int

    @property
    def end(self) -> int:
        return self.start + self.count


@dataclass(frozen=True)
class BusCostModel:
    """Modelled bus time: each request costs overhead + count × per-register time, and
    consecutive requests to one device are `pause_s` apart."""

    request_overhead_s: float
    register_s: float
    pause_s: float = 0.0

    def request_s(self, count: int) -> float:
        """One request followed by the device's pause."""
        return self.request_overhead_s + count * self.register_s + self.pause_s

    def plan_s(self, requests: Iterable[ReadRequest]) -> float:
        """One poll: every request, with a pause between consecutive ones (not after the last)."""
        requests = list(requests)
        if not requests:
            return 0.0
        return sum(self.request_s(r.count) for r in requests) - self.pause_s

    def with_pause(self, pause_s: float) -> BusCostModel:
        """The same bus for a device that needs `pause_s` of quiet between requests."""
        return BusCostModel(self.request_overhead_s, self.register_s, pause_s)

    @classmethod
    def serial(
        cls,
        baudrate: int,
        *,
        parity: str = "N",
        stopbits: int = 1,
        bytesize: int = 8,
        turnaround_s: float = 0.02,
    ) -> BusCostModel:
        """Modbus RTU on a serial line (also RTU over TCP through a serial gateway)."""
        bits_per_char = 1 + bytesize + (0 if parity == "N" else 1) + stopbits
        char_s = bits_per_char / baudrate
        # The 3.5-character silence; fixed at 1.75 ms above 19200 baud (Modbus over serial line).
        silence_s = 3.5 * char_s if baudrate <= 19200 else 0.00175
        overhead = (RTU_REQUEST_BYTES + RTU_RESPONSE_HEADER_BYTES) * char_s
        return cls(overhead + 2 * silence_s + turnaround_s, 2 * char_s)

    @classmethod
    def tcp(cls, turnaround_s: float = 0.002) -> BusCostModel:
        """Modbus TCP: the round trip dominates, bytes cost next to nothing."""
        byte_s = 8 / TCP_BITS_PER_SECOND
        overhead = (TCP_REQUEST_BYTES + TCP_RESPONSE_HEADER_BYTES) * byte_s
        return cls(overhead + turnaround_s, 2 * byte_s)


@dataclass(frozen=True)
class Extent:
    """A range of registers, [start, end): a field's, or registers a device refuses."""

    start: int
    end: int


def merge_extents(extents: Iterable[Extent]) -> tuple[Extent, ...]:
    """The same registers as sorted, disjoint, non-adjacent ranges."""
    merged: list[Extent] = []
    for item in sorted(extents, key=lambda e: (e.start, e.end)):
        if item.end <= item.start:
            continue
        if merged and item.start <= merged[-1].end:
            last = merged[-1]
            merged[-1] = Extent(last.start, max(last.end, item.end))
        else:
            merged.append(item)
    return tuple(merged)


def _limits(items: Sequence[Extent], forbidden: Sequence[Extent]) -> list[int]:
    """For each item, the first forbidden register at or after its start (a group starting
    there must end at or before it); raises ValueError for an item that covers one."""
    ranges = merge_extents(forbidden)
    ends = [r.end for r in ranges]
    limits = []
    for item in items:
        k = bisect.bisect_right(ends, item.start)  # the first range ending after the start
        limit = ranges[k].start if k < len(ranges) else 1 << 32
        if limit < item.end:
            raise ValueError(f"extent {item} covers a forbidden register")
        limits.append(limit)
    return limits


def plan_spans(
    extents: Sequence[Extent],
    *,
    function: int,
    cost: BusCostModel,
    max_registers: int,
    read_gaps: bool = True,
    forbidden: Sequence[Extent] = (),
) -> tuple[ReadRequest, ...]:
    """An optimal set of read requests covering every extent.

    Minimises modelled bus time; among equal times, fewer registers, then fewer requests.
    With `read_gaps` false a request only covers registers that belong to some extent.
    No request covers a register of `forbidden` (ValueError for an extent that does).
    """
    if not extents:
        return ()
    items = sorted(extents, key=lambda e: (e.start, e.end))
    for item in items:
        if item.end - item.start > max_registers:
            raise ValueError(f"extent {item} is wider than {max_registers} registers")
    limits = _limits(items, forbidden)
    n = len(items)
    # best[i]: (cost, registers, requests) of an optimal plan for items[:i]; back[i]: group start.
    best: list[tuple[float, int, int] | None] = [None] * (n + 1)
    back = [0] * (n + 1)
    best[0] = (0.0, 0, 0)
    for j in range(n):
        base = best[j]
        assert base is not None  # every prefix is reachable: a group of one item is always valid
        start = items[j].start
        end = items[j].end
        for i in range(j, n):
            if i > j:
                if not read_gaps and items[i].start > end:
                    break  # a hole: this group and every longer one would read unused registers
                end = max(end, items[i].end)
            count = end - start
            if count > max_registers or end > limits[j]:
                break
            candidate = (base[0] + cost.request_s(count), base[1] + count, base[2] + 1)
            current = best[i + 1]
            if current is None or candidate < current:
                best[i + 1] = candidate
                back[i + 1] = j
    requests: list[ReadRequest] = []
    i = n
    while i > 0:
        j = back[i]
        group = items[j:i]
        start = group[0].start
        end = max(e.end for e in group)
        requests.append(ReadRequest(function, start, end - start))
        i = j
    return tuple(reversed(requests))


@dataclass(frozen=True)
class Refusals:
    """What one device's firmware is known to refuse with exception 2 (illegal data address).

    `registers`: ranges no request may cover (registers between fields that the firmware
    refuses to read across); `fields`: fields refused even when read alone (left out of the
    plan, and their registers never covered); `max_registers`: a request limit shorter than
    the profile's, when a request was refused although no register in it was.
    """

    registers: tuple[Extent, ...] = ()
    fields: tuple[str, ...] = ()
    max_registers: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "registers", merge_extents(self.registers))
        object.__setattr__(self, "fields", tuple(sorted(set(self.fields))))

    def __bool__(self) -> bool:
        return bool(self.registers or self.fields or self.max_registers is not None)

    def joined(self, other: Refusals) -> Refusals:
        """Everything refused in `self` or in `other`."""
        limits = [m for m in (self.max_registers, other.max_registers) if m is not None]
        return Refusals(
            (*self.registers, *other.registers),
            (*self.fields, *other.fields),
            min(limits) if limits else None,
        )

    def without_fields(self, names: Iterable[str]) -> Refusals:
        """The same, with `names` no longer counted as refused."""
        dropped = set(names)
        kept = tuple(f for f in self.fields if f not in dropped)
        return Refusals(self.registers, kept, self.max_registers)

    def lasting(self) -> Refusals:
        """What is worth keeping across restarts: a refused required field says the device is
        not the profile's model (or another device answers at its address), which a person
        fixes; it is asked for again rather than remembered."""
        return self.without_fields(REQUIRED_FIELDS)

    def forbidden(self, profile: Profile) -> tuple[Extent, ...]:
        """Every register no request to this device may cover."""
        refused = [Extent(f.address, f.end) for f in profile.fields if f.name in self.fields]
        return merge_extents([*self.registers, *refused])


@dataclass(frozen=True)
class Split:
    """A refused request's fields in two halves, read separately to find what is refused."""

    first: tuple[Extent, ...]
    second: tuple[Extent, ...]

    @property
    def gap(self) -> Extent:
        """The registers between the halves that neither covers (empty when they touch)."""
        end = max(e.end for e in self.first)
        return Extent(end, max(end, self.second[0].start))


def split_fields(extents: Sequence[Extent]) -> Split:
    """Two halves of at least two distinct extents, split on a field boundary."""
    items = sorted(set(extents), key=lambda e: (e.start, e.end))
    if len(items) < 2:
        raise ValueError("a single field cannot be split")
    middle = len(items) // 2
    return Split(tuple(items[:middle]), tuple(items[middle:]))


def span_of(extents: Sequence[Extent], function: int) -> ReadRequest:
    """The one request covering every extent."""
    start = min(e.start for e in extents)
    return ReadRequest(function, start, max(e.end for e in extents) - start)


def profile_fingerprint(profile: Profile) -> str:
    """A short digest of what a profile reads (function, fields and their registers, request
    limit): what a device refuses under one register map says nothing about another."""
    body = {
        "function": profile.function_code,
        "max_registers": profile.max_registers_per_request,
        "fields": sorted((f.name, f.address, f.width) for f in profile.fields),
    }
    text = json.dumps(body, separators=(",", ":"), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def plan_profile(
    profile: Profile, cost: BusCostModel, refusals: Refusals | None = None
) -> tuple[ReadRequest, ...]:
    """The optimal plan for one poll of every field of `profile` on a bus with `cost`; with
    `refusals`, of every field not refused, and never covering a refused register."""
    refusals = refusals or Refusals()
    wanted = [f for f in profile.fields if f.name not in refusals.fields]
    limit = profile.max_registers_per_request
    if refusals.max_registers is not None:  # never below a field's width: fields are atomic
        limit = min(limit, max(refusals.max_registers, *(f.width for f in wanted)))
    return plan_spans(
        [Extent(f.address, f.end) for f in wanted],
        function=profile.function_code,
        cost=cost.with_pause(profile.pause_between_requests_s),
        max_registers=limit,
        read_gaps=profile.read_gaps,
        forbidden=refusals.forbidden(profile),
    )


def plan_per_field(profile: Profile) -> tuple[ReadRequest, ...]:
    """One request per field, as most generic Modbus pollers do (the comparison baseline)."""
    unique = sorted({(f.address, f.width) for f in profile.fields})
    return tuple(ReadRequest(profile.function_code, a, w) for a, w in unique)
