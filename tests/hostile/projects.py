"""Tiny Supervisely projects built in code for the hostile-input suite (no files in the repo).

Conventions: annotation points are ``[x, y]`` = ``[col, row]``; canvases are a few pixels wide
so that a whole project exports in well under a second. ``write_project`` writes raw bytes, so a
test can put anything at all in an annotation or image file.
"""

from __future__ import annotations

import base64
import json
import os
import zlib
from pathlib import Path

import numpy as np
import pytest

from maskcore.codec.png import encode_png

SKELETON = {"nodes": {"a": {"label": "a", "loc": [0, 0], "color": "#FF0000"},
                      "b": {"label": "b", "loc": [3, 3]}},
            "edges": [{"src": "a", "dst": "b", "color": "#00FF00"}]}

CLASSES = [
    {"title": "poly", "shape": "polygon", "color": "#DC2828"},
    {"title": "rect", "shape": "rectangle", "color": "#28C83C"},
    {"title": "bmp", "shape": "bitmap", "color": "#1E50E6"},
    {"title": "line", "shape": "line", "color": "#C81EC8"},
    {"title": "pt", "shape": "point", "color": "#14DCDC"},
    {"title": "skel", "shape": "graph", "color": "#FA8200", "geometry_config": SKELETON},
    {"title": "anything", "shape": "any", "color": "#808000"},
]
META = {"classes": CLASSES, "tags": [], "projectType": "images"}

long = pytest.mark.skipif(not os.environ.get("MASKCORE_FUZZ_LONG"),
                          reason="long fuzzing run: set MASKCORE_FUZZ_LONG=1")
"""Marks the many-example variants of the property tests (run by hand, not in CI)."""


def rgb_png(h: int, w: int, seed: int = 0) -> bytes:
    """A small RGB PNG image (h x w) with seeded pixels."""
    rng = np.random.default_rng(seed)
    return encode_png(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))


def bitmap_data(mask: np.ndarray) -> str:
    """``bitmap.data`` as Supervisely writes it: base64 of zlib(PNG of the 0/1 mask)."""
    png = encode_png(mask.astype(np.uint8) * 255)
    return base64.b64encode(zlib.compress(png)).decode("ascii")


def png_header_only(width: int, height: int) -> bytes:
    """A PNG signature + IHDR declaring ``width`` x ``height`` (a decompression-bomb header)."""
    import struct
    body = b"IHDR" + struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + body
            + struct.pack(">I", zlib.crc32(body)))


def ann(h: int, w: int, objects: list) -> dict:
    return {"description": "", "tags": [], "size": {"height": h, "width": w}, "objects": objects}


def polygon(title: str = "poly", pts=((1, 1), (8, 1), (5, 7))) -> dict:
    return {"classTitle": title, "tags": [], "points": {"exterior": [list(p) for p in pts],
                                                       "interior": []}}


def rectangle(title: str = "rect", x0=0, y0=0, x1=3, y1=2) -> dict:
    return {"classTitle": title, "tags": [], "points": {"exterior": [[x0, y0], [x1, y1]],
                                                       "interior": []}}


def good_annotation(seed: int, h: int = 10, w: int = 12) -> dict:
    """A valid annotation holding several geometry types (machine, colour and instance masks)."""
    rng = np.random.default_rng(seed)
    mask = rng.integers(0, 2, (4, 5)).astype(bool)
    mask[0, 0] = True
    return ann(h, w, [
        polygon(pts=[(int(rng.integers(0, w)), int(rng.integers(0, h))) for _ in range(4)]),
        rectangle(x0=int(rng.integers(0, 4)), y0=1, x1=int(rng.integers(4, w)), y1=h - 2),
        {"classTitle": "bmp", "tags": [], "bitmap": {"origin": [2, 3], "data": bitmap_data(mask)}},
        {"classTitle": "line", "tags": [], "points": {"exterior": [[0, 0], [w - 1, h - 1]],
                                                      "interior": []}},
        {"classTitle": "pt", "tags": [], "points": {"exterior": [[4, 4]], "interior": []}},
        {"classTitle": "skel", "tags": [], "nodes": {"a": {"loc": [1, 1]}, "b": {"loc": [6, 5]}}},
        polygon(),
    ])


def to_bytes(value) -> bytes:
    if isinstance(value, bytes):
        return value
    return json.dumps(value).encode("utf-8")


def write_project(root: Path, items: dict, meta=META) -> Path:
    """``items``: {(dataset, item name): (annotation or None, image bytes or None)}.

    An annotation is a JSON value or raw bytes; ``None`` leaves that file out. Names are ``str``
    or ``bytes`` (bytes for names that are not valid UTF-8). Nested datasets are ``top/child``.
    """
    root.mkdir(parents=True, exist_ok=True)
    (root / "meta.json").write_bytes(to_bytes(meta))
    for (dataset, name), (annotation, image) in items.items():
        folder = os.fsencode(root) + b"/" + b"/datasets/".join(
            os.fsencode(p) for p in dataset.split("/"))
        name_b = os.fsencode(name)
        os.makedirs(folder + b"/ann", exist_ok=True)
        os.makedirs(folder + b"/img", exist_ok=True)
        if annotation is not None:
            with open(folder + b"/ann/" + name_b + b".json", "wb") as f:
                f.write(to_bytes(annotation))
        if image is not None:
            with open(folder + b"/img/" + name_b, "wb") as f:
                f.write(image)
    return root


