"""Incremental archive compaction (maskcore.io.archive_update): the previous parts as they are,
a few members changed, added, grown or deleted; checked against GNU tar / unzip extractions and
against a clean compaction of the same files."""

from __future__ import annotations

import hashlib
import os
import random
import subprocess
from pathlib import Path

import pytest

from helpers.oracles import program
from maskcore.io.archive import TarPartSink, discard_chunks, finalize_archive
from maskcore.io.archive_update import read_previous_archive, update_archive
from maskcore.io.sinks.fsdir import FsspecDirSink
from maskcore.paths import STATE_DIR

PART = 200_000


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _files(seed: int, count: int, biggest: int) -> dict[str, bytes]:
    rng = random.Random(seed)
    return {f"ds/f{i:04d}.bin": rng.randbytes(rng.randint(1, biggest)) for i in range(count)}


def _pack(inner, fmt: str, files: dict[str, bytes], per_partition: int = 7) -> list[dict]:
    """This run's chunks, as workers write them (plan order = path order)."""
    sink, records, items = TarPartSink(inner, PART, fmt), [], sorted(files.items())
    for p in range(0, len(items), per_partition):
        packer = sink.open_partition(f"k{p:05d}", ("ds", items[p][0]))
        for path, data in items[p:p + per_partition]:
            packer.write(path, data)
        records += packer.finish()
    return records


def _stat(root: Path) -> dict[str, tuple]:
    return {p.name: (p.stat().st_mtime_ns, p.stat().st_ino, _sha(p.read_bytes()))
            for p in root.iterdir() if p.is_file()}


def _extract(fmt: str, root: Path, names: list[str], into: Path) -> dict[str, str]:
    """The parts extracted by the real programs (tar on their concatenation, unzip one by one)."""
    into.mkdir()
    if fmt == "tar":
        joined = into.parent / f"{into.name}.tar"
        joined.write_bytes(b"".join((root / n).read_bytes() for n in names))
        done = subprocess.run([program("tar"), "-xf", str(joined)], cwd=into, capture_output=True, text=True,
                              check=False)
        assert done.returncode == 0, done.stderr
    else:
        for n in names:
            done = subprocess.run([program("unzip"), "-q", str(root / n), "-d", str(into)], capture_output=True,
                                  text=True, check=False)
            assert done.returncode == 0, done.stderr
    return {p.relative_to(into).as_posix(): _sha(p.read_bytes()) for p in into.rglob("*") if p.is_file()}


class _Night:
    """A destination with a finished clean compaction of ``files``; ``night(files)`` updates it."""

    def __init__(self, root: Path, fmt: str, files: dict[str, bytes], inner=None) -> None:
        self.root, self.fmt, self.files = root, fmt, dict(files)
        self.inner = inner or FsspecDirSink(str(root))
        self.result = finalize_archive(self.inner, "proj", PART, _pack(self.inner, fmt, files), [], fmt)
        discard_chunks(self.inner)

    def previous(self, verify: bool = False):
        kept, why = read_previous_archive(self.inner, self.result.members_table(), "proj", self.fmt,
                                          sorted(self.files), verify=verify)
        assert kept is not None, why
        return kept

    def night(self, files: dict[str, bytes], repack: bool = False):
        kept = self.previous()
        changed = {p: d for p, d in files.items() if self.files.get(p) != d}
        records = _pack(self.inner, self.fmt, changed) if changed else []
        self.result = update_archive(self.inner, kept, "proj", PART, records, [], sorted(files), self.fmt,
                                     repack=repack)
        discard_chunks(self.inner)
        self.files = dict(files)
        return self.result

    def names(self) -> list[str]:
        return [p["part"] for p in self.result.parts]


def _clean(tmp_path: Path, fmt: str, files: dict[str, bytes]):
    inner = FsspecDirSink(str(tmp_path / "clean"))
    result = finalize_archive(inner, "proj", PART, _pack(inner, fmt, files, 11), [], fmt)
    discard_chunks(inner)
    return tmp_path / "clean", result


@pytest.mark.parametrize("fmt", ["tar", "zip"])
def test_a_night_without_changes_writes_nothing(fmt, tmp_path):
    files = _files(1, 120, 20_000)
    dst = _Night(tmp_path / "d", fmt, files)
    before = _stat(tmp_path / "d")
    result = dst.night(files)
    assert result.written == [] and result.mode == "incremental"
    assert _stat(tmp_path / "d") == before           # same names, bytes, mtimes, inodes
    assert result.summary()["files_kept"] == len(before) > 3


