"""Corosync's log line, byte for byte.

The expected lines are real Corosync output (quoted in corosync/corosync issues #6, #351, #527
and #559) re-created from the same time, pid, host, subsystem and message.
"""

from __future__ import annotations

import calendar
import logging
import sys
import time

import pytest

from pycorosync.exec.logformat import (
    ALERT,
    EMERG,
    NOTICE,
    TRACE,
    CorosyncFormatter,
    Target,
    Timestamp,
    priority_word,
    subsys_of,
    syslog_priority,
)


def _record(
    subsys: str,
    level: int,
    message: str,
    *,
    when: tuple[int, int, int, int, int, int] = (2016, 5, 12, 20, 43, 24),
    msecs: int = 0,
    pid: int = 16976,
    **extra: object,
) -> logging.LogRecord:
    created = calendar.timegm((*when, 0, 0, 0)) + msecs / 1000
    fields: dict[str, object] = {
        "name": f"pycorosync.{subsys}" if subsys else "pycorosync",
        "levelno": level,
        "levelname": logging.getLevelName(level),
        "msg": message,
        "args": (),
        "created": created,
        "msecs": float(msecs),
        "process": pid,
        "filename": "totemsrp.c",
        "lineno": 2289,
        "funcName": "memb_state_gather_enter",
    }
    fields.update(extra)
    return logging.makeLogRecord(fields)


def _formatter(target: Target, **options: object) -> CorosyncFormatter:
    return CorosyncFormatter(
        target,
        hostname="Hp-09",
        converter=time.gmtime,
        **options,  # type: ignore[arg-type]
    )


def test_file_line_with_timestamp_on() -> None:
    fmt = _formatter(Target.FILE, timestamp=Timestamp.ON)
    record = _record("TOTEM", NOTICE, "Token has not been received in 750 ms ")
    assert (
        fmt.format(record) == "May 12 20:43:24 [16976] Hp-09 corosync notice  [TOTEM ] "
        "Token has not been received in 750 ms "
    )
    cpg = _record("CPG", logging.WARNING, "downlist left_list: 1 received")
    assert (
        fmt.format(cpg)
        == "May 12 20:43:24 [16976] Hp-09 corosync warning [CPG   ] downlist left_list: 1 received"
    )


def test_file_line_with_hires_timestamp_is_the_default() -> None:
    fmt = CorosyncFormatter(Target.FILE, hostname="host", converter=time.gmtime)
    record = _record("MAIN", NOTICE, "Corosync Cluster Engine exiting normally", msecs=7, pid=1791)
    assert (
        fmt.format(record) == "May 12 20:43:24.007 [1791] host corosync notice  [MAIN  ] "
        "Corosync Cluster Engine exiting normally"
    )


def test_stderr_line_with_timestamp_on() -> None:
    fmt = _formatter(Target.STDERR, timestamp=Timestamp.ON)
    record = _record(
        "TOTEM",
        logging.DEBUG,
        "entering GATHER state from 9(merge during operational state).",
        when=(2018, 5, 4, 17, 52, 13),
    )
    assert (
        fmt.format(record) == "May 04 17:52:13 debug   [TOTEM ] "
        "entering GATHER state from 9(merge during operational state)."
    )


def test_stderr_line_hires_keeps_milliseconds_and_zero_pads_the_day() -> None:
    fmt = _formatter(Target.STDERR, timestamp=Timestamp.HIRES)
    record = _record(
        "QUORUM", logging.INFO, "Members[1]: 4", when=(2020, 2, 7, 14, 57, 43), msecs=981
    )
    assert fmt.format(record) == "Feb 07 14:57:43.981 info    [QUORUM] Members[1]: 4"


def test_syslog_line_keeps_the_spaces_of_the_cut_fields() -> None:
    fmt = _formatter(Target.SYSLOG)
    record = _record("MAIN", NOTICE, "Completed service synchronization, ready to provide service.")
    # journal: "corosync[13545]:   [MAIN  ] Completed ..." — the ident adds "corosync[pid]: ".
    assert (
        fmt.format(record)
        == "  [MAIN  ] Completed service synchronization, ready to provide service."
    )
    no_time = _formatter(Target.SYSLOG, timestamp=Timestamp.OFF)
    assert no_time.format(_record("KNET", logging.INFO, "link: host: 3 link: 0 is down")) == (
        " [KNET  ] link: host: 3 link: 0 is down"
    )


