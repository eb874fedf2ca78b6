"""A simulated node whose sync stack hosts the real CPG engine, with simulated clients on it.

Theory of operation
-------------------
:class:`CpgStack` is a :class:`~.sync_stack.SyncStack` - SRP, totempg, the coordinator, the
driver - whose service 2 is a real :class:`~pycorosync.services.cpg.CpgEngine` (or a subclass
a test passes) instead of a probe; the probes of the other services stay. What the worker
(:mod:`pycorosync.exec.worker_host`) does for the engine, the stack does here:

* its multicasts go into the node's totempg, on the SYNC lane while the node is not in sync
  and on the APP lane after; every APP-lane frame is therefore an engine frame, reported to the
  EVS checker as submitted (as sync frames are) and routed to the engines on delivery;
* its timers (:class:`~.cpg_clients.SimTimers`) fire in simulated time: they are part of the
  stack's :meth:`next_deadline` and fire in :meth:`handle_timer`;
* it gets every configuration change (``confchg``) before the coordinator, and the sync
  driver's ``sync_init`` / ``sync_process`` / ``sync_activate`` / ``sync_abort``;
* client requests are admitted as the IPC glue admits them: a request whose handler
  multicasts (``FlowControl.REQUIRED``) is answered ``CS_ERR_TRY_AGAIN`` while the node is not
  in sync, without reaching the engine.

The node's clients are a :class:`~.cpg_clients.ClientPool`; the simulator's traffic ticks
reach it through :meth:`client_tick` (see :mod:`.cpg_runner`). A crashed and restarted node
gets a new stack, so a fresh engine and fresh clients, as a real restart would; a graceful
leave ends the process too, its clients with it (their PROCDOWNs come from the other nodes'
merge, as after a crash).
"""

from __future__ import annotations

from collections.abc import Sequence

from pycorosync.exec.sync import SyncActivate, SyncCoordinator, SyncOutput
from pycorosync.exec.totem.events import ConfigChange, ConfigKind, Delivery, Guarantee, RingId
from pycorosync.exec.totem.pg import GroupDelivery
from pycorosync.exec.totem.sim.cluster import SimError
from pycorosync.exec.totem.sim.cpg_clients import (
    ClientPool,
    ClientRegistry,
    CpgExecutive,
    SimTimers,
)
from pycorosync.exec.totem.sim.sync_check import AppDelivered
from pycorosync.exec.totem.sim.sync_stack import (
    ENGINE_GROUP,
    CoordinatorFactory,
    StackHooks,
    SyncStack,
)
from pycorosync.exec.totem.srp_config import SrpConfig
from pycorosync.lib.errors import CsErrorCode, InvalidParamError
from pycorosync.plugins.engine import ClientConnection, FlowControl, ServiceEngine
from pycorosync.services.cpg import CpgEngine

__all__ = ["CPG_SERVICE", "CpgStack"]

CPG_SERVICE = CpgEngine.service_id
SIM_HELD = 3
"""The engine's outbox bound per connection here, instead of 1024: the simulated clients that
ignore flow control then get messages dropped, which the checker follows."""


