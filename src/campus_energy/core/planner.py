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
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from campus_energy.core.models import Profile

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
    """The registers of one field: [start, end)."""

    start: int
    end: int


def plan_spans(
    extents: Sequence[Extent],
    *,
    function: int,
    cost: BusCostModel,
    max_registers: int,
    read_gaps: bool = True,
) -> tuple[ReadRequest, ...]:
    """An optimal set of read requests covering every extent.

    Minimises modelled bus time; among equal times, fewer registers, then fewer requests.
    With `read_gaps` false a request only covers registers that belong to some extent.
    """
    if not extents:
        return ()
    items = sorted(extents, key=lambda e: (e.start, e.end))
    for item in items:
        if item.end - item.start > max_registers:
            raise ValueError(f"extent {item} is wider than {max_registers} registers")
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
            if count > max_registers:
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


def plan_profile(profile: Profile, cost: BusCostModel) -> tuple[ReadRequest, ...]:
    """The optimal plan for one poll of every field of `profile` on a bus with `cost`."""
    return plan_spans(
        [Extent(f.address, f.end) for f in profile.fields],
        function=profile.function_code,
        cost=cost.with_pause(profile.pause_between_requests_s),
        max_registers=profile.max_registers_per_request,
        read_gaps=profile.read_gaps,
    )


def plan_per_field(profile: Profile) -> tuple[ReadRequest, ...]:
    """One request per field, as most generic Modbus pollers do (the comparison baseline)."""
    unique = sorted({(f.address, f.width) for f in profile.fields})
    return tuple(ReadRequest(profile.function_code, a, w) for a, w in unique)
