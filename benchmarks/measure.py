"""What every benchmark measures with: a free loopback port, percentiles, resident memory."""

from __future__ import annotations

import math
import socket
from collections.abc import Sequence

import psutil


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) with linear interpolation."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    position = (len(ordered) - 1) * q / 100
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def rss_mib() -> float:
    """This process's resident memory, MiB."""
    return psutil.Process().memory_info().rss / 2**20
