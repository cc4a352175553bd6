"""The y-protocols codecs: byte vectors, round trips, pycrdt interop, strictness and fuzzing."""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from typing import Any

import pycrdt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pycrdt import Awareness, Doc, Map, Text

from realtime_cms.collab.protocol import (
    MAX_SAFE_INTEGER,
    MESSAGE_AUTH,
    MESSAGE_AWARENESS,
    MESSAGE_QUERY_AWARENESS,
    MESSAGE_SYNC,
    SYNC_STEP1,
    SYNC_STEP2,
    SYNC_UPDATE,
    AwarenessEntry,
    Message,
    ProtocolError,
    auth_denied,
    awareness_message,
    decode_awareness_update,
    decode_message,
    encode_awareness_update,
    query_awareness,
    read_var_bytes,
    read_var_string,
    read_var_uint,
    sync_step1,
    sync_step2,
    sync_update,
    write_var_bytes,
    write_var_string,
    write_var_uint,
)
from realtime_cms.errors import Invalid

LIMIT = 4096
STATE_LIMIT = 512
FUZZ_ROUNDS = 100_000


def decode(frame: bytes) -> Message:
    return decode_message(frame, max_update_bytes=LIMIT)


def decode_states(payload: bytes) -> list[AwarenessEntry]:
    return decode_awareness_update(payload, max_state_bytes=STATE_LIMIT)


def raises_code(code: str, call: Callable[[], object]) -> None:
    with pytest.raises(ProtocolError) as caught:
        call()
    assert caught.value.code == code


def edited_doc(text: str) -> Doc:
    doc: Doc[Any] = Doc()
    doc.get("body", type=Text).insert(0, text)
    return doc


def body(doc: Doc) -> str:
    return str(doc.get("body", type=Text))


# --- lib0 primitives -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "encoded"),
    [
        (0, b"\x00"),
        (1, b"\x01"),
        (127, b"\x7f"),
        (128, b"\x80\x01"),
        (300, b"\xac\x02"),
        (16384, b"\x80\x80\x01"),
        (MAX_SAFE_INTEGER, b"\xff\xff\xff\xff\xff\xff\xff\x0f"),
    ],
)
def test_var_uint_matches_known_lib0_bytes(value: int, encoded: bytes) -> None:
    assert write_var_uint(value) == encoded
    assert read_var_uint(encoded, 0) == (value, len(encoded))


@given(st.integers(min_value=0, max_value=MAX_SAFE_INTEGER), st.binary(max_size=4))
def test_var_uint_round_trips_and_reports_the_next_position(value: int, tail: bytes) -> None:
    encoded = write_var_uint(value)
    assert read_var_uint(b"\x00" + encoded + tail, 1) == (value, 1 + len(encoded))


@pytest.mark.parametrize("value", [-1, MAX_SAFE_INTEGER + 1])
def test_write_var_uint_refuses_numbers_javascript_cannot_hold(value: int) -> None:
    with pytest.raises(ValueError):
        write_var_uint(value)


def test_read_var_uint_accepts_an_overlong_encoding_like_lib0() -> None:
    assert read_var_uint(b"\x80\x00", 0) == (0, 2)


def test_read_var_uint_refuses_values_beyond_two_to_the_53() -> None:
    raises_code("malformed_frame", lambda: read_var_uint(b"\x80\x80\x80\x80\x80\x80\x80\x10", 0))


def test_read_var_uint_refuses_more_than_eight_bytes() -> None:
    raises_code("malformed_frame", lambda: read_var_uint(b"\x80" * 8 + b"\x00", 0))


@pytest.mark.parametrize("data", [b"", b"\x80", b"\xff\xff\x80"])
def test_read_var_uint_refuses_truncation(data: bytes) -> None:
    raises_code("malformed_frame", lambda: read_var_uint(data, 0))


@given(st.binary(max_size=300))
def test_var_bytes_round_trip(data: bytes) -> None:
    encoded = write_var_bytes(data)
    assert read_var_bytes(encoded, 0, max_len=300) == (data, len(encoded))


@given(st.text(max_size=100))
def test_var_string_round_trips(text: str) -> None:
    encoded = write_var_string(text)
    assert read_var_string(encoded, 0, max_len=400) == (text, len(encoded))


def test_var_string_length_counts_utf8_bytes_not_characters() -> None:
    assert write_var_string("é") == b"\x02\xc3\xa9"


def test_read_var_bytes_refuses_a_length_over_the_limit() -> None:
    raises_code("too_large", lambda: read_var_bytes(b"\x03abc", 0, max_len=2))


