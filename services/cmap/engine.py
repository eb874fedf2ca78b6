"""The cmap engine: serves cmap clients from this worker's replica (Corosync's exec/cmap.c).

Theory of operation. The engine runs in a worker. Reads (GET, the ITER_* calls) are answered
at once from the worker's cmap replica through the executive API, so they need no flow
control. Writes (SET, DELETE, ADJUST_INT) must reach the store's owner, the Totem process:
the engine sends them with :meth:`ExecutiveApi.cmap_write` (flow control REQUIRED, so a full
ring answers ``CS_ERR_TRY_AGAIN``) and replies to the client only when the owner's verdict
comes back, by which time the replica already shows the write. A client that asks again
after ``CS_OK`` therefore reads its own write.

Per connection the engine keeps the open iterators (live scans of the replica, by an
engine-wide handle) and the trackers (the executive's tracker handle, which is also the
handle the client holds, and the client's cookie for routing notifications). Handles of
another connection are ``CS_ERR_BAD_HANDLE``, as unknown ones are. ``lib_exit`` drops all of
a connection's state and removes its trackers.

Every failure is answered with its ``cs_error_t`` and an empty body: a malformed body is
``CS_ERR_MESSAGE_ERROR`` (:class:`~pycorosync.lib.cmap_wire.CmapWireError`), the rest are the
replica's or owner's own codes. Two maps exist, as in Corosync: the default one and the stats
map (``CMAP_MAP_STATS``), which GET and the ITER_* calls read from the executive's stats
snapshot (the Totem process's figures, at most a second old, and the worker's IPC figures).
SET_CURRENT_MAP switches a connection's map (``CS_ERR_BUSY`` with iterators or trackers open,
as Corosync answers; an unknown map is ``CS_ERR_NOT_EXIST``). The stats map is read-only here
(``CS_ERR_ACCESS``; Corosync's ``stats.clear.*`` keys are not built) and cannot be tracked
(``CS_ERR_NOT_SUPPORTED``).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import ClassVar

from pycorosync.exec.totem.events import ConfigKind, RingId
from pycorosync.lib import cmap_wire as wire
from pycorosync.lib.cmap_types import CmapEntry, TrackEvent, check_track_flags, check_value_type
from pycorosync.lib.cmap_wire import CmapResponseId as Res
from pycorosync.lib.errors import (
    AccessError,
    BadHandleError,
    BusyError,
    CsError,
    CsErrorCode,
    NoSectionsError,
    NotExistError,
    NotSupportedError,
)
from pycorosync.plugins.engine import (
    ClientConnection,
    CmapAdjust,
    CmapDelete,
    CmapSet,
    CmapTrackHandle,
    CmapWrite,
    ExecHandler,
    ExecutiveApi,
    FlowControl,
    LibHandler,
    SendStatus,
    answer,
)

__all__ = ["CmapEngine"]


@dataclass(slots=True)
class _Connection:
    cmap_map: int = wire.CMAP_MAP_DEFAULT
    """The map this connection reads: the default one or the stats map."""
    iterators: dict[int, Iterator[tuple[str, CmapEntry]]] = field(default_factory=dict)
    trackers: dict[CmapTrackHandle, int] = field(default_factory=dict)
    """Executive tracker handle -> the client's cookie."""


