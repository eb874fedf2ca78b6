"""totempg over the real SRP core: large messages fragment, reassemble, and survive (or are
cleanly dropped at) a configuration change."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace

from pycorosync.exec.totem.events import ConfigChange, Delivery, Guarantee
from pycorosync.exec.totem.pg import FrameOutlet, GroupDelivery, TotemPg
from pycorosync.exec.totem.pg_wire import MAX_MESSAGE_SIZE
from tests._srp_net import BOUND_FORM, FAST, Net

GROUP = b"a"
MAX_FRAME = 1400


@dataclass
class PgNode:
    """One node's totempg on top of its SRP core, fed from the test network's events."""

    net: Net
    nodeid: int
    pg: TotemPg = field(init=False)
    seen: int = 0
    got: list[GroupDelivery] = field(default_factory=list)

    def __post_init__(self) -> None:
        net, nodeid = self.net, self.nodeid
        core = net.cores[nodeid]

        def outlet(sync: bool) -> FrameOutlet:
            return FrameOutlet(
                mcast=lambda frame, guarantee: net.mcast(nodeid, frame, guarantee, sync=sync),
                room=lambda: core.room(sync=sync),
                queue_size=core.room(sync=sync),
            )

        self.pg = TotemPg(max_frame=MAX_FRAME, app=outlet(False), sync=outlet(True))
        self.pg.join(GROUP)

    def feed(self, events: list[object]) -> None:
        for event in events[self.seen :]:
            if isinstance(event, Delivery):
                self.got.extend(self.pg.deliver(event.sender, event.payload, event.guarantee))
            elif isinstance(event, ConfigChange):
                self.pg.config_change(event)
        self.seen = len(events)


def _big(tag: bytes, size: int = MAX_MESSAGE_SIZE) -> bytes:
    block = hashlib.sha256(tag).digest()
    return (block * (size // len(block) + 1))[:size]


def _run(net: Net, nodes: dict[int, PgNode], until: object, seconds: float) -> bool:
    def done() -> bool:
        for nodeid, node in nodes.items():
            if nodeid in net.cores:
                node.feed(net.events[nodeid])  # type: ignore[arg-type]
        return bool(until())  # type: ignore[operator]

    return net.run_until(done, seconds)


def test_a_1_mib_message_reassembles_across_a_configuration_change() -> None:
    # A slow ring (small window, 2 ms links) so the message is still in flight when node 4
    # arrives and the ring is rebuilt around it.
    config = replace(FAST, window_size=6, max_messages=3)
    net = Net((1, 2, 3, 4), config=config, latency=0.002)
    net.start([1, 2, 3])
    assert net.run_until(lambda: net.one_ring((1, 2, 3)), BOUND_FORM)
    nodes = {n: PgNode(net, n) for n in (1, 2, 3)}
    message = _big(b"across")
    assert nodes[1].pg.mcast([GROUP], message)
    assert nodes[1].pg.flush()
    net.run(0.01)  # part of the message is on the old ring ...
    net.start([4])  # ... when node 4 joins and the ring is rebuilt
    nodes[4] = PgNode(net, 4)

    def everyone_has_it() -> bool:
        return all(len(nodes[n].got) == 1 for n in (1, 2, 3))

    assert _run(net, nodes, everyone_has_it, 3 * BOUND_FORM)
    assert _run(net, nodes, lambda: net.one_ring((1, 2, 3, 4)), 3 * BOUND_FORM)
    for n in (1, 2, 3):
        assert nodes[n].got[0].payload == message
        assert nodes[n].got[0].sender == 1
    assert nodes[4].got == [], "a joiner never gets the tail of a message it missed the head of"
    rings = {d.ring_id for d in net.deliveries(2) if d.sender == 1}
    assert len(rings) == 2, "the message's frames must straddle the configuration change"
    net.run(2.0)
    assert net.checker.finish() == []


def test_a_sender_that_dies_mid_message_leaves_no_half_message_anywhere() -> None:
    net = Net((1, 2, 3), config=replace(FAST, window_size=6, max_messages=3), latency=0.002)
    net.start()
    assert net.run_until(lambda: net.one_ring((1, 2, 3)), BOUND_FORM)
    nodes = {n: PgNode(net, n) for n in (1, 2, 3)}
    assert nodes[3].pg.mcast([GROUP], _big(b"doomed"))
    assert nodes[3].pg.flush()
    assert nodes[1].pg.mcast([GROUP], b"small and whole", guarantee=Guarantee.SAFE)
    assert nodes[1].pg.flush()
    net.run(0.1)
    frames = len([d for d in net.deliveries(1) if d.sender == 3])
    assert 0 < frames < MAX_MESSAGE_SIZE // MAX_FRAME, "node 3 must die mid-message"
    net.crash(3)
    del nodes[3]
    assert _run(net, nodes, lambda: net.one_ring((1, 2)), BOUND_FORM)
    net.run(1.0)
    _run(net, nodes, lambda: False, 0.1)
    for n in (1, 2):
        assert [d.payload for d in nodes[n].got] == [b"small and whole"]
        assert nodes[n].pg.unpacker.unfinished(nodes[n].got[0].lane) == {}
    net.run(2.0)
    assert net.checker.finish() == []
