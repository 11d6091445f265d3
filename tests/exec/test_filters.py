"""Item selection (maskcore.exec.filters, maskcore.exec.scan) against plain-Python oracles.

Random Supervisely projects (tiny JSON annotations, empty image files) are written to a temporary
folder, read with the real reader, planned, scanned and filtered; the oracle reads the same JSON
files with ``json`` and decides each filter with ``fnmatch``, ``re`` and ``dateutil`` on its own.
"""

from __future__ import annotations

import argparse
import datetime as dt
import fnmatch
import json
import re
import tempfile
import warnings
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from dateutil.parser import isoparse
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers import SAMPLES
from helpers.oracles import load
from maskcore.errors import ConfigError
from maskcore.exec.filters import (
    FILTER_ORDER,
    FilterSpec,
    add_filter_arguments,
    apply_annotation_filters,
    apply_listing_filters,
    cli_filter_options,
    filter_labels,
    glob_to_re2,
    parse_instant,
    scan_errors,
)
from maskcore.exec.plan import partitions, plan_partitions
from maskcore.exec.scan import SCAN_SCHEMA, scan_partitions, scan_table
from maskcore.model.annotation import Annotation, Label, ObjClass, ProjectMeta
from maskcore.readers import open_source

UTC = dt.timezone.utc
CLASSES = ["cat", "dog", "bird", "fish"]
DATASETS = ["ds", "train", "train/sub", "val"]
ITEM_NAMES = ["cat1.jpg", "cat2.png", "dog_1.jpg", "Dog 2.JPG", "a.b.jpg", "x[1].png", "img-7.jpeg",
              "żółw.png", "bobcat.jpg"]
TAG_NAMES = ["good", "bad", "color", "n"]
TAG_VALUES = [None, None, "red", "a=b", 3, 2.5]
KINDS = ["ok"] * 12 + ["broken_json", "unknown_class", "no_annotation", "bad_time"]
T0 = dt.datetime(2020, 1, 1, tzinfo=UTC)
SLOW = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# --- random projects ---------------------------------------------------------------------------

instants = st.integers(0, 10 * 24 * 3600 * 1000).map(lambda ms: T0 + dt.timedelta(milliseconds=ms))
stamp_styles = st.sampled_from(["Z", "+02:00", "-05:30", "naive", "seconds"])


def format_instant(t: dt.datetime, style: str) -> str:
    """A timestamp as Supervisely writes it (``...sssZ``) or in another valid ISO 8601 form."""
    if style == "Z":
        return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"
    if style == "naive":
        return t.replace(tzinfo=None).isoformat()
    if style == "seconds":
        return t.replace(microsecond=0).isoformat()
    sign, rest = style[0], style[1:].split(":")
    offset = dt.timedelta(hours=int(rest[0]), minutes=int(rest[1])) * (1 if sign == "+" else -1)
    return t.astimezone(dt.timezone(offset)).isoformat()


@st.composite
def stamps(draw) -> dict:
    out = {}
    for key in ("createdAt", "updatedAt"):
        if draw(st.integers(0, 4)):  # sometimes missing
            out[key] = format_instant(draw(instants), draw(stamp_styles))
    return out


@st.composite
def tags(draw) -> list:
    return [{"name": draw(st.sampled_from(TAG_NAMES)), "value": draw(st.sampled_from(TAG_VALUES)),
             **draw(stamps())} for _ in range(draw(st.integers(0, 2)))]


@st.composite
def annotations(draw) -> dict:
    objects = [{"classTitle": draw(st.sampled_from(CLASSES)), "geometryType": "rectangle",
                "points": {"exterior": [[0, 0], [2, 3]], "interior": []}, "tags": draw(tags()),
                **draw(stamps())} for _ in range(draw(st.integers(0, 3)))]
    return {"description": "", "size": {"height": 8, "width": 8}, "tags": draw(tags()),
            "objects": objects}


@st.composite
def projects(draw) -> list[dict]:
    """[{dataset, item, kind, ann}] sorted by (dataset, item)."""
    rows = []
    for ds in draw(st.lists(st.sampled_from(DATASETS), min_size=1, max_size=3, unique=True)):
        for name in draw(st.lists(st.sampled_from(ITEM_NAMES), min_size=1, max_size=5, unique=True)):
            rows.append({"dataset": ds, "item": name, "kind": draw(st.sampled_from(KINDS)),
                         "ann": draw(annotations())})
    return sorted(rows, key=lambda r: (r["dataset"], r["item"]))


