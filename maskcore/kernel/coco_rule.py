"""COCO raster rule: polygons and boxes pixel for pixel as pycocotools draws them.

CVAT (through its Datumaro fork) and the COCO tools turn polygons and boxes into masks with
pycocotools: ``decode(merge(frPyObjects(rings, h, w)))``, whose C core is ``rleFrPoly`` in
``maskApi.c``.  This module reproduces that rule in numpy; the OpenCV rule of ``fill.py`` is
a different one (integer vertices on pixel centres, edges painted), do not mix them.

Conventions:
- Coordinates are float64 ``xy`` (x = column, y = row) with the origin at the top-left
  *corner* of the image: pixel (column c, row r) is the square [c, c+1) x [r, r+1), its centre
  at (c + .5, r + .5).  ``size_hw`` is (height, width).  A ring is an (N, 2) array (any real
  dtype), closed implicitly (its last vertex joins its first).
- The rule, as ``rleFrPoly`` computes it (restated here, checked against pycocotools 2.0.11):
  1. Upsample by 5: each vertex becomes integers ``X = (int)(5 * x + .5)``, ``Y = (int)(5 * y +
     .5)``.  C's cast truncates toward zero: -0.3 gives 0 like 0.3 does, so a vertex just
     left of or above the image moves 1/5 pixel right or down (this tilts its edges).
  2. Walk each edge as a chain of grid points one step apart along its major axis (x-major
     when ``|dX| >= |dY|``), computed from its end with the smaller major coordinate: slope
     ``s = dMinor / dMajor`` (float64) and minor coordinate ``(int)(start + s * t + .5)`` at
     step t.  Every edge is therefore drawn the same both ways round.
  3. Crossings: where two consecutive points of the closed walk have X equal to 5c + 2 and
     5c + 3 (they straddle x = c + .5, the centre line of column c) and ``0 <= c < w``, column
     c gets a toggle at row ``ceil((Ymin + .5) / 5 - .5)`` clamped to [0, h], Ymin being the
     smaller Y of the two points.  Crossings above the image toggle at row 0, below it at h.
  4. Fill: each column's toggles, sorted, are paired: rows [r1, r2), [r3, r4), ... are set.
  In words: a pixel is set when its centre lies inside the ring by the even-odd rule, with the
  boundary snapped to a 1/5-pixel grid; ties fall as the rounding above makes them fall (a
  centre exactly on an axis-aligned left or top side is out, on a right or bottom side in).
  We find step 3's crossings directly from each edge (x-major: the step is t = 5c + 2 -
  X_start; y-major: the first step whose rounded X passes 5c + 3, from a float estimate
  corrected on the exact expression), so no upsampled point is ever materialised.  float64
  operations are evaluated in C's order, unfused (baseline x86-64, which the pycocotools
  wheels target, has no FMA; a build that fused ``start + s * t`` could differ on ties).
- Self-intersecting ring: even-odd within the ring (step 4).  Rings of one object: each ring is
  drawn on its own and the masks are OR-ed (``merge`` with ``intersect=False``, what
  ``frPyObjects`` + ``merge`` and Datumaro's ``rles_to_mask`` do for CVAT): no holes, a ring
  inside another adds nothing and cuts nothing.
- Boxes: ``coco_box_ring`` gives pycocotools' ``rleFrBbox`` polygon (x, y), (x, y + h),
  (x + w, y + h), (x + w, y) with the far sides computed as float64 ``x + w``, ``y + h``.
  Vertex order never matters (step 2), so Datumaro's ``bbox.as_polygon()`` gives the same mask.
  Integer boxes fill columns x .. x+w-1 and rows y .. y+h-1.
- Degenerate input: rings with fewer than three vertices paint nothing, as ``rleFrPoly`` does
  (but ``frPyObjects`` itself reads an object whose *first* ring has exactly 4 numbers as boxes
  and then raises TypeError, and refuses a first ring of 2 numbers; we draw the rings).  Zero-
  area rings paint what rleFrPoly paints (usually nothing, sometimes rounding slivers).
- Range: coordinates must be finite with magnitude below ``COCO_RULE_MAX_COORD`` (2**40), else
  ValueError.  pycocotools computes in C ``int``: beyond about 2.1e8 (|5x| differences past
  2**31) or 4.29e8 (the cast itself) it overflows (undefined; x86 gives INT_MIN) and it
  allocates 5 points per pixel of perimeter, off-canvas included.  There we compute with int64
  as if ``int`` were wide enough.  Canvases of 2**32 pixels or more overflow its uint RLE; we
  use int64.
- Output: a ``Patch`` (``patch.py``) per object, ``bool`` mask cropped to the painted pixels,
  window inside the canvas (empty patch when nothing is painted or the canvas is empty).  The
  masks are column-major (Fortran) views into one buffer shared by a call's patches.
- Cost: work and memory follow the (edge, column) crossings inside the canvas's columns plus
  the output windows, never the perimeter length or how far vertices lie off-canvas.  Pure
  numpy, vectorised over objects, rings, edges and crossings; a call has a fixed cost of its
  numpy calls, so ``coco_polygon_masks`` draws an image's objects in one pass.  No I/O.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from maskcore.kernel.lines import check_size_hw
from maskcore.kernel.patch import EMPTY, Patch
from maskcore.kernel.rings import ring_xy
from maskcore.limits import COCO_RULE_MAX_COORD

__all__ = ["coco_box_mask", "coco_box_ring", "coco_polygon_mask",
           "coco_polygon_masks", "coco_polygon_spans", "coco_ring_spans"]

_SCALE = 5.0
_F64 = np.dtype(np.float64)
_NO_XY = np.zeros((0, 2), dtype=np.float64)
_NO_XY.flags.writeable = False


def coco_polygon_mask(rings_xy: Sequence[np.ndarray], size_hw) -> Patch:
    """Pixels of ``decode(merge(frPyObjects([ring.ravel() for ring in rings_xy], h, w)))``:
    every ring by ``rleFrPoly``, the rings OR-ed."""
    return _draw([rings_xy], size_hw, lambda i, j: f"rings_xy[{j}]")[0]


def coco_polygon_masks(polys_rings_xy: Sequence[Sequence[np.ndarray]], size_hw) -> list[Patch]:
    """``[coco_polygon_mask(rings_xy, size_hw) for rings_xy in polys_rings_xy]`` in one
    vectorised pass; the patches' masks share one buffer."""
    return _draw(list(polys_rings_xy), size_hw, lambda i, j: f"polys_rings_xy[{i}][{j}]")


