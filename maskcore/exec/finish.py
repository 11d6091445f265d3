"""A run's finish: the new manifest's rows made, counted and compared with the last run's, in item order.

The rows of a run are the driver's rows of items unchanged by stamp and the workers' rows of the
others; unchanged items carry the outputs, warnings and list lines of the run that wrote them
(:func:`carry_unchanged_outputs`) and every row records its listing stamps. What the report
counts (:class:`Tally`), the outputs no item makes any more (:class:`StaleOutputs`) and the
project's list files (:class:`ListFiles`) are gathered from the rows a piece at a time, so that a
run whose plan lists the last manifest's items at the same places makes its manifest one part at a
time (:func:`rows_by_parts`): the last manifest's part joined with the plan rows of the same range,
never either manifest whole.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import StateError
from .report import listed_failures, listed_warnings
from .stamps import attach_previous, merged_ranges, record_stamps, same_items, unchanged_results
from .state import MANIFEST, DamagedManifest, in_item_order, item_keys, manifest_files
from .task import RESULT_SCHEMA


def carry_unchanged_outputs(manifest: pa.Table, previous: pa.Table) -> pa.Table:
    """Unchanged items keep the outputs recorded by the run that wrote them."""
    unchanged = pc.equal(manifest.column("status"), "unchanged")
    if not pc.any(unchanged).as_py():
        return manifest
    aligned = same_items(manifest, previous)  # a quiet night: no lookup
    every = pc.all(unchanged).as_py()
    where = None if aligned else pc.index_in(item_keys(manifest), value_set=item_keys(previous).combine_chunks())
    for name in ("outputs", "warnings", "lines"):  # an unchanged item keeps what its last render said
        if name not in previous.column_names:
            continue
        carried = previous.column(name) if aligned else previous.column(name).take(pc.if_else(unchanged, where, None))
        merged = carried if every else pc.if_else(unchanged, carried, manifest.column(name))
        manifest = manifest.set_column(manifest.schema.get_field_index(name), name, merged)
    return manifest


def workers_rows(results: list[pa.Table]) -> pa.Table:
    """The workers' rows (a table per partition) in item order, as one chunk: a table of tens of
    thousands of chunks (a night adding 1 % of 10M items sends ~85k partitions) makes every take
    from it pay for all of them."""
    rows = pa.concat_tables(results).combine_chunks() if results else RESULT_SCHEMA.empty_table()
    return in_item_order(rows)


def _changed(what: str) -> StateError:
    return StateError(f"{what}: the last manifest changed during the run (another process wrote the "
                      "destination's state, or a file of it was damaged); this run is not committed: run "
                      "again, the next run reads the state as it is then (a damaged manifest is set "
                      "aside and its items rendered again)")


def _rows_differ(rows: pa.Table, piece: pa.Table) -> str:
    """Where the rows made for a range first differ from the plan's items of that range."""
    keys, wanted = item_keys(rows).to_pylist(), item_keys(piece).to_pylist()
    at = next((i for i, (a, b) in enumerate(zip(keys, wanted)) if a != b), min(len(keys), len(wanted)))
    got = repr(keys[at]) if at < len(keys) else "no row"
    return f"{len(wanted)} items, got {len(keys)} rows, the first differing at row {at} ({got} for " \
           f"{wanted[at] if at < len(wanted) else 'no item'!r})"


