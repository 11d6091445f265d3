"""Supervisely project reader: a project folder or a ``.tar`` of one, on any fsspec filesystem.

Layout (see shared/spec/supervisely.md section 1)::

    <root>/meta.json
    <root>/<ds>/img/<item>            <root>/<ds>/ann/<item>.json   (or the older <stem>.json)
    <root>/<ds>/datasets/<child>/...  nested dataset, full name "<ds>/<child>"

Conventions:
- Paths in ``list_items`` (``ann_path``, ``img_path``) are relative to the project root,
  '/'-separated; ``SuperviselySource.read_bytes`` takes them. They are the same for a folder
  and for a tar of it.
- The project root is the given folder (or tar root) when it holds ``meta.json``, else its
  single sub-folder holding ``meta.json`` (``<id>_<name>/`` inside an exported tar).
- A dataset is a folder holding ``ann/`` or ``img/`` files, whose path has no ``ann``, ``img``,
  ``img_info``, ``meta``, ``seg`` or ``blob`` component and does not end in ``datasets``; its
  name is that path without its ``datasets`` components (the SDK's rule).
- Pairing, per dataset: an image takes ``<item>.json``, else ``<stem>.json`` if no other image
  claimed it (images in sorted order). The SDK refuses a whole dataset when an image has no
  annotation or two images share a ``<stem>.json``; we list every item instead so that none
  vanishes: an image without annotation gets a null ``ann_path`` (only files with an image
  extension), an annotation without image gets a null ``img_path`` and the item name of the
  annotation file without ``.json``. A listed file that makes no item (a stray file in ``img/``
  or ``ann/``, a symbolic link, which is never followed) is named with the reason in the
  source's ``warnings`` (the run's log and report).
- Rows are sorted by (dataset, item) in code point order (the SDK keeps directory order).
- A ``.tar`` (or ``tar::<url>``) is read in place, never extracted, by ``maskcore.io.tarindex``:
  its headers are scanned once per process (small range reads on object stores); a remote tar's
  member index travels with the pickled source, so workers do not rescan it; every member is
  then one range read of the tar file. A tar that could not be extracted safely is refused
  whole with a ``ProjectError`` naming the member. Member names are normalised (``./`` and
  ``//`` dropped), so ``tar -C proj -cf p.tar .`` works.
- Names that are not valid UTF-8 fail their items by a printable name (``index_project_files``).
- On any fsspec filesystem (``s3://``: listing is one paginated request per 1000 files, a
  file read one GET). Options come from ``maskcore.io.storage.filesystem``; URLs in messages
  are redacted.
- Parsing (``parse_meta``, ``parse_annotation``, ``index_project_files``) is pure; only
  ``SuperviselySource`` touches a filesystem, opened lazily from picklable fields.
"""

from __future__ import annotations

import json
import os
import posixpath
import re
import time
from collections.abc import Iterable
from typing import Any

import pyarrow as pa

from ..errors import AnnotationError, ConfigError, ItemError, ProjectError, UnknownClassError
from ..io.storage import cat_whole, change_stamp, redact
from ..io.tarindex import read_member, tar_members
from ..limits import MAX_PIXELS
from ..model.annotation import Annotation, Label, ObjClass, ProjectMeta
from ..model.geometry import Polygon
from .base import SourceBase, regular_files
from .sly_geometry import int_rings, parse_geometry
from .values import canvas_size_hw, is_utf8

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".mpo", ".bmp", ".png", ".webp", ".tiff", ".tif",
                              ".nrrd", ".jfif"})
"""Extensions (lower case) the SDK takes as images; other files in ``img/`` need an annotation."""
_RESERVED_DIRS = frozenset({"ann", "img", "img_info", "meta", "seg", "blob"})
_COLOR_RE = re.compile(r"#[0-9A-Fa-f]{6}")

