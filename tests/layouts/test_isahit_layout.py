"""The isahit lab mask layout (``maskcore.layouts.isahit``).

References, independent of maskcore's kernel: the Supervisely SDK's own drawing (``draw_label``
of the test oracle, OpenCV underneath) for the real projects in ``examples/sly_catsdogs``;
``cv2.fillPoly`` / ``cv2.rectangle`` per label for the real facade COCO polygons of
``tests/data/facade`` and for seeded random shapes. Each reference is painted label by label in
annotation order with colours computed here from the convention's formula, and every pixel of
the decoded PNG (PIL) is compared.
"""

from __future__ import annotations

import io
import json
import pickle
import re
from datetime import datetime, timedelta, timezone

import numpy as np
import pyarrow as pa
import pytest
from PIL import Image

from helpers import DATA, SAMPLES
from helpers.oracles import oracle
from maskcore.errors import ConfigError, LimitError, RefusedError
from maskcore.exec.plan import plan_partitions
from maskcore.exec.state import config_fingerprint
from maskcore.exec.task import TaskSpec, parse_item, run_partition
from maskcore.io.sinks.fsdir import FsspecDirSink
from maskcore.layouts.isahit import IsahitLayout
from maskcore.model import geometry as G
from maskcore.model.annotation import Annotation, Label, ObjClass, ProjectMeta
from maskcore.model.item import ItemData
from maskcore.paths import stem
from maskcore.readers import open_source

cv2 = oracle("cv2")

FACADE = DATA / "facade" / "_annotations.coco.json"
NOW = datetime(2024, 3, 5, 7, 8, 9, tzinfo=timezone.utc)


def _layout(**options) -> IsahitLayout:
    return IsahitLayout.from_options({"name": "out", **options})


def _decode(png: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(png)) as im:
        assert im.mode == "RGB", f"expected an 8-bit RGB PNG, got mode {im.mode}"
        return np.asarray(im)


def _colour(convention: str, k: int, channel: int) -> tuple[int, int, int]:
    """Label k (0-based, annotation order) under ``convention``, computed from the spec."""
    if convention == "documented":
        return k + 1, (k + 1) % 255, channel
    return (k + 2) % 256, (k + 2) // 256, channel


def _reference(size_hw, masks, colours) -> np.ndarray:
    out = np.zeros((*size_hw, 3), np.uint8)
    for mask, colour in zip(masks, colours):
        out[mask] = colour
    return out


def _assert_pixels(ours: np.ndarray, ref: np.ndarray, where: str) -> None:
    assert ours.shape == ref.shape, f"{where}: shape {ours.shape} vs reference {ref.shape}"
    bad = np.any(ours != ref, axis=-1)
    assert not bad.any(), (f"{where}: {int(bad.sum())} pixels differ, first at "
                           f"{tuple(np.argwhere(bad)[0])}: {ours[bad][0]} vs {ref[bad][0]}")


def _item(labels, size_hw, classes, *, dataset="ds", name="a.jpg", out_dir=None, mask_stem=None):
    meta = ProjectMeta(tuple(ObjClass(c, "any", (0, 0, 0)) for c in classes))
    ann = Annotation(size_hw, tuple(Label(c, g, i) for i, (c, g) in enumerate(labels)))
    return ItemData(dataset=dataset, name=name, out_dir=out_dir or dataset, out_name=name,
                    mask_stem=mask_stem or stem(name), meta=meta, annotation=ann, ann_bytes=b"",
                    image_bytes=None)


# --- real data: Supervisely projects vs the SDK's drawing ----------------------------------------


