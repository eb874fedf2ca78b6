"""CPG end to end on a real 3-node loopback cluster: real daemons, workers and client processes.

Clients on different nodes join one group, exchange messages (delivered in one order to
both), and a client killed with SIGKILL is seen by the others as a PROCDOWN confchg. Every
wait has a deadline; addresses 127.0.50-52.x are this file's alone.
"""

from __future__ import annotations

import hashlib
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from pycorosync.lib import cmap, cpg
from pycorosync.lib.cmap_wire import CMAP_MAP_STATS
from pycorosync.lib.cpg_wire import CpgGuarantee, CpgReason
from tests._loopback import Cluster, JsonLinesChild, MakeCluster, Node, wait_until

pytestmark = pytest.mark.xdist_group("loopback")

ROOT = Path(__file__).resolve().parent.parent
READY = "ready to provide service."


class ClientProcess(JsonLinesChild):
    """``tests._cpg_client`` on one node."""

    def __init__(self, node: Node, group: str) -> None:
        run_dir = str(node.base / f"r{node.nodeid}")
        super().__init__(["-m", "tests._cpg_client", run_dir, group], ROOT)

    def seen(self, kind: str) -> list[list[object]]:
        return self.take(kind)  # type: ignore[return-value]

    def send(self, text: str) -> None:
        self.command(text)

    def messages(self) -> list[object]:
        return self.seen("deliver")


def synced(cluster: Cluster) -> Cluster:
    cluster.start()
    cluster.wait_formed()
    for node in cluster.nodes:
        wait_until(lambda n=node: READY in n.text(), f"node {node.nodeid}'s first sync")
    return cluster


def members_of_last_confchg(client: ClientProcess) -> list[list[int]]:
    changes = client.seen("confchg")
    return changes[-1][0] if changes else []  # type: ignore[return-value]


def test_clients_on_two_nodes_exchange_messages_and_see_a_killed_client_leave(
    make_cluster: MakeCluster,
) -> None:
    cluster = synced(make_cluster(50))
    a = ClientProcess(cluster.node(1), "loop group")
    b = ClientProcess(cluster.node(2), "loop group")
    victim = ClientProcess(cluster.node(3), "loop group")
    clients = (a, b, victim)
    try:
        for client in clients:
            wait_until(lambda c=client: bool(c.seen("ready")), "a client to join")
        everyone = sorted([[1, a.pid, 0], [2, b.pid, 0], [3, victim.pid, 0]])
        for client in (a, b):
            wait_until(
                lambda c=client: sorted(members_of_last_confchg(c)) == everyone,
                "the three clients in one group",
            )
        a.send("from a")
        b.send("from b")
        for client in clients:
            wait_until(lambda c=client: len(c.messages()) == 2, "both messages delivered")
        assert a.messages() == b.messages() == victim.messages()
        assert sorted(m[2] for m in a.messages()) == ["from a", "from b"]  # type: ignore[index]
        victim.proc.send_signal(signal.SIGKILL)
        gone = [3, victim.pid, int(CpgReason.PROCDOWN)]
        for client in (a, b):
            wait_until(
                lambda c=client: any(gone in change[1] for change in c.seen("confchg")),  # type: ignore[operator]
                "a PROCDOWN confchg for the killed client",
            )
            assert sorted(members_of_last_confchg(client)) == sorted(everyone[:2])
    finally:
        for client in clients:
            client.stop()


