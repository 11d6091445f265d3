"""Ten million items on the driver (issue 17.3): plan, partition, compare stamps, write the manifest.

A synthetic listing (no store, no rendering) of N items in 100 datasets, with S3-like change stamps
(ETag + LastModified + size), and a previous manifest recording the same stamps: the driver's whole
work of a no-op night, step by step, as ``maskcore.exec.run`` does it:
  plan        ``plan_partitions`` (output folders, safe unique names and mask stems, partitions)
  attach      ``run._last_run``: the last manifest read a file at a time (its checksums, stamps and
              status) and joined to the plan's rows of the same range (``stamps.attach_by_parts``:
              only the rows to hash kept, the keys of the partitions sending them made on the way)
  split       ``Attached.todo``: the partitions sent to workers (none on a no-op night)
  finish      ``run._finish_by_parts``: each file of the last manifest read again with its outputs,
              the new manifest's rows of its range made (unchanged items' rows, outputs carried,
              stamps recorded), counted for the report (named failures, warnings, input
              fingerprint), compared for stale outputs and list files, and written as a part
              (``state.ManifestWriter``: files of ``MANIFEST_PART_ROWS`` rows)
  commit      the manifest's first file, naming the parts
Before the steps, the last run's manifest is written the same way into a temporary destination;
then the peak RSS (VmHWM) is started anew (``/proc/self/clear_refs``), and again after each step, so
that the peak printed for a step is its own (from what the steps before held; ``/usr/bin/time``'s
maximum includes the making of the synthetic input). Prints CPU and wall seconds, the peak during
and the RSS held after each step.

Usage:
  python benchmarks/plan_bench.py [--items 10000000] [--workdir DIR] [--added 0.01 --removed 0.01 [--whole]]

``--added`` / ``--removed``: a night where new images arrived and others were deleted (random
items): the added ones are sent to workers (their rows made here, step ``results``, as the workers
would send them), the removed ones' outputs are stale. ``--whole``: the last manifest joined whole
(``attach_by_parts`` refused), the path such a night took before the merge join by parts.
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


def _cpu() -> float:
    """CPU seconds of this process (user + system): what a step costs whatever the machine's load."""
    use = resource.getrusage(resource.RUSAGE_SELF)
    return use.ru_utime + use.ru_stime


