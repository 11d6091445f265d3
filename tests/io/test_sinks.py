import os

import pytest

from maskcore.errors import LateWriteError, UnsafePathError
from maskcore.io.sinks.fsdir import FsspecDirSink, check_relpath


@pytest.mark.parametrize("bad", ["../x.png", "/etc/passwd", "a/../../b", "a//b", "a\\b", "", "a/./b", "x\x00y"])
def test_paths_that_escape_are_refused(bad):
    with pytest.raises(UnsafePathError):
        check_relpath(bad)


def test_write_is_whole_and_leaves_no_temporaries(tmp_path):
    sink = FsspecDirSink(str(tmp_path / "dst"))
    sink.write("ds/masks_machine/a.png", b"1234")
    sink.write("ds/masks_machine/a.png", b"56")
    assert (tmp_path / "dst/ds/masks_machine/a.png").read_bytes() == b"56"
    assert os.listdir(tmp_path / "dst/ds/masks_machine") == ["a.png"]
    assert os.listdir(tmp_path / "dst/.maskcore-meta/tmp") == []


def test_failed_write_leaves_nothing_under_the_final_name(tmp_path, monkeypatch):
    sink = FsspecDirSink(str(tmp_path))

    def boom(src, dst):
        raise OSError("disk full")
    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        sink.write("f.png", b"data")
    assert not (tmp_path / "f.png").exists()
    assert os.listdir(tmp_path / ".maskcore-meta/tmp") == []


def test_a_write_whose_temporary_vanished_is_a_late_write(tmp_path, monkeypatch):
    sink = FsspecDirSink(str(tmp_path))
    real = os.replace

    def cleaned_up_meanwhile(src, dst):  # the run's end removed the temporaries meanwhile
        sink.clear_temporaries()
        return real(src, dst)
    monkeypatch.setattr(os, "replace", cleaned_up_meanwhile)
    with pytest.raises(LateWriteError, match="'ds/a.png' was removed by the end of its run"):
        sink.write("ds/a.png", b"data")
    assert not (tmp_path / "ds/a.png").exists()


def test_a_late_duplicate_task_keeps_the_files_its_run_recorded(tmp_path, monkeypatch, samples):
    """A duplicate task still writing after its run ended fails with LateWriteError, and its
    item's files (the very files the run recorded, same bytes) are not removed."""
    from maskcore.exec.plan import plan_partitions
    from maskcore.exec.task import TaskSpec, run_partition
    from maskcore.layouts import get_layout
    from maskcore.readers import open_source

    source = open_source("supervisely", str(samples / "vector"))
    plan = plan_partitions(source.list_items(), workers=1).slice(0, 1)
    spec = TaskSpec(source=source, sink=FsspecDirSink(str(tmp_path)), layout=get_layout("supervisely", {}),
                    meta=source.read_meta())
    assert run_partition(spec, plan).column("status").to_pylist() == ["ok"]
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file() and ".maskcore-meta" not in p.parts}
    assert len(before) >= 4
    real, calls = os.replace, []

    def cleaned_up_meanwhile(src, dst):  # the duplicate's third file loses its temporary
        calls.append(dst)
        if len(calls) == 3:
            spec.sink.clear_temporaries()
        return real(src, dst)
    monkeypatch.setattr(os, "replace", cleaned_up_meanwhile)
    late = run_partition(spec, plan)
    assert late.column("error_type").to_pylist() == ["LateWriteError"]
    after = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file() and ".maskcore-meta" not in p.parts}
    assert after == before


def test_sink_pickles_without_its_filesystem(tmp_path):
    import pickle
    sink = FsspecDirSink(str(tmp_path), {})
    sink.write("a", b"x")
    clone = pickle.loads(pickle.dumps(sink))
    assert clone.read("a") == b"x"
