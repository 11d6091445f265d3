"""Exports from and to S3, against a real S3-compatible server on loopback (tests/helpers/s3server.py).

The Dask workers are separate processes started before any S3 setting exists in the
environment: they reach the server only through the storage options each task carries.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from helpers import REPO
from helpers.oracles import load
from maskcore.errors import MaskcoreError, ProjectError
from maskcore.exec.run import EXIT_PARTIAL, ExportConfig, run_export
from maskcore.io.sinks.fsdir import FsspecDirSink
from maskcore.io.storage import filesystem, is_inside, parse_storage_options, redact, redact_options
from maskcore.readers.supervisely import SuperviselySource

BROKEN = "broken.jpg"  # an item whose rendering fails: its object names an unknown class


# --- helpers and shared fixtures ---------------------------------------------------------------

def local_tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


def s3_tree(fs, root: str) -> dict[str, bytes]:
    return {p[len(root) + 1:]: fs.cat_file(p) for p in sorted(fs.find(root))}


def outputs_of(manifest) -> list[tuple]:
    return [(r["dataset"], r["item"], r["status"], [(o["path"], o["bytes"], o["sha256"])
                                                   for o in r["outputs"]])
            for r in manifest.to_pylist()]


@pytest.fixture(scope="module")
def project(tmp_path_factory, samples) -> Path:
    """The bundled vector project plus one item that fails (unknown class)."""
    root = tmp_path_factory.mktemp("src") / "proj"
    shutil.copytree(samples / "vector", root)
    shutil.copy(root / "ds/img/cat1.jpg", root / "ds/img" / BROKEN)
    ann = json.loads((root / "ds/ann/cat1.jpg.json").read_text())
    ann["objects"][0]["classTitle"] = "no-such-class"
    (root / "ds/ann" / f"{BROKEN}.json").write_text(json.dumps(ann))
    return root


@pytest.fixture(scope="module")
def project_tar(project, tmp_path_factory) -> bytes:
    """The project as an exported tar: root folder ``12_proj/``."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        tar.add(project, arcname="12_proj")
    return buf.getvalue()


@pytest.fixture(scope="module")
def reference(project, tmp_path_factory, dask_client) -> dict[str, bytes]:
    """The same export to a local folder."""
    dst = tmp_path_factory.mktemp("ref") / "out"
    result = run_export(ExportConfig(source=str(project), destination=str(dst)),
                        log=lambda _: None, client=dask_client)
    assert result.exit_code == EXIT_PARTIAL  # the broken item, and only it
    assert result.report["items"]["failed"] == 1
    return local_tree(dst)


def no_s3_settings_in_environment() -> bool:
    return not any(k.startswith(("FSSPEC_S3", "AWS_ENDPOINT")) for k in os.environ)


def assert_same_export(out: dict[str, bytes], ref: dict[str, bytes], secret: str) -> None:
    # Same object names as the local files: nothing temporary, no partials, the lock released.
    assert sorted(out) == sorted(ref)
    for path, data in ref.items():
        if path not in (".maskcore-meta/report.json", ".maskcore-meta/manifest.parquet"):
            assert out[path] == data, f"{path} differs from the local export"
    manifest = pq.read_table(io.BytesIO(out[".maskcore-meta/manifest.parquet"]))
    ref_manifest = pq.read_table(io.BytesIO(ref[".maskcore-meta/manifest.parquet"]))
    assert outputs_of(manifest) == outputs_of(ref_manifest)
    checked = 0
    for row in manifest.to_pylist():
        for o in row["outputs"]:
            assert hashlib.sha256(out[o["path"]]).hexdigest() == o["sha256"], o["path"]
            checked += 1
    assert checked == len(out) - 5  # every file but meta.json, the two colour maps, the report, the manifest
    broken = [r for r in manifest.to_pylist() if r["item"] == BROKEN]
    assert broken[0]["status"] == "failed" and broken[0]["outputs"] == []
    assert "no-such-class" in broken[0]["error"]
    assert not [p for p in out if "broken" in p]  # the failed item wrote nothing at all
    report = json.loads(out[".maskcore-meta/report.json"])
    assert report["items"]["failed"] == 1 and report["items"]["total"] == 7
    for path, data in out.items():
        assert secret.encode() not in data, f"the secret leaked into {path}"


