"""Packet protection: round trips, tampering, mode and key mismatches, boots, bounds."""

from __future__ import annotations

import contextlib
import itertools
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pycorosync.exec import totemcrypto
from pycorosync.exec.config_error import ConfigError
from pycorosync.exec.totem.events import RingId
from pycorosync.exec.totem.srp_wire import MergeDetect, encode
from pycorosync.exec.totemconfig import CryptoConfig
from pycorosync.exec.totemcrypto import (
    GCM_TAG_SIZE,
    HEADER,
    HEADER_SIZE,
    MAGIC,
    CryptoError,
    PacketCrypto,
    PacketMode,
    Refusal,
    derive_subkey,
)

AUTHKEY = bytes(range(256))
OTHER_KEY = bytes(reversed(range(256)))
MEMBERS = (1, 2, 3)
CIPHERS = ("aes128", "aes192", "aes256")
HASHES = ("md5", "sha1", "sha256", "sha384", "sha512")
ALL_MODES = [("none", "none"), *((c, h) for c in CIPHERS for h in HASHES)]
ALL_MODES += [("none", h) for h in HASHES]
PROTECTED = [mode for mode in ALL_MODES if mode != ("none", "none")]
CIPHER_MODE = ("aes256", "sha256")
ONE_OF_EACH = [("none", "none"), CIPHER_MODE, ("none", "sha256")]


def config(cipher: str, hash_: str) -> CryptoConfig:
    return CryptoConfig(cipher=cipher, hash=hash_, model="nss", keyfile="/etc/k", key=None)


def node(
    nodeid: int,
    mode: tuple[str, str] = CIPHER_MODE,
    *,
    boot: int = 1000,
    key: bytes | None = AUTHKEY,
    members: tuple[int, ...] = MEMBERS,
) -> PacketCrypto:
    return PacketCrypto(config(*mode), key, nodeid, members, boot)


def refusal(receiver: PacketCrypto, packet: bytes) -> CryptoError:
    with pytest.raises(CryptoError) as caught:
        receiver.open(packet)
    return caught.value


# --- round trips -----------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ALL_MODES, ids="/".join)
@given(payload=st.binary(max_size=1500))
@settings(max_examples=10)
def test_round_trip_in_every_mode(mode: tuple[str, str], payload: bytes) -> None:
    sender, receiver = node(1, mode), node(2, mode)
    packet = sender.seal(payload)
    assert len(packet) == len(payload) + sender.overhead
    assert receiver.open(packet) == (1, payload)
    assert sender.open(packet) == (1, payload)  # multicast loops back to the sender


@pytest.mark.parametrize(
    ("mode", "overhead"),
    [
        (("none", "none"), HEADER_SIZE),
        (("none", "md5"), HEADER_SIZE + 16),
        (("none", "sha1"), HEADER_SIZE + 20),
        (("none", "sha512"), HEADER_SIZE + 64),
        (("aes128", "sha1"), HEADER_SIZE + GCM_TAG_SIZE),
        (("aes256", "sha512"), HEADER_SIZE + GCM_TAG_SIZE),
    ],
)
def test_overhead(mode: tuple[str, str], overhead: int) -> None:
    assert node(1, mode).overhead == overhead


def test_header_layout() -> None:
    packet = node(3, ("aes192", "sha384"), boot=0x0102030405060708).seal(b"x")
    assert packet[:HEADER_SIZE] == bytes.fromhex(
        "c0a6 01 24 00000003 0102030405060708 0" + "0" * 15
    )
    assert HEADER.unpack_from(node(3, boot=9).seal(b""))[1:] == (3, 9, 0)


def test_payload_is_encrypted_only_with_a_cipher() -> None:
    payload = b"a recognisable totem payload" * 4
    assert payload not in node(1, CIPHER_MODE).seal(payload)
    assert payload in node(1, ("none", "sha256")).seal(payload)
    assert node(1, ("none", "none")).seal(payload)[HEADER_SIZE:] == payload


# --- tampering and garbage -------------------------------------------------------------------


