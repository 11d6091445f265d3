"""COCO instances reader: one ``instances.json`` plus an image folder, on any fsspec filesystem.

Conventions:
- Coordinates are COCO's: float, origin at the top-left *corner* of the image (pixel (c, r) is
  the square [c, c+1) x [r, r+1)), x = column, y = row; they become float64 geometries
  (``maskcore.geometry``) and are drawn by the layout's rule (``rule="coco"`` is pycocotools').
- ``segmentation`` of an annotation:
  * a list of flat rings ``[x0, y0, x1, y1, ...]``: one ring -> ``Polygon``; several ->
    ``MultiPolygon`` of one-ring polygons, OR-ed when drawn (as pycocotools ``merge`` does:
    no holes). Rings need an even length and at least 3 points;
  * RLE ``{"size": [h, w], "counts": ...}``, ``counts`` a list (uncompressed) or COCO's compact
    string (``maskcore.codec.coco_rle``): runs over the image in column-major (Fortran) order,
    starting with a run of 0s; ``size`` must be the image's [height, width] and the runs must
    add up to h * w. Becomes a ``Bitmap`` cropped tight to its pixels (``origin_xy`` = its
    top-left pixel; an empty mask is a (0, 0) bitmap at (0, 0));
  * ``[]`` or missing: the ``bbox`` [x, y, w, h] -> ``Box`` [x, x + w) x [y, y + h) (half-open),
    rotated by ``attributes.rotation`` degrees (clockwise on screen, about the centre) when CVAT
    wrote one: CVAT's COCO export keeps the unrotated box there and its own importer turns the
    attribute back into the box's rotation, so do we (pycocotools ignores it).
  ``iscrowd`` is not looked at: either kind of segmentation is taken whatever it says.
- Classes: distinct category ``name``s in the order of their first category; categories that
  share a name are one class (every id maps to it); id 0 is an id like any other. Colours:
  ``maskcore.palette.class_colors`` (VOC colours 1..n in class order). A class's ``shape`` is
  ``polygon``, ``bitmap`` or ``rectangle`` when all its annotations are polygons, RLE or
  bbox-only, else (mixed, or unused) ``any``; a rotated bbox-only box counts as a polygon (the
  Supervisely JSON writer stores it as one). ``ProjectMeta.raw`` is a Supervisely meta.json.
- Items: one per ``images`` entry (with or without annotations), named by ``file_name``, in one
  dataset: ``<subset>`` for ``instances_<subset>.json`` (also ``instances_<subset>.coco.json``),
  else the JSON's folder name (roboflow's ``valid``), else ``ds0``. The image is ``file_name``
  under the image folder (``images=``, default the JSON's folder), found in one recursive
  listing; a missing image gives a null ``img_path`` (the layout decides whether it matters).
  A second image entry with an already used ``file_name`` is listed as ``<file_name>~<image
  id>`` with a ``problem`` (it fails alone). Annotations whose ``image_id`` names no image are
  no item's: they are counted in ``CocoSource.warnings``.
- Each item's annotation is, for the worker, canonical compact JSON ``{"annotations": [...its
  annotations in file order...], "image": {...}}`` (sorted keys, ASCII; ``item_inline_bytes``), so
  the same input gives the same bytes and checksum. The plan does not carry it: it carries the
  item's byte spans in the file (``ann_spans``) and a digest of those bytes (``ann_inline``, the
  item's change stamp), and ``item_annotation`` reads the spans (``readers.coco_index``).
- Errors: a file that is not COCO-shaped (not an object; ``images`` / ``categories`` /
  ``annotations`` not lists; an entry without a usable ``id``, ``file_name``, ``name`` or
  ``image_id``; ids repeated) -> ``ProjectError`` naming the key. A bad annotation ->
  ``AnnotationError`` (``UnknownClassError``, ``LimitError``) at ``<where>/object <i>``; a bad
  image entry (height, width) -> ``AnnotationError`` at ``<where>``: that item fails alone.
- The JSON is streamed once on the driver (``open_source``; ``readers.coco_index``): never held
  whole, so any size up to ``max_json_bytes`` (default ``DEFAULT_MAX_JSON_BYTES``, by its listed
  size) is read; a broken structure is a ``ProjectError`` with its byte offset. Workers get only the
  picklable fields (URLs, options, the category id -> class table) and read each item's spans
  (range reads: ``os.pread`` locally, ``cat_ranges`` on a store); malformed JSON inside one
  annotation's rings fails that item alone.
"""

from __future__ import annotations

import json
import math
import os
import posixpath
import re
import time
from typing import Any

import fsspec
import numpy as np
import pyarrow as pa
from fsspec.core import split_protocol

from ..codec.coco_rle import check_rle_counts, rle_counts_from_string, rle_to_bitmap
from ..codec.json_spans import JsonSpanError
from ..errors import (
    AnnotationError,
    ItemError,
    ItemSourceError,
    LimitError,
    ProjectError,
    UnknownClassError,
)
from ..io.storage import cat_whole, change_stamp, filesystem, redact
from ..kernel.palette import class_colors
from ..limits import DEFAULT_MAX_JSON_BYTES, MAX_COORD, MAX_PIXELS
from ..model import geometry as G
from ..model.annotation import Annotation, Label, ObjClass, ProjectMeta
from .base import ItemAnnotation, SourceBase, regular_files
from .coco_index import StreamIndex, index_stream, read_item
from .values import canvas_size_hw, is_utf8

ITEMS_SCHEMA = pa.schema([
    ("dataset", pa.string()), ("item", pa.string()),
    ("ann_path", pa.string()), ("img_path", pa.string()),
    ("ann_bytes", pa.int64()), ("img_bytes", pa.int64()),
    ("ann_inline", pa.binary()), ("problem", pa.string()),
    ("ann_spans", pa.list_(pa.int64())),
])
"""Columns of ``list_items``: ``img_path`` relative to the image folder, ``ann_path`` always
null. A source streamed from a file (``CocoSource``) gives ``ann_spans`` (the item's byte spans
in the JSON, ``coco_index``), ``ann_inline`` its token (a digest of those bytes) and ``ann_bytes``
their length; ``item_annotation`` reads them. ``items_table`` (a decoded document) gives the inline
JSON itself in ``ann_inline`` and null ``ann_spans``."""

