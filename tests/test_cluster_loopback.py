"""Real ``corosync-exec`` processes forming clusters over udpu on loopback addresses.

Each test owns a block of addresses no other test uses (127.0.<block>.x, or ::1 with ports of
its own), a short run directory under /tmp and its own keys (helpers in ``tests/_loopback.py``,
fixtures ``base`` and ``make_cluster`` in ``tests/conftest.py``). Every wait polls the nodes'
logs with a deadline; a timing bound is three times the configured figure (DESIGN.md, Testing).
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import time
from pathlib import Path

import pytest

from tests._loopback import (
    DEADLINE_S,
    DETECT_BOUND_S,
    MEMBERS_LINE,
    PORT,
    RING_LINE,
    TOKEN_MS,
    Cluster,
    MakeCluster,
    Node,
    formed_ring,
    ipv6_loopback_unavailable,
    make_key,
    wait_until,
)
from tests._multicast import loopback_multicast_unavailable

pytestmark = pytest.mark.xdist_group("loopback")


def test_three_nodes_form_one_ring(make_cluster: MakeCluster, base: Path) -> None:
    cluster = make_cluster(20)
    cluster.start()
    took = cluster.wait_formed()
    for node in cluster.nodes:
        # The engines' first sync completes after the ring forms.
        wait_until(lambda n=node: "ready to provide service." in n.text(), "the first sync")
        assert int((base / f"s{node.nodeid}" / f"ringid_{node.nodeid}").read_text()) > 0
    print(f"3-node ring formed {took:.3f} s after start")


def test_five_nodes_form_one_ring(make_cluster: MakeCluster) -> None:
    cluster = make_cluster(27, 5)
    cluster.start()
    took = cluster.wait_formed()
    print(f"5-node ring formed {took:.3f} s after start")


def test_kill_9_then_reform_then_rejoin(make_cluster: MakeCluster) -> None:
    ring = formed_ring(make_cluster, 21)
    victim = ring.node(3)
    survivors = [ring.node(1), ring.node(2)]
    seq_before = int((ring.base / "s3" / "ringid_3").read_text())
    victim.signal(signal.SIGKILL)
    victim.wait_exit()
    took = ring.wait_formed(survivors, deadline_s=DETECT_BOUND_S)
    # The first to miss the token says so; the other follows its JOIN.
    assert any("A processor failed, forming new configuration" in n.since_mark() for n in survivors)
    for node in survivors:
        assert "Members left: 3" in node.since_mark()
    print(f"failure of node 3 detected and ring re-formed in {took:.3f} s")
    ring.set_marks()
    victim.start()
    rejoin = ring.wait_formed()
    assert "Members joined: 3" in ring.node(1).since_mark()
    assert int((ring.base / "s3" / "ringid_3").read_text()) > seq_before
    print(f"node 3 restarted and rejoined in {rejoin:.3f} s")


def test_sigterm_leaves_and_others_reconfigure_before_the_token_timeout(
    make_cluster: MakeCluster,
) -> None:
    ring = formed_ring(make_cluster, 22)
    leaver = ring.node(2)
    survivors = [ring.node(1), ring.node(3)]
    start = time.monotonic()
    leaver.signal(signal.SIGTERM)
    ring.wait_formed(survivors, deadline_s=DEADLINE_S)
    took = time.monotonic() - start
    assert leaver.wait_exit() == 0
    assert "Corosync Cluster Engine exiting normally" in leaver.since_mark()
    # The LEAVE, not a token loss, made them reconfigure (the time is measured in bench/; a
    # wall-clock bound here would fail on a loaded CI machine, the unload coming first).
    for node in survivors:
        text = node.since_mark()
        assert "A processor failed" not in text
        assert "Token has not been received" not in text
        assert "Failed to receive the leave message" not in text
        assert "Members left: 2" in text
    print(f"leave took {took:.3f} s")


def test_garbage_flood_neither_crashes_nor_disturbs_the_ring(make_cluster: MakeCluster) -> None:
    ring = formed_ring(make_cluster, 23)
    rng = random.Random(4)
    targets = [(node.address, node.port) for node in ring.nodes]
    rings_before = [node.ring() for node in ring.nodes]
    # From a listed address (it passes the source filter) and from an unlisted one.
    senders = [("127.0.23.1", 0), ("127.0.23.99", 0)]
    for local in senders:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as flood:
            flood.bind(local)
            for _ in range(3000):
                payload = rng.randbytes(rng.choice((1, 13, 60, 200, 1400)))
                for target in targets:
                    with contextlib.suppress(BlockingIOError):
                        flood.sendto(payload, target)
    # The ring still works: a member leaves and the other two reconfigure without token loss.
    ring.node(3).signal(signal.SIGTERM)
    ring.wait_formed([ring.node(1), ring.node(2)])
    assert ring.node(3).wait_exit() == 0
    for node, before in zip(ring.nodes[:2], rings_before, strict=False):
        text = node.since_mark()
        assert node.alive()
        assert "A processor failed" not in text
        assert "Traceback" not in text
        assert len(RING_LINE.findall(text)) == 1, (before, text[-2000:])
        # Refused at the packet protection, before any parsing, and logged rate-limited.
        rejected = text.count("rejected: not a pycorosync Totem packet")
        assert 1 <= rejected <= 10, text[-2000:]


def test_a_node_with_another_key_stays_out(make_cluster: MakeCluster, base: Path) -> None:
    cluster = make_cluster(26)
    stranger = cluster.node(3)
    stranger.keyfile = make_key(base / "otherkey")
    cluster.start()
    insiders = cluster.nodes[:2]
    cluster.wait_formed(insiders)
    for node in insiders:
        wait_until(lambda n=node: "digest does not match" in n.text(), "the bad digest")
    wait_until(lambda: "digest does not match" in stranger.text(), "the stranger's bad digest")
    assert stranger.alive()
    assert set(MEMBERS_LINE.findall(stranger.text())) == {"3"}
    for node in insiders:
        assert all("3" not in members for members in MEMBERS_LINE.findall(node.text()))


def test_ipv6_loopback_with_a_port_per_node(base: Path) -> None:
    reason = ipv6_loopback_unavailable()
    if reason is not None:
        pytest.skip(reason)
    key = make_key(base / "authkey")
    nodes = [Node(i, "::1", 25395 + 10 * i, base, key) for i in (1, 2, 3)]
    cluster = Cluster(nodes, base)
    try:
        cluster.start()
        cluster.wait_formed()
        assert "on ::1 port 25405" in cluster.node(1).text()
    finally:
        cluster.stop_all()


def test_ready_is_told_to_systemd(base: Path) -> None:
    path = base / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind(str(path))
        listener.settimeout(DEADLINE_S)
        node = Node(1, "127.0.24.1", PORT, base, None)
        cluster = Cluster([node], base, crypto=False)
        cluster.write_configs()
        try:
            node.start(env={**os.environ, "NOTIFY_SOCKET": str(path)})
            assert listener.recv(4096) == b"READY=1"
            node.signal(signal.SIGTERM)
            assert listener.recv(4096) == b"STOPPING=1"
            assert node.wait_exit() == 0
        finally:
            cluster.stop_all()


def test_a_scheduling_pause_is_logged(base: Path) -> None:
    node = Node(1, "127.0.25.1", PORT, base, None)
    cluster = Cluster([node], base, crypto=False)
    try:
        cluster.start()
        cluster.wait_formed()
        node.signal(signal.SIGSTOP)
        stopped = time.monotonic()
        # The fault itself: the process is held stopped for more than 0.8 x token.
        wait_until(lambda: time.monotonic() - stopped > 1.2 * TOKEN_MS / 1000, "the pause")
        node.signal(signal.SIGCONT)
        wait_until(
            lambda: "Corosync main process was not scheduled" in node.text(), "the pause warning"
        )
        assert "Consider token timeout increase." in node.text()
    finally:
        cluster.stop_all()


def test_three_nodes_form_one_ring_over_multicast(base: Path) -> None:
    """``transport: udp``: multicasts to 239.192.28.1, the token unicast, three 127.0.28.x."""
    reason = loopback_multicast_unavailable()
    if reason is not None:
        pytest.skip(reason)
    key = make_key(base / "authkey")
    nodes = [Node(i, f"127.0.28.{i}", PORT, base, key) for i in (1, 2, 3)]
    group = (
        "    interface {\n        linknumber: 0\n        mcastaddr: 239.192.28.1\n"
        f"        mcastport: {PORT}\n        ttl: 1\n    }}\n"
    )
    cluster = Cluster(nodes, base, extra_totem=group, transport="udp")
    try:
        cluster.start()
        took = cluster.wait_formed()
        for node in nodes:
            text = node.text()
            assert "Initializing transport (UDP/IP Multicast)" in text
            assert f"group 239.192.28.1 port {PORT}" in text
            assert "running as udpu" not in text
            assert "rejected" not in text
        print(f"3-node multicast ring formed {took:.3f} s after start")
        # A LEAVE goes out by multicast too: the other two reconfigure without a token loss.
        cluster.set_marks()
        nodes[2].signal(signal.SIGTERM)
        cluster.wait_formed(nodes[:2])
        assert nodes[2].wait_exit() == 0
        assert all("A processor failed" not in node.since_mark() for node in nodes[:2])
    finally:
        cluster.stop_all()


def test_a_multicast_node_whose_endpoint_is_taken_exits_15(base: Path) -> None:
    node = Node(1, "127.0.29.1", PORT, base, None)
    group = "    interface {\n        linknumber: 0\n        mcastaddr: 239.192.29.1\n    }\n"
    cluster = Cluster([node], base, extra_totem=group, crypto=False, transport="udp")
    cluster.write_configs()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as squatter:
        squatter.bind((node.address, node.port))
        node.start()
        assert node.wait_exit() == 15
    assert "Cannot set up multicast group 239.192.29.1 port 5405 on 127.0.29.1 port 15405" in (
        node.text()
    )
