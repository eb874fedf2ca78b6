"""Nodelist rules (nodeids, addresses, links) and "which node am I"."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Sequence

import pytest

from pycorosync.exec.config import LoadedConfig, interpret_config
from pycorosync.exec.config_error import ConfigError
from pycorosync.exec.coroparse import parse_config_text
from pycorosync.exec.ipaddr import (
    Address,
    IpVersion,
    is_local_address,
    resolve,
    system_resolver,
)
from pycorosync.exec.nodelist import Nodelist, build_nodelist, identify_local_node
from pycorosync.lib.cmap_types import ValueType

HOSTS: dict[str, list[Address]] = {
    "dual": [ipaddress.ip_address("192.0.2.10"), ipaddress.ip_address("2001:db8::10")],
    "v4only": [ipaddress.ip_address("192.0.2.20")],
    "v6only": [ipaddress.ip_address("2001:db8::30")],
}


def fake_resolver(name: str) -> Sequence[Address]:
    return HOSTS.get(name, [])


def nowhere(address: Address) -> bool:
    return False


def config_text(nodes: str, totem: str = "") -> str:
    return f"totem {{\n  version: 2\n{totem}}}\nnodelist {{\n{nodes}}}\n"


def node(*lines: str) -> str:
    body = "".join(f"    {line}\n" for line in lines)
    return f"  node {{\n{body}  }}\n"


def load(
    nodes: str,
    totem: str = "",
    *,
    is_local: object = nowhere,
    override: int | None = None,
    require: bool = False,
) -> LoadedConfig:
    parsed = parse_config_text(config_text(nodes, totem), file="t.conf")
    return interpret_config(
        parsed,
        nodeid_override=override,
        require_local_node=require,
        resolver=fake_resolver,
        is_local=is_local,  # type: ignore[arg-type]
    )


def error_of(nodes: str, totem: str = "", **kwargs: object) -> str:
    with pytest.raises(ConfigError) as caught:
        load(nodes, totem, **kwargs)  # type: ignore[arg-type]
    return str(caught.value)


def nodelist_of(nodes: str, totem: str = "") -> Nodelist:
    return load(nodes, totem).nodelist


TWO = node("ring0_addr: 10.0.0.1", "nodeid: 1", "name: a", "quorum_votes: 2") + node(
    "ring0_addr: 10.0.0.2", "nodeid: 2"
)


# --- building nodes --------------------------------------------------------------------------


def test_nodes_with_their_fields() -> None:
    nodes = nodelist_of(TWO)
    first, second = nodes.nodes
    assert (first.index, first.nodeid, first.name, first.quorum_votes) == (0, 1, "a", 2)
    assert (second.index, second.nodeid, second.name, second.quorum_votes) == (1, 2, None, None)
    assert str(first.ring0.address) == "10.0.0.1"
    assert first.ring0.port == 5405
    assert nodes.by_nodeid(2) is second
    assert nodes.by_nodeid(3) is None
    assert len(nodes) == 2
    assert nodes.links == (0,)
    assert first.describe() == "nodeid 1 (a) at 10.0.0.1"
    assert second.describe() == "nodeid 2 at 10.0.0.2"


def test_port_is_ringx_port_or_the_link_port() -> None:
    nodes = node("ring0_addr: ::1", "nodeid: 1", "ring0_port: 6000") + node(
        "ring0_addr: ::1", "nodeid: 2"
    )
    totem = "  interface {\n    mcastport: 7000\n  }\n"
    first, second = nodelist_of(nodes, totem).nodes
    assert (first.ring0.port, second.ring0.port) == (6000, 7000)


def test_generated_nodeids_from_ipv4_are_written_back() -> None:
    nodes = node("ring0_addr: 10.0.0.1") + node("ring0_addr: 192.168.1.1", "nodeid: 5")
    loaded = load(nodes, "  transport: udpu\n")
    first, second = loaded.nodelist.nodes
    assert (first.nodeid, first.nodeid_generated) == (0x0A000001, True)
    assert (second.nodeid, second.nodeid_generated) == (5, False)
    assert ("nodelist.node.0.nodeid", 0x0A000001, ValueType.UINT32) in loaded.derived


def test_clear_node_high_bit() -> None:
    nodes = node("ring0_addr: 192.168.1.1")
    totem = "  transport: udp\n  cluster_name: c\n  clear_node_high_bit: yes\n"
    assert nodelist_of(nodes, totem).nodes[0].nodeid == 0xC0A80101 & 0x7FFFFFFF
    totem = "  transport: udpu\n"
    assert nodelist_of(nodes, totem).nodes[0].nodeid == 0xC0A80101


def test_generated_nodeid_zero_is_refused() -> None:
    nodes = node("ring0_addr: 128.0.0.0")
    totem = "  transport: udpu\n  clear_node_high_bit: yes\n"
    assert error_of(nodes, totem) == (
        "t.conf:8: Node ID 0 is reserved (it marks LEAVE messages); use 1..4294967295"
    )


def test_names_resolve_honouring_ip_version() -> None:
    nodes = node("ring0_addr: dual", "nodeid: 1")
    expected = {
        "ipv4": "192.0.2.10",
        "ipv6": "2001:db8::10",
        "ipv4-6": "192.0.2.10",
        "ipv6-4": "2001:db8::10",
    }
    for version, address in expected.items():
        got = nodelist_of(nodes, f"  ip_version: {version}\n").nodes[0].ring0
        assert (str(got.address), got.text) == (address, "dual")
    assert str(nodelist_of(nodes).nodes[0].ring0.address) == "2001:db8::10"  # knet: ipv6-4
    fallback = node("ring0_addr: v4only", "nodeid: 1")
    assert str(nodelist_of(fallback).nodes[0].ring0.address) == "192.0.2.20"


def test_resolve_takes_numeric_addresses_without_asking() -> None:
    def refuse(name: str) -> list[Address]:
        raise AssertionError(f"asked for {name}")

    assert str(resolve("10.1.2.3", IpVersion.IPV4, refuse)) == "10.1.2.3"
    assert resolve("fe80::1", IpVersion.IPV4, refuse) is None
    assert str(resolve("fe80::1%lo", IpVersion.IPV6, refuse)) == "fe80::1%lo"


@pytest.mark.parametrize(
    ("nodes", "totem", "expected"),
    [
        (
            node("ring0_addr: nosuchhost", "nodeid: 1"),
            "",
            "t.conf:6: failed to parse node address 'nosuchhost'",
        ),
        (
            node("ring0_addr: v6only", "nodeid: 1"),
            "  ip_version: ipv4\n",
            "t.conf:7: failed to parse node address 'v6only'",
        ),
        (
            node("ring0_addr: ::1", "nodeid: 1"),
            "  ip_version: ipv4\n",
            "t.conf:7: failed to parse node address '::1'",
        ),
        (
            node("ring0_addr: 239.1.1.1", "nodeid: 1"),
            "",
            "t.conf:6: Node address '239.1.1.1' is not a unicast host address",
        ),
        (
            node("ring0_addr: 0.0.0.0", "nodeid: 1"),
            "",
            "t.conf:6: Node address '0.0.0.0' is not a unicast host address",
        ),
        (
            node("ring0_addr: fd00::1"),
            "  transport: udpu\n",
            "t.conf:7: An IPV6 network requires that a node ID be specified for address 'fd00::1'.",
        ),
        (
            node("ring0_addr: 10.0.0.1"),
            "",
            "t.conf:6: Knet requires an explicit nodeid to be specified for address '10.0.0.1'.",
        ),
        (
            node("ring0_addr: 10.0.0.1", "nodeid: 65536"),
            "",
            "t.conf:7: Knet requires nodeid to be less than 65536 for address '10.0.0.1'.",
        ),
        (
            node("ring0_addr: 10.0.0.1", "nodeid: 0"),
            "  transport: udpu\n",
            "t.conf:8: Node ID 0 is reserved (it marks LEAVE messages); use 1..4294967295",
        ),
        (
            node("name: lonely", "nodeid: 1"),
            "",
            "t.conf:5: Node 0 of the nodelist has no ring0_addr",
        ),
        (
            node("ring0_addr: 10.0.0.1", "ring1_port: 7000", "nodeid: 1"),
            "",
            "t.conf:7: ring1_port is set but ring1_addr is not",
        ),
        (
            node("ring0_addr: ::1", "ring0_port: 0", "nodeid: 1"),
            "",
            "t.conf:7: ring0_port must be between 1 and 65535",
        ),
        (
            node("ring0_addr: 10.0.0.1", "ring8_addr: 10.8.0.1", "nodeid: 1"),
            "",
            "t.conf:7: interface ring number 8 is bigger than allowed maximum 7",
        ),
    ],
)
def test_node_errors(nodes: str, totem: str, expected: str) -> None:
    assert error_of(nodes, totem) == expected


def test_node_keys_written_with_dots_must_still_have_their_type() -> None:
    text = "totem {\n  version: 2\n}\nnodelist {\n  node.0.ring0_addr: 10.0.0.1\n"
    text += "  node.0.nodeid: x\n}\n"
    parsed = parse_config_text(text, file="t.conf")
    with pytest.raises(ConfigError) as caught:
        interpret_config(parsed, require_local_node=False, resolver=fake_resolver)
    assert str(caught.value) == (
        't.conf:6: Value of key "nodelist.node.0.nodeid" is expected to be an integer'
    )


def test_unique_nodeids() -> None:
    nodes = node("ring0_addr: 10.0.0.1", "nodeid: 1") + node("ring0_addr: 10.0.0.2", "nodeid: 1")
    assert error_of(nodes) == "t.conf:11: Nodeid 1 appears twice in corosync.conf"
    generated = node("ring0_addr: 10.0.0.9", "nodeid: 167772161") + node("ring0_addr: 10.0.0.1")
    assert error_of(generated, "  transport: udpu\n") == (
        "t.conf:11: Nodeid 167772161(autogenerated from 10.0.0.1) appears twice in corosync.conf"
    )


def test_unique_addresses_per_link_and_port() -> None:
    nodes = node("ring0_addr: 10.0.0.1", "nodeid: 1") + node("ring0_addr: 10.0.0.1", "nodeid: 2")
    assert error_of(nodes) == (
        "t.conf:10: Address 10.0.0.1 port 5405 of link 0 appears twice in corosync.conf"
    )
    by_port = node("ring0_addr: ::1", "nodeid: 1") + node(
        "ring0_addr: ::1", "ring0_port: 5406", "nodeid: 2"
    )
    assert len(nodelist_of(by_port)) == 2


def test_one_address_family_per_link() -> None:
    nodes = node("ring0_addr: 10.0.0.1", "nodeid: 1") + node("ring0_addr: fd00::2", "nodeid: 2")
    assert error_of(nodes) == (
        "t.conf:10: Nodes for link 0 have different IP families (compared fd00::2 with 10.0.0.1)"
    )


def test_multi_link_needs_names_and_the_same_links() -> None:
    nameless = node("ring0_addr: 10.0.0.1", "ring1_addr: 10.1.0.1", "nodeid: 1") + node(
        "ring0_addr: 10.0.0.2", "ring1_addr: 10.1.0.2", "nodeid: 2", "name: b"
    )
    assert error_of(nameless) == (
        "t.conf:5: for a multi-link configuration, all nodes must have a 'name' attribute"
    )
    uneven = node("ring0_addr: 10.0.0.1", "ring1_addr: 10.1.0.1", "nodeid: 1", "name: a") + node(
        "ring0_addr: 10.0.0.2", "nodeid: 2", "name: b"
    )
    assert error_of(uneven) == "t.conf:11: Not all nodes have the same number of links"
    interface_only = node("ring0_addr: 10.0.0.1", "nodeid: 1", "name: a")
    totem = "  interface {\n    linknumber: 1\n    knet_link_priority: 3\n  }\n"
    assert error_of(interface_only, totem) == (
        "t.conf:9: Not all nodes have the same number of links"
    )


def test_two_links() -> None:
    nodes = node("ring0_addr: 10.0.0.1", "ring1_addr: fd00::1", "nodeid: 1", "name: a") + node(
        "ring0_addr: 10.0.0.2", "ring1_addr: fd00::2", "nodeid: 2", "name: b"
    )
    nodelist = nodelist_of(nodes)
    assert nodelist.links == (0, 1)
    assert nodelist.link_families() == {0: 4, 1: 6}
    address = nodelist.nodes[1].address(1)
    assert address is not None
    assert (str(address.address), address.port) == ("fd00::2", 5406)
    assert nodelist.nodes[1].address(2) is None


def test_too_many_links_for_udpu() -> None:
    nodes = node("ring0_addr: 10.0.0.1", "ring1_addr: 10.1.0.1", "nodeid: 1", "name: a")
    assert error_of(nodes, "  transport: udpu\n") == (
        "t.conf:8: 2 is too many configured interfaces for non-Knet transport."
    )


def test_too_many_nodes() -> None:
    nodes = "".join(
        node(f"ring0_addr: 10.0.{i // 250}.{i % 250 + 1}", f"nodeid: {i + 1}") for i in range(385)
    )
    assert error_of(nodes).endswith("Too many nodes in the nodelist (385; at most 384)")


def test_empty_nodelist() -> None:
    totem = "  interface {\n    mcastport: 5405\n  }\n"
    assert error_of("", totem) == (
        "t.conf:7: The nodelist is empty: add a nodelist { node { ring0_addr: ...  nodeid: ... } } "
        "section with every node of the cluster"
    )


def test_build_nodelist_directly() -> None:
    parsed = parse_config_text(config_text(TWO))
    assert [n.nodeid for n in build_nodelist(parsed, resolver=fake_resolver)] == [1, 2]


# --- which node am I -------------------------------------------------------------------------

THREE = "".join(node(f"ring0_addr: 127.0.0.{i}", f"nodeid: {i}", f"name: n{i}") for i in (1, 2, 3))


def local_set(*addresses: str) -> object:
    chosen = {ipaddress.ip_address(a) for a in addresses}
    return lambda address: address in chosen


def test_the_node_whose_ring0_address_is_local() -> None:
    loaded = load(THREE, is_local=local_set("127.0.0.2"), require=True)
    assert loaded.local_node is not None
    assert loaded.local_node.nodeid == 2
    assert loaded.local.how == "address"
    assert ("nodelist.local_node_pos", 1, ValueType.UINT32) in loaded.runtime
    assert loaded.describe_local() == "This host is nodeid 2 (n2) at 127.0.0.2 (by address)."


def test_several_local_nodes_need_a_nodeid() -> None:
    expected = (
        "t.conf: This host has the ring0_addr of several nodes (nodeid 1 (n1) at 127.0.0.1, "
        "nodeid 3 (n3) at 127.0.0.3): set totem.nodeid in this node's corosync.conf, or start "
        "corosync-exec with -n NODEID"
    )
    is_local = local_set("127.0.0.1", "127.0.0.3")
    assert error_of(THREE, is_local=is_local, require=True) == expected
    loaded = load(THREE, is_local=is_local)
    assert loaded.local_node is None
    assert [n.nodeid for n in loaded.local.candidates] == [1, 3]
    assert loaded.describe_local() == expected.removeprefix("t.conf: ")
    assert all(item.key != "nodelist.local_node_pos" for item in loaded.runtime)


def test_no_local_node() -> None:
    expected = (
        "t.conf: This host has the ring0_addr of no node (nodeid 1 (n1) at 127.0.0.1, "
        "nodeid 2 (n2) at 127.0.0.2, nodeid 3 (n3) at 127.0.0.3): set totem.nodeid in this "
        "node's corosync.conf, or start corosync-exec with -n NODEID"
    )
    assert error_of(THREE, require=True) == expected
    loaded = load(THREE)  # not an error for corosync-exec -t
    assert loaded.local_node is None
    assert loaded.local.candidates == ()
    with pytest.raises(ConfigError):
        loaded.local.require()


def test_explicit_totem_nodeid_wins_over_addresses() -> None:
    loaded = load(THREE, "  nodeid: 3\n", is_local=local_set("127.0.0.1"), require=True)
    assert loaded.local_node is not None
    assert (loaded.local_node.nodeid, loaded.local.how) == (3, "totem.nodeid")


def test_a_node_chosen_by_nodeid_whose_address_is_elsewhere_is_warned_about() -> None:
    loaded = load(THREE, "  nodeid: 3\n", is_local=local_set("127.0.0.1"), require=True)
    assert loaded.warnings == (
        "This host is nodeid 3 (n3) at 127.0.0.3 (by totem.nodeid), but 127.0.0.3 is not "
        "assigned to any of its interfaces.",
    )
    assert load(THREE, override=1, is_local=local_set("127.0.0.1")).warnings == ()


def test_override_wins_over_totem_nodeid() -> None:
    loaded = load(THREE, "  nodeid: 3\n", override=1, require=True)
    assert loaded.local_node is not None
    assert (loaded.local_node.nodeid, loaded.local.how) == (1, "-n")


def test_explicit_nodeid_must_be_in_the_nodelist() -> None:
    assert error_of(THREE, "  nodeid: 9\n") == (
        "t.conf:3: Node ID 9 (from totem.nodeid) is not in the nodelist (nodeids: 1, 2, 3)"
    )
    assert error_of(THREE, override=9) == (
        "t.conf: Node ID 9 (from -n) is not in the nodelist (nodeids: 1, 2, 3)"
    )
    assert error_of(THREE, override=0) == (
        "t.conf: Node ID 0 is reserved (it marks LEAVE messages); use 1..4294967295"
    )


def test_only_ring0_addresses_are_checked() -> None:
    asked: list[Address] = []

    def record(address: Address) -> bool:
        asked.append(address)
        return False

    nodes = node("ring0_addr: 10.0.0.1", "ring1_addr: 10.1.0.1", "nodeid: 1", "name: a")
    nodelist = nodelist_of(nodes)
    assert identify_local_node(nodelist, is_local=record).node is None
    assert asked == [ipaddress.ip_address("10.0.0.1")]


# --- the defaults that ask the system --------------------------------------------------------


def test_default_local_address_check() -> None:
    assert is_local_address(ipaddress.ip_address("127.0.0.1"))
    assert is_local_address(ipaddress.ip_address("127.0.0.3"))  # all of 127/8 is local
    assert not is_local_address(ipaddress.ip_address("192.0.2.123"))  # TEST-NET-1


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _has_ipv6_loopback(), reason="this host has no IPv6 loopback")
def test_default_local_address_check_ipv6() -> None:
    assert is_local_address(ipaddress.ip_address("::1"))
    assert not is_local_address(ipaddress.ip_address("2001:db8::99"))


def test_system_resolver() -> None:
    assert ipaddress.ip_address("127.0.0.1") in system_resolver("localhost")
    assert system_resolver("no-such-host.invalid") == []
    assert system_resolver("a" * 300) == []
