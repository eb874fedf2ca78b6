"""corosync.conf sections → cmap keys: the special sections, typed keys and value checks."""

from __future__ import annotations

import grp
import os
import pwd
from pathlib import Path

import pytest

from pycorosync.exec.config_error import ConfigError
from pycorosync.exec.coroparse import (
    ParsedConfig,
    parse_config_file,
    parse_config_text,
    parse_uidgid_text,
)
from pycorosync.lib.cmap_types import CmapValue, ValueType


def parse(text: str) -> ParsedConfig:
    return parse_config_text(text, file="t.conf")


def typed(text: str) -> dict[str, tuple[CmapValue, ValueType]]:
    return {entry.key: (entry.value, entry.vtype) for entry in parse(text)}


def error_of(text: str) -> str:
    with pytest.raises(ConfigError) as caught:
        parse(text)
    return str(caught.value)


U32, U16, U8, I32, U64, STR = (
    ValueType.UINT32,
    ValueType.UINT16,
    ValueType.UINT8,
    ValueType.INT32,
    ValueType.UINT64,
    ValueType.STRING,
)


# --- totem.interface ---------------------------------------------------------------------------


def test_interface_keys_are_collected_under_their_linknumber() -> None:
    text = """totem {
    interface {
        mcastport: 6000
        knet_link_priority: 5
        bindnetaddr: 10.0.0.0
        linknumber: 1
        ttl: 3
        knet_ping_interval: 100
        knet_ping_timeout: 200
        knet_ping_precision: 300
        knet_pong_count: 4
        knet_transport: udp
        mcastaddr: 239.1.1.1
        broadcast: no
    }
}
"""
    assert typed(text) == {
        "totem.interface.1.mcastport": (6000, U16),
        "totem.interface.1.knet_link_priority": (5, U8),
        "totem.interface.1.bindnetaddr": ("10.0.0.0", STR),
        "totem.interface.1.ttl": (3, U8),
        "totem.interface.1.knet_ping_interval": (100, U32),
        "totem.interface.1.knet_ping_timeout": (200, U32),
        "totem.interface.1.knet_ping_precision": (300, U32),
        "totem.interface.1.knet_pong_count": (4, U32),
        "totem.interface.1.knet_transport": ("udp", STR),
        "totem.interface.1.mcastaddr": ("239.1.1.1", STR),
        "totem.interface.1.broadcast": ("no", STR),
    }


def test_interface_without_linknumber_is_link_0_and_keeps_the_line_of_each_value() -> None:
    parsed = parse("totem {\n interface {\n  mcastport: 5000\n }\n}\n")
    entry = parsed.entry("totem.interface.0.mcastport")
    assert entry is not None
    assert (entry.value, entry.line) == (5000, 3)
    assert parsed.where("totem.interface.0") == ("t.conf", 2)


def test_unknown_interface_keys_stay_where_they_are() -> None:
    text = "totem {\n interface {\n  ringnumber: 0\n  linknumber: 2\n }\n}\n"
    assert typed(text) == {"totem.interface.ringnumber": ("0", STR)}


def test_two_interface_sections_for_one_link_merge() -> None:
    text = (
        "totem {\n interface {\n  mcastport: 1\n  ttl: 2\n }\n interface {\n  mcastport: 3\n }\n}\n"
    )
    assert typed(text) == {
        "totem.interface.0.mcastport": (3, U16),
        "totem.interface.0.ttl": (2, U8),
    }


def test_member_sections_become_numbered_members() -> None:
    text = (
        "totem {\n interface {\n  linknumber: 0\n"
        "  member {\n   memberaddr: 10.0.0.1\n  }\n"
        "  member {\n   memberaddr: 10.0.0.2\n  }\n }\n}\n"
    )
    assert typed(text) == {
        "totem.interface.0.member.0": ("10.0.0.1", STR),
        "totem.interface.0.member.1": ("10.0.0.2", STR),
    }


