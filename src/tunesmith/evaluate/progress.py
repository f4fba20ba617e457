"""Progress lines for the long phases of ``tunesmith eval``: items done of the total, time spent and time left.

An eval of a few hundred conversation turns runs for many minutes per model; a line at each phase's start, then
one at most every ``PROGRESS_EVERY_S`` seconds and one at its end, shows it is moving and how far it has to go.
"""

from __future__ import annotations

import time

from tunesmith.console import say

PROGRESS_EVERY_S = 30.0


class Progress:
    """One phase's progress, named as it is shown (``eval tuned generation``)."""

    def __init__(self, name: str, every: float = PROGRESS_EVERY_S) -> None:
        self.name, self.every = name, every
        self.total, self.unit, self.done = 0, "", 0
        self.start = self.last = 0.0

    def begin(self, total: int, unit: str) -> None:
        """The phase starts with ``total`` items to do (``unit``: what an item is, e.g. answers, batches)."""
        self.total, self.unit, self.done = total, unit, 0
        self.start = self.last = time.perf_counter()
        say(f"{self.name}: 0/{total} {unit}")

    def advance(self, count: int = 1) -> None:
        """``count`` more items done: a line when the last one is, or when the previous line is old enough."""
        self.done += count
        now = time.perf_counter()
        if self.done >= self.total or now - self.last >= self.every:
            self.last = now
            say(self.line(now - self.start))

    def line(self, elapsed: float) -> str:
        """Done of total, the time spent and, while unfinished, the time left at the rate so far."""
        text = f"{self.name}: {self.done}/{self.total} {self.unit}, {clock(elapsed)}"
        if 0 < self.done < self.total:
            text += f", about {clock(elapsed * (self.total - self.done) / self.done)} left"
        return text


def clock(seconds: float) -> str:
    """``42`` -> ``42 s``, ``185`` -> ``3 min 05 s``, ``3720`` -> ``1 h 02 min``."""
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60} min {whole % 60:02d} s"
    return f"{whole // 3600} h {whole % 3600 // 60:02d} min"
