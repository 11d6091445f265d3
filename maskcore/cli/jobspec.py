"""Declarative job specs (YAML or JSON) that ``maskcore run`` executes.

```yaml
source: ../examples/sly_catsdogs/vector    # folder, .tar or URL; relative to this file
destination: ../out/demo                   # relative to this file
layout: supervisely
masks: [machine, semantic, human, instance]
options: {thickness: 2}                    # layout options
cluster: local                             # a profile of cluster.yaml
workers: null                              # null = the profile's default
storage_options: {}                        # fsspec options for source and destination
items_per_partition: null
reader: auto                               # supervisely | coco | cvat | cvat-masks | auto (detect)
images: null                               # COCO / CVAT XML image folder; relative to this file
filters: {}                                # item selection, see maskcore.filters
```
Relative local paths resolve against the job file's folder, so a job runs the same from anywhere.
"""

from __future__ import annotations

import json
import os

import yaml

from ..errors import ConfigError
from ..exec.run import ExportConfig
from ..io.storage import resolve_location as _resolve

KEYS = {"source", "destination", "layout", "masks", "options", "cluster", "cluster_file", "workers",
        "storage_options", "items_per_partition", "reader", "name", "description", "full", "verify",
        "progress_interval", "archive", "images", "filters"}


def load_job(path: str, *, destination: str | None = None) -> ExportConfig:
    """Parse a job file into an :class:`ExportConfig`; ``destination`` overrides the file's."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as exc:
        raise ConfigError(f"cannot read job file {path!r}: {exc.strerror}") from None
    try:
        doc = json.loads(text) if path.endswith(".json") else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"job file {path!r} does not parse: {exc}") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"job file {path!r}: expected a mapping at the top, got {type(doc).__name__}")
    unknown = sorted(set(doc) - KEYS)
    if unknown:
        raise ConfigError(f"job file {path!r}: unknown key(s) {unknown}; expected some of {sorted(KEYS)}")
    for key in ("source", "destination"):
        if key == "destination" and destination:
            continue
        if not isinstance(doc.get(key), str) or not doc[key]:
            raise ConfigError(f"job file {path!r}: '{key}' is required and must be a path or URL")
    base = os.path.dirname(os.path.abspath(path))
    options = dict(doc.get("options") or {})
    if "masks" in doc:
        options["masks"] = doc["masks"]
    workers = doc.get("workers")
    if workers is not None and (not isinstance(workers, int) or workers < 1):
        raise ConfigError(f"job file {path!r}: 'workers' must be a positive integer, got {workers!r}")
    cluster_file = doc.get("cluster_file")
    from ..layouts import get_layout_class
    layout_cls = get_layout_class(doc.get("layout", "supervisely"))
    archive = doc.get("archive", bool(layout_cls.default_archive_format))
    if archive not in (True, False) and not isinstance(archive, dict):
        raise ConfigError(f"job file {path!r}: 'archive' must be true/false or a mapping "
                          f"{{name, part_size}}, got {archive!r}")
    archive_opts = archive if isinstance(archive, dict) else {}
    unknown = sorted(set(archive_opts) - {"name", "part_size", "format"})
    if unknown:
        raise ConfigError(f"job file {path!r}: unknown archive key(s) {unknown}; expected name, part_size, format")
    filters = doc.get("filters") or {}
    if not isinstance(filters, dict):
        raise ConfigError(f"job file {path!r}: 'filters' must be a mapping, got {filters!r}")
    from ..exec.filters import FilterSpec
    FilterSpec.from_options(filters, where=f"job file {path!r}: filters")  # mistakes fail at load
    from ..io.archive import parse_size
    part_size = archive_opts.get("part_size")
    return ExportConfig(
        source=_resolve(doc["source"], base),
        destination=destination or _resolve(doc["destination"], base),
        layout=doc.get("layout", "supervisely"),
        layout_options=options,
        reader=doc.get("reader", "auto"),
        reader_options={"images": _resolve(doc["images"], base)} if doc.get("images") else {},
        filters=dict(filters),
        archive_format=archive_opts.get("format"),
        storage_options=dict(doc.get("storage_options") or {}),
        cluster=doc.get("cluster"),
        cluster_file=_resolve(cluster_file, base) if cluster_file else None,
        workers=workers,
        items_per_partition=doc.get("items_per_partition"),
        full=bool(doc.get("full", False)),
        verify=bool(doc.get("verify", False)),
        progress_interval=float(doc.get("progress_interval", 30.0)),
        archive=bool(archive),
        part_size=parse_size(part_size) if part_size is not None else None,
        archive_name=archive_opts.get("name"),
    )
