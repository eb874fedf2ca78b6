"""LogSys end to end: destinations, per-subsystem levels, syslog bytes, reconfiguration, and
a caller that never waits for a write."""

from __future__ import annotations

import calendar
import contextlib
import io
import logging
import os
import shutil
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pycorosync.exec.config_error import ConfigError
from pycorosync.exec.logsys import EMERG, NOTICE, TRACE, LogSys, subsys_logger

NO_SYSLOG = {"logging.to_syslog": "no", "logging.timestamp": "off"}


@pytest.fixture
def namespace() -> str:
    """A namespace of our own, so tests never share loggers."""
    return f"logsys_test_{uuid.uuid4().hex[:12]}"


@pytest.fixture
def stderr() -> io.StringIO:
    return io.StringIO()


@pytest.fixture
def make_logsys(
    namespace: str, stderr: io.StringIO, tmp_path: Path
) -> Iterator[Callable[..., LogSys]]:
    made: list[LogSys] = []

    def make(**options: object) -> LogSys:
        defaults: dict[str, object] = {
            "namespace": namespace,
            "stderr": stderr,
            "hostname": "node1",
            "syslog_socket": str(tmp_path / "no-syslog"),
            "time_converter": time.gmtime,
        }
        logsys = LogSys(**{**defaults, **options})  # type: ignore[arg-type]
        made.append(logsys)
        return logsys

    yield make
    for logsys in made:
        assert logsys.close()


def _log(namespace: str, subsys: str) -> logging.Logger:
    return subsys_logger(subsys, namespace)


def _flushed(logsys: LogSys) -> None:
    assert logsys.flush(timeout=10)


