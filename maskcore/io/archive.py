"""Export into tar or zip archives: one ``<name>.tar`` (``.zip``) when the export fits the part
size (or there is none), else parts of at most the part size: ``<name>.tar.001``, ``.002``, ...
(tar) or ``<name>_part_001.zip``, ... (zip), see :func:`archive_files`.

Tar parts are named and joined as the reference app's split archives are (the Supervisely SDK's
``archive_directory(split=...)`` cuts one tar into ``<name>.tar.001``, ...): the concatenation of
the parts in name order (``cat '<name>.tar'* > x.tar``; 7-Zip opening ``<name>.tar.001``) is one
valid tar. Unlike the SDK's raw byte slices, every part is whole members, so each part also
extracts alone; only the last part ends with the end-of-archive blocks (a tar ends at its first
two zero blocks: GNU tar stops there with status 0). Zip parts are independent zips, each with
its central directory (a zip cannot be concatenated; ``.zip.001`` would promise raw slices of one
zip, which they are not): ``JOINED_FORMATS`` says which formats join.

Parts are made in two steps. The workers, in parallel: each partition task packs the files it
renders into one or more *chunks* (``.maskcore-meta/parts/<partition>-<k>.tar``/``.zip``), each a
complete archive no larger than the part size (tar chunks without the end blocks, the form of
every part but the last). Then the driver *compacts* them
(:func:`finalize_archive`): the project files (``meta.json``, colour maps) first, then every
chunk's members in plan order fill parts greedily up to the part size (:func:`plan_parts`); the
members' bytes (headers and data) are copied as they are, never re-encoded, and each part that
ends an archive gets its trailer rebuilt from the chunk records. A part that is exactly one chunk,
trailer included or left out as the part needs, is that chunk (a hard link locally, a server-side
copy on object stores); other parts stream through the driver.

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
  and names. Every part but the last holds at least the part size minus the next member. Every
  part leaves room for the trailer, so which members a part holds never depends on whether it is
  the last.
- A single file larger than a part (with its header and the trailer) gets a part of its own,
  bigger than the cap, and is flagged ``oversize`` in the manifest.
- No directory entries (``tar`` and ``unzip`` create parent folders).
- Chunks are named after the partition's identity (its resume key) so a re-run partition
  rewrites identical bytes under the same names. Locally every part is written as a temporary
  and all are renamed into place only when all are complete, then the earlier run's archive
  files this run does not produce are removed; on object stores each part is one PUT. Until the
  manifest is committed last, an interrupted compaction leaves a destination ``maskcore verify``
  reports as different; a run publishes under a journal (``begin_publish``), so the next run
  puts the old set of archive files back (:mod:`.archive_publish`) before anything else.
  :func:`discard_chunks` removes the chunks at the very end.
- A later run with the same settings keeps the parts nothing changed in and rewrites the others
  (:mod:`maskcore.io.archive_update`); the archive manifest records what that needs (each
  member's header offset, length and CRC-32; each part's body size and change stamp).
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
from .archive_publish import begin_publish
from .staging import TMP_DIR, temporary_relpath
from .storage import filesystem, redact

PARTS_DIR = f"{STATE_DIR}/parts"
CHUNKS_KEY = b"maskcore.archive_chunks"     # result-table metadata: the partition's chunk records
MIN_PART_SIZE = 2048                         # tar: one header, one data block, the end-of-archive blocks
FORMATS = {f.name: f for f in (TarFormat(), ZipFormat())}
JOINED_FORMATS = frozenset({"tar"})          # parts join into one archive: only the last has the trailer
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
    ("header", pa.int64()),       # where its header starts in the part (a later run copies it from there)
    ("length", pa.int64()),       # its bytes in the part: header, data, padding
    ("crc32", pa.int64()),        # zip: the CRC-32 its central directory entry needs (tar: null)
])
_ROW_SCHEMA = pa.schema([f for f in MEMBERS_SCHEMA if f.name != "format"])   # per-member fields
PARTS_KEY = b"maskcore.archive_parts"       # archive manifest metadata: the parts (name, bytes, sha256, body, stamp)


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
    """Destination-relative names of the archive files: ``<name>.tar`` (``.zip``), or its parts:
    ``<name>.tar.001``, ... as the reference's split archives (tar parts join into one archive),
    ``<name>_part_001.zip``, ... (each zip part is a zip of its own). Numbers have 3 digits, or
    as many as the part count has, on every part: a glob (``cat '<name>.tar'*``) lists them in
    order."""
    suffix = FORMATS[archive_format].suffix
    if n_parts is None:
        return [f"{name}{suffix}"]
    width = max(3, len(str(n_parts)))
    if archive_format in JOINED_FORMATS:
        return [f"{name}{suffix}.{i:0{width}d}" for i in range(1, n_parts + 1)]
    return [f"{name}_part_{i:0{width}d}{suffix}" for i in range(1, n_parts + 1)]


def legacy_archive_files(name: str, n_parts: int | None, archive_format: str = "tar") -> list[str]:
    """The names earlier maskcore versions gave tar parts: ``<name>_part_001.tar``, ... (each a whole tar)."""
    suffix = FORMATS[archive_format].suffix
    if n_parts is None:
        return [f"{name}{suffix}"]
    return [f"{name}_part_{i:03d}{suffix}" for i in range(1, n_parts + 1)]


def part_ends(n_parts: int, archive_format: str) -> list[bool]:
    """Which of ``n_parts`` parts end with the format's trailer: every zip part, the last tar part."""
    joined = archive_format in JOINED_FORMATS
    return [not joined or k == n_parts - 1 for k in range(n_parts)]


