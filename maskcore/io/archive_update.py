"""Incremental archive runs: keep the parts nothing changed in, rewrite only the others.

An archive run after a finished one with the same settings (same configuration fingerprint,
archive name, format and part size) renders only the items whose inputs changed, as a folder
run does; the members of every other item are where the previous run's parts hold them, recorded
in ``.maskcore-meta/archive_manifest.parquet`` (each member's part, header offset and length; each
part's size, sha256 and change stamp). :func:`read_previous_archive` trusts that record only when
every part is still as it was written (its stamp, or with ``--verify`` its sha256); otherwise
the run renders everything and compacts from scratch (:func:`maskcore.io.archive.finalize_archive`).
Parts named as earlier maskcore versions named them (``<name>_part_001.tar``, each a whole tar)
are kept as sources too: every part is then rewritten under its current name (a copy of its
members, nothing rendered) and the old names removed.

:func:`update_archive` then places the members of the new export (``order``: project files, then
each item's files, in plan order):
- a member whose path, size and sha256 equal the previous run's stays where it is (a re-rendered
  item whose file came out the same does not touch its part);
- each previous part keeps its members, in their order, with changed members in place of the old
  ones and deleted members left out. A part whose member list is unchanged is **not written at
  all** (same name, same bytes, same stamp). Any other part is rewritten under its own name; what
  no longer fits in it (a member grew) moves to the end;
- new members (new items, new files) and the ones moved go after the last part's members: the
  last part is filled on, then new parts (``<name>.tar.N+1``, ...) as a clean run fills them.
  Tar parts join into one archive (only the last ends with the end blocks), so a part that stops
  or starts being the last is rewritten too: opening a new part after an old last part that nothing
  else changed rewrites that part without its end blocks (a copy, nothing rendered).
So a user who holds parts 1-9 fetches only the parts the run wrote (the report names them).
Extracted, the parts give exactly the files of a clean run; the member order and the part
boundaries can differ from a clean run's (moved and new members sit in the last parts, a
rewritten part can be below the fill a clean run reaches). ``--repack`` (``repack=True``) lays
the members out as a clean run does (plan order, greedy fill: the same bytes as a clean run),
still copying unchanged members from the previous parts rather than rendering them; a layout that
an incremental run cannot keep (a part left empty, one archive becoming several) is repacked too.

Every part is read before any is replaced: locally the rewritten parts are temporaries renamed
into place at the end; on object stores each is staged (memory, then a local file) and PUT only
once all are complete.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import pyarrow as pa

from .archive import (
    PARTS_KEY,
    ArchiveError,
    ArchiveResult,
    PartitionPacker,
    _archive_names,
    _body_size,
    _check_chunk,
    _ends,
    _filesystem,
    _plan_order,
    _write_parts,
    archive_files,
    check_archive_name,
    fill_parts,
    legacy_archive_files,
    part_ends,
    part_stamps,
    published,
    resolve_archive_format,
)
from .archive_publish import begin_publish

_NEEDED = ("path", "part", "offset", "bytes", "sha256", "oversize", "header", "length", "crc32")


@dataclass
class PreviousArchive:
    """The parts of the last finished archive run as its archive manifest records them."""
    parts: list[dict]               # in order: part, bytes, sha256, body, stamp
    members: list[list[dict]]       # each part's member rows, in their order in the part

    def chunks(self) -> list[dict]:
        """Each part as a chunk record (members with their header offsets), for the copier."""
        return [{"chunk": p["part"], "bytes": p["bytes"], "sha256": p["sha256"], "body": p["body"],
                 "published": True, "members": rows}
                for p, rows in zip(self.parts, self.members)]


def read_previous_archive(inner, table: pa.Table | None, name: str, archive_format: str,
                          carried_paths, verify: bool = False) -> tuple[PreviousArchive | None, str]:
    """The previous run's archive, or None and why it cannot be kept.

    ``table``: its archive manifest; ``carried_paths``: the member paths the unchanged items
    will keep (the previous manifest's outputs), each of which the parts must hold. Every part
    must still carry the stamp recorded after it was written (one listing; ``verify``: every part
    is read and hashed too) and be named as this run (or an earlier maskcore version) names its archive."""
    if table is None:
        return None, "no archive manifest"
    meta = table.schema.metadata or {}
    if PARTS_KEY not in meta or any(c not in table.column_names for c in _NEEDED):
        return None, "the archive manifest predates incremental archives"
    if set(table.column("format").unique().to_pylist()) - {archive_format}:
        return None, f"the previous archive is not {archive_format}"
    parts = json.loads(meta[PARTS_KEY])
    names = [p["part"] for p in parts]
    n_parts = None if len(names) == 1 else len(names)
    if names not in (archive_files(name, n_parts, archive_format), legacy_archive_files(name, n_parts, archive_format)):
        return None, f"the previous archive files are not named {name!r}"
    stamps = part_stamps(inner, names)
    changed = [p["part"] for p in parts if p.get("stamp") is None or stamps.get(p["part"]) != p["stamp"]]
    if changed:
        return None, f"{len(changed)} archive files changed or missing since the last run (first {changed[0]!r})"
    if verify:
        fs, root = _filesystem(inner)
        for p in parts:
            digest = hashlib.sha256()
            with fs.open(f"{root}/{p['part']}", "rb") as f:
                while block := f.read(4 * 2 ** 20):
                    digest.update(block)
            if digest.hexdigest() != p["sha256"]:
                return None, f"archive file {p['part']!r} differs from its recorded sha256"
    rows = table.select(list(_NEEDED)).to_pylist()
    where = {n: k for k, n in enumerate(names)}
    members: list[list[dict]] = [[] for _ in names]
    for row in rows:
        if row["part"] not in where:
            return None, f"the archive manifest names a part {row['part']!r} it does not list"
        members[where[row["part"]]].append(row)
    for group in members:
        group.sort(key=lambda m: m["header"])
    held = {m["path"] for m in rows}
    missing = [p for p in carried_paths if p not in held]
    if missing:
        return None, f"{len(missing)} files of unchanged items are in no archive file (first {missing[0]!r})"
    return PreviousArchive(parts, members), ""


def update_archive(inner, previous: PreviousArchive, name: str, part_size: int | None, records: list[dict],
                   project_files: list[tuple[str, bytes]], order: list[str], archive_format: str = "tar",
                   repack: bool = False, run_id: str | None = None) -> ArchiveResult:
    """The archive of ``order`` (every member path of the new export, in plan order) from the
    previous parts and this run's chunks (``records``), writing only the parts that change (see
    the module doc); ``repack``: laid out as a clean run lays it out; ``run_id``: journalled as
    :func:`maskcore.io.archive_publish.begin_publish` says."""
    check_archive_name(name)
    archive_format = resolve_archive_format(archive_format)
    chunks = previous.chunks()
    source: dict[str, tuple] = {}
    for j, group in enumerate(previous.members):
        for i, m in enumerate(group):
            source[m["path"]] = (j, i, m["header"], m["length"])
    kept = {m["path"]: (m["bytes"], m["sha256"]) for group in previous.members for m in group}
    changed = [(p, d) for p, d in project_files if kept.get(p) != (len(d), hashlib.sha256(d).hexdigest())]
    if changed:
        project = PartitionPacker(inner, part_size, "project", archive_format=archive_format)
        for path, data in changed:
            project.write(path, data)
        records = project.finish() + list(records)
    for rec in sorted(records, key=_plan_order):
        _check_chunk(inner, rec, part_size, archive_format)
        c = len(chunks)
        chunks.append(rec)
        for i, (m, start, length) in enumerate(_entries(rec)):
            if kept.get(m["path"]) != (m["bytes"], m["sha256"]):
                source[m["path"]] = (c, i, start, length)
    missing = [p for p in order if p not in source]
    if missing:
        raise ArchiveError(f"archive: {len(missing)} files of the export are neither in this run's chunks nor "
                           f"in the previous parts (first {missing[0]!r}); run again with --full")
    layout = None if repack else _kept_layout(previous, order, source, chunks, part_size, archive_format)
    mode = "incremental"
    if layout is None:
        mode = "repack"
        layout = fill_parts([source[p] for p in order], chunks, part_size, archive_format)
    names = archive_files(name, None if len(layout) == 1 else len(layout), archive_format)
    ends = part_ends(len(layout), archive_format)
    untouched = [k < len(previous.parts) and names[k] == previous.parts[k]["part"] and _is_whole(entries, k, chunks)
                 and _ends(chunks[k]) == ends[k] for k, entries in enumerate(layout)]
    dirty = [k for k, same in enumerate(untouched) if not same]
    stale = begin_publish(inner, _archive_names(inner, name), [names[k] for k in dirty], set(names), run_id if dirty or
                          len(names) < len(previous.parts) else None)
    written = _write_parts(inner, [names[k] for k in dirty], [layout[k] for k in dirty], chunks, archive_format,
                           [ends[k] for k in dirty], defer=True)
    parts = []
    for k, entries in enumerate(layout):
        if untouched[k]:
            old = previous.parts[k]
            parts.append({"part": old["part"], "bytes": old["bytes"], "sha256": old["sha256"],
                          "members": len(entries), "oversize": any(m["oversize"] for m in previous.members[k]),
                          "body": old["body"], "member_rows": [dict(m) for m in previous.members[k]]})
        else:
            parts.append(written.pop(0))
    inner.delete(stale)
    result = published(inner, parts, archive_format)
    result.mode = mode
    result.written = [names[k] for k in dirty]
    return result


def _entries(rec: dict):
    """(member, start, length) of each member of a chunk record, in its order."""
    members, body = rec["members"], _body_size(rec)
    for i, m in enumerate(members):
        end = members[i + 1]["header"] if i + 1 < len(members) else body
        yield m, m["header"], end - m["header"]


def _is_whole(entries: list[tuple], k: int, chunks: list[dict]) -> bool:
    """Whether ``entries`` are exactly previous part ``k``'s members, in order."""
    return [(c, i) for c, i, _, _ in entries] == [(k, i) for i in range(len(chunks[k]["members"]))]


def _kept_layout(previous: PreviousArchive, order: list[str], source: dict, chunks: list[dict],
                 part_size: int | None, archive_format: str) -> list[list[tuple]] | None:
    """Each previous part with its members' current sources (deleted ones left out, what no
    longer fits moved to the end), then the new members; None when a part would be left empty
    or the single archive would need parts (a clean layout then)."""
    wanted = set(order)
    held = {m["path"] for group in previous.members for m in group}
    layout: list[list[tuple]] = []
    moved: list[tuple] = []
    for k, group in enumerate(previous.members):
        entries = [source[m["path"]] for m in group if m["path"] in wanted]
        if not entries:
            return None
        if _is_whole(entries, k, chunks):
            layout.append(entries)
            continue
        first, *rest = fill_parts(entries, chunks, part_size, archive_format)
        layout.append(first)
        moved += [e for part in rest for e in part]
    pool = moved + [source[p] for p in order if p not in held]
    if pool:
        layout = fill_parts(pool, chunks, part_size, archive_format, parts=layout)
    if (len(layout) == 1) != (len(previous.parts) == 1):
        return None
    return layout
