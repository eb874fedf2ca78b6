"""The cmap client protocol: message ids and msgpack bodies, shared by engine and library.

Theory of operation. A client talks to the cmap engine of its node over one IPC connection.
The message ids are Corosync's (``ipc_cmap.h``): a request ``SET`` = 0 ... ``SET_CURRENT_MAP``
= 9 is answered by the response with the same id (``SET_CURRENT_MAP`` answers 10), and a
tracker's notification is the unsolicited ``NOTIFY_CALLBACK`` = 9. The frame header (length,
message id, error) belongs to the IPC layer; this module defines only the bodies, each a
msgpack array:

================  ======================================  ================================
message           request body                            response body (when ``CS_OK``)
================  ======================================  ================================
SET               ``[key, type, value]``                  empty
DELETE            ``[key]``                               empty
GET               ``[key]``                               ``[type, value]``
ADJUST_INT        ``[key, step]``                         empty
ITER_INIT         ``[prefix]``                            ``[iter_handle]``
ITER_NEXT         ``[iter_handle]``                       ``[key, value_len, type]``
ITER_FINALIZE     ``[iter_handle]``                       empty
TRACK_ADD         ``[key, track_type, cookie]``           ``[track_handle]``
TRACK_DELETE      ``[track_handle]``                      ``[cookie]``
SET_CURRENT_MAP   ``[map]``                               empty
NOTIFY_CALLBACK   —                                       ``[cookie, event, key, new, old]``
================  ======================================  ================================

A reply with an error carries an empty body. In a notification ``new`` and ``old`` are
``[type, value]`` or nil (no new value on DELETE, no old one on ADD); ``cookie`` is the
client's own number for the tracker, so the library routes it without a lookup on the
engine's handle (as Corosync's ``track_inst_handle``).

Decoding trusts nothing: a body of the wrong shape or with a field of the wrong type raises
:class:`CmapWireError` (``CS_ERR_MESSAGE_ERROR``). Whether a *value* fits its type is the
store's question for a SET (answered with ``CS_ERR_INVALID_PARAM`` by the owner); a value the
engine sends back is checked here.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Any

import msgpack

from pycorosync.lib.cmap_types import CmapEntry, CmapValue, TrackEvent
from pycorosync.lib.errors import CsError, MessageError

__all__ = [
    "CMAP_MAP_DEFAULT",
    "CMAP_MAP_STATS",
    "CmapRequestId",
    "CmapResponseId",
    "CmapWireError",
    "IterNextReply",
    "Notification",
    "SetRequest",
    "TrackAddRequest",
]

CMAP_MAP_DEFAULT = 0
"""The configuration map (icmap)."""
CMAP_MAP_STATS = 1
"""Corosync's on-demand statistics map."""

_U64 = (0, (1 << 64) - 1)
_I32 = (-(1 << 31), (1 << 31) - 1)
_BYTE = (0, 255)


class CmapRequestId(IntEnum):
    SET = 0
    DELETE = 1
    GET = 2
    ADJUST_INT = 3
    ITER_INIT = 4
    ITER_NEXT = 5
    ITER_FINALIZE = 6
    TRACK_ADD = 7
    TRACK_DELETE = 8
    SET_CURRENT_MAP = 9


class CmapResponseId(IntEnum):
    SET = 0
    DELETE = 1
    GET = 2
    ADJUST_INT = 3
    ITER_INIT = 4
    ITER_NEXT = 5
    ITER_FINALIZE = 6
    TRACK_ADD = 7
    TRACK_DELETE = 8
    NOTIFY_CALLBACK = 9
    SET_CURRENT_MAP = 10


class CmapWireError(MessageError):
    """A cmap message body is malformed."""


@dataclass(frozen=True, slots=True)
class SetRequest:
    key: str
    vtype: int
    value: CmapValue


@dataclass(frozen=True, slots=True)
class TrackAddRequest:
    key: str
    track_type: int
    cookie: int


@dataclass(frozen=True, slots=True)
class IterNextReply:
    key: str
    value_len: int
    vtype: int


@dataclass(frozen=True, slots=True)
class Notification:
    cookie: int
    event: TrackEvent
    key: str
    new: CmapEntry | None
    old: CmapEntry | None


# Requests ---------------------------------------------------------------------------------


def encode_set(request: SetRequest) -> bytes:
    return _pack([request.key, int(request.vtype), request.value])


def decode_set(data: bytes) -> SetRequest:
    key, vtype, value = _unpack(data, 3, "set request")
    if isinstance(value, bool) or not isinstance(value, int | float | str | bytes):
        raise CmapWireError(f"a set's value cannot be a {type(value).__name__}")
    return SetRequest(_str(key, "key"), _int(vtype, "type", _BYTE), value)


def encode_key(key: str) -> bytes:
    """The body of DELETE, GET and ITER_INIT (the key is a prefix there)."""
    return _pack([key])