def write_project(root: Path, rows: list[dict]) -> None:
    meta = {"classes": [{"title": c, "shape": "rectangle", "color": "#FF0000", "geometry_config": {}}
                        for c in CLASSES],
            "tags": [{"name": t, "value_type": "any_value", "color": "#00FF00"} for t in TAG_NAMES]}
    (root / "meta.json").write_text(json.dumps(meta))
    for r in rows:
        folder = root / "/datasets/".join(r["dataset"].split("/"))
        (folder / "img").mkdir(parents=True, exist_ok=True)
        (folder / "ann").mkdir(parents=True, exist_ok=True)
        (folder / "img" / r["item"]).write_bytes(b"")
        ann = json.loads(json.dumps(r["ann"]))
        if r["kind"] == "no_annotation":
            continue
        if r["kind"] == "unknown_class":
            ann["objects"].append({"classTitle": "ghost", "points": {"exterior": [[0, 0], [1, 1]]}})
        if r["kind"] == "bad_time":
            ann["tags"].append({"name": "good", "value": None, "updatedAt": "yesterday"})
        text = json.dumps(ann, ensure_ascii=False)
        (folder / "ann" / f"{r['item']}.json").write_text(text[:-7] if r["kind"] == "broken_json" else text,
                                                         encoding="utf-8")


# --- the oracle ------------------------------------------------------------------------------------

def oracle_facts(root: Path, row: dict) -> dict | None:
    """What the oracle knows of an item from its JSON file; None when it cannot be read."""
    path = root / "/datasets/".join(row["dataset"].split("/")) / "ann" / f"{row['item']}.json"
    if not path.exists():
        return None
    try:
        ann = json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        return None
    if any(o["classTitle"] not in CLASSES for o in ann["objects"]):
        return None
    entries = [ann, *ann["tags"], *ann["objects"], *(t for o in ann["objects"] for t in o["tags"])]
    created, updated = [], []
    for e in entries:
        for key in ("createdAt", "updatedAt"):
            if key in e:
                try:
                    t = isoparse(e[key])
                except ValueError:
                    return None
                t = t if t.tzinfo else t.replace(tzinfo=UTC)
                updated.append(t)
                created += [t] if key == "createdAt" else []
    return {"objects": ann["objects"], "image_tags": ann["tags"],
            "object_tags": [t for o in ann["objects"] for t in o["tags"]],
            "created": min(created) if created else None, "updated": max(updated) if updated else None}


def tag_matches(tag: dict, wanted: str) -> bool:
    if tag["name"] == wanted:
        return True
    name, _, value = wanted.partition("=")
    v = tag["value"]
    return tag["name"] == name and v is not None and (v if isinstance(v, str) else repr(v)) == value


def name_matches(name: str, pattern: str) -> bool:
    if pattern.startswith("re:"):
        return re.search(pattern[3:], name) is not None
    return fnmatch.fnmatchcase(name, pattern)


def oracle_keeps(flt: str, value, row: dict, facts: dict | None) -> bool:
    if flt == "datasets":
        return any(row["dataset"] == d or row["dataset"].startswith(d + "/") for d in value)
    if flt == "items":
        return any(name_matches(row["item"], p) for p in value)
    if flt == "exclude_items":
        return not any(name_matches(row["item"], p) for p in value)
    if facts is None:  # unreadable annotation: kept, the export reports it
        return True
    classes = {o["classTitle"] for o in facts["objects"]}
    date = {"created_since": facts["created"], "created_before": facts["created"],
            "updated_since": facts["updated"], "updated_before": facts["updated"]}
    return {
        "image_tags": lambda: any(tag_matches(t, w) for t in facts["image_tags"] for w in value),
        "object_tags": lambda: any(tag_matches(t, w) for t in facts["object_tags"] for w in value),
        "classes": lambda: bool(classes & set(value)),
        "exclude_classes": lambda: not classes & set(value),
        "objects": lambda: bool(facts["objects"]) == (value == "with"),
        "created_since": lambda: date[flt] is not None and date[flt] >= isoparse_utc(value),
        "updated_since": lambda: date[flt] is not None and date[flt] >= isoparse_utc(value),
        "created_before": lambda: date[flt] is not None and date[flt] < isoparse_utc(value),
        "updated_before": lambda: date[flt] is not None and date[flt] < isoparse_utc(value),
    }[flt]()


