"""Selecting items and labels: which items a run exports, and which objects it draws.

Conventions (the vocabulary of a job's ``filters:`` mapping and of the ``--dataset`` ... flags):
- Item filters combine with AND; the values of one filter combine with OR. They apply to the
  plan table with pyarrow compute, in the order of ``FILTER_ORDER``; each filter's count in
  ``removed`` is the number of items it removed among those the earlier filters kept.
- Listing filters need only the listing (``apply_listing_filters``):
  ``datasets`` (a dataset name selects the dataset and the datasets nested in it: ``top``
  selects ``top`` and ``top/child``), ``items`` / ``exclude_items`` (patterns on the item name:
  a plain name matches exactly, a name with ``*``, ``?`` or ``[...]`` is a glob as ``fnmatch``
  reads it (``*`` also crosses ``/``; case-sensitive), ``re:<regex>`` is an RE2 regular
  expression searched anywhere in the name: anchor it with ``^...$`` to match the whole name).
- Annotation filters need a scan of every annotation (``maskcore.scan``) and apply with
  ``apply_annotation_filters``:
  ``image_tags`` / ``object_tags`` (``"name"`` matches a tag of that name whatever its value,
  ``"name=value"`` a tag with that value; numbers as JSON writes them, ``3``, ``0.5``), ``classes``
  (the item has at least one object of one of these classes), ``exclude_classes`` (it has none),
  ``objects: with | without`` (at least one object / none), ``created_since``,
  ``created_before``, ``updated_since``, ``updated_before`` (ISO 8601 instants; a value without
  a time zone is UTC; ``since`` is inclusive, ``before`` exclusive). An item's ``created_at`` is
  the earliest ``createdAt`` and its ``updated_at`` the latest ``updatedAt`` or ``createdAt`` in
  its annotation JSON (objects, their tags, image tags; Supervisely keeps them there, not at the
  top level); an item with no timestamp (no objects and no tags, or a COCO/CVAT source) never
  matches a date filter. Annotation filters see the annotation as stored, before label
  filtering.
- An item whose scan failed (unreadable or invalid annotation) is KEPT by every annotation
  filter: the export then fails it with its reason, so it is reported instead of vanishing.
- Label filters change what is drawn, not which items are exported: ``keep_classes`` keeps
  only objects of these classes, ``drop_classes`` removes objects of these classes
  (``filter_labels``). Copied annotation files are not rewritten.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import ConfigError
from ..model.annotation import Annotation, ProjectMeta

LISTING_FILTERS = ("datasets", "items", "exclude_items")
ANNOTATION_FILTERS = ("image_tags", "object_tags", "classes", "exclude_classes", "objects",
                      "created_since", "created_before", "updated_since", "updated_before")
LABEL_FILTERS = ("keep_classes", "drop_classes")
FILTER_ORDER = LISTING_FILTERS + ANNOTATION_FILTERS
"""Item filters in order of application (the order of the ``removed`` counts)."""
_NAME_LISTS = ("datasets", "items", "exclude_items", "image_tags", "object_tags", "classes",
               "exclude_classes", "keep_classes", "drop_classes")
_DATES = ("created_since", "created_before", "updated_since", "updated_before")
TIMESTAMP = pa.timestamp("us", tz="UTC")
REGEX_PREFIX = "re:"


@dataclass(frozen=True)
class FilterSpec:
    """What to export. ``None`` = filter not set; lists are tuples; dates are UTC datetimes."""

    datasets: tuple[str, ...] | None = None
    items: tuple[str, ...] | None = None
    exclude_items: tuple[str, ...] | None = None
    image_tags: tuple[str, ...] | None = None
    object_tags: tuple[str, ...] | None = None
    classes: tuple[str, ...] | None = None
    exclude_classes: tuple[str, ...] | None = None
    objects: str | None = None                     # "with" | "without"
    created_since: dt.datetime | None = None
    created_before: dt.datetime | None = None
    updated_since: dt.datetime | None = None
    updated_before: dt.datetime | None = None
    keep_classes: tuple[str, ...] | None = None
    drop_classes: tuple[str, ...] | None = None

    @classmethod
    def from_options(cls, options: dict | None, where: str = "filters") -> FilterSpec:
        """Validate a job's ``filters:`` mapping (or ``cli_filter_options``); ``ConfigError``
        naming the key, with expected vs got."""
        if options is None:
            return cls()
        if not isinstance(options, dict):
            raise ConfigError(f"{where}: expected a mapping of filter names, got {type(options).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(options) - known, key=str)
        if unknown:
            raise ConfigError(f"{where}: unknown filter(s) {unknown}; expected some of {sorted(known)}")
        values: dict[str, Any] = {}
        for key, value in options.items():
            if value is None:
                continue
            if key in _NAME_LISTS:
                values[key] = _names(value, f"{where}.{key}")
            elif key in _DATES:
                values[key] = parse_instant(value, f"{where}.{key}")
            elif value not in ("with", "without"):
                raise ConfigError(f"{where}.objects: expected 'with' or 'without', got {value!r}")
            else:
                values[key] = value
        for pattern in values.get("items", ()) + values.get("exclude_items", ()):
            item_pattern_regex(pattern, where)  # refuse a bad pattern before any work
        for lo, hi in (("created_since", "created_before"), ("updated_since", "updated_before")):
            if lo in values and hi in values and values[lo] >= values[hi]:
                raise ConfigError(f"{where}: expected {lo} earlier than {hi}, got "
                                  f"{values[lo].isoformat()} >= {values[hi].isoformat()}")
        return cls(**values)

    def active(self) -> list[str]:
        """The item filters that are set, in order of application."""
        return [name for name in FILTER_ORDER if getattr(self, name) is not None]

    @property
    def needs_scan(self) -> bool:
        """True when some filter needs the annotations read (``maskcore.scan``)."""
        return any(getattr(self, name) is not None for name in ANNOTATION_FILTERS)

    @property
    def filters_labels(self) -> bool:
        return self.keep_classes is not None or self.drop_classes is not None

    def label_key(self) -> str:
        """A stable text of the label filters, for the run's configuration fingerprint."""
        return f"keep={sorted(self.keep_classes or ())!r};drop={sorted(self.drop_classes or ())!r}" \
            if self.filters_labels else ""

    def check_meta(self, meta: ProjectMeta, where: str = "filters") -> None:
        """``ConfigError`` when a class filter names a class the project does not define."""
        titles = {c.title for c in meta.classes}
        for key in ("classes", "exclude_classes", "keep_classes", "drop_classes"):
            missing = [c for c in getattr(self, key) or () if c not in titles]
            if missing:
                raise ConfigError(f"{where}.{key}: expected classes of the project "
                                  f"({', '.join(sorted(titles)) or 'none'}), got {missing}")


