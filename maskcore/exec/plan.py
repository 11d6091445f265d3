"""Planning: the item listing becomes partitions (a pyarrow table), before any work is done.

Adds to the reader's listing (dataset, item, ann_path, img_path, ...) the columns
``out_dir`` (the dataset's output folder), ``out_name`` (the item's file name in the output,
made safe), ``mask_stem`` (the item's mask file stem, unique within
its dataset even when two items share a stem or differ only by case) and ``partition``.
Pure: table in, table out.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from collections.abc import Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..paths import LEGACY_STATE_DIR, STATE_DIR, fold, safe_component, stem, unique_names

DEFAULT_ITEMS_PER_PARTITION = 32
"""The target partition size: items per partition (``--items-per-partition``, a job's
``items_per_partition``)."""
MIN_PARTITIONS = 4
"""A run of fewer than ``MIN_PARTITIONS * items_per_partition`` items is cut into this many
partitions (smaller ones), so that a small run still spreads over several workers and a lost one
costs little. Partitions depend on the item count and the target size only, never on the
cluster: a killed run resumes the same partitions on 1 worker as on 100."""


RESERVED_ROOT_NAMES = (STATE_DIR, LEGACY_STATE_DIR, "meta.json", "obj_class_to_machine_color.json",
                      "obj_class_to_semantic_color.json")
"""Names at the destination root that a dataset folder must not take (run state, project files)."""


def dataset_out_dir(dataset: str) -> str:
    """``top/child`` -> ``top/datasets/child`` (the Supervisely nesting), each part made safe."""
    return "/datasets/".join(safe_component(p) for p in dataset.split("/"))


def dataset_out_dirs(datasets: list[str]) -> dict[str, str]:
    """Output folder of each dataset: ``dataset_out_dir``, made unique among siblings ignoring
    case (``a\\b`` and ``a_b``, ``DS`` and ``ds``) and kept off ``RESERVED_ROOT_NAMES``.

    Nested datasets follow their parent's folder. Deterministic for a given set of names.
    """
    prefixes = sorted({tuple(d.split("/")[:k]) for d in set(datasets)
                       for k in range(1, d.count("/") + 2)})
    out: dict[tuple, str] = {}
    siblings: dict[tuple, list[tuple]] = {}
    for p in prefixes:
        siblings.setdefault(p[:-1], []).append(p)
    for parent in sorted(siblings, key=len):
        kids = siblings[parent]
        names = unique_names([safe_component(k[-1]) for k in kids], ["/".join(k) for k in kids],
                             keep_extension=False, reserved=() if parent else RESERVED_ROOT_NAMES)
        for k, name in zip(kids, names):
            out[k] = f"{out[parent]}/datasets/{name}" if parent else name
    return {d: out[tuple(d.split("/"))] for d in set(datasets)}


def mask_stems(items: list[str], keys: list[str] | None = None) -> list[str]:
    """Mask file stems for the items of one dataset.

    ``cat.jpg`` -> ``cat``; when two items would share a stem (``cat.jpg`` and ``cat.png``, or
    ``Cat.jpg`` and ``cat.jpg`` on a case-insensitive disk) all of them keep their full name
    instead (``cat.jpg``, ``cat.png``); a remaining clash gets a short hash of ``keys`` (default:
    the item names; give distinct keys when ``items`` may repeat, e.g. across datasets).
    """
    stems = [safe_component(stem(i)) for i in items]
    counts = Counter(fold(s) for s in stems)
    full = [s if counts[fold(s)] == 1 else safe_component(i) for s, i in zip(stems, items)]
    return unique_names(full, keys or items, keep_extension=False)


def out_names(items: list[str]) -> list[str]:
    """File names for the copied image and annotation of each item of one dataset: the item name
    made safe (one path component, no control characters), unique ignoring case."""
    return unique_names([safe_component(i) for i in items], items)


def partition_size(n_items: int, items_per_partition: int | None = None) -> int:
    """Items per partition for a run of ``n_items``: the target size
    (``DEFAULT_ITEMS_PER_PARTITION`` when None), smaller when that would give fewer than
    ``MIN_PARTITIONS`` partitions; at least 1."""
    size = items_per_partition or DEFAULT_ITEMS_PER_PARTITION
    return max(1, min(size, math.ceil(n_items / MIN_PARTITIONS))) if n_items else size


def partition_numbers(n_items: int, items_per_partition: int | None = None) -> pa.Array:
    """The ``partition`` column of ``n_items`` planned rows (contiguous runs of
    ``partition_size``)."""
    size = partition_size(n_items, items_per_partition)
    return pc.divide(pa.array(np.arange(n_items, dtype=np.int32)), pa.scalar(size, pa.int32()))


def plan_partitions(items: pa.Table, *, items_per_partition: int | None = None,
                    project_wide_stems: bool = False, workers: int | None = None) -> pa.Table:
    """Add ``out_dir``, ``mask_stem`` and ``partition`` to a sorted item listing.

    ``project_wide_stems``: mask stems unique across all datasets (layouts that put every
    dataset's masks in one folder, e.g. CVAT's ``SegmentationClass/``), not only within one.

    Partitions are contiguous runs of items, at most ``items_per_partition`` each, at least
    ``MIN_PARTITIONS`` of them when there are enough items (``partition_size``). ``workers`` is
    accepted for older callers and ignored: partitions never depend on the cluster.
    """
    del workers
    n = items.num_rows
    dataset = pc.dictionary_encode(items.column("dataset").combine_chunks())
    names_in = dataset.dictionary.to_pylist()
    out_dirs = dataset_out_dirs(names_in)
    out_dir = pa.array([out_dirs[d] for d in names_in], pa.string()).take(dataset.indices)
    item = pc.cast(items.column("item").combine_chunks(), pa.string())
    simple, stem_col = _simple_names(items.column("dataset").combine_chunks(), item)
    safe_names = item
    stems = stem_col
    slow = np.flatnonzero(~simple)
    if len(slow):  # datasets with names to make safe or unique: the rules of out_names / mask_stems
        stem_list, name_list = stems.to_pylist(), safe_names.to_pylist()
        slow_rows = pa.array(slow)
        datasets, names = pc.take(items.column("dataset"), slow_rows).to_pylist(), item.take(slow_rows).to_pylist()
        by_dataset: dict[str, list[int]] = {}
        for k, d in enumerate(datasets):
            by_dataset.setdefault(d, []).append(k)
        for rows in by_dataset.values():
            in_dataset = [names[k] for k in rows]
            for k, s, o in zip(rows, mask_stems(in_dataset), out_names(in_dataset)):
                stem_list[slow[k]], name_list[slow[k]] = s, o
        stems, safe_names = pa.array(stem_list, pa.string()), pa.array(name_list, pa.string())
    if project_wide_stems and len(names_in) > 1:
        all_names, all_datasets = item.to_pylist(), items.column("dataset").to_pylist()
        stems = pa.array(mask_stems(all_names, [f"{d}\x00{i}" for d, i in zip(all_datasets, all_names)]), pa.string())
    partition = partition_numbers(n, items_per_partition)
    return (items.append_column("out_dir", out_dir)
                 .append_column("out_name", safe_names)
                 .append_column("mask_stem", stems)
                 .append_column("partition", partition))


_SIMPLE = r"^[A-Za-z0-9_\-]([A-Za-z0-9_\-. ]*[A-Za-z0-9_\-])?$"
"""Names that ``safe_component`` keeps as they are (ASCII letters, digits, ``_-. ``, no leading dot or
trailing dot or space); ``_DEVICE``: the Windows device names it prefixes."""
_DEVICE = r"(?i)^(con|prn|aux|nul|com[0-9]|lpt[0-9])(\.|$)"


def _simple_names(dataset: pa.Array, item: pa.Array) -> tuple[np.ndarray, pa.Array]:
    """Which items keep their name as ``out_name`` and their ``stem`` as ``mask_stem`` (what
    ``out_names`` and ``mask_stems`` give for a dataset of simple ASCII names whose names and
    stems are unique ignoring case), and the stems; vectorised. Every item of a dataset that
    has any other item is marked not simple: its dataset goes through the general rules."""
    stem = pc.replace_substring_regex(item, r"^(.+)\.[^.]*$", r"\1")
    ok = pc.and_(pc.match_substring_regex(item, _SIMPLE), pc.match_substring_regex(stem, _SIMPLE))
    device = pc.or_(pc.match_substring_regex(item, _DEVICE), pc.match_substring_regex(stem, _DEVICE))
    ok = pc.and_(ok, pc.invert(device))
    ok = pc.and_(ok, pc.less_equal(pc.utf8_length(item), 150))
    table = pa.table({"d": dataset, "n": pc.utf8_lower(item), "s": pc.utf8_lower(stem), "ok": ok})
    bad = set(table.filter(pc.invert(ok)).column("d").to_pylist())
    for key in ("n", "s"):
        bad |= _datasets_with_repeats(table, key)
    simple = pc.invert(pc.is_in(dataset, pa.array(sorted(bad), pa.string()))) if bad else pa.array(
        np.ones(len(item), bool))
    return np.asarray(simple.to_numpy(zero_copy_only=False), bool), stem


def _datasets_with_repeats(table: pa.Table, key: str) -> set[str]:
    """The datasets (column ``d``) in which two rows share ``key``. When the rows are in (d, key)
    order (a sorted listing of simple names: their lower case and stems sort the same), repeats are
    neighbours and one comparison of each row with the next finds them; else a count per group."""
    if table.num_rows > 1:
        d, k = table.column("d"), table.column(key)
        head, tail = slice(0, table.num_rows - 1), slice(1, table.num_rows)
        same_d = pc.equal(d[tail], d[head])
        if pc.all(pc.or_(pc.invert(same_d), pc.greater_equal(k[tail], k[head]))).as_py():
            repeat = pc.and_(same_d, pc.equal(k[tail], k[head]))
            return set(d[tail].filter(repeat).unique().to_pylist()) if pc.any(repeat).as_py() else set()
    counts = table.group_by(["d", key]).aggregate([([], "count_all")])
    return set(counts.filter(pc.greater(counts.column("count_all"), 1)).column("d").to_pylist())


def assign_partitions(plan: pa.Table, *, items_per_partition: int | None = None,
                      workers: int | None = None) -> pa.Table:
    """Renumber ``partition`` for a plan whose rows were filtered (same rule as ``plan_partitions``;
    ``workers`` ignored)."""
    del workers
    return plan.set_column(plan.schema.get_field_index("partition"), "partition",
                           partition_numbers(plan.num_rows, items_per_partition))


class Lazy(Sequence):
    """A sequence whose items are made when asked for (``_make(i)``, ``0 <= i < len``); slices and
    negative indices as a list's."""

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(len(self)))]
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(i)
        return self._make(i)

    def _make(self, i: int):
        raise NotImplementedError


