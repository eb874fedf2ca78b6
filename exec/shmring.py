"""A shared-memory channel between the Totem process and a worker: two lanes, one direction.

Theory of operation
-------------------
A :class:`Channel` carries records one way. Its memory is a sealed memfd (see
``shmring_layout``) with two single-producer single-consumer byte rings, the SYNC lane and the
APP lane; the consumer always empties SYNC before it looks at APP, so sync traffic overtakes
application traffic. The Totem process :meth:`Channel.create`s every channel and hands
:attr:`Channel.fds` to a freshly started interpreter (``subprocess`` with ``pass_fds``), which
:meth:`Channel.attach`es by fd number and validates what it finds.

Writes are all or nothing: :meth:`ChannelWriter.write` returns False when the lane lacks room
*now* — back-pressure the caller turns into ``CS_ERR_TRY_AGAIN`` or a retry — and never
splits or queues. A record may run across the end of its lane; the reader hands it back whole.

Wake-ups cost a syscall only when someone sleeps. The consumer arms by making its
``data_wait`` sequence odd, then re-checks the lanes (:meth:`ChannelReader.ack_and_arm`); the
producer, after publishing a record, looks at that sequence and writes the data eventfd once
per arming. Room works the same way in reverse (:meth:`ChannelWriter.want_space`). A full
fence between each side's store and its load of the other's field means one of them always
sees the other, so no wake-up is lost (docs/shmring.md gives the argument).

Both sides keep their own counters privately and only *read* the peer's, which they check:
a peer that lies about a counter or a record length gets :class:`ShmRingError`, never an
out-of-bounds read or an endless loop.
"""

from __future__ import annotations

import contextlib
import fcntl
import mmap
import os
from dataclasses import dataclass
from types import TracebackType

from pycorosync.exec.shmring_io import ChannelReader, ChannelWriter, LaneViews
from pycorosync.exec.shmring_layout import (
    DEFAULT_APP_CAPACITY,
    DEFAULT_SYNC_CAPACITY,
    HEADER_SIZE,
    MAX_RECORD,
    Lane,
    RecordTooBigError,
    ShmRingError,
    check_capacity,
    lane_offsets,
    read_header,
    write_header,
)

__all__ = [
    "DEFAULT_APP_CAPACITY",
    "DEFAULT_SYNC_CAPACITY",
    "MAX_RECORD",
    "Channel",
    "ChannelFds",
    "ChannelReader",
    "ChannelWriter",
    "Lane",
    "RecordTooBigError",
    "ShmRingError",
]

_REQUIRED_SEALS = fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_SEAL


@dataclass(frozen=True, slots=True)
class ChannelFds:
    """The three descriptors that make a channel, as they travel to the worker."""

    memfd: int
    data_eventfd: int
    space_eventfd: int

    def to_arg(self) -> str:
        return f"{self.memfd},{self.data_eventfd},{self.space_eventfd}"

    @classmethod
    def from_arg(cls, text: str) -> ChannelFds:
        parts = text.split(",")
        if len(parts) != 3 or not all(part.isdigit() for part in parts):
            raise ShmRingError(f"channel fds must be 'MEMFD,DATA_EVENTFD,SPACE_EVENTFD': {text!r}")
        memfd, data, space = (int(part) for part in parts)
        if len({memfd, data, space}) != 3:
            raise ShmRingError(f"channel fds must be three distinct descriptors: {text!r}")
        return cls(memfd, data, space)

    def all(self) -> tuple[int, ...]:
        return (self.memfd, self.data_eventfd, self.space_eventfd)


