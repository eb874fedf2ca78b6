"""Totem SRP wire format: layout, round trips, u32 wrap, and refusal of every malformed input.

The targeted tests each build a datagram that breaks exactly one rule and is otherwise valid
(exact length, counts in range), so each one fails if its rule is removed from the decoder.
Raw datagrams are packed here by hand from the module docstring, independently of the encoder.
"""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pycorosync.exec.totem import srp_wire
from pycorosync.exec.totem.events import Guarantee, RingId
from pycorosync.exec.totem.srp_wire import (
    FLAG_ENCAPSULATED,
    FLAG_LEAVE,
    MAGIC,
    MCAST_HEADER_SIZE,
    PROCESSOR_COUNT_MAX,
    RTR_MAX,
    WIRE_VERSION,
    CommitEntry,
    CommitToken,
    HoldCancel,
    Join,
    Mcast,
    MergeDetect,
    MessageType,
    RtrEntry,
    SrpMessage,
    SrpWireError,
    Token,
    WireVersionError,
    decode,
    decode_inner_mcast,
    encode,
    encode_mcast,
    peek_type,
    unwrap,
)

U32 = 2**32 - 1
U64 = 2**64 - 1
RING = RingId(seq=7, rep=1)

# --- Hand-packed datagrams (the docstring's layout, written out independently) ---------------


def header(kind: int, sender: int = 1, flags: int = 0) -> bytes:
    return struct.pack("!HBBBI", MAGIC, WIRE_VERSION, kind, flags, sender)


def ring(rep: int = 1, seq: int = 7) -> bytes:
    return struct.pack("!IQ", rep, seq)


def raw_token(
    *,
    sender: int = 1,
    flags: int = 0,
    rep: int = 1,
    retrans: int = 0,
    rtr: list[tuple[int, int, int]] | None = None,
    count: int | None = None,
) -> bytes:
    entries = rtr or []
    body = ring(rep) + struct.pack(
        "!IIIIIIBB", 10, 20, 15, 2, 3, 4, retrans, len(entries) if count is None else count
    )
    tail = b"".join(struct.pack("!IQI", r, s, q) for r, s, q in entries)
    return header(MessageType.TOKEN, sender, flags) + body + tail


def raw_mcast(
    *,
    sender: int = 1,
    flags: int = 0,
    rep: int = 1,
    guarantee: int = 0,
    payload: bytes = b"hello",
) -> bytes:
    body = ring(rep) + struct.pack("!IB", 5, guarantee)
    return header(MessageType.MCAST, sender, flags) + body + payload


def raw_ring_only(kind: MessageType, *, sender: int = 1, flags: int = 0, rep: int = 1) -> bytes:
    return header(kind, sender, flags) + ring(rep)


def raw_join(
    *,
    sender: int = 1,
    flags: int = 0,
    proc: tuple[int, ...] = (1, 2),
    failed: tuple[int, ...] = (),
) -> bytes:
    counts = struct.pack("!QHH", 9, len(proc), len(failed))
    ids = struct.pack(f"!{len(proc) + len(failed)}I", *proc, *failed)
    return header(MessageType.JOIN, sender, flags) + counts + ids


def raw_commit(
    *,
    sender: int = 1,
    flags: int = 0,
    rep: int = 1,
    members: tuple[int, ...] = (1, 2, 3),
    entries: list[tuple[int, int, int]] | None = None,
) -> bytes:
    """``entries`` as (old ring rep, old ring seq, received_flg); the arus are fixed."""
    rows = entries if entries is not None else [(1, 3, 1)]
    counts = ring(rep) + struct.pack("!IHH", 11, len(members), len(rows))
    ids = struct.pack(f"!{len(members)}I", *members)
    tail = b"".join(struct.pack("!IQIIIB", r, s, 4, 5, 6, flag) for r, s, flag in rows)
    return header(MessageType.COMMIT, sender, flags) + counts + ids + tail


def refused(data: bytes, match: str) -> None:
    with pytest.raises(SrpWireError, match=match):
        decode(data)


# --- Strategies ------------------------------------------------------------------------------

