"""Shared-memory channels between two processes: one-way throughput and round-trip latency.

Usage: ``python bench/shmring_bench.py [--messages N] [--round-trips N]``. The peer is a freshly
started interpreter (this script with ``--peer``) attached to a pair of default-sized channels,
as a worker will be. For 64 B and 1 KiB records on the APP lane it reports:

* ``one_way``: the owner writes N records as fast as the lane takes them (sleeping on the
  space eventfd when it is full); the peer counts them and answers once it has all of them.
  ``messages_per_s`` is N over the time until that answer.
* ``round_trip``: one record out, the peer echoes it, the owner waits for the echo; both sides
  sleep on their eventfd between records, so every trip pays two wake-ups. p50/p99 in µs.

``memory_per_channel_bytes`` is the shared memory one channel maps; a worker has two.
"""

from __future__ import annotations

import argparse
import json
import platform
import select
import statistics
import subprocess
import sys
import time

from pycorosync.exec.shmring import Channel, ChannelFds, ChannelReader, ChannelWriter, Lane

SIZES = {"64B": 64, "1KiB": 1024}
STOP = b"STOP"
WAIT_S = 30.0


def _wait(fd: int) -> None:
    if not select.select([fd], [], [], WAIT_S)[0]:
        raise SystemExit(f"no wake-up on fd {fd} within {WAIT_S} s")


def _write(writer: ChannelWriter, record: bytes) -> None:
    while not writer.write(Lane.APP, record):
        writer.want_space()
        _wait(writer.space_fileno)
        writer.ack_space()


def _read(reader: ChannelReader) -> list[tuple[Lane, bytes]]:
    while True:
        records = reader.read()
        if records:
            return records
        if not reader.ack_and_arm():
            _wait(reader.data_fileno)


def _peer(there: str, back: str) -> None:
    """Echo every record of a round trip; count a one-way stream and answer its length."""
    reader = Channel.attach(ChannelFds.from_arg(there)).reader()
    writer = Channel.attach(ChannelFds.from_arg(back)).writer()
    counted = 0
    while True:
        for _, record in _read(reader):
            if record == STOP:
                return
            if record[:1] == b"E":
                _write(writer, record)
            elif record[:1] == b"C":
                counted += 1
            else:  # "D": the stream is over
                _write(writer, counted.to_bytes(8, "little"))
                counted = 0


def _one_way(writer: ChannelWriter, reader: ChannelReader, size: int, count: int) -> float:
    record = b"C" + bytes(size - 1)
    start = time.perf_counter()
    for _ in range(count):
        _write(writer, record)
    _write(writer, b"D")
    (answer,) = _read(reader)
    elapsed = time.perf_counter() - start
    if int.from_bytes(answer[1], "little") != count:
        raise SystemExit(f"peer counted {answer[1]!r}, expected {count}")
    return count / elapsed


def _round_trips(writer: ChannelWriter, reader: ChannelReader, size: int, count: int) -> list[int]:
    record = b"E" + bytes(size - 1)
    samples = []
    for _ in range(count):
        start = time.perf_counter_ns()
        _write(writer, record)
        _read(reader)
        samples.append(time.perf_counter_ns() - start)
    return samples


def _percentile_us(samples: list[int], fraction: float) -> float:
    ordered = sorted(samples)
    return round(ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] / 1000, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--messages", type=int, default=300_000)
    parser.add_argument("--round-trips", type=int, default=20_000)
    parser.add_argument("--peer", nargs=2, metavar=("THERE", "BACK"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.peer:
        _peer(*args.peer)
        return
    with Channel.create() as there, Channel.create() as back:
        command = [sys.executable, __file__, "--peer", there.fds.to_arg(), back.fds.to_arg()]
        peer = subprocess.Popen(command, pass_fds=there.fds.all() + back.fds.all())
        writer, reader = there.writer(), back.reader()
        report: dict[str, object] = {
            "python": platform.python_version(),
            "memory_per_channel_bytes": there.memory_bytes,
            "lane_capacities_bytes": {"SYNC": there.capacities[0], "APP": there.capacities[1]},
        }
        one_way, round_trip = {}, {}
        for name, size in SIZES.items():
            _one_way(writer, reader, size, args.messages // 10)  # warm-up
            rate = _one_way(writer, reader, size, args.messages)
            one_way[name] = {"messages_per_s": round(rate), "MiB_per_s": round(rate * size / 2**20)}
            samples = _round_trips(writer, reader, size, args.round_trips)
            round_trip[name] = {
                "p50_us": _percentile_us(samples, 0.50),
                "p99_us": _percentile_us(samples, 0.99),
                "round_trips_per_s": round(1e9 / statistics.fmean(samples)),
            }
        _write(writer, STOP)
        peer.wait(timeout=WAIT_S)
        report["one_way"], report["round_trip"] = one_way, round_trip
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
