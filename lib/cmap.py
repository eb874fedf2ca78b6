"""The cmap client library (Corosync's libcmap): read, write and watch the node's cmap.

Theory of operation. A :class:`CmapHandle` is one connection to the cmap engine of the local
node, through a :class:`CmapTransport`. Each call is one request and its reply: the body is
encoded with :mod:`pycorosync.lib.cmap_wire`, the transport raises the ``CsError`` of a
non-OK reply, and the reply body is decoded (a malformed one is ``CS_ERR_MESSAGE_ERROR``).
Without a transport the handle connects with ``pycorosync.lib.ipc.IpcClient("cmap")``,
imported only then.

Corosync's client-side checks are made before anything is sent: a key name of 256 bytes or
more is ``CS_ERR_NAME_TOO_LONG``, and every call on a finalized handle (a second finalize
too) is ``CS_ERR_BAD_HANDLE``. Typed getters (``get_uint32`` ...) never convert: a stored
value of another type is ``CS_ERR_INVALID_PARAM``.

Trackers: ``track_add`` gives the engine a *cookie*, a number of this handle's own, which
comes back in every notification; ``dispatch`` reads the notifications the transport has
queued and calls the tracker's callback as ``callback(event, key, new, old)`` with
:class:`~pycorosync.lib.cmap_types.CmapEntry` values (``new`` is ``None`` on DELETE, ``old``
on ADD). A notification for a tracker already deleted is ignored, as in Corosync.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from typing import Protocol, cast

from pycorosync.lib import cmap_wire as wire
from pycorosync.lib.cmap_types import CmapEntry, CmapValue, TrackEvent, ValueType
from pycorosync.lib.cmap_wire import CmapRequestId as Req
from pycorosync.lib.errors import (
    BadHandleError,
    InvalidParamError,
    LibraryError,
    NameTooLongError,
    NoSectionsError,
)
from pycorosync.lib.ipc import DispatchFlag, IpcClient

__all__ = [
    "CmapHandle",
    "CmapTransport",
    "DispatchFlags",
    "TrackNotify",
    "initialize",
]

NAME_MAX_BYTES = 256
"""``CS_MAX_NAME_LENGTH``: a key name must be shorter than this."""

TrackNotify = Callable[[TrackEvent, str, CmapEntry | None, CmapEntry | None], None]
"""A tracker's callback: ``(event, key, new entry or None, old entry or None)``."""


DispatchFlags = DispatchFlag
"""``cs_dispatch_flags_t``, shared by every client library (:mod:`pycorosync.lib.ipc`)."""


class CmapTransport(Protocol):
    """One IPC connection to the cmap engine."""

    def request(self, message_id: int, payload: bytes) -> bytes:
        """Send a request and return the reply body; raise the ``CsError`` of a non-OK reply."""
        ...

    def fd_get(self) -> int:
        """A file descriptor that polls readable when notifications are waiting."""
        ...

    def dispatch(self, flags: int, callback: Callable[[int, bytes], object]) -> None:
        """Hand waiting notifications to ``callback(message_id, body)`` as ``flags`` say."""
        ...

    def finalize(self) -> None:
        """Close the connection."""
        ...


def initialize(
    transport: CmapTransport | None = None,
    *,
    run_dir: str | None = None,
    cmap_map: int | None = None,
) -> CmapHandle:
    """``cmap_initialize`` (``cmap_initialize_map`` with ``cmap_map``)."""
    handle = CmapHandle(transport, run_dir=run_dir)
    if cmap_map is not None:
        try:
            handle.set_current_map(cmap_map)
        except BaseException:
            handle.finalize()
            raise
    return handle


def _connect(run_dir: str | None) -> CmapTransport:
    try:
        # IpcClient's dispatch takes a DispatchFlag, an int: it is a CmapTransport.
        return cast(CmapTransport, IpcClient("cmap", run_dir=run_dir))
    except (ConnectionError, FileNotFoundError) as error:
        # Corosync's answer when the daemon is not running (qb_to_cs_error: ECONNREFUSED).
        raise LibraryError(f"cannot connect to the cmap service: {error}") from None


