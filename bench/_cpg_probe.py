"""CPG throughput and latency probes over ``pycorosync.lib.cpg``, speaking the anchors' protocol.

Usage (one process per node, in the node's namespace, beside our daemon)::

    python bench/_cpg_probe.py tp --run-dir DIR [-g G] [-s SIZE] [-t SECS] [-w MEMBERS]
                                  [-e SENDERS] [-S] [-D EXTRA]
    python bench/_cpg_probe.py lat --run-dir DIR [-g G] [-n COUNT] [-i MS] [-w MEMBERS]

Theory of operation
-------------------
The options, messages and output are those of the anchors' C probes (``cpgbench-own``,
``cpglat-own``, run against Corosync), so ``bench/netns_cpg.py`` drives both daemons the same
way and reads both with one parser.

``tp``: join group G and wait until it has W members. A sender (``-S``) then multicasts
S-byte agreed DATA messages for SECS seconds. On ``CS_ERR_TRY_AGAIN`` it polls the cpg fd for
up to 1 ms and dispatches ALL; every 16 sends it dispatches what is already there (poll 0), so
its own deliveries never pile up. Then it sends one END. Every node counts the DATA messages
delivered between its first DATA and its last END and stops once it has seen E ENDs (or
SECS + EXTRA seconds after the start). The message opens with the C probe's header: magic
``CPGB``, type (1 DATA, 2 END), nodeid, pid, seq, send time, native little-endian.

``lat``: node 1 multicasts a 64-byte ``LATY`` message every I ms, COUNT times, each stamped
just before ``mcast_joined``; the delivery of that same message back to this process ends
its sample.

Both print one ``RESULT key=value ...`` line on stdout, the keys of the C probes.
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

from pycorosync.lib import cpg
from pycorosync.lib.cpg_wire import CpgAddress, CpgGuarantee
from pycorosync.lib.errors import CsError, LibraryError, TryAgainError

TP_MAGIC = 0x43504742  # "CPGB"
LAT_MAGIC = 0x4C415459  # "LATY"
DATA, END = 1, 2
TP_HEADER = struct.Struct("<IIIIQQ")  # magic, type, nodeid, pid, seq, t_send_ns
LAT_MESSAGE = struct.Struct("<IIIIQQ32s")  # magic, nodeid, pid, pad, seq, t_send_ns, fill
CONNECT_S = 10.0
MEMBERS_S = 30.0
AGREED = int(CpgGuarantee.AGREED)


class ProbeError(Exception):
    """The probe cannot go on (no daemon, no members, an unexpected CsError)."""


class Probe:
    """One handle: connect (retrying while the daemon starts), join, and pump callbacks."""

    def __init__(self, run_dir: str, group: str) -> None:
        self.members = 0
        self.group = group
        self.handle = _connect(run_dir, self._deliver, self._confchg)
        self.fd = self.handle.fd_get()
        self.nodeid = self.handle.local_get()
        self.pid = os.getpid()
        self.poller = select.poll()
        self.poller.register(self.fd, select.POLLIN)
        self._join()

    def _join(self) -> None:
        end = time.monotonic() + CONNECT_S
        while True:
            try:
                self.handle.join(self.group)
                return
            except TryAgainError:  # a sync round is running; libcpg callers retry, as here
                if time.monotonic() > end:
                    raise
                time.sleep(0.01)

    def _deliver(self, group: bytes, nodeid: int, pid: int, msg: bytes) -> None:
        """Overridden by each probe."""

    def _confchg(
        self,
        group: bytes,
        members: list[CpgAddress],
        left: list[CpgAddress],
        joined: list[CpgAddress],
    ) -> None:
        self.members = len(members)

    def pump(self, timeout_ms: int) -> None:
        """Poll the cpg fd for up to ``timeout_ms`` and dispatch everything waiting."""
        if self.poller.poll(timeout_ms):
            self.handle.dispatch(cpg.DispatchFlag.ALL)

    def wait_members(self, want: int) -> None:
        end = time.monotonic() + MEMBERS_S
        while self.members < want:
            if time.monotonic() > end:
                raise ProbeError(f"timeout waiting for {want} members (have {self.members})")
            self.pump(50)

    def close(self) -> None:
        try:
            self.handle.leave(self.group)
        finally:
            self.handle.finalize()


def _connect(run_dir: str, deliver: cpg.DeliverFn, confchg: cpg.ConfchgFn) -> cpg.CpgHandle:
    end = time.monotonic() + CONNECT_S
    while True:
        try:
            return cpg.initialize(deliver, confchg, run_dir=run_dir)
        except LibraryError as error:  # the daemon or its worker is not up yet
            if time.monotonic() > end:
                raise ProbeError(f"cpg initialize failed: {error}") from error
            time.sleep(0.05)


@dataclass
class TpCounts:
    """What one node saw of the throughput run, counted as the C probe counts."""

    sent: int = 0
    tryagain: int = 0
    delivered: int = 0
    delivered_bytes: int = 0
    ends: int = 0
    t_first_data: float = 0.0
    t_last: float = 0.0

    def deliver(self, msg: bytes, now: float) -> None:
        """Count one delivery; anything that is not our DATA or END is ignored."""
        if len(msg) < TP_HEADER.size:
            return
        magic, kind = struct.unpack_from("<II", msg)
        if magic != TP_MAGIC:
            return
        if kind == DATA:
            if self.delivered == 0:
                self.t_first_data = now
            self.delivered += 1
            self.delivered_bytes += len(msg)
            self.t_last = now
        elif kind == END:
            self.ends += 1
            self.t_last = now

    def line(self, nodeid: int, size: int, senders: int, sender: bool) -> str:
        """The C probe's RESULT line; rates over [first DATA .. last END] on this node."""
        span = self.t_last - self.t_first_data
        if self.delivered == 0 or span <= 0:
            span = 1e-9
        return (
            f"RESULT node={nodeid} role={'send' if sender else 'recv'} size={size} "
            f"senders={senders} sent={self.sent} tryagain={self.tryagain} "
            f"delivered={self.delivered} secs={span:.3f} "
            f"msgs_per_s={self.delivered / span:.0f} "
            f"MB_per_s={self.delivered_bytes / span / 1e6:.3f} "
            f"complete={int(self.ends >= senders)}"
        )


