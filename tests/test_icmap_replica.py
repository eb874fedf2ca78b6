"""Replication of the cmap store: records, their codec on untrusted input, and the replica."""

from __future__ import annotations

import math
import struct
from typing import Any

import msgpack
import pytest

from pycorosync.exec.icmap import (
    CmapChange,
    CmapEntry,
    CmapRecordError,
    CmapReplica,
    CmapSnapshot,
    CmapStore,
    TrackEvent,
    TrackFlags,
    decode_change,
    decode_snapshot,
    encode_change,
    encode_snapshot,
)
from pycorosync.lib.cmap_types import ValueType
from pycorosync.lib.errors import CsErrorCode

ALL = TrackFlags.ADD | TrackFlags.DELETE | TrackFlags.MODIFY | TrackFlags.PREFIX

EDGE_ENTRIES = [
    CmapEntry(ValueType.INT8, -128),
    CmapEntry(ValueType.UINT8, 255),
    CmapEntry(ValueType.INT16, -32768),
    CmapEntry(ValueType.UINT16, 65535),
    CmapEntry(ValueType.INT32, -(1 << 31)),
    CmapEntry(ValueType.UINT32, (1 << 32) - 1),
    CmapEntry(ValueType.INT64, -(1 << 63)),
    CmapEntry(ValueType.UINT64, (1 << 64) - 1),
    CmapEntry(ValueType.FLOAT, 0.1),
    CmapEntry(ValueType.FLOAT, -math.inf),
    CmapEntry(ValueType.DOUBLE, math.nan),
    CmapEntry(ValueType.DOUBLE, -0.0),
    CmapEntry(ValueType.STRING, ""),
    CmapEntry(ValueType.STRING, "r(0) ip(127.0.0.1) é"),
    CmapEntry(ValueType.BINARY, b""),
    CmapEntry(ValueType.BINARY, bytes(range(256))),
]


def _pack(record: list[Any]) -> bytes:
    packed: bytes = msgpack.packb(record, use_bin_type=True)
    return packed


@pytest.mark.parametrize("entry", EDGE_ENTRIES, ids=lambda e: e.vtype.name)
def test_change_round_trip(entry: CmapEntry) -> None:
    change = CmapChange(TrackEvent.MODIFY, "a.key", entry, 7)
    decoded = decode_change(encode_change(change))
    assert decoded == change
    assert decoded.entry is not None
    assert type(decoded.entry.value) is type(entry.value)


def test_delete_round_trip_and_buffer_types() -> None:
    change = CmapChange(TrackEvent.DELETE, "a.key", None, (1 << 64) - 1)
    data = encode_change(change)
    assert decode_change(data) == change
    assert decode_change(bytearray(data)) == change
    assert decode_change(memoryview(data)) == change


def test_snapshot_round_trip() -> None:
    entries = tuple((f"k.{n:02d}", entry) for n, entry in enumerate(EDGE_ENTRIES))
    snapshot = CmapSnapshot(42, entries)
    assert decode_snapshot(encode_snapshot(snapshot)) == snapshot
    assert decode_snapshot(encode_snapshot(CmapSnapshot(0, ()))) == CmapSnapshot(0, ())


GOOD_CHANGE = [1, 5, 4, "a.key", 6, 3]

