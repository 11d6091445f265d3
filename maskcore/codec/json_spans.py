"""Byte spans of a JSON document's structure, found chunk by chunk with numpy (no Python objects).

A structural scanner in the manner of simdjson's first stage, written with vectorised numpy: per
chunk, the quotes that are not escaped (a quote after an odd run of backslashes is), the in-string
parity of every byte (a running count of quotes), then the structural bytes ``{ [ } ] , :`` that
lie outside strings and their nesting depth (a running sum of +1 / -1). It keeps its state (inside
a string, depth, a trailing backslash run) between chunks, so a document of any size is scanned in
memory bounded by the chunk.

Conventions:
- Positions are byte offsets from the start of the document (the first chunk), int64.
- The *depth before* a byte is the number of containers open when it is reached: the root
  object's ``{`` is at depth 0, its keys' ``:`` and ``,`` at depth 1, the ``,`` between the
  elements of a top-level array at depth 2.
- The scanner checks the structure only: brackets balance, strings are closed, nothing follows
  the root value. The text between structural bytes (keys, numbers, literals) is for a JSON parser
  to check (the caller parses the spans it takes).

Errors: ``JsonSpanError`` (a ``ValueError``) with the byte offset where the structure breaks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

OPEN_OBJECT, OPEN_ARRAY, CLOSE_OBJECT, CLOSE_ARRAY, COMMA, COLON = 1, 2, -1, -2, 3, 4
"""Codes of the structural bytes in ``Tokens.code``."""

_CODES = np.zeros(256, np.int8)
for _byte, _code in ((b"{", OPEN_OBJECT), (b"[", OPEN_ARRAY), (b"}", CLOSE_OBJECT),
                     (b"]", CLOSE_ARRAY), (b",", COMMA), (b":", COLON)):
    _CODES[_byte[0]] = _code
_IS_BRACKET = np.zeros(256, bool)
_IS_BRACKET[list(b"{[]}")] = True
_IS_SEPARATOR = np.zeros(256, bool)
_IS_SEPARATOR[list(b",:")] = True
_WHITESPACE = np.zeros(256, bool)
_WHITESPACE[list(b" \t\r\n")] = True

_QUOTE, _BACKSLASH = ord('"'), ord("\\")


def _outside(pos: np.ndarray, quotes: np.ndarray, in_string: int) -> np.ndarray:
    """Which of ``pos`` lie outside strings, given the chunk's real quotes and its start state."""
    if not quotes.size:
        return np.full(pos.size, not in_string)
    return ((np.searchsorted(quotes, pos) + in_string) & 1) == 0


class JsonSpanError(ValueError):
    """The document's structure is broken at ``offset`` (bytes from its start)."""

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(f"{message} (at byte {offset})")
        self.offset = offset


@dataclass(frozen=True)
class Tokens:
    """The structural bytes of one chunk that the caller asked for, in document order.

    ``pos``, ``code`` (``OPEN_OBJECT`` ...) and ``depth`` (depth before the byte) of every
    structural byte at depth at most ``shallow`` (brackets: opening from, or closing back to, a
    depth below ``shallow``); ``cut_open`` / ``cut_close``: positions of the brackets that open a
    container at depth ``cut`` + 1 and of those that close one back to depth ``cut`` (the outermost
    containers below depth ``cut``, which never nest, so the i-th open pairs with the i-th close
    over the whole document)."""

    pos: np.ndarray
    code: np.ndarray
    depth: np.ndarray
    cut_open: np.ndarray
    cut_close: np.ndarray


def is_whitespace(data) -> bool:
    """Whether ``data`` (bytes-like) is empty or JSON whitespace only."""
    return bool(_WHITESPACE[np.frombuffer(data, np.uint8)].all())


