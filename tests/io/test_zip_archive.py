"""Zip archives: parts packed per partition, finalized on the driver, checked with Info-ZIP ``unzip``
and Python's ``zipfile`` against the plain folder export.

Most tests drive the export without Dask (each partition through ``run_archive_partition``, then
``finalize_archive``); one runs ``run_export`` end to end on worker processes. zip64 records are
exercised by lowering ``maskcore.codec.zip``'s limits instead of writing 4 GiB.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import os
import random
import struct
import subprocess
import zipfile
from pathlib import Path

import pyarrow.parquet as pq
import pytest

import maskcore.codec.zip as zw
import maskcore.io.archive as archive
from helpers import partitions_of
from helpers.oracles import needs_program
from maskcore.errors import ConfigError
from maskcore.exec.run import ExportConfig, run_export
from maskcore.exec.task import TaskSpec, run_archive_partition
from maskcore.io.archive import (
    FORMAT_KEY,
    ArchiveError,
    ArchiveSink,
    chunk_records,
    discard_chunks,
    finalize_archive,
    refuse_overwriting_source,
    resolve_archive_format,
)
from maskcore.io.sinks.fsdir import FsspecDirSink
from maskcore.layouts import get_layout

PART = 1_000_000   # the sample's two biggest previews (6.3 MB, 1.1 MB) go alone
NAME = "7_pets"
needs_unzip = needs_program("unzip")   # Info-ZIP


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _tree(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): _sha(p.read_bytes()) for p in root.rglob("*") if p.is_file()}


def _archives(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if not p.name.startswith("."))


def _unzip(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["unzip", *args], capture_output=True, text=True,
                          env={**os.environ, "LC_ALL": "C.UTF-8"})


def _check_zip(data: bytes, expected_names: list[str] | None = None) -> dict[str, str]:
    """Python's reading of one zip: CRCs good, fixed metadata, no directories; {name: sha256}."""
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        assert z.testzip() is None
        infos = z.infolist()
        assert {(i.date_time, i.compress_type, i.flag_bits, i.create_system, i.external_attr >> 16)
                for i in infos} == {((1980, 1, 1, 0, 0, 0), zipfile.ZIP_STORED, 0x800, 3, 0o100644)}
        assert not any(i.is_dir() for i in infos)
        if expected_names is not None:
            assert [i.filename for i in infos] == expected_names
        return {i.filename: _sha(z.read(i)) for i in infos}


def _extract_all(paths: list[Path], into: Path) -> dict[str, str]:
    """Every part through ``unzip -t`` and ``unzip`` into one folder; the resulting tree."""
    into.mkdir()
    for path in paths:
        tested = _unzip("-t", str(path))
        assert tested.returncode == 0 and "No errors detected" in tested.stdout, tested.stdout + tested.stderr
        done = _unzip("-q", "-n", str(path), "-d", str(into))
        assert done.returncode == 0, done.stderr
    return _tree(into)


@pytest.fixture(scope="module")
def export_files(folder) -> list[tuple[str, bytes]]:
    """The folder export's files, for tests about packing rather than rendering."""
    return sorted((p.relative_to(folder).as_posix(), p.read_bytes()) for p in folder.rglob("*")
                  if p.is_file() and ".maskcore-meta" not in p.parts)


def _pack(inner, part_size, files, per_partition=6):
    """Files packed as partition tasks would (groups of ``per_partition``), then finalized."""
    sink = ArchiveSink(inner, part_size, "zip")
    records = []
    for i in range(0, len(files), per_partition):
        packer = sink.open_partition(i, (f"group{i:04d}", ""))
        for path, data in files[i:i + per_partition]:
            packer.write(path, data)
        records += packer.finish()
    result = finalize_archive(inner, NAME, part_size, records, [], "zip")
    discard_chunks(inner)
    return result


