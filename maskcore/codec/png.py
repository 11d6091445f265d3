"""PNG container: a fast writer for masks and previews, and a strict reader of PNG structure.

Conventions:
- Arrays are row-major, origin at the top-left pixel, shape (H, W) grey, (H, W, 3) RGB or
  (H, W, 4) RGBA, dtype uint8; channel order R, G, B(, A). No colour management: no gAMA, sRGB
  or iCCP chunks are written, and none are applied when reading.
- Written files are 8-bit, non-interlaced, one IHDR, one PLTE (paletted only), IDAT, IEND. Every
  scanline uses filter 2 (Up), vectorised: measured smallest at equal time among None/Sub/Up for
  class masks, colour masks and photo previews (Paeth: a few % smaller, 4-30x slower). Single
  0/255 object masks would be smaller with None (1.3 KB vs 3-6 KB per 1024x1024); one rule kept.
- Deflate: zlib-ng level 1 when installed (a runtime dependency), else stdlib zlib (ISA-L, the
  ``isal`` test extra, is a backend for benchmarks and tests only, below). zlib-ng and zlib use the
  RLE strategy for one-channel images, which they filter and deflate a band of rows at a time
  (the same stream as one call). Output bytes are a pure function of the pixels and the
  backend (no timestamps, no text chunks); pixels decode identically with any backend. ISA-L is not
  the default although it is faster: its level-1 stream for the same bytes was seen to differ
  between long-lived worker processes (two valid streams for one 6x7 mask, about one run in five of
  tests/hostile/test_hostile_names.py; not reproduced in a fresh process), which breaks "same
  inputs, same bytes". Seen again in session 5 (issue 18) with ISA-L as the colour-PNG default: in
  each of two full-suite runs one export's RGB PNG differed from another export of the same pixels
  (tests/io/test_s3.py, semantic mask; tests/layouts/test_crop_every_layout.py, isahit), although 0
  of 4200 isolated stress compressions differed. ISA-L would halve the preview's deflate
  (BENCHMARKS.md "Issue 18"). Session 6 logged every deflate call of a full-suite run with ISA-L for
  all PNGs: the backend was ISA-L in every process (not a selection difference), and one 24-byte
  input gave two valid streams in two long-lived processes, each process consistent with itself; the
  case and what was ruled out: benchmarks/isal_two_streams.py.
- Photos (the human preview, ``encode_png_photo``): fpng when installed (its own Up filter and
  deflate, 3.4x faster at +5 % bytes on the facade previews, deterministic), else ``encode_png``.
- Reading (``read_png``) follows libpng's acceptance rules as OpenCV uses them: a bad CRC or an
  unknown critical chunk is an error, a bad ancillary chunk is skipped, missing IEND (a truncated
  file) is an error, data after IEND is ignored.
"""

from __future__ import annotations

import functools
import struct
import threading
import zlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..errors import ImageDecodeError

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_MAX_CHUNK = 2**31 - 1  # PNG limit on a chunk's length
_MAX_SIDE = 2**31 - 1   # PNG limit on width and height
_COLOR_TYPE_BY_CHANNELS = {1: 0, 3: 2, 4: 6}
_CHANNELS_BY_COLOR_TYPE = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
_DEPTHS_BY_COLOR_TYPE = {0: (1, 2, 4, 8, 16), 2: (8, 16), 3: (1, 2, 4, 8), 4: (8, 16), 6: (8, 16)}


# ---------------------------------------------------------------------------------------------
# Deflate backends: one table, filled with the libraries that import.


@dataclass(frozen=True)
class _Deflate:
    compress: Callable[[memoryview, int], bytes]  # (filtered scanlines, channels) -> zlib stream
    crc32: Callable[..., int]
    # (filtered (H, stride) grey scanlines, first, end) -> zlib stream, for scanlines that are
    # [2, 0, ..., 0] outside rows first..end-1; None: the backend compresses every row
    compress_band: Callable[[np.ndarray, int, int], bytes] | None = None
    # ((H, W) unfiltered one-channel rows) -> the zlib stream of their Up-filtered scanlines, the
    # same bytes as ``compress`` of them; None: filter every row first, then ``compress``
    filter_compress_grey: Callable[[np.ndarray], bytes] | None = None


_ZLIB_HEADER = b"\x78\x01"          # deflate, 32 KiB window, "fastest" level
_FINAL_EMPTY_BLOCK = b"\x03\x00"    # BFINAL=1, fixed Huffman codes, end of block
_PIECE_MAX_BYTES = 2**24            # largest run of blank rows compressed (and cached) at once
_BAND_BYTES = 2**18                 # filtered bytes per band of filter_compress_grey (fits in L2)


