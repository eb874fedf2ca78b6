"""The CPG engine through FakeCluster: the per-connection state machine, agreed-order delivery,
confchgs with Corosync's reasons, membership changes and the merge after a partition heals."""

from __future__ import annotations

import pytest

from pycorosync.exec.totem.events import ConfigKind, RingId
from pycorosync.lib import cpg_wire as wire
from pycorosync.lib.cpg_wire import (
    ConfChgBody,
    CpgAddress,
    CpgExecId,
    CpgReason,
    CpgRequestId,
    CpgResponseId,
    CpgRingId,
    DeliverBody,
    FlowControlState,
    IterationDescription,
    IterationType,
    TotemConfChgBody,
)
from pycorosync.lib.errors import (
    BadHandleError,
    BusyError,
    ExistError,
    InvalidParamError,
    MessageError,
    NameTooLongError,
    NoSectionsError,
    NotExistError,
    TryAgainError,
)
from pycorosync.lib.ipc_wire import DEFAULT_MAX_BODY
from pycorosync.plugins.engine import ClientConnection
from pycorosync.plugins.testing import FakeExecutive, Multicast
from pycorosync.services.cpg import CpgEngine
from pycorosync.services.cpg.engine import JoinState
from tests._cpg_bench import CpgNodes, addresses

G = b"GROUP\x00"
JOIN, LEAVE, NODEDOWN, NODEUP, PROCDOWN = 1, 2, 3, 4, 5


@pytest.fixture
def nodes() -> CpgNodes:
    return CpgNodes([1, 2, 3])


def confchgs(nodes: CpgNodes, node: int, conn: object) -> list[ConfChgBody]:
    return [e for e in nodes.events(node, conn) if isinstance(e, ConfChgBody)]  # type: ignore[arg-type]


def test_a_joiner_gets_its_own_join_and_so_does_every_member(nodes: CpgNodes) -> None:
    a = nodes.connect(1, pid=100)
    b = nodes.connect(2, pid=200)
    nodes.join(1, a, G)
    assert nodes.engine(1).join_state(a) is JoinState.JOIN_COMPLETED
    assert nodes.events(1, a) == [
        ConfChgBody(G, addresses((1, 100, 0)), (), addresses((1, 100, JOIN)))
    ]
    nodes.join(2, b, G)
    expected = ConfChgBody(G, addresses((1, 100, 0), (2, 200, 0)), (), addresses((2, 200, JOIN)))
    assert nodes.events(1, a) == [expected]
    assert nodes.events(2, b) == [expected]


def test_mcast_is_one_way_and_delivered_in_one_order_everywhere(nodes: CpgNodes) -> None:
    conns = {n: nodes.connect(n, pid=10 * n) for n in (1, 2, 3)}
    for n, conn in conns.items():
        nodes.join(n, conn, G)
    for n, conn in conns.items():
        nodes.events(n, conn)
    # Queue sends from every node before the ring delivers any of them.
    for i in range(5):
        for n, conn in conns.items():
            nodes.cluster.request(
                n, conn, CpgRequestId.MCAST, wire.encode_mcast(2, b"%d-%d" % (n, i))
            )
    nodes.cluster.deliver()
    streams = [nodes.deliveries(n, conn) for n, conn in conns.items()]
    assert streams[0] == streams[1] == streams[2]
    assert len(streams[0]) == 15
    assert (1, 10, b"1-0") in streams[0]  # the sender receives its own message
    assert all(r.conn not in conns.values() for r in nodes.cluster.executives[1].replies[3:])


def test_several_processes_of_one_node_in_one_group_are_sorted(nodes: CpgNodes) -> None:
    for pid in (300, 100, 200):
        nodes.join(2, nodes.connect(2, pid=pid), G)
    nodes.join(1, nodes.connect(1, pid=999), G)
    watcher = nodes.connect(3, pid=1)
    members = nodes.request(3, watcher, CpgRequestId.MEMBERSHIP, wire.encode_group(G))
    assert wire.decode_members(members) == [
        CpgAddress(1, 999),
        CpgAddress(2, 100),
        CpgAddress(2, 200),
        CpgAddress(2, 300),
    ]