def _names(value: Any, where: str) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)) or not items:
        raise ConfigError(f"{where}: expected a name or a non-empty list of names, got {value!r:.80}")
    for v in items:
        if not isinstance(v, str) or not v:
            raise ConfigError(f"{where}: expected non-empty strings, got {v!r:.80}")
    return tuple(dict.fromkeys(items))


def parse_instant(value: Any, where: str) -> dt.datetime:
    """An ISO 8601 date or date-time (text, ``datetime`` or ``date``) -> aware UTC datetime.

    A value without a time zone is UTC; a date alone is its midnight UTC.
    """
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value.strip())
        except ValueError:
            raise ConfigError(f"{where}: expected an ISO 8601 date or time such as "
                              f"2024-05-01T12:00:00+02:00, got {value!r:.80}") from None
    elif isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        value = dt.datetime.combine(value, dt.time())
    if not isinstance(value, dt.datetime):
        raise ConfigError(f"{where}: expected an ISO 8601 date or time, got {value!r:.80}")
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.timezone.utc)
    return value.astimezone(dt.timezone.utc)


# --- item name patterns ------------------------------------------------------------------------

def _literal_re2(text: str) -> str:
    return "".join(ch if ch.isalnum() or ord(ch) > 127 else f"\\x{{{ord(ch):x}}}" for ch in text)