def _open_fds(path: Path, suffix: str = "") -> int:
    """How many descriptors this process holds on ``path`` (``suffix=" (deleted)"`` once the
    file is unlinked)."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/self/fd/{fd}") == f"{path}{suffix}":
                count += 1
    return count


# --- destinations and format ----------------------------------------------------------------


def test_defaults_log_info_to_stderr_and_warn_that_syslog_is_missing(
    make_logsys: Callable[..., LogSys], namespace: str, stderr: io.StringIO, tmp_path: Path
) -> None:
    logsys = make_logsys()
    logsys.apply({"logging.timestamp": "off"})
    _log(namespace, "MAIN").info("Corosync Cluster Engine starting up")
    _log(namespace, "TOTEM").debug("not shown")
    _flushed(logsys)
    assert stderr.getvalue() == (
        f"warning [MAIN  ] Syslog socket {tmp_path / 'no-syslog'} does not exist; "
        "not logging to syslog.\n"
        "info    [MAIN  ] Corosync Cluster Engine starting up\n"
    )


def test_logfile_is_created_by_apply_and_gets_corosyncs_file_lines(
    make_logsys: Callable[..., LogSys], namespace: str, stderr: io.StringIO, tmp_path: Path
) -> None:
    logfile = tmp_path / "corosync.log"
    logsys = make_logsys()
    logsys.apply({**NO_SYSLOG, "logging.to_logfile": "yes", "logging.logfile": str(logfile)})
    assert logfile.exists()
    _log(namespace, "TOTEM").log(NOTICE, "A new membership (%d.%d) was formed.", 1, 5)
    _flushed(logsys)
    pid = os.getpid()
    assert logfile.read_text() == (
        f"[{pid}] node1 corosync notice  [TOTEM ] A new membership (1.5) was formed.\n"
    )
    assert stderr.getvalue() == "notice  [TOTEM ] A new membership (1.5) was formed.\n"


def test_hires_timestamps_use_the_record_time(
    make_logsys: Callable[..., LogSys], namespace: str, stderr: io.StringIO
) -> None:
    logsys = make_logsys()
    logsys.apply({"logging.to_syslog": "no"})
    before = time.time()
    _log(namespace, "MAIN").info("now")
    _flushed(logsys)
    line = stderr.getvalue()
    assert line.endswith(" info    [MAIN  ] now\n")
    stamp = time.strptime(f"{time.gmtime(before).tm_year} {line[:15]}", "%Y %b %d %H:%M:%S")
    assert -1 <= calendar.timegm(stamp) - before <= 5
    assert line[15] == "."
    assert line[16:19].isdigit()


def test_child_loggers_carry_their_subsystem(
    make_logsys: Callable[..., LogSys], namespace: str, stderr: io.StringIO
) -> None:
    logsys = make_logsys()
    logsys.apply(NO_SYSLOG)
    logging.getLogger(f"{namespace}.CPG.groups").warning("downlist left_list: %d received", 1)
    logging.getLogger(namespace).error("top")
    _flushed(logsys)
    assert stderr.getvalue() == (
        "warning [CPG   ] downlist left_list: 1 received\nerror   [MAIN  ] top\n"
    )


def test_records_do_not_reach_the_python_root_logger(
    make_logsys: Callable[..., LogSys], namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    logsys = make_logsys()
    logsys.apply(NO_SYSLOG)
    with caplog.at_level(logging.DEBUG):
        _log(namespace, "MAIN").error("only ours")
    _flushed(logsys)
    assert caplog.records == []


# --- per-subsystem settings -------------------------------------------------------------------


def test_per_subsystem_debug(
    make_logsys: Callable[..., LogSys], namespace: str, stderr: io.StringIO
) -> None:
    logsys = make_logsys()
    logsys.apply(
        {
            **NO_SYSLOG,
            "logging.logger_subsys.TOTEM.subsys": "TOTEM",
            "logging.logger_subsys.TOTEM.debug": "on",
            "logging.logger_subsys.SYNC.subsys": "SYNC",
            "logging.logger_subsys.SYNC.debug": "trace",
        }
    )
    totem, main, sync = (_log(namespace, s) for s in ("TOTEM", "MAIN", "SYNC"))
    assert totem.isEnabledFor(logging.DEBUG)
    assert not totem.isEnabledFor(TRACE)
    assert not main.isEnabledFor(logging.DEBUG)
    assert sync.isEnabledFor(TRACE)
    totem.debug("entering GATHER state")
    totem.log(TRACE, "totem trace, not shown")
    main.debug("main debug, not shown")
    sync.log(TRACE, "sync trace")
    _flushed(logsys)
    assert stderr.getvalue() == (
        "debug   [TOTEM ] entering GATHER state\ntrace   [SYNC  ] sync trace\n"
    )


def test_per_subsystem_logfile_and_destinations(
    make_logsys: Callable[..., LogSys], namespace: str, stderr: io.StringIO, tmp_path: Path
) -> None:
    main_log, quorum_log = tmp_path / "main.log", tmp_path / "quorum.log"
    logsys = make_logsys()
    logsys.apply(
        {
            **NO_SYSLOG,
            "logging.to_logfile": "yes",
            "logging.logfile": str(main_log),
            "logging.logger_subsys.QUORUM.subsys": "QUORUM",
            "logging.logger_subsys.QUORUM.logfile": str(quorum_log),
            "logging.logger_subsys.QUORUM.to_stderr": "no",
            "logging.logger_subsys.QUORUM.logfile_priority": "notice",
        }
    )
    _log(namespace, "QUORUM").info("Members[1]: 1 (below notice)")
    _log(namespace, "QUORUM").log(NOTICE, "Members[2]: 1 2")
    _log(namespace, "MAIN").info("main line")
    _flushed(logsys)
    pid = os.getpid()
    assert quorum_log.read_text() == f"[{pid}] node1 corosync notice  [QUORUM] Members[2]: 1 2\n"
    assert main_log.read_text() == f"[{pid}] node1 corosync info    [MAIN  ] main line\n"
    assert stderr.getvalue() == "info    [MAIN  ] main line\n"


def test_a_subsystem_without_destinations_builds_no_records(
    make_logsys: Callable[..., LogSys], namespace: str
) -> None:
    logsys = make_logsys()
    logsys.apply({**NO_SYSLOG, "logging.logger_subsys.CFG.to_stderr": "no"})
    assert not _log(namespace, "CFG").isEnabledFor(EMERG)
    assert not _log(namespace, "CFG").isEnabledFor(logging.CRITICAL)
    assert _log(namespace, "CPG").isEnabledFor(logging.INFO)


# --- syslog -----------------------------------------------------------------------------------


@pytest.fixture
def syslog_server() -> Iterator[tuple[str, socket.socket]]:
    directory = tempfile.mkdtemp(prefix="ls", dir="/tmp")  # short: sun_path is 108 bytes
    path = os.path.join(directory, "log")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(path)
    server.settimeout(10)
    try:
        yield path, server
    finally:
        server.close()
        shutil.rmtree(directory)


def test_syslog_datagrams_byte_for_byte(
    make_logsys: Callable[..., LogSys],
    namespace: str,
    stderr: io.StringIO,
    syslog_server: tuple[str, socket.socket],
) -> None:
    path, server = syslog_server
    logsys = make_logsys(syslog_socket=path)
    logsys.apply(
        {
            "logging.to_stderr": "no",
            "logging.logger_subsys.TOTEM.subsys": "TOTEM",
            "logging.logger_subsys.TOTEM.debug": "on",
            "logging.logger_subsys.KNET.subsys": "KNET",
            "logging.logger_subsys.KNET.syslog_facility": "local0",
        }
    )
    _log(namespace, "MAIN").log(NOTICE, "Completed service synchronization.")
    _log(namespace, "TOTEM").debug("entering GATHER state")
    _log(namespace, "KNET").error("link: host: 3 link: 0 is down")
    _log(namespace, "MAIN").debug("not sent")
    _flushed(logsys)
    ident = f"corosync[{os.getpid()}]: "
    received = [server.recv(4096) for _ in range(3)]
    assert received == [
        f"<29>{ident}  [MAIN  ] Completed service synchronization.\x00".encode(),
        f"<30>{ident}  [TOTEM ] entering GATHER state\x00".encode(),  # debug goes out as info
        f"<131>{ident}  [KNET  ] link: host: 3 link: 0 is down\x00".encode(),
    ]
    assert stderr.getvalue() == ""


def test_syslog_that_refuses_connections_is_skipped_with_a_warning(
    make_logsys: Callable[..., LogSys], namespace: str, stderr: io.StringIO, tmp_path: Path
) -> None:
    not_a_socket = tmp_path / "log"
    not_a_socket.write_text("")
    logsys = make_logsys(syslog_socket=str(not_a_socket))
    logsys.apply({"logging.timestamp": "off"})
    _log(namespace, "MAIN").info("still logging")
    _flushed(logsys)
    first, second = stderr.getvalue().splitlines()
    assert first.startswith(f"warning [MAIN  ] Cannot connect to syslog at {not_a_socket} (")
    assert first.endswith("); not logging to syslog.")
    assert second == "info    [MAIN  ] still logging"


# --- reconfiguration --------------------------------------------------------------------------


def test_apply_is_idempotent(
    make_logsys: Callable[..., LogSys], namespace: str, stderr: io.StringIO, tmp_path: Path
) -> None:
    logfile = tmp_path / "corosync.log"
    keys = {
        "logging.timestamp": "off",
        "logging.to_logfile": "yes",
        "logging.logfile": str(logfile),
    }
    logsys = make_logsys()
    first = logsys.apply(keys)
    _flushed(logsys)
    logfile.unlink()  # were the file reopened, it would come back
    assert logsys.apply(dict(keys)) == first
    _log(namespace, "MAIN").info("once")
    _flushed(logsys)
    assert not logfile.exists()
    assert stderr.getvalue().count("Syslog socket") == 1
    assert stderr.getvalue().count("once") == 1
    assert _open_fds(logfile, " (deleted)") == 1
    assert len(logging.getLogger(namespace).handlers) == 1


def test_reconfigure_moves_to_the_new_file_and_closes_the_old(
    make_logsys: Callable[..., LogSys], namespace: str, tmp_path: Path
) -> None:
    old, new = tmp_path / "old.log", tmp_path / "new.log"
    logsys = make_logsys()
    base = {**NO_SYSLOG, "logging.to_stderr": "no", "logging.to_logfile": "yes"}
    logsys.apply({**base, "logging.logfile": str(old)})
    _log(namespace, "MAIN").info("first")
    _flushed(logsys)
    assert _open_fds(old) == 1
    logsys.apply({**base, "logging.logfile": str(new), "logging.debug": "on"})
    _log(namespace, "MAIN").debug("second")
    _flushed(logsys)
    pid = os.getpid()
    assert old.read_text() == f"[{pid}] node1 corosync info    [MAIN  ] first\n"
    assert new.read_text() == f"[{pid}] node1 corosync debug   [MAIN  ] second\n"
    assert _open_fds(old) == 0
    assert _open_fds(new) == 1


def test_format_options_change_at_runtime(
    make_logsys: Callable[..., LogSys], namespace: str, stderr: io.StringIO
) -> None:
    logsys = make_logsys()
    logsys.apply(NO_SYSLOG)
    _log(namespace, "CMAP").info("plain")
    logsys.apply({**NO_SYSLOG, "logging.function_name": "on"})
    _log(namespace, "CMAP").info("named")
    _flushed(logsys)
    assert stderr.getvalue() == (
        "info    [CMAP  ] plain\ninfo    [CMAP  ] test_format_options_change_at_runtime named\n"
    )


def test_removing_a_subsystem_override_restores_the_default(
    make_logsys: Callable[..., LogSys], namespace: str
) -> None:
    logsys = make_logsys()
    logsys.apply({**NO_SYSLOG, "logging.logger_subsys.CPG.debug": "on"})
    assert _log(namespace, "CPG").isEnabledFor(logging.DEBUG)
    logsys.apply(NO_SYSLOG)
    assert _log(namespace, "CPG").level == logging.NOTSET
    assert not _log(namespace, "CPG").isEnabledFor(logging.DEBUG)


def test_invalid_value_raises_and_changes_nothing(
    make_logsys: Callable[..., LogSys], namespace: str, stderr: io.StringIO
) -> None:
    logsys = make_logsys()
    good = logsys.apply(NO_SYSLOG)
    with pytest.raises(ConfigError) as info:
        logsys.apply({**NO_SYSLOG, "logging.logger_subsys.TOTEM.debug": "loud"})
    assert (info.value.reason, info.value.key) == (
        "unknown value for debug.",
        "logging.logger_subsys.TOTEM.debug",
    )
    assert logsys.config == good
    _log(namespace, "TOTEM").info("still here")
    _flushed(logsys)
    assert stderr.getvalue() == "info    [TOTEM ] still here\n"


def test_logfile_that_cannot_be_opened(
    make_logsys: Callable[..., LogSys], namespace: str, stderr: io.StringIO, tmp_path: Path
) -> None:
    logsys = make_logsys()
    good = logsys.apply(NO_SYSLOG)
    missing = tmp_path / "no-such-dir" / "corosync.log"
    with pytest.raises(ConfigError) as info:
        logsys.apply(
            {
                **NO_SYSLOG,
                "logging.logger_subsys.VOTEQ.to_logfile": "yes",
                "logging.logger_subsys.VOTEQ.logfile": str(missing),
            }
        )
    assert info.value.reason == (
        f"Can't open logfile '{missing}' for reason: No such file or directory (2)."
    )
    assert info.value.key == "logging.logger_subsys.VOTEQ.logfile"
    assert logsys.config == good
    _log(namespace, "VOTEQ").info("unchanged")
    _flushed(logsys)
    assert stderr.getvalue() == "info    [VOTEQ ] unchanged\n"


# --- never blocking the caller ----------------------------------------------------------------


class _StuckStream(io.StringIO):
    """A terminal that stops accepting output until released."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.release = threading.Event()

    def write(self, text: str) -> int:
        self.entered.set()
        if not self.release.wait(timeout=30):
            raise TimeoutError("the test never released the stream")
        return super().write(text)


