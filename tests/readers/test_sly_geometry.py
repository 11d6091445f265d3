"""Supervisely geometry payloads -> maskcore.model.geometry, checked by hand and against the SDK's bitmap
decoders (supervisely 6.74.51, test-only oracle) on seeded random masks."""

from __future__ import annotations

import base64
import io
import struct
import time
import zlib

import numpy as np
import pytest
from PIL import Image

from helpers.oracles import oracle
from maskcore.errors import AnnotationError, LimitError
from maskcore.model.geometry import (
    CUBOID_2D_VERTICES,
    AlphaMask,
    Bitmap,
    Cuboid,
    Cuboid2d,
    Graph,
    MultiPolygon,
    OrientedBBox,
    Point,
    Polygon,
    Polyline,
    Rectangle,
)
from maskcore.readers import sly_geometry
from maskcore.readers.sly_geometry import parse_geometry, png_size_wh

sly = oracle("supervisely")


def pts(exterior, interior=()):
    return {"points": {"exterior": exterior, "interior": list(interior)}}


def png_bytes(arr, mode=None, **save):
    buf = io.BytesIO()
    img = Image.fromarray(arr)
    img = img.convert(mode) if mode and img.mode != mode else img
    img.save(buf, format="PNG", **save)
    return buf.getvalue()


def b64(raw, wrap=True):
    return base64.b64encode(zlib.compress(raw) if wrap else raw).decode()


# --- vector geometries -------------------------------------------------------------------------

def test_polygon_floors_and_keeps_holes():
    g = parse_geometry("polygon", pts([[1.5, 2], [-0.5, 3.99], [10, 10]], [[[2, 2], [3, 2], [3, 3]]]))
    assert isinstance(g, Polygon)
    assert g.exterior_xy.dtype == np.int64
    assert g.exterior_xy.tolist() == [[1, 2], [-1, 3], [10, 10]]
    assert [h.tolist() for h in g.interiors_xy] == [[[2, 2], [3, 2], [3, 3]]]


def test_polygon_interior_key_may_be_omitted():
    g = parse_geometry("polygon", {"points": {"exterior": [[0, 0], [5, 0], [0, 5]]}})
    assert g.interiors_xy == ()


def test_rectangle_normalises_corners_inclusive():
    g = parse_geometry("rectangle", pts([[27.9, 3], [20, 9.2]]))
    assert isinstance(g, Rectangle)
    assert (g.x0, g.y0, g.x1, g.y1) == (20, 3, 27, 9)


def test_line_point():
    line = parse_geometry("line", pts([[0, 0], [5.5, 6.5], [7, 1]], [[[1, 1]]]))  # interior ignored
    assert isinstance(line, Polyline) and line.points_xy.tolist() == [[0, 0], [5, 6], [7, 1]]
    p = parse_geometry("point", pts([[3.7, -2.2]]))
    assert isinstance(p, Point) and (p.x, p.y) == (3, -3)


def test_oriented_bbox():
    g = parse_geometry("oriented_bbox", {"points": [[30.5, 40], [10, 20.2]], "angle": 0.5})
    assert isinstance(g, OrientedBBox)
    assert (g.left, g.top, g.right, g.bottom, g.angle) == (10, 20, 30, 40, 0.5)
    assert parse_geometry("oriented_bbox", {"points": [[0, 0], [1, 1]], "angle": None}).angle == 0.0


def test_multipolygon_parts():
    g = parse_geometry("multipolygon", {"parts": [
        {"exterior": [[0, 0], [4, 0], [0, 4]]},
        {"exterior": [[10, 10], [20, 10], [20, 20]], "interior": [[[12, 11], [18, 11], [18, 17]]]}]})
    assert isinstance(g, MultiPolygon) and len(g.parts) == 2
    assert g.parts[1].interiors_xy[0].tolist() == [[12, 11], [18, 11], [18, 17]]


def test_graph_nodes_in_file_order_with_template():
    nodes = {"b": {"loc": [1.9, 2]}, "a": {"loc": [3, 4], "disabled": True}}
    g = parse_geometry("graph", {"nodes": nodes}, graph_template={"a": {}, "b": {}, "c": {}})
    assert isinstance(g, Graph)
    assert [(n.node_id, n.x, n.y, n.disabled) for n in g.nodes] == [("b", 1, 2, False),
                                                                      ("a", 3, 4, True)]
    with pytest.raises(AnnotationError, match=r"expected ids from the class template.*'b'"):
        parse_geometry("graph", {"nodes": nodes}, graph_template={"a": {}})