def test_member_section_rules() -> None:
    base = "totem {\n interface {\n  member {\n"
    assert error_of(base + "   addr: x\n  }\n }\n}\n") == (
        "t.conf:4: Only memberaddr is allowed in member section"
    )
    assert error_of(base + "   sub {\n") == (
        "t.conf:4: Subsections are not allowed within totem.interface.member section"
    )


def test_interface_typed_values_are_checked_on_their_line() -> None:
    assert error_of("totem {\n interface {\n  mcastport: 70000\n }\n}\n") == (
        't.conf:3: Value of key "totem.interface.mcastport" is expected to be integer in range '
        '(0..65535), but "70000" was given'
    )
    assert error_of("totem {\n interface {\n  linknumber: 256\n }\n}\n") == (
        't.conf:3: Value of key "totem.interface.linknumber" is expected to be integer in range '
        '(0..255), but "256" was given'
    )


# --- nodelist ------------------------------------------------------------------------------


def test_nodes_are_numbered_in_file_order_with_typed_keys() -> None:
    text = """nodelist {
    node {
        ring0_addr: 10.0.0.1
        nodeid: 7
        quorum_votes: 2
        name: a
        ring0_port: 6000
    }
    node {
        ring0_addr: 10.0.0.2
        extra {
            thing: x
        }
    }
}
"""
    assert typed(text) == {
        "nodelist.node.0.ring0_addr": ("10.0.0.1", STR),
        "nodelist.node.0.nodeid": (7, U32),
        "nodelist.node.0.quorum_votes": (2, U32),
        "nodelist.node.0.name": ("a", STR),
        "nodelist.node.0.ring0_port": (6000, U16),
        "nodelist.node.1.ring0_addr": ("10.0.0.2", STR),
        "nodelist.node.1.extra.thing": ("x", STR),
    }


def test_a_second_nodelist_section_continues_the_numbering() -> None:
    text = (
        "nodelist {\n node {\n  ring0_addr: a1\n }\n}\n"
        "nodelist {\n node {\n  ring0_addr: a2\n }\n}\n"
    )
    assert typed(text) == {
        "nodelist.node.0.ring0_addr": ("a1", STR),
        "nodelist.node.1.ring0_addr": ("a2", STR),
    }


def test_node_errors_name_the_numbered_key() -> None:
    assert error_of("nodelist {\n node {\n }\n node {\n  nodeid: x\n }\n}\n") == (
        't.conf:5: Value of key "nodelist.node.1.nodeid" is expected to be integer in range '
        '(0..4294967295), but "x" was given'
    )


def test_node_section_is_located_at_its_opening() -> None:
    parsed = parse("nodelist {\n node {\n  ring0_addr: a\n }\n\n node {\n  name: b\n }\n}\n")
    assert parsed.where("nodelist.node.1") == ("t.conf", 6)
    assert parsed.where("nodelist.node.1.nodeid") == ("t.conf", 6)


def test_keys_directly_in_nodelist_are_plain() -> None:
    assert typed("nodelist {\n nodeid: x\n}\n") == {"nodelist.nodeid": ("x", STR)}


# --- logging ---------------------------------------------------------------------------------


def test_logger_subsys_is_keyed_by_subsys() -> None:
    text = (
        "logging {\n to_syslog: yes\n logger_subsys {\n  debug: on\n  subsys: QUORUM\n"
        "  nested {\n   x: y\n  }\n }\n}\n"
    )
    assert typed(text) == {
        "logging.to_syslog": ("yes", STR),
        "logging.logger_subsys.QUORUM.debug": ("on", STR),
        "logging.logger_subsys.QUORUM.nested.x": ("y", STR),
        "logging.logger_subsys.QUORUM.subsys": ("QUORUM", STR),
    }


