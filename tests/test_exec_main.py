"""corosync-exec as operators run it: flags, exit codes, messages, and the stop signal.

Real processes: the daemon is started with ``python -m pycorosync.exec.main`` (the console
script's code) and observed through its exit code, its stderr and its pid file.
"""

from __future__ import annotations

import asyncio
import operator
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pycorosync.exec import main as exec_main
from tests._project import ROOT

DEADLINE_S = 20.0


def corosync_exec(*args: str, timeout: float = DEADLINE_S) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pycorosync.exec.main", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def free_udp_port() -> int:
    """A port nothing on 127.0.0.1 uses right now: each daemon here binds its own."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def single_node_config(tmp: Path, *, extra_logging: str = "") -> Path:
    conf = tmp / "corosync.conf"
    conf.write_text(
        f"""totem {{
    version: 2
    cluster_name: solo
    transport: udpu
    crypto_cipher: none
    crypto_hash: none
    interface {{
        linknumber: 0
        mcastport: {free_udp_port()}
    }}
}}
logging {{
    to_stderr: yes
    to_syslog: no
    timestamp: off
{extra_logging}}}
system {{
    sched_rr: no
    run_dir: {tmp / "run"}
    state_dir: {tmp / "state"}
}}
nodelist {{
    node {{
        ring0_addr: 127.0.0.1
        nodeid: 1
        name: solo
    }}
}}
"""
    )
    return conf


def wait_for(predicate: object, what: str, deadline_s: float = DEADLINE_S) -> None:
    assert callable(predicate)
    end = time.monotonic() + deadline_s
    while not predicate():
        if time.monotonic() > end:
            pytest.fail(f"timed out after {deadline_s} s waiting for {what}")
        time.sleep(0.02)


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], Path]]:
    conf = single_node_config(tmp_path)
    proc = subprocess.Popen(
        [sys.executable, "-m", "pycorosync.exec.main", "-f", "-c", str(conf)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    pid_file = tmp_path / "run" / "corosync.pid"
    try:
        wait_for(lambda: pid_file.exists() and pid_file.read_text().strip(), "the pid file")
        yield proc, tmp_path
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(DEADLINE_S)


def test_version() -> None:
    result = corosync_exec("-v")
    assert result.returncode == 0
    assert result.stdout.startswith("Corosync Cluster Engine, version '")


def test_bad_option_prints_usage_and_exits_1() -> None:
    result = corosync_exec("-X")
    assert result.returncode == 1
    assert "usage: corosync-exec" in result.stderr


def test_bad_nodeid_override_is_refused() -> None:
    result = corosync_exec("-n", "0", "-t", "-c", str(ROOT / "conf" / "corosync.conf.example"))
    assert result.returncode == 1
    assert "out of range" in result.stderr


@pytest.mark.parametrize("path", sorted((ROOT / "conf").glob("corosync.conf*")), ids=str)
def test_every_shipped_config_passes_test_mode(path: Path) -> None:
    result = corosync_exec("-t", "-c", str(path))
    assert result.returncode == 0, result.stderr
    assert f"Configuration file '{path}' is valid." in result.stdout


def test_test_mode_names_this_host_by_nodeid(tmp_path: Path) -> None:
    result = corosync_exec("-t", "-c", str(single_node_config(tmp_path)))
    assert result.returncode == 0, result.stderr
    assert "nodeid 1" in result.stdout


def test_test_mode_on_a_host_outside_the_cluster_is_not_an_error(tmp_path: Path) -> None:
    conf = tmp_path / "corosync.conf"
    conf.write_text(
        "totem {\n version: 2\n cluster_name: far\n transport: udpu\n}\n"
        "nodelist {\n node {\n  ring0_addr: 192.0.2.10\n  nodeid: 1\n }\n"
        " node {\n  ring0_addr: 192.0.2.11\n  nodeid: 2\n }\n}\n"
    )
    result = corosync_exec("-t", "-c", str(conf))
    assert result.returncode == 0, result.stderr
    assert "is valid" in result.stdout


def test_broken_config_exits_8_with_file_and_line(tmp_path: Path) -> None:
    conf = tmp_path / "broken.conf"
    conf.write_text("totem {\n    version: 2\n    token: soon\n}\n")
    result = corosync_exec("-t", "-c", str(conf))
    assert result.returncode == 8
    assert f"{conf}:3: " in result.stderr
    assert "parser error" in result.stderr


def test_missing_config_exits_8(tmp_path: Path) -> None:
    result = corosync_exec("-t", "-c", str(tmp_path / "nope.conf"))
    assert result.returncode == 8
    assert "nope.conf" in result.stderr


def test_bad_logging_value_exits_7_with_its_line(tmp_path: Path) -> None:
    conf = single_node_config(tmp_path, extra_logging="    debug: loud\n")
    result = corosync_exec("-t", "-c", str(conf))
    assert result.returncode == 7
    assert f"{conf}:16: unknown value for debug." in result.stderr


def test_setid_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: os.getuid() + 1)
    assert exec_main.main(["-t", "-c", "/nonexistent"]) == exec_main.ExitCode.FATAL


def test_runs_until_sigterm_then_unloads_and_exits_0(
    daemon: tuple[subprocess.Popen[str], Path],
) -> None:
    proc, tmp = daemon
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=DEADLINE_S)
    assert proc.returncode == 0, stderr
    assert "[MAIN  ] Corosync Cluster Engine" in stderr
    assert "Unloading all Corosync service engines." in stderr
    assert "Corosync Cluster Engine exiting normally" in stderr
    assert not (tmp / "run" / "corosync.pid").exists()


# Runs corosync-exec with the stop signal sent the moment its pid file is written: whoever
# watches for the pid file (an init script, a test) may signal it at once.
SIGNAL_AT_PID_FILE = """
import os, signal, sys
from pycorosync.exec import main, pidlock
write_pid_file = pidlock.PidLock.acquire
def acquire_then_get_signalled(self):
    write_pid_file(self)
    os.kill(os.getpid(), int(sys.argv[1]))
