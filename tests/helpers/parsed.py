"""What parsing an annotation gives, as a comparable value: an ``Annotation`` as the Supervisely
JSON it is written as plus its labels' identity (class, object index, tags, z-order), or the
error it raised (type and message). Two ways of parsing one item must give equal outcomes."""

from __future__ import annotations

from collections.abc import Callable

from maskcore.codec.sly_json import annotation_json_bytes


def parse_outcome(parse: Callable[[], object]) -> tuple:
    try:
        ann = parse()
    except Exception as exc:  # noqa: BLE001 - the outcome compared is the error itself
        return ("error", type(exc).__name__, str(exc))
    labels = [(lb.class_title, lb.object_index, lb.tags, lb.z_order) for lb in ann.labels]
    return ("ok", ann.size_hw, annotation_json_bytes(ann), labels, ann.tags, ann.raw)
