"""What a person sees on the console (issue 16): failures named at the end of a run, usage errors
as exit 2, no abbreviated flags, selections that match nothing. In-process through ``main(argv)``."""

from __future__ import annotations

from pathlib import Path

import pytest

from maskcore.cli.main import main

REPO = Path(__file__).resolve().parents[2]
VECTOR = REPO / "examples" / "sly_catsdogs" / "vector"


def test_failures_are_counted_by_kind_and_the_first_named(tmp_path, capsys):
    # the urban scene's CVAT XML without its photos: every human preview fails for a missing image
    src = REPO / "tests" / "data" / "cvat_urban_scene" / "annotations.xml"
    assert main(["export", str(src), str(tmp_path / "o"), "--workers", "1"]) == 3
    err = capsys.readouterr().err
    assert "items failed (20 MissingImageError):" in err
    named = [line for line in err.splitlines() if line.startswith("maskcore:   default/")]
    assert len(named) == 5 and all("image file is missing" in line for line in named)
    assert "... and 15 more in the report" in err


def test_warnings_are_counted_with_the_first_one(tmp_path, capsys):
    src = tmp_path / "src"
    import shutil

    shutil.copytree(VECTOR, src)
    (src / "ds" / "img" / "dog1.jpg").unlink()  # an annotation without its image: masks, and a warning
    assert main(["export", str(src), str(tmp_path / "o"), "--masks", "machine"]) == 0
    err = capsys.readouterr().err
    assert "maskcore: 1 warnings on 1 items (first: ds/dog1.jpg: the image file is missing" in err


@pytest.mark.parametrize("argv, needle", [
    (["--layout", "nope"], "invalid choice: 'nope'"),
    (["--masks", "machine,foo"], "usage error: masks: expected a non-empty subset"),
    (["-o", "thickness=0"], "usage error: thickness: expected an integer 1..1000, got 0"),
    (["--thicknes", "3"], "unrecognized arguments: --thicknes 3"),
    (["--layout", "save-masks"], "--machine-colors FILE and/or --human-colors FILE"),
])
def test_bad_flags_are_usage_errors(argv, needle, tmp_path, capsys):
    try:
        code = main(["export", str(VECTOR), str(tmp_path / "o"), *argv])
    except SystemExit as exc:  # argparse's own refusals
        code = exc.code
    assert code == 2
    assert needle in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_a_selection_that_matches_nothing_says_so_and_exits_6(tmp_path, capsys):
    assert main(["export", str(VECTOR), str(tmp_path / "o"), "--dataset", "dss"]) == 6
    err = capsys.readouterr().err
    assert "the item selection matched none of the 6 items; no dataset 'dss' (did you mean 'ds'?)" in err
    assert main(["export", str(VECTOR), str(tmp_path / "o2"), "--item", "dog1.jpeg"]) == 6
    assert "no item 'dog1.jpeg' (did you mean 'dog1.jpg'" in capsys.readouterr().err


def test_failed_items_are_named_live_once_each(tmp_path, capsys):
    src = REPO / "tests" / "data" / "cvat_urban_scene" / "annotations.xml"
    assert main(["export", str(src), str(tmp_path / "o"), "--workers", "1"]) == 3
    live = [line for line in capsys.readouterr().err.splitlines() if line.startswith("maskcore: failed: ")]
    assert len(live) == 20 and len(set(live)) == 20
    assert all("image file is missing" in line for line in live)


def _tree(root: Path) -> dict[str, str]:
    import hashlib

    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in root.rglob("*") if p.is_file() and ".maskcore" not in p.relative_to(root).parts}


@pytest.fixture(scope="module")
def vector_folder(tmp_path_factory):
    """The sample's plain folder export (what every archive must extract to)."""
    dst = tmp_path_factory.mktemp("folder")
    assert main(["export", str(VECTOR), str(dst), "--cluster", "inprocess"]) == 0
    return _tree(dst)


def _untar(paths: list[Path], into: Path) -> dict[str, str]:
    import subprocess

    from helpers.oracles import program

    into.mkdir()
    joined = into.parent / (into.name + ".tar")
    joined.write_bytes(b"".join(p.read_bytes() for p in paths))
    done = subprocess.run([program("tar"), "-xif", str(joined)], cwd=into, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    return _tree(into)


@pytest.mark.parametrize("part_size, parts", [("500MB", 1), ("3MB", 5)])
def test_archive_parts_follow_the_part_size_and_are_named_at_the_end(part_size, parts, vector_folder,
                                                                   tmp_path, capsys):
    """16 MB of export: with 500 MB parts one ``vector.tar`` (no ``_part_``); with 3 MB parts, parts
    by size (not by partition: 6 partitions here), each extracted by GNU tar to the folder export;
    the names and the destination are printed, the report lists them and verify passes."""
    out = tmp_path / "o"
    assert main(["export", str(VECTOR), str(out), "--part-size", part_size, "--items-per-partition", "1",
                 "--cluster", "inprocess"]) == 0
    err = capsys.readouterr().err
    names = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))
    expected = ["vector.tar"] if parts == 1 else [f"vector_part_{i:03d}.tar" for i in range(1, parts + 1)]
    assert names == expected
    assert f"archive{f' ({parts} parts)' if parts > 1 else ''}: {', '.join(names)} in {out}/" in err
    import json

    report = json.loads((out / ".maskcore" / "report.json").read_text())
    assert [f["part"] for f in report["archive"]["files"]] == names
    assert _untar([out / n for n in names], tmp_path / "x") == vector_folder
    assert main(["verify", str(out)]) == 0
