"""The Totem settings: ``totem.*`` keys → one frozen :class:`TotemConfig`, Corosync 3.x rules.

Theory of operation
-------------------
Corosync reads the ``totem`` section in two passes (``exec/totemconfig.c``), and so do we:
:func:`build_totem_config` takes the parsed keys plus two facts from the nodelist (how many nodes
have a ``ring0_addr``, and the address family of each link) and returns every value the Totem
process needs, with the defaults filled in and the derived timers computed:

* ``token`` (3000 ms) grows by ``token_coefficient`` (650 ms) for every node beyond two;
* ``token_retransmit`` = token / (token_retransmits_before_loss_const + 0.2);
* ``hold`` = token_retransmit * 0.8 - 1000/HZ (HZ = 100);
* ``consensus`` = 1.2 * token, computed through a C ``float`` as Corosync does;
* the knet ping interval and timeout of each link derive from the token and the pong count.

A key set to 0 means "use the default" except where zero is meaningful (``token_warning``,
``send_join``, ``heartbeat_failures_allowed``, ``knet_compression_*``). The checks and their
texts are Corosync's (``The token timeout parameter (20 ms) may not be less than (30 ms).``);
each :class:`ConfigError` names the key it is about, so that the loader can give its line.

Where we differ from Corosync 3.x, by design (DESIGN.md):

* crypto is ours on every transport, so udp/udpu may encrypt, and nothing set means
  ``aes256`` + ``sha256`` (secure by default); a cipher without a hash is refused as Corosync
  refuses it, and so is a ``secauth`` other than ``on``/``off`` (Corosync reads it as off);
* ``knet`` runs on our own unicast UDP links. Its default ``netmtu`` is Corosync's 65536, so
  a Totem frame can carry up to about 64 KiB of packed messages; where libknet fragments such a
  frame itself, ours goes out as one UDP datagram that the kernel fragments to the path MTU
  and the receiver's kernel reassembles (a lost fragment loses the frame, which Totem
  retransmits like any lost frame). ``netmtu`` must be 576..65536;
* links beyond 0 are accepted and recorded (:attr:`TotemConfig.unused_links`); only link 0
  carries traffic until redundant links exist;
* an effective token above 3579139412 ms (where 1.2 * token leaves 32 bits) is refused rather
  than wrapped round.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from pycorosync.exec.config_error import ConfigError
from pycorosync.exec.coroparse import ParsedConfig
from pycorosync.exec.ipaddr import Address, IpVersion, parse_literal

HZ = 100
MINIMUM_TIMEOUT_MS = (1000 // HZ) * 3
MINIMUM_TIMEOUT_HOLD_MS = int(MINIMUM_TIMEOUT_MS * 0.8 - 1000 // HZ)
DEFAULT_PORT = 5405
INTERFACE_MAX = 8
"""Links 0..7, Corosync's ``INTERFACE_MAX`` (= ``KNET_MAX_LINK``)."""
PROCESSOR_COUNT_MAX = 384
KNET_MAX_HOST = 65536
LINK_MODE_MAX_LEN = 64
MAXIMUM_TOKEN_MS = int(0xFFFFFFFF / 1.2)
NETMTU_RANGE = (576, 65536)
DEFAULT_KEYFILE = "/etc/corosync/authkey"
KEY_LEN_MIN = 128
KEY_LEN_MAX = 4096
RESERVED_NODEID = "Node ID 0 is reserved (it marks LEAVE messages); use 1..4294967295"

_INTERFACE_KEY = re.compile(r"totem\.interface\.([0-9]+)\.")


class Transport(StrEnum):
    UDPU = "udpu"
    UDP = "udp"
    KNET = "knet"


class LinkMode(StrEnum):
    PASSIVE = "passive"
    ACTIVE = "active"
    RR = "rr"


_NETMTU_DEFAULT = {Transport.UDPU: 1500, Transport.UDP: 1500, Transport.KNET: 65536}


