"""Destinations whose run state an older maskcore kept in ``.maskcore/``: the next run moves it to
``paths.STATE_DIR`` and resumes or skips as it would have; ``verify`` and ``--dry-run`` read it in
place; a live lock there refuses the run. The old layout is made for real: a run's state folder
renamed to ``.maskcore`` (the old code wrote the same files under that name)."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

from helpers import bigger_project, tree
from helpers.sly_project import sdk_project
from maskcore.exec.run import EXIT_OK, EXIT_REFUSED, ExportConfig, run_export
from maskcore.paths import LEGACY_STATE_DIR, STATE_DIR

MACHINE = {"masks": ["machine"]}


def _export(src, dst, client, **kw):
    lines = []
    result = run_export(ExportConfig(str(src), str(dst), archive=False, **kw), log=lines.append, client=client)
    return result, lines


def _to_old_layout(dst: Path) -> None:
    os.rename(dst / STATE_DIR, dst / LEGACY_STATE_DIR)


def _export_tree(root: Path) -> dict[str, str]:
    return {p: h for p, h in tree(root).items() if not p.startswith(LEGACY_STATE_DIR + "/")}


def _mtimes(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*")
            if p.is_file() and p.relative_to(root).parts[0] not in (STATE_DIR, LEGACY_STATE_DIR)}


def test_a_finished_old_layout_destination_skips_every_item_and_loads_in_the_sdk(samples, tmp_path, dask_client, cli):
    src, dst = samples / "vector", tmp_path / "out"
    first, _ = _export(src, dst, dask_client, layout="supervisely-project")
    assert first.report["items"]["written"] == 6
    _to_old_layout(dst)
    before, stamps = _export_tree(dst), _mtimes(dst)
    # read in place, nothing changed
    dry = cli("export", src, dst, "--layout", "supervisely-project", "--dry-run")
    assert dry.returncode == EXIT_OK and "6 unchanged by stamp" in dry.stdout, dry.stdout + dry.stderr
    verified = cli("verify", dst)
    assert verified.returncode == EXIT_OK and "0 extra: clean" in verified.stdout, verified.stdout
    assert not (dst / STATE_DIR).exists()
    second, lines = _export(src, dst, dask_client, layout="supervisely-project")
    assert second.exit_code == EXIT_OK
    assert second.report["items"] == {"total": 6, "written": 0, "unchanged": 6, "failed": 0}
    assert any(f"moved the run state of {LEGACY_STATE_DIR}/" in line for line in lines), lines
    assert _export_tree(dst) == before and _mtimes(dst) == stamps
    assert not (dst / LEGACY_STATE_DIR).exists() and (dst / STATE_DIR / "manifest.parquet").exists()
    assert cli("verify", dst).returncode == EXIT_OK
    assert [ds.name for ds in sdk_project(dst).datasets] == ["ds"]   # and no warning


def test_a_killed_old_layout_run_resumes(samples, tmp_path, dask_client):
    """A run stopped after 2 partitions, its state renamed to the old folder with the lock of a
    dead process and a killed writer's temporary: the next run resumes the finished partitions,
    removes the old folder, and equals a clean run."""
    src = bigger_project(samples, tmp_path / "src", copies=2)   # 12 items, 6 partitions
    dst = tmp_path / "out"

    def stop(n_done):
        if n_done == 2:
            raise KeyboardInterrupt

    try:
        run_export(ExportConfig(str(src), str(dst), items_per_partition=2, archive=False, layout_options=MACHINE),
                   log=lambda m: None, client=None, on_partition=stop)   # in this process: stops at once
    except KeyboardInterrupt:
        pass
    done = len(list((dst / STATE_DIR / "partials").glob("*.parquet")))
    assert done >= 2
    _to_old_layout(dst)
    dead = os.fork()
    if dead == 0:
        os._exit(0)
    os.waitpid(dead, 0)
    old = dst / LEGACY_STATE_DIR
    (old / "lock").write_text(json.dumps({"holder": f"{os.uname().nodename}:{dead}", "run": "old",
                                          "expires": time.time() + 300, "lease_seconds": 300}))
    (old / "tmp").mkdir(exist_ok=True)
    (old / "tmp" / "0123.part").write_bytes(b"half a file")
    resumed, _ = _export(src, dst, dask_client, items_per_partition=2, layout_options=MACHINE)
    assert resumed.exit_code == EXIT_OK
    assert resumed.report["partitions"]["resumed"] >= done and resumed.report["items"]["total"] == 12
    assert not old.exists()
    state = dst / STATE_DIR
    assert sorted(p.relative_to(state).as_posix() for p in state.rglob("*") if p.is_file()) == [
        "manifest.parquet", "report.json"]
    _export(src, tmp_path / "clean", dask_client, items_per_partition=2, layout_options=MACHINE)
    assert tree(dst) == tree(tmp_path / "clean")


def test_a_live_lock_in_the_old_folder_refuses_the_run(samples, tmp_path, dask_client, cli):
    src, dst = samples / "vector", tmp_path / "out"
    _export(src, dst, dask_client)
    _to_old_layout(dst)
    lock = {"holder": "another-host:1", "run": "old", "expires": time.time() + 300, "lease_seconds": 300}
    (dst / LEGACY_STATE_DIR / "lock").write_text(json.dumps(lock))
    before = sorted(p.relative_to(dst).as_posix() for p in dst.rglob("*"))
    ran = cli("export", src, dst)
    assert ran.returncode == EXIT_REFUSED
    assert "older maskcore holds" in ran.stderr and f"{LEGACY_STATE_DIR}/lock" in ran.stderr, ran.stderr
    assert sorted(p.relative_to(dst).as_posix() for p in dst.rglob("*")) == before   # nothing moved or left
    shutil.rmtree(dst)


def test_an_old_layout_destination_on_s3_is_moved_and_skips_every_item(samples, s3_server, s3_bucket, dask_client):
    """The same on moto's S3 server: the move goes through the sink (GET, PUT, DELETE)."""
    fs = s3_server.filesystem()
    cfg = {"source": str(samples / "vector"), "destination": f"s3://{s3_bucket}/out", "archive": False,
           "storage_options": s3_server.options(), "layout": "supervisely-project"}
    assert run_export(ExportConfig(**cfg), log=lambda m: None, client=dask_client).exit_code == EXIT_OK
    new, old = f"{s3_bucket}/out/{STATE_DIR}", f"{s3_bucket}/out/{LEGACY_STATE_DIR}"
    state = {p[len(new):]: fs.cat_file(p) for p in fs.find(new)}
    for rel, data in state.items():
        fs.pipe_file(old + rel, data)
    fs.rm(sorted(new + rel for rel in state))
    again = run_export(ExportConfig(**cfg), log=lambda m: None, client=dask_client)
    assert again.report["items"] == {"total": 6, "written": 0, "unchanged": 6, "failed": 0}
    assert not fs.find(old) and f"{new}/manifest.parquet" in fs.find(new)
