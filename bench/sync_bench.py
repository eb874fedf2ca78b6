"""The sync protocol's cost and pace, printed as JSON.

Usage: ``python bench/sync_bench.py [--seeds A-B] [--nodes MIN-MAX] [--rounds N]``.

* ``coordinator``: rounds a second of the bare coordinators of ``--members`` nodes with four
  services over an in-memory agreed stream (every node's CPU for one round, summed): the
  Totem process's own cost of a membership change.
* ``simulator``: the sync simulation over the seeds with every fault - wall seconds a seed (the
  CI budget is planned from it), rounds completed and aborted, and the virtual time from a
  REGULAR confchg to the round's completion (median, 99th percentile, max) with the simulator's
  timers and links.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from pycorosync.exec.sync import SyncCoordinator, SyncMcast, SyncProcess
from pycorosync.exec.totem.events import ConfigChange, ConfigKind, RingId
from pycorosync.exec.totem.sim import ALL_FAULTS
from pycorosync.exec.totem.sim.runner import nodes_for_seed
from pycorosync.exec.totem.sim.sync_runner import run_sync_seed

SERVICES = (0, 2, 3, 5)


def _range(text: str) -> tuple[int, int]:
    low, _, high = text.partition("-")
    return int(low), int(high or low)


def _one_round(nodes: dict[int, SyncCoordinator], ring: RingId) -> None:
    members = tuple(nodes)
    stream: list[tuple[int, bytes]] = []
    pending: list[tuple[int, SyncProcess]] = []

    def collect() -> None:
        for node, coordinator in nodes.items():
            for output in coordinator.take_output():
                if isinstance(output, SyncMcast):
                    stream.append((node, output.payload))
                elif isinstance(output, SyncProcess):
                    pending.append((node, output))

    for coordinator in nodes.values():
        for kind in (ConfigKind.TRANSITIONAL, ConfigKind.REGULAR):
            change = ConfigChange(kind=kind, members=members, left=(), joined=(), ring_id=ring)
            coordinator.config_change(change)
    collect()
    while stream or pending:
        while stream:
            sender, payload = stream.pop(0)
            for coordinator in nodes.values():
                coordinator.deliver(sender, payload)
            collect()
        for node, command in pending:
            nodes[node].service_done(command.service_id, command.ring_id)
        pending.clear()
        collect()
    if not all(coordinator.in_sync for coordinator in nodes.values()):
        raise RuntimeError("a benchmark round did not complete")


def bench_coordinator(members: int, rounds: int) -> dict[str, object]:
    nodes = {node: SyncCoordinator(SERVICES) for node in range(1, members + 1)}
    start = time.perf_counter()
    for seq in range(rounds):
        _one_round(nodes, RingId(seq=seq + 1, rep=1))
    wall = time.perf_counter() - start
    return {
        "bench": "sync-coordinator",
        "members": members,
        "services": len(SERVICES),
        "rounds": rounds,
        "rounds_per_second": round(rounds / wall, 1),
        "microseconds_per_node_round": round(1e6 * wall / rounds / members, 1),
    }


def bench_simulator(first: int, last: int, low: int, high: int) -> dict[str, object]:
    results = []
    start = time.perf_counter()
    for seed in range(first, last + 1):
        results.append(run_sync_seed(seed, nodes_for_seed(seed, low, high), ALL_FAULTS))
    wall = time.perf_counter() - start
    rounds = sorted(s for r in results for s in r.round_seconds)
    return {
        "bench": "sync-simulator",
        "seeds": len(results),
        "failed": [r.seed for r in results if not r.passed],
        "wall_seconds_per_seed": round(wall / len(results), 3),
        "rounds_completed": sum(r.rounds_completed for r in results),
        "rounds_aborted": sum(r.rounds_aborted for r in results),
        "aborted_in_barrier": sum(r.aborted_in_barrier for r in results),
        "round_ms_median": round(1000 * statistics.median(rounds), 2),
        "round_ms_p99": round(1000 * rounds[int(0.99 * (len(rounds) - 1))], 2),
        "round_ms_max": round(1000 * rounds[-1], 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0-79")
    parser.add_argument("--nodes", default="3-7")
    parser.add_argument("--members", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=2000)
    args = parser.parse_args()
    print(json.dumps(bench_coordinator(args.members, args.rounds)))
    print(json.dumps(bench_simulator(*_range(args.seeds), *_range(args.nodes))))


if __name__ == "__main__":
    main()
