"""In-process CPG nodes for tests: real engines in a FakeCluster, and a ``CpgTransport`` into
them so that ``lib/cpg`` runs against the real engine.

Every request or one-way send is followed by ``FakeCluster.deliver()``, so the agreed-order
stream is applied at once, as a ring with no delay would. Notifications are taken from the
node's ``FakeExecutive`` in the order the engine dispatched them. Single-threaded: a dispatch
that would have to block with nothing queued fails the test instead of hanging it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from pycorosync.lib import cpg_wire as wire
from pycorosync.lib.cpg import CpgHandle, DispatchFlag, model_initialize
from pycorosync.lib.cpg_wire import (
    MODEL_V1,
    ConfChgBody,
    CpgAddress,
    CpgRequestId,
    CpgResponseId,
    CpgRingId,
    DeliverBody,
    PartialBody,
    TotemConfChgBody,
)
from pycorosync.lib.errors import CsErrorCode, LibraryError, TryAgainError, error_for
from pycorosync.plugins.engine import ClientConnection
from pycorosync.plugins.testing import FakeCluster, Notification
from pycorosync.services.cpg import CpgEngine

Event = DeliverBody | ConfChgBody | TotemConfChgBody | PartialBody


def decode_events(note: Notification) -> list[Event]:
    """The events a notification carries (a DELIVER may carry several); none for flow
    control."""
    if note.message_id == CpgResponseId.DELIVER_CALLBACK:
        return list(wire.decode_deliveries(note.payload))
    if note.message_id == CpgResponseId.CONFCHG_CALLBACK:
        return [wire.decode_confchg(note.payload)]
    if note.message_id == CpgResponseId.TOTEM_CONFCHG_CALLBACK:
        return [wire.decode_totem_confchg(note.payload)]
    if note.message_id == CpgResponseId.PARTIAL_DELIVER_CALLBACK:
        return [wire.decode_partial_deliver(note.payload)]
    return []


class CpgNodes:
    """A FakeCluster of CPG engines with helpers for raw client requests."""

    def __init__(self, nodeids: Iterable[int]) -> None:
        self.cluster = FakeCluster(CpgEngine, nodeids)
        self.cluster.change_membership(self.cluster.engines)
        self._seen: dict[ClientConnection, int] = {}

    def engine(self, node: int) -> CpgEngine:
        return self.cluster.engines[node]

    def connect(self, node: int, pid: int) -> ClientConnection:
        conn = self.cluster.connect(node, pid=pid)
        self._seen[conn] = 0
        return conn

    def request(self, node: int, conn: ClientConnection, request: int, body: bytes) -> bytes:
        """Send a request, deliver the ring's stream, return the reply (its CsError raised)."""
        executive = self.cluster.executives[node]
        before = len(executive.replies)
        self.cluster.request(node, conn, request, body)
        self.cluster.deliver()
        replies = [r for r in executive.replies[before:] if r.conn == conn]
        assert len(replies) == 1, f"{len(replies)} replies to request {request}"
        if replies[0].error is not CsErrorCode.CS_OK:
            raise error_for(replies[0].error, f"request {request}")
        return replies[0].payload

    def send(self, node: int, conn: ClientConnection, request: int, body: bytes) -> None:
        """A one-way request: asserts the engine answers nothing."""
        executive = self.cluster.executives[node]
        before = len(executive.replies)
        self.cluster.request(node, conn, request, body)
        self.cluster.deliver()
        assert [r for r in executive.replies[before:] if r.conn == conn] == []

    def join(self, node: int, conn: ClientConnection, group: bytes, flags: int = 0) -> None:
        self.request(node, conn, CpgRequestId.JOIN, wire.encode_join(group, conn.pid, flags))

    def leave(self, node: int, conn: ClientConnection, group: bytes) -> None:
        self.request(node, conn, CpgRequestId.LEAVE, wire.encode_leave(group, conn.pid))

    def mcast(self, node: int, conn: ClientConnection, message: bytes) -> None:
        self.send(node, conn, CpgRequestId.MCAST, wire.encode_mcast(2, message))

    def notifications(self, node: int, conn: ClientConnection) -> list[Notification]:
        """The notifications for ``conn`` since the last call."""
        notes = [n for n in self.cluster.executives[node].notifications if n.conn == conn]
        fresh = notes[self._seen[conn] :]
        self._seen[conn] = len(notes)
        return fresh

    def events(self, node: int, conn: ClientConnection) -> list[Event]:
        """The callbacks for ``conn`` since the last call (flow control left out)."""
        return [e for n in self.notifications(node, conn) for e in decode_events(n)]

    def deliveries(self, node: int, conn: ClientConnection) -> list[tuple[int, int, bytes]]:
        return [
            (e.nodeid, e.pid, e.message)
            for e in self.events(node, conn)
            if isinstance(e, DeliverBody)
        ]