def files_under(root: Path) -> set[str]:
    """Every file or link below ``root`` (relative, '/'-separated), state folder excluded."""
    out = set()
    for dirpath, dirnames, filenames in os.walk(root):
        for n in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            rel = os.path.relpath(os.path.join(dirpath, n), root)
            if rel.split(os.sep)[0] != ".maskcore-meta":
                out.add(rel.replace(os.sep, "/"))
    return out


def snapshot(root: Path) -> dict[str, int]:
    """{path: size} of every file below ``root``, for "nothing else was written" checks."""
    out = {}
    for dirpath, _, filenames in os.walk(root):
        for n in filenames:
            p = os.path.join(dirpath, n)
            out[p] = os.lstat(p).st_size
    return out


# --- the readers added for COCO, CVAT XML and Segmentation mask 1.1 ------------------------------

DATA = Path(__file__).resolve().parents[1] / "data"


def coco_doc(images: list[dict], annotations: list[dict], names=("cat", "dog")) -> dict:
    """A COCO instances document with categories 1..n named ``names``."""
    return {"images": images, "annotations": annotations,
            "categories": [{"id": i + 1, "name": n} for i, n in enumerate(names)]}


def small_cvat_xml(n_images: int = 2, max_mask_pixels: int = 40_000) -> bytes:
    """The real ``cvat_urban_scene`` annotations.xml cut small for mutation: its ``<meta>``, the
    ``n_images`` images with the fewest bytes, each keeping its boxes, its tag and the masks of
    at most ``max_mask_pixels``, plus one synthetic image with every other shape kind."""
    import xml.etree.ElementTree as ET
    root = ET.parse(DATA / "cvat_urban_scene" / "annotations.xml").getroot()
    out = ET.Element("annotations")
    out.append(root.find("meta"))
    images = sorted(root.findall("image"), key=lambda im: len(ET.tostring(im)))[:n_images]
    for im in images:
        for child in list(im):
            if child.tag == "mask" and int(child.get("width")) * int(child.get("height")) > max_mask_pixels:
                im.remove(child)
        out.append(im)
    extra = ET.SubElement(out, "image", id="99", name="synthetic.png", width="40", height="30",
                          subset="train")
    label = images[0].find("box").get("label")
    for tag, attrs in [
            ("polygon", {"points": "1.5,2;30,4.25;12,25", "z_order": "2", "group_id": "1"}),
            ("polyline", {"points": "0,0;39,29"}), ("points", {"points": "3,3;5,7"}),
            ("ellipse", {"cx": "20", "cy": "15", "rx": "6.5", "ry": "3", "rotation": "30"}),
            ("box", {"xtl": "2", "ytl": "3", "xbr": "9", "ybr": "8", "rotation": "45"}),
            ("mask", {"left": "4", "top": "5", "width": "3", "height": "2", "rle": "1, 4, 1"})]:
        shape = ET.SubElement(extra, tag, label=label, **attrs)
        ET.SubElement(shape, "attribute", name="occluded").text = "no"
    return ET.tostring(out, encoding="utf-8", xml_declaration=True)


def voc_masks_files(root: Path | None = None) -> dict[str, bytes]:
    """The real ``voc_labelme`` Segmentation mask data as {relative path: bytes} (no labelmap:
    the 21 VOC labels apply)."""
    root = root or DATA / "voc_labelme"
    return {f"{d}/{p.name}": p.read_bytes() for d in ("SegmentationClass", "SegmentationObject",
                                                      "JPEGImages")
            for p in sorted((root / d).iterdir())}


def zip_of(members: dict[str, bytes], compress: bool = True) -> bytes:
    """A plain zip of ``members`` (deflated unless ``compress`` is false)."""
    import io
    import zipfile
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED) as z:
        for name, data in members.items():
            info = zipfile.ZipInfo(name, (1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
            info.external_attr = 0o100644 << 16
            z.writestr(info, data)
    return buf.getvalue()


def raw_zip(entries: list[dict]) -> bytes:
    """A zip written byte by byte, for what ``zipfile`` will not write. Entry keys: ``name``
    (bytes), ``data`` (bytes as stored), ``method`` (0), ``file_size`` (len(data)), ``attr``
    (external attributes, default a regular file), ``offset`` (make the central record point
    at another entry's local header: overlapping entries)."""
    import struct
    out, central = bytearray(), bytearray()
    for e in entries:
        data, name = e["data"], e["name"]
        crc, size = zlib.crc32(e.get("plain", data)), e.get("file_size", len(data))
        offset = len(out)
        out += struct.pack("<4sHHHHHIIIHH", b"PK\x03\x04", 20, 0, e.get("method", 0), 0, 0x21,
                           crc, len(data), size, len(name), 0) + name + data
        central += struct.pack("<4sHHHHHHIIIHHHHHII", b"PK\x01\x02", (3 << 8) | 20, 20, 0,
                               e.get("method", 0), 0, 0x21, crc, len(data), size, len(name), 0, 0,
                               0, 0, e.get("attr", 0o100644 << 16), e.get("offset", offset)) + name
    n = len(entries)
    return bytes(out + central + struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, n, n, len(central),
                                             len(out), 0))
