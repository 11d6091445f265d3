"""Issue 19 item 8 (a): each item's memory is estimated from its canvas and labels before it is
drawn (maskcore.exec.memory); an item that cannot fit the worker's limit fails alone, with the
estimate and the limit in its message."""

from __future__ import annotations

import json
import re
import shutil
import tracemalloc
import zlib
from pathlib import Path

import numpy as np
import pytest
import simplejpeg

import maskcore
from helpers import partitions_of
from maskcore.exec import memory
from maskcore.exec.task import TaskSpec, parse_item
from maskcore.layouts import get_layout
from maskcore.readers import open_source

FIXED = memory.PROCESS_BYTES + memory.DEFAULT_TOP_PAD_BYTES


def _project(root: Path, size_hw: tuple[int, int], n_polygons: int, rng) -> Path:
    """One item of ``size_hw`` with random polygons and rectangles over a JPEG photo."""
    h, w = size_hw
    (root / "ds/ann").mkdir(parents=True)
    (root / "ds/img").mkdir(parents=True)
    meta = {"classes": [{"title": "a", "shape": "polygon", "color": "#FF0000"},
                        {"title": "b", "shape": "rectangle", "color": "#00FF00"}], "tags": []}
    (root / "meta.json").write_text(json.dumps(meta))
    objects = []
    for _ in range(n_polygons):
        xs, ys = rng.integers(0, w, 6), rng.integers(0, h, 6)
        objects.append({"classTitle": "a", "geometryType": "polygon", "tags": [],
                        "points": {"exterior": np.stack([xs, ys], 1).tolist(), "interior": []}})
        objects.append({"classTitle": "b", "geometryType": "rectangle", "tags": [],
                        "points": {"exterior": [[int(xs[0]), int(ys[0])], [int(xs[1]), int(ys[1])]], "interior": []}})
    (root / "ds/ann/x.jpg.json").write_text(json.dumps({"size": {"height": h, "width": w}, "objects": objects}))
    photo = rng.integers(0, 256, (h // 8 + 1, w // 8 + 1, 3), dtype=np.uint8).repeat(8, 0).repeat(8, 1)[:h, :w]
    (root / "ds/img/x.jpg").write_bytes(simplejpeg.encode_jpeg(np.ascontiguousarray(photo), quality=85))
    return root


@pytest.mark.parametrize("layout, options", [("supervisely", {}), ("supervisely", {"masks": "machine"}),
                                             ("supervisely", {"masks": "human,instance"}), ("cvat", {}),
                                             ("isahit", {"name": "x"})])
@pytest.mark.parametrize("seed", range(3))
def test_estimate_bounds_what_rendering_allocates(tmp_path, layout, options, seed, monkeypatch):
    """The estimate above the fixed part (process, kept heap) is at least what rendering one item
    allocates (numpy arrays, PNG streams: tracemalloc's peak), and at most 6 times it (over 40 seeds x 5
    layouts: up to 5.3x; the high end is the four Supervisely kinds on an item with few objects).
    As in a fresh worker: the PNG encoder's per-thread scanlines (``codec.png._scratch``), kept
    from item to item, are allocated by this item, whatever this process rendered before."""
    import threading

    from maskcore.codec import png
    monkeypatch.setattr(png, "_scratch", threading.local())
    rng = np.random.default_rng([seed, zlib.crc32(f"{layout}{options}".encode())])  # hash() varies per process
    size_hw = (int(rng.integers(600, 1400)), int(rng.integers(600, 1400)))
    src = open_source("supervisely", str(_project(tmp_path / "p", size_hw, int(rng.integers(1, 12)), rng)), {})
    lay = get_layout(layout, options)
    spec = TaskSpec(source=src, sink=None, layout=lay, meta=src.read_meta())
    row = partitions_of(src, 1)[0].to_pylist()[0]
    item = parse_item(spec, row, src.item_annotation(row), src.read_bytes(row["img_path"]))
    tracemalloc.start()
    try:
        files = lay.item_files(item, warn=lambda text: None)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert files
    estimate = memory.item_bytes(item.annotation, lay) - FIXED
    assert peak <= estimate <= 6 * peak, (size_hw, peak, estimate)


def _huge(project: Path, side: int) -> None:
    ann = {"size": {"height": side, "width": side}, "objects": [
        {"classTitle": "dog2", "geometryType": "polygon", "tags": [],
         "points": {"exterior": [[0, 0], [side - 1, 0], [side - 1, side - 1]], "interior": []}}]}
    (project / "ds/ann/huge.png.json").write_text(json.dumps(ann))


def test_an_item_above_the_memory_limit_fails_alone_before_it_is_drawn(samples, tmp_path, monkeypatch, cli):
    """In-process with a configured limit (``MASKCORE_MEMORY_LIMIT``): the 14000x14000 item is refused
    on its estimate (about 940 MiB estimated: it is never drawn), named with the estimate
    and the limit; the six others are written as a clean run writes them; exit 3."""
    src = tmp_path / "src"
    shutil.copytree(samples / "vector", src)
    _huge(src, 14000)
    monkeypatch.setenv(memory.LIMIT_ENV, "512MiB")
    lines: list[str] = []
    result = maskcore.export(str(src), str(tmp_path / "out"), masks="machine", cluster="inprocess", log=lines.append)
    assert result.exit_code == 3
    (failure,) = result.report["failures"]
    assert failure["item"] == "huge.png", failure
    assert re.search(r"needs an estimated 9\d\d MiB .* above the worker's memory limit of 512 MiB",
                     failure["error"]), failure
    assert "14000x14000 canvas" in failure["error"]
    assert any("huge.png" in line and "memory limit" in line for line in lines), lines
    assert result.report["items"]["written"] == 6
    check = cli("verify", tmp_path / "out")
    assert check.returncode == 0, check.stdout + check.stderr


def test_no_limit_no_refusal_and_the_knob(monkeypatch):
    """Without a limit nothing is refused; ``MASKCORE_MEMORY_ESTIMATE=off`` turns the refusal off."""
    from maskcore.model.annotation import Annotation

    big = Annotation((15000, 15000), ())
    lay = get_layout("supervisely", {})
    monkeypatch.delenv(memory.LIMIT_ENV, raising=False)
    memory.refuse_oversize(big, lay, "ds/big")
    monkeypatch.setenv(memory.LIMIT_ENV, "1GiB")
    with pytest.raises(memory.ItemMemoryError, match=r"ds/big: rendering needs an estimated .* above .* 1,024 MiB"):
        memory.refuse_oversize(big, lay, "ds/big")
    memory.refuse_oversize(Annotation((1000, 1000), ()), lay, "ds/small")
    monkeypatch.setenv(memory.ESTIMATE_ENV, "off")
    memory.refuse_oversize(big, lay, "ds/big")


def test_a_worker_reports_its_own_memory_limit(dask_client):
    limits = {w["memory_limit"] for w in dask_client.scheduler_info()["workers"].values()}
    limit, fraction = dask_client.submit(memory.memory_limit, pure=False).result()
    assert limit in limits and 0 < fraction <= 1


def test_windows_of_many_labels_equal_the_windows_one_by_one():
    """The vectorised sum over point-list labels equals :func:`window_pixels` label by label, for
    random polygons, lines and other geometries inside, across and outside the canvas."""
    from maskcore.model import geometry as g
    from maskcore.model.annotation import Label

    rng = np.random.default_rng(7)
    size_hw = (int(rng.integers(50, 3000)), int(rng.integers(50, 3000)))
    labels = []
    for i in range(3000):
        pts = rng.integers(-4000, 7000, (int(rng.integers(1, 9)), 2)).astype(np.int64)
        x, y = int(pts[0, 0]), int(pts[0, 1])
        geometry = [g.Polygon(pts), g.Polyline(pts), g.Polygon(pts.astype(np.float64) + rng.random(pts.shape)),
                    g.Rectangle(x, y, x + 5, y + 9), g.Bitmap((x, y), np.ones((7, 11), bool))][i % 5]
        labels.append(Label("a", geometry, i))
    one_by_one = sum(memory.window_pixels(lb.geometry, size_hw) for lb in labels)
    assert memory.windows_pixels(labels, size_hw) == one_by_one > 0
