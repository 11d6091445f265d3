"""CVAT "Segmentation mask 1.1" (Pascal VOC style) reader: a folder or a ``.zip``, as exact bitmaps.

Layout (see shared/spec/cvat.md)::

    labelmap.txt                            optional: name:r,g,b:parts:actions per line
    ImageSets/Segmentation/<subset>.txt     optional: one item id per line
    SegmentationClass/<id>.png              class mask (label colours, or label indices)
    SegmentationObject/<id>.png             instance mask (VOC colours, or instance ids)
    JPEGImages/<id>.<ext>                   optional images

Conventions:
- Root: the folder (zip root) holding ``labelmap.txt``, ``ImageSets``, ``SegmentationClass``,
  ``SegmentationObject`` or ``JPEGImages``, else its single sub-folder that does. A ``.zip`` is
  read in place through ``maskcore.zipsafe.SafeZip`` (hostile archives refused whole, before
  anything is listed). Paths in the listing are relative to the root, '/'-separated.
- Labels: ``labelmap.txt`` parsed as CVAT does (stripped lines; empty and ``#`` lines skipped;
  exactly 4 ``:`` fields; colour empty or 3 comma-separated ints 0..255; names unique); label
  index = file order. A label without colour takes the VOC colour of its index. Two labels
  with one colour are refused (an RGB mask could not tell them apart). No ``labelmap.txt``: the
  21 VOC labels (``palette.VOC_CLASSES``) in VOC colours. Errors: ``ProjectError`` with the
  line number.
- Classes (``read_meta``): every label except the one named ``background``, in labelmap
  order, shape ``bitmap``; plus, only when some item has an object mask but no class mask,
  the class ``object`` (or ``object_2``, ... if the labelmap uses that name) for its instances.
  ``meta.raw`` is the matching Supervisely ``meta.json``.
- Items: ids from the list files, the masks and the images (``<id>`` keeps its folders).
  Dataset = the subset of each list file naming the id (an id in two lists is an item of
  both); ids in no list are in dataset ``default``. Item name = ``<id>`` + the extension of its
  image in ``JPEGImages`` (the first in code point order if there are several), else
  ``<id>.png`` (the Supervisely layout needs a file name; no such image exists then, and
  ``img_path`` is null). Rows sorted by (dataset, item).
- ``list_items`` columns: ``dataset, item, ann_path, img_path, ann_bytes, img_bytes`` plus
  ``cls_path`` and ``obj_path`` (each mask or null). ``ann_path`` is the class mask, else the
  object mask; ``ann_bytes`` their total size. An item with neither (listed, or an image
  alone) has ``ann_inline`` = b"" and is an empty annotation the size of its image (it fails
  when it has no image either).
- A file or list name that is not valid UTF-8 (a local folder can hold one) cannot be an item
  name: the item is listed with its name's bad bytes written ``\\xNN`` / ``\\udcNN``, no paths,
  and a ``problem`` saying so (it fails alone).
- ``item_annotation(row)``: a deterministic framing of both masks: ``b"MCVOC1 " + JSON header
  {"cls": bytes or null, "obj": bytes or null, "size_hw": [h, w] or null} + b"\\n"`` followed
  by the class and object PNG bytes.
- Mask values (``parse_annotation``). PNG header checked against ``max_bitmap_pixels`` before
  any pixel is decoded (``LimitError``); chunks and CRCs checked; both masks must have one size.
  * RGB / RGBA (alpha ignored) class masks: colours looked up in the labelmap. Object masks:
    the instance id is the VOC colormap index of the colour (every colour has one).
  * Paletted masks (``P``): the palette *indices* are used, as Datumaro and CVAT's importer
    read them and as Pascal VOC stores its masks (the palette is the VOC one there).
  * Grey (1, 2, 4, 8, 16-bit) and paletted: class mask = label index, object mask = instance id.
  * VOC "ignore": value 255 in a one-channel class mask (when the labelmap has at most 255
    labels) or object mask (8-bit), and the colour (224, 224, 192) (VOC index 255) when no
    label has it, are unlabelled: no object, and not counted in the class vote. (The
    reference fails the item on 255, CVAT #7847.)
  * A colour not in the labelmap, or an index past its end: the item fails
    (``UnknownClassError``) naming the colour or value, the file and a pixel (x, y) holding it.
- Objects: one exact ``Bitmap`` per instance id != 0 (holes and thin parts kept), cropped to
  its pixels, in increasing id order. Its class: the most frequent label under it in the class
  mask, ignoring background and ignored pixels; ties go to the lowest label index. An instance
  with no such pixel under it fails the item (the masks contradict each other). Class pixels
  outside every instance (not background, not ignored) are kept as one object per class,
  after the instances, in label order. Class mask only: one object per label present.
  Object mask only (the reference crashes): one object per instance, of class ``object``.
Pure parsing; only ``VocMasksSource`` touches a filesystem, opened lazily (picklable).
"""

