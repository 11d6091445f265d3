"""Seeded Supervisely projects on disk holding every 2-D geometry type (test-only; imports supervisely).

Conventions: annotation JSON points are ``[x, y] = [col, row]`` with the origin at the top-left
pixel; integer values are pixel indices and float values are floored by the SDK. Every object's
JSON comes from the SDK's own ``to_json()``; afterwards some coordinates get a fractional part
(``i + k/100``, which floors back to ``i``) and some rectangles get their corners reordered, both
of which the SDK reads back to the same geometry.

Layout written by `make_all_geometries_project` (``dst_dir`` is the project root)::

    meta.json                               classes in CLASS_TITLES order (machine index 1..N)
    ds_top/img, ds_top/ann                  first half of the items (+ the same-stem pair)
    ds_top/datasets/ds_child/img, ann       second half of the items (SDK name "ds_child")

Items are ``item_<k>.<ext>`` cycling through JPEG (RGB), PNG (RGB), PNG (grey L) and PNG (RGBA);
every third item uses the older ``<stem>.json`` annotation name, the others ``<name>.json``.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image

from helpers.oracles import oracle

sly = oracle("supervisely")
sly_cuboid = oracle("supervisely.geometry.cuboid")
sly_cuboid_2d = oracle("supervisely.geometry.cuboid_2d")
sly_graph = oracle("supervisely.geometry.graph")

TOP_DATASET = "ds_top"
CHILD_DATASET = "ds_child"

SKELETON_TEMPLATE = {
    "nodes": {
        "n-head": {"label": "head", "loc": [0, 4], "color": [255, 0, 0]},
        "n-lhand": {"label": "left hand", "loc": [4, 0], "color": [0, 255, 0]},
        "n-rhand": {"label": "right hand", "loc": [4, 8]},  # no colour: class colour is used
        "n-feet": {"label": "feet", "loc": [9, 4], "color": [0, 0, 255]},
    },
    "edges": [
        {"src": "n-head", "dst": "n-lhand", "color": [255, 255, 0]},
        {"src": "n-head", "dst": "n-rhand"},  # no colour: class colour is used
        {"src": "n-head", "dst": "n-feet", "color": [0, 255, 255]},
    ],
}

# (title, geometry type, colour, geometry_config); order = machine-mask index 1..N. Geometry types
# are the SDK's, looked up when a project is made (the SDK is imported by the test that needs it).
_CLASS_SPECS = [
    ("poly", "Polygon", [220, 40, 40], None),
    ("rect", "Rectangle", [40, 200, 60], None),
    ("bmp", "Bitmap", [30, 80, 230], None),
    ("alpha", "AlphaMask", [240, 200, 20], None),
    ("line", "Polyline", [200, 30, 200], None),
    ("pt", "Point", [20, 220, 220], None),
    ("skeleton", "GraphNodes", [250, 130, 0], SKELETON_TEMPLATE),
    ("box3d", "Cuboid2d", [120, 60, 200], None),
    ("obb", "OrientedBBox", [0, 128, 128], None),
    ("mpoly", "Multipolygon", [128, 128, 0], None),
    ("cuboid_legacy", "Cuboid", [90, 160, 255], None),
    ("anything", "AnyGeometry", [180, 180, 180], None),
    ("unused", "Polygon", [10, 10, 10], None),
]
CLASS_TITLES = [spec[0] for spec in _CLASS_SPECS]

_IMAGE_KINDS = [(".jpg", "RGB"), (".png", "RGB"), (".png", "L"), (".png", "RGBA")]
_ANY_KINDS = ["polygon", "rectangle", "bitmap", "point", "line", "alpha_mask"]


def _sdk_geometry(name: str):
    """The SDK's geometry class ``name`` (GraphNodes and the legacy Cuboid from their modules)."""
    if name == "GraphNodes":
        return sly_graph.GraphNodes
    if name == "Cuboid":
        return sly_cuboid.Cuboid
    return getattr(sly, name)


