"""Cluster profiles (``cluster.yaml``) and the Dask client they give.

A profile is a few maskcore keys plus Dask configuration in Dask's own vocabulary:

- ``kind``: ``local`` (embedded ``LocalCluster``), ``address`` (an existing scheduler),
  ``slurm`` (dask-jobqueue ``SLURMCluster``) or ``kubernetes`` (dask-kubernetes operator
  ``KubeCluster``);
- ``workers``: how many workers to start; ``adapt``: ``{minimum, maximum}`` instead;
- ``local``: keyword arguments of ``distributed.LocalCluster`` (kind ``local`` only);
- every other key is Dask configuration (``jobqueue``, ``kubernetes``, ``distributed``,
  ``scheduler-address``, ...), applied with ``dask.config.set`` while the cluster is built and
  used, so the upstream libraries read their own sections.

Which profile: the name given (``--cluster`` / ``cluster:`` in a job spec), else
``$MASKCORE_CLUSTER``, else the file's ``default:``, else ``local``.
Which file: ``--cluster-file`` / ``cluster_file:``, else ``$MASKCORE_CLUSTER_FILE``, else
``./cluster.yaml``; without any file the built-in ``local`` and ``address`` profiles are used.
Precedence of values, highest first: the ``workers`` argument (``--workers``), ``DASK_*``
environment variables, the profile, Dask's own config files and defaults.
"""

from __future__ import annotations

import contextlib
import getpass
import importlib
import logging
import os
import re
import tempfile
import uuid
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from ..errors import ConfigError
from ..paths import STATE_DIR
from .kubespec import finish_spec
from .watch import WorkerWatch

PACKAGED = Path(__file__).with_name("profiles.yaml")
"""The built-in profiles, shipped with the package: ``local``, ``inprocess``, ``address``, ``slurm``,
``kubernetes``."""
USER_FILES = ("cluster.yaml", "~/.config/maskcore/cluster.yaml")
"""Profiles files read when none is named, the first one winning over the next."""
KINDS = ("local", "inprocess", "address", "slurm", "kubernetes")
OWN_KEYS = ("kind", "workers", "adapt", "local", "inprocess_below", "wait_for_workers", "name", "from")
WAIT_FOR_WORKERS = 300.0
"""Seconds a run waits while it has no worker, when the profile does not say (``wait_for_workers``)."""
# Top-level Dask config sections a profile may carry, besides those Dask has loaded already.
DASK_SECTIONS = ("distributed", "jobqueue", "kubernetes", "scheduler-address", "scheduler",
                 "temporary-directory", "array", "dataframe", "optimization", "tokenize", "admin")
# kind -> (module to import, package, extra of pyproject.toml)
OPTIONAL = {"slurm": ("dask_jobqueue", "dask-jobqueue", "slurm"),
            "kubernetes": ("dask_kubernetes.operator", "dask-kubernetes", "kubernetes")}


# -- profiles ------------------------------------------------------------------------------------

_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
"""``safe_load``'s loader in libyaml's C version when PyYAML has it (same documents; read on every
command: 0.3-0.6 ms per profiles file instead of 7)."""


def _read_profiles_file(path: str) -> dict:
    with open(path, encoding="utf-8") as f:
        try:
            doc = yaml.load(f, Loader=_SAFE_LOADER) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: expected YAML, got a parse error: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("profiles"), dict):
        raise ConfigError(f"{path}: expected a mapping with a 'profiles' mapping, got {type(doc).__name__}")
    return doc


def builtin_profiles() -> dict:
    """The packaged profiles (``profiles.yaml`` beside this module), each marked ``from: built-in``."""
    doc = _read_profiles_file(str(PACKAGED))
    return {"default": doc.get("default", "local"), "source": "built-in profiles",
            "profiles": {n: {**p, "from": "built-in"} for n, p in doc["profiles"].items()}}


