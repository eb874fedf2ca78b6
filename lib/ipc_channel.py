"""The blocking client's socket: whole frames out, frames in, waits with deadlines.

Theory of operation
-------------------
:class:`FrameChannel` owns one non-blocking Unix stream socket to the daemon. Every wait is a
``poll`` with a deadline, so the socket never blocks a caller past its timeout and a
non-blocking send can be attempted without changing modes.

A stream may take only part of a frame. :meth:`try_send` then keeps the unsent tail and counts
the frame as sent: the tail goes out before anything else, and while it is still waiting a
further :meth:`try_send` refuses (returns ``False``) — at most one frame is ever held here.
The client finishes the tail before its send returns, waiting for room up to its timeout
(:meth:`finish_held`), as libcpg's send blocks: a caller that sends nothing more and never
dispatches still gets its message out. A tail still held after that is left to
:meth:`push_held`, which sends what the socket takes of it, and :attr:`holding` says one
waits (the client then also polls for writability, so that a caller asleep in ``poll`` comes
back to push it).

Reading takes what the socket has (a bounded number of reads per call, so a flooding daemon
cannot keep a caller in here) and returns the whole frames. End of stream or a reset is the
daemon going away: :attr:`FrameChannel.gone` then holds the
:class:`~pycorosync.lib.errors.LibraryError` to raise, and frames read before it are still
returned.
"""

from __future__ import annotations

import select
import socket
import time
from typing import Final

from pycorosync.lib.errors import CsTimeoutError, LibraryError
from pycorosync.lib.ipc_wire import (
    DEFAULT_MAX_BODY,
    Frame,
    FrameDecoder,
    FrameKind,
)

__all__ = ["FrameChannel", "deadline_after", "remaining_ms"]

READ_CHUNK: Final = 256 * 1024
READS_PER_CALL: Final = 16
_FROM_SERVER = frozenset({FrameKind.HELLO, FrameKind.RESPONSE, FrameKind.NOTIFY})


def deadline_after(timeout: float | None) -> float | None:
    return None if timeout is None else time.monotonic() + timeout


def remaining_ms(deadline: float | None) -> int:
    """Milliseconds until ``deadline`` for ``poll`` (-1: forever); CsTimeoutError if past."""
    if deadline is None:
        return -1
    left = deadline - time.monotonic()
    if left <= 0:
        raise CsTimeoutError("no answer from the daemon in time")
    return max(1, int(left * 1000))


class FrameChannel:
    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        self.sock = sock
        self._decoder = FrameDecoder(DEFAULT_MAX_BODY, _FROM_SERVER)
        self._unsent = b""
        self.gone: LibraryError | None = None
        """Why the connection is unusable, once it is."""

    def fileno(self) -> int:
        return self.sock.fileno()

    def close(self) -> None:
        self.sock.close()

    def send_all(self, data: bytes, deadline: float | None) -> None:
        """Send ``data`` whole, waiting for room until ``deadline``."""
        self._unsent += data
        while self._unsent:
            if not self._push():
                self._wait(select.POLLOUT, deadline)

    def try_send(self, data: bytes) -> bool:
        """Send ``data`` now, or refuse it whole (False) if an earlier tail is still held."""
        if self._unsent and not self._push():
            return False
        self._unsent = data
        self._push()
        return True

    @property
    def holding(self) -> bool:
        """Whether the tail of a sent frame waits for room in the socket."""
        return bool(self._unsent)

    def finish_held(self, deadline: float | None) -> None:
        """Wait for room until ``deadline`` to send a held tail whole; what is still unsent
        then stays held for :meth:`push_held`."""
        try:
            while self._unsent and not self._push():
                self._wait(select.POLLOUT, deadline)
        except CsTimeoutError:
            pass

    def push_held(self) -> bool:
        """Send what the socket takes of a held tail; True if some still waits. A lost
        daemon is recorded in :attr:`gone` rather than raised (reads report it)."""
        if self._unsent and self.gone is None:
            try:
                self._push()
            except LibraryError:
                return False
        return bool(self._unsent)

    def receive(self) -> list[Frame]:
        """Every whole frame available without waiting. Once the daemon is gone, :attr:`gone`
        holds the error to raise (frames that arrived before that are still returned)."""
        for _ in range(READS_PER_CALL):
            if self.gone is not None:
                break
            try:
                data = self.sock.recv(READ_CHUNK)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                self.gone = LibraryError(f"connection to the daemon lost: {exc}")
                break
            if not data:
                self.gone = LibraryError("the daemon closed the connection")
                break
            self._decoder.feed(data)
        return self._whole_frames()

    def _whole_frames(self) -> list[Frame]:
        frames, error = self._decoder.take()
        if error is not None:
            self.gone = LibraryError(f"malformed frame from the daemon: {error}")
        return frames

    def wait_readable(self, deadline: float | None) -> None:
        self._wait(select.POLLIN, deadline)

    def _push(self) -> bool:
        """Send what the socket takes of the held tail; True once nothing is held."""
        try:
            # MSG_NOSIGNAL: a host program that restored SIGPIPE must not die of a lost daemon.
            sent = self.sock.send(self._unsent, socket.MSG_NOSIGNAL)
        except (BlockingIOError, InterruptedError):
            return False
        except OSError as exc:
            self.gone = LibraryError(f"connection to the daemon lost: {exc}")
            raise LibraryError(*self.gone.args) from exc
        self._unsent = self._unsent[sent:]
        return not self._unsent

    def _wait(self, events: int, deadline: float | None) -> None:
        poller = select.poll()
        poller.register(self.sock, events)
        while not poller.poll(remaining_ms(deadline)):
            pass
