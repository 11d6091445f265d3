"""Thin (1 px) segments and polylines, pixel for pixel as OpenCV 4.x ``cv2.line`` / ``polylines``.

Conventions (shared with ``patch.py``):
- Canvas coordinates are integers, origin at the top-left pixel centre, x = column, y = row.
  Point arrays are ``int64`` (N, 2) in **xy** order; ``size_hw`` is (height, width).
- Coordinates must fit in int32 (OpenCV's ``Point``); they may lie far outside the canvas.
- Pixel rule: OpenCV's ``LINE_8`` (thickness 1, shift 0), reproduced exactly:
  1. ``clipLine``: when an endpoint is outside the canvas, endpoints are moved onto the border
     with float64 arithmetic truncated toward zero -- first the y-out endpoints to row 0 / h-1
     (the second one using the already moved first), then the x-out ones to column 0 / w-1.
     The clipped line is then drawn, so its pixels can differ from cropping the unclipped line
     (OpenCV's behaviour, kept).  A segment that clipLine rejects paints nothing.
  2. Bresenham from the left endpoint (endpoints swapped when x1 < x0), ``max(|dx|, |dy|) + 1``
     pixels; after ``i`` major steps the minor coordinate has moved
     ``floor((2*minor*i + major - 1) / (2*major))`` (the closed form of OpenCV's
     ``err = major - 2*minor``, minor step when ``err < 0``).
- Polylines: open joins v[i-1] -> v[i]; closed also v[n-1] -> v[0] (drawn first).  An open polyline
  of one vertex paints nothing, a closed one paints that pixel (as OpenCV's ``PolyLine``).
- Output: ``Patch`` with a ``bool`` mask, cropped to the painted pixels (empty patch when none).
Pure numpy, vectorised over segments and pixels (``clip_segments`` clips a handful of segments
one by one with Python numbers: the same float64 arithmetic, fewer numpy calls); no I/O.
"""

from __future__ import annotations

import numpy as np

from maskcore.kernel.patch import Patch, empty_patch

_INT32_MIN, _INT32_MAX = -(2 ** 31), 2 ** 31 - 1
_XY_STRIDE = 1 << 32                 # pixel_offsets stride that packs canvas (x, y) in one int64
_SCALAR_CLIP = 48                    # clip_segments clips fewer segments than this one by one


def check_size_hw(size_hw) -> tuple[int, int]:
    """``size_hw`` as two non-negative ints, or ValueError."""
    try:
        height, width = (int(v) for v in size_hw)
    except (TypeError, ValueError):
        raise ValueError(f"size_hw: expected (height, width) integers, got {size_hw!r}") from None
    if height < 0 or width < 0:
        raise ValueError(f"size_hw: expected non-negative (height, width), got {size_hw!r}")
    return height, width


def check_xy(points, name: str = "points_xy") -> np.ndarray:
    """Integer points as a (N, 2) int64 array, or TypeError / ValueError saying what came."""
    arr = np.asarray(points)
    if arr.size == 0:
        return np.zeros((0, 2), dtype=np.int64)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"{name}: expected integer coordinates, got dtype {arr.dtype}")
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise ValueError(f"{name}: expected shape (N, 2), got {arr.shape}")
    check_int32(arr, name)
    return arr.astype(np.int64, copy=False)


def check_int32(arr: np.ndarray, name: str) -> None:
    """ValueError unless every value of the integer array ``arr`` fits in int32."""
    if arr.size and (arr.min() < _INT32_MIN or arr.max() > _INT32_MAX):
        raise ValueError(f"{name}: expected coordinates within int32, got range "
                         f"[{arr.min()}, {arr.max()}]")


def _outcode(x: np.ndarray, y: np.ndarray, right: int, bottom: int) -> np.ndarray:
    return (x < 0) + (x > right) * 2 + (y < 0) * 4 + (y > bottom) * 8


def _shift_by_ratio(num_a, num_b, den) -> np.ndarray:
    """``(int64)((double)num_a * num_b / den)``: C's float64 product, quotient, truncation."""
    ratio = num_a.astype(np.float64) * num_b.astype(np.float64) / den.astype(np.float64)
    return ratio.astype(np.int64)


def clip_segments(x0, y0, x1, y1, size_hw, scalar_below: int = _SCALAR_CLIP):
    """OpenCV ``clipLine`` on many segments: ``(inside, x0, y0, x1, y1)`` as new int64 arrays.

    ``inside`` is False where OpenCV rejects the segment; the endpoints are then whatever the
    partial clipping left (OpenCV's fill uses those too).  When fewer than ``scalar_below``
    segments need clipping they are clipped one by one in Python (same arithmetic, fewer
    numpy calls).
    """
    size_hw = check_size_hw(size_hw)
    seg = np.array([np.asarray(v, dtype=np.int64).reshape(-1) for v in (x0, y0, x1, y1)])
    return (clip_segment_array(seg, size_hw, scalar_below), *seg)