def test_cuboid_2d_vertex_order():
    verts = {k: {"loc": [i, 10 * i + 0.5]} for i, k in enumerate(reversed(CUBOID_2D_VERTICES))}
    g = parse_geometry("cuboid_2d", {"vertices": verts})
    assert isinstance(g, Cuboid2d)
    assert g.vertices_xy.tolist() == [[7 - i, 10 * (7 - i)] for i in range(8)]
    del verts["face2-topleft"]
    with pytest.raises(AnnotationError, match="missing \\['face2-topleft'\\]"):
        parse_geometry("cuboid_2d", {"vertices": verts})


def test_legacy_cuboid():
    g = parse_geometry("cuboid", {"points": [[0, 0], [1, 0], [1, 1], [0, 1], [2, 2]],
                                  "faces": [[0, 1, 2, 3], [0, 4, 2, 1], [1, 2, 3, 4]]})
    assert isinstance(g, Cuboid) and g.points_xy.shape == (5, 2)
    assert g.faces == ((0, 1, 2, 3), (0, 4, 2, 1), (1, 2, 3, 4))


def bad_idat_png():
    """A PNG with valid chunk CRCs whose IDAT holds a broken zlib stream."""
    good = png_bytes(np.ones((4, 4), np.uint8))
    pos = good.index(b"IDAT") - 4
    body = b"IDAT" + b"\x78\x9c\xff\xff\xff"
    chunk = struct.pack(">I", len(body) - 4) + body + struct.pack(">I", zlib.crc32(body))
    return good[:pos] + chunk + good[good.index(b"IEND") - 4:]