def test_logger_subsys_without_subsys_fails_at_its_closing_brace() -> None:
    assert error_of("logging {\n logger_subsys {\n  debug: on\n }\n}\n") == (
        "t.conf:4: No subsys key in logger_subsys directive"
    )


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("name: corosync\n  debug: on\n", {"logging.debug": "on"}),
        (
            "name: corosync\n  subsys: CPG\n  debug: on\n",
            {"logging.logger_subsys.CPG.debug": "on", "logging.logger_subsys.CPG.subsys": "CPG"},
        ),
        (
            "name: other\n  debug: on\n",
            {
                "logging.logging_daemon.other.debug": "on",
                "logging.logging_daemon.other.name": "other",
            },
        ),
        (
            "name: other\n  subsys: S\n  debug: on\n",
            {
                "logging.logging_daemon.other.S.debug": "on",
                "logging.logging_daemon.other.S.subsys": "S",
                "logging.logging_daemon.other.S.name": "other",
            },
        ),
    ],
)
def test_legacy_logging_daemon(body: str, expected: dict[str, str]) -> None:
    text = f"logging {{\n logging_daemon {{\n  {body} }}\n}}\n"
    assert {key: value for key, (value, _) in typed(text).items()} == expected


def test_logging_daemon_without_name() -> None:
    assert error_of("logging {\n logging_daemon {\n  debug: on\n }\n}\n") == (
        "t.conf:4: No name key in logging_daemon directive"
    )


# --- quorum, system, resources, pload ----------------------------------------------------------


def test_quorum_and_device_types() -> None:
    text = """quorum {
    provider: corosync_votequorum
    expected_votes: 3
    votes: 1
    last_man_standing_window: 10000
    leaving_timeout: 5
    two_node: 1
    expected_votes_tracking: 0
    allow_downscale: 0
    wait_for_all: 1
    auto_tie_breaker: 1
    last_man_standing: 1
    auto_tie_breaker_node: lowest
    device {
        model: net
        timeout: 10000
        sync_timeout: 30000
        votes: 1
        master_wins: 1
        net {
            host: qnetd
            votes: x
        }
    }
}
"""
    got = typed(text)
    assert got["quorum.provider"] == ("corosync_votequorum", STR)
    assert got["quorum.expected_votes"] == (3, U32)
    assert got["quorum.leaving_timeout"] == (5, U32)
    assert got["quorum.two_node"] == (1, U8)
    assert got["quorum.last_man_standing"] == (1, U8)
    assert got["quorum.auto_tie_breaker_node"] == ("lowest", STR)
    assert got["quorum.device.timeout"] == (10000, U32)
    assert got["quorum.device.master_wins"] == (1, U8)
    assert got["quorum.device.net.votes"] == ("x", STR)


def test_quorum_u8_range() -> None:
    assert error_of("quorum {\n two_node: 2x\n}\n") == (
        't.conf:2: Value of key "quorum.two_node" is expected to be integer in range (0..255), '
        'but "2x" was given'
    )


@pytest.mark.parametrize(
    ("key", "good", "bad", "message"),
    [
        ("qb_ipc_type", "shm", "pipe", "Invalid system.qb_ipc_type"),
        ("sched_rr", "no", "maybe", "Invalid system.sched_rr value"),
        ("move_to_root_cgroup", "auto", "sometimes", "Invalid system.move_to_root_cgroup"),
        (
            "allow_knet_handle_fallback",
            "yes",
            "on",
            "Invalid system.allow_knet_handle_fallback",
        ),
    ],
)
def test_system_enumerations(key: str, good: str, bad: str, message: str) -> None:
    assert typed(f"system {{\n {key}: {good}\n}}\n") == {f"system.{key}": (good, STR)}
    assert error_of(f"system {{\n {key}: {bad}\n}}\n") == f"t.conf:2: {message}"


def test_resources_types() -> None:
    text = (
        "resources {\n watchdog_timeout: 6\n watchdog_device: off\n"
        " system {\n  memory_used {\n   poll_period: 10000\n   recovery: reboot\n  }\n }\n"
        " process {\n  poll_period: 18446744073709551615\n }\n}\n"
    )
    assert typed(text) == {
        "resources.watchdog_timeout": (6, U32),
        "resources.watchdog_device": ("off", STR),
        "resources.system.memory_used.poll_period": (10000, U64),
        "resources.system.memory_used.recovery": ("reboot", STR),
        "resources.process.poll_period": (18446744073709551615, U64),
    }


