"""Storage locations: fsspec URLs, their options, and keeping credentials out of printed text.

Conventions:
- A location is a local path or any fsspec URL (``s3://bucket/prefix``, ``memory://x``,
  ``tar::s3://bucket/p.tar``). Options are fsspec keyword arguments for its filesystem, from
  ``--storage-option KEY=VALUE`` (see ``parse_storage_options``) or a job's ``storage_options``.
- Credentials and endpoints also come the standard ways, without options: AWS environment
  variables and config files (read by botocore) and fsspec's own ``FSSPEC_<PROTOCOL>_<KWARG>``
  / ``FSSPEC_<PROTOCOL>`` environment configuration, read when fsspec is imported (so in every
  worker process from its own environment). ``filesystem`` merges that configuration with the
  options key by key (fsspec alone lets an explicit ``client_kwargs`` replace the configured
  one whole); explicit options win.
- Anything printed (logs, report, manifest, error messages) goes through ``redact``: URL
  userinfo, sensitive query parameters, ``name=value`` pairs whose name looks like a credential,
  and the literal credential values of the options and of the environment become ``***``.
"""

from __future__ import annotations

import json
import os
import posixpath
import re
from collections.abc import Mapping
from typing import Any

import fsspec
import fsspec.config
from fsspec.core import split_protocol
from fsspec.implementations.local import LocalFileSystem

from ..errors import ConfigError

MASK = "***"

_SENSITIVE_RE = "key|secret|token|passw|passphrase|credential|signature|auth|connection_string|cookie"
_SENSITIVE_NAME = re.compile(_SENSITIVE_RE, re.IGNORECASE)
_ENV_SECRET_NAME = re.compile("SECRET|TOKEN|PASSWORD|PASSWD|ACCESS_KEY|ACCOUNT_KEY|PRIVATE_KEY|"
                              "CONNECTION_STRING", re.IGNORECASE)
_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.\-]*://)(?P<userinfo>[^/\s@?#'\"]+)@")
_QUERY = re.compile(rf"(?P<name>[?&;](?:sig|[^=&;\s#'\"]*(?:{_SENSITIVE_RE})[^=&;\s#'\"]*)=)"
                    rf"[^&;\s#'\"]+", re.IGNORECASE)
_QUOTED_PAIR = re.compile(
    rf"(?P<name>(?P<q>['\"])[\w.\-]*(?:{_SENSITIVE_RE})[\w.\-]*(?P=q)\s*:\s*)"
    rf"(?P<vq>['\"]?)(?P<value>[^'\",}}\s]+)(?P=vq)", re.IGNORECASE)
_BARE_PAIR = re.compile(rf"(?P<name>(?<![\w.\-])[\w.\-]*(?:{_SENSITIVE_RE})[\w.\-]*=)"
                        rf"(?P<vq>['\"]?)(?P<value>[^'\",}}\s&;]+)(?P=vq)", re.IGNORECASE)
_MIN_SECRET_LEN = 6   # shorter values are not replaced where they appear in text ("anon", "1")


# --- options -----------------------------------------------------------------------------------

def is_sensitive(name: str) -> bool:
    """Whether an option or variable named ``name`` holds a credential (by its name)."""
    return bool(_SENSITIVE_NAME.search(name))


def parse_storage_options(pairs: list[str] | None) -> dict:
    """``["KEY=VALUE", ...]`` (repeated ``--storage-option``) -> nested fsspec options.

    A value is parsed as JSON when it parses (``anon=true``, ``max_concurrency=4``,
    ``client_kwargs={"region_name": "eu-west-1"}``), else kept as text; values of credential
    names (``key``, ``secret``, ``token``, ...) always stay text. Dots in KEY nest
    (``client_kwargs.endpoint_url=http://127.0.0.1:9000``). Later pairs override earlier
    ones. Raises ``ConfigError`` naming the pair (never its value) when malformed.
    """
    options: dict = {}
    for i, pair in enumerate(pairs or ()):
        name, sep, text = pair.partition("=")
        keys = name.strip().split(".")
        where = f"--storage-option #{i + 1} ({name.strip() or '?'}=...)"
        if not sep or any(not k for k in keys):
            raise ConfigError(f"{where}: expected KEY=VALUE with KEY like 'anon' or "
                              f"'client_kwargs.endpoint_url', got no '=' or an empty key")
        value: Any = text
        if not is_sensitive(keys[-1]):
            try:
                value = json.loads(text)
            except ValueError:
                value = text
        node = options
        for depth, key in enumerate(keys[:-1]):
            child = node.setdefault(key, {})
            if not isinstance(child, dict):
                raise ConfigError(f"{where}: expected {'.'.join(keys[:depth + 1])!r} to be a "
                                  f"group of options, got a value set by an earlier pair")
            node = child
        node[keys[-1]] = value
    return options


