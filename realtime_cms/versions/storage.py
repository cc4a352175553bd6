"""Version storage without a database: canonical content, hashes, compact deltas, chains.

A version's content is a body (text) and its fields (a JSON object). Its canonical form is
JSON with sorted keys and no insignificant whitespace; `content_hash` is the SHA-256 hex of
that form's UTF-8 bytes. A version is stored either as that canonical text (a full copy)
or as a delta (`rcms-delta-v1`) from the version before it in its chain:

    {"b": [ops], "s": {field: new value}, "d": [removed field]}

`b` edits the body: a positive integer keeps that many characters, a negative one deletes
that many, a string inserts it; whatever follows the last op is kept. Keys with nothing to
say are left out, so "{}" is a version equal to its predecessor.
"""

from __future__ import annotations

import difflib
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

DIFF_FORMAT = "rcms-delta-v1"
# A full copy at least every this many versions bounds how many deltas a read applies.
FULL_EVERY = 20
# Character matching of a changed block costs up to len(old) * len(new): bigger blocks, and
# blocks past a per-delta budget, are stored as delete + insert (exact, just less compact).
_CHAR_DIFF_MAX_PRODUCT = 1_000_000
_CHAR_DIFF_BUDGET = 8_000_000

Op = int | str


class CorruptVersion(ValueError):
    """Stored version data that does not decode, apply, or match its hash."""


@dataclass(frozen=True, slots=True)
class Content:
    """What a version holds: the body and the field values (title, slug, custom fields...)."""

    body: str
    fields: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Encoded:
    """The `version_content` columns of one version."""

    content: str
    content_hash: str
    diff_content: str | None
    diff_format: str | None
    is_full_content: bool


class StoredRow(Protocol):
    """The `version_content` columns a reconstruction reads."""

    @property
    def content(self) -> str: ...

    @property
    def content_hash(self) -> str: ...

    @property
    def diff_content(self) -> str | None: ...

    @property
    def is_full_content(self) -> bool | None: ...


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def canonical(content: Content) -> str:
    """The one serialization of `content` that its hash is taken of."""
    return _dumps({"body": content.body, "fields": dict(content.fields)})


def hash_of(content: Content) -> str:
    return hashlib.sha256(canonical(content).encode("utf-8")).hexdigest()


def parse_canonical(text: str) -> Content:
    try:
        data = json.loads(text)
        body, fields = data["body"], data["fields"]
    except (ValueError, TypeError, KeyError) as exc:
        raise CorruptVersion("a full copy is not canonical content JSON") from exc
    if not isinstance(body, str) or not isinstance(fields, dict):
        raise CorruptVersion("a full copy is not canonical content JSON")
    return Content(body, fields)


def _common_prefix(a: str, b: str) -> int:
    """Length of the common prefix, by bisection over C-speed slice comparisons."""
    low, high = 0, min(len(a), len(b))
    while low < high:
        mid = (low + high + 1) // 2
        if a[:mid] == b[:mid]:
            low = mid
        else:
            high = mid - 1
    return low


def _common_suffix(a: str, b: str, limit: int) -> int:
    low, high = 0, min(len(a), len(b), limit)
    while low < high:
        mid = (low + high + 1) // 2
        if a[len(a) - mid :] == b[len(b) - mid :]:
            low = mid
        else:
            high = mid - 1
    return low


class _Ops:
    """Builds an op list, merging neighbours of the same kind."""

    def __init__(self) -> None:
        self.ops: list[Op] = []
        self.budget = _CHAR_DIFF_BUDGET

    def keep(self, count: int) -> None:
        self._add(count, lambda last: isinstance(last, int) and last > 0)

    def delete(self, count: int) -> None:
        self._add(-count, lambda last: isinstance(last, int) and last < 0)

    def insert(self, text: str) -> None:
        self._add(text, lambda last: isinstance(last, str))

    def _add(self, op: Op, same: Any) -> None:
        if not op:
            return
        if self.ops and same(self.ops[-1]):
            self.ops[-1] = self.ops[-1] + op  # type: ignore[operator]
        else:
            self.ops.append(op)

    def finished(self) -> list[Op]:
        """The ops without a trailing keep (the rest of the text is kept anyway)."""
        ops = self.ops
        while ops and isinstance(ops[-1], int) and ops[-1] > 0:
            ops.pop()
        return ops