def test_resources_u64_error() -> None:
    assert error_of("resources {\n system {\n  poll_period: -1\n }\n}\n") == (
        't.conf:3: Value of key "resources.system.poll_period" is expected to be unsigned '
        'integer, but "-1" was given'
    )


def test_pload_types() -> None:
    assert typed("pload {\n count: 10\n size: 300\n}\n") == {
        "pload.count": (10, U32),
        "pload.size": (300, U32),
    }


# --- typed totem keys ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "version",
        "nodeid",
        "threads",
        "token",
        "token_coefficient",
        "token_retransmit",
        "token_warning",
        "hold",
        "token_retransmits_before_loss_const",
        "join",
        "send_join",
        "consensus",
        "merge",
        "downcheck",
        "fail_recv_const",
        "seqno_unchanged_const",
        "heartbeat_failures_allowed",
        "max_network_delay",
        "window_size",
        "max_messages",
        "miss_count_const",
        "knet_pmtud_interval",
        "knet_mtu",
        "knet_compression_threshold",
        "netmtu",
    ],
)
def test_every_u32_totem_key(name: str) -> None:
    assert typed(f"totem {{\n {name}: 4294967295\n}}\n") == {f"totem.{name}": (4294967295, U32)}
    assert error_of(f"totem {{\n {name}: 4294967296\n}}\n") == (
        f't.conf:2: Value of key "totem.{name}" is expected to be integer in range '
        '(0..4294967295), but "4294967296" was given'
    )


@pytest.mark.parametrize(
    ("value", "number"),
    [("0", 0), ("+7", 7), ("007", 7), ("-0", 0), ("\v12", 12)],
)
def test_decimal_forms_strtoll_accepts(value: str, number: int) -> None:
    assert typed(f"totem {{\n token: {value}\n}}\n") == {"totem.token": (number, U32)}


@pytest.mark.parametrize("value", ["", "-1", "0x10", "1_000", "12ms", "1.5", "١٢", " "])
def test_values_that_are_not_u32(value: str) -> None:
    assert error_of(f"totem {{\n token: {value}\n}}\n").startswith(
        't.conf:2: Value of key "totem.token" is expected to be integer in range (0..4294967295)'
    )


def test_i32_and_u64_totem_keys() -> None:
    text = "totem {\n knet_compression_level: -5\n config_version: 18446744073709551615\n}\n"
    assert typed(text) == {
        "totem.knet_compression_level": (-5, I32),
        "totem.config_version": (18446744073709551615, U64),
    }
    assert error_of("totem {\n knet_compression_level: 2147483648\n}\n") == (
        't.conf:2: Value of key "totem.knet_compression_level" is expected to be integer in '
        'range (-2147483648..2147483647), but "2147483648" was given'
    )
    for bad in ("18446744073709551616", "-1", "x"):
        assert error_of(f"totem {{\n config_version: {bad}\n}}\n") == (
            f't.conf:2: Value of key "totem.config_version" is expected to be unsigned integer, '
            f'but "{bad}" was given'
        )


@pytest.mark.parametrize(
    ("value", "dscp"),
    [("0", 0), ("63", 63), ("0x10", 16), ("010", 8), ("ef", 46), ("af41", 34), ("cs7", 56)],
)
def test_ip_dscp_forms(value: str, dscp: int) -> None:
    assert typed(f"totem {{\n ip_dscp: {value}\n}}\n") == {"totem.ip_dscp": (dscp, U8)}


