"""Corosync's log line, byte for byte, for Python log records.

Corosync (through libqb) prints one line per message, built from the same pieces for every
destination::

    stderr   Nov 25 05:51:35.123 notice  [TOTEM ] A new membership (1.5) was formed.
    file     Nov 25 05:51:35.123 [1791] node1 corosync notice  [TOTEM ] A new membership ...
    syslog   corosync[1791]:   [TOTEM ] A new membership (1.5) was formed.

* the timestamp is ``Mon DD HH:MM:SS`` in local time with ``timestamp: on``, plus ``.mmm``
  milliseconds with ``hires`` (the default), and absent with ``off``; the month names are
  English whatever the locale;
* the priority word is one of ``emerg alert crit error warning notice info debug trace``,
  left-aligned and padded or cut to 7 characters;
* the subsystem tag is padded or cut to 6 characters inside brackets;
* ``fileline: on`` adds ``file:line`` after the tag, ``function_name: on`` adds the function
  (``file:function:line`` with both);
* the file adds ``[pid] host program`` after the timestamp;
* syslog gets neither timestamp nor priority word (syslog has its own) but keeps the spaces
  they leave behind, and the ident ``program[pid]: `` is added by the syslog handler.

One deliberate difference: with ``timestamp: off`` Corosync's file line glues the program name
to the priority word (``corosyncnotice``); we keep the space.

Python has no NOTICE, ALERT, EMERG or TRACE level; this module defines them (between the
standard ones) and registers their names. A level between two of ours prints as the lower one,
as libqb's word table would.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from enum import Enum

TRACE = 5
NOTICE = 25
ALERT = 55
EMERG = 60

for _level, _name in ((TRACE, "TRACE"), (NOTICE, "NOTICE"), (ALERT, "ALERT"), (EMERG, "EMERG")):
    logging.addLevelName(_level, _name)

# (lowest level, Corosync's word, syslog priority number), highest first.
_PRIORITIES: tuple[tuple[int, str, int], ...] = (
    (EMERG, "emerg", 0),
    (ALERT, "alert", 1),
    (logging.CRITICAL, "crit", 2),
    (logging.ERROR, "error", 3),
    (logging.WARNING, "warning", 4),
    (NOTICE, "notice", 5),
    (logging.INFO, "info", 6),
    (logging.DEBUG, "debug", 7),
    (TRACE, "trace", 8),
)

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

MAIN_SUBSYS = "MAIN"


def priority_word(levelno: int) -> str:
    """The word Corosync prints for a record of ``levelno``."""
    for lowest, word, _ in _PRIORITIES:
        if levelno >= lowest:
            return word
    return "trace"


def syslog_priority(levelno: int) -> int:
    """The syslog priority Corosync sends: debug goes out as info and trace as debug (libqb's
    priority bump), so that debug output is not lost by a syslog that drops debug."""
    for lowest, _, number in _PRIORITIES:
        if levelno >= lowest:
            return number - 1 if number > 6 else number
    return 7


class Timestamp(Enum):
    OFF = "off"
    ON = "on"
    HIRES = "hires"


class Target(Enum):
    STDERR = "stderr"
    FILE = "file"
    SYSLOG = "syslog"


def subsys_of(logger_name: str, namespace: str) -> str:
    """``pycorosync.TOTEM.srp`` → ``TOTEM``; the namespace logger itself is ``MAIN``."""
    if logger_name.startswith(namespace + "."):
        return logger_name[len(namespace) + 1 :].split(".", 1)[0]
    return MAIN_SUBSYS


def format_timestamp(
    created: float,
    msecs: float,
    style: Timestamp,
    converter: Callable[[float], time.struct_time] = time.localtime,
) -> str:
    if style is Timestamp.OFF:
        return ""
    t = converter(created)
    text = f"{_MONTHS[t.tm_mon - 1]} {t.tm_mday:02d} {t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}"
    if style is Timestamp.HIRES:
        text += f".{int(msecs):03d}"
    return text


class CorosyncFormatter(logging.Formatter):
    """Formats records as Corosync prints them to ``target``."""

    def __init__(
        self,
        target: Target,
        *,
        timestamp: Timestamp = Timestamp.HIRES,
        fileline: bool = False,
        function_name: bool = False,
        namespace: str = "pycorosync",
        hostname: str = "localhost",
        program: str = "corosync",
        converter: Callable[[float], time.struct_time] = time.localtime,
    ) -> None:
        super().__init__()
        self.target = target
        self.timestamp = timestamp
        self.fileline = fileline
        self.function_name = function_name
        self.namespace = namespace
        self.hostname = hostname
        self.program = program
        self.time_converter = converter

    def format(self, record: logging.LogRecord) -> str:
        if self.target is Target.SYSLOG:
            # What is left of Corosync's format once the timestamp and the priority are cut.
            lead = "  " if self.timestamp is not Timestamp.OFF else " "
            return lead + self._body(record)
        head = format_timestamp(record.created, record.msecs, self.timestamp, self.time_converter)
        if self.target is Target.FILE:
            origin = f"[{record.process}] {self.hostname} {self.program}"
            head = f"{head} {origin}" if head else origin
        line = f"{priority_word(record.levelno):<7.7} {self._body(record)}"
        return f"{head} {line}" if head else line

    def _body(self, record: logging.LogRecord) -> str:
        tag = f"[{subsys_of(record.name, self.namespace):<6.6}]"
        location = self._location(record)
        message = self._message(record)
        return f"{tag} {location} {message}" if location else f"{tag} {message}"

    def _location(self, record: logging.LogRecord) -> str:
        if self.fileline and self.function_name:
            return f"{record.filename}:{record.funcName}:{record.lineno}"
        if self.fileline:
            return f"{record.filename}:{record.lineno}"
        if self.function_name:
            return str(record.funcName)
        return ""

    def _message(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            message = f"{message}\n{record.exc_text}"
        # libqb drops one trailing newline, which C callers often leave in.
        return message.removesuffix("\n")
