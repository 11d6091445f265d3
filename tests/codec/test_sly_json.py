"""Supervisely JSON writer: random geometry -> JSON -> maskcore's reader and the Supervisely SDK
(6.74.51, test-only oracle) -> the same pixels; Box corners against pycocotools."""

from __future__ import annotations

import json

import numpy as np
import pytest

from helpers.oracles import oracle
from maskcore.codec.sly_json import annotation_json, annotation_json_bytes, box_pixels_xyxy, meta_json, meta_json_bytes
from maskcore.kernel.draw import coverage
from maskcore.model import geometry as g
from maskcore.model.annotation import Annotation, Label, ObjClass, ProjectMeta
from maskcore.readers.supervisely import parse_annotation, parse_meta

sly = oracle("supervisely")
mask_util = oracle("pycocotools.mask")

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pycocotools on numpy 2

H, W = 48, 64
TEMPLATE = {"nodes": {"a": {"label": "a", "loc": [0, 0], "color": "#FF0000"},
                      "b": {"label": "b", "loc": [1, 1], "color": "#00FF00"}},
            "edges": [{"src": "a", "dst": "b", "color": "#0000FF"}]}
SHAPES = ("polygon", "rectangle", "bitmap", "alpha_mask", "line", "point", "graph", "cuboid_2d",
          "oriented_bbox")


def _meta() -> ProjectMeta:
    classes = [ObjClass(s, s, (10 * i, 20, 30), TEMPLATE if s == "graph" else {})
               for i, s in enumerate(SHAPES)]
    classes.append(ObjClass("anything", "any", (1, 2, 3), {}))
    raw = {"tags": [{"name": "flag", "value_type": "none", "color": "#123456"},
                    {"name": "note", "value_type": "any_string", "color": "#654321"}],
           "projectType": "images"}
    return ProjectMeta(tuple(classes), raw)


def _ring(rng, n, float_coords, margin=4):
    pts = rng.uniform(margin, [W - margin, H - margin], size=(n, 2))
    return pts if float_coords else np.floor(pts).astype(np.int64)


def _random_label(rng, i) -> tuple[str, g.Geometry]:
    kind = i % 13
    if kind in (0, 1):  # int / float polygon, sometimes with a hole
        holes = (_ring(rng, 3, kind == 1, 20),) if rng.random() < .5 else ()
        return "polygon", g.Polygon(_ring(rng, int(rng.integers(3, 8)), kind == 1), holes)
    if kind == 2:
        (x0, y0), (x1, y1) = np.sort(_ring(rng, 2, False), axis=0)
        return "rectangle", g.Rectangle(int(x0), int(y0), int(x1), int(y1))
    if kind in (3, 4):  # axis-aligned box: integer or float corners
        (x0, y0), (x1, y1) = np.sort(_ring(rng, 2, kind == 4), axis=0)
        return "rectangle", g.Box(float(x0), float(y0), float(x1) + 1, float(y1) + 1)
    if kind == 5:
        x0, y0 = (int(v) for v in rng.integers(0, 30, 2))
        mask = rng.random((int(rng.integers(1, 17)), int(rng.integers(1, 30)))) < .4
        mask[0, 0] = True
        return "bitmap", g.Bitmap((x0, y0), mask)
    if kind == 6:
        alpha = rng.integers(0, 256, (5, 7)).astype(np.uint8)
        alpha[2, 3] = 200
        return "alpha_mask", g.AlphaMask((int(rng.integers(0, 40)), int(rng.integers(0, 30))), alpha)
    if kind == 7:
        return "line", g.Polyline(_ring(rng, int(rng.integers(2, 6)), rng.random() < .5))
    if kind == 8:
        x, y = _ring(rng, 1, False)[0]
        return "point", g.Point(int(x), int(y))
    if kind == 9:
        parts = tuple(g.Polygon(_ring(rng, 4, False)) for _ in range(int(rng.integers(1, 4))))
        return "bitmap", g.MultiPolygon(parts)   # written as one bitmap object
    if kind == 10:  # rotated box: a polygon of its corners
        (x0, y0), (x1, y1) = np.sort(_ring(rng, 2, True, 12), axis=0)
        return "anything", g.Box(float(x0), float(y0), float(x1), float(y1), float(rng.uniform(5, 80)))
    if kind == 11:
        nodes = tuple(g.GraphNode(k, *(int(v) for v in _ring(rng, 1, False)[0]), disabled=k == "b")
                      for k in ("a", "b"))
        return "graph", g.Graph(nodes)
    return "cuboid_2d", g.Cuboid2d(_ring(rng, 8, False))