def _zip_run(archive_project, dst: str, part_size, items_per_partition=2):
    """What an archive run does: one task per partition, then the driver's finalize."""
    src, meta, layout, project_files = archive_project
    inner = FsspecDirSink(dst)
    spec = TaskSpec(source=src, sink=ArchiveSink(inner, part_size, "zip"), layout=layout, meta=meta)
    records = []
    for i, part in enumerate(partitions_of(src, items_per_partition)):
        table = run_archive_partition(spec, part, f"key{i:02d}")
        assert set(table.column("status").to_pylist()) == {"ok"}
        records += chunk_records(table)
    result = finalize_archive(inner, NAME, part_size, records, project_files, "zip")
    discard_chunks(inner)
    return result


@pytest.fixture(scope="module")
def parts_run(archive_project, tmp_path_factory):
    dst = tmp_path_factory.mktemp("zipparts")
    return dst, _zip_run(archive_project, str(dst), PART)


# -- parts -----------------------------------------------------------------------------------

@needs_unzip
def test_zip_parts_are_valid_bounded_and_extract_to_the_folder_export(parts_run, folder_export, tmp_path):
    dst, result = parts_run
    names = _archives(dst)
    assert names == [f"{NAME}_part_{i:03d}.zip" for i in range(1, len(names) + 1)]
    assert [p["part"] for p in result.parts] == names and len(names) >= 5
    seen = {}
    for name in names:
        members = [m for m in result.members if m["part"] == name]
        seen.update(_check_zip((dst / name).read_bytes(), [m["path"] for m in members]))
        size = (dst / name).stat().st_size
        assert size <= PART or [m["oversize"] for m in members] == [True], (name, size)
    assert seen == folder_export
    assert _extract_all([dst / n for n in names], tmp_path / "x") == folder_export
    assert [m["path"] for m in result.members if m["part"] == names[0]][:3] == [
        "meta.json", "obj_class_to_machine_color.json", "obj_class_to_semantic_color.json"]
    oversize = sorted(m["path"] for m in result.members if m["oversize"])
    # a member is oversize when it cannot fit an empty part: local header (30 + name) + data +
    # its directory entry (46 + name) + the end record (22); the sample's biggest previews are
    too_big = sorted(m["path"] for m in result.members
                     if 30 + 46 + 22 + 2 * len(m["path"].encode()) + m["bytes"] > PART)
    assert oversize == too_big and "ds/masks_human/cat1.png" in oversize
    assert sorted(result.summary()["oversize"]) == oversize and result.summary()["format"] == "zip"


def test_manifest_offsets_are_range_reads_of_the_stored_files(parts_run, folder_export):
    dst, result = parts_run
    table = result.members_table()
    assert table.num_rows == len(folder_export)
    assert set(table.column("format").to_pylist()) == {"zip"} and table.schema.metadata[FORMAT_KEY] == b"zip"
    for m in table.to_pylist():
        with open(dst / m["part"], "rb") as f:
            f.seek(m["offset"])
            assert _sha(f.read(m["bytes"])) == m["sha256"] == folder_export[m["path"]]
    for p in result.parts:
        assert _sha((dst / p["part"]).read_bytes()) == p["sha256"]


def test_zip_parts_are_byte_identical_across_runs(archive_project, parts_run, tmp_path):
    dst, result = parts_run
    _zip_run(archive_project, str(tmp_path), PART)
    assert _archives(tmp_path) == [p["part"] for p in result.parts]
    for p in result.parts:
        assert (tmp_path / p["part"]).read_bytes() == (dst / p["part"]).read_bytes()


# -- one zip ---------------------------------------------------------------------------------

