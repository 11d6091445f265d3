"""The driver's watch over its workers (maskcore.exec.watch): what it says about lost workers.

The Slurm tests (tests/exec/test_slurm.py) run it against real jobs; here its bookkeeping runs
against a real scheduler whose workers are closed and started by the test."""

from __future__ import annotations

import time

import distributed

from maskcore.exec.watch import WorkerWatch


def _until(condition, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the cluster did not change in time"
        time.sleep(0.05)


def test_a_worker_replaced_between_two_looks_is_reported_lost():
    """A cluster may replace a lost worker before the watch looks again: the worker count is the
    same, the loss is still said (it once went unreported: tests/exec/test_slurm.py)."""
    with distributed.LocalCluster(n_workers=2, processes=False, dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        lines: list[str] = []
        watch = WorkerWatch(client, "local", wanted=2, log=lines.append)
        watch.check(force=True)
        assert watch.workers == 2
        before = set(client.nthreads())
        cluster.scale(1)                                     # one worker goes ...
        _until(lambda: len(client.nthreads()) == 1)
        cluster.scale(2)                                     # ... and a new one comes, before the next look
        _until(lambda: len(client.nthreads()) == 2)
        assert len(before - set(client.nthreads())) == 1
        watch.check(force=True)
        assert lines == ["maskcore: warning: lost 1 workers (2/2 left); the run goes on with the others"]
        watch.check(force=True)
        assert len(lines) == 1                               # said once
