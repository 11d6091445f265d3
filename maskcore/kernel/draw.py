"""Geometry -> coverage patches, with the reference's drawing rules (OpenCV LINE_8 semantics).

Conventions: x = column, y = row; ``size_hw`` = (height, width) of the canvas; everything is
clipped to the canvas. Geometry coordinates are int64 pixel indices or float64 corner-origin
coordinates (see :mod:`maskcore.geometry`).

Two drawing rules, chosen by the layout (``rule=``):
- ``"opencv"`` (default; the Supervisely SDK and its apps): float coordinates are floored to pixel
  indices first, then the rules below.
- ``"coco"`` (CVAT's exporter, pycocotools): polygons, their holes, multipolygon parts and
  rectangles are drawn by ``maskcore.raster.coco_rule`` on the coordinates as they are (a
  Supervisely rectangle, whose corners are inclusive pixels, becomes the box [x0, x1+1) x
  [y0, y1+1): the same pixels). Every other geometry is drawn as under ``"opencv"``.
``Box`` (COCO bbox, CVAT box, possibly rotated) is drawn by the COCO rule under both rules.
Every function returns :class:`~maskcore.raster.patch.Patch` objects: ``bool`` masks for
coverage, ``uint8`` masks (0..255) for alpha masks. Pure numpy, no I/O.
``coverages`` draws all labels of an image at once: every polygon fill of every label (polygons,
their holes, multipolygon parts, oriented boxes, cuboid faces) is one vectorised kernel call.

Rules (see README "Pixel rules" and docs/reference-notes.md):
- polygon: exterior filled as ``cv2.fillPoly`` (edges painted 8-connected, even-odd spans), then all
  holes filled in one call and removed, their edges included; holes only cut their own label.
- rectangle: both corners inclusive.
- bitmap / alpha mask: placed at ``origin``, clipped at the border (the reference crashes instead).
- line: ``cv2.polylines`` at ``thickness``; point: filled disc of radius ``round(thickness / 2)``.
- graph: node discs (machine / instance masks); edges and nodes in template colours (colour masks).
- oriented bbox: corners rotated about the integer centre, floored, filled as a polygon.
- cuboid_2d: the five visible faces (front, top, right, bottom, left) filled, their union.
- multipolygon: union of independently drawn polygons.
"""

from __future__ import annotations

import math

import numpy as np

from ..model import geometry as g
from .coco_rule import coco_polygon_masks
from .disc import disc, discs
from .fill import fill_polys, polyline
from .patch import Patch, empty_patch, subtract, union
from .thick import thick_polyline

Color = tuple[int, int, int]
RULES = ("opencv", "coco")


def pixel_xy(points_xy: np.ndarray) -> np.ndarray:
    """Points as int64 pixel indices: float (corner-origin) coordinates are floored."""
    arr = np.asarray(points_xy)
    if arr.dtype.kind == "f":
        return np.floor(arr).astype(np.int64)
    return arr.astype(np.int64, copy=False)


def _pixel(v) -> int:
    return int(math.floor(v))

# Face vertex order of a cuboid_2d, as indices into CUBOID_2D_VERTICES (front, top, right, bottom, left).
CUBOID_2D_FACES = ((0, 1, 2, 3), (4, 5, 1, 0), (1, 5, 6, 2), (3, 2, 6, 7), (4, 0, 3, 7))


def point_radius(thickness: int) -> int:
    """Disc radius the reference uses for points and graph nodes (Python's half-to-even round)."""
    return int(round(thickness / 2))


def _rectangle(rect: g.Rectangle, size_hw) -> Patch:
    h, w = size_hw
    x0, y0 = max(rect.x0, 0), max(rect.y0, 0)
    x1, y1 = min(rect.x1, w - 1), min(rect.y1, h - 1)
    if x0 > x1 or y0 > y1:
        return empty_patch()
    return Patch(y0, x0, np.ones((y1 - y0 + 1, x1 - x0 + 1), dtype=bool))


def place_array(origin_xy: tuple[int, int], arr: np.ndarray, size_hw) -> Patch:
    """Clip an array whose [0, 0] sits at canvas pixel ``origin_xy`` to the canvas."""
    h, w = size_hw
    ox, oy = origin_xy
    r0, c0 = max(oy, 0), max(ox, 0)
    r1, c1 = min(oy + arr.shape[0], h), min(ox + arr.shape[1], w)
    if r0 >= r1 or c0 >= c1:
        return empty_patch()
    return Patch(r0, c0, arr[r0 - oy:r1 - oy, c0 - ox:c1 - ox])


