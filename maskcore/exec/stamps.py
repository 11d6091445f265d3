"""Unchanged by stamp: the items of an incremental run that need not be read at all.

The listing carries each file's change stamp (``ann_stamp``, ``img_stamp``: the store's own, from
``maskcore.io.storage.change_stamp``; null when the store gives none to trust) and the manifest
records the stamps its items were listed with. An item is *unchanged by stamp* when
- the run is incremental (same configuration fingerprint, not ``--full``, not an archive run) and
  not ``--verify``;
- its previous record is trusted (``prev_ann_sha256`` set: a finished run rendered it, and no
  unfinished run may have touched it since, see :mod:`maskcore.exec.recovery`);
- both stamps are known and equal the previous manifest's.
Such an item gets its result row here, on the driver, from the previous record: no read, no task.
Any other item goes to a worker, which hashes its inputs: an equal hash is still "unchanged" (it
is recorded with the new stamp, not rendered again), a different one renders it.

Stamps are listing-time: a file changed after its listing and before the worker read it is
recorded with its old stamp, so the next run sees a different stamp and hashes it again.
Annotations carried in the plan (COCO, CVAT XML: ``ann_inline``) are stamped with their own
sha256, which the driver has at hand. A missing file is stamped ``NO_FILE``.

In the plan and the manifest a stamp is kept as ``STAMP_TYPE``: the first 16 bytes of the BLAKE2b
digest of its text (:func:`stamp_digests`), 16 bytes a stamp instead of ~90 (an S3 stamp's text):
10 M items carry two of them. Manifests written before (stamps as text) are still read: their
stamps are digested when attached (:func:`attach_previous`), so their items stay unchanged by stamp.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .plan import Todo, consecutive_groups, partitions
from .state import PartitionKeys, item_keys, item_ordered
from .task import RESULT_SCHEMA

STAMP_TYPE = pa.binary(16)
STAMP_COLUMNS = ("ann_stamp", "img_stamp")
PREV_STAMP_COLUMNS = ("prev_ann_stamp", "prev_img_stamp")
NO_FILE = "-"
DIGEST_ROWS = 262_144
"""Stamps digested per block (Python strings of one block at a time, not of the whole listing)."""


def stamp_digests(stamps) -> pa.Array | pa.ChunkedArray:
    """Stamps as ``STAMP_TYPE``: text stamps digested (BLAKE2b, 16 bytes; null stays null), stamps
    already digested kept as they are (chunks and all)."""
    if stamps.type == STAMP_TYPE:  # a manifest read in parts stays in its chunks (no copy)
        return stamps
    stamps = stamps.combine_chunks() if isinstance(stamps, pa.ChunkedArray) else stamps
    if pa.types.is_null(stamps.type):
        return pa.nulls(len(stamps), STAMP_TYPE)
    blocks = []
    for start in range(0, len(stamps), DIGEST_ROWS):
        block = stamps.slice(start, DIGEST_ROWS)
        data = b"".join(_ZERO if s is None else _digest(s) for s in block.to_pylist())
        valid = None if block.null_count == 0 else pa.py_buffer(np.packbits(
            pc.is_valid(block).to_numpy(zero_copy_only=False), bitorder="little").tobytes())
        blocks.append(pa.FixedSizeBinaryArray.from_buffers(STAMP_TYPE, len(block), [valid, pa.py_buffer(data)],
                                                           null_count=block.null_count))
    return pa.concat_arrays(blocks) if blocks else pa.array([], STAMP_TYPE)


_ZERO = bytes(16)


def _digest(stamp: str) -> bytes:
    return hashlib.blake2b(stamp.encode("utf-8", "surrogatepass"), digest_size=16).digest()


def stamped_listing(source) -> pa.Table:
    """The source's listing with change stamps, from readers that list them (``lists_stamps``)."""
    return with_stamps(source.list_items(stamps=True) if getattr(source, "lists_stamps", False)
                       else source.list_items())


