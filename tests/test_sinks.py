import os

import pytest

from maskcore.errors import UnsafePathError
from maskcore.sinks.fsdir import FsspecDirSink, check_relpath


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
    assert os.listdir(tmp_path / "dst/.maskcore/tmp") == []


def test_failed_write_leaves_nothing_under_the_final_name(tmp_path, monkeypatch):
    sink = FsspecDirSink(str(tmp_path))

    def boom(src, dst):
        raise OSError("disk full")
    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        sink.write("f.png", b"data")
    assert not (tmp_path / "f.png").exists()
    assert os.listdir(tmp_path / ".maskcore/tmp") == []


def test_sink_pickles_without_its_filesystem(tmp_path):
    import pickle
    sink = FsspecDirSink(str(tmp_path), {})
    sink.write("a", b"x")
    clone = pickle.loads(pickle.dumps(sink))
    assert clone.read("a") == b"x"