CHUNK_BYTES = 1 << 24
"""Bytes of the JSON read and scanned at a time on the driver (16 MiB: the transient memory of a
chunk's entries, decoded, is several times this)."""
SPAN_GAP = 1 << 16
"""Spans of one item closer than this are read as one range (fewer requests on a store)."""

_SUBSET_RE = re.compile(r"instances_(.+?)(?:\.coco)?\.json", re.IGNORECASE)


# --- one item ----------------------------------------------------------------------------------

def _is_number(v: Any) -> bool:
    return type(v) is float or type(v) is int


_NUMBER_TYPES = frozenset((float, int))


def _coords(values: Any, what: str) -> np.ndarray:
    """A flat list of finite numbers of magnitude <= MAX_COORD -> float64 array."""
    if not isinstance(values, list):
        raise AnnotationError(f"{what}: expected a list of numbers, got {type(values).__name__}")
    if _NUMBER_TYPES.issuperset(map(type, values)):  # the usual case, checked in bulk (no bool)
        try:
            arr = np.asarray(values, dtype=np.float64)
        except OverflowError:  # an int beyond float64: reported below
            arr = None
        if arr is not None and (not arr.size or np.abs(arr).max() <= MAX_COORD):  # NaN fails
            return arr
    for j, v in enumerate(values):
        if not _is_number(v) or not abs(v) <= MAX_COORD:  # NaN fails the comparison too
            raise AnnotationError(f"{what}[{j}]: expected a finite number of magnitude at most "
                                  f"2**31, got {v!r:.40}")
    return np.asarray(values, dtype=np.float64)


def _polygon(rings: list, i_ring_where: str) -> G.Polygon | G.MultiPolygon:
    parts = []
    for j, ring in enumerate(rings):
        what = f"{i_ring_where}[{j}]"
        arr = _coords(ring, what)
        if arr.size % 2:
            raise AnnotationError(f"{what}: expected an even number of coordinates (x, y pairs), "
                                  f"got {arr.size}")
        if arr.size < 6:
            raise AnnotationError(f"{what}: expected a ring of at least 3 points, got {arr.size // 2}")
        parts.append(G.Polygon(arr.reshape(-1, 2)))
    return parts[0] if len(parts) == 1 else G.MultiPolygon(tuple(parts))


def _rle(seg: dict, size_hw: tuple[int, int], max_bitmap_pixels: int) -> G.Bitmap:
    h, w = size_hw
    size = seg.get("size")
    if not (isinstance(size, list) and len(size) == 2 and all(type(v) is int for v in size)
            and size == [h, w]):
        raise AnnotationError(f"segmentation.size: expected [height, width] of the image = "
                              f"[{h}, {w}], got {size!r:.60}")
    if h * w > max_bitmap_pixels:
        raise LimitError(f"segmentation: an RLE mask of {w}x{h} (WxH) = {h * w} pixels is above "
                         f"the limit of {max_bitmap_pixels} pixels")
    counts = seg.get("counts")
    if isinstance(counts, str):
        try:
            arr = rle_counts_from_string(counts)
        except (ValueError, UnicodeEncodeError) as exc:
            raise AnnotationError(f"segmentation.counts: not COCO compressed RLE: {exc}") from None
    elif isinstance(counts, list):
        bad = next((j for j, c in enumerate(counts) if type(c) is not int or not 0 <= c <= h * w),
                   None)
        if bad is not None:
            raise AnnotationError(f"segmentation.counts[{bad}]: expected a run length in "
                                  f"0..{h * w} (h*w), got {counts[bad]!r:.40}")
        arr = np.asarray(counts, dtype=np.int64)
    else:
        raise AnnotationError(f"segmentation.counts: expected a string (compressed RLE) or a list "
                              f"of run lengths, got {type(counts).__name__}")
    try:
        check_rle_counts(arr, size_hw)
    except ValueError as exc:
        raise AnnotationError(f"segmentation.counts: {exc}") from None
    origin, mask = rle_to_bitmap(arr, size_hw)
    return G.Bitmap(origin, mask)


def _box(ann: dict) -> G.Box:
    if ann.get("bbox") is None:
        raise AnnotationError("expected a segmentation (rings or RLE) or a bbox, got neither")
    xywh = _coords(ann.get("bbox"), "bbox")
    if xywh.size != 4 or xywh[2] < 0 or xywh[3] < 0:
        raise AnnotationError(f"bbox: expected [x, y, width, height] with width, height >= 0 "
                              f"(the segmentation is empty), got {ann.get('bbox')!r:.80}")
    x, y, w, h = (float(v) for v in xywh)
    attributes = ann.get("attributes")
    angle = attributes.get("rotation", 0.0) if isinstance(attributes, dict) else 0.0
    if not _is_number(angle) or not math.isfinite(angle):
        raise AnnotationError(f"attributes.rotation: expected degrees as a number, got {angle!r:.40}")
    return G.Box(x, y, x + w, y + h, float(angle))


def parse_geometry(ann: dict, size_hw: tuple[int, int], *,
                   max_bitmap_pixels: int = MAX_PIXELS) -> G.Geometry:
    """One COCO annotation's shape (see the module docstring); ``AnnotationError`` if unusable."""
    seg = ann.get("segmentation")
    if seg is None or seg == []:
        return _box(ann)
    if isinstance(seg, dict):
        return _rle(seg, size_hw, max_bitmap_pixels)
    if isinstance(seg, list):
        return _polygon(seg, "segmentation")
    raise AnnotationError(f"segmentation: expected a list of rings or an RLE object, got "
                          f"{type(seg).__name__}")