def rows_by_parts(pieces, plan: pa.Table, unchanged: np.ndarray, changed: pa.Table, ranges=None):
    """The new manifest a part at a time: for each file of the last manifest (``pieces``:
    ``state.manifest_pieces``, in item order) the rows of the plan's items of its item range
    (``stamps.merged_ranges``: items kept, added and removed since all in the range) and that
    file's table; then the plan's items after the manifest's last one, with an empty table. The
    rows: the driver's of the items ``unchanged`` by stamp, the workers' (``changed``: every other
    plan item's, in item order) of the others, in item order, outputs carried, stamps recorded.
    ``ranges``: the plan rows of each file when the run planned (``Attached.ranges``): a manifest
    that no longer cuts the plan there, or a part no longer the one named (``DamagedManifest``),
    changed during the run: a :class:`StateError` naming the file and what differs."""
    at, k, files = 0, -1, [MANIFEST]
    ranges = None if ranges is None else [tuple(r) for r in ranges]
    try:
        for k, (start, end, previous) in enumerate(merged_ranges(pieces, plan)):
            files = manifest_files(previous) if k == 0 else files
            name = files[k] if k < len(files) else f"the plan's items after {files[-1]}"
            if ranges is not None and (k >= len(ranges) or ranges[k] != (start, end)):
                joined = f"plan rows {ranges[k][0]}:{ranges[k][1]}" if k < len(ranges) else "no such file"
                raise _changed(f"{name}: expected what the run joined when it started ({joined}), "
                               f"got plan rows {start}:{end}")
            piece = plan.slice(start, end - start)
            same = unchanged[start:end]
            n_changed = int(np.count_nonzero(~same))
            mine = changed.slice(at, n_changed).select(RESULT_SCHEMA.names)
            if same.any():
                known = attach_previous(piece, previous)
                known = unchanged_results(known if same.all() else known.filter(pa.array(same)))
                rows = in_item_order(pa.concat_tables([known, mine]))
            else:
                rows = mine
            at += n_changed
            if not same_items(rows, piece):
                raise StateError(f"{name}: expected the rows of the plan's items {start}:{end} (the driver's of "
                                 f"those unchanged, the workers' of the others), got other rows: "
                                 f"{_rows_differ(rows, piece)}; this run is not committed")
            yield record_stamps(carry_unchanged_outputs(rows, previous), piece), previous
    except DamagedManifest as exc:
        raise _changed(f"{MANIFEST}: expected the parts it named when the run started, got {exc}") from exc
    if ranges is not None and k + 1 != len(ranges):
        raise _changed(f"{MANIFEST}: expected {len(ranges)} files and plan ranges as the run joined when it "
                       f"started, got {k + 1}")


def output_paths(table: pa.Table | None) -> pa.Array:
    if table is None or table.num_rows == 0:
        return pa.array([], pa.string())
    return pc.list_flatten(table.column("outputs")).combine_chunks().field("path")


def _not_in(paths: pa.Array, others: pa.Array) -> set[str]:
    return set(paths.filter(pc.invert(pc.is_in(paths, value_set=others))).to_pylist())


def stale_outputs(previous: pa.Table | None, manifest: pa.Table, leftover: pa.Array) -> list[str]:
    """Files the previous run, or an unfinished run since (``leftover``), wrote that no item of
    this run produced."""
    if len(leftover) == 0 and _same_outputs(previous, manifest):
        return []  # every output carried as it was (a quiet night): nothing to compare path by path
    return sorted(_not_in(pa.concat_arrays([output_paths(previous), leftover]), output_paths(manifest)))


def _same_outputs(previous: pa.Table | None, manifest: pa.Table) -> bool:
    return (previous is not None and previous.num_rows == manifest.num_rows
            and previous.column("outputs").equals(manifest.column("outputs")))


class StaleOutputs:
    """``stale_outputs`` of a manifest given part by part with the last manifest's part of the same
    items: a part's paths no longer made, less the paths another part makes now and did not before."""

    def __init__(self) -> None:
        self.gone: set[str] = set()
        self.made: set[str] = set()

    def add(self, previous: pa.Table, rows: pa.Table) -> None:
        if not _same_outputs(previous, rows):
            before, now = output_paths(previous), output_paths(rows)
            self.gone |= _not_in(before, now)
            self.made |= _not_in(now, before)

    def paths(self) -> list[str]:
        return sorted(self.gone - self.made)


class ListFiles:
    """The project-level list files (``task.LIST_PREFIX``) from the items' lines, given in (dataset,
    item) order; failed items contribute nothing."""

    def __init__(self) -> None:
        self.by_path: dict[str, list[str]] = {}

    def add(self, table: pa.Table | None) -> None:
        flat = _lines(table)
        for path, line in zip(flat.field("path").to_pylist(), flat.field("line").to_pylist()):
            self.by_path.setdefault(path, []).append(line)

    def files(self) -> list[tuple[str, bytes]]:
        return [(path, ("\n".join(lines) + "\n").encode("utf-8")) for path, lines in sorted(self.by_path.items())]


