"""The run report names the first failures and warnings of each kind and counts the rest; the
manifest keeps every one (issue 17 item 3: millions of items must not make a report of millions of
lines). Partitions skipped by their stamps are not counted as run (issue 17 item 5)."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from maskcore.cli.main import main
from maskcore.exec import report as report_caps
from maskcore.exec.report import (
    listed_failures,
    listed_source_warnings,
    listed_warnings,
)
from maskcore.exec.run import ExportConfig, run_export
from maskcore.exec.state import MANIFEST, REPORT

REPO = Path(__file__).resolve().parents[2]


def _manifest(rng, n: int) -> pa.Table:
    kinds = ["MissingImageError", "ValueError", None, "DecodeError"]
    status = rng.choice(["ok", "failed", "unchanged"], n, p=[0.5, 0.4, 0.1])
    rows = {"dataset": [f"ds{i // 50}" for i in range(n)], "item": [f"{i:05d}.png" for i in range(n)],
            "status": status.tolist(),
            "error": [f"ds/{i:05d}.png: boom" if s == "failed" else None for i, s in enumerate(status)],
            "error_type": [kinds[rng.integers(len(kinds))] if s == "failed" else None for s in status],
            "warnings": [[f"w{i}.{k}" for k in range(rng.integers(0, 3) * (rng.random() < 0.3))] for i in range(n)]}
    return pa.table(rows)


def test_failures_named_per_kind_in_item_order_all_counted():
    rng = np.random.default_rng(int(time.time()))
    manifest = _manifest(rng, int(rng.integers(50, 400)))
    per_kind = int(rng.integers(1, 12))
    named, counts = listed_failures(manifest, per_kind)
    rows = manifest.to_pylist()
    failed = [r for r in rows if r["status"] == "failed"]
    expected, seen = [], {}
    for r in failed:  # the oracle: one pass in manifest order
        kind = r["error_type"] or ""
        seen[kind] = seen.get(kind, 0) + 1
        if seen[kind] <= per_kind:
            expected.append({"dataset": r["dataset"], "item": r["item"], "error": r["error"]})
    assert named == expected
    assert counts == {"total": len(failed), "listed": len(expected), "per_kind": per_kind, "by_kind": seen}
    warned, wcounts = listed_warnings(manifest, per_kind)
    with_warnings = [r for r in rows if r["warnings"]]
    assert warned == [{"dataset": r["dataset"], "item": r["item"], "warnings": r["warnings"]}
                      for r in with_warnings[:per_kind]]
    assert wcounts == {"items": len(with_warnings), "warnings": sum(len(r["warnings"]) for r in with_warnings),
                       "listed": min(per_kind, len(with_warnings))}
    texts = [f"s{i}" for i in range(int(rng.integers(0, 20)))]
    assert listed_source_warnings(texts, per_kind) == (texts[:per_kind], {"total": len(texts),
                                                                         "listed": min(per_kind, len(texts))})


def test_a_run_names_the_first_failures_counts_all_and_says_where_the_rest_are(tmp_path, capsys, monkeypatch):
    # the urban scene's CVAT XML without its photos: every human preview fails for a missing image
    monkeypatch.setattr(report_caps, "REPORT_ITEMS_PER_KIND", 3)
    src = REPO / "tests" / "data" / "cvat_urban_scene" / "annotations.xml"
    dst = tmp_path / "o"
    assert main(["export", str(src), str(dst)]) == 3
    err = capsys.readouterr().err
    report = json.loads((dst / REPORT).read_text())
    manifest = pq.read_table(dst / MANIFEST)
    failed = manifest.filter(pa.compute.equal(manifest.column("status"), "failed"))
    assert report["items"]["failed"] == failed.num_rows == 20
    assert [f["item"] for f in report["failures"]] == failed.column("item").to_pylist()[:3]
    assert report["listed"]["failures"] == {"total": 20, "listed": 3, "per_kind": 3,
                                            "by_kind": {"MissingImageError": 20}}
    assert "items failed (20 MissingImageError):" in err
    assert f"... and 15 more in the report (3 named there; every one in {MANIFEST}" in err


def test_partitions_skipped_by_stamp_are_not_counted_as_run(tmp_path, samples, monkeypatch):
    from maskcore.io import storage

    monkeypatch.setattr(storage, "STAMP_SETTLE_SECONDS", 0.3)
    src, dst = tmp_path / "src", tmp_path / "out"
    shutil.copytree(samples / "vector", src)
    time.sleep(0.35)
    first = run_export(ExportConfig(str(src), str(dst), items_per_partition=2), log=lambda m: None)
    assert first.report["partitions"] == {"total": 3, "resumed": 0, "run": 3, "unchanged_by_stamp": 0}
    night = run_export(ExportConfig(str(src), str(dst), items_per_partition=2), log=lambda m: None)
    assert night.report["partitions"] == {"total": 3, "resumed": 0, "run": 0, "unchanged_by_stamp": 3}
    ann = min((src / "ds" / "ann").iterdir())
    ann.write_text(ann.read_text() + " ")  # one item's stamp moves: its partition runs (hashed, not rendered)
    time.sleep(0.35)
    one = run_export(ExportConfig(str(src), str(dst), items_per_partition=2), log=lambda m: None)
    assert one.report["partitions"] == {"total": 3, "resumed": 0, "run": 1, "unchanged_by_stamp": 2}
    assert one.report["stamps"]["hashed"] == 1


def test_input_fingerprint_is_the_sha256_of_one_line_per_item():
    """Hashed from Arrow's buffers block by block: the same digest as the lines written out."""
    import hashlib

    from maskcore.exec.finish import input_fingerprint as _input_fingerprint

    rng = np.random.default_rng(int(time.time()))
    n = int(rng.integers(0, 3000))
    rows = [(f"ds{rng.integers(3)}/é", f"{i}.png", None if rng.random() < 0.2 else f"{rng.integers(1 << 60):064x}",
             f"{rng.integers(1 << 60):064x}") for i in range(n)]
    table = pa.table(list(zip(*rows)) if rows else [[], [], [], []],
                     schema=pa.schema([(c, pa.string()) for c in ("dataset", "item", "ann_sha256", "img_sha256")]))
    table = pa.concat_tables([table.slice(0, n // 3), table.slice(n // 3)])
    text = "".join("\t".join(v or "" for v in r) + "\n" for r in rows)
    expected = hashlib.sha256(text.encode()).hexdigest()
    assert _input_fingerprint(table, rows_per_block=int(rng.integers(1, 500))) == expected
    assert _input_fingerprint(table.slice(1)) == hashlib.sha256(text[text.find("\n") + 1:].encode()).hexdigest()
