"""CVAT for images 1.1 XML reader: meta, listing (folder, XML file, zip), shapes, hostile input.

Oracles: pycocotools (masks, boxes, polygons, as CVAT's own COCO export and rasteriser), a
straightforward run-length decoder written here, the Supervisely SDK (meta.json validity), on
the real annotations of tests/data/cvat_urban_scene and on seeded random XML documents.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import random
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from helpers.oracles import load, oracle
from maskcore.errors import AnnotationError, LimitError, ProjectError, UnknownClassError
from maskcore.kernel import draw
from maskcore.model import geometry as G
from maskcore.readers.cvat_xml import ITEMS_SCHEMA, MAX_XML_DEPTH, CvatXmlSource, parse_annotation

mask_api = oracle("pycocotools.mask")
cv2 = oracle("cv2")
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

DATA = Path(__file__).resolve().parents[1] / "data" / "cvat_urban_scene"
XML = DATA / "annotations.xml"


# --- helpers -----------------------------------------------------------------------------------

def coco_rle(top: int, left: int, mask: np.ndarray, size_hw) -> str:
    """Compressed COCO RLE (pycocotools) of ``mask`` placed at (top, left) on a canvas, built
    from column-major runs without allocating the canvas."""
    h, w = size_hw
    t = np.zeros((mask.shape[1], mask.shape[0] + 2), dtype=np.int8)
    t[:, 1:-1] = mask.T
    d = np.diff(t, axis=1)
    sc, sr = np.nonzero(d == 1)
    ec, er = np.nonzero(d == -1)
    starts = (left + sc) * h + top + sr
    ends = (left + ec) * h + top + er
    counts, pos = [], 0
    for s, e in zip(starts.tolist(), ends.tolist()):
        if counts and s == pos:  # a run going on from the bottom of one column to the next
            counts[-1] += e - s
        else:
            counts += [s - pos, e - s]
        pos = e
    if pos < h * w:
        counts.append(h * w - pos)
    return mask_api.frPyObjects({"size": [h, w], "counts": counts}, h, w)["counts"].decode()


def naive_rle_decode(rle: str, width: int, height: int) -> np.ndarray:
    """CVAT brush RLE, the plain way: runs alternate background/foreground, row-major."""
    flat = bytearray(width * height)
    pos, value = 0, 0
    for run in (int(v) for v in rle.split(",")):
        if value:
            flat[pos:pos + run] = b"\x01" * run
        pos += run
        value ^= 1
    assert pos == width * height
    return np.frombuffer(bytes(flat), dtype=np.uint8).reshape(height, width).astype(bool)


def rle_encode(mask: np.ndarray) -> str:
    """Row-major runs starting with background (what CVAT writes)."""
    flat = mask.ravel().astype(np.int8)
    edges = np.flatnonzero(np.diff(np.concatenate([[0], flat, [1 - flat[-1]]])))
    runs = np.diff(np.concatenate([[0], edges]))
    return ", ".join(str(int(r)) for r in runs)


LABELS_META = """<meta><task><labels>
<label><name>cat</name><color>#ff0000</color><type>any</type>
  <attributes><attribute><name>pose</name><input_type>select</input_type></attribute></attributes>
