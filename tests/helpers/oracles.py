"""Test-only oracles (OpenCV, pycocotools, the Supervisely SDK, moto, ...), imported per test;
oracle programs (Info-ZIP unzip, GNU tar) looked up per test.

``cv2 = oracle("cv2")`` at the top of a module binds a stand-in that imports the module the first
time a test uses it. If it is not installed, that test is skipped ("could not import ...",
pytest.importorskip's wording) and every other test of the module still runs; with ``CI=true`` the
skip is a failure (tests/conftest.py). Using the stand-in outside a test (at import time) is a
collection error, never a silent skip of the whole module. ``program("unzip")`` (in a test) and
the ``needs_program("unzip")`` mark do the same for a command-line oracle, and
``helpers.datumaro.datumaro_oracle()`` for Datumaro, which runs in its own interpreter.
"""

from __future__ import annotations

import importlib
import os
import shutil

import pytest

PREFIX = "could not import"   # what pytest.importorskip says; tests/conftest.py matches it
PROGRAM_PREFIX = "could not find the program"
INTERPRETER_PREFIX = "could not find the interpreter"   # an oracle in its own venv (helpers/datumaro.py)
PREFIXES = (PREFIX, PROGRAM_PREFIX, INTERPRETER_PREFIX)   # skips that mean "a test dependency is missing"
MODULE_DUNDERS = ("__version__", "__file__", "__path__", "__all__")


class Oracle:
    """A module imported on first attribute access, or the running test skipped."""

    def __init__(self, name: str) -> None:
        self.__name = name
        self.__module = None

    def __getattr__(self, attr: str):
        __tracebackhide__ = True  # a skip is reported at the test's line
        if attr.startswith("_") and attr not in MODULE_DUNDERS and self.__module is None:
            raise AttributeError(attr)  # introspection (pytest's collection, mock checks, pickle) imports nothing
        if self.__module is None:
            self.__module = load(self.__name)
        return getattr(self.__module, attr)

    def __repr__(self) -> str:
        return f"<oracle {self.__name!r}>"


def load(name: str):
    """The module ``name``; if it is missing, the running test is skipped (a failure in CI)."""
    __tracebackhide__ = True
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        pytest.skip(f"{PREFIX} {name!r}: {exc} (a test-only oracle: pip install '.[test]')")


def in_ci() -> bool:
    """``CI`` set to anything but empty, 0, false or no (CI services set CI=true)."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def oracle(name: str) -> Oracle:
    return Oracle(name)


def _no_program(name: str) -> str:
    return f"{PROGRAM_PREFIX} {name!r} on PATH (a test oracle)"


def program(name: str) -> str:
    """The path of the program ``name``; if it is not on PATH, the running test is skipped."""
    __tracebackhide__ = True
    path = shutil.which(name)
    if path is None:
        pytest.skip(_no_program(name))
    return path


def needs_program(name: str) -> pytest.MarkDecorator:
    """Mark: skip the test when the program ``name`` is not on PATH (a failure in CI)."""
    return pytest.mark.skipif(shutil.which(name) is None, reason=_no_program(name))
