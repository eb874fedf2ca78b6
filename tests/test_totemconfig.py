"""Totem values: defaults, Corosync 3.x formulas by node count, checks, crypto, links, runtime."""

from __future__ import annotations

import array
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pycorosync.exec.config import LoadedConfig, interpret_config
from pycorosync.exec.config_error import ConfigError
from pycorosync.exec.coroparse import parse_config_text
from pycorosync.exec.ipaddr import Address, IpVersion
from pycorosync.exec.totemconfig import (
    CryptoConfig,
    LinkMode,
    Transport,
    link_port,
    read_authkey,
)
from pycorosync.exec.totemkeys import runtime_keys
from pycorosync.lib.cmap_types import ValueType


def no_names(name: str) -> list[Address]:
    return []


def nowhere(address: Address) -> bool:
    return False


def nodes(count: int, *, extra: str = "") -> str:
    body = "".join(
        f"  node {{\n    ring0_addr: 10.0.0.{i}\n    nodeid: {i}\n{extra}  }}\n"
        for i in range(1, count + 1)
    )
    return f"nodelist {{\n{body}}}\n"


def load(totem_body: str = "", *, node_count: int = 2, nodelist: str | None = None) -> LoadedConfig:
    text = f"totem {{\n  version: 2\n{totem_body}}}\n" + (
        nodes(node_count) if nodelist is None else nodelist
    )
    parsed = parse_config_text(text, file="t.conf")
    return interpret_config(parsed, require_local_node=False, resolver=no_names, is_local=nowhere)


def error_of(totem_body: str = "", **kwargs: object) -> str:
    with pytest.raises(ConfigError) as caught:
        load(totem_body, **kwargs)  # type: ignore[arg-type]
    return str(caught.value)


# --- computed values -------------------------------------------------------------------------

# token, token_retransmit, hold, consensus, knet ping timeout and interval for n nodes with the
# defaults: token = 3000 + (n - 2) * 650 for n > 2; retransmit = int(token / 4.2);
# hold = int(retransmit * 0.8 - 10); consensus = int(1.2 * token); ping = token / 2, token / 4.
BY_NODE_COUNT = {
    1: (3000, 714, 561, 3600, 1500, 750),
    2: (3000, 714, 561, 3600, 1500, 750),
    3: (3650, 869, 685, 4380, 1825, 912),
    5: (4950, 1178, 932, 5940, 2475, 1237),
    16: (12100, 2880, 2294, 14520, 6050, 3025),
}


@pytest.mark.parametrize("count", sorted(BY_NODE_COUNT))
def test_timers_by_node_count(count: int) -> None:
    totem = load(node_count=count).totem
    interface = totem.interface(0)
    assert (
        totem.token_ms,
        totem.token_retransmit_ms,
        totem.hold_ms,
        totem.consensus_ms,
        interface.knet_ping_timeout_ms,
        interface.knet_ping_interval_ms,
    ) == BY_NODE_COUNT[count]
    assert totem.token_base_ms == 3000


@pytest.mark.parametrize(("transport", "netmtu"), [("knet", 65536), ("udpu", 1500)])
def test_netmtu_default_is_corosyncs_for_each_transport(transport: str, netmtu: int) -> None:
    # knet frames of up to 64 KiB go out as one datagram each, fragmented by the kernel
    assert load(f"  transport: {transport}\n").totem.netmtu == netmtu


def test_fixed_defaults() -> None:
    totem = load().totem
    assert (totem.version, totem.transport, totem.ip_version, totem.link_mode) == (
        2,
        Transport.KNET,
        IpVersion.IPV6_4,
        LinkMode.PASSIVE,
    )
    assert (totem.token_coefficient_ms, totem.token_warning_percent) == (650, 75)
    assert totem.token_retransmits_before_loss_const == 4
    assert (totem.join_ms, totem.send_join_ms, totem.merge_ms, totem.downcheck_ms) == (
        50,
        0,
        200,
        1000,
    )
    assert (totem.fail_recv_const, totem.seqno_unchanged_const, totem.miss_count_const) == (
        2500,
        30,
        5,
    )
    assert (totem.window_size, totem.max_messages, totem.max_network_delay_ms) == (50, 17, 50)
    assert (totem.heartbeat_failures_allowed, totem.netmtu, totem.ip_dscp) == (0, 65536, 0)
    assert (totem.knet_pmtud_interval_s, totem.knet_mtu) == (30, 0)
    assert (totem.knet_compression_model, totem.knet_compression_level) == ("none", 0)
    assert totem.block_unlisted_ips is True
    assert totem.cancel_token_hold_on_retransmit is False
    assert totem.token_warning_ms == 2250
    assert totem.nodeid is None


