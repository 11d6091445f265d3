"""The Python API (maskcore.export, open_project, masks, rasterize, ExportConfig).

README's Python section and the API's docstring examples run here as written. ``export`` gives the
command line's bytes in-process and on a real Dask cluster; ``project.masks`` gives the exported
PNGs' pixels; ``rasterize`` matches OpenCV and pycocotools on random polygons.
"""

from __future__ import annotations

import doctest
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import maskcore
from maskcore.cli.main import main as cli_main
from maskcore.errors import ConfigError, ItemError

REPO = Path(__file__).resolve().parents[1]


def _outputs(result) -> dict[str, str]:
    return {o["path"]: o["sha256"] for row in result.manifest.to_pylist() for o in row["outputs"]}


@pytest.fixture
def in_repo_copy(tmp_path, monkeypatch):
    """A working folder holding the bundled examples (README paths are relative to the checkout)."""
    (tmp_path / "examples").symlink_to(REPO / "examples")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_readme_python_section_runs_as_written(in_repo_copy):
    text = (REPO / "README.md").read_text()
    section = text[text.index("## Python"):text.index("## Command line")]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert blocks
    for block in blocks:
        exec(compile(block, "README.md", "exec"), {"__name__": "readme"})
    assert (in_repo_copy / "out" / "py" / "ds" / "masks_machine").is_dir()


def test_docstring_examples_run(in_repo_copy):
    import maskcore.api as api

    finder, runner = doctest.DocTestFinder(), doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    tests = finder.find(api, globs={"maskcore": maskcore, "tmp": in_repo_copy})
    assert sum(len(t.examples) for t in tests) >= 8
    for test in tests:
        runner.run(test)
    assert runner.failures == 0, "a docstring example of maskcore.api gives another result"


def test_export_gives_the_cli_bytes_in_process_and_on_a_cluster(samples, tmp_path, dask_client):
    src = samples / "vector"
    assert cli_main(["export", str(src), str(tmp_path / "cli"), "--masks", "machine,instance,human"]) == 0
    cli = {p.relative_to(tmp_path / "cli").as_posix(): p.read_bytes()
           for p in (tmp_path / "cli").rglob("*") if p.is_file() and ".maskcore-meta" not in p.parts}
    here = maskcore.export(src, tmp_path / "here", masks=["machine", "instance", "human"])
    there = maskcore.export(src, tmp_path / "there", masks=["machine", "instance", "human"], client=dask_client)
    assert here.report["cluster"]["kind"] == "inprocess" and there.report["cluster"]["kind"] == "client"
    assert _outputs(here) == _outputs(there)
    for root in (tmp_path / "here", tmp_path / "there"):
        files = {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*")
                 if p.is_file() and ".maskcore-meta" not in p.parts}
        assert files == cli


def test_masks_in_memory_equal_the_exported_pngs(samples, tmp_path):
    for name in ("vector", "instance", "keypoints"):
        src = samples / name
        result = maskcore.export(src, tmp_path / name, cluster="inprocess")
        project = maskcore.open_project(src)
        rows = {(r["dataset"], r["item"]): r for r in result.manifest.to_pylist()}
        checked = 0
        for item in project.items():
            row = rows[(item.dataset, item.name)]
            if row["status"] != "ok":  # keypoints/cat1.jpg has no image: no preview, as the export says
                with pytest.raises(ItemError, match="image"):
                    project.masks(item, kinds=("human",))
                continue
            m = project.masks(item, kinds=("machine", "semantic", "human", "instance"))
            files = {o["path"].split("/")[-2] if "masks_instances" not in o["path"] else "instances": o["path"]
                     for o in row["outputs"]}
            png = lambda p: np.asarray(Image.open(tmp_path / name / p))  # noqa: E731
            assert (png(files["masks_machine"]) == m.machine).all()
            assert (png(files["masks_semantic_rgb"]) == m.semantic).all()
            assert (png(files["masks_human"]) == m.human).all()
            inst = sorted(o["path"] for o in row["outputs"] if "/masks_instances/" in o["path"])
            assert len(inst) == m.instances.shape[0] == len(m.classes) == len(m.object_ids)
            exported = {tuple(np.flatnonzero(png(p))) for p in inst}
            assert exported == {tuple(np.flatnonzero(a)) for a in m.instances}
            checked += 1
        assert checked >= 5


