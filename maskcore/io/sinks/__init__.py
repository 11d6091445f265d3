"""Output sinks behind one registry: name -> sink class.

A sink writes ``(relative_path, bytes)`` pairs under a destination root so that each file appears
whole or not at all. Sinks are picklable (they travel to Dask workers) and open their filesystem
lazily on the worker.
"""

from __future__ import annotations

from typing import Callable

SINKS: dict[str, Callable] = {}


def register_sink(name: str, factory: Callable) -> None:
    """Register ``factory(url, storage_options) -> sink`` under ``name``; names are unique."""
    if name in SINKS:
        raise ValueError(f"sink {name!r} is already registered")
    SINKS[name] = factory


def get_sink(name: str, url: str, storage_options: dict | None = None):
    try:
        factory = SINKS[name]
    except KeyError:
        from ...errors import ConfigError
        raise ConfigError(f"unknown sink {name!r}; expected one of {sorted(SINKS)}") from None
    return factory(url, storage_options or {})


def _register_builtin() -> None:
    from .fsdir import FsspecDirSink
    register_sink("dir", FsspecDirSink)


_register_builtin()
