"""COCO instances reader: meta, listing, every annotation of three real datasets, hostile input.

Oracle: pycocotools (``frPyObjects`` / ``merge`` / ``decode`` / ``encode``), which is what COCO
tools and CVAT use to turn COCO annotations into pixels; the Supervisely SDK validates meta.json.
Data (bundled, see their READMEs): tests/data/facade (roboflow, 3849 polygons),
tests/data/coco_labelme (labelme2coco: multi-ring, self-intersecting, out-of-bounds polygons,
category id 0), tests/data/coco_cvat_urban (CVAT export: uncompressed RLE on up to 40.9 Mpx
canvases, bbox-only boxes, some rotated, unused tag categories).
"""

from __future__ import annotations

import dataclasses
import json
import math
import pickle
from pathlib import Path

import fsspec
import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers.oracles import load, oracle
from maskcore.errors import AnnotationError, ItemError, LimitError, ProjectError, UnknownClassError
from maskcore.kernel import draw
from maskcore.kernel.palette import class_colors
from maskcore.model import geometry as G
from maskcore.readers.coco import (
    ITEMS_SCHEMA,
    CocoSource,
    _coords,
    dataset_name,
    index_coco,
    items_table,
    meta_from_index,
    parse_geometry,
    parse_item,
    rle_counts_from_string,
    rle_to_bitmap,
)

M = oracle("pycocotools.mask")

DATA = Path(__file__).resolve().parents[1] / "data"
FACADE = DATA / "facade" / "_annotations.coco.json"
LABELME = DATA / "coco_labelme" / "annotations.json"
CVAT = DATA / "coco_cvat_urban" / "instances_default.coco.json"
BIG = 2**28


# --- helpers -----------------------------------------------------------------------------------

def reference_rle(ann: dict, h: int, w: int):
    """pycocotools' RLE of one annotation (CVAT's rotated boxes: the rotated corners)."""
    seg = ann.get("segmentation")
    if seg in (None, []):
        x, y, bw, bh = ann["bbox"]
        angle = (ann.get("attributes") or {}).get("rotation", 0.0)
        if not angle:
            return M.frPyObjects(np.array([[x, y, bw, bh]], dtype=np.float64), h, w)[0]
        # CVAT: rotate the corners clockwise on screen (y down) about the box centre.
        cx, cy, rad = x + bw / 2, y + bh / 2, math.radians(angle)
        ring = []
        for px, py in ((x, y), (x, y + bh), (x + bw, y + bh), (x + bw, y)):
            dx, dy = px - cx, py - cy
            ring += [cx + dx * math.cos(rad) - dy * math.sin(rad),
                     cy + dx * math.sin(rad) + dy * math.cos(rad)]
        return M.merge(M.frPyObjects([ring], h, w))
    if isinstance(seg, list):
        return M.merge(M.frPyObjects(seg, h, w))
    if isinstance(seg["counts"], list):
        return M.frPyObjects(seg, h, w)
    return seg


def patch_rle(patch, h: int, w: int):
    """Our patch as a pycocotools RLE of the whole canvas, built from its runs (no canvas)."""
    m = np.asarray(patch.mask, dtype=bool)
    if m.size == 0 or not m.any():
        return M.frPyObjects({"size": [h, w], "counts": [h * w]}, h, w)
    ph = m.shape[0] + 2  # a False row above and below each column: runs stay in their column
    padded = np.zeros((ph, m.shape[1]), bool)
    padded[1:-1] = m
    step = np.diff(padded.T.ravel().astype(np.int8))
    first, last = np.flatnonzero(step == 1) + 1, np.flatnonzero(step == -1)
    at = lambda p: (patch.left + p // ph) * h + patch.top + p % ph - 1
    bounds = np.stack([at(first), at(last) + 1], axis=1).ravel()
    counts = np.diff(np.concatenate(([0], bounds, [h * w])))
    return M.frPyObjects({"size": [h, w], "counts": counts.tolist()}, h, w)


def differing_pixels(rle, patch, h: int, w: int) -> int:
    """Pixels where pycocotools' mask and our patch differ (union minus intersection)."""
    ours = patch_rle(patch, h, w)
    both = M.area(M.merge([rle, ours], intersect=True))
    return int(M.area(M.merge([rle, ours], intersect=False)) - both)


def compare_dataset(src: CocoSource) -> tuple[int, int, dict]:
    """(objects, differing pixels, geometry type counts) over every annotation of ``src``."""
    meta, table = src.read_meta(), src.list_items()
    objects = diff = 0
    kinds: dict = {}
    for row in table.to_pylist():
        ann = src.parse_annotation(src.item_annotation(row), meta, row["item"], max_bitmap_pixels=BIG)
        raw = json.loads(src.item_annotation(row))["annotations"]
        h, w = ann.size_hw
        patches = draw.coverages([lb.geometry for lb in ann.labels], ann.size_hw, rule="coco")
        for lb, patch, a in zip(ann.labels, patches, raw, strict=True):
            kinds[type(lb.geometry).__name__] = kinds.get(type(lb.geometry).__name__, 0) + 1
            diff += differing_pixels(reference_rle(a, h, w), patch, h, w)
            objects += 1
    return objects, diff, kinds


def mini_doc(**over) -> dict:
    doc = {
        "images": [{"id": 1, "file_name": "a.jpg", "height": 6, "width": 5},
                   {"id": 2, "file_name": "b.jpg", "height": 4, "width": 4}],
        "categories": [{"id": 0, "name": "cat"}, {"id": 7, "name": "dog"}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 0, "iscrowd": 0,
                         "segmentation": [[0, 0, 4, 0, 4, 3]], "bbox": [0, 0, 4, 3]}],
    }
    doc.update(over)
    return doc


def open_doc(tmp_path: Path, doc, name: str = "instances_val.json", **kw) -> CocoSource:
    path = tmp_path / name
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return CocoSource.open_source(str(path), **kw)