def _zlib_like(module) -> _Deflate:
    def compress(data: memoryview, channels: int) -> bytes:
        if channels == 1:  # long runs of one byte: RLE matches them as well as full LZ77, faster
            obj = module.compressobj(1, module.DEFLATED, 15, 8, module.Z_RLE)
            return obj.compress(data) + obj.flush()
        return module.compress(data, 1)

    def raw_flushed(data) -> bytes:
        """Raw deflate blocks of ``data`` ending byte-aligned, with no reference to other data
        (Z_FULL_FLUSH): such pieces concatenate into one valid stream."""
        obj = module.compressobj(1, module.DEFLATED, -15, 8, module.Z_RLE)
        return obj.compress(data) + obj.flush(module.Z_FULL_FLUSH)

    @functools.lru_cache(maxsize=256)
    def blank_rows(stride: int, rows: int) -> bytes:
        blank = np.zeros((rows, stride), np.uint8)
        blank[:, 0] = 2
        return raw_flushed(memoryview(blank).cast("B"))

    def blank_pieces(stride: int, rows: int) -> list[bytes]:
        """``rows`` blank Up-filtered rows as cached pieces of power-of-two row counts."""
        most = max(1, 1 << ((_PIECE_MAX_BYTES // stride).bit_length() - 1))
        out = []
        while rows:
            n = min(most, 1 << (rows.bit_length() - 1))
            out.append(blank_rows(stride, n))
            rows -= n
        return out

    def compress_band(filtered: np.ndarray, first: int, end: int) -> bytes:
        height, stride = filtered.shape
        parts = [_ZLIB_HEADER, *blank_pieces(stride, first)]
        adler = _blank_rows_adler32(stride, first)
        if end > first:
            band = memoryview(filtered[first:end]).cast("B")
            parts.append(raw_flushed(band))
            adler = _adler32_combine(adler, module.adler32(band), len(band))
        parts += blank_pieces(stride, height - end)
        adler = _adler32_combine(adler, _blank_rows_adler32(stride, height - end), (height - end) * stride)
        parts += [_FINAL_EMPTY_BLOCK, struct.pack(">I", adler)]
        return b"".join(parts)

    def filter_compress_grey(rows: np.ndarray) -> bytes:
        """Up-filter and deflate (level 1, RLE) one-channel rows a band of ``_BAND_BYTES`` at a
        time: each band is deflated while it is in cache (a 1024x1024 machine mask measured
        0.50 -> 0.42-0.47 ms, the deflate alone 0.42). The stream is the one ``compress`` gives
        for all the filtered rows at once: RLE matches only start with more than 258 bytes ahead
        (or at the final flush), so where the input is cut changes nothing (tested)."""
        height, width = rows.shape
        step = max(1, _BAND_BYTES // (width + 1))
        obj = module.compressobj(1, module.DEFLATED, 15, 8, module.Z_RLE)
        parts = []
        with _scanlines(min(step, height), width + 1, zeroed=False) as band:
            for top in range(0, height, step):
                part = band[:min(step, height - top)]
                if top == 0:
                    part[0, 1:] = rows[0]
                    np.subtract(rows[1:len(part)], rows[:len(part) - 1], out=part[1:, 1:])
                else:
                    np.subtract(rows[top:top + len(part)], rows[top - 1:top + len(part) - 1], out=part[:, 1:])
                parts.append(obj.compress(memoryview(part).cast("B")))
        parts.append(obj.flush())
        return b"".join(parts)

    return _Deflate(compress, module.crc32, compress_band, filter_compress_grey)


_ADLER_BASE = 65521


def _blank_rows_adler32(stride: int, rows: int) -> int:
    """Adler-32 of ``rows`` blank Up-filtered scanlines ``[2, 0, ..., 0]`` of ``stride`` bytes,
    in closed form: after row k (0-based) A = 1 + 2 (k + 1), held for the row's ``stride`` bytes,
    so A = 1 + 2 rows and B = sum_k stride (2 k + 3) = stride * rows * (rows + 2) (RFC 1950)."""
    return (((stride * rows * (rows + 2)) % _ADLER_BASE) << 16) | ((1 + 2 * rows) % _ADLER_BASE)


def _adler32_combine(adler_x: int, adler_y: int, len_y: int) -> int:
    """Adler-32 of X followed by Y from the two checksums and Y's length: with S = A - 1 (the byte
    sum), A_xy = A_x + S_y and B_xy = B_x + len_y (A_x - 1) + B_y, each mod 65521 (RFC 1950)."""
    a_x, b_x, a_y, b_y = adler_x & 0xFFFF, adler_x >> 16, adler_y & 0xFFFF, adler_y >> 16
    a = (a_x + a_y - 1) % _ADLER_BASE
    b = (b_x + len_y * (a_x - 1) + b_y) % _ADLER_BASE
    return (b << 16) | a


DEFLATE_BACKENDS: dict[str, _Deflate] = {}

try:
    from isal import isal_zlib as _isal

    def _isal_compress(data: memoryview, channels: int) -> bytes:
        out = _isal.compress(data, 1)
        _clear_wide_simd_state()
        return out

    DEFLATE_BACKENDS["isal"] = _Deflate(_isal_compress, _isal.crc32)
except ImportError:  # optional: the next backend is used
    pass

try:
    from zlib_ng import zlib_ng as _zlib_ng

    DEFLATE_BACKENDS["zlib-ng"] = _zlib_like(_zlib_ng)
except ImportError:  # optional: the next backend is used
    pass

DEFLATE_BACKENDS["zlib"] = _zlib_like(zlib)
DEFAULT_DEFLATE = "zlib-ng" if "zlib-ng" in DEFLATE_BACKENDS else "zlib"   # never ISA-L: see the module docstring


def _clear_wide_simd_state() -> None:
    # ISA-L can leave the upper AVX-512 register state dirty; until a VZEROUPPER runs, other
    # SIMD code in this thread (OpenCV, Pillow) was measured 1.9-2.7x slower. A tiny numpy
    # reduction runs one.
    np.add.reduce(np.ones(16, np.float32))


# ---------------------------------------------------------------------------------------------
# Writing


def encode_png(
    pixels: np.ndarray, *, palette: np.ndarray | None = None, deflate: str | None = None
) -> bytes:
    """Encode a uint8 image as PNG bytes.

    ``pixels``: (H, W) grey, (H, W, 3) RGB or (H, W, 4) RGBA, uint8. With ``palette`` (an (N, 3)
    uint8 array, 1 <= N <= 256), ``pixels`` is (H, W) of indices < N and the file is paletted.
    ``deflate`` names a backend in ``DEFLATE_BACKENDS`` (default ``DEFAULT_DEFLATE``).
    """
    rows, channels, color_type = _validate_pixels(pixels, palette)
    height, width = rows.shape
    backend = _backend(deflate)
    if channels == 1 and backend.filter_compress_grey is not None:
        stream = backend.filter_compress_grey(rows)
        return png_file(stream, pixels.shape[:2], color_type, palette=palette, crc32=backend.crc32)
    with _scanlines(height, width + 1, zeroed=False) as filtered:
        _filter_up(rows, out=filtered)
        stream = backend.compress(memoryview(filtered).cast("B"), channels)
        del filtered  # a large buffer (not kept for reuse) is freed before the file is assembled
    return png_file(stream, pixels.shape[:2], color_type, palette=palette, crc32=backend.crc32)


try:  # fpng (Rich Geldreich's, Unlicense) through the ``fpng`` package: photo PNGs only
    from fpng import fpng_ext as _fpng
except ImportError:  # optional: encode_png_photo falls back to encode_png
    _fpng = None

FPNG_MAX_SIDE = 1 << 24
"""fpng's own limit on width and height (``FPNG_MAX_SUPPORTED_DIM``)."""


def encode_png_photo(pixels: np.ndarray) -> bytes:
    """An RGB(A) photo-like image (the human preview) as PNG: fpng when installed, else
    ``encode_png`` (same pixels either way; bytes are a function of the pixels and of which
    encoder is installed).

    fpng filters every row but the first with Up and deflates runs of equal pixels with its own
    Huffman tables: on the facade previews (2048x1024) 3.4x faster than Up + zlib-ng level 1 at
    +5 % bytes (``benchmarks/preview_png_bench.py``). It works from the pixels alone (no hash
    table, no threads): the same pixels give the same bytes in every process
    (tests/codec/test_png.py). Images fpng refuses (other shapes, sides above 2**24) go to
    ``encode_png``.
    """
    if (_fpng is None or not isinstance(pixels, np.ndarray) or pixels.dtype != np.uint8
            or pixels.ndim != 3 or pixels.shape[2] not in (3, 4) or 0 in pixels.shape
            or max(pixels.shape[:2]) > FPNG_MAX_SIDE):
        return encode_png(pixels)
    return bytes(_fpng.encode_ndarray(np.ascontiguousarray(pixels)))


def encode_png_window(window: np.ndarray, top: int, left: int, size_hw: tuple[int, int], *,
                      deflate: str | None = None) -> bytes:
    """The PNG of a grey (H, W) ``canvas`` that is 0 everywhere except
    ``canvas[top:top + h, left:left + w] = window``, without building the canvas: the same pixels
    as ``encode_png(canvas)``, and for a given backend always the same bytes. A ``bool`` window
    stands for 0/255 (an object mask): its scanlines are filtered from the 0/1 bytes directly
    (255 x is -x modulo 256), without building the 0/255 window.

    Up-filtered scanlines of such a canvas are zero outside the window's rows, plus one row
    below it (``-window[-1]``): only those are written, into scanlines kept zero between calls
    (one object mask of 1024x1024 measured 0.26 -> 0.1 ms; a fresh 1 MB canvas and filter
    buffer per mask cost page faults). With zlib-ng or zlib only that band of rows is
    compressed: the blank rows above and below are deflate pieces cached per row length and
    power-of-two row count, each ending in a full flush, spliced around the band's own piece
    (the stream's adler32 covers every row). Deflating the whole 1 MB of a 1024x1024 mask cost
    ~0.3 ms per object mask whatever its size.
    """
    if not isinstance(window, np.ndarray) or window.dtype not in (np.uint8, np.bool_) or window.ndim != 2:
        raise TypeError(f"encode_png_window: expected a 2-D uint8 or bool window, got "
                        f"{getattr(window, 'dtype', type(window).__name__)} {getattr(window, 'shape', '')}")
    height, width = (int(v) for v in size_hw)
    if not (1 <= height <= _MAX_SIDE and 1 <= width <= _MAX_SIDE):
        raise ValueError(f"encode_png_window: expected 1 <= H, W <= {_MAX_SIDE}, got {size_hw}")
    wh, ww = window.shape
    if window.size and not (0 <= top and 0 <= left and top + wh <= height and left + ww <= width):
        raise ValueError(f"encode_png_window: window {ww}x{wh} (WxH) at row {top}, column {left} "
                         f"is not inside the {width}x{height} canvas")
    backend = _backend(deflate)
    with _scanlines(height, width + 1, zeroed=True) as filtered:
        try:
            if window.size:
                _filter_window_up(window, filtered[top:top + wh + 1, 1 + left:1 + left + ww], top + wh < height)
            if backend.compress_band is None:
                stream = backend.compress(memoryview(filtered).cast("B"), 1)
            else:
                first, end = (top, min(top + wh + 1, height)) if window.size else (0, 0)
                stream = backend.compress_band(filtered, first, end)
            return png_file(stream, (height, width), 0, crc32=backend.crc32)
        finally:
            if window.size:
                filtered[top:top + wh + 1, 1 + left:1 + left + ww].fill(0)


def _filter_window_up(window: np.ndarray, out: np.ndarray, below: bool) -> None:
    """Up-filtered rows of ``window`` on a zero canvas into ``out`` (the window's rows, plus the
    row below it when ``below``): the first row as it is, then row differences, then the last row
    negated. A bool window is 0/255: 255 a = -a modulo 256, so its rows are the negated 0/1 rows,
    the differences ``previous - current`` and the row below the last row itself."""
    if window.dtype == np.bool_:
        ones = window.view(np.uint8)
        np.negative(ones[0], out=out[0])
        np.subtract(ones[:-1], ones[1:], out=out[1:len(ones)])
        if below:
            out[len(ones)] = ones[-1]
        return
    out[0] = window[0]
    np.subtract(window[1:], window[:-1], out=out[1:len(window)])
    if below:
        np.negative(window[-1], out=out[len(window)])


_SCRATCH_MAX_BYTES = 2**26
_scratch = threading.local()


class _scanlines:
    """A (height, stride) uint8 buffer for filtered scanlines with column 0 set to 2 (Up).

    Up to ``_SCRATCH_MAX_BYTES`` it is one buffer per thread and kind, reused from call to call:
    touching a fresh multi-MB allocation costs a page fault per 4 KiB (measured ~2.5 ms per
    3 MB here). ``zeroed=True`` gives a buffer whose other bytes are 0 on entry: its user must
    zero what it wrote before leaving; ``zeroed=False`` promises nothing (the user writes every
    byte)."""

    def __init__(self, height: int, stride: int, *, zeroed: bool) -> None:
        self.shape, self.slot = (height, stride), "zeroed" if zeroed else "dense"
        self.owned = None

    def __enter__(self) -> np.ndarray:
        size = self.shape[0] * self.shape[1]
        if size > _SCRATCH_MAX_BYTES:
            rows = np.zeros(self.shape, np.uint8)
        else:
            buf = getattr(_scratch, self.slot, None)
            if buf is None or buf.size < size:
                buf = np.zeros(max(size, 2**20), np.uint8)
            setattr(_scratch, self.slot, None)  # a nested call gets a buffer of its own
            self.owned = buf
            rows = buf[:size].reshape(self.shape)
        rows[:, 0] = 2
        return rows

    def __exit__(self, *exc) -> None:
        if self.owned is not None:
            if self.slot == "zeroed":
                self.owned[: self.shape[0] * self.shape[1]].reshape(self.shape)[:, 0] = 0
            setattr(_scratch, self.slot, self.owned)


def png_file(stream: bytes, size_hw, color_type: int, *, bit_depth: int = 8,
             palette: np.ndarray | None = None, crc32: Callable[..., int] = zlib.crc32) -> bytes:
    """The PNG file around ``stream``, the zlib stream of its filtered scanlines: signature, IHDR
    (non-interlaced), PLTE when ``palette`` is given, IDAT chunks, IEND. ``crc32`` is any
    implementation (the value is the same)."""
    height, width = size_hw
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    parts = [PNG_SIGNATURE, *_chunk(b"IHDR", ihdr, crc32)]
    if palette is not None:
        parts += _chunk(b"PLTE", np.ascontiguousarray(palette, np.uint8).tobytes(), crc32)
    view = memoryview(stream)
    for start in range(0, max(len(view), 1), _MAX_CHUNK):
        parts += _chunk(b"IDAT", view[start:start + _MAX_CHUNK], crc32)
    parts += _chunk(b"IEND", b"", crc32)
    return b"".join(parts)


def encode_png_lut(index: np.ndarray, lut: np.ndarray, *, deflate: str | None = None) -> bytes:
    """``encode_png(lut[index])`` (the same bytes) without building ``lut[index]``.

    ``index``: (H, W) unsigned integers < len(lut), row- or column-major (see
    ``encode_pngs_lut``); ``lut``: (N, C) uint8 colours, C in 1, 3, 4.
    Index masks are piecewise constant, so the Up-filtered scanlines are zero except where a
    pixel's index differs from the one above: only the first row and those pixels are looked up
    (measured 2.2x faster than ``take`` + filter on a 1024x1024 mask with 2 % changed pixels, and
    no full-size colour image is allocated).
    """
    return encode_pngs_lut(index, [lut], deflate=deflate)[0]


def encode_pngs_lut(index: np.ndarray, luts, *, deflate: str | None = None) -> list[bytes]:
    """``[encode_png_lut(index, lut) for lut in luts]`` (the same bytes), the pixels that differ
    from the one above found once for all of them.

    ``index`` may be column-major (``index.T`` C-contiguous, e.g. the ``.T`` of a canvas painted
    column by column): it is then compared where it lies, column by column, never copied to row
    order (a 1024x1024 transpose costs more than the comparison). The scanlines are written into
    the thread's reused zeroed buffer (``_scanlines``), one PNG after the other, and only the bytes
    written are zeroed again: no multi-MB buffer is allocated and cleared per image.
    """
    luts = [_checked_lut(lut) for lut in luts]
    if not isinstance(index, np.ndarray) or index.ndim != 2 or index.dtype.kind not in "ui":
        raise TypeError(f"encode_png_lut: expected a 2-D integer index array, got "
                        f"{getattr(index, 'dtype', type(index).__name__)} {getattr(index, 'shape', '')}")
    height, width = index.shape
    if 0 in index.shape or max(index.shape) > _MAX_SIDE:
        raise ValueError(f"encode_png_lut: expected 1 <= H, W <= {_MAX_SIDE}, got {index.shape}")
    below, above, row, col = _changed_below(index)
    return _encode_changes(index[0], below, above, row, col, (height, width), luts, deflate)


def encode_pngs_changes(size_hw, first_row, below, above, row, col, luts, *,
                        deflate: str | None = None) -> list[bytes]:
    """``encode_pngs_lut(index, luts)`` (the same bytes) of the (H, W) index given by its row 0,
    ``first_row``, and every pixel below it that differs from the one above: value ``below[i]``
    at ``(row[i], col[i])``, ``above[i]`` above it (e.g. ``kernel.compose.spans_index_changes``),
    each such pixel once, in any order; every other pixel equals the one above it."""
    luts = [_checked_lut(lut) for lut in luts]
    height, width = size_hw
    if not 1 <= height <= _MAX_SIDE or not 1 <= width <= _MAX_SIDE:
        raise ValueError(f"encode_pngs_changes: expected 1 <= H, W <= {_MAX_SIDE}, got {tuple(size_hw)}")
    first_row, below, above, row, col = (np.asarray(a) for a in (first_row, below, above, row, col))
    if first_row.shape != (width,) or not all(a.ndim == 1 and len(a) == len(below) for a in (above, row, col)) \
            or any(a.dtype.kind not in "ui" for a in (first_row, below, above, row, col)):
        raise ValueError(f"encode_pngs_changes: expected a ({width},) integer first row and four integer arrays "
                         f"of one length, got {first_row.shape} and {[a.shape for a in (below, above, row, col)]}")
    if len(row) and (row.min() < 1 or row.max() >= height or col.min() < 0 or col.max() >= width):
        raise ValueError(f"encode_pngs_changes: changed pixels must lie in rows 1..{height - 1} and "
                         f"columns 0..{width - 1}")
    return _encode_changes(first_row, below, above, row, col, (height, width), luts, deflate)


def _encode_changes(first, below, above, row, col, size_hw, luts, deflate) -> list[bytes]:
    """The PNG of each lut (see ``encode_pngs_changes``), after checking the index values."""
    height, width = size_hw
    # every pixel equals the one above it or is listed in ``below``: their range is the index's
    n_colours = min(map(len, luts), default=1)
    if max(first.max(), below.max(initial=0)) >= n_colours or min(first.min(), below.min(initial=0)) < 0:
        raise ValueError(f"encode_png_lut: index values must be in 0..{n_colours - 1}")
    backend = _backend(deflate)
    out: list = [None] * len(luts)
    for channels in dict.fromkeys(lut.shape[1] for lut in luts):   # luts of one width share scanlines
        stride = 1 + channels * width
        # + 1 + k: channel k of each listed pixel (int64: row * stride passes 2**31 on large images)
        at = row.astype(np.int64, copy=False) * stride + channels * col.astype(np.int64, copy=False)
        with _scanlines(height, stride, zeroed=True) as rows:
            channel = [rows.reshape(-1)[1 + k:] for k in range(channels)]   # scattered into by ``at``
            try:   # each lut writes the same bytes (row 0, the listed pixels): none of the last stays
                for i, lut in enumerate(luts):
                    if lut.shape[1] != channels:
                        continue
                    rows[0, 1:] = np.take(lut, first, axis=0).reshape(-1)
                    diff = _lut_difference(lut, below, above)
                    for k in range(channels):   # one 1-D scatter per channel (2x faster than (n, C) indices)
                        channel[k][at] = diff[:, k]
                    stream = backend.compress(memoryview(rows.reshape(-1)), channels)
                    out[i] = png_file(stream, size_hw, _COLOR_TYPE_BY_CHANNELS[channels], crc32=backend.crc32)
            finally:  # the buffer goes back zeroed
                rows[0, 1:] = 0
                for k in range(channels):
                    channel[k][at] = 0
    return out


def _changed_below(index: np.ndarray) -> tuple[np.ndarray, ...]:
    """``(below, above, row, col)`` of every pixel (row >= 1) whose value differs from the one
    above it: its value, the value above, its coordinates; in any order (each pixel once)."""
    height, width = index.shape
    if index.T.flags.c_contiguous and not index.flags.c_contiguous:
        flat = index.T.reshape(-1)   # column by column: flat[x * H + y] = index[y, x]
        changed = np.flatnonzero(flat[1:] != flat[:-1])   # pixel k + 1 differs from pixel k
        col, above_row = np.divmod(changed, height)
        keep = above_row != height - 1   # not across a column's end
        changed, col, above_row = changed[keep], col[keep], above_row[keep]
        return flat[changed + 1], flat[changed], above_row + 1, col
    below_rows, above_rows = index[1:].reshape(-1), index[:-1].reshape(-1)
    changed = np.flatnonzero(below_rows != above_rows)
    row, col = np.divmod(changed, width)
    return below_rows[changed], above_rows[changed], row + 1, col


def _lut_difference(lut: np.ndarray, below: np.ndarray, above: np.ndarray) -> np.ndarray:
    """``lut[below] - lut[above]`` (uint8, modulo 256): colours gathered as one 4-byte word each
    (a 1-D take, ~4x faster than gathering rows of ``lut``)."""
    words = np.zeros((len(lut), 4), np.uint8)
    words[:, :lut.shape[1]] = lut
    words = words.view(np.uint32).reshape(-1)
    diff = np.take(words, below).view(np.uint8).reshape(-1, 4) - np.take(words, above).view(np.uint8).reshape(-1, 4)
    return diff[:, :lut.shape[1]]


def _checked_lut(lut) -> np.ndarray:
    lut = np.asarray(lut)
    if lut.ndim == 1:
        lut = lut[:, None]
    if lut.dtype != np.uint8 or lut.ndim != 2 or lut.shape[1] not in _COLOR_TYPE_BY_CHANNELS or not len(lut):
        raise ValueError(f"encode_png_lut: expected a (N, 1|3|4) uint8 lut, got {lut.dtype} {lut.shape}")
    return lut


def _backend(name: str | None) -> _Deflate:
    name = DEFAULT_DEFLATE if name is None else name
    if name not in DEFLATE_BACKENDS:
        hint = {"isal": "pip install isal", "zlib-ng": "pip install zlib-ng"}.get(name)
        if hint:
            raise ImportError(f"deflate backend {name!r} is not installed: {hint}")
        raise ValueError(f"deflate: expected one of {sorted(DEFLATE_BACKENDS)}, got {name!r}")
    return DEFLATE_BACKENDS[name]


def _validate_pixels(
    pixels: np.ndarray, palette: np.ndarray | None
) -> tuple[np.ndarray, int, int]:
    """Return (rows (H, W*C) view or copy, channels, PNG colour type)."""
    if not isinstance(pixels, np.ndarray) or pixels.dtype != np.uint8:
        got = pixels.dtype if isinstance(pixels, np.ndarray) else type(pixels).__name__
        raise TypeError(f"encode_png: expected a uint8 numpy array, got {got}")
    channels = 1 if pixels.ndim == 2 else (pixels.shape[2] if pixels.ndim == 3 else 0)
    if channels not in _COLOR_TYPE_BY_CHANNELS or 0 in pixels.shape[:2]:
        raise ValueError(
            "encode_png: expected shape (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) with H, W >= 1,"
            f" got {pixels.shape}"
        )
    if max(pixels.shape[:2]) > _MAX_SIDE:
        raise ValueError(f"encode_png: PNG sides are at most {_MAX_SIDE}, got {pixels.shape[:2]}")
    color_type = _COLOR_TYPE_BY_CHANNELS[channels]
    if palette is not None:
        _validate_palette(pixels, palette, channels)
        color_type = 3
    return pixels.reshape(pixels.shape[0], -1), channels, color_type


def _validate_palette(pixels: np.ndarray, palette: np.ndarray, channels: int) -> None:
    palette = np.asarray(palette)
    if palette.ndim != 2 or palette.shape[1] != 3 or not 1 <= palette.shape[0] <= 256:
        raise ValueError(f"encode_png: expected a palette of shape (N<=256, 3), got {palette.shape}")
    if palette.dtype != np.uint8:
        raise TypeError(f"encode_png: expected a uint8 palette, got {palette.dtype}")
    if channels != 1:
        raise ValueError(f"encode_png: a paletted image takes (H, W) indices, got {pixels.shape}")
    top = int(pixels.max())
    if top >= palette.shape[0]:
        raise ValueError(f"encode_png: index {top} is outside a palette of {palette.shape[0]} colours")


def _filter_up(rows: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """PNG scanlines with filter type 2 (Up): each row minus the row above, modulo 256."""
    height, width = rows.shape
    out = np.empty((height, width + 1), np.uint8) if out is None else out
    out[:, 0] = 2
    out[0, 1:] = rows[0]
    np.subtract(rows[1:], rows[:-1], out=out[1:, 1:])
    return out


def _chunk(tag: bytes, body, crc32: Callable[..., int]) -> list:
    crc = crc32(body, crc32(tag)) & 0xFFFFFFFF
    return [struct.pack(">I", len(body)) + tag, body, struct.pack(">I", crc)]


# ---------------------------------------------------------------------------------------------
# Reading


@dataclass(frozen=True)
class PngHeader:
    """The IHDR fields."""

    width: int
    height: int
    bit_depth: int
    color_type: int
    interlaced: bool


@dataclass(frozen=True)
class PngFile:
    """A PNG split into what decoding needs. ``exif`` is the first valid eXIf payload or b""."""

    header: PngHeader
    palette: bytes
    idat: bytes
    exif: bytes


def png_declared_size_wh(data: bytes) -> tuple[int, int]:
    """(width, height) as the IHDR declares them, read from the first 24 bytes with nothing else
    checked: a bound to test before anything is inflated or decoded (``read_png_header`` checks
    the whole IHDR). ``ImageDecodeError`` when the data does not start with a signature and an
    IHDR chunk."""
    if data[:8] != PNG_SIGNATURE:
        raise ImageDecodeError("not a PNG file: bad signature")
    if len(data) < 24 or data[12:16] != b"IHDR":
        raise ImageDecodeError("bad PNG: expected an IHDR chunk first, got a truncated or malformed header")
    return struct.unpack_from(">II", data, 16)


def chunk_crc_ok(tag: bytes, body, crc: int, crc32: Callable[..., int] = zlib.crc32) -> bool:
    """Whether ``crc`` (as stored after the chunk) is the CRC of ``tag`` and ``body``."""
    return crc32(body, crc32(tag)) & 0xFFFFFFFF == crc


def read_png_header(data: bytes) -> PngHeader:
    """Parse and check the signature and IHDR (the first 33 bytes); no pixel data is read."""
    if data[:8] != PNG_SIGNATURE:
        raise ImageDecodeError("not a PNG file: bad signature")
    if len(data) < 33:
        raise ImageDecodeError(f"truncated PNG: expected at least 33 bytes, got {len(data)}")
    length, tag = struct.unpack_from(">I4s", data, 8)
    if tag != b"IHDR" or length != 13:
        raise ImageDecodeError(f"bad PNG: expected a 13-byte IHDR first, got {tag!r} of {length}")
    if zlib.crc32(data[12:29]) != struct.unpack_from(">I", data, 29)[0]:
        raise ImageDecodeError("bad PNG: IHDR CRC mismatch")
    width, height, depth, ctype, compression, filtering, interlace = struct.unpack_from(
        ">IIBBBBB", data, 16
    )
    if not (0 < width <= _MAX_SIDE and 0 < height <= _MAX_SIDE):
        raise ImageDecodeError(f"bad PNG: image size {width}x{height}")
    if depth not in _DEPTHS_BY_COLOR_TYPE.get(ctype, ()):
        raise ImageDecodeError(f"bad PNG: colour type {ctype} with bit depth {depth}")
    if compression or filtering or interlace > 1:
        raise ImageDecodeError(
            f"bad PNG: expected compression 0, filter 0, interlace 0/1, got "
            f"{compression}, {filtering}, {interlace}"
        )
    return PngHeader(width, height, depth, ctype, bool(interlace))


def iter_png_chunks(data: bytes, start: int = 33):
    """Yield (tag, body memoryview, stored CRC) for each chunk from byte ``start`` (33: after
    IHDR; 8: IHDR included) up to IEND included; CRCs are the caller's to check
    (``chunk_crc_ok``), after its own policy. The one chunk walker of the package.

    Raises ImageDecodeError when a chunk runs past the end of ``data`` or IEND never comes.
    """
    view = memoryview(data)
    pos = start
    while True:
        if pos + 12 > len(data):
            raise ImageDecodeError(f"truncated PNG: no IEND chunk (file ends at byte {len(data)})")
        length, tag = struct.unpack_from(">I4s", data, pos)
        end = pos + 12 + length
        if length > 2**31 - 1 or end > len(data):
            raise ImageDecodeError(
                f"truncated PNG: chunk {tag!r} at byte {pos} needs {length} bytes, file ends at "
                f"{len(data)}"
            )
        body = view[pos + 8:end - 4]
        crc = struct.unpack_from(">I", data, end - 4)[0]
        yield tag, body, crc
        if tag == b"IEND":
            return
        pos = end


def read_png(data: bytes, crc32: Callable[..., int] | None = None) -> PngFile:
    """Walk every chunk of a PNG, checking CRCs, and collect the palette, IDAT data and eXIf."""
    crc32 = crc32 or DEFLATE_BACKENDS[DEFAULT_DEFLATE].crc32
    header = read_png_header(data)
    palette, exif, idat = b"", b"", []
    for tag, body, crc in iter_png_chunks(data):
        critical = not tag[0] & 0x20
        crc_ok = chunk_crc_ok(tag, body, crc, crc32)
        if tag == b"IEND":  # libpng only warns about a bad IEND CRC
            break
        if critical and not crc_ok:
            raise ImageDecodeError(f"bad PNG: CRC mismatch in chunk {tag.decode('latin-1')!r}")
        if tag == b"IDAT":
            idat.append(body)
        elif tag == b"PLTE":
            palette = _check_palette(bytes(body), header)
        elif tag == b"eXIf" and crc_ok and not exif and bytes(body[:2]) in (b"II", b"MM"):
            exif = bytes(body)
        elif critical:
            raise ImageDecodeError(f"bad PNG: unknown critical chunk {tag.decode('latin-1')!r}")
    if not idat:
        raise ImageDecodeError("bad PNG: no IDAT chunk")
    if header.color_type == 3 and not palette:
        raise ImageDecodeError("bad PNG: paletted image without PLTE")
    return PngFile(header, palette, b"".join(idat), exif)


def _check_palette(body: bytes, header: PngHeader) -> bytes:
    if header.color_type != 3:
        return b""  # allowed as a suggestion in colour images; unused here
    if len(body) % 3 or not 3 <= len(body) <= 768:
        raise ImageDecodeError(f"bad PNG: PLTE of {len(body)} bytes (expected 3..768, multiple of 3)")
    return body


# (colour type, bit depth) -> (Pillow mode, Pillow raw mode) for Pillow's "zip" decoder, which
# undoes the scanline filters and Adam7 interlacing. 16-bit samples keep their high byte, as
# libpng's strip-16 does for OpenCV.
_PILLOW_MODES = {
    (0, 1): ("1", "1"), (0, 2): ("L", "L;2"), (0, 4): ("L", "L;4"), (0, 8): ("L", "L"),
    (0, 16): ("L", "L;16B"), (2, 8): ("RGB", "RGB"), (2, 16): ("RGB", "RGB;16B"),
    (3, 1): ("P", "P;1"), (3, 2): ("P", "P;2"), (3, 4): ("P", "P;4"), (3, 8): ("P", "P"),
    (4, 8): ("LA", "LA"), (4, 16): ("RGBA", "LA;16B"), (6, 8): ("RGB", "RGBX"),
    (6, 16): ("RGB", "RGBX;16B"),
}


def png_to_rgb(png: PngFile) -> np.ndarray:
    """Decode the pixels of a read PNG to a writable RGB uint8 (H, W, 3) array.

    As OpenCV's IMREAD_COLOR: grey is replicated (1/2/4-bit scaled to 0..255), 16-bit keeps the
    high byte, palette indices past the palette are black, alpha and tRNS are dropped without
    compositing.
    """
    from PIL import Image

    h = png.header
    mode, rawmode = _PILLOW_MODES[(h.color_type, h.bit_depth)]
    try:
        image = Image.frombytes(
            mode, (h.width, h.height), png.idat, "zip", rawmode, int(h.interlaced)
        )
    except ValueError as exc:  # "not enough image data" / "cannot decode image data"
        raise ImageDecodeError(f"bad PNG image data: {exc}") from exc
    if mode == "P":
        lut = bytearray(768)  # Pillow's P->RGB is a C lookup, 5x faster than numpy indexing
        lut[: len(png.palette)] = png.palette
        image.putpalette(bytes(lut))
    if mode != "RGB":
        image = image.convert("RGB")  # also the fastest grey -> RGB replication measured
    return np.array(image)