def with_stamps(listing: pa.Table) -> pa.Table:
    """The listing with both stamp columns (``STAMP_TYPE``; null where the reader gives none),
    inline annotations stamped by their sha256 and files the item does not have stamped
    ``NO_FILE``."""
    n = listing.num_rows
    for column, path in zip(STAMP_COLUMNS, ("ann_path", "img_path")):
        stamps = stamp_digests(listing.column(column) if column in listing.column_names else pa.nulls(n, pa.string()))
        if path in listing.column_names:
            stamps = pc.if_else(pc.is_null(listing.column(path)), pa.scalar(_digest(NO_FILE), STAMP_TYPE), stamps)
        if column == "ann_stamp" and "ann_inline" in listing.column_names:
            inline = listing.column("ann_inline").to_pylist()
            shas = stamp_digests(pa.array([None if a is None else "sha256=" + hashlib.sha256(a).hexdigest()
                                           for a in inline], pa.string()))
            stamps = pc.if_else(pc.is_null(shas), stamps, shas)
        stamps = stamps.combine_chunks() if isinstance(stamps, pa.ChunkedArray) else stamps
        if column in listing.column_names:
            listing = listing.set_column(listing.schema.get_field_index(column), column, stamps)
        else:
            listing = listing.append_column(column, stamps)
    return listing


def attach_previous(plan: pa.Table, previous: pa.Table) -> pa.Table:
    """Give each planned item what the previous manifest recorded of it, when that run rendered it
    or found it unchanged (not when it failed): ``prev_ann_sha256`` / ``prev_img_sha256`` (the input
    checksums) and ``prev_ann_stamp`` / ``prev_img_stamp`` (``STAMP_TYPE``, digested when the
    manifest kept them as text; null for new items, or a manifest written before stamps). The
    plan's row order is kept."""
    if same_items(plan, previous) and pc.all(pc.is_in(previous.column("status"),
                                                     pa.array(["ok", "unchanged"]))).as_py():
        where = None  # the same items in the same order, none failed (a quiet night): no lookup, no copy
    else:
        where = _previous_rows(plan, previous)
    for prev, column in (("prev_ann_sha256", "ann_sha256"), ("prev_img_sha256", "img_sha256"),
                         *zip(PREV_STAMP_COLUMNS, STAMP_COLUMNS)):
        if column not in previous.column_names:
            values = pa.nulls(plan.num_rows, pa.string())
        else:
            values = previous.column(column) if where is None else previous.column(column).combine_chunks().take(where)
        values = stamp_digests(values) if column in STAMP_COLUMNS else pc.cast(values, pa.string())
        plan = plan.append_column(prev, values)
    return plan


def same_items(table: pa.Table, other: pa.Table) -> bool:
    """Whether two tables list the same items (dataset, item) in the same order."""
    return (table.num_rows == other.num_rows and table.column("dataset").equals(other.column("dataset"))
            and table.column("item").equals(other.column("item")))


def _previous_rows(plan: pa.Table, previous: pa.Table) -> pa.Array:
    """For each planned item its row in ``previous``; null when absent or failed there."""
    where = pc.index_in(item_keys(plan), value_set=item_keys(previous).combine_chunks())
    if previous.num_rows:  # a failed item has no previous record to go by
        ok = pc.is_in(previous.column("status").combine_chunks(), pa.array(["ok", "unchanged"]))
        recorded = pc.fill_null(ok.take(pc.fill_null(where, 0)), False)
        where = pc.if_else(recorded, where, pa.scalar(None, where.type))
    return where


def unchanged_mask(part: pa.Table) -> pa.Array:
    """Which rows of a plan partition are unchanged by stamp (see the module doc)."""
    needed = ("prev_ann_sha256", *STAMP_COLUMNS, *PREV_STAMP_COLUMNS)
    if any(c not in part.column_names for c in needed):
        return pa.array([False] * part.num_rows, pa.bool_())
    same = pc.is_valid(part.column("prev_ann_sha256"))
    for now, prev in zip(STAMP_COLUMNS, PREV_STAMP_COLUMNS):
        same = pc.and_(same, pc.fill_null(pc.equal(part.column(now), part.column(prev)), False))
    same = pc.fill_null(same, False)
    return same.combine_chunks() if isinstance(same, pa.ChunkedArray) else same