def item_bytes(annotations: list, height: int = 6, width: int = 5) -> bytes:
    return json.dumps({"image": {"id": 1, "file_name": "a.jpg", "height": height, "width": width},
                       "annotations": annotations}).encode()


NAMES = {0: "cat", 7: "dog"}


def parse(annotations, max_bitmap_pixels: int = BIG, **size):
    meta = meta_from_index(index_coco(mini_doc()))
    return parse_item(item_bytes(annotations, **size), NAMES, meta, "ds/a.jpg",
                      max_bitmap_pixels=max_bitmap_pixels)


# --- real data: every annotation against pycocotools -------------------------------------------

def test_facade_every_polygon_matches_pycocotools():
    objects, diff, kinds = compare_dataset(CocoSource.open_source(str(FACADE)))
    assert (objects, diff, kinds) == (3849, 0, {"Polygon": 3849})


def test_labelme_multi_ring_self_intersecting_out_of_bounds_match_pycocotools():
    src = CocoSource.open_source(str(LABELME))
    objects, diff, kinds = compare_dataset(src)
    assert (objects, diff) == (12, 0)
    assert kinds == {"Polygon": 10, "MultiPolygon": 2}


def test_cvat_uncompressed_rle_and_boxes_match_pycocotools():
    src = CocoSource.open_source(str(CVAT))
    objects, diff, kinds = compare_dataset(src)
    assert (objects, diff, kinds) == (320, 0, {"Bitmap": 246, "Box": 74})


def test_cvat_bitmaps_are_tight_and_tags_are_attributes():
    src = CocoSource.open_source(str(CVAT))
    meta, rows = src.read_meta(), src.list_items().to_pylist()
    row = rows[0]
    ann = src.parse_annotation(src.item_annotation(row), meta, row["item"], max_bitmap_pixels=BIG)
    raw = json.loads(src.item_annotation(row))
    assert ann.raw == raw["image"] and ann.size_hw == (7150, 5720)
    for i, (lb, a) in enumerate(zip(ann.labels, raw["annotations"])):
        assert lb.object_index == i
        attrs = {k: v for k, v in a["attributes"].items()
                 if not (k == "rotation" and isinstance(lb.geometry, G.Box))}
        assert lb.tags == tuple({"name": k, "value": v if isinstance(v, str) else json.dumps(v)}
                                for k, v in attrs.items())      # any_string tags: JSON text
        if isinstance(lb.geometry, G.Bitmap):
            m = lb.geometry.mask
            assert m.dtype == bool and m[0].any() and m[-1].any() and m[:, 0].any() and m[:, -1].any()
            x, y, bw, bh = a["bbox"]  # CVAT's bbox of a mask is its tight pixel box
            assert (lb.geometry.origin_xy, m.shape) == ((int(x), int(y)), (int(bh), int(bw)))


# --- meta --------------------------------------------------------------------------------------

def test_facade_meta_merges_duplicate_names_and_keeps_first_order():
    src = CocoSource.open_source(str(FACADE))
    meta = src.read_meta()
    titles = [c.title for c in meta.classes]
    assert titles == ["facade", "balcony-fence", "car", "fence", "non-building-infrastructure",
                      "shop", "street", "traffic-infrastructure", "vegetation", "window"]
    assert src.category_names[0] == src.category_names[3] == "facade"
    assert [c.color_rgb for c in meta.classes] == class_colors(10)
    assert {c.shape for c in meta.classes} == {"polygon"}
    assert meta.raw["classes"][0] == {"title": "facade", "shape": "polygon", "color": "#800000",
                                      "geometry_config": {}}
    assert (meta.raw["tags"], meta.raw["projectType"]) == ([], "images")


def test_shapes_by_what_each_class_holds():
    shapes = {c.title: c.shape for c in CocoSource.open_source(str(CVAT)).read_meta().classes}
    # TRAFFIC_SIGN: axis-aligned and rotated boxes (a rotated one is written as a polygon).
    assert shapes == {"CAR": "bitmap", "ROAD_SURFACE": "bitmap", "TRAFFIC_SIGN": "any",
                      "PEDESTRIAN": "bitmap", "Daytime_Clear": "any", "Daytime_Cloudy": "any",
                      "Daytime_Rainy": "any", "Nighttime_Clear": "any", "Nighttime_Cloudy": "any",
                      "Nighttime_Rainy": "any", "SIZE_TEST": "any"}
    labelme = CocoSource.open_source(str(LABELME)).read_meta()
    assert labelme.classes[0].title == "_background_" and len(labelme.classes) == 21
    used = {c.title for c in labelme.classes if c.shape == "polygon"}
    assert used == {"bus", "bottle", "car", "chair"}
    # several rings -> one bitmap object (codec/sly_json): classes holding such annotations
    assert {c.title: c.shape for c in labelme.classes if c.title in ("person", "sofa")} == {
        "person": "any", "sofa": "bitmap"}


def test_mixed_and_box_only_shapes(tmp_path):
    doc = mini_doc(annotations=[
        {"id": 1, "image_id": 1, "category_id": 0, "segmentation": [], "bbox": [0, 0, 2, 2]},
        {"id": 2, "image_id": 1, "category_id": 7, "segmentation": [], "bbox": [0, 0, 2, 2]},
        {"id": 3, "image_id": 2, "category_id": 7, "segmentation": {"size": [4, 4], "counts": "04"}},
    ])
    shapes = {c.title: c.shape for c in open_doc(tmp_path, doc).read_meta().classes}
    assert shapes == {"cat": "rectangle", "dog": "any"}


def test_meta_raw_is_a_valid_supervisely_meta():
    sly = load("supervisely")
    for path in (FACADE, LABELME, CVAT):
        meta = CocoSource.open_source(str(path)).read_meta()
        sdk = sly.ProjectMeta.from_json(json.loads(json.dumps(meta.raw)))
        assert [c.name for c in sdk.obj_classes] == [c.title for c in meta.classes]
        assert [tuple(c.color) for c in sdk.obj_classes] == [c.color_rgb for c in meta.classes]