nodeids = st.integers(1, U32)
u32s = st.integers(0, U32)
ring_ids = st.builds(RingId, seq=st.integers(0, U64), rep=nodeids)
guarantees = st.sampled_from(Guarantee)

tokens = st.builds(
    Token,
    sender=nodeids,
    ring_id=ring_ids,
    token_seq=u32s,
    seq=u32s,
    aru=u32s,
    aru_addr=u32s,
    backlog=u32s,
    fcc=u32s,
    retrans_flg=st.booleans(),
    rtr=st.lists(st.builds(RtrEntry, ring_id=ring_ids, seq=u32s), max_size=RTR_MAX),
)
plain_mcasts = st.builds(
    Mcast,
    sender=nodeids,
    ring_id=ring_ids,
    seq=u32s,
    guarantee=guarantees,
    payload=st.binary(max_size=300),
)


@st.composite
def mcasts(draw: st.DrawFn) -> Mcast:
    outer = draw(plain_mcasts)
    if draw(st.booleans()):
        outer.payload = encode(draw(plain_mcasts))
        outer.encapsulated = True
    return outer


@st.composite
def joins(draw: st.DrawFn) -> Join:
    sender = draw(nodeids)
    leave = draw(st.booleans())
    proc = draw(st.lists(nodeids, unique=True, max_size=24))
    failed = draw(st.lists(nodeids, unique=True, max_size=24))
    if leave:
        proc = [p for p in proc if p != sender]
        failed = [f for f in failed if f != sender] + [sender]
    ring_seq = draw(st.integers(0, U64))
    return Join(
        sender=sender, ring_seq=ring_seq, proc=tuple(proc), failed=tuple(failed), leave=leave
    )


commit_entries = st.builds(
    CommitEntry,
    old_ring_id=st.builds(RingId, seq=st.integers(0, U64), rep=u32s),
    aru=u32s,
    high_delivered=u32s,
    safe_seq=u32s,
    received=st.booleans(),
)


@st.composite
def commits(draw: st.DrawFn) -> CommitToken:
    members = sorted(draw(st.sets(nodeids, max_size=24)))
    entries = draw(st.lists(commit_entries, max_size=len(members)))
    return CommitToken(
        sender=draw(nodeids),
        ring_id=draw(ring_ids),
        token_seq=draw(u32s),
        members=tuple(members),
        entries=entries,
    )


fixed_size_messages: st.SearchStrategy[SrpMessage] = st.one_of(
    tokens,
    st.builds(MergeDetect, sender=nodeids, ring_id=ring_ids),
    st.builds(HoldCancel, sender=nodeids, ring_id=ring_ids),
    joins(),
    commits(),
)
messages: st.SearchStrategy[SrpMessage] = st.one_of(fixed_size_messages, mcasts())

# --- Layout and round trips ------------------------------------------------------------------


def test_token_layout_matches_the_docstring() -> None:
    token = Token(
        sender=1,
        ring_id=RING,
        token_seq=10,
        seq=20,
        aru=15,
        aru_addr=2,
        backlog=3,
        fcc=4,
        rtr=[RtrEntry(ring_id=RingId(seq=6, rep=2), seq=12)],
    )
    assert encode(token) == raw_token(rtr=[(2, 6, 12)])


def test_mcast_layout_matches_the_docstring() -> None:
    mcast = Mcast(sender=1, ring_id=RING, seq=5, guarantee=Guarantee.AGREED, payload=b"hello")
    assert encode(mcast) == raw_mcast()
    assert encode_mcast(1, RING, 5, Guarantee.AGREED, b"hello") == raw_mcast()
    inner = raw_mcast(sender=3)
    assert encode_mcast(1, RING, 5, Guarantee.SAFE, inner, encapsulated=True) == raw_mcast(
        flags=FLAG_ENCAPSULATED, guarantee=1, payload=inner
    )


def test_ring_only_layouts_match_the_docstring() -> None:
    assert encode(MergeDetect(sender=1, ring_id=RING)) == raw_ring_only(MessageType.MERGE_DETECT)
    assert encode(HoldCancel(sender=1, ring_id=RING)) == raw_ring_only(MessageType.HOLD_CANCEL)


