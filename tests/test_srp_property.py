"""Hypothesis drives the SRP state machine: any schedule of traffic bursts, loss,
partitions, one-way links, crashes, restarts and leaves keeps every EVS invariant, and once
the faults stop all nodes form one ring and deliver a probe from each of them. Shrinking turns
a failure into a minimal schedule. (The simulator's random sweeps find more; this one shrinks.)
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from pycorosync.exec.totem.events import Guarantee
from pycorosync.exec.totem.history import Crashed
from tests._srp_net import BOUND_FORM, Net

NODES = (1, 2, 3, 4)
node = st.sampled_from(NODES)
Op = tuple[object, ...]
operation = st.one_of(
    st.tuples(st.just("mcast"), node, st.integers(1, 40), st.booleans()),
    st.tuples(st.just("run"), st.sampled_from([0.0005, 0.005, 0.05, 0.3, 1.5, 3.0])),
    st.tuples(st.just("block"), node, node),
    st.tuples(st.just("split"), st.frozensets(node, min_size=1, max_size=3)),
    st.tuples(st.just("lose"), st.integers(2, 9)),
    st.tuples(st.just("heal")),
    st.tuples(st.just("crash"), node),
    st.tuples(st.just("restart"), node),
    st.tuples(st.just("leave"), node),
)


class Faults:
    """The link filter the schedule controls: one-way blocks and a two-sided split."""

    def __init__(self) -> None:
        self.blocked: set[tuple[int, int]] = set()
        self.side: frozenset[int] = frozenset()
        self.every = 0
        """Drop every ``every``-th datagram (0: none) - deterministic loss."""
        self.count = 0

    def link(self, src: int, dst: int, data: bytes) -> bool:
        if (src, dst) in self.blocked:
            return False
        self.count += 1
        if self.every and self.count % self.every == 0:
            return False
        return (src in self.side) == (dst in self.side)

    def heal(self) -> None:
        self.blocked.clear()
        self.side = frozenset()
        self.every = 0


def _apply(net: Net, faults: Faults, op: Op, counter: list[int]) -> None:
    kind = op[0]
    if kind == "mcast" and op[1] in net.cores:
        guarantee = Guarantee.SAFE if op[3] else Guarantee.AGREED
        for _ in range(op[2]):  # type: ignore[call-overload]
            counter[0] += 1
            net.mcast(op[1], f"n{op[1]}:{counter[0]}".encode(), guarantee)  # type: ignore[arg-type]
    elif kind == "run":
        net.run(op[1])  # type: ignore[arg-type]
    elif kind == "block" and op[1] != op[2]:
        faults.blocked.add((op[1], op[2]))  # type: ignore[arg-type]
    elif kind == "split":
        faults.side = op[1]  # type: ignore[assignment]
    elif kind == "lose":
        faults.every = op[1]  # type: ignore[assignment]
    elif kind == "heal":
        faults.heal()
    elif kind == "crash" and op[1] in net.cores:
        net.crash(op[1])  # type: ignore[arg-type]
    elif kind == "restart" and op[1] not in net.cores:
        net.restart(op[1])  # type: ignore[arg-type]
    elif kind == "leave" and op[1] in net.cores:
        nodeid: int = op[1]  # type: ignore[assignment]
        net.cores[nodeid].leave(net.now)
        net._drain(nodeid)
        del net.cores[nodeid]
        net.checker.observe(nodeid, Crashed())


@settings(max_examples=100, deadline=None)
@given(st.lists(operation, max_size=30))
def test_any_fault_schedule_keeps_evs_and_ends_in_one_ring(schedule: list[Op]) -> None:
    faults = Faults()
    net = Net(NODES, link=faults.link)
    net.start()
    counter = [0]
    for op in schedule:
        _apply(net, faults, op, counter)
    faults.heal()
    for nodeid in NODES:
        if nodeid not in net.cores:
            net.restart(nodeid)
    assert net.run_until(lambda: net.one_ring(NODES), 3 * BOUND_FORM), {
        n: (c.state.name, c.members) for n, c in net.cores.items()
    }
    probes = [f"probe{n}".encode() for n in NODES]
    for nodeid, probe in zip(NODES, probes, strict=True):
        assert net.mcast(nodeid, probe)
    assert net.run_until(
        lambda: all(set(probes) <= set(net.payloads(n)) for n in NODES), BOUND_FORM
    )
    net.run(1.0)
    assert net.checker.finish() == []
