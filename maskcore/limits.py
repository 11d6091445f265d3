"""Every size, pixel and coordinate limit of maskcore, defined once.

A limit is a policy: how much of an untrusted input is read, decoded or allocated before the item
(or the project) is refused. Each one is checked against *declared* sizes (a listing, a header)
before the bytes are read or the memory allocated, and its breach is a ``LimitError`` for one
item or a ``ProjectError`` for the project. Modules import the names they use from here (a test
may still patch ``module.NAME`` where the module reads it). Limits that are facts of a format
(PNG's 2**31 - 1 chunk length, ustar's 11 octal digits, zip64 fields) live with their codec.
"""

from __future__ import annotations

# --- pixels ------------------------------------------------------------------------------------

MAX_PIXELS = 2**28
"""Largest raster (width x height) allocated for one item: an annotation's canvas, a decoded image,
a decoded bitmap or mask PNG. 2**28 pixels (16384 x 16384): a worker peaks at about 26 bytes per
canvas pixel (README, memory), so ~7 GiB, what one worker of a 8-16 GiB machine holds. The layouts'
option ``max_canvas_pixels`` (``--max-canvas-pixels``) changes it for a run; readers then bound
bitmaps by the same value."""

# --- coordinates -------------------------------------------------------------------------------

MAX_COORD = 2**31
"""Largest magnitude of a coordinate, and largest canvas side, read from an annotation
(Supervisely JSON, COCO, CVAT XML, the VOC framing). The drawing kernel works in OpenCV's int32
fixed point, as the reference does; a larger value is malformed data, refused with its item."""

COCO_RULE_MAX_COORD = 2.0**40
"""Exclusive bound on a coordinate's magnitude in the COCO polygon rule (``kernel.coco_rule``): a
kernel's exact range, not an input policy. The rule scales by 5 and rounds in float64, then
walks edges in int64; below 2**40 the scaled value (< 2**43) is an exact float64 integer and
every product of two differences fits int64. Readers refuse far smaller values (``MAX_COORD``)."""

# --- bytes read whole --------------------------------------------------------------------------

MAX_ANNOTATION_BYTES = 2**28
"""Largest annotation read for one item (Supervisely ``ann/<item>.json``, the inline part of a
COCO or CVAT item, VOC masks), by its listed size: 256 MiB. It is read and parsed whole on a
worker, and parsed JSON takes several times its size."""

MAX_PNG_BYTES = 2**28
"""Largest PNG inside a Supervisely bitmap once its zlib layer is removed (256 MiB), on top of the
bound its declared size gives: bitmaps are mostly runs of one value and compress to a fraction of
their pixels, so more is a zlib bomb."""

DEFAULT_MAX_JSON_BYTES = 2**36
"""Largest COCO instances JSON (reader option ``max_json_bytes``): 64 GiB, by its listed size. It is
streamed (``readers.coco_index``): the driver keeps per image its id, name and byte spans and per
annotation ~50 bytes of numpy columns (~0.6 GiB of driver memory per 10 M annotations, BENCHMARKS.md
"Issue 17: one-file sources (COCO)"), and one pass costs time in proportion to the size."""

DEFAULT_MAX_XML_BYTES = 2**30
"""Largest CVAT ``annotations.xml`` (reader option ``max_xml_bytes``): 1 GiB, parsed whole on the
driver."""

MAX_XML_DEPTH = 32
"""Deepest element nesting accepted in CVAT XML: CVAT writes at most about 8 levels; a deeper
document is a parser bomb (each level costs a Python frame)."""

MAX_TEXT_BYTES = 2**26
"""Largest ``labelmap.txt`` or image list read (Segmentation mask 1.1), by its listed size: 64 MiB,
read whole on the driver (a million ids is about 20 MiB)."""

MAX_TAR_HEADER_BYTES = 1 << 20
"""Largest GNU long-name / long-link or pax extended header body read while scanning a tar: 1 MiB.
Such a header holds one path (at most a few KiB on any file system); more is an archive bomb."""

# --- zip archives ------------------------------------------------------------------------------

MAX_ZIP_MEMBER_BYTES = 2**31
"""Largest declared (uncompressed) size of one zip member: 2 GiB, more than any image or
annotation; a member is decompressed whole, in memory."""

MAX_ZIP_TOTAL_BYTES = 2**36
"""Largest declared total (uncompressed) of a zip's members: 64 GiB."""

MAX_ZIP_RATIO = 1000
"""Largest compression ratio (``file_size / compress_size``) of a zip member of 1 MiB or more:
deflate reaches ~1030 at best, so more is a crafted bomb."""
