"""Self-checks of the Supervisely reference oracle and of the project generator.

The oracle draws with the SDK; these tests check that its four mask kinds agree with each other
(machine = instances composited largest-area first, semantic/human = instances in file order),
that the generator writes what it promises, and pin the drawing facts of docs/reference-notes.md.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from helpers import SAMPLES
from helpers.oracles import oracle

from .make_projects import CLASS_TITLES, SKELETON_TEMPLATE, make_all_geometries_project, make_meta
from .sly_reference import (
    draw_label,
    load_project_items,
    machine_color_map,
    render_item,
    render_reference,
)

sly = oracle("supervisely")

cv2 = oracle("cv2")

REAL = SAMPLES  # the bundled projects
SPEC_GEOMETRIES = {"polygon", "rectangle", "bitmap", "alpha_mask", "line", "point", "graph",
                   "cuboid_2d", "oriented_bbox", "multipolygon", "cuboid"}


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    root = make_all_geometries_project(tmp_path_factory.mktemp("gen") / "proj", seed=7)
    meta, items = load_project_items(root)
    return root, meta, items, render_reference(root)


# ----------------------------------------------------------------------------- helpers
def _composite_machine(ann, instances, colors) -> np.ndarray:
    """Machine mask rebuilt from the instance masks: largest area first, alpha blended."""
    height, width = ann.img_size
    out = np.zeros((height, width), np.float64)
    order = sorted(range(len(ann.labels)), key=lambda i: ann.labels[i].area, reverse=True)
    for i in order:
        label, mask = ann.labels[i], instances[i][1]
        k = colors[label.obj_class.name][0]
        if isinstance(label.geometry, sly.AlphaMask):
            alpha = mask / 255.0
            hit = mask > 0
            out[hit] = np.trunc(out[hit] * (1 - alpha[hit]) + alpha[hit] * k)
        else:
            out[mask == 255] = k
    return out.astype(np.uint8)


def _check_item(ann, rendered, colors, image_path):
    height, width = ann.img_size
    instances = rendered["instances"]
    assert len(instances) == len(ann.labels)
    names = [name for name, _ in instances]
    assert len(set(names)) == len(names)
    for (name, mask), label in zip(instances, ann.labels):
        assert name.startswith(label.obj_class.name) and name.endswith(".png")
        assert mask.shape == (height, width) and mask.dtype == np.uint8
        if not isinstance(label.geometry, sly.AlphaMask):
            assert set(np.unique(mask).tolist()) <= {0, 255}
    machine = rendered["machine"]
    assert machine.shape == (height, width) and machine.dtype == np.uint8
    np.testing.assert_array_equal(machine, _composite_machine(ann, instances, colors))
    semantic = rendered["semantic"]
    assert semantic.shape == (height, width, 3) and semantic.dtype == np.uint8
    _check_semantic(ann, instances, semantic)
    if image_path is None:
        assert "human" not in rendered
    else:
        _check_human(rendered["human"], image_path, ann, instances)


def _check_semantic(ann, instances, semantic):
    """The semantic pixel is the colour of the last label (file order) covering it; black where
    none does. A graph's footprint there includes its edges (drawn with the class template), so
    its pixels may carry any template colour."""
    height, width = ann.img_size
    last = np.full((height, width), -1)
    for i, ((_, mask), label) in enumerate(zip(instances, ann.labels)):
        last[_semantic_footprint(label, mask)] = i
    assert not semantic[last == -1].any()
    for i, label in enumerate(ann.labels):
        pixels = semantic[last == i]
        if _is_graph(label):
            config = label.obj_class.geometry_config
            allowed = {tuple(label.obj_class.color)} | {
                tuple(item["color"]) for item in list(config["nodes"].values()) + config["edges"] if "color" in item}
            assert {tuple(int(v) for v in px) for px in pixels} <= allowed
        elif not isinstance(label.geometry, sly.AlphaMask):
            assert np.all(pixels == np.array(label.obj_class.color, np.uint8))


def _is_graph(label):
    return isinstance(label.geometry, sly.GraphNodes) and not isinstance(label.geometry, sly.Cuboid2d)


def _semantic_footprint(label, instance_mask):
    if not _is_graph(label):
        return instance_mask > 0
    canvas = np.zeros(instance_mask.shape + (3,), np.uint8)
    label.geometry.draw(canvas, label.obj_class.color, thickness=2, config=label.obj_class.geometry_config)
    return canvas.any(axis=2) | (instance_mask > 0)


def _check_human(human, image_path, ann, instances):
    """Left half = the image; right half = the image averaged with each label's colour in file
    order (checked on pixels that no graph or alpha mask touches); untouched pixels unchanged."""
    image = np.asarray(Image.open(image_path).convert("RGB"))
    height, width = image.shape[:2]
    assert human.shape == (height, 2 * width, 3) and human.dtype == np.uint8
    np.testing.assert_array_equal(human[:, :width], image)
    expected = image.astype(np.int64)
    drawn = np.zeros((height, width), bool)
    checkable = np.ones((height, width), bool)
    for (_, mask), label in zip(instances, ann.labels):
        footprint = _semantic_footprint(label, mask)
        drawn |= footprint
        if _is_graph(label) or isinstance(label.geometry, sly.AlphaMask):
            checkable &= ~footprint
        else:
            expected[footprint] = (expected[footprint] + np.array(label.obj_class.color)) // 2
    right = human[:, width:]
    np.testing.assert_array_equal(right[~drawn], image[~drawn])
    np.testing.assert_array_equal(right[checkable], expected[checkable])


# ----------------------------------------------------------------------------- generator
def test_generator_is_deterministic_and_seed_dependent(tmp_path):
    def snapshot(root):
        return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}
    a = snapshot(make_all_geometries_project(tmp_path / "a", seed=3, n_items=3))
    b = snapshot(make_all_geometries_project(tmp_path / "b", seed=3, n_items=3))
    c = snapshot(make_all_geometries_project(tmp_path / "c", seed=4, n_items=3))
    assert a == b
    assert a.keys() == c.keys() and a != c


def test_generated_project_covers_every_geometry_and_form(generated):
    root, meta, items, _ = generated
    assert [c.name for c in meta.obj_classes] == CLASS_TITLES
    assert {(ds, name) for ds, name, _, _ in items} == {
        ("ds_top", "item_0.jpg"), ("ds_top", "item_1.png"), ("ds_top", "item_2.png"),
        ("ds_top/ds_child", "item_3.png"), ("ds_top/ds_child", "item_4.jpg"),
        ("ds_top/ds_child", "item_5.png"), ("ds_top", "twin.jpg"), ("ds_top", "twin.png")}
    ann_files = sorted(root.rglob("ann/*.json"))
    assert {p.name for p in ann_files} >= {"item_2.json", "item_5.json", "item_0.jpg.json"}
    objects = [obj for p in ann_files for obj in json.loads(p.read_text())["objects"]]
    assert {obj["geometryType"] for obj in objects} == SPEC_GEOMETRIES
    assert {obj["geometryType"] for obj in objects if obj["classTitle"] == "anything"} >= {"polygon", "rectangle"}
    floats = [obj for obj in objects if "points" in obj and isinstance(obj["points"], dict)
              and any(isinstance(v, float) for pt in obj["points"]["exterior"] for v in pt)]
    assert floats
    swapped = [obj for obj in objects if obj["geometryType"] == "rectangle"
               and obj["points"]["exterior"][0][0] > obj["points"]["exterior"][1][0]]
    assert swapped
    crossing = [obj for obj in objects if obj["geometryType"] == "bitmap"
                and min(obj["bitmap"]["origin"]) < 0]
    assert crossing
    assert meta.get_obj_class("skeleton").geometry_config["edges"][0]["color"] == [255, 255, 0]


# ----------------------------------------------------------------------------- consistency
def test_generated_masks_are_mutually_consistent(generated):
    root, meta, items, rendered = generated
    colors = machine_color_map(meta)
    assert set(rendered) == {(ds, name) for ds, name, _, _ in items}
    kinds_seen = set()
    for ds, name, ann, image_path in items:
        _check_item(ann, rendered[(ds, name)], colors, image_path)
        kinds_seen |= {type(lab.geometry).__name__ for lab in ann.labels}
    assert kinds_seen >= {"Polygon", "Rectangle", "Bitmap", "AlphaMask", "Polyline", "Point",
                          "GraphNodes", "Cuboid2d", "OrientedBBox", "Multipolygon", "Cuboid"}


def test_each_cuboid_2d_fills_its_own_faces(generated):
    _, _, items, rendered = generated
    ann = next(a for ds, name, a, _ in items if name == "item_1.png")
    cuboids = [i for i, lab in enumerate(ann.labels) if isinstance(lab.geometry, sly.Cuboid2d)]
    assert len(cuboids) == 2
    masks = rendered[("ds_top", "item_1.png")]["instances"]
    for i in cuboids:
        expected = np.zeros(ann.img_size, np.uint8)
        nodes = ann.labels[i].geometry.nodes
        for face in (("face1-topleft", "face1-topright", "face1-bottomright", "face1-bottomleft"),
                     ("face1-topleft", "face2-topleft", "face2-topright", "face1-topright"),
                     ("face1-topright", "face2-topright", "face2-bottomright", "face1-bottomright"),
                     ("face1-bottomright", "face2-bottomright", "face2-bottomleft", "face1-bottomleft"),
                     ("face1-bottomleft", "face2-bottomleft", "face2-topleft", "face1-topleft")):
            xy = np.array([[nodes[v].location.col, nodes[v].location.row] for v in face], np.int32)
            cv2.fillPoly(expected, [xy], 255)
        np.testing.assert_array_equal(masks[i][1], expected)
    assert not np.array_equal(masks[cuboids[0]][1], masks[cuboids[1]][1])


def test_human_resize_uses_area_interpolation(generated):
    root, _, _, rendered = generated
    resized = render_reference(root, human_resize_percent=50)
    for key, kinds in resized.items():
        full = rendered[key]["human"]
        expected = cv2.resize(full, (int(full.shape[1] * 0.5), int(full.shape[0] * 0.5)), interpolation=cv2.INTER_AREA)
        np.testing.assert_array_equal(kinds["human"], expected)
        np.testing.assert_array_equal(kinds["machine"], rendered[key]["machine"])


@pytest.mark.parametrize("name, n_items, n_human", [("instance", 6, 6), ("vector", 6, 6), ("keypoints", 6, 5)])
def test_real_projects(name, n_items, n_human):
    meta, items = load_project_items(REAL / name)
    rendered = render_reference(REAL / name)
    assert len(rendered) == n_items
    assert sum("human" in kinds for kinds in rendered.values()) == n_human
    colors = machine_color_map(meta)
    for ds, item, ann, image_path in items:
        _check_item(ann, rendered[(ds, item)], colors, image_path)
        assert rendered[(ds, item)]["machine"].any()
    if name == "keypoints":
        assert len(render_reference(REAL / name, missing_image="skip")) == 5
        assert "human" not in rendered[("ds", "cat1.jpg")]


# ----------------------------------------------------------------------------- pinned facts
def _ann(objects, size_hw=(20, 30), meta=None):
    meta = meta or make_meta()
    data = {"description": "", "size": {"height": size_hw[0], "width": size_hw[1]}, "tags": [], "objects": objects}
    return sly.Annotation.from_json(data, meta), meta


def _points(cls, gtype, exterior, interior=()):
    return {"classTitle": cls, "geometryType": gtype, "tags": [],
            "points": {"exterior": exterior, "interior": list(interior)}}


def _render(objects, thickness=2, size_hw=(20, 30)):
    ann, meta = _ann(objects, size_hw)
    return ann, render_item(ann, None, machine_color_map(meta), thickness=thickness)


def test_pinned_pixel_counts():
    _, out = _render([_points("poly", "polygon", [[1, 1], [9, 1], [1, 9]]),
                      _points("rect", "rectangle", [[27, 9], [20, 3]]),
                      _points("pt", "point", [[15, 15]]),
                      _points("pt", "point", [[3, 15.9]])])
    counts = [int((mask > 0).sum()) for _, mask in out["instances"]]
    assert counts == [45, 56, 5, 5]
    assert [name for name, _ in out["instances"]] == ["poly.png", "rect.png", "pt.png", "pt_01.png"]
    _, thin = _render([_points("pt", "point", [[15, 15]])], thickness=1)
    assert int((thin["instances"][0][1] > 0).sum()) == 1  # radius round(1/2) = 0


def test_machine_draws_largest_area_first_and_alpha_blends():
    alpha = sly.AlphaMask(np.array([[128, 255], [1, 64]], np.uint8), origin=sly.PointLocation(2, 2))
    objects = [_points("rect", "rectangle", [[2, 2], [3, 3]]),
               _points("poly", "polygon", [[0, 0], [10, 0], [10, 10], [0, 10]]),
               dict(alpha.to_json(), classTitle="alpha", geometryType="alpha_mask", tags=[])]
    ann, out = _render(objects)
    machine = out["machine"]
    k_rect, k_poly, k_alpha = (CLASS_TITLES.index(c) + 1 for c in ("rect", "poly", "alpha"))
    # poly (area 100) first, rect (area 4) over it, alpha (area 4, later in file) blended on top
    assert machine[5, 5] == k_poly
    expected = [[int(k_rect * (1 - v / 255) + v / 255 * k_alpha) for v in row] for row in ([128, 255], [1, 64])]
    assert machine[2:4, 2:4].tolist() == expected
    assert out["instances"][2][1][2:4, 2:4].tolist() == [[128, 255], [1, 64]]


def test_loading_crops_labels_to_the_image():
    nodes = {nid: {"loc": [3 + i, 4]} for i, nid in enumerate(SKELETON_TEMPLATE["nodes"])}
    nodes_out = dict(nodes, **{"n-feet": {"loc": [30, 4], "disabled": True}})
    ann, _ = _ann([
        _points("pt", "point", [[-1, 5]]),                                     # dropped
        _points("line", "line", [[2, 2], [40, 5], [2, 10]]),                  # split in two
        {"classTitle": "skeleton", "geometryType": "graph", "tags": [], "nodes": nodes},
        {"classTitle": "skeleton", "geometryType": "graph", "tags": [], "nodes": nodes_out},  # dropped
        _points("poly", "polygon", [[-5, 2], [10, 4], [-5, 6], [-5, 12], [10, 14], [-5, 16], [-9, 16], [-9, 2]]),
        {"classTitle": "obb", "geometryType": "oriented_bbox", "tags": [], "points": [[20, 5], [40, 15]], "angle": 0.5},
    ])
    kinds = [type(lab.geometry).__name__ for lab in ann.labels]
    assert kinds == ["Polyline", "Polyline", "GraphNodes", "Polygon", "Polygon", "OrientedBBox"]
    assert ann.labels[0].geometry.exterior_np[:, ::-1].tolist() == [[2, 2], [29, 4]]
    assert ann.labels[5].geometry.right == 40  # oriented boxes are never cropped


def test_bitmap_crossing_border_sdk_crashes_but_loading_crops():
    bitmap = sly.Bitmap(np.ones((6, 6), bool), origin=sly.PointLocation(17, 27))
    with pytest.raises(IndexError):
        bitmap.draw(np.zeros((20, 30, 3), np.uint8), [1, 1, 1])
    ann, out = _render([dict(bitmap.to_json(), classTitle="bmp", geometryType="bitmap", tags=[])])
    assert ann.labels[0].geometry.data.shape == (3, 3)
    assert int((out["instances"][0][1] > 0).sum()) == 9
    clipped = np.zeros((20, 30, 3), np.uint8)
    draw_label(sly.Label(bitmap, make_meta().get_obj_class("bmp")), clipped, [1, 1, 1], 2, None)
    assert int(clipped[:, :, 0].sum()) == 9


def test_more_than_255_classes_is_refused():
    classes = [sly.ObjClass(f"c{i}", sly.Rectangle, color=[1, 2, 3]) for i in range(256)]
    with pytest.raises(ValueError, match="at most 255"):
        machine_color_map(sly.ProjectMeta(obj_classes=classes))
