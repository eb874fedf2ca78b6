"""The bytes of a shared-memory channel: header fields, lane geometry, record framing.

Theory of operation
-------------------
A channel is one memfd holding a 4 KiB header page followed by two lane data areas, SYNC then
APP. Every shared field is a native u64 in the header, read and written through one
``memoryview.cast("Q")`` so that each access is one aligned 8-byte load or store (CPython's
memoryview copies a ``Q`` item with an 8-byte ``memcpy``, which compiles to a single ``mov``).

The first cache line is written once by the creator (magic, version, capacities, largest
record) and only read afterwards. Each counter after it sits alone in its own 128-byte slot
(two cache lines, so the adjacent-line prefetcher cannot make the sides contend) and has
exactly one writing side:

* ``head`` of a lane — bytes ever written to it, written by the producer;
* ``tail`` of a lane — bytes ever consumed from it, written by the consumer;
* ``data_wait`` — the consumer's arm sequence: odd while it waits for a wake-up;
* ``space_wait`` — the producer's arm sequence: odd while it waits for room.

Counters only grow, so ``head - tail`` is the number of bytes in use and a position in a lane
is ``counter % capacity``. A record is an 8-byte frame header (u32 payload length, u32
:data:`FRAME_MARK`) and the payload, padded to a multiple of 8; frame headers therefore never
straddle the end of a lane, while a payload may run across it. ``full_fence`` is the one
store→load barrier the wake-up protocol needs (see docs/shmring.md for the ordering argument).
"""

from __future__ import annotations

import struct
import threading
from enum import IntEnum
from typing import Final

from pycorosync.lib.errors import CsErrorCode, MessageError


class ShmRingError(MessageError):
    """A channel that cannot be used: bad header, lying peer, misuse. Loses nothing."""


class RecordTooBigError(ShmRingError):
    """A record larger than the channel can ever carry (not back-pressure: it never fits)."""

    code = CsErrorCode.CS_ERR_TOO_BIG


class Lane(IntEnum):
    SYNC = 0
    APP = 1


MAGIC: Final = int.from_bytes(b"PCSHMRNG", "little")
VERSION: Final = 1
HEADER_SIZE: Final = 4096
FRAME_SIZE: Final = 8
FRAME_MARK: Final = 0x52_45_43_44  # "DCER" little-endian: catches a tail pointing mid-payload
FRAME = struct.Struct("=II")
ALIGN: Final = 8
MAX_RECORD: Final = (1 << 20) + (64 << 10)  # a 1 MiB message plus 64 KiB of header room
DEFAULT_APP_CAPACITY: Final = 4 << 20
DEFAULT_SYNC_CAPACITY: Final = 2 << 20
MIN_CAPACITY: Final = 64
MAX_CAPACITY: Final = 1 << 30

# Indices into the u64 view of the header. Slots are 128 bytes = 16 u64s apart.
SLOT: Final = 16
F_MAGIC, F_VERSION, F_SYNC_CAP, F_APP_CAP, F_MAX_RECORD = 0, 1, 2, 3, 4
F_HEAD: Final = (1 * SLOT, 3 * SLOT)  # per lane, producer-written
F_TAIL: Final = (2 * SLOT, 4 * SLOT)  # per lane, consumer-written
F_DATA_WAIT: Final = 5 * SLOT
F_SPACE_WAIT: Final = 6 * SLOT

_fence_lock = threading.Lock()


def full_fence() -> None:
    """A full memory barrier: an uncontended lock's acquire and release are ``lock``-prefixed
    atomic instructions on x86-64, which order every earlier store before every later load."""
    _fence_lock.acquire()
    _fence_lock.release()


def frame_bytes(length: int) -> int:
    """Lane bytes one record of ``length`` payload bytes occupies."""
    return FRAME_SIZE + ((length + ALIGN - 1) & -ALIGN)


def largest_payload(free: int, max_record: int) -> int:
    """The largest payload that fits in ``free`` lane bytes (0 also when not even an empty one
    fits: ``free`` is always a multiple of 8, so 0 means the lane is full)."""
    return max(0, min(max_record, free - FRAME_SIZE))


def check_capacity(name: str, capacity: int) -> None:
    if not isinstance(capacity, int) or isinstance(capacity, bool):
        raise ShmRingError(f"{name} must be an int, not {type(capacity).__name__}")
    if not MIN_CAPACITY <= capacity <= MAX_CAPACITY or capacity % ALIGN:
        raise ShmRingError(
            f"{name} {capacity} must be a multiple of {ALIGN} in [{MIN_CAPACITY}, {MAX_CAPACITY}]"
        )


def max_record_for(sync_capacity: int, app_capacity: int) -> int:
    """Each lane must hold one largest record whole, so the smaller lane bounds it."""
    return min(MAX_RECORD, min(sync_capacity, app_capacity) - FRAME_SIZE)


def lane_offsets(sync_capacity: int) -> tuple[int, int]:
    return HEADER_SIZE, HEADER_SIZE + sync_capacity


def write_header(view: memoryview, sync_capacity: int, app_capacity: int) -> None:
    view[F_VERSION] = VERSION
    view[F_SYNC_CAP] = sync_capacity
    view[F_APP_CAP] = app_capacity
    view[F_MAX_RECORD] = max_record_for(sync_capacity, app_capacity)
    view[F_DATA_WAIT] = 1  # a consumer that has not started yet counts as waiting
    view[F_MAGIC] = MAGIC  # last: a header with the magic is complete


def read_header(view: memoryview, file_size: int) -> tuple[int, int, int]:
    """Validate a header met on attach; returns (sync capacity, app capacity, max record)."""
    if view[F_MAGIC] != MAGIC:
        raise ShmRingError(f"not a pycorosync channel (magic {view[F_MAGIC]:#018x})")
    if view[F_VERSION] != VERSION:
        raise ShmRingError(f"channel format version {view[F_VERSION]}, we speak {VERSION}")
    sync_cap, app_cap = view[F_SYNC_CAP], view[F_APP_CAP]
    check_capacity("SYNC lane capacity", sync_cap)
    check_capacity("APP lane capacity", app_cap)
    if HEADER_SIZE + sync_cap + app_cap != file_size:
        raise ShmRingError(
            f"channel memory is {file_size} bytes, header says {HEADER_SIZE + sync_cap + app_cap}"
        )
    max_record = view[F_MAX_RECORD]
    if max_record != max_record_for(sync_cap, app_cap):
        raise ShmRingError(f"channel header's largest record {max_record} does not fit its lanes")
    for lane, capacity in zip(Lane, (sync_cap, app_cap), strict=True):
        check_counters(view, lane, capacity)
    return sync_cap, app_cap, max_record


def check_counters(view: memoryview, lane: Lane, capacity: int) -> tuple[int, int]:
    """Head and tail of a lane, refused if the peer made them inconsistent."""
    head, tail = view[F_HEAD[lane]], view[F_TAIL[lane]]
    if not 0 <= head - tail <= capacity or tail % ALIGN or head % ALIGN:
        raise ShmRingError(f"{lane.name} lane counters corrupt: head {head}, tail {tail}")
    return head, tail
