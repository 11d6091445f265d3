"""A partition whose worker died: its items again, one task each, so that only the item that
kills a worker fails.

An item can need more memory than a worker has even when its estimate
(:func:`maskcore.exec.memory.refuse_oversize`) let it through; the worker's nanny then kills the
process, Dask runs the partition on other workers, and after
``distributed.scheduler.allowed-failures`` deaths gives up with ``KilledWorker``. Instead of failing
the run, :func:`isolate` renders the partition's items as tasks of one item each: first all at once,
then each item whose worker died (a neighbour's death may have taken it along) again alone (one task
in the cluster at a time, so a death there is that item's own). An item that still kills its worker
fails with ``WORKER_DIED``; the others are written as usual.

Each one-item task writes its own start marker (``started/<key>.<n>.json``) and no partial: a run
killed meanwhile renders those items again. A run that failed an item this way ends with a sweep
(the item may have written some files before its worker died).
"""

from __future__ import annotations

from dataclasses import replace

import pyarrow as pa
import pyarrow.compute as pc

from .task import failed_result, run_partition

WORKER_DIED = "worker died while rendering (memory?)"
DIED_TYPE = "WorkerDied"


def is_worker_death(exc: BaseException) -> bool:
    """Whether a task failed because the worker processes running it died (``KilledWorker``)."""
    try:
        from distributed import KilledWorker
    except ImportError:  # pragma: no cover - no cluster, no worker to die
        return False
    return isinstance(exc, KilledWorker)


def _reason(exc: BaseException) -> str:
    tries = getattr(exc, "allowed_failures", None)
    worker = getattr(exc, "last_worker", None)
    limit = getattr(worker, "memory_limit", None)
    return (f"{WORKER_DIED}: {'the' if tries is None else tries + 1} worker process"
            f"{'es' if tries else ''} running this item alone died"
            + (f" (worker memory limit {limit / 2**20:,.0f} MiB)" if limit else "")
            + "; the item's memory estimate did not refuse it")


def isolate(client, spec, part: pa.Table, key: str, token: str, resumed: bool = False) -> pa.Table:
    """Render each item of ``part`` as its own task on ``client`` (a partition whose worker
    died); returns the partition's result rows, an item whose worker died alone failed with
    ``WORKER_DIED``. ``token`` prefixes the Dask keys; ``resumed``: the partition was being
    checked against a killed run's partial, so its items are rendered in full."""
    from distributed import as_completed

    if resumed:
        part = part.drop_columns([c for c in ("prev_ann_sha256", "prev_img_sha256") if c in part.column_names])
    spec = replace(spec, partials_dir=None)
    singles = [part.slice(j, 1) for j in range(part.num_rows)]

    def submit(j: int, attempt: int):
        return client.submit(run_partition, spec, singles[j], f"{key}.{j}", key=f"{token}-item{j}-{attempt}",
                             pure=False, retries=0)

    tables: dict[int, pa.Table] = {}
    # a partition of one item goes straight to the round alone: its death may be a neighbour's
    futures = {submit(j, 1): j for j in range(part.num_rows)} if part.num_rows > 1 else {}
    died = [] if futures else [0]
    for future in as_completed(list(futures)):
        j = futures[future]
        try:
            tables[j] = future.result()
        except Exception as exc:
            if not is_worker_death(exc):
                raise
            died.append(j)  # maybe a neighbour's death: tried again alone
        future.release()
    for j in sorted(died):  # one task in the cluster at a time: a death is this item's own
        future = submit(j, 2)
        try:
            tables[j] = future.result()
        except Exception as exc:
            if not is_worker_death(exc):
                raise
            tables[j] = failed_result(singles[j].to_pylist()[0], _reason(exc), DIED_TYPE)
        future.release()
    return pa.concat_tables([tables[j] for j in range(part.num_rows)])


def any_died(manifest: pa.Table) -> bool:
    """Whether an item of ``manifest`` failed because its worker died (the run then sweeps)."""
    if manifest.num_rows == 0:
        return False
    return bool(pc.any(pc.equal(pc.fill_null(manifest.column("error_type"), ""), DIED_TYPE)).as_py())
