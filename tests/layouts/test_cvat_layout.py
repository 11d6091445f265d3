"""The CVAT "Segmentation mask 1.1" layout against independent references.

Pixels: pycocotools (``decode(merge(frPyObjects(...)))``, what CVAT's Datumaro fork draws with)
painted in the order the spec gives (spec/cvat.md), on every polygon of the real facade COCO set
and on seeded random items (polygons, multi-ring objects, boxes, rotated boxes, Supervisely
rectangles, groups, z_orders, background-labelled shapes). Colours: the VOC colormap written from
the spec's formula here, not maskcore's. PNGs decoded with PIL.
"""

import io
import json
import math
import pickle
from itertools import groupby

import numpy as np
import pytest
from PIL import Image

from helpers import DATA, colours
from helpers.datumaro import assert_datumaro_reads, write_export
from helpers.oracles import load, oracle
from maskcore.errors import AnnotationError, ConfigError, LimitError, ProjectError
from maskcore.kernel.patch import Patch, empty_patch
from maskcore.layouts.cvat import CvatMasksLayout, _area_labels, _paint_index
from maskcore.model import geometry as g
from maskcore.model.annotation import Annotation, Label, ObjClass, ProjectMeta
from maskcore.model.item import ItemData

mask_api = oracle("pycocotools.mask")
# pycocotools 2.0.x under numpy 2 warns about its own __array__ on every decode.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

FACADE = DATA / "facade/_annotations.coco.json"
LIST = "@list/ImageSets/Segmentation/"


# --- every export of this module is read back by Datumaro -------------------------------------

@pytest.fixture(autouse=True)
def datumaro_reads_every_export(request, monkeypatch, tmp_path):
    """Every ``item_files`` a test renders is written as an export folder (one per labelmap) and
    imported by Datumaro's ``voc_segmentation`` importer (one request per test) after the test:
    same items, labels and masks (helpers/datumaro.py). ``@pytest.mark.not_voc(reason)`` opts a
    test out (outputs no VOC reader can read by design); ``@pytest.mark.voc_sample(n)`` sends
    every n-th render only (Datumaro unpaints a large mask in ~0.1 s: ``mask_tools.unpaint_mask``)."""
    renders = []
    item_files = CvatMasksLayout.item_files

    def recording(self, item, *args, **kwargs):
        files = item_files(self, item, *args, **kwargs)
        renders.append((self, item, files))
        return files

    monkeypatch.setattr(CvatMasksLayout, "item_files", recording)
    yield
    sample = request.node.get_closest_marker("voc_sample")
    renders = renders[::sample.args[0]] if sample else renders
    if renders and request.node.get_closest_marker("not_voc") is None:
        root = write_export(tmp_path / "datumaro", renders)
        assert_datumaro_reads(sorted(root.iterdir()))


# --- independent references ------------------------------------------------------------------

def voc(i: int) -> tuple[int, int, int]:
    """spec/cvat.md: for j from 7 down to 0, bits 0/1/2 of c go to r/g/b bit j; c >>= 3."""
    r = gg = b = 0
    c = i
    for j in range(7, -1, -1):
        r |= (c & 1) << j
        gg |= ((c >> 1) & 1) << j
        b |= ((c >> 2) & 1) << j
        c >>= 3
    return r, gg, b


def test_voc_formula_known_values():
    assert [voc(i) for i in (0, 1, 2, 3, 4, 15, 255)] == [
        (0, 0, 0), (128, 0, 0), (0, 128, 0), (128, 128, 0), (0, 0, 128), (192, 128, 128),
        (224, 224, 192)]


def fork_round(values):
    """CVAT's Datumaro fork stores shape points as ``np.around(points, 2)`` (float64)."""
    arr = np.asarray(values)
    return np.around(arr, 2) if arr.dtype.kind == "f" else arr


