"""Change stamps kept as 16-byte digests, manifests written with text stamps still read, and
partition keys made block by block and only when asked for (issue 17 item 3)."""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import shutil
import time

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from helpers import tree
from maskcore.exec import state
from maskcore.exec.plan import Partitions, partitions, plan_partitions
from maskcore.exec.run import ExportConfig, run_export
from maskcore.exec.stamps import (
    NO_FILE,
    STAMP_TYPE,
    attach_previous,
    stamp_digests,
    unchanged_mask,
    with_stamps,
)
from maskcore.exec.state import MANIFEST, PartitionKeys, partition_keys
from maskcore.readers import open_source


def _listing(rng, n: int) -> pa.Table:
    names = [f"img_{i:05d}.jpg" for i in sorted(rng.choice(10 * n, n, replace=False))]
    texts = [None if rng.random() < 0.1 else f'ETag="{rng.integers(1 << 62):x}";size={rng.integers(1000)}'
             for _ in range(n)]
    return pa.table({"dataset": [f"ds{i % 3}" for i in range(n)], "item": names,
                     "ann_path": [f"ds/ann/{x}.json" for x in names],
                     "img_path": [None if i % 7 == 0 else f"ds/img/{x}" for i, x in enumerate(names)],
                     "ann_bytes": rng.integers(1, 1000, n), "img_bytes": rng.integers(1, 10**6, n),
                     "ann_stamp": texts, "img_stamp": texts[::-1]}).sort_by([("dataset", "ascending"),
                                                                              ("item", "ascending")])


def _blake16(text: str) -> bytes:
    return hashlib.blake2b(text.encode(), digest_size=16).digest()


def test_stamps_are_16_byte_digests_of_their_text():
    texts = ["ETag=\"a\";size=1", None, "ETag=\"a\";size=2", "", "mtime=1;ino=2;size=3"]
    digests = stamp_digests(pa.array(texts, pa.string()))
    assert digests.type == STAMP_TYPE
    assert digests.to_pylist() == [None if t is None else _blake16(t) for t in texts]
    assert stamp_digests(digests) is digests  # a reader that digests as it lists: kept
    assert stamp_digests(pa.chunked_array([pa.array(texts[:2]), pa.array(texts[2:])])).equals(digests)


def test_with_stamps_digests_marks_missing_files_and_keeps_nulls():
    rng = np.random.default_rng(7)
    listing = _listing(rng, int(rng.integers(20, 60)))
    stamped = with_stamps(listing)
    for column, path in (("ann_stamp", "ann_path"), ("img_stamp", "img_path")):
        got = stamped.column(column).to_pylist()
        texts, paths = listing.column(column).to_pylist(), listing.column(path).to_pylist()
        assert got == [_blake16(NO_FILE) if p is None else None if t is None else _blake16(t)
                       for t, p in zip(texts, paths)]


def test_a_manifest_with_text_stamps_still_finds_items_unchanged():
    """Manifests written before the digests kept stamps as text: attaching one digests them."""
    rng = np.random.default_rng(int(time.time()))
    listing = _listing(rng, int(rng.integers(30, 80)))
    plan = plan_partitions(with_stamps(listing))
    n = plan.num_rows
    old = pa.table({"dataset": listing.column("dataset"), "item": listing.column("item"),
                    "status": ["ok"] * n, "ann_sha256": ["a" * 64] * n, "img_sha256": ["b" * 64] * n,
                    "ann_stamp": listing.column("ann_stamp"), "img_stamp": listing.column("img_stamp")})
    changed = int(rng.integers(n))
    texts = old.column("img_stamp").to_pylist()
    texts[changed] = "ETag=\"changed\""
    old = old.set_column(old.schema.get_field_index("img_stamp"), "img_stamp", pa.array(texts, pa.string()))
    same = unchanged_mask(attach_previous(plan, old)).to_pylist()
    # unchanged: both stamps known (an item without an image is stamped NO_FILE, which the old
    # manifest did not record in this test) and equal, except the one whose stamp moved
    has = [a is not None and b is not None and p is not None for a, b, p in
           zip(listing.column("ann_stamp").to_pylist(), listing.column("img_stamp").to_pylist(),
               listing.column("img_path").to_pylist())]
    assert same == [h and i != changed for i, h in enumerate(has)]


