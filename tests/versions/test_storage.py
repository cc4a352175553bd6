"""Version storage: exact reconstruction over random edit histories, compact deltas."""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from realtime_cms.versions.storage import (
    DIFF_FORMAT,
    Content,
    CorruptVersion,
    Encoded,
    apply_delta,
    apply_ops,
    body_ops,
    canonical,
    encode,
    hash_of,
    make_delta,
    replay,
)

BENCH_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "bench-data"
# Real text plus the characters that break naive code: astral, combining, newlines.
ALPHABET = st.sampled_from(list("ab \n\r\t#*-é") + ["😀", "\u0301", "\u2028", "字"])
TEXT = st.text(ALPHABET, max_size=60)
FIELD_VALUES = st.one_of(st.none(), st.booleans(), st.integers(), TEXT, st.lists(TEXT, max_size=3))
FIELDS = st.dictionaries(st.sampled_from(["title", "slug", "excerpt", "seo_title"]), FIELD_VALUES)


def chain_of(rows: list[Encoded], index: int) -> list[Encoded]:
    """Rows from the full copy that version `index` depends on, up to it."""
    start = index
    while not rows[start].is_full_content:
        start -= 1
    return rows[start : index + 1]


def store_history(history: list[Content], full_every: int) -> list[Encoded]:
    rows: list[Encoded] = []
    depth = 0
    for index, content in enumerate(history):
        previous = history[index - 1] if index else None
        row = encode(content, previous, depth=depth, full_every=full_every)
        depth = 0 if row.is_full_content else depth + 1
        rows.append(row)
    return rows


@st.composite
def edit_histories(draw: st.DrawFn) -> list[Content]:
    body = draw(TEXT)
    history = [Content(body, draw(FIELDS))]
    for _ in range(draw(st.integers(0, 12))):
        for _ in range(draw(st.integers(0, 4))):
            start = draw(st.integers(0, len(body)))
            end = draw(st.integers(start, min(len(body), start + 10)))
            body = body[:start] + draw(TEXT) + body[end:]
        history.append(Content(body, draw(FIELDS)))
    return history


@settings(max_examples=300, deadline=None)
@given(history=edit_histories(), full_every=st.integers(1, 5))
def test_every_version_of_a_random_history_reconstructs_exactly(
    history: list[Content], full_every: int
) -> None:
    rows = store_history(history, full_every)
    for index, content in enumerate(history):
        rebuilt = replay(chain_of(rows, index))
        assert canonical(rebuilt) == canonical(content)
        assert rows[index].content_hash == hash_of(content)
        assert len(chain_of(rows, index)) <= full_every


@settings(max_examples=300, deadline=None)
@given(old=TEXT, new=TEXT)
def test_body_ops_turn_any_text_into_any_other(old: str, new: str) -> None:
    assert apply_ops(old, body_ops(old, new)) == new


def test_a_delta_keeps_and_deletes_by_count_and_inserts_text() -> None:
    old = Content("Hello world\nsecond line\n", {"title": "A", "gone": 1, "same": [1]})
    new = Content("Hello brave world\nsecond line\n", {"title": "B", "same": [1], "new": None})
    delta = json.loads(make_delta(old, new))
    assert delta == {"b": [6, "brave "], "s": {"new": None, "title": "B"}, "d": ["gone"]}
    assert apply_delta(old, make_delta(old, new)) == new


def test_an_unchanged_version_is_an_empty_delta() -> None:
    content = Content("text", {"title": "x"})
    assert make_delta(content, content) == "{}"
    row = encode(content, content, depth=0)
    assert not row.is_full_content and row.diff_format == DIFF_FORMAT and row.content == ""


def test_a_delta_no_smaller_than_the_copy_is_stored_as_a_copy() -> None:
    emptied = Content("", {})
    row = encode(emptied, Content("", {f"field_{n}": n for n in range(5)}), depth=0)
    assert row.is_full_content and row.content == canonical(emptied) and row.diff_content is None


def test_the_hash_is_sha256_of_the_canonical_json() -> None:
    content = Content("é", {"z": 1, "a": [True]})
    assert canonical(content) == '{"body":"é","fields":{"a":[true],"z":1}}'
    assert len(hash_of(content)) == 64


@pytest.mark.parametrize(
    "bad",
    ["not json", "[]", '{"b": [100]}', '{"b": [1.5]}', '{"b": [true]}', '{"s": []}'],
)
def test_malformed_deltas_are_reported_as_corrupt(bad: str) -> None:
    with pytest.raises(CorruptVersion):
        apply_delta(Content("short", {}), bad)


def test_a_chain_whose_result_does_not_match_its_hash_is_corrupt() -> None:
    rows = store_history([Content("a", {}), Content("ab", {})], full_every=5)
    tampered = Encoded("", "0" * 64, rows[1].diff_content, DIFF_FORMAT, False)
    with pytest.raises(CorruptVersion):
        replay([rows[0], tampered])


def _trace_versions(every: int) -> list[str]:
    path = BENCH_DATA / "seph-blog1.json.gz"
    if not path.exists():
        pytest.fail(f"the editing trace {path} is missing (see ../shared/bench-data/README.md)")
    with gzip.open(path, "rt", encoding="utf-8") as stream:
        trace: dict[str, Any] = json.load(stream)
    text, edits, versions = trace["startContent"], 0, []
    for txn in trace["txns"]:
        for position, deleted, inserted in txn["patches"]:
            text = text[:position] + inserted + text[position + deleted :]
            edits += 1
            if edits % every == 0:
                versions.append(text)
    assert text == trace["endContent"]
    return [*versions, text]


@dataclass(frozen=True)
class _Sizes:
    stored: int
    full: int


def _sizes(rows: list[Encoded], history: list[Content]) -> _Sizes:
    stored = sum(len(r.content.encode()) + len((r.diff_content or "").encode()) for r in rows)
    full = sum(len(canonical(content).encode()) for content in history)
    return _Sizes(stored, full)


def test_replaying_seph_blog1_with_a_version_every_1000_edits_stores_under_a_quarter() -> None:
    fields = {"title": "Speeding up automerge", "slug": "automerge-fast"}
    history = [Content(text, fields) for text in _trace_versions(1000)]
    rows = store_history(history, full_every=20)
    sizes = _sizes(rows, history)
    ratio = sizes.stored / sizes.full
    print(
        f"\nseph-blog1: {len(history)} versions, {sizes.stored:,} bytes stored, "
        f"{sizes.full:,} bytes as full copies: ratio {ratio:.2%}"
    )
    assert ratio < 0.25
    assert replay(chain_of(rows, len(rows) - 1)) == history[-1]
