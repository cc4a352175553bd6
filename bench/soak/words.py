"""What a soak editor types: a word at its cursor, or 40 characters deleted once the text is
long, so that documents stay small while their history grows an edit at a time."""

from __future__ import annotations

import random

import pycrdt

WORDS = ("lorem", "ipsum", "dolor", "sit", "amet", "soak", "memory", "editor", "room", "crdt")
# Past this many characters an edit deletes instead: what the server holds for the text
# itself stays a constant, not part of the slope.
MAX_CHARS = 4000


def type_once(text: pycrdt.Text, cursor: int, rng: random.Random) -> int:
    """One edit of `text` at `cursor` (moved now and then); returns the cursor after it."""
    length = len(text)
    if cursor > length or rng.random() < 0.05:
        cursor = rng.randint(0, length)
    if length > MAX_CHARS:
        start = rng.randint(0, length - 40)
        del text[start : start + 40]
        return start
    word = rng.choice(WORDS) + " "
    text.insert(cursor, word)
    return cursor + len(word)