ITEMS_SCHEMA = pa.schema([
    ("dataset", pa.string()), ("item", pa.string()),
    ("ann_path", pa.string()), ("img_path", pa.string()),
    ("ann_bytes", pa.int64()), ("img_bytes", pa.int64()),
])
STAMP_FIELDS = [("ann_stamp", pa.string()), ("img_stamp", pa.string())]
"""Columns of ``list_items``: paths relative to the project root, sizes in bytes; with
``stamps=True`` then ``STAMP_FIELDS``, the store's change stamps (``io.storage.change_stamp``;
null when the store gives none to trust). A listing that
met unusable names adds a ``problem`` column (see ``index_project_files``)."""


# --- meta.json ---------------------------------------------------------------------------------

def _parse_class(obj: Any, i: int) -> ObjClass:
    where = f"meta.json classes[{i}]"
    if not isinstance(obj, dict):
        raise ProjectError(f"{where}: expected an object, got {type(obj).__name__}")
    title, shape, color = obj.get("title"), obj.get("shape"), obj.get("color")
    if not isinstance(title, str) or not title:
        raise ProjectError(f"{where}: expected a non-empty string 'title', got {title!r}")
    if not isinstance(shape, str) or not shape:
        raise ProjectError(f"{where} ({title!r}): expected a string 'shape', got {shape!r}")
    if not isinstance(color, str) or not _COLOR_RE.fullmatch(color):
        raise ProjectError(f"{where} ({title!r}): expected 'color' as '#RRGGBB', got {color!r}")
    config = obj.get("geometry_config")
    config = {} if config is None else config
    if not isinstance(config, dict):
        raise ProjectError(f"{where} ({title!r}): expected 'geometry_config' to be an object, "
                           f"got {type(config).__name__}")
    if shape in ("graph", "any"):
        _check_template(config, f"{where} ({title!r}) geometry_config")
    rgb = tuple(int(color[k:k + 2], 16) for k in (1, 3, 5))
    return ObjClass(title, shape, rgb, config)


def _check_template(config: dict, where: str) -> None:
    """A graph template as the colour masks read it: ``nodes`` {id: {...}}, ``edges`` [{src, dst}]."""
    nodes, edges = config.get("nodes") or {}, config.get("edges") or []
    if not isinstance(nodes, dict) or not all(isinstance(n, dict) for n in nodes.values()):
        raise ProjectError(f"{where}.nodes: expected an object of node objects, got {nodes!r:.80}")
    if not isinstance(edges, list):
        raise ProjectError(f"{where}.edges: expected a list, got {edges!r:.80}")
    for i, e in enumerate(edges):
        if not (isinstance(e, dict) and isinstance(e.get("src"), str) and isinstance(e.get("dst"), str)):
            raise ProjectError(f"{where}.edges[{i}]: expected {{src, dst}} node ids, got {e!r:.80}")


def parse_meta(obj: Any) -> ProjectMeta:
    """meta.json (decoded JSON, or its bytes/text) -> ``ProjectMeta``, classes in file order.

    Raises ``ProjectError`` on invalid JSON, a non-object, a bad class or a repeated title.
    A class ``shape`` is not checked here: an unusable shape fails the objects that use it.
    """
    if isinstance(obj, (bytes, bytearray, str)):
        try:
            obj = json.loads(obj)
        except (ValueError, RecursionError) as exc:  # RecursionError: absurdly deep nesting
            raise ProjectError(f"meta.json: expected JSON, got a parse error: {exc}") from None
    if not isinstance(obj, dict):
        raise ProjectError(f"meta.json: expected a JSON object, got {type(obj).__name__}")
    raw_classes = obj.get("classes", [])
    if not isinstance(raw_classes, list):
        raise ProjectError(f"meta.json: expected 'classes' to be a list, "
                           f"got {type(raw_classes).__name__}")
    classes = tuple(_parse_class(c, i) for i, c in enumerate(raw_classes))
    seen: set[str] = set()
    for c in classes:
        if c.title in seen:
            raise ProjectError(f"meta.json: expected unique class titles, got {c.title!r} twice")
        seen.add(c.title)
    return ProjectMeta(classes, obj)


