"""What an unfinished run left in the destination, and which recorded outputs are still trusted.

The rule: the manifest is the truth, and it lists only what is verifiably on the destination. A
run that did not finish (killed, out of space, SIGTERMed) leaves under ``.maskcore-meta/``:
- ``partials/<key>.parquet``: the partitions it finished (each item's input checksums and files);
- ``started/<key>.json``: the partitions that changed the destination, finished or not (written by
  the task before its first write or delete).
The next run trusts the committed manifest's record of an item only when no unfinished run may
have touched the item since. An item of a leftover partial that this run does not resume (other
configuration, other inputs, other partitioning), or of a started partition that left no partial,
is *untrusted*: its previous record is dropped, so it is rendered again whatever its inputs.
A partial this run resumes is checked item by item against the inputs by the workers
(:func:`maskcore.exec.task.resume_partition`). When an unfinished run may have written files that
no record names (a started partition without a partial, a damaged state file), the run ends by
removing every file of the destination that its manifest does not list (a *sweep*).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc

from .plan import partitions
from .state import (
    PARTIALS,
    RUN_ID_KEY,
    STARTED,
    DamagedState,
    PartitionKeys,
    item_keys,
    read_state_parquet,
    set_aside,
)

PARTIAL_COLUMNS = ("dataset", "item", "status", "ann_sha256", "img_sha256", "outputs")
PREV_COLUMNS = ("prev_ann_sha256", "prev_img_sha256")


@dataclass
class Leftovers:
    """State files of unfinished runs (the committed run's own leftovers excluded)."""
    partials: dict[str, pa.Table] = field(default_factory=dict)          # key -> finished partition
    started: dict[str, list | None] = field(default_factory=dict)         # key -> [[dataset, item]], None: unreadable
    files: list[str] = field(default_factory=list)                         # every leftover file (removed at commit)
    damaged: list[DamagedState] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not (self.partials or self.started or self.damaged)


def read_leftovers(sink, committed_run: str | None, damaged: list[DamagedState]) -> Leftovers:
    """Read ``partials/`` and ``started/``; unreadable files are moved aside into ``damaged``."""
    left = Leftovers(damaged=damaged)
    for name in sink.listdir(PARTIALS):
        path = f"{PARTIALS}/{name}"
        table = read_state_parquet(sink, path, PARTIAL_COLUMNS, damaged)
        if table is None:
            continue  # gone, or damaged and moved aside
        left.files.append(path)
        if not name.endswith(".parquet"):
            continue
        run = (table.schema.metadata or {}).get(RUN_ID_KEY, b"").decode()
        if committed_run and run == committed_run:
            continue  # the committed run's own partial (killed while cleaning up): recorded already
        left.partials[name[:-len(".parquet")]] = table
    for name in sink.listdir(STARTED):
        path = f"{STARTED}/{name}"
        try:
            data = sink.read(path)
        except FileNotFoundError:
            continue
        try:
            doc = json.loads(data)
            items = [(str(d), str(i)) for d, i in doc["items"]]
            run = doc.get("run", "")
        except (ValueError, KeyError, TypeError) as exc:
            damaged.append(set_aside(sink, path, data, f"{type(exc).__name__}: {exc}"[:300]))
            left.started[name] = None  # which items it covered is unknown: all of them
            continue
        left.files.append(path)
        if committed_run and run == committed_run:
            continue
        left.started[name.removesuffix(".json")] = items
    return left


def _keys_of(table: pa.Table) -> set[str]:
    return set(item_keys(table).to_pylist())


def _distrust(plan: pa.Table, untrusted: set[str] | None) -> pa.Table:
    """Drop the previous records of ``untrusted`` items (None: of every item)."""
    if PREV_COLUMNS[0] not in plan.column_names:
        return plan
    if untrusted is None:
        mask = pa.array([True] * plan.num_rows, pa.bool_())
    else:
        mask = pc.is_in(item_keys(plan), value_set=pa.array(sorted(untrusted), pa.string()))
    for name in PREV_COLUMNS:
        column = plan.column(name)
        plan = plan.set_column(plan.schema.get_field_index(name), name,
                               pc.if_else(mask, pa.nulls(plan.num_rows, column.type), column))
    return plan


@dataclass
class Settled:
    plan: pa.Table
    parts: list[pa.Table]
    keys: Sequence[str]               # state.PartitionKeys: each key made when first asked for
    resumed: dict[int, pa.Table]      # partition index -> the leftover partial it resumes (to check)
    untrusted: int                    # items whose previous record was dropped
    sweep: bool                       # files no record names may be on the destination


def settle(plan: pa.Table, config_fp: str, left: Leftovers) -> Settled:
    """Partition keys, the partials to resume, and the plan with untrusted records dropped.

    Dropping a record changes its partition's key, which may orphan a partial that matched before:
    repeated until nothing more becomes untrusted (each round only grows the untrusted set)."""
    everything = any(items is None for items in left.started.values())
    untrusted: set[str] = set()
    if everything:
        plan = _distrust(plan, None)
    while True:
        parts = partitions(plan)
        keys = PartitionKeys(config_fp, plan, parts.bounds)  # made as asked for: none when nothing is resumed
        matched = {k for k in keys if k in left.partials} if left.partials else set()
        found: set[str] = set()
        for key, table in left.partials.items():
            if key not in matched:
                found |= _keys_of(table)
        for key, items in left.started.items():
            if key not in matched and items:
                found |= {f"{d}\x00{i}" for d, i in items}
        found -= untrusted
        if not found or everything:
            break
        untrusted |= found
        plan = _distrust(plan, untrusted)
    resumed = {i: left.partials[k] for i, k in enumerate(keys) if k in matched} if matched else {}
    unknown_files = any(k not in left.partials for k in left.started) or bool(left.damaged)
    n_untrusted = plan.num_rows if everything else len(untrusted)
    return Settled(plan, parts, keys, resumed, n_untrusted, unknown_files)


def leftover_outputs(left: Leftovers) -> pa.Array:
    """Every file the leftover partials recorded (candidates for removal when no item makes them now)."""
    arrays = [pc.list_flatten(t.column("outputs")).combine_chunks().field("path")
              for t in left.partials.values() if t.num_rows]
    return pa.concat_arrays(arrays) if arrays else pa.array([], pa.string())
