"""Nightly use: incremental runs, deleted items, resume after a kill, one run per destination,
and a worker killed mid-job. Real Dask worker processes throughout."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import signal
import tarfile
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from helpers import bigger_project, tree
from helpers.faults import export_args, interrupt, partials, read_report
from maskcore.errors import RefusedError
from maskcore.exec.run import EXIT_OK, EXIT_REFUSED, ExportConfig, run_export
from maskcore.exec.state import LOCK, PARTIALS


def _mtimes(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns
            for p in root.rglob("*") if p.is_file() and ".maskcore-meta" not in p.parts}


def _export(src, dst, client, **kw):
    return run_export(ExportConfig(str(src), str(dst), **kw), log=lambda m: None, client=client)


@pytest.fixture
def project(tmp_path, samples) -> Path:
    src = tmp_path / "src"
    shutil.copytree(samples / "vector", src)
    return src


def test_second_run_with_nothing_changed_writes_nothing(project, tmp_path, dask_client):
    dst = tmp_path / "out"
    first = _export(project, dst, dask_client)
    assert first.report["items"]["written"] == 6
    before, stamps = tree(dst), _mtimes(dst)
    second = _export(project, dst, dask_client)
    assert second.exit_code == EXIT_OK
    assert second.report["items"] == {"total": 6, "written": 0, "unchanged": 6, "failed": 0}
    assert second.report["bytes_written"] == 0 and second.report["stale_files_removed"] == 0
    assert tree(dst) == before and _mtimes(dst) == stamps
    # the manifest still describes every file, and the fingerprints did not move
    assert second.manifest.column("outputs").to_pylist() == first.manifest.column("outputs").to_pylist()
    assert second.report["input_fingerprint"] == first.report["input_fingerprint"]


def test_changed_and_deleted_items(project, tmp_path, dask_client):
    dst = tmp_path / "out"
    _export(project, dst, dask_client)
    # dog1 loses its second polygon; cat1 is deleted from the project
    ann = json.loads((project / "ds/ann/dog1.jpg.json").read_text())
    ann["objects"] = ann["objects"][:1]
    (project / "ds/ann/dog1.jpg.json").write_text(json.dumps(ann))
    (project / "ds/ann/cat1.jpg.json").unlink()
    (project / "ds/img/cat1.jpg").unlink()
    run = _export(project, dst, dask_client)
    assert run.report["items"] == {"total": 5, "written": 1, "unchanged": 4, "failed": 0}
    assert not (dst / "ds/masks_instances/dog1/dog2_01.png").exists()
    assert not (dst / "ds/masks_machine/cat1.png").exists() and not (dst / "ds/img/cat1.jpg").exists()
    # the result equals a fresh export of the changed project
    fresh = tmp_path / "fresh"
    _export(project, fresh, dask_client)
    assert tree(dst) == tree(fresh)


def test_config_change_renders_everything(project, tmp_path, dask_client):
    dst = tmp_path / "out"
    _export(project, dst, dask_client)
    run = _export(project, dst, dask_client, layout_options={"thickness": 5})
    assert run.report["items"]["written"] == 6
    fresh = tmp_path / "fresh"
    _export(project, fresh, dask_client, layout_options={"thickness": 5})
    assert tree(dst) == tree(fresh)


def test_second_run_on_a_locked_destination_is_refused(project, tmp_path, dask_client, cli):
    dst = tmp_path / "out"
    (dst / ".maskcore-meta").mkdir(parents=True)
    (dst / LOCK).write_text(json.dumps({"holder": f"other-host:{os.getpid()}", "run": "r1",
                                        "expires": time.time() + 3600, "lease_seconds": 3600}))
    with pytest.raises(RefusedError, match="another maskcore run holds"):
        _export(project, dst, dask_client)
    proc = cli("export", project, dst)
    assert proc.returncode == EXIT_REFUSED and "lock" in proc.stderr
    assert not (dst / "ds").exists()


def test_killed_run_resumes_without_redoing_finished_partitions(samples, tmp_path, cli):
    """``python -m maskcore`` SIGKILLed with its workers (its process group, as a killed cron job);
    the next run (in-process, on the session's workers) resumes the finished partitions."""
    src = bigger_project(samples, tmp_path / "src", copies=4)  # 24 items
    dst = tmp_path / "out"
    args = export_args(src, dst, "--masks", "machine,human")
    interrupt(args, dst, after=3)
    done = len(partials(dst))
    assert 3 <= done < 24 and (dst / LOCK).exists()
    resumed = cli(*args)
    assert resumed.returncode == EXIT_OK, resumed.stderr
    report = read_report(dst)
    assert report["partitions"]["resumed"] >= done and report["items"]["total"] == 24
    assert not (dst / LOCK).exists() and not list((dst / PARTIALS).glob("*"))
    assert not list((dst / ".maskcore-meta/tmp").iterdir())  # the killed writers' temporaries are gone
    clean = tmp_path / "clean"
    cli(*export_args(src, clean, "--masks", "machine,human")).check_returncode()
    assert tree(dst) == tree(clean)


def test_worker_killed_mid_job_changes_nothing(samples, tmp_path):
    from distributed import Client, LocalCluster

    src = bigger_project(samples, tmp_path / "src", copies=4)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        run_export(ExportConfig(str(src), str(tmp_path / "clean"), items_per_partition=1),
                   log=lambda m: None, client=client)
        pids = client.run(os.getpid)
        victim = sorted(pids.values())[0]
        killed = []

        def kill_once(n_done):
            if n_done == 2 and not killed:
                os.kill(victim, signal.SIGKILL)
                killed.append(victim)

        run = run_export(ExportConfig(str(src), str(tmp_path / "killed"), items_per_partition=1),
                         log=lambda m: None, client=client, on_partition=kill_once)
        assert killed and run.exit_code == EXIT_OK and run.report["items"]["written"] == 24
        at_return = tree(tmp_path / "killed")
        # Nothing may write into the destination once the run has returned. (Futures kept after
        # their results were taken made Dask recompute the victim's lost results in the
        # background: partials reappeared, and a write racing the end of the run removed an
        # item's files in CI.)
        time.sleep(3)
        assert not list((tmp_path / "killed" / PARTIALS).glob("*")), "a partition ran after the run ended"
        assert tree(tmp_path / "killed") == at_return
    a, b = tree(tmp_path / "killed"), tree(tmp_path / "clean")
    differing = sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))
    assert not differing, f"{len(differing)} of {len(a | b)} files differ: {differing[:20]}"
    manifest = pq.read_table(tmp_path / "killed/.maskcore-meta/manifest.parquet")
    assert manifest.num_rows == 24 and set(manifest.column("status").to_pylist()) == {"ok"}


