"""Running the ``maskcore`` command line in tests.

``run_cli(*argv)`` calls ``maskcore.cli.main.main(argv)`` in this process and returns what a
subprocess would give (exit code, stdout, stderr): the flags, their mapping to the run's options,
the messages and the exit codes are the command line's own. Which Dask cluster it runs on is
chosen as for a user, by the cluster profile: the ``cli`` fixture (tests/conftest.py) points the
``address`` profile at the session's worker processes, so no cluster is started per call.

``run_subprocess(*argv)`` runs ``python -m maskcore`` for the few tests that are about the process
itself (its own cluster, signals, its environment).
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from dataclasses import dataclass
from typing import Iterator

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


def run_cli(*argv, cwd=REPO) -> Ran:
    """``maskcore ARGV`` in this process (``cwd``: where relative paths and ./cluster.yaml are read)."""
    from maskcore.cli.main import main

    args = [str(a) for a in argv]
    out, err = io.StringIO(), io.StringIO()
    with _cwd(cwd), redirect_stdout(out), redirect_stderr(err):
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
