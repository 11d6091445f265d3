"""Split tar archives as the reference app's users extract them: supervisely-ecosystem/export-as-masks
README "How to extract split archives" (docs/reference-notes.md §8). The parts ``<name>.tar.001``, ...
of a real project (the bundled vector sample) at random part sizes are extracted by every recipe of
that README, with the real programs: Linux ``cat '<name>.tar'* > result_archive.tar`` then GNU
``tar -xf``; macOS ``cat ... | bsdtar --options read_concatenated_archives -xf -``; Windows 7-Zip
opening ``<name>.tar.001``. Each part also extracts alone (GNU tar, bsdtar, Python's tarfile). The
Supervisely SDK's own reader of split archives (``sly.fs.unpack_archive(..., is_split=True)``) joins
them too.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from helpers import archive_run, tree
from helpers.oracles import oracle, program
from maskcore.codec.tar import END_OF_ARCHIVE
from maskcore.io.archive import _archive_pattern, archive_files, legacy_archive_files

NAME = "7_pets"
sly = oracle("supervisely")
ENV = {**os.environ, "LC_ALL": "C.UTF-8"}


@pytest.fixture(scope="module")
def unsplit(archive_project, tmp_path_factory) -> bytes:
    """The archive of a run without a part size: ``<name>.tar``."""
    dst = tmp_path_factory.mktemp("unsplit")
    result = archive_run(archive_project, str(dst), NAME, None)
    assert [p["part"] for p in result.parts] == [f"{NAME}.tar"]
    return (dst / f"{NAME}.tar").read_bytes()


def _download(archive_project, part_size, into: Path) -> tuple[list[str], dict]:
    """An archive run at ``part_size`` into ``into`` (what a user downloads: the archive files)."""
    result = archive_run(archive_project, str(into), NAME, part_size)
    return [p["part"] for p in result.parts], result


def _sh(script: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["sh", "-c", script], cwd=cwd, capture_output=True, text=True, env=ENV, check=False)


def _run(args: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, env=ENV, check=False)


@pytest.mark.parametrize("seed", [1, 2])
def test_every_recipe_of_the_reference_extracts_every_file(seed, archive_project, unsplit, folder_export, tmp_path):
    part_size = random.Random(seed).randint(200_000, 3_000_000)
    dl = tmp_path / "dl"
    names, result = _download(archive_project, part_size, dl)
    assert len(names) >= 5 and names == archive_files(NAME, len(names)) == sorted(names), (part_size, names)

    # Linux (GNU tar), as the README writes it but with ';' for its '|' (see reference-notes §8)
    linux = tmp_path / "linux"
    linux.mkdir()
    done = _sh(f"cat '{NAME}.tar'* > result_archive.tar; {program('tar')} -xf result_archive.tar -C {linux}", dl)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert tree(linux) == folder_export, part_size
    # macOS (bsdtar)
    mac = tmp_path / "mac"
    mac.mkdir()
    done = _sh(f"cat {NAME}.tar* | {program('bsdtar')} --options read_concatenated_archives -xf - -C {mac}", dl)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert tree(mac) == folder_export
    # Windows (7-Zip opens the first part and finds the others)
    (dl / "result_archive.tar").unlink()
    done = _run([program("7zz"), "x", "-y", f"-o{tmp_path / 'win'}", str(dl / names[0])])
    assert done.returncode == 0 and "Everything is Ok" in done.stdout, done.stdout + done.stderr
    assert tree(tmp_path / "win") == folder_export

    # the joined parts are the unsplit archive, byte for byte
    joined = b"".join((dl / n).read_bytes() for n in names)
    assert joined == unsplit
    # only the last part ends the archive; each part is its members (no padding to a record)
    lengths = {}
    for m in result.members:
        lengths[m["part"]] = lengths.get(m["part"], 0) + m["length"]
    assert [p["bytes"] for p in result.parts] == [lengths[n] for n in names[:-1]] + [lengths[names[-1]] + 1024]
    assert all(p["bytes"] <= part_size or p["oversize"] for p in result.parts)


def test_the_sdk_unpacks_the_parts_from_the_first_one(archive_project, folder_export, tmp_path):
    """``supervisely.io.fs.unpack_archive(<name>.tar.001, dir, is_split=True)`` (SDK 6.74): it joins,
    in name order, every file of the first part's folder whose name starts with ``<name>`` into
    ``combined.tar``, unpacks it, deletes it, and removes junk files from the result. Our parts in
    the folder a user downloads them to give every file of the export."""
    names, _ = _download(archive_project, 900_000, tmp_path / "dl")
    assert len(names) >= 3
    sly.fs.unpack_archive(str(tmp_path / "dl" / names[0]), str(tmp_path / "out"), is_split=True)
    assert tree(tmp_path / "out") == folder_export
    left = sorted(p.name for p in (tmp_path / "dl").iterdir() if p.name != ".maskcore-meta")
    assert left == sorted(names)  # combined.tar removed, the parts kept


def test_each_part_extracts_alone(archive_project, folder_export, tmp_path):
    """Every part is whole members: GNU tar, bsdtar and tarfile read it on its own, silently
    (a part without end blocks ends at a member boundary), and together they give every file.
    7-Zip extracts every member of a part too, but says "Unexpected end of archive" (exit status
    2) for a part without end blocks; opened as ``.tar.001`` it joins the parts (see above)."""
    names, result = _download(archive_project, 700_000, tmp_path / "dl")
    members = {}
    for m in result.members:
        members.setdefault(m["part"], []).append(m["path"])
    for tool in ("gnu", "bsd", "py"):
        (tmp_path / tool).mkdir()
    for n in names:
        part = str(tmp_path / "dl" / n)
        for tool, args in (("gnu", [program("tar"), "-xf", part]), ("bsd", [program("bsdtar"), "-xf", part])):
            done = _run(args, cwd=tmp_path / tool)
            assert done.returncode == 0 and done.stderr == "", (tool, n, done.stderr)
        with tarfile.open(part) as t:
            assert t.getnames() == members[n]
            t.extractall(tmp_path / "py", filter="data")
        listing = _run([program("tar"), "-tf", part])
        assert listing.stdout.splitlines() == members[n], n
        shutil.copyfile(part, tmp_path / "alone.tar")   # not .001: 7-Zip would join the parts
        done = _run([program("7zz"), "x", "-y", f"-o{tmp_path / '7z'}", str(tmp_path / "alone.tar")])
        last = n == names[-1]
        assert done.returncode == (0 if last else 2), done.stdout + done.stderr
        assert last or "Unexpected end of archive" in done.stdout + done.stderr
    for tool in ("gnu", "bsd", "py", "7z"):
        assert tree(tmp_path / tool) == folder_export, tool


def test_parts_that_each_end_the_archive_lose_files_in_the_linux_recipe(archive_project, tmp_path):
    """Why only the last part ends the archive: with end blocks on every part (earlier maskcore
    parts) GNU tar stops at the first part's end blocks, exit status 0, the rest silently lost."""
    names, result = _download(archive_project, 700_000, tmp_path / "dl")
    for n in names[:-1]:
        with open(tmp_path / "dl" / n, "ab") as f:
            f.write(END_OF_ARCHIVE)
    (tmp_path / "x").mkdir()
    done = _sh(f"cat '{NAME}.tar'* > result_archive.tar; tar -xf result_archive.tar -C {tmp_path / 'x'}",
               tmp_path / "dl")
    assert done.returncode == 0
    assert sorted(tree(tmp_path / "x")) == sorted(m["path"] for m in result.members if m["part"] == names[0])


