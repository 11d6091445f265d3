"""What a person sees on the console (issue 16): failures named at the end of a run, usage errors
as exit 2, no abbreviated flags, selections that match nothing. In-process through ``main(argv)``."""

from __future__ import annotations

from pathlib import Path

import pytest

from maskcore.cli.main import main

REPO = Path(__file__).resolve().parents[2]
VECTOR = REPO / "examples" / "sly_catsdogs" / "vector"


def test_failures_are_counted_by_kind_and_the_first_named(tmp_path, capsys):
    # the urban scene's CVAT XML without its photos: every human preview fails for a missing image
    src = REPO / "tests" / "data" / "cvat_urban_scene" / "annotations.xml"
    assert main(["export", str(src), str(tmp_path / "o"), "--workers", "1"]) == 3
    err = capsys.readouterr().err
    assert "items failed (20 MissingImageError):" in err
    named = [line for line in err.splitlines() if line.startswith("maskcore:   default/")]
    assert len(named) == 5 and all("image file is missing" in line for line in named)
    assert "... and 15 more in the report" in err


def test_warnings_are_counted_with_the_first_one(tmp_path, capsys):
    src = tmp_path / "src"
    import shutil

    shutil.copytree(VECTOR, src)
    (src / "ds" / "img" / "dog1.jpg").unlink()  # an annotation without its image: masks, and a warning
    assert main(["export", str(src), str(tmp_path / "o"), "--masks", "machine"]) == 0
    err = capsys.readouterr().err
    assert "maskcore: 1 warnings on 1 items (first: ds/dog1.jpg: the image file is missing" in err


@pytest.mark.parametrize("argv, needle", [
    (["--layout", "nope"], "invalid choice: 'nope'"),
    (["--masks", "machine,foo"], "usage error: masks: expected a non-empty subset"),
    (["-o", "thickness=0"], "usage error: thickness: expected an integer 1..1000, got 0"),
    (["--thicknes", "3"], "unrecognized arguments: --thicknes 3"),
    (["--layout", "save-masks"], "--machine-colors FILE and/or --human-colors FILE"),
])
def test_bad_flags_are_usage_errors(argv, needle, tmp_path, capsys):
    try:
        code = main(["export", str(VECTOR), str(tmp_path / "o"), *argv])
    except SystemExit as exc:  # argparse's own refusals
        code = exc.code
    assert code == 2
    assert needle in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_a_selection_that_matches_nothing_says_so_and_exits_6(tmp_path, capsys):
    assert main(["export", str(VECTOR), str(tmp_path / "o"), "--dataset", "dss"]) == 6
    err = capsys.readouterr().err
    assert "the item selection matched none of the 6 items; no dataset 'dss' (did you mean 'ds'?)" in err
    assert main(["export", str(VECTOR), str(tmp_path / "o2"), "--item", "dog1.jpeg"]) == 6
    assert "no item 'dog1.jpeg' (did you mean 'dog1.jpg'" in capsys.readouterr().err


def test_failed_items_are_named_live_once_each(tmp_path, capsys):
    src = REPO / "tests" / "data" / "cvat_urban_scene" / "annotations.xml"
    assert main(["export", str(src), str(tmp_path / "o"), "--workers", "1"]) == 3
    live = [line for line in capsys.readouterr().err.splitlines() if line.startswith("maskcore: failed: ")]
    assert len(live) == 20 and len(set(live)) == 20
    assert all("image file is missing" in line for line in live)


def _tree(root: Path) -> dict[str, str]:
    import hashlib

    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in root.rglob("*") if p.is_file() and ".maskcore-meta" not in p.relative_to(root).parts}


@pytest.fixture(scope="module")
def vector_folder(tmp_path_factory):
    """The sample's plain folder export (what every archive must extract to)."""
    dst = tmp_path_factory.mktemp("folder")
    assert main(["export", str(VECTOR), str(dst), "--cluster", "inprocess"]) == 0
    return _tree(dst)


