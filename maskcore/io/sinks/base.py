"""The Sink seam: where files go, declared once, in two halves.

- :class:`TaskSink`: what a partition task writes through. One required method,
  ``write(relpath, data)``: the file appears whole or not at all. The optional hooks (defaults in
  :class:`TaskSinkBase`: a sink that writes every file in place) say how a partition writes:
  ``open_partition(name, first_item)`` gives the partition its :class:`PartitionWriter`
  (``write``, then ``finish()`` or ``abort()``), ``packs`` says whether its files are packed into
  per-partition archive chunks (then every item is rendered, none is skipped as unchanged, and
  ``finish()`` returns the chunk records the driver assembles), ``destination`` is where the task
  records its partial result.
- :class:`DestinationSink`: what the driver needs of the destination besides writing: ``read``,
  ``exists``, ``listdir``, ``walk``, ``delete``, ``create_exclusive`` (the run lock),
  ``clear_temporaries`` (``maskcore.io.staging``), and its ``url`` and ``storage_options``.

Every sink is picklable (it travels to Dask workers) and opens its filesystem lazily where it is
used. Destinations are registered by name in ``maskcore.io.sinks.SINKS`` (``dir``), task sinks
that pack a destination's files in ``PACKERS`` (``archive``); every registered one passes
``tests/conformance/test_sink_seam.py``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import ClassVar, Protocol, runtime_checkable


@runtime_checkable
class TaskSink(Protocol):
    """What a partition task writes through (the rest comes from :class:`TaskSinkBase`)."""

    def write(self, relpath: str, data: bytes) -> None:
        """Write ``data`` to ``relpath`` (relative, ``/``-separated), whole or not at all."""


@runtime_checkable
class PartitionWriter(Protocol):
    """What one partition writes its items' files through."""

    def write(self, relpath: str, data: bytes) -> None: ...

    def finish(self) -> list[dict] | None:
        """Complete the partition: the records of what it packed, or None (written in place)."""

    def abort(self) -> None:
        """Drop what the partition has not completed (the task failed)."""


@runtime_checkable
class DestinationSink(TaskSink, Protocol):
    """What the driver needs of the destination."""

    url: str
    storage_options: dict

    def read(self, relpath: str) -> bytes: ...

    def exists(self, relpath: str) -> bool: ...

    def listdir(self, relpath: str) -> list[str]:
        """Names of the files directly under ``relpath`` ([] when it does not exist)."""

    def walk(self, relpath: str = "") -> list[str]:
        """Root-relative paths of every file under ``relpath``."""

    def delete(self, relpaths: Iterable[str]) -> None:
        """Remove files; missing ones are ignored."""

    def create_exclusive(self, relpath: str, data: bytes) -> None:
        """Create ``relpath`` holding ``data`` only if it does not exist (else FileExistsError)."""

    def clear_temporaries(self) -> None:
        """Remove every temporary file (``maskcore.io.staging``)."""


class TaskSinkBase:
    """Defaults of the task side's optional hooks: files are written in place, each partition
    writes straight through the sink, which is also where partial results are recorded."""

    packs: ClassVar[bool] = False
    """Partitions pack their files into archive chunks (see the module doc)."""

    @property
    def destination(self) -> DestinationSink:
        """Where a partition task records its partial result."""
        return self

    def open_partition(self, name: int | str, first_item: tuple[str, str] = ("", "")) -> PartitionWriter:
        """The writer of one partition (``name``: its index or resume key; ``first_item``:
        its first (dataset, item), which orders packed chunks): this sink itself."""
        return self

    def finish(self) -> list[dict] | None:
        """Nothing to complete: every file was written in place."""
        return None

    def abort(self) -> None:
        """Nothing to drop: every file written is whole."""


TASK_SINK_HOOKS = ("write", "packs", "destination", "open_partition")
"""What the run uses of every task sink: the protocol's ``write`` and the hooks above."""
