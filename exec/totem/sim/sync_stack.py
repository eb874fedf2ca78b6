"""One simulated node with the whole sync path: SRP, totempg, the coordinator, the driver.

Theory of operation
-------------------
:class:`SyncStack` is a :class:`~pycorosync.exec.totem.core_api.TotemCore`, so the unchanged
:class:`~pycorosync.exec.totem.sim.cluster.SimCluster` drives it like a bare SRP core. Inside,
it plays both processes of a real node:

* the Totem process - :class:`~pycorosync.exec.totem.srp.Srp` with ``hold_app_until_sync``,
  :class:`~pycorosync.exec.totem.pg.TotemPg` (groups ``b"sync"``, ``b"a"`` for engine messages
  and ``b"app"`` for the simulator's traffic) and the
  :class:`~pycorosync.exec.sync.SyncCoordinator`; a sync message that finds the SYNC queue full
  waits in a backlog and is retried on every step, in order; a completed round releases SRP's
  application queue;
* the worker - a :class:`~pycorosync.exec.sync_driver.SyncDriver` over probe engines
  (:mod:`.sync_probe`); their multicasts go on the SYNC lane while the node is not in sync.
  Every engine is given each configuration change (``confchg``, in load order) before the
  coordinator sees it, as a worker is. Subclasses host other engines (:meth:`_build_engines`;
  :mod:`.cpg_stack` hosts the real CPG engine).

The driver's pending ``sync_process`` is called once per step (a datagram batch, a timer, a
multicast), as scheduled work would be, and its reports go straight back to the coordinator.
Every SRP event is handled in order and the sync outputs it causes are applied before the next
one, so the checker sees a completed round before any message that follows it.

What the EVS checker sees: SRP's events unchanged, except that an application frame (one
message each: the stack flushes after every send) is shown as the message it carries, which is
what the simulator submitted. Sync-lane frames are shown as they are, and reported as
submitted through ``submitted`` when SRP accepts them.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar

from pycorosync.exec.logformat import NOTICE
from pycorosync.exec.sync import (
    READY_LINE,
    SyncComplete,
    SyncCoordinator,
    SyncLog,
    SyncMcast,
    SyncOutput,
)
from pycorosync.exec.sync_driver import SyncDriver
from pycorosync.exec.sync_wire import SYNC_GROUP
from pycorosync.exec.totem.core_api import Send
from pycorosync.exec.totem.events import (
    ConfigChange,
    ConfigKind,
    Delivery,
    Guarantee,
    TotemEvent,
)
from pycorosync.exec.totem.pg import FrameOutlet, GroupDelivery, Lane, TotemPg
from pycorosync.exec.totem.pg_wire import (
    FLAG_SYNC_LANE,
    PgWireError,
    decode_service,
    encode_service,
)
from pycorosync.exec.totem.sim.cluster import SimError
from pycorosync.exec.totem.sim.sync_check import (
    AppDelivered,
    RegularInstalled,
    RoundCompleted,
    SyncEntry,
)
from pycorosync.exec.totem.sim.sync_probe import ProbeExecutive, probe_class
from pycorosync.exec.totem.srp import Srp, State
from pycorosync.exec.totem.srp_config import SrpConfig
from pycorosync.lib.errors import InvalidParamError
from pycorosync.plugins.engine import ServiceEngine, batch_end_hook

__all__ = [
    "APP_GROUP",
    "ENGINE_GROUP",
    "MAX_FRAME",
    "CoordinatorFactory",
    "EngineSender",
    "StackHooks",
    "SyncStack",
]

APP_GROUP = b"app"
ENGINE_GROUP = b"a"
"""Corosync's group of every engine's messages."""
MAX_FRAME = 1400


@dataclass(frozen=True, slots=True)
class StackHooks:
    """Where a stack reports: to the sync checker, sync frames to the EVS checker, and the
    coordinator's log lines."""

    observe: Callable[[float, SyncEntry], None]
    submitted: Callable[[bytes, Guarantee], None]
    log: Callable[[float, SyncLog], None]


CoordinatorFactory = Callable[[Sequence[int]], SyncCoordinator]
"""Builds a node's coordinator from its local service ids (tests pass broken ones)."""

EngineSender = Callable[[int, bytes, Guarantee], bool]
"""An engine's multicast into totempg: ``send(function_id, payload, guarantee)``, False when
the queue is full."""


def probe_parts(nodeid: int, service_id: int) -> int:
    """How many pieces a node's probe multicasts per round (1-3, varied across the cluster)."""
    return 1 + (nodeid + service_id) % 3


