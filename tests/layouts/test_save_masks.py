"""The ``save_masks`` layout vs the DTL layer's drawing, done with the Supervisely SDK.

The reference (tests/oracle/save_masks_reference.py) is the layer's own recipe: a black canvas,
``Label.draw`` per mapped label in file order, the human map's black replaced by [1, 1, 1], the
float overlay and the green column. Labels are built with ``Label.from_json`` (no load-time crop,
as in tests/layouts/test_export_vs_sdk.py); bitmaps crossing the border are drawn clipped (the SDK raises
there), with the oracle's helper.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from helpers import colours
from helpers.oracles import oracle
from maskcore.errors import ConfigError
from maskcore.exec.run import EXIT_OK, EXIT_PARTIAL, ExportConfig, run_export
from maskcore.layouts.save_masks import SaveMasksLayout, human_picture
from oracle.make_projects import CLASS_TITLES, make_all_geometries_project, make_border_project
from oracle.save_masks_reference import GREEN, assert_same, float_overlay, read_outputs, sdk_save_masks

sly = oracle("supervisely")


def export(src, dst, client, **options):
    cfg = ExportConfig(source=str(src), destination=str(dst), layout="save_masks", layout_options=options)
    return run_export(cfg, log=lambda m: None, client=client)


def random_maps(rng, titles):
    """Two colour maps over a random subset of ``titles``: random colours, one class black in
    each map when there are enough classes, some classes unmapped."""
    maps = []
    for _ in range(2):
        chosen = [t for t in titles if rng.random() < 0.8]
        m = {t: [int(v) for v in rng.integers(0, 256, 3)] for t in chosen}
        if len(chosen) > 2:
            m[chosen[int(rng.integers(len(chosen)))]] = [0, 0, 0]
        maps.append(m)
    return maps


# ----------------------------------------------------------------------------- overlay formula
def test_human_picture_equals_the_float_formula():
    rng = np.random.default_rng(5)
    for _ in range(20):
        h, w = (int(v) for v in rng.integers(1, 40, 2))
        image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        colour = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        colour[rng.random((h, w)) < 0.4] = 0                            # black: keeps the original
        colour[rng.random((h, w)) < 0.2] = [0, 1, 0]                    # one channel set: not black
        colour[..., 1][rng.random((h, w)) < 0.1] = 0
        np.testing.assert_array_equal(human_picture(image, colour), float_overlay(image, colour))


def test_human_picture_layout_and_black_rule():
    image = np.full((2, 3, 3), 200, np.uint8)
    colour = np.zeros((2, 3, 3), np.uint8)
    colour[0, 0] = [255, 0, 0]
    colour[1, 2] = [1, 1, 1]
    pic = human_picture(image, colour)
    assert pic.shape == (2, 7, 3)
    assert (pic[:, 3] == GREEN).all()
    assert pic[0, 4].tolist() == [227, 100, 100]          # (200 + 255) // 2, 200 // 2
    assert pic[1, 6].tolist() == [100, 100, 100]          # [1,1,1]: (200 + 1) // 2 = 100
    assert pic[0, 5].tolist() == [200, 200, 200]          # black: the original


# ----------------------------------------------------------------------------- options
GOOD = {"masks_machine": True, "masks_human": True,
        "gt_machine_color": {"a": [1, 1, 1]}, "gt_human_color": {"a": [255, 0, 0]}}


@pytest.mark.parametrize("change,needle", [
    ({"masks_machine": None}, "'masks_machine' is required"),
    ({"masks_human": None}, "'masks_human' is required"),
    ({"masks_machine": 1}, "masks_machine: expected true or false"),
    ({"masks_human": "yes"}, "masks_human: expected true or false"),
    ({"masks_machine": False, "masks_human": False}, "at least one of"),
    ({"gt_machine_color": None}, "'gt_machine_color' is required when 'masks_machine' is true"),
    ({"gt_human_color": None}, "'gt_human_color' is required when 'masks_human' is true"),
    ({"gt_machine_color": [1, 2, 3]}, "gt_machine_color: expected an object"),
    ({"gt_machine_color": {"a": [1, 2]}}, "gt_machine_color.a: expected [r, g, b]"),
    ({"gt_human_color": {"a": [1, 2, 3, 4]}}, "gt_human_color.a: expected [r, g, b]"),
    ({"gt_human_color": {"a": [1.0, 2, 3]}}, "gt_human_color.a: expected [r, g, b]"),
    ({"gt_human_color": {"a": [True, 2, 3]}}, "gt_human_color.a: expected [r, g, b]"),
    ({"gt_machine_color": {"a": [-1, 0, 0]}}, "gt_machine_color.a: colour components must be 0..255"),
    ({"gt_human_color": {"a": [0, 256, 0]}}, "gt_human_color.a: colour components must be 0..255"),
    ({"colour": 1}, "unknown key(s) ['colour']"),
    ({"thickness": 0}, "thickness: expected an integer 1..1000"),
    ({"max_canvas_pixels": 0}, "max_canvas_pixels: expected a positive integer"),
])
def test_options_are_validated(change, needle):
    opts = {k: v for k, v in {**GOOD, **change}.items() if v is not None}
    with pytest.raises(ConfigError) as exc:
        SaveMasksLayout.from_options(opts)
    assert "layout 'save_masks'" in str(exc.value) and needle in str(exc.value), str(exc.value)


def test_options_accepted():
    lay = SaveMasksLayout.from_options({"masks_machine": False, "masks_human": True,
                                        "gt_human_color": {"b": [0, 0, 0], "a": [3, 2, 1]}})
    assert lay.machine_colors is None and lay.human_colors == (("a", (3, 2, 1)), ("b", (0, 0, 0)))
    assert lay.thickness == 1 and lay.needs_image
    # a colour map of a disabled kind is still checked, then unused
    lay = SaveMasksLayout.from_options({**GOOD, "masks_human": False})
    assert lay.human_colors is None
    with pytest.raises(ConfigError, match="gt_human_color.a"):
        SaveMasksLayout.from_options({**GOOD, "masks_human": False, "gt_human_color": {"a": [300, 0, 0]}})


# ----------------------------------------------------------------------------- pixels vs the SDK
REAL_MAPS = {
    # every class of the three sample projects but the human "test_point"; "dog2" machine-black
    # (it erases), "cat" and "face" (keypoints: a graph with template colours) human-black
    "machine": {"cat": [100, 100, 100], "dog": [200, 200, 200], "cat2": [10, 20, 30],
                "dog2": [0, 0, 0], "test_point": [50, 60, 70], "face": [5, 5, 5]},
    "human": {"cat": [0, 0, 0], "dog": [27, 0, 255], "cat2": [0, 255, 0], "dog2": [255, 128, 0],
              "face": [0, 0, 0]},
}


@pytest.mark.parametrize("project", ["vector", "instance", "keypoints"])
def test_real_projects_match_the_layer(project, samples, tmp_path, dask_client):
    src = tmp_path / project
    shutil.copytree(samples / project, src)
    if project != "keypoints":  # fast: no 2000x2000 photo (tests/cli/test_dtl.py exports it)
        (src / "ds" / "img" / "cat1.jpg").unlink()
        (src / "ds" / "ann" / "cat1.jpg.json").unlink()
    result = export(src, tmp_path / "out", dask_client, masks_machine=True, masks_human=True,
                    gt_machine_color=REAL_MAPS["machine"], gt_human_color=REAL_MAPS["human"])
    ref = sdk_save_masks(src, REAL_MAPS["machine"], REAL_MAPS["human"])
    failed = {(r["dataset"], r["item"]): r["error"] for r in result.manifest.to_pylist() if r["status"] != "ok"}
    if project == "keypoints":  # cat1.jpg has no image: the human mask cannot be drawn
        assert result.exit_code == EXIT_PARTIAL and list(failed) == [("ds", "cat1.jpg")]
        assert "image" in failed[("ds", "cat1.jpg")]
        ref = {k: v for k, v in ref.items() if k not in failed}
    else:
        assert result.exit_code == EXIT_OK, failed
    ours = {k: v for k, v in read_outputs(tmp_path / "out", result).items() if k not in failed}
    assert assert_same(ours, ref, project) > 0
    drawn = sum(int(v["machine"].any(axis=-1).sum()) for v in ours.values())
    assert drawn > 100, "the real labels must paint pixels"
    out = tmp_path / "out"
    assert (out / "meta.json").read_bytes() == json.dumps(
        json.loads((src / "meta.json").read_text()), indent=4).encode()
    for (ds, item) in ours:
        assert (out / ds / "ann" / f"{item}.json").read_bytes() == (src / ds / "ann" / f"{item}.json").read_bytes()
        assert (out / ds / "img" / item).read_bytes() == (src / ds / "img" / item).read_bytes()


@pytest.mark.parametrize("seed,thickness,maker", [(11, 1, "all"), (12, 1, "all"), (13, 3, "all"),
                                                  (14, 1, "border"), (15, 2, "border")])
def test_random_projects_match_the_layer(seed, thickness, maker, tmp_path, dask_client):
    """Every geometry type (graph templates, cuboid_2d, alpha masks, border bitmaps, ...) with
    random colour maps that leave classes out and map one class to black; "border" projects put
    every label on or across the image border (the SDK's load-time crop decides the pixels)."""
    rng = np.random.default_rng(seed)
    make = make_all_geometries_project if maker == "all" else make_border_project
    src = make(tmp_path / "src", seed=seed, n_items=6, size_hw=(48, 64))
    machine, human = random_maps(rng, CLASS_TITLES)
    result = export(src, tmp_path / "out", dask_client, masks_machine=True, masks_human=True,
                    gt_machine_color=machine, gt_human_color=human, thickness=thickness)
    assert result.exit_code == EXIT_OK, result.report["failures"]
    ref = sdk_save_masks(src, machine, human, thickness)
    assert assert_same(read_outputs(tmp_path / "out", result), ref, f"seed {seed}") > 0


def test_one_kind_only_and_cuboid_2d_in_class_colour(tmp_path, dask_client):
    """Machine masks alone; a cuboid_2d is drawn in its meta class colour, not the mapped one
    (the SDK's Cuboid2dTemplate), and unmapped classes leave no pixel."""
    src = make_all_geometries_project(tmp_path / "src", seed=21, n_items=2, size_hw=(48, 64),
                                      same_stem_pair=False)
    machine = {"box3d": [7, 7, 7]}
    result = export(src, tmp_path / "out", dask_client, masks_machine=True, masks_human=False,
                    gt_machine_color=machine)
    assert result.exit_code == EXIT_OK
    ours = read_outputs(tmp_path / "out", result)
    assert all(set(v) == {"machine"} for v in ours.values())
    assert not any((tmp_path / "out").rglob("masks_human"))
    assert_same(ours, sdk_save_masks(src, machine, None), "machine only")
    painted = set().union(*(colours(v["machine"]) for v in ours.values()))
    assert painted == {(0, 0, 0), (120, 60, 200)}, painted   # box3d's class colour in make_projects
