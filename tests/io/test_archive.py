"""Archive export: tar parts made per partition, finalized on the driver, checked with GNU tar.

The export is driven without Dask: each partition goes through ``run_archive_partition`` (the
task an archive run submits) and the driver step is ``finalize_archive``.
"""

from __future__ import annotations

import hashlib
import io
import os
import random
import shutil
import subprocess
import tarfile
import tempfile
import threading
import uuid
from pathlib import Path

import fsspec
import pyarrow.parquet as pq
import pytest

from helpers import archive_run, partitions_of
from helpers.oracles import program
from maskcore.codec.tar import tar_bytes
from maskcore.errors import ConfigError
from maskcore.exec.task import TaskSpec, run_archive_partition, run_partition
from maskcore.io.archive import (
    ArchiveError,
    TarPartSink,
    check_archive_name,
    chunk_records,
    default_archive_name,
    discard_chunks,
    finalize_archive,
    parse_size,
    refuse_overwriting_source,
    unpacked_outputs,
)
from maskcore.io.sinks.fsdir import FsspecDirSink
from maskcore.readers import open_source
from maskcore.readers.coco import CocoSource
from maskcore.readers.supervisely import SuperviselySource

PART = 1_000_000   # the sample's biggest previews (6.3 MB, 1.1 MB) are larger: they go alone
NAME = "7_pets"


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _listing(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if not p.name.startswith("."))


def _tree(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): _sha(p.read_bytes()) for p in root.rglob("*") if p.is_file()}


def _tar(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["tar", *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, "LC_ALL": "C.UTF-8"})


def _archive_run(archive_project, dst: str, part_size, items_per_partition=2, keys=True):
    return archive_run(archive_project, dst, NAME, part_size, items_per_partition, keys)


# -- sizes -----------------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("100000", 100_000), ("500MiB", 500 * 2 ** 20), ("2GB", 2_000_000_000), ("1.5 GiB", 3 * 2 ** 29),
    ("10 B", 10), ("1kb", 1000), ("4KiB", 4096), ("3 TB", 3 * 10 ** 12), ("1TiB", 2 ** 40),
    (" 7MB ", 7_000_000), ("0.5KB", 500), (123, 123),
])
def test_parse_size_units(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "MB", "abc", "-1MB", "1.5", "0", "0 GB", "1 XB", "1M", "1e3", "1.2.3MB",
                                  True, None, 1.5])
def test_parse_size_refuses_with_expected_and_got(text):
    with pytest.raises(ConfigError) as err:
        parse_size(text)
    assert "expected" in str(err.value) and repr(text) in str(err.value)


def test_part_size_below_the_smallest_tar_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="at least 2048"):
        TarPartSink(FsspecDirSink(str(tmp_path)), 1000)


# -- names -----------------------------------------------------------------------------------

def test_default_archive_name_follows_the_reference(samples, tmp_path):
    assert default_archive_name(SuperviselySource("x", project_name="pets", project_id=42)) == "42_pets"
    assert default_archive_name(SuperviselySource("x", project_name="pets")) == "pets"
    shutil.copytree(samples / "vector", tmp_path / "1234_cats dogs")
    assert default_archive_name(open_source("supervisely", str(tmp_path / "1234_cats dogs"))) == "1234_cats dogs"
    # COCO and CVAT: the folder holding the JSON / XML (issue 16 item 9), not the file's stem
    assert default_archive_name(CocoSource("/d/roboflow_facade_coco/valid/_annotations.coco.json")) == "valid"
    assert default_archive_name(CocoSource("/d/coco2017/annotations/instances_val2017.json")) == "coco2017"
    assert default_archive_name(CocoSource("instances.json")) == "instances"
    urban = Path(__file__).resolve().parents[1] / "data" / "cvat_urban_scene" / "annotations.xml"
    assert default_archive_name(open_source("cvat", str(urban))) == "cvat_urban_scene"
    for bad in ("a/b", ".hidden", "", "a\\b", "a\x00"):
        with pytest.raises(ConfigError, match="archive name"):
            check_archive_name(bad)


