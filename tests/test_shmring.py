"""Shared-memory channels in one process: framing, wrap-around, back-pressure, lanes, wake-ups,
and the refusal of garbage (bad headers, lying counters, corrupt record lengths)."""

from __future__ import annotations

import mmap
import os
import select
import struct
from collections.abc import Iterator

import pytest

from pycorosync.exec.shmring import (
    DEFAULT_APP_CAPACITY,
    DEFAULT_SYNC_CAPACITY,
    MAX_RECORD,
    Channel,
    ChannelFds,
    Lane,
    RecordTooBigError,
    ShmRingError,
)
from pycorosync.exec.shmring_layout import F_HEAD, F_TAIL, F_VERSION, HEADER_SIZE, MAGIC
from pycorosync.lib.errors import CsError, CsErrorCode, InvalidParamError


@pytest.fixture
def small() -> Iterator[Channel]:
    with Channel.create(256) as channel:
        yield channel


def _header(channel: Channel) -> memoryview:
    """A second view of a channel's header, as a hostile peer would write it."""
    memory = mmap.mmap(channel.fds.memfd, HEADER_SIZE)
    return memoryview(memory).cast("Q")


def _dup(fds: ChannelFds) -> ChannelFds:
    """Attaching in-process needs its own descriptors: closing either side closes its copies."""
    return ChannelFds(*(os.dup(fd) for fd in fds.all()))


def _readable(fd: int) -> bool:
    return bool(select.select([fd], [], [], 0)[0])


def test_default_channel_carries_a_one_mib_record_in_both_lanes() -> None:
    with Channel.create() as channel:
        assert channel.capacities == (DEFAULT_SYNC_CAPACITY, DEFAULT_APP_CAPACITY)
        assert channel.max_record == MAX_RECORD >= (1 << 20) + (64 << 10)
        assert channel.memory_bytes == HEADER_SIZE + DEFAULT_SYNC_CAPACITY + DEFAULT_APP_CAPACITY
        writer, reader = channel.writer(), channel.reader()
        big = os.urandom(MAX_RECORD)
        for _ in range(5):  # five times round a 2 MiB lane: some copies wrap its end
            assert writer.write(Lane.SYNC, big)
            assert writer.write(Lane.APP, big[::-1])
            assert reader.read() == [(Lane.SYNC, big), (Lane.APP, big[::-1])]


def test_record_wraps_across_the_end_of_the_lane(small: Channel) -> None:
    writer, reader = small.writer(), small.reader()
    assert writer.write(Lane.APP, b"a" * 200)
    assert reader.read() == [(Lane.APP, b"a" * 200)]
    wrapped = bytes(range(120))  # starts at byte 208 of 256: runs across the end
    assert writer.write(Lane.APP, memoryview(wrapped))
    assert reader.read() == [(Lane.APP, wrapped)]
    assert writer.room(Lane.APP) == 248


def test_frame_in_the_last_bytes_puts_the_payload_at_the_start(small: Channel) -> None:
    writer, reader = small.writer(), small.reader()
    assert writer.write(Lane.APP, b"p" * 240)  # 248 bytes: the next frame is the lane's last 8
    assert reader.read() == [(Lane.APP, b"p" * 240)]
    assert writer.write(Lane.APP, b"abc")
    assert writer.write(Lane.APP, b"defg")
    assert reader.read() == [(Lane.APP, b"abc"), (Lane.APP, b"defg")]


def test_exact_fill_then_full_then_room_after_read(small: Channel) -> None:
    writer, reader = small.writer(), small.reader()
    assert writer.room(Lane.APP) == 248
    assert writer.write(Lane.APP, b"x" * 100)  # 8 + 104 bytes
    assert writer.room(Lane.APP) == 256 - 112 - 8
    assert writer.write(Lane.APP, b"y" * 136)  # exactly fills the lane
    assert writer.room(Lane.APP) == 0
    assert not writer.write(Lane.APP, b"")
    assert not writer.write(Lane.APP, b"z")
    assert writer.room(Lane.SYNC) == 248  # lanes are independent
    assert reader.read(max_records=1) == [(Lane.APP, b"x" * 100)]
    assert writer.room(Lane.APP) == 104
    assert not writer.write(Lane.APP, b"z" * 105)
    assert writer.write(Lane.APP, b"z" * 104)
    assert reader.read() == [(Lane.APP, b"y" * 136), (Lane.APP, b"z" * 104)]


def test_failed_write_leaves_nothing_behind(small: Channel) -> None:
    writer, reader = small.writer(), small.reader()
    assert writer.write(Lane.APP, b"k" * 200)
    assert not writer.write(Lane.APP, b"q" * 100)
    assert reader.read() == [(Lane.APP, b"k" * 200)]
    assert reader.read() == []


