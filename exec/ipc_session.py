"""One client connection of the worker's IPC server: framing, credentials, bounded output.

Theory of operation
-------------------
:class:`IpcSession` is the asyncio protocol of one accepted Unix stream socket. On
``connection_made`` it reads the peer's credentials (``SO_PEERCRED``) and asks its
:class:`SessionOwner` (the server) to admit it; the owner answers with a HELLO frame either
way. Bytes received go into a :class:`FrameDecoder`; every whole REQUEST buffered is handed on
in one go (a batch per read), unless the owner has paused reading — then the frames stay in
the decoder, the transport stops reading, and :meth:`process` picks them up on resume. A
malformed frame is answered with an error RESPONSE (serial 0) and the connection is closed
after that frame is flushed.

Replies need the request's serial, which the host does not know: the session remembers the
serials of unanswered requests in arrival order. A reply answers the oldest unanswered request
with the reply's message id - engines answer with their request's id, so concurrent requests
of an asyncio client are matched even when an engine answers them out of order - and, when no
request has that id (a Corosync-numbered response id such as cmap's SET_CURRENT_MAP), the
oldest unanswered request of all. A reply with no request waiting for it (the request was
one-way, serial 0) is dropped. A client may
hold at most ``max_pending_requests`` unanswered; beyond that a request is answered
``CS_ERR_TRY_AGAIN`` without reaching the host, so that this table is bounded too.

Output goes straight to the transport. A slow client is not a broken one: Corosync queues
events for it without limit, and a reader that falls behind a burst catches up later. So a
buffer above ``stall_bytes`` only starts a watch, which every ``stall_seconds / 4`` compares
the bytes the kernel has taken off the buffer (written so far minus still buffered) with the
last look; a client that has taken nothing for ``stall_seconds`` is not reading and is aborted
(its buffer dropped). Memory stays bounded all the same: a client more than
``max_outbound_bytes`` behind is aborted at once.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from typing import Protocol, cast

from pycorosync.exec.logsys import subsys_logger
from pycorosync.lib.errors import CsErrorCode
from pycorosync.lib.ipc_wire import Frame, FrameDecoder, FrameError, FrameKind, encode_frame
from pycorosync.plugins.engine import ClientConnection

__all__ = ["IpcSession", "SessionOwner"]

log = subsys_logger("IPC")

_PEERCRED = struct.Struct("3i")
"""``struct ucred``: pid, uid, gid."""

_REQUESTS_ONLY = frozenset({FrameKind.REQUEST})
CORK_BYTES = 64 * 1024
"""Corked output beyond this is written at once rather than at the end of the loop turn."""


class SessionOwner(Protocol):
    """What a session needs from its server."""

    @property
    def reading_paused(self) -> bool: ...

    def admit(self, session: IpcSession, pid: int, uid: int, gid: int) -> None: ...

    def deliver(self, session: IpcSession, frame: Frame) -> None: ...

    def forget(self, session: IpcSession) -> None: ...

    def note_buffered(self, size: int) -> None: ...


class IpcSession(asyncio.Protocol):
    def __init__(
        self,
        owner: SessionOwner,
        service: str,
        *,
        max_body: int,
        max_outbound_bytes: int,
        stall_bytes: int,
        stall_seconds: float,
        max_pending_requests: int,
    ) -> None:
        self.owner = owner
        self.service = service
        self.conn: ClientConnection | None = None
        """Set once the host accepted the connection."""
        self._max_outbound = max_outbound_bytes
        self._stall_bytes = stall_bytes
        self._stall_seconds = stall_seconds
        self._written = 0
        """Bytes handed to the transport so far."""
        self._watch: asyncio.TimerHandle | None = None
        self._taken = 0
        """What the kernel had taken off the buffer (written - buffered) at the last look."""
        self._taken_at = 0.0
        self._max_pending = max_pending_requests
        self._decoder = FrameDecoder(max_body, _REQUESTS_ONLY)
        self._transport: asyncio.Transport | None = None
        self._closing = False
        self._corked: list[bytes] = []
        self._corked_bytes = 0
        self._flush_armed = False
        self._pending: dict[int, tuple[int, int]] = {}
        """Unanswered requests in arrival order: serial -> (message id, serial)."""

    # -- asyncio.Protocol --------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not derive from asyncio.Transport; they implement it.
        self._transport = cast(asyncio.Transport, transport)
        try:
            pid, uid, gid = _peer_credentials(self._transport)
        except OSError as exc:
            log.warning("Cannot read the credentials of a %s client: %s", self.service, exc)
            self.abort()
            return
        self.owner.admit(self, pid, uid, gid)

    def data_received(self, data: bytes) -> None:
        if self._closing:
            return
        self._decoder.feed(data)
        self.process()

    def connection_lost(self, exc: Exception | None) -> None:
        self._closing = True
        self._stop_watch()
        self.owner.forget(self)

    # -- used by the server ------------------------------------------------------------

    @property
    def closing(self) -> bool:
        return self._closing

    @property
    def buffered_bytes(self) -> int:
        """Bytes queued in user space towards this client (corked and in the transport)."""
        if self._transport is None or self._transport.is_closing():
            return 0
        return self._corked_bytes + self._transport.get_write_buffer_size()

    def process(self) -> None:
        """Hand on every whole request buffered, while reading is not paused."""
        try:
            while not self._closing and not self.owner.reading_paused:
                frame = self._decoder.next_frame()
                if frame is None:
                    return
                self._take(frame)
        except FrameError as exc:
            self.refuse_frame(exc)

    def pause(self) -> None:
        if self._transport is not None and not self._closing:
            self._transport.pause_reading()

    def resume(self) -> None:
        if self._transport is None or self._closing:
            return
        self._transport.resume_reading()
        # Frames decoded but held while paused; not run inline, as resume comes from the host.
        asyncio.get_running_loop().call_soon(self.process)

    def send(self, frame: Frame) -> None:
        """Queue one frame; a client over its output bound is aborted.

        Frames are corked until the end of the loop turn and written in one go: a worker
        hands a client many deliveries per turn, and one write each is a syscall each."""
        self.send_encoded(encode_frame(frame))

    def send_encoded(self, data: bytes) -> None:
        """:meth:`send` for a frame already encoded."""
        if self._closing or self._transport is None:
            return
        self._corked.append(data)
        self._corked_bytes += len(data)
        if self._corked_bytes >= CORK_BYTES:
            self.flush()  # enough for one write; the kernel's buffer takes it from here
        elif not self._flush_armed:
            self._flush_armed = True
            asyncio.get_running_loop().call_soon(self._flush_at_turn_end)

    def _flush_at_turn_end(self) -> None:
        self._flush_armed = False
        self.flush()

    def flush(self) -> None:
        """Write the corked frames now."""
        corked, self._corked, self._corked_bytes = self._corked, [], 0
        if self._closing or self._transport is None or not corked:
            return
        data = corked[0] if len(corked) == 1 else b"".join(corked)
        self._transport.write(data)
        self._written += len(data)
        self._check_bound(self._transport.get_write_buffer_size())

    def _check_bound(self, size: int) -> None:
        self.owner.note_buffered(size)
        if size > self._max_outbound:
            self._disconnect_lagging(f"it is {size} bytes behind")
        elif size > self._stall_bytes and self._watch is None:
            loop = asyncio.get_running_loop()
            self._taken, self._taken_at = self._written - size, loop.time()
            self._watch = loop.call_later(self._stall_seconds / 4, self._look_for_progress)

    def _look_for_progress(self) -> None:
        self._watch = None
        if self._closing or self._transport is None:
            return
        size = self._transport.get_write_buffer_size()
        if size <= self._stall_bytes:
            return  # caught up: the next write over the mark starts a new watch
        loop = asyncio.get_running_loop()
        taken = self._written - size
        if taken > self._taken:
            self._taken, self._taken_at = taken, loop.time()
        elif loop.time() - self._taken_at >= self._stall_seconds:
            idle = loop.time() - self._taken_at
            self._disconnect_lagging(f"it is not reading ({size} bytes queued, {idle:.0f} s)")
            return
        self._watch = loop.call_later(self._stall_seconds / 4, self._look_for_progress)

    def _disconnect_lagging(self, why: str) -> None:
        log.warning(
            "Disconnecting client %s (pid %s) of %s: %s",
            self._conn_id_text(),
            self._pid_text(),
            self.service,
            why,
        )
        self.abort()

    def respond(self, message_id: int, body: bytes, error: CsErrorCode) -> None:
        serial = self._take_serial(message_id)
        if serial == 0:
            return  # nothing waits for it: the request was one-way
        self.send(Frame(FrameKind.RESPONSE, message_id, body, serial, error))

    def close_after(self, frame: Frame) -> None:
        """Send a last frame (a refusal), then close once it is flushed."""
        self.send(frame)
        self.flush()
        self._closing = True
        if self._transport is not None:
            self._transport.close()

    def abort(self) -> None:
        self._closing = True
        self._stop_watch()
        self._corked, self._corked_bytes = [], 0
        if self._transport is not None:
            self._transport.abort()

    def refuse_frame(self, exc: FrameError) -> None:
        log.warning(
            "Malformed frame from client %s (pid %s) of %s: %s; closing",
            self._conn_id_text(),
            self._pid_text(),
            self.service,
            exc,
        )
        self.close_after(Frame(FrameKind.RESPONSE, 0, b"", 0, exc.code))

    # -- internals ---------------------------------------------------------------------

    def _stop_watch(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None

    def _take(self, frame: Frame) -> None:
        if frame.serial:
            if len(self._pending) >= self._max_pending:
                error = CsErrorCode.CS_ERR_TRY_AGAIN
                self.send(Frame(FrameKind.RESPONSE, frame.message_id, b"", frame.serial, error))
                return
            self._pending[frame.serial] = (frame.message_id, frame.serial)
        self.owner.deliver(self, frame)

    def _take_serial(self, message_id: int) -> int:
        if not self._pending:
            return 0
        # A handful of requests wait at most (the client library waits for each); a scan of
        # them is cheaper than keeping a second index in step.
        serial = next(
            (serial for mid, serial in self._pending.values() if mid == message_id),
            next(iter(self._pending)),
        )
        del self._pending[serial]
        return serial

    def _conn_id_text(self) -> str:
        return "-" if self.conn is None else str(self.conn.conn_id)

    def _pid_text(self) -> str:
        return "-" if self.conn is None else str(self.conn.pid)


def _peer_credentials(transport: asyncio.Transport) -> tuple[int, int, int]:
    sock = transport.get_extra_info("socket")
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size)
    pid, uid, gid = _PEERCRED.unpack(raw)
    return int(pid), int(uid), int(gid)
