"""The queue between the threads that log and the one thread that writes.

Callers put records on a bounded queue and never wait (:class:`DroppingQueueHandler`); one
:class:`LogWriter` thread takes them off, formats them and writes them to the destinations its
current :class:`Routing` names for the record's subsystem. The writer owns the destinations: it
alone writes to them, and it alone closes those a new configuration no longer uses.

Configurations are numbered. Each record carries the number of the configuration in force when
it was logged, and the writer routes it with that configuration, so a change applies exactly
from the first record logged after it: a record queued before ``function_name: on`` is not
printed with a function name, and one queued before a new logfile goes to the old file. The
writer closes a retired destination once it reaches the first item of a later configuration;
everything queued before that point has been written.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from logging.handlers import QueueHandler
from typing import Final

from pycorosync.exec.logformat import MAIN_SUBSYS, subsys_of

Route = tuple[tuple[logging.Handler, int, logging.Formatter], ...]
"""(destination, lowest level, format) for each destination of one subsystem."""

_GENERATION: Final = "pycorosync_logsys_generation"


@dataclass(frozen=True, slots=True)
class Routing:
    default: Route
    by_subsys: Mapping[str, Route]

    def route(self, subsys: str) -> Route:
        return self.by_subsys.get(subsys, self.default)

    def handlers(self) -> set[logging.Handler]:
        routes = [self.default, *self.by_subsys.values()]
        return {handler for route in routes for handler, _, _ in route}


EMPTY_ROUTING: Final = Routing((), {})


@dataclass(frozen=True, slots=True)
class _Barrier:
    reached: threading.Event


@dataclass(frozen=True, slots=True)
class _Wake:
    """Tells the writer that configuration ``generation`` exists, so that it closes what that
    configuration retired even if nothing more is logged."""

    generation: int


_STOP: Final = object()


class DroppingQueueHandler(QueueHandler):
    """A QueueHandler that never blocks: a record that finds the queue full is counted and
    dropped. Each record queued is stamped with the current configuration number."""

    def __init__(self, records: queue.Queue[object]) -> None:
        super().__init__(records)
        self.generation = 0
        self._lock_dropped = threading.Lock()
        self._dropped = 0
        self.dropped_total = 0

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        prepared: logging.LogRecord = super().prepare(record)
        prepared.__dict__[_GENERATION] = self.generation
        return prepared

    def enqueue(self, record: logging.LogRecord) -> None:
        try:
            self.queue.put_nowait(record)
        except queue.Full:
            with self._lock_dropped:
                self._dropped += 1
                self.dropped_total += 1

    def take_dropped(self) -> int:
        with self._lock_dropped:
            dropped, self._dropped = self._dropped, 0
        return dropped


class LogWriter(threading.Thread):
    """The one thread that formats and writes records."""

    def __init__(
        self,
        records: queue.Queue[object],
        namespace: str,
        take_dropped: Callable[[], int],
    ) -> None:
        super().__init__(name="corosync-logsys", daemon=True)
        self._records = records
        self._namespace = namespace
        self._take_dropped = take_dropped
        self._lock = threading.Lock()
        self._routings: dict[int, Routing] = {0: EMPTY_ROUTING}
        self._retire_at: dict[int, list[logging.Handler]] = {}
        self._reached = 0

    def publish(self, generation: int, routing: Routing, retired: list[logging.Handler]) -> None:
        """Make configuration ``generation`` known; call before stamping records with it."""
        with self._lock:
            self._routings[generation] = routing
            self._retire_at[generation] = retired

    def wake(self, generation: int) -> None:
        # If the queue is full the writer is busy; the next record of this generation will
        # do what the wake-up would have done.
        with contextlib.suppress(queue.Full):
            self._records.put_nowait(_Wake(generation))

    def barrier(self, timeout: float) -> threading.Event | None:
        """An event set once everything queued before it is written; None if the queue stayed
        full for ``timeout``."""
        barrier = _Barrier(threading.Event())
        try:
            self._records.put(barrier, timeout=timeout)
        except queue.Full:
            return None
        return barrier.reached

    def stop(self, timeout: float) -> None:
        # On a full queue the caller's join() times out and reports it.
        with contextlib.suppress(queue.Full):
            self._records.put(_STOP, timeout=timeout)

    def run(self) -> None:
        while True:
            item = self._records.get()
            if item is _STOP:
                return
            if isinstance(item, _Barrier):
                item.reached.set()
            elif isinstance(item, _Wake):
                self._reach(item.generation)
            elif isinstance(item, logging.LogRecord):
                self._reach(item.__dict__.get(_GENERATION, 0))
                self._dispatch(item)
                self._report_drops()

    def close_all(self) -> None:
        """Once the thread has stopped: close every destination it still holds."""
        with self._lock:
            handlers = {h for r in self._routings.values() for h in r.handlers()}
            handlers.update(h for retired in self._retire_at.values() for h in retired)
            self._routings = {self._reached: EMPTY_ROUTING}
            self._retire_at.clear()
        for handler in handlers:
            handler.close()

    def _reach(self, generation: int) -> None:
        """Everything before ``generation`` is written: close what it retired."""
        if generation <= self._reached:
            return
        with self._lock:
            retired = [h for g, hs in self._retire_at.items() if g <= generation for h in hs]
            self._retire_at = {g: hs for g, hs in self._retire_at.items() if g > generation}
            self._routings = {g: r for g, r in self._routings.items() if g >= generation}
        self._reached = generation
        for handler in retired:
            handler.close()

    def _routing(self, generation: int) -> Routing:
        # A record stamped just before a reconfiguration may arrive after the writer moved
        # on (another thread's put overtaken by the wake-up); it goes by the newer config.
        with self._lock:
            return self._routings.get(generation) or self._routings[self._reached]

    def _dispatch(self, record: logging.LogRecord) -> None:
        routing = self._routing(record.__dict__.get(_GENERATION, self._reached))
        for handler, level, formatter in routing.route(subsys_of(record.name, self._namespace)):
            if record.levelno >= level:
                handler.formatter = formatter
                handler.handle(record)

    def _report_drops(self) -> None:
        dropped = self._take_dropped()
        if dropped:
            record = logging.LogRecord(
                f"{self._namespace}.{MAIN_SUBSYS}",
                logging.WARNING,
                __file__,
                0,
                "Logging fell behind: %d messages were dropped.",
                (dropped,),
                None,
                "_report_drops",
            )
            self._dispatch(record)