def coco_polygon_spans(polys_rings_xy: Sequence[Sequence[np.ndarray]], size_hw) -> tuple[np.ndarray, ...]:
    """What ``coco_polygon_masks`` paints, as runs down the columns: ``(polygon, col, row0,
    row1)`` int64 arrays, run ``i`` covering rows ``row0[i] .. row1[i] - 1`` of column ``col[i]``
    for polygon ``polygon[i]`` (an index into ``polys_rings_xy``), ``row0 < row1``. A polygon's
    mask is the union of its runs (runs of its different rings may overlap). Runs come by polygon
    (``polygon`` non-decreasing), each ring's by column, then row."""
    return _runs(list(polys_rings_xy), size_hw, lambda i, j: f"polys_rings_xy[{i}][{j}]")


def coco_ring_spans(points_xy: np.ndarray, ring_sizes, ring_polygon, size_hw) -> tuple[np.ndarray, ...]:
    """``coco_polygon_spans`` of rings given in one array: ``points_xy`` (V, 2) float64 holds the
    rings one after the other, ring ``r`` having ``ring_sizes[r]`` vertices and belonging to
    polygon ``ring_polygon[r]`` (non-decreasing). For callers that hold an image's coordinates
    in one array already (no per-ring arrays to gather)."""
    height, width = check_size_hw(size_hw)
    pts = np.asarray(points_xy)
    sizes, owners = np.asarray(ring_sizes, np.int64), np.asarray(ring_polygon, np.int64)
    if pts.dtype != np.float64 or pts.ndim != 2 or pts.shape[1] != 2 or sizes.shape != owners.shape \
            or sizes.ndim != 1 or int(sizes.sum()) != pts.shape[0] or (np.diff(owners) < 0).any():
        raise ValueError(f"points_xy: expected (V, 2) float64 rings of ring_sizes vertices, ring_polygon "
                         f"non-decreasing, got {pts.dtype} {pts.shape}, {sizes.shape} sizes summing to "
                         f"{int(sizes.sum())}, {owners.shape} owners")
    if (sizes < 3).any():   # rings of fewer than three vertices paint nothing (rleFrPoly)
        keep = sizes >= 3
        pts, sizes, owners = pts[np.repeat(keep, sizes)], sizes[keep], owners[keep]
    if not (np.abs(pts) < COCO_RULE_MAX_COORD).all():
        ring = int(np.searchsorted(np.cumsum(sizes), np.flatnonzero(~(np.abs(pts) < COCO_RULE_MAX_COORD).all(1))[0],
                                   side="right"))
        raise ValueError(f"points_xy: expected finite coordinates of magnitude below 2**40, got ring {ring} "
                         f"(of those of 3 or more vertices) outside")
    return _runs_of(pts, sizes, owners, height, width)