def addresses(*triples: tuple[int, int, int]) -> tuple[CpgAddress, ...]:
    return tuple(CpgAddress(n, p, wire.CpgReason(r)) for n, p, r in triples)


class EngineTransport:
    """A ``CpgTransport`` whose other end is one node's engine in a :class:`CpgNodes`."""

    def __init__(self, nodes: CpgNodes, node: int, pid: int) -> None:
        self.nodes = nodes
        self.node = node
        self.conn = nodes.connect(node, pid)
        self.closed = False
        self.sent: list[bytes] = []
        self._fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)

    def request(self, message_id: int, payload: bytes) -> bytes:
        self._check_open()
        try:
            return self.nodes.request(self.node, self.conn, message_id, payload)
        finally:
            self._signal()

    def send(self, message_id: int, payload: bytes) -> None:
        self._check_open()
        self.sent.append(payload)
        self.nodes.send(self.node, self.conn, message_id, payload)
        self._signal()

    def _signal(self) -> None:
        """Make ``fd_get`` readable while notifications wait, as the IPC client's is."""
        notes = self.nodes.cluster.executives[self.node].notifications
        mine = [n for n in notes if n.conn == self.conn]
        if len(mine) > self.nodes._seen[self.conn]:
            os.eventfd_write(self._fd, 1)

    def fd_get(self) -> int:
        self._check_open()
        return self._fd

    def dispatch(self, flags: int, callback: Callable[[int, bytes], None]) -> None:
        self._check_open()
        queue = self.nodes.notifications(self.node, self.conn)
        if not queue and flags == DispatchFlag.ONE_NONBLOCKING:
            raise TryAgainError("no notification waiting")
        assert queue or flags == DispatchFlag.ALL, "a blocking dispatch would wait forever"
        if flags in (DispatchFlag.ONE, DispatchFlag.ONE_NONBLOCKING):
            queue, rest = queue[:1], queue[1:]
            self.nodes._seen[self.conn] -= len(rest)  # put back what was not taken
        with contextlib.suppress(BlockingIOError):
            os.eventfd_read(self._fd)
        self._put_back: tuple[int, bytes] | None = None
        for note in queue:
            callback(note.message_id, note.payload)
            if self._put_back is not None:  # only ONE dispatches run part of a DELIVER
                raise AssertionError("the fake transport cannot queue what was put back")

    def put_back(self, message_id: int, payload: bytes) -> None:
        self._put_back = (message_id, payload)

    def finalize(self) -> None:
        self._check_open()
        self.closed = True
        self.nodes.cluster.disconnect(self.node, self.conn)
        self.nodes.cluster.deliver()
        os.close(self._fd)

    def _check_open(self) -> None:
        if self.closed:
            raise LibraryError("connection closed")


@dataclass
class Recorder:
    """Callbacks of one lib handle, recorded in order."""

    events: list[tuple[object, ...]] = field(default_factory=list)

    def deliver(self, group: bytes, nodeid: int, pid: int, msg: bytes) -> None:
        self.events.append(("deliver", group, nodeid, pid, msg))

    def confchg(
        self,
        group: bytes,
        members: list[CpgAddress],
        left: list[CpgAddress],
        joined: list[CpgAddress],
    ) -> None:
        self.events.append(("confchg", group, members, left, joined))

    def totem(self, ring_id: CpgRingId, members: list[int]) -> None:
        self.events.append(("totem", ring_id, members))


def lib_handle(
    nodes: CpgNodes, node: int, pid: int, flags: int = 0
) -> tuple[CpgHandle, Recorder, EngineTransport]:
    recorder = Recorder()
    transport = EngineTransport(nodes, node, pid)
    handle = model_initialize(
        MODEL_V1,
        recorder.deliver,
        recorder.confchg,
        recorder.totem,
        flags=flags,
        transport=transport,
    )
    return handle, recorder, transport


class AsyncEngineTransport:
    """The asyncio face of :class:`EngineTransport`."""

    def __init__(self, inner: EngineTransport) -> None:
        self.inner = inner
        self.pending: list[tuple[int, bytes]] = []

    async def request(self, message_id: int, payload: bytes) -> bytes:
        return self.inner.request(message_id, payload)

    def send(self, message_id: int, payload: bytes) -> None:
        self.inner.send(message_id, payload)

    async def __anext__(self) -> tuple[int, bytes]:
        if not self.pending:
            self.inner.dispatch(DispatchFlag.ALL, lambda m, p: self.pending.append((m, p)))
        assert self.pending, "nothing to read: the test would hang"
        return self.pending.pop(0)

    async def aclose(self) -> None:
        self.inner.finalize()
