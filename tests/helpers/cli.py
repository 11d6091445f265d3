"""Running the ``maskcore`` command line in tests.

``run_cli(*argv, scheduler=ADDRESS)`` calls ``maskcore.cli.main.main(argv)`` in this process and
returns what a subprocess would give (exit code, stdout, stderr): the flags, their mapping to the
run's options, the messages and the exit codes are the command line's own. The Dask cluster is
chosen as a user chooses one: with ``scheduler``, the ``address`` cluster profile
(``MASKCORE_CLUSTER=address``, ``DASK_SCHEDULER_ADDRESS``, set for the call only) connects to the
running scheduler and its worker processes, so no cluster is started per call. The ``cli`` fixture
(tests/conftest.py) passes the session cluster's scheduler.

``run_subprocess(*argv)`` runs ``python -m maskcore`` for the few tests that are about the process
itself (its own cluster, signals, its environment).
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from dataclasses import dataclass

from . import REPO


@dataclass
class Ran:
    """What one ``maskcore`` invocation gave, as ``subprocess.CompletedProcess`` names it."""
    args: list[str]
    returncode: int
    stdout: str
    stderr: str

    def check_returncode(self) -> None:
        assert self.returncode == 0, f"maskcore {' '.join(self.args)}: exit {self.returncode}\n{self.stderr}"


@contextmanager
def _cwd(path) -> Iterator[None]:
    before = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(before)


@contextmanager
def _environ(**values: str | None) -> Iterator[None]:
    """``os.environ`` with ``values`` set (None: unset) for the block."""
    saved = {k: os.environ.get(k) for k in values}
    try:
        for k, v in values.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def run_cli(*argv, cwd=REPO, scheduler: str | None = None) -> Ran:
    """``maskcore ARGV`` in this process (``cwd``: where relative paths and ./cluster.yaml are read;
    ``scheduler``: run on that Dask scheduler's workers unless the command names a cluster)."""
    from maskcore.cli.main import main

    args = [str(a) for a in argv]
    env = {"MASKCORE_CLUSTER": "address", "MASKCORE_CLUSTER_FILE": None,
           "DASK_SCHEDULER_ADDRESS": scheduler} if scheduler else {}
    out, err = io.StringIO(), io.StringIO()
    with _cwd(cwd), _environ(**env), redirect_stdout(out), redirect_stderr(err):
        try:
            code = main(args)
        except SystemExit as exc:  # argparse: a bad command line, --help, --version
            code = exc.code if isinstance(exc.code, int) else 1
    return Ran(args, code, out.getvalue(), err.getvalue())


def run_subprocess(*argv, cwd=REPO, env=None, timeout=300) -> Ran:
    """``python -m maskcore ARGV`` in a new process (its own Dask cluster unless told otherwise)."""
    args = [str(a) for a in argv]
    proc = subprocess.run([sys.executable, "-m", "maskcore", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)
    return Ran(args, proc.returncode, proc.stdout, proc.stderr)