# --- change stamps: unchanged items are not read (maskcore/exec/stamps.py) -------------------------

def test_change_stamp_trusts_content_fields_at_once_and_times_only_once_settled():
    from maskcore.io.storage import STAMP_SETTLE_SECONDS, change_stamp

    now = time.time()
    old, fresh = now - STAMP_SETTLE_SECONDS - 1, now - STAMP_SETTLE_SECONDS / 2
    local = {"size": 5, "mtime": old, "created": old, "ino": 7, "type": "file"}
    assert change_stamp(local, now) == f"mtime={old};created={old};ino=7;size=5"
    assert change_stamp({**local, "created": fresh}, now) is None  # racy: changed within the window
    assert change_stamp({**local, "mtime": fresh}, now) is None
    assert change_stamp({"size": 5, "type": "file"}, now) is None   # nothing to go by: hashed
    s3 = {"ETag": '"abc"', "LastModified": dt.datetime.now(dt.timezone.utc), "size": 5}
    assert change_stamp(s3, now).startswith('ETag="abc";LastModified=')  # content-derived: trusted at once
    assert change_stamp({**s3, "ETag": '"abd"'}, now) != change_stamp(s3, now)


def test_local_stamps_skip_unchanged_items_and_catch_same_size_edits(project, tmp_path, monkeypatch):
    """In this process (a small run): the settle window made short so the test need not wait 2 s."""
    from maskcore.io import storage

    monkeypatch.setattr(storage, "STAMP_SETTLE_SECONDS", 0.3)
    def settle():
        time.sleep(0.35)
    dst = tmp_path / "out"
    settle()
    first = _export(project, dst, None)
    assert first.report["items"]["written"] == 6 and first.report["stamps"]["hashed"] == 6
    assert all(first.manifest.column("ann_stamp").to_pylist())
    before = tree(dst)
    second = _export(project, dst, None)
    assert second.report["stamps"] == {"verify": False, "unchanged_by_stamp": 6, "hashed": 0}
    assert second.report["items"] == {"total": 6, "written": 0, "unchanged": 6, "failed": 0}
    assert tree(dst) == before
    assert second.manifest.column("outputs").to_pylist() == first.manifest.column("outputs").to_pylist()
    assert second.report["input_fingerprint"] == first.report["input_fingerprint"]

    ann = project / "ds/ann/dog1.jpg.json"
    os.utime(ann)  # a new stamp, the same bytes: hashed, recorded with the new stamp, not rendered
    settle()
    third = _export(project, dst, None)
    assert third.report["stamps"]["hashed"] == 1 and third.report["items"]["written"] == 0
    assert _export(project, dst, None).report["stamps"]["unchanged_by_stamp"] == 6

    # the same size, the same mtime (restored to the nanosecond): the ctime still tells
    stat = ann.stat()
    text = ann.read_text()
    edited = text.replace('"dog"', '"cat"', 1) if '"dog"' in text else text.replace("1", "2", 1)
    assert len(edited) == len(text) and edited != text
    ann.write_text(edited)
    os.utime(ann, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    fourth = _export(project, dst, None)
    assert fourth.report["items"]["written"] == 1
    fresh = tmp_path / "fresh"
    _export(project, fresh, None)
    assert tree(dst) == tree(fresh)

    # an edit right after a run (the same clock tick) is caught: fresh files get no stamp
    ann.write_text(text)
    assert _export(project, dst, None).report["items"]["written"] == 1
    ann.write_text(edited)
    assert _export(project, dst, None).report["items"]["written"] == 1


def _tiny_project(fs, root: str, n: int) -> dict[str, bytes]:
    """A Supervisely project of ``n`` 12x16 items (one polygon each) written to ``fs`` at ``root``."""
    meta = {"classes": [{"title": "thing", "shape": "polygon", "color": "#FF0000"}], "tags": []}
    files = {f"{root}/meta.json": json.dumps(meta).encode()}
    for i in range(n):
        ann = {"size": {"height": 12, "width": 16}, "tags": [], "objects": [{
            "classTitle": "thing", "geometryType": "polygon", "tags": [],
            "points": {"exterior": [[1, 1], [1 + i % 13, 2], [3, 1 + i % 10]], "interior": []}}]}
        files[f"{root}/ds/ann/im{i:04d}.png.json"] = json.dumps(ann).encode()
        files[f"{root}/ds/img/im{i:04d}.png"] = f"not decoded {i}".encode()
    fs.pipe(files)
    return files


def _body_gets(s3_server, bucket: str, start: int, prefix: str) -> list[str]:
    """GETs of object bodies under ``prefix`` (listings are ``GET /bucket?list-type=2...``)."""
    return sorted(r.split()[1] for r in s3_server.requests(bucket, start)
                  if r.startswith("GET ") and r.split()[1].startswith(f"/{bucket}/{prefix}"))


def test_no_op_night_on_s3_reads_no_object_body(s3_server, s3_bucket, dask_client):
    """40 items on moto's S3 server, requests counted on the server side (20,000 items:
    benchmarks/nightly_bench.py, BENCHMARKS.md)."""
    n = 40
    fs = s3_server.filesystem()
    files = _tiny_project(fs, f"{s3_bucket}/in/proj", n)
    cfg = {"source": f"s3://{s3_bucket}/in/proj", "destination": f"s3://{s3_bucket}/out",
           "storage_options": s3_server.options(), "layout_options": {"masks": ["machine"]}}
    first = run_export(ExportConfig(**cfg), log=lambda m: None, client=dask_client)
    assert first.exit_code == EXIT_OK and first.report["items"]["written"] == n
    out = {p: fs.cat_file(p) for p in fs.find(f"{s3_bucket}/out") if "/.maskcore-meta/" not in p}

    start = len(s3_server.log.lines)
    night = run_export(ExportConfig(**cfg), log=lambda m: None, client=dask_client)
    assert night.report["items"] == {"total": n, "written": 0, "unchanged": n, "failed": 0}
    assert night.report["stamps"]["unchanged_by_stamp"] == n
    assert _body_gets(s3_server, s3_bucket, start, "in/") == [f"/{s3_bucket}/in/proj/meta.json"]
    puts = [r for r in s3_server.requests(s3_bucket, start) if r.startswith("PUT")]
    assert not [r for r in puts if "/out/.maskcore-meta/" not in r]

    changed = f"{s3_bucket}/in/proj/ds/ann/im0007.png.json"
    fs.pipe_file(changed, files[f"{s3_bucket}/in/proj/ds/ann/im0030.png.json"])
    start = len(s3_server.log.lines)
    one = run_export(ExportConfig(**cfg), log=lambda m: None, client=dask_client)
    assert one.report["items"] == {"total": n, "written": 1, "unchanged": n - 1, "failed": 0}
    assert _body_gets(s3_server, s3_bucket, start, "in/proj/ds/") == [
        f"/{s3_bucket}/in/proj/ds/ann/im0007.png.json", f"/{s3_bucket}/in/proj/ds/img/im0007.png"]
    now = {p: fs.cat_file(p) for p in fs.find(f"{s3_bucket}/out") if "/.maskcore-meta/" not in p}
    assert [p for p in now if now[p] != out.get(p)] == [f"{s3_bucket}/out/ds/ann/im0007.png.json",
                                                         f"{s3_bucket}/out/ds/masks_machine/im0007.png"]

    start = len(s3_server.log.lines)
    verified = run_export(ExportConfig(**cfg, verify=True), log=lambda m: None, client=dask_client)
    assert verified.report["items"]["unchanged"] == n and verified.report["stamps"]["hashed"] == n
    assert len(_body_gets(s3_server, s3_bucket, start, "in/proj/ds/")) == 2 * n


def test_resume_is_independent_of_the_worker_count(samples, tmp_path, cli):
    """Partitions come from the item count and the target size (exec/plan.py), never the cluster:
    a run killed on 3 workers resumes every finished partition on 1 (before: 0 of them)."""
    src = bigger_project(samples, tmp_path / "src", copies=4)  # 24 items: 8 partitions of 3
    dst = tmp_path / "out"
    args = ["export", str(src), str(dst), "--masks", "machine,human", "--items-per-partition", "3"]
    interrupt([*args, "--workers", "3"], dst, after=3)
    done = {p.name for p in partials(dst)}
    assert 3 <= len(done) < 8
    resumed = cli(*args, "--workers", "1")
    assert resumed.returncode == EXIT_OK, resumed.stderr
    report = read_report(dst)
    assert report["partitions"] == {"total": 8, "resumed": len(done), "run": 8 - len(done), "unchanged_by_stamp": 0}
    clean = tmp_path / "clean"
    cli("export", str(src), str(clean), "--masks", "machine,human", "--items-per-partition", "3").check_returncode()
    assert tree(dst) == tree(clean)


def _tar(project: Path, path: Path) -> Path:
    with tarfile.open(path, "w") as tar:
        tar.add(project, arcname=project.name)
    return path


def test_tar_items_unchanged_by_the_tars_stamp(project, tmp_path, monkeypatch):
    """A Supervisely project read from a tar: its members are stamped by the tar's own stamp and their
    offsets, so a quiet night reads no member and a rewritten tar hashes every member again (only
    the changed one is rendered)."""
    from maskcore.io import storage

    monkeypatch.setattr(storage, "STAMP_SETTLE_SECONDS", 0.2)
    archive = _tar(project, tmp_path / "project.tar")
    time.sleep(0.25)
    dst = tmp_path / "out"
    first = _export(archive, dst, None)
    assert first.report["stamps"] == {"verify": False, "unchanged_by_stamp": 0, "hashed": 6}
    before = tree(dst)
    quiet = _export(archive, dst, None)
    assert quiet.report["stamps"] == {"verify": False, "unchanged_by_stamp": 6, "hashed": 0}
    assert quiet.report["items"]["written"] == 0 and tree(dst) == before

    ann = project / "ds/ann/dog1.jpg.json"
    doc = json.loads(ann.read_text())
    doc["objects"] = doc["objects"][:-1]              # one label less in one item
    ann.write_text(json.dumps(doc))
    _tar(project, archive)
    time.sleep(0.25)
    night = _export(archive, dst, None)
    assert night.report["stamps"] == {"verify": False, "unchanged_by_stamp": 0, "hashed": 6}
    assert night.report["items"]["written"] == 1
    clean = _export(archive, tmp_path / "clean", None)
    assert tree(dst) == tree(tmp_path / "clean") and clean.exit_code == EXIT_OK


def test_coco_items_unchanged_by_stamp(tmp_path, monkeypatch):
    """A COCO file's annotations are stamped by their own sha256, images by the listing's stamps."""
    from maskcore.io import storage

    monkeypatch.setattr(storage, "STAMP_SETTLE_SECONDS", 0.2)
    src = tmp_path / "coco"
    shutil.copytree(Path(__file__).resolve().parents[1] / "data/coco_labelme", src)
    time.sleep(0.25)
    dst = tmp_path / "out"
    first = _export(src / "annotations.json", dst, None)
    n = first.report["items"]["total"]
    assert first.report["items"]["written"] == n > 1
    assert _export(src / "annotations.json", dst, None).report["stamps"]["unchanged_by_stamp"] == n
    doc = json.loads((src / "annotations.json").read_text())
    moved = next(a for a in doc["annotations"] if isinstance(a.get("segmentation"), list) and a["segmentation"])
    moved["segmentation"][0][0] += 1  # one polygon of one image moves by a pixel
    (src / "annotations.json").write_text(json.dumps(doc))
    run = _export(src / "annotations.json", dst, None)
    assert run.report["stamps"] == {"verify": False, "unchanged_by_stamp": n - 1, "hashed": 1}
    assert run.report["items"]["written"] == 1
