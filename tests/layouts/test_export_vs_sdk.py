"""End to end: maskcore's Supervisely layout vs what the Supervisely SDK draws (test-only oracle).

The export runs on real Dask worker processes; every mask kind of every item is decoded from the
written PNG and compared with the SDK's drawing, pixel for pixel.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from helpers import DATA
from helpers.oracles import oracle
from maskcore.exec.run import EXIT_OK, ExportConfig, run_export
from oracle.make_projects import make_all_geometries_project, make_border_project
from oracle.sly_reference import machine_color_map, render_item, render_reference

sly = oracle("supervisely")


def _export(src, dst, client, **options):
    cfg = ExportConfig(source=str(src), destination=str(dst),
                       layout_options={"masks": "machine,semantic,human,instance", **options})
    return run_export(cfg, log=lambda m: None, client=client)


def _read_png(path):
    with Image.open(path) as im:
        return np.asarray(im)


def _ours(dst, result):
    """{(dataset, item): {kind: array, "instances": [(name, array)]}} from the manifest."""
    out = {}
    for row in result.manifest.to_pylist():
        kinds = {"instances": []}
        for o in row["outputs"]:
            folder = o["path"].split("/")[-2] if "/masks_instances/" not in o["path"] else None
            if "/masks_instances/" in o["path"]:
                kinds["instances"].append((o["path"].rsplit("/", 1)[1], _read_png(dst / o["path"])))
            elif folder == "masks_machine":
                kinds["machine"] = _read_png(dst / o["path"])
            elif folder == "masks_semantic_rgb":
                kinds["semantic"] = _read_png(dst / o["path"])
            elif folder == "masks_human":
                kinds["human"] = _read_png(dst / o["path"])
        out[(row["dataset"], row["item"])] = kinds
    return out


def _assert_same(ours, ref, where):
    for kind in ("machine", "semantic", "human"):
        if kind not in ref:
            continue
        a, b = ours[kind], ref[kind]
        assert a.shape == b.shape, f"{where} {kind}: shape {a.shape} vs reference {b.shape}"
        n = int(np.any(a != b, axis=-1).sum() if a.ndim == 3 else (a != b).sum())
        assert n == 0, f"{where} {kind}: {n} pixels differ from the SDK"
    names = [n for n, _ in ref["instances"]]
    assert [n for n, _ in ours["instances"]] == names, f"{where}: instance file names"
    for (name, a), (_, b) in zip(ours["instances"], ref["instances"]):
        assert (a != b).sum() == 0, f"{where} instance {name}: pixels differ from the SDK"


@pytest.mark.parametrize("project", ["vector", "instance", "keypoints"])
def test_real_projects_match_the_sdk(project, samples, tmp_path, dask_client):
    src = samples / project
    result = _export(src, tmp_path / "out", dask_client)
    ref = render_reference(src, thickness=2)
    ours = _ours(tmp_path / "out", result)
    failed = {(r["dataset"], r["item"]): r["error"] for r in result.manifest.to_pylist() if r["status"] != "ok"}
    for key, ref_item in ref.items():
        if key in failed:
            # keypoints/cat1.jpg has no image: the human preview cannot be drawn and the item is
            # reported; everything else must match.
            assert "human" not in ref_item and "image" in failed[key], failed[key]
            continue
        _assert_same(ours[key], ref_item, f"{project}/{key}")
    assert len(ours) == len(ref)


def _uncropped_reference(project_dir, thickness):
    """The SDK's drawing of every label as annotated, without its load-time crop: what option
    ``crop=none`` promises.

    ``Annotation.from_json`` crops labels to the image with shapely before drawing (documented in
    docs/reference-notes.md); labels are therefore built one by one with ``Label.from_json``
    (which does not crop).
    """
    project = sly.Project(str(project_dir), sly.OpenMode.READ)
    colors = machine_color_map(project.meta)
    out = {}
    for dataset in project:
        for item in dataset:
            paths = dataset.get_item_paths(item)
            obj = json.loads(open(paths.ann_path, encoding="utf-8").read())
            ann = sly.Annotation((obj["size"]["height"], obj["size"]["width"]))
            ann._labels = [sly.Label.from_json(o, project.meta) for o in obj["objects"]]  # no crop
            image = sly.image.read(paths.img_path)
            out[(dataset.name, item)] = render_item(ann, image, colors, thickness=thickness)
    return out


@pytest.mark.parametrize("seed,thickness", [(1, 2), (2, 1), (3, 3), (4, 6)])
def test_every_geometry_matches_sdk_drawing(seed, thickness, tmp_path, dask_client):
    """Random projects with every geometry (holes, self-intersections, off-image vertices,
    border-crossing bitmaps, graphs, cuboids, any-shape classes, same-stem items, nesting) give the
    app's masks: the SDK's load-time crop included (the default, option crop=sdk)."""
    src = make_all_geometries_project(tmp_path / "src", seed=seed, n_items=6, size_hw=(48, 64))
    result = _export(src, tmp_path / "out", dask_client, thickness=thickness)
    assert result.exit_code == EXIT_OK, result.report["failures"]
    ours = _ours(tmp_path / "out", result)
    ref = render_reference(src, thickness=thickness)
    assert set(ours) == set(ref)
    for key in sorted(ref):
        _assert_same(ours[key], ref[key], f"seed {seed} {key}")


@pytest.mark.parametrize("percent", [7, 29, 33, 50, 70, 99, 150])
def test_human_resize_matches_the_app(percent, samples, tmp_path, dask_client):
    """``human_resize_percent`` gives the app's preview: ``cv2.resize`` (INTER_AREA) of the side-by-side
    preview to ``int(side * (P / 100))``, for shrinking by whole and fractional factors and enlarging."""
    src = samples / "vector"
    result = _export(src, tmp_path / "out", dask_client, masks="human", human_resize_percent=percent)
    assert result.exit_code == EXIT_OK, result.report["failures"]
    ref = render_reference(src, thickness=2, human_resize_percent=percent)
    ours = _ours(tmp_path / "out", result)
    assert set(ours) == set(ref)
    for key in sorted(ref):
        a, b = ours[key]["human"], ref[key]["human"]
        assert a.shape == b.shape, f"{percent}% {key}: shape {a.shape} vs the app's {b.shape}"
        assert int(np.any(a != b, axis=-1).sum()) == 0, f"{percent}% {key}: pixels differ from the app"


def test_human_resize_to_nothing_fails_the_item_by_name(tmp_path, dask_client):
    """The app's cv2.resize raises on a 0-pixel side; maskcore fails that item, named, and goes on."""
    src = make_all_geometries_project(tmp_path / "src", seed=5, n_items=2, size_hw=(48, 64))
    result = _export(src, tmp_path / "out", dask_client, masks="human", human_resize_percent=1)
    failed = [r for r in result.manifest.to_pylist() if r["status"] != "ok"]
    assert len(failed) == 4
    assert all("human_resize_percent 1" in r["error"] and "would become 1x0 pixels" in r["error"] for r in failed)
    assert result.exit_code != EXIT_OK


