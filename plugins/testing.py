"""Test doubles for engine authors: a fake executive and a small in-process cluster.

Theory of operation
-------------------
:class:`FakeExecutive` implements :class:`~pycorosync.plugins.engine.ExecutiveApi` for one
engine on one node, with no I/O: multicasts go to a queue, replies and notifications are
recorded, timers run on a virtual clock that only :meth:`FakeExecutive.advance` moves, and cmap
is a real :class:`~pycorosync.exec.icmap.CmapStore` with Corosync's read-only keys, standing
for both the Totem process's store and the worker's replica. Writes queue up as they would on
the ring to the Totem process; :meth:`FakeExecutive.apply_cmap_writes` applies them in order
with the owner's code (:func:`~pycorosync.exec.cmap_owner.apply_write`, so every error is the
real one), firing trackers and then each write's ``done``.

:class:`FakeCluster` puts one engine instance per node behind such executives and plays the
executive's part:

* **Agreed order.** All nodes' multicasts enter one queue; :meth:`FakeCluster.deliver` hands
  each message, in that order, to the exec handler of every current member (SAFE is delivered
  like AGREED). A message multicast by a handler joins the end of the queue. A message from a
  node outside the membership is dropped, as Totem never delivers it. Each message is a
  batch of its own: an engine's ``exec_batch_end`` runs after each.
* **Membership.** :meth:`FakeCluster.change_membership` first delivers what is pending in the
  old configuration, then gives each new member a TRANSITIONAL and a REGULAR ``confchg`` and
  runs one sync round: ``sync_init`` everywhere, then ``sync_process`` on every node not yet
  done, delivering between passes, until all are done; then ``sync_activate``. Nodes outside
  the new membership are simply cut off and get no events.
* **Client requests** go through the executive's admission check first (an unknown request
  id, an inquorate node for an engine that does not allow it, or a REQUIRED request while the
  node would block, each answered with message id 0 and the error), as Corosync's IPC glue
  does.

It is deterministic: no clock, no randomness, nodes visited in nodeid order.
"""

from __future__ import annotations

import heapq
import itertools
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

from pycorosync.exec.cmap_owner import CmapWrite, apply_write, fire_and_forget_set
from pycorosync.exec.icmap import CmapStore, install_default_ro_keys
from pycorosync.exec.icmap_tracking import TrackCallback
from pycorosync.exec.totem.events import ConfigKind, Guarantee, RingId
from pycorosync.lib.cmap_types import CmapEntry, CmapValue, ValueType
from pycorosync.lib.errors import CsErrorCode, NotExistError
from pycorosync.plugins.engine import (
    ClientConnection,
    CmapTrackHandle,
    CmapWriteDone,
    FlowControl,
    SendStatus,
    ServiceEngine,
    TimerHandle,
    batch_end_hook,
)
from pycorosync.plugins.validation import validate_engine

__all__ = ["FakeCluster", "FakeExecutive", "Multicast", "Notification", "Reply"]

EngineT = TypeVar("EngineT", bound=ServiceEngine)

_log = logging.getLogger(__name__)

