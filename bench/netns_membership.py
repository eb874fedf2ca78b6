"""Membership timings of real Corosync 3.1.7 and of our ``corosync-exec``, side by side, in netns.

Usage (root, ``ip netns`` needed; about 2 minutes with the defaults)::

    python bench/netns_membership.py [--runs 3] [--only corosync|pycorosync] [--keep-logs DIR]

Topology (that of ``../shared/anchors/``, with our own names so nothing collides with the
anchor script): node namespaces ``pcb-n1..3``, each with a veth ``pcb0`` (10.98.0.i/24,
MTU 1500) whose peer ``p<i>`` is a port of the bridge ``pcbbr0`` in its own namespace
``pcb-sw``. The /24 exists only inside those namespaces.

Both daemons get the same configuration (knet, aes256/sha256, one authkey made once with
``corosync-keygen``, default token: 3000 + 650 coefficient = 3650 ms for 3 nodes) and the same
launch: ``ip netns exec pcb-n<i> sh -c 'mount --bind <dir>/run /run && exec <daemon> -f -c
<conf>'`` (the pid lock of either lands in the node's own /run); ours also gets ``-n <i>``.
Each repeat, for each daemon in turn (corosync, then ours, then the next repeat):

1. ``startup_s``: just before the 3 daemons are spawned → the last node sees {1, 2, 3};
2. ``kill9_s``: ``kill -9`` of node 3 (``--dwell`` seconds after the full ring, the ring
   running) → both survivors see {1, 2};
3. ``rejoin_s``: node 3 spawned again → all three see {1, 2, 3}.

Membership is tracked the same way for both daemons, from their own log files (``timestamp:
hires``): the set a node sees is folded from its "A new membership (...) was formed. Members
joined: ... left: ..." lines, which both write in the same words; the time of a figure is the
log stamp of the line that completes it, the files being polled every 20 ms until a deadline.
As a cross-check, the "Members[N]: ..." lines (Corosync's ``[QUORUM]``, our ``[MAIN  ]``) are
read the same way and reported beside. The result is one JSON object on stdout; progress goes to
stderr. Everything started is stopped by pid and the namespaces and temp dirs removed, also on
errors and signals.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

# The shared helpers sit beside this script, whether it runs or a test loads it by path.
if str(Path(__file__).resolve().parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parent))

from _netns import (
    BRIDGE,
    COROSYNC,
    DAEMONS,
    KEYGEN,
    NODE_NS,
    NODES,
    OURS,
    SUBNET,
    SWITCH_NS,
    VETH,
    BudgetError,
    Node,
    Resources,
    build_topology,
    first_at,
    members_lines,
    membership_changes,
    parse_stamp,
    render_config,
    run,
    run_measured,
    say,
    summarize,
    versions,
    wait_view,
)

__all__ = ["first_at", "members_lines", "membership_changes", "parse_stamp", "summarize"]

FIGURES = ("startup_s", "kill9_s", "rejoin_s")


def one_repeat(
    res: Resources, daemon: str, *, base: Path, key: Path, dwell: float, deadline: float
) -> tuple[dict[str, float], dict[str, float]]:
    nodes = [Node(res, daemon, base / f"n{i}", i, key) for i in range(1, NODES + 1)]
    everyone = frozenset(range(1, NODES + 1))
    victim = nodes[-1]
    formed: dict[str, float] = {}
    cross: dict[str, float] = {}

    def record(name: str, times: dict[str, list[float]], t0: float, count: int) -> None:
        formed[name] = max(times["formed"]) - t0
        if len(times["members_line"]) == count:
            cross[name] = max(times["members_line"]) - t0

    try:
        t0 = time.time()
        for node in nodes:
            node.start()
        record("startup_s", wait_view(nodes, everyone, t0, deadline), t0, NODES)
        time.sleep(dwell)  # the ring runs a while before the fault (not a settle wait)
        assert victim.proc is not None
        pid = victim.daemon_pid()  # the wrapper must have exec'd the daemon
        t0 = time.time()
        os.kill(pid, signal.SIGKILL)
        res.stop([victim.proc])
        survivors = nodes[:-1]
        times = wait_view(survivors, everyone - {victim.nodeid}, t0, deadline)
        record("kill9_s", times, t0, NODES - 1)
        t0 = time.time()
        victim.start()
        record("rejoin_s", wait_view(nodes, everyone, t0, deadline), t0, NODES)
    finally:
        res.stop([n.proc for n in nodes if n.proc is not None])
    return formed, cross


# -- main -------------------------------------------------------------------------------------


def measure(args: argparse.Namespace, res: Resources) -> dict[str, object]:
    started = time.monotonic()
    deadline = started + args.budget
    res.temp = Path(tempfile.mkdtemp(prefix="pcb-netns-", dir="/tmp"))
    key = res.temp / "authkey"
    run(KEYGEN, "-k", str(key))
    say("building namespaces")
    build_topology(res)
    daemons = [args.only] if args.only else list(DAEMONS)
    formed: dict[str, dict[str, list[float]]] = {d: {f: [] for f in FIGURES} for d in daemons}
    cross: dict[str, dict[str, list[float]]] = {d: {f: [] for f in FIGURES} for d in daemons}
    errors: list[str] = []
    for rep in range(1, args.runs + 1):
        for daemon in daemons:
            if time.monotonic() > deadline:
                errors.append(f"budget reached before {daemon} repeat {rep}")
                continue
            say(f"{daemon} repeat {rep}/{args.runs}")
            try:
                got, seen = one_repeat(
                    res,
                    daemon,
                    base=res.temp / daemon / f"rep{rep}",
                    key=key,
                    dwell=args.dwell,
                    deadline=deadline,
                )
            except (TimeoutError, RuntimeError, BudgetError) as error:
                errors.append(f"{daemon} repeat {rep}: {error}")
                say(f"  failed: {error}")
                continue
            say("  " + " ".join(f"{k}={v:.3f}" for k, v in got.items()))
            for name, value in got.items():
                formed[daemon][name].append(value)
            for name, value in seen.items():
                cross[daemon][name].append(value)
    result: dict[str, object] = {
        "bench": "netns_membership",
        "nodes": NODES,
        "runs": args.runs,
        "order": "alternating per repeat: " + ", then ".join(daemons),
        "topology": (
            f"namespaces {', '.join(NODE_NS)}; veth {VETH} (MTU 1500, {SUBNET}.i/24) <-> "
            f"p<i> on bridge {BRIDGE} in namespace {SWITCH_NS}"
        ),
        "criterion": (
            "membership folded from each node's 'A new membership (...) was formed. Members "
            "joined: ... left: ...' log lines (hires stamps; both daemons); figure = last "
            "node's stamp - wall clock just before the action; cross-check 'members_line' = "
            "the same from 'Members[N]: ...' lines ([QUORUM] in Corosync, [MAIN  ] in ours)"
        ),
        "figures": {
            "startup_s": "spawn of all 3 daemons -> all 3 see {1,2,3}",
            "kill9_s": f"kill -9 of node 3 ({args.dwell} s after the full ring) -> "
            "nodes 1, 2 see {1,2}",
            "rejoin_s": "spawn of node 3 again -> all 3 see {1,2,3}",
        },
        "token_ms": "3650 (default 3000 + 650 coefficient), consensus 4380 (defaults)",
        "versions": versions(),
        "daemons": {
            d: {
                "formed": {f: summarize(formed[d][f]) for f in FIGURES},
                "members_line": {f: summarize(cross[d][f]) for f in FIGURES},
            }
            for d in daemons
        },
    }
    if len(daemons) == 2:
        ratios: dict[str, float | None] = {}
        for name in FIGURES:
            ours, theirs = formed["pycorosync"][name], formed["corosync"][name]
            ratios[name] = (
                round(statistics.median(ours) / statistics.median(theirs), 3)
                if ours and theirs
                else None
            )
        result["ratios_ours_over_corosync_median"] = ratios
    sample = Path("/tmp/pcb-netns/<daemon>/rep<k>/n<i>")
    result["config_node1"] = render_config(sample, 1, Path("/tmp/pcb-netns/authkey")).replace(
        "<i>", "1"
    )
    result["commands_node1"] = {
        "corosync": 'ip netns exec pcb-n1 sh -c \'mount --bind "$0" /run && exec "$@"\' '
        f"<dir>/run {COROSYNC} -f -c <dir>/corosync.conf",
        "pycorosync": 'ip netns exec pcb-n1 sh -c \'mount --bind "$0" /run && exec "$@"\' '
        f"<dir>/run {' '.join(OURS)} -n 1 -f -c <dir>/corosync.conf",
    }
    result["errors"] = errors
    result["wall_s"] = round(time.monotonic() - started, 1)
    if args.keep_logs:
        result["logs"] = str(Path(args.keep_logs).resolve())
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="repeats of each figure (3)")
    parser.add_argument("--only", choices=DAEMONS, help="measure one daemon only")
    parser.add_argument("--keep-logs", metavar="DIR", help="copy the logs and configs here")
    parser.add_argument("--dwell", type=float, default=1.0, help="full ring → kill -9 (1.0 s)")
    parser.add_argument("--budget", type=float, default=240.0, help="whole run, seconds (240)")
    args = parser.parse_args(argv)
    return run_measured("netns_membership.py", args, measure)


if __name__ == "__main__":
    sys.exit(main())
