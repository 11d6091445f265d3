"""Readers: one small registry from a declared name to a reader class.

A reader class implements the ``Reader`` protocol: one required classmethod
``open_source(url_or_path, storage_options=None) -> Source``. A ``Source`` is picklable (it
travels to Dask workers and reopens its files there) and offers:
- ``read_meta()`` -> ``ProjectMeta`` (classes in a fixed order; ``raw`` is a Supervisely
  ``meta.json`` dict, so every source can go to the Supervisely layout);
- ``list_items()`` -> a pyarrow table, one row per item, sorted by (dataset, item), with at least
  ``dataset``, ``item``, ``img_path`` (or null) and either ``ann_path`` (a file the worker reads)
  or ``ann_inline`` (binary: the item's annotation carried in the plan row, for formats whose
  annotations share one file, COCO JSON and CVAT XML); optional ``problem`` (why the item cannot
  be read; the item fails with it);
- ``item_annotation(row)`` -> the item's annotation bytes (its checksum decides incremental runs);
- ``parse_annotation(data, meta, where, *, max_bitmap_pixels)`` -> ``Annotation``
  (``ItemError`` subclasses for bad items, located at ``where``);
- ``read_bytes(path)`` -> bytes of a file (images);
- ``annotation_format``: ``"supervisely"`` when ``item_annotation`` returns Supervisely JSON
  (layouts copy it as is), else the name of the format (layouts write ``sly_json`` instead).
Registration is explicit, by name, below; nothing is discovered by importing folders.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import pyarrow as pa

from ..errors import ConfigError
from ..model.annotation import Annotation, ProjectMeta


@runtime_checkable
class Source(Protocol):
    """An opened project: meta, item table, and bytes of its files."""

    def read_meta(self) -> ProjectMeta: ...

    def list_items(self) -> pa.Table: ...

    def read_bytes(self, path: str) -> bytes: ...

    def item_annotation(self, row: dict) -> bytes: ...

    def parse_annotation(self, data: bytes, meta: ProjectMeta, where: str, *,
                         max_bitmap_pixels: int) -> Annotation: ...


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


def open_source(name: str, url_or_path: str, storage_options: dict[str, Any] | None = None,
                **options: Any) -> Source:
    """Open a project with the reader registered as ``name``; ``options`` are the reader's own
    (e.g. ``images=`` for COCO and CVAT XML)."""
    return get_reader(name).open_source(url_or_path, storage_options, **options)


def detect_reader(url_or_path: str, storage_options: dict[str, Any] | None = None) -> str:
    """The reader for a source, from its name and, for folders and zips, its top-level files:
    ``.json`` -> coco; ``.xml`` or a folder/zip with ``annotations.xml`` -> cvat; a folder/zip with
    ``labelmap.txt``, ``SegmentationClass/`` or ``SegmentationObject/`` -> cvat-masks; anything
    else (a folder with ``meta.json``, a ``.tar``) -> supervisely."""
    from ..io.storage import filesystem
    url = str(url_or_path)
    lower = url.lower().rstrip("/")
    if lower.endswith(".json"):
        return "coco"
    if lower.endswith(".xml"):
        return "cvat"
    if lower.endswith(".tar") or lower.startswith("tar::"):
        return "supervisely"
    try:
        fs, path = filesystem(url, storage_options)
        if lower.endswith(".zip"):
            from ..io.zipsafe import SafeZip
            names = SafeZip(fs, path).names()
        else:
            cut = len(path.rstrip("/")) + 1
            names = [p[cut:] for p in fs.find(path, maxdepth=3, withdirs=False)]
    except Exception:  # noqa: BLE001 - any store error: the Supervisely reader reports it (redacted)
        return "supervisely"
    tops = {n.split("/", 1)[-1] if n.count("/") >= 1 else n for n in names} | set(names)
    heads = {part for n in names for part in n.split("/")[:2]}
    if "annotations.xml" in tops:
        return "cvat"
    if "labelmap.txt" in tops or heads & {"SegmentationClass", "SegmentationObject"}:
        return "cvat-masks"
    return "supervisely"


from .supervisely import SuperviselySource  # noqa: E402  (registered explicitly just below)

register_reader("supervisely", SuperviselySource)

from .coco import CocoSource  # noqa: E402

register_reader("coco", CocoSource)

from .cvat_xml import CvatXmlSource  # noqa: E402

register_reader("cvat", CvatXmlSource)

from .voc_masks import VocMasksSource  # noqa: E402

register_reader("cvat-masks", VocMasksSource)

__all__ = ["READERS", "CocoSource", "CvatXmlSource", "Reader", "Source", "SuperviselySource", "VocMasksSource", "detect_reader", "get_reader", "open_source",
           "register_reader"]