@pytest.mark.parametrize("convention", ["documented", "sdk"])
@pytest.mark.parametrize("project", ["instance", "vector", "keypoints"])
def test_real_supervisely_projects_match_an_sdk_reference(project, convention):
    from oracle.sly_reference import draw_label, load_project_items

    src = open_source("supervisely", str(SAMPLES / project))
    meta = src.read_meta()
    plan = plan_partitions(src.list_items(), workers=1)
    layout = _layout(convention=convention, project=project).for_plan(plan)
    assert layout.dataset_folders is False  # one dataset: a flat folder
    spec = TaskSpec(source=src, sink=None, layout=layout, meta=meta)
    _, sdk_items = load_project_items(SAMPLES / project)
    sdk = {(d, n): ann for d, n, ann, _ in sdk_items}
    raw_classes = json.loads((SAMPLES / project / "meta.json").read_text())["classes"]
    channel = {c["title"]: i for i, c in enumerate(raw_classes, start=1)}
    rows = plan.to_pylist()
    assert len(rows) == 6 and set(sdk) == {(r["dataset"], r["item"]) for r in rows}
    labels_seen = 0
    for row in rows:
        files = spec.layout.item_files(parse_item(spec, row, src.item_annotation(row), None))
        assert [p for p, _ in files] == [f"out/{row['item']}.png"]
        ann = sdk[(row["dataset"], row["item"])]
        masks, colours = [], []
        for k, label in enumerate(ann.labels):
            canvas = np.zeros((*ann.img_size, 3), np.uint8)
            draw_label(label, canvas, [255, 255, 255], 2, config=None)
            masks.append(canvas[..., 0] > 0)
            colours.append(_colour(convention, k, channel[label.obj_class.name]))
        labels_seen += len(masks)
        _assert_pixels(_decode(files[0][1]), _reference(ann.img_size, masks, colours),
                       f"{project}/{row['item']}")
    assert labels_seen == {"instance": 8, "vector": 9, "keypoints": 6}[project]


# --- real data: facade COCO polygons vs cv2.fillPoly --------------------------------------------


def _facade_items():
    doc = json.loads(FACADE.read_text())
    cats = sorted(doc["categories"], key=lambda c: c["id"])
    titles = {c["id"]: f"{c['name']}#{c['id']}" for c in cats}  # two categories are named "facade"
    by_image = {}
    for a in doc["annotations"]:
        by_image.setdefault(a["image_id"], []).append(a)
    for img in sorted(doc["images"], key=lambda i: i["id"]):
        anns = by_image.get(img["id"], [])
        labels = []
        for a in anns:
            (seg,) = a["segmentation"]
            labels.append((titles[a["category_id"]], G.Polygon(np.array(seg, np.float64).reshape(-1, 2))))
        yield img, labels, [titles[c["id"]] for c in cats]


@pytest.mark.parametrize("convention", ["documented", "sdk"])
def test_real_facade_coco_polygons_match_fillpoly(convention):
    layout = _layout(convention=convention, label_channels=None)
    n_items = n_polys = 0
    for img, labels, classes in _facade_items():
        if img["id"] % 3:  # a third of the 108 images (36 polygons each on average): keeps it fast
            continue
        size_hw = (img["height"], img["width"])
        item = _item(labels, size_hw, classes, dataset="valid", name=img["file_name"])
        ((path, png),) = layout.item_files(item)
        assert path == f"out/valid/{img['file_name']}.png"
        ref = np.zeros((*size_hw, 3), np.uint8)
        for k, (title, poly) in enumerate(labels):  # painted in order, later over earlier
            cv2.fillPoly(ref, [np.floor(poly.exterior_xy).astype(np.int32)],
                         _colour(convention, k, classes.index(title) + 1))
        _assert_pixels(_decode(png), ref, img["file_name"])
        n_items += 1
        n_polys += len(labels)
    assert n_items == 36 and n_polys > 1000


# --- random shapes vs OpenCV ---------------------------------------------------------------------


