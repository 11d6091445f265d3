"""Cluster profiles (``cluster.yaml``) and the Dask client they give.

Lookup of the profiles file: ``--cluster-file``, then ``$MASKCORE_CLUSTER_FILE``, then
``./cluster.yaml``; without any file the built-in ``local`` profile is used.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator

import yaml

from .errors import ConfigError

BUILTIN = {"default": "local",
           "profiles": {"local": {"kind": "local",
                                  "local": {"n_workers": None, "threads_per_worker": 1,
                                            "processes": True, "dashboard_address": None}}}}
KINDS = ("local",)


def load_profiles(path: str | None = None) -> dict:
    """The parsed profiles file (or the built-in default)."""
    candidates = [path, os.environ.get("MASKCORE_CLUSTER_FILE"), "cluster.yaml"]
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            with open(candidate, encoding="utf-8") as f:
                doc = yaml.safe_load(f) or {}
            if not isinstance(doc, dict) or not isinstance(doc.get("profiles"), dict):
                raise ConfigError(f"{candidate}: expected a mapping with 'profiles', got {type(doc).__name__}")
            return doc
        if candidate is path and path:
            raise ConfigError(f"cluster file {path!r} does not exist")
    return BUILTIN


def get_profile(name: str | None, path: str | None = None) -> dict:
    doc = load_profiles(path)
    name = name or doc.get("default") or "local"
    profiles = doc["profiles"]
    if name not in profiles:
        raise ConfigError(f"unknown cluster profile {name!r}; the profiles file defines {sorted(profiles)}")
    profile = dict(profiles[name])
    kind = profile.get("kind")
    if kind not in KINDS:
        raise ConfigError(f"cluster profile {name!r}: kind {kind!r} is not supported; expected one of {list(KINDS)}")
    profile["name"] = name
    return profile


@contextlib.contextmanager
def connect(profile: dict, workers: int | None = None) -> Iterator["object"]:
    """A ``distributed.Client`` for ``profile``; the embedded cluster stops on exit."""
    from distributed import Client, LocalCluster

    kwargs = dict(profile.get("local") or {})
    if workers is not None:
        kwargs["n_workers"] = workers
    if kwargs.get("n_workers") is None:
        kwargs["n_workers"] = os.cpu_count() or 1
    with LocalCluster(**kwargs) as cluster, Client(cluster) as client:
        yield client
