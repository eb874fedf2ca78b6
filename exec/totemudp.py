"""The udp transport: Totem multicasts to an IP multicast group, tokens go unicast.

Theory of operation
-------------------
Totem asks two things of a transport (totem-notes.md §6.1): a unicast to one node (the token,
a commit token) and a multicast to every member. ``transport: udp`` does the multicast with IP
multicast, one ``sendto`` to ``mcastaddr``:``mcastport`` whatever the size of the ring, and the
unicast as udpu does, to the member's ring0 address. Corosync's ``totemudp.c`` (§6.2) uses three
sockets and two ports (mcastport, mcastport - 1); this one uses two sockets and one port:

* **the group socket** (:func:`open_group_socket`) receives the multicasts. It is bound to the
  group address and port, which Linux requires for it to see the group's datagrams and which
  keeps unicast datagrams for the same port off it; ``SO_REUSEADDR`` lets every node on this
  host bind the same group endpoint (the kernel gives each a copy). It joins the group on the
  interface of this node's ring0 address: ``IP_ADD_MEMBERSHIP`` with that address (IPv4), or
  ``IPV6_JOIN_GROUP`` with that interface's index (IPv6, :func:`interface_index`).
* **the node socket** (:func:`open_node_socket`) is bound to this node's ring0 address and port
  (``ring0_port`` when set, else ``mcastport``, as for udpu) and is not ``SO_REUSEADDR``, so two
  nodes configured onto one endpoint fail at bind. It receives the tokens and sends everything:
  unicasts to a member's ring0 endpoint, multicasts to the group, with ``IP_MULTICAST_IF`` set to
  the ring0 address (so the group sees the same source as the unicasts), ``IP_MULTICAST_TTL``
  from ``ttl`` and ``IP_MULTICAST_LOOP`` on (IPv6: ``IPV6_MULTICAST_IF`` with the index,
  ``IPV6_MULTICAST_HOPS``, ``IPV6_MULTICAST_LOOP``). The loop is what lets the other nodes of this
  host hear us; it also hands us our own multicasts back.

Both sockets are bound, the group one to a multicast address and the node one to a unicast
address, so the port may be the same number on both (mcastport) without conflict.

**Filters.** A datagram whose source IP is no member's ring0 address is dropped when
``block_unlisted_ips`` is on (as udpu). A datagram from our own node endpoint is one of our own
multicasts come back: it is dropped here, before the packet protection spends a decryption on
it (the runtime also drops any datagram whose authenticated sender is this node).

**Reading.** Either socket being readable wakes the runtime (:meth:`filenos`);
:meth:`UdpMulticastTransport.read_batch` then drains the group socket and the node socket until
``EAGAIN`` (each bounded), multicasts first, and returns one batch; the core handles its tokens
last (hard part 9). Sends never block: a failure is one lost datagram, counted.

Not implemented: ``broadcast: yes`` (UDP broadcast to the subnet): such a configuration runs as
udpu and says so in the log (:func:`.totemnet.transport_notes`). No loopback-bind fallback when
the interface goes away (Corosync's "The network interface is down."): the node's socket stays
bound to its address.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from pycorosync.exec.ipaddr import Address
from pycorosync.exec.nodelist import NodeAddress, Nodelist
from pycorosync.exec.totemconfig import TotemConfig
from pycorosync.exec.totemnet import (
    MAX_DATAGRAM,
    READ_BATCH_MAX,
    SOCKET_BUFFER_BYTES,
    Datagram,
    NetStats,
    SockAddr,
    allowed_sources,
    configure_socket,
    ip_text,
    read_datagrams,
    send_datagram,
    sockaddr,
)

IF_INET6: Final = "/proc/net/if_inet6"
"""Linux's table of IPv6 addresses and the interface each is on."""

SockOpt = tuple[int, int, int | bytes]
"""One ``setsockopt(level, option, value)``."""


@dataclass(frozen=True, slots=True)
class Group:
    """Where the multicasts go, and the local address whose interface carries them."""

    address: Address
    port: int
    local: Address
    ttl: int
    ifindex: int = 0
    """IPv6: the index of the interface of ``local`` (0: let the kernel choose)."""


# --- socket options, as data (unit-tested without a network) --------------------------------


def membership_options(group: Group) -> list[SockOpt]:
    """The options that join ``group`` on the interface of its local address."""
    if group.address.version == 4:
        mreq = group.address.packed + group.local.packed
        return [(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)]
    mreq6 = group.address.packed + struct.pack("@I", group.ifindex)
    return [(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, mreq6)]


def sender_options(group: Group) -> list[SockOpt]:
    """The options that send multicasts out of the local interface, TTL ``ttl``, looped back."""
    if group.address.version == 4:
        return [
            (socket.IPPROTO_IP, socket.IP_MULTICAST_IF, group.local.packed),
            (socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, group.ttl),
            (socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1),
        ]
    return [
        (socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, group.ifindex),
        (socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, group.ttl),
        (socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_LOOP, 1),
    ]


def apply_options(sock: socket.socket, options: list[SockOpt]) -> None:
    for level, option, value in options:
        sock.setsockopt(level, option, value)


# --- the interface of an IPv6 address --------------------------------------------------------


def parse_if_inet6(text: str) -> dict[ipaddress.IPv6Address, int]:
    """``/proc/net/if_inet6`` (address in hex, index in hex, ..., name) → address: index."""
    table = {}
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 2 and len(fields[0]) == 32:
            table[ipaddress.IPv6Address(int(fields[0], 16))] = int(fields[1], 16)
    return table