def test_old_text_stamp_manifest_on_disk_resumes_as_unchanged(tmp_path, samples, monkeypatch):
    """An export whose manifest kept text stamps (before the digests): the next run reads none of
    its items and changes no file, and its manifest then records digests."""
    from maskcore.io import storage

    monkeypatch.setattr(storage, "STAMP_SETTLE_SECONDS", 0.3)
    src, dst = tmp_path / "src", tmp_path / "out"
    shutil.copytree(samples / "vector", src)
    time.sleep(0.35)
    first = run_export(ExportConfig(str(src), str(dst)), log=lambda m: None)
    assert first.report["items"]["written"] == 6
    text = open_source("supervisely", str(src), {}).list_items(stamps=True)
    old = pq.read_table(dst / MANIFEST)
    where = pc.index_in(pc.binary_join_element_wise(old.column("dataset"), old.column("item"), "/"),
                        value_set=pc.binary_join_element_wise(text.column("dataset"), text.column("item"), "/"))
    for column in ("ann_stamp", "img_stamp"):
        values = text.column(column).combine_chunks().take(where)
        assert values.null_count == 0
        old = old.set_column(old.schema.get_field_index(column), column, values)
    (dst / MANIFEST).write_bytes(state.parquet_bytes(old))
    before = tree(dst)
    second = run_export(ExportConfig(str(src), str(dst)), log=lambda m: None)
    assert second.report["stamps"] == {"verify": False, "unchanged_by_stamp": 6, "hashed": 0}
    assert tree(dst) == before
    assert pq.read_table(dst / MANIFEST).schema.field("ann_stamp").type == STAMP_TYPE


def _reference_keys(config_fp: str, plan: pa.Table, bounds) -> list[str]:
    """Each partition's key from its own rows alone (``state.partition_key``)."""
    return [state.partition_key(config_fp, plan.slice(int(a), int(b - a))) for a, b in itertools.pairwise(bounds)]


def test_partition_keys_by_blocks_equal_each_partitions_own(monkeypatch):
    rng = np.random.default_rng(int(time.time()))
    plan = plan_partitions(with_stamps(_listing(rng, int(rng.integers(40, 120)))),
                           items_per_partition=int(rng.integers(1, 9)))
    bounds = partitions(plan).bounds
    monkeypatch.setattr(state, "KEY_BLOCK_ROWS", int(rng.integers(1, 20)))  # many blocks, cut anywhere
    keys = partition_keys("fp", plan, bounds)
    assert keys == _reference_keys("fp", plan, bounds)
    assert len(set(keys)) == len(keys)


def test_partition_keys_are_made_only_when_asked_for(monkeypatch):
    rng = np.random.default_rng(3)
    plan = plan_partitions(with_stamps(_listing(rng, 64)), items_per_partition=4)
    bounds = partitions(plan).bounds
    monkeypatch.setattr(state, "KEY_BLOCK_ROWS", 8)
    keys = PartitionKeys("fp", plan, bounds)
    assert len(keys) == 16 and not keys.known
    assert keys[9] == _reference_keys("fp", plan, bounds)[9]
    assert sorted(keys.known) == [8, 9]      # its block of 8 rows: two partitions of 4
    assert keys[-1] == keys[15]
    with pytest.raises(IndexError):
        keys[16]


