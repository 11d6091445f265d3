"""Supervisely JSON writers: ``Annotation`` -> ``ann/<item>.json``, ``ProjectMeta`` -> ``meta.json``.

Conventions:
- Output is deterministic: the same annotation gives the same bytes (keys sorted, compact
  separators, UTF-8, no timestamps, ids or creation info; bitmap PNGs are a pure function of
  the mask). Objects keep label order. Each object has ``classTitle``, ``description`` (""),
  ``geometryType``, ``tags`` and its payload. The annotation has ``size`` (from ``size_hw``),
  ``objects``, ``tags`` and ``description`` (the source's ``raw["description"]`` when it is a
  string, else "").
- Coordinates are written as they are held: int64 pixel indices as JSON integers; float64
  (COCO/CVAT corner-origin) coordinates as JSON floats, unchanged. A Supervisely reader floors
  floats (the SDK and ``maskcore.readers.supervisely`` both do), which is the OpenCV rule
  maskcore applies to float coordinates anyway.
- Geometry mapping (``maskcore.geometry`` -> ``geometryType``):
  ``Polygon`` -> ``polygon`` (exterior, interior); ``Rectangle`` -> ``rectangle`` (both corners
  inclusive); axis-aligned ``Box`` -> ``rectangle`` whose inclusive corners are the first and
  last column and row it covers under the COCO half-open rule (``box_pixels_xyxy``: integer
  corners [x0, x1) give columns x0 .. x1-1; a box covering no pixel centre is written as a
  ``polygon`` of its corners instead, so it still draws nothing-or-little rather than growing);
  rotated ``Box`` -> ``polygon`` of its four float corners; ``Bitmap`` -> ``bitmap`` and
  ``AlphaMask`` -> ``alpha_mask``: ``{origin: [x, y], data: base64(zlib(PNG))}``, the PNG
  1-bit grey (0/1; bitmap) or 8-bit grey (alpha), cropped to the set pixels with the origin
  moved to match, as the SDK stores them; ``Polyline`` -> ``line``; ``Point`` -> ``point``;
  ``Graph`` -> ``graph`` (``nodes: {id: {loc, disabled?}}``); ``Cuboid2d`` -> ``cuboid_2d``;
  ``OrientedBBox`` -> ``oriented_bbox``; ``Cuboid`` -> ``cuboid``; ``MultiPolygon`` (a COCO
  annotation with several rings) -> one ``bitmap`` object: the union of its parts as the
  Supervisely layouts draw it (the OpenCV rule, ``maskcore.kernel.draw.coverage``), clipped to
  the canvas, so the object stays one object (one instance mask) when the SDK or maskcore reads
  the project back; the SDK's ``multipolygon`` exists only in newer SDKs, and N polygon objects
  would become N instances. Readers declare such classes' shape ``bitmap`` (or ``any``).
- An empty ``Bitmap`` or ``AlphaMask`` (no set pixel) cannot be stored (the SDK refuses an
  empty bitmap): it is left out, and ``warn`` (when given) hears about it.
- Tags: ``{"name": ..., "value": ...}``; ``value`` is left out when it is None (a tag meta of
  value type ``none``, as the SDK writes it).
Pure: no file access.
"""

from __future__ import annotations

import base64
import json
import math
import zlib
from collections.abc import Callable
from typing import Any

import numpy as np

from ..kernel.draw import coverage
from ..model import geometry as g
from ..model.annotation import Annotation, Label, ProjectMeta
from .png import png_file

_SHAPE_NAMES = {"box": "rectangle"}   # maskcore-only geometry names -> Supervisely shapes


# --- PNG of a mask -----------------------------------------------------------------------------

def _grey_png(rows: np.ndarray, width: int, bit_depth: int) -> bytes:
    """A grey PNG from packed scanlines ``rows`` (H, bytes per row), filter None."""
    height = rows.shape[0]
    raw = np.zeros((height, rows.shape[1] + 1), dtype=np.uint8)
    raw[:, 1:] = rows
    return png_file(zlib.compress(raw.tobytes(), 6), (height, width), 0, bit_depth=bit_depth)


def mask_png(mask: np.ndarray) -> bytes:
    """A bool (H, W) mask as a 1-bit grey PNG (1 = set)."""
    mask = np.asarray(mask, dtype=bool)
    return _grey_png(np.packbits(mask, axis=1), mask.shape[1], 1)