def load_profiles(path: str | None = None) -> dict:
    """The profiles in force: the built-in ones, then those of the user's files, which add
    profiles or replace built-in ones by name. The files: ``path`` (or ``$MASKCORE_CLUSTER_FILE``),
    which must exist; else ``./cluster.yaml`` over ``~/.config/maskcore/cluster.yaml``, where they
    exist. Each profile says in ``from`` which file it came from; ``source`` names the files read."""
    doc = builtin_profiles()
    named = path or os.environ.get("MASKCORE_CLUSTER_FILE")
    if named:
        if not Path(named).is_file():
            raise ConfigError(f"cluster profiles file: expected an existing file, got {named!r}")
        files = [named]
    else:
        files = [f for f in (os.path.expanduser(p) for p in reversed(USER_FILES)) if Path(f).is_file()]
    for file in files:  # lowest precedence first
        user = _read_profiles_file(file)
        doc["profiles"].update({n: ({**p, "from": file} if isinstance(p, dict) else p)
                                for n, p in user["profiles"].items()})
        doc["default"] = user.get("default", doc["default"])
    doc["source"] = " + ".join(["built-in profiles", *files])
    return doc


def default_profile_name(path: str | None = None) -> str:
    """The profile the command line runs when none is named: ``$MASKCORE_CLUSTER``, else the
    profiles files' ``default:``, else ``local``."""
    return os.environ.get("MASKCORE_CLUSTER") or load_profiles(path).get("default") or "local"


def get_profile(name: str | None, path: str | None = None) -> dict:
    """The validated profile ``name`` (see :func:`load_profiles` for where profiles come from).
    ``name=None`` (the Python API's default) is the built-in ``local`` profile: no file or
    environment variable is read."""
    doc = load_profiles(path) if name is not None or path is not None else builtin_profiles()
    name = name or doc.get("default") or "local"
    profiles = doc["profiles"]
    if name not in profiles:
        raise ConfigError(f"{doc['source']}: expected a cluster profile named one of {sorted(profiles)}, "
                          f"got {name!r}")
    profile = profiles[name]
    where = profile.get("from", doc["source"]) if isinstance(profile, dict) else doc["source"]
    if not isinstance(profile, dict):
        raise ConfigError(f"{where}: cluster profile {name!r}: expected a mapping, got {type(profile).__name__}")
    profile = {**profile, "name": name}
    _validate(profile, where)
    return profile


def _validate(profile: dict, where: str) -> None:
    name, kind = profile["name"], profile.get("kind")
    at = f"{where}: cluster profile {name!r}"
    if kind not in KINDS:
        raise ConfigError(f"{at}: expected kind one of {list(KINDS)}, got {kind!r}")
    workers = profile.get("workers")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise ConfigError(f"{at}: expected workers to be a positive integer or null, got {workers!r}")
    adapt = profile.get("adapt")
    if adapt is not None:
        if not isinstance(adapt, dict) or not set(adapt) <= {"minimum", "maximum"} or not all(
                isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in adapt.values()):
            raise ConfigError(f"{at}: expected adapt to be {{minimum: N, maximum: M}} with N, M >= 0, got {adapt!r}")
        if adapt.get("minimum", 0) > adapt.get("maximum", adapt.get("minimum", 0)):
            raise ConfigError(f"{at}: expected adapt minimum <= maximum, got {adapt!r}")
    below = profile.get("inprocess_below")
    if below is not None and (kind != "local" or isinstance(below, bool) or not isinstance(below, int) or below < 0):
        raise ConfigError(f"{at}: expected inprocess_below (items) as an integer >= 0 in a kind local "
                          f"profile, got {below!r} in kind {kind}")
    if kind in ("address", "inprocess") and (workers is not None or adapt is not None):
        raise ConfigError(f"{at}: expected no workers/adapt for kind address (the scheduler's own "
                          "workers do the work), got " + ("workers" if workers is not None else "adapt"))
    if "wait_for_workers" in profile:
        wait_seconds(profile, at)
    local = profile.get("local")
    if local is not None and (kind != "local" or not isinstance(local, dict)):
        raise ConfigError(f"{at}: expected 'local' (LocalCluster arguments) only as a mapping in a kind "
                          f"local profile, got {type(local).__name__} in kind {kind}")
    if local and "n_workers" in local:
        raise ConfigError(f"{at}: expected the worker count as 'workers:' at the profile level, "
                          "got local.n_workers")
    others = [k for k in profile if k not in OWN_KEYS and _norm(k) not in {_norm(s) for s in DASK_SECTIONS}]
    if others:  # dask is imported only here (~0.15 s): the built-in profiles need not
        import dask
        known = {_norm(k) for k in dask.config.config}
    for key in others:
        if _norm(key) not in known:
            raise ConfigError(f"{at}: expected maskcore keys {list(OWN_KEYS[:4])} or Dask config sections "
                              f"such as {sorted(DASK_SECTIONS)}, got {key!r}")