@needs_unzip
def test_single_zip_is_complete_and_independent_of_partitioning(archive_project, folder_export, tmp_path):
    result = _zip_run(archive_project, str(tmp_path / "a"), None, items_per_partition=2)
    _zip_run(archive_project, str(tmp_path / "b"), None, items_per_partition=6)
    path = tmp_path / "a" / f"{NAME}.zip"
    assert _archives(tmp_path / "a") == [path.name]
    data = path.read_bytes()
    assert data == (tmp_path / "b" / path.name).read_bytes()
    assert _check_zip(data, [m["path"] for m in result.members]) == folder_export
    assert _extract_all([path], tmp_path / "x") == folder_export
    assert [{k: p[k] for k in ("part", "bytes", "sha256", "members", "oversize")} for p in result.parts] == [
        {"part": path.name, "bytes": len(data), "sha256": _sha(data), "members": len(folder_export), "oversize": False}]
    assert b"PK\x06\x06" not in data[-2000:]          # small: no zip64 end record
    with zipfile.ZipFile(io.BytesIO(data)) as z:       # the rebuilt directory points at each local header
        offsets = [i.header_offset for i in z.infolist()]
    assert all(data[o:o + 4] == b"PK\x03\x04" for o in offsets)
    names = [data[o + 30:o + 30 + struct.unpack_from("<H", data, o + 26)[0]].decode() for o in offsets]
    assert names == [m["path"] for m in result.members]


# -- zip64 (limits lowered: the records appear with small data) ----------------------------

@needs_unzip
@pytest.mark.parametrize("part_size", [None, 3 * PART])
def test_zip64_records_read_back_with_unzip_and_zipfile(export_files, folder_export, monkeypatch, tmp_path,
                                                        part_size):
    monkeypatch.setattr(zw, "ZIP64_LIMIT", 5000)        # most files, offsets and directories overflow
    monkeypatch.setattr(zw, "ZIP64_COUNT_LIMIT", 4)     # parts of 4 members or more need the zip64 end
    result = _pack(FsspecDirSink(str(tmp_path / "out")), part_size, export_files)
    paths = [tmp_path / "out" / p["part"] for p in result.parts]
    zip64_ends = 0
    for path in paths:
        data = path.read_bytes()
        count = sum(m["part"] == path.name for m in result.members)
        end = data[-22:]
        assert end[:4] == b"PK\x05\x06"
        has64 = data[-98:-94] == b"PK\x06\x06" and data[-42:-38] == b"PK\x06\x07"
        cd_size, cd_offset = struct.unpack_from("<II", end, 12)
        assert has64 == (count >= 4 or cd_offset >= 5000 or cd_size >= 5000)
        assert struct.unpack_from("<H", end, 8)[0] == (0xFFFF if count >= 4 else count)
        zip64_ends += has64
        assert part_size is None or len(data) <= part_size or count == 1
        _check_zip(data)
    assert zip64_ends >= (1 if part_size is None else 2)
    with zipfile.ZipFile(paths[-1]) as z:
        big = [i for i in z.infolist() if i.file_size >= 5000]
        assert big and all(struct.unpack_from("<H", i.extra)[0] == 1 for i in big)   # zip64 extra
    assert _extract_all(paths, tmp_path / "x") == folder_export


@pytest.mark.parametrize("seed", range(6))
def test_random_files_fill_zip_parts_without_exceeding_them(tmp_path, monkeypatch, seed):
    """The fit check counts local header, data, directory entry and the end records, zip64 ones
    included: every chunk's size is what the formula says and no chunk that holds more than one
    member exceeds the part size."""
    rng = random.Random(seed)
    monkeypatch.setattr(zw, "ZIP64_LIMIT", rng.choice([300, 2000, 0xFFFFFFFF]))
    monkeypatch.setattr(zw, "ZIP64_COUNT_LIMIT", rng.choice([2, 5, 0xFFFF]))
    part_size = rng.randrange(2048, 9000)
    files = [(f"d{rng.randrange(3)}/{'n' * rng.randrange(1, 40)}{i}", rng.randbytes(rng.choice([0, 50, 700, 3000])))
             for i in range(40)]
    inner = FsspecDirSink(str(tmp_path))
    packer = ArchiveSink(inner, part_size, "zip").open_partition(0)
    for name, data in files:
        packer.write(name, data)
    records = packer.finish()
    got = []
    for rec in records:
        data = (tmp_path / rec["chunk"]).read_bytes()
        names = [m["path"] for m in rec["members"]]
        assert len(data) == rec["bytes"] and (len(data) <= part_size or len(names) == 1)
        assert rec["members"][0]["oversize"] == (len(data) > part_size)
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            assert z.testzip() is None
            got += [(i.filename, z.read(i)) for i in z.infolist()]
    assert got == files
    # a chunk closes only when the next member would not fit
    for rec, nxt in itertools.pairwise(records):
        if not nxt["members"][0]["oversize"]:
            first = nxt["members"][0]
            size = len(zw.zip_bytes([(m["path"], b"\0" * m["bytes"]) for m in rec["members"]]
                                    + [(first["path"], b"\0" * first["bytes"])]))
            assert size > part_size