from __future__ import annotations

import json
import os
import posixpath
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from ..codec.image import image_size_hw
from ..codec.png import read_png, read_png_header
from ..errors import (
    AnnotationError,
    ImageDecodeError,
    ItemError,
    LimitError,
    ProjectError,
    UnknownClassError,
)
from ..io.storage import cat_whole, filesystem
from ..io.zipsafe import SafeZip
from ..kernel.palette import VOC_CLASSES, voc_color
from ..limits import MAX_COORD, MAX_PIXELS, MAX_TEXT_BYTES
from ..model.annotation import Annotation, Label, ObjClass, ProjectMeta
from ..model.geometry import Bitmap
from .base import SourceBase, regular_files
from .supervisely import IMAGE_EXTENSIONS
from .values import is_utf8

BACKGROUND = "background"
IGNORE_VALUE = 255
IGNORE_COLOR = voc_color(255)          # (224, 224, 192)
CLASS_DIR, OBJECT_DIR, IMAGE_DIR = "SegmentationClass", "SegmentationObject", "JPEGImages"
EXTERNAL_IMAGES = "@images"
"""``img_path`` prefix of an image found in the ``images`` folder (option ``images``: a zip
exported from CVAT without images, its photos elsewhere; ``<id>.<ext>`` there, any depth)."""
LIST_DIR = "ImageSets/Segmentation"
_MARKERS = ("labelmap.txt", "ImageSets", CLASS_DIR, OBJECT_DIR, IMAGE_DIR)
_FRAME_MAGIC = b"MCVOC1 "

ITEMS_SCHEMA = pa.schema([
    ("dataset", pa.string()), ("item", pa.string()),
    ("ann_path", pa.string()), ("img_path", pa.string()),
    ("ann_bytes", pa.int64()), ("img_bytes", pa.int64()),
    ("cls_path", pa.string()), ("obj_path", pa.string()), ("ann_inline", pa.binary()),
    ("problem", pa.string()),
])


# --- labelmap ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class LabelMap:
    names: tuple[str, ...]
    colors: tuple[tuple[int, int, int], ...]

    @property
    def background(self) -> int | None:
        return self.names.index(BACKGROUND) if BACKGROUND in self.names else None


def voc_labelmap() -> LabelMap:
    """The 21 Pascal VOC labels in VOC colours (used when there is no ``labelmap.txt``)."""
    return LabelMap(VOC_CLASSES, tuple(voc_color(i) for i in range(len(VOC_CLASSES))))