def test_an_archive_that_would_replace_the_source_is_refused(tmp_path):
    (tmp_path / "42_pets.tar").write_bytes(tar_bytes([("meta.json", b"{}")]))
    sink = FsspecDirSink(str(tmp_path))
    with pytest.raises(ConfigError, match="overwrite the source"):
        refuse_overwriting_source(sink, "42_pets", str(tmp_path / "42_pets.tar"))
    with pytest.raises(ConfigError, match="overwrite the source"):
        refuse_overwriting_source(sink, "42", str(tmp_path / "42.tar.003"))
    with pytest.raises(ConfigError, match="overwrite the source"):
        refuse_overwriting_source(sink, "42", str(tmp_path / "42_part_003.tar"))   # an earlier maskcore's parts
    refuse_overwriting_source(sink, "other", str(tmp_path / "42_pets.tar"))
    refuse_overwriting_source(FsspecDirSink(str(tmp_path / "out")), "42_pets", str(tmp_path / "42_pets.tar"))


# -- parts -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def parts_run(archive_project, tmp_path_factory):
    dst = tmp_path_factory.mktemp("parts")
    return dst, _archive_run(archive_project, str(dst), PART)


def test_parts_are_valid_bounded_tars_that_extract_to_the_folder_export(parts_run, folder_export, tmp_path):
    dst, result = parts_run
    names = _listing(dst)
    assert names == [f"{NAME}.tar.{i:03d}" for i in range(1, len(names) + 1)]
    assert [p["part"] for p in result.parts] == names
    assert len(names) >= 5          # project files, 3 partitions, two oversize previews
    by_part = {}
    for m in result.members:
        by_part.setdefault(m["part"], []).append(m)
    for name in names:
        listing = _tar("-tf", str(dst / name))          # valid alone, without --ignore-zeros
        assert listing.returncode == 0, listing.stderr
        assert listing.stdout.splitlines() == [m["path"] for m in by_part[name]]
        size = (dst / name).stat().st_size
        oversize = [m["oversize"] for m in by_part[name]]
        assert size <= PART or oversize == [True], (name, size)
    with open(tmp_path / "all.tar", "wb") as out:
        for name in names:
            out.write((dst / name).read_bytes())
    (tmp_path / "x").mkdir()
    done = _tar("-xf", str(tmp_path / "all.tar"), cwd=tmp_path / "x")   # one archive: no -i
    assert done.returncode == 0, done.stderr
    assert _tree(tmp_path / "x") == folder_export
    # project files come first, in part 001
    assert [m["path"] for m in by_part[names[0]]][:3] == [
        "meta.json", "obj_class_to_machine_color.json", "obj_class_to_semantic_color.json"]


