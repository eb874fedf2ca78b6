"""Reading the ``logging.*`` keys: Corosync's defaults, values, inheritance and error wording."""

from __future__ import annotations

import logging
from logging.handlers import SysLogHandler

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pycorosync.exec.config_error import ConfigError
from pycorosync.exec.logconfig import (
    Debug,
    LoggingConfig,
    SubsysSettings,
    parse_logging_config,
)
from pycorosync.exec.logformat import ALERT, EMERG, NOTICE, TRACE, Timestamp


def test_defaults_are_corosyncs() -> None:
    config = parse_logging_config({"totem.token": "3000"})
    assert config == LoggingConfig()
    assert config.timestamp is Timestamp.HIRES
    assert (config.fileline, config.function_name, config.blackbox) == (False, False, True)
    default = config.default
    assert (default.to_stderr, default.to_syslog, default.to_logfile) == (True, True, False)
    assert default.logfile is None
    assert default.logfile_priority == default.syslog_priority == logging.INFO
    assert default.syslog_facility == SysLogHandler.LOG_DAEMON
    assert default.debug is Debug.OFF
    assert config.warnings == ()


def test_top_level_values() -> None:
    config = parse_logging_config(
        {
            "logging.timestamp": "on",
            "logging.fileline": "on",
            "logging.function_name": "on",
            "logging.blackbox": "off",
            "logging.to_stderr": "no",
            "logging.to_syslog": "off",
            "logging.to_logfile": "yes",
            "logging.logfile": "/var/log/cluster/corosync.log",
            "logging.logfile_priority": "NOTICE",
            "logging.syslog_priority": "err",
            "logging.syslog_facility": "local5",
            "logging.debug": "trace",
        }
    )
    assert config.timestamp is Timestamp.ON
    assert (config.fileline, config.function_name, config.blackbox) == (True, True, False)
    assert config.default == SubsysSettings(
        to_stderr=False,
        to_syslog=False,
        to_logfile=True,
        logfile="/var/log/cluster/corosync.log",
        logfile_priority=NOTICE,
        syslog_priority=logging.ERROR,
        syslog_facility=SysLogHandler.LOG_LOCAL5,
        debug=Debug.TRACE,
    )


@pytest.mark.parametrize(
    ("word", "level"),
    [
        ("emerg", EMERG),
        ("alert", ALERT),
        ("crit", logging.CRITICAL),
        ("err", logging.ERROR),
        ("error", logging.ERROR),
        ("Warning", logging.WARNING),
        ("notice", NOTICE),
        ("INFO", logging.INFO),
        ("debug", logging.DEBUG),
    ],
)
def test_priority_words_any_case(word: str, level: int) -> None:
    config = parse_logging_config({"logging.syslog_priority": word})
    assert config.default.syslog_priority == level


def test_destination_thresholds_follow_debug() -> None:
    plain = SubsysSettings(to_logfile=True, logfile="/l", logfile_priority=NOTICE)
    assert (plain.stderr_level(), plain.file_level(), plain.syslog_level()) == (
        NOTICE,
        NOTICE,
        logging.INFO,
    )
    on = SubsysSettings(to_logfile=True, logfile="/l", debug=Debug.ON)
    assert (on.stderr_level(), on.file_level(), on.syslog_level()) == (logging.DEBUG,) * 3
    trace = SubsysSettings(debug=Debug.TRACE, to_stderr=False)
    assert (trace.stderr_level(), trace.file_level(), trace.syslog_level()) == (None, None, TRACE)


def test_logger_subsys_inherits_and_overrides() -> None:
    config = parse_logging_config(
        {
            "logging.to_logfile": "yes",
            "logging.logfile": "/main.log",
            "logging.syslog_priority": "warning",
            "logging.debug": "on",
            "logging.logger_subsys.QUORUM.subsys": "QUORUM",
            "logging.logger_subsys.QUORUM.logfile": "/quorum.log",
            "logging.logger_subsys.QUORUM.to_stderr": "no",
            "logging.logger_subsys.TOTEM.subsys": "TOTEM",
            "logging.logger_subsys.TOTEM.debug": "off",
        }
    )
    assert [name for name, _ in config.subsystems] == ["QUORUM", "TOTEM"]
    quorum = config.settings_for("QUORUM")
    assert (quorum.logfile, quorum.to_stderr, quorum.to_logfile) == ("/quorum.log", False, True)
    assert (quorum.syslog_priority, quorum.debug) == (logging.WARNING, Debug.ON)
    totem = config.settings_for("TOTEM")
    assert (totem.logfile, totem.debug) == ("/main.log", Debug.OFF)
    assert config.settings_for("CPG") is config.default


