"""Colour palettes: the Pascal VOC colormap and the deterministic class palette.

- ``voc_color(i)``: colour of index ``i`` in the Pascal VOC colormap (CVAT and Datumaro use it for
  instance masks and for labels without a colour): the bits of ``i`` are spread over the three
  channels from the most significant bit down; 0 -> (0, 0, 0), 1 -> (128, 0, 0), 2 -> (0, 128, 0),
  15 -> (192, 128, 128), 255 -> (224, 224, 192).
- ``voc_colormap(n)``: the first ``n`` colours as a (n, 3) uint8 array.
- ``class_colors(n)``: colours of classes 1..n of a source that has none (COCO): the VOC colormap
  from index 1, so class k is drawn as CVAT draws label index k and never as background black.
  Deterministic: the colour depends only on the class position (COCO: the order of the first
  category with that name in ``categories``).
"""

from __future__ import annotations

import numpy as np

VOC_CLASSES = ("background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
               "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
               "sheep", "sofa", "train", "tvmonitor")
"""The 21 Pascal VOC labels in index order (``background`` = 0); 255 means "ignored"."""


def voc_color(i: int) -> tuple[int, int, int]:
    """The VOC colormap colour of index ``i`` (any non-negative int; bits above 24 are dropped)."""
    if i < 0:
        raise ValueError(f"voc_color: expected a non-negative index, got {i}")
    r = g = b = 0
    c = i
    for j in range(7, -1, -1):
        r |= (c & 1) << j
        g |= ((c >> 1) & 1) << j
        b |= ((c >> 2) & 1) << j
        c >>= 3
    return r, g, b


def voc_colormap(n: int = 256) -> np.ndarray:
    """The first ``n`` VOC colours as an (n, 3) uint8 array (vectorised ``voc_color``)."""
    if 0 <= n <= len(_VOC_256):  # the CVAT layout asks once per item: a slice of the table made once
        return _VOC_256[:n].copy()
    return _voc_colormap(n)


def _voc_colormap(n: int) -> np.ndarray:
    idx = np.arange(n, dtype=np.int64)
    out = np.zeros((n, 3), dtype=np.int64)
    c = idx.copy()
    for j in range(7, -1, -1):
        for ch in range(3):
            out[:, ch] |= ((c >> ch) & 1) << j
        c >>= 3
    return out.astype(np.uint8)


_VOC_256 = _voc_colormap(256)


def class_colors(n: int) -> list[tuple[int, int, int]]:
    """Colours of classes 1..n for sources without colours: VOC colours 1..n."""
    return [tuple(int(v) for v in rgb) for rgb in voc_colormap(n + 1)[1:]]