# --- ann/<item>.json ---------------------------------------------------------------------------

def _parse_size(size: Any, where: str) -> tuple[int, int]:
    if not isinstance(size, dict):
        raise AnnotationError(f"expected 'size' as {{height, width}}, got {size!r:.60}",
                              where=where)
    return canvas_size_hw(size, "size", where)


def _parse_label(obj: Any, classes: dict[str, ObjClass], max_bitmap_pixels: int,
                 index: int) -> Label:
    if not isinstance(obj, dict):
        raise AnnotationError(f"expected an object, got {type(obj).__name__}")
    title = obj.get("classTitle")
    cls = classes.get(title) if isinstance(title, str) else None
    if cls is None:
        raise UnknownClassError(f"classTitle: expected one of the {len(classes)} classes of "
                                f"meta.json, got {title!r}")
    shape = cls.shape
    if shape == "any":
        shape = obj.get("geometryType", obj.get("shape"))
        if not isinstance(shape, str):
            raise AnnotationError(f"geometryType: expected a geometry name (class {title!r} has "
                                  f"shape 'any'), got {shape!r:.60}")
    template = cls.geometry_config.get("nodes") if shape == "graph" else None
    geometry = parse_geometry(shape, obj, graph_template=template if isinstance(template, dict)
                              else None, max_bitmap_pixels=max_bitmap_pixels)
    tags = obj.get("tags") or []
    if not isinstance(tags, list):
        raise AnnotationError(f"tags: expected a list, got {type(tags).__name__}")
    return Label(title, geometry, index, tuple(tags))


def _plain_polygons(objects: list, classes: dict[str, ObjClass]) -> dict[int, Any]:
    """``{i: exterior}`` for the objects that are plain polygons (an object of a polygon class,
    ``points`` with an ``exterior`` of integer pairs and no ``interior`` rings, ``tags`` a list or
    absent): their exteriors parsed together (``int_rings``), as ``_parse_label`` parses them one
    by one. Empty when any of them is not plain: every object then goes through ``_parse_label``,
    which says what is wrong where."""
    found, rings = [], []
    for i, o in enumerate(objects):
        title = o.get("classTitle") if type(o) is dict else None
        cls = classes.get(title) if type(title) is str else None
        if cls is None or cls.shape != "polygon" and not (
                cls.shape == "any" and o.get("geometryType", o.get("shape")) == "polygon"):
            continue
        points = o.get("points")
        if (type(points) is not dict or type(points.get("exterior")) is not list or points.get("interior", [])
                != [] or type(o.get("tags") or []) is not list):
            continue
        found.append(i)
        rings.append(points["exterior"])
    parsed = int_rings(rings) if len(rings) > 1 else None
    return dict(zip(found, parsed)) if parsed is not None else {}


def parse_annotation(obj: Any, meta: ProjectMeta, where: str, *,
                     max_bitmap_pixels: int = MAX_PIXELS) -> Annotation:
    """One annotation (decoded JSON, or its bytes/text) -> ``Annotation``, labels in file order.

    Each object is decoded with its class shape (``geometryType`` only when the shape is
    ``any``). Errors are ``AnnotationError`` (``UnknownClassError``, ``LimitError`` for
    oversize bitmaps) located at ``where`` or ``<where>/object <i>``. ``Annotation.raw`` keeps
    the top-level fields except ``objects``.
    """
    if isinstance(obj, (bytes, bytearray, str)):
        try:
            obj = json.loads(obj)
        except (ValueError, RecursionError) as exc:  # RecursionError: absurdly deep nesting
            raise AnnotationError(f"expected JSON, got a parse error: {exc}", where=where) from None
    if not isinstance(obj, dict):
        raise AnnotationError(f"expected a JSON object, got {type(obj).__name__}", where=where)
    size_hw = _parse_size(obj.get("size"), where)
    objects = obj.get("objects")
    if not isinstance(objects, list):
        raise AnnotationError(f"expected 'objects' to be a list, got {objects!r:.60}", where=where)
    tags = obj.get("tags") or []
    if not isinstance(tags, list):
        raise AnnotationError(f"expected 'tags' to be a list, got {type(tags).__name__}",
                              where=where)
    classes = meta.class_by_title()
    labels = []
    plain = _plain_polygons(objects, classes)
    for i, o in enumerate(objects):
        try:
            if i in plain:
                labels.append(Label(o["classTitle"], Polygon(plain[i]), i, tuple(o.get("tags") or ())))
            else:
                labels.append(_parse_label(o, classes, max_bitmap_pixels, i))
        except ItemError as err:
            raise err.located(f"{where}/object {i}") from None
    raw = {k: v for k, v in obj.items() if k != "objects"}
    return Annotation(size_hw, tuple(labels), tuple(tags), raw)


