"""A clock a test moves by hand, for code that takes its clock as an argument."""

from __future__ import annotations


class FakeClock:
    """Seconds since the epoch, as `time.time` gives them; moved only by `tick`."""

    def __init__(self, now: float = 1000.0, step: float = 1.0) -> None:
        self.now = now
        self.step = step  # what tick() moves it by

    def __call__(self) -> float:
        return self.now

    def tick(self, seconds: float | None = None) -> None:
        self.now += self.step if seconds is None else seconds
