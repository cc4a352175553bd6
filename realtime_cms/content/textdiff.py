"""Small text diffs as replacement ops, three-way rebasing of ops, and applying them to a Y.Text.

An `Op` replaces `old[start:end]` with `text` (code point offsets in the text it was
computed on). `diff` trims the common prefix and suffix, diffs the rest by lines and then
by characters, so a one-character edit in a long text is one op of one character.
`rebase` moves ops made against a base text onto a text others changed meanwhile, keeping
their changes (a three-way merge). `apply_to_ytext` turns ops into Y.Text deletes/inserts.
"""

from __future__ import annotations

import bisect
import difflib
from collections.abc import Sequence
from dataclasses import dataclass

from pycrdt import Text

# Blocks whose character diff would compare more pairs than this are replaced whole once
# their common prefix and suffix are trimmed: difflib is quadratic on characters.
_CHAR_DIFF_LIMIT = 250_000


@dataclass(frozen=True, slots=True)
class Op:
    """Replace `old[start:end]` with `text`; a pure insert has `start == end`."""

    start: int
    end: int
    text: str = ""


def _common_prefix(a: str, b: str) -> int:
    """Length of the common prefix, by bisection on C-speed slice comparisons."""
    low, high = 0, min(len(a), len(b))
    while low < high:
        middle = (low + high + 1) // 2
        if a[:middle] == b[:middle]:
            low = middle
        else:
            high = middle - 1
    return low


def _common_suffix(a: str, b: str) -> int:
    low, high = 0, min(len(a), len(b))
    while low < high:
        middle = (low + high + 1) // 2
        if a[len(a) - middle :] == b[len(b) - middle :]:
            low = middle
        else:
            high = middle - 1
    return low


def _trimmed(a: str, b: str, offset: int) -> tuple[str, str, int]:
    """`a` and `b` without their common prefix and suffix, and where `a`'s rest starts."""
    prefix = _common_prefix(a, b)
    suffix = _common_suffix(a[prefix:], b[prefix:])
    return a[prefix : len(a) - suffix], b[prefix : len(b) - suffix], offset + prefix


def _char_diff(a: str, b: str, offset: int) -> list[Op]:
    a, b, offset = _trimmed(a, b, offset)
    if not a and not b:
        return []
    if not a or not b or len(a) * len(b) > _CHAR_DIFF_LIMIT:
        return [Op(offset, offset + len(a), b)]
    matcher = difflib.SequenceMatcher(None, a, b, autojunk=False)
    return [
        Op(offset + i1, offset + i2, b[j1:j2])
        for tag, i1, i2, j1, j2 in matcher.get_opcodes()
        if tag != "equal"
    ]


def _line_diff(a: str, b: str, offset: int) -> list[Op]:
    a_lines, b_lines = a.splitlines(keepends=True), b.splitlines(keepends=True)
    a_starts = [0]
    for line in a_lines:
        a_starts.append(a_starts[-1] + len(line))
    b_starts = [0]
    for line in b_lines:
        b_starts.append(b_starts[-1] + len(line))
    ops: list[Op] = []
    matcher = difflib.SequenceMatcher(None, a_lines, b_lines, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag != "equal":
            old = a[a_starts[i1] : a_starts[i2]]
            new = b[b_starts[j1] : b_starts[j2]]
            ops.extend(_char_diff(old, new, offset + a_starts[i1]))
    return ops


def _coalesced(ops: Sequence[Op]) -> list[Op]:
    """Join ops that touch, so that the list is strictly ordered and never adjacent."""
    joined: list[Op] = []
    for op in ops:
        if joined and joined[-1].end == op.start:
            last = joined.pop()
            op = Op(last.start, op.end, last.text + op.text)
        joined.append(op)
    return joined


def diff(old: str, new: str) -> list[Op]:
    """Ops turning `old` into `new`, ordered, non-overlapping and never adjacent."""
    a, b, offset = _trimmed(old, new, 0)
    if not a and not b:
        return []
    return _coalesced(_line_diff(a, b, offset))


def apply(text: str, ops: Sequence[Op]) -> str:
    """`text` with the ordered, non-overlapping `ops` applied."""
    parts: list[str] = []
    position = 0
    for op in ops:
        parts.append(text[position : op.start])
        parts.append(op.text)
        position = op.end
    parts.append(text[position:])
    return "".join(parts)


class _Shift:
    """Where base positions are once `theirs` (ordered ops on the base) are applied."""

    def __init__(self, theirs: Sequence[Op]) -> None:
        self._ops = list(theirs)
        self._ends = [op.end for op in self._ops]
        self._deltas = [0]
        for op in self._ops:
            self._deltas.append(self._deltas[-1] + len(op.text) - (op.end - op.start))

    def point(self, position: int) -> int:
        """A gap between base characters; after their text inserted at the same gap."""
        before = bisect.bisect_right(self._ends, position)
        if before < len(self._ops):
            op = self._ops[before]
            if op.start < position:  # inside a range they replaced: after their text
                return op.start + self._deltas[before] + len(op.text)
        return position + self._deltas[before]

    def survivors(self, start: int, end: int) -> list[tuple[int, int]]:
        """The base range's characters they kept, as ranges of the new text."""
        kept: list[tuple[int, int]] = []
        cursor = start
        index = bisect.bisect_right(self._ends, start)
        while cursor < end:
            op = self._ops[index] if index < len(self._ops) else None
            stop = end if op is None else min(end, max(op.start, cursor))
            if stop > cursor:
                shifted = cursor + self._deltas[index]
                kept.append((shifted, shifted + stop - cursor))
            if op is None or op.start >= end:
                break
            cursor = max(cursor, op.end)
            index += 1
        return kept


def rebase(mine: Sequence[Op], theirs: Sequence[Op]) -> list[Op]:
    """`mine` (ops on a base text) as ops on the base with `theirs` applied; theirs are kept.

    My deletes remove only the characters they did not delete themselves; my inserts land
    at the mapped position (after their insert at the same place); an op both sides made
    identically is applied once.
    """
    shift = _Shift(theirs)
    same = set(theirs)
    rebased: list[Op] = []
    for op in mine:
        if op in same:
            continue
        at = shift.point(op.start)
        kept = shift.survivors(op.start, op.end)
        if kept and kept[0][0] == at:
            first_end = kept.pop(0)[1]
            rebased.append(Op(at, first_end, op.text))
        elif op.text:
            rebased.append(Op(at, at, op.text))
        rebased.extend(Op(start, end) for start, end in kept)
    return _coalesced(sorted(rebased, key=lambda op: (op.start, op.end)))


def merge(base: str, mine: str, theirs: str) -> list[Op]:
    """Ops on `theirs` that add my changes from `base` to `mine` (a three-way merge)."""
    return rebase(diff(base, mine), diff(base, theirs))


def apply_to_ytext(ytext: Text, current: str, ops: Sequence[Op]) -> None:
    """Apply ops computed on `current` (the Y.Text's content) as deletes and inserts.

    pycrdt addresses text by UTF-8 byte offsets; ops are applied last first, so the
    offsets of the ones before stay valid.
    """
    spans: list[tuple[int, int, str]] = []
    position = offset = 0
    for op in ops:
        offset += len(current[position : op.start].encode("utf-8"))
        start = offset
        offset += len(current[op.start : op.end].encode("utf-8"))
        spans.append((start, offset, op.text))
        position = op.end
    for start, end, text in reversed(spans):
        if end > start:
            del ytext[start:end]
        if text:
            ytext.insert(start, text)