def coco_box_ring(xywh) -> np.ndarray:
    """The (4, 2) float64 ring pycocotools' ``rleFrBbox`` draws for box ``xywh``."""
    try:
        x, y, w, h = (float(v) for v in xywh)
    except (TypeError, ValueError):
        raise ValueError(f"xywh: expected 4 numbers (x, y, width, height), got {xywh!r}") from None
    xe, ye = x + w, y + h
    return np.array([[x, y], [x, ye], [xe, ye], [xe, y]], dtype=np.float64)


def coco_box_mask(xywh, size_hw) -> Patch:
    """Pixels of ``decode(frPyObjects(np.array([xywh], float), h, w))[..., 0]`` (a COCO bbox).

    (pycocotools 2.0.11 needs the ndarray there: a plain list ``[[x, y, w, h]]`` raises
    TypeError.)"""
    return coco_polygon_mask([coco_box_ring(xywh)], size_hw)


def _draw(polys: list, size_hw, name) -> list[Patch]:
    return _paint(*_runs(polys, size_hw, name), len(polys))


def _runs(polys: list, size_hw, name) -> tuple[np.ndarray, ...]:
    """Steps 1-4 for every ring: ``(polygon, col, row0, row1)`` of each non-empty run."""
    height, width = check_size_hw(size_hw)
    return _runs_of(*_gather_rings(polys, name), height, width)


def _runs_of(pts: np.ndarray, ring_sizes, ring_poly, height: int, width: int) -> tuple[np.ndarray, ...]:
    if pts.shape[0] == 0 or height == 0 or width == 0:
        return (np.zeros(0, np.int64),) * 4
    up = np.trunc(pts * _SCALE + 0.5).astype(np.int64)          # step 1
    fields = _KeyFields(ring_sizes.size, height, width)
    key = _toggles(up, ring_sizes, height, width, fields)       # steps 2, 3
    if key.size == 0:
        return (np.zeros(0, np.int64),) * 4
    ring, col, r0, r1 = _spans(key, fields)                     # step 4
    return ring_poly[ring], col, r0, r1


def _gather_rings(polys: list, name):
    """All rings of three or more vertices as one (V, 2) float64 array, with each ring's size and
    its polygon index."""
    arrays, sizes, owners = [], [], []
    for i, rings in enumerate(polys):
        for j, ring in enumerate(rings):
            if not (type(ring) is np.ndarray and ring.dtype is _F64 and ring.ndim == 2
                    and ring.shape[1] == 2):
                ring = ring_xy(ring, name(i, j), integer=False)
            if ring.shape[0] >= 3:
                arrays.append(ring)
                sizes.append(ring.shape[0])
                owners.append(i)
    if not arrays:
        return _NO_XY, None, None
    pts = arrays[0] if len(arrays) == 1 else np.concatenate(arrays)
    if not (np.abs(pts) < COCO_RULE_MAX_COORD).all():       # also catches NaN; then name the ring
        for i, rings in enumerate(polys):
            for j, ring in enumerate(rings):
                arr = np.asarray(ring, dtype=np.float64)
                if arr.shape[0] >= 3 and not (np.abs(arr) < COCO_RULE_MAX_COORD).all():
                    got = (f"range [{arr.min()}, {arr.max()}]" if np.isfinite(arr).all()
                           else "a non-finite value")
                    raise ValueError(f"{name(i, j)}: expected finite coordinates of magnitude "
                                     f"below 2**40, got {got}")
    return pts, np.array(sizes), np.array(owners)