def test_read_var_bytes_refuses_a_length_past_the_end() -> None:
    raises_code("malformed_frame", lambda: read_var_bytes(b"\x04abc", 0, max_len=10))


def test_read_var_string_refuses_invalid_utf8() -> None:
    raises_code("malformed_frame", lambda: read_var_string(b"\x01\xff", 0, max_len=10))


# --- frames -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        (sync_step1(b"\x01\x02"), Message(MESSAGE_SYNC, SYNC_STEP1, b"\x01\x02")),
        (sync_step2(b"\x00\x00"), Message(MESSAGE_SYNC, SYNC_STEP2, b"\x00\x00")),
        (sync_update(b"upd"), Message(MESSAGE_SYNC, SYNC_UPDATE, b"upd")),
        (awareness_message(b"\x00"), Message(MESSAGE_AWARENESS, None, b"\x00")),
        (query_awareness(), Message(MESSAGE_QUERY_AWARENESS, None, b"")),
        (auth_denied("nope ✋"), Message(MESSAGE_AUTH, None, "nope ✋".encode())),
    ],
)
def test_every_encoder_round_trips_through_decode_message(frame: bytes, expected: Message) -> None:
    assert decode(frame) == expected


@pytest.mark.parametrize(
    ("frame", "encoded"),
    [
        (sync_step1(b"\x00"), b"\x00\x00\x01\x00"),
        (sync_step2(b"\x00\x00"), b"\x00\x01\x02\x00\x00"),
        (sync_update(b"\x07"), b"\x00\x02\x01\x07"),
        (awareness_message(b"\x00"), b"\x01\x01\x00"),
        (query_awareness(), b"\x03"),
        (auth_denied("no"), b"\x02\x00\x02no"),
    ],
)
def test_frames_match_known_y_protocols_bytes(frame: bytes, encoded: bytes) -> None:
    assert frame == encoded


def test_a_sync_exchange_through_our_frames_converges_two_pycrdt_docs() -> None:
    doc_a, doc_b = edited_doc("héllo "), edited_doc("wörld")
    vector_a = decode(sync_step1(doc_a.get_state()))
    vector_b = decode(sync_step1(doc_b.get_state()))
    reply_to_b = decode(sync_step2(doc_a.get_update(vector_b.payload)))
    reply_to_a = decode(sync_step2(doc_b.get_update(vector_a.payload)))
    doc_b.apply_update(reply_to_b.payload)
    doc_a.apply_update(reply_to_a.payload)
    assert body(doc_a) == body(doc_b)
    assert body(doc_a) in {"héllo wörld", "wörldhéllo "}


# --- interop with pycrdt's own helpers --------------------------------------------------


def test_pycrdt_write_var_uint_agrees_with_ours() -> None:
    for value in [0, 1, 127, 128, 300, 2**32, MAX_SAFE_INTEGER]:
        assert pycrdt.write_var_uint(value) == write_var_uint(value)


def test_pycrdt_sync_step1_decodes_as_our_sync_step1() -> None:
    doc = edited_doc("abc")
    message = decode(pycrdt.create_sync_message(doc))
    assert message == Message(MESSAGE_SYNC, SYNC_STEP1, doc.get_state())


def test_pycrdt_update_message_decodes_as_our_sync_update() -> None:
    update = edited_doc("abc").get_update()
    assert decode(pycrdt.create_update_message(update)) == Message(
        MESSAGE_SYNC, SYNC_UPDATE, update
    )


def test_pycrdt_answers_our_sync_step1_with_a_step2_we_decode() -> None:
    source = edited_doc("from pycrdt")
    target: Doc[Any] = Doc()
    # pycrdt's handler expects the frame without its leading message-type byte.
    reply = pycrdt.handle_sync_message(sync_step1(target.get_state())[1:], source)
    assert reply is not None
    target.apply_update(decode(reply).payload)
    assert body(target) == "from pycrdt"


def test_pycrdt_applies_our_sync_update() -> None:
    target: Doc[Any] = Doc()
    frame = sync_update(edited_doc("ours").get_update())
    assert pycrdt.handle_sync_message(frame[1:], target) is None
    assert body(target) == "ours"


def test_pycrdt_awareness_message_framing_equals_ours() -> None:
    assert pycrdt.create_awareness_message(b"\x01\x02") == awareness_message(b"\x01\x02")


def test_pycrdt_awareness_update_decodes_with_ours() -> None:
    awareness = Awareness(Doc())
    awareness.set_local_state({"user": {"name": "Zoë", "color": "#f00"}})
    payload = awareness.encode_awareness_update([awareness.client_id])
    entry = AwarenessEntry(awareness.client_id, 1, {"user": {"name": "Zoë", "color": "#f00"}})
    assert decode_states(payload) == [entry]


