"""Node addresses: ``ip_version``, name resolution, and "is this address assigned to this host".

Corosync resolves a ``ringX_addr`` with ``getaddrinfo`` and keeps the first address of the
preferred family (``ip_version``: ``ipv4``, ``ipv6``, or ``ipv4-6``/``ipv6-4`` for "this one,
else that one"). Both the resolver and the local-address check are plain callables so that a
test (or a simulator) can replace them; the defaults here ask the operating system.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Sequence
from enum import StrEnum

Address = ipaddress.IPv4Address | ipaddress.IPv6Address

Resolver = Callable[[str], Sequence[Address]]
"""A host name → its addresses, in the resolver's order (empty when it does not resolve)."""

LocalAddressCheck = Callable[[Address], bool]
"""True when the address is assigned to an interface of this host."""


class IpVersion(StrEnum):
    """``totem.ip_version``: which address families a name may resolve to, in preference order."""

    IPV4 = "ipv4"
    IPV6 = "ipv6"
    IPV4_6 = "ipv4-6"
    IPV6_4 = "ipv6-4"

    @property
    def families(self) -> tuple[int, ...]:
        """IP versions (4, 6) allowed, the preferred first."""
        return _FAMILIES[self]


_FAMILIES = {
    IpVersion.IPV4: (4,),
    IpVersion.IPV6: (6,),
    IpVersion.IPV4_6: (4, 6),
    IpVersion.IPV6_4: (6, 4),
}


def parse_literal(text: str) -> Address | None:
    """``text`` as a numeric IPv4 or IPv6 address (a scope such as ``%eth0`` allowed)."""
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def system_resolver(name: str) -> list[Address]:
    """Resolve with the system's ``getaddrinfo``; no addresses when the name does not resolve."""
    try:
        infos = socket.getaddrinfo(name, None, socket.AF_UNSPEC, socket.SOCK_DGRAM)
    except (OSError, UnicodeError, ValueError):
        return []
    found: list[Address] = []
    for family, _type, _proto, _canon, sockaddr in infos:
        if family in (socket.AF_INET, socket.AF_INET6):
            address = parse_literal(str(sockaddr[0]))
            if address is not None and address not in found:
                found.append(address)
    return found


def resolve(text: str, ip_version: IpVersion, resolver: Resolver) -> Address | None:
    """The address ``text`` stands for under ``ip_version``; None when there is none.

    A numeric address is taken as it is (the resolver is not asked) but must still be of an
    allowed family, as Corosync's ``getaddrinfo`` with a family hint would insist.
    """
    literal = parse_literal(text)
    candidates: Sequence[Address] = [literal] if literal is not None else resolver(text)
    for version in ip_version.families:
        for candidate in candidates:
            if candidate.version == version:
                return candidate
    return None


def is_local_address(address: Address) -> bool:
    """True when a UDP socket can be bound to ``address`` (with any port).

    The kernel refuses the bind with EADDRNOTAVAIL when no interface has the address; any other
    refusal (no IPv6 on this host, for one) means the same for us: we cannot listen there.
    """
    family = socket.AF_INET if address.version == 4 else socket.AF_INET6
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.bind((str(address), 0))
    except OSError:
        return False
    return True
