"""totempg wire formats: the frame inside an SRP multicast, the group header, the service header.

All integers are network byte order. Every decoder validates every count and length against the
bytes it was given before it returns anything, and reports a bad input with a
:class:`PgWireError` subclass; nothing here keeps state.

Frame (one SRP multicast payload, at most ``max_frame`` bytes)::

    0  u8   version        FRAME_VERSION; another version is refused
    1  u8   flags          bit 0: the frame belongs to the sync lane; other bits must be 0
    2  u16  count          number of pieces, at least 1
    4  u16  continues      0: the first piece starts a message; N: it continues link N
    6  u16  link           0: the last piece ends its message; N: it continues in link N
    8  u16  length[count]  length of each piece, each at least 1
    .. data                the pieces, concatenated; header + lengths + data = frame size

A *link* id names one frame-to-frame step of a fragmented message. The sender draws a fresh id
(cycling 1..65535, never 0) for every step, so a lost middle frame shows up as a mismatch at the
next frame instead of silently joining two halves of different messages.

Group header (in front of every application message, before packing)::

    u8 count (1..MAX_GROUPS_PER_MSG), u8 length[count] (1..MAX_GROUP_NAME), names, payload

Service header (in front of an executive message, inside the payload)::

    u32 size (the whole service message, header included), u16 service id, u16 function id
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum

from pycorosync.lib.errors import InvalidParamError, NameTooLongError, TooManyGroupsError

FRAME_VERSION = 1
FRAME_HEADER = struct.Struct("!BBHHH")
FRAME_HEADER_SIZE = FRAME_HEADER.size
FLAG_SYNC_LANE = 0x01
_KNOWN_FLAGS = FLAG_SYNC_LANE
PIECE_LENGTH_SIZE = 2
MAX_LINK_ID = 0xFFFF

MIN_FRAME_SIZE = 16
"""Smallest ``max_frame`` accepted: room for the header, one length and a few bytes."""
MAX_FRAME_SIZE = 0xFFFF
"""Largest ``max_frame``: piece lengths are u16."""

MAX_MESSAGE_SIZE = 1 << 20
"""Largest application payload totempg carries (1 MiB), our own limit."""
MAX_GROUPS_PER_MSG = 32
MAX_GROUP_NAME = 255
MAX_GROUP_HEADER = 1 + MAX_GROUPS_PER_MSG * (1 + MAX_GROUP_NAME)
MAX_PACKED_MESSAGE = MAX_MESSAGE_SIZE + MAX_GROUP_HEADER
"""Largest unit the packer fragments and the receiver reassembles (payload + group header)."""

SERVICE_HEADER = struct.Struct("!IHH")
SERVICE_HEADER_SIZE = SERVICE_HEADER.size


class PgWireError(ValueError):
    """A frame, group header or service header that does not decode (hostile or corrupt)."""


class MalformedFrameError(PgWireError):
    """A frame whose header, counts or lengths are inconsistent."""


class FrameVersionError(MalformedFrameError):
    """A frame of another format version."""


class OversizeMessageError(PgWireError):
    """A fragment chain that would grow beyond :data:`MAX_PACKED_MESSAGE`."""


class MalformedGroupHeaderError(PgWireError):
    """A message whose group header does not decode."""


class MalformedServiceHeaderError(PgWireError):
    """A payload whose service header does not decode."""


@dataclass(frozen=True, slots=True)
class FrameLayout:
    """A validated frame header: where each piece lies in the frame."""

    sync_lane: bool
    continues: int
    link: int
    lengths: tuple[int, ...]
    data_offset: int


def validate_max_frame(max_frame: int) -> None:
    if not MIN_FRAME_SIZE <= max_frame <= MAX_FRAME_SIZE:
        raise InvalidParamError(
            f"max_frame {max_frame} outside {MIN_FRAME_SIZE}..{MAX_FRAME_SIZE} bytes"
        )


def encode_frame(
    *,
    sync_lane: bool,
    continues: int,
    link: int,
    lengths: Sequence[int],
    pieces: Sequence[bytes | memoryview],
) -> bytes:
    """One frame from its pieces (the packer guarantees the invariants decode_frame checks)."""
    count = len(lengths)
    flags = FLAG_SYNC_LANE if sync_lane else 0
    head = FRAME_HEADER.pack(FRAME_VERSION, flags, count, continues, link)
    return b"".join([head, struct.pack(f"!{count}H", *lengths), *pieces])


def decode_frame(frame: bytes, max_frame: int) -> FrameLayout:
    """Validate ``frame`` completely and describe it; raise :class:`MalformedFrameError`."""
    size = len(frame)
    if size > max_frame:
        raise MalformedFrameError(f"frame of {size} bytes exceeds max_frame {max_frame}")
    if size < FRAME_HEADER_SIZE + PIECE_LENGTH_SIZE:
        raise MalformedFrameError(f"frame of {size} bytes is shorter than a header")
    version, flags, count, continues, link = FRAME_HEADER.unpack_from(frame)
    if version != FRAME_VERSION:
        raise FrameVersionError(f"frame format version {version}, expected {FRAME_VERSION}")
    if flags & ~_KNOWN_FLAGS:
        raise MalformedFrameError(f"unknown frame flags {flags:#04x}")
    data_offset = FRAME_HEADER_SIZE + PIECE_LENGTH_SIZE * count
    if count == 0 or data_offset > size:
        raise MalformedFrameError(f"piece count {count} does not fit a {size}-byte frame")
    lengths: tuple[int, ...] = struct.unpack_from(f"!{count}H", frame, FRAME_HEADER_SIZE)
    if sum(lengths) != size - data_offset:
        raise MalformedFrameError(
            f"piece lengths sum to {sum(lengths)}, frame holds {size - data_offset} data bytes"
        )
    if 0 in lengths:
        raise MalformedFrameError("empty piece")
    return FrameLayout(bool(flags & FLAG_SYNC_LANE), continues, link, lengths, data_offset)


def encode_groups(groups: Sequence[bytes], payload: bytes) -> bytes:
    """Prefix ``payload`` with the group header naming ``groups``."""
    if not groups:
        raise InvalidParamError("a message must name at least one group")
    if len(groups) > MAX_GROUPS_PER_MSG:
        raise TooManyGroupsError(f"{len(groups)} groups, at most {MAX_GROUPS_PER_MSG}")
    for name in groups:
        check_group_name(name)
    lengths = bytes(len(name) for name in groups)
    return b"".join([bytes((len(groups),)), lengths, *groups, payload])


def check_group_name(name: bytes) -> None:
    if not name:
        raise InvalidParamError("empty group name")
    if len(name) > MAX_GROUP_NAME:
        raise NameTooLongError(f"group name of {len(name)} bytes, at most {MAX_GROUP_NAME}")


def decode_groups(message: bytes) -> tuple[tuple[bytes, ...], int]:
    """The group names of ``message`` and the offset of its payload."""
    size = len(message)
    if size < 1:
        raise MalformedGroupHeaderError("empty message")
    count = message[0]
    if not 1 <= count <= MAX_GROUPS_PER_MSG:
        raise MalformedGroupHeaderError(f"group count {count} outside 1..{MAX_GROUPS_PER_MSG}")
    offset = 1 + count
    if offset > size:
        raise MalformedGroupHeaderError(f"{count} group lengths do not fit {size} bytes")
    names = []
    for length in message[1 : 1 + count]:
        if length == 0 or offset + length > size:
            raise MalformedGroupHeaderError("group name length outside the message")
        names.append(message[offset : offset + length])
        offset += length
    return tuple(names), offset


class ServiceId(IntEnum):
    """Corosync's service ids (``corodefs.h``); the executive routes on these."""

    CMAP = 0
    CFG = 1
    CPG = 2
    QUORUM = 3
    PLOAD = 4
    VOTEQUORUM = 5
    MON = 6
    WD = 7