def parse_labelmap(text: str | bytes) -> LabelMap:
    """``labelmap.txt`` -> ``LabelMap`` (see the module doc); ``ProjectError`` with line numbers."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise ProjectError(f"labelmap.txt: expected UTF-8 text, got {exc}") from None
    names, colors, seen_color = [], [], {}
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        where = f"labelmap.txt line {number}"
        fields = line.split(":")
        if len(fields) != 4:
            raise ProjectError(f"{where}: expected 4 ':'-separated fields "
                               f"(name:r,g,b:parts:actions), got {len(fields)} in {line[:80]!r}")
        name, color = fields[0], fields[1].strip()
        if not name:
            raise ProjectError(f"{where}: expected a label name, got an empty one")
        if name in names:
            raise ProjectError(f"{where}: expected unique label names, got {name!r} again "
                               f"(first at label {names.index(name)})")
        if color:
            parts = [p.strip() for p in color.split(",")]
            if len(parts) != 3 or not all(p.isdigit() and int(p) <= 255 for p in parts):
                raise ProjectError(f"{where} ({name!r}): expected a colour of 3 comma-separated "
                                   f"integers 0..255 or nothing, got {color[:40]!r}")
            rgb = tuple(int(p) for p in parts)
        else:
            rgb = voc_color(len(names))
        if rgb in seen_color:
            raise ProjectError(f"{where} ({name!r}): expected distinct colours, got {rgb} "
                               f"already used by {seen_color[rgb]!r}")
        seen_color[rgb] = name
        names.append(name)
        colors.append(rgb)
    if not names:
        raise ProjectError("labelmap.txt: expected at least one label, got none")
    return LabelMap(tuple(names), tuple(colors))


def fallback_class_name(labels: LabelMap) -> str:
    """``object``, or ``object_2``, ``object_3``, ... when the labelmap has that name."""
    name, n = "object", 1
    while name in labels.names:
        n += 1
        name = f"object_{n}"
    return name


def build_meta(labels: LabelMap, with_fallback: bool) -> ProjectMeta:
    """Classes of the labels (background left out), plus the fallback class when asked."""
    pairs = [(n, c) for n, c in zip(labels.names, labels.colors) if n != BACKGROUND]
    if with_fallback:
        pairs.append((fallback_class_name(labels), voc_color(len(labels.names))))
    classes = tuple(ObjClass(n, "bitmap", c, {}) for n, c in pairs)
    raw = {"classes": [{"title": c.title, "shape": "bitmap",
                        "color": "#{:02X}{:02X}{:02X}".format(*c.color_rgb), "geometry_config": {}}
                       for c in classes],
           "tags": [], "projectType": "images"}
    return ProjectMeta(classes, raw)


# --- listing -------------------------------------------------------------------------------------

def _read_list(text: bytes, name: str) -> list[str]:
    try:
        lines = text.decode("utf-8-sig").splitlines()
    except UnicodeDecodeError as exc:
        raise ProjectError(f"{name}: expected UTF-8 text, got {exc}") from None
    ids = []
    for line in lines:
        line = line.strip()
        if line.startswith('"') and line.count('"') >= 2:
            line = line[1:line.index('"', 1)]
        if line:
            ids.append(line)
    return ids


def index_voc_files(files: dict[str, int], lists: dict[str, list[str]]) -> pa.Table:
    """(path relative to the root -> size) and {subset: ids} -> the item table. Pure."""
    cls, obj, img = {}, {}, {}
    for path in sorted(files):
        top, _, rest = path.partition("/")
        stem, ext = posixpath.splitext(rest)
        if top == CLASS_DIR and ext.lower() == ".png":
            cls[stem] = path
        elif top == OBJECT_DIR and ext.lower() == ".png":
            obj[stem] = path
        elif top in (IMAGE_DIR, EXTERNAL_IMAGES) and ext.lower() in IMAGE_EXTENSIONS and stem not in img:
            img[stem] = path   # "@images/..." (option images) sorts first: it wins
    listed = {i for ids in lists.values() for i in ids}
    pairs = {(subset, i) for subset, ids in lists.items() for i in ids}
    pairs |= {("default", i) for i in set(cls) | set(obj) | set(img) if i not in listed}
    rows = []
    for dataset, item_id in pairs:
        image = img.get(item_id)
        c, o = cls.get(item_id), obj.get(item_id)
        name = item_id + (posixpath.splitext(image)[1] if image else ".png")
        ann = c or o
        row = {"dataset": dataset, "item": name, "ann_path": ann, "img_path": image,
               "ann_bytes": (files[c] if c else 0) + (files[o] if o else 0) if ann else None,
               "img_bytes": files[image] if image else None, "cls_path": c, "obj_path": o,
               "ann_inline": None if ann else b"", "problem": None}
        if not (is_utf8(dataset) and is_utf8(name)):
            row = dict.fromkeys(row)
            row["dataset"], row["item"] = _shown(dataset), _shown(name)
            row["problem"] = (f"file name {row['item']!r} (list {row['dataset']!r}) is not valid "
                              f"UTF-8; rename it")
        rows.append(row)
    rows.sort(key=lambda r: (r["dataset"], r["item"]))
    return pa.Table.from_pylist(rows, schema=ITEMS_SCHEMA)


def _shown(text: str) -> str:
    """``text`` with what UTF-8 cannot hold (undecodable bytes of a name) escaped."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


