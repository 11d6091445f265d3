"""The Reader seam: what the run asks of a project source, declared once.

A reader class has one required entry point, the classmethod ``open_source(url_or_path,
storage_options=None, **options) -> Source`` (options are the reader's own, e.g. ``images=`` for
COCO and CVAT XML; an unknown one is a ``ConfigError`` or ``TypeError``). It opens and checks the
project: a missing or unreadable one is a ``ProjectError`` whose message names it (redacted).
A :class:`Source` is picklable (it travels to Dask workers and reopens its files there) and
offers:

- ``read_meta()`` -> ``ProjectMeta`` (classes in a fixed order; ``raw`` is a Supervisely
  ``meta.json`` dict, so every source can go to the Supervisely layout);
- ``list_items()`` -> a pyarrow table, one row per item, sorted by (dataset, item), with at least
  ``dataset``, ``item``, ``img_path`` (or null) and either ``ann_path`` (a file the worker reads)
  or ``ann_inline`` (binary: the item's annotation carried in the plan row, for formats whose
  annotations share one file, COCO JSON and CVAT XML); optional ``ann_bytes`` (the listed size,
  checked against ``limits.MAX_ANNOTATION_BYTES`` before reading) and ``problem`` (why the item
  cannot be read; the item fails with it);
- ``item_annotation(row)`` -> the item's annotation bytes (their checksum decides incremental
  runs);
- optional ``item_annotation_decoded(row)`` -> ``ItemAnnotation``: the same bytes plus the form
  the reader decoded them from on the way (a streamed COCO item's entries, a streamed CVAT
  ``<image>`` element), which its ``parse_annotation(..., decoded=)`` takes instead of decoding
  the bytes again; ``read_item_annotation(source, row)`` asks for it when a source has it;
- ``parse_annotation(data, meta, where, *, max_bitmap_pixels)`` -> ``Annotation``; a bad
  annotation raises an ``ItemError`` subclass located at ``where`` (``<dataset>/<item>``);
- ``read_bytes(path)`` -> bytes of a file of the listing (images);
- ``annotation_format``: ``"supervisely"`` when ``item_annotation`` returns Supervisely JSON
  (layouts copy it as is and the SDK crop applies), else the name of the format (layouts write
  ``codec.sly_json`` instead);
- ``project_name`` and ``project_id`` (or None): the default archive name and isahit's project;
- ``warnings``: what opening or listing left out, for the run's log and report.

:class:`SourceBase` holds what every source shares: the URL and storage options, the filesystem
opened lazily (never pickled), ``_where()`` for messages, the store's own errors turned into a
``ProjectError`` (``_store_errors``), and the defaults of the descriptive attributes.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, runtime_checkable

import fsspec
import pyarrow as pa
from fsspec.core import split_protocol

from ..errors import MaskcoreError, ProjectError
from ..io.storage import filesystem, redact
from ..model.annotation import Annotation, ProjectMeta


@runtime_checkable
class Source(Protocol):
    """An opened project: meta, item table, and bytes of its files."""

    annotation_format: str
    project_name: str
    project_id: int | None
    warnings: Sequence[str]

    def read_meta(self) -> ProjectMeta: ...

    def list_items(self) -> pa.Table: ...

    def item_annotation(self, row: dict) -> bytes: ...

    def parse_annotation(self, data: bytes, meta: ProjectMeta, where: str, *,
                         max_bitmap_pixels: int) -> Annotation: ...

    def read_bytes(self, path: str) -> bytes: ...


@dataclass(frozen=True)
class ItemAnnotation:
    """An item's annotation ``data`` (the bytes ``item_annotation`` gives: checksummed, copied) and,
    when the reader decoded them on the way, ``decoded``: what ``parse_annotation(data, ...,
    decoded=decoded)`` reads instead of ``data`` (same ``Annotation``; None: parse ``data``)."""

    data: bytes
    decoded: Any = None


def read_item_annotation(source: Source, row: dict) -> ItemAnnotation:
    """``source.item_annotation_decoded(row)`` when the source has it, else the bytes alone."""
    decoded_reader = getattr(source, "item_annotation_decoded", None)
    if decoded_reader is None:
        return ItemAnnotation(source.item_annotation(row))
    return decoded_reader(row)


def parse_item_annotation(source: Source, data: bytes, decoded: Any, meta: ProjectMeta, where: str, *,
                          max_bitmap_pixels: int) -> Annotation:
    """``source.parse_annotation`` of an item's annotation, from ``decoded`` when the reader handed
    it over (``ItemAnnotation``), else from the bytes (a source without ``decoded=`` is never asked)."""
    extra = {} if decoded is None else {"decoded": decoded}
    return source.parse_annotation(data, meta, where, max_bitmap_pixels=max_bitmap_pixels, **extra)


class Reader(Protocol):
    """What ``register_reader`` accepts: a class with ``open_source``."""

    @classmethod
    def open_source(cls, url_or_path: str, storage_options: dict[str, Any] | None = None,
                    **options: Any) -> Source: ...


def is_local_url(url: str) -> bool:
    """Whether ``url`` is a local path: no protocol or ``file://``, and no ``::`` chain."""
    return split_protocol(url)[0] in (None, "file", "local") and "::" not in url


