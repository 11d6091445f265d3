"""Export into tar or zip archives: one ``<name>.tar`` (``.zip``), or parts ``<name>_part_001.tar``,
... of a size cap.

Parts are made by the workers, in parallel: each partition task packs the files it renders
into one or more *chunks* (``.maskcore/parts/<partition>-<k>.tar``/``.zip``), each a complete archive no
larger than the part size. After all tasks, the driver (:func:`finalize_archive`) puts the
project files (``meta.json``, colour maps) first and gives the chunks their final names in plan
order: with a part size every chunk becomes a part (a hard link or a server-side copy, no data
through the driver); without one, the chunks' *bodies* (their members, without the trailer) are
concatenated into one archive and one trailer is written after them from the chunk records.

Formats (``FORMATS``, :func:`resolve_archive_format`): ``tar`` (:mod:`maskcore.tarwriter`) and
``zip`` (:mod:`maskcore.zipwriter`). A format object has ``name``, ``suffix`` and five methods,
all pure: ``member(name, data) -> (header, fields)`` (the bytes before the data; ``fields`` are
kept in the member's record, e.g. its CRC-32), ``padding(size)`` (bytes after the data),
``directory_size(name, size, header_offset)`` and ``end_size(count, directory, body)`` (trailer
bytes a member adds and the fixed end: what a chunk needs to stay within the part size), and
``trailer(members, body)`` (the bytes after a body of ``body`` bytes holding ``members``).
A member's header never depends on its position, so bodies concatenate as they are: a tar's
trailer is its two end blocks, a zip's the central directory (rebuilt with the new offsets from
the records, no member data re-read) and end records.

Consequences worth knowing:
- A part never holds more than one partition's files, so there are at least as many parts as
  partitions with output; a part is full only when its partition renders enough bytes.
- A single file larger than a part (with its header and the trailer) gets a part of its own,
  bigger than the cap, and is flagged ``oversize`` in the manifest.
- Members keep the order the task writes them (items in plan order, each item's files
  together); no directory entries (``tar`` and ``unzip`` create parent folders).
- Chunks are named after the partition's identity (its resume key) so a re-run partition
  rewrites identical bytes under the same names; finalizing only copies or links, so a killed
  finalize can simply run again. :func:`discard_chunks` removes the chunks at the very end.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

import fsspec
import pyarrow as pa
from fsspec.implementations.local import LocalFileSystem

from ..codec.tar import END_OF_ARCHIVE, TarFormat
from ..codec.zip import ZipFormat
from ..errors import ConfigError, MaskcoreError
from ..paths import check_relpath
from .staging import TMP_DIR, temporary_relpath
from .storage import filesystem, redact

PARTS_DIR = ".maskcore/parts"
CHUNKS_KEY = b"maskcore.archive_chunks"     # result-table metadata: the partition's chunk records
MIN_PART_SIZE = 2048                         # tar: one header, one data block, the end-of-archive blocks
FORMATS = {f.name: f for f in (TarFormat(), ZipFormat())}
FORMAT_KEY = b"maskcore.archive_format"     # archive manifest metadata: the format
SPOOL_BYTES = 64 * 2 ** 20                   # a chunk bigger than this is staged on local disk
_COPY_BLOCK = 4 * 2 ** 20

_UNITS = {"": 1, "b": 1, "kb": 10 ** 3, "mb": 10 ** 6, "gb": 10 ** 9, "tb": 10 ** 12,
          "kib": 2 ** 10, "mib": 2 ** 20, "gib": 2 ** 30, "tib": 2 ** 40}
_SIZE_RE = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([A-Za-z]*)\s*")

MEMBERS_SCHEMA = pa.schema([
    ("path", pa.string()),        # member name = path relative to the export root
    ("part", pa.string()),        # archive file holding it, relative to the destination
    ("offset", pa.int64()),       # where its data starts in that file (for range reads)
    ("bytes", pa.int64()),
    ("sha256", pa.string()),
    ("oversize", pa.bool_()),     # alone in a part bigger than the part size
    ("format", pa.string()),      # "tar" or "zip" (the same for every row)
])
_ROW_SCHEMA = pa.schema([f for f in MEMBERS_SCHEMA if f.name != "format"])   # per-member fields


class ArchiveError(MaskcoreError, OSError):
    """A chunk is missing or differs from what its task recorded."""


def parse_size(text: str | int) -> int:
    """Bytes in ``"500MiB"``, ``"2GB"``, ``"1.5 GiB"`` or ``"100000"`` (units: B, KB/MB/GB/TB in
    steps of 1000, KiB/MiB/GiB/TiB in steps of 1024, any case); a positive whole number of bytes."""
    expected = "a size such as 500MiB, 2GB or 100000 (units B, KB, MB, GB, TB, KiB, MiB, GiB, TiB)"
    if isinstance(text, int) and not isinstance(text, bool):
        value = Decimal(text)
    else:
        match = _SIZE_RE.fullmatch(text) if isinstance(text, str) else None
        if match is None or match[2].lower() not in _UNITS:
            raise ConfigError(f"part size: expected {expected}, got {text!r}")
        try:
            value = Decimal(match[1]) * _UNITS[match[2].lower()]
        except InvalidOperation:
            raise ConfigError(f"part size: expected {expected}, got {text!r}") from None
    if value != value.to_integral_value() or value <= 0:
        raise ConfigError(f"part size: expected a positive whole number of bytes, got {text!r} "
                          f"(= {value} bytes)")
    return int(value)


def resolve_archive_format(requested: str | None, layout=None) -> str:
    """The archive format of a run: ``requested``, else the layout's ``default_archive_format``
    attribute, else ``"tar"``."""
    name = requested if requested is not None else (layout.default_archive_format if layout else None) or "tar"
    if name not in FORMATS:
        raise ConfigError(f"archive format: expected one of {sorted(FORMATS)}, got {name!r}")
    return name


def default_archive_name(source) -> str:
    """``<project id>_<project name>`` as the reference names its archive; the name alone
    when the project has no id."""
    name = source.project_name or "project"
    return f"{source.project_id}_{name}" if source.project_id is not None else name


def check_archive_name(name: str) -> str:
    """An archive name is one path component (no ``/``), usable as a file name."""
    if (not isinstance(name, str) or not name or name.startswith(".")
            or any(c in name for c in "/\\\x00")):
        raise ConfigError(f"archive name: expected a file name without '/' or a leading '.', got {name!r}")
    return name


def archive_files(name: str, n_parts: int | None, archive_format: str = "tar") -> list[str]:
    """Destination-relative names of the archive files: ``<name>.tar`` (``.zip``) or its parts."""
    suffix = FORMATS[archive_format].suffix
    if n_parts is None:
        return [f"{name}{suffix}"]
    return [f"{name}_part_{i:03d}{suffix}" for i in range(1, n_parts + 1)]


def _archive_pattern(name: str, suffixes) -> re.Pattern:
    alternatives = "|".join(re.escape(s) for s in sorted(suffixes))
    return re.compile(re.escape(name) + rf"(_part_\d{{3,}})?({alternatives})")


def refuse_overwriting_source(destination, name: str, source_url: str,
                              storage_options: dict | None = None, archive_format: str = "tar") -> None:
    """Refuse a run whose archive would replace the source (``x.tar`` exported into its own
    folder gets the default name ``x``). Call before any work."""
    check_archive_name(name)
    suffix = FORMATS[resolve_archive_format(archive_format)].suffix
    fs, root = _filesystem(destination)
    src_fs, src_path = filesystem(source_url.removeprefix("tar::"), storage_options)
    if type(src_fs) is not type(fs):
        return
    norm = os.path.realpath if isinstance(fs, LocalFileSystem) else (lambda p: p.rstrip("/"))
    src = norm(src_path)
    pattern = _archive_pattern(name, [suffix])
    if os.path.dirname(src) == norm(root) and pattern.fullmatch(os.path.basename(src)):
        raise ConfigError(f"archive name {name!r}: the archive would overwrite the source "
                          f"{redact(source_url, storage_options)!r}; choose another archive name "
                          "or destination")


# ---------------------------------------------------------------------------------------------
# Workers: one partition's files -> chunks


class ArchiveSink:
    """The task side of the sink seam (``maskcore.io.sinks.base.TaskSink``) for archive runs:
    what a partition task packs into, registered as the packer ``archive``; picklable.

    It holds no state of its own; :meth:`open_partition` gives one partition its own
    :class:`PartitionPacker` (a worker may run several partitions, in threads too, on one copy).
    """

    packs = True
    """Every partition packs all its files into its chunks: items are always rendered."""

    def __init__(self, inner, part_size: int | None = None, archive_format: str = "tar") -> None:
        if part_size is not None and (not isinstance(part_size, int) or part_size < MIN_PART_SIZE):
            raise ConfigError(f"part size: expected at least {MIN_PART_SIZE} bytes, got {part_size!r}")
        self.inner = inner
        self.part_size = part_size
        self.archive_format = resolve_archive_format(archive_format)

    @property
    def destination(self):
        """The folder sink the chunks (and the tasks' partial results) are written to."""
        return self.inner

    def open_partition(self, partition: int | str, first_item: tuple[str, str] = ("", "")) -> PartitionPacker:
        """A packer for one partition; ``partition`` names its chunks (an index or a key) and
        ``first_item`` (dataset, item) orders them among the others."""
        stem = f"{partition:06d}" if isinstance(partition, int) else str(partition)
        return PartitionPacker(self.inner, self.part_size, stem, tuple(first_item), self.archive_format)

    def write(self, relpath: str, data: bytes) -> None:
        raise TypeError("ArchiveSink packs per partition: write through open_partition(...), "
                        "or run tasks with maskcore.exec.task.run_partition")


TarPartSink = ArchiveSink   # its name before zip archives existed


class PartitionPacker:
    """Packs the files of one partition, in the order written, into chunks of at most
    ``part_size`` bytes; each chunk is written (atomically) as soon as it is full. A
    ``PartitionWriter`` of the sink seam: ``write``, then ``finish`` (its chunk records) or
    ``abort``."""

    def __init__(self, inner, part_size: int | None, stem: str, first_item: tuple = ("", ""),
                 archive_format: str = "tar") -> None:
        self.format = FORMATS[archive_format]
        check_relpath(f"{PARTS_DIR}/{stem}-000{self.format.suffix}")
        self.inner, self.part_size, self.stem, self.first_item = inner, part_size, stem, list(first_item)
        self.records: list[dict] = []
        self._chunk: _Staging | None = None
        self._members: list[dict] = []
        self._directory = 0                          # trailer bytes the open chunk's members need
        self._finished = False
        self._failed: BaseException | None = None   # a chunk could not be written

    def write(self, relpath: str, data: bytes) -> None:
        """Add one file (``relpath`` relative to the export root) to the archive."""
        if self._finished:
            raise ValueError(f"partition {self.stem}: already finished")
        if self._failed is not None:
            raise self._failed
        check_relpath(relpath)
        fmt = self.format
        header, fields = fmt.member(relpath, data)
        tail = fmt.padding(len(data))
        length = len(header) + len(data) + len(tail)
        alone = fmt.directory_size(relpath, len(data), 0)
        oversize = (self.part_size is not None
                    and length + alone + fmt.end_size(1, alone, length) > self.part_size)
        try:
            if self._chunk is not None and (oversize or not self._fits(relpath, len(data), length)):
                self._close_chunk()
            if self._chunk is None:
                self._chunk = _Staging(self.inner, f"{PARTS_DIR}/{self.stem}-{len(self.records):03d}{fmt.suffix}")
            at = self._chunk.size
            self._directory += fmt.directory_size(relpath, len(data), at)
            self._members.append({"path": relpath, "offset": at + len(header), "bytes": len(data),
                                  "sha256": hashlib.sha256(data).hexdigest(), "oversize": oversize,
                                  "header": at, **fields})
            for block in (header, data, tail):
                self._chunk.write(block)
            if oversize:
                self._close_chunk()
        except BaseException as exc:
            # Files of earlier items are already in the chunk and those items are recorded as
            # written: the whole partition must fail (and be re-run), not just this item.
            self._failed = exc
            raise

    def _fits(self, relpath: str, size: int, length: int) -> bool:
        """Whether a member of ``size`` data bytes, ``length`` bytes in the body, fits the open
        chunk with the trailer it then needs."""
        if self.part_size is None:
            return True
        body = self._chunk.size + length
        directory = self._directory + self.format.directory_size(relpath, size, self._chunk.size)
        return body + directory + self.format.end_size(len(self._members) + 1, directory, body) <= self.part_size

    def _close_chunk(self) -> None:
        chunk, self._chunk = self._chunk, None
        try:
            body = chunk.size
            for block in self.format.trailer(self._members, body):
                chunk.write(block)
            size, sha = chunk.size, chunk.sha256.hexdigest()
            chunk.commit()
        except BaseException as exc:
            self._failed = exc
            raise
        self.records.append({"chunk": chunk.relpath, "index": len(self.records), "bytes": size,
                             "sha256": sha, "format": self.format.name, "body": body,
                             "first_item": self.first_item, "members": self._members})
        self._members, self._directory = [], 0

    def finish(self) -> list[dict]:
        """Write the last chunk; return every chunk's record (name, format, size, body size,
        sha256, members).

        Raises if any chunk could not be written."""
        if self._failed is not None:
            raise self._failed
        if not self._finished:
            if self._chunk is not None:
                self._close_chunk()
            self._finished = True
        return self.records

    def abort(self) -> None:
        """Drop the chunk being filled (chunks already written stay; a re-run rewrites them)."""
        if self._chunk is not None:
            self._chunk.abort()
            self._chunk = None


def chunk_records(table: pa.Table) -> list[dict]:
    """The chunk records a :func:`run_archive_partition` result carries (``[]`` if none)."""
    raw = (table.schema.metadata or {}).get(CHUNKS_KEY)
    return json.loads(raw) if raw else []


def unpacked_outputs(manifest: pa.Table, records: list[dict]) -> list[str]:
    """Files the manifest says were written that no chunk holds (e.g. a partition resumed
    from a folder run); an archive run must not finish with any."""
    packed = {m["path"] for r in records for m in r["members"]}
    return sorted(o["path"] for outs in manifest.column("outputs").to_pylist() for o in outs or ()
                  if o["path"] not in packed)


# ---------------------------------------------------------------------------------------------
# Driver: chunks -> final archive files


@dataclass
class ArchiveResult:
    parts: list[dict]       # one per archive file: part, bytes, sha256, members, oversize
    members: list[dict]     # one per member, see MEMBERS_SCHEMA
    archive_format: str = "tar"

    def members_table(self) -> pa.Table:
        rows = pa.Table.from_pylist(self.members, schema=_ROW_SCHEMA)
        table = rows.append_column("format", pa.array([self.archive_format] * rows.num_rows, pa.string()))
        return table.replace_schema_metadata({FORMAT_KEY: self.archive_format.encode()})

    def summary(self) -> dict:
        """For the run report: format, files, bytes, and the oversize members."""
        return {"format": self.archive_format,
                "files": [{k: p[k] for k in ("part", "bytes", "sha256", "members")} for p in self.parts],
                "bytes": sum(p["bytes"] for p in self.parts),
                "oversize": [m["path"] for m in self.members if m["oversize"]]}


def finalize_archive(inner, name: str, part_size: int | None, records: list[dict],
                     project_files: list[tuple[str, bytes]], archive_format: str = "tar") -> ArchiveResult:
    """Give the workers' chunks their final names, project files first (see module doc).

    ``records``: every chunk record of the run (any order). Chunks are checked against their
    records (format, size) before use; with a part size each becomes ``<name>_part_NNN.tar``
    (``.zip``); without, their bodies are streamed into ``<name>.tar`` and one trailer written.
    Archive files (either format) of an earlier run under the same name that this run does not
    produce are removed. The chunks stay until :func:`discard_chunks`.
    """
    check_archive_name(name)
    archive_format = resolve_archive_format(archive_format)
    project = PartitionPacker(inner, part_size, "project", archive_format=archive_format)
    for path, data in project_files:
        project.write(path, data)
    chunks = project.finish() + sorted(records, key=_plan_order)
    for rec in chunks:
        _check_chunk(inner, rec, part_size, archive_format)
    if part_size is None:
        parts = [_concatenate(inner, archive_files(name, None, archive_format)[0], chunks, archive_format)]
    else:
        names = archive_files(name, len(chunks), archive_format)
        parts = [_publish(inner, rel, rec) for rel, rec in zip(names, chunks)]
    _remove_stale_archives(inner, name, {p["part"] for p in parts})
    members = [m for p in parts for m in p.pop("member_rows")]
    return ArchiveResult(parts, members, archive_format)


def _plan_order(rec: dict) -> tuple:
    """Chunks in plan order: partitions by their first (dataset, item), then chunk index."""
    return (list(rec["first_item"]), rec["chunk"].rsplit("-", 1)[0], rec["index"])


def discard_chunks(inner) -> None:
    """Remove the temporary chunks (call once the run's results are safely recorded)."""
    fs, root = _filesystem(inner)
    path = f"{root}/{PARTS_DIR}"
    fs.invalidate_cache(path)
    try:
        found = fs.find(path)
    except FileNotFoundError:
        found = []
    inner.delete(sorted(f"{PARTS_DIR}/{p[len(path) + 1:]}" for p in found))
    if isinstance(fs, LocalFileSystem):
        shutil.rmtree(path, ignore_errors=True)   # the folder itself


def _check_chunk(inner, rec: dict, part_size: int | None, archive_format: str) -> None:
    made = rec.get("format", "tar")
    if made != archive_format:
        raise ArchiveError(f"archive chunk {rec['chunk']!r}: expected a {archive_format} chunk, got {made} "
                           "(left by a run with another archive format?); run again with a full export")
    fs, root = _filesystem(inner)
    path = f"{root}/{check_relpath(rec['chunk'])}"
    fs.invalidate_cache(os.path.dirname(path))   # other processes wrote it
    try:
        size = fs.size(path)
    except FileNotFoundError:
        size = None
    if size != rec["bytes"]:
        raise ArchiveError(f"archive chunk {rec['chunk']!r}: expected {rec['bytes']} bytes as its task "
                           f"recorded, got {'no file' if size is None else f'{size} bytes'}; "
                           "run again with a full export")
    alone = len(rec["members"]) == 1 and rec["members"][0]["oversize"]
    if part_size is not None and rec["bytes"] > part_size and not alone:
        raise ArchiveError(f"archive chunk {rec['chunk']!r}: expected at most {part_size} bytes, got "
                           f"{rec['bytes']} (made with another part size?); run again with a full export")


def _member_rows(rec: dict, part: str, base: int) -> list[dict]:
    return [{"path": m["path"], "part": part, "offset": base + m["offset"], "bytes": m["bytes"],
             "sha256": m["sha256"], "oversize": m["oversize"]} for m in rec["members"]]


def _publish(inner, relpart: str, rec: dict) -> dict:
    """The chunk becomes a part: a hard link on a local disk, a server-side copy elsewhere."""
    fs, root = _filesystem(inner)
    src, dst = f"{root}/{rec['chunk']}", f"{root}/{check_relpath(relpart)}"
    if isinstance(fs, LocalFileSystem):
        tmp = _local_temporary(root)
        try:
            os.link(src, tmp)
        except OSError:
            fs.cp_file(src, tmp)
        os.replace(tmp, dst)
    else:
        fs.cp_file(src, dst)   # s3: server-side copy; cp_file, unlike copy, takes no globs
    return {"part": relpart, "bytes": rec["bytes"], "sha256": rec["sha256"],
            "members": len(rec["members"]), "oversize": any(m["oversize"] for m in rec["members"]),
            "member_rows": _member_rows(rec, relpart, 0)}


def _body_size(rec: dict) -> int:
    """Bytes of a chunk before its trailer (records of older tar chunks lack ``body``)."""
    return rec["body"] if "body" in rec else rec["bytes"] - len(END_OF_ARCHIVE)


def _concatenate(inner, relpart: str, chunks: list[dict], archive_format: str) -> dict:
    """One archive from all chunks: each chunk's body, then one trailer for all members."""
    fs, root = _filesystem(inner)
    out = _Staging(inner, relpart)
    rows, placed = [], []
    try:
        for rec in chunks:
            base = out.size
            rows += _member_rows(rec, relpart, base)
            placed += [{**m, "header": base + m["header"]} for m in rec["members"]]
            remaining = _body_size(rec)
            with fs.open(f"{root}/{rec['chunk']}", "rb") as f:
                while remaining > 0:
                    block = f.read(min(_COPY_BLOCK, remaining))
                    if not block:
                        raise ArchiveError(f"archive chunk {rec['chunk']!r}: ended {remaining} bytes early")
                    out.write(block)
                    remaining -= len(block)
        for block in FORMATS[archive_format].trailer(placed, out.size):
            out.write(block)
        size, sha = out.size, out.sha256.hexdigest()
        out.commit()
    except BaseException:
        out.abort()
        raise
    return {"part": relpart, "bytes": size, "sha256": sha, "members": len(rows),
            "oversize": False, "member_rows": rows}


def _remove_stale_archives(inner, name: str, keep: set[str]) -> None:
    fs, root = _filesystem(inner)
    pattern = _archive_pattern(name, [f.suffix for f in FORMATS.values()])
    fs.invalidate_cache(root)
    try:
        names = [p.rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(root, detail=False)]
    except FileNotFoundError:
        return
    stale = sorted(n for n in names if pattern.fullmatch(n) and n not in keep)
    inner.delete(stale)


# ---------------------------------------------------------------------------------------------
# I/O helpers


def _local_temporary(root: str) -> str:
    """A new temporary file path in the destination rooted at ``root`` (``maskcore.io.staging``:
    the run's end removes what is left there), its folder created."""
    os.makedirs(f"{root}/{TMP_DIR}", exist_ok=True)
    return f"{root}/{temporary_relpath()}"


def _filesystem(sink) -> tuple[fsspec.AbstractFileSystem, str]:
    """(filesystem, root path) of a folder sink (anything with ``url`` and ``storage_options``)."""
    fs, root = filesystem(sink.url, sink.storage_options)
    return fs, root.rstrip("/")


class _Staging:
    """A file being written whole-or-nothing under ``relpath`` of a folder sink.

    Local disk: written as a temporary of the destination (``maskcore.io.staging``), renamed
    into place by :meth:`commit`. Other
    filesystems: kept in memory, spilled to a local temporary file past ``SPOOL_BYTES``; the
    commit is one ``write`` of the sink (one PUT) or an ``fs.put_file`` (s3fs aborts a failed
    multipart upload), so nothing appears under the final name unless complete.
    """

    def __init__(self, inner, relpath: str) -> None:
        self.inner, self.relpath = inner, check_relpath(relpath)
        self.fs, root = _filesystem(inner)
        self.path = f"{root}/{relpath}"
        self.size, self.sha256 = 0, hashlib.sha256()
        self.local = isinstance(self.fs, LocalFileSystem)
        if self.local:
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            self.tmp = _local_temporary(root)
            self.file = open(self.tmp, "wb")
        else:
            self.tmp, self.file = None, io.BytesIO()

    def write(self, data: bytes) -> None:
        self.file.write(data)
        self.sha256.update(data)
        self.size += len(data)
        if self.tmp is None and self.size > SPOOL_BYTES:
            fd, self.tmp = tempfile.mkstemp(prefix="maskcore-chunk-")
            spilled = os.fdopen(fd, "wb")
            spilled.write(self.file.getbuffer())
            self.file = spilled

    def commit(self) -> None:
        try:
            if self.local:
                self.file.close()
                os.replace(self.tmp, self.path)
                self.tmp = None
            elif self.tmp is None:
                self.inner.write(self.relpath, self.file.getvalue())
            else:
                self.file.close()
                self.fs.put_file(self.tmp, self.path)
        except BaseException:
            self.abort()
            raise
        self.abort()  # removes a spilled temporary, if any

    def abort(self) -> None:
        self.file.close()
        if self.tmp is not None:
            try:
                os.unlink(self.tmp)
            except FileNotFoundError:
                pass
            self.tmp = None
