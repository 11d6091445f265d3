"""Conformance of every registered layout (fsspec ``tests/abstract`` style): a layout gets this whole
suite by being registered and naming its minimal options in ``OPTIONS``.

What every layout promises: it is a frozen, picklable dataclass of its options built through the
registry; it satisfies the ``Layout`` protocol with ``LayoutBase``'s hooks; its fingerprint is
plain JSON, equal for equal options and different when an option that changes bytes changes; its
files are deterministic, named by safe relative paths, written with no I/O; a label it cannot draw
fails its item with an ``ItemError`` naming the object, never another exception; and a real Dask
worker process writes the very bytes the in-process task writes.
"""

from __future__ import annotations

import dataclasses
import json
import pickle

import numpy as np
import pytest

from maskcore.errors import ItemError
from maskcore.exec.plan import plan_partitions
from maskcore.exec.task import TaskSpec, parse_item, run_partition
from maskcore.io.sinks.fsdir import FsspecDirSink
from maskcore.layouts import LAYOUTS, Layout, LayoutBase, get_layout
from maskcore.model.annotation import Label
from maskcore.model.geometry import Polygon
from maskcore.paths import check_relpath
from maskcore.readers import open_source

_MACHINE = {"cat": [1, 2, 3], "dog": [4, 5, 6]}
OPTIONS = {  # the minimal options each registered layout needs; a new layout must add its own
    "supervisely": {},
    "supervisely-project": {},
    "cvat": {},
    "isahit": {"name": "lab"},
    "save-masks": {"masks_machine": True, "masks_human": True, "gt_machine_color": _MACHINE,
                   "gt_human_color": _MACHINE},
}
DRAWING = sorted(n for n in LAYOUTS if n != "supervisely-project")


def test_every_registered_layout_is_covered():
    assert sorted(OPTIONS) == sorted(LAYOUTS), "add the new layout's minimal options to OPTIONS"


@pytest.fixture(scope="module")
def project(samples):
    source = open_source("supervisely", str(samples / "vector"))
    meta = source.read_meta()
    plan = plan_partitions(source.list_items(), workers=1, items_per_partition=100)
    return source, meta, plan


def _items(project, layout):
    source, meta, plan = project
    spec = TaskSpec(source=source, sink=None, layout=layout, meta=meta)
    out = []
    for row in plan.to_pylist():
        ann = source.item_annotation(row)
        image = source.read_bytes(row["img_path"]) if row.get("img_path") else None
        out.append(parse_item(spec, row, ann, image))
    return out


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_shape_of_a_layout(name):
    layout = get_layout(name, OPTIONS[name])
    assert isinstance(layout, LayoutBase) and isinstance(layout, Layout)
    assert dataclasses.is_dataclass(layout)
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(layout, dataclasses.fields(layout)[0].name, None)
    assert pickle.loads(pickle.dumps(layout)) == layout
    fp = layout.fingerprint()
    assert json.loads(json.dumps(fp)) == fp
    assert get_layout(name, OPTIONS[name]).fingerprint() == fp
    assert layout.crop in ("sdk", "none") and isinstance(layout.max_canvas_pixels, int)


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_unknown_options_are_refused(name):
    from maskcore.errors import ConfigError

    with pytest.raises(ConfigError):
        get_layout(name, {**OPTIONS[name], "no_such_option_xyz": 1})


@pytest.mark.parametrize("name", DRAWING)
def test_fingerprint_follows_the_crop_option(name):
    a = get_layout(name, OPTIONS[name]).fingerprint()
    b = get_layout(name, {**OPTIONS[name], "crop": "none"}).fingerprint()
    assert a != b


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_files_are_deterministic_and_safely_named(name, project):
    layout = get_layout(name, OPTIONS[name]).for_plan(project[2])
    _, meta, _ = project
    meta_bytes = json.dumps(meta.raw).encode()
    first = layout.project_files(meta, meta_bytes)
    assert first == layout.project_files(meta, meta_bytes)
    written = 0
    for item in _items(project, layout):
        a = layout.item_files(item)
        b = layout.item_files(item)
        assert a == b, f"{name}: {item.where} gives different files on a second call"
        written += len(a)
        for path, data in a:
            assert isinstance(data, bytes)
            if not path.startswith("@list/"):
                assert check_relpath(path) == path
    assert written, f"{name}: no file for any item"


@pytest.mark.parametrize("name", DRAWING)
def test_a_label_the_kernel_refuses_fails_its_item_by_name(name, project):
    layout = get_layout(name, {**OPTIONS[name], "crop": "none"}).for_plan(project[2])
    item = _items(project, layout)[0]
    title = item.annotation.labels[0].class_title if item.annotation.labels else "cat"
    bad = Label(title, Polygon(__import__("numpy").array([[0, 0], [2**40, 3], [4, 8]], "int64")), 99)
    item = dataclasses.replace(item, annotation=dataclasses.replace(item.annotation,
                                                                    labels=item.annotation.labels + (bad,)))
    with pytest.raises(ItemError, match="object 99"):
        layout.item_files(item)


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_a_dask_worker_writes_the_in_process_bytes(name, project, tmp_path, dask_client):
    source, meta, plan = project
    layout = get_layout(name, OPTIONS[name]).for_plan(plan)

    def run(dst, submit):
        sink = FsspecDirSink(str(dst))
        table = submit(run_partition, TaskSpec(source=source, sink=sink, layout=layout, meta=meta), plan)
        return {p.relative_to(dst).as_posix(): p.read_bytes() for p in dst.rglob("*") if p.is_file()}, table

    local, t1 = run(tmp_path / "local", lambda f, *a: f(*a))
    remote, t2 = run(tmp_path / "remote", lambda f, *a: dask_client.submit(f, *a, pure=False).result())
    assert local and local == remote
    assert t1.drop_columns(["seconds"]).equals(t2.drop_columns(["seconds"]))


@pytest.mark.parametrize("name", DRAWING)
def test_render_hands_out_the_declared_kinds_as_arrays(name, project):
    """``render`` (what ``maskcore.open_project(...).masks`` calls) yields each declared kind once,
    in ``mask_kinds`` order, as uint8 arrays of the item's height; a subset asked gives that subset."""
    layout = get_layout(name, OPTIONS[name])
    assert layout.mask_kinds and layout.image_kinds <= set(layout.mask_kinds)
    for data in _items(project, layout):
        if isinstance(data, ItemError):
            continue
        rendered = list(layout.render(data, None))
        kinds = [k if k != "instances" else "instance" for k, _ in rendered]
        assert kinds == list(layout.mask_kinds)
        for kind, value in rendered:
            arrays = [p.mask for p in value] if kind == "instances" else [value]
            assert all(a.dtype in (np.uint8, np.bool_) for a in arrays)
            if kind != "instances":
                assert value.shape[0] == data.annotation.size_hw[0]
        last = layout.mask_kinds[-1]
        assert [k if k != "instances" else "instance" for k, _ in layout.render(data, (last,))] == [last]
