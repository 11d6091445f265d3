"""Hypothesis strategies for the fuzz tests: hostile JSON, geometry payloads, listings, tars,
images and bitmaps. Every strategy is bounded (sizes, depths, declared pixels) so that an
example never needs a large allocation: a crash, hang or giant allocation is the code's fault.
"""

from __future__ import annotations

import base64
import io
import json
import struct
import tarfile
import zlib

import numpy as np
from hypothesis import strategies as st

from maskcore.codec.png import encode_png

from .projects import META, bitmap_data, good_annotation, png_header_only, rgb_png

# --- JSON ----------------------------------------------------------------------------------------

HOSTILE_NUMBERS = st.one_of(
    st.integers(-50, 100), st.integers(), st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([2**31 - 1, 2**31, -2**31, -2**31 - 1, 2**53 + 1, 10**400, -0.0, 0.5, -0.5,
                     1e308, -1e308, 2**63, 2**64]),
)
"""Coordinates as they come in hostile files: huge, tiny, non-finite, on the int32 boundaries."""

SCALARS = st.one_of(st.none(), st.booleans(), HOSTILE_NUMBERS, st.text(max_size=8))
JSON = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=5), st.dictionaries(st.text(max_size=8), inner, max_size=5)),
    max_leaves=30)
"""Any JSON value (NaN and infinities included, as Python's json reads them)."""

TITLES = [c["title"] for c in META["classes"]]


def _xy(value=HOSTILE_NUMBERS):
    return st.one_of(st.lists(value, min_size=2, max_size=2), JSON)


def _points(min_size=0, max_size=8):
    return st.lists(_xy(), min_size=min_size, max_size=max_size)


def _json_dumps(value) -> str:
    return json.dumps(value, allow_nan=True, default=str)


@st.composite
def bitmap_payloads(draw) -> str:
    """``bitmap.data``: valid, mutated, random, or declaring a canvas far above the limit."""
    kind = draw(st.sampled_from(["valid", "mutated", "random", "bomb", "bare", "text"]))
    if kind == "text":
        return draw(st.text(max_size=40))
    if kind == "random":
        return base64.b64encode(draw(st.binary(max_size=200))).decode()
    if kind == "bomb":
        w, h = draw(st.integers(0, 2**31 - 1)), draw(st.integers(0, 2**31 - 1))
        return base64.b64encode(zlib.compress(png_header_only(w, h))).decode()
    h, w = draw(st.integers(1, 8)), draw(st.integers(1, 8))
    mask = np.array(draw(st.lists(st.booleans(), min_size=h * w, max_size=h * w))).reshape(h, w)
    if kind == "valid":
        return bitmap_data(mask)
    png = encode_png(mask.astype(np.uint8) * 255)
    if kind == "bare":
        return base64.b64encode(png).decode()
    return base64.b64encode(zlib.compress(mutate(draw, png, fix_png=True))).decode()


def objects(draw_titles=st.sampled_from(TITLES + ["unknown", ""])):
    """One annotation object: a class title and a payload of any geometry shape (or garbage)."""
    points = st.fixed_dictionaries({"exterior": _points()},
                                   optional={"interior": st.lists(_points(), max_size=2)})
    nodes = st.dictionaries(st.sampled_from(["a", "b", "zz"]),
                            st.one_of(st.fixed_dictionaries({"loc": _xy()},
                                                            optional={"disabled": JSON}), JSON),
                            max_size=3)
    bitmap = st.fixed_dictionaries({"origin": _xy(), "data": bitmap_payloads()})
    return st.one_of(
        st.fixed_dictionaries({"classTitle": draw_titles},
                              optional={"points": st.one_of(points, JSON), "bitmap": st.one_of(bitmap, JSON),
                                        "nodes": st.one_of(nodes, JSON), "tags": JSON,
                                        "geometryType": st.one_of(st.sampled_from(
                                            ["polygon", "bitmap", "graph", "cuboid_2d", "rectangle",
                                             "oriented_bbox", "multipolygon", "cuboid", "line", "nope"]),
                                            JSON),
                                        "angle": HOSTILE_NUMBERS, "faces": JSON,
                                        "parts": st.lists(points, max_size=2), "vertices": JSON}),
        JSON)


SIZES = st.one_of(st.fixed_dictionaries({"height": HOSTILE_NUMBERS, "width": HOSTILE_NUMBERS}),
                  st.fixed_dictionaries({"height": st.integers(1, 64), "width": st.integers(1, 64)}),
                  JSON)
ANNOTATIONS = st.fixed_dictionaries(
    {"size": SIZES, "objects": st.one_of(st.lists(objects(), max_size=4), JSON)},
    optional={"tags": JSON, "description": JSON})
"""Annotation-shaped JSON: mostly the right keys, with hostile values."""

ANNOTATION_BYTES = st.one_of(
    st.binary(max_size=200),
    ANNOTATIONS.map(lambda a: _json_dumps(a).encode()),
    st.builds(lambda n: b"[" * n + b"]" * n, st.integers(1, 200_000)),
    st.builds(lambda a, cut: _json_dumps(a).encode()[:cut], ANNOTATIONS, st.integers(0, 400)),
)

