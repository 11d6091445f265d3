"""Supervisely reader: registry, meta, listing (folder and tar), annotations.

Oracle: the Supervisely SDK 6.74.51 (test-only) on the real projects of shared/data/sly_catsdogs
and on seeded random annotations covering every 2-D geometry type.
"""

from __future__ import annotations

import copy
import io
import json
import multiprocessing
import pickle
import random
import shutil
import subprocess
import tarfile
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from helpers import SAMPLES
from helpers.oracles import oracle, program
from maskcore.errors import AnnotationError, ConfigError, LimitError, ProjectError, UnknownClassError
from maskcore.io.tarindex import scan_tar
from maskcore.model import geometry as G
from maskcore.readers import READERS, get_reader, open_source, register_reader
from maskcore.readers.supervisely import (
    ITEMS_SCHEMA,
    SuperviselySource,
    index_project_files,
    parse_annotation,
    parse_meta,
)

sly = oracle("supervisely")

DATA = SAMPLES  # the bundled projects
PROJECTS = ["instance", "vector", "keypoints"]


# --- helpers -----------------------------------------------------------------------------------

def canon(g):
    """Our geometry -> plain comparable values."""
    t = type(g)
    if t is G.Polygon:
        return ("polygon", g.exterior_xy.tolist(), [h.tolist() for h in g.interiors_xy])
    if t is G.Rectangle:
        return ("rectangle", g.x0, g.y0, g.x1, g.y1)
    if t is G.Polyline:
        return ("line", g.points_xy.tolist())
    if t is G.Point:
        return ("point", g.x, g.y)
    if t is G.Bitmap:
        return ("bitmap", tuple(g.origin_xy), g.mask.shape, g.mask.tobytes())
    if t is G.AlphaMask:
        return ("alpha_mask", tuple(g.origin_xy), g.alpha.shape, g.alpha.tobytes())
    if t is G.Graph:
        return ("graph", [(n.node_id, n.x, n.y, n.disabled) for n in g.nodes])
    if t is G.Cuboid2d:
        return ("cuboid_2d", g.vertices_xy.tolist())
    if t is G.OrientedBBox:
        return ("oriented_bbox", g.left, g.top, g.right, g.bottom, g.angle)
    if t is G.MultiPolygon:
        return ("multipolygon", [canon(p) for p in g.parts])
    if t is G.Cuboid:
        return ("cuboid", g.points_xy.tolist(), [list(f) for f in g.faces])
    raise TypeError(t)


def xy(rows_cols):
    return [[int(c), int(r)] for r, c in np.asarray(rows_cols).reshape(-1, 2)]


def sly_canon(g):
    """SDK geometry -> the same plain values."""
    t = type(g)
    if t is sly.Polygon:
        return ("polygon", xy(g.exterior_np), [xy(h) for h in g.interior_np])
    if t is sly.Rectangle:
        return ("rectangle", g.left, g.top, g.right, g.bottom)
    if t is sly.Polyline:
        return ("line", xy(g.exterior_np))
    if t is sly.Point:
        return ("point", g.col, g.row)
    if t is sly.Bitmap:
        return ("bitmap", (g.origin.col, g.origin.row), g.data.shape, g.data.tobytes())
    if t is sly.AlphaMask:
        return ("alpha_mask", (g.origin.col, g.origin.row), g.data.shape, g.data.tobytes())
    if t is sly.GraphNodes:
        return ("graph", [(k, n.location.col, n.location.row, bool(n.disabled))
                          for k, n in g.nodes.items()])
    if t is sly.Cuboid2d:
        return ("cuboid_2d", [[g.nodes[k].location.col, g.nodes[k].location.row]
                              for k in G.CUBOID_2D_VERTICES])
    if t is sly.OrientedBBox:
        return ("oriented_bbox", g.left, g.top, g.right, g.bottom, float(g.angle))
    if t is sly.Multipolygon:
        return ("multipolygon", [sly_canon(p) for p in g.parts])
    if t is sly.Cuboid:
        return ("cuboid", [[p.col, p.row] for p in g.points], [[f.a, f.b, f.c, f.d] for f in g.faces])
    raise TypeError(t)


def assert_same_as_sdk(ann_json, meta_json, where="ds/item", whole=True):
    """Compare with ``sly.Annotation.from_json`` (``whole``), or with ``sly.Label.from_json`` per
    object: the SDK's Annotation also crops every label to the canvas (shapely for polygons,
    which may split, drop or re-order them); that belongs to drawing, not to parsing."""
    ours = parse_annotation(ann_json, parse_meta(meta_json), where)
    sdk_meta = sly.ProjectMeta.from_json(meta_json)
    if whole:
        ref = sly.Annotation.from_json(copy.deepcopy(ann_json), sdk_meta)
        assert ours.size_hw == tuple(ref.img_size)
        ref_labels = ref.labels
    else:
        ref_labels = [sly.Label.from_json(copy.deepcopy(o), sdk_meta) for o in ann_json["objects"]]
    assert len(ours.labels) == len(ref_labels)
    for i, (a, b) in enumerate(zip(ours.labels, ref_labels)):
        assert a.object_index == i
        assert a.class_title == b.obj_class.name
        assert canon(a.geometry) == sly_canon(b.geometry), (where, i)
    return ours


def copy_project(name, dest):
    shutil.copytree(DATA / name, dest)
    return dest


def write(path: Path, data: bytes | str = b"x"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)


def rows(table):
    return [tuple(r.values()) for r in table.to_pylist()]


# --- registry ----------------------------------------------------------------------------------

def test_registry():
    assert READERS["supervisely"] is SuperviselySource
    assert get_reader("supervisely") is SuperviselySource
    with pytest.raises(ValueError, match="'supervisely': expected a new name"):
        register_reader("supervisely", SuperviselySource)
    with pytest.raises(ConfigError, match="expected one of coco, cvat, cvat-masks, supervisely, got 'coco-nope'"):
        get_reader("coco-nope")
    with pytest.raises(TypeError, match="expected a class with open_source"):
        register_reader("broken", object)
    assert "broken" not in READERS