def test_sync_lane_is_read_before_app_lane(small: Channel) -> None:
    writer, reader = small.writer(), small.reader()
    assert writer.write(Lane.APP, b"app1")
    assert writer.write(Lane.APP, b"app2")
    assert writer.write(Lane.SYNC, b"sync1")
    assert writer.write(Lane.SYNC, b"sync2")
    assert reader.read(max_records=3) == [
        (Lane.SYNC, b"sync1"),
        (Lane.SYNC, b"sync2"),
        (Lane.APP, b"app1"),
    ]
    assert writer.write(Lane.SYNC, b"sync3")
    assert reader.read() == [(Lane.SYNC, b"sync3"), (Lane.APP, b"app2")]


def test_read_needs_room_for_a_record(small: Channel) -> None:
    with pytest.raises(InvalidParamError, match="at least 1, not 0"):
        small.reader().read(0)


def test_zero_length_records_keep_their_place(small: Channel) -> None:
    writer, reader = small.writer(), small.reader()
    for record in (b"", b"1", b"", b""):
        assert writer.write(Lane.APP, record)
    assert reader.read() == [(Lane.APP, r) for r in (b"", b"1", b"", b"")]


def test_non_byte_memoryview_is_written_as_its_bytes(small: Channel) -> None:
    writer, reader = small.writer(), small.reader()
    words = memoryview(struct.pack("=4I", 1, 2, 3, 4)).cast("I")
    assert writer.write(Lane.APP, words)
    assert reader.read() == [(Lane.APP, struct.pack("=4I", 1, 2, 3, 4))]


def test_record_that_can_never_fit_is_an_error_not_back_pressure(small: Channel) -> None:
    writer = small.writer()
    with pytest.raises(RecordTooBigError, match="exceeds the channel's largest 248") as caught:
        writer.write(Lane.APP, b"x" * 249)
    assert caught.value.code == CsErrorCode.CS_ERR_TOO_BIG
    assert writer.room(Lane.APP) == 248


@pytest.mark.parametrize(
    ("lane_capacity", "sync_capacity"),
    [(0, None), (100, None), (1 << 31, None), (256, 60), (256, 257)],
)
def test_create_validates_capacities(lane_capacity: int, sync_capacity: int | None) -> None:
    with pytest.raises(ShmRingError, match="capacity"):
        Channel.create(lane_capacity, sync_capacity)


def test_one_writer_and_one_reader_per_channel(small: Channel) -> None:
    small.writer()
    small.reader()
    with pytest.raises(ShmRingError, match="already has its writer"):
        small.writer()
    with pytest.raises(ShmRingError, match="already has its reader"):
        small.reader()


def test_attached_side_sees_the_owners_records(small: Channel) -> None:
    writer = small.writer()
    assert writer.write(Lane.APP, b"before attach")
    with Channel.attach(_dup(small.fds)) as peer:
        assert peer.capacities == (256, 256)
        reader = peer.reader()
        assert reader.read() == [(Lane.APP, b"before attach")]
        assert writer.write(Lane.SYNC, b"after")
        assert reader.read() == [(Lane.SYNC, b"after")]


def test_channel_fds_round_trip_and_refuse_garbage() -> None:
    fds = ChannelFds(7, 8, 9)
    assert ChannelFds.from_arg(fds.to_arg()) == fds
    assert fds.all() == (7, 8, 9)
    for text in ("", "7,8", "7,8,9,10", "7,x,9", "-1,8,9", "7,7,9"):
        with pytest.raises(ShmRingError, match="channel fds"):
            ChannelFds.from_arg(text)


def test_channel_memory_cannot_be_resized_by_either_side(small: Channel) -> None:
    for size in (HEADER_SIZE, HEADER_SIZE + 4096):  # shrinking would SIGBUS the other side
        with pytest.raises(PermissionError):
            os.ftruncate(small.fds.memfd, size)


def test_attach_refuses_descriptors_that_are_no_channel(small: Channel) -> None:
    fds = _dup(small.fds)
    try:
        with pytest.raises(ShmRingError, match="is not an eventfd"):
            Channel.attach(ChannelFds(fds.memfd, fds.memfd, fds.space_eventfd))
        with pytest.raises(ShmRingError, match="not a channel memfd"):
            Channel.attach(ChannelFds(fds.data_eventfd, fds.data_eventfd, fds.space_eventfd))
        unsealed = os.memfd_create("unsealed")
        os.ftruncate(unsealed, HEADER_SIZE + 512)
        with pytest.raises(ShmRingError, match="not sealed"):
            Channel.attach(ChannelFds(unsealed, fds.data_eventfd, fds.space_eventfd))
        os.close(unsealed)
    finally:
        for fd in fds.all():
            os.close(fd)


