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
applying the same keys twice changes nothing. Every record is written as the configuration in
force when it was *logged* says, even if it is still queued when the configuration changes, and
the writer thread itself closes the destinations no longer used once nothing queued needs them
(:mod:`pycorosync.exec.logwriter`), so a record is never written to a half-closed file.
``apply`` is meant to be called from one thread (the Totem process's event loop); at startup,
corosync-exec turns a ConfigError from it into exit code 7, as Corosync does.

Syslog goes through :class:`logging.handlers.SysLogHandler` on ``/dev/log``; when that socket
does not exist or refuses the connection, syslog output is skipped with a warning on the other
destinations. Debug and trace messages go to syslog one priority up (info and debug), as libqb
sends them.
"""

from __future__ import annotations

import atexit
import logging
import os
import queue
import socket
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from logging.handlers import SysLogHandler
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
    syslog_priority,
)
from pycorosync.exec.logwriter import DroppingQueueHandler, LogWriter, Route, Routing

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
        if queue_size < 1:
            raise ValueError(f"queue_size must be at least 1, not {queue_size}")
        self._namespace = namespace
        self._program = program
        self._hostname = hostname if hostname is not None else socket.gethostname()
        self._stderr = stderr
        self._syslog_socket = syslog_socket
        self._time_converter = time_converter
        records: queue.Queue[object] = queue.Queue(maxsize=queue_size)
        self._queue_handler = DroppingQueueHandler(records)
        self._writer = LogWriter(records, namespace, self._queue_handler.take_dropped)
        self._generation = 0
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
        routing = self._routing(new)
        self._set_levels(new, routing)
        self._generation += 1
        self._writer.publish(self._generation, routing, retired)
        self._queue_handler.generation = self._generation
        self._writer.wake(self._generation)
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
        reached = self._writer.barrier(timeout)
        return reached is not None and reached.wait(max(0.0, deadline - time.monotonic()))

    def close(self, timeout: float = 5.0) -> bool:
        """Stop logging through this LogSys: flush, stop the writer, close every destination
        and give the namespace logger back its previous state. False if the writer did not
        finish within ``timeout`` (its destinations are then left open)."""
        if self._closed:
            return True
        self._closed = True
        atexit.unregister(self.close)
        self._root.removeHandler(self._queue_handler)
        self._root.propagate = self._root_propagate
        self._root.setLevel(self._root_level)
        for name in self._leveled:
            logging.getLogger(name).setLevel(logging.NOTSET)
        self._leveled.clear()
        if not self._writer.is_alive():
            return True
        deadline = time.monotonic() + timeout
        self._writer.stop(timeout)
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
            # The writer is a daemon thread; without this, the last lines (the ones saying why
            # the process ends) could die in the queue.
            atexit.register(self.close)

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
        # SysLogHandler ignores a failed connect and fails on every record instead.
        refused = _refuses_connections(path)
        if refused is not None:
            notes.append(
                f"Cannot connect to syslog at {path} ({refused.strerror or refused}); "
                "not logging to syslog."
            )
            return None
        handler = _CorosyncSysLogHandler(address=path, facility=facility)
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

    def _route(
        self, settings: SubsysSettings, formats: Mapping[Target, logging.Formatter]
    ) -> Route:
        levels = (
            (_Sink(Target.STDERR), settings.stderr_level()),
            (_Sink(Target.FILE, settings.logfile or ""), settings.file_level()),
            (_Sink(Target.SYSLOG, str(settings.syslog_facility)), settings.syslog_level()),
        )
        return tuple(
            (self._sinks[sink], level, formats[sink.target])
            for sink, level in levels
            if level is not None and sink in self._sinks
        )

    def _routing(self, config: LoggingConfig) -> Routing:
        formats = {target: self._formatter(target, config) for target in Target}
        by_subsys = {name: self._route(s, formats) for name, s in config.subsystems}
        return Routing(self._route(config.default, formats), by_subsys)

    def _set_levels(self, config: LoggingConfig, routing: Routing) -> None:
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


def _refuses_connections(path: str) -> OSError | None:
    """The error connecting to the Unix socket ``path`` gives, as datagram then as stream
    (the two kinds SysLogHandler tries); None if either connects."""
    error: OSError | None = None
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        with socket.socket(socket.AF_UNIX, kind) as probe:
            try:
                probe.connect(path)
            except OSError as exc:
                error = exc
            else:
                return None
    return error


def _lowest(route: Route) -> int:
    return min((level for _, level, _ in route), default=_NOTHING)


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
