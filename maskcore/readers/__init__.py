"""Readers: one small registry from a declared name to a reader class.

The seam is declared in ``maskcore.readers.base``: a reader class has one required classmethod,
``open_source(url_or_path, storage_options=None, **options) -> Source``; ``Source`` lists what
the run uses of an opened project; ``SourceBase`` holds what every source shares. Registration
is explicit, by name, below; nothing is discovered by importing folders. Every registered reader
passes ``tests/conformance/test_readers.py``.
"""

from __future__ import annotations

from typing import Any

from ..errors import ConfigError
from .base import Reader, Source, SourceBase

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
    (e.g. ``images=`` for COCO and CVAT XML). An option the reader does not take is refused with
    a ``ConfigError`` naming the reader, the option and the options it takes."""
    cls = get_reader(name)
    taken = reader_options(cls)
    unknown = [] if taken is None else sorted(k for k in options if k not in taken)
    if unknown:
        raise ConfigError(f"reader {name!r} takes no option {', '.join(map(repr, unknown))} "
                          f"(its options: {', '.join(sorted(taken or ())) or 'none'})")
    return cls.open_source(url_or_path, storage_options, **options)


def reader_options(cls: type) -> set[str] | None:
    """The keyword options a reader's ``open_source`` takes (besides the source and storage
    options); None when it takes any (``**options``)."""
    import inspect

    params = inspect.signature(cls.open_source).parameters.values()
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return None
    return {p.name for p in params if p.kind is p.KEYWORD_ONLY}


def detect_reader(url_or_path: str, storage_options: dict[str, Any] | None = None) -> str:
    """The reader for a source, from its name and, for folders and zips, its top-level files:
    ``.json`` -> coco; ``.xml`` or a folder/zip with ``annotations.xml`` (or a folder with one
    top-level ``.xml``) -> cvat; a folder/zip with
    ``labelmap.txt``, ``SegmentationClass/`` or ``SegmentationObject/`` -> cvat-masks; a folder
    with ``annotations/instances_<subset>.json`` (or such an ``annotations`` folder) -> coco; anything
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
    if "annotations.xml" in tops or any(n.lower().endswith(".xml") for n in names if "/" not in n):
        return "cvat"   # a CVAT task folder, its XML possibly renamed (Datumaro's export_task)
    if "labelmap.txt" in tops or heads & {"SegmentationClass", "SegmentationObject"}:
        return "cvat-masks"
    if not lower.endswith(".zip") and any(_is_coco_instances(n, lower) for n in names):
        return "coco"   # a COCO dataset folder (Datumaro's, Detectron2's) or its annotations/
    return "supervisely"


def _is_coco_instances(name: str, folder: str) -> bool:
    """``annotations/instances_<subset>.json`` in a folder, or ``instances_<subset>.json`` in a
    folder named ``annotations``."""
    from .coco import is_instances_json
    parts = name.split("/")
    in_annotations = (len(parts) == 2 and parts[0] == "annotations"
                      or len(parts) == 1 and folder.endswith("annotations"))
    return in_annotations and is_instances_json(parts[-1])


from .supervisely import SuperviselySource  # noqa: E402  (registered explicitly just below)

register_reader("supervisely", SuperviselySource)

from .coco import CocoSource  # noqa: E402

register_reader("coco", CocoSource)

from .cvat_xml import CvatXmlSource  # noqa: E402

register_reader("cvat", CvatXmlSource)

from .voc_masks import VocMasksSource  # noqa: E402

register_reader("cvat-masks", VocMasksSource)

__all__ = ["READERS", "CocoSource", "CvatXmlSource", "Reader", "Source", "SourceBase", "SuperviselySource",
           "VocMasksSource", "detect_reader", "get_reader", "open_source", "register_reader"]