</label>
<label><name>dog</name><type>polygon</type></label>
<label><name>day</name><color>#00ff00</color><type>tag</type></label>
</labels></task></meta>"""


def document(images: str, meta: str = LABELS_META, extra: str = "") -> bytes:
    return (f'<?xml version="1.0" encoding="utf-8"?>\n<annotations><version>1.1</version>{meta}'
            f'{images}{extra}</annotations>').encode()


def image_xml(body: str, name="a.jpg", w=40, h=30, extra="") -> str:
    return f'<image id="0" name="{name}" width="{w}" height="{h}"{extra}>{body}</image>'


def open_doc(tmp_path, data: bytes, **kwargs) -> CvatXmlSource:
    path = tmp_path / "annotations.xml"
    path.write_bytes(data)
    return CvatXmlSource.open_source(str(path), **kwargs)


def parse_one(tmp_path, body: str, **kwargs):
    src = open_doc(tmp_path, document(image_xml(body)))
    row = src.list_items().to_pylist()[0]
    return src.parse_annotation(src.item_annotation(row), src.read_meta(), "default/a.jpg", **kwargs)


@pytest.fixture(scope="module")
def real():
    src = CvatXmlSource.open_source(str(XML))
    return src, src.read_meta(), src.list_items().to_pylist()


# --- the real task -----------------------------------------------------------------------------

def test_real_meta_labels_in_xml_order_with_xml_colours(real):
    _, meta, _ = real
    assert [(c.title, c.shape, c.color_rgb) for c in meta.classes] == [
        ("CAR", "bitmap", (0xFA, 0x32, 0x53)),
        ("TRAFFIC_SIGN", "any", (0xFF, 0xCC, 0x33)),   # rectangle type, but 20 boxes are rotated
        ("PEDESTRIAN", "bitmap", (0x3D, 0xF5, 0x3D)),
        ("ROAD_SURFACE", "bitmap", (0x3D, 0x3D, 0xF5))]
    tags = [(t["name"], t["value_type"]) for t in meta.raw["tags"]]
    assert tags == [("Daytime_Clear", "none"), ("Daytime_Cloudy", "none"),
                    ("Daytime_Rainy", "none"),
                    ("Nighttime_Clear", "none"), ("Nighttime_Cloudy", "none"),
                    ("Nighttime_Rainy", "none"), ("truncated", "any_string"),
                    ("occluded", "any_string")]


def test_real_meta_raw_is_a_supervisely_meta_json(real):
    sly = load("supervisely")
    _, meta, _ = real
    sdk = sly.ProjectMeta.from_json(json.loads(json.dumps(meta.raw)))
    assert [c.name for c in sdk.obj_classes] == [c.title for c in meta.classes]
    assert [c.color for c in sdk.obj_classes] == [list(c.color_rgb) for c in meta.classes]
    assert sdk.tag_metas.get("occluded").value_type == "any_string"


def test_real_listing(real):
    src, _, rows = real
    assert len(rows) == 20
    keys = [(r["dataset"], r["item"]) for r in rows]
    assert keys == sorted(keys)
    assert {r["dataset"] for r in rows} == {"default"}
    assert all(r["ann_path"] == "annotations.xml" and r["img_path"] is None and r["problem"] is None
               for r in rows)  # the test copy holds no images
    assert all(r["ann_inline"] is None for r in rows)  # read by span, on the worker
    assert sum(src.item_annotation(r).count(b"<mask ") for r in rows) == 245
    assert sum(src.item_annotation(r).count(b"<box ") for r in rows) == 68


def test_real_masks_equal_cvat_coco_export_and_plain_decoder(real):
    """Every <mask> of the XML decodes to exactly the pixels of a same-label mask of CVAT's own
    COCO export (the README says they agree), and to the plain decoder's pixels in its box."""
    src, meta, rows = real
    coco = json.loads((DATA / "coco_masks.json").read_text())["images"]
    import xml.etree.ElementTree as ET
    n_masks = n_boxes = 0
    for row in rows:
        ann = src.parse_annotation(src.item_annotation(row), meta, row["item"])
        elements = [e for e in ET.fromstring(src.item_annotation(row)) if e.tag != "tag"]
        assert [lab.object_index for lab in ann.labels] == list(range(len(elements)))
        refs = {(m["label"], m["counts"]) for m in coco[row["item"]]}
        for lab, el in zip(ann.labels, elements):
            assert lab.class_title == el.get("label")
            if el.tag != "mask":
                continue
            n_masks += 1
            bm = lab.geometry
            assert isinstance(bm, G.Bitmap) and bm.mask.dtype == bool
            assert (lab.class_title, coco_rle(bm.origin_xy[1], bm.origin_xy[0], bm.mask,
                                              ann.size_hw)) in refs
            left, top = int(el.get("left")), int(el.get("top"))
            plain = naive_rle_decode(el.get("rle"), int(el.get("width")), int(el.get("height")))
            dx, dy = bm.origin_xy[0] - left, bm.origin_xy[1] - top
            placed = np.zeros_like(plain)
            placed[dy:dy + bm.mask.shape[0], dx:dx + bm.mask.shape[1]] = bm.mask
            assert np.array_equal(placed, plain)
            assert bm.mask[0].any() and bm.mask[-1].any() and bm.mask[:, 0].any() \
                and bm.mask[:, -1].any()  # tight
        n_boxes += sum(isinstance(lab.geometry, G.Box) for lab in ann.labels)
    assert (n_masks, n_boxes) == (245, 68)


def test_real_boxes_match_pycocotools(real):
    """Axis-aligned boxes: draw.coverages(rule="coco") == frPyObjects([x, y, w, h]), exactly.
    Rotated ones: the polygon of the corners turned clockwise (CVAT's degrees), by pycocotools."""
    src, meta, rows = real
    checked = rotated = 0
    for row in rows:
        ann = src.parse_annotation(src.item_annotation(row), meta, row["item"])
        boxes = [lab.geometry for lab in ann.labels if isinstance(lab.geometry, G.Box)]
        h, w = ann.size_hw
        for box, patch in zip(boxes, draw.coverages(boxes, ann.size_hw, rule="coco")):
            got = coco_rle(patch.top, patch.left, patch.mask, ann.size_hw)
            if box.angle == 0:
                xywh = [box.x0, box.y0, box.x1 - box.x0, box.y1 - box.y0]
                ref = mask_api.frPyObjects(np.array([xywh]), h, w)[0]["counts"].decode()
                assert got == ref
                checked += 1
                continue
            a = math.radians(box.angle)
            cx, cy = (box.x0 + box.x1) / 2, (box.y0 + box.y1) / 2
            ring = []
            for x, y in ((box.x0, box.y0), (box.x1, box.y0), (box.x1, box.y1), (box.x0, box.y1)):
                ring += [cx + (x - cx) * math.cos(a) - (y - cy) * math.sin(a),
                         cy + (x - cx) * math.sin(a) + (y - cy) * math.cos(a)]
            ref = mask_api.frPyObjects([ring], h, w)[0]
            ours = {"size": [h, w], "counts": got.encode()}
            assert mask_api.iou([ours], [ref], [0])[0, 0] > 0.99
            rotated += 1
    assert (checked, rotated) == (48, 20)