def test_open_source_by_name():
    src = open_source("supervisely", str(DATA / "vector"))
    assert isinstance(src, SuperviselySource)
    assert (src.project_name, src.project_id) == ("vector", None)


# --- real projects -----------------------------------------------------------------------------

@pytest.mark.parametrize("project", PROJECTS)
def test_real_meta_matches_sdk(project):
    raw = json.loads((DATA / project / "meta.json").read_text())
    meta = SuperviselySource.from_path(DATA / project).read_meta()
    ref = sly.ProjectMeta.from_json(raw)
    assert [c.title for c in meta.classes] == [c.name for c in ref.obj_classes]
    assert [c.shape for c in meta.classes] == [c.geometry_type.geometry_name() for c in ref.obj_classes]
    assert [list(c.color_rgb) for c in meta.classes] == [list(c.color) for c in ref.obj_classes]
    assert meta.raw == raw


@pytest.mark.parametrize("project", PROJECTS)
def test_real_listing(project):
    table = SuperviselySource.from_path(DATA / project).list_items()
    assert table.schema == ITEMS_SCHEMA
    items = ["cat1.jpg", "cat2.jpg", "cat3.jpg", "dog1.jpg", "dog2.jpg", "dog3.jpg"]
    assert table["item"].to_pylist() == items
    assert set(table["dataset"].to_pylist()) == {"ds"}
    for r in table.to_pylist():
        ann = DATA / project / r["ann_path"]
        assert r["ann_path"] == f"ds/ann/{r['item']}.json" and r["ann_bytes"] == ann.stat().st_size
        img = DATA / project / "ds" / "img" / r["item"]
        if img.exists():
            assert (r["img_path"], r["img_bytes"]) == (f"ds/img/{r['item']}", img.stat().st_size)
        else:  # keypoints/ds/img/cat1.jpg is missing in the data set: listed, image null
            assert (project, r["item"], r["img_path"], r["img_bytes"]) == ("keypoints", "cat1.jpg",
                                                                           None, None)
    sdk = sly.Project(str(DATA / project), sly.OpenMode.READ)
    [ds] = sdk.datasets
    assert set(ds.get_items_names()) == set(items) - ({"cat1.jpg"} if project == "keypoints" else set())


@pytest.mark.parametrize("project", PROJECTS)
def test_real_annotations_match_sdk(project):
    src = SuperviselySource.from_path(DATA / project)
    meta_json = json.loads(src.read_bytes("meta.json"))
    counts: dict[str, int] = {}
    for r in src.list_items().to_pylist():
        ann = assert_same_as_sdk(json.loads(src.read_bytes(r["ann_path"])), meta_json,
                                 f"ds/{r['item']}")
        for lab in ann.labels:
            counts[lab.geometry.geometry_type] = counts.get(lab.geometry.geometry_type, 0) + 1
    expected = {"instance": {"bitmap": 8},
                "vector": {"polygon": 3, "rectangle": 2, "point": 2, "line": 1, "cuboid": 1},
                "keypoints": {"graph": 6}}[project]
    assert counts == expected


# --- random annotations vs the SDK -------------------------------------------------------------

SHAPES = ["polygon", "rectangle", "line", "point", "bitmap", "alpha_mask", "graph", "cuboid_2d",
          "oriented_bbox", "multipolygon", "cuboid"]
ANY_OK = ["polygon", "rectangle", "line", "point", "bitmap", "alpha_mask", "oriented_bbox",
          "multipolygon", "cuboid"]
GRAPH_NODES = {f"n{i}": {"label": f"n{i}", "loc": [i, 2 * i], "color": "#FF0000"} for i in range(6)}


def random_meta():
    classes = [{"title": f"c_{s}", "shape": s, "color": "#%06X" % (i * 2654435761 % 2**24)}
               for i, s in enumerate(SHAPES)]
    classes[SHAPES.index("graph")]["geometry_config"] = {"nodes": GRAPH_NODES, "edges": []}
    classes.append({"title": "c_any", "shape": "any", "color": "#123456"})
    return {"classes": classes, "tags": [], "projectType": "images"}


def rnum(rng):
    kind = rng.random()
    if kind < 0.3:
        return int(rng.integers(-30, 400))
    if kind < 0.4:
        return float(rng.integers(-30, 400)) - 0.5  # exact halves floor down, negatives too
    return float(rng.uniform(-30, 400))


def rpoints(rng, n):
    return [[rnum(rng), rnum(rng)] for _ in range(n)]


def rpayload(rng, shape):
    if shape in ("polygon", "line", "point", "rectangle"):
        n = {"polygon": int(rng.integers(3, 12)), "line": int(rng.integers(2, 8)), "point": 1,
             "rectangle": 2}[shape]
        holes = [rpoints(rng, int(rng.integers(3, 6))) for _ in range(int(rng.integers(0, 3)))]
        return {"points": {"exterior": rpoints(rng, n), "interior": holes if shape == "polygon" else []}}
    if shape in ("bitmap", "alpha_mask"):
        h, w = (int(v) for v in rng.integers(1, 30, size=2))
        mask = rng.random((h, w)) < 0.4
        mask[rng.integers(h), rng.integers(w)] = True
        if shape == "bitmap":
            data = sly.Bitmap.data_2_base64(mask)
        else:
            data = sly.AlphaMask.data_2_base64((mask * rng.integers(1, 256, (h, w))).astype(np.uint8))
        return {"bitmap": {"origin": [rnum(rng), rnum(rng)], "data": data}}
    if shape == "graph":
        ids = sorted(GRAPH_NODES, key=lambda _: rng.random())[:int(rng.integers(1, 6))]
        return {"nodes": {k: {"loc": [rnum(rng), rnum(rng)], "disabled": bool(rng.random() < 0.3)}
                          for k in ids}}
    if shape == "cuboid_2d":
        names = sorted(G.CUBOID_2D_VERTICES, key=lambda _: rng.random())
        return {"vertices": {k: {"loc": [rnum(rng), rnum(rng)]} for k in names}}
    if shape == "oriented_bbox":
        return {"points": rpoints(rng, 2), "angle": float(rng.uniform(-4, 4))}
    if shape == "multipolygon":
        return {"parts": [{"exterior": rpoints(rng, int(rng.integers(3, 7))),
                           "interior": [rpoints(rng, 3)] * int(rng.integers(0, 2))}
                          for _ in range(int(rng.integers(1, 4)))]}
    if shape == "cuboid":
        n = int(rng.integers(4, 9))
        return {"points": rpoints(rng, n),
                "faces": [[int(k) for k in rng.integers(0, n, 4)] for _ in range(3)]}
    raise ValueError(shape)


