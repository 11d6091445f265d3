"""CVAT "for images 1.1" XML reader: ``annotations.xml`` (+ images), a folder or a ``.zip``.

Layout (CVAT's export zip, unpacked or not)::

    <root>/annotations.xml
    <root>/images/<name>            task or job export (images next to the XML also work)
    <root>/images/<subset>/<name>   project export

Conventions:
- Coordinates are CVAT's: float64, origin at the top-left *corner* of the image (pixel (c, r) is
  the square [c, c+1) x [r, r+1)); they go to ``maskcore.geometry`` unchanged (``Box``,
  float ``Polygon``/``Polyline``/``Point``), so the layout's drawing rule decides the pixels.
- One item per ``<image>``: dataset = its ``subset`` attribute (``"default"`` when absent, as
  CVAT names it), item = its ``name``. Rows are sorted by (dataset, item), ties in document
  order; a name used twice in one dataset fails both items (``problem``). An item's annotation
  (``item_annotation``) is the ``<image>`` element serialised by ``xml.etree`` (deterministic:
  the same document gives the same bytes), with the shapes of ``<track>`` elements on that frame
  appended (see below).
- Several XML files: a folder whose top level holds more than one ``.xml`` file (Datumaro's
  ``cvat`` exporter writes one per subset, ``<subset>.xml``) is one project: every file is read,
  in name order, and an image without a ``subset`` attribute goes to the dataset named after its
  file's stem, as Datumaro's ``cvat`` importer names it (``CvatBase``: ``subset =
  splitext(basename(path))[0]``; CVAT's project import goes through it). The files must declare
  the same labels (``ProjectError`` otherwise); a single file keeps CVAT's ``default``.
- Classes: the labels of ``<meta><project|task|job><labels>`` in document order, except labels
  of type ``tag`` (they become tag metas) and skeleton parts (labels with a ``<parent>``).
  Colour: ``<color>`` ``#rrggbb``; absent -> ``palette.class_colors`` by class position.
  Shape: the Supervisely geometry of the label ``<type>`` (rectangle -> rectangle, polygon ->
  polygon, polyline -> line, points -> point, mask and ellipse -> bitmap) when *every* shape of
  that label in the document has that geometry (a rotated box is not a rectangle), else
  ``any``. Label attribute specs are not geometry config: they become tag metas.
- ``meta.raw`` is a Supervisely ``meta.json``: classes, then tag metas: tag labels
  (``value_type`` ``none``, their colour), then every attribute name (declared ones in document
  order, then undeclared ones in code point order; ``any_string``); a name already taken keeps
  its first meta.
- Shapes -> labels, in document order; ``object_index`` = position among the image's shapes.
  ``<box xtl ytl xbr ybr rotation>`` -> ``Box`` (rotation: degrees clockwise about the centre);
  ``<polygon points="x,y;...">`` (>= 3 points) -> ``Polygon``; ``<polyline>`` (>= 2) ->
  ``Polyline``; ``<points>`` -> one ``Point`` label per point (same object index);
  ``<mask left top width height rle>`` -> ``Bitmap``: ``rle`` = run lengths, row-major inside
  the ``width`` x ``height`` box, starting with a background run; their sum must be exactly
  ``width * height`` (checked, with ``max_bitmap_pixels``, before anything is allocated); the
  mask is cropped to its set pixels (an empty mask is an error, as for Supervisely bitmaps).
  ``<ellipse cx cy rx ry rotation>`` -> ``Bitmap`` of the pixels CVAT's exporter paints for it,
  in every layout (CVAT turns every ellipse into a mask before any format sees it:
  ``maskcore.kernel.ellipse.cvat_ellipse``, ``cv2.ellipse`` with centre and semi-axes rounded to
  whole pixels and the rotation to whole degrees); an ellipse that paints no pixel of the image
  is kept as CVAT keeps its empty mask: a label whose ``Bitmap`` is one unset pixel at (0, 0),
  which paints nothing but takes its instance number in the cvat layout (the Supervisely layout
  writes its empty instance PNG; Supervisely JSON leaves it out, as every empty bitmap).
  ``<cuboid>`` and ``<skeleton>`` fail the
  item (``AnnotationError`` "unsupported shape"), never silently dropped.
- ``z_order`` -> ``Label.z_order``; ``group_id`` -> ``Label.group`` (0 when absent);
  ``<attribute name=...>text</attribute>`` -> label tags ``{"name", "value": text}``. CVAT's
  built-in ``occluded``, ``source`` and ``outside`` flags are not kept (no mask uses them, and
  projects often declare their own ``occluded`` attribute, as the real data here does).
  ``<tag label=...>`` of an image -> ``Annotation.tags`` ``{"name": label, "value": None}``
  (a tag's own attributes are not kept).
- Tracks (a video task exported "for images"): every shape of a ``<track>`` with
  ``outside="0"`` belongs to the image whose ``id`` equals its ``frame``; it takes the track's
  ``label`` and ``group_id`` and comes after the image's own shapes, tracks in document order.
- Numbers: finite decimals (``1``, ``-2.5``, ``3e2``) with ``|v| <= 2**31``; NaN, inf,
  ``1_0``, empty -> ``AnnotationError`` located ``<where>/object <i>``.
- Safety: the XML is streamed once, on the driver, by expat (``readers.cvat_stream``), refusing
  a document over ``max_xml_bytes`` (by its listed size, and while reading), one that is not
  UTF-8 (NUL bytes, another declared encoding), or holds ``<!DOCTYPE``/``<!ENTITY`` (so no
  entity expansion, no external fetch), and elements nested deeper than ``MAX_XML_DEPTH``.
  Project-level problems raise ``ProjectError``; one image's problems fail that item only.
- Memory: the driver never holds the document: per image its name, subset, id and byte span
  (``ann_path`` = the XML file's name, ``ann_offset``, ``ann_bytes``); a worker reads the span
  (one ranged read) and serialises it as above, so items keep the content checksums they had
  when the document was parsed whole. Rows carry ``ann_inline`` instead for a zip (its XML member
  is decompressed whole) and for images that receive track shapes. A span that no longer holds
  its image (the file changed since the listing) fails the item (``ItemSourceError``).
  ``list_items(stamps=True)`` stamps each annotation with the XML file's change stamp and its span.
- I/O: any fsspec filesystem; ``CvatXmlSource`` is picklable, opens lazily, and never ships the
  document. A ``.zip`` is read in place through ``maskcore.zipsafe.SafeZip``. ``img_path`` is
  relative to the images folder (for a zip: to its images prefix) and ``read_bytes`` takes it.
"""