def make_meta() -> sly.ProjectMeta:
    """The ProjectMeta of every generated project (classes in CLASS_TITLES order, two tag metas)."""
    classes = [
        sly.ObjClass(title, _sdk_geometry(geometry), color=list(color), geometry_config=config)
        for title, geometry, color, config in _CLASS_SPECS
    ]
    tags = [
        sly.TagMeta("reviewed", sly.TagValueType.NONE, color=[200, 200, 0]),
        sly.TagMeta("difficult", sly.TagValueType.NONE, color=[0, 200, 200]),
    ]
    return sly.ProjectMeta(obj_classes=classes, tag_metas=tags)


def make_all_geometries_project(
    dst_dir, seed: int, n_items: int = 6, size_hw: tuple[int, int] = (40, 56),
    *, same_stem_pair: bool = True,
) -> Path:
    """Write a Supervisely project with every 2-D geometry under `dst_dir`; return its path.

    Deterministic for `seed`. Each of the `n_items` items holds one or more objects of every
    class (except "unused"), including polygons with holes, a self-intersecting polygon,
    off-image vertices, rectangles with corners in any order, float coordinates, bitmaps and
    alpha masks (item 0 has one of each crossing the bottom/right border, item 1 one crossing
    the top/left border), a graph with a disabled node, and in item 1 two cuboid_2d objects.
    `same_stem_pair` adds ``twin.jpg`` and ``twin.png`` to the top dataset (same stem).
    """
    if n_items < 1:
        raise ValueError(f"n_items must be >= 1, got {n_items}")
    height, width = (int(v) for v in size_hw)
    if height < 16 or width < 16:
        raise ValueError(f"size_hw must be at least (16, 16), got {size_hw}")
    rng = np.random.default_rng(seed)
    root = Path(dst_dir)
    root.mkdir(parents=True, exist_ok=True)
    meta = make_meta()
    sly.io.json.dump_json_file(meta.to_json(), str(root / "meta.json"), indent=4)
    n_top = (n_items + 1) // 2
    for index in range(n_items):
        ds_dir = root / TOP_DATASET if index < n_top else root / TOP_DATASET / "datasets" / CHILD_DATASET
        ext, mode = _IMAGE_KINDS[index % len(_IMAGE_KINDS)]
        name = f"item_{index}{ext}"
        ann = _make_annotation(rng, meta, (height, width), index)
        _write_item(ds_dir, name, ann, _make_image(rng, (height, width), mode), old_ann_name=index % 3 == 2)
    if same_stem_pair:
        for index, ext in ((n_items, ".jpg"), (n_items + 1, ".png")):
            ann = _make_annotation(rng, meta, (height, width), index)
            _write_item(root / TOP_DATASET, f"twin{ext}", ann, _make_image(rng, (height, width), "RGB"), False)
    return root


def _write_item(ds_dir: Path, name: str, ann_json: dict, image: Image.Image, old_ann_name: bool) -> None:
    (ds_dir / "img").mkdir(parents=True, exist_ok=True)
    (ds_dir / "ann").mkdir(parents=True, exist_ok=True)
    if name.endswith(".jpg"):
        image.save(ds_dir / "img" / name, format="JPEG", quality=90)
    else:
        image.save(ds_dir / "img" / name, format="PNG")
    ann_name = (name.rsplit(".", 1)[0] if old_ann_name else name) + ".json"
    sly.io.json.dump_json_file(ann_json, str(ds_dir / "ann" / ann_name), indent=4)


