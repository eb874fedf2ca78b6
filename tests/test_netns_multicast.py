"""IPv6 multicast (``transport: udp``) between three real nodes in network namespaces.

The loopback device has no multicast on IPv6, so this test builds its own hosts: namespaces
``pct6-n1..3``, each with a veth (MTU 1500, ``fd00:98::<i>/64``, no duplicate-address wait)
whose peer is a port of a bridge in namespace ``pct6-sw``; every daemon runs inside its node's
namespace. It needs root and ``ip``; without them it skips with the reason. Everything it
creates is removed at the end, also when it fails.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests._loopback import DEADLINE_S, Cluster, Node, make_key, wait_until

pytestmark = pytest.mark.xdist_group("loopback")

NODE_NS = ("pct6-n1", "pct6-n2", "pct6-n3")
SWITCH_NS = "pct6-sw"
BRIDGE = "pct6br0"
VETH = "pct6"
PORT = 15405
GROUP = "ff15::98:1"


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)


def _unavailable() -> str | None:
    if os.getuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "iproute2 (ip) is not installed"
    probe = _ip("netns", "add", "pct6-probe", check=False)
    if probe.returncode != 0:
        return f"cannot create a network namespace: {probe.stderr.strip()}"
    _ip("netns", "del", "pct6-probe", check=False)
    return None


def _remove_namespaces() -> None:
    existing = _ip("netns", "list", check=False).stdout.split()
    for ns in (*NODE_NS, SWITCH_NS):
        if ns in existing:
            for pid in _ip("netns", "pids", ns, check=False).stdout.split():
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
            _ip("netns", "del", ns, check=False)


@pytest.fixture
def hosts() -> Iterator[None]:
    reason = _unavailable()
    if reason is not None:
        pytest.skip(reason)
    _remove_namespaces()  # a leftover of an aborted run: only this test uses these names
    try:
        _ip("netns", "add", SWITCH_NS)
        _ip("-n", SWITCH_NS, "link", "add", BRIDGE, "type", "bridge")
        _ip("-n", SWITCH_NS, "link", "set", BRIDGE, "up")
        for i, ns in enumerate(NODE_NS, start=1):
            _ip("netns", "add", ns)
            _ip("link", "add", VETH, "netns", ns, "mtu", "1500", "type", "veth",
                "peer", "name", f"q{i}", "netns", SWITCH_NS)  # fmt: skip
            _ip("-n", SWITCH_NS, "link", "set", f"q{i}", "master", BRIDGE)
            _ip("-n", SWITCH_NS, "link", "set", f"q{i}", "up")
            _ip("-n", ns, "addr", "add", f"fd00:98::{i}/64", "dev", VETH, "nodad")
            _ip("-n", ns, "link", "set", VETH, "up")
            _ip("-n", ns, "link", "set", "lo", "up")
        for i, ns in enumerate(NODE_NS, start=1):
            wait_until(
                lambda ns=ns, i=i: (
                    "state UP" in _ip("-n", ns, "link", "show", VETH).stdout
                    and "forwarding" in _ip("-d", "-n", SWITCH_NS, "link", "show", f"q{i}").stdout
                ),
                f"{ns}'s link",
            )
        yield
    finally:
        _remove_namespaces()


class NamespacedNode(Node):
    """A node whose daemon runs inside its own network namespace."""

    def start(self, env: dict[str, str] | None = None) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                ["ip", "netns", "exec", NODE_NS[self.nodeid - 1], sys.executable, "-m",
                 "pycorosync.exec.main", "-f", "-c", str(self.conf), "-n", str(self.nodeid)],
                stdout=log,
                stderr=log,
                env=env,
            )  # fmt: skip


def test_three_nodes_form_one_ring_over_ipv6_multicast(hosts: None, base: Path) -> None:
    key = make_key(base / "authkey")
    nodes = [NamespacedNode(i, f"fd00:98::{i}", PORT, base, key) for i in (1, 2, 3)]
    group = (
        "    ip_version: ipv6\n"
        f"    interface {{\n        linknumber: 0\n        mcastaddr: {GROUP}\n"
        f"        mcastport: {PORT}\n        ttl: 1\n    }}\n"
    )
    cluster = Cluster(nodes, base, extra_totem=group, transport="udp")
    try:
        cluster.start()
        cluster.wait_formed()
        for node in nodes:
            text = node.text()
            assert "Initializing transport (UDP/IP Multicast)" in text, text[-1500:]
            assert f"group {GROUP}" in text
            assert "running as udpu" not in text
            assert "rejected" not in text
        # A LEAVE goes out by multicast too: the other two reconfigure without a token loss.
        cluster.set_marks()
        nodes[2].signal(signal.SIGTERM)
        cluster.wait_formed(nodes[:2])
        assert nodes[2].wait_exit() == 0
        assert all("A processor failed" not in node.since_mark() for node in nodes[:2])
    finally:
        cluster.stop_all()
        for node in nodes:
            if node.proc is not None and node.proc.poll() is None:
                node.proc.wait(DEADLINE_S)
