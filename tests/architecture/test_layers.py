"""The package tree is the pipeline: every import inside maskcore points down the layers.

Layers, lowest first (a module may import its own folder and any lower layer, never a higher one
or a sibling): ``errors`` < ``limits``/``paths``/``timing`` < ``model`` < ``kernel`` < ``codec`` <
``io`` < ``readers`` | ``layouts`` (siblings: neither imports the other) < ``exec`` < ``cli`` <
the public API (``maskcore/__init__.py``). Imports inside functions count too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "maskcore"
RANK = {"errors": -1, "limits": 0, "paths": 0, "timing": 0, "api": 8, "model": 1, "kernel": 2, "codec": 3, "io": 4,
        "readers": 5, "layouts": 5, "exec": 6, "cli": 7, "__init__": 8, "__main__": 8}


def _layer(module: str) -> str:
    """'maskcore.kernel.fill' -> 'kernel'; 'maskcore' -> '__init__'."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _imports(path: Path) -> list[tuple[int, str]]:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    package = list(rel.parts[:-1]) if rel.name != "__init__" else list(rel.parts[:-1])
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)] + (node.module.split(".") if node.module else [])
            else:
                base = node.module.split(".")
            if base[0] != "maskcore":
                continue
            if len(base) == 1:  # "from maskcore import x" / "from .. import x": x is a module or a name
                found += [(node.lineno, f"maskcore.{a.name}") for a in node.names]
            else:
                found.append((node.lineno, ".".join(base)))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "maskcore"]
    return found


def _edges():
    for path in sorted(PACKAGE.rglob("*.py")):
        me = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        for line, target in _imports(path):
            yield me, line, target


def test_layers_cover_the_tree():
    top = {p.stem if p.is_file() else p.name for p in PACKAGE.iterdir()
           if (p.suffix == ".py" or (p / "__init__.py").exists())}
    assert top <= set(RANK), f"new top-level module(s) without a layer: {sorted(top - set(RANK))}"


def test_dependencies_point_down():
    bad = []
    for me, line, target in _edges():
        a, b = _layer(me), _layer(target)
        if b == "__version__" or target == "maskcore.__version__":
            continue  # the version string lives in maskcore/__init__.py and imports nothing
        if a == b:
            continue
        if RANK[b] >= RANK[a]:
            bad.append(f"{me}:{line} imports {target} ({a} -> {b})")
    assert not bad, "imports that point up or sideways:\n" + "\n".join(bad)


@pytest.mark.parametrize("layer", ["model", "kernel", "codec"])
def test_pure_layers_do_no_io_and_no_dask(layer):
    forbidden = ("dask", "distributed", "fsspec", "s3fs")
    bad = []
    for path in sorted((PACKAGE / layer).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
            bad += [f"{path.name}:{node.lineno} {n}" for n in names if n.split(".")[0] in forbidden]
    assert not bad, f"{layer} must not import storage or dask: {bad}"


def test_readme_code_map_names_every_layer():
    readme = (PACKAGE.parent / "README.md").read_text()
    section = readme[readme.index("### Code map"):]
    section = section[:section.index("\n## ")]
    names = {p.name + "/" if p.is_dir() else p.name for p in PACKAGE.iterdir()
             if (p.is_dir() and (p / "__init__.py").exists()) or (p.suffix == ".py" and p.stem != "__main__")}
    missing = sorted(n for n in names if f"`{n}`" not in section)
    assert not missing, f"README's code map does not name {missing}"
