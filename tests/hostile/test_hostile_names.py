"""Hostile names (items, datasets, classes): every output stays inside the destination, names are
made safe deterministically, nothing overwrites anything, and the manifest maps each item to its
output names (out_dir, out_name, mask_stem)."""

from __future__ import annotations

import itertools
import json
import os
import shutil
from pathlib import Path

import fsspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from maskcore.exec.plan import partitions, plan_partitions
from maskcore.exec.run import EXIT_OK, ExportConfig, run_export
from maskcore.exec.task import TaskSpec, run_partition
from maskcore.io.sinks import get_sink
from maskcore.layouts import get_layout
from maskcore.readers.supervisely import SuperviselySource

from .projects import META, ann, files_under, long, polygon, rgb_png, snapshot, write_project

IMG = rgb_png(6, 7, seed=1)
HOSTILE_CLASSES = ["../../evil", "a/b", "a_b", "cat", "Cat", "cat_01", "nul\x00", "..", ".",
                   "back\\slash", "x" * 300, "ctl\x1b[0m\x85"]
META_HOSTILE = {**META, "classes": META["classes"] + [
    {"title": t, "shape": "polygon", "color": "#102030"} for t in HOSTILE_CLASSES]}
DATASETS = ["DS", "ds", "obj_class_to_machine_color.json", ".maskcore", ".maskcore-meta", "a\\b", "a_b", "tab\tds",
            "...", "top/child", "top/Child", "top/x\\y"]
ITEMS = ["..jpg", "...", "-rf.png", "back\\slash.png", "tab\tname.png", "new\nline.png", "A.png",
         "a.png", "a.PNG", "x" * 245 + ".png", "\u732b.png", "%2e%2e.png", "c1\x85.png", "cat.png"]


def _annotation() -> dict:
    """One polygon of every hostile class, and the second "cat" that must not overwrite "cat_01"."""
    pts = [(0, 0), (5, 0), (2, 4)]
    return ann(6, 7, [polygon(t, pts) for t in HOSTILE_CLASSES] + [polygon("cat", pts)])


@pytest.fixture(scope="module")
def exported(tmp_path_factory, dask_client):
    base = tmp_path_factory.mktemp("names")
    items = {(d, i): (_annotation(), IMG) for d in DATASETS for i in ITEMS}
    src = write_project(base / "src", items, META_HOSTILE)
    before = snapshot(base)
    runs = [run_export(ExportConfig(str(src), str(base / name), items_per_partition=7),
                       log=lambda m: None, client=dask_client) for name in ("out", "again")]
    return base, before, runs


def test_every_item_exports_and_nothing_is_overwritten(exported):
    base, _, (result, _) = exported
    assert result.exit_code == EXIT_OK, result.report["failures"][:3]
    rows = result.manifest.to_pylist()
    assert len(rows) == len(DATASETS) * len(ITEMS)
    paths = [o["path"] for r in rows for o in r["outputs"]]
    per_item = 2 + 3 + len(HOSTILE_CLASSES) + 1
    assert all(len(r["outputs"]) == per_item for r in rows)
    assert len({p.casefold() for p in paths}) == len(paths)   # unique, even ignoring case
    assert set(paths) == files_under(base / "out") - {
        "meta.json", "obj_class_to_machine_color.json", "obj_class_to_semantic_color.json"}


def test_outputs_stay_inside_the_destination(exported):
    base, before, _ = exported
    after = snapshot(base)
    changed = {p for p in after if before.get(p) != after[p]}
    dests = (str(base / "out") + "/", str(base / "again") + "/")
    assert changed and all(p.startswith(dests) for p in changed)
    for root, dirs, files in os.walk(base / "out"):
        for n in dirs + files:
            p = Path(root, n)
            assert not p.is_symlink() and p.resolve().is_relative_to((base / "out").resolve())
            assert len(n.encode()) <= 255 and not any(ord(c) < 32 or 0x7F <= ord(c) <= 0x9F for c in n)


def test_reserved_and_colliding_dataset_names_get_their_own_folders(exported):
    base, _, (result, _) = exported
    out_dirs = {r["dataset"]: r["out_dir"] for r in result.manifest.to_pylist()}
    assert len({d.casefold() for d in out_dirs.values()}) == len(DATASETS)
    assert out_dirs["obj_class_to_machine_color.json"] != "obj_class_to_machine_color.json"
    assert out_dirs[".maskcore"].split("/")[0] != ".maskcore"          # the old state folder (exec/legacy)
    assert out_dirs[".maskcore-meta"].split("/")[0] != ".maskcore-meta"
    assert out_dirs["top/child"].startswith("top/datasets/")
    assert json.loads((base / "out/meta.json").read_bytes()) == META_HOSTILE


def test_instance_names_follow_the_free_name_rule(exported):
    _, _, (result, _) = exported
    row = next(r for r in result.manifest.to_pylist() if r["item"] == "cat.png")
    names = [o["path"].rsplit("/", 1)[1] for o in row["outputs"] if "/masks_instances/" in o["path"]]
    assert names[3:6] == ["cat.png", "Cat_01.png", "cat_01_01.png"]  # ignoring case, as on macOS
    assert names[-1] == "cat_02.png"  # the second "cat": "cat_01" is taken by the class "cat_01"
    assert names[0] == ".._.._evil.png" and names[1] == "a_b.png" and names[2] == "a_b_01.png"