def interface_index(address: Address, if_inet6: Path = Path(IF_INET6)) -> int:
    """The index of the interface ``address`` is on (IPv6); 0 when unknown or for IPv4.

    An address with a scope (``fe80::1%eth0``) names its interface; otherwise Linux's table is
    looked up.
    """
    if address.version == 4:
        return 0
    scope = address.scope_id
    if scope:
        return int(scope) if scope.isdigit() else socket.if_nametoindex(scope)
    try:
        table = parse_if_inet6(if_inet6.read_text(encoding="ascii"))
    except OSError:
        return 0
    return table.get(ipaddress.IPv6Address(ip_text(address)), 0)


# --- the two sockets ------------------------------------------------------------------------


def _family(address: Address) -> socket.AddressFamily:
    return socket.AF_INET if address.version == 4 else socket.AF_INET6


def _group_sockaddr(group: Group) -> SockAddr:
    if group.address.version == 4:
        return (str(group.address), group.port)
    return (ip_text(group.address), group.port, 0, group.ifindex)


def open_group_socket(group: Group, buffer_bytes: int = SOCKET_BUFFER_BYTES) -> socket.socket:
    """Bound to the group endpoint (shared, ``SO_REUSEADDR``) and joined to the group."""
    sock = socket.socket(_family(group.address), socket.SOCK_DGRAM)
    try:
        configure_socket(sock, buffer_bytes)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(_group_sockaddr(group))
        apply_options(sock, membership_options(group))
    except BaseException:
        sock.close()
        raise
    return sock


def open_node_socket(
    group: Group, local: NodeAddress, buffer_bytes: int = SOCKET_BUFFER_BYTES
) -> socket.socket:
    """Bound to this node's ring0 endpoint (exclusive) and set up to send to the group."""
    sock = socket.socket(_family(local.address), socket.SOCK_DGRAM)
    try:
        configure_socket(sock, buffer_bytes)
        apply_options(sock, sender_options(group))
        sock.bind(sockaddr(local.address, local.port))
    except BaseException:
        sock.close()
        raise
    return sock


# --- the transport --------------------------------------------------------------------------


class UdpMulticastTransport:
    """The group socket and the node socket; the same interface as ``UdpuTransport``."""

    def __init__(
        self,
        *,
        nodeid: int,
        endpoints: Mapping[int, NodeAddress],
        group: Group,
        block_unlisted_ips: bool = True,
        buffer_bytes: int = SOCKET_BUFFER_BYTES,
    ) -> None:
        if nodeid not in endpoints:
            raise ValueError(f"node {nodeid} has no link-0 address")
        local = endpoints[nodeid]
        if local.address.version != group.address.version:
            raise ValueError(f"multicast group {group.address} is not of the family of {local}")
        self.nodeid = nodeid
        self.local = local
        self.group = group
        self.stats = NetStats()
        self._dest = {n: sockaddr(a.address, a.port) for n, a in endpoints.items()}
        self._group_dest = _group_sockaddr(group)
        self._allowed = allowed_sources(endpoints, block_unlisted_ips)
        self._own = (ip_text(local.address), local.port)
        self._group_sock = open_group_socket(group, buffer_bytes)
        try:
            self._node_sock = open_node_socket(group, local, buffer_bytes)
        except BaseException:
            self._group_sock.close()
            raise
        self._buffer = bytearray(MAX_DATAGRAM)

    @classmethod
    def from_config(
        cls, totem: TotemConfig, nodelist: Nodelist, nodeid: int
    ) -> UdpMulticastTransport:
        endpoints = {node.nodeid: node.ring0 for node in nodelist}
        return cls(
            nodeid=nodeid,
            endpoints=endpoints,
            group=group_from_config(totem, endpoints[nodeid].address),
            block_unlisted_ips=totem.block_unlisted_ips,
        )

    def filenos(self) -> tuple[int, ...]:
        """The descriptors to watch for reading: the group socket and the node socket."""
        return (self._group_sock.fileno(), self._node_sock.fileno())

    def send(self, nodeid: int, data: bytes) -> None:
        """Unicast ``data`` to ``nodeid`` (the token), from the node socket."""
        dest = self._dest.get(nodeid)
        if dest is not None:
            send_datagram(self._node_sock, data, dest, self.stats)

    def broadcast(self, data: bytes) -> None:
        """One multicast to the group: every member on every host that joined it."""
        send_datagram(self._node_sock, data, self._group_dest, self.stats)

    def read_batch(self, limit: int = READ_BATCH_MAX) -> list[Datagram]:
        """The multicasts waiting, then the unicasts (at most ``limit`` of each)."""
        batch: list[Datagram] = []
        for sock in (self._group_sock, self._node_sock):
            batch += read_datagrams(
                sock, self._buffer, self.stats, allowed=self._allowed, limit=limit, own=self._own
            )
        return batch

    def multicast_settings(self) -> dict[str, int]:
        """The multicast options as the kernel holds them on the node socket (for tests/logs)."""
        sock = self._node_sock
        if self.group.address.version == 4:
            level, ttl, loop = socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, socket.IP_MULTICAST_LOOP
        else:
            level = socket.IPPROTO_IPV6
            ttl, loop = socket.IPV6_MULTICAST_HOPS, socket.IPV6_MULTICAST_LOOP
        return {"ttl": sock.getsockopt(level, ttl), "loop": sock.getsockopt(level, loop)}

    def close(self) -> None:
        self._group_sock.close()
        self._node_sock.close()


def group_from_config(totem: TotemConfig, local: Address) -> Group:
    """Link 0's group (``mcastaddr``, ``mcastport``, ``ttl``) on ``local``'s interface."""
    interface = totem.interfaces[0]
    if interface.mcastaddr is None:
        raise ValueError("transport udp has no multicast address")
    return Group(
        address=interface.mcastaddr,
        port=interface.mcastport,
        local=local,
        ttl=interface.ttl,
        ifindex=interface_index(local),
    )
