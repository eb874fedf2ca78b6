"""The messages each client connection is owed, sent as one DELIVER_CALLBACK per batch.

Theory of operation
-------------------
A worker hands its engines the messages of one Totem delivery at a time - dozens of them
under load - and then says the batch is over (``exec_batch_end``). Sending every message to
every receiving connection as a notification of its own costs the worker an encode and a
frame per message, and the client a frame parse and an unpack per message: in Python that
is most of what a receiving client spends. So :class:`Deliveries` gathers, per connection,
what it is owed, and sends it as one DELIVER_CALLBACK (``[group, nodeid, pid, message, ...]``,
in delivery order) when

* the batch ends (:meth:`Deliveries.flush_all`);
* the connection is about to get any other notification (:meth:`Deliveries.flush`, called
  first by the engine's every notification), so a confchg or a flow-control change never
  overtakes the messages delivered before it;
* the next message would take what is gathered past :data:`BATCH_BYTES`, so a notification
  holds at most that much, or one message alone (up to MAX_ATOMIC_MSG_SIZE): it always fits
  the IPC frame bound.

Order per connection is therefore exactly the order of delivery, as with one notification per
message; libcpg runs one callback per message, and ``CS_DISPATCH_ONE`` still runs only one.
"""

from __future__ import annotations

from collections.abc import Callable

from pycorosync.lib import cpg_wire as wire
from pycorosync.plugins.engine import ClientConnection

BATCH_BYTES = 64 * 1024
"""The most a connection's batch gathers (counted as its messages plus ENTRY_BYTES each)."""
ENTRY_BYTES = 16
"""What one message adds to a batch besides its bytes (nodeid, pid, msgpack headers)."""

Notify = Callable[[ClientConnection, int, bytes], None]


class _Batch:
    __slots__ = ("entries", "group", "size")

    def __init__(self, group: bytes) -> None:
        self.group = group
        self.entries: list[int | bytes] = []
        self.size = 0


class Deliveries:
    """Per connection, the messages delivered to it that it has not been sent yet."""

    def __init__(self, notify: Notify) -> None:
        self._notify = notify
        self._pending: dict[ClientConnection, _Batch] = {}

    def add(
        self, conn: ClientConnection, group: bytes, nodeid: int, pid: int, message: bytes
    ) -> None:
        batch = self._pending.get(conn)
        size = len(message) + ENTRY_BYTES
        if batch is not None and (batch.size + size > BATCH_BYTES or batch.group != group):
            self.flush(conn)  # (another group cannot happen while a connection is in one)
            batch = None
        if batch is None:
            batch = self._pending[conn] = _Batch(group)
        batch.entries += (nodeid, pid, message)
        batch.size += size

    def flush(self, conn: ClientConnection) -> None:
        """Send what ``conn`` is owed now (before anything else it is sent)."""
        batch = self._pending.pop(conn, None)
        if batch is not None:
            self._send(conn, batch)

    def flush_all(self) -> None:
        """The end of a batch: every connection gets what it is owed."""
        pending, self._pending = self._pending, {}
        for conn, batch in pending.items():
            self._send(conn, batch)

    def _send(self, conn: ClientConnection, batch: _Batch) -> None:
        body = wire.encode_deliveries(batch.group, batch.entries)
        self._notify(conn, wire.DELIVER_CALLBACK_ID, body)

    def forget(self, conn: ClientConnection) -> None:
        """A connection that closed is owed nothing more."""
        self._pending.pop(conn, None)
