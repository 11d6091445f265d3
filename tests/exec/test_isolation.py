"""Issue 19 item 8: an item too big for a worker fails alone. Real worker processes with a small
memory limit, killed by their nanny when an item outgrows it; the run isolates the partition."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import dask

from helpers import tree
from maskcore.exec.isolation import WORKER_DIED
from maskcore.exec.memory import ESTIMATE_ENV
from maskcore.exec.run import ExportConfig, run_export

MASKS = {"masks": "machine"}


def _add_huge_item(project: Path, side: int) -> str:
    """An item of ``side`` x ``side`` pixels covered by one polygon (its image is not needed for
    machine masks: the item is written with a warning when it fits)."""
    ann = {"description": "", "tags": [], "size": {"height": side, "width": side}, "objects": [
        {"classTitle": "dog2", "geometryType": "polygon", "tags": [],
         "points": {"exterior": [[0, 0], [side - 1, 0], [side - 1, side - 1], [0, side - 1]], "interior": []}}]}
    (project / "ds/ann/huge.png.json").write_text(json.dumps(ann))
    return "huge.png"


def test_an_item_that_kills_its_worker_fails_alone(samples, tmp_path, monkeypatch, cli):
    """The nanny kills the worker rendering a 12000x12000 item (memory limit 400 MB, the estimate
    turned off so that the item reaches the kernel): the partition is isolated, that item fails
    with the reason, every other item is written as a clean run writes it, exit 3, verify clean."""
    from distributed import Client, LocalCluster

    meta = json.loads((samples / "vector/meta.json").read_text())
    assert any(c["title"] == "dog2" and c["shape"] == "polygon" for c in meta["classes"])
    src = tmp_path / "src"
    shutil.copytree(samples / "vector", src)
    huge = _add_huge_item(src, 12000)
    monkeypatch.setenv(ESTIMATE_ENV, "off")  # inherited by the worker processes started below
    settings = {"distributed.scheduler.allowed-failures": 0,        # one death is enough to give up
                "distributed.worker.memory.monitor-interval": "50ms",
                "distributed.admin.tick.interval": "1s"}
    dst, lines = tmp_path / "out", []
    with dask.config.set(settings):
        cluster = LocalCluster(n_workers=1, threads_per_worker=1, processes=True, memory_limit="400MB",
                               dashboard_address=":0")
        with cluster, Client(cluster) as client:
            cfg = ExportConfig(source=str(src), destination=str(dst), layout_options=MASKS, items_per_partition=7)
            result = run_export(cfg, log=lines.append, client=client)
    assert result.exit_code == 3, "\n".join(lines)
    failures = result.report["failures"]
    assert [f["item"] for f in failures] == [huge], failures
    assert WORKER_DIED in failures[0]["error"] and "memory limit 381 MiB" in failures[0]["error"]
    assert any(WORKER_DIED in line and huge in line for line in lines), lines
    assert result.report["items"]["written"] == 6
    clean = tmp_path / "clean"
    cli("export", samples / "vector", clean, "--masks", "machine").check_returncode()
    assert tree(dst) == tree(clean)  # the huge item left no file
    check = cli("verify", dst)
    assert check.returncode == 0, check.stdout + check.stderr