def test_real_tags_attributes_and_orders(real):
    src, meta, rows = real
    row = next(r for r in rows if r["item"].startswith("adam-borkowski"))
    ann = src.parse_annotation(src.item_annotation(row), meta, row["item"])
    assert ann.size_hw == (7150, 5720)
    assert ann.tags == ({"name": "Daytime_Rainy", "value": None},)
    first = ann.labels[0]
    assert first.class_title == "PEDESTRIAN" and first.geometry.origin_xy[0] >= 4562
    assert first.tags == ({"name": "occluded", "value": "no"}, {"name": "truncated", "value": "no"})
    assert ann.labels[1].tags[0] == {"name": "occluded", "value": "yes"}
    box = ann.labels[2].geometry
    assert (box.x0, box.y0, box.x1, box.y1, box.angle) == (4224.60, 3224.13, 4388.74, 3385.58, 0.0)


# --- folders, XML files, zips, images ----------------------------------------------------------

def _copy_task(tmp_path: Path, images_dir: str | None) -> Path:
    root = tmp_path / "task"
    root.mkdir()
    shutil.copy(XML, root / "annotations.xml")
    if images_dir is not None:
        (root / images_dir).mkdir(parents=True, exist_ok=True)
        for name, data in STAND_INS.items():
            (root / images_dir / name).write_bytes(data)
    return root


STAND_INS = {"vladimir-wang-iC8Q1smXUeA-unsplash.jpg": b"\xff\xd8stand-in 1",
             "namubi-oKUY9AxCF7I-unsplash.jpg": b"\xff\xd8stand-in number 2"}


@pytest.mark.parametrize("layout", ["images", "beside", "images/default"])
@pytest.mark.parametrize("given", ["folder", "xml"])
def test_images_found_in_every_layout(tmp_path, layout, given):
    root = _copy_task(tmp_path, "." if layout == "beside" else layout)
    src = CvatXmlSource.open_source(str(root if given == "folder" else root / "annotations.xml"))
    rows = {r["item"]: r for r in src.list_items().to_pylist()}
    found = {k: r for k, r in rows.items() if r["img_path"] is not None}
    assert set(found) == set(STAND_INS)
    for name, r in found.items():
        assert r["img_bytes"] == len(STAND_INS[name])
        assert src.read_bytes(r["img_path"]) == STAND_INS[name]
    clone = pickle.loads(pickle.dumps(src))
    assert clone.read_bytes(found[name]["img_path"]) == STAND_INS[name]


def test_images_option_points_elsewhere(tmp_path):
    root = _copy_task(tmp_path, None)
    pics = tmp_path / "pics"
    pics.mkdir()
    (pics / "namubi-oKUY9AxCF7I-unsplash.jpg").write_bytes(b"x" * 7)
    src = CvatXmlSource.open_source(str(root), images=str(pics))
    found = [r for r in src.list_items().to_pylist() if r["img_path"]]
    assert [(r["item"], r["img_bytes"]) for r in found] == [("namubi-oKUY9AxCF7I-unsplash.jpg", 7)]
    assert src.read_bytes(found[0]["img_path"]) == b"x" * 7


def test_pickled_source_is_small_and_equivalent(real):
    src, meta, rows = real
    blob = pickle.dumps(src)
    assert len(blob) < 2000  # the parsed document never travels
    clone = pickle.loads(blob)
    assert clone.list_items().equals(src.list_items())
    assert clone.read_meta() == meta


def test_listing_is_deterministic_and_typed(real):
    src, _, _ = real
    a = CvatXmlSource.open_source(str(XML)).list_items()
    b = CvatXmlSource.open_source(str(DATA)).list_items()
    assert a.schema == ITEMS_SCHEMA and a.equals(b)


@pytest.mark.parametrize("top", ["", "task_7/"])
def test_zip_is_read_in_place(tmp_path, top):
    path = tmp_path / "task.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.write(XML, f"{top}annotations.xml")
        for name, data in STAND_INS.items():
            z.writestr(f"{top}images/{name}", data)
    src = CvatXmlSource.open_source(str(path))
    rows = src.list_items()
    plain = CvatXmlSource.open_source(str(XML))
    keep = ["dataset", "item", "problem"]
    assert rows.select(keep).equals(plain.list_items().select(keep))
    # the zip's rows carry their annotations inline; the XML file's are read by span: same bytes
    assert rows.column("ann_inline").to_pylist() == [
        plain.item_annotation(r) for r in plain.list_items().to_pylist()]
    found = {r["item"]: r for r in rows.to_pylist() if r["img_path"]}
    assert set(found) == set(STAND_INS)
    clone = pickle.loads(pickle.dumps(src))
    for name, r in found.items():
        assert r["img_bytes"] == len(STAND_INS[name])
        assert clone.read_bytes(r["img_path"]) == STAND_INS[name]


