"""Service engines in worker processes on a real 3-node loopback cluster: cmap end to end.

Real ``corosync-exec`` processes (their workers included), real sockets, real clients: the
``corosync-cmapctl`` tool and ``lib/cmap`` against each node's run directory. Every wait has
a deadline; the helpers and the address blocks rules are those of
``tests/test_cluster_loopback.py``.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pycorosync.lib.cmap import CmapHandle
from pycorosync.lib.cmap_types import CmapEntry, TrackEvent, TrackFlags, ValueType
from pycorosync.lib.cmap_wire import CmapRequestId, encode_key
from pycorosync.lib.errors import LibraryError
from pycorosync.lib.ipc_wire import Frame, FrameKind, encode_frame
from tests._loopback import DEADLINE_S, Cluster, MakeCluster, Node, wait_until

pytestmark = pytest.mark.xdist_group("loopback")

READY = "ready to provide service."


def synced(cluster: Cluster) -> Cluster:
    """A started cluster whose every node has formed the ring and finished its first sync."""
    cluster.start()
    cluster.wait_formed()
    for node in cluster.nodes:
        wait_until(lambda n=node: READY in n.text(), f"node {node.nodeid}'s first sync")
    return cluster


def run_dir(node: Node) -> str:
    return str(node.base / f"r{node.nodeid}")


def cmapctl(node: Node, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYCOROSYNC_RUN_DIR": run_dir(node)}
    return subprocess.run(
        [sys.executable, "-m", "pycorosync.tools.cmapctl", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=DEADLINE_S,
        check=False,
    )


def joined_members(node: Node) -> set[int]:
    done = cmapctl(node, "runtime.members")
    assert done.returncode == 0, done.stderr
    return {
        int(line.split(".")[2])
        for line in done.stdout.splitlines()
        if line.endswith(".status (str) = joined")
    }


def worker_pids(node: Node) -> list[int]:
    assert node.proc is not None
    parent = str(node.proc.pid)
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if stat.rsplit(")", 1)[1].split()[1] == parent and b"pycorosync.exec.worker" in cmdline:
            pids.append(int(entry.name))
    return pids


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


def test_cmapctl_shows_the_same_three_joined_members_on_every_node(
    make_cluster: MakeCluster,
) -> None:
    cluster = synced(make_cluster(40))
    for node in cluster.nodes:
        wait_until(lambda n=node: joined_members(n) == {1, 2, 3}, "three joined members")
        lines = cmapctl(node, "runtime.members.1.").stdout.splitlines()
        assert lines == [
            "runtime.members.1.config_version (u64) = 0",
            "runtime.members.1.ip (str) = r(0) ip(127.0.40.1) ",
            "runtime.members.1.join_count (u32) = 1",
            "runtime.members.1.status (str) = joined",
        ]

    # The stats map: the Totem process's counters (reported every second) and the worker's.
    def counted(text: str) -> int:
        return int(text.rsplit("= ", 1)[1]) if " = " in text else 0

    node = cluster.node(1)
    wait_until(
        lambda: counted(cmapctl(node, "-m", "stats", "-g", "stats.srp.orf_token_rx").stdout) > 0,
        "token counts in the stats map",
    )
    listing = cmapctl(node, "-m", "stats", "stats.").stdout
    assert "stats.ipcs.global.active (u64) = 1\n" in listing  # this very cmapctl
    assert "stats.pg.msg_queue_avail (u64) = " in listing
    # A write through one node's worker is applied by its Totem process and read back.
    assert cmapctl(cluster.node(2), "-s", "test.key", "u32", "7").returncode == 0
    assert cmapctl(cluster.node(2), "-g", "test.key").stdout == "test.key (u32) = 7\n"
    refused = cmapctl(cluster.node(2), "-s", "totem.cluster_name", "str", "other")
    assert refused.returncode != 0
    assert "CS_ERR_ACCESS" in refused.stderr + refused.stdout


def test_a_cmap_track_sees_a_node_leave(make_cluster: MakeCluster) -> None:
    cluster = synced(make_cluster(41))
    handle = CmapHandle(run_dir=run_dir(cluster.node(1)))
    seen: list[tuple[TrackEvent, str, CmapEntry | None]] = []
    handle.track_add(
        "runtime.members.",
        TrackFlags.ADD | TrackFlags.MODIFY | TrackFlags.DELETE | TrackFlags.PREFIX,
        lambda event, key, new, old: seen.append((event, key, new)),
    )
    victim = cluster.node(3)
    assert victim.proc is not None
    victim.proc.kill()
    left = (TrackEvent.MODIFY, "runtime.members.3.status", CmapEntry(ValueType.STRING, "left"))

    def noticed() -> bool:
        handle.dispatch()
        return left in seen

    wait_until(noticed, "the tracker to see node 3 leave")
    handle.finalize()


def test_a_killed_worker_is_restarted_and_its_node_resynchronises(
    make_cluster: MakeCluster,
) -> None:
    cluster = synced(make_cluster(42))
    node = cluster.node(1)
    client = CmapHandle(run_dir=run_dir(node))
    assert client.get_string("totem.cluster_name") == "loop"
    (worker,) = worker_pids(node)
    node.set_mark()
    os.kill(worker, signal.SIGKILL)
    wait_until(lambda: "exited with code -9; restarting it" in node.since_mark(), "the restart")
    with pytest.raises(LibraryError):
        client.get_string("totem.cluster_name")  # its worker is gone
    wait_until(lambda: READY in node.since_mark(), "the resynchronisation")
    (restarted,) = worker_pids(node)
    assert restarted != worker
    again = CmapHandle(run_dir=run_dir(node))
    assert again.get_string("totem.cluster_name") == "loop"
    # The others saw the node leave and join again: every engine went through sync.
    other = cluster.node(2)
    wait_until(
        lambda: (
            "runtime.members.1.join_count (u32) = 2\n"
            in cmapctl(other, "runtime.members.1.join_count").stdout
        ),
        "node 1 counted as joining again",
    )
    assert node.alive()


def test_clients_that_flood_or_never_read_cannot_stall_the_ring(make_cluster: MakeCluster) -> None:
    cluster = synced(make_cluster(43))
    node = cluster.node(2)
    (worker,) = worker_pids(node)
    rings_before = [n.ring() for n in cluster.nodes]
    rss_before = rss_kib(worker)
    path = os.path.join(run_dir(node), "cmap.sock")
    # A client that sends GET requests as fast as the socket takes them and reads nothing.
    hog = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    hog.connect(path)
    hog.setblocking(False)
    body = encode_key("totem.cluster_name")
    serials = iter(range(1, 1 << 31))
    deadline = time.monotonic() + 3.0
    sent = 0
    while time.monotonic() < deadline:
        burst = b"".join(
            encode_frame(Frame(FrameKind.REQUEST, CmapRequestId.GET, body, next(serials)))
            for _ in range(64)
        )
        try:
            sent += hog.send(burst)
        except BlockingIOError:
            time.sleep(0.001)  # the worker's buffers are full; keep pressing
        except (BrokenPipeError, ConnectionResetError):
            break  # disconnected: the outcome this test wants
    assert sent > 0
    # The worker still serves others, the ring did not move, and its memory stayed bounded.
    assert CmapHandle(run_dir=run_dir(node)).get_string("totem.cluster_name") == "loop"
    assert [n.ring() for n in cluster.nodes] == rings_before
    assert all("A processor failed" not in n.text() for n in cluster.nodes)
    assert rss_kib(worker) - rss_before < 64 * 1024
    hog.close()


def test_garbage_frames_and_unauthorised_peers_are_refused(
    make_cluster: MakeCluster, base: Path
) -> None:
    cluster = synced(make_cluster(44))
    node = cluster.node(3)
    path = os.path.join(run_dir(node), "cmap.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as garbage:
        garbage.connect(path)
        garbage.settimeout(DEADLINE_S)
        garbage.sendall(b"\xff" * 64)
        received = b""
        while chunk := garbage.recv(4096):
            received += chunk  # the HELLO, then an error frame, then the close
    assert received  # answered, then closed
    assert CmapHandle(run_dir=run_dir(node)).get_string("totem.cluster_name") == "loop"
    if os.getuid() != 0:
        pytest.skip("the unauthorised peer needs root to run a client as another user")
    for directory in (base, Path(run_dir(node))):
        directory.chmod(0o755)
    nobody = subprocess.run(
        [sys.executable, "-c", _AS_NOBODY, run_dir(node)],
        capture_output=True,
        text=True,
        timeout=DEADLINE_S,
        check=False,
    )
    assert nobody.stdout.strip() == "CS_ERR_ACCESS", nobody.stderr
    assert node.alive()
    assert CmapHandle(run_dir=run_dir(node)).get_string("totem.cluster_name") == "loop"


_AS_NOBODY = """
import os, sys
from pycorosync.lib.cmap import CmapHandle
from pycorosync.lib.errors import CsError
import pycorosync.lib.ipc
# Imported as root (nobody cannot read this Python's files); connect as nobody, whose
# credentials the worker reads with SO_PEERCRED.
os.setgroups([])
os.setgid(65534)
os.setuid(65534)
try:
    CmapHandle(run_dir=sys.argv[1]).get_string("totem.cluster_name")
    print("admitted")