def _tags(ann: dict, geometry: G.Geometry) -> tuple[dict, ...]:
    attributes = ann.get("attributes")
    if attributes is None:
        return ()
    if not isinstance(attributes, dict):
        raise AnnotationError(f"attributes: expected an object, got {type(attributes).__name__}")
    skip = "rotation" if isinstance(geometry, G.Box) else None  # became the box's angle
    # key order: the canonical bytes' (sorted), also when parsing the entries they were made from
    return tuple({"name": k, "value": tag_value(v)} for k, v in sorted(attributes.items()) if k != skip)


def tag_value(value) -> str:
    """An attribute value as the text of an ``any_string`` tag (every COCO attribute is one, see
    ``meta_from_index``): strings as they are, anything else as its compact JSON text
    (``false``, ``3``, ``[1,2]``)."""
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"),
                                                          sort_keys=True, ensure_ascii=False)


def _image_size(image: dict, where: str) -> tuple[int, int]:
    return canvas_size_hw(image, "image", where)


def parse_item(obj: Any, category_names: dict, meta: ProjectMeta, where: str, *,
               max_bitmap_pixels: int = MAX_PIXELS) -> Annotation:
    """One item's inline JSON (``{"image", "annotations"}``, decoded or bytes) -> ``Annotation``.

    ``category_names`` maps category ids to class titles. Labels keep file order and
    ``object_index`` is the position in ``annotations``; ``Annotation.raw`` is the image entry.
    """
    if isinstance(obj, (bytes, bytearray, str)):
        try:
            obj = json.loads(obj)
        except (ValueError, RecursionError) as exc:
            raise AnnotationError(f"expected JSON, got a parse error: {exc}", where=where) from None
    if not (isinstance(obj, dict) and isinstance(obj.get("image"), dict)
            and isinstance(obj.get("annotations"), list)):
        raise AnnotationError("expected an object {image, annotations}", where=where)
    image = obj["image"]
    size_hw = _image_size(image, where)
    classes = meta.class_by_title()
    labels = _polygon_labels(obj["annotations"], category_names, classes)
    if labels is None:  # not all plain polygons, or something to refuse: one by one, errors located
        labels = []
        for i, ann in enumerate(obj["annotations"]):
            try:
                labels.append(_label(ann, i, size_hw, category_names, classes, max_bitmap_pixels))
            except ItemError as err:
                raise err.located(f"{where}/object {i}") from None
    return Annotation(size_hw, tuple(labels), (), image)


def _polygon_labels(anns: list, category_names: dict, classes: dict) -> list[Label] | None:
    """The labels ``_label`` gives, when every annotation is a known category's polygon with
    valid rings (the usual item): all coordinates converted and checked in one numpy call instead
    of one per ring. None when any annotation is anything else (``_label`` then parses and
    refuses them one by one)."""
    values: list = []
    ring_ends: list[int] = []   # where each ring ends in ``values``
    found = []                  # (title, rings, attributes) per annotation
    for ann in anns:
        if type(ann) is not dict:
            return None
        cid, seg = ann.get("category_id"), ann.get("segmentation")
        title = category_names.get(cid) if _is_id(cid) else None
        attributes = ann.get("attributes")
        if (title is None or title not in classes or type(seg) is not list or not seg
                or not (attributes is None or type(attributes) is dict)):
            return None
        for ring in seg:
            if type(ring) is not list or len(ring) % 2 or len(ring) < 6:
                return None
            values += ring
            ring_ends.append(len(values))
        found.append((title, len(seg), attributes))
    if not _NUMBER_TYPES.issuperset(map(type, values)):
        return None
    try:
        flat = np.asarray(values, dtype=np.float64)
    except OverflowError:  # an int beyond float64
        return None
    if flat.size and not np.abs(flat).max() <= MAX_COORD:  # NaN fails too
        return None
    labels, ring, start = [], 0, 0
    for i, (title, n_rings, attributes) in enumerate(found):
        parts = []
        for end in ring_ends[ring:ring + n_rings]:
            parts.append(G.Polygon(flat[start:end].reshape(-1, 2)))
            start = end
        ring += n_rings
        geometry = parts[0] if n_rings == 1 else G.MultiPolygon(tuple(parts))
        tags = () if attributes is None else _tags({"attributes": attributes}, geometry)
        labels.append(Label(title, geometry, i, tags))
    return labels


def _label(ann: Any, i: int, size_hw, category_names: dict, classes: dict,
           max_bitmap_pixels: int) -> Label:
    if not isinstance(ann, dict):
        raise AnnotationError(f"expected an object, got {type(ann).__name__}")
    cid = ann.get("category_id")
    title = category_names.get(cid) if _is_id(cid) else None
    if title is None or title not in classes:
        raise UnknownClassError(f"category_id: expected one of the {len(category_names)} "
                                f"category ids of the JSON, got {cid!r:.40}")
    geometry = parse_geometry(ann, size_hw, max_bitmap_pixels=max_bitmap_pixels)
    return Label(title, geometry, i, _tags(ann, geometry))


# --- the whole file ----------------------------------------------------------------------------

def _is_id(v: Any) -> bool:
    return type(v) is int or type(v) is str


def _list_key(doc: dict, key: str, required: bool) -> list:
    value = doc.get(key)
    if value is None and not required:
        return []
    if not isinstance(value, list):
        raise ProjectError(f"COCO JSON key {key!r}: expected a list, got "
                           f"{'nothing' if value is None else type(value).__name__}")
    return value


def _entry(entries: list, key: str, i: int, fields: dict) -> dict:
    """``entries[i]`` checked: an object whose ``fields`` pass their checks."""
    return _check_entry(entries[i], key, i, fields)


def _check_entry(entry: Any, key: str, i: int, fields: dict) -> dict:
    """``entry``, the ``i``-th of ``key``, checked: an object whose ``fields`` pass their checks."""
    if not isinstance(entry, dict):
        raise ProjectError(f"COCO JSON key {key}[{i}]: expected an object, got {type(entry).__name__}")
    for name, (check, expected) in fields.items():
        if not check(entry.get(name)):
            raise ProjectError(f"COCO JSON key {key}[{i}].{name}: expected {expected}, got "
                               f"{entry.get(name)!r:.60}")
    return entry


