"""encode_png vs the independent decoders (Pillow, OpenCV): exact pixels, valid structure, same
bytes for the same pixels, and clear errors. Seeded random cases of every kind and size."""

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from helpers.oracles import oracle
from maskcore.codec import png as png_module
from maskcore.codec.png import DEFAULT_DEFLATE, DEFLATE_BACKENDS, encode_png, encode_png_photo, png_to_rgb, read_png

cv2 = oracle("cv2")

BACKENDS = sorted(DEFLATE_BACKENDS)
SHAPES = {"grey": (), "rgb": (3,), "rgba": (4,)}


def random_image(rng, h, w, extra):
    """Noise, or mask-like blocks of few values (long runs, repeated rows), or a gradient."""
    style = rng.integers(3)
    if style == 0:
        return rng.integers(0, 256, (h, w, *extra), dtype=np.uint8)
    if style == 1:
        values = rng.integers(0, 256, (int(rng.integers(1, 6)), *extra), dtype=np.uint8)
        img = values[np.zeros((h, w), np.intp)]
        for _ in range(int(rng.integers(0, 6))):
            r0, c0 = rng.integers(0, h), rng.integers(0, w)
            rows, cols = slice(r0, r0 + rng.integers(1, h + 1)), slice(c0, c0 + rng.integers(1, w + 1))
            img[rows, cols] = values[rng.integers(len(values))]
        return img
    ramp = (np.add.outer(np.arange(h), np.arange(w)) * int(rng.integers(1, 5))) % 256
    return np.broadcast_to(ramp[..., None] if extra else ramp, (h, w, *extra)).astype(np.uint8)


def pillow_decode(data):
    return np.asarray(Image.open(io.BytesIO(data)))


def cv2_decode(data):
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if img is not None and img.ndim == 3:
        img = img[:, :, [2, 1, 0, 3][: img.shape[2]]]
    return img


