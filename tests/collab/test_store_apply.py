"""`apply_after_pending` with the observer's changes: the fast path (the changes are the
update, so nothing can be pending) and the state-vector check it falls back on."""

from __future__ import annotations

import pytest
from pycrdt import Doc, Subscription, Text

from realtime_cms.collab.store import CorruptUpdateError, apply_after_pending


def typed(count: int) -> list[bytes]:
    """The updates of `count` keystrokes typed into one document."""
    doc: Doc = Doc()
    updates: list[bytes] = []
    doc.observe(lambda event: updates.append(event.update))
    text = doc.get("body", type=Text)
    for i in range(count):
        text.insert(len(text), chr(ord("a") + i % 26))
    return updates


def observed() -> tuple[Doc, list[bytes], Subscription]:
    doc: Doc = Doc()
    changes: list[bytes] = []
    subscription = doc.observe(lambda event: changes.append(event.update))
    return doc, changes, subscription


def body(doc: Doc) -> str:
    return str(doc.get("body", type=Text))


def test_updates_in_order_integrate_and_each_is_exactly_the_changes() -> None:
    doc, changes, _ = observed()
    for index, update in enumerate(typed(30)):
        changes.clear()
        assert apply_after_pending(doc, [], (index, update), changes) == []
        assert changes == [update]
    assert body(doc) == "abcdefghijklmnopqrstuvwxyzabcd"


def test_an_update_with_a_missing_dependency_is_reported_pending() -> None:
    updates = typed(3)
    doc, changes, _ = observed()
    assert apply_after_pending(doc, [], (0, updates[0]), changes) == []
    changes.clear()
    assert apply_after_pending(doc, [], (2, updates[2]), changes) == [(2, updates[2])]
    assert changes == []
    assert body(doc) == "a"


def test_an_update_that_repeats_known_changes_is_integrated_though_not_all_new() -> None:
    first, second = typed(2)
    doc, changes, _ = observed()
    assert apply_after_pending(doc, [], (0, first), changes) == []
    source: Doc = Doc()
    source.apply_update(first)
    source.apply_update(second)
    both = source.get_update()  # holds `first` again, and `second`
    changes.clear()
    assert apply_after_pending(doc, [], (1, both), changes) == []
    assert changes and changes != [both]
    assert body(doc) == "ab"


def test_a_duplicate_changes_nothing_and_is_not_pending() -> None:
    (update,) = typed(1)
    doc, changes, _ = observed()
    apply_after_pending(doc, [], (0, update), changes)
    changes.clear()
    assert apply_after_pending(doc, [], (1, update), changes) == []
    assert changes == []


def test_garbage_is_a_corrupt_update_on_the_fast_path_too() -> None:
    doc, changes, _ = observed()
    with pytest.raises(CorruptUpdateError):
        apply_after_pending(doc, [], (7, b"\x05\xff\xff\x00garbage"), changes)
