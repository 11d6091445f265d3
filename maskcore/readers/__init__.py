"""Readers: one small registry from a declared name to a reader class.

A reader class implements the ``Reader`` protocol: one required classmethod
``open_source(url_or_path, storage_options=None) -> Source``. A ``Source`` is picklable (it
travels to Dask workers and reopens its files there) and offers ``read_meta()``,
``list_items()`` (a pyarrow table) and ``read_bytes(path)``.
Registration is explicit, by name, below; nothing is discovered by importing folders.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import pyarrow as pa

from ..errors import ConfigError
from ..model import ProjectMeta


@runtime_checkable
class Source(Protocol):
    """An opened project: meta, item table, and bytes of its files."""

    def read_meta(self) -> ProjectMeta: ...

    def list_items(self) -> pa.Table: ...

    def read_bytes(self, path: str) -> bytes: ...


class Reader(Protocol):
    """What ``register_reader`` accepts: a class with ``open_source``."""

    @classmethod
    def open_source(cls, url_or_path: str, storage_options: dict[str, Any] | None = None
                    ) -> Source: ...


READERS: dict[str, type] = {}
"""Reader classes by declared name."""


def register_reader(name: str, cls: type) -> None:
    """Register ``cls`` under ``name``; refuses a name already taken or a class without
    ``open_source``."""
    if name in READERS:
        raise ValueError(f"reader {name!r}: expected a new name, got one already registered "
                         f"({READERS[name].__qualname__})")
    if not callable(getattr(cls, "open_source", None)):
        raise TypeError(f"reader {name!r}: expected a class with open_source(), got {cls!r}")
    READERS[name] = cls


def get_reader(name: str) -> type:
    """The reader class registered as ``name``; ``ConfigError`` naming the known ones if none."""
    try:
        return READERS[name]
    except KeyError:
        known = ", ".join(sorted(READERS)) or "none"
        raise ConfigError(f"reader: expected one of {known}, got {name!r}") from None


def open_source(name: str, url_or_path: str, storage_options: dict[str, Any] | None = None
                ) -> Source:
    """Open a project with the reader registered as ``name``."""
    return get_reader(name).open_source(url_or_path, storage_options)


from .supervisely import SuperviselySource  # noqa: E402  (registered explicitly just below)

register_reader("supervisely", SuperviselySource)

__all__ = ["READERS", "Reader", "Source", "SuperviselySource", "get_reader", "open_source",
           "register_reader"]
