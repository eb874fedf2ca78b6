"""cpgverify-style checks of the CPG engine through partitions and merges, over many seeds.

A small deterministic driver plays Totem for real CPG engines: it splits the nodes into
partitions and heals them (each partition its own ring: TRANSITIONAL and REGULAR confchg, then
one sync round with deliveries between ``sync_process`` passes), delivers each partition's
multicasts in one agreed order - only some of them at a time, so messages are in flight when
the membership changes - and kills and restarts clients. Before a membership change every
partition's pending messages are delivered in the old configuration, as EVS requires.

Every client sends sequenced messages. At the end, after one final heal, the checks are:

* every node's process table is the same, and holds exactly the live clients;
* every live client received every message it sent (nothing accepted is lost);
* each receiver got each sender's messages in sequence, none twice;
* two clients that were members throughout a ring, in the same partition, delivered exactly the
  same messages in that ring in the same order, with the same confchgs at the same points.
"""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass, field

import pytest

from pycorosync.exec.totem.events import ConfigKind, RingId
from pycorosync.lib import cpg_wire as wire
from pycorosync.lib.cpg_wire import ConfChgBody, CpgRequestId, DeliverBody, TotemConfChgBody
from pycorosync.plugins.engine import ClientConnection
from pycorosync.plugins.testing import FakeExecutive, Multicast
from pycorosync.services.cpg import CpgEngine
from tests._cpg_bench import decode_event

G = b"cpg_bm"
NODES = (1, 2, 3, 4)
SEEDS = range(40)
STEPS = 80


@dataclass
class Client:
    node: int
    conn: ClientConnection
    sent: list[bytes] = field(default_factory=list)
    tokens: list[tuple[tuple[int, int], tuple[object, ...]]] = field(default_factory=list)
    """((ring seq, the ring before it) at delivery, event) in the order the client got them."""
    joined_ring: int | None = None
    alive: bool = True
    killed_ring: int | None = None
    seen: int = 0


class World:
    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.engines = {n: CpgEngine() for n in NODES}
        self.executives = {n: FakeExecutive(n) for n in NODES}
        for n in NODES:
            self.engines[n].exec_init(self.executives[n])
        self.partition_of: dict[int, tuple[int, ...]] = {}
        self.ring_of: dict[int, int] = {}
        self.previous_ring_of: dict[int, int] = {}
        self.ring_nodes: dict[tuple[int, int], list[int]] = defaultdict(list)
        """(ring, previous ring) -> the nodes that came into ``ring`` from ``previous``."""
        self.outboxes: dict[tuple[int, ...], list[Multicast]] = {}
        self.ring_seq = 0
        self.clients: list[Client] = []
        self.pids = iter(range(1000, 100000))
        self.form([NODES])

    # -- Totem's part ----------------------------------------------------------------------

    def form(self, partitions: list[tuple[int, ...]]) -> None:
        for part in list(self.outboxes):
            self.deliver(part, everything=True)
        self.collect()
        old = dict(self.partition_of)
        self.outboxes = {}
        for part in partitions:
            self.ring_seq += 1
            ring = RingId(seq=self.ring_seq, rep=part[0])
            outbox: list[Multicast] = []
            self.outboxes[part] = outbox
            for n in part:
                self.executives[n].outbox = outbox
                self.previous_ring_of[n] = self.ring_of.get(n, 0)
                self.ring_nodes[ring.seq, self.previous_ring_of[n]].append(n)
                self.partition_of[n], self.ring_of[n] = part, ring.seq
            self.sync(
                part, ring, {n: tuple(m for m in part if m in old.get(n, (n,))) for n in part}
            )
        self.collect()

    def sync(self, part: tuple[int, ...], ring: RingId, trans: dict[int, tuple[int, ...]]) -> None:
        for n in part:
            self.engines[n].confchg(ConfigKind.TRANSITIONAL, trans[n], (), (), ring)
            self.engines[n].confchg(ConfigKind.REGULAR, part, (), (), ring)
        for n in part:
            self.engines[n].sync_init(trans[n], part, ring)
        pending = set(part)
        while pending:
            pending = {n for n in sorted(pending) if not self.engines[n].sync_process()}
            self.deliver(part, everything=True)
        for n in part:
            self.engines[n].sync_activate()

    def deliver(self, part: tuple[int, ...], *, everything: bool = False) -> None:
        outbox = self.outboxes[part]
        count = len(outbox) if everything else self.rng.randint(0, len(outbox))
        for _ in range(count):
            message = outbox.pop(0)
            for n in part:
                engine = self.engines[n]
                engine.exec_handlers[message.function_id].handler(
                    engine, message.payload, message.sender
                )
        self.collect()

    # -- clients -----------------------------------------------------------------------------

    def start_client(self, node: int) -> None:
        conn = ClientConnection(conn_id=len(self.clients) + 1, pid=next(self.pids), uid=0, gid=0)
        engine = self.engines[node]
        engine.lib_init(conn)
        client = Client(node, conn)
        self.clients.append(client)
        self.request(client, CpgRequestId.JOIN, wire.encode_join(G, conn.pid, 0))

    def request(self, client: Client, request: int, body: bytes) -> None:
        engine = self.engines[client.node]
        engine.lib_handlers[request].handler(engine, client.conn, body)

    def send(self, client: Client) -> None:
        message = b"%d:%d:%d" % (client.node, client.conn.pid, len(client.sent))
        client.sent.append(message)
        self.request(client, CpgRequestId.MCAST, wire.encode_mcast(2, message))

    def kill(self, client: Client) -> None:
        client.alive, client.killed_ring = False, self.ring_of[client.node]
        self.engines[client.node].lib_exit(client.conn)

    def collect(self) -> None:
        """Tag each client's new callbacks with the ring its node is in now."""
        for client in self.clients:
            notes = [n for n in self.executives[client.node].notifications if n.conn == client.conn]
            for note in notes[client.seen :]:
                event = decode_event(note)
                if event is not None:
                    rings = (self.ring_of[client.node], self.previous_ring_of[client.node])
                    client.tokens.append((rings, _token(event)))
                    if isinstance(event, ConfChgBody) and any(
                        j.pid == client.conn.pid for j in event.joined
                    ):
                        client.joined_ring = self.ring_of[client.node]
            client.seen = len(notes)


