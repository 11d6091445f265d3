import pyarrow as pa
from hypothesis import given
from hypothesis import strategies as st

from maskcore.exec.plan import dataset_out_dir, mask_stems, partitions, plan_partitions


def test_stems_unique_even_when_items_share_a_stem_or_differ_by_case():
    items = ["cat.jpg", "cat.png", "Dog.jpg", "dog.JPG", "bird.jpg", "a.b.jpg"]
    stems = mask_stems(items)
    assert stems[4] == "bird" and stems[5] == "a.b"
    assert stems[0] == "cat.jpg" and stems[1] == "cat.png"
    assert len({s.casefold() for s in stems}) == len(items)


@given(st.lists(st.text(min_size=1, max_size=12), min_size=1, max_size=30, unique=True))
def test_stems_always_unique_safe_and_deterministic(items):
    stems = mask_stems(items)
    assert len({s.casefold() for s in stems}) == len(items)
    assert all("/" not in s and s not in (".", "..") and "\x00" not in s for s in stems)
    assert stems == mask_stems(list(items))


def test_nested_dataset_folder():
    assert dataset_out_dir("top/child") == "top/datasets/child"
    assert dataset_out_dir("ds") == "ds"


def _listing(n, datasets=("a", "b")):
    rows = sorted((d, f"img{i:04d}.jpg") for d in datasets for i in range(n))
    return pa.table({"dataset": [r[0] for r in rows], "item": [r[1] for r in rows],
                     "ann_path": [f"{r[0]}/ann/{r[1]}.json" for r in rows]})


def test_partitions_cover_every_item_once_in_order():
    plan = plan_partitions(_listing(50), workers=2, items_per_partition=16)
    parts = partitions(plan)
    assert sum(p.num_rows for p in parts) == 100
    assert all(p.num_rows <= 16 for p in parts)
    assert len(parts) >= 4  # at least MIN_PARTITIONS
    joined = pa.concat_tables(parts)
    assert joined.column("item").to_pylist() == plan.column("item").to_pylist()


def test_empty_listing_plans_nothing():
    assert partitions(plan_partitions(_listing(0), workers=2)) == []


def test_a_partition_pickles_only_its_own_rows():
    import pickle
    plan = plan_partitions(_listing(20000), workers=2, items_per_partition=8)
    part = partitions(plan)[3]
    assert part.num_rows == 8
    assert len(pickle.dumps(part)) < 20 * len(pickle.dumps(plan)) / plan.num_rows * 8 + 4096


def test_hostile_item_names_become_safe_unique_file_names():
    from maskcore.exec.plan import out_names
    items = ["a.jpg", "A.jpg", "b\\c.jpg", "ctl\x01.jpg", "x" * 400 + ".jpg", "..", "ok.png"]
    names = out_names(items)
    assert names[-1] == "ok.png"
    assert len({n.casefold() for n in names}) == len(items)
    for n in names:
        assert "/" not in n and "\\" not in n and n not in (".", "..")
        assert all(ord(c) >= 32 for c in n) and len(n.encode()) <= 255
    assert names == out_names(list(items))


def test_partitions_depend_on_the_item_count_and_target_size_only():
    from maskcore.exec.plan import MIN_PARTITIONS, partition_size

    listing = _listing(300)
    plans = [plan_partitions(listing, workers=w, items_per_partition=16) for w in (1, 3, 64, None)]
    assert all(p.column("partition").equals(plans[0].column("partition")) for p in plans)
    assert max(p.num_rows for p in partitions(plans[0])) == 16 and len(partitions(plans[0])) == 38
    assert partition_size(20, None) == 5 and len(partitions(plan_partitions(_listing(10)))) == MIN_PARTITIONS
    assert partition_size(10**6, None) == 32 and partition_size(10**6, 500) == 500


def _all_bytes(root):
    from pathlib import Path
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(Path(root).rglob("*")) if p.is_file()}


def test_dry_run_counts_what_a_run_would_do_and_changes_nothing(samples, tmp_path, monkeypatch, capsys):
    import json
    import shutil
    import time

    from maskcore.cli.main import main
    from maskcore.io import storage

    monkeypatch.setattr(storage, "STAMP_SETTLE_SECONDS", 0.2)
    src, dst = tmp_path / "src", tmp_path / "out"
    shutil.copytree(samples / "vector", src)
    args = ["export", str(src), str(dst), "--cluster", "inprocess", "--masks", "machine"]
    assert main([*args, "--dry-run"]) == 0
    assert not dst.exists()
    assert "6 items (of 6 listed) in 3 partitions" in capsys.readouterr().out
    time.sleep(0.25)
    assert main(args) == 0
    ann = src / "ds/ann/dog1.jpg.json"
    ann.write_text(json.dumps({**json.loads(ann.read_text()), "tags": []}, indent=1))
    (src / "ds/ann/cat2.jpg.json").unlink()
    (src / "ds/img/cat2.jpg").unlink()
    before = _all_bytes(dst)
    capsys.readouterr()
    assert main([*args, "--dry-run", "--exclude-item", "cat3.jpg"]) == 0
    out = capsys.readouterr().out
    assert "4 items (of 5 listed)" in out and "incremental: the last run used the same settings" in out
    assert "3 unchanged by stamp (not read); 1 to read and hash" in out
    assert f"{ann.stat().st_size + (src / 'ds/img/dog1.jpg').stat().st_size} bytes to read" in out
    assert _all_bytes(dst) == before  # .maskcore-meta/ too: no lock, no report, nothing set aside


@given(st.lists(st.tuples(st.sampled_from(["a", "b", "C"]),
                          st.text(st.sampled_from("aAbB._- 1ée/\\:"), min_size=1, max_size=8)),
                min_size=1, max_size=40, unique=True))
def test_fast_names_equal_the_general_rules(rows):
    """plan_partitions' vectorised path for simple names gives what out_names / mask_stems give."""
    from maskcore.exec.plan import out_names

    rows = sorted(rows)
    plan = plan_partitions(pa.table({"dataset": [d for d, _ in rows], "item": [i for _, i in rows]}))
    expected_stems, expected_names = {}, {}
    for d in sorted({d for d, _ in rows}):
        items = [i for e, i in rows if e == d]
        expected_stems.update(zip([(d, i) for i in items], mask_stems(items)))
        expected_names.update(zip([(d, i) for i in items], out_names(items)))
    assert plan.column("mask_stem").to_pylist() == [expected_stems[r] for r in rows]
    assert plan.column("out_name").to_pylist() == [expected_names[r] for r in rows]