def test_hostile_zip_refused_whole(tmp_path):
    path = tmp_path / "task.zip"
    with zipfile.ZipFile(path, "w") as z:
        z.write(XML, "annotations.xml")
        z.writestr("../images/evil.jpg", b"x")
    with pytest.raises(ProjectError, match=r"\.\."):
        CvatXmlSource.open_source(str(path))


def test_not_found_and_folder_without_xml(tmp_path):
    with pytest.raises(ProjectError, match="not found"):
        CvatXmlSource.open_source(str(tmp_path / "nope"))
    with pytest.raises(ProjectError, match="holding annotations.xml"):
        CvatXmlSource.open_source(str(tmp_path))


# --- generated documents: every shape, against pycocotools -------------------------------------

def _f(v: float) -> str:
    return f"{v:.2f}"


def test_random_documents_round_trip_and_match_pycocotools(tmp_path):
    rng = random.Random(4)
    h, w = 48, 64
    n_poly = n_box = 0
    for doc_i in range(12):
        shapes, expect = [], []
        for _ in range(rng.randint(1, 12)):
            kind = rng.choice(["polygon", "box", "mask", "points", "polyline", "ellipse"])
            label = rng.choice(["cat", "dog"])
            z, group = rng.randint(-3, 3), rng.choice([0, 0, 1, 2])
            attrs = [("pose", rng.choice(["up", "", "left"]))] if rng.random() < .5 else []
            common = f'label="{label}" occluded="0" source="manual" z_order="{z}"' + \
                (f' group_id="{group}"' if group else "")
            body = "".join(f'<attribute name="{k}">{v}</attribute>' for k, v in attrs)
            if kind == "polygon" or kind == "polyline":
                pts = [(rng.uniform(-5, w + 5), rng.uniform(-5, h + 5))
                       for _ in range(rng.randint(3, 7))]
                text = ";".join(f"{_f(x)},{_f(y)}" for x, y in pts)
                shapes.append(f'<{kind} {common} points="{text}">{body}</{kind}>')
                data = np.round(np.array(pts), 2)
            elif kind == "points":
                pts = [(rng.uniform(0, w), rng.uniform(0, h)) for _ in range(rng.randint(1, 4))]
                text = ";".join(f"{_f(x)},{_f(y)}" for x, y in pts)
                shapes.append(f'<points {common} points="{text}">{body}</points>')
                data = np.round(np.array(pts), 2)
            elif kind == "box":
                x0, y0 = rng.uniform(-4, w - 2), rng.uniform(-4, h - 2)
                x1, y1 = x0 + rng.uniform(0, 20), y0 + rng.uniform(0, 20)
                data = [round(v, 2) for v in (x0, y0, x1, y1)]
                shapes.append(f'<box {common} xtl="{_f(data[0])}" ytl="{_f(data[1])}" '
                              f'xbr="{_f(data[2])}" ybr="{_f(data[3])}" rotation="0.0">'
                              f'{body}</box>')
            elif kind == "mask":
                mw, mh = rng.randint(1, 20), rng.randint(1, 20)
                data = np.array([[rng.random() < .4 for _ in range(mw)] for _ in range(mh)])
                data[rng.randrange(mh), rng.randrange(mw)] = True
                left, top = rng.randint(0, w - mw), rng.randint(0, h - mh)
                shapes.append(f'<mask {common} rle="{rle_encode(data)}" left="{left}" top="{top}" '
                              f'width="{mw}" height="{mh}">{body}</mask>')
                data = (left, top, data)
            else:
                data = (rng.uniform(0, w), rng.uniform(0, h), rng.uniform(1, 9), rng.uniform(1, 9),
                        rng.uniform(0, 360))
                data = tuple(round(v, 2) for v in data)
                shapes.append(f'<ellipse {common} cx="{data[0]}" cy="{data[1]}" rx="{data[2]}" '
                              f'ry="{data[3]}" rotation="{data[4]}">{body}</ellipse>')
            expect.append((kind, label, z, group, tuple({"name": k, "value": v} for k, v in attrs),
                           data))
        tags = '<tag label="day" source="manual"/>' if doc_i % 2 else ""
        sub = tmp_path / str(doc_i)
        sub.mkdir()
        src = open_doc(sub, document(image_xml(tags + "".join(shapes), w=w, h=h,
                                               extra=' subset="Train"')))
        (row,) = src.list_items().to_pylist()
        assert (row["dataset"], row["item"]) == ("Train", "a.jpg")
        ann = src.parse_annotation(src.item_annotation(row), src.read_meta(), "Train/a.jpg")
        assert ann.size_hw == (h, w)
        assert ann.tags == (({"name": "day", "value": None},) if doc_i % 2 else ())
        by_index: dict[int, list] = {}
        for lab in ann.labels:
            by_index.setdefault(lab.object_index, []).append(lab)
        assert sorted(by_index) == list(range(len(expect)))
        for i, (kind, label, z, group, attrs, data) in enumerate(expect):
            labs = by_index[i]
            assert all((lab.class_title, lab.z_order, lab.group, lab.tags)
                       == (label, z, group, attrs) for lab in labs)
            geom = labs[0].geometry
            if kind == "points":
                assert [(p.geometry.x, p.geometry.y) for p in labs] == [tuple(p) for p in data]
                continue
            assert len(labs) == 1
            if kind == "polyline":
                assert isinstance(geom, G.Polyline) and np.array_equal(geom.points_xy, data)
            elif kind == "mask":
                left, top, m = data
                canvas = np.zeros((h, w), bool)
                canvas[top:top + m.shape[0], left:left + m.shape[1]] = m
                got = np.zeros((h, w), bool)
                (x, y), gm = geom.origin_xy, geom.mask
                got[y:y + gm.shape[0], x:x + gm.shape[1]] = gm
                assert np.array_equal(got, canvas)
            elif kind == "ellipse":          # CVAT's EllipsesToMasks: cv2.ellipse, rounded
                cx, cy, rx, ry, rot = data
                ref = np.zeros((h, w), np.uint8)
                cv2.ellipse(ref, (round(cx), round(cy)), (round(cx + rx - cx), round(cy - (cy - ry))),
                            rot, 0, 360, 255, thickness=-1)
                got = np.zeros((h, w), bool)
                (x, y), gm = geom.origin_xy, geom.mask
                got[y:y + gm.shape[0], x:x + gm.shape[1]] = gm
                assert isinstance(geom, G.Bitmap) and np.array_equal(got, ref > 0)
            else:
                (patch,) = draw.coverages([geom], (h, w), rule="coco")
                got = np.zeros((h, w), bool)
                got[patch.window()] = patch.mask
                if kind == "polygon":
                    assert geom.exterior_xy.dtype == np.float64
                    ref = mask_api.frPyObjects([data.ravel().tolist()], h, w)
                    n_poly += 1
                else:
                    assert isinstance(geom, G.Box)
                    ref = mask_api.frPyObjects(np.array([[data[0], data[1], data[2] - data[0],
                                                          data[3] - data[1]]]), h, w)
                    n_box += 1
                assert np.array_equal(got, mask_api.decode(ref)[:, :, 0].astype(bool)), (kind, data)
    assert n_poly > 5 and n_box > 5


