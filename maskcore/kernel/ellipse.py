"""Filled ellipses exactly as OpenCV's ``cv2.ellipse(img, center, axes, angle, 0, 360, color,
thickness=-1)`` draws them (LINE_8, ``shift=0``), which is how CVAT's exporter turns every
ellipse into a mask (``EllipsesToMasks.convert_ellipse``, cvat/apps/dataset_manager/formats/
transformations.py; facts in docs/reference-notes.md section 13).

Conventions:
- Canvas: x = column, y = row, origin at the top-left pixel centre; ``size_hw`` = (height, width).
- Inputs are what ``cv2.ellipse`` receives: integer centre and semi-axes (pixels), the rotation
  in degrees (rounded half to even to a whole degree, clockwise on screen since y points down).
  ``cvat_ellipse`` first applies CVAT's rounding of float centre and axes.
- Fixed point: OpenCV works in 16.16 fixed point (``XY_SHIFT = 16``). The outline is a polygon
  of vertices every ``delta`` degrees (5, 18, 30 or 90 by the larger semi-axis), taken from
  OpenCV's 451-entry sine table (sin of whole degrees rounded to 7 decimals, float32) in double
  precision, rounded to 1/65536 pixel.
- Coverage: the polygon's edges painted by OpenCV's fixed-point line (``Line2``: one pixel per
  step of the major direction, rounding half up, clipped to the canvas), then OpenCV's convex
  scan-line fill (``FillConvexPoly``: per row the span between the two active edges, edges
  starting at the upper vertex's x and stepping by their rounded slope).
- Output: a :class:`~maskcore.kernel.patch.Patch` of ``bool`` covering the drawn pixels, clipped
  to the canvas. Pure numpy and integer arithmetic; no I/O.
"""

from __future__ import annotations

import numpy as np

from .patch import Patch, empty_patch

XY_SHIFT = 16
XY_ONE = 1 << XY_SHIFT
HALF = XY_ONE >> 1

# OpenCV's SinTable: sin(k degrees), k = 0..450, written with 7 decimals, stored as float32.
SIN_TABLE = np.round(np.sin(np.deg2rad(np.arange(451, dtype=np.float64))), 7).astype(np.float32)


def _rint(v: float) -> int:
    """cvRound: nearest integer, ties to even (the FPU's default mode)."""
    return int(np.rint(v))


def _cdiv(a: int, b: int) -> int:
    """C integer division (truncates toward zero)."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b >= 0) else -q


def ellipse_vertices_fixed(center_xy: tuple[int, int], axes: tuple[int, int], angle_deg: float
                           ) -> np.ndarray:
    """The outline polygon of a full ellipse in 16.16 fixed point, (N, 2) int64, as
    ``EllipseEx`` builds it (``ellipse2Poly`` in doubles, rounded, repeated points dropped)."""
    cx, cy = (int(v) << XY_SHIFT for v in center_xy)
    a, b = (abs(int(v)) << XY_SHIFT for v in axes)
    delta = (max(a, b) + HALF) >> XY_SHIFT
    delta = 90 if delta < 3 else 30 if delta < 10 else 18 if delta < 15 else 5
    angle = _rint(angle_deg)
    while angle < 0:
        angle += 360
    while angle > 360:
        angle -= 360
    beta = float(SIN_TABLE[angle])          # sincos(): sin, then cos = SinTable[450 - angle]
    alpha = float(SIN_TABLE[450 - angle])
    out: list[tuple[int, int]] = []
    for step in range(0, 360 + delta, delta):
        t = min(step, 360)
        x = a * float(SIN_TABLE[450 - t])
        y = b * float(SIN_TABLE[t])
        px = cx + x * alpha - y * beta
        py = cy + x * beta + y * alpha
        fx = (_rint(px / XY_ONE) << XY_SHIFT)
        fy = (_rint(py / XY_ONE) << XY_SHIFT)
        pt = (fx + _rint(px - fx), fy + _rint(py - fy))
        if not out or pt != out[-1]:
            out.append(pt)
    if len(out) <= 1:
        out = [(cx, cy), (cx, cy)]
    return np.array(out, dtype=np.int64)


def _clip_line(w: int, h: int, p1: list[int], p2: list[int]) -> bool:
    """OpenCV's ``clipLine`` on a (w, h) rectangle of 64-bit coordinates, in place."""
    right, bottom = w - 1, h - 1
    if w <= 0 or h <= 0:
        return False
    x1, y1 = p1
    x2, y2 = p2

    def code(x, y):
        return (x < 0) + (x > right) * 2 + (y < 0) * 4 + (y > bottom) * 8

    c1, c2 = code(x1, y1), code(x2, y2)
    if (c1 & c2) == 0 and (c1 | c2) != 0:
        if c1 & 12:
            a = 0 if c1 < 8 else bottom
            x1 += int(float(a - y1) * (x2 - x1) / (y2 - y1))
            y1 = a
            c1 = (x1 < 0) + (x1 > right) * 2
        if c2 & 12:
            a = 0 if c2 < 8 else bottom
            x2 += int(float(a - y2) * (x2 - x1) / (y2 - y1))
            y2 = a
            c2 = (x2 < 0) + (x2 > right) * 2
        if (c1 & c2) == 0 and (c1 | c2) != 0:
            if c1:
                a = 0 if c1 == 1 else right
                y1 += int(float(a - x1) * (y2 - y1) / (x2 - x1))
                x1 = a
                c1 = 0
            if c2:
                a = 0 if c2 == 1 else right
                y2 += int(float(a - x2) * (y2 - y1) / (x2 - x1))
                x2 = a
                c2 = 0
    p1[:] = [x1, y1]
    p2[:] = [x2, y2]
    return (c1 | c2) == 0


