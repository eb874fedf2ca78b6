"""lib/cpg against the real CPG engine, in process: callbacks, dispatch modes, error paths."""

from __future__ import annotations

import asyncio
import os

import pytest

from pycorosync.lib import cpg_wire as wire
from pycorosync.lib.cpg import (
    MAX_ATOMIC_MSG_SIZE,
    DispatchFlag,
    initialize,
    model_initialize,
)
from pycorosync.lib.cpg_async import AsyncCpgHandle
from pycorosync.lib.cpg_wire import (
    ConfChgBody,
    CpgAddress,
    CpgReason,
    CpgRingId,
    DeliverBody,
    FlowControlState,
    IterationDescription,
    IterationType,
)
from pycorosync.lib.errors import (
    BadHandleError,
    ExistError,
    InvalidParamError,
    NameTooLongError,
    NoSectionsError,
    NotExistError,
    QueueFullError,
    TryAgainError,
)
from tests._cpg_bench import AsyncEngineTransport, CpgNodes, EngineTransport, Recorder, lib_handle

PID = os.getpid()


@pytest.fixture
def nodes() -> CpgNodes:
    return CpgNodes([1, 2])


def test_join_mcast_and_callbacks_through_the_library(nodes: CpgNodes) -> None:
    handle, seen, _ = lib_handle(nodes, 1, PID)
    handle.join("grp")
    handle.mcast_joined(wire.CpgGuarantee.AGREED, [b"hel", b"lo"])
    handle.dispatch(DispatchFlag.ALL)
    me = CpgAddress(1, PID)
    assert seen.events == [
        ("confchg", b"grp", [me], [], [CpgAddress(1, PID, CpgReason.JOIN)]),
        ("deliver", b"grp", 1, PID, b"hello"),
    ]
    assert handle.membership_get(b"grp") == [me]
    assert handle.local_get() == 1
    assert handle.max_atomic_msgsize_get() == MAX_ATOMIC_MSG_SIZE == 1_047_552


def test_dispatch_one_runs_exactly_one_callback(nodes: CpgNodes) -> None:
    handle, seen, _ = lib_handle(nodes, 1, PID)
    handle.join(b"g")
    handle.mcast_joined(2, b"a")
    handle.dispatch(DispatchFlag.ONE)
    assert [e[0] for e in seen.events] == ["confchg"]
    handle.dispatch(DispatchFlag.ONE_NONBLOCKING)
    assert [e[0] for e in seen.events] == ["confchg", "deliver"]
    with pytest.raises(TryAgainError):
        handle.dispatch(DispatchFlag.ONE_NONBLOCKING)
    with pytest.raises(InvalidParamError):
        handle.dispatch(99)


def test_model_v1_totem_confchg_callbacks(nodes: CpgNodes) -> None:
    handle, seen, _ = lib_handle(nodes, 2, PID, flags=wire.MODEL_V1_DELIVER_INITIAL_TOTEM_CONF)
    handle.join(b"g")
    handle.dispatch()
    ring = nodes.cluster.ring_id
    assert seen.events[1] == ("totem", CpgRingId(ring.rep, ring.seq), [1, 2])
    nodes.cluster.change_membership([2])
    handle.dispatch()
    assert seen.events[-1] == ("totem", CpgRingId(2, ring.seq + 1), [2])


def test_error_paths_use_corosyncs_codes(nodes: CpgNodes) -> None:
    handle, _, _ = lib_handle(nodes, 1, PID)
    with pytest.raises(NotExistError):
        handle.mcast_joined(2, b"not joined yet")
    with pytest.raises(NotExistError):
        handle.leave(b"g")
    with pytest.raises(NameTooLongError):
        handle.join(b"n" * 129)
    handle.join(b"n" * 128)
    with pytest.raises(ExistError):
        handle.join(b"other")
    with pytest.raises(InvalidParamError):
        handle.mcast_joined(9, b"x")
    with pytest.raises(InvalidParamError):
        handle.iteration_initialize(IterationType.ONE_GROUP)
    with pytest.raises(InvalidParamError):
        handle.iteration_initialize(IterationType.ALL, b"g")
    with pytest.raises(InvalidParamError):
        model_initialize(2, Recorder().deliver, Recorder().confchg)
    with pytest.raises(InvalidParamError):
        model_initialize(1, Recorder().deliver, Recorder().confchg, flags=2)


def test_leave_then_mcast_is_not_exist_and_join_again_works(nodes: CpgNodes) -> None:
    handle, seen, _ = lib_handle(nodes, 1, PID)
    handle.join(b"g")
    handle.leave(b"g")
    with pytest.raises(NotExistError):
        handle.mcast_joined(2, b"x")
    handle.join(b"g")
    handle.dispatch()
    assert [e[4] for e in seen.events] == [
        [CpgAddress(1, PID, CpgReason.JOIN)],
        [],
        [CpgAddress(1, PID, CpgReason.JOIN)],
    ]


