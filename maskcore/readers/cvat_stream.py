"""One streaming pass over a CVAT for images 1.1 XML document: what the driver keeps of it.

``scan_document(chunks, fail)`` feeds the document to expat chunk by chunk and keeps, per
``<image>`` child of the root, a small record (its ``name``, ``subset``, ``id`` and its byte span
in the file), the ``<meta>`` and ``<track>`` subtrees (small: labels; tracks are rare), and the
facts the meta needs (the shape kinds of each label, the attribute names, unlabelled shapes per
image). The images' shapes are never built; a worker reads an image's span and parses it alone
(``image_element_bytes``). Memory is bounded by the number of images, not by the document.

Conventions:
- Byte span of an image: from the ``<`` of ``<image`` to the first byte after its end tag
  (``</image>`` or ``/>``), in bytes of the file as stored (a UTF-8 BOM counts). Expat reports the
  byte index of each event's first byte; the end of an image is the index of the event after its
  end (text, comment, processing instruction, CDATA or tag: there is always one, at least
  ``</annotations>``).
- Safety: the checks of ``cvat_xml.parse_xml``, applied chunk by chunk before expat sees the
  bytes: size (``max_bytes``), NUL bytes, a declared encoding other than UTF-8, invalid UTF-8
  (incremental decoder), ``<!DOCTYPE``/``<!ENTITY`` anywhere (a regex over the chunk and the
  tail of the one before), nesting deeper than ``MAX_XML_DEPTH``. Byte positions in messages are
  absolute. A document failing two checks in different chunks reports the first chunk's.
- Element names as ``xml.etree`` sees them: expat with namespace processing, so a namespaced
  ``<x:image>`` or ``<image xmlns="...">`` is not an image (as ``root.findall("image")``).
- ``image_element_bytes(raw)``: an image's bytes as ``xml.etree`` serialises the element
  (``ET.tostring``), with extra shapes (of tracks) appended: the bytes ``ann_inline`` held when
  the document was parsed whole, so items keep their content checksums.
"""

from __future__ import annotations

import codecs
import re
import xml.etree.ElementTree as ET
from array import array
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from xml.parsers import expat

from ..limits import MAX_XML_DEPTH

_DTD_RE = re.compile(rb"<!(?:DOCTYPE|ENTITY)", re.IGNORECASE)
_ENCODING_RE = re.compile(rb"""<\?xml[^>]*?encoding\s*=\s*["']([^"']*)["']""")
_DTD_OVERLAP = 8   # len(b"<!ENTITY") - 1: a declaration split over two chunks is still found
_UTF8_NAMES = ("utf-8", "utf8", "us-ascii", "ascii")
_ELEMENT_SHAPE = {"box": "rectangle", "polygon": "polygon", "polyline": "line", "points": "point",
                  "mask": "bitmap", "ellipse": "bitmap"}


def shape_kind(tag: str, attrs) -> str:
    """The Supervisely shape a shape element gives (``any`` for a rotated box or another tag)."""
    kind = _ELEMENT_SHAPE.get(tag, "any")
    if tag == "box":
        try:
            rotated = float(attrs.get("rotation") or 0) != 0
        except ValueError:
            rotated = True  # the item fails anyway, when parsed
        if rotated:
            kind = "any"  # a rotated box is not a Supervisely rectangle
    return kind


@dataclass
class Scan:
    """What one pass keeps of a document (see the module docstring)."""
    root_tag: str | None = None
    meta: ET.Element = field(default_factory=lambda: ET.Element("annotations"))  # <meta>s only
    tracks: list[ET.Element] = field(default_factory=list)
    names: list = field(default_factory=list)        # name attribute or None, per image
    subsets: list = field(default_factory=list)      # subset attribute or None
    ids: list = field(default_factory=list)          # id attribute, stripped ("" when absent)
    offsets: array = field(default_factory=lambda: array("q"))
    lengths: array = field(default_factory=lambda: array("q"))
    unlabelled: dict = field(default_factory=dict)   # image index -> shapes with label=""
    shapes_by_label: dict = field(default_factory=dict)
    attribute_names: set = field(default_factory=set)
    size: int = 0                                    # bytes read

    def __len__(self) -> int:
        return len(self.names)