@pytest.mark.parametrize("value", ["64", "-1", "08", "EF", "0x", "af44"])
def test_ip_dscp_errors(value: str) -> None:
    assert error_of(f"totem {{\n ip_dscp: {value}\n}}\n") == (
        't.conf:2: Value of key "totem.ip_dscp" is expected to be number (0..63) or symbolical '
        f'dscp value, but "{value}" was given'
    )


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("ip_version", "Invalid ip_version type"),
        ("crypto_cipher", "Invalid cipher type. Should be none, aes256, aes192 or aes128"),
        (
            "crypto_hash",
            "Invalid hash type. Should be none, md5, sha1, sha256, sha384 or sha512",
        ),
        ("crypto_model", "Invalid crypto model. Should be nss, openssl or gcrypt"),
        (
            "knet_compression_model",
            "Invalid compression model. Should be none, zlib, lz4, lz4hc, lzo2, lzma, bzip2 "
            "or zstd",
        ),
    ],
)
def test_totem_enumerations(key: str, message: str) -> None:
    assert error_of(f"totem {{\n {key}: bogus\n}}\n") == f"t.conf:2: {message}"


def test_types_apply_only_in_their_own_section() -> None:
    text = "other {\n token: x\n}\ntotem {\n sub {\n  token: x\n }\n}\n"
    assert typed(text) == {"other.token": ("x", STR), "totem.sub.token": ("x", STR)}


# --- uidgid ----------------------------------------------------------------------------------


def test_uidgid_numbers_and_names() -> None:
    root_user = pwd.getpwuid(0).pw_name
    root_group = grp.getgrgid(0).gr_name
    text = f"uidgid {{\n uid: 1234\n gid: 4321\n uid: {root_user}\n gid: {root_group}\n}}\n"
    assert typed(text) == {
        "uidgid.config.uid.1234": (1, U8),
        "uidgid.config.gid.4321": (1, U8),
        "uidgid.config.uid.0": (1, U8),
        "uidgid.config.gid.0": (1, U8),
    }


def test_uidgid_unknown_names() -> None:
    assert error_of("uidgid {\n uid: no-such-user-here\n}\n") == (
        "t.conf:2: The 'no-such-user-here' user is not found in /etc/passwd, please read the "
        "documentation."
    )
    assert error_of("uidgid {\n gid: no-such-group-here\n}\n") == (
        "t.conf:2: The 'no-such-group-here' group is not found in /etc/group, please read the "
        "documentation."
    )
    assert "user is not found" in error_of("uidgid {\n uid: -1\n}\n")


def test_uidgid_rules() -> None:
    assert error_of("uidgid {\n user: x\n}\n") == (
        "t.conf:2: uidgid: Only uid and gid are allowed items"
    )
    assert error_of("uidgid {\n sub {\n") == (
        "t.conf:2: Subsections are not allowed within uidgid section"
    )


def test_uidgid_d_files_are_read_beside_the_config(tmp_path: Path) -> None:
    conf = tmp_path / "corosync.conf"
    conf.write_text("totem {\n version: 2\n}\n")
    directory = tmp_path / "uidgid.d"
    directory.mkdir()
    (directory / "b-app").write_text("uidgid {\n gid: 200\n}\n")
    (directory / "a-app").write_text("# grant\nuidgid {\n uid: 100\n}\nuidgid {\n gid: 300\n}\n")
    (directory / "subdir").mkdir()
    parsed = parse_config_file(conf)
    assert [e.key for e in parsed] == [
        "totem.version",
        "uidgid.config.uid.100",
        "uidgid.config.gid.300",
        "uidgid.config.gid.200",
    ]
    entry = parsed.entry("uidgid.config.uid.100")
    assert entry is not None
    assert (entry.file, entry.line) == (str(directory / "a-app"), 3)
    assert parsed.warnings == ()


def test_uidgid_d_is_optional_and_can_be_skipped(tmp_path: Path) -> None:
    conf = tmp_path / "corosync.conf"
    conf.write_text("")
    assert len(parse_config_file(conf)) == 0
    (tmp_path / "uidgid.d").mkdir()
    (tmp_path / "uidgid.d" / "x").write_text("uidgid {\n uid: 5\n}\n")
    assert len(parse_config_file(conf, read_uidgid_d=False)) == 0


