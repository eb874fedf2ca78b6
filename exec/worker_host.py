"""The engine host inside a worker process: applies the Totem process's records to the engines.

Theory of operation
-------------------
A worker hosts one or more service engines (DESIGN.md). :class:`WorkerHost` is everything a
worker does *except* I/O: it is given the records the Totem process sent, already in stamp
order (:class:`~pycorosync.exec.worker_proto.StampOrder`), and client requests from the IPC
server, and it answers through three injected outlets - ``to_totem`` (a record onto the
worker → Totem ring; False when the ring is full), a :class:`Clients` (replies and
notifications) and a :class:`Scheduler` (timers on the worker's loop). The asyncio worker
(:mod:`pycorosync.exec.worker`) and the unit tests drive the same object.

Order of calls into engines, as Corosync's executive makes them:

* ``exec_init`` in load order ((priority, service id)), once :class:`Init` has built the cmap
  replica; then :class:`Ready` tells the Totem process which service ids live here.
* A :class:`Deliver` goes to ``exec_handlers[function]`` of the engine with that service id;
  a configuration change goes to every engine in load order.
* Sync steps go to the :class:`~pycorosync.exec.sync_driver.SyncDriver` - the code the
  simulator runs: INIT calls ``sync_init`` of every engine; PROCESS runs one engine's
  ``sync_process`` - once per loop turn while it returns False, so a long sync never starves
  the worker - and then reports :class:`SyncDone`; ACTIVATE and ABORT call that engine;
  COMPLETE ends the round. An engine that raises in a sync callback fails the worker (it is
  restarted and the node resynchronises). During a round client requests whose handler
  multicasts (``FlowControl.REQUIRED``) are answered ``CS_ERR_TRY_AGAIN``, as Corosync holds
  them back, and engines' multicasts travel on the SYNC lane.
* :class:`Shutdown` runs ``exec_exit`` in reverse load order, each again until it returns True,
  then sends :class:`Unloaded`.

A client request is admitted as Corosync's IPC glue admits it (a refusal is answered with the
request's own message id): an unknown request id is
answered ``CS_ERR_INVALID_PARAM``; an engine that does not allow an inquorate partition
answers ``CS_ERR_TRY_AGAIN`` while the node is inquorate; a REQUIRED request during sync or
while the ring towards the Totem process is full is answered ``CS_ERR_TRY_AGAIN``. An engine
callback that raises is logged and the call dropped; the engine and the worker keep running.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from pycorosync.exec.icmap_records import CmapRecordError, decode_change, decode_snapshot
from pycorosync.exec.icmap_replica import CmapReplica
from pycorosync.exec.logformat import NOTICE
from pycorosync.exec.logsys import subsys_logger
from pycorosync.exec.shmring import Lane
from pycorosync.exec.sync import SyncAbort, SyncActivate, SyncInit, SyncProcess
from pycorosync.exec.sync_driver import SyncDriver
from pycorosync.exec.totem.events import Guarantee
from pycorosync.exec.worker_api import EngineApi
from pycorosync.exec.worker_proto import (
    CmapChanges,
    CmapResult,
    ConfChg,
    Deliver,
    Init,
    McastRequest,
    Quorum,
    Ready,
    Record,
    Shutdown,
    Stats,
    SyncDone,
    SyncStep,
    SyncStepKind,
    Unloaded,
    WorkerProtoError,
)
from pycorosync.lib.cmap_types import CmapEntry, ValueType
from pycorosync.lib.errors import CsError, CsErrorCode
from pycorosync.plugins.engine import ClientConnection, FlowControl, ServiceEngine, batch_end_hook

log = subsys_logger("SERV")

_ENGINE_COMMANDS: dict[SyncStepKind, type[SyncProcess | SyncActivate | SyncAbort]] = {
    SyncStepKind.PROCESS: SyncProcess,
    SyncStepKind.ACTIVATE: SyncActivate,
    SyncStepKind.ABORT: SyncAbort,
}

ToTotem = Callable[[Record, Lane], bool]
McastApp = Callable[[int, int, Guarantee, bytes], bool]
"""``mcast_app(service, function, guarantee, payload)``: one application-lane multicast
(the worker's cork takes it without a record per message); False when the ring is full."""


class Clients(Protocol):
    """The IPC server as the host sees it."""

    def reply(
        self, conn: ClientConnection, message_id: int, payload: bytes, error: CsErrorCode
    ) -> None: ...

    def dispatch(self, conn: ClientConnection, message_id: int, payload: bytes) -> None: ...


class Cancellable(Protocol):
    def cancel(self) -> None: ...


class Scheduler(Protocol):
    """The worker's event loop, narrowed to what the host needs."""

    def call_later(self, delay: float, callback: Callable[[], None]) -> Cancellable: ...

    def call_soon(self, callback: Callable[[], None]) -> Cancellable: ...


@dataclass(slots=True)
class _Hosted:
    engine: ServiceEngine
    api: EngineApi


_ExecTarget = tuple[ServiceEngine, Callable[..., object]]
"""An engine and one of its exec handlers (called ``handler(engine, payload, sender)``)."""


class WorkerHost:
    def __init__(
        self,
        engines: Sequence[type[ServiceEngine]],
        *,
        to_totem: ToTotem,
        clients: Clients,
        scheduler: Scheduler,
        mcast_app: McastApp | None = None,
    ) -> None:
        self._classes = sorted(engines, key=lambda cls: (cls.priority, cls.service_id))
        self._to_totem = to_totem
        self._mcast_app = mcast_app or self._app_record
        self.clients = clients
        self.scheduler = scheduler
        self._hosted: dict[int, _Hosted] = {}
        self._exec_targets: dict[tuple[int, int], _ExecTarget] = {}
        self._batch_ends: list[tuple[ServiceEngine, Callable[[], None]]] = []
        """Engines' ``exec_batch_end``, in load order: run after every Deliver record."""
        self.replica: CmapReplica | None = None
        self.nodeid = 0
        self.quorate = True
        self.in_sync = False
        self._driver: SyncDriver | None = None
        self._poll_armed = False
        self._cmap_waiting: dict[int, Callable[[CsErrorCode], None]] = {}
        self._cmap_ids = 0
        self.stopped = False
        """Set once every engine was unloaded."""
        self.app_blocked = False
        """The worker → Totem APP lane refused a record; cleared when it has room again."""
        self._totem_stats: dict[str, CmapEntry] = {}
        self.local_stats: Callable[[], dict[str, CmapEntry]] = dict
        """This worker's own figures for the stats map (the IPC server's), set by the worker."""

    # -- engines -----------------------------------------------------------------------------

    @property
    def services(self) -> tuple[int, ...]:
        return tuple(self._hosted)

    def engine(self, service: int) -> ServiceEngine:
        return self._hosted[service].engine

    def engine_named(self, name: str) -> ServiceEngine | None:
        for hosted in self._hosted.values():
            if hosted.engine.name == name:
                return hosted.engine
        return None

    def _in_load_order(self) -> list[_Hosted]:
        return list(self._hosted.values())

    # -- records from the Totem process ------------------------------------------------------

    def apply(self, record: Record) -> None:
        """Apply one record; :class:`WorkerProtoError` if it does not belong on this ring."""
        match record:
            case Deliver():
                self._deliver(record)
            case ConfChg():
                self._confchg(record)
            case SyncStep():
                self._sync_step(record)
            case CmapChanges():
                self._cmap_changes(record)
            case CmapResult():
                self._cmap_result(record)
            case Quorum(quorate):
                self.quorate = quorate
            case Stats(figures):
                self._totem_stats = {key: CmapEntry(ValueType.UINT64, n) for key, n in figures}
            case Init():
                self._init(record)
            case Shutdown():
                self._unload(list(reversed(self._in_load_order())))
            case _:
                raise WorkerProtoError(f"{type(record).__name__} is not for a worker")

    def _init(self, init: Init) -> None:
        if self.replica is not None:
            raise WorkerProtoError("a second Init record")
        try:
            snapshot = decode_snapshot(init.snapshot)
        except CmapRecordError as error:
            raise WorkerProtoError(f"bad cmap snapshot: {error}") from None
        self.nodeid = init.nodeid
        self.replica = CmapReplica.from_snapshot(snapshot)
        for cls in self._classes:
            engine = cls()
            api = EngineApi(self, cls.service_id)
            self._hosted[cls.service_id] = _Hosted(engine, api)
            engine.exec_init(api)  # raising aborts the worker, as in Corosync
        self._driver = SyncDriver(hosted.engine for hosted in self._hosted.values())
        for hosted in self._in_load_order():
            hook = batch_end_hook(hosted.engine)
            if hook is not None:
                self._batch_ends.append((hosted.engine, hook))
        self.send(Ready(self.services), Lane.SYNC)

    def _deliver(self, record: Deliver) -> None:
        # Every delivered message passes here: one lookup of its handler, no call in between.
        sender = record.sender
        targets = self._exec_targets
        for service, function, payload in record.messages:
            target = targets.get((service, function))
            if target is None:
                target = self._exec_target(service, function)
                if target is None:
                    continue
            engine, handler = target
            try:
                handler(engine, payload, sender)
            except Exception:
                log.exception("Engine %s failed in its exec handler", engine.name)
        for engine, batch_end in self._batch_ends:
            try:
                batch_end()
            except Exception:
                log.exception("Engine %s failed in exec_batch_end", engine.name)

    def _exec_target(self, service: int, function: int) -> _ExecTarget | None:
        """The engine and handler of a message, remembered; None (logged) if there is none."""
        hosted = self._hosted.get(service)
        if hosted is None:
            log.warning("Discarded a message for service %d, not hosted here", service)
            return None
        entry = hosted.engine.exec_handlers.get(function)
        if entry is None:
            log.warning("Discarded unknown message %d for service %d", function, service)
            return None
        target = self._exec_targets[service, function] = (hosted.engine, entry.handler)
        return target

    def _confchg(self, change: ConfChg) -> None:
        for hosted in self._in_load_order():
            self._guard(
                hosted.engine,
                "confchg",
                type(hosted.engine).confchg,
                change.kind,
                change.members,
                change.left,
                change.joined,
                change.ring_id,
            )

    # -- sync --------------------------------------------------------------------------------

    def _sync_step(self, step: SyncStep) -> None:
        driver = self._sync_driver()
        if step.kind is SyncStepKind.INIT:
            self.in_sync = True
            driver.apply(SyncInit(step.transitional, step.members, step.ring_id))
        elif step.kind is SyncStepKind.COMPLETE:
            self.in_sync = False
        elif step.service not in self._hosted:
            raise WorkerProtoError(f"sync step for service {step.service}, not hosted here")
        else:
            driver.apply(_ENGINE_COMMANDS[step.kind](step.service, step.ring_id))
        self._poll_sync()

    def _poll_sync(self) -> None:
        """One ``sync_process`` call per loop turn, so a long sync never starves the worker."""
        self._poll_armed = False
        driver = self._sync_driver()
        for done in driver.poll():
            self.send(SyncDone(done.service_id, done.ring_id), Lane.SYNC)
        if driver.busy and not self._poll_armed:
            self._poll_armed = True
            self.scheduler.call_soon(self._poll_sync)

    def _sync_driver(self) -> SyncDriver:
        if self._driver is None:
            raise WorkerProtoError("a sync step before Init")
        return self._driver

    # -- cmap --------------------------------------------------------------------------------

    def _cmap_changes(self, record: CmapChanges) -> None:
        replica = self._replica()
        for data in record.changes:
            try:
                replica.apply(decode_change(data))
            except CmapRecordError as error:
                raise WorkerProtoError(f"cmap replica out of step: {error}") from None

    def _cmap_result(self, result: CmapResult) -> None:
        done = self._cmap_waiting.pop(result.request, None)
        if done is None:
            raise WorkerProtoError(f"a cmap result for unknown request {result.request}")
        done(result.error)

    def _replica(self) -> CmapReplica:
        if self.replica is None:
            raise WorkerProtoError("a cmap record before Init")
        return self.replica

    def stats_map(self) -> dict[str, CmapEntry]:
        """The stats map: the Totem process's last report and this worker's figures."""
        return self._totem_stats | self.local_stats()

    def cmap_request_id(self, done: Callable[[CsErrorCode], None]) -> int:
        """Register a pending cmap write; its result calls ``done``."""
        self._cmap_ids = (self._cmap_ids + 1) & 0xFFFFFFFF
        self._cmap_waiting[self._cmap_ids] = done
        return self._cmap_ids

    def cmap_request_dropped(self, request: int) -> None:
        self._cmap_waiting.pop(request, None)

    # -- unloading ---------------------------------------------------------------------------

    def _unload(self, remaining: list[_Hosted]) -> None:
        while remaining:
            engine = remaining[0].engine
            try:
                done = engine.exec_exit()
            except Exception:
                log.exception("Engine %s failed in exec_exit", engine.name)
                done = True
            if not done:
                self.scheduler.call_later(0.01, lambda: self._unload(remaining))
                return
            log.log(NOTICE, "Service engine unloaded: %s", engine.name)
            remaining.pop(0)
        self.stopped = True
        self.send(Unloaded(), Lane.SYNC)

    # -- clients -----------------------------------------------------------------------------

    def client_connected(self, service: int, conn: ClientConnection) -> CsErrorCode:
        hosted = self._hosted.get(service)
        if hosted is None or self.stopped:
            return CsErrorCode.CS_ERR_LIBRARY
        try:
            hosted.engine.lib_init(conn)
        except CsError as error:
            return error.code
        except Exception:
            log.exception("Engine %s failed in lib_init", hosted.engine.name)
            return CsErrorCode.CS_ERR_LIBRARY
        return CsErrorCode.CS_OK

    def client_request(
        self, service: int, conn: ClientConnection, request_id: int, payload: bytes
    ) -> None:
        # A refusal answers with the request's own id: the IPC layer matches replies by id.
        hosted = self._hosted.get(service)
        if hosted is None:
            self.clients.reply(conn, request_id, b"", CsErrorCode.CS_ERR_LIBRARY)
            return
        engine = hosted.engine
        entry = engine.lib_handlers.get(request_id)
        if entry is None:
            self.clients.reply(conn, request_id, b"", CsErrorCode.CS_ERR_INVALID_PARAM)
            return
        held = entry.flow_control is FlowControl.REQUIRED and (self.in_sync or self.app_blocked)
        if held or not (engine.allow_inquorate or self.quorate):
            self.clients.reply(conn, request_id, b"", CsErrorCode.CS_ERR_TRY_AGAIN)
            return
        try:  # _guard, inline: every request of every client passes here
            entry.handler(engine, conn, payload)
        except Exception:
            log.exception("Engine %s failed in its lib handler", engine.name)

    def client_disconnected(self, service: int, conn: ClientConnection) -> None:
        hosted = self._hosted.get(service)
        if hosted is not None:
            self._guard(hosted.engine, "lib_exit", type(hosted.engine).lib_exit, conn)

    # -- outlets -----------------------------------------------------------------------------

    def send(self, record: Record, lane: Lane) -> bool:
        sent = self._to_totem(record, lane)
        if not sent and lane is Lane.APP:
            self.app_blocked = True
        return sent

    def mcast(self, service: int, function: int, guarantee: Guarantee, payload: bytes) -> bool:
        """An engine's multicast: the SYNC lane while it synchronises, else the APP lane.

        An engine that has activated in this round sends on the APP lane even while the other
        engines finish theirs: the SYNC lane is not held back for a new ring, so a message
        still queued there when the ring breaks would be delivered in the next ring ahead of
        that ring's sync - an application message before the membership change it follows
        (found by the simulator). The APP lane waits for the round to complete."""
        if self.in_sync and not self._sync_driver().activated(service):
            return self.send(
                McastRequest(True, ((service, function, guarantee, payload),)), Lane.SYNC
            )
        sent = self._mcast_app(service, function, guarantee, payload)
        if not sent:
            self.app_blocked = True
        return sent

    def _app_record(
        self, service: int, function: int, guarantee: Guarantee, payload: bytes
    ) -> bool:
        return self._to_totem(
            McastRequest(False, ((service, function, guarantee, payload),)), Lane.APP
        )

    def _guard(
        self, engine: ServiceEngine, what: str, call: Callable[..., object], *args: object
    ) -> None:
        try:
            call(engine, *args)
        except Exception:
            log.exception("Engine %s failed in its %s", engine.name, what)


__all__ = ["Clients", "Scheduler", "SyncDone", "WorkerHost"]
