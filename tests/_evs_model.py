"""A tiny model of Totem rings that writes valid EVS histories, for testing the checker.

Each ring is a log of messages with sequence numbers 1, 2, ...; every member has a set of
received seqs (holes allowed) and delivers in seq order what it has received contiguously, a
SAFE message only once every member of the ring has received everything up to it. A
reconfiguration regroups the running nodes into new rings and does what totem-notes §2.11
says: the members T that move from one ring into one new ring pool what they received, each
delivers in the old regular configuration up to the first hole (or undeliverable SAFE message),
then the TRANSITIONAL confchg, then the rest of the pool from members of T only, then the
REGULAR confchg. Unsent messages stay queued across reconfigurations; a crash loses them.

The model is driven by a :class:`Chooser` so hypothesis and a seeded ``random.Random`` can
both steer it. The histories it emits are valid by construction; the checker must agree.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from pycorosync.exec.totem.events import ConfigChange, ConfigKind, Delivery, Guarantee, RingId
from pycorosync.exec.totem.history import Crashed, HistoryEntry, Restarted, Submitted

T = TypeVar("T")

_ACTIONS = ("submit", "send", "receive", "deliver") * 4 + ("crash", "restart", "reconf")


class Chooser:
    def __init__(self, pick: Callable[[Sequence[object]], object]) -> None:
        self._pick = pick

    def choose(self, options: Sequence[T]) -> T:
        return self._pick(options)  # type: ignore[return-value]

    @classmethod
    def seeded(cls, seed: int) -> Chooser:
        rng = random.Random(seed)
        return cls(rng.choice)


@dataclass
class _Message:
    seq: int
    sender: int
    payload: bytes
    guarantee: Guarantee


@dataclass(eq=False)
class _Ring:
    ring_id: RingId
    members: tuple[int, ...]
    log: list[_Message] = field(default_factory=list)
    received: dict[int, set[int]] = field(default_factory=dict)
    delivered: dict[int, int] = field(default_factory=dict)

    def safe_ready(self, seq: int) -> bool:
        return all(set(range(1, seq + 1)) <= got for got in self.received.values())


@dataclass
class _Node:
    nodeid: int
    alive: bool = True
    ring: _Ring | None = None
    pending: list[tuple[bytes, Guarantee]] = field(default_factory=list)


@dataclass
class Stats:
    """What a run exercised, so a sweep can show the model reaches the interesting cases."""

    transitional_deliveries: int = 0
    holes: int = 0
    safe_deliveries: int = 0
    restarts: int = 0
    merges: int = 0


class RingModel:
    def __init__(self, node_count: int, chooser: Chooser) -> None:
        self.nodes = {n: _Node(n) for n in range(1, node_count + 1)}
        self.history: list[tuple[int, HistoryEntry]] = []
        self.stats = Stats()
        self._chooser = chooser
        self._ring_seq = 0
        self._payloads = 0

    # -- driving ------------------------------------------------------------------------

    def run(self, steps: int) -> None:
        self.reconfigure()
        for _ in range(steps):
            action = self._chooser.choose(_ACTIONS)
            getattr(self, f"_{action}")()
        self.reconfigure(single_group=True)

    def running(self) -> list[int]:
        return sorted(n for n, node in self.nodes.items() if node.alive)

    def _emit(self, nodeid: int, entry: HistoryEntry) -> None:
        self.history.append((nodeid, entry))

    def _pick_node(self, need_ring: bool) -> _Node | None:
        options = [n for n in self.nodes.values() if n.alive and (n.ring or not need_ring)]
        return self._chooser.choose(options) if options else None

    # -- steps --------------------------------------------------------------------------

    def _submit(self) -> None:
        node = self._pick_node(need_ring=False)
        if node is None:
            return
        self._payloads += 1
        payload = f"{node.nodeid}:{self._payloads}".encode()
        guarantee = self._chooser.choose([Guarantee.AGREED, Guarantee.AGREED, Guarantee.SAFE])
        node.pending.append((payload, guarantee))
        self._emit(node.nodeid, Submitted(payload=payload, guarantee=guarantee))

    def _send(self) -> None:
        node = self._pick_node(need_ring=True)
        if node is None or node.ring is None or not node.pending:
            return
        payload, guarantee = node.pending.pop(0)
        ring = node.ring
        message = _Message(len(ring.log) + 1, node.nodeid, payload, guarantee)
        ring.log.append(message)
        ring.received[node.nodeid].add(message.seq)

    def _receive(self) -> None:
        node = self._pick_node(need_ring=True)
        if node is None or node.ring is None:
            return
        missing = [m.seq for m in node.ring.log if m.seq not in node.ring.received[node.nodeid]]
        if missing:
            node.ring.received[node.nodeid].add(self._chooser.choose(missing))

    def _deliver(self) -> None:
        node = self._pick_node(need_ring=True)
        if node is None or node.ring is None:
            return
        ring = node.ring
        seq = ring.delivered[node.nodeid] + 1
        if seq in ring.received[node.nodeid]:
            message = ring.log[seq - 1]
            if message.guarantee is Guarantee.AGREED or ring.safe_ready(seq):
                self._deliver_message(node.nodeid, ring, message)

    def _crash(self) -> None:
        node = self._pick_node(need_ring=False)
        if node is None or len(self.running()) == 1:
            return
        node.alive = False
        node.pending.clear()
        self._emit(node.nodeid, Crashed())

    def _restart(self) -> None:
        dead = [n for n in self.nodes.values() if not n.alive]
        if not dead:
            return
        node = self._chooser.choose(dead)
        node.alive = True
        node.ring = None
        self.stats.restarts += 1
        self._emit(node.nodeid, Restarted())

    def _reconf(self) -> None:
        self.reconfigure()

    # -- reconfiguration (totem-notes §2.11) --------------------------------------------

    def reconfigure(self, single_group: bool = False) -> None:
        """Regroup the running members of some rings (all of them for ``single_group``) and
        the nodes in no ring; the other rings carry on undisturbed."""
        rings = {id(n.ring): n.ring for n in self.nodes.values() if n.alive and n.ring}
        taking_part = {key for key in rings if single_group or self._chooser.choose([True, False])}
        groups: dict[int, list[int]] = {}
        for nodeid in self.running():
            ring = self.nodes[nodeid].ring
            if ring is not None and id(ring) not in taking_part:
                continue
            label = 0 if single_group else self._chooser.choose([0, 1, 2])
            groups.setdefault(label, []).append(nodeid)
        new_rings = {}
        for members in groups.values():
            self._ring_seq += 4
            ring_id = RingId(seq=self._ring_seq, rep=min(members))
            new_rings[tuple(members)] = _Ring(
                ring_id,
                tuple(members),
                received={m: set() for m in members},
                delivered=dict.fromkeys(members, 0),
            )
        for members, new in new_rings.items():
            self._form(new, members)

    def _form(self, new: _Ring, members: tuple[int, ...]) -> None:
        by_origin: dict[int, list[int]] = {}
        for nodeid in members:
            old = self.nodes[nodeid].ring
            key = id(old) if old is not None else -nodeid
            by_origin.setdefault(key, []).append(nodeid)
        self.stats.merges += len(by_origin) > 1
        for trans in by_origin.values():
            self._move(trans, new)

    def _move(self, trans: list[int], new: _Ring) -> None:
        old = self.nodes[trans[0]].ring
        pool: set[int] = set()
        if old is not None:
            for nodeid in trans:
                pool |= old.received[nodeid]
        stop = 1
        while old is not None and stop in pool:
            message = old.log[stop - 1]
            if message.guarantee is Guarantee.SAFE and not old.safe_ready(stop):
                break
            stop += 1
        self.stats.holes += old is not None and any(s > stop for s in pool)
        for nodeid in trans:
            self._install(nodeid, old=old, new=new, trans=trans, pool=pool, stop=stop)

    def _install(
        self,
        nodeid: int,
        *,
        old: _Ring | None,
        new: _Ring,
        trans: list[int],
        pool: set[int],
        stop: int,
    ) -> None:
        previous = old.members if old is not None else (nodeid,)
        if old is not None:
            for seq in range(old.delivered[nodeid] + 1, stop):
                self._deliver_message(nodeid, old, old.log[seq - 1])
        left = tuple(sorted(set(previous) - set(trans)))
        self._emit(
            nodeid,
            ConfigChange(
                kind=ConfigKind.TRANSITIONAL,
                members=tuple(trans),
                left=left,
                joined=(),
                ring_id=new.ring_id,
            ),
        )
        if old is not None:
            for seq in sorted(s for s in pool if s >= stop):
                message = old.log[seq - 1]
                if message.sender in trans:
                    self.stats.transitional_deliveries += 1
                    self._deliver_message(nodeid, old, message)
        joined = tuple(sorted(set(new.members) - set(trans)))
        self._emit(
            nodeid,
            ConfigChange(
                kind=ConfigKind.REGULAR,
                members=new.members,
                left=(),
                joined=joined,
                ring_id=new.ring_id,
            ),
        )
        self.nodes[nodeid].ring = new

    def _deliver_message(self, nodeid: int, ring: _Ring, message: _Message) -> None:
        ring.delivered[nodeid] = message.seq
        self.stats.safe_deliveries += message.guarantee is Guarantee.SAFE
        self._emit(
            nodeid,
            Delivery(
                sender=message.sender,
                ring_id=ring.ring_id,
                seq=message.seq,
                payload=message.payload,
                guarantee=message.guarantee,
            ),
        )