@pytest.mark.parametrize("mode", [CIPHER_MODE, ("aes128", "md5"), ("none", "sha1")], ids="/".join)
@given(data=st.data(), payload=st.binary(max_size=200))
@settings(max_examples=60)
def test_any_single_bit_flip_is_refused(
    mode: tuple[str, str], data: st.DataObject, payload: bytes
) -> None:
    sender, receiver = node(1, mode), node(2, mode)
    packet = sender.seal(payload)
    bit = data.draw(st.integers(0, len(packet) * 8 - 1), label="bit")
    flipped = bytearray(packet)
    flipped[bit // 8] ^= 1 << (bit % 8)
    refusal(receiver, bytes(flipped))
    assert receiver.open(packet) == (1, payload)  # the forgery changed nothing


def test_truncations_are_refused() -> None:
    for mode in PROTECTED:
        sender, receiver = node(1, mode), node(2, mode)
        packet = sender.seal(b"payload")
        for length in range(len(packet)):
            refusal(receiver, packet[:length])


@pytest.mark.parametrize("mode", ONE_OF_EACH, ids="/".join)
@given(garbage=st.binary(max_size=120))
@settings(max_examples=80)
def test_garbage_is_refused_with_crypto_error_only(mode: tuple[str, str], garbage: bytes) -> None:
    receiver = node(2, mode)
    with contextlib.suppress(CryptoError):  # anything else fails the test
        receiver.open(garbage)


@given(
    sender=st.sampled_from([0, 1, 2, 3, 4, 0xFFFFFFFF]),
    boot=st.integers(0, 2**64 - 1),
    counter=st.integers(0, 2**64 - 1),
    body=st.binary(max_size=80),
)
@settings(max_examples=150)
def test_well_formed_headers_with_garbage_bodies_are_refused(
    sender: int, boot: int, counter: int, body: bytes
) -> None:
    receiver = node(2)
    packet = HEADER.pack(
        MAGIC << 16 | 1 << 8 | PacketMode(*CIPHER_MODE).byte, sender, boot, counter
    )
    error = refusal(receiver, packet + body)
    assert error.kind in {Refusal.TOO_SHORT, Refusal.UNKNOWN_SENDER, Refusal.DIGEST}
    assert receiver.known_boots == {2: 1000}


# --- keys and modes --------------------------------------------------------------------------


@pytest.mark.parametrize("mode", PROTECTED, ids="/".join)
def test_a_different_authkey_is_refused_as_a_digest_mismatch(mode: tuple[str, str]) -> None:
    error = refusal(node(2, mode), node(1, mode, key=OTHER_KEY).seal(b"hello"))
    assert error.kind is Refusal.DIGEST
    assert "digest" in error.reason
    assert "node 1" in error.reason


def test_mode_mismatch_is_reported_clearly() -> None:
    error = refusal(node(2, CIPHER_MODE), node(1, ("none", "none")).seal(b"x" * 100))
    assert error.kind is Refusal.MODE
    assert "this node runs crypto_cipher aes256/crypto_hash sha256" in error.reason
    assert "node 1, which runs crypto_cipher none/crypto_hash none" in error.reason


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        (("none", "none"), CIPHER_MODE),
        (CIPHER_MODE, ("aes256", "sha1")),
        (CIPHER_MODE, ("aes128", "sha256")),
        (("none", "sha256"), CIPHER_MODE),
    ],
)
def test_every_mode_mismatch_is_a_mode_refusal(
    ours: tuple[str, str], theirs: tuple[str, str]
) -> None:
    for payload in (b"", b"x" * 100):  # also when the packet is shorter than ours would be
        error = refusal(node(2, ours), node(1, theirs).seal(payload))
        assert error.kind is Refusal.MODE
        assert str(PacketMode(*theirs)) in error.reason


def test_an_unknown_mode_byte_is_named() -> None:
    packet = bytearray(node(1).seal(b"x"))
    packet[3] = 0x7F
    assert "unknown crypto mode 0x7f" in refusal(node(2), bytes(packet)).reason


def test_bare_srp_and_foreign_packets_are_named() -> None:
    srp = encode(MergeDetect(sender=1, ring_id=RingId(seq=4, rep=1)))
    assert "bare Totem SRP datagram" in refusal(node(2), srp).reason
    assert refusal(node(2), b"\x01\x02" + bytes(60)).kind is Refusal.NOT_TOTEM
    other_version = bytearray(node(1).seal(b"x"))
    other_version[2] = 9
    error = refusal(node(2), bytes(other_version))
    assert error.kind is Refusal.VERSION
    assert "version 9" in error.reason


def test_subkeys_are_bound_to_mode_sender_and_boot() -> None:
    aes = PacketMode("aes256", "sha256")
    base = derive_subkey(AUTHKEY, aes, 1, 5)
    assert len(base) == 32
    assert base == derive_subkey(AUTHKEY, aes, 1, 5)
    others = {
        derive_subkey(OTHER_KEY, aes, 1, 5),
        derive_subkey(AUTHKEY, aes, 2, 5),
        derive_subkey(AUTHKEY, aes, 1, 6),
        derive_subkey(AUTHKEY, PacketMode("aes256", "sha1"), 1, 5),
        derive_subkey(AUTHKEY, PacketMode("aes128", "sha256"), 1, 5)[:16],
    }
    assert base not in others
    assert len(others) == 5
    assert len(derive_subkey(AUTHKEY, PacketMode("none", "sha384"), 1, 5)) == 48


@pytest.mark.parametrize("key", [None, b"short"])
def test_a_missing_or_short_authkey_says_to_run_corosync_keygen(key: bytes | None) -> None:
    with pytest.raises(ConfigError) as caught:
        node(1, CIPHER_MODE, key=key)
    assert "corosync-keygen" in caught.value.reason
    assert "/etc/k" in caught.value.reason
    assert caught.value.key == "totem.keyfile"


