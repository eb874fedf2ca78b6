"""Encoding and decoding throughput of the Totem SRP wire format (operations per second).

Usage: ``python bench/srp_wire_bench.py [--seconds S]``. Each case encodes one message over
and over, then decodes its datagram over and over, for about ``S`` seconds each; the MCAST
cases also time :func:`encode_mcast`, the fast path that builds no dataclass. The figures are
for one core of this host.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable

from pycorosync.exec.totem.events import Guarantee, RingId
from pycorosync.exec.totem.srp_wire import Mcast, SrpMessage, Token, decode, encode, encode_mcast

RING = RingId(seq=1 << 33, rep=3)
BATCH = 1000


def _rate(operation: Callable[[], object], seconds: float) -> int:
    count = 0
    start = time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        for _ in range(BATCH):
            operation()
        count += BATCH
    return round(count / (time.perf_counter() - start))


def _case(message: SrpMessage, seconds: float) -> dict[str, int]:
    data = encode(message)
    if decode(data) != message:
        raise SystemExit(f"{type(message).__name__} does not round-trip")
    result = {
        "bytes": len(data),
        "encode_per_s": _rate(lambda: encode(message), seconds),
        "decode_per_s": _rate(lambda: decode(data), seconds),
    }
    if isinstance(message, Mcast):
        m = message
        fast = _rate(
            lambda: encode_mcast(m.sender, m.ring_id, m.seq, m.guarantee, m.payload), seconds
        )
        result["encode_mcast_per_s"] = fast
    return result


def _mcast(size: int) -> Mcast:
    return Mcast(
        sender=2, ring_id=RING, seq=123_456, guarantee=Guarantee.AGREED, payload=bytes(size)
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="time per operation")
    args = parser.parse_args(argv)
    token = Token(sender=1, ring_id=RING, token_seq=77, seq=123_456, aru=123_400, aru_addr=2)
    cases: dict[str, SrpMessage] = {
        "token_0_rtr": token,
        "mcast_64B": _mcast(64),
        "mcast_1KiB": _mcast(1024),
    }
    results = {name: _case(message, args.seconds) for name, message in cases.items()}
    json.dump(
        {"benchmark": "srp_wire", "python": sys.version.split()[0], "results": results},
        sys.stdout,
        indent=2,
    )
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
