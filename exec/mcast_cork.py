"""The worker's cork for application multicasts: one record to the Totem process a loop turn.

Theory of operation
-------------------
A client hands the worker many multicasts in one read, and each used to cost the worker an
encode and a ring write and the Totem process a read and a decode. :class:`McastCork` packs
the application-lane :class:`~pycorosync.exec.worker_proto.McastRequest` records of one loop
turn into one, written at the end of the turn (``schedule``), when the cork reaches
:data:`CORK_BYTES`, or before any other record of the worker (:meth:`flush`), so the worker's
records keep their order.

The engine is told at once whether its multicast is queued or would block, so a message is
taken only when the ring has room for the whole cork with it - counted with msgpack's
overheads bounded from above (:data:`MESSAGE_SLACK`, :data:`RECORD_SLACK`). Only the worker
writes to that ring and the Totem process only frees room, so the flush of an accepted cork
cannot fail; if it ever did, the two processes disagree and ``fail`` is told.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final, Protocol

from pycorosync.exec.shmring import Lane
from pycorosync.exec.totem.events import Guarantee
from pycorosync.exec.worker_proto import McastRequest, encode

__all__ = ["CORK_BYTES", "McastCork"]

CORK_BYTES: Final = 256 * 1024
"""Corked multicasts beyond this are written at once (one record stays a modest copy)."""
MESSAGE_SLACK: Final = 16
"""At most what msgpack adds to a corked message: service, function, guarantee, bin header."""
RECORD_SLACK: Final = 32
"""At most what msgpack adds to the record: array headers, tag, stamp, lane flag."""


class RingWriter(Protocol):
    def write(self, lane: Lane, record: bytes) -> bool: ...

    def room(self, lane: Lane) -> int: ...

    def want_space(self) -> None: ...


class McastCork:
    def __init__(
        self,
        writer: RingWriter,
        schedule: Callable[[Callable[[], None]], object],
        fail: Callable[[str], None],
    ) -> None:
        self._writer = writer
        self._schedule = schedule
        self._fail = fail
        self._messages: list[tuple[int, int, Guarantee, bytes]] = []
        self._bytes = 0
        self._room = 0
        """The APP lane's room when last read since the last flush (0: read it again)."""
        self._armed = False
        self._closed = False

    @property
    def pending(self) -> int:
        """Messages corked and not yet written."""
        return len(self._messages)

    def take(self, record: McastRequest) -> bool:
        """Cork ``record``'s messages; False (nothing taken) if the ring lacks room."""
        size = sum(len(message[3]) + MESSAGE_SLACK for message in record.messages)
        if not self._make_room(size):
            return False
        self._messages.extend(record.messages)
        return True

    def take_one(self, service: int, function: int, guarantee: Guarantee, payload: bytes) -> bool:
        """:meth:`take` of one message, with no record to build: an engine's every multicast."""
        if not self._make_room(len(payload) + MESSAGE_SLACK):
            return False
        self._messages.append((service, function, guarantee, payload))
        return True

    def _make_room(self, size: int) -> bool:
        """Count ``size`` more bytes in, flushing first if they would not fit; False if the
        ring cannot take them even then."""
        if self._closed:
            return False
        if self._messages and self._bytes + size > CORK_BYTES:
            self.flush()
        needed = self._bytes + size + RECORD_SLACK
        # Room only grows while nothing is written (the reader only frees it), so the last
        # figure read holds until the cork needs more than it: one shared-memory read per
        # flush rather than one a message. Every write to the lane goes through a flush
        # first (the worker keeps its records in order), and a flush forgets the figure.
        if needed > self._room:
            self._room = self._writer.room(Lane.APP)
            if needed > self._room:
                self.flush()
                self._room = self._writer.room(Lane.APP)
                if size + RECORD_SLACK > self._room:
                    self._writer.want_space()
                    return False
        self._bytes += size
        if not self._armed:
            self._armed = True
            self._schedule(self._at_turn_end)
        return True

    def flush(self) -> None:
        """Write what is corked, as one record."""
        if not self._messages or self._closed:
            return
        record = McastRequest(False, tuple(self._messages))
        self._messages, self._bytes = [], 0
        if not self._writer.write(Lane.APP, encode(record)):
            self._fail("the APP lane lost room that the multicast cork had counted on")
        self._room = 0

    def drop(self) -> None:
        """Forget what is corked and take nothing more: the worker is closing its channels."""
        self._messages, self._bytes = [], 0
        self._closed = True

    def _at_turn_end(self) -> None:
        self._armed = False
        self.flush()
