"""Process memory settings for worker processes.

A task allocates a few multi-megabyte arrays per item (canvases, PNG scanlines) and frees them at
the end of the item. glibc gives freed memory at the top of the heap back to the OS, so the next
item's arrays page-fault again: measured ~830 faults per 1024x1024 CVAT item at ~4 us each on this
machine (3.3 ms of 9.8 ms). ``keep_freed_heap`` asks glibc to keep some freed heap for reuse
(``mallopt(M_TOP_PAD)``) and to serve arrays up to ``MMAP_THRESHOLD_BYTES`` from the heap
(``M_MMAP_THRESHOLD``) so that freed ones are reused. No-op off Linux/glibc.
"""

from __future__ import annotations

import ctypes
import os
import sys

from ..errors import LimitError

M_TOP_PAD = -2
M_MMAP_THRESHOLD = -3
DEFAULT_TOP_PAD_BYTES = 64 << 20
MMAP_THRESHOLD_BYTES = 32 << 20
"""Allocations up to this size come from the heap (glibc's 64-bit maximum). Dask workers set
``MALLOC_TRIM_THRESHOLD_``, which turns off glibc's adaptive mmap threshold: every array above
128 KiB was mmapped and page-faulted in again on every item (measured ~390 faults per item ->
1; machine-only exports 91-102 -> 107-128 images/s on one core)."""
_done = False


def keep_freed_heap(top_pad_bytes: int = DEFAULT_TOP_PAD_BYTES) -> bool:
    """Keep up to ``top_pad_bytes`` of freed heap in this process (once; later calls are no-ops).
    Returns whether the setting is in effect."""
    global _done
    if _done:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None)
        ok = bool(libc.mallopt(M_TOP_PAD, int(top_pad_bytes)))
        ok = ok and bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES))
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    _done = ok
    return ok


# -- how much memory one item needs, and whether it fits the worker --------------------------------
#
# A worker renders one item at a time; its peak is the process itself, the freed heap it keeps
# (``DEFAULT_TOP_PAD_BYTES``), a few bytes per canvas pixel for the canvases, colour masks, the
# human preview and their PNG streams (which mask kinds are drawn decides how many), and about
# one byte per pixel of each label's drawn window (held until the item's masks are composed).
# Measured peak RSS above an idle process, one 4000x4000 Supervisely item with a full-canvas
# polygon and a quarter-canvas rectangle (20 MB of windows), render_partition on this machine:
# machine 53 MiB, instance 57, semantic 115, human 252, all four 374; cvat 113, isahit 220,
# save-masks 191; each further full-canvas polygon +15 MiB (one byte per pixel of its window).

PROCESS_BYTES = 128 << 20
"""An idle worker process with maskcore imported (measured 109-131 MiB)."""
KIND_BYTES_PER_PIXEL = {"machine": 3, "semantic": 7, "human": 16, "instance": 3}
"""Supervisely mask kinds: measured bytes per canvas pixel (above), rounded up by ~15%."""
OTHER_BYTES_PER_PIXEL = 16
"""Layouts without Supervisely ``masks`` (cvat 7, isahit 14, save-masks 12 measured)."""
ESTIMATE_ENV = "MASKCORE_MEMORY_ESTIMATE"
"""``off``: no item is refused on its estimate (a worker that dies is still isolated)."""
LIMIT_ENV = "MASKCORE_MEMORY_LIMIT"
"""Memory limit of runs outside a Dask worker (in-process), e.g. ``4GiB``; none by default."""


def bytes_per_pixel(layout) -> float:
    """Bytes per canvas pixel ``layout`` holds while it renders one item (see above)."""
    masks = getattr(layout, "masks", None)
    if masks is None:
        return OTHER_BYTES_PER_PIXEL
    per = sum(KIND_BYTES_PER_PIXEL.get(k, OTHER_BYTES_PER_PIXEL) for k in masks)
    resize = getattr(layout, "human_resize_percent", None)
    if "human" in masks and resize and resize > 100:  # the enlarged preview and its PNG stream
        per += 2 * 6 * (resize / 100) ** 2
    return per


def _box_pixels(xs, ys, size_hw) -> int:
    """Pixels of the box around points (x, y), clipped to the canvas."""
    h, w = size_hw
    if len(xs) == 0:
        return 0
    x0, x1 = max(0, int(min(xs))), min(w - 1, int(max(xs)) + 1)
    y0, y1 = max(0, int(min(ys))), min(h - 1, int(max(ys)) + 1)
    return max(0, x1 - x0 + 1) * max(0, y1 - y0 + 1)


def window_pixels(geometry, size_hw: tuple[int, int]) -> int:
    """Pixels of the window a label is drawn in (its box on the canvas); the whole canvas for a
    geometry this does not know."""
    import numpy as np

    kind = getattr(geometry, "geometry_type", None)
    if kind == "multipolygon":
        return sum(window_pixels(p, size_hw) for p in geometry.parts)
    if kind in ("bitmap", "alpha_mask"):
        (x, y), array = geometry.origin_xy, getattr(geometry, "mask", getattr(geometry, "alpha", None))
        return _box_pixels((x, x + array.shape[1] - 1), (y, y + array.shape[0] - 1), size_hw)
    if kind == "rectangle":
        return _box_pixels((geometry.x0, geometry.x1), (geometry.y0, geometry.y1), size_hw)
    if kind in ("point",):
        return 64
    if kind == "graph":
        nodes = geometry.nodes
        return _box_pixels([n.x for n in nodes], [n.y for n in nodes], size_hw)
    if kind == "oriented_bbox":  # any rotation stays inside the circle around the box
        cx, cy = (geometry.left + geometry.right) / 2, (geometry.top + geometry.bottom) / 2
        r = ((geometry.right - geometry.left) ** 2 + (geometry.bottom - geometry.top) ** 2) ** 0.5 / 2 + 1
        return _box_pixels((cx - r, cx + r), (cy - r, cy + r), size_hw)
    points = _POINT_ARRAYS.get(kind)
    if kind == "box":
        xy = geometry.corners_xy()
    elif points is not None:
        xy = np.asarray(getattr(geometry, points)).reshape(-1, 2)
    else:
        return size_hw[0] * size_hw[1]
    return _box_pixels(xy[:, 0], xy[:, 1], size_hw)