def test_a_manifest_in_parts_is_read_whole_replaced_and_checked(tmp_path, samples, monkeypatch):
    """Above ``MANIFEST_PART_ROWS`` items the manifest is a first file naming part files: the next
    run, ``--dry-run`` and ``maskcore verify`` read all of it; a later commit removes the parts it
    does not name; a part that is not the one named makes the manifest damaged (all rendered again)."""
    from maskcore.exec.run import ExportConfig as Config
    from maskcore.exec.verify import verify_destination
    from maskcore.io.sinks import get_sink

    monkeypatch.setattr(state, "MANIFEST_PART_ROWS", 2)
    src, dst, clean = tmp_path / "src", tmp_path / "out", tmp_path / "clean"
    shutil.copytree(samples / "vector", src)
    first = run_export(Config(str(src), str(dst)), log=lambda m: None)
    parts = sorted(p.name for p in (dst / state.MANIFEST_PARTS).iterdir())
    assert len(parts) == 2 and pq.read_table(dst / MANIFEST).num_rows == 2
    sink = get_sink("dir", str(dst))
    whole = state.read_manifest(sink)
    assert whole.select(["dataset", "item", "outputs"]).equals(first.manifest.select(["dataset", "item", "outputs"]))
    assert verify_destination(sink).clean
    assert run_export(Config(str(src), str(dst), full=False, dry_run=True), log=lambda m: None).report[
        "dry_run"]["incremental"]
    monkeypatch.setattr(state, "MANIFEST_PART_ROWS", 4)
    second = run_export(Config(str(src), str(dst)), log=lambda m: None)
    assert second.report["items"]["unchanged"] == 6  # every item found in the parts
    now = sorted(p.name for p in (dst / state.MANIFEST_PARTS).iterdir())
    assert len(now) == 1 and not set(now) & set(parts)  # the earlier run's parts removed
    (dst / state.MANIFEST_PARTS / now[0]).write_bytes(b"not the part the manifest names")
    third = run_export(Config(str(src), str(dst)), log=lambda m: None)
    assert third.report["items"]["written"] == 6 and third.report["recovery"]["damaged_state"]
    run_export(Config(str(src), str(clean)), log=lambda m: None)
    assert tree(dst) == tree(clean)


