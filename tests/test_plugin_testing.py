"""The engine test harness: FakeExecutive and FakeCluster behave as documented."""

from __future__ import annotations

import pytest

from pycorosync.exec.totem.events import Guarantee, RingId
from pycorosync.lib.cmap_types import ValueType
from pycorosync.lib.errors import CsErrorCode, NotExistError
from pycorosync.plugins.engine import SendStatus, TimerHandle
from pycorosync.plugins.errors import InvalidEngineError
from pycorosync.plugins.testing import FakeCluster, FakeExecutive, Multicast, Reply
from tests._engines import ValidEngine, make_engine

# FakeExecutive -----------------------------------------------------------------------------


def test_timers_fire_in_deadline_order_on_the_virtual_clock() -> None:
    api = FakeExecutive(1)
    fired: list[tuple[str, float]] = []
    api.timer_add(30, lambda: fired.append(("late", api.now_ms)))
    api.timer_add(10, lambda: fired.append(("early", api.now_ms)))
    cancelled = api.timer_add(20, lambda: fired.append(("cancelled", api.now_ms)))
    api.timer_delete(cancelled)
    api.advance(15)
    assert fired == [("early", 10)]
    api.advance(100)
    assert fired == [("early", 10), ("late", 30)]
    assert api.now_ms == 115


def test_deleting_a_fired_or_unknown_timer_is_ignored() -> None:
    api = FakeExecutive(1)
    fired: list[int] = []
    handle = api.timer_add(1, lambda: fired.append(1))
    api.advance(1)
    api.timer_delete(handle)
    api.timer_delete(TimerHandle(999))
    again = api.timer_add(1, lambda: fired.append(2))
    api.advance(1)
    assert fired == [1, 2]
    assert again != handle


def test_a_timer_may_arm_another_that_fires_in_the_same_advance() -> None:
    api = FakeExecutive(1)
    fired: list[float] = []
    api.timer_add(5, lambda: api.timer_add(5, lambda: fired.append(api.now_ms)))
    api.advance(20)
    assert fired == [10]


def test_time_never_goes_back() -> None:
    api = FakeExecutive(1)
    with pytest.raises(ValueError, match="time cannot go back"):
        api.advance(-1)
    with pytest.raises(ValueError, match="must not be negative"):
        api.timer_add(-5, lambda: None)


def test_cmap_reads_what_was_written() -> None:
    api = FakeExecutive(1)
    with pytest.raises(NotExistError):
        api.cmap_get("echo.greeting")
    assert api.cmap_set("echo.greeting", "hello", ValueType.STRING) is SendStatus.QUEUED
    with pytest.raises(NotExistError):  # not yet: the write is on its way to the owner
        api.cmap_get("echo.greeting")
    assert api.apply_cmap_writes() == 1
    assert api.cmap_get("echo.greeting") == "hello"
    assert api.cmap["echo.greeting"] == (ValueType.STRING, "hello")


def test_would_block_refuses_multicasts_and_cmap_writes() -> None:
    api = FakeExecutive(4)
    api.would_block = True
    assert api.mcast(0, b"x") is SendStatus.WOULD_BLOCK
    assert api.cmap_set("a.b", 1, ValueType.UINT8) is SendStatus.WOULD_BLOCK
    assert api.outbox == []
    assert api.cmap == {}
    api.would_block = False
    assert api.mcast(2, b"y", Guarantee.SAFE) is SendStatus.QUEUED
    assert api.outbox == [
        Multicast(sender=4, function_id=2, payload=b"y", guarantee=Guarantee.SAFE)
    ]


def test_send_status_maps_onto_cs_error_codes() -> None:
    assert SendStatus.QUEUED.cs_error is CsErrorCode.CS_OK
    assert SendStatus.WOULD_BLOCK.cs_error is CsErrorCode.CS_ERR_TRY_AGAIN


# FakeCluster -------------------------------------------------------------------------------


def _calls(cluster: FakeCluster[ValidEngine], nodeid: int) -> list[str]:
    return cluster.engines[nodeid].calls


def test_each_node_gets_exec_init_first() -> None:
    cluster = FakeCluster(ValidEngine, [2, 1])
    assert sorted(cluster.engines) == [1, 2]
    assert _calls(cluster, 1) == ["exec_init"]


