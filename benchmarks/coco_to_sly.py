"""Convert a COCO polygon dataset into a Supervisely project (benchmark input only).

Each category becomes a class of shape "any" (duplicate names get ``_<id>``); each polygon ring
becomes a polygon object (floats kept: the reader floors them; ``--integer`` rounds them as most
converters do), each RLE mask (iscrowd,
uncompressed ``counts`` list, column-major) a bitmap object, an annotation with only a bbox a
rectangle. Images are copied.
Usage: python benchmarks/coco_to_sly.py COCO_JSON IMAGE_DIR DST [--limit N]
"""

from __future__ import annotations

import argparse
import base64
import colorsys
import json
import shutil
import zlib
from pathlib import Path

import numpy as np

from maskcore.codec.png import encode_png


def _rle_bitmap(rle: dict) -> dict | None:
    h, w = rle["size"]
    counts = np.asarray(rle["counts"], dtype=np.int64)
    values = np.arange(len(counts)) % 2
    mask = np.repeat(values.astype(np.uint8), counts)[: h * w].reshape(w, h).T
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    if rows.size == 0:
        return None
    crop = mask[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1] * 255
    data = base64.b64encode(zlib.compress(encode_png(crop))).decode("ascii")
    return {"geometryType": "bitmap", "bitmap": {"origin": [int(cols[0]), int(rows[0])], "data": data}}


def _objects(a: dict, title: str, integer: bool = False) -> list[dict]:
    seg = a.get("segmentation")
    base = {"classTitle": title, "tags": []}
    if isinstance(seg, dict) and isinstance(seg.get("counts"), list):
        bitmap = _rle_bitmap(seg)
        return [{**base, **bitmap}] if bitmap else []
    if isinstance(seg, list) and seg:
        out = []
        for ring in seg:
            pts = [[ring[i], ring[i + 1]] for i in range(0, len(ring) - 1, 2)]
            if integer:
                pts = [[round(x), round(y)] for x, y in pts]
            if len(pts) >= 3:
                out.append({**base, "geometryType": "polygon", "points": {"exterior": pts, "interior": []}})
        return out
    x, y, bw, bh = a["bbox"]
    return [{**base, "geometryType": "rectangle", "points": {"exterior": [[x, y], [x + bw, y + bh]], "interior": []}}]


def _colour(i: int) -> str:
    r, g, b = colorsys.hsv_to_rgb((i * 0.618034) % 1.0, 0.75, 0.95)
    return f"#{int(r * 255):02X}{int(g * 255):02X}{int(b * 255):02X}"


def convert(coco_json: Path, image_dir: Path, dst: Path, limit: int | None = None, integer: bool = False) -> Path:
    coco = json.loads(coco_json.read_text())
    titles, seen = {}, set()
    for cat in sorted(coco["categories"], key=lambda c: c["id"]):
        title = cat["name"] if cat["name"] not in seen else f"{cat['name']}_{cat['id']}"
        seen.add(title)
        titles[cat["id"]] = title
    meta = {"classes": [{"title": t, "shape": "any", "color": _colour(i)}
                        for i, t in enumerate(titles.values())], "tags": [], "projectType": "images"}
    (dst / "ds" / "ann").mkdir(parents=True, exist_ok=True)
    (dst / "ds" / "img").mkdir(parents=True, exist_ok=True)
    (dst / "meta.json").write_text(json.dumps(meta, indent=4))
    by_image: dict[int, list] = {}
    for a in coco["annotations"]:
        by_image.setdefault(a["image_id"], []).append(a)
    images = sorted(coco["images"], key=lambda i: i["file_name"])[:limit]
    for info in images:
        if not (image_dir / info["file_name"]).exists():
            continue
        objects = []
        for a in by_image.get(info["id"], []):
            objects.extend(_objects(a, titles[a["category_id"]], integer))
        ann = {"size": {"height": info["height"], "width": info["width"]}, "tags": [],
               "description": "", "objects": objects}
        (dst / "ds" / "ann" / f"{info['file_name']}.json").write_text(json.dumps(ann))
        shutil.copyfile(image_dir / info["file_name"], dst / "ds" / "img" / info["file_name"])
    return dst


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("coco_json", type=Path)
    p.add_argument("image_dir", type=Path)
    p.add_argument("dst", type=Path)
    p.add_argument("--limit", type=int)
    p.add_argument("--integer", action="store_true",
                   help="round polygon vertices to integers, as most converters write them (vertices "
                        "dragged to the edge then sit at x == width: the SDK's load-time crop applies)")
    a = p.parse_args()
    print(convert(a.coco_json, a.image_dir, a.dst, a.limit, a.integer))
