"""Run state kept in the destination: fingerprints, partial results, the run lock.

Everything lives under ``<destination>/.maskcore-meta/`` (``paths.STATE_DIR``):
- ``manifest.parquet``: the last finished run, one row per item with the input checksums and
  the files written; with ``config_fingerprint`` it makes the next run incremental. A manifest of
  more than ``MANIFEST_PART_ROWS`` items is written in parts (:func:`write_manifest`): this file
  holds the first rows and names the others' files, ``manifest.parts/<run id>-NNNNN.parquet``.
- ``partials/<key>.parquet``: one finished partition of an unfinished run, named by a hash of
  the job's configuration and the partition's items, so a killed run resumes where it stopped.
- ``started/<key>.json``: written by a partition's task before it first changes the destination
  (run id and the partition's items), so that the next run knows which items an unfinished run
  may have touched (see :mod:`maskcore.exec.recovery`).
- ``damaged/<name>.<UTC time>``: a state file that could not be read, moved aside for inspection.
- ``lock``: one run per destination, a lease (see :mod:`maskcore.exec.lease`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .. import __version__
from ..codec.parquet import parquet_bytes
from ..errors import RefusedError
from ..paths import STATE_DIR
from .plan import Lazy

MANIFEST = f"{STATE_DIR}/manifest.parquet"
MANIFEST_PARTS = f"{STATE_DIR}/manifest.parts"
MANIFEST_PART_ROWS = 262_144
"""Rows of the manifest per file (~65 MB of Parquet, one row group): the driver never holds the
whole encoded manifest of millions of items as one buffer, writing or reading it. (Files of 1M rows
cost ~0.3 GB more at the peak while one was encoded: plan_bench.py, 3M items 2.60 -> 2.30 GiB.)"""
PARTS_KEY = b"maskcore.manifest_parts"
"""Manifest metadata: JSON ``[[file name, rows, sha256], ...]`` of the parts after the first."""
REPORT = f"{STATE_DIR}/report.json"
LOCK = f"{STATE_DIR}/lock"
PARTIALS = f"{STATE_DIR}/partials"
STARTED = f"{STATE_DIR}/started"
DAMAGED = f"{STATE_DIR}/damaged"
RUN_ID_KEY = b"maskcore.run_id"
"""Schema metadata of the manifest and of partials: the run that wrote them."""


class LockedError(RefusedError):
    """Another run holds the destination."""


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def config_fingerprint(layout_options: dict, layout_name: str, meta_raw: dict) -> str:
    """What, besides the inputs, decides the output bytes: version, layout and its options
    (``Layout.fingerprint()``), meta."""
    options = layout_options
    doc = {"maskcore": __version__, "layout": layout_name, "options": options, "meta": meta_raw}
    return _sha(json.dumps(doc, sort_keys=True, default=str).encode("utf-8"))


KEY_COLUMNS = ("dataset", "item", "ann_path", "img_path", "ann_bytes", "img_bytes", "out_dir", "mask_stem",
               "prev_ann_sha256", "prev_img_sha256")


def _key_lines(plan: pa.Table) -> pa.Array:
    """One line per row of what identifies its work: each key column as ``v<value>`` (``n`` when
    null), joined by NUL (no name, path, size or checksum holds a NUL), plus the sha256 of an
    inline annotation (COCO, CVAT XML)."""
    fields = []
    for c in KEY_COLUMNS:
        if c in plan.column_names:
            text = pc.cast(plan.column(c), pa.string())
            fields.append(pc.fill_null(pc.binary_join_element_wise("v", text, ""), "n"))
    if "ann_inline" in plan.column_names:
        fields.append(pa.array(["n" if a is None else "v" + _sha(a) for a in plan.column("ann_inline").to_pylist()],
                               pa.string()))
    if not fields:
        return pa.array([""] * plan.num_rows, pa.string())
    lines = pc.binary_join_element_wise(*fields, "\x00") if len(fields) > 1 else fields[0]
    lines = pc.cast(lines, pa.large_string())
    return lines.combine_chunks() if isinstance(lines, pa.ChunkedArray) else lines


KEY_BLOCK_ROWS = 262_144
"""Rows whose key lines are made at a time (``partition_keys``): ~300 bytes of lines a row, so a
block's lines stay near 80 MB however many items the plan has."""