def isoparse_utc(text: str) -> dt.datetime:
    t = isoparse(text)
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def oracle_select(root: Path, rows: list[dict], options: dict) -> tuple[list, dict]:
    facts = {(r["dataset"], r["item"]): oracle_facts(root, r) for r in rows}
    kept, removed = list(rows), {}
    for flt in FILTER_ORDER:
        if options.get(flt) is None:
            continue
        value = options[flt]
        if isinstance(value, str) and flt in ("datasets", "items", "exclude_items", "image_tags",
                                              "object_tags", "classes", "exclude_classes"):
            value = [value]
        after = [r for r in kept if oracle_keeps(flt, value, r, facts[(r["dataset"], r["item"])])]
        removed[flt] = len(kept) - len(after)
        kept = after
    return [(r["dataset"], r["item"]) for r in kept], removed


# --- random filters --------------------------------------------------------------------------------

ITEM_PATTERNS = ["cat1.jpg", "*.jpg", "re:^[Dd]og", "x[[]1].png", r"re:\.png$", "?at*", "*[!a-z].*",
                 "re:cat", "nothing.jpg"]
TAG_FILTERS = ["good", "bad", "color", "color=red", "color=a=b", "n=3", "n=2.5", "absent"]


@st.composite
def filter_options(draw) -> dict:
    names = lambda pool: st.lists(st.sampled_from(pool), min_size=1, max_size=3, unique=True)
    choices = {
        "datasets": names(DATASETS + ["nope", "train/su"]), "items": names(ITEM_PATTERNS),
        "exclude_items": names(ITEM_PATTERNS), "image_tags": names(TAG_FILTERS),
        "object_tags": names(TAG_FILTERS), "classes": names(CLASSES), "exclude_classes": names(CLASSES),
        "objects": st.sampled_from(["with", "without"]),
    }
    options = {k: draw(s) for k, s in choices.items() if draw(st.integers(0, 3)) == 0}
    for key in ("created_since", "created_before", "updated_since", "updated_before"):
        if draw(st.integers(0, 3)) == 0:
            options[key] = format_instant(draw(instants), draw(stamp_styles))
    for lo, hi in (("created_since", "created_before"), ("updated_since", "updated_before")):
        if lo in options and hi in options and isoparse_utc(options[lo]) >= isoparse_utc(options[hi]):
            del options[hi]
    return options


def run_filters(root: Path, options: dict, items_per_partition: int = 3):
    source = open_source("supervisely", str(root))
    meta = source.read_meta()
    spec = FilterSpec.from_options(options)
    spec.check_meta(meta)
    plan = plan_partitions(source.list_items(), workers=1, items_per_partition=items_per_partition)
    plan, removed = apply_listing_filters(plan, spec)
    scan = None
    if spec.needs_scan:
        scan = scan_partitions(None, source, meta, partitions(plan))
        plan, more = apply_annotation_filters(plan, scan, spec)
        removed.update(more)
    return plan, removed, scan


@SLOW
@given(projects(), filter_options())
def test_selected_items_equal_the_oracle_for_random_projects_and_filters(rows, options):
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_project(root, rows)
        plan, removed, scan = run_filters(root, options)
        want, want_removed = oracle_select(root, rows, options)
    got = list(zip(plan.column("dataset").to_pylist(), plan.column("item").to_pylist()))
    assert got == want
    assert removed == want_removed and list(removed) == list(want_removed)  # counts, in order
    assert sum(removed.values()) + plan.num_rows == len(rows)
    if scan is not None:  # exactly the unreadable annotations carry a scan error
        bad = {(r["dataset"], r["item"]) for r in rows if r["kind"] != "ok"}
        assert {(e["dataset"], e["item"]) for e in scan_errors(scan)} <= bad
        assert all(e["error"].startswith(f"{e['dataset']}/{e['item']}") for e in scan_errors(scan))


