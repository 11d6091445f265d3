"""What one Dask task runs: read, decode, render, encode and write the items of one partition.

The task receives a small picklable :class:`TaskSpec` and the partition's rows; it opens its own
files on the worker and returns a small table of what it wrote (one row per item). A bad item is
recorded with its reason and never stops the partition; its files are rendered in memory first
and written only when the whole item succeeded.
"""

from __future__ import annotations

import hashlib
import json
import time
import traceback
from dataclasses import dataclass, replace
from typing import Any

import pyarrow as pa

from ..codec.parquet import parquet_bytes
from ..errors import AnnotationError, ItemError, ItemSourceError, LateWriteError, LimitError, MaskcoreError
from ..io.archive import CHUNKS_KEY
from ..layouts.base import LIST_PREFIX
from ..limits import MAX_ANNOTATION_BYTES
from ..model.annotation import ProjectMeta
from ..model.crop import crop_annotation_report
from ..model.item import ItemData
from ..readers.base import ItemAnnotation, parse_item_annotation, read_item_annotation
from .memory import keep_freed_heap, refuse_oversize

OUTPUT_TYPE = pa.struct([("path", pa.string()), ("bytes", pa.int64()), ("sha256", pa.string())])
LINE_TYPE = pa.struct([("path", pa.string()), ("line", pa.string())])
RESULT_SCHEMA = pa.schema([
    ("dataset", pa.string()),
    ("item", pa.string()),
    ("out_dir", pa.string()),         # where the item's outputs went: names made safe and unique
    ("out_name", pa.string()),
    ("mask_stem", pa.string()),
    ("status", pa.string()),          # "ok" | "unchanged" | "failed"
    ("error", pa.string()),           # "<dataset>/<item>[/object i]: reason", null when ok
    ("error_type", pa.string()),
    ("warnings", pa.list_(pa.string())),  # "<dataset>/<item>: what was done about what", [] when none
    ("ann_sha256", pa.string()),
    ("img_sha256", pa.string()),
    ("outputs", pa.list_(OUTPUT_TYPE)),
    ("lines", pa.list_(LINE_TYPE)),   # the item's lines of project-level list files (see LIST_PREFIX)
    ("bytes_written", pa.int64()),
    ("seconds", pa.float64()),
])


@dataclass(frozen=True)
class TaskSpec:
    source: Any            # a reader source (picklable, opens lazily)
    sink: Any              # a task sink (maskcore.io.sinks.base: picklable, opens lazily)
    layout: Any            # a layout object (frozen, picklable)
    meta: ProjectMeta
    debug: bool = False
    partials_dir: str | None = None   # where a finished partition records its result (resume)
    filters: Any = None               # a maskcore.filters.FilterSpec that drops labels, or None
    started_dir: str | None = None    # where a partition says it started changing the destination
    run_id: str = ""                  # the run, recorded in partials and start markers
    tune_memory: bool = True          # keep freed heap for reuse (maskcore.exec.memory): worker processes
    on_item: Any = None               # called with each item's final status (maskcore.exec.progress.ItemReporter)


def _sha(data: bytes | None) -> str | None:
    return None if data is None else hashlib.sha256(data).hexdigest()


def _read_inputs(spec: TaskSpec, row: dict) -> tuple[ItemAnnotation, bytes | None]:
    where = f"{row['dataset']}/{row['item']}"
    if row.get("problem"):  # the reader listed the item but cannot read it (see its ``problem``)
        raise ItemSourceError(row["problem"], where=where)
    if row.get("ann_inline") is None and not row.get("ann_path"):
        raise AnnotationError("the image has no annotation file (expected ann/<item>.json)", where=where)
    size = row.get("ann_bytes")  # the listed size: refuse before reading the whole file
    if size is not None and size > MAX_ANNOTATION_BYTES:
        raise LimitError(f"annotation of {size} bytes is above the limit of {MAX_ANNOTATION_BYTES} bytes "
                         f"(annotations are read and parsed whole)", where=where)
    ann = read_item_annotation(spec.source, row)  # the bytes, and what the reader decoded on the way
    image_bytes = None
    if spec.layout.needs_image and row.get("img_path"):
        image_bytes = spec.source.read_bytes(row["img_path"])
    return ann, image_bytes