def test_leave_is_seen_by_the_leaver_and_the_handle_can_join_again(nodes: CpgNodes) -> None:
    a = nodes.connect(1, pid=100)
    b = nodes.connect(2, pid=200)
    nodes.join(1, a, G)
    nodes.join(2, b, G)
    nodes.events(1, a)
    nodes.events(2, b)
    nodes.leave(1, a, G)
    left = ConfChgBody(G, addresses((2, 200, 0)), addresses((1, 100, LEAVE)), ())
    assert nodes.events(1, a) == [left]
    assert nodes.events(2, b) == [left]
    assert nodes.engine(1).join_state(a) is JoinState.UNJOINED
    with pytest.raises(NotExistError):
        nodes.leave(1, a, G)
    nodes.join(1, a, b"other")  # Corosync 3.x answers BUSY here forever
    assert nodes.engine(1).join_state(a) is JoinState.JOIN_COMPLETED


def test_join_and_leave_refusals_follow_corosync(nodes: CpgNodes) -> None:
    a = nodes.connect(1, pid=100)
    twin = nodes.connect(1, pid=100)
    with pytest.raises(NotExistError):
        nodes.leave(1, a, G)
    nodes.join(1, a, G)
    with pytest.raises(ExistError):
        nodes.join(1, a, b"another")  # one group per handle
    with pytest.raises(ExistError):
        nodes.join(1, twin, G)  # the same pid and group from another handle
    with pytest.raises(NotExistError):
        nodes.leave(1, a, b"another")
    with pytest.raises(NameTooLongError):
        nodes.join(1, twin, b"x" * 129)
    # A join not yet delivered: leave is BUSY.
    c = nodes.connect(1, pid=300)
    nodes.cluster.request(1, c, CpgRequestId.JOIN, wire.encode_join(G, 300, 0))
    nodes.cluster.request(1, c, CpgRequestId.LEAVE, wire.encode_leave(G, 300))
    replies = nodes.cluster.executives[1].replies[-2:]
    assert [r.error for r in replies] == [1, BusyError.code]
    nodes.cluster.deliver()
    # A leave not yet delivered: a join of the same handle is BUSY (another handle's is EXIST).
    nodes.cluster.request(1, c, CpgRequestId.LEAVE, wire.encode_leave(G, 300))
    nodes.cluster.request(1, c, CpgRequestId.JOIN, wire.encode_join(b"x", 300, 0))
    errors = [r.error for r in nodes.cluster.executives[1].replies[-2:]]
    assert errors == [1, BusyError.code]
    nodes.cluster.deliver()
    # The PROCDOWN of a closed handle not delivered yet: the same pid joining is TRY_AGAIN.
    d = nodes.connect(1, pid=400)
    nodes.join(1, d, G)
    nodes.cluster.disconnect(1, d)
    with pytest.raises(TryAgainError):
        nodes.join(1, nodes.connect(1, pid=400), G)


def test_a_disconnected_member_leaves_with_procdown(nodes: CpgNodes) -> None:
    a = nodes.connect(1, pid=100)
    local_peer = nodes.connect(1, pid=101)
    remote = nodes.connect(3, pid=300)
    for node, conn in ((1, a), (1, local_peer), (3, remote)):
        nodes.join(node, conn, G)
        nodes.events(1, local_peer)
        nodes.events(3, remote)
    nodes.cluster.disconnect(1, a)
    nodes.cluster.deliver()
    gone = ConfChgBody(G, addresses((1, 101, 0), (3, 300, 0)), addresses((1, 100, PROCDOWN)), ())
    assert nodes.events(1, local_peer) == [gone]
    assert nodes.events(3, remote) == [gone]


def test_mcast_from_a_handle_not_in_a_group_is_dropped_and_answered_nothing(
    nodes: CpgNodes,
) -> None:
    a = nodes.connect(1, pid=100)
    member = nodes.connect(2, pid=200)
    nodes.join(2, member, G)
    nodes.events(2, member)
    nodes.mcast(1, a, b"nobody hears this")
    nodes.send(1, a, CpgRequestId.MCAST, b"\xc1 not msgpack")
    assert nodes.events(2, member) == []


