"""Conformance of every registered sink (fsspec ``tests/abstract`` style): a sink gets this whole
suite by being registered and, for a destination, naming the locations it is tried on in
``LOCATIONS``.

What every sink promises (``maskcore.io.sinks.base``). A destination (``SINKS``) satisfies both
halves of the seam; it writes, reads, lists and deletes files under safe relative paths; a write
that fails leaves no file and no temporary, and ``clear_temporaries`` removes what killed writers
left; it pickles without its filesystem; a Dask worker writes the very bytes the driver writes. A
packer (``PACKERS``), for every archive format (``io.archive.FORMATS``): satisfies the task side
and ``packs``; its chunks are complete archives holding exactly the files written, the same bytes
every time, through a pickled copy and in a Dask worker; an aborted or failed partition leaves
no incomplete chunk and no temporary.
"""

from __future__ import annotations

import io
import os
import pickle
import sys
import tarfile
import uuid
import zipfile

import cloudpickle
import pytest

from maskcore.errors import UnsafePathError
from maskcore.io.archive import FORMATS, PARTS_DIR
from maskcore.io.sinks import PACKERS, SINKS, get_packer, get_sink
from maskcore.io.sinks.base import TASK_SINK_HOOKS, DestinationSink, PartitionWriter, TaskSink
from maskcore.io.staging import TMP_DIR, temporary_relpath

LOCATIONS = {  # destination sink -> the kinds of location it is tried on; a new sink adds its own
    "dir": ["local", "memory"],
}
DESTINATIONS = [(name, where) for name in sorted(LOCATIONS) for where in LOCATIONS[name]]
PACKED = [(name, fmt) for name in sorted(PACKERS) for fmt in sorted(FORMATS)]
FILES = [("meta.json", b'{"classes": []}'), ("ds/masks/a.png", bytes(range(256)) * 9),
         ("ds/ann/a.jpg.json", b"{}"), ("ds/sub dir/café.txt", b"x" * 700),
         ("empty.bin", b"")]


def test_every_registered_sink_is_covered():
    assert sorted(LOCATIONS) == sorted(SINKS), "add the new sink's locations to LOCATIONS"
    assert sorted(PACKERS) and all(name in PACKERS for name, _ in PACKED)


def _url(where: str, tmp_path) -> str:
    if where == "local":
        return str(tmp_path / "dst")
    return f"memory://maskcore-sinks-{uuid.uuid4().hex}"


def _fail_writes(where: str, sink, monkeypatch) -> None:
    """Make the next file write fail where it would become visible (a full disk, a failed PUT)."""
    def boom(*args, **kwargs):
        raise OSError(28, "No space left on device")
    if where == "local":
        monkeypatch.setattr(os, "replace", boom)
    else:
        monkeypatch.setattr(type(sink._open()[0]), "pipe_file", boom)


def _by_value():
    """Dask workers unpickle this module's functions by value, whatever their sys.path."""
    cloudpickle.register_pickle_by_value(sys.modules[__name__])


def write_files(sink, files) -> None:
    for path, data in files:
        sink.write(path, data)


# --- destinations ------------------------------------------------------------------------------

@pytest.mark.parametrize("name,where", DESTINATIONS)
def test_shape_of_a_destination(name, where, tmp_path):
    sink = get_sink(name, _url(where, tmp_path))
    assert isinstance(sink, DestinationSink) and isinstance(sink, TaskSink)
    assert all(hasattr(sink, hook) for hook in TASK_SINK_HOOKS)
    assert sink.packs is False and sink.destination is sink
    writer = sink.open_partition(0, ("ds", "a.jpg"))
    assert isinstance(writer, PartitionWriter)
    writer.write("x.txt", b"x")
    assert writer.finish() is None and sink.read("x.txt") == b"x"


@pytest.mark.parametrize("name,where", DESTINATIONS)
def test_files_are_written_read_listed_and_deleted(name, where, tmp_path):
    sink = get_sink(name, _url(where, tmp_path))
    write_files(sink, FILES)
    assert {p: sink.read(p) for p, _ in FILES} == dict(FILES)
    assert sink.walk() == sorted(p for p, _ in FILES) and sink.walk("ds/masks") == ["ds/masks/a.png"]
    assert sink.listdir("ds/ann") == ["a.jpg.json"] and sink.listdir("nowhere") == []
    sink.write("ds/masks/a.png", b"new")
    assert sink.read("ds/masks/a.png") == b"new"
    sink.create_exclusive("lock.json", b"1")
    with pytest.raises(FileExistsError):
        sink.create_exclusive("lock.json", b"2")
    assert sink.read("lock.json") == b"1"
    sink.delete(["meta.json", "never-written.png"])
    assert not sink.exists("meta.json") and sink.exists("lock.json")
    for bad in ("../x", "/abs", "a//b", "a/./b", "a\\b", ""):
        with pytest.raises(UnsafePathError):
            sink.write(bad, b"x")


@pytest.mark.parametrize("name,where", DESTINATIONS)
def test_a_failed_write_leaves_no_file_and_no_temporary(name, where, tmp_path, monkeypatch):
    sink = get_sink(name, _url(where, tmp_path))
    sink.write("before.txt", b"kept")
    with monkeypatch.context() as patch:
        _fail_writes(where, sink, patch)
        with pytest.raises(OSError):
            sink.write("ds/failed.png", b"partial?")
        with pytest.raises(OSError):
            sink.write("before.txt", b"replaced?")
    assert not sink.exists("ds/failed.png") and sink.read("before.txt") == b"kept"
    assert sink.listdir(TMP_DIR) == [] and sink.walk() == ["before.txt"]