def partition_keys(config_fp: str, plan: pa.Table, bounds) -> list[str]:
    """Identity of each partition's work (rows ``bounds[i]:bounds[i + 1]`` of ``plan``): the
    configuration plus its items and their inputs. Vectorised over blocks of whole partitions
    (``KEY_BLOCK_ROWS``), then one sha256 per partition over its rows' lines (``_key_lines``),
    which lie contiguous in memory."""
    return PartitionKeys(config_fp, plan, bounds)[:]


class PartitionKeys(Lazy):
    """``partition_keys``, each block of partitions made when one of its keys is first asked for: a
    run that sends no partition to a worker (a no-op night) and resumes none makes none."""

    def __init__(self, config_fp: str, plan: pa.Table, bounds) -> None:
        self.plan, self.bounds = plan, np.asarray(bounds, np.int64)
        self.head = f"{config_fp}\n".encode()
        self.known: dict[int, str] = {}
        # block k is partitions starts[k]:starts[k + 1], together at most KEY_BLOCK_ROWS rows (or one partition)
        cuts = np.searchsorted(self.bounds, np.arange(0, int(self.bounds[-1]) + 1, KEY_BLOCK_ROWS), "right") - 1
        self.starts = np.unique(np.concatenate([cuts, [0, len(self) ]]).clip(0, len(self)))

    def __len__(self) -> int:
        return len(self.bounds) - 1

    def _make(self, i: int) -> str:
        if i not in self.known:
            k = int(np.searchsorted(self.starts, i, "right")) - 1
            self._block(int(self.starts[k]), int(self.starts[k + 1]))
        return self.known[i]

    def _block(self, first: int, end: int) -> None:
        """Keys of partitions ``first:end``."""
        bounds = self.bounds[first:end + 1]
        lines = _key_lines(self.plan.slice(int(bounds[0]), int(bounds[-1] - bounds[0])))
        offsets = np.frombuffer(lines.buffers()[1], dtype=np.int64, count=len(lines) + 1, offset=lines.offset * 8)
        data = memoryview(lines.buffers()[2] or b"")
        rows = bounds - bounds[0]
        for i in range(len(rows) - 1):
            digest = hashlib.sha256(self.head)
            digest.update(data[offsets[rows[i]]:offsets[rows[i + 1]]])
            digest.update(np.diff(offsets[rows[i]:rows[i + 1] + 1]).tobytes())  # where each line ends
            self.known[first + i] = digest.hexdigest()[:32]


def partition_key(config_fp: str, part: pa.Table) -> str:
    """Identity of one partition's work (``partition_keys`` of a plan that is this partition)."""
    return partition_keys(config_fp, part, [0, part.num_rows])[0]


ITEM_ORDER = [("dataset", "ascending"), ("item", "ascending")]


def item_keys(table: pa.Table) -> pa.Array:
    """One string per row naming its item, ``<dataset>\\0<item>`` (NUL never occurs in a name):
    the key the manifest's joins and lookups match items by."""
    return pc.binary_join_element_wise(table.column("dataset"), table.column("item"), "\x00")


def in_item_order(table: pa.Table) -> pa.Table:
    """``table`` sorted by (dataset, item), the manifest's order; as it is (no copy) when it is
    already in that order (a no-op night's rows, partitions that finished in order)."""
    return table if item_ordered(table) else table.sort_by(ITEM_ORDER)