def _archive_pattern(name: str, suffixes) -> re.Pattern:
    """Archive files of ``name``, current and legacy names: ``<name>.tar``, ``<name>.tar.001``,
    ``<name>_part_001.tar`` (any of ``suffixes``)."""
    alternatives = "|".join(re.escape(s) for s in sorted(suffixes))
    return re.compile(re.escape(name) + rf"(_part_\d{{3,}})?({alternatives})(\.\d{{3,}})?")


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
    """Every partition packs all its files into its chunks: items are always rendered. False for
    an incremental archive run (``render_all=False``): unchanged items are skipped as in a folder
    run, their members stay where the previous run's parts hold them (:mod:`.archive_update`)."""

    def __init__(self, inner, part_size: int | None = None, archive_format: str = "tar",
                 render_all: bool = True) -> None:
        self.packs = render_all
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
            if self.format.name not in JOINED_FORMATS:   # a tar chunk is the form of a middle part
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
    mode: str = "full"      # "full": compacted from chunks; "incremental" / "repack": see archive_update
    written: list[str] | None = None   # the archive files this run wrote (None: every one)

    def members_table(self) -> pa.Table:
        rows = pa.Table.from_pylist(self.members, schema=_ROW_SCHEMA)
        table = rows.add_column(rows.schema.get_field_index("oversize") + 1, "format",
                                pa.array([self.archive_format] * rows.num_rows, pa.string()))
        parts = [{k: p.get(k) for k in ("part", "bytes", "sha256", "body", "stamp")} for p in self.parts]
        return table.replace_schema_metadata({FORMAT_KEY: self.archive_format.encode(),
                                              PARTS_KEY: json.dumps(parts).encode()})

    def summary(self) -> dict:
        """For the run report: format, files, bytes, the oversize members, and what this run
        wrote (the files a user holding the previous parts must fetch again) and kept."""
        written = [p["part"] for p in self.parts] if self.written is None else self.written
        return {"format": self.archive_format,
                "files": [{k: p[k] for k in ("part", "bytes", "sha256", "members")} for p in self.parts],
                "bytes": sum(p["bytes"] for p in self.parts),
                "oversize": [m["path"] for m in self.members if m["oversize"]],
                "mode": self.mode, "files_written": written, "files_kept": len(self.parts) - len(written),
                "bytes_written": sum(p["bytes"] for p in self.parts if p["part"] in set(written))}


