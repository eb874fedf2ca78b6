"""Packet protection for every Totem datagram: seal before sending, open before parsing.

Theory of operation
-------------------
The Totem process hands every datagram it sends to :meth:`PacketCrypto.seal` and every datagram
it receives to :meth:`PacketCrypto.open`, before any SRP parsing; a :class:`CryptoError` means
"drop it and log the reason (rate-limited by :attr:`CryptoError.kind`)". Nothing here does I/O
or reads a clock: the boot id comes in through the constructor.

Every packet starts with a fixed header, network byte order, 24 bytes::

    0  u16  magic    MAGIC (0xC0A6; the bare SRP format is 0xC0A5)
    2  u8   version  FORMAT_VERSION
    3  u8   mode     cipher id << 4 | hash id (CIPHER_IDS, HASH_IDS)
    4  u32  sender   nodeid of the sealer
    8  u64  boot     the sealer's boot id, chosen at start, larger on every restart
    16 u64  counter  0, 1, 2, ... per sealer; never repeats within one boot

then the body, which depends on the mode (``crypto_cipher``/``crypto_hash``):

* **cipher set** (aes128/192/256): ``AES-GCM(payload) | tag(16)``; the header is the
  associated data and the nonce is header bytes 12..24 (the low half of the boot id and the
  counter), so the nonce is unique under each key and never random. GCM's own tag
  authenticates; ``crypto_hash`` then only names the mode, which both ends must share.
* **hash only** (cipher none): ``payload | HMAC-<hash>(header | payload)``, full-length tag;
  the payload travels in clear.
* **none/none**: ``payload``. No protection, but the header still lets a receiver say
  "the other node runs another crypto mode" instead of failing to parse garbage.

Keys. Nothing is keyed with the authkey directly: each (sender, boot) has its own subkey,
HKDF-SHA256 of the authkey with ``info = KDF_LABEL | version | len(mode) | mode name |
u32 sender | u64 boot``, as long as the AES key or the hash's digest. Binding the mode name means
two modes never share a key; binding the boot means a restarted node never reuses a nonce
under an old key, without having to remember its counter. The AESGCM object of our own
subkey is built once, at construction.

Receiving. The fast path is one ``struct`` unpack, one compare of magic+version+mode as a
u32, one dict look-up of the sender's newest authenticated boot, and one AEAD (or HMAC) call.
Anything else takes the slow path:

* a malformed header (length, magic, version, mode) is refused before any key is derived;
* a sender outside the configured members is refused before any key is derived, so the
  receiver table holds at most one entry per member;
* a boot older than the newest one already authenticated from that sender is refused (a
  replay of a previous run, or a delayed packet from before the restart);
* a newer boot costs one HKDF derivation and one authentication attempt, which cannot be
  avoided; the new key replaces the old only once a packet has authenticated under it, so a
  forged packet never evicts or displaces a real peer and leaves no state behind.

Our own nodeid is a member (multicast loops back), but only with our own boot: another boot
under our nodeid is a replay of an earlier run or a second node configured with our nodeid.

Duplicates within one boot pass: Totem tolerates and discards them itself, so no per-packet
replay window is kept. In none/none the boot rule is a sanity filter, not a defence.

The boot id must grow across restarts of a node: the daemon takes the wall clock in nanoseconds,
or one more than the last boot id it stored in its state directory if the clock was stepped
back (:func:`pycorosync.exec.totemproc.next_boot_id`).
"""

from __future__ import annotations

import hmac
import itertools
import struct
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import Final, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from pycorosync.exec.config_error import ConfigError
from pycorosync.exec.totem.srp_wire import MAGIC as SRP_MAGIC
from pycorosync.exec.totemconfig import KEY_LEN_MIN, CryptoConfig

MAGIC: Final = 0xC0A6
FORMAT_VERSION: Final = 1
HEADER: Final = struct.Struct(">IIQQ")
"""magic << 16 | version << 8 | mode, sender, boot, counter."""
HEADER_SIZE: Final = HEADER.size
GCM_TAG_SIZE: Final = 16
KDF_LABEL: Final = b"pycorosync totem packet subkey"
CIPHER_IDS: Final[Mapping[str, int]] = MappingProxyType(
    {"none": 0, "aes128": 1, "aes192": 2, "aes256": 3}
)
HASH_IDS: Final[Mapping[str, int]] = MappingProxyType(
    {"none": 0, "md5": 1, "sha1": 2, "sha256": 3, "sha384": 4, "sha512": 5}
)
_DIGEST_SIZES: Final = MappingProxyType(
    {"none": 0, "md5": 16, "sha1": 20, "sha256": 32, "sha384": 48, "sha512": 64}
)
_U32_MAX: Final = 0xFFFFFFFF
_U64_MAX: Final = 0xFFFFFFFFFFFFFFFF
_PREFIX: Final = struct.Struct(">HBB")
_KDF_SENDER: Final = struct.Struct(">IQ")
_NOT_TOTEM = (
    "not a pycorosync Totem packet (magic 0x{magic:04x}, expected 0x{expected:04X}): "
    "another program, or a C Corosync/knet node, sends to this port"
)