def lines(points_xy: np.ndarray, size_hw, thickness: int, closed: bool = False) -> Patch:
    """``cv2.polylines`` coverage at ``thickness`` (1 and below draw the 8-connected line)."""
    if len(points_xy) == 0:
        return empty_patch()
    points_xy = pixel_xy(points_xy)
    if thickness <= 1:
        return polyline(points_xy, size_hw, closed=closed)
    return thick_polyline(points_xy, size_hw, thickness, closed=closed)


def _point_disc(x, y, size_hw, thickness: int) -> Patch:
    return disc((_pixel(x), _pixel(y)), point_radius(thickness), size_hw)


def oriented_bbox_corners_xy(box: g.OrientedBBox) -> np.ndarray:
    """The four corners rotated about the integer centre, floored (reference rule)."""
    cx, cy = (box.left + box.right) // 2, (box.top + box.bottom) // 2
    corners = np.array([[box.left, box.top], [box.right, box.top],
                        [box.right, box.bottom], [box.left, box.bottom]], dtype=np.float64)
    c, s = math.cos(box.angle), math.sin(box.angle)
    dx, dy = corners[:, 0] - cx, corners[:, 1] - cy
    rot = np.stack([cx + dx * c - dy * s, cy + dx * s + dy * c], axis=1)
    return np.floor(rot).astype(np.int64)


def _union_all(patches) -> Patch:
    out = empty_patch()
    for p in patches:
        out = union(out, p)
    return out


class _Fills:
    """The polygon fills an image's labels need, gathered so each rule's kernel runs once."""

    def __init__(self) -> None:
        self.opencv: list[list[np.ndarray]] = []   # fill_polys: each entry one even-odd fill
        self.coco: list[list[np.ndarray]] = []     # coco_polygon_masks: each entry rings OR-ed

    def run(self, size_hw) -> tuple[list[Patch], list[Patch]]:
        return (fill_polys(self.opencv, size_hw) if self.opencv else [],
                coco_polygon_masks(self.coco, size_hw) if self.coco else [])


def _check_rule(rule: str) -> None:
    if rule not in RULES:
        raise ValueError(f"rule: expected one of {RULES}, got {rule!r}")


def coverage(geom: g.Geometry, size_hw, thickness: int = 2, rule: str = "opencv") -> Patch:
    """One label's pixels as drawn into a single-colour mask (machine, instance masks)."""
    return coverages([geom], size_hw, thickness, rule)[0]


def coverages(geoms, size_hw, thickness: int = 2, rule: str = "opencv") -> list[Patch]:
    """``[coverage(geom, size_hw, thickness, rule) for geom in geoms]`` (the same patches), with
    the polygon fills of all of them done in one vectorised kernel call per rule.

    Raises what ``coverage`` raises; a kernel error names the fill, not the label: to name it,
    draw the labels one by one with ``coverage``.
    """
    return coverages_many([(geoms, size_hw)], thickness, rule)[0]


def coverages_many(images, thickness: int = 2, rule: str = "opencv") -> list[list[Patch]]:
    """``[coverages(geoms, size_hw, thickness, rule) for geoms, size_hw in images]`` (the same
    patches), with the polygon fills of all images of one size in one kernel call per rule.

    A kernel call has a fixed cost whatever its size (see ``maskcore.raster.fill``): the ~36
    fills of a facade image take ~1.05 ms in a call of their own and ~0.67 ms among 8-16 images'
    (benchmarks/kernel_bench.py). The patches of one call share one buffer: keeping any of them
    keeps the call's whole buffer. Raises what ``coverages`` raises, for any of the images.
    """
    _check_rule(rule)
    pools: dict[tuple, _Fills] = {}
    plans = []
    for geoms, size_hw in images:
        key = tuple(size_hw)
        fills = pools.setdefault(key, _Fills())
        image_plans = []
        for geom in geoms:
            if (type(geom) is g.Polygon and rule == "opencv" and not geom.interiors_xy
                    and geom.exterior_xy.dtype == np.int64):
                # the common label, planned inline: its coverage is fill number len - 1
                fills.opencv.append([geom.exterior_xy])
                image_plans.append(len(fills.opencv) - 1)
            else:
                image_plans.append(_plan(geom, size_hw, thickness, fills, rule))
        plans.append((key, image_plans))
    filled = {key: fills.run(key) for key, fills in pools.items()}
    return [[_planned(plan, *filled[key]) for plan in image_plans] for key, image_plans in plans]