def test_small_files_fill_a_zip_part_to_the_byte(tmp_path):
    inner = FsspecDirSink(str(tmp_path))
    packer = ArchiveSink(inner, 4096, "zip").open_partition(0)
    for i in range(3):                        # 30 + 4 + 1000 local, 46 + 4 central each
        packer.write(f"d/f{i}", bytes([i]) * 1000)
    packer.write("d/fx", b"x" * (4096 - 22 - 3 * 1084 - 84))    # exactly fills the part
    packer.write("d/big", b"B" * 5000)
    packer.write("d/last", b"L")
    records = packer.finish()
    assert [r["bytes"] for r in records] == [4096, 5000 + 30 + 5 + 46 + 5 + 22, 1 + 30 + 6 + 46 + 6 + 22]
    assert [[m["oversize"] for m in r["members"]] for r in records] == [[False] * 4, [True], [False]]
    result = finalize_archive(inner, "s", 4096, records, [], "zip")
    assert [p["part"] for p in result.parts] == ["s_part_001.zip", "s_part_002.zip", "s_part_003.zip"]


def test_sizes_the_packer_predicts_match_the_bytes_written_near_the_real_limits():
    for size in (0, 1, zw.ZIP64_LIMIT - 1, zw.ZIP64_LIMIT, 2 ** 40):
        for offset in (0, zw.ZIP64_LIMIT - 1, zw.ZIP64_LIMIT, 2 ** 41):
            record = zw.central_header("ds/ñ.png", size, 7, offset)
            assert len(record) == zw.central_header_size("ds/ñ.png", size, offset)
            assert (record[20:24] == b"\xff" * 4) == (size >= 0xFFFFFFFF)
            assert (record[42:46] == b"\xff" * 4) == (offset >= 0xFFFFFFFF)
        header = zw.local_header("x", size, 7)
        assert (len(header) == 30 + 1 + 20) == (size >= 0xFFFFFFFF)
    for count in (0, 0xFFFE, 0xFFFF):
        for cd in (0, 0xFFFFFFFE, 0xFFFFFFFF):
            assert len(zw.end_records(count, cd, cd)) == zw.end_size(count, cd, cd)
            assert (len(zw.end_records(count, cd, cd)) == 98) == (count >= 0xFFFF or cd >= 0xFFFFFFFF)
    with pytest.raises(ValueError, match="65535"):
        zw.local_header("a" * 70000, 1, 0)


# -- formats, names, stale files -------------------------------------------------------------

def test_format_resolution_follows_request_then_layout_then_tar():
    class Cvat:
        default_archive_format = "zip"
    assert resolve_archive_format(None, Cvat()) == "zip"
    assert resolve_archive_format("tar", Cvat()) == "tar"
    assert resolve_archive_format(None, get_layout("supervisely", {})) == "tar"
    assert resolve_archive_format(None) == "tar"
    with pytest.raises(ConfigError, match=r"archive format: expected one of \['tar', 'zip'\], got 'rar'"):
        resolve_archive_format("rar")