def unchanged_results(part: pa.Table) -> pa.Table:
    """The result rows (``RESULT_SCHEMA``) of items unchanged by stamp: status ``unchanged``, the
    previous checksums; their outputs, warnings and list lines are carried from the previous
    manifest by the run, as for any unchanged item."""
    n = part.num_rows
    columns = {
        "dataset": part.column("dataset"), "item": part.column("item"), "out_dir": part.column("out_dir"),
        "out_name": part.column("out_name"), "mask_stem": part.column("mask_stem"),
        "status": repeated_text("unchanged", n),
        "ann_sha256": part.column("prev_ann_sha256"), "img_sha256": part.column("prev_img_sha256"),
        "bytes_written": pa.array(np.zeros(n, np.int64)), "seconds": pa.array(np.zeros(n, np.float64)),
    }
    arrays = []
    for f in RESULT_SCHEMA:
        if f.name in columns:
            arrays.append(pc.cast(columns[f.name], f.type))
        elif pa.types.is_list(f.type):  # [] in every row
            arrays.append(pa.ListArray.from_arrays(pa.array(np.zeros(n + 1, np.int32)),
                                                   pa.array([], f.type.value_type), type=f.type))
        else:
            arrays.append(pa.nulls(n, f.type))
    return pa.Table.from_arrays(arrays, schema=RESULT_SCHEMA)


def repeated_text(text: str, n: int) -> pa.Array:
    """``text`` in each of ``n`` rows, as one string array (no Python object per row)."""
    data = text.encode()
    offsets = np.arange(n + 1, dtype=np.int64) * len(data)
    return pa.LargeStringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(data * n)).cast(pa.string())


def split_unchanged(plan: pa.Table, parts, use_stamps: bool) -> tuple[list[pa.Table | None], list[pa.Table]]:
    """For each partition of ``plan`` (``parts``: ``plan.Partitions``, made only when needed): the
    rows a worker must still see (None when every item is unchanged by stamp); and the driver's
    result rows of the others (one table, or none)."""
    if not use_stamps or plan.num_rows == 0:
        return [parts[i] for i in range(len(parts))], []
    mask = unchanged_mask(plan)
    same = mask.to_numpy(zero_copy_only=False)
    bounds = parts.bounds
    n_same = np.add.reduceat(same.astype(np.int64), bounds[:-1]) if len(bounds) > 1 else np.zeros(0, np.int64)
    todo: list[pa.Table | None] = []
    for i in range(len(parts)):
        size = bounds[i + 1] - bounds[i]
        if n_same[i] == size:
            todo.append(None)
        elif n_same[i] == 0:
            todo.append(parts[i])
        else:
            todo.append(parts[i].filter(pa.array(~same[bounds[i]:bounds[i + 1]])))
    known = plan if n_same.sum() == plan.num_rows else plan.filter(mask)  # a quiet night: no copy
    return todo, [unchanged_results(known)] if known.num_rows else []


ATTACH_COLUMNS = ("dataset", "item", "status", "ann_sha256", "img_sha256", *STAMP_COLUMNS)
"""What :func:`attach_by_parts` reads of the last manifest."""


class NotAligned(Exception):
    """The plan is not in item order (dataset, item; each item once), so it cannot be merged with
    the last manifest a part at a time: the last manifest is joined whole (``attach_previous``)."""


def _key(table: pa.Table, row: int) -> tuple[str, str]:
    return table.column("dataset")[row].as_py(), table.column("item")[row].as_py()


def _rows_up_to(plan: pa.Table, first: int, key: tuple[str, str]) -> int:
    """The end of the plan's rows from ``first`` up to ``key`` (dataset, item) included: a binary
    search (the plan is in item order; Python compares text by code point, as Arrow sorts UTF-8)."""
    lo, hi = first, plan.num_rows
    while lo < hi:
        mid = (lo + hi) // 2
        if _key(plan, mid) <= key:
            lo = mid + 1
        else:
            hi = mid
    return lo