def chunks(data):
    """(tag, body) of every chunk; checks each CRC with stdlib zlib."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, out = 8, []
    while pos < len(data):
        length, tag = struct.unpack_from(">I4s", data, pos)
        body = data[pos + 8:pos + 8 + length]
        assert struct.unpack_from(">I", data, pos + 8 + length)[0] == zlib.crc32(tag + body), tag
        out.append((tag, body))
        pos += 12 + length
    return out


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", SHAPES)
def test_round_trip_matches_pillow_and_opencv(backend, kind):
    rng = np.random.default_rng([7, BACKENDS.index(backend), list(SHAPES).index(kind)])
    for case in range(60):
        h, w = (1, 1) if case == 0 else (int(rng.integers(1, 301)), int(rng.integers(1, 501)))
        img = random_image(rng, h, w, SHAPES[kind])
        data = encode_png(img, deflate=backend)
        assert np.array_equal(pillow_decode(data), img), (case, h, w)
        assert np.array_equal(cv2_decode(data), img), (case, h, w)


def test_non_contiguous_input_and_single_channel_axis():
    rng = np.random.default_rng(3)
    base = rng.integers(0, 256, (40, 60, 4), dtype=np.uint8)
    view = base[::2, 5:50:3, :3]  # strided in every axis
    assert np.array_equal(pillow_decode(encode_png(view)), view)
    assert encode_png(view) == encode_png(np.ascontiguousarray(view))
    grey = base[:, :, :1]
    assert np.array_equal(pillow_decode(encode_png(grey)), grey[:, :, 0])


@pytest.mark.parametrize("backend", [b for b in BACKENDS if DEFLATE_BACKENDS[b].filter_compress_grey])
def test_grey_rows_deflated_by_bands_give_the_one_shot_stream(backend, monkeypatch):
    # encode_png filters and deflates one-channel rows a band at a time: wherever the bands are cut,
    # the stream is the one the backend's compress gives for all the filtered rows at once
    rng = np.random.default_rng([23, BACKENDS.index(backend)])
    deflate = DEFLATE_BACKENDS[backend]
    for case in range(60):
        h, w = (1, 1) if case == 0 else (int(rng.integers(1, 400)), int(rng.integers(1, 700)))
        img = random_image(rng, h, w, ())
        monkeypatch.setattr(png_module, "_BAND_BYTES", int(rng.integers(1, 3 * (w + 1) * h + 2)))
        one_shot = deflate.compress(memoryview(png_module._filter_up(img)).cast("B"), 1)
        data = encode_png(img, deflate=backend)
        assert data == png_module.png_file(one_shot, (h, w), 0, crc32=deflate.crc32), (case, h, w)
        assert np.array_equal(pillow_decode(data), img), (case, h, w)
        if case % 10 == 0:   # and paletted indices (one channel too)
            palette = rng.integers(0, 256, (256, 3), dtype=np.uint8)
            assert encode_png(img, palette=palette, deflate=backend) == png_module.png_file(
                one_shot, (h, w), 3, palette=palette, crc32=deflate.crc32)


@pytest.mark.parametrize("backend", BACKENDS)
def test_structure_is_minimal_and_standard(backend):
    rng = np.random.default_rng(11)
    for extra, color_type in (((), 0), ((3,), 2), ((4,), 6)):
        img = random_image(rng, 37, 53, extra)
        parts = chunks(encode_png(img, deflate=backend))
        assert [t for t, _ in parts] == [b"IHDR", b"IDAT", b"IEND"]
        assert struct.unpack(">IIBBBBB", parts[0][1]) == (53, 37, 8, color_type, 0, 0, 0)
        raw = np.frombuffer(zlib.decompress(parts[1][1]), np.uint8)
        rows = raw.reshape(37, -1)
        assert rows.shape[1] == 1 + 53 * max(1, len(extra) and extra[0])
        assert set(rows[:, 0].tolist()) == {2}  # every scanline filtered Up


def test_idat_is_split_at_the_chunk_limit(monkeypatch):
    monkeypatch.setattr(png_module, "_MAX_CHUNK", 97)
    img = np.random.default_rng(5).integers(0, 256, (30, 40, 3), dtype=np.uint8)
    data = encode_png(img)
    idats = [b for t, b in chunks(data) if t == b"IDAT"]
    assert len(idats) > 5 and all(len(b) <= 97 for b in idats)
    assert np.array_equal(pillow_decode(data), img)
    assert np.array_equal(cv2_decode(data), img)


@pytest.mark.parametrize("backend", BACKENDS)
def test_deterministic_bytes(backend):
    rng = np.random.default_rng(13)
    for extra in SHAPES.values():
        img = random_image(rng, 120, 90, extra)
        first = encode_png(img, deflate=backend)
        assert encode_png(img.copy(), deflate=backend) == first
        assert encode_png(img, deflate=backend) == first


def test_default_backend_is_zlib_ng_never_isal():
    # zlib-ng is a runtime dependency; ISA-L (a test extra) wrote two streams for one input
    assert DEFAULT_DEFLATE == "zlib-ng" and "isal" in DEFLATE_BACKENDS


def test_palette_output_decodes_to_the_palette_colours():
    rng = np.random.default_rng(17)
    for _ in range(40):
        n = int(rng.integers(1, 257))
        palette = rng.integers(0, 256, (n, 3), dtype=np.uint8)
        h, w = int(rng.integers(1, 120)), int(rng.integers(1, 160))
        idx = rng.integers(0, n, (h, w), dtype=np.uint8)
        data = encode_png(idx, palette=palette)
        image = Image.open(io.BytesIO(data))
        assert image.mode == "P"
        assert np.array_equal(np.asarray(image), idx)
        assert np.array_equal(np.asarray(image.convert("RGB")), palette[idx])
        bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        assert np.array_equal(bgr[:, :, ::-1], palette[idx])
        assert [t for t, _ in chunks(data)] == [b"IHDR", b"PLTE", b"IDAT", b"IEND"]


@pytest.mark.parametrize(
    "pixels, error",
    [
        (np.zeros((4, 4), np.float32), TypeError),
        (np.zeros((4, 4), bool), TypeError),
        (np.zeros((4, 4), np.uint16), TypeError),
        ([[0, 1]], TypeError),
        (np.zeros((4,), np.uint8), ValueError),
        (np.zeros((4, 4, 2), np.uint8), ValueError),
        (np.zeros((4, 4, 5), np.uint8), ValueError),
        (np.zeros((0, 4), np.uint8), ValueError),
        (np.zeros((4, 0, 3), np.uint8), ValueError),
        (np.zeros((2, 2, 2, 3), np.uint8), ValueError),
    ],
)
def test_bad_pixels_are_refused_with_what_was_expected(pixels, error):
    with pytest.raises(error, match="expected"):
        encode_png(pixels)


def test_bad_palettes_and_backends_are_refused():
    idx = np.array([[0, 1], [2, 3]], np.uint8)
    with pytest.raises(ValueError, match="outside a palette of 3"):
        encode_png(idx, palette=np.zeros((3, 3), np.uint8))
    with pytest.raises(ValueError, match=r"\(N<=256, 3\)"):
        encode_png(idx, palette=np.zeros((257, 3), np.uint8))
    with pytest.raises(ValueError, match=r"\(N<=256, 3\)"):
        encode_png(idx, palette=np.zeros((4, 4), np.uint8))
    with pytest.raises(TypeError, match="uint8 palette"):
        encode_png(idx, palette=np.zeros((4, 3), np.int64))
    with pytest.raises(ValueError, match="indices"):
        encode_png(np.zeros((2, 2, 3), np.uint8), palette=np.zeros((4, 3), np.uint8))
    with pytest.raises(ValueError, match="expected one of"):
        encode_png(idx, deflate="brotli")


@pytest.mark.parametrize("channels", [1, 3, 4])
@pytest.mark.parametrize("seed", range(6))
def test_lut_encoding_is_byte_identical_to_encoding_the_looked_up_image(channels, seed):
    from maskcore.codec.png import encode_png_lut, encode_pngs_lut
    rng = np.random.default_rng(seed)
    h, w = int(rng.integers(1, 70)), int(rng.integers(1, 70))
    n = int(rng.integers(1, 300))
    index = np.zeros((h, w), np.uint16 if n > 256 else np.uint8)
    for _ in range(int(rng.integers(0, 12))):            # piecewise constant, like masks
        y, x = rng.integers(0, h), rng.integers(0, w)
        index[y:y + int(rng.integers(1, h + 1)), x:x + int(rng.integers(1, w + 1))] = rng.integers(0, n)
    if seed % 2:                                          # and some noise
        index[rng.random((h, w)) < 0.1] = rng.integers(0, n)
    lut = rng.integers(0, 256, (n, channels)).astype(np.uint8)
    expected = encode_png(np.take(lut, index, axis=0) if channels > 1 else lut[index, 0])
    assert encode_png_lut(index, lut) == expected
    decoded = np.asarray(Image.open(io.BytesIO(encode_png_lut(index, lut))))
    assert np.array_equal(decoded.reshape(h, w, -1), lut[index].reshape(h, w, -1))
    # several luts at once, and a column-major index read where it lies: the same bytes
    other = rng.integers(0, 256, (n + 3, 4 - channels % 2)).astype(np.uint8)
    by_column = np.asfortranarray(index)
    assert encode_pngs_lut(by_column, [lut, other]) == [expected, encode_png(np.take(other, index, axis=0))]
    assert encode_pngs_lut(index, [other]) == encode_pngs_lut(by_column, [other])


@pytest.mark.parametrize("seed", range(4))
def test_encoding_from_changes_equals_encoding_the_index(seed):
    """``encode_pngs_changes`` of an index's row 0 and changed pixels (in any order) gives the
    bytes of ``encode_pngs_lut`` of the index; what cannot describe an index is refused."""
    from maskcore.codec.png import encode_pngs_changes, encode_pngs_lut
    rng = np.random.default_rng(seed)
    h, w = int(rng.integers(1, 50)), int(rng.integers(1, 50))
    index = np.zeros((h, w), np.int64)
    for _ in range(int(rng.integers(0, 10))):
        y, x = rng.integers(0, h), rng.integers(0, w)
        index[y:y + int(rng.integers(1, h + 1)), x:x + int(rng.integers(1, w + 1))] = rng.integers(0, 20)
    luts = [rng.integers(0, 256, (20, 3)).astype(np.uint8), rng.integers(0, 256, (21, 4)).astype(np.uint8)]
    row, col = np.nonzero(index[1:] != index[:-1])
    row += 1
    shuffle = rng.permutation(len(row))
    row, col = row[shuffle], col[shuffle]
    changes = (index[0], index[row, col], index[row - 1, col], row, col)
    assert encode_pngs_changes((h, w), *changes, luts) == encode_pngs_lut(index.astype(np.uint8), luts)
    if h > 1:
        with pytest.raises(ValueError, match="rows 1"):
            encode_pngs_changes((h, w), index[0], [0], [0], [h], [0], luts)
    with pytest.raises(ValueError, match="index values"):
        encode_pngs_changes((h, w), index[0] + 20, *changes[1:], luts)
    with pytest.raises(ValueError, match="first row"):
        encode_pngs_changes((h, w + 1), *changes, luts)


def test_lut_encoding_refuses_indexes_outside_the_lut():
    from maskcore.codec.png import encode_png_lut
    with pytest.raises(ValueError, match="index values must be in 0..2"):
        encode_png_lut(np.array([[0, 3]], np.uint8), np.zeros((3, 3), np.uint8))
    with pytest.raises(TypeError, match="2-D integer index"):
        encode_png_lut(np.zeros((2, 2), np.float32), np.zeros((3, 3), np.uint8))
    # a value out of range below the first row, where only the changed pixels are looked at
    for index in (np.array([[0, 1], [0, 1], [0, 3], [0, 3]], np.uint8), np.array([[0, 1], [0, -1]], np.int16)):
        for order in ("C", "F"):
            with pytest.raises(ValueError, match="index values must be in 0..2"):
                encode_png_lut(np.asarray(index, order=order), np.zeros((3, 3), np.uint8))


def test_lut_encoding_leaves_its_reused_scanlines_zeroed():
    """The scanlines are a per-thread buffer reused from call to call: what one image wrote (also
    one whose compression failed) never shows in the next, nor in another thread's."""
    from concurrent.futures import ThreadPoolExecutor

    from maskcore.codec import png
    rng = np.random.default_rng(7)
    lut = rng.integers(0, 256, (40, 3)).astype(np.uint8)
    busy = [np.asfortranarray(rng.integers(0, 40, (30, 20)).astype(np.uint8)) for _ in range(8)]
    blank = np.zeros((30, 20), np.uint8)
    expected_blank = encode_png(np.take(lut, blank, axis=0))
    expected = [encode_png(np.take(lut, index, axis=0)) for index in busy]
    for index in busy:
        png.encode_png_lut(index, lut)
        assert png.encode_png_lut(blank, lut) == expected_blank
    with ThreadPoolExecutor(4) as pool:
        for _ in range(5):
            assert list(pool.map(lambda index: png.encode_png_lut(index, lut), busy)) == expected

    def failing(data, channels):
        raise MemoryError("compress failed")
    backend = png.DEFLATE_BACKENDS[png.DEFAULT_DEFLATE]
    png.DEFLATE_BACKENDS["failing"] = png._Deflate(failing, backend.crc32)
    try:
        with pytest.raises(MemoryError):
            png.encode_png_lut(busy[0], lut, deflate="failing")
    finally:
        del png.DEFLATE_BACKENDS["failing"]
    assert png.encode_png_lut(blank, lut) == expected_blank


