"""Property tests for the COCO, CVAT XML and Segmentation mask 1.1 readers and ``SafeZip``:
random JSON, random XML, random bytes, PNG-ish bytes and byte-mutated real files (the
``tests/data`` copies) thrown at every parse path. Only ``maskcore.errors`` types may escape
(never IndexError, KeyError, TypeError, ZeroDivisionError, RecursionError, MemoryError), no
example may hang (hypothesis deadline), and what parses holds its invariants (sizes, finite
coordinates, bitmaps inside the canvas; COCO RLE equal to pycocotools' decode). Mutated zips are
refused or read exactly, and nothing is written anywhere. ``_long`` variants run many more
examples (``MASKCORE_FUZZ_LONG=1``; ``MASKCORE_FUZZ_EXAMPLES=N`` sets how many, default 20,000)."""

from __future__ import annotations

import io
import json
import math
import os
import xml.etree.ElementTree as ET

import fsspec
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers.oracles import load
from maskcore.errors import (
    AnnotationError,
    ItemError,
    ItemSourceError,
    LimitError,
    ProjectError,
    UnsafePathError,
)
from maskcore.io.zipsafe import SafeZip
from maskcore.model import geometry as G
from maskcore.readers.coco import (
    CocoSource,
    index_coco,
    items_table,
    meta_from_index,
    parse_item,
    rle_counts_from_string,
)
from maskcore.readers.cvat_xml import CvatXmlSource, parse_xml, read_document
from maskcore.readers.cvat_xml import parse_annotation as cvat_parse
from maskcore.readers.voc_masks import (
    LabelMap,
    VocMasksSource,
    frame,
    index_voc_files,
    parse_labelmap,
    parse_voc_annotation,
    voc_labelmap,
)

from .fuzz import HOSTILE_NUMBERS, JSON, fix_png_crcs, mutate
from .projects import DATA, coco_doc, long, small_cvat_xml, voc_masks_files, zip_of