def bitmap_data(png: bytes) -> str:
    """``bitmap.data`` text: base64 of zlib(PNG)."""
    return base64.b64encode(zlib.compress(png, 6)).decode("ascii")


def _crop(values: np.ndarray, origin_xy: tuple[int, int]):
    rows = np.flatnonzero(values.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(values.any(axis=0))
    r0, r1, c0, c1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    return (int(origin_xy[0]) + c0, int(origin_xy[1]) + r0), values[r0:r1, c0:c1]


# --- geometry payloads ---------------------------------------------------------------------------

def _xy(points: np.ndarray) -> list:
    """Points as JSON pairs: ints stay ints, floats stay floats."""
    arr = np.asarray(points)
    return arr.reshape(-1, 2).tolist() if arr.dtype.kind in "iuf" else [list(p) for p in arr]


def _points(exterior, interiors=()) -> dict:
    return {"points": {"exterior": _xy(exterior), "interior": [_xy(r) for r in interiors]}}


def _c_int(v: float) -> int:
    """C's (int) cast: truncation toward zero."""
    return math.trunc(v)


def box_pixels_xyxy(box: g.Box) -> tuple[int, int, int, int] | None:
    """Inclusive (x0, y0, x1, y1) pixel corners an axis-aligned ``Box`` covers under the COCO
    rule (pycocotools ``rleFrBbox``), ignoring the canvas; None when it covers no pixel.

    The rule (see ``maskcore.raster.coco_rule``) upsamples by 5 with ``(int)(5 v + .5)``;
    column c is covered when the sides straddle ``5 c + 2 .. 5 c + 3``, rows from
    ``ceil((Y + .5) / 5 - .5)`` of the top side to that of the bottom side, exclusive.
    """
    xa, xb = sorted((box.x0, box.x1))
    ya, yb = sorted((box.y0, box.y1))
    X0, X1 = _c_int(5 * xa + .5), _c_int(5 * xb + .5)
    Y0, Y1 = _c_int(5 * ya + .5), _c_int(5 * yb + .5)
    c0, c1 = -((2 - X0) // 5), (X1 - 3) // 5        # ceil((X0 - 2) / 5), floor((X1 - 3) / 5)
    r0, r1 = math.ceil((Y0 + .5) / 5 - .5), math.ceil((Y1 + .5) / 5 - .5) - 1
    if c0 > c1 or r0 > r1:
        return None
    return c0, r0, c1, r1


def geometry_payloads(geom: g.Geometry, size_hw=None) -> list[tuple[str, dict]]:
    """(geometryType, payload) objects for one geometry: one, or none (an empty bitmap; a
    multipolygon covering no pixel of the ``size_hw`` canvas)."""
    if isinstance(geom, g.Polygon):
        return [("polygon", _points(geom.exterior_xy, geom.interiors_xy))]
    if isinstance(geom, g.MultiPolygon):
        if size_hw is None:
            raise ValueError("sly_json: a multipolygon needs the canvas size_hw (it is written as a bitmap)")
        patch = coverage(geom, size_hw, 1, "opencv")
        return geometry_payloads(g.Bitmap((patch.left, patch.top), patch.mask), size_hw)
    if isinstance(geom, g.Rectangle):
        return [("rectangle", _points([[geom.x0, geom.y0], [geom.x1, geom.y1]]))]
    if isinstance(geom, g.Box):
        xyxy = None if geom.angle else box_pixels_xyxy(geom)
        if xyxy is None:
            return [("polygon", _points(geom.corners_xy()))]
        return [("rectangle", _points([list(xyxy[:2]), list(xyxy[2:])]))]
    if isinstance(geom, (g.Bitmap, g.AlphaMask)):
        values = geom.mask if isinstance(geom, g.Bitmap) else geom.alpha
        cropped = _crop(np.asarray(values), geom.origin_xy)
        if cropped is None:
            return []
        origin, values = cropped
        if isinstance(geom, g.Bitmap):
            png, kind = mask_png(values), "bitmap"
        else:
            png, kind = _grey_png(np.ascontiguousarray(values, np.uint8), values.shape[1], 8), "alpha_mask"
        return [(kind, {"bitmap": {"data": bitmap_data(png), "origin": list(origin)}})]
    if isinstance(geom, g.Polyline):
        return [("line", _points(geom.points_xy))]
    if isinstance(geom, g.Point):
        return [("point", _points([[geom.x, geom.y]]))]
    if isinstance(geom, g.Graph):
        nodes = {n.node_id: {"loc": [n.x, n.y], **({"disabled": True} if n.disabled else {})}
                 for n in geom.nodes}
        return [("graph", {"nodes": nodes})]
    if isinstance(geom, g.Cuboid2d):
        pts = _xy(geom.vertices_xy)
        return [("cuboid_2d", {"vertices": {name: {"loc": p}
                                            for name, p in zip(g.CUBOID_2D_VERTICES, pts)}})]
    if isinstance(geom, g.OrientedBBox):
        return [("oriented_bbox", {"points": [[geom.left, geom.top], [geom.right, geom.bottom]],
                                   "angle": geom.angle})]
    if isinstance(geom, g.Cuboid):
        return [("cuboid", {"points": _xy(geom.points_xy), "faces": [list(f) for f in geom.faces]})]
    raise TypeError(f"sly_json: expected a maskcore.geometry object, got {type(geom).__name__}")


# --- annotation and meta -------------------------------------------------------------------------

def tag_json(tag: dict) -> dict:
    """One tag ``{"name", "value"?}`` (value left out when None)."""
    out = {"name": tag.get("name")}
    if tag.get("value") is not None:
        out["value"] = tag["value"]
    return out


def _label_objects(label: Label, size_hw, warn: Callable[[str], None] | None) -> list[dict]:
    payloads = geometry_payloads(label.geometry, size_hw)
    if not payloads and warn is not None:
        warn(f"object {label.object_index} ({label.class_title!r}): empty "
             f"{label.geometry.geometry_type} left out of the Supervisely annotation")
    tags = [tag_json(t) for t in label.tags]
    return [{"classTitle": label.class_title, "description": "", "geometryType": kind,
             "tags": tags, **payload} for kind, payload in payloads]


def annotation_json(annotation: Annotation, warn: Callable[[str], None] | None = None) -> dict:
    """The Supervisely ``ann/<item>.json`` object of ``annotation`` (see the module doc)."""
    h, w = annotation.size_hw
    description = annotation.raw.get("description") if isinstance(annotation.raw, dict) else None
    objects = [o for label in annotation.labels for o in _label_objects(label, annotation.size_hw, warn)]
    return {"description": description if isinstance(description, str) else "",
            "size": {"height": int(h), "width": int(w)},
            "tags": [tag_json(t) for t in annotation.tags],
            "objects": objects}


def dumps(obj: Any) -> bytes:
    """Deterministic JSON bytes: sorted keys, compact, UTF-8, NaN refused."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


def annotation_json_bytes(annotation: Annotation, warn: Callable[[str], None] | None = None
                          ) -> bytes:
    """``annotation_json`` as deterministic bytes."""
    return dumps(annotation_json(annotation, warn))


def _hex(rgb) -> str:
    return "#{:02X}{:02X}{:02X}".format(*(int(v) for v in rgb))


def meta_json(meta: ProjectMeta) -> dict:
    """A Supervisely ``meta.json`` object: ``meta.raw`` (tag metas, project type, other keys)
    with ``classes`` rebuilt from ``meta.classes`` in order (title, shape, colour,
    geometry_config; other keys of the raw class of the same title, such as ``id`` or
    ``hotkey``, are kept). A maskcore-only shape (``box``) becomes ``rectangle``."""
    raw = dict(meta.raw) if isinstance(meta.raw, dict) else {}
    raw_classes = {c.get("title"): c for c in raw.get("classes", []) if isinstance(c, dict)}
    classes = []
    for c in meta.classes:
        extra = {k: v for k, v in raw_classes.get(c.title, {}).items()
                 if k not in ("title", "shape", "color", "geometry_config")}
        classes.append({**extra, "title": c.title, "shape": _SHAPE_NAMES.get(c.shape, c.shape),
                        "color": _hex(c.color_rgb), "geometry_config": dict(c.geometry_config)})
    raw["classes"] = classes
    raw.setdefault("tags", [])
    raw.setdefault("projectType", "images")
    return raw


def meta_json_bytes(meta: ProjectMeta) -> bytes:
    """``meta_json`` as deterministic bytes."""
    return dumps(meta_json(meta))