class SyncStack:
    """See the module docstring."""

    reports_app_frames: ClassVar[bool] = False
    """Whether APP-lane frames are reported through ``hooks.submitted`` (when engines, not
    the simulator's traffic, fill that lane)."""

    def __init__(
        self,
        config: SrpConfig,
        nodeid: int,
        members: Sequence[int],
        ring_seq: int,
        *,
        services: Sequence[int],
        hooks: StackHooks,
        coordinator: CoordinatorFactory = SyncCoordinator,
    ) -> None:
        self._srp = Srp(config, nodeid, members, ring_seq, hold_app_until_sync=True)
        self._hooks = hooks
        self._now = 0.0
        self._pg = TotemPg(
            max_frame=MAX_FRAME,
            app=self._outlet(config, sync=False),
            sync=self._outlet(config, sync=True),
        )
        for group in (SYNC_GROUP, ENGINE_GROUP, APP_GROUP):
            self._pg.join(group)
        self._engines = self._build_engines(nodeid, services)
        self._load_order = sorted(self._engines.values(), key=lambda e: (e.priority, e.service_id))
        """The engines as a worker loads them: confchgs and batch ends go in this order."""
        self._batch_ends = [hook for e in self._load_order if (hook := batch_end_hook(e))]
        self._driver = SyncDriver(self._engines.values())
        self.coordinator = coordinator(self._driver.service_ids)
        self._backlog: deque[bytes] = deque()
        self._sends: list[Send] = []
        self._events: list[TotemEvent] = []
        self.ready_logged = False
        self.dropped_engine_messages = 0

    # -- TotemCore ---------------------------------------------------------------------------

    @property
    def nodeid(self) -> int:
        return self._srp.nodeid

    @property
    def srp(self) -> Srp:
        return self._srp

    def start(self, now: float) -> None:
        self._now = now
        self._srp.start(now)
        self._pump()

    def handle_datagrams(self, datagrams: Sequence[bytes], now: float) -> None:
        self._now = now
        self._srp.handle_datagrams(datagrams, now)
        self._pump()

    def brings_token(self, datagrams: Sequence[bytes]) -> bool:
        return self._srp.brings_token(datagrams)  # nothing is staged here: every send flushes

    def handle_timer(self, now: float) -> None:
        self._now = now
        self._srp.handle_timer(now)
        self._pump()

    def next_deadline(self) -> float | None:
        return self._srp.next_deadline()

    def mcast(
        self, payload: bytes, guarantee: Guarantee = Guarantee.AGREED, *, sync: bool = False
    ) -> bool:
        """The simulator's application traffic: one message, one frame, on the APP lane."""
        if sync:
            raise InvalidParamError("the simulated application does not send on the sync lane")
        accepted = self._pg.mcast([APP_GROUP], payload, guarantee=guarantee, lane=Lane.APP)
        self._pump()
        return accepted

    def room(self, *, sync: bool = False) -> int:
        return self._srp.room(sync=sync)

    def counters(self) -> dict[str, int]:
        return self._srp.counters()

    def leave(self, now: float) -> None:
        self._now = now
        self._srp.leave(now)
        self._pump()

    def take_output(self) -> tuple[list[Send], list[TotemEvent]]:
        sends, events = self._sends, self._events
        self._sends, self._events = [], []
        return sends, events

    def _build_engines(self, nodeid: int, services: Sequence[int]) -> dict[int, ServiceEngine]:
        """The node's engines by service id, each given its executive (``exec_init``)."""
        engines: dict[int, ServiceEngine] = {}
        for service_id in services:
            engine = probe_class(service_id)(self._record, probe_parts(nodeid, service_id))
            engine.exec_init(ProbeExecutive(nodeid, self._engine_sender(service_id)))
            engines[service_id] = engine
        return engines

    # -- the Totem process's side ------------------------------------------------------------

    def _outlet(self, config: SrpConfig, *, sync: bool) -> FrameOutlet:
        srp = self._srp

        def mcast(frame: bytes, guarantee: Guarantee) -> bool:
            if not srp.mcast(frame, guarantee, sync=sync):
                return False
            if sync or self.reports_app_frames:
                self._hooks.submitted(frame, guarantee)
            return True

        def room() -> int:
            return srp.room(sync=sync) if srp.state is not State.DOWN else 0

        return FrameOutlet(mcast=mcast, room=room, queue_size=config.max_queue)

    def _pump(self) -> None:
        """Handle SRP's events in order until a step leaves nothing more to do."""
        while True:
            self._run_sync()
            self._pg.flush()
            sends, events = self._srp.take_output()
            self._sends.extend(sends)
            if not events:
                return
            for event in events:
                self._on_event(event)

    def _on_event(self, event: TotemEvent) -> None:
        if isinstance(event, Delivery):
            self._on_delivery(event)
            return
        if isinstance(event, ConfigChange):
            self._pg.config_change(event)
            if event.kind is ConfigKind.REGULAR:
                self._record(RegularInstalled(event.ring_id, event.members))
            self._engines_confchg(event)
            self.coordinator.config_change(event)
            self._run_sync()
        self._events.append(event)

    def _on_delivery(self, event: Delivery) -> None:
        frame = event.payload
        sync_lane = len(frame) > 1 and bool(frame[1] & FLAG_SYNC_LANE)
        try:
            messages = self._pg.deliver(event.sender, frame, event.guarantee)
        except PgWireError as error:
            raise SimError(f"node {self.nodeid}: totempg refused a frame: {error}") from None
        if not sync_lane:
            self._on_app_frame(event, messages)
        else:
            self._events.append(event)
            for message in messages:
                if message.group == SYNC_GROUP:
                    self.coordinator.deliver(message.sender, message.payload)
                else:
                    self._to_engine(message)
                self._run_sync()
        self._engines_batch_end()

    def _engines_batch_end(self) -> None:
        """As the worker host does after each Deliver record: a Totem delivery is a batch."""
        for batch_end in self._batch_ends:
            batch_end()

    def _on_app_frame(self, event: Delivery, messages: list[GroupDelivery]) -> None:
        if len(messages) != 1 or messages[0].group != APP_GROUP:
            raise SimError(f"node {self.nodeid}: an application frame held {messages!r}")
        self._record(AppDelivered(event.sender))
        self._events.append(event._replace(payload=messages[0].payload))

    def _send_backlog(self) -> None:
        while self._backlog:
            if not self._pg.mcast([SYNC_GROUP], self._backlog[0], lane=Lane.SYNC):
                return
            self._backlog.popleft()

    # -- the worker's side -------------------------------------------------------------------

    def _run_sync(self) -> None:
        """Apply the coordinator's outputs and poll the driver until both are quiet."""
        while True:
            outputs = self.coordinator.take_output()
            for output in outputs:
                self._apply(output)
            self._send_backlog()
            done = self._driver.poll()
            for report in done:
                self.coordinator.service_done(report.service_id, report.ring_id)
            if not outputs and not done:
                return

    def _apply(self, output: SyncOutput) -> None:
        if isinstance(output, SyncMcast):
            self._backlog.append(output.payload)
        elif isinstance(output, SyncComplete):
            # SRP handed us this step's events after it acted on them: it may already run
            # (and hold the application queue for) a newer ring whose confchg we have yet to
            # read. Releasing for an older round would let the new ring's traffic through.
            if output.ring_id == self._srp.ring_id:
                self._srp.release_app()
            self._record(RoundCompleted(output.ring_id, output.members))
            if not self.ready_logged:
                self.ready_logged = True
                self._hooks.log(self._now, SyncLog(NOTICE, READY_LINE))
        elif isinstance(output, SyncLog):
            self._hooks.log(self._now, output)
        else:
            self._driver.apply(output)

    def _engine_sender(self, service_id: int) -> EngineSender:
        def send(function_id: int, payload: bytes, guarantee: Guarantee) -> bool:
            message = encode_service(service_id, function_id, payload)
            # As the worker host does: the SYNC lane only until this engine has activated.
            syncing = not self.coordinator.in_sync and not self._driver.activated(service_id)
            lane = Lane.SYNC if syncing else Lane.APP
            return self._pg.mcast([ENGINE_GROUP], message, guarantee=guarantee, lane=lane)

        return send

    def _engines_confchg(self, change: ConfigChange) -> None:
        """Every engine, in load order, as the worker gives a configuration change."""
        for engine in self._load_order:
            engine.confchg(change.kind, change.members, change.left, change.joined, change.ring_id)

    def _to_engine(self, message: GroupDelivery) -> None:
        try:
            decoded = decode_service(message.payload)
        except PgWireError as error:
            raise SimError(f"node {self.nodeid}: bad engine message: {error}") from None
        engine = self._engines.get(decoded.service)
        handler = None if engine is None else type(engine).exec_handlers.get(decoded.function)
        if engine is None or handler is None:
            self.dropped_engine_messages += 1  # not loaded here, as main.c drops it
            return
        handler.handler(engine, decoded.body, message.sender)

    def _record(self, entry: SyncEntry) -> None:
        self._hooks.observe(self._now, entry)
