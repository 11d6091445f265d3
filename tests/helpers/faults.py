"""Faults delivered for real (issue 19): a ``python -m maskcore export`` subprocess with its own
Dask worker processes, killed by PID once it finished some partitions, optionally with a full disk
(``ENOSPC``) injected into every one of its processes.

The runs before and after a fault, the clean reference runs and ``maskcore verify`` are about the
command's logic, not about its process: tests run them in-process (the ``cli`` fixture).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from maskcore.exec.state import PARTIALS

from . import REPO

INJECT = Path(__file__).resolve().parent / "inject"   # sitecustomize.py: MASKCORE_TEST_ENOSPC, MASKCORE_TEST_GATE


def export_args(src: Path, dst: Path, *options: str) -> list[str]:
    """``export SRC DST`` on one worker, one item per partition (so a run can be cut anywhere)."""
    return ["export", str(src), str(dst), "--workers", "1", "--items-per-partition", "1", *options]


def partials(dst: Path) -> list[Path]:
    return sorted((dst / PARTIALS).glob("*.parquet"))


def read_report(dst: Path) -> dict:
    return json.loads((dst / ".maskcore-meta/report.json").read_text())


def _env(**extra) -> dict:
    env = dict(os.environ)
    if any(k.startswith("MASKCORE_TEST_") for k in extra):
        env["PYTHONPATH"] = os.pathsep.join([str(INJECT), env.get("PYTHONPATH", "")])
    env.update(extra)
    return env


def start(args: list[str], **env) -> subprocess.Popen:
    """``python -m maskcore ARGS`` in a new session (its own process group), stderr piped."""
    return subprocess.Popen([sys.executable, "-m", "maskcore", *args], cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, start_new_session=True, env=_env(**env))


def wait_for_partials(proc: subprocess.Popen, dst: Path, count: int, timeout: float = 120) -> None:
    """Until ``count`` partitions finished (their partials written); fails if the run ended first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and len(partials(dst)) < count and proc.poll() is None:
        time.sleep(0.02)
    assert proc.poll() is None, f"the run ended before it could be interrupted: {proc.stderr.read()}"
    assert len(partials(dst)) >= count, f"{len(partials(dst))} of {count} partitions after {timeout} s"


def kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL whatever is left of the run's process group (the driver and its workers)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def interrupt(args: list[str], dst: Path, *, after: int, sig=signal.SIGKILL, group=True,
              **env) -> subprocess.Popen:
    """Start ``python -m maskcore ARGS``, wait until ``after`` partitions finished, deliver ``sig``
    by PID (to the process group: the driver and its workers, as a killed cron job or container;
    else to the driver alone). Returns the finished process."""
    proc = start(args, **env)
    try:
        wait_for_partials(proc, dst, after)
        if group:
            os.killpg(proc.pid, sig)
        else:
            os.kill(proc.pid, sig)
        proc.wait(timeout=120)
    finally:
        kill_group(proc)
    return proc

