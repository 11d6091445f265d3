"""Streamed COCO reading (``readers/coco_index.py``) equals a whole-document reading.

The oracle is inside the test: ``json.loads`` of the whole file, each image's annotations in file
order, the canonical compact JSON of ``{"image", "annotations"}``. Documents are random: key orders
shuffled, pretty-printing varied, unicode and escaped quotes/brackets/backslashes in strings,
annotations out of image order, RLE counts as strings and lists, orphans, images without
annotations; the file is read in random small chunks so every boundary case is met.
"""

from __future__ import annotations

import json
import random

import pytest

from maskcore.errors import AnnotationError, ItemSourceError, ProjectError
from maskcore.readers import coco
from maskcore.readers.coco import CocoSource, index_coco, meta_from_index

TRICKY = ['a', 'é', '日本', '"', '\\', '[', ']', '{', '}', ',', ':', '\\"', '\n', ' ', '\u2028', '🙂']


def text(rng: random.Random, n: int = 5) -> str:
    return "".join(rng.choice(TRICKY) for _ in range(rng.randint(1, n)))


def shuffled(rng: random.Random, d: dict) -> dict:
    items = list(d.items())
    rng.shuffle(items)
    return dict(items)


def random_segmentation(rng: random.Random, h: int, w: int):
    kind = rng.random()
    if kind < 0.45:
        return [[round(rng.uniform(0, w), rng.choice([0, 2])) for _ in range(2 * rng.randint(3, 7))]
                for _ in range(rng.choice([1, 1, 2, 3]))]
    if kind < 0.6:
        return {"size": [h, w], "counts": [h * w]}
    if kind < 0.75:
        return {"size": [h, w], "counts": rng.choice(["0", "P1", "0`0", "_2"])}  # brackets, quotes
    return []


def random_doc(rng: random.Random) -> dict:
    n_img = rng.randint(0, 6)
    cats = [shuffled(rng, {"id": i, "name": rng.choice(["cat", "dog", text(rng)]), "supercategory": text(rng)})
            for i in rng.sample(range(50), rng.randint(1, 4))]
    images = [shuffled(rng, {"id": i if rng.random() < 0.8 else f"s{i}", "file_name": f"{text(rng)}_{i}.jpg",
                             "height": 5, "width": 6, "extra": {"x": [[1, [2]], text(rng)]}})
              for i in range(n_img)]
    anns = []
    for k in range(rng.randint(0, 14)):
        image_id = rng.choice([im["id"] for im in images] + [999]) if images else 999
        ann = {"id": k, "image_id": image_id, "category_id": rng.choice(cats)["id"],
               "segmentation": random_segmentation(rng, 5, 6), "bbox": [0, 1, 2, 3], "iscrowd": 0}
        if rng.random() < 0.3:
            ann["attributes"] = {text(rng): rng.choice([True, 3, text(rng), [1, [2, {"q": "]"}]]]),
                                 "rotation": rng.choice([0, 30])}
        if rng.random() < 0.1:
            ann["keypoints"] = [1, 2, 2]
        anns.append(shuffled(rng, ann))
    return shuffled(rng, {"info": {"t": text(rng), "n": [[1], {"a": "}"}]}, "images": images,
                          "annotations": anns, "categories": cats, "licenses": []})


def dump(rng: random.Random, doc: dict) -> bytes:
    return json.dumps(doc, ensure_ascii=rng.random() < 0.5, indent=rng.choice([None, 0, 1, "\t"]),
                      separators=rng.choice([None, (",", ":"), (" ,\n", " :  ")])).encode("utf-8")