def item_ordered(table: pa.Table, strict: bool = False) -> bool:
    """Whether ``table``'s rows are in (dataset, item) order; ``strict``: and no item twice."""
    if table.num_rows < 2:
        return True
    ds, item = table.column("dataset"), table.column("item")
    head, tail = slice(0, table.num_rows - 1), slice(1, table.num_rows)
    same = pc.equal(ds[tail], ds[head])
    later = pc.greater(item[tail], item[head]) if strict else pc.greater_equal(item[tail], item[head])
    return bool(pc.all(pc.or_(pc.greater(ds[tail], ds[head]), pc.and_(same, later))).as_py())


def read_parquet(sink, relpath: str) -> pa.Table | None:
    """A Parquet file of the destination, or None if it does not exist."""
    if not sink.exists(relpath):
        return None
    return pq.read_table(pa.BufferReader(sink.read(relpath)))


@dataclasses.dataclass
class DamagedState:
    """A state file that could not be read: treated as absent, moved aside to ``kept_as``."""
    file: str
    error: str
    kept_as: str

    def message(self) -> str:
        return (f"{self.file} is unreadable ({self.error}); treated as absent (every item it covered "
                f"is rendered again), kept as {self.kept_as}")


def set_aside(sink, relpath: str, data: bytes, error: str) -> DamagedState:
    """Move a damaged state file to ``.maskcore-meta/damaged/<name>.<UTC time>``."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    kept = f"{DAMAGED}/{relpath.rsplit('/', 1)[-1]}.{stamp}"
    sink.write(kept, data)
    sink.delete([relpath])
    return DamagedState(relpath, error, kept)


def read_state_parquet(sink, relpath: str, required: tuple[str, ...] = (),
                       damaged: list | None = None, columns: tuple[str, ...] | None = None) -> pa.Table | None:
    """A state Parquet file (manifest, partial), or None if it does not exist or is unreadable
    (truncated, garbage, missing one of the ``required`` columns): an unreadable one is moved
    aside (:func:`set_aside`) and recorded in ``damaged``. ``columns``: only those of them the
    file has (and the ``required`` ones)."""
    try:
        data = sink.read(relpath)
    except FileNotFoundError:
        return None
    try:
        table = _read_columns(pa.BufferReader(data), columns, required)
        missing = [c for c in required if c not in table.column_names]
        if missing:
            raise ValueError(f"no column {missing[0]!r}")
        return table
    except Exception as exc:  # noqa: BLE001 - any reason the bytes are not a state table
        note = set_aside(sink, relpath, data, f"{type(exc).__name__}: {exc}"[:300])
        if damaged is not None:
            damaged.append(note)
        return None


def read_manifest_readonly(sink, head: pa.Table | None = None) -> pa.Table | None:
    """The committed manifest for a look that must change nothing (``--dry-run``): None when
    absent or unreadable (left where it is). ``head``: its first file, already read
    (``read_manifest_head_readonly``)."""
    try:
        table = _with_parts(sink, _head_readonly(sink) if head is None else head)
    except Exception:  # noqa: BLE001 - absent or damaged: the run itself would set it aside
        return None
    return table if all(c in table.column_names for c in ("dataset", "item", "status")) else None


def read_manifest_head_readonly(sink) -> pa.Table | None:
    """``read_manifest_readonly`` of the manifest's first file only (its parts: ``manifest_pieces``)."""
    try:
        table = _head_readonly(sink)
    except Exception:  # noqa: BLE001 - absent or damaged: the run itself would set it aside
        return None
    return table if all(c in table.column_names for c in ("dataset", "item", "status")) else None


def _head_readonly(sink) -> pa.Table:
    return pq.read_table(pa.BufferReader(sink.read(MANIFEST)))


def read_manifest(sink, required: tuple[str, ...] = (), damaged: list | None = None,
                  columns: tuple[str, ...] | None = None, names: pa.Table | None = None) -> pa.Table | None:
    """The committed manifest with all its parts (``write_manifest``), or None when there is none or
    it is unreadable: a damaged first file, or a part missing or not the one it names, sets the
    first file aside (``read_state_parquet``), so that every item is rendered again. ``columns``:
    only those (that the manifest has). ``names`` (the plan): where a file lists the same items
    as its rows at that place, its ``dataset`` and ``item`` are the plan's, one copy of the names
    in memory (a quiet night of 10M items: 0.26 GB less at the peak), as each file is read."""
    head = read_manifest_head(sink, required, damaged, columns, names)
    if head is None or PARTS_KEY not in (head.schema.metadata or {}):
        return head
    try:
        tables = [table for _, table in manifest_pieces(sink, head, tuple(head.column_names), names)]
    except DamagedManifest as exc:
        exc.set_aside(sink, damaged)
        return None
    return pa.concat_tables(tables) if len(tables) > 1 else head