def _make_image(rng: np.random.Generator, size_hw, mode: str) -> Image.Image:
    height, width = size_hw
    coarse = rng.integers(0, 256, size=(height // 4 + 1, width // 4 + 1, 4), dtype=np.uint8)
    smooth = Image.fromarray(coarse, "RGBA").resize((width, height), Image.BILINEAR)
    pixels = np.asarray(smooth).copy()
    pixels[..., 3] = np.maximum(pixels[..., 3], 1)  # keep alpha non-zero so RGB stays meaningful
    return Image.fromarray(pixels, "RGBA").convert(mode)


def _make_annotation(rng, meta: sly.ProjectMeta, size_hw, index: int) -> dict:
    """Annotation JSON (SDK to_json, then float/corner-order edits) for item `index`."""
    height, width = size_hw
    cls = meta.get_obj_class
    made = [
        _polygon_label(rng, cls("poly"), size_hw, holes=1 + index % 2, self_intersecting=False),
        _polygon_label(rng, cls("poly"), size_hw, holes=0, self_intersecting=True),
        _rectangle_label(rng, cls("rect"), size_hw),
        _bitmap_label(rng, cls("bmp"), size_hw, _border_mode(index)),
        _alpha_label(rng, cls("alpha"), size_hw, _border_mode(index)),
        _line_label(rng, cls("line"), size_hw),
        _point_label(rng, cls("pt"), size_hw),
        _point_label(rng, cls("pt"), size_hw),
        _graph_label(rng, cls("skeleton"), size_hw, disable_one=index % 2 == 0, off_image=index == 4),
        _cuboid2d_label(rng, cls("box3d"), size_hw, off_image=index == 2),
        _obb_label(rng, cls("obb"), size_hw),
        _multipolygon_label(rng, cls("mpoly"), size_hw),
        _legacy_cuboid_label(rng, cls("cuboid_legacy"), size_hw, off_image=index == 3),
        _any_label(rng, cls("anything"), size_hw, _ANY_KINDS[index % len(_ANY_KINDS)]),
    ]
    if index == 1:
        made.append(_cuboid2d_label(rng, cls("box3d"), size_hw))
    order = rng.permutation(len(made))
    labels = [made[i][0] for i in order]
    labels[0] = labels[0].add_tag(sly.Tag(meta.get_tag_meta("difficult")))
    img_tags = [sly.Tag(meta.get_tag_meta("reviewed"))] if index % 2 == 0 else []
    # Not through the Annotation constructor: it crops labels to the image, and the files must
    # keep their off-image content.
    ann_json = sly.Annotation((height, width), [], img_tags=img_tags).to_json()
    ann_json["objects"] = [label.to_json() for label in labels]
    for obj, i in zip(ann_json["objects"], order):
        if made[i][1] is not None:
            made[i][1](obj)
    return ann_json


def _border_mode(index: int) -> str:
    return {0: "bottom_right", 1: "top_left"}.get(index, "inside")


# ----------------------------------------------------------------------------- coordinates
def _fractions(rng, count: int) -> list[float]:
    return [float(k) / 100.0 for k in rng.integers(0, 100, size=count)]


def _as_float_xy(rng, points_xy) -> list[list[float]]:
    """[x, y] integer points with a fractional part added; floor() gives the integers back."""
    fracs = _fractions(rng, 2 * len(points_xy))
    return [[x + fracs[2 * i], y + fracs[2 * i + 1]] for i, (x, y) in enumerate(points_xy)]


def _ring_xy(rng, center_xy, radius: float, count: int) -> list[tuple[int, int]]:
    angles = np.sort(rng.uniform(0.0, 2.0 * math.pi, size=count))
    radii = rng.uniform(0.5 * radius, radius, size=count)
    cx, cy = center_xy
    return [(int(math.floor(cx + r * math.cos(a))), int(math.floor(cy + r * math.sin(a))))
            for a, r in zip(angles, radii)]


def _locations(points_xy) -> list[sly.PointLocation]:
    return [sly.PointLocation(row=y, col=x) for x, y in points_xy]


def _center(rng, size_hw, margin: float = -0.1):
    height, width = size_hw
    return (rng.uniform(margin * width, (1 - margin) * width), rng.uniform(margin * height, (1 - margin) * height))


# ----------------------------------------------------------------------------- geometries
def _polygon_label(rng, obj_class, size_hw, holes: int, self_intersecting: bool):
    radius = rng.uniform(0.2, 0.45) * min(size_hw)
    center = _center(rng, size_hw)
    exterior = _ring_xy(rng, center, radius, int(rng.integers(5, 10)))
    if self_intersecting:
        exterior = [exterior[i] for i in rng.permutation(len(exterior))]
    interiors = []
    for k in range(holes):
        shift = (k - (holes - 1) / 2.0) * 0.4 * radius
        interiors.append(_ring_xy(rng, (center[0] + shift, center[1]), 0.3 * radius, 4))
    label = sly.Label(sly.Polygon(_locations(exterior), [_locations(h) for h in interiors]), obj_class)
    if rng.random() >= 0.5:
        return label, None

    def edit(obj):
        obj["points"]["exterior"] = _as_float_xy(rng, exterior)
        obj["points"]["interior"] = [_as_float_xy(rng, h) for h in interiors]
    return label, edit


def _rectangle_label(rng, obj_class, size_hw):
    height, width = size_hw
    xs = sorted(int(v) for v in rng.integers(-4, width + 4, size=2))
    ys = sorted(int(v) for v in rng.integers(-4, height + 4, size=2))
    label = sly.Label(sly.Rectangle(top=ys[0], left=xs[0], bottom=ys[1], right=xs[1]), obj_class)
    corners = [[[xs[0], ys[0]], [xs[1], ys[1]]], [[xs[1], ys[1]], [xs[0], ys[0]]],
               [[xs[1], ys[0]], [xs[0], ys[1]]], [[xs[0], ys[1]], [xs[1], ys[0]]]]
    chosen = corners[int(rng.integers(0, 4))]
    use_float = rng.random() < 0.5

    def edit(obj):
        obj["points"]["exterior"] = _as_float_xy(rng, chosen) if use_float else chosen
    return label, edit


def _blob(rng, shape_hw, with_hole: bool) -> np.ndarray:
    h, w = shape_hw
    rows, cols = np.mgrid[0:h, 0:w]
    cy, cx = (h - 1) / 2.0, (w - 1) / 2.0
    norm = ((rows - cy) / max(h / 2.0, 1.0)) ** 2 + ((cols - cx) / max(w / 2.0, 1.0)) ** 2
    mask = norm <= 1.0 + rng.uniform(-0.1, 0.1, size=(h, w))
    if with_hole and min(h, w) >= 6:
        mask &= norm > 0.15
    return mask


def _bitmap_box(rng, size_hw, border: str):
    height, width = size_hw
    bh, bw = int(rng.integers(5, height // 2)), int(rng.integers(5, width // 2))
    if border == "bottom_right":
        return (bh, bw), height - bh // 2, width - bw // 2
    if border == "top_left":
        return (bh, bw), -(bh // 2), -(bw // 2)
    return (bh, bw), int(rng.integers(0, height - bh)), int(rng.integers(0, width - bw))


def _bitmap_label(rng, obj_class, size_hw, border: str):
    shape_hw, top, left = _bitmap_box(rng, size_hw, border)
    data = _blob(rng, shape_hw, with_hole=rng.random() < 0.5)
    return sly.Label(sly.Bitmap(data, origin=sly.PointLocation(row=top, col=left)), obj_class), None


def _alpha_data(rng, shape_hw) -> np.ndarray:
    h, w = shape_hw
    blob = _blob(rng, shape_hw, with_hole=False)
    values = rng.integers(1, 256, size=(h, w))
    values[rng.random((h, w)) < 0.15] = 255
    return np.where(blob, values, 0).astype(np.uint8)


def _alpha_label(rng, obj_class, size_hw, border: str):
    shape_hw, top, left = _bitmap_box(rng, size_hw, border)
    data = _alpha_data(rng, shape_hw)
    return sly.Label(sly.AlphaMask(data, origin=sly.PointLocation(row=top, col=left)), obj_class), None


def _line_points(rng, size_hw, count: int, off_image: bool):
    height, width = size_hw
    pad = 5 if off_image else 0
    return [(int(rng.integers(-pad, width + pad)), int(rng.integers(-pad, height + pad))) for _ in range(count)]


def _line_label(rng, obj_class, size_hw):
    points = _line_points(rng, size_hw, int(rng.integers(2, 6)), off_image=rng.random() < 0.5)
    label = sly.Label(sly.Polyline(_locations(points)), obj_class)

    def edit(obj):
        obj["points"]["exterior"] = _as_float_xy(rng, points)
    return label, (edit if rng.random() < 0.5 else None)


def _point_label(rng, obj_class, size_hw):
    height, width = size_hw
    pad = 2 if rng.random() < 0.25 else 0
    x, y = int(rng.integers(-pad, width + pad)), int(rng.integers(-pad, height + pad))
    label = sly.Label(sly.Point(row=y, col=x), obj_class)

    def edit(obj):
        obj["points"]["exterior"] = _as_float_xy(rng, [(x, y)])
    return label, (edit if rng.random() < 0.5 else None)


def _graph_label(rng, obj_class, size_hw, disable_one: bool, off_image: bool):
    node_ids = list(SKELETON_TEMPLATE["nodes"])
    points = _line_points(rng, size_hw, len(node_ids), off_image=off_image)
    disabled = node_ids[int(rng.integers(0, len(node_ids)))] if disable_one else None
    nodes = {nid: sly_graph.Node(sly.PointLocation(row=y, col=x), disabled=nid == disabled)
             for nid, (x, y) in zip(node_ids, points)}
    label = sly.Label(sly_graph.GraphNodes(nodes), obj_class)
    floats = _as_float_xy(rng, points)

    def edit(obj):
        for nid, loc in zip(node_ids, floats):
            obj["nodes"][nid]["loc"] = loc
    return label, edit


def _cuboid2d_points(rng, size_hw, off_image: bool):
    """Eight [x, y] corners (front face, then back face); all on the image unless `off_image`."""
    height, width = size_hw
    w, h = int(rng.integers(4, width // 2)), int(rng.integers(4, height // 2))
    dx, dy = int(rng.integers(-6, 7)), int(rng.integers(-6, 7))
    x_lo, x_hi = -min(dx, 0), width - 1 - w - max(dx, 0)
    y_lo, y_hi = -min(dy, 0), height - 1 - h - max(dy, 0)
    x0, y0 = int(rng.integers(x_lo, x_hi + 1)), int(rng.integers(y_lo, y_hi + 1))
    if off_image:
        x0 = x_hi + 2  # the right-most corner lands one pixel past the right border
    front = [(x0, y0), (x0 + w, y0), (x0 + w, y0 + h), (x0, y0 + h)]
    return front + [(x + dx, y + dy) for x, y in front]


def _cuboid2d_label(rng, obj_class, size_hw, off_image: bool = False):
    points = _cuboid2d_points(rng, size_hw, off_image)
    nodes = {name: sly_graph.Node(sly.PointLocation(row=y, col=x))
             for name, (x, y) in zip(sly_cuboid_2d.CUBOID2D_VERTICES_NAMES, points)}
    return sly.Label(sly.Cuboid2d(nodes), obj_class), None


def _obb_label(rng, obj_class, size_hw):
    height, width = size_hw
    xs = sorted(int(v) for v in rng.integers(0, width, size=2))
    ys = sorted(int(v) for v in rng.integers(0, height, size=2))
    angle = float(rng.uniform(-math.pi, math.pi))
    obb = sly.OrientedBBox(top=ys[0], left=xs[0], bottom=ys[1], right=xs[1], angle=angle)
    return sly.Label(obb, obj_class), None


def _multipolygon_label(rng, obj_class, size_hw):
    parts = []
    for k in range(2):
        radius = rng.uniform(0.1, 0.3) * min(size_hw)
        center = _center(rng, size_hw)
        exterior = _ring_xy(rng, center, radius, int(rng.integers(4, 8)))
        holes = [_ring_xy(rng, center, 0.3 * radius, 4)] if k == 0 else []
        parts.append(sly.Polygon(_locations(exterior), [_locations(h) for h in holes]))
    return sly.Label(sly.Multipolygon(parts), obj_class), None


def _legacy_cuboid_label(rng, obj_class, size_hw, off_image: bool = False):
    corners = _cuboid2d_points(rng, size_hw, off_image)
    points = corners[:4] + [corners[4], corners[5], corners[6]]
    faces = [sly_cuboid.CuboidFace(0, 1, 2, 3), sly_cuboid.CuboidFace(0, 4, 5, 1), sly_cuboid.CuboidFace(1, 5, 6, 2)]
    return sly.Label(sly_cuboid.Cuboid(_locations(points), faces), obj_class), None


def _any_label(rng, obj_class, size_hw, kind: str):
    makers = {
        "polygon": lambda: _polygon_label(rng, obj_class, size_hw, holes=1, self_intersecting=False),
        "rectangle": lambda: _rectangle_label(rng, obj_class, size_hw),
        "bitmap": lambda: _bitmap_label(rng, obj_class, size_hw, "inside"),
        "point": lambda: _point_label(rng, obj_class, size_hw),
        "line": lambda: _line_label(rng, obj_class, size_hw),
        "alpha_mask": lambda: _alpha_label(rng, obj_class, size_hw, "inside"),
    }
    return makers[kind]()



# ----------------------------------------------------------------------------- border-heavy projects
def make_border_project(dst_dir, seed: int, n_items: int = 8, size_hw: tuple[int, int] = (40, 56)) -> Path:
    """A Supervisely project whose labels sit on and across every border, as annotators leave them.

    Deterministic for ``seed``. Coordinates are drawn from the values real tools write at the edge:
    exactly ``0``, ``-1``, ``W - 1``, ``W``, ``W + 1`` (``H`` likewise), a few pixels out, far out
    (``-1000``, ``10**5``), or inside. Every item holds polygons (simple, with holes, bow-ties crossing
    a border, some vertices snapped to the edge), rectangles, lines leaving and re-entering the image,
    points and graph nodes on or off the image, bitmaps and alpha masks over each side and corner,
    multipolygons, cuboid_2d and oriented boxes. Items alternate between the top and child dataset.
    """
    height, width = (int(v) for v in size_hw)
    rng = np.random.default_rng(seed)
    root = Path(dst_dir)
    root.mkdir(parents=True, exist_ok=True)
    meta = make_meta()
    sly.io.json.dump_json_file(meta.to_json(), str(root / "meta.json"), indent=4)
    for index in range(n_items):
        ds_dir = root / TOP_DATASET if index % 2 == 0 else root / TOP_DATASET / "datasets" / CHILD_DATASET
        ext, mode = _IMAGE_KINDS[index % len(_IMAGE_KINDS)]
        ann = _border_annotation(rng, meta, (height, width))
        _write_item(ds_dir, f"edge_{index}{ext}", ann, _make_image(rng, (height, width), mode), False)
    return root


def _edge_value(rng, size: int) -> int:
    choice = int(rng.integers(0, 10))
    return [0, -1, size - 1, size, size + 1, int(rng.integers(-4, 0)), size + int(rng.integers(1, 5)),
            int(rng.choice([-1000, 10**5])), int(rng.integers(0, size)), int(rng.integers(0, size))][choice]


def _edge_ring(rng, size_hw, count: int) -> list[tuple[int, int]]:
    """A ring around a centre near a border, some vertices snapped to edge values."""
    height, width = size_hw
    side = int(rng.integers(0, 4))
    cx = [0, width - 1, rng.uniform(0, width), rng.uniform(0, width)][side] + rng.uniform(-4, 4)
    cy = [rng.uniform(0, height), rng.uniform(0, height), 0, height - 1][side] + rng.uniform(-4, 4)
    ring = _ring_xy(rng, (cx, cy), rng.uniform(0.2, 0.5) * min(size_hw), count)
    out = []
    for x, y in ring:
        if rng.random() < 0.3:
            x = _edge_value(rng, width)
        if rng.random() < 0.3:
            y = _edge_value(rng, height)
        out.append((x, y))
    return out


def _border_annotation(rng, meta: sly.ProjectMeta, size_hw) -> dict:
    height, width = size_hw
    cls = meta.get_obj_class
    objects = []

    def polygon(title, exterior, interiors=()):
        poly = sly.Polygon(_locations(exterior), [_locations(h) for h in interiors])
        obj = sly.Label(poly, cls(title)).to_json()
        obj["points"]["exterior"] = [list(p) for p in exterior]  # to_json keeps them; be explicit
        objects.append(obj)

    for _ in range(int(rng.integers(2, 5))):
        polygon("poly", _edge_ring(rng, size_hw, int(rng.integers(3, 9))))
    ring = _edge_ring(rng, size_hw, 6)
    polygon("poly", [ring[i] for i in rng.permutation(len(ring))])                 # bow-tie-like
    outer = _edge_ring(rng, size_hw, 8)
    cx, cy = np.mean(outer, axis=0)
    polygon("poly", outer, [_ring_xy(rng, (cx, cy), 0.15 * min(size_hw), 4)])    # hole near the edge
    x0, x1 = _edge_value(rng, width), _edge_value(rng, width)
    y0, y1 = _edge_value(rng, height), _edge_value(rng, height)
    rect = sly.Label(sly.Rectangle(0, 0, 1, 1), cls("rect")).to_json()
    rect["points"]["exterior"] = [[x0, y0], [x1, y1]]
    objects.append(rect)
    line = sly.Label(sly.Polyline(_locations([(0, 0), (1, 1)])), cls("line")).to_json()
    line["points"]["exterior"] = [[_edge_value(rng, width), _edge_value(rng, height)]
                                  for _ in range(int(rng.integers(2, 6)))]
    objects.append(line)
    for _ in range(3):
        pt = sly.Label(sly.Point(0, 0), cls("pt")).to_json()
        pt["points"]["exterior"] = [[_edge_value(rng, width), _edge_value(rng, height)]]
        objects.append(pt)
    graph = _graph_label(rng, cls("skeleton"), size_hw, disable_one=bool(rng.random() < 0.5),
                         off_image=bool(rng.random() < 0.5))[0].to_json()
    objects.append(graph)
    for title, _maker in (("bmp", _blob), ("alpha", None)):
        bh, bw = int(rng.integers(3, height // 2)), int(rng.integers(3, width // 2))
        top = int(rng.choice([-(bh // 2), height - bh // 2, -bh - 3, int(rng.integers(0, height - bh))]))
        left = int(rng.choice([-(bw // 2), width - bw // 2, int(rng.integers(0, width - bw))]))
        if title == "bmp":
            geometry = sly.Bitmap(_blob(rng, (bh, bw), with_hole=bool(rng.random() < 0.5)),
                                  origin=sly.PointLocation(row=0, col=0))
        else:
            geometry = sly.AlphaMask(_alpha_data(rng, (bh, bw)), origin=sly.PointLocation(row=0, col=0))
        obj = sly.Label(geometry, cls(title)).to_json()
        key = "bitmap"
        obj[key]["origin"] = [left + obj[key]["origin"][0], top + obj[key]["origin"][1]]
        objects.append(obj)
    parts = [sly.Polygon(_locations(_edge_ring(rng, size_hw, 5))) for _ in range(2)]
    objects.append(sly.Label(sly.Multipolygon(parts), cls("mpoly")).to_json())
    objects.append(_cuboid2d_label(rng, cls("box3d"), size_hw, off_image=bool(rng.random() < 0.5))[0].to_json())
    objects.append(_obb_label(rng, cls("obb"), size_hw)[0].to_json())
    order = rng.permutation(len(objects))
    ann_json = sly.Annotation((height, width), []).to_json()
    ann_json["objects"] = [objects[i] for i in order]
    return ann_json