BATCH_ITEMS = 8
"""Items of a partition whose polygon fills are drawn in one kernel call (``draw.coverages_many``):
~1.05 -> ~0.67 ms of rasterising per facade image at 8 (benchmarks/kernel_bench.py)."""
BATCH_PIXELS = 2**25
"""At most this many canvas pixels (sum over the batch's items) are rasterised together, and a
batch holds at most ``BATCH_BYTES`` of input bytes: the batch's fills share one buffer (about a
byte per pixel of each polygon's box) that lives until its last item is written."""
BATCH_BYTES = 2**26


def parse_item(spec: TaskSpec, row: dict, ann_bytes: bytes, image_bytes: bytes | None,
               warn=None, decoded=None) -> ItemData:
    """Decode one item's annotation, crop it as the Supervisely SDK does when it loads one (layout
    option ``crop``, Supervisely sources only) and drop filtered labels: what its layout receives.
    ``warn(text)`` hears of every label the crop removed; ``decoded``: what the reader decoded
    ``ann_bytes`` from (``readers.base.ItemAnnotation``), parsed instead of the bytes."""

    where = f"{row['dataset']}/{row['item']}"
    limit = spec.layout.max_canvas_pixels
    annotation = parse_item_annotation(spec.source, ann_bytes, decoded, spec.meta, where, max_bitmap_pixels=limit)
    ann_format = spec.source.annotation_format
    if ann_format == "supervisely" and spec.layout.crop == "sdk":
        annotation, dropped = crop_annotation_report(annotation)
        for note in dropped:
            if warn is not None:
                warn(f"object {note.object_index} ({note.class_title}, {note.geometry_type}) not drawn: "
                     f"{note.reason}; the Supervisely SDK drops it when loading (option crop=none draws it)")
    if spec.filters is not None:
        from .filters import filter_labels
        annotation = filter_labels(annotation, spec.filters)
    return ItemData(dataset=row["dataset"], name=row["item"], out_dir=row["out_dir"],
                    mask_stem=row["mask_stem"], out_name=row["out_name"], meta=spec.meta,
                    annotation=annotation, ann_bytes=ann_bytes, image_bytes=image_bytes,
                    ann_format=ann_format)


def _unchanged(row: dict, ann_sha: str, img_sha: str | None) -> bool:
    """The previous run rendered exactly these inputs with the same configuration."""
    return row.get("prev_ann_sha256") == ann_sha and row.get("prev_img_sha256") == img_sha


def _new_result(row: dict) -> dict:
    return {"dataset": row["dataset"], "item": row["item"], "out_dir": row["out_dir"],
            "out_name": row["out_name"], "mask_stem": row["mask_stem"], "status": "ok", "error": None,
            "error_type": None, "warnings": [], "ann_sha256": None, "img_sha256": None,
            "outputs": [], "lines": [], "bytes_written": 0, "seconds": 0.0}


def failed_result(row: dict, reason: str, error_type: str) -> pa.Table:
    """The result table of one item that failed outside its task (e.g. its worker died)."""
    result = _new_result(row)
    result.update(status="failed", error=f"{row['dataset']}/{row['item']}: {reason}", error_type=error_type)
    return pa.Table.from_pylist([result], schema=RESULT_SCHEMA)


def _fail(spec: TaskSpec, result: dict, row: dict, exc: Exception) -> None:
    if not isinstance(exc, LateWriteError):  # a late duplicate's files are the run's own: keep them
        _forget_outputs(spec, result["outputs"])
    result.update(status="failed", outputs=[], lines=[], bytes_written=0,
                  error_type=type(exc).__name__, error=_describe(exc, row, spec.debug))