@pytest.mark.parametrize("fmt", ["tar", "zip"])
def test_one_changed_member_rewrites_only_its_part(fmt, tmp_path):
    files = _files(2, 150, 20_000)
    dst = _Night(tmp_path / "d", fmt, files)
    before = _stat(tmp_path / "d")
    part_of = {m["path"]: m["part"] for m in dst.result.members}
    victim = sorted(files)[70]
    smaller = {**files, victim: files[victim][: len(files[victim]) // 2] + b"changed"}
    result = dst.night(smaller)
    assert result.written == [part_of[victim]]
    after = _stat(tmp_path / "d")
    assert {n for n in after if after[n] != before.get(n)} == {part_of[victim]}
    assert _extract(fmt, tmp_path / "d", dst.names(), tmp_path / "x") == {p: _sha(d) for p, d in smaller.items()}
    assert all(p["bytes"] <= PART for p in result.parts)
    for m in result.members:                            # the manifest's offsets are range reads
        with open(tmp_path / "d" / m["part"], "rb") as f:
            f.seek(m["offset"])
            assert _sha(f.read(m["bytes"])) == m["sha256"] == _sha(smaller[m["path"]])


@pytest.mark.parametrize("fmt", ["tar", "zip"])
def test_grown_new_and_deleted_members_over_nights_extract_as_a_clean_run(fmt, tmp_path):
    """Random nights: members grow (moved to the end when their part overflows), new ones
    arrive, some go. Each night: parts within the size, only the parts named as written changed,
    the extraction equals the files, and --repack gives the clean compaction's bytes."""
    rng = random.Random(3)
    files = _files(3, 250, 15_000)
    dst = _Night(tmp_path / "d", fmt, files)
    for night in range(4):
        before = _stat(tmp_path / "d")
        part_of = {m["path"]: m["part"] for m in dst.result.members}
        files = dict(files)
        grown, gone = rng.sample(sorted(files), 2), rng.sample(sorted(files), 1)
        for p in grown:
            files[p] = files[p] + rng.randbytes(rng.randint(1, 30_000))
        for p in gone:
            del files[p]
        for i in range(3):
            files[f"ds/new{night}_{i}.bin"] = rng.randbytes(rng.randint(1, 15_000))
        result = dst.night(files)
        after = _stat(tmp_path / "d")
        assert sorted(n for n in after if after[n] != before.get(n)) == sorted(result.written)
        touched = {part_of[p] for p in grown + gone} | {dst.names()[-1]}
        assert touched <= set(result.written) and len(result.written) <= len(touched) + 1 < len(after)
        assert all(p["bytes"] <= PART for p in result.parts)
        expected = {p: _sha(d) for p, d in files.items()}
        assert _extract(fmt, tmp_path / "d", dst.names(), tmp_path / f"x{night}") == expected
    clean_root, clean = _clean(tmp_path, fmt, files)
    dst.night(files, repack=True)
    assert dst.names() == [p["part"] for p in clean.parts]
    assert {n: (tmp_path / "d" / n).read_bytes() for n in dst.names()} == {
        n: (clean_root / n).read_bytes() for n in dst.names()}
    assert sorted(os.listdir(tmp_path / "d")) == sorted([*dst.names(), STATE_DIR])


def test_same_history_gives_the_same_bytes(tmp_path):
    files = _files(4, 80, 20_000)
    nights = [{**files, "ds/f0003.bin": b"x" * 30_000}, {**files, "ds/zz.bin": b"y" * 5}]
    outs = []
    for run in ("a", "b"):
        dst = _Night(tmp_path / run, "tar", files)
        for f in nights:
            dst.night(f)
        outs.append({n: (tmp_path / run / n).read_bytes() for n in dst.names()})
    assert outs[0] == outs[1]


def test_a_touched_part_is_not_trusted(tmp_path):
    files = _files(5, 60, 20_000)
    dst = _Night(tmp_path / "d", "tar", files)
    dst.previous(verify=True)
    part = tmp_path / "d" / dst.names()[1]
    data = bytearray(part.read_bytes())
    data[600] ^= 1
    part.write_bytes(bytes(data))
    kept, why = read_previous_archive(dst.inner, dst.result.members_table(), "proj", "tar", sorted(files))
    assert kept is None and dst.names()[1] in why
    part.unlink()
    kept, why = read_previous_archive(dst.inner, dst.result.members_table(), "proj", "tar", sorted(files))
    assert kept is None and "missing" in why
    kept, why = read_previous_archive(dst.inner, dst.result.members_table(), "other", "tar", sorted(files))
    assert kept is None and "'other'" in why


def test_on_s3_only_the_changed_part_is_put(s3_server, s3_bucket, tmp_path):
    """On moto's S3 server: a no-op night makes no PUT or COPY; one changed member makes one
    PUT (its part) and reads only ranges of the parts it rewrites."""
    url = f"s3://{s3_bucket}/run"
    inner = FsspecDirSink(url, s3_server.options())
    files = _files(6, 60, 20_000)
    dst = _Night(tmp_path, "tar", files, inner)
    fs = s3_server.filesystem()

    def writes(start: int) -> list[str]:
        return [r for r in s3_server.requests(s3_bucket, start) if r.split()[0] in ("PUT", "POST")
                and "/run/" in r and f"/{STATE_DIR}/" not in r]   # object writes (not bucket calls), no state

    start = len(s3_server.log.lines)
    assert dst.night(files).written == [] and writes(start) == []
    part_of = {m["path"]: m["part"] for m in dst.result.members}
    victim = sorted(files)[30]
    changed = {**files, victim: b"short"}
    start = len(s3_server.log.lines)
    result = dst.night(changed)
    assert result.written == [part_of[victim]]
    assert [r.split()[1].split("?")[0].rsplit("/", 1)[-1] for r in writes(start)] == [part_of[victim]]
    for n in dst.names():
        (tmp_path / n).write_bytes(fs.cat_file(f"{url}/{n}"))
    assert _extract("tar", tmp_path, dst.names(), tmp_path / "x") == {p: _sha(d) for p, d in changed.items()}


def test_a_new_part_takes_the_end_blocks_from_the_old_last_part(tmp_path):
    """Tar parts join into one archive: only the last ends it. A night that opens a new part
    rewrites the old last part without its end blocks (nothing else changed in it), and the
    next quiet night writes nothing."""
    files = _files(7, 40, 20_000)
    dst = _Night(tmp_path / "d", "tar", files)
    old = dst.names()
    assert [p["bytes"] - p["body"] for p in dst.result.parts] == [0] * (len(old) - 1) + [1024]
    grown = {**files, "ds/zz_new.bin": os.urandom(PART - 4096)}   # fits no part but a new one
    result = dst.night(grown)
    assert dst.names() == old + [f"proj.tar.{len(old) + 1:03d}"]
    assert result.written == [old[-1], dst.names()[-1]]
    assert [p["bytes"] - p["body"] for p in result.parts] == [0] * len(old) + [1024]
    assert _extract("tar", tmp_path / "d", dst.names(), tmp_path / "x") == {p: _sha(d) for p, d in grown.items()}
    before = _stat(tmp_path / "d")
    assert dst.night(grown).written == [] and _stat(tmp_path / "d") == before


def test_parts_named_by_an_earlier_version_are_renamed_by_the_next_night(tmp_path, monkeypatch):
    """A destination whose last run was an earlier maskcore version's (``proj_part_NNN.tar``, each ending the
    archive): the next night keeps the members (nothing rendered but the changed item), writes
    every part under its current name and removes the old names; the glob joins only the new ones."""
    from maskcore.io import archive
    monkeypatch.setattr(archive, "archive_files", archive.legacy_archive_files)
    monkeypatch.setattr(archive, "part_ends", lambda n, fmt: [True] * n)
    files = _files(8, 60, 20_000)
    dst = _Night(tmp_path / "d", "tar", files)
    monkeypatch.undo()
    legacy = dst.names()
    assert legacy == [f"proj_part_{i:03d}.tar" for i in range(1, len(legacy) + 1)] and len(legacy) >= 3
    changed = {**files, sorted(files)[5]: b"changed"}
    result = dst.night(changed)
    assert result.mode == "incremental" and result.written == dst.names() == archive.archive_files("proj", len(legacy))
    assert sorted(os.listdir(tmp_path / "d")) == sorted([*dst.names(), STATE_DIR])
    assert sorted(p.name for p in (tmp_path / "d").glob("proj.tar*")) == dst.names()
    assert _extract("tar", tmp_path / "d", dst.names(), tmp_path / "x") == {p: _sha(d) for p, d in changed.items()}
    assert dst.night(changed).written == []