def _class_members(body: str) -> tuple[bool, list[tuple[str, str]]]:
    """``(negated, [(lo, hi), ...])`` of a glob bracket body (between ``[`` and ``]``, a leading
    ``!`` included) as ``fnmatch.translate`` reads it: a ``-`` between two characters makes a
    range, reversed ranges are dropped with their ends, other ``-`` are literal, and the class is
    negated when what is left starts with ``!`` (also when a dropped range exposed that ``!``)."""
    chunks, start, k = [], 0, 2 if body.startswith("!") else 1
    while (k := body.find("-", k)) >= 0:
        chunks.append(body[start:k])
        start, k = k + 1, k + 3
    if body[start:]:
        chunks.append(body[start:])
    elif chunks:
        chunks[-1] += "-"
    else:
        chunks = [body]
    for k in range(len(chunks) - 1, 0, -1):  # a reversed range joins its neighbours, minus both ends
        if chunks[k - 1][-1] > chunks[k][0]:
            chunks[k - 1] = chunks[k - 1][:-1] + chunks[k][1:]
            del chunks[k]
    negated = chunks[0].startswith("!")
    if negated:
        chunks[0] = chunks[0][1:]
    tokens: list[str | None] = []  # None: a hyphen that joins two chunks (a range operator)
    for i, chunk in enumerate(chunks):
        tokens += ([None] if i else []) + list(chunk)
    members, i = [], 0
    while i < len(tokens):  # read as a regex class reads it: x-y is a range, a final - is literal
        lo = tokens[i] or "-"
        if i + 2 < len(tokens) and tokens[i + 1] is None:
            members.append((lo, tokens[i + 2] or "-"))
            i += 3
        else:
            members.append((lo, lo))
            i += 1
    return negated, members


def glob_to_re2(glob: str) -> str:
    """An ``fnmatch`` glob as an anchored RE2 pattern: ``*`` any text (``/`` too), ``?`` one
    character, ``[abc]``, ``[!abc]``, ``[a-z]``; a ``[`` without its ``]`` is literal."""
    out, i, n = [], 0, len(glob)
    while i < n:
        ch = glob[i]
        i += 1
        if ch == "*":
            out.append(".*")
        elif ch == "?":
            out.append(".")
        elif ch == "[":
            bang = glob[i:i + 1] == "!"
            close = glob.find("]", i + bang + (glob[i + bang:i + bang + 1] == "]"))
            if close < 0:
                out.append(_literal_re2("["))
                continue
            negate, members = _class_members(glob[i:close])
            i = close + 1
            if not members:
                out.append("." if negate else "[^\\x{0}-\\x{10ffff}]")
                continue
            body = "".join(f"\\x{{{ord(lo):x}}}" + (f"-\\x{{{ord(hi):x}}}" if hi != lo else "")
                           for lo, hi in members)
            out.append(f"[{'^' if negate else ''}{body}]")
        else:
            out.append(_literal_re2(ch))
    return "(?s)^" + "".join(out) + "$"


def item_pattern_regex(pattern: str, where: str = "filters") -> str | None:
    """The RE2 pattern of an item pattern, or None for a plain name (exact match).

    ``ConfigError`` for a pattern RE2 refuses (checked on an empty array, cheap)."""
    if pattern.startswith(REGEX_PREFIX):
        regex = pattern[len(REGEX_PREFIX):]
    elif any(c in pattern for c in "*?["):
        regex = glob_to_re2(pattern)
    else:
        return None
    try:
        pc.match_substring_regex(pa.array([""], pa.string()), regex)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise ConfigError(f"{where}: expected a valid RE2 pattern, got {pattern!r} ({exc})") from None
    return regex


def match_item_patterns(names: pa.Array, patterns: tuple[str, ...]) -> pa.Array:
    """Boolean array: the name matches at least one pattern (see the module conventions)."""
    exact = [p for p in patterns if item_pattern_regex(p) is None]
    hit = pc.is_in(names, value_set=pa.array(exact, pa.string()))
    for p in patterns:
        regex = item_pattern_regex(p)
        if regex is not None:
            hit = pc.or_(hit, pc.match_substring_regex(names, regex))
    return pc.fill_null(hit, False)


# --- applying item filters ---------------------------------------------------------------------

def _column(table: pa.Table, name: str) -> pa.Array:
    col = table.column(name)
    return col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col


