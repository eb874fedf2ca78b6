"""The executive as one engine in a worker sees it: :class:`EngineApi`.

Theory of operation
-------------------
Each hosted engine gets its own :class:`EngineApi`, bound to its service id, so a multicast
is addressed to that engine's ``exec_handlers`` on every node without naming the service.
Everything here returns at once: a multicast or a cmap write becomes one record on the
worker → Totem ring (``SendStatus.WOULD_BLOCK`` when the ring is full - nothing was sent);
reads come from the worker's cmap replica; replies and notifications go to the IPC server;
timers run on the worker's loop. Sync traffic - a multicast made while a sync round runs -
travels on the SYNC lane, ahead of application traffic.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from pycorosync.exec.cmap_owner import CmapWrite, fire_and_forget_set
from pycorosync.exec.cmap_owner_wire import WriteRequest, encode_write_request
from pycorosync.exec.icmap_replica import CmapReplica
from pycorosync.exec.icmap_tracking import TrackCallback
from pycorosync.exec.shmring import Lane
from pycorosync.exec.totem.events import Guarantee
from pycorosync.exec.worker_proto import CmapWriteRequest
from pycorosync.lib.cmap_types import CmapEntry, CmapValue, ValueType
from pycorosync.lib.errors import CsErrorCode, LibraryError, NotExistError
from pycorosync.plugins.engine import (
    ClientConnection,
    CmapTrackHandle,
    CmapWriteDone,
    SendStatus,
    TimerHandle,
)

if TYPE_CHECKING:
    from pycorosync.exec.worker_host import Cancellable, WorkerHost


class EngineApi:
    """:class:`~pycorosync.plugins.engine.ExecutiveApi` for one engine in a worker."""

    def __init__(self, host: WorkerHost, service_id: int) -> None:
        self._host = host
        self._service = service_id
        self._timers: dict[TimerHandle, Cancellable] = {}
        self._timer_ids = _counter()

    @property
    def nodeid(self) -> int:
        return self._host.nodeid

    def mcast(
        self, function_id: int, payload: bytes, guarantee: Guarantee = Guarantee.AGREED
    ) -> SendStatus:
        sent = self._host.mcast(self._service, function_id, guarantee, payload)
        return SendStatus.QUEUED if sent else SendStatus.WOULD_BLOCK

    def timer_add(self, delay_ms: float, callback: Callable[[], None]) -> TimerHandle:
        handle = TimerHandle(next(self._timer_ids))

        def fire() -> None:
            if self._timers.pop(handle, None) is not None:
                callback()

        self._timers[handle] = self._host.scheduler.call_later(max(delay_ms, 0.0) / 1000, fire)
        return handle

    def timer_delete(self, handle: TimerHandle) -> None:
        timer = self._timers.pop(handle, None)
        if timer is not None:
            timer.cancel()

    def cmap_get(self, key: str) -> CmapValue:
        return self.cmap_get_entry(key).value

    def cmap_get_entry(self, key: str) -> CmapEntry:
        return self._replica().get(key)

    def cmap_iter(self, prefix: str = "") -> Iterator[tuple[str, CmapEntry]]:
        return self._replica().iter_prefix(prefix)

    def stats_get_entry(self, key: str) -> CmapEntry:
        entry = self._host.stats_map().get(key)
        if entry is None:
            raise NotExistError(f"no stats key {key!r}")
        return entry

    def stats_iter(self, prefix: str = "") -> Iterator[tuple[str, CmapEntry]]:
        figures = self._host.stats_map()
        return iter(sorted((k, e) for k, e in figures.items() if k.startswith(prefix)))

    def cmap_track_add(
        self, key_or_prefix: str, flags: int, callback: TrackCallback
    ) -> CmapTrackHandle:
        handle = self._replica().track_add(key_or_prefix, flags, callback)  # type: ignore[arg-type]  # checked by the replica
        return CmapTrackHandle(handle)

    def cmap_track_delete(self, handle: CmapTrackHandle) -> None:
        self._replica().track_delete(handle)

    def cmap_write(self, write: CmapWrite, done: CmapWriteDone) -> SendStatus:
        host = self._host
        request = host.cmap_request_id(done)
        record = CmapWriteRequest(encode_write_request(WriteRequest(request, write)))
        if host.send(record, Lane.APP):
            return SendStatus.QUEUED
        host.cmap_request_dropped(request)
        return SendStatus.WOULD_BLOCK

    def cmap_set(self, key: str, value: CmapValue, vtype: ValueType) -> SendStatus:
        write, done = fire_and_forget_set(key, value, vtype, present=key in self._replica())
        return self.cmap_write(write, done)

    def _replica(self) -> CmapReplica:
        replica = self._host.replica
        if replica is None:
            raise LibraryError("the cmap replica is not loaded yet")
        return replica

    def is_quorate(self) -> bool:
        return self._host.quorate

    def reply(
        self,
        conn: ClientConnection,
        message_id: int,
        payload: bytes,
        error: CsErrorCode = CsErrorCode.CS_OK,
    ) -> None:
        self._host.clients.reply(conn, message_id, payload, error)

    def dispatch(self, conn: ClientConnection, message_id: int, payload: bytes) -> None:
        self._host.clients.dispatch(conn, message_id, payload)


def _counter() -> Iterator[int]:
    value = 0
    while True:
        value += 1
        yield value