MAX_SERVICE_ID = 0xFFFF
"""The header's 16 bits: the engine contract's ``SERVICE_ID_MAX`` (Corosync stops at 63, but
third-party engines take ids above the 0..31 reserved for built-ins)."""


@dataclass(frozen=True, slots=True)
class ServiceMessage:
    service: int
    function: int
    body: bytes


def encode_service(service: int, function: int, body: bytes) -> bytes:
    """An executive message: the service header, then ``body`` (msgpack, by convention)."""
    if not 0 <= service <= MAX_SERVICE_ID:
        raise InvalidParamError(f"service id {service} outside 0..{MAX_SERVICE_ID}")
    if not 0 <= function <= 0xFFFF:
        raise InvalidParamError(f"function id {function} outside 0..65535")
    return SERVICE_HEADER.pack(SERVICE_HEADER_SIZE + len(body), service, function) + body


def service_fields(payload: bytes) -> tuple[int, int, bytes]:
    """``(service, function, body)`` of an executive message: :func:`decode_service` without
    the object, for the delivery hot path."""
    if len(payload) < SERVICE_HEADER_SIZE:
        raise MalformedServiceHeaderError(f"{len(payload)} bytes, shorter than a service header")
    size, service, function = SERVICE_HEADER.unpack_from(payload)
    if size != len(payload):
        raise MalformedServiceHeaderError(f"service header says {size} bytes, got {len(payload)}")
    return service, function, payload[SERVICE_HEADER_SIZE:]


def decode_service(payload: bytes) -> ServiceMessage:
    return ServiceMessage(*service_fields(payload))