def _replace(ops: _Ops, a: str, b: str) -> None:
    """Ops turning `a` into `b`: character matching when the block is small enough."""
    head = _common_prefix(a, b)
    tail = _common_suffix(a, b, min(len(a), len(b)) - head)
    ops.keep(head)
    a_mid, b_mid = a[head : len(a) - tail], b[head : len(b) - tail]
    cost = len(a_mid) * len(b_mid)
    if a_mid and b_mid and cost <= min(_CHAR_DIFF_MAX_PRODUCT, ops.budget):
        ops.budget -= cost
        matcher = difflib.SequenceMatcher(None, a_mid, b_mid, autojunk=False)
        for tag, i1, i2, j1, j2 in matcher.get_opcodes():
            if tag == "equal":
                ops.keep(i2 - i1)
            else:
                ops.delete(i2 - i1)
                ops.insert(b_mid[j1:j2])
    else:
        ops.delete(len(a_mid))
        ops.insert(b_mid)
    ops.keep(tail)


def body_ops(old: str, new: str) -> list[Op]:
    """A compact edit script from `old` to `new`: lines matched first, then characters."""
    ops = _Ops()
    head = _common_prefix(old, new)
    tail = _common_suffix(old, new, min(len(old), len(new)) - head)
    ops.keep(head)
    a, b = old[head : len(old) - tail], new[head : len(new) - tail]
    a_lines, b_lines = a.splitlines(keepends=True), b.splitlines(keepends=True)
    matcher = difflib.SequenceMatcher(None, a_lines, b_lines)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        a_part, b_part = "".join(a_lines[i1:i2]), "".join(b_lines[j1:j2])
        if tag == "equal":
            ops.keep(len(a_part))
        else:
            _replace(ops, a_part, b_part)
    ops.keep(tail)
    return ops.finished()


def apply_ops(old: str, ops: Iterable[Any]) -> str:
    """`old` edited by `ops`; CorruptVersion when they do not fit it."""
    parts: list[str] = []
    pos = 0
    for op in ops:
        if isinstance(op, str):
            parts.append(op)
        elif isinstance(op, int) and not isinstance(op, bool) and op != 0:
            end = pos + abs(op)
            if end > len(old):
                raise CorruptVersion("a delta runs past the end of its base text")
            if op > 0:
                parts.append(old[pos:end])
            pos = end
        else:
            raise CorruptVersion(f"not a delta op: {op!r}")
    parts.append(old[pos:])
    return "".join(parts)


def make_delta(old: Content, new: Content) -> str:
    """The `rcms-delta-v1` text turning `old` into `new`."""
    delta: dict[str, Any] = {}
    ops = body_ops(old.body, new.body) if old.body != new.body else []
    if ops:
        delta["b"] = ops
    changed = {
        key: value
        for key, value in new.fields.items()
        if key not in old.fields or _dumps(old.fields[key]) != _dumps(value)
    }
    if changed:
        delta["s"] = changed
    removed = sorted(key for key in old.fields if key not in new.fields)
    if removed:
        delta["d"] = removed
    return _dumps(delta)


def apply_delta(old: Content, delta_text: str) -> Content:
    """`old` with an `rcms-delta-v1` delta applied."""
    try:
        delta = json.loads(delta_text)
    except ValueError as exc:
        raise CorruptVersion("a delta is not JSON") from exc
    if not isinstance(delta, dict):
        raise CorruptVersion("a delta is not a JSON object")
    ops, changed, removed = delta.get("b", []), delta.get("s", {}), delta.get("d", [])
    if not isinstance(ops, list) or not isinstance(changed, dict) or not isinstance(removed, list):
        raise CorruptVersion("a delta has malformed parts")
    fields = {key: value for key, value in old.fields.items() if key not in removed}
    fields.update(changed)
    return Content(apply_ops(old.body, ops), fields)


def encode(
    new: Content, previous: Content | None, *, depth: int, full_every: int = FULL_EVERY
) -> Encoded:
    """Store `new` as a delta from `previous` (whose chain already holds `depth` deltas),
    or as a full copy: when there is no previous version, when the chain would reach
    `full_every` versions, or when the delta would not be smaller than the copy."""
    text = canonical(new)
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    if previous is not None and depth + 1 < full_every:
        delta = make_delta(previous, new)
        if len(delta.encode("utf-8")) < len(text.encode("utf-8")):
            return Encoded("", digest, delta, DIFF_FORMAT, False)
    return Encoded(text, digest, None, None, True)


def replay(chain: Sequence[StoredRow]) -> Content:
    """The content of the last row of `chain` (a full copy, then the deltas after it, in
    order), checked against its hash."""
    if not chain or not chain[0].is_full_content:
        raise CorruptVersion("a version chain must start with a full copy")
    content = parse_canonical(chain[0].content)
    for row in chain[1:]:
        if row.is_full_content or row.diff_content is None:
            raise CorruptVersion("a delta row without a delta")
        content = apply_delta(content, row.diff_content)
    if hash_of(content) != chain[-1].content_hash:
        raise CorruptVersion("a reconstructed version does not match its hash")
    return content