def _random_labels(rng, size_hw, n, classes):
    """Polygons (int and float, some crossing the border, some self-intersecting) and
    rectangles, with cv2's drawing of each as the reference mask."""
    h, w = size_hw
    labels, masks = [], []
    for _ in range(n):
        mask = np.zeros(size_hw, np.uint8)
        title = classes[rng.integers(len(classes))]
        if rng.random() < 0.3:
            x0, x1 = sorted(rng.integers(-5, w + 5, 2))
            y0, y1 = sorted(rng.integers(-5, h + 5, 2))
            geom = G.Rectangle(int(x0), int(y0), int(x1), int(y1))
            cv2.rectangle(mask, (int(x0), int(y0)), (int(x1), int(y1)), 1, thickness=-1)
        else:
            cx, cy = rng.uniform(-0.1, 1.1) * w, rng.uniform(-0.1, 1.1) * h
            n_pts = int(rng.integers(3, 9))
            pts = np.column_stack([cx + rng.normal(0, w / 6, n_pts), cy + rng.normal(0, h / 6, n_pts)])
            if rng.random() < 0.5:
                pts = np.round(pts).astype(np.int64)
            geom = G.Polygon(pts)
            cv2.fillPoly(mask, [np.floor(pts).astype(np.int32)], 1)
        labels.append((title, geom))
        masks.append(mask > 0)
    return labels, masks


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("convention", ["documented", "sdk"])
def test_random_shapes_match_opencv(seed, convention):
    rng = np.random.default_rng(seed)
    size_hw = (int(rng.integers(20, 90)), int(rng.integers(20, 90)))
    classes = ["a", "b", "c", "d"]
    n = 255 if convention == "documented" else 300  # sdk: ids past 255 carry into G
    labels, masks = _random_labels(rng, size_hw, n, classes)
    channels = {c: int(v) for c, v in zip(classes, rng.integers(0, 256, 4))}
    layout = _layout(convention=convention, label_channels=channels)
    ((_, png),) = layout.item_files(_item(labels, size_hw, classes))
    colours = [_colour(convention, k, channels[t]) for k, (t, _) in enumerate(labels)]
    ours = _decode(png)
    _assert_pixels(ours, _reference(size_hw, masks, colours), f"seed {seed}")
    if convention == "sdk":
        assert (ours[..., 1] == 1).any(), "no pixel of an instance id >= 256 survived: test too weak"


def test_convention_limits_fail_the_item_without_wrapping():
    labels = [("a", G.Rectangle(0, 0, 0, 0))] * 256
    with pytest.raises(LimitError, match=r"ds/a\.jpg/object 255: the documented convention numbers "
                                         r"instances 1\.\.255.*label 256 of 256"):
        _layout().item_files(_item(labels, (4, 4), ["a"]))
    _layout(convention="sdk").item_files(_item(labels, (4, 4), ["a"]))
    many = [("a", G.Rectangle(0, 0, 0, 0))] * 65535
    with pytest.raises(LimitError, match=r"object 65534: the sdk convention numbers instances 2\.\.65535"):
        _layout(convention="sdk").item_files(_item(many, (4, 4), ["a"]))
    # mapped labels need no id: 256 labels of a mapped class are fine under "documented"
    ((_, png),) = _layout(semantic_mapping={"a": [1, 2, 3]}).item_files(_item(labels, (4, 4), ["a"]))
    assert _decode(png)[0, 0].tolist() == [1, 2, 3]


def test_class_beyond_index_255_needs_a_channel():
    classes = [f"c{i}" for i in range(300)]
    item = _item([("c0", G.Rectangle(0, 0, 1, 1)), ("c299", G.Rectangle(1, 1, 2, 2))], (4, 4), classes)
    with pytest.raises(LimitError, match=r"ds/a\.jpg/object 1: class 'c299' needs an 8-bit label channel "
                                         r"\(0\.\.255\), got its index in meta.json, 300"):
        _layout().item_files(item)
    ((_, png),) = _layout(convention="sdk", label_channels={"c0": 7, "c299": 9}).item_files(item)
    assert _decode(png)[2, 2].tolist() == [3, 0, 9] and _decode(png)[0, 0].tolist() == [2, 0, 7]


# --- semantic mapping: by label, once -------------------------------------------------------------