def _annotation(seed: int, n: int = 13) -> Annotation:
    rng = np.random.default_rng(seed)
    labels = []
    for i in range(n):
        title, geom = _random_label(rng, i + seed)
        tags = ({"name": "note", "value": f"n{i}"},) if i % 3 == 0 else ()
        labels.append(Label(title, geom, i, tags))
    return Annotation((H, W), tuple(labels), ({"name": "flag", "value": None},))


def _ours(geom, rule="opencv") -> np.ndarray:
    """maskcore's pixels of a geometry on the H x W canvas."""
    out = np.zeros((H, W), dtype=bool)
    parts = geom.parts if isinstance(geom, g.MultiPolygon) else (geom,)
    for part in parts:
        p = coverage(part, (H, W), 2, rule="coco" if isinstance(part, g.Box) else rule)
        if not p.is_empty:
            out[p.window()] |= p.mask > 0
    return out


def _sly_pixels(label) -> np.ndarray:
    canvas = np.zeros((H, W, 3), dtype=np.uint8)
    label.geometry.draw(canvas, [255, 255, 255], thickness=2)
    return canvas[..., 0] > 0


@pytest.mark.parametrize("seed", range(6))
def test_round_trip_through_our_reader_and_the_sdk_gives_the_same_pixels(seed):
    meta = _meta()
    ann = _annotation(seed)
    obj = annotation_json(ann)
    data = annotation_json_bytes(ann)
    assert data == annotation_json_bytes(_annotation(seed))  # deterministic
    assert json.loads(data) == obj

    # our reader, with the meta as our writer puts it in meta.json
    ours = parse_annotation(data, parse_meta(meta_json_bytes(meta)), "ds/x.png")
    expected = list(ann.labels)       # a multipolygon is one (bitmap) object
    assert len(ours.labels) == len(expected) == len(obj["objects"])
    assert all(isinstance(back.geometry, g.Bitmap) for src, back in zip(expected, ours.labels)
               if isinstance(src.geometry, g.MultiPolygon))
    for src, back in zip(expected, ours.labels):
        assert back.class_title == src.class_title
        assert list(back.tags) == [{"name": t["name"], "value": t["value"]} for t in src.tags]
        if isinstance(src.geometry, g.AlphaMask):
            a = np.zeros((H, W), np.uint8)
            ox, oy = back.geometry.origin_xy
            a[oy:oy + back.geometry.alpha.shape[0], ox:ox + back.geometry.alpha.shape[1]] = back.geometry.alpha
            sx, sy = src.geometry.origin_xy
            b = np.zeros((H, W), np.uint8)
            b[sy:sy + src.geometry.alpha.shape[0], sx:sx + src.geometry.alpha.shape[1]] = src.geometry.alpha
            assert (a == b).all()
            continue
    # pixels of every source label = pixels of what our reader read back (parts OR-ed)
    for src, back in zip(ann.labels, ours.labels):
        got = _ours(back.geometry)
        geom = src.geometry
        if isinstance(geom, g.Box) and geom.angle:  # documented: the polygon of its corners
            geom = g.Polygon(geom.corners_xy())
        assert (got == _ours(geom)).all(), (seed, src.object_index, src.geometry)

    # the SDK reads the same JSON with the same meta; its own drawing gives the same pixels
    sdk_meta = sly.ProjectMeta.from_json(meta_json(meta))
    sdk_ann = sly.Annotation((H, W))
    sdk_labels = [sly.Label.from_json(o, sdk_meta) for o in obj["objects"]]  # no load-time crop
    sdk_tags = sly.TagCollection.from_json(obj["tags"], sdk_meta.tag_metas)
    assert [t.name for t in sdk_tags] == ["flag"] and sdk_ann.img_size == (H, W)
    for back, sdk_label in zip(ours.labels, sdk_labels):
        if isinstance(back.geometry, (g.AlphaMask, g.Graph, g.Cuboid2d)):
            continue  # the SDK draws these with their own colour rules
        assert (_sly_pixels(sdk_label) == _ours(back.geometry)).all(), back.geometry


