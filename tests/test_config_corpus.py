"""Real-world configurations (pcs, crmsh, Proxmox, udp multicast...) and the broken ones.

Every file in ``tests/data/configs/good`` must load; every file in ``tests/data/configs/bad``
must be refused with the ``# expect: LINE: reason`` its first line announces (an empty LINE
means the error names the file only). The examples shipped in ``conf/`` must load too.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from pycorosync.exec.config import LoadedConfig, load_config
from pycorosync.exec.config_error import ConfigError
from pycorosync.exec.ipaddr import Address
from pycorosync.exec.totemconfig import LinkMode, Transport
from pycorosync.lib.cmap_types import CmapValue, ValueType

ROOT = Path(__file__).resolve().parent.parent
CORPUS = Path(__file__).resolve().parent / "data" / "configs"
GOOD = sorted((CORPUS / "good").glob("*.conf"))
BAD = sorted((CORPUS / "bad").glob("*.conf"))
EXAMPLES = sorted((ROOT / "conf").glob("corosync.conf*"))

TEST_HOSTS = {
    "node-a.example.test": "192.0.2.1",
    "node-b.example.test": "192.0.2.2",
}


def corpus_resolver(name: str) -> list[Address]:
    return [ipaddress.ip_address(TEST_HOSTS[name])] if name in TEST_HOSTS else []


def nowhere(address: Address) -> bool:
    return False


def load(path: Path) -> LoadedConfig:
    return load_config(
        path,
        require_local_node=False,
        resolver=corpus_resolver,
        is_local=nowhere,
        read_uidgid_d=False,
    )


def good(name: str) -> LoadedConfig:
    return load(CORPUS / "good" / name)


def test_the_corpus_is_there() -> None:
    assert len(GOOD) >= 10
    assert len(BAD) >= 25
    assert len(EXAMPLES) == 5


@pytest.mark.parametrize("path", GOOD, ids=lambda p: p.name)
def test_good_configs_load(path: Path) -> None:
    loaded = load(path)
    assert loaded.nodelist.nodes
    assert loaded.totem.version == 2


@pytest.mark.parametrize("path", BAD, ids=lambda p: p.name)
def test_bad_configs_are_refused_at_the_right_line(path: Path) -> None:
    header = path.read_text().splitlines()[0]
    assert header.startswith("# expect: ")
    line, reason = header.removeprefix("# expect: ").split(": ", 1)
    expected = f"{path}:{line}: {reason}" if line else f"{path}: {reason}"
    with pytest.raises(ConfigError) as caught:
        load(path)
    assert str(caught.value) == expected


# --- what the realistic files mean -----------------------------------------------------------


def test_pcs_two_node() -> None:
    loaded = good("pcs-knet-two-node.conf")
    assert loaded.parsed.get("totem.cluster_uuid") == "5e0d5cf3bd0c4e8a9f7a0e6c5d1b2a31"
    assert loaded.parsed.get("quorum.two_node") == 1
    assert loaded.totem.transport is Transport.KNET
    assert loaded.totem.links == (0, 1)
    assert loaded.totem.token_ms == 3000
    assert [node.name for node in loaded.nodelist] == ["rh9-node1", "rh9-node2"]
    assert "Link 1 is configured but not used yet: only link 0 carries traffic." in (
        loaded.warnings
    )


def test_pcs_three_links() -> None:
    loaded = good("pcs-knet-three-links.conf")
    totem = loaded.totem
    assert totem.link_mode is LinkMode.ACTIVE
    assert totem.token_ms == 10650  # 10000 + 650 for the third node
    assert totem.unused_links == (1, 2)
    assert totem.interface(0).knet_ping_timeout_ms == 4000
    assert totem.interface(0).knet_pong_count == 3
    assert totem.interface(1).knet_ping_timeout_ms == 10650 // 2
    assert totem.interface(2).mcastport == 5420
    assert loaded.nodelist.link_families() == {0: 4, 1: 4, 2: 6}
    assert totem.crypto.hash == "sha512"


def test_crmsh() -> None:
    loaded = good("crmsh-sle15.conf")
    assert loaded.parsed.get("totem.interface.ringnumber") == "0"
    assert loaded.parsed.get("logging.logger_subsys.QUORUM.debug") == "off"
    totem = loaded.totem
    assert (totem.token_ms, totem.join_ms, totem.max_messages) == (5000, 60, 20)
    assert totem.token_retransmit_ms == int(5000 / 10.2)
    assert (totem.crypto.cipher, totem.crypto.hash) == ("aes256", "sha1")
    assert totem.clear_node_high_bit is True


def test_proxmox() -> None:
    loaded = good("proxmox-pve.conf")
    totem = loaded.totem
    assert (totem.config_version, totem.link_mode, totem.ip_version) == (7, "passive", "ipv4-6")
    assert (totem.crypto.cipher, totem.crypto.hash) == ("aes256", "sha256")  # secauth: on
    assert totem.interface(0).knet_link_priority == 10
    assert totem.interface(1).knet_link_priority == 20
    assert [node.quorum_votes for node in loaded.nodelist] == [1, 1, 1]
    third = loaded.nodelist.nodes[2]
    address = third.address(1)
    assert address is not None
    assert str(address.address) == "10.20.20.3"
    assert totem.token_ms == 3650


def test_udp_multicast_with_generated_nodeids() -> None:
    loaded = good("udp-multicast.conf")
    assert loaded.totem.transport is Transport.UDP
    assert str(loaded.totem.interface(0).mcastaddr) == "239.255.1.1"
    assert [node.nodeid for node in loaded.nodelist] == [0xC0A8010A, 0xC0A8010B, 0xC0A8010C]
    assert loaded.totem.crypto.enabled is False
    assert (
        "interface section bindnetaddr is used together with nodelist. "
        "Nodelist one is going to be used."
    ) in loaded.warnings
    assert ("nodelist.node.2.nodeid", 0xC0A8010C, ValueType.UINT32) in loaded.derived


def test_udp_derived_multicast_address() -> None:
    loaded = good("udp-derived-mcast.conf")
    mcast = loaded.totem.interface(0).mcastaddr
    assert mcast is not None
    assert mcast.is_multicast
    assert str(mcast).startswith("239.192.")


def test_qdevice_names_are_resolved() -> None:
    loaded = good("qdevice-ffsplit.conf")
    assert [str(node.ring0.address) for node in loaded.nodelist] == ["192.0.2.1", "192.0.2.2"]
    assert loaded.parsed.get("quorum.device.net.algorithm") == "ffsplit"
    assert loaded.parsed.get("quorum.device.timeout") == 10000


def test_everything() -> None:
    loaded = good("everything.conf")
    totem = loaded.totem
    assert (totem.token_ms, totem.consensus_ms, totem.join_ms) == (4500, 6000, 80)
    assert (totem.ip_dscp, totem.netmtu, totem.config_version) == (34, 1400, 2**64 - 1)
    assert totem.crypto.keyfile == "/etc/corosync/authkey.kitchen"
    assert totem.crypto.model == "openssl"
    assert loaded.parsed.get("uidgid.config.uid.1000") == 1
    assert loaded.parsed.get("resources.system.memory_used.poll_period") == 30000
    assert loaded.parsed.get("logging.logger_subsys.TOTEM.debug") == "trace"
    assert loaded.parsed.get("nozzle.macaddr") == "54:54:54:00:00:00"
    assert loaded.parsed.get("system.priority") == "max"


def test_windows_line_endings() -> None:
    assert good("windows-line-endings.conf").totem.cluster_name == "crlf"


class DictSink:
    def __init__(self) -> None:
        self.data: dict[str, tuple[CmapValue, ValueType]] = {}

    def set(self, key: str, value: CmapValue, vtype: ValueType) -> None:
        self.data[key] = (value, vtype)


def test_load_into_writes_file_derived_and_runtime_keys() -> None:
    loaded = good("udp-multicast.conf")
    sink = DictSink()
    loaded.load_into(sink)
    assert sink.data["totem.cluster_name"] == ("legacy", ValueType.STRING)
    assert sink.data["nodelist.node.0.nodeid"] == (0xC0A8010A, ValueType.UINT32)
    assert sink.data["runtime.config.totem.token"] == (3650, ValueType.UINT32)
    assert len(sink.data) == len(list(loaded.items()))


# --- the shipped examples --------------------------------------------------------------------


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_shipped_examples_load(path: Path) -> None:
    loaded = load_config(path, require_local_node=False, read_uidgid_d=False)
    assert loaded.totem.version == 2


def test_single_node_example_works_out_of_the_box() -> None:
    loaded = load_config(ROOT / "conf" / "corosync.conf.single", read_uidgid_d=False)
    assert loaded.local_node is not None
    assert (loaded.local_node.nodeid, loaded.local.how) == (1, "address")
    assert loaded.totem.crypto.enabled is False


@pytest.mark.parametrize("nodeid", [1, 2, 3])
def test_three_node_example_with_a_nodeid_each(nodeid: int) -> None:
    path = ROOT / "conf" / "corosync.conf.example"
    loaded = load_config(path, nodeid_override=nodeid, read_uidgid_d=False)
    assert loaded.local_node is not None
    assert str(loaded.local_node.ring0.address) == f"127.0.0.{nodeid}"
    assert loaded.totem.transport is Transport.UDPU


def test_ipv6_example_nodes_share_an_address() -> None:
    path = ROOT / "conf" / "corosync.conf.example.ipv6"
    loaded = load_config(path, nodeid_override=2, require_local_node=False, read_uidgid_d=False)
    assert loaded.local_node is not None
    assert (str(loaded.local_node.ring0.address), loaded.local_node.ring0.port) == ("::1", 5415)


def test_examples_are_secure_except_the_single_node_one() -> None:
    for path in EXAMPLES:
        loaded = load_config(path, require_local_node=False, read_uidgid_d=False)
        assert loaded.totem.crypto.enabled is (path.name != "corosync.conf.single"), path.name