# --- listing -----------------------------------------------------------------------------------

def test_facade_listing():
    src = CocoSource.open_source(str(FACADE))
    table = src.list_items()
    assert table.schema == ITEMS_SCHEMA and table.num_rows == 108
    rows = table.to_pylist()
    assert [(r["dataset"], r["item"]) for r in rows] == sorted((r["dataset"], r["item"]) for r in rows)
    assert {r["dataset"] for r in rows} == {"facade"}  # the JSON's folder (roboflow: "valid")
    jpgs = {p.name: p.stat().st_size for p in FACADE.parent.glob("*.jpg")}
    assert {r["img_path"]: r["img_bytes"] for r in rows if r["img_path"]} == jpgs
    assert all(r["img_bytes"] is None for r in rows if r["img_path"] is None)
    assert all(r["ann_path"] is None and r["problem"] is None for r in rows)
    spans = [r["ann_spans"] for r in rows]   # the raw bytes of the item's entries in the file
    assert all(r["ann_bytes"] == sum(s[1::2]) - sum(s[0::2]) for r, s in zip(rows, spans))
    doc = json.loads(FACADE.read_text())
    by_id = {}
    for a in doc["annotations"]:
        by_id.setdefault(a["image_id"], []).append(a)
    inline = {r["item"]: json.loads(src.item_annotation(r)) for r in rows}
    for image in doc["images"]:
        assert inline[image["file_name"]] == {"image": image, "annotations": by_id.get(image["id"], [])}
    name = next(iter(jpgs))
    row = next(r for r in rows if r["item"] == name)
    assert src.read_bytes(row["img_path"]) == (FACADE.parent / name).read_bytes()


def test_labelme_images_in_a_subfolder_and_images_option(tmp_path):
    rows = CocoSource.open_source(str(LABELME)).list_items().to_pylist()
    assert [(r["dataset"], r["item"], r["img_path"]) for r in rows] == [
        ("coco_labelme", f"JPEGImages/2011_0000{n}.jpg", f"JPEGImages/2011_0000{n}.jpg")
        for n in ("03", "06", "25")]
    other = tmp_path / "pics" / "JPEGImages"
    other.mkdir(parents=True)
    (other / "2011_000006.jpg").write_bytes(b"not really a jpeg")
    src = CocoSource.open_source(str(LABELME), images=str(tmp_path / "pics"))
    rows = src.list_items().to_pylist()
    assert [r["img_path"] for r in rows] == [None, "JPEGImages/2011_000006.jpg", None]
    assert src.read_bytes(rows[1]["img_path"]) == b"not really a jpeg"
    with pytest.raises(ProjectError, match="images: expected a folder"):
        CocoSource.open_source(str(LABELME), images=str(tmp_path / "nope")).list_items()


def test_cvat_listing_has_every_image_without_files():
    rows = CocoSource.open_source(str(CVAT)).list_items().to_pylist()
    assert len(rows) == 20 and {r["dataset"] for r in rows} == {"default"}
    assert all(r["img_path"] is None for r in rows)


@pytest.mark.parametrize("path, expected", [
    ("/x/annotations/instances_val2017.json", "val2017"),
    ("/x/instances_default.coco.json", "default"),
    ("/x/valid/_annotations.coco.json", "valid"),
    ("memory://coco.json", "ds0"),
    ("/coco.json", "ds0"),
])
def test_dataset_name(path, expected):
    assert dataset_name(path) == expected


def test_duplicates_orphans_and_images_without_annotations(tmp_path):
    doc = mini_doc()
    doc["images"].append({"id": 3, "file_name": "a.jpg", "height": 6, "width": 5})
    doc["annotations"] += [{"id": 5, "image_id": 99, "category_id": 0, "bbox": [0, 0, 1, 1]},
                           {"id": 6, "image_id": 98, "category_id": 0, "bbox": [0, 0, 1, 1]}]
    (tmp_path / "a.jpg").write_bytes(b"A")
    src = open_doc(tmp_path, doc)
    rows = src.list_items().to_pylist()
    assert [(r["dataset"], r["item"], r["img_path"]) for r in rows] == [
        ("val", "a.jpg", "a.jpg"), ("val", "a.jpg~3", None), ("val", "b.jpg", None)]
    assert rows[0]["problem"] is None and rows[2]["problem"] is None
    assert "'a.jpg' is used by an earlier image entry" in rows[1]["problem"]
    assert json.loads(src.item_annotation(rows[2]))["annotations"] == []
    assert len(src.warnings) == 1 and "2 annotation(s)" in src.warnings[0]
    assert "image_id 99" in src.warnings[0]


def test_hostile_file_names_never_leave_the_image_folder(tmp_path):
    (tmp_path / "secret.jpg").write_bytes(b"S")
    root = tmp_path / "coco"
    root.mkdir()
    doc = mini_doc(images=[{"id": i, "file_name": n, "height": 2, "width": 2} for i, n in
                           enumerate(["../secret.jpg", "/etc/passwd", ".", "x\ud800.jpg"])],
                   annotations=[])
    rows = open_doc(root, doc).list_items().to_pylist()
    assert [r["img_path"] for r in rows] == [None] * 4
    bad = [r for r in rows if r["problem"]]
    assert len(bad) == 1 and "not valid UTF-8" in bad[0]["problem"]
    pa.table({"item": [r["item"] for r in rows]})  # every name travels in arrow


