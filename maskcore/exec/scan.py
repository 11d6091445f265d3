"""Scanning annotations: the facts item filters need, one small row per item.

Conventions:
- ``scan_table(source, meta, rows)`` is pure apart from reading the rows' annotations through
  the source (``readers.base.read_item_annotation``, then the reader's own ``parse_annotation``, so it works for
  any reader); it never raises for a bad item: the row's ``scan_error`` says why, and the
  filters keep such items so the export reports them.
- Columns (``SCAN_SCHEMA``): ``classes`` (distinct class titles of the objects, sorted),
  ``image_tags`` / ``object_tags`` (each tag as ``"name"`` and, when it has a value,
  ``"name=value"``; numbers as JSON writes them; distinct, sorted), ``n_objects``,
  ``created_at`` / ``updated_at`` (UTC, microseconds).
- Timestamps come from Supervisely annotation JSON only (``annotation_format ==
  "supervisely"``): Supervisely writes ``createdAt`` / ``updatedAt`` on each object and each
  tag (image and object tags), not on the annotation. ``created_at`` is the earliest
  ``createdAt``, ``updated_at`` the latest ``updatedAt`` or ``createdAt``; values without a
  time zone are UTC. Other formats, and annotations without objects or tags, give null.
- ``scan_partitions`` is the thin Dask layer: one task per plan partition, rows in, one small
  table out; nothing but annotations is read.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Iterable
from typing import Any

import pyarrow as pa

from ..model.annotation import Annotation, ProjectMeta
from ..readers.base import parse_item_annotation, read_item_annotation

SCAN_SCHEMA = pa.schema([
    ("dataset", pa.string()),
    ("item", pa.string()),
    ("n_objects", pa.int32()),
    ("classes", pa.list_(pa.string())),
    ("image_tags", pa.list_(pa.string())),
    ("object_tags", pa.list_(pa.string())),
    ("created_at", pa.timestamp("us", tz="UTC")),
    ("updated_at", pa.timestamp("us", tz="UTC")),
    ("scan_error", pa.string()),       # null when the annotation was read and parsed
])


def tag_forms(tags: Iterable[dict]) -> list[str]:
    """``"name"`` and ``"name=value"`` of each tag (``{"name", "value"}`` dicts), distinct, sorted."""
    forms = set()
    for tag in tags:
        if not isinstance(tag, dict) or not isinstance(tag.get("name"), str):
            continue
        forms.add(tag["name"])
        value = tag.get("value")
        if value is not None:
            text = value if isinstance(value, str) else json.dumps(value)
            forms.add(f"{tag['name']}={text}")
    return sorted(forms)


def parse_timestamp(value: Any, where: str) -> dt.datetime:
    """An ISO 8601 text as an aware UTC datetime; naive = UTC. ``ValueError`` naming ``where``."""
    try:
        stamp = dt.datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        stamp = None
    if stamp is None:
        raise ValueError(f"{where}: expected an ISO 8601 time such as 2020-11-17T15:15:58.898Z, "
                         f"got {value!r:.60}")
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=dt.timezone.utc)
    return stamp.astimezone(dt.timezone.utc)


def sly_timestamps(obj: Any) -> tuple[dt.datetime | None, dt.datetime | None]:
    """(created_at, updated_at) of a decoded Supervisely annotation (see the module conventions).

    ``ValueError`` naming the field when a timestamp is not ISO 8601."""
    if not isinstance(obj, dict):
        return None, None
    stamped: list[tuple[str, Any]] = [("", obj)]
    for i, tag in enumerate(obj.get("tags") or []):
        stamped.append((f"tags[{i}].", tag))
    for i, o in enumerate(obj.get("objects") or []):
        stamped.append((f"objects[{i}].", o))
        for j, tag in enumerate(o.get("tags") or [] if isinstance(o, dict) else []):
            stamped.append((f"objects[{i}].tags[{j}].", tag))
    created, updated = [], []
    for prefix, entry in stamped:
        if not isinstance(entry, dict):
            continue
        for key in ("createdAt", "updatedAt"):
            if entry.get(key) is not None:
                stamp = parse_timestamp(entry[key], prefix + key)
                updated.append(stamp)
                if key == "createdAt":
                    created.append(stamp)
    return min(created, default=None), max(updated, default=None)


def annotation_facts(annotation: Annotation) -> dict:
    """Classes, tags and object count of a parsed annotation (any reader)."""
    return {
        "n_objects": len(annotation.labels),
        "classes": sorted({label.class_title for label in annotation.labels}),
        "image_tags": tag_forms(annotation.tags),
        "object_tags": tag_forms(t for label in annotation.labels for t in label.tags),
    }


def scan_row(source: Any, meta: ProjectMeta, row: dict) -> dict:
    """The scan row of one plan row; never raises for a bad item (``scan_error`` says why)."""
    from ..limits import MAX_PIXELS

    where = f"{row['dataset']}/{row['item']}"
    out = {"dataset": row["dataset"], "item": row["item"], "n_objects": None, "classes": None,
           "image_tags": None, "object_tags": None, "created_at": None, "updated_at": None,
           "scan_error": None}
    try:
        if row.get("problem"):
            raise ValueError(row["problem"])
        if row.get("ann_inline") is None and not row.get("ann_path"):
            raise ValueError("the image has no annotation file")
        ann = read_item_annotation(source, row)   # the bytes, and what the reader decoded on the way
        data = ann.data
        annotation = parse_item_annotation(source, data, ann.decoded, meta, where, max_bitmap_pixels=MAX_PIXELS)
        out.update(annotation_facts(annotation))
        if source.annotation_format == "supervisely":
            out["created_at"], out["updated_at"] = sly_timestamps(json.loads(data))
    except Exception as exc:  # noqa: BLE001 - a bad item is kept and reported by the export, never dropped here
        text = str(exc)
        out["scan_error"] = text if text.startswith(where) else f"{where}: {text}"
    return out


def scan_table(source: Any, meta: ProjectMeta, rows_table: pa.Table) -> pa.Table:
    """One ``SCAN_SCHEMA`` row per row of ``rows_table`` (a plan partition), in its order."""
    rows = [scan_row(source, meta, row) for row in rows_table.to_pylist()]
    return pa.Table.from_pylist(rows, schema=SCAN_SCHEMA)


def scan_partitions(client: Any, source: Any, meta: ProjectMeta, parts: list[pa.Table]) -> pa.Table:
    """``scan_table`` over every partition, one Dask task each on ``client`` (a
    ``distributed.Client``; ``None`` scans in this process). Rows in partition order."""
    if client is None:
        tables = [scan_table(source, meta, part) for part in parts]
    else:
        token = uuid.uuid4().hex[:12]
        # source and meta are small (a few KB pickled) and travel with each task: no broadcast
        # scatter, whose peer-to-peer replication was seen to hang a worker on a loaded machine
        futures = [client.submit(scan_table, source, meta, part, key=f"maskcore-scan-{token}-{i}",
                                 pure=False, retries=2) for i, part in enumerate(parts)]
        tables = client.gather(futures)
    return pa.concat_tables(tables) if tables else SCAN_SCHEMA.empty_table()