MAX_PIXELS = 40_000   # every bitmap / mask decode in these tests is held to this many pixels
CI = settings(max_examples=60, derandomize=True, deadline=3000, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
LONG = settings(max_examples=int(os.environ.get("MASKCORE_FUZZ_EXAMPLES", "20000")), deadline=10_000, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
FINITE_LIMIT = 2**31


def _finite(arr: np.ndarray) -> None:
    assert arr.dtype == np.float64 and arr.ndim == 2 and arr.shape[1] == 2, arr
    assert np.isfinite(arr).all() and np.abs(arr).max(initial=0) <= FINITE_LIMIT


def check_geometry(geom, size_hw) -> None:
    """Invariants of a parsed COCO / CVAT geometry: finite float coordinates, tight bitmaps."""
    if isinstance(geom, G.Polygon):
        _finite(geom.exterior_xy)
        assert len(geom.exterior_xy) >= 3
    elif isinstance(geom, G.MultiPolygon):
        assert len(geom.parts) >= 2
        for part in geom.parts:
            check_geometry(part, size_hw)
    elif isinstance(geom, G.Polyline):
        _finite(geom.points_xy)
        assert len(geom.points_xy) >= 2
    elif isinstance(geom, G.Box):
        values = [geom.x0, geom.y0, geom.x1, geom.y1, geom.angle]
        assert all(type(v) is float and math.isfinite(v) for v in values)
        assert geom.x0 <= geom.x1 and geom.y0 <= geom.y1
    elif isinstance(geom, G.Point):
        assert math.isfinite(geom.x) and math.isfinite(geom.y)
    elif isinstance(geom, G.Bitmap):
        assert geom.mask.dtype == bool and geom.mask.size <= MAX_PIXELS
        assert all(type(v) is int for v in geom.origin_xy)
        if geom.mask.size:
            assert geom.mask[0].any() and geom.mask[-1].any()          # cropped tight
            assert geom.mask[:, 0].any() and geom.mask[:, -1].any()
    else:
        raise AssertionError(f"unexpected geometry {geom!r}")  # noqa: TRY004 - a test failure


def check_size(size_hw) -> None:
    h, w = size_hw
    assert type(h) is int and type(w) is int and 0 < h <= FINITE_LIMIT and 0 < w <= FINITE_LIMIT


# --- COCO ----------------------------------------------------------------------------------------

CATEGORY_NAMES = {1: "cat", 2: "dog", "3": "cat"}
COCO_META = meta_from_index(index_coco(coco_doc([], [])))
RLE_CHARS = st.text(st.sampled_from([chr(c) for c in range(48, 112)] + ["/", "p", "~", "é", " "]),
                    max_size=30)


@st.composite
def coco_rle(draw, h: int, w: int):
    """RLE: pycocotools' own encoding of a random mask (maybe mutated), uncompressed, or junk."""
    cm = load("pycocotools.mask")
    kind = draw(st.sampled_from(["valid", "mutated", "list", "junk", "size"]))
    size = [h, w] if kind != "size" else draw(JSON)
    if kind == "list":
        return {"size": size, "counts": draw(st.lists(st.one_of(st.integers(-3, h * w + 3),
                                                                  HOSTILE_NUMBERS), max_size=8))}
    if kind == "junk":
        return {"size": size, "counts": draw(st.one_of(RLE_CHARS, JSON))}
    bits = draw(st.lists(st.booleans(), min_size=h * w, max_size=h * w))
    mask = np.asfortranarray(np.array(bits, np.uint8).reshape(h, w))
    counts = cm.encode(mask)["counts"].decode("ascii")
    if kind == "mutated" and counts:
        chars = list(counts)
        for _ in range(draw(st.integers(1, 3))):
            op, at = draw(st.sampled_from(["set", "del", "ins"])), draw(st.integers(0, len(chars)))
            if op == "set" and at < len(chars):
                chars[at] = chr(draw(st.integers(48, 111)))
            elif op == "del" and at < len(chars):
                del chars[at]
            else:
                chars.insert(at, chr(draw(st.integers(48, 111))))
        counts = "".join(chars)
    return {"size": size, "counts": counts}


@st.composite
def coco_item(draw):
    """One item's inline JSON: an image entry (often a small valid size) and hostile annotations."""
    h, w = draw(st.integers(1, 12)), draw(st.integers(1, 12))
    image = {"id": 1, "file_name": "a.jpg",
             "height": draw(st.one_of(st.just(h), HOSTILE_NUMBERS, JSON)),
             "width": draw(st.one_of(st.just(w), HOSTILE_NUMBERS, JSON))}
    ring = st.lists(HOSTILE_NUMBERS, max_size=10)
    segmentation = st.one_of(st.lists(ring, max_size=3), coco_rle(h, w), st.just([]), st.none(), JSON,
                             st.lists(st.lists(st.floats(-5, 20), min_size=6, max_size=10), min_size=1,
                                      max_size=3))
    annotation = st.fixed_dictionaries(
        {"category_id": st.one_of(st.sampled_from([1, 2, "3", 0, 4, None, 1.0, True]), JSON),
         "segmentation": segmentation},
        optional={"bbox": st.one_of(st.lists(HOSTILE_NUMBERS, max_size=5), JSON),
                  "attributes": st.one_of(st.fixed_dictionaries({"rotation": HOSTILE_NUMBERS}), JSON),
                  "iscrowd": JSON, "image_id": JSON})
    annotations = draw(st.one_of(st.lists(st.one_of(annotation, JSON), max_size=4), JSON))
    return draw(st.sampled_from([{"image": image, "annotations": annotations},
                                 {"image": draw(JSON), "annotations": annotations}]))


def check_coco_item(value) -> None:
    try:
        annotation = parse_item(value, CATEGORY_NAMES, COCO_META, "ds/a.jpg",
                                max_bitmap_pixels=MAX_PIXELS)
    except (AnnotationError, LimitError) as exc:
        assert str(exc).startswith("ds/a.jpg"), str(exc)
        return
    check_size(annotation.size_hw)
    anns = value["annotations"] if isinstance(value, dict) else json.loads(value)["annotations"]
    assert [lb.object_index for lb in annotation.labels] == list(range(len(anns)))
    for label, ann in zip(annotation.labels, anns):
        assert label.class_title in ("cat", "dog")
        check_geometry(label.geometry, annotation.size_hw)
        seg = ann.get("segmentation")
        if isinstance(seg, dict):   # pycocotools decodes the same RLE to the same pixels
            cm = load("pycocotools.mask")
            h, w = annotation.size_hw
            rle = ({"size": [h, w], "counts": seg["counts"].encode()} if isinstance(seg["counts"], str)
                   else cm.frPyObjects(seg, h, w))
            ref = cm.decode(rle).astype(bool)
            got = np.zeros((h, w), bool)
            (x, y), (bh, bw) = label.geometry.origin_xy, label.geometry.mask.shape
            got[y:y + bh, x:x + bw] = label.geometry.mask
            assert np.array_equal(got, ref)


@CI
@given(coco_item())
def test_coco_item_hostile_annotations(value):
    check_coco_item(value)


@CI
@given(st.one_of(JSON, st.binary(max_size=200), st.builds(lambda n: b"[" * n, st.integers(1, 100_000)),
                 coco_item().map(lambda v: json.dumps(v, default=str).encode())))
def test_coco_item_random_json_and_bytes(value):
    check_coco_item(value)


@long
@LONG
@given(st.one_of(coco_item(), JSON, st.binary(max_size=300)))
def test_coco_item_long(value):
    check_coco_item(value)


def check_coco_document(doc) -> None:
    """``index_coco`` -> meta -> item table -> every item's inline JSON parsed."""
    try:
        index = index_coco(doc)
    except ProjectError as exc:
        assert str(exc).startswith("COCO JSON"), str(exc)
        return
    meta = meta_from_index(index)
    assert len({c.title for c in meta.classes}) == len(meta.classes)
    table = items_table(index, "ds", {"a.jpg": 3, "sub/b.png": 4})
    keys = list(zip(table.column("dataset").to_pylist(), table.column("item").to_pylist()))
    assert keys == sorted(keys) and len(set(keys)) == len(keys) == len(index["images"])
    for row in table.to_pylist():
        assert row["img_path"] in (None, "a.jpg", "sub/b.png")
        try:
            parse_item(row["ann_inline"], index["names"], meta, f"ds/{row['item']}",
                       max_bitmap_pixels=MAX_PIXELS)
        except (AnnotationError, LimitError):
            pass


COCO_DOCS = st.one_of(
    JSON,
    st.fixed_dictionaries({
        "images": st.one_of(st.lists(st.one_of(st.fixed_dictionaries(
            {"id": st.one_of(st.integers(0, 3), st.sampled_from(["1", "x"]), JSON),
             "file_name": st.one_of(st.sampled_from(["a.jpg", "sub/b.png", "../../etc/passwd",
                                                     "/etc/passwd", "a\udcff.jpg", "", ".", "C:\\x"]),
                                    JSON)},
            optional={"height": st.one_of(st.integers(1, 9), HOSTILE_NUMBERS, JSON),
                      "width": st.one_of(st.integers(1, 9), HOSTILE_NUMBERS, JSON)}), JSON), max_size=4), JSON),
        "categories": st.one_of(st.lists(st.one_of(st.fixed_dictionaries(
            {"id": st.one_of(st.integers(0, 3), JSON), "name": st.one_of(st.sampled_from(["cat", "dog", ""]),
                                                                          JSON)}), JSON), max_size=4), JSON),
        "annotations": st.one_of(st.lists(st.one_of(st.fixed_dictionaries(
            {"image_id": st.one_of(st.integers(0, 3), JSON), "category_id": st.one_of(st.integers(0, 3), JSON),
             "segmentation": JSON, "bbox": JSON}), JSON), max_size=5), JSON)}))


@CI
@given(COCO_DOCS)
def test_coco_document_random(doc):
    check_coco_document(doc)


@long
@LONG
@given(COCO_DOCS)
def test_coco_document_long(doc):
    check_coco_document(doc)


COCO_REAL = (DATA / "coco_labelme" / "annotations.json").read_bytes()


def check_coco_source_bytes(data: bytes) -> None:
    """The whole source on a memory filesystem: open (parse once), list, parse every item."""
    fs = fsspec.filesystem("memory")
    fs.pipe("/fuzzcoco/instances_val.json", data)
    fs.pipe("/fuzzcoco/JPEGImages/2011_000003.jpg", b"not read")
    try:
        src = CocoSource.open_source("memory://fuzzcoco/instances_val.json")
        meta = src.read_meta()
        rows = src.list_items().to_pylist()
    except ProjectError:
        return
    for row in rows:
        try:
            annotation = src.parse_annotation(src.item_annotation(row), meta, "val/x",
                                              max_bitmap_pixels=MAX_PIXELS)
        except (AnnotationError, LimitError) as exc:   # read by its spans: located at its own name
            assert str(exc).startswith(("val/x", f"val/{row['item']}/object ")), str(exc)
            continue
        check_size(annotation.size_hw)
        for label in annotation.labels:
            check_geometry(label.geometry, annotation.size_hw)


@st.composite
def mutated_coco(draw) -> bytes:
    """The real labelme COCO file with a few bytes changed, or one of its values replaced."""
    if draw(st.booleans()):
        return mutate(draw, COCO_REAL)
    doc = json.loads(COCO_REAL)
    key = draw(st.sampled_from(["images", "annotations", "categories"]))
    entries = doc[key]
    at = draw(st.integers(0, len(entries) - 1))
    field = draw(st.sampled_from(sorted(entries[at]) + ["new"]))
    entries[at][field] = draw(st.one_of(JSON, HOSTILE_NUMBERS))
    return json.dumps(doc, allow_nan=True, default=str).encode()


@CI
@given(mutated_coco())
def test_coco_source_mutated_real_file(data):
    check_coco_source_bytes(data)


@long
@LONG
@given(mutated_coco())
def test_coco_source_mutated_real_file_long(data):
    check_coco_source_bytes(data)


@CI
@given(st.one_of(RLE_CHARS, st.text(max_size=20), st.binary(max_size=20)))
def test_rle_counts_from_string(text):
    try:
        counts = rle_counts_from_string(text)
    except (ValueError, UnicodeEncodeError):
        return
    assert counts.dtype == np.int64 and counts.ndim == 1


# --- CVAT XML ------------------------------------------------------------------------------------

CVAT_SMALL = small_cvat_xml()
CVAT_META, _CVAT_IMAGES = read_document(parse_xml(CVAT_SMALL, ProjectError))
CVAT_LABELS = [c.title for c in CVAT_META.classes]
NUMBER_TEXT = st.one_of(
    st.sampled_from(["0", "1", "3", "-2.5", "3e2", "nan", "NaN", "inf", "-inf", "1e999", "1_0", "",
                     " 7 ", "0x10", "+4", ".5", "5.", "1e-400", "9" * 30, "2147483648",
                     "-2147483649", "٣", "1,5", "--1"]),
    HOSTILE_NUMBERS.map(repr), st.text(max_size=6), st.integers(1, 30).map(str))
POINTS_TEXT = st.one_of(
    st.lists(st.tuples(NUMBER_TEXT, NUMBER_TEXT).map(",".join), max_size=6).map(";".join),
    st.lists(st.tuples(st.integers(0, 30), st.integers(0, 30)).map(lambda t: f"{t[0]},{t[1]}"),
             min_size=1, max_size=6).map(";".join),
    st.text(max_size=20))
RLE_TEXT = st.one_of(st.lists(st.integers(0, 40), max_size=12).map(lambda v: ", ".join(map(str, v))),
                     st.sampled_from(["", "1", " 1 , 2 ", "9" * 16, "1,,2", "-1, 3", "0, 0"]),
                     st.text(max_size=12))
ATTRS = ["xtl", "ytl", "xbr", "ybr", "rotation", "points", "left", "top", "width", "height", "rle",
         "cx", "cy", "rx", "ry", "z_order", "group_id", "frame", "outside"]


@st.composite
def cvat_shape(draw) -> ET.Element:
    tag = draw(st.sampled_from(["box", "polygon", "polyline", "points", "mask", "ellipse", "cuboid",
                                "skeleton", "tag", "junk"]))
    attrs = {"label": draw(st.one_of(st.sampled_from(CVAT_LABELS + ["", "nope"]), st.text(max_size=4)))}
    for key in draw(st.lists(st.sampled_from(ATTRS), max_size=8, unique=True)):
        attrs[key] = draw(POINTS_TEXT if key == "points" else RLE_TEXT if key == "rle" else NUMBER_TEXT)
    elem = ET.Element(tag, attrs)
    for _ in range(draw(st.integers(0, 2))):
        a = ET.SubElement(elem, draw(st.sampled_from(["attribute", "other"])))
        if draw(st.booleans()):
            a.set("name", draw(st.text(max_size=4)))
        a.text = draw(st.one_of(st.none(), st.text(max_size=4)))
    return elem


@st.composite
def cvat_image(draw) -> bytes:
    """An ``<image>`` element as ``ann_inline`` holds it: hostile sizes and shapes."""
    attrs = {"id": "0", "name": "x.png"}
    for key in ("height", "width"):
        value = draw(st.one_of(st.integers(1, 30).map(str), NUMBER_TEXT, st.none()))
        if value is not None:
            attrs[key] = value
    image = ET.Element(draw(st.sampled_from(["image", "image", "image", "box"])), attrs)
    image.extend(draw(st.lists(cvat_shape(), max_size=5)))
    data = ET.tostring(image, encoding="unicode").encode("utf-8")
    return mutate(draw, data) if draw(st.integers(0, 4)) == 0 else data


def check_cvat_image(data: bytes) -> None:
    try:
        annotation = cvat_parse(data, CVAT_META, "ds/x.png", max_bitmap_pixels=MAX_PIXELS)
    except (AnnotationError, LimitError) as exc:
        assert str(exc).startswith("ds/x.png"), str(exc)
        return
    check_size(annotation.size_hw)
    for label in annotation.labels:
        assert label.class_title in CVAT_LABELS
        assert type(label.z_order) is int and type(label.group) is int and label.group >= 0
        check_geometry(label.geometry, annotation.size_hw)


@CI
@given(cvat_image())
def test_cvat_image_hostile_shapes(data):
    check_cvat_image(data)


CVAT_REAL_IMAGES = [im["ann_inline"] for im in _CVAT_IMAGES]


@CI
@given(st.sampled_from(CVAT_REAL_IMAGES), st.data())
def test_cvat_image_mutated_real(seed, data):
    check_cvat_image(mutate(data.draw, seed))


@CI
@given(st.one_of(st.binary(max_size=200), st.text(max_size=100).map(str.encode),
                 st.builds(lambda n: b"<image>" * n, st.integers(1, 50_000))))
def test_cvat_image_random_bytes(data):
    check_cvat_image(data)


@long
@LONG
@given(st.one_of(cvat_image(), st.binary(max_size=300),
                 st.tuples(st.sampled_from(CVAT_REAL_IMAGES), st.randoms()).map(
                     lambda t: bytes(t[1].getrandbits(8) if t[1].random() < 0.002 else b
                                     for b in t[0]))))
def test_cvat_image_long(data):
    check_cvat_image(data)


def check_cvat_document(data: bytes) -> None:
    """The whole source on a memory filesystem: parse, meta, list, parse every image."""
    fs = fsspec.filesystem("memory")
    fs.pipe("/fuzzcvat/annotations.xml", data)
    fs.pipe("/fuzzcvat/images/synthetic.png", b"not read")
    try:
        src = CvatXmlSource.open_source("memory://fuzzcvat/annotations.xml")
        meta = src.read_meta()
        rows = src.list_items().to_pylist()
    except ProjectError as exc:
        assert "annotations.xml" in str(exc), str(exc)
        return
    assert len({c.title for c in meta.classes}) == len(meta.classes)
    for row in rows:
        assert row["img_path"] in (None, "synthetic.png")
        try:
            annotation = src.parse_annotation(src.item_annotation(row), meta, "d/x",
                                              max_bitmap_pixels=MAX_PIXELS)
        except (AnnotationError, LimitError):
            continue
        check_size(annotation.size_hw)
        for label in annotation.labels:
            check_geometry(label.geometry, annotation.size_hw)


@st.composite
def random_xml(draw) -> bytes:
    """A random element tree with CVAT's vocabulary (meta, labels, images, tracks, shapes)."""
    tags = ["annotations", "meta", "project", "task", "labels", "label", "name", "color", "type",
            "parent", "attributes", "attribute", "image", "track", "box", "polygon", "mask", "tag",
            "points", "ellipse"]

    def build(depth: int) -> ET.Element:
        elem = ET.Element(draw(st.sampled_from(tags)), {k: draw(NUMBER_TEXT) for k in draw(
            st.lists(st.sampled_from(ATTRS + ["name", "label", "id", "subset"]), max_size=3, unique=True))})
        elem.text = draw(st.one_of(st.none(), st.sampled_from(CVAT_LABELS + ["#ff0000", "tag", "x"]),
                                   st.text(max_size=5)))
        if depth < 4:
            elem.extend(build(depth + 1) for _ in range(draw(st.integers(0, 3))))
        return elem

    root = build(0)
    if draw(st.booleans()):
        root.tag = "annotations"
    return ET.tostring(root, encoding="utf-8", xml_declaration=draw(st.booleans()))


CVAT_DOCS = st.one_of(
    random_xml(), st.binary(max_size=300), st.just(CVAT_SMALL),
    st.builds(lambda n: b"<annotations>" + b"<a>" * n, st.integers(1, 50_000)),
    st.sampled_from([b'<!DOCTYPE a [<!ENTITY x "y">]><annotations>&x;</annotations>',
                     b'<?xml version="1.0" encoding="UTF-16"?><annotations/>',
                     "<annotations>\u00e9</annotations>".encode("latin-1"), b"", b"\xef\xbb\xbf"]))


@st.composite
def mutated_cvat(draw) -> bytes:
    return mutate(draw, CVAT_SMALL)


@CI
@given(st.one_of(CVAT_DOCS, mutated_cvat()))
def test_cvat_document_random_and_mutated(data):
    check_cvat_document(data)


@long
@LONG
@given(st.one_of(CVAT_DOCS, mutated_cvat(), mutated_cvat()))
def test_cvat_document_long(data):
    check_cvat_document(data)


# --- Segmentation mask 1.1 -----------------------------------------------------------------------

VOC_FILES = voc_masks_files()
VOC_REAL = {p: d for p, d in VOC_FILES.items() if p.endswith(".png")}
VOC_LABELS = voc_labelmap()
SMALL_LABELS = LabelMap(("background", "cat", "dog"), ((0, 0, 0), (128, 0, 0), (0, 128, 0)))


def _pil_png(values: np.ndarray, mode: str) -> bytes:
    from PIL import Image
    if mode == "P":
        img = Image.fromarray(values, "P")
        img.putpalette([v for i in range(256) for v in ((i * 37) % 256, i, 255 - i)])
    elif mode == "1":
        img = Image.fromarray(values % 2 * 255, "L").convert("1")
    else:
        img = Image.fromarray(values)   # uint8 (H, W[, 3|4]) -> L / RGB / RGBA, uint16 -> I;16
    buf = io.BytesIO()
    img.save(buf, "PNG", optimize=False)
    return buf.getvalue()


@st.composite
def mask_png(draw, h: int, w: int) -> bytes | None:
    """A class or object mask: synthetic in every PNG mode, the real one (maybe mutated), junk."""
    kind = draw(st.sampled_from(["L", "P", "RGB", "RGBA", "I;16", "1", "real", "junk", "none"]))
    if kind == "none":
        return None
    if kind == "junk":
        return draw(st.binary(max_size=80))
    if kind == "real":
        data = draw(st.sampled_from(sorted(VOC_REAL.values())))
        return mutate(draw, data, fix_png=draw(st.booleans())) if draw(st.booleans()) else data
    channels = {"RGB": 3, "RGBA": 4}.get(kind, 0)
    dtype = np.uint16 if kind == "I;16" else np.uint8
    top = {"L": 4, "P": 4, "1": 2, "I;16": 300}.get(kind, 256)
    shape = (h, w, channels) if channels else (h, w)
    n = int(np.prod(shape))
    flat = draw(st.lists(st.sampled_from([0, 1, 2, 3, 255, 128, top - 1]) if kind in ("RGB", "RGBA")
                         else st.integers(0, top - 1) | st.just(255), min_size=n, max_size=n))
    values = np.array(flat, dtype=np.int64).clip(0, np.iinfo(dtype).max).astype(dtype).reshape(shape)
    data = _pil_png(values, kind)
    return fix_png_crcs(mutate(draw, data)) if draw(st.integers(0, 5)) == 0 else data


@st.composite
def voc_framed(draw) -> bytes:
    h, w = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    cls, obj = draw(mask_png(h, w)), draw(mask_png(h, w))
    size = draw(st.one_of(st.none(), st.tuples(st.integers(1, 9), st.integers(1, 9))))
    data = frame(cls, obj, size)
    kind = draw(st.sampled_from(["framed", "framed", "mutated", "header"]))
    if kind == "mutated":
        return mutate(draw, data)
    if kind == "header":
        head = draw(st.fixed_dictionaries({"cls": st.none() | JSON, "obj": st.none() | JSON,
                                           "size_hw": st.lists(HOSTILE_NUMBERS | JSON, max_size=3)
                                           | JSON}))
        return b"MCVOC1 " + json.dumps(head, default=str).encode() + b"\n" + draw(st.binary(max_size=40))
    return data


def check_voc(data: bytes, labels: LabelMap) -> None:
    try:
        annotation = parse_voc_annotation(data, labels, "object", "ds/x.png",
                                          max_bitmap_pixels=MAX_PIXELS)
    except (AnnotationError, LimitError) as exc:
        assert str(exc).startswith("ds/x.png"), str(exc)
        return
    check_size(annotation.size_hw)
    h, w = annotation.size_hw
    titles = set(labels.names) - {"background"} | {"object"}
    covered = np.zeros((h, w), np.int64)
    for label in annotation.labels:
        assert label.class_title in titles
        bm = label.geometry
        check_geometry(bm, annotation.size_hw)
        (x, y), (bh, bw) = bm.origin_xy, bm.mask.shape
        assert bm.mask.any() and 0 <= x and 0 <= y and x + bw <= w and y + bh <= h
        covered[y:y + bh, x:x + bw] += bm.mask
    assert covered.max(initial=0) <= 1   # objects never overlap: one instance or class per pixel


@CI
@given(voc_framed(), st.sampled_from([VOC_LABELS, SMALL_LABELS]))
def test_voc_masks_hostile_pngs(data, labels):
    check_voc(data, labels)


@CI
@given(st.one_of(st.binary(max_size=200), st.binary(max_size=60).map(lambda b: b"MCVOC1 " + b)))
def test_voc_masks_random_bytes(data):
    check_voc(data, SMALL_LABELS)


@long
@LONG
@given(st.one_of(voc_framed(), st.binary(max_size=300)), st.sampled_from([VOC_LABELS, SMALL_LABELS]))
def test_voc_masks_long(data, labels):
    check_voc(data, labels)


LABELMAP_LINES = st.one_of(
    st.tuples(st.text(max_size=5), st.one_of(st.just(""), st.tuples(*[st.integers(-1, 300)] * 3).map(
        lambda t: ",".join(map(str, t))), st.text(max_size=6)), st.text(max_size=3), st.text(max_size=3)
              ).map(":".join),
    st.text(max_size=12), st.sampled_from(["# comment", "", "background:0,0,0::"]))


def check_labelmap(text) -> None:
    try:
        labels = parse_labelmap(text)
    except ProjectError as exc:
        assert str(exc).startswith("labelmap.txt"), str(exc)
        return
    assert len(labels.names) == len(labels.colors) == len(set(labels.names)) == len(set(labels.colors))
    assert all(len(c) == 3 and all(0 <= v <= 255 for v in c) for c in labels.colors)


@CI
@given(st.one_of(st.lists(LABELMAP_LINES, max_size=6).map("\n".join), st.binary(max_size=100)))
def test_labelmap_random(text):
    check_labelmap(text)


@long
@LONG
@given(st.one_of(st.lists(LABELMAP_LINES, max_size=10).map("\n".join), st.binary(max_size=200)))
def test_labelmap_long(text):
    check_labelmap(text)


VOC_PATHS = st.lists(st.tuples(
    st.tuples(st.sampled_from(["SegmentationClass", "SegmentationObject", "JPEGImages", "ImageSets",
                               "x"]), st.sampled_from(["a", "b", "sub/a", "a.b", ""]),
              st.sampled_from([".png", ".PNG", ".jpg", ".txt", ""])).map(lambda t: f"{t[0]}/{t[1]}{t[2]}"),
    st.integers(0, 100)), max_size=10).map(dict)


@CI
@given(VOC_PATHS, st.dictionaries(st.sampled_from(["train", "val", ""]),
                                  st.lists(st.sampled_from(["a", "b", "c", "sub/a"]), max_size=4), max_size=3))
def test_index_voc_files(files, lists):
    table = index_voc_files(files, lists)
    keys = list(zip(table.column("dataset").to_pylist(), table.column("item").to_pylist()))
    assert keys == sorted(keys) and len(set(keys)) == len(keys)
    for row in table.to_pylist():
        for col in ("cls_path", "obj_path", "img_path"):
            assert row[col] is None or row[col] in files


# --- zips --------------------------------------------------------------------------------------

ZIP_SEEDS = [
    zip_of({f"p/{k}": v for k, v in VOC_FILES.items() if not k.startswith("JPEGImages")}),
    zip_of({"labelmap.txt": b"background:0,0,0::\ncat:128,0,0::\n", "SegmentationClass/a.png":
            VOC_REAL["SegmentationClass/2011_000003.png"], "ImageSets/Segmentation/train.txt": b"a\n"},
           compress=False),
    zip_of({"annotations.xml": CVAT_SMALL[:4000], "images/synthetic.png": b"x" * 50, "images/sub/": b""}),
]


def _structures(data: bytes) -> list[tuple[int, int]]:
    """(offset, length) of every local header, central record and end record in ``data``."""
    out = []
    for sig, length in ((b"PK\x03\x04", 30), (b"PK\x01\x02", 46), (b"PK\x05\x06", 22)):
        at = data.find(sig)
        while at >= 0:
            out.append((at, length))
            at = data.find(sig, at + 1)
    return out


@st.composite
def mutated_zip(draw) -> bytes:
    """A seed zip with header fields (sizes, offsets, name lengths, flags, attributes) or any
    bytes overwritten; sometimes a second central record pointing at the first member."""
    data = bytearray(draw(st.sampled_from(ZIP_SEEDS)))
    spots = _structures(bytes(data))
    for _ in range(draw(st.integers(1, 4))):
        if draw(st.integers(0, 3)) == 0:
            return mutate(draw, bytes(data))
        start, length = draw(st.sampled_from(spots))
        at = start + draw(st.integers(4, length - 1))
        width = draw(st.sampled_from([1, 2, 4]))
        value = draw(st.sampled_from([0, 1, 0xFF, 0xFFFF, 0xFFFFFFFF, 0x7FFFFFFF, 2**20, 2**31])
                     | st.integers(0, 2**32 - 1)) % (1 << (8 * width))
        data[at:at + width] = value.to_bytes(width, "little")[:len(data) - at]
    return bytes(data)


def check_zip(data: bytes) -> None:
    fs = fsspec.filesystem("memory")
    fs.pipe("/fuzzzip/a.zip", data)
    before = {p: bytes(f.getvalue()) for p, f in fs.store.items()}
    try:
        try:
            z = SafeZip(fs, "/fuzzzip/a.zip", max_member_bytes=2**24, max_total_bytes=2**25)
        except (UnsafePathError, ProjectError):
            return
        for name in z.names():
            parts = name.split("/")
            assert not name.startswith("/") and ".." not in parts and "" not in parts
            assert not any(ord(ch) < 32 for ch in name)
            try:
                out = z.read(name)
            except ItemSourceError:
                continue
            assert len(out) == z.size(name)
    finally:
        assert {p: bytes(f.getvalue()) for p, f in fs.store.items()} == before  # nothing written


@CI
@given(mutated_zip())
def test_safezip_mutated_headers(data):
    check_zip(data)


@long
@LONG
@given(mutated_zip())
def test_safezip_mutated_headers_long(data):
    check_zip(data)


def check_zip_sources(data: bytes) -> None:
    """A mutated zip through the readers that take zips: open, meta, list, every item parsed."""
    fs = fsspec.filesystem("memory")
    fs.pipe("/fuzzsrc/a.zip", data)
    for opener in (VocMasksSource.open_source, CvatXmlSource.open_source):
        try:
            src = opener("memory://fuzzsrc/a.zip")
            meta = src.read_meta()
            rows = src.list_items().to_pylist()
        except (ProjectError, UnsafePathError):
            continue
        for row in rows:
            where = f"{row['dataset']}/{row['item']}"
            try:
                src.parse_annotation(src.item_annotation(row), meta, where,
                                     max_bitmap_pixels=MAX_PIXELS)
                if row["img_path"]:
                    src.read_bytes(row["img_path"])
            except ItemError:
                continue


@CI
@given(mutated_zip())
def test_zip_sources_mutated(data):
    check_zip_sources(data)


@long
@LONG
@given(mutated_zip())
def test_zip_sources_mutated_long(data):
    check_zip_sources(data)


@pytest.mark.parametrize("size_hw", [["a", 2], [0, 5], [3, -5], [1e300, 2], [True, 2], [2**40, 1], [1]])
def test_voc_framing_size_is_checked(size_hw):
    """Found by fuzzing: a framing header with a size that is not two positive ints gave an
    ``Annotation`` of that size (strings, zero, floats) instead of an ``AnnotationError``."""
    head = json.dumps({"cls": None, "obj": None, "size_hw": size_hw}).encode()
    with pytest.raises(AnnotationError, match="^ds/x.png: expected the framing's size_hw"):
        parse_voc_annotation(b"MCVOC1 " + head + b"\n", SMALL_LABELS, "object", "ds/x.png")
    ok = json.dumps({"cls": None, "obj": None, "size_hw": [3, 4]}).encode()
    assert parse_voc_annotation(b"MCVOC1 " + ok + b"\n", SMALL_LABELS, "object", "ds/x").size_hw == (3, 4)