@dataclass(frozen=True, slots=True)
class _Default:
    """A ``totem.<name>`` u32 and its default; ``zero_is_default``: 0 means "not set"."""

    default: int
    zero_is_default: bool = True


# Every plain (not derived) totem default, in one place.
DEFAULTS: Mapping[str, _Default] = {
    "token": _Default(3000),
    "token_coefficient": _Default(650, zero_is_default=False),
    "token_warning": _Default(75, zero_is_default=False),
    "token_retransmits_before_loss_const": _Default(4),
    "join": _Default(50),
    "send_join": _Default(0, zero_is_default=False),
    "merge": _Default(200),
    "downcheck": _Default(1000),
    "fail_recv_const": _Default(2500),
    "seqno_unchanged_const": _Default(30),
    "heartbeat_failures_allowed": _Default(0, zero_is_default=False),
    "max_network_delay": _Default(50),
    "window_size": _Default(50),
    "max_messages": _Default(17),
    "miss_count_const": _Default(5),
    "knet_pmtud_interval": _Default(30),
    "knet_mtu": _Default(0),
    "knet_compression_threshold": _Default(0, zero_is_default=False),
}

KNET_PING_PRECISION = 2048
KNET_PONG_COUNT = 2
KNET_LINK_PRIORITY = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class CryptoConfig:
    """``crypto_cipher``/``crypto_hash``/``crypto_model``/``secauth`` and where the key is."""

    cipher: str
    """none, aes256, aes192 or aes128."""
    hash: str
    """none, md5, sha1, sha256, sha384 or sha512; with cipher none, the HMAC of signed-only mode."""
    model: str
    """Corosync's knet crypto plugin (nss, openssl, gcrypt): recorded, not used by us."""
    keyfile: str
    """The authkey file (``totem.keyfile``, else /etc/corosync/authkey) when :attr:`key` is None."""
    key: bytes | None
    """An inline ``totem.key`` (discouraged; ``keyfile`` wins when both are set)."""

    @property
    def enabled(self) -> bool:
        return self.cipher != "none" or self.hash != "none"

    @property
    def cipher_key_bits(self) -> int:
        """128/192/256 for an AES cipher, 0 for none."""
        return 0 if self.cipher == "none" else int(self.cipher.removeprefix("aes"))


@dataclass(frozen=True, slots=True, kw_only=True)
class InterfaceConfig:
    """One link (Corosync's ``totem.interface.<N>`` plus its defaults)."""

    linknumber: int
    mcastport: int
    """The port of this link: 5405 + link (5405 + 2 * link with broadcast) unless set."""
    mcastaddr: Address | None
    """udp: the multicast group (set, derived from cluster_name, or broadcast); else as set."""
    broadcast: bool
    bindnetaddr: str | None
    """As written; with a nodelist the local node's ringX_addr is used instead (as Corosync)."""
    ttl: int
    knet_link_priority: int
    knet_ping_interval_ms: int
    knet_ping_timeout_ms: int
    knet_ping_precision: int
    knet_pong_count: int
    knet_transport: str