def _sdk_colour_selection(rgb: np.ndarray, channels: dict, mapping: dict) -> np.ndarray:
    """What the isahit SDK's exporter does to a mask (spec): for each mapped label in turn, the
    pixels with B == its channel and R >= 1 take the colour; a channel of 0 is skipped."""
    out = rgb.copy()
    for label, colour in mapping.items():
        b = channels[label]
        if not b:
            continue
        sel = (out[..., 2] == b) & (out[..., 0] >= 1)
        out[sel] = colour
    return out


def test_semantic_mapping_selects_by_label_once():
    rng = np.random.default_rng(7)
    size_hw = (60, 70)
    classes = ["cat", "dog", "bird", "fish"]
    channels = {"cat": 0, "dog": 2, "bird": 3, "fish": 4}
    # dog's colour has bird's channel: selecting by colour would re-catch dog's pixels as bird
    mapping = {"cat": [9, 9, 9], "dog": [5, 0, 3], "bird": [200, 100, 50]}
    labels, masks = _random_labels(rng, size_hw, 254, classes)
    labels.append(("bird", G.Rectangle(10, 10, 30, 30)))  # last label, id 256: R = 0 under "sdk"
    masks.append(cv2.rectangle(np.zeros(size_hw, np.uint8), (10, 10), (30, 30), 1, -1) > 0)
    layout = _layout(convention="sdk", label_channels=channels, semantic_mapping=mapping)
    ((_, png),) = layout.item_files(_item(labels, size_hw, classes))
    ours = _decode(png)
    colours = [tuple(mapping[t]) if t in mapping else _colour("sdk", k, channels[t])
               for k, (t, _) in enumerate(labels)]
    _assert_pixels(ours, _reference(size_hw, masks, colours), "semantic mapping")
    # the defects are really exercised: the SDK's colour selection gives something else here
    plain = _layout(convention="sdk", label_channels=channels).item_files(_item(labels, size_hw, classes))
    sdk = _sdk_colour_selection(_decode(plain[0][1]), channels, mapping)
    top = np.zeros(size_hw, int) - 1
    for k, m in enumerate(masks):
        top[m] = k
    owner = np.array([t for t, _ in labels])[np.maximum(top, 0)]
    shown = top >= 0
    assert (ours[shown & (owner == "cat")] == [9, 9, 9]).all()
    assert (sdk[shown & (owner == "cat")] != [9, 9, 9]).any(axis=-1).all()      # B = 0: never mapped
    assert (ours[shown & (owner == "dog")] == [5, 0, 3]).all()
    assert (sdk[shown & (owner == "dog")] == [200, 100, 50]).all()            # re-caught as bird
    lost = shown & (owner == "bird") & ((top + 2) % 256 == 0)                  # R = 0 pixels
    assert lost.any() and (sdk[lost] != [200, 100, 50]).any(axis=-1).all()
    assert (ours[lost] == [200, 100, 50]).all()
    assert (ours[~shown] == 0).all()


# --- file names -----------------------------------------------------------------------------------


def _planned(listing: dict[str, list[str]], layout: IsahitLayout) -> dict[str, str]:
    """``{dataset/item: output path}`` through the real plan."""
    rows = [(d, i) for d in sorted(listing) for i in sorted(listing[d])]
    plan = plan_partitions(pa.table({"dataset": [d for d, _ in rows], "item": [i for _, i in rows]}),
                           workers=1, project_wide_stems=layout.project_wide_stems)  # as run.py plans
    layout = layout.for_plan(plan)
    out = {}
    for row in plan.to_pylist():
        item = _item([], (2, 2), ["a"], dataset=row["dataset"], name=row["out_name"],
                     out_dir=row["out_dir"], mask_stem=row["mask_stem"])
        ((path, _),) = layout.item_files(item)
        out[f"{row['dataset']}/{row['item']}"] = path
    return out


