"""The custom field contract: options per type, value checks and canonical forms, storage."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from realtime_cms.content.fields import (
    FIELD_TYPES,
    MAX_JSON_BYTES,
    MAX_JSON_DEPTH,
    MAX_TEXT,
    FieldSpec,
    FieldValueError,
    check_options,
    check_value,
    decode_value,
    encode_value,
    is_missing,
    missing_required,
    parse_options,
)


def spec(field_type: str, **options: Any) -> FieldSpec:
    return FieldSpec("f", field_type, options)


# Options


@pytest.mark.parametrize(
    ("field_type", "options"),
    [
        ("text", {"max_length": 10, "min_length": 2, "default": "abc"}),
        ("textarea", {}),
        ("number", {"min": -1.5, "max": 10, "integer": False, "default": 3}),
        ("boolean", {"default": False}),
        ("date", {"min": "2024-01-01", "max": "2024-12-31", "default": "2024-06-01"}),
        ("datetime", {"min": "2024-01-01T00:00:00Z", "default": "2024-02-01T10:00:00+02:00"}),
        ("select", {"choices": ["a", "b"], "default": "b"}),
        ("multiselect", {"choices": ["a", "b"], "min_items": 1, "max_items": 2, "default": ["a"]}),
        ("url", {"max_length": 100, "default": "https://example.com"}),
        ("email", {"default": "a@example.com"}),
        ("json", {"max_bytes": 100, "default": {"a": [1, 2]}}),
    ],
)
def test_options_that_suit_the_type_are_accepted_as_given(
    field_type: str, options: dict[str, Any]
) -> None:
    assert check_options(field_type, options) == options


def test_every_field_type_accepts_no_options() -> None:
    for field_type in FIELD_TYPES:
        if field_type not in ("select", "multiselect"):
            assert check_options(field_type, None) == {} == check_options(field_type, {})


@pytest.mark.parametrize(
    ("field_type", "options", "message"),
    [
        ("colour", {}, "field_type must be one of"),
        ("text", [], "options must be a JSON object"),
        ("text", "max_length=3", "options must be a JSON object"),
        ("boolean", {"max_length": 3}, "do not take max_length"),
        ("text", {"max_length": True}, "max_length must be a non-negative integer"),
        ("text", {"min_length": -1}, "min_length must be a non-negative integer"),
        ("number", {"max": float("inf")}, "options.max must be a finite number"),
        ("number", {"min": -(10**400)}, "options.min must be a finite number"),
        ("number", {"integer": 1}, "options.integer must be true or false"),
        ("select", {"choices": []}, "options.choices must be a list of 1 to 500"),
        ("select", {"choices": ["a"] * 501}, "options.choices must be a list of 1 to 500"),
        ("select", {"choices": ["a", ""]}, "must hold non-empty strings"),
        ("multiselect", {"choices": ["a", "a"]}, "must not repeat a choice"),
        ("date", {"max": "2024-13-01"}, "options.max"),
        ("datetime", {"min": 5}, "options.min"),
        ("text", {"max_length": 2, "default": "abc"}, "options.default: at most 2"),
        ("select", {"choices": ["a"], "default": "z"}, "options.default"),
        ("email", {"default": "nobody"}, "options.default"),
    ],
)
def test_options_that_do_not_suit_the_type_are_refused_with_a_reason(
    field_type: str, options: Any, message: str
) -> None:
    with pytest.raises(FieldValueError, match=message.replace("(", r"\(")):
        check_options(field_type, options)


# Values


def test_none_is_accepted_for_every_type() -> None:
    for field_type in FIELD_TYPES:
        assert check_value(spec(field_type, choices=["a"]), None) is None


@pytest.mark.parametrize(
    ("field", "value", "canonical"),
    [
        (spec("text"), "hello", "hello"),
        (spec("textarea", max_length=5), "12345", "12345"),
        (spec("number"), 2.0, 2),
        (spec("number"), 2.5, 2.5),
        (spec("number", integer=True, min=0, max=10), 10, 10),
        (spec("boolean"), False, False),
        (spec("date", min="2024-01-01"), "2024-01-01", "2024-01-01"),
        (spec("datetime"), "2024-05-01T12:00:00+02:00", "2024-05-01T10:00:00Z"),
        (spec("datetime"), "2024-05-01T12:00:00", "2024-05-01T12:00:00Z"),
        (spec("select", choices=["a", "b"]), "b", "b"),
        (spec("multiselect", choices=["a", "b"], max_items=2), ["b", "a"], ["b", "a"]),
        (spec("url"), "https://example.com/a?b=c", "https://example.com/a?b=c"),
        (spec("email"), "someone@example.org", "someone@example.org"),
        (spec("json"), {"nested": [1, None, "x"]}, {"nested": [1, None, "x"]}),
    ],
)
def test_valid_values_come_back_in_canonical_form(
    field: FieldSpec, value: Any, canonical: Any
) -> None:
    assert check_value(field, value) == canonical


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        (spec("text"), 5, "expected text"),
        (spec("text", max_length=3), "abcd", "at most 3 characters"),
        (spec("text"), "x" * (MAX_TEXT + 1), f"at most {MAX_TEXT} characters"),
        (spec("textarea", min_length=2), "a", "at least 2 characters"),
        (spec("number"), True, "expected a finite number"),
        (spec("number"), float("nan"), "expected a finite number"),
        (spec("number"), "5", "expected a finite number"),
        (spec("number"), 10**400, "expected a finite number"),
        (spec("number", integer=True), 1.5, "expected a whole number"),
        (spec("number", min=0), -1, "at least 0"),
        (spec("number", max=10), 11, "at most 10"),
        (spec("boolean"), "true", "expected true or false"),
        (spec("date"), "2024-02-30", "is not an ISO 8601 date"),
        (spec("date", max="2024-01-01"), "2024-01-02", "on or before 2024-01-01"),
        (spec("datetime", min="2024-01-01T00:00:00Z"), "2023-12-31T23:59:59Z", "on or after"),
        (spec("datetime"), 1700000000, "expected an ISO 8601 datetime string"),
        (spec("select", choices=["a"]), "b", "expected one of the choices"),
        (spec("multiselect", choices=["a", "b"]), "a", "expected a list of choices"),
        (spec("multiselect", choices=["a", "b"]), ["a", "c"], "'c' is not one of the choices"),
        (spec("multiselect", choices=["a", "b"]), ["a", "a"], "a choice is selected twice"),
        (spec("multiselect", choices=["a", "b"], min_items=1), [], "select at least 1"),
        (spec("multiselect", choices=["a", "b"], max_items=1), ["a", "b"], "select at most 1"),
        (spec("url"), "ftp://example.com", "expected an http"),
        (spec("url"), "https://" + "a" * 2048, "expected an http"),
        (spec("email"), "no at sign", "expected an email address"),
        (spec("json"), {"x": float("nan")}, "expected a JSON value"),
        (spec("json"), {1, 2}, "expected a JSON value"),
        (spec("json", max_bytes=5), "abcdef", "at most 5 bytes"),
        (spec("json"), "x" * MAX_JSON_BYTES, f"at most {MAX_JSON_BYTES} bytes"),
        (FieldSpec("f", "colour", {}), "x", "unknown field type"),
        (spec("text"), "lone \ud800", "expected valid Unicode text"),
        (spec("json"), {"k": ["\udfff"]}, "expected valid Unicode text"),
    ],
)
def test_invalid_values_are_refused_with_a_reason(
    field: FieldSpec, value: Any, message: str
) -> None:
    with pytest.raises(FieldValueError, match=message):
        check_value(field, value)


def nested(depth: int) -> Any:
    value: Any = "leaf"
    for level in range(depth - 1):
        value = [value] if level % 2 else {"k": value}
    return value


def test_json_nests_at_most_max_json_depth_levels() -> None:
    assert check_value(spec("json"), nested(MAX_JSON_DEPTH)) == nested(MAX_JSON_DEPTH)
    with pytest.raises(FieldValueError, match=f"at most {MAX_JSON_DEPTH} levels"):
        check_value(spec("json"), nested(MAX_JSON_DEPTH + 1))
    with pytest.raises(FieldValueError, match="options.default: at most"):
        check_options("json", {"default": nested(200)})


def test_large_whole_floats_stay_floats_beyond_the_exact_integer_range() -> None:
    assert check_value(spec("number"), 2.0**60) == 2.0**60
    assert isinstance(check_value(spec("number"), 2.0**60), float)


# Required fields, definitions and storage


def test_missing_required_lists_empty_required_fields_in_definition_order() -> None:
    specs = [
        FieldSpec("a", "text", {}, is_required=True),
        FieldSpec("b", "text", {}, is_required=False),
        FieldSpec("c", "multiselect", {"choices": ["x"]}, is_required=True),
        FieldSpec("d", "boolean", {}, is_required=True),
    ]
    assert missing_required(specs, {"a": "", "c": [], "d": False}) == ["a", "c"]
    assert missing_required(specs, {"a": "x", "c": ["x"], "d": False}) == []
    assert is_missing(None) and is_missing("") and is_missing([]) and not is_missing(0)


def test_a_spec_is_read_from_a_custom_field_row() -> None:
    row = SimpleNamespace(
        field_name="price",
        field_type="number",
        options='{"min": 0}',
        is_required=1,
    )
    assert FieldSpec.of(row) == FieldSpec("price", "number", {"min": 0}, is_required=True)


@pytest.mark.parametrize(
    ("text", "parsed"), [(None, {}), ("", {}), ("[1]", {}), ('{"a": 1}', {"a": 1})]
)
def test_stored_options_always_parse_to_a_dict(text: str | None, parsed: dict[str, Any]) -> None:
    assert parse_options(text) == parsed


@pytest.mark.parametrize("value", ["text", "", 0, 1.5, True, ["a"], {"b": {"c": None}}, "ünï"])
def test_values_survive_encoding_for_the_column(value: Any) -> None:
    assert decode_value(encode_value(value)) == value


def test_encoding_is_compact_sorted_json_and_none_stays_null() -> None:
    assert encode_value({"b": 1, "a": "é"}) == '{"a":"é","b":1}'
    assert encode_value(None) is None and decode_value(None) is None


def test_a_legacy_bare_string_decodes_as_text() -> None:
    assert decode_value("plain words") == "plain words"
