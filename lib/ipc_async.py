"""The asyncio client of a node's IPC: the same protocol as ``IpcClient``, awaitable.

Theory of operation
-------------------
:meth:`AsyncIpcClient.connect` opens the socket and waits for the daemon's HELLO. One reader
task then takes every frame: a RESPONSE completes the future of the request with its serial
(so many requests may be outstanding at once), a NOTIFY is queued for ``async for``.

The notification queue is bounded: when the application does not consume its
notifications, the reader stops reading, the daemon's output buffer for this client fills,
and the daemon disconnects the client — the project's rule that a client which does not read
is disconnected rather than let memory grow, on either side. Responses queued behind unread
notifications wait with them.

:meth:`AsyncIpcClient.send` is one-way and never waits: ``CS_ERR_TRY_AGAIN`` when the
transport already holds more than :data:`SEND_HIGH_WATER` bytes. When the daemon goes away,
outstanding and later calls raise ``CS_ERR_LIBRARY`` (iteration first yields what arrived
before); after :meth:`AsyncIpcClient.aclose` every call raises ``CS_ERR_BAD_HANDLE``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections import deque
from typing import Final

from pycorosync.lib.errors import (
    BadHandleError,
    CsErrorCode,
    CsTimeoutError,
    LibraryError,
    TooBigError,
    TryAgainError,
    error_for,
)
from pycorosync.lib.ipc_paths import default_run_dir, socket_path
from pycorosync.lib.ipc_wire import (
    DEFAULT_MAX_BODY,
    Frame,
    FrameDecoder,
    FrameError,
    FrameKind,
    check_hello,
    encode_frame,
    wire_serial,
)

__all__ = ["NOTIFY_QUEUE_MAX", "SEND_HIGH_WATER", "AsyncIpcClient"]

NOTIFY_QUEUE_MAX: Final = 4096
SEND_HIGH_WATER: Final = 1024 * 1024
READ_CHUNK: Final = 256 * 1024
_FROM_SERVER = frozenset({FrameKind.HELLO, FrameKind.RESPONSE, FrameKind.NOTIFY})


class AsyncIpcClient:
    """Use :meth:`connect`; the constructor takes an already connected stream."""

    def __init__(
        self,
        service: str,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        timeout: float | None,
    ) -> None:
        self.service = service
        self.conn_id = 0
        self._reader = reader
        self._writer = writer
        self._timeout = timeout
        self._decoder = FrameDecoder(DEFAULT_MAX_BODY, _FROM_SERVER)
        self._max_body = DEFAULT_MAX_BODY
        self._serials = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[Frame]] = {}
        self._queue: deque[tuple[int, bytes]] = deque()
        self._arrived = asyncio.Event()
        self._drained = asyncio.Event()
        self._gone: str | None = None
        self._closed = False
        self._task: asyncio.Task[None] | None = None

    @classmethod
    async def connect(
        cls, service: str, *, run_dir: str | None = None, timeout: float | None = None
    ) -> AsyncIpcClient:
        """Connect to ``service``; LibraryError without a daemon, its error if it refuses."""
        path = socket_path(run_dir or default_run_dir(), service)
        try:
            reader, writer = await asyncio.open_unix_connection(path, limit=READ_CHUNK)
        except OSError as exc:
            raise LibraryError(f"cannot connect to {service} at {path}: {exc.strerror}") from exc
        client = cls(service, reader, writer, timeout)
        try:
            await asyncio.wait_for(client._handshake(), timeout)
        except BaseException as exc:
            writer.close()
            if isinstance(exc, TimeoutError):
                raise CsTimeoutError(f"no hello from {service}") from exc
            raise
        client._task = asyncio.get_running_loop().create_task(client._read_loop())
        return client

    async def request(self, message_id: int, payload: bytes) -> bytes:
        """Send a request, await its response body; the CsError of a non-OK answer."""
        self._check_usable()
        serial = wire_serial(next(self._serials))
        future: asyncio.Future[Frame] = asyncio.get_running_loop().create_future()
        self._waiting[serial] = future
        try:
            self._writer.write(self._encode(message_id, payload, serial))
            response = await asyncio.wait_for(future, self._timeout)
        except TimeoutError as exc:
            raise CsTimeoutError(f"request {message_id} to {self.service}") from exc
        finally:
            self._waiting.pop(serial, None)
        if response.error != CsErrorCode.CS_OK:
            raise error_for(response.error, f"request {message_id} to {self.service}")
        return response.body

    def send(self, message_id: int, payload: bytes) -> None:
        """One-way; TryAgainError while the transport holds too much unsent."""
        self._check_usable()
        if self._writer.transport.get_write_buffer_size() > SEND_HIGH_WATER:
            raise TryAgainError(f"the {self.service} socket is full")
        self._writer.write(self._encode(message_id, payload, 0))

    def __aiter__(self) -> AsyncIpcClient:
        return self

    async def __anext__(self) -> tuple[int, bytes]:
        """The next notification as ``(message_id, payload)``."""
        while True:
            self._check_open()
            if self._queue:
                self._drained.set()
                return self._queue.popleft()
            if self._gone is not None:
                raise LibraryError(self._gone)
            self._arrived.clear()
            await self._arrived.wait()

    async def aclose(self) -> None:
        """Close the connection; BadHandleError if it was closed already."""
        self._check_open()
        self._closed = True
        self._arrived.set()
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(BadHandleError(f"{self.service} connection was closed"))
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._writer.close()
        with contextlib.suppress(OSError):
            await self._writer.wait_closed()

    # -- internals ---------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise BadHandleError(f"{self.service} connection was closed")

    def _check_usable(self) -> None:
        self._check_open()
        if self._gone is not None:
            raise LibraryError(self._gone)

    def _encode(self, message_id: int, payload: bytes, serial: int) -> bytes:
        if len(payload) > self._max_body:
            raise TooBigError(f"{len(payload)} byte payload over {self._max_body}")
        return encode_frame(Frame(FrameKind.REQUEST, message_id, payload, serial))

    async def _handshake(self) -> None:
        while (frame := self._decoder.next_frame()) is None:
            data = await self._reader.read(READ_CHUNK)
            if not data:
                raise LibraryError(f"{self.service} closed the connection before its hello")
            self._decoder.feed(data)
        hello = check_hello(frame)
        self.conn_id, self._max_body = hello.conn_id, hello.max_body

    async def _read_loop(self) -> None:
        try:
            while True:
                for frame in self._decoder.frames():
                    await self._route(frame)
                data = await self._reader.read(READ_CHUNK)
                if not data:
                    raise LibraryError("the daemon closed the connection")
                self._decoder.feed(data)
        except (OSError, FrameError, LibraryError) as exc:
            self._die(str(exc.args[0]) if exc.args else type(exc).__name__)

    async def _route(self, frame: Frame) -> None:
        if frame.kind == FrameKind.NOTIFY:
            while len(self._queue) >= NOTIFY_QUEUE_MAX:
                self._drained.clear()
                await self._drained.wait()
            self._queue.append((frame.message_id, frame.body))
            self._arrived.set()
        elif frame.kind == FrameKind.RESPONSE and frame.serial == 0:
            raise LibraryError(f"the daemon rejected a frame: {error_for(frame.error)}")
        elif frame.kind == FrameKind.RESPONSE:
            future = self._waiting.get(frame.serial)
            if future is not None and not future.done():
                future.set_result(frame)

    def _die(self, reason: str) -> None:
        self._gone = reason
        self._arrived.set()
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(LibraryError(reason))