def test_a_zip_that_would_replace_the_source_is_refused(tmp_path):
    (tmp_path / "task.zip").write_bytes(zw.zip_bytes([("annotations.xml", b"<x/>")]))
    sink = FsspecDirSink(str(tmp_path))
    with pytest.raises(ConfigError, match="overwrite the source"):
        refuse_overwriting_source(sink, "task", str(tmp_path / "task.zip"), archive_format="zip")
    refuse_overwriting_source(sink, "task", str(tmp_path / "task.zip"), archive_format="tar")


def test_chunks_of_another_format_are_refused_and_stale_tars_removed(archive_project, export_files, tmp_path):
    src, meta, layout, project_files = archive_project
    inner = FsspecDirSink(str(tmp_path))
    spec = TaskSpec(source=src, sink=ArchiveSink(inner, PART, "tar"), layout=layout, meta=meta)
    tar_records = chunk_records(run_archive_partition(spec, partitions_of(src, 2)[0], "t"))
    with pytest.raises(ArchiveError, match="expected a zip chunk, got tar"):
        finalize_archive(inner, NAME, PART, tar_records, project_files, "zip")
    discard_chunks(inner)
    (tmp_path / f"{NAME}_part_001.tar").write_bytes(b"an earlier tar run")
    (tmp_path / f"{NAME}.tar").write_bytes(b"an earlier tar run")
    result = _pack(inner, None, export_files)
    assert _archives(tmp_path) == [f"{NAME}.zip"] == [p["part"] for p in result.parts]


# -- S3 and a whole run ----------------------------------------------------------------------

@needs_unzip
@pytest.mark.parametrize("part_size", [None, 300_000])
def test_zip_archive_on_s3(export_files, folder_export, s3_server, s3_bucket, monkeypatch, tmp_path, part_size):
    monkeypatch.setattr(archive, "SPOOL_BYTES", 200_000)   # the bigger chunks go through put_file
    url = f"s3://{s3_bucket}/run"
    result = _pack(FsspecDirSink(url, s3_server.options()), part_size, export_files, per_partition=10)
    fs = s3_server.filesystem()
    assert sorted(p.rsplit("/", 1)[-1] for p in fs.find(url)) == sorted(p["part"] for p in result.parts)
    paths = []
    for p in result.parts:
        data = fs.cat_file(f"{url}/{p['part']}")
        assert _sha(data) == p["sha256"]
        assert part_size is None or len(data) <= part_size or p["oversize"]
        paths.append(tmp_path / p["part"])
        paths[-1].write_bytes(data)
    assert _extract_all(paths, tmp_path / "x") == folder_export


@needs_unzip
def test_run_export_writes_zip_parts_and_records_the_format(samples, folder_export, dask_client, tmp_path):
    cfg = ExportConfig(source=str(samples / "vector"), destination=str(tmp_path / "out"), archive=True,
                       part_size=PART, archive_format="zip", archive_name="pets", items_per_partition=2)
    result = run_export(cfg, log=lambda msg: None, client=dask_client)
    assert result.exit_code == 0 and result.report["archive"]["format"] == "zip"
    out = tmp_path / "out"
    names = _archives(out)
    assert names and all(n.startswith("pets_part_") and n.endswith(".zip") for n in names)
    assert _extract_all([out / n for n in names], tmp_path / "x") == folder_export
    manifest = pq.read_table(out / ".maskcore-meta" / "archive_manifest.parquet")
    assert manifest.schema.metadata[FORMAT_KEY] == b"zip"
    assert set(manifest.column("format").to_pylist()) == {"zip"}
    assert sorted(manifest.column("part").unique().to_pylist()) == names
    assert not (out / ".maskcore-meta" / "parts").exists()


def test_an_unknown_archive_format_stops_the_run_before_any_work(samples, tmp_path):
    with pytest.raises(ConfigError, match="archive_format: expected 'tar' or 'zip', got '7z'"):
        ExportConfig(source=str(samples / "vector"), destination=str(tmp_path / "out"), archive=True,
                     archive_format="7z")
    assert not (tmp_path / "out").exists()
