"""totempg: packing, fragmentation, reassembly, lanes, groups and service routing."""

from __future__ import annotations

import struct
import tracemalloc
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pycorosync.exec.totem.events import ConfigChange, ConfigKind, Guarantee, RingId
from pycorosync.exec.totem.pg import (
    FrameOutlet,
    FrameSinkError,
    GroupDelivery,
    Lane,
    Packer,
    PgMessage,
    ServiceRouter,
    TotemPg,
    UnknownServiceError,
    Unpacker,
)
from pycorosync.exec.totem.pg_wire import (
    FRAME_HEADER,
    MAX_MESSAGE_SIZE,
    MAX_PACKED_MESSAGE,
    FrameVersionError,
    MalformedFrameError,
    MalformedServiceHeaderError,
    OversizeMessageError,
    PgWireError,
    ServiceId,
    decode_frame,
    encode_frame,
    encode_service,
)
from pycorosync.lib.errors import (
    InvalidParamError,
    NameTooLongError,
    TooBigError,
    TooManyGroupsError,
)


@dataclass
class FakeQueue:
    """SRP's send queue as totempg sees it: bounded, FIFO, answers "would block"."""

    capacity: int = 1 << 30
    frames: list[tuple[bytes, Guarantee]] = field(default_factory=list)

    def mcast(self, frame: bytes, guarantee: Guarantee) -> bool:
        if len(self.frames) >= self.capacity:
            return False
        self.frames.append((frame, guarantee))
        return True

    def room(self) -> int:
        return self.capacity - len(self.frames)

    def take(self) -> list[tuple[bytes, Guarantee]]:
        out, self.frames = self.frames, []
        return out


def make_packer(max_frame: int, queue: FakeQueue, lane: Lane = Lane.APP) -> Packer:
    return Packer(max_frame=max_frame, mcast=queue.mcast, room=queue.room, lane=lane)


def unpack_all(unpacker: Unpacker, sender: int, frames: list[tuple[bytes, Guarantee]]) -> list:
    out: list[PgMessage] = []
    for frame, guarantee in frames:
        out.extend(unpacker.receive(sender, frame, guarantee))
    return out


