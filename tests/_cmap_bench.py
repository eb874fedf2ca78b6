"""An in-process cmap node for tests: the real engine behind a FakeExecutive, and a
``CmapTransport`` into it.

The executive's cmap is a real ``CmapStore`` with Corosync's read-only keys, and writes are
applied by the owner's code (``apply_write``), so every error a client sees is the real one.
A request runs the engine's lib handler (after the executive's admission checks), then lets
the "owner" apply the writes it sent, then returns the one reply the engine gave. A lock
serialises everything, so a tool may run in a thread while the test writes from another;
notifications wake the transport's eventfd, which the tool can poll.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable

from pycorosync.lib.cmap import CmapHandle, DispatchFlags
from pycorosync.lib.errors import CsErrorCode, LibraryError, TryAgainError, error_for
from pycorosync.plugins.engine import ClientConnection
from pycorosync.plugins.testing import FakeCluster, Notification
from pycorosync.services.cmap import CmapEngine

NODE = 1
WAIT_S = 10.0
"""Deadline of a blocking dispatch in a test."""


class CmapBench:
    def __init__(self) -> None:
        self.cluster = FakeCluster(CmapEngine, [NODE])
        self.cluster.change_membership([NODE])
        self.executive = self.cluster.executives[NODE]
        self.store = self.executive.store
        self.engine = self.cluster.engines[NODE]
        self.changed = threading.Condition(threading.RLock())
        self.transports: list[EngineTransport] = []

    def connect(self) -> EngineTransport:
        with self.changed:
            transport = EngineTransport(self, self.cluster.connect(NODE))
            self.transports.append(transport)
            return transport

    def handle(self) -> CmapHandle:
        return CmapHandle(self.connect())

    def wake(self) -> None:
        for transport in self.transports:
            transport.signal()
        self.changed.notify_all()


class EngineTransport:
    """A ``CmapTransport`` whose other end is the bench's engine."""

    def __init__(self, bench: CmapBench, conn: ClientConnection) -> None:
        self.bench = bench
        self.conn = conn
        self.closed = False
        self._seen = 0  # how far into the executive's notifications this transport looked
        self._queue: list[Notification] = []
        self._fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)

    def request(self, message_id: int, payload: bytes) -> bytes:
        bench = self.bench
        with bench.changed:
            self._check_open()
            before = len(bench.executive.replies)
            bench.cluster.request(NODE, self.conn, message_id, payload)
            bench.executive.apply_cmap_writes()
            replies = [r for r in bench.executive.replies[before:] if r.conn == self.conn]
            bench.wake()
        if len(replies) != 1:
            raise AssertionError(f"engine gave {len(replies)} replies to request {message_id}")
        reply = replies[0]
        if reply.error is not CsErrorCode.CS_OK:
            raise error_for(reply.error, f"reply {reply.message_id}")
        return reply.payload

    def fd_get(self) -> int:
        self._check_open()
        return self._fd

    def dispatch(self, flags: int, callback: Callable[[int, bytes], None]) -> None:
        deadline = time.monotonic() + WAIT_S
        while True:
            with self.bench.changed:
                self._check_open()
                self._collect()
                if not self._queue and flags in (DispatchFlags.ONE, DispatchFlags.BLOCKING):
                    if not self.bench.changed.wait(max(0.0, deadline - time.monotonic())):
                        raise TimeoutError("no cmap notification within the test deadline")
                    continue
                batch = self._take(flags)
            for note in batch:
                callback(note.message_id, note.payload)
            if flags != DispatchFlags.BLOCKING or self.closed:
                return

    def finalize(self) -> None:
        with self.bench.changed:
            self._check_open()
            self.closed = True
            self.bench.cluster.disconnect(NODE, self.conn)
            self.bench.transports.remove(self)
            os.close(self._fd)
            self.bench.changed.notify_all()

    def signal(self) -> None:
        self._collect()
        if self._queue:
            os.eventfd_write(self._fd, 1)

    def _take(self, flags: int) -> list[Notification]:
        if not self._queue:
            if flags == DispatchFlags.ONE_NONBLOCKING:
                raise TryAgainError("no notification waiting")
            return []
        if flags in (DispatchFlags.ONE, DispatchFlags.ONE_NONBLOCKING):
            batch, self._queue = self._queue[:1], self._queue[1:]
        else:
            batch, self._queue = self._queue, []
        if not self._queue:
            # Never signalled if the notifications came in after the last wake.
            with contextlib.suppress(BlockingIOError):
                os.eventfd_read(self._fd)
        return batch

    def _collect(self) -> None:
        notes = self.bench.executive.notifications
        self._queue += [n for n in notes[self._seen :] if n.conn == self.conn]
        self._seen = len(notes)

    def _check_open(self) -> None:
        if self.closed:
            raise LibraryError("connection closed")
