"""Write a synthetic CVAT for images 1.1 annotations.xml of ~3 GB (issue 17 item 2), deterministic.

    python benchmarks/make_big_cvat.py [--images 430000] [--out /var/tmp/maskcore_big_cvat]

Each image: 10 polygons of 40 points, a box with an attribute, a tag; labels ``car``, ``road``,
``sky`` declared in ``<meta>``. Same arguments -> same bytes (seeded ``random``; a pool of shapes
recombined per image). Then plan it and measure the driver:

    /usr/bin/time -v maskcore export /var/tmp/maskcore_big_cvat /var/tmp/big_cvat_out \\
        --layout cvat --dry-run
"""

from __future__ import annotations

import argparse
import os
import random

HEAD = """<?xml version="1.0" encoding="utf-8"?>
<annotations>
  <version>1.1</version>
  <meta>
    <task>
      <name>big</name>
      <labels>
        <label><name>car</name><color>#fa3253</color><type>polygon</type>
          <attributes><attribute><name>model</name><input_type>text</input_type></attribute></attributes>
        </label>
        <label><name>road</name><color>#3d3df5</color><type>any</type><attributes/></label>
        <label><name>sky</name><color>#33ddff</color><type>tag</type><attributes/></label>
      </labels>
    </task>
  </meta>
"""


def shape_pool(rng: random.Random, n: int = 512) -> list[str]:
    pool = []
    for k in range(n):
        cx, cy, r = rng.uniform(50, 1870), rng.uniform(50, 1030), rng.uniform(5, 48)
        pts = ";".join(f"{cx + rng.uniform(-r, r):.2f},{cy + rng.uniform(-r, r):.2f}" for _ in range(40))
        label = "car" if k % 3 else "road"
        pool.append(f'    <polygon label="{label}" source="manual" occluded="0" points="{pts}" '
                    f'z_order="{k % 3}">\n    </polygon>\n')
    return pool


def write(out_dir: str, n_images: int, seed: int = 17) -> str:
    rng = random.Random(seed)
    pool = shape_pool(rng)
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, "annotations.xml")
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write(HEAD)
        parts = []
        for i in range(n_images):
            parts.append(f'  <image id="{i}" name="frames/img_{i:07d}.jpg" width="1920" height="1080">\n')
            parts.extend(pool[rng.randrange(len(pool))] for _ in range(10))
            parts.append(f'    <box label="car" source="manual" occluded="0" xtl="{i % 900}.00" ytl="10.50" '
                         f'xbr="{i % 900 + 120}.00" ybr="200.25" z_order="0">\n'
                         f'      <attribute name="model">m{i % 97}</attribute>\n    </box>\n'
                         f'    <tag label="sky" source="manual">\n    </tag>\n  </image>\n')
            if len(parts) > 4096:
                f.write("".join(parts))
                parts.clear()
        f.write("".join(parts))
        f.write("</annotations>\n")
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=430_000)
    ap.add_argument("--out", default="/var/tmp/maskcore_big_cvat")
    args = ap.parse_args()
    path = write(args.out, args.images)
    print(f"{path}: {os.path.getsize(path)} bytes, {args.images} images")


if __name__ == "__main__":
    main()