def _digests_after_heap_pollution(seed: int) -> list[str]:
    """sha256 of every backend's PNG of fixed images, computed in a fresh process whose heap was
    first filled and freed in a seed-dependent pattern, with 4 threads encoding at once (a Dask
    worker's situation). Module-level: the spawned process imports it."""
    import hashlib
    import os
    import random
    from concurrent.futures import ThreadPoolExecutor

    rng = random.Random(seed)
    junk = [os.urandom(rng.randint(1_000, 2_000_000)) for _ in range(24)]
    del junk[::2]
    images = [random_image(np.random.default_rng(k), 300 + 17 * k, 257, SHAPES[kind])
              for k, kind in enumerate(("grey", "rgb", "rgba", "grey", "rgb", "grey"))]
    jobs = [(b, i) for b in BACKENDS for i in range(len(images))] * 2
    photos = [photo_like(np.random.default_rng(k), 200 + 31 * k, 301 + 7 * k) for k in range(4)] * 2
    with ThreadPoolExecutor(4) as pool:
        pngs = list(pool.map(lambda job: encode_png(images[job[1]], deflate=job[0]), jobs))
        pngs += list(pool.map(encode_png_photo, photos))   # the preview's encoder (fpng)
    return [hashlib.sha256(png).hexdigest() for png in pngs]