def _forget_outputs(spec: TaskSpec, outputs: list[dict]) -> None:
    """A write failed midway (a name the store refuses, a full disk): remove what the item
    already wrote, so that no file outside the manifest is left behind. Best effort."""
    if not hasattr(spec.sink, "delete"):
        return
    for o in outputs:
        try:
            spec.sink.delete([o["path"]])
        except Exception:  # noqa: BLE001 - the original failure is what the report must say
            pass


def _load_item(spec: TaskSpec, row: dict, result: dict) -> ItemData | None:
    """Read and decode one item into ``result``'s checksums; None when it is unchanged since the
    previous run or failed (``result`` then says so). Never raises."""
    try:
        ann, image_bytes = _read_inputs(spec, row)
        result["ann_sha256"], result["img_sha256"] = _sha(ann.data), _sha(image_bytes)
        if _unchanged(row, result["ann_sha256"], result["img_sha256"]):
            result["status"] = "unchanged"
            return None
        where = f"{row['dataset']}/{row['item']}"
        item = parse_item(spec, row, ann.data, image_bytes,
                          warn=lambda text: result["warnings"].append(f"{where}: {text}"), decoded=ann.decoded)
        refuse_oversize(item.annotation, spec.layout, where)  # fails alone, before it is drawn
        return item
    except Exception as exc:  # noqa: BLE001 - one bad item never stops the partition
        _fail(spec, result, row, exc)
        return None


def _write_item(spec: TaskSpec, row: dict, result: dict, item: ItemData, patches=None) -> None:
    """Render ``item`` (with its coverages ``patches`` when drawn already) and write its files
    into ``result``. Never raises."""
    where = f"{row['dataset']}/{row['item']}"
    warn = lambda text: result["warnings"].append(f"{where}: {text}")  # noqa: E731
    try:
        if patches is None:
            files = spec.layout.item_files(item, warn=warn)
        else:
            files = spec.layout.item_files(item, warn=warn, patches=patches)
        # copies of the inputs (img/, ann/) are the very same bytes objects: hashed once
        ann_bytes, image_bytes = item.ann_bytes, item.image_bytes
        known = {id(ann_bytes): result["ann_sha256"], id(image_bytes): result["img_sha256"]}
        for path, data in files:
            if path.startswith(LIST_PREFIX):
                result["lines"].append({"path": path[len(LIST_PREFIX):], "line": data.decode("utf-8")})
                continue
            sha = known.get(id(data)) if data is ann_bytes or data is image_bytes else None
            result["outputs"].append({"path": path, "bytes": len(data), "sha256": sha or _sha(data)})
            spec.sink.write(path, data)
        result["bytes_written"] = sum(o["bytes"] for o in result["outputs"])
    except FencedError:
        raise  # the run is gone: the partition stops, records nothing and removes nothing
    except Exception as exc:  # noqa: BLE001 - one bad item never stops the partition
        _fail(spec, result, row, exc)


def run_item(spec: TaskSpec, row: dict) -> dict:
    """Export one item; returns its result row (see RESULT_SCHEMA). Never raises."""
    start = time.perf_counter()
    result = _new_result(row)
    item = _load_item(spec, row, result)
    if item is not None:
        _write_item(spec, row, result, item)
    result["seconds"] = time.perf_counter() - start
    return result