def random_annotation(rng):
    objects = []
    for _ in range(int(rng.integers(0, 9))):
        if rng.random() < 0.2:
            shape, title = ANY_OK[int(rng.integers(len(ANY_OK)))], "c_any"
        else:
            shape = SHAPES[int(rng.integers(len(SHAPES)))]
            title = f"c_{shape}"
        obj = {"classTitle": title, "geometryType": shape, "tags": [], **rpayload(rng, shape)}
        objects.append(obj)
    size = {"height": int(rng.integers(1, 5000)), "width": int(rng.integers(1, 5000))}
    return {"description": "", "tags": [], "size": size, "objects": objects}


def test_random_annotations_match_sdk():
    rng = np.random.default_rng(20240601)
    meta = random_meta()
    seen = set()
    for k in range(250):
        ann = random_annotation(rng)
        ours = assert_same_as_sdk(ann, meta, f"ds/r{k}", whole=False)
        seen.update(type(lab.geometry).__name__ for lab in ours.labels)
    assert len(seen) == len(SHAPES)


def _parsed_or_error(obj, meta, monkeypatch, together: bool):
    """parse_annotation's labels (canonical) or its error, with the plain polygons of an
    annotation parsed together (the default) or each by itself."""
    import maskcore.readers.supervisely as reader

    if not together:
        monkeypatch.setattr(reader, "_plain_polygons", lambda objects, classes: {})
    try:
        got = parse_annotation(copy.deepcopy(obj), meta, "ds/a.jpg")
        return [(lab.class_title, lab.object_index, lab.tags, canon(lab.geometry)) for lab in got.labels]
    except AnnotationError as exc:
        return type(exc), str(exc), exc.where
    finally:
        monkeypatch.undo()


BAD_RING_POINTS = [["a", 1], [float("nan"), 1], [True, 1], [1.5, 2], [2**70, 1], [1, 2**40], [1], [1, 2, 3],
                   {"x": 1}]


def test_plain_polygons_parsed_together_equal_one_by_one(monkeypatch):
    """Several integer polygons are parsed in one pass (``_plain_polygons``): labels equal the
    one-by-one parse on random annotations and on polygons with every kind of bad or unusual
    point among good ones (the one-by-one parse then names the object and the point)."""
    rng = np.random.default_rng(7)
    meta = parse_meta(random_meta())
    good = {"classTitle": "c_polygon", "geometryType": "polygon", "tags": [{"name": "t"}],
            "points": {"exterior": [[1, 1], [9, 2], [4, 8]], "interior": []}}
    cases = [random_annotation(rng) for _ in range(60)]
    cases.append({"size": {"height": 50, "width": 60}, "tags": [], "objects": [good, copy.deepcopy(good)]})
    for bad in BAD_RING_POINTS:
        for where in ("exterior", "interior"):
            obj = copy.deepcopy(good)
            ring = obj["points"]["exterior"] if where == "exterior" else [[0, 0], [5, 0], [0, 5]]
            ring.insert(1, bad)
            if where == "interior":
                obj["points"]["interior"] = [ring]
            cases.append({"size": {"height": 50, "width": 60}, "tags": [],
                          "objects": [good, obj, copy.deepcopy(good)]})
    short = copy.deepcopy(good)
    del short["points"]["exterior"][2:]
    cases.append({"size": {"height": 50, "width": 60}, "objects": [good, short]})
    cases.append({"size": {"height": 50, "width": 60}, "objects": [good, {**good, "tags": "x"}]})
    cases.append({"size": {"height": 50, "width": 60}, "objects": [good, {**good, "classTitle": ["c"]}]})
    outcomes = set()
    for obj in cases:
        together = _parsed_or_error(obj, meta, monkeypatch, True)
        assert together == _parsed_or_error(obj, meta, monkeypatch, False), obj
        outcomes.add("error" if isinstance(together, tuple) else "parsed")
    assert outcomes == {"error", "parsed"}


def one_object(shape, **change):
    rng = np.random.default_rng(5)
    obj = {"classTitle": f"c_{shape}", "geometryType": shape, "tags": [], **rpayload(rng, shape)}
    obj.update(change)
    return {"size": {"height": 50, "width": 60}, "tags": [], "objects": [obj]}


def set_in(ann, path, value):
    node = ann["objects"][0]
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return ann


def zero_bitmap() -> str:
    return sly.AlphaMask.data_2_base64(np.zeros((3, 3), np.uint8))


BOTH_REFUSE = [
    ("unknown class", lambda: one_object("polygon", classTitle="zebra")),
    ("string coord", lambda: set_in(one_object("polygon"), ["points", "exterior", 0], ["a", 1])),
    ("nan coord", lambda: set_in(one_object("polygon"), ["points", "exterior", 0], [float("nan"), 1])),
    ("inf coord", lambda: set_in(one_object("line"), ["points", "exterior", 0], [1, float("inf")])),
    ("rectangle 3 points", lambda: set_in(one_object("rectangle"), ["points", "exterior"],
                                          [[0, 0], [1, 1], [2, 2]])),
    ("point 2 points", lambda: set_in(one_object("point"), ["points", "exterior"], [[0, 0], [1, 1]])),
    ("line 1 point", lambda: set_in(one_object("line"), ["points", "exterior"], [[0, 0]])),
    ("no points", lambda: {**one_object("polygon"), "objects": [{"classTitle": "c_polygon",
                                                                  "tags": []}]}),
    ("bitmap origin missing", lambda: set_in(one_object("bitmap"), ["bitmap"], {"data": "eJw="})),
    ("bitmap not zlib nor png", lambda: set_in(one_object("bitmap"), ["bitmap", "data"], "aGVsbG8=")),
    ("empty alpha mask", lambda: set_in(one_object("alpha_mask"), ["bitmap", "data"], zero_bitmap())),
    ("graph node not in template", lambda: set_in(one_object("graph"), ["nodes"],
                                                  {"zz": {"loc": [1, 2]}})),
    ("cuboid_2d 7 vertices", lambda: set_in(one_object("cuboid_2d"), ["vertices"],
                                           {k: {"loc": [1, 1]} for k in G.CUBOID_2D_VERTICES[:7]})),
    ("cuboid 2 faces", lambda: set_in(one_object("cuboid"), ["faces"], [[0, 1, 2, 3]] * 2)),
    ("cuboid face index", lambda: set_in(one_object("cuboid"), ["faces"], [[0, 1, 2, 99]] * 3)),
    ("obb no angle", lambda: {**one_object("oriented_bbox"), "objects": [
        {"classTitle": "c_oriented_bbox", "tags": [], "points": [[0, 0], [4, 4]]}]}),
    ("multipolygon no parts", lambda: set_in(one_object("multipolygon"), ["parts"], [])),
    ("no size", lambda: {"tags": [], "objects": []}),
    ("no objects", lambda: {"tags": [], "size": {"height": 5, "width": 5}}),
]