def test_finalize_then_every_call_is_bad_handle_and_peers_see_procdown(nodes: CpgNodes) -> None:
    peer, peer_seen, _ = lib_handle(nodes, 2, PID + 1)
    handle, _, transport = lib_handle(nodes, 1, PID)
    nodes.join(2, peer._transport.conn, b"g")  # type: ignore[union-attr]  # another pid
    handle.join(b"g")
    iteration = handle.iteration_initialize(IterationType.ALL)
    handle.finalize()
    assert transport.closed
    for call in (
        handle.finalize,
        handle.fd_get,
        handle.local_get,
        handle.dispatch,
        lambda: handle.join(b"g"),
        lambda: handle.mcast_joined(2, b"x"),
        handle.context_get,
        handle.flow_control_state_get,
        iteration.next,
    ):
        with pytest.raises(BadHandleError):
            call()
    del peer_seen.events[:]
    peer.dispatch()
    assert peer_seen.events[-1] == (
        "confchg",
        b"g",
        [CpgAddress(2, PID + 1)],
        [CpgAddress(1, PID, CpgReason.PROCDOWN)],
        [],
    )


def test_iteration_and_context(nodes: CpgNodes) -> None:
    handle, _, _ = lib_handle(nodes, 1, PID)
    handle.join(b"b")
    nodes.join(2, nodes.connect(2, pid=5), b"a")
    assert list(handle.iterate(IterationType.NAME_ONLY)) == [
        IterationDescription(b"a", 0, 0),
        IterationDescription(b"b", 0, 0),
    ]
    iteration = handle.iteration_initialize(IterationType.ONE_GROUP, b"a")
    assert iteration.next() == IterationDescription(b"a", 2, 5)
    with pytest.raises(NoSectionsError):
        iteration.next()
    iteration.finalize()
    handle.context_set({"mine": 1})
    assert handle.context_get() == {"mine": 1}


def test_flow_control_state_makes_mcast_try_again_without_sending(nodes: CpgNodes) -> None:
    handle, seen, transport = lib_handle(nodes, 1, PID)
    handle.join(b"g")
    nodes.cluster.executives[1].would_block = True
    handle.mcast_joined(2, b"held")  # sent before the client knew: held by the engine
    handle.dispatch()
    assert handle.flow_control_state_get() is FlowControlState.ENABLED
    sent = len(transport.sent)
    with pytest.raises(TryAgainError):
        handle.mcast_joined(2, b"refused")
    assert len(transport.sent) == sent
    nodes.cluster.executives[1].would_block = False
    nodes.cluster.executives[1].advance(1.0)
    nodes.cluster.deliver()
    handle.dispatch()
    assert handle.flow_control_state_get() is FlowControlState.DISABLED
    assert seen.events[-1] == ("deliver", b"g", 1, PID, b"held")


def test_a_client_that_ignores_flow_control_is_told_what_was_dropped(
    nodes: CpgNodes, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(nodes.engine(1)._outbox, "per_conn_max", 2)
    handle, _, transport = lib_handle(nodes, 1, PID)
    handle.join(b"g")
    nodes.cluster.executives[1].would_block = True
    for i in range(5):  # written straight to the socket, as a client ignoring the state would
        transport.send(wire.CpgRequestId.MCAST, wire.encode_mcast(2, b"%d" % i))
    handle.dispatch()
    nodes.cluster.executives[1].would_block = False
    nodes.cluster.executives[1].advance(1.0)
    nodes.cluster.deliver()
    handle.dispatch()
    with pytest.raises(QueueFullError, match="dropped 3"):
        handle.mcast_joined(2, b"next")
    handle.mcast_joined(2, b"reported once")


def test_initialize_is_model_v1_without_totem_callbacks(nodes: CpgNodes) -> None:
    seen = Recorder()
    handle = initialize(seen.deliver, seen.confchg, transport=EngineTransport(nodes, 1, PID))
    handle.join(b"g")
    nodes.cluster.change_membership([1, 2])
    handle.dispatch()
    assert [e[0] for e in seen.events] == ["confchg"]


def test_the_asyncio_api_yields_events_in_order(nodes: CpgNodes) -> None:
    async def scenario() -> list[object]:
        handle = AsyncCpgHandle(AsyncEngineTransport(EngineTransport(nodes, 2, PID)))
        await handle.join(b"g")
        handle.mcast_joined(2, b"async")
        events = [await anext(handle), await anext(handle)]
        assert await handle.local_get() == 2
        assert await handle.membership_get(b"g") == [CpgAddress(2, PID)]
        await handle.finalize()
        with pytest.raises(BadHandleError):
            await handle.local_get()
        return events

    events = asyncio.run(scenario())
    assert events == [
        ConfChgBody(b"g", (CpgAddress(2, PID),), (), (CpgAddress(2, PID, CpgReason.JOIN),)),
        DeliverBody(b"g", 2, PID, b"async"),
    ]


def test_the_asyncio_api_yields_each_message_of_a_deliver_in_turn(nodes: CpgNodes) -> None:
    change = ConfChgBody(b"g", (CpgAddress(1, 5),), (), ())
    notes = [
        (wire.DELIVER_CALLBACK_ID, wire.encode_deliveries(b"g", [1, 5, b"a", 2, 6, b"b"])),
        (wire.CpgResponseId.CONFCHG_CALLBACK, wire.encode_confchg(change)),
    ]

    async def scenario() -> list[object]:
        transport = AsyncEngineTransport(EngineTransport(nodes, 2, PID))
        transport.pending += notes
        handle = AsyncCpgHandle(transport)
        return [await anext(handle) for _ in range(3)]

    assert asyncio.run(scenario()) == [
        DeliverBody(b"g", 1, 5, b"a"),
        DeliverBody(b"g", 2, 6, b"b"),
        change,
    ]
