"""The y-protocols wire format (y-websocket, y-protocols, lib0 encoding): strict codecs, no I/O.

A frame is one message: a varUint message type, then (for sync) a varUint sync type, then a
varUint8Array payload. Decoding never trusts the peer: every length is checked before it is
used and anything malformed raises `ProtocolError`, which transports render with its `code`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from realtime_cms.errors import Invalid

MESSAGE_SYNC = 0
MESSAGE_AWARENESS = 1
MESSAGE_AUTH = 2
MESSAGE_QUERY_AWARENESS = 3

SYNC_STEP1 = 0
SYNC_STEP2 = 1
SYNC_UPDATE = 2

AUTH_PERMISSION_DENIED = 0

# lib0 numbers are JavaScript numbers: integers are only exact up to 2**53 - 1, which fits
# in 8 groups of 7 bits.
MAX_SAFE_INTEGER = 2**53 - 1
_MAX_VAR_UINT_BYTES = 8

ErrorCode = Literal["malformed_frame", "unknown_message", "too_large", "invalid_awareness"]


class ProtocolError(Invalid):
    """A frame that breaks the wire format; `code` says how, for the peer and the logs."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message, code=code)


@dataclass(frozen=True, slots=True)
class Message:
    """One decoded frame; `sync_type` is set only for `MESSAGE_SYNC`.

    The payload is the state vector or update (sync), the awareness update (awareness),
    the UTF-8 reason (auth) or empty (query awareness).
    """

    kind: int
    sync_type: int | None
    payload: bytes


@dataclass(frozen=True, slots=True)
class AwarenessEntry:
    """One client's awareness state at `clock`; a `None` state means the client left."""

    client_id: int
    clock: int
    state: dict[str, Any] | None


def write_var_uint(n: int) -> bytes:
    """Encode a lib0 varUint: 7-bit groups, least significant first, high bit = more."""
    if not 0 <= n <= MAX_SAFE_INTEGER:
        raise ValueError(f"varUint out of range: {n}")
    out = bytearray()
    while n > 0x7F:
        out.append(0x80 | (n & 0x7F))
        n >>= 7
    out.append(n)
    return bytes(out)


def read_var_uint(data: bytes, pos: int) -> tuple[int, int]:
    """Decode a varUint at `pos`; return it and the position after it.

    Like lib0, a redundant zero group (an overlong encoding) is accepted; values beyond
    JavaScript's safe integers, or longer than 8 bytes, are not.
    """
    value = 0
    for index in range(_MAX_VAR_UINT_BYTES):
        if pos + index >= len(data):
            raise ProtocolError("malformed_frame", "truncated varUint")
        byte = data[pos + index]
        value |= (byte & 0x7F) << (7 * index)
        if byte < 0x80:
            if value > MAX_SAFE_INTEGER:
                raise ProtocolError("malformed_frame", "varUint exceeds 2**53 - 1")
            return value, pos + index + 1
    raise ProtocolError("malformed_frame", "varUint longer than 8 bytes")


def write_var_bytes(data: bytes) -> bytes:
    """Encode a lib0 varUint8Array: the byte length, then the bytes."""
    return write_var_uint(len(data)) + data


def check_state_vector(vector: bytes) -> None:
    """Raise ProtocolError unless `vector` is exactly a lib0 state vector (client, clock)*."""
    count, pos = read_var_uint(vector, 0)
    for _ in range(2 * count):
        _, pos = read_var_uint(vector, pos)
    if pos != len(vector):
        raise ProtocolError("malformed_frame", "trailing bytes after the state vector")


def read_var_bytes(data: bytes, pos: int, *, max_len: int) -> tuple[bytes, int]:
    """Decode a varUint8Array of at most `max_len` bytes; return it and the next position."""
    length, start = read_var_uint(data, pos)
    if length > max_len:
        raise ProtocolError("too_large", f"{length} bytes exceed the limit of {max_len}")
    end = start + length
    if end > len(data):
        raise ProtocolError("malformed_frame", "truncated byte array")
    return bytes(data[start:end]), end


def write_var_string(text: str) -> bytes:
    """Encode a lib0 varString: a varUint8Array of UTF-8 (the length counts bytes)."""
    return write_var_bytes(text.encode("utf-8"))


def read_var_string(data: bytes, pos: int, *, max_len: int) -> tuple[str, int]:
    """Decode a varString of at most `max_len` UTF-8 bytes; return it and the next position."""
    raw, end = read_var_bytes(data, pos, max_len=max_len)
    return _utf8(raw), end


def sync_step1(state_vector: bytes) -> bytes:
    """Frame a state vector: "send me what I am missing"."""
    return _sync_frame(SYNC_STEP1, state_vector)


def sync_step2(update: bytes) -> bytes:
    """Frame the update that answers a sync step 1."""
    return _sync_frame(SYNC_STEP2, update)


def sync_update(update: bytes) -> bytes:
    """Frame an incremental document update."""
    return _sync_frame(SYNC_UPDATE, update)


def awareness_message(awareness_update: bytes) -> bytes:
    """Frame an encoded awareness update."""
    return write_var_uint(MESSAGE_AWARENESS) + write_var_bytes(awareness_update)