class Refusal(StrEnum):
    """Why :meth:`PacketCrypto.open` refused a packet (one rate-limit bucket each)."""

    TOO_SHORT = "too-short"
    NOT_TOTEM = "not-totem"
    VERSION = "version"
    MODE = "mode"
    UNKNOWN_SENDER = "unknown-sender"
    OLD_BOOT = "old-boot"
    DIGEST = "digest"


class CryptoError(Exception):
    """A refused packet; :attr:`reason` is the operator-facing text."""

    def __init__(self, kind: Refusal, reason: str) -> None:
        super().__init__(kind, reason)
        self._kind = kind
        self._reason = reason

    @property
    def kind(self) -> Refusal:
        return self._kind

    @property
    def reason(self) -> str:
        return self._reason

    def __str__(self) -> str:
        return self._reason


@dataclass(frozen=True, slots=True)
class PacketMode:
    """A ``crypto_cipher``/``crypto_hash`` pair as it travels in the mode byte."""

    cipher: str
    hash: str

    def __post_init__(self) -> None:
        if self.cipher not in CIPHER_IDS:
            raise ValueError(f"unknown crypto_cipher {self.cipher!r}")
        if self.hash not in HASH_IDS:
            raise ValueError(f"unknown crypto_hash {self.hash!r}")

    @classmethod
    def from_byte(cls, byte: int) -> PacketMode | None:
        """The mode a mode byte names, or None for ids this release does not know."""
        cipher = _name_of(CIPHER_IDS, byte >> 4)
        hash_ = _name_of(HASH_IDS, byte & 0x0F)
        return None if cipher is None or hash_ is None else cls(cipher, hash_)

    @property
    def byte(self) -> int:
        return CIPHER_IDS[self.cipher] << 4 | HASH_IDS[self.hash]

    @property
    def name(self) -> str:
        """``aes256/sha256``: what the key derivation binds."""
        return f"{self.cipher}/{self.hash}"

    @property
    def protected(self) -> bool:
        return self.cipher != "none" or self.hash != "none"

    @property
    def key_size(self) -> int:
        """Bytes of subkey: the AES key, else the HMAC key (the digest's size), else 0."""
        if self.cipher != "none":
            return int(self.cipher.removeprefix("aes")) // 8
        return _DIGEST_SIZES[self.hash]

    @property
    def tag_size(self) -> int:
        return GCM_TAG_SIZE if self.cipher != "none" else _DIGEST_SIZES[self.hash]

    def __str__(self) -> str:
        return f"crypto_cipher {self.cipher}/crypto_hash {self.hash}"


def _name_of(ids: Mapping[str, int], wanted: int) -> str | None:
    return next((name for name, value in ids.items() if value == wanted), None)


def derive_subkey(authkey: bytes, mode: PacketMode, sender: int, boot: int) -> bytes:
    """The subkey of one sender's boot: HKDF-SHA256 over the authkey (module docstring)."""
    name = mode.name.encode("ascii")
    info = KDF_LABEL + bytes((FORMAT_VERSION, len(name))) + name + _KDF_SENDER.pack(sender, boot)
    kdf = HKDF(algorithm=hashes.SHA256(), length=mode.key_size, salt=None, info=info)
    return kdf.derive(authkey)


# --- the per-(sender, boot) keys: one seal and one open each ----------------------------------


class _Key(Protocol):
    def seal(self, header: bytes, payload: bytes) -> bytes: ...

    def open(self, packet: bytes) -> bytes:
        """The payload; raises InvalidTag when the packet does not authenticate."""
        ...


class _AeadKey:
    __slots__ = ("_aead",)

    def __init__(self, subkey: bytes) -> None:
        self._aead = AESGCM(subkey)

    def seal(self, header: bytes, payload: bytes) -> bytes:
        return header + self._aead.encrypt(header[12:], payload, header)

    def open(self, packet: bytes) -> bytes:
        return self._aead.decrypt(
            packet[12:HEADER_SIZE], packet[HEADER_SIZE:], packet[:HEADER_SIZE]
        )