def _untar(paths: list[Path], into: Path) -> dict[str, str]:
    import subprocess

    from helpers.oracles import program

    into.mkdir()
    joined = into.parent / (into.name + ".tar")
    joined.write_bytes(b"".join(p.read_bytes() for p in paths))
    done = subprocess.run([program("tar"), "-xf", str(joined)], cwd=into, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    return _tree(into)


@pytest.mark.parametrize("part_size, parts", [("500MB", 1), ("3MB", 5)])
def test_archive_parts_follow_the_part_size_and_are_named_at_the_end(part_size, parts, vector_folder,
                                                                   tmp_path, capsys):
    """16 MB of export: with 500 MB parts one ``vector.tar`` (no ``.001``); with 3 MB parts, parts
    by size (not by partition: 6 partitions here), each extracted by GNU tar to the folder export;
    the names and the destination are printed, the report lists them and verify passes."""
    out = tmp_path / "o"
    assert main(["export", str(VECTOR), str(out), "--part-size", part_size, "--items-per-partition", "1",
                 "--cluster", "inprocess"]) == 0
    err = capsys.readouterr().err
    names = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))
    expected = ["vector.tar"] if parts == 1 else [f"vector.tar.{i:03d}" for i in range(1, parts + 1)]
    assert names == expected
    assert f"archive{f' ({parts} parts)' if parts > 1 else ''}: {', '.join(names)} in {out}/" in err
    import json

    report = json.loads((out / ".maskcore-meta" / "report.json").read_text())
    assert [f["part"] for f in report["archive"]["files"]] == names
    assert _untar([out / n for n in names], tmp_path / "x") == vector_folder
    assert main(["verify", str(out)]) == 0


# -- progress and plain log lines (issue 16 item 3) ------------------------------------------

STAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ "


def test_plain_log_lines_start_with_an_iso_utc_timestamp(tmp_path):
    """stderr a file (cron, Slurm): every line of the run is stamped, the archive line too."""
    import re
    from contextlib import redirect_stderr

    with open(tmp_path / "log", "w") as log, redirect_stderr(log):
        code = main(["export", str(VECTOR), str(tmp_path / "o"), "--cluster", "inprocess", "--masks", "machine",
                     "--no-images", "--archive"])
    lines = (tmp_path / "log").read_text().splitlines()
    assert code == 0 and len(lines) >= 4 and "archive: vector.tar in" in lines[-1]
    assert all(re.match(STAMP + "maskcore: ", line) for line in lines), lines


def test_live_progress_on_a_terminal_counts_items_as_they_finish(tmp_path, monkeypatch):
    """stderr a pseudo-terminal: the live line counts items inside a partition (3 partitions of 2
    items: odd counts appear), with a rate and an ETA, and no timestamps."""
    import os
    import pty
    import re
    import threading
    from contextlib import redirect_stderr

    from maskcore.exec import progress

    monkeypatch.setattr(progress, "REDRAW_SECONDS", 0.0)   # every count drawn: the test sees each one
    master, slave = pty.openpty()
    received: list[bytes] = []

    def read() -> None:
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:   # EIO: the terminal was closed
                return
            if not data:
                return
            received.append(data)

    reader = threading.Thread(target=read)
    reader.start()
    with open(slave, "w", buffering=1, closefd=True) as tty, redirect_stderr(tty):
        assert tty.isatty()
        code = main(["export", str(VECTOR), str(tmp_path / "o"), "--cluster", "inprocess", "--masks", "machine"])
    reader.join(timeout=10)
    os.close(master)
    assert code == 0
    text = b"".join(received).decode()
    draws = [d for d in text.split("\r") if "items " in d]
    counts = [(int(m[1]), int(m[2])) for d in draws for m in [re.search(r"items (\d)/6.*partitions (\d)/(\d)", d)] if m]
    assert {n for n, parts in counts if n % 2} == {1, 3, 5}, text   # mid-partition counts
    assert re.search(r"items 6/6 \(0 failed\), partitions 3/3, [\d.]+ items/s, ETA 0:00:00", text)
    assert not re.search(STAMP, text)                 # a terminal gets no timestamps


def test_workers_report_items_as_they_finish(dask_client, tmp_path):
    """On Dask workers each item is an event on the run's topic: progress lines count items of
    partitions still running (20 items in partitions of 3 on 2 workers)."""
    import re

    from maskcore.exec.run import ExportConfig, run_export

    lines: list[str] = []
    src = REPO / "tests" / "data" / "cvat_urban_scene" / "annotations.xml"
    cfg = ExportConfig(source=str(src), destination=str(tmp_path / "o"), layout_options={"masks": "machine"},
                       progress_interval=1e-6, workers=2, items_per_partition=3)
    assert run_export(cfg, log=lines.append, client=dask_client).exit_code == 0
    shown = [(int(m[1]), int(m[2])) for line in lines
             for m in [re.search(r"items (\d+)/20 .*partitions (\d+)/7", line)] if m]
    assert any(items > 3 * parts for items, parts in shown), lines   # items of running partitions
    assert shown[-1] == (20, 7)