def _token(event: DeliverBody | ConfChgBody | TotemConfChgBody) -> tuple[object, ...]:
    if isinstance(event, DeliverBody):
        return ("m", event.nodeid, event.pid, event.message)
    if isinstance(event, ConfChgBody):
        return ("c", event.members, event.left, event.joined)
    return ("t", event.ring_id, event.members)


def random_partitions(rng: random.Random) -> list[tuple[int, ...]]:
    labels = {n: rng.randint(0, 2) for n in NODES}
    return [tuple(n for n in NODES if labels[n] == k) for k in sorted(set(labels.values()))]


def run(seed: int) -> World:
    rng = random.Random(seed)
    world = World(rng)
    for n in NODES:
        world.start_client(n)
        world.start_client(rng.choice(NODES))
    for _ in range(STEPS):
        op = rng.choices(["send", "deliver", "split", "heal", "kill"], [10, 6, 1, 1, 1])[0]
        alive = [c for c in world.clients if c.alive]
        if op == "send" and alive:
            for _ in range(rng.randint(1, 4)):
                world.send(rng.choice(alive))
        elif op == "deliver":
            world.deliver(rng.choice(list(world.outboxes)))
        elif op == "split":
            world.form(random_partitions(rng))
        elif op == "heal":
            world.form([NODES])
        elif op == "kill" and alive:
            victim = rng.choice(alive)
            world.kill(victim)
            world.start_client(victim.node)
    world.form([NODES])
    return world


def check(world: World) -> None:
    tables = {n: list(world.engines[n].table.entries()) for n in NODES}
    assert all(t == tables[1] for t in tables.values()), tables
    live = sorted((c.node, c.conn.pid) for c in world.clients if c.alive)
    assert [p for _, p in tables[1]] == live
    for client in world.clients:
        received = [t[1] for t in client.tokens if t[1][0] == "m"]
        assert len(received) == len(set(received)), "a message was delivered twice"
        last: dict[tuple[object, object], int] = {}
        for _, node, pid, message in received:
            seq = int(message.split(b":")[2])  # type: ignore[union-attr]
            assert seq > last.get((node, pid), -1), "a sender's messages out of order"
            last[node, pid] = seq
        if client.alive:
            mine = [m for _, node, pid, m in received if pid == client.conn.pid]
            assert mine == client.sent, "a live client lost one of its own messages"
    check_rings(world)


def check_rings(world: World) -> None:
    """Clients members throughout a ring saw the same messages and totem changes in it, and
    those that also came from the same previous ring saw the same confchgs too."""
    streams: dict[tuple[int, int], dict[int, list[tuple[object, ...]]]] = defaultdict(dict)
    for rings, nodes in world.ring_nodes.items():
        ring = rings[0]
        for index, client in enumerate(world.clients):
            joined_before = client.joined_ring is not None and client.joined_ring < ring
            alive = client.killed_ring is None or client.killed_ring > ring
            if client.node in nodes and joined_before and alive:
                streams[rings][index] = [t for r, t in client.tokens if r == rings]
    for rings, by_client in streams.items():
        assert len({tuple(s) for s in by_client.values()}) == 1, f"rings {rings}: streams differ"
    merged: dict[int, dict[int, list[tuple[object, ...]]]] = defaultdict(dict)
    for (ring, _), by_client in streams.items():
        for index, stream in by_client.items():
            merged[ring].setdefault(index, []).extend(t for t in stream if t[0] != "c")
    for ring, by_client in merged.items():
        assert len({tuple(s) for s in by_client.values()}) == 1, f"ring {ring}: messages differ"


@pytest.mark.parametrize("seed", SEEDS)
def test_every_member_delivers_the_same_stream_through_partitions(seed: int) -> None:
    check(run(seed))


def test_the_runs_exercise_what_they_check() -> None:
    worlds = [run(seed) for seed in range(5)]
    assert sum(len(w.clients) for w in worlds) > 5 * 8  # kills and restarts happened
    assert max(w.ring_seq for w in worlds) > 5  # splits and heals happened
    tokens = [t for w in worlds for c in w.clients for _, t in c.tokens]
    reasons = {a.reason for t in tokens if t[0] == "c" for a in t[2]}  # type: ignore[attr-defined]
    assert {wire.CpgReason.NODEDOWN, wire.CpgReason.PROCDOWN} <= reasons
    assert wire.CpgReason.NODEUP in {a.reason for t in tokens if t[0] == "c" for a in t[3]}  # type: ignore[attr-defined]
