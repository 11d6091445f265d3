"""Shared fixtures: one real Dask cluster (worker processes) per test process, the command line
run in-process on it, the S3 server (tests/helpers/s3server.py); and the rule that, in CI, a
missing test-only oracle fails the run instead of skipping tests."""

from __future__ import annotations

import functools
import os
import sys
import types

import pytest

from helpers import SAMPLES
from helpers.cli import run_cli
from helpers.oracles import PREFIXES, in_ci

pytest_plugins = ["helpers.s3server"]


# Dask's self-monitoring, relaxed for the session cluster, which idles between tests in every test
# process: the event loops' health tick (20 ms), the system monitor (500 ms), the workers'
# statistical profiler (10 ms samples). Nothing a task does depends on them; idle CPU of the
# cluster 7.5% -> 3.3% of a core.
QUIET_DASK = {"distributed.admin.tick.interval": "1s", "distributed.admin.system-monitor.interval": "2s",
              "distributed.worker.profile.enabled": False}


@pytest.fixture(scope="session")
def dask_client():
    """Two single-threaded worker processes, as `maskcore` starts them by default."""
    import dask
    from distributed import Client, LocalCluster

    with dask.config.set(QUIET_DASK):  # read when the cluster starts; worker processes inherit it
        cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                               dashboard_address=":0")  # any free port: test processes run side by side
    with cluster, Client(cluster) as client:
        yield client


@pytest.fixture(scope="session")
def samples():
    return SAMPLES


@pytest.fixture(scope="session")
def cli(dask_client):
    """``cli("export", SRC, DST, ...)``: the command line in this process (helpers/cli.py) on the
    session's worker processes, through the ``address`` cluster profile, as a user points maskcore
    at a running cluster. Returns exit code, stdout and stderr like a subprocess."""
    return functools.partial(run_cli, scheduler=dask_client.scheduler.address)


def pytest_configure(config):
    os.environ.setdefault("MPLBACKEND", "Agg")


# -- CI=true: a missing oracle is a failure ------------------------------------------------------
# pytest.importorskip and helpers.oracles.oracle skip with "could not import ...", a missing oracle
# program (helpers.oracles.program, needs_program) with "could not find the program ...". Outside CI that
# keeps the suite usable without the test extra; in CI it would silently shrink the suite, so
# there the skip becomes a failure (tests/architecture/test_suite.py proves it).

def _as_missing_oracle_failure(report) -> None:
    if not (in_ci() and report.skipped and isinstance(report.longrepr, tuple)):
        return
    message = str(report.longrepr[2]).removeprefix("Skipped: ")
    if message.startswith(PREFIXES):
        report.outcome = "failed"
        report.longrepr = f"CI=true: a missing test dependency fails the run instead of skipping: {message}"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    _as_missing_oracle_failure(report)
    return report


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector):
    report = yield
    _as_missing_oracle_failure(report)
    return report


# The Supervisely SDK imports every module named on the call stack when it is imported
# (supervisely/__init__.py, get_module_names_from_stack); under pytest-xdist one of them is
# execnet's '__channelexec__', which is not importable. Give it a stand-in so the SDK oracle
# imports in xdist workers too.
sys.modules.setdefault("__channelexec__", types.ModuleType("__channelexec__"))
