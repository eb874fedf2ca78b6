"""Simulated CPG clients on one node, and the executive the real CPG engine runs against there.

Theory of operation
-------------------
:class:`ClientPool` plays a node's libcpg users, cpgverify-style. At start it opens a few
client connections (``lib_init``); each JOINs the test's group (:data:`GROUP`) and, on the
simulator's traffic ticks, sends sequenced, checksummed messages
(:func:`~.cpg_check.encode_message`). As libcpg does, a client does not send while the engine's
last ``FLOW_CONTROL_STATE_SET`` said ENABLED: the message waits (a few at most, the rest of the
application's wishes are dropped) and goes when DISABLED comes, or at the next retry. A JOIN
answered ``CS_ERR_TRY_AGAIN`` is retried :data:`CLIENT_RETRY_S` later, as a client sleeps and
tries again. On some ticks a client dies (``lib_exit``) and a new one connects in its place;
on others one leaves the group gracefully (``cpg_leave``: it sends nothing more and waits for
the confchg that shows it gone), then either joins again on the same handle - what hangs in
Corosync (services-notes.md §1.7) - or disconnects and a new one connects.

Some messages go as fragments (PARTIAL_MCAST, cut far smaller than libcpg cuts so that small
messages have several): as libcpg does, a client sends one fragment, waits for its answer,
then sends the next; ``CS_ERR_TRY_AGAIN`` retries that fragment, ``CS_ERR_INTERRUPT`` (a
confchg came since the first) starts the message again from the first, and the message counts
as sent once the last is taken. Receivers reassemble with libcpg's
:class:`~pycorosync.lib.cpg_fragments.Reassembly` and record the whole message when its last
fragment arrives, noting whether a confchg came since its first (a process that joined in
between never gets it, by design).

Clients never call the engine from inside its callbacks: a notification is only recorded (and
at most brings the pool's next wake-up forward), and the pool acts on the stack's timer
(:attr:`ClientPool.next_wake`) or on a traffic tick - so the engine is never re-entered, as a
client in another process cannot re-enter it. Every delivery and confchg a client gets is
appended to its :class:`~.cpg_check.ClientRecord`, tagged with the ring of the node's last CPG
activation, the Totem delivery being handled and the transitional configuration Totem is
delivering, if any (``ring_tag``). All
randomness comes from the run's :class:`ClientRegistry`.

:class:`CpgExecutive` is the engine's :class:`~pycorosync.plugins.engine.ExecutiveApi`: the
probes' executive (multicasts into the node's totempg), with timers on :class:`SimTimers` - the
stack's simulated clock - and replies and notifications handed to the pool.
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from pycorosync.exec.totem.events import RingId
from pycorosync.exec.totem.sim.cpg_check import (
    Address,
    Cause,
    ClientRecord,
    Delivered,
    ViewChanged,
    decode_message,
    encode_message,
)
from pycorosync.exec.totem.sim.sync_probe import ProbeExecutive, SendFn
from pycorosync.lib import cpg_wire as wire
from pycorosync.lib.cpg_fragments import Reassembly, cut
from pycorosync.lib.cpg_wire import CpgRequestId, CpgResponseId, FlowControlState, FragmentType
from pycorosync.lib.errors import CsErrorCode
from pycorosync.plugins.engine import ClientConnection, TimerHandle

__all__ = [
    "CLIENT_RETRY_S",
    "GROUP",
    "ClientHost",
    "ClientPool",
    "ClientRegistry",
    "CpgExecutive",
    "SimTimers",
]

GROUP = b"simcpg"
CLIENT_RETRY_S = 0.02
"""How long a client waits after a TRY_AGAIN before it asks again."""
PENDING_MAX = 4
"""Messages a blocked client keeps waiting; the application's further wishes are dropped."""
CLIENTS_AT_START = (2, 3)
DIE_CHANCE = 0.03
"""Per traffic tick on a node: one of its clients dies and a new one connects."""
LEAVE_CHANCE = 0.02
"""Per traffic tick on a node: one of its joined clients leaves the group gracefully."""
REJOIN_CHANCE = 0.5
"""A client that has left joins again on the same handle rather than disconnecting."""
RUDE_CHANCE = 0.15
"""A client ignores flow control: it sends while the engine says ENABLED (and, past the
outbox's bound, is told of the messages the engine dropped)."""
FRAGMENT_CHANCE = 0.1
"""A message goes as fragments."""
FRAGMENT_BYTES = 16
"""The sim's fragment size: a message of 30 bytes or more has several."""
FRAGMENT_GAP_S = 0.01
"""Between one fragment's answer and the next fragment."""
BURST_CHANCE = 0.05
BURST = 6
"""Sometimes a tick is a burst of messages from one client."""
PADDING_MAX = 48
FRAGMENTED_PADDING = (20, PADDING_MAX)
AGREED = 2
"""libcpg's CPG_TYPE_AGREED."""
_LEAVE_LATER = frozenset({CsErrorCode.CS_ERR_TRY_AGAIN, CsErrorCode.CS_ERR_BUSY})
"""A LEAVE refused with these is asked again: a sync round, or the join not delivered yet."""


