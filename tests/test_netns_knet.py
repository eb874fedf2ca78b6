"""knet's 64 KiB frames cross a 1500-byte link: the kernel fragments, Totem sees one frame.

Two namespaces ``pckn-n1``/``pckn-n2`` joined by one veth pair (MTU 1500, 10.97.0.1-2/24) run
a node each with ``transport: knet`` and no ``netmtu`` (Corosync's knet default, 65536). A
client on node 1 multicasts messages far larger than the link's MTU; the client on node 2 must
receive every byte, node 2's Totem must have received a few dozen frames at most (1382-byte
frames would need hundreds), and node 2's link must have carried hundreds of MTU-sized
packets: the frames were fragmented by the kernel and reassembled by the receiver's.
It needs root and ``ip`` and skips without them; the namespaces go away at the end.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from pycorosync.lib import cmap
from pycorosync.lib.cmap_wire import CMAP_MAP_STATS
from pycorosync.lib.cpg import CpgHandle, DispatchFlag, initialize
from pycorosync.lib.cpg_wire import CpgAddress
from pycorosync.lib.errors import TryAgainError
from tests._loopback import Cluster, make_key, wait_until
from tests._namespaces import NamespacedNode, ip, own_namespaces

pytestmark = pytest.mark.xdist_group("loopback")

NODE_NS = ("pckn-n1", "pckn-n2")
VETH = "pckn"
PORT = 15405
MESSAGES = 30
SIZE = 24_000
SMALL_FRAME = 1382
"""The largest udpu frame on a 1500-byte link (totem-notes.md §6.6)."""


@pytest.fixture
def hosts() -> Iterator[None]:
    with own_namespaces(NODE_NS, "pckn-probe"):
        for ns in NODE_NS:
            ip("netns", "add", ns)
        ip("link", "add", VETH, "netns", NODE_NS[0], "mtu", "1500", "type", "veth",
           "peer", "name", VETH, "netns", NODE_NS[1], "mtu", "1500")  # fmt: skip
        for i, ns in enumerate(NODE_NS, start=1):
            ip("-n", ns, "addr", "add", f"10.97.0.{i}/24", "dev", VETH)
            ip("-n", ns, "link", "set", VETH, "up")
            ip("-n", ns, "link", "set", "lo", "up")
        for ns in NODE_NS:
            wait_until(lambda ns=ns: "state UP" in ip("-n", ns, "link", "show", VETH).stdout,
                       f"{ns}'s link")  # fmt: skip
        yield


def rx_packets(ns: str) -> int:
    """IP packets (fragments included) received on the namespace's link."""
    fields = ip("-n", ns, "-s", "link", "show", VETH).stdout.split("RX:")[1].split("\n")[1]
    return int(fields.split()[1])


class Client:
    """A CPG handle in this process, connected to a node's daemon through its run directory
    (a Unix socket path, which a network namespace does not hide)."""

    def __init__(self, run_dir: Path) -> None:
        self.delivered: list[bytes] = []
        self.members: list[CpgAddress] = []
        self.handle: CpgHandle = initialize(self._deliver, self._confchg, run_dir=str(run_dir))
        self.handle.join(b"big")

    def _deliver(self, group: bytes, nodeid: int, pid: int, msg: bytes) -> None:
        self.delivered.append(msg)

    def _confchg(
        self, group: bytes, members: list[CpgAddress], left: list[CpgAddress],
        joined: list[CpgAddress],
    ) -> None:  # fmt: skip
        self.members = members

    def poll(self) -> None:
        self.handle.dispatch(DispatchFlag.ALL)

    def send(self, msg: bytes) -> None:
        while True:
            try:
                self.handle.mcast_joined(1, msg)  # CPG_TYPE_AGREED
                return
            except TryAgainError:
                self.poll()


def stat(run_dir: Path, key: str) -> int:
    handle = cmap.initialize(run_dir=str(run_dir), cmap_map=CMAP_MAP_STATS)
    try:
        return handle.get_uint64(key)
    finally:
        handle.finalize()


def test_knet_frames_larger_than_the_link_mtu_arrive_whole(hosts: None, base: Path) -> None:
    key = make_key(base / "authkey")
    nodes = [
        NamespacedNode(i, f"10.97.0.{i}", PORT, base, key, namespace=NODE_NS[i - 1]) for i in (1, 2)
    ]
    cluster = Cluster(nodes, base, transport="knet")
    runs = [base / f"r{i}" for i in (1, 2)]
    try:
        cluster.start()
        cluster.wait_formed()
        for node in nodes:
            wait_until(lambda n=node: "ready to provide service." in n.text(), "first sync")
        sender, receiver = Client(runs[0]), Client(runs[1])
        for client in (sender, receiver):
            wait_until(lambda c=client: (c.poll(), len(c.members) == 2)[1], "both in the group")
        frames_before = stat(runs[1], "stats.srp.mcast_rx")
        packets_before = rx_packets(NODE_NS[1])
        sent = [bytes([i]) * SIZE for i in range(MESSAGES)]
        for msg in sent:
            sender.send(msg)
        wait_until(lambda: (receiver.poll(), len(receiver.delivered) >= MESSAGES)[1],
                   "every message at node 2")  # fmt: skip
        assert receiver.delivered == sent
        # The stats map is refreshed every second: a change in the token count is a refresh
        # made after the deliveries above, so its frame count includes all of them.
        tokens = stat(runs[1], "stats.srp.orf_token_rx")
        wait_until(lambda: stat(runs[1], "stats.srp.orf_token_rx") != tokens, "a stats refresh")
        frames = stat(runs[1], "stats.srp.mcast_rx") - frames_before
        packets = rx_packets(NODE_NS[1]) - packets_before
        payload_frames = MESSAGES * SIZE // SMALL_FRAME
        assert frames <= MESSAGES, (frames, packets)
        assert packets >= MESSAGES * SIZE // 1500, (frames, packets)
        assert payload_frames > 10 * frames
        for node in nodes:
            assert "rejected" not in node.text()
    finally:
        cluster.stop_all()