@pytest.mark.parametrize("name,make", BOTH_REFUSE, ids=[b[0] for b in BOTH_REFUSE])
def test_refused_like_the_sdk(name, make):
    meta = random_meta()
    ann = make()
    with pytest.raises(Exception):
        sly.Annotation.from_json(copy.deepcopy(ann), sly.ProjectMeta.from_json(meta))
    with pytest.raises(AnnotationError):
        parse_annotation(ann, parse_meta(meta), "ds/x.jpg")


def test_documented_differences_from_sdk():
    meta = random_meta()
    sdk_meta = sly.ProjectMeta.from_json(meta)
    # The SDK pads a 2-point polygon with its last point; we refuse it.
    two = set_in(one_object("polygon"), ["points", "exterior"], [[0, 0], [5, 5]])
    sly.Annotation.from_json(copy.deepcopy(two), sdk_meta)
    with pytest.raises(AnnotationError, match="expected at least 3 points, got 2"):
        parse_annotation(two, parse_meta(meta), "ds/x")
    # The SDK takes a bool as a number; we refuse it.
    boolean = set_in(one_object("point"), ["points", "exterior"], [[True, 3]])
    sly.Annotation.from_json(copy.deepcopy(boolean), sdk_meta)
    with pytest.raises(AnnotationError, match=r"expected \[x, y\] with 2 numbers"):
        parse_annotation(boolean, parse_meta(meta), "ds/x")
    # The SDK requires 'interior' and the 'tags' lists; we default them to empty.
    lax = one_object("polygon")
    del lax["objects"][0]["points"]["interior"], lax["objects"][0]["tags"], lax["tags"]
    with pytest.raises(Exception):
        sly.Annotation.from_json(copy.deepcopy(lax), sdk_meta)
    assert len(parse_annotation(lax, parse_meta(meta), "ds/x").labels) == 1
    # An unknown geometryType under an 'any' class: the SDK keeps a label that draws nothing.
    odd = one_object("polygon", classTitle="c_any", geometryType="hexagon")
    assert len(sly.Annotation.from_json(copy.deepcopy(odd), sdk_meta).labels) == 1
    with pytest.raises(AnnotationError, match="geometry: expected one of .*, got str 'hexagon'"):
        parse_annotation(odd, parse_meta(meta), "ds/x")


def test_geometry_type_used_only_for_any():
    meta = parse_meta(random_meta())
    ann = one_object("rectangle", geometryType="polygon")  # mismatched type is ignored
    assert isinstance(parse_annotation(ann, meta, "w").labels[0].geometry, G.Rectangle)
    ann = one_object("rectangle", classTitle="c_any", geometryType="rectangle")
    assert isinstance(parse_annotation(ann, meta, "w").labels[0].geometry, G.Rectangle)
    ann = one_object("rectangle", classTitle="c_any")
    del ann["objects"][0]["geometryType"]
    ann["objects"][0]["shape"] = "rectangle"  # the SDK's fallback key
    assert isinstance(parse_annotation(ann, meta, "w").labels[0].geometry, G.Rectangle)


# --- error messages ----------------------------------------------------------------------------

def small_meta():
    return parse_meta({"classes": [{"title": "cat", "shape": "rectangle", "color": "#FF0000"},
                                   {"title": "blob", "shape": "bitmap", "color": "#00ff00"}]})


def ann(*objects, size=None):
    return {"size": size or {"height": 10, "width": 10}, "objects": list(objects)}


RECT = {"classTitle": "cat", "points": {"exterior": [[1, 1], [3, 4]], "interior": []}}
HUGE_PNG = __import__("base64").b64encode(__import__("zlib").compress(
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x01\x00\x00\x00\x01\x00\x00\x08\x00\x00\x00\x00"
    b"\x00\x00\x00\x00")).decode()

ANN_ERRORS = [
    (b"{nope", AnnotationError, "ds/a.jpg", "expected JSON, got a parse error"),
    ("[1, 2]", AnnotationError, "ds/a.jpg", "expected a JSON object, got list"),
    ({"objects": []}, AnnotationError, "ds/a.jpg", "expected 'size' as {height, width}, got None"),
    (ann(size={"height": 0, "width": 5}), AnnotationError, "ds/a.jpg",
     "size.height: expected an integer in 1..2\\*\\*31, got 0"),
    (ann(size={"height": 5, "width": -3}), AnnotationError, "ds/a.jpg", "size.width: .* got -3"),
    (ann(size={"height": 5, "width": 2**31 + 1}), AnnotationError, "ds/a.jpg", "got 2147483649"),
    (ann(size={"height": "5", "width": 5}), AnnotationError, "ds/a.jpg", "got '5'"),
    (ann(size={"height": 5.5, "width": 5}), AnnotationError, "ds/a.jpg", "got 5.5"),
    ({"size": {"height": 5, "width": 5}}, AnnotationError, "ds/a.jpg",
     "expected 'objects' to be a list, got None"),
    (ann(RECT, "cat"), AnnotationError, "ds/a.jpg/object 1", "expected an object, got str"),
    (ann(RECT, {**RECT, "classTitle": "zebra"}), UnknownClassError, "ds/a.jpg/object 1",
     "classTitle: expected one of the 2 classes of meta.json, got 'zebra'"),
    (ann({"classTitle": "cat", "bitmap": {"origin": [0, 0], "data": ""}}), AnnotationError,
     "ds/a.jpg/object 0", "missing field 'points'"),
    (ann(RECT, RECT, {"classTitle": "blob", "bitmap": {"origin": [0, 0], "data": HUGE_PNG}}),
     LimitError, "ds/a.jpg/object 2", "got declared size 65536x65536"),
    (ann({**RECT, "tags": "x"}), AnnotationError, "ds/a.jpg/object 0", "tags: expected a list, got str"),
]