except CsError as error:
    print(error.code.name)
"""


def test_sigterm_unloads_the_engines_before_the_node_leaves(make_cluster: MakeCluster) -> None:
    cluster = synced(make_cluster(45))
    node = cluster.node(2)
    (worker,) = worker_pids(node)
    node.signal(signal.SIGTERM)
    assert node.wait_exit() == 0
    text = node.since_mark()
    order = [
        "Unloading all Corosync service engines.",
        "Service engine unloaded: cmap",
        "Corosync Cluster Engine exiting normally",
    ]
    positions = [text.find(line) for line in order]
    assert -1 not in positions, text[-2000:]
    assert positions == sorted(positions)
    wait_until(lambda: not Path(f"/proc/{worker}").exists(), "the worker to exit")
    others = [cluster.node(1), cluster.node(3)]
    cluster.wait_formed(others)


def test_the_totem_process_runs_real_time_and_its_worker_does_not(
    make_cluster: MakeCluster,
) -> None:
    if os.getuid() != 0:
        pytest.skip("SCHED_RR needs root (or CAP_SYS_NICE)")
    cluster = make_cluster(46, 1)
    cluster.sched_rr = True
    synced(cluster)
    node = cluster.node(1)
    assert node.proc is not None
    assert os.sched_getscheduler(node.proc.pid) == os.SCHED_RR
    assert os.sched_getparam(node.proc.pid).sched_priority == os.sched_get_priority_max(os.SCHED_RR)
    (worker,) = worker_pids(node)
    assert os.sched_getscheduler(worker) == os.SCHED_OTHER