def test_a_stuck_destination_never_blocks_the_caller(
    make_logsys: Callable[..., LogSys], namespace: str
) -> None:
    stream = _StuckStream()
    logsys = make_logsys(stderr=stream, queue_size=8)
    logsys.apply(NO_SYSLOG)
    log = _log(namespace, "TOTEM")
    log.info("message 0")
    assert stream.entered.wait(timeout=10)  # the writer is now stuck inside write()
    for n in range(1, 14):
        log.info("message %d", n)
    # We got here while the writer is still stuck: no call waited for it.
    assert not stream.release.is_set()
    assert logsys.dropped == 5  # 8 queued, 5 over
    stream.release.set()
    _flushed(logsys)
    lines = stream.getvalue().splitlines()
    assert lines[0] == "info    [TOTEM ] message 0"
    assert "warning [MAIN  ] Logging fell behind: 5 messages were dropped." in lines
    assert [line for line in lines if "message " in line] == [
        f"info    [TOTEM ] message {n}" for n in range(9)
    ]


def test_close_gives_the_loggers_back(
    make_logsys: Callable[..., LogSys], namespace: str, stderr: io.StringIO
) -> None:
    root = logging.getLogger(namespace)
    logsys = make_logsys()
    logsys.apply({**NO_SYSLOG, "logging.logger_subsys.CPG.debug": "on"})
    assert root.propagate is False
    assert logsys.close()
    assert root.propagate is True
    assert root.handlers == []
    assert root.level == logging.NOTSET
    assert _log(namespace, "CPG").level == logging.NOTSET
    _log(namespace, "CPG").error("after close")
    assert "after close" not in stderr.getvalue()
    with pytest.raises(RuntimeError):
        logsys.apply(NO_SYSLOG)


