"""Whether this host delivers IPv4 multicast over loopback (tests skip with the reason if not).

Containers and CI hosts differ: ``lo`` carries no MULTICAST flag, yet Linux usually loops a
datagram sent with ``IP_MULTICAST_IF`` = 127.0.0.1 back to a socket that joined the group on
127.0.0.1; a firewall or a kernel without multicast makes that fail. The probe tries exactly
the path the transport uses: join on one 127/8 address, send from another, loop on.
"""

from __future__ import annotations

import functools
import select
import socket

PROBE_GROUP = "239.192.250.250"
PROBE_TIMEOUT_S = 1.0


def _probe(receiver_ip: str, sender_ip: str) -> str | None:
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as receiver,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender,
    ):
        receiver.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        receiver.bind((PROBE_GROUP, 0))
        port = receiver.getsockname()[1]
        mreq = socket.inet_aton(PROBE_GROUP) + socket.inet_aton(receiver_ip)
        receiver.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
        sender.bind((sender_ip, 0))
        sender.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(sender_ip))
        sender.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
        sender.sendto(b"probe", (PROBE_GROUP, port))
        ready, _, _ = select.select([receiver], [], [], PROBE_TIMEOUT_S)
        if not ready or receiver.recv(16) != b"probe":
            return "a multicast sent on loopback did not come back within 1 s"
    return None


@functools.cache
def loopback_multicast_unavailable() -> str | None:
    """Why IPv4 multicast on loopback cannot be used here, or None when it can."""
    try:
        reason = _probe("127.0.0.1", "127.0.0.2")
    except OSError as error:
        return f"this host refuses multicast on loopback ({error.strerror or error})"
    return None if reason is None else f"this host does not loop multicast back: {reason}"