def ref_mask(geom, size_hw) -> np.ndarray:
    """Full bool mask of one shape as CVAT's exporter draws it: points rounded as the fork stores
    them, then pycocotools."""
    h, w = size_hw
    if isinstance(geom, g.Polygon):
        rings = [fork_round(geom.exterior_xy)]
    elif isinstance(geom, g.MultiPolygon):
        rings = [fork_round(p.exterior_xy) for p in geom.parts]
    elif isinstance(geom, g.Rectangle):      # inclusive pixel corners -> COCO bbox
        box = [geom.x0, geom.y0, geom.x1 - geom.x0 + 1, geom.y1 - geom.y0 + 1]
        return mask_api.decode(mask_api.frPyObjects(np.array([box], np.float64), h, w))[..., 0] > 0
    elif isinstance(geom, g.Box) and geom.angle == 0:   # the fork's Bbox: rounded x0, y0, x1, y1
        x0, y0, x1, y1 = (float(fork_round(v)) for v in (geom.x0, geom.y0, geom.x1, geom.y1))
        box = [x0, y0, x1 - x0, y1 - y0]
        return mask_api.decode(mask_api.frPyObjects(np.array([box], np.float64), h, w))[..., 0] > 0
    elif isinstance(geom, g.Box):            # CVAT: corners rotated about the centre
        cx, cy = (geom.x0 + geom.x1) / 2, (geom.y0 + geom.y1) / 2
        a = math.radians(geom.angle)
        ring = []
        for x, y in ((geom.x0, geom.y0), (geom.x0, geom.y1), (geom.x1, geom.y1), (geom.x1, geom.y0)):
            ring.append([cx + (x - cx) * math.cos(a) - (y - cy) * math.sin(a),
                         cy + (x - cx) * math.sin(a) + (y - cy) * math.cos(a)])
        rings = [fork_round(np.array(ring))]   # CVAT makes it a polygon: points rounded
    else:
        raise TypeError(type(geom))
    flat = [np.asarray(r, np.float64).ravel().tolist() for r in rings]
    return mask_api.decode(mask_api.merge(mask_api.frPyObjects(flat, h, w))) > 0


def _window(mask):
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if not rows.size:
        return slice(0, 0), slice(0, 0)
    return slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)


def reference_masks(labels, meta, size_hw, masks=None, windows=None):
    """(class RGB, object RGB) as spec/cvat.md describes the fork's export. ``windows``: a
    (rows, cols) slice pair holding each mask's pixels (found from the masks when not given)."""
    masks = masks if masks is not None else [ref_mask(lb.geometry, size_hw) for lb in labels]
    windows = windows if windows is not None else [_window(m) for m in masks]
    # RotatedBoxesToPolygons: every rotated box leaves its place and its polygon is appended last
    moved = sorted(range(len(labels)), key=lambda i: isinstance(labels[i].geometry, g.Box)
                   and labels[i].geometry.angle != 0)
    labels, masks, windows = [labels[i] for i in moved], [masks[i] for i in moved], [windows[i] for i in moved]
    order = sorted(range(len(labels)), key=lambda i: labels[i].group)
    instances = []
    for gid, run in groupby(order, key=lambda i: labels[i].group):
        run = list(run)
        for m in ([[i] for i in run] if gid == 0 else [run]):
            if len(m) == 1:
                lb = labels[m[0]]
                instances.append((lb.class_title, lb.z_order, masks[m[0]], windows[m[0]]))
                continue
            areas = [int(masks[i].sum()) for i in m]
            leader = labels[m[areas.index(max(areas))]]
            union = np.logical_or.reduce([masks[i] for i in m])
            instances.append((leader.class_title, leader.z_order, union, _window(union)))
    instances.sort(key=lambda t: t[1])
    index = np.zeros(size_hw, np.int64)
    for k, (title, _, mask, win) in enumerate(instances, start=1):
        index[win][mask[win]] = 0 if title == "background" else k
    colours = {c.title: c.color_rgb for c in meta.classes}
    bg = colours.get("background", (0, 0, 0))
    class_lut = np.array([bg] + [colours[t] for t, *_ in instances], np.uint8)
    object_lut = np.array([voc(i) for i in range(len(instances) + 1)], np.uint8)
    return np.take(class_lut, index, axis=0), np.take(object_lut, index, axis=0)


def count_differing(a, b) -> int:
    """Pixels whose colour differs."""
    return 0 if np.array_equal(a, b) else int((a != b).any(axis=2).sum())


def decode(png: bytes) -> np.ndarray:
    img = Image.open(io.BytesIO(png))
    assert img.mode == "RGB" and img.info.get("transparency") is None
    return np.asarray(img)


def assert_consistent(class_rgb, object_rgb, bg=(0, 0, 0)):
    """Every instance colour maps to exactly one class colour; instance 0 is background."""
    pack = lambda a: (a[..., 0].astype(np.int64) << 16) | (a[..., 1].astype(np.int64) << 8) | a[..., 2]
    keys = np.unique((pack(object_rgb) << 24 | pack(class_rgb)).ravel())
    objs, counts = np.unique(keys >> 24, return_counts=True)
    assert (counts == 1).all(), f"instance colours with several classes: {objs[counts > 1]}"
    bg_keys = keys[keys >> 24 == 0]
    assert bg_keys.size <= 1 and (bg_keys.size == 0 or bg_keys[0] == pack(np.array(bg)))


# --- helpers ---------------------------------------------------------------------------------

def make_meta(*classes):
    return ProjectMeta(tuple(ObjClass(t, "any", c) for t, c in classes))


META = make_meta(("cat", (255, 0, 0)), ("dog", (0, 0, 255)), ("bird", (0, 200, 0)))