class SimTimers:
    """The engine's timers on the simulated clock: ``(deadline, handle)`` order, so ties fire
    in the order they were armed."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._cancelled: set[int] = set()
        self._handles = itertools.count(1)

    def add(self, delay_ms: float, callback: Callable[[], None]) -> TimerHandle:
        if delay_ms < 0:
            raise ValueError(f"timer delay must not be negative, got {delay_ms}")
        handle = next(self._handles)
        heapq.heappush(self._heap, (self._clock() + delay_ms / 1000, handle, callback))
        return TimerHandle(handle)

    def delete(self, handle: TimerHandle) -> None:
        if any(entry[1] == handle for entry in self._heap):
            self._cancelled.add(handle)

    def next_deadline(self) -> float | None:
        while self._heap and self._heap[0][1] in self._cancelled:
            self._cancelled.discard(heapq.heappop(self._heap)[1])
        return self._heap[0][0] if self._heap else None

    def fire_due(self, now: float) -> None:
        """Fire every timer due at ``now``, one armed meanwhile for ``now`` included."""
        while (deadline := self.next_deadline()) is not None and deadline <= now:
            _, _, callback = heapq.heappop(self._heap)
            callback()


class ClientSink(Protocol):
    """Where the executive hands what the engine sends a client."""

    def on_reply(self, conn: ClientConnection, message_id: int, error: CsErrorCode) -> None: ...

    def on_notification(self, conn: ClientConnection, message_id: int, payload: bytes) -> None: ...


class CpgExecutive(ProbeExecutive):
    """See the module docstring."""

    def __init__(self, nodeid: int, send: SendFn, timers: SimTimers, clients: ClientSink) -> None:
        super().__init__(nodeid, send)
        self._sim_timers = timers
        self._clients = clients

    def timer_add(self, delay_ms: float, callback: Callable[[], None]) -> TimerHandle:
        return self._sim_timers.add(delay_ms, callback)

    def timer_delete(self, handle: TimerHandle) -> None:
        self._sim_timers.delete(handle)

    def reply(
        self,
        conn: ClientConnection,
        message_id: int,
        payload: bytes,
        error: CsErrorCode = CsErrorCode.CS_OK,
    ) -> None:
        self._clients.on_reply(conn, message_id, error)

    def dispatch(self, conn: ClientConnection, message_id: int, payload: bytes) -> None:
        self._clients.on_notification(conn, message_id, payload)


class ClientHost(Protocol):
    """The node's IPC layer as a client sees it: connect, request, disconnect."""

    def connect(self, conn: ClientConnection) -> None: ...

    def request(self, conn: ClientConnection, request_id: int, payload: bytes) -> None: ...

    def disconnect(self, conn: ClientConnection) -> None: ...


