"""Segmentation mask 1.1 reader: real labelme VOC data (paletted, 255 = ignore) pixel for pixel
against PIL's own decode; the same data as a CVAT-style zip (labelmap, RGB masks, subsets);
random masks; bad items failing alone; hostile zips refused before anything is listed."""

from __future__ import annotations

import io
import pickle
import shutil
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from maskcore.errors import AnnotationError, LimitError, ProjectError, UnknownClassError
from maskcore.io.zipsafe import UnsafeArchiveError
from maskcore.kernel.palette import VOC_CLASSES, voc_colormap
from maskcore.readers.voc_masks import VocMasksSource, frame, parse_labelmap, parse_voc_annotation, voc_labelmap

DATA = Path(__file__).resolve().parents[1] / "data" / "voc_labelme"
IDS = ("2011_000003", "2011_000006", "2011_000025")
CMAP = voc_colormap(256)


def _png(arr: np.ndarray, mode: str | None = None, palette=None) -> bytes:
    img = Image.fromarray(arr, mode) if mode else Image.fromarray(arr)
    if palette is not None:
        img.putpalette(palette)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _parse_all(src: VocMasksSource):
    meta = src.read_meta()
    rows = src.list_items().to_pylist()
    return meta, rows, {(r["dataset"], r["item"]): src.parse_annotation(
        src.item_annotation(r), meta, f"{r['dataset']}/{r['item']}") for r in rows}


