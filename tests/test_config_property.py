"""Any input gives a result or a ConfigError -- never another exception, never a crash."""

from __future__ import annotations

import ipaddress

from hypothesis import given, settings
from hypothesis import strategies as st

from pycorosync.exec.config import LoadedConfig, interpret_config
from pycorosync.exec.config_error import ConfigError
from pycorosync.exec.coroparse import ParsedConfig, parse_config_text
from pycorosync.exec.ipaddr import Address

SECTIONS = [
    "totem",
    "interface",
    "member",
    "nodelist",
    "node",
    "logging",
    "logger_subsys",
    "logging_daemon",
    "uidgid",
    "quorum",
    "device",
    "net",
    "system",
    "resources",
    "process",
    "memory_used",
    "pload",
    "nozzle",
    "x",
]
KEYS = [
    "version",
    "token",
    "token_coefficient",
    "token_retransmit",
    "hold",
    "consensus",
    "join",
    "merge",
    "downcheck",
    "token_warning",
    "token_retransmits_before_loss_const",
    "max_network_delay",
    "netmtu",
    "transport",
    "ip_version",
    "ip_dscp",
    "link_mode",
    "crypto_cipher",
    "crypto_hash",
    "secauth",
    "key",
    "cluster_name",
    "config_version",
    "clear_node_high_bit",
    "knet_compression_level",
    "nodeid",
    "linknumber",
    "mcastport",
    "mcastaddr",
    "broadcast",
    "ttl",
    "knet_link_priority",
    "knet_pong_count",
    "knet_transport",
    "memberaddr",
    "ring0_addr",
    "ring1_addr",
    "ring9_addr",
    "ring0_port",
    "name",
    "quorum_votes",
    "subsys",
    "uid",
    "gid",
    "two_node",
    "poll_period",
    "watchdog_timeout",
    "sched_rr",
    "count",
    "node.0.nodeid",
    "node.1.ring0_addr",
    "node.0.quorum_votes",
    "node.0.ring0_port",
    "interface.0.mcastport",
    "interface.1.knet_link_priority",
    "totem.token",
    "totem.transport",
    "nodelist.node.0.ring1_addr",
]
VALUES = [
    "0",
    "1",
    "2",
    "3",
    "20",
    "100",
    "3000",
    "65535",
    "65536",
    "4294967295",
    "4294967296",
    "-1",
    "0x10",
    "yes",
    "no",
    "on",
    "off",
    "udp",
    "udpu",
    "knet",
    "ipv4",
    "ipv6",
    "ipv6-4",
    "aes256",
    "sha256",
    "none",
    "passive",
    "rr",
    "10.0.0.1",
    "10.0.0.2",
    "127.0.0.1",
    "::1",
    "fd00::1",
    "239.1.1.1",
    "0.0.0.0",
    "name.example",
    "root",
    "ef",
    "",
]


def fake_resolver(name: str) -> list[Address]:
    return [ipaddress.ip_address("192.0.2.7")] if name.endswith(".example") else []


def local_when_loopback(address: Address) -> bool:
    return address.is_loopback


def _line(kind: str, section: str, key: str, value: str, junk: str) -> str:
    return {
        "open": f"{section} {{",
        "close": "}",
        "item": f"{key}: {value}",
        "comment": f"# {junk}",
        "blank": "",
        "junk": junk,
    }[kind]


lines = st.builds(
    _line,
    st.sampled_from(
        ["open", "open", "close", "close", "item", "item", "item", "comment", "blank", "junk"]
    ),
    st.sampled_from(SECTIONS),
    st.sampled_from(KEYS),
    st.one_of(st.sampled_from(VALUES), st.text(max_size=20)),
    st.text(max_size=30),
)
documents = st.lists(lines, max_size=60).map("\n".join)

items = st.lists(
    st.builds("{}: {}".format, st.sampled_from(KEYS), st.sampled_from(VALUES)), max_size=6
)


def _section(name: str, body: list[str]) -> str:
    return f"{name} {{\n" + "".join(line + "\n" for line in body) + "}\n"


def _well_formed(totem: list[str], interfaces: list[list[str]], nodes: list[list[str]]) -> str:
    totem_body = totem + [_section("interface", body).rstrip("\n") for body in interfaces]
    nodelist = _section("nodelist", [_section("node", body).rstrip("\n") for body in nodes])
    return _section("totem", totem_body) + nodelist


# Balanced sections with plausible keys: these get past the grammar and exercise the totem,
# nodelist and local-node rules.
well_formed = st.builds(
    _well_formed,
    items.map(lambda body: ["version: 2", *body]),
    st.lists(items, max_size=2),
    st.lists(
        st.builds(
            lambda index, extra: [f"ring0_addr: 10.0.0.{index}", f"nodeid: {index}", *extra],
            st.integers(1, 5),
            items,
        ),
        max_size=4,
    ),
)


def _parse(data: str | bytes) -> ParsedConfig | None:
    try:
        return parse_config_text(data, file="p.conf")
    except ConfigError as error:
        failure = error
    assert failure.file == "p.conf"
    assert failure.line is not None
    return None


@settings(max_examples=300)
@given(st.binary(max_size=600))
def test_any_bytes_parse_or_fail_cleanly(data: bytes) -> None:
    _parse(data)


@settings(max_examples=400)
@given(documents)
def test_grammar_shaped_text_parses_or_fails_cleanly(text: str) -> None:
    parsed = _parse(text)
    if parsed is not None:
        for entry in parsed:
            assert 3 <= len(entry.key) <= 255
            assert entry.line is not None


@settings(max_examples=500)
@given(st.one_of(well_formed, documents.map("totem {{\nversion: 2\n}}\n{}".format)))
def test_interpretation_gives_a_config_or_a_located_error(text: str) -> None:
    parsed = _parse(text)
    if parsed is None:
        return
    try:
        loaded = interpret_config(
            parsed,
            require_local_node=False,
            resolver=fake_resolver,
            is_local=local_when_loopback,
        )
    except ConfigError as error:
        failure = error
    else:
        _check_loaded(loaded)
        return
    assert failure.file == "p.conf"


def _check_loaded(loaded: LoadedConfig) -> None:
    assert loaded.nodelist.nodes
    assert loaded.totem.token_ms >= 30
    assert loaded.totem.consensus_ms >= loaded.totem.join_ms
    assert len({node.nodeid for node in loaded.nodelist}) == len(loaded.nodelist)
