"""The driver's watch over its workers (maskcore.exec.watch): what it says about lost workers.

The Slurm tests (tests/exec/test_slurm.py) run it against real jobs, the address profile's test
(tests/exec/test_cluster.py) against a scheduler of its own; here its bookkeeping runs against a
real scheduler whose worker processes the test kills, retires and starts."""

from __future__ import annotations

import os
import signal
import time

import distributed
from distributed.core import Status

from maskcore.exec.watch import WorkerWatch

LOST_ONE = "maskcore: warning: lost 1 workers (2/2 left); the run goes on with the others"


def _until(condition, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the cluster did not change in time"
        time.sleep(0.05)


def test_a_worker_that_came_and_went_between_two_looks_is_reported_lost_once():
    """The Slurm flake of session 7: a worker registered after the watch's last look and was
    killed (its job scancelled) before the next one, so the addresses the watch had sampled were
    all still there. The scheduler's own remove-worker event counts it: one loss, said once, while
    the nanny has started a new worker in its place (the count is back to 2)."""
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        lines: list[str] = []
        watch = WorkerWatch(client, "local", wanted=2, log=lines.append)
        watch.check(force=True)
        assert watch.workers == 1
        first = set(client.nthreads())
        cluster.scale(2)                                     # a worker comes after the look ...
        _until(lambda: len(client.nthreads()) == 2 and len(cluster.workers) == 2
               and all(n.status == Status.running for n in list(cluster.workers.values())))  # nannies up
        (new,) = set(client.nthreads()) - first
        os.kill(client.run(os.getpid, workers=[new])[new], signal.SIGKILL)   # ... and is killed
        _until(lambda: new not in client.nthreads() and len(client.nthreads()) == 2)  # replaced
        assert set(client.nthreads()) >= first               # what the watch saw is all still there
        _until(lambda: watch.check(force=True) or lines)     # once the scheduler's event has come
        assert lines == [LOST_ONE]
        watch.check(force=True)
        watch.check(force=True)
        assert lines == [LOST_ONE]                           # said once
        watch.close()


def test_a_worker_retired_on_purpose_is_not_lost():
    """Scaling down (``retire_workers``: adapt, ``cluster.scale``) is no loss: the scheduler
    expected it. The worker that comes back is counted."""
    with distributed.LocalCluster(n_workers=2, processes=False, dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        lines: list[str] = []
        watch = WorkerWatch(client, "local", wanted=2, log=lines.append)
        watch.check(force=True)
        cluster.scale(1)
        _until(lambda: len(client.nthreads()) == 1)
        watch.check(force=True)
        assert lines == []
        cluster.scale(2)
        _until(lambda: len(client.nthreads()) == 2)
        watch.check(force=True)
        assert lines == ["maskcore: workers (2/2)"]
        watch.close()


def test_workers_lost_between_two_looks_count_in_the_error():
    """Both workers of a run registered after the watch's last look and were lost before the next
    one (a Slurm run's two jobs cancelled while the driver had seen one, or none): the losses are
    said and the error after ``timeout`` counts them ("lost all 2 workers"), instead of the
    workers the looks happened to see (session 10's Slurm run said "lost all 1 workers"). The
    workers are processes without a nanny (as a job's), killed for good."""
    import subprocess
    import sys

    import pytest

    from maskcore.errors import ClusterError

    with distributed.LocalCluster(n_workers=0, processes=True, dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        lines: list[str] = []
        now = [0.0]
        watch = WorkerWatch(client, "local", wanted=2, timeout=5, log=lines.append, clock=lambda: now[0])
        watch.check(force=True)
        assert watch.workers == 0                            # the last look: no worker yet
        procs = [subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", cluster.scheduler_address,
                                   "--no-nanny", "--nthreads", "1", "--no-dashboard"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for _ in range(2)]
        try:
            _until(lambda: len(client.nthreads()) == 2)
            for proc in procs:
                proc.kill()
                proc.wait()
            _until(lambda: not client.nthreads())
            said = lambda: sum(int(line.split()[3]) for line in lines)  # noqa: E731 - "... lost N workers ..."
            _until(lambda: watch.check(force=True) or said() >= 2)   # the scheduler's events, at one look or two
            assert said() == 2 and all(line.startswith("maskcore: warning: lost ") and line.endswith(" (0/2 left)")
                                       for line in lines)
            now[0] += 6
            with pytest.raises(ClusterError, match="lost all 2 workers and got none back within 5 s"):
                watch.check(force=True)
        finally:
            for proc in procs:
                proc.kill()
            watch.close()