def test_replace_extension_cuts_only_the_last_component():
    listing = {"v1.2": ["frame.jpg"], "ds": ["v1.2/frame.jpg", "cat.jpg", "cat.png", "dog.tar.gz", "noext"]}
    assert _planned(listing, _layout(replace_extension=True)) == {
        "v1.2/frame.jpg": "out/v1.2/frame.png",       # the SDK would write v1.png
        "ds/v1.2/frame.jpg": "out/ds/v1.2_frame.png",  # '/' in an item name becomes '_'
        "ds/cat.jpg": "out/ds/cat.jpg.png",            # two items share the stem: full names
        "ds/cat.png": "out/ds/cat.png.png",
        "ds/dog.tar.gz": "out/ds/dog.tar.png",
        "ds/noext": "out/ds/noext.png"}
    assert _planned(listing, _layout())["v1.2/frame.jpg"] == "out/v1.2/frame.jpg.png"


def test_replace_extension_of_a_name_without_extension_after_a_dotted_folder():
    assert _planned({"ds": ["v1.2/frame"]}, _layout(replace_extension=True)) == {
        "ds/v1.2/frame": "out/v1.2_frame.png"}


def test_dataset_folders_auto_explicit_and_clash():
    one = {"ds": ["a.jpg", "b.jpg"]}
    two = {"d1": ["a.jpg"], "d2": ["b.jpg"]}
    assert _planned(one, _layout()) == {"ds/a.jpg": "out/a.jpg.png", "ds/b.jpg": "out/b.jpg.png"}
    assert _planned(two, _layout()) == {"d1/a.jpg": "out/d1/a.jpg.png", "d2/b.jpg": "out/d2/b.jpg.png"}
    assert _planned(one, _layout(dataset_folders=True)) == {"ds/a.jpg": "out/ds/a.jpg.png",
                                                            "ds/b.jpg": "out/ds/b.jpg.png"}
    assert _planned(two, _layout(dataset_folders=False)) == {"d1/a.jpg": "out/a.jpg.png",
                                                             "d2/b.jpg": "out/b.jpg.png"}
    with pytest.raises(ConfigError, match=r"d1/A\.jpg and d2/a\.jpg would both write out/a\.jpg\.png"):
        _planned({"d1": ["A.jpg"], "d2": ["a.jpg"]}, _layout(dataset_folders=False))
    flat = _layout(dataset_folders=False, replace_extension=True)
    assert flat.project_wide_stems and not _layout(replace_extension=True).project_wide_stems
    assert _planned({"d1": ["a.jpg"], "d2": ["a.png"]}, flat) == {"d1/a.jpg": "out/a.jpg.png",
                                                                  "d2/a.png": "out/a.png.png"}


# --- folder name, options, run-level checks -------------------------------------------------------


def test_default_folder_name_is_stamped_once_in_utc():
    fixed = IsahitLayout.from_options({"project": "Cats & dogs/2"}, now=NOW)
    assert fixed.folder == "lab_mask_Cats & dogs_2_2024-03-05_070809"
    local = NOW.astimezone(timezone(timedelta(hours=5)))
    assert IsahitLayout.from_options({"project": "p"}, now=local).folder == "lab_mask_p_2024-03-05_070809"
    before = datetime.now(timezone.utc).replace(microsecond=0)
    layout = IsahitLayout.from_options({"project": "p"})
    after = datetime.now(timezone.utc)
    m = re.fullmatch(r"lab_mask_p_(\d{4}-\d{2}-\d{2}_\d{6})", layout.folder)
    assert m, layout.folder
    stamp = datetime.strptime(m[1], "%Y-%m-%d_%H%M%S").replace(tzinfo=timezone.utc)
    assert before <= stamp <= after
    assert pickle.loads(pickle.dumps(layout)).folder == layout.folder  # workers agree
    item = _item([], (2, 2), ["a"])
    assert layout.item_files(item)[0][0] == f"{layout.folder}/ds/a.jpg.png"


