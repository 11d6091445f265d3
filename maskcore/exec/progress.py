"""Progress of a long run: a live line on a terminal, periodic plain log lines otherwise
(cron, Slurm and Kubernetes logs get one line every ``interval`` seconds, not a flood)."""

from __future__ import annotations

import sys
import time
from typing import Callable, TextIO


def _eta(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


NAMED_FAILURES = 20
"""Failed items named live, as they fail."""


class Progress:
    def __init__(self, total_items: int, total_parts: int, *, stream: TextIO | None = None,
                 interval: float = 30.0, live: bool | None = None,
                 clock: Callable[[], float] = time.monotonic, emit: Callable[[str], None] | None = None) -> None:
        """``emit(line)``: where plain (not live) lines go instead of ``stream`` (e.g. a logger)."""
        self.stream = stream or sys.stderr
        self.emit = emit
        self.live = (self.stream.isatty() and emit is None) if live is None else live
        self.total_items, self.total_parts = total_items, total_parts
        self.interval, self.clock = interval, clock
        self.items = self.failed = self.parts = self.named = 0
        self.start = self.last = clock()

    def line(self) -> str:
        elapsed = self.clock() - self.start
        rate = self.items / elapsed if elapsed > 0 else 0.0
        eta = (self.total_items - self.items) / rate if rate > 0 else 0.0
        return (f"maskcore: partitions {self.parts}/{self.total_parts}, items {self.items}/{self.total_items} "
                f"({self.failed} failed), {rate:.1f} items/s, ETA {_eta(eta)}")

    def update(self, items: int, failed: int) -> None:
        """One partition finished with ``items`` items, ``failed`` of them failed."""
        self.parts += 1
        self.items += items
        self.failed += failed
        now = self.clock()
        if self.live:
            self.stream.write("\r" + self.line() + "\x1b[K")
            self.stream.flush()
        elif now - self.last >= self.interval or self.parts == self.total_parts:
            if self.emit is not None:
                self.emit(self.line())
            else:
                self.stream.write(self.line() + "\n")
                self.stream.flush()
            self.last = now

    def name_failures(self, errors: list[str]) -> None:
        """One line per failed item as its partition finishes (the first ``NAMED_FAILURES``; the
        end-of-run summary and the report have them all)."""
        for error in errors:
            self.named += 1
            if self.named > NAMED_FAILURES:
                return
            text = f"maskcore: failed: {error}" if self.named < NAMED_FAILURES else \
                f"maskcore: failed: {error} (further failures: see the summary and the report)"
            if self.emit is not None:
                self.emit(text)
            else:
                self.stream.write(("\r" + text + "\x1b[K\n") if self.live else text + "\n")
                self.stream.flush()

    def close(self) -> None:
        if self.live:
            self.stream.write("\n")
            self.stream.flush()
