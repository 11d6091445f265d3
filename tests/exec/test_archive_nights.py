"""Nightly archive runs (issue 17.4): a no-op night keeps every part (no write), a night with a
changed item rewrites only the part holding its files, the parts extract (GNU tar) to a clean
run's files, --repack gives a clean run's bytes, and a run killed while publishing its parts
leaves the old set for the next run."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from helpers import REPO
from helpers.oracles import program
from maskcore.exec.run import ExportConfig, run_export
from maskcore.exec.verify import verify_destination
from maskcore.io.archive_publish import recover_publish
from maskcore.io.sinks.fsdir import FsspecDirSink
from maskcore.paths import STATE_DIR

PART = 12_000
ITEMS = 48
MACHINE = {"masks": "machine"}   # the images are copied, not decoded: a few bytes each


def _write_item(src: Path, i: int, shift: int = 0) -> None:
    ann = {"size": {"height": 12 + i % 5, "width": 16}, "tags": [], "objects": [{
        "classTitle": "thing", "geometryType": "polygon", "tags": [],
        "points": {"exterior": [[1, 1], [1 + (i + shift) % 13, 2], [3, 1 + (i * 7 + shift) % 10]], "interior": []}}]}
    (src / f"ds/ann/im{i:04d}.png.json").write_text(json.dumps(ann))
    (src / f"ds/img/im{i:04d}.png").write_bytes(f"image {i} ".encode() * (1 + i % 40))


@pytest.fixture
def project(tmp_path) -> Path:
    src = tmp_path / "src"
    (src / "ds/ann").mkdir(parents=True)
    (src / "ds/img").mkdir()
    (src / "meta.json").write_text(json.dumps({"classes": [
        {"title": "thing", "shape": "polygon", "color": "#FF0000"}], "tags": []}))
    for i in range(ITEMS):
        _write_item(src, i)
    return src


def _cfg(src: Path, dst: Path, **kw) -> ExportConfig:
    return ExportConfig(str(src), str(dst), part_size=PART, archive_name="proj", cluster="inprocess",
                        items_per_partition=8, layout_options=MACHINE, **kw)


def _run(src: Path, dst: Path, **kw):
    result = run_export(_cfg(src, dst, **kw), log=lambda m: None)
    assert result.exit_code == 0
    return result


def _parts(dst: Path) -> dict[str, tuple]:
    return {p.name: (p.stat().st_mtime_ns, p.stat().st_ino, hashlib.sha256(p.read_bytes()).hexdigest())
            for p in sorted(dst.glob("proj.tar*"))}


def _extract(dst: Path, into: Path) -> dict[str, str]:
    into.mkdir()
    joined = into.parent / f"{into.name}.tar"
    joined.write_bytes(b"".join(p.read_bytes() for p in sorted(dst.glob("proj.tar*"))))
    done = subprocess.run([program("tar"), "-xf", str(joined)], cwd=into, capture_output=True, text=True,
                          check=False)
    assert done.returncode == 0, done.stderr
    return {p.relative_to(into).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in into.rglob("*") if p.is_file()}


def _members(result) -> list[dict]:
    return pq.read_table(Path(result.report["destination"]) / STATE_DIR / "archive_manifest.parquet").to_pylist()


def test_nights_keep_unchanged_parts_and_extract_as_a_clean_run(project, tmp_path):
    dst = tmp_path / "out"
    first = _run(project, dst)
    assert len(first.report["archive"]["files"]) >= 5
    before = _parts(dst)

    quiet = _run(project, dst)                                   # nothing changed
    assert quiet.report["items"] == {"total": ITEMS, "written": 0, "unchanged": ITEMS, "failed": 0}
    assert quiet.report["archive"]["files_written"] == [] and quiet.report["archive"]["bytes_written"] == 0
    assert _parts(dst) == before                                 # same names, bytes, mtimes, inodes
    assert verify_destination(FsspecDirSink(str(dst))).clean

    holding = {m["part"] for m in _members(quiet) if "im0020" in m["path"]}
    _write_item(project, 20, shift=5)                            # one item changed
    night = _run(project, dst)
    assert night.report["items"]["written"] == 1
    assert night.report["archive"]["files_written"] == sorted(holding)
    after = _parts(dst)
    assert {n for n in after if after[n] != before.get(n)} == holding
    assert verify_destination(FsspecDirSink(str(dst))).clean

    clean = tmp_path / "clean"
    _run(project, clean)
    assert _extract(dst, tmp_path / "x") == _extract(clean, tmp_path / "y")

    repacked = _run(project, dst, repack=True)                   # the clean run's layout and bytes
    assert repacked.report["archive"]["mode"] == "repack"
    assert {n: v[2] for n, v in _parts(dst).items()} == {n: v[2] for n, v in _parts(clean).items()}


_KILLER = textwrap.dedent("""
    import os, signal, sys
    from maskcore.exec.run import ExportConfig, run_export
    from maskcore.io import archive

    def dying(real):
        def commit(self):
            real(self)
            target = getattr(self, "relpath", None) or getattr(self, "path", "")
            if "/{state}/" not in "/" + target and ".tar" in os.path.basename(target):   # proj.tar.NNN
                os.kill(os.getpid(), signal.SIGKILL)     # after the first archive file is replaced
        return commit

    archive._Staging.commit = dying(archive._Staging.commit)
    archive._Linked.commit = dying(archive._Linked.commit)
    src, dst = sys.argv[1:3]
    run_export(ExportConfig(src, dst, part_size={part}, archive_name="proj", cluster="inprocess",
                            items_per_partition=8, layout_options={{"masks": "machine"}}), log=print)
