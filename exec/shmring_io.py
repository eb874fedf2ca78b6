"""The two ends of a channel: the producer that writes records and the consumer that reads them.

Theory of operation
-------------------
Each end owns one counter per lane (the writer its heads, the reader its tails) and keeps it
in a private variable, publishing it to the shared header after the bytes it covers; it only
*reads* the peer's counters, and checks every value it reads (monotonic, 8-aligned, never
more than a lane apart). The shared copy of its own counter is never read back, so a peer
scribbling on it cannot steer this end.

Publishing order is the whole memory-ordering story on x86-64: the record is copied into the
lane, then the head store makes it visible; the reader copies the record out, then the tail
store gives the bytes back. Wake-ups use the arm sequences in the header and one full fence
per side (``full_fence``): the waiting side stores its odd sequence, fences, and re-checks
the counters; the active side stores its counter, fences, and reads the sequence — and writes
the eventfd at most once per arming, so a busy stream makes no syscalls.

A corrupt frame (bad mark, impossible length) stops the reader at that record: the records
before it in the same call are returned, and that call or the next raises ``ShmRingError``.
The framing is lost past that point, so every later read raises too.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

from pycorosync.exec.shmring_layout import (
    F_DATA_WAIT,
    F_HEAD,
    F_MAX_RECORD,
    F_SPACE_WAIT,
    F_TAIL,
    FRAME,
    FRAME_MARK,
    FRAME_SIZE,
    Lane,
    RecordTooBigError,
    ShmRingError,
    full_fence,
    largest_payload,
)
from pycorosync.lib.errors import InvalidParamError

_LANES = (Lane.SYNC, Lane.APP)


@dataclass(slots=True)
class LaneViews:
    """Views of one channel's memory shared by its two ends (released together on close)."""

    header: memoryview  # u64 items
    lanes: tuple[memoryview, memoryview]  # bytes of SYNC, APP

    @property
    def max_record(self) -> int:
        return int(self.header[F_MAX_RECORD])

    @property
    def capacities(self) -> tuple[int, int]:
        return len(self.lanes[0]), len(self.lanes[1])

    def release(self) -> None:
        self.header.release()
        for lane in self.lanes:
            lane.release()


def _drain_eventfd(fd: int) -> None:
    with contextlib.suppress(BlockingIOError):
        os.eventfd_read(fd)


def _next_arm(seq: int) -> int:
    """The next odd sequence: a fresh arming, never confused with one already signalled."""
    return seq + 2 if seq & 1 else seq + 1


class ChannelWriter:
    """The producer end of a channel."""

    def __init__(self, views: LaneViews, data_fd: int, space_fd: int) -> None:
        self._header = views.header
        self._data = views.lanes
        self._capacity = views.capacities
        self._max_record = views.max_record
        self._data_fd = data_fd
        self.space_fileno = space_fd
        self._head = [int(self._header[F_HEAD[lane]]) for lane in _LANES]
        self._tail_seen = [int(self._header[F_TAIL[lane]]) for lane in _LANES]
        self._space_seq = int(self._header[F_SPACE_WAIT])
        self._signalled = -1  # the reader's arm sequence we last woke

    def write(self, lane: Lane, record: bytes | memoryview) -> bool:
        """Append one record whole, or return False if the lane lacks room now (nothing is
        written then). A record longer than the channel's largest raises RecordTooBigError."""
        if isinstance(record, memoryview):
            payload: bytes | memoryview = _as_bytes_view(record)
            length = record.nbytes
        else:
            payload, length = record, len(record)
        if length > self._max_record:
            raise RecordTooBigError(
                f"record of {length} bytes exceeds the channel's largest {self._max_record}"
            )
        capacity = self._capacity[lane]
        head = self._head[lane]
        needed = FRAME_SIZE + ((length + 7) & -8)  # frame_bytes(), inlined: this is the hot path
        # The tail only grows, so the last one seen is a safe bound: read the shared one only
        # when that bound says no.
        if needed > capacity - (head - self._tail_seen[lane]) and needed > capacity - (
            head - self._read_tail(lane)
        ):
            return False
        data = self._data[lane]
        start = head % capacity
        FRAME.pack_into(data, start, length, FRAME_MARK)
        start = (start + FRAME_SIZE) % capacity
        if start + length <= capacity:
            data[start : start + length] = payload
        else:
            _copy_across_end(data, start, payload)
        head += needed
        self._head[lane] = head
        self._header[F_HEAD[lane]] = head  # publish: the bytes above are visible now
        full_fence()  # our head store must be visible before we look at the reader's arming
        seq = self._header[F_DATA_WAIT]
        if seq & 1 and seq != self._signalled:
            self._signalled = seq
            os.eventfd_write(self._data_fd, 1)
        return True

    def room(self, lane: Lane) -> int:
        """The largest record :meth:`write` would accept on ``lane`` right now (0 when the lane
        is full; an empty record needs 8 free bytes too)."""
        used = self._head[lane] - self._read_tail(lane)
        return largest_payload(self._capacity[lane] - used, self._max_record)

    def want_space(self) -> None:
        """Ask to be woken on :attr:`space_fileno` when the reader frees room. If it already
        has since this writer last looked, the wake-up comes at once."""
        self._space_seq = _next_arm(self._space_seq)
        self._header[F_SPACE_WAIT] = self._space_seq
        full_fence()
        seen = self._tail_seen.copy()
        if any(self._read_tail(lane) != seen[lane] for lane in _LANES):
            os.eventfd_write(self.space_fileno, 1)

    def ack_space(self) -> None:
        """Consume a space wake-up and stop waiting for room (call before retrying writes)."""
        _drain_eventfd(self.space_fileno)
        if self._space_seq & 1:
            self._space_seq += 1
            self._header[F_SPACE_WAIT] = self._space_seq

    def _read_tail(self, lane: Lane) -> int:
        tail = int(self._header[F_TAIL[lane]])
        if not self._tail_seen[lane] <= tail <= self._head[lane] or tail % FRAME_SIZE:
            raise ShmRingError(
                f"{lane.name} lane: reader's tail {tail} is impossible "
                f"(head {self._head[lane]}, last tail {self._tail_seen[lane]})"
            )
        self._tail_seen[lane] = tail
        return tail