def test_join_layout_matches_the_docstring() -> None:
    join = Join(sender=1, ring_seq=9, proc=(2, 3), failed=(1,), leave=True)
    assert encode(join) == raw_join(flags=FLAG_LEAVE, proc=(2, 3), failed=(1,))


def test_commit_layout_matches_the_docstring() -> None:
    entry = CommitEntry(
        old_ring_id=RingId(seq=3, rep=1), aru=4, high_delivered=5, safe_seq=6, received=True
    )
    commit = CommitToken(sender=1, ring_id=RING, token_seq=11, members=(1, 2, 3), entries=[entry])
    assert encode(commit) == raw_commit()


@given(messages)
def test_every_message_round_trips(message: SrpMessage) -> None:
    data = encode(message)
    assert decode(data) == message
    assert decode(memoryview(b"pad" + data)[3:]) == message
    assert peek_type(data) is _TYPE_OF[type(message)]


@given(mcasts())
def test_mcast_fast_path_matches_encode(mcast: Mcast) -> None:
    fast = encode_mcast(
        mcast.sender,
        mcast.ring_id,
        mcast.seq,
        mcast.guarantee,
        mcast.payload,
        encapsulated=mcast.encapsulated,
    )
    assert fast == encode(mcast)


def test_decoded_payload_is_bytes_from_a_memoryview() -> None:
    message = decode(memoryview(raw_mcast()))
    assert isinstance(message, Mcast)
    assert type(message.payload) is bytes
    assert message.payload == b"hello"


def test_largest_counts_round_trip() -> None:
    ids = tuple(range(1, PROCESSOR_COUNT_MAX + 1))
    entry = CommitEntry(old_ring_id=RING, aru=1, high_delivered=1, safe_seq=1, received=False)
    rtr = [RtrEntry(ring_id=RING, seq=n) for n in range(RTR_MAX)]
    for message in (
        Token(sender=1, ring_id=RING, token_seq=1, seq=1, aru=1, aru_addr=0, rtr=rtr),
        Join(sender=1, ring_seq=1, proc=ids, failed=ids),
        CommitToken(sender=1, ring_id=RING, token_seq=1, members=ids, entries=[entry] * len(ids)),
    ):
        assert decode(encode(message)) == message


def test_commit_entry_may_name_no_previous_ring() -> None:
    message = decode(raw_commit(entries=[(0, 0, 0)]))
    assert isinstance(message, CommitToken)
    assert message.entries[0].old_ring_id == RingId(seq=0, rep=0)


# --- u32 fields ------------------------------------------------------------------------------


def test_seq_beyond_u32_is_masked_and_unwraps() -> None:
    mcast = Mcast(sender=1, ring_id=RING, seq=2**32 + 5, guarantee=Guarantee.AGREED, payload=b"")
    decoded = decode(encode(mcast))
    assert isinstance(decoded, Mcast)
    assert decoded.seq == 5
    assert unwrap(decoded.seq, 2**32) == 2**32 + 5
    # Across the wrap: the reference is still below 2**32, the value just above it.
    assert unwrap(decoded.seq, 2**32 - 3) == 2**32 + 5
    assert unwrap(2**32 - 2, 2**32 + 1) == 2**32 - 2


def test_initial_minus_one_token_seq_survives() -> None:
    token = Token(sender=1, ring_id=RING, token_seq=-1, seq=0, aru=-1, aru_addr=0)
    decoded = decode(encode(token))
    assert isinstance(decoded, Token)
    assert decoded.token_seq == U32
    assert unwrap(decoded.token_seq, 0) == -1
    assert unwrap(decoded.aru, 3) == -1


unbounded = st.integers(-(2**40), 2**40)