def merged_ranges(pieces, plan: pa.Table):
    """The last manifest's files (``state.manifest_pieces``: ``(first row, table)`` in item order)
    merged with the plan's rows by item key: ``(start, end, table)`` for each file, the plan rows
    ``start:end`` being the plan's items up to the file's last one (after the file before): items
    in both, added (in the plan only) and removed (in the file only) all fall in the same range.
    The plan's rows after the manifest's last item come last, with an empty table. ``NotAligned``
    when the plan is not strictly in item order where its rows are not the file's (where they are,
    the manifest's order is theirs)."""
    n, end, previous = plan.num_rows, 0, None
    for _, previous in pieces:
        stop = end if not previous.num_rows else _rows_up_to(plan, end, _key(previous, previous.num_rows - 1))
        yield _checked(plan, end, stop, previous), stop, previous
        end = stop
    if end < n:
        tail = previous.schema.empty_table() if previous is not None else pa.table({"dataset": [], "item": []})
        yield _checked(plan, end, n, tail), n, tail


def _checked(plan: pa.Table, start: int, stop: int, previous: pa.Table) -> int:
    if not same_items(plan.slice(start, stop - start), previous):
        first = max(start - 1, 0)  # with the row before, and the row after: in order across ranges too
        if not item_ordered(plan.slice(first, min(stop + 1, plan.num_rows) - first), strict=True):
            raise NotAligned(f"the plan's rows {start}:{stop} are not in item order (dataset, item)")
    return start


@dataclass
class Attached:
    """What :func:`attach_by_parts` keeps of a plan joined with the last manifest: which rows are
    unchanged by stamp, the rows (with their previous records) a worker must hash, in plan order,
    the key of each partition sending some, and the plan rows each manifest file was merged with."""
    unchanged: np.ndarray  # bool, one per plan row
    sent: pa.Table         # the rows to hash, in plan order (their ``partition`` column says whose)
    bounds: np.ndarray     # the plan's partitions: partition i is plan rows bounds[i]:bounds[i + 1]
    ranges: list = field(default_factory=list)  # (start, end) of ``merged_ranges``, one per file and the tail
    trusted: np.ndarray | None = None  # bool, one per plan row: a previous record to go by (``prev_ann_sha256``)
    keys: dict[int, str] | None = None  # partition -> key (of its whole rows), for the partitions sending rows

    def todo(self) -> tuple[SentRows, dict[int, str]]:
        """The rows each partition with a row to hash sends to a worker (``split_unchanged``'s), by
        partition (made when asked for), and those partitions' keys (``PartitionKeys`` of their
        whole rows)."""
        if self.keys is None:
            raise ValueError("attach_by_parts was given no configuration fingerprint: no partition keys")
        return SentRows(self.sent, sorted(self.keys)), self.keys

    def tasks(self) -> Todo:
        """The run's tasks (``plan.Todo``): the partitions of :meth:`todo`, consecutive ones sending
        few rows (a night's scattered new items) sharing a task of at least a partition's rows."""
        sent, keys = self.todo()
        size = max(1, int(np.diff(self.bounds).max())) if len(self.bounds) > 1 else 1  # the plan's partition size
        return Todo(sent, keys, {}, sent.num_rows, consecutive_groups(sent.ids, sent.counts(), size))