def _batch_coverages(layout, items: list[ItemData]) -> list:
    """Each item's coverages drawn together (``layout.coverage_job``, ``draw.coverages_many``),
    or None for an item its layout draws alone. Any kernel error: all None, so that each item
    draws its own labels and a bad one is named (the layouts draw one by one on error)."""
    jobs = []
    for item in items:
        try:
            jobs.append(layout.coverage_job(item))
        except Exception:  # noqa: BLE001 - the item draws alone and reports its own error
            jobs.append(None)
    out: list = [None] * len(items)
    groups: dict[tuple, list[int]] = {}
    for i, job in enumerate(jobs):
        if job is not None:
            groups.setdefault((job[1], job[2]), []).append(i)
    from ..kernel.draw import coverages_many
    for (thickness, rule), members in groups.items():
        if len(members) < 2:
            continue
        try:
            drawn = coverages_many([(jobs[i][0], items[i].annotation.size_hw) for i in members],
                                   thickness, rule)
        except Exception:  # noqa: BLE001 - each item draws alone and reports its own error
            continue
        for i, patches in zip(members, drawn):
            out[i] = patches
    return out


class _GuardedSink:
    """A partition's sink that runs ``_before()`` ahead of every write and delete; the rest is the
    wrapped sink's."""

    def __init__(self, sink) -> None:
        self.sink = sink

    def _before(self) -> None:
        raise NotImplementedError

    def write(self, relpath: str, data: bytes) -> None:
        self._before()
        self.sink.write(relpath, data)

    def delete(self, relpaths) -> None:
        self._before()
        self.sink.delete(relpaths)

    def __getattr__(self, name):
        return getattr(self.sink, name)


class _MarkingSink(_GuardedSink):
    """The sink of one partition: before the partition's first write or delete, its start marker
    (``started/<key>.json``: run id and items) is written, so that a run killed at any point
    leaves a record of every item it may have touched (see :mod:`maskcore.exec.recovery`)."""

    def __init__(self, sink, marker: str, part: pa.Table, run_id: str) -> None:
        super().__init__(sink)
        self.marker, self.part, self.run_id = marker, part, run_id
        self.marked = False

    def _before(self) -> None:
        if not self.marked:
            items = [[d, i] for d, i in zip(self.part.column("dataset").to_pylist(),
                                            self.part.column("item").to_pylist())]
            self.sink.write(self.marker, json.dumps({"run": self.run_id, "items": items}).encode("utf-8"))
            self.marked = True


FENCE_SECONDS = 0.25
"""A run's task reads the destination's lock before a write at most this often: a zombie worker
of a killed driver stops writing at most this long after the next run took the lock over."""


class FencedError(LateWriteError):
    """The destination's lock names another run: this task belongs to a run that is gone (a
    zombie worker of a killed driver); it writes and removes nothing more."""


class _FencedSink(_GuardedSink):
    """The sink of a run's partition, fenced by the lock: before a write or delete (at most every
    ``FENCE_SECONDS``) it checks that ``.maskcore-meta/lock`` still names the task's run, and raises
    :class:`FencedError` when it does not (the next run took the lock over, or this run ended)."""

    def __init__(self, sink, run_id: str) -> None:
        super().__init__(sink)
        self.run_id = run_id
        self._checked = float("-inf")

    def _before(self) -> None:
        now = time.monotonic()
        if now - self._checked < FENCE_SECONDS:
            return
        from .state import LOCK
        try:
            doc = json.loads(self.sink.read(LOCK))
        except FileNotFoundError:
            doc = {}
        except (OSError, ValueError):
            return  # a store hiccup or a lock being rewritten: checked again at the next write
        if not isinstance(doc, dict) or doc.get("run") != self.run_id:
            named = doc.get("run") if isinstance(doc, dict) else None
            raise FencedError(f"the destination's lock names run {named!r}, "
                              f"not this task's run {self.run_id!r}: its driver is gone; nothing more is written")
        self._checked = now


def _partial_bytes(spec: TaskSpec, table: pa.Table) -> bytes:
    from .state import RUN_ID_KEY
    return parquet_bytes(table.replace_schema_metadata({**(table.schema.metadata or {}),
                                                        RUN_ID_KEY: spec.run_id.encode()}))


def _partition_name(part: pa.Table, key: str | None) -> int | str:
    """What names the partition's packed chunks: its resume key, else its index."""
    if key:
        return key
    return int(part.column("partition")[0].as_py()) if "partition" in part.column_names and part.num_rows else 0