@given(
    st.lists(unbounded, min_size=9, max_size=9),
    st.integers(-(2**31) + 1, 2**31 - 1),
)
def test_u32_fields_are_masked_and_unwrap_near_a_reference(
    values: list[int], distance: int
) -> None:
    token_seq, seq, aru, aru_addr, backlog, fcc, rtr_seq, entry_aru, safe = values
    token = Token(
        sender=1,
        ring_id=RING,
        token_seq=token_seq,
        seq=seq,
        aru=aru,
        aru_addr=aru_addr,
        backlog=backlog,
        fcc=fcc,
        rtr=[RtrEntry(ring_id=RING, seq=rtr_seq)],
    )
    entry = CommitEntry(
        old_ring_id=RING, aru=entry_aru, high_delivered=seq, safe_seq=safe, received=True
    )
    commit = CommitToken(sender=1, ring_id=RING, token_seq=token_seq, members=(1,), entries=[entry])
    t = decode(encode(token))
    c = decode(encode(commit))
    assert isinstance(t, Token)
    assert isinstance(c, CommitToken)
    e = c.entries[0]
    wire = [
        t.token_seq,
        t.seq,
        t.aru,
        t.aru_addr,
        t.backlog,
        t.fcc,
        t.rtr[0].seq,
        e.aru,
        e.safe_seq,
    ]
    assert wire == [v & U32 for v in values]
    assert [c.token_seq, e.high_delivered] == [token_seq & U32, seq & U32]
    assert [unwrap(w, v + distance) for w, v in zip(wire, values, strict=True)] == values


# --- Lengths ---------------------------------------------------------------------------------


@given(fixed_size_messages, st.integers(0, 255))
def test_every_truncation_and_one_byte_extension_is_refused(
    message: SrpMessage, extra: int
) -> None:
    data = encode(message)
    for cut in range(len(data)):
        with pytest.raises(SrpWireError):
            decode(data[:cut])
    with pytest.raises(SrpWireError):
        decode(data + bytes([extra]))


@given(mcasts())
def test_mcast_truncated_into_a_header_is_refused(mcast: Mcast) -> None:
    # The payload is "the rest" of the datagram, so only a cut into a header can be detected.
    data = encode(mcast)
    headers = 2 * MCAST_HEADER_SIZE if mcast.encapsulated else MCAST_HEADER_SIZE
    for cut in range(headers):
        with pytest.raises(SrpWireError):
            decode(data[:cut])


def test_length_errors_say_what_was_expected() -> None:
    data = raw_token(rtr=[(1, 1, 1)] * 3)
    refused(data[:60], "TOKEN: 3 rtr entries need 95 bytes, got 60")
    refused(data[:40], "TOKEN: 40 bytes, shorter than its 47-byte fixed part")
    refused(raw_ring_only(MessageType.MERGE_DETECT) + b"\0", "MERGE_DETECT: a ring id need")
    refused(raw_join()[:-1], "JOIN: 2 proc and 0 failed entries need 29 bytes, got 28")
    refused(raw_commit() + b"\0", r"COMMIT: 3 members and 1 entries need 66 bytes, got 67")
    refused(b"\xc0", "1-byte datagram, shorter than the 9-byte header")


# --- Header rules ----------------------------------------------------------------------------

ALL_VALID = [
    raw_token(),
    raw_mcast(),
    raw_ring_only(MessageType.MERGE_DETECT),
    raw_ring_only(MessageType.HOLD_CANCEL),
    raw_join(),
    raw_commit(),
]


def test_the_valid_samples_decode() -> None:
    for data in ALL_VALID:
        decode(data)


@pytest.mark.parametrize("data", ALL_VALID)
def test_bad_magic_is_refused(data: bytes) -> None:
    refused(b"\xc0\xa6" + data[2:], "bad magic 0xc0a6")


@pytest.mark.parametrize("data", ALL_VALID)
@pytest.mark.parametrize("version", [0, 2, 255])
def test_other_version_raises_version_error(data: bytes, version: int) -> None:
    for candidate in (data[:2] + bytes([version]) + data[3:], data[:2] + bytes([version])):
        with pytest.raises(WireVersionError, match=f"version {version}") as info:
            decode(candidate)
        assert info.value.version == version
        assert peek_type(candidate) is None


@pytest.mark.parametrize("kind", [0, 7, 255])
def test_unknown_type_is_refused(kind: int) -> None:
    refused(header(kind) + ring(), f"unknown message type {kind}")


