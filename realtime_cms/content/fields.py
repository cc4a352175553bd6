"""Custom field definitions: the field types, their `options`, and how values are checked.

One contract for every writer of custom field values (REST, the live document's `fields`
map, version restores): `check_options` validates a definition's `options` when it is
saved, `check_value` turns a submitted value into its canonical JSON-compatible form (or
raises `FieldValueError` with a message for the editor), and `encode_value` /
`decode_value` convert between that form and the `custom_field_values.field_value` text.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, Literal, get_args

FieldType = Literal[
    "text",
    "textarea",
    "number",
    "boolean",
    "date",
    "datetime",
    "select",
    "multiselect",
    "url",
    "email",
    "json",
]
FIELD_TYPES: tuple[str, ...] = get_args(FieldType)

# `options` keys each field type accepts; anything else in `options` is refused. There is no
# `pattern`: a stored regular expression run on every keystroke invites catastrophic backtracking.
_OPTION_KEYS: Mapping[str, frozenset[str]] = {
    "text": frozenset({"max_length", "min_length", "default"}),
    "textarea": frozenset({"max_length", "min_length", "default"}),
    "number": frozenset({"min", "max", "integer", "default"}),
    "boolean": frozenset({"default"}),
    "date": frozenset({"min", "max", "default"}),
    "datetime": frozenset({"min", "max", "default"}),
    "select": frozenset({"choices", "default"}),
    "multiselect": frozenset({"choices", "min_items", "max_items", "default"}),
    "url": frozenset({"max_length", "default"}),
    "email": frozenset({"default"}),
    "json": frozenset({"max_bytes", "default"}),
}
MAX_TEXT = 65_535
MAX_JSON_BYTES = 262_144
MAX_CHOICES = 500
# Deeper JSON cannot be rendered in an answer (pydantic stops serializing at 255 levels).
MAX_JSON_DEPTH = 64
_EMAIL = re.compile(
    r"^[^@\s]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$"
)
_URL = re.compile(r"^https?://[^\s/$.?#][^\s]*$", re.IGNORECASE)
# Yjs hands every number over as a float; integers are exact up to here.
_MAX_SAFE_INTEGER = 2**53 - 1


class FieldValueError(ValueError):
    """A value (or an `options` document) that the field's definition refuses."""


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """What checking a value needs to know of a `custom_fields` row."""

    field_name: str
    field_type: str
    options: Mapping[str, Any]
    is_required: bool = False

    @classmethod
    def of(cls, row: Any) -> FieldSpec:
        """The spec of a `CustomField` row (its `options` column holds JSON text)."""
        return cls(
            field_name=row.field_name,
            field_type=row.field_type,
            options=parse_options(row.options),
            is_required=bool(row.is_required),
        )


def parse_options(text: str | None) -> dict[str, Any]:
    """The stored `options` JSON as a dict (stored values were checked when saved)."""
    if not text:
        return {}
    value = json.loads(text)
    return value if isinstance(value, dict) else {}


def _nonneg_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise FieldValueError(f"options.{name} must be a non-negative integer")
    return value


def _choices(options: Mapping[str, Any]) -> list[str]:
    choices = options.get("choices")
    if not isinstance(choices, list) or not choices or len(choices) > MAX_CHOICES:
        raise FieldValueError(f"options.choices must be a list of 1 to {MAX_CHOICES} strings")
    if not all(isinstance(choice, str) and choice for choice in choices):
        raise FieldValueError("options.choices must hold non-empty strings")
    if len(set(choices)) != len(choices):
        raise FieldValueError("options.choices must not repeat a choice")
    return choices


def check_options(field_type: str, options: Any) -> dict[str, Any]:
    """Validate a definition's `options` for its type; returns them normalised (a dict)."""
    if field_type not in FIELD_TYPES:
        raise FieldValueError(f"field_type must be one of {', '.join(FIELD_TYPES)}")
    if options is None:
        options = {}
    if not isinstance(options, dict):
        raise FieldValueError("options must be a JSON object")
    unknown = sorted(set(options) - _OPTION_KEYS[field_type])
    if unknown:
        allowed = ", ".join(sorted(_OPTION_KEYS[field_type])) or "none"
        raise FieldValueError(
            f"options for {field_type} do not take {', '.join(unknown)} (allowed: {allowed})"
        )
    for key in ("max_length", "min_length", "min_items", "max_items", "max_bytes"):
        if key in options:
            _nonneg_int(key, options[key])
    if field_type in ("select", "multiselect"):
        _choices(options)
    if field_type == "number":
        for key in ("min", "max"):
            if key in options and not _is_number(options[key]):
                raise FieldValueError(f"options.{key} must be a finite number")
        if "integer" in options and not isinstance(options["integer"], bool):
            raise FieldValueError("options.integer must be true or false")
    if field_type in ("date", "datetime"):
        for key in ("min", "max"):
            if key in options:
                try:
                    _parse_temporal(field_type, options[key])
                except FieldValueError as exc:
                    raise FieldValueError(f"options.{key}: {exc}") from exc
    if "default" in options and options["default"] is not None:
        spec = FieldSpec(
            "default", field_type, {k: v for k, v in options.items() if k != "default"}
        )
        try:
            check_value(spec, options["default"])
        except FieldValueError as exc:
            raise FieldValueError(f"options.default: {exc}") from exc
    return dict(options)


