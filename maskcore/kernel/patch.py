"""Patch: the kernel's unit of output, a window of a canvas holding one label's coverage.

Conventions (shared by every raster module):
- Canvas coordinates: origin at the top-left pixel centre, x = column, y = row, integers.
- A ``Patch`` covers rows ``top .. top + h - 1`` and columns ``left .. left + w - 1`` of a canvas
  of size ``size_hw``; the window always lies inside the canvas (kernels clip before returning).
- ``mask`` is ``bool`` for coverage (True = the label paints this pixel) or ``uint8`` for an
  alpha mask (0..255, the blending weight times 255).
- An empty patch has a mask of shape (0, 0).
Pure numpy: no I/O, no globals.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, eq=False)
class Patch:
    top: int
    left: int
    mask: np.ndarray

    @property
    def bottom(self) -> int:
        """One past the last row."""
        return self.top + self.mask.shape[0]

    @property
    def right(self) -> int:
        """One past the last column."""
        return self.left + self.mask.shape[1]

    @property
    def is_empty(self) -> bool:
        return self.mask.size == 0 or not self.mask.any()

    def window(self) -> tuple[slice, slice]:
        """The canvas slices this patch covers: ``canvas[patch.window()]``."""
        return slice(self.top, self.bottom), slice(self.left, self.right)

    def area(self) -> int:
        """Number of covered pixels (non-zero mask values)."""
        return int(np.count_nonzero(self.mask))


EMPTY = Patch(0, 0, np.zeros((0, 0), dtype=bool))


def empty_patch() -> Patch:
    """A patch that covers nothing."""
    return EMPTY


def patch_from_full(mask: np.ndarray) -> Patch:
    """Crop a full-canvas mask to its tight bounding box."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return EMPTY
    cols = np.flatnonzero(mask.any(axis=0))
    r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    return Patch(int(r0), int(c0), mask[r0:r1, c0:c1])


def patch_to_full(patch: Patch, size_hw: tuple[int, int]) -> np.ndarray:
    """Expand a patch to a full canvas of ``size_hw`` (same dtype as the patch mask)."""
    out = np.zeros(size_hw, dtype=patch.mask.dtype)
    if patch.mask.size:
        out[patch.window()] = patch.mask
    return out


def _common_window(a: Patch, b: Patch) -> tuple[int, int, int, int]:
    parts = [p for p in (a, b) if p.mask.size]
    return (min(p.top for p in parts), min(p.left for p in parts),
            max(p.bottom for p in parts), max(p.right for p in parts))


def _place(p: Patch, top: int, left: int, h: int, w: int) -> np.ndarray:
    out = np.zeros((h, w), dtype=bool)
    if p.mask.size:
        out[p.top - top:p.bottom - top, p.left - left:p.right - left] = p.mask
    return out


def union(a: Patch, b: Patch) -> Patch:
    """Pixels covered by ``a`` or ``b`` (bool patches)."""
    if not a.mask.size:
        return b
    if not b.mask.size:
        return a
    top, left, bottom, right = _common_window(a, b)
    h, w = bottom - top, right - left
    return Patch(top, left, _place(a, top, left, h, w) | _place(b, top, left, h, w))


def subtract(a: Patch, b: Patch) -> Patch:
    """Pixels covered by ``a`` and not by ``b`` (bool patches); keeps ``a``'s window."""
    if not a.mask.size or not b.mask.size:
        return a
    top, left = max(a.top, b.top), max(a.left, b.left)
    bottom, right = min(a.bottom, b.bottom), min(a.right, b.right)
    if top >= bottom or left >= right:
        return a
    mask = a.mask.copy()
    mask[top - a.top:bottom - a.top, left - a.left:right - a.left] &= \
        ~b.mask[top - b.top:bottom - b.top, left - b.left:right - b.left]
    return Patch(a.top, a.left, mask)