class Channel:
    """One direction of traffic: the memory, both lanes and the two eventfds."""

    def __init__(self, fds: ChannelFds, memory: mmap.mmap, sync_cap: int, app_cap: int) -> None:
        self.fds = fds
        self._memory = memory
        whole = memoryview(memory)
        sync_at, app_at = lane_offsets(sync_cap)
        self._views = LaneViews(
            header=whole[:HEADER_SIZE].cast("Q"),
            lanes=(whole[sync_at:app_at], whole[app_at : app_at + app_cap]),
        )
        self._whole = whole
        self._writer: ChannelWriter | None = None
        self._reader: ChannelReader | None = None
        self._closed = False

    @property
    def max_record(self) -> int:
        return self._views.max_record

    @property
    def capacities(self) -> tuple[int, int]:
        """Bytes of the SYNC and APP lanes."""
        return self._views.capacities

    @property
    def memory_bytes(self) -> int:
        """Shared memory this channel maps (header page and both lanes)."""
        return len(self._memory)

    @classmethod
    def create(
        cls, lane_capacity: int = DEFAULT_APP_CAPACITY, sync_capacity: int | None = None
    ) -> Channel:
        """A new channel (owner side). ``lane_capacity`` sizes the APP lane; the SYNC lane gets
        ``sync_capacity``, by default :data:`DEFAULT_SYNC_CAPACITY` capped at the APP size."""
        check_capacity("APP lane capacity", lane_capacity)
        if sync_capacity is None:
            sync_capacity = min(DEFAULT_SYNC_CAPACITY, lane_capacity)
        check_capacity("SYNC lane capacity", sync_capacity)
        size = HEADER_SIZE + sync_capacity + lane_capacity
        opened: list[int] = []
        try:
            memfd = os.memfd_create("pycorosync-channel", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
            opened.append(memfd)
            os.ftruncate(memfd, size)
            # Sealed so that neither side can shrink the file under the other (a SIGBUS).
            fcntl.fcntl(memfd, fcntl.F_ADD_SEALS, _REQUIRED_SEALS)
            for _ in range(2):
                opened.append(os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC))
            memory = mmap.mmap(memfd, size)
        except BaseException:
            for fd in opened:
                os.close(fd)
            raise
        with memoryview(memory) as whole, whole[:HEADER_SIZE].cast("Q") as header:
            write_header(header, sync_capacity, lane_capacity)
        return cls(ChannelFds(*opened), memory, sync_capacity, lane_capacity)

    @classmethod
    def attach(cls, fds: ChannelFds) -> Channel:
        """The channel behind descriptors inherited from the owner; the header is checked."""
        size = _checked_memfd_size(fds.memfd)
        for fd in (fds.data_eventfd, fds.space_eventfd):
            _check_eventfd(fd)
        memory = mmap.mmap(fds.memfd, size)
        try:
            with memoryview(memory) as whole, whole[:HEADER_SIZE].cast("Q") as header:
                sync_cap, app_cap, _ = read_header(header, size)
        except BaseException:
            memory.close()
            raise
        return cls(fds, memory, sync_cap, app_cap)

    def writer(self) -> ChannelWriter:
        """This process's producer end (one per channel: the rings are single-producer)."""
        self._check_open()
        if self._writer is not None:
            raise ShmRingError("this channel already has its writer")
        self._writer = ChannelWriter(self._views, self.fds.data_eventfd, self.fds.space_eventfd)
        return self._writer

    def reader(self) -> ChannelReader:
        """This process's consumer end (one per channel: the rings are single-consumer)."""
        self._check_open()
        if self._reader is not None:
            raise ShmRingError("this channel already has its reader")
        self._reader = ChannelReader(self._views, self.fds.data_eventfd, self.fds.space_eventfd)
        return self._reader

    def close(self) -> None:
        """Unmap and close this process's descriptors; the peer's mapping stays valid."""
        if self._closed:
            return
        self._closed = True
        self._views.release()
        self._whole.release()
        self._memory.close()
        for fd in self.fds.all():
            with contextlib.suppress(OSError):
                os.close(fd)

    def __enter__(self) -> Channel:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _check_open(self) -> None:
        if self._closed:
            raise ShmRingError("channel is closed")


def _checked_memfd_size(fd: int) -> int:
    try:
        size = os.fstat(fd).st_size
        seals = fcntl.fcntl(fd, fcntl.F_GET_SEALS)
    except OSError as exc:
        raise ShmRingError(f"fd {fd} is not a channel memfd: {exc.strerror}") from exc
    if seals & _REQUIRED_SEALS != _REQUIRED_SEALS:
        raise ShmRingError(f"fd {fd}: channel memory is not sealed against resizing")
    if size <= HEADER_SIZE:
        raise ShmRingError(f"fd {fd}: channel memory of {size} bytes has no room for lanes")
    return size


def _check_eventfd(fd: int) -> None:
    try:
        target = os.readlink(f"/proc/self/fd/{fd}")
    except OSError as exc:
        raise ShmRingError(f"fd {fd} is not open: {exc.strerror}") from exc
    if target != "anon_inode:[eventfd]":
        raise ShmRingError(f"fd {fd} is not an eventfd ({target})")
    os.set_blocking(fd, False)