def run_partition(spec: TaskSpec, part: pa.Table, key: str | None = None) -> pa.Table:
    """The Dask task of a run: export every item of ``part`` (:func:`render_partition`) through
    the partition's writer (``spec.sink.open_partition``: the sink itself for a folder, a
    packer for an archive) and record the result in ``partials/<key>.parquet`` of the sink's
    ``destination`` (when ``spec.partials_dir`` and ``key``).

    A sink that ``packs`` gets every item rendered (an archive holds every file, so none is
    skipped as unchanged) and no start marker (its chunks are rewritten whole); the records of
    its chunks travel in the result's schema metadata (read them with
    :func:`maskcore.io.archive.chunk_records`), and so also in the partial result.
    """
    sink = spec.sink
    if sink.packs:
        part = part.drop_columns([c for c in ("prev_ann_sha256", "prev_img_sha256") if c in part.column_names])
    first = (part.column("dataset")[0].as_py(), part.column("item")[0].as_py()) if part.num_rows else ("", "")
    writer = sink.open_partition(_partition_name(part, key), first)
    started = None if sink.packs else spec.started_dir
    try:
        table = render_partition(replace(spec, sink=writer, partials_dir=None, started_dir=started), part, key)
        records = writer.finish()
    except BaseException:
        writer.abort()
        raise
    if records is not None:
        table = table.replace_schema_metadata({CHUNKS_KEY: json.dumps(records).encode("utf-8")})
    if spec.partials_dir and key:
        _record_partial(sink.destination, spec, key, table)
    return table


def _record_partial(sink, spec: TaskSpec, key: str, table: pa.Table) -> None:
    """Write the partition's partial (what a resumed run may keep). Without one (a full disk) the
    partition is still done: a later run after a kill renders its items again (its start marker
    says they may have changed), so a partial that cannot be written is skipped."""
    try:
        sink.write(f"{spec.partials_dir}/{key}.parquet", _partial_bytes(spec, table))
    except OSError:
        pass


run_archive_partition = run_partition
"""The former archive task, now the one partition task (kept for callers of the old name)."""


def resume_partition(spec: TaskSpec, part: pa.Table, key: str, done: pa.Table) -> pa.Table:
    """Check a partition that an unfinished run finished (``done``, its partial) against the
    inputs as they are now: an item whose annotation and image still hash as ``done`` recorded
    keeps its recorded row (its files are not written again); any other item (edited since,
    failed then) is rendered again. Records the merged result as the partition's partial."""
    if spec.sink.packs:
        return _resume_archive_partition(spec, part, key, done)
    recorded = {(r["dataset"], r["item"]): r for r in done.to_pylist()}
    prev = [recorded.get((d, i)) for d, i in zip(part.column("dataset").to_pylist(),
                                                 part.column("item").to_pylist())]
    part = part.drop_columns([c for c in ("prev_ann_sha256", "prev_img_sha256") if c in part.column_names])
    for name, column in (("prev_ann_sha256", "ann_sha256"), ("prev_img_sha256", "img_sha256")):
        part = part.append_column(name, pa.array(
            [r[column] if r is not None and r["status"] != "failed" else None for r in prev], pa.string()))
    table = render_partition(spec, part, key)
    rows = table.to_pylist()
    merged = [recorded[(r["dataset"], r["item"])] if r["status"] == "unchanged" else r for r in rows]
    table = pa.Table.from_pylist(merged, schema=RESULT_SCHEMA)
    if spec.partials_dir:
        _record_partial(spec.sink, spec, key, table)
    return table


