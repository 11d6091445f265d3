"""What the run report names item by item, capped: a run of millions of items may fail or warn on
millions of them, and the run report (``report.json``) must stay a file a person opens.

The report lists the first ``REPORT_ITEMS_PER_KIND`` failed items of each error type, the first
``REPORT_ITEMS_PER_KIND`` items with warnings and the first ``REPORT_ITEMS_PER_KIND`` source
warnings, in (dataset, item) order, and counts all of them (``listed``). Every failure and warning
is in the manifest (``state.MANIFEST``: ``status``, ``error``, ``error_type``,
``warnings``), the full list, one row per item.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .state import MANIFEST

REPORT_ITEMS_PER_KIND = 100
"""Items (or source warnings) named in the report per kind; the rest are counted."""
FULL_LIST = f"{MANIFEST} (columns status, error, error_type, warnings)"


def listed_failures(manifest: pa.Table, per_kind: int | None = None) -> tuple[list[dict], dict]:
    """The failed items the report names (dataset, item, error; the first ``per_kind`` of each
    ``error_type``) and their counts: ``{"total", "listed", "per_kind", "by_kind"}``."""
    per_kind = REPORT_ITEMS_PER_KIND if per_kind is None else per_kind
    failed = manifest.filter(pc.equal(manifest.column("status"), "failed"))
    kinds = pc.dictionary_encode(pc.fill_null(failed.column("error_type"), "").combine_chunks())
    codes = kinds.indices.to_numpy(zero_copy_only=False)
    counts = np.bincount(codes, minlength=len(kinds.dictionary))
    rows = np.sort(np.concatenate([np.flatnonzero(codes == c)[:per_kind] for c in range(len(counts))]
                                  or [np.zeros(0, np.int64)]))
    named = failed.take(pa.array(rows, pa.int64())).select(["dataset", "item", "error"]).to_pylist()
    by_kind = {k: int(n) for k, n in zip(kinds.dictionary.to_pylist(), counts)}
    return named, {"total": failed.num_rows, "listed": len(named), "per_kind": per_kind, "by_kind": by_kind}


def listed_warnings(manifest: pa.Table, per_kind: int | None = None) -> tuple[list[dict], dict]:
    """The items with warnings the report names (dataset, item, warnings; the first ``per_kind``)
    and their counts: ``{"items", "warnings", "listed"}``."""
    per_kind = REPORT_ITEMS_PER_KIND if per_kind is None else per_kind
    lengths = pc.fill_null(pc.list_value_length(manifest.column("warnings")), 0)
    warned = manifest.filter(pc.greater(lengths, 0))
    named = warned.slice(0, per_kind).select(["dataset", "item", "warnings"]).to_pylist()
    total = int(pc.sum(lengths).as_py() or 0)
    return named, {"items": warned.num_rows, "warnings": total, "listed": len(named)}


def listed_source_warnings(warnings: list[str], per_kind: int | None = None) -> tuple[list[str], dict]:
    """The source's warnings the report names (the first ``per_kind``) and their count."""
    per_kind = REPORT_ITEMS_PER_KIND if per_kind is None else per_kind
    return list(warnings[:per_kind]), {"total": len(warnings), "listed": min(per_kind, len(warnings))}
