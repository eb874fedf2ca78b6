"""Typed keys of ``corosync.conf`` and the value checks the parser makes.

Corosync stores every value as a string unless the key is one it knows to be numeric; those are
converted when the line is read, with C's rules (``strtoll`` base 10 for the 8/16/32-bit types,
``strtoull`` for the 64-bit ones, ``strtol`` base 0 for ``ip_dscp``) and a range check, and a bad
value stops the parse with Corosync's wording. A few enumerations are checked at the same moment.
This module holds those tables and conversions; :mod:`pycorosync.exec.coroparse` decides which
table applies in which section.

One deliberate difference: ``strtoull`` accepts a leading ``-`` and wraps the value round
(``config_version: -1`` becomes 18446744073709551615). We refuse a negative value instead, with
the same message Corosync gives for any other bad unsigned integer.
"""

from __future__ import annotations

import re

from pycorosync.exec.config_error import ConfigError
from pycorosync.lib.cmap_types import ValueType

# C's isspace() set, which strtol & co. skip before the number.
_C_DECIMAL = re.compile(r"[ \t\n\v\f\r]*([+-]?[0-9]+)")
_C_UNSIGNED = re.compile(r"[ \t\n\v\f\r]*\+?([0-9]+)")
# strtol base 0: hexadecimal with 0x, octal with a leading 0, decimal otherwise.
_C_ANY_BASE = re.compile(r"[ \t\n\v\f\r]*([+-]?)(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)")

_U64_MAX = (1 << 64) - 1

TOTEM_U32_KEYS = frozenset(
    "totem." + name
    for name in (
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
    )
)

QUORUM_TYPED_KEYS: dict[str, ValueType] = {
    "quorum.expected_votes": ValueType.UINT32,
    "quorum.votes": ValueType.UINT32,
    "quorum.last_man_standing_window": ValueType.UINT32,
    "quorum.leaving_timeout": ValueType.UINT32,
    "quorum.two_node": ValueType.UINT8,
    "quorum.expected_votes_tracking": ValueType.UINT8,
    "quorum.allow_downscale": ValueType.UINT8,
    "quorum.wait_for_all": ValueType.UINT8,
    "quorum.auto_tie_breaker": ValueType.UINT8,
    "quorum.last_man_standing": ValueType.UINT8,
}

QDEVICE_TYPED_KEYS: dict[str, ValueType] = {
    "quorum.device.timeout": ValueType.UINT32,
    "quorum.device.sync_timeout": ValueType.UINT32,
    "quorum.device.votes": ValueType.UINT32,
    "quorum.device.master_wins": ValueType.UINT8,
}

PLOAD_TYPED_KEYS: dict[str, ValueType] = {
    "pload.count": ValueType.UINT32,
    "pload.size": ValueType.UINT32,
}

# Keys of a ``totem { interface { ... } }`` section that Corosync collects and writes, at the end
# of the section, as ``totem.interface.<linknumber>.<name>``; the value is the stored type.
INTERFACE_FIELDS: dict[str, ValueType] = {
    "bindnetaddr": ValueType.STRING,
    "mcastaddr": ValueType.STRING,
    "broadcast": ValueType.STRING,
    "mcastport": ValueType.UINT16,
    "ttl": ValueType.UINT8,
    "knet_link_priority": ValueType.UINT8,
    "knet_ping_interval": ValueType.UINT32,
    "knet_ping_timeout": ValueType.UINT32,
    "knet_ping_precision": ValueType.UINT32,
    "knet_pong_count": ValueType.UINT32,
    "knet_transport": ValueType.STRING,
}

# Node keys with a type; every other node key is a string. ``ringX_port`` is our own key: the
# port a node listens on for link X, so that several nodes can share one address (::1).
NODE_TYPED_KEYS: dict[str, ValueType] = {
    "nodeid": ValueType.UINT32,
    "quorum_votes": ValueType.UINT32,
    **{f"ring{link}_port": ValueType.UINT16 for link in range(8)},
}

CRYPTO_CIPHERS = ("none", "aes256", "aes192", "aes128")
CRYPTO_HASHES = ("none", "md5", "sha1", "sha256", "sha384", "sha512")
CRYPTO_MODELS = ("nss", "openssl", "gcrypt")
COMPRESSION_MODELS = ("none", "zlib", "lz4", "lz4hc", "lzo2", "lzma", "bzip2", "zstd")
IP_VERSIONS = ("ipv4", "ipv6", "ipv4-6", "ipv6-4")