def _resume_archive_partition(spec: TaskSpec, part: pa.Table, key: str, done: pa.Table) -> pa.Table:
    """An archive partition's chunk is kept only when every item's inputs hash as recorded;
    otherwise the whole partition is packed again."""
    recorded = {(r["dataset"], r["item"]): (r["status"], r["ann_sha256"], r["img_sha256"])
                for r in done.select(["dataset", "item", "status", "ann_sha256", "img_sha256"]).to_pylist()}
    for row in part.to_pylist():
        was = recorded.get((row["dataset"], row["item"]))
        if was is None or was[0] == "failed":
            return run_partition(spec, part, key)
        try:
            ann, img = _read_inputs(spec, row)
        except Exception:  # noqa: BLE001 - the render reports it
            return run_partition(spec, part, key)
        if (was[1], was[2]) != (_sha(ann.data), _sha(img)):
            return run_partition(spec, part, key)
    return done


def _finished(spec: TaskSpec, result: dict) -> None:
    """Tell the run's progress display that an item is done (its status is final)."""
    if spec.on_item is not None:
        spec.on_item(result["status"])


def render_partition(spec: TaskSpec, part: pa.Table, key: str | None = None) -> pa.Table:
    """Export every item of ``part``; return one result row per item (see RESULT_SCHEMA).

    Items are loaded in batches (``BATCH_ITEMS``, ``BATCH_PIXELS``, ``BATCH_BYTES``) whose
    polygon fills are drawn in one kernel call when the layout offers ``coverage_job``; then each
    item is rendered and written on its own, in partition order. With ``spec.started_dir`` and
    ``key``, the partition's start marker is written before its first change to the destination.
    """
    if spec.tune_memory:
        keep_freed_heap()  # items reuse freed memory instead of page-faulting it in again (maskcore.exec.memory)
    if spec.started_dir and key and spec.run_id and hasattr(spec.sink, "read"):
        spec = replace(spec, sink=_FencedSink(spec.sink, spec.run_id))  # a zombie of a killed run stops
    if spec.started_dir and key:
        spec = replace(spec, sink=_MarkingSink(spec.sink, f"{spec.started_dir}/{key}.json", part, spec.run_id))
    rows = part.to_pylist()
    results = [_new_result(row) for row in rows]
    batching = hasattr(spec.layout, "coverage_job")
    batch: list[tuple[int, ItemData, float]] = []
    held_pixels = held_bytes = 0

    def flush() -> None:
        patches = _batch_coverages(spec.layout, [it for _, it, _ in batch]) if len(batch) > 1 else [None]
        for (i, item, spent), drawn in zip(batch, patches):
            start = time.perf_counter()
            _write_item(spec, rows[i], results[i], item, drawn)
            results[i]["seconds"] = spent + time.perf_counter() - start
            _finished(spec, results[i])
        batch.clear()

    for i, row in enumerate(rows):
        start = time.perf_counter()
        item = _load_item(spec, row, results[i])
        if item is None:
            results[i]["seconds"] = time.perf_counter() - start
            _finished(spec, results[i])
            continue
        if not batching:
            _write_item(spec, row, results[i], item)
            results[i]["seconds"] = time.perf_counter() - start
            _finished(spec, results[i])
            continue
        h, w = item.annotation.size_hw
        held_pixels += h * w
        held_bytes += len(item.ann_bytes) + len(item.image_bytes or b"")
        batch.append((i, item, time.perf_counter() - start))
        if len(batch) >= BATCH_ITEMS or held_pixels >= BATCH_PIXELS or held_bytes >= BATCH_BYTES:
            flush()
            held_pixels = held_bytes = 0
    if batch:
        flush()
    return pa.Table.from_pylist(results, schema=RESULT_SCHEMA)


def _describe(exc: Exception, row: dict, debug: bool) -> str:
    where = f"{row['dataset']}/{row['item']}"
    if isinstance(exc, ItemError):
        msg = str(exc) if exc.where else f"{where}: {exc}"
    elif isinstance(exc, (MaskcoreError, OSError)):
        msg = f"{where}: {exc}"
    else:
        msg = f"{where}: internal error {type(exc).__name__}: {exc}"
    if debug:
        msg += "\n" + "".join(traceback.format_exception(exc))
    return msg
