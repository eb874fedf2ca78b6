"""cpgverify on 3 real nodes: sequenced, checksummed CPG traffic while a client process is
killed, a whole node is killed and rejoins, and a new client joins on it.

Every node runs a ``tests._cpg_verifier`` process; node 2 also runs a victim. At the end:

* no message arrives corrupted;
* the two clients that lived throughout saw exactly the same stream - every delivery and
  every confchg, in the same order - from the first configuration holding both of them;
* the client that joined late saw exactly the suffix of that stream from its own join;
* from every sender, each receiver got an unbroken run of sequence numbers starting at 1, no
  duplicates; from the ones that lived, all that they sent;
* the victim left with PROCDOWN and the killed node's client with NODEDOWN.

Addresses 127.0.54.x are this file's alone.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from pycorosync.lib.cpg_wire import CpgReason
from tests._loopback import Cluster, JsonLinesChild, MakeCluster, Node, wait_until

pytestmark = pytest.mark.xdist_group("loopback")

ROOT = Path(__file__).resolve().parent.parent
READY = "ready to provide service."
GROUP = "cpgverify"
Event = tuple[str, object]


class Verifier(JsonLinesChild):
    """One ``tests._cpg_verifier`` process and the records it printed, in order."""

    def __init__(self, node: Node) -> None:
        run_dir = str(node.base / f"r{node.nodeid}")
        super().__init__(["-m", "tests._cpg_verifier", run_dir, GROUP], ROOT)

    @property
    def address(self) -> list[int]:
        nodeid, pid = self.take("ready")[0]  # type: ignore[misc]
        return [nodeid, pid]

    def stream(self) -> list[Event]:
        """Deliveries and confchgs in the order this client got them."""
        return [
            ("d", tuple(r["d"])) if "d" in r else ("c", json.dumps(r["c"]))  # type: ignore[arg-type]
            for r in self.snapshot()
            if "d" in r or "c" in r
        ]

    def delivered_from(self, address: list[int]) -> list[int]:
        return [seq for nodeid, pid, seq in self.take("d") if [nodeid, pid] == address]  # type: ignore[misc]

    def members(self) -> list[list[int]]:
        changes = self.take("c")
        return [[n, p] for n, p, _ in changes[-1][0]] if changes else []  # type: ignore[index]


def synced(cluster: Cluster, nodes: list[Node]) -> None:
    for node in nodes:
        wait_until(lambda n=node: READY in n.since_mark(), f"node {node.nodeid} in sync")


def from_confchg_with(stream: list[Event], addresses: list[list[int]]) -> list[Event]:
    """The stream from the first confchg whose members include every one of ``addresses``."""
    for index, (kind, body) in enumerate(stream):
        if kind == "c":
            members = [[n, p] for n, p, _ in json.loads(str(body))[0]]
            if all(a in members for a in addresses):
                return stream[index:]
    raise AssertionError(f"no confchg holds {addresses}")


def left_with(client: Verifier, address: list[int]) -> int:
    """The reason ``address`` left in ``client``'s confchgs."""
    for _members, left, _joined in client.take("c"):  # type: ignore[misc]
        for nodeid, pid, reason in left:
            if [nodeid, pid] == address:
                return int(reason)
    raise AssertionError(f"{address} never left")


def unbroken(seqs: list[int]) -> bool:
    return seqs == list(range(1, len(seqs) + 1))


def test_every_member_delivers_the_same_stream_through_a_kill_and_a_rejoin(
    make_cluster: MakeCluster,
) -> None:
    cluster = make_cluster(54)
    cluster.start()
    cluster.wait_formed()
    synced(cluster, cluster.nodes)
    a, b, c, victim = (Verifier(cluster.node(n)) for n in (1, 2, 3, 2))
    late: Verifier | None = None
    try:
        for client in (a, b, c, victim):
            wait_until(lambda v=client: bool(v.take("ready")), "a verifier to join")
        first = [v.address for v in (a, b, c, victim)]
        wait_until(lambda: sorted(a.members()) == sorted(first), "four members")

        for client in (a, b, c, victim):
            client.command("send 400")
        wait_until(lambda: len(a.take("d")) >= 200, "traffic under way")
        victim.proc.send_signal(signal.SIGKILL)
        wait_until(lambda: len(a.take("d")) >= 500, "traffic after the client's death")
        cluster.set_marks()
        cluster.node(3).signal(signal.SIGKILL)
        cluster.node(3).wait_exit()
        cluster.wait_formed(cluster.nodes[:2])

        cluster.node(3).start()
        cluster.wait_formed()
        synced(cluster, [cluster.node(3)])
        late = Verifier(cluster.node(3))
        wait_until(lambda: bool(late.take("ready")), "the late verifier to join")
        survivors = (a, b, late)
        for client in survivors:  # its join is delivered: what is sent now reaches it
            wait_until(lambda v=client: late.address in v.members(), "the late join's confchg")
        for client in survivors:
            client.command("send 150")
        for client in (a, b):
            wait_until(lambda v=client: v.take("sent")[-1:] == [550], "a survivor's sends")
        wait_until(lambda: late.take("sent")[-1:] == [150], "the late verifier's sends")
        expected = [[550, 550, 150], [550, 550, 150], [150, 150, 150]]

        def counts() -> list[list[int]]:
            return [[len(r.delivered_from(s.address)) for s in survivors] for r in survivors]

        try:
            wait_until(lambda: counts() == expected, "every survivor's messages everywhere")
        except BaseException:
            print("delivered (receiver x sender):", counts())  # shown by pytest on failure
            for node in cluster.nodes:
                print(f"--- node {node.nodeid}'s log\n", node.text()[-3000:])
            raise

        assert c.proc.wait(20) == 3  # its daemon was killed: it saw the connection go
        check_streams(a, b, late, gone=(c, victim))
    finally:
        for client in (a, b, c, victim, *([late] if late else [])):
            client.stop()


def check_streams(
    a: Verifier, b: Verifier, late: Verifier, gone: tuple[Verifier, Verifier]
) -> None:
    """The run's verdict (see the module docstring); ``gone`` = (killed node's, victim)."""
    c, victim = gone
    for client in (a, b, late, *gone):
        assert client.take("bad") == []
    both = from_confchg_with(a.stream(), [a.address, b.address])
    assert both == from_confchg_with(b.stream(), [a.address, b.address])
    assert late.stream() == from_confchg_with(a.stream(), [late.address])
    for receiver in (a, b):
        for sender, total in ((a, 550), (b, 550), (late, 150)):
            assert receiver.delivered_from(sender.address) == list(range(1, total + 1))
        for sender in gone:
            assert unbroken(receiver.delivered_from(sender.address))
    assert late.delivered_from(a.address) == late.delivered_from(b.address)
    assert late.delivered_from(a.address) == list(range(401, 551))
    assert late.delivered_from(late.address) == list(range(1, 151))
    assert left_with(a, victim.address) == CpgReason.PROCDOWN
    assert left_with(a, c.address) == CpgReason.NODEDOWN
    assert len(both) > 1000  # the checks ran over real traffic
    # the victim's PROCDOWN, node 3's NODEDOWN and the late join at least
    assert sum(1 for kind, _ in both if kind == "c") >= 3
