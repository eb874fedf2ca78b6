"""Packing and unpacking throughput of totempg (messages per second), printed as JSON.

Usage: ``python bench/totempg_bench.py [--max-frame N] [--seconds S]``. Each case packs
messages of one size into frames (group header included, as :class:`TotemPg` sends them) and
then reassembles and group-delivers those frames; the figures are for one core of this host.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from pycorosync.exec.totem.events import Guarantee
from pycorosync.exec.totem.pg import FrameOutlet, TotemPg

SIZES = {"64B": 64, "1KiB": 1024, "16KiB": 16 * 1024}


class _Collector:
    def __init__(self) -> None:
        self.frames: list[tuple[bytes, Guarantee]] = []

    def mcast(self, frame: bytes, guarantee: Guarantee) -> bool:
        self.frames.append((frame, guarantee))
        return True

    def room(self) -> int:
        return 1 << 30


def _pg(collector: _Collector, max_frame: int) -> TotemPg:
    outlet = FrameOutlet(collector.mcast, collector.room)
    pg = TotemPg(max_frame=max_frame, app=outlet, sync=outlet)
    pg.join(b"a")
    return pg


def _case(size: int, max_frame: int, seconds: float) -> dict[str, float]:
    collector = _Collector()
    sender = _pg(collector, max_frame)
    payload = bytes(size)
    groups = [b"a"]
    count = 0
    start = time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        for _ in range(256):
            sender.mcast(groups, payload)
        count += 256
    sender.flush()
    pack_rate = count / (time.perf_counter() - start)

    receiver = _pg(_Collector(), max_frame)
    delivered = 0
    start = time.perf_counter()
    for frame, guarantee in collector.frames:
        delivered += len(receiver.deliver(1, frame, guarantee))
    unpack_rate = delivered / (time.perf_counter() - start)
    if delivered != count:
        raise SystemExit(f"lost messages: packed {count}, delivered {delivered}")
    return {
        "packed_msgs_per_s": round(pack_rate),
        "unpacked_msgs_per_s": round(unpack_rate),
        "frames": len(collector.frames),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-frame", type=int, default=1382, help="frame size (UDP IPv4)")
    parser.add_argument("--seconds", type=float, default=1.0, help="packing time per case")
    args = parser.parse_args(argv)
    results = {name: _case(size, args.max_frame, args.seconds) for name, size in SIZES.items()}
    json.dump(
        {
            "benchmark": "totempg",
            "max_frame": args.max_frame,
            "python": sys.version.split()[0],
            "results": results,
        },
        sys.stdout,
        indent=2,
    )
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
