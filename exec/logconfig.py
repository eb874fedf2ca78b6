"""The ``logging.*`` cmap keys, validated into one immutable :class:`LoggingConfig`.

Reading is pure: a mapping of key → string value in, a config or a :class:`ConfigError` out,
so the daemon can check a new configuration completely before it touches a single handler.
Values and error reasons are Corosync 3.x's (``exec/logconfig.c``): booleans are exactly
``yes|no|on|off``, priorities are ``alert crit debug emerg err error info notice warning`` in
any case, facilities are syslog's names, and the first bad key found in Corosync's order is the
one reported (``unknown value for timestamp.``; the caller adds ``parse error in config:``).

``timestamp``, ``fileline``, ``function_name`` and ``blackbox`` are top-level only. The rest
may be overridden per subsystem under ``logging.logger_subsys.<SUBSYS>.<key>``; a subsystem
inherits every key it does not set from the top level. Corosync differs in two corners we do
not copy: a ``logger_subsys`` block without ``debug`` resets that subsystem's debug to off, and
per-subsystem ``to_stderr``/``to_syslog``/``syslog_facility`` act on the whole process.

The obsolete ``to_file`` and ``syslog_level`` are still read, with Corosync's warning.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import Enum
from logging.handlers import SysLogHandler
from typing import Final

from pycorosync.exec.config_error import ConfigError
from pycorosync.exec.logformat import ALERT, EMERG, NOTICE, TRACE, Timestamp

PREFIX: Final = "logging."
SUBSYS_PREFIX: Final = "logging.logger_subsys."

_BOOLEANS: Final = {"yes": True, "on": True, "no": False, "off": False}

PRIORITY_LEVELS: Final[Mapping[str, int]] = {
    "emerg": EMERG,
    "alert": ALERT,
    "crit": logging.CRITICAL,
    "err": logging.ERROR,
    "error": logging.ERROR,
    "warning": logging.WARNING,
    "notice": NOTICE,
    "info": logging.INFO,
    "debug": logging.DEBUG,
}

# The names libqb's qb_log_facility2int accepts (case-sensitive, as there).
SYSLOG_FACILITIES: Final[Mapping[str, int]] = {
    "auth": SysLogHandler.LOG_AUTH,
    "authpriv": SysLogHandler.LOG_AUTHPRIV,
    "cron": SysLogHandler.LOG_CRON,
    "daemon": SysLogHandler.LOG_DAEMON,
    "ftp": SysLogHandler.LOG_FTP,
    "kern": SysLogHandler.LOG_KERN,
    "lpr": SysLogHandler.LOG_LPR,
    "mail": SysLogHandler.LOG_MAIL,
    "news": SysLogHandler.LOG_NEWS,
    "syslog": SysLogHandler.LOG_SYSLOG,
    "user": SysLogHandler.LOG_USER,
    "uucp": SysLogHandler.LOG_UUCP,
    **{f"local{n}": SysLogHandler.LOG_LOCAL0 + n for n in range(8)},
}


class Debug(Enum):
    OFF = "off"
    ON = "on"
    TRACE = "trace"


@dataclass(frozen=True, slots=True)
class SubsysSettings:
    """Where one subsystem's messages go and from which priority on."""

    to_stderr: bool = True
    to_syslog: bool = True
    to_logfile: bool = False
    logfile: str | None = None
    logfile_priority: int = logging.INFO
    syslog_priority: int = logging.INFO
    syslog_facility: int = SysLogHandler.LOG_DAEMON
    debug: Debug = Debug.OFF

    def _debug_level(self) -> int | None:
        return {Debug.OFF: None, Debug.ON: logging.DEBUG, Debug.TRACE: TRACE}[self.debug]

    def stderr_level(self) -> int | None:
        """Lowest level written to stderr (Corosync filters stderr by logfile_priority)."""
        if not self.to_stderr:
            return None
        return self._debug_level() or self.logfile_priority

    def file_level(self) -> int | None:
        if not (self.to_logfile and self.logfile):
            return None
        return self._debug_level() or self.logfile_priority

    def syslog_level(self) -> int | None:
        if not self.to_syslog:
            return None
        return self._debug_level() or self.syslog_priority


@dataclass(frozen=True, slots=True)
class LoggingConfig:
    timestamp: Timestamp = Timestamp.HIRES
    fileline: bool = False
    function_name: bool = False
    blackbox: bool = True
    """Validated only: there is no flight recorder yet."""
    default: SubsysSettings = SubsysSettings()
    subsystems: tuple[tuple[str, SubsysSettings], ...] = ()
    """Per-subsystem settings, sorted by name; subsystems not listed use ``default``."""
    warnings: tuple[str, ...] = field(default=(), compare=False)
    """Things worth logging once this config is in force (obsolete keys, missing logfile)."""

    def settings_for(self, subsys: str) -> SubsysSettings:
        for name, settings in self.subsystems:
            if name == subsys:
                return settings
        return self.default


