"""Layout option ``class_values`` (issue 12.13): the values of the class-index mask of every layout
that has one: supervisely (masks_machine), isahit (the label channel B of its one RGB mask), cvat
(SegmentationClass, its own test below). save_masks has none: its machine masks are colours from
the layer's required ``gt_machine_color`` map (a class-index mask is that map with [v, v, v]).

Oracle: pycocotools' ``annToMask`` (``frPyObjects``/``decode``) of every annotation of a small random
COCO set with non-contiguous category ids, painted in the layout's documented order (supervisely:
larger areas first, ties in file order; isahit: file order, later over earlier) with the category
id, the meta index or a mapping. Segmentations are RLE, which both pixel rules read exactly.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import maskcore
from helpers.oracles import oracle
from maskcore.errors import ConfigError
from maskcore.layouts import get_layout
from maskcore.paths import STATE_DIR

M = oracle("pycocotools.mask")
SLY_SOURCE = Path(__file__).resolve().parents[2] / "examples" / "sly_catsdogs" / "vector"

CATEGORIES = [(12, "car"), (3, "tree"), (200, "sky"), (7, "road")]   # file order != id order


def coco_doc(seed: int) -> dict:
    """Three images of random sizes, each with 2-6 random blobs (boxes OR discs) as compressed RLE."""
    rng = np.random.default_rng(seed)
    images, annotations = [], []
    for image_id in (5, 9, 11):
        h, w = (int(v) for v in rng.integers(12, 60, 2))
        images.append({"id": image_id, "file_name": f"img{image_id}.jpg", "height": h, "width": w})
        for _ in range(int(rng.integers(2, 7))):
            yy, xx = np.mgrid[:h, :w]
            cy, cx, r = rng.integers(0, h), rng.integers(0, w), rng.integers(2, 12)
            y0, x0 = rng.integers(0, h), rng.integers(0, w)
            mask = ((yy - cy) ** 2 + (xx - cx) ** 2 <= r * r) | (
                (yy >= y0) & (yy < y0 + rng.integers(1, 15)) & (xx >= x0) & (xx < x0 + rng.integers(1, 15)))
            rle = M.encode(np.asfortranarray(mask.astype(np.uint8)))
            cat = CATEGORIES[int(rng.integers(0, len(CATEGORIES)))][0]
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": cat,
                                "iscrowd": 0, "area": float(mask.sum()), "bbox": list(M.toBbox(rle)),
                                "segmentation": {"size": [h, w], "counts": rle["counts"].decode()}})
    return {"images": images, "annotations": annotations,
            "categories": [{"id": i, "name": n, "supercategory": ""} for i, n in CATEGORIES]}


def expected_machine(doc: dict, image: dict, values: dict[int, int], order: str = "area") -> np.ndarray:
    """The oracle: annToMask of each annotation, larger areas first (stable; ``order="file"``:
    in file order), painted its value."""
    h, w = image["height"], image["width"]
    masks = []
    for ann in (a for a in doc["annotations"] if a["image_id"] == image["id"]):
        seg = ann["segmentation"]
        rle = M.frPyObjects(seg, h, w) if isinstance(seg["counts"], list) else seg
        masks.append((M.decode(rle).astype(bool), values[ann["category_id"]]))
    canvas = np.zeros((h, w), np.uint8)
    for mask, value in (sorted(masks, key=lambda m: -int(m[0].sum())) if order == "area" else masks):
        canvas[mask] = value
    return canvas


def write_doc(tmp_path: Path, doc: dict) -> Path:
    path = tmp_path / "src" / "instances_train.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))
    return path


def export_machine(src: Path, dst: Path, **options) -> dict[str, np.ndarray]:
    from PIL import Image
    result = maskcore.export(str(src), str(dst), masks=["machine"], cluster="inprocess",
                             options={"copy_images": False, "copy_annotations": False, **options},
                             log=lambda line: None)
    assert result.exit_code == 0, result.report
    return {p.stem: np.asarray(Image.open(p)) for p in (dst / "train" / "masks_machine").glob("*.png")}


def export_isahit(src: Path, dst: Path, **options) -> dict[str, np.ndarray]:
    """The label channel (B) of each isahit mask; nothing but the masks in the folder."""
    from PIL import Image
    result = maskcore.export(str(src), str(dst), layout="isahit", cluster="inprocess",
                             options={"name": "lab", "resume": True, **options}, log=lambda line: None)
    assert result.exit_code == 0, result.report
    files = sorted((dst / "lab").iterdir())
    assert all(p.name.endswith(".jpg.png") for p in files), files   # no colour-map file: see isahit.py
    return {p.name[:-len(".jpg.png")]: np.asarray(Image.open(p))[..., 2] for p in files}


# layout -> (export: {stem: class-index array}, paint order, colour-map file stating the values)
LAYOUTS = {"supervisely": (export_machine, "area", "obj_class_to_machine_color.json"),
           "isahit": (export_isahit, "file", None)}


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_source_values_are_the_category_ids(tmp_path, seed, layout):
    export, order, stated_in = LAYOUTS[layout]
    doc = coco_doc(seed)
    src = write_doc(tmp_path, doc)
    got = export(src, tmp_path / "out", class_values="source")
    for image in doc["images"]:
        assert np.array_equal(got[Path(image["file_name"]).stem],
                              expected_machine(doc, image, {i: i for i, _ in CATEGORIES}, order))
    if stated_in:
        stated = json.loads((tmp_path / "out" / stated_in).read_text())
        assert stated == {n: [i, i, i] for i, n in CATEGORIES}
    project = maskcore.open_project(str(src))   # the in-memory masks are the written pixels
    kind = {"supervisely": "machine", "isahit": "mask"}[layout]
    for item in project.items():
        m = project.masks(item, kind, layout=layout, options={"class_values": "source"})
        mask = m.machine if layout == "supervisely" else m["mask"][..., 2]
        assert np.array_equal(mask, got[Path(item.name).stem])


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_meta_is_the_default_byte_for_byte(tmp_path, layout):
    export, order, _ = LAYOUTS[layout]
    doc = coco_doc(4)
    src = write_doc(tmp_path, doc)
    default = export(src, tmp_path / "a")
    explicit = export(src, tmp_path / "b", class_values="meta")
    meta_index = {i: k for k, (i, _) in enumerate(CATEGORIES, start=1)}
    for image in doc["images"]:
        stem = Path(image["file_name"]).stem
        assert np.array_equal(default[stem], expected_machine(doc, image, meta_index, order))
        assert np.array_equal(explicit[stem], default[stem])
    files = {p.relative_to(tmp_path / "a").as_posix() for p in (tmp_path / "a").rglob("*")
             if p.is_file() and ".maskcore-meta" not in p.parts}
    assert files and all((tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes() for f in files)
    # runs made before the option existed keep their configuration fingerprint
    base = {"name": "lab"} if layout == "isahit" else {}
    assert (get_layout(layout, {**base, "class_values": "meta", "class_value_zero": "refuse"}).fingerprint()
            == get_layout(layout, base).fingerprint())
    assert "class_values" not in get_layout(layout, base).fingerprint()
    assert get_layout(layout, {**base, "class_values": "source"}).fingerprint()["class_values"] == "source"


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_mapping_inline_and_file_and_rerender(tmp_path, layout):
    export_machine, order, stated_in = LAYOUTS[layout]
    doc = coco_doc(5)
    src = write_doc(tmp_path, doc)
    mapping = {"car": 40, "tree": 41, "sky": 42, "road": 40}   # several classes may share a value
    mapping_file = tmp_path / "values.json"
    mapping_file.write_text(json.dumps(mapping))
    by_id = {i: mapping[n] for i, n in CATEGORIES}
    dst = tmp_path / "out"
    first = export_machine(src, dst, class_values=mapping)
    again = export_machine(src, dst, class_values=str(mapping_file))   # same values: nothing changes
    assert all(np.array_equal(first[k], again[k]) for k in first)
    for image in doc["images"]:
        assert np.array_equal(first[Path(image["file_name"]).stem], expected_machine(doc, image, by_id, order))
    if stated_in:
        assert json.loads((dst / stated_in).read_text()) == {n: [v] * 3 for n, v in mapping.items()}
    # changing the option re-renders into the same destination
    rerun = export_machine(src, dst, class_values="source")
    for image in doc["images"]:
        assert np.array_equal(rerun[Path(image["file_name"]).stem],
                              expected_machine(doc, image, {i: i for i, _ in CATEGORIES}, order))


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_category_zero_is_refused_unless_allowed(tmp_path, layout):
    export_machine, order, _ = LAYOUTS[layout]
    doc = coco_doc(6)
    doc["categories"][1]["id"] = 0          # tree
    for ann in doc["annotations"]:
        ann["category_id"] = 0 if ann["category_id"] == 3 else ann["category_id"]
    src = write_doc(tmp_path, doc)
    with pytest.raises(ConfigError, match=r"class_values: classes \['tree'\] would be written as 0.*"
                                          r"class_value_zero=allow"):
        export_machine(src, tmp_path / "refused", class_values="source")
    got = export_machine(src, tmp_path / "out", class_values="source", class_value_zero="allow")
    values = {i: i for i, _ in CATEGORIES} | {0: 0}
    for image in doc["images"]:
        assert np.array_equal(got[Path(image["file_name"]).stem], expected_machine(doc, image, values, order))


def test_source_refusals_name_the_reason(tmp_path):
    doc = coco_doc(7)
    doc["categories"][2]["id"] = 300         # sky
    for ann in doc["annotations"]:
        ann["category_id"] = 300 if ann["category_id"] == 200 else ann["category_id"]
    with pytest.raises(ConfigError, match=r"'source' category ids \{'sky': 300\} are outside 0\.\.255"):
        export_machine(write_doc(tmp_path, doc), tmp_path / "o1", class_values="source")
    project = maskcore.open_project(str(SLY_SOURCE))
    with pytest.raises(ConfigError, match="this source has none"):
        project.masks(next(project.items()), "machine", options={"class_values": "source"})
    with pytest.raises(ConfigError, match=r"no value for \['dog', 'cat2'"):
        project.masks(next(project.items()), "machine", options={"class_values": {"cat": 1}})


def test_merged_category_names_take_the_id_annotations_use(tmp_path):
    """Roboflow writes its project as category 0 and a class of the same name again (the facade set:
    'facade' is id 0, unused, and id 3): ``source`` takes the id annotations use; when both are used
    the values are ambiguous and refused."""
    doc = coco_doc(8)
    doc["categories"].insert(0, {"id": 0, "name": "tree", "supercategory": "none"})
    src = write_doc(tmp_path, doc)
    got = export_machine(src, tmp_path / "out", class_values="source")
    for image in doc["images"]:
        assert np.array_equal(got[Path(image["file_name"]).stem],
                              expected_machine(doc, image, {i: i for i, _ in CATEGORIES}))
    doc["annotations"][0]["category_id"] = 0
    doc["annotations"][1]["category_id"] = 3
    with pytest.raises(ConfigError, match=r"one integer id per class, got \{'tree': \[0, 3\]\}"):
        export_machine(write_doc(tmp_path, doc), tmp_path / "o2", class_values="source")


@pytest.mark.parametrize("value, message", [
    ('{"car": 300}', r"class_values\['car'\]: expected an integer 0\.\.255"),
    ('"nofile.json"', r"class_values: expected 'meta', 'source', a mapping .* 'nofile.json'"),
    ("[1, 2]", r"class_values: expected 'meta', 'source' or a non-empty mapping"),
])
def test_bad_values_are_usage_errors(tmp_path, cli, value, message):
    import re
    src = write_doc(tmp_path, coco_doc(9))
    ran = cli("export", src, tmp_path / "out", "-o", f"class_values={value}")
    assert ran.returncode == 2, ran.stderr
    assert re.search(message, ran.stderr), ran.stderr
    assert not (tmp_path / "out").exists()
    ran = cli("export", src, tmp_path / "out", "-o", "class_value_zero=maybe")
    assert ran.returncode == 2 and "class_value_zero: expected 'refuse' or 'allow'" in ran.stderr


@pytest.mark.parametrize("layout", ["supervisely", "cvat", "isahit"])
def test_options_are_declared_for_help(layout):
    from maskcore.layouts import get_layout_class, options_help
    keys = {o.key for o in get_layout_class(layout).OPTIONS}
    assert {"class_values", "class_value_zero"} <= keys
    assert "    class_values: meta | source" in options_help()


def test_isahit_takes_one_of_label_channels_and_class_values(tmp_path):
    """``label_channels`` (the older option) and ``class_values`` both set B: one at a time."""
    with pytest.raises(ConfigError, match="label_channels and class_values both set the label channel"):
        get_layout("isahit", {"name": "lab", "label_channels": {"car": 1}, "class_values": "source"})
    doc = coco_doc(11)
    src = write_doc(tmp_path, doc)
    channels = {n: 50 + k for k, (_, n) in enumerate(CATEGORIES)}
    by_channels = export_isahit(src, tmp_path / "a", label_channels=channels)
    by_values = export_isahit(src, tmp_path / "b", class_values=channels)
    assert all(np.array_equal(by_channels[k], by_values[k]) for k in by_channels)


def test_cvat_class_mask_is_grey_values_and_datumaro_reads_it(tmp_path):
    """The cvat layout with ``class_values``: SegmentationClass is the grey (v, v, v) of each
    pixel's class value, labelmap.txt states the same colours, Datumaro imports it. Oracle:
    annToMask painted in CVAT's order (z_order 0, ungrouped: file order, later over earlier)."""
    from PIL import Image

    from helpers.datumaro import assert_datumaro_reads
    doc = coco_doc(10)
    src = write_doc(tmp_path, doc)
    dst = tmp_path / "cvat"
    result = maskcore.export(str(src), str(dst), layout="cvat", archive=False, cluster="inprocess",
                             options={"class_values": "source"}, log=lambda line: None)
    assert result.exit_code == 0, result.report
    for image in doc["images"]:
        h, w = image["height"], image["width"]
        want = np.zeros((h, w), np.uint8)
        for ann in (a for a in doc["annotations"] if a["image_id"] == image["id"]):
            want[M.decode(ann["segmentation"]).astype(bool)] = ann["category_id"]
        got = np.asarray(Image.open(dst / "SegmentationClass" / f"{Path(image['file_name']).stem}.png"))
        assert np.array_equal(got, np.repeat(want[..., None], 3, axis=2))
    labelmap = (dst / "labelmap.txt").read_text().splitlines()[1:]
    assert labelmap == sorted([f"{n}:{i},{i},{i}::" for i, n in CATEGORIES] + ["background:0,0,0::"])
    assert (dst / STATE_DIR / "manifest.parquet").exists()   # Datumaro reads the folder with maskcore's state in it
    assert_datumaro_reads([dst])