class StructureScanner:
    """Feed a document chunk by chunk (``feed``), then ``finish``; see the module docstring."""

    def __init__(self, *, shallow: int = 2, cut: int = 4) -> None:
        self.shallow, self.cut = shallow, cut
        self.offset = 0          # position of the next chunk's first byte
        self._in_string = 0
        self._depth = 0
        self._backslashes = 0    # length of the backslash run that ended the previous chunk
        self._closed_at = -1     # where the root value closed

    def feed(self, chunk: bytes) -> Tokens:
        """The structural bytes of the next ``chunk`` (see ``Tokens``).

        Brackets first (few: one per container), their depths by a running sum; then commas and
        colons only inside the stretches between brackets that lie at depth <= ``shallow`` (in a
        COCO file, the few bytes between two entries), never among a polygon's numbers."""
        a = np.frombuffer(chunk, np.uint8)
        base = self.offset
        self.offset += len(a)
        quotes = self._real_quotes(a, chunk)
        in_string = self._in_string
        self._in_string ^= quotes.size & 1
        pos = np.flatnonzero(_IS_BRACKET[a])
        pos = pos[_outside(pos, quotes, in_string)]
        code = _CODES[a[pos]]
        delta = np.where(code > 0, 1, -1)
        after = np.cumsum(delta)
        after += self._depth
        before = after - delta
        depth_in = np.concatenate([[self._depth], after])   # depth of each stretch between brackets
        if pos.size:
            self._check_balance(a, pos, after, delta, base)
            self._depth = int(after[-1])
        elif self._closed_at >= 0 and not _WHITESPACE[a].all():
            self._trailing(a, base)
        sep, sep_depth = self._separators(a, pos, depth_in, quotes, in_string)
        keep = np.where(delta > 0, before < self.shallow, after < self.shallow)
        cut_open = pos[(delta > 0) & (before == self.cut)] + base
        cut_close = pos[(delta < 0) & (after == self.cut)] + base
        all_pos = np.concatenate([pos[keep], sep])
        order = np.argsort(all_pos, kind="stable")
        return Tokens(all_pos[order] + base, np.concatenate([code[keep], _CODES[a[sep]]])[order],
                      np.concatenate([before[keep], sep_depth])[order], cut_open, cut_close)

    def _separators(self, a, pos, depth_in, quotes, in_string) -> tuple[np.ndarray, np.ndarray]:
        """Positions and depths of the commas and colons outside strings in the stretches between
        brackets whose depth is at most ``shallow``."""
        starts = np.concatenate([[0], pos + 1])
        ends = np.concatenate([pos, [a.size]])
        take = (depth_in <= self.shallow) & (ends > starts)
        starts, ends, depths = starts[take], ends[take], depth_in[take]
        lengths = ends - starts
        small = lengths <= 4096
        found, found_depth = [], []
        if small.any():   # the short stretches at once: their bytes gathered into one array
            s, n, d = starts[small], lengths[small], depths[small]
            total = int(n.sum())
            idx = np.arange(total) + np.repeat(s - (np.cumsum(n) - n), n)
            hit = _IS_SEPARATOR[a[idx]]
            found.append(idx[hit])
            found_depth.append(np.repeat(d, n)[hit])
        for s, e, d in zip(starts[~small].tolist(), ends[~small].tolist(), depths[~small].tolist()):
            hit = np.flatnonzero(_IS_SEPARATOR[a[s:e]]) + s
            found.append(hit)
            found_depth.append(np.full(hit.size, d, np.int64))
        if not found:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        sep, sep_depth = np.concatenate(found), np.concatenate(found_depth)
        outside = _outside(sep, quotes, in_string)
        return sep[outside], sep_depth[outside]

    def finish(self) -> None:
        """``JsonSpanError`` unless the document ended with its root value closed."""
        if self._in_string:
            raise JsonSpanError("expected JSON, got a string that is never closed: the file ends "
                                "inside it (truncated?)", self.offset)
        if self._depth:
            raise JsonSpanError(f"expected JSON, got {self._depth} bracket(s) never closed: the "
                                f"file ends inside them (truncated?)", self.offset)
        if self._closed_at < 0:
            raise JsonSpanError("expected a JSON object or array, got none", self.offset)

    def _real_quotes(self, a: np.ndarray, chunk: bytes) -> np.ndarray:
        """Positions of the quotes of ``a`` that are not escaped; updates the backslash carry."""
        quotes = np.flatnonzero(a == _QUOTE)
        carry, self._backslashes = self._backslashes, 0
        if chunk.find(b"\\") < 0:
            if carry % 2 and quotes.size and quotes[0] == 0:
                quotes = quotes[1:]
            return quotes
        bs = np.flatnonzero(a == _BACKSLASH)
        breaks = np.flatnonzero(np.diff(bs) != 1)
        starts = np.concatenate([bs[:1], bs[breaks + 1]])
        ends = np.concatenate([bs[breaks], bs[-1:]]) + 1
        runs = ends - starts
        if starts[0] == 0:
            runs[0] += carry
        elif carry % 2 and quotes.size and quotes[0] == 0:
            quotes = quotes[1:]
        if ends[-1] == len(a):
            self._backslashes = int(runs[-1])
        escaped = ends[runs % 2 == 1]
        return quotes[~np.isin(quotes, escaped)]

    def _check_balance(self, a, pos, after, delta, base) -> None:
        if self._closed_at >= 0:
            self._trailing(a, base)
        low = np.flatnonzero(after < 0)
        if low.size:
            raise JsonSpanError("expected JSON, got a closing bracket that closes nothing",
                                base + int(pos[low[0]]))
        closed = np.flatnonzero((after == 0) & (delta < 0))
        if closed.size:
            self._closed_at = base + int(pos[closed[0]])
            rest = a[pos[closed[0]] + 1:]
            if not _WHITESPACE[rest].all():
                self._trailing(rest, base + int(pos[closed[0]]) + 1)

    def _trailing(self, a: np.ndarray, base: int) -> None:
        first = int(np.flatnonzero(~_WHITESPACE[a])[0])
        raise JsonSpanError(f"expected the end of the file after the JSON value that closed at byte "
                            f"{self._closed_at}, got more data", base + first)