# --- decoding masks ------------------------------------------------------------------------------

# (colour type, bit depth) -> (Pillow mode, raw mode) giving the stored values: low-depth grey is
# read as palette indices (no scaling), 16-bit grey whole, 16-bit colour by its high byte.
_RAW_MODES = {
    (0, 1): ("P", "P;1"), (0, 2): ("P", "P;2"), (0, 4): ("P", "P;4"), (0, 8): ("L", "L"),
    (0, 16): ("I;16", "I;16B"), (3, 1): ("P", "P;1"), (3, 2): ("P", "P;2"), (3, 4): ("P", "P;4"),
    (3, 8): ("P", "P"), (4, 8): ("LA", "LA"), (2, 8): ("RGB", "RGB"), (2, 16): ("RGB", "RGB;16B"),
    (6, 8): ("RGB", "RGBX"), (6, 16): ("RGB", "RGBX;16B"),
}


def decode_mask(png: bytes, name: str, max_pixels: int) -> tuple[np.ndarray, int]:
    """PNG -> (values, bit depth): (H, W) ints for one-channel and paletted PNGs, (H, W, 3)
    uint8 for colour ones. The declared size is checked before any pixel is decoded."""
    from PIL import Image

    try:
        header = read_png_header(png)
        if header.width * header.height > max_pixels:
            raise LimitError(f"{name}: expected a PNG of at most {max_pixels} pixels, got declared "
                             f"size {header.width}x{header.height} (w x h)")
        key = (header.color_type, header.bit_depth)
        if key not in _RAW_MODES:
            raise AnnotationError(f"{name}: expected a grey, paletted, RGB or RGBA PNG, got "
                                  f"colour type {key[0]} at {key[1]} bits")
        data = read_png(png)
        mode, raw = _RAW_MODES[key]
        image = Image.frombytes(mode, (header.width, header.height), data.idat, "zip", raw,
                                int(header.interlaced))
    except ImageDecodeError as exc:
        raise AnnotationError(f"{name}: {exc.reason}") from None
    except ItemError:
        raise
    except ValueError as exc:  # Pillow: "not enough image data", "cannot decode image data"
        raise AnnotationError(f"{name}: expected decodable PNG data, got {exc}") from None
    arr = np.asarray(image)
    if mode == "LA":
        arr = arr[..., 0]
    return arr, 16 if key == (0, 16) else 8


def _pack_rgb(rgb: np.ndarray) -> np.ndarray:
    rgb = rgb.astype(np.uint32)
    return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]


def _first_xy(where: np.ndarray) -> tuple[int, int]:
    r, c = np.unravel_index(int(np.argmax(where)), where.shape)
    return int(c), int(r)