def test_timestamp_off() -> None:
    record = _record("CFG", logging.ERROR, "oops")
    assert _formatter(Target.STDERR, timestamp=Timestamp.OFF).format(record) == (
        "error   [CFG   ] oops"
    )
    # Corosync would print "corosyncerror" here; we keep the space (see the module docstring).
    assert _formatter(Target.FILE, timestamp=Timestamp.OFF).format(record) == (
        "[16976] Hp-09 corosync error   [CFG   ] oops"
    )


@pytest.mark.parametrize(
    ("fileline", "function_name", "expected"),
    [
        (True, False, "info    [TOTEM ] totemsrp.c:2289 entering GATHER state"),
        (False, True, "info    [TOTEM ] memb_state_gather_enter entering GATHER state"),
        (
            True,
            True,
            "info    [TOTEM ] totemsrp.c:memb_state_gather_enter:2289 entering GATHER state",
        ),
    ],
)
def test_fileline_and_function_name(fileline: bool, function_name: bool, expected: str) -> None:
    record = _record("TOTEM", logging.INFO, "entering GATHER state")
    fmt = _formatter(
        Target.STDERR, timestamp=Timestamp.OFF, fileline=fileline, function_name=function_name
    )
    assert fmt.format(record) == expected
    syslog = _formatter(Target.SYSLOG, fileline=fileline, function_name=function_name)
    assert syslog.format(record) == "  " + expected.split(" ", 1)[1].lstrip()


@pytest.mark.parametrize(
    ("level", "word"),
    [
        (EMERG, "emerg  "),
        (ALERT, "alert  "),
        (logging.CRITICAL, "crit   "),
        (logging.ERROR, "error  "),
        (logging.WARNING, "warning"),
        (NOTICE, "notice "),
        (logging.INFO, "info   "),
        (logging.DEBUG, "debug  "),
        (TRACE, "trace  "),
        (35, "warning"),
        (1, "trace  "),
    ],
)
def test_priority_words_are_padded_to_seven(level: int, word: str) -> None:
    fmt = _formatter(Target.STDERR, timestamp=Timestamp.OFF)
    assert fmt.format(_record("SERV", level, "m")) == f"{word} [SERV  ] m"
    assert priority_word(level) == word.strip()


def test_subsystem_tag_is_padded_or_cut_to_six() -> None:
    fmt = _formatter(Target.STDERR, timestamp=Timestamp.OFF)
    assert fmt.format(_record("VOTEQ", logging.INFO, "m")) == "info    [VOTEQ ] m"
    assert fmt.format(_record("LONGSUBSYS", logging.INFO, "m")) == "info    [LONGSU] m"
    assert fmt.format(_record("", logging.INFO, "m")) == "info    [MAIN  ] m"


def test_subsystem_of_a_child_logger() -> None:
    assert subsys_of("pycorosync.TOTEM.srp", "pycorosync") == "TOTEM"
    assert subsys_of("pycorosync", "pycorosync") == "MAIN"
    assert subsys_of("asyncio", "pycorosync") == "MAIN"


def test_message_arguments_exceptions_and_trailing_newline() -> None:
    fmt = _formatter(Target.STDERR, timestamp=Timestamp.OFF)
    with_args = _record("TOTEM", NOTICE, "A new membership (%d.%x) was formed.", args=(1, 0xB1))
    assert fmt.format(with_args) == "notice  [TOTEM ] A new membership (1.b1) was formed."
    newline = _record("MAIN", logging.INFO, "Ignoring key change, reload in progress. x\n")
    assert fmt.format(newline) == "info    [MAIN  ] Ignoring key change, reload in progress. x"
    try:
        raise ValueError("bad")
    except ValueError:
        failed = _record("MAIN", logging.ERROR, "failed", exc_info=sys.exc_info())
    lines = fmt.format(failed).splitlines()
    assert lines[0] == "error   [MAIN  ] failed"
    assert lines[1] == "Traceback (most recent call last):"
    assert lines[-1] == "ValueError: bad"


def test_syslog_priorities_bump_debug_and_trace() -> None:
    assert [syslog_priority(level) for level in (EMERG, ALERT, 50, 40, 30, NOTICE, 20)] == [
        0,
        1,
        2,
        3,
        4,
        5,
        6,
    ]
    assert syslog_priority(logging.DEBUG) == 6
    assert syslog_priority(TRACE) == 7
    assert syslog_priority(1) == 7


def test_month_names_do_not_follow_the_locale() -> None:
    fmt = _formatter(Target.STDERR, timestamp=Timestamp.ON)
    months = [
        fmt.format(_record("MAIN", logging.INFO, "m", when=(2021, month, 1, 0, 0, 0)))[:3]
        for month in range(1, 13)
    ]
    assert " ".join(months) == "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec"
