"""Applies the sync coordinator's commands to service engines: the worker's half of sync.

Theory of operation
-------------------
The coordinator (:mod:`pycorosync.exec.sync`) runs in the Totem process and never touches an
engine. The process that hosts the engines feeds each :data:`~pycorosync.exec.sync.
EngineCommand` it receives, in order, to :meth:`SyncDriver.apply`:

* :class:`~pycorosync.exec.sync.SyncInit` calls ``sync_init`` on every engine, in ascending
  service id (the order the round runs them in);
* :class:`~pycorosync.exec.sync.SyncProcess` makes that engine's ``sync_process`` *pending*;
* :class:`~pycorosync.exec.sync.SyncActivate` / :class:`~pycorosync.exec.sync.SyncAbort` call
  ``sync_activate`` / ``sync_abort`` (an abort also drops a pending ``sync_process``). The
  driver remembers which engines activated since the last ``SyncInit`` (:meth:`SyncDriver.
  activated`): their multicasts are application traffic again, whatever the rest of the
  round is still doing.

:meth:`SyncDriver.poll` calls the pending ``sync_process`` (Corosync's scheduled work): an
engine answers False when it must be called again - typically because its multicast would
block until the token has drained the queue - so the caller polls again on a later turn of
its loop, never in a tight loop. When ``sync_process`` returns True the driver reports a
:class:`ServiceDone`, which the caller hands back to the coordinator's ``service_done``.

No I/O, no clock: the worker process and the simulator run exactly this code. An exception an
engine raises propagates: an engine that cannot sync is a crashed worker (DESIGN.md: its node
leaves and rejoins).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from pycorosync.exec.sync import EngineCommand, SyncActivate, SyncInit, SyncProcess
from pycorosync.exec.totem.events import RingId
from pycorosync.lib.errors import InvalidParamError, NotExistError
from pycorosync.plugins.engine import ServiceEngine

__all__ = ["ServiceDone", "SyncDriver"]


@dataclass(frozen=True, slots=True)
class ServiceDone:
    """``sync_process`` of ``service_id`` returned True in the round of ``ring_id``."""

    service_id: int
    ring_id: RingId


class SyncDriver:
    """Runs the sync callbacks of one process's engines as the coordinator commands."""

    def __init__(self, engines: Iterable[ServiceEngine]) -> None:
        self._engines: dict[int, ServiceEngine] = {}
        for engine in engines:
            if engine.service_id in self._engines:
                raise InvalidParamError(f"two engines with service id {engine.service_id}")
            self._engines[engine.service_id] = engine
        self._pending: SyncProcess | None = None
        self._activated: set[int] = set()

    @property
    def service_ids(self) -> tuple[int, ...]:
        """The engines' service ids, ascending: the coordinator's ``local_services``."""
        return tuple(sorted(self._engines))

    @property
    def busy(self) -> bool:
        """A ``sync_process`` waits to be called (again) by :meth:`poll`."""
        return self._pending is not None

    def activated(self, service_id: int) -> bool:
        """That engine has activated in the latest round: its multicasts are application
        traffic again (the hosts send them on the APP lane, see WorkerHost.mcast)."""
        return service_id in self._activated

    def apply(self, command: EngineCommand) -> None:
        """Carry out one command, in the order the coordinator emitted them."""
        if isinstance(command, SyncInit):
            self._pending = None
            self._activated = set()
            for service_id in self.service_ids:
                self._engines[service_id].sync_init(
                    command.transitional, command.members, command.ring_id
                )
        elif isinstance(command, SyncProcess):
            self._engine(command.service_id)
            self._pending = command
        elif isinstance(command, SyncActivate):
            self._engine(command.service_id).sync_activate()
            self._activated.add(command.service_id)
        else:
            engine = self._engine(command.service_id)
            if self._pending is not None and self._pending.service_id == command.service_id:
                self._pending = None
            engine.sync_abort()

    def poll(self, max_calls: int = 1) -> list[ServiceDone]:
        """Call the pending ``sync_process`` up to ``max_calls`` times while it says "again"."""
        done: list[ServiceDone] = []
        for _ in range(max_calls):
            pending = self._pending
            if pending is None:
                break
            if self._engines[pending.service_id].sync_process():
                self._pending = None
                done.append(ServiceDone(pending.service_id, pending.ring_id))
        return done

    def _engine(self, service_id: int) -> ServiceEngine:
        engine = self._engines.get(service_id)
        if engine is None:
            raise NotExistError(f"sync command for service {service_id}, which is not loaded")
        return engine
