"""Export into tar or zip archives: one ``<name>.tar`` (``.zip``) when the export fits the part
size (or there is none), else parts ``<name>_part_001.tar``, ... of at most the part size.

Parts are made in two steps. The workers, in parallel: each partition task packs the files it
renders into one or more *chunks* (``.maskcore-meta/parts/<partition>-<k>.tar``/``.zip``), each a
complete archive no larger than the part size. Then the driver *compacts* them
(:func:`finalize_archive`): the project files (``meta.json``, colour maps) first, then every
chunk's members in plan order fill parts greedily up to the part size (:func:`plan_parts`); the
members' bytes (headers and data) are copied as they are, never re-encoded, and each part gets
its trailer rebuilt from the chunk records. A part that is exactly one chunk is that chunk (a
hard link locally, a server-side copy on object stores); other parts stream through the driver.

Formats (``FORMATS``, :func:`resolve_archive_format`): ``tar`` (:mod:`maskcore.codec.tar`) and
``zip`` (:mod:`maskcore.codec.zip`). A format object has ``name``, ``suffix`` and five methods,
all pure: ``member(name, data) -> (header, fields)`` (the bytes before the data; ``fields`` are
kept in the member's record, e.g. its CRC-32), ``padding(size)`` (bytes after the data),
``directory_size(name, size, header_offset)`` and ``end_size(count, directory, body)`` (trailer
bytes a member adds and the fixed end: what a part needs to stay within the part size), and
``trailer(members, body)`` (the bytes after a body of ``body`` bytes holding ``members``).
A member's header never depends on its position, so members move between archives as they are:
a tar's trailer is its two end blocks, a zip's the central directory (rebuilt with the new
offsets from the records, no member data re-read) and end records.

Consequences worth knowing:
- The parts depend only on the members and their order (plan order: items by dataset and name,
  each item's files together), not on the partitions or the workers: same inputs, same bytes
  and names. Every part but the last holds at least the part size minus the next member.
- A single file larger than a part (with its header and the trailer) gets a part of its own,
  bigger than the cap, and is flagged ``oversize`` in the manifest.
- No directory entries (``tar`` and ``unzip`` create parent folders).
- Chunks are named after the partition's identity (its resume key) so a re-run partition
  rewrites identical bytes under the same names. Locally every part is written as a temporary
  and all are renamed into place only when all are complete, then the earlier run's archive
  files this run does not produce are removed; on object stores each part is one PUT. Until the
  manifest is committed last, an interrupted compaction leaves a destination ``maskcore verify``
  reports as different. :func:`discard_chunks` removes the chunks at the very end.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

import fsspec
import pyarrow as pa
from fsspec.implementations.local import LocalFileSystem

from ..codec.tar import END_OF_ARCHIVE, TarFormat
from ..codec.zip import ZipFormat
from ..errors import ConfigError, MaskcoreError
from ..paths import STATE_DIR, check_relpath
from .staging import TMP_DIR, temporary_relpath
from .storage import filesystem, redact

PARTS_DIR = f"{STATE_DIR}/parts"
CHUNKS_KEY = b"maskcore.archive_chunks"     # result-table metadata: the partition's chunk records
MIN_PART_SIZE = 2048                         # tar: one header, one data block, the end-of-archive blocks
FORMATS = {f.name: f for f in (TarFormat(), ZipFormat())}
FORMAT_KEY = b"maskcore.archive_format"     # archive manifest metadata: the format
SPOOL_BYTES = 64 * 2 ** 20                   # a chunk bigger than this is staged on local disk
_COPY_BLOCK = 4 * 2 ** 20
COMPACT_THREADS = 4                          # parts written at a time by the driver's compaction

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
        self._fill = _Fill(self.format, part_size)   # the open chunk's body, directory, members
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
            if self._chunk is not None and (oversize or not self._fill.fits(relpath, len(data), length)):
                self._close_chunk()
            if self._chunk is None:
                self._chunk = _Staging(self.inner, f"{PARTS_DIR}/{self.stem}-{len(self.records):03d}{fmt.suffix}")
            at = self._chunk.size
            self._fill.add(relpath, len(data), length)
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
        self._members, self._fill = [], _Fill(self.format, self.part_size)

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
    """Compact the workers' chunks into the final archive files, project files first (see the
    module doc).

    ``records``: every chunk record of the run (any order). Chunks are checked against their
    records (format, size) before use. Their members, in plan order, fill parts greedily up to
    ``part_size`` (``None``: no limit): one part is ``<name>.tar`` (``.zip``), several are
    ``<name>_part_NNN.tar``. Every part is written under a temporary name first; archive files
    (either format) of an earlier run under the same name that this run does not produce are
    removed after all parts are in place. The chunks stay until :func:`discard_chunks`.
    """
    check_archive_name(name)
    archive_format = resolve_archive_format(archive_format)
    project = PartitionPacker(inner, part_size, "project", archive_format=archive_format)
    for path, data in project_files:
        project.write(path, data)
    chunks = project.finish() + sorted(records, key=_plan_order)
    for rec in chunks:
        _check_chunk(inner, rec, part_size, archive_format)
    layout = plan_parts(chunks, part_size, archive_format)
    names = archive_files(name, None if len(layout) == 1 else len(layout), archive_format)
    parts = _write_parts(inner, names, layout, chunks, archive_format)
    _remove_stale_archives(inner, name, {p["part"] for p in parts})
    members = [m for p in parts for m in p.pop("member_rows")]
    return ArchiveResult(parts, members, archive_format)


def plan_parts(chunks: list[dict], part_size: int | None, archive_format: str = "tar") -> list[list[tuple]]:
    """Which member bytes go into which part: a list of parts, each a list of ``(chunk index,
    member index, start, length)`` (the member's bytes in its chunk's body, headers included).

    Greedy in the given order: a member joins the open part if the part, with the trailer it then
    needs, stays within ``part_size``; otherwise the part is closed and a new one opened. A member
    flagged ``oversize`` (larger than any part) gets a part of its own. So every part but the last
    is at least ``part_size`` minus the next member's length, and the result depends only on the
    members and their order, never on how the workers chunked them."""
    fmt = FORMATS[archive_format]
    parts: list[list[tuple]] = []
    current: list[tuple] = []
    fill = _Fill(fmt, part_size)
    for c, rec in enumerate(chunks):
        members, body = rec["members"], _body_size(rec)
        for i, m in enumerate(members):
            start = m["header"]
            end = members[i + 1]["header"] if i + 1 < len(members) else body
            if current and (m["oversize"] or not fill.fits(m["path"], m["bytes"], end - start)):
                parts.append(current)
                current, fill = [], _Fill(fmt, part_size)
            current.append((c, i, start, end - start))
            fill.add(m["path"], m["bytes"], end - start)
            if m["oversize"]:
                parts.append(current)
                current, fill = [], _Fill(fmt, part_size)
    if current or not parts:
        parts.append(current)
    return parts


class _Fill:
    """Bytes of a part being filled: its body, its directory (zip) and its member count."""

    def __init__(self, fmt, part_size: int | None) -> None:
        self.fmt, self.part_size = fmt, part_size
        self.body = self.directory = self.count = 0

    def fits(self, path: str, size: int, length: int) -> bool:
        """Whether a member of ``size`` data bytes, ``length`` bytes in the body, fits with the
        trailer the part then needs."""
        if self.part_size is None:
            return True
        body = self.body + length
        directory = self.directory + self.fmt.directory_size(path, size, self.body)
        return body + directory + self.fmt.end_size(self.count + 1, directory, body) <= self.part_size

    def add(self, path: str, size: int, length: int) -> None:
        self.directory += self.fmt.directory_size(path, size, self.body)
        self.body += length
        self.count += 1


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


def _body_size(rec: dict) -> int:
    """Bytes of a chunk before its trailer (records of older tar chunks lack ``body``)."""
    return rec["body"] if "body" in rec else rec["bytes"] - len(END_OF_ARCHIVE)


def _write_parts(inner, names: list[str], layout: list[list[tuple]], chunks: list[dict],
                 archive_format: str) -> list[dict]:
    """Write every part of ``layout`` (see :func:`plan_parts`) under its name in ``names``, up to
    ``COMPACT_THREADS`` parts at a time (hashing, reading and writing release the GIL).

    A part that is one whole chunk is that chunk's bytes: linked (local) or copied server-side.
    Others are copied member by member through this process (the runs of consecutive members of
    one chunk as one range) and given a trailer rebuilt from the records. On a local disk every
    part stays a temporary until all are written, then all are renamed into place; on an object
    store each part is one PUT (or a multipart upload s3fs aborts on failure)."""
    fs, root = _filesystem(inner)
    local = isinstance(fs, LocalFileSystem)
    staged: list = []           # local temporaries, renamed once every part is complete
    guard = threading.Lock()

    def write(relpart: str, entries: list[tuple]) -> dict:
        whole = _whole_chunk(entries, chunks)
        if whole is not None:
            linked: list | None = [] if local else None
            part = _link_chunk(inner, relpart, chunks[whole], linked)
            with guard:
                staged.extend(linked or [])
            return part
        out = _Staging(inner, relpart)
        if local:
            with guard:
                staged.append(out)
        reader = _ChunkReader(fs, root)
        try:
            part = _copy_members(out, entries, chunks, reader, archive_format)
            if local:
                out.file.close()   # renamed with the others; no descriptor held meanwhile
            else:
                out.commit()
        except BaseException:
            out.abort()
            raise
        finally:
            reader.close()
        return part

    pool = ThreadPoolExecutor(max_workers=max(1, min(COMPACT_THREADS, len(layout))))
    try:
        futures = [pool.submit(write, relpart, entries) for relpart, entries in zip(names, layout)]
        parts = [f.result() for f in futures]
    except BaseException:
        pool.shutdown(wait=True, cancel_futures=True)
        for out in staged:
            out.abort()
        raise
    pool.shutdown()
    for out in staged:
        out.commit()
    return parts


def _whole_chunk(entries: list[tuple], chunks: list[dict]) -> int | None:
    """The chunk index when a part holds exactly one chunk's members, in order (its bytes are
    then the chunk's bytes: same members at the same offsets, same trailer)."""
    if not entries or any(c != entries[0][0] for c, *_ in entries):
        return None
    c = entries[0][0]
    return c if [i for _, i, _, _ in entries] == list(range(len(chunks[c]["members"]))) else None