pidlock.PidLock.acquire = acquire_then_get_signalled
sys.exit(main.main(sys.argv[2:]))
"""


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=lambda s: s.name)
def test_a_stop_signal_right_after_the_pid_file_is_a_clean_stop(
    tmp_path: Path, signum: signal.Signals
) -> None:
    conf = single_node_config(tmp_path)
    result = subprocess.run(
        [sys.executable, "-c", SIGNAL_AT_PID_FILE, str(int(signum)), "-f", "-c", str(conf)],
        capture_output=True,
        text=True,
        timeout=DEADLINE_S,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "Corosync Cluster Engine exiting normally" in result.stderr
    assert not (tmp_path / "run" / "corosync.pid").exists()


def test_sigint_stops_it_too(daemon: tuple[subprocess.Popen[str], Path]) -> None:
    proc, _ = daemon
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=DEADLINE_S)
    assert proc.returncode == 0


def test_second_instance_on_one_run_dir_is_refused(
    daemon: tuple[subprocess.Popen[str], Path],
) -> None:
    _, tmp = daemon
    result = corosync_exec("-f", "-c", str(tmp / "corosync.conf"))
    assert result.returncode == 18
    assert "Another Corosync instance is already running." in result.stderr


def test_without_f_it_detaches_and_keeps_running(tmp_path: Path) -> None:
    conf = single_node_config(tmp_path)
    result = corosync_exec("-c", str(conf))
    assert result.returncode == 0, result.stderr
    pid_file = tmp_path / "run" / "corosync.pid"
    wait_for(lambda: pid_file.exists() and pid_file.read_text().strip(), "the daemon's pid file")
    pid = int(pid_file.read_text())
    os.kill(pid, signal.SIGTERM)
    wait_for(lambda: not pid_file.exists(), "the daemon to exit")


BAD_CORPUS = sorted((ROOT / "tests" / "data" / "configs" / "bad").glob("*.conf"))


@pytest.mark.parametrize("path", BAD_CORPUS, ids=lambda p: p.name)
def test_test_mode_refuses_every_broken_config_with_its_line(
    path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    expected = path.read_text(encoding="latin-1").splitlines()[0].removeprefix("# expect: ")
    line, _, reason = expected.partition(": ")
    code = exec_main.main(["-t", "-c", str(path)])
    stderr = capsys.readouterr().err
    assert code in (exec_main.ExitCode.MAINCONFIGREAD, exec_main.ExitCode.LOGCONFIGREAD)
    where = f"{path}:{line}: " if line else f"{path}: "
    assert where + reason in stderr


def test_an_exception_in_a_loop_callback_stops_the_daemon() -> None:
    async def scenario() -> str | None:
        stop = exec_main._stop_on_signals()
        asyncio.get_running_loop().call_soon(operator.truediv, 1, 0)
        await asyncio.wait_for(stop.wait(), DEADLINE_S)
        return stop.fatal

    fatal = asyncio.run(scenario())
    assert fatal is not None
    assert "ZeroDivisionError" in fatal
