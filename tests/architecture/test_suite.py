"""The test suite cannot silently shrink, and its tree mirrors the package's.

- A missing test-only oracle (pytest.importorskip, helpers.oracles.oracle / load, or an oracle
  program: helpers.oracles.program / needs_program) skips the one test that uses it; with
  ``CI=true`` that skip is a failure (tests/conftest.py). Proven here on a tiny suite run by pytest
  in a subprocess.
- No test module skips at module level (which would remove its oracle-free tests along with the
  others); oracles are imported only through helpers.oracles (per test); no test module imports
  another.
- ``tests/<folder>`` is a folder of the package (model, kernel, codec, io, readers, layouts, exec,
  cli) or one of the suite's own (architecture, conformance, hostile, oracle, helpers, data); no
  test module sits at the top of tests/.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path
from xml.etree import ElementTree

import pytest

from helpers.oracles import in_ci

TESTS = Path(__file__).resolve().parents[1]
PACKAGE = TESTS.parent / "maskcore"
OWN_FOLDERS = {"architecture", "conformance", "hostile", "oracle", "helpers", "data"}
ORACLES = ("cv2", "supervisely", "pycocotools", "moto", "s3fs")

TINY_SUITE = {
    "test_per_test.py": '''
import pytest

from helpers.oracles import needs_program, oracle, program

absent = oracle("maskcore_absent_oracle")


def test_uses_a_missing_oracle():
    absent.anything


def test_importorskips_a_missing_module():
    pytest.importorskip("maskcore_absent_module")


def test_needs_no_oracle():
    pass


@needs_program("maskcore-absent-program")
def test_marked_for_a_missing_program():
    pass


def test_looks_up_a_missing_program():
    program("maskcore-absent-program")


def test_skips_for_another_reason():
    pytest.skip("long fuzzing run: set MASKCORE_FUZZ_LONG=1")
''',
    "test_module_level.py": '''
import pytest

pytest.importorskip("maskcore_absent_module")


def test_behind_a_module_level_skip():
    pass
''',
}


def _run_tiny_suite(tmp_path: Path, ci: str | None) -> tuple[int, dict[str, str], str]:
    """pytest on TINY_SUITE with this suite's tests/conftest.py as a plugin, in a new process:
    (exit code, {test or module: passed|skipped|failed|error}, output)."""
    for name, text in TINY_SUITE.items():
        (tmp_path / name).write_text(text)
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "PYTEST_ADDOPTS", "PYTEST_XDIST_WORKER")}
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), str(TESTS.parent), env.get("PYTHONPATH", "")])
    if ci is not None:
        env["CI"] = ci
    report = tmp_path / "report.xml"
    proc = subprocess.run([sys.executable, "-m", "pytest", "-p", "conftest", "-p", "no:cacheprovider",
                           "-p", "no:xdist", "-q", "-rs", "--continue-on-collection-errors",
                           f"--junitxml={report}", *TINY_SUITE],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    outcomes = {}
    for case in ElementTree.parse(report).iter("testcase"):
        kinds = [child.tag for child in case if child.tag in ("skipped", "failure", "error")]
        outcomes[case.get("name")] = {"skipped": "skipped", "failure": "failed", "error": "error"}.get(
            kinds[0] if kinds else "", "passed")
    return proc.returncode, outcomes, proc.stdout + proc.stderr


def test_a_missing_oracle_skips_only_its_test_outside_ci(tmp_path):
    code, got, out = _run_tiny_suite(tmp_path, ci=None)
    assert code == 0 and got == {
        "test_uses_a_missing_oracle": "skipped", "test_importorskips_a_missing_module": "skipped",
        "test_needs_no_oracle": "passed", "test_skips_for_another_reason": "skipped",
        "test_marked_for_a_missing_program": "skipped", "test_looks_up_a_missing_program": "skipped",
        "test_module_level": "skipped"}, out
    assert "test_per_test.py:10: could not import 'maskcore_absent_oracle'" in out, out  # the test's line


def test_in_ci_a_missing_oracle_fails_the_run(tmp_path):
    code, got, out = _run_tiny_suite(tmp_path, ci="true")
    assert code == 1 and got == {
        "test_uses_a_missing_oracle": "failed", "test_importorskips_a_missing_module": "failed",
        "test_needs_no_oracle": "passed", "test_skips_for_another_reason": "skipped",
        "test_marked_for_a_missing_program": "error", "test_looks_up_a_missing_program": "failed",
        "test_module_level": "error"}, out
    assert out.count("CI=true: a missing test dependency fails the run") >= 5, out
    assert "maskcore_absent_oracle" in out and "maskcore_absent_module" in out


@pytest.mark.parametrize("value, expected", [("true", True), ("1", True), ("yes", True), ("false", False),
                                             ("0", False), ("", False), (None, False)])
def test_what_counts_as_ci(monkeypatch, value, expected):
    if value is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", value)
    assert in_ci() is expected


def _modules() -> list[Path]:
    return sorted(p for p in TESTS.rglob("*.py") if "data" not in p.relative_to(TESTS).parts)


def _problems(path: Path) -> list[str]:
    """Module-level skips, test-module imports (both at import time), oracle imports (anywhere)."""
    problems = []
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    at_import = [n for n in tree.body if not isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))]
    for node in (sub for top in at_import for sub in ast.walk(top)):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and \
                node.func.attr in ("importorskip", "skip"):
            problems.append(f"line {node.lineno}: module-level pytest.{node.func.attr}")
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            names = [node.module]
        for name in names:
            if name.split(".")[0] in ORACLES:
                problems.append(f"line {node.lineno}: imports the oracle {name} (use helpers.oracles: "
                                "oracle() at module level, load() in a test)")
            if re.match(r"^test_\w+$", name.split(".")[-1]) or name.split(".")[0] == "conftest":
                problems.append(f"line {node.lineno}: imports the test module {name} "
                                "(shared code goes in a conftest.py or tests/helpers)")
    return sorted(problems, key=lambda p: int(p.split()[1].rstrip(":")))


def test_no_module_level_skip_no_oracle_import_no_test_module_import():
    found = {str(p.relative_to(TESTS)): probs for p in _modules() if (probs := _problems(p))}
    assert not found, found


def test_the_rule_finds_what_it_is_about(tmp_path):
    bad = tmp_path / "test_bad.py"
    bad.write_text("import pytest\nimport cv2\nfrom test_other import x\n"
                   "sly = pytest.importorskip('supervisely')\n\n"
                   "def test_x():\n    from pycocotools import mask\n    pytest.importorskip('cv2')\n")
    assert _problems(bad) == [
        "line 2: imports the oracle cv2 (use helpers.oracles: oracle() at module level, load() in a test)",
        "line 3: imports the test module test_other (shared code goes in a conftest.py or tests/helpers)",
        "line 4: module-level pytest.importorskip",
        "line 7: imports the oracle pycocotools (use helpers.oracles: oracle() at module level, load() in a test)"]


def test_tests_mirror_the_package_tree():
    layers = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}
    folders = {p.name for p in TESTS.iterdir() if p.is_dir() and p.name != "__pycache__"}
    assert folders - layers - OWN_FOLDERS == set()
    assert layers - folders == set(), "a layer without tests"
    top_modules = {p.stem for p in PACKAGE.glob("*.py")}  # maskcore/api.py -> tests/test_api.py
    assert sorted(p.name for p in TESTS.glob("test_*.py") if p.stem[len("test_"):] not in top_modules) == []
    names = [p.name for p in TESTS.rglob("test_*.py")]
    assert len(names) == len(set(names)), "test module names must be unique (rootdir-relative imports)"
