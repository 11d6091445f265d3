"""Two steps of the Supervisely export against their floors, in one process, variants alternated
(BENCHMARKS.md "Issue 18 (session 9): steps at their floors").

``preview``: compose.human as the layout does it (the photo into both halves of the preview, then
each label's half-blend, ``layouts.supervisely._overlay_label``) on photos decoded and colour
layers drawn beforehand, next to its floor (the photo copied into both halves) and to the pieces
that bound what numpy can do per label: one byte pass over every label's window (a bitwise AND of
the window rows with the colour row, 8 bytes at a time) and the masked pixel copy alone. CPU ms per
preview (``time.thread_time``), best of ``--repeat`` rounds, with the sha256 of the previews of
the first round (equal digests = equal pixels).

``machine``: the machine mask's ``encode_png`` on canvases rendered by the layout, next to its
parts on the same canvas right after: the Up filter (``codec.png._filter_up``), maskcore's
deterministic deflate of the filtered rows (zlib-ng level 1, RLE) and ISA-L's (not deterministic:
not usable). CPU ms per mask, best of ``--repeat``.

Usage: python benchmarks/steps_bench.py PROJECT [--mode preview|machine|both] [--repeat 7]
Example: PYTHONPATH=$PWD taskset -c 1 python benchmarks/steps_bench.py /tmp/facade_sly
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

from bench import _items  # noqa: E402

from maskcore.codec.image import decode_image  # noqa: E402
from maskcore.kernel import compose  # noqa: E402
from maskcore.kernel.draw import colour_layers  # noqa: E402
from maskcore.layouts import get_layout  # noqa: E402
from maskcore.layouts import supervisely as sly_layout  # noqa: E402
from maskcore.model.crop import crop_annotation  # noqa: E402
from maskcore.model.item import ItemData  # noqa: E402
from maskcore.readers.supervisely import parse_annotation  # noqa: E402
from maskcore.timing import NO_CLOCK  # noqa: E402


def load_items(project: Path, with_images: bool) -> tuple[object, list[ItemData]]:
    source, meta, rows = _items(project)
    layout = get_layout("supervisely", {"masks": "machine,human", "thickness": 2})
    items = []
    for row in rows:
        ann_bytes = source.read_bytes(row["ann_path"])
        ann = crop_annotation(parse_annotation(json.loads(ann_bytes), meta, row["item"]))
        items.append(ItemData(row["dataset"], row["item"], row["out_dir"], row["mask_stem"], row["out_name"],
                              meta, ann, ann_bytes, source.read_bytes(row["img_path"]) if with_images else None))
    return layout, items


def best_of(variants: dict, inputs: list, repeat: int) -> dict:
    """{name: (best CPU ms per input, digest of round 0)}: the variants alternated within each round."""
    best = {name: float("inf") for name in variants}
    digests = {}
    for r in range(repeat):
        for name, fn in variants.items():
            digest, spent = hashlib.sha256(), 0.0
            for args in inputs:
                start = time.thread_time()
                out = fn(*args)
                spent += time.thread_time() - start
                if r == 0 and out is not None:
                    digest.update(memoryview(np.ascontiguousarray(out)).cast("B"))
            best[name] = min(best[name], spent)
            if r == 0:
                digests[name] = digest.hexdigest()[:12]
    return {name: (1000 * best[name] / len(inputs), digests[name]) for name in variants}


def preview_variants() -> dict:
    def both_halves(image):
        h, w = image.shape[:2]
        both = sly_layout._preview_canvas(h, w)
        np.copyto(both.reshape(h, 2, w * 3), image.reshape(h, 1, w * 3))
        return both, both[:, w:]

    def layout_compose(image, layers):
        both, overlay = both_halves(image)
        for label_layers in layers:
            sly_layout._overlay_label(overlay, label_layers)
        return both

    def floor_copy(image, layers):
        return both_halves(image)[0]

    def two_copies(image, layers):  # main before session 9
        h, w = image.shape[:2]
        both = sly_layout._preview_canvas(h, w)
        both[:, :w] = image
        both[:, w:] = image
        return both

    scratch = np.empty(0, np.uint8)

    def one_pass_per_window(image, layers):  # the cost of touching every window once
        nonlocal scratch
        both, overlay = both_halves(image)
        for label_layers in layers:
            for colour, patch in label_layers:
                rows = compose._byte_rows(overlay[patch.window()])
                if scratch.size < rows.size:
                    scratch = np.empty(rows.size, np.uint8)
                np.bitwise_and(rows, compose._tiled_row(colour, 3, rows.shape[1]),
                               out=scratch[:rows.size].reshape(rows.shape))
        return both

    def masked_copy_only(image, layers):  # the per-label masked pixel copy, from a fixed buffer
        nonlocal scratch
        both, overlay = both_halves(image)
        for label_layers in layers:
            for _, patch in label_layers:
                region = overlay[patch.window()]
                if scratch.size < region.size:
                    scratch = np.empty(region.size, np.uint8)
                source = scratch[:region.size].reshape(region.shape)
                np.copyto(compose._pixels(region), compose._pixels(source), where=patch.mask)
        return None  # pixels of no interest

    def buffer(n: int, dtype) -> np.ndarray:
        nonlocal scratch
        if scratch.nbytes < n * np.dtype(dtype).itemsize + 8:
            scratch = np.empty(n * np.dtype(dtype).itemsize + 8, np.uint8)
        return scratch[:n * np.dtype(dtype).itemsize].view(dtype)

    swar_rows: dict = {}
    high_bits = np.uint64(0xFEFEFEFEFEFEFEFE)

    def swar_u64(image, layers):  # floor((v + c) / 2) = (v & c) + (((v ^ c) & 0xFE..) >> 1), 8 bytes at once
        both, overlay = both_halves(image)
        h, w = image.shape[:2]
        rows = both.reshape(h, -1)
        for label_layers in layers:
            for colour, patch in label_layers:
                b0, b1 = 3 * (w + patch.left), 3 * (w + patch.right)
                e0, e1 = b0 & ~7, (b1 + 7) & ~7   # the window's bytes widened to whole 8-byte words
                v = rows[patch.top:patch.bottom, e0:e1].view(np.uint64)
                key = (tuple(np.broadcast_to(colour, 3).tolist()), (e0 - 3 * w) % 3)
                if key not in swar_rows:
                    tiled = np.tile(np.asarray(key[0], np.uint8), 2 * w + 8)[key[1]:]
                    swar_rows[key] = tiled[:len(tiled) // 8 * 8].view(np.uint64)
                c = swar_rows[key][:v.shape[1]]
                a = buffer(2 * v.size, np.uint64)
                low, mixed = a[v.size:].reshape(v.shape), a[:v.size].reshape(v.shape)
                np.bitwise_and(v, c, out=mixed)
                np.bitwise_xor(v, c, out=low)
                np.bitwise_and(low, high_bits, out=low)
                np.right_shift(low, np.uint64(1), out=low)
                np.add(mixed, low, out=mixed)
                window = mixed.view(np.uint8)[:, b0 - e0:b1 - e0].reshape(v.shape[0], -1, 3)
                np.copyto(compose._pixels(overlay[patch.window()]), compose._pixels(window), where=patch.mask)
        return both

    def gathered(image, layers):  # the covered pixels gathered, mixed as one 1-D run, scattered back
        both, overlay = both_halves(image)
        for label_layers in layers:
            for colour, patch in label_layers:
                region = compose._pixels(overlay[patch.window()])
                pixels = region[patch.mask]
                flat = pixels.view(np.uint8)
                total = buffer(flat.size, np.uint16)
                np.add(flat, compose._tiled_row(colour, 3, flat.size), out=total, dtype=np.uint16)
                np.right_shift(total, 1, out=flat, casting="unsafe")
                region[patch.mask] = pixels
        return both

    return {"compose.human (layout)": layout_compose, "floor: photo into both halves": floor_copy,
            "two copies (main before)": two_copies, "one byte pass over the windows": one_pass_per_window,
            "masked pixel copy alone": masked_copy_only, "mix as u64 words (5 passes)": swar_u64,
            "covered pixels gathered + scattered": gathered}


def run_preview(project: Path, repeat: int) -> None:
    layout, items = load_items(project, with_images=True)
    inputs = []
    for item in items:
        classes = item.meta.class_by_title()
        patches = layout._coverages(item, item.annotation.labels)
        layers = [colour_layers(lb.geometry, p, classes[lb.class_title].color_rgb, item.annotation.size_hw,
                                2, classes[lb.class_title].geometry_config)
                  for lb, p in zip(item.annotation.labels, patches)]
        inputs.append((decode_image(item.image_bytes), layers))
    windows = sum(p.mask.size for _, layers in inputs for ll in layers for _, p in ll) / len(inputs)
    print(f"preview: {len(inputs)} photos, {windows / 1e6:.2f} M window pixels per preview")
    print("| variant | CPU ms/preview | digest |\n|---|---:|---|")
    for name, (ms, digest) in best_of(preview_variants(), inputs, repeat).items():
        print(f"| {name} | {ms:.2f} | {digest} |")


def run_machine(project: Path, repeat: int) -> None:
    import zlib

    from isal import isal_zlib
    from zlib_ng import zlib_ng

    from maskcore.codec.png import DEFAULT_DEFLATE, DEFLATE_BACKENDS, _filter_up, encode_png, png_file

    layout, items = load_items(project, with_images=False)
    deterministic = DEFLATE_BACKENDS[DEFAULT_DEFLATE].compress
    filtered = {}

    def render(item):
        _, canvas = next(iter(layout._render(item, ("machine",), NO_CLOCK, None, None)))
        return canvas

    def filter_up(item, canvas):
        filtered[id(item)] = memoryview(_filter_up(canvas)).cast("B")

    block = np.empty((128, 1), np.uint8)

    def chunked(item, canvas, rows=128):  # filter + deflate 128 rows at a time, while they are in cache
        nonlocal block
        height, width = canvas.shape
        if block.shape[1] != width + 1:
            block = np.empty((rows, width + 1), np.uint8)
        block[:, 0] = 2
        obj = zlib_ng.compressobj(1, zlib_ng.DEFLATED, 15, 8, zlib_ng.Z_RLE)
        parts = []
        for top in range(0, height, rows):
            n = min(rows, height - top)
            part = block[:n]
            if top == 0:
                part[0, 1:] = canvas[0]
                np.subtract(canvas[1:n], canvas[:n - 1], out=part[1:, 1:])
            else:
                np.subtract(canvas[top:top + n], canvas[top - 1:top + n - 1], out=part[:, 1:])
            parts.append(obj.compress(memoryview(part).cast("B")))
        return png_file(b"".join(parts) + obj.flush(), (height, width), 0, crc32=zlib_ng.crc32)

    def rle(module):
        def compress(item, canvas):
            obj = module.compressobj(1, module.DEFLATED, 15, 8, module.Z_RLE)
            obj.compress(filtered[id(item)])
            obj.flush()
        return compress

    variants = {"encode_png (maskcore)": lambda item, canvas: encode_png(canvas) and None,
                "Up filter alone (fresh array)": filter_up,
                "zlib-ng deflate of the filtered rows (deterministic floor)":
                    lambda item, canvas: deterministic(filtered[id(item)], 1) and None,
                "ISA-L level 1 of the same rows (fastest, not deterministic)":
                    lambda item, canvas: isal_zlib.compress(filtered[id(item)], 1) and None,
                "stdlib zlib level 1 RLE of the same rows": rle(zlib),
                "filter + zlib-ng deflate, 128 rows at a time": lambda item, canvas: chunked(item, canvas) and None}
    try:  # libdeflate, when installed (not a dependency): deterministic, measured slower here
        import deflate
        variants["libdeflate level 1 of the same rows"] = lambda item, canvas: deflate.zlib_compress(
            filtered[id(item)], 1) and None
    except ImportError:
        pass
    for item in items[:10]:  # the chunked stream is the same stream
        assert chunked(item, render(item)) == encode_png(render(item)), item.where
    best = {name: float("inf") for name in variants}
    for _ in range(repeat):
        spent = dict.fromkeys(variants, 0.0)
        for item in items:
            canvas = render(item)  # fresh from compose.machine, as encode.machine finds it
            for name, fn in variants.items():
                start = time.thread_time()
                fn(item, canvas)
                spent[name] += time.thread_time() - start
        best = {name: min(best[name], spent[name]) for name in variants}
    print(f"machine masks: {len(items)} canvases")
    print("| step | CPU ms/mask |\n|---|---:|")
    for name, sec in best.items():
        print(f"| {name} | {1000 * sec / len(items):.3f} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("project", type=Path)
    p.add_argument("--mode", choices=("preview", "machine", "both"), default="both")
    p.add_argument("--repeat", type=int, default=7)
    args = p.parse_args()
    print(f"load {' '.join(f'{x:.2f}' for x in os.getloadavg())}; best of {args.repeat}")
    if args.mode in ("preview", "both"):
        run_preview(args.project, args.repeat)
    if args.mode in ("machine", "both"):
        run_machine(args.project, args.repeat)


if __name__ == "__main__":
    main()