def class_indices(values: np.ndarray, labels: LabelMap, name: str) -> np.ndarray:
    """A decoded class mask -> int32 label indices, -1 for ignored pixels."""
    n = len(labels.names)
    if values.ndim == 3:
        keys = _pack_rgb(values)
        table = np.array([(r << 16) | (g << 8) | b for r, g, b in labels.colors], dtype=np.uint32)
        order = np.argsort(table)
        pos = np.searchsorted(table[order], keys).clip(0, n - 1)
        found = table[order][pos] == keys
        out = np.where(found, order[pos], -1).astype(np.int32)
        ignore_key = (IGNORE_COLOR[0] << 16) | (IGNORE_COLOR[1] << 8) | IGNORE_COLOR[2]
        bad = ~found & (keys != ignore_key)
        if bad.any():
            x, y = _first_xy(bad)
            raise UnknownClassError(f"{name}: colour {tuple(int(v) for v in values[y, x])} at pixel "
                                    f"(x={x}, y={y}) is not a label colour of the labelmap "
                                    f"({n} labels)")
        return out
    out = values.astype(np.int32)
    if n <= IGNORE_VALUE:
        out[values == IGNORE_VALUE] = -1
    bad = out >= n
    if bad.any():
        x, y = _first_xy(bad)
        raise UnknownClassError(f"{name}: value {int(values[y, x])} at pixel (x={x}, y={y}) is "
                                f"not a label index of the labelmap (0..{n - 1})")
    return out


def _voc_index(rgb: np.ndarray) -> np.ndarray:
    """Inverse of the VOC colormap: the index whose colour this is (every colour has one)."""
    rgb = rgb.astype(np.int64)
    out = np.zeros(rgb.shape[:2], dtype=np.int64)
    for j in range(8):  # bit 7-j of each channel holds index bits 3j (r), 3j+1 (g), 3j+2 (b)
        for ch in range(3):
            out |= ((rgb[..., ch] >> (7 - j)) & 1) << (3 * j + ch)
    return out


def instance_ids(values: np.ndarray, depth: int) -> np.ndarray:
    """A decoded object mask -> int64 instance ids, 0 for none and for ignored pixels."""
    if values.ndim == 3:
        ids = _voc_index(values)
    else:
        ids = values.astype(np.int64)
        if depth == 8:
            ids[values == IGNORE_VALUE] = 0
            return ids
    ids[ids == IGNORE_VALUE] = 0
    return ids


def _bitmaps(ids: np.ndarray) -> list[tuple[int, Bitmap]]:
    """(id, exact cropped Bitmap) for every id != 0 of an int array, in increasing id order."""
    flat = ids.ravel()
    nz = np.flatnonzero(flat)
    if nz.size == 0:
        return []
    order = nz[np.argsort(flat[nz], kind="stable")]
    sorted_ids = flat[order]
    starts = np.flatnonzero(np.r_[True, sorted_ids[1:] != sorted_ids[:-1]])
    ends = np.r_[starts[1:], sorted_ids.size]
    width = ids.shape[1]
    out = []
    for s, e in zip(starts, ends):
        pix = order[s:e]
        rows, cols = pix // width, pix % width
        r0, r1, c0, c1 = int(rows.min()), int(rows.max()) + 1, int(cols.min()), int(cols.max()) + 1
        value = int(sorted_ids[s])
        out.append((value, Bitmap((c0, r0), ids[r0:r1, c0:c1] == value)))
    return out


def _check_same_size(a: np.ndarray, b: np.ndarray, names: tuple[str, str]) -> None:
    if a.shape[:2] != b.shape[:2]:
        raise AnnotationError(f"{names[0]} and {names[1]}: expected one size, got "
                              f"{a.shape[1]}x{a.shape[0]} and {b.shape[1]}x{b.shape[0]} (w x h)")