def test_deterministic_inline_bytes(tmp_path):
    src_a = open_doc(tmp_path, mini_doc())
    a = src_a.list_items()
    doc = mini_doc()
    doc["images"][0] = dict(reversed(list(doc["images"][0].items())))
    doc["annotations"][0] = dict(reversed(list(doc["annotations"][0].items())))
    (tmp_path / "b").mkdir()
    src_b = open_doc(tmp_path / "b", doc, "instances_val.json")
    b = src_b.list_items()
    spans = ["ann_inline", "ann_spans", "ann_bytes"]
    assert a.drop_columns(spans).equals(b.drop_columns(spans))
    assert a.column("ann_inline") != b.column("ann_inline")   # other bytes in the file, other token
    # ... and the same canonical item JSON (the worker hashes it: found unchanged, not drawn again)
    assert [src_a.item_annotation(r) for r in a.to_pylist()] == [src_b.item_annotation(r) for r in b.to_pylist()]


def test_memory_filesystem_and_pickling():
    fs = fsspec.filesystem("memory")
    fs.pipe("/cocotest/ann/instances_train.json", json.dumps(mini_doc()).encode())
    fs.pipe("/cocotest/img/a.jpg", b"IMG")
    src = CocoSource.open_source("memory://cocotest/ann/instances_train.json",
                                 images="memory://cocotest/img")
    meta, rows = src.read_meta(), src.list_items().to_pylist()
    assert [(r["dataset"], r["item"], r["img_path"], r["img_bytes"]) for r in rows] == [
        ("train", "a.jpg", "a.jpg", 3), ("train", "b.jpg", None, None)]
    clone = pickle.loads(pickle.dumps(src))
    assert clone._index is None and clone.category_names == {0: "cat", 7: "dog"}
    assert clone.read_bytes("a.jpg") == b"IMG"
    ann = clone.parse_annotation(clone.item_annotation(rows[0]), meta, "train/a.jpg",
                                 max_bitmap_pixels=BIG)
    assert [lb.class_title for lb in ann.labels] == ["cat"]
    fresh = CocoSource("memory://cocotest/ann/instances_train.json")  # never loaded: loads lazily
    assert fresh.parse_annotation(fresh.item_annotation(rows[0]), meta, "w", max_bitmap_pixels=BIG).labels


# --- parsing single annotations ----------------------------------------------------------------

def test_geometries():
    labels = parse([
        {"category_id": 0, "segmentation": [[0, 0, 4, 0, 4, 3]]},
        {"category_id": 7, "segmentation": [[0, 0, 1, 0, 1, 1], [2, 2, 3, 2, 3, 3.5]]},
        {"category_id": 0, "segmentation": [], "bbox": [1, 2, 3, 1.5], "iscrowd": 1},
        {"category_id": 0, "bbox": [1, 2, 3, 1.5], "attributes": {"rotation": 90, "a": True}},
        {"category_id": 7, "segmentation": {"size": [6, 5], "counts": [7, 2, 4, 3, 14]}},
        {"category_id": 7, "segmentation": {"size": [6, 5], "counts": [30]}, "iscrowd": 0},
    ]).labels
    g = [lb.geometry for lb in labels]
    assert type(g[0]) is G.Polygon and g[0].exterior_xy.dtype == np.float64
    assert g[0].exterior_xy.tolist() == [[0, 0], [4, 0], [4, 3]]
    assert type(g[1]) is G.MultiPolygon and [p.exterior_xy.tolist()[-1] for p in g[1].parts] == [
        [1, 1], [3, 3.5]]
    assert (g[2].x0, g[2].y0, g[2].x1, g[2].y1, g[2].angle) == (1, 2, 4, 3.5, 0)
    assert g[3].angle == 90 and labels[3].tags == ({"name": "a", "value": "true"},)
    # h = 6, column-major: 0s 0..6, 1s at 7, 8 (column 1, rows 1-2), 0s, 1s at 13..15 (column 2, rows 1-3)
    assert g[4].origin_xy == (1, 1) and g[4].mask.tolist() == [[True, True], [True, True],
                                                                [False, True]]
    assert g[5].mask.shape == (0, 0)


