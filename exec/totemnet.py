"""The udpu transport: one non-blocking UDP socket, unicast to every member of the nodelist.

Theory of operation
-------------------
Totem needs two sends from its transport (totem-notes.md §6.1): a unicast to one node (the
token, or a commit token) and a "multicast" to every other member. udpu does both with one
socket bound to this node's link-0 address and port (``nodelist.node.N.ring0_port`` when set,
else the link's ``mcastport``): :meth:`UdpuTransport.send` is one ``sendto``,
:meth:`UdpuTransport.broadcast` one ``sendto`` per other member. Every datagram leaves from the
bound port, so a peer always sees us at the address and port the nodelist gives for us. Several
nodes on one host therefore need distinct addresses (127.0.0.x) or distinct ports (``::1`` with
a ``ring0_port`` each). The socket is not ``SO_REUSEADDR``: two nodes configured onto one
endpoint fail loudly at bind instead of stealing each other's datagrams.

Receiving is batched (DESIGN.md): :meth:`UdpuTransport.read_batch` reads until the socket says
``EAGAIN`` (bounded per call, so a flood cannot starve the timers) and returns every datagram
with its source address; the runtime hands the batch to the core, which handles the tokens in
it last (hard part 9). The kernel buffers are sized for bursts (a full window of datagrams from
every member), best effort: the kernel clamps them to ``net.core.rmem_max``/``wmem_max``.

``block_unlisted_ips`` (default on): a datagram whose source IP is no node's ring0 address is
dropped before anything else looks at it, and counted (:attr:`NetStats.rx_unlisted`).

Sending never blocks: a full send buffer or an ICMP error surfacing on the socket drops that one
datagram and counts it (:attr:`NetStats.tx_dropped`); Totem retransmits as it would on loss.

``transport: knet`` configurations run on this same unicast path (link 0 only), and so does
``transport: udp`` with ``broadcast: yes``; plain ``transport: udp`` is multicast
(:mod:`.totemudp`). See :func:`transport_notes`. The socket helpers below are shared with it.
"""

from __future__ import annotations

import contextlib
import errno
import socket
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Final

from pycorosync.exec.ipaddr import Address
from pycorosync.exec.nodelist import NodeAddress, Nodelist
from pycorosync.exec.totemconfig import TotemConfig, Transport

SOCKET_BUFFER_BYTES: Final = 8 << 20
"""SO_RCVBUF/SO_SNDBUF asked for (the kernel may grant less; it doubles what it grants).

A rotation may bring ``window_size`` (50) frames of up to 64 KiB (knet's netmtu), each a
datagram the kernel reassembles from MTU-sized fragments whose buffers it also charges: about
5 MiB that must wait in the receive buffer while the Totem process works through the token."""
READ_BATCH_MAX: Final = 1024
"""Datagrams read per wake-up at most; the rest wait for the next one (the socket stays ready)."""
_SO_RCVBUFFORCE: Final = getattr(socket, "SO_RCVBUFFORCE", 33)
_SO_SNDBUFFORCE: Final = getattr(socket, "SO_SNDBUFFORCE", 32)
"""Linux's option numbers (asm-generic/socket.h), for Pythons whose socket module lacks them."""
MAX_DATAGRAM: Final = 65535
"""No UDP payload is larger; a read buffer of this size never truncates."""

SockAddr = tuple[str, int] | tuple[str, int, int, int]
"""What ``sendto`` takes: (host, port) for IPv4, (host, port, flowinfo, scope_id) for IPv6."""


@dataclass(slots=True)
class NetStats:
    rx: int = 0
    rx_unlisted: int = 0
    rx_own: int = 0
    """Our own multicasts, looped back by the kernel (udp only)."""
    tx: int = 0
    tx_dropped: int = 0
    tx_error: str = ""
    """The last send error (errno name and text), for the operator's log."""


@dataclass(frozen=True, slots=True)
class Datagram:
    data: bytes
    source: tuple[str, int]
    """The sender's (IP text, port)."""


def sockaddr(address: Address, port: int) -> SockAddr:
    """The socket address for ``address``:``port`` (an IPv6 scope becomes its index)."""
    if address.version == 4:
        return (str(address), port)
    scope = address.scope_id
    index = 0
    if scope:
        index = int(scope) if scope.isdigit() else socket.if_nametoindex(scope)
    bare = str(address).split("%", 1)[0]
    return (bare, port, 0, index)


def ip_text(address: Address) -> str:
    """The address as ``recvfrom`` spells it (no scope), for the source filter."""
    return str(address).split("%", 1)[0]


def allowed_sources(
    endpoints: Mapping[int, NodeAddress], block_unlisted_ips: bool
) -> frozenset[str] | None:
    """The source IPs accepted (every member's ring0 address), or None to accept any."""
    if not block_unlisted_ips:
        return None
    return frozenset(ip_text(a.address) for a in endpoints.values())


def configure_socket(sock: socket.socket, buffer_bytes: int) -> None:
    """Non-blocking, IPv6 only when IPv6, kernel buffers sized for bursts (best effort)."""
    sock.setblocking(False)
    if sock.family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    for forced, option in (
        (_SO_RCVBUFFORCE, socket.SO_RCVBUF),
        (_SO_SNDBUFFORCE, socket.SO_SNDBUF),
    ):
        # The FORCE options pass net.core.[rw]mem_max (it needs CAP_NET_ADMIN, which a
        # daemon run as root has); otherwise the kernel caps the plain option at that limit.
        try:
            sock.setsockopt(socket.SOL_SOCKET, forced, buffer_bytes)
        except OSError:
            with contextlib.suppress(OSError):  # best effort: the kernel's default stays
                sock.setsockopt(socket.SOL_SOCKET, option, buffer_bytes)


