"""The client side of IPC that every client library (cmap, cpg, ...) builds on.

Theory of operation
-------------------
:class:`IpcClient` is one connection to one service of the local node, in Corosync's
blocking style: the constructor connects and waits for the daemon's HELLO (which carries
``CS_ERR_ACCESS`` for a refused peer), :meth:`IpcClient.request` sends a request and waits for
its response, :meth:`IpcClient.send` is one-way, and notifications (callbacks) are run by
:meth:`IpcClient.dispatch` with Corosync's ``CS_DISPATCH_*`` semantics.

One stream carries responses and notifications. A notification read while waiting for a
response is queued; so that a caller polling :meth:`IpcClient.fd_get` still wakes for it, that
descriptor is an epoll set holding the socket and an eventfd which is raised while the queue
is not empty (and by :meth:`IpcClient.finalize`, to release a ``BLOCKING`` dispatch).
A callback may :meth:`IpcClient.put_back` the part of its notification it did not run (CPG's
DELIVER carries several messages, and ``CS_DISPATCH_ONE`` runs one): it is dispatched next.

Threads: a lock serialises socket use, held by a request for its whole round trip and by
dispatch only while it reads; callbacks run without it, so a callback may make requests and a
dispatch thread may run beside threads that make requests, as with Corosync. Finalize closes
the socket at once but leaves the epoll set and eventfd to the last waiting dispatch.

Errors: a daemon that is not running, or goes away, is ``CS_ERR_LIBRARY`` from every later
call (``dispatch`` first runs the notifications that arrived before); a call after
:meth:`IpcClient.finalize` is ``CS_ERR_BAD_HANDLE``. The asyncio equivalent is
:class:`~pycorosync.lib.ipc_async.AsyncIpcClient`.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import select
import socket
import threading
from collections import deque
from collections.abc import Callable
from enum import IntEnum

from pycorosync.lib.errors import (
    BadHandleError,
    CsErrorCode,
    InvalidParamError,
    LibraryError,
    TooBigError,
    TryAgainError,
    error_for,
)
from pycorosync.lib.ipc_async import AsyncIpcClient
from pycorosync.lib.ipc_channel import FrameChannel, deadline_after
from pycorosync.lib.ipc_paths import default_run_dir, socket_path
from pycorosync.lib.ipc_wire import Frame, FrameKind, check_hello, encode_request, wire_serial

__all__ = ["AsyncIpcClient", "DispatchFlag", "IpcClient", "default_run_dir", "open_socket"]

Notification = tuple[int, bytes]


class DispatchFlag(IntEnum):
    """Corosync's ``cs_dispatch_flags_t``."""

    ONE = 1
    """Block until one callback has run."""
    ALL = 2
    """Run every callback available now, then return."""
    BLOCKING = 3
    """Run callbacks until finalize (BadHandleError) or the daemon goes (LibraryError)."""
    ONE_NONBLOCKING = 4
    """Run at most one; TryAgainError if none is available."""


def open_socket(service: str, run_dir: str | None) -> socket.socket:
    """A connected socket to ``service``; LibraryError if no daemon serves it there."""
    path = socket_path(run_dir or default_run_dir(), service)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(path)
    except OSError as exc:
        sock.close()
        raise LibraryError(f"cannot connect to {service} at {path}: {exc.strerror}") from exc
    return sock


