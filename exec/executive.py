"""The executive: what the Totem process does above Totem SRP - totempg, sync, cmap, workers.

Theory of operation
-------------------
:class:`~pycorosync.exec.totemproc.TotemProcess` runs the SRP core on the event loop and hands
every delivery and configuration change, in order, to :class:`Executive`, which

* turns SRP frames into messages with totempg (:class:`~pycorosync.exec.totem.pg.TotemPg`,
  group ``a`` for engines, group ``sync`` for the sync protocol) and routes each engine
  message by its service id to the worker hosting that engine - one ``Deliver`` record per
  frame and worker;
* passes every configuration change to every worker (engines' ``confchg``), updates
  ``runtime.members.*`` and drives the sync coordinator
  (:class:`~pycorosync.exec.sync.SyncCoordinator`): its steps go to the workers, the workers'
  "done" come back, and when a round completes the SRP application queue is released and -
  the first time - "Completed service synchronization, ready to provide service." is logged
  and systemd told READY=1;
* owns the cmap store: writes from workers are applied here in one order
  (:mod:`pycorosync.exec.cmap_owner`) and every change fans out to every worker's replica;
* multicasts what workers ask for, holding back a worker whose request finds the SRP queue
  full (back-pressure reaches its clients as ``CS_ERR_TRY_AGAIN``); totempg's staged frame
  goes into SRP's queue when a token arrives (:meth:`Executive.before_token`), or at once
  while the ring holds its token, so that the hold is cancelled, and
* supervises the workers: a worker that dies, or that stays over its delivery budget for
  longer than the token timeout, is (killed and) restarted, and the node leaves the ring and
  joins again with a fresh SRP core, so that every engine is rebuilt through the one sync path
  (DESIGN.md); at shutdown the engines are unloaded before the node leaves the ring.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence

from pycorosync.exec.cmap_owner import apply_write
from pycorosync.exec.cmap_owner_wire import decode_write_request
from pycorosync.exec.icmap import CmapStore
from pycorosync.exec.icmap_records import encode_change, encode_snapshot
from pycorosync.exec.logformat import NOTICE
from pycorosync.exec.logsys import subsys_logger
from pycorosync.exec.runtime_keys import apply_membership
from pycorosync.exec.shmring import Lane
from pycorosync.exec.sync import (
    SyncAbort,
    SyncActivate,
    SyncComplete,
    SyncCoordinator,
    SyncInit,
    SyncLog,
    SyncMcast,
    SyncOutput,
    SyncProcess,
)
from pycorosync.exec.totem.events import ConfigChange, Delivery, Guarantee, RingId
from pycorosync.exec.totem.pg import FrameOutlet, TotemPg
from pycorosync.exec.totem.pg import Lane as PgLane
from pycorosync.exec.totem.pg_wire import (
    PgWireError,
    encode_groups,
    encode_service,
    service_fields,
)
from pycorosync.exec.totem.srp import Srp
from pycorosync.exec.worker_proto import (
    CmapChanges,
    CmapResult,
    CmapWriteRequest,
    ConfChg,
    Deliver,
    Init,
    McastRequest,
    Ready,
    Record,
    Shutdown,
    Stats,
    SyncDone,
    SyncStep,
    SyncStepKind,
    Unloaded,
)
from pycorosync.exec.workers import WorkerLink, WorkerPlan, WorkerSettings
from pycorosync.lib.errors import CsError

log = subsys_logger("MAIN")
serv_log = subsys_logger("SERV")
sync_log = subsys_logger("SYNC")

ENGINE_GROUP = b"a"
SYNC_GROUP = b"sync"
_ENGINE_HEADER = encode_groups([ENGINE_GROUP], b"")
"""The group header of every engine message, made (and checked) once."""
STATS_PERIOD = 1.0
"""Seconds between two reports of the stats map's figures to the workers."""
UNLOAD_TIMEOUT = 10.0
"""Seconds a worker may take to unload its engines at shutdown before it is killed."""

CoreFactory = Callable[[], Srp]


