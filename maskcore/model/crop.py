"""The Supervisely SDK's load-time crop of every label to the image, as pure functions.

``sly.Annotation(...)`` (so also ``Annotation.from_json`` / ``load_json_file``) passes each label
through ``Label.crop(Rectangle(0, 0, H-1, W-1))`` (``annotation/annotation.py``
``Annotation._add_labels_impl``, ``annotation/label.py`` ``Label.crop``), except oriented boxes.
A label whose ``geometry.to_bbox()`` lies inside the image is kept as it is; any other label is
replaced by ``geometry.crop(rect)``: 0, 1 or several labels. The export app draws the result, so
pixel identity with it needs this crop. SDK file and function per geometry (paths relative to
``site-packages/supervisely/``; facts: docs/reference-notes.md section 1, CROP_NOTES.md):

- polygon (``geometry/polygon.py`` ``Polygon.crop``): shapely ``Polygon(exterior, holes)`` in
  **(row, col)** coordinates, ``.buffer(0)``, ``.intersection`` with the window polygon
  ``(0,0) (0,W-1) (H-1,W-1) (H-1,0)`` (row, col; corners are pixel centres). Every polygon of the
  result (also inside a MultiPolygon or GeometryCollection, in GEOS order) becomes a label; its
  rings lose the closing vertex and are rounded half-to-even (``round``); holes with <= 2 points
  are dropped; lines and points are dropped; a shapely exception drops the label (warning).
  The vertex order and start vertex are GEOS's output in (row, col) space, flipped to xy.
- rectangle (``geometry/rectangle.py`` ``Rectangle.crop``): integer box intersection, or dropped.
- line (``geometry/polyline.py`` ``Polyline.crop``): shapely ``LineString`` (row, col) ∩ window;
  the LineString pieces in GEOS order, a piece joined to the previous one when it starts at the
  previous one's end point (exact float compare), vertices **floored** (``PointLocation``).
  A shapely exception is re-raised by the SDK (the annotation fails): ``CropError`` here.
- point (``geometry/point.py`` ``Point.crop``): kept when on the image, else dropped.
- bitmap, alpha_mask (``geometry/bitmap.py`` ``Bitmap.crop``, ``AlphaMask`` inherits it): data
  sliced to the intersection of its bbox with the image, dropped if all zero, else re-tightened
  to the non-zero pixels (``Bitmap.__init__`` / ``AlphaMask.__init__``), moving the origin.
- graph, cuboid_2d (``geometry/graph.py`` ``GraphNodes.crop``): dropped when any node, disabled
  nodes included, is off the image; else kept unchanged.
- legacy cuboid (``geometry/cuboid.py`` ``Cuboid.crop``): dropped when any point used by a face
  is off the image (points no face uses are ignored, also by ``Cuboid.to_bbox``).
- multipolygon (``geometry/multipolygon.py`` ``Multipolygon.crop``): **every** part goes through
  ``Polygon.crop`` (buffer(0) also rewrites the parts that lie inside); the surviving polygons, in
  order, form one label, dropped when none survives.
- oriented_bbox: never cropped.

The bbox used for the "inside" test (``to_bbox``): polygon and line: the exterior only (holes
are ignored); multipolygon: the part exteriors; graph / cuboid_2d: every node; legacy cuboid:
the face points; bitmap: origin + data shape; point: itself.

Only Supervisely-style geometry is cropped: polygons and lines with int64 vertices, points with
integer coordinates, rectangles, bitmaps, alpha masks, graphs, cuboids and multipolygons of int64
polygons. ``Box`` and float64 polygons / lines / points (COCO, CVAT) are left untouched. Bitmaps
carry no such marker and are always cropped (for them the crop only removes off-image pixels).

Pure: numpy and shapely only, no I/O, no SDK import. Inside labels cost no shapely work: their
bboxes are checked in a few vectorised numpy calls per annotation.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import NamedTuple

import numpy as np
import shapely

from ..errors import AnnotationError
from .annotation import Annotation, Label
from .geometry import (
    AlphaMask,
    Bitmap,
    Cuboid,
    Cuboid2d,
    Graph,
    MultiPolygon,
    Point,
    Polygon,
    Polyline,
    Rectangle,
)

__all__ = ["CropError", "CropNote", "crop_annotation", "crop_annotation_report", "crop_label"]


class CropError(AnnotationError):
    """The SDK cannot load this annotation: cropping a line raised in shapely (the SDK re-raises)."""


class CropNote(NamedTuple):
    """A label that the crop removed entirely (the SDK drops it on load)."""
    object_index: int
    class_title: str
    geometry_type: str
    reason: str


# --- the "inside" test (Label.crop: rect.contains(geometry.to_bbox())) ---------------------------

def _is_int_array(arr) -> bool:
    return isinstance(arr, np.ndarray) and arr.dtype == np.int64


def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _croppable(g) -> bool:
    """Supervisely-style (pixel index) geometry that the SDK crops."""
    t = type(g)
    if t is Polygon:
        return _is_int_array(g.exterior_xy)
    if t is Polyline:
        return _is_int_array(g.points_xy)
    if t is MultiPolygon:
        return all(type(p) is Polygon and _is_int_array(p.exterior_xy) for p in g.parts)
    if t is Point:
        return _is_int(g.x) and _is_int(g.y)
    return t in (Rectangle, Bitmap, AlphaMask, Graph, Cuboid2d, Cuboid)


def _inside_flags(labels, h: int, w: int) -> list[bool]:
    """Per label: True when it needs no crop (inside, or not a geometry the SDK crops)."""
    flags = [True] * len(labels)
    arrays, owners = [], []  # point arrays (n, 2) xy of every vector label, and their label
    for i, lab in enumerate(labels):
        g = lab.geometry
        if not _croppable(g):
            continue
        t = type(g)
        if t is Polygon:
            arrays.append(g.exterior_xy)
            owners.append(i)
        elif t is Polyline:
            arrays.append(g.points_xy)
            owners.append(i)
        elif t is MultiPolygon:
            for p in g.parts:
                arrays.append(p.exterior_xy)
                owners.append(i)
        elif t is Cuboid2d:
            arrays.append(g.vertices_xy)
            owners.append(i)
        elif t is Cuboid:
            idx = [k for face in g.faces for k in face]
            arrays.append(g.points_xy[idx] if idx else g.points_xy[:0])
            owners.append(i)
        elif t is Rectangle:
            flags[i] = g.x0 >= 0 and g.y0 >= 0 and g.x1 < w and g.y1 < h
        elif t is Point:
            flags[i] = 0 <= g.x < w and 0 <= g.y < h
        elif t is Graph:
            flags[i] = all(0 <= n.x < w and 0 <= n.y < h for n in g.nodes)
        else:  # Bitmap, AlphaMask
            data = g.mask if t is Bitmap else g.alpha
            x, y = g.origin_xy
            flags[i] = x >= 0 and y >= 0 and x + data.shape[1] <= w and y + data.shape[0] <= h
    if arrays:
        counts = np.fromiter(map(len, arrays), np.int64, len(arrays))
        pts = (np.concatenate(arrays) if len(arrays) > 1 else arrays[0]).astype(np.int64, copy=False)
        # unsigned compare: negative values wrap to huge ones, so one test per axis
        ok = pts.view(np.uint64) < np.array([w, h], dtype=np.uint64)
        ok = ok[:, 0] & ok[:, 1]
        if counts.all():
            good = np.logical_and.reduceat(ok, np.cumsum(counts) - counts)
        else:  # an empty point array (never made by the readers): its bbox is not inside
            good = [bool(c) and bool(ok[s:s + c].all())
                    for s, c in zip((np.cumsum(counts) - counts).tolist(), counts.tolist())]
        for i, g_ok in zip(owners, np.asarray(good).tolist()):
            if not g_ok:
                flags[i] = False
    return flags


# --- per-geometry crops (each returns a list of geometries, in the SDK's order) ----------------

@functools.lru_cache(maxsize=64)
def _window_rc(h: int, w: int) -> shapely.Polygon:
    # Polygon.crop / Polyline.crop: corners (row, col) of the pixel centres of the corner pixels
    return shapely.Polygon([(0, 0), (0, w - 1), (h - 1, w - 1), (h - 1, 0)])


_POLYGON, _MULTIPOLYGON, _COLLECTION = 3, 6, 7  # shapely.GeometryType values


def _polygon_pieces(geom, out: list) -> list:
    """Polygons of a shapely result in the order ``shapely_figure_to_coords_list`` lists them
    (``geometry/conversions.py``); lines and points give nothing."""
    kind = shapely.get_type_id(geom)
    if kind == _POLYGON:
        out.append(geom)
    elif kind == _MULTIPOLYGON or kind == _COLLECTION:
        for g in shapely.get_parts(geom):
            _polygon_pieces(g, out)
    return out


def crop_polygon(poly: Polygon, h: int, w: int) -> tuple[list[Polygon], str | None]:
    """``Polygon.crop``: the cropped polygons, and an error text when shapely raised."""
    try:
        shell = poly.exterior_xy[:, ::-1]
        holes = [r[:, ::-1] for r in poly.interiors_xy]
        result = shapely.Polygon(shell, holes).buffer(0).intersection(_window_rc(h, w))
    except Exception as exc:  # noqa: BLE001 - the SDK logs a warning and drops the polygon
        return [], f"shapely error: {type(exc).__name__}: {exc}"
    return _cropped_polygons(result), None


def _crop_plain_polygons(labels, indices: list[int], h: int, w: int) -> dict[int, list[Polygon]]:
    """``crop_polygon`` of the hole-free polygons ``labels[i]`` for ``i`` in ``indices``, their
    shapely work in three array calls instead of three calls per polygon (the same GEOS
    operations on the same coordinates, so the same results; on the facade set, where a label in
    six crosses the border, crop_annotation measured 0.69 -> 0.50 ms/item). Any shapely error
    gives ``{}``: those labels are then cropped one by one, which names the failing one."""
    if len(indices) < 2:
        return {}
    rings = [labels[i].geometry.exterior_xy for i in indices]
    counts = np.fromiter(map(len, rings), np.int64, len(rings))
    if counts.min() < 3:   # not a ring: shapely's own error, said for its label
        return {}
    try:
        shells = shapely.linearrings(np.concatenate(rings)[:, ::-1].astype(np.float64),
                                     indices=np.repeat(np.arange(len(rings)), counts))
        results = shapely.intersection(shapely.buffer(shapely.polygons(shells), 0), _window_rc(h, w))
    except Exception:  # noqa: BLE001 - one by one: each error is the SDK's warning for its label
        return {}
    return {i: _cropped_polygons(r) for i, r in zip(indices, results)}


def _cropped_polygons(result) -> list[Polygon]:
    """The polygons of a shapely crop result, as the SDK turns them into labels."""
    out = []
    for piece in _polygon_pieces(result, []):
        ext = _open_ring(shapely.get_coordinates(piece.exterior))
        if len(ext) < 3:  # also an empty polygon
            continue
        holes = ()
        if shapely.get_num_interior_rings(piece):
            holes = tuple(_round_xy(h) for h in map(_open_ring, map(shapely.get_coordinates, piece.interiors))
                          if len(h) > 2)
        out.append(Polygon(_round_xy(ext), holes))
    return out


def _open_ring(coords_rc: np.ndarray) -> np.ndarray:
    """``_clear_dupe_start_end_boundary``: drop the closing vertex when it repeats the first."""
    if len(coords_rc) >= 2 and coords_rc[0, 0] == coords_rc[-1, 0] and coords_rc[0, 1] == coords_rc[-1, 1]:
        return coords_rc[:-1]
    return coords_rc


def _round_xy(coords_rc: np.ndarray) -> np.ndarray:
    """(row, col) floats -> int64 xy, rounded half to even (the SDK's ``round``; np.rint is the
    same for every finite float)."""
    return np.rint(coords_rc[:, ::-1]).astype(np.int64)


_LINESTRING, _MULTILINESTRING = 1, 5  # shapely.GeometryType values


def _line_pieces(geom, out: list) -> list:
    """LineString coordinates of a shapely result as ``shapely_figure_to_coords_list`` gives them."""
    kind = shapely.get_type_id(geom)
    if kind == _LINESTRING:
        out.append(shapely.get_coordinates(geom))
    elif kind == _MULTILINESTRING or kind == _COLLECTION:
        for g in shapely.get_parts(geom):
            _line_pieces(g, out)
    return out


def crop_polyline(line: Polyline, h: int, w: int) -> list[Polyline]:
    """``Polyline.crop``: pieces joined where one starts at the previous end, floored."""
    try:
        result = shapely.LineString(line.points_xy[:, ::-1]).intersection(_window_rc(h, w))
    except Exception as exc:  # the SDK re-raises: the annotation cannot be loaded
        raise CropError(f"line crop failed in shapely ({type(exc).__name__}: {exc}); the "
                        f"Supervisely SDK cannot load this annotation either") from exc
    combined: list[np.ndarray] = []
    for piece in _line_pieces(result, []):
        if not len(piece):  # an empty LineString: the SDK's `!= [()]` test
            continue
        if combined:
            prev = combined[-1]
            if prev[-1, 0] == piece[0, 0] and prev[-1, 1] == piece[0, 1]:
                combined[-1] = np.concatenate([prev, piece[1:]])
                continue
        combined.append(piece)
    # PointLocation floors the float (row, col) coordinates
    return [Polyline(np.floor(c[:, ::-1]).astype(np.int64)) for c in combined]


def _crop_raster(g: Bitmap | AlphaMask, h: int, w: int) -> list:
    data = g.mask if type(g) is Bitmap else g.alpha
    x, y = g.origin_xy
    top, left = max(y, 0), max(x, 0)
    bottom, right = min(y + data.shape[0] - 1, h - 1), min(x + data.shape[1] - 1, w - 1)
    if bottom < top or right < left:
        return []
    sub = data[top - y:bottom - y + 1, left - x:right - x + 1]
    rows = np.flatnonzero(sub.any(axis=1))
    if rows.size == 0:
        return []
    cols = np.flatnonzero(sub.any(axis=0))
    r0, r1, c0, c1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    tight = np.ascontiguousarray(sub[r0:r1, c0:c1])
    origin = (left + c0, top + r0)
    return [Bitmap(origin, tight) if type(g) is Bitmap else AlphaMask(origin, tight)]


def _crop_geometry(g, h: int, w: int) -> tuple[list, str | None]:
    """``geometry.crop(Rectangle(0, 0, h-1, w-1))`` for a label that is not inside."""
    t = type(g)
    if t is Polygon:
        return crop_polygon(g, h, w)
    if t is Polyline:
        return crop_polyline(g, h, w), None
    if t is Rectangle:
        x0, y0, x1, y1 = max(g.x0, 0), max(g.y0, 0), min(g.x1, w - 1), min(g.y1, h - 1)
        return ([Rectangle(x0, y0, x1, y1)] if y1 >= y0 and x0 <= x1 else []), None
    if t in (Bitmap, AlphaMask):
        return _crop_raster(g, h, w), None
    if t is MultiPolygon:
        parts, errors = [], []
        for part in g.parts:
            got, err = crop_polygon(part, h, w)
            parts.extend(got)
            if err:
                errors.append(err)
        return ([MultiPolygon(tuple(parts))] if parts else []), ("; ".join(errors) or None)
    # Point, Graph, Cuboid2d, Cuboid: all or nothing, and not inside means something is off
    return [], None


_DROP_REASON = {
    "polygon": "no polygon area left inside the image",
    "multipolygon": "no polygon area left inside the image",
    "line": "no line piece left inside the image",
    "rectangle": "outside the image",
    "bitmap": "no set pixel inside the image",
    "alpha_mask": "no non-zero pixel inside the image",
    "point": "point off the image",
    "graph": "a node (disabled ones included) is off the image",
    "cuboid_2d": "a vertex is off the image",
    "cuboid": "a face point is off the image",
}


def crop_label(label: Label, size_hw: tuple[int, int]) -> tuple[list[Label], str | None]:
    """``Label.crop`` for one label: (labels, reason when it vanished). Inside -> ``[label]``."""
    h, w = size_hw
    if _inside_flags([label], h, w)[0]:
        return [label], None
    return _crop_outside(label, h, w)


def _crop_outside(label: Label, h: int, w: int, geoms: list | None = None) -> tuple[list[Label], str | None]:
    """``geoms``: the label's cropped geometries when they are known already."""
    geoms, err = _crop_geometry(label.geometry, h, w) if geoms is None else (geoms, None)
    out = [dataclasses.replace(label, geometry=g) for g in geoms]
    if out:
        return out, None
    return out, err or _DROP_REASON.get(label.geometry.geometry_type, "outside the image")


