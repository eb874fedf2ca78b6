"""IPv6 multicast (``transport: udp``) between three real nodes in network namespaces.

The loopback device has no multicast on IPv6, so this test builds its own hosts: namespaces
``pct6-n1..3``, each with a veth (MTU 1500, ``fd00:98::<i>/64``, no duplicate-address wait)
whose peer is a port of a bridge in namespace ``pct6-sw``; every daemon runs inside its node's
namespace. It needs root and ``ip``; without them it skips with the reason. Everything it
creates is removed at the end, also when it fails.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests._loopback import DEADLINE_S, Cluster, make_key, wait_until
from tests._namespaces import NamespacedNode, ip, own_namespaces

pytestmark = pytest.mark.xdist_group("loopback")

NODE_NS = ("pct6-n1", "pct6-n2", "pct6-n3")
SWITCH_NS = "pct6-sw"
BRIDGE = "pct6br0"
VETH = "pct6"
PORT = 15405
GROUP = "ff15::98:1"
ALL_NS = (*NODE_NS, SWITCH_NS)


@pytest.fixture
def hosts() -> Iterator[None]:
    with own_namespaces(ALL_NS, "pct6-probe"):
        ip("netns", "add", SWITCH_NS)
        ip("-n", SWITCH_NS, "link", "add", BRIDGE, "type", "bridge")
        ip("-n", SWITCH_NS, "link", "set", BRIDGE, "up")
        for i, ns in enumerate(NODE_NS, start=1):
            ip("netns", "add", ns)
            ip("link", "add", VETH, "netns", ns, "mtu", "1500", "type", "veth",
                "peer", "name", f"q{i}", "netns", SWITCH_NS)  # fmt: skip
            ip("-n", SWITCH_NS, "link", "set", f"q{i}", "master", BRIDGE)
            ip("-n", SWITCH_NS, "link", "set", f"q{i}", "up")
            ip("-n", ns, "addr", "add", f"fd00:98::{i}/64", "dev", VETH, "nodad")
            ip("-n", ns, "link", "set", VETH, "up")
            ip("-n", ns, "link", "set", "lo", "up")
        for i, ns in enumerate(NODE_NS, start=1):
            wait_until(
                lambda ns=ns, i=i: (
                    "state UP" in ip("-n", ns, "link", "show", VETH).stdout
                    and "forwarding" in ip("-d", "-n", SWITCH_NS, "link", "show", f"q{i}").stdout
                ),
                f"{ns}'s link",
            )
        yield


def test_three_nodes_form_one_ring_over_ipv6_multicast(hosts: None, base: Path) -> None:
    key = make_key(base / "authkey")
    nodes = [
        NamespacedNode(i, f"fd00:98::{i}", PORT, base, key, namespace=NODE_NS[i - 1])
        for i in (1, 2, 3)
    ]
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