@SLOW
@given(projects(), st.sampled_from(FILTER_ORDER))
def test_each_filter_kind_alone_matches_the_oracle(rows, flt):
    values = {"datasets": ["train"], "items": ["re:^[a-c]", "*.png"], "exclude_items": ["*[0-9]*"],
              "image_tags": ["good", "color=red"], "object_tags": ["n=3", "bad"], "classes": ["cat"],
              "exclude_classes": ["dog", "fish"], "objects": "without",
              "created_since": "2020-01-04T00:00:00+01:00", "created_before": "2020-01-06",
              "updated_since": "2020-01-05T12:00:00", "updated_before": "2020-01-08T00:00:00Z"}
    options = {flt: values[flt]}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_project(root, rows)
        plan, removed, _ = run_filters(root, options, items_per_partition=2)
        want, want_removed = oracle_select(root, rows, options)
    assert list(zip(plan.column("dataset").to_pylist(), plan.column("item").to_pylist())) == want
    assert removed == want_removed == {flt: len(rows) - len(want)}


def test_bundled_vector_project_selection_by_tags_dates_and_classes():
    """Real annotations: timestamps live on objects and tags; the expected sets are read off the files."""
    source = open_source("supervisely", str(SAMPLES / "vector"))
    meta = source.read_meta()
    plan = plan_partitions(source.list_items(), workers=1)
    scan = scan_table(source, meta, plan)
    assert scan.schema == SCAN_SCHEMA and scan.column("scan_error").null_count == scan.num_rows
    dog3 = scan.filter(pc.equal(scan.column("item"), "dog3.jpg")).to_pylist()[0]
    assert dog3["image_tags"] == ["dog"] and dog3["classes"] == ["dog2"] and dog3["n_objects"] == 1
    assert dog3["created_at"] == dt.datetime(2020, 11, 17, 10, 48, 17, 697000, tzinfo=UTC)
    assert dog3["updated_at"] == dt.datetime(2020, 11, 17, 10, 48, 38, 208000, tzinfo=UTC)  # the image tag
    for options, want in [({"image_tags": ["dog"]}, ["dog3.jpg"]),
                          ({"object_tags": ["cat"]}, ["cat1.jpg", "cat2.jpg"]),
                          ({"classes": ["test_point"]}, ["cat3.jpg"]),
                          ({"exclude_classes": ["dog2", "cat"]}, ["cat2.jpg", "dog2.jpg"]),
                          ({"updated_since": "2020-11-17T11:46:00+01:00"}, ["dog1.jpg", "dog2.jpg", "dog3.jpg"]),
                          ({"created_before": "2020-11-17T10:44:00Z"}, ["cat1.jpg"]),
                          ({"updated_since": "2020-11-17T10:48:38.208Z"}, ["dog3.jpg"]),  # inclusive
                          ({"updated_before": "2020-11-17T11:48:38.208+01:00"},  # exclusive
                           ["cat1.jpg", "cat2.jpg", "cat3.jpg", "dog1.jpg", "dog2.jpg"])]:
        spec = FilterSpec.from_options(options)
        kept, removed = apply_annotation_filters(plan, scan, spec)
        assert kept.column("item").to_pylist() == want, options
        assert removed == {next(iter(options)): 6 - len(want)}


def test_scan_facts_equal_the_supervisely_sdk_on_real_projects():
    sly = load("supervisely")
    for project in ("vector", "instance", "keypoints"):
        source = open_source("supervisely", str(SAMPLES / project))
        meta = source.read_meta()
        sdk_meta = sly.ProjectMeta.from_json(json.loads((SAMPLES / project / "meta.json").read_text()))
        scan = scan_table(source, meta, plan_partitions(source.list_items(), workers=1))
        for row in scan.to_pylist():
            ann = sly.Annotation.load_json_file(str(SAMPLES / project / "ds" / "ann" / f"{row['item']}.json"),
                                                sdk_meta)
            assert row["n_objects"] == len(ann.labels)
            assert row["classes"] == sorted({lb.obj_class.name for lb in ann.labels})
            assert row["image_tags"] == sorted({t.name for t in ann.img_tags})
            assert row["object_tags"] == sorted({t.name for lb in ann.labels for t in lb.tags})