# --- listing -----------------------------------------------------------------------------------

def _dataset_name(folder: str) -> str | None:
    """Dataset name of the folder holding ``ann/`` and ``img/``, or None if it is not one."""
    parts = folder.split("/")
    if not folder or parts[-1] == "datasets" or any(p in _RESERVED_DIRS for p in parts):
        return None
    return "/".join(p for p in parts if p != "datasets")


def _pair_dataset(anns: dict, imgs: dict, skipped: list[str] | None = None) -> list[tuple[str, Any, Any]]:
    """(item, ann entry or None, img entry or None) for one dataset folder; a file of ``img/``
    that is neither an image nor annotated is named in ``skipped``."""
    rows, unmatched, claimed = [], [], set()
    for name in sorted(imgs):
        ann = name + ".json"
        if ann in anns:
            claimed.add(ann)
            rows.append((name, anns[ann], imgs[name]))
        else:
            unmatched.append(name)
    for name in unmatched:
        stem, ext = posixpath.splitext(name)
        ann = stem + ".json"
        if ann in anns and ann not in claimed:
            claimed.add(ann)
            rows.append((name, anns[ann], imgs[name]))
        elif ext.lower() in IMAGE_EXTENSIONS:
            rows.append((name, None, imgs[name]))
        elif skipped is not None:
            skipped.append(f"{imgs[name][0]}: not exported: not an image extension ({ext or 'none'}) and "
                           f"no annotation ann/{name}.json")
    rows.extend((ann[:-5], anns[ann], None) for ann in anns if ann not in claimed)
    return rows


