"""Throughput of the packet protection layer (operations per second, one core).

Usage: ``python bench/crypto_bench.py [--seconds S]``. For each mode (aes256+sha256: AES-GCM;
none+sha256: HMAC only; none+none) and payload size (64 B, 1 KiB, 1400 B) it times one sender
sealing a payload and another node opening it, as a pair (``seal_open_per_s``), and each half
alone; every figure is the best of five rounds. ``forged_new_boot_per_s`` is how many packets
with a new, forged boot id a node refuses per second (each costs one key derivation): the
price of a flood from someone who knows a member's nodeid but not the key.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable

from pycorosync.exec.totemconfig import CryptoConfig
from pycorosync.exec.totemcrypto import HEADER, MAGIC, CryptoError, PacketCrypto, PacketMode

BATCH = 1000
ROUNDS = 5
AUTHKEY = os.urandom(256)
MODES = {"aes256_sha256": ("aes256", "sha256"), "hash_sha256": ("none", "sha256")}
MODES["none"] = ("none", "none")
SIZES = {"64B": 64, "1KiB": 1024, "1400B": 1400}


def _rate(operation: Callable[[], object], seconds: float) -> int:
    """The best of ROUNDS rounds, so that a busy host's other work counts as little as it can."""
    best = 0.0
    for _ in range(ROUNDS):
        count = 0
        start = time.perf_counter()
        deadline = start + seconds / ROUNDS
        while time.perf_counter() < deadline:
            for _ in range(BATCH):
                operation()
            count += BATCH
        best = max(best, count / (time.perf_counter() - start))
    return round(best)


def _node(mode: tuple[str, str], nodeid: int) -> PacketCrypto:
    crypto = CryptoConfig(cipher=mode[0], hash=mode[1], model="nss", keyfile="-", key=None)
    return PacketCrypto(crypto, AUTHKEY, nodeid, (1, 2), time.time_ns())


def _case(mode: tuple[str, str], size: int, seconds: float) -> dict[str, int]:
    sender, receiver = _node(mode, 1), _node(mode, 2)
    payload = os.urandom(size)
    packet = sender.seal(payload)
    if receiver.open(packet) != (1, payload):
        raise SystemExit(f"{mode} does not round-trip")
    seal, open_ = sender.seal, receiver.open
    return {
        "packet_bytes": len(packet),
        "seal_open_per_s": _rate(lambda: open_(seal(payload)), seconds),
        "seal_per_s": _rate(lambda: seal(payload), seconds),
        "open_per_s": _rate(lambda: open_(packet), seconds),
    }


def _forged_new_boots(seconds: float) -> int:
    receiver = _node(MODES["aes256_sha256"], 2)
    prefix = MAGIC << 16 | 1 << 8 | PacketMode(*MODES["aes256_sha256"]).byte
    body = os.urandom(100)
    boots = iter(range(1, 1 << 62))

    def forged() -> None:
        try:
            receiver.open(HEADER.pack(prefix, 1, next(boots), 0) + body)
        except CryptoError:
            return
        raise SystemExit("a forged packet was accepted")

    return _rate(forged, seconds)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="time per operation")
    args = parser.parse_args(argv)
    results: dict[str, object] = {
        f"{name}_{label}": _case(mode, size, args.seconds)
        for name, mode in MODES.items()
        for label, size in SIZES.items()
    }
    results["forged_new_boot_per_s"] = _forged_new_boots(args.seconds)
    json.dump(
        {"benchmark": "totemcrypto", "python": sys.version.split()[0], "results": results},
        sys.stdout,
        indent=2,
    )
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
