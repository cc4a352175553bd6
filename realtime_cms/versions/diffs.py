"""The readable diff between two versions: unified-style line hunks and field changes."""

from __future__ import annotations

import difflib
import json
from typing import Any

from realtime_cms.models.versions import Version
from realtime_cms.versions.schemas import FieldChange, Hunk, VersionDiff, VersionRef
from realtime_cms.versions.storage import Content, hash_of

CONTEXT_LINES = 3


def _hunk(group: list[tuple[str, int, int, int, int]], old: list[str], new: list[str]) -> Hunk:
    lines: list[str] = []
    for tag, i1, i2, j1, j2 in group:
        if tag == "equal":
            lines.extend(" " + line for line in old[i1:i2])
            continue
        lines.extend("-" + line for line in old[i1:i2])
        lines.extend("+" + line for line in new[j1:j2])
    first, last = group[0], group[-1]
    return Hunk(
        old_start=first[1] + 1,
        old_lines=last[2] - first[1],
        new_start=first[3] + 1,
        new_lines=last[4] - first[3],
        lines=lines,
    )


def text_hunks(old: str, new: str, context: int = CONTEXT_LINES) -> list[Hunk]:
    """Line hunks turning `old` into `new`, each with up to `context` unchanged lines."""
    old_lines, new_lines = old.splitlines(), new.splitlines()
    matcher = difflib.SequenceMatcher(None, old_lines, new_lines)
    return [_hunk(group, old_lines, new_lines) for group in matcher.get_grouped_opcodes(context)]


def _same(a: Any, b: Any) -> bool:
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def field_changes(old: dict[str, Any], new: dict[str, Any]) -> list[FieldChange]:
    changes = []
    for name in sorted(old.keys() | new.keys()):
        if name not in new:
            changes.append(FieldChange(field=name, change="removed", old=old[name]))
        elif name not in old:
            changes.append(FieldChange(field=name, change="added", new=new[name]))
        elif not _same(old[name], new[name]):
            changes.append(FieldChange(field=name, change="changed", old=old[name], new=new[name]))
    return changes


def _ref(version: Version, content: Content) -> VersionRef:
    return VersionRef(
        id=version.id, version_number=version.version_number, content_hash=hash_of(content)
    )


def diff_contents(
    old_version: Version, old: Content, new_version: Version, new: Content
) -> VersionDiff:
    return VersionDiff(
        from_version=_ref(old_version, old),
        to_version=_ref(new_version, new),
        hunks=text_hunks(old.body, new.body),
        fields=field_changes(dict(old.fields), dict(new.fields)),
    )
