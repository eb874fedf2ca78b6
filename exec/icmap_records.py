"""Replication records of the cmap store: one per applied change, and a whole-map snapshot.

The Totem process owns the store; each worker keeps a read-only replica (DESIGN.md). A new
replica starts from a :class:`CmapSnapshot` and then applies, in order, every
:class:`CmapChange` the store applied after it. Both carry the store's change sequence number
(``seq``): the snapshot the number of the last change it includes, each change its own
number, so a replica refuses a record that is lost, repeated or reordered instead of quietly
drifting away from the store.

Records cross a process boundary, so decoding trusts nothing. Each is a msgpack array:

* change:   ``[1, seq, op, key, vtype, value]`` — ``vtype`` and ``value`` are nil for DELETE;
* snapshot: ``[2, seq, [[key, vtype, value], ...]]`` — keys strictly increasing.

``op`` is the :class:`TrackEvent` number (ADD=4, MODIFY=2, DELETE=1). Every field is checked
(types, key names, value rules, canonical FLOAT values, order); anything else is a
:class:`CmapRecordError`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

import msgpack

from pycorosync.lib.cmap_types import CmapEntry, TrackEvent, check_key_name
from pycorosync.lib.errors import CsError, MessageError

_CHANGE_TAG = 1
_SNAPSHOT_TAG = 2
_MAX_SEQ = (1 << 64) - 1

Buffer = bytes | bytearray | memoryview


class CmapRecordError(MessageError):
    """A replication record is malformed or does not follow on from the replica's state."""


@dataclass(frozen=True, slots=True)
class CmapChange:
    """One applied change: ``entry`` is the new entry, ``None`` exactly when ``op`` is DELETE."""

    op: TrackEvent
    key: str
    entry: CmapEntry | None
    seq: int

    def __post_init__(self) -> None:
        _check_seq(self.seq, minimum=1)
        try:
            object.__setattr__(self, "op", TrackEvent(self.op))
        except ValueError:
            raise CmapRecordError(f"unknown change op {self.op!r}") from None
        _check_key(self.key)
        if (self.entry is None) != (self.op is TrackEvent.DELETE):
            need = "needs an" if self.entry is None else "takes no"
            raise CmapRecordError(f"a {self.op.name} change {need} entry")
        if self.entry is not None and not isinstance(self.entry, CmapEntry):
            raise CmapRecordError("a change's entry must be a CmapEntry")


@dataclass(frozen=True, slots=True)
class CmapSnapshot:
    """Every entry of a map in key order, as of change number ``seq``."""

    seq: int
    entries: tuple[tuple[str, CmapEntry], ...]

    def __post_init__(self) -> None:
        _check_seq(self.seq, minimum=0)
        previous: str | None = None
        for key, entry in self.entries:
            _check_key(key)
            if previous is not None and key <= previous:
                raise CmapRecordError(f"snapshot keys out of order: {key!r} after {previous!r}")
            if not isinstance(entry, CmapEntry):
                raise CmapRecordError(f"snapshot entry of {key!r} is not a CmapEntry")
            previous = key


def encode_change(change: CmapChange) -> bytes:
    entry = change.entry
    vtype = None if entry is None else int(entry.vtype)
    value = None if entry is None else entry.value
    return _pack([_CHANGE_TAG, change.seq, int(change.op), change.key, vtype, value])


def decode_change(data: Buffer) -> CmapChange:
    _, seq, op, key, vtype, value = _unpack(data, _CHANGE_TAG, length=6, what="change")
    _check_int(op, "op")
    if op != TrackEvent.DELETE:
        return CmapChange(op, key, _decode_entry(key, vtype, value), seq)
    if vtype is not None or value is not None:
        raise CmapRecordError("a DELETE change carries no type or value")
    return CmapChange(op, key, None, seq)


def encode_snapshot(snapshot: CmapSnapshot) -> bytes:
    items = [[key, int(entry.vtype), entry.value] for key, entry in snapshot.entries]
    return _pack([_SNAPSHOT_TAG, snapshot.seq, items])


def decode_snapshot(data: Buffer) -> CmapSnapshot:
    _, seq, items = _unpack(data, _SNAPSHOT_TAG, length=3, what="snapshot")
    if not isinstance(items, list):
        raise CmapRecordError("snapshot entries must be an array")
    entries: list[tuple[str, CmapEntry]] = []
    for item in items:
        if not isinstance(item, list) or len(item) != 3:
            raise CmapRecordError("a snapshot entry must be a [key, type, value] array")
        key, vtype, value = item
        entries.append((key, _decode_entry(key, vtype, value)))
    return CmapSnapshot(seq, tuple(entries))


def _pack(record: list[Any]) -> bytes:
    packed: bytes = msgpack.packb(record, use_bin_type=True)
    return packed


def _unpack(data: Buffer, tag: int, *, length: int, what: str) -> list[Any]:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise CmapRecordError(f"a {what} record must be bytes, not {type(data).__name__}")
    try:
        record = msgpack.unpackb(data, raw=False, use_list=True, strict_map_key=True)
    except (ValueError, msgpack.UnpackException) as error:
        raise CmapRecordError(f"{what} record is not valid msgpack: {error!r}") from None
    if not isinstance(record, list) or not record or record[0] != tag:
        raise CmapRecordError(f"not a cmap {what} record")
    if len(record) != length:
        raise CmapRecordError(f"a {what} record needs {length} fields, not {len(record)}")
    _check_int(record[0], "tag")
    return record


def _decode_entry(key: object, vtype: object, value: object) -> CmapEntry:
    _check_int(vtype, "type")
    try:
        entry = CmapEntry(vtype, value)  # type: ignore[arg-type]  # checked by CmapEntry
    except CsError as error:
        raise CmapRecordError(f"bad value for {key!r}: {error}") from None
    if isinstance(value, float) and _bits(value) != _bits(entry.value):
        raise CmapRecordError(f"value of {key!r} is not a canonical {entry.vtype.name}")
    return entry


def _bits(value: object) -> bytes:
    assert isinstance(value, float)
    return struct.pack("<d", value)


def _check_key(key: object) -> None:
    try:
        check_key_name(key)  # type: ignore[arg-type]  # checked by check_key_name
    except CsError as error:
        raise CmapRecordError(f"bad key name: {error}") from None


def _check_seq(seq: object, *, minimum: int) -> None:
    _check_int(seq, "seq")
    assert isinstance(seq, int)
    if not minimum <= seq <= _MAX_SEQ:
        raise CmapRecordError(f"seq {seq} is out of range")


def _check_int(field: object, name: str) -> None:
    if isinstance(field, bool) or not isinstance(field, int):
        raise CmapRecordError(f"field {name!r} must be an integer, not {type(field).__name__}")