def _expected_objects(cls: np.ndarray, obj: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """Independent reading of a (class index, instance id) pair: per instance, the full-canvas
    mask and its class by majority (there is a single class under each in this data)."""
    out = []
    for i in np.unique(obj):
        if i in (0, 255):
            continue
        under = cls[(obj == i) & (cls != 0) & (cls != 255)]
        out.append((VOC_CLASSES[int(np.bincount(under).argmax())], obj == i))
    return out


def _full(label, size_hw) -> np.ndarray:
    canvas = np.zeros(size_hw, bool)
    (x, y), (h, w) = label.geometry.origin_xy, label.geometry.mask.shape
    canvas[y:y + h, x:x + w] = label.geometry.mask
    return canvas


# --- real data -----------------------------------------------------------------------------------

def test_real_labelme_voc_folder_gives_exact_instance_bitmaps():
    src = VocMasksSource.open_source(str(DATA))
    meta, rows, anns = _parse_all(src)
    assert [c.title for c in meta.classes] == list(VOC_CLASSES[1:])  # background: no class
    assert [(r["dataset"], r["item"], r["img_path"]) for r in rows] == [
        ("default", f"{i}.jpg", f"JPEGImages/{i}.jpg") for i in IDS]
    total = 0
    for i in IDS:
        cls = np.asarray(Image.open(DATA / "SegmentationClass" / f"{i}.png"))
        obj = np.asarray(Image.open(DATA / "SegmentationObject" / f"{i}.png"))
        ann = anns[("default", f"{i}.jpg")]
        assert ann.size_hw == cls.shape
        expected = _expected_objects(cls, obj)
        assert [lb.class_title for lb in ann.labels] == [t for t, _ in expected]
        for lb, (_, mask) in zip(ann.labels, expected):
            assert (_full(lb, ann.size_hw) == mask).all()
        covered = np.zeros(cls.shape, bool)
        for lb in ann.labels:
            covered |= _full(lb, ann.size_hw)
        assert not covered[cls == 255].any()   # VOC "ignore" is nobody's
        total += len(ann.labels)
    assert total == 12  # 3 + 6 + 3 instances (2011_000006 has no id 6)


def _cvat_zip_from_real_data(extra: dict | None = None) -> bytes:
    """The real data rewritten as CVAT writes it: labelmap.txt, RGB masks, a subset list."""
    names = list(VOC_CLASSES)
    labelmap = "# label:color_rgb:parts:actions\n" + "".join(
        f"{n}:{','.join(str(int(v)) for v in CMAP[k])}::\n" for k, n in enumerate(names))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("labelmap.txt", labelmap)
        z.writestr("ImageSets/Segmentation/train.txt", "\n".join(IDS[:2]) + "\n")
        for i in IDS:
            for kind in ("SegmentationClass", "SegmentationObject"):
                idx = np.asarray(Image.open(DATA / kind / f"{i}.png"))
                z.writestr(f"{kind}/{i}.png", _png(CMAP[idx]))
            z.writestr(f"JPEGImages/{i}.jpg", (DATA / "JPEGImages" / f"{i}.jpg").read_bytes())
        for name, data in (extra or {}).items():
            z.writestr(name, data)
    return buf.getvalue()


def test_cvat_style_zip_with_rgb_masks_gives_the_same_objects(tmp_path):
    path = tmp_path / "task.zip"
    path.write_bytes(_cvat_zip_from_real_data())
    src = pickle.loads(pickle.dumps(VocMasksSource.open_source(str(path))))  # workers get a copy
    meta, rows, anns = _parse_all(src)
    assert [c.title for c in meta.classes] == list(VOC_CLASSES[1:])
    assert [(r["dataset"], r["item"]) for r in rows] == [
        ("default", "2011_000025.jpg"), ("train", "2011_000003.jpg"), ("train", "2011_000006.jpg")]
    folder = _parse_all(VocMasksSource.open_source(str(DATA)))[2]
    for (_ds, item), ann in anns.items():
        ref = folder[("default", item)]
        assert [lb.class_title for lb in ann.labels] == [lb.class_title for lb in ref.labels]
        for a, b in zip(ann.labels, ref.labels):
            assert a.geometry.origin_xy == b.geometry.origin_xy
            assert (a.geometry.mask == b.geometry.mask).all()
    assert src.read_bytes("JPEGImages/2011_000003.jpg") == (DATA / "JPEGImages/2011_000003.jpg").read_bytes()


def test_unknown_colour_fails_its_item_alone(tmp_path):
    bad = np.zeros((6, 9, 3), np.uint8)
    bad[4, 7] = (1, 2, 3)
    path = tmp_path / "t.zip"
    path.write_bytes(_cvat_zip_from_real_data({"SegmentationClass/zz_bad.png": _png(bad)}))
    src = VocMasksSource.open_source(str(path))
    meta = src.read_meta()
    failed, ok = [], 0
    for row in src.list_items().to_pylist():
        try:
            src.parse_annotation(src.item_annotation(row), meta, f"{row['dataset']}/{row['item']}")
            ok += 1
        except UnknownClassError as exc:
            failed.append(str(exc))
    assert ok == 3 and len(failed) == 1
    assert "default/zz_bad.png" in failed[0] and "(1, 2, 3)" in failed[0]
    assert "SegmentationClass/zz_bad.png" in failed[0] and "(x=7, y=4)" in failed[0]


# --- hostile archives ----------------------------------------------------------------------------

def _patched(blob: bytes, old: bytes, new: bytes) -> bytes:
    assert len(old) == len(new) and blob.count(old) == 2  # local and central name
    return blob.replace(old, new)


EXTRA = b"SegmentationClass/XXXXXXXXXXX.png"  # as long as an existing member's name


@pytest.mark.parametrize("case", ["dotdot", "absolute", "symlink", "bomb", "overlap", "duplicate"])
def test_hostile_zip_is_refused_before_anything_is_listed(tmp_path, case):
    base = _cvat_zip_from_real_data({EXTRA.decode(): b"x" * 100})
    central = base.index(b"PK\x01\x02")
    record = base.index(EXTRA, central) - 46    # the extra member's central record
    blob = bytearray(base)
    if case == "dotdot":
        blob = _patched(base, EXTRA, b"SegmentationClass/../../../xx.png")
    elif case == "absolute":
        blob = _patched(base, EXTRA, b"/SegmentationClass/XXXXXXXXXX.png")
    elif case == "duplicate":
        blob = _patched(base, EXTRA, b"SegmentationClass/2011_000003.PNG")
    elif case == "symlink":
        info = zipfile.ZipInfo("SegmentationObject/link.png")
        info.create_system, info.external_attr = 3, 0o120777 << 16
        buf = io.BytesIO(base)
        with zipfile.ZipFile(buf, "a") as z:
            z.writestr(info, "/etc/passwd")
        blob = buf.getvalue()
    elif case == "bomb":  # the central record claims 80 MB for the 100-byte member
        struct.pack_into("<I", blob, record + 24, 80_000_000)
    else:  # overlap: the central record points at the first member's local header
        struct.pack_into("<I", blob, record + 42, 0)
    path = tmp_path / "hostile.zip"
    path.write_bytes(blob)
    with pytest.raises(ProjectError) as info:
        VocMasksSource.open_source(str(path))
    if case in ("dotdot", "absolute", "symlink", "duplicate"):
        assert isinstance(info.value, UnsafeArchiveError)
    words = {"dotdot": "'..'", "absolute": "absolute", "symlink": "symbolic link",
             "bomb": "zip bomb", "overlap": "overlap", "duplicate": "only by case"}[case]
    assert words in str(info.value) and "hostile.zip" in str(info.value)


# --- labelmap ------------------------------------------------------------------------------------

def test_labelmap_parsing_follows_cvat():
    lm = parse_labelmap(b"# label:color_rgb:parts:actions\n\n  background:0,0,0::\ncat:255, 0,0::\n"
                        b"dog:::\n")
    assert lm.names == ("background", "cat", "dog")
    assert lm.colors == ((0, 0, 0), (255, 0, 0), tuple(int(v) for v in CMAP[2]))
    for text, words in [("a:1,2,3:\n", "line 1: expected 4"), ("a:1,2,3::\nb:1,2::\n", r"line 2 \('b'\)"),
                        ("a:::\n#x\na:1,1,1::\n", "line 3: expected unique"),
                        ("a:1,2,3::\nb:1,2,3::\n", "already used by 'a'"), ("a:300,0,0::", "0..255"),
                        ("# only comments\n", "at least one label")]:
        with pytest.raises(ProjectError, match=words):
            parse_labelmap(text)


# --- mask semantics ------------------------------------------------------------------------------

def _labels():
    return parse_labelmap("background:0,0,0::\ncat:255,0,0::\ndog:0,0,255::\nfox:0,255,0::\n")


def test_random_instance_maps_round_trip_exactly():
    rng = np.random.default_rng(3)
    labels = _labels()
    for _ in range(30):
        h, w = (int(v) for v in rng.integers(1, 40, 2))
        n = int(rng.integers(1, 9))
        inst = rng.integers(0, n + 1, (h, w))
        klass = rng.integers(1, 4, n + 1)       # each instance's class
        klass[0] = 0
        cls = klass[inst]
        colors = np.array(labels.colors, np.uint8)
        data = frame(_png(colors[cls]), _png(CMAP[inst].astype(np.uint8)))
        ann = parse_voc_annotation(data, labels, "object", "ds/x.png")
        ids = [i for i in range(1, n + 1) if (inst == i).any()]
        assert [lb.class_title for lb in ann.labels] == [labels.names[klass[i]] for i in ids]
        for lb, i in zip(ann.labels, ids):
            assert (_full(lb, (h, w)) == (inst == i)).all()


def test_one_channel_masks_ties_leftovers_and_ignore():
    labels = _labels()
    cls = np.array([[1, 1, 2, 2, 255, 3],
                    [0, 0, 0, 0, 0, 3]], np.uint8)
    obj = np.array([[1, 1, 1, 1, 255, 0],
                    [0, 0, 0, 0, 0, 0]], np.uint8)
    ann = parse_voc_annotation(frame(_png(cls), _png(obj)), labels, "object", "ds/a.png")
    # instance 1: two cat, two dog pixels -> the lower label index (cat); the fox pixels lie
    # outside every instance and become one fox object; 255 is nobody's
    assert [lb.class_title for lb in ann.labels] == ["cat", "fox"]
    assert _full(ann.labels[0], (2, 6))[0].tolist() == [True] * 4 + [False] * 2
    assert _full(ann.labels[1], (2, 6))[:, 5].tolist() == [True, True]
    # class mask only: one object per label present, holes kept
    ring = np.ones((5, 5), np.uint8)
    ring[2, 2] = 0
    only = parse_voc_annotation(frame(_png(ring), None), labels, "object", "ds/b.png")
    assert [lb.class_title for lb in only.labels] == ["cat"]
    assert only.labels[0].geometry.mask.tolist() == (ring == 1).tolist()
    # object mask only (the reference crashes): the fallback class; 16-bit ids beyond 255 kept
    ids = np.array([[0, 300, 300], [7, 7, 0]], np.uint16)
    objs = parse_voc_annotation(frame(None, _png(ids)), labels, "object", "ds/c.png")
    assert [lb.class_title for lb in objs.labels] == ["object", "object"]
    assert [lb.geometry.origin_xy for lb in objs.labels] == [(0, 1), (1, 0)]
    # a paletted class mask is read by its indices, not its palette colours
    pal = _png(cls.clip(0, 3) * (cls != 255), "P", palette=[9, 9, 9] * 256)
    assert [lb.class_title for lb in parse_voc_annotation(frame(pal, None), labels, "o", "d/e.png").labels] \
        == ["cat", "dog", "fox"]


def test_bad_masks_fail_the_item_with_what_and_where():
    labels = _labels()
    with pytest.raises(UnknownClassError, match=r"value 4 at pixel \(x=1, y=0\).*0\.\.3"):
        parse_voc_annotation(frame(_png(np.array([[0, 4]], np.uint8)), None), labels, "o", "ds/a.png")
    with pytest.raises(AnnotationError, match="instance 1 .* only background"):
        parse_voc_annotation(frame(_png(np.zeros((2, 2), np.uint8)), _png(np.ones((2, 2), np.uint8))),
                             labels, "o", "ds/a.png")
    with pytest.raises(AnnotationError, match="expected one size"):
        parse_voc_annotation(frame(_png(np.ones((2, 2), np.uint8)), _png(np.ones((3, 2), np.uint8))),
                             labels, "o", "ds/a.png")
    # a PNG declaring 100000 x 100000 pixels is refused from its header alone
    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 0, 0, 0, 0)
    bomb = (b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + ihdr
            + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr)) + b"\0" * 20)
    with pytest.raises(LimitError, match="100000x100000") as info:
        parse_voc_annotation(frame(bomb, None), labels, "o", "ds/a.png", max_bitmap_pixels=2**28)
    assert str(info.value).startswith("ds/a.png: ")
    with pytest.raises(AnnotationError, match="framing"):
        parse_voc_annotation(b"garbage", labels, "o", "ds/a.png")