def test_a_sender_looping_outside_a_group_is_logged_once_per_connection(
    nodes: CpgNodes, caplog: pytest.LogCaptureFixture
) -> None:
    a = nodes.connect(1, pid=100)
    b = nodes.connect(1, pid=101)
    with caplog.at_level("WARNING"):
        for _ in range(50):
            nodes.mcast(1, a, b"x")
        nodes.mcast(1, b, b"y")
    refusals = [r for r in caplog.records if "can't mcast" in r.getMessage()]
    assert [r.getMessage().split()[2] for r in refusals] == ["100", "101"]


def test_a_node_that_goes_away_is_nodedown_and_totem_confchg_follows(nodes: CpgNodes) -> None:
    a = nodes.connect(1, pid=100)
    c = nodes.connect(3, pid=300)
    nodes.join(1, a, G)
    nodes.join(3, c, G)
    nodes.events(1, a)
    ring = nodes.cluster.change_membership([1, 2])
    assert nodes.events(1, a) == [
        ConfChgBody(G, addresses((1, 100, 0)), addresses((3, 300, NODEDOWN)), ()),
        TotemConfChgBody(CpgRingId(ring.rep, ring.seq), (1, 2)),
    ]


def test_a_healed_partition_merges_to_one_membership_everywhere(nodes: CpgNodes) -> None:
    a = nodes.connect(1, pid=100)
    c = nodes.connect(3, pid=300)
    nodes.join(1, a, G)
    nodes.join(3, c, G)
    nodes.cluster.change_membership([1, 2])  # node 3 is cut off and sees nothing
    b = nodes.connect(2, pid=200)
    nodes.join(2, b, G)
    for node, conn in ((1, a), (2, b), (3, c)):
        nodes.events(node, conn)
    nodes.cluster.change_membership([1, 2, 3])
    tables = {n: list(nodes.engine(n).table.entries()) for n in (1, 2, 3)}
    assert tables[1] == tables[2] == tables[3]
    assert tables[1] == [(G, (1, 100)), (G, (2, 200)), (G, (3, 300))]
    everyone = addresses((1, 100, 0), (2, 200, 0), (3, 300, 0))
    assert confchgs(nodes, 1, a) == [ConfChgBody(G, everyone, (), addresses((3, 300, NODEUP)))]
    # Node 3 never saw node 2's join and had node 1 as gone: NODEDOWN, then NODEUP for both.
    assert confchgs(nodes, 3, c) == [
        ConfChgBody(G, addresses((3, 300, 0)), addresses((1, 100, NODEDOWN)), ()),
        ConfChgBody(G, everyone, (), addresses((1, 100, NODEUP), (2, 200, NODEUP))),
    ]


def test_a_remote_process_no_joinlist_names_is_removed_as_procdown(nodes: CpgNodes) -> None:
    a = nodes.connect(1, pid=100)
    c = nodes.connect(3, pid=300)
    nodes.join(1, a, G)
    nodes.join(3, c, G)
    nodes.events(1, a)
    # Node 3 forgets its process without telling anyone (as if it left while we were apart).
    nodes.engine(3).table.remove(G, (3, 300))
    nodes.cluster.change_membership([1, 2, 3])
    assert confchgs(nodes, 1, a) == [
        ConfChgBody(G, addresses((1, 100, 0)), addresses((3, 300, PROCDOWN)), ())
    ]


def test_joinlists_of_another_ring_are_ignored(nodes: CpgNodes) -> None:
    stale = wire.encode_joinlist(wire.JoinList(999, ((G, 42),)))
    engine = nodes.engine(1)
    engine.exec_handlers[CpgExecId.JOINLIST].handler(engine, stale, 2)
    nodes.cluster.change_membership([1, 2, 3])
    assert (G, (2, 42)) not in engine.table


def test_model_v1_initial_totem_confchg_follows_the_first_confchg(nodes: CpgNodes) -> None:
    a = nodes.connect(1, pid=100)
    nodes.join(1, a, G, flags=wire.MODEL_V1_DELIVER_INITIAL_TOTEM_CONF)
    events = nodes.events(1, a)
    ring = nodes.cluster.ring_id
    assert events[1:] == [TotemConfChgBody(CpgRingId(ring.rep, ring.seq), (1, 2, 3))]
    nodes.join(2, nodes.connect(2, pid=200), G)
    assert [type(e) for e in nodes.events(1, a)] == [ConfChgBody]  # only once