def _line_fixed(out: np.ndarray, top: int, left: int, size_hw, p1, p2) -> None:
    """OpenCV's ``Line2``: a LINE_8 segment between 16.16 fixed-point ends on a canvas of
    ``size_hw`` (clipped to it as OpenCV clips), painted into ``out``, the canvas window whose
    first pixel is (``top``, ``left``)."""
    h, w = size_hw
    p1, p2 = [int(p1[0]), int(p1[1])], [int(p2[0]), int(p2[1])]
    if not _clip_line(w << XY_SHIFT, h << XY_SHIFT, p1, p2):
        return
    dx, dy = p2[0] - p1[0], p2[1] - p1[1]
    ax, ay = abs(dx), abs(dy)
    if ax > ay:
        if dx < 0:
            p1, p2 = p2, p1
            dy = -dy
        steps = np.arange(((p2[0] - p1[0]) >> XY_SHIFT) + 1, dtype=np.int64)
        y_step = _cdiv(dy * XY_ONE, ax | 1)
        xs = ((p1[0] + HALF) >> XY_SHIFT) + steps
        ys = (p1[1] + HALF + steps * y_step) >> XY_SHIFT
    else:
        if dy < 0:
            p1, p2 = p2, p1
            dx = -dx
        steps = np.arange(((p2[1] - p1[1]) >> XY_SHIFT) + 1, dtype=np.int64)
        x_step = _cdiv(dx * XY_ONE, ay | 1)
        xs = (p1[0] + HALF + steps * x_step) >> XY_SHIFT
        ys = ((p1[1] + HALF) >> XY_SHIFT) + steps
    xs = np.append(xs, (p2[0] + HALF) >> XY_SHIFT)
    ys = np.append(ys, (p2[1] + HALF) >> XY_SHIFT)
    xs, ys = xs - left, ys - top
    keep = (xs >= 0) & (xs < out.shape[1]) & (ys >= 0) & (ys < out.shape[0])
    out[ys[keep], xs[keep]] = True