def tp_message(kind: int, nodeid: int, pid: int, seq: int, size: int) -> bytes:
    """A DATA or END message of ``size`` bytes (at least the header)."""
    header = TP_HEADER.pack(TP_MAGIC, kind, nodeid, pid, seq, 0)
    return header + bytes(max(0, size - TP_HEADER.size))


class ThroughputProbe(Probe):
    def __init__(self, run_dir: str, group: str) -> None:
        self.counts = TpCounts()
        super().__init__(run_dir, group)

    def _deliver(self, group: bytes, nodeid: int, pid: int, msg: bytes) -> None:
        self.counts.deliver(msg, time.monotonic())

    def send_for(self, size: int, secs: float, hard: float) -> None:
        """DATA as fast as the library takes it for ``secs``, then one END."""
        counts = self.counts
        tail = bytes(max(0, size - TP_HEADER.size))
        pack = TP_HEADER.pack
        mcast = self.handle.mcast_joined
        t_end = time.monotonic() + secs
        iteration = 0
        while True:
            iteration += 1
            # the clock is read every 64 sends, as the C probe does, to keep it off the path
            if iteration & 63 == 0 and time.monotonic() >= t_end:
                break
            header = pack(TP_MAGIC, DATA, self.nodeid, self.pid, counts.sent, 0)
            try:
                mcast(AGREED, (header, tail))
            except TryAgainError:
                counts.tryagain += 1
                self.pump(1)
                if time.monotonic() >= t_end:
                    break
                continue
            counts.sent += 1
            if counts.sent & 15 == 0:
                self.pump(0)
        end = tp_message(END, self.nodeid, self.pid, counts.sent, size)
        while True:
            try:
                mcast(AGREED, end)
                return
            except TryAgainError:
                self.pump(1)
                if time.monotonic() > hard:
                    return


def run_throughput(args: argparse.Namespace) -> str:
    size = max(args.size, TP_HEADER.size)
    probe = ThroughputProbe(args.run_dir, args.group)
    try:
        probe.wait_members(args.wait)
        t0 = time.monotonic()
        hard = t0 + args.secs + args.deadline_extra
        if args.sender:
            probe.send_for(size, args.secs, hard)
        while probe.counts.ends < args.expected and time.monotonic() < hard:
            probe.pump(20)
        return probe.counts.line(probe.nodeid, size, args.expected, args.sender)
    finally:
        probe.close()


@dataclass
class LatencySamples:
    wanted: int
    micros: list[float] = field(default_factory=list)


