"""The ``maskcore`` command line: ``run JOB`` and ``export PROJECT DST``.

Exit codes: 0 all items exported (or unchanged), 3 some items failed (named in the report),
1 nothing could run (unreadable project, bad configuration), 2 bad command line, 4 refused to run
(another run holds the destination, or the destination is inside the source).
"""

from __future__ import annotations

import argparse
import sys

from . import __version__
from .errors import MaskcoreError, RefusedError
from .run import EXIT_FATAL, EXIT_REFUSED, ExportConfig, run_export
from .storage import merge_options, parse_storage_options, redact


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _size(text: str) -> int:
    from .archive import parse_size
    from .errors import ConfigError
    try:
        return parse_size(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _add_execution_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--archive", action="store_true", help="pack the export into <name>.tar")
    p.add_argument("--part-size", type=_size, metavar="SIZE",
                   help="split the archive into parts of at most SIZE (500MiB, 2GB); implies --archive")
    p.add_argument("--archive-name", metavar="NAME", help="archive name (default: <project id>_<project name>)")
    p.add_argument("--workers", type=_positive_int, help="worker processes (default: one per core)")
    p.add_argument("--cluster", help="cluster profile from cluster.yaml (default: local)")
    p.add_argument("--cluster-file", help="profiles file (default: ./cluster.yaml)")
    p.add_argument("--items-per-partition", type=_positive_int, help="items per Dask task")
    p.add_argument("--storage-option", action="append", default=[], metavar="KEY=VALUE",
                   help="fsspec option for source and destination, repeatable; dots nest "
                        "(client_kwargs.endpoint_url=http://...); JSON values are parsed")
    p.add_argument("--full", action="store_true",
                   help="render every item, ignoring what the last run already exported")
    p.add_argument("--progress-interval", type=float, metavar="SECONDS",
                   help="seconds between progress lines when not on a terminal (default 30)")
    p.add_argument("--debug", action="store_true", help="include tracebacks in item errors")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="maskcore", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"maskcore {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="execute a job spec (YAML or JSON)")
    run.add_argument("job", help="job file, e.g. jobs/demo.yaml")
    run.add_argument("--output", help="destination (overrides the job's)")
    _add_execution_args(run)

    exp = sub.add_parser("export", help="export a project to a mask layout")
    exp.add_argument("project", help="Supervisely project folder or .tar (path or URL)")
    exp.add_argument("destination", help="output folder (path or URL)")
    exp.add_argument("--layout", default="supervisely", help="output layout (default: supervisely)")
    exp.add_argument("--masks", default="machine,semantic,human,instance",
                     help="comma-separated mask kinds (default: all four)")
    exp.add_argument("--thickness", type=_positive_int, default=2,
                     help="line and point thickness in pixels (default: 2)")
    exp.add_argument("--human-resize", type=float, metavar="PERCENT",
                     help="shrink the human previews to PERCENT of their size")
    exp.add_argument("--no-images", action="store_true", help="do not copy images to img/")
    exp.add_argument("--max-canvas-pixels", type=_positive_int,
                     help="refuse items whose canvas is larger (default 2**28 pixels)")
    _add_execution_args(exp)
    return parser


def _config(args) -> ExportConfig:
    if args.command == "run":
        from .jobspec import load_job
        cfg = load_job(args.job, destination=args.output)
    else:
        options = {"masks": args.masks, "thickness": args.thickness}
        if args.human_resize is not None:
            options["human_resize_percent"] = args.human_resize
        if args.no_images:
            options["copy_images"] = False
        if args.max_canvas_pixels is not None:
            options["max_canvas_pixels"] = args.max_canvas_pixels
        cfg = ExportConfig(source=args.project, destination=args.destination, layout=args.layout,
                           layout_options=options)
    for key in ("workers", "cluster", "cluster_file", "items_per_partition", "progress_interval",
                "part_size", "archive_name"):
        if getattr(args, key) is not None:
            setattr(cfg, key, getattr(args, key))
    cfg.debug = args.debug
    cfg.storage_options = merge_options(cfg.storage_options, parse_storage_options(args.storage_option))
    cfg.full = cfg.full or args.full
    if args.archive or args.part_size is not None or args.archive_name:
        cfg.archive = True
    return cfg


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    options: dict = {}
    try:
        cfg = _config(args)
        options = cfg.storage_options
        result = run_export(cfg)
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