def _printable(text: str) -> str:
    """A name holding undecodable bytes (``surrogateescape``) as valid text: ``caf\\xe9.jpg``."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _named_rows(rows: list) -> tuple[list, list]:
    """Rows whose names are not valid UTF-8 get printable names (unique) and a problem."""
    bad = [r for r in rows if not (is_utf8(r[0]) and is_utf8(r[1]))]
    if not bad:
        return rows, [None] * len(rows)
    taken = {(r[0], r[1]) for r in rows if is_utf8(r[0]) and is_utf8(r[1])}
    out, problems = [], []
    for r in rows:
        if is_utf8(r[0]) and is_utf8(r[1]):
            out.append(r)
            problems.append(None)
            continue
        key, n = (_printable(r[0]), _printable(r[1])), 1
        while key in taken:
            n += 1
            key = (key[0], f"{_printable(r[1])}~{n}")
        taken.add(key)
        files = ", ".join(_printable(e[0]) for e in r[2:] if e)
        out.append((key[0], key[1], None, None))
        problems.append(f"file name is not valid UTF-8 ({files}); rename it to export the item")
    return out, problems


def index_project_files(files: Iterable[tuple], skipped: list[str] | None = None) -> pa.Table:
    """(path relative to the project root, size[, change stamp]) of every file -> the item table.

    Pure: see the module docstring for the dataset and pairing rules. Raises ``ProjectError``
    when two folders give the same dataset name (``a/datasets/b`` and ``a/b``).
    A dataset or item whose name is not valid UTF-8 (undecodable bytes kept as surrogates by
    ``surrogateescape``) cannot travel in the table: it is listed under a printable name
    (``caf\\xe9.jpg``) with null paths, and the table gets a ``problem`` column (null for the
    other rows) giving the reason, so the item fails by name instead of vanishing.
    A file of an ``img/`` or ``ann/`` folder that makes no item (not an image and not annotated,
    not a ``.json`` in ``ann/``, in a folder that is no dataset) is named with the reason in
    ``skipped``.
    """
    folders: dict[str, tuple[str | None, dict, dict]] = {}  # folder -> (dataset, anns, imgs)
    stamped = False
    for rel, size, *stamp in files:
        stamped = stamped or bool(stamp)
        head, _, name = rel.rpartition("/")
        folder, _, kind = head.rpartition("/")
        if kind == "img" or (kind == "ann" and name.endswith(".json")):
            entry = folders.get(folder)
            if entry is None:
                entry = folders[folder] = (_dataset_name(folder), {}, {})
            entry[1 if kind == "ann" else 2][name] = (rel, size, stamp[0] if stamp else None)
        elif skipped is None:
            continue
        elif kind == "ann":
            skipped.append(f"{rel}: not exported: an annotation must be a .json file")
        elif {"ann", "img"} & set(folder.split("/")):
            skipped.append(f"{rel}: not exported: not directly in a dataset's img/ or ann/ folder")
    names: dict[str, str] = {}
    for folder, (dataset, _, _) in folders.items():
        if dataset and names.setdefault(dataset, folder) != folder:
            first, second = sorted((names[dataset], folder))
            raise ProjectError(f"dataset name {_printable(dataset)!r}: expected one folder, got "
                               f"two: {_printable(first)!r} and {_printable(second)!r}")
    rows = []
    for folder, (dataset, anns, imgs) in folders.items():
        if dataset:
            rows.extend((dataset, *row) for row in _pair_dataset(anns, imgs, skipped))
        elif skipped is not None:
            skipped.extend(f"{rel}: not exported: {folder!r} is not a dataset folder (a name such as "
                           f"img, ann, meta or datasets in its path)" for rel, *_ in [*anns.values(), *imgs.values()])
    rows, problems = _named_rows(rows)
    order = sorted(range(len(rows)), key=lambda i: (rows[i][0], rows[i][1]))
    rows = [rows[i] for i in order]
    table = pa.Table.from_pydict({
        "dataset": [r[0] for r in rows], "item": [r[1] for r in rows],
        "ann_path": [r[2][0] if r[2] else None for r in rows],
        "img_path": [r[3][0] if r[3] else None for r in rows],
        "ann_bytes": [r[2][1] if r[2] else None for r in rows],
        "img_bytes": [r[3][1] if r[3] else None for r in rows],
        "ann_stamp": [r[2][2] if r[2] else None for r in rows],
        "img_stamp": [r[3][2] if r[3] else None for r in rows],
    }, schema=pa.schema([*ITEMS_SCHEMA, *STAMP_FIELDS]))
    if not stamped:
        table = table.drop_columns([name for name, _ in STAMP_FIELDS])
    if any(p is not None for p in problems):
        table = table.append_column("problem", pa.array([problems[i] for i in order], pa.string()))
    return table


# --- the source --------------------------------------------------------------------------------

def _join(root: str, rel: str) -> str:
    return f"{root.rstrip('/')}/{rel}" if root else rel


class SuperviselySource(SourceBase):
    """A Supervisely project on an fsspec filesystem, as a folder or a tar of one.

    Picklable: holds the URL, storage options and resolved root, never an open handle; the
    filesystem is reopened lazily where the object is used, e.g. on a Dask worker. A tar is
    read in place: its headers are scanned once per process (a remote tar's index is pickled
    with the source instead), then each member is one range read of the tar file
    (thread-safe, no extraction).
    """

    annotation_format = "supervisely"
    _local_transient = ("_members",)  # a remote tar's index travels (rescanning costs requests)

    def __init__(self, url: str, root: str = "", *, is_tar: bool = False,
                 storage_options: dict | None = None, project_name: str = "",
                 project_id: int | None = None) -> None:
        super().__init__(url, storage_options)
        self.root, self.is_tar = root, is_tar
        self.project_name, self.project_id = project_name, project_id
        self._members: dict[str, tuple[int, int]] | None = None

    def __repr__(self) -> str:
        return f"SuperviselySource({self._where()!r}, root={self.root!r}, is_tar={self.is_tar})"

    @classmethod
    def from_path(cls, path_or_url: str, storage_options: dict | None = None, **options
                  ) -> SuperviselySource:
        """Open a project folder, a ``.tar`` of one, or ``tar::<url>``; find its root.

        The root is the folder (tar root) holding ``meta.json``, or its single sub-folder
        that does. A root folder named ``<digits>_<name>`` gives ``project_id`` and
        ``project_name``; otherwise the name is the folder's (the tar's, without ``.tar``).
        """
        if options:
            raise ConfigError(f"reader 'supervisely': unknown option(s) {sorted(options)}")
        url = os.fspath(path_or_url)
        is_tar = url.startswith("tar::") or url.lower().endswith(".tar")
        src = cls(url.removeprefix("tar::"), is_tar=is_tar, storage_options=storage_options)
        with src._store_errors(f"project {url!r}", "a readable folder or .tar"):
            fs, path = src.filesystem()
            if "://" not in src.url and "::" not in src.url:
                src.url = path  # a local path, made absolute: workers may run in another folder
            found = fs.isfile(path) if is_tar else fs.isdir(path)
            if found:
                src.root = src._find_root()
        if not found:
            raise ProjectError(f"project: expected a folder or a .tar, got "
                               f"{redact(url, storage_options)!r} (not found)")
        folder = posixpath.basename(src.root) or posixpath.basename(path.rstrip("/"))
        if is_tar and not src.root and folder.lower().endswith(".tar"):
            folder = folder[:-4]
        match = re.fullmatch(r"(\d+)_(.+)", folder)
        src.project_id = int(match[1]) if match else None
        src.project_name = match[2] if match else folder
        return src

    open_source = from_path  # the reader protocol's one required entry point

    def _tar_index(self) -> dict[str, tuple[int, int]]:
        if self._members is None:
            try:
                self._members = tar_members(*self.filesystem())
            except ProjectError as exc:
                raise ProjectError(f"project {self._where()!r}: {exc}") from None
        return self._members

    def _tar_stamp(self) -> str | None:
        """The tar file's change stamp (``io.storage.change_stamp``), taken before and after its member
        index is looked up (``tarindex.tar_members``: scanned once per version of the file), so the
        index is that of the stamped version: each member's stamp is this plus the member's offset.
        None (every member hashed) when the store gives no stamp to trust or the file changed
        meanwhile."""
        fs, path = self.filesystem()
        listed_at = time.time()
        before = change_stamp(fs.info(path), listed_at)
        self._members = None
        self._tar_index()
        return before if before is not None and change_stamp(fs.info(path), listed_at) == before else None

    def _folder(self) -> str:
        """Path of the project root folder on the filesystem (folder sources)."""
        base = self.filesystem()[1]
        return _join(base, self.root) if self.root else base

    def _find_root(self) -> str:
        """Project root relative to the folder or tar: "" or a single top folder."""
        if self.is_tar:
            names = self._tar_index()
            if "meta.json" in names:
                return ""
            roots = sorted(n[:-10] for n in names if n.endswith("/meta.json") and n.count("/") == 1)
        else:
            fs, path = self.filesystem()
            if fs.isfile(_join(path, "meta.json")):
                return ""
            subdirs = [e["name"].rstrip("/") for e in fs.ls(path, detail=True)
                       if e.get("type") == "directory"]
            roots = sorted(posixpath.basename(d) for d in subdirs
                           if fs.isfile(_join(d, "meta.json")))
        if len(roots) == 1:
            return roots[0]
        raise ProjectError(f"project {self._where()!r}: expected meta.json at the top or in a single "
                           f"top folder, got {len(roots)} candidate folders "
                           f"({', '.join(roots) or 'none'})")

    def read_bytes(self, path: str) -> bytes:
        """Bytes of a file given by its path relative to the project root."""
        fs, base = self.filesystem()
        if not self.is_tar:
            return cat_whole(fs, _join(self._folder(), path))
        try:
            member = self._tar_index()[_join(self.root, path)]
        except KeyError:
            raise FileNotFoundError(f"{path!r} is not a file of {self._where()!r}") from None
        return read_member(fs, base, member)

    def read_meta(self) -> ProjectMeta:
        """Parse ``meta.json``; ``ProjectError`` when it is missing or invalid."""
        # OSError: a folder named meta.json, no permission, a store error
        with self._store_errors(f"meta.json of {self._where()!r}", "a readable file", OSError):
            try:
                data = self.read_bytes("meta.json")
            except FileNotFoundError:
                raise ProjectError(f"meta.json: expected at the root {self.root!r} of "
                                   f"{self._where()!r}, got no such file") from None
        return parse_meta(data)

    lists_stamps = True
    """``list_items(stamps=True)`` adds each file's change stamp (``STAMP_FIELDS``)."""

    def list_items(self, *, stamps: bool = False) -> pa.Table:
        """Every item of every dataset (see ``ITEMS_SCHEMA``), sorted by (dataset, item).

        One recursive listing (``fs.find``) for a folder; the member index for a tar (stamps: the
        tar file's own plus each member's offset, so any change to the tar hashes every member).
        ``ProjectError`` when the store cannot list the project."""
        with self._store_errors(f"project {self._where()!r}", "a listable project", OSError):
            return self._list_items(stamps)

    def _list_items(self, stamps: bool = False) -> pa.Table:
        skipped: list[str] = []
        if self.is_tar:
            prefix = _join(self.root, "") if self.root else ""
            tar_stamp = self._tar_stamp() if stamps else None  # taken around a fresh member index
            files = ((n[len(prefix):], size, *((f"{tar_stamp};member={offset}",) if tar_stamp else ()))
                     for n, (offset, size) in self._tar_index().items() if n.startswith(prefix))
            table = index_project_files(files, skipped)
        else:
            fs, _ = self.filesystem()
            root = self._folder()
            cut = len(root.rstrip("/")) + 1
            listed_at = time.time()
            found = fs.find(root, detail=True)
            sizes = regular_files(found, cut, skipped)
            if stamps:
                stamp_of = {p[cut:]: change_stamp(info, listed_at) for p, info in found.items()}
                table = index_project_files(((rel, size, stamp_of[rel]) for rel, size in sizes.items()), skipped)
            else:
                table = index_project_files(sizes.items(), skipped)
        self.warnings = sorted(skipped)  # every listed file that makes no item, with why
        return table

    def item_annotation(self, row: dict) -> bytes:
        """The bytes of the item's ``ann/<item>.json``."""
        return self.read_bytes(row["ann_path"])

    def parse_annotation(self, data: bytes, meta: ProjectMeta, where: str, *,
                         max_bitmap_pixels: int = MAX_PIXELS) -> Annotation:
        """``parse_annotation`` of this module."""
        return parse_annotation(data, meta, where, max_bitmap_pixels=max_bitmap_pixels)

    def read_annotation(self, ann_path: str, meta: ProjectMeta, where: str, **kwargs) -> Annotation:
        """Read and parse one annotation file (``parse_annotation`` on its bytes)."""
        return parse_annotation(self.read_bytes(ann_path), meta, where, **kwargs)
