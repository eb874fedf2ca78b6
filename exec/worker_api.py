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

from pycorosync.exec.shmring import Lane
from pycorosync.exec.totem.events import Guarantee
from pycorosync.exec.worker_proto import McastRequest
from pycorosync.lib.cmap_types import CmapValue, ValueType
from pycorosync.lib.errors import CsErrorCode, LibraryError, NotExistError
from pycorosync.plugins.engine import ClientConnection, SendStatus, TimerHandle

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
        sync = self._host.in_sync
        request = McastRequest(self._service, function_id, guarantee, sync, payload)
        sent = self._host.send(request, Lane.SYNC if sync else Lane.APP)
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
        replica = self._host.replica
        if replica is None:
            raise LibraryError("the cmap replica is not loaded yet")
        if key not in replica:
            raise NotExistError(f"no cmap key {key!r}")
        return replica.get(key).value

    def cmap_iter(self, prefix: str = "") -> Iterator[tuple[str, CmapValue, ValueType]]:
        replica = self._host.replica
        if replica is None:
            return
        for key, entry in replica.iter_prefix(prefix):
            yield key, entry.value, entry.vtype

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
