"""In-process throughput of the Totem SRP core: messages ordered per wall-clock second.

Usage: ``python bench/srp_bench.py [--nodes N] [--seconds S] [--sizes 64,1024]``. N cores run in
one process over a perfect FIFO network (no loss, no latency: each datagram is handed to its
receivers in send order, tokens after what was already queued, as the real shell batches
them). Every node keeps its application queue full, so the ring runs at the window and
max_messages limits, and the figure is what the core's own CPU cost allows on one core of this
host: the ceiling for a daemon built on it. Printed as one JSON object per size.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import deque

from pycorosync.exec.totem.events import Delivery, Guarantee
from pycorosync.exec.totem.srp import Srp, State
from pycorosync.exec.totem.srp_config import SrpConfig


def _form_ring(cores: dict[int, Srp], wire: deque[tuple[int, bytes]]) -> float:
    now = 0.0
    for core in cores.values():
        core.start(now)
    for _ in range(200_000):
        now += 0.0001
        _pump(cores, wire, now)
        for core in cores.values():
            deadline = core.next_deadline()
            if deadline is not None and deadline <= now:
                core.handle_timer(now)
        _collect(cores, wire)
        if all(_formed(core, len(cores)) for core in cores.values()):
            return now
    raise RuntimeError("the ring did not form")


def _formed(core: Srp, nodes: int) -> bool:
    return core.state is State.OPERATIONAL and len(core.members) == nodes


def _collect(cores: dict[int, Srp], wire: deque[tuple[int, bytes]]) -> int:
    delivered = 0
    for nodeid, core in cores.items():
        sends, events = core.take_output()
        delivered += sum(1 for e in events if isinstance(e, Delivery))
        for send in sends:
            if send.dest is None:
                wire.extend((other, send.data) for other in cores if other != nodeid)
            else:
                wire.append((send.dest, send.data))
    return delivered


def _pump(cores: dict[int, Srp], wire: deque[tuple[int, bytes]], now: float) -> None:
    batches: dict[int, list[bytes]] = {}
    while wire:
        dest, data = wire.popleft()
        batches.setdefault(dest, []).append(data)
    for dest, batch in batches.items():
        cores[dest].handle_datagrams(batch, now)


def run(nodes: int, size: int, seconds: float) -> dict[str, object]:
    config = SrpConfig(token_ms=1000, consensus_ms=1200, token_retransmit_ms=238, hold_ms=180)
    members = list(range(1, nodes + 1))
    cores = {n: Srp(config, n, members, 0) for n in members}
    wire: deque[tuple[int, bytes]] = deque()
    now = _form_ring(cores, wire)
    payload = b"x" * size
    delivered = 0
    start = time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        for core in cores.values():
            while core.mcast(payload, Guarantee.AGREED):
                pass
        now += 0.0001
        _pump(cores, wire, now)
        delivered += _collect(cores, wire)
    return {
        "bench": "srp_core",
        "nodes": nodes,
        "size": size,
        "seconds": round(elapsed, 3),
        "deliveries_per_node_per_s": round(delivered / nodes / elapsed),
        # All N cores share this one CPU: one node alone on a CPU would order about N times
        # as many (it does 1/N of the work shown here).
        "per_cpu_msgs_per_s": round(delivered / elapsed),
        "tokens_per_s": round(cores[1].stats.orf_token_rx / elapsed),
        "python": sys.version.split()[0],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--sizes", default="64,1024")
    args = parser.parse_args()
    for size in (int(s) for s in args.sizes.split(",")):
        print(json.dumps(run(args.nodes, size, args.seconds)))


if __name__ == "__main__":
    main()