_ID = (_is_id, "an integer or string id")
_NAME = (lambda v: isinstance(v, str) and v != "", "a non-empty string")
_FIELDS = {"id": _ID, "file_name": _NAME, "image_id": _ID}


def _check_entry_names(entry: Any, key: str, i: int, names: tuple) -> dict:
    """``_check_entry`` with the checks of the named fields."""
    return _check_entry(entry, key, i, {n: _FIELDS[n] for n in names})


def _kind(ann: dict) -> str:
    """The Supervisely shape an annotation becomes: a rotated box is written as a polygon."""
    seg = ann.get("segmentation")
    if isinstance(seg, dict):
        return "bitmap"
    if seg is None or seg == []:
        attributes = ann.get("attributes")
        rotation = attributes.get("rotation") if isinstance(attributes, dict) else None
        return "polygon" if _is_number(rotation) and rotation % 360 else "rectangle"
    return "bitmap" if isinstance(seg, list) and len(seg) > 1 else "polygon"  # rings: one bitmap


def index_coco(doc: Any) -> dict:
    """Decoded COCO JSON -> {"names": category id -> class title, "classes": titles in order,
    "kinds": title -> set of segmentation kinds, "images": the image entries, "by_image":
    image id -> its annotations in file order, "orphans": annotations of unknown images,
    "used_ids": the category ids annotations use}.

    Pure; ``ProjectError`` naming the key when the document is not COCO-shaped.
    """
    if not isinstance(doc, dict):
        raise ProjectError(f"COCO JSON: expected an object with images, categories, annotations, "
                           f"got {type(doc).__name__}")
    _refuse_other_coco_tasks(doc)
    images = _list_key(doc, "images", True)
    categories = _list_key(doc, "categories", True)
    annotations = _list_key(doc, "annotations", False)
    names: dict = {}
    for i in range(len(categories)):
        cat = _entry(categories, "categories", i, {"id": _ID, "name": _NAME})
        if names.setdefault(cat["id"], cat["name"]) != cat["name"]:
            raise ProjectError(f"COCO JSON key categories[{i}].id: expected unique ids, got "
                               f"{cat['id']!r} for {names[cat['id']]!r} and {cat['name']!r}")
    classes = list(dict.fromkeys(c["name"] for c in categories))
    by_image: dict = {}
    for i in range(len(images)):
        img = _entry(images, "images", i, {"id": _ID, "file_name": _NAME})
        if img["id"] in by_image:
            raise ProjectError(f"COCO JSON key images[{i}].id: expected unique image ids, got "
                               f"{img['id']!r} twice")
        by_image[img["id"]] = []
    kinds: dict = {t: set() for t in classes}
    tags: set = set()
    keypoints = 0
    used_ids: set = set()
    orphans = []
    for i in range(len(annotations)):
        ann = _entry(annotations, "annotations", i, {"image_id": _ID})
        anns = by_image.get(ann["image_id"])
        if anns is None:
            orphans.append(ann)
            continue
        anns.append(ann)
        title = names.get(ann.get("category_id")) if _is_id(ann.get("category_id")) else None
        if title is not None:
            kinds[title].add(_kind(ann))
            used_ids.add(ann["category_id"])
        if isinstance(ann.get("attributes"), dict):
            tags.update(k for k in ann["attributes"] if isinstance(k, str))
        if ann.get("num_keypoints") or ann.get("keypoints"):
            keypoints += 1
    return {"names": names, "classes": classes, "kinds": kinds, "images": images,
            "by_image": by_image, "orphans": orphans, "tags": sorted(tags), "keypoints": keypoints,
            "used_ids": used_ids}


def index_from_stream(si: StreamIndex) -> dict:
    """A streamed pass (``coco_index.StreamIndex``) -> the ``index_coco`` result without
    ``images`` / ``by_image`` / ``orphans`` (the image entries and annotations stay in the file:
    ``stream`` is ``si``; ``n_orphans``); the same checks and messages."""
    _refuse_without_categories(si.first_annotation, "categories" in si.seen)
    for key, required in (("images", True), ("categories", True), ("annotations", False)):
        if key in si.values or key not in si.seen:   # not a list read element by element
            _list_key(si.values, key, required)
    names: dict = {}
    for i, cat in enumerate(si.categories):
        cat = _check_entry(cat, "categories", i, {"id": _ID, "name": _NAME})
        if names.setdefault(cat["id"], cat["name"]) != cat["name"]:
            raise ProjectError(f"COCO JSON key categories[{i}].id: expected unique ids, got "
                               f"{cat['id']!r} for {names[cat['id']]!r} and {cat['name']!r}")
    classes = list(dict.fromkeys(c["name"] for c in si.categories))
    kinds: dict = {t: set() for t in classes}
    used_ids: set = set()
    for code, kind in si.kind_pairs:
        title = names.get(si.cat_ids[code])
        if title is not None:
            kinds[title].add(kind)
            used_ids.add(si.cat_ids[code])
    return {"names": names, "classes": classes, "kinds": kinds, "stream": si,
            "tags": sorted({k for keys in si.keysets for k in keys}), "keypoints": si.keypoints,
            "used_ids": used_ids, "n_orphans": si.n_orphans}


def _refuse_other_coco_tasks(doc: dict) -> None:
    """COCO panoptic (``segments_info`` + PNGs) and captions-only JSON are refused at once, as a
    whole, instead of one misleading error per image (``ProjectError``)."""
    annotations = doc.get("annotations")
    first = annotations[0] if isinstance(annotations, list) and annotations else None
    _refuse_by_first(first)
    _refuse_without_categories(first, "categories" in doc)


def _refuse_without_categories(first: Any, has_categories: bool) -> None:
    if not has_categories and isinstance(first, dict) and "category_id" not in first:
        raise ProjectError("COCO JSON without categories and without category_id in its "
                           "annotations (image labels or captions only) is not supported: "
                           "maskcore reads COCO instances JSON")


