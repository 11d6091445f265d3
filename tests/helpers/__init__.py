"""Shared test helpers: constants and plain functions. Fixtures live in conftest.py files.

Test modules import from here (``from helpers import tree``) and from the oracle package
(``tests/oracle``), never from each other. ``tests`` is on ``sys.path`` (pyproject's
``[tool.pytest.ini_options] pythonpath``).
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "examples" / "sly_catsdogs"   # the bundled Supervisely projects
DATA = REPO / "tests" / "data"                 # real test data, see tests/data/README.md


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def tree(root: Path) -> dict[str, str]:
    """{relative path: sha256} of every file under ``root`` except maskcore's state (.maskcore-meta/)."""
    return {str(p.relative_to(root)): sha256(p.read_bytes())
            for p in sorted(Path(root).rglob("*")) if p.is_file() and ".maskcore-meta" not in p.parts}


def colours(rgb) -> set[tuple[int, int, int]]:
    """The distinct (r, g, b) triples of an RGB array (..., 3): one packed uint32 per pixel, as
    np.unique(axis=0) or a set of per-pixel tuples give them, in a fraction of their time."""
    a = np.asarray(rgb).reshape(-1, 3).astype(np.uint32)
    packed = np.unique((a[:, 0] << 16) | (a[:, 1] << 8) | a[:, 2])
    return {(int(v >> 16), int((v >> 8) & 255), int(v & 255)) for v in packed}


def bigger_project(samples: Path, dst: Path, copies: int) -> Path:
    """The bundled vector project (6 items) with ``copies - 1`` renamed copies of each item."""
    shutil.copytree(samples / "vector", dst)
    for ann in sorted((dst / "ds/ann").glob("*.json")):
        item = ann.name[:-len(".json")]
        for k in range(1, copies):
            shutil.copyfile(ann, dst / "ds/ann" / f"c{k}_{item}.json")
            shutil.copyfile(dst / "ds/img" / item, dst / "ds/img" / f"c{k}_{item}")
    return dst


def partitions_of(source, items_per_partition: int) -> list:
    """The source's items planned as for one worker, ``items_per_partition`` per partition."""
    from maskcore.exec.plan import partitions, plan_partitions

    return partitions(plan_partitions(source.list_items(), workers=1, items_per_partition=items_per_partition))


def archive_run(archive_project, dst: str, name: str, part_size, items_per_partition: int = 2, keys: bool = True):
    """What an archive run does, without Dask: one ``run_archive_partition`` per partition of
    ``archive_project`` (tests/io/conftest.py), then the driver's ``finalize_archive`` into ``dst``."""
    from maskcore.exec.task import TaskSpec, run_archive_partition
    from maskcore.io.archive import (
        TarPartSink,
        chunk_records,
        discard_chunks,
        finalize_archive,
    )
    from maskcore.io.sinks.fsdir import FsspecDirSink

    src, meta, layout, project_files = archive_project
    inner = FsspecDirSink(dst)
    spec = TaskSpec(source=src, sink=TarPartSink(inner, part_size), layout=layout, meta=meta)
    records = []
    for i, part in enumerate(partitions_of(src, items_per_partition)):
        table = run_archive_partition(spec, part, f"key{i:02d}" if keys else None)
        assert set(table.column("status").to_pylist()) == {"ok"}
        records += chunk_records(table)
    result = finalize_archive(inner, name, part_size, records, project_files)
    discard_chunks(inner)
    return result
