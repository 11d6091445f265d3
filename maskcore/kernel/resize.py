"""Area-interpolated downscaling (the rule of OpenCV's ``INTER_AREA`` when shrinking).

Each output pixel is the mean of the source area it covers. Output size: ``int(n * percent / 100)`` (truncated, as the reference app sizes it)
per axis, at least 1. Rounding follows OpenCV: when both axes shrink by whole factors the block sum
is scaled in float32 and rounded half to even (half up for the 2x2 case, OpenCV's special path);
other factors weight partial pixels by their overlap in float64 and round half to even, which can
differ from OpenCV's float32 accumulation by 1 on a small fraction of pixels. Pure numpy.
"""

from __future__ import annotations

import numpy as np


def _area_weights(n_src: int, n_dst: int) -> np.ndarray:
    """(n_dst, n_src) matrix: overlap of each destination cell with each source pixel / scale."""
    scale = n_src / n_dst
    starts = np.arange(n_dst) * scale
    ends = starts + scale
    src = np.arange(n_src)
    overlap = np.clip(np.minimum(ends[:, None], src[None, :] + 1) - np.maximum(starts[:, None], src[None, :]),
                      0.0, None)
    return overlap / scale


def resized_hw(size_hw: tuple[int, int], percent: float) -> tuple[int, int]:
    """Output size of a resize by ``percent``."""
    h, w = size_hw
    return max(1, int(h * percent / 100.0)), max(1, int(w * percent / 100.0))


def resize_area(image: np.ndarray, percent: float) -> np.ndarray:
    """Shrink a uint8 (H, W) or (H, W, C) image to ``percent`` of its size by area averaging."""
    if not 0 < percent <= 100:
        raise ValueError(f"percent: expected a number in (0, 100], got {percent!r}")
    h, w = image.shape[:2]
    dh, dw = resized_hw((h, w), percent)
    if (dh, dw) == (h, w):
        return image.copy()
    if h % dh == 0 and w % dw == 0:
        return _shrink_blocks(image, h // dh, w // dw)
    rows, cols = _area_weights(h, dh), _area_weights(w, dw)
    src = image.astype(np.float64)
    out = np.tensordot(rows, src, axes=(1, 0))                 # (dh, W, C?)
    out = np.moveaxis(np.tensordot(cols, out, axes=(1, 1)), 0, 1)  # (dh, dw, C?)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _shrink_blocks(image: np.ndarray, fy: int, fx: int) -> np.ndarray:
    h, w = image.shape[:2]
    blocks = image.reshape(h // fy, fy, w // fx, fx, *image.shape[2:]).astype(np.int64)
    sums = blocks.sum(axis=(1, 3))
    if fy == fx == 2:
        return ((sums + 2) >> 2).astype(np.uint8)
    scaled = sums.astype(np.float32) * np.float32(1.0 / (fy * fx))
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
