"""Validation of ring input shared by the fill rules: each ring an (N, 2) array of xy coordinates.

The OpenCV rule (fill.py) takes integer pixel coordinates; the pycocotools rule (coco_rule.py)
takes real ones. Errors name the ring (``where``) and say what was expected and what came.
"""

from __future__ import annotations

import numpy as np

from .lines import check_int32


def ring_xy(ring, where: str, *, integer: bool) -> np.ndarray:
    """One ring as an (N, 2) int64 (``integer``) or float64 array; TypeError / ValueError otherwise."""
    dtype = np.int64 if integer else np.float64
    arr = np.asarray(ring)
    if arr.size == 0:
        return np.zeros((0, 2), dtype=dtype)
    kinds, what = ("iu", "integer") if integer else ("iuf", "real")
    if arr.dtype.kind not in kinds:
        raise TypeError(f"{where}: expected {what} coordinates, got dtype {arr.dtype}")
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise ValueError(f"{where}: expected shape (N, 2), got {arr.shape}")
    if integer and arr.dtype == np.uint64:          # would wrap when cast: check it first
        check_int32(arr, where)
    return arr.astype(dtype, copy=False)