def test_our_awareness_update_applies_to_pycrdt_awareness() -> None:
    awareness = Awareness(Doc())
    payload = encode_awareness_update([AwarenessEntry(2**40, 3, {"cursor": "ünï"})])
    awareness.apply_awareness_update(payload, origin="test")
    assert awareness.states[2**40] == {"cursor": "ünï"}
    assert awareness.meta[2**40]["clock"] == 3


# --- awareness updates ------------------------------------------------------------------


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=10,
)
awareness_entries = st.builds(
    AwarenessEntry,
    client_id=st.integers(min_value=0, max_value=MAX_SAFE_INTEGER),
    clock=st.integers(min_value=0, max_value=MAX_SAFE_INTEGER),
    state=st.none() | st.dictionaries(st.text(), json_values, max_size=4),
)


@given(st.lists(awareness_entries, max_size=5))
def test_awareness_updates_round_trip(entries: list[AwarenessEntry]) -> None:
    payload = encode_awareness_update(entries)
    assert decode_awareness_update(payload, max_state_bytes=len(payload)) == entries


def test_a_removed_client_is_encoded_as_json_null() -> None:
    assert encode_awareness_update([AwarenessEntry(7, 2, None)]) == b"\x01\x07\x02\x04null"


def awareness_payload(state_json: bytes, client_id: int = 1) -> bytes:
    return b"\x01" + write_var_uint(client_id) + b"\x00" + write_var_bytes(state_json)


@pytest.mark.parametrize(
    "state_json",
    [b"", b"{", b"[]", b"42", b'"text"', b"true", b"NaN", b'{"a":Infinity}', b"[" * 400],
)
def test_an_awareness_state_must_be_a_json_object_or_null(state_json: bytes) -> None:
    raises_code("invalid_awareness", lambda: decode_states(awareness_payload(state_json)))


def test_an_awareness_state_over_the_limit_is_too_large() -> None:
    state_json = json.dumps({"pad": "x" * STATE_LIMIT}).encode()
    raises_code("too_large", lambda: decode_states(awareness_payload(state_json)))


def test_an_awareness_client_id_beyond_two_to_the_53_is_refused() -> None:
    payload = b"\x01\x80\x80\x80\x80\x80\x80\x80\x10\x00\x02{}"
    raises_code("malformed_frame", lambda: decode_states(payload))


@pytest.mark.parametrize(
    "payload",
    [b"", b"\x02\x01\x00\x02{}", b"\x01\x01\x00\x02{}\x00", b"\x01\x01\x00\x02\xff\xfe"],
)
def test_a_malformed_awareness_update_is_refused(payload: bytes) -> None:
    raises_code("malformed_frame", lambda: decode_states(payload))


# --- strict frame decoding --------------------------------------------------------------


@pytest.mark.parametrize("frame", [b"\x04", b"\x7f\x00", b"\x00\x03\x00", b"\x02\x01\x00"])
def test_unknown_message_and_sync_types_are_refused(frame: bytes) -> None:
    raises_code("unknown_message", lambda: decode(frame))


@pytest.mark.parametrize(
    "frame",
    [
        b"",
        b"\x00",
        b"\x00\x02",
        b"\x00\x02\x05ab",
        b"\x01",
        sync_update(b"ok") + b"\x00",
        query_awareness() + b"\x00",
        b"\x02\x00\x01\xff",
    ],
)
def test_truncated_trailing_or_undecodable_frames_are_malformed(frame: bytes) -> None:
    raises_code("malformed_frame", lambda: decode(frame))


@pytest.mark.parametrize(
    "frame", [sync_update(b"x" * (LIMIT + 1)), awareness_message(b"x" * (LIMIT + 1))]
)
def test_a_payload_over_the_limit_is_too_large(frame: bytes) -> None:
    raises_code("too_large", lambda: decode(frame))


def test_a_declared_length_over_the_limit_is_refused_before_reading() -> None:
    raises_code("too_large", lambda: decode(b"\x00\x02" + write_var_uint(2**40)))


def test_protocol_errors_are_invalid_requests_with_a_stable_code() -> None:
    error = ProtocolError("too_large", "5 bytes exceed the limit of 4")
    assert isinstance(error, Invalid)
    assert (error.status, error.code, error.message) == (400, "too_large", error.message)


# --- fuzzing: only ProtocolError may escape ---------------------------------------------


