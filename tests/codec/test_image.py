"""decode_image / image_size_hw vs the Supervisely SDK (``sly.image.read`` = OpenCV imread).

Real photos from /work/shared/data, the same photos with EXIF orientations written into them, and
synthetic PNG and JPEG variants built here independently of maskcore's own PNG writer.
"""

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from helpers import DATA, REPO, sha256
from helpers.oracles import oracle
from maskcore.codec import decode_image, image_size_hw
from maskcore.codec import image as image_module
from maskcore.errors import ImageDecodeError, LimitError

sly = oracle("supervisely")  # importing it also sets LOAD_TRUNCATED_IMAGES, process-wide
cv2 = oracle("cv2")

SHARED = Path("/work/shared/data")  # all real images when the shared data sits beside the repo
_ROOTS = [REPO / "examples", DATA] + ([SHARED] if SHARED.is_dir() else [])


def _unique(paths):
    """Each distinct file once (the shared data holds copies of the bundled images)."""
    seen = set()
    return [p for p in paths if (h := sha256(p.read_bytes())) not in seen and not seen.add(h)]


REAL = _unique(sorted(p for root in _ROOTS for p in root.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png")))
SMALL_JPEGS = [p for p in REAL if p.stat().st_size < 200_000 and p.read_bytes()[:2] == b"\xff\xd8"]


def sly_read(data: bytes, tmp_path: Path, suffix: str) -> np.ndarray:
    path = tmp_path / f"oracle{suffix}"
    path.write_bytes(data)
    return sly.image.read(str(path))


def cv2_read(data: bytes):
    """cv2.imread(IMREAD_COLOR) on bytes (what sly.image.read does), RGB, or None if refused."""
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    return None if bgr is None else bgr[:, :, ::-1]


# --- independent builders --------------------------------------------------------------------

ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]


def png_chunk(tag: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body))


def _scanlines(samples: np.ndarray, depth: int) -> bytes:
    h, w, c = samples.shape
    out = b""
    for row in samples.reshape(h, w * c):
        if depth == 16:
            raw = row.astype(">u2").tobytes()
        elif depth == 8:
            raw = row.astype(np.uint8).tobytes()
        else:
            bits = np.unpackbits(row.astype(np.uint8)[:, None], axis=1)[:, 8 - depth:]
            raw = np.packbits(bits.reshape(-1)).tobytes()
        out += b"\x00" + raw
    return out