def test_part_names_sort_as_the_shell_globs_them():
    assert archive_files("p", None) == ["p.tar"] and archive_files("p", None, "zip") == ["p.zip"]
    assert archive_files("p", 3) == ["p.tar.001", "p.tar.002", "p.tar.003"]    # the SDK's zfill(3)
    assert archive_files("p", 2, "zip") == ["p_part_001.zip", "p_part_002.zip"]  # independent zips
    for n in (999, 1000, 12345):
        names = archive_files("p", n)
        assert names == sorted(names) and len(set(map(len, names))) == 1
        assert names[0] == "p.tar." + "1".zfill(max(3, len(str(n))))
    assert archive_files("p", 1000)[0] == "p.tar.0001"   # every number as wide as the largest
    pattern = _archive_pattern("p", [".tar", ".zip"])
    for name in [*archive_files("p", 1000), *legacy_archive_files("p", 3), *archive_files("p", 3, "zip"), "p.tar"]:
        assert pattern.fullmatch(name), name
    for other in ("p.tar.bak", "p.tar.01", "q.tar.001", "p_part_1.tar", "p.tar.001.tmp"):
        assert not pattern.fullmatch(other), other


def test_an_upgraded_destination_keeps_no_part_the_glob_would_join(archive_project, folder_export, tmp_path):
    """A destination holding an earlier maskcore's parts (``_part_NNN.tar``, each ending the archive) and
    a single ``.tar``: the next run leaves only its own parts, so ``cat '<name>.tar'*`` joins them."""
    root = tmp_path / "dst"
    root.mkdir()
    for stale in [*legacy_archive_files(NAME, 4), f"{NAME}.tar", f"{NAME}.tar.0001"]:
        (root / stale).write_bytes(b"from an earlier run")
    names, _ = _download(archive_project, 1_500_000, root)
    assert sorted(p.name for p in root.iterdir() if not p.name.startswith(".")) == names
    assert sorted(p.name for p in root.glob(f"{NAME}.tar*")) == names
    (tmp_path / "x").mkdir()
    done = _sh(f"cat '{NAME}.tar'* | tar -xf - -C {tmp_path / 'x'}", root)
    assert done.returncode == 0, done.stderr
    assert tree(tmp_path / "x") == folder_export