def payload(tag: int, size: int) -> bytes:
    """A recognisable payload: distinct per tag, so a wrong join is visible."""
    unit = tag.to_bytes(4, "big")
    return (unit * (size // 4 + 1))[:size]


message_sizes = st.one_of(
    st.integers(1, 100),
    st.integers(100, 3000),
    st.integers(3000, 40_000),
)


@given(
    max_frame=st.sampled_from([16, 61, 200, 1382]),
    messages=st.lists(
        st.tuples(message_sizes, st.sampled_from(Guarantee), st.booleans()), max_size=30
    ),
)
def test_round_trip_preserves_messages_order_and_guarantee(
    max_frame: int, messages: list[tuple[int, Guarantee, bool]]
) -> None:
    queue = FakeQueue()
    packer = make_packer(max_frame, queue)
    sent = []
    for tag, (size, guarantee, flush_after) in enumerate(messages):
        data = payload(tag, size)
        before = len(queue.frames)
        needed = packer.frames_needed(size, guarantee)
        assert packer.send(data, guarantee)
        # Exactly the frames this send emitted plus the one holding its last piece, if staged.
        assert needed == len(queue.frames) - before + packer.staged
        sent.append((data, guarantee))
        if flush_after:
            assert packer.flush()
    assert packer.flush()
    frames = queue.take()
    assert all(len(frame) <= max_frame for frame, _ in frames)
    received = unpack_all(Unpacker(max_frame=max_frame), 7, frames)
    assert [(m.data, m.guarantee) for m in received] == sent
    assert all(m.sender == 7 and m.lane is Lane.APP for m in received)


@given(
    data=st.data(),
    sizes=st.lists(st.integers(1, 500), min_size=1, max_size=12),
)
@settings(max_examples=40)
def test_interleaved_senders_reassemble_independently(data: st.DataObject, sizes: list) -> None:
    queues = {1: FakeQueue(), 2: FakeQueue()}
    sent: dict[int, list[bytes]] = {1: [], 2: []}
    for node, queue in queues.items():
        packer = make_packer(40, queue)
        for tag, size in enumerate(sizes):
            message = payload(node * 1000 + tag, size + node)
            assert packer.send(message)
            sent[node].append(message)
        assert packer.flush()
    pending = {node: queue.take() for node, queue in queues.items()}
    unpacker = Unpacker(max_frame=40)
    got: dict[int, list[bytes]] = {1: [], 2: []}
    while pending[1] or pending[2]:
        node = data.draw(st.sampled_from([n for n in (1, 2) if pending[n]]))
        frame, guarantee = pending[node].pop(0)
        got[node] += [m.data for m in unpacker.receive(node, frame, guarantee)]
    assert got == sent


@pytest.mark.parametrize(
    ("max_frame", "size", "count"),
    [(1382, 64, 100), (1382, 1, 1000), (200, 17, 50), (65535, 1024, 200), (16, 4, 9)],
)
def test_exact_packing_of_equal_small_messages(max_frame: int, size: int, count: int) -> None:
    queue = FakeQueue()
    packer = make_packer(max_frame, queue)
    for tag in range(count):
        assert packer.send(payload(tag, size))
    assert packer.flush()
    per_frame = (max_frame - 8) // (size + 2)
    frames = [frame for frame, _ in queue.take()]
    assert len(frames) == -(-count // per_frame)
    pieces = [len(decode_frame(frame, max_frame).lengths) for frame in frames]
    assert pieces[:-1] == [per_frame] * (len(frames) - 1)
    assert pieces[-1] == count - per_frame * (len(frames) - 1)


@pytest.mark.parametrize("max_frame", [1382, 65535])
def test_largest_message_fragments_into_the_computed_frame_count(max_frame: int) -> None:
    queue = FakeQueue()
    packer = make_packer(max_frame, queue)
    big = payload(3, MAX_MESSAGE_SIZE)
    assert packer.send(big, Guarantee.SAFE)
    assert packer.flush()
    frames = queue.take()
    assert len(frames) == -(-MAX_MESSAGE_SIZE // (max_frame - 10))
    assert {g for _, g in frames} == {Guarantee.SAFE}
    received = unpack_all(Unpacker(max_frame=max_frame), 1, frames)
    assert [m.data for m in received] == [big]


def test_small_message_is_never_split_but_large_one_fills_the_remainder() -> None:
    queue = FakeQueue()
    packer = make_packer(100, queue)
    assert packer.send(payload(0, 50))  # 8 + 2 + 50 = 60 used, room for a 38-byte piece
    assert packer.send(payload(1, 60))  # fits an empty frame: closes the first one
    assert [len(decode_frame(f, 100).lengths) for f, _ in queue.frames] == [1]
    assert packer.send(payload(2, 200))  # too big for any frame: fills the 26-byte remainder
    first = decode_frame(queue.frames[1][0], 100)
    assert first.lengths == (60, 28)
    assert first.link != 0


def test_guarantees_are_never_mixed_in_one_frame() -> None:
    queue = FakeQueue()
    packer = make_packer(1382, queue)
    assert packer.send(b"agreed-1")
    assert packer.send(b"safe-1", Guarantee.SAFE)
    assert packer.send(b"safe-2", Guarantee.SAFE)
    assert packer.send(b"agreed-2")
    assert packer.flush()
    frames = queue.take()
    assert [g for _, g in frames] == [
        Guarantee.AGREED,
        Guarantee.SAFE,
        Guarantee.AGREED,
    ]
    assert [len(decode_frame(f, 1382).lengths) for f, _ in frames] == [1, 2, 1]


def test_back_pressure_accepts_a_message_only_if_all_its_frames_fit() -> None:
    queue = FakeQueue(capacity=2)
    packer = make_packer(100, queue)
    big = payload(1, 250)  # 90 + 90 + 70: three frames
    assert packer.frames_needed(len(big), Guarantee.AGREED) == 3
    assert not packer.send(big)
    assert queue.frames == []
    assert not packer.staged
    queue.capacity = 3
    assert packer.send(big)
    assert packer.flush()
    assert [m.data for m in unpack_all(Unpacker(max_frame=100), 1, queue.take())] == [big]


def test_back_pressure_counts_the_frame_a_guarantee_switch_closes() -> None:
    queue = FakeQueue(capacity=1)
    packer = make_packer(100, queue)
    assert packer.send(b"a")
    assert not packer.send(b"s", Guarantee.SAFE)  # needs the staged frame + a new one
    assert packer.send(b"a2")  # same guarantee still packs into the staged frame
    assert packer.flush()
    assert len(queue.frames) == 1


def test_flush_without_room_keeps_the_frame_staged() -> None:
    queue = FakeQueue(capacity=1)
    packer = make_packer(100, queue)
    assert packer.send(b"x")
    queue.capacity = 0
    assert not packer.flush()
    assert packer.staged
    queue.capacity = 1
    assert packer.flush()
    assert not packer.staged
    assert packer.flush()  # nothing staged: nothing to do


def test_a_queue_that_breaks_its_room_promise_is_reported() -> None:
    packer = Packer(max_frame=100, mcast=lambda f, g: False, room=lambda: 10, lane=Lane.APP)
    with pytest.raises(FrameSinkError):
        packer.send(payload(0, 300))


@pytest.mark.parametrize("max_frame", [15, 65536, 0])
def test_max_frame_is_validated(max_frame: int) -> None:
    with pytest.raises(InvalidParamError):
        Unpacker(max_frame=max_frame)


def test_empty_and_oversize_messages_are_refused() -> None:
    packer = make_packer(1382, FakeQueue())
    with pytest.raises(InvalidParamError):
        packer.send(b"")
    with pytest.raises(TooBigError):
        packer.send(bytes(MAX_PACKED_MESSAGE + 1))
    assert not packer.staged


def fragmented(tag: int, size: int, max_frame: int = 40) -> list[tuple[bytes, Guarantee]]:
    queue = FakeQueue()
    packer = make_packer(max_frame, queue)
    assert packer.send(payload(tag, size))
    assert packer.flush()
    return queue.take()


def test_config_change_discards_a_departed_senders_partial_message() -> None:
    pg = TotemPg(max_frame=40, app=FrameOutlet(FakeQueue().mcast, FakeQueue().room), sync=fq())
    pg.join(b"a")
    sender_queue = FakeQueue()
    sender = TotemPg(
        max_frame=40, app=FrameOutlet(sender_queue.mcast, sender_queue.room), sync=fq()
    )
    assert sender.mcast([b"a"], payload(1, 200))
    assert sender.flush()
    frames = sender_queue.take()
    for frame, guarantee in frames[:3]:
        assert pg.deliver(5, frame, guarantee) == []
    assert pg.unpacker.unfinished(Lane.APP) == {5: 3 * 30}
    ring = RingId(seq=8, rep=1)
    pg.config_change(
        ConfigChange(kind=ConfigKind.TRANSITIONAL, members=(1,), left=(5,), joined=(), ring_id=ring)
    )
    assert pg.unpacker.unfinished(Lane.APP) == {}
    assert pg.unpacker.stats.departed_messages == 1
    # The node comes back as a new incarnation and starts afresh; its stale remainder, were
    # it ever delivered, would be an orphan, never glued to the new message.
    restarted_queue = FakeQueue()
    restarted = TotemPg(
        max_frame=40, app=FrameOutlet(restarted_queue.mcast, restarted_queue.room), sync=fq()
    )
    assert restarted.mcast([b"a"], b"fresh")
    assert restarted.flush()
    late = frames[3:]
    got = [d.payload for f, g in late + restarted_queue.take() for d in pg.deliver(5, f, g)]
    assert got == [b"fresh"]


def fq() -> FrameOutlet:
    queue = FakeQueue()
    return FrameOutlet(queue.mcast, queue.room)


def test_lost_middle_frame_throws_away_the_orphans_but_keeps_complete_messages() -> None:
    queue = FakeQueue()
    packer = make_packer(40, queue)
    big, after = payload(1, 100), payload(2, 5)
    assert packer.send(big)
    assert packer.send(after)  # rides in the frame holding big's tail
    assert packer.send(payload(3, 60))  # fragmented again: next chain
    assert packer.flush()
    frames = queue.take()
    unpacker = Unpacker(max_frame=40)
    del frames[1]  # a middle frame of `big` is never delivered
    got = [m.data for m in unpack_all(unpacker, 9, frames)]
    assert got == [after, payload(3, 60)]
    assert unpacker.stats.abandoned_messages == 1  # big's head, whose continuation was lost
    assert unpacker.stats.orphaned_pieces == 2  # big's third and fourth pieces


def test_continuation_of_an_unknown_chain_is_dropped_until_the_chain_ends() -> None:
    frames = fragmented(4, 150)  # 30 + 30 + 30 + 30 + 30: five frames
    assert len(frames) == 5
    unpacker = Unpacker(max_frame=40)
    assert unpack_all(unpacker, 3, frames[1:]) == []  # never saw the head
    assert unpacker.stats.orphaned_pieces == 4
    assert unpacker.unfinished(Lane.APP) == {}
    assert [m.data for m in unpack_all(unpacker, 3, fragmented(5, 70))] == [payload(5, 70)]


def test_a_new_message_while_one_is_unfinished_abandons_the_unfinished_one() -> None:
    first, second = fragmented(1, 100), fragmented(2, 100)
    unpacker = Unpacker(max_frame=40)
    got = unpack_all(unpacker, 3, first[:2] + second)
    assert [m.data for m in got] == [payload(2, 100)]
    assert unpacker.stats.abandoned_messages == 1


def bad_frames() -> list[tuple[str, bytes, type[Exception]]]:
    good = encode_frame(sync_lane=False, continues=0, link=0, lengths=[3], pieces=[b"abc"])
    return [
        ("short", good[:9], MalformedFrameError),
        ("version", b"\x02" + good[1:], FrameVersionError),
        ("flags", good[:1] + b"\x80" + good[2:], MalformedFrameError),
        ("zero count", FRAME_HEADER.pack(1, 0, 0, 0, 0) + b"\0\0abc", MalformedFrameError),
        ("count overruns", FRAME_HEADER.pack(1, 0, 9, 0, 0) + b"\0\3abc", MalformedFrameError),
        ("length too long", good[:8] + b"\0\4" + b"abc", MalformedFrameError),
        ("length too short", good[:8] + b"\0\2" + b"abc", MalformedFrameError),
        ("trailing bytes", good + b"z", MalformedFrameError),
        ("empty piece", FRAME_HEADER.pack(1, 0, 2, 0, 0) + b"\0\0\0\3abc", MalformedFrameError),
        ("too long", good + bytes(40), MalformedFrameError),
    ]


@pytest.mark.parametrize(
    ("name", "frame", "error"), bad_frames(), ids=lambda v: v if isinstance(v, str) else ""
)
def test_malformed_frame_is_refused_and_leaves_reassembly_state_intact(
    name: str, frame: bytes, error: type[Exception]
) -> None:
    unpacker = Unpacker(max_frame=40)
    mine, theirs = fragmented(1, 100), fragmented(2, 100)
    unpack_all(unpacker, 1, mine[:2])
    unpack_all(unpacker, 2, theirs[:2])
    before = unpacker.unfinished(Lane.APP)
    with pytest.raises(error):
        unpacker.receive(1, frame, Guarantee.AGREED)
    assert unpacker.unfinished(Lane.APP) == before
    assert unpacker.stats.rejected_frames == 1
    assert [m.data for m in unpack_all(unpacker, 2, theirs[2:])] == [payload(2, 100)]
    assert [m.data for m in unpack_all(unpacker, 1, mine[2:])] == [payload(1, 100)]


def test_link_ids_cycle_through_65535_and_never_use_0() -> None:
    queue = FakeQueue()
    packer = make_packer(16, queue)  # 6 data bytes a frame: 65537+ links for this message
    big = payload(7, 6 * 65540)
    assert packer.send(big)
    assert packer.flush()
    frames = queue.take()
    links = [decode_frame(frame, 16).link for frame, _ in frames]
    assert links[65533:65537] == [65534, 65535, 1, 2]
    assert 0 not in links[:-1]
    assert [m.data for m in unpack_all(Unpacker(max_frame=16), 1, frames)] == [big]


frame_fields = st.tuples(
    st.sampled_from([0, 1, 2]),  # version
    st.sampled_from([0, 1, 2, 0x81]),  # flags
    st.integers(0, 6),  # count
    st.sampled_from([0, 1, 2, 3, 0xFFFF]),  # continues
    st.sampled_from([0, 1, 2, 4, 0xFFFF]),  # link
)


@given(
    fields=frame_fields,
    lengths=st.lists(st.integers(0, 40), max_size=6),
    data=st.binary(max_size=60),
    raw=st.none() | st.binary(max_size=60),
)
def test_arbitrary_frames_never_corrupt_another_senders_message(
    fields: tuple[int, int, int, int, int], lengths: list[int], data: bytes, raw: bytes | None
) -> None:
    version, flags, count, continues, link = fields
    frame = raw
    if frame is None:
        frame = FRAME_HEADER.pack(version, flags, count, continues, link)
        frame += struct.pack(f"!{len(lengths)}H", *lengths) + data
    unpacker = Unpacker(max_frame=40)
    theirs = fragmented(2, 100)
    unpack_all(unpacker, 2, theirs[:2])
    try:
        got = unpacker.receive(1, frame, Guarantee.SAFE)
    except PgWireError:
        got = []
    assert all(len(m.data) <= 40 and m.sender == 1 for m in got)
    assert all(size <= MAX_PACKED_MESSAGE for size in unpacker.unfinished(Lane.APP).values())
    assert [m.data for m in unpack_all(unpacker, 2, theirs[2:])] == [payload(2, 100)]


def test_a_chain_longer_than_the_largest_message_is_refused() -> None:
    max_frame = 65535
    chunk = bytes(max_frame - 10)
    unpacker = Unpacker(max_frame=max_frame)

    def link_frame(continues: int) -> bytes:
        return encode_frame(
            sync_lane=False,
            continues=continues,
            link=continues + 1,
            lengths=[len(chunk)],
            pieces=[chunk],
        )

    fitting = MAX_PACKED_MESSAGE // len(chunk)
    for continues in range(fitting):
        unpacker.receive(1, link_frame(continues), Guarantee.AGREED)
    assert unpacker.unfinished(Lane.APP) == {1: fitting * len(chunk)}
    with pytest.raises(OversizeMessageError):
        unpacker.receive(1, link_frame(fitting), Guarantee.AGREED)
    assert unpacker.unfinished(Lane.APP) == {1: fitting * len(chunk)}


def test_lanes_reassemble_separately_when_interleaved() -> None:
    app_queue, sync_queue = FakeQueue(), FakeQueue()
    app = make_packer(40, app_queue, Lane.APP)
    sync = make_packer(40, sync_queue, Lane.SYNC)
    assert app.send(payload(1, 120))
    assert sync.send(payload(2, 90))
    assert app.flush()
    assert sync.flush()
    a, s = app_queue.take(), sync_queue.take()
    interleaved = [a[0], s[0], a[1], s[1], a[2], s[2], *a[3:], *s[3:]]
    got = unpack_all(Unpacker(max_frame=40), 4, interleaved)
    assert [(m.lane, m.data) for m in got] == [
        (Lane.SYNC, payload(2, 90)),
        (Lane.APP, payload(1, 120)),
    ]


def test_reset_lane_forgets_only_that_lane() -> None:
    unpacker = Unpacker(max_frame=40)
    app_queue, sync_queue = FakeQueue(), FakeQueue()
    assert make_packer(40, app_queue, Lane.APP).send(payload(1, 100))
    assert make_packer(40, sync_queue, Lane.SYNC).send(payload(2, 100))
    unpack_all(unpacker, 1, app_queue.frames[:1] + sync_queue.frames[:1])
    unpacker.reset_lane(Lane.SYNC)
    assert unpacker.unfinished(Lane.SYNC) == {}
    assert unpacker.unfinished(Lane.APP) == {1: 30}


def test_group_delivery_goes_once_to_each_joined_group_named() -> None:
    queue = FakeQueue()
    sender = TotemPg(max_frame=1382, app=FrameOutlet(queue.mcast, queue.room), sync=fq())
    receiver = TotemPg(max_frame=1382, app=fq(), sync=fq())
    receiver.join(b"a")
    receiver.join(b"sync")
    assert sender.mcast([b"b", b"a", b"a"], b"one")
    assert sender.mcast([b"zzz"], b"two")
    assert sender.mcast([b"sync", b"a"], b"three", guarantee=Guarantee.SAFE)
    assert sender.flush()
    got = [d for f, g in queue.take() for d in receiver.deliver(2, f, g)]
    assert got == [
        GroupDelivery(b"a", 2, Lane.APP, Guarantee.AGREED, b"one"),
        GroupDelivery(b"sync", 2, Lane.APP, Guarantee.SAFE, b"three"),
        GroupDelivery(b"a", 2, Lane.APP, Guarantee.SAFE, b"three"),
    ]
    receiver.leave(b"a")
    assert receiver.joined == frozenset({b"sync"})


group_names = st.sampled_from([b"a", b"sync", b"b", b"zzz"])


@settings(deadline=None, derandomize=True, max_examples=60)
@given(
    st.lists(
        st.tuples(st.lists(group_names, min_size=1, max_size=4), st.binary(max_size=3000)),
        max_size=12,
    )
)
def test_the_executives_fast_path_delivers_what_deliver_does(
    sent: list[tuple[list[bytes], bytes]],
) -> None:
    queue = FakeQueue()
    sender = TotemPg(max_frame=1382, app=FrameOutlet(queue.mcast, queue.room), sync=fq())
    slow, fast = (TotemPg(max_frame=1382, app=fq(), sync=fq()) for _ in range(2))
    for receiver in (slow, fast):
        receiver.join(b"a")
        receiver.join(b"sync")
    for groups, message in sent:
        assert sender.mcast(groups, message)
    assert sender.flush()
    frames = queue.take()
    expected = [(d.group, d.payload) for f, g in frames for d in slow.deliver(2, f, g)]
    assert [pair for f, _g in frames for pair in fast.deliver_payloads(2, f)] == expected


def test_group_names_are_validated() -> None:
    pg = TotemPg(max_frame=1382, app=fq(), sync=fq())
    with pytest.raises(InvalidParamError):
        pg.mcast([], b"x")
    with pytest.raises(InvalidParamError):
        pg.join(b"")
    with pytest.raises(NameTooLongError):
        pg.mcast([b"n" * 256], b"x")
    with pytest.raises(TooManyGroupsError):
        pg.mcast([b"g"] * 33, b"x")


@pytest.mark.parametrize("bad", [b"\x00", b"\x21", b"\x02\x01", b"\x01\x00", b"\x01\x05ab"])
def test_a_message_with_a_bad_group_header_is_counted_and_its_neighbours_delivered(
    bad: bytes,
) -> None:
    good = b"\x01\x01a" + b"ok"
    frame = encode_frame(
        sync_lane=False, continues=0, link=0, lengths=[len(bad), len(good)], pieces=[bad, good]
    )
    pg = TotemPg(max_frame=1382, app=fq(), sync=fq())
    pg.join(b"a")
    assert [d.payload for d in pg.deliver(1, frame, Guarantee.AGREED)] == [b"ok"]
    assert pg.malformed_messages == 1


def test_sync_lane_mcast_is_flushed_and_delivered_in_the_sync_lane() -> None:
    app_queue, sync_queue = FakeQueue(), FakeQueue()
    pg = TotemPg(
        max_frame=1382,
        app=FrameOutlet(app_queue.mcast, app_queue.room),
        sync=FrameOutlet(sync_queue.mcast, sync_queue.room),
    )
    pg.join(b"sync")
    assert pg.mcast([b"sync"], b"barrier", lane=Lane.SYNC)
    assert app_queue.frames == []
    assert pg.flush()
    ((frame, guarantee),) = sync_queue.take()
    assert pg.deliver(1, frame, guarantee) == [
        GroupDelivery(b"sync", 1, Lane.SYNC, Guarantee.AGREED, b"barrier")
    ]


def test_service_router_routes_by_service_and_function() -> None:
    router = ServiceRouter()
    router.register(ServiceId.CPG, 3)
    message = router.route(encode_service(ServiceId.CPG, 2, b"body"))
    assert (message.service, message.function, message.body) == (2, 2, b"body")
    with pytest.raises(UnknownServiceError, match="unknown service 0"):
        router.route(encode_service(ServiceId.CMAP, 0, b""))
    with pytest.raises(UnknownServiceError, match="max id 2"):
        router.route(encode_service(ServiceId.CPG, 3, b""))
    with pytest.raises(InvalidParamError):
        router.register(ServiceId.CPG, 1)
    router.unregister(ServiceId.CPG)
    with pytest.raises(UnknownServiceError):
        router.route(encode_service(ServiceId.CPG, 0, b""))


@pytest.mark.parametrize(
    "data", [b"", b"\0\0\0\x08\0\2", struct.pack("!IHH", 9, 2, 0), struct.pack("!IHH", 12, 2, 0)]
)
def test_malformed_service_header_is_refused(data: bytes) -> None:
    router = ServiceRouter()
    router.register(ServiceId.CPG, 1)
    with pytest.raises(MalformedServiceHeaderError):
        router.route(data)


def test_service_ids_are_validated_when_encoding() -> None:
    with pytest.raises(InvalidParamError):
        encode_service(1 << 16, 0, b"")
    with pytest.raises(InvalidParamError):
        encode_service(1, 1 << 16, b"")


def test_a_mutable_buffer_changed_after_send_does_not_change_the_message() -> None:
    queue = FakeQueue()
    packer = make_packer(40, queue)
    buffer = bytearray(payload(1, 70))
    assert packer.send(buffer)
    buffer[:] = bytes(70)
    assert packer.flush()
    assert [m.data for m in unpack_all(Unpacker(max_frame=40), 1, queue.take())] == [payload(1, 70)]


def test_a_message_the_queue_can_never_hold_is_too_big_not_would_block() -> None:
    queue = FakeQueue(capacity=3)
    outlet = FrameOutlet(queue.mcast, queue.room, queue_size=3)
    pg = TotemPg(max_frame=100, app=outlet, sync=fq())
    with pytest.raises(TooBigError):
        pg.mcast([b"a"], bytes(3 * 90))  # + 3 bytes of group header: four frames
    assert pg.mcast([b"a"], bytes(3 * 90 - 3))
    with pytest.raises(InvalidParamError):
        Packer(max_frame=100, mcast=queue.mcast, room=queue.room, lane=Lane.APP, queue_size=0)


def test_reassembly_memory_follows_the_message_size_not_the_frame_count() -> None:
    unpacker = Unpacker(max_frame=40)
    frames = [
        encode_frame(sync_lane=False, continues=n, link=n + 1, lengths=[1], pieces=[b"x"])
        for n in range(10_000)
    ]
    tracemalloc.start()
    try:
        for frame in frames:
            unpacker.receive(1, frame, Guarantee.AGREED)
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert unpacker.unfinished(Lane.APP) == {1: 10_000}
    assert held < 100_000  # 10 kB of data; a view per piece would hold megabytes


@given(
    capacity=st.integers(7, 9),  # a 300-byte message and a staged frame: at most 7 frames
    plan=st.lists(
        st.tuples(
            st.sampled_from(Lane),
            st.integers(1, 300),
            st.sampled_from(Guarantee),
            st.integers(0, 3),  # frames SRP takes off each queue after this attempt
        ),
        max_size=25,
    ),
)
@settings(max_examples=60)
def test_end_to_end_with_back_pressure_loses_nothing_and_keeps_lane_order(
    capacity: int, plan: list[tuple[Lane, int, Guarantee, int]]
) -> None:
    queues = {Lane.APP: FakeQueue(capacity), Lane.SYNC: FakeQueue(capacity)}
    outlets = {
        lane: FrameOutlet(q.mcast, q.room, queue_size=capacity) for lane, q in queues.items()
    }
    sender = TotemPg(max_frame=64, app=outlets[Lane.APP], sync=outlets[Lane.SYNC])
    receiver = TotemPg(max_frame=64, app=fq(), sync=fq())
    receiver.join(b"g")
    sent: dict[Lane, list[tuple[bytes, Guarantee]]] = {Lane.APP: [], Lane.SYNC: []}
    got: dict[Lane, list[tuple[bytes, Guarantee]]] = {Lane.APP: [], Lane.SYNC: []}

    def drain(count: int) -> None:
        for queue in queues.values():
            for frame, guarantee in queue.frames[:count]:
                for d in receiver.deliver(3, frame, guarantee):
                    got[d.lane].append((d.payload, d.guarantee))
            del queue.frames[:count]

    for tag, (lane, size, guarantee, taken) in enumerate(plan):
        message = payload(tag, size)
        if not sender.mcast([b"g"], message, guarantee=guarantee, lane=lane):
            drain(capacity)  # "try again" once SRP emptied its queue: it must fit then
            assert sender.mcast([b"g"], message, guarantee=guarantee, lane=lane)
        sent[lane].append((message, guarantee))
        if taken == 3:
            sender.flush()  # the token came by
        drain(taken)
    assert sender.flush()  # a flush needs one frame per lane; every attempt reserved it
    drain(capacity)
    assert got == sent


def test_a_message_that_fits_the_staged_frame_still_needs_a_slot_in_srp() -> None:
    # The packer's fast path (the message fits the staged frame) keeps send's promise: the
    # staged frame must be able to leave, so with SRP's queue full the answer is "would block".
    queue = FakeQueue(capacity=2)
    packer = make_packer(1382, queue)
    assert packer.send(b"first")
    for _ in range(2):  # the queue is now full
        assert queue.mcast(b"someone else's frame", Guarantee.AGREED)
    assert not packer.send(b"second")
    queue.take()
    assert packer.send(b"second")
    assert packer.send(b"third", Guarantee.SAFE)  # another guarantee closes the frame
    assert packer.flush()
    got = [m.data for m in unpack_all(Unpacker(max_frame=1382), 1, queue.take())]
    assert got == [b"first", b"second", b"third"]
