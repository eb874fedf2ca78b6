"""The echo engine: a client's request goes round the ring and comes back to it.

* ``REQ_ECHO`` (flow control REQUIRED): the payload is multicast in agreed order; every node
  counts it, and the node the client is connected to replies with the same payload. If the
  ring is full the client gets ``CS_ERR_TRY_AGAIN`` at once.
* ``REQ_STATS`` (NOT_REQUIRED): replies with this node's view, ``{"echoed": n, "members": [...]}``.
* The echo count is cluster state: every member delivers the same echoes, and a sync round
  (each member multicasts its count, everyone keeps the largest) brings joining nodes up to
  date.

Messages are msgpack: an echo is ``[origin_nodeid, conn_id, payload]``, a sync count
``[ring_seq, count]``. A malformed message from a peer is logged and dropped.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import ClassVar

import msgpack

from pycorosync.exec.totem.events import ConfigKind, RingId
from pycorosync.plugins.engine import (
    ClientConnection,
    ExecHandler,
    ExecutiveApi,
    FlowControl,
    LibHandler,
    SendStatus,
)

log = logging.getLogger(__name__)

REQ_ECHO = 0
REQ_STATS = 1
RES_ECHO = 0
RES_STATS = 1
MCAST_ECHO = 0
MCAST_SYNC_COUNT = 1


class EchoEngine:
    name: ClassVar[str] = "echo"
    service_id: ClassVar[int] = 1000
    priority: ClassVar[int] = 10
    version: ClassVar[int] = 1
    allow_inquorate: ClassVar[bool] = True
    own_worker: ClassVar[bool] = True

    def __init__(self) -> None:
        self._api: ExecutiveApi | None = None
        self._clients: dict[int, ClientConnection] = {}
        self._members: tuple[int, ...] = ()
        self.echoed = 0
        self._sync_ring: RingId | None = None
        self._sync_best = 0
        self._sync_sent = False

    @property
    def api(self) -> ExecutiveApi:
        if self._api is None:
            raise RuntimeError("echo engine used before exec_init")
        return self._api

    # Lifecycle ----------------------------------------------------------------------------

    def exec_init(self, api: ExecutiveApi) -> None:
        self._api = api

    def exec_exit(self) -> bool:
        self._clients.clear()
        return True

    def lib_init(self, conn: ClientConnection) -> None:
        self._clients[conn.conn_id] = conn

    def lib_exit(self, conn: ClientConnection) -> None:
        self._clients.pop(conn.conn_id, None)

    def confchg(
        self,
        kind: ConfigKind,
        members: tuple[int, ...],
        left: tuple[int, ...],
        joined: tuple[int, ...],
        ring_id: RingId,
    ) -> None:
        if kind is ConfigKind.REGULAR:
            self._members = members

    # Sync: everyone multicasts its count; everyone keeps the largest ------------------------

    def sync_init(
        self,
        transitional_members: tuple[int, ...],
        members: tuple[int, ...],
        ring_id: RingId,
    ) -> None:
        self._sync_ring = ring_id
        self._sync_best = self.echoed
        self._sync_sent = False

    def sync_process(self) -> bool:
        ring = self._sync_ring
        if ring is None:
            return True  # no round in progress: nothing to do
        if not self._sync_sent:
            message = msgpack.packb([ring.seq, self.echoed])
            self._sync_sent = self.api.mcast(MCAST_SYNC_COUNT, message) is SendStatus.QUEUED
        return self._sync_sent

    def sync_activate(self) -> None:
        self.echoed = self._sync_best
        self._sync_ring = None

    def sync_abort(self) -> None:
        self._sync_ring = None

    # Client requests ----------------------------------------------------------------------

    def _lib_echo(self, conn: ClientConnection, payload: bytes) -> None:
        message = msgpack.packb([self.api.nodeid, conn.conn_id, payload])
        status = self.api.mcast(MCAST_ECHO, message)
        if status is SendStatus.WOULD_BLOCK:
            self.api.reply(conn, RES_ECHO, b"", error=status.cs_error)

    def _lib_stats(self, conn: ClientConnection, payload: bytes) -> None:
        stats = {"echoed": self.echoed, "members": list(self._members)}
        self.api.reply(conn, RES_STATS, msgpack.packb(stats))

    # Peer messages ------------------------------------------------------------------------

    def _exec_echo(self, payload: bytes, sender: int) -> None:
        decoded = _unpack(payload)
        match decoded:
            case [int(origin), int(conn_id), bytes(data)] if origin == sender:
                self.echoed += 1
                conn = self._clients.get(conn_id)
                if origin == self.api.nodeid and conn is not None:
                    self.api.reply(conn, RES_ECHO, data)
            case _:
                log.warning("echo: malformed echo from node %d dropped", sender)

    def _exec_sync_count(self, payload: bytes, sender: int) -> None:
        match _unpack(payload):
            case [int(ring_seq), int(count)] if count >= 0:
                ring = self._sync_ring
                if ring is not None and ring.seq == ring_seq:
                    self._sync_best = max(self._sync_best, count)
            case _:
                log.warning("echo: malformed sync count from node %d dropped", sender)

    lib_handlers: ClassVar[Mapping[int, LibHandler[EchoEngine]]] = {
        REQ_ECHO: LibHandler(_lib_echo, FlowControl.REQUIRED),
        REQ_STATS: LibHandler(_lib_stats, FlowControl.NOT_REQUIRED),
    }
    exec_handlers: ClassVar[Mapping[int, ExecHandler[EchoEngine]]] = {
        MCAST_ECHO: ExecHandler(_exec_echo),
        MCAST_SYNC_COUNT: ExecHandler(_exec_sync_count),
    }


def _unpack(payload: bytes) -> object:
    try:
        return msgpack.unpackb(payload)
    except (ValueError, TypeError, msgpack.UnpackException):
        return None