META_JSON = st.one_of(JSON, st.fixed_dictionaries({"classes": st.one_of(st.lists(st.one_of(
    st.fixed_dictionaries({"title": st.one_of(st.text(max_size=5), JSON),
                           "shape": st.sampled_from(["polygon", "graph", "any", "bitmap", "x"]),
                           "color": st.one_of(st.sampled_from(["#FF0000", "#ff00aa", "red"]), JSON)},
                          optional={"geometry_config": st.one_of(st.fixed_dictionaries(
                              {"nodes": JSON, "edges": JSON}), JSON)}),
    JSON), max_size=4), JSON)}))

# --- listings ----------------------------------------------------------------------------------

_SEGMENT = st.one_of(st.sampled_from(["ann", "img", "datasets", "ds", "meta", "a.jpg", "a.jpg.json",
                                      "a.json", "b.png", ".", "..", ""]),
                     st.text(max_size=6).map(lambda t: t.replace("/", "_")),
                     st.sampled_from(["caf\udce9", "\udcff.jpg", "x\udc80.json"]))
LISTINGS = st.lists(st.tuples(st.lists(_SEGMENT, min_size=1, max_size=5).map("/".join),
                              st.one_of(st.none(), st.integers(0, 2**40))), max_size=25)
"""(path, size) listings as a store (or a tar) may return them, undecodable names included."""

# --- bytes: images, tars -----------------------------------------------------------------------


def fix_png_crcs(data: bytes) -> bytes:
    """Recompute every chunk CRC so that a mutation reaches the decoder instead of the CRC check."""
    out, pos = bytearray(data), 8
    while pos + 12 <= len(out):
        length = struct.unpack(">I", out[pos:pos + 4])[0]
        end = pos + 8 + length
        if end + 4 > len(out):
            break
        out[end:end + 4] = struct.pack(">I", zlib.crc32(bytes(out[pos + 4:end])))
        pos = end + 4
    return bytes(out)


def mutate(draw, data: bytes, fix_png: bool = False, fix_tar: bool = False) -> bytes:
    """A few random byte edits (overwrite, insert, delete, truncate) of ``data``."""
    out = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["set", "insert", "delete", "truncate", "big"]))
        pos = draw(st.integers(0, max(len(out) - 1, 0)))
        if op == "set" and out:
            out[pos] = draw(st.integers(0, 255))
        elif op == "big" and len(out) >= pos + 4:  # a length or size field set absurdly high
            out[pos:pos + 4] = draw(st.sampled_from([b"\xff\xff\xff\xff", b"\x7f\xff\xff\xff",
                                                     b"7777", b"\x80\x00\x00\x01"]))
        elif op == "insert":
            out[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete":
            del out[pos:pos + draw(st.integers(1, 16))]
        elif op == "truncate":
            del out[pos:]
    if fix_png:
        return fix_png_crcs(bytes(out))
    if fix_tar and draw(st.booleans()):
        return fix_tar_checksums(bytes(out))
    return bytes(out)


def _jpeg(h: int, w: int, seed: int) -> bytes:
    from PIL import Image
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(buf, "JPEG", quality=80)
    return buf.getvalue()


def _pillow(fmt: str) -> bytes:
    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray(np.full((5, 6, 3), 77, np.uint8)).save(buf, fmt)
    return buf.getvalue()


IMAGE_SEEDS = [rgb_png(6, 7, 1), _jpeg(9, 11, 2), _pillow("BMP"), _pillow("TIFF"), _pillow("WEBP"),
               encode_png(np.zeros((4, 4), np.uint8)), png_header_only(100_000, 100_000)]


@st.composite
def image_bytes(draw) -> bytes:
    seed = draw(st.sampled_from(IMAGE_SEEDS))
    kind = draw(st.sampled_from(["random", "mutated", "mutated_crc_fixed", "as_is"]))
    if kind == "random":
        return draw(st.binary(max_size=300))
    if kind == "as_is":
        return seed
    return mutate(draw, seed, fix_png=kind == "mutated_crc_fixed" and seed.startswith(b"\x89PNG"))


def fix_tar_checksums(data: bytes) -> bytes:
    """Recompute the checksum of every 512-byte block that looks like a header."""
    out = bytearray(data)
    for pos in range(0, len(out) - 511, 512):
        block = out[pos:pos + 512]
        if block[257:262] == b"ustar":
            block[148:156] = b" " * 8
            block[148:155] = f"{sum(block):06o}\0".encode()
            out[pos:pos + 512] = block
    return bytes(out)


def _tar_seed(fmt) -> bytes:
    out = io.BytesIO()
    ann = json.dumps(good_annotation(1)).encode()
    with tarfile.open(fileobj=out, mode="w", format=fmt) as tar:
        for name, data in [("p/meta.json", json.dumps(META).encode()),
                           ("p/ds/ann/" + "long" * 40 + ".png.json", ann),
                           ("p/ds/img/" + "long" * 40 + ".png", rgb_png(4, 4, 3))]:
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tar.addfile(ti, io.BytesIO(data))
        link = tarfile.TarInfo("p/ds/img/link.png")
        link.type, link.linkname = tarfile.SYMTYPE, "long" * 40 + ".png"
        tar.addfile(link)
    return out.getvalue()


TAR_SEEDS = [_tar_seed(tarfile.PAX_FORMAT), _tar_seed(tarfile.GNU_FORMAT)]


@st.composite
def tar_bytes(draw) -> bytes:
    if draw(st.booleans()):
        return draw(st.binary(max_size=2048))
    return mutate(draw, draw(st.sampled_from(TAR_SEEDS)), fix_tar=True)
