"""The command line and job specs, as a user types them. One test runs ``python -m maskcore`` in a
subprocess with the cluster it starts itself (the README's demo job); the others call the same
``main(argv)`` in-process on the session's worker processes (the ``cli`` fixture): the flags, how
they map to the run's options, the messages and the exit codes are the same code."""

from __future__ import annotations

import gc
import hashlib
import json
import shutil
import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from helpers import DATA, colours, tree
from helpers.cli import run_subprocess
from helpers.oracles import oracle
from maskcore.cli.jobspec import load_job
from maskcore.cli.main import main
from maskcore.errors import ConfigError
from maskcore.exec.run import EXIT_FATAL, EXIT_OK, EXIT_PARTIAL, EXIT_REFUSED, ExportConfig, run_export


def test_demo_job_runs_and_writes_the_layout(tmp_path):
    """The smoke test of the installed command: ``python -m maskcore`` in a new process, starting
    its own local cluster (the job's ``cluster: local``, two worker processes)."""
    proc = run_subprocess("run", "jobs/demo.yaml", "--output", tmp_path / "out", "--workers", "2")
    assert proc.returncode == EXIT_OK, proc.stderr
    out = tmp_path / "out"
    assert json.loads((out / "obj_class_to_machine_color.json").read_text()) == {
        "cat": [1, 1, 1], "dog": [2, 2, 2], "cat2": [3, 3, 3], "dog2": [4, 4, 4], "test_point": [5, 5, 5]}
    for kind in ("masks_machine", "masks_semantic_rgb", "masks_human"):
        assert sorted(p.name for p in (out / "ds" / kind).iterdir()) == [
            "cat1.png", "cat2.png", "cat3.png", "dog1.png", "dog2.png", "dog3.png"]
    assert sorted(p.name for p in (out / "ds/masks_instances/cat3").iterdir()) == [
        "cat.png", "test_point.png", "test_point_01.png"]
    report = json.loads((out / ".maskcore-meta/report.json").read_text())
    assert report["items"] == {"total": 6, "written": 6, "unchanged": 0, "failed": 0}
    manifest = pq.read_table(out / ".maskcore-meta/manifest.parquet").to_pylist()
    assert [r["item"] for r in manifest] == ["cat1.jpg", "cat2.jpg", "cat3.jpg", "dog1.jpg", "dog2.jpg", "dog3.jpg"]
    for row in manifest:  # the manifest's checksums describe the files on disk
        for o in row["outputs"]:
            assert hashlib.sha256((out / o["path"]).read_bytes()).hexdigest() == o["sha256"]


_PROCESS_PROBE = """
import gc, json, sys
from maskcore.cli.main import main
sys.argv = ["maskcore", *sys.argv[1:]]
code = main()
print(json.dumps({"code": code, "frozen": gc.get_freeze_count(), "pandas": "pandas" in sys.modules}))
"""


def test_the_command_sets_up_its_own_process_and_leaves_a_callers_alone(tmp_path, samples):
    """``main()`` reading this process's arguments (the console script, ``python -m maskcore``)
    freezes the objects of its imports for the collector and keeps pandas, which pyarrow would
    import on its first list conversion, out; the export is the same. ``main(argv)`` called in a
    caller's process changes neither."""
    oracle("pandas")  # installed: otherwise "not imported" would prove nothing
    proc = subprocess.run([sys.executable, "-c", _PROCESS_PROBE, "export", str(samples / "vector"),
                           str(tmp_path / "own"), "--workers", "1", "--in-process"],
                          capture_output=True, text=True, timeout=300)
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    assert seen["code"] == EXIT_OK, proc.stderr
    assert seen["frozen"] > 1000 and seen["pandas"] is False, seen
    frozen = gc.get_freeze_count()
    code = main(["export", str(samples / "vector"), str(tmp_path / "caller"), "--workers", "1", "--in-process"])
    assert code == EXIT_OK
    assert gc.get_freeze_count() == frozen
    assert not [f for f in sys.meta_path if type(f).__name__ == "_NoPandas"]
    assert tree(tmp_path / "own") == tree(tmp_path / "caller")


def test_same_input_same_bytes_whatever_the_partitioning(tmp_path, samples, dask_client):
    a = run_export(ExportConfig(str(samples / "instance"), str(tmp_path / "a"), items_per_partition=1),
                   log=lambda m: None, client=dask_client)
    b = run_export(ExportConfig(str(samples / "instance"), str(tmp_path / "b"), items_per_partition=5),
                   log=lambda m: None, client=dask_client)
    assert a.exit_code == b.exit_code == EXIT_OK
    assert tree(tmp_path / "a") == tree(tmp_path / "b")
    # meta + 2 colour maps, ann + img, 3 mask kinds per item, 8 objects
    assert len(tree(tmp_path / "a")) == 3 + 6 * 2 + 6 * 3 + 8