def finalize_archive(inner, name: str, part_size: int | None, records: list[dict],
                     project_files: list[tuple[str, bytes]], archive_format: str = "tar",
                     run_id: str | None = None) -> ArchiveResult:
    """Compact the workers' chunks into the final archive files, project files first (see the
    module doc).

    ``records``: every chunk record of the run (any order). Chunks are checked against their
    records (format, size) before use. Their members, in plan order, fill parts greedily up to
    ``part_size`` (``None``: no limit): one part is ``<name>.tar`` (``.zip``), several are named
    by :func:`archive_files` (only the last tar part ends with the end blocks). Every part is
    written under a temporary name first; archive files (either format, current or legacy names)
    of an earlier run under the same name that this run does not produce are removed after all
    parts are in place. The chunks stay until :func:`discard_chunks`. With
    ``run_id`` the publication is journalled first (:func:`begin_publish`): a run that dies
    before its manifest is committed is rolled back by the next (:func:`recover_publish`).
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
    stale = begin_publish(inner, _archive_names(inner, name), names, set(names), run_id)
    parts = _write_parts(inner, names, layout, chunks, archive_format, part_ends(len(layout), archive_format))
    inner.delete(stale)
    return published(inner, parts, archive_format)


def published(inner, parts: list[dict], archive_format: str) -> ArchiveResult:
    """The result of a compaction whose ``parts`` are in place: each part given its change
    stamp as the store reports it now (:func:`part_stamps`), its member rows moved to the result."""
    stamps = part_stamps(inner, [p["part"] for p in parts])
    for p in parts:
        p["stamp"] = stamps.get(p["part"])
    members = [m for p in parts for m in p.pop("member_rows")]
    return ArchiveResult(parts, members, archive_format)


_STAMP_FIELDS = ("ETag", "etag", "md5Hash", "crc32c", "generation", "VersionId", "LastModified", "mtime")


def part_stamps(inner, names: list[str]) -> dict[str, str]:
    """{name: change stamp} of the destination's archive files among ``names`` (one listing):
    locally size, mtime_ns and inode; elsewhere size and the store's ETag / version / time fields.
    A part whose stamp is still the one recorded after it was written has not been touched since."""
    fs, root = _filesystem(inner)
    wanted = set(names)
    if isinstance(fs, LocalFileSystem):
        stamps = {}
        for n in sorted(wanted):
            try:
                st = os.stat(f"{root}/{n}")
            except FileNotFoundError:
                continue
            stamps[n] = f"size={st.st_size};mtime_ns={st.st_mtime_ns};ino={st.st_ino}"
        return stamps
    fs.invalidate_cache(root)
    try:
        listed = fs.ls(root, detail=True)
    except FileNotFoundError:
        return {}
    stamps = {}
    for info in listed:
        n = info["name"].rstrip("/").rsplit("/", 1)[-1]
        if n in wanted:
            fields = [f"{k}={info[k]}" for k in _STAMP_FIELDS if info.get(k) is not None]
            stamps[n] = ";".join([f"size={info.get('size')}", *fields])
    return stamps


def plan_parts(chunks: list[dict], part_size: int | None, archive_format: str = "tar") -> list[list[tuple]]:
    """Which member bytes go into which part: a list of parts, each a list of ``(chunk index,
    member index, start, length)`` (the member's bytes in its chunk's body, headers included).

    Greedy in the given order: a member joins the open part if the part, with the trailer it then
    needs, stays within ``part_size``; otherwise the part is closed and a new one opened. A member
    flagged ``oversize`` (larger than any part) gets a part of its own. So every part but the last
    is at least ``part_size`` minus the next member's length, and the result depends only on the
    members and their order, never on how the workers chunked them."""
    entries = []
    for c, rec in enumerate(chunks):
        members, body = rec["members"], _body_size(rec)
        for i, m in enumerate(members):
            start = m["header"]
            end = members[i + 1]["header"] if i + 1 < len(members) else body
            entries.append((c, i, start, end - start))
    return fill_parts(entries, chunks, part_size, archive_format)


def fill_parts(entries: list[tuple], chunks: list[dict], part_size: int | None, archive_format: str = "tar",
               parts: list[list[tuple]] | None = None) -> list[list[tuple]]:
    """Members ``entries`` (``(chunk index, member index, start, length)``) filled greedily, in
    order, into parts (see :func:`plan_parts`); with ``parts``, the last of them is filled on."""
    fmt = FORMATS[archive_format]
    parts = [list(p) for p in parts or ()]
    current: list[tuple] = parts.pop() if parts else []
    fill = _Fill(fmt, part_size)
    for c, i, _, length in current:
        m = chunks[c]["members"][i]
        fill.add(m["path"], m["bytes"], length)
    for c, i, start, length in entries:
        m = chunks[c]["members"][i]
        if current and (m["oversize"] or any(chunks[k]["members"][j]["oversize"] for k, j, _, _ in current[-1:])
                        or not fill.fits(m["path"], m["bytes"], length)):
            parts.append(current)
            current, fill = [], _Fill(fmt, part_size)
        current.append((c, i, start, length))
        fill.add(m["path"], m["bytes"], length)
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


def _ends(rec: dict) -> bool:
    """Whether a chunk (or a previous part) ends with its trailer."""
    return rec["bytes"] > _body_size(rec)


def _write_parts(inner, names: list[str], layout: list[list[tuple]], chunks: list[dict],
                 archive_format: str, ends: list[bool], defer: bool = False) -> list[dict]:
    """Write every part of ``layout`` (see :func:`plan_parts`) under its name in ``names``, with a
    trailer where ``ends`` says (:func:`part_ends`), up to ``COMPACT_THREADS`` parts at a time
    (hashing, reading and writing release the GIL).

    A part that is one whole chunk ending (or not) as the part must is that chunk's bytes: linked
    (local) or copied server-side. Others are copied member by member through this process (the
    runs of consecutive members of one chunk as one range), then given the trailer, if they end
    the archive, rebuilt from the records. On a local disk every part stays a temporary until all
    are written, then all are renamed into place; on an object
    store each part is one PUT (or a multipart upload s3fs aborts on failure), made as soon as
    the part is complete, or with ``defer`` only once every part is (an incremental run reads
    members from the parts it replaces: chunks marked ``published``, never copied server-side)."""
    fs, root = _filesystem(inner)
    local = isinstance(fs, LocalFileSystem)
    hold = local or defer
    staged: list = []           # temporaries (local) or staged PUTs (defer), committed once all are complete
    guard = threading.Lock()

    def write(relpart: str, entries: list[tuple], end: bool) -> dict:
        whole = _whole_chunk(entries, chunks)
        if whole is not None and _ends(chunks[whole]) == end and (local or not chunks[whole].get("published")):
            linked: list | None = [] if hold else None
            part = _link_chunk(inner, relpart, chunks[whole], linked)
            with guard:
                staged.extend(linked or [])
            return part
        out = _Staging(inner, relpart)
        if hold:
            with guard:
                staged.append(out)
        reader = _ChunkReader(fs, root)
        try:
            part = _copy_members(out, entries, chunks, reader, archive_format, end)
            if local:
                out.file.close()   # renamed with the others; no descriptor held meanwhile
            elif not defer:
                out.commit()
        except BaseException:
            out.abort()
            raise
        finally:
            reader.close()
        return part

    pool = ThreadPoolExecutor(max_workers=max(1, min(COMPACT_THREADS, len(layout))))
    try:
        futures = [pool.submit(write, relpart, entries, end) for relpart, entries, end in zip(names, layout, ends)]
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
    then the chunk's bytes when it ends as the part must: same members at the same offsets, same
    trailer or none)."""
    if not entries or any(c != entries[0][0] for c, *_ in entries):
        return None
    c = entries[0][0]
    return c if [i for _, i, _, _ in entries] == list(range(len(chunks[c]["members"]))) else None