def _link_chunk(inner, relpart: str, rec: dict, staged: list | None) -> dict:
    """The chunk becomes a part: a hard link on a local disk (renamed into place with the other
    parts when ``staged`` is a list), a server-side copy elsewhere."""
    fs, root = _filesystem(inner)
    src, dst = f"{root}/{rec['chunk']}", f"{root}/{check_relpath(relpart)}"
    if staged is not None:
        tmp = _local_temporary(root)
        try:
            os.link(src, tmp)
        except OSError:
            fs.cp_file(src, tmp)
        staged.append(_Linked(tmp, dst))
    else:
        fs.cp_file(src, dst)   # s3: server-side copy; cp_file, unlike copy, takes no globs
    return {"part": relpart, "bytes": rec["bytes"], "sha256": rec["sha256"],
            "members": len(rec["members"]), "oversize": any(m["oversize"] for m in rec["members"]),
            "member_rows": [_member_row(m, relpart, m["header"]) for m in rec["members"]]}


def _member_row(m: dict, part: str, at: int) -> dict:
    """The archive manifest row of member ``m`` whose header starts at ``at`` in ``part``."""
    return {"path": m["path"], "part": part, "offset": at + m["offset"] - m["header"], "bytes": m["bytes"],
            "sha256": m["sha256"], "oversize": m["oversize"]}