def _refuse_by_first(first: Any) -> None:
    """Panoptic and captions JSON, told by their first annotation."""
    if isinstance(first, dict) and "segments_info" in first:
        raise ProjectError("COCO panoptic is not supported (annotations hold 'segments_info' and "
                           "PNG file names): maskcore reads COCO instances JSON (segmentation "
                           "polygons or RLE, bbox)")
    if isinstance(first, dict) and "caption" in first and "category_id" not in first:
        raise ProjectError("COCO captions JSON is not supported (annotations hold 'caption', no "
                           "'category_id'): it has no shapes to draw; maskcore reads COCO "
                           "instances JSON")


def meta_from_index(index: dict) -> ProjectMeta:
    """Classes of an ``index_coco`` result, with a Supervisely ``meta.json`` as ``raw``: every
    annotation ``attributes`` key is declared as an ``any_string`` tag meta (code-point order), so
    that the Supervisely SDK accepts the object tags they become (it refuses an undeclared tag).
    Each class keeps its category ids (``ObjClass.source_ids``, for layout option
    ``class_values: source``; of categories merged by name, those annotations use: Roboflow's
    unused id-0 category named as a class keeps it out); meta.json does not hold them."""
    titles = index["classes"]
    ids: dict = {t: [] for t in titles}
    for cat_id, title in index["names"].items():
        ids[title].append(cat_id)
    used = index.get("used_ids", set())
    for title, found in ids.items():  # merged names: the ids annotations use (Roboflow's id 0)
        ids[title] = [i for i in found if i in used] or found
    classes = []
    for title, rgb in zip(titles, class_colors(len(titles))):
        kinds = index["kinds"][title]
        classes.append(ObjClass(title, next(iter(kinds)) if len(kinds) == 1 else "any", rgb, {},
                                source_ids=tuple(ids[title])))
    raw = {"classes": [{"title": c.title, "shape": c.shape,
                        "color": "#{:02x}{:02x}{:02x}".format(*c.color_rgb), "geometry_config": {}}
                       for c in classes],
           "tags": [{"name": name, "value_type": "any_string",
                     "color": "#{:02X}{:02X}{:02X}".format(*rgb)}
                    for name, rgb in zip(index.get("tags", ()), class_colors(len(index.get("tags", ()))))],
           "projectType": "images"}
    return ProjectMeta(tuple(classes), raw)


def item_inline_bytes(image: dict, annotations: list) -> bytes:
    """The canonical inline JSON of one item (sorted keys, compact, ASCII)."""
    return json.dumps({"image": image, "annotations": annotations}, sort_keys=True,
                      separators=(",", ":"), ensure_ascii=True).encode("ascii")


def _image_key(file_name: str) -> str | None:
    """``file_name`` as a path under the image folder, or None if it cannot be one."""
    path = posixpath.normpath(file_name.replace("\\", "/"))
    if path in (".", "..") or path.startswith(("/", "../")):
        return None
    return path


def _item_names(image_ids: list, file_names: list) -> tuple[list, list, list]:
    """Per image entry: its item name, ``problem`` (or None) and path under the image folder (or
    None): a name that is not UTF-8 or is used by an earlier entry fails its item."""
    names, problems, keys, used = [], [], [], set()
    for image_id, file_name in zip(image_ids, file_names):
        name, problem = file_name, None
        if not is_utf8(name):
            name = name.encode("utf-8", "backslashreplace").decode("utf-8")
            problem = f"file_name {name!r} is not valid UTF-8 (image id {image_id!r})"
        if name in used:
            first = name
            name = f"{first}~{image_id}"
            n = 1
            while name in used:
                n += 1
                name = f"{first}~{image_id}~{n}"
            problem = problem or (f"file_name {first!r} is used by an earlier image entry too "
                                  f"(this is image id {image_id!r}); give each image its own "
                                  f"file_name")
        used.add(name)
        names.append(name)
        problems.append(problem)
        keys.append(_image_key(file_name) if problem is None else None)
    return names, problems, keys


def items_table(index: dict, dataset: str, image_files: dict[str, int]) -> pa.Table:
    """The item table (``ITEMS_SCHEMA``) of an ``index_coco`` result (a decoded document: the
    inline JSON in ``ann_inline``); ``image_files`` maps paths under the image folder to sizes.
    Pure."""
    images = index["images"]
    names, problems, keys = _item_names([im["id"] for im in images], [im["file_name"] for im in images])
    inline = [item_inline_bytes(im, index["by_image"][im["id"]]) for im in images]
    return _table(dataset, names, problems, keys, image_files, inline, [len(b) for b in inline], None)


def stream_items_table(index: dict, dataset: str, image_files: dict[str, int]) -> pa.Table:
    """The item table (``ITEMS_SCHEMA``) of an ``index_from_stream`` result: each item's spans in
    ``ann_spans``, their token in ``ann_inline``, their length in ``ann_bytes``. Pure."""
    si: StreamIndex = index["stream"]
    names, problems, keys = _item_names(si.image_ids, si.file_names)
    values, offsets, tokens, raw = si.spans_and_tokens()
    spans = pa.ListArray.from_arrays(pa.array(offsets), pa.array(values))
    return _table(dataset, names, problems, keys, image_files, tokens, raw, spans)


def _table(dataset, names, problems, keys, image_files, inline, ann_bytes, spans) -> pa.Table:
    """The columns, rows sorted by item name."""
    n = len(names)
    order = sorted(range(n), key=names.__getitem__)
    sizes = [image_files.get(k) if k is not None else None for k in keys]
    columns = {
        "dataset": pa.array([dataset] * n, pa.string()), "item": pa.array(names, pa.string()),
        "ann_path": pa.nulls(n, pa.string()),
        "img_path": pa.array([k if z is not None else None for k, z in zip(keys, sizes)], pa.string()),
        "ann_bytes": pa.array(ann_bytes, pa.int64()), "img_bytes": pa.array(sizes, pa.int64()),
        "ann_inline": pa.array(inline, pa.binary()), "problem": pa.array(problems, pa.string()),
        "ann_spans": spans if spans is not None else pa.nulls(n, pa.list_(pa.int64())),
    }
    return pa.table(columns, schema=ITEMS_SCHEMA).take(pa.array(order, pa.int64()))


