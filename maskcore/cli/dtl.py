"""Supervisely DTL (Data Transformation Language) jobs with a ``save_masks`` layer, run as written.

A DTL job is a JSON list of layers ``{"action", "src", "dst", "settings"}``. Supported:
```json
[
  {"action": "data", "src": ["My Project/*"], "dst": "$data_1",
   "settings": {"classes_mapping": "default"}},
  {"action": "save_masks", "src": ["$data_1"], "dst": "My Project masks",
   "settings": {"masks_machine": true, "masks_human": true,
                "gt_machine_color": {"kiwi": [100, 100, 100]}, "gt_human_color": {"kiwi": [255, 0, 0]}}}
]
```
or a lone ``save_masks`` object (the documentation's "JSON view"), whose project then comes from
the caller (``source=``, ``--source``).

Conventions:
- A data layer's ``src`` entries are ``"<project>/*"`` (every dataset), ``"<project>/<dataset>"``
  or ``"<project>"``; ``<project>`` is a path relative to the job file's folder, an absolute
  path, or a URL. The dataset is the last path component; every entry names the same project.
- ``save_masks.dst`` is the output folder, relative to the job file's folder, unless ``output=``
  (``--output``) is given. ``source=`` replaces the data layer's project and keeps its dataset
  selection.
- Validation follows the layers' JSON schemas: each layer has exactly ``action``, ``src`` (a list
  of strings), ``dst`` (a string) and ``settings``; the data layer's ``settings`` has exactly
  ``classes_mapping``, and only ``"default"`` is supported (renaming or dropping classes is not);
  ``save_masks.settings`` as :func:`maskcore.layouts.save_masks.parse_options`, where the
  deprecated keys ``images`` and ``annotations`` are dropped with a warning. Errors are
  ``ConfigError`` naming the layer (index and action) and the key.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass

from ..errors import ConfigError
from ..exec.run import ExportConfig
from ..io.storage import resolve_location as _resolve
from ..layouts.save_masks import parse_options

SUPPORTED_ACTIONS = ("data", "save_masks")
LAYER_KEYS = ("action", "src", "dst", "settings")
DEPRECATED_SETTINGS = ("images", "annotations")


@dataclass(frozen=True)
class DtlJob:
    config: ExportConfig                    # layout "save_masks", its options validated
    datasets: tuple[str, ...] | None        # the data layer's dataset selection; None = every dataset
    warnings: tuple[str, ...] = ()          # deprecated settings, each also given to ``warn``


def is_dtl_job(doc) -> bool:
    """Whether a parsed job document is a DTL job (a list of layers, or one layer object) rather
    than a maskcore job spec (a mapping without ``action``)."""
    if isinstance(doc, dict):
        return "action" in doc
    return isinstance(doc, list) and bool(doc) and all(isinstance(x, dict) and "action" in x for x in doc)


def load_dtl_file(path: str, *, source: str | None = None, output: str | None = None,
                  warn: Callable[[str], None] | None = None) -> DtlJob:
    """Read a DTL job file (JSON) and :func:`load_dtl` it relative to the file's folder."""
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except OSError as exc:
        raise ConfigError(f"cannot read job file {path!r}: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"job file {path!r} is not JSON: {exc}") from None
    return load_dtl(doc, os.path.dirname(os.path.abspath(path)), source=source, output=output, warn=warn)


def load_dtl(doc, job_dir: str, *, source: str | None = None, output: str | None = None,
             warn: Callable[[str], None] | None = None) -> DtlJob:
    """A DTL job (parsed JSON) as an export of layout ``save_masks``.

    ``job_dir``: the folder relative paths resolve against. ``source``: the project (path or URL)
    when the job has no data layer, or to replace the data layer's project. ``output``: the
    destination instead of ``save_masks.dst``. ``warn(text)`` receives each warning.
    """
    layers = [(None, doc)] if isinstance(doc, dict) else _layer_list(doc)
    for index, layer in layers:
        _check_layer(index, layer)
    data = [(i, lr) for i, lr in layers if lr["action"] == "data"]
    save = [(i, lr) for i, lr in layers if lr["action"] == "save_masks"]
    if len(save) != 1:
        raise ConfigError(f"DTL job: expected exactly one 'save_masks' layer, got {len(save)}")
    if len(data) > 1:
        raise ConfigError(f"DTL job: expected at most one 'data' layer (one project per run), "
                          f"got {len(data)} (layers {[i for i, _ in data]})")
    save_index, save_layer = save[0]
    warnings: list[str] = []
    settings = save_layer["settings"]
    if isinstance(settings, dict):
        settings = dict(settings)
        for key in DEPRECATED_SETTINGS:
            if key in settings:
                del settings[key]
                warnings.append(f"{_name(save_index, 'save_masks')}: settings.{key} is deprecated "
                                f"and ignored")
    parse_options(settings, where=f"{_name(save_index, 'save_masks')}: settings")
    project, datasets = None, None
    if data:
        data_index, data_layer = data[0]
        _check_data_settings(data_index, data_layer["settings"])
        if data_layer["dst"] not in save_layer["src"]:
            raise ConfigError(f"{_name(save_index, 'save_masks')}: src {save_layer['src']} does not "
                              f"name the data layer's dst {data_layer['dst']!r}")
        project, datasets = _data_source(data_index, data_layer["src"], job_dir)
    if source is not None:
        project = source
    if project is None:
        raise ConfigError("DTL job: a lone 'save_masks' layer needs the project to read: pass the "
                          "source (--source PROJECT) or add a 'data' layer")
    destination = output if output is not None else _resolve(save_layer["dst"], job_dir)
    for text in warnings:
        if warn is not None:
            warn(text)
    config = ExportConfig(source=project, destination=destination, layout="save-masks",
                          layout_options=settings)
    return DtlJob(config=config, datasets=datasets, warnings=tuple(warnings))


def _name(index: int | None, action: str) -> str:
    return f"layer ({action})" if index is None else f"layer {index} ({action})"


def _layer_list(doc) -> list[tuple[int, dict]]:
    if not isinstance(doc, list) or not doc:
        raise ConfigError(f"DTL job: expected a non-empty list of layers or one layer object, "
                          f"got {type(doc).__name__ if doc is not None else 'null'}"
                          + (" (empty list)" if doc == [] else ""))
    for i, layer in enumerate(doc):
        if not isinstance(layer, dict):
            raise ConfigError(f"layer {i}: expected an object {{action, src, dst, settings}}, "
                              f"got {type(layer).__name__}")
    return list(enumerate(doc))


def _check_layer(index: int | None, layer: dict) -> None:
    """The keys every DTL layer schema requires, and a supported action."""
    action = layer.get("action")
    where = f"layer {index}" if index is not None else "layer"
    if not isinstance(action, str):
        raise ConfigError(f"{where}: 'action' is required and must be a string, got {action!r}")
    if action not in SUPPORTED_ACTIONS:
        raise ConfigError(f"{where}: action {action!r} is not supported; supported actions: "
                          f"{', '.join(SUPPORTED_ACTIONS)}")
    where = _name(index, action)
    missing = [k for k in LAYER_KEYS if k not in layer]
    if missing:
        raise ConfigError(f"{where}: missing key(s) {missing}; a layer has {list(LAYER_KEYS)}")
    unknown = sorted(set(layer) - set(LAYER_KEYS))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; a layer has {list(LAYER_KEYS)}")
    src = layer["src"]
    if not isinstance(src, list) or not all(isinstance(s, str) and s for s in src):
        raise ConfigError(f"{where}: 'src' must be a list of non-empty strings, got {src!r}")
    if not isinstance(layer["dst"], str) or not layer["dst"]:
        raise ConfigError(f"{where}: 'dst' must be a non-empty string, got {layer['dst']!r}")
    if action == "data":
        if not src:
            raise ConfigError(f"{where}: 'src' must name the project, e.g. [\"My Project/*\"]")
        if not layer["dst"].startswith("$"):
            raise ConfigError(f"{where}: 'dst' must be a connection name starting with '$', "
                              f"got {layer['dst']!r}")
    if action == "save_masks" and index is not None:
        bad = [s for s in src if not s.startswith("$")]
        if bad or not src:
            raise ConfigError(f"{where}: 'src' must list connection names starting with '$', got {src!r}")


def _check_data_settings(index: int, settings) -> None:
    where = _name(index, "data")
    if not isinstance(settings, dict):
        raise ConfigError(f"{where}: 'settings' must be an object, got {settings!r}")
    unknown = sorted(set(settings) - {"classes_mapping"})
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown} in settings; expected classes_mapping")
    if "classes_mapping" not in settings:
        raise ConfigError(f"{where}: settings.classes_mapping is required (\"default\")")
    mapping = settings["classes_mapping"]
    if mapping != "default":
        raise ConfigError(f"{where}: settings.classes_mapping: only \"default\" is supported "
                          f"(renaming or dropping classes is not), got {mapping!r}")


def _data_source(index: int, srcs: list[str], job_dir: str) -> tuple[str, tuple[str, ...] | None]:
    """(project path or URL, dataset names or None for all) of a data layer's ``src``."""
    where = _name(index, "data")
    project, datasets, every = None, set(), False
    for entry in srcs:
        text = entry.rstrip("/")
        scheme = text[:text.index("://") + 3] if "://" in text else ""
        head, sep, tail = text[len(scheme):].rpartition("/")
        if not sep:  # "<project>" alone: every dataset (as the reference reads it)
            head, tail = text[len(scheme):], "*"
        if not head or not tail:
            raise ConfigError(f"{where}: src entry {entry!r}: expected \"<project>/*\" or "
                              f"\"<project>/<dataset>\"")
        head = scheme + head
        path = _resolve(head, job_dir)
        if project is not None and path != project:
            raise ConfigError(f"{where}: src names two projects ({project!r} and {path!r}); a data "
                              f"layer reads one project")
        project = path
        if tail == "*":
            every = True
        else:
            datasets.add(tail)
    return project, None if every else tuple(sorted(datasets))
