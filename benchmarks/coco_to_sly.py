"""Convert a COCO polygon dataset into a Supervisely project (benchmark input only).

Each category becomes a polygon class (duplicate names get ``_<id>``), each annotation ring a
polygon object (coordinates as given, floats kept: the reader floors them), images are copied.
Usage: python benchmarks/coco_to_sly.py COCO_JSON IMAGE_DIR DST [--limit N]
"""

from __future__ import annotations

import argparse
import colorsys
import json
import shutil
from pathlib import Path


def _colour(i: int) -> str:
    r, g, b = colorsys.hsv_to_rgb((i * 0.618034) % 1.0, 0.75, 0.95)
    return "#%02X%02X%02X" % (int(r * 255), int(g * 255), int(b * 255))


def convert(coco_json: Path, image_dir: Path, dst: Path, limit: int | None = None) -> Path:
    coco = json.loads(coco_json.read_text())
    titles, seen = {}, set()
    for cat in sorted(coco["categories"], key=lambda c: c["id"]):
        title = cat["name"] if cat["name"] not in seen else f"{cat['name']}_{cat['id']}"
        seen.add(title)
        titles[cat["id"]] = title
    meta = {"classes": [{"title": t, "shape": "polygon", "color": _colour(i)}
                        for i, t in enumerate(titles.values())], "tags": [], "projectType": "images"}
    (dst / "ds" / "ann").mkdir(parents=True, exist_ok=True)
    (dst / "ds" / "img").mkdir(parents=True, exist_ok=True)
    (dst / "meta.json").write_text(json.dumps(meta, indent=4))
    by_image: dict[int, list] = {}
    for a in coco["annotations"]:
        by_image.setdefault(a["image_id"], []).append(a)
    images = sorted(coco["images"], key=lambda i: i["file_name"])[:limit]
    for info in images:
        objects = []
        for a in by_image.get(info["id"], []):
            for ring in a.get("segmentation") or []:
                pts = [[ring[i], ring[i + 1]] for i in range(0, len(ring) - 1, 2)]
                if len(pts) >= 3:
                    objects.append({"classTitle": titles[a["category_id"]], "geometryType": "polygon",
                                    "tags": [], "points": {"exterior": pts, "interior": []}})
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
    a = p.parse_args()
    print(convert(a.coco_json, a.image_dir, a.dst, a.limit))