BAD_PAYLOADS = [
    ("polygon", {}, "missing field 'points'"),
    ("polygon", {"points": []}, "points: expected an object, got list"),
    ("polygon", pts([[0, 0], [1, 1]]), "points.exterior: expected at least 3 points, got 2"),
    ("polygon", pts([[0, 0], [1, 1], [2, 0]], [[[0, 0], [1, 1]]]),
     r"points.interior\[0\]: expected at least 3 points, got 2"),
    ("polygon", pts([[0, 0], ["1", 1], [2, 0]]),
     r"exterior\[1\]: expected \[x, y\] with 2 numbers, got list \['1', 1\]"),
    ("polygon", pts([[0, 0], [True, 1], [2, 0]]), r"exterior\[1\]: expected \[x, y\].*got list \[True"),
    ("polygon", pts([[0, 0], [1, 2, 3], [2, 0]]), r"exterior\[1\]: expected \[x, y\]"),
    ("polygon", pts([[0, 0], [1, float("nan")], [2, 0]]), r"exterior\[1\]: expected finite"),
    ("polygon", pts([[0, 0], [1, float("inf")], [2, 0]]), r"exterior\[1\]: expected finite"),
    ("polygon", pts([[0, 0], [1, 2**31 + 1], [2, 0]]), r"\|v\| <= 2\*\*31, got list \[1, 2147483649\]"),
    ("polygon", pts([[0, 0], [1, 10**400], [2, 0]]), r"exterior\[1\]: expected finite"),
    ("polygon", pts("abc"), "points.exterior: expected a list, got str 'abc'"),
    ("multipolygon", {"parts": [{"exterior": "abc"}]}, r"parts\[0\].exterior: expected a list, got str"),
    ("rectangle", pts([[0, 0], [1, 1], [2, 2]]), "expected exactly 2 point\\(s\\), got 3"),
    ("line", pts([[0, 0]]), "expected at least 2 points, got 1"),
    ("point", pts([]), "expected exactly 1 point\\(s\\), got 0"),
    ("oriented_bbox", {"points": [[0, 0], [1, 1]]}, "missing field 'angle'"),
    ("oriented_bbox", {"points": [[0, 0], [1, 1]], "angle": "1"}, "angle: expected a finite number"),
    ("multipolygon", {"parts": []}, "expected at least 1 polygon"),
    ("multipolygon", {"parts": [[]]}, r"parts\[0\]: expected an object, got list"),
    ("cuboid", {"points": [[0, 0]] * 4, "faces": [[0, 1, 2, 3]] * 2}, "expected exactly 3 faces, got 2"),
    ("cuboid", {"points": [[0, 0]] * 4, "faces": [[0, 1, 2, 4]] * 3},
     r"faces\[0\]: expected 4 point indices in 0..3"),
    ("graph", {"nodes": {}}, "expected at least 1 node"),
    ("graph", {"nodes": {"a": {"loc": [1]}}}, r"nodes\['a'\].loc: expected \[x, y\]"),
    ("graph", {"nodes": {"a": {"loc": [1, 2], "disabled": 1}}}, "disabled: expected true or false"),
    ("graph", {"nodes": {"a": [1, 2]}}, "expected an object with 'loc'"),
    ("cuboid_2d", {"vertices": {"x": {"loc": [0, 0]}}}, "expected the 8 cuboid_2d vertex names"),
    ("bitmap", {"bitmap": {"origin": [0, 0]}}, "missing field 'bitmap.data'"),
    ("bitmap", {"bitmap": {"data": "eJw="}}, "missing field 'bitmap.origin'"),
    ("bitmap", {"bitmap": {"origin": [0, 0], "data": "abcde"}}, "expected base64 text, got invalid"),
    ("bitmap", {"bitmap": {"origin": [0, 0], "data": b64(b"hello")}}, "expected a PNG"),
    ("bitmap", {"bitmap": {"origin": [0, 0], "data": b64(b"x" * 50, wrap=False)}}, "got neither"),
    ("bitmap", {"bitmap": {"origin": [0, 0], "data": base64.b64encode(
        zlib.compress(b"\x89PNG\r\n\x1a\n" * 9)[:-6]).decode()}}, "truncated"),
    ("bitmap", {"bitmap": {"origin": [0, 0], "data": b64(png_bytes(np.zeros((4, 4), np.uint8)))}},
     "expected at least one set pixel, got an empty 4x4 mask"),
    ("bitmap", {"bitmap": {"origin": [0, 0], "data": b64(png_bytes(np.ones((4, 4), np.uint8))[:50])}},
     "expected a complete PNG ending with IEND, got a truncated one"),
    ("bitmap", {"bitmap": {"origin": [0, 0], "data": b64(png_bytes(np.ones((4, 4), np.uint8))[:-1] + b"x")}},
     "got a bad CRC in chunk b'IEND'"),
    ("bitmap", {"bitmap": {"origin": [0, 0], "data": b64(bad_idat_png())}}, "expected a decodable PNG"),
    ("hexagon", {}, "geometry: expected one of alpha_mask, bitmap, cuboid, cuboid_2d"),
    (None, {}, "got NoneType None"),
]


@pytest.mark.parametrize("name,payload,message", BAD_PAYLOADS)
def test_bad_payloads_say_expected_and_got(name, payload, message):
    with pytest.raises(AnnotationError, match=message):
        parse_geometry(name, payload)


# --- bitmaps -----------------------------------------------------------------------------------

@pytest.mark.parametrize("lenient", [False, True])
def test_broken_idat_refused_whatever_pillows_truncation_flag(monkeypatch, lenient):
    from PIL import ImageFile
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", lenient)
    with pytest.raises(AnnotationError, match="expected a decodable PNG"):
        parse_geometry("bitmap", {"bitmap": {"origin": [0, 0], "data": b64(bad_idat_png())}})