class CpgStack(SyncStack):
    """See the module docstring."""

    reports_app_frames = True

    def __init__(
        self,
        config: SrpConfig,
        nodeid: int,
        members: Sequence[int],
        ring_seq: int,
        *,
        services: Sequence[int],
        hooks: StackHooks,
        clients: ClientRegistry,
        incarnation: int,
        engine_class: type[CpgEngine] = CpgEngine,
        coordinator: CoordinatorFactory = SyncCoordinator,
    ) -> None:
        if CPG_SERVICE not in services:
            raise SimError(f"node {nodeid}: a CPG stack needs service {CPG_SERVICE}")
        self._engine_class = engine_class
        self.cpg_ring: RingId | None = None
        """The ring of this node's last CPG activation: what its clients' confchgs belong to."""
        self.transitional: tuple[int, ...] | None = None
        """The members of the transitional configuration Totem delivers now, if it does."""
        self.cause: tuple[RingId, int] | None = None
        """The Totem delivery being handled (the last one since a configuration change)."""
        self._timers = SimTimers(lambda: self._now)
        self.pool = ClientPool(
            nodeid,
            incarnation,
            clients,
            clock=lambda: self._now,
            ring_tag=lambda: (self.cpg_ring, self.transitional, self.cause),
        )
        super().__init__(
            config,
            nodeid,
            members,
            ring_seq,
            services=services,
            hooks=hooks,
            coordinator=coordinator,
        )

    @property
    def cpg(self) -> CpgEngine:
        engine = self._engines[CPG_SERVICE]
        assert isinstance(engine, CpgEngine)
        return engine

    def _build_engines(self, nodeid: int, services: Sequence[int]) -> dict[int, ServiceEngine]:
        probes = super()._build_engines(nodeid, [s for s in services if s != CPG_SERVICE])
        engine = type("SimCpgEngine", (self._engine_class,), {"held_per_conn": SIM_HELD})()
        sender = self._engine_sender(CPG_SERVICE)
        self._executive = CpgExecutive(nodeid, sender, self._timers, self.pool)
        engine.exec_init(self._executive)
        return {**probes, CPG_SERVICE: engine}

    # -- the clock -----------------------------------------------------------------------------

    def start(self, now: float) -> None:
        self._now = now
        self.pool.open(self)
        super().start(now)

    def handle_timer(self, now: float) -> None:
        self._now = now
        self._timers.fire_due(now)
        self.pool.wake(now)
        deadline = self._srp.next_deadline()
        if deadline is not None and deadline <= now:
            super().handle_timer(now)
        else:
            self._pump()

    def next_deadline(self) -> float | None:
        deadlines = [self._srp.next_deadline(), self._timers.next_deadline(), self.pool.next_wake]
        due = [d for d in deadlines if d is not None]
        return min(due) if due else None

    def mcast(
        self, payload: bytes, guarantee: Guarantee = Guarantee.AGREED, *, sync: bool = False
    ) -> bool:
        raise InvalidParamError("the CPG simulation's traffic goes through client_tick")

    def client_tick(self, now: float) -> None:
        """The simulator's traffic schedule: this node's application sends."""
        self._now = now
        self.pool.tick()
        self._pump()

    def leave(self, now: float) -> None:
        super().leave(now)
        self.pool.stopped()

    # -- the IPC layer -------------------------------------------------------------------------

    def connect(self, conn: ClientConnection) -> None:
        self.cpg.lib_init(conn)

    def request(self, conn: ClientConnection, request_id: int, payload: bytes) -> None:
        entry = type(self.cpg).lib_handlers[request_id]
        if entry.flow_control is FlowControl.REQUIRED and not self.coordinator.in_sync:
            self._executive.reply(conn, request_id, b"", CsErrorCode.CS_ERR_TRY_AGAIN)
            return
        entry.handler(self.cpg, conn, payload)

    def disconnect(self, conn: ClientConnection) -> None:
        self.cpg.lib_exit(conn)

    # -- the engines' side ---------------------------------------------------------------------

    def _apply(self, output: SyncOutput) -> None:
        if isinstance(output, SyncActivate) and output.service_id == CPG_SERVICE:
            self.cpg_ring = output.ring_id
        super()._apply(output)

    def _engines_confchg(self, change: ConfigChange) -> None:
        transitional = change.kind is ConfigKind.TRANSITIONAL
        self.transitional = tuple(change.members) if transitional else None
        self.cause = None
        super()._engines_confchg(change)

    def _on_delivery(self, event: Delivery) -> None:
        self.cause = (event.ring_id, event.seq)
        super()._on_delivery(event)

    def _on_app_frame(self, event: Delivery, messages: list[GroupDelivery]) -> None:
        """An engine frame on the APP lane: shown to the EVS checker as it is, like a sync one."""
        self._record(AppDelivered(event.sender))
        self._events.append(event)
        for message in messages:
            if message.group != ENGINE_GROUP:
                raise SimError(f"node {self.nodeid}: an APP-lane frame held {message!r}")
            self._to_engine(message)
            self._run_sync()