def test_configured_token_scales_with_the_coefficient() -> None:
    totem = load("  token: 5000\n  token_coefficient: 1000\n", node_count=5).totem
    assert (totem.token_base_ms, totem.token_ms) == (5000, 8000)
    assert totem.token_retransmit_ms == int(8000 / 4.2)


def test_token_coefficient_zero_disables_scaling() -> None:
    assert load("  token_coefficient: 0\n", node_count=16).totem.token_ms == 3000


def test_retransmits_const_changes_the_retransmit_timeout() -> None:
    totem = load("  token: 10000\n  token_retransmits_before_loss_const: 10\n").totem
    assert totem.token_retransmit_ms == int(10000 / 10.2)
    assert totem.hold_ms == int(totem.token_retransmit_ms * 0.8 - 10)


def test_explicit_derived_values_win() -> None:
    totem = load("  token_retransmit: 500\n  consensus: 9000\n", node_count=3).totem
    assert totem.token_retransmit_ms == 500
    assert totem.hold_ms == int(500 * 0.8 - 10)  # from the explicit retransmit
    assert totem.consensus_ms == 9000
    assert load("  hold: 100\n").totem.hold_ms == 100


def test_consensus_goes_through_a_c_float() -> None:
    # 1.2 * 3495254 = 4194304.8; as a C float that is 4194305.0.
    assert load("  token: 3495254\n", node_count=1).totem.consensus_ms == 4194305


def test_zero_means_default_except_where_zero_means_something() -> None:
    totem = load(
        "  token: 0\n  join: 0\n  window_size: 0\n  token_warning: 0\n  send_join: 0\n"
        "  heartbeat_failures_allowed: 0\n"
    ).totem
    assert (totem.token_ms, totem.join_ms, totem.window_size) == (3000, 50, 50)
    assert (totem.token_warning_percent, totem.token_warning_ms) == (0, 0)


def test_plain_values_are_taken() -> None:
    totem = load(
        "  window_size: 300\n  max_messages: 40\n  send_join: 80\n  netmtu: 9000\n"
        "  fail_recv_const: 100\n  seqno_unchanged_const: 7\n  miss_count_const: 9\n"
        "  merge: 300\n  downcheck: 2000\n  max_network_delay: 70\n  ip_dscp: ef\n"
        "  block_unlisted_ips: no\n  cancel_token_hold_on_retransmit: yes\n"
        "  knet_compression_model: zlib\n  knet_compression_level: -1\n  config_version: 12\n"
        "  cluster_name: alpha\n  clear_node_high_bit: yes\n"
    ).totem
    assert (totem.window_size, totem.max_messages, totem.send_join_ms, totem.netmtu) == (
        300,
        40,
        80,
        9000,
    )
    assert (totem.fail_recv_const, totem.seqno_unchanged_const, totem.miss_count_const) == (
        100,
        7,
        9,
    )
    assert (totem.merge_ms, totem.downcheck_ms, totem.max_network_delay_ms) == (300, 2000, 70)
    assert (totem.ip_dscp, totem.block_unlisted_ips, totem.cancel_token_hold_on_retransmit) == (
        46,
        False,
        True,
    )
    assert (totem.knet_compression_model, totem.knet_compression_level) == ("zlib", -1)
    assert (totem.config_version, totem.cluster_name, totem.clear_node_high_bit) == (
        12,
        "alpha",
        True,
    )


def test_yes_no_switches_keep_the_default_for_other_words() -> None:
    totem = load("  block_unlisted_ips: off\n  cancel_token_hold_on_retransmit: on\n").totem
    assert totem.block_unlisted_ips is True
    assert totem.cancel_token_hold_on_retransmit is False


def test_udp_defaults_to_ipv4() -> None:
    totem = load("  transport: udp\n  cluster_name: c\n").totem
    assert totem.ip_version is IpVersion.IPV4


