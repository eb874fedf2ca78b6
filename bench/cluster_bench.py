"""Membership timings of real ``corosync-exec`` processes on loopback, printed as JSON.

Usage: ``python bench/cluster_bench.py [--nodes 3] [--runs 5] [--token 1000] [--block 40]``.

Each run starts N daemons (udpu on 127.0.<block>.1..N, default crypto aes256/sha256,
``token_coefficient: 0`` so the token is the figure given) and measures, from the daemons' own
``timestamp: hires`` log lines against the wall clock of the action:

* ``start_to_ring`` — spawning the processes → the last node logs the full ``Members[N]``
  (includes Python start-up); ``transport_to_ring`` — the last node's "Initializing
  transport" → the full ring (the protocol's own share);
* ``kill9_to_ring`` — ``kill -9`` of the highest node → the last survivor logs the smaller
  ring (failure detection: token timeout + consensus + forming);
* ``rejoin_to_ring`` — the killed node's transport is up → the full ring again;
* ``leave_to_ring`` — SIGTERM to the highest node → the last survivor logs the smaller ring.

Loopback figures are for development, never reported as ratios (DESIGN.md, Performance).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

EXEC = (sys.executable, "-m", "pycorosync.exec.main", "-f")
_STAMP = re.compile(r"^(\w{3} \d\d \d\d:\d\d:\d\d\.\d{3}) ", re.MULTILINE)
DEADLINE_S = 60.0


def _config(base: Path, block: int, nodes: int, nodeid: int, token: int) -> str:
    entries = "".join(
        f"  node {{\n    nodeid: {i}\n    ring0_addr: 127.0.{block}.{i}\n  }}\n"
        for i in range(1, nodes + 1)
    )
    return (
        f"totem {{\n  version: 2\n  cluster_name: bench\n  transport: udpu\n"
        f"  token: {token}\n  token_coefficient: 0\n  keyfile: {base}/authkey\n"
        "  interface {\n    linknumber: 0\n    mcastport: 15505\n  }\n}\n"
        "logging {\n  to_stderr: yes\n  to_syslog: no\n  timestamp: hires\n}\n"
        f"system {{\n  run_dir: {base}/r{nodeid}\n  state_dir: {base}/s{nodeid}\n}}\n"
        f"nodelist {{\n{entries}}}\n"
    )


def _stamp(line: str) -> float:
    match = _STAMP.match(line)
    assert match is not None, line
    year = datetime.now().year
    return datetime.strptime(f"{year} {match.group(1)}", "%Y %b %d %H:%M:%S.%f").timestamp()


class Bench:
    def __init__(self, base: Path, block: int, nodes: int, token: int) -> None:
        self.base, self.nodes = base, nodes
        self.procs: dict[int, subprocess.Popen[bytes]] = {}
        subprocess.run(
            [sys.executable, "-m", "pycorosync.tools.keygen", "-k", str(base / "authkey")],
            check=True,
            capture_output=True,
        )
        for i in range(1, nodes + 1):
            (base / f"n{i}.conf").write_text(_config(base, block, nodes, i, token))

    def log(self, nodeid: int) -> str:
        return (self.base / f"n{nodeid}.log").read_text(errors="replace")

    def start(self, nodeid: int) -> None:
        with (self.base / f"n{nodeid}.log").open("ab") as log:
            conf = str(self.base / f"n{nodeid}.conf")
            self.procs[nodeid] = subprocess.Popen(
                [*EXEC, "-c", conf, "-n", str(nodeid)], stdout=log, stderr=log
            )

    def line_after(self, nodeid: int, text: str, after: float) -> float | None:
        """When ``nodeid`` first logged a line containing ``text`` at or after ``after``."""
        for line in self.log(nodeid).splitlines():
            if text in line and _STAMP.match(line) and _stamp(line) >= after - 0.001:
                return _stamp(line)
        return None

    def wait_all(self, nodeids: list[int], text: str, after: float) -> float:
        """The latest time among ``nodeids`` of their first ``text`` line after ``after``."""
        end = time.monotonic() + DEADLINE_S
        while time.monotonic() < end:
            times = [self.line_after(n, text, after) for n in nodeids]
            if all(t is not None for t in times):
                return max(t for t in times if t is not None)
            time.sleep(0.02)
        raise TimeoutError(f"{nodeids} never logged {text!r}")

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
            proc.wait()


def members(ids: list[int]) -> str:
    return f"Members[{len(ids)}]: " + " ".join(map(str, ids))


def one_run(base: Path, block: int, nodes: int, token: int) -> dict[str, float]:
    bench = Bench(base, block, nodes, token)
    everyone = list(range(1, nodes + 1))
    survivors = everyone[:-1]
    victim = everyone[-1]
    try:
        spawned = time.time()
        for nodeid in everyone:
            bench.start(nodeid)
        ring = bench.wait_all(everyone, members(everyone), spawned)
        transport = bench.wait_all(everyone, "Initializing transport", spawned)
        result = {"start_to_ring": ring - spawned, "transport_to_ring": ring - transport}
        time.sleep(1.0)  # let the ring run before the fault (a steady state, not a settle wait)
        killed = time.time()
        os.kill(bench.procs[victim].pid, signal.SIGKILL)
        bench.procs[victim].wait()
        result["kill9_to_ring"] = bench.wait_all(survivors, members(survivors), killed) - killed
        restarted = time.time()
        bench.start(victim)
        ring = bench.wait_all(everyone, members(everyone), restarted)
        up = bench.wait_all([victim], "Initializing transport", restarted)
        result["rejoin_to_ring"] = ring - up
        time.sleep(1.0)
        left = time.time()
        bench.procs[victim].send_signal(signal.SIGTERM)
        result["leave_to_ring"] = bench.wait_all(survivors, members(survivors), left) - left
        return result
    finally:
        bench.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--token", type=int, default=1000)
    parser.add_argument("--block", type=int, default=40, help="use 127.0.BLOCK.x")
    args = parser.parse_args()
    runs = []
    for _ in range(args.runs):
        base = Path(tempfile.mkdtemp(prefix="pcb-", dir="/tmp"))
        try:
            runs.append(one_run(base, args.block, args.nodes, args.token))
        finally:
            shutil.rmtree(base, ignore_errors=True)
    summary = {
        name: {
            "median_s": round(statistics.median(r[name] for r in runs), 3),
            "max_s": round(max(r[name] for r in runs), 3),
        }
        for name in runs[0]
    }
    consensus = int(1.2 * args.token)
    print(
        json.dumps(
            {
                "nodes": args.nodes,
                "runs": args.runs,
                "token_ms": args.token,
                "consensus_ms": consensus,
                "timings": summary,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