def read_manifest_head(sink, required: tuple[str, ...] = (), damaged: list | None = None,
                       columns: tuple[str, ...] | None = None, names: pa.Table | None = None) -> pa.Table | None:
    """The committed manifest's first file (its metadata names the parts: ``manifest_pieces``), or
    None as ``read_manifest``; ``names`` as there."""
    head = read_state_parquet(sink, MANIFEST, required, damaged, columns)
    return None if head is None else _names_from(head, names, 0)


class DamagedManifest(Exception):
    """A part of the committed manifest is missing or not the one its first file names."""

    def set_aside(self, sink, damaged: list | None) -> None:
        """The first file moved aside (``set_aside``): the manifest is treated as absent."""
        note = set_aside(sink, MANIFEST, sink.read(MANIFEST), str(self)[:300])
        if damaged is not None:
            damaged.append(note)


def named_parts(head: pa.Table) -> list:
    """``[[file name, rows, sha256], ...]`` of the parts the manifest's first file ``head`` names
    (``PARTS_KEY``; every piece of ``manifest_pieces`` carries the head's metadata), in item order."""
    return json.loads((head.schema.metadata or {}).get(PARTS_KEY, b"[]"))


def manifest_files(head: pa.Table) -> list[str]:
    """The manifest's files in item order: its first file, then the parts ``head`` names."""
    return [MANIFEST, *(f"{MANIFEST_PARTS}/{part[0]}" for part in named_parts(head))]


def manifest_pieces(sink, head: pa.Table, columns: tuple[str, ...] | None = None, names: pa.Table | None = None):
    """The committed manifest a file at a time, in item order: ``(first row, table)`` of its first
    file ``head`` (as given), then of each part the head names, read (only ``columns``, default the
    head's), checked (rows, sha256) and given the head's metadata as it is reached, so that a
    caller holds one part at a time. ``DamagedManifest`` when a part is missing or not the one named."""
    yield 0, head
    start = head.num_rows
    for name, rows, sha in named_parts(head):
        try:
            data = sink.read(f"{MANIFEST_PARTS}/{name}")
            if _sha(data) != sha:
                raise ValueError(f"{MANIFEST_PARTS}/{name} is not the part the manifest names (sha256 differs)")
            table = _read_columns(pa.BufferReader(data), columns or tuple(head.column_names))
            if table.num_rows != rows:
                raise ValueError(f"{MANIFEST_PARTS}/{name}: {table.num_rows} rows, the manifest says {rows}")
        except Exception as exc:  # any reason a part is not the one recorded
            raise DamagedManifest(f"{type(exc).__name__}: {exc}") from exc
        yield start, _names_from(table, names, start).replace_schema_metadata(head.schema.metadata)
        start += rows


def _read_columns(source, columns: tuple[str, ...] | None, required: tuple[str, ...] = ()) -> pa.Table:
    """A Parquet file's table, or only the ``columns`` (and ``required``) it has."""
    if columns is None:
        return pq.read_table(source)
    names = pq.ParquetFile(source).schema_arrow.names
    return pq.read_table(source, columns=[c for c in names if c in columns or c in required])