@pytest.mark.parametrize(
    ("data", "flags"),
    [
        (raw_token(flags=0x01), 0x01),
        (raw_mcast(flags=0x02), 0x02),
        (raw_mcast(flags=0x80 | FLAG_ENCAPSULATED, payload=raw_mcast()), 0x81),
        (raw_ring_only(MessageType.MERGE_DETECT, flags=0x01), 0x01),
        (raw_ring_only(MessageType.HOLD_CANCEL, flags=0x40), 0x40),
        (raw_join(flags=0x02), 0x02),
        (raw_commit(flags=0x01), 0x01),
    ],
)
def test_unknown_flags_are_refused(data: bytes, flags: int) -> None:
    refused(data, f"unknown flags {flags:#04x}")


@pytest.mark.parametrize("data", ALL_VALID)
def test_sender_zero_is_refused(data: bytes) -> None:
    refused(data[:5] + bytes(4) + data[9:], "sender nodeid 0")


@pytest.mark.parametrize(
    "data",
    [
        raw_token(rep=0),
        raw_token(rtr=[(1, 2, 3), (0, 2, 4)]),
        raw_mcast(rep=0),
        raw_ring_only(MessageType.MERGE_DETECT, rep=0),
        raw_ring_only(MessageType.HOLD_CANCEL, rep=0),
        raw_commit(rep=0),
    ],
)
def test_ring_id_with_rep_zero_is_refused(data: bytes) -> None:
    refused(data, "ring id with representative 0")


# --- TOKEN and MCAST rules -------------------------------------------------------------------


def test_token_retrans_flg_must_be_boolean() -> None:
    decode(raw_token(retrans=1))
    refused(raw_token(retrans=2), "retrans_flg is 2")


def test_token_rtr_count_above_max_is_refused() -> None:
    rtr = [(1, 1, n) for n in range(RTR_MAX + 1)]
    refused(raw_token(rtr=rtr), f"{RTR_MAX + 1} rtr entries, at most {RTR_MAX}")


def test_mcast_guarantee_must_be_agreed_or_safe() -> None:
    decode(raw_mcast(guarantee=1))
    refused(raw_mcast(guarantee=2), "guarantee 2")


def test_encapsulated_payload_must_be_a_plain_mcast() -> None:
    inner = raw_mcast(sender=2)
    decode(raw_mcast(flags=FLAG_ENCAPSULATED, payload=inner))
    nested = raw_mcast(flags=FLAG_ENCAPSULATED, payload=inner)
    refused(raw_mcast(flags=FLAG_ENCAPSULATED, payload=nested), "itself encapsulated")
    refused(raw_mcast(flags=FLAG_ENCAPSULATED, payload=raw_token()), "a TOKEN, not an MCAST")
    refused(raw_mcast(flags=FLAG_ENCAPSULATED, payload=inner[:20]), "bad encapsulated message")
    refused(raw_mcast(flags=FLAG_ENCAPSULATED, payload=raw_mcast(rep=0)), "representative 0")


def test_inner_version_mismatch_is_a_plain_wire_error() -> None:
    # The outer sender speaks our version; a foreign inner header is corruption, not a release.
    inner = raw_mcast()
    inner = inner[:2] + b"\x02" + inner[3:]
    with pytest.raises(SrpWireError, match="bad encapsulated message") as info:
        decode(raw_mcast(flags=FLAG_ENCAPSULATED, payload=inner))
    assert not isinstance(info.value, WireVersionError)


def test_deep_nesting_does_not_recurse() -> None:
    data = raw_mcast()
    for _ in range(5000):
        data = raw_mcast(flags=FLAG_ENCAPSULATED, payload=data)
    refused(data, "itself encapsulated")


def test_decode_inner_mcast() -> None:
    inner = Mcast(sender=2, ring_id=RING, seq=3, guarantee=Guarantee.SAFE, payload=b"x")
    outer = decode(encode_mcast(1, RingId(seq=8, rep=1), 1, Guarantee.AGREED, encode(inner)))
    assert isinstance(outer, Mcast)
    assert decode_inner_mcast(outer.payload) == inner
    with pytest.raises(SrpWireError, match="itself encapsulated"):
        decode_inner_mcast(raw_mcast(flags=FLAG_ENCAPSULATED, payload=raw_mcast()))
    with pytest.raises(SrpWireError, match="a JOIN, not an MCAST"):
        decode_inner_mcast(raw_join())
    with pytest.raises(SrpWireError, match="shorter than the 9-byte header"):
        decode_inner_mcast(b"")


