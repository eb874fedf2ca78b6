"""The cmap engine and its executive API: asynchronous writes, admission, hostile requests."""

from __future__ import annotations

from importlib.metadata import entry_points

import msgpack
import pytest

from pycorosync.exec.cmap_owner import CmapAdjust, CmapDelete, CmapSet
from pycorosync.lib import cmap_wire as wire
from pycorosync.lib.cmap_types import CmapEntry, TrackEvent, TrackFlags, ValueType
from pycorosync.lib.errors import BadHandleError, CsErrorCode, InvalidParamError, NameTooLongError
from pycorosync.plugins.engine import FlowControl, SendStatus
from pycorosync.plugins.registry import ServiceRegistry
from pycorosync.plugins.sources import installed_sources
from pycorosync.plugins.testing import FakeCluster, FakeExecutive, Reply
from pycorosync.services.cmap import CmapEngine
from pycorosync.tools import cmapctl
from tests._cmap_bench import NODE, CmapBench

Req = wire.CmapRequestId


# The executive API ------------------------------------------------------------------------


def test_cmap_write_reports_once_after_the_owner_applied_it() -> None:
    api = FakeExecutive(1)
    outcomes: list[tuple[CsErrorCode, bool]] = []

    def done(code: CsErrorCode) -> None:
        outcomes.append((code, "w.key" in api.store))

    assert api.cmap_write(CmapSet("w.key", 5, ValueType.UINT8), done) is SendStatus.QUEUED
    assert api.cmap_write(CmapAdjust("w.key", 1), done) is SendStatus.QUEUED
    assert api.cmap_write(CmapDelete("totem.cluster_name"), done) is SendStatus.QUEUED
    assert outcomes == []
    assert api.apply_cmap_writes() == 3
    assert outcomes == [
        (CsErrorCode.CS_OK, True),
        (CsErrorCode.CS_OK, True),
        (CsErrorCode.CS_ERR_ACCESS, True),
    ]
    assert api.cmap_get("w.key") == 6
    assert api.apply_cmap_writes() == 0


def test_a_blocked_write_sends_nothing_and_never_reports() -> None:
    api = FakeExecutive(1)
    api.would_block = True
    outcomes: list[CsErrorCode] = []
    assert api.cmap_write(CmapSet("w.key", 1, ValueType.UINT8), outcomes.append) is (
        SendStatus.WOULD_BLOCK
    )
    api.would_block = False
    assert api.apply_cmap_writes() == 0
    assert outcomes == []


def test_cmap_set_checks_the_value_and_new_names_at_once() -> None:
    api = FakeExecutive(1)
    with pytest.raises(InvalidParamError):
        api.cmap_set("w.key", 300, ValueType.UINT8)
    with pytest.raises(NameTooLongError):
        api.cmap_set("no", 1, ValueType.UINT8)
    assert api.pending_cmap_writes == []


def test_iteration_is_sorted_with_types_and_tracking_sees_old_and_new() -> None:
    api = FakeExecutive(1)
    for key in ("p.b", "p.a", "q.a"):
        api.store.set(key, key, ValueType.STRING)
    assert [(k, e.vtype) for k, e in api.cmap_iter("p.")] == [
        ("p.a", ValueType.STRING),
        ("p.b", ValueType.STRING),
    ]
    assert api.cmap_get_entry("q.a") == CmapEntry(ValueType.STRING, "q.a")
    seen: list[tuple[TrackEvent, str, CmapEntry | None, CmapEntry | None]] = []
    handle = api.cmap_track_add(
        "p.", TrackFlags.PREFIX | TrackFlags.MODIFY, lambda *e: seen.append(e)
    )
    api.cmap_write(CmapSet("p.a", "new", ValueType.STRING), lambda _c: None)
    api.cmap_write(CmapSet("p.c", "added", ValueType.STRING), lambda _c: None)
    api.apply_cmap_writes()
    assert seen == [
        (
            TrackEvent.MODIFY,
            "p.a",
            CmapEntry(ValueType.STRING, "new"),
            CmapEntry(ValueType.STRING, "p.a"),
        )
    ]
    api.cmap_track_delete(handle)
    with pytest.raises(BadHandleError):
        api.cmap_track_delete(handle)
    with pytest.raises(InvalidParamError):
        api.cmap_track_add("p.", 64, lambda *e: None)


