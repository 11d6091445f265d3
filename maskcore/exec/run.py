"""Orchestration: plan the items, run one Dask task per partition, keep the destination's state.

This layer is thin on purpose: what a task does lives in :mod:`maskcore.task`, the state files
(manifest, partial results, lock) in :mod:`maskcore.state`. A run:
1. takes the destination's lock (a second run is refused with exit code 4);
2. plans the items into partitions; if the last finished run used the same configuration, each
   item carries its previous input checksums so workers skip unchanged items (incremental);
3. skips partitions a killed run already finished (``.maskcore-meta/partials``), runs the others;
4. removes outputs that no current item produced (deleted items, fewer objects, failed items);
5. writes ``.maskcore-meta/manifest.parquet`` and ``.maskcore-meta/report.json``. The export tree itself
   carries no timestamps: the same inputs and options give the same bytes.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import sys
import time
import uuid
from collections.abc import Callable
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from fsspec.implementations.local import LocalFileSystem

from .. import __version__
from ..errors import ConfigError, RefusedError, StateError
from ..io.archive import (
    ArchiveError,
    TarPartSink,
    chunk_records,
    default_archive_name,
    discard_chunks,
    finalize_archive,
    refuse_overwriting_source,
    resolve_archive_format,
    unpacked_outputs,
)
from ..io.archive_publish import end_publish, recover_publish
from ..io.archive_update import read_previous_archive, update_archive
from ..io.sinks import get_sink
from ..io.staging import TMP_DIR
from ..io.storage import is_inside, redact
from ..layouts import canonical_name, get_layout, get_layout_class
from ..paths import LEGACY_STATE_DIR
from ..readers import READERS, detect_reader, open_source
from .cluster import connect, get_profile, runs_inprocess, watch_of
from .filters import (
    FilterSpec,
    apply_annotation_filters,
    apply_listing_filters,
    scan_errors,
)
from .finish import (
    ListFiles,
    StaleOutputs,
    Tally,
    carry_unchanged_outputs,
    list_files,
    list_paths,
    output_paths,
    rows_by_parts,
    stale_outputs,
    workers_rows,
)
from .isolation import any_died, is_worker_death, isolate
from .lease import RunLock
from .legacy import migrate_legacy_state, state_view
from .plan import Todo, assign_partitions, partitions, plan_partitions
from .progress import ItemReporter, Progress
from .recovery import Leftovers, leftover_outputs, read_leftovers, settle
from .report import FULL_LIST, listed_source_warnings
from .scan import scan_partitions
from .stamps import (
    ATTACH_COLUMNS,
    Attached,
    NotAligned,
    attach_by_parts,
    attach_previous,
    plan_summary,
    record_stamps,
    split_unchanged,
    stamped_listing,
    summary_text,
    unchanged_results,
)
from .state import (
    MANIFEST,
    PARTIALS,
    PARTS_KEY,
    REPORT,
    RUN_ID_KEY,
    STARTED,
    STATE_DIR,
    DamagedManifest,
    ManifestWriter,
    config_fingerprint,
    in_item_order,
    manifest_pieces,
    parquet_bytes,
    read_manifest,
    read_manifest_head,
    read_manifest_head_readonly,
    read_manifest_readonly,
    write_manifest,
)
from .task import RESULT_SCHEMA, FencedError, TaskSpec, resume_partition, run_partition
from .verify import (
    ARCHIVE_KEY,
    FILES_KEY,
    MANIFEST_COLUMNS,
    SCOPE_KEY,
    named_project_files,
    unrecorded_files,
)
from .watch import completed, result_of

EXIT_OK = 0          # every item exported (or unchanged)
EXIT_FATAL = 1       # nothing could run: unreadable project, bad configuration
EXIT_USAGE = 2       # bad command line (argparse)
EXIT_PARTIAL = 3     # the run finished but some items failed (listed in the report)
EXIT_REFUSED = 4     # refused to run: destination locked by another run, or inside the source
EXIT_UNVERIFIED = 5  # maskcore verify: the destination differs from its manifest
EXIT_EMPTY = 6       # the item selection (--dataset, --item, ...) matched no item

REPORT_DIR = STATE_DIR
PREVIOUS_COLUMNS = (*MANIFEST_COLUMNS, "warnings", "lines", "ann_stamp", "img_stamp")
"""What a run reads of the last manifest: records to attach (stamps.attach_previous), outputs, warnings
and list lines to carry or remove; not the names and timings it makes again (a fifth less memory)."""
FINGERPRINT_KEY = b"maskcore.config_fingerprint"


@dataclass(frozen=True)
class ExportConfig:
    """Everything one export needs; immutable, checked when built, the command line's defaults.

    ``reader="auto"`` picks the reader from the source (``maskcore.readers.detect_reader``);
    ``archive=None`` archives when the layout's users expect an archive (cvat: a zip) and writes a
    folder otherwise; ``part_size`` or ``archive_name`` imply an archive. ``cluster=None`` runs on
    the built-in ``local`` profile (small jobs in this process, larger ones on worker processes of
    this machine) and reads no profile file or environment variable; a profile name reads
    ``cluster_file`` (else ``$MASKCORE_CLUSTER_FILE``, else ``./cluster.yaml``).
    """
    source: str
    destination: str
    layout: str = "supervisely"
    layout_options: dict = field(default_factory=dict)
    reader: str = "auto"
    reader_options: dict = field(default_factory=dict)   # e.g. {"images": DIR} for COCO / CVAT XML
    filters: dict = field(default_factory=dict)          # item selection, see maskcore.exec.filters
    storage_options: dict = field(default_factory=dict)
    cluster: str | None = None
    cluster_file: str | None = None
    workers: int | None = None
    items_per_partition: int | None = None
    full: bool = False                  # ignore the previous manifest: render every item
    verify: bool = False                # hash every item's inputs, trusting no change stamp (exec/stamps.py)
    dry_run: bool = False               # plan and compare with the destination's manifest; render and write nothing
    archive: bool | None = None         # pack the export into <archive_name>.tar (or parts); None: the layout's default
    part_size: int | None = None        # bytes per archive part (implies archive)
    archive_name: str | None = None     # default: <project id>_<project name>
    archive_format: str | None = None   # "tar" | "zip"; default: the layout's default_archive_format, else tar
    repack: bool = False                # incremental archive: lay the parts out as a clean run does
    progress_interval: float = 30.0     # seconds between plain progress lines (not a terminal)
    lock_lease: float | None = None     # seconds a run's lock outlives its last renewal (lease.py)
    dashboard: str | None = None        # serve Dask's dashboard there (local profile) and print its link
    # True/False: force running in this process / on workers; None: by size (cluster.runs_inprocess)
    in_process: bool | None = None
    debug: bool = False

    def __post_init__(self) -> None:
        for name in ("source", "destination"):
            value = getattr(self, name)
            if isinstance(value, os.PathLike):
                object.__setattr__(self, name, os.fspath(value))
            elif not isinstance(value, str) or not value:
                raise ConfigError(f"{name}: expected a path or URL, got {value!r}")
        for name in ("layout_options", "reader_options", "filters", "storage_options"):
            value = getattr(self, name)
            if not isinstance(value, dict):
                raise ConfigError(f"{name}: expected a mapping, got {type(value).__name__}")
            object.__setattr__(self, name, dict(value))  # the caller's dict may change later
        get_layout_class(self.layout)  # ConfigError naming the known layouts
        if self.reader != "auto" and self.reader not in READERS:
            raise ConfigError(f"reader: expected 'auto' or one of {sorted(READERS)}, got {self.reader!r}")
        for name in ("workers", "items_per_partition", "part_size"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ConfigError(f"{name}: expected a positive integer or None, got {value!r}")
        if not isinstance(self.repack, bool):
            raise ConfigError(f"repack: expected true or false, got {self.repack!r}")
        if self.archive not in (None, True, False):
            raise ConfigError(f"archive: expected true, false or None, got {self.archive!r}")
        if self.archive_format not in (None, "tar", "zip"):
            raise ConfigError(f"archive_format: expected 'tar' or 'zip', got {self.archive_format!r}")
        if self.dashboard is not None and (not isinstance(self.dashboard, str) or not self.dashboard):
            raise ConfigError(f"dashboard: expected an address such as 127.0.0.1:8787, got {self.dashboard!r}")
        if self.in_process not in (None, True, False):
            raise ConfigError(f"in_process: expected true, false or None, got {self.in_process!r}")
        if not isinstance(self.progress_interval, (int, float)) or not self.progress_interval > 0:
            raise ConfigError(f"progress_interval: expected seconds > 0, got {self.progress_interval!r}")

    @property
    def archives(self) -> bool:
        """Whether this export is packed into archive files."""
        if self.archive is not None:
            return self.archive
        if self.part_size is not None or self.archive_name:
            return True
        return bool(get_layout_class(self.layout).default_archive_format)


class RunResult:
    """What ``run_export`` returns: the exit code, the report and the manifest (one row per item).
    A manifest the run wrote a part at a time (more than ``state.MANIFEST_PART_ROWS`` items, the
    last run's items at the same places) is read back from the destination when ``manifest`` is
    first asked for: the run never held it whole."""

    def __init__(self, exit_code: int, report: dict, manifest) -> None:
        self.exit_code, self.report, self._manifest = exit_code, report, manifest

    @property
    def manifest(self) -> pa.Table:
        if callable(self._manifest):
            self._manifest = self._manifest()
        return self._manifest

    def __repr__(self) -> str:
        return f"RunResult(exit_code={self.exit_code}, items={self.report.get('items')})"


def _refuse_destination_in_source(source: str, destination: str, storage_options=None) -> None:
    if is_inside(destination, source, storage_options):
        raise RefusedError(f"destination {redact(destination, storage_options)!r} is inside the source "
                           f"{redact(source, storage_options)!r}; maskcore never writes into the source project")


def _absolute(path):
    """A local path made absolute on the driver: workers started elsewhere (an existing scheduler,
    Slurm) resolve a relative path against their own folder. URLs are left as they are."""
    if not isinstance(path, str) or "://" in path or "::" in path:
        return path
    return os.path.abspath(os.path.expanduser(path))


def _refuse_destination_in_images(source, cfg: ExportConfig) -> None:
    """The image folder of a COCO or CVAT source is part of the source: never write into it."""
    if not hasattr(source, "image_filesystem"):
        return
    fs, path = source.image_filesystem()
    if not path:
        return
    folder = path if isinstance(fs, LocalFileSystem) else fs.unstrip_protocol(path)
    if is_inside(cfg.destination, folder, cfg.storage_options):
        raise RefusedError(f"destination {redact(cfg.destination, cfg.storage_options)!r} is inside the "
                           f"source's image folder {redact(folder, cfg.storage_options)!r}; maskcore never "
                           "writes into the source project (give --images, or another destination)")


def run_export(cfg: ExportConfig, log: Callable[[str], None] | None = None, client=None,
               on_partition: Callable[[int], None] | None = None) -> RunResult:
    """Run one export; returns the exit code, the report and the manifest.

    ``client``: an existing ``distributed.Client`` to run on (no cluster is started).
    ``on_partition(n_done)``: called on the driver each time a partition finishes.
    Raises ConfigError/ProjectError when nothing can run and LockedError when another run
    holds the destination.
    """
    emit = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    log_given = log is not None  # then progress lines go to ``log`` too (no live line on stderr)

    def log(msg: str) -> None:  # noqa: F811 - every line is redacted of credentials
        emit(redact(msg, cfg.storage_options))

    started = time.perf_counter()
    cfg = replace(cfg, source=_absolute(cfg.source), destination=_absolute(cfg.destination),
                  reader_options={k: _absolute(v) if k == "images" else v for k, v in cfg.reader_options.items()})
    _refuse_destination_in_source(cfg.source, cfg.destination, cfg.storage_options)
    layout_cls = get_layout_class(cfg.layout)  # ConfigError naming the known layouts
    profile = get_profile(cfg.cluster, cfg.cluster_file)
    if cfg.reader == "auto":
        cfg = replace(cfg, reader=detect_reader(cfg.source, cfg.storage_options))
    cfg = replace(cfg, archive=cfg.archives)
    source = open_source(cfg.reader, cfg.source, cfg.storage_options, **cfg.reader_options)
    _refuse_destination_in_images(source, cfg)
    options = dict(cfg.layout_options)
    if layout_cls.takes_project_name:
        options.setdefault("project", getattr(source, "project_name", "") or "project")
    layout = get_layout(cfg.layout, options)
    meta = source.read_meta()
    layout.check_meta(meta)
    filters = FilterSpec.from_options(cfg.filters)
    filters.check_meta(meta)
    sink = get_sink("dir", cfg.destination, cfg.storage_options)
    if cfg.archive:
        cfg = replace(cfg, archive_name=cfg.archive_name or default_archive_name(source),
                      archive_format=resolve_archive_format(cfg.archive_format, layout))
        refuse_overwriting_source(sink, cfg.archive_name, cfg.source, cfg.storage_options, cfg.archive_format)
    if cfg.dry_run:
        return _dry_run(cfg, layout, source, meta, sink, filters, log, client)
    with _no_trace_of_a_failed_start(cfg.destination), RunLock(sink, cfg.lock_lease, uuid.uuid4().hex[:12]) as lock:
        if lock.taken_over:
            log(f"maskcore: warning: {lock.taken_over}")
        moved = migrate_legacy_state(sink)   # state of an older maskcore in .maskcore/ (exec/legacy.py)
        if moved:
            log(f"maskcore: moved the run state of {LEGACY_STATE_DIR}/ ({moved} files) into {STATE_DIR}/")
        layout.prepare(sink)  # a layout's own refusals (e.g. an existing output folder)
        with ExitStack() as stack:
            def get_client(n_items: int):
                """One cluster for the scan and the export, started only when needed; None: run
                in this process (profile ``inprocess``, or a small ``local`` run)."""
                nonlocal client
                kinds = len(getattr(layout, "masks", None) or ()) or 1
                if client is None and not runs_inprocess(profile, cfg.workers, n_items, kinds, cfg.in_process):
                    client = stack.enter_context(connect(_with_dashboard(profile, cfg.dashboard), cfg.workers,
                                                         log=log, destination=cfg.destination))
                    if cfg.dashboard is not None:
                        log(f"maskcore: dashboard: {client.dashboard_link}")
                elif cfg.dashboard is not None and client is None and not get_client.told:
                    get_client.told = True
                    log(f"maskcore: no dashboard: the {n_items} items run in this process "
                        "(--no-in-process runs them on worker processes)")
                return client
            get_client.told = False
            get_client.given = client is not None
            progress_to = log if log_given else None
            return _run_locked(cfg, layout, profile, source, meta, sink, log, get_client, on_partition, progress_to,
                               started, filters, lock)


def _with_dashboard(profile: dict, address: str | None) -> dict:
    """The profile with its local cluster's dashboard at ``address`` (other kinds: as they are)."""
    if address is None or profile["kind"] != "local":
        return profile
    return {**profile, "local": {**(profile.get("local") or {}), "dashboard_address": address}}


@contextmanager
def _no_trace_of_a_failed_start(destination: str):
    """A run that fails (its cluster does not start, a layout refuses) leaves no folder it
    created: the empty folders of a local destination (the lock's ``.maskcore-meta/tmp``, the
    destination itself) that did not exist before are removed; files are never touched."""
    local = isinstance(destination, str) and "://" not in destination and "::" not in destination
    existed = set()
    if local:
        existed = {p for p in (destination, f"{destination}/{STATE_DIR}", f"{destination}/{TMP_DIR}")
                   if os.path.isdir(p)}
    try:
        yield
    except BaseException:
        if local:
            for folder in (f"{destination}/{TMP_DIR}", f"{destination}/{STATE_DIR}", destination):
                if folder not in existed:
                    try:
                        os.rmdir(folder)   # only when empty
                    except OSError:
                        pass
        raise


def _select(cfg, plan: pa.Table, filters: FilterSpec, source, meta, get_client):
    """Apply the item filters to the plan: listing filters with pyarrow, annotation filters after a
    distributed scan. Returns the plan renumbered into partitions and the report section."""
    if not filters.active():
        return plan, None
    plan, removed = apply_listing_filters(plan, filters)
    unscanned: list = []
    if filters.needs_scan and plan.num_rows:
        parts = partitions(assign_partitions(plan, items_per_partition=cfg.items_per_partition))
        scan = scan_partitions(get_client(plan.num_rows), source, meta, parts)
        plan, more = apply_annotation_filters(plan, scan, filters)
        removed.update(more)
        unscanned = scan_errors(scan)
    plan = assign_partitions(plan, items_per_partition=cfg.items_per_partition)
    return plan, {"removed": removed, "total_removed": sum(removed.values()), "kept_unscanned": unscanned}


def _run_locked(cfg, layout, profile, source, meta, sink, log, get_client, on_partition, progress_to, started,
                filters, lock) -> RunResult:
    plan, filtered, layout = _listed(cfg, layout, source, meta, sink, filters, log, get_client)
    config_fp = _config_fp(cfg, layout, meta, filters)
    run_id = lock.run_id
    damaged: list = []
    last = _last_run(cfg, sink, plan, config_fp, damaged, log)
    plan = last.plan
    for note in damaged:
        log(f"maskcore: warning: {note.message()}")
    if last.attached is None:
        settled = settle(plan, config_fp, last.left)
        plan, parts, keys, resumed = settled.plan, settled.parts, settled.keys, settled.resumed
        untrusted, sweep, n_parts = settled.untrusted, settled.sweep, len(settled.parts)
    else:  # joined a part at a time: nothing to resume (settle's answer for no leftovers)
        resumed, untrusted, sweep, n_parts = {}, 0, False, len(last.attached.bounds) - 1
    if untrusted:
        log(f"maskcore: warning: an unfinished run may have changed the files of {untrusted} "
            f"items since the last finished run; they are rendered again")
    log(f"maskcore: {plan.num_rows} items ({cfg.reader}) in {n_parts} partitions -> {cfg.destination}"
        + (" (incremental)" if last.incremental else "") + (f", {len(resumed)} resumed" if resumed else ""))
    if last.attached is None:
        sent, known = split_unchanged(plan, parts, last.use_stamps)
        sent_by_part = {i: rows for i, rows in enumerate(sent) if rows is not None}
        n_known = sum(t.num_rows for t in known)
        # an incremental archive run renders its changed items afresh: a killed run's partial has no chunk records
        todo = Todo(sent_by_part, keys, {} if last.kept_archive is not None else resumed,
                    sum(t.num_rows for t in sent_by_part.values()))
    else:  # by parts: consecutive partitions sending few rows (a night's scattered new items) share a task
        known, n_known = [], int(np.count_nonzero(last.attached.unchanged))
        todo = last.attached.tasks()
    # the cluster first: a run that cannot start its workers writes nothing (not even meta.json)
    client = get_client(todo.n_rows) if todo else None
    project_files = layout.project_files(meta, json.dumps(meta.raw, indent=4).encode("utf-8"))
    for path, data in [] if cfg.archive else project_files:
        if not (sink.exists(path) and sink.read(path) == data):  # a no-op run touches nothing
            sink.write(path, data)
    task_sink = (TarPartSink(sink, cfg.part_size, cfg.archive_format, render_all=last.kept_archive is None)
                 if cfg.archive else sink)
    spec = TaskSpec(source=source, sink=task_sink, layout=layout, meta=meta, debug=cfg.debug,
                    partials_dir=PARTIALS, filters=filters if filters.filters_labels else None,
                    started_dir=STARTED, run_id=run_id)
    progress = Progress(plan.num_rows, len(todo), interval=cfg.progress_interval, emit=progress_to)
    progress.already_done(n_known)  # unchanged by stamp: no task, no read
    ran_on = "inprocess" if client is None else "client" if get_client.given else profile["kind"]
    try:
        # by parts, the workers' rows are put in item order at the end: their tables merged as they come
        merge = last.attached is not None
        results = _submit_all(client, spec, todo, progress, on_partition, merge) if todo else []
    except FencedError:  # a task found the lock taken over: this run stops (LockedError), commits nothing
        lock.check()
        raise
    progress.close()
    metadata = {FINGERPRINT_KEY: config_fp.encode(), RUN_ID_KEY: run_id.encode(),
                SCOPE_KEY: (layout.folder or "").encode(), ARCHIVE_KEY: b"1" if cfg.archive else b""}
    if last.attached is not None:  # the workers' rows in item order (results come in partition order)
        # (given up, below, when they are not one row per item sent, or a worker died: joined whole)
        changed = workers_rows(results)
        if changed.num_rows != plan.num_rows - n_known or any_died(changed):
            known = last.whole_instead(sink, plan, damaged)  # a worker died (the run sweeps): joined whole
            plan = last.plan
    if last.attached is not None:
        done = _finish_by_parts(cfg, sink, lock, last, plan, changed, project_files, metadata)
    else:
        done = _finish_whole(cfg, sink, last, plan, known + results, project_files, metadata, sweep, run_id)
    own = layout.folder  # a layout writing into its own folder leaves others alone
    stale = done.stale if own is None else [p for p in done.stale if p.startswith(own + "/")]
    sink.delete(stale)
    if not cfg.archive:
        _write_list_files(sink, done.list_files, done.list_before)
    if done.archive is not None:
        named = [(f["part"], f["bytes"], f["sha256"]) for f in done.archive.summary()["files"]]
    else:
        named = [(p, len(d), hashlib.sha256(d).hexdigest()) for p, d in project_files + done.list_files]
    metadata[FILES_KEY] = json.dumps(named).encode()
    swept = []
    if done.sweep:  # files no record names (unfinished run, dead worker)
        swept = unrecorded_files(sink, done.manifest(metadata))
        sink.delete(swept)
        if swept:
            log(f"maskcore: warning: removed {len(swept)} files an unfinished run left that no item "
                f"produces (first {swept[0]!r})")
    report = _report(cfg, {"profile": profile["name"], "from": profile.get("from"), "kind": ran_on}, done.tally,
                     n_parts, todo.n_resumed(),
                     len(stale), config_fp, time.perf_counter() - started, n_sent=todo.n_partitions())
    report["recovery"] = {"untrusted_items": untrusted, "swept_files": len(swept),
                          "damaged_state": [vars(d) for d in damaged]}
    report["lock"] = {"lease_seconds": lock.lease, "taken_over": lock.taken_over}
    report["stamps"] = {"verify": cfg.verify, "unchanged_by_stamp": n_known,
                        "hashed": todo.n_rows}
    report["source_warnings"], report["listed"]["source_warnings"] = listed_source_warnings(
        list(getattr(source, "warnings", None) or []))
    if filtered is not None:
        report["filtered"] = filtered
    if done.archive is not None:
        report["archive"] = done.archive.summary()
        members, relpath = parquet_bytes(done.archive.members_table()), f"{STATE_DIR}/archive_manifest.parquet"
        if not (sink.exists(relpath) and sink.read(relpath) == members):   # a no-op night: as it was
            sink.write(relpath, members)
    lock.check()
    with _committing(report["items"]["failed"]):  # the commit: from here on the manifest is the truth
        if done.writer is None:
            write_manifest(sink, done.manifest(metadata))
        else:
            done.writer.commit(metadata)
    manifest = done.manifest(metadata) if done.manifest is not None else _read_back(sink, run_id)
    return _ended(cfg, sink, report, manifest, done.archive, plan.num_rows == 0 and filtered is not None, log)


def _listed(cfg, layout, source, meta, sink, filters, log, get_client):
    """The run's plan: the source's listing with stamps, its warnings logged, the item selection
    applied; and the report's ``filtered`` section and the layout for this plan."""
    plan = plan_partitions(stamped_listing(source), items_per_partition=cfg.items_per_partition,
                           project_wide_stems=layout.project_wide_stems)
    pa.default_memory_pool().release_unused()  # what listing and planning freed (10M items: ~0.4 GiB held less)
    source_warnings = list(getattr(source, "warnings", None) or [])  # opening and listing (skipped files)
    for text in source_warnings[:SUMMARY_FAILURES]:
        log(f"maskcore: warning: {text}")
    if len(source_warnings) > SUMMARY_FAILURES:
        more = len(source_warnings) - SUMMARY_FAILURES
        log(f"maskcore: warning: ... and {more} more in the report (source_warnings)")
    listing = plan
    plan, filtered = _select(cfg, plan, filters, source, meta, get_client)
    if plan.num_rows == 0 and filtered is not None:
        log(f"maskcore: warning: the item selection matched none of the {listing.num_rows} items"
            + "".join(f"; {hint}" for hint in _closest_names(filters, listing)))
    layout = layout.for_plan(plan)  # layouts whose file tree depends on the listing (isahit)
    if plan.num_rows == 0:
        for text in layout.prepare(sink, 0) or []:
            log(f"maskcore: warning: {text}")
    return plan, filtered, layout


@dataclass
class _LastRun:
    """What a run knows of the last finished run: its manifest's first file (``head``, None when
    there is none or it is damaged), and either the whole manifest (``whole``, joined to ``plan``:
    ``stamps.attach_previous``) or, when nothing is left to resume and the run is not an archive's,
    its records merged with the plan's a part at a time (``attached``: ``stamps.attach_by_parts``:
    items added and removed since too)."""
    head: pa.Table | None
    whole: pa.Table | None
    attached: Attached | None
    plan: pa.Table
    incremental: bool
    use_stamps: bool
    committed_run: str | None
    left: Leftovers
    kept_archive: object = None

    def whole_instead(self, sink, plan: pa.Table, damaged: list) -> list[pa.Table]:
        """Give up the join by parts: the whole manifest read and joined (``whole``, ``plan``) and
        the driver's rows of the items unchanged by stamp."""
        unchanged = self.attached.unchanged
        self.whole = read_manifest(sink, MANIFEST_COLUMNS, damaged, PREVIOUS_COLUMNS, names=plan)
        if self.whole is None:
            raise StateError(f"{MANIFEST}: expected the manifest this run read when it started, got none "
                             "(it was removed or damaged during the run)")
        self.plan, self.attached = attach_previous(plan, self.whole), None
        kept = self.plan.filter(pa.array(unchanged))
        return [unchanged_results(kept)] if kept.num_rows else []


def _last_run(cfg, sink, plan: pa.Table, config_fp: str, damaged: list, log) -> _LastRun:
    """Read what the last finished run left (``_LastRun``); joined a part at a time when it can be."""
    head = read_manifest_head(sink, MANIFEST_COLUMNS, damaged, PREVIOUS_COLUMNS, names=plan)
    incremental = (head is not None and not cfg.full
                   and (head.schema.metadata or {}).get(FINGERPRINT_KEY) == config_fp.encode())
    attached, whole = None, head
    if incremental and not cfg.archive:   # try the join by parts (an archive run keeps the whole manifest)
        try:
            attached = attach_by_parts(manifest_pieces(sink, head, ATTACH_COLUMNS, plan), plan, not cfg.verify,
                                       config_fp)
            whole = None
        except NotAligned:
            pass
        except DamagedManifest as exc:
            exc.set_aside(sink, damaged)
            head = whole = None
    if whole is not None and PARTS_KEY in (head.schema.metadata or {}):
        whole = read_manifest(sink, MANIFEST_COLUMNS, damaged, PREVIOUS_COLUMNS, names=plan)  # with its parts
        head = whole
    committed_run = (head.schema.metadata or {}).get(RUN_ID_KEY, b"").decode() if head is not None else None
    undone = recover_publish(sink, committed_run)   # a run that died publishing its archive: the old set back
    if undone:
        log(f"maskcore: warning: {undone}")
    incremental = incremental and head is not None
    left = read_leftovers(sink, committed_run, damaged)
    if attached is not None and not left.clean:   # an unfinished run to resume or distrust: joined whole
        attached, whole = None, read_manifest(sink, MANIFEST_COLUMNS, damaged, PREVIOUS_COLUMNS, names=plan)
        incremental = whole is not None
    if incremental and whole is not None:
        plan = attach_previous(plan, whole)
    kept_archive = _previous_archive(cfg, sink, whole, log) if cfg.archive and incremental else None
    use_stamps = incremental and (kept_archive is not None or not cfg.archive) and not cfg.verify
    return _LastRun(head, whole, attached, plan, incremental, use_stamps, committed_run, left, kept_archive)


@dataclass
class _Finished:
    """The finish of a run before its commit: ``writer`` holds the new manifest made by parts (its
    parts written, its first file written by the commit; None: the commit writes ``manifest`` whole),
    ``manifest(metadata)`` gives it whole when the run keeps it (else None: read back from the
    destination), ``tally`` its counts; the files to remove and
    the list files to write; ``sweep``: look for files no record names (an unfinished run, a dead
    worker: only a run with its whole manifest in memory)."""
    writer: ManifestWriter | None
    manifest: Callable | None
    tally: Tally
    stale: list
    list_files: list
    list_before: set
    sweep: bool = False
    archive: object = None


def _finish_whole(cfg, sink, last: _LastRun, plan, tables, project_files, metadata, sweep, run_id) -> _Finished:
    """The finish with the whole manifests in memory: a run that may not join by parts (an
    unfinished run resumed, an archive, a dead worker, a plan not in item order)."""
    previous = last.whole
    manifest = pa.concat_tables(tables) if tables else RESULT_SCHEMA.empty_table()
    manifest = in_item_order(manifest)  # no copy when the rows are in order already (a quiet night)
    if last.incremental:
        manifest = carry_unchanged_outputs(manifest, previous)
    manifest = record_stamps(manifest, plan)
    archive = None
    if cfg.archive:  # list lines of every item: rendered now or carried from the previous manifest
        try:
            archive = _finish_archive(cfg, sink, tables, project_files + list_files(manifest), manifest,
                                      last.kept_archive, run_id)
        except BaseException:
            recover_publish(sink, last.committed_run)   # the archive files as the committed manifest names them
            raise
    stale = [] if cfg.archive else stale_outputs(previous, manifest, leftover_outputs(last.left))
    files = [] if cfg.archive else list_files(manifest)
    if not cfg.archive and previous is not None:  # project files an earlier run wrote that this one does not
        now = {p for p, _ in project_files + files}
        stale += [p for p in named_project_files(previous) if p not in now and p not in stale]
    tally = Tally()
    tally.add(manifest)
    return _Finished(None, lambda meta: manifest.replace_schema_metadata(meta), tally, stale, files,
                     list_paths(None if cfg.archive else previous),
                     (sweep or any_died(manifest)) and not cfg.archive, archive)


def _finish_by_parts(cfg, sink, lock, last: _LastRun, plan, changed, project_files, metadata) -> _Finished:
    """The finish a manifest part at a time (``finish.rows_by_parts``): each part of the new
    manifest written as it is made (``ManifestWriter``), counted and compared with the last one's."""
    tally, stale, files, before = Tally(), StaleOutputs(), ListFiles(), set()
    writer, kept = None, []
    lock.check()  # the parts go into the destination's state now
    pieces = manifest_pieces(sink, last.head, PREVIOUS_COLUMNS, plan)
    with _committing(_count_failed(changed)):
        for rows, previous in rows_by_parts(pieces, plan, last.attached.unchanged, changed, last.attached.ranges):
            tally.add(rows)
            stale.add(previous, rows)
            files.add(rows)
            before |= list_paths(previous)
            writer = writer or ManifestWriter(sink, rows.schema.with_metadata(metadata))
            writer.add(rows)
            kept = None if kept is None or writer.named else kept + [rows]  # held only while one part
    now = files.files()
    gone = stale.paths()
    names = {p for p, _ in project_files + now}
    gone += [p for p in named_project_files(last.head) if p not in names and p not in gone]
    manifest = None if kept is None else (lambda meta: pa.concat_tables(kept).replace_schema_metadata(meta))
    return _Finished(writer, manifest, tally, gone, now, before)


def _count_failed(table: pa.Table) -> int:
    return int(pc.sum(pc.equal(table.column("status"), "failed")).as_py() or 0)


@contextmanager
def _committing(n_failed: int):
    """Writing the manifest: a full disk says the run is not committed."""
    try:
        yield
    except OSError as exc:  # a full disk: nothing is committed, the next run resumes what was written
        raise OSError(exc.errno, f"{exc.strerror}: could not write {MANIFEST}, so this run is not committed "
                      f"({n_failed} items failed); free space and run again: finished "
                      "partitions are resumed") from exc


def _read_back(sink, run_id: str):
    """``RunResult.manifest`` of a run whose manifest was written a part at a time: read from the
    destination when first asked for (``state.read_manifest_readonly``)."""
    def read() -> pa.Table:
        table = read_manifest_readonly(sink)
        if table is None or (table.schema.metadata or {}).get(RUN_ID_KEY) != run_id.encode():
            raise StateError(f"{MANIFEST} is no longer run {run_id}'s (a later run committed, or it was "
                               "removed): read the manifest before the next run")
        return table
    return read


def _ended(cfg, sink, report, manifest, archive, empty_selection: bool, log) -> RunResult:
    """After the commit: the report written, the state of the run removed, the summary logged."""
    try:
        sink.write(REPORT, json.dumps(report, indent=2).encode("utf-8"))
    except OSError as exc:  # committed: the exit code and the summary below still say what happened
        log(f"maskcore: warning: could not write {REPORT} ({exc}); the manifest is committed")
    sink.delete([f"{d}/{name}" for d in (PARTIALS, STARTED) for name in sink.listdir(d)])
    sink.clear_temporaries()
    if cfg.archive:
        end_publish(sink)
        discard_chunks(sink)
    code = EXIT_OK if report["items"]["failed"] == 0 else EXIT_PARTIAL
    if empty_selection:
        code = EXIT_EMPTY
    i = report["items"]
    log(f"maskcore: {i['written']} written, {i['unchanged']} unchanged, {i['failed']} failed, "
        f"{report['stale_files_removed']} stale files removed, {report['bytes_written']} bytes in "
        f"{report['seconds']:.1f} s; report: {cfg.destination.rstrip('/')}/{REPORT}")
    for line in summary_lines(report):
        log(line)
    if archive is not None:
        log(archive_line(cfg.destination, [f["part"] for f in report["archive"]["files"]]))
        if archive.mode != "full":
            summary = report["archive"]
            log(f"maskcore: archive ({summary['mode']}): {len(summary['files_written'])} files written, "
                f"{summary['files_kept']} kept as they were")
    return RunResult(code, report, manifest)


ARCHIVE_NAMES_SHOWN = 10


def archive_line(destination: str, names: list[str]) -> str:
    """The archive files a run wrote and where: ``maskcore: archive: p.tar in DST/`` or
    ``maskcore: archive (3 parts): p.tar.001, p.tar.002, p.tar.003 in DST/``
    (the first ``ARCHIVE_NAMES_SHOWN`` and the last)."""
    shown = ", ".join(names[:ARCHIVE_NAMES_SHOWN]) + (f", ... {names[-1]}" if len(names) > ARCHIVE_NAMES_SHOWN else "")
    count = f" ({len(names)} parts)" if len(names) > 1 else ""
    return f"maskcore: archive{count}: {shown} in {destination.rstrip('/')}/"


def _config_fp(cfg, layout, meta, filters: FilterSpec) -> str:
    """What decides the outputs besides the inputs (``state.config_fingerprint``), with the label
    filters and the archive settings."""
    config_fp = config_fingerprint(layout.fingerprint(), canonical_name(cfg.layout), meta.raw)
    if filters.filters_labels:  # dropping labels changes the outputs
        config_fp = hashlib.sha256(f"{config_fp}:labels:{filters.label_key()}".encode()).hexdigest()
    if cfg.archive:  # archive settings change the partition keys: never resume a folder run's partials
        settings = f"{config_fp}:archive:{cfg.part_size}:{cfg.archive_format}"
        config_fp = hashlib.sha256(settings.encode()).hexdigest()
    return config_fp


def _dry_run(cfg, layout, source, meta, sink, filters, log, client) -> RunResult:
    """``--dry-run``: list, select and partition the items, and compare them with the destination's
    manifest by stamp; nothing is rendered and nothing is written (no lock, no state file; an
    annotation filter scans in this process unless a client is given)."""
    sink = state_view(sink)   # state of an older maskcore still in .maskcore/: read there
    plan = plan_partitions(stamped_listing(source), items_per_partition=cfg.items_per_partition,
                           project_wide_stems=layout.project_wide_stems)
    listed = plan.num_rows
    plan, _ = _select(cfg, plan, filters, source, meta, lambda n: client)
    layout = layout.for_plan(plan)
    config_fp = _config_fp(cfg, layout, meta, filters)
    previous = read_manifest_head_readonly(sink)   # its first file; the parts merged one at a time when they can be
    same = previous is not None and (previous.schema.metadata or {}).get(FINGERPRINT_KEY) == config_fp.encode()
    incremental = same and not cfg.full
    attached = None
    if incremental and not cfg.archive:
        try:
            attached = attach_by_parts(manifest_pieces(sink, previous, ATTACH_COLUMNS, plan), plan, not cfg.verify)
        except NotAligned:
            pass
        except DamagedManifest:  # as the whole read's None: the run would set it aside
            attached, previous = None, None
            same = incremental = False
    if attached is None and previous is not None:
        previous = read_manifest_readonly(sink, previous)
        same = same and previous is not None
        incremental = incremental and previous is not None
    if incremental and attached is None:
        plan = attach_previous(plan, previous)
    kept_archive = _previous_archive(cfg, sink, previous, log) if cfg.archive and incremental else None
    unfinished = len(sink.listdir(PARTIALS)) + len(sink.listdir(STARTED))
    use_stamps = incremental and (kept_archive is not None or not cfg.archive) and not cfg.verify
    summary = plan_summary(plan, listed, use_stamps, attached)
    summary.update(destination=redact(cfg.destination, cfg.storage_options), incremental=incremental,
                   previous_manifest=previous is not None, same_settings=same, unfinished_run_files=unfinished)
    lines = summary_text(summary)
    for line in lines:
        log(line)
    return RunResult(EXIT_OK if plan.num_rows or not filters.active() else EXIT_EMPTY,
                     {"dry_run": summary, "lines": lines}, plan)


def _closest_names(filters: FilterSpec, listing: pa.Table) -> list[str]:
    """For each dataset or item name selected that no item has, the closest names that exist."""
    hints = []
    for key, column in (("datasets", "dataset"), ("items", "item")):
        wanted = getattr(filters, key) or ()
        names = sorted(set(listing.column(column).to_pylist())) if listing.num_rows else []
        for name in wanted:
            if name in names or any(ch in name for ch in "*?[") or name.startswith("re:"):
                continue
            close = difflib.get_close_matches(name, names, n=3, cutoff=0.6)
            hints.append(f"no {column} {name!r}" + (f" (did you mean {', '.join(map(repr, close))}?)" if close else ""))
    return hints


SUMMARY_FAILURES = 5
"""Failed items named at the end of a run (all of them are in the report)."""


def summary_lines(report: dict, manifest: pa.Table | None = None) -> list[str]:
    """What a person must see after a run: failures counted by kind with the first few named (item,
    object, reason), and the number of warnings; the report names the first ones of each kind
    (``exec/report.py``), the manifest holds every one of them."""
    del manifest  # the counts are the report's (``listed``)
    lines = []
    failed, counts = report["failures"], report["listed"]["failures"]
    if counts["total"]:
        by_count = sorted(counts["by_kind"].items(), key=lambda kv: (-kv[1], kv[0]))
        kinds = ", ".join(f"{n} {k or None}" for k, n in by_count)
        lines.append(f"maskcore: {counts['total']} items failed ({kinds}):")
        lines += [f"maskcore:   {f['error']}" for f in failed[:SUMMARY_FAILURES]]
        if counts["total"] > SUMMARY_FAILURES:
            lines.append(f"maskcore:   ... and {counts['total'] - SUMMARY_FAILURES} more in the report"
                         + (f" ({counts['listed']} named there; every one in {FULL_LIST})"
                            if counts["listed"] < counts["total"] else ""))
    source, n_source = report.get("source_warnings") or [], report["listed"]["source_warnings"]["total"]
    if n_source:
        where = ("every one is in the report" if len(source) == n_source
                 else f"the first {len(source)} are in the report")
        lines.append(f"maskcore: {n_source} source warnings (first: {source[0]}); {where}")
    warned = report["listed"]["warnings"]
    if warned["warnings"]:
        first = report["warnings"][0]["warnings"][0]
        where = ("every one is in the report" if warned["listed"] == warned["items"] else
                 f"the first {warned['listed']} items are in the report, every one in {FULL_LIST}")
        lines.append(f"maskcore: {warned['warnings']} warnings on {warned['items']} items (first: {first}); {where}")
    return lines


def _finish_archive(cfg, sink, results, project_files, manifest, kept_archive, run_id):
    """Publish the chunks the workers wrote as ``<name>.tar`` (``.zip``) or its parts (``<name>.tar.NNN``);
    with ``kept_archive`` (the previous run's parts), rewrite only the parts that change."""
    records = [r for t in results for r in chunk_records(t)]
    written = pa.concat_tables(results) if results else RESULT_SCHEMA.empty_table()
    written = written.filter(pc.equal(written.column("status"), "ok"))
    missing = unpacked_outputs(written, records)
    if missing:
        raise ArchiveError(f"archive: {len(missing)} written files are in no chunk "
                           f"(first {missing[0]!r}); run again with --full")
    if kept_archive is None:
        return finalize_archive(sink, cfg.archive_name, cfg.part_size, records, project_files, cfg.archive_format,
                                run_id=run_id)
    order = [p for p, _ in project_files] + output_paths(
        manifest.filter(pc.invert(pc.equal(manifest.column("status"), "failed")))).to_pylist()
    return update_archive(sink, kept_archive, cfg.archive_name, cfg.part_size, records, project_files, order,
                          cfg.archive_format, repack=cfg.repack, run_id=run_id)


def _previous_archive(cfg, sink, previous: pa.Table, log):
    """The previous run's archive parts when this run can keep them (``archive_update``), else None
    (logged): then every item is rendered and the archive compacted anew."""
    try:
        table = pq.read_table(pa.BufferReader(sink.read(f"{STATE_DIR}/archive_manifest.parquet")))
    except (OSError, pa.ArrowException):   # missing or unreadable: a full archive run rewrites it
        table = None
    kept, why = read_previous_archive(sink, table, cfg.archive_name, cfg.archive_format,
                                      output_paths(previous).to_pylist(), verify=cfg.verify)
    if kept is None:
        log(f"maskcore: the previous archive cannot be kept ({why}): every item is rendered again")
    return kept


def _write_list_files(sink, files: list[tuple[str, bytes]], before: set[str]) -> None:
    """Write the list files that changed; remove the ones (of ``before``: the last run's) no item
    contributes to any more."""
    for path, data in files:
        if not (sink.exists(path) and sink.read(path) == data):
            sink.write(path, data)
    gone = before - {p for p, _ in files}
    sink.delete(sorted(gone))


def _errors(table: pa.Table) -> list[str]:
    """The error of each failed item of a partition's result (``dataset/item[/object i]: reason``)."""
    return table.filter(pc.equal(table.column("status"), "failed")).column("error").to_pylist()


def _run_inprocess(spec: TaskSpec, todo, progress: Progress, on_partition, merge: bool) -> list[pa.Table]:
    """Every partition in this process, in order: the same task functions a worker runs."""
    task = run_partition  # the task sink decides how a partition writes (in place, or packed)
    spec = replace(spec, tune_memory=False)  # the caller's process keeps its own malloc settings
    results = _Results(merge)
    for i, part, key, done in todo:
        counted = replace(spec, on_item=ItemReporter(i, notify=progress.item_done))  # items as they finish
        table = task(counted, part, key) if done is None else resume_partition(counted, part, key, done)
        results.add(table, i)
        progress.update(table.num_rows, int(pc.sum(pc.equal(table.column("status"), "failed")).as_py() or 0), i)
        progress.name_failures(_errors(table))
        if on_partition is not None:
            on_partition(results.n)
    return results.tables()


def _submit_all(client, spec: TaskSpec, todo, progress: Progress, on_partition, merge: bool = False) -> list[pa.Table]:
    """Each partition of ``todo`` run by a task; their result tables in partition order, or with
    ``merge`` (the caller puts the rows in order) merged as they come (``_Results``)."""
    if client is None:
        return _run_inprocess(spec, todo, progress, on_partition, merge)
    run_token = uuid.uuid4().hex[:12]
    # The spec (source, sink, layout, meta: a few KB pickled) travels with each task: no scatter, so
    # no worker-to-worker transfer (a broadcast scatter was seen to hang on a loaded machine).
    task = run_partition  # the task sink decides how a partition writes (open_partition: in place, or packed)
    # items counted as they finish: each task logs a small event per item on the run's topic
    topic = f"maskcore-progress-{run_token}"
    client.subscribe_topic(topic, lambda event: progress.item_done(*event[1]))
    futures, index, submitted = [], {}, {}
    for k, (i, part, key, done) in enumerate(todo):
        counted = replace(spec, on_item=ItemReporter(i, topic=topic))
        futures.append(client.submit(task, counted, part, key, key=f"maskcore-{run_token}-{i}", pure=False,
                                     retries=2) if done is None else
                       client.submit(resume_partition, counted, part, key, done, key=f"maskcore-{run_token}-{i}",
                                     pure=False, retries=2))
        index[futures[-1].key] = i   # a partition an unfinished run finished is checked (resume_partition)
        submitted[futures[-1].key] = k   # its rows made again if its worker dies (``todo`` holds none)
    watch = watch_of(client)

    def result(future) -> pa.Table:
        try:
            return result_of(future, watch)
        except Exception as exc:  # its worker died: the items one by one, only a killer fails
            if not is_worker_death(exc):
                raise
            _, part, key, done = todo[submitted[future.key]]
            return isolate(client, spec, part, key, future.key, resumed=done is not None)

    # completed(): as they finish, with a look at the workers in between (none left: ClusterError)
    pending = completed(futures, watch)
    del futures  # each future is released as it completes (_collect): no other reference may keep it
    try:
        return _collect(pending, result, index, progress, on_partition, merge)
    finally:
        client.unsubscribe_topic(topic)


def _collect(pending, result, index: dict, progress: Progress, on_partition, merge: bool) -> list[pa.Table]:
    """Each partition's result (``result(future)``) as it completes, returned in partition order
    (``_Results``); ``index``: future key -> partition index."""
    results = _Results(merge)
    for future in pending:
        table = result(future)
        # Released at once: a future still held is one Dask recomputes when the worker holding its
        # result dies, which would write into the destination again, possibly after this run ended.
        future.release()
        results.add(table, index[future.key])
        failed = int(pc.sum(pc.equal(table.column("status"), "failed")).as_py() or 0)
        progress.update(table.num_rows, failed, index[future.key])
        progress.name_failures(_errors(table))
        if on_partition is not None:
            on_partition(results.n)
    return results.tables()


class _Results:
    """The partitions' result tables as they come: ``tables()`` in partition order; with ``merge``,
    every ``MERGED_TABLES`` of them concatenated into one table as they come (rows in no particular
    order, the schema's metadata dropped: not for archive runs, whose tables carry their chunk
    records): ~85k one-row tables held ~1.2 GiB on a night adding 1 % of 10 M items."""

    def __init__(self, merge: bool) -> None:
        self.merge, self.n, self.done, self.order, self.waiting = merge, 0, [], [], []

    def add(self, table: pa.Table, partition: int) -> None:
        self.n += 1
        if not self.merge:
            self.done.append(table)
            self.order.append(partition)
            return
        self.waiting.append(table)
        if len(self.waiting) >= MERGED_TABLES:
            self._merge_waiting()

    def _merge_waiting(self) -> None:
        self.done.append(pa.concat_tables(self.waiting).combine_chunks())
        self.waiting = []

    def tables(self) -> list[pa.Table]:
        if self.merge:
            if self.waiting:
                self._merge_waiting()
            return self.done
        return [self.done[k] for k in np.argsort(self.order, kind="stable")]


MERGED_TABLES = 1024
"""Result tables concatenated at a time by ``_Results(merge=True)``."""


def _report(cfg, cluster, tally: Tally, n_parts, n_resumed, n_stale, config_fp, seconds, n_sent=None) -> dict:
    """The report from the manifest's counts (``finish.Tally``): only the failed and warned items
    the report names are Python rows. Partitions: ``run`` by a task from the start, ``resumed`` (a
    task checked what an unfinished run finished), ``unchanged_by_stamp`` (no task: every item
    unchanged by its stamps); ``n_sent``: partitions given to tasks (default: all)."""
    n_sent = n_parts if n_sent is None else n_sent
    failed, failed_counts = tally.failures()  # the first of each kind named, all counted
    warned, warned_counts = tally.warnings()
    return {
        "maskcore_version": __version__,
        "source": redact(cfg.source, cfg.storage_options),
        "destination": redact(cfg.destination, cfg.storage_options),
        "layout": cfg.layout,
        "layout_options": cfg.layout_options,
        "cluster": cluster,  # the profile, and where the tasks ran: inprocess, client, local, slurm, ...
        "partitions": {"total": n_parts, "resumed": n_resumed, "run": n_sent - n_resumed,
                       "unchanged_by_stamp": n_parts - n_sent},
        "items": {"total": tally.items, "written": tally.written, "unchanged": tally.unchanged,
                  "failed": failed_counts["total"]},
        "files_written": tally.files_written,
        "bytes_written": tally.bytes_written,
        "stale_files_removed": n_stale,
        "seconds": round(seconds, 3),
        "config_fingerprint": config_fp,
        "input_fingerprint": tally.fingerprint(),
        "failures": failed,
        "warnings": warned,
        "listed": {"failures": failed_counts, "warnings": warned_counts, "full_list": FULL_LIST},
    }
