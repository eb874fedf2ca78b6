"""Seeds per minute of the deterministic simulator over the real SRP core, printed as JSON.

Usage: ``python bench/sim_bench.py [--seeds A-B] [--nodes MIN-MAX] [--faults all|none|list]``.
One process, one core: the figure CI's seed budget is planned from (DESIGN.md asks for about
0.5 s of wall time a seed). Also reports simulated seconds per wall second and events per
second, so a change in the core's cost shows up even when the seed mix is the same.
"""

from __future__ import annotations

import argparse
import json
import time

from pycorosync.exec.totem.sim import parse_faults, run_seeds
from pycorosync.exec.totem.sim.runner import SimResult


def _range(text: str) -> tuple[int, int]:
    low, _, high = text.partition("-")
    return int(low), int(high or low)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0-59")
    parser.add_argument("--nodes", default="3-7")
    parser.add_argument("--faults", default="all")
    args = parser.parse_args()
    first, last = _range(args.seeds)
    results: list[SimResult] = []
    start = time.perf_counter()
    run_seeds(
        range(first, last + 1),
        _range(args.nodes),
        parse_faults(args.faults),
        on_result=results.append,
    )
    wall = time.perf_counter() - start
    sim = sum(r.sim_seconds for r in results)
    print(
        json.dumps(
            {
                "bench": "simulator",
                "seeds": len(results),
                "failed": sum(not r.passed for r in results),
                "nodes": args.nodes,
                "faults": args.faults,
                "wall_seconds": round(wall, 2),
                "seeds_per_minute": round(60 * len(results) / wall, 1),
                "wall_seconds_per_seed": round(wall / len(results), 3),
                "sim_seconds_per_wall_second": round(sim / wall, 1),
                "events_per_second": round(sum(r.events for r in results) / wall),
                "deliveries_per_second": round(sum(r.deliveries for r in results) / wall),
            }
        )
    )


if __name__ == "__main__":
    main()