@pytest.mark.parametrize("options, message", [
    ({"name": "a/b"}, "name: expected a folder name"),
    ({"name": ".maskcore"}, "name: expected a folder name"),
    ({"name": ""}, "name: expected a folder name"),
    ({"convention": "isahit"}, r"convention: expected one of \['documented', 'sdk'\], got 'isahit'"),
    ({"label_channels": {"a": 256}}, r"label_channels\['a'\]: expected an integer 0\.\.255, got 256"),
    ({"semantic_mapping": {"a": [1, 2]}}, r"semantic_mapping\['a'\]: expected \[r, g, b\]"),
    ({"replace_extension": "yes"}, "replace_extension: expected true or false"),
    ({"masks": "machine"}, r"unknown option\(s\) for layout 'isahit': \['masks'\]"),
    ({"resume": True, "project": "p"}, "resume: the default folder name carries the time"),
    ({"dataset_folders": "sometimes"}, "dataset_folders"),
])
def test_bad_options_are_refused(options, message):
    with pytest.raises(ConfigError, match=message):
        IsahitLayout.from_options(options)


def test_check_meta_refuses_unknown_and_missing_classes():
    meta = ProjectMeta((ObjClass("cat", "any", (0, 0, 0)), ObjClass("dog", "any", (0, 0, 0))))
    with pytest.raises(ConfigError, match=r"semantic_mapping: class\(es\) \['cow'\] are not classes"):
        _layout(semantic_mapping={"cow": [1, 1, 1]}).check_meta(meta)
    with pytest.raises(ConfigError,
                       match=r"label_channels: expected a channel for every class, got none for \['dog'\]"):
        _layout(label_channels={"cat": 3}).check_meta(meta)
    sdk = _layout(convention="sdk", label_channels={"cat": 3})
    sdk.check_meta(meta)  # the sdk convention writes B = 1 for a class without a channel
    item = _item([("cat", G.Rectangle(0, 0, 0, 0)), ("dog", G.Rectangle(1, 1, 1, 1))], (2, 2), ["cat", "dog"])
    assert _decode(sdk.item_files(item)[0][1]).tolist() == [[[2, 0, 3], [0, 0, 0]], [[0, 0, 0], [3, 0, 1]]]


def test_prepare_refuses_an_existing_folder_unless_resuming(tmp_path):
    sink = FsspecDirSink(str(tmp_path))
    layout = _layout()
    assert layout.prepare(sink, 0) == ["no items to export: the folder 'out' was not created"]
    assert layout.prepare(sink, 3) == [] and layout.prepare(sink) == []
    assert not (tmp_path / "out").exists()
    (tmp_path / "out").mkdir()
    for n in (3, None):
        with pytest.raises(RefusedError, match="the output folder 'out' already exists"):
            layout.prepare(sink, n)
    resuming = _layout(resume=True)
    assert resuming.prepare(sink, 3) == []
    # a resumed run has the configuration of the run it resumes (same partitions, incremental)
    assert config_fingerprint(resuming, "isahit", {}) == config_fingerprint(layout, "isahit", {})
    again = pickle.loads(pickle.dumps(resuming.for_plan(pa.table({"dataset": ["ds"]}))))
    assert again.resume and again.prepare(sink, 3) == []
    assert layout.project_files(ProjectMeta(()), b"{}") == []


def test_partition_writes_deterministic_pngs_through_a_real_sink(tmp_path):
    src = open_source("supervisely", str(SAMPLES / "vector"))
    meta = src.read_meta()
    plan = plan_partitions(src.list_items(), workers=1)
    layout = IsahitLayout.from_options({"project": "vector", "replace_extension": True}, now=NOW).for_plan(plan)
    runs = []
    for run in ("a", "b"):
        sink = FsspecDirSink(str(tmp_path / run))
        assert layout.prepare(sink, plan.num_rows) == []
        table = run_partition(TaskSpec(source=src, sink=sink, layout=layout, meta=meta), plan)
        assert table.column("status").to_pylist() == ["ok"] * 6
        runs.append({p.relative_to(tmp_path / run).as_posix(): p.read_bytes()
                     for p in (tmp_path / run).rglob("*.png")})
    folder = "lab_mask_vector_2024-03-05_070809"
    assert sorted(runs[0]) == [f"{folder}/{n}.png" for n in ("cat1", "cat2", "cat3", "dog1", "dog2", "dog3")]
    assert runs[0] == runs[1]