def make_item(labels, size_hw=(20, 30), meta=META, dataset="ds", name="img.jpg", stem="img",
              tags=(), image=None):
    labels = tuple(Label(t, geom, i, z_order=z, group=grp)
                   for i, (t, geom, z, grp) in enumerate(labels))
    return ItemData(dataset=dataset, name=name, out_dir=dataset, mask_stem=stem, out_name=name,
                    meta=meta, annotation=Annotation(size_hw, labels, tags), ann_bytes=b"{}",
                    image_bytes=image)


def poly(*xy):
    return g.Polygon(np.array(xy, np.float64).reshape(-1, 2))


def render(layout, item, warn=None):
    files = layout.item_files(item, warn=warn)
    paths = [p for p, _ in files]
    assert len(paths) == len(set(paths))
    return dict(files)


def masks_of(files, stem="img"):
    return (decode(files[f"SegmentationClass/{stem}.png"]),
            decode(files[f"SegmentationObject/{stem}.png"]))


LAYOUT = CvatMasksLayout.from_options({})


# --- real data: every polygon of the facade set ------------------------------------------------

@pytest.mark.voc_sample(27)   # 4 of the 108 large images: ~1.5 s of Datumaro instead of 30
def test_facade_every_polygon_equals_pycocotools():
    coco = json.loads(FACADE.read_text())
    names = []
    for c in coco["categories"]:            # duplicate names (facade) are one class
        if c["name"] not in names:
            names.append(c["name"])
    cat_name = {c["id"]: c["name"] for c in coco["categories"]}
    meta = make_meta(*((n, voc(i)) for i, n in enumerate(names, start=1)))
    by_image = {}
    for a in coco["annotations"]:
        by_image.setdefault(a["image_id"], []).append(a)
    polygons = differing = 0
    for n, image in enumerate(coco["images"]):
        size_hw = (image["height"], image["width"])
        labels, masks, windows = [], [], []
        for a in by_image.get(image["id"], []):
            rings = [np.array(s, np.float64).reshape(-1, 2) for s in a["segmentation"]]
            assert all(len(r) >= 3 for r in rings)
            geom = g.Polygon(rings[0]) if len(rings) == 1 else \
                g.MultiPolygon(tuple(g.Polygon(r) for r in rings))
            labels.append((cat_name[a["category_id"]], geom, 0, 0))
            rle = mask_api.frPyObjects([fork_round(np.array(s, np.float64)).tolist()
                                        for s in a["segmentation"]], *size_hw)
            merged = mask_api.merge(rle)
            masks.append(mask_api.decode(merged) > 0)
            x, y, bw, bh = (int(v) for v in mask_api.toBbox(merged))   # integer-valued for RLEs
            windows.append((slice(y, y + bh), slice(x, x + bw)))
            polygons += len(rings)
        stem = image["file_name"].rsplit(".", 1)[0]
        item = make_item(labels, size_hw, meta, name=image["file_name"], stem=stem)
        files = render(LAYOUT, item)
        class_rgb, object_rgb = masks_of(files, stem)
        ref_class, ref_object = reference_masks(item.annotation.labels, meta, size_hw, masks,
                                                windows)
        differing += count_differing(class_rgb, ref_class) + count_differing(object_rgb, ref_object)
        if n % 4 == 0:                          # (the reference is consistent by construction)
            assert_consistent(class_rgb, object_rgb)
    assert polygons == 3849
    assert differing == 0


# --- random items vs the pycocotools reference --------------------------------------------------

RANDOM_META = make_meta(("Zebra", (250, 10, 10)), ("apple", (10, 250, 10)),
                        ("background", (7, 7, 7)), ("cat", (10, 10, 250)), ("dog", (90, 90, 0)))


def _random_geom(rng, h, w):
    kind = rng.integers(0, 6)
    if kind <= 1:
        n = int(rng.integers(3, 9))
        pts = rng.uniform([-5, -5], [w + 5, h + 5], (n, 2))
        if rng.random() < 0.4:
            pts = np.round(pts * 2) / 2                     # ties on .0 / .5
        return g.Polygon(pts)
    if kind == 2:
        parts = tuple(g.Polygon(rng.uniform([-3, -3], [w + 3, h + 3], (int(rng.integers(3, 7)), 2)))
                      for _ in range(2))
        return g.MultiPolygon(parts)
    if kind == 3:
        x0, y0 = rng.integers(-3, [w, h])
        x1, y1 = x0 + rng.integers(0, 12), y0 + rng.integers(0, 12)
        return g.Rectangle(int(x0), int(y0), int(x1), int(y1))
    x0, y0 = rng.uniform(-3, [w, h])
    if rng.random() < 0.5:
        x0, y0 = round(x0), round(y0)
    x1, y1 = x0 + rng.uniform(0.3, 15), y0 + rng.uniform(0.3, 15)
    angle = 0.0 if kind == 4 else float(rng.uniform(-180, 180))
    return g.Box(float(x0), float(y0), float(x1), float(y1), angle)