def wait_seconds(profile: dict, at: str | None = None) -> float | None:
    """The profile's ``wait_for_workers`` in seconds (``120``, ``"120s"``, ``"10 minutes"``;
    ``null``: no limit), else ``WAIT_FOR_WORKERS``."""
    import dask  # not at module level: a run in this process needs no dask (~0.15 s)
    value = profile.get("wait_for_workers", WAIT_FOR_WORKERS)
    if value is None:
        return None
    try:
        seconds = dask.utils.parse_timedelta(value, default="seconds")
    except (ValueError, TypeError, KeyError):
        seconds = -1
    if isinstance(value, bool) or seconds is None or seconds <= 0:
        raise ConfigError(f"{at or 'cluster profile ' + repr(profile['name'])}: expected wait_for_workers as "
                          f"seconds > 0 (120, '120s', '10 minutes') or null, got {value!r}")
    return float(seconds)


ONE_WORKER_FACTOR = 10
"""With one worker a cluster never runs faster than the driver's own process; it still isolates a
worker death (an out-of-memory kill, a crash in a C library) to its partition. One worker is
started only for runs ``ONE_WORKER_FACTOR`` times the profile's ``inprocess_below``, where its
start-up is about 5 % of the run (BENCHMARKS.md "Issue 18 (session 6)")."""


def runs_inprocess(profile: dict, workers: int | None, n_items: int, kinds: int = 1,
                   force: bool | None = None) -> bool:
    """Whether the run executes in the driver's process.

    ``force`` (``--in-process`` / ``--no-in-process``) decides when given. Otherwise: profile kind
    ``inprocess``; or a ``local`` profile's small run, whose work (``n_items`` to render times
    ``kinds``, the mask kinds drawn per item) is at most ``inprocess_below``, below which starting
    worker processes costs more than they gain (measured, BENCHMARKS.md "Issue 18 (session 6)"),
    or ``ONE_WORKER_FACTOR`` times that with one worker (``--workers 1``, a one-core machine).
    A count of several workers (``--workers 2``, a profile's ``workers: 2``) always starts them.
    """
    if force is not None:
        if force is False and profile["kind"] == "inprocess":
            raise ConfigError(f"cluster profile {profile['name']!r} is kind inprocess: it has no worker "
                              "processes to run on (--no-in-process asks for them)")
        return force
    if profile["kind"] == "inprocess":
        return True
    if profile["kind"] != "local":
        return False
    asked = workers if workers is not None else profile.get("workers")
    if asked is not None and asked > 1:
        return False  # several workers asked for by count: the run is meant to be parallel
    n = planned_workers(profile, workers)
    below = (profile.get("inprocess_below") or 0) * (ONE_WORKER_FACTOR if n == 1 else 1)
    return n_items * max(1, kinds) <= below


def planned_workers(profile: dict, workers: int | None = None) -> int:
    """How many workers to plan partitions for (the count asked for, else the profile's)."""
    if profile["kind"] == "inprocess":
        return 1
    adapt = profile.get("adapt") or {}
    return workers or profile.get("workers") or adapt.get("maximum") or os.cpu_count() or 1


# -- Dask configuration ----------------------------------------------------------------------------

def _norm(key: str) -> str:
    return str(key).lower().replace("-", "_")


def _flatten(tree: dict, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b-c": 1}}`` -> ``{"a.b-c": 1}``; lists and empty mappings are leaves."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict) and value:
            out.update(_flatten(value, path))
        else:
            out[path] = value
    return out


def _require(profile: dict):
    """Import the optional library the profile's kind needs (so its config defaults are loaded)."""
    if profile["kind"] not in OPTIONAL:
        return None
    module, package, extra = OPTIONAL[profile["kind"]]
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ConfigError(
            f"cluster profile {profile['name']!r} (kind {profile['kind']}): expected {package} to be "
            f"installed, got ImportError ({exc}); install it with pip install 'maskcore[{extra}]' "
            f"(from a checkout: pip install '.[{extra}]')") from exc