def _in_datasets(datasets: pa.Array, names: tuple[str, ...]) -> pa.Array:
    hit = pc.is_in(datasets, value_set=pa.array(names, pa.string()))
    for name in names:
        hit = pc.or_(hit, pc.starts_with(datasets, name + "/"))
    return pc.fill_null(hit, False)


def _apply(table: pa.Table, keep_masks: list[tuple[str, Any]], removed: dict[str, int]) -> pa.Table:
    """Apply ``(name, table -> bool array)`` in order, counting what each removes."""
    for name, keep_of in keep_masks:
        keep = pc.fill_null(keep_of(table), False)
        before = table.num_rows
        table = table.filter(keep)
        removed[name] = before - table.num_rows
    return table


def apply_listing_filters(table: pa.Table, spec: FilterSpec) -> tuple[pa.Table, dict[str, int]]:
    """Keep the rows of a listing or plan (columns ``dataset``, ``item``) that pass the listing
    filters; returns the table and ``{filter: items removed}`` for each filter set."""
    steps = []
    if spec.datasets is not None:
        steps.append(("datasets", lambda t: _in_datasets(_column(t, "dataset"), spec.datasets)))
    if spec.items is not None:
        steps.append(("items", lambda t: match_item_patterns(_column(t, "item"), spec.items)))
    if spec.exclude_items is not None:
        steps.append(("exclude_items",
                      lambda t: pc.invert(match_item_patterns(_column(t, "item"), spec.exclude_items))))
    removed: dict[str, int] = {}
    return _apply(table, steps, removed), removed


def _any_in(lists: pa.Array, values: tuple[str, ...]) -> pa.Array:
    """Per row of a list<string> array: at least one element is in ``values`` (null list: null)."""
    lists = lists.combine_chunks() if isinstance(lists, pa.ChunkedArray) else lists
    flat_hit = pc.is_in(pc.list_flatten(lists), value_set=pa.array(values, pa.string()))
    parents = pc.list_parent_indices(lists).filter(flat_hit)
    hit = pc.is_in(pa.array(np.arange(len(lists), dtype=np.int64)), value_set=parents)
    return pc.if_else(pc.is_null(lists), pa.scalar(None, pa.bool_()), hit)


def _scan_conditions(spec: FilterSpec) -> list[tuple[str, Any]]:
    """``(filter name, table -> bool array)`` for each annotation filter set (null = unknown)."""
    conds = []
    if spec.image_tags is not None:
        conds.append(("image_tags", lambda t: _any_in(_column(t, "image_tags"), spec.image_tags)))
    if spec.object_tags is not None:
        conds.append(("object_tags", lambda t: _any_in(_column(t, "object_tags"), spec.object_tags)))
    if spec.classes is not None:
        conds.append(("classes", lambda t: _any_in(_column(t, "classes"), spec.classes)))
    if spec.exclude_classes is not None:
        conds.append(("exclude_classes",
                      lambda t: pc.invert(_any_in(_column(t, "classes"), spec.exclude_classes))))
    if spec.objects is not None:
        with_objects = spec.objects == "with"
        conds.append(("objects", lambda t: pc.equal(pc.greater(_column(t, "n_objects"), 0), with_objects)))
    for name, column, compare in (("created_since", "created_at", pc.greater_equal),
                                  ("created_before", "created_at", pc.less),
                                  ("updated_since", "updated_at", pc.greater_equal),
                                  ("updated_before", "updated_at", pc.less)):
        instant = getattr(spec, name)
        if instant is not None:
            conds.append((name, lambda t, c=column, f=compare, v=instant:
                          f(_column(t, c), pa.scalar(v, TIMESTAMP))))
    return conds


def _scan_keys(table: pa.Table) -> pa.Array:
    return pc.binary_join_element_wise(_column(table, "dataset"), _column(table, "item"), "\x00")


