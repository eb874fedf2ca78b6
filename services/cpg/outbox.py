"""Multicasts the CPG engine accepted but could not send yet, in the order it accepted them.

Theory of operation. A client's mcast is one-way: once the engine has read it, nobody can be
told it failed. So when the engine may not multicast (a sync round runs) or cannot (the ring
towards the Totem process is full, ``SendStatus.WOULD_BLOCK``), the message waits here and is
sent, oldest first, as soon as sending is possible again; while anything waits, every later
multicast waits behind it, so the order the engine accepted them in is the order the ring
sees. Meanwhile the engine publishes flow control ENABLED, and libcpg answers its caller
``CS_ERR_TRY_AGAIN`` without sending. Only what a client wrote before it saw that state can
arrive; a client that ignores the state is held to :attr:`Outbox.per_conn_max` waiting
messages, and what it sends beyond that is dropped, logged and counted for it (the count
reaches it in the next flow-control notification). Farewells (the PROCDOWN of a closed
connection) are never refused: there is at most one per connection.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from pycorosync.plugins.engine import ClientConnection, SendStatus

__all__ = ["Outbox"]

Send = Callable[[int, bytes], SendStatus]


@dataclass(frozen=True, slots=True)
class _Held:
    conn: ClientConnection | None
    function_id: int
    payload: bytes


class Outbox:
    def __init__(self, per_conn_max: int) -> None:
        self.per_conn_max = per_conn_max
        self._queue: deque[_Held] = deque()
        self._per_conn: dict[ClientConnection, int] = {}

    def __len__(self) -> int:
        return len(self._queue)

    def hold(self, conn: ClientConnection | None, function_id: int, payload: bytes) -> bool:
        """Keep a message for later; False (nothing kept) if ``conn`` has too many waiting.

        ``conn`` None is a farewell, always kept."""
        if conn is not None:
            waiting = self._per_conn.get(conn, 0)
            if waiting >= self.per_conn_max:
                return False
            self._per_conn[conn] = waiting + 1
        self._queue.append(_Held(conn, function_id, payload))
        return True

    def flush(self, send: Send) -> bool:
        """Send what waits, oldest first, until ``send`` would block; True when empty."""
        while self._queue:
            held = self._queue[0]
            if send(held.function_id, held.payload) is SendStatus.WOULD_BLOCK:
                return False
            self._queue.popleft()
            if held.conn is not None:
                self._release(held.conn)
        return True

    def _release(self, conn: ClientConnection) -> None:
        left = self._per_conn[conn] - 1
        if left:
            self._per_conn[conn] = left
        else:
            del self._per_conn[conn]