def test_attach_refuses_a_bad_header(small: Channel) -> None:
    header = _header(small)
    cases = [(0, 0, "not a pycorosync channel"), (F_VERSION, 99, "format version 99")]
    cases += [(2, 512, "channel memory is"), (3, 100, "APP lane capacity 100")]
    cases += [(4, 1000, "largest record"), (F_HEAD[Lane.APP], 512, "APP lane counters")]
    cases += [(F_TAIL[Lane.SYNC], 8, "SYNC lane counters")]
    for index, value, message in cases:
        saved = header[index]
        header[index] = value
        with pytest.raises(ShmRingError, match=message):
            Channel.attach(small.fds)
        header[index] = saved
    assert header[0] == MAGIC
    header.release()


def test_corrupt_record_length_is_refused_and_loses_the_good_records(small: Channel) -> None:
    writer, reader = small.writer(), small.reader()
    assert writer.write(Lane.APP, b"good")
    assert writer.write(Lane.APP, b"lie about me")
    memory = mmap.mmap(small.fds.memfd, HEADER_SIZE + 512)
    # The second frame header is at APP offset 16: claim 4 GiB - 1 bytes.
    struct.pack_into("=I", memory, HEADER_SIZE + 256 + 16, 0xFFFF_FFFF)
    assert reader.read() == [(Lane.APP, b"good")]
    for _ in range(2):  # and it stays refused: the framing is lost from there on
        with pytest.raises(ShmRingError, match="corrupt record at byte 16: length 4294967295"):
            reader.read()
    memory.close()


def test_record_length_beyond_published_bytes_is_refused(small: Channel) -> None:
    writer, reader = small.writer(), small.reader()
    assert writer.write(Lane.SYNC, b"0123456789")
    memory = mmap.mmap(small.fds.memfd, HEADER_SIZE + 512)
    struct.pack_into("=I", memory, HEADER_SIZE, 200)  # within max_record, beyond the head
    with pytest.raises(ShmRingError, match="200, mark 0x52454344, 24 bytes published"):
        reader.read()
    memory.close()


def test_lying_counters_are_refused(small: Channel) -> None:
    writer, reader = small.writer(), small.reader()
    header = _header(small)
    header[F_HEAD[Lane.APP]] = 4096  # more than a lane ahead of the tail
    with pytest.raises(ShmRingError, match="writer's head 4096 is impossible"):
        reader.read()
    header[F_HEAD[Lane.APP]] = 0
    header[F_TAIL[Lane.SYNC]] = 64  # the reader claims bytes never written
    with pytest.raises(ShmRingError, match="reader's tail 64 is impossible"):
        writer.room(Lane.SYNC)
    header.release()


def test_wake_up_only_when_the_reader_is_armed(small: Channel) -> None:
    writer, reader = small.writer(), small.reader()
    assert writer.write(Lane.APP, b"1")  # a reader that never armed counts as waiting
    assert _readable(reader.data_fileno)
    assert reader.ack_and_arm() is True  # records are there: not armed any more
    assert not _readable(reader.data_fileno)
    assert writer.write(Lane.APP, b"2")  # busy reader: no syscall, no wake-up
    assert not _readable(reader.data_fileno)
    assert len(reader.read()) == 2
    assert reader.ack_and_arm() is False  # empty: armed
    assert writer.write(Lane.APP, b"3")
    assert writer.write(Lane.APP, b"4")
    assert _readable(reader.data_fileno)
    assert os.eventfd_read(reader.data_fileno) == 1  # one wake-up per arming, not per record


def test_space_wake_up_after_the_reader_frees_room(small: Channel) -> None:
    writer, reader = small.writer(), small.reader()
    assert writer.write(Lane.APP, b"f" * 248)
    assert not writer.write(Lane.APP, b"more")
    writer.want_space()
    assert not _readable(writer.space_fileno)
    assert reader.read() == [(Lane.APP, b"f" * 248)]
    assert _readable(writer.space_fileno)
    writer.ack_space()
    assert not _readable(writer.space_fileno)
    assert writer.write(Lane.APP, b"more")
    assert reader.read() == [(Lane.APP, b"more")]
    assert not _readable(writer.space_fileno)  # not armed: the reader did not signal


def test_want_space_wakes_at_once_if_room_was_freed_meanwhile(small: Channel) -> None:
    writer, reader = small.writer(), small.reader()
    assert writer.write(Lane.APP, b"f" * 248)
    assert not writer.write(Lane.APP, b"more")
    assert len(reader.read()) == 1  # the reader frees room before the writer arms
    writer.want_space()
    assert _readable(writer.space_fileno)


def test_closed_channel_refuses_new_ends() -> None:
    channel = Channel.create(256)
    channel.close()
    channel.close()
    with pytest.raises(ShmRingError, match="closed"):
        channel.writer()


def test_shm_ring_error_is_a_cs_error() -> None:
    with pytest.raises(CsError) as caught:
        Channel.create(3)
    assert isinstance(caught.value, ShmRingError)
    assert caught.value.code == CsErrorCode.CS_ERR_MESSAGE_ERROR