""")


def test_a_run_killed_while_publishing_leaves_the_old_parts(project, tmp_path):
    """The process is killed right after it replaced its first archive file (of three to write):
    the old set comes back (recover_publish, as the next run starts), then the next run
    publishes the new set, which extracts as a clean run's."""
    dst = tmp_path / "out"
    first = _run(project, dst)
    before = _parts(dst)
    parts = sorted(before)
    members = _members(first)
    for item in (next(m["path"] for m in members if m["part"] == p and "/img/" in m["path"]) for p in parts[1:3]):
        _write_item(project, int(item.split("im")[-1][:4]), shift=3)
    script = tmp_path / "killer.py"
    script.write_text(_KILLER.format(part=PART, state=STATE_DIR))
    done = subprocess.run([sys.executable, str(script), str(project), str(dst)], cwd=REPO, capture_output=True,
                          text=True, timeout=300, check=False)
    assert done.returncode == -9, done.stderr
    mixed = _parts(dst)
    assert mixed != before and not verify_destination(FsspecDirSink(str(dst))).clean
    committed = json.loads((dst / STATE_DIR / "report.json").read_text())   # still the first run's
    assert committed["input_fingerprint"] == first.report["input_fingerprint"]

    run_id = pq.read_schema(dst / STATE_DIR / "manifest.parquet").metadata[b"maskcore.run_id"].decode()
    assert "restored" in recover_publish(FsspecDirSink(str(dst)), run_id)
    assert _parts(dst) == before                                 # the old set, byte for byte (and stamps)
    assert verify_destination(FsspecDirSink(str(dst))).clean

    again = _run(project, dst)
    assert again.report["archive"]["mode"] == "incremental" and len(again.report["archive"]["files_written"]) == 2
    clean = tmp_path / "clean"
    _run(project, clean)
    assert _extract(dst, tmp_path / "x") == _extract(clean, tmp_path / "y")


def test_a_no_op_night_on_s3_writes_no_archive_file(project, s3_server, s3_bucket):
    url = f"s3://{s3_bucket}/out"
    cfg = ExportConfig(str(project), url, part_size=PART, archive_name="proj", cluster="inprocess",
                       items_per_partition=8, storage_options=s3_server.options(), layout_options=MACHINE)
    assert run_export(cfg, log=lambda m: None).exit_code == 0
    start = len(s3_server.log.lines)
    quiet = run_export(cfg, log=lambda m: None)
    assert quiet.exit_code == 0 and quiet.report["archive"]["files_written"] == []
    writes = [r for r in s3_server.requests(s3_bucket, start) if r.split()[0] in ("PUT", "POST", "DELETE")
              and f"/{STATE_DIR}/" not in r and "/out/" in r]
    assert writes == []
    assert verify_destination(FsspecDirSink(url, s3_server.options())).clean