def test_scan_on_a_real_dask_cluster_equals_the_local_scan(dask_client):
    source = open_source("supervisely", str(SAMPLES / "vector"))
    meta = source.read_meta()
    parts = partitions(plan_partitions(source.list_items(), items_per_partition=1))
    assert len(parts) == 6  # one item per task
    assert scan_partitions(dask_client, source, meta, parts).equals(scan_partitions(None, source, meta, parts))
    assert scan_partitions(dask_client, source, meta, []).num_rows == 0


class _OtherFormatSource:
    """A reader of another format (annotations without timestamps), as COCO/CVAT readers are."""

    annotation_format = "coco"

    def item_annotation(self, row: dict) -> bytes:
        return row["ann_inline"]

    def parse_annotation(self, data, meta, where, *, max_bitmap_pixels):
        labels = tuple(Label(c, None, i, ({"name": "crowd", "value": 1},)) for i, c in enumerate(json.loads(data)))
        return Annotation((4, 4), labels)


def test_other_formats_have_no_timestamps_and_never_match_date_filters():
    rows = pa.table({"dataset": ["d", "d"], "item": ["a.jpg", "b.jpg"],
                     "ann_inline": [json.dumps(["cat"]).encode(), b"[]"]})
    scan = scan_table(_OtherFormatSource(), ProjectMeta(()), rows)
    assert scan.column("created_at").null_count == 2 and scan.column("scan_error").null_count == 2
    assert scan.column("object_tags").to_pylist() == [["crowd", "crowd=1"], []]
    kept, removed = apply_annotation_filters(rows, scan, FilterSpec.from_options({"updated_since": "1970-01-01"}))
    assert kept.num_rows == 0 and removed == {"updated_since": 2}
    kept, removed = apply_annotation_filters(rows, scan, FilterSpec.from_options({"object_tags": "crowd=1"}))
    assert kept.column("item").to_pylist() == ["a.jpg"] and removed == {"object_tags": 1}


# --- patterns and instants -------------------------------------------------------------------------

glob_pieces = st.one_of(
    st.sampled_from(["*", "?", "[", "]", "!", "-", "a", "b", "z", "é", "\\", "^", "&&", "/", "."]),
    st.builds(lambda neg, body: f"[{neg}{body}]", st.sampled_from(["", "!"]),
              st.text(st.sampled_from(list("abyz-]!^\\&")), max_size=6)))


@settings(max_examples=400, deadline=None)
@given(st.lists(glob_pieces, max_size=5).map("".join),
       st.lists(st.text(st.sampled_from(list("abyz-!]^[\\&é/.\n")), max_size=4), min_size=1, max_size=6))
def test_globs_match_exactly_what_fnmatch_matches(glob, names):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # fnmatch's own regex may warn about nested sets
        try:
            want = [fnmatch.fnmatchcase(n, glob) for n in names]
        except re.error:  # fnmatch itself cannot read it
            return
    got = pc.match_substring_regex(pa.array(names, pa.string()), glob_to_re2(glob)).to_pylist()
    assert got == want


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(["a", "b", ".", "[ab]", "[^a]", "x*", "y+", "^", "$", "(a|b)", r"\d", "é"]),
                min_size=1, max_size=4).map("".join),
       st.lists(st.text(st.sampled_from(list("abxy.1é")), max_size=5), min_size=1, max_size=6))
def test_regex_patterns_search_like_python_re(regex, names):
    table = pa.table({"dataset": ["d"] * len(names), "item": names})
    kept, _ = apply_listing_filters(table, FilterSpec.from_options({"items": [f"re:{regex}"]}))
    assert kept.column("item").to_pylist() == [n for n in names if re.search(regex, n)]


@settings(max_examples=200, deadline=None)
@given(instants, stamp_styles)
def test_instants_with_time_zones_are_the_same_moment(t, style):
    text = format_instant(t, style)
    assert parse_instant(text, "x") == isoparse_utc(text)
    assert parse_instant(text, "x").tzinfo == UTC
    assert parse_instant(dt.date(2020, 1, 2), "x") == dt.datetime(2020, 1, 2, tzinfo=UTC)


# --- label filtering -------------------------------------------------------------------------------

@settings(max_examples=100, deadline=None)
@given(annotations(), st.none() | st.lists(st.sampled_from(CLASSES), min_size=1, unique=True),
       st.none() | st.lists(st.sampled_from(CLASSES), min_size=1, unique=True))
