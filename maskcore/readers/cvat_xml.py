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
  order; a name used twice in one dataset fails both items (``problem``). ``ann_inline`` is the
  ``<image>`` element serialised by ``xml.etree`` (deterministic: the same document gives the
  same bytes), with the shapes of ``<track>`` elements on that frame appended (see below).
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
  gives no label. ``<cuboid>`` and ``<skeleton>`` fail the
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
- Safety: the XML is parsed once, on the driver, by ``xml.etree`` (expat), after refusing a
  document over ``max_xml_bytes``, one that is not UTF-8 (NUL bytes, another declared
  encoding), or holds ``<!DOCTYPE``/``<!ENTITY`` (so no entity expansion, no external fetch);
  elements nested deeper than ``MAX_XML_DEPTH`` are refused while parsing. Project-level
  problems raise ``ProjectError``; one image's problems fail that item only.
- I/O: any fsspec filesystem; ``CvatXmlSource`` is picklable, opens lazily, and never ships the
  parsed document (the plan carries each image's ``ann_inline``). A ``.zip`` is read in place
  through ``maskcore.zipsafe.SafeZip``. ``img_path`` is relative to the images folder (for a zip:
  to its images prefix) and ``read_bytes`` takes it.
"""

from __future__ import annotations

import math
import os
import posixpath
import re
import xml.etree.ElementTree as ET
from typing import Callable

import numpy as np
import pyarrow as pa

from ..errors import AnnotationError, ItemError, LimitError, ProjectError, UnknownClassError
from ..io.storage import cat_whole, filesystem
from ..kernel.ellipse import cvat_ellipse
from ..kernel.palette import class_colors
from ..limits import DEFAULT_MAX_XML_BYTES, MAX_COORD, MAX_PIXELS, MAX_XML_DEPTH
from ..model.annotation import Annotation, Label, ObjClass, ProjectMeta
from ..model.geometry import Bitmap, Box, Point, Polygon, Polyline
from .base import SourceBase, is_local_url, regular_files

DEFAULT_DATASET = "default"
"""Dataset of images without a ``subset`` attribute (CVAT's default subset name)."""
ANNOTATIONS_XML = "annotations.xml"

ITEMS_SCHEMA = pa.schema([
    ("dataset", pa.string()), ("item", pa.string()),
    ("ann_path", pa.string()), ("img_path", pa.string()),
    ("ann_bytes", pa.int64()), ("img_bytes", pa.int64()),
    ("ann_inline", pa.binary()), ("problem", pa.string()),
])
"""Columns of ``list_items`` (``ann_path`` is always null: annotations travel in ``ann_inline``)."""

SHAPES = ("box", "polygon", "polyline", "points", "mask", "ellipse")
"""Shape elements this reader decodes."""
UNSUPPORTED_SHAPES = ("cuboid", "skeleton")
_TYPE_TO_SHAPE = {"rectangle": "rectangle", "polygon": "polygon", "polyline": "line",
                  "points": "point", "mask": "bitmap", "ellipse": "bitmap"}
_ELEMENT_SHAPE = {"box": "rectangle", "polygon": "polygon", "polyline": "line", "points": "point",
                  "mask": "bitmap", "ellipse": "bitmap"}
_COLOR_RE = re.compile(r"#[0-9A-Fa-f]{6}")
_NUMBER_RE = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_INT_RE = re.compile(r"[+-]?\d{1,12}")
_GROUP_RE = re.compile(r"\+?\d{1,19}")
_RLE_RE = re.compile(r"\s*\d{1,15}(?:\s*,\s*\d{1,15})*\s*")
_DTD_RE = re.compile(rb"<!(?:DOCTYPE|ENTITY)", re.IGNORECASE)
_ENCODING_RE = re.compile(rb"""<\?xml[^>]*?encoding\s*=\s*["']([^"']*)["']""")
_TRACK_ONLY_ATTRS = ("frame", "outside", "keyframe")


# --- safe XML ----------------------------------------------------------------------------------

def parse_xml(data: bytes, fail: Callable[[str], Exception], *,
              max_bytes: int = DEFAULT_MAX_XML_BYTES) -> ET.Element:
    """Bytes of an XML document -> its root element, refusing what could be hostile.

    Raises ``fail(reason)`` for a document over ``max_bytes``, not UTF-8, with a DTD or entity
    declaration, nested deeper than ``MAX_XML_DEPTH``, or malformed.
    """
    if len(data) > max_bytes:
        raise fail(f"expected at most {max_bytes} bytes of XML, got {len(data)}")
    if b"\0" in data:
        raise fail("expected UTF-8 XML, got NUL bytes (UTF-16 or binary data)")
    declared = _ENCODING_RE.match(data[:512].lstrip(b"\xef\xbb\xbf"))
    if declared and declared[1].decode("ascii", "replace").lower() not in (
            "utf-8", "utf8", "us-ascii", "ascii"):
        raise fail(f"expected UTF-8 XML, got encoding "
                   f"{declared[1][:40].decode('ascii', 'replace')!r}")
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise fail(f"expected UTF-8 XML, got an invalid byte at {exc.start}") from None
    found = _DTD_RE.search(data)
    if found:
        raise fail(f"expected XML without a DTD or entity declarations, got "
                   f"{found[0].decode('ascii')!r} at byte {found.start()} (refused: entities)")
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
    """One shape element -> its geometries (one, or one per point of ``<points>``, none for an
    ellipse that paints no pixel of the ``size_hw`` image)."""
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
        return [] if patch.is_empty else [_tight_bitmap(patch.left, patch.top, patch.mask)]
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
                     max_bitmap_pixels: int = MAX_PIXELS) -> Annotation:
    """One ``<image>`` element (its bytes, as ``ann_inline`` holds them) -> ``Annotation``.

    Errors are ``ItemError`` subclasses located at ``where`` (image level) or
    ``<where>/object <i>`` (``UnknownClassError`` for a label that is not a class).
    """
    image = parse_xml(data, lambda reason: AnnotationError(reason, where=where),
                      max_bytes=len(data))
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


def _shape_kind(elem: ET.Element) -> str:
    kind = _ELEMENT_SHAPE.get(elem.tag, "any")
    if elem.tag == "box":
        try:
            rotated = float(elem.get("rotation") or 0) != 0
        except ValueError:
            rotated = True  # the item fails anyway, when parsed
        if rotated:
            kind = "any"  # a rotated box is not a Supervisely rectangle
    return kind


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
                shapes_by_label.setdefault(child.get("label", ""), set()).add(_shape_kind(child))
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


# --- the source --------------------------------------------------------------------------------

def _lone_xml(fs, folder: str, where: str) -> str:
    """A task folder whose XML is not called annotations.xml (Datumaro's ``export_task`` and hand
    renamed exports): its only top-level ``.xml`` file."""
    found = sorted(p for p in fs.ls(folder, detail=False)
                   if p.lower().endswith(".xml") and fs.isfile(p))
    if len(found) != 1:
        raise ProjectError(f"CVAT source {where!r}: expected a folder holding annotations.xml or "
                           f"a single .xml file, got {len(found)} .xml files there")
    return found[0]


def _join(root: str, rel: str) -> str:
    return f"{root.rstrip('/')}/{rel}" if root else rel


class CvatXmlSource(SourceBase):
    """A CVAT for images 1.1 task: ``annotations.xml``, a folder holding it, or a ``.zip``.

    Picklable: holds URLs, options and resolved paths, never an open handle nor the parsed
    document (the plan rows carry the annotations); filesystems (and a local zip's index) are
    reopened lazily where the object is used.
    """

    annotation_format = "cvat"
    _transient = ("_img_fs", "_doc")
    _local_transient = ("_zip",)  # a remote zip's checked index travels (rereading costs requests)

    def __init__(self, url: str, *, storage_options: dict | None = None, images: str | None = None,
                 max_xml_bytes: int = DEFAULT_MAX_XML_BYTES) -> None:
        super().__init__(url, storage_options)
        self.images = images
        self.max_xml_bytes = max_xml_bytes
        self.kind = "xml"          # "xml" (the file), "folder", "zip"
        self.xml_path = ""         # path on the filesystem, or zip member
        self.img_root = ""         # folder path on the image filesystem, or zip member prefix
        self.project_name = ""
        self.project_id = None
        self._img_fs = self._zip = None
        self._doc = None
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
                    ) -> "CvatXmlSource":
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
            self.kind, self.xml_path = "folder", _join(path, ANNOTATIONS_XML)
            if not fs.isfile(self.xml_path):
                self.xml_path = _lone_xml(fs, path, self._where())
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

    def _xml_bytes(self) -> bytes:
        what = f"annotations.xml of {self._where()!r}"
        try:
            with self._store_errors(what, "a readable file", OSError):
                if self.kind == "zip":
                    z = self._zipfile()
                    size = z.size(self.xml_path)
                    if size > self.max_xml_bytes:
                        raise ProjectError(f"{self._where()!r} member {self.xml_path!r}: expected at "
                                           f"most {self.max_xml_bytes} bytes, got {size}")
                    return z.read(self.xml_path)
                fs, _ = self.filesystem()
                size = fs.size(self.xml_path)
                if size is not None and size > self.max_xml_bytes:
                    raise ProjectError(f"{self._where()!r}: expected annotations.xml of at most "
                                       f"{self.max_xml_bytes} bytes, got {size}")
                return cat_whole(fs, self.xml_path)
        except ItemError as exc:  # a zip member that does not match its record (CRC, size)
            raise ProjectError(f"{what}: {exc}") from None

    def _document(self) -> tuple[ProjectMeta, list[dict]]:
        if self._doc is None:
            what = f"annotations.xml of {self._where()!r}"
            root = parse_xml(self._xml_bytes(), lambda reason: ProjectError(f"{what}: {reason}"),
                             max_bytes=self.max_xml_bytes)
            self._doc = read_document(root)
            unlabelled = [(im["item"], im["unlabelled"]) for im in self._doc[1] if im["unlabelled"]]
            if unlabelled:
                self._doc_warnings = (f"{sum(n for _, n in unlabelled)} shapes with an empty label "
                                 f"(unlabelled: no class, not drawn) left out, in {len(unlabelled)} "
                                 f"images: " + ", ".join(f"{i} ({n})" for i, n in unlabelled[:5])
                                 + (", ..." if len(unlabelled) > 5 else ""),)
        return self._doc

    def read_meta(self) -> ProjectMeta:
        """Labels of ``<meta>`` (see module docstring); ``ProjectError`` when unusable."""
        return self._document()[0]

    def _image_files(self, depth: int) -> dict[str, int | None]:
        """Files under the images folder (relative path -> size), one listing."""
        if self._images_in_zip():
            z = self._zipfile()
            return {n[len(self.img_root):]: z.size(n) for n in z.names()
                    if n.startswith(self.img_root) and n != self.xml_path}
        fs, _ = self.image_filesystem()
        if not fs.isdir(self.img_root):
            return {}
        found = fs.find(self.img_root, maxdepth=depth, detail=True)
        skipped: list[str] = []
        files = regular_files(found, len(self.img_root.rstrip("/")) + 1, skipped)
        self._listing_warnings = tuple(f"image folder: {w}" for w in sorted(skipped))
        return files

    def list_items(self) -> pa.Table:
        """One row per ``<image>`` (see ``ITEMS_SCHEMA``), sorted by (dataset, item)."""
        _, images = self._document()
        depth = 2 + max((im["item"].count("/") for im in images), default=0)
        with self._store_errors(f"images of {self._where()!r}", "a listable folder", OSError):
            files = self._image_files(depth)
        counts: dict[tuple[str, str], int] = {}
        for im in images:
            counts[(im["dataset"], im["item"])] = counts.get((im["dataset"], im["item"]), 0) + 1
        rows = []
        for order, im in enumerate(images):
            key = (im["dataset"], im["item"])
            img_path = None
            for candidate in (im["item"], f"{im['subset']}/{im['item']}" if im["subset"] else None):
                if candidate is not None and candidate in files:
                    img_path = candidate
                    break
            problem = im["problem"]
            if problem is None and counts[key] > 1:
                problem = (f"annotations.xml: expected unique image names per subset, got "
                           f"{im['item'][:200]!r} {counts[key]} times in {im['dataset']!r}")
            rows.append((key, order, {
                "dataset": im["dataset"], "item": im["item"], "ann_path": None,
                "img_path": img_path, "ann_bytes": len(im["ann_inline"]),
                "img_bytes": files.get(img_path) if img_path is not None else None,
                "ann_inline": im["ann_inline"], "problem": problem}))
        rows.sort(key=lambda r: (r[0], r[1]))
        return pa.Table.from_pylist([r[2] for r in rows], schema=ITEMS_SCHEMA)

    def item_annotation(self, row: dict) -> bytes:
        """The item's ``<image>`` element bytes (``ann_inline``)."""
        return row["ann_inline"]

    def parse_annotation(self, data: bytes, meta: ProjectMeta, where: str, *,
                         max_bitmap_pixels: int = MAX_PIXELS) -> Annotation:
        """``parse_annotation`` of this module."""
        return parse_annotation(data, meta, where, max_bitmap_pixels=max_bitmap_pixels)