BAD = [
    ({"category_id": 3, "segmentation": [[0, 0, 1, 0, 1, 1]]}, UnknownClassError, "category_id"),
    ({"category_id": "0", "segmentation": [[0, 0, 1, 0, 1, 1]]}, UnknownClassError, "category_id"),
    ({"segmentation": [[0, 0, 1, 0, 1, 1]]}, UnknownClassError, "category_id"),
    ({"category_id": 0, "segmentation": [[0, 0, 1, 0, 1]]}, AnnotationError, "even number"),
    ({"category_id": 0, "segmentation": [[0, 0, 1, 0]]}, AnnotationError, "at least 3 points"),
    ({"category_id": 0, "segmentation": [[0, 0, 1, "0", 1, 1]]}, AnnotationError, r"\[0\]\[3\]"),
    ({"category_id": 0, "segmentation": [[0, 0, 1, True, 1, 1]]}, AnnotationError, "finite"),
    ({"category_id": 0, "segmentation": [[0, 0, 1, float("nan"), 1, 1]]}, AnnotationError, "finite"),
    ({"category_id": 0, "segmentation": [[0, 0, 1, float("inf"), 1, 1]]}, AnnotationError, "finite"),
    ({"category_id": 0, "segmentation": [[0, 0, 1, 2**31 + 1, 1, 1]]}, AnnotationError, "2\\*\\*31"),
    ({"category_id": 0, "segmentation": [[0, 0, 1, 10**400, 1, 1]]}, AnnotationError, r"\[0\]\[3\]"),
    ({"category_id": 0, "segmentation": [[0, 0, 1, -1e300, 1, 1]]}, AnnotationError, r"\[0\]\[3\]"),
    ({"category_id": 0, "segmentation": [{"size": [6, 5], "counts": [30]}]}, AnnotationError, "list of numbers"),
    ({"category_id": 0, "segmentation": "x"}, AnnotationError, "expected a list of rings"),
    ({"category_id": 0, "segmentation": []}, AnnotationError, "got neither"),
    ({"category_id": 0, "bbox": [0, 0, -1, 2]}, AnnotationError, "width, height >= 0"),
    ({"category_id": 0, "bbox": [0, 0, 1]}, AnnotationError, "bbox"),
    ({"category_id": 0, "bbox": [0, 0, 1, 1], "attributes": {"rotation": "9"}}, AnnotationError, "rotation"),
    ({"category_id": 0, "bbox": [0, 0, 1, 1], "attributes": [1]}, AnnotationError, "attributes"),
    ({"category_id": 0, "segmentation": {"size": [5, 6], "counts": [30]}}, AnnotationError, r"\[6, 5\]"),
    ({"category_id": 0, "segmentation": {"counts": [30]}}, AnnotationError, "size"),
    ({"category_id": 0, "segmentation": {"size": [6, 5], "counts": [29]}}, AnnotationError, "adding up"),
    ({"category_id": 0, "segmentation": {"size": [6, 5], "counts": [31]}}, AnnotationError, "0..30"),
    ({"category_id": 0, "segmentation": {"size": [6, 5], "counts": [-1, 31]}}, AnnotationError, "0..30"),
    ({"category_id": 0, "segmentation": {"size": [6, 5], "counts": [30.0]}}, AnnotationError, "run length"),
    ({"category_id": 0, "segmentation": {"size": [6, 5], "counts": 30}}, AnnotationError, "counts"),
    ({"category_id": 0, "segmentation": {"size": [6, 5], "counts": "P"}}, AnnotationError, "cut inside"),
    ({"category_id": 0, "segmentation": {"size": [6, 5], "counts": "0 "}}, AnnotationError, "'0'..'o'"),
    ({"category_id": 0, "segmentation": {"size": [6, 5], "counts": "\u00e9"}}, AnnotationError, "compressed"),
    ({"category_id": 0, "segmentation": {"size": [6, 5], "counts": "o" * 20 + "0"}}, AnnotationError, "at most 12"),
    ({"category_id": 0, "segmentation": {"size": [6, 5], "counts": "ooooooooooo?"}}, AnnotationError, "run lengths"),
    ({"category_id": 0, "segmentation": {"size": [6, 5], "counts": "0" * 10**5}}, AnnotationError, "adding up"),
    ("not an object", AnnotationError, "expected an object"),
]


@pytest.mark.parametrize("ann, error, match", BAD)
def test_bad_annotation_fails_the_item_located(ann, error, match):
    with pytest.raises(error, match=match) as info:
        parse([{"category_id": 0, "segmentation": [[0, 0, 1, 0, 1, 1]]}, ann])
    assert info.value.where == "ds/a.jpg/object 1"


@pytest.mark.parametrize("image, match", [
    ({"height": 0, "width": 5}, "image.height"), ({"height": 6, "width": "5"}, "image.width"),
    ({"height": 6, "width": 2**31 + 1}, "image.width"), ({"width": 5}, "image.height"),
])
def test_bad_image_entry_fails_the_item(image, match):
    data = json.dumps({"image": image, "annotations": []})
    with pytest.raises(AnnotationError, match=match) as info:
        parse_item(data, NAMES, meta_from_index(index_coco(mini_doc())), "ds/a.jpg")
    assert info.value.where == "ds/a.jpg"


def test_huge_rle_canvas_is_refused_before_allocating():
    side = 2**31
    with pytest.raises(LimitError, match="above the limit"):
        parse([{"category_id": 0, "segmentation": {"size": [side, side], "counts": "0"}}],
              height=side, width=side)
    with pytest.raises(LimitError):
        parse([{"category_id": 0, "segmentation": {"size": [6, 5], "counts": [30]}}],
              max_bitmap_pixels=29)


@pytest.mark.parametrize("doc, match", [
    ("[1, 2]", "expected an object"), ('"x"', "expected an object"), ("{", "expected JSON"),
    ("[" * 100000 + "]" * 100000, "expected JSON|expected an object"),
    (json.dumps({"categories": []}), "'images': expected a list, got nothing"),
    (json.dumps(mini_doc(images={})), "'images': expected a list, got dict"),
    (json.dumps(mini_doc(categories=None)), "'categories'"),
    (json.dumps(mini_doc(annotations=7)), "'annotations'"),
    (json.dumps(mini_doc(images=[1])), r"images\[0\]: expected an object"),
    (json.dumps(mini_doc(images=[{"file_name": "a"}])), r"images\[0\].id"),
    (json.dumps(mini_doc(images=[{"id": 1.5, "file_name": "a"}])), r"images\[0\].id"),
    (json.dumps(mini_doc(images=[{"id": 1, "file_name": ""}])), r"images\[0\].file_name"),
    (json.dumps(mini_doc(images=[{"id": 1, "file_name": "a"}, {"id": 1, "file_name": "b"}])),
     r"images\[1\].id: expected unique"),
    (json.dumps(mini_doc(categories=[{"id": 1, "name": 3}])), r"categories\[0\].name"),
    (json.dumps(mini_doc(categories=[{"id": True, "name": "a"}])), r"categories\[0\].id"),
    (json.dumps(mini_doc(categories=[{"id": 1, "name": "a"}, {"id": 1, "name": "b"}])),
     r"categories\[1\].id: expected unique"),
    (json.dumps(mini_doc(annotations=[{"id": 1}])), r"annotations\[0\].image_id"),
])
def test_not_coco_is_a_project_error(tmp_path, doc, match):
    with pytest.raises(ProjectError, match=match):
        open_doc(tmp_path, doc)


def test_missing_json_is_a_project_error(tmp_path):
    with pytest.raises(ProjectError, match="expected a readable file"):
        CocoSource.open_source(str(tmp_path / "none.json"))


def test_unknown_category_name_in_meta_is_unknown_class(tmp_path):
    src = open_doc(tmp_path, mini_doc())
    meta = dataclasses.replace(src.read_meta(), classes=src.read_meta().classes[1:])
    row = src.list_items().to_pylist()[0]
    with pytest.raises(UnknownClassError):
        src.parse_annotation(src.item_annotation(row), meta, "val/a.jpg", max_bitmap_pixels=BIG)


