"""The records of a cmap write between a worker and the Totem process, and their codec.

Theory of operation. A worker sends a :class:`WriteRequest` (its own request number and one
:data:`~pycorosync.exec.cmap_owner.CmapWrite`) over its worker → Totem ring; the Totem process
applies it and answers with a :class:`WriteResult` carrying the same number and the
``cs_error_t``. The number lets the worker find the ``done`` callback of the write; it is
the worker's business, the owner only echoes it. Change records and snapshots have their
own codec in :mod:`pycorosync.exec.icmap_records`.

Each record is a msgpack array, tagged so that one is never mistaken for another (tags 1
and 2 are the change and snapshot records):

* request: ``[3, request_id, kind, key, a, b]`` with ``kind`` the cmap IPC request id —
  SET (0): ``a`` = value type, ``b`` = value; DELETE (1): ``a`` and ``b`` nil; ADJUST (3):
  ``a`` = delta, ``b`` nil;
* result: ``[4, request_id, code]``.

Decoding trusts nothing: the structure and every field's type is checked, and anything else
is a :class:`CmapWriteCodecError` (a ``CS_ERR_MESSAGE_ERROR``). Whether a key name or value
is acceptable is not the codec's question: :func:`~pycorosync.exec.cmap_owner.apply_write`
answers it with Corosync's error codes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgpack

from pycorosync.exec.cmap_owner import CmapAdjust, CmapDelete, CmapSet, CmapWrite
from pycorosync.exec.icmap_records import Buffer, CmapRecordError
from pycorosync.lib.cmap_types import ValueType
from pycorosync.lib.errors import CsErrorCode

__all__ = [
    "CmapWriteCodecError",
    "WriteRequest",
    "WriteResult",
    "decode_write_request",
    "decode_write_result",
    "encode_write_request",
    "encode_write_result",
]

_REQUEST_TAG = 3
_RESULT_TAG = 4
_KIND_SET = 0
_KIND_DELETE = 1
_KIND_ADJUST = 3
_MAX_U64 = (1 << 64) - 1
_INT64 = (-(1 << 63), (1 << 63) - 1)
_VALUE_TYPES = frozenset(int(vtype) for vtype in ValueType)


class CmapWriteCodecError(CmapRecordError):
    """A write request or result record is malformed."""


@dataclass(frozen=True, slots=True)
class WriteRequest:
    request_id: int
    write: CmapWrite


@dataclass(frozen=True, slots=True)
class WriteResult:
    request_id: int
    code: CsErrorCode


def encode_write_request(request: WriteRequest) -> bytes:
    _check_u64(request.request_id, "request_id")
    match request.write:
        case CmapSet(key, value, vtype):
            body = [_KIND_SET, key, int(vtype), value]
        case CmapDelete(key):
            body = [_KIND_DELETE, key, None, None]
        case CmapAdjust(key, delta):
            _check_int(delta, "delta", _INT64)
            body = [_KIND_ADJUST, key, delta, None]
        case _:
            raise CmapWriteCodecError(f"not a cmap write: {type(request.write).__name__}")
    return _pack([_REQUEST_TAG, request.request_id, *body])


def decode_write_request(data: Buffer) -> WriteRequest:
    _, request_id, kind, key, a, b = _unpack(data, _REQUEST_TAG, 6, "write request")
    _check_u64(request_id, "request_id")
    if not isinstance(key, str):
        raise CmapWriteCodecError(f"a write's key must be a str, not {type(key).__name__}")
    return WriteRequest(request_id, _decode_write(kind, key, a, b))


def encode_write_result(result: WriteResult) -> bytes:
    _check_u64(result.request_id, "request_id")
    return _pack([_RESULT_TAG, result.request_id, int(CsErrorCode(result.code))])


def decode_write_result(data: Buffer) -> WriteResult:
    _, request_id, code = _unpack(data, _RESULT_TAG, 3, "write result")
    _check_u64(request_id, "request_id")
    _check_int(code, "code", (0, _MAX_U64))
    try:
        return WriteResult(request_id, CsErrorCode(code))
    except ValueError:
        raise CmapWriteCodecError(f"unknown cs_error_t {code}") from None


def _decode_write(kind: object, key: str, a: object, b: object) -> CmapWrite:
    _check_int(kind, "kind", (0, 255))
    if kind == _KIND_SET:
        _check_int(a, "type", (0, 255))
        if isinstance(b, bool) or not isinstance(b, int | float | str | bytes):
            raise CmapWriteCodecError(f"a set's value cannot be a {type(b).__name__}")
        vtype = ValueType(a) if a in _VALUE_TYPES else a  # an unknown one is refused on apply
        return CmapSet(key, b, vtype)  # type: ignore[arg-type]
    if b is not None:
        raise CmapWriteCodecError("a delete or adjust record has no value field")
    if kind == _KIND_DELETE:
        if a is not None:
            raise CmapWriteCodecError("a delete record has no type or delta field")
        return CmapDelete(key)
    if kind == _KIND_ADJUST:
        _check_int(a, "delta", _INT64)
        assert isinstance(a, int)
        return CmapAdjust(key, a)
    raise CmapWriteCodecError(f"unknown write kind {kind!r}")


def _pack(record: list[Any]) -> bytes:
    packed: bytes = msgpack.packb(record, use_bin_type=True)
    return packed


def _unpack(data: Buffer, tag: int, length: int, what: str) -> list[Any]:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise CmapWriteCodecError(f"a {what} must be bytes, not {type(data).__name__}")
    try:
        record = msgpack.unpackb(data, raw=False, use_list=True, strict_map_key=True)
    except (ValueError, msgpack.UnpackException) as error:
        raise CmapWriteCodecError(f"{what} is not valid msgpack: {error!r}") from None
    if not isinstance(record, list) or not record or type(record[0]) is not int or record[0] != tag:
        raise CmapWriteCodecError(f"not a cmap {what}")
    if len(record) != length:
        raise CmapWriteCodecError(f"a {what} needs {length} fields, not {len(record)}")
    return record


def _check_u64(field: object, name: str) -> None:
    _check_int(field, name, (0, _MAX_U64))


def _check_int(field: object, name: str, bounds: tuple[int, int]) -> None:
    if isinstance(field, bool) or not isinstance(field, int):
        raise CmapWriteCodecError(f"field {name!r} must be an integer, not {type(field).__name__}")
    if not bounds[0] <= field <= bounds[1]:
        raise CmapWriteCodecError(f"field {name!r} = {field} is out of range")