def test_subsystem_without_its_subsys_key_still_counts() -> None:
    config = parse_logging_config({"logging.logger_subsys.CPG.debug": "on"})
    assert config.settings_for("CPG").debug is Debug.ON


def test_obsolete_keys_still_work_with_corosyncs_warning() -> None:
    config = parse_logging_config(
        {"logging.to_file": "yes", "logging.logfile": "/l", "logging.syslog_level": "notice"}
    )
    assert config.default.to_logfile
    assert config.default.syslog_priority == NOTICE
    assert config.warnings == (
        "Warning: the syslog_level config parameter has been obsoleted. "
        "See corosync.conf man page syslog_priority directive.",
        "Warning: the to_file config parameter has been obsoleted. "
        "See corosync.conf man page to_logfile directive.",
    )


def test_logfile_missing_is_a_warning() -> None:
    config = parse_logging_config({"logging.to_logfile": "yes"})
    assert config.default.file_level() is None
    assert config.warnings == ("to_logfile is set in logging but no logfile is given.",)


def test_warnings_do_not_make_configs_differ() -> None:
    with_warning = parse_logging_config({"logging.to_file": "no"})
    assert with_warning == parse_logging_config({"logging.to_logfile": "no"})


INVALID = [
    ("logging.timestamp", "yes", "unknown value for timestamp."),
    ("logging.timestamp", "HIRES", "unknown value for timestamp."),
    ("logging.fileline", "yes", "unknown value for fileline."),
    ("logging.function_name", "1", "unknown value for function_name."),
    ("logging.blackbox", "maybe", "unknown value for blackbox."),
    ("logging.to_stderr", "true", "unknown value for to_stderr."),
    ("logging.to_syslog", "Yes", "unknown value for to_syslog."),
    ("logging.to_logfile", "", "unknown value for to_logfile."),
    ("logging.to_file", "y", "unknown value for to_file."),
    ("logging.syslog_facility", "LOCAL0", "unknown syslog facility specified."),
    ("logging.syslog_facility", "local8", "unknown syslog facility specified."),
    ("logging.syslog_priority", "trace", "unknown syslog priority specified."),
    ("logging.syslog_level", "loud", "unknown syslog level specified."),
    ("logging.logfile_priority", "warn", "unknown logfile priority specified."),
    ("logging.debug", "yes", "unknown value for debug."),
    ("logging.logger_subsys.TOTEM.debug", "verbose", "unknown value for debug."),
    ("logging.logger_subsys.CPG.to_syslog", "nope", "unknown value for to_syslog."),
    (
        "logging.logger_subsys.QUORUM.logfile_priority",
        "x",
        "unknown logfile priority specified.",
    ),
]


@pytest.mark.parametrize(("key", "value", "reason"), INVALID)
def test_invalid_values_raise_with_corosyncs_reason(key: str, value: str, reason: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_logging_config({key: value})
    assert info.value.reason == reason
    assert info.value.key == key
    assert str(info.value) == reason


def test_first_error_in_corosyncs_order_wins() -> None:
    """Corosync checks fileline, function_name, timestamp, blackbox, then the sections."""
    with pytest.raises(ConfigError) as info:
        parse_logging_config(
            {"logging.debug": "x", "logging.timestamp": "x", "logging.fileline": "x"}
        )
    assert info.value.key == "logging.fileline"


BOOLEAN_KEYS = ["to_stderr", "to_syslog", "to_logfile"]


@settings(max_examples=60)
@given(
    key=st.sampled_from(["timestamp", "fileline", "debug", *BOOLEAN_KEYS, "syslog_facility"]),
    value=st.text(max_size=12),
)
def test_any_other_word_is_rejected(key: str, value: str) -> None:
    valid = {
        "timestamp": {"on", "off", "hires"},
        "fileline": {"on", "off"},
        "debug": {"on", "off", "trace"},
        "syslog_facility": {
            "auth",
            "authpriv",
            "cron",
            "daemon",
            "ftp",
            "kern",
            "lpr",
            "mail",
            "news",
            "syslog",
            "user",
            "uucp",
            *(f"local{n}" for n in range(8)),
        },
    }.get(key, {"yes", "no", "on", "off"})
    if value in valid:
        parse_logging_config({f"logging.{key}": value})
    else:
        with pytest.raises(ConfigError):
            parse_logging_config({f"logging.{key}": value})
