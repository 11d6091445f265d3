"""Per-step wall-clock accounting, passed in as an argument where a caller wants it (benchmarks).

``NO_CLOCK`` costs nothing; a :class:`StepClock` adds up seconds per step name.
"""

from __future__ import annotations

import contextlib
import time
from collections import defaultdict


class StepClock:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)

    @contextlib.contextmanager
    def step(self, name: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] += time.perf_counter() - start


class _NoClock:
    @contextlib.contextmanager
    def step(self, name: str):
        yield


NO_CLOCK = _NoClock()
