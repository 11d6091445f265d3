"""Filled ellipses (maskcore.kernel.ellipse) against OpenCV's cv2.ellipse, the test oracle: random
centres (inside, near and across every border, off the canvas), semi-axes (0, tiny, larger than
the canvas) and rotations (any float, rounded by OpenCV to whole degrees); and CVAT's
EllipsesToMasks rounding of float centres and radii."""

import numpy as np
import pytest

from helpers.oracles import oracle
from maskcore.kernel.ellipse import SIN_TABLE, cvat_ellipse, ellipse_patch

cv2 = oracle("cv2")


def _canvas(patch, size_hw):
    out = np.zeros(size_hw, bool)
    out[patch.top:patch.bottom, patch.left:patch.right] = patch.mask
    return out


def _cv2_ellipse(size_hw, center, axes, angle):
    ref = np.zeros(size_hw, np.uint8)
    cv2.ellipse(ref, center, axes, angle, 0, 360, 255, thickness=-1)
    return ref > 0


def test_sine_table_known_values():
    """OpenCV's SinTable entries (drawing.cpp), written with 7 decimals."""
    assert SIN_TABLE.dtype == np.float32 and SIN_TABLE.shape == (451,)
    assert [float(SIN_TABLE[k]) for k in (0, 1, 45, 90, 181, 450)] == [
        0.0, float(np.float32(0.0174524)), float(np.float32(0.7071068)), 1.0,
        float(np.float32(-0.0174524)), 1.0]


@pytest.mark.parametrize("seed", [1, 2])
def test_random_ellipses_equal_cv2(seed):
    rng = np.random.default_rng(seed)
    differing = drawn = 0
    for k in range(700):
        h, w = (int(v) for v in rng.integers(1, 70, 2))
        center = (int(rng.integers(-25, w + 25)), int(rng.integers(-25, h + 25)))
        top = 8 if k % 3 == 0 else 60
        axes = (int(rng.integers(0, top)), int(rng.integers(0, top)))
        angle = float(rng.uniform(-400, 400)) if k % 5 else float(rng.integers(-4, 4)) * 90 + 0.5
        ref = _cv2_ellipse((h, w), center, axes, angle)
        got = _canvas(ellipse_patch(center, axes, angle, (h, w)), (h, w))
        differing += int((ref != got).sum())
        drawn += int(ref.any())
    assert drawn > 400
    assert differing == 0


def test_large_ellipses_crossing_the_border_equal_cv2():
    rng = np.random.default_rng(3)
    differing = 0
    for _ in range(25):
        h, w = (int(v) for v in rng.integers(100, 700, 2))
        center = (int(rng.integers(-300, w + 300)), int(rng.integers(-300, h + 300)))
        axes = (int(rng.integers(0, 900)), int(rng.integers(0, 900)))
        angle = float(rng.uniform(-720, 720))
        ref = _cv2_ellipse((h, w), center, axes, angle)
        differing += int((ref != _canvas(ellipse_patch(center, axes, angle, (h, w)), (h, w))).sum())
    assert differing == 0


def test_cvat_rounding_of_float_ellipses():
    """CVAT: points [cx, cy, cx + rx, cy - ry]; cv2.ellipse((round(cx), round(cy)),
    (round(right - cx), round(cy - top)), rotation) (Python's round: half to even)."""
    rng = np.random.default_rng(4)
    differing = 0
    for k in range(500):
        h, w = (int(v) for v in rng.integers(5, 60, 2))
        cx, cy = (round(float(v), 2) for v in rng.uniform(-15, [w + 15, h + 15]))
        rx, ry = (round(float(v), 2) for v in rng.uniform(0.01, 30, 2))
        if k % 3 == 0:                                          # ties: x.5 centres and radii
            cx, cy, rx, ry = (round(v * 2) / 2 for v in (cx, cy, rx, ry))
        rotation = round(float(rng.uniform(-360, 360)), 2)
        right, top = cx + rx, cy - ry
        ref = _cv2_ellipse((h, w), (round(cx), round(cy)), (round(right - cx), round(cy - top)), rotation)
        differing += int((ref != _canvas(cvat_ellipse(cx, cy, rx, ry, rotation, (h, w)), (h, w))).sum())
    assert differing == 0


def test_negative_axes_are_refused():
    with pytest.raises(ValueError, match="semi-axes"):
        ellipse_patch((5, 5), (-1, 3), 0.0, (10, 10))


def test_off_canvas_ellipse_is_empty():
    assert ellipse_patch((-50, -50), (5, 5), 0.0, (10, 10)).is_empty