def test_a_message_over_the_atomic_size_arrives_whole_in_the_agreed_order(
    make_cluster: MakeCluster,
) -> None:
    cluster = synced(make_cluster(53))
    clients = [ClientProcess(cluster.node(n), "big group") for n in (1, 2, 3)]
    a, b, _ = clients
    try:
        for client in clients:
            wait_until(lambda c=client: bool(c.seen("ready")), "a client to join")
        for client in clients:
            wait_until(lambda c=client: len(members_of_last_confchg(c)) == 3, "three members")
        size = 3 * cpg.MAX_ATOMIC_MSG_SIZE + 12345  # four fragments
        expected = hashlib.sha256(random.Random(7).randbytes(size)).hexdigest()
        a.send("before")
        a.send(f"big {size} 7")
        b.send("while a sends")
        a.send("after")
        for client in clients:
            wait_until(lambda c=client: len(c.messages()) == 4, "four deliveries", 60.0)
        assert a.messages() == b.messages() == clients[2].messages()
        texts = [m[2] for m in a.messages()]  # type: ignore[index]
        assert [t for t in texts if t != "while a sends"] == [
            "before",
            f"big {size} {expected}",
            "after",
        ]
    finally:
        for client in clients:
            client.stop()


CPGBENCH_LINE = re.compile(
    r"^ *(\d+) messages received +(\d+) bytes per write +(\d+\.\d{3}) Seconds runtime "
    r"+(\d+\.\d{3}) TP/s +(\d+\.\d{3}) MB/s\.$"
)


def test_cpgbench_on_two_nodes_counts_every_senders_deliveries(make_cluster: MakeCluster) -> None:
    cluster = synced(make_cluster(51, 2))
    command = [sys.executable, "-m", "pycorosync.tools.cpgbench", "-t", "0.5"]
    command += ["-s", "64,1024", "-m", "2", "-l"]
    benches = [
        subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYCOROSYNC_RUN_DIR": str(node.base / f"r{node.nodeid}")},
        )
        for node in cluster.nodes
    ]
    outputs = [bench.communicate(timeout=60)[0] for bench in benches]
    assert [bench.returncode for bench in benches] == [0, 0]
    for output in outputs:
        lines = output.splitlines()
        figures = [CPGBENCH_LINE.match(line) for line in lines if "messages received" in line]
        assert len(figures) == 2, output
        assert all(figures), output
        assert [int(m.group(2)) for m in figures if m] == [64, 1024]
        assert all(int(m.group(1)) > 0 for m in figures if m)
        assert sum(line.startswith("latency ms: p50 ") for line in lines) == 2, output


HOLD_MS = 1000 / (4 + 0.2) * 0.8 - 10
"""The token hold of this file's token (1000 ms): about 180 ms."""


def test_a_message_sent_on_an_idle_ring_cancels_the_token_hold(make_cluster: MakeCluster) -> None:
    # After 3 idle rotations the representative (node 1) holds the token for HOLD_MS. A
    # message of node 2 must cancel that (SRP sees it queued and multicasts a hold cancel),
    # not wait for the timer.
    cluster = make_cluster(52)
    cluster.extra_totem = "    seqno_unchanged_const: 3\n"
    synced(cluster)
    run_dir = str(cluster.node(2).base / "r2")
    delivered: list[bytes] = []
    handle = cpg.initialize(
        lambda g, n, p, m: delivered.append(m), lambda *a: None, run_dir=run_dir
    )
    try:
        handle.join(b"hold")
        trips = []
        for i in range(10):
            # Idle long enough for the hold to set in (a few rotations of a few ms).
            threading.Event().wait(0.05)
            start = time.monotonic()
            message = b"m%d" % i
            handle.mcast_joined(CpgGuarantee.AGREED, message)
            wait_until(lambda m=message: (handle.dispatch(cpg.DispatchFlag.ALL), m in delivered)[1],
                       "our own message back")  # fmt: skip
            trips.append(time.monotonic() - start)
        # Waiting for the hold timer would take HOLD_MS / 2 on average; cancelled, a trip is
        # a few rotations.
        assert statistics.median(trips) < HOLD_MS / 3 / 1000, trips
        stats = cmap.initialize(run_dir=run_dir, cmap_map=CMAP_MAP_STATS)
        try:
            wait_until(lambda: stats.get_uint64("stats.srp.token_hold_cancel_tx") > 0,
                       "a hold cancel counted")  # fmt: skip
        finally:
            stats.finalize()
    finally:
        handle.finalize()