def fill_convex_fixed(out: np.ndarray, top: int, left: int, size_hw, v: np.ndarray) -> None:
    """OpenCV's ``FillConvexPoly`` (LINE_8, ``shift = XY_SHIFT``) of the fixed-point polygon
    ``v`` (N, 2) int64 on a canvas of ``size_hw``, painted into ``out``, the canvas window whose
    first pixel is (``top``, ``left``) and which holds every pixel the polygon paints."""
    h, w = size_hw
    npts = len(v)
    vx = [int(t) for t in v[:, 0]]
    vy = [int(t) for t in v[:, 1]]
    p0 = (vx[-1], vy[-1])
    imin = 0
    ymin = ymax = vy[0]
    xmin = xmax = vx[0]
    for i in range(npts):
        if vy[i] < ymin:
            ymin, imin = vy[i], i
        ymax, xmax, xmin = max(ymax, vy[i]), max(xmax, vx[i]), min(xmin, vx[i])
        _line_fixed(out, top, left, size_hw, p0, (vx[i], vy[i]))
        p0 = (vx[i], vy[i])
    xmin, xmax = (xmin + HALF) >> XY_SHIFT, (xmax + HALF) >> XY_SHIFT
    ymin, ymax = (ymin + HALF) >> XY_SHIFT, (ymax + HALF) >> XY_SHIFT
    if npts < 3 or xmax < 0 or ymax < 0 or xmin >= w or ymin >= h:
        return
    ymax = min(ymax, h - 1)
    idx = [imin, imin]
    di = [1, npts - 1]
    ye = [ymin, ymin]
    ex = [-XY_ONE, -XY_ONE]
    edx = [0, 0]
    edges = npts
    y = ymin
    while True:
        for i in (0, 1):
            if y >= ye[i]:
                idx0 = idx[i]
                k = idx0 + di[i]
                if k >= npts:
                    k -= npts
                while True:
                    go = edges > 0
                    edges -= 1
                    if not go:
                        break
                    ty = (vy[k] + HALF) >> XY_SHIFT
                    if ty > y:
                        xs, xe = vx[idx0], vx[k]
                        ye[i] = ty
                        edx[i] = _cdiv((xe - xs) * 2 + (ty - y), 2 * (ty - y))
                        ex[i] = xs
                        idx[i] = k
                        break
                    idx0 = k
                    k += di[i]
                    if k >= npts:
                        k -= npts
        if edges < 0:
            break
        if y >= 0:
            lo, hi = (ex[1], ex[0]) if ex[0] > ex[1] else (ex[0], ex[1])
            xx1 = (lo + HALF) >> XY_SHIFT
            xx2 = (hi + HALF) >> XY_SHIFT
            if xx2 >= 0 and xx1 < w:
                out[y - top, max(xx1, 0) - left:min(xx2, w - 1) + 1 - left] = True
        ex[0] += edx[0]
        ex[1] += edx[1]
        y += 1
        if y > ymax:
            break


def ellipse_patch(center_xy: tuple[int, int], axes: tuple[int, int], angle_deg: float,
                  size_hw: tuple[int, int]) -> Patch:
    """The pixels ``cv2.ellipse(img, center_xy, axes, angle_deg, 0, 360, 255, -1)`` paints on a
    canvas of ``size_hw``; ``axes`` must be >= 0 (OpenCV asserts it)."""
    if min(axes) < 0:
        raise ValueError(f"ellipse: expected semi-axes >= 0, got {tuple(axes)}")
    v = ellipse_vertices_fixed(center_xy, axes, angle_deg)
    h, w = size_hw
    # Everything drawn lies within the vertices' pixel box, one pixel of margin, clipped.
    x0 = max(int(v[:, 0].min() >> XY_SHIFT) - 1, 0)
    y0 = max(int(v[:, 1].min() >> XY_SHIFT) - 1, 0)
    x1 = min(int(v[:, 0].max() >> XY_SHIFT) + 2, w)
    y1 = min(int(v[:, 1].max() >> XY_SHIFT) + 2, h)
    if x1 <= x0 or y1 <= y0:
        return empty_patch()
    out = np.zeros((y1 - y0, x1 - x0), dtype=bool)
    fill_convex_fixed(out, y0, x0, size_hw, v)
    return Patch(y0, x0, out)


def cvat_ellipse(cx: float, cy: float, rx: float, ry: float, rotation_deg: float,
                 size_hw: tuple[int, int]) -> Patch:
    """A CVAT ellipse as CVAT's exporter paints it: its points are ``[cx, cy, cx + rx, cy - ry]``
    and ``EllipsesToMasks.convert_ellipse`` passes ``round(cx), round(cy)`` and
    ``round(right - cx), round(cy - top)`` (Python's round: half to even) to ``cv2.ellipse``."""
    right, top = cx + rx, cy - ry
    axes = (round(right - cx), round(cy - top))
    return ellipse_patch((round(cx), round(cy)), axes, rotation_deg, size_hw)