class _Scanner:
    """Expat handlers filling a ``Scan``."""

    def __init__(self, fail: Callable[[str], Exception]) -> None:
        self.fail = fail
        self.scan = Scan()
        self.parser = p = expat.ParserCreate(None, "}")
        p.StartElementHandler = self.start
        p.EndElementHandler = self.end
        p.CommentHandler = self.other
        p.ProcessingInstructionHandler = self.other
        p.StartCdataSectionHandler = self.other
        p.StartDoctypeDeclHandler = self.doctype
        p.EntityDeclHandler = self.entity
        self.depth = 0
        self.in_image = False
        self.child_is_tag = False
        self.pending = False       # an image ended: the next event's index ends its span
        self.builder: ET.TreeBuilder | None = None

    def _texts(self) -> None:
        self.parser.CharacterDataHandler = (self.data if self.pending or self.builder is not None
                                            else None)

    def _close_pending(self) -> None:
        s = self.scan
        s.lengths.append(self.parser.CurrentByteIndex - s.offsets[-1])
        self.pending = False
        self._texts()

    def start(self, tag: str, attrs: dict) -> None:
        if self.pending:
            self._close_pending()
        self.depth += 1
        d = self.depth
        if d > MAX_XML_DEPTH:
            raise self.fail(f"expected elements nested at most {MAX_XML_DEPTH} deep, got "
                            f"<{tag[:40]}> at depth {d}")
        if self.builder is not None:
            self.builder.start(tag, attrs)
        elif d == 1:
            self.scan.root_tag = tag
        elif d == 2:
            if tag == "image":
                s = self.scan
                s.names.append(attrs.get("name"))
                s.subsets.append(attrs.get("subset"))
                s.ids.append((attrs.get("id") or "").strip())
                s.offsets.append(self.parser.CurrentByteIndex)
                self.in_image = True
            elif tag in ("meta", "track"):
                self.builder = ET.TreeBuilder()
                self.builder.start(tag, attrs)
                self._texts()
        elif self.in_image:
            if d == 3:
                self.child_is_tag = tag == "tag"
                if not self.child_is_tag:
                    label = attrs.get("label", "")
                    self.scan.shapes_by_label.setdefault(label, set()).add(shape_kind(tag, attrs))
                    if label == "" and "label" in attrs:
                        i = len(self.scan.names) - 1
                        self.scan.unlabelled[i] = self.scan.unlabelled.get(i, 0) + 1
            elif d == 4 and tag == "attribute" and not self.child_is_tag and attrs.get("name"):
                self.scan.attribute_names.add(attrs["name"])

    def end(self, tag: str) -> None:
        if self.pending:
            self._close_pending()
        if self.builder is not None:
            elem = self.builder.end(tag)
            if self.depth == 2:
                (self.scan.meta.append if elem.tag == "meta" else self.scan.tracks.append)(elem)
                self.builder.close()
                self.builder = None
                self._texts()
        elif self.depth == 2 and self.in_image:
            self.in_image = False
            self.pending = True
            self._texts()
        self.depth -= 1

    def data(self, text: str) -> None:
        if self.pending:
            self._close_pending()
        if self.builder is not None:
            self.builder.data(text)

    def other(self, *_args) -> None:
        if self.pending:
            self._close_pending()

    def doctype(self, *_args) -> None:
        raise self.fail("expected XML without a DTD or entity declarations, got '<!DOCTYPE' "
                        f"at byte {self.parser.CurrentByteIndex} (refused: entities)")

    def entity(self, *_args) -> None:
        raise self.fail("expected XML without a DTD or entity declarations, got '<!ENTITY' "
                        f"at byte {self.parser.CurrentByteIndex} (refused: entities)")


def scan_document(chunks: Iterable[bytes], fail: Callable[[str], Exception], *,
                  max_bytes: int) -> Scan:
    """Stream ``chunks`` (the document's bytes in order) -> ``Scan``; ``fail(reason)`` for what
    ``cvat_xml.parse_xml`` refuses (see module docstring). Root and meta checks are the caller's."""
    scanner = _Scanner(fail)
    decoder = codecs.getincrementaldecoder("utf-8")()
    pos, tail, held = 0, b"", b""
    try:
        for chunk in chunks:
            if not chunk:
                continue
            if pos + len(chunk) > max_bytes:
                raise fail(f"expected at most {max_bytes} bytes of XML, got at least "
                           f"{pos + len(chunk)}")
            _check_chunk(chunk, pos, tail, decoder, fail)
            scanner.parser.Parse(held, False)  # one chunk behind the checks: a declaration
            held = chunk                       # split over two chunks is refused as such
            pos += len(chunk)
            tail = chunk[-_DTD_OVERLAP:]
        _check_end(decoder, pos, fail)
        scanner.parser.Parse(held, True)
    except expat.ExpatError as exc:
        raise fail(f"expected well-formed XML, got {exc}") from None
    if scanner.scan.root_tag is None:
        raise fail("expected an XML document, got no element")
    scanner.scan.size = pos
    return scanner.scan


def check_document_bytes(data: bytes, fail: Callable[[str], Exception]) -> None:
    """The checks of ``scan_document`` on a whole document held in memory."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    _check_chunk(data, 0, b"", decoder, fail)
    _check_end(decoder, len(data), fail)


def _check_end(decoder, pos: int, fail) -> None:
    try:
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        raise fail(f"expected UTF-8 XML, got an invalid byte at "
                   f"{pos - len(decoder.getstate()[0])}") from None


def _check_chunk(chunk: bytes, pos: int, tail: bytes, decoder, fail) -> None:
    if b"\0" in chunk:
        raise fail("expected UTF-8 XML, got NUL bytes (UTF-16 or binary data)")
    if pos == 0:
        declared = _ENCODING_RE.match(chunk[:512].lstrip(b"\xef\xbb\xbf"))
        if declared and declared[1].decode("ascii", "replace").lower() not in _UTF8_NAMES:
            raise fail(f"expected UTF-8 XML, got encoding "
                       f"{declared[1][:40].decode('ascii', 'replace')!r}")
    pending = len(decoder.getstate()[0])
    try:
        decoder.decode(chunk)
    except UnicodeDecodeError as exc:
        raise fail(f"expected UTF-8 XML, got an invalid byte at {pos - pending + exc.start}") from None
    found = _DTD_RE.search(tail + chunk)
    if found:
        raise fail(f"expected XML without a DTD or entity declarations, got "
                   f"{found[0].decode('ascii')!r} at byte {pos - len(tail) + found.start()} "
                   f"(refused: entities)")


def image_element_bytes(image: ET.Element, extra_shapes=()) -> bytes:
    """An ``<image>`` element (with ``extra_shapes`` appended) as ``ann_inline`` holds it."""
    if extra_shapes:
        image.extend(extra_shapes)
    image.tail = None
    return ET.tostring(image, encoding="unicode").encode("utf-8")