def test_none_none_needs_no_key() -> None:
    assert node(2, ("none", "none"), key=None).open(node(1, ("none", "none")).seal(b"a")) == (
        1,
        b"a",
    )


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="crypto_cipher"):
        node(1, ("3des", "sha1"))
    with pytest.raises(ValueError, match="nodeid"):
        node(0)
    with pytest.raises(ValueError, match="boot id"):
        node(1, boot=-1)
    with pytest.raises(ValueError, match="member"):
        node(1, members=(1, 0))


# --- nonces and boots ------------------------------------------------------------------------


def test_nonces_never_repeat() -> None:
    sealer = node(1)
    nonces = [sealer.seal(b"")[12:HEADER_SIZE] for _ in range(20_000)]
    assert len(set(nonces)) == len(nonces)
    counters = [int.from_bytes(nonce[4:]) for nonce in nonces]
    assert counters == list(range(20_000))


def test_restarted_sealers_use_other_keys() -> None:
    first, second = node(1, boot=10), node(1, boot=11)
    one, two = first.seal(b"same payload"), second.seal(b"same payload")
    assert one[HEADER_SIZE:] != two[HEADER_SIZE:]


def test_an_exhausted_counter_stops_sealing() -> None:
    sealer = node(1)
    sealer._counter = itertools.count(2**64 - 1)  # 2**64 seals take too long
    sealer.seal(b"last")
    with pytest.raises(OverflowError, match="new boot id"):
        sealer.seal(b"one too many")


@pytest.mark.parametrize("mode", ONE_OF_EACH, ids="/".join)
def test_a_restart_is_accepted_and_then_the_old_boot_is_refused(mode: tuple[str, str]) -> None:
    receiver = node(2, mode)
    old, new = node(1, mode, boot=1000), node(1, mode, boot=2000)
    late_old = old.seal(b"old run")
    assert receiver.open(old.seal(b"before"))[1] == b"before"
    assert receiver.open(new.seal(b"after"))[1] == b"after"
    assert receiver.known_boots[1] == 2000
    error = refusal(receiver, late_old)
    assert error.kind is Refusal.OLD_BOOT
    assert "boot 1000" in error.reason
    assert refusal(receiver, old.seal(b"more")).kind is Refusal.OLD_BOOT
    assert receiver.open(new.seal(b"still"))[1] == b"still"


def test_duplicates_within_a_boot_pass() -> None:
    receiver, sender = node(2), node(1)
    packet = sender.seal(b"dup")
    assert receiver.open(packet) == receiver.open(packet) == (1, b"dup")


def test_a_forged_newer_boot_does_not_displace_the_real_one() -> None:
    receiver, sender = node(2), node(1, boot=1000)
    receiver.open(sender.seal(b"x"))
    forged = node(1, boot=5000, key=OTHER_KEY).seal(b"forged")
    assert refusal(receiver, forged).kind is Refusal.DIGEST
    assert receiver.known_boots[1] == 1000
    assert receiver.open(sender.seal(b"y")) == (1, b"y")


def test_our_own_nodeid_from_another_boot_is_refused() -> None:
    receiver = node(2, boot=1000)
    error = refusal(receiver, node(2, boot=3000).seal(b"twin"))
    assert error.kind is Refusal.UNKNOWN_SENDER
    assert "own nodeid 2" in error.reason


# --- senders and bounds ----------------------------------------------------------------------


def test_an_unknown_sender_is_refused_without_deriving_a_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    outsider = node(9, members=(9, 2))
    receiver = node(2)
    monkeypatch.setattr(totemcrypto, "derive_subkey", _forbidden)
    error = refusal(receiver, outsider.seal(b"hi"))
    assert error.kind is Refusal.UNKNOWN_SENDER
    assert "nodeid 9" in error.reason
    assert refusal(receiver, b"\xc0\xa6" + bytes(50)).kind is Refusal.VERSION


def test_set_members_admits_and_forgets() -> None:
    receiver, three = node(2), node(3)
    receiver.open(three.seal(b"a"))
    receiver.set_members((1, 2))
    assert set(receiver.known_boots) == {2}
    assert refusal(receiver, three.seal(b"b")).kind is Refusal.UNKNOWN_SENDER
    receiver.set_members((3,))
    assert receiver.members == {2, 3}
    assert receiver.open(three.seal(b"c")) == (3, b"c")


def test_the_sender_table_stays_bounded_under_a_flood_of_forged_boots() -> None:
    receiver = node(2)
    real = node(1, boot=1000)
    receiver.open(real.seal(b"x"))
    mode_byte = PacketMode(*CIPHER_MODE).byte
    for boot in range(5000):
        sender = MEMBERS[boot % 3]
        header = HEADER.pack(MAGIC << 16 | 1 << 8 | mode_byte, sender, 10**9 + boot, 0)
        with pytest.raises(CryptoError):
            receiver.open(header + os.urandom(40))
    assert len(receiver.known_boots) <= len(MEMBERS)
    assert receiver.known_boots == {1: 1000, 2: 1000}
    assert receiver.open(real.seal(b"y")) == (1, b"y")


def _forbidden(*args: object) -> bytes:
    raise AssertionError("a key was derived")