class Partitions(Lazy):
    """A plan's partitions, in partition order, each made when it is asked for (a run of millions of
    items asks only for the partitions it sends to workers).

    Each partition owns compact buffers (``take``, not ``slice``): a pickled slice would carry
    the whole plan's buffers to every task (measured: 18.9 MB instead of 0.9 KB for 32 rows of a
    1M-row plan). ``bounds``: partition ``i`` is rows ``bounds[i]:bounds[i + 1]`` of ``plan``.
    """

    def __init__(self, plan: pa.Table) -> None:
        self.plan = plan
        if plan.num_rows == 0:
            self.bounds = np.zeros(1, np.int64)
        else:
            ids = plan.column("partition").to_numpy()
            counts = np.bincount(ids, minlength=int(ids.max()) + 1)
            self.bounds = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)

    def __len__(self) -> int:
        return len(self.bounds) - 1

    def _make(self, i: int) -> pa.Table:
        # the rows sliced first: a take from the whole plan costs all of its chunks (pyarrow 26, 32 rows of a
        # 1M-row plan in 1,000 chunks: 2.3 ms, sliced first 0.016 ms; a night sending 85k partitions of 10M items)
        start, end = int(self.bounds[i]), int(self.bounds[i + 1])
        return self.plan.slice(start, end - start).take(pa.array(np.arange(end - start), pa.int64()))

    def __eq__(self, other) -> bool:
        return list(self) == list(other) if isinstance(other, (list, Partitions)) else NotImplemented


