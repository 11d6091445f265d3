"""encode_png_window and the per-thread scanline buffers of encode_png: the full canvas's pixels
(decoded by OpenCV, Pillow and zlib, which checks the spliced stream's adler32), the same bytes
whatever sizes and windows came before (the reused buffers must be left clean), and clear
errors."""

import io
import threading
import zlib

import numpy as np
import pytest
from PIL import Image

from helpers.oracles import oracle
from maskcore.codec import png as png_module
from maskcore.codec.png import DEFLATE_BACKENDS, encode_png, encode_png_window, read_png

cv2 = oracle("cv2")


def assert_encodes(data: bytes, canvas: np.ndarray) -> None:
    """``data`` is a PNG of ``canvas`` for OpenCV and Pillow, with a valid zlib stream."""
    np.testing.assert_array_equal(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED), canvas)
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(data))), canvas)
    raw = zlib.decompress(read_png(data).idat)  # raises on a bad adler32 or a broken block
    assert len(raw) == canvas.shape[0] * (canvas.shape[1] + 1)


def random_window_case(rng):
    h, w = int(rng.integers(1, 90)), int(rng.integers(1, 90))
    wh, ww = int(rng.integers(0, h + 1)), int(rng.integers(0, w + 1))
    top, left = int(rng.integers(0, h - wh + 1)), int(rng.integers(0, w - ww + 1))
    kind = rng.random()
    if kind < 0.35:
        window = (rng.random((wh, ww)) < 0.6).astype(np.uint8) * 255
    elif kind < 0.7:
        window = rng.random((wh, ww)) < 0.6  # bool: an object mask, True drawn as 255
    else:
        window = rng.integers(0, 256, (wh, ww), dtype=np.uint8)
    canvas = np.zeros((h, w), np.uint8)
    canvas[top:top + wh, left:left + ww] = window.astype(np.uint8) * 255 if window.dtype == bool else window
    return window, top, left, (h, w), canvas


def test_window_encoding_gives_the_canvas_and_the_same_bytes_in_any_order():
    rng = np.random.default_rng(7)
    cases = [random_window_case(rng) for _ in range(400)]
    first = []
    for window, top, left, size_hw, canvas in cases:  # sizes and windows change every call
        data = encode_png_window(window, top, left, size_hw)
        assert_encodes(data, canvas)
        first.append(data)
        if rng.random() < 0.2:  # a dense encode in between reuses the other buffer
            noise = rng.integers(0, 256, (int(rng.integers(1, 50)), int(rng.integers(1, 50)), 3), np.uint8)
            assert np.array_equal(cv2.imdecode(np.frombuffer(encode_png(noise), np.uint8),
                                               cv2.IMREAD_UNCHANGED)[..., ::-1], noise)
    order = rng.permutation(len(cases))  # leftovers of other calls would change some bytes
    assert [encode_png_window(*cases[i][:4]) for i in order] == [first[i] for i in order]


def test_a_bool_window_is_the_same_file_as_its_0_255_window():
    rng = np.random.default_rng(11)
    for _ in range(200):
        window, top, left, size_hw, _ = random_window_case(rng)
        mask = window != 0
        assert encode_png_window(mask, top, left, size_hw) == \
            encode_png_window(mask.astype(np.uint8) * 255, top, left, size_hw)


def test_adler32_of_blank_rows_and_of_concatenations_match_zlib():
    """The stream's checksum is assembled from its pieces (closed form for blank rows, combined
    with the band's): randomised against zlib.adler32 of the whole bytes, lengths above 65521."""
    rng = np.random.default_rng(5)
    for _ in range(300):
        stride, rows = int(rng.integers(1, 3000)), int(rng.integers(0, 300))
        blank = np.zeros((rows, stride), np.uint8)
        blank[:, 0] = 2
        assert png_module._blank_rows_adler32(stride, rows) == zlib.adler32(blank.tobytes())
        x = rng.integers(0, 256, int(rng.integers(0, 5000)), dtype=np.uint8).tobytes()
        y = rng.integers(0, 256, int(rng.integers(0, 140000)), dtype=np.uint8).tobytes()
        assert png_module._adler32_combine(zlib.adler32(x), zlib.adler32(y), len(y)) == zlib.adler32(x + y)


def test_window_touching_every_edge_and_the_full_canvas():
    for h, w, top, left, wh, ww in [(5, 7, 0, 0, 5, 7), (5, 7, 4, 6, 1, 1), (5, 7, 0, 6, 5, 1),
                                    (1, 1, 0, 0, 1, 1), (6, 4, 3, 0, 3, 4), (9, 3, 0, 0, 0, 0)]:
        window = np.full((wh, ww), 255, np.uint8)
        canvas = np.zeros((h, w), np.uint8)
        canvas[top:top + wh, left:left + ww] = window
        assert_encodes(encode_png_window(window, top, left, (h, w)), canvas)


def test_tall_blank_margins_splice_many_cached_pieces(monkeypatch):
    """Blank rows above and below the band come as power-of-two pieces no larger than
    _PIECE_MAX_BYTES: a small limit makes many pieces, still one valid stream."""
    monkeypatch.setattr(png_module, "_PIECE_MAX_BYTES", 64)
    for backend in [b for b in DEFLATE_BACKENDS if DEFLATE_BACKENDS[b].compress_band is not None]:
        canvas = np.zeros((1000, 20), np.uint8)
        canvas[617:620, 3:9] = 255
        data = encode_png_window(canvas[617:620, 3:9], 617, 3, (1000, 20), deflate=backend)
        assert_encodes(data, canvas)


@pytest.mark.skipif("isal" not in DEFLATE_BACKENDS, reason="ISA-L not installed")
def test_backends_without_band_compression_encode_the_whole_canvas():
    rng = np.random.default_rng(5)
    for _ in range(50):
        window, top, left, size_hw, canvas = random_window_case(rng)
        assert encode_png_window(window, top, left, size_hw, deflate="isal") == encode_png(canvas, deflate="isal")


def test_buffers_above_the_scratch_limit_are_not_kept(monkeypatch):
    rng = np.random.default_rng(3)
    cases = [random_window_case(rng) for _ in range(30)]
    kept = [encode_png_window(*c[:4]) for c in cases]
    monkeypatch.setattr(png_module, "_SCRATCH_MAX_BYTES", 10)
    assert [encode_png_window(*c[:4]) for c in cases] == kept


def test_threads_encode_concurrently_without_sharing_buffers():
    rng = np.random.default_rng(11)
    cases = [random_window_case(rng) for _ in range(60)]
    expected = [encode_png_window(*c[:4]) for c in cases]
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
    ((np.zeros((2, 2), np.int16), 0, 0, (4, 4)), TypeError, "2-D uint8 or bool window"),
    ((np.zeros((2, 2, 1), np.uint8), 0, 0, (4, 4)), TypeError, "2-D uint8 or bool window"),
    ((np.zeros((2, 2), np.uint8), 3, 0, (4, 4)), ValueError, "not inside the 4x4 canvas"),
    ((np.zeros((2, 2), np.uint8), 0, -1, (4, 4)), ValueError, "not inside"),
    ((np.zeros((1, 1), np.uint8), 0, 0, (0, 4)), ValueError, "1 <= H, W"),
])
def test_bad_windows_are_refused_with_what_was_expected(args, error, text):
    with pytest.raises(error, match=text):
        encode_png_window(*args)
    # a refused call leaves the buffers clean
    assert_encodes(encode_png_window(np.full((1, 1), 9, np.uint8), 1, 1, (3, 3)),
                   np.pad(np.full((1, 1), 9, np.uint8), 1))
