"""Whole-PNG encoders on the facade previews (2048x1024 RGB, photo | 50 % overlay): CPU ms, bytes.

Issue 18's biggest step is the human preview's PNG. This compares, on the same pixels, what
maskcore writes now (``codec.png.encode_png``: filter Up on every row, zlib-ng level 1), what the
reference writes (``cv2.imencode(".png")`` with OpenCV's defaults, as ``cv2.imwrite`` in the
app's ``sly.image.write``; the IDAT's filter bytes are counted to say which filters it chose),
other zlib-ng settings on the same Up-filtered rows (RLE, FILTERED, level 2; no filter), and,
when importable (never a dependency of maskcore): libdeflate (``imagecodecs.deflate_encode``),
libpng and libspng through ``imagecodecs``, and fpng (``fpng`` package). Every output is decoded
(Pillow) and checked to give the pixels back. CPU time of this thread (robust to other processes
sharing the core), median over photos of the best of ``--repeat``.

Usage: taskset -c 1 python benchmarks/preview_png_bench.py [--photos 8] [--repeat 3]
"""

from __future__ import annotations

import argparse
import io
import time
import zlib

import numpy as np
from codec_bench import make_inputs
from PIL import Image

from maskcore.codec.png import DEFLATE_BACKENDS, _filter_up, encode_png, png_file


def _up_rows(pixels: np.ndarray) -> memoryview:
    height = pixels.shape[0]
    filtered = np.empty((height, pixels[0].size + 1), np.uint8)
    filtered[:, 0] = 2
    _filter_up(pixels.reshape(height, -1), out=filtered)
    return memoryview(filtered).cast("B")


def _plain_rows(pixels: np.ndarray) -> memoryview:
    height = pixels.shape[0]
    rows = np.zeros((height, pixels[0].size + 1), np.uint8)
    rows[:, 1:] = pixels.reshape(height, -1)
    return memoryview(rows).cast("B")


def encoders() -> dict:
    """name -> pixels (H, W, 3) uint8 RGB -> PNG bytes."""
    zng = DEFLATE_BACKENDS.get("zlib-ng")
    out = {"maskcore now (Up, zlib-ng 1)": encode_png}
    if zng is not None:
        from zlib_ng import zlib_ng

        def zng_png(strategy, level=1, rows=_up_rows):
            def encode(pixels):
                obj = zlib_ng.compressobj(level, zlib_ng.DEFLATED, 15, 8, strategy)
                data = rows(pixels)
                return png_file(obj.compress(data) + obj.flush(), pixels.shape[:2], 2, crc32=zlib.crc32)
            return encode
        out["Up, zlib-ng 1 RLE"] = zng_png(zlib_ng.Z_RLE)
        out["Up, zlib-ng 1 FILTERED"] = zng_png(zlib_ng.Z_FILTERED)
        out["Up, zlib-ng 2"] = zng_png(zlib_ng.Z_DEFAULT_STRATEGY, 2)
        out["None, zlib-ng 1"] = zng_png(zlib_ng.Z_DEFAULT_STRATEGY, 1, _plain_rows)
    try:
        import cv2

        def cv2_png(pixels):
            _, buf = cv2.imencode(".png", np.ascontiguousarray(pixels[:, :, ::-1]))
            return buf.tobytes()
        out[f"cv2.imencode defaults (the reference, OpenCV {cv2.__version__})"] = cv2_png
    except ImportError:
        pass
    try:
        import imagecodecs

        def libdeflate(level):
            def encode(pixels):
                stream = imagecodecs.zlib_encode(bytes(_up_rows(pixels)), level=level)
                return png_file(stream, pixels.shape[:2], 2, crc32=zlib.crc32)
            return encode
        out["Up, libdeflate 1 (imagecodecs)"] = libdeflate(1)
        out["libpng level 1 (imagecodecs)"] = lambda p: imagecodecs.png_encode(p, level=1)
        out["libspng level 1 (imagecodecs)"] = lambda p: imagecodecs.spng_encode(p, level=1)
    except ImportError:
        pass
    try:
        import fpng
        out["fpng (fpng package)"] = lambda p: fpng.from_ndarray(np.ascontiguousarray(p))
    except ImportError:
        pass
    return out


def filters_used(png: bytes) -> dict[int, int]:
    """Filter byte -> rows, from the IDAT of a non-interlaced 8-bit RGB PNG."""
    pos, idat = 8, b""
    width = height = 0
    while pos < len(png):
        n = int.from_bytes(png[pos:pos + 4], "big")
        tag = png[pos + 4:pos + 8]
        if tag == b"IHDR":
            width, height = int.from_bytes(png[pos + 8:pos + 12], "big"), int.from_bytes(png[pos + 12:pos + 16], "big")
        elif tag == b"IDAT":
            idat += png[pos + 8:pos + 8 + n]
        pos += 12 + n
    raw = np.frombuffer(zlib.decompress(idat), np.uint8).reshape(height, 1 + 3 * width)
    kinds, counts = np.unique(raw[:, 0], return_counts=True)
    return dict(zip(kinds.tolist(), counts.tolist()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    coders = encoders()
    rows: dict[str, list] = {}
    filters: dict[str, dict] = {}
    for item in make_inputs(args.photos):
        pixels = np.ascontiguousarray(item["preview 2048x1024 RGB"])
        for name, encode in coders.items():
            best = None
            for _ in range(args.repeat):
                t0 = time.thread_time()
                png = encode(pixels)
                dt = time.thread_time() - t0
                best = dt if best is None else min(best, dt)
            back = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
            assert np.array_equal(back, pixels), name
            rows.setdefault(name, []).append((1e3 * best, len(png)))
            filters[name] = filters_used(png)
    print("| encoder | CPU ms (median of photos) | bytes (median) | filters (byte: rows, last photo) |")
    print("|---|---:|---:|---|")
    for name, r in rows.items():
        ms, size = np.median(np.asarray(r, float), axis=0)
        print(f"| {name} | {ms:.2f} | {int(size):,} | {filters[name]} |")


if __name__ == "__main__":
    main()
