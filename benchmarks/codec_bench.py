"""Measure maskcore's PNG writer and image decoder against OpenCV and Pillow defaults.

Inputs are built from the real facade set (1024x1024 photos, COCO polygons): per photo a class
index mask (all polygons, largest first), a 0/255 mask of one object, an RGB class-colour mask and
a 2048x1024 side-by-side preview (photo | 50% overlay). Polygons are filled with OpenCV here: the
benchmark only needs realistic pixels, it does not test the rasteriser.

Timings are medians over photos of per-photo medians of interleaved repeats, one thread.
Usage: python benchmarks/codec_bench.py [--photos 8] [--repeat 7]
"""

from __future__ import annotations

import argparse
import io
import json
import time
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from maskcore.codec import DEFLATE_BACKENDS, decode_image, encode_png
from maskcore.codec import image as image_module

FACADE = Path("/work/shared/data/roboflow_facade_coco/valid")
CATSDOGS = Path("/work/shared/data/sly_catsdogs")


def make_inputs(photos: int) -> list[dict[str, np.ndarray]]:
    coco = json.loads((FACADE / "_annotations.coco.json").read_text())
    anns: dict[int, list] = {}
    for a in coco["annotations"]:
        anns.setdefault(a["image_id"], []).append(a)
    palette = np.random.default_rng(1).integers(0, 256, (256, 3), dtype=np.uint8)
    palette[0] = 0
    out = []
    for info in sorted(coco["images"], key=lambda i: i["id"])[:photos]:
        objs = sorted(anns.get(info["id"], []), key=lambda a: -a["area"])
        classes = np.zeros((info["height"], info["width"]), np.uint8)
        for a in objs:
            for ring in a["segmentation"]:
                pts = np.floor(np.asarray(ring).reshape(-1, 2)).astype(np.int32)
                cv2.fillPoly(classes, [pts], int(a["category_id"]))
        single = np.zeros_like(classes)
        ring = objs[len(objs) // 2]["segmentation"][0]
        cv2.fillPoly(single, [np.floor(np.asarray(ring).reshape(-1, 2)).astype(np.int32)], 255)
        colour = palette[classes]
        photo = decode_image((FACADE / info["file_name"]).read_bytes())
        overlay = photo.copy()
        hit = classes > 0
        overlay[hit] = (photo[hit].astype(np.uint16) + colour[hit]) // 2
        preview = np.concatenate([photo, overlay], axis=1)
        out.append({"class mask 1024² (grey)": classes, "object mask 0/255 1024²": single,
                    "colour mask 1024² RGB": colour, "preview 2048x1024 RGB": preview})
    return out


def cv2_png(pixels: np.ndarray) -> bytes:
    bgr = pixels if pixels.ndim == 2 else np.ascontiguousarray(pixels[:, :, ::-1])
    return cv2.imencode(".png", bgr)[1].tobytes()


def pillow_png(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "PNG")
    return buf.getvalue()


def interleaved(funcs: dict, repeat: int) -> dict[str, tuple[float, float, object]]:
    """Run each function ``repeat`` times, round-robin; return (median ms, min ms, last result)."""
    times = {k: [] for k in funcs}
    last = {}
    for _ in range(repeat):
        for k, f in funcs.items():
            t0 = time.perf_counter()
            last[k] = f()
            times[k].append(time.perf_counter() - t0)
            np.add.reduce(np.ones(16, np.float32))  # keep one encoder's SIMD state off the next
    return {k: (1e3 * float(np.median(v)), 1e3 * min(v), last[k]) for k, v in times.items()}


def bench_encode(inputs: list[dict], repeat: int) -> None:
    coders = {f"ours ({b})": (lambda x, b=b: encode_png(x, deflate=b)) for b in DEFLATE_BACKENDS}
    coders.update({"cv2.imencode default": cv2_png, "Pillow default": pillow_png})
    print("| image kind | encoder | median ms | min ms | bytes |\n|---|---|---:|---:|---:|")
    for kind in inputs[0]:
        per = {name: [] for name in coders}
        for item in inputs:
            pixels = item[kind]
            res = interleaved({n: (lambda f=f: f(pixels)) for n, f in coders.items()}, repeat)
            for name, (ms, best, data) in res.items():
                per[name].append((ms, best, len(data)))
        for name, rows in per.items():
            ms, best, size = np.median(np.asarray(rows), axis=0)
            print(f"| {kind} | {name} | {ms:.2f} | {best:.2f} | {int(size)} |")


def bench_decode(inputs: list[dict], repeat: int) -> None:
    files = {"facade JPEG 1024²": [p.read_bytes() for p in sorted(FACADE.glob("*.jpg"))[:8]],
             "cats/dogs JPEG": [p.read_bytes() for p in sorted(CATSDOGS.glob("instance/ds/img/*"))],
             "preview PNG (ours)": [encode_png(i["preview 2048x1024 RGB"]) for i in inputs],
             "class mask PNG (ours)": [encode_png(i["class mask 1024² (grey)"]) for i in inputs]}
    decoders = {
        "ours (default)": decode_image,
        "ours, Pillow JPEG": lambda d: image_module._decode_with_pillow(d, "JPEG")
        if d[:2] == b"\xff\xd8" else decode_image(d),
        "cv2.imdecode + BGR2RGB": lambda d: cv2.cvtColor(
            cv2.imdecode(np.frombuffer(d, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB),
        "Pillow convert(RGB)": lambda d: np.asarray(Image.open(io.BytesIO(d)).convert("RGB")),
    }
    print("\n| input | decoder | median ms | min ms |\n|---|---|---:|---:|")
    for kind, blobs in files.items():
        per = {name: [] for name in decoders}
        for data in blobs:
            res = interleaved({n: (lambda f=f: f(data)) for n, f in decoders.items()}, repeat)
            ref = res["cv2.imdecode + BGR2RGB"][2]
            for name, (ms, best, pixels) in res.items():
                if not np.array_equal(pixels, ref):
                    name += " (PIXELS DIFFER)"
                per.setdefault(name, []).append((ms, best))
        for name, rows in per.items():
            if rows:
                ms, best = np.median(np.asarray(rows), axis=0)
                print(f"| {kind} | {name} | {ms:.2f} | {best:.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    cv2.setNumThreads(1)
    inputs = make_inputs(args.photos)
    bench_encode(inputs, args.repeat)
    bench_decode(inputs, args.repeat)


if __name__ == "__main__":
    main()