def list_paths(table: pa.Table | None) -> set[str]:
    """The list files ``table``'s items contribute to (``ListFiles``' paths, without their lines)."""
    flat = _lines(table)
    return set(pc.unique(flat.field("path")).to_pylist()) if len(flat) else set()


def _lines(table: pa.Table | None):
    if table is None or "lines" not in table.column_names or table.num_rows == 0:
        return pa.array([], pa.struct([("path", pa.string()), ("line", pa.string())]))
    failed = pc.equal(table.column("status"), "failed")
    lines = table.column("lines")
    if pc.any(failed).as_py():
        lines = lines.filter(pc.invert(failed))
    return pc.list_flatten(lines).combine_chunks()


def list_files(manifest: pa.Table | None) -> list[tuple[str, bytes]]:
    """``ListFiles`` of a whole manifest (in any order)."""
    files = ListFiles()
    files.add(None if manifest is None else in_item_order(manifest))
    return files.files()


def input_fingerprint(manifest: pa.Table, rows_per_block: int = 262_144, digest=None) -> str:
    """sha256 over every item's name and input checksums, in manifest order: one line a row,
    ``dataset<TAB>item<TAB>ann_sha256<TAB>img_sha256<LF>``, hashed a block of rows at a time from
    Arrow's buffer (no Python string per row). ``digest``: a sha256 to go on with (the rows before)."""
    digest = hashlib.sha256() if digest is None else digest
    for start in range(0, manifest.num_rows, rows_per_block):
        block = manifest.slice(start, rows_per_block)
        cols = [pc.fill_null(block.column(c), "") for c in ("dataset", "item", "ann_sha256", "img_sha256")]
        lines = pc.cast(pc.binary_join_element_wise(pc.binary_join_element_wise(*cols, "\t"), "\n", ""),
                        pa.large_string())
        lines = lines.combine_chunks() if isinstance(lines, pa.ChunkedArray) else lines
        offsets = np.frombuffer(lines.buffers()[1], np.int64, len(lines) + 1, lines.offset * 8)
        if len(lines):
            digest.update(memoryview(lines.buffers()[2])[offsets[0]:offsets[-1]])
    return digest.hexdigest()


def _count(mask) -> int:
    return int(pc.sum(mask).as_py() or 0)


class Tally:
    """What the report counts of a manifest given a piece at a time in item order: items by status,
    files and bytes written, the failed and warned rows it names (``report.listed_failures``,
    ``listed_warnings``: only those rows are kept), the input fingerprint."""

    def __init__(self) -> None:
        self.items = self.written = self.unchanged = self.files_written = self.bytes_written = 0
        self.failed: list[pa.Table] = []
        self.warned: list[pa.Table] = []
        self.digest = hashlib.sha256()

    def add(self, rows: pa.Table) -> None:
        status = rows.column("status")
        is_ok = pc.equal(status, "ok")
        self.items += rows.num_rows
        self.written += _count(is_ok)
        self.unchanged += _count(pc.equal(status, "unchanged"))
        n_outputs = pc.list_value_length(rows.column("outputs"))
        self.files_written += int(pc.sum(pc.if_else(is_ok, n_outputs, 0)).as_py() or 0)
        self.bytes_written += int(pc.sum(rows.column("bytes_written")).as_py() or 0)
        self.failed.append(rows.select(["dataset", "item", "status", "error", "error_type"])
                           .filter(pc.equal(status, "failed")))
        lengths = pc.fill_null(pc.list_value_length(rows.column("warnings")), 0)
        self.warned.append(rows.select(["dataset", "item", "warnings"]).filter(pc.greater(lengths, 0)))
        input_fingerprint(rows, digest=self.digest)

    def failures(self) -> tuple[list[dict], dict]:
        return listed_failures(pa.concat_tables(self.failed))

    def warnings(self) -> tuple[list[dict], dict]:
        return listed_warnings(pa.concat_tables(self.warned))

    def fingerprint(self) -> str:
        return self.digest.hexdigest()