class _KeyFields:
    """A toggle (ring, column, row) packed into one integer by bit fields, ring highest: sorting
    the keys sorts by ring, column, row; 32-bit when they fit (a faster sort), else 64."""

    def __init__(self, n_rings: int, height: int, width: int) -> None:
        self.row_bits, self.col_bits = int(height).bit_length(), max(int(width - 1).bit_length(), 1)
        bits = max(int(n_rings - 1).bit_length(), 1) + self.col_bits + self.row_bits
        if bits > 63:
            raise ValueError(f"coco rule: expected (ring, column, row) to fit in 63 bits, got {bits} "
                             f"({n_rings} rings, canvas {width}x{height})")
        self.dtype = np.dtype(np.int32 if bits <= 31 else np.int64)


def _toggles(up: np.ndarray, ring_sizes: np.ndarray, height: int, width: int, fields: _KeyFields):
    """Step 3 for every edge of every ring: one ``_KeyFields`` key per toggle inside the canvas's
    columns (rows clamped to [0, height]), unsorted. An edge's walk parameters are computed once
    per edge; per crossing only its column (``j``-th of its edge) and row."""
    ring_of = np.repeat(np.arange(ring_sizes.size), ring_sizes)
    nxt = np.arange(1, up.shape[0] + 1)
    ends = np.cumsum(ring_sizes)
    nxt[ends - 1] = ends - ring_sizes                   # each ring's last vertex joins its first
    xa, ya = up[:, 0], up[:, 1]
    xb, yb = xa[nxt], ya[nxt]
    lo, hi = np.minimum(xa, xb), np.maximum(xa, xb)
    # Columns c with lo <= 5c + 2 and 5c + 3 <= hi (the walk's X passes every integer between
    # its ends), inside the canvas.
    c_first = np.maximum((lo + 2) // 5, 0)
    counts = np.minimum((hi - 3) // 5, width - 1) - c_first + 1
    dx, dy = np.abs(xb - xa), np.abs(yb - ya)
    xmajor = dx >= dy
    crossing = counts > 0
    keys = []
    for edge, ymin_of in ((np.flatnonzero(crossing & xmajor), _xmajor_ymin),
                          (np.flatnonzero(crossing & ~xmajor), _ymajor_ymin)):
        if not edge.size:
            continue
        n = counts[edge]
        at = np.repeat(np.arange(edge.size), n)         # each crossing's edge (in ``edge``)
        col0 = c_first[edge] - (np.cumsum(n) - n)       # + the crossing's index: its column
        j = np.arange(at.size)
        ymin = ymin_of(xa[edge], ya[edge], xb[edge], yb[edge], dx[edge], dy[edge], at, j, col0)
        row = np.ceil(np.clip((ymin + 0.5) / _SCALE - 0.5, 0.0, float(height))).astype(fields.dtype)
        group = (((ring_of[edge] << fields.col_bits) + col0).astype(fields.dtype))[at]
        group += j.astype(fields.dtype, copy=False)
        group <<= fields.row_bits
        group |= row
        keys.append(group)
    if not keys:
        return np.zeros(0, fields.dtype)
    return keys[0] if len(keys) == 1 else np.concatenate(keys)


def _xmajor_ymin(xa, ya, xb, yb, dx, dy, at, j, col0) -> np.ndarray:
    """x-major edges (per edge) and their crossings (``at``: the edge, column ``col0[at] + j``):
    Ymin of the walk's points at X = 5c + 2 and 5c + 3."""
    flip = xa > xb
    xs, ys = np.where(flip, xb, xa), np.where(flip, yb, ya)
    ye = np.where(flip, ya, yb)
    s = (ye - ys) / dx.astype(np.float64)
    t = 5 * j                                       # t = 5c + 2 - Xstart (+1 when falling): Y is
    t += (5 * col0 + 2 - xs + (s < 0))[at]          # monotone in t, this is the lower point
    return np.trunc(ys[at] + s[at] * t + 0.5)


def _ymajor_ymin(xa, ya, xb, yb, dx, dy, at, j, col0) -> np.ndarray:
    """y-major edges (per edge) and their crossings (``at``, ``j``, ``col0`` as above): Ymin =
    Ystart + T - 1, T the first step whose rounded X has passed between 5c + 2 and 5c + 3 (X is
    monotone along the edge)."""
    flip = ya > yb
    xs, ys = np.where(flip, xb, xa), np.where(flip, yb, ya)
    xe = np.where(flip, xa, xb)
    s = (xe - xs) / dy.astype(np.float64)
    xs, s, falling, dy, ys = xs.astype(np.float64)[at], s[at], (s < 0)[at], dy[at], ys[at]
    n = (5 * (col0[at] + j) + 3).astype(np.float64)
    # (int)(z) >= n  <=>  z >= n for n >= 1, so "passed" is z >= n rising, z < n falling.
    t = np.clip(np.ceil((n - 0.5 - xs) / s), 1, dy)
    # The estimate is off by at most a step or two; the exact test is monotone in t and false
    # at 0, true at dy, so stepping toward it ends (in practice after 0 or 1 rounds).
    while True:
        early = ((xs + s * (t - 1) + 0.5 >= n) != falling) & (t > 1)
        late = (xs + s * t + 0.5 >= n) == falling
        if not (early.any() or late.any()):
            break
        t = t - early + late
    return ys + t - 1


def _spans(key: np.ndarray, fields: _KeyFields):
    """Step 4: the toggles of each (ring, column) sorted and paired.  Returns the non-empty
    spans as ``(ring, col, row0, row1)``."""
    # The walk is closed, so each (ring, column) has an even number of toggles: pairing the
    # globally sorted keys never pairs across groups.
    key.sort()
    mask = (1 << fields.row_bits) - 1
    k0, k1 = key[0::2], key[1::2]
    r0, r1 = k0 & mask, k1 & mask
    keep = r1 > r0
    group = k0[keep] >> fields.row_bits
    return ((group >> fields.col_bits).astype(np.int64), (group & ((1 << fields.col_bits) - 1)).astype(np.int64),
            r0[keep].astype(np.int64), r1[keep].astype(np.int64))


def _paint(poly, col, r0, r1, n_polys: int) -> list[Patch]:
    """OR each polygon's spans into its own window (its tight box).  All windows share one
    buffer, each laid out column by column, where a span is a run of the flat index: the runs
    are sorted, overlapping or touching ones merged, and the buffer written by one np.repeat."""
    out = [EMPTY] * n_polys
    if poly.size == 0:                                  # (poly is non-decreasing: rings come in order)
        return out
    first = np.flatnonzero(np.concatenate(([True], poly[1:] != poly[:-1])))
    top = np.minimum.reduceat(r0, first)
    bottom = np.maximum.reduceat(r1, first)
    left = np.minimum.reduceat(col, first)
    right = np.maximum.reduceat(col, first) + 1
    hh, ww = bottom - top, right - left
    size = hh * ww
    offset = np.cumsum(size) - size
    n = np.diff(np.append(first, poly.size))
    base = np.repeat(offset - top - left * hh, n) + col * np.repeat(hh, n)
    start, end = base + r0, base + r1
    if (start[1:] < start[:-1]).any():                 # several rings in one polygon
        order = np.argsort(start, kind="stable")
        start, end = start[order], end[order]
    reach = np.maximum.accumulate(end)
    new = np.flatnonzero(start[1:] > reach[:-1]) + 1    # a gap before this run
    bounds = np.empty(2 * new.size + 4, dtype=np.int64)
    bounds[0], bounds[-1] = 0, offset[-1] + size[-1]
    bounds[1:-1:2] = start[np.concatenate(([0], new))]
    bounds[2:-1:2] = reach[np.append(new - 1, reach.size - 1)]
    runs = np.zeros(bounds.size - 1, dtype=bool)
    runs[1::2] = True
    buf = np.repeat(runs, np.diff(bounds))
    for p, t, l, h_, w_, o in zip(poly[first].tolist(), top.tolist(), left.tolist(),
                                  hh.tolist(), ww.tolist(), offset.tolist()):
        out[p] = Patch(t, l, buf[o:o + h_ * w_].reshape(w_, h_).T)
    return out
