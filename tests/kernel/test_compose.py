"""compose.paint and compose.overlay_half on random canvases and patches against a plain numpy
reference written out per pixel with 16-bit arithmetic: RGB, grey and RGBA canvases, canvases
that are halves of a wider array (the preview), non-contiguous canvases (fallback path)."""

import numpy as np
import pytest

from maskcore.kernel.compose import overlay_half, paint, spans_index_changes
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


def _sequential_overlay(canvas, steps):
    """The reference's per-label step written out per pixel: ``(v + drawn) // 2`` in 16 bits."""
    out = canvas.astype(np.uint16)
    for patch, colour in steps:
        m = full_mask(patch, *canvas.shape[:2])
        out[m] = (out[m] + np.asarray(colour, np.uint16)) // 2
    return out.astype(np.uint8)


def _edge_values(rng, shape):
    """uint8 values mostly at the edges 0, 1, 254, 255 (where a sum or a shift could go wrong)."""
    return rng.choice(np.array([0, 1, 127, 128, 254, 255], np.uint8), shape)


@pytest.mark.parametrize("block", [None, 1, 7, 200])
def test_overlay_half_with_many_overlapping_labels_and_edge_values_in_threads(monkeypatch, block):
    """Up to 40 overlapping labels (colour rows reused from label to label, windows growing and
    shrinking), values and colours at the uint8 edges, four threads at once sharing the colour
    cache, the 16-bit sums in blocks of one row, a few rows or all rows (``block``: elements per
    block; a row does not split): the same pixels as the sequential steps."""
    import threading

    from maskcore.kernel import compose
    if block is not None:
        monkeypatch.setattr(compose, "_SUM_BLOCK", block)

    def one(seed, errors):
        rng = np.random.default_rng(seed)
        for _ in range(15):
            h, w = int(rng.integers(1, 70)), int(rng.integers(1, 70))
            base = _edge_values(rng, (h, 2 * w, 3))
            canvas = base[:, w:]  # the preview's right half: rows that are not contiguous
            steps = [(random_patch(rng, h, w), _edge_values(rng, 3).tolist())
                     for _ in range(int(rng.integers(1, 41)))]
            expected = _sequential_overlay(canvas, steps)
            for patch, colour in steps:
                overlay_half(canvas, patch, colour)
            if not np.array_equal(canvas, expected):
                errors.append(seed)

    errors: list[int] = []
    threads = [threading.Thread(target=one, args=(seed, errors)) for seed in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


@pytest.mark.parametrize("seed", range(4))
def test_spans_index_changes_describe_the_painted_index(seed):
    """Random overlapping runs, numbers repeated and out of order: row 0 and the pixels that
    differ from the one above are those of the canvas painted with each pixel's highest number."""
    rng = np.random.default_rng(seed)
    for _ in range(40):
        h, w = (int(v) for v in rng.integers(1, 30, 2))
        n = int(rng.integers(0, 60))
        col = rng.integers(0, w, n)
        row0 = rng.integers(0, h, n)
        row1 = np.minimum(row0 + rng.integers(1, h + 1, n), h)
        number = rng.integers(1, 9 if seed % 2 else 300, n)
        canvas = np.zeros((h, w), np.int64)
        for k, c, a, b in zip(number, col, row0, row1):
            canvas[a:b, c] = np.maximum(canvas[a:b, c], k)
        first, below, above, row, col_ = spans_index_changes(number, col, row0, row1, (h, w))
        assert np.array_equal(first, canvas[0])
        want_row, want_col = np.nonzero(canvas[1:] != canvas[:-1])
        got = sorted(zip(col_.tolist(), row.tolist(), below.tolist(), above.tolist()))
        want = sorted(zip(want_col.tolist(), (want_row + 1).tolist(), canvas[want_row + 1, want_col].tolist(),
                          canvas[want_row, want_col].tolist()))
        assert got == want