def test_broken_items_are_named_and_the_rest_exported(tmp_path, samples, cli):
    src = tmp_path / "src"
    shutil.copytree(samples / "vector", src)
    (src / "ds/ann/cat2.jpg.json").write_text("{not json")
    dog1 = json.loads((src / "ds/ann/dog1.jpg.json").read_text())
    dog1["objects"][1]["classTitle"] = "unicorn"
    (src / "ds/ann/dog1.jpg.json").write_text(json.dumps(dog1))
    (src / "ds/img/dog3.jpg").unlink()
    before = tree(src)
    proc = cli("export", src, tmp_path / "out", "--workers", "1")
    assert proc.returncode == EXIT_PARTIAL, proc.stderr
    assert "Traceback" not in proc.stderr
    report = json.loads((tmp_path / "out/.maskcore-meta/report.json").read_text())
    assert report["items"] == {"total": 6, "written": 3, "unchanged": 0, "failed": 3}
    errors = {f["item"]: f["error"] for f in report["failures"]}
    assert errors["cat2.jpg"].startswith("ds/cat2.jpg: ") and "JSON" in errors["cat2.jpg"]
    assert "ds/dog1.jpg/object 1" in errors["dog1.jpg"] and "unicorn" in errors["dog1.jpg"]
    assert "dog3.jpg" in errors["dog3.jpg"] and "missing" in errors["dog3.jpg"]
    # failed items leave no partial outputs; good items are complete; the source is untouched
    assert not (tmp_path / "out/ds/masks_machine/cat2.png").exists()
    assert not (tmp_path / "out/ds/masks_instances/dog1").exists()
    assert (tmp_path / "out/ds/masks_human/cat3.png").exists()
    assert tree(src) == before


def test_unreadable_project_and_bad_options_are_fatal(tmp_path, cli):
    proc = cli("export", str(tmp_path / "nope"), str(tmp_path / "out"))
    assert proc.returncode == EXIT_FATAL and "not found" in proc.stderr and "Traceback" not in proc.stderr
    (tmp_path / "empty").mkdir()
    proc = cli("export", str(tmp_path / "empty"), str(tmp_path / "out"))
    assert proc.returncode == EXIT_FATAL and "meta.json" in proc.stderr and "Traceback" not in proc.stderr
    proc = cli("export", "examples/sly_catsdogs/vector", str(tmp_path / "out"), "--masks", "machine,fancy")
    assert proc.returncode == 2 and "fancy" in proc.stderr  # a bad flag value is a usage error
    proc = cli("export", "examples/sly_catsdogs/vector", str(tmp_path / "out"), "--workers", "0")
    assert proc.returncode == 2


def test_destination_inside_the_source_is_refused(tmp_path, samples, cli):
    src = tmp_path / "src"
    shutil.copytree(samples / "vector", src)
    proc = cli("export", str(src), str(src / "masks"))
    assert proc.returncode == EXIT_REFUSED and "inside the source" in proc.stderr
    assert not (src / "masks").exists()


def test_job_spec_paths_are_relative_to_the_job_file(tmp_path):
    job = tmp_path / "jobs" / "j.yaml"
    job.parent.mkdir()
    job.write_text("source: ../project\ndestination: ../out\nmasks: [machine]\noptions: {thickness: 3}\n")
    cfg = load_job(str(job))
    assert cfg.source == str(tmp_path / "project") and cfg.destination == str(tmp_path / "out")
    assert cfg.layout_options == {"thickness": 3, "masks": ["machine"]}
    job.write_text("source: a\ndestination: b\nthikness: 3\n")
    with pytest.raises(ConfigError, match="thikness"):
        load_job(str(job))
    job.write_text("- just\n- a list\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_job(str(job))


def test_tar_source_gives_the_same_export_as_the_folder(tmp_path, samples, dask_client):
    tar = tmp_path / "project.tar"
    subprocess.run(["tar", "-cf", str(tar), "-C", str(samples / "vector"), "."], check=True)
    a = run_export(ExportConfig(str(samples / "vector"), str(tmp_path / "a")), log=lambda m: None, client=dask_client)
    b = run_export(ExportConfig(str(tar), str(tmp_path / "b")), log=lambda m: None, client=dask_client)
    assert a.exit_code == b.exit_code == EXIT_OK
    assert tree(tmp_path / "a") == tree(tmp_path / "b")


def test_export_flags_build_each_layout(tmp_path, samples, cli):
    """`--layout save-masks --machine-colors FILE`, `--layout cvat` (a zip by default, a folder with
    --no-archive) and `--reader`/`--images` for COCO, as a user types them."""
    colour_file = tmp_path / "machine.json"
    colour_file.write_text(json.dumps({"cat": [7, 7, 7]}))
    proc = cli("export", str(samples / "vector"), str(tmp_path / "sm"), "--layout", "save-masks",
               "--machine-colors", str(colour_file), "--workers", "1")
    assert proc.returncode == 0, proc.stderr
    machine = sorted((tmp_path / "sm" / "ds" / "masks_machine").glob("*.png"))
    values = set().union(*(colours(np.asarray(Image.open(p).convert("RGB"))) for p in machine))
    assert values == {(0, 0, 0), (7, 7, 7)}
    assert not (tmp_path / "sm" / "ds" / "masks_human").exists()
    proc = cli("export", str(samples / "vector"), str(tmp_path / "cv"), "--layout", "cvat", "--workers", "1")
    assert proc.returncode == 0, proc.stderr
    assert [p.suffix for p in (tmp_path / "cv").iterdir() if p.is_file()] == [".zip"]
    proc = cli("export", str(samples / "vector"), str(tmp_path / "cvf"), "--layout", "cvat", "--no-archive",
               "--workers", "1")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "cvf" / "labelmap.txt").is_file() and (tmp_path / "cvf" / "SegmentationObject").is_dir()
    coco = DATA / "coco_labelme"
    proc = cli("export", str(coco / "annotations.json"), str(tmp_path / "co"), "--images", str(coco),
               "--masks", "machine", "--no-images", "--workers", "1")
    assert proc.returncode == 0, proc.stderr
    assert len(list((tmp_path / "co").glob("*/masks_machine/*.png"))) == 3