from __future__ import annotations

import math
import os
import posixpath
import re
import time
import xml.etree.ElementTree as ET
from array import array
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from ..errors import AnnotationError, ItemError, ItemSourceError, LimitError, ProjectError, UnknownClassError
from ..io.storage import cat_whole, change_stamp, filesystem
from ..kernel.ellipse import cvat_ellipse
from ..kernel.palette import class_colors
from ..limits import DEFAULT_MAX_XML_BYTES, MAX_COORD, MAX_PIXELS, MAX_XML_DEPTH
from ..model.annotation import Annotation, Label, ObjClass, ProjectMeta
from ..model.geometry import Bitmap, Box, Point, Polygon, Polyline
from .base import ItemAnnotation, SourceBase, is_local_url, regular_files
from .cvat_stream import Scan, check_document_bytes, image_element_bytes, scan_document, shape_kind

DEFAULT_DATASET = "default"
"""Dataset of images without a ``subset`` attribute (CVAT's default subset name)."""
ANNOTATIONS_XML = "annotations.xml"
XML_CHUNK_BYTES = 1 << 22
"""Bytes of an XML file read (and fed to the parser) at a time."""

ITEMS_SCHEMA = pa.schema([
    ("dataset", pa.string()), ("item", pa.string()),
    ("ann_path", pa.string()), ("img_path", pa.string()),
    ("ann_bytes", pa.int64()), ("img_bytes", pa.int64()), ("ann_offset", pa.int64()),
    ("ann_inline", pa.binary()), ("problem", pa.string()),
])
"""Columns of ``list_items``: an image's annotation is either the span ``ann_offset``,
``ann_offset + ann_bytes`` of the XML file ``ann_path`` (a worker reads it), or ``ann_inline``
(a zip's images, images with track shapes; then ``ann_path`` and ``ann_offset`` are null)."""

SHAPES = ("box", "polygon", "polyline", "points", "mask", "ellipse")
"""Shape elements this reader decodes."""
UNSUPPORTED_SHAPES = ("cuboid", "skeleton")
_TYPE_TO_SHAPE = {"rectangle": "rectangle", "polygon": "polygon", "polyline": "line",
                  "points": "point", "mask": "bitmap", "ellipse": "bitmap"}
_COLOR_RE = re.compile(r"#[0-9A-Fa-f]{6}")
_NUMBER_RE = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_INT_RE = re.compile(r"[+-]?\d{1,12}")
_GROUP_RE = re.compile(r"\+?\d{1,19}")
_RLE_RE = re.compile(r"\s*\d{1,15}(?:\s*,\s*\d{1,15})*\s*")
_TRACK_ONLY_ATTRS = ("frame", "outside", "keyframe")


# --- safe XML ----------------------------------------------------------------------------------

def parse_xml(data: bytes, fail: Callable[[str], Exception], *,
              max_bytes: int = DEFAULT_MAX_XML_BYTES) -> ET.Element:
    """Bytes of an XML document -> its root element, refusing what could be hostile.

    Raises ``fail(reason)`` for a document over ``max_bytes``, not UTF-8, with a DTD or entity
    declaration, nested deeper than ``MAX_XML_DEPTH``, or malformed (the checks of
    ``cvat_stream.scan_document``, which reads a whole annotations.xml without building it).
    """
    if len(data) > max_bytes:
        raise fail(f"expected at most {max_bytes} bytes of XML, got {len(data)}")
    check_document_bytes(data, fail)
    parser = ET.XMLPullParser(events=("start", "end"))
    depth, root = 0, None
    try:
        for start in range(0, len(data), 1 << 20):
            parser.feed(data[start:start + (1 << 20)])
            for event, elem in parser.read_events():
                if event == "end":
                    depth -= 1
                    continue
                depth += 1
                if root is None:
                    root = elem
                if depth > MAX_XML_DEPTH:
                    raise fail(f"expected elements nested at most {MAX_XML_DEPTH} deep, got "
                               f"<{elem.tag[:40]}> at depth {depth}")
        parser.close()
    except ET.ParseError as exc:
        raise fail(f"expected well-formed XML, got {exc}") from None
    if root is None:
        raise fail("expected an XML document, got no element")
    return root


# --- numbers -----------------------------------------------------------------------------------

def _number(elem: ET.Element, key: str, default: float | None = None) -> float:
    text = elem.get(key)
    if text is None and default is not None:
        return default
    if text is None or not _NUMBER_RE.fullmatch(text.strip()):
        raise AnnotationError(f"{key}: expected a number, got {_brief(text)}")
    v = float(text)
    if not math.isfinite(v) or abs(v) > MAX_COORD:
        raise AnnotationError(f"{key}: expected a finite number with |v| <= 2**31, "
                              f"got {text[:40]!r}")
    return v


def _integer(elem: ET.Element, key: str, default: int | None = None, minimum: int = -MAX_COORD,
             maximum: int = MAX_COORD) -> int:
    text = elem.get(key)
    if text is None and default is not None:
        return default
    v = _number(elem, key)
    if not v.is_integer() or not minimum <= v <= maximum:
        raise AnnotationError(f"{key}: expected an integer in {minimum}..{maximum}, got "
                              f"{_brief(text)}")
    return int(v)