class SourceBase:
    """The boilerplate every source shares; a source subclasses it and sets ``annotation_format``.

    Pickling drops the open filesystem and the attributes named in ``_transient`` (rebuilt on
    first use where the copy runs), and for a local source those in ``_local_transient`` too
    (an index that is cheap to rebuild from a local file but costs requests on a store).
    """

    annotation_format: ClassVar[str]
    project_name: str = ""
    project_id: int | None = None
    warnings: Sequence[str] = ()
    _transient: ClassVar[tuple[str, ...]] = ()
    _local_transient: ClassVar[tuple[str, ...]] = ()

    def __init__(self, url: str, storage_options: dict | None = None) -> None:
        self.url = url
        self.storage_options = dict(storage_options or {})
        self._fs: tuple[fsspec.AbstractFileSystem, str] | None = None

    def __getstate__(self) -> dict:
        dropped = ("_fs", *self._transient, *(self._local_transient if self.is_local() else ()))
        return {**self.__dict__, **dict.fromkeys(dropped)}

    def is_local(self) -> bool:
        """Whether the source is a local path (``is_local_url``)."""
        return is_local_url(self.url)

    def filesystem(self) -> tuple[fsspec.AbstractFileSystem, str]:
        """(filesystem, path) of ``url``, opened on first use (``maskcore.io.storage``)."""
        if self._fs is None:
            self._fs = filesystem(self.url, self.storage_options)
        return self._fs

    def _where(self) -> str:
        """The URL for messages, without credentials."""
        return redact(self.url, self.storage_options)

    @contextmanager
    def _store_errors(self, what: str, expected: str, catch: type | tuple = Exception) -> Iterator[None]:
        """Turn the store's own errors (``catch``: botocore, OSError, ...) into a ``ProjectError``
        ``"<what>: expected <expected>, got <type>: <its words>"`` with credentials redacted;
        maskcore's errors and ImportErrors (a missing filesystem package) pass as they are."""
        try:
            yield
        except (MaskcoreError, ImportError):
            raise
        except catch as exc:
            raise ProjectError(redact(f"{what}: expected {expected}, got {type(exc).__name__}: {exc}",
                                      self.storage_options)) from None


LINK_REASON = ("a symbolic link: not followed (it may point outside the project); put the file itself "
               "in the project to export it")


def regular_files(found: dict, cut: int, skipped: list[str] | None = None) -> dict[str, int | None]:
    """``fs.find(..., detail=True)`` entries -> {path without its first ``cut`` characters: size}
    of the regular files. Every other entry (a symbolic link, a FIFO, a device) is not read; it
    is named with the reason in ``skipped`` (``"<path>: not exported: <reason>"``) so that no
    listed file vanishes without a word (the run reports each one)."""
    files: dict[str, int | None] = {}
    for path, info in found.items():
        kind = info.get("type", "file")
        if kind == "file" and not info.get("islink"):
            files[path[cut:]] = info.get("size")
        elif kind != "directory" and skipped is not None:
            reason = LINK_REASON if info.get("islink") else f"not a regular file (type {kind!r})"
            skipped.append(f"{path[cut:]}: not exported: {reason}")
    return files