def photo_like(rng, h: int, w: int) -> np.ndarray:
    """A smooth gradient with noise and flat patches: runs and literals, like a preview."""
    y, x = np.mgrid[0:h, 0:w]
    img = np.stack([(x * 255 // w), (y * 255 // h), ((x + y) % 256)], axis=-1).astype(np.int16)
    img += rng.integers(-6, 7, img.shape)
    img[h // 3: h // 2, w // 4: w // 2] = rng.integers(0, 256, 3)
    return np.clip(img, 0, 255).astype(np.uint8)


def test_the_photo_encoder_gives_the_pixels_back_and_falls_back_on_what_it_refuses():
    """``encode_png_photo`` (fpng when installed): decoded by Pillow and by ``read_png``, the
    same pixels, RGB and RGBA, odd sizes; grey or empty images go to ``encode_png``."""
    from maskcore.codec.png import _fpng
    rng = np.random.default_rng(7)
    for h, w, c in [(1, 1, 3), (3, 1, 4), (257, 129, 3), (64, 1000, 4)]:
        pixels = photo_like(rng, h, w) if c == 3 else rng.integers(0, 256, (h, w, c), dtype=np.uint8)
        png = encode_png_photo(pixels[:, ::-1])   # a non-contiguous view too
        assert np.array_equal(np.asarray(Image.open(io.BytesIO(png))), pixels[:, ::-1])
        assert np.array_equal(png_to_rgb(read_png(png)).reshape(h, w, -1)[..., :3], pixels[:, ::-1, :3])
        assert (png == encode_png(pixels[:, ::-1])) == (_fpng is None)
    grey = rng.integers(0, 256, (5, 7), dtype=np.uint8)
    assert encode_png_photo(grey) == encode_png(grey)


def test_every_deflate_backend_gives_the_same_bytes_in_every_process_and_thread():
    """Same pixels, same PNG bytes in processes whose heaps differ and under concurrent threads, for
    every installed backend. Necessary, not sufficient: ISA-L passes this, yet gave different bytes
    for the same pixels inside the full suite's long-lived workers (session 5, BENCHMARKS.md "Issue 18
    (session 5)"), which is why the default stays zlib-ng."""
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(2) as pool:
        runs = pool.map(_digests_after_heap_pollution, range(4))
    runs.append(_digests_after_heap_pollution(99))
    assert all(run == runs[0] for run in runs)