# --- end to end through Dask worker processes ---------------------------------------------------

def test_folder_on_s3_exports_to_s3_like_a_local_export(s3_server, s3_bucket, project, reference,
                                                        dask_client, capfd):
    fs = s3_server.filesystem()
    fs.put(f"{project}/", f"{s3_bucket}/in/proj/", recursive=True)
    assert no_s3_settings_in_environment()
    logs: list[str] = []
    cfg = ExportConfig(source=f"s3://{s3_bucket}/in/proj/", destination=f"s3://{s3_bucket}/out",
                       storage_options=s3_server.options())
    result = run_export(cfg, log=logs.append, client=dask_client)
    assert result.exit_code == EXIT_PARTIAL
    assert_same_export(s3_tree(fs, f"{s3_bucket}/out"), reference, s3_server.secret)
    assert logs and not [line for line in logs
                         if s3_server.secret in line or s3_server.key in line]
    assert s3_server.secret not in json.dumps(result.report)
    assert sorted(s3_tree(fs, f"{s3_bucket}/in/proj")) == sorted(local_tree(project))  # untouched
    printed = capfd.readouterr()
    assert s3_server.secret not in printed.out + printed.err


def test_tar_on_s3_exports_to_s3_like_a_local_export(s3_server, s3_bucket, project_tar, reference,
                                                     dask_client):
    fs = s3_server.filesystem()
    fs.pipe_file(f"{s3_bucket}/in/12_proj.tar", project_tar)
    cfg = ExportConfig(source=f"s3://{s3_bucket}/in/12_proj.tar",
                       destination=f"s3://{s3_bucket}/out/", storage_options=s3_server.options())
    result = run_export(cfg, log=lambda _: None, client=dask_client)
    assert result.exit_code == EXIT_PARTIAL
    assert_same_export(s3_tree(fs, f"{s3_bucket}/out"), reference, s3_server.secret)


def _read_all(source, paths):
    return [len(source.read_bytes(p)) for p in paths]


def test_reader_requests_on_s3_are_few(s3_server, s3_bucket, project, project_tar, dask_client):
    """Opening a folder is a handful of requests; on a worker, each file is one GET (no HEAD),
    and a tar's member index travels with the source (no rescan, one range GET per member)."""
    fs = s3_server.filesystem()
    fs.put(f"{project}/", f"{s3_bucket}/proj/", recursive=True)
    fs.pipe_file(f"{s3_bucket}/p.tar", project_tar)
    start = len(s3_server.log.lines)
    source = SuperviselySource.from_path(f"s3://{s3_bucket}/proj", s3_server.options())
    source.read_meta()
    items = source.list_items().to_pylist()
    opening = s3_server.requests(s3_bucket, start)
    assert len(items) == 7
    assert len(opening) <= 4, opening  # is it a folder, meta.json there, read it, list all
    assert sum(r.startswith("GET") and "list-type=2" in r for r in opening) <= 2
    paths = sorted(p for r in items for p in (r["ann_path"], r["img_path"]))

    start = len(s3_server.log.lines)
    sizes = dask_client.submit(_read_all, source, paths, pure=False).result()
    assert sizes == [(project / p).stat().st_size for p in paths]
    assert sorted(s3_server.requests(s3_bucket, start)) == sorted(
        f"GET /{s3_bucket}/proj/{p} HTTP/1.1" for p in paths)

    tarred = SuperviselySource.from_path(f"s3://{s3_bucket}/p.tar", s3_server.options())
    start = len(s3_server.log.lines)
    sizes = dask_client.submit(_read_all, tarred, paths, pure=False).result()
    assert sizes == [(project / p).stat().st_size for p in paths]
    assert s3_server.requests(s3_bucket, start) == [f"GET /{s3_bucket}/p.tar HTTP/1.1"] * len(paths)