class CmapEngine:
    name: ClassVar[str] = "cmap"
    service_id: ClassVar[int] = 0
    priority: ClassVar[int] = 0
    version: ClassVar[int] = 0
    allow_inquorate: ClassVar[bool] = True
    own_worker: ClassVar[bool] = False

    def __init__(self) -> None:
        self._api: ExecutiveApi | None = None
        self._connections: dict[ClientConnection, _Connection] = {}
        self._iter_handles = itertools.count(1)

    @property
    def api(self) -> ExecutiveApi:
        if self._api is None:
            raise RuntimeError("cmap engine used before exec_init")
        return self._api

    # Lifecycle ----------------------------------------------------------------------------

    def exec_init(self, api: ExecutiveApi) -> None:
        self._api = api

    def exec_exit(self) -> bool:
        for conn in list(self._connections):
            self.lib_exit(conn)
        return True

    def lib_init(self, conn: ClientConnection) -> None:
        self._connections[conn] = _Connection()

    def lib_exit(self, conn: ClientConnection) -> None:
        state = self._connections.pop(conn, None)
        if state is None:
            return
        for handle in state.trackers:
            self.api.cmap_track_delete(handle)

    def confchg(
        self,
        kind: ConfigKind,
        members: tuple[int, ...],
        left: tuple[int, ...],
        joined: tuple[int, ...],
        ring_id: RingId,
    ) -> None:
        """Nothing to do: the store's owner keeps cmap current across configurations."""

    def sync_init(
        self, transitional_members: tuple[int, ...], members: tuple[int, ...], ring_id: RingId
    ) -> None:
        """No replicated engine state to synchronise (the config_version exchange is not
        built yet)."""

    def sync_process(self) -> bool:
        return True

    def sync_activate(self) -> None:
        """Nothing was synchronised."""

    def sync_abort(self) -> None:
        """Nothing was synchronised."""

    # Reads --------------------------------------------------------------------------------

    def _lib_get(self, conn: ClientConnection, payload: bytes) -> None:
        answer(self.api, conn, Res.GET, lambda: wire.encode_entry(self._get(conn, payload)))

    def _get(self, conn: ClientConnection, payload: bytes) -> CmapEntry:
        key = wire.decode_key(payload)
        if self._state(conn).cmap_map == wire.CMAP_MAP_STATS:
            return self.api.stats_get_entry(key)
        return self.api.cmap_get_entry(key)

    def _lib_iter_init(self, conn: ClientConnection, payload: bytes) -> None:
        def start() -> bytes:
            prefix = wire.decode_key(payload)
            if self._state(conn).cmap_map == wire.CMAP_MAP_STATS:
                scan = self.api.stats_iter(prefix)
            else:
                scan = self.api.cmap_iter(prefix)
            handle = next(self._iter_handles)
            self._state(conn).iterators[handle] = scan
            return wire.encode_handle(handle)

        answer(self.api, conn, Res.ITER_INIT, start)

    def _lib_iter_next(self, conn: ClientConnection, payload: bytes) -> None:
        def step() -> bytes:
            found = next(self._iterator(conn, payload), None)
            if found is None:
                raise NoSectionsError("no more keys")
            key, entry = found
            return wire.encode_iter_next(wire.IterNextReply(key, entry.length, int(entry.vtype)))

        answer(self.api, conn, Res.ITER_NEXT, step)

    def _lib_iter_finalize(self, conn: ClientConnection, payload: bytes) -> None:
        def finish() -> bytes:
            self._iterator(conn, payload)
            del self._state(conn).iterators[wire.decode_handle(payload)]
            return b""

        answer(self.api, conn, Res.ITER_FINALIZE, finish)

    def _iterator(self, conn: ClientConnection, payload: bytes) -> Iterator[tuple[str, CmapEntry]]:
        handle = wire.decode_handle(payload)
        scan = self._state(conn).iterators.get(handle)
        if scan is None:
            raise BadHandleError(f"no iterator {handle} on this connection")
        return scan

    # Tracking -----------------------------------------------------------------------------

    def _lib_track_add(self, conn: ClientConnection, payload: bytes) -> None:
        def add() -> bytes:
            if self._state(conn).cmap_map == wire.CMAP_MAP_STATS:
                raise NotSupportedError("tracking the stats map is not built")
            request = wire.decode_track_add(payload)
            flags = check_track_flags(request.track_type)
            notify = self._notifier(conn, request.cookie)
            handle = self.api.cmap_track_add(request.key, flags, notify)
            self._state(conn).trackers[handle] = request.cookie
            return wire.encode_handle(handle)

        answer(self.api, conn, Res.TRACK_ADD, add)

    def _lib_track_delete(self, conn: ClientConnection, payload: bytes) -> None:
        def delete() -> bytes:
            handle = CmapTrackHandle(wire.decode_handle(payload))
            cookie = self._state(conn).trackers.pop(handle, None)
            if cookie is None:
                raise BadHandleError(f"no tracker {handle} on this connection")
            self.api.cmap_track_delete(handle)
            return wire.encode_handle(cookie)

        answer(self.api, conn, Res.TRACK_DELETE, delete)

    def _notifier(
        self, conn: ClientConnection, cookie: int
    ) -> Callable[[TrackEvent, str, CmapEntry | None, CmapEntry | None], None]:
        def notify(
            event: TrackEvent, key: str, new: CmapEntry | None, old: CmapEntry | None
        ) -> None:
            note = wire.Notification(cookie, event, key, new, old)
            self.api.dispatch(conn, Res.NOTIFY_CALLBACK, wire.encode_notification(note))

        return notify

    def _lib_set_current_map(self, conn: ClientConnection, payload: bytes) -> None:
        def switch() -> bytes:
            cmap_map = wire.decode_map(payload)
            state = self._state(conn)
            if state.iterators or state.trackers:
                raise BusyError("close the iterators and trackers before switching maps")
            if cmap_map not in (wire.CMAP_MAP_DEFAULT, wire.CMAP_MAP_STATS):
                raise NotExistError(f"map {cmap_map} does not exist on this node")
            state.cmap_map = cmap_map
            return b""

        answer(self.api, conn, Res.SET_CURRENT_MAP, switch)

    # Writes: answered when the owner's verdict comes back -------------------------------

    def _lib_set(self, conn: ClientConnection, payload: bytes) -> None:
        def build() -> CmapWrite:
            request = wire.decode_set(payload)
            return CmapSet(request.key, request.value, check_value_type(request.vtype))

        self._write(conn, Res.SET, build)

    def _lib_delete(self, conn: ClientConnection, payload: bytes) -> None:
        self._write(conn, Res.DELETE, lambda: CmapDelete(wire.decode_key(payload)))

    def _lib_adjust(self, conn: ClientConnection, payload: bytes) -> None:
        self._write(conn, Res.ADJUST_INT, lambda: CmapAdjust(*wire.decode_adjust(payload)))

    def _write(self, conn: ClientConnection, response: Res, build: Callable[[], CmapWrite]) -> None:
        try:
            if self._state(conn).cmap_map == wire.CMAP_MAP_STATS:
                raise AccessError("the stats map is read-only here (stats.clear.* is not built)")
            write = build()
        except CsError as error:
            self.api.reply(conn, response, b"", error.code)
            return

        def done(code: CsErrorCode) -> None:
            self.api.reply(conn, response, b"", code)

        if self.api.cmap_write(write, done) is SendStatus.WOULD_BLOCK:
            self.api.reply(conn, response, b"", CsErrorCode.CS_ERR_TRY_AGAIN)

    # Helpers ------------------------------------------------------------------------------

    def _state(self, conn: ClientConnection) -> _Connection:
        state = self._connections.get(conn)
        if state is None:
            raise BadHandleError("the connection is not open")
        return state

    lib_handlers: ClassVar[Mapping[int, LibHandler[CmapEngine]]] = {
        wire.CmapRequestId.SET: LibHandler(_lib_set, FlowControl.REQUIRED),
        wire.CmapRequestId.DELETE: LibHandler(_lib_delete, FlowControl.REQUIRED),
        wire.CmapRequestId.GET: LibHandler(_lib_get, FlowControl.NOT_REQUIRED),
        wire.CmapRequestId.ADJUST_INT: LibHandler(_lib_adjust, FlowControl.REQUIRED),
        wire.CmapRequestId.ITER_INIT: LibHandler(_lib_iter_init, FlowControl.NOT_REQUIRED),
        wire.CmapRequestId.ITER_NEXT: LibHandler(_lib_iter_next, FlowControl.NOT_REQUIRED),
        wire.CmapRequestId.ITER_FINALIZE: LibHandler(_lib_iter_finalize, FlowControl.NOT_REQUIRED),
        wire.CmapRequestId.TRACK_ADD: LibHandler(_lib_track_add, FlowControl.NOT_REQUIRED),
        wire.CmapRequestId.TRACK_DELETE: LibHandler(_lib_track_delete, FlowControl.NOT_REQUIRED),
        wire.CmapRequestId.SET_CURRENT_MAP: LibHandler(
            _lib_set_current_map, FlowControl.NOT_REQUIRED
        ),
    }
    exec_handlers: ClassVar[Mapping[int, ExecHandler[CmapEngine]]] = {}
