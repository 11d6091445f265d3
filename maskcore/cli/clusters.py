"""``maskcore cluster list`` and ``maskcore cluster show NAME``: the profiles in force, and one
profile as a run would use it: its keys, the file it came from, the Dask configuration it sets
(``DASK_*`` environment variables included) and, for ``slurm``, the job script dask-jobqueue
would submit (``SLURMCluster.job_script()``), for ``kubernetes`` the DaskCluster resource.
Nothing is submitted: showing a Slurm profile starts its scheduler on this machine for a moment
(the job script names its address) and no job."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

import yaml

from ..exec.cluster import build_cluster, dask_config, get_profile, kubernetes_cluster_spec, load_profiles

HELP = "list the cluster profiles, or show one as a run resolves it (Slurm: the job script)"


def add_parser(sub) -> None:
    p = sub.add_parser("cluster", help=HELP, description=HELP)
    p.add_argument("action", choices=("list", "show"))
    p.add_argument("name", nargs="?", help="profile name (show); default: the default profile")
    p.add_argument("--cluster-file", help="profiles file (default: ./cluster.yaml over "
                                          "~/.config/maskcore/cluster.yaml, over the built-in ones)")
    p.add_argument("--workers", type=int, default=None, help="worker count to show (default: the profile's)")
    p.add_argument("--debug", action="store_true", help="show tracebacks")


def _dump(doc) -> str:
    return yaml.safe_dump(doc, sort_keys=False, default_flow_style=False).rstrip("\n")


def run(args: argparse.Namespace, out=None) -> int:
    out = out or sys.stdout
    doc = load_profiles(args.cluster_file)
    if args.action == "list":
        for name, profile in doc["profiles"].items():
            kind = profile.get("kind") if isinstance(profile, dict) else "?"
            mark = " (default)" if name == (os.environ.get("MASKCORE_CLUSTER") or doc["default"]) else ""
            print(f"{name}: kind {kind}, from {profile.get('from', doc['source'])}{mark}", file=out)
        return 0
    name = args.name or os.environ.get("MASKCORE_CLUSTER") or doc["default"]
    profile = get_profile(name, args.cluster_file)
    shown = {k: v for k, v in profile.items() if k not in ("name", "from")}
    print(f"# profile {name!r} (kind {profile['kind']}) from {profile['from']}", file=out)
    print(_dump(shown), file=out)
    settings = dask_config(profile)
    if settings:
        print("# Dask configuration it sets (profile, then DASK_* environment variables):", file=out)
        print(_dump(settings), file=out)
    if profile["kind"] == "slurm":
        # a stand-in destination in a folder of our own: dask-jobqueue creates the log folder
        with tempfile.TemporaryDirectory() as tmp, build_cluster(profile, 0, os.path.join(tmp, "D")) as cluster:
            script = cluster.job_script().replace(os.path.join(tmp, "D"), "<destination>")
        print("# the job script of each Slurm job (dask-jobqueue SLURMCluster.job_script(); the "
              "scheduler's address differs in each run):", file=out)
        print(script.rstrip("\n"), file=out)
    elif profile["kind"] == "kubernetes":
        print("# the DaskCluster resource maskcore creates:", file=out)
        print(_dump(kubernetes_cluster_spec(profile, args.workers)), file=out)
    return 0
