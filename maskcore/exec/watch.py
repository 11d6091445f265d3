"""The driver's watch over its workers: no run waits silently or for ever.

A run waits for its first worker at most ``wait_for_workers`` (a profile key, e.g. ``120s``),
saying ``waiting for workers (0/2)`` meanwhile; a refused job submission (``sbatch: error: ...``)
stops it at once. During the run, a lost worker is reported and the run goes on with the others;
with a fixed ``workers:`` the cluster is asked to replace it (a new Slurm job, as ``adapt``
does); with no worker at all for ``wait_for_workers`` the run stops with a :class:`ClusterError`
saying why: the submission errors and, for Slurm, each job's state and reason from ``squeue``.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterable, Iterator

from ..errors import ClusterError

SAY_EVERY = 15.0
"""Seconds between ``waiting for workers`` lines."""
CHECK_EVERY = 1.0
"""Seconds between two looks at the scheduler's worker list while tasks run."""
POLL = 0.1
"""Seconds between two looks for finished tasks (distributed's as_completed polls as often)."""


def _submission_error(exc: BaseException) -> str:
    """The useful part of a failed submission: the command's stderr (dask-jobqueue's
    ``Job._call`` puts it after ``stderr:``), else the exception's text."""
    text = str(exc)
    if "stderr:" in text:
        text = text.rsplit("stderr:", 1)[1]
    return " ".join(text.split()) or type(exc).__name__