_POINT_ARRAYS = {"polygon": "exterior_xy", "line": "points_xy", "cuboid_2d": "vertices_xy", "cuboid": "points_xy"}


def windows_pixels(labels, size_hw: tuple[int, int]) -> int:
    """Sum of :func:`window_pixels` over ``labels``; the point-list geometries in one numpy pass
    (200,000 polygons: ~0.3 s instead of ~3 s one by one)."""
    import numpy as np

    arrays, total = [], 0
    for label in labels:
        field = _POINT_ARRAYS.get(getattr(label.geometry, "geometry_type", None))
        xy = getattr(label.geometry, field, None) if field else None
        if isinstance(xy, np.ndarray) and xy.ndim == 2 and xy.shape[1] == 2 and len(xy):
            arrays.append(xy)
        else:
            total += window_pixels(label.geometry, size_hw)
    if not arrays:
        return total
    h, w = size_hw
    starts = np.cumsum([0] + [len(a) for a in arrays[:-1]])
    xy = np.concatenate(arrays).astype(np.float64)
    x0 = np.maximum(0, np.trunc(np.minimum.reduceat(xy[:, 0], starts)))   # as _box_pixels
    x1 = np.minimum(w - 1, np.trunc(np.maximum.reduceat(xy[:, 0], starts)) + 1)
    y0 = np.maximum(0, np.trunc(np.minimum.reduceat(xy[:, 1], starts)))
    y1 = np.minimum(h - 1, np.trunc(np.maximum.reduceat(xy[:, 1], starts)) + 1)
    return total + int((np.maximum(0, x1 - x0 + 1) * np.maximum(0, y1 - y0 + 1)).sum())


def item_bytes(annotation, layout) -> int:
    """Estimated peak bytes of a worker rendering one item (``annotation``'s canvas and labels
    with ``layout``): process, kept heap, canvases and each label's window."""
    h, w = annotation.size_hw
    return int(PROCESS_BYTES + DEFAULT_TOP_PAD_BYTES + bytes_per_pixel(layout) * h * w
               + windows_pixels(annotation.labels, (h, w)))


def memory_limit() -> tuple[int | None, float]:
    """(bytes the process may use, fraction of them at which it is stopped) for the process a
    task runs in: a Dask worker's ``memory_limit`` and the nanny's
    ``distributed.worker.memory.terminate`` fraction; outside a worker ``$MASKCORE_MEMORY_LIMIT``
    (else no limit)."""
    if "distributed" in sys.modules:
        from distributed import get_worker
        try:
            worker = get_worker()
        except ValueError:  # not in a worker: an in-process run
            worker = None
        if worker is not None:
            import dask
            limit = getattr(getattr(worker, "memory_manager", None), "memory_limit", None)
            terminate = dask.config.get("distributed.worker.memory.terminate", 0.95)
            return (int(limit) if limit else None), (float(terminate) if terminate else 1.0)
    text = os.environ.get(LIMIT_ENV, "").strip()
    if not text:
        return None, 1.0
    from dask.utils import parse_bytes
    return int(parse_bytes(text)), 1.0


def refuse_oversize(annotation, layout, where: str) -> None:
    """Raise :class:`ItemMemoryError` when rendering the item cannot fit this process's memory
    limit (:func:`memory_limit`): estimated by :func:`item_bytes` before anything is drawn."""
    if os.environ.get(ESTIMATE_ENV, "").strip().lower() in ("off", "0", "false", "no"):
        return
    h, w = annotation.size_hw
    if h * w > getattr(layout, "max_canvas_pixels", h * w):
        return  # the layout refuses the canvas itself, with its own message
    limit, fraction = memory_limit()
    if not limit:
        return
    usable = int(limit * fraction)
    fixed = PROCESS_BYTES + DEFAULT_TOP_PAD_BYTES + bytes_per_pixel(layout) * h * w
    if fixed + len(annotation.labels) * h * w <= usable:
        return  # fits even if every label's window were the whole canvas: no need to look at them
    need = item_bytes(annotation, layout)
    if need > usable:
        raise ItemMemoryError(
            f"rendering needs an estimated {need / MIB:,.0f} MiB ({w}x{h} canvas at "
            f"{bytes_per_pixel(layout):g} bytes per pixel, {len(annotation.labels)} labels' windows, "
            f"{(PROCESS_BYTES + DEFAULT_TOP_PAD_BYTES) / MIB:.0f} MiB of process), above the worker's memory "
            f"limit of {limit / MIB:,.0f} MiB" + (f" ({fraction:.0%} of it usable)" if fraction < 1 else "")
            + "; not rendered: give the workers more memory (or draw fewer mask kinds)", where=where)


MIB = 1 << 20


class ItemMemoryError(LimitError):
    """An item whose estimated memory is above the worker's limit: it fails alone."""