# --- checks, with Corosync's texts -----------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            "  max_network_delay: 10\n",
            "t.conf:3: The max_network_delay parameter (10 ms) may not be less than (30 ms).",
        ),
        (
            "  token: 20\n",
            "t.conf:3: The token timeout parameter (20 ms) may not be less than (30 ms).",
        ),
        (
            "  token_warning: 101\n",
            "t.conf:3: The token warning parameter (101%) must be between 0 (disabled) and 100.",
        ),
        (
            "  token_retransmit: 20\n",
            "t.conf:3: The token retransmit timeout parameter (20 ms) may not be less than "
            "(30 ms).",
        ),
        (
            "  token: 3000\n  token_retransmits_before_loss_const: 200\n",
            "t.conf:4: Not appropriate token or token_retransmits_before_loss_const value set",
        ),
        (
            "  hold: 10\n",
            "t.conf:3: The token hold timeout parameter (10 ms) may not be less than (14 ms).",
        ),
        (
            "  join: 20\n",
            "t.conf:3: The join timeout parameter (20 ms) may not be less than (30 ms).",
        ),
        (
            "  consensus: 20\n",
            "t.conf:3: The consensus timeout parameter (20 ms) may not be less than (30 ms).",
        ),
        (
            "  join: 100\n  consensus: 60\n",
            "t.conf:4: The consensus timeout parameter (60 ms) may not be less than join timeout "
            "(100 ms).",
        ),
        (
            "  merge: 29\n",
            "t.conf:3: The merge timeout parameter (29 ms) may not be less than (30 ms).",
        ),
        (
            "  downcheck: 1\n",
            "t.conf:3: The downcheck timeout parameter (1 ms) may not be less than (30 ms).",
        ),
        ("  transport: tcp\n", "t.conf:3: Invalid transport type. Should be udpu, udp or knet"),
        (
            "  link_mode: fast\n",
            't.conf:3: The Knet link mode "fast" specified is invalid.  It must be active, '
            "passive or rr.",
        ),
        ("  link_mode: " + "p" * 64 + "\n", "t.conf:3: totem.link_mode is too long"),
        ("  netmtu: 100\n", "t.conf:3: The netmtu parameter (100) must be between 576 and 65536."),
        (
            "  netmtu: 65537\n",
            "t.conf:3: The netmtu parameter (65537) must be between 576 and 65536.",
        ),
        (
            "  crypto_cipher: aes128\n  crypto_hash: none\n",
            "t.conf:4: crypto_cipher requires crypto_hash with value other than none",
        ),
        (
            "  secauth: off\n  crypto_cipher: aes256\n",
            "t.conf:4: crypto_cipher requires crypto_hash with value other than none",
        ),
        (
            "  nodeid: 0\n",
            "t.conf:3: Node ID 0 is reserved (it marks LEAVE messages); use 1..4294967295",
        ),
        ("  key: short\n", "t.conf:3: key is too short"),
    ],
)
def test_totem_errors(body: str, expected: str) -> None:
    assert error_of(body) == expected


def test_a_derived_value_that_fails_blames_the_token() -> None:
    # token 30 gives retransmit 7: Corosync's "not appropriate" text, placed at the token.
    assert error_of("  token: 30\n") == (
        "t.conf:3: Not appropriate token or token_retransmits_before_loss_const value set"
    )


def test_a_token_beyond_32_bits_is_refused() -> None:
    assert error_of("  token: 4000000000\n", node_count=2) == (
        "t.conf:3: The token timeout parameter (4000000000 ms) may not be more than "
        "(3579139412 ms)."
    )


def test_an_effective_token_beyond_32_bits_is_refused() -> None:
    assert error_of("  token_coefficient: 4000000000\n", node_count=3) == (
        "t.conf:3: The token timeout parameter (4000003000 ms, with 3 nodes) may not be more "
        "than (3579139412 ms)."
    )


def test_version_must_be_2() -> None:
    text = "totem {\n  cluster_name: x\n}\n" + nodes(1)
    with pytest.raises(ConfigError) as caught:
        interpret_config(parse_config_text(text, file="t.conf"), require_local_node=False)
    # No version key: the error points at the totem section.
    assert str(caught.value) == (
        "t.conf:1: This totem parser can only parse version 2 configurations."
    )
    text = "totem {\n  version: 3\n}\n" + nodes(1)
    with pytest.raises(ConfigError) as caught:
        interpret_config(parse_config_text(text, file="t.conf"), require_local_node=False)
    assert str(caught.value) == (
        "t.conf:2: This totem parser can only parse version 2 configurations."
    )


# --- links -----------------------------------------------------------------------------------


def test_no_nodelist_and_no_interface() -> None:
    assert error_of(nodelist="") == "t.conf: No interfaces defined"


