"""The CPG engine: closed process groups (Corosync's exec/cpg.c), a deterministic state machine.

Theory of operation
-------------------
Replicated state: the :class:`~pycorosync.services.cpg.groups.ProcessTable`, changed only by
messages delivered in the ring's agreed order (PROCJOIN, PROCLEAVE) and by the sync round
(:mod:`~pycorosync.services.cpg.merge`), so every node holds the same table. Local state: one
:class:`_Conn` per client connection (Corosync's ``cpg_pd``), so one connection is in at most
one group, in one of four states:

* UNJOINED --JOIN--> JOIN_STARTED: the reply (``CS_OK``) is sent at once and PROCJOIN is
  multicast; when it is delivered the connection is JOIN_COMPLETED and gets its own confchg.
* JOIN_COMPLETED --LEAVE--> LEAVE_STARTED: PROCLEAVE is multicast; when it is delivered the
  connection gets the confchg with itself in the left list and is UNJOINED again. (Corosync
  3.x means to reset it too but its loop never runs, so a handle that left can never join
  again; we reset it, as intended.)
* Refusals follow Corosync: JOIN of a (pid, group) some local connection already has is
  ``CS_ERR_EXIST``, of one whose leave is not delivered yet ``CS_ERR_TRY_AGAIN``, while
  LEAVE_STARTED ``CS_ERR_BUSY``, when joined ``CS_ERR_EXIST``; LEAVE when not joined (or of
  another group) ``CS_ERR_NOT_EXIST``, while JOIN_STARTED ``CS_ERR_BUSY``.
* A connection that closes (``lib_exit``) while in a group leaves with reason PROCDOWN, seen
  by everyone, local peers included.

MCAST is one-way: the engine multicasts ``[group, pid, message]`` and each node delivers it
to its local connections in the group (JOIN_COMPLETED or LEAVE_STARTED) - only if the
sending node has a process in the group, as Corosync does - the sender's own included;
what one delivered batch owes a connection goes as one DELIVER notification
(:mod:`.deliveries`), sent when the host ends the batch (``exec_batch_end``) or before any
other notification to that connection.
A message over MAX_ATOMIC_MSG_SIZE comes as PARTIAL_MCAST fragments, each a request answered
once multicast, and is delivered the same way as PARTIAL_DELIVER notifications that libcpg
reassembles; a fragment after a confchg reached its connection since the FIRST one is
refused ``CS_ERR_INTERRUPT`` (Corosync's transition counter).

Sync, per membership change: a REGULAR confchg stops multicasting (flow control ENABLED);
``sync_init`` remembers the new ring and computes the downlist - the nodes known at the last
activation that did not come through every transitional configuration since (a round can be
aborted, and a node that left in it may be back by the next); ``sync_process`` multicasts the
DOWNLIST (informational) and this node's JOINLIST - all its processes, those whose leave is
still on its way included - tagged with the ring so that lists of an aborted round are never
used (they are also cleared at ``sync_init``, which Corosync does not do); a PROCLEAVE
delivered during the round drops its process from the lists collected and to come, so a list
built before that leave came back cannot restore it; ``sync_activate`` merges (:mod:`.merge`),
sends the confchgs and a totem confchg to every connection, and lets multicasts go again once
everything this node sent before the round has been delivered back (until the host ends the
round our sends ride the SYNC lane, which would overtake them). A leave in flight thus takes
effect where it is delivered, after the messages its process sent before it.

Flow control (see docs/cpg.md): the engine keeps a FIFO :class:`Outbox` of what it accepted
but may not or cannot send yet, and publishes ``FLOW_CONTROL_STATE_SET`` to every connection
when the state changes, so libcpg answers ``CS_ERR_TRY_AGAIN`` without a round trip. JOIN and
LEAVE are flow-controlled requests: refused ``CS_ERR_TRY_AGAIN`` while the outbox is not empty
or a sync runs, so they never overtake multicasts accepted before them.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import ClassVar

from pycorosync.exec.logsys import subsys_logger
from pycorosync.exec.totem.events import ConfigKind, RingId
from pycorosync.lib import cpg_wire as wire
from pycorosync.lib.cpg_wire import (
    MAX_ATOMIC_MSG_SIZE,
    MODEL_V1_DELIVER_INITIAL_TOTEM_CONF,
    ConfChgBody,
    CpgAddress,
    CpgExecId,
    CpgReason,
    CpgRequestId,
    CpgResponseId,
    CpgRingId,
    FlowControlBody,
    FlowControlState,
    FragmentType,
    IterationDescription,
    IterationType,
)
from pycorosync.lib.errors import (
    BadHandleError,
    BusyError,
    CsError,
    ExistError,
    InterruptError,
    InvalidParamError,
    NoSectionsError,
    NotExistError,
    TryAgainError,
)
from pycorosync.plugins.engine import (
    ClientConnection,
    ExecHandler,
    ExecutiveApi,
    FlowControl,
    LibHandler,
    SendStatus,
    TimerHandle,
    answer,
)
from pycorosync.services.cpg.deliveries import Deliveries
from pycorosync.services.cpg.groups import ProcessTable
from pycorosync.services.cpg.merge import GroupChange, JoinEntry, merge
from pycorosync.services.cpg.outbox import Outbox

__all__ = ["CpgEngine", "JoinState"]

log = subsys_logger("CPG")

HELD_PER_CONN_MAX = 1024
"""Multicasts one connection may have waiting in the outbox (see :mod:`.outbox`)."""
RETRY_MS = 1.0
"""How soon a blocked outbox tries again (Corosync rechecks a CRITICAL queue every 1 ms)."""


class JoinState(Enum):
    UNJOINED = "unjoined"
    LEAVE_STARTED = "leave started"
    JOIN_STARTED = "join started"
    JOIN_COMPLETED = "join completed"


_RECEIVING = (JoinState.JOIN_COMPLETED, JoinState.LEAVE_STARTED)


@dataclass(slots=True)
class _Conn:
    group: bytes | None = None
    pid: int = 0
    flags: int = 0
    state: JoinState = JoinState.UNJOINED
    finalized: bool = False
    initial_totem_conf_sent: bool = False
    iterations: dict[int, deque[IterationDescription]] = field(default_factory=dict)
    dropped: int = 0
    transitions: int = 0
    """Confchgs sent to this connection: a fragmented message started before the last one
    is interrupted (Corosync's ``transition_counter``)."""
    partial_from: int | None = None
    """``transitions`` when this connection's current fragmented message began."""


class CpgEngine:
    name: ClassVar[str] = "cpg"
    service_id: ClassVar[int] = 2
    # Corosync gives cmap and cpg the same priority; ids order them (cmap first).
    priority: ClassVar[int] = 0
    version: ClassVar[int] = 0
    allow_inquorate: ClassVar[bool] = True
    own_worker: ClassVar[bool] = False
    held_per_conn: ClassVar[int] = HELD_PER_CONN_MAX
    """The outbox's bound per connection (a subclass may set it lower, as the simulator
    does so that clients that ignore flow control get their messages dropped)."""

    def __init__(self) -> None:
        self._api: ExecutiveApi | None = None
        self._nodeid = 0
        """The local node's id, kept at exec_init: read for every delivered message."""
        self.table = ProcessTable()
        self._conns: dict[ClientConnection, _Conn] = {}
        self._refused: set[ClientConnection] = set()
        """Connections told once that their mcast is refused (a sender loops on it)."""
        self._outbox = Outbox(self.held_per_conn)
        self._deliveries = Deliveries(self._dispatch)
        """Messages delivered to each connection, sent as one notification per batch."""
        self._retry: TimerHandle | None = None
        self._syncing = True
        """No multicasts from clients until the first sync round is activated."""
        self._in_flight = 0
        """Our PROCJOIN / PROCLEAVE / MCAST sent and not yet delivered back to us."""
        self._draining = False
        """After a round: hold new sends until what we sent before it is delivered (below)."""
        self._published = FlowControlState.DISABLED
        self._members: tuple[int, ...] = ()
        self._ring = CpgRingId(0, 0)
        self._sync_members: tuple[int, ...] = ()
        self._through: set[int] | None = None
        """Nodes in every transitional configuration since the last activation (None right
        after one): the others are down for this round, even if they are members again."""
        self._sync_ring = RingId(seq=0, rep=0)
        self._downlist: tuple[int, ...] = ()
        self._joinlists: list[JoinEntry] = []
        self._left_in_round: set[tuple[bytes, tuple[int, int]]] = set()
        """Processes whose PROCLEAVE was delivered since this round's ``sync_init``."""
        self._sync_sent = {CpgExecId.DOWNLIST: False, CpgExecId.JOINLIST: False}
        self._iter_handles = itertools.count(1)
        self._joinlist = wire.JoinList(0, ())
        self._exec_table: dict[CpgExecId, Callable[[bytes, int], None]] = {
            CpgExecId.PROCJOIN: self._exec_procjoin,
            CpgExecId.PROCLEAVE: self._exec_procleave,
            CpgExecId.JOINLIST: self._exec_joinlist,
            CpgExecId.MCAST: self._exec_mcast,
            CpgExecId.DOWNLIST: self._exec_downlist,
            CpgExecId.PARTIAL_MCAST: self._exec_partial,
        }

    @property
    def api(self) -> ExecutiveApi:
        if self._api is None:
            raise RuntimeError("cpg engine used before exec_init")
        return self._api

    @property
    def flow_control(self) -> FlowControlState:
        blocked = self._held_back or len(self._outbox) > 0
        return FlowControlState.ENABLED if blocked else FlowControlState.DISABLED

    def join_state(self, conn: ClientConnection) -> JoinState:
        return self._conns[conn].state

    # Lifecycle ----------------------------------------------------------------------------

    def exec_init(self, api: ExecutiveApi) -> None:
        self._api = api
        self._nodeid = api.nodeid

    def exec_exit(self) -> bool:
        for conn in list(self._conns):
            self.lib_exit(conn)
        return self._outbox.flush(self._mcast)

    def lib_init(self, conn: ClientConnection) -> None:
        self._conns[conn] = _Conn()
        if self._published is FlowControlState.ENABLED:
            self._notify_flow_control(conn, self._conns[conn])

    def lib_exit(self, conn: ClientConnection) -> None:
        self._refused.discard(conn)
        self._deliveries.forget(conn)
        state = self._conns.pop(conn, None)
        if state is None or state.group is None or state.state is JoinState.LEAVE_STARTED:
            return
        payload = wire.encode_proc(state.group, state.pid, CpgReason.PROCDOWN)
        self._send(None, CpgExecId.PROCLEAVE, payload)

    def confchg(
        self,
        kind: ConfigKind,
        members: tuple[int, ...],
        left: tuple[int, ...],
        joined: tuple[int, ...],
        ring_id: RingId,
    ) -> None:
        if kind is ConfigKind.REGULAR:
            self._syncing = True
            self._publish_flow_control()

    # Client requests ----------------------------------------------------------------------

    def _lib_join(self, conn: ClientConnection, payload: bytes) -> None:
        def join() -> bytes:
            group, pid, flags = wire.decode_join(payload)
            state = self._state(conn)
            self._check_joinable(state, group, pid)
            self._multicast_now(CpgExecId.PROCJOIN, wire.encode_proc(group, pid, CpgReason.JOIN))
            state.group, state.pid, state.flags = group, pid, flags
            state.state = JoinState.JOIN_STARTED
            return b""

        answer(self.api, conn, CpgRequestId.JOIN, join)

    def _check_joinable(self, state: _Conn, group: bytes, pid: int) -> None:
        if any(c.group == group and c.pid == pid for c in self._conns.values()):
            raise ExistError("this process is in the group already")
        if (group, (self.api.nodeid, pid)) in self.table:
            raise TryAgainError("this process's leave of the group is not delivered yet")
        if state.state is JoinState.LEAVE_STARTED:
            raise BusyError("this handle's leave is not delivered yet")
        if state.state is not JoinState.UNJOINED:
            raise ExistError("this handle is in a group already")

    def _lib_leave(self, conn: ClientConnection, payload: bytes) -> None:
        def leave() -> bytes:
            group, _pid = wire.decode_leave(payload)
            state = self._state(conn)
            if state.state is JoinState.JOIN_STARTED:
                raise BusyError("this handle's join is not delivered yet")
            if state.state is not JoinState.JOIN_COMPLETED or state.group != group:
                raise NotExistError("this handle is not in that group")
            leaving = wire.encode_proc(group, state.pid, CpgReason.LEAVE)
            self._multicast_now(CpgExecId.PROCLEAVE, leaving)
            state.state = JoinState.LEAVE_STARTED
            return b""

        answer(self.api, conn, CpgRequestId.LEAVE, leave)

    def _lib_mcast(self, conn: ClientConnection, payload: bytes) -> None:
        # One-way: nobody waits for an answer, so a refusal can only be logged.
        state = self._conns.get(conn)
        try:
            _guarantee, message = wire.decode_mcast(payload)
        except CsError as error:
            log.warning("Dropping a malformed mcast from pid %d: %s", conn.pid, error)
            return
        if state is None or state.group is None or state.state not in _SENDING:
            if conn not in self._refused:
                self._refused.add(conn)
                log.warning(
                    "Client pid %d can't mcast: it is not in a group (not logged again for "
                    "this connection)",
                    conn.pid,
                )
            return
        if len(message) > MAX_ATOMIC_MSG_SIZE:
            log.warning("Dropping a %d byte mcast from pid %d: too big", len(message), conn.pid)
            return
        self._send(conn, CpgExecId.MCAST, wire.encode_exec_mcast(state.group, state.pid, message))

    def _lib_partial_mcast(self, conn: ClientConnection, payload: bytes) -> None:
        """One fragment of a message over MAX_ATOMIC_MSG_SIZE: answered, unlike MCAST."""

        def partial() -> bytes:
            _guarantee, total, kind, fragment = wire.decode_partial_mcast(payload)
            state = self._state(conn)
            if state.group is None or state.state not in _SENDING:
                raise NotExistError("this handle is not in a group")
            if kind is FragmentType.FIRST:
                state.partial_from = state.transitions
            elif state.partial_from != state.transitions:
                state.partial_from = None
                raise InterruptError("the group's membership changed during this message")
            body = wire.encode_exec_partial(state.group, state.pid, total, kind, fragment)
            self._multicast_now(CpgExecId.PARTIAL_MCAST, body)
            return b""

        answer(self.api, conn, CpgRequestId.PARTIAL_MCAST, partial)

    def _lib_membership(self, conn: ClientConnection, payload: bytes) -> None:
        def members() -> bytes:
            return wire.encode_members(self.table.members(wire.decode_group(payload)))

        answer(self.api, conn, CpgRequestId.MEMBERSHIP, members)

    def _lib_local_get(self, conn: ClientConnection, payload: bytes) -> None:
        def local() -> bytes:
            wire.decode_empty(payload)
            return wire.encode_nodeid(self.api.nodeid)

        answer(self.api, conn, CpgRequestId.LOCAL_GET, local)

    def _lib_iteration_initialize(self, conn: ClientConnection, payload: bytes) -> None:
        def start() -> bytes:
            snapshot = self._iteration_snapshot(*wire.decode_iteration_init(payload))
            handle = next(self._iter_handles)
            self._state(conn).iterations[handle] = snapshot
            return wire.encode_handle(handle)

        answer(self.api, conn, CpgRequestId.ITERATION_INITIALIZE, start)

    def _iteration_snapshot(
        self, iteration_type: int, group: bytes | None
    ) -> deque[IterationDescription]:
        if iteration_type not in set(IterationType):
            raise InvalidParamError(f"unknown iteration type {iteration_type}")
        if (group is None) == (iteration_type == IterationType.ONE_GROUP):
            raise InvalidParamError("a group is given exactly for ONE_GROUP iterations")
        if iteration_type == IterationType.NAME_ONLY:
            return deque(IterationDescription(g, 0, 0) for g in self.table.groups())
        return deque(
            IterationDescription(g, node, pid)
            for g, (node, pid) in self.table.entries()
            if group is None or g == group
        )

    def _lib_iteration_next(self, conn: ClientConnection, payload: bytes) -> None:
        def step() -> bytes:
            entries = self._iteration(conn, payload)
            if not entries:
                raise NoSectionsError("no more entries")
            return wire.encode_description(entries.popleft())

        answer(self.api, conn, CpgRequestId.ITERATION_NEXT, step)

    def _lib_iteration_finalize(self, conn: ClientConnection, payload: bytes) -> None:
        def finish() -> bytes:
            self._iteration(conn, payload)
            del self._state(conn).iterations[wire.decode_handle(payload)]
            return b""

        answer(self.api, conn, CpgRequestId.ITERATION_FINALIZE, finish)

    def _iteration(self, conn: ClientConnection, payload: bytes) -> deque[IterationDescription]:
        entries = self._state(conn).iterations.get(wire.decode_handle(payload))
        if entries is None:
            raise BadHandleError("no such iteration on this connection")
        return entries

    def _lib_finalize(self, conn: ClientConnection, payload: bytes) -> None:
        def finalize() -> bytes:
            wire.decode_empty(payload)
            self._state(conn).finalized = True  # no more callbacks; lib_exit cleans up
            return b""

        answer(self.api, conn, CpgRequestId.FINALIZE, finalize)

    # Executive messages, in agreed order ----------------------------------------------------

    def _exec_procjoin(self, payload: bytes, sender: int) -> None:
        group, pid, _reason = wire.decode_proc(payload)
        if not self.table.add(group, (sender, pid)):
            return
        if sender == self.api.nodeid:
            for state in self._conns.values():
                if (state.group, state.pid, state.state) == (group, pid, JoinState.JOIN_STARTED):
                    state.state = JoinState.JOIN_COMPLETED
        joined = (CpgAddress(sender, pid, CpgReason.JOIN),)
        self._send_confchg(GroupChange(group, self.table.members(group), (), joined))

    def _exec_procleave(self, payload: bytes, sender: int) -> None:
        group, pid, reason = wire.decode_proc(payload)
        # A leave delivered during a round (sent on the SYNC lane before it) must not be undone
        # by its node's joinlist, which may have been built before the leave came back to it.
        self._left_in_round.add((group, (sender, pid)))
        self._joinlists = [e for e in self._joinlists if e != (sender, group, pid)]
        if not self.table.remove(group, (sender, pid)):
            return  # never joined, or removed already as a zombie by a merge
        left = (CpgAddress(sender, pid, reason),)
        self._send_confchg(GroupChange(group, self.table.members(group), left, ()))
        if sender == self.api.nodeid:
            self._reset_leaver(group, pid)

    def _reset_leaver(self, group: bytes, pid: int) -> None:
        for state in self._conns.values():
            if (state.group, state.pid, state.state) == (group, pid, JoinState.LEAVE_STARTED):
                state.group, state.state = None, JoinState.UNJOINED

    def _exec_mcast(self, payload: bytes, sender: int) -> None:
        group, pid, message = wire.exec_mcast_fields(payload)
        if not self.table.node_in_group(group, sender):
            log.debug("Unknown node %d in group %r: not delivering its message", sender, group)
            return
        add = self._deliveries.add
        for conn, _state in self._receivers(group):
            add(conn, group, sender, pid, message)

    def exec_batch_end(self) -> None:
        """The host ran the handlers of one delivered batch: send what each client is owed."""
        self._deliveries.flush_all()

    def _exec_partial(self, payload: bytes, sender: int) -> None:
        group, body = wire.exec_partial_to_deliver(payload, sender)
        if not self.table.node_in_group(group, sender):
            log.debug("Unknown node %d in group %r: not delivering its fragment", sender, group)
            return
        for conn, _state in self._receivers(group):
            self._notify(conn, CpgResponseId.PARTIAL_DELIVER_CALLBACK, body)

    def _exec_joinlist(self, payload: bytes, sender: int) -> None:
        joinlist = wire.decode_joinlist(payload)
        if joinlist.ring_seq != self._sync_ring.seq:
            return  # a list of another round: it must never be merged into this one
        left = self._left_in_round
        self._joinlists += [
            (sender, group, pid)
            for group, pid in joinlist.entries
            if (group, (sender, pid)) not in left
        ]

    def _exec_downlist(self, payload: bytes, sender: int) -> None:
        ring_seq, nodes = wire.decode_downlist(payload)
        log.debug("Node %d's downlist for ring %d: %s", sender, ring_seq, nodes)

    # Sync -----------------------------------------------------------------------------------

    def sync_init(
        self, transitional_members: tuple[int, ...], members: tuple[int, ...], ring_id: RingId
    ) -> None:
        self._syncing = True
        self._sync_members, self._sync_ring = members, ring_id
        # A node is still "with us" only if it came through every configuration since our
        # last activation: one that left in a ring whose round was aborted and is back now
        # delivered messages our clients never saw, so its processes must leave and rejoin.
        through = set(transitional_members)
        if self._through is not None:
            through &= self._through
        self._through = through
        known = set(self._members) | {node for _, (node, _) in self.table.entries()}
        self._downlist = tuple(sorted(known - through - {self.api.nodeid}))
        self._joinlists, self._left_in_round = [], set()
        self._sync_sent = dict.fromkeys(self._sync_sent, False)
        self._publish_flow_control()

    def sync_process(self) -> bool:
        if not self._sync_sent[CpgExecId.JOINLIST]:
            self._joinlist = self._own_joinlist()
        lists = {
            CpgExecId.DOWNLIST: wire.encode_downlist(self._sync_ring.seq, self._downlist),
            CpgExecId.JOINLIST: wire.encode_joinlist(self._joinlist),
        }
        for function_id, payload in lists.items():
            if not self._sync_sent[function_id]:
                if self._mcast(function_id, payload) is SendStatus.WOULD_BLOCK:
                    return False
                self._sync_sent[function_id] = True
        return True

    def _own_joinlist(self) -> wire.JoinList:
        """This node's processes, those whose leave is not delivered yet included: the leave
        takes them out later, in agreed order - after the messages they sent before it."""
        entries = tuple(self.table.of_node(self.api.nodeid))
        return wire.JoinList(self._sync_ring.seq, entries)

    def sync_activate(self) -> None:
        self._members = self._sync_members
        self._through = None
        self._ring = CpgRingId(self._sync_ring.rep, self._sync_ring.seq)
        changes = merge(self.table, self.api.nodeid, self._downlist, self._joinlists)
        self._joinlists = []
        for change in changes:
            self._send_confchg(change)
        body = wire.encode_totem_confchg(wire.TotemConfChgBody(self._ring, self._members))
        for conn, state in self._conns.items():
            if not state.finalized:
                self._notify(conn, CpgResponseId.TOTEM_CONFCHG_CALLBACK, body)
        self._syncing = False
        # Sends are held until what we sent before the round is delivered back: a host that
        # carries an activated engine's sends on its SYNC lane (which goes ahead of the APP
        # lane) would otherwise let a client's later message, or its PROCDOWN, overtake its
        # earlier ones. Ours moves them to the APP lane once we activate (WorkerHost.mcast).
        self._draining = self._in_flight > 0
        self._flush()

    def sync_abort(self) -> None:
        self._joinlists = []

    # Sending ----------------------------------------------------------------------------------

    @property
    def _held_back(self) -> bool:
        return self._syncing or self._draining

    def _mcast(self, function_id: int, payload: bytes) -> SendStatus:
        status = self.api.mcast(function_id, payload)
        if status is SendStatus.QUEUED and function_id in _COUNTED:
            self._in_flight += 1
        return status

    def _multicast_now(self, function_id: int, payload: bytes) -> None:
        """For a request that is answered: TRY_AGAIN rather than wait behind the outbox."""
        if self._held_back or len(self._outbox):
            raise TryAgainError("cpg is synchronising or has multicasts waiting")
        if self._mcast(function_id, payload) is SendStatus.WOULD_BLOCK:
            raise TryAgainError("the ring towards the Totem process is full")

    def _send(self, conn: ClientConnection | None, function_id: int, payload: bytes) -> None:
        """Send now if nothing waits and sending is allowed; else keep it, in order."""
        idle = not self._held_back and not len(self._outbox)
        if idle and self._mcast(function_id, payload) is SendStatus.QUEUED:
            return
        if not self._outbox.hold(conn, function_id, payload):
            assert conn is not None  # farewells are always held
            self._dropped(conn)
        self._arm_retry()
        self._publish_flow_control()

    def _flush(self) -> None:
        if not self._held_back:
            self._outbox.flush(self._mcast)
            self._arm_retry()
        self._publish_flow_control()

    def _arm_retry(self) -> None:
        if self._retry is None and len(self._outbox) and not self._held_back:
            self._retry = self.api.timer_add(RETRY_MS, self._on_retry)

    def _on_retry(self) -> None:
        self._retry = None
        self._flush()

    def _dropped(self, conn: ClientConnection) -> None:
        state = self._conns[conn]
        state.dropped += 1
        log.warning(
            "Client pid %d sent past flow control; dropped its message (%d so far)",
            conn.pid,
            state.dropped,
        )
        self._notify_flow_control(conn, state)

    def _publish_flow_control(self) -> None:
        current = self.flow_control
        if current is self._published:
            return
        self._published = current
        for conn, state in self._conns.items():
            self._notify_flow_control(conn, state)

    def _notify_flow_control(self, conn: ClientConnection, state: _Conn) -> None:
        body = wire.encode_flow_control(FlowControlBody(self._published, state.dropped))
        self._notify(conn, CpgResponseId.FLOW_CONTROL_STATE_SET, body)

    # Callbacks --------------------------------------------------------------------------------

    def _notify(self, conn: ClientConnection, message_id: int, body: bytes) -> None:
        """Every notification but DELIVER: the messages delivered before it go first."""
        self._deliveries.flush(conn)
        self.api.dispatch(conn, message_id, body)

    def _dispatch(self, conn: ClientConnection, message_id: int, body: bytes) -> None:
        self.api.dispatch(conn, message_id, body)

    def _receivers(self, group: bytes) -> list[tuple[ClientConnection, _Conn]]:
        return [
            (conn, state)
            for conn, state in self._conns.items()
            if state.group == group and state.state in _RECEIVING and not state.finalized
        ]

    def _send_confchg(self, change: GroupChange) -> None:
        members = tuple(CpgAddress(node, pid) for node, pid in change.members)
        body = ConfChgBody(change.group, members, change.left, change.joined)
        encoded = wire.encode_confchg(body)
        for conn, state in self._receivers(change.group):
            state.transitions += 1
            self._notify(conn, CpgResponseId.CONFCHG_CALLBACK, encoded)
            self._initial_totem_conf(conn, state)

    def _initial_totem_conf(self, conn: ClientConnection, state: _Conn) -> None:
        if state.flags & MODEL_V1_DELIVER_INITIAL_TOTEM_CONF and not state.initial_totem_conf_sent:
            state.initial_totem_conf_sent = True
            body = wire.TotemConfChgBody(self._ring, self._members)
            encoded = wire.encode_totem_confchg(body)
            self._notify(conn, CpgResponseId.TOTEM_CONFCHG_CALLBACK, encoded)

    # Helpers ----------------------------------------------------------------------------------

    def _state(self, conn: ClientConnection) -> _Conn:
        state = self._conns.get(conn)
        if state is None:
            raise BadHandleError("the connection is not open")
        return state

    def _on_exec_mcast(self, payload: bytes, sender: int) -> None:
        """:meth:`_exec` for MCAST without the generic table: every delivered message."""
        try:
            self._exec_mcast(payload, sender)
        except CsError as error:
            log.warning("Dropping a malformed cpg message from node %d: %s", sender, error)
        if sender == self._nodeid:
            self._own_delivered()

    lib_handlers: ClassVar[Mapping[int, LibHandler[CpgEngine]]] = {
        CpgRequestId.JOIN: LibHandler(_lib_join, FlowControl.REQUIRED),
        CpgRequestId.LEAVE: LibHandler(_lib_leave, FlowControl.REQUIRED),
        # One-way, so flow control is the engine's own (the outbox): the host must never
        # answer it, as nobody waits for an answer.
        CpgRequestId.MCAST: LibHandler(_lib_mcast, FlowControl.NOT_REQUIRED),
        CpgRequestId.MEMBERSHIP: LibHandler(_lib_membership, FlowControl.NOT_REQUIRED),
        CpgRequestId.LOCAL_GET: LibHandler(_lib_local_get, FlowControl.NOT_REQUIRED),
        CpgRequestId.ITERATION_INITIALIZE: LibHandler(
            _lib_iteration_initialize, FlowControl.NOT_REQUIRED
        ),
        CpgRequestId.ITERATION_NEXT: LibHandler(_lib_iteration_next, FlowControl.NOT_REQUIRED),
        CpgRequestId.ITERATION_FINALIZE: LibHandler(
            _lib_iteration_finalize, FlowControl.NOT_REQUIRED
        ),
        # The PROCDOWN of a finalized connection goes through the outbox: never refused.
        CpgRequestId.FINALIZE: LibHandler(_lib_finalize, FlowControl.NOT_REQUIRED),
        CpgRequestId.PARTIAL_MCAST: LibHandler(_lib_partial_mcast, FlowControl.REQUIRED),
    }
    exec_handlers: ClassVar[Mapping[int, ExecHandler[CpgEngine]]] = {
        CpgExecId.PROCJOIN: ExecHandler(lambda e, p, s: e._exec(CpgExecId.PROCJOIN, p, s)),
        CpgExecId.PROCLEAVE: ExecHandler(lambda e, p, s: e._exec(CpgExecId.PROCLEAVE, p, s)),
        CpgExecId.JOINLIST: ExecHandler(lambda e, p, s: e._exec(CpgExecId.JOINLIST, p, s)),
        CpgExecId.MCAST: ExecHandler(_on_exec_mcast),
        CpgExecId.DOWNLIST: ExecHandler(lambda e, p, s: e._exec(CpgExecId.DOWNLIST, p, s)),
        CpgExecId.PARTIAL_MCAST: ExecHandler(
            lambda e, p, s: e._exec(CpgExecId.PARTIAL_MCAST, p, s)
        ),
    }

    def _exec(self, function_id: CpgExecId, payload: bytes, sender: int) -> None:
        """A peer's message that does not decode is logged and dropped; nothing else changes."""
        try:
            self._exec_table[function_id](payload, sender)
        except CsError as error:
            log.warning("Dropping a malformed cpg message from node %d: %s", sender, error)
        if sender == self.api.nodeid and function_id in _COUNTED:
            self._own_delivered()

    def _own_delivered(self) -> None:
        self._in_flight = max(0, self._in_flight - 1)
        if self._draining and not self._in_flight:
            self._draining = False
            self._flush()


_COUNTED = frozenset(
    {CpgExecId.PROCJOIN, CpgExecId.PROCLEAVE, CpgExecId.MCAST, CpgExecId.PARTIAL_MCAST}
)
_SENDING = (JoinState.JOIN_STARTED, JoinState.JOIN_COMPLETED)