def _group_id(elem: ET.Element) -> int:
    """``group_id``: any non-negative integer below 2**63 (Datumaro writes COCO annotation ids
    there, above 2**31); 0 when absent."""
    text = elem.get("group_id")
    if text is None:
        return 0
    if not _GROUP_RE.fullmatch(text) or int(text) >= 2**63:
        raise AnnotationError(f"group_id: expected an integer in 0..{2**63 - 1}, got {_brief(text)}")
    return int(text)


def _brief(text: str | None) -> str:
    if text is None:
        return "nothing"
    return repr(text if len(text) <= 40 else text[:37] + "...")


def _points(elem: ET.Element, min_count: int) -> np.ndarray:
    text = elem.get("points")
    if text is None:
        raise AnnotationError("points: expected 'x,y;x,y;...', got nothing")
    pairs = text.strip().split(";") if text.strip() else []
    out = np.empty((len(pairs), 2), dtype=np.float64)
    for i, pair in enumerate(pairs):
        xy = pair.split(",")
        if len(xy) != 2:
            raise AnnotationError(f"points[{i}]: expected 'x,y', got {_brief(pair)}")
        for j, t in enumerate(xy):
            t = t.strip()
            if not _NUMBER_RE.fullmatch(t):
                raise AnnotationError(f"points[{i}]: expected a number, got {_brief(t)}")
            v = float(t)
            if not math.isfinite(v) or abs(v) > MAX_COORD:
                raise AnnotationError(f"points[{i}]: expected a finite number with |v| <= 2**31, "
                                      f"got {t[:40]!r}")
            out[i, j] = v
    if len(out) < min_count:
        raise AnnotationError(f"points: expected at least {min_count} points for a "
                              f"<{elem.tag}>, got {len(out)}")
    return out


# --- shapes ------------------------------------------------------------------------------------

def decode_mask(elem: ET.Element, max_bitmap_pixels: int) -> Bitmap:
    """``<mask left top width height rle>`` -> a tight ``Bitmap`` (see module docstring)."""
    left, top = _integer(elem, "left"), _integer(elem, "top")
    w = _integer(elem, "width", minimum=1)
    h = _integer(elem, "height", minimum=1)
    if w * h > max_bitmap_pixels:
        raise LimitError(f"mask: expected at most {max_bitmap_pixels} pixels, "
                         f"got {w}x{h} = {w * h}")
    text = elem.get("rle")
    if text is None or not _RLE_RE.fullmatch(text):
        raise AnnotationError(f"rle: expected comma-separated run lengths, got {_brief(text)}")
    if text.count(",") + 1 > w * h + 1:
        raise AnnotationError(f"rle: expected at most {w * h + 1} runs for a {w}x{h} mask, got "
                              f"{text.count(',') + 1}")
    counts = np.array(text.split(","), dtype=np.int64)  # digits only (checked), <= w*h+1 of them
    if counts.max() > w * h:  # before summing: no overflow
        raise AnnotationError(f"rle: expected runs of at most width*height = {w * h} pixels, got "
                              f"a run of {int(counts.max())}")
    total = int(counts.sum())
    if total != w * h:
        raise AnnotationError(f"rle: expected run lengths summing to width*height = {w * h}, "
                              f"got {total}")
    values = (np.arange(counts.size) & 1).astype(bool)
    mask = np.repeat(values, counts).reshape(h, w)
    if not mask.any():
        raise AnnotationError(f"mask: expected at least one set pixel, got an empty {w}x{h} mask")
    return _tight_bitmap(left, top, mask)