@pytest.mark.parametrize("obj,kind,where,reason", ANN_ERRORS)
def test_annotation_errors_say_where_expected_and_got(obj, kind, where, reason):
    with pytest.raises(kind, match=reason) as info:
        parse_annotation(obj, small_meta(), "ds/a.jpg")
    assert info.value.where == where
    assert str(info.value).startswith(where + ": ")


def test_annotation_fields():
    a = parse_annotation(json.dumps({**ann(RECT, {**RECT, "tags": [{"name": "t"}]}),
                                     "tags": [{"name": "img"}], "description": "d"}),
                         small_meta(), "w")
    assert a.size_hw == (10, 10) and len(a.labels) == 2
    assert [lab.object_index for lab in a.labels] == [0, 1]
    assert a.labels[1].tags == ({"name": "t"},) and a.tags == ({"name": "img"},)
    assert a.raw == {"size": {"height": 10, "width": 10}, "tags": [{"name": "img"}], "description": "d"}
    assert parse_annotation(ann(size={"height": 4.0, "width": 3}), small_meta(), "w").size_hw == (4, 3)


META_ERRORS = [
    (b"{", "meta.json: expected JSON"),
    ("[]", "expected a JSON object, got list"),
    ({"classes": {}}, "expected 'classes' to be a list, got dict"),
    ({"classes": [1]}, r"classes\[0\]: expected an object, got int"),
    ({"classes": [{"shape": "point", "color": "#000000"}]}, "expected a non-empty string 'title', got None"),
    ({"classes": [{"title": "a", "color": "#000000"}]}, "expected a string 'shape', got None"),
    ({"classes": [{"title": "a", "shape": "point", "color": "red"}]},
     "expected 'color' as '#RRGGBB', got 'red'"),
    ({"classes": [{"title": "a", "shape": "point", "color": "#000000", "geometry_config": []}]},
     "expected 'geometry_config' to be an object"),
    ({"classes": [{"title": "a", "shape": "point", "color": "#000000"}] * 2},
     "expected unique class titles, got 'a' twice"),
]


@pytest.mark.parametrize("obj,message", META_ERRORS)
def test_meta_errors(obj, message):
    with pytest.raises(ProjectError, match=message):
        parse_meta(obj)


def test_meta_colours_and_order():
    meta = parse_meta({"classes": [{"title": "z", "shape": "polygon", "color": "#0a0B0c"},
                                   {"title": "a", "shape": "any", "color": "#FFFFFF"}]})
    assert [(c.title, c.color_rgb) for c in meta.classes] == [("z", (10, 11, 12)), ("a", (255, 255, 255))]
    assert meta.class_index() == {"z": 1, "a": 2}


def test_missing_or_broken_meta(tmp_path):
    proj = copy_project("vector", tmp_path / "p")
    (proj / "meta.json").write_text("{oops")
    with pytest.raises(ProjectError, match="meta.json: expected JSON"):
        SuperviselySource.from_path(proj).read_meta()
    (proj / "meta.json").unlink()
    with pytest.raises(ProjectError, match="expected meta.json at the top or in a single top folder, "
                                           "got 0 candidate folders"):
        SuperviselySource.from_path(proj)
    with pytest.raises(ProjectError, match="expected a folder or a .tar, got .* \\(not found\\)"):
        SuperviselySource.from_path(tmp_path / "nowhere")


# --- listing -----------------------------------------------------------------------------------

def build_layout(root: Path, meta: bytes) -> None:
    """Every pairing case, nested datasets, stray files."""
    write(root / "meta.json", meta)
    files = {
        "top/img/a.jpg": "A", "top/ann/a.jpg.json": "a",            # current form
        "top/img/b.png": "BB", "top/ann/b.json": "bb",              # <stem>.json form
        "top/img/c.jpg": "CCC",                                     # image, no annotation
        "top/img/notes.txt": "?", "top/img/.DS_Store": "?",         # stray files: ignored
        "top/ann/orphan.jpg.json": "o",                             # annotation, no image
        "top/ann/readme.md": "?",                                   # not .json: ignored
        "top/img_info/a.jpg.json": "?", "top/meta/a.jpg.json": "?",  # per-item extras: ignored
        "top/img/d.jpg": "D", "top/img/d.png": "DD", "top/ann/d.json": "d",  # shared stem
        "top/img/e.jpg": "E", "top/ann/e.jpg.json": "e", "top/ann/e.json": "ee",  # both forms
        "top/datasets/child/img/x.jpg": "X", "top/datasets/child/ann/x.jpg.json": "x",
        "top/datasets/child/datasets/grand/img/y.jpeg": "Y",
        "top/datasets/child/datasets/grand/ann/y.json": "y",
        "other/img/Z.JPG": "Z", "other/ann/Z.JPG.json": "z",
        "top/datasets/ann/q.json": "?",                             # "datasets" is not a dataset
        "loose.json": "?", "top/ann/deeper/k.json": "?",
    }
    for rel, data in files.items():
        write(root / rel, data)