def test_tracks_become_shapes_of_their_frames(tmp_path):
    images = image_xml('<box label="cat" xtl="1" ytl="1" xbr="3" ybr="3"/>') + \
        '<image id="1" name="b.jpg" width="40" height="30"></image>'
    track = ('<track id="5" label="dog" group_id="3">'
             '<polygon frame="0" outside="0" occluded="0" keyframe="1" points="1,1;9,1;9,9" '
             'z_order="2"><attribute name="pose">x</attribute></polygon>'
             '<polygon frame="1" outside="1" occluded="0" keyframe="1" points="1,1;9,1;9,9"/>'
             '</track>')
    src = open_doc(tmp_path, document(images, extra=track))
    meta = src.read_meta()
    rows = {r["item"]: r for r in src.list_items().to_pylist()}
    a = src.parse_annotation(src.item_annotation(rows["a.jpg"]), meta, "default/a.jpg")
    b = src.parse_annotation(src.item_annotation(rows["b.jpg"]), meta, "default/b.jpg")
    assert [(lab.class_title, lab.object_index, lab.group, lab.z_order) for lab in a.labels] == [
        ("cat", 0, 0, 0), ("dog", 1, 3, 2)]
    assert a.labels[1].tags == ({"name": "pose", "value": "x"},)
    assert b.labels == ()
    assert meta.class_by_title()["dog"].shape == "polygon"


def test_label_shape_falls_back_to_any(tmp_path):
    body = '<box label="dog" xtl="1" ytl="1" xbr="3" ybr="3"/>'  # dog is a polygon label
    meta = open_doc(tmp_path, document(image_xml(body))).read_meta()
    assert [(c.title, c.shape) for c in meta.classes] == [("cat", "any"), ("dog", "any")]
    assert meta.classes[1].color_rgb == (0, 128, 0)  # no <color>: VOC colour of class 2


def test_duplicate_names_fail_both_items(tmp_path):
    images = image_xml("") + image_xml("").replace('id="0"', 'id="1"') + \
        image_xml("", name="b.jpg").replace('id="0"', 'id="2"')
    rows = open_doc(tmp_path, document(images)).list_items().to_pylist()
    assert [(r["item"], bool(r["problem"])) for r in rows] == [
        ("a.jpg", True), ("a.jpg", True), ("b.jpg", False)]
    assert "2 times" in rows[0]["problem"]


# --- bad and hostile input ---------------------------------------------------------------------

