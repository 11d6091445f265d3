"""Items of a partition rasterised together (task.BATCH_ITEMS, draw.coverages_many) give the very
bytes, statuses and messages of items rasterised one by one, for every layout offering
``coverage_job``; an item the kernel refuses inside a batch is named as when alone."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import maskcore.kernel.draw
from maskcore.exec import task
from maskcore.exec.plan import plan_partitions
from maskcore.exec.task import TaskSpec, run_partition
from maskcore.io.sinks.fsdir import FsspecDirSink
from maskcore.layouts import get_layout
from maskcore.readers import open_source

FAR = 2**31  # the parser's coordinate limit, one past the kernel's int32


def _project(samples: Path, dst: Path) -> Path:
    """The vector sample with three copies of each item (same canvas sizes: fills batch
    together), plus one item whose last polygon the kernel refuses."""
    shutil.copytree(samples / "vector", dst)
    for ann in sorted((dst / "ds/ann").glob("*.json")):
        item = ann.name[:-len(".json")]
        for k in (1, 2):
            shutil.copyfile(ann, dst / "ds/ann" / f"c{k}_{item}.json")
            shutil.copyfile(dst / "ds/img" / item, dst / "ds/img" / f"c{k}_{item}")
    bad = json.loads((dst / "ds/ann/dog1.jpg.json").read_text())
    polygon = next(o for o in bad["objects"] if o["geometryType"] == "polygon")
    far = json.loads(json.dumps(polygon))
    far["points"]["exterior"] = [[1, 1], [FAR, 1], [1, 9]]
    bad["objects"].append(far)
    (dst / "ds/ann/dog1_far.jpg.json").write_text(json.dumps(bad))
    shutil.copyfile(dst / "ds/img/dog1.jpg", dst / "ds/img/dog1_far.jpg")
    return dst


def _count_batches(monkeypatch) -> list[int]:
    """Record how many images each draw.coverages_many call draws."""
    calls: list[int] = []
    real = maskcore.kernel.draw.coverages_many

    def counting(images, *args, **kwargs):
        calls.append(len(images))
        return real(images, *args, **kwargs)

    monkeypatch.setattr(maskcore.kernel.draw, "coverages_many", counting)
    return calls


def _export(src: Path, dst: Path, layout_name: str, options: dict):
    source = open_source("supervisely", str(src))
    meta = source.read_meta()
    plan = plan_partitions(source.list_items(), workers=1, items_per_partition=1000)
    layout = get_layout(layout_name, options)
    if hasattr(layout, "for_plan"):
        layout = layout.for_plan(plan)
    sink = FsspecDirSink(str(dst))
    if hasattr(layout, "prepare"):
        layout.prepare(sink, plan.num_rows)
    table = run_partition(TaskSpec(source=source, sink=sink, layout=layout, meta=meta), plan)
    files = {p.relative_to(dst).as_posix(): p.read_bytes() for p in dst.rglob("*") if p.is_file()}
    rows = [(r["item"], r["status"], r["error"], r["warnings"])
            for r in table.select(["item", "status", "error", "warnings"]).to_pylist()]
    return files, rows


@pytest.mark.parametrize("layout_name, options, refused", [
    # crop=none: the far vertex reaches the kernel, which refuses it (beyond int32)
    ("supervisely", {"crop": "none"}, True),
    ("isahit", {"project": "p", "name": "lab", "crop": "none"}, True),
    ("supervisely", {}, False),  # the default load-time crop clips the far vertex away, as the SDK does
    ("cvat", {}, False),  # the COCO rule draws in float64: the far vertex is clipped, not refused
])
def test_batched_items_equal_items_drawn_alone(samples, tmp_path, monkeypatch, layout_name, options,
                                               refused):
    src = _project(samples, tmp_path / "src")
    calls = _count_batches(monkeypatch)
    batched = _export(src, tmp_path / "batched", layout_name, options)
    assert max(calls) > 1  # items were drawn together
    calls.clear()
    monkeypatch.setattr(task, "BATCH_ITEMS", 1)
    alone = _export(src, tmp_path / "alone", layout_name, options)
    assert max(calls) == 1
    assert batched[1] == alone[1]
    assert batched[0] == alone[0]
    failed = [(item, error) for item, status, error, _ in alone[1] if status == "failed"]
    assert sum(status == "ok" for _, status, _, _ in alone[1]) == 19 - refused
    if refused:
        assert len(failed) == 1 and failed[0][0] == "dog1_far.jpg"
        assert "ds/dog1_far.jpg/object 2" in failed[0][1] and "int32" in failed[0][1]


def test_batches_respect_the_pixel_budget(samples, tmp_path, monkeypatch):
    """A batch closes when its canvases reach BATCH_PIXELS: with a budget below one item's
    canvas every item is drawn alone, with the same bytes."""
    src = _project(samples, tmp_path / "src")
    calls = _count_batches(monkeypatch)
    monkeypatch.setattr(task, "BATCH_PIXELS", 100)
    small = _export(src, tmp_path / "small", "supervisely", {})
    assert max(calls) == 1
    monkeypatch.undo()
    assert small == _export(src, tmp_path / "big", "supervisely", {})
