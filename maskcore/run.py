"""Orchestration: plan the items, run one Dask task per partition, write the run report.

This layer is thin on purpose: everything a task does lives in :mod:`maskcore.task`.
Run metadata goes to ``<destination>/.maskcore/``: ``report.json`` (counts, timings, failures)
and ``manifest.parquet`` (one row per item: status, error, input checksums, files written with
size and sha256). The export tree itself contains no timestamps.
"""

from __future__ import annotations

import json
import os
import sys
import time
import uuid
from dataclasses import dataclass, field
from typing import Callable

import pyarrow as pa
import pyarrow.parquet as pq

from . import __version__
from .cluster import connect, get_profile
from .errors import ConfigError
from .layouts import get_layout
from .plan import partitions, plan_partitions
from .readers import open_source
from .sinks import get_sink
from .task import RESULT_SCHEMA, TaskSpec, run_partition

EXIT_OK = 0          # every item exported
EXIT_FATAL = 1       # nothing could run: unreadable project, bad configuration, refused destination
EXIT_USAGE = 2       # bad command line (argparse)
EXIT_PARTIAL = 3     # the run finished but some items failed (listed in the report)

REPORT_DIR = ".maskcore"


@dataclass
class ExportConfig:
    source: str
    destination: str
    layout: str = "supervisely"
    layout_options: dict = field(default_factory=dict)
    reader: str = "supervisely"
    storage_options: dict = field(default_factory=dict)
    cluster: str | None = None
    cluster_file: str | None = None
    workers: int | None = None
    items_per_partition: int | None = None
    debug: bool = False


@dataclass
class RunResult:
    exit_code: int
    report: dict
    manifest: pa.Table


def _refuse_destination_in_source(source: str, destination: str) -> None:
    if "://" in source or "://" in destination:
        return
    src = os.path.realpath(source)
    dst = os.path.realpath(destination)
    if dst == src or dst.startswith(src.rstrip(os.sep) + os.sep):
        raise ConfigError(f"destination {destination!r} is inside the source {source!r}; "
                          "maskcore never writes into the source project")


def run_export(cfg: ExportConfig, log: Callable[[str], None] | None = None,
               client=None) -> RunResult:
    """Run one export; returns the exit code, the report and the manifest.

    ``client``: an existing ``distributed.Client`` to run on (the profile's cluster is not started).
    """
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    started = time.perf_counter()
    _refuse_destination_in_source(cfg.source, cfg.destination)
    layout = get_layout(cfg.layout, cfg.layout_options)
    profile = get_profile(cfg.cluster, cfg.cluster_file)
    source = open_source(cfg.reader, cfg.source, cfg.storage_options)
    meta = source.read_meta()
    layout.check_meta(meta)
    sink = get_sink("dir", cfg.destination, cfg.storage_options)
    listing = source.list_items()
    workers = cfg.workers or (profile.get("local") or {}).get("n_workers") or os.cpu_count() or 1
    plan = plan_partitions(listing, workers=workers, items_per_partition=cfg.items_per_partition)
    parts = partitions(plan)
    log(f"maskcore: {plan.num_rows} items in {len(parts)} partitions -> {cfg.destination}")
    for path, data in layout.project_files(meta, json.dumps(meta.raw, indent=4).encode("utf-8")):
        sink.write(path, data)
    spec = TaskSpec(source=source, sink=sink, layout=layout, meta=meta, debug=cfg.debug)
    results = _execute(spec, parts, profile, cfg.workers, log, client) if parts else []
    manifest = pa.concat_tables(results) if results else RESULT_SCHEMA.empty_table()
    manifest = manifest.sort_by([("dataset", "ascending"), ("item", "ascending")])
    report = _report(cfg, profile, manifest, len(parts), time.perf_counter() - started)
    sink.write(f"{REPORT_DIR}/manifest.parquet", _parquet_bytes(manifest))
    sink.write(f"{REPORT_DIR}/report.json", json.dumps(report, indent=2).encode("utf-8"))
    code = EXIT_OK if report["items"]["failed"] == 0 else EXIT_PARTIAL
    log(f"maskcore: {report['items']['ok']} ok, {report['items']['failed']} failed, "
        f"{report['files_written']} files, {report['bytes_written']} bytes in {report['seconds']:.1f} s; "
        f"report: {cfg.destination.rstrip('/')}/{REPORT_DIR}/report.json")
    return RunResult(code, report, manifest)


def _execute(spec: TaskSpec, parts: list[pa.Table], profile: dict, workers: int | None,
             log: Callable[[str], None], client=None) -> list[pa.Table]:
    if client is not None:
        return _submit_all(client, spec, parts, log)
    with connect(profile, workers) as own_client:
        return _submit_all(own_client, spec, parts, log)


def _submit_all(client, spec: TaskSpec, parts: list[pa.Table], log: Callable[[str], None]) -> list[pa.Table]:
    from distributed import as_completed

    run_token = uuid.uuid4().hex[:12]
    spec_future = client.scatter(spec, broadcast=True)
    futures = [client.submit(run_partition, spec_future, part, key=f"maskcore-{run_token}-{i}", pure=False)
               for i, part in enumerate(parts)]
    results, done, last = [], 0, time.monotonic()
    for future in as_completed(futures):
        results.append(future.result())
        done += 1
        if done == len(parts) or time.monotonic() - last > 5:
            log(f"maskcore: {done}/{len(parts)} partitions done")
            last = time.monotonic()
    return results


def _report(cfg: ExportConfig, profile: dict, manifest: pa.Table, n_parts: int, seconds: float) -> dict:
    rows = manifest.select(["dataset", "item", "status", "error", "bytes_written", "outputs"]).to_pylist()
    failed = [{"dataset": r["dataset"], "item": r["item"], "error": r["error"]}
              for r in rows if r["status"] != "ok"]
    return {
        "maskcore_version": __version__,
        "source": cfg.source,
        "destination": cfg.destination,
        "layout": cfg.layout,
        "layout_options": cfg.layout_options,
        "cluster": profile["name"],
        "partitions": n_parts,
        "items": {"total": len(rows), "ok": len(rows) - len(failed), "failed": len(failed)},
        "files_written": sum(len(r["outputs"]) for r in rows),
        "bytes_written": sum(r["bytes_written"] for r in rows),
        "seconds": round(seconds, 3),
        "failures": failed,
    }


def _parquet_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return sink.getvalue().to_pybytes()