def test_iteration_orders_and_types(nodes: CpgNodes) -> None:
    nodes.join(2, nodes.connect(2, pid=5), b"b")
    nodes.join(1, nodes.connect(1, pid=9), b"a")
    nodes.join(1, nodes.connect(1, pid=7), b"b")
    conn = nodes.connect(3, pid=1)

    def iterate(kind: int, group: bytes | None) -> list[IterationDescription]:
        body = wire.encode_iteration_init(kind, group)
        handle = wire.decode_handle(nodes.request(3, conn, CpgRequestId.ITERATION_INITIALIZE, body))
        found = []
        while True:
            try:
                reply = nodes.request(
                    3, conn, CpgRequestId.ITERATION_NEXT, wire.encode_handle(handle)
                )
            except NoSectionsError:
                break
            found.append(wire.decode_description(reply))
        nodes.request(3, conn, CpgRequestId.ITERATION_FINALIZE, wire.encode_handle(handle))
        with pytest.raises(BadHandleError):
            nodes.request(3, conn, CpgRequestId.ITERATION_NEXT, wire.encode_handle(handle))
        return found

    assert iterate(IterationType.ALL, None) == [
        IterationDescription(b"a", 1, 9),
        IterationDescription(b"b", 1, 7),
        IterationDescription(b"b", 2, 5),
    ]
    assert iterate(IterationType.NAME_ONLY, None) == [
        IterationDescription(b"a", 0, 0),
        IterationDescription(b"b", 0, 0),
    ]
    assert iterate(IterationType.ONE_GROUP, b"a") == [IterationDescription(b"a", 1, 9)]
    with pytest.raises(InvalidParamError):
        iterate(IterationType.ONE_GROUP, None)
    with pytest.raises(InvalidParamError):
        iterate(7, None)


def test_local_get_and_malformed_requests(nodes: CpgNodes) -> None:
    conn = nodes.connect(2, pid=1)
    assert (
        wire.decode_nodeid(nodes.request(2, conn, CpgRequestId.LOCAL_GET, wire.encode_empty())) == 2
    )
    with pytest.raises(MessageError):
        nodes.request(2, conn, CpgRequestId.JOIN, b"\x93\x01\x02")
    with pytest.raises(MessageError):
        nodes.request(2, conn, CpgRequestId.MEMBERSHIP, b"")


def test_malformed_peer_messages_are_dropped_and_change_nothing(nodes: CpgNodes) -> None:
    a = nodes.connect(1, pid=100)
    nodes.join(1, a, G)
    nodes.events(1, a)
    before = list(nodes.engine(1).table.entries())
    for function_id in CpgExecId:
        for junk in (b"", b"\xc1", wire.pack([G, "not a pid", 1]), wire.pack([b"x" * 200, 1, 1])):
            nodes.cluster.outbox.append(
                Multicast(sender=2, function_id=function_id, payload=junk, guarantee=0)  # type: ignore[arg-type]
            )
    nodes.cluster.deliver()
    assert list(nodes.engine(1).table.entries()) == before
    assert nodes.events(1, a) == []


def test_mcasts_during_sync_or_would_block_are_held_in_order_not_lost(nodes: CpgNodes) -> None:
    a = nodes.connect(1, pid=100)
    nodes.join(1, a, G)
    nodes.events(1, a)
    executive = nodes.cluster.executives[1]
    executive.would_block = True
    for i in range(3):
        nodes.mcast(1, a, b"m%d" % i)
    flow = [
        n for n in nodes.notifications(1, a) if n.message_id == CpgResponseId.FLOW_CONTROL_STATE_SET
    ]
    assert [wire.decode_flow_control(n.payload).state for n in flow] == [FlowControlState.ENABLED]
    assert nodes.engine(1).flow_control is FlowControlState.ENABLED
    executive.would_block = False
    nodes.mcast(1, a, b"m3")  # joins the queue behind the held ones, even with room now
    executive.advance(1.0)  # the engine's retry timer
    nodes.cluster.deliver()
    notes = nodes.notifications(1, a)
    delivered = [
        wire.decode_deliver(n.payload).message
        for n in notes
        if n.message_id == CpgResponseId.DELIVER_CALLBACK
    ]
    assert delivered == [b"m0", b"m1", b"m2", b"m3"]
    states = [
        wire.decode_flow_control(n.payload).state
        for n in notes
        if n.message_id == CpgResponseId.FLOW_CONTROL_STATE_SET
    ]
    assert states == [FlowControlState.DISABLED]
    # A join meanwhile would have been TRY_AGAIN, never reordered.
    assert nodes.engine(1).flow_control is FlowControlState.DISABLED