def _is_number(value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an integer beyond any float
        return False


def _parse_temporal(field_type: str, value: Any) -> date | datetime:
    if not isinstance(value, str):
        raise FieldValueError(f"expected an ISO 8601 {field_type} string")
    try:
        if field_type == "date":
            return date.fromisoformat(value)
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise FieldValueError(f"{value!r} is not an ISO 8601 {field_type}") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _check_text(spec: FieldSpec, value: Any) -> str:
    if not isinstance(value, str):
        raise FieldValueError("expected text")
    limit = min(int(spec.options.get("max_length", MAX_TEXT)), MAX_TEXT)
    if len(value) > limit:
        raise FieldValueError(f"at most {limit} characters")
    if len(value) < int(spec.options.get("min_length", 0)):
        raise FieldValueError(f"at least {spec.options['min_length']} characters")
    return value


def _check_number(spec: FieldSpec, value: Any) -> int | float:
    if not _is_number(value):
        raise FieldValueError("expected a finite number")
    number: int | float = value
    if isinstance(number, float) and number.is_integer() and abs(number) <= _MAX_SAFE_INTEGER:
        number = int(number)
    if spec.options.get("integer") and not isinstance(number, int):
        raise FieldValueError("expected a whole number")
    if "min" in spec.options and number < spec.options["min"]:
        raise FieldValueError(f"at least {spec.options['min']}")
    if "max" in spec.options and number > spec.options["max"]:
        raise FieldValueError(f"at most {spec.options['max']}")
    return number


def _check_temporal(spec: FieldSpec, value: Any) -> str:
    parsed = _parse_temporal(spec.field_type, value)
    for key, wrong in (("min", lambda b: parsed < b), ("max", lambda b: parsed > b)):
        if key in spec.options and wrong(_parse_temporal(spec.field_type, spec.options[key])):
            word = "on or after" if key == "min" else "on or before"
            raise FieldValueError(f"must be {word} {spec.options[key]}")
    if isinstance(parsed, datetime):
        return parsed.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return parsed.isoformat()


def _check_multiselect(spec: FieldSpec, value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise FieldValueError("expected a list of choices")
    choices = spec.options.get("choices", [])
    unknown = [item for item in value if item not in choices]
    if unknown:
        raise FieldValueError(f"{unknown[0]!r} is not one of the choices")
    if len(set(value)) != len(value):
        raise FieldValueError("a choice is selected twice")
    if len(value) < int(spec.options.get("min_items", 0)):
        raise FieldValueError(f"select at least {spec.options['min_items']}")
    if "max_items" in spec.options and len(value) > int(spec.options["max_items"]):
        raise FieldValueError(f"select at most {spec.options['max_items']}")
    return list(value)


def _json_depth(value: Any) -> int:
    depth, level = 0, [value]
    while level and depth <= MAX_JSON_DEPTH:
        depth += 1
        level = [
            child
            for item in level
            if isinstance(item, dict | list)
            for child in (item.values() if isinstance(item, dict) else item)
        ]
    return depth


def _check_json(spec: FieldSpec, value: Any) -> Any:
    try:
        text = json.dumps(value, allow_nan=False, ensure_ascii=False)
    except (TypeError, ValueError, RecursionError) as exc:
        raise FieldValueError("expected a JSON value") from exc
    if _json_depth(value) > MAX_JSON_DEPTH:
        raise FieldValueError(f"at most {MAX_JSON_DEPTH} levels of nesting")
    limit = min(int(spec.options.get("max_bytes", MAX_JSON_BYTES)), MAX_JSON_BYTES)
    if len(text.encode()) > limit:
        raise FieldValueError(f"at most {limit} bytes of JSON")
    return json.loads(text)


def _refuse_surrogates(value: Any) -> None:
    # JSON bodies may carry lone surrogates (\ud800); no database column can store them.
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError as exc:
        raise FieldValueError("expected valid Unicode text") from exc
    except (TypeError, ValueError, RecursionError):
        return  # not JSON at all: the type's own check says what is wrong


def check_value(spec: FieldSpec, value: Any) -> Any:
    """The canonical form of `value` for the field, or FieldValueError with the reason.

    None (no value) is accepted here; required fields are enforced on publish
    (`missing_required`). Text fields keep their text as given; a text field's empty
    string counts as missing for `is_required`.
    """
    if value is None:
        return None
    _refuse_surrogates(value)
    match spec.field_type:
        case "text" | "textarea":
            return _check_text(spec, value)
        case "number":
            return _check_number(spec, value)
        case "boolean":
            if not isinstance(value, bool):
                raise FieldValueError("expected true or false")
            return value
        case "date" | "datetime":
            return _check_temporal(spec, value)
        case "select":
            if not isinstance(value, str) or value not in spec.options.get("choices", []):
                raise FieldValueError("expected one of the choices")
            return value
        case "multiselect":
            return _check_multiselect(spec, value)
        case "url":
            if not isinstance(value, str) or not _URL.match(value) or len(value) > 2048:
                raise FieldValueError("expected an http(s) URL")
            return value
        case "email":
            if not isinstance(value, str) or not _EMAIL.match(value) or len(value) > 254:
                raise FieldValueError("expected an email address")
            return value
        case "json":
            return _check_json(spec, value)
    raise FieldValueError(f"unknown field type {spec.field_type!r}")


def is_missing(value: Any) -> bool:
    """Whether a required field counts as not filled in."""
    return value is None or value == "" or value == []


def missing_required(specs: list[FieldSpec], values: Mapping[str, Any]) -> list[str]:
    """Names of the required fields without a value, in definition order."""
    return [
        spec.field_name
        for spec in specs
        if spec.is_required and is_missing(values.get(spec.field_name))
    ]


def encode_value(value: Any) -> str | None:
    """A checked value as `custom_field_values.field_value` text (JSON); None stays NULL."""
    if value is None:
        return None
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def decode_value(text: str | None) -> Any:
    """The value stored by `encode_value` (a bare legacy string is kept as text)."""
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text