def oracle_items(doc: dict) -> dict[str, bytes]:
    """file_name -> canonical item JSON, from the whole decoded document."""
    by_image: dict = {}
    for ann in doc["annotations"]:
        by_image.setdefault(ann["image_id"], []).append(ann)
    return {im["file_name"]: json.dumps({"image": im, "annotations": by_image.get(im["id"], [])},
                                        sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()
            for im in doc["images"]}


@pytest.fixture
def small_chunks(monkeypatch):
    def set_chunk(n: int) -> None:
        monkeypatch.setattr(coco, "CHUNK_BYTES", n)
    return set_chunk


@pytest.mark.parametrize("seed", range(40))
def test_streamed_reading_equals_the_whole_document(tmp_path, small_chunks, seed):
    rng = random.Random(seed)
    doc = random_doc(rng)
    data = dump(rng, doc)
    path = tmp_path / "instances_val.json"
    path.write_bytes(data)
    small_chunks(rng.choice([13, 64, 1000, 1 << 20]))
    src = CocoSource.open_source(str(path))
    rows = src.list_items().to_pylist()
    expected = oracle_items(json.loads(data))
    assert sorted(expected) == [r["item"] for r in rows]
    assert {r["item"]: src.item_annotation(r) for r in rows} == expected
    whole = index_coco(json.loads(data))   # the meta a whole-document reading gives
    assert src.read_meta() == meta_from_index(whole)
    orphans = [a for a in doc["annotations"] if a["image_id"] not in {im["id"] for im in doc["images"]}]
    assert any(f"{len(orphans)} annotation(s) point to an image_id" in w for w in src.warnings) == bool(orphans)
    if orphans:
        assert f"annotation id {orphans[0]['id']!r}" in src.warnings[0]


@pytest.mark.parametrize("seed", range(8))
def test_a_truncated_file_is_a_project_error_with_its_offset(tmp_path, small_chunks, seed):
    rng = random.Random(seed)
    data = dump(rng, random_doc(rng)).rstrip()
    path = tmp_path / "instances_val.json"
    small_chunks(rng.choice([50, 1 << 20]))
    for cut in sorted(rng.sample(range(1, len(data)), min(len(data) - 1, 5))):
        path.write_bytes(data[:cut])
        with pytest.raises(ProjectError, match="instances_val.json"):
            CocoSource.open_source(str(path))


@pytest.mark.parametrize("bad, match", [
    (b'{"images": [{"id": 1, "file_name": "a"} {"id": 2}], "categories": []}', r"images\[0\]: expected JSON"),
    (b'{"images": [], "categories": [], "annotations": [{"image_id": 1},]}', r"annotations\[1\]: expected JSON"),
    (b'{"images": [] "categories": []}', "expected"),
    (b'{"images": [], "categories": [],}', "expected a key"),
    (b'{"images": [], "images": [], "categories": []}', "'images': expected it once"),
    (b'{"images": [], "categories": []} []', "expected the end of the file"),
    (b'{"images": [], "categories": [{"id": 1, "name": "a"]}',
     "expected JSON|closes nothing|never closed|closing the list"),
])
def test_a_malformed_document_is_a_project_error(tmp_path, bad, match):
    path = tmp_path / "x.json"
    path.write_bytes(bad)
    with pytest.raises(ProjectError, match=match):
        CocoSource.open_source(str(path))


def test_a_malformed_ring_fails_its_item_alone(tmp_path):
    doc = {"images": [{"id": 1, "file_name": "a.jpg", "height": 5, "width": 5},
                      {"id": 2, "file_name": "b.jpg", "height": 5, "width": 5}],
           "categories": [{"id": 1, "name": "x"}],
           "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "segmentation": [[0, 0, 3, 0, 3, 3]]},
                           {"id": 2, "image_id": 2, "category_id": 1, "segmentation": [[0, 0, 3, 0, 3, 3]]}]}
    data = json.dumps(doc).encode().replace(b"[[0, 0, 3, 0, 3, 3]]}]}", b"[[0, 0, 3, 0, 3, 3x]]}]}")
    path = tmp_path / "instances_val.json"
    path.write_bytes(data)
    src = CocoSource.open_source(str(path))
    rows = src.list_items().to_pylist()
    assert src.parse_annotation(src.item_annotation(rows[0]), src.read_meta(), "val/a.jpg",
                                max_bitmap_pixels=100).labels
    with pytest.raises(AnnotationError, match=r"val/b.jpg/object 0: expected JSON \(at byte \d+"):
        src.item_annotation(rows[1])


def test_a_file_changed_after_listing_fails_its_items(tmp_path):
    doc = {"images": [{"id": 1, "file_name": "a.jpg", "height": 5, "width": 5}], "categories": [],
           "annotations": []}
    path = tmp_path / "instances_val.json"
    path.write_text(json.dumps(doc))
    src = CocoSource.open_source(str(path))
    row = src.list_items().to_pylist()[0]
    path.write_text(json.dumps(doc).replace('"a.jpg"', '"b.jpg"'))
    with pytest.raises(ItemSourceError, match="changed since it was listed"):
        src.item_annotation(row)


def test_the_size_limit_is_an_option(tmp_path):
    path = tmp_path / "instances_val.json"
    path.write_text(json.dumps({"images": [], "categories": []}))
    with pytest.raises(ProjectError, match="expected at most 10 bytes .*max_json_bytes"):
        CocoSource.open_source(str(path), max_json_bytes=10)
    assert coco.DEFAULT_MAX_JSON_BYTES >= 2**36


def test_range_reads_on_s3(s3_server, s3_bucket, small_chunks):
    """On a store, the driver streams the JSON and a worker reads only its item's ranges."""
    rng = random.Random(5)
    doc = random_doc(rng)
    while not doc["images"]:
        doc = random_doc(rng)
    data = dump(rng, doc)
    fs = s3_server.filesystem()
    fs.pipe_file(f"{s3_bucket}/coco/instances_val.json", data)
    small_chunks(4096)
    src = CocoSource.open_source(f"s3://{s3_bucket}/coco/instances_val.json",
                                 storage_options=s3_server.options())
    rows = src.list_items().to_pylist()
    import pickle
    worker = pickle.loads(pickle.dumps(src))
    start = len(s3_server.log.lines)
    assert {r["item"]: worker.item_annotation(r) for r in rows} == oracle_items(json.loads(data))
    gets = [r for r in s3_server.requests(s3_bucket, start) if r.startswith("GET")]
    assert gets and len(gets) <= 2 * len(rows) + 2   # ranges merged: about one GET per item


@pytest.mark.parametrize("seed", range(40))
def test_the_decoded_entries_parse_as_their_bytes(tmp_path, seed):
    """A streamed item's entries, decoded on the way (``item_annotation_decoded``), give the
    Annotation its canonical bytes give (file key order, e.g. of ``attributes``, is not the
    bytes' sorted order), and the bytes are the ones ``item_annotation`` gives (checksums)."""
    from helpers.parsed import parse_outcome
    rng = random.Random(1000 + seed)
    doc = random_doc(rng)
    path = tmp_path / "instances_val.json"
    path.write_bytes(dump(rng, doc))
    src = CocoSource.open_source(str(path))
    meta = src.read_meta()
    expected = oracle_items(doc)
    for row in src.list_items().to_pylist():
        ann = src.item_annotation_decoded(row)
        assert ann.data == expected[row["item"]] and ann.decoded is not None
        parse = src.parse_annotation
        assert (parse_outcome(lambda: parse(ann.data, meta, "w", max_bitmap_pixels=100, decoded=ann.decoded))
                == parse_outcome(lambda: parse(ann.data, meta, "w", max_bitmap_pixels=100)))