@dataclass(frozen=True, slots=True, kw_only=True)
class TotemConfig:
    """Everything the Totem process takes from ``totem.*``, defaults applied, units in names."""

    version: int
    cluster_name: str | None
    config_version: int
    transport: Transport
    ip_version: IpVersion
    link_mode: LinkMode
    nodeid: int | None
    """An explicit ``totem.nodeid``: which node of the nodelist this host is (DESIGN.md)."""
    clear_node_high_bit: bool
    token_base_ms: int
    """``totem.token`` as configured, before scaling by node count."""
    token_coefficient_ms: int
    token_ms: int
    """The effective token timeout (what ``runtime.config.totem.token`` shows)."""
    token_warning_percent: int
    token_retransmits_before_loss_const: int
    token_retransmit_ms: int
    hold_ms: int
    join_ms: int
    send_join_ms: int
    consensus_ms: int
    merge_ms: int
    downcheck_ms: int
    fail_recv_const: int
    seqno_unchanged_const: int
    heartbeat_failures_allowed: int
    max_network_delay_ms: int
    window_size: int
    max_messages: int
    miss_count_const: int
    netmtu: int
    knet_pmtud_interval_s: int
    knet_mtu: int
    knet_compression_model: str
    knet_compression_threshold: int
    knet_compression_level: int
    block_unlisted_ips: bool
    cancel_token_hold_on_retransmit: bool
    ip_dscp: int
    crypto: CryptoConfig
    interfaces: tuple[InterfaceConfig, ...]

    @property
    def token_warning_ms(self) -> int:
        """When to warn about a late token; 0 = never."""
        return self.token_warning_percent * self.token_ms // 100

    @property
    def links(self) -> tuple[int, ...]:
        return tuple(interface.linknumber for interface in self.interfaces)

    @property
    def unused_links(self) -> tuple[int, ...]:
        """Configured links that carry no traffic yet (everything but link 0)."""
        return tuple(link for link in self.links if link != 0)

    def interface(self, link: int) -> InterfaceConfig:
        for interface in self.interfaces:
            if interface.linknumber == link:
                return interface
        raise KeyError(link)


# --- the first pass: what the nodelist needs before the rest --------------------------------


def read_transport(parsed: ParsedConfig) -> Transport:
    value = parsed.get_str("totem.transport")
    if value is None:
        return Transport.KNET
    try:
        return Transport(value)
    except ValueError:
        raise ConfigError(
            "Invalid transport type. Should be udpu, udp or knet", key="totem.transport"
        ) from None


def read_ip_version(parsed: ParsedConfig) -> IpVersion:
    value = parsed.get_str("totem.ip_version")
    if value is not None:
        return IpVersion(value)  # the parser has checked it
    return IpVersion.IPV4 if read_transport(parsed) is Transport.UDP else IpVersion.IPV6_4


def read_clear_node_high_bit(parsed: ParsedConfig) -> bool:
    return parsed.get_str("totem.clear_node_high_bit") == "yes"


def interface_links(parsed: ParsedConfig) -> set[int]:
    """Link numbers that have a ``totem { interface { } }`` section."""
    links = set()
    for entry in parsed.under("totem.interface."):
        match = _INTERFACE_KEY.match(entry.key)
        if match is not None:
            links.add(int(match.group(1)))
    return links


def link_port(parsed: ParsedConfig, link: int) -> int:
    """The port of ``link``: its ``mcastport``, else Corosync's default for it."""
    port = parsed.get_int(f"totem.interface.{link}.mcastport")
    if port is not None:
        return port
    if _broadcast(parsed):
        return DEFAULT_PORT + 2 * link
    return DEFAULT_PORT + link


def _broadcast(parsed: ParsedConfig) -> bool:
    # Global although it sits in an interface section, as in Corosync.
    return any(
        entry.key.endswith(".broadcast") and entry.value == "yes"
        for entry in parsed.under("totem.interface.")
    )


# --- the second pass -------------------------------------------------------------------------


def build_totem_config(
    parsed: ParsedConfig,
    *,
    ring0_members: int,
    link_families: Mapping[int, int],
) -> TotemConfig:
    """The totem settings, checked; ``link_families`` maps each nodelist link to 4 or 6."""
    transport = read_transport(parsed)
    version = parsed.get_int("totem.version") or 0
    if version != 2:
        raise ConfigError(
            "This totem parser can only parse version 2 configurations.", key="totem.version"
        )
    timers = _Timers(parsed, ring0_members)
    explicit_nodeid = parsed.get_int("totem.nodeid")
    if explicit_nodeid == 0:
        raise ConfigError(RESERVED_NODEID, key="totem.nodeid")
    links = sorted(interface_links(parsed) | set(link_families))
    return TotemConfig(
        version=version,
        cluster_name=parsed.get_str("totem.cluster_name"),
        config_version=parsed.get_int("totem.config_version") or 0,
        transport=transport,
        ip_version=read_ip_version(parsed),
        link_mode=_link_mode(parsed),
        nodeid=explicit_nodeid,
        clear_node_high_bit=read_clear_node_high_bit(parsed),
        **timers.values(),
        netmtu=_netmtu(parsed, transport),
        knet_compression_model=parsed.get_str("totem.knet_compression_model") or "none",
        knet_compression_level=parsed.get_int("totem.knet_compression_level") or 0,
        block_unlisted_ips=_yes_no(parsed, "totem.block_unlisted_ips", default=True),
        cancel_token_hold_on_retransmit=_yes_no(
            parsed, "totem.cancel_token_hold_on_retransmit", default=False
        ),
        ip_dscp=parsed.get_int("totem.ip_dscp") or 0,
        crypto=_crypto(parsed),
        interfaces=_interfaces(parsed, transport, links, timers.token_ms, link_families),
    )


