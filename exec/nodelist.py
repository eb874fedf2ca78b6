"""The nodelist: who the cluster members are, their nodeids and addresses, and which one we are.

Theory of operation
-------------------
:func:`build_nodelist` turns the ``nodelist.node.<i>.*`` keys into :class:`NodeEntry` objects and
applies Corosync 3.x's rules, with its wording:

* every address (``ringX_addr``, X = 0..7) is resolved honouring ``totem.ip_version``; all nodes
  of one link must share an address family, and no two nodes may share an address and port on
  a link (our own key ``ringX_port`` lets several nodes share one address, e.g. ``::1``);
* a nodeid is explicit (1..4294967295; 0 is reserved for LEAVE messages) or, with udp/udpu,
  derived from the node's IPv4 ``ring0_addr`` (the four bytes as a big-endian u32, the high bit
  cleared with ``clear_node_high_bit: yes``) and written back as ``nodelist.node.<i>.nodeid``;
  IPv6 nodes and every knet node need an explicit one (knet: below 65536);
* nodeids are unique; with more than one link every node needs a ``name`` and the same links.

:func:`identify_local_node` answers "which node am I" as DESIGN.md decides: an explicit
``totem.nodeid`` or the ``corosync-exec -n`` override names the node; otherwise the node whose
``ring0_addr`` is assigned to this host (exact match, checked with an injected predicate). No
match, or several (several nodes on one host), is a clear error that names the candidates, but
one the caller may choose to report rather than raise (``corosync-exec -t`` on a host that is
not a member).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field

from pycorosync.exec.config_error import ConfigError
from pycorosync.exec.coroparse import ConfigEntry, ParsedConfig
from pycorosync.exec.ipaddr import (
    Address,
    IpVersion,
    LocalAddressCheck,
    Resolver,
    is_local_address,
    resolve,
    system_resolver,
)
from pycorosync.exec.totemconfig import (
    INTERFACE_MAX,
    KNET_MAX_HOST,
    PROCESSOR_COUNT_MAX,
    RESERVED_NODEID,
    Transport,
    interface_links,
    link_port,
    read_clear_node_high_bit,
    read_ip_version,
    read_transport,
)
from pycorosync.lib.cmap_types import ValueType

_NODE_KEY = re.compile(r"nodelist\.node\.([0-9]+)\.(.+)")
_RING_KEY = re.compile(r"ring([0-9]+)_(addr|port)")
_NODEID_MAX = 0xFFFFFFFF
_SET_NODEID = "set totem.nodeid in this node's corosync.conf, or start corosync-exec with -n NODEID"


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeAddress:
    link: int
    text: str
    """The ``ringX_addr`` as written (an address or a host name)."""
    address: Address
    port: int
    """``ringX_port`` if set, else the link's port (``totem.interface.X.mcastport``, 5405 + X)."""

    def __str__(self) -> str:
        return (
            str(self.address) if self.text == str(self.address) else f"{self.text} ({self.address})"
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeEntry:
    """One ``nodelist { node { } }``."""

    index: int
    """Its position: the N of ``nodelist.node.N.*``."""
    nodeid: int
    nodeid_generated: bool
    name: str | None
    quorum_votes: int | None
    addresses: tuple[NodeAddress, ...]
    """By link number, ring0 first."""

    @property
    def ring0(self) -> NodeAddress:
        return self.addresses[0]

    def address(self, link: int) -> NodeAddress | None:
        for address in self.addresses:
            if address.link == link:
                return address
        return None

    def describe(self) -> str:
        """``nodeid 2 (node2) at 10.0.0.2`` — how errors and ``-t`` name a node."""
        name = f" ({self.name})" if self.name else ""
        return f"nodeid {self.nodeid}{name} at {self.ring0}"


@dataclass(frozen=True, slots=True)
class Nodelist:
    nodes: tuple[NodeEntry, ...]

    def __iter__(self) -> Iterator[NodeEntry]:
        return iter(self.nodes)

    def __len__(self) -> int:
        return len(self.nodes)

    def by_nodeid(self, nodeid: int) -> NodeEntry | None:
        for node in self.nodes:
            if node.nodeid == nodeid:
                return node
        return None

    @property
    def links(self) -> tuple[int, ...]:
        return tuple(sorted({address.link for node in self.nodes for address in node.addresses}))

    def link_families(self) -> dict[int, int]:
        """Each link's IP version (4 or 6); the nodelist has checked they agree."""
        return {address.link: address.address.version for address in self._all_addresses()}

    def writeback_entries(self, file: str) -> list[ConfigEntry]:
        """The nodeids Corosync writes back for nodes that did not give one."""
        return [
            ConfigEntry(
                f"nodelist.node.{node.index}.nodeid", node.nodeid, ValueType.UINT32, file, None
            )
            for node in self.nodes
            if node.nodeid_generated
        ]

    def _all_addresses(self) -> Iterator[NodeAddress]:
        for node in self.nodes:
            yield from node.addresses


def count_ring0_members(parsed: ParsedConfig) -> int:
    """How many nodes have a ``ring0_addr`` (what scales the token)."""
    return sum(1 for fields in _node_fields(parsed).values() if "ring0_addr" in fields)


def ring_links(parsed: ParsedConfig) -> dict[int, str]:
    """Link numbers some node has a ``ringX_addr`` for, each with the first such key."""
    links: dict[int, str] = {}
    for fields in _node_fields(parsed).values():
        for name, entry in fields.items():
            match = _RING_KEY.fullmatch(name)
            if match is not None and match.group(2) == "addr":
                links.setdefault(int(match.group(1)), entry.key)
    return links


def build_nodelist(parsed: ParsedConfig, *, resolver: Resolver = system_resolver) -> Nodelist:
    """The nodes of ``parsed``, checked (raises :class:`ConfigError` naming the key)."""
    rules = _Rules(parsed, resolver)
    nodes = tuple(rules.node(index, fields) for index, fields in _node_fields(parsed).items())
    if len(nodes) > PROCESSOR_COUNT_MAX:
        raise ConfigError(
            f"Too many nodes in the nodelist ({len(nodes)}; at most {PROCESSOR_COUNT_MAX})",
            key=f"nodelist.node.{nodes[PROCESSOR_COUNT_MAX].index}",
        )
    configured = set(interface_links(parsed)) | {a.link for n in nodes for a in n.addresses}
    if len(configured) > 1:
        _check_multi_link(nodes, sorted(configured))
    _check_families(nodes)
    _check_unique_nodeids(nodes)
    _check_unique_addresses(nodes)
    return Nodelist(nodes)


def _node_fields(parsed: ParsedConfig) -> dict[int, dict[str, ConfigEntry]]:
    nodes: dict[int, dict[str, ConfigEntry]] = {}
    for entry in parsed.under("nodelist.node."):
        match = _NODE_KEY.fullmatch(entry.key)
        if match is not None:
            nodes.setdefault(int(match.group(1)), {})[match.group(2)] = entry
    return dict(sorted(nodes.items()))


@dataclass(slots=True)
class _Rules:
    parsed: ParsedConfig
    resolver: Resolver
    transport: Transport = field(init=False)
    ip_version: IpVersion = field(init=False)
    clear_high_bit: bool = field(init=False)

    def __post_init__(self) -> None:
        self.transport = read_transport(self.parsed)
        self.ip_version = read_ip_version(self.parsed)
        self.clear_high_bit = read_clear_node_high_bit(self.parsed)

    def _integer(self, entry: ConfigEntry) -> int:
        # A node key written with dots elsewhere ("nodelist { node.0.nodeid: x }") is a string.
        value = self.parsed.get_int(entry.key)
        assert value is not None
        return value

    def _string(self, entry: ConfigEntry) -> str:
        value = self.parsed.get_str(entry.key)
        assert value is not None
        return value

    def node(self, index: int, fields: dict[str, ConfigEntry]) -> NodeEntry:
        prefix = f"nodelist.node.{index}."
        addresses = self._addresses(prefix, fields)
        if not addresses or addresses[0].link != 0:
            raise ConfigError(f"Node {index} of the nodelist has no ring0_addr", key=prefix[:-1])
        nodeid, generated = self._nodeid(prefix, fields, addresses[0])
        name, votes = fields.get("name"), fields.get("quorum_votes")
        return NodeEntry(
            index=index,
            nodeid=nodeid,
            nodeid_generated=generated,
            name=None if name is None else self._string(name),
            quorum_votes=None if votes is None else self._integer(votes),
            addresses=addresses,
        )

    def _addresses(self, prefix: str, fields: dict[str, ConfigEntry]) -> tuple[NodeAddress, ...]:
        rings: dict[int, dict[str, ConfigEntry]] = {}
        for name, entry in fields.items():
            match = _RING_KEY.fullmatch(name)
            if match is not None:
                rings.setdefault(int(match.group(1)), {})[match.group(2)] = entry
        return tuple(self._address(prefix, link, rings[link]) for link in sorted(rings))

    def _address(self, prefix: str, link: int, ring: dict[str, ConfigEntry]) -> NodeAddress:
        if link >= INTERFACE_MAX:
            raise ConfigError(
                f"interface ring number {link} is bigger than allowed maximum {INTERFACE_MAX - 1}",
                key=next(iter(ring.values())).key,
            )
        if "addr" not in ring:
            raise ConfigError(
                f"ring{link}_port is set but ring{link}_addr is not", key=ring["port"].key
            )
        text = self._string(ring["addr"])
        address = resolve(text, self.ip_version, self.resolver)
        if address is None:
            raise ConfigError(f"failed to parse node address '{text}'", key=ring["addr"].key)
        if address.is_multicast or address.is_unspecified:
            raise ConfigError(
                f"Node address '{text}' is not a unicast host address", key=ring["addr"].key
            )
        port = link_port(self.parsed, link)  # a port 0 there is for the totem checks to report
        if "port" in ring:
            port = self._integer(ring["port"])
            if port == 0:
                raise ConfigError(
                    f"ring{link}_port must be between 1 and 65535", key=ring["port"].key
                )
        return NodeAddress(link=link, text=text, address=address, port=port)

    def _nodeid(
        self, prefix: str, fields: dict[str, ConfigEntry], ring0: NodeAddress
    ) -> tuple[int, bool]:
        entry = fields.get("nodeid")
        if entry is not None:
            nodeid = self._integer(entry)
            if nodeid == 0:
                raise ConfigError(RESERVED_NODEID, key=entry.key)
            if self.transport is Transport.KNET and nodeid >= KNET_MAX_HOST:
                raise ConfigError(
                    f"Knet requires nodeid to be less than {KNET_MAX_HOST} "
                    f"for address '{ring0.text}'.",
                    key=entry.key,
                )
            return nodeid, False
        ring0_key = prefix + "ring0_addr"
        if self.transport is Transport.KNET:
            raise ConfigError(
                f"Knet requires an explicit nodeid to be specified for address '{ring0.text}'.",
                key=ring0_key,
            )
        if ring0.address.version != 4:
            raise ConfigError(
                f"An IPV6 network requires that a node ID be specified for address '{ring0.text}'.",
                key=ring0_key,
            )
        nodeid = int(ring0.address) & (0x7FFFFFFF if self.clear_high_bit else _NODEID_MAX)
        if nodeid == 0:
            raise ConfigError(RESERVED_NODEID, key=ring0_key)
        return nodeid, True


def _check_multi_link(nodes: tuple[NodeEntry, ...], links: list[int]) -> None:
    for node in nodes:
        if node.name is None:
            raise ConfigError(
                "for a multi-link configuration, all nodes must have a 'name' attribute",
                key=f"nodelist.node.{node.index}",
            )
    for node in nodes:
        if [address.link for address in node.addresses] != links:
            raise ConfigError(
                "Not all nodes have the same number of links", key=f"nodelist.node.{node.index}"
            )


def _check_families(nodes: tuple[NodeEntry, ...]) -> None:
    first: dict[int, NodeAddress] = {}
    for node in nodes:
        for address in node.addresses:
            reference = first.setdefault(address.link, address)
            if address.address.version != reference.address.version:
                raise ConfigError(
                    f"Nodes for link {address.link} have different IP families "
                    f"(compared {address.address} with {reference.address})",
                    key=f"nodelist.node.{node.index}.ring{address.link}_addr",
                )


def _check_unique_nodeids(nodes: tuple[NodeEntry, ...]) -> None:
    seen: set[int] = set()
    for node in nodes:
        if node.nodeid in seen:
            origin = f"(autogenerated from {node.ring0.text})" if node.nodeid_generated else ""
            field_name = "ring0_addr" if node.nodeid_generated else "nodeid"
            raise ConfigError(
                f"Nodeid {node.nodeid}{origin} appears twice in corosync.conf",
                key=f"nodelist.node.{node.index}.{field_name}",
            )
        seen.add(node.nodeid)


def _check_unique_addresses(nodes: tuple[NodeEntry, ...]) -> None:
    seen: set[tuple[int, Address, int]] = set()
    for node in nodes:
        for address in node.addresses:
            endpoint = (address.link, address.address, address.port)
            if endpoint in seen:
                raise ConfigError(
                    f"Address {address.address} port {address.port} of link {address.link} "
                    "appears twice in corosync.conf",
                    key=f"nodelist.node.{node.index}.ring{address.link}_addr",
                )
            seen.add(endpoint)


# --- which node am I -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class LocalNode:
    """The answer to "which node am I"."""

    node: NodeEntry | None
    how: str
    """``totem.nodeid``, ``-n``, or ``address`` (the ring0 address is on this host); "" if none."""
    candidates: tuple[NodeEntry, ...] = ()
    """With ``how == "address"``, or no answer: the nodes whose ring0 address is local."""
    problem: str | None = None
    """Why there is no answer (no match, or several); None when :attr:`node` is set."""

    def require(self) -> NodeEntry:
        """The local node, or the :class:`ConfigError` that explains why there is none."""
        if self.node is None:
            raise ConfigError(self.problem or "No valid name found for local host")
        return self.node


def identify_local_node(
    nodelist: Nodelist,
    *,
    nodeid: int | None = None,
    override: int | None = None,
    is_local: LocalAddressCheck = is_local_address,
) -> LocalNode:
    """Which node of ``nodelist`` this host is.

    ``nodeid`` is ``totem.nodeid`` from the file, ``override`` the ``-n`` argument (it wins).
    An explicit nodeid that is not in the nodelist raises :class:`ConfigError` at once; an
    unanswered address match comes back as :attr:`LocalNode.problem`.
    """
    explicit, how = (override, "-n") if override is not None else (nodeid, "totem.nodeid")
    if explicit is not None:
        return LocalNode(node=_explicit(nodelist, explicit, how), how=how)
    local = tuple(node for node in nodelist if is_local(node.ring0.address))
    if len(local) == 1:
        return LocalNode(node=local[0], how="address", candidates=local)
    if local:
        names = ", ".join(node.describe() for node in local)
        problem = f"This host has the ring0_addr of several nodes ({names}): {_SET_NODEID}"
    else:
        names = ", ".join(node.describe() for node in nodelist)
        problem = f"This host has the ring0_addr of no node ({names}): {_SET_NODEID}"
    return LocalNode(node=None, how="", candidates=local, problem=problem)


def _explicit(nodelist: Nodelist, nodeid: int, how: str) -> NodeEntry:
    key = "totem.nodeid" if how == "totem.nodeid" else None
    if nodeid == 0:
        raise ConfigError(RESERVED_NODEID, key=key)
    node = nodelist.by_nodeid(nodeid)
    if node is None:
        known = ", ".join(str(entry.nodeid) for entry in nodelist)
        raise ConfigError(
            f"Node ID {nodeid} (from {how}) is not in the nodelist (nodeids: {known})", key=key
        )
    return node