class IpcClient:
    def __init__(
        self, service: str, *, run_dir: str | None = None, timeout: float | None = None
    ) -> None:
        """Connect to ``service``; ``timeout`` bounds the handshake and every request
        (None waits as long as the daemon lives, as Corosync does)."""
        self.service = service
        self._timeout = timeout
        self._channel = FrameChannel(open_socket(service, run_dir))
        self._lock = threading.Lock()
        self._serials = itertools.count(1)
        self._queue: deque[Notification] = deque()
        self._put_back: Notification | None = None
        """What the running callback handed back unfinished (:meth:`put_back`)."""
        self._finalized = False
        self._wake = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._raised = False
        self._waiters = 0
        """Dispatches waiting on the epoll set; the last one out closes it after finalize."""
        self._epoll = select.epoll()
        self._polling_out = False
        """The socket is in the epoll set for writability too (a frame's tail is held)."""
        try:
            hello = check_hello(self._first_frame())
        except BaseException:
            self._close_fds()
            raise
        self.conn_id = hello.conn_id
        self._max_body = hello.max_body
        self._epoll.register(self._channel.fileno(), select.EPOLLIN)
        self._epoll.register(self._wake, select.EPOLLIN)

    # -- Corosync's calls --------------------------------------------------------------

    def request(self, message_id: int, payload: bytes) -> bytes:
        """Send a request and wait for its response body; the CsError of a non-OK answer."""
        with self._lock:
            self._check_usable()
            serial = wire_serial(next(self._serials))
            deadline = deadline_after(self._timeout)
            self._channel.send_all(self._encode(message_id, payload, serial), deadline)
            while True:
                response = self._read_until_response(serial)
                if response is not None:
                    break
                self._channel.wait_readable(deadline)
        if response.error != CsErrorCode.CS_OK:
            raise error_for(response.error, f"request {message_id} to {self.service}")
        return response.body

    def send(self, message_id: int, payload: bytes) -> None:
        """One-way: no response. TryAgainError if the socket cannot take it now."""
        with self._lock:
            self._check_usable()
            sent = self._channel.try_send(self._encode(message_id, payload, 0))
            if sent and self._channel.holding:
                self._channel.finish_held(deadline_after(self._timeout))
            self._watch_held()
            if not sent:
                raise TryAgainError(f"the {self.service} socket is full")

    def fd_get(self) -> int:
        """A descriptor that polls readable whenever :meth:`dispatch` has work."""
        self._check_open()
        return self._epoll.fileno()

    def dispatch(self, flags: DispatchFlag, callback: Callable[[int, bytes], object]) -> None:
        """Run notification callbacks as ``callback(message_id, payload)``, per ``flags``."""
        self._check_open()
        try:
            mode = DispatchFlag(flags)
        except ValueError as exc:
            raise InvalidParamError(f"unknown dispatch flags {flags}") from exc
        if mode is DispatchFlag.ONE_NONBLOCKING:
            item = self._next_notification(block=False)
            if item is None:
                raise TryAgainError("no notification waiting")
            self._run_one(item, callback)
        elif mode is DispatchFlag.ALL:
            while batch := self._take_notifications():
                self._run_batch(batch, callback)
        elif mode is DispatchFlag.ONE:
            self._run_one(self._blocking_notification(), callback)
        else:
            while True:
                self._run_one(self._blocking_notification(), callback)

    def put_back(self, message_id: int, payload: bytes) -> None:
        """From inside a dispatch callback: the part of its notification it did not get to
        (one of several messages run for ``CS_DISPATCH_ONE``, or a callback that raised
        part-way), dispatched next, ahead of everything else waiting."""
        self._put_back = (message_id, payload)

    def finalize(self) -> None:
        """Close the connection; BadHandleError if it was closed already."""
        with self._lock:
            self._check_open()
            self._finalized = True
            # Releases a BLOCKING dispatch in another thread; it then sees the handle gone.
            os.eventfd_write(self._wake, 1)
            self._close_fds()

    # -- internals ---------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._finalized:
            raise BadHandleError(f"{self.service} connection was finalized")

    def _check_usable(self) -> None:
        self._check_open()
        if self._channel.gone is not None:
            raise self._gone()

    def _gone(self) -> LibraryError:
        assert self._channel.gone is not None
        return LibraryError(*self._channel.gone.args)

    def _encode(self, message_id: int, payload: bytes, serial: int) -> bytes:
        if len(payload) > self._max_body:
            raise TooBigError(f"{len(payload)} byte payload over {self._max_body}")
        return encode_request(message_id, payload, serial)

    def _first_frame(self) -> Frame:
        deadline = deadline_after(self._timeout)
        while True:
            frames = self._channel.receive()
            if frames:
                self._route(frames[1:], waiting_for=0)
                return frames[0]
            if self._channel.gone is not None:
                raise self._gone()
            self._channel.wait_readable(deadline)

    def _read_until_response(self, serial: int) -> Frame | None:
        answer = self._route(self._channel.receive(), waiting_for=serial)
        if answer is None and self._channel.gone is not None:
            raise self._gone()
        return answer

    def _route(self, frames: list[Frame], waiting_for: int) -> Frame | None:
        """Queue notifications; return the response to ``waiting_for`` if among ``frames``."""
        answer = None
        for frame in frames:
            if frame.kind == FrameKind.NOTIFY:
                self._queue.append((frame.message_id, frame.body))
            elif frame.kind == FrameKind.RESPONSE and frame.serial == 0:
                # The daemon refusing something we sent; it closes the connection after this.
                self._channel.gone = LibraryError(
                    f"the daemon rejected a frame: {error_for(frame.error)}"
                )
            elif frame.kind == FrameKind.RESPONSE and frame.serial == waiting_for:
                answer = frame
            # Anything else answers a request that timed out earlier: nobody waits for it.
        self._update_wake()
        return answer

    def _push_held(self) -> None:
        """Get a held tail out (a one-way frame the socket took only part of), even when
        nothing else is ever sent: every dispatch tries, and fd_get polls for room meanwhile."""
        if self._channel.holding:
            self._channel.push_held()
        if self._channel.holding != self._polling_out:  # also after a request sent it all
            self._watch_held()

    def _watch_held(self) -> None:
        holding = self._channel.holding
        if holding != self._polling_out and not self._epoll.closed:
            events = select.EPOLLIN | (select.EPOLLOUT if holding else 0)
            self._epoll.modify(self._channel.fileno(), events)
            self._polling_out = holding

    def _update_wake(self) -> None:
        if self._queue and not self._raised:
            os.eventfd_write(self._wake, 1)
            self._raised = True
        elif not self._queue and self._raised:
            with contextlib.suppress(BlockingIOError):
                os.eventfd_read(self._wake)
            self._raised = False

    def _next_notification(self, *, block: bool) -> Notification | None:
        while True:
            with self._lock:
                self._check_open()
                self._push_held()
                if self._queue:
                    item = self._queue.popleft()
                    self._update_wake()
                    return item
                if self._channel.gone is not None:
                    raise self._gone()
                self._route(self._channel.receive(), waiting_for=-1)
                if self._queue or self._channel.gone is not None:
                    continue
                if not block:
                    return None
                self._waiters += 1
            self._wait_for_work()

    def _take_notifications(self) -> list[Notification]:
        """Every notification waiting now, taken under one lock (an ALL dispatch's batch)."""
        with self._lock:
            self._check_open()
            self._push_held()
            if not self._queue:
                if self._channel.gone is not None:
                    raise self._gone()
                self._route(self._channel.receive(), waiting_for=-1)
            batch = list(self._queue)
            self._queue.clear()
            self._update_wake()
            return batch

    def _run_batch(
        self, batch: list[Notification], callback: Callable[[int, bytes], object]
    ) -> None:
        """Run ``batch`` in order, as one at a time would: a finalize in a callback stops it,
        and what a raising callback left is queued again, first."""
        for index, item in enumerate(batch):
            try:
                if self._finalized:  # _check_open, inline: this runs for every delivery
                    self._check_open()
                callback(*item)
            except BaseException:
                self._requeue(batch[index + 1 :])
                raise
            if self._put_back is not None:  # run it before the rest: a new batch
                self._requeue(batch[index + 1 :])
                return

    def _run_one(self, item: Notification, callback: Callable[[int, bytes], object]) -> None:
        try:
            callback(*item)
        finally:
            self._requeue([])

    def _requeue(self, rest: list[Notification]) -> None:
        """Queue, first and in order, what the callback put back, then ``rest``."""
        back, self._put_back = self._put_back, None
        if back is not None:
            rest = [back, *rest]
        if rest:
            with self._lock:
                self._queue.extendleft(reversed(rest))
                if not self._finalized:
                    self._update_wake()

    def _blocking_notification(self) -> Notification:
        item = self._next_notification(block=True)
        assert item is not None
        return item

    def _wait_for_work(self) -> None:
        try:
            self._epoll.poll(-1)
        finally:
            with self._lock:
                self._waiters -= 1
                if self._finalized and not self._waiters:
                    self._close_wakeup()

    def _close_fds(self) -> None:
        self._channel.close()
        if not self._waiters:
            self._close_wakeup()

    def _close_wakeup(self) -> None:
        # Never while a dispatch waits on them: closing the eventfd would drop its wake-up
        # from the epoll set and leave that thread asleep for good.
        if not self._epoll.closed:
            self._epoll.close()
            os.close(self._wake)
