"""``maskcore verify`` and what a run leaves for it: after any sequence of runs the destination holds
exactly what the last run's manifest names (what a clean run with the same options writes)."""

from __future__ import annotations

import filecmp

import maskcore
from maskcore.exec.verify import verify_destination
from maskcore.io.sinks import get_sink


def _tree(root):
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*")
                  if p.is_file() and ".maskcore-meta" not in p.parts)


def test_a_run_with_fewer_kinds_removes_the_project_files_of_the_dropped_kinds(samples, tmp_path):
    """All four kinds, then machine only: obj_class_to_semantic_color.json (semantic masks only)
    goes with the semantic masks, and the destination verifies and equals a clean machine-only run."""
    src, dst, clean = samples / "vector", tmp_path / "dst", tmp_path / "clean"
    assert maskcore.export(src, dst, cluster="inprocess").exit_code == 0
    assert (dst / "obj_class_to_semantic_color.json").exists()
    second = maskcore.export(src, dst, masks=["machine"], cluster="inprocess")
    assert second.exit_code == 0 and second.report["stale_files_removed"] > 0
    assert not (dst / "obj_class_to_semantic_color.json").exists()
    check = verify_destination(get_sink("dir", str(dst)))
    assert check.clean, check.summary()
    assert maskcore.export(src, clean, masks=["machine"], cluster="inprocess").exit_code == 0
    assert _tree(dst) == _tree(clean)
    assert all(filecmp.cmp(dst / p, clean / p, shallow=False) for p in _tree(clean))
