"""Property tests for the raster kernel through ``maskcore.kernel.draw.coverage``: random geometries,
degenerate or with huge coordinates, on small canvases. A coverage is a patch inside the canvas;
the one error allowed is the kernel's documented ``ValueError`` for coordinates outside int32
(which the layout reports as an ``AnnotationError`` naming the object); nothing may hang."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from maskcore.kernel.draw import colour_layers, coverage
from maskcore.kernel.patch import Patch
from maskcore.model import geometry as g

from .projects import long

INT32 = 2**31 - 1
COORD = st.one_of(st.integers(-40, 80), st.integers(-2**31, 2**31),
                  st.sampled_from([-2**31, INT32, -2**30, 2**30, 2**31, -2**31 - 1, 46341, -46341]))
"""Coordinates: mostly near the canvas, some huge, some on or just past the int32 limits."""
XY = st.lists(st.tuples(COORD, COORD), min_size=1, max_size=10).map(
    lambda p: np.array(p, dtype=np.int64).reshape(-1, 2))


def _mask(dtype):
    return st.tuples(st.integers(1, 6), st.integers(1, 6), st.integers(0, 2**32 - 1)).map(
        lambda t: np.random.default_rng(t[2]).integers(0, 256 if dtype == np.uint8 else 2,
                                                        (t[0], t[1])).astype(dtype))


GEOMETRIES = st.one_of(
    st.builds(g.Polygon, XY, st.lists(XY, max_size=2).map(tuple)),
    st.builds(lambda a, b: g.Rectangle(min(a[0], b[0]), min(a[1], b[1]), max(a[0], b[0]), max(a[1], b[1])),
              st.tuples(COORD, COORD), st.tuples(COORD, COORD)),
    st.builds(g.Polyline, XY),
    st.builds(g.Point, COORD, COORD),
    st.builds(g.Bitmap, st.tuples(COORD, COORD), _mask(bool)),
    st.builds(g.AlphaMask, st.tuples(COORD, COORD), _mask(np.uint8)),
    st.builds(lambda nodes: g.Graph(tuple(g.GraphNode(str(i), x, y, d) for i, (x, y, d) in enumerate(nodes))),
              st.lists(st.tuples(COORD, COORD, st.booleans()), min_size=1, max_size=4)),
    st.builds(g.Cuboid2d, st.lists(st.tuples(COORD, COORD), min_size=8, max_size=8).map(
        lambda p: np.array(p, dtype=np.int64))),
    st.builds(lambda a, b, angle: g.OrientedBBox(min(a[0], b[0]), min(a[1], b[1]), max(a[0], b[0]),
                                                 max(a[1], b[1]), angle),
              st.tuples(COORD, COORD), st.tuples(COORD, COORD),
              st.one_of(st.floats(-10, 10), st.floats(allow_nan=False, allow_infinity=False))),
    st.builds(lambda parts: g.MultiPolygon(tuple(g.Polygon(p) for p in parts)), st.lists(XY, min_size=1, max_size=3)),
    st.builds(lambda pts, faces: g.Cuboid(pts, tuple(tuple(int(k) % len(pts) for k in f) for f in faces)),
              XY, st.lists(st.lists(st.integers(0, 20), min_size=4, max_size=4), max_size=3)),
)
SIZES = st.tuples(st.integers(1, 40), st.integers(1, 40))
TEMPLATE = {"nodes": {"0": {"color": "#FF0000"}, "1": {}}, "edges": [{"src": "0", "dst": "1", "color": "#00FF00"},
                                                                    {"src": "1", "dst": "2"}]}


def _beyond_int32(geom) -> bool:
    """Whether a coordinate the kernel receives (after the geometry's own transform) leaves int32."""
    from maskcore.kernel.draw import oriented_bbox_corners_xy
    if isinstance(geom, g.OrientedBBox):
        if not math.isfinite(geom.angle):
            return True
        arrays = [oriented_bbox_corners_xy(geom)]
    else:
        arrays = [getattr(geom, n) for n in ("exterior_xy", "points_xy", "vertices_xy") if hasattr(geom, n)]
        arrays += list(getattr(geom, "interiors_xy", ()))
        arrays += [p.exterior_xy for p in getattr(geom, "parts", ())]
        arrays += [np.array([[n.x, n.y] for n in getattr(geom, "nodes", ())]).reshape(-1, 2)]
        arrays += [np.array([[getattr(geom, "x", 0), getattr(geom, "y", 0)]])]
        if isinstance(geom, g.Rectangle):
            arrays.append(np.array([[geom.x0, geom.y0], [geom.x1, geom.y1]]))
    return any(a.size and (a.min() < -2**31 + 64 or a.max() > INT32 - 64) for a in arrays)


def _check_patch(patch: Patch, size_hw) -> None:
    h, w = size_hw
    assert isinstance(patch, Patch)
    assert patch.mask.dtype in (np.bool_, np.uint8) and patch.mask.ndim == 2
    if patch.mask.size:
        assert 0 <= patch.top and patch.bottom <= h and 0 <= patch.left and patch.right <= w


def check_coverage(geom, size_hw, thickness) -> None:
    try:
        patch = coverage(geom, size_hw, thickness)
        for _, layer in colour_layers(geom, patch, (1, 2, 3), size_hw, thickness, TEMPLATE):
            _check_patch(layer, size_hw)
    except ValueError as exc:
        assert "int32" in str(exc) and _beyond_int32(geom), f"{exc!r} for {geom}"
        return
    _check_patch(patch, size_hw)


@settings(max_examples=200, derandomize=True, deadline=2000,
          suppress_health_check=[HealthCheck.too_slow])
@given(GEOMETRIES, SIZES, st.integers(1, 12))
def test_coverage_of_random_geometry(geom, size_hw, thickness):
    check_coverage(geom, size_hw, thickness)


@long
@settings(max_examples=20_000, deadline=5000, suppress_health_check=[HealthCheck.too_slow])
@given(GEOMETRIES, SIZES, st.integers(1, 40))
def test_coverage_of_random_geometry_long(geom, size_hw, thickness):
    check_coverage(geom, size_hw, thickness)