def build_png(samples, color_type, depth, *, plte=None, trns=None, interlace=False, before=(), after=()):
    """A PNG of raw samples (h, w, c), filter None, optional Adam7; chunks before/after IDAT."""
    samples = np.asarray(samples)
    samples = samples[:, :, None] if samples.ndim == 2 else samples
    h, w, _ = samples.shape
    passes = ADAM7 if interlace else [(0, 0, 1, 1)]
    raw = b"".join(
        _scanlines(samples[y0::dy, x0::dx], depth)
        for x0, y0, dx, dy in passes
        if samples[y0::dy, x0::dx].size
    )
    ihdr = struct.pack(">IIBBBBB", w, h, depth, color_type, 0, 0, int(interlace))
    out = b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr)
    out += b"".join(png_chunk(t, b) for t, b in before)
    if plte is not None:
        out += png_chunk(b"PLTE", np.asarray(plte, np.uint8).tobytes())
    if trns is not None:
        out += png_chunk(b"tRNS", trns)
    z = zlib.compress(raw, 6)
    out += png_chunk(b"IDAT", z[: len(z) // 2]) + png_chunk(b"IDAT", z[len(z) // 2:])
    out += b"".join(png_chunk(t, b) for t, b in after)
    return out + png_chunk(b"IEND", b"")


def exif_tiff(entries, order="<", pad=0):
    """TIFF payload: header, IFD0 at offset 8 with (tag, type, count, 4-byte value) entries."""
    body = (b"II" if order == "<" else b"MM") + struct.pack(order + "HI", 42, 8)
    body += struct.pack(order + "H", len(entries))
    for tag, typ, count, value in entries:
        body += struct.pack(order + "HHI", tag, typ, count) + value
    return body + struct.pack(order + "I", 0) + bytes(pad)


def orientation_entry(value, order="<"):
    return (0x0112, 3, 1, struct.pack(order + "HH", value, 0))


def with_app1(jpeg: bytes, *payloads: bytes) -> bytes:
    segs = b"".join(b"\xff\xe1" + struct.pack(">H", len(p) + 2) + p for p in payloads)
    return jpeg[:2] + segs + jpeg[2:]


def pil_jpeg(pixels, mode=None, **kw) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels, mode).save(buf, "JPEG", **kw)
    return buf.getvalue()


# --- real images -----------------------------------------------------------------------------


def test_every_real_image_matches_the_sdk():
    for path in REAL:
        data = path.read_bytes()
        ours = decode_image(data, name=path.name)
        ref = sly.image.read(str(path))
        assert ours.dtype == np.uint8 and ours.flags.c_contiguous and ours.flags.writeable
        assert np.array_equal(ours, ref), path
        assert image_size_hw(data) == ref.shape[:2], path


def test_real_jpegs_through_the_pillow_fallback_match_the_sdk(monkeypatch):
    monkeypatch.setattr(image_module, "simplejpeg", None)
    for path in SMALL_JPEGS[::4]:
        assert np.array_equal(decode_image(path.read_bytes()), sly.image.read(str(path))), path


@pytest.mark.parametrize("order", "<>")
def test_real_jpegs_with_every_exif_orientation_match_the_sdk(order, tmp_path):
    for path in SMALL_JPEGS[:: max(1, len(SMALL_JPEGS) // 3)][:3]:
        jpeg = path.read_bytes()
        for value in range(10):
            data = with_app1(jpeg, b"Exif\0\0" + exif_tiff([orientation_entry(value, order)], order))
            ref = sly_read(data, tmp_path, ".jpg")
            assert np.array_equal(decode_image(data), ref), (path, value)
            assert image_size_hw(data) == ref.shape[:2]


# --- synthetic PNGs --------------------------------------------------------------------------

PNG_KINDS = [(0, (1, 2, 4, 8, 16)), (2, (8, 16)), (3, (1, 2, 4, 8)), (4, (8, 16)), (6, (8, 16))]
CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}


def random_png(rng, color_type, depth, interlace):
    h, w = int(rng.integers(1, 40)), int(rng.integers(1, 40))
    samples = rng.integers(0, 2**depth, (h, w, CHANNELS[color_type]))
    plte = trns = None
    if color_type == 3:
        plte = rng.integers(0, 256, (int(rng.integers(1, 2**depth + 1)), 3))  # may be short
        trns = bytes(rng.integers(0, 256, len(plte), dtype=np.uint8)) if rng.random() < 0.5 else None
    elif color_type in (0, 2) and rng.random() < 0.5:
        trns = struct.pack(">" + "H" * CHANNELS[color_type], *samples[0, 0].tolist())
    return build_png(samples, color_type, depth, plte=plte, trns=trns, interlace=interlace)


@pytest.mark.parametrize("color_type, depths", PNG_KINDS)
def test_png_variants_match_the_sdk(color_type, depths, tmp_path):
    rng = np.random.default_rng([21, color_type])
    for depth in depths:
        for interlace in (False, True):
            for _ in range(4):
                data = random_png(rng, color_type, depth, interlace)
                ref = sly_read(data, tmp_path, ".png")
                assert np.array_equal(decode_image(data), ref), (color_type, depth, interlace)
                assert image_size_hw(data) == ref.shape[:2]


def test_png_exif_orientation_like_opencv(tmp_path):
    rng = np.random.default_rng(23)
    pix = rng.integers(0, 256, (9, 14, 3))
    tiff6, tiff3 = exif_tiff([orientation_entry(6)]), exif_tiff([orientation_entry(3, ">")], ">")
    bad_crc = png_chunk(b"eXIf", tiff6)[:-1] + b"\x00"
    profile = b"\nexif\n" + b"%8d" % (len(tiff6) + 6) + b"\n" + (b"Exif\0\0" + tiff6).hex().encode() + b"\n"
    cases = {
        "before IDAT": dict(before=[(b"eXIf", tiff6)]),
        "after IDAT": dict(after=[(b"eXIf", tiff3)]),
        "first of two": dict(before=[(b"eXIf", tiff3), (b"eXIf", tiff6)]),
        "Exif prefix is invalid": dict(before=[(b"eXIf", b"Exif\0\0" + tiff6)]),
        "raw profile text is ignored": dict(before=[(b"tEXt", b"Raw profile type exif\0" + profile)]),
    }
    for label, kw in cases.items():
        data = build_png(pix, 2, 8, **kw)
        ref = sly_read(data, tmp_path, ".png")
        assert np.array_equal(decode_image(data), ref), label
        assert image_size_hw(data) == ref.shape[:2], label
    data = build_png(pix, 2, 8)
    data = data[:33] + bad_crc + data[33:]  # a bad eXIf CRC: libpng drops the chunk
    assert np.array_equal(decode_image(data), sly_read(data, tmp_path, ".png"))


def test_png_structure_is_checked_like_libpng():
    rng = np.random.default_rng(29)
    pix = rng.integers(0, 256, (11, 13, 3))
    good = build_png(pix, 2, 8)
    idat = good.index(b"IDAT") - 4

    def flip_crc(data, at):  # corrupt the CRC of the chunk starting at ``at``
        end = at + 12 + struct.unpack_from(">I", data, at)[0]
        return data[:end - 1] + bytes([data[end - 1] ^ 1]) + data[end:]

    raw = b"".join(b"\0" + bytes(r.astype(np.uint8).reshape(-1)) for r in pix)
    head, iend = good[:33], png_chunk(b"IEND", b"")
    depth3 = head[12:24] + b"\x03" + head[25:29]  # IHDR body with bit depth 3
    variants = {
        "bad IHDR CRC": flip_crc(good, 8),
        "bad IDAT CRC": flip_crc(good, idat),
        "bad IEND CRC": flip_crc(good, len(good) - 12),
        "bad ancillary CRC": head + png_chunk(b"tEXt", b"a\0b")[:-1] + b"\0" + good[33:],
        "unknown critical chunk": head + png_chunk(b"ABCD", b"x") + good[33:],
        "unknown ancillary chunk": head + png_chunk(b"abCD", b"x") + good[33:],
        "too much image data": head + png_chunk(b"IDAT", zlib.compress(raw + bytes(99))) + iend,
        "too little image data": head + png_chunk(b"IDAT", zlib.compress(raw[:-4])) + iend,
        "not zlib data": head + png_chunk(b"IDAT", bytes(40)) + iend,
        "no IEND": good[:-12],
        "trailing bytes": good + b"junk",
        "palette without PLTE": build_png(rng.integers(0, 4, (5, 5)), 3, 8),
        "bad IHDR depth": head[:8] + png_chunk(b"IHDR", depth3[4:]) + good[33:],
    }
    for label, data in variants.items():
        ref = cv2_read(data)
        if ref is None:
            with pytest.raises(ImageDecodeError, match="x.png"):
                decode_image(data, name="x.png")
        else:
            assert np.array_equal(decode_image(data), ref), label
    assert cv2_read(variants["no IEND"]) is None and cv2_read(variants["trailing bytes"]) is not None


# --- EXIF parsing ----------------------------------------------------------------------------

EXIF_TAGS = [0x0112, 0x010E, 0x010F, 0x0110, 0x011A, 0x011B, 0x0128, 0x0131, 0x0132, 0x013E,
             0x013F, 0x0211, 0x0213, 0x0214, 0x8298, 0x8769, 0x0100, 0x0112]


def random_exif(rng):
    order = "<" if rng.random() < 0.5 else ">"
    entries = []
    for _ in range(int(rng.integers(0, 6))):
        tag = int(rng.choice(EXIF_TAGS))
        count = int(rng.choice([0, 1, 3, 4, 5, 20, 400]))
        value = struct.pack(order + "I", int(rng.choice([0, 8, 30, 60, 200, 5000])))
        if tag == 0x0112:
            value = struct.pack(order + "HH", int(rng.integers(0, 10)), 0)
        entries.append((tag, int(rng.choice([3, 4, 2, 5])), count, value))
    return exif_tiff(entries, order, pad=int(rng.integers(0, 120)))


def test_random_exif_payloads_orient_like_opencv():
    rng = np.random.default_rng(31)
    base = pil_jpeg(rng.integers(0, 256, (6, 10, 3), dtype=np.uint8), quality=95)
    plain, rotated = cv2_read(base), 0
    for _ in range(400):
        payload = random_exif(rng)
        if rng.random() < 0.1:
            payload = payload[: int(rng.integers(0, len(payload)))]
        data = with_app1(base, b"Exif\0\0" + payload)
        ref = cv2_read(data)
        assert np.array_equal(decode_image(data), ref), payload.hex()
        assert image_size_hw(data) == ref.shape[:2]
        rotated += ref.shape != plain.shape
    assert rotated > 20  # the random payloads do reach the transposing orientations


def test_which_app1_segment_holds_the_orientation():
    rng = np.random.default_rng(37)
    base = pil_jpeg(rng.integers(0, 256, (6, 10, 3), dtype=np.uint8))
    six = exif_tiff([orientation_entry(6)])
    cases = [
        (b"Exif\0\0" + six, b"Exif\0\0" + exif_tiff([orientation_entry(3)])),  # first wins
        (b"http://ns.adobe.com/xap/1.0/\0<x/>", b"Exif\0\0" + six),           # XMP skipped
        (b"Exif\0\1" + six,),                                                  # bad header
        (b"Exif" + six,),
    ]
    for payloads in cases:
        data = with_app1(base, *payloads)
        assert np.array_equal(decode_image(data), cv2_read(data)), payloads


# --- synthetic JPEGs -------------------------------------------------------------------------


def jpeg_variants(rng):
    for _ in range(6):
        h, w = int(rng.integers(1, 301)), int(rng.integers(1, 501))
        rgb = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        rgb = cv2.GaussianBlur(rgb, (0, 0), 3) if rng.random() < 0.5 else rgb
        for sub in (0, 1, 2):
            yield f"rgb {h}x{w} sub{sub}", pil_jpeg(rgb, quality=int(rng.integers(50, 100)), subsampling=sub)
        yield f"progressive {h}x{w}", pil_jpeg(rgb, progressive=True)
        yield f"grey {h}x{w}", pil_jpeg(rgb[:, :, 0])
        yield f"cmyk {h}x{w}", pil_jpeg(rng.integers(0, 256, (h, w, 4), dtype=np.uint8), "CMYK")
        yield f"opencv {h}x{w}", cv2.imencode(".jpg", rgb, [cv2.IMWRITE_JPEG_RST_INTERVAL, 3])[1].tobytes()


def test_jpeg_variants_match_the_sdk_with_either_decoder(tmp_path, monkeypatch):
    blobs = list(jpeg_variants(np.random.default_rng(41)))
    refs = [sly_read(data, tmp_path, ".jpg") for _, data in blobs]
    for (label, data), ref in zip(blobs, refs):
        assert np.array_equal(decode_image(data), ref), label
    monkeypatch.setattr(image_module, "simplejpeg", None)
    for (label, data), ref in zip(blobs, refs):
        assert np.array_equal(decode_image(data), ref), "Pillow path: " + label


def test_corrupt_scan_data_decodes_like_opencv():
    assert image_module.simplejpeg is not None  # the libjpeg-turbo path (simplejpeg is a dependency)
    rng = np.random.default_rng(43)
    base = pil_jpeg(cv2.resize(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8), (320, 240)))
    scan = base.index(b"\xff\xda") + 20
    for _ in range(40):
        data = bytearray(base)
        at = int(rng.integers(scan, len(data) - 4))
        data[at:at + 3] = rng.integers(0, 256, 3, dtype=np.uint8).tobytes()
        ref = cv2_read(bytes(data))
        if ref is None:
            with pytest.raises(ImageDecodeError):
                decode_image(bytes(data))
        else:
            assert np.array_equal(decode_image(bytes(data)), ref)


def test_truncated_files_are_refused_like_opencv(monkeypatch):
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)  # must not matter
    rng = np.random.default_rng(47)
    pngs = [p for p in REAL if p.read_bytes()[:4] == b"\x89PNG"]
    for path in SMALL_JPEGS[:3] + pngs[:3]:
        data = path.read_bytes()
        for cut in sorted(rng.integers(1, len(data) - 2, 8).tolist()):
            assert cv2_read(data[:cut]) is None
            with pytest.raises(ImageDecodeError, match=path.name):
                decode_image(data[:cut], name=path.name)
        # Missing only the final byte(s): always refused here. OpenCV accepts such a JPEG when
        # libjpeg happened not to read past the last byte before the last MCU (a known difference).
        for cut in (len(data) - 2, len(data) - 1):
            with pytest.raises(ImageDecodeError, match=path.name):
                decode_image(data[:cut], name=path.name)
    monkeypatch.setattr(image_module, "simplejpeg", None)
    data = SMALL_JPEGS[0].read_bytes()
    with pytest.raises(ImageDecodeError):
        decode_image(data[: len(data) // 2])


# --- limits, errors, other formats -----------------------------------------------------------


def test_size_limit_is_checked_from_the_header_before_decoding():
    png = b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", 100000, 90000, 8, 2, 0, 0, 0))
    png += png_chunk(b"IDAT", b"not zlib") + png_chunk(b"IEND", b"")
    with pytest.raises(LimitError, match=r"100000x90000 = 9000000000 pixels.*268435456") as err:
        decode_image(png, name="big.png")
    assert "big.png" in str(err.value)
    assert image_size_hw(png) == (90000, 100000)
    sof = b"\xff\xc0" + struct.pack(">HBHHB", 11, 8, 60000, 50000, 1) + b"\x01\x11\x00"
    jpeg = b"\xff\xd8" + sof + b"\xff\xda\x00\x08\x01\x01\x00\x00\x3f\x00" + b"garbage\xff\xd9"
    with pytest.raises(LimitError, match="50000x60000"):
        decode_image(jpeg)
    small = pil_jpeg(np.zeros((30, 40, 3), np.uint8))
    with pytest.raises(LimitError, match="40x30 = 1200 pixels"):
        decode_image(small, max_pixels=1199)
    assert decode_image(small, max_pixels=1200).shape == (30, 40, 3)


@pytest.mark.parametrize(
    "data",
    [b"", b"\xff\xd8", b"\xff\xd8\xff\xd9", b"\x89PNG\r\n\x1a\n", b"GIF89a" + bytes(30), bytes(100),
     b"\xff\xd8\xff\xe0\x00\x10JFIF\0" + bytes(9)],
)
def test_undecodable_data_names_the_item(data):
    with pytest.raises(ImageDecodeError, match="ds/item.jpg"):
        decode_image(data, name="ds/item.jpg")
    with pytest.raises(ImageDecodeError):
        image_size_hw(data)


def test_gif_is_unsupported_and_str_input_is_a_type_error():
    buf = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buf, "GIF")
    with pytest.raises(ImageDecodeError, match="unsupported image format GIF"):
        decode_image(buf.getvalue())
    with pytest.raises(TypeError, match="expected image bytes"):
        decode_image("cat.jpg")


@pytest.mark.parametrize("fmt, kw", [("BMP", {}), ("WEBP", {"lossless": True}), ("TIFF", {})])
def test_other_formats_best_effort(fmt, kw):
    rgb = np.random.default_rng(53).integers(0, 256, (23, 31, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, fmt, **kw)
    assert np.array_equal(decode_image(buf.getvalue()), cv2_read(buf.getvalue()))
    assert image_size_hw(buf.getvalue()) == (23, 31)


def test_size_from_a_header_prefix():
    rng = np.random.default_rng(59)
    jpeg = with_app1(pil_jpeg(rng.integers(0, 256, (50, 70, 3), dtype=np.uint8)),
                     b"Exif\0\0" + exif_tiff([orientation_entry(8)]))
    assert image_size_hw(jpeg[: jpeg.index(b"\xff\xda") + 4]) == (70, 50)
    six = exif_tiff([orientation_entry(6)])
    png = build_png(rng.integers(0, 256, (50, 70, 3)), 2, 8, before=[(b"eXIf", six)])
    assert image_size_hw(png[:33]) == (50, 70)  # IHDR only: stored size
    assert image_size_hw(png) == (70, 50)
