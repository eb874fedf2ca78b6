"""Logging the Corosync way: subsystems, destinations and priorities from the ``logging.*`` keys.

Theory of operation
-------------------
Every subsystem is a Python logger under one namespace (``pycorosync.TOTEM``,
``pycorosync.MAIN``, ...; see :func:`subsys_logger`); a record's subsystem is the first name
below the namespace, so ``pycorosync.TOTEM.srp`` still prints ``[TOTEM ]``.

:meth:`LogSys.apply` reads the ``logging.*`` keys (:mod:`pycorosync.exec.logconfig`), opens the
destinations they name — stderr, log files, syslog — and routes each subsystem to its
destinations with a lowest level per destination (``debug`` on/trace lowers all of them). It
also sets each subsystem logger's level to the lowest level any of its destinations takes, so a
message nobody wants is never even built (``logger.debug`` costs one cached comparison).

**The caller never waits for a write.** The namespace logger has a single handler, a
``QueueHandler`` onto a bounded queue; one writer thread takes records off the queue, formats
them (:mod:`pycorosync.exec.logformat`) and writes them. A log call in the Totem process thus
costs building the record and a non-blocking put, whatever the disk, the terminal or syslog
are doing. When the writer falls behind by ``queue_size`` records (a hung NFS log file, a
stopped terminal), further records are dropped and counted rather than blocking the token or
growing memory without bound; the writer then logs how many it lost, as soon as it catches up.
Records keep the time they were made, so queueing does not shift timestamps.

**Reconfiguration** (a ``logging.*`` key changed at runtime) calls ``apply`` again with the new
keys. The whole new configuration is validated and every new file opened first, so a bad value
raises :class:`~pycorosync.exec.config_error.ConfigError` and leaves logging exactly as it was.
Destinations still in use are kept open (a file is not reopened, syslog not reconnected);
applying the same keys twice changes nothing. The writer thread swaps to the new routing
between two records and closes destinations no longer used itself, so a record is never written
to a half-closed file.

Syslog goes through :class:`logging.handlers.SysLogHandler` on ``/dev/log``; when that socket
does not exist or refuses the connection, syslog output is skipped with a warning on the other
destinations. Debug and trace messages go to syslog one priority up (info and debug), as libqb
sends them.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from logging.handlers import QueueHandler, SysLogHandler
from typing import Final, TextIO

from pycorosync.exec.config_error import ConfigError
from pycorosync.exec.logconfig import (
    PREFIX,
    SUBSYS_PREFIX,
    LoggingConfig,
    SubsysSettings,
    parse_logging_config,
)
from pycorosync.exec.logformat import (
    ALERT,
    EMERG,
    MAIN_SUBSYS,
    NOTICE,
    TRACE,
    CorosyncFormatter,
    Target,
    subsys_of,
    syslog_priority,
)

__all__ = [
    "ALERT",
    "EMERG",
    "NAMESPACE",
    "NOTICE",
    "SUBSYSTEMS",
    "TRACE",
    "LogSys",
    "subsys_logger",
]

NAMESPACE: Final = "pycorosync"
SUBSYSTEMS: Final = (
    "MAIN",
    "TOTEM",
    "KNET",
    "QUORUM",
    "VOTEQ",
    "CPG",
    "CMAP",
    "CFG",
    "SYNC",
    "SERV",
    "SAM",
    "IPC",
)
"""The subsystem names the daemon logs under (any other name works the same way)."""

DEFAULT_SYSLOG_SOCKET: Final = "/dev/log"
DEFAULT_QUEUE_SIZE: Final = 10_000
_NOTHING: Final = EMERG + 10
"""A logger level above every priority: the subsystem has no destination at all."""


def subsys_logger(subsys: str, namespace: str = NAMESPACE) -> logging.Logger:
    """The logger for ``subsys`` (``TOTEM``, ``MAIN``, ...)."""
    if not subsys or "." in subsys:
        raise ValueError(f"invalid subsystem name {subsys!r}")
    return logging.getLogger(f"{namespace}.{subsys}")


@dataclass(frozen=True, slots=True)
class _Sink:
    """One destination: stderr, one log file, or syslog with one facility."""

    target: Target
    where: str = ""


_Route = tuple[tuple[logging.Handler, int], ...]


@dataclass(frozen=True, slots=True)
class _Routing:
    default: _Route
    by_subsys: Mapping[str, _Route]

    def route(self, subsys: str) -> _Route:
        return self.by_subsys.get(subsys, self.default)


@dataclass(frozen=True, slots=True)
class _Barrier:
    reached: threading.Event


_STOP: Final = object()
_WAKE: Final = object()
_QueueItem = object
"""A LogRecord, a _Barrier, _WAKE or _STOP."""


class _DroppingQueueHandler(QueueHandler):
    """A QueueHandler that never blocks: when the queue is full the record is counted, not
    queued."""

    def __init__(self, records: queue.Queue[_QueueItem]) -> None:
        super().__init__(records)
        self._lock_dropped = threading.Lock()
        self._dropped = 0
        self.dropped_total = 0

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


class _CorosyncSysLogHandler(SysLogHandler):
    """SysLogHandler whose priority comes from the level number, bumped as libqb does."""

    _levelno = logging.INFO

    def emit(self, record: logging.LogRecord) -> None:
        self._levelno = record.levelno
        super().emit(record)

    def mapPriority(self, levelName: str) -> str:  # noqa: N802, N803 - stdlib names
        del levelName
        return _SYSLOG_WORDS[syslog_priority(self._levelno)]


_SYSLOG_WORDS: Final = ("emerg", "alert", "crit", "err", "warning", "notice", "info", "debug")


class _Writer(threading.Thread):
    """The one thread that formats and writes records, and owns every open destination."""

    def __init__(
        self,
        records: queue.Queue[_QueueItem],
        namespace: str,
        take_dropped: Callable[[], int],
    ) -> None:
        super().__init__(name="corosync-logsys", daemon=True)
        self._records = records
        self._namespace = namespace
        self._take_dropped = take_dropped
        self.routing = _Routing((), {})
        self._retired: deque[logging.Handler] = deque()

    def swap(self, routing: _Routing, retired: list[logging.Handler]) -> None:
        # Order matters: the new routing must be visible before the writer can see the
        # retired handlers, because it closes those and then reads the routing.
        self.routing = routing
        self._retired.extend(retired)
        with contextlib.suppress(queue.Full):
            self._records.put_nowait(_WAKE)

    def run(self) -> None:
        while True:
            item = self._records.get()
            self._close_retired()
            if item is _STOP:
                return
            if isinstance(item, _Barrier):
                item.reached.set()
            elif isinstance(item, logging.LogRecord):
                self._dispatch(item)
                self._report_drops()

    def _dispatch(self, record: logging.LogRecord) -> None:
        for handler, level in self.routing.route(subsys_of(record.name, self._namespace)):
            if record.levelno >= level:
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

    def _close_retired(self) -> None:
        while self._retired:
            self._retired.popleft().close()

    def close_all(self) -> None:
        """Only once the thread has stopped: close what it still holds."""
        self._close_retired()
        for handler in {h for route in self._all_routes() for h, _ in route}:
            handler.close()

    def _all_routes(self) -> list[_Route]:
        return [self.routing.default, *self.routing.by_subsys.values()]


class LogSys:
    """The process's logging: call :meth:`apply` with the ``logging.*`` keys, again whenever
    they change, and :meth:`close` on the way out."""

    def __init__(
        self,
        *,
        namespace: str = NAMESPACE,
        program: str = "corosync",
        hostname: str | None = None,
        stderr: TextIO | None = None,
        syslog_socket: str = DEFAULT_SYSLOG_SOCKET,
        queue_size: int = DEFAULT_QUEUE_SIZE,
        time_converter: Callable[[float], time.struct_time] = time.localtime,
    ) -> None:
        self._namespace = namespace
        self._program = program
        self._hostname = hostname if hostname is not None else socket.gethostname()
        self._stderr = stderr
        self._syslog_socket = syslog_socket
        self._time_converter = time_converter
        self._records: queue.Queue[_QueueItem] = queue.Queue(maxsize=queue_size)
        self._queue_handler = _DroppingQueueHandler(self._records)
        self._writer = _Writer(self._records, namespace, self._queue_handler.take_dropped)
        self._sinks: dict[_Sink, logging.Handler] = {}
        self._leveled: set[str] = set()
        self._config: LoggingConfig | None = None
        self._root = logging.getLogger(namespace)
        self._root_propagate = self._root.propagate
        self._root_level = self._root.level
        self._closed = False

    @property
    def config(self) -> LoggingConfig | None:
        """The configuration in force, None before the first :meth:`apply`."""
        return self._config

    @property
    def dropped(self) -> int:
        """Records dropped so far because the writer was ``queue_size`` records behind."""
        return self._queue_handler.dropped_total

    def apply(self, config: Mapping[str, str]) -> LoggingConfig:
        """Put the ``logging.*`` keys of ``config`` in force; raise ConfigError and change
        nothing if any is invalid. Applying an unchanged configuration does nothing."""
        if self._closed:
            raise RuntimeError("LogSys is closed")
        new = parse_logging_config(config)
        if new == self._config:
            return new
        sinks, notes = self._open_sinks(new)
        retired = [handler for sink, handler in self._sinks.items() if sink not in sinks]
        self._sinks = sinks
        for sink, handler in sinks.items():
            handler.setFormatter(self._formatter(sink.target, new))
        routing = self._routing(new)
        self._set_levels(new, routing)
        self._writer.swap(routing, retired)
        self._start()
        self._config = new
        main = subsys_logger(MAIN_SUBSYS, self._namespace)
        for note in (*new.warnings, *notes):
            main.warning(note)
        return new

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until everything logged so far is written; False if ``timeout`` ran out."""
        if not self._writer.is_alive():
            return True
        deadline = time.monotonic() + timeout
        barrier = _Barrier(threading.Event())
        try:
            self._records.put(barrier, timeout=timeout)
        except queue.Full:
            return False
        return barrier.reached.wait(max(0.0, deadline - time.monotonic()))

    def close(self, timeout: float = 5.0) -> bool:
        """Stop logging through this LogSys: flush, stop the writer, close every destination
        and give the namespace logger back its previous state. False if the writer did not
        finish within ``timeout`` (its destinations are then left open)."""
        if self._closed:
            return True
        self._closed = True
        self._root.removeHandler(self._queue_handler)
        self._root.propagate = self._root_propagate
        self._root.setLevel(self._root_level)
        for name in self._leveled:
            logging.getLogger(name).setLevel(logging.NOTSET)
        self._leveled.clear()
        if not self._writer.is_alive():
            return True
        deadline = time.monotonic() + timeout
        with contextlib.suppress(queue.Full):
            self._records.put(_STOP, timeout=timeout)
        self._writer.join(max(0.0, deadline - time.monotonic()))
        if self._writer.is_alive():
            return False
        self._writer.close_all()
        return True

    def __enter__(self) -> LogSys:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _start(self) -> None:
        if not self._writer.is_alive():
            self._writer.start()
            self._root.addHandler(self._queue_handler)
            self._root.propagate = False

    # --- destinations ---------------------------------------------------------------------

    def _wanted(self, config: LoggingConfig) -> dict[_Sink, str]:
        """Every destination the config names, with the key that named it (for errors)."""
        wanted: dict[_Sink, str] = {}
        sections = [(PREFIX, config.default)]
        sections += [(f"{SUBSYS_PREFIX}{name}.", s) for name, s in config.subsystems]
        for prefix, settings in sections:
            if settings.stderr_level() is not None:
                wanted.setdefault(_Sink(Target.STDERR), prefix + "to_stderr")
            if settings.file_level() is not None and settings.logfile:
                key = _logfile_key(prefix, settings, config.default)
                wanted.setdefault(_Sink(Target.FILE, settings.logfile), key)
            if settings.syslog_level() is not None:
                facility = str(settings.syslog_facility)
                wanted.setdefault(_Sink(Target.SYSLOG, facility), prefix + "syslog_facility")
        return wanted

    def _open_sinks(self, config: LoggingConfig) -> tuple[dict[_Sink, logging.Handler], list[str]]:
        """Existing handlers still wanted plus newly opened ones; on error, the new ones are
        closed again before ConfigError is raised."""
        sinks: dict[_Sink, logging.Handler] = {}
        opened: list[logging.Handler] = []
        notes: list[str] = []
        try:
            for sink, key in self._wanted(config).items():
                handler = self._sinks.get(sink)
                if handler is None:
                    handler = self._open(sink, key, notes)
                    if handler is None:
                        continue
                    opened.append(handler)
                sinks[sink] = handler
        except ConfigError:
            for handler in opened:
                handler.close()
            raise
        return sinks, notes

    def _open(self, sink: _Sink, key: str, notes: list[str]) -> logging.Handler | None:
        if sink.target is Target.STDERR:
            return logging.StreamHandler(self._stderr if self._stderr is not None else sys.stderr)
        if sink.target is Target.FILE:
            return _open_logfile(sink.where, key)
        return self._open_syslog(int(sink.where), notes)

    def _open_syslog(self, facility: int, notes: list[str]) -> logging.Handler | None:
        path = self._syslog_socket
        if not os.path.exists(path):
            notes.append(f"Syslog socket {path} does not exist; not logging to syslog.")
            return None
        try:
            handler = _CorosyncSysLogHandler(address=path, facility=facility)
        except OSError as exc:
            notes.append(
                f"Cannot connect to syslog at {path} ({exc.strerror or exc}); "
                "not logging to syslog."
            )
            return None
        handler.ident = f"{self._program}[{os.getpid()}]: "
        return handler

    def _formatter(self, target: Target, config: LoggingConfig) -> CorosyncFormatter:
        return CorosyncFormatter(
            target,
            timestamp=config.timestamp,
            fileline=config.fileline,
            function_name=config.function_name,
            namespace=self._namespace,
            hostname=self._hostname,
            program=self._program,
            converter=self._time_converter,
        )

    # --- routing and levels ---------------------------------------------------------------

    def _route(self, settings: SubsysSettings) -> _Route:
        levels = (
            (_Sink(Target.STDERR), settings.stderr_level()),
            (_Sink(Target.FILE, settings.logfile or ""), settings.file_level()),
            (_Sink(Target.SYSLOG, str(settings.syslog_facility)), settings.syslog_level()),
        )
        return tuple(
            (self._sinks[sink], level)
            for sink, level in levels
            if level is not None and sink in self._sinks
        )

    def _routing(self, config: LoggingConfig) -> _Routing:
        by_subsys = {name: self._route(settings) for name, settings in config.subsystems}
        return _Routing(self._route(config.default), by_subsys)

    def _set_levels(self, config: LoggingConfig, routing: _Routing) -> None:
        root_level = _lowest(routing.default)
        configured = {f"{self._namespace}.{name}" for name, _ in config.subsystems}
        for name, route in routing.by_subsys.items():
            logging.getLogger(f"{self._namespace}.{name}").setLevel(_lowest(route))
            if name == MAIN_SUBSYS:
                root_level = min(root_level, _lowest(route))
        for name in self._leveled - configured:
            logging.getLogger(name).setLevel(logging.NOTSET)
        self._leveled = configured
        self._root.setLevel(root_level)


def _lowest(route: _Route) -> int:
    return min((level for _, level in route), default=_NOTHING)


def _logfile_key(prefix: str, settings: SubsysSettings, default: SubsysSettings) -> str:
    if prefix != PREFIX and settings.logfile == default.logfile:
        return PREFIX + "logfile"
    return prefix + "logfile"


def _open_logfile(path: str, key: str) -> logging.Handler:
    try:
        return logging.FileHandler(path, mode="a", encoding="utf-8")
    except OSError as exc:
        code = exc.errno or 0
        reason = exc.strerror or os.strerror(code)
        raise ConfigError(
            f"Can't open logfile '{path}' for reason: {reason} ({code}).", key=key
        ) from None