@pytest.mark.parametrize("shape", [
    '<box label="cat" xtl="nan" ytl="1" xbr="3" ybr="3"/>',
    '<box label="cat" xtl="inf" ytl="1" xbr="3" ybr="3"/>',
    '<box label="cat" xtl="1e400" ytl="1" xbr="3" ybr="3"/>',
    '<box label="cat" xtl="1_0" ytl="1" xbr="30" ybr="3"/>',
    '<box label="cat" xtl="" ytl="1" xbr="3" ybr="3"/>',
    '<box label="cat" ytl="1" xbr="3" ybr="3"/>',
    '<box label="cat" xtl="5" ytl="1" xbr="3" ybr="3"/>',
    '<box label="cat" xtl="1" ytl="1" xbr="3" ybr="3" rotation="nan"/>',
    f'<polygon label="cat" points="0,0;{2**31 + 1},0;5,5"/>',
    '<polygon label="cat" points="0,0;1,0"/>',
    '<polygon label="cat" points="0,0;1;5,5"/>',
    '<polygon label="cat" points="0,0;1,x;5,5"/>',
    '<polyline label="cat" points="0,0"/>',
    '<points label="cat" points=""/>',
    '<box label="cat" xtl="1" ytl="1" xbr="3" ybr="3" z_order="1.5"/>',
    '<box label="cat" xtl="1" ytl="1" xbr="3" ybr="3" group_id="-1"/>',
    '<ellipse label="cat" cx="1" cy="1" rx="0" ry="3"/>',
    '<mask label="cat" rle="1, 2" left="0" top="0" width="2" height="2"/>',
    '<mask label="cat" rle="0, 4, 1" left="0" top="0" width="2" height="2"/>',
    '<mask label="cat" rle="4" left="0" top="0" width="2" height="2"/>',
    '<mask label="cat" rle="1, -1, 4" left="0" top="0" width="2" height="2"/>',
    '<mask label="cat" rle="1, 99999999999999999999" left="0" top="0" width="2" height="2"/>',
    '<mask label="cat" rle="0,0,0,0,0,0,4" left="0" top="0" width="2" height="2"/>',
    '<mask label="cat" rle="1, 3" left="0" top="0" width="0" height="2"/>',
    '<cuboid label="cat" xtl1="1" ytl1="1"/>',
    '<skeleton label="cat"><points label="x" points="1,1"/></skeleton>',
])
def test_bad_shapes_fail_the_item_at_the_object(tmp_path, shape):
    good = '<box label="cat" xtl="1" ytl="1" xbr="3" ybr="3"/>'
    with pytest.raises(AnnotationError) as err:
        parse_one(tmp_path, good + shape)
    assert err.value.where == "default/a.jpg/object 1"
    assert "expected" in err.value.reason or "unsupported shape" in err.value.reason


def test_unknown_labels(tmp_path):
    with pytest.raises(UnknownClassError, match="object 0.*'bird'"):
        parse_one(tmp_path, '<box label="bird" xtl="1" ytl="1" xbr="3" ybr="3"/>')
    with pytest.raises(UnknownClassError, match="'day'"):  # a tag label is not a class
        parse_one(tmp_path, '<box label="day" xtl="1" ytl="1" xbr="3" ybr="3"/>')
    with pytest.raises(UnknownClassError, match="tag label.*'cat'"):
        parse_one(tmp_path, '<tag label="cat"/>')


def test_huge_mask_refused_before_allocating(tmp_path):
    big = '<mask label="cat" rle="0, 10000000000" left="0" top="0" width="100000" height="100000"/>'
    with pytest.raises(LimitError, match="at most 268435456 pixels, got 100000x100000"):
        parse_one(tmp_path, big)
    with pytest.raises(LimitError, match="at most 99 pixels"):
        parse_one(tmp_path, '<mask label="cat" rle="0, 100" left="0" top="0" width="10" '
                            'height="10"/>', max_bitmap_pixels=99)
    with pytest.raises(AnnotationError, match="empty 3x1 mask"):
        parse_one(tmp_path, '<mask label="cat" rle="3" left="0" top="0" width="3" height="1"/>')


def test_bad_image_size(tmp_path):
    src = open_doc(tmp_path, document('<image id="0" name="a.jpg" width="0" height="3"/>'))
    row = src.list_items().to_pylist()[0]
    with pytest.raises(AnnotationError, match="width: expected an integer in 1") as err:
        src.parse_annotation(src.item_annotation(row), src.read_meta(), "default/a.jpg")
    assert err.value.where == "default/a.jpg"