def query_awareness() -> bytes:
    """Frame a request for every awareness state the peer knows."""
    return write_var_uint(MESSAGE_QUERY_AWARENESS)


def auth_denied(reason: str) -> bytes:
    """Frame y-websocket's "permission denied" message with a human-readable reason."""
    return (
        write_var_uint(MESSAGE_AUTH)
        + write_var_uint(AUTH_PERMISSION_DENIED)
        + write_var_string(reason)
    )


def decode_message(frame: bytes, *, max_update_bytes: int) -> Message:
    """Decode exactly one message; a payload over `max_update_bytes` is refused unread."""
    kind, pos = read_var_uint(frame, 0)
    decode_body = _BODY_DECODERS.get(kind)
    if decode_body is None:
        raise ProtocolError("unknown_message", f"unknown message type {kind}")
    message, end = decode_body(frame, pos, max_update_bytes)
    _expect_end(frame, end)
    return message


def decode_awareness_update(payload: bytes, *, max_state_bytes: int) -> list[AwarenessEntry]:
    """Decode an awareness update; each state must be a JSON object or null (client left)."""
    count, pos = read_var_uint(payload, 0)
    entries = []
    for _ in range(count):
        entry, pos = _read_awareness_entry(payload, pos, max_state_bytes)
        entries.append(entry)
    _expect_end(payload, pos)
    return entries


def encode_awareness_update(entries: Sequence[AwarenessEntry]) -> bytes:
    """Encode awareness entries as y-protocols does (compact JSON, `null` for removed)."""
    parts = [write_var_uint(len(entries))]
    for entry in entries:
        # ASCII-only JSON survives any state a peer sent, even lone surrogate escapes.
        state_json = json.dumps(entry.state, separators=(",", ":"), allow_nan=False)
        parts += [
            write_var_uint(entry.client_id),
            write_var_uint(entry.clock),
            write_var_string(state_json),
        ]
    return b"".join(parts)


def _sync_frame(sync_type: int, payload: bytes) -> bytes:
    return write_var_uint(MESSAGE_SYNC) + write_var_uint(sync_type) + write_var_bytes(payload)


def _decode_sync(frame: bytes, pos: int, max_update_bytes: int) -> tuple[Message, int]:
    sync_type, pos = read_var_uint(frame, pos)
    if sync_type not in (SYNC_STEP1, SYNC_STEP2, SYNC_UPDATE):
        raise ProtocolError("unknown_message", f"unknown sync message type {sync_type}")
    payload, end = read_var_bytes(frame, pos, max_len=max_update_bytes)
    return Message(MESSAGE_SYNC, sync_type, payload), end


def _decode_awareness(frame: bytes, pos: int, max_update_bytes: int) -> tuple[Message, int]:
    payload, end = read_var_bytes(frame, pos, max_len=max_update_bytes)
    return Message(MESSAGE_AWARENESS, None, payload), end


def _decode_auth(frame: bytes, pos: int, max_update_bytes: int) -> tuple[Message, int]:
    auth_type, pos = read_var_uint(frame, pos)
    if auth_type != AUTH_PERMISSION_DENIED:
        raise ProtocolError("unknown_message", f"unknown auth message type {auth_type}")
    reason, end = read_var_string(frame, pos, max_len=max_update_bytes)
    return Message(MESSAGE_AUTH, None, reason.encode("utf-8")), end


def _decode_query_awareness(frame: bytes, pos: int, max_update_bytes: int) -> tuple[Message, int]:
    return Message(MESSAGE_QUERY_AWARENESS, None, b""), pos


_BODY_DECODERS: dict[int, Callable[[bytes, int, int], tuple[Message, int]]] = {
    MESSAGE_SYNC: _decode_sync,
    MESSAGE_AWARENESS: _decode_awareness,
    MESSAGE_AUTH: _decode_auth,
    MESSAGE_QUERY_AWARENESS: _decode_query_awareness,
}


def _read_awareness_entry(
    payload: bytes, pos: int, max_state_bytes: int
) -> tuple[AwarenessEntry, int]:
    client_id, pos = read_var_uint(payload, pos)
    clock, pos = read_var_uint(payload, pos)
    state_json, pos = read_var_bytes(payload, pos, max_len=max_state_bytes)
    return AwarenessEntry(client_id, clock, _parse_state(state_json)), pos


def _parse_state(state_json: bytes) -> dict[str, Any] | None:
    text = _utf8(state_json)
    try:
        state = json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise ProtocolError("invalid_awareness", "awareness state is not valid JSON") from exc
    if state is not None and not isinstance(state, dict):
        raise ProtocolError("invalid_awareness", "awareness state must be an object or null")
    return state


def _reject_constant(name: str) -> None:
    # Python's json accepts NaN and Infinity; JSON.parse in the browser does not.
    raise ValueError(f"{name} is not JSON")


def _utf8(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProtocolError("malformed_frame", "string is not valid UTF-8") from exc


def _expect_end(data: bytes, pos: int) -> None:
    if pos != len(data):
        raise ProtocolError("malformed_frame", f"{len(data) - pos} trailing bytes")