def dataset_name(json_path: str) -> str:
    """``<subset>`` of ``instances_<subset>[.coco].json``, else the parent folder's name, else
    ``ds0``."""
    path = split_protocol(json_path.split("::")[-1])[1].replace("\\", "/").rstrip("/")
    match = _SUBSET_RE.fullmatch(posixpath.basename(path))
    if match:
        return match[1]
    return posixpath.basename(posixpath.dirname(path)) or "ds0"


def project_name(json_path: str) -> str:
    """The project's name (the default archive name): the folder holding the JSON (its parent when
    that folder is ``annotations``, as in COCO's own tree), else the JSON's stem (issue 16)."""
    path = split_protocol(json_path.split("::")[-1])[1].replace("\\", "/").rstrip("/")
    folder = posixpath.dirname(path)
    if posixpath.basename(folder).lower() == "annotations":
        folder = posixpath.dirname(folder)
    stem = posixpath.basename(path)
    stem = stem[:-5] if stem.lower().endswith(".json") else stem
    return posixpath.basename(folder).lstrip(".") or stem.lstrip(".") or "coco"


def default_image_folder(fs, json_path: str) -> str:
    """The image folder of a JSON when none is given: for ``<root>/annotations/instances_<subset>.json``
    the first folder of ``<root>/images/<subset>`` (Datumaro's COCO layout), ``<root>/<subset>``
    (COCO 2017 and Detectron2: ``val2017/``) and ``<root>/images`` that exists; else the JSON's
    own folder."""
    folder = posixpath.dirname(json_path)
    match = _SUBSET_RE.fullmatch(posixpath.basename(json_path))
    if match and posixpath.basename(folder) == "annotations":
        root = posixpath.dirname(folder)
        for candidate in (f"{root}/images/{match[1]}", f"{root}/{match[1]}", f"{root}/images"):
            if fs.isdir(candidate):
                return candidate
    return folder


def is_instances_json(name: str) -> bool:
    """Whether a file name is ``instances_<subset>[.coco].json`` (case-insensitive)."""
    return _SUBSET_RE.fullmatch(name) is not None


def subset_files(fs, folder: str) -> tuple[str, list[tuple[str, str]]]:
    """A COCO dataset folder (Datumaro's and Detectron2's layout) -> ``(root, [(subset, json
    path), ...])``: every ``annotations/instances_<subset>[.coco].json`` under ``root`` (``folder``
    itself, or its parent when ``folder`` is the ``annotations`` folder), by subset name. Other
    JSON (``person_keypoints_*``, ``captions_*``, ``panoptic_*``) is not read. ``ProjectError``
    when there is none or two files give one subset."""
    root = folder.rstrip("/")
    if posixpath.basename(root).lower() == "annotations" and not fs.isdir(f"{root}/annotations"):
        root = posixpath.dirname(root)
    try:
        names = sorted(posixpath.basename(p) for p in fs.ls(f"{root}/annotations", detail=False))
    except (FileNotFoundError, NotADirectoryError):
        names = []
    found: dict[str, str] = {}
    for name in names:
        match = _SUBSET_RE.fullmatch(name)
        if match:
            if match[1] in found:
                raise ProjectError(f"COCO dataset folder {root!r}: expected one JSON per subset, got "
                                   f"{posixpath.basename(found[match[1]])!r} and {name!r} for subset "
                                   f"{match[1]!r}")
            found[match[1]] = f"{root}/annotations/{name}"
    if not found:
        raise ProjectError(f"COCO dataset folder {root!r}: expected annotations/instances_<subset>.json "
                           f"(Datumaro's and Detectron2's layout), found none")
    return root, sorted(found.items())


def merge_indexes(indexes: dict[str, dict]) -> dict:
    """One category table for several subsets' ``index_coco`` results (subset -> index): classes in
    order of first appearance (subsets by name), each id one class; an id naming different classes
    in two subsets is refused (``ProjectError``: their category ids must agree)."""
    names: dict = {}
    first: dict = {}
    classes: list = []
    kinds: dict = {}
    tags: set = set()
    used: set = set()
    for subset, index in indexes.items():
        for cat_id, title in index["names"].items():
            if names.setdefault(cat_id, title) != title:
                raise ProjectError(f"COCO subsets {first[cat_id]!r} and {subset!r}: category id "
                                   f"{cat_id!r} is {names[cat_id]!r} in one and {title!r} in the other; "
                                   f"expected the same categories in every subset")
            first.setdefault(cat_id, subset)
        for title in index["classes"]:
            if title not in kinds:
                classes.append(title)
                kinds[title] = set()
            kinds[title] |= index["kinds"][title]
        tags.update(index["tags"])
        used |= index["used_ids"]
    return {"names": names, "classes": classes, "kinds": kinds, "tags": sorted(tags), "used_ids": used}


# --- the source --------------------------------------------------------------------------------

