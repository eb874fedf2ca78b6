"""Network namespaces for real-process tests that need a real link (an MTU, IPv6 multicast).

A test names its own namespaces (a prefix no other test uses), builds them with ``ip``, runs
each daemon inside one with :class:`NamespacedNode`, and removes them at the end, also when it
fails. Without root or ``ip`` such a test skips with the reason. The namespaces' addresses
exist only inside them, so nothing leaves the host.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import pytest

from tests._loopback import Node


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)


def namespaces_unavailable(probe: str) -> str | None:
    """Why namespaces cannot be made here (``probe`` is a throw-away name), or None."""
    if os.getuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "iproute2 (ip) is not installed"
    made = ip("netns", "add", probe, check=False)
    if made.returncode != 0:
        return f"cannot create a network namespace: {made.stderr.strip()}"
    ip("netns", "del", probe, check=False)
    return None


def remove_namespaces(names: Sequence[str]) -> None:
    """Kill whatever still runs in ``names`` and delete them (missing ones are skipped)."""
    existing = ip("netns", "list", check=False).stdout.split()
    for ns in names:
        if ns in existing:
            for pid in ip("netns", "pids", ns, check=False).stdout.split():
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
            ip("netns", "del", ns, check=False)


@contextlib.contextmanager
def own_namespaces(names: Sequence[str], probe: str) -> Iterator[None]:
    """Skip without namespaces; clear a leftover of an aborted run (the names are the
    test's own); remove them at the end, also when the test fails. Build them inside."""
    reason = namespaces_unavailable(probe)
    if reason is not None:
        pytest.skip(reason)
    remove_namespaces(names)
    try:
        yield
    finally:
        remove_namespaces(names)


@dataclass
class NamespacedNode(Node):
    """A node whose daemon runs inside network namespace ``namespace``."""

    namespace: str = ""

    def start(self, env: dict[str, str] | None = None) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                ["ip", "netns", "exec", self.namespace, sys.executable, "-m",
                 "pycorosync.exec.main", "-f", "-c", str(self.conf), "-n", str(self.nodeid)],
                stdout=log,
                stderr=log,
                env=env,
            )  # fmt: skip