@pytest.mark.parametrize("seed,thickness", [(1, 2), (3, 3)])
def test_crop_none_draws_the_annotated_geometry(seed, thickness, tmp_path, dask_client):
    """Option crop=none: every label as annotated, clipped while drawing (no load-time crop)."""
    src = make_all_geometries_project(tmp_path / "src", seed=seed, n_items=6, size_hw=(48, 64))
    result = _export(src, tmp_path / "out", dask_client, thickness=thickness, crop="none")
    assert result.exit_code == EXIT_OK, result.report["failures"]
    ours = _ours(tmp_path / "out", result)
    ref = _uncropped_reference(src, thickness)
    assert set(ours) == set(ref)
    for key in sorted(ref):
        _assert_same(ours[key], ref[key], f"seed {seed} {key}")


@settings(max_examples=6, deadline=None, suppress_health_check=list(HealthCheck))
@given(seed=st.integers(0, 2**32 - 1), thickness=st.sampled_from([1, 2, 3]),
       size_hw=st.sampled_from([(40, 56), (31, 17), (64, 64)]))
def test_border_labels_match_the_app(seed, thickness, size_hw, tmp_path_factory, dask_client):
    """Labels on and across every border (vertices at exactly W or H, far outside, bow-ties, holes,
    bitmaps over each side, points and graph nodes off the image): every kind, every file, as the
    app draws them after the SDK's load-time crop (split labels are separate instances)."""
    tmp = tmp_path_factory.mktemp("border")
    src = make_border_project(tmp / "src", seed=seed, n_items=8, size_hw=size_hw)
    result = _export(src, tmp / "out", dask_client, thickness=thickness)
    assert result.exit_code == EXIT_OK, result.report["failures"]
    ours, ref = _ours(tmp / "out", result), render_reference(src, thickness=thickness)
    assert set(ours) == set(ref)
    for key in sorted(ref):
        _assert_same(ours[key], ref[key], f"seed {seed} {key}")


