"""The Totem ↔ worker records: round trips, refusal of garbage, and stamp ordering."""

from __future__ import annotations

import re

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pycorosync.exec import worker_proto as wp
from pycorosync.exec.totem.events import ConfigKind, Guarantee, RingId
from pycorosync.lib.errors import CsErrorCode

RING = RingId(7, 2)

RECORDS: list[wp.Record] = [
    wp.Init(3, b"snapshot"),
    wp.Deliver(9, Guarantee.SAFE, ((2, 5, b"\x00payload"), (3, 0, b""))),
    wp.ConfChg(ConfigKind.TRANSITIONAL, (1, 2), (3,), (), RING),
    wp.ConfChg(ConfigKind.REGULAR, (1, 2, 4), (), (4,), RING),
    wp.SyncStep(wp.SyncStepKind.INIT, -1, RING, (1, 2), (1, 2, 4)),
    wp.SyncStep(wp.SyncStepKind.PROCESS, 2, RING),
    wp.SyncStep(wp.SyncStepKind.ACTIVATE, 2, RING),
    wp.SyncStep(wp.SyncStepKind.ABORT, 0, RING),
    wp.SyncStep(wp.SyncStepKind.COMPLETE, -1, RING),
    wp.CmapChanges((b"a", b"b")),
    wp.CmapResult(12, CsErrorCode.CS_ERR_ACCESS),
    wp.Quorum(False),
    wp.Stats((("stats.srp.mcast_tx", 12), ("stats.net.rx", 0))),
    wp.Shutdown(),
    wp.McastRequest(True, ((2, 1, Guarantee.AGREED, b"m"), (3, 0, Guarantee.SAFE, b""))),
    wp.CmapWriteRequest(b"write"),
    wp.SyncDone(2, RING),
    wp.Ready((0, 2)),
    wp.Unloaded(),
]


@pytest.mark.parametrize("record", RECORDS, ids=lambda r: type(r).__name__)
def test_every_record_round_trips_with_its_stamp(record: wp.Record) -> None:
    assert wp.decode(wp.encode(record, 41)) == (41, record)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ([], "at least tag and stamp"),
        ([99, 1], "unknown worker record tag 99"),
        ([wp.Tag.DELIVER, 1, 2, 3], "wrong field count"),
        ([wp.Tag.DELIVER, -1, 4, 1, [2, 3, b""]], "stamp -1"),
        ([wp.Tag.DELIVER, 1, 2**32, 1, [2, 3, b""]], "sender 4294967296"),
        ([wp.Tag.DELIVER, 1, 4, 1, [70000, 3, b""]], "service or function is not a u16"),
        ([wp.Tag.DELIVER, 1, 4, 1, [2, -3, b""]], "service or function is not a u16"),
        ([wp.Tag.DELIVER, 1, 4, 9, [2, 3, b""]], "bad guarantee 9"),
        ([wp.Tag.DELIVER, 1, 4, 1, [2, 3, "text"]], "payload is not bytes"),
        ([wp.Tag.DELIVER, 1, 4, 1, [2, 3]], "flat array of (service, function, payload)"),
        ([wp.Tag.DELIVER, 1, 4, 1, b"flat"], "flat array of (service, function, payload)"),
        ([wp.Tag.CONFCHG, 1, 9, [], [], [], [1, 1]], "bad configuration kind"),
        ([wp.Tag.CONFCHG, 1, 1, [1, "x"], [], [], [1, 1]], "members"),
        ([wp.Tag.CONFCHG, 1, 1, [], [], [], [1]], "a ring id is [seq, rep]"),
        ([wp.Tag.SYNC_STEP, 1, 2, -1, [1, 1], [], []], "service -1"),
        ([wp.Tag.MCAST, 1, 2, [2, 3, 1, b""]], "sync is not a boolean"),
        ([wp.Tag.MCAST, 1, True, [2, 3, 1]], "flat array of (service, function, guarantee"),
        ([wp.Tag.MCAST, 1, True, [2, 70000, 1, b""]], "service or function is not a u16"),
        ([wp.Tag.MCAST, 1, True, [2, 3, 9, b""]], "bad guarantee 9"),
        ([wp.Tag.MCAST, 1, True, [2, 3, True, b""]], "bad guarantee True"),
        ([wp.Tag.MCAST, 1, True, [2, 3, "1", b""]], "bad guarantee '1'"),
        ([wp.Tag.MCAST, 1, True, [2, 3, 1, "x"]], "payload is not bytes"),
        ([wp.Tag.CMAP_RESULT, 1, 4, 999], "bad error code 999"),
        ([wp.Tag.READY, 1, "0"], "hosted service ids"),
        ([wp.Tag.STATS, 1, [["stats.srp.x", -1]]], "stats.srp.x -1"),
        ([wp.Tag.STATS, 1, [[1, 2]]], "a stats figure is"),
    ],
)
def test_garbage_is_refused_with_a_reason(fields: list[object], message: str) -> None:
    with pytest.raises(wp.WorkerProtoError, match=re.escape(message)):
        wp.decode(msgpack.packb(fields))


def test_bytes_that_are_not_msgpack_are_refused() -> None:
    with pytest.raises(wp.WorkerProtoError, match="undecodable"):
        wp.decode(b"\xc1\xff\x00")
    with pytest.raises(wp.WorkerProtoError, match="array"):
        wp.decode(msgpack.packb({"tag": 1}))


def test_stamp_order_releases_records_in_stamp_sequence_across_a_gap() -> None:
    order = wp.StampOrder()
    first, second, third = RECORDS[1], RECORDS[2], RECORDS[3]
    assert order.push(1, first) == [first]
    assert order.push(3, third) == []  # stamp 2 is still unread in the other lane
    assert order.held == 1
    assert order.push(2, second) == [second, third]
    assert order.held == 0


def test_stamp_order_refuses_a_repeated_stamp() -> None:
    order = wp.StampOrder()
    order.push(1, RECORDS[0])
    with pytest.raises(wp.WorkerProtoError, match="repeated"):
        order.push(1, RECORDS[0])
    order.push(3, RECORDS[0])
    with pytest.raises(wp.WorkerProtoError, match="repeated"):
        order.push(3, RECORDS[0])


@settings(derandomize=True, deadline=None, max_examples=200)
@given(st.permutations(list(range(1, 40))), st.integers(0, 39))
def test_any_interleaving_of_two_lanes_comes_out_in_stamp_order(
    stamps: list[int], split: int
) -> None:
    # Two lanes, each in stamp order; the reader takes them in any interleaving.
    lane_a = sorted(stamps[:split])
    lane_b = sorted(stamps[split:])
    order = wp.StampOrder()
    out: list[wp.Record] = []
    while lane_a or lane_b:
        lane = lane_a if lane_a and (not lane_b or (lane_a[0] + lane_b[0]) % 2) else lane_b
        stamp = lane.pop(0)
        out.extend(order.push(stamp, _numbered(stamp)))
    assert len(out) == 39
    assert order.held == 0
    assert out == [_numbered(stamp) for stamp in range(1, 40)]


def _numbered(stamp: int) -> wp.Record:
    return wp.Deliver(stamp, Guarantee.AGREED, ((0, 0, b""),))