def _rss_mib() -> float:
    """Peak resident memory (VmHWM) since the start or since ``_reset_peak``; else ru_maxrss."""
    return _status_mib("VmHWM:") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _reset_peak() -> bool:
    """Start the peak (VmHWM) anew from what is resident now (Linux ``clear_refs``): the run's peak
    without the making of the synthetic listing and last manifest before it."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _now_mib() -> float:
    """Resident memory now (VmRSS), not the peak: what a step still holds when it ends."""
    return _status_mib("VmRSS:")


def _status_mib(key: str) -> float:
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith(key)) / 1024
    except (OSError, StopIteration):
        return 0.0


def synthetic_listing(n: int, block: int = 1_000_000) -> tuple[pa.Table, float]:
    """N items ``ds00/img_0000000.jpg`` ... in 100 datasets, with paths, sizes and S3-like stamps,
    made and stamped (``stamps.with_stamps``: text stamps digested) a block of items at a time, as
    a reader listing page by page would; and the seconds ``with_stamps`` took."""
    from maskcore.exec.stamps import with_stamps

    tables, seconds = [], 0.0
    for start in range(0, n, block):
        text = _listing_block(start, min(n, start + block), n)
        t = time.perf_counter()
        tables.append(with_stamps(text))
        seconds += time.perf_counter() - t
    return (pa.concat_tables(tables) if tables else with_stamps(_listing_block(0, 0, 0))), seconds


def _listing_block(start: int, end: int, n: int) -> pa.Table:
    i = pa.array(np.arange(start, end, dtype=np.int64))
    num = pc.utf8_lpad(pc.cast(i, pa.string()), 8, "0")
    ds = pc.binary_join_element_wise("ds", pc.utf8_lpad(pc.cast(pc.divide(i, max(1, n // 100)), pa.string()),
                                                        2, "0"), "")
    item = pc.binary_join_element_wise("img_", num, ".jpg", "")
    etag = pc.binary_join_element_wise('ETag="', pc.utf8_lpad(pc.cast(pc.multiply(i, 7919), pa.string()), 32, "a"),
                                       '";LastModified=2026-11-30 02:15:00+00:00;size=', "")
    return pa.table({
        "dataset": ds, "item": item,
        "ann_path": pc.binary_join_element_wise(ds, "/ann/", item, ".json", ""),
        "img_path": pc.binary_join_element_wise(ds, "/img/", item, ""),
        "ann_bytes": pa.array(np.full(len(i), 900, np.int64)), "img_bytes": pa.array(np.full(len(i), 120000, np.int64)),
        "ann_stamp": pc.binary_join_element_wise(etag, "900", ""),
        "img_stamp": pc.binary_join_element_wise(etag, "120000", ""),
    })


def _random_hex(n: int, width: int) -> pa.Array:
    """``n`` random lowercase hex strings of ``width`` characters (checksums: they do not compress)."""
    digits = np.frombuffer(b"0123456789abcdef", np.uint8)[
        np.random.default_rng(n + width).integers(0, 16, n * width, dtype=np.uint8)]
    offsets = np.arange(n + 1, dtype=np.int64) * width
    return pa.LargeStringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(digits.tobytes())).cast(pa.string())


def previous_manifest(plan: pa.Table) -> pa.Table:
    """What the last run recorded: every item ok, one output each, the same stamps."""
    from maskcore.exec.stamps import repeated_text
    from maskcore.exec.task import OUTPUT_TYPE, RESULT_SCHEMA

    n = plan.num_rows
    sha = _random_hex(n, 64)
    path = pc.binary_join_element_wise(plan.column("out_dir"), "/masks_machine/", plan.column("mask_stem"), ".png", "")
    outputs = pa.ListArray.from_arrays(pa.array(np.arange(n + 1, dtype=np.int32)), pa.StructArray.from_arrays(
        [pc.cast(path, pa.string()).combine_chunks(), pa.array(np.full(n, 300, np.int64)), _random_hex(n, 64)],
        fields=list(OUTPUT_TYPE)))
    cols = {"dataset": plan.column("dataset"), "item": plan.column("item"), "out_dir": plan.column("out_dir"),
            "out_name": plan.column("out_name"), "mask_stem": plan.column("mask_stem"),
            "status": repeated_text("ok", n), "ann_sha256": sha, "img_sha256": _random_hex(n, 64),
            "outputs": outputs, "bytes_written": pa.array(np.full(n, 300, np.int64)),
            "seconds": pa.array(np.zeros(n))}
    arrays = [cols[f.name] if f.name in cols else
              (pa.ListArray.from_arrays(pa.array(np.zeros(n + 1, np.int32)), pa.array([], f.type.value_type),
                                        type=f.type) if pa.types.is_list(f.type) else pa.nulls(n, f.type))
              for f in RESULT_SCHEMA]
    table = pa.Table.from_arrays([pc.cast(a, f.type) for a, f in zip(arrays, RESULT_SCHEMA)], schema=RESULT_SCHEMA)
    table = table.append_column("ann_stamp", plan.column("ann_stamp"))
    return table.append_column("img_stamp", plan.column("img_stamp"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=10_000_000)
    ap.add_argument("--workdir", default=None,
                    help="where the destination's .maskcore-meta/ goes (default: a temporary folder)")
    ap.add_argument("--added", type=float, default=0.0,
                    help="fraction of the night's items the last run did not list (new images): sent to workers")
    ap.add_argument("--removed", type=float, default=0.0,
                    help="fraction of --items more the last run listed and the night does not (their outputs stale)")
    ap.add_argument("--whole", action="store_true",
                    help="join the last manifest whole (the join by parts refused: the run's path before it merged)")
    args = ap.parse_args()

    from types import SimpleNamespace

    from maskcore.exec import run as run_module
    from maskcore.exec.finish import workers_rows
    from maskcore.exec.plan import partitions, plan_partitions
    from maskcore.exec.run import FINGERPRINT_KEY, _finish_by_parts, _finish_whole, _last_run, _Results
    from maskcore.exec.stamps import NotAligned, split_unchanged
    from maskcore.exec.state import RUN_ID_KEY, ManifestWriter, write_manifest
    from maskcore.exec.task import RESULT_SCHEMA
    from maskcore.io.sinks import get_sink

    n_added, n_removed = round(args.items * args.added), round(args.items * args.removed)
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        sink = get_sink("dir", tmp)
        listing, stamp_seconds = synthetic_listing(args.items + n_removed)
        # which items only the last run listed (removed since) and which only tonight's (added): random, disjoint
        pick = np.random.default_rng(17).permutation(listing.num_rows)[:n_added + n_removed]
        only_last, only_now = np.zeros(listing.num_rows, bool), np.zeros(listing.num_rows, bool)
        only_last[pick[n_added:]], only_now[pick[:n_added]] = True, True
        planned = plan_partitions(listing.filter(pa.array(~only_now)) if n_added else listing)
        writer = None  # the last run's manifest, made and written a part at a time (``ManifestWriter``)
        last_meta = {RUN_ID_KEY: b"last", FINGERPRINT_KEY: b"fp"}
        for k in range(0, max(1, planned.num_rows), 262_144):
            part = previous_manifest(planned.slice(k, 262_144))
            writer = writer or ManifestWriter(sink, part.schema.with_metadata(last_meta))
            writer.add(part)
            del part
        writer.commit()
        del planned, writer
        listing = listing.filter(pa.array(~only_last)) if n_removed else listing
        del only_last, only_now, pick
        rss0 = _rss_mib()
        print(f"listing: text stamps digested in {stamp_seconds:.1f} s (reader side, not in the total); "
              f"peak RSS so far {rss0:.0f} MiB, {_now_mib():.0f} MiB held "
              "(making the listing and the last run's manifest)")
        reset = _reset_peak()
        print(f"peak RSS {'started anew' if reset else 'NOT reset (no /proc/self/clear_refs)'} at "
              f"{_now_mib():.0f} MiB held: the peaks below are the run's")
        times, cpu, peaks, held = {}, {}, {}, {}
        start, cpu0 = time.perf_counter(), _cpu()
        t, c = start, cpu0

        def step(name):
            nonlocal t, c
            now, now_cpu = time.perf_counter(), _cpu()
            times[name], cpu[name], peaks[name] = round(now - t, 1), round(now_cpu - c, 1), round(_rss_mib())
            held[name] = round(_now_mib())
            _reset_peak()  # the next step's peak is its own
            t, c = now, now_cpu

        plan = plan_partitions(listing)
        del listing
        pa.default_memory_pool().release_unused()  # as exec.run does after planning
        step("plan")
        cfg = SimpleNamespace(full=False, archive=False, verify=False)
        if args.whole:
            def refused(*a):
                raise NotAligned("refused (--whole)")
            run_module.attach_by_parts = refused
        last = _last_run(cfg, sink, plan, "fp", [], print)  # as exec.run reads it: joined a part at a time
        assert (last.attached is None) == args.whole, "not joined as asked"
        step("attach")
        if last.attached is not None:
            todo = last.attached.tasks()   # the run's tasks, each one's table made when the loop below asks for it
            n_parts, n_sent, sent = len(last.attached.bounds) - 1, todo.n_rows, None
        else:
            plan = last.plan
            parts = partitions(plan)
            sent, known = split_unchanged(plan, parts, last.use_stamps)
            n_parts, todo = len(parts), [(i, rows, None, None) for i, rows in enumerate(sent) if rows is not None]
            n_sent = sum(rows.num_rows for _, rows, _, _ in todo)
        assert n_sent == n_added and (n_added or not todo) and n_parts
        step("split")
        # what the workers send back for the items they hashed (synthetic: one new output each), collected
        # as the run collects them (merged as they come when joined by parts)
        n_tasks = len(todo)
        collected = _Results(last.attached is not None)
        for k, (_, rows, _, _) in enumerate(todo):
            collected.add(previous_manifest(rows).select(RESULT_SCHEMA.names), k)
        results = collected.tables()
        del todo, sent, collected
        step("results")
        metadata = {FINGERPRINT_KEY: b"fp", RUN_ID_KEY: b"now"}
        if last.attached is not None:
            changed = workers_rows(results)
            del results
            done = _finish_by_parts(cfg, sink, SimpleNamespace(check=lambda: None), last, plan, changed, [], metadata)
        else:
            done = _finish_whole(cfg, sink, last, plan, known + results, [], metadata, False, "now")
            del known, results
        failed, warned = done.tally.failures()[0], done.tally.warnings()[0]
        assert len(done.stale) == n_removed and not failed and not warned and done.tally.fingerprint()
        assert done.tally.unchanged == args.items - n_added and done.tally.written == n_added
        step("finish")
        if done.writer is not None:
            done.writer.commit(metadata)
        else:
            write_manifest(sink, done.manifest(metadata))
        step("commit")
        total, total_cpu = time.perf_counter() - start, _cpu() - cpu0
    joined = "whole" if args.whole else "by parts"
    print(f"{args.items} items (+{n_added} added, -{n_removed} removed, joined {joined}), "
          f"{n_parts} partitions, {n_tasks} tasks: wall seconds {times}, total {total:.1f} s; CPU seconds "
          f"{cpu}, total {total_cpu:.1f} s; peak RSS during each step (MiB) {peaks}; RSS held after each step (MiB) "
          f"{held}; load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