def test_links_come_from_interfaces_and_the_nodelist() -> None:
    nodelist = (
        "nodelist {\n"
        "  node {\n    name: a\n    nodeid: 1\n"
        "    ring0_addr: 10.0.0.1\n    ring1_addr: 10.1.0.1\n  }\n"
        "  node {\n    name: b\n    nodeid: 2\n"
        "    ring0_addr: 10.0.0.2\n    ring1_addr: 10.1.0.2\n  }\n"
        "}\n"
    )
    body = "  interface {\n    linknumber: 1\n    knet_link_priority: 9\n    mcastport: 7000\n  }\n"
    loaded = load(body, nodelist=nodelist)
    assert loaded.totem.links == (0, 1)
    assert loaded.totem.unused_links == (1,)
    assert loaded.totem.interface(1).knet_link_priority == 9
    assert loaded.totem.interface(1).mcastport == 7000
    assert loaded.totem.interface(0).mcastport == 5405
    assert loaded.totem.interface(0).knet_link_priority == 1
    assert "Link 1 is configured but not used yet: only link 0 carries traffic." in (
        loaded.warnings
    )
    with pytest.raises(KeyError):
        loaded.totem.interface(2)


def test_default_port_per_link() -> None:
    parsed = parse_config_text("totem {\n  interface {\n    linknumber: 2\n    ttl: 1\n  }\n}\n")
    assert [link_port(parsed, link) for link in (0, 1, 2, 7)] == [5405, 5406, 5407, 5412]
    broadcast = parse_config_text("totem {\n  interface {\n    broadcast: yes\n  }\n}\n")
    assert [link_port(broadcast, link) for link in (0, 1, 2)] == [5405, 5407, 5409]
    explicit = parse_config_text("totem {\n  interface {\n    mcastport: 9\n  }\n}\n")
    assert link_port(explicit, 0) == 9


def test_an_interface_section_with_only_a_linknumber_configures_nothing() -> None:
    # As in Corosync: linknumber itself is not stored, so link 3 has no key at all.
    assert load("  interface {\n    linknumber: 3\n  }\n").totem.links == (0,)


def test_interface_knet_values() -> None:
    body = (
        "  token: 4000\n  interface {\n    knet_pong_count: 4\n    knet_ping_precision: 100\n"
        "    knet_transport: sctp\n  }\n"
    )
    loaded = load(body)
    interface = loaded.totem.interface(0)
    assert (interface.knet_pong_count, interface.knet_ping_precision) == (4, 100)
    assert (interface.knet_ping_timeout_ms, interface.knet_ping_interval_ms) == (1000, 500)
    assert interface.knet_transport == "sctp"
    assert "knet_transport sctp on link 0 runs as udp." in loaded.warnings
    explicit = load("  interface {\n    knet_ping_timeout: 900\n    knet_ping_interval: 300\n  }\n")
    assert explicit.totem.interface(0).knet_ping_timeout_ms == 900
    assert explicit.totem.interface(0).knet_ping_interval_ms == 300


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            "  transport: udpu\n  interface {\n    linknumber: 1\n    mcastport: 6000\n  }\n",
            "t.conf:4: 2 is too many configured interfaces for non-Knet transport.",
        ),
        (
            "  transport: udpu\n  interface {\n    ttl: 2\n  }\n",
            "t.conf:5: Can only set ttl on multicast transport types for interface 0",
        ),
        (
            "  interface {\n    ttl: 2\n  }\n",
            "t.conf:4: Can only set ttl on multicast transport types for interface 0",
        ),
        (
            "  transport: udpu\n  interface {\n    knet_link_priority: 2\n  }\n",
            "t.conf:5: Can only set link priority on knet transport type for interface 0",
        ),
        (
            "  interface {\n    linknumber: 8\n    mcastport: 6000\n  }\n",
            "t.conf:3: interface ring number 8 is bigger than allowed maximum 7",
        ),
        (
            "  interface {\n    mcastport: 0\n  }\n",
            "t.conf:4: No multicast port specified for interface 0",
        ),
        (
            "  interface {\n    knet_transport: tcp\n  }\n",
            "t.conf:4: Unrecognised knet_transport. expected 'udp' or 'sctp'",
        ),
        (
            "  interface {\n    mcastaddr: not-an-address\n  }\n",
            "t.conf:4: failed to parse mcast address 'not-an-address'",
        ),
    ],
)
def test_interface_errors(body: str, expected: str) -> None:
    assert error_of(body) == expected