def crop_annotation_report(annotation: Annotation) -> tuple[Annotation, tuple[CropNote, ...]]:
    """``crop_annotation`` plus a note for every label the crop removed entirely.

    When every label is inside, the same ``Annotation`` object is returned.
    """
    h, w = annotation.size_hw
    labels = annotation.labels
    flags = _inside_flags(labels, h, w)
    if all(flags):
        return annotation, ()
    out: list[Label] = []
    notes: list[CropNote] = []
    plain = _crop_plain_polygons(labels, [i for i, (lab, inside) in enumerate(zip(labels, flags))
                                          if not inside and type(lab.geometry) is Polygon
                                          and not lab.geometry.interiors_xy], h, w)
    for i, (label, inside) in enumerate(zip(labels, flags)):
        if inside:
            out.append(label)
            continue
        got, reason = _crop_outside(label, h, w, plain.get(i))
        out.extend(got)
        if reason is not None:
            g = label.geometry
            notes.append(CropNote(label.object_index, label.class_title, g.geometry_type, reason))
    return dataclasses.replace(annotation, labels=tuple(out)), tuple(notes)


def crop_annotation(annotation: Annotation) -> Annotation:
    """The annotation as the Supervisely SDK holds it after loading: every label cropped to rows
    0..H-1, cols 0..W-1 (see the module docstring). Labels inside the image are the same objects;
    a label may become 0, 1 or several labels, each keeping class, object_index, tags, z_order and
    group. Raises ``CropError`` where the SDK fails to load the annotation."""
    return crop_annotation_report(annotation)[0]