@pytest.mark.parametrize("seed", range(4))
def test_the_join_by_parts_sends_what_the_whole_join_sends(tmp_path, monkeypatch, seed):
    """``attach_by_parts`` over a manifest in files of a random size (cut anywhere, partitions
    spanning files), of a night that added, removed and changed random items (at file edges too,
    all of a file's items removed, items after the manifest's last), gives the whole join's answer
    (``attach_previous`` + ``split_unchanged``): the same items unchanged by stamp, the same rows
    sent for each partition, the same partition keys; a plan not in item order is refused
    (``NotAligned``: joined whole)."""
    from maskcore.exec.stamps import NotAligned, attach_by_parts, split_unchanged
    from maskcore.io.sinks import get_sink

    rng = np.random.default_rng([seed, int(time.time())])
    every = with_stamps(_listing(rng, int(rng.integers(40, 150))))
    m = every.num_rows
    night = [rng.random() < 0.8, rng.random() < 0.8][seed % 2]  # some nights add or remove nothing
    in_last = rng.random(m) < (0.75 if night else 1.0)
    in_plan = np.where(rng.random(m) < (0.2 if night else 0.0), ~in_last, in_last)  # added or removed
    if seed == 3:  # a run of items removed (a file's worth) and items added after the last one
        cut = int(rng.integers(m // 2))
        in_plan[cut:cut + m // 4], in_last[-5:], in_plan[-5:] = False, False, True
    plan = plan_partitions(every.filter(pa.array(in_plan)), items_per_partition=int(rng.integers(1, 12)))
    last = plan_partitions(every.filter(pa.array(in_last)))
    k = last.num_rows
    stamps = {c: last.column(c).to_pylist() for c in ("ann_stamp", "img_stamp")}
    for i in rng.choice(k, int(rng.integers(0, max(1, k // 4))), replace=False):  # stamps that moved since
        stamps["img_stamp"][i] = _blake16(f"moved {i}")
    previous = pa.table({"dataset": last.column("dataset"), "item": last.column("item"),
                         "status": rng.choice(["ok", "unchanged", "ok", "failed"], k).tolist(),
                         "ann_sha256": [f"{rng.integers(1 << 62):064x}" for _ in range(k)],
                         "img_sha256": [None if rng.random() < 0.1 else f"{rng.integers(1 << 62):064x}"
                                        for _ in range(k)],
                         **{c: pa.array(v, STAMP_TYPE) for c, v in stamps.items()}})
    monkeypatch.setattr(state, "MANIFEST_PART_ROWS", int(rng.integers(1, 30)))
    sink = get_sink("dir", str(tmp_path))
    state.write_manifest(sink, previous.replace_schema_metadata({state.RUN_ID_KEY: b"last"}))
    head = state.read_manifest_head(sink)
    attached = attach_by_parts(state.manifest_pieces(sink, head), plan, True, "fp")
    whole = attach_previous(plan, previous)
    parts = partitions(whole)
    sent, _ = split_unchanged(whole, parts, True)
    assert attached.unchanged.tolist() == unchanged_mask(whole).to_pylist()
    assert [a for a, _ in attached.ranges] == [0] + [b for _, b in attached.ranges[:-1]]  # the plan, cut in ranges
    assert attached.ranges[-1][1] == plan.num_rows
    made = []
    real_make = Partitions._make
    monkeypatch.setattr(Partitions, "_make", lambda self, i: made.append(i) or real_make(self, i))
    by_part, keys = attached.todo()
    assert made == []  # no partition's table made before a task asks for it
    assert sorted(by_part) == sorted(keys) == [i for i, rows in enumerate(sent) if rows is not None]
    assert by_part.num_rows == sum(rows.num_rows for rows in sent if rows is not None)
    reference = PartitionKeys("fp", whole, parts.bounds)
    for i, rows in by_part.items():
        assert rows.equals(sent[i]) and keys[i] == reference[i]
    assert made == sorted(keys)
    assert attached.sent.num_rows == by_part.num_rows  # only the rows to hash are kept
    if plan.num_rows > 2:
        i = int(rng.integers(plan.num_rows - 1))
        swapped = plan.take(pa.array([*range(i), i + 1, i, *range(i + 2, plan.num_rows)]))  # two items out of order
        with pytest.raises(NotAligned):
            attach_by_parts(state.manifest_pieces(sink, head), swapped, True)


def _refused(*args):
    """``attach_by_parts`` refusing: the night joined whole."""
    from maskcore.exec.stamps import NotAligned

    raise NotAligned("refused")


def _report_without(result, drop) -> dict:
    return {k: v for k, v in result.report.items() if k not in drop}


def test_a_night_joined_by_parts_holds_one_part_and_ends_as_the_whole_join(tmp_path, samples, monkeypatch):
    """A manifest of 18 items in files of 4: the next night (one item edited, one touched) joins the
    last manifest a part at a time: never read whole, no piece of more than 4 rows, its manifest
    read back when asked for; the destination, manifest and report are the whole join's (the same
    night run with the join by parts refused, or given up after the workers as when one died) and
    the files are a clean run's."""
    from helpers import bigger_project
    from maskcore.exec import run as run_module
    from maskcore.io import storage

    monkeypatch.setattr(storage, "STAMP_SETTLE_SECONDS", 0.3)
    monkeypatch.setattr(state, "MANIFEST_PART_ROWS", 4)
    src, dst, whole, clean = (tmp_path / n for n in ("src", "out", "whole", "clean"))
    bigger_project(samples, src, 3)
    time.sleep(0.35)
    cfg = {"items_per_partition": 3, "in_process": True}
    assert run_export(ExportConfig(str(src), str(dst), **cfg), log=lambda m: None).report["items"]["written"] == 18
    ann = src / "ds/ann/c1_dog1.jpg.json"
    doc = json.loads(ann.read_text())
    doc["objects"][0]["points"]["exterior"][1][0] -= 50   # a vertex moved: rendered again
    ann.write_text(json.dumps(doc))
    os.utime(src / "ds/ann/cat1.jpg.json")                           # a new stamp, the same bytes
    time.sleep(0.35)
    shutil.copytree(dst, whole)
    shutil.copytree(dst, tmp_path / "died")

    pieces = []

    def recorded(*args):
        for rows, previous in real_rows_by_parts(*args):
            pieces.append((rows.num_rows, previous.num_rows))
            yield rows, previous

    def never(*args, **kwargs):
        raise AssertionError("the last manifest was read whole")

    real_rows_by_parts, real_run_partition, tasks = run_module.rows_by_parts, run_module.run_partition, []

    def counted(spec, part, key=None):
        tasks.append(part.num_rows)
        return real_run_partition(spec, part, key)

    with monkeypatch.context() as m:
        m.setattr(run_module, "rows_by_parts", recorded)
        m.setattr(run_module, "read_manifest", never)
        m.setattr(run_module, "run_partition", counted)
        night = run_export(ExportConfig(str(src), str(dst), **cfg), log=lambda m: None)
        assert len(pieces) == 5 and max(max(p) for p in pieces) <= 4 and sum(p[0] for p in pieces) == 18
        assert callable(night._manifest)  # not held: read back when asked for
    assert tasks == [2]  # the two items to hash (fewer than a partition's 3) in one task, whatever their partitions
    with monkeypatch.context() as m:
        m.setattr(run_module, "attach_by_parts", _refused)
        joined = run_export(ExportConfig(str(src), str(whole), **cfg), log=lambda m: None)
    assert night.report["items"] == joined.report["items"] == {"total": 18, "written": 1, "unchanged": 17, "failed": 0}
    assert night.report["stamps"] == joined.report["stamps"] == {"verify": False, "unchanged_by_stamp": 16, "hashed": 2}
    drop = ("seconds", "destination")
    assert _report_without(night, drop) == _report_without(joined, drop)
    columns = [c for c in joined.manifest.column_names if c != "seconds"]
    assert night.manifest.select(columns).equals(joined.manifest.select(columns))
    assert tree(dst) == tree(whole)
    with monkeypatch.context() as m:  # a worker died: the run gives up the join by parts, sweeps, ends the same
        m.setattr(run_module, "any_died", lambda table: True)
        died = run_export(ExportConfig(str(src), str(tmp_path / "died"), **cfg), log=lambda m: None)
    assert _report_without(died, drop) == _report_without(joined, drop)
    assert tree(tmp_path / "died") == tree(whole)
    fresh = run_export(ExportConfig(str(src), str(clean), **cfg), log=lambda m: None)
    assert fresh.report["input_fingerprint"] == night.report["input_fingerprint"]
    assert {k: v for k, v in tree(dst).items() if ".maskcore-meta" not in k} == \
        {k: v for k, v in tree(clean).items() if ".maskcore-meta" not in k}


def test_nights_that_add_and_remove_items_join_by_parts_as_the_whole_join(tmp_path, samples, monkeypatch):
    """Two nights of random adds (names sorting first, last, between), removes (a file's items at
    once too) and edits, over a manifest in files of a random small size: each night merges the
    last manifest with the plan a part at a time (never read whole) and ends as the same night
    joined whole (``NotAligned`` forced) and as when the join by parts is given up after the
    workers (a worker died): the same report, manifest and files (removed items' masks gone); and
    the files are a clean run's. ``--dry-run`` before each night merges by parts too and gives the
    whole join's counts, the night's."""
    from helpers import bigger_project
    from maskcore.exec import run as run_module
    from maskcore.io import storage

    rng = np.random.default_rng(int(time.time()))
    monkeypatch.setattr(storage, "STAMP_SETTLE_SECONDS", 0.3)
    monkeypatch.setattr(state, "MANIFEST_PART_ROWS", int(rng.integers(2, 6)))
    src, dst, whole = (tmp_path / n for n in ("src", "out", "whole"))
    bigger_project(samples, src, 4)
    time.sleep(0.35)
    cfg = {"items_per_partition": int(rng.integers(1, 5)), "in_process": True}
    run_export(ExportConfig(str(src), str(dst), **cfg), log=lambda m: None)
    shutil.copytree(dst, whole)
    shutil.copytree(dst, tmp_path / "died")

    def never(*args, **kwargs):
        raise AssertionError("the last manifest was read whole")

    drop = ("seconds", "destination")
    for night in range(2):
        items = sorted(p.name[:-len(".json")] for p in (src / "ds/ann").glob("*.json"))
        gone = set(rng.choice(items, int(rng.integers(1, 5)), replace=False).tolist())
        if night == 0:  # a run of neighbours: a whole manifest file's items, at least
            k = int(rng.integers(len(items) - 6))
            gone |= set(items[k:k + 6])
        for item in gone:
            (src / "ds/ann" / f"{item}.json").unlink()
            (src / "ds/img" / item).unlink()
        kept = [i for i in items if i not in gone]
        for prefix in rng.choice(["a_", "c2_b", "cat2x_", "d_", "zz_"], int(rng.integers(1, 4)), replace=False):
            item = str(rng.choice(kept))
            shutil.copyfile(src / "ds/ann" / f"{item}.json", src / "ds/ann" / f"{prefix}{night}{item}.json")
            shutil.copyfile(src / "ds/img" / item, src / "ds/img" / f"{prefix}{night}{item}")
        for item in rng.permutation(kept):  # a vertex moved: rendered again
            ann = src / "ds/ann" / f"{item}.json"
            doc = json.loads(ann.read_text())
            shape = next((o["points"]["exterior"] for o in doc["objects"]
                          if isinstance(o.get("points"), dict) and len(o["points"].get("exterior") or []) > 2), None)
            if shape is not None:
                shape[1][0] -= 7 * (night + 1)
                ann.write_text(json.dumps(doc))
                break
        time.sleep(0.35)
        with monkeypatch.context() as m:
            m.setattr(run_module, "read_manifest_readonly", never)
            dry = run_export(ExportConfig(str(src), str(dst), dry_run=True, **cfg), log=lambda m: None)
        with monkeypatch.context() as m:
            m.setattr(run_module, "attach_by_parts", _refused)
            dry_whole = run_export(ExportConfig(str(src), str(dst), dry_run=True, **cfg), log=lambda m: None)
        assert dry.report == dry_whole.report
        with monkeypatch.context() as m:
            m.setattr(run_module, "read_manifest", never)
            parts = run_export(ExportConfig(str(src), str(dst), **cfg), log=lambda m: None)
        stamps = parts.report["stamps"]
        assert (dry.report["dry_run"]["unchanged_by_stamp"], dry.report["dry_run"]["to_read"]) == \
            (stamps["unchanged_by_stamp"], stamps["hashed"])
        assert dry.report["dry_run"]["to_read_new"] >= parts.report["items"]["total"] - len(kept)
        with monkeypatch.context() as m:
            m.setattr(run_module, "attach_by_parts", _refused)
            joined = run_export(ExportConfig(str(src), str(whole), **cfg), log=lambda m: None)
        assert parts.report["stale_files_removed"] == joined.report["stale_files_removed"] > 0
        assert {k: v for k, v in parts.report.items() if k not in drop} == \
            {k: v for k, v in joined.report.items() if k not in drop}
        columns = [c for c in joined.manifest.column_names if c != "seconds"]
        assert parts.manifest.select(columns).equals(joined.manifest.select(columns))
        assert parts.manifest.column("item").to_pylist() == sorted(i for i in (p.name[:-5] for p in
                                                                              (src / "ds/ann").glob("*.json")))
        assert tree(dst) == tree(whole)
        if night == 0:
            with monkeypatch.context() as m:  # a worker died: the join by parts given up after the workers
                m.setattr(run_module, "any_died", lambda table: True)
                died = run_export(ExportConfig(str(src), str(tmp_path / "died"), **cfg), log=lambda m: None)
            assert {k: v for k, v in died.report.items() if k not in drop} == \
                {k: v for k, v in joined.report.items() if k not in drop}
            assert tree(tmp_path / "died") == tree(whole)
    clean = run_export(ExportConfig(str(src), str(tmp_path / "clean"), **cfg), log=lambda m: None)
    assert clean.report["input_fingerprint"] == parts.report["input_fingerprint"]
    assert {k: v for k, v in tree(dst).items() if ".maskcore-meta" not in k} == \
        {k: v for k, v in tree(tmp_path / "clean").items() if ".maskcore-meta" not in k}


@pytest.mark.parametrize("seed", range(3))
def test_results_merged_as_they_come_hold_the_same_rows(monkeypatch, seed):
    """The run's result tables (``run._Results``) arriving in any partition order: kept, they come
    back in partition order; merged as they come (a night joined by parts, whose rows are put in
    item order after), every row comes back once, in fewer tables, as a run of one-row tables
    made ~85k tables (BENCHMARKS.md "Issue 17 (session 10)")."""
    from maskcore.exec import run as run_module
    from maskcore.exec.task import RESULT_SCHEMA

    rng = np.random.default_rng(seed)
    monkeypatch.setattr(run_module, "MERGED_TABLES", int(rng.integers(1, 5)))
    n = int(rng.integers(1, 30))
    schema = pa.schema([RESULT_SCHEMA.field("dataset"), RESULT_SCHEMA.field("item")])
    tables = [pa.table({"dataset": [f"ds{p}"] * k, "item": [f"{p}/{j}" for j in range(k)]}, schema=schema)
              for p, k in enumerate(rng.integers(0, 4, n).tolist())]
    arrival = rng.permutation(n).tolist()
    kept, merged = run_module._Results(False), run_module._Results(True)
    for p in arrival:
        kept.add(tables[p], p)
        merged.add(tables[p], p)
    assert kept.n == merged.n == n
    assert kept.tables() == tables  # partition order
    rows = pa.concat_tables(merged.tables())
    assert sorted(rows.column("item").to_pylist()) == sorted(pa.concat_tables(tables).column("item").to_pylist())
    assert len(merged.tables()) <= -(-n // run_module.MERGED_TABLES)


@pytest.mark.parametrize("seed", range(4))
def test_tasks_group_consecutive_partitions_into_partition_sized_tasks(seed):
    """A night joined by parts sends partitions with few rows to hash (scattered new items): runs of
    consecutive ones share a task of at least a partition's rows (``plan.consecutive_groups``),
    whose rows are theirs in order and whose key is made of theirs; a task of one partition is that
    partition; groups may not resume a partial nor leave a partition out."""
    from maskcore.exec.plan import Todo, consecutive_groups

    rng = np.random.default_rng(seed)
    ids = sorted(rng.choice(200, int(rng.integers(1, 60)), replace=False).tolist())
    counts = rng.integers(1, 6, len(ids)).tolist()
    size = int(rng.integers(1, 9))
    groups = consecutive_groups(ids, counts, size)
    assert [i for g in groups for i in g] == ids
    n = dict(zip(ids, counts))
    assert all(sum(n[i] for i in g) >= size for g in groups[:-1])
    assert all(sum(n[i] for i in g[:-1]) < size for g in groups)  # cut as soon as a group is big enough
    rows = {i: pa.table({"dataset": ["ds"] * n[i], "item": [f"{i:03d}/{j}" for j in range(n[i])],
                         "partition": pa.array([i] * n[i], pa.int32())}) for i in ids}
    keys = {i: f"{i:032x}" for i in ids}
    todo = Todo(rows, keys, {}, sum(counts), groups)
    assert len(todo) == len(groups) and todo.n_partitions() == len(ids) and todo.n_resumed() == 0
    made_keys = set()
    for (first, part, key, done), group in zip(todo, groups):
        assert first == group[0] and done is None
        assert part.equals(pa.concat_tables([rows[i] for i in group]).combine_chunks())
        if len(group) == 1:
            assert key == keys[first]
        else:  # a key of its own: no partition's, so no plan partition's partial is taken for it
            assert key not in keys.values() and len(key) == 32 and int(key, 16) >= 0
        made_keys.add(key)
    assert len(made_keys) == len(groups)
    again = Todo(rows, keys, {}, sum(counts), groups)
    assert [k for _, _, k, _ in again] == [k for _, _, k, _ in todo]  # the same keys every time
    with pytest.raises(ValueError):
        Todo(rows, keys, {ids[0]: pa.table({})}, sum(counts), groups)
    with pytest.raises(ValueError):
        Todo(rows, keys, {}, sum(counts), groups[1:] if len(groups) > 1 else [])
