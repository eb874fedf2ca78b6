"""The cmap client protocol bodies: round trips and hostile input."""

from __future__ import annotations

from collections.abc import Callable

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pycorosync.lib import cmap_wire as wire
from pycorosync.lib.cmap_types import CmapEntry, TrackEvent, ValueType
from pycorosync.lib.errors import CsErrorCode

_ENTRIES = st.one_of(
    st.builds(CmapEntry, st.just(ValueType.UINT32), st.integers(0, (1 << 32) - 1)),
    st.builds(CmapEntry, st.just(ValueType.INT64), st.integers(-(1 << 63), (1 << 63) - 1)),
    st.builds(CmapEntry, st.just(ValueType.DOUBLE), st.floats()),
    st.builds(
        CmapEntry,
        st.just(ValueType.STRING),
        st.text(st.characters(exclude_characters="\0", codec="utf-8"), max_size=20),
    ),
    st.builds(CmapEntry, st.just(ValueType.BINARY), st.binary(max_size=20)),
)
_U64 = st.integers(0, (1 << 64) - 1)


@given(_ENTRIES)
def test_get_responses_round_trip(entry: CmapEntry) -> None:
    assert wire.decode_entry(wire.encode_entry(entry)) == entry


@given(
    _U64,
    st.sampled_from(list(TrackEvent)),
    st.text(max_size=10),
    st.none() | _ENTRIES,
    st.none() | _ENTRIES,
)
def test_notifications_round_trip(
    cookie: int, event: TrackEvent, key: str, new: CmapEntry | None, old: CmapEntry | None
) -> None:
    note = wire.Notification(cookie, event, key, new, old)
    assert wire.decode_notification(wire.encode_notification(note)) == note


@given(st.text(max_size=10), st.integers(0, 255), st.integers() | st.text() | st.binary())
def test_set_requests_round_trip(key: str, vtype: int, value: int | str | bytes) -> None:
    if isinstance(value, int) and not -(1 << 63) <= value < (1 << 64):
        return  # msgpack carries 64 bits
    request = wire.SetRequest(key, vtype, value)
    assert wire.decode_set(wire.encode_set(request)) == request


@given(st.text(max_size=10), st.integers(-(1 << 31), (1 << 31) - 1), _U64)
def test_small_requests_round_trip(key: str, number: int, handle: int) -> None:
    assert wire.decode_key(wire.encode_key(key)) == key
    assert wire.decode_adjust(wire.encode_adjust(key, number)) == (key, number)
    assert wire.decode_handle(wire.encode_handle(handle)) == handle
    assert wire.decode_map(wire.encode_map(number)) == number
    track = wire.TrackAddRequest(key, number, handle)
    assert wire.decode_track_add(wire.encode_track_add(track)) == track
    reply = wire.IterNextReply(key, handle, number & 0xFF)
    assert wire.decode_iter_next(wire.encode_iter_next(reply)) == reply


_DECODERS: list[Callable[[bytes], object]] = [
    wire.decode_set,
    wire.decode_key,
    wire.decode_adjust,
    wire.decode_handle,
    wire.decode_track_add,
    wire.decode_map,
    wire.decode_entry,
    wire.decode_iter_next,
    wire.decode_notification,
]


@given(st.binary(max_size=40))
def test_garbage_is_a_message_error_never_a_crash(data: bytes) -> None:
    for decode in _DECODERS:
        try:
            decoded = decode(data)
        except wire.CmapWireError as error:
            decoded = error
        if isinstance(decoded, wire.CmapWireError):
            assert decoded.code is CsErrorCode.CS_ERR_MESSAGE_ERROR


@pytest.mark.parametrize(
    ("decode", "fields"),
    [
        (wire.decode_set, ["a.key", 6, [1]]),
        (wire.decode_set, ["a.key", 6, True]),
        (wire.decode_set, ["a.key", 300, 1]),
        (wire.decode_key, [5]),
        (wire.decode_adjust, ["a.key", 1 << 31]),
        (wire.decode_handle, [-1]),
        (wire.decode_entry, [6, -1]),  # negative u32: a value the engine could not send
        (wire.decode_entry, [11, b"bytes for a string"]),
        (wire.decode_notification, [1, 8, "a.key", None, None]),  # PREFIX is no event
        (wire.decode_notification, [1, 4, "a.key", [6], None]),
        (wire.decode_iter_next, ["a.key", 4, 1.0]),
    ],
)
def test_wrong_fields_are_refused(decode: Callable[[bytes], object], fields: list[object]) -> None:
    with pytest.raises(wire.CmapWireError):
        decode(msgpack.packb(fields, use_bin_type=True))


def test_message_ids_are_corosyncs() -> None:
    assert [int(r) for r in wire.CmapRequestId] == list(range(10))
    assert wire.CmapResponseId.NOTIFY_CALLBACK == 9
    assert wire.CmapResponseId.SET_CURRENT_MAP == 10