LAYOUT_ROWS = [
    ("other", "Z.JPG", "other/ann/Z.JPG.json", "other/img/Z.JPG", 1, 1),
    ("top", "a.jpg", "top/ann/a.jpg.json", "top/img/a.jpg", 1, 1),
    ("top", "b.png", "top/ann/b.json", "top/img/b.png", 2, 2),
    ("top", "c.jpg", None, "top/img/c.jpg", None, 3),
    ("top", "d.jpg", "top/ann/d.json", "top/img/d.jpg", 1, 1),
    ("top", "d.png", None, "top/img/d.png", None, 2),
    ("top", "e", "top/ann/e.json", None, 2, None),
    ("top", "e.jpg", "top/ann/e.jpg.json", "top/img/e.jpg", 1, 1),
    ("top", "orphan.jpg", "top/ann/orphan.jpg.json", None, 1, None),
    ("top/child", "x.jpg", "top/datasets/child/ann/x.jpg.json", "top/datasets/child/img/x.jpg", 1, 1),
    ("top/child/grand", "y.jpeg", "top/datasets/child/datasets/grand/ann/y.json",
     "top/datasets/child/datasets/grand/img/y.jpeg", 1, 1),
]


def test_layout_listing(tmp_path):
    build_layout(tmp_path / "proj", b'{"classes": []}')
    table = SuperviselySource.from_path(tmp_path / "proj").list_items()
    assert table.schema == ITEMS_SCHEMA
    assert rows(table) == LAYOUT_ROWS


def test_layout_listing_names_every_skipped_file(tmp_path):
    """Issue 19 item 9: a listed file that makes no item is named with the reason."""
    build_layout(tmp_path / "proj", b'{"classes": []}')
    src = SuperviselySource.from_path(tmp_path / "proj")
    src.list_items()
    assert src.warnings == [
        "top/ann/deeper/k.json: not exported: not directly in a dataset's img/ or ann/ folder",
        "top/ann/readme.md: not exported: an annotation must be a .json file",
        "top/datasets/ann/q.json: not exported: 'top/datasets' is not a dataset folder (a name such as "
        "img, ann, meta or datasets in its path)",
        "top/img/.DS_Store: not exported: not an image extension (none) and no annotation ann/.DS_Store.json",
        "top/img/notes.txt: not exported: not an image extension (.txt) and no annotation ann/notes.txt.json",
    ]


def test_symlinked_item_is_reported_not_followed(tmp_path, cli):
    """Issue 19 item 9: an item whose image and annotation are symbolic links (to files outside the
    project) is not read, and each link is named with the reason, on the console and in the report;
    the other items export as usual."""
    proj, outside = tmp_path / "proj", tmp_path / "outside"
    shutil.copytree(DATA / "vector", proj)
    outside.mkdir()
    for rel, name in (("ds/img", "cat1.jpg"), ("ds/ann", "cat1.jpg.json")):
        shutil.move(proj / rel / name, outside / name)
        (proj / rel / name).symlink_to(outside / name)
    src = SuperviselySource.from_path(proj)
    assert "cat1.jpg" not in src.list_items()["item"].to_pylist()
    link = "not exported: a symbolic link: not followed"
    assert [w.split(": ", 1)[0] for w in src.warnings] == ["ds/ann/cat1.jpg.json", "ds/img/cat1.jpg"]
    assert all(link in w for w in src.warnings)
    ran = cli("export", proj, tmp_path / "out", "--masks", "machine")
    assert ran.returncode == 0, ran.stderr
    report = json.loads((tmp_path / "out/.maskcore-meta/report.json").read_text())
    assert report["items"]["total"] == 5 and report["source_warnings"] == src.warnings
    assert f"maskcore: warning: ds/img/cat1.jpg: {link}" in ran.stderr
    assert "maskcore: 2 source warnings (first: ds/ann/cat1.jpg.json: " in ran.stderr
    assert not (tmp_path / "out/ds/masks_machine/cat1.png").exists()


def test_nested_listing_matches_sdk(tmp_path):
    """Nested datasets and both annotation forms, read by the SDK and by us."""
    proj = tmp_path / "proj"
    write(proj / "meta.json", (DATA / "vector" / "meta.json").read_bytes())
    src_ann = DATA / "vector" / "ds" / "ann"
    layout = {"top": ["cat1", "dog2"], "top/datasets/kid": ["cat3"],
              "top/datasets/kid/datasets/baby": ["dog1", "cat2"], "second": ["dog3"]}
    for folder, stems in layout.items():
        (proj / folder / "img").mkdir(parents=True)
        for i, stem in enumerate(stems):
            shutil.copy(DATA / "vector" / "ds" / "img" / f"{stem}.jpg", proj / folder / "img")
            ann_name = f"{stem}.jpg.json" if i % 2 == 0 else f"{stem}.json"
            write(proj / folder / "ann" / ann_name, (src_ann / f"{stem}.jpg.json").read_bytes())
    ours = SuperviselySource.from_path(proj)
    table = ours.list_items()
    sdk = sly.Project(str(proj), sly.OpenMode.READ)
    expected = sorted((ds.name, item, str(Path(ds.get_ann_path(item)).relative_to(proj)),
                       str(Path(ds.get_img_path(item)).relative_to(proj)))
                      for ds in sdk.datasets for item in ds.get_items_names())
    assert [r[:4] for r in rows(table)] == expected
    assert {r[0] for r in expected} == {"top", "top/kid", "top/kid/baby", "second"}
    meta, sdk_meta = ours.read_meta(), sdk.meta
    for r in table.to_pylist():
        ds = sdk.datasets.get(r["dataset"])
        ref = ds.get_ann(r["item"], sdk_meta)
        mine = ours.read_annotation(r["ann_path"], meta, f"{r['dataset']}/{r['item']}")
        assert [canon(lab.geometry) for lab in mine.labels] == [sly_canon(lab.geometry) for lab in ref.labels]


def test_dataset_name_collision(tmp_path):
    write(tmp_path / "p" / "meta.json", b"{}")
    write(tmp_path / "p" / "a" / "datasets" / "b" / "ann" / "x.json", b"{}")
    write(tmp_path / "p" / "a" / "b" / "ann" / "y.json", b"{}")
    with pytest.raises(ProjectError, match="dataset name 'a/b': expected one folder, got two"):
        SuperviselySource.from_path(tmp_path / "p").list_items()