def test_a_record_is_written_as_configured_when_it_was_logged(
    make_logsys: Callable[..., LogSys], namespace: str, tmp_path: Path
) -> None:
    """Records still queued when the configuration changes keep their old format and file."""
    stream = _StuckStream()
    old, new = tmp_path / "old.log", tmp_path / "new.log"
    logsys = make_logsys(stderr=stream)
    base = {**NO_SYSLOG, "logging.to_logfile": "yes"}
    logsys.apply({**base, "logging.logfile": str(old)})
    log = _log(namespace, "CPG")
    log.info("first")
    assert stream.entered.wait(timeout=10)  # the writer is stuck on "first"
    log.info("queued before")
    logsys.apply({**base, "logging.logfile": str(new), "logging.function_name": "on"})
    log.info("logged after")
    stream.release.set()
    _flushed(logsys)
    func = "test_a_record_is_written_as_configured_when_it_was_logged"
    assert stream.getvalue() == (
        "info    [CPG   ] first\n"
        "info    [CPG   ] queued before\n"
        f"info    [CPG   ] {func} logged after\n"
    )
    pid = os.getpid()
    assert old.read_text() == (
        f"[{pid}] node1 corosync info    [CPG   ] first\n"
        f"[{pid}] node1 corosync info    [CPG   ] queued before\n"
    )
    assert new.read_text() == f"[{pid}] node1 corosync info    [CPG   ] {func} logged after\n"
    assert _open_fds(old) == 0