def test_object_only_archive_and_listed_items_without_masks(tmp_path):
    (tmp_path / "SegmentationObject").mkdir()
    (tmp_path / "JPEGImages").mkdir()
    (tmp_path / "ImageSets" / "Segmentation").mkdir(parents=True)
    (tmp_path / "SegmentationObject" / "a.png").write_bytes(_png(np.array([[0, 1], [2, 2]], np.uint8)))
    (tmp_path / "JPEGImages" / "empty.jpg").write_bytes((DATA / "JPEGImages" / f"{IDS[0]}.jpg").read_bytes())
    (tmp_path / "ImageSets" / "Segmentation" / "val.txt").write_text("empty\nghost\n")
    src = VocMasksSource.open_source(str(tmp_path))
    meta = src.read_meta()
    assert [c.title for c in meta.classes][-1] == "object" and len(meta.classes) == 21
    rows = {(r["dataset"], r["item"]): r for r in src.list_items().to_pylist()}
    assert sorted(rows) == [("default", "a.png"), ("val", "empty.jpg"), ("val", "ghost.png")]
    assert rows[("default", "a.png")]["ann_path"] == "SegmentationObject/a.png"
    ann = src.parse_annotation(src.item_annotation(rows[("default", "a.png")]), meta, "default/a.png")
    assert [lb.class_title for lb in ann.labels] == ["object", "object"]
    empty = src.parse_annotation(src.item_annotation(rows[("val", "empty.jpg")]), meta, "val/empty.jpg")
    assert empty.size_hw == (338, 500) and empty.labels == ()
    with pytest.raises(AnnotationError, match="val/ghost.png: .*neither"):
        src.parse_annotation(src.item_annotation(rows[("val", "ghost.png")]), meta, "val/ghost.png")
    assert voc_labelmap().names == VOC_CLASSES


