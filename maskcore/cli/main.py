"""The ``maskcore`` command line: ``run JOB``, ``export SRC DST``, ``import SRC DST`` and ``verify DST``.

Exit codes: 0 all items exported (or unchanged; ``verify``: the destination is what its manifest
says), 3 some items failed (named in the report), 1 nothing could run (unreadable project, bad
configuration, no manifest to verify), 2 bad command line, 4 refused to run (another run holds
the destination, or the destination is inside the source), 5 ``verify`` found missing, different
or extra files.
"""

from __future__ import annotations

import argparse
import functools
import gc
import signal
import sys
from dataclasses import replace

from .. import __version__
from ..errors import ConfigError, MaskcoreError, RefusedError
from ..exec.cluster import default_profile_name
from ..exec.filters import add_filter_arguments, cli_filter_options
from ..exec.memory import keep_freed_heap
from ..exec.progress import stamped_stderr
from ..exec.run import EXIT_FATAL, EXIT_OK, EXIT_REFUSED, EXIT_UNVERIFIED, EXIT_USAGE, ExportConfig, run_export
from ..io.storage import merge_options, parse_storage_options, redact
from ..layouts import LAYOUTS, canonical_name, get_layout, options_help
from . import clusters as cluster_cli


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _size(text: str) -> int:
    from ..errors import ConfigError
    from ..io.archive import parse_size
    try:
        return parse_size(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _key_value(text: str) -> tuple[str, object]:
    import json
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(value)
    except ValueError:
        return key, value


def _add_execution_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--archive", action="store_true",
                   help="pack the export into an archive (<name>.tar, or .zip for the cvat layout)")
    p.add_argument("--no-archive", action="store_true",
                   help="write a folder even for layouts that default to an archive (cvat)")
    p.add_argument("--archive-format", choices=("tar", "zip"),
                   help="archive format (default: the layout's, zip for cvat, else tar)")
    p.add_argument("--part-size", type=_size, metavar="SIZE",
                   help="split an archive larger than SIZE (500MiB, 2GB) into parts filled up to SIZE "
                        "(<name>.tar.001, ... as the reference app: cat joins them into one tar; "
                        "zip: <name>_part_001.zip, ...; a smaller export stays one <name>.tar); implies --archive")
    p.add_argument("--archive-name", metavar="NAME",
                   help="archive name (default: Supervisely <project id>_<project name>, COCO/CVAT the "
                        "folder holding the JSON/XML)")
    p.add_argument("--repack", action="store_true",
                   help="archive: lay the parts out as a clean run does (an incremental run keeps unchanged "
                        "parts and moves new and grown files to the last parts)")
    p.add_argument("--workers", type=_positive_int, help="worker processes (default: one per core)")
    p.add_argument("--cluster", help="cluster profile from cluster.yaml (default: local)")
    p.add_argument("--in-process", action=argparse.BooleanOptionalAction, default=None,
                   help="run in this process (--in-process) or on worker processes (--no-in-process); "
                        "default: in this process when the job is small (the profile's inprocess_below)")
    p.add_argument("--cluster-file", help="profiles file (default: ./cluster.yaml)")
    p.add_argument("--items-per-partition", type=_positive_int, help="items per Dask task")
    p.add_argument("--storage-option", action="append", default=[], metavar="KEY=VALUE",
                   help="fsspec option for source and destination, repeatable; dots nest "
                        "(client_kwargs.endpoint_url=http://...); JSON values are parsed")
    p.add_argument("--full", action="store_true",
                   help="render every item, ignoring what the last run already exported")
    p.add_argument("--dry-run", action="store_true",
                   help="print what a run would do (items, partitions, unchanged by stamp, bytes to "
                        "read) against the destination's manifest; render and write nothing")
    p.add_argument("--verify", action="store_true",
                   help="read and hash every item's inputs instead of trusting the store's change "
                        "stamps (ETag, mtime) for unchanged ones")
    p.add_argument("--progress-interval", type=float, metavar="SECONDS",
                   help="seconds between progress lines when not on a terminal (default 30)")
    p.add_argument("--debug", action="store_true", help="include tracebacks in item errors")
    p.add_argument("--dashboard", nargs="?", const="127.0.0.1:8787", metavar="ADDR",
                   help="serve Dask's dashboard (local cluster: at ADDR, default 127.0.0.1:8787) and "
                        "print its link; default: no dashboard link")
    p.add_argument("--lock-lease", type=float, metavar="SECONDS",
                   help="how long the destination's lock outlives its last renewal (default 300, "
                        "or MASKCORE_LOCK_LEASE); a killed run's lock is taken over after it")
    add_filter_arguments(p)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="maskcore", description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--version", action="version", version=f"maskcore {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser = functools.partial(sub.add_parser, allow_abbrev=False)  # --thicknes must not mean --thickness

    run = sub.add_parser("run", help="execute a job spec (YAML or JSON)")
    run.add_argument("job", help="job file, e.g. jobs/demo.yaml")
    run.add_argument("--output", help="destination (overrides the job's)")
    run.add_argument("--source", help="DTL job given as a lone save_masks layer: the project to read")
    _add_execution_args(run)

    exp = sub.add_parser("export", help="export a project to a mask layout", epilog=options_help(),
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    exp.add_argument("project", help="source: Supervisely project folder or .tar, COCO instances .json, "
                                     "CVAT annotations.xml (or its folder or .zip), Segmentation mask 1.1 "
                                     "folder or .zip (path or URL)")
    exp.add_argument("destination", help="output folder (path or URL)")
    _add_source_args(exp)
    exp.add_argument("--layout", default="supervisely", type=canonical_name, choices=sorted(LAYOUTS),
                     help="output layout (default: supervisely)")
    exp.add_argument("--masks", help="supervisely: comma-separated mask kinds, a subset of "
                                     "machine,semantic,human,instance (default: all four)")
    exp.add_argument("--thickness", type=_positive_int,
                     help="line and point thickness in pixels (default: 2; save-masks: 1), in the "
                          "masks and the human previews: points drawn at 2 are 5-pixel crosses, so "
                          "raise it (e.g. 8-12) for previews of large photos that people look at")
    exp.add_argument("--human-resize", type=float, metavar="PERCENT",
                     help="supervisely: shrink the human previews to PERCENT of their size")
    exp.add_argument("--no-images", action="store_true", help="supervisely: do not copy images to img/")
    exp.add_argument("--with-images", action="store_true", help="cvat: copy images to JPEGImages/")
    exp.add_argument("--machine-colors", metavar="FILE",
                     help="save-masks: JSON {class: [r, g, b]} for masks_machine")
    exp.add_argument("--human-colors", metavar="FILE",
                     help="save-masks: JSON {class: [r, g, b]} for masks_human")
    exp.add_argument("--max-canvas-pixels", type=_positive_int,
                     help="refuse items whose canvas is larger (default 2**28 pixels)")
    exp.add_argument("-o", "--option", action="append", default=[], type=_key_value, metavar="KEY=VALUE",
                     help="any layout option (JSON values are parsed), repeatable")
    _add_execution_args(exp)

    imp = sub.add_parser("import", help="turn a CVAT Segmentation mask 1.1 zip or folder into a "
                                        "Supervisely project (one bitmap object per instance)")
    imp.add_argument("project", help="Segmentation mask 1.1 .zip or folder (path or URL)")
    imp.add_argument("destination", help="output Supervisely project folder (path or URL)")
    imp.add_argument("--images", metavar="DIR", help="the items' images (<id>.<ext>) when the archive "
                                                     "has no JPEGImages/ (exported without images)")
    _add_execution_args(imp)

    ver = sub.add_parser("verify", help="check every file the destination's manifest names (size, sha256) "
                                        "and list missing, different and extra files")
    ver.add_argument("destination", help="an export's destination (path or URL)")
    ver.add_argument("--storage-option", action="append", default=[], metavar="KEY=VALUE",
                     help="fsspec option for the destination, repeatable; dots nest")
    ver.add_argument("--debug", action="store_true", help="show tracebacks")
    cluster_cli.add_parser(sub)
    return parser


LISTED = 20
"""Paths of each kind ``maskcore verify`` prints (all of them are counted)."""


def _verify(args) -> int:
    from ..exec.legacy import state_view
    from ..exec.verify import verify_destination
    from ..io.sinks import get_sink
    options = parse_storage_options(args.storage_option)
    result = verify_destination(state_view(get_sink("dir", args.destination, options)))
    for kind, paths in (("missing", result.missing), ("different", result.different), ("extra", result.extra)):
        for path in paths[:LISTED]:
            print(f"{kind}: {redact(path, options)}")
        if len(paths) > LISTED:
            print(f"{kind}: ... and {len(paths) - LISTED} more")
    print(f"maskcore verify: {redact(result.summary(), options)}: {'clean' if result.clean else 'DIFFERS'}")
    return EXIT_OK if result.clean else EXIT_UNVERIFIED


def _add_source_args(p: argparse.ArgumentParser) -> None:
    from ..readers import READERS
    p.add_argument("--reader", choices=("auto", *sorted(READERS)), default="auto",
                   help="source format (default: detected from the source)")
    p.add_argument("--images", metavar="DIR", help="COCO / CVAT XML: image folder (default: next to the file)")


def _json_file(path: str, what: str):
    import json

    from ..errors import ConfigError
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{what}: expected a readable JSON file, got {path!r}: {exc}") from None


def _layout_options(args) -> dict:
    """Layout options from the flags the user gave (each layout keeps its own defaults)."""
    options: dict = {}
    if args.masks is not None:
        options["masks"] = args.masks
    if args.thickness is not None:
        options["thickness"] = args.thickness
    if args.human_resize is not None:
        options["human_resize_percent"] = args.human_resize
    if args.no_images:
        options["copy_images"] = False
    if args.with_images:
        options["with_images"] = True
    if args.max_canvas_pixels is not None:
        options["max_canvas_pixels"] = args.max_canvas_pixels
    if args.machine_colors:
        options.update(masks_machine=True, gt_machine_color=_json_file(args.machine_colors, "--machine-colors"))
    if args.human_colors:
        options.update(masks_human=True, gt_human_color=_json_file(args.human_colors, "--human-colors"))
    if canonical_name(args.layout) == "save-masks":
        options.setdefault("masks_machine", False)
        options.setdefault("masks_human", False)
    options.update(dict(args.option))
    return options


def _job_config(args) -> ExportConfig:
    """A maskcore job spec (YAML/JSON mapping) or a Supervisely DTL job (JSON list of layers)."""
    from .dtl import is_dtl_job, load_dtl_file
    from .jobspec import load_job
    doc = None
    if args.job.endswith(".json"):
        import json
        try:
            with open(args.job, encoding="utf-8") as f:
                doc = json.load(f)
        except (OSError, ValueError):
            doc = None  # load_job says what is wrong with the file
    if not is_dtl_job(doc):
        if args.source:
            from ..errors import ConfigError
            raise ConfigError("--source: only for DTL jobs (a maskcore job spec names its source)")
        return load_job(args.job, destination=args.output)
    job = load_dtl_file(args.job, source=args.source, output=args.output,
                        warn=lambda text: print(f"maskcore: warning: {text}", file=sys.stderr))
    cfg = job.config
    if job.datasets is not None:
        cfg = replace(cfg, filters={**cfg.filters, "datasets": list(job.datasets)})
    return cfg


def _config(args) -> ExportConfig:
    if args.command == "run":
        cfg = _job_config(args)
    elif args.command == "import":
        cfg = ExportConfig(source=args.project, destination=args.destination, reader="cvat-masks",
                           layout="supervisely-project",
                           reader_options={"images": args.images} if args.images else {})
    else:
        reader_options = {"images": args.images} if args.images else {}
        cfg = ExportConfig(source=args.project, destination=args.destination, layout=args.layout,
                           layout_options=_layout_options(args), reader=args.reader,
                           reader_options=reader_options)
    changes = {key: getattr(args, key) for key in ("workers", "cluster", "cluster_file", "items_per_partition",
                                                   "progress_interval", "part_size", "archive_name",
                                                   "lock_lease", "archive_format", "dashboard", "in_process")
               if getattr(args, key) is not None}
    if args.archive:
        changes["archive"] = True
    if args.no_archive:
        changes["archive"] = False
    if args.repack:
        changes["repack"] = True
    if "cluster" not in changes and not cfg.cluster:
        changes["cluster"] = default_profile_name(changes.get("cluster_file") or cfg.cluster_file)
    return replace(cfg, **changes, debug=args.debug, full=cfg.full or args.full, verify=cfg.verify or args.verify,
                   dry_run=args.dry_run,
                   filters={**cfg.filters, **cli_filter_options(args)},
                   storage_options=merge_options(cfg.storage_options, parse_storage_options(args.storage_option)))


EXIT_SIGINT = 130   # 128 + SIGINT, as shells report it
EXIT_SIGTERM = 143  # 128 + SIGTERM


class Terminated(BaseException):
    """SIGTERM (cron, systemd, Kubernetes, Slurm) raised in the main thread: unwinds the run like
    Ctrl-C does, so that the lock is released and the workers stopped on the way out."""


def _on_sigterm(signum, frame) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM must not cut the cleanup short
    raise Terminated()


def main(argv: list[str] | None = None) -> int:
    """The ``maskcore`` command. ``argv`` None: the arguments of this process, which is then the
    command's own (the console script, ``python -m maskcore``) and is set up as one (``_own_process``);
    with a list (tests, a caller's process) nothing process-wide is changed."""
    args = build_parser().parse_args(argv)
    if argv is None:
        _own_process()
    with stamped_stderr():  # plain logs (not a terminal): every line starts with an ISO-8601 UTC time
        return _signalled(args)


def _own_process() -> None:
    """Process-wide settings for a process that is only this command, once its imports are done.

    - ``gc.freeze()``: the objects alive now (the imported modules: numpy, pyarrow, fsspec,
      shapely, maskcore) leave the cyclic collector's generations, so its full collections during
      the run and the one at interpreter exit no longer walk them (exit measured 165 -> 50 ms
      after the imports; each full collection ~48 ms -> a few ms). They are never garbage: a
      module lives until exit.
    - ``keep_freed_heap()``: freed heap kept for reuse, as in worker processes (runs small enough
      for in-process mode render in this process: page faults of the 108-item facade export
      measured 60 k -> 26 k).
    - pandas cannot be imported (``_NoPandas``) unless something imported it already: maskcore
      never uses it, but pyarrow imports it, when it is installed, on the first ``pa.array`` of a
      Python list, only to ask whether the list is a pandas object (measured 250 ms CPU per
      command with pandas 2.3, pyarrow 26; many users' environments have pandas). pyarrow takes
      the ImportError as "no pandas". (``sys.modules["pandas"] = None`` does not do: pyarrow's
      compiled import returns the None.)
    """
    gc.freeze()
    keep_freed_heap()
    if "pandas" not in sys.modules:
        sys.meta_path.insert(0, _NoPandas())


class _NoPandas:
    """A meta path finder that refuses ``pandas`` (see ``_own_process``)."""

    def find_spec(self, name, path=None, target=None):
        if name == "pandas" or name.startswith("pandas."):
            raise ModuleNotFoundError(f"pandas is not used by the maskcore command (import of {name!r} refused)",
                                      name=name)
        return None


def _signalled(args) -> int:
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        return _main(args)
    except (KeyboardInterrupt, Terminated) as exc:
        name = "SIGTERM" if isinstance(exc, Terminated) else "SIGINT"
        print(f"maskcore: stopped by {name}: no manifest written; the next run resumes", file=sys.stderr)
        return EXIT_SIGTERM if isinstance(exc, Terminated) else EXIT_SIGINT
    finally:
        signal.signal(signal.SIGTERM, previous)


def _main(args) -> int:
    options: dict = {}
    try:
        if args.command == "verify":
            return _verify(args)
        if args.command == "cluster":
            return cluster_cli.run(args)
        try:
            cfg = _config(args)
            if args.command == "export":  # flags the layout refuses are a usage error, as argparse's are
                get_layout(cfg.layout, cfg.layout_options)
        except ConfigError as exc:
            if args.command != "export":
                raise
            hint = ("; on the command line: --machine-colors FILE and/or --human-colors FILE"
                    if canonical_name(args.layout) == "save-masks" and "masks_" in str(exc) else "")
            print(f"maskcore: usage error: {redact(str(exc), options)}{hint}", file=sys.stderr)
            return EXIT_USAGE
        options = cfg.storage_options
        result = run_export(cfg, log=print if cfg.dry_run else None)
    except RefusedError as exc:
        print(f"maskcore: refused: {redact(str(exc), options)}", file=sys.stderr)
        return EXIT_REFUSED
    except MaskcoreError as exc:
        print(f"maskcore: error: {redact(str(exc), options)}", file=sys.stderr)
        if args.debug:
            raise
        return EXIT_FATAL
    except OSError as exc:  # the store refused: destination is a file, no space, no permission
        print(f"maskcore: error: {redact(f'{type(exc).__name__}: {exc}', options)}", file=sys.stderr)
        if args.debug:
            raise
        return EXIT_FATAL
    return result.exit_code


if __name__ == "__main__":
    sys.exit(main())
