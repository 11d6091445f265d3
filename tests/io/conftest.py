"""Fixtures shared by the archive tests (test_archive: tar, test_zip_archive: zip): the bundled
vector project opened for packing, and the plain folder export every archive must reproduce."""

from __future__ import annotations

import json

import pytest

from helpers import partitions_of, sha256
from maskcore.exec.task import TaskSpec, run_partition
from maskcore.io.sinks.fsdir import FsspecDirSink
from maskcore.layouts import get_layout
from maskcore.readers import open_source


@pytest.fixture(scope="module")
def archive_project(samples):
    src = open_source("supervisely", str(samples / "vector"))
    meta = src.read_meta()
    layout = get_layout("supervisely", {})
    meta_bytes = json.dumps(meta.raw, indent=4).encode("utf-8")
    return src, meta, layout, layout.project_files(meta, meta_bytes)


@pytest.fixture(scope="module")
def folder(archive_project, tmp_path_factory):
    """The plain folder export every archive must reproduce (tar here, zip in test_zip_archive)."""
    src, meta, layout, project_files = archive_project
    dst = tmp_path_factory.mktemp("folder")
    sink = FsspecDirSink(str(dst))
    for path, data in project_files:
        sink.write(path, data)
    spec = TaskSpec(source=src, sink=sink, layout=layout, meta=meta)
    for part in partitions_of(src, 2):
        assert run_partition(spec, part).column("status").to_pylist() == ["ok"] * part.num_rows
    return dst


@pytest.fixture(scope="module")
def folder_export(folder):
    """{relpath: sha256} of the folder export."""
    return {p.relative_to(folder).as_posix(): sha256(p.read_bytes()) for p in folder.rglob("*") if p.is_file()}