def _link_chunk(inner, relpart: str, rec: dict, staged: list | None) -> dict:
    """The chunk becomes a part: a hard link on a local disk (renamed into place with the other
    parts when ``staged`` is a list), a server-side copy elsewhere (made when the staged parts
    are committed when ``staged`` is a list)."""
    fs, root = _filesystem(inner)
    src, dst = f"{root}/{rec['chunk']}", f"{root}/{check_relpath(relpart)}"
    if staged is not None and not isinstance(fs, LocalFileSystem):
        staged.append(_Copied(fs, src, dst))
    elif staged is not None:
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
            "body": _body_size(rec),
            "member_rows": [_member_row(m, relpart, m["header"], n) for m, n in zip(rec["members"], _lengths(rec))]}


def _lengths(rec: dict) -> list[int]:
    """Bytes of each member of a chunk record in its body: header, data, padding."""
    members, body = rec["members"], _body_size(rec)
    return [(members[i + 1]["header"] if i + 1 < len(members) else body) - m["header"]
            for i, m in enumerate(members)]


def _member_row(m: dict, part: str, at: int, length: int) -> dict:
    """The archive manifest row of member ``m`` whose header starts at ``at`` in ``part``."""
    return {"path": m["path"], "part": part, "offset": at + m["offset"] - m["header"], "bytes": m["bytes"],
            "sha256": m["sha256"], "oversize": m["oversize"], "header": at, "length": length,
            "crc32": m.get("crc32")}


def _copy_members(out: _Staging, entries: list[tuple], chunks: list[dict], reader: _ChunkReader,
                  archive_format: str, end: bool = True) -> dict:
    """Copy the members of ``entries`` into ``out`` (consecutive ranges of one chunk in one go),
    then, with ``end``, write the trailer for them."""
    rows, placed = [], []
    run: list = []          # [chunk, start, length]: consecutive bytes still to copy
    at = out.size           # where the next member's header goes
    for c, i, start, length in entries:
        m = chunks[c]["members"][i]
        rows.append(_member_row(m, out.relpath, at, length))
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
    body = out.size
    for block in FORMATS[archive_format].trailer(placed, body) if end else ():
        out.write(block)
    return {"part": out.relpath, "bytes": out.size, "body": body, "sha256": out.sha256.hexdigest(),
            "members": len(rows),
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


class _Copied:
    """A server-side copy made by :meth:`commit` (nothing to undo before it)."""

    def __init__(self, fs, src: str, dst: str) -> None:
        self.fs, self.src, self.dst = fs, src, dst

    def commit(self) -> None:
        self.fs.cp_file(self.src, self.dst)

    def abort(self) -> None:
        pass


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


def _archive_names(inner, name: str) -> list[str]:
    """The destination's archive files of archive ``name`` (either format, one or parts)."""
    fs, root = _filesystem(inner)
    pattern = _archive_pattern(name, [f.suffix for f in FORMATS.values()])
    fs.invalidate_cache(root)
    try:
        names = [p.rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(root, detail=False)]
    except FileNotFoundError:
        return []
    return sorted(n for n in names if pattern.fullmatch(n))


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