def _as_bytes_view(record: memoryview) -> memoryview:
    return record if record.format == "B" and record.ndim == 1 else record.cast("B")


def _copy_across_end(data: memoryview, start: int, payload: bytes | memoryview) -> None:
    """Copy a payload that runs across the end of the lane, without copying it first."""
    room_to_end = len(data) - start
    view = memoryview(payload)
    data[start:] = view[:room_to_end]
    data[: len(payload) - room_to_end] = view[room_to_end:]


class ChannelReader:
    """The consumer end of a channel."""

    def __init__(self, views: LaneViews, data_fd: int, space_fd: int) -> None:
        self._header = views.header
        self._data = views.lanes
        self._capacity = views.capacities
        self._max_record = views.max_record
        self.data_fileno = data_fd
        self._space_fd = space_fd
        self._tail = [int(self._header[F_TAIL[lane]]) for lane in _LANES]
        self._head_seen = list(self._tail)
        self._wait_seq = int(self._header[F_DATA_WAIT])
        self._signalled = -1  # the writer's space-arm sequence we last woke
        self._scratch: bytearray | None = None  # reassembles records that wrap the lane end
        self._broken: ShmRingError | None = None

    def read(self, max_records: int = 256) -> list[tuple[Lane, bytes]]:
        """Up to ``max_records`` whole records in order, the SYNC lane's first; [] if none."""
        if max_records < 1:
            raise InvalidParamError(f"max_records must be at least 1, not {max_records}")
        self._raise_if_broken()
        records: list[tuple[Lane, bytes]] = []
        freed = False
        for lane in _LANES:
            if len(records) >= max_records:
                break
            freed |= self._drain(lane, records, max_records)
        if freed:
            self._wake_writer()
        if not records:
            self._raise_if_broken()
        return records

    def _raise_if_broken(self) -> None:
        if self._broken is not None:
            raise self._broken

    def ack_and_arm(self) -> bool:
        """Consume a data wake-up, arm for the next, and re-check: True means records are
        there (read them; the arming is withdrawn), False means sleep on :attr:`data_fileno`."""
        _drain_eventfd(self.data_fileno)
        self._wait_seq = _next_arm(self._wait_seq)
        self._header[F_DATA_WAIT] = self._wait_seq
        full_fence()  # the arming must be visible before we look at the heads
        if any(self._read_head(lane) != self._tail[lane] for lane in _LANES):
            self._wait_seq += 1
            self._header[F_DATA_WAIT] = self._wait_seq
            return True
        return False

    def _drain(self, lane: Lane, records: list[tuple[Lane, bytes]], limit: int) -> bool:
        tail = self._tail[lane]
        head = self._read_head(lane)
        if head == tail:
            return False
        data, capacity, max_record = self._data[lane], self._capacity[lane], self._max_record
        unpack_frame, append = FRAME.unpack_from, records.append  # hot loop: bind once
        start_tail = tail
        while tail != head and len(records) < limit:
            start = tail % capacity
            length, mark = unpack_frame(data, start)
            needed = FRAME_SIZE + ((length + 7) & -8)  # frame_bytes(), inlined
            if mark != FRAME_MARK or length > max_record or needed > head - tail:
                self._broken = ShmRingError(
                    f"{lane.name} lane: corrupt record at byte {tail}: length {length}, "
                    f"mark {mark:#x}, {head - tail} bytes published"
                )
                break
            start = (start + FRAME_SIZE) % capacity
            if start + length <= capacity:
                append((lane, bytes(data[start : start + length])))
            else:
                append((lane, self._copy_across_end(data, start, length)))
            tail += needed
        self._tail[lane] = tail
        self._header[F_TAIL[lane]] = tail  # give the bytes back only after copying them out
        return tail != start_tail

    def _copy_across_end(self, data: memoryview, start: int, length: int) -> bytes:
        if self._scratch is None:
            self._scratch = bytearray(self._max_record)
        first = len(data) - start
        scratch = memoryview(self._scratch)
        scratch[:first] = data[start:]
        scratch[first:length] = data[: length - first]
        return bytes(scratch[:length])

    def _read_head(self, lane: Lane) -> int:
        head = int(self._header[F_HEAD[lane]])
        tail = self._tail[lane]
        if head < self._head_seen[lane] or head - tail > self._capacity[lane] or head % FRAME_SIZE:
            raise ShmRingError(
                f"{lane.name} lane: writer's head {head} is impossible "
                f"(tail {tail}, last head {self._head_seen[lane]})"
            )
        self._head_seen[lane] = head
        return head

    def _wake_writer(self) -> None:
        full_fence()  # our tail stores must be visible before we look at the writer's arming
        seq = int(self._header[F_SPACE_WAIT])
        if seq & 1 and seq != self._signalled:
            self._signalled = seq
            os.eventfd_write(self._space_fd, 1)