def partitions(plan: pa.Table) -> Partitions:
    """Split a plan into one table per partition, in partition order (:class:`Partitions`)."""
    return Partitions(plan)


class Todo(Lazy):
    """The tasks of a run, in partition order: ``(partition, rows, key, partial to resume or None)``,
    each task's rows taken from ``rows`` (partition -> table, e.g. ``stamps.SentRows``, which makes
    them when asked for) only when its entry is asked for. One task a partition, or with ``groups``
    (runs of the partitions sent, in order, none resuming a partial: ``consecutive_groups``) one task
    a group: its rows those of its partitions, its key made of theirs, its number its first
    partition's. ``n_rows``: the rows of them all."""

    def __init__(self, rows: Mapping, keys, resumed: dict, n_rows: int, groups: list[list[int]] | None = None) -> None:
        self.rows, self.keys, self.resumed, self.n_rows = rows, keys, resumed, n_rows
        self.ids = sorted(rows)
        self.groups = groups if groups is not None else [[i] for i in self.ids]
        if groups is not None and (sorted(i for g in groups for i in g) != self.ids
                                   or any(resumed.get(i) is not None for i in self.ids)):
            raise ValueError("Todo: groups must hold each partition sent once, and none resuming a partial")

    def __len__(self) -> int:
        return len(self.groups)

    def _make(self, k: int):
        group = self.groups[k]
        if len(group) == 1:
            i = group[0]
            return i, self.rows[i], self.keys[i], self.resumed.get(i)
        rows = pa.concat_tables([self.rows[i] for i in group]).combine_chunks()
        key = hashlib.sha256("\n".join(self.keys[i] for i in group).encode()).hexdigest()[:32]
        return group[0], rows, key, None

    def n_partitions(self) -> int:
        """How many partitions the tasks hold."""
        return len(self.ids)

    def n_resumed(self) -> int:
        """How many of them resume a partial."""
        return sum(1 for i in self.ids if self.resumed.get(i) is not None)


def consecutive_groups(ids: list[int], counts: list[int], rows: int) -> list[list[int]]:
    """``ids`` (partitions, in order, with ``counts`` rows each) cut into runs of consecutive ones
    holding at least ``rows`` rows (the last one fewer)."""
    groups, group, n = [], [], 0
    for i, c in zip(ids, counts):
        group.append(i)
        n += c
        if n >= rows:
            groups.append(group)
            group, n = [], 0
    return groups + [group] if group else groups