# --- JOIN rules ------------------------------------------------------------------------------


def test_join_counts_above_max_are_refused() -> None:
    many = tuple(range(1, PROCESSOR_COUNT_MAX + 2))
    refused(raw_join(proc=many), f"{PROCESSOR_COUNT_MAX + 1} proc entries, at most")
    refused(raw_join(failed=many), f"{PROCESSOR_COUNT_MAX + 1} failed entries, at most")


def test_join_nodeid_zero_is_refused() -> None:
    refused(raw_join(proc=(1, 0)), "nodeid 0 in proc")
    refused(raw_join(failed=(0,)), "nodeid 0 in failed")


def test_join_duplicates_are_refused() -> None:
    decode(raw_join(proc=(1, 2), failed=(2,)))  # the same node in both lists is fine
    refused(raw_join(proc=(1, 2, 1)), "duplicate nodeid in proc")
    refused(raw_join(failed=(3, 3)), "duplicate nodeid in failed")


def test_leave_sender_must_be_the_last_failed_entry() -> None:
    decode(raw_join(sender=3, flags=FLAG_LEAVE, proc=(1, 2), failed=(4, 3)))
    refused(raw_join(sender=3, flags=FLAG_LEAVE, proc=(1, 2)), "not the last failed entry")
    refused(
        raw_join(sender=3, flags=FLAG_LEAVE, proc=(1, 2), failed=(3, 4)),
        "not the last failed entry",
    )


def test_leave_sender_must_not_be_in_proc() -> None:
    refused(raw_join(sender=3, flags=FLAG_LEAVE, proc=(1, 3), failed=(3,)), "is in proc")


def test_join_without_leave_has_no_sender_rule() -> None:
    join = decode(raw_join(sender=3, proc=(1, 3), failed=(3,)))
    assert isinstance(join, Join)
    assert not join.leave


# --- COMMIT rules ----------------------------------------------------------------------------


def test_commit_member_count_above_max_is_refused() -> None:
    many = tuple(range(1, PROCESSOR_COUNT_MAX + 2))
    refused(raw_commit(members=many), f"{PROCESSOR_COUNT_MAX + 1} members, at most")


def test_commit_entries_beyond_members_are_refused() -> None:
    refused(raw_commit(members=(1,), entries=[(1, 1, 1)] * 2), "2 entries for 1 members")


@pytest.mark.parametrize(
    ("members", "match"),
    [
        ((2, 1, 3), "not strictly ascending"),
        ((1, 2, 2), "not strictly ascending"),
        ((0, 1, 2), "member nodeid 0"),
    ],
)
def test_commit_members_are_nonzero_and_strictly_ascending(
    members: tuple[int, ...], match: str
) -> None:
    refused(raw_commit(members=members), match)


def test_commit_received_flg_must_be_boolean() -> None:
    decode(raw_commit(entries=[(1, 1, 0)]))
    refused(raw_commit(entries=[(1, 1, 0), (1, 1, 2)]), "received_flg is 2")


# --- Hostile input ---------------------------------------------------------------------------


def _decode_or_refuse(data: bytes) -> None:
    """Decoding either refuses with SrpWireError or yields the message this exact datagram
    encodes (the format has one encoding per message); peek_type never raises."""
    kind = peek_type(data)
    try:
        message = decode(data)
    except SrpWireError:
        return
    assert encode(message) == data
    assert kind is _TYPE_OF[type(message)]


@given(st.binary(max_size=200))
def test_arbitrary_bytes_only_raise_wire_errors(data: bytes) -> None:
    _decode_or_refuse(data)


@given(
    st.integers(0, 7),
    st.sampled_from([0, 1, 2, 0x80]),
    st.sampled_from([0, 1, 2, U32]),
    st.binary(max_size=200),
)
def test_valid_headers_with_arbitrary_bodies_only_raise_wire_errors(
    kind: int, flags: int, sender: int, body: bytes
) -> None:
    _decode_or_refuse(header(kind, sender, flags) + body)