def test_dashboard_link_is_printed_only_when_asked(tmp_path, capsys):
    """--dashboard ADDR: the local cluster serves Dask's dashboard there and the run prints its
    link; a run in this process says it has none; without the flag nothing is said."""
    import re

    assert main(["export", str(VECTOR), str(tmp_path / "a"), "--masks", "machine", "--workers", "1",
                 "--no-in-process", "--dashboard", "127.0.0.1:0"]) == 0
    err = capsys.readouterr().err
    assert re.search(r"maskcore: dashboard: http://127\.0\.0\.1:\d+/status\n", err), err
    assert main(["export", str(VECTOR), str(tmp_path / "b"), "--masks", "machine", "--dashboard"]) == 0
    assert "maskcore: no dashboard: the 6 items run in this process" in capsys.readouterr().err
    assert main(["export", str(VECTOR), str(tmp_path / "c"), "--masks", "machine"]) == 0
    err = capsys.readouterr().err
    assert "maskcore: dashboard" not in err and "no dashboard" not in err


# -- --help lists every layout option (issue 16 item 4) ---------------------------------------

def test_help_lists_every_declared_option_of_every_layout(capsys):
    from maskcore.layouts import LAYOUTS, get_layout_class

    with pytest.raises(SystemExit):
        main(["export", "--help"])
    text = capsys.readouterr().out
    help_ = text[text.index("layout options (-o KEY=VALUE"):]
    sections = dict(re_split(help_))
    assert sorted(sections) == sorted(LAYOUTS)
    for name in LAYOUTS:
        declared = get_layout_class(name).OPTIONS
        assert declared, name
        for option in declared:
            if name == "supervisely-project" and option.key not in sections[name]:
                continue      # the masks options of the supervisely layout
            assert f"    {option.key}: {option.values} [{option.default}]" in sections[name], (name, option)
    for flag in ("--layout {", "--masks", "machine,semantic,human,instance", "--thickness"):
        assert flag in text


def re_split(help_: str):
    """(layout, its lines) from the generated help section."""
    import re

    for m in re.finditer(r"^  (\S+):\n((?:    .*\n?)*)", help_, re.MULTILINE):
        yield m[1], m[2]


@pytest.mark.parametrize("name", ["supervisely", "supervisely-project", "cvat", "isahit", "save-masks"])
def test_every_declared_option_is_one_the_layout_reads(name):
    """Declared keys are the keys from_options knows: a bad value of a declared key is refused
    for its value (or accepted), never as an unknown option; an undeclared key is unknown."""
    from maskcore.errors import ConfigError
    from maskcore.layouts import get_layout, get_layout_class

    for option in get_layout_class(name).OPTIONS:
        if name == "supervisely-project" and option.key == "masks":
            continue
        try:
            get_layout(name, {option.key: object()})
        except ConfigError as exc:
            assert "unknown" not in str(exc), (option.key, str(exc))
    with pytest.raises(ConfigError, match="unknown"):
        get_layout(name, {"masks_machine": True, "masks_human": False, "gt_machine_color": {},
                          "no_such_option": 1} if name == "save-masks" else {"no_such_option": 1})


# -- human previews as JPEG (issue 16 item 10) ------------------------------------------------