def test_random_items_equal_the_pycocotools_reference():
    rng = np.random.default_rng(20240604)
    titles = [c.title for c in RANDOM_META.classes]
    shapes = differing = 0
    for _ in range(600):
        h, w = (int(v) for v in rng.integers(5, 48, 2))
        labels = []
        for _ in range(int(rng.integers(1, 22))):
            title = titles[rng.integers(0, len(titles))]
            group = int(rng.integers(1, 4)) if rng.random() < 0.35 else 0
            labels.append((title, _random_geom(rng, h, w), int(rng.integers(-2, 3)), group))
        item = make_item(labels, (h, w), RANDOM_META)
        shapes += len(labels)
        class_rgb, object_rgb = masks_of(render(LAYOUT, item))
        ref_class, ref_object = reference_masks(item.annotation.labels, RANDOM_META, (h, w))
        differing += count_differing(class_rgb, ref_class) + count_differing(object_rgb, ref_object)
        assert_consistent(class_rgb, object_rgb, bg=(7, 7, 7))
    assert shapes > 6000
    assert differing == 0


def test_shapes_rounded_together_equal_one_by_one():
    """``cvat_shapes`` rounds the one-ring float polygons of an item in one call: the same
    geometries as ``cvat_shape`` of each (integer and holed polygons, parts, boxes as they are)."""
    from maskcore.layouts.cvat import cvat_shape, cvat_shapes
    rng = np.random.default_rng(5)

    def rings(geom):
        if isinstance(geom, g.MultiPolygon):
            return [r for p in geom.parts for r in rings(p)]
        if isinstance(geom, g.Polygon):
            return [geom.exterior_xy, *geom.interiors_xy]
        return [np.array([getattr(geom, f) for f in ("x0", "y0", "x1", "y1")])]
    for _ in range(300):
        geoms = [_random_geom(rng, 30, 40) for _ in range(int(rng.integers(0, 9)))]
        if rng.random() < 0.3:
            geoms.append(g.Polygon(rng.integers(-3, 40, (5, 2))))
        if rng.random() < 0.3:
            geoms.append(g.Polygon(rng.uniform(0, 30, (5, 2)), (rng.uniform(0, 30, (3, 2)),)))
        got, want = cvat_shapes(geoms), [cvat_shape(geom) for geom in geoms]
        assert [type(a) for a in got] == [type(b) for b in want]
        for a, b in zip(got, want):
            assert all(x.dtype == y.dtype and np.array_equal(x, y) for x, y in zip(rings(a), rings(b), strict=True))


def test_items_encoded_from_runs_equal_the_painted_canvas(monkeypatch):
    """Items of polygons, multipolygons and rotated boxes (any z_order) are encoded from the
    kernel's runs (``_encoded_from_runs``): the same bytes as painting the index canvas, which
    items with groups, holes, background shapes or other shapes still do."""
    rng = np.random.default_rng(8)
    titles = [c.title for c in RANDOM_META.classes if c.title != "background"]
    items = []
    for _ in range(150):
        h, w = (int(v) for v in rng.integers(5, 48, 2))
        labels = []
        for _ in range(int(rng.integers(1, 16))):
            geom = _random_geom(rng, h, w)
            if isinstance(geom, (g.Rectangle, g.Box)) and not getattr(geom, "angle", 0):
                geom = g.Polygon(rng.uniform(-4, 50, (int(rng.integers(3, 8)), 2)))
            labels.append((titles[rng.integers(0, len(titles))], geom, int(rng.integers(-2, 3)), 0))
        items.append(make_item(labels, (h, w), RANDOM_META))
    assert all(LAYOUT._paints_runs(_area_labels(item)) for item in items)
    from_runs = [LAYOUT.item_files(item) for item in items]
    monkeypatch.setattr(CvatMasksLayout, "_paints_runs", lambda self, labels: False)
    assert [LAYOUT.item_files(item) for item in items] == from_runs