def clip_segment_array(seg: np.ndarray, size_hw, scalar_below: int = _SCALAR_CLIP) -> np.ndarray:
    """``clip_segments`` in place on a (4, S) int64 array of rows x0, y0, x1, y1: returns
    ``inside``.  Only the segments with an endpoint off the canvas are touched."""
    height, width = size_hw
    if height == 0 or width == 0:
        return np.zeros(seg.shape[1], dtype=bool)
    right, bottom = width - 1, height - 1
    off = seg < 0
    off |= seg > np.array([[right], [bottom], [right], [bottom]])
    sel = np.flatnonzero(off.any(axis=0))
    inside = np.ones(seg.shape[1], dtype=bool)
    if sel.size == 0:
        return inside
    part = seg[:, sel]
    if sel.size < scalar_below:
        clipped = [_clip_line(*ends, right, bottom) for ends in zip(*part.tolist())]
        part = np.array(clipped, dtype=np.int64).T
        visible = (part[4] | part[5]) == 0
    else:
        visible = _clip_lines(part, right, bottom)
    seg[:, sel] = part[:4]
    inside[sel] = visible
    return inside


def _clip_lines(seg: np.ndarray, right: int, bottom: int) -> np.ndarray:
    """``clipLine`` vectorised, in place on a (4, S) int64 array; returns the visibility."""
    x0, y0, x1, y1 = seg
    c0, c1 = _outcode(x0, y0, right, bottom), _outcode(x1, y1, right, bottom)
    todo = ((c0 & c1) == 0) & ((c0 | c1) != 0)
    for xa, ya, ca in ((x0, y0, c0), (x1, y1, c1)):        # y-out endpoints onto row 0 / bottom
        sel = np.flatnonzero(todo & ((ca & 12) != 0))
        a = np.where(ca[sel] < 8, 0, bottom)
        xa[sel] += _shift_by_ratio(a - ya[sel], x1[sel] - x0[sel], y1[sel] - y0[sel])
        ya[sel] = a
        ca[sel] = (xa[sel] < 0) + (xa[sel] > right) * 2
    todo &= ((c0 & c1) == 0) & ((c0 | c1) != 0)
    for xa, ya, ca in ((x0, y0, c0), (x1, y1, c1)):        # x-out endpoints onto column 0 / right
        sel = np.flatnonzero(todo & (ca != 0))
        a = np.where(ca[sel] == 1, 0, right)
        ya[sel] += _shift_by_ratio(a - xa[sel], y1[sel] - y0[sel], x1[sel] - x0[sel])
        xa[sel] = a
        ca[sel] = 0
    return (c0 | c1) == 0


def _clip_line(x0: int, y0: int, x1: int, y1: int, right: int, bottom: int):
    """``clip_segments`` for one segment with Python ints: ``(x0, y0, x1, y1, code0, code1)``.

    ``int(float * float / float)`` is C's ``(int64)((double)a * b / c)`` (IEEE doubles, the
    same operation order, truncation toward zero).
    """
    c0 = (x0 < 0) + (x0 > right) * 2 + (y0 < 0) * 4 + (y0 > bottom) * 8
    c1 = (x1 < 0) + (x1 > right) * 2 + (y1 < 0) * 4 + (y1 > bottom) * 8
    if c0 & c1 or not c0 | c1:
        return x0, y0, x1, y1, c0, c1
    if c0 & 12:
        a = 0 if c0 < 8 else bottom
        x0 += int(float(a - y0) * float(x1 - x0) / float(y1 - y0))
        y0 = a
        c0 = (x0 < 0) + (x0 > right) * 2
    if c1 & 12:
        a = 0 if c1 < 8 else bottom
        x1 += int(float(a - y1) * float(x1 - x0) / float(y1 - y0))
        y1 = a
        c1 = (x1 < 0) + (x1 > right) * 2
    if not c0 & c1 and c0 | c1:
        if c0:
            a = 0 if c0 == 1 else right
            y0 += int(float(a - x0) * float(y1 - y0) / float(x1 - x0))
            x0, c0 = a, 0
        if c1:
            a = 0 if c1 == 1 else right
            y1 += int(float(a - x1) * float(y1 - y0) / float(x1 - x0))
            x1, c1 = a, 0
    return x0, y0, x1, y1, c0, c1


