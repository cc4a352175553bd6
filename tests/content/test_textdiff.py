"""Text diffs: exact, small, rebased three-way onto concurrent edits, and applied to a Y.Text."""

from __future__ import annotations

import pycrdt
from hypothesis import given, settings
from hypothesis import strategies as st

from realtime_cms.content.textdiff import Op, apply, apply_to_ytext, diff, merge, rebase

# Few letters (so texts share runs), line breaks, and characters of 2, 3 and 4 UTF-8 bytes.
ALPHABET = st.sampled_from(list("ab \n") + ["é", "€", "😀"])
TEXTS = st.text(ALPHABET, max_size=60)


@st.composite
def edited(draw: st.DrawFn, base: str) -> str:
    """`base` after a few random inserts and deletes."""
    text = base
    for _ in range(draw(st.integers(0, 4))):
        start = draw(st.integers(0, len(text)))
        end = draw(st.integers(start, min(len(text), start + 6)))
        text = text[:start] + draw(st.text(ALPHABET, max_size=5)) + text[end:]
    return text


def in_ytext(old: str, ops: list[Op]) -> str:
    doc: pycrdt.Doc = pycrdt.Doc()
    text = doc.get("body", type=pycrdt.Text)
    text.insert(0, old)
    with doc.transaction():
        apply_to_ytext(text, old, ops)
    return str(text)


@settings(max_examples=300, deadline=None)
@given(TEXTS, TEXTS)
def test_applying_the_diff_gives_the_new_text_in_python_and_in_a_ytext(old: str, new: str) -> None:
    ops = diff(old, new)
    assert apply(old, ops) == new
    assert in_ytext(old, ops) == new
    assert all(a.end < b.start for a, b in zip(ops, ops[1:], strict=False))


@settings(max_examples=200, deadline=None)
@given(TEXTS, st.integers(0, 60), st.sampled_from(["x", "😀", "\n"]))
def test_inserting_one_character_is_one_insert_of_it(text: str, at: int, char: str) -> None:
    at = min(at, len(text))
    ops = diff(text, text[:at] + char + text[at:])
    assert len(ops) == 1 and ops[0].text == char and ops[0].start == ops[0].end


def test_an_edit_in_a_long_text_touches_only_what_changed() -> None:
    old = "".join(f"line {n} of a long document\n" for n in range(2000))
    new = old.replace("line 1500 of", "line 1500 (edited) of")
    [op] = diff(old, new)
    assert (op.end - op.start, len(op.text), apply(old, [op])) == (0, len(" (edited)"), new)
    assert diff(old, old) == []


@settings(max_examples=300, deadline=None)
@given(st.data(), TEXTS)
def test_a_merge_keeps_both_sides_edits(data: st.DataObject, base: str) -> None:
    mine, theirs = data.draw(edited(base)), data.draw(edited(base))
    merged = apply(theirs, merge(base, mine, theirs))
    assert in_ytext(theirs, merge(base, mine, theirs)) == merged
    if mine == base:
        assert merged == theirs
    if theirs == base:
        assert merged == mine


@settings(max_examples=300, deadline=None)
@given(st.data(), TEXTS, TEXTS)
def test_edits_on_either_side_of_an_untouched_line_both_survive(
    data: st.DataObject, head: str, tail: str
) -> None:
    middle = "\n# untouched #\n"
    my_head, their_tail = data.draw(edited(head)), data.draw(edited(tail))
    base, mine, theirs = head + middle + tail, my_head + middle + tail, head + middle + their_tail
    assert apply(theirs, merge(base, mine, theirs)) == my_head + middle + their_tail


def test_edits_at_both_ends_merge_into_one_text() -> None:
    base = "The quick brown fox jumps over the lazy dog."
    theirs = "Today the quick brown fox jumps over the lazy dog."
    mine = "The quick brown fox jumps over the lazy cat!"
    assert (
        apply(theirs, merge(base, mine, theirs))
        == "Today the quick brown fox jumps over the lazy cat!"
    )


def test_their_typing_inside_a_range_i_delete_is_kept() -> None:
    base = "keep DELETE ME keep"
    theirs = "keep DELETE new ME keep"
    mine = "keep  keep"
    assert apply(theirs, merge(base, mine, theirs)) == "keep new  keep"


def test_the_same_fix_on_both_sides_is_applied_once() -> None:
    base, fixed = "teh cat", "the cat"
    assert apply(fixed, merge(base, fixed, fixed)) == fixed


def test_my_insert_lands_after_theirs_at_the_same_place() -> None:
    assert rebase([Op(2, 2, "M")], [Op(2, 2, "T")]) == [Op(3, 3, "M")]