def random_file_list(rng: random.Random, n: int):
    files = []
    for _ in range(n):
        ds = rng.choice(["b", "a", "a/datasets/c", "Ä", "a b"])
        stem = f"{rng.choice(['img', 'IMG', 'x'])}_{rng.randrange(10 * n)}"
        form = rng.random()
        if form < 0.8:
            files.append((f"{ds}/img/{stem}.jpg", rng.randrange(1, 10**6)))
        if 0.1 < form < 0.6:
            files.append((f"{ds}/ann/{stem}.jpg.json", rng.randrange(1, 10**5)))
        elif form >= 0.6:
            files.append((f"{ds}/ann/{stem}.json", rng.randrange(1, 10**5)))
    return list(dict(files).items())


def test_listing_is_sorted_and_independent_of_file_order():
    rng = random.Random(42)
    for _ in range(20):
        files = random_file_list(rng, 300)
        first = index_project_files(files)
        keys = list(zip(first["dataset"].to_pylist(), first["item"].to_pylist()))
        assert keys == sorted(keys) and len(set(keys)) == len(keys)
        rng.shuffle(files)
        assert index_project_files(files).equals(first)
        # every file of ann/ and every image is accounted for exactly once
        listed = set(first["ann_path"].to_pylist()) | set(first["img_path"].to_pylist())
        assert listed - {None} == {p for p, _ in files}


def test_listing_pairs_100k_items():
    """Every image of a 100k-item listing finds its annotation (speed: benchmarks/plan_bench.py, not a
    timed test)."""
    files = [(f"ds{i % 7}/img/item_{i:06d}.jpg", 1000 + i) for i in range(100_000)]
    files += [(f"ds{i % 7}/ann/item_{i:06d}.jpg.json", 100 + i) for i in range(100_000)]
    table = index_project_files(files)
    assert table.num_rows == 100_000 and table["ann_path"].null_count == 0
    assert sorted(zip(table["img_path"].to_pylist(), table["ann_path"].to_pylist()))[:2] == [
        ("ds0/img/item_000000.jpg", "ds0/ann/item_000000.jpg.json"),
        ("ds0/img/item_000007.jpg", "ds0/ann/item_000007.jpg.json")]


def test_listing_on_disk_is_one_walk(tmp_path, monkeypatch):
    """No per-item existence checks or reads: one recursive find (its stats give the sizes)."""
    proj = tmp_path / "p"
    write(proj / "meta.json", b"{}")
    for i in range(2000):
        write(proj / "ds" / "img" / f"{i}.png", b"i")
        write(proj / "ds" / "ann" / f"{i}.png.json", b"a")
    src = SuperviselySource.from_path(proj)
    fs, _ = src.filesystem()
    calls = []
    for name in ("exists", "isfile", "isdir", "cat_file", "open", "find"):
        orig = getattr(fs, name)
        monkeypatch.setattr(fs, name, lambda *a, _o=orig, _n=name, **k: calls.append(_n) or _o(*a, **k))
    table = src.list_items()
    assert table.num_rows == 2000
    assert calls == ["find"]


# --- folder vs tar -----------------------------------------------------------------------------

def make_tar(src: Path, dest: Path, arcname: str) -> Path:
    with tarfile.open(dest, "w") as tar:
        if arcname == ".":
            tar.add(src, arcname=".")
        elif arcname:
            tar.add(src, arcname=arcname)
        else:
            for child in sorted(src.iterdir()):
                tar.add(child, arcname=child.name)
    return dest


@pytest.fixture
def layout_project(tmp_path):
    meta = (DATA / "vector" / "meta.json").read_bytes() if DATA.is_dir() else b'{"classes": []}'
    build_layout(tmp_path / "proj", meta)
    return tmp_path / "proj"


@pytest.mark.parametrize("arcname,name,pid", [("123_my project", "my project", 123),
                                              ("", "proj", None), (".", "proj", None)])
def test_tar_equals_folder(layout_project, tmp_path, arcname, name, pid):
    folder = SuperviselySource.from_path(layout_project)
    tar_path = make_tar(layout_project, tmp_path / "proj.tar", arcname)
    tarred = SuperviselySource.from_path(str(tar_path))
    assert tarred.is_tar and (tarred.project_name, tarred.project_id) == (name, pid)
    assert tarred.list_items().equals(folder.list_items())
    assert rows(tarred.list_items()) == LAYOUT_ROWS
    assert tarred.read_meta() == folder.read_meta()
    for path in [p for r in LAYOUT_ROWS for p in r[2:4] if p] + ["meta.json"]:
        assert tarred.read_bytes(path) == folder.read_bytes(path)
    via_url = SuperviselySource.from_path(f"tar::file://{tar_path}")
    assert via_url.list_items().equals(folder.list_items())


TAR_FILES = {
    "p/meta.json": b"{}",
    "p/ds/img/" + "long_" * 30 + ".jpg": b"L" * 700,                # > 100 chars: prefix / L / pax
    "p/ds/img/" + "d" * 120 + "/x.jpg": b"deep",
    "p/ds/img/chat_\u00e9t\u00e9_\u732b.png": bytes(range(256)) * 3,  # non-ASCII name
    "p/ds/" + "/".join(f"seg{i:02d}" for i in range(20)) + "/x.jpg": b"prefix",  # ustar prefix
    "p/ds/img/empty.jpg": b"",
    "p/ds/img/block.jpg": b"B" * 1024,                                # exactly two blocks
}


def build_tar_tree(root: Path) -> None:
    for rel, data in TAR_FILES.items():
        write(root / rel, data)
    (root / "p/ds/img/sym.jpg").symlink_to("block.jpg")


@pytest.mark.parametrize("fmt", [tarfile.GNU_FORMAT, tarfile.PAX_FORMAT, tarfile.USTAR_FORMAT])
def test_scan_tar_matches_tarfile(tmp_path, fmt):
    build_tar_tree(tmp_path / "t")
    path = tmp_path / "x.tar"
    with tarfile.open(path, "w", format=fmt) as tar:
        for rel in sorted(TAR_FILES) + ["p/ds/img/sym.jpg"]:
            if fmt == tarfile.USTAR_FORMAT and max(len(c) for c in rel.split("/")) > 100:
                continue  # a component over 100 characters does not fit ustar at all
            tar.add(tmp_path / "t" / rel, arcname=rel, recursive=False)
        info = tarfile.TarInfo("p/ds/img/hard.jpg")  # hard link to an earlier member
        info.type, info.linkname = tarfile.LNKTYPE, "p/ds/img/block.jpg"
        tar.addfile(info)
    check_scan_against_tarfile(path)