def masks_to_labels(cls: np.ndarray | None, ids: np.ndarray | None, labels: LabelMap,
                    fallback: str, names: tuple[str, str]) -> list[tuple[str, Bitmap]]:
    """Label indices (-1 ignored) and instance ids -> (class title, Bitmap), see module doc."""
    bg = labels.background
    out: list[tuple[str, Bitmap]] = []
    n = len(labels.names)
    if ids is not None:
        instances = _bitmaps(ids)
        if cls is None:
            return [(fallback, bm) for _, bm in instances]
        voting = (cls >= 0) if bg is None else (cls >= 0) & (cls != bg)
        for value, bm in instances:
            (x0, y0), (h, w) = bm.origin_xy, bm.mask.shape
            under = cls[y0:y0 + h, x0:x0 + w][bm.mask & voting[y0:y0 + h, x0:x0 + w]]
            if under.size == 0:
                x, y = _first_xy(bm.mask)
                raise AnnotationError(f"{names[1]}: instance {value} (pixel x={x0 + x}, "
                                      f"y={y0 + y}) has only background or ignored pixels under "
                                      f"it in {names[0]}; expected a label")
            votes = np.bincount(under, minlength=n)
            out.append((labels.names[int(np.argmax(votes))], bm))  # argmax: lowest index on ties
        rest = np.where((ids == 0) & voting, cls + 1, 0)
    else:
        rest = np.where(cls >= 0, cls + 1, 0)
        if bg is not None:
            rest[cls == bg] = 0
    out.extend((labels.names[v - 1], bm) for v, bm in _bitmaps(rest))
    return out


# --- framing ---------------------------------------------------------------------------------------

def frame(cls_png: bytes | None, obj_png: bytes | None, size_hw: tuple[int, int] | None = None
          ) -> bytes:
    """The item's annotation bytes: a one-line JSON header, then the class and object PNGs."""
    head = {"cls": None if cls_png is None else len(cls_png),
            "obj": None if obj_png is None else len(obj_png),
            "size_hw": None if size_hw is None else [int(v) for v in size_hw]}
    return (_FRAME_MAGIC + json.dumps(head, sort_keys=True, separators=(",", ":")).encode() + b"\n"
            + (cls_png or b"") + (obj_png or b""))


def unframe(data: bytes) -> tuple[bytes | None, bytes | None, tuple[int, int] | None]:
    """Inverse of ``frame``; ``AnnotationError`` when the bytes are not one."""
    head, sep, body = data.partition(b"\n")
    try:
        meta = json.loads(head[len(_FRAME_MAGIC):]) if head.startswith(_FRAME_MAGIC) and sep else None
    except ValueError:
        meta = None
    sizes = [meta.get(k) if isinstance(meta, dict) else -1 for k in ("cls", "obj")]
    if not all(s is None or (type(s) is int and s >= 0) for s in sizes) \
            or sum(s or 0 for s in sizes) != len(body):
        raise AnnotationError("expected the reader's framing of the item's masks, got other bytes")
    c, o = sizes
    cls_png = None if c is None else body[:c]
    obj_png = None if o is None else body[c or 0:]
    size = meta.get("size_hw")
    if size is None:
        return cls_png, obj_png, None
    if not (isinstance(size, list) and len(size) == 2
            and all(type(v) is int and 0 < v <= MAX_COORD for v in size)):
        raise AnnotationError(f"expected the framing's size_hw as [height, width] in 1..2**31, "
                              f"got {size!r:.60}")
    return cls_png, obj_png, (size[0], size[1])


def parse_voc_annotation(data: bytes, labels: LabelMap, fallback: str, where: str, *,
                         max_bitmap_pixels: int = MAX_PIXELS,
                         names: tuple[str, str] = (CLASS_DIR, OBJECT_DIR)) -> Annotation:
    """Framed masks -> ``Annotation`` of exact bitmaps (see the module doc). Errors are
    ``ItemError`` subclasses located at ``where``."""
    try:
        cls_png, obj_png, size_hw = unframe(data)
        cls = ids = None
        if cls_png is not None:
            values, _ = decode_mask(cls_png, names[0], max_bitmap_pixels)
            cls = class_indices(values, labels, names[0])
        if obj_png is not None:
            values, depth = decode_mask(obj_png, names[1], max_bitmap_pixels)
            ids = instance_ids(values, depth)
        if cls is not None and ids is not None:
            _check_same_size(cls, ids, names)
        if cls is None and ids is None:
            if size_hw is None:
                raise AnnotationError("expected masks or an image to take the size from, got neither")
            return Annotation(size_hw, ())
        shape = (cls if cls is not None else ids).shape
        pairs = masks_to_labels(cls, ids, labels, fallback, names)
    except ItemError as err:
        raise err.located(where) from None
    items = tuple(Label(title, bm, i) for i, (title, bm) in enumerate(pairs))
    return Annotation((int(shape[0]), int(shape[1])), items)