def dask_config(profile: dict) -> dict[str, Any]:
    """Dotted Dask config keys the profile sets, with ``DASK_*`` environment variables on top.

    A profile value of ``null`` leaves Dask's value alone. An environment variable overrides the
    profile key it names, and any key above or below it (``DASK_KUBERNETES__RESOURCES`` replaces
    every ``kubernetes.resources.*`` of the profile).
    """
    import dask
    own = _flatten({k: v for k, v in profile.items() if k not in OWN_KEYS})
    env = _flatten(dask.config.collect_env(
        {k: v for k, v in os.environ.items() if k != "DASK_INTERNAL_INHERIT_CONFIG"}))
    env_paths = [tuple(_norm(k).split(".")) for k in env]

    def covered(key: str) -> bool:
        path = tuple(_norm(key).split("."))
        return any(e[:len(path)] == path or path[:len(e)] == e for e in env_paths)

    merged = {k: v for k, v in own.items() if v is not None and not covered(k)}
    merged.update(env)
    return merged


@contextlib.contextmanager
def apply_config(profile: dict) -> Iterator[dict]:
    """Apply the profile's Dask config (after importing the kind's library) for the block."""
    import dask
    _require(profile)
    settings = dask_config(profile)
    with dask.config.set(settings):
        yield settings


# -- clusters -------------------------------------------------------------------------------------

def _count(profile: dict, workers: int | None) -> tuple[int | None, dict | None]:
    """(workers to start, adapt bounds): the argument wins, then the profile's adapt, then workers."""
    if workers is not None:
        return workers, None
    adapt = profile.get("adapt")
    if adapt is not None:
        return adapt.get("minimum", 0), adapt
    return profile.get("workers"), None


def kubernetes_cluster_spec(profile: dict, workers: int | None = None) -> dict:
    """The ``DaskCluster`` resource the ``kubernetes`` profile creates; contacts no API server.

    Values come from Dask's ``kubernetes.*`` config (the profile's section, ``DASK_KUBERNETES__*``):
    dask-kubernetes' ``make_cluster_spec``, finished by :func:`maskcore.exec.kubespec.finish_spec`
    (``dask scheduler``, pod keys, the user's ``custom-cluster-spec`` merged).
    """
    import dask
    with apply_config(profile):
        from dask_kubernetes.exceptions import ValidationError
        from dask_kubernetes.operator import make_cluster_spec
        from dask_kubernetes.operator.validation import validate_cluster_name

        n, _ = _count(profile, workers)
        if n is None:
            n = dask.config.get("kubernetes.count.start") or 0
        try:
            user = getpass.getuser()
        except (KeyError, OSError):
            user = "maskcore"
        name = str(dask.config.get("kubernetes.name")).format(user=user, uuid=uuid.uuid4().hex[:10],
                                                              **os.environ)
        # finish_spec copies: the spec would otherwise share dicts with dask.config, emptied on exit
        spec = finish_spec(make_cluster_spec(
            name=name, image=dask.config.get("kubernetes.image"), n_workers=n,
            resources=dask.config.get("kubernetes.resources") or None,
            env=dask.config.get("kubernetes.env") or None,
            worker_command=dask.config.get("kubernetes.worker-command"),
            scheduler_service_type=dask.config.get("kubernetes.scheduler-service-type"),
            idle_timeout=dask.config.get("kubernetes.idle-timeout") or 0,
            jupyter=bool(dask.config.get("kubernetes.scheduler-jupyter"))),
            lambda key: dask.config.get(f"kubernetes.{key}", None), f"cluster profile {profile['name']!r}")
        name = spec.get("metadata", {}).get("name")
        try:
            validate_cluster_name(name)
        except (ValidationError, TypeError) as exc:
            raise ConfigError(f"cluster profile {profile['name']!r}: expected the cluster name (kubernetes.name or "
                              f"the custom spec's metadata.name) to be a lowercase RFC 1123 name, "
                              f"got {name!r}") from exc
        return spec


