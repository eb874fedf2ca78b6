"""``corosync-cpgbench``: CPG throughput (and latency) as Corosync's cpgbench measures it.

Theory of operation
-------------------
The tool joins group ``cpg_bm`` on the local node and, for each message size in turn, sends
AGREED messages as fast as flow control allows for a fixed time, retrying on
``CS_ERR_TRY_AGAIN`` after dispatching, and counts the messages *delivered back* to it in that
time - its own and every other sender's in the group, so running it on every node measures
all nodes sending. One line per size, in Corosync's format (``%5d messages received %5d bytes
per write %7.3f Seconds runtime %9.3f TP/s %7.3f MB/s.``; TP/s is delivered messages per
second, MB/s delivered bytes per second in decimal MB). Each message starts with a small
header - a run tag, the size step, the sender's pid and its send time - so that deliveries of
an earlier step are not counted in the next, and, with ``--latency``, the time from sending to
the delivery of the same message back to this process gives p50/p90/p99 in milliseconds.
``--members N`` waits until the group has N members before the first step, so that runs
started on several nodes overlap.
"""

from __future__ import annotations

import argparse
import os
import select
import struct
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from pycorosync.lib.cpg import CpgHandle, DispatchFlag, initialize
from pycorosync.lib.cpg_wire import CpgAddress, CpgGuarantee
from pycorosync.lib.errors import CsError, TryAgainError

GROUP = b"cpg_bm"
HEADER = struct.Struct("!4sIIq")
"""magic, size step, sender pid, send time (ns, monotonic)."""
MAGIC = b"pcbm"
COROSYNC_SIZES = (64, 320, 1600, 8000, 40000, 200000)
"""Corosync's steps: 64 bytes, five times more each step, stopping before 1 MiB - 100."""
DISPATCH_EVERY = 16
"""Sends between two drains of our own deliveries, so the socket never backs up."""


@dataclass
class Step:
    index: int
    size: int
    delivered: int = 0
    elapsed: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)


class Bench:
    def __init__(self, latency: bool) -> None:
        self.pid = os.getpid()
        self.latency = latency
        self.step: Step | None = None
        self.members = 0
        self._nodeid = 0
        self.handle: CpgHandle = initialize(self._deliver, self._confchg)

    def _deliver(self, group: bytes, nodeid: int, pid: int, msg: bytes) -> None:
        step = self.step
        if step is None or len(msg) < HEADER.size:
            return
        magic, index, sender_pid, sent_ns = HEADER.unpack_from(msg)
        if magic != MAGIC or index != step.index:
            return
        step.delivered += 1
        if self.latency and sender_pid == self.pid and nodeid == self._nodeid:
            step.latencies_ms.append((time.monotonic_ns() - sent_ns) / 1e6)

    def _confchg(
        self,
        group: bytes,
        members: list[CpgAddress],
        left: list[CpgAddress],
        joined: list[CpgAddress],
    ) -> None:
        self.members = len(members)

    def start(self, wait_members: int, deadline_s: float) -> None:
        self._nodeid = self.handle.local_get()
        self.handle.join(GROUP)
        end = time.monotonic() + deadline_s
        while self.members < wait_members:
            if time.monotonic() > end:
                raise SystemExit(f"the group never had {wait_members} members")
            self._wait_and_dispatch(0.1)

    def run_step(self, index: int, size: int, seconds: float) -> Step:
        step = self.step = Step(index, size)
        padding = bytes(max(size - HEADER.size, 0))
        end = time.monotonic() + seconds
        sent = 0
        start = time.monotonic()
        while (now := time.monotonic()) < end:
            message = HEADER.pack(MAGIC, index, self.pid, time.monotonic_ns()) + padding
            try:
                self.handle.mcast_joined(CpgGuarantee.AGREED, message)
            except TryAgainError:
                self._wait_and_dispatch(min(0.01, end - now))
                continue
            sent += 1
            if sent % DISPATCH_EVERY == 0:
                self.handle.dispatch(DispatchFlag.ALL)
        elapsed = time.monotonic() - start
        self.handle.dispatch(DispatchFlag.ALL)
        step.elapsed = elapsed
        self.step = None
        return step

    def _wait_and_dispatch(self, timeout: float) -> None:
        readable, _, _ = select.select([self.handle.fd_get()], [], [], max(timeout, 0.0))
        if readable:
            self.handle.dispatch(DispatchFlag.ALL)

    def close(self) -> None:
        self.handle.finalize()


def line(step: Step, elapsed: float) -> str:
    rate = step.delivered / elapsed if elapsed > 0 else 0.0
    megabytes = step.delivered * step.size / elapsed / 1e6 if elapsed > 0 else 0.0
    return (
        f"{step.delivered:5d} messages received {step.size:5d} bytes per write "
        f"{elapsed:7.3f} Seconds runtime {rate:9.3f} TP/s {megabytes:7.3f} MB/s."
    )


def percentiles(values: Sequence[float]) -> str:
    if not values:
        return "latency: no own message delivered"
    ordered = sorted(values)

    def at(fraction: float) -> float:
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]

    return (
        f"latency ms: p50 {at(0.5):.3f} p90 {at(0.9):.3f} p99 {at(0.99):.3f} "
        f"max {ordered[-1]:.3f} ({len(ordered)} own messages)"
    )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="corosync-cpgbench", description="CPG throughput, as Corosync's cpgbench measures it"
    )
    parser.add_argument("-t", "--time", type=float, default=10.0, help="seconds per size (10)")
    parser.add_argument(
        "-s",
        "--sizes",
        type=lambda text: [int(part) for part in text.split(",")],
        default=list(COROSYNC_SIZES),
        help="comma-separated message sizes in bytes (Corosync's 64,320,...,200000)",
    )
    parser.add_argument(
        "-m", "--members", type=int, default=1, help="wait until the group has N members (1)"
    )
    parser.add_argument(
        "-l", "--latency", action="store_true", help="also print self-delivery latency"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if any(size < HEADER.size for size in args.sizes):
        print(f"corosync-cpgbench: sizes must be at least {HEADER.size} bytes", file=sys.stderr)
        return 1
    try:
        bench = Bench(args.latency)
    except CsError as error:
        print(f"cpg_initialize failed with result {int(error.code)}", file=sys.stderr)
        return 1
    try:
        bench.start(args.members, deadline_s=60.0)
        for index, size in enumerate(args.sizes, start=1):
            step = bench.run_step(index, size, args.time)
            print(line(step, step.elapsed), flush=True)
            if args.latency:
                print(percentiles(step.latencies_ms), flush=True)
    except CsError as error:
        print(f"corosync-cpgbench: {error.code.name}: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    finally:
        bench.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
