"""The IPC frame codec: round trips, incremental decoding, malformed headers refused."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pycorosync.lib.errors import CsErrorCode
from pycorosync.lib.ipc_wire import (
    HEADER,
    MAGIC,
    VERSION,
    Frame,
    FrameDecoder,
    FrameError,
    FrameKind,
    Hello,
    decode_hello,
    encode_frame,
    encode_hello,
    encode_notify,
    encode_request,
    wire_serial,
)

ALL_KINDS = frozenset(FrameKind)

frames = st.builds(
    Frame,
    kind=st.sampled_from(FrameKind),
    message_id=st.integers(0, 2**32 - 1),
    body=st.binary(max_size=300),
    serial=st.integers(0, 2**32 - 1),
    error=st.sampled_from(CsErrorCode),
)


@given(st.lists(frames, max_size=8), st.lists(st.integers(1, 64), min_size=1))
def test_frames_survive_any_split_of_the_stream(sent: list[Frame], cuts: list[int]) -> None:
    stream = b"".join(encode_frame(f) for f in sent)
    decoder = FrameDecoder(1024, ALL_KINDS)
    received: list[Frame] = []
    position, turn = 0, 0
    while position < len(stream):
        step = cuts[turn % len(cuts)]
        decoder.feed(stream[position : position + step])
        received.extend(decoder.frames())
        position, turn = position + step, turn + 1
    assert received == sent
    assert decoder.buffered == 0


def test_a_partial_frame_stays_buffered() -> None:
    data = encode_frame(Frame(FrameKind.REQUEST, 5, b"abcdef", 9))
    decoder = FrameDecoder(1024, ALL_KINDS)
    decoder.feed(data[:-1])
    assert decoder.next_frame() is None
    assert decoder.buffered == len(data) - 1
    decoder.feed(data[-1:])
    assert decoder.next_frame() == Frame(FrameKind.REQUEST, 5, b"abcdef", 9)


def _header(
    *, magic: int = MAGIC, version: int = VERSION, kind: int = 2, body_len: int = 0
) -> bytes:
    return HEADER.pack(magic, version, kind, body_len, 1, 1, 1)


@pytest.mark.parametrize(
    ("header", "code"),
    [
        (_header(magic=0x1234), CsErrorCode.CS_ERR_MESSAGE_ERROR),
        (_header(version=VERSION + 1), CsErrorCode.CS_ERR_VERSION),
        (_header(kind=FrameKind.NOTIFY), CsErrorCode.CS_ERR_MESSAGE_ERROR),
        (_header(kind=99), CsErrorCode.CS_ERR_MESSAGE_ERROR),
        (_header(body_len=1025), CsErrorCode.CS_ERR_TOO_BIG),
    ],
)
def test_malformed_headers_are_refused_with_a_code(header: bytes, code: CsErrorCode) -> None:
    decoder = FrameDecoder(1024, frozenset({FrameKind.REQUEST}))
    decoder.feed(header)  # the oversize body never has to arrive to be refused
    with pytest.raises(FrameError) as caught:
        decoder.next_frame()
    assert caught.value.code == code


def test_the_largest_legal_body_is_accepted() -> None:
    decoder = FrameDecoder(1024, ALL_KINDS)
    decoder.feed(encode_frame(Frame(FrameKind.REQUEST, 1, b"x" * 1024)))
    frame = decoder.next_frame()
    assert frame is not None
    assert len(frame.body) == 1024


def test_out_of_range_ids_cannot_be_encoded() -> None:
    with pytest.raises(ValueError, match="out of range"):
        encode_frame(Frame(FrameKind.REQUEST, 2**32, b""))


def test_hello_round_trip_and_garbage() -> None:
    assert decode_hello(encode_hello(Hello(42, 1 << 20))) == Hello(42, 1 << 20)
    with pytest.raises(FrameError):
        decode_hello(b"\xc1")
    with pytest.raises(FrameError):
        decode_hello(b"\x92\xa1a\x01")  # ["a", 1]


@given(st.binary(max_size=200))
def test_arbitrary_bytes_give_frames_or_a_frame_error(data: bytes) -> None:
    decoder = FrameDecoder(64, frozenset({FrameKind.REQUEST}))
    decoder.feed(data)
    refused: set[CsErrorCode] = set()
    try:
        for frame in decoder.frames():
            assert frame.kind == FrameKind.REQUEST
            assert len(frame.body) <= 64
    except FrameError as exc:
        refused.add(exc.code)
    assert refused <= {
        CsErrorCode.CS_ERR_MESSAGE_ERROR,
        CsErrorCode.CS_ERR_VERSION,
        CsErrorCode.CS_ERR_TOO_BIG,
    }


def test_take_returns_the_good_frames_before_a_bad_header_then_the_error() -> None:
    decoder = FrameDecoder(64, frozenset({FrameKind.NOTIFY}))
    good = [encode_notify(7, b"a"), encode_notify(8, b"bc")]
    bad = HEADER.pack(0xBEEF, VERSION, FrameKind.NOTIFY, 0, 1, 0, 1)
    decoder.feed(b"".join([*good, bad, encode_notify(9, b"lost")]))
    frames, error = decoder.take()
    assert [(f.message_id, f.body) for f in frames] == [(7, b"a"), (8, b"bc")]
    assert error is not None
    assert error.code == CsErrorCode.CS_ERR_MESSAGE_ERROR
    frames, again = decoder.take()  # the stream stays lost
    assert frames == []
    assert again is not None
    assert again.code == error.code
    with pytest.raises(FrameError):
        decoder.next_frame()


def test_take_keeps_a_partial_frame_for_the_next_read() -> None:
    decoder = FrameDecoder(64, frozenset({FrameKind.NOTIFY}))
    stream = encode_notify(1, b"one") + encode_notify(2, b"two")
    decoder.feed(stream[:-2])
    assert [f.body for f in decoder.take()[0]] == [b"one"]
    assert decoder.take() == ([], None)
    decoder.feed(stream[-2:])
    assert [f.body for f in decoder.take()[0]] == [b"two"]
    assert decoder.buffered == 0


def test_request_serials_wrap_and_never_become_zero() -> None:
    assert [wire_serial(n) for n in (1, 2, 2**32 - 1, 2**32, 2**32 + 1)] == [1, 2, 2**32 - 1, 1, 2]


@given(st.integers(0, 2**32 - 1), st.binary(max_size=300))
def test_encode_notify_is_a_notify_frame(message_id: int, body: bytes) -> None:
    assert encode_notify(message_id, body) == encode_frame(
        Frame(FrameKind.NOTIFY, message_id, body)
    )


def test_encode_notify_refuses_an_id_out_of_range() -> None:
    with pytest.raises(ValueError, match="out of range"):
        encode_notify(2**32, b"")


@given(st.integers(0, 2**32 - 1), st.binary(max_size=300), st.integers(0, 2**32 - 1))
def test_encode_request_is_a_request_frame(message_id: int, body: bytes, serial: int) -> None:
    frame = Frame(FrameKind.REQUEST, message_id, body, serial)
    assert encode_request(message_id, body, serial) == encode_frame(frame)


def test_encode_request_refuses_a_serial_out_of_range() -> None:
    with pytest.raises(ValueError, match="out of range"):
        encode_request(1, b"", 2**32)