# --- compressed RLE against pycocotools --------------------------------------------------------

@st.composite
def masks(draw_):
    h, w = draw_(st.integers(1, 24)), draw_(st.integers(1, 24))
    seed, kind = draw_(st.integers(0, 2**32 - 1)), draw_(st.sampled_from(["noise", "blocks", "sparse"]))
    rng = np.random.default_rng(seed)
    if kind == "noise":
        mask = rng.random((h, w)) < rng.random()
    elif kind == "sparse":
        mask = rng.random((h, w)) < 0.03
    else:
        mask = np.zeros((h, w), bool)
        for _ in range(rng.integers(0, 4)):
            r0, c0 = rng.integers(0, h), rng.integers(0, w)
            mask[r0:r0 + rng.integers(1, h + 1), c0:c0 + rng.integers(1, w + 1)] = True
    return mask


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(masks())
def test_compressed_rle_round_trip_vs_pycocotools(mask):
    h, w = mask.shape
    rle = M.encode(np.asfortranarray(mask.astype(np.uint8)))
    geom = parse_geometry({"segmentation": {"size": [h, w], "counts": rle["counts"].decode()}},
                          (h, w))
    canvas = np.zeros((h, w), bool)
    x, y = geom.origin_xy
    canvas[y:y + geom.mask.shape[0], x:x + geom.mask.shape[1]] = geom.mask
    assert np.array_equal(canvas, M.decode(rle).astype(bool))
    assert np.array_equal(canvas, mask)
    if mask.any():  # tight crop
        assert geom.mask[0].any() and geom.mask[-1].any()
        assert geom.mask[:, 0].any() and geom.mask[:, -1].any()


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(0, 2**24), min_size=1, max_size=60))
def test_compressed_counts_decode_exactly(counts):
    """Large runs (multi-character counts, negative deltas): pycocotools compresses, we decode."""
    total = sum(counts)
    if total == 0:
        counts, total = counts + [1], 1
    rle = M.frPyObjects({"size": [1, total], "counts": counts}, 1, total)
    ours = rle_counts_from_string(rle["counts"].decode())
    # pycocotools drops nothing but may merge nothing either: its counts are ours exactly.
    assert ours.tolist() == counts


def test_rle_to_bitmap_crops_columns_and_rows():
    # 4x3 canvas, column-major: set pixels (row 1, col 0) and (rows 1-2, col 2).
    origin, mask = rle_to_bitmap(np.array([1, 1, 7, 2, 1]), (4, 3))
    assert origin == (0, 1) and mask.tolist() == [[True, False, True], [False, False, True]]
    origin, mask = rle_to_bitmap(np.array([3, 3, 6]), (4, 3))  # a run through a column end
    assert origin == (0, 0) and mask.tolist() == [[False, True], [False, True], [False, False],
                                                  [True, False]]


# --- fuzzing: documented errors only -----------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**40, 2**40) | st.floats(allow_nan=True)
    | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=10)
RLE_CHARS = "".join(chr(c) for c in range(48, 112))  # what COCO's compressed counts use
numbers = st.integers(-3, 12) | st.floats(-3, 12)
segmentations = (json_values
                 | st.lists(st.lists(numbers | json_values, max_size=10), max_size=3)
                 | st.fixed_dictionaries({"size": json_values | st.just([6, 5]),
                                          "counts": json_values | st.text(RLE_CHARS, max_size=8)
                                          | st.lists(st.integers(-2, 31), max_size=6)}))
annotations = st.fixed_dictionaries(
    {}, optional={"category_id": st.sampled_from([0, 7, 3, "0", None]) | json_values,
                  "segmentation": segmentations, "bbox": st.lists(numbers, max_size=5) | json_values,
                  "attributes": json_values, "iscrowd": json_values})


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(annotations | json_values, max_size=4),
       st.sampled_from([6, 0, "6", 2**40, 6.0]) | json_values)
def test_fuzz_parse_raises_only_item_errors(anns, height):
    try:
        ann = parse(anns, height=height)
    except ItemError:
        return
    for lb in ann.labels:  # whatever parses, draws
        draw.coverages([lb.geometry], ann.size_hw, rule="coco")


polygon_rings = st.lists(st.lists(st.integers(-3, 12) | st.floats(-3, 12), min_size=6, max_size=12)
                         .filter(lambda ring: len(ring) % 2 == 0), min_size=1, max_size=3)
polygon_annotations = st.fixed_dictionaries(
    {"category_id": st.sampled_from([0, 7]), "segmentation": polygon_rings},
    optional={"attributes": st.dictionaries(st.text(max_size=3), json_values, max_size=3),
              "bbox": json_values})


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(polygon_annotations, max_size=6), st.lists(annotations | json_values, max_size=1))
def test_polygon_items_parse_in_bulk_as_one_by_one(anns, other):
    """An item of plain polygons is parsed in bulk (``_polygon_labels``): the labels are those of
    ``_label`` one by one; anything else in the item and the item parses (or fails) one by one."""
    from maskcore.readers.coco import _label, _polygon_labels
    meta = meta_from_index(index_coco(mini_doc()))
    classes = meta.class_by_title()
    anns = json.loads(json.dumps(anns + other))   # as decoded from a file
    bulk = _polygon_labels(anns, NAMES, classes)
    if other and bulk is None:
        return
    assert bulk is not None
    for i, (got, ann) in enumerate(zip(bulk, anns, strict=True)):
        want = _label(ann, i, (6, 5), NAMES, classes, BIG)
        assert (got.class_title, got.object_index, got.tags) == (want.class_title, i, want.tags)
        parts = lambda geom: geom.parts if isinstance(geom, G.MultiPolygon) else (geom,)  # noqa: E731
        assert [type(p) for p in parts(got.geometry)] == [type(p) for p in parts(want.geometry)]
        for a, b in zip(parts(got.geometry), parts(want.geometry), strict=True):
            assert a.exterior_xy.dtype == np.float64 and np.array_equal(a.exterior_xy, b.exterior_xy)
            assert a.interiors_xy == b.interiors_xy == ()
    assert [lb.class_title for lb in parse(anns).labels] == [lb.class_title for lb in bulk]


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.fixed_dictionaries({}, optional={
    "images": st.lists(st.fixed_dictionaries({}, optional={"id": json_values, "file_name": json_values})
                       | json_values, max_size=3) | json_values,
    "categories": st.lists(st.fixed_dictionaries({}, optional={"id": json_values, "name": json_values})
                           | json_values, max_size=3) | json_values,
    "annotations": st.lists(st.fixed_dictionaries({}, optional={"image_id": json_values,
                                                              "category_id": json_values,
                                                              "segmentation": json_values})
                            | json_values, max_size=3) | json_values}) | json_values)
