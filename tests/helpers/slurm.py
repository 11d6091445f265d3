"""A real single-node Slurm on loopback for the tests: Debian's munged, slurmctld and slurmd
(`apt-get install slurmctld slurmd munge`, as .ci/run does), each in the foreground, with their
own munge key, slurm.conf, state and spool folders in a temporary folder and free ports, so that
nothing of the machine's own Slurm (if any) is read or touched.

The daemons run as root (slurmd starts the jobs as their user); the client commands (sbatch,
squeue, scancel) find this cluster through ``SLURM_CONF``, which ``env()`` gives. ``stop()``
cancels every job, stops the daemons and kills any process still carrying this cluster's
``SLURM_CONF`` in its environment (a job's processes), so a failing test leaves nothing behind.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

PARTITION = "mcq"
NODE = "mcnode"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _conf(root: Path, cpus: int, memory_mb: int) -> str:
    host = socket.gethostname().split(".")[0]
    return "\n".join([
        "ClusterName=maskcoretest",
        f"SlurmctldHost={host}(127.0.0.1)",
        f"SlurmctldPort={_free_port()}",
        f"SlurmdPort={_free_port()}",
        "SlurmUser=root", "SlurmdUser=root",
        "AuthType=auth/munge", "CredType=cred/munge", f"AuthInfo=socket={root}/munge/socket",
        f"StateSaveLocation={root}/state", f"SlurmdSpoolDir={root}/spool",
        f"SlurmctldPidFile={root}/slurmctld.pid", f"SlurmdPidFile={root}/slurmd.pid",
        f"SlurmctldLogFile={root}/log/slurmctld.log", f"SlurmdLogFile={root}/log/slurmd.log",
        "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none",
        "SelectType=select/cons_tres", "SelectTypeParameters=CR_Core",
        "JobAcctGatherType=jobacct_gather/none", "AccountingStorageType=accounting_storage/none",
        "JobCompType=jobcomp/none", "MpiDefault=none", "SwitchType=switch/none",
        "ReturnToService=2", "SlurmdParameters=config_overrides",   # CPUs as configured, not probed
        "KillWait=2", "MinJobAge=2", "InactiveLimit=0", "SchedulerParameters=sched_interval=1",
        f"NodeName={NODE} NodeAddr=127.0.0.1 NodeHostname={host} CPUs={cpus} RealMemory={memory_mb} "
        "State=UNKNOWN",
        f"PartitionName={PARTITION} Nodes={NODE} Default=YES MaxTime=INFINITE State=UP",
        ""])


class SingleNodeSlurm:
    """munged + slurmctld + slurmd under ``root`` (a private temporary folder)."""

    partition = PARTITION

    def __init__(self, root: Path, cpus: int = 4, memory_mb: int = 16384) -> None:
        self.root = root
        self.conf = root / "slurm.conf"
        self.procs: list[subprocess.Popen] = []
        self.cpus, self.memory_mb = cpus, memory_mb

    def env(self) -> dict[str, str]:
        """The environment of a client command (and of a driver submitting jobs) on this cluster."""
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    def run(self, *cmd: str, check: bool = True) -> str:
        proc = subprocess.run(cmd, env=self.env(), capture_output=True, text=True, timeout=20)
        if check and proc.returncode:
            raise RuntimeError(f"{' '.join(cmd)}: exit {proc.returncode}: {proc.stderr.strip()}")
        return proc.stdout

    def jobs(self, name: str | None = None) -> list[tuple[str, str]]:
        """(job id, state) of the queue's jobs, of job name ``name`` if given."""
        out = self.run("squeue", "-h", "-o", "%i %T %j")
        return [(j, s) for j, s, n in (line.split(maxsplit=2) for line in out.splitlines())
                if name is None or n == name]

    def start(self, timeout: float = 20.0) -> SingleNodeSlurm:
        root = self.root
        for sub in ("munge", "state", "spool", "log"):
            (root / sub).mkdir(mode=0o700, exist_ok=True)
        key = root / "munge" / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        self.conf.write_text(_conf(root, self.cpus, self.memory_mb))
        log = open(root / "log" / "daemons.out", "ab")
        quiet = dict(stdout=log, stderr=subprocess.STDOUT, env=self.env(), start_new_session=True)
        self.procs.append(subprocess.Popen(
            ["munged", "--foreground", "--force", f"--key-file={key}", f"--socket={root}/munge/socket",
             f"--pid-file={root}/munge/pid", f"--log-file={root}/munge/log", f"--seed-file={root}/munge/seed"],
            **quiet))
        self._until(lambda: (root / "munge" / "socket").exists(), timeout, "munged's socket")
        self.procs.append(subprocess.Popen(["slurmctld", "-D", "-i", "-f", str(self.conf)], **quiet))
        self.procs.append(subprocess.Popen(["slurmd", "-D", "-f", str(self.conf), "-N", NODE], **quiet))
        self._until(self._node_idle, timeout, f"node {NODE} idle in sinfo")
        return self

    def _node_idle(self) -> bool:
        out = subprocess.run(["sinfo", "-h", "-N", "-o", "%T"], env=self.env(), capture_output=True,
                             text=True, timeout=10)
        return out.returncode == 0 and out.stdout.strip() == "idle"

    def _until(self, condition, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            dead = [p.args[0] for p in self.procs if p.poll() is not None]
            if dead or time.monotonic() > deadline:
                log = (self.root / "log" / "daemons.out").read_text(errors="replace")[-3000:]
                raise RuntimeError(f"single-node Slurm: expected {what} within {timeout} s, got "
                                   f"{'exited: ' + ', '.join(dead) if dead else 'a timeout'}; daemons' output:\n{log}")
            time.sleep(0.1)

    def stop(self) -> None:
        if any(p.poll() is None for p in self.procs[1:]):
            subprocess.run(["scancel", "--full", "--user", "root"], env=self.env(), capture_output=True, timeout=20)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and self.jobs_left():
                time.sleep(0.2)
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._kill_leftovers()

    def jobs_left(self) -> bool:
        try:
            return bool(self.jobs())
        except (RuntimeError, subprocess.TimeoutExpired):
            return False

    def _kill_leftovers(self) -> None:
        """Kill processes whose environment names this cluster's slurm.conf (a job's processes)."""
        marker = f"SLURM_CONF={self.conf}".encode()
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                environ = (entry / "environ").read_bytes()
            except OSError:
                continue
            if marker in environ.split(b"\0") and self._is_job_process(entry):
                try:
                    os.kill(int(entry.name), signal.SIGKILL)
                except OSError:
                    pass

    @staticmethod
    def _is_job_process(entry: Path) -> bool:
        """Not this test process nor one it started (a driver under test has the variable too):
        a job's process, or a slurmstepd, left behind."""
        pid, me = int(entry.name), os.getpid()
        try:
            for _ in range(50):
                if pid == me:
                    return False
                if pid <= 1:
                    return True
                pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            return False
        return True