def test_many_threads_logging_through_reconfigurations(
    make_logsys: Callable[..., LogSys], namespace: str, tmp_path: Path
) -> None:
    logfile = tmp_path / "corosync.log"
    logsys = make_logsys()
    keys = {**NO_SYSLOG, "logging.to_stderr": "no", "logging.to_logfile": "yes"}
    logsys.apply({**keys, "logging.logfile": str(logfile)})
    start = threading.Barrier(5)

    def worker(subsys: str) -> None:
        start.wait(timeout=10)
        log = _log(namespace, subsys)
        for n in range(300):
            log.info("%s %d", subsys, n)

    subsystems = ["TOTEM", "CPG", "CMAP", "SYNC"]
    threads = [threading.Thread(target=worker, args=(s,)) for s in subsystems]
    for thread in threads:
        thread.start()
    start.wait(timeout=10)
    for debug in ("on", "off", "trace", "off"):
        logsys.apply({**keys, "logging.logfile": str(logfile), "logging.debug": debug})
    for thread in threads:
        thread.join(timeout=30)
    _flushed(logsys)
    assert logsys.dropped == 0
    lines = logfile.read_text().splitlines()
    for subsys in subsystems:
        mine = [line.rsplit(" ", 1)[1] for line in lines if f"] {subsys} " in line]
        assert mine == [str(n) for n in range(300)]


def test_queue_size_must_be_positive() -> None:
    with pytest.raises(ValueError, match="queue_size"):
        LogSys(queue_size=0)