class SentRows(Mapping):
    """Partition -> its rows to hash (``Attached.todo``), in partition order, each table made when
    asked for (``plan.Partitions`` of ``sent``): ~85k partitions' tables made at once held ~0.9 GiB
    on a night adding 1 % of 10 M items (BENCHMARKS.md "Issue 17 (session 10)")."""

    def __init__(self, sent: pa.Table, ids: list[int]) -> None:
        self.parts, self.ids, self.num_rows = partitions(sent), ids, sent.num_rows
        self._sent = set(ids)

    def __getitem__(self, i: int) -> pa.Table:
        if i not in self._sent:
            raise KeyError(i)
        return self.parts[i]

    def __iter__(self):
        return iter(self.ids)

    def __len__(self) -> int:
        return len(self.ids)

    def counts(self) -> list[int]:
        """The rows of each partition, in ``ids`` order, without making their tables."""
        return np.diff(self.parts.bounds)[self.ids].tolist() if self.ids else []


def attach_by_parts(pieces, plan: pa.Table, use_stamps: bool, config_fp: str | None = None) -> Attached:
    """``attach_previous`` and ``split_unchanged`` with the last manifest given a file at a time
    (``state.manifest_pieces``), each joined with the plan's rows of the same item range
    (:func:`merged_ranges`: items added and removed since are merged in): the last manifest is
    never held whole, and of the joined rows only those to hash are kept (a night adding 1 % of
    10 M items at random has a row to hash in ~27 % of its partitions). With ``config_fp``, the
    key of each partition with a row to hash is made from its whole rows on the way (a partition
    may span two files' ranges: its rows wait for the next range). ``NotAligned`` when the plan
    is not in item order."""
    part_ids = plan.column("partition").to_numpy() if plan.num_rows else np.zeros(0, np.int32)
    bounds = partitions(plan).bounds
    unchanged, trusted, ranges = np.zeros(plan.num_rows, bool), np.zeros(plan.num_rows, bool), []
    kept, keys = [], {} if config_fp is not None else None
    waiting, waiting_from = None, 0  # the joined rows of a partition that goes on in the next range, and its first row
    for start, end, previous in merged_ranges(pieces, plan):
        ranges.append((start, end))
        if start == end:  # no plan item in this file's range (all its items removed)
            kept += [] if kept else [attach_previous(plan.slice(start, 0), previous)]  # the columns, none sent
            continue
        joined = attach_previous(plan.slice(start, end - start), previous)
        same = unchanged_mask(joined).to_numpy(zero_copy_only=False) if use_stamps else np.zeros(end - start, bool)
        unchanged[start:end] = same
        trusted[start:end] = pc.is_valid(joined.column("prev_ann_sha256")).to_numpy(zero_copy_only=False)
        kept.append(joined.filter(pa.array(~same)) if same.any() else joined)
        if keys is None:
            continue
        if waiting is not None:
            joined, start = pa.concat_tables([waiting, joined]), waiting_from
        last = int(part_ids[end - 1])
        complete = end if bounds[last + 1] == end else int(bounds[last])  # rows start:complete: whole partitions
        keys.update(_sending_keys(config_fp, joined.slice(0, complete - start), part_ids[start:complete],
                                  unchanged[start:complete]))
        waiting, waiting_from = (joined.slice(complete - start), complete) if complete < end else (None, 0)
    if keys is not None and waiting is not None:
        raise ValueError("attach_by_parts: the plan's last partition ends after its last row")
    return Attached(unchanged, pa.concat_tables(kept), bounds, ranges, trusted, keys)


def _sending_keys(config_fp: str, rows: pa.Table, ids: np.ndarray, same: np.ndarray) -> dict[int, str]:
    """``{partition: key}`` of the partitions with a row to hash (not ``same``) among ``rows``, whole
    partitions (``ids``: each row's), the key lines made of those partitions' rows only."""
    sending = np.isin(ids, np.unique(ids[~same]))
    if not sending.any():
        return {}
    ids = ids[sending]
    bounds = np.concatenate([[0], np.flatnonzero(np.diff(ids)) + 1, [len(ids)]])
    made = PartitionKeys(config_fp, rows if sending.all() else rows.filter(pa.array(sending)), bounds)
    return {int(i): made[k] for k, i in enumerate(ids[bounds[:-1]].tolist())}