def test_label_filtering_keeps_exactly_the_listed_objects_in_order(ann, keep, drop):
    from maskcore.readers.supervisely import parse_annotation, parse_meta
    meta = parse_meta({"classes": [{"title": c, "shape": "rectangle", "color": "#FF0000"} for c in CLASSES]})
    parsed = parse_annotation(ann, meta, "d/i")
    spec = FilterSpec.from_options({"keep_classes": keep, "drop_classes": drop})
    out = filter_labels(parsed, spec)
    want = [i for i, o in enumerate(ann["objects"])
            if (keep is None or o["classTitle"] in keep) and o["classTitle"] not in (drop or [])]
    assert [lb.object_index for lb in out.labels] == want
    assert [lb.class_title for lb in out.labels] == [ann["objects"][i]["classTitle"] for i in want]
    assert out.size_hw == parsed.size_hw and out.tags == parsed.tags
    assert (out is parsed) == (keep is None and drop is None)
    assert spec.label_key() == FilterSpec.from_options({"keep_classes": keep, "drop_classes": drop}).label_key()


# --- configuration -----------------------------------------------------------------------------

@pytest.mark.parametrize("options, words", [
    ({"dataset": ["ds"]}, ["unknown filter", "'dataset'", "datasets"]),
    ({"objects": "some"}, ["filters.objects", "'with' or 'without'", "'some'"]),
    ({"items": []}, ["filters.items", "non-empty list", "[]"]),
    ({"classes": ["cat", 3]}, ["filters.classes", "non-empty strings", "3"]),
    ({"updated_since": "last week"}, ["filters.updated_since", "ISO 8601", "'last week'"]),
    ({"items": ["re:(unclosed"]}, ["RE2", "re:(unclosed"]),
    ({"created_since": "2021-01-02", "created_before": "2021-01-01"}, ["created_since earlier", ">="]),
    ("datasets", ["mapping", "str"]),
])
def test_bad_filter_options_name_the_key_with_expected_and_got(options, words):
    with pytest.raises(ConfigError) as err:
        FilterSpec.from_options(options)
    assert all(w in str(err.value) for w in words), str(err.value)


def test_class_filters_must_name_classes_of_the_project():
    meta = ProjectMeta((ObjClass("cat", "rectangle", (1, 2, 3)),))
    FilterSpec.from_options({"classes": ["cat"]}).check_meta(meta)
    want = r"filters.drop_classes: expected classes of the project \(cat\), got \['cta'\]"
    with pytest.raises(ConfigError, match=want):
        FilterSpec.from_options({"drop_classes": "cta"}).check_meta(meta)


def test_command_line_flags_give_the_same_spec_as_the_job_mapping():
    parser = argparse.ArgumentParser()
    add_filter_arguments(parser)
    args = parser.parse_args(["--dataset", "a", "--dataset", "b/c", "--item", "*.jpg", "--exclude-item", "re:x",
                              "--image-tag", "k=v", "--object-tag", "t", "--class", "cat", "--exclude-class",
                              "dog", "--objects", "with", "--updated-since", "2024-05-01T12:00:00+02:00",
                              "--created-before", "2024-06-01", "--keep-class", "cat", "--drop-class", "dog"])
    options = cli_filter_options(args)
    assert FilterSpec.from_options(options) == FilterSpec.from_options({
        "datasets": ["a", "b/c"], "items": "*.jpg", "exclude_items": ["re:x"], "image_tags": ["k=v"],
        "object_tags": ["t"], "classes": ["cat"], "exclude_classes": ["dog"], "objects": "with",
        "updated_since": dt.datetime(2024, 5, 1, 10, tzinfo=UTC), "created_before": dt.date(2024, 6, 1),
        "keep_classes": ["cat"], "drop_classes": ["dog"]})
    assert cli_filter_options(parser.parse_args([])) == {}
    spec = FilterSpec.from_options(options)
    assert spec.needs_scan and spec.active() == [f for f in FILTER_ORDER if f not in ("created_since",
                                                                                      "updated_before")]
    assert not FilterSpec.from_options({"datasets": "a", "keep_classes": "cat"}).needs_scan
