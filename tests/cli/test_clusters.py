"""``maskcore cluster list`` / ``maskcore cluster show NAME``, in-process."""

from __future__ import annotations

import io
import os
import sys
from contextlib import redirect_stdout

import pytest
import yaml

from maskcore.cli.main import main


@pytest.fixture(autouse=True)
def _outside_a_checkout(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for name in list(os.environ):
        if name.startswith(("DASK_", "MASKCORE_")):
            monkeypatch.delenv(name)
    # the shown Slurm scheduler listens on loopback only
    monkeypatch.setenv("DASK_JOBQUEUE__SLURM__SCHEDULER_OPTIONS",
                       '{"host": "127.0.0.1", "dashboard_address": "127.0.0.1:0"}')


def _run(*argv: str) -> str:
    out = io.StringIO()
    with redirect_stdout(out):
        assert main(list(argv)) == 0
    return out.getvalue()


def test_list_names_every_profile_its_file_and_the_default(tmp_path):
    (tmp_path / "cluster.yaml").write_text("default: hpc\nprofiles:\n  hpc: {kind: slurm, workers: 3}\n")
    lines = _run("cluster", "list").splitlines()
    assert "hpc: kind slurm, from cluster.yaml (default)" in lines
    assert "slurm: kind slurm, from built-in" in lines and "local: kind local, from built-in" in lines


def test_show_slurm_prints_the_profile_its_file_and_the_job_script(tmp_path):
    text = _run("cluster", "show", "slurm")
    assert text.startswith("# profile 'slurm' (kind slurm) from built-in\n")
    profile = yaml.safe_load(text.split("# Dask configuration")[0])
    assert profile["jobqueue"]["slurm"]["cores"] == 1 and profile["workers"] == 2
    script = text.split("SLURMCluster.job_script()")[1]
    directives = [line for line in script.splitlines() if line.startswith("#SBATCH")]
    assert directives == ["#SBATCH -J maskcore-worker",
                          "#SBATCH -e <destination>/.maskcore-meta/slurm-logs/maskcore-worker-%J.err",
                          "#SBATCH -o <destination>/.maskcore-meta/slurm-logs/maskcore-worker-%J.out",
                          "#SBATCH -n 1", "#SBATCH --cpus-per-task=1", "#SBATCH --mem=4G", "#SBATCH -t 01:00:00"]
    assert f"{sys.executable} -m distributed.cli.dask_worker tcp://127.0.0.1:" in script   # python: null
    assert "--nthreads 1" in script
    assert not list(tmp_path.rglob("slurm-logs"))                 # showing creates no folder


def test_show_names_a_user_file_and_env_overrides(tmp_path, monkeypatch):
    (tmp_path / "my.yaml").write_text(yaml.safe_dump({"profiles": {"hpc": {
        "kind": "slurm", "workers": 4, "jobqueue": {"slurm": {"queue": "gpu", "cores": 2, "memory": "8GiB",
                                                              "log-directory": str(tmp_path / "logs")}}}}}))
    monkeypatch.setenv("DASK_JOBQUEUE__SLURM__WALLTIME", "04:00:00")
    text = _run("cluster", "show", "hpc", "--cluster-file", str(tmp_path / "my.yaml"))
    assert text.startswith(f"# profile 'hpc' (kind slurm) from {tmp_path / 'my.yaml'}\n")
    assert "jobqueue.slurm.walltime: 04:00:00" in text
    assert "#SBATCH -p gpu" in text and "#SBATCH -t 04:00:00" in text and "#SBATCH --mem=8G" in text
    assert f"#SBATCH -o {tmp_path / 'logs'}/dask-worker-%J.out" in text


def test_show_kubernetes_prints_the_resource():
    text = _run("cluster", "show", "kubernetes")
    resource = yaml.safe_load(text.split("# the DaskCluster resource maskcore creates:")[1])
    assert resource["kind"] == "DaskCluster" and resource["spec"]["worker"]["replicas"] == 4


def test_show_an_unknown_profile_names_the_known_ones(capsys):
    assert main(["cluster", "show", "nope"]) == 1
    assert "expected a cluster profile named one of ['address', 'inprocess', 'kubernetes', 'local', 'slurm'], " \
           "got 'nope'" in capsys.readouterr().err