def test_a_membership_runs_confchg_then_a_sync_round() -> None:
    cluster = FakeCluster(ValidEngine, [1, 2, 3])
    ring = cluster.change_membership([1, 2])
    assert ring == RingId(seq=1, rep=1)
    assert _calls(cluster, 1)[1:] == [
        "confchg TRANSITIONAL (1,) -() +() 1.1",
        "confchg REGULAR (1, 2) -() +(2,) 1.1",
        "sync_init (1,) (1, 2) 1.1",
        "sync_process",
        "sync_activate",
    ]
    assert _calls(cluster, 3) == ["exec_init"]
    cluster.change_membership([2, 3])
    assert _calls(cluster, 2)[-5:-3] == [
        "confchg TRANSITIONAL (2,) -(1,) +() 2.2",
        "confchg REGULAR (2, 3) -() +(3,) 2.2",
    ]
    assert "sync_init (2,) (2, 3) 2.2" in _calls(cluster, 2)
    assert "sync_init (3,) (2, 3) 2.2" in _calls(cluster, 3)


def test_multicasts_reach_every_member_in_one_order() -> None:
    cluster = FakeCluster(ValidEngine, [1, 2, 3])
    cluster.change_membership([1, 2])
    cluster.executives[2].mcast(0, b"first")
    cluster.executives[1].mcast(0, b"second")
    cluster.executives[3].mcast(0, b"outsider")
    assert cluster.deliver() == 2
    expected = ["note from 2 b'first'", "note from 1 b'second'"]
    assert _calls(cluster, 1)[-2:] == expected
    assert _calls(cluster, 2)[-2:] == expected
    assert _calls(cluster, 3) == ["exec_init"]


def test_a_multicast_without_an_exec_handler_is_reported() -> None:
    cluster = FakeCluster(ValidEngine, [1])
    cluster.change_membership([1])
    cluster.executives[1].mcast(9, b"")
    with pytest.raises(LookupError, match="no exec handler 9"):
        cluster.deliver()


def test_requests_pass_the_executive_admission_check() -> None:
    cluster = FakeCluster(make_engine("strict", allow_inquorate=False), [1])
    cluster.change_membership([1])
    api = cluster.executives[1]
    conn = cluster.connect(1, pid=42)
    cluster.request(1, conn, 0, b"ok")
    cluster.request(1, conn, 7, b"unknown id")
    api.would_block = True
    cluster.request(1, conn, 0, b"flow controlled")
    cluster.request(1, conn, 1, b"not flow controlled")
    api.would_block = False
    api.quorate = False
    cluster.request(1, conn, 1, b"inquorate")
    cluster.disconnect(1, conn)
    assert [call for call in _calls(cluster, 1) if not call.startswith(("confchg", "sync"))] == [
        "exec_init",
        f"lib_init {conn.conn_id}",
        f"ping {conn.conn_id} b'ok'",
        f"ping {conn.conn_id} b'not flow controlled'",
        f"lib_exit {conn.conn_id}",
    ]
    assert api.replies == [
        Reply(conn=conn, message_id=0, payload=b"", error=CsErrorCode.CS_ERR_INVALID_PARAM),
        Reply(conn=conn, message_id=0, payload=b"", error=CsErrorCode.CS_ERR_TRY_AGAIN),
        Reply(conn=conn, message_id=0, payload=b"", error=CsErrorCode.CS_ERR_TRY_AGAIN),
    ]


def test_connections_get_distinct_ids() -> None:
    cluster = FakeCluster(ValidEngine, [1, 2])
    first, second = cluster.connect(1), cluster.connect(2, uid=5, gid=6)
    assert first.conn_id != second.conn_id
    assert (second.uid, second.gid) == (5, 6)


class _NeverDone(ValidEngine):
    def sync_process(self) -> bool:
        self.calls.append("sync_process")
        return False


def test_a_sync_that_never_finishes_is_aborted_and_reported() -> None:
    cluster = FakeCluster(_NeverDone, [1])
    with pytest.raises(RuntimeError, match=r"did not finish on nodes \[1\]"):
        cluster.change_membership([1])
    assert _calls(cluster, 1)[-1] == "sync_abort"
    assert "sync_activate" not in _calls(cluster, 1)


def test_the_cluster_refuses_bad_input() -> None:
    with pytest.raises(InvalidEngineError):
        FakeCluster(make_engine("bad", version=-1), [1])
    with pytest.raises(ValueError, match="at least one node"):
        FakeCluster(ValidEngine, [])
    cluster = FakeCluster(ValidEngine, [1])
    with pytest.raises(ValueError, match="members must be known nodes"):
        cluster.change_membership([1, 5])
    with pytest.raises(ValueError, match="members must be known nodes"):
        cluster.change_membership([])
