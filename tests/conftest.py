"""Shared fixtures: one real Dask cluster (worker processes) for the whole session."""

from __future__ import annotations

import os
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
