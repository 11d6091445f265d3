"""Decode image files to the RGB pixels the Supervisely SDK sees.

Reference: ``supervisely.image.read(path)`` is ``cv2.imread(path, IMREAD_COLOR)`` then BGR->RGB.
This module gives the same pixels without OpenCV:

- Output: a writable, C-contiguous uint8 array (H, W, 3), channel order R, G, B, row 0 at the top,
  after the EXIF orientation is applied (so H, W may be swapped against the stored header).
- JPEG: libjpeg-turbo with accurate DCT and fancy upsampling, through ``simplejpeg`` when it is
  installed (faster, and it decodes slightly corrupt scans exactly as OpenCV does) else Pillow.
  Grey is replicated; CMYK/YCCK use OpenCV's formula ``c' = k - ((255 - c) * k >> 8)`` on the raw
  (Adobe-inverted) samples. A scan without a following EOI marker is a truncated file and is
  refused, as OpenCV 4.14 refuses files cut inside the scan data. (OpenCV may still accept a file
  missing only its last byte or two; we do not.)
- PNG: see ``png.py``: grey replicated, 16-bit keeps the high byte, alpha/tRNS dropped (no
  compositing), palette indices past PLTE are black, CRC and structure checked like libpng.
- EXIF orientation (tag 0x0112 of IFD0, values 2..8) is read like OpenCV does: from the first
  APP1 starting ``Exif\\0\\0`` (JPEG) or the first valid eXIf chunk (PNG, even after IDAT);
  ImageMagick "Raw profile" text chunks are ignored.
- BMP, WebP and TIFF go through Pillow's ``convert("RGB")`` without orientation:
  best effort, pixel identity with OpenCV is tested for JPEG and PNG only.
- Sizes are checked from the header before any pixel is decoded.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass

import numpy as np

from ..errors import ImageDecodeError, ItemError, LimitError
from ..limits import MAX_PIXELS
from .png import PNG_SIGNATURE, chunk_crc_ok, iter_png_chunks, png_to_rgb, read_png, read_png_header

try:
    import simplejpeg
except ImportError:  # optional accelerator: Pillow decodes the same pixels, ~1.5x slower
    simplejpeg = None

_JPEG_SOF = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
_JPEG_STANDALONE = frozenset({0x01, 0xD8, *range(0xD0, 0xD8)})
_PILLOW_FORMATS = {"BMP": "BMP", "WEBP": "WebP", "TIFF": "TIFF"}


@dataclass(frozen=True)
class _Header:
    kind: str          # "jpeg", "png" or a Pillow format name
    height: int        # as stored, before orientation
    width: int
    orientation: int   # EXIF orientation 1..8 (1 = as stored)

    def size_hw(self) -> tuple[int, int]:
        """(height, width) after the orientation is applied."""
        return (self.width, self.height) if self.orientation >= 5 else (self.height, self.width)


def image_size_hw(data: bytes, *, name: str = "") -> tuple[int, int]:
    """(height, width) of the array ``decode_image`` returns, read from the header only.

    Works on a prefix of the file when it holds the header (JPEG: up to the first scan; PNG: the
    eXIf chunk, if any, must be included to account for orientation).
    """
    try:
        return _read_header(data, strict=False).size_hw()
    except ItemError as exc:
        if not name:
            raise
        raise exc.located(name) from exc


def decode_image(data: bytes, *, max_pixels: int = MAX_PIXELS, name: str = "") -> np.ndarray:
    """Decode JPEG/PNG (or BMP/WebP/TIFF) bytes to RGB uint8 (H, W, 3), oriented by EXIF.

    Raises LimitError when the declared width*height exceeds ``max_pixels`` (before decoding),
    ImageDecodeError for data that is not a supported image, is truncated or is corrupt.
    ``name`` is used in error messages.
    """
    try:
        header = _read_header(data, strict=True)
        pixels = header.height * header.width
        if pixels > max_pixels:
            raise LimitError(
                f"image is {header.width}x{header.height} = {pixels} pixels, above the limit of "
                f"{max_pixels} (max_pixels)"
            )
        return _orient(*_decode_pixels(data, header))
    except ItemError as exc:
        if not name:
            raise
        raise exc.located(name) from exc


# ---------------------------------------------------------------------------------------------
# Headers


def _read_header(data: bytes, *, strict: bool) -> _Header:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"expected image bytes, got {type(data).__name__}")
    data = bytes(data)
    if data[:3] == b"\xff\xd8\xff":
        return _jpeg_header(data, strict=strict)
    if data[:8] == PNG_SIGNATURE:
        return _png_header(data, with_exif=not strict)
    return _pillow_header(data)


def _jpeg_header(data: bytes, *, strict: bool) -> _Header:
    """Walk the JPEG markers up to the first SOS, collecting the frame size and the EXIF."""
    pos, size, exif = 2, None, b""
    while True:
        pos = data.find(b"\xff", pos)  # libjpeg skips stray bytes between segments too
        while 0 <= pos < len(data) and data[pos] == 0xFF:
            pos += 1
        if pos < 0 or pos >= len(data):
            if size is not None and not strict:
                break
            raise ImageDecodeError("truncated JPEG: the data ends before the first scan")
        marker, pos = data[pos], pos + 1
        if marker in _JPEG_STANDALONE:
            continue
        if marker == 0xD9:
            raise ImageDecodeError("bad JPEG: end of image before any scan")
        length = struct.unpack_from(">H", data, pos)[0] if pos + 2 <= len(data) else 0
        if length < 2 or pos + length > len(data):
            if size is not None and not strict:
                break
            raise ImageDecodeError(f"truncated JPEG: marker 0x{marker:02X} segment at byte {pos}")
        segment = data[pos + 2:pos + length]
        if marker == 0xE1 and not exif and segment[:6] == b"Exif\0\0":
            exif = segment[6:]
        elif marker in _JPEG_SOF and len(segment) >= 6:
            size = struct.unpack_from(">HH", segment, 1)
        elif marker == 0xDA:
            break
        pos += length
    if size is None or 0 in size:
        raise ImageDecodeError(f"bad JPEG: no usable frame header (size {size})")
    if strict and data.find(b"\xff\xd9", pos) < 0:
        raise ImageDecodeError("truncated JPEG: no end-of-image marker after the scan data")
    return _Header("jpeg", size[0], size[1], exif_orientation(exif))


def _png_header(data: bytes, *, with_exif: bool) -> _Header:
    """IHDR and, if asked, the first valid eXIf among the chunks the data holds."""
    ihdr = read_png_header(data)
    exif = b""
    try:
        for tag, body, crc in iter_png_chunks(data) if with_exif else ():
            valid = bytes(body[:2]) in (b"II", b"MM") and chunk_crc_ok(tag, body, crc)
            if tag == b"eXIf" and valid:
                exif = bytes(body)
                break
    except ImageDecodeError:
        pass  # the size only needs IHDR; a truncated file is refused when decoding
    return _Header("png", ihdr.height, ihdr.width, exif_orientation(exif))


def _pillow_header(data: bytes) -> _Header:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:  # lazy: reads the header only
            fmt, (width, height) = image.format, image.size
    except Image.DecompressionBombError as exc:
        raise LimitError(f"image refused by Pillow's size guard: {exc}") from exc
    except UnidentifiedImageError:
        raise ImageDecodeError(f"not a supported image: expected JPEG, PNG, "
                               f"{', '.join(_PILLOW_FORMATS.values())}, got bytes starting "
                               f"{data[:8].hex(' ')!r}") from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise ImageDecodeError(f"not a supported image (expected JPEG or PNG): {exc}") from exc
    if fmt not in _PILLOW_FORMATS:
        others = ", ".join(_PILLOW_FORMATS.values())
        raise ImageDecodeError(f"unsupported image format {fmt}: expected JPEG, PNG, {others}")
    return _Header(fmt, height, width, 1)


def exif_orientation(tiff: bytes) -> int:
    """EXIF orientation (1..8) from a TIFF-structured EXIF payload, read as OpenCV reads it.

    IFD0 only; the first 0x0112 entry wins and its value is the 16-bit word at the entry's value
    field whatever its declared type. OpenCV also parses a few other IFD0 tags on the way and
    gives up at the first one whose data lies outside the payload; that is mirrored here.
    Returns 1 when there is no usable orientation.
    """
    if len(tiff) < 8 or tiff[:2] not in (b"II", b"MM"):
        return 1
    order = "<" if tiff[:1] == b"I" else ">"
    if struct.unpack_from(order + "H", tiff, 2)[0] != 42:
        return 1
    ifd = struct.unpack_from(order + "I", tiff, 4)[0]
    if ifd + 2 > len(tiff):
        return 1
    for i in range(struct.unpack_from(order + "H", tiff, ifd)[0]):
        entry = ifd + 2 + 12 * i
        if entry + 2 > len(tiff):
            return 1
        tag = struct.unpack_from(order + "H", tiff, entry)[0]
        if not _exif_entry_readable(tiff, order, tag, entry):
            return 1
        if tag == 0x0112:
            value = struct.unpack_from(order + "H", tiff, entry + 8)[0]
            return value if 1 <= value <= 8 else 1
    return 1


_EXIF_STRING_TAGS = frozenset({0x010E, 0x010F, 0x0110, 0x0131, 0x0132, 0x8298})
_EXIF_RATIONAL_COUNTS = {0x011A: 1, 0x011B: 1, 0x013E: 2, 0x013F: 6, 0x0211: 3, 0x0214: 6}
_EXIF_SHORT_TAGS = frozenset({0x0112, 0x0128, 0x0213})


def _exif_entry_readable(tiff: bytes, order: str, tag: int, entry: int) -> bool:
    """Whether OpenCV's reader can read this entry's data without running off the payload."""
    size = len(tiff)
    if tag in _EXIF_SHORT_TAGS:
        return entry + 10 <= size
    if tag in _EXIF_STRING_TAGS:
        if entry + 8 > size:
            return False
        count = struct.unpack_from(order + "I", tiff, entry + 4)[0]
        if count <= 4:
            return 8 + count <= size  # OpenCV looks at offset 8 of the payload for short strings
        if entry + 12 > size:
            return False
        return struct.unpack_from(order + "I", tiff, entry + 8)[0] + count <= size
    if tag in _EXIF_RATIONAL_COUNTS:
        if entry + 12 > size:
            return False
        start = struct.unpack_from(order + "I", tiff, entry + 8)[0]
        return start + 8 * _EXIF_RATIONAL_COUNTS[tag] <= size
    return True


# ---------------------------------------------------------------------------------------------
# Pixels


def _decode_pixels(data: bytes, header: _Header) -> tuple[np.ndarray, int]:
    """(RGB pixels as stored, EXIF orientation)."""
    if header.kind == "png":
        png = read_png(data)  # checks every CRC; the eXIf kept is the one libpng would keep
        return png_to_rgb(png), exif_orientation(png.exif)
    if header.kind == "jpeg":
        rgb = _decode_jpeg(data)
    else:
        rgb = _decode_with_pillow(data, header.kind)
    if rgb.shape[:2] != (header.height, header.width):
        raise ImageDecodeError(
            f"decoded size {rgb.shape[1]}x{rgb.shape[0]} differs from the header's "
            f"{header.width}x{header.height}"
        )
    return rgb, header.orientation


def encode_jpeg(rgb: np.ndarray, quality: int = 90) -> bytes:
    """JPEG of an (h, w, 3) uint8 RGB array: ``quality`` 1..100, 4:2:0 chroma, the accurate
    integer DCT (deterministic: the same bytes for the same pixels and libjpeg-turbo)."""
    import simplejpeg as encoder  # a dependency; the module's decoder import may be optional

    return encoder.encode_jpeg(np.ascontiguousarray(rgb), quality=quality, colorspace="RGB",
                               colorsubsampling="420", fastdct=False)


def _decode_jpeg(data: bytes) -> np.ndarray:
    if simplejpeg is not None:
        try:
            return simplejpeg.decode_jpeg(
                data, colorspace="RGB", fastdct=False, fastupsample=False, strict=False
            )
        except (ValueError, RuntimeError):
            pass  # e.g. a JPEG libjpeg-turbo's TurboJPEG API refuses: try Pillow's decoder
    return _decode_with_pillow(data, "JPEG")


def _decode_with_pillow(data: bytes, kind: str) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            if image.mode == "CMYK":
                return _cmyk_to_rgb(np.asarray(image))
            return np.array(image.convert("RGB"))
    except Image.DecompressionBombError as exc:
        raise LimitError(f"image refused by Pillow's size guard: {exc}") from exc
    except (OSError, ValueError, SyntaxError, EOFError, struct.error) as exc:
        raise ImageDecodeError(f"cannot decode {kind} data: {exc}") from exc


def _cmyk_to_rgb(cmyk: np.ndarray) -> np.ndarray:
    """OpenCV's CMYK conversion. Pillow hands out inverted (Adobe) samples; undo that first."""
    raw = 255 - cmyk.astype(np.int32)
    k = raw[:, :, 3:]
    return (k - (((255 - raw[:, :, :3]) * k) >> 8)).astype(np.uint8)


def _orient(rgb: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation (1..8) so that row 0 is the visual top."""
    if orientation == 1:
        return rgb
    height, width = rgb.shape[:2]
    # Moving whole 3-byte pixels is ~4x faster than a strided copy of each channel.
    pixels = np.ascontiguousarray(rgb).view(np.dtype((np.void, 3))).reshape(height, width)
    if orientation >= 5:
        pixels = pixels.T  # 5: transpose; 6, 7, 8 add a flip to it
        height, width = width, height
    flip_rows = orientation in (3, 4, 7, 8)
    flip_cols = orientation in (2, 3, 6, 7)
    pixels = np.ascontiguousarray(pixels[:: -1 if flip_rows else 1, :: -1 if flip_cols else 1])
    return pixels.view(np.uint8).reshape(height, width, 3)