# --- the source --------------------------------------------------------------------------------------

class VocMasksSource(SourceBase):
    """A Segmentation mask 1.1 folder or ``.zip`` on any fsspec filesystem (picklable, lazy)."""

    annotation_format = "cvat-masks"
    _transient = ("_files",)
    _local_transient = ("_zip",)  # a remote zip's checked index travels (rereading costs requests)

    def __init__(self, url: str, storage_options: dict | None = None, images: str | None = None) -> None:
        super().__init__(url, storage_options)
        self.images = images
        self.is_zip = url.lower().endswith(".zip")
        self.root = ""
        self._zip: SafeZip | None = None
        self._labels: LabelMap | None = None
        self._files: dict[str, int] | None = None

    def __repr__(self) -> str:
        return f"VocMasksSource({self._where()!r}, root={self.root!r})"

    @classmethod
    def open_source(cls, url_or_path: str, storage_options: dict | None = None, *,
                    images: str | None = None) -> VocMasksSource:
        """Open the folder or zip, check it (a hostile zip is refused here), find the root;
        ``images``: a folder holding the items' images (``<id>.<ext>``) when the archive has none."""
        url = os.fspath(url_or_path)
        if images is not None:
            images = os.fspath(images)
            images = filesystem(images, storage_options)[1] if "://" not in images else images
        src = cls(url, storage_options, images)
        with src._store_errors(f"project {url!r}", "a readable folder or .zip"):
            fs, path = src.filesystem()
            if "://" not in url and "::" not in url:
                src.url = path
            found = fs.isfile(path) if src.is_zip else fs.isdir(path)
            if not found:
                raise ProjectError(f"project: expected a Segmentation mask folder or .zip, got "
                                   f"{src._where()!r} (not found)")
            src.root = src._find_root()
        return src

    def _archive(self) -> SafeZip:
        if self._zip is None:
            fs, path = self.filesystem()
            try:
                self._zip = SafeZip(fs, path)
            except ProjectError as exc:
                raise type(exc)(f"project {self._where()!r}: {exc}") from None
        return self._zip

    def _all_files(self) -> dict[str, int]:
        """Every file under the folder or in the zip: relative path -> size."""
        if self._files is None:
            if self.is_zip:
                z = self._archive()
                self._files = {n: z.size(n) for n in z.names()}
            else:
                fs, path = self.filesystem()
                skipped: list[str] = []
                found = regular_files(fs.find(path, detail=True), len(path.rstrip("/")) + 1, skipped)
                self._files = {p: int(size or 0) for p, size in found.items()}
                self.warnings = sorted(skipped)
        return self._files

    def _find_root(self) -> str:
        files = self._all_files()
        tops = {p.split("/", 1)[0] for p in files}
        if tops & set(_MARKERS):
            return ""
        roots = sorted({p.split("/", 1)[0] for p in files
                        if "/" in p and p.split("/")[1] in _MARKERS})
        if len(roots) == 1:
            return roots[0]
        raise ProjectError(f"project {self._where()!r}: expected {', '.join(_MARKERS)} at the top "
                           f"or in a single top folder, got {len(roots)} candidate folders")

    def _rel_files(self) -> dict[str, int]:
        if not self.root:
            return self._all_files()
        cut = len(self.root) + 1
        return {p[cut:]: s for p, s in self._all_files().items() if p.startswith(self.root + "/")}

    def read_bytes(self, path: str) -> bytes:
        """Bytes of a file given by its path relative to the root (``@images/...``: to the
        ``images`` folder)."""
        if path.startswith(EXTERNAL_IMAGES + "/"):
            fs, root = filesystem(self.images, self.storage_options)
            return cat_whole(fs, f"{root.rstrip('/')}/{path[len(EXTERNAL_IMAGES) + 1:]}")
        full = f"{self.root}/{path}" if self.root else path
        if self.is_zip:
            try:
                return self._archive().read(full)
            except KeyError:
                raise FileNotFoundError(f"{path!r} is not a file of {self._where()!r}") from None
        fs, base = self.filesystem()
        return cat_whole(fs, f"{base.rstrip('/')}/{full}")

    def _read_text(self, path: str) -> bytes:
        """A labelmap or list file, refused (``ProjectError``) over ``MAX_TEXT_BYTES``."""
        size = self._rel_files().get(path) or 0
        if size > MAX_TEXT_BYTES:
            raise ProjectError(f"{path} of {self._where()!r}: expected a text file of at most "
                               f"{MAX_TEXT_BYTES} bytes, got {size}")
        return self.read_bytes(path)

    def labelmap(self) -> LabelMap:
        if self._labels is None:
            if "labelmap.txt" in self._rel_files():
                try:
                    self._labels = parse_labelmap(self._read_text("labelmap.txt"))
                except ItemError as exc:  # a corrupt zip member
                    raise ProjectError(f"labelmap.txt: {exc}") from None
            else:
                self._labels = voc_labelmap()
        return self._labels

    def read_meta(self) -> ProjectMeta:
        """Classes of the labelmap (see the module doc); ``ProjectError`` when it is invalid."""
        files = self._rel_files()
        cls = {p[len(CLASS_DIR) + 1:] for p in files if p.startswith(CLASS_DIR + "/")}
        object_only = any(p.startswith(OBJECT_DIR + "/") and p[len(OBJECT_DIR) + 1:] not in cls
                          for p in files)
        return build_meta(self.labelmap(), object_only)

    def list_items(self) -> pa.Table:
        """One row per (dataset, item); see ``ITEMS_SCHEMA`` and the module doc."""
        files = self._rel_files()
        lists = {}
        for path in sorted(files):
            head, _, name = path.rpartition("/")
            if head == LIST_DIR and name.endswith(".txt"):
                try:
                    lists[name[:-4]] = _read_list(self._read_text(path), path)
                except ItemError as exc:
                    raise ProjectError(f"{path}: {exc}") from None
        if self.images is not None:
            files = {**files, **{f"{EXTERNAL_IMAGES}/{rel}": size for rel, size in self._image_files().items()}}
        return index_voc_files(files, lists)

    def _image_files(self) -> dict[str, int]:
        """Files of the ``images`` folder: path relative to it -> size."""
        fs, path = filesystem(self.images, self.storage_options)
        with self._store_errors(f"images folder {self.images!r}", "a listable folder"):
            if not fs.isdir(path):
                raise ProjectError(f"images: expected a folder, got {self.images!r} (not found)")
            cut = len(path.rstrip("/")) + 1
            return {p[cut:]: int(info.get("size") or 0) for p, info in fs.find(path, detail=True).items()
                    if info.get("type", "file") == "file"}

    def item_annotation(self, row: dict) -> bytes:
        """Both masks of the item, framed (see ``frame``); the image's size when it has none."""
        cls = self.read_bytes(row["cls_path"]) if row.get("cls_path") else None
        obj = self.read_bytes(row["obj_path"]) if row.get("obj_path") else None
        size = None
        if cls is None and obj is None and row.get("img_path"):
            size = image_size_hw(self.read_bytes(row["img_path"]), name=row["img_path"])
        return frame(cls, obj, size)

    def parse_annotation(self, data: bytes, meta: ProjectMeta, where: str, *,
                         max_bitmap_pixels: int = MAX_PIXELS) -> Annotation:
        """``parse_voc_annotation`` with this archive's labelmap."""
        labels = self.labelmap()
        stem = posixpath.splitext(where.split("/", 1)[-1])[0]
        names = (f"{CLASS_DIR}/{stem}.png", f"{OBJECT_DIR}/{stem}.png")
        return parse_voc_annotation(data, labels, fallback_class_name(labels), where,
                                    max_bitmap_pixels=max_bitmap_pixels, names=names)