@dataclass(slots=True)
class ClientRegistry:
    """The run's clients: every record ever made, unique pids and the clients' random draws."""

    rng: random.Random
    records: list[ClientRecord] = field(default_factory=list)
    pids: itertools.count[int] = field(default_factory=lambda: itertools.count(1000))
    deaths: int = 0
    leaves: int = 0
    """Clients that left the group gracefully and then disconnected."""
    rejoins: int = 0
    """Clients that left the group and joined it again on the same handle."""
    fragmented: int = 0
    """Messages sent whole as fragments."""
    dropped: int = 0
    """Messages the engine dropped, sent past flow control (its outbox was full)."""
    interrupted: int = 0
    """Fragmented sends answered CS_ERR_INTERRUPT and started again."""
    join_retries: int = 0
    """JOINs answered ``CS_ERR_TRY_AGAIN`` (by the host during a round, or the engine)."""
    held_sends: int = 0
    """Ticks on which the chosen client could not send: flow control was ENABLED."""


@dataclass(slots=True, eq=False)
class _Client:
    conn: ClientConnection
    record: ClientRecord
    flow: FlowControlState = FlowControlState.DISABLED
    pending: int = 0
    rude: bool = False
    dropped: int = 0
    """What the engine's last FLOW_CONTROL_STATE_SET counted as dropped."""
    leaving: bool = False
    """It asked to leave (or will ask again after a TRY_AGAIN): it sends nothing more."""
    leave_sent: bool = False
    fragments: list[tuple[FragmentType, bytes]] | None = None
    """The fragments of the message being sent in pieces (its seq is ``record.sent``)."""
    total: int = 0
    next_fragment: int = 0
    awaiting: bool = False
    """A fragment is out; the next waits for its answer."""
    reassembly: Reassembly = field(default_factory=Reassembly)
    views: int = 0
    """Confchgs received, to tell whether one came between a message's first and last."""
    first_at: dict[Address, int] = field(default_factory=dict)