BOMB = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>
<annotations><image id="0" name="&lol2;" width="3" height="3"/></annotations>"""


@pytest.mark.parametrize("data, match", [
    (BOMB, "without a DTD or entity declarations"),
    (b'<annotations><!doctype x></annotations>', "without a DTD"),
    ('<?xml version="1.0" encoding="utf-16"?><annotations/>'.encode("utf-16"), "NUL bytes"),
    (b'<?xml version="1.0" encoding="latin-1"?><annotations/>', "encoding 'latin-1'"),
    (b'<annotations>\xff</annotations>', "invalid byte"),
    (b"<a>" * (MAX_XML_DEPTH + 1) + b"</a>" * (MAX_XML_DEPTH + 1), "nested at most 32 deep"),
    (b"<annotations><image></annotations>", "well-formed"),
    (b"", "no element"),
    (b"<root/>", "root element <annotations>"),
    (document("", meta=LABELS_META.replace("dog", "cat")), "unique label names, got 'cat'"),
    (document("", meta=LABELS_META.replace("#ff0000", "red")), "'#rrggbb', got 'red'"),
    (document('<track id="1" label="cat"><box frame="x" outside="0"/></track>'),
     "integer 'frame'"),
])
def test_hostile_documents_refused_whole(tmp_path, data, match):
    src = open_doc(tmp_path, data)
    with pytest.raises(ProjectError, match=match):
        src.read_meta()
    with pytest.raises(ProjectError, match=match):
        src.list_items()


def test_document_size_limit(tmp_path):
    with pytest.raises(ProjectError, match="at most 100 bytes, got"):
        open_doc(tmp_path, document(image_xml("")), max_xml_bytes=100).read_meta()


def test_hostile_inline_annotation(tmp_path):
    src = open_doc(tmp_path, document(image_xml("")))
    meta = src.read_meta()
    with pytest.raises(AnnotationError, match="DTD") as err:
        parse_annotation(BOMB, meta, "default/a.jpg")
    assert err.value.where == "default/a.jpg"
    with pytest.raises(AnnotationError, match="expected an <image> element"):
        parse_annotation(b"<box/>", meta, "default/a.jpg")
    deep = b'<image width="3" height="3">' + b"<a>" * 40 + b"</a>" * 40 + b"</image>"
    with pytest.raises(AnnotationError, match="nested"):
        parse_annotation(deep, meta, "default/a.jpg")


def test_items_schema_column_types():
    assert ITEMS_SCHEMA.field("ann_inline").type == pa.binary()
    assert ITEMS_SCHEMA.field("ann_offset").type == pa.int64()
    assert ITEMS_SCHEMA.field("ann_path").type == pa.string()


# --- issue 12.9: what Datumaro's CVAT export holds ----------------------------------------------

DATUMARO_TASK = """<?xml version="1.0" encoding="utf-8"?>
<annotations><version>1.1</version><meta><task><labels>
<label><name>car</name><color>#ff0000</color><type>polygon</type><attributes/></label>
</labels></task></meta>
<image id="0" name="a.png" width="8" height="6">
  <polygon label="" points="0,0;4,0;4,4" z_order="0" occluded="0"/>
  <polygon label="car" points="1,1;6,1;6,5" z_order="0" group_id="3000000000" occluded="0"/>
  <box label="car" xtl="0" ytl="0" xbr="2" ybr="2" group_id="3000000000" occluded="0"/>
</image>
<image id="1" name="b.png" width="8" height="6">
  <box label="" xtl="0" ytl="0" xbr="2" ybr="2" occluded="0"/>
</image>
</annotations>
"""


def test_unlabelled_shapes_big_group_ids_and_a_renamed_xml(tmp_path):
    """Datumaro's export_task sample: shapes with label="" are unlabelled (left out and counted in
    the source's warnings, the item still exports), group ids are COCO annotation ids above 2**31,
    and the task folder's XML is not called annotations.xml (found, and detected as cvat)."""
    from maskcore.readers import detect_reader

    folder = tmp_path / "task"
    folder.mkdir()
    (folder / "default.xml").write_text(DATUMARO_TASK)
    assert detect_reader(str(folder)) == "cvat"
    src = CvatXmlSource.open_source(str(folder))
    meta, rows = src.read_meta(), src.list_items().to_pylist()
    assert [c.title for c in meta.classes] == ["car"]
    anns = [src.parse_annotation(src.item_annotation(r), meta, r["item"]) for r in rows]
    assert [lb.object_index for lb in anns[0].labels] == [1, 2]
    assert {lb.group for lb in anns[0].labels} == {3000000000}
    assert anns[1].labels == ()
    assert len(src.warnings) == 1 and "2 shapes with an empty label" in src.warnings[0]
    assert "a.png (1)" in src.warnings[0] and "b.png (1)" in src.warnings[0]
    (folder / "other.xml").write_text(DATUMARO_TASK)  # a second subset: see test_cvat_stream.py
    assert {r["dataset"] for r in CvatXmlSource.open_source(str(folder)).list_items().to_pylist()} == {
        "default", "other"}


def test_cvat_for_video_is_refused_clearly(tmp_path):
    """Issue 12.8: CVAT for video 1.1 (tracks, no <image>) used to give 0 items and exit 0."""
    (tmp_path / "annotations.xml").write_text(
        '<annotations><version>1.1</version><meta><task><labels><label><name>car</name>'
        '</label></labels></task></meta><track id="0" label="car" source="manual">'
        '<box frame="0" outside="0" occluded="0" keyframe="1" xtl="1" ytl="1" xbr="4" ybr="4" '
        'z_order="0"/></track></annotations>')
    with pytest.raises(ProjectError, match="CVAT for video 1.1"):
        CvatXmlSource.open_source(str(tmp_path)).read_meta()


# --- issue 12: an ellipse that paints nothing keeps its instance number -------------------------

