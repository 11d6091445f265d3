"""DTL jobs (``data`` + ``save_masks`` layers) as exports: validation, paths, and jobs run unchanged.

The end-to-end tests run the documentation's example job as written on a copy of the bundled
vector project named "My Project", and ``jobs/save_masks_dtl.json`` on the bundled project;
their masks are compared with the SDK drawing of tests/oracle/save_masks_reference.py.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
from pathlib import Path

import pytest

from helpers import REPO, colours
from maskcore.cli.dtl import DtlJob, is_dtl_job, load_dtl, load_dtl_file
from maskcore.errors import ConfigError
from maskcore.exec.run import EXIT_OK, run_export
from oracle.save_masks_reference import assert_same, read_outputs, sdk_save_masks

# The example of the layer's documentation (shared/spec/save_masks.md), verbatim.
DOC_JOB = [
    {"action": "data", "src": ["My Project/*"], "dst": "$data_1",
     "settings": {"classes_mapping": "default"}},
    {"action": "save_masks", "src": ["$data_1"], "dst": "My Project masks",
     "settings": {
         "masks_machine": True,
         "masks_human": True,
         "gt_machine_color": {"kiwi": [100, 100, 100], "lemon": [200, 200, 200]},
         "gt_human_color": {"kiwi": [255, 0, 0], "lemon": [27, 0, 255]}}},
]
# The documentation's "JSON view": one save_masks object.
LONE = copy.deepcopy(DOC_JOB[1]) | {"src": ["$0"], "dst": "experiment001"}


def job(**edits):
    """DOC_JOB with ``edits``: {"<layer>.<key>[.<key>]": value or None to delete}."""
    doc = copy.deepcopy(DOC_JOB)
    for path, value in edits.items():
        layer, *keys = path.split(".")
        node = doc[int(layer)]
        for k in keys[:-1]:
            node = node[k]
        if value is None:
            del node[keys[-1]]
        else:
            node[keys[-1]] = value
    return doc


# ----------------------------------------------------------------------------- validation
@pytest.mark.parametrize("doc,needle", [
    # save_masks settings (layer 1)
    (job(**{"1.settings.masks_machine": None}), "layer 1 (save_masks): settings: 'masks_machine' is required"),
    (job(**{"1.settings.masks_human": None}), "layer 1 (save_masks): settings: 'masks_human' is required"),
    (job(**{"1.settings.masks_human": "true"}), "layer 1 (save_masks): settings.masks_human: expected true or false"),
    (job(**{"1.settings.masks_machine": False, "1.settings.masks_human": False}),
     "layer 1 (save_masks): settings: at least one of 'masks_machine', 'masks_human' must be true"),
    (job(**{"1.settings.gt_machine_color": None}),
     "layer 1 (save_masks): settings: 'gt_machine_color' is required when 'masks_machine' is true"),
    (job(**{"1.settings.gt_human_color": None}),
     "layer 1 (save_masks): settings: 'gt_human_color' is required when 'masks_human' is true"),
    (job(**{"1.settings.gt_machine_color.kiwi": [-1, 0, 0]}),
     "layer 1 (save_masks): settings.gt_machine_color.kiwi: colour components must be 0..255"),
    (job(**{"1.settings.gt_human_color.lemon": [27, 0, 256]}),
     "layer 1 (save_masks): settings.gt_human_color.lemon: colour components must be 0..255"),
    (job(**{"1.settings.gt_human_color.lemon": [27, 0]}),
     "layer 1 (save_masks): settings.gt_human_color.lemon: expected [r, g, b]"),
    (job(**{"1.settings.gt_human_color.lemon": "#FF0000"}),
     "layer 1 (save_masks): settings.gt_human_color.lemon: expected [r, g, b]"),
    (job(**{"1.settings.gt_machine_color": [100, 100, 100]}),
     "layer 1 (save_masks): settings.gt_machine_color: expected an object"),
    (job(**{"1.settings.thickness_px": 2}), "layer 1 (save_masks): settings: unknown key(s) ['thickness_px']"),
    (job(**{"1.settings": "all"}), "layer 1 (save_masks): settings: expected an object"),
    # layer keys
    (job(**{"1.settings": None}), "layer 1 (save_masks): missing key(s) ['settings']"),
    (job(**{"1.dst": None}), "layer 1 (save_masks): missing key(s) ['dst']"),
    (job(**{"1.extra": 1}), "layer 1 (save_masks): unknown key(s) ['extra']"),
    (job(**{"1.src": "$data_1"}), "layer 1 (save_masks): 'src' must be a list of non-empty strings"),
    (job(**{"1.src": ["data_1"]}), "layer 1 (save_masks): 'src' must list connection names starting with '$'"),
    (job(**{"1.src": ["$other"]}), "layer 1 (save_masks): src ['$other'] does not name the data layer's dst '$data_1'"),
    (job(**{"1.dst": ""}), "layer 1 (save_masks): 'dst' must be a non-empty string"),
    # data layer (layer 0)
    (job(**{"0.settings.classes_mapping": {"kiwi": "fruit"}}),
     "layer 0 (data): settings.classes_mapping: only \"default\" is supported"),
    (job(**{"0.settings.classes_mapping": None}), "layer 0 (data): settings.classes_mapping is required"),
    (job(**{"0.settings.other": 1}), "layer 0 (data): unknown key(s) ['other'] in settings"),
    (job(**{"0.dst": "data_1"}), "layer 0 (data): 'dst' must be a connection name starting with '$'"),
    (job(**{"0.src": []}), "layer 0 (data): 'src' must name the project"),
    (job(**{"0.src": ["A/*", "B/ds"]}), "layer 0 (data): src names two projects"),
    (job(**{"0.src": ["/*"]}), "layer 0 (data): src entry '/*'"),
    # the job as a whole
    (job(**{"0.action": "flip"}), "layer 0: action 'flip' is not supported; supported actions: data, save_masks"),
    (job(**{"1.action": None}), "layer 1: 'action' is required"),
    (DOC_JOB + [copy.deepcopy(DOC_JOB[1])], "expected exactly one 'save_masks' layer, got 2"),
    (DOC_JOB[:1], "expected exactly one 'save_masks' layer, got 0"),
    ([copy.deepcopy(DOC_JOB[0])] + DOC_JOB, "expected at most one 'data' layer"),
    (DOC_JOB[:1] + ["save_masks"], "layer 1: expected an object"),
    ([], "expected a non-empty list of layers"),
    (DOC_JOB[1:], "a lone 'save_masks' layer needs the project"),
    (LONE, "a lone 'save_masks' layer needs the project"),
])
def test_validation_names_layer_and_key(doc, needle):
    with pytest.raises(ConfigError) as exc:
        load_dtl(doc, "/jobs")
    assert needle in str(exc.value), str(exc.value)


def test_deprecated_keys_are_warned_and_dropped():
    doc = job(**{"1.settings.images": True, "1.settings.annotations": False})
    seen = []
    result = load_dtl(doc, "/jobs", warn=seen.append)
    assert seen == list(result.warnings) and len(seen) == 2
    assert "layer 1 (save_masks): settings.images is deprecated" in seen[0]
    assert "settings.annotations is deprecated" in seen[1]
    assert "images" not in result.config.layout_options and "annotations" not in result.config.layout_options
    # a deprecated key does not hide other errors
    with pytest.raises(ConfigError, match="at least one"):
        load_dtl(job(**{"1.settings.images": True, "1.settings.masks_machine": False,
                        "1.settings.masks_human": False}), "/jobs")


def test_documentation_job_resolves_next_to_the_job_file():
    result = load_dtl(DOC_JOB, "/data/jobs")
    assert isinstance(result, DtlJob) and result.datasets is None and result.warnings == ()
    cfg = result.config
    assert cfg.source == "/data/jobs/My Project" and cfg.destination == "/data/jobs/My Project masks"
    assert cfg.layout == "save-masks" and cfg.layout_options == DOC_JOB[1]["settings"]
    assert load_dtl(DOC_JOB, "/data/jobs", output="s3://b/out").config.destination == "s3://b/out"


@pytest.mark.parametrize("src,project,datasets", [
    (["My Project/*"], "/j/My Project", None),
    (["My Project"], "/j/My Project", None),                       # the reference reads it as "/*"
    (["My Project/ds"], "/j/My Project", ("ds",)),
    (["P/b", "P/a/", "P/a"], "/j/P", ("a", "b")),
    (["P/a", "P/*"], "/j/P", None),
    (["../shared/P/*"], "/shared/P", None),
    (["/abs/P/ds"], "/abs/P", ("ds",)),
    (["s3://bucket/P/*"], "s3://bucket/P", None),
    (["s3://bucket/P/ds1"], "s3://bucket/P", ("ds1",)),
    (["s3://bucket"], "s3://bucket", None),
    (["proj.tar/*"], "/j/proj.tar", None),
])
def test_data_layer_sources(src, project, datasets):
    result = load_dtl(job(**{"0.src": src}), "/j")
    assert (result.config.source, result.datasets) == (project, datasets)


def test_source_argument():
    lone = load_dtl(LONE, "/j", source="s3://b/P")
    assert lone.config.source == "s3://b/P" and lone.datasets is None
    assert lone.config.destination == "/j/experiment001"
    # with a data layer: replaces its project, keeps its dataset selection
    both = load_dtl(job(**{"0.src": ["My Project/train"]}), "/j", source="/elsewhere/P")
    assert (both.config.source, both.datasets) == ("/elsewhere/P", ("train",))
    # a lone save_masks with the list form, too
    assert load_dtl(DOC_JOB[1:], "/j", source="/P").config.source == "/P"


def test_is_dtl_job():
    assert is_dtl_job(DOC_JOB) and is_dtl_job(LONE)
    assert not is_dtl_job({"source": "a", "destination": "b", "layout": "supervisely"})
    assert not is_dtl_job([]) and not is_dtl_job([{"source": "a"}]) and not is_dtl_job("x")
    assert not is_dtl_job(None)


def test_load_dtl_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="cannot read job file"):
        load_dtl_file(str(tmp_path / "missing.json"))
    (tmp_path / "bad.json").write_text("[{", encoding="utf-8")
    with pytest.raises(ConfigError, match="is not JSON"):
        load_dtl_file(str(tmp_path / "bad.json"))


# ----------------------------------------------------------------------------- end to end
def test_documentation_job_runs_unchanged(samples, tmp_path, dask_client):
    """The documented job as written; its classes (kiwi, lemon) are not in the project, so the
    machine masks are black and the human masks show the photo twice around the green column."""
    shutil.copytree(samples / "vector", tmp_path / "My Project")
    (tmp_path / "job.json").write_text(json.dumps(DOC_JOB, indent=2), encoding="utf-8")
    dtl = load_dtl_file(str(tmp_path / "job.json"))
    result = run_export(dtl.config, log=lambda m: None, client=dask_client)
    assert result.exit_code == EXIT_OK, result.report["failures"]
    out = tmp_path / "My Project masks"
    names = sorted(p.relative_to(out).as_posix() for p in out.rglob("*")
                   if p.is_file() and ".maskcore-meta" not in p.parts)
    items = sorted(os.listdir(samples / "vector" / "ds" / "img"))
    stems = [i.rsplit(".", 1)[0] for i in items]
    assert names == sorted(["meta.json"] + [f"ds/ann/{i}.json" for i in items] + [f"ds/img/{i}" for i in items]
                           + [f"ds/masks_machine/{s}.png" for s in stems]
                           + [f"ds/masks_human/{s}.png" for s in stems])
    ours = read_outputs(out, result)
    ref = sdk_save_masks(tmp_path / "My Project", DOC_JOB[1]["settings"]["gt_machine_color"],
                         DOC_JOB[1]["settings"]["gt_human_color"])
    assert_same(ours, ref, "documentation job")
    for kinds in ours.values():
        assert not kinds["machine"].any()
        w = kinds["machine"].shape[1]
        human = kinds["human"]
        assert (human[:, w] == [0, 255, 0]).all() and (human[:, :w] == human[:, w + 1:]).all()


def test_bundled_dtl_job_matches_the_layer(samples, tmp_path, dask_client):
    """jobs/save_masks_dtl.json (every class of the bundled vector project, 2000x2000 photo
    included) equals the SDK drawing, pixel for pixel."""
    path = REPO / "jobs" / "save_masks_dtl.json"
    dtl = load_dtl_file(str(path), output=str(tmp_path / "out"))
    assert Path(dtl.config.source) == samples / "vector" and dtl.datasets is None
    result = run_export(dtl.config, log=lambda m: None, client=dask_client)
    assert result.exit_code == EXIT_OK, result.report["failures"]
    settings = json.loads(path.read_text(encoding="utf-8"))[1]["settings"]
    ours = read_outputs(tmp_path / "out", result)
    assert_same(ours, sdk_save_masks(samples / "vector", settings["gt_machine_color"],
                                     settings["gt_human_color"]), "jobs/save_masks_dtl.json")
    painted = set().union(*(colours(kinds["machine"]) for kinds in ours.values()))
    assert {(1, 1, 1), (4, 4, 4)} <= painted, painted   # rectangles (cat) and polygons (dog2) drawn


def test_cli_runs_a_dtl_job_selecting_one_dataset(samples, tmp_path, cli):
    """`maskcore run job.json` on a DTL job whose data layer names one dataset exports only it."""
    project = tmp_path / "My Project"
    shutil.copytree(samples / "vector", project)
    shutil.copytree(project / "ds", project / "other")
    job = [{"action": "data", "src": ["My Project/other"], "dst": "$data_1",
            "settings": {"classes_mapping": "default"}},
           {"action": "save_masks", "src": ["$data_1"], "dst": "masks",
            "settings": {"masks_machine": True, "masks_human": False,
                         "gt_machine_color": {"cat": [9, 9, 9]}}}]
    (tmp_path / "job.json").write_text(json.dumps(job))
    proc = cli("run", tmp_path / "job.json", "--workers", "1")
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = tmp_path / "masks"
    assert sorted(p.name for p in out.iterdir() if p.is_dir() and p.name != ".maskcore-meta") == ["other"]
    report = json.loads((out / ".maskcore-meta" / "report.json").read_text())
    assert report["filtered"]["removed"]["datasets"] == len(list((project / "ds" / "ann").iterdir()))
    assert report["items"]["written"] == len(list((project / "other" / "ann").iterdir()))