def awareness_seed_payloads() -> list[bytes]:
    awareness = Awareness(Doc())
    awareness.set_local_state({"user": {"name": "Ada", "color": "#30bced"}, "cursor": None})
    removed = AwarenessEntry(5, 9, None)
    present = AwarenessEntry(2**31, 4, {"k": [1, 2.5, "ß", True]})
    return [
        awareness.encode_awareness_update([awareness.client_id]),
        encode_awareness_update([removed, present]),
    ]


def sync_seed_frames() -> list[bytes]:
    doc = edited_doc("the quick brown fox")
    empty_vector = Doc().get_state()
    with doc.transaction():
        doc.get("body", type=Text).insert(4, "very ")
        doc.get("meta", type=Map)["title"] = "Fox"
    del doc.get("body", type=Text)[0:4]
    return [
        sync_step1(doc.get_state()),
        sync_step2(doc.get_update(empty_vector)),
        sync_update(doc.get_update(edited_doc("x").get_state())),
        pycrdt.create_sync_message(doc),
    ]


def seed_frames() -> list[bytes]:
    awareness = [awareness_message(payload) for payload in awareness_seed_payloads()]
    return sync_seed_frames() + awareness + [query_awareness(), auth_denied("read-only")]


SEED_FRAMES = seed_frames()
SEED_AWARENESS = awareness_seed_payloads()


Edit = tuple[int, int, int]


def apply_edits(data: bytes, edit_list: list[Edit]) -> bytes:
    """Apply (kind, position, value) edits: flip a bit, insert a byte, delete one, truncate."""
    buf = bytearray(data)
    for kind, position, value in edit_list:
        at = position % (len(buf) + 1)
        if kind == 0 and at < len(buf):
            buf[at] ^= 1 << (value % 8)
        elif kind == 1:
            buf.insert(at, value)
        elif kind == 2 and at < len(buf):
            del buf[at]
        elif kind == 3:
            del buf[at:]
    return bytes(buf)


def mutate(data: bytes, rng: random.Random) -> bytes:
    """One to four random edits of a valid input."""
    count = rng.randint(1, 4)
    return apply_edits(
        data, [(rng.randrange(4), rng.getrandbits(16), rng.getrandbits(8)) for _ in range(count)]
    )


def survives(call: Callable[[bytes], Any], data: bytes) -> bool:
    """Whether `data` decoded; any exception other than ProtocolError fails the test."""
    try:
        call(data)
    except ProtocolError:
        return False
    return True


def decode_frame_and_awareness(frame: bytes) -> None:
    message = decode(frame)
    if message.kind == MESSAGE_AWARENESS:
        decode_states(message.payload)


def test_seed_inputs_are_valid() -> None:
    assert all(survives(decode_frame_and_awareness, frame) for frame in SEED_FRAMES)
    assert all(survives(decode_states, payload) for payload in SEED_AWARENESS)


@settings(max_examples=500)
@given(st.binary(max_size=512))
def test_random_bytes_only_ever_raise_protocol_error(data: bytes) -> None:
    survives(decode_frame_and_awareness, data)
    survives(decode_states, data)


edits = st.lists(
    st.tuples(st.integers(0, 3), st.integers(0, 2**16), st.integers(0, 255)), min_size=1, max_size=6
)


@settings(max_examples=1000)
@given(st.sampled_from(SEED_FRAMES + SEED_AWARENESS), edits)
def test_mutated_valid_inputs_only_ever_raise_protocol_error(
    seed: bytes, edit_list: list[Edit]
) -> None:
    data = apply_edits(seed, edit_list)
    survives(decode_frame_and_awareness, data)
    survives(decode_states, data)


def test_a_hundred_thousand_mutated_frames_only_ever_raise_protocol_error() -> None:
    rng = random.Random(20261125)
    started = time.perf_counter()
    frames_ok = sum(
        survives(decode_frame_and_awareness, mutate(rng.choice(SEED_FRAMES), rng))
        for _ in range(FUZZ_ROUNDS)
    )
    states_ok = sum(
        survives(decode_states, mutate(rng.choice(SEED_AWARENESS), rng)) for _ in range(FUZZ_ROUNDS)
    )
    elapsed = time.perf_counter() - started
    print(f"fuzzed {2 * FUZZ_ROUNDS} inputs in {elapsed:.2f}s")
    # Both outcomes must be common, or the mutations are not exercising the decoder.
    assert 0.01 * FUZZ_ROUNDS < frames_ok < 0.99 * FUZZ_ROUNDS
    assert 0.01 * FUZZ_ROUNDS < states_ok < 0.99 * FUZZ_ROUNDS