def test_oversize_files_get_a_part_of_their_own_and_are_flagged(parts_run):
    dst, result = parts_run
    oversize = {m["path"]: m for m in result.members if m["oversize"]}
    # oversize = cannot fit an empty part: 512-byte header + data padded to 512 + 1024-byte end
    too_big = sorted(m["path"] for m in result.members if 512 + -(-m["bytes"] // 512) * 512 + 1024 > PART)
    assert sorted(oversize) == too_big and "ds/masks_human/cat1.png" in oversize
    for m in oversize.values():
        assert [x["path"] for x in result.members if x["part"] == m["part"]] == [m["path"]]
        assert (dst / m["part"]).stat().st_size > PART
    assert sorted(result.summary()["oversize"]) == sorted(oversize)
    assert all(m["bytes"] + 1536 <= PART for m in result.members if not m["oversize"])


def test_manifest_gives_size_sha256_and_offset_of_every_member(parts_run, folder_export):
    dst, result = parts_run
    table = result.members_table()
    assert table.num_rows == len(folder_export)
    for m in table.to_pylist():
        with open(dst / m["part"], "rb") as f:
            f.seek(m["offset"])
            data = f.read(m["bytes"])
        assert _sha(data) == m["sha256"] == folder_export[m["path"]]
    for p in result.parts:
        assert _sha((dst / p["part"]).read_bytes()) == p["sha256"]
        assert (dst / p["part"]).stat().st_size == p["bytes"]


def test_parts_are_byte_identical_across_runs(archive_project, parts_run, tmp_path):
    dst, result = parts_run
    _archive_run(archive_project, str(tmp_path), PART)
    names = [p["part"] for p in result.parts]
    assert _listing(tmp_path) == names
    for name in names:
        assert (tmp_path / name).read_bytes() == (dst / name).read_bytes()


def test_chunks_are_removed_and_stale_parts_of_an_earlier_run_too(archive_project, tmp_path):
    first = _archive_run(archive_project, str(tmp_path), PART)
    (tmp_path / f"{NAME}.tar").write_bytes(b"from an even older run")
    (tmp_path / f"{NAME}_part_007.tar").write_bytes(b"from an earlier maskcore")
    second = _archive_run(archive_project, str(tmp_path), 10 * PART, items_per_partition=6)
    assert len(second.parts) < len(first.parts)
    assert _listing(tmp_path) == [p["part"] for p in second.parts]
    assert not (tmp_path / ".maskcore-meta" / "parts").exists()


# -- one tar ---------------------------------------------------------------------------------

def test_single_tar_is_valid_complete_and_independent_of_partitioning(archive_project, folder_export, tmp_path):
    result = _archive_run(archive_project, str(tmp_path / "a"), None, items_per_partition=2)
    _archive_run(archive_project, str(tmp_path / "b"), None, items_per_partition=6, keys=False)
    archive = tmp_path / "a" / f"{NAME}.tar"
    assert _listing(tmp_path / "a") == [archive.name]
    assert archive.read_bytes() == (tmp_path / "b" / archive.name).read_bytes()
    (tmp_path / "x").mkdir()
    done = _tar("-xf", str(archive), cwd=tmp_path / "x")    # no --ignore-zeros: one archive
    assert done.returncode == 0, done.stderr
    assert _tree(tmp_path / "x") == folder_export
    assert [p["part"] for p in result.parts] == [archive.name]
    assert result.parts[0]["sha256"] == _sha(archive.read_bytes())
    with tarfile.open(archive) as t:
        members = t.getmembers()
    assert [m.name for m in members] == [m["path"] for m in result.members]
    assert {(m.mtime, m.uid, m.gid, m.uname, m.gname, m.mode) for m in members} == {(0, 0, 0, "", "", 0o644)}


# -- partitions ------------------------------------------------------------------------------

def test_a_rerun_partition_rewrites_identical_chunks(archive_project, tmp_path):
    src, meta, layout, _ = archive_project
    inner = FsspecDirSink(str(tmp_path))
    spec = TaskSpec(source=src, sink=TarPartSink(inner, PART), layout=layout, meta=meta)
    part = partitions_of(src, 2)[0]
    first = chunk_records(run_archive_partition(spec, part, "k"))
    chunks = {r["chunk"]: (tmp_path / r["chunk"]).read_bytes() for r in first}
    # cat1's 6.3 MB preview goes alone; every other chunk stays within the part size
    members = [[m["path"] for m in r["members"]] for r in first]
    assert ["ds/masks_human/cat1.png"] in members and len(chunks) == len(first) >= 3
    for r in first:   # a chunk over the part size holds one member that fits no part
        if len(chunks[r["chunk"]]) > PART:
            assert len(r["members"]) == 1 and 512 + r["members"][0]["bytes"] + 1024 > PART
    again = chunk_records(run_archive_partition(spec, part, "k"))
    assert again == first
    assert {r["chunk"]: (tmp_path / r["chunk"]).read_bytes() for r in again} == chunks
    packer = spec.sink.open_partition("k2")
    packer.write("a.txt", b"x")
    assert packer.finish() == packer.finish()
    for path, data in chunks.items():
        assert _tar("-tf", str(tmp_path / path)).returncode == 0
        assert _sha(data) == next(r["sha256"] for r in first if r["chunk"] == path)


def test_resume_file_carries_the_chunk_records(archive_project, tmp_path):
    src, meta, layout, _ = archive_project
    inner = FsspecDirSink(str(tmp_path))
    spec = TaskSpec(source=src, sink=TarPartSink(inner, PART), layout=layout, meta=meta,
                    partials_dir=".maskcore-meta/partials")
    part = partitions_of(src, 2)[1]
    records = chunk_records(run_archive_partition(spec, part, "abc"))
    resumed = pq.read_table(tmp_path / ".maskcore-meta/partials/abc.parquet")
    assert chunk_records(resumed) == records and records
    assert unpacked_outputs(resumed, records) == []
    folder_run = run_partition(TaskSpec(source=src, sink=FsspecDirSink(str(tmp_path / "f")), layout=layout,
                                        meta=meta), part)
    assert chunk_records(folder_run) == [] and len(unpacked_outputs(folder_run, [])) == 15
    names = [m["path"] for r in records for m in r["members"]]
    assert "ds/img/cat3.jpg" in names and not any(n.startswith(".maskcore-meta") for n in names)


def test_an_unchanged_item_is_still_packed(archive_project, tmp_path):
    """Incremental skips need the files on disk; an archive is rewritten whole."""
    src, meta, layout, _ = archive_project
    spec = TaskSpec(source=src, sink=TarPartSink(FsspecDirSink(str(tmp_path)), None), layout=layout, meta=meta)
    part = partitions_of(src, 2)[0]
    sha = [_sha(src.read_bytes(p)) for p in part.column("ann_path").to_pylist()]
    img = [_sha(src.read_bytes(p)) for p in part.column("img_path").to_pylist()]
    part = part.append_column("prev_ann_sha256", [sha]).append_column("prev_img_sha256", [img])
    table = run_archive_partition(spec, part)
    assert table.column("status").to_pylist() == ["ok", "ok"]
    assert sum(len(r["members"]) for r in chunk_records(table)) == 12


def test_a_missing_or_altered_chunk_stops_finalize(archive_project, tmp_path):
    src, meta, layout, project_files = archive_project
    inner = FsspecDirSink(str(tmp_path))
    spec = TaskSpec(source=src, sink=TarPartSink(inner, PART), layout=layout, meta=meta)
    records = chunk_records(run_archive_partition(spec, partitions_of(src, 2)[1], "p1"))
    (tmp_path / records[0]["chunk"]).write_bytes(b"\0" * 1024)
    with pytest.raises(ArchiveError, match="expected .* bytes as its task recorded, got 1024 bytes"):
        finalize_archive(inner, NAME, PART, records, project_files)
    (tmp_path / records[0]["chunk"]).unlink()
    with pytest.raises(ArchiveError, match="got no file"):
        finalize_archive(inner, NAME, None, records, project_files)
    assert not list(tmp_path.glob("*.tar"))


def test_a_chunk_that_cannot_be_written_fails_the_whole_partition(archive_project, tmp_path):
    """Not just one item: the partition is re-run (by Dask) rather than packed with a hole."""
    src, meta, layout, _ = archive_project
    (tmp_path / ".maskcore-meta").mkdir()
    (tmp_path / ".maskcore-meta" / "parts").write_bytes(b"a file where the chunk folder goes")
    spec = TaskSpec(source=src, sink=TarPartSink(FsspecDirSink(str(tmp_path)), PART), layout=layout,
                    meta=meta, partials_dir=".maskcore-meta/partials")
    with pytest.raises(OSError):
        run_archive_partition(spec, partitions_of(src, 2)[0], "k")
    assert not (tmp_path / ".maskcore-meta" / "partials").exists()   # not recorded as finished


def test_small_files_fill_parts_up_to_the_limit_exactly(tmp_path):
    inner = FsspecDirSink(str(tmp_path))
    packer = TarPartSink(inner, 4096).open_partition(0)
    for i in range(5):                                   # 512 header + 512 data each
        packer.write(f"d/f{i}", bytes([i]) * 500)
    packer.write("d/big", b"B" * 3000)                   # 512 + 3072 + 1024 > 4096
    packer.write("d/last", b"L")
    records = packer.finish()
    assert [[m["path"] for m in r["members"]] for r in records] == [
        ["d/f0", "d/f1", "d/f2"], ["d/f3", "d/f4"], ["d/big"], ["d/last"]]
    assert [r["bytes"] for r in records] == [3072, 2048, 3584, 1024]   # room left for the end blocks
    assert [m["oversize"] for r in records for m in r["members"]] == [False] * 5 + [True, False]
    result = finalize_archive(inner, "s", 4096, records, [])
    assert [p["part"] for p in result.parts] == [f"s.tar.00{i}" for i in range(1, 5)]
    assert [p["bytes"] for p in result.parts] == [3072, 2048, 3584, 2048]   # the last ends the archive
    assert result.parts[2]["oversize"] and not result.parts[1]["oversize"]


# -- other filesystems -----------------------------------------------------------------------

@pytest.mark.parametrize("part_size", [None, 4096])
def test_archive_on_a_non_local_filesystem(tmp_path, monkeypatch, part_size):
    """fsspec's memory filesystem takes the object-store path (whole-object writes, copies);
    a tiny spool limit makes chunks spill to a local temporary file first."""
    import maskcore.io.archive as archive
    monkeypatch.setattr(archive, "SPOOL_BYTES", 1000)
    spool = tmp_path / "spool"   # this test's own temporary directory: other tests spool too
    spool.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(spool))
    root = f"memory://maskcore-test-{uuid.uuid4().hex}"
    inner = FsspecDirSink(root)
    files = [(f"ds/f{i}.bin", os.urandom(300 * i)) for i in range(1, 8)]
    sink = TarPartSink(inner, part_size)
    records = []
    for p in range(2):
        packer = sink.open_partition(p, ("ds", f"item{p}"))
        for path, data in files[p * 4:(p + 1) * 4]:
            packer.write(path, data)
        records += packer.finish()
    result = finalize_archive(inner, "m", part_size, records, [("meta.json", b"{}")])
    discard_chunks(inner)
    fs = fsspec.filesystem("memory")
    left = sorted(p.rsplit("/", 1)[-1] for p in fs.find(root.removeprefix("memory://")))
    assert left == sorted(p["part"] for p in result.parts)
    assert not list(spool.iterdir())
    blob = b""
    for p in result.parts:
        data = inner.read(p["part"])
        assert _sha(data) == p["sha256"]
        assert part_size is None or len(data) <= part_size or p["oversize"]
        blob += data
    (tmp_path / "x").mkdir()
    (tmp_path / "all.tar").write_bytes(blob)
    assert _tar("-xf", str(tmp_path / "all.tar"), cwd=tmp_path / "x").returncode == 0
    assert _tree(tmp_path / "x") == {p: _sha(d) for p, d in [("meta.json", b"{}"), *files]}
    fs.rm(root.removeprefix("memory://"), recursive=True)


def test_tar_encoding_reads_back_with_pythons_tarfile():
    long_dir = "d" * 150
    files = [("a.txt", b"hi"), (f"{long_dir}/{'n' * 99}", b"x" * 513), ("ds/ann/кот 猫.json", b"{}"),
             ("x/" + "y" * 200, b"")]
    data = tar_bytes(files)
    assert len(data) % 512 == 0 and data.endswith(b"\0" * 1024)
    with tarfile.open(fileobj=io.BytesIO(data)) as t:
        got = [(m.name, t.extractfile(m).read()) for m in t.getmembers()]
    assert got == files


# -- S3 (a real S3-compatible server on loopback: moto's server mode) ------------------------

@pytest.mark.parametrize("part_size", [None, 300_000])
def test_archive_on_s3(archive_project, folder_export, s3_server, s3_bucket, monkeypatch, tmp_path, part_size):
    import maskcore.io.archive as archive
    monkeypatch.setattr(archive, "SPOOL_BYTES", 200_000)   # the bigger chunks go through put_file
    src, meta, layout, project_files = archive_project
    url = f"s3://{s3_bucket}/run"
    inner = FsspecDirSink(url, s3_server.options())
    spec = TaskSpec(source=src, sink=TarPartSink(inner, part_size), layout=layout, meta=meta)
    records = []
    for i, part in enumerate(partitions_of(src, 3)):
        records += chunk_records(run_archive_partition(spec, part, f"k{i}"))
    result = finalize_archive(inner, NAME, part_size, records, project_files)
    discard_chunks(inner)
    fs = s3_server.filesystem()
    left = sorted(p.rsplit("/", 1)[-1] for p in fs.find(url))
    assert left == sorted(p["part"] for p in result.parts)
    with open(tmp_path / "all.tar", "wb") as out:
        for p in result.parts:
            data = fs.cat_file(f"{url}/{p['part']}")
            assert _sha(data) == p["sha256"]
            assert part_size is None or len(data) <= part_size or p["oversize"]
            out.write(data)
    (tmp_path / "x").mkdir()
    assert _tar("-xf", str(tmp_path / "all.tar"), cwd=tmp_path / "x").returncode == 0
    assert _tree(tmp_path / "x") == folder_export


def test_partitions_packed_by_dask_worker_processes(archive_project, parts_run, dask_client, tmp_path):
    """The spec with its TarPartSink travels to worker processes; the parts match a local run."""
    src, meta, layout, project_files = archive_project
    inner = FsspecDirSink(str(tmp_path))
    spec = TaskSpec(source=src, sink=TarPartSink(inner, PART), layout=layout, meta=meta)
    spec_future = dask_client.scatter(spec, broadcast=True)
    futures = [dask_client.submit(run_archive_partition, spec_future, part, f"key{i:02d}", pure=False)
               for i, part in enumerate(partitions_of(src, 2))]
    records = [r for f in futures for r in chunk_records(f.result())]
    result = finalize_archive(inner, NAME, PART, records, project_files)
    dst, local = parts_run
    assert [{**p, "stamp": None} for p in result.parts] == [{**p, "stamp": None} for p in local.parts]
    for p in result.parts:
        assert (tmp_path / p["part"]).read_bytes() == (dst / p["part"]).read_bytes()


# -- compaction: parts by size, not by partition ---------------------------------------------

def _synthetic_files(seed: int, count: int, biggest: int) -> list[tuple[str, bytes]]:
    rng = random.Random(seed)
    return [(f"ds{i % 3}/f{i:04d}.bin", rng.randbytes(rng.randint(1, biggest))) for i in range(count)]


def _pack(inner, part_size, fmt, files, per_partition) -> list[dict]:
    """Chunks as the workers write them: ``per_partition`` files per partition."""
    sink = TarPartSink(inner, part_size, fmt)
    records = []
    for p in range(0, len(files), per_partition):
        packer = sink.open_partition(p, ("ds", f"{p:06d}"))   # plan order = file order
        for path, data in files[p:p + per_partition]:
            packer.write(path, data)
        records += packer.finish()
    return records


def _extract(fmt: str, paths: list[Path], into: Path) -> dict[str, str]:
    """The parts extracted by the real programs: GNU tar on their concatenation, unzip one by one."""
    into.mkdir()
    if fmt == "tar":
        joined = into.parent / f"{into.name}.all.tar"
        joined.write_bytes(b"".join(p.read_bytes() for p in paths))
        done = _tar("-xf", str(joined), cwd=into)   # one archive: no --ignore-zeros
        assert done.returncode == 0, done.stderr
    else:
        for p in paths:
            done = subprocess.run([program("unzip"), "-q", str(p), "-d", str(into)],
                                  capture_output=True, text=True, check=False)
            assert done.returncode == 0, done.stderr
    return _tree(into)


@pytest.mark.parametrize("fmt", ["tar", "zip"])
def test_parts_are_filled_to_the_size_whatever_the_partitions(fmt, tmp_path):
    """~20 MB of members up to 190 kB in 2 MB parts: every part but the last holds 90-100 % of the
    part size, the same bytes and names however the workers chunked them, and the parts extract
    (GNU tar, Info-ZIP unzip) to exactly the files."""
    part_size = 2_000_000
    files = _synthetic_files(16, 210, 190_000)
    results = {}
    for per_partition in (7, 50):
        dst = tmp_path / f"p{per_partition}"
        inner = FsspecDirSink(str(dst))
        records = _pack(inner, part_size, fmt, files, per_partition)
        assert len(records) > 10          # many small chunks: one partition's tail each
        results[per_partition] = finalize_archive(inner, "proj", part_size, records, [("meta.json", b"{}")], fmt)
        discard_chunks(inner)
    a, b = results[7], results[50]
    assert [{**p, "stamp": None} for p in a.parts] == [{**p, "stamp": None} for p in b.parts]   # stamps: inodes
    assert a.members == b.members
    names = [p["part"] for p in a.parts]
    expected_names = [f"proj.tar.{i:03d}" if fmt == "tar" else f"proj_part_{i:03d}.zip"
                      for i in range(1, len(names) + 1)]
    assert names == expected_names and len(names) >= 9
    sizes = [(tmp_path / "p7" / n).stat().st_size for n in names]
    assert all(0.9 * part_size <= s <= part_size for s in sizes[:-1]), sizes
    assert sizes[-1] <= part_size
    for n in names:
        assert (tmp_path / "p7" / n).read_bytes() == (tmp_path / "p50" / n).read_bytes()
        assert _sha((tmp_path / "p7" / n).read_bytes()) == next(p["sha256"] for p in a.parts if p["part"] == n)
    assert _listing(tmp_path / "p7") == names
    expected = {p: _sha(d) for p, d in [("meta.json", b"{}"), *files]}
    assert _extract(fmt, [tmp_path / "p7" / n for n in names], tmp_path / "x") == expected
    for m in a.members:           # the manifest's offsets point at each member's bytes
        with open(tmp_path / "p7" / m["part"], "rb") as f:
            f.seek(m["offset"])
            assert _sha(f.read(m["bytes"])) == m["sha256"] == expected[m["path"]]


@pytest.mark.parametrize("fmt", ["tar", "zip"])
def test_an_export_below_the_part_size_is_one_archive_without_part_suffix(fmt, tmp_path):
    inner = FsspecDirSink(str(tmp_path))
    for stale in (f"proj_part_001.{fmt}", f"proj.{fmt}.001", f"proj.{fmt}.0002"):   # earlier and current names
        (tmp_path / stale).write_bytes(b"left by an earlier run with smaller parts")
    files = _synthetic_files(3, 40, 20_000)
    result = finalize_archive(inner, "proj", 500 * 10 ** 6, _pack(inner, 500 * 10 ** 6, fmt, files, 4), [], fmt)
    discard_chunks(inner)
    assert [p["part"] for p in result.parts] == [f"proj.{fmt}"] == _listing(tmp_path)
    assert _extract(fmt, [tmp_path / f"proj.{fmt}"], tmp_path / "x") == {p: _sha(d) for p, d in files}


def test_an_interrupted_compaction_publishes_nothing_and_keeps_the_old_parts(tmp_path, monkeypatch):
    """Parts are written as temporaries and renamed only when all are complete: a failure while
    copying leaves the earlier run's archive files as they were and no temporary behind."""
    from maskcore.io import archive
    inner = FsspecDirSink(str(tmp_path))
    files = _synthetic_files(5, 60, 100_000)
    finalize_archive(inner, "proj", 1_000_000, _pack(inner, 1_000_000, "tar", files, 6), [])
    discard_chunks(inner)
    before = _tree(tmp_path)
    records = _pack(inner, 1_000_000, "tar", files[::-1], 6)
    copied, lock = [], threading.Lock()

    def failing_copy(self, *args):
        with lock:
            copied.append(args)
            fail = len(copied) == 5
        if fail:
            raise OSError("disk went away")
        return real_copy(self, *args)

    real_copy = archive._ChunkReader.copy
    monkeypatch.setattr(archive._ChunkReader, "copy", failing_copy)
    with pytest.raises(OSError, match="disk went away"):
        finalize_archive(inner, "proj", 1_000_000, records, [])
    discard_chunks(inner)
    inner.clear_temporaries()
    assert _tree(tmp_path) == before
    assert len(copied) >= 5       # other parts being written meanwhile are dropped too


def test_parts_are_filled_to_the_size_on_s3(s3_server, s3_bucket, monkeypatch, tmp_path):
    """The same compaction on S3 (members copied through the driver, each part one PUT or a
    multipart upload): every part but the last within 90-100 % of the size, valid, complete."""
    from maskcore.io import archive
    monkeypatch.setattr(archive, "SPOOL_BYTES", 300_000)   # parts spill to a local file, then put_file
    url, part_size = f"s3://{s3_bucket}/run", 1_000_000
    inner = FsspecDirSink(url, s3_server.options())
    files = _synthetic_files(8, 90, 95_000)
    result = finalize_archive(inner, "proj", part_size, _pack(inner, part_size, "tar", files, 9), [])
    discard_chunks(inner)
    fs = s3_server.filesystem()
    names = [p["part"] for p in result.parts]
    assert sorted(p.rsplit("/", 1)[-1] for p in fs.find(url)) == names and len(names) >= 4
    for p in result.parts:
        data = fs.cat_file(f"{url}/{p['part']}")
        assert _sha(data) == p["sha256"] and len(data) == p["bytes"] <= part_size
        (tmp_path / p["part"]).write_bytes(data)
    assert all(p["bytes"] >= 0.9 * part_size for p in result.parts[:-1])
    assert _extract("tar", [tmp_path / n for n in names], tmp_path / "x") == {p: _sha(d) for p, d in files}


def test_a_small_export_on_s3_is_one_archive_that_verifies(samples, s3_server, s3_bucket):
    from maskcore.exec.run import ExportConfig, run_export
    from maskcore.exec.verify import verify_destination

    url = f"s3://{s3_bucket}/out"
    cfg = ExportConfig(source=str(samples / "vector"), destination=url, part_size=500 * 10 ** 6,
                       storage_options=s3_server.options(), cluster="inprocess", items_per_partition=1)
    result = run_export(cfg, log=lambda msg: None)
    assert result.exit_code == 0
    assert [f["part"] for f in result.report["archive"]["files"]] == ["vector.tar"]
    fs = s3_server.filesystem()
    assert sorted(p.rsplit("/", 1)[-1] for p in fs.ls(url, detail=False)) == [".maskcore-meta", "vector.tar"]
    assert verify_destination(FsspecDirSink(url, s3_server.options())).clean


def test_a_run_whose_compaction_fails_leaves_the_last_export_verifiable(samples, tmp_path, monkeypatch):
    """run_export with 1 MB parts, then again with 2 MB parts failing while copying: the run
    raises, and the destination still verifies clean as the first run's export."""
    from maskcore.exec.run import ExportConfig, run_export
    from maskcore.exec.verify import verify_destination
    from maskcore.io import archive

    out = tmp_path / "o"
    cfg = ExportConfig(source=str(samples / "vector"), destination=str(out), part_size=1_000_000,
                       cluster="inprocess", layout_options={"masks": "machine"})
    first = run_export(cfg, log=lambda msg: None)
    assert first.exit_code == 0 and len(first.report["archive"]["files"]) > 1
    before = _tree(out)

    def failing_copy(self, *args):
        raise OSError("disk went away")

    monkeypatch.setattr(archive._ChunkReader, "copy", failing_copy)
    with pytest.raises(OSError, match="disk went away"):
        run_export(ExportConfig(**{**cfg.__dict__, "part_size": 2_000_000}), log=lambda msg: None)
    assert {p: h for p, h in _tree(out).items() if not p.startswith(".maskcore-meta/")} == {
        p: h for p, h in before.items() if not p.startswith(".maskcore-meta/")}
    assert verify_destination(FsspecDirSink(str(out))).clean
