"""``corosync-sim``: run the deterministic cluster simulator over a range of seeds.

``corosync-sim --seeds 1-300 --nodes 3-7 --faults all`` plays every seed with the real Totem
core (:class:`pycorosync.exec.totem.srp.Srp`), each on a node count the seed draws from the
range, and exits 0 only if every seed passes. A failing seed is printed with its violations and
the last lines of its trace; ``--seeds N`` with the same ``--nodes`` and ``--faults`` replays it
exactly. ``--json`` makes the last line of the output one JSON object with the totals. Bad
arguments are argparse errors (exit 2).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence

from pycorosync.exec.totem.sim.cluster import CoreFactory
from pycorosync.exec.totem.sim.runner import (
    TRACE_LINES,
    SimResult,
    default_describe,
    run_seeds,
)
from pycorosync.exec.totem.sim.scenario import Fault, parse_faults

PROG = "corosync-sim"
EXIT_OK = 0
EXIT_FAILED = 1


def _range(text: str) -> tuple[int, int]:
    """``A-B`` (or just ``A``), non-negative integers with A <= B."""
    low, sep, high = text.partition("-")
    try:
        first = int(low)
        last = int(high) if sep else first
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number or a range A-B") from None
    if first < 0 or last < first:
        raise argparse.ArgumentTypeError(f"{text!r} is not a range A-B with 0 <= A <= B")
    return first, last


def _node_range(text: str) -> tuple[int, int]:
    low, high = _range(text)
    if low < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: a cluster has at least one node")
    return low, high


def _faults(text: str) -> frozenset[Fault]:
    try:
        return parse_faults(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="Run Totem SRP in the deterministic cluster simulator."
    )
    parser.add_argument("--seeds", type=_range, required=True, help="seed range A-B")
    parser.add_argument(
        "--nodes", type=_node_range, default=(3, 7), help="node count range MIN-MAX (3-7)"
    )
    parser.add_argument(
        "--faults",
        type=_faults,
        default=parse_faults("all"),
        help="all, none, or a comma list of " + ",".join(f.value for f in Fault),
    )
    parser.add_argument("--json", action="store_true", help="end with one JSON summary line")
    parser.add_argument("--verbose", action="store_true", help="one line per seed")
    parser.add_argument("--jobs", type=_positive, default=1, help="worker processes (1)")
    parser.add_argument(
        "--trace-lines", type=_positive, default=TRACE_LINES, help="trace kept per seed"
    )
    return parser


def main(argv: Sequence[str] | None = None, *, core_factory: CoreFactory | None = None) -> int:
    """The command; ``core_factory`` replaces the real core (for tests)."""
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    first, last = args.seeds
    faults: frozenset[Fault] = args.faults

    def show(result: SimResult) -> None:
        if args.verbose:
            print(result.summary(), flush=True)
        if not result.passed:
            print(result.report(), flush=True)

    wall = time.perf_counter()
    results = run_seeds(
        range(first, last + 1),
        args.nodes,
        faults,
        core_factory=core_factory,
        describe=default_describe(),
        trace_lines=args.trace_lines,
        jobs=args.jobs,
        on_result=show,
    )
    wall = time.perf_counter() - wall
    summary = _summary(results, args.nodes, faults, wall)
    print(_summary_line(summary))
    if args.json:
        print(json.dumps(summary, sort_keys=True))
    return EXIT_OK if not summary["failed_seeds"] else EXIT_FAILED


def _summary(
    results: list[SimResult], nodes: tuple[int, int], faults: frozenset[Fault], wall: float
) -> dict[str, object]:
    failed = [r for r in results if not r.passed]
    return {
        "seeds": len(results),
        "nodes": f"{nodes[0]}-{nodes[1]}",
        "faults": sorted(f.value for f in faults),
        "failed_seeds": [r.seed for r in failed],
        "violations": sum(len(r.violations) for r in results),
        "errors": sum(1 for r in results if r.error is not None),
        "sim_seconds": round(sum(r.sim_seconds for r in results), 3),
        "wall_seconds": round(wall, 3),
        "seeds_per_minute": round(60.0 * len(results) / wall, 1) if wall > 0 else 0.0,
        "failures": [r.as_dict() for r in failed],
    }


def _summary_line(summary: dict[str, object]) -> str:
    failed = summary["failed_seeds"]
    assert isinstance(failed, list)
    which = f" ({', '.join(map(str, failed))})" if failed else ""
    return (
        f"{summary['seeds']} seeds, {len(failed)} failed{which}, "
        f"{summary['violations']} violations, {summary['sim_seconds']} sim s, "
        f"{summary['wall_seconds']} wall s, {summary['seeds_per_minute']} seeds/min"
    )


if __name__ == "__main__":
    sys.exit(main())