def test_jpg_previews_are_deterministic_and_close_to_the_png_ones(tmp_path):
    """-o human_format=jpg: masks_human/<stem>.jpg, the same bytes on every run, decoding to
    the PNG preview's pixels within JPEG error, much smaller; PNG stays the default."""
    import numpy as np

    from maskcore.codec.image import decode_image

    base = ["--masks", "human", "--no-images", "--cluster", "inprocess"]
    assert main(["export", str(VECTOR), str(tmp_path / "png"), *base]) == 0
    for run in ("a", "b"):
        assert main(["export", str(VECTOR), str(tmp_path / run), *base, "-o", "human_format=jpg"]) == 0
    pngs = sorted((tmp_path / "png" / "ds" / "masks_human").iterdir())
    jpgs = sorted((tmp_path / "a" / "ds" / "masks_human").iterdir())
    assert [p.suffix for p in pngs] == [".png"] * 6 and [p.suffix for p in jpgs] == [".jpg"] * 6
    assert [p.stem for p in pngs] == [p.stem for p in jpgs]
    for png, jpg in zip(pngs, jpgs):
        assert jpg.read_bytes() == (tmp_path / "b" / "ds" / "masks_human" / jpg.name).read_bytes()
        want, got = decode_image(png.read_bytes()), decode_image(jpg.read_bytes())
        assert want.shape == got.shape
        error = np.abs(want.astype(np.int16) - got.astype(np.int16))
        assert error.mean() < 3.0, (jpg.name, error.mean())
    assert sum(p.stat().st_size for p in jpgs) * 4 < sum(p.stat().st_size for p in pngs)
    low = tmp_path / "q"
    assert main(["export", str(VECTOR), str(low), *base, "-o", "human_format=jpg", "-o", "human_quality=30"]) == 0
    assert sum(p.stat().st_size for p in (low / "ds" / "masks_human").iterdir()) < sum(
        p.stat().st_size for p in jpgs)


# -- bundled jobs write to folders of their own (issue 16 item 7) -----------------------------

def test_every_bundled_job_writes_only_into_its_own_folder(tmp_path):
    """Every job of jobs/ run as shipped (relative paths, so from a copy of jobs/ next to the
    examples): the destinations are distinct folders, none inside another, and each run's files
    are all inside its own destination."""
    import os
    import shutil

    from maskcore.cli.main import _job_config, build_parser

    shutil.copytree(REPO / "jobs", tmp_path / "jobs")
    os.symlink(REPO / "examples", tmp_path / "examples")
    jobs = sorted(p.name for p in (tmp_path / "jobs").iterdir() if p.suffix in (".yaml", ".json"))
    assert {"demo.yaml", "cvat.yaml", "isahit.yaml", "nightly.yaml", "save_masks_dtl.json"} <= set(jobs)
    destinations = {}
    for job in jobs:
        args = build_parser().parse_args(["run", str(tmp_path / "jobs" / job)])
        destinations[job] = Path(_job_config(args).destination).resolve()
    for a, da in destinations.items():
        assert da.is_relative_to(tmp_path / "out"), (a, da)
        for b, db in destinations.items():
            assert a == b or not (da.is_relative_to(db) or db.is_relative_to(da)), (a, b)
    before = set()
    for job in jobs:
        assert main(["run", str(tmp_path / "jobs" / job), "--cluster", "inprocess"]) == 0, job
        files = {p for p in (tmp_path / "out").rglob("*") if p.is_file()}
        assert files - before and all(p.is_relative_to(destinations[job]) for p in files - before), job
        before = files


# -- a failed start leaves nothing behind (issue 16 item 6) -----------------------------------

def test_a_run_whose_cluster_does_not_start_leaves_no_trace(tmp_path, capsys):
    """A cluster that does not answer, an unknown profile, a bad option: exit 1 or 2 with one
    line, and the destination is as before: absent, or an earlier export byte for byte."""
    profiles = tmp_path / "cluster.yaml"
    profiles.write_text("profiles:\n  dead:\n    kind: address\n    scheduler-address: tcp://127.0.0.1:9\n"
                        "    distributed: {comm: {timeouts: {connect: 0.3s}}}\n")
    dead = ["--cluster", "dead", "--cluster-file", str(profiles), "--workers", "1"]
    out = tmp_path / "o"
    assert main(["export", str(VECTOR), str(out), *dead]) == 1
    assert "expected a Dask scheduler answering at tcp://127.0.0.1:9" in capsys.readouterr().err
    assert not out.exists()
    assert main(["export", str(VECTOR), str(out), "--masks", "machine", "--cluster", "inprocess"]) == 0
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    folders = sorted(p for p in out.rglob("*") if p.is_dir())
    for argv, code in ((dead, 1), (["--cluster", "nope"], 1), (["-o", "crop=maybe"], 2)):
        assert main(["export", str(VECTOR), str(out), "--masks", "machine", "--full", *argv]) == code, argv
        assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()} == before, argv
        assert sorted(p for p in out.rglob("*") if p.is_dir()) == folders, argv
    assert "Traceback" not in capsys.readouterr().err
