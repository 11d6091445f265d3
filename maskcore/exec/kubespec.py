"""The ``DaskCluster`` resource of the ``kubernetes`` profile, finished from what dask-kubernetes'
``make_cluster_spec`` gives: the scheduler started as ``dask scheduler`` (distributed no longer
installs the ``dask-scheduler`` script it writes), the profile's pod keys, the user's
``kubernetes.custom-cluster-spec`` merged over it all, null values dropped (Kubernetes prunes
them; the operator's CRD schema refuses them). Pure: mappings in, a mapping out."""

from __future__ import annotations

import copy
import os
from collections.abc import Callable

import yaml

from ..errors import ConfigError

SCHEDULER_COMMAND = ["dask", "scheduler"]
"""The scheduler container's command (docs/reference-notes.md section 12)."""
POD_KEYS = {"service-account": "serviceAccountName", "node-selector": "nodeSelector",
            "tolerations": "tolerations", "image-pull-secrets": "imagePullSecrets"}
"""``kubernetes.*`` profile keys set on both pods' specs (scheduler and workers)."""


def drop_nulls(value):
    """``value`` without null values in any mapping."""
    if isinstance(value, dict):
        return {k: drop_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [drop_nulls(v) for v in value]
    return value


def _named(items) -> bool:
    """A non-empty list of mappings that all have a name (an empty list replaces, clearing)."""
    return isinstance(items, list) and bool(items) and all(isinstance(i, dict) and "name" in i for i in items)


def merge_spec(base, over):
    """``over`` merged into ``base``: mappings key by key, lists of named items (containers, env,
    volumes, ports) item by item by ``name`` (new names appended), any other value replaced (an
    empty list too: that clears)."""
    if isinstance(base, dict) and isinstance(over, dict):
        out = dict(base)
        for key, value in over.items():
            out[key] = merge_spec(base[key], value) if key in base else copy.deepcopy(value)
        return out
    if _named(base) and _named(over):
        by_name = {item["name"]: item for item in over}
        merged = [merge_spec(item, by_name.pop(item["name"])) if item["name"] in by_name else item
                  for item in base]
        return merged + [copy.deepcopy(item) for item in over if item["name"] in by_name]
    return copy.deepcopy(over)


def load_custom_spec(custom, where: str) -> dict:
    """``kubernetes.custom-cluster-spec``: a mapping, or the path of a YAML file holding one."""
    if isinstance(custom, str):
        try:
            with open(os.path.expanduser(custom), encoding="utf-8") as f:
                custom = yaml.safe_load(f)
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"{where}: expected kubernetes.custom-cluster-spec to name a readable YAML "
                              f"file, got {custom!r}: {exc}") from None
    if custom is not None and not isinstance(custom, dict):
        raise ConfigError(f"{where}: expected kubernetes.custom-cluster-spec as a mapping (a DaskCluster) "
                          f"or a YAML file, got {type(custom).__name__}")
    return custom or {}


def finish_spec(spec: dict, get: Callable[[str], object], where: str) -> dict:
    """``spec`` (``make_cluster_spec``'s, not modified) finished with the ``kubernetes.*`` values
    ``get(key)`` gives (``dask.config.get``): see the module's docstring."""
    spec = copy.deepcopy(spec)
    scheduler = spec["spec"]["scheduler"]["spec"]["containers"][0]
    scheduler["args"] = [*SCHEDULER_COMMAND, *scheduler["args"][1:]]
    for role in ("scheduler", "worker"):
        pod = spec["spec"][role]["spec"]
        for key, field in POD_KEYS.items():
            value = get(key)
            if key == "image-pull-secrets" and value:
                value = [v if isinstance(v, dict) else {"name": str(v)} for v in value]
            if value:
                pod[field] = copy.deepcopy(value)
    worker = spec["spec"]["worker"]["spec"]
    if get("volumes"):
        worker["volumes"] = copy.deepcopy(get("volumes"))
    if get("volume-mounts"):
        worker["containers"][0]["volumeMounts"] = copy.deepcopy(get("volume-mounts"))
    custom = load_custom_spec(get("custom-cluster-spec"), where)
    spec = drop_nulls(merge_spec(spec, custom))
    if "selector" not in custom.get("spec", {}).get("scheduler", {}).get("service", {}):
        name = spec.get("metadata", {}).get("name")   # a cluster the custom spec renames keeps its service
        spec["spec"]["scheduler"]["service"]["selector"]["dask.org/cluster-name"] = name
    return spec
