"""The sync coordinator: one round of service synchronisation per membership, sans-IO.

Theory of operation
-------------------
After every REGULAR configuration the service engines of all members must rebuild their
replicated state from what each member brings (CPG's joinlists, votequorum's votes, ...) and
switch to it at the same point of the agreed stream. Corosync's ``exec/sync.c`` does it in a
*round*; this is the same protocol, run in the Totem process, which never calls an engine:
it emits commands that the worker applies (:mod:`pycorosync.exec.sync_driver`) and hears back
through :meth:`SyncCoordinator.service_done`.

A round for ring R, on every member:

1. **Start** (REGULAR confchg): multicast SERVICE_BUILD {R, the local service ids}; command
   :class:`SyncInit` for every local engine with the members and the transitional members
   (those of the preceding TRANSITIONAL confchg that are still members).
2. **Build**: each SERVICE_BUILD of R adds its services to the round's list. Once every member's
   arrived, the list (sorted by service id) is the same everywhere, and the round runs it.
   A service some member named but this node lacks runs as a no-op here: Corosync's "Unknown
   External Service", done at once.
3. **Process** of the current service: command :class:`SyncProcess`; the worker runs the
   engine's ``sync_process`` until it returns True and reports :meth:`~SyncCoordinator.
   service_done`; then multicast BARRIER {R, service}. The engine's own sync multicasts went
   out before, on the same SYNC lane, so every member has them before the barrier.
4. **Barrier**: once every member's BARRIER for the service arrived, command
   :class:`SyncActivate` and go to the next service; after the last one emit
   :class:`SyncComplete` - the integrator then releases the application queue
   (``Srp.release_app``, only if SRP still runs that ring): no application message reaches
   an engine mid-round.

A new configuration ends a round. The TRANSITIONAL confchg *freezes* it: it saves the
transitional members, and every sync message delivered after it (an old-ring straggler) is
discarded, so a round can never complete - and release the application queue that Totem just
held for the new ring - between the two confchgs. The REGULAR confchg then aborts it, with
:class:`SyncAbort` for the service in its PROCESS or BARRIER phase (Corosync added the barrier
case to stop CPG's ghost members), and starts the new round. A message of another ring is
discarded and logged in Corosync's words; a report from the worker about an older round is
ignored. Garbage is logged and dropped: the round goes on as if it had never arrived.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

from pycorosync.exec.sync_wire import (
    Barrier,
    ServiceBuild,
    SyncMessage,
    SyncWireError,
    decode,
    encode,
)
from pycorosync.exec.totem.events import ConfigChange, ConfigKind, RingId
from pycorosync.lib.errors import InvalidParamError

__all__ = [
    "EngineCommand",
    "SyncAbort",
    "SyncActivate",
    "SyncComplete",
    "SyncCoordinator",
    "SyncInit",
    "SyncLog",
    "SyncMcast",
    "SyncOutput",
    "SyncProcess",
    "unknown_service_name",
]

READY_LINE = "Completed service synchronization, ready to provide service."
"""What the integrator logs when a round completes (Corosync's MAIN line)."""


@dataclass(frozen=True, slots=True)
class SyncMcast:
    """Multicast ``payload`` on the SYNC lane to totempg group ``b"sync"``."""

    payload: bytes


@dataclass(frozen=True, slots=True)
class SyncInit:
    """Call ``sync_init(transitional, members, ring_id)`` on every local engine."""

    transitional: tuple[int, ...]
    members: tuple[int, ...]
    ring_id: RingId


@dataclass(frozen=True, slots=True)
class SyncProcess:
    """Run this engine's ``sync_process`` until True, then report ``service_done``."""

    service_id: int
    ring_id: RingId


@dataclass(frozen=True, slots=True)
class SyncActivate:
    """Call this engine's ``sync_activate``: every member finished its ``sync_process``."""

    service_id: int
    ring_id: RingId


@dataclass(frozen=True, slots=True)
class SyncAbort:
    """Call this engine's ``sync_abort``: a new configuration interrupted its round."""

    service_id: int
    ring_id: RingId


@dataclass(frozen=True, slots=True)
class SyncComplete:
    """The round is done: serve clients, and release SRP's application queue if SRP still
    runs ``ring_id`` (it may already hold the queue for a newer ring whose confchg the
    coordinator has not been fed yet; that ring's round releases it)."""

    ring_id: RingId
    members: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class SyncLog:
    """A line for the operator's log (``level`` is a :mod:`logging` level number)."""

    level: int
    text: str


EngineCommand = SyncInit | SyncProcess | SyncActivate | SyncAbort
"""The outputs the worker applies to its engines."""
SyncOutput = SyncMcast | EngineCommand | SyncComplete | SyncLog


class _Phase(Enum):
    IDLE = "idle"
    """No round: before the first REGULAR configuration, or after one completed."""
    BUILD = "build"
    PROCESS = "process"
    BARRIER = "barrier"
    FROZEN = "frozen"
    """A TRANSITIONAL configuration came: the round waits for the REGULAR one to abort it."""


def unknown_service_name(service_id: int) -> str:
    """Corosync's name for a service another member synchronises and this node lacks."""
    return f"Unknown External Service (id = {service_id})"


class SyncCoordinator:
    """One node's sync protocol; see the module docstring.

    ``local_services`` are the service ids of this node's engines that take part in sync.
    """

    def __init__(self, local_services: Sequence[int]) -> None:
        if len(set(local_services)) != len(local_services):
            raise InvalidParamError(f"local services {list(local_services)} repeat an id")
        self._local = frozenset(local_services)
        self._out: list[SyncOutput] = []
        self._phase = _Phase.IDLE
        self._frozen_from = _Phase.IDLE
        self._transitional: tuple[int, ...] = ()
        self._ring: RingId | None = None
        self._members: tuple[int, ...] = ()
        self._built: set[int] = set()
        self._services: set[int] = set()
        self._order: tuple[int, ...] = ()
        self._index = 0
        self._barriers: set[int] = set()
        self._in_sync = False

    @property
    def in_sync(self) -> bool:
        """True once a round completed, until the next configuration change.

        While False the node is between a configuration change and the end of its sync round
        (or has never synchronised): the application queue is held and clients wait.
        """
        return self._in_sync

    @property
    def ring_id(self) -> RingId | None:
        """The ring of the latest round started (None before the first)."""
        return self._ring

    def take_output(self) -> list[SyncOutput]:
        out, self._out = self._out, []
        return out

    # -- configuration changes ---------------------------------------------------------------

    def config_change(self, change: ConfigChange) -> None:
        """Feed every configuration change, in delivery order."""
        self._in_sync = False
        if change.kind is ConfigKind.TRANSITIONAL:
            self._transitional = change.members
            if self._phase is not _Phase.FROZEN:
                self._frozen_from = self._phase
                self._phase = _Phase.FROZEN
            return
        self._abort_round()
        self._start_round(change)

    def _abort_round(self) -> None:
        phase = self._frozen_from if self._phase is _Phase.FROZEN else self._phase
        if phase in (_Phase.PROCESS, _Phase.BARRIER) and self._ring is not None:
            service = self._order[self._index]
            self._log(logging.DEBUG, f"sync round of ring {self._ring} aborted in {phase.value}")
            if service in self._local:
                self._out.append(SyncAbort(service, self._ring))

    def _start_round(self, change: ConfigChange) -> None:
        ring, members = change.ring_id, change.members
        self._ring, self._members = ring, members
        self._phase = _Phase.BUILD
        self._built = set()
        self._services = set(self._local)
        self._order = ()
        self._index = 0
        self._barriers = set()
        kept = set(members)
        transitional = tuple(node for node in self._transitional if node in kept)
        self._transitional = ()
        self._log(logging.DEBUG, f"sync round of ring {ring} starts, members {list(members)}")
        local = tuple(sorted(self._local))
        self._out.append(SyncMcast(encode(ServiceBuild(ring, local))))
        self._out.append(SyncInit(transitional, members, ring))

    # -- messages ----------------------------------------------------------------------------

    def deliver(self, sender: int, payload: bytes) -> None:
        """A message of group ``b"sync"``, in agreed order."""
        try:
            message = decode(payload)
        except SyncWireError as error:
            self._log(logging.WARNING, f"discarding sync message from node {sender}: {error}")
            return
        if not self._current(message):
            return
        if sender not in self._members:
            self._log(logging.WARNING, f"discarding sync message from non-member {sender}")
            return
        if isinstance(message, ServiceBuild):
            self._on_build(sender, message)
        else:
            self._on_barrier(sender, message)

    def _current(self, message: SyncMessage) -> bool:
        """Whether ``message`` belongs to the running round; log the discard if not."""
        live = self._phase is not _Phase.FROZEN and message.ring_id == self._ring
        if not live:
            what = "service build" if isinstance(message, ServiceBuild) else "barrier"
            self._log(logging.DEBUG, f"{what} for old ring - discarding")
        return live

    def _on_build(self, sender: int, build: ServiceBuild) -> None:
        if self._phase is not _Phase.BUILD:
            self._log(logging.WARNING, f"discarding late service build from node {sender}")
            return
        self._built.add(sender)
        self._services.update(build.services)
        if self._built.issuperset(self._members):
            self._order = tuple(sorted(self._services))
            self._index = 0
            self._begin_service()

    def _on_barrier(self, sender: int, barrier: Barrier) -> None:
        phase = self._phase
        if phase not in (_Phase.PROCESS, _Phase.BARRIER) or barrier.service_id != self._service:
            self._log(
                logging.WARNING,
                f"discarding barrier for service {barrier.service_id} from node {sender} "
                f"(round is in {phase.value})",
            )
            return
        self._barriers.add(sender)
        if self._barriers.issuperset(self._members):
            self._activate()

    # -- the worker's reports -----------------------------------------------------------------

    def service_done(self, service_id: int, ring_id: RingId) -> None:
        """The worker ran ``sync_process`` of ``service_id`` to True in the round of ``ring_id``.

        A report about another round or service (one that was aborted meanwhile) is ignored.
        """
        if self._phase is not _Phase.PROCESS or ring_id != self._ring:
            return
        if service_id != self._service:
            return
        self._send_barrier()

    # -- stepping through the service list ----------------------------------------------------

    @property
    def _service(self) -> int:
        return self._order[self._index] if self._index < len(self._order) else -1

    def _begin_service(self) -> None:
        if self._index == len(self._order):
            self._complete()
            return
        ring = self._ring
        assert ring is not None
        self._phase = _Phase.PROCESS
        self._barriers = set()
        service = self._service
        if service in self._local:
            self._out.append(SyncProcess(service, ring))
            return
        # Another member's engine: nothing to do here, but the barrier keeps us in step.
        self._log(logging.DEBUG, f"{unknown_service_name(service)} runs as a no-op here")
        self._send_barrier()

    def _send_barrier(self) -> None:
        ring = self._ring
        assert ring is not None
        self._phase = _Phase.BARRIER
        self._out.append(SyncMcast(encode(Barrier(ring, self._service))))

    def _activate(self) -> None:
        ring = self._ring
        assert ring is not None
        service = self._service
        if service in self._local:
            self._out.append(SyncActivate(service, ring))
        self._index += 1
        self._begin_service()

    def _complete(self) -> None:
        ring = self._ring
        assert ring is not None
        self._phase = _Phase.IDLE
        self._in_sync = True
        self._out.append(SyncComplete(ring, self._members))

    def _log(self, level: int, text: str) -> None:
        self._out.append(SyncLog(level, text))