@pytest.mark.not_voc("instance colours past the VOC colormap's 256 entries")
def test_runs_past_255_instances_are_refused_or_extended_as_the_canvas(monkeypatch):
    square = lambda i: g.Polygon(np.array([[0, 0], [0, 1.5], [1.5, 1.5], [1.5, 0]]) + [i % 30, i // 30 % 20])  # noqa: E731
    many = make_item([("cat", square(i), 0, 0) for i in range(300)], (20, 30), RANDOM_META)
    extend = CvatMasksLayout.from_options({"instance_overflow": "extend"})
    assert LAYOUT._paints_runs(_area_labels(many))
    with pytest.raises(LimitError, match="300 instances"):
        LAYOUT.item_files(many)
    from_runs = extend.item_files(many)
    monkeypatch.setattr(CvatMasksLayout, "_paints_runs", lambda self, labels: False)
    assert extend.item_files(many) == from_runs


def test_group_takes_class_and_z_of_its_largest_member():
    meta = make_meta(("cat", (255, 0, 0)), ("dog", (0, 0, 255)))
    big = poly(0, 0, 10, 0, 10, 10, 0, 10)                  # 100 px, dog, z=5
    small = poly(20, 0, 22, 0, 22, 2, 20, 2)                # 4 px, cat, z=0
    over = poly(5, 5, 25, 5, 25, 8, 5, 8)                   # ungrouped cat, z=1: under the group
    item = make_item([("cat", small, 0, 7), ("dog", big, 5, 7), ("cat", over, 1, 0)], meta=meta)
    class_rgb, object_rgb = masks_of(render(LAYOUT, item))
    assert tuple(class_rgb[1, 21]) == (0, 0, 255)           # the small member is dog-coloured
    assert tuple(object_rgb[1, 21]) == tuple(object_rgb[1, 1]) == voc(2)
    assert tuple(object_rgb[6, 6]) == voc(2)                # group (z=5) above the cat (z=1)
    assert tuple(object_rgb[6, 15]) == voc(1)


# --- labelmap and background ----------------------------------------------------------------

def test_labelmap_sorted_in_code_points_with_background_added():
    meta = make_meta(("dog", (0, 0, 255)), ("Zebra", (250, 10, 10)), ("apple", (10, 250, 10)),
                     ("cat", (1, 2, 3)))
    (path, data), = LAYOUT.project_files(meta, b"{}")
    assert path == "labelmap.txt"
    assert data.decode() == ("# label:color_rgb:parts:actions\nZebra:250,10,10::\napple:10,250,10::\n"
                             "background:0,0,0::\ncat:1,2,3::\ndog:0,0,255::\n")
    for line in data.decode().splitlines()[1:]:
        assert len(line.split(":")) == 4


def test_labelmap_keeps_a_background_class_and_its_colour():
    meta = make_meta(("car", (1, 1, 1)), ("background", (9, 8, 7)))
    (_, data), = LAYOUT.project_files(meta, b"{}")
    assert data.decode().splitlines()[1:] == ["background:9,8,7::", "car:1,1,1::"]


def test_labels_sorting_before_background_keep_black_background_and_their_instances():
    """Upstream Datumaro defect (CVAT #1736, #2032): not reproduced."""
    meta = make_meta(("Zebra", (250, 10, 10)), ("apple", (10, 250, 10)), ("cat", (10, 10, 250)))
    item = make_item([("Zebra", poly(1, 1, 8, 1, 8, 8, 1, 8), 0, 0),
                      ("apple", g.Box(10.0, 2.0, 15.0, 6.0), 0, 0)], meta=meta)
    class_rgb, object_rgb = masks_of(render(LAYOUT, item))
    assert tuple(class_rgb[0, 0]) == (0, 0, 0) and tuple(class_rgb[19, 29]) == (0, 0, 0)
    assert tuple(class_rgb[4, 4]) == (250, 10, 10) and tuple(class_rgb[3, 12]) == (10, 250, 10)
    assert tuple(object_rgb[4, 4]) == voc(1) and tuple(object_rgb[3, 12]) == voc(2)
    assert (class_rgb[2:6, 10:15] == (10, 250, 10)).all()   # box: columns 10..14, rows 2..5
    assert (class_rgb[6, 10:15] == 0).all() and (class_rgb[2:6, 15] == 0).all()


def test_background_shape_erases_and_takes_a_number():
    meta = make_meta(("background", (5, 5, 5)), ("cat", (255, 0, 0)))
    item = make_item([("cat", poly(0, 0, 20, 0, 20, 20, 0, 20), 0, 0),
                      ("background", poly(5, 5, 10, 5, 10, 10, 5, 10), 1, 0),
                      ("cat", poly(22, 0, 28, 0, 28, 5, 22, 5), 2, 0)], meta=meta)
    class_rgb, object_rgb = masks_of(render(LAYOUT, item))
    assert tuple(object_rgb[7, 7]) == (0, 0, 0) and tuple(class_rgb[7, 7]) == (5, 5, 5)
    assert tuple(object_rgb[2, 2]) == voc(1) and tuple(object_rgb[2, 25]) == voc(3)
    assert_consistent(class_rgb, object_rgb, bg=(5, 5, 5))


def test_shared_colours_are_warned():
    meta = make_meta(("cat", (0, 0, 0)), ("dog", (3, 3, 3)), ("bird", (3, 3, 3)))
    item = make_item([("cat", poly(0, 0, 5, 0, 5, 5), 0, 0), ("dog", poly(6, 0, 9, 0, 9, 5), 0, 0),
                      ("bird", poly(10, 0, 15, 0, 15, 5), 0, 0)], meta=meta)
    warnings = []
    render(LAYOUT, item, warnings.append)
    assert len(warnings) == 2
    assert "['background', 'cat']" in warnings[0] and "['bird', 'dog']" in warnings[1]


# --- geometry rules ---------------------------------------------------------------------------

@pytest.mark.parametrize("rule", ["coco", "opencv"])
def test_supervisely_rectangle_keeps_inclusive_coverage(rule):
    layout = CvatMasksLayout.from_options({"rule": rule})
    class_rgb, _ = masks_of(render(layout, make_item([("cat", g.Rectangle(2, 3, 5, 7), 0, 0)])))
    expected = np.zeros((20, 30), bool)
    expected[3:8, 2:6] = True
    assert ((class_rgb == (255, 0, 0)).all(axis=2) == expected).all()


def test_opencv_rule_equals_cv2_fillpoly():
    cv2 = load("cv2")
    rng = np.random.default_rng(7)
    layout = CvatMasksLayout.from_options({"rule": "opencv"})
    for _ in range(40):
        pts = rng.integers(-4, 34, (int(rng.integers(3, 9)), 2))
        item = make_item([("dog", g.Polygon(pts.astype(np.int64)), 0, 0)])
        class_rgb, _ = masks_of(render(layout, item))
        ref = np.zeros((20, 30), np.uint8)
        cv2.fillPoly(ref, [pts.astype(np.int32)], 1)
        assert ((class_rgb == (0, 0, 255)).all(axis=2) == (ref > 0)).all()


def test_bitmap_and_alpha_mask_paint_their_nonzero_pixels():
    bits = np.zeros((4, 5), bool)
    bits[1:3, 1:4] = True
    alpha = np.array([[0, 1, 255]], np.uint8)
    item = make_item([("cat", g.Bitmap((2, 2), bits), 0, 0), ("dog", g.AlphaMask((10, 10), alpha), 0, 0)])
    class_rgb, _ = masks_of(render(LAYOUT, item))
    cat = (class_rgb == (255, 0, 0)).all(axis=2)
    assert cat.sum() == 6 and cat[3:5, 3:6].all()
    dog = (class_rgb == (0, 0, 255)).all(axis=2)
    assert dog.sum() == 2 and dog[10, 11] and dog[10, 12]


# --- items and files ----------------------------------------------------------------------------

def test_files_lists_and_images():
    item = make_item([("cat", poly(1, 1, 5, 1, 5, 5), 0, 0)], dataset="top/child",
                     name="photo.v2.JPG", stem="photo.v2", image=b"jpeg bytes")
    warnings = []
    files = render(CvatMasksLayout.from_options({"with_images": True, "subset_names": "importable"}), item,
                   warnings.append)
    assert sorted(files) == [f"{LIST}top-child.txt", "JPEGImages/photo.v2.JPG",
                             "SegmentationClass/photo.v2.png", "SegmentationObject/photo.v2.png"]
    assert files[f"{LIST}top-child.txt"] == b"photo.v2"
    assert files["JPEGImages/photo.v2.JPG"] == b"jpeg bytes"
    assert warnings == []
    assert f"{LIST}default.txt" in render(LAYOUT, make_item([("cat", poly(1, 1, 5, 1, 5, 5), 0, 0)],
                                                            dataset=""))


@pytest.mark.parametrize("name, path", [("a.b.png", "JPEGImages/img.png"), ("noext", "JPEGImages/img"),
                                        ("dot.", "JPEGImages/img"), ("x.j\\p\x00g", "JPEGImages/img.j_p_g")])
def test_image_extension(name, path):
    layout = CvatMasksLayout.from_options({"with_images": True})
    files = render(layout, make_item([], name=name, image=b"x"))
    assert files == {f"{LIST}ds.txt": b"img", path: b"x"}


def test_missing_image_is_a_warning():
    warnings = []
    files = render(CvatMasksLayout.from_options({"with_images": True}),
                   make_item([("cat", poly(1, 1, 5, 1, 5, 5), 0, 0)]), warnings.append)
    assert not any(p.startswith("JPEGImages/") for p in files) and len(warnings) == 1


def test_empty_items_and_items_without_area_shapes():
    assert LAYOUT.item_files(make_item([])) == [(f"{LIST}ds.txt", b"img")]
    lines_only = make_item([("cat", g.Polyline(np.array([[0, 0], [5, 5]])), 0, 0),
                            ("dog", g.Point(3, 3), 0, 0)])
    assert LAYOUT.item_files(lines_only) == []
    assert LAYOUT.item_files(make_item([], tags=({"name": "day", "value": None},))) == []
    with_images = CvatMasksLayout.from_options({"with_images": True})
    assert with_images.item_files(make_item([("dog", g.Point(3, 3), 0, 0)], image=b"x")) == [
        ("JPEGImages/img.jpg", b"x")]


def test_shapes_outside_the_canvas_still_give_masks():
    files = render(LAYOUT, make_item([("cat", poly(100, 100, 110, 100, 110, 110), 0, 0)]))
    class_rgb, object_rgb = masks_of(files)
    assert not class_rgb.any() and not object_rgb.any() and f"{LIST}ds.txt" in files


def test_bytes_are_deterministic():
    rng = np.random.default_rng(3)
    labels = [("cat" if i % 2 else "dog", _random_geom(rng, 40, 40), i % 3, 0) for i in range(30)]
    a = LAYOUT.item_files(make_item(labels, (40, 40)))
    b = pickle.loads(pickle.dumps(LAYOUT)).item_files(make_item(labels, (40, 40)))
    assert a == b
    assert LAYOUT.project_files(META, b"") == LAYOUT.project_files(META, b"")


# --- limits -------------------------------------------------------------------------------------

def _many(n, background_last=0):
    labels = [("cat", g.Box(i % 30, i // 30, i % 30 + 1, i // 30 + 1), 0, 0) for i in range(n)]
    labels += [("background", g.Box(0, 0, 1, 1), 1, 0)] * background_last
    return make_item(labels, (20, 30), make_meta(("cat", (255, 0, 0)), ("background", (0, 0, 0))))


def test_more_than_255_instances_fail_with_the_count():
    with pytest.raises(LimitError, match=r"256 instances .* up to 256") as err:
        LAYOUT.item_files(_many(256))
    assert "ds/img.jpg" in str(err.value) and "instance_overflow" in str(err.value)
    _, object_rgb = masks_of(render(LAYOUT, _many(255)))
    assert len(colours(object_rgb)) == 256  # 255 instances + background
    render(LAYOUT, _many(255, background_last=3))       # numbers 256..258 paint nothing


@pytest.mark.not_voc("instance colours past the VOC colormap's 256 entries")
def test_extend_mode_colours_past_255_with_the_formula():
    layout = CvatMasksLayout.from_options({"instance_overflow": "extend"})
    class_rgb, object_rgb = masks_of(render(layout, _many(400)))
    ys, xs = np.divmod(np.arange(400), 30)
    assert [tuple(c) for c in object_rgb[ys, xs]] == [voc(i) for i in range(1, 401)]
    assert len({voc(i) for i in range(401)}) == 401
    assert_consistent(class_rgb, object_rgb)


def test_canvas_limit():
    layout = CvatMasksLayout.from_options({"max_canvas_pixels": 599})
    with pytest.raises(LimitError, match="600 pixels"):
        layout.item_files(make_item([("cat", poly(1, 1, 5, 1, 5, 5), 0, 0)]))


def test_bad_objects_are_named():
    with pytest.raises(AnnotationError, match="object 1"):
        LAYOUT.item_files(make_item([("cat", poly(1, 1, 5, 1, 5, 5), 0, 0),
                                     ("cat", poly(1, 1, 5e13, 1, 5, 5), 0, 0)]))
    with pytest.raises(AnnotationError, match="object 0.*'horse'"):
        LAYOUT.item_files(make_item([("horse", poly(1, 1, 5, 1, 5, 5), 0, 0)]))


@pytest.mark.parametrize("name", ["a:b", "two\nlines", "#hash", " lead", "", "x\udc80"])
def test_class_names_labelmap_cannot_hold(name):
    with pytest.raises(ProjectError, match="labelmap.txt"):
        LAYOUT.check_meta(make_meta((name, (1, 2, 3))))
    LAYOUT.check_meta(make_meta(("a b, c #1 ", (1, 2, 3)), ("Ünïcode", (4, 5, 6))))


def test_options():
    assert CvatMasksLayout.default_archive_format == "zip"
    assert LAYOUT == CvatMasksLayout(with_images=False, rule="coco", instance_overflow="fail")
    assert not LAYOUT.needs_image and CvatMasksLayout.from_options({"with_images": True}).needs_image
    for bad in ({"rule": "pil"}, {"with_images": "yes"}, {"max_canvas_pixels": 0},
                {"instance_overflow": "wrap"}, {"thickness": 2}):
        with pytest.raises(ConfigError):
            CvatMasksLayout.from_options(bad)


def test_oriented_bbox_and_cuboid_2d_paint_their_area():
    cv2 = load("cv2")
    front = [[2, 2], [8, 2], [8, 8], [2, 8]]
    back = [[x + 3, y + 3] for x, y in front]
    cuboid = g.Cuboid2d(np.array(front + back, np.int64))
    item = make_item([("cat", g.OrientedBBox(12, 1, 20, 6, 0.0), 0, 0), ("dog", cuboid, 0, 0)])
    class_rgb, object_rgb = masks_of(render(LAYOUT, item))
    expected = np.zeros((20, 30), np.uint8)
    expected[1:7, 12:21] = 1                                  # inclusive corners
    hull = cv2.convexHull(np.array(front + back, np.int32))   # the five visible faces' union
    cv2.fillPoly(expected, [hull], 2)
    got = np.zeros((20, 30), np.uint8)
    got[(class_rgb == (255, 0, 0)).all(axis=2)] = 1
    got[(class_rgb == (0, 0, 255)).all(axis=2)] = 2
    assert (got == expected).all()
    assert_consistent(class_rgb, object_rgb)


@pytest.mark.not_voc("Datumaro 1.13 unpaints class colours to uint8 label indexes: "
                     "'Python integer 300 out of bounds for uint8' (ItemImportError)")
def test_more_than_255_classes_are_fine():
    meta = make_meta(*((f"c{i:03d}", (i % 256, i // 256, 7)) for i in range(300)))
    LAYOUT.check_meta(meta)
    (_, data), = LAYOUT.project_files(meta, b"")
    assert len(data.decode().splitlines()) == 302        # header + 300 + background
    class_rgb, _ = masks_of(render(LAYOUT, make_item([("c299", poly(1, 1, 6, 1, 6, 6, 1, 6), 0, 0)],
                                                     meta=meta)))
    assert tuple(class_rgb[3, 3]) == (299 % 256, 1, 7)


# --- painting the instance index (column by column, kept column-major) -----------------------

def _paint_reference(instances, size_hw):
    """The row-major painter: each instance in order overwrites its pixels (background -> 0)."""
    index = np.zeros(size_hw, np.int64)
    for k, (title, _, patch) in enumerate(instances, start=1):
        if patch.mask.size:
            index[patch.window()][patch.mask] = 0 if title == "background" else k
    return index


@pytest.mark.parametrize("n", [1, 7, 300])
def test_paint_index_equals_painting_in_order(n):
    """Random overlapping patches, C- and F-ordered, some empty, some of class background, up
    to 300 instances (uint16 index): the same numbers as overwriting in order."""
    rng = np.random.default_rng(n)
    h, w = 37, 70
    instances = []
    for _ in range(n):
        top, left = int(rng.integers(0, h)), int(rng.integers(0, w))
        ph, pw = int(rng.integers(0, h - top + 1)), int(rng.integers(0, w - left + 1))
        mask = rng.random((ph, pw)) < 0.6
        mask = np.asfortranarray(mask) if rng.random() < 0.5 else mask
        title = "background" if rng.random() < 0.2 else "cat"
        instances.append((title, 0, Patch(top, left, mask) if mask.size else empty_patch()))
    got = _paint_index(instances, (h, w))
    assert got.dtype == (np.uint8 if n <= 255 else np.uint16) and got.flags.f_contiguous
    assert np.array_equal(got, _paint_reference(instances, (h, w)))
    assert got.any()


def test_items_with_only_lines_and_points_are_left_out_with_a_warning():
    """CVAT's exporter neither lists nor writes an item whose shapes have no area; the report says so."""
    layout = CvatMasksLayout.from_options({})
    item = make_item([("cat", g.Polyline(np.array([[1, 1], [5, 5]], np.int64)), 0, 0),
                      ("dog", g.Point(3, 3), 0, 0)])
    warnings = []
    assert layout.item_files(item, warn=warnings.append) == []
    assert len(warnings) == 1 and "only line, point shapes" in warnings[0] and "not listed" in warnings[0]
    empty = make_item([])
    assert [p for p, _ in layout.item_files(empty, warn=warnings.append)] == ["@list/ImageSets/Segmentation/ds.txt"]
    assert len(warnings) == 1


@pytest.mark.parametrize("dataset, subset", [("dataset_01", "dataset-01"), ("sample_data/val_2", "sample-data-val-2"),
                                             ("a-b", "a-b"), ("", "default")])
def test_importable_subset_names_hold_no_underscore(dataset, subset):
    """The VOC importers of Datumaro and CVAT skip list files whose name holds '_'
    (the Supervisely SDK's tutorial datasets dataset_01, a COCO JSON in a folder sample_data):
    with subset_names=importable the autouse fixture imports the export with Datumaro and finds
    the item."""
    layout = CvatMasksLayout.from_options({"subset_names": "importable"})
    files = render(layout, make_item([("cat", poly(1, 1, 5, 1, 5, 5), 0, 0)], dataset=dataset))
    assert f"{LIST}{subset}.txt" in files


@pytest.mark.not_voc("CVAT's own export names the list file dataset_01.txt, which the VOC importers skip")
def test_subset_names_are_cvats_by_default():
    """The default is the reference's output: CVAT's exporter writes the subset name as it is."""
    files = render(LAYOUT, make_item([("cat", poly(1, 1, 5, 1, 5, 5), 0, 0)], dataset="dataset_01"))
    assert f"{LIST}dataset_01.txt" in files
    assert "subset_names" not in LAYOUT.fingerprint()   # earlier runs' fingerprints stay valid
    with pytest.raises(ConfigError, match="subset_names"):
        CvatMasksLayout.from_options({"subset_names": "safe"})