def parse_logging_config(config: Mapping[str, str]) -> LoggingConfig:
    """Validate the ``logging.*`` keys of ``config`` (other keys are ignored)."""
    warnings: list[str] = []
    timestamp, fileline, function_name, blackbox = _read_format(config)
    default = _read_section(config, PREFIX, SubsysSettings(), warnings)
    subsystems = tuple(
        (name, _read_section(config, f"{SUBSYS_PREFIX}{name}.", default, warnings))
        for name in _subsystem_names(config)
    )
    for name, settings in (("", default), *subsystems):
        if settings.to_logfile and not settings.logfile:
            where = f"logger_subsys {name}" if name else "logging"
            warnings.append(f"to_logfile is set in {where} but no logfile is given.")
    return LoggingConfig(
        timestamp, fileline, function_name, blackbox, default, subsystems, tuple(warnings)
    )


def _subsystem_names(config: Mapping[str, str]) -> list[str]:
    names = {
        key[len(SUBSYS_PREFIX) :].split(".", 1)[0]
        for key in config
        if key.startswith(SUBSYS_PREFIX) and "." in key[len(SUBSYS_PREFIX) :]
    }
    return sorted(name for name in names if name)


def _read_format(config: Mapping[str, str]) -> tuple[Timestamp, bool, bool, bool]:
    fileline = _boolean(config, "logging.fileline", ("on", "off"), default=False)
    function_name = _boolean(config, "logging.function_name", ("on", "off"), default=False)
    value = config.get("logging.timestamp")
    try:
        timestamp = Timestamp.HIRES if value is None else Timestamp(value)
    except ValueError:
        raise ConfigError("unknown value for timestamp.", key="logging.timestamp") from None
    blackbox = _boolean(config, "logging.blackbox", ("on", "off"), default=True)
    return timestamp, fileline, function_name, blackbox


def _boolean(config: Mapping[str, str], key: str, words: tuple[str, ...], default: bool) -> bool:
    value = config.get(key)
    if value is None:
        return default
    if value not in words:
        raise ConfigError(f"unknown value for {key.rsplit('.', 1)[1]}.", key=key)
    return _BOOLEANS[value]


def _read_section(
    config: Mapping[str, str], prefix: str, inherited: SubsysSettings, warnings: list[str]
) -> SubsysSettings:
    """One ``logging`` or ``logger_subsys`` block, in the order Corosync checks its keys."""
    settings = inherited
    words = tuple(_BOOLEANS)
    to_stderr = _boolean(config, prefix + "to_stderr", words, settings.to_stderr)
    to_syslog = _boolean(config, prefix + "to_syslog", words, settings.to_syslog)
    settings = replace(settings, to_stderr=to_stderr, to_syslog=to_syslog)
    settings = _read_facility(config, prefix, settings)
    settings = _read_syslog_priority(config, prefix, settings, warnings)
    logfile = config.get(prefix + "logfile")
    if logfile is not None:
        settings = replace(settings, logfile=logfile)
    if prefix + "to_file" in config:
        warnings.append(_obsolete("to_file", "to_logfile"))
        to_file = _boolean(config, prefix + "to_file", words, settings.to_logfile)
        settings = replace(settings, to_logfile=to_file)
    to_logfile = _boolean(config, prefix + "to_logfile", words, settings.to_logfile)
    settings = replace(settings, to_logfile=to_logfile)
    key = prefix + "logfile_priority"
    level = _priority(config, key, "unknown logfile priority specified.", settings.logfile_priority)
    settings = replace(settings, logfile_priority=level)
    return replace(settings, debug=_read_debug(config, prefix + "debug", settings.debug))


def _read_facility(
    config: Mapping[str, str], prefix: str, settings: SubsysSettings
) -> SubsysSettings:
    key = prefix + "syslog_facility"
    value = config.get(key)
    if value is None:
        return settings
    if value not in SYSLOG_FACILITIES:
        raise ConfigError("unknown syslog facility specified.", key=key)
    return replace(settings, syslog_facility=SYSLOG_FACILITIES[value])


def _read_syslog_priority(
    config: Mapping[str, str], prefix: str, settings: SubsysSettings, warnings: list[str]
) -> SubsysSettings:
    level = settings.syslog_priority
    if prefix + "syslog_level" in config:
        warnings.append(_obsolete("syslog_level", "syslog_priority"))
        key = prefix + "syslog_level"
        level = _priority(config, key, "unknown syslog level specified.", level)
    key = prefix + "syslog_priority"
    level = _priority(config, key, "unknown syslog priority specified.", level)
    return replace(settings, syslog_priority=level)


def _priority(config: Mapping[str, str], key: str, reason: str, default: int) -> int:
    value = config.get(key)
    if value is None:
        return default
    level = PRIORITY_LEVELS.get(value.lower())
    if level is None:
        raise ConfigError(reason, key=key)
    return level


def _read_debug(config: Mapping[str, str], key: str, default: Debug) -> Debug:
    value = config.get(key)
    if value is None:
        return default
    try:
        return Debug(value)
    except ValueError:
        raise ConfigError("unknown value for debug.", key=key) from None


def _obsolete(key: str, replacement: str) -> str:
    return (
        f"Warning: the {key} config parameter has been obsoleted. "
        f"See corosync.conf man page {replacement} directive."
    )