def _names_from(table: pa.Table, names: pa.Table | None, start: int) -> pa.Table:
    """``table`` (the manifest's rows from ``start``) with the ``dataset`` and ``item`` columns of
    ``names``' rows at that place when they are the same items; else as it is."""
    if names is None or any(c not in table.column_names or c not in names.column_names for c in ("dataset", "item")):
        return table
    mine = names.slice(start, table.num_rows)
    if mine.num_rows != table.num_rows or not all(mine.column(c).equals(table.column(c)) for c in ("dataset", "item")):
        return table
    for c in ("dataset", "item"):
        i = table.schema.get_field_index(c)
        table = table.set_column(i, table.schema.field(i), mine.column(c))
    return table


def _with_parts(sink, head: pa.Table) -> pa.Table:
    """The manifest's first file followed by the parts it names (each checked: rows, sha256)."""
    tables = [table for _, table in manifest_pieces(sink, head)]
    return pa.concat_tables(tables) if len(tables) > 1 else head


def write_manifest(sink, manifest: pa.Table) -> None:
    """Commit ``manifest``: as one file (``MANIFEST``) up to ``MANIFEST_PART_ROWS`` rows; beyond,
    its rows after the first ``MANIFEST_PART_ROWS`` go to part files named by the run
    (``RUN_ID_KEY``) first, then the first file naming them (``PARTS_KEY``) is written: that write
    is the commit. Parts no committed manifest names (an earlier run's, an unfinished run's) are
    removed after it."""
    writer = ManifestWriter(sink, manifest.schema)
    writer.add(manifest)
    writer.commit()


class ManifestWriter:
    """``write_manifest`` of a manifest given piece by piece (tables in item order, as they are
    made): each part is written as soon as its ``MANIFEST_PART_ROWS`` rows are there, so that the
    whole manifest is never one table; :meth:`commit` writes the first file, naming the parts, last.
    The same files as ``write_manifest`` of the pieces put together."""

    def __init__(self, sink, schema: pa.Schema) -> None:
        self.sink, self.schema = sink, schema
        self.run = (schema.metadata or {}).get(RUN_ID_KEY, b"").decode() or "run"
        self.head: pa.Table | None = None  # the first MANIFEST_PART_ROWS rows: written last, by commit()
        self.pending: list[pa.Table] = []  # rows not yet in a part (fewer than MANIFEST_PART_ROWS)
        self.named: list = []

    def add(self, table: pa.Table) -> None:
        """The next rows of the manifest (the writer's schema and metadata)."""
        self.pending.append(table.replace_schema_metadata(self.schema.metadata))
        while sum(t.num_rows for t in self.pending) >= MANIFEST_PART_ROWS:
            rows = pa.concat_tables(self.pending)  # no copy: the pieces' chunks
            self._emit(rows.slice(0, MANIFEST_PART_ROWS))
            self.pending = [rows.slice(MANIFEST_PART_ROWS)] if rows.num_rows > MANIFEST_PART_ROWS else []

    def _emit(self, rows: pa.Table) -> None:
        if self.head is None:
            self.head = rows
            return
        data = parquet_bytes(rows)
        name = f"{self.run}-{len(self.named) + 1:05d}.parquet"
        self.sink.write(f"{MANIFEST_PARTS}/{name}", data)
        self.named.append([name, rows.num_rows, _sha(data)])

    def commit(self, metadata: dict | None = None) -> None:
        """Write the rows left, then the first file (the commit); remove parts it does not name.
        ``metadata``: the first file's, when some of it is known only once every row is written
        (the files a run wrote); default the writer's schema's (the parts always have that)."""
        rest = pa.concat_tables(self.pending) if self.pending else self.schema.empty_table()
        self.pending = []
        if self.head is None or rest.num_rows:
            self._emit(rest)
        head = self.head
        metadata = self.schema.metadata if metadata is None else metadata
        head = head.replace_schema_metadata(metadata)
        if self.named:
            head = head.replace_schema_metadata({**(metadata or {}),
                                                 PARTS_KEY: json.dumps(self.named).encode()})
        self.sink.write(MANIFEST, parquet_bytes(head))
        keep = {name for name, _, _ in self.named}
        self.sink.delete([f"{MANIFEST_PARTS}/{n}" for n in self.sink.listdir(MANIFEST_PARTS) if n not in keep])