def test_a_join_while_the_ring_is_full_is_try_again_and_changes_nothing(nodes: CpgNodes) -> None:
    a = nodes.connect(1, pid=100)
    nodes.cluster.executives[1].would_block = True
    with pytest.raises(TryAgainError):
        nodes.join(1, a, G)
    assert nodes.engine(1).join_state(a) is JoinState.UNJOINED
    nodes.cluster.executives[1].would_block = False
    nodes.join(1, a, G)
    assert isinstance(nodes.events(1, a)[0], ConfChgBody)


def test_deliveries_carry_group_node_and_pid(nodes: CpgNodes) -> None:
    a = nodes.connect(2, pid=77)
    nodes.join(2, a, G)
    nodes.events(2, a)
    nodes.mcast(2, a, b"\x00binary\xff")
    assert nodes.events(2, a) == [DeliverBody(G, 2, 77, b"\x00binary\xff")]


def test_reason_numbers_are_corosyncs() -> None:
    assert [int(r) for r in CpgReason] == [0, 1, 2, 3, 4, 5]


def test_after_a_round_new_sends_wait_until_earlier_ones_are_delivered() -> None:
    """Sends right after a round ride the SYNC lane, which overtakes the APP lane: the engine
    holds them until what it sent before the round came back, so per-sender order holds."""
    api = FakeExecutive(1)
    engine = CpgEngine()
    engine.exec_init(api)
    ring = RingId(seq=1, rep=1)

    def sync_round(ring: RingId) -> None:
        engine.confchg(ConfigKind.REGULAR, (1,), (), (), ring)
        engine.sync_init((1,), (1,), ring)
        assert engine.sync_process()
        for message in [m for m in api.outbox if m.function_id == CpgExecId.JOINLIST]:
            engine.exec_handlers[message.function_id].handler(engine, message.payload, 1)
        api.outbox[:] = [m for m in api.outbox if m.function_id == CpgExecId.PROCJOIN]
        engine.sync_activate()

    sync_round(ring)
    conn = ClientConnection(conn_id=1, pid=100, uid=0, gid=0)
    engine.lib_init(conn)
    engine.lib_handlers[CpgRequestId.JOIN].handler(engine, conn, wire.encode_join(G, 100, 0))
    procjoin = api.outbox.pop()
    sync_round(RingId(seq=2, rep=1))  # the PROCJOIN is still on its way
    assert engine.flow_control is FlowControlState.ENABLED
    engine.lib_handlers[CpgRequestId.MCAST].handler(engine, conn, wire.encode_mcast(2, b"m"))
    assert api.outbox == []  # held behind the PROCJOIN
    engine.exec_handlers[CpgExecId.PROCJOIN].handler(engine, procjoin.payload, 1)
    assert [m.function_id for m in api.outbox] == [CpgExecId.MCAST]
    assert engine.flow_control is FlowControlState.DISABLED


def test_a_leave_in_flight_across_a_round_takes_effect_where_it_is_delivered(
    nodes: CpgNodes,
) -> None:
    a = nodes.connect(1, pid=100)
    b = nodes.connect(2, pid=200)
    nodes.join(1, a, G)
    nodes.join(2, b, G)
    nodes.events(2, b)
    nodes.cluster.request(1, a, CpgRequestId.LEAVE, wire.encode_leave(G, 100))
    procleave = nodes.cluster.outbox.pop()  # not delivered before the configuration changes
    nodes.cluster.change_membership([1, 2, 3])
    assert confchgs(nodes, 2, b) == []  # a is still a member: its leave is not delivered yet
    assert nodes.engine(1).join_state(a) is JoinState.LEAVE_STARTED
    nodes.cluster.outbox.append(procleave)  # arrives after the round, in agreed order
    nodes.cluster.deliver()
    assert confchgs(nodes, 2, b) == [
        ConfChgBody(G, addresses((2, 200, 0)), addresses((1, 100, LEAVE)), ())
    ]
    assert nodes.engine(1).join_state(a) is JoinState.UNJOINED
    assert [list(nodes.engine(n).table.entries()) for n in (1, 2, 3)] == [[(G, (2, 200))]] * 3


