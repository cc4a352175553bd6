"""`@name` mentions in an item's body: which usernames a text mentions."""

from __future__ import annotations

import re

# `@name` not preceded by a word character or `@` (so e-mail addresses are not mentions);
# usernames are 3-50 of letters, digits, `_`, `.`, `-` (a trailing `.` or `-` ends a sentence).
_MENTION = re.compile(r"(?<![\w@.])@([A-Za-z0-9_][A-Za-z0-9_.-]{1,49})")


def mentions(text: str) -> set[str]:
    """The usernames `text` mentions (`@name`)."""
    names = (match.rstrip(".-") for match in _MENTION.findall(text or ""))
    return {name for name in names if len(name) >= 3}


def added_mentions(old: str | None, new: str) -> frozenset[str]:
    """The usernames `new` mentions and `old` did not: a mention counts once, however often
    the body is stored while people type around it."""
    return frozenset(mentions(new) - mentions(old or ""))