class CmapHandle:
    def __init__(self, transport: CmapTransport | None = None, *, run_dir: str | None = None):
        if transport is None:
            transport = _connect(run_dir)
        self._transport: CmapTransport | None = transport
        self._context: object = None
        self._cookies = itertools.count(1)
        self._callbacks: dict[int, TrackNotify] = {}
        """Cookie -> callback of the trackers this handle added."""

    # Connection ---------------------------------------------------------------------------

    def finalize(self) -> None:
        transport = self._live()
        self._transport = None
        self._callbacks.clear()
        transport.finalize()

    def fd_get(self) -> int:
        return self._live().fd_get()

    def dispatch(self, flags: int = DispatchFlags.ALL) -> None:
        """Run the callbacks of waiting notifications (``cmap_dispatch``)."""
        if flags not in set(DispatchFlags):
            raise InvalidParamError(f"unknown dispatch flags {flags}")
        self._live().dispatch(flags, self._on_message)

    def context_get(self) -> object:
        self._live()
        return self._context

    def context_set(self, context: object) -> None:
        self._live()
        self._context = context

    def set_current_map(self, cmap_map: int) -> None:
        self._request(Req.SET_CURRENT_MAP, wire.encode_map(cmap_map))

    # Reads --------------------------------------------------------------------------------

    def get(self, key: str) -> CmapEntry:
        return wire.decode_entry(self._request(Req.GET, wire.encode_key(_name(key))))

    def get_int8(self, key: str) -> int:
        return self._get_int(key, ValueType.INT8)

    def get_uint8(self, key: str) -> int:
        return self._get_int(key, ValueType.UINT8)

    def get_int16(self, key: str) -> int:
        return self._get_int(key, ValueType.INT16)

    def get_uint16(self, key: str) -> int:
        return self._get_int(key, ValueType.UINT16)

    def get_int32(self, key: str) -> int:
        return self._get_int(key, ValueType.INT32)

    def get_uint32(self, key: str) -> int:
        return self._get_int(key, ValueType.UINT32)

    def get_int64(self, key: str) -> int:
        return self._get_int(key, ValueType.INT64)

    def get_uint64(self, key: str) -> int:
        return self._get_int(key, ValueType.UINT64)

    def get_float(self, key: str) -> float:
        value = self._get_typed(key, ValueType.FLOAT)
        assert isinstance(value, float)
        return value

    def get_double(self, key: str) -> float:
        value = self._get_typed(key, ValueType.DOUBLE)
        assert isinstance(value, float)
        return value

    def get_string(self, key: str) -> str:
        value = self._get_typed(key, ValueType.STRING)
        assert isinstance(value, str)
        return value

    def iter_init(self, prefix: str = "") -> int:
        """Start a live, byte-wise sorted scan of the keys under ``prefix`` (all for ``""``)."""
        return wire.decode_handle(self._request(Req.ITER_INIT, wire.encode_key(_name(prefix))))

    def iter_next(self, iter_handle: int) -> tuple[str, int, ValueType]:
        """The next ``(key, value length, type)``; ``NoSectionsError`` at the end."""
        reply = wire.decode_iter_next(self._request(Req.ITER_NEXT, wire.encode_handle(iter_handle)))
        try:
            return reply.key, reply.value_len, ValueType(reply.vtype)
        except ValueError:
            raise wire.CmapWireError(f"unknown value type {reply.vtype}") from None

    def iter_finalize(self, iter_handle: int) -> None:
        self._request(Req.ITER_FINALIZE, wire.encode_handle(iter_handle))

    def iter_keys(self, prefix: str = "") -> Iterator[tuple[str, int, ValueType]]:
        """``iter_init`` / ``iter_next`` / ``iter_finalize`` as a Python iterator."""
        iter_handle = self.iter_init(prefix)
        try:
            while True:
                try:
                    found = self.iter_next(iter_handle)
                except NoSectionsError:
                    return
                yield found
        finally:
            if self._transport is not None:
                self.iter_finalize(iter_handle)

    # Writes -------------------------------------------------------------------------------

    def set(self, key: str, value: CmapValue, vtype: ValueType) -> None:
        request = wire.SetRequest(_name(key), int(vtype), value)
        self._request(Req.SET, wire.encode_set(request))

    def set_int8(self, key: str, value: int) -> None:
        self.set(key, value, ValueType.INT8)

    def set_uint8(self, key: str, value: int) -> None:
        self.set(key, value, ValueType.UINT8)

    def set_int16(self, key: str, value: int) -> None:
        self.set(key, value, ValueType.INT16)

    def set_uint16(self, key: str, value: int) -> None:
        self.set(key, value, ValueType.UINT16)

    def set_int32(self, key: str, value: int) -> None:
        self.set(key, value, ValueType.INT32)

    def set_uint32(self, key: str, value: int) -> None:
        self.set(key, value, ValueType.UINT32)

    def set_int64(self, key: str, value: int) -> None:
        self.set(key, value, ValueType.INT64)

    def set_uint64(self, key: str, value: int) -> None:
        self.set(key, value, ValueType.UINT64)

    def set_float(self, key: str, value: float) -> None:
        self.set(key, value, ValueType.FLOAT)

    def set_double(self, key: str, value: float) -> None:
        self.set(key, value, ValueType.DOUBLE)

    def set_string(self, key: str, value: str) -> None:
        self.set(key, value, ValueType.STRING)

    def delete(self, key: str) -> None:
        self._request(Req.DELETE, wire.encode_key(_name(key)))

    def inc(self, key: str) -> None:
        self._request(Req.ADJUST_INT, wire.encode_adjust(_name(key), 1))

    def dec(self, key: str) -> None:
        self._request(Req.ADJUST_INT, wire.encode_adjust(_name(key), -1))

    # Tracking -----------------------------------------------------------------------------

    def track_add(self, key: str, track_type: int, callback: TrackNotify) -> int:
        """Watch a key (or, with ``TrackFlags.PREFIX``, a prefix); return the track handle."""
        if not callable(callback):
            raise InvalidParamError("a track callback must be callable")
        cookie = next(self._cookies)
        request = wire.TrackAddRequest(_name(key), track_type, cookie)
        self._callbacks[cookie] = callback
        try:
            reply = self._request(Req.TRACK_ADD, wire.encode_track_add(request))
            return wire.decode_handle(reply)
        except BaseException:
            self._callbacks.pop(cookie, None)
            raise

    def track_delete(self, track_handle: int) -> None:
        reply = self._request(Req.TRACK_DELETE, wire.encode_handle(track_handle))
        self._callbacks.pop(wire.decode_handle(reply), None)

    # Internals ----------------------------------------------------------------------------

    def _live(self) -> CmapTransport:
        if self._transport is None:
            raise BadHandleError("the cmap handle is finalized")
        return self._transport

    def _request(self, message_id: Req, payload: bytes) -> bytes:
        return self._live().request(message_id, payload)

    def _get_typed(self, key: str, vtype: ValueType) -> CmapValue:
        entry = self.get(key)
        if entry.vtype is not vtype:
            raise InvalidParamError(f"{key} holds a {entry.vtype.name}, not a {vtype.name}")
        return entry.value

    def _get_int(self, key: str, vtype: ValueType) -> int:
        value = self._get_typed(key, vtype)
        assert isinstance(value, int)
        return value

    def _on_message(self, message_id: int, payload: bytes) -> None:
        if message_id != wire.CmapResponseId.NOTIFY_CALLBACK:
            raise LibraryError(f"unexpected cmap dispatch message {message_id}")
        note = wire.decode_notification(payload)
        callback = self._callbacks.get(note.cookie)
        if callback is not None:
            callback(note.event, note.key, note.new, note.old)


def _name(key: str) -> str:
    if not isinstance(key, str):
        raise InvalidParamError(f"a key name must be a str, not {type(key).__name__}")
    if len(key.encode("utf-8", "surrogatepass")) >= NAME_MAX_BYTES:
        raise NameTooLongError(f"key name is {NAME_MAX_BYTES} bytes or longer")
    return key