def test_messages_sent_before_a_close_are_delivered_before_it_across_a_round(
    nodes: CpgNodes,
) -> None:
    # The round used to take a closing process out at activation, ahead of the messages it
    # had sent before closing that were still on their way: they then came from a
    # non-member (or were lost, its node having no one else in the group).
    a = nodes.connect(1, pid=100)
    b = nodes.connect(2, pid=200)
    nodes.join(1, a, G)
    nodes.join(2, b, G)
    nodes.events(2, b)
    nodes.cluster.request(1, a, CpgRequestId.MCAST, wire.encode_mcast(2, b"last words"))
    nodes.cluster.engines[1].lib_exit(a)
    in_flight = nodes.cluster.outbox[:]  # the MCAST, then the PROCLEAVE
    nodes.cluster.outbox.clear()
    nodes.cluster.change_membership([1, 2, 3])
    nodes.cluster.outbox.extend(in_flight)
    nodes.cluster.deliver()
    events = nodes.events(2, b)
    assert [type(e).__name__ for e in events] == ["TotemConfChgBody", "DeliverBody", "ConfChgBody"]
    assert events[2] == ConfChgBody(G, addresses((2, 200, 0)), addresses((1, 100, PROCDOWN)), ())


def _start_round(
    nodes: CpgNodes, node: int, trans: tuple[int, ...], members: tuple[int, ...], ring: RingId
) -> None:
    engine = nodes.engine(node)
    engine.confchg(ConfigKind.TRANSITIONAL, trans, (), (), ring)
    engine.confchg(ConfigKind.REGULAR, members, (), (), ring)
    engine.sync_init(trans, members, ring)


def _finish_round(nodes: CpgNodes, members: tuple[int, ...]) -> None:
    for node in members:
        assert nodes.engine(node).sync_process()
    nodes.cluster.members = members  # deliver within this partition only
    nodes.cluster.deliver()
    for node in members:
        nodes.engine(node).sync_activate()


def test_a_leave_delivered_during_a_round_is_not_undone_by_its_nodes_joinlist(
    nodes: CpgNodes,
) -> None:
    a = nodes.connect(1, pid=100)
    b = nodes.connect(2, pid=200)
    nodes.join(1, a, G)
    nodes.join(2, b, G)
    nodes.events(2, b)
    nodes.cluster.engines[1].lib_exit(a)  # the PROCLEAVE is sent at once...
    ring = RingId(seq=9, rep=1)
    for node in (1, 2, 3):
        _start_round(nodes, node, (1, 2, 3), (1, 2, 3), ring)
    # ... and node 1's joinlist, built before that leave came back, still lists the process;
    # the leave is delivered first (the same lane, sent earlier), then the joinlists.
    _finish_round(nodes, (1, 2, 3))
    assert [list(nodes.engine(n).table.entries()) for n in (1, 2, 3)] == [[(G, (2, 200))]] * 3
    assert confchgs(nodes, 2, b) == [  # and no NODEUP of a after it
        ConfChgBody(G, addresses((2, 200, 0)), addresses((1, 100, PROCDOWN)), ())
    ]


def test_a_node_that_left_in_an_aborted_round_leaves_and_rejoins() -> None:
    # Node 1 spends ring 10 alone, and a's message there never reaches node 2. Node 2 sees
    # node 1 leave only in ring 11, whose round is aborted; in ring 12 they are together
    # again, and node 2's transitional configuration (from ring 11) has node 1 in it. The
    # downlist used to forget ring 11: a never left b's view although b missed its message.
    nodes = CpgNodes([1, 2])
    a = nodes.connect(1, pid=100)
    b = nodes.connect(2, pid=200)
    nodes.join(1, a, G)
    nodes.join(2, b, G)
    nodes.events(2, b)
    _start_round(nodes, 1, (1,), (1,), RingId(seq=10, rep=1))
    _finish_round(nodes, (1,))
    nodes.cluster.request(1, a, CpgRequestId.MCAST, wire.encode_mcast(2, b"alone"))
    nodes.cluster.deliver()
    for node, trans in ((1, (1,)), (2, (2,))):
        _start_round(nodes, node, trans, (1, 2), RingId(seq=11, rep=1))
        nodes.engine(node).sync_abort()
    for node in (1, 2):
        _start_round(nodes, node, (1, 2), (1, 2), RingId(seq=12, rep=1))
    _finish_round(nodes, (1, 2))
    assert confchgs(nodes, 2, b) == [
        ConfChgBody(G, addresses((2, 200, 0)), addresses((1, 100, NODEDOWN)), ()),
        ConfChgBody(G, addresses((1, 100, 0), (2, 200, 0)), (), addresses((1, 100, NODEUP))),
    ]