def record_stamps(manifest: pa.Table, plan: pa.Table) -> pa.Table:
    """The manifest with each item's listing stamps (``ann_stamp``, ``img_stamp``) from the plan."""
    aligned = same_items(manifest, plan)  # the usual case: no lookup
    where = None if aligned else pc.index_in(item_keys(manifest), value_set=item_keys(plan).combine_chunks())
    for column in STAMP_COLUMNS:
        if column not in plan.column_names:
            values = pa.nulls(manifest.num_rows, STAMP_TYPE)
        else:
            values = plan.column(column) if aligned else plan.column(column).combine_chunks().take(where)
        if column in manifest.column_names:
            manifest = manifest.set_column(manifest.schema.get_field_index(column), column, values)
        else:
            manifest = manifest.append_column(column, values)
    return manifest


def _bytes(plan: pa.Table, rows: np.ndarray | None = None) -> int:
    """Listed bytes (``ann_bytes`` + ``img_bytes``) of the plan, or of the ``rows`` it marks."""
    total = 0
    for column in ("ann_bytes", "img_bytes"):
        if column in plan.column_names:
            values = pc.fill_null(plan.column(column), 0).to_numpy()
            total += int(values.sum() if rows is None else values[rows].sum())
    return total


def plan_summary(plan: pa.Table, listed: int, use_stamps: bool, attached: Attached | None = None) -> dict:
    """What a run of ``plan`` would do (``--dry-run``): items, partitions, how many are unchanged
    by stamp, how many would be read, and the listed bytes of both. The plan's previous records
    are its ``prev_*`` columns (``attach_previous``) or ``attached`` (``attach_by_parts``)."""
    from .plan import partition_size

    n = plan.num_rows
    if attached is not None:
        unchanged, trusted = attached.unchanged, attached.trusted
    else:
        unchanged = unchanged_mask(plan).to_numpy(zero_copy_only=False) if use_stamps and n else np.zeros(n, bool)
        trusted = (pc.is_valid(plan.column("prev_ann_sha256")).to_numpy(zero_copy_only=False)
                   if "prev_ann_sha256" in plan.column_names else np.zeros(n, bool))
    to_read = ~unchanged if use_stamps else np.ones(n, bool)
    n_read, new = int(np.count_nonzero(to_read)), int(np.count_nonzero(to_read & ~trusted))
    n_parts = int(pc.max(plan.column("partition")).as_py()) + 1 if n else 0
    return {
        "items": n, "listed": listed, "partitions": n_parts,
        "items_per_partition": partition_size(n, None) if not n_parts else
        int(pc.max(pc.value_counts(plan.column("partition")).field("counts")).as_py()),
        "unchanged_by_stamp": n - n_read, "to_read": n_read,
        "to_read_new": new, "to_read_known": n_read - new,
        "bytes_to_read": _bytes(plan, to_read), "bytes_listed": _bytes(plan),
    }


def summary_text(s: dict) -> list[str]:
    """The lines ``--dry-run`` prints."""
    why = ("incremental: the last run used the same settings" if s["incremental"] else
           "not incremental: " + ("no manifest in the destination" if not s["previous_manifest"] else
                                  "the settings changed since the last run" if not s["same_settings"] else "--full"))
    lines = [
        (f"maskcore: dry run: {s['items']} items (of {s['listed']} listed) in {s['partitions']} partitions "
         f"of up to {s['items_per_partition']} -> {s['destination']}; {why}"),
        (f"maskcore: dry run: {s['unchanged_by_stamp']} unchanged by stamp (not read); {s['to_read']} to read "
         f"and hash ({s['to_read_new']} new or not trusted, {s['to_read_known']} with a changed or unknown stamp: "
         "rendered when their bytes differ)"),
        (f"maskcore: dry run: {s['bytes_to_read']} bytes to read of {s['bytes_listed']} listed; nothing rendered "
         "or written"),
    ]
    if s["unfinished_run_files"]:
        lines.append(f"maskcore: dry run: an unfinished run left {s['unfinished_run_files']} state files: the run "
                     "will resume its finished partitions and check again what it may have touched")
    return lines