SAVE_MASKS_OPTIONS = {"masks_machine": True, "masks_human": True,
                      "gt_machine_color": {"cat": [1, 1, 1], "dog": [2, 2, 2], "cat2": [0, 0, 0]},
                      "gt_human_color": {"cat": [255, 0, 0], "dog": [27, 0, 255], "test_point": [0, 255, 0]}}
# layout -> (options, {kind: the folder the export writes that kind's PNGs to})
DRAWING_LAYOUTS = {
    "cvat": ({"crop": "sdk"}, {"class": "SegmentationClass", "object": "SegmentationObject"}),
    "isahit": ({"name": "isahit_out", "thickness": 3}, {"mask": "isahit_out"}),
    "save-masks": (SAVE_MASKS_OPTIONS, {"machine": "masks_machine", "human": "masks_human"}),
}


@pytest.mark.parametrize("layout", sorted(DRAWING_LAYOUTS))
def test_masks_in_memory_equal_the_exported_pngs_in_every_layout(layout, samples, tmp_path):
    options, folders = DRAWING_LAYOUTS[layout]
    sources = [samples / "vector", samples / "keypoints", REPO / "tests/data/coco_labelme/annotations.json"]
    checked = 0
    for k, src in enumerate(sources):
        if layout == "save-masks" and src.suffix == ".json":
            continue  # the DTL layer reads Supervisely projects
        out = tmp_path / str(k)
        result = maskcore.export(src, out, layout=layout, options=options, archive=False, cluster="inprocess")
        project = maskcore.open_project(src)
        rows = {(r["dataset"], r["item"]): r for r in result.manifest.to_pylist()}
        for item in project.items():
            row = rows[(item.dataset, item.name)]
            pngs = {kind: [o["path"] for o in row["outputs"] if f"{folder}/" in o["path"]]
                    for kind, folder in folders.items()}
            if row["status"] != "ok":
                with pytest.raises(ItemError):
                    project.masks(item, layout=layout, options=options)
                continue
            m = project.masks(item, layout=layout, options=options)
            assert {k for k in folders if pngs[k]} <= set(m.arrays) <= set(folders)
            for kind, paths in pngs.items():
                if not paths:  # cvat writes no masks for an item without area shapes
                    continue
                exported = np.asarray(Image.open(out / paths[0]).convert("RGB"))
                assert exported.shape == m[kind].shape and (exported == m[kind]).all(), (layout, item, kind)
                checked += 1
    assert checked >= 8


def test_export_config_is_immutable_validated_and_has_the_cli_defaults(tmp_path, samples):
    cfg = maskcore.ExportConfig(samples / "vector", tmp_path / "o")
    assert cfg.reader == "auto" and cfg.archive is None and isinstance(cfg.source, str)
    with pytest.raises(AttributeError):
        cfg.reader = "coco"
    assert maskcore.ExportConfig("a", "b", layout="cvat").archives is True
    assert maskcore.ExportConfig("a", "b", layout="cvat", archive=False).archives is False
    assert maskcore.ExportConfig("a", "b", part_size=10).archives is True
    for bad, needle in [({"layout": "nope"}, "unknown layout"), ({"reader": "nope"}, "reader"),
                        ({"workers": 0}, "workers"), ({"archive_format": "rar"}, "archive_format"),
                        ({"layout_options": []}, "layout_options")]:
        with pytest.raises(ConfigError, match=needle):
            maskcore.ExportConfig("a", "b", **bad)
    options = {"masks": "machine"}
    cfg = maskcore.ExportConfig(samples / "vector", tmp_path / "o", layout_options=options)
    options["masks"] = "human"
    before = repr(cfg)
    maskcore.export(config=cfg)
    assert repr(cfg) == before and cfg.layout_options == {"masks": "machine"}


def test_coco_file_is_detected_and_cvat_writes_a_zip(tmp_path):
    coco = REPO / "tests" / "data" / "coco_labelme" / "annotations.json"
    result = maskcore.export(coco, tmp_path / "o", layout="cvat")
    assert result.exit_code == 0 and result.report["archive"]["format"] == "zip"
    # named after the folder holding the JSON (issue 16 item 9)
    assert [f["part"] for f in result.report["archive"]["files"]] == ["coco_labelme.zip"]


def test_no_profile_file_or_variable_is_read_unless_a_profile_is_named(samples, tmp_path, monkeypatch):
    (tmp_path / "cluster.yaml").write_text("default: broken\nprofiles: {broken: {kind: nonsense}}\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MASKCORE_CLUSTER", "broken")
    monkeypatch.setenv("MASKCORE_CLUSTER_FILE", str(tmp_path / "cluster.yaml"))
    assert maskcore.export(samples / "vector", tmp_path / "o").exit_code == 0
    with pytest.raises(ConfigError, match="nonsense"):
        maskcore.export(samples / "vector", tmp_path / "o2", cluster="broken")