def _planned(plan, opencv: list[Patch], coco: list[Patch]) -> Patch:
    """A label's coverage from its plan (see ``_plan``; an int: that opencv fill)."""
    if type(plan) is int:
        return opencv[plan]
    return plan if isinstance(plan, Patch) else plan(opencv, coco)


def _plan(geom: g.Geometry, size_hw, thickness: int, fills: _Fills, rule: str):
    """A label's coverage now (a Patch), or, for geometry drawn by polygon fills, the fills it
    needs added to ``fills`` and a function from the filled patches (opencv, coco) to its
    coverage."""
    if isinstance(geom, g.Box):
        i = _add_coco(fills, [geom.corners_xy()])
        return lambda cv, co: co[i]
    if rule == "coco":
        if isinstance(geom, g.Polygon):
            polygon = _add_coco_polygon(fills, geom)
            return lambda cv, co: _polygon_cover(co, *polygon)
        if isinstance(geom, g.MultiPolygon):
            parts = [_add_coco_polygon(fills, p) for p in geom.parts]
            return lambda cv, co: _union_all(_polygon_cover(co, *p) for p in parts)
        if isinstance(geom, g.Rectangle):
            ring = np.array([[geom.x0, geom.y0], [geom.x0, geom.y1 + 1], [geom.x1 + 1, geom.y1 + 1],
                             [geom.x1 + 1, geom.y0]], dtype=np.float64)
            i = _add_coco(fills, [ring])
            return lambda cv, co: co[i]
    if isinstance(geom, g.Polygon):
        polygon = _add_polygon(fills.opencv, geom)
        return lambda cv, co: _polygon_cover(cv, *polygon)
    if isinstance(geom, g.MultiPolygon):
        parts = [_add_polygon(fills.opencv, p) for p in geom.parts]
        return lambda cv, co: _union_all(_polygon_cover(cv, *p) for p in parts)
    if isinstance(geom, g.OrientedBBox):
        faces = _add_fills(fills.opencv, [oriented_bbox_corners_xy(geom)])
    elif isinstance(geom, g.Cuboid2d):
        v = pixel_xy(geom.vertices_xy)
        faces = _add_fills(fills.opencv, [v[list(f)] for f in CUBOID_2D_FACES])
    elif isinstance(geom, g.Cuboid):
        v = pixel_xy(geom.points_xy)
        faces = _add_fills(fills.opencv, [v[list(f)] for f in geom.faces if len(f) >= 3])
    else:
        return _direct_coverage(geom, size_hw, thickness)
    return lambda cv, co: _union_all(cv[i] for i in faces)


def _add_coco(fills: _Fills, rings: list[np.ndarray]) -> int:
    fills.coco.append(rings)
    return len(fills.coco) - 1


def _add_coco_polygon(fills: _Fills, poly: g.Polygon) -> tuple[int, int | None]:
    """Exterior drawn by the COCO rule; all holes OR-ed by the same rule and cut out."""
    ext = _add_coco(fills, [np.asarray(poly.exterior_xy, dtype=np.float64)])
    if not poly.interiors_xy:
        return ext, None
    return ext, _add_coco(fills, [np.asarray(r, dtype=np.float64) for r in poly.interiors_xy])


def _add_fills(fills: list, rings: list[np.ndarray]) -> range:
    """Append one single-ring fill per ring; their indexes into ``fills``."""
    fills.extend([r] for r in rings)
    return range(len(fills) - len(rings), len(fills))


def _add_polygon(fills: list, poly: g.Polygon) -> tuple[int, int | None]:
    """Append the exterior fill and, if any, the fill of all holes together; their indexes."""
    fills.append([pixel_xy(poly.exterior_xy)])
    if not poly.interiors_xy:
        return len(fills) - 1, None
    fills.append([pixel_xy(r) for r in poly.interiors_xy])
    return len(fills) - 2, len(fills) - 1


def _polygon_cover(filled: list[Patch], exterior: int, holes: int | None) -> Patch:
    """Exterior fill minus the holes' fill (holes only cut their own polygon)."""
    cover = filled[exterior]
    if holes is not None and not cover.is_empty:
        cover = subtract(cover, filled[holes])
    return cover