def test_bitmaps_decode_exactly_with_the_sdk():
    rng = np.random.default_rng(11)
    for _ in range(20):
        mask = rng.random((int(rng.integers(1, 70)), int(rng.integers(1, 70)))) < rng.uniform(.05, .9)
        mask[rng.integers(mask.shape[0]), rng.integers(mask.shape[1])] = True
        ann = Annotation((100, 100), (Label("bitmap", g.Bitmap((3, 4), mask), 0),))
        obj = annotation_json(ann)["objects"][0]
        decoded = sly.Bitmap.base64_2_data(obj["bitmap"]["data"])
        rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
        assert (decoded == mask[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]).all()
        assert obj["bitmap"]["origin"] == [3 + int(cols[0]), 4 + int(rows[0])]


def test_box_corners_are_the_pixels_pycocotools_covers():
    rng = np.random.default_rng(5)
    yy, xx = np.mgrid[:40, :40]
    for i in range(3000):
        x0, y0 = rng.uniform(-3, 30, 2)
        w, h = rng.uniform(0, 10, 2)
        if i % 3 == 0:  # ties: half and whole pixels
            x0, y0, w, h = np.round(np.array([x0, y0, w, h]) * 2) / 2
        ref = mask_util.decode(mask_util.frPyObjects(np.array([[x0, y0, w, h]]), 40, 40))[..., 0] > 0
        xyxy = box_pixels_xyxy(g.Box(x0, y0, x0 + w, y0 + h))
        got = np.zeros((40, 40), bool) if xyxy is None else (
            (xx >= xyxy[0]) & (xx <= xyxy[2]) & (yy >= xyxy[1]) & (yy <= xyxy[3]))
        assert (got == ref).all(), (x0, y0, w, h, xyxy)
    assert box_pixels_xyxy(g.Box(2, 3, 7, 5)) == (2, 3, 6, 4)


def test_float_coordinates_stay_floats_and_empty_bitmaps_are_left_out_with_a_warning():
    poly = g.Polygon(np.array([[1.25, 2.5], [10.0, 2.0], [5.5, 9.75]]))
    empty = g.Bitmap((0, 0), np.zeros((0, 0), bool))
    ann = Annotation((20, 20), (Label("polygon", poly, 0), Label("bitmap", empty, 1)))
    said = []
    obj = annotation_json(ann, warn=said.append)
    assert obj["objects"] == [{"classTitle": "polygon", "description": "", "geometryType": "polygon",
                               "tags": [], "points": {"exterior": [[1.25, 2.5], [10.0, 2.0], [5.5, 9.75]],
                                                     "interior": []}}]
    assert obj["size"] == {"height": 20, "width": 20}
    assert said and "object 1" in said[0] and "empty bitmap" in said[0]


def test_meta_json_keeps_raw_fields_and_class_order():
    meta = ProjectMeta((ObjClass("b", "box", (255, 0, 16)), ObjClass("a", "bitmap", (1, 2, 3))),
                       {"classes": [{"title": "a", "id": 7, "hotkey": "x"}], "tags": [{"name": "t"}]})
    out = meta_json(meta)
    assert out["classes"] == [
        {"title": "b", "shape": "rectangle", "color": "#FF0010", "geometry_config": {}},
        {"id": 7, "hotkey": "x", "title": "a", "shape": "bitmap", "color": "#010203",
         "geometry_config": {}}]
    assert out["tags"] == [{"name": "t"}] and out["projectType"] == "images"
    assert [c.title for c in parse_meta(meta_json_bytes(meta)).classes] == ["b", "a"]
