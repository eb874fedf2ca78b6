"""The udp multicast transport: socket options as data, the IPv6 interface lookup, and real
sockets on loopback (skipped where the host does not loop multicast back)."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import select
import socket
import struct
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from pycorosync.exec.config import interpret_config
from pycorosync.exec.coroparse import parse_config_text
from pycorosync.exec.ipaddr import Address
from pycorosync.exec.nodelist import NodeAddress
from pycorosync.exec.totem.core_api import Send
from pycorosync.exec.totem.events import Guarantee, TotemEvent
from pycorosync.exec.totemconfig import CryptoConfig, TotemConfig
from pycorosync.exec.totemcrypto import PacketCrypto
from pycorosync.exec.totemnet import (
    MAX_DATAGRAM,
    Datagram,
    NetStats,
    is_multicast,
    transport_notes,
)
from pycorosync.exec.totemproc import RingSeqFile, TotemProcess
from pycorosync.exec.totemudp import (
    Group,
    UdpMulticastTransport,
    group_from_config,
    interface_index,
    membership_options,
    parse_if_inet6,
    sender_options,
)
from tests._multicast import loopback_multicast_unavailable

pytestmark = pytest.mark.xdist_group("loopback")

GROUP4 = ipaddress.ip_address("239.192.31.1")


def _endpoint(ip: str, port: int) -> NodeAddress:
    return NodeAddress(link=0, text=ip, address=ipaddress.ip_address(ip), port=port)


def _free_port(ip: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind((ip, 0))
        port: int = probe.getsockname()[1]
        return port


def _group(local: str, port: int, ttl: int = 1) -> Group:
    return Group(address=GROUP4, port=port, local=ipaddress.ip_address(local), ttl=ttl)


# --- options as data ------------------------------------------------------------------------


def test_ipv4_options_join_on_the_local_address_and_send_from_it() -> None:
    group = _group("10.1.2.3", 5405, ttl=4)
    assert membership_options(group) == [
        (socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, bytes([239, 192, 31, 1, 10, 1, 2, 3]))
    ]
    assert sender_options(group) == [
        (socket.IPPROTO_IP, socket.IP_MULTICAST_IF, bytes([10, 1, 2, 3])),
        (socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 4),
        (socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1),
    ]


def test_ipv6_options_name_the_interface_by_index() -> None:
    address = ipaddress.ip_address("ff15::1")
    group = Group(
        address=address, port=5405, local=ipaddress.ip_address("fd00::1"), ttl=2, ifindex=7
    )
    assert membership_options(group) == [
        (socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, address.packed + struct.pack("@I", 7))
    ]
    assert sender_options(group) == [
        (socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, 7),
        (socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 2),
        (socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_LOOP, 1),
    ]


IF_INET6 = (
    "00000000000000000000000000000001 01 80 10 80       lo\n"
    "fd000000000000000000000000000001 03 40 00 80     eth0\n"
    "fe800000000000000211223344556677 03 40 20 80     eth0\n"
)


def test_the_interface_of_an_ipv6_address(tmp_path: Path) -> None:
    table = tmp_path / "if_inet6"
    table.write_text(IF_INET6)
    assert parse_if_inet6(IF_INET6)[ipaddress.IPv6Address("::1")] == 1
    assert interface_index(ipaddress.ip_address("fd00::1"), table) == 3
    assert interface_index(ipaddress.ip_address("fd00::99"), table) == 0
    assert interface_index(ipaddress.ip_address("fe80::1%5"), table) == 5
    assert interface_index(ipaddress.ip_address("10.0.0.1"), table) == 0
    assert interface_index(ipaddress.ip_address("::1"), tmp_path / "absent") == 0


# --- configuration --------------------------------------------------------------------------


def _totem(interface: str) -> TotemConfig:
    text = (
        "totem {\n version: 2\n cluster_name: m\n transport: udp\n"
        f" interface {{\n  linknumber: 0\n{interface} }}\n}}\n"
        "nodelist {\n node {\n  ring0_addr: 10.0.0.1\n  nodeid: 1\n }\n}\n"
    )
    parsed = parse_config_text(text, file="t.conf")

    def no_names(name: str) -> list[Address]:
        return []

    return interpret_config(
        parsed, require_local_node=False, resolver=no_names, is_local=lambda a: False
    ).totem


def test_the_group_comes_from_link_0() -> None:
    totem = _totem("  mcastaddr: 239.192.9.9\n  mcastport: 6000\n  ttl: 3\n")
    assert is_multicast(totem)
    assert transport_notes(totem) == []
    group = group_from_config(totem, ipaddress.ip_address("10.0.0.1"))
    assert (str(group.address), group.port, group.ttl) == ("239.192.9.9", 6000, 3)


def test_broadcast_is_not_implemented_and_says_so() -> None:
    totem = _totem("  broadcast: yes\n")
    assert not is_multicast(totem)
    assert any("broadcast" in note for note in transport_notes(totem))


# --- real sockets on loopback ---------------------------------------------------------------


@pytest.fixture
def loopback() -> None:
    reason = loopback_multicast_unavailable()
    if reason is not None:
        pytest.skip(reason)


@pytest.fixture
def ring(loopback: None) -> Iterator[dict[int, UdpMulticastTransport]]:
    """Three nodes on 127.0.31.1..3, one port each (the same number), one group."""
    port = _free_port("127.0.31.1")
    endpoints = {n: _endpoint(f"127.0.31.{n}", port) for n in (1, 2, 3)}
    nets = {
        n: UdpMulticastTransport(
            nodeid=n, endpoints=endpoints, group=_group(f"127.0.31.{n}", port, ttl=2)
        )
        for n in endpoints
    }
    try:
        yield nets
    finally:
        for net in nets.values():
            net.close()


def _wait_batch(net: UdpMulticastTransport, count: int) -> list[Datagram]:
    """What ``net`` reads until ``count`` datagrams came (or 2 s of nothing more)."""
    got: list[Datagram] = []
    while len(got) < count and select.select(net.filenos(), [], [], 2.0)[0]:
        got += net.read_batch()
    return got


def _payloads(net: UdpMulticastTransport, count: int) -> list[bytes]:
    return [d.data for d in _wait_batch(net, count)]


def test_one_multicast_reaches_every_other_node_and_not_us(
    ring: dict[int, UdpMulticastTransport],
) -> None:
    for i in range(20):
        ring[1].broadcast(b"m%d" % i)
    assert ring[1].stats.tx == 20  # one send per multicast, whatever the ring size
    for n in (2, 3):
        assert _payloads(ring[n], 20) == [b"m%d" % i for i in range(20)]
    assert ring[1].read_batch() == []
    assert ring[1].stats.rx_own == 20


def test_the_token_is_unicast_to_one_node(ring: dict[int, UdpMulticastTransport]) -> None:
    ring[2].send(3, b"token")
    batch = _wait_batch(ring[3], 1)
    assert [(d.data, d.source) for d in batch] == [(b"token", ("127.0.31.2", ring[2].local.port))]
    assert ring[1].read_batch() == []
    assert ring[2].read_batch() == []


def test_the_kernel_holds_our_multicast_options(ring: dict[int, UdpMulticastTransport]) -> None:
    assert ring[1].multicast_settings() == {"ttl": 2, "loop": 1}
    group_fd, node_fd = ring[1].filenos()
    assert group_fd != node_fd


def test_unlisted_sources_to_the_group_are_dropped(
    ring: dict[int, UdpMulticastTransport],
) -> None:
    port = ring[1].group.port
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as stranger:
        stranger.bind(("127.0.31.9", 0))
        stranger.setsockopt(
            socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton("127.0.31.9")
        )
        stranger.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
        for _ in range(5):
            stranger.sendto(b"x", (str(GROUP4), port))
    ring[3].broadcast(b"real")
    assert _payloads(ring[1], 1) == [b"real"]
    assert ring[1].stats.rx_unlisted == 5


def test_a_second_node_on_one_endpoint_fails_to_bind(loopback: None) -> None:
    ip = "127.0.31.21"
    port = _free_port(ip)
    endpoints = {1: _endpoint(ip, port)}
    net = UdpMulticastTransport(nodeid=1, endpoints=endpoints, group=_group(ip, port))
    try:
        with pytest.raises(OSError, match="in use"):
            UdpMulticastTransport(nodeid=1, endpoints=endpoints, group=_group(ip, port))
    finally:
        net.close()


def test_the_group_must_be_of_the_node_family() -> None:
    endpoints = {1: _endpoint("::1", 5405)}
    with pytest.raises(ValueError, match="family"):
        UdpMulticastTransport(nodeid=1, endpoints=endpoints, group=_group("127.0.0.1", 5405))


# --- the runtime drops what this node sent --------------------------------------------------


class _Core:
    """The few core calls the runtime makes here; records the batches it is handed."""

    nodeid = 1

    def __init__(self) -> None:
        self.batches: list[list[bytes]] = []

    def start(self, now: float) -> None:
        pass

    def handle_datagrams(self, datagrams: Sequence[bytes], now: float) -> None:
        self.batches.append(list(datagrams))

    def handle_timer(self, now: float) -> None:
        pass

    def next_deadline(self) -> float | None:
        return None

    def mcast(
        self, payload: bytes, guarantee: Guarantee = Guarantee.AGREED, *, sync: bool = False
    ) -> bool:
        return True

    def leave(self, now: float) -> None:
        pass

    def take_output(self) -> tuple[list[Send], list[TotemEvent]]:
        return [], []


class _Net:
    """A transport whose one socket holds the datagrams the test wrote into its pair."""

    nodeid = 1

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self.stats = NetStats()

    def filenos(self) -> tuple[int, ...]:
        return (self._sock.fileno(),)

    def send(self, nodeid: int, data: bytes) -> None:
        pass

    def broadcast(self, data: bytes) -> None:
        pass

    def read_batch(self) -> list[Datagram]:
        batch = []
        with contextlib.suppress(BlockingIOError):
            while True:
                batch.append(Datagram(self._sock.recv(MAX_DATAGRAM), ("127.0.0.1", 1)))
        return batch


def test_the_runtime_drops_datagrams_whose_authenticated_sender_is_this_node(
    tmp_path: Path,
) -> None:
    crypto = CryptoConfig(cipher="aes256", hash="sha256", model="nss", keyfile="/k", key=None)
    key = bytes(range(128))
    ours = PacketCrypto(crypto, key, 1, [1, 2], boot_id=5)
    theirs = PacketCrypto(crypto, key, 2, [1, 2], boot_id=7)
    receiver, writer = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.setblocking(False)

    async def run() -> tuple[_Core, TotemProcess]:
        core = _Core()
        process = TotemProcess(
            loop=asyncio.get_running_loop(),
            core=core,
            transport=_Net(receiver),
            protection=ours,
            ring_seq=RingSeqFile(str(tmp_path), 1),
            token_ms=1000,
            notify=lambda state: None,
        )
        process.start()
        writer.send(ours.seal(b"mine"))
        writer.send(theirs.seal(b"theirs"))
        while not core.batches:
            await asyncio.sleep(0.001)
        process.shutdown()
        return core, process

    with receiver, writer:
        core, process = asyncio.run(asyncio.wait_for(run(), 5.0))
    assert core.batches == [[b"theirs"]]
    assert process.own_dropped == 1
