"""What a run shows while it runs: a live line on a terminal, periodic plain log lines otherwise
(cron, Slurm and Kubernetes logs get one line every ``interval`` seconds, not a flood), each plain
line starting with an ISO-8601 UTC timestamp (:class:`StampedStream`).

Items are counted as they finish, not per partition: each partition task calls its
:class:`ItemReporter` after every item. In this process the reporter calls
:meth:`Progress.item_done` directly; on Dask workers it logs a small structured event (``(partition,
items, failed)``, running totals, at most one per ``EVENT_SECONDS`` per task, through the worker's
batched connection to the scheduler) on the run's topic, which the driver's client forwards to
:meth:`Progress.item_done` (``Client.subscribe_topic``). The counts a partition's result carries
when it finishes replace what its events said (a retried partition reports again from zero; events
that arrive late are ignored).
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, redirect_stderr
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TextIO


def _eta(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


NAMED_FAILURES = 20
"""Failed items named live, as they fail."""
REDRAW_SECONDS = 0.1
"""Least time between two redraws of the live line (items may finish faster)."""
EVENT_SECONDS = 0.2
"""Least time between two progress events of one task on a worker (a million items of a few
milliseconds each would otherwise be a million messages through the scheduler)."""


def timestamp(now: float | None = None) -> str:
    """``2026-12-07T07:45:12Z``: ISO-8601, UTC, whole seconds."""
    moment = datetime.fromtimestamp(time.time() if now is None else now, timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


class StampedStream:
    """A text stream whose every line starts with :func:`timestamp` and a space (what plain
    logs need); everything else is passed to ``stream``.

    Lines are written whole: what a thread writes is held until its newline (or a ``flush``), so
    that a progress line from the Dask client's thread never lands inside a line ``print`` is
    writing in two calls (text, then newline)."""

    def __init__(self, stream: TextIO, clock: Callable[[], float] = time.time) -> None:
        self.stream, self.clock = stream, clock
        self._lock = threading.Lock()
        self._local = threading.local()    # this thread's unfinished line, and whether it is stamped

    def write(self, text: str) -> int:
        pending = getattr(self._local, "pending", "") + text
        lines = pending.split("\n")
        self._local.pending = lines.pop()
        if lines:
            self._emit("".join(self._stamped(line) + "\n" for line in lines))
            self._local.stamped = False
        return len(text)

    def flush(self) -> None:
        pending = getattr(self._local, "pending", "")
        if pending:          # a partial line asked to be shown: stamped now, continued unstamped
            self._local.pending = ""
            self._emit(self._stamped(pending))
            self._local.stamped = True
        self.stream.flush()

    def _stamped(self, line: str) -> str:
        if getattr(self._local, "stamped", False):
            self._local.stamped = False
            return line
        return f"{timestamp(self.clock())} {line}"

    def _emit(self, text: str) -> None:
        with self._lock:
            self.stream.write(text)

    def isatty(self) -> bool:
        return False

    def __getattr__(self, name):
        return getattr(self.stream, name)


@contextmanager
def stamped_stderr() -> Iterator[None]:
    """``sys.stderr`` with a timestamp on every line when it is a file or a pipe, not a terminal
    (a log file, cron's mail, Slurm's output file, a container's log). A terminal is left as it
    is, and so is a stream without a file descriptor (an application or a test capturing the
    lines in memory)."""
    try:
        plain = sys.stderr.fileno() >= 0 and not sys.stderr.isatty()
    except (AttributeError, OSError, ValueError):   # io.UnsupportedOperation: in memory
        plain = False
    if not plain:
        yield
        return
    stamped = StampedStream(sys.stderr)
    try:
        with redirect_stderr(stamped):
            yield
    finally:
        stamped.flush()   # a last line without its newline


@dataclass
class ItemReporter:
    """Called by a partition task with each item's final status (picklable; see the module doc).

    ``topic``: the run's event topic on Dask workers; else ``notify(partition, items, failed)``
    is called in this process."""
    partition: int
    topic: str | None = None
    notify: Callable[[int, int, int], None] | None = None
    items: int = 0
    failed: int = 0
    sent: float = float("-inf")   # when the last event left (events carry running totals)

    def __call__(self, status: str) -> None:
        self.items += 1
        self.failed += status == "failed"
        if self.topic is not None:
            now = time.monotonic()
            if now - self.sent < EVENT_SECONDS:   # the next event (or the result) carries this item
                return
            from distributed import get_worker

            try:
                worker = get_worker()
            except ValueError:   # not on a worker (a task run by hand): nobody listens
                return
            worker.log_event(self.topic, (self.partition, self.items, self.failed))
            self.sent = now
        elif self.notify is not None:
            self.notify(self.partition, self.items, self.failed)


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
        self.parts = self.named = 0
        self._counts: dict = {}        # partition -> (items, failed): running or finished
        self._finished: set = set()
        self._lock = threading.RLock()  # events arrive on the client's thread
        self.start = self.last = clock()
        self._drawn = float("-inf")

    @property
    def items(self) -> int:
        return min(sum(n for n, _ in self._counts.values()), self.total_items)

    @property
    def failed(self) -> int:
        return sum(f for _, f in self._counts.values())

    def line(self) -> str:
        elapsed = self.clock() - self.start
        items = self.items
        rate = items / elapsed if elapsed > 0 else 0.0
        eta = (self.total_items - items) / rate if rate > 0 else 0.0
        return (f"maskcore: items {items}/{self.total_items} ({self.failed} failed), "
                f"partitions {self.parts}/{self.total_parts}, {rate:.1f} items/s, ETA {_eta(eta)}")

    def already_done(self, items: int) -> None:
        """``items`` items need no task (unchanged by their stamps): counted as done from the start."""
        with self._lock:
            self._counts["unchanged"] = (items, 0)
            self._finished.add("unchanged")

    def item_done(self, partition, items: int, failed: int = 0) -> None:
        """A running partition has finished ``items`` items so far, ``failed`` of them failed."""
        with self._lock:
            if partition in self._finished or items <= self._counts.get(partition, (0, 0))[0]:
                return
            self._counts[partition] = (items, failed)
            self._show(final=False)

    def update(self, items: int, failed: int, partition=None) -> None:
        """One partition (``partition``: its index, else a new anonymous one) finished with
        ``items`` items, ``failed`` of them failed."""
        with self._lock:
            key = partition if partition is not None else ("finished", self.parts)
            self._finished.add(key)
            self._counts[key] = (items, failed)
            self.parts += 1
            self._show(final=self.parts == self.total_parts)

    def _show(self, final: bool) -> None:
        now = self.clock()
        if self.live:
            if final or now - self._drawn >= REDRAW_SECONDS:
                self.stream.write("\r" + self.line() + "\x1b[K")
                self.stream.flush()
                self._drawn = now
        elif final or now - self.last >= self.interval:
            self._plain(self.line())
            self.last = now

    def _plain(self, text: str) -> None:
        if self.emit is not None:
            self.emit(text)
        else:
            self.stream.write(text + "\n")
            self.stream.flush()

    def name_failures(self, errors: list[str]) -> None:
        """One line per failed item as its partition finishes (the first ``NAMED_FAILURES``; the
        end-of-run summary and the report have them all)."""
        with self._lock:
            for error in errors:
                self.named += 1
                if self.named > NAMED_FAILURES:
                    return
                text = f"maskcore: failed: {error}" if self.named < NAMED_FAILURES else \
                    f"maskcore: failed: {error} (further failures: see the summary and the report)"
                if self.emit is None and self.live:
                    self.stream.write("\r" + text + "\x1b[K\n")
                    self.stream.flush()
                    self._drawn = float("-inf")   # the live line comes back with the next count
                else:
                    self._plain(text)

    def close(self) -> None:
        if self.live:
            self.stream.write("\n")
            self.stream.flush()