def _facade_sly_project(root, facade_dir, n_images=4):
    """The facade photos' COCO polygons as a Supervisely project with integer vertices, as converters
    write them (``round``): annotators dragged many vertices to the edge, so x == width happens."""
    coco = json.loads((facade_dir / "_annotations.coco.json").read_text())
    names = {p.name for p in facade_dir.glob("*.jpg")}
    images = [im for im in coco["images"] if im["file_name"] in names][:n_images]
    cats = {c["id"]: c["name"] for c in coco["categories"]}
    titles = sorted(set(cats.values()))
    palette = [[(37 * i) % 256, (91 * i) % 256, (157 * i) % 256] for i in range(1, len(titles) + 1)]
    meta = {"classes": [{"title": t, "shape": "polygon", "color": "#{:02X}{:02X}{:02X}".format(*c),
                         "geometry_config": {}} for t, c in zip(titles, palette)], "tags": []}
    (root / "ds" / "img").mkdir(parents=True)
    (root / "ds" / "ann").mkdir()
    (root / "meta.json").write_text(json.dumps(meta))
    for im in images:
        objects = []
        for a in coco["annotations"]:
            if a["image_id"] != im["id"] or not isinstance(a["segmentation"], list):
                continue
            for ring in a["segmentation"]:
                xy = [[round(v) for v in ring[i:i + 2]] for i in range(0, len(ring) - 1, 2)]
                objects.append({"classTitle": cats[a["category_id"]], "geometryType": "polygon", "tags": [],
                                "points": {"exterior": xy, "interior": []}})
        ann = {"size": {"height": im["height"], "width": im["width"]}, "tags": [], "objects": objects}
        (root / "ds" / "ann" / f"{im['file_name']}.json").write_text(json.dumps(ann))
        (root / "ds" / "img" / im["file_name"]).write_bytes((facade_dir / im["file_name"]).read_bytes())
    return root


def test_facade_border_polygons_match_the_app(tmp_path, dask_client):
    """Real photos whose polygons touch the border (vertices at x == 1024): every kind, every file."""

    facade = DATA / "facade"
    src = _facade_sly_project(tmp_path / "src", facade)
    on_edge = sum(1 for f in (src / "ds" / "ann").iterdir()
                  for o in json.loads(f.read_text())["objects"]
                  if any(x >= 1024 or y >= 1024 for x, y in o["points"]["exterior"]))
    assert on_edge > 0, "the fixture must hold polygons reaching x == W or y == H"
    result = _export(src, tmp_path / "out", dask_client)
    assert result.exit_code == EXIT_OK, result.report["failures"]
    ours, ref = _ours(tmp_path / "out", result), render_reference(src, thickness=2)
    assert set(ours) == set(ref)
    for key in sorted(ref):
        _assert_same(ours[key], ref[key], f"facade {key}")