BAD_CHANGES: list[tuple[str, object]] = [
    ("not msgpack", b"\xc1"),
    ("truncated", _pack(GOOD_CHANGE)[:-1]),
    ("trailing bytes", _pack(GOOD_CHANGE) + b"\x00"),
    ("empty", b""),
    ("not bytes", "text"),
    ("a map", _pack({"op": 4})),  # type: ignore[list-item]
    ("a snapshot", _pack([2, 0, []])),
    ("empty array", _pack([])),
    ("short", _pack(GOOD_CHANGE[:5])),
    ("long", _pack([*GOOD_CHANGE, None])),
    ("tag as bool", _pack([True, 5, 4, "a.key", 6, 3])),
    ("seq zero", _pack([1, 0, 4, "a.key", 6, 3])),
    ("seq negative", _pack([1, -1, 4, "a.key", 6, 3])),
    ("seq bool", _pack([1, True, 4, "a.key", 6, 3])),
    ("seq float", _pack([1, 5.0, 4, "a.key", 6, 3])),
    ("op unknown", _pack([1, 5, 3, "a.key", 6, 3])),
    ("op prefix", _pack([1, 5, 8, "a.key", 6, 3])),
    ("op string", _pack([1, 5, "ADD", "a.key", 6, 3])),
    ("key bytes", _pack([1, 5, 4, b"a.key", 6, 3])),
    ("key too short", _pack([1, 5, 4, "ab", 6, 3])),
    ("key bad char", _pack([1, 5, 4, "a key", 6, 3])),
    ("key bad utf-8", _pack([1, 5, 4, "a.k", 6, 3]).replace(b"a.k", b"a.\xff")),
    ("type unknown", _pack([1, 5, 4, "a.key", 13, 3])),
    ("type bool", _pack([1, 5, 4, "a.key", True, 3])),
    ("type missing", _pack([1, 5, 4, "a.key", None, 3])),
    ("value out of range", _pack([1, 5, 4, "a.key", 2, 256])),
    ("value bool", _pack([1, 5, 4, "a.key", 2, True])),
    ("value wrong family", _pack([1, 5, 4, "a.key", 11, b"x"])),
    ("value with NUL", _pack([1, 5, 4, "a.key", 11, "a\0"])),
    ("value too long", _pack([1, 5, 4, "a.key", 12, b"x" * 16385])),
    ("value missing", _pack([1, 5, 4, "a.key", 6, None])),
    ("value ext type", _pack([1, 5, 4, "a.key", 12, msgpack.ExtType(1, b"x")])),
    ("float not canonical", _pack([1, 5, 4, "a.key", 9, 0.1])),
    ("float beyond FLT_MAX", _pack([1, 5, 4, "a.key", 9, 1e39])),
    ("delete with value", _pack([1, 5, 1, "a.key", 6, 3])),
    ("delete with type", _pack([1, 5, 1, "a.key", 6, None])),
    ("deep nesting", b"\x91" * 100_000),
]


@pytest.mark.parametrize(("data"), [d for _, d in BAD_CHANGES], ids=[n for n, _ in BAD_CHANGES])
def test_malformed_change_is_a_clear_record_error(data: bytes) -> None:
    with pytest.raises(CmapRecordError) as caught:
        decode_change(data)
    assert caught.value.code is CsErrorCode.CS_ERR_MESSAGE_ERROR
    assert str(caught.value).startswith("CS_ERR_MESSAGE_ERROR: ")


def test_canonical_float_is_accepted() -> None:
    single = struct.unpack("<f", struct.pack("<f", 0.1))[0]
    change = decode_change(_pack([1, 5, 4, "a.key", 9, single]))
    assert change.entry == CmapEntry(ValueType.FLOAT, 0.1)


BAD_SNAPSHOTS: list[tuple[str, bytes]] = [
    ("a change", _pack(GOOD_CHANGE)),
    ("short", _pack([2, 0])),
    ("seq negative", _pack([2, -1, []])),
    ("entries not array", _pack([2, 0, {"a.b": 1}])),
    ("entry not array", _pack([2, 0, ["a.b"]])),
    ("entry short", _pack([2, 0, [["a.b", 6]]])),
    ("bad value", _pack([2, 0, [["a.b", 6, -1]]])),
    ("bad key", _pack([2, 0, [["a", 6, 1]]])),
    ("duplicate key", _pack([2, 0, [["a.b", 6, 1], ["a.b", 6, 2]]])),
    ("unsorted", _pack([2, 0, [["a.c", 6, 1], ["a.b", 6, 2]]])),
]


@pytest.mark.parametrize("data", [d for _, d in BAD_SNAPSHOTS], ids=[n for n, _ in BAD_SNAPSHOTS])
def test_malformed_snapshot_is_a_clear_record_error(data: bytes) -> None:
    with pytest.raises(CmapRecordError):
        decode_snapshot(data)


def test_records_validate_when_built_directly() -> None:
    entry = CmapEntry(ValueType.UINT8, 1)
    with pytest.raises(CmapRecordError, match="needs an entry"):
        CmapChange(TrackEvent.ADD, "a.b", None, 1)
    with pytest.raises(CmapRecordError, match="takes no entry"):
        CmapChange(TrackEvent.DELETE, "a.b", entry, 1)
    with pytest.raises(CmapRecordError, match="CmapEntry"):
        CmapChange(TrackEvent.ADD, "a.b", 1, 1)  # type: ignore[arg-type]
    with pytest.raises(CmapRecordError, match="op"):
        CmapChange(8, "a.b", entry, 1)  # type: ignore[arg-type]
    with pytest.raises(CmapRecordError, match="key"):
        CmapChange(TrackEvent.ADD, "a b", entry, 1)
    with pytest.raises(CmapRecordError, match="seq"):
        CmapChange(TrackEvent.ADD, "a.b", entry, 0)
    with pytest.raises(CmapRecordError, match="order"):
        CmapSnapshot(0, (("a.c", entry), ("a.b", entry)))
    with pytest.raises(CmapRecordError, match="CmapEntry"):
        CmapSnapshot(0, (("a.b", 1),))  # type: ignore[arg-type]


