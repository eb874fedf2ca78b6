"""A deterministic probe engine for the sync simulation, and the executive it runs against.

Theory of operation
-------------------
:class:`ProbeEngine` is a real :class:`~pycorosync.plugins.engine.ServiceEngine` whose
synchronised state is exactly what sync must guarantee: in each round every member multicasts
``parts`` numbered pieces ``(ring, part, parts)`` from ``sync_process`` - one piece per call, so
the driver's "call me again" path runs every round - and ``sync_activate`` takes the pieces of
that ring it received as its state. The sync protocol is correct for the probe when every
member's pieces are all there at activation (they were multicast before that member's barrier,
on the same lane) and every member activates the same state. Pieces of another ring are ignored,
as a real engine ignores a stale joinlist. Every call is reported to the sync checker
(:mod:`.sync_check`) through ``record``.

:class:`ProbeExecutive` is the engine's :class:`~pycorosync.plugins.engine.ExecutiveApi`: the
plugin test double, with ``mcast`` wired to the node's totempg (``send`` returns False when the
queue is full, which the engine sees as WOULD_BLOCK).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ClassVar, cast

import msgpack

from pycorosync.exec.totem.events import ConfigKind, Guarantee, RingId
from pycorosync.exec.totem.sim.sync_check import (
    Aborted,
    Activated,
    InitCalled,
    ProcessDone,
    ProcessStarted,
    SyncEntry,
)
from pycorosync.plugins.engine import (
    ClientConnection,
    ExecHandler,
    ExecutiveApi,
    LibHandler,
    SendStatus,
)
from pycorosync.plugins.testing import FakeExecutive

__all__ = ["PROBE_PIECE", "ProbeEngine", "ProbeExecutive", "probe_class"]

PROBE_PIECE = 0
"""The probe's one exec function: a piece of a member's sync state."""

Record = Callable[[SyncEntry], None]
SendFn = Callable[[int, bytes, Guarantee], bool]
"""``send(function_id, payload, guarantee)``: False when the queue is full."""


class ProbeExecutive(FakeExecutive):
    """The plugin test double, multicasting through the simulated node's totempg."""

    def __init__(self, nodeid: int, send: SendFn) -> None:
        super().__init__(nodeid)
        self._send = send

    def mcast(
        self, function_id: int, payload: bytes, guarantee: Guarantee = Guarantee.AGREED
    ) -> SendStatus:
        if self._send(function_id, payload, guarantee):
            return SendStatus.QUEUED
        return SendStatus.WOULD_BLOCK


class ProbeEngine:
    """See the module docstring; build per-service subclasses with :func:`probe_class`."""

    name: ClassVar[str] = "probe"
    service_id: ClassVar[int] = 0
    priority: ClassVar[int] = 1
    version: ClassVar[int] = 0
    allow_inquorate: ClassVar[bool] = True
    own_worker: ClassVar[bool] = False

    def __init__(self, record: Record, parts: int) -> None:
        self._record = record
        self._parts = parts
        self._api: ExecutiveApi | None = None
        self._ring: RingId | None = None
        self._members: frozenset[int] = frozenset()
        self._sent = 0
        self._started = False
        self._pieces: set[tuple[int, int, int]] = set()

    def exec_init(self, api: ExecutiveApi) -> None:
        self._api = api

    def exec_exit(self) -> bool:
        return True

    def lib_init(self, conn: ClientConnection) -> None:
        """The probe serves no clients."""

    def lib_exit(self, conn: ClientConnection) -> None:
        """The probe serves no clients."""

    def confchg(
        self,
        kind: ConfigKind,
        members: tuple[int, ...],
        left: tuple[int, ...],
        joined: tuple[int, ...],
        ring_id: RingId,
    ) -> None:
        """Sync carries everything the probe needs."""

    def sync_init(
        self, transitional_members: tuple[int, ...], members: tuple[int, ...], ring_id: RingId
    ) -> None:
        self._ring, self._members = ring_id, frozenset(members)
        self._sent, self._started = 0, False
        self._pieces = set()
        self._record(InitCalled(self.service_id, ring_id, transitional_members, members))

    def sync_process(self) -> bool:
        ring, api = self._ring, self._api
        assert ring is not None, "sync_process before sync_init"
        assert api is not None, "sync_process before exec_init"
        if not self._started:
            self._started = True
            self._record(ProcessStarted(self.service_id, ring))
        if self._sent < self._parts:
            piece = msgpack.packb([ring.seq, ring.rep, self._sent, self._parts])
            if api.mcast(PROBE_PIECE, piece) is SendStatus.WOULD_BLOCK:
                return False
            self._sent += 1
            return False  # one piece per call: the driver must come back
        self._record(ProcessDone(self.service_id, ring))
        return True

    def sync_activate(self) -> None:
        assert self._ring is not None
        self._record(Activated(self.service_id, self._ring, tuple(sorted(self._pieces))))

    def sync_abort(self) -> None:
        assert self._ring is not None
        self._record(Aborted(self.service_id, self._ring))

    def _exec_piece(self, payload: bytes, sender: int) -> None:
        seq, rep, part, parts = msgpack.unpackb(payload)
        if RingId(seq=seq, rep=rep) == self._ring and sender in self._members:
            self._pieces.add((sender, part, parts))

    lib_handlers: ClassVar[Mapping[int, LibHandler[Any]]] = {}
    exec_handlers: ClassVar[Mapping[int, ExecHandler[Any]]] = {
        PROBE_PIECE: ExecHandler(_exec_piece)
    }


def probe_class(service_id: int) -> type[ProbeEngine]:
    """A probe engine class with its own ``service_id`` (class attributes, as engines have)."""
    attributes = {"service_id": service_id, "name": f"probe{service_id}"}
    return cast(type[ProbeEngine], type(f"Probe{service_id}", (ProbeEngine,), attributes))