class Executive:
    def __init__(
        self,
        *,
        loop: asyncio.AbstractEventLoop,
        store: CmapStore,
        plans: Sequence[WorkerPlan],
        settings: WorkerSettings,
        addresses: Mapping[int, str],
        core: Srp,
        core_factory: CoreFactory,
        max_frame: int,
        notify_ready: Callable[[], None],
    ) -> None:
        self._loop = loop
        self.store = store
        self._plans = list(plans)
        self._settings = settings
        self._addresses = dict(addresses)
        self._core_factory = core_factory
        self._max_frame = max_frame
        self._notify_ready = notify_ready
        self.core = core
        self._kick: Callable[[], None] = lambda: None
        self._kick_armed = False
        self._figures: Callable[[], Mapping[str, int]] = dict
        self._stats_timer: asyncio.TimerHandle | None = None
        self._replace_core: Callable[[Srp], None] = lambda core: None
        self.links: list[WorkerLink] = []
        self._by_service: dict[int, WorkerLink] = {}
        self._held: dict[WorkerLink, McastRequest] = {}
        self._local_services = sorted(s for plan in self._plans for s in plan.services)
        self.pg = self._new_pg()
        self.sync = SyncCoordinator(self._local_services)
        self._told_ready = False
        self._stopping = False
        self._budget_timer: asyncio.TimerHandle | None = None

    # -- wiring ------------------------------------------------------------------------------

    def attach(
        self,
        kick: Callable[[], None],
        replace_core: Callable[[Srp], None],
        figures: Callable[[], Mapping[str, int]],
    ) -> None:
        """Give the executive the Totem process's ``flush``, ``replace_core`` and ``figures``
        (the counters of the stats map)."""
        self._kick = kick
        self._replace_core = replace_core
        self._figures = figures

    def _new_pg(self) -> TotemPg:
        queue = self.core.room()  # an empty queue: its size

        def app(frame: bytes, guarantee: Guarantee) -> bool:
            return self.core.mcast(frame, guarantee, sync=False)

        def sync(frame: bytes, guarantee: Guarantee) -> bool:
            return self.core.mcast(frame, guarantee, sync=True)

        pg = TotemPg(
            max_frame=self._max_frame,
            app=FrameOutlet(app, lambda: self.core.room(sync=False), queue),
            sync=FrameOutlet(sync, lambda: self.core.room(sync=True), queue),
        )
        pg.join(ENGINE_GROUP)
        pg.join(SYNC_GROUP)
        return pg

    def start(self) -> None:
        for plan in self._plans:
            self._start_worker(plan)
        self._arm_budget_check()
        self._push_stats()

    def _start_worker(self, plan: WorkerPlan) -> WorkerLink:
        link = WorkerLink(
            plan,
            self._settings,
            self._loop,
            self._on_record,
            self._on_exit,
            on_batch=self._kick_once,
        )
        link.send(Init(self.core.nodeid, encode_snapshot(self.store.snapshot())), Lane.SYNC)
        self.links.append(link)
        for service in plan.services:
            self._by_service[service] = link
        link.spawn()
        return link

    # -- from Totem --------------------------------------------------------------------------

    def on_delivery(self, delivery: Delivery) -> None:
        sender = delivery.sender
        try:
            messages = self.pg.deliver_payloads(sender, delivery.payload)
        except PgWireError as error:
            log.warning("Discarded a frame from node %d: %s", sender, error)
            return
        # One Deliver record per worker for the frame's engine messages; a sync message in
        # between sends what came before it first, so every worker sees the frame's order.
        batches: dict[WorkerLink, list[tuple[int, int, bytes]]] = {}
        for group, payload in messages:
            if group == ENGINE_GROUP:
                self._route(sender, payload, batches)
            elif group == SYNC_GROUP:
                self._send_batches(delivery, batches)
                self.sync.deliver(sender, payload)
                self._run_sync()
        self._send_batches(delivery, batches)

    def _route(
        self,
        sender: int,
        payload: bytes,
        batches: dict[WorkerLink, list[tuple[int, int, bytes]]],
    ) -> None:
        try:
            service, function, body = service_fields(payload)
        except PgWireError as error:
            log.warning("Discarded a message from node %d: %s", sender, error)
            return
        link = self._by_service.get(service)
        if link is None:
            log.debug("Discarded a message for service %d, not loaded here", service)
            return
        batch = batches.get(link)
        if batch is None:
            batch = batches[link] = []
        batch.append((service, function, body))

    @staticmethod
    def _send_batches(
        delivery: Delivery, batches: dict[WorkerLink, list[tuple[int, int, bytes]]]
    ) -> None:
        for link, batch in batches.items():
            link.send(Deliver(delivery.sender, delivery.guarantee, tuple(batch)), Lane.APP)
        batches.clear()

    def on_config_change(self, change: ConfigChange) -> None:
        self.pg.config_change(change)
        record = ConfChg(change.kind, change.members, change.left, change.joined, change.ring_id)
        for link in self.links:
            link.send(record, Lane.SYNC)
        apply_membership(self.store, change, self._addresses)
        self._publish_cmap()
        self.sync.config_change(change)
        self._run_sync()

    def before_token(self) -> None:
        """The token is here: whatever is staged leaves on this visit. Staged frames are
        emitted only now (or when full), so a frame packs every message sent in between.
        What the workers wrote meanwhile is taken first, to leave on this visit too."""
        for link in self.links:
            link.take_ready()
        if self._held:
            self._retry_held()
        self.pg.flush()

    def after_step(self) -> None:
        """Before every output round of a Totem wake-up: retry held multicasts; emit the
        staged frames too while the ring holds its token.

        A frame that waits in SRP's queue rather than here packs no more messages, so frames
        leave only when full or at the token. But an idle ring holds its token, and only a
        frame in SRP's queue makes SRP cancel the hold: then the staged frame goes at once."""
        if self._held:
            self._retry_held()
        if self.core.token_held:
            self.pg.flush()

    def _retry_held(self) -> None:
        for link, request in list(self._held.items()):
            rest = self._mcast(request)
            if rest is not None:
                self._held[link] = rest
                break
            del self._held[link]
            link.resume()

    # -- sync --------------------------------------------------------------------------------

    def _run_sync(self) -> None:
        for output in self.sync.take_output():
            self._sync_output(output)

    def _sync_output(self, output: SyncOutput) -> None:
        if not isinstance(output, SyncLog):
            sync_log.debug("sync: %s", output)
        match output:
            case SyncMcast(payload):
                if not self.pg.mcast([SYNC_GROUP], payload, lane=PgLane.SYNC):
                    sync_log.error("The sync queue is full; the sync message waits a round")
            case SyncInit(transitional, members, ring_id):
                step = SyncStep(SyncStepKind.INIT, -1, ring_id, transitional, members)
                for link in self.links:
                    link.send(step, Lane.SYNC)
            case SyncProcess(service, ring_id):
                self._step(SyncStepKind.PROCESS, service, ring_id)
            case SyncActivate(service, ring_id):
                self._step(SyncStepKind.ACTIVATE, service, ring_id)
            case SyncAbort(service, ring_id):
                self._step(SyncStepKind.ABORT, service, ring_id)
            case SyncComplete(ring_id, _members):
                self._sync_complete(ring_id)
            case SyncLog(level, text):
                sync_log.log(level, "%s", text)

    def _step(self, kind: SyncStepKind, service: int, ring_id: RingId) -> None:
        link = self._by_service.get(service)
        if link is None:
            return
        link.send(SyncStep(kind, service, ring_id), Lane.SYNC)

    def _sync_complete(self, ring_id: RingId) -> None:
        if ring_id == self.core.ring_id:
            # A round of the previous ring can complete in the same step that installed the
            # next one; releasing then would let the new ring's traffic overtake its sync.
            self.core.release_app()
        for link in self.links:
            link.send(SyncStep(SyncStepKind.COMPLETE, -1, ring_id), Lane.SYNC)
        log.log(NOTICE, "Completed service synchronization, ready to provide service.")
        if not self._told_ready:
            self._told_ready = True
            self._notify_ready()

    # -- from workers ------------------------------------------------------------------------

    def _on_record(self, link: WorkerLink, record: Record) -> None:
        match record:
            case McastRequest():
                rest = self._mcast(record)
                if rest is not None:
                    self._held[link] = rest
                    link.pause()
            case SyncDone(service, ring_id):
                sync_log.debug(
                    "sync: worker %d done with %d for %s", link.plan.index, service, ring_id
                )
                self.sync.service_done(service, ring_id)
                self._run_sync()
            case CmapWriteRequest(write):
                self._cmap_write(link, write)
            case Ready(services):
                link.ready = True
                serv_log.debug("Worker %d is ready: services %s", link.plan.index, services)
            case Unloaded():
                link.finished.set()
            case _:
                log.error("Worker %d sent a %s record", link.plan.index, type(record).__name__)
                link.kill()
                return
        if not self._kick_armed:  # once a loop turn, however many records it brought
            self._kick_armed = True
            self._loop.call_soon(self._kick_once)

    def _kick_once(self) -> None:
        # Run at the end of the worker's wake-up that brought the records, so that they
        # leave in that turn; the call_soon armed with them then finds nothing to do.
        if self._kick_armed:
            self._kick_armed = False
            self._kick()

    def _mcast(self, request: McastRequest) -> McastRequest | None:
        """Hand every message of ``request`` to totempg, in order; what did not fit yet."""
        lane = PgLane.SYNC if request.sync else PgLane.APP
        mcast = self.pg.mcast_with_header
        for index, (service, function, guarantee, payload) in enumerate(request.messages):
            try:
                frame = encode_service(service, function, payload)
                if not mcast(_ENGINE_HEADER, frame, guarantee=guarantee, lane=lane):
                    return McastRequest(request.sync, request.messages[index:])
            except CsError as error:
                serv_log.error("Dropped a multicast of service %d: %s", service, error)
        return None

    def _cmap_write(self, link: WorkerLink, data: bytes) -> None:
        try:
            request = decode_write_request(data)
        except CsError as error:
            serv_log.error(
                "Worker %d sent a bad cmap write (%s); restarting it", link.plan.index, error
            )
            link.kill()
            return
        code, _changes = apply_write(self.store, request.write)
        # The change reaches every replica before the writer hears the result, so a client
        # told CS_OK reads its own write.
        self._publish_cmap()
        link.send(CmapResult(request.request_id, code), Lane.SYNC)

    def _publish_cmap(self) -> None:
        changes = self.store.take_changes()
        if not changes:
            return
        record = CmapChanges(tuple(encode_change(change) for change in changes))
        for link in self.links:
            link.send(record, Lane.SYNC)

    # -- the stats map ------------------------------------------------------------------------

    def _push_stats(self) -> None:
        """Send every worker the figures of the stats map; again every STATS_PERIOD.

        Corosync computes them on demand; a worker cannot ask the Totem process synchronously,
        so it serves a copy at most this old."""
        record = Stats(tuple(sorted(self._figures().items())))
        for link in self.links:
            link.send(record, Lane.SYNC)
        if not self._stopping:
            self._stats_timer = self._loop.call_later(STATS_PERIOD, self._push_stats)

    # -- supervision -------------------------------------------------------------------------

    def _arm_budget_check(self) -> None:
        period = max(self._settings.token_timeout / 4, 0.05)
        self._budget_timer = self._loop.call_later(period, self._check_budgets)

    def _check_budgets(self) -> None:
        now = self._loop.time()
        for link in self.links:
            if not link.closed and link.over_budget(now):
                serv_log.error(
                    "Worker %d has not kept up with the ring for over %d ms (%d records "
                    "waiting); restarting it",
                    link.plan.index,
                    self._settings.token_timeout * 1000,
                    link.backlog,
                )
                link.kill()
        if not self._stopping:
            self._arm_budget_check()

    def _on_exit(self, link: WorkerLink, code: int | None) -> None:
        self._held.pop(link, None)
        if self._stopping:
            return
        serv_log.error(
            "Service engine worker %d (%s) exited with code %s; restarting it and rejoining",
            link.plan.index,
            ", ".join(link.plan.names),
            code,
        )
        self._loop.call_soon(self._restart, link)  # not from inside the link's own callback

    def _restart(self, dead: WorkerLink) -> None:
        self.links.remove(dead)
        # A fresh core, totempg and sync round for the whole node: leaving and joining again
        # makes every engine on every node resynchronise through the normal sync path.
        self.core = self._core_factory()
        self.pg = self._new_pg()
        self.sync = SyncCoordinator(self._local_services)
        self._held.clear()
        for link in self.links:
            link.resume()
        self._start_worker(dead.plan)
        self._replace_core(self.core)

    async def shutdown(self) -> None:
        """Unload every engine (workers in reverse order), then let the caller leave the ring."""
        self._stopping = True
        for timer in (self._budget_timer, self._stats_timer):
            if timer is not None:
                timer.cancel()
        for link in reversed(self.links):
            link.send(Shutdown(), Lane.SYNC)
            self._kick()
            await self._wait_unloaded(link)
        for link in self.links:
            link.close()
            await self._reap(link)

    async def _wait_unloaded(self, link: WorkerLink) -> None:
        try:
            await asyncio.wait_for(link.finished.wait(), UNLOAD_TIMEOUT)
        except TimeoutError:
            serv_log.error("Worker %d did not unload in time; killing it", link.plan.index)
            link.kill()

    async def _reap(self, link: WorkerLink) -> None:
        if link.process is None:
            return
        try:
            await asyncio.wait_for(link.exited.wait(), UNLOAD_TIMEOUT)
        except TimeoutError:
            link.kill()
            await link.exited.wait()