# --- configuration from the environment (fresh processes: fsspec reads it at import) -------------

def _clean_env(**extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "FSSPEC_"))}
    env.update(AWS_CONFIG_FILE=os.devnull, AWS_SHARED_CREDENTIALS_FILE=os.devnull,
               AWS_DEFAULT_REGION="us-east-1")
    env.update(extra)
    return env


LIST_SCRIPT = """
import sys, json
from maskcore.io.storage import filesystem
fs, path = filesystem(sys.argv[1], json.loads(sys.argv[2]))
print(len(fs.find(path)), fs.cat_file(path + "/meta.json")[:1].decode())
"""


@pytest.mark.parametrize("case", ["fsspec-kwargs", "fsspec-json-merged-with-options",
                                  "aws-env-and-config-file"])
def test_credentials_and_endpoint_from_the_environment(case, s3_server, s3_bucket, project, tmp_path):
    fs = s3_server.filesystem()
    fs.put(f"{project}/", f"{s3_bucket}/proj/", recursive=True)
    key, secret, endpoint = s3_server.key, s3_server.secret, s3_server.endpoint
    options: dict = {}
    if case == "fsspec-kwargs":
        env = _clean_env(FSSPEC_S3_KEY=key, FSSPEC_S3_SECRET=secret, FSSPEC_S3_ENDPOINT_URL=endpoint)
    elif case == "fsspec-json-merged-with-options":
        # fsspec alone lets an explicit client_kwargs replace the configured one (and its endpoint)
        env = _clean_env(FSSPEC_S3=json.dumps({"key": key, "secret": secret,
                                               "client_kwargs": {"endpoint_url": endpoint}}))
        options = {"client_kwargs": {"region_name": "us-east-1"}}
    else:
        config = tmp_path / "aws_config"
        config.write_text(f"[default]\nregion = us-east-1\nendpoint_url = {endpoint}\n")
        env = _clean_env(AWS_ACCESS_KEY_ID=key, AWS_SECRET_ACCESS_KEY=secret,
                         AWS_CONFIG_FILE=str(config))
    run = subprocess.run([sys.executable, "-c", LIST_SCRIPT, f"s3://{s3_bucket}/proj", json.dumps(options)],
                         env=env, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.split() == [str(len(local_tree(project))), "{"]


def test_cli_export_with_fsspec_environment_and_storage_options(s3_server, s3_bucket, project,
                                                               reference):
    """`maskcore export s3://... s3://...`: the endpoint comes from FSSPEC_S3_CLIENT_KWARGS
    alone (the driver and the worker process it starts read their environment), the
    credentials from --storage-option; neither the secret nor the key id is ever printed."""
    fs = s3_server.filesystem()
    fs.put(f"{project}/", f"{s3_bucket}/in/proj/", recursive=True)
    env = _clean_env(FSSPEC_S3_CLIENT_KWARGS=json.dumps({"endpoint_url": s3_server.endpoint}))
    run = subprocess.run([sys.executable, "-m", "maskcore", "export", f"s3://{s3_bucket}/in/proj",
                          f"s3://{s3_bucket}/out", "--workers", "1",
                          "--storage-option", f"key={s3_server.key}",
                          "--storage-option", f"secret={s3_server.secret}"],
                         env=env, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert run.returncode == EXIT_PARTIAL, run.stderr[-3000:]
    assert s3_server.secret not in run.stdout + run.stderr
    assert s3_server.key not in run.stdout + run.stderr
    assert_same_export(s3_tree(fs, f"{s3_bucket}/out"), reference, s3_server.secret)


# --- refusals and credentials in messages -------------------------------------------------------

def test_destination_inside_the_source_is_refused_on_s3(s3_server, s3_bucket, project):
    fs = s3_server.filesystem()
    fs.put(f"{project}/", f"{s3_bucket}/in/proj/", recursive=True)
    before = sorted(fs.find(s3_bucket))
    for dst in (f"s3://{s3_bucket}/in/proj/out", f"s3a://{s3_bucket}//in/proj/", f"s3://{s3_bucket}/in/proj"):
        cfg = ExportConfig(source=f"s3://{s3_bucket}/in/proj/", destination=dst,
                           storage_options=s3_server.options())
        with pytest.raises(MaskcoreError, match="inside the source"):
            run_export(cfg, log=lambda _: None)
    assert sorted(fs.find(s3_bucket)) == before


def test_credentials_in_a_url_never_reach_the_error(s3_server, s3_bucket, capsys, monkeypatch):
    import fsspec.config

    from maskcore.cli.main import main

    # The command line has no options here: the endpoint comes from fsspec's configuration.
    monkeypatch.setitem(fsspec.config.conf, "s3", {"endpoint_url": s3_server.endpoint})

    secret = "url-secret-Zq8RkP3xWm"
    url = f"s3://AKIAURLUSER:{secret}@{s3_bucket}/in/proj"
    with pytest.raises(ProjectError) as err:
        SuperviselySource.from_path(url, s3_server.options())
    assert secret not in str(err.value) and "AKIAURLUSER" not in str(err.value)
    assert "***" in str(err.value)
    code = main(["export", url, f"s3://{s3_bucket}/out"])
    captured = capsys.readouterr()
    assert code == 1
    assert "expected a readable folder" in captured.err
    assert secret not in captured.out + captured.err


# --- the sink on S3 -----------------------------------------------------------------------------

def test_sink_on_s3_sees_other_writers_and_deletes_literally(s3_server, s3_bucket):
    sink = FsspecDirSink(f"s3://{s3_bucket}/dst", s3_server.options())
    other = s3_server.filesystem()
    assert sink.listdir("d") == [] and not sink.exists("d/x.png")
    for name in ("a[1].png", "a1.png", "b.png"):
        sink.write(f"d/{name}", name.encode())
    assert sink.listdir("d") == ["a1.png", "a[1].png", "b.png"]
    other.pipe_file(f"{s3_bucket}/dst/d/c.png", b"c")  # another process writes
    assert sink.exists("d/c.png")  # not answered from the listing above
    assert sink.listdir("d") == ["a1.png", "a[1].png", "b.png", "c.png"]
    sink.delete(["d/a[1].png", "d/b.png", "d/missing.png"])  # a glob would also take a1.png
    assert sorted(other.find(f"{s3_bucket}/dst")) == [f"{s3_bucket}/dst/d/a1.png", f"{s3_bucket}/dst/d/c.png"]
    sink.create_exclusive("lock", b"1")
    with pytest.raises(FileExistsError):
        sink.create_exclusive("lock", b"2")
    assert sink.read("lock") == b"1"


# --- storage helpers (no server) ----------------------------------------------------------------

def test_parse_storage_options_nests_and_parses_json():
    assert parse_storage_options([
        "key=AKIA123", "secret=123456789", "anon=false", "max_concurrency=4",
        "client_kwargs.endpoint_url=http://127.0.0.1:9000", "client_kwargs.region_name=eu-west-1",
        'config_kwargs={"connect_timeout": 5}', "token=true", "profile=default",
    ]) == {
        "key": "AKIA123", "secret": "123456789", "anon": False, "max_concurrency": 4,
        "client_kwargs": {"endpoint_url": "http://127.0.0.1:9000", "region_name": "eu-west-1"},
        "config_kwargs": {"connect_timeout": 5}, "token": "true", "profile": "default",
    }


@pytest.mark.parametrize("pairs", [["secret"], ["=x"], ["a..b=1"], ["a=1", "a.b=2"]])
def test_parse_storage_options_refuses_malformed_pairs_without_echoing_values(pairs):
    with pytest.raises(MaskcoreError) as err:
        parse_storage_options(["password=hunter22", *pairs])
    assert "hunter22" not in str(err.value) and "--storage-option" in str(err.value)


@pytest.mark.parametrize("text, options, expected", [
    ("s3://AKIA1:sekr3tval@bucket/p", None, "s3://***@bucket/p"),
    ('opening s3://u:pw-123456@b/p: Invalid bucket name "u:pw-123456@b"', None,
     'opening s3://***@b/p: Invalid bucket name "***@b"'),
    ("https://h/p.tar?X-Amz-Signature=abcd&X-Amz-Credential=zz&v=1", None,
     "https://h/p.tar?X-Amz-Signature=***&X-Amz-Credential=***&v=1"),
    ("{'key': 'AKIAXYZ', 'secret': 'sss', 'anon': False}", None,
     "{'key': '***', 'secret': '***', 'anon': False}"),
    ("failed: secret=abc token=t0 path=/data", None, "failed: secret=*** token=*** path=/data"),
    ("KeyError: 'ds/a.png' at /work/main", None, "KeyError: 'ds/a.png' at /work/main"),
    ("echo opt-secret-value here", {"client_kwargs": {"aws_secret": "opt-secret-value"}},
     "echo *** here"),
    ("endpoint http://127.0.0.1:9000 anon", {"anon": True, "key": "anon"},
     "endpoint http://127.0.0.1:9000 anon"),
])
def test_redact(text, options, expected):
    assert redact(text, options) == expected


def test_redact_masks_credentials_of_the_environment(monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "env-secret-9f8e7d")
    monkeypatch.setenv("FSSPEC_S3_KEY", "fsspec-key-1a2b3c")
    monkeypatch.setenv("FSSPEC_GCS", json.dumps({"token": "gcs-token-4d5e6f", "project": "p"}))
    monkeypatch.setenv("FSSPEC_S3_CLIENT_KWARGS", json.dumps({"aws_secret_access_key": "ck-secret-77",
                                                              "region_name": "eu-west-1"}))
    text = "x env-secret-9f8e7d fsspec-key-1a2b3c gcs-token-4d5e6f ck-secret-77 p eu-west-1"
    assert redact(text) == "x *** *** *** *** p eu-west-1"
    assert redact_options({"key": "k", "client_kwargs": {"endpoint_url": "http://u:p@h",
                                                         "headers": {"Authorization": "Bearer t"}},
                           "anon": False}) == {
        "key": "***", "client_kwargs": {"endpoint_url": "http://***@h",
                                        "headers": {"Authorization": "***"}}, "anon": False}


@pytest.mark.parametrize("dst, src, inside", [
    ("s3://b/p/out", "s3://b/p", True),
    ("s3://b/p", "s3://b/p/", True),
    ("s3://b/p/", "s3://b/p", True),
    ("s3a://b//p///x/", "s3://b/p", True),
    ("s3://b/p/../q", "s3://b/p", True),     # S3 keeps "p/../q" literally: inside p/
    ("s3://b/p2", "s3://b/p", False),
    ("s3://c/p/out", "s3://b/p", False),
    ("s3://b", "s3://b/p", False),
    ("s3://b/p.tar/out", "tar::s3://b/p.tar", True),
    ("memory://a/b", "memory:///a", True),
    ("s3://tmp/x/y", "/tmp/x", False),
])
def test_is_inside_urls(dst, src, inside):
    if "s3" in dst.split(":")[0] + src.split(":")[0]:
        load("s3fs")  # S3 URLs (s3://, s3a://) are the [s3] extra's
    assert is_inside(dst, src, {}) is inside


def test_is_inside_local_paths(tmp_path, monkeypatch):
    (tmp_path / "src").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "src")
    monkeypatch.chdir(tmp_path)
    assert is_inside("src/out", str(tmp_path / "src"))
    assert is_inside(f"file://{tmp_path}/link/out", "src")
    assert is_inside(str(tmp_path / "src/a/../b"), "src")
    assert not is_inside(str(tmp_path / "src2"), "src")
    assert not is_inside(str(tmp_path), "src")


def test_unknown_protocol_is_a_config_error():
    with pytest.raises(MaskcoreError, match="expected a protocol fsspec knows"):
        filesystem("nosuchproto://x/y")