@pytest.mark.parametrize("name,where", DESTINATIONS)
def test_clear_temporaries_removes_what_killed_writers_left(name, where, tmp_path):
    sink = get_sink(name, _url(where, tmp_path))
    sink.write("out.png", b"x")
    for _ in range(3):  # as a killed writer leaves them
        sink.write(temporary_relpath(), b"half a file")
    sink.clear_temporaries()
    assert sink.listdir(TMP_DIR) == [] and sink.walk() == ["out.png"]


@pytest.mark.parametrize("name,where", DESTINATIONS)
def test_a_destination_pickles_without_its_filesystem(name, where, tmp_path):
    sink = get_sink(name, _url(where, tmp_path))
    sink.write("a.txt", b"a")
    state = sink.__getstate__()
    assert set(state) <= {"url", "storage_options"} | {k for k, v in state.items() if v is None}
    copy = pickle.loads(pickle.dumps(sink))
    copy.write("b.txt", b"b")
    assert copy.read("a.txt") == b"a" and sink.read("b.txt") == b"b"


@pytest.mark.parametrize("name", sorted(LOCATIONS))
def test_a_dask_worker_writes_the_in_process_bytes(name, tmp_path, dask_client):
    _by_value()
    local, remote = get_sink(name, str(tmp_path / "local")), get_sink(name, str(tmp_path / "remote"))
    write_files(local, FILES)
    dask_client.submit(write_files, remote, FILES, pure=False).result()
    assert remote.walk() == local.walk() and all(remote.read(p) == local.read(p) for p in local.walk())


# --- packers -----------------------------------------------------------------------------------

def pack_files(task_sink, name, files, first=("ds", "a.jpg")) -> list[dict]:
    writer = task_sink.open_partition(name, first)
    write_files(writer, files)
    return writer.finish()


def _chunks(destination, records) -> dict[str, bytes]:
    return {r["chunk"]: destination.read(r["chunk"]) for r in records}


def _members(data: bytes, fmt: str) -> list[tuple[str, bytes]]:
    if fmt == "zip":
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            assert z.testzip() is None
            return [(i.filename, z.read(i)) for i in z.infolist()]
    with tarfile.open(fileobj=io.BytesIO(data)) as t:
        return [(m.name, t.extractfile(m).read()) for m in t.getmembers()]


@pytest.mark.parametrize("part_size", [None, 4096])
@pytest.mark.parametrize("name,fmt", PACKED)
def test_chunks_hold_exactly_the_files_the_same_bytes_every_time(name, fmt, part_size, tmp_path):
    destination = get_sink("dir", str(tmp_path / "a"))
    packer = get_packer(name, destination, part_size, fmt)
    assert isinstance(packer, TaskSink) and all(hasattr(packer, hook) for hook in TASK_SINK_HOOKS)
    assert packer.packs is True and isinstance(packer.destination, DestinationSink)
    records = pack_files(packer, "k1", FILES)
    chunks = _chunks(packer.destination, records)
    assert chunks and all(path.startswith(PARTS_DIR + "/") for path in chunks)
    assert [m for data in chunks.values() for m in _members(data, fmt)] == FILES
    if part_size is not None:
        oversize = {r["chunk"] for r in records if any(m["oversize"] for m in r["members"])}
        assert all(len(data) <= part_size for path, data in chunks.items() if path not in oversize)
    again = pack_files(get_packer(name, get_sink("dir", str(tmp_path / "b")), part_size, fmt), "k1", FILES)
    assert again == records and _chunks(get_sink("dir", str(tmp_path / "b")), again) == chunks
    copy = pickle.loads(pickle.dumps(packer))
    assert pack_files(copy, "k1", FILES) == records and _chunks(destination, records) == chunks
    assert destination.listdir(TMP_DIR) == []


@pytest.mark.parametrize("part_size", [None, 4096])
@pytest.mark.parametrize("name,fmt", PACKED)
def test_an_aborted_partition_leaves_no_incomplete_chunk_and_no_temporary(name, fmt, part_size, tmp_path):
    destination = get_sink("dir", str(tmp_path))
    writer = get_packer(name, destination, part_size, fmt).open_partition("k", ("ds", "a.jpg"))
    write_files(writer, FILES)
    writer.abort()
    for path in destination.walk():  # with a part size, chunks already full stay: whole archives
        assert path.startswith(PARTS_DIR + "/") and _members(destination.read(path), fmt)
    if part_size is None:
        assert destination.walk() == []
    assert destination.listdir(TMP_DIR) == []


@pytest.mark.parametrize("name,fmt", PACKED)
def test_a_failed_chunk_write_leaves_no_chunk_and_no_temporary(name, fmt, tmp_path, monkeypatch):
    destination = get_sink("dir", str(tmp_path))
    writer = get_packer(name, destination, None, fmt).open_partition("k", ("ds", "a.jpg"))
    write_files(writer, FILES)
    with monkeypatch.context() as patch:
        _fail_writes("local", destination, patch)
        with pytest.raises(OSError):
            writer.finish()
    writer.abort()
    with pytest.raises(OSError):  # a partition that failed stays failed
        writer.write("more.txt", b"x")
    assert destination.walk() == [] and destination.listdir(TMP_DIR) == []


@pytest.mark.parametrize("name,fmt", PACKED)
def test_a_dask_worker_packs_the_in_process_bytes(name, fmt, tmp_path, dask_client):
    _by_value()
    local = get_packer(name, get_sink("dir", str(tmp_path / "local")), 4096, fmt)
    remote = get_packer(name, get_sink("dir", str(tmp_path / "remote")), 4096, fmt)
    records = pack_files(local, "k", FILES)
    assert dask_client.submit(pack_files, remote, "k", FILES, pure=False).result() == records
    assert _chunks(remote.destination, records) == _chunks(local.destination, records)