def _choices(items: tuple[str, ...]) -> str:
    """``a, b or c``."""
    if len(items) == 1:
        return items[0]
    return ", ".join(items[:-1]) + " or " + items[-1]


# Enumerations checked at parse time: key -> (allowed values, error text). The crypto and
# compression errors list the choices the way Corosync's util_is_valid_knet_* helpers do.
_ENUMERATED: dict[str, tuple[tuple[str, ...], str]] = {
    "totem.ip_version": (IP_VERSIONS, "Invalid ip_version type"),
    "totem.crypto_model": (
        CRYPTO_MODELS,
        "Invalid crypto model. Should be " + _choices(CRYPTO_MODELS),
    ),
    "totem.crypto_cipher": (
        CRYPTO_CIPHERS,
        "Invalid cipher type. Should be " + _choices(CRYPTO_CIPHERS),
    ),
    "totem.crypto_hash": (
        CRYPTO_HASHES,
        "Invalid hash type. Should be " + _choices(CRYPTO_HASHES),
    ),
    "totem.knet_compression_model": (
        COMPRESSION_MODELS,
        "Invalid compression model. Should be " + _choices(COMPRESSION_MODELS),
    ),
    "system.qb_ipc_type": (("native", "shm", "socket"), "Invalid system.qb_ipc_type"),
    "system.sched_rr": (("yes", "no"), "Invalid system.sched_rr value"),
    "system.move_to_root_cgroup": (("yes", "no", "auto"), "Invalid system.move_to_root_cgroup"),
    "system.allow_knet_handle_fallback": (
        ("yes", "no"),
        "Invalid system.allow_knet_handle_fallback",
    ),
}

_DSCP_NAMES = {
    "cs0": 0,
    "cs1": 8,
    "cs2": 16,
    "cs3": 24,
    "cs4": 32,
    "cs5": 40,
    "cs6": 48,
    "cs7": 56,
    "af11": 10,
    "af12": 12,
    "af13": 14,
    "af21": 18,
    "af22": 20,
    "af23": 22,
    "af31": 26,
    "af32": 28,
    "af33": 30,
    "af41": 34,
    "af42": 36,
    "af43": 38,
    "ef": 46,
}


def check_enumerated(path: str, value: str) -> None:
    """Raise Corosync's error if ``path`` is an enumerated key and ``value`` is not allowed."""
    rule = _ENUMERATED.get(path)
    if rule is not None and value not in rule[0]:
        raise ConfigError(rule[1])


def c_decimal(text: str) -> int | None:
    """The value ``strtoll(text, &end, 10)`` gives when it consumes the whole string."""
    match = _C_DECIMAL.fullmatch(text)
    return int(match.group(1)) if match else None


def to_integer(key_name: str, value: str, vtype: ValueType) -> int:
    """Convert an 8/16/32-bit typed value as Corosync's ``safe_atoq`` does."""
    low, high = vtype.integer_range
    number = c_decimal(value)
    if number is None or not low <= number <= high:
        raise ConfigError(
            f'Value of key "{key_name}" is expected to be integer in range '
            f'({low}..{high}), but "{value}" was given'
        )
    return number


def to_unsigned64(key_name: str, value: str) -> int:
    """Convert a 64-bit unsigned value (``totem.config_version``, ``*.poll_period``)."""
    match = _C_UNSIGNED.fullmatch(value)
    if match is None or int(match.group(1)) > _U64_MAX:
        raise ConfigError(
            f'Value of key "{key_name}" is expected to be unsigned integer, but "{value}" was given'
        )
    return int(match.group(1))


def to_dscp(key_name: str, value: str) -> int:
    """``totem.ip_dscp``: 0..63 in any C base, or an IANA name such as ``af41`` or ``ef``."""
    if value in _DSCP_NAMES:
        return _DSCP_NAMES[value]
    match = _C_ANY_BASE.fullmatch(value)
    if match is not None:
        sign, digits = match.groups()
        number = _c_base0(digits) * (-1 if sign == "-" else 1)
        if 0 <= number <= 63:
            return number
    raise ConfigError(
        f'Value of key "{key_name}" is expected to be number (0..63) or symbolical dscp value, '
        f'but "{value}" was given'
    )


def _c_base0(digits: str) -> int:
    if digits[:2] in ("0x", "0X"):
        return int(digits[2:], 16)
    if digits.startswith("0"):
        return int(digits, 8)
    return int(digits, 10)
