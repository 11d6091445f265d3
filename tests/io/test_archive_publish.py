"""The archive publication journal (maskcore.io.archive_publish): a publication cut anywhere
between its journal and its commit is undone by recover_publish, a committed one is kept."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from maskcore.io.archive_publish import (
    BACKUP_DIR,
    PUBLISH_JOURNAL,
    begin_publish,
    end_publish,
    recover_publish,
)
from maskcore.io.sinks.fsdir import FsspecDirSink


def _state(root: Path) -> dict[str, tuple]:
    return {p.name: (p.read_bytes(), p.stat().st_ino, p.stat().st_mtime_ns) for p in root.glob("p.tar.*")}


def _old_set(root: Path) -> FsspecDirSink:
    for i in (1, 2, 3):
        (root / f"p.tar.00{i}").write_bytes(b"old %d" % i)
    return FsspecDirSink(str(root))


def _publish(sink: FsspecDirSink, root: Path, cut: int) -> None:
    """Replace part 2, add part 4, remove part 3; stop after ``cut`` of those three steps."""
    stale = begin_publish(sink, ["p.tar.001", "p.tar.002", "p.tar.003"],
                          ["p.tar.002", "p.tar.004"], {f"p.tar.00{i}" for i in (1, 2, 4)}, "run2")
    assert stale == ["p.tar.003"]
    steps = [lambda: sink.write("p.tar.002", b"new 2"), lambda: sink.write("p.tar.004", b"new 4"),
             lambda: sink.delete(stale)]
    for step in steps[:cut]:
        step()


@pytest.mark.parametrize("cut", [0, 1, 2, 3])
def test_a_publication_cut_anywhere_is_undone(tmp_path, cut):
    sink = _old_set(tmp_path)
    before = _state(tmp_path)
    _publish(sink, tmp_path, cut)
    note = recover_publish(sink, "run1")          # the committed manifest is still run1's
    assert "restored" in note
    assert _state(tmp_path) == before              # same bytes, inodes and mtimes: the stamps hold
    assert not (tmp_path / PUBLISH_JOURNAL).exists() and not (tmp_path / BACKUP_DIR).exists()


def test_a_committed_publication_is_kept_and_cleaned_up(tmp_path):
    sink = _old_set(tmp_path)
    _publish(sink, tmp_path, 3)
    after = _state(tmp_path)
    assert recover_publish(sink, "run2") is None   # run2 committed, then died before end_publish
    assert _state(tmp_path) == after and sorted(after) == ["p.tar.001", "p.tar.002", "p.tar.004"]
    assert not (tmp_path / PUBLISH_JOURNAL).exists() and not (tmp_path / BACKUP_DIR).exists()


def test_nothing_to_replace_writes_no_journal(tmp_path):
    sink = _old_set(tmp_path)
    assert begin_publish(sink, ["p.tar.001"], [], {"p.tar.001"}, None) == []
    end_publish(sink)
    assert recover_publish(sink, "run1") is None
    assert sorted(os.listdir(tmp_path)) == ["p.tar.001", "p.tar.002", "p.tar.003"]
