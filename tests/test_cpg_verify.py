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

from pycorosync.exec.totem.events import ConfigKind, Guarantee, RingId
from pycorosync.lib import cpg_wire as wire
from pycorosync.lib.cpg_wire import ConfChgBody, CpgRequestId, DeliverBody, TotemConfChgBody
from pycorosync.plugins.engine import ClientConnection, SendStatus
from pycorosync.plugins.testing import FakeExecutive, Multicast
from pycorosync.services.cpg import CpgEngine
from pycorosync.services.cpg.engine import JoinState
from tests._cpg_bench import decode_events

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


class LaneExecutive(FakeExecutive):
    """Queues each multicast on its node's SYNC or APP lane, as the worker does."""

    def __init__(self, nodeid: int, world: World) -> None:
        super().__init__(nodeid)
        self.world = world

    def mcast(
        self, function_id: int, payload: bytes, guarantee: Guarantee = Guarantee.AGREED
    ) -> SendStatus:
        message = Multicast(
            sender=self.nodeid, function_id=function_id, payload=payload, guarantee=guarantee
        )
        lane = "sync" if self.nodeid in self.world.in_sync else "app"
        self.world.queues[self.nodeid, lane].append(message)
        return SendStatus.QUEUED


class World:
    """Totem for the engines: per-node SYNC and APP queues (the SYNC one sent first), a
    partition's agreed order made of what its nodes sent, and ring changes that deliver what
    was sent in the old configuration and carry what was not into the next one. The APP queue
    is held while a round runs; a SYNC message carried over arrives during the next round."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.in_sync: set[int] = set()
        self.queues: dict[tuple[int, str], list[Multicast]] = defaultdict(list)
        self.engines = {n: CpgEngine() for n in NODES}
        self.executives = {n: LaneExecutive(n, self) for n in NODES}
        for n in NODES:
            self.engines[n].exec_init(self.executives[n])
        self.partition_of: dict[int, tuple[int, ...]] = {}
        self.ring_of: dict[int, int] = {}
        self.previous_ring_of: dict[int, int] = {}
        self.ring_nodes: dict[tuple[int, int], list[int]] = defaultdict(list)
        """(ring, previous ring) -> the nodes that came into ``ring`` from ``previous``."""
        self.ordered: dict[tuple[int, ...], list[Multicast]] = {}
        """Per partition: sent on its ring, to be delivered in this configuration."""
        self.ring_seq = 0
        self.restarts: list[int] = []
        """Nodes whose killed client restarts once no round runs (JOIN waits for sync)."""
        self.clients: list[Client] = []
        self.pids = iter(range(1000, 100000))
        self.form([NODES])

    # -- Totem's part ----------------------------------------------------------------------

    def form(self, partitions: list[tuple[int, ...]]) -> None:
        for part in list(self.ordered):
            self.deliver(part, everything=True)
        old = dict(self.partition_of)
        self.ordered = {}
        for part in partitions:
            self.ring_seq += 1
            ring = RingId(seq=self.ring_seq, rep=part[0])
            self.ordered[part] = []
            for n in part:
                self.previous_ring_of[n] = self.ring_of.get(n, 0)
                self.ring_nodes[ring.seq, self.previous_ring_of[n]].append(n)
                self.partition_of[n], self.ring_of[n] = part, ring.seq
            self.sync(
                part, ring, {n: tuple(m for m in part if m in old.get(n, (n,))) for n in part}
            )
        self.collect()

    def sync(self, part: tuple[int, ...], ring: RingId, trans: dict[int, tuple[int, ...]]) -> None:
        self.in_sync |= set(part)
        for n in part:
            self.engines[n].confchg(ConfigKind.TRANSITIONAL, trans[n], (), (), ring)
            self.engines[n].confchg(ConfigKind.REGULAR, part, (), (), ring)
        for n in part:
            self.engines[n].sync_init(trans[n], part, ring)
        self.meanwhile(part)
        pending = set(part)
        while pending:
            pending = {n for n in sorted(pending) if not self.engines[n].sync_process()}
            self.put_on_ring(part, lanes=("sync",), everything=True)
            self.deliver(part, everything=True)
        for n in part:
            self.engines[n].sync_activate()
        self.in_sync -= set(part)

    def put_on_ring(
        self, part: tuple[int, ...], lanes: tuple[str, ...], *, everything: bool
    ) -> None:
        """Nodes of ``part`` put queued messages on the ring, interleaved at random."""
        while True:
            ready = [(n, lane) for n in part for lane in lanes if self.queues[n, lane]]
            if not ready or (not everything and self.rng.random() < 0.3):
                return
            node = self.rng.choice(sorted({n for n, _ in ready}))
            lane = next(lane for n, lane in ready if n == node)  # SYNC goes first
            self.ordered[part].append(self.queues[node, lane].pop(0))

    def deliver(self, part: tuple[int, ...], *, everything: bool = False) -> None:
        ordered = self.ordered[part]
        count = len(ordered) if everything else self.rng.randint(0, len(ordered))
        for _ in range(count):
            message = ordered.pop(0)
            for n in part:
                engine = self.engines[n]
                engine.exec_handlers[message.function_id].handler(
                    engine, message.payload, message.sender
                )
        for n in part:  # the messages delivered in one go are one batch, as in a worker
            self.engines[n].exec_batch_end()
        self.collect()

    def meanwhile(self, part: tuple[int, ...]) -> None:
        """Clients do not stop for a sync round: they send (held by the engine) and die."""
        members = [c for c in self.clients if c.alive and c.node in part]
        if members and self.rng.random() < 0.5:
            for _ in range(self.rng.randint(1, 3)):
                self.send(self.rng.choice(members))
        if members and self.rng.random() < 0.3:
            victim = self.rng.choice(members)
            self.kill(victim)
            self.restarts.append(victim.node)

    def step_ring(self, part: tuple[int, ...]) -> None:
        self.put_on_ring(part, lanes=("sync", "app"), everything=False)
        self.deliver(part)

    def drain(self) -> None:
        for part in self.ordered:
            while any(self.queues[n, lane] for n in part for lane in ("sync", "app")):
                self.put_on_ring(part, lanes=("sync", "app"), everything=True)
                self.deliver(part, everything=True)

    # -- clients -----------------------------------------------------------------------------

    def start_client(self, node: int) -> None:
        conn = ClientConnection(conn_id=len(self.clients) + 1, pid=next(self.pids), uid=0, gid=0)
        engine = self.engines[node]
        engine.lib_init(conn)
        self.clients.append(Client(node, conn))
        self.retry_joins()

    def retry_joins(self) -> None:
        """A client whose JOIN was answered TRY_AGAIN tries again, as a client must."""
        for client in self.clients:
            engine = self.engines[client.node]
            if client.alive and engine.join_state(client.conn) is JoinState.UNJOINED:
                self.request(client, CpgRequestId.JOIN, wire.encode_join(G, client.conn.pid, 0))

    def request(self, client: Client, request: int, body: bytes) -> None:
        engine = self.engines[client.node]
        engine.lib_handlers[request].handler(engine, client.conn, body)

    def send(self, client: Client) -> None:
        if self.engines[client.node].join_state(client.conn) is JoinState.UNJOINED:
            return  # libcpg answers NOT_EXIST without sending
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
                for event in decode_events(note):
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
            world.step_ring(rng.choice(list(world.ordered)))
        elif op == "split":
            world.form(random_partitions(rng))
        elif op == "heal":
            world.form([NODES])
        elif op == "kill" and alive:
            victim = rng.choice(alive)
            world.kill(victim)
            world.start_client(victim.node)
        while world.restarts:
            world.start_client(world.restarts.pop())
        world.retry_joins()
    world.form([NODES])
    world.drain()
    while any(c.alive and c.joined_ring is None for c in world.clients):
        world.retry_joins()
        world.drain()
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
    """Clients members throughout a ring that came from the same previous ring saw the same
    stream in it; all of its members saw the same messages after its totem confchg."""
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
            # From the ring's totem confchg on: before it, messages of the old view may still
            # arrive (a SYNC-lane message carried over), which only that view's members get.
            after = next((i for i, t in enumerate(stream) if t[0] == "t"), len(stream))
            merged[ring][index] = [t for t in stream[after:] if t[0] != "c"]
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