@given(messages, st.data())
def test_corrupted_datagrams_only_raise_wire_errors(
    message: SrpMessage, data: st.DataObject
) -> None:
    raw = bytearray(encode(message))
    for _ in range(data.draw(st.integers(1, 4))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    _decode_or_refuse(bytes(raw))


# --- peek_type -------------------------------------------------------------------------------

_TYPE_OF: dict[type, MessageType] = {
    Token: MessageType.TOKEN,
    Mcast: MessageType.MCAST,
    MergeDetect: MessageType.MERGE_DETECT,
    HoldCancel: MessageType.HOLD_CANCEL,
    Join: MessageType.JOIN,
    CommitToken: MessageType.COMMIT,
}


def test_peek_type_reads_the_header() -> None:
    kinds = [peek_type(data) for data in ALL_VALID]
    assert kinds == [
        MessageType.TOKEN,
        MessageType.MCAST,
        MessageType.MERGE_DETECT,
        MessageType.HOLD_CANCEL,
        MessageType.JOIN,
        MessageType.COMMIT,
    ]
    assert peek_type(memoryview(raw_token())) is MessageType.TOKEN


@pytest.mark.parametrize(
    "data",
    [b"", raw_token()[:8], b"\0" * 9 + raw_token()[9:], header(0), header(7)],
)
def test_peek_type_is_none_for_a_bad_header(data: bytes) -> None:
    assert peek_type(data) is None


def test_peek_type_sorts_tokens_last() -> None:
    batch = [raw_token(), raw_mcast(), b"junk", raw_join()]
    ordered = sorted(batch, key=lambda d: peek_type(d) is MessageType.TOKEN)
    assert ordered[-1] == raw_token()


# --- Encoder limits --------------------------------------------------------------------------


def test_encoder_refuses_what_the_wire_cannot_carry() -> None:
    many = tuple(range(1, PROCESSOR_COUNT_MAX + 2))
    rtr = [RtrEntry(ring_id=RING, seq=1)] * (RTR_MAX + 1)
    entry = CommitEntry(old_ring_id=RING, aru=1, high_delivered=1, safe_seq=1, received=True)
    cases: list[tuple[SrpMessage, str]] = [
        (Token(sender=1, ring_id=RING, token_seq=0, seq=0, aru=0, aru_addr=0, rtr=rtr), "rtr"),
        (Join(sender=1, ring_seq=0, proc=many, failed=()), "proc entries"),
        (Join(sender=1, ring_seq=0, proc=(), failed=many), "failed entries"),
        (CommitToken(sender=1, ring_id=RING, token_seq=0, members=many), "members"),
        (
            CommitToken(sender=1, ring_id=RING, token_seq=0, members=(1,), entries=[entry] * 2),
            "2 entries for 1 members",
        ),
        (MergeDetect(sender=2**32, ring_id=RING), "cannot be encoded"),
        (HoldCancel(sender=1, ring_id=RingId(seq=-1, rep=1)), "cannot be encoded"),
        (Join(sender=1, ring_seq=2**64, proc=(), failed=()), "cannot be encoded"),
    ]
    for message, match in cases:
        with pytest.raises(SrpWireError, match=match):
            encode(message)
    with pytest.raises(SrpWireError, match="cannot be encoded"):
        encode_mcast(0, RingId(seq=1, rep=2**32), 1, Guarantee.AGREED, b"")


def test_encoder_refuses_a_non_message() -> None:
    with pytest.raises(TypeError, match="not an SRP message"):
        encode(RING)  # type: ignore[arg-type]


def test_ring_id_memo_stays_bounded_and_correct() -> None:
    for seq in range(3 * srp_wire._RING_IDS_MAX):
        message = decode(raw_mcast()[:9] + ring(2, seq) + raw_mcast()[21:])
        assert isinstance(message, Mcast)
        assert message.ring_id == RingId(seq=seq, rep=2)
        assert len(srp_wire._RING_IDS) <= srp_wire._RING_IDS_MAX
    refused(raw_mcast(rep=0), "representative 0")
