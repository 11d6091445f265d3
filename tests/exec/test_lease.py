"""The destination's lock is a lease (issue 19 items 4-5): renewed by the live run, taken over
after expiry with a report line, never left empty, and taken over by exactly one of several runs."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time

import pyarrow as pa
import pytest

from helpers import bigger_project
from helpers.faults import export_args, interrupt, read_report
from maskcore.exec.lease import RunLock
from maskcore.exec.state import LOCK, LockedError
from maskcore.io.sinks import get_sink


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_killed_run_on_another_host_is_taken_over_after_its_lease(samples, tmp_path, cli):
    src = bigger_project(samples, tmp_path / "src", copies=4)
    dst = tmp_path / "out"
    interrupt(export_args(src, dst, "--lock-lease", "3"), dst, after=2)
    lock = json.loads((dst / LOCK).read_text())
    lock["holder"] = "another-pod:1"  # the next night runs in a new pod: the pid means nothing here
    (dst / LOCK).write_text(json.dumps(lock))
    if lock["expires"] > time.time() + 0.5:
        early = cli(*export_args(src, dst))
        assert early.returncode == 4 and "lease expires in" in early.stderr, early.stderr
    time.sleep(max(0.0, lock["expires"] - time.time()) + 0.2)
    run = cli(*export_args(src, dst))
    assert run.returncode == 0, run.stderr
    assert "took over the lock of another-pod:1" in run.stderr and "expired" in run.stderr
    assert "took over the lock of another-pod:1" in read_report(dst)["lock"]["taken_over"]
    assert read_report(dst)["lock"]["lease_seconds"] == 300
    assert not (dst / LOCK).exists() and not list((dst / ".maskcore-meta").glob("lock*"))
    assert cli("verify", dst).returncode == 0


def test_empty_lock_is_taken_over(samples, tmp_path, cli):
    dst = tmp_path / "out"
    (dst / ".maskcore-meta").mkdir(parents=True)
    (dst / LOCK).write_bytes(b"")
    run = cli(*export_args(samples / "vector", dst))
    assert run.returncode == 0, run.stderr
    assert "took over the lock" in run.stderr and "unreadable lock (0 bytes)" in run.stderr
    assert not (dst / LOCK).exists()


def test_a_lock_is_never_created_empty_or_partial(tmp_path):
    """A write that fails midway (here: a file size limit, as a full disk) leaves no lock at all."""
    code = (
        "import resource, signal, sys\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "from maskcore.io.sinks import get_sink\n"
        "sink = get_sink('dir', sys.argv[1])\n"
        "sink.create_exclusive('.maskcore-meta/tmp/probe', b'')\n"  # folders exist before the limit
        "resource.setrlimit(resource.RLIMIT_FSIZE, (16, 16))\n"
        "try:\n"
        "    sink.create_exclusive(sys.argv[2], b'{\"holder\": \"h:1\", \"run\": \"r\", \"expires\": 1}')\n"
        "except OSError as exc:\n"
        "    print(exc.errno)\n")
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path), LOCK], capture_output=True, text=True,
                          timeout=60)
    assert proc.stdout.strip() == "27", proc.stdout + proc.stderr   # EFBIG
    assert not (tmp_path / LOCK).exists()


def test_live_run_renews_its_lease(tmp_path):
    sink = get_sink("dir", str(tmp_path))
    with RunLock(sink, lease=0.6) as held:
        time.sleep(1.5)   # more than twice the lease: only renewals keep it
        with pytest.raises(LockedError, match="another maskcore run holds"):
            RunLock(sink, lease=0.6).acquire()
        held.check()
    assert not (tmp_path / LOCK).exists()


def _race(sink_factory, tries: int, contenders: int) -> list[int]:
    """Per try: a stale lock (expired lease of a dead process on this host), ``contenders``
    threads acquiring at once; returns how many won each try."""
    wins = []
    dead = _dead_pid()
    for t in range(tries):
        sink = sink_factory()
        stale = {"holder": f"{socket.gethostname()}:{dead}", "run": f"dead{t}", "expires": time.time() - 1,
                 "lease_seconds": 1}
        sink.write(LOCK, json.dumps(stale).encode())
        barrier = threading.Barrier(contenders)
        won: list[RunLock] = []

        def contend():
            lock = RunLock(sink_factory(), lease=60)
            barrier.wait()
            try:
                lock.acquire()
                won.append(lock)
            except LockedError:
                pass

        threads = [threading.Thread(target=contend) for _ in range(contenders)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        wins.append(len(won))
        for lock in won:
            lock.release()
        sink.delete([LOCK])
    return wins


def test_concurrent_takeovers_never_both_win_local(tmp_path):
    wins = _race(lambda: get_sink("dir", str(tmp_path)), tries=60, contenders=4)
    assert wins == [1] * 60, f"{sum(w > 1 for w in wins)} of 60 tries had several winners: {wins}"


def test_concurrent_takeovers_never_both_win_s3(s3_server, s3_bucket):
    url = f"s3://{s3_bucket}/dst"
    wins = _race(lambda: get_sink("dir", url, s3_server.options()), tries=15, contenders=3)
    assert wins == [1] * 15, wins


def test_sigkilled_driver_in_a_container_leaves_a_lock_the_next_run_takes(samples, tmp_path, cli):
    """PID 1 in a container: the killed driver's pid is alive again (here: this test process, which
    runs the next run in-process, as PID 1 of the new container would)."""
    src = samples / "vector"
    dst = tmp_path / "out"
    (dst / ".maskcore-meta").mkdir(parents=True)
    (dst / LOCK).write_text(json.dumps({"holder": f"{socket.gethostname()}:{os.getpid()}", "run": "killed",
                                        "expires": time.time() - 5, "lease_seconds": 300}))
    run = cli(*export_args(src, dst))
    assert run.returncode == 0 and "its lease expired" in run.stderr, run.stderr


def _take_over_during_renewal(held: RunLock, sink, taker: bytes):
    """Make another run's takeover land at the worst moment: after ``held`` decided to renew
    (read-then-write: after its read) and before its write."""
    body = held._body

    def racing_body():
        sink.write(LOCK, taker)   # the other run's lock, written whole (one PUT)
        held._body = body
        return body()
    held._body = racing_body


def test_a_renewal_after_a_takeover_fails_and_the_run_stops_s3(s3_server, s3_bucket):
    """Issue 19 item 4: on S3 a renewal is a conditional PUT on the ETag the run wrote last; a
    takeover landing between the run's decision to renew and its write makes the renewal fail (412):
    the lock keeps naming the new holder, the run knows it lost the lease and check() stops it
    before any commit. (A read-then-write renewal overwrites the new holder's lock here.)"""
    sink = get_sink("dir", f"s3://{s3_bucket}/dst", s3_server.options())
    taker = json.dumps({"holder": "other-pod:1", "run": "taker", "expires": time.time() + 300,
                        "lease_seconds": 300}).encode()
    held = RunLock(sink, lease=300, run_id="held")
    held.acquire()
    try:
        held.renew()   # a renewal of an untouched lock succeeds
        assert held.lost is None and json.loads(sink.read(LOCK))["run"] == "held"
        _take_over_during_renewal(held, sink, taker)
        held.renew()
        assert sink.read(LOCK) == taker, "the renewal overwrote the lock another run took over"
        assert "run taker" in held.lost
        with pytest.raises(LockedError, match="lost the lock .*run taker.*nothing committed"):
            held.check()
    finally:
        held.release()
    assert sink.read(LOCK) == taker   # release leaves the new holder's lock alone


def test_a_takeover_between_renewals_is_seen_at_the_commit_s3(s3_server, s3_bucket, samples):
    """A run whose lock was taken over after its last renewal commits nothing: its next task
    write is fenced (or check() renews, conditionally, before the commit) and the run ends with
    LockedError; the destination has no manifest and the lock still names the run that took over."""
    from maskcore.exec.run import ExportConfig, run_export

    dst = f"s3://{s3_bucket}/dst"
    sink = get_sink("dir", dst, s3_server.options())
    taker = json.dumps({"holder": "other-pod:1", "run": "taker", "expires": time.time() + 300,
                        "lease_seconds": 300}).encode()
    cfg = ExportConfig(source=str(samples / "vector"), destination=dst, storage_options=s3_server.options(),
                       cluster="inprocess", layout_options={"masks": "machine"}, items_per_partition=2)
    with pytest.raises(LockedError, match="lost the lock .*run taker"):
        run_export(cfg, log=lambda line: None, on_partition=lambda n: n == 1 and sink.write(LOCK, taker))
    assert not sink.exists(".maskcore-meta/manifest.parquet")
    assert sink.read(LOCK) == taker


def test_a_zombie_task_stops_writing_once_the_next_run_takes_the_lock(samples, tmp_path, monkeypatch):
    """Issue 19 item 5: a task of a run whose driver was killed (a zombie worker) checks the lock
    before it writes; once the next run has taken the lock over it raises FencedError: nothing more
    of its partition is written or removed and no partial is recorded. Here the takeover lands
    while the zombie writes cat2's first file."""
    from helpers import partitions_of
    from maskcore.exec import task
    from maskcore.exec.state import PARTIALS, STARTED
    from maskcore.io.sinks.fsdir import FsspecDirSink
    from maskcore.layouts import get_layout
    from maskcore.readers import open_source

    monkeypatch.setattr(task, "FENCE_SECONDS", 0.0)   # every write checks (the default: every 0.25 s)
    nxt = json.dumps({"holder": "h:2", "run": "next", "expires": time.time() + 300, "lease_seconds": 300})

    class TakenOverMidway(FsspecDirSink):
        def write(self, relpath, data):
            if relpath.startswith("ds/") and "cat2" in relpath and "next" not in self.read(LOCK).decode():
                super().write(LOCK, nxt.encode())   # the next run takes the lock over, now
            super().write(relpath, data)

    dst = tmp_path / "out"
    sink = TakenOverMidway(str(dst))
    sink.write(LOCK, json.dumps({"holder": "h:1", "run": "zombie", "expires": time.time() + 300}).encode())
    source = open_source("supervisely", str(samples / "vector"))
    spec = task.TaskSpec(source=source, sink=sink, layout=get_layout("supervisely", {"masks": "machine"}),
                         meta=source.read_meta(), partials_dir=PARTIALS, started_dir=STARTED, run_id="zombie")
    part = pa.concat_tables(partitions_of(source, 6))   # one partition of the 6 items
    with pytest.raises(task.FencedError, match="lock names run 'next', not this task's run 'zombie'"):
        task.run_partition(spec, part, "key")
    written = {p.relative_to(dst).as_posix() for p in dst.rglob("*") if p.is_file() and ".maskcore-meta" not in p.parts}
    assert {p for p in written if "cat1" in p} == {"ds/ann/cat1.jpg.json", "ds/img/cat1.jpg",
                                                   "ds/masks_machine/cat1.png"}
    assert len([p for p in written if "cat2" in p]) == 1, written   # the write the takeover raced
    assert not [p for p in written if "cat3" in p or "dog" in p], written
    assert not list((dst / PARTIALS).glob("*")) if (dst / PARTIALS).exists() else True
    assert json.loads((dst / LOCK).read_text())["run"] == "next"