def test_names_are_deterministic_and_mapped_in_the_manifest(exported):
    _, _, (first, second) = exported
    cols = ["dataset", "item", "out_dir", "out_name", "mask_stem", "outputs"]
    assert first.manifest.select(cols).equals(second.manifest.select(cols))
    for r in first.manifest.to_pylist():
        assert f"{r['out_dir']}/img/{r['out_name']}" in {o["path"] for o in r["outputs"]}
        assert f"{r['out_dir']}/masks_machine/{r['mask_stem']}.png" in {o["path"] for o in r["outputs"]}


# --- property: random hostile names, exported in process into a real folder -------------------

_CHARS = st.characters(codec="utf-8", exclude_characters="/")
_NAME = st.one_of(
    st.text(_CHARS, min_size=1, max_size=12),
    st.sampled_from(["..", ".", "...", "..\\..", "\\", "\x00", "CON", "a.png", "A.PNG", " "]),
    st.builds(lambda s, n: s * n, st.sampled_from(["x", "\u732b", "\\"]), st.integers(60, 120)),
).filter(lambda n: n not in (".", ".."))  # no listing (folder or tar) yields these names
_RUN = itertools.count()


def _export_in_process(tmp: Path, datasets, items, classes) -> tuple[Path, list[dict]]:
    """A project on fsspec's memory filesystem, planned and run as the Dask tasks run."""
    k = next(_RUN)
    mem, root = fsspec.filesystem("memory"), f"/hostile-names-{os.getpid()}-{k}"
    meta = {"classes": [{"title": t, "shape": "polygon", "color": "#FF0000"} for t in classes]}
    body = json.dumps(ann(4, 5, [polygon(t, [(0, 0), (3, 0), (1, 3)]) for t in classes])).encode()
    try:
        mem.pipe(f"{root}/meta.json", json.dumps(meta).encode())
        for d in datasets:
            folder = "/datasets/".join(d)
            for i in items:
                mem.pipe(f"{root}/{folder}/ann/{i}.json", body)
                mem.pipe(f"{root}/{folder}/img/{i}", IMG)
        source = SuperviselySource.from_path(f"memory://{root}")
        dst = tmp / f"out{k}"
        spec = TaskSpec(source=source, sink=get_sink("dir", str(dst)), meta=source.read_meta(),
                        layout=get_layout("supervisely", {"masks": "machine,instance"}))
        plan = plan_partitions(source.list_items(), workers=1)
        rows = [r for part in partitions(plan) for r in run_partition(spec, part).to_pylist()]
    finally:
        mem.rm(root, recursive=True)
    return dst, rows


def _check_random_names(tmp_path_factory, datasets, items, classes):
    tmp = tmp_path_factory.getbasetemp() / "random-names"
    tmp.mkdir(exist_ok=True)
    before = snapshot(tmp)
    dst, rows = _export_in_process(tmp, datasets, items, classes)
    assert all(r["status"] == "ok" for r in rows), [r["error"] for r in rows if r["error"]][:2]
    listed = [o["path"] for r in rows for o in r["outputs"]]
    assert len({p.casefold() for p in listed}) == len(listed)
    assert set(listed) == files_under(dst)
    new = set(snapshot(tmp)) - set(before)
    assert all(p.startswith(str(dst) + "/") for p in new)
    shutil.rmtree(dst)  # keep the folder small: every example walks it


_PATHS = st.lists(st.lists(_NAME, min_size=1, max_size=2), min_size=1, max_size=3,
                  unique_by=lambda d: "/".join(d))
_ITEMS = st.lists(_NAME, min_size=1, max_size=4, unique=True)
_CLASSES = st.lists(_NAME, min_size=1, max_size=4, unique=True)
_SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                       HealthCheck.too_slow])


@settings(max_examples=30, derandomize=True, **_SETTINGS)
@given(datasets=_PATHS, items=_ITEMS, classes=_CLASSES)
def test_random_hostile_names_never_escape(tmp_path_factory, datasets, items, classes):
    _check_random_names(tmp_path_factory, datasets, items, classes)


@long
@settings(max_examples=2000, **_SETTINGS)
@given(datasets=_PATHS, items=_ITEMS, classes=_CLASSES)
def test_random_hostile_names_never_escape_long(tmp_path_factory, datasets, items, classes):
    _check_random_names(tmp_path_factory, datasets, items, classes)


WINDOWS_HOSTILE = ["CON", "con.png", "Aux.jpg", "NUL", "com1.png", "LPT9", "lpt\u00b9.png", "a:b.png",
                   'q"uote.png', "p|ipe.png", "ask?.png", "star*.png", "<lt>.png", "dot.", "space ",
                   "dots...", "console.png", "cone.png"]


@pytest.mark.parametrize("name", WINDOWS_HOSTILE)
def test_names_are_portable_to_windows(name):
    from maskcore.paths import safe_component
    out = safe_component(name)
    assert not set('<>:"|?*/\\') & set(out)
    assert not out.endswith((".", " "))
    device = out.split(".")[0].upper()
    assert device not in {"CON", "PRN", "AUX", "NUL"} | {f"{p}{d}" for p in ("COM", "LPT")
                                                          for d in "0123456789\u00b9\u00b2\u00b3"}
    assert safe_component(name) == out  # deterministic
    if name.split(".")[0].lower() in ("console", "cone"):
        assert out == name  # only the device names themselves are rewritten


def test_windows_rewrites_never_merge_two_items():
    from maskcore.exec.plan import out_names
    names = ["a:b.png", "a_b.png", "CON.png", "_CON.png"]
    out = out_names(names)
    assert len({n.casefold() for n in out}) == len(names)