def merge_options(base: Mapping, over: Mapping) -> dict:
    """Nested options merged key by key; ``over`` wins (a job's options, then the command
    line's)."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge_options(out[key], value)
        else:
            out[key] = value
    return out


def _protocol(url: str) -> str:
    return split_protocol(url)[0] or "file"


def filesystem(url: str, storage_options: Mapping | None = None
               ) -> tuple[fsspec.AbstractFileSystem, str]:
    """(filesystem, path on it) for a local path or fsspec URL and its options.

    The filesystem's ``FSSPEC_*`` configuration (see module docstring) is merged under the
    options. Raises ``ConfigError`` for a protocol fsspec does not know and ``ImportError``
    saying what to install when its package is missing (``pip install 'maskcore[s3]'``).
    """
    url = os.fspath(url)
    options = dict(storage_options or {})
    protocol = _protocol(url)
    try:
        cls = fsspec.get_filesystem_class(protocol)
    except ValueError:
        raise ConfigError(f"storage URL {redact(url)!r}: expected a protocol fsspec knows "
                          f"(file, s3, gcs, ...), got {protocol!r}") from None
    except ImportError as exc:
        extra = " (pip install 'maskcore[s3]')" if protocol in ("s3", "s3a") else ""
        raise ImportError(f"storage URL {redact(url)!r} needs a package that is not "
                          f"installed{extra}: {exc}") from None
    if "::" not in url:  # chained URLs take per-protocol option groups; fsspec applies those
        protocols = cls.protocol if isinstance(cls.protocol, (tuple, list)) else (cls.protocol,)
        configured: dict = {}
        for name in protocols:
            configured = merge_options(configured, fsspec.config.conf.get(name, {}))
        options = merge_options(configured, options)
    return fsspec.core.url_to_fs(url, **options)


def cat_whole(fs: fsspec.AbstractFileSystem, path: str) -> bytes:
    """A whole file in one request. (s3fs first asks for the size, a HEAD, to split large
    reads into concurrent range GETs; files of one item gain nothing from that.)"""
    protocols = fs.protocol if isinstance(fs.protocol, (tuple, list)) else (fs.protocol,)
    if "s3" in protocols:
        return fs.cat_file(path, max_concurrency=1)
    return fs.cat_file(path)


# --- change stamps ------------------------------------------------------------------------------

STAMP_SETTLE_SECONDS = 2.0
"""A stamp made only of times (a local file: mtime, ctime, size, inode) is trusted only once its
times are this much older than the listing: a file changed twice within one tick of its
filesystem's clock (Linux: a few ms; FAT, some NFS servers: 1-2 s) keeps the same times (git's
"racy clean" problem). A younger file gets no stamp, so the next run reads and hashes it."""

_CONTENT_FIELDS = ("ETag", "etag", "md5Hash", "crc32c", "generation", "VersionId", "version_id")
"""Fields of fsspec ``info()`` that change whenever the bytes do, whatever the clock (an S3 ETag
is the MD5 of the object or of its parts; a GCS generation is new on every write)."""
_TIME_FIELDS = ("LastModified", "last_modified", "mtime", "updated", "created", "ino", "size")


def change_stamp(info: Mapping, listed_at: float) -> str | None:
    """The store's change stamp of a listed file (``fs.find(detail=True)`` / ``fs.info`` entry), or
    None when it has none to trust (then the file is read and hashed, as with ``--verify``).

    ``"ETag=...;LastModified=...;size=..."``: the content fields present (S3 ETag, GCS md5Hash /
    crc32c / generation, version ids) and the time fields (S3 LastModified; local mtime, ctime as
    ``created``, inode and size). A stamp with no content field is refused while its newest time
    is less than ``STAMP_SETTLE_SECONDS`` before ``listed_at`` (``time.time()`` when the listing
    began). Equal stamps mean unchanged bytes only as far as the store keeps its stamps honest:
    see README "Incremental runs: what is trusted".
    """
    parts = [f"{k}={info[k]}" for k in (*_CONTENT_FIELDS, *_TIME_FIELDS) if info.get(k) is not None]
    if not any(info.get(k) is not None for k in _CONTENT_FIELDS):
        times = [info.get(k) for k in ("mtime", "created", "LastModified", "last_modified", "updated")]
        seconds = [t.timestamp() if hasattr(t, "timestamp") else t for t in times if t is not None]
        seconds = [t for t in seconds if isinstance(t, (int, float))]
        if not seconds or max(seconds) > listed_at - STAMP_SETTLE_SECONDS:
            return None
    return ";".join(parts) if parts else None


# --- where a location is -----------------------------------------------------------------------

def resolve_location(location: str, base: str) -> str:
    """A location written in a job file: a URL (``s3://...``) or an absolute path as it is, a
    relative local path joined to ``base`` (the job file's folder) and normalised, so that a job
    runs the same from any working directory."""
    if "://" in location or os.path.isabs(location):
        return location
    return os.path.normpath(os.path.join(base, location))


def _location(url: str) -> tuple[frozenset, list[str]]:
    """(protocols of the filesystem, candidate absolute paths) of the innermost target."""
    target = os.fspath(url).split("::")[-1]
    protocol = _protocol(target)
    if protocol in ("file", "local"):
        path = LocalFileSystem._strip_protocol(target)
        return frozenset({"file", "local"}), [os.path.realpath(path)]
    try:
        cls = fsspec.get_filesystem_class(protocol)
        protocols = cls.protocol if isinstance(cls.protocol, (tuple, list)) else (cls.protocol,)
        path = cls._strip_protocol(target)
    except (ValueError, ImportError):
        protocols, path = (protocol,), split_protocol(target)[1]
    path = "/" + re.sub("/+", "/", path).strip("/")
    # An object store may take "a/../b" literally: compare the literal and the collapsed form.
    return frozenset(protocols), sorted({path, posixpath.normpath(path)})


def is_inside(dst_url: str, src_url: str, storage_options: Mapping | None = None) -> bool:
    """Whether ``dst_url`` is ``src_url`` or below it, on the same filesystem.

    Local paths compare resolved (symlinks, ``..``, relative to the current folder); other
    URLs by protocol family (``s3`` = ``s3a``) and path (bucket and prefix, trailing and
    repeated slashes ignored, ``..`` taken both literally and collapsed). For a chained URL
    (``tar::s3://b/p.tar``) the innermost target counts. ``storage_options`` is accepted for
    symmetry with the other helpers; comparing needs no request.
    """
    del storage_options  # one set of options serves source and destination alike
    dst_protocols, dst_paths = _location(dst_url)
    src_protocols, src_paths = _location(src_url)
    if not dst_protocols & src_protocols:
        return False
    sep = os.sep if "file" in src_protocols else "/"
    return any(d == s or d.startswith(s.rstrip(sep) + sep)
               for d in dst_paths for s in src_paths)


# --- redaction ---------------------------------------------------------------------------------

def _secret_values(options: Any, sensitive: bool = False) -> set[str]:
    if isinstance(options, Mapping):
        out: set[str] = set()
        for key, value in options.items():
            out |= _secret_values(value, sensitive or is_sensitive(str(key)))
        return out
    if isinstance(options, (list, tuple)):
        return set().union(*(_secret_values(v, sensitive) for v in options)) if options else set()
    if sensitive and isinstance(options, str) and len(options) >= _MIN_SECRET_LEN:
        return {options}
    return set()


def _env_secrets() -> set[str]:
    """Credential values of the environment: ``FSSPEC_<P>_<credential name>``, the values of
    credential names inside ``FSSPEC_<P>`` JSON, and variables like ``*_SECRET_ACCESS_KEY``."""
    out: set[str] = set()
    for name, value in os.environ.items():
        parts = name.split("_", 2)
        if parts[0] == "FSSPEC" and len(parts) > 1:
            try:
                decoded = json.loads(value)  # FSSPEC_S3='{"secret": ...}', ..._CLIENT_KWARGS='{...}'
            except ValueError:
                decoded = value
            out |= _secret_values(decoded, len(parts) == 3 and is_sensitive(parts[2]))
        elif _ENV_SECRET_NAME.search(name):
            out |= _secret_values(value, True)
    return out


def _userinfo_secrets(text: str) -> set[str]:
    """Userinfo of the URLs in ``text`` (and its password part), to mask wherever it recurs:
    a library may repeat it without the scheme (``Invalid bucket name "user:pw@bucket"``)."""
    out = set()
    for match in _USERINFO.finditer(text):
        userinfo = match["userinfo"]
        out |= {userinfo, *_secret_values(userinfo.partition(":")[2], True)}
    return out


def redact(text: Any, storage_options: Mapping | None = None) -> str:
    """``text`` (a URL, log line or error message) with credentials replaced by ``***``.

    Removes URL userinfo (``s3://user:pw@host`` -> ``s3://***@host``, and the same userinfo
    wherever else it appears in ``text``), values of query parameters and ``name=value`` /
    ``'name': value`` pairs whose name looks like a credential, and every literal credential
    value of ``storage_options`` and of the environment (``AWS_SECRET_ACCESS_KEY``,
    ``FSSPEC_S3_SECRET``, ...).
    """
    text = os.fspath(text) if isinstance(text, os.PathLike) else str(text)
    secrets = _secret_values(storage_options or {}) | _env_secrets() | _userinfo_secrets(text)
    for value in sorted(secrets, key=len, reverse=True):
        text = text.replace(value, MASK)
    text = _USERINFO.sub(rf"\g<scheme>{MASK}@", text)  # what the literal pass left, if anything
    text = _QUERY.sub(rf"\g<name>{MASK}", text)
    text = _QUOTED_PAIR.sub(rf"\g<name>\g<vq>{MASK}\g<vq>", text)
    return _BARE_PAIR.sub(rf"\g<name>\g<vq>{MASK}\g<vq>", text)


def redact_options(storage_options: Mapping | None) -> dict:
    """A copy of the options fit for a report: credential values ``***``, URLs redacted."""
    def clean(value: Any, sensitive: bool) -> Any:
        if isinstance(value, Mapping):
            return {k: clean(v, sensitive or is_sensitive(str(k))) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [clean(v, sensitive) for v in value]
        if sensitive:
            return MASK
        return redact(value) if isinstance(value, str) else value
    return clean(dict(storage_options or {}), False)
