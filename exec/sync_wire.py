"""The sync protocol's two messages, as multicast in totempg group ``b"sync"`` (SYNC lane).

Theory of operation
-------------------
Corosync's ``exec/sync.c`` coordinates a round with two messages, both in agreed order in their
own totempg group: SERVICE_BUILD (a member's list of the services it synchronises) and
BARRIER (a member finished the current service's ``sync_process``). Ours carry the same facts,
plus the service id in a barrier so that a stray one can never close the wrong service::

    0  u8   version   WIRE_VERSION; another version is refused
    1  u8   kind      MessageKind
    2  ..   body      msgpack array
                      SERVICE_BUILD: [ring seq, ring rep, [service id, ...]]
                      BARRIER:       [ring seq, ring rep, service id]

A peer may be hostile or run another release, so :func:`decode` trusts nothing: it checks the
header, that the body is exactly one msgpack array (no trailing bytes) of the right length,
that every field is an int (never a bool) in range, and that a service list is not too long
and names no service twice. Any failure raises a :class:`SyncWireError` with the reason; the
coordinator logs it and drops the message, and its state is as if it had never arrived.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

import msgpack

from pycorosync.exec.totem.events import RingId
from pycorosync.lib.errors import MessageError

__all__ = [
    "MAX_BUILD_SERVICES",
    "SYNC_GROUP",
    "WIRE_VERSION",
    "Barrier",
    "MessageKind",
    "ServiceBuild",
    "SyncMessage",
    "SyncVersionError",
    "SyncWireError",
    "decode",
    "encode",
]

SYNC_GROUP = b"sync"
"""The totempg group every sync message is multicast to (Corosync's name)."""

WIRE_VERSION = 1
HEADER = struct.Struct("!BB")

MAX_BUILD_SERVICES = 1024
"""Most service ids one SERVICE_BUILD may name (Corosync's array holds 128)."""

_SERVICE_ID_MAX = 0xFFFF
_RING_SEQ_MAX = (1 << 64) - 1
_NODEID_MAX = 0xFFFFFFFF
_MAX_BODY = 16 + 5 * MAX_BUILD_SERVICES
"""Longest valid body: a longer payload is refused before msgpack is asked to parse it."""


class MessageKind(IntEnum):
    """Corosync's message ids in the sync group (``MESSAGE_REQ_SYNC_*``)."""

    BARRIER = 0
    SERVICE_BUILD = 1


class SyncWireError(MessageError):
    """A sync message that does not decode (hostile, corrupt or from another release)."""


class SyncVersionError(SyncWireError):
    """A sync message of another wire version."""


@dataclass(frozen=True, slots=True)
class ServiceBuild:
    """A member's list of the services it synchronises, for the round of ``ring_id``."""

    ring_id: RingId
    services: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Barrier:
    """The sender finished ``sync_process`` of ``service_id`` in the round of ``ring_id``."""

    ring_id: RingId
    service_id: int


SyncMessage = ServiceBuild | Barrier


def encode(message: SyncMessage) -> bytes:
    """The bytes of ``message``; raise SyncWireError for a field out of range."""
    ring = message.ring_id
    _check_ring(ring.seq, ring.rep)
    if isinstance(message, ServiceBuild):
        _check_services(list(message.services))
        body: list[Any] = [ring.seq, ring.rep, list(message.services)]
        kind = MessageKind.SERVICE_BUILD
    else:
        _check_service(message.service_id)
        body = [ring.seq, ring.rep, message.service_id]
        kind = MessageKind.BARRIER
    packed: bytes = msgpack.packb(body, use_bin_type=True)
    return HEADER.pack(WIRE_VERSION, kind) + packed


def decode(payload: bytes) -> SyncMessage:
    """The message in ``payload``; raise SyncWireError (with the reason) if it is not one."""
    if len(payload) < HEADER.size:
        raise SyncWireError(f"sync message of {len(payload)} bytes is shorter than its header")
    version, kind = HEADER.unpack_from(payload)
    if version != WIRE_VERSION:
        raise SyncVersionError(f"sync message version {version}, this node speaks {WIRE_VERSION}")
    if kind not in MessageKind._value2member_map_:
        raise SyncWireError(f"unknown sync message kind {kind}")
    body = _unpack(payload[HEADER.size :])
    if len(body) != 3:
        raise SyncWireError(f"sync message body has {len(body)} fields, expected 3")
    seq, rep, last = body
    _check_ring(seq, rep)
    ring = RingId(seq=seq, rep=rep)
    if kind == MessageKind.BARRIER:
        _check_service(last)
        return Barrier(ring, last)
    if not isinstance(last, list):
        raise SyncWireError("service build: the service list is not an array")
    _check_services(last)
    return ServiceBuild(ring, tuple(last))


def _unpack(body: bytes) -> list[Any]:
    if len(body) > _MAX_BODY:
        raise SyncWireError(f"sync message body of {len(body)} bytes exceeds {_MAX_BODY}")
    try:
        value = msgpack.unpackb(body, raw=False, use_list=True, strict_map_key=True)
    except (ValueError, msgpack.UnpackException) as error:
        raise SyncWireError(f"sync message body is not one msgpack value: {error!r}") from None
    if not isinstance(value, list):
        raise SyncWireError("sync message body is not an array")
    return value


def _int_in(value: object, low: int, high: int) -> bool:
    # bool is an int subclass; msgpack's true is not a ring seq.
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _check_ring(seq: object, rep: object) -> None:
    if not _int_in(seq, 0, _RING_SEQ_MAX):
        raise SyncWireError(f"ring seq {seq!r} is not an int in 0..2**64-1")
    if not _int_in(rep, 1, _NODEID_MAX):
        raise SyncWireError(f"ring representative {rep!r} is not a nodeid in 1..2**32-1")


def _check_service(service: object) -> None:
    if not _int_in(service, 0, _SERVICE_ID_MAX):
        raise SyncWireError(f"service id {service!r} is not an int in 0..{_SERVICE_ID_MAX}")


def _check_services(services: list[Any]) -> None:
    if len(services) > MAX_BUILD_SERVICES:
        raise SyncWireError(
            f"service build names {len(services)} services, at most {MAX_BUILD_SERVICES}"
        )
    for service in services:
        _check_service(service)
    if len(set(services)) != len(services):
        raise SyncWireError("service build names a service twice")