def test_fuzz_index_raises_only_project_errors(doc):
    try:
        index = index_coco(doc)
    except ProjectError:
        return
    meta_from_index(index)
    items_table(index, "ds", {})


# --- end to end --------------------------------------------------------------------------------

def test_export_to_supervisely_layout(tmp_path, dask_client):
    from maskcore.exec.run import ExportConfig, run_export
    from maskcore.readers import READERS
    assert READERS["coco"] is CocoSource
    sly = load("supervisely")
    dst = tmp_path / "out"
    result = run_export(ExportConfig(source=str(LABELME), destination=str(dst), reader="coco",
                                     reader_options={"images": str(LABELME.parent)}),
                        log=lambda m: None, client=dask_client)
    assert result.exit_code == 0, result.report
    meta = sly.ProjectMeta.from_json(json.loads((dst / "meta.json").read_text()))
    assert len(meta.obj_classes) == 21
    ds = dst / "coco_labelme"
    import pyarrow.parquet as pq
    manifest = {r["item"]: r for r in pq.read_table(dst / ".maskcore-meta" / "manifest.parquet").to_pylist()}
    assert sorted(manifest) == [f"JPEGImages/2011_0000{n}.jpg" for n in ("03", "06", "25")]
    assert {r["status"] for r in manifest.values()} == {"ok"}
    from PIL import Image
    index = {c.title: i for i, c in enumerate(CocoSource.open_source(str(LABELME)).read_meta().classes, 1)}
    doc = json.loads(LABELME.read_text())
    cats = {c["id"]: c["name"] for c in doc["categories"]}
    for image in doc["images"]:
        row = manifest[image["file_name"]]
        machine = np.asarray(Image.open(ds / "masks_machine" / f"{row['mask_stem']}.png"))
        used = {index[cats[a["category_id"]]] for a in doc["annotations"] if a["image_id"] == image["id"]}
        assert machine.shape == (image["height"], image["width"])
        assert set(np.unique(machine).tolist()) - {0} == used
        copied = (ds / "img" / row["out_name"]).read_bytes()
        assert copied == (LABELME.parent / image["file_name"]).read_bytes()
        ann = json.loads((ds / "ann" / f"{row['out_name']}.json").read_text())
        sly.Annotation.from_json(ann, meta)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(-2**32, 2**32) | st.floats(-2.0**32, 2.0**32) | st.floats()
                | st.sampled_from([True, None, "1", 10**400]), max_size=8))
def test_coords_bulk_check_equals_the_per_number_rule(values):
    """``_coords`` checks the usual all-numbers list in bulk; the verdict and the values are
    those of the per-number rule (int or float, not bool, finite, magnitude <= 2**31)."""
    ok = all(type(v) in (int, float) and abs(v) <= 2**31 for v in values)
    if not ok:
        with pytest.raises(AnnotationError, match=r"x\[\d+\]: expected a finite number"):
            _coords(values, "x")
        return
    got = _coords(values, "x")
    assert got.dtype == np.float64 and got.tolist() == [float(v) for v in values]


# --- issue 12.7: COCO files that are not instances ------------------------------------------

@pytest.mark.parametrize("doc, message", [
    ({"images": [{"id": 1, "file_name": "a.jpg", "width": 4, "height": 4}],
      "annotations": [{"image_id": 1, "file_name": "a.png", "segments_info": [{"id": 5, "category_id": 1}]}],
      "categories": [{"id": 1, "name": "car", "isthing": 1}]}, "COCO panoptic is not supported"),
    ({"images": [{"id": 1, "file_name": "a.jpg", "width": 4, "height": 4}],
      "annotations": [{"image_id": 1, "id": 1, "caption": "a car"}]}, "COCO captions JSON is not supported"),
])
def test_panoptic_and_captions_are_refused_at_once(tmp_path, doc, message):
    path = tmp_path / "x.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(ProjectError, match=message):
        CocoSource.open_source(str(path)).read_meta()


def test_keypoints_are_reported_as_skipped(tmp_path):
    doc = {"images": [{"id": 1, "file_name": "a.jpg", "width": 9, "height": 9}],
           "categories": [{"id": 1, "name": "person", "keypoints": ["nose"], "skeleton": []}],
           "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 4, 4],
                            "keypoints": [2, 2, 2], "num_keypoints": 1, "iscrowd": 0}]}
    path = tmp_path / "person_keypoints_val.json"
    path.write_text(json.dumps(doc))
    src = CocoSource.open_source(str(path))
    src.read_meta()
    assert any("1 annotation(s) hold keypoints" in w and "skipped" in w for w in src.warnings)