def test_a_script_without_a_main_guard_exports(samples, tmp_path):
    script = f"import maskcore\nr = maskcore.export({str(samples / 'vector')!r}, {str(tmp_path / 'o')!r})\n" \
             "print(r.exit_code, r.report['cluster']['kind'])\n"
    (tmp_path / "s.py").write_text(script)
    proc = subprocess.run([sys.executable, str(tmp_path / "s.py")], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert proc.returncode == 0 and proc.stdout.split() == ["0", "inprocess"], proc.stderr[-2000:]


def test_rasterize_matches_opencv_and_pycocotools_on_random_polygons():
    cv2 = pytest.importorskip("cv2")
    mask_api = pytest.importorskip("pycocotools.mask")
    rng = np.random.default_rng(3)
    for _ in range(300):
        h, w = (int(v) for v in rng.integers(5, 60, 2))
        n = int(rng.integers(3, 9))
        pts = rng.uniform(-5, max(h, w) + 5, (n, 2))
        ours = maskcore.rasterize([pts], (h, w), values=[1])
        ref = np.zeros((h, w), np.uint8)
        cv2.fillPoly(ref, [np.floor(pts).astype(np.int32)], 1)
        assert (ours == ref).all()
        coco = mask_api.decode(mask_api.merge(mask_api.frPyObjects([pts.ravel().tolist()], h, w)))
        assert (maskcore.rasterize([pts], (h, w), rule="coco", values=[1]) == coco).all()


def test_rasterize_paints_in_order_with_values_and_holes():
    square = [(0, 0), (9, 0), (9, 9), (0, 9)]
    hole = [(3, 3), (6, 3), (6, 6), (3, 6)]
    out = maskcore.rasterize([[square, hole], [(0, 0), (2, 0), (0, 2)]], (10, 10), values=[7, 9])
    assert out[5, 5] == 0 and out[0, 0] == 9 and out[9, 9] == 7
    with pytest.raises(ValueError, match="values"):
        maskcore.rasterize([square], (10, 10), values=[1, 2])


def test_a_destination_inside_the_image_folder_of_a_coco_source_is_refused(tmp_path):
    import shutil

    from maskcore.errors import RefusedError

    shutil.copytree(REPO / "tests" / "data" / "coco_labelme", tmp_path / "coco")
    before = sorted(p.name for p in (tmp_path / "coco").iterdir())
    with pytest.raises(RefusedError, match="inside the source's image folder"):
        maskcore.export(tmp_path / "coco" / "annotations.json", tmp_path / "coco" / "masks")
    (tmp_path / "imgs").mkdir()
    with pytest.raises(RefusedError, match="image folder"):
        maskcore.export(tmp_path / "coco" / "annotations.json", tmp_path / "imgs" / "out", images=tmp_path / "imgs")
    assert sorted(p.name for p in (tmp_path / "coco").iterdir()) == before
    assert maskcore.export(tmp_path / "coco" / "annotations.json", tmp_path / "out").exit_code == 0


def test_relative_paths_are_made_absolute_on_the_driver(samples, tmp_path, monkeypatch):
    """Workers started elsewhere resolve a relative path against their own folder: the driver
    sends absolute ones."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "proj").symlink_to(samples / "vector")
    result = maskcore.export("proj", "out/x", masks=["machine"])
    assert result.report["source"] == str(tmp_path / "proj")
    assert result.report["destination"] == str(tmp_path / "out" / "x")
    assert (tmp_path / "out" / "x" / "ds" / "masks_machine").is_dir()


def test_a_cluster_that_cannot_start_leaves_no_project_files(samples, tmp_path):
    profiles = tmp_path / "profiles.yaml"
    profiles.write_text("profiles:\n  nowhere:\n    kind: address\n    scheduler-address: tcp://127.0.0.1:9\n"
                        "    distributed: {comm: {timeouts: {connect: 2s}}}\n")
    with pytest.raises(ConfigError, match="expected a Dask scheduler"):
        maskcore.export(samples / "vector", tmp_path / "o", cluster="nowhere", cluster_file=str(profiles))
    written = [p.relative_to(tmp_path / "o").as_posix() for p in (tmp_path / "o").rglob("*") if p.is_file()]
    assert not [p for p in written if not p.startswith(".maskcore-meta/")], written
