"""compose.paint and compose.overlay_half on random canvases and patches against a plain numpy
reference written out per pixel with 16-bit arithmetic: RGB, grey and RGBA canvases, canvases
that are halves of a wider array (the preview), non-contiguous canvases (fallback path)."""

import numpy as np
import pytest

from maskcore.kernel.compose import overlay_half, paint
from maskcore.kernel.patch import Patch


def random_patch(rng, h, w):
    ph, pw = int(rng.integers(0, h + 1)), int(rng.integers(0, w + 1))
    top, left = int(rng.integers(0, h - ph + 1)), int(rng.integers(0, w - pw + 1))
    return Patch(top, left, rng.random((ph, pw)) < rng.random())


def full_mask(patch, h, w):
    m = np.zeros((h, w), bool)
    m[patch.window()] = patch.mask
    return m


@pytest.mark.parametrize("layout", ["contiguous", "right_half", "transposed"])
@pytest.mark.parametrize("channels", [3, 4])
def test_overlay_half_is_the_floor_of_the_mean_where_covered(layout, channels):
    rng = np.random.default_rng(channels)
    for _ in range(60):
        h, w = int(rng.integers(1, 40)), int(rng.integers(1, 40))
        base = rng.integers(0, 256, (h, 2 * w, channels), dtype=np.uint8)
        canvas = {"contiguous": base[:, :w].copy(), "right_half": base[:, w:],
                  "transposed": np.ascontiguousarray(base[:, :w].transpose(1, 0, 2)).transpose(1, 0, 2)}[layout]
        expected = canvas.astype(np.uint16)
        for _ in range(int(rng.integers(1, 6))):
            patch, colour = random_patch(rng, h, w), rng.integers(0, 256, channels)
            m = full_mask(patch, h, w)
            expected[m] = (expected[m] + colour) // 2
            overlay_half(canvas, patch, colour.tolist())
        np.testing.assert_array_equal(canvas, expected.astype(np.uint8))
        if layout == "right_half":
            assert np.shares_memory(canvas, base)


@pytest.mark.parametrize("channels", [0, 3, 4])
def test_paint_overwrites_covered_pixels_only(channels):
    rng = np.random.default_rng(10 + channels)
    for _ in range(60):
        h, w = int(rng.integers(1, 40)), int(rng.integers(1, 40))
        shape = (h, w, channels) if channels else (h, w)
        base = rng.integers(0, 256, (h, 2 * w, *shape[2:]), dtype=np.uint8)
        canvas = base[:, w:]
        expected = canvas.copy()
        for _ in range(int(rng.integers(1, 6))):
            patch = random_patch(rng, h, w)
            value = rng.integers(0, 256, channels).tolist() if channels else int(rng.integers(0, 256))
            expected[full_mask(patch, h, w)] = value
            paint(canvas, patch, value)
        np.testing.assert_array_equal(canvas, expected)


def test_paint_a_scalar_on_a_colour_canvas_fills_every_channel():
    canvas = np.zeros((3, 4, 3), np.uint8)
    paint(canvas, Patch(1, 1, np.ones((2, 2), bool)), 7)
    assert (canvas[1:3, 1:3] == 7).all() and canvas.sum() == 7 * 12