def _squeue(job_ids: list[str]) -> str:
    """``id STATE (reason)`` of each job, from squeue; a job squeue no longer knows has ended."""
    if not job_ids:
        return ""
    try:
        proc = subprocess.run(["squeue", "-h", "-j", ",".join(job_ids), "-o", "%i %T (%r)"],
                              capture_output=True, text=True, timeout=15, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"squeue failed: {exc}"
    if proc.returncode:
        return f"squeue failed: {' '.join(proc.stderr.split())}"
    lines = [" ".join(line.split()) for line in proc.stdout.splitlines() if line.strip()]
    known = {line.split()[0] for line in lines}
    lines += [f"{j} gone from the queue (ended, cancelled or past its walltime)" for j in job_ids if j not in known]
    return "; ".join(lines)


class WorkerWatch:
    """Counts the workers of ``client``'s scheduler and decides when a run cannot go on.

    ``cluster``: the cluster object maskcore started (None for an existing scheduler);
    ``wanted``: the worker count asked for (None: any); ``timeout``: seconds with no worker before
    the run stops (None: wait for ever, for a client the caller brought); ``errors``: the list the
    cluster's job class appends its failed submissions to; ``replace``: ask the cluster to start
    lost workers again (a fixed worker count).
    """

    def __init__(self, client, name: str, cluster=None, wanted: int | None = None,
                 timeout: float | None = None, errors: list | None = None, replace: bool = False,
                 log: Callable[[str], None] | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.client, self.name, self.cluster = client, name, cluster
        self.wanted, self.timeout, self.errors, self.replace = wanted, timeout, errors or [], replace
        self.log = log or (lambda msg: None)
        self.clock = clock
        self.none_since: float | None = clock()
        self.workers = 0
        self.most = 0
        self.last_check = self.last_said = float("-inf")

    # -- what the scheduler has ----------------------------------------------------------------

    def count(self) -> int:
        return len(self.client.nthreads())

    def _of(self) -> str:
        return f"{self.workers}/{self.wanted}" if self.wanted else str(self.workers)

    def jobs(self) -> list[str]:
        """The ids of the batch jobs the cluster submitted and still holds (dask-jobqueue)."""
        workers = getattr(self.cluster, "workers", None) or {}
        return sorted({str(j.job_id) for j in list(workers.values()) if getattr(j, "job_id", None)})

    def why(self) -> str:
        """What is known about the missing workers: submission errors, the queue's state."""
        parts = []
        if self.errors:
            failed = sorted({_submission_error(e) for e in self.errors})
            parts.append(f"{len(self.errors)} job submissions failed: " + " | ".join(failed))
        if self.cluster is not None and type(self.cluster).__name__.startswith("SLURM"):
            state = _squeue(self.jobs())
            parts.append(f"Slurm jobs: {state}" if state else "no Slurm job in the queue")
            if " RUNNING " in f" {state} ":
                address = self.client.scheduler.address
                parts.append(f"a running job's worker has not reached the scheduler at {address} (yet): see "
                             "the job's log (log-directory), and set interface: if the nodes cannot reach "
                             "this address")
        if not parts:
            parts.append("the scheduler has no worker")
        return "; ".join(parts)

    def _refused(self) -> bool:
        """Every job the cluster wanted failed to submit: waiting longer changes nothing."""
        if not self.errors or self.cluster is None:
            return False
        held = getattr(self.cluster, "workers", None) or {}
        started = [j for j in list(held.values()) if getattr(j, "job_id", None)]
        return not started and len(self.errors) >= max(1, len(held))

    # -- waiting ---------------------------------------------------------------------------------

    def _fail(self) -> ClusterError:
        if self._refused():
            what = "expected its workers' jobs to be submitted, got every submission refused"
        elif self.most == 0:
            what = f"expected a worker within {self.timeout:g} s (wait_for_workers), got none"
        else:
            what = (f"lost all {self.most} workers and got none back within {self.timeout:g} s "
                    "(wait_for_workers)")
        hint = "" if self._refused() else "; raise wait_for_workers in the profile to wait longer"
        return ClusterError(f"cluster profile {self.name!r}: {what}: {self.why()}{hint}")

    def wait_first(self) -> None:
        """Block until the scheduler has a worker (see :meth:`check`)."""
        while True:
            self.check(force=True)
            if self.workers:
                return
            time.sleep(0.2)

    def check(self, force: bool = False) -> None:
        """Report lost workers and ask the cluster to replace them (fixed counts); say
        ``waiting for workers (0/N)`` while there is none; raise a ClusterError when every job
        submission was refused, or after ``timeout`` seconds with no worker. Looks at the
        scheduler at most every ``CHECK_EVERY`` seconds unless ``force``."""
        now = self.clock()
        if not force and now - self.last_check < CHECK_EVERY:
            return
        self.last_check = now
        before, self.workers = self.workers, self.count()
        if self.workers < before:
            self.log(f"maskcore: warning: lost {before - self.workers} workers ({self._of()} left)"
                     + ("; the run goes on with the others" if self.workers else ""))
        elif self.workers > before and (self.most or self.last_said > float("-inf")):
            self.log(f"maskcore: workers ({self._of()})")
        self.most = max(self.most, self.workers)
        if self.replace and self.most and self.workers < self.wanted and self.cluster is not None:
            self.cluster.scale(self.wanted)   # starts jobs for the workers the cluster dropped
        if self.workers:
            self.none_since = None
            return
        if self.none_since is None:
            self.none_since = now
        if self._refused() or (self.timeout is not None and now - self.none_since > self.timeout):
            raise self._fail()
        if now - self.none_since >= 1.0 and now - self.last_said >= SAY_EVERY:
            self.log(f"maskcore: waiting for workers ({self._of()})")
            self.last_said = now


def _result(future, watch: WorkerWatch):
    """``future.result()``, looking at the workers while it waits: a result held by a worker
    that was lost before it was fetched is computed again, which waits for a worker."""
    from distributed import TimeoutError as DaskTimeout

    while True:
        try:
            return future.result(timeout=CHECK_EVERY)
        except (DaskTimeout, TimeoutError):
            watch.check()


def completed(futures: Iterable, watch: WorkerWatch | None) -> Iterator[tuple]:
    """(future, result) as they finish (``distributed.as_completed``), with ``watch.check()``
    between looks, so a run with no worker left stops with a ClusterError instead of waiting for
    ever. A task's error is raised, as by ``future.result()``."""
    from distributed import as_completed

    pending = as_completed(futures)
    if watch is None:
        for future in pending:
            yield future, future.result()
        return
    while not pending.is_empty():
        if pending.has_ready():
            for future in pending.next_batch(block=False):
                yield future, _result(future, watch)
            continue
        watch.check()
        time.sleep(POLL)
