"""Output layouts behind one registry: name -> layout class.

The seam is declared in ``maskcore.layouts.base``: the :class:`~maskcore.layouts.base.Layout`
protocol and :class:`~maskcore.layouts.base.LayoutBase`, whose no-op hooks every layout inherits.
Every registered layout passes ``tests/conformance/test_layouts.py``.
"""

from __future__ import annotations

from collections.abc import Callable

from ..errors import ConfigError
from .base import Layout, LayoutBase

__all__ = ["LAYOUTS", "Layout", "LayoutBase", "canonical_name", "get_layout", "get_layout_class",
           "options_help", "register_layout"]

LAYOUTS: dict[str, Callable] = {}


def register_layout(name: str, factory: Callable) -> None:
    """Register ``factory(options: dict) -> layout`` under ``name``: a classmethod of a
    :class:`LayoutBase` subclass; names are unique."""
    if name in LAYOUTS or name != canonical_name(name):
        raise ValueError(f"layout {name!r} is already registered or not spelled with hyphens")
    owner = getattr(factory, "__self__", None)
    if not (isinstance(owner, type) and issubclass(owner, LayoutBase)):
        raise TypeError(f"layout {name!r}: expected a classmethod of a LayoutBase subclass, got {factory!r}")
    LAYOUTS[name] = factory


def canonical_name(name: str) -> str:
    """Layout names are spelled with hyphens (``save-masks``); an underscore is read as a hyphen."""
    return name.replace("_", "-") if isinstance(name, str) else name


def _factory(name: str) -> Callable:
    try:
        return LAYOUTS[canonical_name(name)]
    except (KeyError, TypeError):
        raise ConfigError(f"unknown layout {name!r}; expected one of {sorted(LAYOUTS)}") from None


def get_layout_class(name: str) -> type[LayoutBase]:
    """The class behind a registered layout (for class attributes such as ``default_archive_format``);
    ConfigError for an unknown name."""
    return _factory(name).__self__


def get_layout(name: str, options: dict | None = None) -> LayoutBase:
    """Build the layout registered as ``name`` with ``options``."""
    return _factory(name)(options or {})


def options_help() -> str:
    """Every registered layout's ``-o`` options (``LayoutBase.OPTIONS``) as ``--help`` shows them:
    key, what it accepts, default."""
    lines = ["layout options (-o KEY=VALUE, JSON values parsed; default in brackets):"]
    for name in sorted(LAYOUTS):
        declared = get_layout_class(name).OPTIONS
        if name == "supervisely-project":   # the supervisely layout without masks
            declared = tuple(o for o in declared if o.key in ("copy_images", "copy_annotations",
                                                                "max_canvas_pixels", "crop"))
        lines.append(f"  {name}:")
        lines += [f"    {o.key}: {o.values} [{o.default}]" for o in declared]
    return "\n".join(lines)


def _register_builtin() -> None:
    from .supervisely import SuperviselyMasksLayout
    register_layout("supervisely", SuperviselyMasksLayout.from_options)
    register_layout("supervisely-project", SuperviselyMasksLayout.project_from_options)
    from .save_masks import SaveMasksLayout
    register_layout("save-masks", SaveMasksLayout.from_options)
    from .isahit import IsahitLayout
    register_layout("isahit", IsahitLayout.from_options)
    from .cvat import CvatMasksLayout
    register_layout("cvat", CvatMasksLayout.from_options)


_register_builtin()
