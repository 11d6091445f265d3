"""Shared fixtures: one real Dask cluster (worker processes) for the whole session."""

from __future__ import annotations

import os
import sys
import types
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "examples" / "sly_catsdogs"


@pytest.fixture(scope="session")
def dask_client():
    """Two single-threaded worker processes, as `maskcore` starts them by default."""
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        yield client


@pytest.fixture(scope="session")
def samples() -> Path:
    return SAMPLES


def pytest_configure(config):
    os.environ.setdefault("MPLBACKEND", "Agg")


# The Supervisely SDK imports every module named on the call stack when it is imported
# (supervisely/__init__.py, get_module_names_from_stack); under pytest-xdist one of them is
# execnet's '__channelexec__', which is not importable. Give it a stand-in so the SDK oracle
# imports in xdist workers too.
sys.modules.setdefault("__channelexec__", types.ModuleType("__channelexec__"))
