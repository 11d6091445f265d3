"""Fault scenarios of issue 19: killed drivers, a full disk, edits while a run is down, damaged
state. The fault is delivered for real: the interrupted run is ``python -m maskcore`` in a
subprocess with its own Dask worker processes, killed by PID (a signal, an injected ENOSPC in
every one of its processes), or bytes are written over a state file. The runs before and after
the fault, ``maskcore verify`` and the clean reference runs are the same command line run
in-process on the session's worker processes (the ``cli`` fixture); the destination is then
checked with ``maskcore verify`` and against a clean run.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from helpers import bigger_project, tree
from helpers.faults import (
    export_args,
    interrupt,
    kill_group,
    partials,
    read_report,
    start,
    wait_for_partials,
)
from helpers.oracles import in_ci, program

NIGHTLY = ("--masks", "machine,human")


def _assert_same(cli, dst: Path, clean: dict[str, str]) -> None:
    a = tree(dst)
    differing = sorted(k for k in a.keys() | clean.keys() if a.get(k) != clean.get(k))
    assert not differing, f"{len(differing)} of {len(a | clean)} files differ from a clean run: {differing[:10]}"
    check = cli("verify", dst)
    assert check.returncode == 0, check.stdout + check.stderr


@pytest.fixture(scope="module")
def project(samples, tmp_path_factory) -> Path:
    """24 items, read by every test of the module (a test that edits items makes its own copy)."""
    return bigger_project(samples, tmp_path_factory.mktemp("faults") / "src", copies=4)


@pytest.fixture(scope="module")
def clean(cli, tmp_path_factory):
    """``clean(SRC, *OPTIONS)``: the tree of a clean export of SRC with OPTIONS, made once per module."""
    done: dict[tuple, dict[str, str]] = {}

    def get(src: Path, *options: str) -> dict[str, str]:
        key = (str(src), options)
        if key not in done:
            dst = tmp_path_factory.mktemp("clean") / "out"
            cli(*export_args(src, dst, *options)).check_returncode()
            done[key] = tree(dst)
        return done[key]
    return get


def test_killed_run_with_other_options_then_nightly_options(project, tmp_path, cli, clean):
    """Issue 19 item 1: the killed run's files (other options) are not trusted by the nightly."""
    dst = tmp_path / "out"
    cli(*export_args(project, dst, *NIGHTLY)).check_returncode()
    interrupt(export_args(project, dst, "--masks", "machine,human,instance", "--human-resize", "50"), dst, after=4)
    assert tree(dst) != clean(project, *NIGHTLY)  # the fault did change the destination
    nightly = cli(*export_args(project, dst, *NIGHTLY))
    assert nightly.returncode == 0, nightly.stderr
    assert read_report(dst)["items"]["written"] >= 4
    _assert_same(cli, dst, clean(project, *NIGHTLY))


def test_full_run_with_a_full_disk_then_sigterm(project, tmp_path, cli, clean):
    """Issue 19 item 2: an item that failed (ENOSPC) in a --full run killed by SIGTERM is rendered
    again by the next run, never taken as unchanged."""
    dst = tmp_path / "out"
    cli(*export_args(project, dst)).check_returncode()
    interrupt(export_args(project, dst, "--full"), dst, after=4, sig=signal.SIGTERM, group=False,
              MASKCORE_TEST_ENOSPC="ds/masks_human/c1_cat1.png")
    failed = [r for p in partials(dst) for r in pq.read_table(p).to_pylist() if r["status"] == "failed"]
    assert [r["item"] for r in failed] == ["c1_cat1.jpg"] and "No space left" in failed[0]["error"]
    assert not (dst / "ds/masks_machine/c1_cat1.png").exists()  # the failed item removed its files
    nightly = cli(*export_args(project, dst))
    assert nightly.returncode == 0, nightly.stderr
    _assert_same(cli, dst, clean(project))