def segments_pixels(x0, y0, x1, y1, size_hw) -> tuple[np.ndarray, np.ndarray]:
    """Pixels ``(xs, ys)`` that ``cv2.line(canvas, (x0, y0), (x1, y1), 1)`` paints, per segment.

    Inputs are equal-length integer arrays (int32 range); outputs are int64 arrays inside the
    canvas, segment after segment (a pixel shared by two segments appears twice).
    """
    height, width = check_size_hw(size_hw)
    ends = [np.asarray(v).reshape(-1) for v in (x0, y0, x1, y1)]
    if len({v.size for v in ends}) != 1:
        raise ValueError(f"segments_pixels: expected equal-length arrays, got sizes "
                         f"{[v.size for v in ends]}")
    for v in ends:
        if v.size and v.dtype.kind not in "iu":
            raise TypeError(f"segments_pixels: expected integer coordinates, got {v.dtype}")
        check_int32(v, "segments_pixels")
    if ends[0].size == 0 or height == 0 or width == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    seg = np.array([v.astype(np.int64) for v in ends])
    inside = clip_segment_array(seg, (height, width))
    flat = pixel_offsets(*seg[:, inside], stride=_XY_STRIDE)
    return flat & (_XY_STRIDE - 1), flat >> 32


def pixel_offsets(x0, y0, x1, y1, stride, origin=0) -> np.ndarray:
    """Bresenham pixels ``origin + x + y * stride`` (int64) of segments clipped to non-negative
    coordinates.

    One value per pixel, segment after segment.  With ``stride`` = the width of a window whose
    origin the coordinates are relative to, these are flat indexes into that window.  ``stride``
    and ``origin`` may be per-segment arrays (many windows laid out in one flat buffer).
    """
    swap = x1 < x0                                           # OpenCV draws left to right
    sx, sy = np.where(swap, x1, x0), np.where(swap, y1, y0)
    dx = np.abs(x1 - x0)
    dy = np.where(swap, y0 - y1, y1 - y0)
    step_y = np.where(dy < 0, -stride, stride)
    dy = np.abs(dy)
    vert = dy > dx
    major, minor = np.maximum(dx, dy), np.minimum(dx, dy)
    step_major = np.where(vert, step_y, 1)
    step_minor = np.where(vert, 1, step_y)
    if major.size == 0:
        return np.zeros(0, dtype=np.int64)
    counts = major + 1
    start = np.cumsum(counts) - counts
    # The pixels are a running sum: every step adds step_major, plus step_minor on the steps
    # where the minor coordinate moves, and a segment's first pixel adds the jump from the
    # previous segment's last one.  Only the sum(minor) minor steps need a division: the m-th
    # (m = 1 .. minor) is step i = floor((2 * major * m - major + 2 * minor) / (2 * minor)),
    # the first i where OpenCV's err < 0 rule has moved the minor coordinate m times:
    # k(i) = floor((2 * minor * i + major - 1) / (2 * major)) >= m, solved for i.
    first = sx + sy * stride + origin
    last = first + major * step_major + minor * step_minor
    steps = step_major.repeat(counts)
    steps[start] = first
    steps[start[1:]] -= last[:-1]
    n_minor = int(minor.sum())
    if n_minor:
        m_first = np.cumsum(minor) - minor
        two_major, two_minor = 2 * major, np.maximum(2 * minor, 1)
        i = np.arange(n_minor, dtype=np.int64)
        i *= two_major.repeat(minor)
        i += (two_major * (1 - m_first) - major + two_minor).repeat(minor)
        i //= two_minor.repeat(minor)
        i += start.repeat(minor)
        steps[i] += step_minor.repeat(minor)
    return np.cumsum(steps, out=steps)


def polyline_segments(points_xy: np.ndarray, closed: bool) -> tuple[np.ndarray, np.ndarray]:
    """Segment endpoints ``(p0, p1)`` (each (S, 2)) in OpenCV ``PolyLine`` order."""
    if closed:
        return np.roll(points_xy, 1, axis=0), points_xy
    return points_xy[:-1], points_xy[1:]


def pixels_to_patch(xs: np.ndarray, ys: np.ndarray) -> Patch:
    """A bool patch holding the given in-canvas pixels, cropped to their bounding box."""
    if xs.size == 0:
        return empty_patch()
    top, left = int(ys.min()), int(xs.min())
    mask = np.zeros((int(ys.max()) - top + 1, int(xs.max()) - left + 1), dtype=bool)
    mask[ys - top, xs - left] = True
    return Patch(top, left, mask)


def polyline(points_xy, size_hw, closed: bool = False) -> Patch:
    """Pixels of ``cv2.polylines(canvas, [points_xy], closed, 1, thickness=1)`` (LINE_8)."""
    pts = check_xy(points_xy)
    p0, p1 = polyline_segments(pts, closed)
    xs, ys = segments_pixels(p0[:, 0], p0[:, 1], p1[:, 0], p1[:, 1], size_hw)
    return pixels_to_patch(xs, ys)