def _copy_members(out: _Staging, entries: list[tuple], chunks: list[dict], reader: _ChunkReader,
                  archive_format: str) -> dict:
    """Copy the members of ``entries`` into ``out`` (consecutive ranges of one chunk in one go),
    then write the trailer for them."""
    rows, placed = [], []
    run: list = []          # [chunk, start, length]: consecutive bytes still to copy
    at = out.size           # where the next member's header goes
    for c, i, start, length in entries:
        m = chunks[c]["members"][i]
        rows.append(_member_row(m, out.relpath, at))
        placed.append({**m, "header": at})
        at += length
        if run and run[0] == c and run[1] + run[2] == start:
            run[2] += length
            continue
        if run:
            reader.copy(chunks[run[0]]["chunk"], run[1], run[2], out)
        run = [c, start, length]
    if run:
        reader.copy(chunks[run[0]]["chunk"], run[1], run[2], out)
    for block in FORMATS[archive_format].trailer(placed, out.size):
        out.write(block)
    return {"part": out.relpath, "bytes": out.size, "sha256": out.sha256.hexdigest(), "members": len(rows),
            "oversize": any(m["oversize"] for m in rows), "member_rows": rows}


class _ChunkReader:
    """Reads byte ranges of chunks, keeping the last chunk open (ranges come in order)."""

    def __init__(self, fs, root: str) -> None:
        self.fs, self.root = fs, root
        self.name, self.file = None, None

    def copy(self, chunk: str, start: int, length: int, out: _Staging) -> None:
        if self.name != chunk:
            self.close()
            self.file, self.name = self.fs.open(f"{self.root}/{chunk}", "rb"), chunk
        self.file.seek(start)
        remaining = length
        while remaining > 0:
            block = self.file.read(min(_COPY_BLOCK, remaining))
            if not block:
                raise ArchiveError(f"archive chunk {chunk!r}: ended {remaining} bytes early")
            out.write(block)
            remaining -= len(block)

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
        self.name, self.file = None, None


class _Linked:
    """A local temporary (a hard link of a chunk) renamed into place by :meth:`commit`."""

    def __init__(self, tmp: str, path: str) -> None:
        self.tmp, self.path = tmp, path

    def commit(self) -> None:
        os.replace(self.tmp, self.path)
        self.tmp = None

    def abort(self) -> None:
        _remove(self.tmp)
        self.tmp = None


def _remove(path: str | None) -> None:
    """Remove a local temporary, if any and if still there."""
    if path is not None:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


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
            self.file = open(self.tmp, "wb")  # noqa: SIM115 - held across writes, closed by commit or abort
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
        _remove(self.tmp)
        self.tmp = None
