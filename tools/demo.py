"""``pycorosync-demo``: a small cluster on loopback, its membership, and a CPG message going round.

Theory of operation
-------------------
One command, no setup: the tool makes a private temporary directory, writes an authkey into
it with ``corosync-keygen``, and starts N ``corosync-exec`` daemons (3 by default) on
127.0.0.1 with a UDP port each, every one with its own configuration, log file, run and state
directories. When every node has logged "ready to provide service." it prints the membership
as node 1's cmap shows it, opens a CPG handle on every node in group ``demo`` and sends one
message from each node in turn, printing every delivery - the same messages, in the same
order, on every node. Then it keeps sending one message every ``--interval`` seconds until
Ctrl-C (or, with ``--once``, stops after the first round), stops the daemons with SIGTERM -
each leaves the ring and unloads its engines - and removes the directory.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pycorosync.lib.cmap import CmapHandle
from pycorosync.lib.cpg import CpgHandle, DispatchFlag, initialize
from pycorosync.lib.cpg_wire import CpgAddress, CpgGuarantee
from pycorosync.lib.errors import CsError, TryAgainError

READY = "ready to provide service."
GROUP = b"demo"
START_DEADLINE_S = 60.0
DELIVERY_DEADLINE_S = 30.0


@dataclass
class DemoNode:
    nodeid: int
    port: int
    base: Path
    proc: subprocess.Popen[bytes] | None = None
    cpg: CpgHandle | None = None
    delivered: list[str] = field(default_factory=list)
    group_size: int = 0

    @property
    def run_dir(self) -> Path:
        return self.base / f"run{self.nodeid}"

    @property
    def log(self) -> Path:
        return self.base / f"node{self.nodeid}.log"

    def config(self, nodes: Sequence[DemoNode], keyfile: Path) -> str:
        entries = "".join(
            f"    node {{\n        nodeid: {n.nodeid}\n        name: node{n.nodeid}\n"
            f"        ring0_addr: 127.0.0.1\n        ring0_port: {n.port}\n    }}\n"
            for n in nodes
        )
        return (
            "totem {\n    version: 2\n    cluster_name: demo\n    transport: udpu\n"
            f"    token: 1000\n    token_coefficient: 0\n    keyfile: {keyfile}\n}}\n"
            "logging {\n    to_stderr: yes\n    to_syslog: no\n    timestamp: on\n}\n"
            f"system {{\n    run_dir: {self.run_dir}\n"
            f"    state_dir: {self.base}/state{self.nodeid}\n    sched_rr: no\n}}\n"
            f"nodelist {{\n{entries}}}\n"
        )

    def start(self, nodes: Sequence[DemoNode], keyfile: Path) -> None:
        conf = self.base / f"node{self.nodeid}.conf"
        conf.write_text(self.config(nodes, keyfile))
        command = [sys.executable, "-m", "pycorosync.exec.main", "-f", "-c", str(conf)]
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [*command, "-n", str(self.nodeid)],
                stdout=log,
                stderr=log,
                start_new_session=True,  # our Ctrl-C is ours to handle; the daemons get SIGTERM
            )

    def ready(self) -> bool:
        try:
            return READY in self.log.read_text(errors="replace")
        except FileNotFoundError:
            return False

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


def _say(text: str) -> None:
    print(text, flush=True)


def _wait(
    predicate: Callable[[], bool], what: str, deadline_s: float, nodes: Sequence[DemoNode]
) -> None:
    end = time.monotonic() + deadline_s
    while not predicate():
        for node in nodes:
            if node.proc is not None and node.proc.poll() is not None:
                tail = node.log.read_text(errors="replace").splitlines()[-5:]
                raise RuntimeError(f"node {node.nodeid} exited:\n" + "\n".join(tail))
        if time.monotonic() > end:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _make_key(path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pycorosync.tools.keygen", "-k", str(path)],
        check=True,
        capture_output=True,
    )


def _membership(node: DemoNode) -> list[str]:
    cmap = CmapHandle(run_dir=str(node.run_dir))
    try:
        return [
            f"  node {key.split('.')[2]}: {cmap.get_string(key)}"
            for key, _, _ in cmap.iter_keys("runtime.members.")
            if key.endswith(".status")
        ]
    finally:
        cmap.finalize()


def _open_cpg(node: DemoNode) -> None:
    def deliver(group: bytes, nodeid: int, pid: int, msg: bytes) -> None:
        node.delivered.append(msg.decode(errors="replace"))
        _say(f"  node {node.nodeid} delivered from node {nodeid}: {msg.decode(errors='replace')}")

    def confchg(
        group: bytes,
        members: list[CpgAddress],
        left: list[CpgAddress],
        joined: list[CpgAddress],
    ) -> None:
        node.group_size = len(members)
        ids = " ".join(str(member.nodeid) for member in members)
        _say(f"  node {node.nodeid}: group {group.decode()} has members on nodes {ids}")

    node.cpg = initialize(deliver, confchg, run_dir=str(node.run_dir))
    node.cpg.join(GROUP)


def _pump(nodes: Sequence[DemoNode], timeout: float) -> None:
    handles = {node.cpg.fd_get(): node.cpg for node in nodes if node.cpg is not None}
    readable, _, _ = select.select(list(handles), [], [], timeout)
    for fd in readable:
        handles[fd].dispatch(DispatchFlag.ALL)


def _send(node: DemoNode, text: str) -> None:
    assert node.cpg is not None
    while True:
        try:
            node.cpg.mcast_joined(CpgGuarantee.AGREED, text.encode())
            return
        except TryAgainError:
            node.cpg.dispatch(DispatchFlag.ALL)


def _round(nodes: Sequence[DemoNode], number: int) -> None:
    sender = nodes[(number - 1) % len(nodes)]
    text = f"message {number} from node {sender.nodeid}"
    _say(f"node {sender.nodeid} sends: {text}")
    _send(sender, text)
    end = time.monotonic() + DELIVERY_DEADLINE_S
    while not all(text in node.delivered for node in nodes):
        if time.monotonic() > end:
            raise RuntimeError(f"'{text}' did not reach every node")
        _pump(nodes, 0.1)


def _stop(nodes: Sequence[DemoNode]) -> None:
    for node in nodes:
        if node.cpg is not None:
            with contextlib.suppress(CsError):
                node.cpg.finalize()
    for node in nodes:
        if node.alive():
            assert node.proc is not None
            node.proc.send_signal(signal.SIGTERM)
    for node in nodes:
        if node.proc is not None:
            try:
                node.proc.wait(20)
            except subprocess.TimeoutExpired:
                node.proc.kill()
                node.proc.wait()


def run(count: int, port: int, once: bool, interval: float, keep: bool) -> int:
    base = Path(tempfile.mkdtemp(prefix="pcsdemo-", dir="/tmp"))
    nodes = [DemoNode(i, port + 10 * (i - 1), base) for i in range(1, count + 1)]
    try:
        keyfile = base / "authkey"
        _make_key(keyfile)
        _say(f"starting {count} nodes on 127.0.0.1 (ports {port}..{nodes[-1].port}) in {base}")
        for node in nodes:
            node.start(nodes, keyfile)
        _wait(lambda: all(node.ready() for node in nodes), "the nodes", START_DEADLINE_S, nodes)
        _say("membership (node 1's runtime.members):")
        for line in _membership(nodes[0]):
            _say(line)
        for node in nodes:
            _open_cpg(node)
        # A message reaches the members of the moment it is delivered: wait for all of them.
        end = time.monotonic() + DELIVERY_DEADLINE_S
        while not all(node.group_size == count for node in nodes):
            if time.monotonic() > end:
                raise RuntimeError("the nodes never all joined the group")
            _pump(nodes, 0.1)
        for number in range(1, count + 1):
            _round(nodes, number)
        if not once:
            _say(f"a message every {interval:.1f} s; Ctrl-C stops the cluster")
            number = count
            while True:
                deadline = time.monotonic() + interval
                while time.monotonic() < deadline:
                    _pump(nodes, max(deadline - time.monotonic(), 0.0))
                number += 1
                _round(nodes, number)
    except KeyboardInterrupt:
        _say("")
    except (RuntimeError, CsError) as error:
        _say(f"pycorosync-demo: {error}")
        return 1
    finally:
        _say("stopping the cluster")
        _stop(nodes)
        if keep:
            _say(f"logs kept in {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)
    _say("stopped")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="pycorosync-demo",
        description="a small pycorosync cluster on loopback, with a CPG message going round",
    )
    parser.add_argument("-n", "--nodes", type=int, default=3, help="how many nodes (3)")
    parser.add_argument("-p", "--port", type=int, default=25405, help="node 1's UDP port")
    parser.add_argument("--interval", type=float, default=2.0, help="seconds between messages")
    parser.add_argument("--once", action="store_true", help="stop after the first round")
    parser.add_argument("--keep", action="store_true", help="keep the logs and configs")
    args = parser.parse_args(argv)
    if not 1 <= args.nodes <= 16:
        parser.error("--nodes must be 1..16")
    return run(args.nodes, args.port, args.once, args.interval, args.keep)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