def test_ttl_is_allowed_on_udp_and_a_ttl_of_1_anywhere() -> None:
    assert load("  transport: udp\n  cluster_name: c\n  interface {\n    ttl: 5\n  }\n").totem
    assert load("  interface {\n    ttl: 1\n  }\n").totem.interface(0).ttl == 1


# --- udp multicast ---------------------------------------------------------------------------


def test_udp_multicast_address_from_the_cluster_name() -> None:
    # fold("demo") = ((100 * 2 + 101) * 2 + 109) * 2 + 111 = 1533 = 0x5fd
    # -> 239.192.(1533 >> 8).(1533 % 255) = 239.192.5.3
    loaded = load("  transport: udp\n  cluster_name: demo\n")
    assert str(loaded.totem.interface(0).mcastaddr) == "239.192.5.3"
    assert ("totem.interface.0.mcastaddr", "239.192.5.3", ValueType.STRING) in loaded.derived
    assert ("totem.interface.0.mcastport", 5405, ValueType.UINT16) in loaded.derived


def test_udp_ipv6_multicast_address_from_the_cluster_name() -> None:
    nodelist = "nodelist {\n  node {\n    ring0_addr: fd00::1\n    nodeid: 1\n  }\n}\n"
    loaded = load("  transport: udp\n  ip_version: ipv6\n  cluster_name: demo\n", nodelist=nodelist)
    assert str(loaded.totem.interface(0).mcastaddr) == "ff15::5fd"


def test_udp_explicit_multicast_address_is_not_written_back() -> None:
    body = "  transport: udp\n  interface {\n    mcastaddr: 239.1.2.3\n    mcastport: 6000\n  }\n"
    loaded = load(body)
    assert str(loaded.totem.interface(0).mcastaddr) == "239.1.2.3"
    assert loaded.derived == ()


def test_udp_broadcast() -> None:
    body = "  transport: udp\n  interface {\n    broadcast: yes\n  }\n"
    interface = load(body).totem.interface(0)
    assert (str(interface.mcastaddr), interface.broadcast, interface.mcastport) == (
        "255.255.255.255",
        True,
        5405,
    )


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("  transport: udp\n", "t.conf:1: No multicast address specified for interface 0"),
        (
            "  transport: udp\n  interface {\n    mcastaddr: 10.1.1.1\n  }\n",
            "t.conf:5: mcastaddr is not a correct multicast address for interface 0",
        ),
        (
            "  transport: udp\n  interface {\n    mcastaddr: ff15::1\n  }\n",
            "t.conf:5: Multicast address family does not match bind address family for interface 0",
        ),
    ],
)
def test_udp_errors(body: str, expected: str) -> None:
    assert error_of(body) == expected


# --- crypto ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "cipher", "hash_"),
    [
        ("", "aes256", "sha256"),
        ("  secauth: on\n", "aes256", "sha256"),
        ("  secauth: off\n", "none", "none"),
        ("  crypto_cipher: none\n  crypto_hash: none\n", "none", "none"),
        ("  crypto_cipher: none\n", "none", "sha256"),
        ("  crypto_cipher: aes128\n  crypto_hash: sha1\n", "aes128", "sha1"),
        ("  secauth: off\n  crypto_hash: sha512\n", "none", "sha512"),
        ("  secauth: on\n  crypto_cipher: aes192\n", "aes192", "sha256"),
    ],
)
def test_crypto_settings(body: str, cipher: str, hash_: str) -> None:
    crypto = load(body).totem.crypto
    assert (crypto.cipher, crypto.hash) == (cipher, hash_)
    assert crypto.enabled is ((cipher, hash_) != ("none", "none"))
    assert crypto.keyfile == "/etc/corosync/authkey"
    assert crypto.model == "nss"


@pytest.mark.parametrize("value", ["yes", "true", "1", "On", "enabled", ""])
def test_secauth_is_on_or_off(value: str) -> None:
    # Corosync reads every value but "on" as off. With encryption on by default, a typo such
    # as "secauth: yes" would switch it off without a word, so anything else is refused.
    assert error_of(f"  secauth: {value}\n") == (
        "t.conf:3: Invalid secauth value. Should be on or off"
    )


def test_crypto_is_allowed_on_udpu() -> None:
    crypto = load("  transport: udpu\n  crypto_cipher: aes256\n  crypto_hash: sha256\n").totem
    assert crypto.crypto.cipher_key_bits == 256