class _HmacKey:
    __slots__ = ("_digest", "_subkey", "_tag_size")

    def __init__(self, subkey: bytes, digest: str, tag_size: int) -> None:
        self._subkey = subkey
        self._digest = digest
        self._tag_size = tag_size

    def seal(self, header: bytes, payload: bytes) -> bytes:
        signed = header + payload
        return signed + hmac.digest(self._subkey, signed, self._digest)

    def open(self, packet: bytes) -> bytes:
        split = len(packet) - self._tag_size
        signed = packet[:split]
        if not hmac.compare_digest(hmac.digest(self._subkey, signed, self._digest), packet[split:]):
            raise InvalidTag
        return signed[HEADER_SIZE:]


class _ClearKey:
    __slots__ = ()

    def seal(self, header: bytes, payload: bytes) -> bytes:
        return header + payload

    def open(self, packet: bytes) -> bytes:
        return packet[HEADER_SIZE:]


_CLEAR: Final = _ClearKey()


@dataclass(frozen=True, slots=True)
class _Peer:
    boot: int
    key: _Key


# --- the protection layer --------------------------------------------------------------------


class PacketCrypto:
    """Seals our datagrams and opens everybody's, for one boot of one node."""

    def __init__(
        self,
        crypto: CryptoConfig,
        authkey: bytes | None,
        nodeid: int,
        members: Collection[int],
        boot_id: int,
    ) -> None:
        self._mode = PacketMode(crypto.cipher, crypto.hash)
        _check_range("nodeid", nodeid, 1, _U32_MAX)
        _check_range("boot id", boot_id, 0, _U64_MAX)
        self._authkey = _checked_authkey(self._mode, authkey, crypto.keyfile)
        self._nodeid = nodeid
        self._boot_id = boot_id
        self._prefix = MAGIC << 16 | FORMAT_VERSION << 8 | self._mode.byte
        self._min_size = HEADER_SIZE + self._mode.tag_size
        self._counter = itertools.count()
        self._own = self._key(nodeid, boot_id)
        self._members: frozenset[int] = frozenset()
        self._peers: dict[int, _Peer] = {}
        self.set_members(members)

    # -- the hot path --

    def seal(self, payload: bytes) -> bytes:
        """The datagram to send for ``payload``."""
        try:
            header = HEADER.pack(self._prefix, self._nodeid, self._boot_id, next(self._counter))
        except struct.error:
            raise OverflowError(
                "2**64 packets sealed under one boot id; restart with a new boot id"
            ) from None
        return self._own.seal(header, payload)

    def open(self, packet: bytes) -> tuple[int, bytes]:
        """(sender nodeid, payload) of a received datagram; :class:`CryptoError` if refused."""
        if len(packet) < self._min_size:
            raise self._diagnose(packet)
        prefix, sender, boot, _counter = HEADER.unpack_from(packet)
        if prefix != self._prefix:
            raise self._diagnose(packet)
        peer = self._peers.get(sender)
        if peer is None or peer.boot != boot:
            return sender, self._open_new_boot(sender, boot, packet)
        try:
            return sender, peer.key.open(packet)
        except InvalidTag:
            raise _digest_error(sender, boot) from None

    # -- state and figures --

    @property
    def overhead(self) -> int:
        """Bytes :meth:`seal` adds to a payload (for MTU sizing)."""
        return self._min_size

    @property
    def mode(self) -> PacketMode:
        return self._mode

    @property
    def nodeid(self) -> int:
        return self._nodeid

    @property
    def boot_id(self) -> int:
        return self._boot_id

    @property
    def members(self) -> frozenset[int]:
        """The nodeids whose packets are accepted (ours included)."""
        return self._members

    @property
    def known_boots(self) -> Mapping[int, int]:
        """Sender → its newest authenticated boot (at most one entry per member)."""
        return MappingProxyType({sender: peer.boot for sender, peer in self._peers.items()})

    def set_members(self, members: Collection[int]) -> None:
        """Accept packets from ``members`` (the nodelist) from now on; forget the others."""
        for member in members:
            _check_range("member nodeid", member, 1, _U32_MAX)
        self._members = frozenset(members) | {self._nodeid}
        self._peers = {s: p for s, p in self._peers.items() if s in self._members}
        self._peers[self._nodeid] = _Peer(self._boot_id, self._own)

    # -- the slow path --

    def _key(self, sender: int, boot: int) -> _Key:
        mode = self._mode
        if not mode.protected:
            return _CLEAR
        subkey = derive_subkey(self._authkey, mode, sender, boot)
        if mode.cipher != "none":
            return _AeadKey(subkey)
        return _HmacKey(subkey, mode.hash, mode.tag_size)

    def _open_new_boot(self, sender: int, boot: int, packet: bytes) -> bytes:
        """A member's first packet of a boot: refuse old boots, authenticate, then remember."""
        if sender not in self._members:
            raise CryptoError(
                Refusal.UNKNOWN_SENDER,
                f"packet from nodeid {sender}, which is not in this node's nodelist",
            )
        if sender == self._nodeid:
            raise _own_nodeid_error(sender, boot, self._boot_id)
        known = self._peers.get(sender)
        if known is not None and boot < known.boot:
            raise _old_boot_error(sender, boot, known.boot)
        key = self._key(sender, boot)
        try:
            payload = key.open(packet)
        except InvalidTag:
            raise _digest_error(sender, boot) from None
        self._peers[sender] = _Peer(boot, key)
        return payload

    def _diagnose(self, packet: bytes) -> CryptoError:
        """The reason a packet failed the fast path's length or magic/version/mode check."""
        if len(packet) < _PREFIX.size:
            return self._too_short(packet)
        magic, version, mode = _PREFIX.unpack_from(packet)
        if magic == SRP_MAGIC:
            reason = (
                f"a bare Totem SRP datagram (magic 0x{SRP_MAGIC:04X}) without the packet "
                "protection header: the sending node runs a release that does not seal packets"
            )
            return CryptoError(Refusal.NOT_TOTEM, reason)
        if magic != MAGIC:
            return CryptoError(Refusal.NOT_TOTEM, _NOT_TOTEM.format(magic=magic, expected=MAGIC))
        if version != FORMAT_VERSION:
            reason = (
                f"packet uses packet protection format version {version}, this node speaks "
                f"version {FORMAT_VERSION}: the sending node runs an incompatible release"
            )
            return CryptoError(Refusal.VERSION, reason)
        if len(packet) >= HEADER_SIZE and mode != self._mode.byte:
            return self._mode_error(mode, HEADER.unpack_from(packet)[1])
        return self._too_short(packet)

    def _mode_error(self, byte: int, sender: int) -> CryptoError:
        theirs = PacketMode.from_byte(byte)
        described = f"an unknown crypto mode 0x{byte:02x}" if theirs is None else str(theirs)
        return CryptoError(
            Refusal.MODE,
            f"crypto mode mismatch: this node runs {self._mode}, the packet came from node "
            f"{sender}, which runs {described}; set the same crypto_cipher and crypto_hash "
            "on every node",
        )

    def _too_short(self, packet: bytes) -> CryptoError:
        return CryptoError(
            Refusal.TOO_SHORT,
            f"packet of {len(packet)} bytes is too short: with {self._mode} a packet has at "
            f"least {self._min_size} bytes",
        )