def apply_annotation_filters(plan: pa.Table, scan: pa.Table, spec: FilterSpec
                             ) -> tuple[pa.Table, dict[str, int]]:
    """Keep the plan rows whose scan row (``maskcore.scan.SCAN_SCHEMA``, matched by dataset and
    item) passes the annotation filters. Rows whose scan failed, or that have no scan row, are
    kept. Returns the plan (its own columns only, in its order) and ``{filter: items removed}``."""
    where = pc.index_in(_scan_keys(plan), value_set=_scan_keys(scan))
    facts = scan.take(where)  # one scan row per plan row (null row where none)
    unknown = pc.or_(pc.is_null(where), pc.is_valid(_column(facts, "scan_error")))
    row = pa.array(np.arange(plan.num_rows, dtype=np.int64))
    joined = pa.Table.from_pydict({"row": row, "unknown": unknown,
                       **{name: _column(facts, name) for name in scan.column_names}})
    steps = [(name, lambda t, c=cond: pc.or_(_column(t, "unknown"), pc.fill_null(c(t), False)))
             for name, cond in _scan_conditions(spec)]
    removed: dict[str, int] = {}
    joined = _apply(joined, steps, removed)
    return plan.take(_column(joined, "row")), removed


def scan_errors(scan: pa.Table) -> list[dict]:
    """``[{dataset, item, error}]`` of the items whose scan failed (kept by the filters)."""
    failed = scan.filter(pc.is_valid(_column(scan, "scan_error")))
    return failed.select(["dataset", "item", "scan_error"]).rename_columns(
        ["dataset", "item", "error"]).to_pylist()


# --- label filtering ---------------------------------------------------------------------------

def filter_labels(annotation: Annotation, spec: FilterSpec) -> Annotation:
    """The annotation without the objects the label filters remove (``keep_classes`` then
    ``drop_classes``); labels keep their order and ``object_index``. Same object when no label
    filter is set."""
    if not spec.filters_labels:
        return annotation
    keep = set(spec.keep_classes) if spec.keep_classes is not None else None
    drop = set(spec.drop_classes or ())
    labels = tuple(lb for lb in annotation.labels
                   if (keep is None or lb.class_title in keep) and lb.class_title not in drop)
    return dataclasses.replace(annotation, labels=labels)


# --- command line ------------------------------------------------------------------------------

_CLI_LISTS = {  # flag -> (filters key, help)
    "--dataset": ("datasets", "export only this dataset and those nested in it (repeatable)"),
    "--item": ("items", "export only items named so: a name, a glob ('*.jpg') or 're:<regex>' (repeatable)"),
    "--exclude-item": ("exclude_items", "skip items named so (same patterns as --item; repeatable)"),
    "--image-tag": ("image_tags", "export only items with this image tag: NAME or NAME=VALUE (repeatable)"),
    "--object-tag": ("object_tags", "export only items with an object tagged NAME or NAME=VALUE (repeatable)"),
    "--class": ("classes", "export only items with at least one object of this class (repeatable)"),
    "--exclude-class": ("exclude_classes", "skip items with an object of this class (repeatable)"),
    "--keep-class": ("keep_classes", "draw only objects of this class (repeatable)"),
    "--drop-class": ("drop_classes", "do not draw objects of this class (repeatable)"),
}
_CLI_DATES = {
    "--created-since": "created_since", "--created-before": "created_before",
    "--updated-since": "updated_since", "--updated-before": "updated_before",
}


def add_filter_arguments(parser) -> None:
    """Add the filter flags to an ``argparse`` parser (see ``cli_filter_options``)."""
    group = parser.add_argument_group("selecting items (see maskcore/filters.py)")
    for flag, (key, text) in _CLI_LISTS.items():
        group.add_argument(flag, dest=f"filter_{key}", action="append", metavar="NAME", help=text)
    for flag, key in _CLI_DATES.items():
        group.add_argument(flag, dest=f"filter_{key}", metavar="ISO8601",
                           help=f"annotation {key.replace('_', ' ')} (UTC when no zone is given)")
    group.add_argument("--objects", dest="filter_objects", choices=("with", "without"),
                       help="export only items with (or without) objects")


def cli_filter_options(args) -> dict:
    """The filter flags given on the command line, as a ``filters:`` mapping (flags not given
    are left out, so ``{**job_filters, **cli_filter_options(args)}`` lets flags override)."""
    keys = [key for key, _ in _CLI_LISTS.values()] + list(_CLI_DATES.values()) + ["objects"]
    return {key: getattr(args, f"filter_{key}") for key in keys
            if getattr(args, f"filter_{key}", None) is not None}
