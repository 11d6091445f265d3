"""Sinks behind one registry (the seam is declared in ``maskcore.io.sinks.base``).

``SINKS``: destinations by name, ``factory(url, storage_options) -> DestinationSink`` (``dir``: a
folder on any fsspec filesystem). ``PACKERS``: task sinks that pack a destination's files,
``factory(destination, part_size, archive_format) -> TaskSink`` (``archive``: tar or zip parts).
A sink writes ``(relative_path, bytes)`` pairs so that each file appears whole or not at all;
sinks are picklable (they travel to Dask workers) and open their filesystem lazily on the worker.
Registration is explicit, by name, below.
"""

from __future__ import annotations

from collections.abc import Callable

from .base import DestinationSink, PartitionWriter, TaskSink, TaskSinkBase

SINKS: dict[str, Callable] = {}
"""Destination sink factories by declared name."""
PACKERS: dict[str, Callable] = {}
"""Packing task sink factories by declared name."""


def register_sink(name: str, factory: Callable) -> None:
    """Register ``factory(url, storage_options) -> sink`` under ``name``; names are unique."""
    if name in SINKS:
        raise ValueError(f"sink {name!r} is already registered")
    SINKS[name] = factory


def register_packer(name: str, factory: Callable) -> None:
    """Register ``factory(destination, part_size, archive_format) -> task sink`` under ``name``;
    names are unique."""
    if name in PACKERS:
        raise ValueError(f"packer {name!r} is already registered")
    PACKERS[name] = factory


def get_sink(name: str, url: str, storage_options: dict | None = None):
    try:
        factory = SINKS[name]
    except KeyError:
        from ...errors import ConfigError
        raise ConfigError(f"unknown sink {name!r}; expected one of {sorted(SINKS)}") from None
    return factory(url, storage_options or {})


def get_packer(name: str, destination, part_size: int | None = None, archive_format: str = "tar"):
    """The task sink registered as ``name`` packing into ``destination``."""
    try:
        factory = PACKERS[name]
    except KeyError:
        from ...errors import ConfigError
        raise ConfigError(f"unknown packer {name!r}; expected one of {sorted(PACKERS)}") from None
    return factory(destination, part_size, archive_format)


def _register_builtin() -> None:
    from ..archive import ArchiveSink
    from .fsdir import FsspecDirSink
    register_sink("dir", FsspecDirSink)
    register_packer("archive", ArchiveSink)


_register_builtin()

__all__ = ["PACKERS", "SINKS", "DestinationSink", "PartitionWriter", "TaskSink", "TaskSinkBase", "get_packer",
           "get_sink", "register_packer", "register_sink"]