def _make_local(profile: dict, n: int | None):
    from distributed import LocalCluster

    kwargs = dict(profile.get("local") or {})
    kwargs["n_workers"] = n if n is not None else (os.cpu_count() or 1)
    return LocalCluster(**kwargs)


class _Recorded(logging.Filter):
    """Drops asyncio's "Task exception was never retrieved" (tornado's "Exception in callback")
    for a failed job start that :func:`_recording` kept: the run's ClusterError says it once."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not getattr(exc, "maskcore_recorded", False)


def _recording(job_cls: type) -> type:
    """``job_cls`` whose failed starts (``sbatch: error: ...``) are kept in ``submit_errors``:
    SpecCluster starts jobs in a task nobody awaits, so the error would only reach the log as
    asyncio's "Task exception was never retrieved". A failed job is marked failed, so that the
    cluster still closes."""
    from distributed.core import Status

    errors: list[BaseException] = []

    async def start(self):
        try:
            await job_cls.start(self)
        except Exception as exc:
            exc.maskcore_recorded = True
            errors.append(exc)
            self.status = Status.failed
            raise

    for name in ("asyncio", "tornado.application"):   # where an unawaited task's error is logged
        if not any(isinstance(f, _Recorded) for f in logging.getLogger(name).filters):
            logging.getLogger(name).addFilter(_Recorded())
    return type(job_cls.__name__, (job_cls,), {"start": start, "submit_errors": errors})


def _make_slurm(profile: dict, n: int | None):
    from dask_jobqueue import SLURMCluster

    cluster = SLURMCluster(job_cls=_recording(SLURMCluster.job_cls))  # reads jobqueue.slurm.* itself
    if n:
        cluster.scale(n)
    return cluster


def _make_kubernetes(profile: dict, n: int | None):
    from dask_kubernetes.operator import KubeCluster

    return KubeCluster(custom_cluster_spec=kubernetes_cluster_spec(profile, n))


def _defaults(kind: str, destination: str | None) -> dict:
    """Values maskcore fills in where neither the profile nor Dask's config says anything."""
    import dask
    if kind == "slurm" and dask.config.get("jobqueue.slurm.log-directory", None) is None:
        return {"jobqueue.slurm.log-directory": job_log_directory(destination)}
    return {}


BUILDERS = {"local": _make_local, "slurm": _make_slurm, "kubernetes": _make_kubernetes}


def job_log_directory(destination: str | None) -> str:
    """Where Slurm jobs write their output when the profile does not say (``log-directory:
    null``): ``<destination>/<STATE_DIR>/slurm-logs`` for a local destination (the workers write
    there, so every node can), else ``maskcore-slurm-logs`` in the temporary folder."""
    if destination and "://" not in destination and "::" not in destination:
        return os.path.join(os.path.abspath(destination), STATE_DIR, "slurm-logs")
    return os.path.join(tempfile.gettempdir(), "maskcore-slurm-logs")


@contextlib.contextmanager
def build_cluster(profile: dict, workers: int | None = None, destination: str | None = None) -> Iterator[Any]:
    """The profile's cluster object under its Dask config, sized, and closed on exit.

    ``workers`` (``--workers``): that many workers, no adapting; ``0`` starts none (used to
    inspect a cluster, e.g. ``job_script()``). Otherwise the profile's ``adapt`` or ``workers``.
    ``destination``: the run's, for the Slurm jobs' default log folder (:func:`job_log_directory`).
    """
    import dask
    kind, name = profile["kind"], profile["name"]
    if kind not in BUILDERS:
        raise ConfigError(f"cluster profile {name!r}: expected a kind that builds a cluster "
                          f"{sorted(BUILDERS)}, got {kind!r}")
    n, adapt = _count(profile, workers)
    with apply_config(profile), dask.config.set(_defaults(kind, destination)):
        if n is None and adapt is None and kind != "local":
            n = dask.config.get("kubernetes.count.start", 0) if kind == "kubernetes" else 0
            if not n:
                raise ConfigError(f"cluster profile {name!r}: expected a worker count (workers: in the "
                                  "profile, or --workers) or adapt: {minimum, maximum}, got neither")
        try:
            cluster = BUILDERS[kind](profile, n)
        except ConfigError:
            raise
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"cluster profile {name!r}: the {kind} cluster refused its configuration: "
                              f"{exc}") from exc
        try:
            if adapt is not None:
                cluster.adapt(**adapt)
            yield cluster
        finally:
            cluster.close()


