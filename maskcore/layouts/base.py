"""The Layout seam: what the run asks of an output layout, declared once.

A layout turns decoded items into files, with no I/O: ``project_files(meta, meta_bytes)`` once per
run and ``item_files(item, clock, warn, patches)`` per item, each a list of ``(relative_path, bytes)``
(``LIST_PREFIX`` + ``<path>`` entries are lines of a project-level list file, see below). The
protocol names what every layout must provide; :class:`LayoutBase` gives every optional hook its
no-op default, so the run calls hooks directly instead of probing for them. Layouts are frozen
dataclasses of their options: picklable, comparable, and fingerprinted from their fields.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, ClassVar, Protocol, runtime_checkable

from ..limits import MAX_PIXELS
from ..model.annotation import ProjectMeta
from ..model.item import ItemData
from ..timing import NO_CLOCK

Output = tuple[str, bytes]

LIST_PREFIX = "@list/"
"""An output named ``@list/<path>`` is not a file: its bytes are the item's line of the
project-level list file ``<path>`` (e.g. CVAT's ``ImageSets/Segmentation/default.txt``). The run
writes each list once, after every item, its lines in (dataset, item) order."""


@runtime_checkable
class Layout(Protocol):
    """What the run needs of a layout (required members; the rest come from :class:`LayoutBase`)."""

    needs_image: bool

    def check_meta(self, meta: ProjectMeta) -> None:
        """Refuse (ConfigError) a project this layout cannot write, before anything runs."""

    def project_files(self, meta: ProjectMeta, meta_bytes: bytes) -> list[Output]:
        """Files written once per run (meta, colour maps, ...)."""

    def item_files(self, item: ItemData, clock=NO_CLOCK, warn=None, patches=None) -> list[Output]:
        """Every file of one item, rendered in memory."""


@dataclasses.dataclass(frozen=True)
class Option:
    """One layout option as ``--help`` lists it: its key, what it accepts and its default (words)."""
    key: str
    values: str
    default: str


CROP_OPTION = Option("crop", "sdk | none (crop Supervisely labels to the image as the SDK does)", "sdk")
CANVAS_OPTION = Option("max_canvas_pixels", "a positive integer: larger canvases fail their item",
                       str(MAX_PIXELS))


class LayoutBase:
    """Defaults of every optional layout hook; a layout overrides what it needs."""

    OPTIONS: ClassVar[tuple[Option, ...]] = ()
    """Every ``-o KEY=VALUE`` option ``from_options`` accepts (``maskcore export --help`` lists them)."""

    needs_image: bool = True
    default_archive_format: ClassVar[str | None] = None
    """Archive format when the user names none (``zip`` for cvat); None: a folder unless asked."""
    project_wide_stems: ClassVar[bool] = False
    """Mask stems must be unique across datasets (all datasets share one mask folder)."""
    takes_project_name: ClassVar[bool] = False
    """``from_options`` receives option ``project``: the source's project name."""
    folder: str | None = None
    """The layout's own folder in the destination: stale files are only looked for there."""
    max_canvas_pixels: int = MAX_PIXELS
    crop: str = "none"
    """``sdk``: Supervisely sources are cropped to the image when loaded, as the SDK does."""
    mask_kinds: ClassVar[tuple[str, ...]] = ()
    """What ``render`` can hand out as arrays (empty: the layout draws nothing)."""
    image_kinds: ClassVar[frozenset[str]] = frozenset()
    """The kinds of ``mask_kinds`` drawn over the photo (``render`` needs ``item.image_bytes``)."""

    def check_meta(self, meta: ProjectMeta) -> None:
        return None

    def coverage_job(self, item: ItemData):
        """``(geometries, thickness, rule)`` whose coverages the task may draw in one batched kernel
        call and pass back as ``patches``; None: the layout draws this item itself."""
        return None

    def render(self, item: ItemData, kinds=None, clock=NO_CLOCK, warn=None, patches=None):
        """The item's masks of ``kinds`` (default: all of ``mask_kinds``) as ``(kind, array)``
        pairs, exactly the pixels ``item_files`` encodes; what ``maskcore.open_project(...).masks``
        hands out. Arrays may be scratch canvases valid until the next item: copy to keep."""
        raise NotImplementedError(f"layout {type(self).__name__} draws no masks")

    def for_plan(self, plan) -> LayoutBase:
        """The layout for this run's listing (isahit decides its folder layout from it)."""
        return self

    def prepare(self, sink, n_items: int | None = None) -> list[str]:
        """The layout's own refusals before anything is written (e.g. an existing folder), and
        warnings about the run as planned (``n_items`` once the items are listed)."""
        return []

    def fingerprint(self) -> dict[str, Any]:
        """What of this layout decides output bytes: its fields (a dataclass's options)."""
        if not dataclasses.is_dataclass(self):
            raise TypeError(f"layout {type(self).__name__} must be a dataclass of its options "
                            "or override fingerprint()")
        return json.loads(json.dumps(dataclasses.asdict(self), sort_keys=True, default=str))