class LatencyProbe(Probe):
    def __init__(self, run_dir: str, group: str, count: int) -> None:
        self.samples = LatencySamples(count)
        super().__init__(run_dir, group)

    def _deliver(self, group: bytes, nodeid: int, pid: int, msg: bytes) -> None:
        if len(msg) < LAT_MESSAGE.size or nodeid != self.nodeid or pid != self.pid:
            return
        magic, *_, t_send_ns, _fill = LAT_MESSAGE.unpack_from(msg)
        if magic == LAT_MAGIC and len(self.samples.micros) < self.samples.wanted:
            self.samples.micros.append((time.monotonic_ns() - t_send_ns) / 1000.0)

    def run(self, interval_ms: int) -> None:
        samples = self.samples
        interval_ns = interval_ms * 1_000_000
        next_ns = time.monotonic_ns()
        hard_ns = next_ns + samples.wanted * interval_ns + 15_000_000_000
        sent = 0
        fill = bytes(32)
        while len(samples.micros) < samples.wanted and time.monotonic_ns() < hard_ns:
            now = time.monotonic_ns()
            if sent < samples.wanted and now >= next_ns:
                stamp = time.monotonic_ns()
                msg = LAT_MESSAGE.pack(LAT_MAGIC, self.nodeid, self.pid, 0, sent, stamp, fill)
                try:
                    self.handle.mcast_joined(AGREED, msg)
                except TryAgainError:
                    self.pump(0)  # our flow-control state changes only through dispatch
                    continue
                sent += 1
                next_ns += interval_ns
                continue
            wait_ms = max(0, next_ns - now) // 1_000_000 if sent < samples.wanted else 100
            self.pump(int(wait_ms))

    def result(self, interval_ms: int) -> str:
        return lat_line(self.nodeid, self.samples.wanted, interval_ms, self.samples.micros)


def lat_line(nodeid: int, wanted: int, interval_ms: int, micros: Sequence[float]) -> str:
    """The C latency probe's RESULT line over the samples (microseconds)."""
    got = sorted(micros)
    n = len(got)
    mean = sum(got) / n if n else 0.0
    return (
        f"RESULT node={nodeid} msgs={wanted} interval_ms={interval_ms} "
        f"n_ok={n} mean_us={mean:.1f} p50_us={percentile(got, 50):.1f} "
        f"p90_us={percentile(got, 90):.1f} p99_us={percentile(got, 99):.1f} "
        f"max_us={got[-1] if n else 0:.1f} min_us={got[0] if n else 0:.1f}"
    )


def percentile(ordered: Sequence[float], pct: float) -> float:
    """The C probe's rank rule: index round(pct/100 * (n-1)) of the sorted samples."""
    if not ordered:
        return 0.0
    return ordered[int(pct / 100.0 * (len(ordered) - 1) + 0.5)]


def run_latency(args: argparse.Namespace) -> str:
    probe = LatencyProbe(args.run_dir, args.group, args.count)
    try:
        probe.wait_members(args.wait)
        probe.run(args.interval)
        return probe.result(args.interval)
    finally:
        probe.close()


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="CPG probes (the anchors' protocol)")
    sub = parser.add_subparsers(dest="mode", required=True)
    tp = sub.add_parser("tp", help="throughput")
    lat = sub.add_parser("lat", help="self-delivery latency")
    for each in (tp, lat):
        each.add_argument("--run-dir", required=True, help="the node's client socket dir")
        each.add_argument("-w", dest="wait", type=int, default=1, help="members to wait for")
    tp.add_argument("-g", dest="group", default="cpgbench-own")
    tp.add_argument("-s", dest="size", type=int, default=1024)
    tp.add_argument("-t", dest="secs", type=float, default=5.0)
    tp.add_argument("-e", dest="expected", type=int, default=1, help="senders to expect")
    tp.add_argument("-S", dest="sender", action="store_true", help="this node sends")
    tp.add_argument("-D", dest="deadline_extra", type=float, default=20.0)
    lat.add_argument("-g", dest="group", default="cpglat-own")
    lat.add_argument("-n", dest="count", type=int, default=500)
    lat.add_argument("-i", dest="interval", type=int, default=10, help="ms between messages")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        line = run_throughput(args) if args.mode == "tp" else run_latency(args)
    except (ProbeError, CsError) as error:
        print(f"{args.mode} probe failed: {error}", file=sys.stderr)
        return 1
    print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