def test_uidgid_d_errors_name_their_file(tmp_path: Path) -> None:
    conf = tmp_path / "corosync.conf"
    conf.write_text("")
    (tmp_path / "uidgid.d").mkdir()
    bad = tmp_path / "uidgid.d" / "bad"
    bad.write_text("uidgid {\n uid: 5\n other: 1\n}\n")
    with pytest.raises(ConfigError) as caught:
        parse_config_file(conf)
    assert str(caught.value) == f"{bad}:3: uidgid: Only uid and gid are allowed items"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("totem {\n}\n", "f:1: uidgid: Can't add subsection different than uidgid"),
        ("uidgid {\n x {\n", "f:2: uidgid: Can't add subsection different than uidgid"),
        ("uid: 5\n", "f:1: uidgid: Only uid and gid are allowed items"),
        ("uidgid {\n uid: 5\n", "f:2: Missing closing brace"),
    ],
)
def test_uidgid_d_grammar(text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_uidgid_text(text, file="f")
    assert str(caught.value) == expected


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_uidgid_d_file_is_a_warning(tmp_path: Path) -> None:
    conf = tmp_path / "corosync.conf"
    conf.write_text("")
    (tmp_path / "uidgid.d").mkdir()
    locked = tmp_path / "uidgid.d" / "locked"
    locked.write_text("uidgid {\n uid: 5\n}\n")
    locked.chmod(0)
    parsed = parse_config_file(conf)
    assert len(parsed) == 0
    assert parsed.warnings == (f"Can't read file {locked}: Permission denied",)


def test_missing_config_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.conf"
    with pytest.raises(ConfigError) as caught:
        parse_config_file(missing)
    assert str(caught.value) == f"Can't read file {missing}: No such file or directory"


# --- the result ------------------------------------------------------------------------------


class DictSink:
    def __init__(self) -> None:
        self.data: dict[str, tuple[CmapValue, ValueType]] = {}

    def set(self, key: str, value: CmapValue, vtype: ValueType) -> None:
        self.data[key] = (value, vtype)


def test_load_into_a_sink() -> None:
    parsed = parse("totem {\n token: 5000\n cluster_name: c\n}\n")
    sink = DictSink()
    parsed.load_into(sink)
    assert sink.data == {"totem.token": (5000, U32), "totem.cluster_name": ("c", STR)}


def test_locate_places_a_validator_error_at_its_key() -> None:
    parsed = parse("totem {\n\n token: 5\n}\n")
    assert str(parsed.locate(ConfigError("too small", key="totem.token"))) == "t.conf:3: too small"
    assert str(parsed.locate(ConfigError("general"))) == "t.conf: general"
    assert str(parsed.locate(ConfigError("unknown", key="nope.key"))) == "t.conf: unknown"
    already = ConfigError("placed", "other", 9, key="totem.token")
    assert parsed.locate(already) is already


def test_get_helpers_check_the_type() -> None:
    parsed = parse("totem {\n token: 5\n cluster_name: c\n}\n")
    assert parsed.get_int("totem.token") == 5
    assert parsed.get_str("totem.cluster_name") == "c"
    assert parsed.get_str("totem.missing") is None
    with pytest.raises(ConfigError, match="expected to be a string"):
        parsed.get_str("totem.token")
    with pytest.raises(ConfigError, match="expected to be an integer"):
        parsed.get_int("totem.cluster_name")


def test_dangling_uidgid_d_entry_is_a_warning(tmp_path: Path) -> None:
    conf = tmp_path / "corosync.conf"
    conf.write_text("")
    (tmp_path / "uidgid.d").mkdir()
    dangling = tmp_path / "uidgid.d" / "gone"
    dangling.symlink_to(tmp_path / "nowhere")
    parsed = parse_config_file(conf)
    assert len(parsed) == 0
    assert parsed.warnings == (f"Can't read file {dangling}: No such file or directory",)