# The engine -------------------------------------------------------------------------------


def _request(bench: CmapBench, conn_id: int, request: Req, body: bytes) -> list[Reply]:
    conn = next(t.conn for t in bench.transports if t.conn.conn_id == conn_id)
    before = len(bench.executive.replies)
    bench.cluster.request(NODE, conn, request, body)
    return bench.executive.replies[before:]


def test_a_write_is_answered_only_when_the_owner_answers() -> None:
    bench = CmapBench()
    conn = bench.connect().conn
    body = wire.encode_set(wire.SetRequest("w.key", ValueType.UINT8, 1))
    assert _request(bench, conn.conn_id, Req.SET, body) == []
    bench.executive.apply_cmap_writes()
    assert bench.executive.replies[-1] == Reply(
        conn=conn, message_id=wire.CmapResponseId.SET, payload=b"", error=CsErrorCode.CS_OK
    )


def test_a_full_ring_answers_try_again_and_reads_still_work() -> None:
    bench = CmapBench()
    conn = bench.connect().conn
    bench.store.set("r.key", 1, ValueType.UINT8)
    bench.executive.would_block = True
    body = wire.encode_set(wire.SetRequest("w.key", ValueType.UINT8, 1))
    (reply,) = _request(bench, conn.conn_id, Req.SET, body)
    assert reply.error is CsErrorCode.CS_ERR_TRY_AGAIN
    (reply,) = _request(bench, conn.conn_id, Req.GET, wire.encode_key("r.key"))
    assert reply.error is CsErrorCode.CS_OK
    assert bench.executive.pending_cmap_writes == []


@pytest.mark.parametrize("request_id", list(Req))
@pytest.mark.parametrize("body", [b"", b"\xc1", msgpack.packb([None, None, None, None])])
def test_malformed_bodies_get_a_message_error(request_id: Req, body: bytes) -> None:
    bench = CmapBench()
    conn = bench.connect().conn
    (reply,) = _request(bench, conn.conn_id, request_id, body)
    assert reply.error is CsErrorCode.CS_ERR_MESSAGE_ERROR
    assert reply.payload == b""
    assert bench.executive.pending_cmap_writes == []


def test_unknown_value_type_in_a_set_is_invalid_param() -> None:
    bench = CmapBench()
    conn = bench.connect().conn
    body = wire.encode_set(wire.SetRequest("w.key", 13, 1))
    (reply,) = _request(bench, conn.conn_id, Req.SET, body)
    assert reply.error is CsErrorCode.CS_ERR_INVALID_PARAM


def test_writes_need_flow_control_and_reads_do_not() -> None:
    writes = {Req.SET, Req.DELETE, Req.ADJUST_INT}
    for request_id, entry in CmapEngine.lib_handlers.items():
        expected = FlowControl.REQUIRED if request_id in writes else FlowControl.NOT_REQUIRED
        assert entry.flow_control is expected, request_id


def test_the_engine_is_a_declared_builtin_with_corosyncs_identity() -> None:
    (source,) = [s for s in installed_sources() if s.name == "cmap"]
    assert source.builtin
    registry = ServiceRegistry.load(names=["cmap"], environ={})
    assert [(e.name, e.service_id) for e in registry.load_order()] == [("cmap", 0)]
    assert registry.engines[0].engine is CmapEngine


def test_corosync_cmapctl_is_a_console_script() -> None:
    (script,) = entry_points(group="console_scripts", name="corosync-cmapctl")
    assert script.load() is cmapctl.main


def test_a_cluster_applies_each_nodes_writes_to_its_own_cmap() -> None:
    cluster = FakeCluster(CmapEngine, [1, 2])
    cluster.change_membership([1, 2])
    outcomes: list[CsErrorCode] = []
    cluster.executives[1].cmap_write(CmapSet("n.one", 1, ValueType.UINT8), outcomes.append)
    cluster.executives[2].cmap_write(CmapDelete("n.none"), outcomes.append)
    assert cluster.apply_cmap_writes() == 2
    assert outcomes == [CsErrorCode.CS_OK, CsErrorCode.CS_ERR_NOT_EXIST]
    assert "n.one" in cluster.executives[1].store
    assert "n.one" not in cluster.executives[2].store
