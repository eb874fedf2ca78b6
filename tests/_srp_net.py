"""A tiny deterministic network for unit tests of the SRP core.

Unlike the simulator (random faults over many seeds) this is for scripted scenarios: every
datagram arrives after ``latency`` seconds, in send order, unless the test's ``link`` filter
says the link is down; a node's datagrams that arrive at the same time come as one batch.
Every event is fed to an :class:`EvsChecker`, so each test also checks the EVS invariants.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from pycorosync.exec.totem.core_api import Send
from pycorosync.exec.totem.events import (
    ConfigChange,
    ConfigKind,
    Delivery,
    Guarantee,
    PersistRingSeq,
    TotemEvent,
    TotemLog,
)
from pycorosync.exec.totem.evs_check import EvsChecker
from pycorosync.exec.totem.history import Crashed, Restarted, Submitted
from pycorosync.exec.totem.sim import SIM_CONFIG
from pycorosync.exec.totem.srp import Srp, State
from pycorosync.exec.totem.srp_config import SrpConfig

FAST = SIM_CONFIG
"""Corosync 2.x-era timers (token 1000 ms): quick, and the simulator's too."""

LinkFilter = Callable[[int, int, bytes], bool]
"""``(src, dst, datagram) -> delivered?``"""


@dataclass
class Net:
    members: tuple[int, ...]
    config: SrpConfig = FAST
    latency: float = 0.0002
    link: LinkFilter = field(default=lambda src, dst, data: True)
    now: float = 0.0
    cores: dict[int, Srp] = field(default_factory=dict)
    persisted: dict[int, int] = field(default_factory=dict)
    events: dict[int, list[TotemEvent]] = field(default_factory=dict)
    sent: list[tuple[float, int, Send]] = field(default_factory=list)
    checker: EvsChecker = field(default_factory=EvsChecker)
    _queue: list[tuple[float, int, int, bytes]] = field(default_factory=list)
    _counter: int = 0

    def __post_init__(self) -> None:
        for node in self.members:
            self.cores[node] = Srp(self.config, node, self.members, 0)
            self.events[node] = []

    def start(self, nodes: Iterable[int] | None = None) -> None:
        for node in self.members if nodes is None else nodes:
            self.cores[node].start(self.now)
            self._drain(node)

    def crash(self, node: int) -> None:
        del self.cores[node]
        self.checker.observe(node, Crashed())

    def restart(self, node: int) -> None:
        self.cores[node] = Srp(self.config, node, self.members, self.persisted.get(node, 0))
        self.checker.observe(node, Restarted())
        self.start([node])

    def mcast(
        self,
        node: int,
        payload: bytes,
        guarantee: Guarantee = Guarantee.AGREED,
        *,
        sync: bool = False,
    ) -> bool:
        accepted = self.cores[node].mcast(payload, guarantee, sync=sync)
        if accepted:
            self.checker.observe(node, Submitted(payload=payload, guarantee=guarantee))
        self._drain(node)
        return accepted

    def inject(self, node: int, datagrams: list[bytes]) -> None:
        self.cores[node].handle_datagrams(datagrams, self.now)
        self._drain(node)

    def run(self, seconds: float) -> None:
        self.run_until(lambda: False, seconds)

    def run_until(self, condition: Callable[[], bool], seconds: float) -> bool:
        """Step the network until ``condition()`` or ``seconds`` of virtual time pass."""
        end = self.now + seconds
        while not condition():
            step = self._next_time()
            if step is None or step > end:
                self.now = end
                return condition()
            self.now = step
            self._step()
        return True

    def deliveries(self, node: int) -> list[Delivery]:
        return [e for e in self.events[node] if isinstance(e, Delivery)]

    def payloads(self, node: int) -> list[bytes]:
        return [d.payload for d in self.deliveries(node)]

    def regulars(self, node: int) -> list[ConfigChange]:
        return [
            e
            for e in self.events[node]
            if isinstance(e, ConfigChange) and e.kind is ConfigKind.REGULAR
        ]

    def logs(self, node: int) -> list[str]:
        return [e.text for e in self.events[node] if isinstance(e, TotemLog)]

    def one_ring(self, nodes: Iterable[int]) -> bool:
        expected = tuple(sorted(nodes))
        rings = {self.cores[n].ring_id for n in expected}
        return len(rings) == 1 and all(
            self.cores[n].state is State.OPERATIONAL and self.cores[n].members == expected
            for n in expected
        )

    # -- internals -------------------------------------------------------------------------

    def _next_time(self) -> float | None:
        times = [deadline for c in self.cores.values() if (deadline := c.next_deadline())]
        if self._queue:
            times.append(self._queue[0][0])
        return max(min(times), self.now) if times else None

    def _step(self) -> None:
        batches: dict[int, list[bytes]] = {}
        while self._queue and self._queue[0][0] <= self.now:
            _, _, dest, data = heapq.heappop(self._queue)
            batches.setdefault(dest, []).append(data)
        for dest, batch in batches.items():
            if dest in self.cores:
                self.cores[dest].handle_datagrams(batch, self.now)
                self._drain(dest)
        for node, core in list(self.cores.items()):
            deadline = core.next_deadline()
            if deadline is not None and deadline <= self.now:
                core.handle_timer(self.now)
                self._drain(node)

    def _drain(self, node: int) -> None:
        sends, events = self.cores[node].take_output()
        for event in events:
            self.events[node].append(event)
            if isinstance(event, Delivery | ConfigChange):
                self.checker.observe(node, event)
            elif isinstance(event, PersistRingSeq):
                self.persisted[node] = event.seq
        for send in sends:
            self.sent.append((self.now, node, send))
            dests = [send.dest] if send.dest is not None else self.members
            for dest in dests:
                if (send.dest is not None or dest != node) and self.link(node, dest, send.data):
                    self._counter += 1
                    item = (self.now + self.latency, self._counter, dest, send.data)
                    heapq.heappush(self._queue, item)


BOUND_FORM = 3 * (FAST.token_ms + FAST.consensus_ms) / 1000
"""Generous bound for a (re)configuration: three times token + consensus (DESIGN.md)."""