def decode_key(data: bytes) -> str:
    (key,) = _unpack(data, 1, "key request")
    return _str(key, "key")


def encode_adjust(key: str, step: int) -> bytes:
    return _pack([key, step])


def decode_adjust(data: bytes) -> tuple[str, int]:
    key, step = _unpack(data, 2, "adjust request")
    return _str(key, "key"), _int(step, "step", _I32)


def encode_handle(handle: int) -> bytes:
    """One unsigned 64-bit number: ITER_NEXT / ITER_FINALIZE / TRACK_DELETE requests, the
    ITER_INIT / TRACK_ADD / TRACK_DELETE responses."""
    return _pack([handle])


def decode_handle(data: bytes) -> int:
    (handle,) = _unpack(data, 1, "handle")
    return _int(handle, "handle", _U64)


def encode_track_add(request: TrackAddRequest) -> bytes:
    return _pack([request.key, request.track_type, request.cookie])


def decode_track_add(data: bytes) -> TrackAddRequest:
    key, track_type, cookie = _unpack(data, 3, "track_add request")
    return TrackAddRequest(_str(key, "key"), _int(track_type, "track_type", _I32), _u64(cookie))


def encode_map(cmap_map: int) -> bytes:
    return _pack([cmap_map])


def decode_map(data: bytes) -> int:
    (cmap_map,) = _unpack(data, 1, "set_current_map request")
    return _int(cmap_map, "map", _I32)


# Responses --------------------------------------------------------------------------------


def encode_entry(entry: CmapEntry) -> bytes:
    """The GET response."""
    return _pack(_entry_fields(entry))


def decode_entry(data: bytes) -> CmapEntry:
    vtype, value = _unpack(data, 2, "get response")
    return _entry(vtype, value)


def encode_iter_next(reply: IterNextReply) -> bytes:
    return _pack([reply.key, reply.value_len, reply.vtype])


def decode_iter_next(data: bytes) -> IterNextReply:
    key, value_len, vtype = _unpack(data, 3, "iter_next response")
    return IterNextReply(_str(key, "key"), _u64(value_len), _int(vtype, "type", _BYTE))


def encode_notification(note: Notification) -> bytes:
    new = None if note.new is None else _entry_fields(note.new)
    old = None if note.old is None else _entry_fields(note.old)
    return _pack([note.cookie, int(note.event), note.key, new, old])


def decode_notification(data: bytes) -> Notification:
    cookie, event, key, new, old = _unpack(data, 5, "notification")
    _int(event, "event", _BYTE)
    try:
        checked_event = TrackEvent(event)
    except ValueError:
        raise CmapWireError(f"unknown track event {event}") from None
    return Notification(_u64(cookie), checked_event, _str(key, "key"), _opt(new), _opt(old))


# Field checks -----------------------------------------------------------------------------


def _entry_fields(entry: CmapEntry) -> list[Any]:
    return [int(entry.vtype), entry.value]


def _opt(fields: object) -> CmapEntry | None:
    if fields is None:
        return None
    if not isinstance(fields, list) or len(fields) != 2:
        raise CmapWireError("a value must be a [type, value] array or nil")
    return _entry(fields[0], fields[1])


def _entry(vtype: object, value: object) -> CmapEntry:
    _int(vtype, "type", _BYTE)
    try:
        return CmapEntry(vtype, value)  # type: ignore[arg-type]  # checked by CmapEntry
    except CsError as error:
        raise CmapWireError(f"bad value: {error}") from None


def _pack(fields: list[Any]) -> bytes:
    packed: bytes = msgpack.packb(fields, use_bin_type=True)
    return packed


def _unpack(data: bytes, length: int, what: str) -> list[Any]:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise CmapWireError(f"a {what} must be bytes, not {type(data).__name__}")
    try:
        fields = msgpack.unpackb(data, raw=False, use_list=True, strict_map_key=True)
    except (ValueError, msgpack.UnpackException) as error:
        raise CmapWireError(f"{what} is not valid msgpack: {error!r}") from None
    if not isinstance(fields, list) or len(fields) != length:
        raise CmapWireError(f"a {what} must be an array of {length} fields")
    return fields


def _str(field: object, name: str) -> str:
    if not isinstance(field, str):
        raise CmapWireError(f"field {name!r} must be a str, not {type(field).__name__}")
    return field


def _u64(field: object) -> int:
    return _int(field, "handle", _U64)


def _int(field: object, name: str, bounds: tuple[int, int]) -> int:
    if isinstance(field, bool) or not isinstance(field, int):
        raise CmapWireError(f"field {name!r} must be an integer, not {type(field).__name__}")
    if not bounds[0] <= field <= bounds[1]:
        raise CmapWireError(f"field {name!r} = {field} is out of range")
    return field