def send_datagram(sock: socket.socket, data: bytes, dest: SockAddr, stats: NetStats) -> None:
    """One ``sendto`` that never raises: a failure is one lost datagram, counted."""
    try:
        sock.sendto(data, dest)
    except OSError as error:
        # EAGAIN (buffer full), or an ICMP error reported on the socket: one datagram is
        # lost, which Totem recovers from as from any loss. The runtime logs it, rate-limited.
        stats.tx_dropped += 1
        name = errno.errorcode.get(error.errno or 0, str(error.errno))
        stats.tx_error = f"{name}: {error.strerror}"
    else:
        stats.tx += 1


def read_datagrams(
    sock: socket.socket,
    buffer: bytearray,
    stats: NetStats,
    *,
    allowed: frozenset[str] | None,
    limit: int,
    own: tuple[str, int] | None = None,
) -> Iterator[Datagram]:
    """Up to ``limit`` datagrams waiting in ``sock``, until ``EAGAIN``.

    A source IP not in ``allowed`` (when given) is dropped and counted in ``rx_unlisted``; a
    datagram from ``own`` (this node's own endpoint: a multicast looped back) in ``rx_own``.
    """
    recv, view = sock.recvfrom_into, memoryview(buffer)
    for _ in range(limit):
        try:
            size, source = recv(buffer)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            continue  # an ICMP error queued on the socket; the next read goes on
        host, port = source[0], source[1]
        if allowed is not None and host not in allowed:
            stats.rx_unlisted += 1
            continue
        if own is not None and (host, port) == own:
            stats.rx_own += 1
            continue
        stats.rx += 1
        yield Datagram(bytes(view[:size]), (host, port))


class UdpuTransport:
    """A bound, non-blocking UDP socket and the table of where each member listens."""

    def __init__(
        self,
        *,
        nodeid: int,
        endpoints: Mapping[int, NodeAddress],
        block_unlisted_ips: bool = True,
        buffer_bytes: int = SOCKET_BUFFER_BYTES,
    ) -> None:
        if nodeid not in endpoints:
            raise ValueError(f"node {nodeid} has no link-0 address")
        self.nodeid = nodeid
        self.stats = NetStats()
        local = endpoints[nodeid]
        self.local = local
        self._dest = {n: sockaddr(a.address, a.port) for n, a in endpoints.items()}
        self._others = tuple(self._dest[n] for n in sorted(self._dest) if n != nodeid)
        self._allowed = allowed_sources(endpoints, block_unlisted_ips)
        family = socket.AF_INET if local.address.version == 4 else socket.AF_INET6
        self._sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            configure_socket(self._sock, buffer_bytes)
            self._sock.bind(sockaddr(local.address, local.port))
        except BaseException:
            self._sock.close()
            raise
        self._buffer = bytearray(MAX_DATAGRAM)

    @classmethod
    def from_config(cls, totem: TotemConfig, nodelist: Nodelist, nodeid: int) -> UdpuTransport:
        return cls(
            nodeid=nodeid,
            endpoints={node.nodeid: node.ring0 for node in nodelist},
            block_unlisted_ips=totem.block_unlisted_ips,
        )

    def fileno(self) -> int:
        return self._sock.fileno()

    def filenos(self) -> tuple[int, ...]:
        """The descriptors to watch for reading (one here)."""
        return (self._sock.fileno(),)

    def buffer_sizes(self) -> tuple[int, int]:
        """The receive and send buffer sizes the kernel granted."""
        sock = self._sock
        return (
            sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF),
            sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF),
        )

    def send(self, nodeid: int, data: bytes) -> None:
        """Unicast ``data`` to ``nodeid`` (which may be this node: a singleton ring's token)."""
        dest = self._dest.get(nodeid)
        if dest is not None:
            self._sendto(data, dest)

    def broadcast(self, data: bytes) -> None:
        """Send ``data`` to every other member."""
        for dest in self._others:
            self._sendto(data, dest)

    def _sendto(self, data: bytes, dest: SockAddr) -> None:
        send_datagram(self._sock, data, dest, self.stats)

    def read_batch(self, limit: int = READ_BATCH_MAX) -> list[Datagram]:
        """Every datagram waiting (at most ``limit``), unlisted sources dropped."""
        return list(
            read_datagrams(self._sock, self._buffer, self.stats, allowed=self._allowed, limit=limit)
        )

    def close(self) -> None:
        self._sock.close()


def transport_notes(totem: TotemConfig) -> list[str]:
    """What the operator should know about how the configured transport runs here."""
    notes = []
    if totem.transport is Transport.KNET:
        notes.append("knet links run as udpu: unicast UDP on link 0.")
    elif totem.transport is Transport.UDP and uses_broadcast(totem):
        notes.append("udp broadcast (broadcast: yes) is not implemented: running as udpu.")
    if totem.unused_links:
        links = " ".join(str(link) for link in totem.unused_links)
        notes.append(f"Links configured but unused (only link 0 carries traffic): {links}")
    return notes


def uses_broadcast(totem: TotemConfig) -> bool:
    """``transport: udp`` with ``broadcast: yes`` on link 0 (UDP broadcast, not implemented)."""
    return totem.transport is Transport.UDP and totem.interfaces[0].broadcast


def is_multicast(totem: TotemConfig) -> bool:
    """Whether this configuration runs on the multicast transport (:mod:`.totemudp`)."""
    return totem.transport is Transport.UDP and not uses_broadcast(totem)