# --- issue 12.10: options a reader does not take; import with --images ------------------------

def test_every_reader_refuses_an_unknown_option_cleanly(cli, tmp_path):
    from maskcore.errors import ConfigError
    from maskcore.readers import READERS, open_source

    for name in READERS:
        with pytest.raises(ConfigError, match=f"reader {name!r}.*'colour'"):
            open_source(name, str(tmp_path), colour="red")
    (tmp_path / "x.json").write_text("{}")
    ran = cli("export", tmp_path / "x.json", tmp_path / "out", "--images", tmp_path, "--cluster", "inprocess",
              "--reader", "supervisely")
    assert ran.returncode == 1 and "Traceback" not in ran.stderr and "'images'" in ran.stderr, ran.stderr


def test_import_takes_the_images_of_an_archive_exported_without_them(cli, tmp_path):
    """A Segmentation mask zip exported from CVAT without images, its photos in another folder:
    `maskcore import --images DIR` gives a project with img/ (the SDK calls one without it empty)."""
    src = tmp_path / "masks"
    shutil.copytree(DATA, src, ignore=shutil.ignore_patterns("JPEGImages"))
    photos = tmp_path / "photos"
    shutil.copytree(DATA / "JPEGImages", photos)
    ran = cli("import", src, tmp_path / "proj", "--images", photos, "--cluster", "inprocess")
    assert ran.returncode == 0, ran.stderr
    imgs = sorted(p.name for p in (tmp_path / "proj").glob("*/img/*"))
    assert imgs == sorted(p.name for p in photos.iterdir())
    for p in photos.iterdir():
        (copy,) = (tmp_path / "proj").glob(f"*/img/{p.name}")
        assert copy.read_bytes() == p.read_bytes()
