"""encode_png_window and the per-thread scanline buffers of encode_png: the same bytes as encoding
the full canvas, whatever sizes and windows come one after the other (the reused buffers must be
left clean), decoded by OpenCV to the canvas, and clear errors."""

import threading

import numpy as np
import pytest

from maskcore.codec import png as png_module
from maskcore.codec.png import encode_png, encode_png_window

cv2 = pytest.importorskip("cv2")


def random_window_case(rng):
    h, w = int(rng.integers(1, 90)), int(rng.integers(1, 90))
    wh, ww = int(rng.integers(0, h + 1)), int(rng.integers(0, w + 1))
    top, left = int(rng.integers(0, h - wh + 1)), int(rng.integers(0, w - ww + 1))
    if rng.random() < 0.5:
        window = (rng.random((wh, ww)) < 0.6).astype(np.uint8) * 255
    else:
        window = rng.integers(0, 256, (wh, ww), dtype=np.uint8)
    canvas = np.zeros((h, w), np.uint8)
    canvas[top:top + wh, left:left + ww] = window
    return window, top, left, (h, w), canvas


def test_window_encoding_is_byte_identical_to_the_full_canvas_in_any_order():
    rng = np.random.default_rng(7)
    for _ in range(400):  # sizes and windows change every call: leftovers would show
        window, top, left, size_hw, canvas = random_window_case(rng)
        data = encode_png_window(window, top, left, size_hw)
        assert data == encode_png(canvas)
        np.testing.assert_array_equal(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED), canvas)
        if rng.random() < 0.2:  # a dense encode in between reuses the other buffer
            noise = rng.integers(0, 256, (int(rng.integers(1, 50)), int(rng.integers(1, 50)), 3), np.uint8)
            assert np.array_equal(cv2.imdecode(np.frombuffer(encode_png(noise), np.uint8),
                                               cv2.IMREAD_UNCHANGED)[..., ::-1], noise)


def test_window_touching_every_edge_and_the_full_canvas():
    for h, w, top, left, wh, ww in [(5, 7, 0, 0, 5, 7), (5, 7, 4, 6, 1, 1), (5, 7, 0, 6, 5, 1),
                                    (1, 1, 0, 0, 1, 1), (6, 4, 3, 0, 3, 4)]:
        window = np.full((wh, ww), 255, np.uint8)
        canvas = np.zeros((h, w), np.uint8)
        canvas[top:top + wh, left:left + ww] = window
        assert encode_png_window(window, top, left, (h, w)) == encode_png(canvas)


def test_buffers_above_the_scratch_limit_are_not_kept(monkeypatch):
    monkeypatch.setattr(png_module, "_SCRATCH_MAX_BYTES", 10)
    rng = np.random.default_rng(3)
    for _ in range(30):
        window, top, left, size_hw, canvas = random_window_case(rng)
        assert encode_png_window(window, top, left, size_hw) == encode_png(canvas)


def test_threads_encode_concurrently_without_sharing_buffers():
    rng = np.random.default_rng(11)
    cases = [random_window_case(rng) for _ in range(60)]
    expected = [encode_png(c[4]) for c in cases]
    results = {}

    def work(k):
        results[k] = [encode_png_window(*c[:4]) for c in cases]

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(results[k] == expected for k in range(4))


@pytest.mark.parametrize("args, error, text", [
    ((np.zeros((2, 2), bool), 0, 0, (4, 4)), TypeError, "2-D uint8 window"),
    ((np.zeros((2, 2, 1), np.uint8), 0, 0, (4, 4)), TypeError, "2-D uint8 window"),
    ((np.zeros((2, 2), np.uint8), 3, 0, (4, 4)), ValueError, "not inside the 4x4 canvas"),
    ((np.zeros((2, 2), np.uint8), 0, -1, (4, 4)), ValueError, "not inside"),
    ((np.zeros((1, 1), np.uint8), 0, 0, (0, 4)), ValueError, "1 <= H, W"),
])
def test_bad_windows_are_refused_with_what_was_expected(args, error, text):
    with pytest.raises(error, match=text):
        encode_png_window(*args)
    # a refused call leaves the buffers clean
    assert encode_png_window(np.full((1, 1), 9, np.uint8), 1, 1, (3, 3)) == encode_png(
        np.pad(np.full((1, 1), 9, np.uint8), 1))