@pytest.mark.parametrize("layout", ["images/val", "val", "images"])
def test_standard_layouts_find_their_image_folder(tmp_path, layout):
    """Issue 12.6: <root>/annotations/instances_val.json with its photos in images/val/ (Datumaro),
    val/ (COCO 2017, Detectron2) or images/: found without --images; dataset = the subset."""
    (tmp_path / "annotations").mkdir()
    (tmp_path / layout).mkdir(parents=True)
    (tmp_path / layout / "a.jpg").write_bytes(b"jpeg")
    doc = {"images": [{"id": 1, "file_name": "a.jpg", "width": 4, "height": 4}],
           "categories": [{"id": 1, "name": "car"}], "annotations": []}
    (tmp_path / "annotations" / "instances_val.json").write_text(json.dumps(doc))
    src = CocoSource.open_source(str(tmp_path / "annotations" / "instances_val.json"))
    (row,) = src.list_items().to_pylist()
    assert row["dataset"] == "val" and row["img_path"] is not None
    assert src.read_bytes(row["img_path"]) == b"jpeg"


# --- a COCO dataset folder: several subsets in one run (issue 12.6) ---------------------------

def write_subsets(root: Path, image_dirs: dict[str, str], categories=None) -> dict[str, list]:
    """``root/annotations/instances_<subset>.json`` for each subset, images under
    ``root/<image_dirs[subset]>``; every subset has an ``img0.jpg`` (different pixels) and one
    image of its own. Returns subset -> [(file_name, image bytes, category id)]."""
    import io

    from PIL import Image
    cats = categories or [{"id": 4, "name": "cat"}, {"id": 9, "name": "dog"}]
    made: dict[str, list] = {}
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    for s, (subset, folder) in enumerate(sorted(image_dirs.items())):
        images, annotations, made[subset] = [], [], []
        for k, name in enumerate(("img0.jpg", f"only_{subset}.jpg"), start=1):
            buf = io.BytesIO()
            Image.fromarray(np.full((8, 10, 3), 40 * s + k, np.uint8)).save(buf, "PNG")
            (root / folder).mkdir(parents=True, exist_ok=True)
            (root / folder / name).write_bytes(buf.getvalue())
            cat = cats[(s + k) % len(cats)]["id"]
            images.append({"id": k, "file_name": name, "height": 8, "width": 10})
            annotations.append({"id": k, "image_id": k, "category_id": cat, "iscrowd": 0,
                                "bbox": [1, 1, 3 + s, 2 + k], "segmentation": []})
            made[subset].append((name, buf.getvalue(), cat))
        (root / "annotations" / f"instances_{subset}.json").write_text(
            json.dumps({"images": images, "annotations": annotations, "categories": cats}))
    return made


@pytest.mark.parametrize("layout", [
    {"train": "images/train", "val": "images/val"},        # Datumaro's COCO layout
    {"train2017": "train2017", "val2017": "val2017"},      # COCO 2017 / Detectron2's
])
@pytest.mark.parametrize("given", ["", "annotations"])
def test_dataset_folder_reads_every_subset(tmp_path, layout, given):
    from maskcore.readers import detect_reader, open_source
    made = write_subsets(tmp_path / "ds", layout)
    url = str(tmp_path / "ds" / given) if given else str(tmp_path / "ds")
    assert detect_reader(url) == "coco"
    src = open_source("coco", url)
    assert src.project_name == "ds" and src.warnings == []
    assert [(c.title, c.source_ids) for c in src.read_meta().classes] == [("cat", (4,)), ("dog", (9,))]
    src = pickle.loads(pickle.dumps(src))      # what a worker gets
    rows = src.list_items().to_pylist()
    assert [(r["dataset"], r["item"]) for r in rows] == sorted(
        (subset, name) for subset, files in made.items() for name, _, _ in files)
    names = {4: "cat", 9: "dog"}
    for row in rows:
        name, data, cat = next(f for f in made[row["dataset"]] if f[0] == row["item"])
        assert row["img_path"] == f"{layout[row['dataset']]}/{name}" and row["problem"] is None
        assert src.read_bytes(row["img_path"]) == data     # same name, each subset its own image
        ann = src.parse_annotation(src.item_annotation(row), src.read_meta(), row["item"])
        assert [lb.class_title for lb in ann.labels] == [names[cat]]


def test_dataset_folder_export_and_images_option(tmp_path):
    from PIL import Image

    import maskcore
    made = write_subsets(tmp_path / "ds", {"a": "pics/a", "b": "pics/b"})
    result = maskcore.export(str(tmp_path / "ds"), str(tmp_path / "out"), masks=["machine"],
                             images=str(tmp_path / "ds" / "pics"), cluster="inprocess",
                             log=lambda line: None)
    assert result.exit_code == 0, result.report
    for subset, files in made.items():
        for name, data, _ in files:
            assert (tmp_path / "out" / subset / "img" / name).read_bytes() == data
            machine = np.asarray(Image.open(tmp_path / "out" / subset / "masks_machine" / f"{Path(name).stem}.png"))
            assert machine.shape == (8, 10) and machine.any()


def test_dataset_folder_refusals(tmp_path):
    from maskcore.readers import open_source
    (tmp_path / "empty" / "annotations").mkdir(parents=True)
    (tmp_path / "empty" / "annotations" / "person_keypoints_val.json").write_text("{}")
    with pytest.raises(ProjectError, match=r"expected annotations/instances_<subset>\.json .* found none"):
        open_source("coco", str(tmp_path / "empty")).read_meta()
    write_subsets(tmp_path / "ds", {"train": "images/train"})
    doc = json.loads((tmp_path / "ds" / "annotations" / "instances_train.json").read_text())
    doc["categories"] = [{"id": 4, "name": "dog"}, {"id": 9, "name": "cat"}]
    (tmp_path / "ds" / "annotations" / "instances_val.json").write_text(json.dumps(doc))
    with pytest.raises(ProjectError, match=r"subsets 'train' and 'val': category id 4 is 'cat' in one "
                                           r"and 'dog' in the other"):
        open_source("coco", str(tmp_path / "ds")).read_meta()