class CocoSource(SourceBase):
    """A COCO instances JSON and its image folder on fsspec filesystems.

    Picklable: holds URLs, options, the dataset name, the category table and the warnings; the
    parsed JSON stays on the driver (dropped when pickled); filesystems reopen lazily.
    ``warnings``: what the listing left out (annotations of unknown images).

    A COCO dataset folder (``<root>/annotations/instances_<subset>.json``, Datumaro's and
    Detectron2's layout; also its ``annotations`` folder) is read as one project of several
    subsets (``subsets``): each subset is a dataset, read by its own single-JSON source with its
    default image folder (``default_image_folder``; with ``images=DIR``: ``DIR/<subset>`` when it
    exists, else ``DIR``); one category table for all (``merge_indexes``); ``img_path`` is relative
    to ``root`` (or ``DIR``).
    """

    annotation_format = "coco"
    _transient = ("_index", "_images_fs", "_subs")

    def __init__(self, url: str, images: str | None = None, *,
                 storage_options: dict | None = None,
                 max_json_bytes: int = DEFAULT_MAX_JSON_BYTES) -> None:
        super().__init__(url, storage_options)
        self.images = images
        self.max_json_bytes = max_json_bytes
        self.dataset = dataset_name(url)
        self.project_name, self.project_id = project_name(url), None
        self.category_names: dict | None = None
        self.warnings: list[str] = []
        self._open_warnings: list[str] = []   # the JSON's; the listing adds its skipped files
        self._index: dict | None = None
        self._meta: ProjectMeta | None = None
        self._images_fs: tuple | None = None
        self.subsets: list[tuple[str, str]] | None = None   # a dataset folder: (subset, JSON path)
        self._subs: dict[str, CocoSource] | None = None

    def __repr__(self) -> str:
        return f"CocoSource({self._where()!r}, images={self.images!r})"

    @classmethod
    def open_source(cls, url_or_path: str, storage_options: dict | None = None, *,
                    images: str | None = None, max_json_bytes: int = DEFAULT_MAX_JSON_BYTES
                    ) -> CocoSource:
        """Open and parse the instances JSON (``ProjectError`` when unreadable, larger than
        ``max_json_bytes`` or not COCO); ``images`` is the image folder (default: the JSON's
        folder)."""
        url = os.fspath(url_or_path)
        src = cls(url, None if images is None else os.fspath(images), storage_options=storage_options,
                  max_json_bytes=max_json_bytes)
        fs, path = src.filesystem()
        if not path.lower().endswith(".json") and fs.isdir(path):
            root, src.subsets = subset_files(fs, path)
            src.project_name = posixpath.basename(root) or "coco"
            if root != path.rstrip("/"):   # the annotations folder was given: its parent
                src.url, src._fs = (root if "://" not in url else fs.unstrip_protocol(root)), None
                path = root
        if "://" not in url and "::" not in url:
            src.url = path  # absolute: workers may run in another folder
        if src.images is not None and "://" not in src.images and "::" not in src.images:
            src.images = os.path.abspath(src.images)
        src._load()
        return src

    def image_filesystem(self) -> tuple[fsspec.AbstractFileSystem, str]:
        """(filesystem, path) of the image folder, opened on first use."""
        if self._images_fs is None:
            if self.images is None and self.subsets is not None:
                self._images_fs = self.filesystem()
            elif self.images is None:
                fs, path = self.filesystem()
                self._images_fs = fs, default_image_folder(fs, path)
            else:
                self._images_fs = filesystem(self.images, self.storage_options)
        return self._images_fs

    def _load(self) -> dict:
        if self._index is None and self.subsets is not None:
            subs = self._subsources()
            self._index = merge_indexes({name: sub._load() for name, sub in subs.items()})
            self.category_names = self._index["names"]
            self.warnings = self._open_warnings = [w for sub in subs.values() for w in sub.warnings]
        if self._index is None:
            with self._store_errors(f"COCO JSON {self.url!r}", "a readable file"):
                fs, path = self.filesystem()
                size = fs.size(path)
                if size is not None and size > self.max_json_bytes:
                    raise ProjectError(f"COCO JSON {self._where()!r}: expected at most "
                                       f"{self.max_json_bytes} bytes (reader option max_json_bytes), "
                                       f"got {size}")
                self._index = self._index_file(fs, path)
            self.category_names = self._index["names"]
            self.warnings = self._open_warnings = self._orphan_warnings()
            if self._index["keypoints"]:
                self.warnings.append(
                    f"{self._where()}: {self._index['keypoints']} annotation(s) hold keypoints, "
                    f"which are not drawn (skipped); their segmentation and bbox are")
        return self._index

    def _index_file(self, fs, path: str) -> dict:
        """One streamed pass over the JSON (``coco_index``) -> ``index_from_stream``."""
        def chunks():
            with fs.open(path, "rb") as f:
                while chunk := f.read(CHUNK_BYTES):
                    yield chunk
        try:
            stream = index_stream(chunks(), check=_check_entry_names, kind_of=_kind,
                                  refuse_first=_refuse_by_first)
            return index_from_stream(stream)
        except JsonSpanError as exc:
            raise ProjectError(f"COCO JSON {self._where()!r}: {exc}") from None
        except ProjectError as exc:
            raise ProjectError(f"{self._where()!r}: {exc}") from None

    def _orphan_warnings(self) -> list[str]:
        si: StreamIndex = self._index["stream"]
        if not si.n_orphans:
            return []
        try:
            first = json.loads(self._read_ranges([si.first_orphan[0]], [si.first_orphan[1]])[0])
        except (ValueError, OSError):
            first = {}
        return [(f"{self._where()}: {si.n_orphans} annotation(s) point to an image_id that no "
                 f"image has (first: annotation id {first.get('id')!r:.40} -> image_id "
                 f"{first.get('image_id')!r:.40}); they are not exported")]

    def _read_ranges(self, starts: list[int], ends: list[int], path: str | None = None) -> list[bytes]:
        """The bytes of each range of the JSON (``path`` on this source's filesystem, default its
        own): a local file by ``os.pread``, a store by one ``cat_ranges`` call over the ranges
        merged where they lie within ``SPAN_GAP``."""
        fs, own = self.filesystem()
        path = own if path is None else path
        order = sorted(range(len(starts)), key=starts.__getitem__)
        merged: list[list[int]] = []
        for i in order:
            if merged and starts[i] <= merged[-1][1] + SPAN_GAP:
                merged[-1][1] = max(merged[-1][1], ends[i])
            else:
                merged.append([starts[i], ends[i]])
        if self.is_local():
            fd = os.open(path, os.O_RDONLY)
            try:
                blobs = [os.pread(fd, e - b, b) for b, e in merged]
            finally:
                os.close(fd)
        else:
            blobs = fs.cat_ranges([path] * len(merged), [b for b, _ in merged], [e for _, e in merged],
                                  on_error="raise")
        out: list[bytes] = [b""] * len(starts)
        k = 0
        for i in order:
            while ends[i] > merged[k][1] or starts[i] < merged[k][0]:
                k += 1
            base = merged[k][0]
            out[i] = blobs[k][starts[i] - base:ends[i] - base]
        return out

    def read_meta(self) -> ProjectMeta:
        """Classes from ``categories`` (see the module docstring)."""
        if self._meta is None:
            self._meta = meta_from_index(self._load())
        return self._meta

    def _subsources(self) -> dict[str, CocoSource]:
        """The single-JSON source of each subset of a dataset folder (parsed on first use)."""
        if self._subs is None:
            fs, _ = self.filesystem()
            remote = "://" in self.url or "::" in self.url
            subs = {}
            for subset, path in self.subsets or ():
                images = self.images
                if images is not None:
                    ifs, ipath = filesystem(images, self.storage_options)
                    if ifs.isdir(f"{ipath.rstrip('/')}/{subset}"):
                        images = f"{images.rstrip('/')}/{subset}"
                sub = CocoSource(fs.unstrip_protocol(path) if remote else path, images,
                                 storage_options=self.storage_options, max_json_bytes=self.max_json_bytes)
                sub.dataset = subset
                sub._load()
                subs[subset] = sub
            self._subs = subs
        return self._subs

    def _list_subsets(self, stamps: bool = False) -> pa.Table:
        """Every subset's listing (each its own image folder), ``img_path`` made relative to
        this source's image root, sorted by (dataset, item)."""
        self._load()
        root = self.image_filesystem()[1].rstrip("/")
        tables = []
        for sub in self._subsources().values():
            table = sub.list_items(stamps=stamps)
            folder = sub.image_filesystem()[1].rstrip("/")
            prefix = folder[len(root) + 1:] + "/" if folder != root else ""
            paths = [None if p is None else prefix + p for p in table.column("img_path").to_pylist()]
            tables.append(table.set_column(table.schema.get_field_index("img_path"), "img_path",
                                           pa.array(paths, pa.string())))
        self.warnings = [w for sub in self._subsources().values() for w in sub.warnings]
        return pa.concat_tables(tables).sort_by([("dataset", "ascending"), ("item", "ascending")])

    lists_stamps = True
    """``list_items(stamps=True)`` adds ``img_stamp``, each image's change stamp (the annotations are
    in the plan: the run stamps them by their own sha256)."""

    def list_items(self, *, stamps: bool = False) -> pa.Table:
        """One row per image entry (``ITEMS_SCHEMA``), sorted by (dataset, item); one recursive
        listing of the image folder."""
        if self.subsets is not None:
            return self._list_subsets(stamps)
        index = self._load()
        fs, root = self.image_filesystem()
        listed_at = time.time()
        with self._store_errors(f"images {root!r}", "a listable folder", OSError):
            if self.images is not None and not fs.isdir(root):
                where = redact(self.images, self.storage_options)
                raise ProjectError(f"images: expected a folder, got {where!r} (not found)")
            found = fs.find(root, detail=True) if fs.isdir(root) else {}
        cut = len(root.rstrip("/")) + 1
        skipped: list[str] = []
        files = regular_files(found, cut, skipped)
        self.warnings = [*self._open_warnings, *(f"image folder: {w}" for w in sorted(skipped))]
        table = stream_items_table(index, self.dataset, files)
        if stamps:
            stamp_of = {p[cut:]: change_stamp(info, listed_at) for p, info in found.items()}
            table = table.append_column("img_stamp", pa.array(
                [stamp_of.get(p) if p is not None else None for p in table.column("img_path").to_pylist()],
                pa.string()))
        return table

    def read_bytes(self, path: str) -> bytes:
        """Bytes of an image given by its path relative to the image folder."""
        fs, root = self.image_filesystem()
        return cat_whole(fs, f"{root.rstrip('/')}/{path}")

    def item_annotation(self, row: dict) -> bytes:
        """The item's canonical inline JSON (``item_inline_bytes``): read by its ``ann_spans``
        (``coco_index.read_item``), or ``ann_inline`` itself when the row carries no spans."""
        return self.item_annotation_decoded(row).data

    def item_annotation_decoded(self, row: dict) -> ItemAnnotation:
        """``item_annotation``'s bytes and, for an item read by its spans, the entries decoded
        on the way (``{"image", "annotations"}``): ``parse_annotation(..., decoded=)`` parses
        those instead of the bytes they were serialised to."""
        spans = row.get("ann_spans")
        if spans is None:
            return ItemAnnotation(row["ann_inline"])
        where = f"{row['dataset']}/{row['item']}"
        path = dict(self.subsets)[row["dataset"]] if self.subsets is not None else None
        try:
            image, annotations = read_item(list(spans), row["ann_inline"],
                                           lambda starts, ends: self._read_ranges(starts, ends, path), where)
        except OSError as exc:
            raise ItemSourceError(redact(f"COCO JSON {self.url}: expected the item's byte ranges, got "
                                         f"{type(exc).__name__}: {exc}", self.storage_options),
                                  where=where) from None
        decoded = {"image": image, "annotations": annotations}
        return ItemAnnotation(item_inline_bytes(image, annotations), decoded)

    def parse_annotation(self, data: bytes, meta: ProjectMeta, where: str, *,
                         max_bitmap_pixels: int = MAX_PIXELS, decoded: dict | None = None) -> Annotation:
        """``parse_item`` with this file's category table, of ``decoded`` when given (what
        ``item_annotation_decoded`` gave with ``data``), else of ``data``."""
        if self.category_names is None:  # a source that never loaded its JSON
            self._load()
        return parse_item(data if decoded is None else decoded, self.category_names, meta, where,
                          max_bitmap_pixels=max_bitmap_pixels)