class ClientPool:
    """See the module docstring."""

    def __init__(
        self,
        nodeid: int,
        incarnation: int,
        registry: ClientRegistry,
        *,
        clock: Callable[[], float],
        ring_tag: Callable[[], tuple[RingId | None, tuple[int, ...] | None, Cause | None]],
    ) -> None:
        self._nodeid = nodeid
        self._incarnation = incarnation
        self._registry = registry
        self._clock = clock
        self._ring_tag = ring_tag
        self._host: ClientHost | None = None
        self._clients: dict[ClientConnection, _Client] = {}
        self._conn_ids = itertools.count(1)
        self.next_wake: float | None = None

    @property
    def live(self) -> list[ClientRecord]:
        """The clients that should be in the group: connected and not leaving it."""
        return [client.record for client in self._clients.values() if not client.leaving]

    def open(self, host: ClientHost) -> None:
        """The node came up: its first clients connect."""
        self._host = host
        for _ in range(self._registry.rng.randint(*CLIENTS_AT_START)):
            self._connect()

    def stopped(self) -> None:
        """The node's process ended (crash or leave): every client of it is gone with it."""
        for client in self._clients.values():
            client.record.alive = False
        self._clients.clear()
        self.next_wake = None

    # -- what makes clients act ----------------------------------------------------------------

    def tick(self) -> None:
        """The simulator's traffic schedule says this node's application sends now."""
        rng = self._registry.rng
        if self._clients and rng.random() < DIE_CHANCE:
            self._kill(rng.choice(list(self._clients.values())))
            self._connect()
        senders = [c for c in self._clients.values() if c.record.join_accepted and not c.leaving]
        idle = [c for c in senders if c.fragments is None]
        if len(senders) > 1 and idle and rng.random() < LEAVE_CHANCE:
            leaver = rng.choice(idle)
            senders.remove(leaver)
            self._leave(leaver)
        if senders:
            client = rng.choice(senders)
            wanted = BURST if rng.random() < BURST_CHANCE else 1
            client.pending = min(PENDING_MAX, client.pending + wanted)
            self._registry.held_sends += client.flow is FlowControlState.ENABLED
            self._send_pending(client)
        self._arm()

    def wake(self, now: float) -> None:
        """The pool's timer: blocked clients try again."""
        if self.next_wake is None or self.next_wake > now:
            return
        self.next_wake = None
        for client in list(self._clients.values()):
            if client.leaving:
                self._go_on_leaving(client)
                continue
            if not client.record.join_accepted:
                self._join(client)
            self._send_pending(client)
        self._arm()

    # -- client actions ------------------------------------------------------------------------

    def _connect(self) -> None:
        pid = next(self._registry.pids)
        conn = ClientConnection(conn_id=next(self._conn_ids), pid=pid, uid=0, gid=0)
        record = ClientRecord(self._nodeid, self._incarnation, pid)
        self._registry.records.append(record)
        rude = self._registry.rng.random() < RUDE_CHANCE
        self._clients[conn] = _Client(conn, record, rude=rude)
        self._need_host().connect(conn)
        self._wake_soon()

    def _kill(self, client: _Client) -> None:
        client.record.alive = False
        self._registry.deaths += 1
        del self._clients[client.conn]
        self._need_host().disconnect(client.conn)

    def _leave(self, client: _Client) -> None:
        client.leaving, client.pending = True, 0
        client.leave_sent = True
        payload = wire.encode_leave(GROUP, client.conn.pid)
        self._need_host().request(client.conn, CpgRequestId.LEAVE, payload)

    def _go_on_leaving(self, client: _Client) -> None:
        """Ask again after a TRY_AGAIN; once the confchg showed it gone, join again or go."""
        record = client.record
        if record.left and self._registry.rng.random() < REJOIN_CHANCE:
            client.leaving = client.leave_sent = False
            record.left = record.join_accepted = False
            self._registry.rejoins += 1
            self._join(client)
        elif record.left:
            del self._clients[client.conn]
            client.record.alive = False
            self._registry.leaves += 1
            self._need_host().disconnect(client.conn)
            self._connect()
        elif not client.leave_sent:
            self._leave(client)

    def _join(self, client: _Client) -> None:
        payload = wire.encode_join(GROUP, client.conn.pid, 0)
        self._need_host().request(client.conn, CpgRequestId.JOIN, payload)

    def _send_pending(self, client: _Client) -> None:
        record = client.record
        rng = self._registry.rng
        if client.fragments is not None:
            self._send_fragment(client)
            return
        while (
            client.pending
            and record.join_accepted
            and (client.rude or client.flow is FlowControlState.DISABLED)
        ):
            if rng.random() < FRAGMENT_CHANCE:
                padding = rng.randrange(*FRAGMENTED_PADDING)
                message = encode_message(record.address, record.sent, padding)
                client.fragments, client.total = list(cut(message, FRAGMENT_BYTES)), len(message)
                client.next_fragment = 0
                self._send_fragment(client)
                return  # the rest waits for this message, as libcpg's blocking call does
            message = encode_message(record.address, record.sent, rng.randrange(PADDING_MAX))
            record.sent += 1
            client.pending -= 1
            payload = wire.encode_mcast(AGREED, message)
            dropped = client.dropped
            self._need_host().request(client.conn, CpgRequestId.MCAST, payload)
            if client.dropped > dropped:  # the engine says so at once: this one
                record.dropped.add(record.sent - 1)
                self._registry.dropped += 1

    def _send_fragment(self, client: _Client) -> None:
        if client.fragments is None or client.awaiting or not client.record.join_accepted:
            return
        kind, fragment = client.fragments[client.next_fragment]
        client.awaiting = True
        payload = wire.encode_partial_mcast(AGREED, client.total, kind, fragment)
        self._need_host().request(client.conn, CpgRequestId.PARTIAL_MCAST, payload)

    def _fragment_answered(self, client: _Client, error: CsErrorCode) -> None:
        client.awaiting = False
        if client.fragments is None:
            return
        if error is CsErrorCode.CS_OK:
            client.next_fragment += 1
            if client.next_fragment < len(client.fragments):
                # The next one a little later: confchgs come in between, as they do while
                # a real client waits for each answer.
                self._wake_at(self._clock() + FRAGMENT_GAP_S)
                return
            client.fragments = None
            client.record.sent += 1
            client.pending = max(0, client.pending - 1)
            self._registry.fragmented += 1
        elif error is CsErrorCode.CS_ERR_INTERRUPT:
            client.next_fragment = 0  # the receivers drop what they had: start again
            self._registry.interrupted += 1
        elif error is CsErrorCode.CS_ERR_TRY_AGAIN:
            self._arm()  # the same fragment, a little later
            return
        else:
            client.fragments = None
            client.record.errors.append(f"a fragment answered {error.name}")
        self._wake_soon()

    def _arm(self) -> None:
        """Come back later while some client still waits for something."""
        waiting = any(
            not c.record.join_accepted
            or c.pending
            or (c.leaving and not c.leave_sent)
            or (c.fragments is not None and not c.awaiting)
            for c in self._clients.values()
        )
        if waiting and self.next_wake is None:
            self.next_wake = self._clock() + CLIENT_RETRY_S

    def _wake_soon(self) -> None:
        self._wake_at(self._clock())

    def _wake_at(self, when: float) -> None:
        if self.next_wake is None or self.next_wake > when:
            self.next_wake = when

    def _need_host(self) -> ClientHost:
        if self._host is None:
            raise RuntimeError("client pool used before open")
        return self._host

    # -- what the engine sends clients ---------------------------------------------------------

    def on_reply(self, conn: ClientConnection, message_id: int, error: CsErrorCode) -> None:
        client = self._clients.get(conn)
        if client is None:
            return
        if message_id == CpgRequestId.PARTIAL_MCAST:
            self._fragment_answered(client, error)
            return
        if error is CsErrorCode.CS_OK:
            if message_id == CpgRequestId.JOIN:
                client.record.join_accepted = True
        elif message_id == CpgRequestId.LEAVE and error in _LEAVE_LATER:
            client.leave_sent = False  # asked again on the pool's next wake-up
            self._arm()
        elif error is CsErrorCode.CS_ERR_TRY_AGAIN:
            self._registry.join_retries += 1
        else:
            client.record.errors.append(f"request {message_id} answered {error.name}")

    def on_notification(self, conn: ClientConnection, message_id: int, payload: bytes) -> None:
        client = self._clients.get(conn)
        if client is None:
            return
        if message_id == CpgResponseId.FLOW_CONTROL_STATE_SET:
            body = wire.decode_flow_control(payload)
            client.flow, client.dropped = body.state, body.dropped
            if client.flow is FlowControlState.DISABLED and client.pending:
                self._wake_soon()
        elif message_id == CpgResponseId.DELIVER_CALLBACK:
            deliveries = wire.decode_deliveries(payload)
            client.record.events.extend(_delivered(body) for body in deliveries)
        elif message_id == CpgResponseId.PARTIAL_DELIVER_CALLBACK:
            self._on_fragment(client, wire.decode_partial_deliver(payload))
        elif message_id == CpgResponseId.CONFCHG_CALLBACK:
            change = self._view_changed(wire.decode_confchg(payload))
            client.record.events.append(change)
            client.views += 1
            for nodeid, pid in change.left:
                client.reassembly.forget(nodeid, pid)
            if client.leaving and client.record.address in change.left:
                client.record.left = True
                self._wake_soon()  # it disconnects from the pool's timer, not from here

    def _on_fragment(self, client: _Client, part: wire.PartialBody) -> None:
        sender = (part.nodeid, part.pid)
        if part.kind is FragmentType.FIRST:
            client.first_at[sender] = client.views
        whole = client.reassembly.add(part)
        if whole is None:
            return
        spans = client.first_at.pop(sender, None) != client.views
        body = wire.DeliverBody(part.group, part.nodeid, part.pid, whole)
        client.record.events.append(_delivered(body, spans_views=spans))

    def _view_changed(self, body: wire.ConfChgBody) -> ViewChanged:
        def addresses(items: tuple[wire.CpgAddress, ...]) -> tuple[Address, ...]:
            return tuple((a.nodeid, a.pid) for a in items)

        reasons = frozenset(a.reason.name for a in (*body.left, *body.joined))
        members, left, joined = (addresses(x) for x in (body.members, body.left, body.joined))
        ring, transitional, cause = self._ring_tag()
        return ViewChanged(ring, members, left, joined, reasons, transitional, cause)


def _delivered(body: wire.DeliverBody, *, spans_views: bool = False) -> Delivered:
    sender = (body.nodeid, body.pid)
    decoded = decode_message(body.message)
    if decoded is None or decoded[0] != sender or body.group != GROUP:
        return Delivered(sender, None, spans_views)
    return Delivered(sender, decoded[1], spans_views)