def _two_local_members(nodes: CpgNodes) -> tuple[ClientConnection, ClientConnection]:
    """Two joined connections of node 1, their join confchgs taken."""
    a, b = nodes.connect(1, pid=100), nodes.connect(1, pid=101)
    nodes.join(1, a, G)
    nodes.join(1, b, G)
    nodes.notifications(1, a), nodes.notifications(1, b)
    return a, b


def _deliver_without_batch_end(engine: CpgEngine, messages: list[Multicast]) -> None:
    for message in messages:
        engine.exec_handlers[message.function_id].handler(engine, message.payload, message.sender)


def test_a_batch_reaches_each_client_as_one_deliver_and_nothing_overtakes_it(
    nodes: CpgNodes,
) -> None:
    a, b = _two_local_members(nodes)
    c = nodes.connect(2, pid=200)
    for i in range(3):
        nodes.cluster.request(1, a, CpgRequestId.MCAST, wire.encode_mcast(2, b"m%d" % i))
    nodes.cluster.request(2, c, CpgRequestId.JOIN, wire.encode_join(G, 200, 0))
    for i in range(3, 5):
        nodes.cluster.request(1, b, CpgRequestId.MCAST, wire.encode_mcast(2, b"m%d" % i))
    batch, nodes.cluster.outbox[:] = list(nodes.cluster.outbox), []
    engine = nodes.engine(1)
    _deliver_without_batch_end(engine, batch)
    # The join's confchg took the messages before it along; the last two wait for the end.
    assert [n.message_id for n in nodes.notifications(1, a)] == [
        CpgResponseId.DELIVER_CALLBACK,
        CpgResponseId.CONFCHG_CALLBACK,
    ]
    engine.exec_batch_end()
    after = nodes.notifications(1, a)
    assert [n.message_id for n in after] == [CpgResponseId.DELIVER_CALLBACK]
    assert wire.decode_deliveries(after[0].payload) == [
        DeliverBody(G, 1, 101, b"m3"),
        DeliverBody(G, 1, 101, b"m4"),
    ]
    events = nodes.events(1, b)  # b saw the same, in the same order
    assert [e.message for e in events if isinstance(e, DeliverBody)] == [
        b"m0",
        b"m1",
        b"m2",
        b"m3",
        b"m4",
    ]
    assert [type(e) for e in events][3] is ConfChgBody


def test_a_batch_goes_before_it_would_grow_past_its_bound_and_a_closed_client_gets_nothing(
    nodes: CpgNodes,
) -> None:
    a, b = _two_local_members(nodes)
    sizes = [30 * 1024, 30 * 1024, 30 * 1024, wire.MAX_ATOMIC_MSG_SIZE]
    for size in sizes:
        nodes.cluster.request(1, a, CpgRequestId.MCAST, wire.encode_mcast(2, bytes(size)))
    batch, nodes.cluster.outbox[:] = list(nodes.cluster.outbox), []
    engine = nodes.engine(1)
    _deliver_without_batch_end(engine, batch[:2])
    assert nodes.notifications(1, a) == []  # 60 KiB: still gathering
    engine.lib_exit(b)
    _deliver_without_batch_end(engine, batch[2:])
    engine.exec_batch_end()
    notes = nodes.notifications(1, a)
    messages = [[len(d.message) for d in wire.decode_deliveries(n.payload)] for n in notes]
    assert messages == [sizes[:2], sizes[2:3], sizes[3:]]
    assert max(len(n.payload) for n in notes) <= DEFAULT_MAX_BODY  # each fits one IPC frame
    assert nodes.notifications(1, b) == []
