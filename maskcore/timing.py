"""Per-step wall-clock accounting, passed in as an argument where a caller wants it (benchmarks).

``NO_CLOCK`` costs nothing; a :class:`StepClock` adds up seconds per step name.
"""

from __future__ import annotations

import contextlib
import time
from collections import defaultdict


class StepClock:
    """Seconds per step name, by ``timer`` (wall clock; ``time.thread_time``: this thread's CPU
    time, which other processes on a loaded machine do not inflate)."""

    def __init__(self, timer=time.perf_counter) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.timer = timer

    @contextlib.contextmanager
    def step(self, name: str):
        start = self.timer()
        try:
            yield
        finally:
            self.seconds[name] += self.timer() - start


class _NoClock:
    @contextlib.contextmanager
    def step(self, name: str):
        yield


NO_CLOCK = _NoClock()