def _checked_authkey(mode: PacketMode, authkey: bytes | None, keyfile: str) -> bytes:
    if not mode.protected:
        return b""
    if authkey is None or len(authkey) < KEY_LEN_MIN:
        found = "no authkey" if authkey is None else f"an authkey of {len(authkey)} bytes"
        raise ConfigError(
            f"{mode} needs the shared authkey ({keyfile}, at least {KEY_LEN_MIN} bytes) but "
            f"there is {found}: run corosync-keygen and copy the key to every node",
            key="totem.keyfile",
        )
    return authkey


def _check_range(what: str, value: int, low: int, high: int) -> None:
    if not low <= value <= high:
        raise ValueError(f"{what} {value} is outside {low}..{high}")


def _digest_error(sender: int, boot: int) -> CryptoError:
    return CryptoError(
        Refusal.DIGEST,
        f"digest does not match: the packet from node {sender} (boot {boot}) failed "
        "authentication; the nodes do not share one authkey, or the packet was altered",
    )


def _old_boot_error(sender: int, boot: int, newest: int) -> CryptoError:
    return CryptoError(
        Refusal.OLD_BOOT,
        f"packet from node {sender} comes from its boot {boot}, older than its boot {newest} "
        "already authenticated: a replay or a late packet of a previous run (or the node's "
        "clock went back before it restarted)",
    )


def _own_nodeid_error(sender: int, boot: int, own_boot: int) -> CryptoError:
    return CryptoError(
        Refusal.UNKNOWN_SENDER,
        f"packet carries this node's own nodeid {sender} with boot {boot}, but this node runs "
        f"boot {own_boot}: a replay of an earlier run, or another node configured with nodeid "
        f"{sender}",
    )