def crafted_png(width, height):
    """A PNG whose IHDR declares width x height, followed by junk: only the header is valid."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    chunk = struct.pack(">I", 13) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return b"\x89PNG\r\n\x1a\n" + chunk + b"\x00" * 64


def test_declared_png_size_checked_before_decoding():
    assert png_size_wh(crafted_png(123, 45)) == (123, 45)
    payload = {"bitmap": {"origin": [0, 0], "data": b64(crafted_png(100_000, 100_000))}}
    t0 = time.perf_counter()
    with pytest.raises(LimitError, match="got declared size 100000x100000"):
        parse_geometry("bitmap", payload)
    assert time.perf_counter() - t0 < 5   # decoding 10**10 pixels would take minutes (and 10 GB)
    small = {"bitmap": {"origin": [0, 0], "data": b64(png_bytes(np.ones((20, 20), np.uint8)))}}
    with pytest.raises(LimitError, match="1..399 pixels, got declared size 20x20"):
        parse_geometry("bitmap", small, max_bitmap_pixels=399)
    assert parse_geometry("bitmap", small, max_bitmap_pixels=400).mask.shape == (20, 20)


def test_zlib_layer_size_is_bounded(monkeypatch):
    monkeypatch.setattr(sly_geometry, "MAX_PNG_BYTES", 1000)
    payload = {"bitmap": {"origin": [0, 0], "data": b64(crafted_png(5, 5) + b"\0" * 5000)}}
    with pytest.raises(LimitError, match="expands beyond 1000 bytes"):
        parse_geometry("bitmap", payload)


def test_bitmap_crop_shifts_origin():
    mask = np.zeros((10, 12), bool)
    mask[3:6, 4:9] = True
    mask[4, 5] = False
    payload = {"bitmap": {"origin": [100.7, 50], "data": sly.Bitmap.data_2_base64(mask)}}
    g = parse_geometry("bitmap", payload)
    assert isinstance(g, Bitmap) and g.mask.dtype == bool
    assert g.origin_xy == (104, 53)
    assert np.array_equal(g.mask, mask[3:6, 4:9])


def encode_variant(mask, rng, kind):
    """A PNG holding ``mask`` (bool) in one of the encodings met in the wild."""
    m8 = mask.astype(np.uint8)
    if kind == "sdk":  # 1-bit palette, index 0 transparent
        return zlib.decompress(base64.b64decode(sly.Bitmap.data_2_base64(mask)))
    if kind == "rgba":  # the real projects: RGB == alpha in {0, 255}
        return png_bytes(np.dstack([m8 * 255] * 4))
    if kind == "rgba_colour":  # colour under transparent pixels: only alpha counts
        rgb = rng.integers(0, 256, mask.shape + (3,), dtype=np.uint8)
        return png_bytes(np.dstack([rgb, m8 * rng.integers(1, 256, mask.shape, dtype=np.uint8)]))
    if kind == "la":
        return png_bytes(np.dstack([rng.integers(0, 256, mask.shape, dtype=np.uint8), m8 * 200]), "LA")
    if kind == "grey":
        return png_bytes(m8 * rng.integers(1, 256, mask.shape, dtype=np.uint8))
    if kind == "grey_trns":  # tRNS on grey is ignored by OpenCV: values count
        return png_bytes(m8 * 7, transparency=0)
    if kind == "one_bit":
        return png_bytes(mask, "1")
    if kind == "grey16":
        return png_bytes((m8 * rng.integers(1, 65536, mask.shape)).astype(np.uint16))
    if kind == "palette_alpha":  # tRNS with several alpha values
        img = Image.fromarray(m8 * rng.integers(1, 4, mask.shape, dtype=np.uint8), "L").convert("P")
        buf = io.BytesIO()
        img.save(buf, format="PNG", transparency=bytes([0, 90, 255, 1]))
        return buf.getvalue()
    if kind == "palette_inverted":  # white transparent background, black opaque mask
        img = Image.fromarray(m8, "L").convert("P")
        img.putpalette([255, 255, 255, 0, 0, 0])
        buf = io.BytesIO()
        img.save(buf, format="PNG", transparency=0)
        return buf.getvalue()
    if kind == "rgb_trns":
        rgb = np.dstack([m8 * rng.integers(1, 256, mask.shape, dtype=np.uint8)] * 3)
        return png_bytes(rgb, transparency=(0, 0, 0))
    raise ValueError(kind)


BITMAP_KINDS = ["sdk", "rgba", "rgba_colour", "la", "grey", "grey_trns", "one_bit", "grey16",
                "palette_alpha", "palette_inverted", "rgb_trns"]


def random_mask(rng):
    h, w = rng.integers(1, 40, size=2)
    mask = rng.random((h, w)) < rng.uniform(0.05, 0.9)
    mask[rng.integers(h), rng.integers(w)] = True
    return mask


def test_bitmap_matches_sdk_on_random_masks():
    """zlib(PNG) in every encoding: same pixels and origin as sly.Bitmap.from_json."""
    rng = np.random.default_rng(1234)
    cases = 0
    for i in range(440):
        kind = BITMAP_KINDS[i % len(BITMAP_KINDS)]
        mask = random_mask(rng)
        origin = [float(rng.uniform(-50, 200)), float(rng.uniform(-50, 200))]
        payload = {"bitmap": {"origin": origin, "data": b64(encode_variant(mask, rng, kind))}}
        ours = parse_geometry("bitmap", payload)
        ref = sly.Bitmap.from_json(payload)
        assert ours.origin_xy == (ref.origin.col, ref.origin.row), kind
        assert np.array_equal(ours.mask, ref.data), kind
        cases += 1
    assert cases == 440


def test_bare_png_bitmap_matches_sdk():
    """Base64 of a PNG without the zlib layer (the SDK's fallback path; RGBA as in real data)."""
    rng = np.random.default_rng(99)
    for _ in range(60):
        mask = random_mask(rng)
        payload = {"bitmap": {"origin": [3, 4], "data": b64(encode_variant(mask, rng, "rgba"), False)}}
        ours, ref = parse_geometry("bitmap", payload), sly.Bitmap.from_json(payload)
        assert ours.origin_xy == (ref.origin.col, ref.origin.row)
        assert np.array_equal(ours.mask, ref.data)


def test_rgb_without_alpha_is_accepted_where_sdk_refuses():
    mask = np.zeros((5, 5), bool)
    mask[1:3, 2:4] = True
    rgb = np.dstack([mask.astype(np.uint8) * 9, np.zeros((5, 5), np.uint8), np.zeros((5, 5), np.uint8)])
    payload = {"bitmap": {"origin": [0, 0], "data": b64(png_bytes(rgb))}}
    g = parse_geometry("bitmap", payload)
    assert g.origin_xy == (2, 1) and g.mask.all() and g.mask.shape == (2, 2)
    with pytest.raises(Exception):
        sly.Bitmap.from_json(payload)


def test_alpha_mask_matches_sdk_on_random_masks():
    rng = np.random.default_rng(4321)
    for i in range(200):
        mask = random_mask(rng)
        values = (mask * rng.integers(1, 256, mask.shape)).astype(np.uint8)
        kind = ["sdk", "la", "grey16", "one_bit"][i % 4]
        if kind == "sdk":  # L with transparency=0, as the SDK writes
            raw = zlib.decompress(base64.b64decode(sly.AlphaMask.data_2_base64(values)))
        elif kind == "la":
            raw = png_bytes(np.dstack([values, rng.integers(0, 256, mask.shape, dtype=np.uint8)]), "LA")
        elif kind == "grey16":
            raw = png_bytes(values.astype(np.uint16) * 257 + rng.integers(0, 256, mask.shape).astype(np.uint16))
        else:
            raw = png_bytes(mask, "1")
        payload = {"bitmap": {"origin": [5.5, -2], "data": b64(raw)}}
        ours, ref = parse_geometry("alpha_mask", payload), sly.AlphaMask.from_json(payload)
        assert isinstance(ours, AlphaMask) and ours.alpha.dtype == np.uint8
        assert ours.origin_xy == (ref.origin.col, ref.origin.row), kind
        assert np.array_equal(ours.alpha, ref.data), kind


def test_alpha_mask_from_colour_png_is_luma_within_one():
    rng = np.random.default_rng(7)
    worst = 0
    for _ in range(40):
        mask = random_mask(rng)
        rgb = rng.integers(0, 256, mask.shape + (3,), dtype=np.uint8) * mask[..., None]
        payload = {"bitmap": {"origin": [0, 0], "data": b64(png_bytes(rgb.astype(np.uint8)))}}
        ours, ref = parse_geometry("alpha_mask", payload), sly.AlphaMask.from_json(payload)
        a = on_canvas(ours.origin_xy, ours.alpha)
        b = on_canvas((ref.origin.col, ref.origin.row), ref.data)
        worst = max(worst, int(np.abs(a - b).max()))
    assert worst <= 1


def on_canvas(origin_xy, values, size=64):
    """Place a cropped mask back on a size x size canvas (crops may differ by a rounded-off pixel)."""
    out = np.zeros((size, size), np.int64)
    x, y = origin_xy
    out[y:y + values.shape[0], x:x + values.shape[1]] = values
    return out