def _same_size_edit(ann: Path) -> bool:
    """Move the first polygon/rectangle/line vertex with a coordinate >= 100: same file size, other
    mask. False (nothing changed) for an item without such a vertex (dog2: a cuboid only)."""
    text = ann.read_text()
    block = text.find('"exterior"')
    m = re.compile(r"\d{3,}").search(text, block) if block >= 0 else None
    if m is None:
        return False
    digits = m.group()
    new = ("1" if digits[0] != "1" else "5") + digits[1:]
    ann.write_text(text[:m.start()] + new + text[m.end():])
    return True


def test_resume_after_a_same_size_annotation_edit(samples, tmp_path, cli):
    """Issue 19 item 3: a resumed partition whose item changed (same size) is rendered again."""
    project = bigger_project(samples, tmp_path / "src", copies=4)  # its own: an item is edited
    dst, clean = tmp_path / "out", tmp_path / "clean"
    cmd = export_args(project, dst)
    interrupt(cmd, dst, after=4)
    done = [r["item"] for p in partials(dst) for r in pq.read_table(p).to_pylist() if r["status"] == "ok"]
    sizes = {item: (project / "ds/ann" / f"{item}.json").stat().st_size for item in done}
    edited = next(item for item in done if _same_size_edit(project / "ds/ann" / f"{item}.json"))
    ann = project / "ds/ann" / f"{edited}.json"
    assert ann.stat().st_size == sizes[edited]
    resumed = cli(*cmd)
    assert resumed.returncode == 0, resumed.stderr
    assert read_report(dst)["partitions"]["resumed"] >= 3
    cli(*export_args(project, clean)).check_returncode()
    _assert_same(cli, dst, tree(clean))
    assert (dst / "ds/ann" / f"{edited}.json").read_bytes() == ann.read_bytes()