def test_scan_tar_reads_gnu_tar_output(tmp_path):
    tar_bin = program("tar")
    build_tar_tree(tmp_path / "t")
    path = tmp_path / "gnu.tar"
    subprocess.run([tar_bin, "-cf", str(path), "-C", str(tmp_path / "t"), "p"], check=True)
    check_scan_against_tarfile(path)


def check_scan_against_tarfile(path: Path) -> None:
    with open(path, "rb") as f:
        ours = scan_tar(f)
    data = path.read_bytes()
    with tarfile.open(path) as tar:
        expected = {m.name: tar.extractfile(m).read() for m in tar.getmembers()
                    if m.isfile() or m.issym() or m.islnk()}
    assert set(ours) == set(expected)
    for name, (start, size) in ours.items():
        assert data[start:start + size] == expected[name], name


def test_scan_tar_refuses_garbage(tmp_path):
    with pytest.raises(ProjectError, match="tar header at byte 0: expected an octal number"):
        scan_tar(io.BytesIO(b"x" * 2048))
    build_tar_tree(tmp_path / "t")
    raw = bytearray(make_tar(tmp_path / "t" / "p", tmp_path / "p.tar", "p").read_bytes())
    raw[0] ^= 0x20  # one bit of the first member's name: its checksum no longer matches
    with pytest.raises(ProjectError, match="tar header at byte 0: expected a valid checksum"):
        scan_tar(io.BytesIO(bytes(raw)))
    with pytest.raises(ProjectError, match="expected a valid checksum"):
        SuperviselySource.from_path(make_tar_bytes(tmp_path / "bad.tar", bytes(raw)))


def make_tar_bytes(path: Path, data: bytes) -> str:
    path.write_bytes(data)
    return str(path)


def test_project_id_from_folder_name(tmp_path, layout_project):
    shutil.copytree(layout_project, tmp_path / "outer" / "77_fruit")
    src = SuperviselySource.from_path(tmp_path / "outer")  # single sub-folder holding meta.json
    assert (src.project_name, src.project_id) == ("fruit", 77)
    assert rows(src.list_items()) == LAYOUT_ROWS
    shutil.copytree(layout_project, tmp_path / "outer" / "second")
    with pytest.raises(ProjectError, match="got 2 candidate folders \\(77_fruit, second\\)|"
                                           "got 2 candidate folders \\(second, 77_fruit\\)"):
        SuperviselySource.from_path(tmp_path / "outer")


def test_remote_style_filesystem(layout_project, tmp_path):
    """The same project through fsspec's in-memory filesystem: URLs, not local paths."""
    import fsspec
    mem = fsspec.filesystem("memory")
    base = f"/maskcore-test-{id(tmp_path)}"
    try:
        mem.put(str(layout_project), f"{base}/proj", recursive=True)
        mem.pipe(f"{base}/proj.tar", make_tar(layout_project, tmp_path / "p.tar", "proj").read_bytes())
        for url in (f"memory://{base}/proj", f"memory://{base}/proj.tar"):
            src = pickle.loads(pickle.dumps(SuperviselySource.from_path(url)))
            assert rows(src.list_items()) == LAYOUT_ROWS, url
            assert src.read_bytes("top/img/b.png") == b"BB"
    finally:
        mem.rm(base, recursive=True)


def test_relative_local_path_is_made_absolute(layout_project, monkeypatch):
    monkeypatch.chdir(layout_project.parent)
    src = SuperviselySource.from_path(layout_project.name)
    assert src.url == str(layout_project)
    monkeypatch.chdir("/")
    assert rows(pickle.loads(pickle.dumps(src)).list_items()) == LAYOUT_ROWS


def test_missing_file_raises_file_not_found(layout_project, tmp_path):
    for src in (SuperviselySource.from_path(layout_project),
                SuperviselySource.from_path(make_tar(layout_project, tmp_path / "p.tar", "p"))):
        with pytest.raises(FileNotFoundError):
            src.read_bytes("top/img/nope.jpg")


def test_pickled_tar_source_reads_concurrently(layout_project, tmp_path):
    tarred = SuperviselySource.from_path(make_tar(layout_project, tmp_path / "p.tar", "p"))
    tarred.list_items()
    state = tarred.__getstate__()
    assert state["_fs"] is None and state["_members"] is None
    clone = pickle.loads(pickle.dumps(tarred))
    folder = SuperviselySource.from_path(layout_project)
    paths = [p for r in LAYOUT_ROWS for p in r[2:4] if p] * 40
    random.Random(3).shuffle(paths)
    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(clone.read_bytes, paths))
    assert got == [folder.read_bytes(p) for p in paths]


def test_source_travels_to_another_process(tmp_path):
    """A fresh interpreter gets the pickled tar source, reopens it and parses there."""
    tarred = SuperviselySource.from_path(make_tar(DATA / "instance", tmp_path / "i.tar", "1_inst"))
    folder = SuperviselySource.from_path(DATA / "instance")
    meta = folder.read_meta()
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=ctx) as pool:  # bound methods: no test module import
        assert pool.submit(tarred.list_items).result(timeout=120).equals(folder.list_items())
        got = pool.submit(tarred.read_annotation, "ds/ann/dog3.jpg.json", meta, "ds/dog3.jpg")
        got = got.result(timeout=120)
    ref = folder.read_annotation("ds/ann/dog3.jpg.json", meta, "ds/dog3.jpg")
    assert [canon(lab.geometry) for lab in got.labels] == [canon(lab.geometry) for lab in ref.labels]
    assert len(got.labels) == 2


def test_empty_project_lists_nothing(tmp_path):
    write(tmp_path / "p" / "meta.json", b"{}")
    table = SuperviselySource.from_path(tmp_path / "p").list_items()
    assert table.num_rows == 0 and table.schema == ITEMS_SCHEMA
    assert isinstance(table, pa.Table)