SYNC_PASSES_MAX = 1000
"""A sync round that needs more passes than this is reported as stuck."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Multicast:
    sender: int
    function_id: int
    payload: bytes
    guarantee: Guarantee


@dataclass(frozen=True, slots=True, kw_only=True)
class Reply:
    conn: ClientConnection
    message_id: int
    payload: bytes
    error: CsErrorCode


@dataclass(frozen=True, slots=True, kw_only=True)
class Notification:
    conn: ClientConnection
    message_id: int
    payload: bytes


class FakeExecutive:
    """An :class:`ExecutiveApi` that records what the engine asks for."""

    def __init__(self, nodeid: int, outbox: list[Multicast] | None = None) -> None:
        self._nodeid = nodeid
        self.outbox: list[Multicast] = [] if outbox is None else outbox
        """Multicasts not yet delivered (shared by all nodes of a :class:`FakeCluster`)."""
        self.replies: list[Reply] = []
        self.notifications: list[Notification] = []
        self.store = CmapStore()
        self.stats: dict[str, CmapEntry] = {}
        """The stats map this executive shows (tests fill it)."""
        """The node's cmap; seed it directly (the executive's own writes bypass read-only)."""
        install_default_ro_keys(self.store)
        self.pending_cmap_writes: list[tuple[CmapWrite, CmapWriteDone]] = []
        """Writes sent towards the owner and not yet applied, oldest first."""
        self.quorate = True
        self.would_block = False
        """While set, multicasts and cmap writes return WOULD_BLOCK and send nothing."""
        self.now_ms = 0.0
        self._timers: list[tuple[float, int, Callable[[], None]]] = []
        self._timer_ids = itertools.count(1)
        self._cancelled: set[int] = set()

    @property
    def nodeid(self) -> int:
        return self._nodeid

    def mcast(
        self, function_id: int, payload: bytes, guarantee: Guarantee = Guarantee.AGREED
    ) -> SendStatus:
        if self.would_block:
            return SendStatus.WOULD_BLOCK
        message = Multicast(
            sender=self._nodeid, function_id=function_id, payload=payload, guarantee=guarantee
        )
        self.outbox.append(message)
        return SendStatus.QUEUED

    def timer_add(self, delay_ms: float, callback: Callable[[], None]) -> TimerHandle:
        if delay_ms < 0:
            raise ValueError(f"timer delay must not be negative, got {delay_ms}")
        handle = next(self._timer_ids)
        heapq.heappush(self._timers, (self.now_ms + delay_ms, handle, callback))
        return TimerHandle(handle)

    def timer_delete(self, handle: TimerHandle) -> None:
        if any(entry[1] == handle for entry in self._timers):
            self._cancelled.add(handle)

    def advance(self, delta_ms: float) -> None:
        """Move the virtual clock on, firing due timers in deadline order."""
        if delta_ms < 0:
            raise ValueError(f"time cannot go back ({delta_ms} ms)")
        target = self.now_ms + delta_ms
        while self._timers and self._timers[0][0] <= target:
            deadline, handle, callback = heapq.heappop(self._timers)
            self.now_ms = deadline
            if handle in self._cancelled:
                self._cancelled.discard(handle)
            else:
                callback()
        self.now_ms = target

    @property
    def cmap(self) -> dict[str, tuple[ValueType, CmapValue]]:
        """A copy of the cmap contents, ``key -> (type, value)``."""
        return {key: (entry.vtype, entry.value) for key, entry in self.store.iter_prefix()}

    def cmap_get(self, key: str) -> CmapValue:
        return self.store.get(key).value

    def cmap_get_entry(self, key: str) -> CmapEntry:
        return self.store.get(key)

    def cmap_iter(self, prefix: str = "") -> Iterator[tuple[str, CmapEntry]]:
        return self.store.iter_prefix(prefix)

    def stats_get_entry(self, key: str) -> CmapEntry:
        try:
            return self.stats[key]
        except KeyError:
            raise NotExistError(f"no stats key {key!r}") from None

    def stats_iter(self, prefix: str = "") -> Iterator[tuple[str, CmapEntry]]:
        return iter(sorted((k, e) for k, e in self.stats.items() if k.startswith(prefix)))

    def cmap_track_add(
        self, key_or_prefix: str, flags: int, callback: TrackCallback
    ) -> CmapTrackHandle:
        return CmapTrackHandle(self.store.track_add(key_or_prefix, flags, callback))  # type: ignore[arg-type]  # checked by the store

    def cmap_track_delete(self, handle: CmapTrackHandle) -> None:
        self.store.track_delete(handle)

    def cmap_write(self, write: CmapWrite, done: CmapWriteDone) -> SendStatus:
        if self.would_block:
            return SendStatus.WOULD_BLOCK
        self.pending_cmap_writes.append((write, done))
        return SendStatus.QUEUED

    def cmap_set(self, key: str, value: CmapValue, vtype: ValueType) -> SendStatus:
        write, done = fire_and_forget_set(key, value, vtype, present=key in self.store)
        return self.cmap_write(write, done)

    def apply_cmap_writes(self) -> int:
        """Apply the pending writes in order as the owner would; return how many."""
        applied = 0
        while self.pending_cmap_writes:
            write, done = self.pending_cmap_writes.pop(0)
            code, _ = apply_write(self.store, write)
            done(code)
            applied += 1
        return applied

    def is_quorate(self) -> bool:
        return self.quorate

    def reply(
        self,
        conn: ClientConnection,
        message_id: int,
        payload: bytes,
        error: CsErrorCode = CsErrorCode.CS_OK,
    ) -> None:
        self.replies.append(Reply(conn=conn, message_id=message_id, payload=payload, error=error))

    def dispatch(self, conn: ClientConnection, message_id: int, payload: bytes) -> None:
        self.notifications.append(Notification(conn=conn, message_id=message_id, payload=payload))


class FakeCluster(Generic[EngineT]):
    """One engine per node, driven as the executive would drive it."""

    def __init__(self, engine_class: type[EngineT], nodeids: Iterable[int]) -> None:
        validate_engine(engine_class)
        self.outbox: list[Multicast] = []
        ids = sorted(set(nodeids))
        if not ids:
            raise ValueError("a cluster needs at least one node")
        self.executives = {nodeid: FakeExecutive(nodeid, self.outbox) for nodeid in ids}
        self.engines: dict[int, EngineT] = {nodeid: engine_class() for nodeid in ids}
        self.members: tuple[int, ...] = ()
        self.ring_id = RingId(seq=0, rep=ids[0])
        self._conn_ids = itertools.count(1)
        for nodeid in ids:
            self.engines[nodeid].exec_init(self.executives[nodeid])

    def deliver(self) -> int:
        """Deliver every queued multicast to the members in agreed order; return how many."""
        delivered = 0
        while self.outbox:
            message = self.outbox.pop(0)
            if message.sender not in self.members:
                continue
            for nodeid in self.members:
                engine = self.engines[nodeid]
                entry = engine.exec_handlers.get(message.function_id)
                if entry is None:
                    raise LookupError(
                        f"engine {engine.name!r} has no exec handler {message.function_id}"
                    )
                entry.handler(engine, message.payload, message.sender)
                # Each message is a batch of its own here (the worker's are Totem deliveries).
                batch_end = batch_end_hook(engine)
                if batch_end is not None:
                    batch_end()
            delivered += 1
        return delivered

    def apply_cmap_writes(self) -> int:
        """Let every node's cmap owner apply its pending writes; return how many."""
        return sum(executive.apply_cmap_writes() for executive in self.executives.values())

    def change_membership(self, members: Iterable[int]) -> RingId:
        """Install a new configuration on ``members`` and run its sync round."""
        new = tuple(sorted(set(members)))
        unknown = set(new) - set(self.engines)
        if not new or unknown:
            raise ValueError(f"members must be known nodes, got {new}")
        self.deliver()
        old = self.members
        self.ring_id = RingId(seq=self.ring_id.seq + 1, rep=new[0])
        transitional = {n: _transitional(n, old, new) for n in new}
        for nodeid in new:
            self._confchg(nodeid, old, transitional[nodeid], new)
        self.members = new
        self._sync(transitional)
        return self.ring_id

    def connect(
        self, nodeid: int, *, pid: int = 1000, uid: int = 0, gid: int = 0
    ) -> ClientConnection:
        """A client connects to the engine on ``nodeid``."""
        conn = ClientConnection(conn_id=next(self._conn_ids), pid=pid, uid=uid, gid=gid)
        self.engines[nodeid].lib_init(conn)
        return conn

    def disconnect(self, nodeid: int, conn: ClientConnection) -> None:
        self.engines[nodeid].lib_exit(conn)

    def request(self, nodeid: int, conn: ClientConnection, request_id: int, payload: bytes) -> None:
        """A client request reaches the engine on ``nodeid`` (after admission)."""
        engine = self.engines[nodeid]
        executive = self.executives[nodeid]
        entry = engine.lib_handlers.get(request_id)
        if entry is None:
            executive.reply(conn, 0, b"", CsErrorCode.CS_ERR_INVALID_PARAM)
        elif not (engine.allow_inquorate or executive.quorate) or (
            entry.flow_control is FlowControl.REQUIRED and executive.would_block
        ):
            executive.reply(conn, 0, b"", CsErrorCode.CS_ERR_TRY_AGAIN)
        else:
            entry.handler(engine, conn, payload)

    def _confchg(
        self, nodeid: int, old: tuple[int, ...], trans: tuple[int, ...], new: tuple[int, ...]
    ) -> None:
        engine = self.engines[nodeid]
        seen_before = old if nodeid in old else (nodeid,)
        left = tuple(n for n in seen_before if n not in trans)
        joined = tuple(n for n in new if n not in trans)
        engine.confchg(ConfigKind.TRANSITIONAL, trans, left, (), self.ring_id)
        engine.confchg(ConfigKind.REGULAR, new, (), joined, self.ring_id)

    def _sync(self, transitional: dict[int, tuple[int, ...]]) -> None:
        for nodeid in self.members:
            self.engines[nodeid].sync_init(transitional[nodeid], self.members, self.ring_id)
        pending = set(self.members)
        for _ in range(SYNC_PASSES_MAX):
            pending = {n for n in sorted(pending) if not self.engines[n].sync_process()}
            self.deliver()
            if not pending:
                break
        else:
            for nodeid in self.members:
                self.engines[nodeid].sync_abort()
            raise RuntimeError(f"sync_process did not finish on nodes {sorted(pending)}")
        for nodeid in self.members:
            self.engines[nodeid].sync_activate()


def _transitional(nodeid: int, old: tuple[int, ...], new: tuple[int, ...]) -> tuple[int, ...]:
    """The members of ``new`` that ``nodeid`` was already in a configuration with."""
    if nodeid not in old:
        return (nodeid,)
    return tuple(n for n in new if n in old)
