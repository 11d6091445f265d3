"""Output layouts behind one registry: name -> layout class.

A layout turns decoded items into files: ``project_files(meta, meta_bytes)`` once per run and
``item_files(item, clock=NO_CLOCK, warn=None)`` per item (``clock`` times steps, ``warn(text)``
records a per-item warning), both returning ``[(relative_path, bytes), ...]`` with no I/O. A layout
also offers ``needs_image`` and ``check_meta(meta)``.
"""

from __future__ import annotations

from typing import Callable

LAYOUTS: dict[str, Callable] = {}


def register_layout(name: str, factory: Callable) -> None:
    """Register ``factory(options: dict) -> layout`` under ``name``; names are unique."""
    if name in LAYOUTS:
        raise ValueError(f"layout {name!r} is already registered")
    LAYOUTS[name] = factory


def get_layout_class(name: str):
    """The class behind a registered layout factory (for class attributes such as
    ``default_archive_format``), or None."""
    factory = LAYOUTS.get(name)
    return getattr(factory, "__self__", None)


def get_layout(name: str, options: dict | None = None):
    """Build the layout registered as ``name`` with ``options``."""
    try:
        factory = LAYOUTS[name]
    except KeyError:
        from ..errors import ConfigError
        raise ConfigError(f"unknown layout {name!r}; expected one of {sorted(LAYOUTS)}") from None
    return factory(options or {})


def _register_builtin() -> None:
    from .supervisely import SuperviselyMasksLayout
    register_layout("supervisely", SuperviselyMasksLayout.from_options)
    register_layout("supervisely-project", SuperviselyMasksLayout.project_from_options)
    from .save_masks import SaveMasksLayout
    register_layout("save_masks", SaveMasksLayout.from_options)
    from .isahit import IsahitLayout
    register_layout("isahit", IsahitLayout.from_options)
    from .cvat import CvatMasksLayout
    register_layout("cvat", CvatMasksLayout.from_options)


_register_builtin()