DM_ELLIPSES = r'''
import json, sys, numpy as np, cv2, datumaro as dm
from pycocotools import mask as mask_utils
doc = json.loads(sys.argv[1])
h, w = doc["size_hw"]
anns = []
for cx, cy, rx, ry, rot, label, z in doc["ellipses"]:   # EllipsesToMasks.convert_ellipse
    right, top = cx + rx, cy - ry
    mat = np.zeros((h, w), np.uint8)
    cv2.ellipse(mat, (round(cx), round(cy)), (round(right - cx), round(cy - top)), rot, 0, 360,
                255, thickness=-1)
    anns.append(dm.RleMask(rle=mask_utils.encode(np.asfortranarray(mat)), label=label, z_order=z))
ds = dm.Dataset.from_iterable([dm.DatasetItem(id="a", subset="default", annotations=anns,
                              media=dm.Image.from_numpy(np.zeros((h, w, 3), np.uint8)))],
                              categories=doc["labels"])
ds.transform("merge_instance_segments")      # formats/mask.py _export, then the VOC exporter
ds.export(sys.argv[2], "voc_segmentation", save_media=False, apply_colormap=True)
'''


def test_an_ellipse_that_paints_nothing_keeps_its_instance_number(tmp_path):
    """CVAT's Segmentation mask export turns each ellipse into a mask (EllipsesToMasks), also an
    empty one, and the VOC exporter numbers every mask: later instances shift. Oracle: that chain
    run by Datumaro (its own interpreter) on cv2.ellipse masks; maskcore's cvat layout must give
    the same SegmentationObject pixels."""
    import subprocess

    from helpers.datumaro import PYTHON_ENV, datumaro_python
    from helpers.oracles import INTERPRETER_PREFIX
    from maskcore import api

    python = datumaro_python()
    if python is None:
        pytest.skip(f"{INTERPRETER_PREFIX} with Datumaro: set ${PYTHON_ENV} or create .dmvenv")
    rng = random.Random(12)
    h, w = 40, 50
    ellipses = []
    for k in range(14):
        off = k % 3 == 1   # every third ellipse lies off the image: it paints nothing
        cx = rng.choice([-60.0, w + 60.0]) if off else round(rng.uniform(0, w), 2)
        ellipses.append((cx, round(rng.uniform(0, h), 2), round(rng.uniform(1, 9), 2),
                         round(rng.uniform(1, 9), 2), rng.choice([0, 15, 90]),
                         rng.randrange(2), rng.randrange(2)))
    shapes = "".join(f'<ellipse label="{["cat", "dog"][lab]}" cx="{cx}" cy="{cy}" rx="{rx}" '
                     f'ry="{ry}" rotation="{rot}" z_order="{z}"/>'
                     for cx, cy, rx, ry, rot, lab, z in ellipses)
    task = tmp_path / "task"
    (task / "images").mkdir(parents=True)
    (task / "annotations.xml").write_bytes(document(image_xml(shapes, name="a.png", w=w, h=h)))
    cv2.imwrite(str(task / "images" / "a.png"), np.zeros((h, w, 3), np.uint8))
    api.export(str(task), str(tmp_path / "out"), layout="cvat", archive=False, cluster="inprocess")
    ours = cv2.imread(str(tmp_path / "out" / "SegmentationObject" / "a.png"))
    proc = subprocess.run([str(python), "-c", DM_ELLIPSES, json.dumps(
        {"size_hw": [h, w], "ellipses": ellipses, "labels": ["cat", "dog"]}), str(tmp_path / "dm")],
        capture_output=True, text=True, timeout=300, check=False,
        env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    theirs = cv2.imread(str(tmp_path / "dm" / "SegmentationObject" / "a.png"))
    assert ours.shape == theirs.shape and np.array_equal(ours, theirs)
    assert len({tuple(c) for c in ours.reshape(-1, 3)}) > 3
    meta = CvatXmlSource.open_source(str(task)).read_meta()
    src = CvatXmlSource.open_source(str(task))
    row = src.list_items().to_pylist()[0]
    labels = src.parse_annotation(src.item_annotation(row), meta, "default/a.png").labels
    assert len(labels) == 14 and sum(not lb.geometry.mask.any() for lb in labels) == 5


def test_an_ellipse_that_paints_nothing_is_a_warning_in_supervisely_json(tmp_path):
    """Supervisely JSON has no empty bitmap: the object is left out of ann/<item>.json (the SDK would
    refuse it) and the item's warnings in the report say so; the masks are written."""
    from maskcore import api

    shapes = ('<ellipse label="cat" cx="-60" cy="10" rx="3" ry="4" rotation="0" z_order="0"/>'
              '<polygon label="dog" points="2,2;20,3;10,15" z_order="0"/>')
    task = tmp_path / "task"
    (task / "images").mkdir(parents=True)
    (task / "annotations.xml").write_bytes(document(image_xml(shapes, name="a.png", w=50, h=40)))
    cv2.imwrite(str(task / "images" / "a.png"), np.zeros((40, 50, 3), np.uint8))
    result = api.export(str(task), str(tmp_path / "out"), layout="supervisely", archive=False, cluster="inprocess")
    assert result.exit_code == 0
    (warned,) = result.report["warnings"]
    assert warned["item"] == "a.png"
    assert any("object 0 ('cat'): empty bitmap left out of the Supervisely annotation" in w
               for w in warned["warnings"]), warned
    ann = json.loads((tmp_path / "out" / "default" / "ann" / "a.png.json").read_text())
    assert [o["classTitle"] for o in ann["objects"]] == ["dog"]