def test_keyfile_and_inline_key() -> None:
    assert load("  keyfile: /etc/k\n").totem.crypto.keyfile == "/etc/k"
    key = "k" * 200
    assert load(f"  key: {key}\n").totem.crypto.key == key.encode()
    both = load(f"  keyfile: /etc/k\n  key: {key}\n").totem.crypto
    assert (both.keyfile, both.key) == ("/etc/k", None)
    # Without crypto, a short key does not matter.
    assert load("  secauth: off\n  key: short\n").totem.crypto.key == b"short"


def _crypto(keyfile: Path, *, key: bytes | None = None, cipher: str = "aes256") -> CryptoConfig:
    return CryptoConfig(cipher=cipher, hash="sha256", model="nss", keyfile=str(keyfile), key=key)


def test_read_authkey(tmp_path: Path) -> None:
    keyfile = tmp_path / "authkey"
    keyfile.write_bytes(bytes(range(256)) * 20)
    assert read_authkey(_crypto(keyfile)) == (bytes(range(256)) * 20)[:4096]
    assert read_authkey(_crypto(keyfile, key=b"x" * 128)) == b"x" * 128
    off = CryptoConfig(cipher="none", hash="none", model="nss", keyfile="/x", key=None)
    assert read_authkey(off) is None


def test_read_authkey_errors(tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    with pytest.raises(ConfigError) as caught:
        read_authkey(_crypto(missing))
    assert caught.value.reason == f"Could not open {missing}: No such file or directory"
    assert caught.value.key == "totem.keyfile"
    short = tmp_path / "short"
    short.write_bytes(b"k" * 100)
    with pytest.raises(ConfigError) as caught:
        read_authkey(_crypto(short))
    assert caught.value.reason == f"Could only read 800 bits of minimum 1024 bits from {short}."


# --- runtime keys ----------------------------------------------------------------------------


def test_runtime_keys_for_knet() -> None:
    items = {item.key: (item.value, item.vtype) for item in runtime_keys(load(node_count=3).totem)}
    prefix = "runtime.config.totem."
    assert items[prefix + "token"] == (3650, ValueType.UINT32)
    assert items[prefix + "consensus"] == (4380, ValueType.UINT32)
    assert items[prefix + "token_retransmit"] == (869, ValueType.UINT32)
    assert items[prefix + "hold"] == (685, ValueType.UINT32)
    assert items[prefix + "knet_compression_level"] == (0, ValueType.INT32)
    assert items[prefix + "knet_compression_model"] == ("none", ValueType.STRING)
    assert items[prefix + "block_unlisted_ips"] == (1, ValueType.UINT32)
    assert items[prefix + "interface.0.knet_ping_timeout"] == (1825, ValueType.UINT32)
    assert items[prefix + "interface.0.knet_ping_interval"] == (912, ValueType.UINT32)
    assert items[prefix + "interface.0.mcastport"] == (5405, ValueType.UINT16)
    assert len(items) == 27


def test_runtime_keys_for_udpu_have_no_mcastport() -> None:
    items = {item.key for item in runtime_keys(load("  transport: udpu\n").totem)}
    assert "runtime.config.totem.interface.0.mcastport" not in items
    assert "runtime.config.totem.interface.0.knet_ping_timeout" in items
    assert len(items) == 26


# The formulas, written out independently of the module: Corosync 3.x's totem_volatile_config_read.
def _expected_timers(token: int, coefficient: int, retransmits: int, nodes: int) -> tuple[int, ...]:
    effective = token + (nodes - 2) * coefficient if nodes > 2 else token
    retransmit = int(effective / (retransmits + 0.2))
    hold = int(retransmit * 0.8 - 10)
    consensus = int(_as_c_float(1.2 * effective))
    return effective, retransmit, hold, consensus


def _as_c_float(value: float) -> float:
    return array.array("f", [value])[0]


@settings(max_examples=150)
@given(
    token=st.integers(1000, 100_000),
    coefficient=st.integers(0, 5000),
    retransmits=st.integers(1, 20),
    nodes=st.sampled_from([1, 2, 3, 4, 5, 8, 16, 32]),
)
def test_timers_follow_the_formulas(
    token: int, coefficient: int, retransmits: int, nodes: int
) -> None:
    body = (
        f"  token: {token}\n  token_coefficient: {coefficient}\n"
        f"  token_retransmits_before_loss_const: {retransmits}\n"
    )
    totem = load(body, node_count=nodes).totem
    got = (totem.token_ms, totem.token_retransmit_ms, totem.hold_ms, totem.consensus_ms)
    assert got == _expected_timers(token, coefficient, retransmits, nodes)