_ADDRESS = re.compile(r"^(?P<scheme>[a-z][a-z0-9+.-]*)://(?P<rest>[^/?#]+)$", re.IGNORECASE)


def _safe_address(address: str) -> str:
    """The address with any ``user:password@`` removed, for messages."""
    return re.sub(r"(://)[^/@]*@", r"\1***@", str(address))


def _scheduler_address(profile: dict) -> str:
    import dask
    address = dask.config.get("scheduler-address", None)
    name = profile["name"]
    if not address:
        raise ConfigError(f"cluster profile {name!r}: expected a scheduler address (scheduler-address: "
                          "tcp://HOST:8786 in the profile, or DASK_SCHEDULER_ADDRESS), got none")
    match = _ADDRESS.match(str(address))
    if not match or "@" in match["rest"]:
        raise ConfigError(f"cluster profile {name!r}: expected a scheduler address like tcp://HOST:PORT "
                          f"(no credentials; TLS settings go in distributed.comm.tls), "
                          f"got {_safe_address(address)!r}")
    return str(address)


_WATCHES: weakref.WeakKeyDictionary[Any, WorkerWatch] = weakref.WeakKeyDictionary()


def watch_of(client) -> WorkerWatch | None:
    """The :class:`WorkerWatch` of a client :func:`connect` gave (None for any other client)."""
    try:
        return _WATCHES.get(client)
    except TypeError:
        return None


@contextlib.contextmanager
def _watch(client, profile: dict, cluster, workers: int | None, log) -> Iterator[WorkerWatch]:
    """Register the client's watch and wait for its first worker (unless the cluster adapts from
    zero: then workers come with the tasks, and the run's checks do the waiting); closed on exit."""
    n, adapt = _count(profile, workers)
    if profile["kind"] == "local" and n is None:
        n = os.cpu_count() or 1
    job_cls = getattr(cluster, "job_cls", None)
    watch = WorkerWatch(client, profile["name"], cluster=cluster, wanted=n if adapt is None else None,
                        timeout=wait_seconds(profile), errors=getattr(job_cls, "submit_errors", None),
                        replace=adapt is None and profile["kind"] in ("slurm", "kubernetes"), log=log)
    _WATCHES[client] = watch
    try:
        if adapt is None or adapt.get("minimum"):
            watch.wait_first()
        yield watch
    finally:
        watch.close()


@contextlib.contextmanager
def connect(profile: dict, workers: int | None = None, log=None, destination: str | None = None) -> Iterator[Any]:
    """A ``distributed.Client`` for ``profile``, once it has a worker; a cluster maskcore started
    stops on exit (its batch jobs cancelled).

    ``workers`` maps per kind: ``local`` -> ``n_workers``, ``slurm``/``kubernetes`` -> ``scale(n)``;
    for ``address`` it is not used (the scheduler's own workers run the tasks). ``log(line)``
    gets ``waiting for workers (0/N)`` while none has come; a ClusterError says why none came
    (:mod:`maskcore.exec.watch`). ``destination``: see :func:`build_cluster`.
    """
    import dask
    from distributed import Client

    if profile["kind"] != "address":
        from .closing_logs import QuietClose

        with build_cluster(profile, workers, destination) as cluster, Client(cluster) as client, \
                _watch(client, profile, cluster, workers, log):
            client.register_plugin(QuietClose())  # its workers close without comm-race tracebacks
            yield client
        return
    with apply_config(profile):
        address = _scheduler_address(profile)
        timeout = dask.config.get("distributed.comm.timeouts.connect")
        try:
            client = Client(address, timeout=timeout)
        except (OSError, TimeoutError) as exc:
            raise ConfigError(f"cluster profile {profile['name']!r}: expected a Dask scheduler answering at "
                              f"{_safe_address(address)} within {timeout}, got {type(exc).__name__}") from None
        with client, _watch(client, profile, None, None, log):
            yield client
