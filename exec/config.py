"""Loading corosync.conf: the one entry point the daemon and ``corosync-exec -t`` call.

:func:`load_config` runs the stages in order — parse (:mod:`.coroparse`), nodelist
(:mod:`.nodelist`), totem values (:mod:`.totemconfig`), "which node am I" — and turns any
:class:`ConfigError` a later stage raises about a key into one placed at that key's line.
Nothing here opens a socket except the default local-address check, and both it and the name
resolver can be replaced.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

from pycorosync.exec.config_error import ConfigError
from pycorosync.exec.coroparse import ConfigEntry, ConfigSink, ParsedConfig, parse_config_file
from pycorosync.exec.ipaddr import LocalAddressCheck, Resolver, is_local_address, system_resolver
from pycorosync.exec.nodelist import (
    LocalNode,
    NodeEntry,
    Nodelist,
    build_nodelist,
    count_ring0_members,
    identify_local_node,
    ring_links,
)
from pycorosync.exec.totemconfig import (
    TotemConfig,
    build_totem_config,
    check_links,
    interface_links,
)
from pycorosync.exec.totemkeys import CmapItem, runtime_keys, udp_writeback_keys
from pycorosync.lib.cmap_types import ValueType

DEFAULT_CONFIG_FILE = "/etc/corosync/corosync.conf"


@dataclass(frozen=True, slots=True, kw_only=True)
class LoadedConfig:
    """A checked configuration: the keys as read, what they mean, and who this host is."""

    parsed: ParsedConfig
    totem: TotemConfig
    nodelist: Nodelist
    local: LocalNode
    derived: tuple[CmapItem, ...]
    """Keys Corosync writes back into the config space (generated nodeids, udp multicast)."""
    runtime: tuple[CmapItem, ...]
    """``runtime.config.totem.*`` and, when this host is a node, ``nodelist.local_node_pos``."""
    warnings: tuple[str, ...]

    @property
    def local_node(self) -> NodeEntry | None:
        return self.local.node

    def describe_local(self) -> str:
        """One line for ``corosync-exec -t``: which node this host is, or that it is none."""
        if self.local.node is not None:
            return f"This host is {self.local.node.describe()} (by {self.local.how})."
        return self.local.problem or "This host is no node of this cluster."

    def items(self) -> Iterator[CmapItem]:
        """Every key for the cmap store: the file's, the derived ones, then the runtime ones."""
        for entry in self.parsed:
            yield CmapItem(entry.key, entry.value, entry.vtype)
        yield from self.derived
        yield from self.runtime

    def load_into(self, sink: ConfigSink) -> None:
        for item in self.items():
            sink.set(item.key, item.value, item.vtype)


def load_config(
    path: str | os.PathLike[str] = DEFAULT_CONFIG_FILE,
    *,
    nodeid_override: int | None = None,
    require_local_node: bool = True,
    resolver: Resolver = system_resolver,
    is_local: LocalAddressCheck = is_local_address,
    read_uidgid_d: bool = True,
) -> LoadedConfig:
    """Read and check ``path``; every error is a :class:`ConfigError` reading ``FILE:LINE: ...``.

    ``nodeid_override`` is ``corosync-exec -n``. With ``require_local_node`` false, a host that
    is no node (or several) is not an error: :attr:`LoadedConfig.local` says so instead.
    """
    parsed = parse_config_file(path, read_uidgid_d=read_uidgid_d)
    try:
        return _interpret(parsed, nodeid_override, require_local_node, resolver, is_local)
    except ConfigError as error:
        raise parsed.locate(error) from None


def interpret_config(
    parsed: ParsedConfig,
    *,
    nodeid_override: int | None = None,
    require_local_node: bool = True,
    resolver: Resolver = system_resolver,
    is_local: LocalAddressCheck = is_local_address,
) -> LoadedConfig:
    """:func:`load_config` for keys already parsed (from text, in a test or a reload)."""
    try:
        return _interpret(parsed, nodeid_override, require_local_node, resolver, is_local)
    except ConfigError as error:
        raise parsed.locate(error) from None


def _interpret(
    parsed: ParsedConfig,
    nodeid_override: int | None,
    require_local_node: bool,
    resolver: Resolver,
    is_local: LocalAddressCheck,
) -> LoadedConfig:
    links = {link: f"totem.interface.{link}" for link in interface_links(parsed)}
    check_links(parsed, {**ring_links(parsed), **links})
    nodelist = build_nodelist(parsed, resolver=resolver)
    totem = build_totem_config(
        parsed,
        ring0_members=count_ring0_members(parsed),
        link_families=nodelist.link_families(),
    )
    if not nodelist.nodes:
        raise ConfigError(
            "The nodelist is empty: add a nodelist { node { ring0_addr: ...  nodeid: ... } } "
            "section with every node of the cluster",
            key="nodelist",
        )
    local = identify_local_node(
        nodelist, nodeid=totem.nodeid, override=nodeid_override, is_local=is_local
    )
    if require_local_node:
        local.require()
    derived = [_as_item(entry) for entry in nodelist.writeback_entries(parsed.file)]
    derived += udp_writeback_keys(totem, parsed)
    runtime = runtime_keys(totem)
    if local.node is not None:
        runtime.append(CmapItem("nodelist.local_node_pos", local.node.index, ValueType.UINT32))
    return LoadedConfig(
        parsed=parsed,
        totem=totem,
        nodelist=nodelist,
        local=local,
        derived=tuple(derived),
        runtime=tuple(runtime),
        warnings=(*parsed.warnings, *_warnings(parsed, totem), *_local_warnings(local, is_local)),
    )


def _as_item(entry: ConfigEntry) -> CmapItem:
    return CmapItem(entry.key, entry.value, entry.vtype)


def _local_warnings(local: LocalNode, is_local: LocalAddressCheck) -> Iterator[str]:
    """A node chosen by nodeid whose address this host does not have cannot bind its socket."""
    node = local.node
    if node is not None and local.how != "address" and not is_local(node.ring0.address):
        yield (
            f"This host is {node.describe()} (by {local.how}), but {node.ring0.address} "
            "is not assigned to any of its interfaces."
        )


def _warnings(parsed: ParsedConfig, totem: TotemConfig) -> Iterator[str]:
    """Corosync's start-up warnings about the file, and what we do not run yet."""
    if any(entry.key.endswith(".bindnetaddr") for entry in parsed.under("totem.interface.")):
        yield (
            "interface section bindnetaddr is used together with nodelist. "
            "Nodelist one is going to be used."
        )
    if any(".member." in entry.key for entry in parsed.under("totem.interface.")):
        yield "member section is used together with nodelist. Members ignored."
    if totem.unused_links:
        links = ", ".join(str(link) for link in totem.unused_links)
        subject = f"Links {links} are" if len(totem.unused_links) > 1 else f"Link {links} is"
        yield f"{subject} configured but not used yet: only link 0 carries traffic."
    if totem.knet_compression_model != "none":
        yield (
            f"knet_compression_model {totem.knet_compression_model} is not implemented: "
            "messages are sent uncompressed."
        )
    for interface in totem.interfaces:
        if interface.knet_transport == "sctp":
            yield f"knet_transport sctp on link {interface.linknumber} runs as udp."