_ValueOf = Callable[[str], int]


class _Timers:
    """The timer and counter values, computed and checked in Corosync's order."""

    def __init__(self, parsed: ParsedConfig, ring0_members: int) -> None:
        self._parsed = parsed
        self.token_base_ms = self._get("token")
        self.token_coefficient_ms = self._get("token_coefficient")
        self.token_ms = self.token_base_ms
        if ring0_members > 2:
            self.token_ms += (ring0_members - 2) * self.token_coefficient_ms
        retransmits = self._get("token_retransmits_before_loss_const")
        self.token_retransmit_ms = self._get(
            "token_retransmit", int(self.token_ms / (retransmits + 0.2))
        )
        self.hold_ms = self._get("hold", int(self.token_retransmit_ms * 0.8 - 1000 // HZ))
        self.consensus_ms = self._get("consensus", int(_c_float(1.2 * self.token_ms)))
        self._check(ring0_members)

    def _get(self, name: str, derived: int | None = None) -> int:
        rule = DEFAULTS.get(name, _Default(derived or 0))
        value = self._parsed.get_int("totem." + name)
        if value is None or (value == 0 and rule.zero_is_default):
            return rule.default if derived is None else derived
        return value

    def values(self) -> dict[str, int]:
        get = self._get
        return {
            "token_base_ms": self.token_base_ms,
            "token_coefficient_ms": self.token_coefficient_ms,
            "token_ms": self.token_ms,
            "token_warning_percent": get("token_warning"),
            "token_retransmits_before_loss_const": get("token_retransmits_before_loss_const"),
            "token_retransmit_ms": self.token_retransmit_ms,
            "hold_ms": self.hold_ms,
            "join_ms": get("join"),
            "send_join_ms": get("send_join"),
            "consensus_ms": self.consensus_ms,
            "merge_ms": get("merge"),
            "downcheck_ms": get("downcheck"),
            "fail_recv_const": get("fail_recv_const"),
            "seqno_unchanged_const": get("seqno_unchanged_const"),
            "heartbeat_failures_allowed": get("heartbeat_failures_allowed"),
            "max_network_delay_ms": get("max_network_delay"),
            "window_size": get("window_size"),
            "max_messages": get("max_messages"),
            "miss_count_const": get("miss_count_const"),
            "knet_pmtud_interval_s": get("knet_pmtud_interval"),
            "knet_mtu": get("knet_mtu"),
            "knet_compression_threshold": get("knet_compression_threshold"),
        }

    def _check(self, ring0_members: int) -> None:
        self._minimum("max_network_delay", "The max_network_delay parameter", self._get)
        if self.token_ms > MAXIMUM_TOKEN_MS:
            scaled = f", with {ring0_members} nodes" if self.token_ms != self.token_base_ms else ""
            raise ConfigError(
                f"The token timeout parameter ({self.token_ms} ms{scaled}) "
                f"may not be more than ({MAXIMUM_TOKEN_MS} ms).",
                key=self._key_for_token(),
            )
        self._minimum("token", "The token timeout parameter", lambda _: self.token_ms)
        warning = self._get("token_warning")
        if warning > 100:
            raise ConfigError(
                f"The token warning parameter ({warning}%) must be between 0 (disabled) and 100.",
                key="totem.token_warning",
            )
        self._check_retransmit()
        self._minimum_hold()
        self._minimum("join", "The join timeout parameter", self._get)
        self._minimum("consensus", "The consensus timeout parameter", lambda _: self.consensus_ms)
        if self.consensus_ms < self._get("join"):
            raise ConfigError(
                f"The consensus timeout parameter ({self.consensus_ms} ms) may not be less than "
                f"join timeout ({self._get('join')} ms).",
                key=self._key_if_set("consensus", "join"),
            )
        self._minimum("merge", "The merge timeout parameter", self._get)
        self._minimum("downcheck", "The downcheck timeout parameter", self._get)

    def _minimum(self, name: str, what: str, value_of: _ValueOf) -> None:
        value = value_of(name)
        if value < MINIMUM_TIMEOUT_MS:
            raise ConfigError(
                f"{what} ({value} ms) may not be less than ({MINIMUM_TIMEOUT_MS} ms).",
                key=self._key_if_set(name, "token"),
            )

    def _check_retransmit(self) -> None:
        if self.token_retransmit_ms >= MINIMUM_TIMEOUT_MS:
            return
        if "totem.token_retransmit" in self._parsed:
            raise ConfigError(
                f"The token retransmit timeout parameter ({self.token_retransmit_ms} ms) "
                f"may not be less than ({MINIMUM_TIMEOUT_MS} ms).",
                key="totem.token_retransmit",
            )
        raise ConfigError(
            "Not appropriate token or token_retransmits_before_loss_const value set",
            key=self._key_if_set("token_retransmits_before_loss_const", "token"),
        )

    def _minimum_hold(self) -> None:
        if self.hold_ms < MINIMUM_TIMEOUT_HOLD_MS:
            raise ConfigError(
                f"The token hold timeout parameter ({self.hold_ms} ms) may not be less than "
                f"({MINIMUM_TIMEOUT_HOLD_MS} ms).",
                key=self._key_if_set("hold", "token_retransmit"),
            )

    def _key_if_set(self, name: str, fallback: str) -> str | None:
        """The key to blame: ``name`` if the file sets it, else ``fallback`` if set, else none."""
        for candidate in (name, fallback):
            if "totem." + candidate in self._parsed:
                return "totem." + candidate
        return None

    def _key_for_token(self) -> str | None:
        return self._key_if_set("token_coefficient", "token")


def _c_float(value: float) -> float:
    """``value`` rounded to a C ``float``, as Corosync's ``(int)(float)(1.2 * token)`` does."""
    result: float = struct.unpack("f", struct.pack("f", value))[0]
    return result


def _yes_no(parsed: ParsedConfig, key: str, *, default: bool) -> bool:
    """Corosync's yes/no switches: any other word keeps the default."""
    value = parsed.get_str(key)
    if value == "yes":
        return True
    if value == "no":
        return False
    return default


def _link_mode(parsed: ParsedConfig) -> LinkMode:
    value = parsed.get_str("totem.link_mode")
    if value is None:
        return LinkMode.PASSIVE
    if len(value.encode()) >= LINK_MODE_MAX_LEN:
        raise ConfigError("totem.link_mode is too long", key="totem.link_mode")
    try:
        return LinkMode(value)
    except ValueError:
        raise ConfigError(
            f'The Knet link mode "{value}" specified is invalid.  '
            "It must be active, passive or rr.",
            key="totem.link_mode",
        ) from None


def _netmtu(parsed: ParsedConfig, transport: Transport) -> int:
    netmtu = parsed.get_int("totem.netmtu") or _NETMTU_DEFAULT[transport]
    low, high = NETMTU_RANGE
    if not low <= netmtu <= high:
        raise ConfigError(
            f"The netmtu parameter ({netmtu}) must be between {low} and {high}.",
            key="totem.netmtu",
        )
    return netmtu


def _crypto(parsed: ParsedConfig) -> CryptoConfig:
    cipher, hash_ = "aes256", "sha256"  # secure by default (DESIGN.md, Security)
    secauth = parsed.get_str("totem.secauth")
    if secauth is not None:
        # Corosync reads anything but "on" as off; with encryption on by default, a typo
        # ("secauth: yes") would silently switch it off, so only on and off are accepted.
        if secauth not in ("on", "off"):
            raise ConfigError("Invalid secauth value. Should be on or off", key="totem.secauth")
        cipher, hash_ = ("aes256", "sha256") if secauth == "on" else ("none", "none")
    cipher = parsed.get_str("totem.crypto_cipher") or cipher
    hash_ = parsed.get_str("totem.crypto_hash") or hash_
    if cipher != "none" and hash_ == "none":
        raise ConfigError(
            "crypto_cipher requires crypto_hash with value other than none",
            key="totem.crypto_hash" if "totem.crypto_hash" in parsed else "totem.crypto_cipher",
        )
    keyfile = parsed.get_str("totem.keyfile")
    inline = parsed.get_str("totem.key")
    key = inline.encode() if inline is not None and keyfile is None else None
    if key is not None and (cipher != "none" or hash_ != "none"):
        if len(key) > KEY_LEN_MAX:
            raise ConfigError("key is too long", key="totem.key")
        if len(key) < KEY_LEN_MIN:
            raise ConfigError("key is too short", key="totem.key")
    return CryptoConfig(
        cipher=cipher,
        hash=hash_,
        model=parsed.get_str("totem.crypto_model") or "nss",
        keyfile=keyfile or DEFAULT_KEYFILE,
        key=key,
    )


def check_links(parsed: ParsedConfig, links: Mapping[int, str]) -> None:
    """Link numbers 0..7 only, and a single link unless the transport is knet.

    ``links`` maps each link number to the key that brings it in (for the error's line).
    """
    ordered = sorted(links)
    for link in ordered:
        if link >= INTERFACE_MAX:
            raise ConfigError(
                f"interface ring number {link} is bigger than allowed maximum {INTERFACE_MAX - 1}",
                key=links[link],
            )
    if read_transport(parsed) is not Transport.KNET and len(ordered) > 1:
        raise ConfigError(
            f"{len(ordered)} is too many configured interfaces for non-Knet transport.",
            key=links[ordered[1]],
        )


def _interfaces(
    parsed: ParsedConfig,
    transport: Transport,
    links: list[int],
    token_ms: int,
    link_families: Mapping[int, int],
) -> tuple[InterfaceConfig, ...]:
    if not links:
        raise ConfigError("No interfaces defined")
    check_links(parsed, {link: f"totem.interface.{link}" for link in links})
    return tuple(
        _Interface(parsed, transport, link, token_ms).build(link_families.get(link))
        for link in links
    )


class _Interface:
    """One link's settings, checked as ``totem_config_validate`` checks them."""

    def __init__(self, parsed: ParsedConfig, transport: Transport, link: int, token: int) -> None:
        self._parsed = parsed
        self._transport = transport
        self._link = link
        self._token = token
        self._prefix = f"totem.interface.{link}."

    def _int(self, name: str) -> int | None:
        return self._parsed.get_int(self._prefix + name)

    def build(self, family: int | None) -> InterfaceConfig:
        pong_count = self._int("knet_pong_count") or KNET_PONG_COUNT
        return InterfaceConfig(
            linknumber=self._link,
            mcastport=self._port(),
            mcastaddr=self._mcastaddr(family),
            broadcast=_broadcast(self._parsed),
            bindnetaddr=self._parsed.get_str(self._prefix + "bindnetaddr"),
            ttl=self._ttl(),
            knet_link_priority=self._priority(),
            knet_ping_interval_ms=self._int("knet_ping_interval")
            or self._token // (pong_count * 2),
            knet_ping_timeout_ms=self._int("knet_ping_timeout") or self._token // pong_count,
            knet_ping_precision=self._int("knet_ping_precision") or KNET_PING_PRECISION,
            knet_pong_count=pong_count,
            knet_transport=self._knet_transport(),
        )

    def _error(self, reason: str, name: str) -> ConfigError:
        key = self._prefix + name
        return ConfigError(reason, key=key if key in self._parsed else self._prefix[:-1])

    def _port(self) -> int:
        port = link_port(self._parsed, self._link)
        if port == 0:
            raise self._error(
                f"No multicast port specified for interface {self._link}", "mcastport"
            )
        return port

    def _ttl(self) -> int:
        ttl = self._int("ttl")
        if ttl is None:
            return 1
        if self._transport is not Transport.UDP and ttl != 1:
            raise self._error(
                f"Can only set ttl on multicast transport types for interface {self._link}", "ttl"
            )
        return ttl

    def _priority(self) -> int:
        priority = self._int("knet_link_priority")
        if priority is None:
            return KNET_LINK_PRIORITY
        if self._transport is not Transport.KNET and priority != KNET_LINK_PRIORITY:
            raise self._error(
                f"Can only set link priority on knet transport type for interface {self._link}",
                "knet_link_priority",
            )
        return priority

    def _knet_transport(self) -> str:
        value = self._parsed.get_str(self._prefix + "knet_transport") or "udp"
        if value not in ("udp", "sctp"):
            raise self._error(
                "Unrecognised knet_transport. expected 'udp' or 'sctp'", "knet_transport"
            )
        return value

    def _mcastaddr(self, family: int | None) -> Address | None:
        text = self._parsed.get_str(self._prefix + "mcastaddr")
        address = None
        if text is not None:
            address = parse_literal(text)
            if address is None:
                raise self._error(f"failed to parse mcast address '{text}'", "mcastaddr")
        if self._transport is not Transport.UDP:
            return address
        if _broadcast(self._parsed):
            return parse_literal("255.255.255.255")
        if address is None:
            address = _cluster_mcast_addr(self._parsed, self._link, family)
        if address is None:
            raise self._error(
                f"No multicast address specified for interface {self._link}", "mcastaddr"
            )
        self._check_multicast(address, family)
        return address

    def _check_multicast(self, address: Address, family: int | None) -> None:
        if family is not None and address.version != family:
            raise self._error(
                "Multicast address family does not match bind address family for interface "
                f"{self._link}",
                "mcastaddr",
            )
        if not address.is_multicast:
            raise self._error(
                f"mcastaddr is not a correct multicast address for interface {self._link}",
                "mcastaddr",
            )


def _cluster_mcast_addr(parsed: ParsedConfig, link: int, family: int | None) -> Address | None:
    """udp without mcastaddr: Corosync's address derived from ``cluster_name``."""
    name = parsed.get_str("totem.cluster_name")
    if name is None:
        return None
    folded = 0
    for byte in name.encode():
        # C's ``char`` is signed on x86: bytes above 127 count as negative.
        folded = (folded << 1) + (byte - 256 if byte > 127 else byte)
    cluster_id = ((folded & 0xFFFF) + link) & 0xFFFF
    if family == 6:
        return parse_literal(f"ff15::{cluster_id:x}")
    return parse_literal(f"239.192.{cluster_id >> 8}.{cluster_id % 0xFF}")


def read_authkey(crypto: CryptoConfig) -> bytes | None:
    """The shared key (None without crypto), read as Corosync reads it: up to 4096 bytes."""
    if not crypto.enabled:
        return None
    if crypto.key is not None:
        return crypto.key
    try:
        with open(crypto.keyfile, "rb") as keyfile:
            key = keyfile.read(KEY_LEN_MAX)
    except OSError as error:
        verb = "open" if error.filename else "read"
        raise ConfigError(
            f"Could not {verb} {crypto.keyfile}: {error.strerror}", key="totem.keyfile"
        ) from None
    if len(key) < KEY_LEN_MIN:
        raise ConfigError(
            f"Could only read {len(key) * 8} bits of minimum {KEY_LEN_MIN * 8} bits "
            f"from {crypto.keyfile}.",
            key="totem.keyfile",
        )
    return key