def _tight_bitmap(left: int, top: int, mask: np.ndarray) -> Bitmap:
    """A ``Bitmap`` of ``mask`` (placed at ``left, top``; at least one set pixel) cropped to its
    set pixels."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    r0, c0 = int(rows[0]), int(cols[0])
    tight = np.ascontiguousarray(mask[r0:rows[-1] + 1, c0:cols[-1] + 1])
    return Bitmap((left + c0, top + r0), tight)


def parse_shape(elem: ET.Element, *, max_bitmap_pixels: int = MAX_PIXELS, size_hw=None) -> list:
    """One shape element -> its geometries (one, or one per point of ``<points>``; an ellipse that
    paints no pixel of the ``size_hw`` image gives an empty ``Bitmap``, as CVAT keeps its mask)."""
    kind = elem.tag
    if kind == "box":
        x0, y0, x1, y1 = (_number(elem, k) for k in ("xtl", "ytl", "xbr", "ybr"))
        if x1 < x0 or y1 < y0:
            raise AnnotationError(f"box: expected xtl <= xbr and ytl <= ybr, got ({x0}, {y0}) "
                                  f"-> ({x1}, {y1})")
        return [Box(x0, y0, x1, y1, _number(elem, "rotation", 0.0))]
    if kind == "polygon":
        return [Polygon(_points(elem, 3))]
    if kind == "polyline":
        return [Polyline(_points(elem, 2))]
    if kind == "points":
        return [Point(float(x), float(y)) for x, y in _points(elem, 1)]
    if kind == "mask":
        return [decode_mask(elem, max_bitmap_pixels)]
    if kind == "ellipse":
        cx, cy, rx, ry = (_number(elem, k) for k in ("cx", "cy", "rx", "ry"))
        if rx <= 0 or ry <= 0:
            raise AnnotationError(f"ellipse: expected positive radii, got rx={rx}, ry={ry}")
        if size_hw is None:
            raise ValueError("parse_shape: an <ellipse> needs the image's size_hw")
        patch = cvat_ellipse(cx, cy, rx, ry, _number(elem, "rotation", 0.0), size_hw)
        if patch.is_empty:  # CVAT keeps its empty mask: an object that paints nothing
            return [Bitmap((0, 0), np.zeros((1, 1), dtype=bool))]
        return [_tight_bitmap(patch.left, patch.top, patch.mask)]
    raise AnnotationError(f"<{kind[:40]}>: unsupported shape (expected one of "
                          f"{', '.join(SHAPES)} or <tag>)")


def _attribute_tags(elem: ET.Element) -> tuple[dict, ...]:
    tags = []
    for a in elem.findall("attribute"):
        name = a.get("name")
        if not name:
            raise AnnotationError("<attribute>: expected a 'name', got none")
        tags.append({"name": name, "value": a.text or ""})
    return tuple(tags)


def parse_annotation(data: bytes, meta: ProjectMeta, where: str, *,
                     max_bitmap_pixels: int = MAX_PIXELS, element: ET.Element | None = None) -> Annotation:
    """One ``<image>`` element (its bytes, as ``ann_inline`` holds them) -> ``Annotation``;
    ``element``: that element already parsed (``data`` is then not parsed again).

    Errors are ``ItemError`` subclasses located at ``where`` (image level) or
    ``<where>/object <i>`` (``UnknownClassError`` for a label that is not a class).
    """
    image = element if element is not None else parse_xml(
        data, lambda reason: AnnotationError(reason, where=where), max_bytes=len(data))
    if image.tag != "image":
        raise AnnotationError(f"expected an <image> element, got <{image.tag[:40]}>", where=where)
    try:
        size_hw = (_integer(image, "height", minimum=1), _integer(image, "width", minimum=1))
    except ItemError as err:
        raise err.located(where) from None
    classes = meta.class_by_title()
    tag_names = {t.get("name") for t in meta.raw.get("tags", [])
                 if isinstance(t, dict) and t.get("value_type") == "none"}
    labels: list[Label] = []
    tags: list[dict] = []
    index = 0
    for child in image:
        if child.tag == "tag":
            name = child.get("label")
            if name not in tag_names:
                raise UnknownClassError(f"<tag>: expected a tag label of the project, got "
                                        f"{_brief(name)}", where=where)
            tags.append({"name": name, "value": None})
            continue
        try:
            labels.extend(_parse_object(child, classes, index, max_bitmap_pixels, size_hw))
        except ItemError as err:
            raise err.located(f"{where}/object {index}") from None
        index += 1
    raw = {"size": {"height": size_hw[0], "width": size_hw[1]}}
    return Annotation(size_hw, tuple(labels), tuple(tags), raw)


def _parse_object(elem: ET.Element, classes: dict, index: int, max_bitmap_pixels: int,
                  size_hw) -> list[Label]:
    if elem.tag not in SHAPES:
        raise AnnotationError(f"<{elem.tag[:40]}>: unsupported shape (expected one of "
                              f"{', '.join(SHAPES)} or <tag>)")
    name = elem.get("label")
    if name == "":      # an unlabelled shape (Datumaro writes them): no class, nothing to draw
        return []       # counted per image in the source's warnings (read_document)
    if name not in classes:
        raise UnknownClassError(f"label: expected one of the {len(classes)} classes of the "
                                f"project, got {_brief(name)}")
    geometries = parse_shape(elem, max_bitmap_pixels=max_bitmap_pixels, size_hw=size_hw)
    z_order = _integer(elem, "z_order", 0)
    group = _group_id(elem)
    tags = _attribute_tags(elem)
    return [Label(name, g, index, tags, z_order, group) for g in geometries]


# --- the document: meta and items --------------------------------------------------------------

def _labels_element(root: ET.Element) -> ET.Element | None:
    for kind in ("project", "task", "job"):
        found = root.find(f"meta/{kind}/labels")
        if found is not None:
            return found
    return None


def build_meta(root: ET.Element, shapes_by_label: dict[str, set[str]],
               attribute_names: set[str]) -> ProjectMeta:
    """``<meta>`` labels -> ``ProjectMeta`` (see module docstring)."""
    labels = _labels_element(root)
    specs: list[tuple[str, str, str | None]] = []   # (name, type, colour text)
    declared_attrs: list[str] = []
    seen: set[str] = set()
    for i, label in enumerate(labels.findall("label") if labels is not None else []):
        name = (label.findtext("name") or "").strip()
        if not name:
            raise ProjectError(f"annotations.xml <meta> label {i}: expected a <name>, got none")
        if (label.findtext("parent") or "").strip():
            continue  # a skeleton part
        if name in seen:
            raise ProjectError(f"annotations.xml <meta>: expected unique label names, got "
                               f"{name!r} twice")
        seen.add(name)
        color = (label.findtext("color") or "").strip() or None
        if color is not None and not _COLOR_RE.fullmatch(color):
            raise ProjectError(f"annotations.xml <meta> label {name!r}: expected <color> as "
                               f"'#rrggbb', got {color[:40]!r}")
        specs.append((name, (label.findtext("type") or "any").strip(), color))
        for a in label.findall("attributes/attribute"):
            a_name = (a.findtext("name") or "").strip()
            if a_name and a_name not in declared_attrs:
                declared_attrs.append(a_name)
    class_specs = [s for s in specs if s[1] != "tag"]
    fallback = class_colors(len(class_specs))
    classes, raw_classes = [], []
    for (name, ltype, color), default in zip(class_specs, fallback):
        rgb = tuple(int(color[k:k + 2], 16) for k in (1, 3, 5)) if color else default
        shape = _TYPE_TO_SHAPE.get(ltype, "any")
        if shape != "any" and not shapes_by_label.get(name, set()) <= {shape}:
            shape = "any"
        classes.append(ObjClass(name, shape, rgb, {}))
        raw_classes.append({"title": name, "shape": shape, "color": _hex(rgb),
                            "geometry_config": {}})
    raw_tags: list[dict] = []
    tag_specs = [s for s in specs if s[1] == "tag"]
    for (name, _, color), default in zip(tag_specs, class_colors(len(tag_specs))):
        raw_tags.append({"name": name, "value_type": "none", "color": color or _hex(default)})
    attrs = declared_attrs + sorted(attribute_names - set(declared_attrs))
    taken = {t["name"] for t in raw_tags}
    for a_name, rgb in zip(attrs, class_colors(len(attrs))):
        if a_name not in taken:
            taken.add(a_name)
            raw_tags.append({"name": a_name, "value_type": "any_string", "color": _hex(rgb)})
    raw = {"classes": raw_classes, "tags": raw_tags, "projectType": "images"}
    return ProjectMeta(tuple(classes), raw)


def _hex(rgb) -> str:
    return "#" + "".join(f"{int(v):02X}" for v in rgb)


def _track_shapes(root: ET.Element) -> dict[str, list[ET.Element]]:
    """Shapes of ``<track>`` elements by frame (``outside="0"`` only), as image-style shapes."""
    by_frame: dict[str, list[ET.Element]] = {}
    for t, track in enumerate(root.findall("track")):
        for shape in track:
            frame = (shape.get("frame") or "").strip()
            if not _INT_RE.fullmatch(frame):
                raise ProjectError(f"annotations.xml <track> {t} (id {track.get('id')!r}): "
                                   f"expected integer 'frame' on <{shape.tag[:40]}>, got "
                                   f"{_brief(shape.get('frame'))}")
            if (shape.get("outside") or "0").strip() == "1":
                continue
            attrib = {k: v for k, v in shape.attrib.items() if k not in _TRACK_ONLY_ATTRS}
            attrib["label"] = track.get("label", "")
            if track.get("group_id") is not None:
                attrib["group_id"] = track.get("group_id")
            attrib["track_id"] = track.get("id", str(t))
            copy = ET.Element(shape.tag, attrib)
            copy.text = shape.text
            copy.extend(shape)
            by_frame.setdefault(str(int(frame)), []).append(copy)
    return by_frame


def read_document(root: ET.Element) -> tuple[ProjectMeta, list[dict]]:
    """The parsed ``annotations.xml`` -> (meta, one dict per image with dataset, item, id,
    subset, ann_inline, problem), in document order. Moves track shapes into their images."""
    if root.tag != "annotations":
        raise ProjectError(f"annotations.xml: expected the root element <annotations>, got "
                           f"<{root.tag[:40]}>")
    tracks = _track_shapes(root)
    if root.find("image") is None and root.find("track") is not None:
        raise ProjectError("annotations.xml is CVAT for video 1.1 (<track> elements, no <image>), "
                           "which is not supported: export the task as 'CVAT for images 1.1' "
                           "(every frame an <image>, track shapes on their frames)")
    shapes_by_label: dict[str, set[str]] = {}
    attribute_names: set[str] = set()
    images = []
    for image in root.findall("image"):
        image_id = (image.get("id") or "").strip()
        if tracks and _INT_RE.fullmatch(image_id):
            image.extend(tracks.get(str(int(image_id)), []))
        for child in image:
            if child.tag != "tag":
                shapes_by_label.setdefault(child.get("label", ""), set()).add(shape_kind(child.tag, child.attrib))
            for a in child.findall("attribute"):
                if a.get("name") and child.tag != "tag":
                    attribute_names.add(a.get("name"))
        image.tail = None
        unlabelled = sum(1 for child in image if child.tag != "tag" and child.get("label") == "")
        name, subset = image.get("name"), image.get("subset")
        problem = None if name else f"<image id={image_id[:20]!r}>: expected a 'name', got none"
        images.append({"dataset": subset if subset else DEFAULT_DATASET,
                       "item": name if name else f"<image id={image_id[:20]}>",
                       "subset": subset, "ann_inline": ET.tostring(image, encoding="unicode")
                       .encode("utf-8"), "problem": problem, "unlabelled": unlabelled})
    meta = build_meta(root, shapes_by_label, attribute_names)
    return meta, images


def _project_fail(what: str) -> Callable[[str], ProjectError]:
    return lambda reason: ProjectError(f"{what}: {reason}")


def image_row_item(image: ET.Element) -> str:
    """The item name of an ``<image>``: its ``name``, else a placeholder naming its ``id``
    (the row then has a ``problem``)."""
    return image.get("name") or f"<image id={(image.get('id') or '').strip()[:20]}>"


@dataclass
class StreamedDocument:
    """The document(s) as the driver keeps them: meta, and per image (document order, file after
    file) its dataset, item, XML file, byte span, and inline bytes where the row carries them."""
    meta: ProjectMeta
    datasets: list = field(default_factory=list)
    items: list = field(default_factory=list)
    subsets: list = field(default_factory=list)
    files: array = field(default_factory=lambda: array("i"))
    offsets: array = field(default_factory=lambda: array("q"))
    lengths: array = field(default_factory=lambda: array("q"))
    inline: dict = field(default_factory=dict)      # image index -> ann_inline
    problems: dict = field(default_factory=dict)    # image index -> problem
    unlabelled: dict = field(default_factory=dict)  # image index -> shapes with label=""

    def warnings(self) -> tuple[str, ...]:
        """What the document leaves out: unlabelled shapes, per image."""
        found = sorted(self.unlabelled.items())
        if not found:
            return ()
        return (f"{sum(n for _, n in found)} shapes with an empty label (unlabelled: no class, "
                f"not drawn) left out, in {len(found)} images: "
                + ", ".join(f"{self.items[i]} ({n})" for i, n in found[:5])
                + (", ..." if len(found) > 5 else ""),)

    def table(self, files: dict, xml_names: list[str]) -> pa.Table:
        """The listing (``ITEMS_SCHEMA``) given the image files (relative path -> size)."""
        counts = Counter(zip(self.datasets, self.items))
        order = sorted(range(len(self.items)), key=lambda i: (self.datasets[i], self.items[i], i))
        cols: dict[str, list] = {f.name: [] for f in ITEMS_SCHEMA}
        for i in order:
            dataset, item, subset = self.datasets[i], self.items[i], self.subsets[i]
            img_path = None
            for candidate in (item, f"{subset}/{item}" if subset else None):
                if candidate is not None and candidate in files:
                    img_path = candidate
                    break
            problem = self.problems.get(i)
            if problem is None and counts[(dataset, item)] > 1:
                problem = (f"{xml_names[self.files[i]]}: expected unique image names per subset, "
                           f"got {item[:200]!r} {counts[(dataset, item)]} times in {dataset!r}")
            inline = self.inline.get(i)
            cols["dataset"].append(dataset)
            cols["item"].append(item)
            cols["ann_path"].append(None if inline is not None else xml_names[self.files[i]])
            cols["img_path"].append(img_path)
            cols["ann_bytes"].append(len(inline) if inline is not None else self.lengths[i])
            cols["img_bytes"].append(files.get(img_path) if img_path is not None else None)
            cols["ann_offset"].append(None if inline is not None else self.offsets[i])
            cols["ann_inline"].append(inline)
            cols["problem"].append(problem)
        return pa.table(cols, schema=ITEMS_SCHEMA)


def streamed_document(names: list[str], scans: list[Scan], read_span, *,
                      inline: bool = False) -> StreamedDocument:
    """Scans of one or several XML files -> ``StreamedDocument`` (the same meta and items as
    ``read_document`` of the parsed file). ``read_span(file_index, offset, length)`` gives the
    bytes of an image that must travel inline: every image when ``inline`` (a zip member), else
    only the images that receive shapes of ``<track>`` elements."""
    several = len(scans) > 1
    shapes_by_label: dict[str, set[str]] = {}
    attribute_names: set[str] = set()
    doc = StreamedDocument(meta=None)  # type: ignore[arg-type]
    declared = None
    for f, (name, scan) in enumerate(zip(names, scans)):
        if scan.root_tag != "annotations":
            raise ProjectError(f"{name}: expected the root element <annotations>, got "
                               f"<{(scan.root_tag or '')[:40]}>")
        holder = ET.Element("annotations")
        holder.extend(scan.tracks)
        tracks = _track_shapes(holder)
        if not len(scan) and scan.tracks:
            raise ProjectError(f"{name} is CVAT for video 1.1 (<track> elements, no <image>), "
                               "which is not supported: export the task as 'CVAT for images 1.1' "
                               "(every frame an <image>, track shapes on their frames)")
        labels = build_meta(scan.meta, {}, set()).raw
        if declared is not None and labels != declared[1]:
            raise ProjectError(f"{name}: expected the labels {declared[0]} declares (several .xml "
                               f"files are the subsets of one project), got other labels")
        declared = declared or (name, labels)
        for label, kinds in scan.shapes_by_label.items():
            shapes_by_label.setdefault(label, set()).update(kinds)
        attribute_names |= scan.attribute_names
        stem = posixpath.basename(name)[:-4] if name.lower().endswith(".xml") else name
        base = len(doc.items)
        for i, (item_name, subset, image_id) in enumerate(zip(scan.names, scan.subsets, scan.ids)):
            k = base + i
            doc.datasets.append(subset if subset else (stem if several else DEFAULT_DATASET))
            doc.items.append(item_name if item_name else f"<image id={image_id[:20]}>")
            doc.subsets.append(subset)
            doc.files.append(f)
            doc.offsets.append(scan.offsets[i])
            doc.lengths.append(scan.lengths[i])
            if not item_name:
                doc.problems[k] = f"<image id={image_id[:20]!r}>: expected a 'name', got none"
            unlabelled = scan.unlabelled.get(i, 0)
            extra = (tracks.get(str(int(image_id)), []) if tracks and _INT_RE.fullmatch(image_id)
                     else [])
            for child in extra:
                if child.tag != "tag":
                    shapes_by_label.setdefault(child.get("label", ""), set()).add(
                        shape_kind(child.tag, child.attrib))
                    attribute_names.update(a.get("name") for a in child.findall("attribute")
                                           if a.get("name"))
                    unlabelled += child.get("label") == ""
            if unlabelled:
                doc.unlabelled[k] = unlabelled
            if inline or extra:
                raw = read_span(f, scan.offsets[i], scan.lengths[i])
                image = parse_xml(raw, _project_fail(name), max_bytes=len(raw))
                doc.inline[k] = image_element_bytes(image, extra)
    doc.meta = build_meta(scans[0].meta, shapes_by_label, attribute_names)
    return doc


# --- the source --------------------------------------------------------------------------------

def _top_xmls(fs, folder: str) -> list[str]:
    """The top-level ``.xml`` files of a task folder, sorted (Datumaro's ``export_task`` names its
    XML after the subset, ``default.xml``; several subsets give several files)."""
    return sorted(p for p in fs.ls(folder, detail=False) if p.lower().endswith(".xml") and fs.isfile(p))


def _join(root: str, rel: str) -> str:
    return f"{root.rstrip('/')}/{rel}" if root else rel


class CvatXmlSource(SourceBase):
    """A CVAT for images 1.1 task: ``annotations.xml``, a folder holding it, or a ``.zip``.

    Picklable: holds URLs, options and resolved paths, never an open handle nor the parsed
    document (the plan rows carry the annotations); filesystems (and a local zip's index) are
    reopened lazily where the object is used.
    """

    annotation_format = "cvat"
    _transient = ("_img_fs", "_doc", "_zip_xml")
    _local_transient = ("_zip",)  # a remote zip's checked index travels (rereading costs requests)

    def __init__(self, url: str, *, storage_options: dict | None = None, images: str | None = None,
                 max_xml_bytes: int = DEFAULT_MAX_XML_BYTES) -> None:
        super().__init__(url, storage_options)
        self.images = images
        self.max_xml_bytes = max_xml_bytes
        self.kind = "xml"          # "xml" (the file), "folder", "zip"
        self.xml_path = ""         # path on the filesystem, or zip member
        self.more_xml: list[str] = []  # a folder of several .xml files: the others' names
        self.img_root = ""         # folder path on the image filesystem, or zip member prefix
        self.project_name = ""
        self.project_id = None
        self._img_fs = self._zip = None
        self._doc = None
        self._zip_xml = None       # a zip's XML member while it is scanned
        self._doc_warnings: tuple[str, ...] = ()      # shapes the document leaves out
        self._listing_warnings: tuple[str, ...] = ()  # files the image listing skips

    @property
    def warnings(self) -> tuple[str, ...]:
        return self._doc_warnings + self._listing_warnings

    def __repr__(self) -> str:
        return f"CvatXmlSource({self._where()!r}, kind={self.kind!r})"

    @classmethod
    def open_source(cls, url_or_path: str, storage_options: dict | None = None, *,
                    images: str | None = None, max_xml_bytes: int = DEFAULT_MAX_XML_BYTES
                    ) -> CvatXmlSource:
        """Open ``annotations.xml``, a folder holding it, or a ``.zip`` of such a folder.

        Images: ``images`` (a folder path or URL) when given, else ``images/`` beside the XML,
        else the XML's own folder. ``ProjectError`` when nothing usable is there.
        """
        url = os.fspath(url_or_path)
        src = cls(url, storage_options=storage_options, images=images, max_xml_bytes=max_xml_bytes)
        with src._store_errors(f"CVAT source {url!r}", "a readable annotations.xml, folder or .zip"):
            src._resolve()
        return src

    def _resolve(self) -> None:
        fs, path = self.filesystem()
        if self.is_local():
            self.url = path   # absolute: workers may run in another folder
        if self.images is not None and is_local_url(self.images):
            self.images = self.image_filesystem()[1]
        if path.lower().endswith(".zip") and fs.isfile(path):
            self.kind = "zip"
            names = self._zipfile().names()
            if ANNOTATIONS_XML in names:
                base = ""
            else:
                roots = sorted(n[:-len(ANNOTATIONS_XML) - 1] for n in names
                               if n.endswith("/" + ANNOTATIONS_XML) and n.count("/") == 1)
                if len(roots) != 1:
                    raise ProjectError(f"CVAT zip {self._where()!r}: expected annotations.xml at "
                                       f"the top or in a single top folder, got {len(roots)} "
                                       f"candidates ({', '.join(roots[:5]) or 'none'})")
                base = roots[0]
            self.xml_path = _join(base, ANNOTATIONS_XML)
            images_prefix = _join(base, "images/")
            if self.images is None:
                self.img_root = (images_prefix if any(n.startswith(images_prefix) for n in names)
                                 else _join(base, ""))
        elif fs.isdir(path):
            found = _top_xmls(fs, path)
            if not found:
                raise ProjectError(f"CVAT source {self._where()!r}: expected a folder holding "
                                   f"annotations.xml or other .xml files, got no .xml file there")
            self.kind, self.xml_path = "folder", found[0]
            self.more_xml = [posixpath.basename(p) for p in found[1:]]
        elif fs.isfile(path):
            self.kind, self.xml_path = "xml", path
        else:
            raise ProjectError(f"CVAT source: expected annotations.xml, a folder or a .zip, got "
                               f"{self._where()!r} (not found)")
        if self.kind != "zip" and self.images is None:
            base = posixpath.dirname(self.xml_path)
            self.img_root = _join(base, "images") if fs.isdir(_join(base, "images")) else base
        if self.images is not None:
            self.img_root = self.image_filesystem()[1]
        stem = posixpath.basename(path.rstrip("/"))
        if self.kind == "xml":
            stem = posixpath.basename(posixpath.dirname(path)) or stem
        self.project_name = stem[:-4] if stem.lower().endswith(".zip") else stem

    def image_filesystem(self):
        """(filesystem, path) of the images: the ``images`` URL, else the source's filesystem."""
        if self._img_fs is None:
            self._img_fs = (filesystem(self.images, self.storage_options) if self.images is not None
                            else self.filesystem())
        return self._img_fs

    def _zipfile(self):
        if self._zip is None:
            try:
                from ..io.zipsafe import SafeZip
            except ImportError as exc:
                raise ImportError(f"reading a CVAT .zip needs maskcore.zipsafe: {exc}") from None
            fs, path = self.filesystem()
            self._zip = SafeZip(fs, path)
        return self._zip

    def _images_in_zip(self) -> bool:
        return self.kind == "zip" and self.images is None

    def read_bytes(self, path: str) -> bytes:
        """Bytes of an image given by its ``img_path`` (relative to the images folder)."""
        if self._images_in_zip():
            return self._zipfile().read(_join(self.img_root, path))
        fs, _ = self.image_filesystem()
        return cat_whole(fs, _join(self.img_root, path))

    def xml_names(self) -> list[str]:
        """The XML files read, as rows name them in ``ann_path``: base names beside each other
        (a zip's member, whose rows carry their annotations inline, keeps its member path)."""
        return [self.xml_path if self.kind == "zip" else posixpath.basename(self.xml_path),
                *self.more_xml]

    def _xml_file(self, name: str) -> str:
        if self.kind == "zip":
            return self.xml_path
        return _join(posixpath.dirname(self.xml_path), name)

    def _xml_chunks(self, name: str):
        """The bytes of one XML file, in chunks, after refusing it by its listed size."""
        what = f"{name} of {self._where()!r}"
        with self._store_errors(what, "a readable file", OSError):
            if self.kind == "zip":
                z = self._zipfile()
                size = z.size(self.xml_path)
                if size > self.max_xml_bytes:
                    raise ProjectError(f"{self._where()!r} member {self.xml_path!r}: expected at "
                                       f"most {self.max_xml_bytes} bytes, got {size}")
                try:
                    data = z.read(self.xml_path)
                except ItemError as exc:  # a zip member that does not match its record (CRC, size)
                    raise ProjectError(f"{what}: {exc}") from None
                self._zip_xml = data
                yield from (data[i:i + XML_CHUNK_BYTES] for i in range(0, len(data), XML_CHUNK_BYTES))
                return
            fs, _ = self.filesystem()
            path = self._xml_file(name)
            size = fs.size(path)
            if size is not None and size > self.max_xml_bytes:
                raise ProjectError(f"{self._where()!r}: expected {name} of at most "
                                   f"{self.max_xml_bytes} bytes, got {size}")
            with fs.open(path, "rb", block_size=XML_CHUNK_BYTES) as f:
                while chunk := f.read(XML_CHUNK_BYTES):
                    yield chunk

    def _document(self) -> StreamedDocument:
        if self._doc is None:
            scans = []
            for name in self.xml_names():
                fail = _project_fail(f"{name} of {self._where()!r}")
                scans.append(scan_document(self._xml_chunks(name), fail, max_bytes=self.max_xml_bytes))
            try:
                self._doc = streamed_document(self.xml_names(), scans, self._read_span,
                                              inline=self.kind == "zip")
            finally:
                self._zip_xml = None
            self._doc_warnings = self._doc.warnings()
        return self._doc

    def _read_span(self, file_index: int, offset: int, length: int) -> bytes:
        if self._zip_xml is not None:
            return self._zip_xml[offset:offset + length]
        fs, _ = self.filesystem()
        return fs.cat_file(self._xml_file(self.xml_names()[file_index]), start=offset,
                           end=offset + length)

    def read_meta(self) -> ProjectMeta:
        """Labels of ``<meta>`` (see module docstring); ``ProjectError`` when unusable."""
        return self._document().meta

    def _image_files(self, depth: int, stamps: bool = False) -> tuple[dict, dict]:
        """Files under the images folder (relative path -> size), one listing; with ``stamps``
        also relative path -> change stamp (a folder's files only)."""
        if self._images_in_zip():
            z = self._zipfile()
            return {n[len(self.img_root):]: z.size(n) for n in z.names()
                    if n.startswith(self.img_root) and n != self.xml_path}, {}
        fs, _ = self.image_filesystem()
        listed_at = time.time()
        if not fs.isdir(self.img_root):
            return {}, {}
        found = fs.find(self.img_root, maxdepth=depth, detail=True)
        skipped: list[str] = []
        cut = len(self.img_root.rstrip("/")) + 1
        files = regular_files(found, cut, skipped)
        self._listing_warnings = tuple(f"image folder: {w}" for w in sorted(skipped))
        stamp_of = {p[cut:]: change_stamp(info, listed_at) for p, info in found.items()} if stamps else {}
        return files, stamp_of

    lists_stamps = True
    """``list_items(stamps=True)`` adds ``ann_stamp`` (the XML file's change stamp and the item's
    span in it: the same while the file is) and ``img_stamp``; null where the store gives none,
    and for a zip (its rows carry their annotations inline, stamped by their checksum)."""

    def list_items(self, *, stamps: bool = False) -> pa.Table:
        """One row per ``<image>`` (see ``ITEMS_SCHEMA``), sorted by (dataset, item)."""
        doc = self._document()
        depth = 2 + max((item.count("/") for item in doc.items), default=0)
        with self._store_errors(f"images of {self._where()!r}", "a listable folder", OSError):
            listed_at = time.time()
            files, img_stamps = self._image_files(depth, stamps and self.kind != "zip")
            xml_stamps = {}
            if stamps and self.kind != "zip":
                fs, _ = self.filesystem()
                for name in self.xml_names():
                    xml_stamps[name] = change_stamp(fs.info(self._xml_file(name)), listed_at)
        table = doc.table(files, self.xml_names())
        if stamps:
            table = table.append_column("ann_stamp", pa.array(
                [None if inline is not None or xml_stamps.get(path) is None
                 else f"{xml_stamps[path]};span={off}+{n}" for path, off, n, inline in zip(
                    table.column("ann_path").to_pylist(), table.column("ann_offset").to_pylist(),
                    table.column("ann_bytes").to_pylist(), table.column("ann_inline").to_pylist())],
                pa.string()))
            table = table.append_column("img_stamp", pa.array(
                [None if p is None else img_stamps.get(p) for p in table.column("img_path").to_pylist()],
                pa.string()))
        return table

    def item_annotation(self, row: dict) -> bytes:
        """The item's ``<image>`` element bytes: ``ann_inline``, else its span of the XML file
        (``ann_path``, ``ann_offset``, ``ann_bytes``), read and serialised as ``ann_inline``
        would hold it. ``ItemSourceError`` when the span is no longer that image (the file
        changed since it was listed)."""
        return self.item_annotation_decoded(row).data

    def item_annotation_decoded(self, row: dict) -> ItemAnnotation:
        """``item_annotation``'s bytes and, for an item read by its span, the ``<image>`` element
        parsed on the way (``parse_annotation(..., decoded=)`` reads it instead of the bytes).
        Not when the bytes hold a carriage return: a text's ``&#13;`` is written back as a raw
        CR, which parsing the bytes reads as a newline (XML end-of-line handling)."""
        if row.get("ann_inline") is not None:
            return ItemAnnotation(row["ann_inline"])
        where = f"{row['dataset']}/{row['item']}"
        name, offset, length = row["ann_path"], row["ann_offset"], row["ann_bytes"]

        def changed(reason: str) -> ItemSourceError:
            return ItemSourceError(f"{name}: expected the <image> listed at bytes {offset}.."
                                   f"{offset + length}, got {reason} (the file changed since it "
                                   f"was listed: run again)", where=where)
        fs, _ = self.filesystem()
        try:
            raw = fs.cat_file(self._xml_file(name), start=offset, end=offset + length)
        except (OSError, ValueError) as exc:
            raise ItemSourceError(f"{name}: expected bytes {offset}..{offset + length} of it, got "
                                  f"{type(exc).__name__}: {str(exc)[:200]}", where=where) from None
        if len(raw) != length:
            raise changed(f"{len(raw)} bytes")
        image = parse_xml(raw, changed, max_bytes=length)
        if image.tag != "image" or image_row_item(image) != row["item"]:
            raise changed(f"<{image.tag[:40]} name={_brief(image.get('name'))}>")
        data = image_element_bytes(image)
        return ItemAnnotation(data, None if b"\r" in data else image)

    def parse_annotation(self, data: bytes, meta: ProjectMeta, where: str, *,
                         max_bitmap_pixels: int = MAX_PIXELS, decoded: ET.Element | None = None) -> Annotation:
        """``parse_annotation`` of this module (of ``decoded``, the element ``data`` was written
        from, when given)."""
        return parse_annotation(data, meta, where, max_bitmap_pixels=max_bitmap_pixels, element=decoded)
