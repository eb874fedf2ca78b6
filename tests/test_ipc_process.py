"""The IPC server in a fresh interpreter: credentials across processes, a daemon killed."""

from __future__ import annotations

import select
import signal
import subprocess
import sys
from collections.abc import Iterator

import msgpack
import pytest

from pycorosync.lib.errors import AccessError, BadHandleError, LibraryError
from pycorosync.lib.ipc import DispatchFlag, IpcClient
from tests._ipc_fixtures import short_run_dir
from tests._ipc_toy import ECHO, NOTIFY
from tests._project import ROOT

TOY = str(ROOT / "tests" / "_ipc_toy.py")


@pytest.fixture
def run_dir() -> Iterator[str]:
    yield from short_run_dir()


def _start(run_dir: str, *flags: str) -> subprocess.Popen[str]:
    server = subprocess.Popen(
        [sys.executable, TOY, run_dir, *flags], stdout=subprocess.PIPE, text=True
    )
    assert server.stdout is not None
    ready, _, _ = select.select([server.stdout], [], [], 30)
    if not ready or server.stdout.readline().strip() != "ready":
        server.kill()
        server.wait()
        pytest.fail("toy IPC server did not start")
    return server


def test_killed_daemon_makes_every_call_a_library_error(run_dir: str) -> None:
    server = _start(run_dir)
    try:
        client = IpcClient("echo", run_dir=run_dir, timeout=10)
        assert client.request(ECHO, b"alive") == b"alive"
        client.request(NOTIFY, msgpack.packb([2, 8]))
        server.send_signal(signal.SIGKILL)
        server.wait(timeout=10)
        with pytest.raises(LibraryError):
            client.request(ECHO, b"")
        seen: list[int] = []
        with pytest.raises(LibraryError):
            client.dispatch(DispatchFlag.BLOCKING, lambda m, p: seen.append(m))
        assert seen == [7, 7]  # what arrived before the daemon died is still delivered
        with pytest.raises(LibraryError):
            client.send(ECHO, b"")
        with pytest.raises(LibraryError):
            client.dispatch(DispatchFlag.ONE_NONBLOCKING, lambda m, p: None)
        client.finalize()
        with pytest.raises(BadHandleError):
            client.finalize()
    finally:
        server.kill()
        server.wait()


def test_a_peer_in_another_process_is_checked_by_its_credentials(run_dir: str) -> None:
    server = _start(run_dir, "--deny")
    try:
        with pytest.raises(AccessError):
            IpcClient("echo", run_dir=run_dir, timeout=10)
        assert server.poll() is None  # refusing a client does not hurt the server
    finally:
        server.kill()
        server.wait()