def test_verify_reports_missing_different_and_extra_files(samples, tmp_path, cli):
    dst = tmp_path / "out"
    cli(*export_args(samples / "vector", dst)).check_returncode()
    clean = cli("verify", dst)
    assert clean.returncode == 0 and " 0 missing, 0 different, 0 extra" in clean.stdout, clean.stdout
    assert "files checked" in clean.stdout and int(clean.stdout.split(": ")[-2].split()[0]) > 30
    (dst / "ds/masks_machine/cat1.png").unlink()
    (dst / "ds/masks_human/dog1.png").write_bytes(b"not a png")
    (dst / "meta.json").write_text((dst / "meta.json").read_text() + " ")
    (dst / "ds/masks_machine/stray.png").write_bytes(b"x")
    check = cli("verify", dst)
    assert check.returncode == 5, check.stdout + check.stderr
    assert "missing: ds/masks_machine/cat1.png" in check.stdout
    assert "different: ds/masks_human/dog1.png: 9 bytes" in check.stdout
    assert "different: meta.json: " in check.stdout
    assert "extra: ds/masks_machine/stray.png" in check.stdout
    assert "1 missing, 2 different, 1 extra" in check.stdout
    assert cli("verify", tmp_path / "nothing").returncode == 1


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_damaged_manifest_is_set_aside_and_everything_rendered(samples, tmp_path, damage, cli, clean):
    """Issue 19 item 7: an unreadable manifest is treated as absent (a full render), said so on
    the console and in the report, and kept under .maskcore-meta/damaged/; no traceback."""
    src = samples / "vector"
    dst = tmp_path / "out"
    cli(*export_args(src, dst)).check_returncode()
    manifest = dst / ".maskcore-meta/manifest.parquet"
    original = manifest.read_bytes()
    damaged = b"\x00garbage" * 50 if damage == "garbage" else original[: len(original) // 2]
    manifest.write_bytes(damaged)
    (dst / "ds/masks_machine/cat1.png").write_bytes(b"left by someone")   # no record vouches for it
    for args in ((), ("--full",)):
        run = cli(*export_args(src, dst, *args))
        assert run.returncode == 0, run.stderr
        assert "Traceback" not in run.stderr
        if not args:
            assert ".maskcore-meta/manifest.parquet is unreadable" in run.stderr and "kept as" in run.stderr
            report = read_report(dst)
            assert report["items"]["written"] == 6
            [note] = report["recovery"]["damaged_state"]
            assert note["file"] == ".maskcore-meta/manifest.parquet" and (dst / note["kept_as"]).exists()
            assert (dst / note["kept_as"]).read_bytes() == damaged
        _assert_same(cli, dst, clean(src))
    assert len(list((dst / ".maskcore-meta/damaged").iterdir())) == 1


def test_damaged_partial_and_start_marker_after_a_kill(project, tmp_path, cli, clean):
    """Issue 19 item 7: a truncated partial and a garbage start marker of a killed run: the run
    renders what they covered, reports them, and the destination equals a clean run's."""
    dst = tmp_path / "out"
    cmd = export_args(project, dst)
    cli(*cmd).check_returncode()
    interrupt(export_args(project, dst, "--full", "--masks", "machine,instance"), dst, after=4)
    partial = partials(dst)[0]
    partial.write_bytes(partial.read_bytes()[:100])
    marker = sorted((dst / ".maskcore-meta/started").glob("*.json"))[-1]
    marker.write_bytes(b'{"run": "x", "ite')
    run = cli(*cmd)
    assert run.returncode == 0, run.stderr
    assert "Traceback" not in run.stderr and run.stderr.count("is unreadable") == 2, run.stderr
    report = read_report(dst)
    assert {d["file"] for d in report["recovery"]["damaged_state"]} == {
        f".maskcore-meta/partials/{partial.name}", f".maskcore-meta/started/{marker.name}"}
    assert report["recovery"]["untrusted_items"] == 24 and report["items"]["written"] == 24
    _assert_same(cli, dst, clean(project))


def test_sigterm_stops_releases_the_lock_and_the_workers(project, tmp_path, cli):
    """Issue 19 item 6: SIGTERM to the driver: exit 143, no traceback, no lock, no worker left."""
    import psutil

    dst = tmp_path / "out"
    cmd = export_args(project, dst)
    proc = start(cmd)
    try:
        wait_for_partials(proc, dst, 2)
        children = psutil.Process(proc.pid).children(recursive=True)
        assert children, "the run started no worker process"
        started = time.monotonic()
        os.kill(proc.pid, signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
        seconds = time.monotonic() - started
        assert proc.returncode == 143, err
        assert "Traceback" not in err and "stopped by SIGTERM" in err, err
        assert not (dst / ".maskcore-meta/lock").exists()
        _, alive = psutil.wait_procs(children, timeout=10)
        assert not alive, f"worker processes left running: {alive}"
        assert seconds < 30
    finally:
        kill_group(proc)
    resumed = cli(*cmd)
    assert resumed.returncode == 0, resumed.stderr
    check = cli("verify", dst)
    assert check.returncode == 0, check.stdout


@pytest.fixture
def small_tmpfs(tmp_path):
    """A real 6 MiB tmpfs at ``tmp_path/disk`` (``mount -t tmpfs``; unmounted afterwards). Skipped
    when mounting is not permitted (not root, no CAP_SYS_ADMIN); in CI as root that is a failure."""
    mount, umount = program("mount"), program("umount")
    disk = tmp_path / "disk"
    disk.mkdir()
    done = subprocess.run([mount, "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(disk)],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        why = f"mount -t tmpfs is not permitted here: {done.stderr.strip()}"
        if in_ci() and os.geteuid() == 0:
            pytest.fail(f"CI=true as root: {why}")
        pytest.skip(why)
    try:
        yield disk
    finally:
        subprocess.run([umount, "-l", str(disk)], check=False)


@pytest.mark.parametrize("per_partition, commits", [(3, True), (1, False)])
def test_a_really_full_disk_then_a_rerun_with_space(samples, small_tmpfs, cli, clean, per_partition, commits):
    """A destination on a real 6 MiB (7 MiB when it commits) tmpfs, too small for the 17 MB export
    (items in order, in this process, so the disk fills the same way each time): the item whose
    files do not fit fails with ENOSPC and is named; every file left is whole (a clean run's bytes).
    With 3 items per partition the run commits (exit 3, the report names the item, verify clean);
    with 1 the other items' files and state leave no room for the manifest: exit 1, 'not committed',
    nothing claims success. With space again the next run completes the export, identical to a clean
    run."""
    src, dst = samples / "vector", small_tmpfs / "out"
    if commits:  # 7 MiB: the other items and the manifest fit (their previews are fpng's, 1 MB more)
        subprocess.run([program("mount"), "-o", "remount,size=7m", str(small_tmpfs)], check=True)
    full = cli("export", src, dst, "--cluster", "inprocess", "--items-per-partition", per_partition)
    assert "maskcore: failed: ds/cat1.jpg: [Errno 28] No space left on device" in full.stderr, full.stderr
    reference = clean(src)
    left = tree(dst)
    assert left and all(reference.get(k) == v for k, v in left.items()), "a partial or foreign file is left"
    assert not list((dst / ".maskcore-meta/tmp").glob("*"))
    if commits:
        assert full.returncode == 3, full.stderr
        assert [f["item"] for f in read_report(dst)["failures"]] == ["cat1.jpg"]
        check = cli("verify", dst)
        assert check.returncode == 0, check.stdout + check.stderr
    else:
        assert full.returncode == 1, full.stderr
        assert "could not write .maskcore-meta/manifest.parquet, so this run is not committed" in full.stderr
        assert not (dst / ".maskcore-meta/manifest.parquet").exists()
        assert not (dst / ".maskcore-meta/report.json").exists()
    subprocess.run([program("mount"), "-o", "remount,size=64m", str(small_tmpfs)], check=True)
    again = cli(*export_args(src, dst))
    assert again.returncode == 0, again.stderr
    assert read_report(dst)["items"]["written"] == (1 if commits else 6)
    _assert_same(cli, dst, reference)


def test_a_night_of_grouped_tasks_killed_then_run_again(samples, tmp_path, cli):
    """A night with one edited item in each of 12 partitions of 2 items: joined by parts, the 12
    partitions go out as 6 tasks of 2 rows (``plan.consecutive_groups``); SIGKILLed after 2 of them,
    the next run finds partials under the tasks' own keys, which no partition of the plan has: it
    trusts none of their items, renders them again and ends as a clean run of the edited source."""
    import json

    from maskcore.io.storage import STAMP_SETTLE_SECONDS

    project = bigger_project(samples, tmp_path / "src", copies=4)  # 24 items, edited below
    dst = tmp_path / "out"
    cmd = [*export_args(project, dst, *NIGHTLY), "--items-per-partition", "2"]
    time.sleep(STAMP_SETTLE_SECONDS + 0.1)  # local stamps trusted once settled: the next night hashes only the edits
    cli(*cmd).check_returncode()
    from maskcore.exec.state import MANIFEST

    listed = pq.read_table(dst / MANIFEST, columns=["dataset", "item"]).to_pylist()  # in the plan's order
    assert len(listed) == 24
    for row in listed[::2]:  # the first item of every partition of 2
        ann = project / row["dataset"] / "ann" / f"{row['item']}.json"
        doc = json.loads(ann.read_text())
        doc["objects"] = doc["objects"][:-1]   # an object removed (or none left to remove): rendered again
        doc["description"] = "edited"
        ann.write_text(json.dumps(doc))
    time.sleep(STAMP_SETTLE_SECONDS + 0.1)
    interrupt(cmd, dst, after=2)
    killed = [p.stem for p in partials(dst)]
    assert 2 <= len(killed) < 6 and all(pq.read_table(p).num_rows == 2 for p in partials(dst))  # tasks of 2 partitions
    again = cli(*cmd)
    assert again.returncode == 0, again.stderr
    report = read_report(dst)
    assert report["partitions"]["resumed"] == 0 and report["recovery"]["untrusted_items"] >= 2 * len(killed)
    clean = tmp_path / "clean"
    cli(*export_args(project, clean, *NIGHTLY), "--items-per-partition", "2").check_returncode()
    _assert_same(cli, dst, tree(clean))