# --- the replica ----------------------------------------------------------------------------


def _replica_of(store: CmapStore) -> CmapReplica:
    return CmapReplica.from_snapshot(decode_snapshot(encode_snapshot(store.snapshot())))


def _sync(store: CmapStore, replica: CmapReplica) -> None:
    for change in store.take_changes():
        replica.apply(decode_change(encode_change(change)))


def test_replica_follows_the_store_and_fires_the_same_events() -> None:
    store = CmapStore(record_changes=True)
    store.set("totem.token", 3000, ValueType.UINT32)
    replica = _replica_of(store)
    store.take_changes()
    store_events: list[object] = []
    replica_events: list[object] = []
    store.track_add("totem.", ALL, lambda *e: store_events.append(e))
    replica.track_add("totem.", ALL, lambda *e: replica_events.append(e))
    store.set("totem.token", 5000, ValueType.UINT32)
    store.set("totem.join", 50, ValueType.UINT32)
    store.adjust("totem.join", 1)
    store.delete("totem.token")
    _sync(store, replica)
    assert replica_events == store_events
    assert len(store_events) == 4
    assert list(replica.iter_prefix()) == list(store.iter_prefix())
    assert replica.get("totem.join") == CmapEntry(ValueType.UINT32, 51)
    assert replica.seq == store.seq == 5


def test_replica_is_read_only() -> None:
    replica = CmapReplica()
    for name in ("set", "delete", "adjust", "set_ro"):
        assert not hasattr(replica, name)


def test_replica_refuses_a_change_that_does_not_follow_on() -> None:
    store = CmapStore(record_changes=True)
    store.set("a.b", 1, ValueType.UINT8)
    replica = _replica_of(store)  # at seq 1
    entry = CmapEntry(ValueType.UINT8, 2)
    refused = [
        CmapChange(TrackEvent.MODIFY, "a.b", entry, 1),  # repeated
        CmapChange(TrackEvent.MODIFY, "a.b", entry, 3),  # one lost
        CmapChange(TrackEvent.ADD, "a.b", entry, 2),  # already there
        CmapChange(TrackEvent.MODIFY, "a.c", entry, 2),  # not there
        CmapChange(TrackEvent.DELETE, "a.c", None, 2),  # not there
        CmapChange(TrackEvent.MODIFY, "a.b", CmapEntry(ValueType.UINT8, 1), 2),  # no change
    ]
    events: list[object] = []
    replica.track_add("", ALL, lambda *e: events.append(e))
    for change in refused:
        with pytest.raises(CmapRecordError):
            replica.apply(change)
    with pytest.raises(CmapRecordError):
        replica.apply("a change")  # type: ignore[arg-type]
    assert events == []
    assert replica.seq == 1
    assert list(replica.iter_prefix()) == [("a.b", CmapEntry(ValueType.UINT8, 1))]
    replica.apply(CmapChange(TrackEvent.MODIFY, "a.b", entry, 2))
    assert replica.get("a.b") == entry


def test_from_snapshot_needs_a_snapshot() -> None:
    with pytest.raises(CmapRecordError):
        CmapReplica.from_snapshot([])  # type: ignore[arg-type]


def test_replica_callback_errors_go_to_its_hook() -> None:
    failures: list[object] = []
    replica = CmapReplica(on_callback_error=failures.append)

    def explode(*_: object) -> None:
        raise ValueError("boom")

    replica.track_add("a.b", ALL, explode)
    replica.apply(CmapChange(TrackEvent.ADD, "a.b", CmapEntry(ValueType.UINT8, 1), 1))
    assert len(failures) == 1
    assert replica.get("a.b").value == 1


def test_a_new_replica_joins_the_change_stream_at_its_snapshot() -> None:
    store = CmapStore(record_changes=True)
    old = CmapReplica()
    store.set("a.a", 1, ValueType.UINT8)
    for change in store.take_changes():
        old.apply(change)
    new = CmapReplica.from_snapshot(store.snapshot())
    store.set("a.a", 2, ValueType.UINT8)
    store.set("b.b", "x", ValueType.STRING)
    for change in store.take_changes():
        old.apply(change)
        new.apply(change)
    assert list(old.iter_prefix()) == list(new.iter_prefix()) == list(store.iter_prefix())
    stale = CmapChange(TrackEvent.ADD, "a.a", CmapEntry(ValueType.UINT8, 1), 1)
    with pytest.raises(CmapRecordError, match="does not follow"):
        new.apply(stale)