def _direct_coverage(geom: g.Geometry, size_hw, thickness: int) -> Patch:
    """Coverage of the geometry types not drawn by polygon fills."""
    if isinstance(geom, g.Rectangle):
        return _rectangle(geom, size_hw)
    if isinstance(geom, g.Bitmap):
        return place_array(geom.origin_xy, geom.mask, size_hw)
    if isinstance(geom, g.AlphaMask):
        return place_array(geom.origin_xy, geom.alpha, size_hw)
    if isinstance(geom, g.Polyline):
        return lines(geom.points_xy, size_hw, thickness)
    if isinstance(geom, g.Point):
        return _point_disc(geom.x, geom.y, size_hw, thickness)
    if isinstance(geom, g.Graph):
        centers = [(_pixel(n.x), _pixel(n.y)) for n in geom.nodes if not n.disabled]
        return discs(np.array(centers, dtype=np.int64).reshape(-1, 2), point_radius(thickness),
                     size_hw)
    raise TypeError(f"cannot draw geometry of type {type(geom).__name__}")


def colour_layers(geom: g.Geometry, cover: Patch, colour: Color, size_hw, thickness: int,
                  config: dict | None = None) -> list[tuple[Color, Patch]]:
    """One label as drawn into an RGB mask: (colour, patch) layers painted in order.

    ``cover`` is the label's :func:`coverage`. Only graphs with a template have several colours
    (template edges, then nodes); every other geometry is one layer in the class colour.
    """
    if isinstance(geom, g.Graph) and config and config.get("nodes"):
        return _graph_layers(geom, colour, size_hw, thickness, config)
    return [(colour, cover)]


def _hex_rgb(value, default: Color) -> Color:
    if isinstance(value, str) and len(value) == 7 and value.startswith("#"):
        try:
            return (int(value[1:3], 16), int(value[3:5], 16), int(value[5:7], 16))
        except ValueError:
            return default
    return default


def _graph_layers(geom: g.Graph, colour: Color, size_hw, thickness: int,
                  config: dict) -> list[tuple[Color, Patch]]:
    nodes = {n.node_id: n for n in geom.nodes}
    template_nodes = config.get("nodes", {}) or {}
    layers: list[tuple[Color, Patch]] = []
    for edge in config.get("edges", []) or []:
        a, b = nodes.get(edge.get("src")), nodes.get(edge.get("dst"))
        if a is None or b is None or a.disabled or b.disabled:
            continue
        pts = np.array([[_pixel(a.x), _pixel(a.y)], [_pixel(b.x), _pixel(b.y)]], dtype=np.int64)
        layers.append((_hex_rgb(edge.get("color"), colour), lines(pts, size_hw, thickness)))
    for node in geom.nodes:
        if node.disabled:
            continue
        node_colour = _hex_rgb((template_nodes.get(node.node_id) or {}).get("color"), colour)
        layers.append((node_colour, _point_disc(node.x, node.y, size_hw, thickness)))
    return layers


def label_area(geom: g.Geometry, cover: Patch) -> float:
    """The reference's ``Label.area``: the machine mask draws larger areas first.

    ``cover`` (the label's coverage) is used for legacy cuboids, whose area is their pixel count.
    """
    if isinstance(geom, g.Polygon):
        return _shoelace(geom.exterior_xy) - sum(_shoelace(r) for r in geom.interiors_xy)
    if isinstance(geom, g.MultiPolygon):
        return sum(label_area(p, cover) for p in geom.parts)
    if isinstance(geom, g.Rectangle):
        return float((geom.x1 - geom.x0 + 1) * (geom.y1 - geom.y0 + 1))
    if isinstance(geom, g.OrientedBBox):
        return float((geom.right - geom.left + 1) * (geom.bottom - geom.top + 1))
    if isinstance(geom, g.Box):
        return float((geom.x1 - geom.x0) * (geom.y1 - geom.y0))
    if isinstance(geom, g.Bitmap):
        return float(np.count_nonzero(geom.mask))
    if isinstance(geom, g.AlphaMask):
        return float(np.count_nonzero(geom.alpha))
    if isinstance(geom, g.Cuboid):
        return float(cover.area())
    return 0.0


def _shoelace(ring_xy: np.ndarray) -> float:
    """|signed area| of a closed ring (no ``np.roll`` copies: measured 1-2.7 ms per image less)."""
    if len(ring_xy) < 3:
        return 0.0
    x = ring_xy[:, 0].astype(np.float64)
    y = ring_xy[:, 1].astype(np.float64)
    s = np.dot(x[:-1], y[1:]) - np.dot(y[:-1], x[1:]) + x[-1] * y[0] - y[-1] * x[0]
    return float(abs(s) / 2.0)
